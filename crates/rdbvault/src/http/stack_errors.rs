//! The errors hyper answers by itself — a request line or header it cannot
//! parse (control characters, a bad method or version: 400), a URI over
//! its limit (414), a head too large (431) — carry no body. A client of
//! this API gets the DCS error body for every error, so those answers are
//! rewritten on their way out: recognised by what only hyper sends (one of
//! those statuses, `connection: close`, `content-length: 0`, no
//! `Content-Type`: every answer of the router has one) in the first write
//! after a request was read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::api::error::ApiError;

pub struct DcsErrors<T> {
    inner: T,
    /// A request's bytes were read and nothing written since: the next
    /// write starts an answer.
    answer_next: bool,
    /// A rewritten answer not yet all written, and how much of it is.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> DcsErrors<T> {
    pub fn new(inner: T) -> DcsErrors<T> {
        DcsErrors {
            inner,
            answer_next: false,
            pending: None,
        }
    }
}

/// The DCS answer for hyper's own answer `head`, if it is one.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let head = text.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let error = match status_line.strip_prefix("HTTP/1.1 ")?.get(..3)? {
        "400" => ApiError::MalformedRequest,
        "414" => ApiError::UriTooLong,
        "431" => ApiError::HeadersTooLarge,
        _ => return None,
    };
    let headers: Vec<&str> = lines.collect();
    let has = |h: &str| headers.iter().any(|l| l.eq_ignore_ascii_case(h));
    let named = |name: &str| {
        headers.iter().find(|l| {
            l.get(..name.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(name))
        })
    };
    if !has("connection: close") || !has("content-length: 0") || named("content-type:").is_some() {
        return None;
    }
    tracing::warn!(
        status = &status_line[9..12],
        code = error.code(),
        "request refused by the HTTP parser"
    );
    let body = serde_json::to_vec(&error.body()).ok()?;
    let date = named("date:");
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(date) = date {
        out.push_str(date);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncWrite + Unpin> DcsErrors<T> {
    /// Writes what is left of a rewritten answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for DcsErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let done = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        if buf.filled().len() > before {
            this.answer_next = true;
        }
        Poll::Ready(done)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DcsErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if std::mem::take(&mut this.answer_next)
            && buf.starts_with(b"HTTP/1.1 4")
            && let Some(answer) = rewrite(buf)
        {
            this.pending = Some((answer, 0));
            // hyper's bytes count as written; ours go out in their place.
            let _ = this.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // An answer's head is the first slice hyper hands over: look at it
        // alone when an answer is due.
        if self.answer_next || self.pending.is_some() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return self.poll_write(cx, first);
        }
        let this = self.get_mut();
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_bodiless_errors_are_rewritten() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 15:06:33 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(hyper).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        assert!(out.contains("content-type: application/json\r\n"));
        assert!(out.contains("date: Thu, 03 Dec 2026"));
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error_code"], ApiError::HeadersTooLarge.code());
        // The router's answers have a Content-Type; other statuses stay.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(rewrite(ours).is_none());
        assert!(
            rewrite(b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                .is_none()
        );
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
