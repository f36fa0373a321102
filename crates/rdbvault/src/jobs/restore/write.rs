//! Writing keys into the target: deep pipelines of `RESTORE` (or of the
//! native commands a value is rebuilt with), one connection per node
//! written to, routed by slot in a cluster.
//!
//! Each node's connection has a *lane*: commands are encoded into a batch;
//! a full batch is sent while up to [`DEPTH`] earlier ones are still
//! unanswered, so the target's one thread always has work queued and no key
//! waits for a round trip. Replies are read a batch at a time, in order;
//! each key's reply decides its fate: written, or sent again (`BUSYKEY` in
//! `merge` mode with `REPLACE`, a payload the target refuses rebuilt as
//! commands, `MOVED`/`ASK` to the node the cluster names), or skipped and
//! counted, or the restore fails.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::read::{Body, Key};
use crate::jobs::failure::{Failure, FailureKind};
use crate::meta::{KeyCounts, RestoreMode};
use crate::redis_addr::RedisAddr;
use crate::replication::cluster::{SLOTS, key_slot};
use crate::replication::resp::{self, Reply};
use crate::replication::{ConnError, Connection, Endpoint};

/// Bytes of encoded commands per batch, and unanswered batches per lane.
/// Measured: 1 MiB × 2 keeps a target busy; memory stays a few MiB a lane.
const BATCH: usize = 1 << 20;
const DEPTH: usize = 2;
/// Elements per rebuilt command (a big list becomes several RPUSHes).
const MAX_ARGS: usize = 1000;
/// Longest reply line or bulk accepted from the target (replies here are
/// `+OK`, integers and errors).
const MAX_REPLY: usize = 1 << 20;

/// How keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// `RESTORE` payloads; with `fallback`, one the target refuses is
    /// rebuilt with commands instead of failing the restore.
    Restore { fallback: bool },
    /// Every value rebuilt with native commands.
    Commands,
}

/// What a restore was asked to do, as the writers need it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub mode: RestoreMode,
    pub how: How,
    pub strict: bool,
    pub target: rdb::commands::Target,
    /// Longest wait for a reply or a write.
    pub stall: Duration,
    pub connect: Duration,
}

/// Keys written, rebuilt, replaced and skipped, summed over every file.
#[derive(Default)]
pub(crate) struct Tally {
    restored: AtomicI64,
    rebuilt: AtomicI64,
    replaced: AtomicI64,
    skipped: AtomicI64,
    reasons: Mutex<BTreeMap<String, i64>>,
}

