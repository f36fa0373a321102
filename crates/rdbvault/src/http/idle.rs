//! A connection that gives up on a peer that stops moving bytes.
//!
//! hyper times out a request head that does not arrive (its
//! `header_read_timeout`), but not a client that stops reading a response
//! (a stalled download holds its file and its slot for ever) nor an idle
//! keep-alive connection. Here, a read that waits `read_idle` or a write that
//! waits `write_idle` with no byte moving either way fails the connection.
//! Progress in either direction clears both waits: a long download keeps
//! its (pending) read alive by writing, a slow upload its writes by reading.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct IdleTimeout<T> {
    inner: T,
    read_idle: Duration,
    write_idle: Duration,
    read_wait: Option<Pin<Box<Sleep>>>,
    write_wait: Option<Pin<Box<Sleep>>>,
}

impl<T> IdleTimeout<T> {
    pub fn new(inner: T, read_idle: Duration, write_idle: Duration) -> IdleTimeout<T> {
        IdleTimeout {
            inner,
            read_idle,
            write_idle,
            read_wait: None,
            write_wait: None,
        }
    }

    fn progressed(&mut self) {
        self.read_wait = None;
        self.write_wait = None;
    }
}

/// Polls the wait armed for a pending operation (arming it first): ready
/// once it has lasted `idle`.
fn expired(wait: &mut Option<Pin<Box<Sleep>>>, idle: Duration, cx: &mut Context<'_>) -> bool {
    let sleep =
        wait.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + idle)));
    sleep.as_mut().poll(cx).is_ready()
}

/// Which way an operation moves bytes, and so which wait it arms.
#[derive(Clone, Copy)]
enum Way {
    Read,
    Write,
}

impl<T> IdleTimeout<T> {
    /// What the connection answers for an operation of the inner stream
    /// that returned `polled`: progress clears both waits (when `moves`
    /// bytes: a flush or a shutdown moves none of its own), a wait that
    /// lasted too long fails the connection.
    fn watch<R>(
        &mut self,
        polled: Poll<io::Result<R>>,
        way: Way,
        moves: bool,
        what: &str,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        let (wait, idle) = match way {
            Way::Read => (&mut self.read_wait, self.read_idle),
            Way::Write => (&mut self.write_wait, self.write_idle),
        };
        match polled {
            Poll::Ready(done) => {
                if moves {
                    self.progressed();
                }
                Poll::Ready(done)
            }
            Poll::Pending if expired(wait, idle, cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("peer idle while {what}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.watch(polled, Way::Read, true, "reading", cx)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(polled, Way::Write, true, "writing", cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(polled, Way::Write, true, "writing", cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(polled, Way::Write, false, "flushing", cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(polled, Way::Write, false, "closing", cx)
    }
}
