//! A stored backup file, read for a restore: streamed from the object store
//! into the `rdb` reader on a blocking thread, keys handed over a bounded
//! channel in batches, the file's size and SHA-256 checked against its
//! record at the end. Memory is bounded by the largest value and a few
//! batches, whatever the size of the file.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::jobs::failure::{Failure, FailureKind};
use crate::meta::BackupFile;

/// Keys per batch sent over the channel, and batches in flight: the reader
/// thread stays ahead of the writers without holding much.
const BATCH_KEYS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;
const BATCHES_IN_FLIGHT: usize = 4;

/// One key of a dump, as a restore writes it.
pub(crate) struct Key {
    pub db: u64,
    pub key: Vec<u8>,
    pub expire_ms: Option<i64>,
    pub idle: Option<u64>,
    pub freq: Option<u8>,
    pub body: Body,
}

pub(crate) enum Body {
    /// The `DUMP` payload (the `restore` method; decoded only if refused).
    Dump(Vec<u8>),
    /// The decoded entry (the `commands` method).
    Entry(Box<rdb::Entry>),
    /// The key's commands as an AOF backup stored them ([`super::replay`]).
    Commands(Vec<rdb::commands::Command>),
}

impl Key {
    fn weight(&self) -> usize {
        self.key.len()
            + match &self.body {
                Body::Dump(d) => d.len(),
                // A rough size: enough to bound a batch.
                Body::Entry(e) => {
                    e.dump.as_ref().map_or(64, Vec::len) + 64 * e.value.elements() as usize
                }
                Body::Commands(c) => c.iter().flatten().map(Vec::len).sum(),
            }
    }
}

/// What the reader thread sends, in order.
pub(crate) enum Item {
    /// The dump's function libraries (met before its first key).
    Functions(Vec<Vec<u8>>),
    Keys(Vec<Key>),
    /// The whole file was read and passed every check.
    End,
}

/// Counts and hashes the bytes the reader consumes.
struct Tap<R> {
    inner: R,
    sha: Sha256,
    bytes: u64,
    progress: Arc<AtomicU64>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads `input` (the stored `file`) and sends its keys, decoded when
/// `decode`, else as payloads. Ends with [`Item::End`] or the failure that
/// stopped it, naming the file and the byte offset. Dropping the receiver
/// stops the thread.
pub(crate) fn keys<R>(
    input: R,
    file: &BackupFile,
    decode: bool,
    progress: Arc<AtomicU64>,
) -> mpsc::Receiver<Result<Item, Failure>>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(BATCHES_IN_FLIGHT);
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let tap = Tap {
            inner: SyncIoBridge::new(input),
            sha: Sha256::new(),
            bytes: 0,
            progress,
        };
        let result = read_all(tap, &file, decode, &tx);
        if let Err(f) = result {
            let _ = tx.blocking_send(Err(f));
        }
    });
    rx
}

fn read_all<R: Read>(
    tap: Tap<R>,
    file: &BackupFile,
    decode: bool,
    tx: &mpsc::Sender<Result<Item, Failure>>,
) -> Result<(), Failure> {
    let broken = |e| broken(file, e);
    // The channel closing means the restore stopped: nothing left to tell.
    let send = |item: Item| tx.blocking_send(Ok(item)).is_ok();
    let reader =
        rdb::Reader::new(std::io::BufReader::with_capacity(1 << 20, tap)).map_err(broken)?;
    let mut reader = if decode {
        reader
    } else {
        reader.with_dump_payloads()
    };
    let mut sent_functions = 0;
    let mut batch = Vec::with_capacity(BATCH_KEYS);
    let mut weight = 0;
    loop {
        let key = if decode {
            reader.next_entry().map_err(broken)?.map(|e| Key {
                db: e.db,
                key: e.key.clone(),
                expire_ms: e.expire_ms,
                idle: e.idle,
                freq: e.freq,
                body: Body::Entry(Box::new(e)),
            })
        } else {
            reader.next_dump().map_err(broken)?.map(|(info, dump)| Key {
                db: info.db,
                key: info.key,
                expire_ms: info.expire_ms,
                idle: info.idle,
                freq: info.freq,
                body: Body::Dump(dump),
            })
        };
        // Libraries come before the keys of the dump; send them before the
        // first key that follows them.
        if reader.functions().len() > sent_functions {
            if !batch.is_empty() && !send(Item::Keys(std::mem::take(&mut batch))) {
                return Ok(());
            }
            weight = 0;
            if !send(Item::Functions(
                reader.functions()[sent_functions..].to_vec(),
            )) {
                return Ok(());
            }
            sent_functions = reader.functions().len();
        }
        let Some(key) = key else { break };
        weight += key.weight();
        batch.push(key);
        if batch.len() >= BATCH_KEYS || weight >= BATCH_BYTES {
            if !send(Item::Keys(std::mem::take(&mut batch))) {
                return Ok(());
            }
            weight = 0;
        }
    }
    let tap = drained(reader, file)?;
    check_record(file, tap.bytes, &hex::encode(tap.sha.finalize()))?;
    if !batch.is_empty() && !send(Item::Keys(batch)) {
        return Ok(());
    }
    send(Item::End);
    Ok(())
}

