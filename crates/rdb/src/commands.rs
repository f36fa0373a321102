//! A dump entry rebuilt as the ordinary commands that recreate its key, for
//! a server that cannot `RESTORE` the entry's payload (an older RDB
//! version) and for backups kept as an AOF file.
//!
//! [`rebuild`] turns one [`Entry`] into [`Command`]s chosen for the
//! [`Target`] release, and says what the target could not hold exactly
//! ([`Loss`]); [`encode`] writes commands as RESP, the format of both a
//! pipeline and an AOF file. `SELECT` ([`select`]) and function libraries
//! ([`function_load`]) are the caller's, since they are not part of a key.
//! A module value, which no native command recreates, is replayed by
//! `RESTORE` of its `DUMP` payload ([`restore_module`]) where the caller
//! accepts that.
//!
//! Not carried over: a key's LRU idle time and LFU counter (no command sets
//! them; `RESTORE` alone does), and a stream consumer's seen and active
//! times, which become the time of the rebuild. Neither is reported as a
//! [`Loss`]: both are eviction or monitoring state, not data.
//!
//! The streams' commands follow what Redis writes when it rewrites its own
//! AOF (`rewriteStreamObject` in aof.c), so a target replays them the way it
//! replays an AOF.

use std::collections::BTreeMap;
use std::fmt;

use crate::reader::Entry;
use crate::stream::{Stream, StreamGroup, StreamId};
use crate::value::{HashField, Value, module_type_name};

/// A command: its arguments, the name first.
pub type Command = Vec<Vec<u8>>;

/// The Redis release commands are chosen for (its `redis_version`).
/// Releases compare by major, then minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl Target {
    /// Release `major.minor`.
    #[must_use]
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The release of a version string as `INFO server` gives it in
    /// `redis_version` (`7.0.15`, `7.4-rc1`); the patch level and anything
    /// after it are ignored. `None` unless it starts with two numbers.
    ///
    /// Valkey reports `redis_version:7.2.4` whatever its own version, so a
    /// Valkey target is treated as Redis 7.2: what Valkey added since (such
    /// as hash field expiry in 9.0) is not used.
    #[must_use]
    pub fn parse(version: &str) -> Option<Self> {
        let mut parts = version.trim().splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?;
        let digits = minor
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(minor.len());
        let minor = minor[..digits].parse().ok()?;
        Some(Self { major, minor })
    }

    fn at_least(self, major: u32, minor: u32) -> bool {
        self >= Self::new(major, minor)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What a rebuild could not carry over exactly. The key is still written,
/// without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// The target (before 7.4) has no `HPEXPIREAT`: these hash fields are
    /// written without their expiry, so they no longer expire.
    FieldExpiry {
        /// Fields that had an expiry.
        fields: usize,
    },
    /// The target (before 7.0) keeps none of the stream's entries-added
    /// count, max-deleted-entry-id or consumer groups' entries-read counts
    /// (what `XINFO` derives a group's lag from). Reported only when the
    /// dump holds values a fresh stream would not have: entries ever
    /// deleted, or a group with a known entries-read count.
    StreamMetadata,
    /// Pending entries whose message was deleted (`XDEL`): `XCLAIM` only
    /// creates pending entries for messages in the stream, so these are
    /// dropped from the group's PEL.
    PendingOfDeletedEntry {
        /// The consumer group.
        group: Vec<u8>,
        /// Pending entries dropped.
        entries: usize,
    },
    /// Pending entries that no consumer owns (never written by Redis; a
    /// damaged or hand-made dump): `XCLAIM` needs an owner, so they are
    /// dropped.
    PendingWithoutConsumer {
        /// The consumer group.
        group: Vec<u8>,
        /// Pending entries dropped.
        entries: usize,
    },
    /// The target (before 6.2) has no `XGROUP CREATECONSUMER`, and only
    /// `XCLAIM` creates consumers there: consumers left with no pending
    /// entry are missing.
    ConsumerWithoutPending {
        /// The consumer group.
        group: Vec<u8>,
        /// Consumers missing.
        consumers: usize,
    },
}

/// The kind of loss only, the same text for every key (the counts and
/// groups are in the fields), so that losses can be tallied by it.
impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loss::FieldExpiry { .. } => "hash field expiry (needs Redis 7.4)",
            Loss::StreamMetadata => {
                "stream entries-added, max-deleted-entry-id and group entries-read (need Redis 7.0)"
            }
            Loss::PendingOfDeletedEntry { .. } => "pending entries of deleted stream messages",
            Loss::PendingWithoutConsumer { .. } => "pending stream entries without a consumer",
            Loss::ConsumerWithoutPending { .. } => {
                "stream consumers without pending entries (need Redis 6.2)"
            }
        })
    }
}

