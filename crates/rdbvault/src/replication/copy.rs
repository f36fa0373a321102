//! A snapshot of a replica whose master is gone, copied key by key.
//!
//! A replica refuses `PSYNC` while its link to its master is down
//! (`-NOMASTERLINK`), so when an `ha` instance's master is unreachable the
//! replication protocol cannot snapshot it. Such a replica is frozen,
//! though: writes reach it only from its master, and it expires nothing
//! itself (it waits for its master's `DEL`s). Reading every key with `SCAN`,
//! `DUMP` and `PEXPIRETIME` (`PTTL` before Redis 7) therefore gives the dataset exactly as it was when the
//! link dropped — one point in time, as a snapshot is. The copy checks before
//! and after that the replica stayed frozen (still a replica, link still
//! down, replication offset unchanged) and fails rather than mix two points
//! in time.
//!
//! The `DUMP` payloads become a real RDB dump ([`rdb::Writer`]), with the
//! function libraries of `FUNCTION DUMP` on Redis 7+, streamed through the
//! same verifier and store as a replication transfer.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use super::conn::{ConnError, Connection};
use super::resp::Reply;
use super::snapshot::SnapshotError;

/// Keys asked for per `SCAN`.
const SCAN_COUNT: &[u8] = b"1000";
/// Keys per pipelined batch of `DUMP`s at the most, and at first.
const MAX_BATCH: usize = 1000;
const FIRST_BATCH: usize = 100;
/// What one batch's replies should weigh: the batch shrinks when its values
/// are large, so memory stays near this plus the largest value.
const BATCH_BYTES: usize = 16 << 20;
/// A chunk is handed out once this much of the dump is ready.
const CHUNK: usize = 256 * 1024;
/// Largest `DUMP` payload read (a single value; Redis caps strings at 512 MiB).
const MAX_PAYLOAD: usize = 1 << 30;
/// An empty dump with no payload to take a version from: RDB 9 loads into
/// every release from 5.0 on.
const EMPTY_DUMP_VERSION: u32 = 9;

/// What a replica says of its replication while its master is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frozen {
    /// The master it last replicated from.
    pub master: String,
    /// `slave_repl_offset`: how much of the master's stream it applied.
    pub offset: u64,
    /// `master_link_down_since_seconds`: writes after that are missing.
    pub down_secs: u64,
}

