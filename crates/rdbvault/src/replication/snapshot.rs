//! Pulling an RDB snapshot the way a replica does.
//!
//! `REPLCONF capa eof capa psync2` (we can read diskless transfers),
//! `REPLCONF rdb-only 1` where the server knows it (Redis 7+: the master then
//! keeps no replication buffer for us, so a long transfer cannot push it
//! towards its output-buffer limits), then `PSYNC ? -1` (or `SYNC` for servers
//! that refuse it). The payload comes in one of two forms: `$<len>\r\n` and
//! exactly that many bytes (disk-based), or `$EOF:<40-byte mark>\r\n` and bytes
//! until the mark (diskless).
//!
//! A master does not always fork at once: with `repl-diskless-sync-delay`
//! (5 s by default) it waits for more replicas, and while another child runs
//! (a `BGSAVE`, a `BGREWRITEAOF`, a transfer to another replica) it waits for
//! that child to end. Until it forks it answers `PSYNC` with nothing but a
//! bare `\n` about once a second, and a disk-based transfer sends more of
//! them after `+FULLRESYNC` while the file is written. Both waits are skipped
//! over and bounded together by the first-byte timeout, never by the short
//! timeout of ordinary commands.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tokio::time::Instant;

use super::conn::{ConnError, Connection};
use super::resp::{self, Reply, RespError};

const EOF_MARK_LEN: usize = 40;
/// Size of the reads from the socket; large enough to keep syscalls cheap,
/// small enough that a few in flight stay far below the memory bound.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct TransferTimeouts {
    /// From the sync command to the first payload byte: the master forks and,
    /// for disk-based transfers, writes the whole file first.
    pub first_byte: Duration,
    /// Longest silence in the middle of a transfer.
    pub stall: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("{addr} refused to replicate: {message}")]
    Refused { addr: String, message: String },
    #[error(
        "{addr}: the master did not start its snapshot within the first-byte timeout ({secs} s): \
         no +FULLRESYNC, only keep-alives (it waits for its repl-diskless-sync-delay or for \
         another child process, such as a BGSAVE, a BGREWRITEAOF or a transfer to another replica)"
    )]
    ForkTimeout { addr: String, secs: u64 },
    #[error(
        "{addr}: the snapshot's first byte did not arrive within the first-byte timeout ({secs} s) \
         after +FULLRESYNC (a disk-based master writes the whole file before sending it)"
    )]
    FirstByteTimeout { addr: String, secs: u64 },
    #[error(
        "{addr}: the transfer stalled: nothing for the stall timeout ({secs} s) after {received} bytes"
    )]
    Stalled {
        addr: String,
        secs: u64,
        received: u64,
    },
    #[error("{addr}: the connection closed after {received} bytes of the payload")]
    Closed { addr: String, received: u64 },
    #[error("{addr}: the replica changed while it was copied: {reason}")]
    NotFrozen { addr: String, reason: String },
    #[error("{addr}: protocol error: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Disk-based: the length is announced.
    Sized(u64),
    /// Diskless: bytes run until this mark.
    EofMarked([u8; EOF_MARK_LEN]),
}

/// A snapshot under way: call [`next_chunk`](Transfer::next_chunk) until it returns `None`.
pub struct Transfer {
    conn: Connection,
    pub payload: Payload,
    /// `replid` and offset of `+FULLRESYNC`; empty for `SYNC`.
    pub replid: String,
    pub offset: i64,
    received: u64,
    /// The one buffer every read lands in (plus room for the held-back mark window).
    buf: Vec<u8>,
    eof: EofWindow,
    done: bool,
    stall: Duration,
}