/// A value no command sequence can recreate on the target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// A module value: only the module knows its commands, so it can be
    /// restored only with `RESTORE`, on a server that loads the module.
    #[error(
        "a value of module type {name} (encoding version {encver}) can only be restored by RESTORE on a server that loads the module"
    )]
    Module {
        /// The module type's name, as [`module_type_name`] gives it.
        name: String,
        /// Its encoding version.
        encver: u16,
    },
    /// A stream, for a target before 5.0, which has no streams.
    #[error("streams need Redis 5.0 or later, and the target is {target}")]
    Stream {
        /// The target release.
        target: Target,
    },
}

/// How commands are built.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Emit `DEL key` first, so that the key is replaced rather than merged
    /// into: without it, the elements of a list already at the key are
    /// appended to and those of a set or hash added to, and a stream there
    /// refuses entries not above its last id (or, rebuilding an empty
    /// stream, is emptied). A string needs no `DEL`: `SET` replaces
    /// whatever the key held.
    pub delete_first: bool,
    /// Elements per command (list items, set members, sorted set or hash
    /// pairs, pending entries), so that no command is huge; 0 counts as 1.
    /// A string and a stream entry are one command whatever their size.
    pub max_args: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            delete_first: false,
            max_args: 1000,
        }
    }
}

/// An entry as commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// The commands, to send in order (in the entry's database).
    pub commands: Vec<Command>,
    /// What the target cannot hold; empty if the key is recreated exactly.
    pub losses: Vec<Loss>,
}

/// The commands that recreate `entry`'s key on a `target` server, in its
/// database (see [`select`]).
///
/// A key with an expiry gets `PEXPIREAT` last; if that time has passed, the
/// target deletes the key then, so a caller wanting no work for expired
/// keys skips them. The LRU/LFU state is not carried over.
///
/// # Errors
///
/// [`Unsupported`] for a module value, or a stream when the target predates
/// streams.
pub fn rebuild(entry: &Entry, target: Target, options: Options) -> Result<Rebuilt, Unsupported> {
    let mut b = Builder {
        key: &entry.key,
        per: options.max_args.max(1),
        target,
        out: Rebuilt::default(),
    };
    if options.delete_first && !matches!(entry.value, Value::String(_)) {
        b.cmd(vec![b"DEL".to_vec(), entry.key.clone()]);
    }
    let before = b.out.commands.len();
    match &entry.value {
        Value::String(s) => b.cmd(vec![b"SET".to_vec(), entry.key.clone(), s.clone()]),
        Value::List(items) => b.chunks(b"RPUSH", items, |item, c| c.push(item.clone())),
        Value::Set(members) => b.chunks(b"SADD", members, |m, c| c.push(m.clone())),
        Value::SortedSet(pairs) => b.chunks(b"ZADD", pairs, |(m, s), c| {
            c.push(score(*s));
            c.push(m.clone());
        }),
        Value::Hash(pairs) => {
            let name = b.hset();
            b.chunks(name, pairs, |(f, v), c| {
                c.push(f.clone());
                c.push(v.clone());
            });
        }
        Value::HashWithExpiry(fields) => b.hash_with_expiry(fields),
        Value::Stream(s) => {
            if !target.at_least(5, 0) {
                return Err(Unsupported::Stream { target });
            }
            b.stream(s);
        }
        Value::Module { id, .. } => {
            let (name, encver) = module_type_name(*id);
            return Err(Unsupported::Module { name, encver });
        }
    }
    // An empty collection (which Redis never dumps) leaves nothing to expire.
    if let Some(at) = entry.expire_ms
        && b.out.commands.len() > before
    {
        b.cmd(vec![
            b"PEXPIREAT".to_vec(),
            entry.key.clone(),
            at.to_string().into_bytes(),
        ]);
    }
    Ok(b.out)
}

/// The commands that recreate a module value's key, which [`rebuild`]
/// refuses: `RESTORE key 0 payload REPLACE`, the payload being the value as
/// `DUMP` gives it (type, module type id, the module's own serialization,
/// `rdb_version`, CRC-64), then `PEXPIREAT` as [`rebuild`] writes it. Only
/// the module knows its value's commands, so this is the one form in which
/// a module value can be replayed; a server loads it only if it loads the
/// module and reads `rdb_version`. `None` for any other value.
#[must_use]
pub fn restore_module(entry: &Entry, rdb_version: u32) -> Option<Vec<Command>> {
    let Value::Module { id, raw } = &entry.value else {
        return None;
    };
    let mut body = Vec::with_capacity(raw.len() + 9);
    crate::write::length(&mut body, *id);
    body.extend_from_slice(raw);
    let payload = crate::reader::dump_payload(entry.type_id, &body, rdb_version);
    let mut commands = vec![vec![
        b"RESTORE".to_vec(),
        entry.key.clone(),
        b"0".to_vec(),
        payload,
        b"REPLACE".to_vec(),
    ]];
    if let Some(at) = entry.expire_ms {
        commands.push(vec![
            b"PEXPIREAT".to_vec(),
            entry.key.clone(),
            at.to_string().into_bytes(),
        ]);
    }
    Some(commands)
}

