//! An AOF-format backup file, generated from the snapshot as it streams.
//!
//! The snapshot still arrives as an RDB payload, and the caller still
//! verifies it as one (magic, version, CRC-64) chunk by chunk; this module
//! decodes the same bytes and writes each key as the commands that rebuild
//! it, in RESP: `SELECT` when the database changes, the key's native
//! commands ending with its `PEXPIREAT` ([`rdb::commands::rebuild`], for the
//! source's own release), function libraries as `FUNCTION LOAD REPLACE`.
//! That is what `redis-cli --pipe` sends and what Redis's append-only loader
//! replays.
//!
//! Two things differ from the dump:
//! - keys already expired when the file is written are left out: a master
//!   loading the RDB would drop them too, and a `PEXPIREAT` in the past
//!   would only delete them again;
//! - a module value, which no native command recreates, is written as
//!   `RESTORE key 0 payload REPLACE` of its `DUMP` payload: it loads only
//!   into a server that loads the module (as the RDB file does), and each is
//!   counted by module type in [`Generated::modules`] and logged, never
//!   dropped.
//!
//! The `rdb` reader is synchronous, so it runs on a blocking thread fed
//! payload chunks through a bounded channel ([`Input`]) and handing AOF
//! bytes back through another ([`Output`]): memory is bounded by the
//! largest value and a few chunks, whatever the size of the dump, and a
//! slow store slows the socket rather than filling memory.

use std::collections::BTreeMap;
use std::io::Read;

use rdb::commands::{self, Options, Target, Unsupported};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::jobs::failure::{Failure, FailureKind};

/// Payload chunks (256 KiB from a transfer) queued ahead of the decoder.
const CHUNKS_IN_FLIGHT: usize = 4;
/// AOF bytes handed to the upload at once (one command may be longer).
const OUT_CHUNK: usize = 1 << 20;
/// AOF chunks queued ahead of the upload.
const OUT_IN_FLIGHT: usize = 4;
/// No `DEL` first (the file is loaded into an empty server, as Redis's own
/// AOF is), and at most 1000 elements a command, so no command is huge.
const OPTIONS: Options = Options {
    delete_first: false,
    max_args: 1000,
};

/// Why the generator stopped before the end of the dump.
#[derive(Debug, thiserror::Error)]
pub(super) enum AofError {
    /// The reader refused the payload. Unless the verifier refused it too
    /// (then the snapshot is corrupt, and that is the failure), the dump is
    /// sound and holds something the reader cannot decode.
    #[error("decoding the snapshot failed: {0}")]
    Decode(#[from] rdb::RdbError),
    /// A value no command sequence recreates on the target.
    #[error("key {key} (db {db}): {source}")]
    Unsupported {
        db: u64,
        key: String,
        #[source]
        source: Unsupported,
    },
    /// The receiving side went away (the backup stopped).
    #[error("the upload stopped taking the generated commands")]
    Stopped,
    /// The thread panicked or could not be joined.
    #[error("the AOF generator thread failed: {0}")]
    Thread(String),
}

impl AofError {
    /// The failure of a backup whose payload passed verification: the
    /// snapshot is sound, so a decode error means it cannot be converted,
    /// not that it is corrupt.
    pub(super) fn into_failure(self) -> Failure {
        match self {
            AofError::Decode(_) | AofError::Unsupported { .. } => Failure::new(
                FailureKind::Incompatible,
                format!(
                    "the snapshot passed verification but cannot be written as AOF: {self}; \
                     back it up with backup_format rdb"
                ),
            ),
            AofError::Stopped | AofError::Thread(_) => Failure::new(FailureKind::Internal, self),
        }
    }
}

/// What one AOF file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Generated {
    /// The release the commands were chosen for (the source's own).
    pub target: Target,
    /// Keys written.
    pub keys: u64,
    /// Keys already expired when they were read, left out.
    pub expired: u64,
    /// Function libraries written.
    pub functions: usize,
    /// Module values written as `RESTORE` payloads, by module type name.
    pub modules: BTreeMap<String, u64>,
    /// Keys written without something the target cannot hold exactly
    /// (such as pending entries of deleted stream messages), by kind.
    pub losses: BTreeMap<String, u64>,
}

