//! RESP2, as much of it as a client needs: encoding commands and reading
//! replies from a buffered stream, with bounds on everything the peer
//! announces so a broken or hostile server cannot make us allocate or loop
//! without limit.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Longest status/error/length line we accept.
const MAX_LINE: usize = 64 * 1024;
/// Largest bulk string we read into memory (INFO, CLUSTER NODES, ...). RDB
/// payloads are never read through here: they are streamed.
pub(crate) const MAX_BULK: usize = 64 * 1024 * 1024;
const MAX_ARRAY: usize = 1024 * 1024;
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Simple(s) => Some(s.as_bytes()),
            Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    pub fn into_string(self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s),
            Reply::Bulk(Some(b)) => String::from_utf8(b).ok(),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// `*N\r\n$len\r\narg\r\n...`
pub(crate) fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one line without its `\r\n`, refusing lines over [`MAX_LINE`].
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, RespError> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(RespError::Closed);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if line.len() > MAX_LINE {
            return Err(RespError::Protocol(format!(
                "line longer than {MAX_LINE} bytes"
            )));
        }
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

fn parse_int(digits: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            RespError::Protocol(format!("bad integer {:?}", String::from_utf8_lossy(digits)))
        })
}

pub(crate) async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, RespError> {
    read_nested(r, 0, MAX_BULK).await
}

/// Like [`read_reply`], with bulk strings up to `max_bulk` bytes (`DUMP` of
/// one large value can pass [`MAX_BULK`]).
pub(crate) async fn read_reply_up_to<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max_bulk: usize,
) -> Result<Reply, RespError> {
    read_nested(r, 0, max_bulk).await
}

async fn read_nested<R: AsyncBufRead + Unpin>(
    r: &mut R,
    depth: usize,
    max_bulk: usize,
) -> Result<Reply, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::Protocol("reply nested too deeply".into()));
    }
    let line = read_line(r).await?;
    let (&kind, rest) = line
        .split_first()
        .ok_or_else(|| RespError::Protocol("empty reply line".into()))?;
    match kind {
        b'+' => Ok(Reply::Simple(String::from_utf8_lossy(rest).into_owned())),
        b'-' => Ok(Reply::Error(String::from_utf8_lossy(rest).into_owned())),
        b':' => Ok(Reply::Int(parse_int(rest)?)),
        b'$' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > max_bulk {
                return Err(RespError::Protocol(format!(
                    "bulk of {len} bytes is over the limit"
                )));
            }
            let mut data = vec![0; len + 2];
            r.read_exact(&mut data).await.map_err(eof_is_closed)?;
            if !data.ends_with(b"\r\n") {
                return Err(RespError::Protocol(
                    "bulk string not terminated by CRLF".into(),
                ));
            }
            data.truncate(len);
            Ok(Reply::Bulk(Some(data)))
        }
        b'*' => {
            let n = parse_int(rest)?;
            if n < 0 {
                return Ok(Reply::Array(None));
            }
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > MAX_ARRAY {
                return Err(RespError::Protocol(format!(
                    "array of {n} elements is over the limit"
                )));
            }
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(Box::pin(read_nested(r, depth + 1, max_bulk)).await?);
            }
            Ok(Reply::Array(Some(items)))
        }
        other => Err(RespError::Protocol(format!(
            "unexpected reply type byte 0x{other:02x}; is this a Redis server?"
        ))),
    }
}

pub(crate) fn eof_is_closed(e: std::io::Error) -> RespError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        RespError::Closed
    } else {
        RespError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Reply, RespError> {
        let mut r = tokio::io::BufReader::new(bytes);
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn reads_every_reply_type() {
        assert_eq!(
            parse(b"+OK\r\n").await.expect("ok"),
            Reply::Simple("OK".into())
        );
        assert_eq!(
            parse(b"-ERR no\r\n").await.expect("ok"),
            Reply::Error("ERR no".into())
        );
        assert_eq!(parse(b":-42\r\n").await.expect("ok"), Reply::Int(-42));
        assert_eq!(
            parse(b"$3\r\na\r\n\r\n").await.expect("ok"),
            Reply::Bulk(Some(b"a\r\n".to_vec()))
        );
        assert_eq!(parse(b"$-1\r\n").await.expect("ok"), Reply::Bulk(None));
        assert_eq!(
            parse(b"*2\r\n:1\r\n*1\r\n$0\r\n\r\n").await.expect("ok"),
            Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Array(Some(vec![Reply::Bulk(Some(vec![]))]))
            ]))
        );
    }

    #[tokio::test]
    async fn refuses_garbage_and_huge_announcements() {
        for bad in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"$99999999999\r\n",
            b"*99999999999\r\n",
            b":abc\r\n",
            b"$3\r\nabcde",
            b"\r\n",
        ] {
            assert!(
                parse(bad).await.is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(parse(b"$5\r\nab").await, Err(RespError::Closed)));
        assert!(matches!(parse(b"").await, Err(RespError::Closed)));
        let deep = "*1\r\n".repeat(20) + ":1\r\n";
        assert!(parse(deep.as_bytes()).await.is_err());
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(
            encode_command(&[b"AUTH", b"p w"]),
            b"*2\r\n$4\r\nAUTH\r\n$3\r\np w\r\n"
        );
    }
}