/// Sends the handshake and waits for the payload header.
pub async fn start(
    mut conn: Connection,
    timeouts: TransferTimeouts,
) -> Result<Transfer, SnapshotError> {
    let addr = conn.addr().to_string();
    // Old servers answer these with an error; that only means no diskless/psync2.
    for replconf in [
        &[&b"REPLCONF"[..], b"capa", b"eof", b"capa", b"psync2"][..],
        &[b"REPLCONF", b"rdb-only", b"1"],
    ] {
        check_permission(conn.request(replconf).await?, &addr, replconf)?;
    }

    // From here on the master may keep us waiting for its fork: its answer
    // is bounded by the first-byte timeout, not by the command timeout.
    conn.send_only(&[b"PSYNC", b"?", b"-1"]).await?;
    let deadline = Instant::now() + timeouts.first_byte;
    let secs = timeouts.first_byte.as_secs();
    let answer = tokio::time::timeout_at(deadline, read_sync_answer(&mut conn))
        .await
        .map_err(|_| SnapshotError::ForkTimeout {
            addr: addr.clone(),
            secs,
        })??;
    let (replid, offset) = match answer {
        Reply::Simple(line) if line.starts_with("FULLRESYNC") => parse_fullresync(&line, &addr)?,
        Reply::Error(e) if is_refusal(&e) => {
            return Err(ConnError::refused(&addr, &[b"PSYNC"], e).into());
        }
        Reply::Error(e) if e.contains("unknown command") => {
            // Pre-2.8 servers: SYNC answers with the payload directly.
            conn.send_only(&[b"SYNC"]).await?;
            (String::new(), -1)
        }
        Reply::Error(e) => return Err(SnapshotError::Refused { addr, message: e }),
        other => {
            return Err(SnapshotError::Protocol {
                addr,
                reason: format!("unexpected answer to PSYNC: {other:?}"),
            });
        }
    };

    let payload = tokio::time::timeout_at(deadline, read_payload_header(&mut conn))
        .await
        .map_err(|_| SnapshotError::FirstByteTimeout {
            addr: addr.clone(),
            secs,
        })??;
    Ok(Transfer {
        conn,
        payload,
        replid,
        offset,
        received: 0,
        buf: vec![0; CHUNK + EOF_MARK_LEN],
        eof: EofWindow::default(),
        done: false,
        stall: timeouts.stall,
    })
}

fn is_refusal(e: &str) -> bool {
    e.starts_with("NOPERM") || e.starts_with("NOAUTH")
}

/// Old servers answer some `REPLCONF`s with an error, which only means no
/// diskless or psync2; a missing right or login is an error of its own.
fn check_permission(reply: Reply, addr: &str, args: &[&[u8]]) -> Result<(), SnapshotError> {
    match reply {
        Reply::Error(e) if is_refusal(&e) => Err(ConnError::refused(addr, args, e).into()),
        _ => Ok(()),
    }
}

fn parse_fullresync(line: &str, addr: &str) -> Result<(String, i64), SnapshotError> {
    let mut parts = line.split(' ').skip(1);
    let replid = parts.next().unwrap_or_default().to_string();
    let offset = parts.next().and_then(|o| o.parse().ok());
    match offset {
        Some(offset) if replid.len() == 40 => Ok((replid, offset)),
        _ => Err(SnapshotError::Protocol {
            addr: addr.into(),
            reason: format!("malformed {line:?}"),
        }),
    }
}

/// Skips the bare `\n` keep-alives a master sends while it waits for its
/// fork; returns the first byte of what follows, left in the buffer.
async fn skip_keepalives<R: AsyncBufRead + Unpin>(
    stream: &mut R,
    addr: &str,
) -> Result<u8, SnapshotError> {
    loop {
        let buf = stream
            .fill_buf()
            .await
            .map_err(|source| SnapshotError::Io {
                addr: addr.into(),
                source,
            })?;
        let Some(&first) = buf.first() else {
            return Err(SnapshotError::Closed {
                addr: addr.into(),
                received: 0,
            });
        };
        match buf.iter().position(|&b| b != b'\n') {
            Some(0) => return Ok(first),
            Some(n) => stream.consume(n),
            None => {
                let n = buf.len();
                stream.consume(n);
            }
        }
    }
}