impl Generated {
    /// Tells the operator what the file holds, and, as warnings, what a
    /// server loading it needs (the modules) or will not get (losses).
    pub(super) fn log(&self, backup_id: &str, file: &str) {
        tracing::info!(
            backup_id, file, target = %self.target, keys = self.keys,
            expired_left_out = self.expired, functions = self.functions,
            "AOF generated"
        );
        for (module, values) in &self.modules {
            tracing::warn!(
                backup_id,
                file,
                module,
                values,
                "module values written as RESTORE of their DUMP payload: \
                 they load only into a server that loads the module"
            );
        }
        for (loss, keys) in &self.losses {
            tracing::warn!(
                backup_id,
                file,
                loss,
                keys,
                "keys written without part of their state"
            );
        }
    }
}

/// Starts a generator; keys expiring at or before `now_ms` (unix ms) are
/// left out.
pub(super) fn start(now_ms: i64) -> (Input, Output) {
    let (in_tx, in_rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let (out_tx, out_rx) = mpsc::channel(OUT_IN_FLIGHT);
    let thread = tokio::task::spawn_blocking(move || {
        let input = Chunks {
            rx: in_rx,
            chunk: Vec::new(),
            pos: 0,
        };
        generate(input, &out_tx, now_ms)
    });
    (Input { tx: in_tx }, Output { rx: out_rx, thread })
}

/// The payload's way in. Dropping it ends the payload.
pub(super) struct Input {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Input {
    /// Queues `chunk` for the generator, waiting while it is behind. False
    /// once the generator has stopped (done, or failed: [`Output::finish`]
    /// says which); the caller goes on verifying the payload without it.
    pub(super) async fn send(&self, chunk: &[u8]) -> bool {
        self.tx.send(chunk.to_vec()).await.is_ok()
    }
}

/// The AOF bytes' way out, and the generator's verdict.
pub(super) struct Output {
    rx: mpsc::Receiver<Vec<u8>>,
    thread: JoinHandle<Result<Generated, AofError>>,
}

impl Output {
    /// The next bytes of the file; `None` once the generator has stopped.
    pub(super) async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// Whether the file is complete: what it holds, or why it is not. Bytes
    /// not yet received by [`recv`](Self::recv) are discarded.
    pub(super) async fn finish(self) -> Result<Generated, AofError> {
        let Output { rx, thread } = self;
        // Unblocks a generator still waiting to hand over bytes.
        drop(rx);
        thread.await.map_err(|e| AofError::Thread(e.to_string()))?
    }
}

/// The payload chunks as a byte stream for the synchronous reader; the end
/// of the stream is the [`Input`] being dropped.
struct Chunks {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Encoded commands, handed over a megabyte at a time.
struct Sink<'a> {
    buf: Vec<u8>,
    out: &'a mpsc::Sender<Vec<u8>>,
}

impl Sink<'_> {
    fn command<A: AsRef<[u8]>>(&mut self, cmd: &[A]) -> Result<(), AofError> {
        commands::encode(cmd, &mut self.buf);
        if self.buf.len() >= OUT_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AofError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(OUT_CHUNK));
        self.out.blocking_send(full).map_err(|_| AofError::Stopped)
    }
}