impl Tally {
    fn skip(&self, reason: impl Into<String>) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.reasons.lock() {
            *r.entry(reason.into()).or_default() += 1;
        }
    }

    pub(crate) fn counts(&self) -> KeyCounts {
        let detail = self.reasons.lock().ok().and_then(|r| {
            (!r.is_empty()).then(|| {
                r.iter()
                    .map(|(why, n)| format!("{n} {why}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        });
        KeyCounts {
            restored: self.restored.load(Ordering::Relaxed),
            rebuilt: self.rebuilt.load(Ordering::Relaxed),
            replaced: self.replaced.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            skipped_detail: detail,
        }
    }

    /// Keys the target loaded itself (`replicate`).
    pub(crate) fn loaded(&self, keys: i64) {
        self.restored.fetch_add(keys, Ordering::Relaxed);
    }

    /// Keys written so far, however.
    pub(crate) fn written(&self) -> i64 {
        self.restored.load(Ordering::Relaxed) + self.rebuilt.load(Ordering::Relaxed)
    }
}

/// Where a key goes.
enum Route {
    /// A single server (or an `ha` master): lane 0.
    One,
    /// A cluster: the lane of each slot's master.
    Slots(Vec<usize>),
}

/// What a queued command is, so its reply can be judged.
enum Op {
    Select,
    Asking,
    FunctionLoad,
    /// One `RESTORE` of the key; `replace` when sent with `REPLACE`.
    Restore {
        key: Key,
        replace: bool,
    },
    /// The key rebuilt as `count` commands (a `DEL` first in `merge` mode),
    /// each preceded by `ASKING` when `asking`.
    Commands {
        key: Key,
        count: usize,
        asking: bool,
    },
}

struct Lane {
    conn: Connection,
    addr: RedisAddr,
    out: Vec<u8>,
    queued: Vec<Op>,
    inflight: VecDeque<Vec<Op>>,
    /// The database the commands queued so far leave selected.
    db: u64,
}

/// How a key is sent again after its reply asked for it.
#[derive(Default, Clone, Copy)]
struct Resend {
    /// Rebuilt with commands (its payload was refused).
    rebuild: bool,
    /// `ASKING` first: the slot is migrating to the node it goes to.
    asking: bool,
    /// `RESTORE ... REPLACE` (`merge` mode met an existing key).
    replace: bool,
}

impl Resend {
    const REPLACE: Resend = Resend {
        rebuild: false,
        asking: false,
        replace: true,
    };
    const REBUILD: Resend = Resend {
        rebuild: true,
        asking: false,
        replace: false,
    };

    /// To the node a redirection named; a decoded key can only go out as
    /// commands.
    fn elsewhere(key: &Key, asking: bool) -> Resend {
        Resend {
            rebuild: matches!(key.body, Body::Entry(_)),
            asking,
            replace: false,
        }
    }
}

/// What a reply asks for: the key goes out again, differently.
enum Again {
    Replace(Key),
    Rebuild(Key),
    Moved(Key, RedisAddr),
    Ask(Key, RedisAddr),
}

pub(crate) struct Writer<'a> {
    lanes: Vec<Lane>,
    route: Route,
    template: Endpoint,
    settings: Settings,
    tally: &'a Tally,
    now_ms: i64,
}

impl<'a> Writer<'a> {
    /// A writer to one server.
    pub(crate) async fn single(
        endpoint: &Endpoint,
        settings: Settings,
        tally: &'a Tally,
    ) -> Result<Writer<'a>, Failure> {
        let lane = Lane::open(endpoint, settings.connect).await?;
        Ok(Writer {
            lanes: vec![lane],
            route: Route::One,
            template: endpoint.clone(),
            settings,
            tally,
            now_ms: chrono::Utc::now().timestamp_millis(),
        })
    }

    /// A writer to a cluster's masters, each slot routed to its owner.
    pub(crate) async fn cluster(
        template: &Endpoint,
        masters: &[(RedisAddr, Vec<(u16, u16)>)],
        settings: Settings,
        tally: &'a Tally,
    ) -> Result<Writer<'a>, Failure> {
        let mut lanes = Vec::with_capacity(masters.len());
        let mut slots = vec![0usize; SLOTS as usize];
        for (i, (addr, ranges)) in masters.iter().enumerate() {
            lanes.push(Lane::open(&template.at(addr), settings.connect).await?);
            for &(a, b) in ranges {
                for s in a..=b {
                    if let Some(slot) = slots.get_mut(usize::from(s)) {
                        *slot = i;
                    }
                }
            }
        }
        Ok(Writer {
            lanes,
            route: Route::Slots(slots),
            template: template.clone(),
            settings,
            tally,
            now_ms: chrono::Utc::now().timestamp_millis(),
        })
    }

    /// Loads function libraries on every node written to.
    pub(crate) async fn functions(&mut self, libraries: &[Vec<u8>]) -> Result<(), Failure> {
        for i in 0..self.lanes.len() {
            for code in libraries {
                let cmd = rdb::commands::function_load(code);
                self.lanes[i].queue(&cmd, Op::FunctionLoad);
            }
            self.send(i).await?;
        }
        Ok(())
    }

    /// Queues a key; sends its lane's batch once full.
    pub(crate) async fn write(&mut self, key: Key) -> Result<(), Failure> {
        if key.expire_ms.is_some_and(|at| at <= self.now_ms) {
            self.tally.skip("already expired");
            return Ok(());
        }
        let lane = self.lane_of(&key.key);
        self.push(lane, key, Resend::default())?;
        if self.lanes[lane].out.len() >= BATCH {
            self.send(lane).await?;
        }
        Ok(())
    }

    /// Sends what is queued and waits until every key has its answer.
    pub(crate) async fn finish(mut self) -> Result<(), Failure> {
        loop {
            let mut idle = true;
            for i in 0..self.lanes.len() {
                if !self.lanes[i].queued.is_empty() {
                    self.send(i).await?;
                    idle = false;
                }
                while !self.lanes[i].inflight.is_empty() {
                    self.settle(i).await?;
                    idle = false;
                }
            }
            if idle {
                break;
            }
        }
        for lane in self.lanes {
            lane.conn.shutdown().await;
        }
        Ok(())
    }

    fn lane_of(&self, key: &[u8]) -> usize {
        match &self.route {
            Route::One => 0,
            Route::Slots(slots) => slots.get(usize::from(key_slot(key))).copied().unwrap_or(0),
        }
    }

    /// Encodes `key` into lane `i`: as `RESTORE`, or rebuilt when the
    /// method says so or `resend` asks.
    fn push(&mut self, i: usize, key: Key, resend: Resend) -> Result<(), Failure> {
        let settings = self.settings;
        let replace = settings.mode == RestoreMode::Replace || resend.replace;
        let cluster = matches!(self.route, Route::Slots(_));
        let lane = &mut self.lanes[i];
        if !cluster && lane.db != key.db {
            lane.queue(&rdb::commands::select(key.db), Op::Select);
            lane.db = key.db;
        }
        let as_commands = resend.rebuild || settings.how == How::Commands;
        if !as_commands && let Body::Dump(payload) = &key.body {
            if resend.asking {
                lane.queue(&[b"ASKING".to_vec()], Op::Asking);
            }
            encode_restore(&mut lane.out, &key, payload, replace);
            lane.queued.push(Op::Restore { key, replace });
            return Ok(());
        }
        let rebuilt = match &key.body {
            // Replayed from an AOF backup: its commands as stored.
            Body::Commands(_) => None,
            _ => match self.rebuild(&key)? {
                Some(commands) => Some(commands),
                None => return Ok(()),
            },
        };
        let lane = &mut self.lanes[i];
        let stored = match &key.body {
            Body::Commands(commands) => commands.as_slice(),
            _ => &[],
        };
        // `merge`: a key of the same name is replaced, not mixed into; the
        // `DEL` (even before a `SET`) says whether it existed.
        let delete =
            (settings.mode == RestoreMode::Merge).then(|| vec![b"DEL".to_vec(), key.key.clone()]);
        let commands = rebuilt.as_deref().unwrap_or(stored);
        let count = commands.len() + usize::from(delete.is_some());
        for cmd in delete.iter().chain(commands) {
            if resend.asking {
                rdb::commands::encode(&[b"ASKING"], &mut lane.out);
            }
            rdb::commands::encode(cmd, &mut lane.out);
        }
        lane.queued.push(Op::Commands {
            key,
            count,
            asking: resend.asking,
        });
        Ok(())
    }

    /// The native commands that rebuild `key` on the target; `None` when it
    /// cannot be rebuilt and is skipped (counted, with why).
    fn rebuild(&self, key: &Key) -> Result<Option<Vec<rdb::commands::Command>>, Failure> {
        let strict = self.settings.strict;
        let entry = entry_of(key)?;
        let options = rdb::commands::Options {
            delete_first: false,
            max_args: MAX_ARGS,
        };
        match rdb::commands::rebuild(&entry, self.settings.target, options) {
            Ok(rebuilt) => {
                if !rebuilt.losses.is_empty() {
                    let what = rebuilt
                        .losses
                        .iter()
                        .map(|l| l.to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    if strict {
                        return Err(Failure::new(
                            FailureKind::Incompatible,
                            format!(
                                "key {}: the target cannot hold it exactly ({what}) and the restore is strict",
                                printable(&key.key)
                            ),
                        ));
                    }
                    // The key is written; what it lost is said in the record.
                    if let Ok(mut r) = self.tally.reasons.lock() {
                        *r.entry(format!("keys written without: {what}"))
                            .or_default() += 1;
                    }
                }
                Ok(Some(rebuilt.commands))
            }
            Err(unsupported) => {
                if strict {
                    return Err(Failure::new(
                        FailureKind::Incompatible,
                        format!(
                            "key {}: {unsupported}, and the restore is strict",
                            printable(&key.key)
                        ),
                    ));
                }
                self.tally.skip(unsupported.to_string());
                Ok(None)
            }
        }
    }

    /// Sends lane `i`'s batch, first waiting for its oldest unanswered
    /// batch if [`DEPTH`] are out.
    async fn send(&mut self, i: usize) -> Result<(), Failure> {
        while self.lanes[i].inflight.len() >= DEPTH {
            self.settle(i).await?;
        }
        let stall = self.settings.stall;
        let lane = &mut self.lanes[i];
        if lane.queued.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut lane.out);
        let addr = lane.addr.to_string();
        let stream = lane.conn.stream_mut();
        let write = async {
            stream.write_all(&out).await?;
            stream.flush().await
        };
        match tokio::time::timeout(stall, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(Failure::new(
                    FailureKind::ConnectionLost,
                    format!("writing to {addr}: {e}"),
                ));
            }
            Err(_) => {
                return Err(Failure::new(
                    FailureKind::TimedOut,
                    format!("{addr} took no data for {} s", stall.as_secs()),
                ));
            }
        }
        let batch = std::mem::take(&mut lane.queued);
        lane.inflight.push_back(batch);
        Ok(())
    }

    /// Reads the replies of lane `i`'s oldest batch and acts on each.
    async fn settle(&mut self, i: usize) -> Result<(), Failure> {
        let Some(batch) = self.lanes[i].inflight.pop_front() else {
            return Ok(());
        };
        let mut again = Vec::new();
        for op in batch {
            if let Some(a) = self.judge(i, op).await? {
                again.push(a);
            }
        }
        for a in again {
            match a {
                Again::Replace(key) => self.push(i, key, Resend::REPLACE)?,
                Again::Rebuild(key) => self.push(i, key, Resend::REBUILD)?,
                Again::Moved(key, addr) => {
                    let to = self.lane_at(&addr).await?;
                    if let Route::Slots(slots) = &mut self.route
                        && let Some(s) = slots.get_mut(usize::from(key_slot(&key.key)))
                    {
                        *s = to;
                    }
                    let resend = Resend::elsewhere(&key, false);
                    self.push(to, key, resend)?;
                }
                Again::Ask(key, addr) => {
                    let to = self.lane_at(&addr).await?;
                    let resend = Resend::elsewhere(&key, true);
                    self.push(to, key, resend)?;
                }
            }
        }
        Ok(())
    }

    /// The lane of the node at `addr`, opened if the cluster names a node
    /// not written to yet.
    async fn lane_at(&mut self, addr: &RedisAddr) -> Result<usize, Failure> {
        if let Some(i) = self.lanes.iter().position(|l| &l.addr == addr) {
            return Ok(i);
        }
        let lane = Lane::open(&self.template.at(addr), self.settings.connect).await?;
        self.lanes.push(lane);
        Ok(self.lanes.len() - 1)
    }

    async fn reply(&mut self, i: usize) -> Result<Reply, Failure> {
        let stall = self.settings.stall;
        let lane = &mut self.lanes[i];
        let addr = lane.addr.to_string();
        match tokio::time::timeout(
            stall,
            resp::read_reply_up_to(lane.conn.stream_mut(), MAX_REPLY),
        )
        .await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Failure::from(ConnError::Resp { addr, source: e })),
            Err(_) => Err(Failure::new(
                FailureKind::TimedOut,
                format!("{addr} did not answer within {} s", stall.as_secs()),
            )),
        }
    }

    /// Reads `op`'s replies; counts it, or says how to send it again.
    async fn judge(&mut self, i: usize, op: Op) -> Result<Option<Again>, Failure> {
        let addr = self.lanes[i].addr.clone();
        match op {
            Op::Select | Op::Asking | Op::FunctionLoad => {
                if let Reply::Error(e) = self.reply(i).await? {
                    let what = match op {
                        Op::Select => "SELECT",
                        Op::Asking => "ASKING",
                        _ => "FUNCTION LOAD",
                    };
                    return Err(refused(&addr, what, &e));
                }
                Ok(None)
            }
            Op::Restore { key, replace } => match self.reply(i).await? {
                Reply::Error(e) if redirect_kind(&e).is_some() => {
                    redirect(&e, key).map_or(Ok(None), |a| a.map(Some))
                }
                Reply::Error(e) if e.starts_with("BUSYKEY") && !replace => {
                    self.tally.replaced.fetch_add(1, Ordering::Relaxed);
                    Ok(Some(Again::Replace(key)))
                }
                Reply::Error(e) if payload_refused(&e) => match self.settings.how {
                    How::Restore { fallback: true } => Ok(Some(Again::Rebuild(key))),
                    _ => Err(Failure::new(
                        FailureKind::Incompatible,
                        format!(
                            "{addr} cannot read the payload of key {} ({e}); the method `restore` \
                             was asked for, `auto` or `commands` rebuild such values",
                            printable(&key.key)
                        ),
                    )),
                },
                Reply::Error(e) if fatal(&e) || self.settings.strict => {
                    Err(refused(&addr, "RESTORE", &e))
                }
                Reply::Error(e) => {
                    self.tally
                        .skip(format!("refused by the target ({})", error_class(&e)));
                    Ok(None)
                }
                _ => {
                    self.tally.restored.fetch_add(1, Ordering::Relaxed);
                    Ok(None)
                }
            },
            Op::Commands { key, count, asking } => {
                let mut first_error = None;
                let mut existed = false;
                for n in 0..count {
                    if asking && let Reply::Error(e) = self.reply(i).await? {
                        return Err(refused(&addr, "ASKING", &e));
                    }
                    match self.reply(i).await? {
                        Reply::Error(e) if first_error.is_none() => first_error = Some((n, e)),
                        // The DEL of `merge` mode: 1 when the key existed.
                        Reply::Int(1) if n == 0 && self.settings.mode == RestoreMode::Merge => {
                            existed = true;
                        }
                        _ => {}
                    }
                }
                match first_error {
                    None => {
                        self.tally.rebuilt.fetch_add(1, Ordering::Relaxed);
                        if existed {
                            self.tally.replaced.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(None)
                    }
                    Some((0, e)) if redirect_kind(&e).is_some() => {
                        redirect(&e, key).map_or(Ok(None), |a| a.map(Some))
                    }
                    Some((_, e)) => {
                        if fatal(&e) || self.settings.strict {
                            return Err(refused(&addr, "a rebuilt command", &e));
                        }
                        self.tally
                            .skip(format!("refused by the target ({})", error_class(&e)));
                        Ok(None)
                    }
                }
            }
        }
    }
}