impl Frozen {
    /// From `INFO replication`: `None` unless the node is a replica whose
    /// link to its master is down.
    pub fn from_info(info: &std::collections::HashMap<String, String>) -> Option<Frozen> {
        let field = |k: &str| info.get(k).map(String::as_str);
        if field("role") != Some("slave") || field("master_link_status") != Some("down") {
            return None;
        }
        Some(Frozen {
            master: format!(
                "{}:{}",
                field("master_host").unwrap_or("?"),
                field("master_port").unwrap_or("?")
            ),
            offset: field("slave_repl_offset")?.parse().ok()?,
            down_secs: field("master_link_down_since_seconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    }
}

/// A database to copy: number, keys and keys with a TTL (for `RESIZEDB`).
#[derive(Debug, Clone, Copy)]
struct Db {
    number: u64,
    keys: u64,
    expires: u64,
}

/// `db0:keys=3,expires=1,avg_ttl=0` lines of `INFO keyspace`.
fn keyspace(info: &std::collections::HashMap<String, String>) -> Vec<Db> {
    let mut dbs: Vec<Db> = info
        .iter()
        .filter_map(|(k, v)| {
            let number = k.strip_prefix("db")?.parse().ok()?;
            let field = |name: &str| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|n| n.parse().ok())
            };
            Some(Db {
                number,
                keys: field("keys")?,
                expires: field("expires").unwrap_or(0),
            })
        })
        .collect();
    dbs.sort_by_key(|d| d.number);
    dbs
}

/// A key-by-key copy under way: call [`next_chunk`](ReplicaCopy::next_chunk)
/// until it returns `None`.
pub struct ReplicaCopy {
    conn: Connection,
    frozen: Frozen,
    redis_version: String,
    /// Created at the first payload, whose RDB version the dump takes.
    writer: Option<rdb::Writer>,
    functions: Option<Vec<u8>>,
    /// Redis 7+ tells a key's expiry exactly (`PEXPIRETIME`); older servers
    /// only the time left (`PTTL`), counted from our clock.
    absolute_expiry: bool,
    dbs: std::vec::IntoIter<Db>,
    /// The database being scanned and the cursor to continue from.
    scanning: Option<(Db, Vec<u8>, bool)>,
    /// Keys of `queue_db` read by `SCAN` and not copied yet.
    queue: std::collections::VecDeque<Vec<u8>>,
    queue_db: Option<Db>,
    /// Keys per `DUMP` batch now.
    batch: usize,
    /// 128-bit digests of the keys written: `SCAN` may return a key twice,
    /// and a dump with a key twice does not load.
    seen: HashSet<u128>,
    /// The database the dump's last `SELECTDB` opened.
    selected: Option<u64>,
    hasher: (std::hash::RandomState, std::hash::RandomState),
    out: Vec<u8>,
    finished: bool,
    timeout: Duration,
}

impl ReplicaCopy {
    /// Checks that the node is a frozen replica and reads what the dump
    /// starts with; `timeout` bounds each batch of commands.
    pub async fn start(
        mut conn: Connection,
        timeout: Duration,
    ) -> Result<ReplicaCopy, SnapshotError> {
        let frozen = frozen_now(&mut conn).await?;
        let info = conn.info("everything").await?;
        let redis_version = info
            .get("redis_version")
            .cloned()
            .unwrap_or_else(|| "0.0.0".into());
        // Redis 7+ keeps function libraries in the dump; 6.2 has none.
        let functions = match conn
            .request_up_to(&[b"FUNCTION", b"DUMP"], super::resp::MAX_BULK)
            .await?
        {
            Reply::Bulk(Some(payload)) => Some(payload),
            Reply::Error(e) if e.contains("unknown command") => None,
            Reply::Error(e) => {
                return Err(ConnError::refused(conn.addr(), &[b"FUNCTION", b"DUMP"], e).into());
            }
            other => {
                return Err(protocol(&conn, format!("FUNCTION DUMP answered {other:?}")));
            }
        };
        let absolute_expiry = redis_version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|major| major >= 7);
        Ok(ReplicaCopy {
            conn,
            frozen,
            absolute_expiry,
            redis_version,
            writer: None,
            functions,
            dbs: keyspace(&info).into_iter(),
            scanning: None,
            queue: Default::default(),
            queue_db: None,
            batch: FIRST_BATCH,
            seen: HashSet::new(),
            selected: None,
            hasher: Default::default(),
            out: Vec::new(),
            finished: false,
            timeout,
        })
    }

    /// The next piece of the dump, or `None` once it is complete.
    pub async fn next_chunk(&mut self) -> Result<Option<&[u8]>, SnapshotError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            if self.writer.as_ref().is_some_and(|w| w.pending() >= CHUNK) {
                self.out = self
                    .writer
                    .as_mut()
                    .map(rdb::Writer::drain)
                    .unwrap_or_default();
                return Ok(Some(&self.out));
            }
            if !self.step().await? {
                // Everything read: the replica must not have moved meanwhile.
                let now = frozen_now(&mut self.conn).await?;
                if now.offset != self.frozen.offset || now.master != self.frozen.master {
                    return Err(SnapshotError::NotFrozen {
                        addr: self.conn.addr().to_string(),
                        reason: format!(
                            "its replication offset moved from {} to {} during the copy",
                            self.frozen.offset, now.offset
                        ),
                    });
                }
                let writer = match self.writer.take() {
                    Some(w) => w,
                    None => self.writer_for(EMPTY_DUMP_VERSION)?,
                };
                self.out = writer.finish();
                self.finished = true;
                return Ok(Some(&self.out));
            }
        }
    }

    /// One batch of keys copied, or the next `SCAN` page read; false when
    /// every database is done.
    async fn step(&mut self) -> Result<bool, SnapshotError> {
        if let Some(db) = self.queue_db
            && !self.queue.is_empty()
        {
            let n = self.batch.min(self.queue.len());
            let keys: Vec<Vec<u8>> = self.queue.drain(..n).collect();
            let bytes = self.copy_keys(db, &keys).await?;
            // Keep a batch's replies near BATCH_BYTES whatever the values weigh.
            self.batch = if bytes > BATCH_BYTES {
                (self.batch / 4).max(1)
            } else if bytes < BATCH_BYTES / 16 {
                (self.batch * 2).min(MAX_BATCH)
            } else {
                self.batch
            };
            return Ok(true);
        }
        let (db, cursor, selected) = match self.scanning.take() {
            Some(s) => s,
            None => match self.dbs.next() {
                Some(db) => (db, b"0".to_vec(), false),
                None => return Ok(false),
            },
        };
        if !selected {
            let n = db.number.to_string();
            self.conn.command(&[b"SELECT", n.as_bytes()]).await?;
        }
        let (next, keys) = self.scan(&cursor).await?;
        self.queue.extend(keys);
        self.queue_db = Some(db);
        if next != b"0" {
            self.scanning = Some((db, next, true));
        }
        Ok(true)
    }

    async fn scan(&mut self, cursor: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), SnapshotError> {
        let reply = self
            .conn
            .command(&[b"SCAN", cursor, b"COUNT", SCAN_COUNT])
            .await?;
        let Reply::Array(Some(mut parts)) = reply else {
            return Err(protocol(
                &self.conn,
                "SCAN answered something else than an array".into(),
            ));
        };
        let keys = match parts.pop() {
            Some(Reply::Array(Some(keys))) => keys,
            _ => return Err(protocol(&self.conn, "SCAN's answer has no key list".into())),
        };
        let next = parts
            .pop()
            .and_then(|c| c.as_bytes().map(<[u8]>::to_vec))
            .ok_or_else(|| protocol(&self.conn, "SCAN's answer has no cursor".into()))?;
        let keys = keys
            .into_iter()
            .filter_map(|k| match k {
                Reply::Bulk(Some(k)) => Some(k),
                _ => None,
            })
            .collect();
        Ok((next, keys))
    }

    /// Copies `keys` of `db`; returns the bytes their payloads weighed.
    async fn copy_keys(&mut self, db: Db, keys: &[Vec<u8>]) -> Result<usize, SnapshotError> {
        let expiry: &[u8] = if self.absolute_expiry {
            b"PEXPIRETIME"
        } else {
            b"PTTL"
        };
        let mut commands = Vec::with_capacity(keys.len() * 2);
        for key in keys {
            commands.push(vec![&b"DUMP"[..], key]);
            commands.push(vec![expiry, key]);
        }
        let replies = self
            .conn
            .pipeline(&commands, MAX_PAYLOAD, self.timeout)
            .await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut bytes = 0;
        for (key, pair) in keys.iter().zip(replies.chunks(2)) {
            let (payload, ttl) = match pair {
                // Gone, or logically expired (a replica hides those).
                [Reply::Bulk(None), _] | [_, Reply::Int(-2)] => continue,
                [Reply::Bulk(Some(p)), Reply::Int(ttl)] => (p, *ttl),
                [Reply::Error(e), _] | [_, Reply::Error(e)] => {
                    let command: &[u8] = if matches!(pair[0], Reply::Error(_)) {
                        b"DUMP"
                    } else {
                        expiry
                    };
                    return Err(ConnError::refused(self.conn.addr(), &[command], e.clone()).into());
                }
                other => {
                    return Err(protocol(
                        &self.conn,
                        format!("DUMP and its expiry: {other:?}"),
                    ));
                }
            };
            if !self.seen.insert(self.digest(db.number, key)) {
                continue;
            }
            let expire_at = match (ttl, self.absolute_expiry) {
                (t, _) if t < 0 => None,
                (at, true) => Some(at),
                (left, false) => Some(now_ms.saturating_add(left)),
            };
            let writer = match self.writer.take() {
                Some(w) => w,
                None => {
                    let version = rdb::payload_version(payload).map_err(|e| self.bad(e))?;
                    self.writer_for(version)?
                }
            };
            let writer = self.writer.insert(writer);
            if self.selected != Some(db.number) {
                writer.select_db(db.number, db.keys, db.expires);
                self.selected = Some(db.number);
            }
            let written = writer.entry(key, expire_at, payload);
            written.map_err(|e| self.bad(e))?;
            bytes += payload.len();
        }
        Ok(bytes)
    }

    fn digest(&self, db: u64, key: &[u8]) -> u128 {
        let half = |state: &std::hash::RandomState| {
            let mut h = state.build_hasher();
            h.write_u64(db);
            h.write(key);
            h.finish()
        };
        u128::from(half(&self.hasher.0)) << 64 | u128::from(half(&self.hasher.1))
    }

    /// A writer for dumps of `version`, with the aux fields and functions.
    fn writer_for(&mut self, version: u32) -> Result<rdb::Writer, SnapshotError> {
        let version = match &self.functions {
            // The libraries fix the version: their payload carries it.
            Some(f) => rdb::payload_version(f).map_err(|e| self.bad(e))?,
            None => version,
        };
        let mut w = rdb::Writer::new(version);
        w.aux("redis-ver", &self.redis_version);
        w.aux("redis-bits", "64");
        w.aux("ctime", &chrono::Utc::now().timestamp().to_string());
        w.aux(
            "rdbvault-copy",
            &format!(
                "key by key from a replica of {} (link down {} s, offset {})",
                self.frozen.master, self.frozen.down_secs, self.frozen.offset
            ),
        );
        if let Some(f) = self.functions.take() {
            w.functions(&f).map_err(|e| self.bad(e))?;
        }
        Ok(w)
    }

    fn bad(&self, e: rdb::PayloadError) -> SnapshotError {
        protocol(&self.conn, e.to_string())
    }

    pub async fn close(self) {
        self.conn.shutdown().await;
    }
}