fn generate(
    input: Chunks,
    out: &mpsc::Sender<Vec<u8>>,
    now_ms: i64,
) -> Result<Generated, AofError> {
    let mut reader = rdb::Reader::new(input)?;
    let version = reader.version();
    let target = source_release(reader.aux(), version, reader.magic());
    let mut sink = Sink {
        buf: Vec::with_capacity(OUT_CHUNK),
        out,
    };
    let mut made = Generated {
        target,
        keys: 0,
        expired: 0,
        functions: 0,
        modules: BTreeMap::new(),
        losses: BTreeMap::new(),
    };
    let mut db = None;
    loop {
        let entry = reader.next_entry()?;
        // Libraries precede the keys in a dump; load them before the first
        // key read after them (and at the end, for a dump with no key).
        for code in &reader.functions()[made.functions..] {
            sink.command(&commands::function_load(code))?;
        }
        made.functions = reader.functions().len();
        let Some(entry) = entry else { break };
        if entry.expire_ms.is_some_and(|at| at <= now_ms) {
            made.expired += 1;
            continue;
        }
        let key_commands = match commands::rebuild(&entry, target, OPTIONS) {
            Ok(rebuilt) => {
                for loss in &rebuilt.losses {
                    *made.losses.entry(loss.to_string()).or_default() += 1;
                }
                rebuilt.commands
            }
            Err(Unsupported::Module { name, encver }) => {
                let restore = commands::restore_module(&entry, version).ok_or_else(|| {
                    unsupported(
                        &entry,
                        Unsupported::Module {
                            name: name.clone(),
                            encver,
                        },
                    )
                })?;
                *made.modules.entry(name).or_default() += 1;
                restore
            }
            Err(other) => return Err(unsupported(&entry, other)),
        };
        if db != Some(entry.db) {
            sink.command(&commands::select(entry.db))?;
            db = Some(entry.db);
        }
        for cmd in &key_commands {
            sink.command(cmd)?;
        }
        made.keys += 1;
    }
    sink.flush()?;
    Ok(made)
}

fn unsupported(entry: &rdb::Entry, source: Unsupported) -> AofError {
    const SHOWN: usize = 200;
    let mut key = entry.key[..entry.key.len().min(SHOWN)]
        .escape_ascii()
        .to_string();
    if entry.key.len() > SHOWN {
        key.push_str("...");
    }
    AofError::Unsupported {
        db: entry.db,
        key: format!("\"{key}\""),
        source,
    }
}

