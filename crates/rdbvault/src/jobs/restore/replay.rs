//! AOF-format backups restored: the stored RESP commands read back and
//! grouped by key (consecutive commands naming the same key, as the
//! generator writes them), so each group goes through the writers like a
//! rebuilt key — routed by slot, `DEL` first in `merge` mode, its replies
//! judged and counted. `SELECT` sets the database of the keys that follow;
//! `FUNCTION LOAD` goes to every node written to.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, ReadBuf};
use tokio::sync::mpsc;

use super::read::{Body, Contents, Item, Key, check_record};
use crate::jobs::failure::{Failure, FailureKind};
use crate::meta::BackupFile;
use crate::replication::resp::{self, Reply};

/// Keys per batch, and batches queued ahead of the writers.
const BATCH_KEYS: usize = 256;
const BATCHES_IN_FLIGHT: usize = 4;
/// Longest argument accepted: a Redis string's own limit.
const MAX_ARG: usize = 512 << 20;

/// Reads the AOF `input` (the stored `file`) and sends its keys, each with
/// its commands; ends with [`Item::End`] once the file's size and SHA-256
/// match its record, or with the failure that stopped it.
pub(super) fn keys<R>(
    input: R,
    file: &BackupFile,
    progress: Arc<AtomicU64>,
) -> mpsc::Receiver<Result<Item, Failure>>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(BATCHES_IN_FLIGHT);
    let file = file.clone();
    tokio::spawn(async move {
        if let Err(f) = parse(input, &file, progress, &tx).await {
            let _ = tx.send(Err(f)).await;
        }
    });
    rx
}

/// Checks a stored AOF file before the target is touched: every command
/// well-formed, size and SHA-256 as recorded; what it holds.
pub(super) async fn verify<R>(
    input: R,
    file: &BackupFile,
    progress: Arc<AtomicU64>,
) -> Result<Contents, Failure>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let mut items = keys(input, file, progress);
    let mut contents = Contents::default();
    while let Some(item) = items.recv().await {
        match item? {
            Item::Keys(keys) => {
                for key in keys {
                    contents.dbs.insert(key.db);
                    contents.keys += 1;
                }
            }
            Item::Functions(_) => {}
            Item::End => return Ok(contents),
        }
    }
    Err(Failure::new(
        FailureKind::Internal,
        "the AOF reader stopped",
    ))
}

async fn parse<R>(
    input: R,
    file: &BackupFile,
    progress: Arc<AtomicU64>,
    tx: &mpsc::Sender<Result<Item, Failure>>,
) -> Result<(), Failure>
where
    R: AsyncRead + Send + Unpin,
{
    let mut reader = BufReader::with_capacity(1 << 20, Hashing::new(input, progress));
    let mut db = 0;
    let mut key: Option<Key> = None;
    let mut batch = Vec::with_capacity(BATCH_KEYS);
    // The receiver gone means the restore stopped: nothing left to tell.
    macro_rules! send {
        ($item:expr) => {
            if tx.send(Ok($item)).await.is_err() {
                return Ok(());
            }
        };
    }
    loop {
        let at_end = reader
            .fill_buf()
            .await
            .map_err(|e| {
                Failure::new(
                    FailureKind::Storage,
                    format!("backup file {}: {e}", file.file_name),
                )
            })?
            .is_empty();
        if at_end {
            break;
        }
        let offset = reader.get_ref().bytes - reader.buffer().len() as u64;
        let broken = |why: String| {
            Failure::new(
                FailureKind::Verification,
                format!("backup file {} at byte {offset}: {why}", file.file_name),
            )
        };
        let command = match resp::read_reply_up_to(&mut reader, MAX_ARG).await {
            Ok(Reply::Array(Some(args))) => args
                .into_iter()
                .map(|a| match a {
                    Reply::Bulk(Some(b)) => Ok(b),
                    other => Err(broken(format!("a command argument is {other:?}"))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Ok(other) => return Err(broken(format!("not a command: {other:?}"))),
            Err(e) => return Err(broken(e.to_string())),
        };
        let name = command
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        match name.as_slice() {
            b"SELECT" => {
                db = command
                    .get(1)
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(|| broken("SELECT without a database number".into()))?;
            }
            b"FUNCTION" => {
                batch.extend(key.take());
                if !batch.is_empty() {
                    send!(Item::Keys(std::mem::take(&mut batch)));
                }
                // FUNCTION LOAD [REPLACE] code
                let code = command.last().cloned().unwrap_or_default();
                send!(Item::Functions(vec![code]));
            }
            _ => {
                let Some(name) = key_of(&command) else {
                    return Err(broken("a command without a key".into()));
                };
                match &mut key {
                    Some(k) if k.db == db && &k.key == name => {
                        if let Body::Commands(c) = &mut k.body {
                            c.push(command);
                        }
                    }
                    _ => {
                        let next = Key {
                            db,
                            key: name.clone(),
                            expire_ms: None,
                            idle: None,
                            freq: None,
                            body: Body::Commands(vec![command]),
                        };
                        batch.extend(key.replace(next));
                        if batch.len() >= BATCH_KEYS {
                            send!(Item::Keys(std::mem::take(&mut batch)));
                        }
                    }
                }
            }
        }
    }
    batch.extend(key.take());
    let hashing = reader.into_inner();
    check_record(file, hashing.bytes, &hex::encode(hashing.sha.finalize()))?;
    if !batch.is_empty() {
        send!(Item::Keys(batch));
    }
    send!(Item::End);
    Ok(())
}

/// The key a command of the generator's writes to: its first argument, but
/// for `XGROUP CREATE|CREATECONSUMER key ...`.
fn key_of(command: &[Vec<u8>]) -> Option<&Vec<u8>> {
    let subcommand = command
        .first()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"XGROUP"));
    command.get(if subcommand { 2 } else { 1 })
}

/// Counts and hashes the bytes read through it.
struct Hashing<R> {
    inner: R,
    sha: Sha256,
    bytes: u64,
    progress: Arc<AtomicU64>,
}

impl<R> Hashing<R> {
    fn new(inner: R, progress: Arc<AtomicU64>) -> Hashing<R> {
        Hashing {
            inner,
            sha: Sha256::new(),
            bytes: 0,
            progress,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let new = &buf.filled()[before..];
            this.sha.update(new);
            this.bytes += new.len() as u64;
            this.progress.fetch_add(new.len() as u64, Ordering::Relaxed);
        }
        polled
    }
}