/// `SELECT db`.
#[must_use]
pub fn select(db: u64) -> Command {
    vec![b"SELECT".to_vec(), db.to_string().into_bytes()]
}

/// `FUNCTION LOAD REPLACE code` (Redis 7.0+): a function library as
/// [`Reader::functions`](crate::Reader::functions) gives it.
#[must_use]
pub fn function_load(code: &[u8]) -> Command {
    vec![
        b"FUNCTION".to_vec(),
        b"LOAD".to_vec(),
        b"REPLACE".to_vec(),
        code.to_vec(),
    ]
}

/// Appends `cmd` to `out` as RESP (`*N\r\n$len\r\narg\r\n...`): what a
/// server reads from a client and from an AOF file.
pub fn encode<A: AsRef<[u8]>>(cmd: &[A], out: &mut Vec<u8>) {
    let size: usize = cmd.iter().map(|a| a.as_ref().len() + 16).sum();
    out.reserve(size + 16);
    header(out, b'*', cmd.len());
    for arg in cmd {
        let arg = arg.as_ref();
        header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// `prefix`, `n` in decimal, CRLF; by hand, as `encode` runs for every
/// command of a restore.
fn header(out: &mut Vec<u8>, prefix: u8, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(prefix);
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// A score as text that parses back to the same `f64`: the shorter of the
/// plain and exponent forms, both shortest-round-trip (`0.1`, `1e300`,
/// `5e-324`, `-0`, `inf`: 6.2's `strtod` and 8.2's parser take them all).
/// A NaN, which Redis never stores, comes out as `NaN`, which it refuses.
fn score(s: f64) -> Vec<u8> {
    let plain = s.to_string();
    let exp = format!("{s:e}");
    if exp.len() < plain.len() { exp } else { plain }.into_bytes()
}

fn id_arg(id: StreamId) -> Vec<u8> {
    id.to_string().into_bytes()
}

struct Builder<'a> {
    key: &'a [u8],
    per: usize,
    target: Target,
    out: Rebuilt,
}

impl Builder<'_> {
    fn cmd(&mut self, cmd: Command) {
        self.out.commands.push(cmd);
    }

    /// `name key` and at most `per` items a command, each item appending
    /// its arguments.
    fn chunks<T>(&mut self, name: &[u8], items: &[T], args: impl Fn(&T, &mut Command)) {
        for chunk in items.chunks(self.per) {
            let mut c = Vec::with_capacity(2 + 2 * chunk.len());
            c.push(name.to_vec());
            c.push(self.key.to_vec());
            for item in chunk {
                args(item, &mut c);
            }
            self.cmd(c);
        }
    }

    /// Variadic `HSET` is 4.0's; `HMSET` does the same before.
    fn hset(&self) -> &'static [u8] {
        if self.target.at_least(4, 0) {
            b"HSET"
        } else {
            b"HMSET"
        }
    }

    /// `HSET`, then one `HPEXPIREAT` per distinct expiry (7.4+), which is
    /// one command for fields given the same TTL together, as is usual.
    fn hash_with_expiry(&mut self, fields: &[HashField]) {
        let name = self.hset();
        self.chunks(name, fields, |f, c| {
            c.push(f.field.clone());
            c.push(f.value.clone());
        });
        let mut by_expiry: BTreeMap<i64, Vec<&[u8]>> = BTreeMap::new();
        for f in fields {
            if let Some(at) = f.expire_ms {
                by_expiry.entry(at).or_default().push(&f.field);
            }
        }
        if by_expiry.is_empty() {
            return;
        }
        if !self.target.at_least(7, 4) {
            let fields = by_expiry.values().map(Vec::len).sum();
            self.out.losses.push(Loss::FieldExpiry { fields });
            return;
        }
        for (at, names) in by_expiry {
            for chunk in names.chunks(self.per) {
                let mut c = Vec::with_capacity(5 + chunk.len());
                c.push(b"HPEXPIREAT".to_vec());
                c.push(self.key.to_vec());
                c.push(at.to_string().into_bytes());
                c.push(b"FIELDS".to_vec());
                c.push(chunk.len().to_string().into_bytes());
                c.extend(chunk.iter().map(|f| f.to_vec()));
                self.cmd(c);
            }
        }
    }

    fn stream(&mut self, s: &Stream) {
        let v7 = self.target.at_least(7, 0);
        for e in &s.entries {
            let mut c = Vec::with_capacity(3 + 2 * e.fields.len());
            c.push(b"XADD".to_vec());
            c.push(self.key.to_vec());
            c.push(id_arg(e.id));
            for (f, v) in &e.fields {
                c.push(f.clone());
                c.push(v.clone());
            }
            self.cmd(c);
        }
        if s.entries.is_empty() {
            // XSETID needs the stream to exist. MKSTREAM creates one only
            // with a group, which would have to be destroyed again; XADD
            // then XDEL leaves the placeholder as 7.0's
            // max-deleted-entry-id, which XSETID can raise but not lower
            // (it ignores MAXDELETEDID 0-0). A trim records no deletion,
            // and XSETID then sets the last id and entries-added: Redis's
            // own AOF rewrite does the same.
            self.cmd(
                [&b"XADD"[..], self.key, b"MAXLEN", b"0", b"0-1", b"x", b"y"]
                    .map(<[u8]>::to_vec)
                    .to_vec(),
            );
        }
        // Always: the last id may be past the last entry (deleted ones, or
        // an XSETID), and on 7.0+ the counters differ from what XADD left.
        let mut c = vec![b"XSETID".to_vec(), self.key.to_vec(), id_arg(s.last_id)];
        if v7 {
            // A pre-7.0 dump has no count; loading it, 7.0 takes the length.
            let added = s.entries_added.unwrap_or(s.entries.len() as u64);
            c.push(b"ENTRIESADDED".to_vec());
            c.push(added.to_string().into_bytes());
            if let Some(max) = s.max_deleted_id {
                c.push(b"MAXDELETEDID".to_vec());
                c.push(id_arg(max));
            }
        } else if metadata_matters(s) {
            self.out.losses.push(Loss::StreamMetadata);
        }
        self.cmd(c);
        for g in &s.groups {
            self.group(s, g);
        }
    }

    fn group(&mut self, s: &Stream, g: &StreamGroup) {
        let mut c = [&b"XGROUP"[..], b"CREATE", self.key, &g.name]
            .map(<[u8]>::to_vec)
            .to_vec();
        c.push(id_arg(g.last_id));
        if self.target.at_least(7, 0)
            && let Some(n) = g.entries_read.filter(|&n| valid_entries_read(n))
        {
            c.push(b"ENTRIESREAD".to_vec());
            c.push(n.to_string().into_bytes());
        }
        self.cmd(c);
        let create_consumers = self.target.at_least(6, 2);
        if create_consumers {
            // Every consumer, owning entries or not: the XCLAIMs would
            // create the owners, but skipping some saves nothing real.
            for consumer in &g.consumers {
                self.cmd(
                    [
                        &b"XGROUP"[..],
                        b"CREATECONSUMER",
                        self.key,
                        &g.name,
                        &consumer.name,
                    ]
                    .map(<[u8]>::to_vec)
                    .to_vec(),
                );
            }
        }
        let mut owner: BTreeMap<StreamId, usize> = BTreeMap::new();
        for (i, consumer) in g.consumers.iter().enumerate() {
            for id in &consumer.pending {
                owner.entry(*id).or_insert(i);
            }
        }
        let live = |id: &StreamId| s.entries.binary_search_by_key(id, |e| e.id).is_ok();
        let (mut deleted, mut orphans) = (0, 0);
        let mut claimed = vec![false; g.consumers.len()];
        // Runs of entries of one owner with the same delivery time and
        // count share an XCLAIM, as entries read together do.
        let mut run: Option<(usize, i64, u64, Vec<StreamId>)> = None;
        for p in &g.pending {
            if !live(&p.id) {
                deleted += 1;
                continue;
            }
            let Some(&who) = owner.get(&p.id) else {
                orphans += 1;
                continue;
            };
            claimed[who] = true;
            match &mut run {
                Some((o, t, n, ids))
                    if (*o, *t, *n) == (who, p.delivery_time_ms, p.delivery_count)
                        && ids.len() < self.per =>
                {
                    ids.push(p.id);
                }
                _ => {
                    if let Some(done) = run.take() {
                        self.claim(g, done);
                    }
                    run = Some((who, p.delivery_time_ms, p.delivery_count, vec![p.id]));
                }
            }
        }
        if let Some(done) = run {
            self.claim(g, done);
        }
        let group = || g.name.clone();
        if deleted > 0 {
            self.out.losses.push(Loss::PendingOfDeletedEntry {
                group: group(),
                entries: deleted,
            });
        }
        if orphans > 0 {
            self.out.losses.push(Loss::PendingWithoutConsumer {
                group: group(),
                entries: orphans,
            });
        }
        let missing = claimed.iter().filter(|&&c| !c).count();
        if !create_consumers && missing > 0 {
            self.out.losses.push(Loss::ConsumerWithoutPending {
                group: group(),
                consumers: missing,
            });
        }
    }

    /// `XCLAIM key group consumer 0 id... TIME t RETRYCOUNT n FORCE JUSTID`:
    /// FORCE creates the pending entry (of a live message only); RETRYCOUNT
    /// sets the delivery count outright, where without it XCLAIM would add
    /// one (unless JUSTID); TIME sets the delivery time, or now if it is in
    /// the target's future. Min-idle-time 0 claims whatever the idle time.
    fn claim(
        &mut self,
        g: &StreamGroup,
        (who, time, count, ids): (usize, i64, u64, Vec<StreamId>),
    ) {
        let Some(consumer) = g.consumers.get(who) else {
            return;
        };
        let mut c = Vec::with_capacity(11 + ids.len());
        c.extend([&b"XCLAIM"[..], self.key, &g.name, &consumer.name, b"0"].map(<[u8]>::to_vec));
        c.extend(ids.into_iter().map(id_arg));
        c.push(b"TIME".to_vec());
        c.push(time.to_string().into_bytes());
        c.push(b"RETRYCOUNT".to_vec());
        c.push(count.to_string().into_bytes());
        c.push(b"FORCE".to_vec());
        c.push(b"JUSTID".to_vec());
        self.cmd(c);
    }
}