/// The master's answer to `PSYNC`, after any keep-alives.
async fn read_sync_answer(conn: &mut Connection) -> Result<Reply, SnapshotError> {
    let addr = conn.addr().to_string();
    let stream = conn.stream_mut();
    skip_keepalives(stream, &addr).await?;
    resp::read_reply(stream)
        .await
        .map_err(|e| resp_error(&addr, e))
}

async fn read_payload_header(conn: &mut Connection) -> Result<Payload, SnapshotError> {
    let addr = conn.addr().to_string();
    let stream = conn.stream_mut();
    match skip_keepalives(stream, &addr).await? {
        b'$' => {}
        b'-' => {
            let line = resp::read_line(stream)
                .await
                .map_err(|e| resp_error(&addr, e))?;
            return Err(SnapshotError::Refused {
                addr,
                message: String::from_utf8_lossy(&line[1..]).into_owned(),
            });
        }
        other => {
            return Err(SnapshotError::Protocol {
                addr,
                reason: format!("expected the payload header, got byte 0x{other:02x}"),
            });
        }
    }
    let line = resp::read_line(stream)
        .await
        .map_err(|e| resp_error(&addr, e))?;
    let header = &line[1..];
    if let Some(mark) = header.strip_prefix(b"EOF:") {
        let mark: [u8; EOF_MARK_LEN] = mark.try_into().map_err(|_| SnapshotError::Protocol {
            addr: addr.clone(),
            reason: format!("EOF mark of {} bytes, expected {EOF_MARK_LEN}", mark.len()),
        })?;
        return Ok(Payload::EofMarked(mark));
    }
    std::str::from_utf8(header)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Payload::Sized)
        .ok_or_else(|| SnapshotError::Protocol {
            addr,
            reason: format!("bad payload length {:?}", String::from_utf8_lossy(header)),
        })
}

fn resp_error(addr: &str, e: RespError) -> SnapshotError {
    match e {
        RespError::Closed => SnapshotError::Closed {
            addr: addr.into(),
            received: 0,
        },
        RespError::Io(source) => SnapshotError::Io {
            addr: addr.into(),
            source,
        },
        RespError::Protocol(reason) => SnapshotError::Protocol {
            addr: addr.into(),
            reason,
        },
    }
}

impl Transfer {
    /// The next piece of the payload, or `None` once it is complete. The
    /// slice lives in a buffer reused for every read: a multi-gigabyte
    /// transfer allocates nothing per chunk.
    pub async fn next_chunk(&mut self) -> Result<Option<&[u8]>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let addr = self.conn.addr().to_string();
        let (start, end) = match &self.payload {
            Payload::Sized(len) => {
                let left = len - self.received;
                if left == 0 {
                    self.done = true;
                    return Ok(None);
                }
                (0, usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK))
            }
            Payload::EofMarked(_) => {
                let held = self.eof.prepare(&mut self.buf);
                (held, held + CHUNK)
            }
        };
        // Reading at most `end - start` bytes means a disk-based payload never
        // reads into the replication stream that follows it.
        let n = tokio::time::timeout(
            self.stall,
            self.conn.stream_mut().read(&mut self.buf[start..end]),
        )
        .await
        .map_err(|_| SnapshotError::Stalled {
            addr: addr.clone(),
            secs: self.stall.as_secs(),
            received: self.received,
        })?
        .map_err(|source| SnapshotError::Io {
            addr: addr.clone(),
            source,
        })?;
        if n == 0 {
            return Err(SnapshotError::Closed {
                addr,
                received: self.received,
            });
        }
        let out = match self.payload {
            Payload::Sized(_) => n,
            Payload::EofMarked(mark) => {
                let (out, done) = self.eof.after_read(&self.buf, start + n, &mark);
                self.done = done;
                out
            }
        };
        self.received += out as u64;
        Ok(Some(&self.buf[..out]))
    }

    /// Closes the link; the master drops an `rdb-only` replica anyway.
    pub async fn close(self) {
        self.conn.shutdown().await;
    }
}