/// The release that wrote the dump: its `redis-ver` aux field, else (a dump
/// without one) the oldest release that writes its RDB version, whose
/// commands the source has too.
fn source_release(aux: &[(String, String)], version: u32, magic: rdb::Magic) -> Target {
    if let Some(t) = aux
        .iter()
        .find(|(k, _)| k == "redis-ver")
        .and_then(|(_, v)| Target::parse(v))
    {
        return t;
    }
    if magic == rdb::Magic::Valkey {
        // Valkey reports itself as Redis 7.2 (see `Target::parse`).
        return Target::new(7, 2);
    }
    let (major, minor) = match version {
        0..=6 => (2, 6),
        7 => (3, 2),
        8 => (4, 0),
        9 => (5, 0),
        10 => (7, 0),
        11 => (7, 2),
        _ => (7, 4),
    };
    Target::new(major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Type 0 (a string) as a `DUMP` payload of RDB `version`; shorter
    /// than 64 bytes, so that its length is one byte.
    fn string_payload(value: &[u8], version: u32) -> Vec<u8> {
        assert!(value.len() < 64);
        let mut body = vec![u8::try_from(value.len()).unwrap()];
        body.extend_from_slice(value);
        rdb::dump_payload(0, &body, version)
    }

    fn resp(commands: &[&[&[u8]]]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in commands {
            commands::encode(c, &mut out);
        }
        out
    }

    /// Feeds `dump` in small chunks while draining the output, as the
    /// backup does.
    async fn run(dump: &[u8], now_ms: i64) -> (Vec<u8>, Result<Generated, AofError>) {
        let (input, mut output) = start(now_ms);
        let feed = async move {
            for chunk in dump.chunks(7) {
                if !input.send(chunk).await {
                    break;
                }
            }
        };
        let drain = async {
            let mut bytes = Vec::new();
            while let Some(b) = output.recv().await {
                bytes.extend(b);
            }
            (bytes, output.finish().await)
        };
        let ((), result) = tokio::join!(feed, drain);
        result
    }

    #[tokio::test]
    async fn keys_become_commands_with_select_and_pexpireat() {
        let mut w = rdb::Writer::new(9);
        w.aux("redis-ver", "6.2.14");
        w.select_db(0, 2, 1);
        w.entry(b"a", Some(1_900_000_000_000), &string_payload(b"x", 9))
            .unwrap();
        w.entry(b"gone", Some(1_000), &string_payload(b"y", 9))
            .unwrap();
        w.select_db(3, 1, 0);
        w.entry(b"b", None, &string_payload(b"z", 9)).unwrap();
        let mut dump = w.drain();
        dump.extend(w.finish());

        let (bytes, result) = run(&dump, 1_800_000_000_000).await;
        let made = result.unwrap();
        assert_eq!(
            bytes,
            resp(&[
                &[b"SELECT", b"0"],
                &[b"SET", b"a", b"x"],
                &[b"PEXPIREAT", b"a", b"1900000000000"],
                &[b"SELECT", b"3"],
                &[b"SET", b"b", b"z"],
            ])
        );
        assert_eq!(made.target, Target::new(6, 2));
        assert_eq!((made.keys, made.expired, made.functions), (2, 1, 0));
        assert!(made.modules.is_empty() && made.losses.is_empty());
    }

    #[tokio::test]
    async fn a_truncated_dump_is_an_error_not_a_short_file() {
        let mut w = rdb::Writer::new(9);
        w.select_db(0, 1, 0);
        w.entry(b"a", None, &string_payload(b"x", 9)).unwrap();
        let mut dump = w.drain();
        dump.extend(w.finish());
        dump.truncate(dump.len() - 3);
        let (_, result) = run(&dump, 0).await;
        let err = result.unwrap_err();
        assert!(matches!(err, AofError::Decode(_)), "{err}");
        assert_eq!(err.into_failure().kind, FailureKind::Incompatible);
    }

    /// A backup that stops (its upload gone) stops the thread too: it is
    /// never left blocked on a full channel, and the payload's sender is
    /// then refused rather than left waiting.
    #[tokio::test]
    async fn a_dropped_output_stops_the_thread() {
        let mut w = rdb::Writer::new(9);
        w.select_db(0, 100_000, 0);
        let value = string_payload(&[b'v'; 50], 9);
        for i in 0..100_000 {
            w.entry(format!("key-{i}").as_bytes(), None, &value)
                .unwrap();
        }
        let mut dump = w.drain();
        dump.extend(w.finish());
        // More AOF than the output channel holds, so the thread must block.
        assert!(dump.len() > (OUT_IN_FLIGHT + 1) * OUT_CHUNK);
        let (input, output) = start(0);
        let feed = tokio::spawn(async move {
            for chunk in dump.chunks(64 * 1024) {
                if !input.send(chunk).await {
                    return false;
                }
            }
            true
        });
        let err = output.finish().await.unwrap_err();
        assert!(matches!(err, AofError::Stopped), "{err}");
        assert!(
            !feed.await.unwrap(),
            "the input refuses chunks once stopped"
        );
    }

    #[test]
    fn the_release_comes_from_redis_ver_or_the_rdb_version() {
        let aux = |v: &str| vec![("redis-ver".to_string(), v.to_string())];
        let redis = rdb::Magic::Redis;
        assert_eq!(source_release(&aux("7.0.15"), 10, redis), Target::new(7, 0));
        assert_eq!(source_release(&[], 9, redis), Target::new(5, 0));
        assert_eq!(source_release(&[], 12, redis), Target::new(7, 4));
        assert_eq!(source_release(&aux("junk"), 10, redis), Target::new(7, 0));
        assert_eq!(
            source_release(&[], 80, rdb::Magic::Valkey),
            Target::new(7, 2)
        );
    }
}