impl Lane {
    async fn open(endpoint: &Endpoint, timeout: Duration) -> Result<Lane, Failure> {
        let conn = Connection::open(endpoint, timeout).await?;
        Ok(Lane {
            conn,
            addr: endpoint.addr.clone(),
            out: Vec::with_capacity(BATCH + BATCH / 4),
            queued: Vec::new(),
            inflight: VecDeque::new(),
            db: 0,
        })
    }

    fn queue(&mut self, cmd: &[Vec<u8>], op: Op) {
        rdb::commands::encode(cmd, &mut self.out);
        self.queued.push(op);
    }
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s | FREQ f]`,
/// encoded straight from the key (the payload is not copied twice).
fn encode_restore(out: &mut Vec<u8>, key: &Key, payload: &[u8], replace: bool) {
    let ttl = key.expire_ms.unwrap_or(0).to_string();
    let lru = match (key.idle, key.freq) {
        (Some(idle), _) => Some(("IDLETIME", idle.to_string())),
        (None, Some(freq)) => Some(("FREQ", freq.to_string())),
        (None, None) => None,
    };
    let mut args: Vec<&[u8]> = vec![b"RESTORE", &key.key, ttl.as_bytes(), payload];
    if replace {
        args.push(b"REPLACE");
    }
    if key.expire_ms.is_some() {
        args.push(b"ABSTTL");
    }
    if let Some((name, value)) = &lru {
        args.push(name.as_bytes());
        args.push(value.as_bytes());
    }
    rdb::commands::encode(&args, out);
}

/// The decoded entry of a key: as read, or decoded from its payload (a
/// payload the target refused, to be rebuilt) through a one-key dump.
fn entry_of(key: &Key) -> Result<Cow<'_, rdb::Entry>, Failure> {
    match &key.body {
        Body::Entry(e) => Ok(Cow::Borrowed(e)),
        Body::Commands(_) => Err(Failure::new(
            FailureKind::Internal,
            "a replayed key has no value to rebuild",
        )),
        Body::Dump(payload) => {
            let broken = |e: String| {
                Failure::new(
                    FailureKind::Verification,
                    format!(
                        "key {}: its payload does not decode: {e}",
                        printable(&key.key)
                    ),
                )
            };
            let version = rdb::payload_version(payload).map_err(|e| broken(e.to_string()))?;
            let mut dump = rdb::Writer::new(version);
            dump.select_db(0, 1, u64::from(key.expire_ms.is_some()));
            dump.entry(&key.key, key.expire_ms, payload)
                .map_err(|e| broken(e.to_string()))?;
            let mut bytes = dump.drain();
            bytes.extend_from_slice(&dump.finish());
            let mut reader =
                rdb::Reader::new(bytes.as_slice()).map_err(|e| broken(e.to_string()))?;
            let mut entry = reader
                .next_entry()
                .map_err(|e| broken(e.to_string()))?
                .ok_or_else(|| broken("no key".into()))?;
            entry.db = key.db;
            Ok(Cow::Owned(entry))
        }
    }
}

enum Redirect {
    Moved,
    Ask,
}

fn redirect_kind(e: &str) -> Option<Redirect> {
    if e.starts_with("MOVED ") {
        Some(Redirect::Moved)
    } else if e.starts_with("ASK ") {
        Some(Redirect::Ask)
    } else {
        None
    }
}

/// `MOVED 3999 127.0.0.1:6381` / `ASK ...`: where the key goes instead.
fn redirect(e: &str, key: Key) -> Option<Result<Again, Failure>> {
    let kind = redirect_kind(e)?;
    let addr = e
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.parse::<RedisAddr>().ok());
    Some(match addr {
        None => Err(Failure::new(
            FailureKind::Protocol,
            format!("unparsable redirection {e:?}"),
        )),
        Some(addr) => Ok(match kind {
            Redirect::Moved => Again::Moved(key, addr),
            Redirect::Ask => Again::Ask(key, addr),
        }),
    })
}

/// Errors no key can get past: the target is full, read-only, loading,
/// or refuses our login or rights.
fn fatal(e: &str) -> bool {
    [
        "OOM",
        "READONLY",
        "LOADING",
        "NOAUTH",
        "NOPERM",
        "WRONGPASS",
        "MASTERDOWN",
        "CLUSTERDOWN",
        "MISCONF",
    ]
    .iter()
    .any(|p| e.starts_with(p))
}

/// A payload the target's RDB reader does not accept (a newer version, a
/// module type it does not have).
fn payload_refused(e: &str) -> bool {
    e.contains("payload version or checksum are wrong") || e.starts_with("ERR Bad data format")
}

/// The error's class for a skip reason: its first word and a short text.
fn error_class(e: &str) -> String {
    e.chars().take(80).collect()
}

fn refused(addr: &RedisAddr, what: &str, e: &str) -> Failure {
    match ConnError::refused(&addr.to_string(), &[what.as_bytes()], e.to_string()) {
        c @ (ConnError::NoPermission { .. } | ConnError::Auth(_)) => Failure::from(c),
        _ => Failure::new(
            FailureKind::TargetRefused,
            format!("{addr} refused {what}: {e}"),
        ),
    }
}

/// A key for a message: text when it is, hex otherwise.
pub(crate) fn printable(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => format!("0x{}", hex::encode(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key {
            db: 0,
            key: name.as_bytes().to_vec(),
            expire_ms: None,
            idle: None,
            freq: None,
            body: Body::Dump(Vec::new()),
        }
    }

    #[test]
    fn redirections_name_the_node() {
        let to = |e: &str| match redirect(e, key("k")) {
            Some(Ok(Again::Moved(k, addr))) => Some(("moved", k.key, addr.to_string())),
            Some(Ok(Again::Ask(k, addr))) => Some(("ask", k.key, addr.to_string())),
            _ => None,
        };
        assert_eq!(
            to("MOVED 3999 127.0.0.1:6381"),
            Some(("moved", b"k".to_vec(), "127.0.0.1:6381".into()))
        );
        assert_eq!(
            to("ASK 12 10.0.0.2:7000"),
            Some(("ask", b"k".to_vec(), "10.0.0.2:7000".into()))
        );
        assert!(redirect("BUSYKEY Target key name already exists.", key("k")).is_none());
        assert!(matches!(redirect("MOVED 1", key("k")), Some(Err(_))));
    }

    #[test]
    fn refusals_are_classified() {
        assert!(fatal(
            "OOM command not allowed when used memory > 'maxmemory'."
        ));
        assert!(fatal(
            "READONLY You can't write against a read only replica."
        ));
        assert!(!fatal("ERR Bad data format"));
        assert!(payload_refused(
            "ERR DUMP payload version or checksum are wrong"
        ));
        assert!(payload_refused("ERR Bad data format"));
        assert!(!payload_refused("BUSYKEY Target key name already exists."));
    }

    #[test]
    fn restore_commands_carry_ttl_and_lru() {
        let mut k = key("k");
        k.expire_ms = Some(1_700_000_000_000);
        k.idle = Some(5);
        let mut out = Vec::new();
        encode_restore(&mut out, &k, b"payload", true);
        let text = String::from_utf8_lossy(&out);
        for part in [
            "RESTORE",
            "1700000000000",
            "payload",
            "REPLACE",
            "ABSTTL",
            "IDLETIME",
            "\r\n5\r\n",
        ] {
            assert!(text.contains(part), "{part} in {text:?}");
        }
        let mut out = Vec::new();
        encode_restore(&mut out, &key("k"), b"p", false);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("*4\r\n") && !text.contains("ABSTTL"),
            "{text:?}"
        );
    }
}