/// A reader's error as a failure: the store failing to deliver the bytes,
/// or the bytes failing a check.
fn broken(file: &BackupFile, e: rdb::RdbError) -> Failure {
    let kind = match e {
        rdb::RdbError::Io { .. } => FailureKind::Storage,
        _ => FailureKind::Verification,
    };
    Failure::new(kind, format!("backup file {}: {e}", file.file_name))
}

type TapReader<R> = rdb::Reader<std::io::BufReader<Tap<R>>>;

/// The tap of a reader that reached the end of its dump, once it is sure
/// nothing follows the dump in the object (that would be corruption too).
fn drained<R: Read>(reader: TapReader<R>, file: &BackupFile) -> Result<Tap<R>, Failure> {
    let (buffered, rest) = reader.into_parts();
    let mut trailing = rest.len() + buffered.buffer().len();
    let mut tap = buffered.into_inner();
    let mut probe = [0u8; 1];
    trailing += tap
        .read(&mut probe)
        .map_err(|e| Failure::new(FailureKind::Storage, e))?;
    if trailing > 0 {
        return Err(Failure::new(
            FailureKind::Verification,
            format!(
                "backup file {}: bytes follow the end of the dump",
                file.file_name
            ),
        ));
    }
    Ok(tap)
}

/// The bytes read are the bytes the backup stored.
pub(crate) fn check_record(file: &BackupFile, size: u64, sha256: &str) -> Result<(), Failure> {
    if i64::try_from(size).ok() != Some(file.size) {
        return Err(Failure::new(
            FailureKind::Verification,
            format!(
                "backup file {}: the store holds {size} bytes, the backup recorded {}",
                file.file_name, file.size
            ),
        ));
    }
    if let Some(expected) = &file.sha256
        && expected != sha256
    {
        return Err(Failure::new(
            FailureKind::Verification,
            format!(
                "backup file {}: SHA-256 {sha256} differs from the recorded {expected}",
                file.file_name
            ),
        ));
    }
    Ok(())
}

/// What a verified file holds.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    /// The databases with keys.
    pub dbs: std::collections::BTreeSet<u64>,
    pub keys: u64,
    /// The module types of its module values.
    pub modules: std::collections::BTreeSet<String>,
}

impl Contents {
    pub(crate) fn add(&mut self, other: Contents) {
        self.dbs.extend(other.dbs);
        self.keys += other.keys;
        self.modules.extend(other.modules);
    }
}

/// Checks a stored file before anything is written to the target: its
/// size and every RDB check (magic, version, structure, CRC-64) by the
/// fast measuring reader, and which databases it holds.
pub(crate) async fn verify<R>(
    input: R,
    file: &BackupFile,
    progress: Arc<AtomicU64>,
) -> Result<Contents, Failure>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let file = file.clone();
    let run = tokio::task::spawn_blocking(move || {
        let broken = |e| broken(&file, e);
        let tap = Tap {
            inner: SyncIoBridge::new(input),
            sha: Sha256::new(),
            bytes: 0,
            progress,
        };
        let mut reader =
            rdb::Reader::new(std::io::BufReader::with_capacity(1 << 20, tap)).map_err(broken)?;
        let mut contents = Contents::default();
        while let Some(key) = reader.next_key().map_err(broken)? {
            contents.dbs.insert(key.db);
            contents.keys += 1;
            if let Some(id) = key.module_id {
                contents.modules.insert(rdb::module_type_name(id).0);
            }
        }
        let tap = drained(reader, &file)?;
        check_record(&file, tap.bytes, &hex::encode(tap.sha.finalize()))?;
        Ok(contents)
    });
    run.await
        .map_err(|e| Failure::new(FailureKind::Internal, format!("verification thread: {e}")))?
}