/// Diskless transfers end with a 40-byte mark. Everything but the last 40
/// bytes seen can go out at once; the transfer is complete when the bytes
/// seen end with the mark (the master sends nothing after it until we answer).
/// The held-back bytes move to the front of the buffer before the next read.
#[derive(Default)]
struct EofWindow {
    /// `buf[from..to]` must move to the front before the next read.
    pending: Option<(usize, usize)>,
}

impl EofWindow {
    /// Moves the held-back bytes to the front; returns where the next read goes.
    fn prepare(&mut self, buf: &mut [u8]) -> usize {
        match self.pending.take() {
            Some((from, to)) => {
                buf.copy_within(from..to, 0);
                to - from
            }
            None => 0,
        }
    }

    /// `buf[..filled]` holds the held-back bytes and the fresh read. Returns
    /// how many leading bytes are payload for sure, and whether the mark was seen.
    fn after_read(
        &mut self,
        buf: &[u8],
        filled: usize,
        mark: &[u8; EOF_MARK_LEN],
    ) -> (usize, bool) {
        if filled >= EOF_MARK_LEN && buf[filled - EOF_MARK_LEN..filled] == mark[..] {
            return (filled - EOF_MARK_LEN, true);
        }
        let out = filled.saturating_sub(EOF_MARK_LEN);
        self.pending = Some((out, filled));
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eof_mark_is_found_across_any_split() {
        let mark = *b"0123456789abcdef0123456789abcdef01234567";
        let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let mut wire = payload.clone();
        wire.extend_from_slice(&mark);
        for chunk in [1, 7, 39, 40, 41, 100, 340] {
            let mut window = EofWindow::default();
            let mut buf = vec![0u8; chunk + EOF_MARK_LEN];
            let mut out = Vec::new();
            let mut done = false;
            for piece in wire.chunks(chunk) {
                assert!(!done, "data after the mark");
                let start = window.prepare(&mut buf);
                buf[start..start + piece.len()].copy_from_slice(piece);
                let (n, d) = window.after_read(&buf, start + piece.len(), &mark);
                out.extend_from_slice(&buf[..n]);
                done = d;
            }
            assert!(done, "mark not found with chunks of {chunk}");
            assert_eq!(out, payload, "chunks of {chunk}");
        }
    }

    #[tokio::test]
    async fn keepalives_before_the_answer_are_skipped() {
        // What a master waiting for its fork sends: bare newlines, in reads
        // of any size, then the answer.
        let wire = b"\n\n\n+FULLRESYNC x 0\r\n\n\n$EOF:";
        let mut r = tokio::io::BufReader::with_capacity(2, &wire[..]);
        assert_eq!(skip_keepalives(&mut r, "x").await.expect("answer"), b'+');
        let reply = resp::read_reply(&mut r).await.expect("reply");
        assert_eq!(reply, Reply::Simple("FULLRESYNC x 0".into()));
        assert_eq!(skip_keepalives(&mut r, "x").await.expect("header"), b'$');

        let mut closed = tokio::io::BufReader::new(&b"\n\n"[..]);
        assert!(matches!(
            skip_keepalives(&mut closed, "x").await,
            Err(SnapshotError::Closed { .. })
        ));
    }

    #[test]
    fn fullresync_lines() {
        let id = "a".repeat(40);
        assert_eq!(
            parse_fullresync(&format!("FULLRESYNC {id} 42"), "x").expect("ok"),
            (id, 42)
        );
        assert!(parse_fullresync("FULLRESYNC short 1", "x").is_err());
        assert!(parse_fullresync(&format!("FULLRESYNC {} x", "a".repeat(40)), "x").is_err());
    }
}