/// An entries-read count Redis knows: it dumps its unknown count (-1) as
/// the unsigned 2^64 - 1.
fn valid_entries_read(n: u64) -> bool {
    i64::try_from(n).is_ok()
}

/// Whether the 7.0 metadata of `s` says more than a stream rebuilt by XADD
/// would: entries deleted, or a group that knows its entries-read count.
fn metadata_matters(s: &Stream) -> bool {
    s.entries_added.is_some_and(|n| n != s.entries.len() as u64)
        || s.max_deleted_id.is_some_and(|id| id != StreamId::default())
        || s.groups
            .iter()
            .any(|g| g.entries_read.is_some_and(valid_entries_read))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{PendingEntry, StreamConsumer, StreamEntry};

    fn entry(value: Value) -> Entry {
        Entry {
            db: 0,
            key: b"k".to_vec(),
            expire_ms: None,
            idle: None,
            freq: None,
            type_id: 0,
            value,
            dump: None,
        }
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    /// Commands as text, arguments joined by spaces.
    fn text(r: &Rebuilt) -> Vec<String> {
        r.commands
            .iter()
            .map(|c| {
                c.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    const V8: Target = Target::new(8, 2);
    const V7: Target = Target::new(7, 0);
    const V6: Target = Target::new(6, 2);

    fn opts(delete_first: bool, max_args: usize) -> Options {
        Options {
            delete_first,
            max_args,
        }
    }

    #[test]
    fn target_parse() {
        assert_eq!(Target::parse("7.0.15"), Some(Target::new(7, 0)));
        assert_eq!(Target::parse("8.2.3"), Some(Target::new(8, 2)));
        assert_eq!(Target::parse("7.4-rc1"), Some(Target::new(7, 4)));
        assert_eq!(Target::parse(" 255.255.255\r"), Some(Target::new(255, 255)));
        assert_eq!(Target::parse("6.2"), Some(Target::new(6, 2)));
        assert_eq!(Target::parse("7"), None);
        assert_eq!(Target::parse(""), None);
        assert_eq!(Target::parse("x.1"), None);
        assert_eq!(Target::parse("7.x"), None);
        assert!(Target::new(7, 4) > Target::new(7, 0));
        assert!(Target::new(10, 0) > Target::new(8, 2));
        assert_eq!(Target::new(7, 4).to_string(), "7.4");
    }

    #[test]
    fn scores_parse_back_to_the_same_bits() {
        let cases: &[(f64, &str)] = &[
            (1.5, "1.5"),
            (3.0, "3"),
            (-2.0, "-2"),
            (0.1, "0.1"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e300, "1e300"),
            (-1e300, "-1e300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (123_456_789.0, "123456789"),
            (1e21, "1e21"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for &(s, want) in cases {
            let got = String::from_utf8(score(s)).unwrap();
            assert_eq!(got, want, "{s:?}");
            assert_eq!(got.parse::<f64>().unwrap().to_bits(), s.to_bits(), "{s:?}");
        }
        for s in [
            0.3,
            1.0 / 3.0,
            -7.25e-7,
            2f64.powi(60),
            9_007_199_254_740_993.0,
        ] {
            let got = String::from_utf8(score(s)).unwrap();
            assert_eq!(got.parse::<f64>().unwrap().to_bits(), s.to_bits(), "{s:?}");
        }
    }

    #[test]
    fn collections_are_chunked() {
        let items: Vec<Vec<u8>> = (0..7).map(|i| b(&i.to_string())).collect();
        let r = rebuild(&entry(Value::List(items.clone())), V8, opts(false, 3)).unwrap();
        assert_eq!(text(&r), ["RPUSH k 0 1 2", "RPUSH k 3 4 5", "RPUSH k 6"]);
        assert!(r.losses.is_empty());

        let r = rebuild(&entry(Value::Set(items.clone())), V8, opts(false, 7)).unwrap();
        assert_eq!(text(&r), ["SADD k 0 1 2 3 4 5 6"]);
        // 0 counts as 1.
        let r = rebuild(&entry(Value::Set(items[..2].to_vec())), V8, opts(false, 0)).unwrap();
        assert_eq!(text(&r), ["SADD k 0", "SADD k 1"]);

        let z = vec![(b("a"), 1.5), (b("b"), f64::NEG_INFINITY), (b("c"), 1e300)];
        let r = rebuild(&entry(Value::SortedSet(z)), V8, opts(false, 2)).unwrap();
        assert_eq!(text(&r), ["ZADD k 1.5 a -inf b", "ZADD k 1e300 c"]);

        let h = vec![(b("f1"), b("v1")), (b("f2"), b("")), (b("f3"), b("3"))];
        let r = rebuild(&entry(Value::Hash(h.clone())), V8, opts(false, 2)).unwrap();
        assert_eq!(text(&r), ["HSET k f1 v1 f2 ", "HSET k f3 3"]);
        let r = rebuild(&entry(Value::Hash(h)), Target::new(3, 2), opts(false, 5)).unwrap();
        assert_eq!(text(&r), ["HMSET k f1 v1 f2  f3 3"]);
    }

    #[test]
    fn delete_first_and_expiry() {
        let mut e = entry(Value::List(vec![b("a")]));
        e.expire_ms = Some(1_700_000_000_123);
        let r = rebuild(&e, V8, opts(true, 10)).unwrap();
        assert_eq!(
            text(&r),
            ["DEL k", "RPUSH k a", "PEXPIREAT k 1700000000123"]
        );
        let r = rebuild(&e, V8, Options::default()).unwrap();
        assert_eq!(text(&r), ["RPUSH k a", "PEXPIREAT k 1700000000123"]);

        // SET replaces any type: no DEL.
        let mut e = entry(Value::String(b("v")));
        e.expire_ms = Some(5);
        let r = rebuild(&e, V6, opts(true, 10)).unwrap();
        assert_eq!(text(&r), ["SET k v", "PEXPIREAT k 5"]);

        // Nothing to create, nothing to expire.
        let mut e = entry(Value::Set(vec![]));
        e.expire_ms = Some(5);
        assert_eq!(text(&rebuild(&e, V8, opts(true, 10)).unwrap()), ["DEL k"]);
        assert!(
            rebuild(&e, V8, opts(false, 10))
                .unwrap()
                .commands
                .is_empty()
        );
    }

    #[test]
    fn binary_arguments_pass_untouched() {
        let key = vec![0, 0xff, b'\r', b'\n'];
        let mut e = entry(Value::String(vec![0, 1, 2, 0xfe]));
        e.key = key.clone();
        let r = rebuild(&e, V8, Options::default()).unwrap();
        assert_eq!(r.commands, vec![vec![b("SET"), key, vec![0, 1, 2, 0xfe]]]);
    }

    fn hx() -> Value {
        let f = |n: &str, at: Option<i64>| HashField {
            field: b(n),
            value: b(&format!("v{n}")),
            expire_ms: at,
        };
        Value::HashWithExpiry(vec![
            f("a", Some(2000)),
            f("b", None),
            f("c", Some(1000)),
            f("d", Some(2000)),
            f("e", Some(2000)),
        ])
    }

    #[test]
    fn field_expiry_grouped_by_time() {
        let r = rebuild(&entry(hx()), Target::new(7, 4), opts(false, 2)).unwrap();
        assert_eq!(
            text(&r),
            [
                "HSET k a va b vb",
                "HSET k c vc d vd",
                "HSET k e ve",
                "HPEXPIREAT k 1000 FIELDS 1 c",
                "HPEXPIREAT k 2000 FIELDS 2 a d",
                "HPEXPIREAT k 2000 FIELDS 1 e",
            ]
        );
        assert!(r.losses.is_empty());
    }

    #[test]
    fn field_expiry_lost_before_7_4() {
        for t in [Target::new(7, 2), V7, V6] {
            let r = rebuild(&entry(hx()), t, Options::default()).unwrap();
            assert_eq!(text(&r), ["HSET k a va b vb c vc d vd e ve"], "{t}");
            assert_eq!(r.losses, [Loss::FieldExpiry { fields: 4 }], "{t}");
        }
        // One text for a kind, whatever the count, to tally by.
        assert_eq!(
            Loss::FieldExpiry { fields: 4 }.to_string(),
            Loss::FieldExpiry { fields: 1 }.to_string()
        );
        // No field expiring: nothing lost.
        let v = Value::HashWithExpiry(vec![HashField {
            field: b("f"),
            value: b("v"),
            expire_ms: None,
        }]);
        let r = rebuild(&entry(v), V6, Options::default()).unwrap();
        assert_eq!(text(&r), ["HSET k f v"]);
        assert!(r.losses.is_empty());
    }

    #[test]
    fn modules_are_refused() {
        // "graphdata", encoding version 17, packed as Redis packs it.
        const CHARSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let id = b"graphdata".iter().fold(0u64, |acc, c| {
            (acc << 6) | CHARSET.iter().position(|x| x == c).unwrap() as u64
        }) << 10
            | 17;
        let e = entry(Value::Module { id, raw: vec![0] });
        let err = rebuild(&e, V8, Options::default()).unwrap_err();
        assert_eq!(
            err,
            Unsupported::Module {
                name: "graphdata".into(),
                encver: 17
            }
        );
        assert!(err.to_string().contains("graphdata"), "{err}");
    }

    /// The payload `restore_module` builds is the one the reader gives as
    /// the entry's `DUMP` payload (the bytes in the file between the type
    /// and the next key), so `RESTORE` gets exactly what `DUMP` returned.
    #[test]
    fn module_values_are_restored_from_their_dump_payload() {
        let id: u64 = 0x1234_5678_9abc_de11;
        let mut dump = b"REDIS0010".to_vec();
        dump.extend_from_slice(&[0xfc]);
        dump.extend_from_slice(&1_900_000_000_000i64.to_le_bytes());
        dump.extend_from_slice(&[crate::types::MODULE_2, 1, b'm', 0x81]);
        dump.extend_from_slice(&id.to_be_bytes());
        // MODULE_OP_UINT 5, MODULE_OP_STRING "ab", MODULE_OP_EOF.
        dump.extend_from_slice(&[2, 5, 5, 2, b'a', b'b', 0]);
        dump.push(0xff);
        let crc = crate::crc64::crc64(0, &dump);
        dump.extend_from_slice(&crc.to_le_bytes());
        let mut reader = crate::Reader::new(&dump[..]).unwrap().with_dump_payloads();
        let e = reader.next_entry().unwrap().unwrap();
        let commands = restore_module(&e, 10).unwrap();
        assert_eq!(commands.len(), 2);
        assert_eq!(commands[0][0], b"RESTORE");
        assert_eq!(commands[0][1], b"m");
        assert_eq!(commands[0][2], b"0");
        assert_eq!(Some(&commands[0][3]), e.dump.as_ref());
        assert_eq!(commands[0][4], b"REPLACE");
        assert_eq!(commands[1], [b("PEXPIREAT"), b("m"), b("1900000000000")]);
        assert_eq!(restore_module(&entry(Value::String(b("v"))), 10), None);
    }

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    fn sample_stream() -> Stream {
        let e = |ms| StreamEntry {
            id: id(ms, 0),
            fields: vec![(b("f"), b(&ms.to_string()))],
        };
        let p = |ms, t, n| PendingEntry {
            id: id(ms, 0),
            delivery_time_ms: t,
            delivery_count: n,
        };
        let consumer = |name: &str, pending: Vec<StreamId>| StreamConsumer {
            name: b(name),
            seen_time_ms: 1,
            active_time_ms: Some(1),
            pending,
        };
        Stream {
            length: 3,
            entries: vec![e(1), e(2), e(4)],
            nodes: 1,
            last_id: id(5, 0),
            first_id: Some(id(1, 0)),
            max_deleted_id: Some(id(5, 0)),
            entries_added: Some(5),
            groups: vec![
                StreamGroup {
                    name: b("g"),
                    last_id: id(4, 0),
                    entries_read: Some(4),
                    // 3-0 was deleted; 4-0 has no owner.
                    pending: vec![p(1, 100, 2), p(2, 100, 2), p(3, 100, 1), p(4, 200, 1)],
                    consumers: vec![
                        consumer("alice", vec![id(1, 0), id(2, 0), id(3, 0)]),
                        consumer("idle", vec![]),
                    ],
                },
                StreamGroup {
                    name: b("fresh"),
                    last_id: id(5, 0),
                    entries_read: Some(u64::MAX),
                    pending: vec![],
                    consumers: vec![],
                },
            ],
        }
    }

    #[test]
    fn stream_on_7_and_later() {
        let r = rebuild(&entry(Value::Stream(sample_stream())), V7, opts(false, 10)).unwrap();
        assert_eq!(
            text(&r),
            [
                "XADD k 1-0 f 1",
                "XADD k 2-0 f 2",
                "XADD k 4-0 f 4",
                "XSETID k 5-0 ENTRIESADDED 5 MAXDELETEDID 5-0",
                "XGROUP CREATE k g 4-0 ENTRIESREAD 4",
                "XGROUP CREATECONSUMER k g alice",
                "XGROUP CREATECONSUMER k g idle",
                "XCLAIM k g alice 0 1-0 2-0 TIME 100 RETRYCOUNT 2 FORCE JUSTID",
                // The unknown count (-1) is left to the default, also -1.
                "XGROUP CREATE k fresh 5-0",
            ]
        );
        assert_eq!(
            r.losses,
            [
                Loss::PendingOfDeletedEntry {
                    group: b("g"),
                    entries: 1
                },
                Loss::PendingWithoutConsumer {
                    group: b("g"),
                    entries: 1
                },
            ]
        );
        // One XCLAIM per `max_args` ids.
        let r = rebuild(&entry(Value::Stream(sample_stream())), V8, opts(false, 1)).unwrap();
        let claims: Vec<String> = text(&r)
            .into_iter()
            .filter(|c| c.starts_with("XCLAIM"))
            .collect();
        assert_eq!(
            claims,
            [
                "XCLAIM k g alice 0 1-0 TIME 100 RETRYCOUNT 2 FORCE JUSTID",
                "XCLAIM k g alice 0 2-0 TIME 100 RETRYCOUNT 2 FORCE JUSTID",
            ]
        );
    }

    #[test]
    fn stream_before_7() {
        let r = rebuild(&entry(Value::Stream(sample_stream())), V6, opts(true, 10)).unwrap();
        let t = text(&r);
        assert_eq!(t[0], "DEL k");
        assert!(t.contains(&"XSETID k 5-0".to_owned()), "{t:?}");
        assert!(t.contains(&"XGROUP CREATE k g 4-0".to_owned()), "{t:?}");
        assert!(t.contains(&"XGROUP CREATECONSUMER k g idle".to_owned()));
        assert_eq!(r.losses[0], Loss::StreamMetadata);

        // 5.0: no CREATECONSUMER; "idle" owns nothing and goes missing.
        let r = rebuild(
            &entry(Value::Stream(sample_stream())),
            Target::new(5, 0),
            opts(false, 10),
        )
        .unwrap();
        assert!(!text(&r).iter().any(|c| c.contains("CREATECONSUMER")));
        assert!(r.losses.contains(&Loss::ConsumerWithoutPending {
            group: b("g"),
            consumers: 1
        }));

        let err = rebuild(
            &entry(Value::Stream(sample_stream())),
            Target::new(4, 0),
            opts(false, 10),
        )
        .unwrap_err();
        assert_eq!(
            err,
            Unsupported::Stream {
                target: Target::new(4, 0)
            }
        );
    }

    #[test]
    fn stream_metadata_lost_only_when_it_says_something() {
        let plain = Stream {
            length: 1,
            entries: vec![StreamEntry {
                id: id(1, 1),
                fields: vec![(b("a"), b("b"))],
            }],
            nodes: 1,
            last_id: id(1, 1),
            first_id: Some(id(1, 1)),
            max_deleted_id: Some(id(0, 0)),
            entries_added: Some(1),
            groups: vec![],
        };
        let r = rebuild(&entry(Value::Stream(plain.clone())), V6, Options::default()).unwrap();
        assert!(r.losses.is_empty());
        let mut added = plain.clone();
        added.last_id = id(2, 0);
        added.entries_added = Some(2);
        let r = rebuild(&entry(Value::Stream(added)), V6, Options::default()).unwrap();
        assert_eq!(r.losses, [Loss::StreamMetadata]);
        // A 6.2 dump has none to lose, and 7.0 gets the length as the count.
        let mut old = plain;
        (old.first_id, old.max_deleted_id, old.entries_added) = (None, None, None);
        let r = rebuild(&entry(Value::Stream(old.clone())), V6, Options::default()).unwrap();
        assert!(r.losses.is_empty());
        let r = rebuild(&entry(Value::Stream(old)), V7, Options::default()).unwrap();
        assert_eq!(text(&r), ["XADD k 1-1 a b", "XSETID k 1-1 ENTRIESADDED 1"]);
    }

    #[test]
    fn empty_stream_is_created_by_a_trimmed_xadd() {
        let s = Stream {
            length: 0,
            entries: vec![],
            nodes: 0,
            last_id: id(0, 0),
            first_id: Some(id(0, 0)),
            max_deleted_id: Some(id(0, 0)),
            entries_added: Some(0),
            groups: vec![],
        };
        let r = rebuild(&entry(Value::Stream(s)), V7, Options::default()).unwrap();
        assert_eq!(
            text(&r),
            [
                "XADD k MAXLEN 0 0-1 x y",
                "XSETID k 0-0 ENTRIESADDED 0 MAXDELETEDID 0-0"
            ]
        );
    }

    #[test]
    fn encode_is_resp() {
        let mut out = Vec::new();
        encode(&select(12), &mut out);
        assert_eq!(out, b"*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n");
        out.clear();
        encode(&[&b"SET"[..], b"", &[0, b'\r', b'\n']], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$3\r\n\0\r\n\r\n");
        // Appends.
        let big = vec![b'x'; 1234];
        encode(std::slice::from_ref(&big), &mut out);
        let tail = [&b"*1\r\n$1234\r\n"[..], &big, b"\r\n"].concat();
        assert!(out.ends_with(&tail));
        let mut empty = Vec::new();
        encode::<Vec<u8>>(&[], &mut empty);
        assert_eq!(empty, b"*0\r\n");
        assert_eq!(
            function_load(b"#!lua name=x"),
            vec![b("FUNCTION"), b("LOAD"), b("REPLACE"), b("#!lua name=x")]
        );
    }
}