async fn frozen_now(conn: &mut Connection) -> Result<Frozen, SnapshotError> {
    let info = conn.info("replication").await?;
    Frozen::from_info(&info).ok_or_else(|| SnapshotError::NotFrozen {
        addr: conn.addr().to_string(),
        reason: "it is no longer a replica cut off from its master (its master is back, or it was promoted)".into(),
    })
}

fn protocol(conn: &Connection, reason: String) -> SnapshotError {
    SnapshotError::Protocol {
        addr: conn.addr().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(text: &str) -> std::collections::HashMap<String, String> {
        super::super::conn::parse_info(text)
    }

    #[test]
    fn frozen_replicas_and_keyspaces() {
        let down = info(
            "role:slave\nmaster_host:10.0.0.1\nmaster_port:6379\nmaster_link_status:down\n\
             slave_repl_offset:4242\nmaster_link_down_since_seconds:17\n",
        );
        assert_eq!(
            Frozen::from_info(&down),
            Some(Frozen {
                master: "10.0.0.1:6379".into(),
                offset: 4242,
                down_secs: 17
            })
        );
        let up = info("role:slave\nmaster_link_status:up\nslave_repl_offset:1\n");
        assert_eq!(Frozen::from_info(&up), None);
        assert_eq!(Frozen::from_info(&info("role:master\n")), None);

        let dbs = keyspace(&info(
            "# Keyspace\ndb5:keys=3,expires=1,avg_ttl=0\ndb0:keys=10,expires=0,avg_ttl=0\n",
        ));
        let got: Vec<_> = dbs.iter().map(|d| (d.number, d.keys, d.expires)).collect();
        assert_eq!(got, vec![(0, 10, 0), (5, 3, 1)]);
    }
}
