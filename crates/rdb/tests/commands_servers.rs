//! `rdb::commands` against real servers: a Redis release (6.2, 7.0, 8.2) is
//! filled with every type in every encoding it writes (hashes with expiring
//! fields, streams with deleted entries, trimmed and emptied streams,
//! consumer groups, consumers with and without pending entries, pending
//! entries of deleted messages, TTLs, binary keys, several databases), its
//! dump is read, each entry is rebuilt for a release as old or older, and
//! the commands are replayed on a fresh server of that release. Then the
//! two servers are compared key by key: type, value, field TTLs, stream
//! metadata, groups, PELs and consumers, TTL, and on the same release the
//! `DEBUG DIGEST-VALUE` of every key and `DEBUG DIGEST` of the whole data
//! set. What a rebuild reports as lost is checked against what the data
//! holds, and the target must differ from the source exactly by that.
//!
//! Commands reach the target in the two ways the module is for: piped as
//! RESP (`redis-cli --pipe`) into a server whose every key already holds
//! something else (so `delete_first` must replace it), or as an AOF file a
//! server starts from.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use rdb::commands::{self, Loss, Options, Target};
use rdb::{Entry, Reader, Value, types};

mod common;
use common::{Conn, Reply, Server, Version};

/// Limits low enough that a few dozen elements leave every compact encoding.
const SMALL_LIMITS: &[&str] = &[
    "--hash-max-ziplist-entries",
    "16",
    "--hash-max-ziplist-value",
    "32",
    "--zset-max-ziplist-entries",
    "16",
    "--zset-max-ziplist-value",
    "32",
    "--set-max-intset-entries",
    "16",
    "--list-max-ziplist-size",
    "8",
    "--list-compress-depth",
    "1",
    "--stream-node-max-entries",
    "10",
];

const LIBRARY: &str = "#!lua name=rdbtest\n\
    redis.register_function('echo', function(keys, args) return args[1] end)";

fn target_of(v: Version) -> Target {
    match v {
        Version::V6_2 => Target::new(6, 2),
        Version::V7_0 => Target::new(7, 0),
        Version::V8_2 => Target::new(8, 2),
    }
}

fn start_source(version: Version) -> Server {
    let mut args = SMALL_LIMITS.to_vec();
    if version >= Version::V8_2 {
        args.extend(["--set-max-listpack-entries", "16"]);
        args.extend(["--set-max-listpack-value", "32"]);
    }
    common::start_version(version, &args)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn run(c: &mut Conn, args: &[&[u8]]) -> Reply {
    c.cmd(args)
}

fn s(c: &mut Conn, args: &[&str]) -> Reply {
    c.s(args)
}

fn push(c: &mut Conn, cmd: &str, key: &[u8], args: &[Vec<u8>]) {
    for chunk in args.chunks(200) {
        let mut a: Vec<&[u8]> = vec![cmd.as_bytes(), key];
        a.extend(chunk.iter().map(Vec::as_slice));
        run(c, &a);
    }
}

/// Every type in the encodings `version` writes, in databases 0, 2 and 9.
fn fill(c: &mut Conn, version: Version) {
    let bin: Vec<u8> = (0..=255u8).collect();
    for (k, v) in [
        ("s:empty", b("")),
        ("s:int", b("-9223372036854775808")),
        ("s:text", b("hello world")),
        ("s:lzf", b(&"compressible ".repeat(300))),
        ("s:binary", bin.clone()),
        ("s:big", vec![b'z'; 100_000]),
    ] {
        run(c, &[b"SET", k.as_bytes(), &v]);
    }
    run(c, &[b"SET", &[0, 0xff, b'k'], b"binary key"]);

    push(
        c,
        "RPUSH",
        b"l:small",
        &[b("a"), b("1"), b(""), bin.clone()],
    );
    let long: Vec<Vec<u8>> = (0..2500)
        .map(|i| match i % 3 {
            0 => b(&i.to_string()),
            1 => bin.clone(),
            _ => b(&format!("element-{i}-{}", "x".repeat(40))),
        })
        .collect();
    push(c, "RPUSH", b"l:long", &long);
    push(c, "RPUSH", b"\x00l\xff", &[b("x"), b("y")]);
    if version >= Version::V7_0 {
        // Elements over the threshold become PLAIN quicklist nodes.
        s(c, &["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "100"]);
        push(c, "RPUSH", b"l:plain", &[b("x"), vec![b'p'; 500], b("y")]);
    }

    push(
        c,
        "SADD",
        b"set:ints",
        &[b("1"), b("-3"), b("70000"), b("-5000000000")],
    );
    let many_ints: Vec<Vec<u8>> = (0..3000).map(|i| b(&(i * 3).to_string())).collect();
    push(c, "SADD", b"set:bigints", &many_ints);
    push(c, "SADD", b"set:small", &[b("a"), b("b"), b("c")]);
    push(c, "SADD", b"set:binary", &[b("a"), bin.clone()]);
    let members: Vec<Vec<u8>> = (0..1500).map(|i| b(&format!("m{i}"))).collect();
    push(c, "SADD", b"set:big", &members);

    // Scores that must come back bit for bit.
    let special = [
        ("1.5", "a"),
        ("-2", "b"),
        ("1e300", "c"),
        ("+inf", "d"),
        ("-inf", "e"),
        ("5e-324", "f"),
        ("-0", "g"),
        ("0.1", "h"),
        ("0.3333333333333333", "i"),
        ("2.5e-8", "j"),
        ("-1.7976931348623157e308", "k"),
    ];
    let flat: Vec<Vec<u8>> = special.iter().flat_map(|(s, m)| [b(s), b(m)]).collect();
    push(c, "ZADD", b"z:small", &flat);
    let mut flat: Vec<Vec<u8>> = (0..1500)
        .flat_map(|i| {
            [
                b(&(f64::from(i) * 0.37 - 99.0).to_string()),
                b(&format!("member{i}")),
            ]
        })
        .collect();
    flat.extend(
        special
            .iter()
            .flat_map(|(s, m)| [b(s), b(&format!("sp-{m}"))]),
    );
    push(c, "ZADD", b"z:big", &flat);

    push(c, "HSET", b"h:small", &[b("f1"), b("v1"), b("f2"), b("")]);
    push(
        c,
        "HSET",
        b"h:binary",
        &[bin.clone(), b("binary field"), b("f"), bin.clone()],
    );
    let fields: Vec<Vec<u8>> = (0..1200)
        .flat_map(|i| [b(&format!("f{i}")), b(&(i * 7).to_string())])
        .collect();
    push(c, "HSET", b"h:big", &fields);

    if version >= Version::V8_2 {
        let t = now_ms() + 3_600_000;
        let hpexpireat = |c: &mut Conn, key: &str, at: i64, fields: &[&str]| {
            let at = at.to_string();
            let n = fields.len().to_string();
            let mut a = vec!["HPEXPIREAT", key, &at, "FIELDS", &n];
            a.extend(fields);
            s(c, &a);
        };
        s(c, &["HSET", "hx:small", "f1", "v1", "f2", "v2", "f3", "3"]);
        hpexpireat(c, "hx:small", t, &["f1"]);
        hpexpireat(c, "hx:small", t + 5, &["f3"]);
        let fields: Vec<Vec<u8>> = (0..40)
            .flat_map(|i| [b(&format!("f{i}")), b(&format!("v{i}"))])
            .collect();
        push(c, "HSET", b"hx:big", &fields);
        for i in (0..40).step_by(8) {
            hpexpireat(c, "hx:big", t + i * 1000, &[&format!("f{i}")]);
        }
        // 30 fields given one TTL together: one HPEXPIREAT back.
        let fields: Vec<Vec<u8>> = (0..30)
            .flat_map(|i| [b(&format!("f{i}")), b("v")])
            .collect();
        push(c, "HSET", b"hx:same", &fields);
        let names: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        hpexpireat(c, "hx:same", t + 7, &names);
        s(c, &["HSET", "hx:ttl", "a", "1", "b", "2"]);
        hpexpireat(c, "hx:ttl", t, &["a"]);
    }

    fill_streams(c);

    let t = now_ms() + 86_400_000;
    for k in [
        "s:text",
        "l:small",
        "h:big",
        "z:small",
        "st:trimmed",
        "set:big",
    ] {
        s(c, &["PEXPIREAT", k, &t.to_string()]);
    }
    if version >= Version::V8_2 {
        s(c, &["PEXPIREAT", "hx:ttl", &(t + 3).to_string()]);
    }
    for db in [2, 9] {
        s(c, &["SELECT", &db.to_string()]);
        s(c, &["SET", "k", &format!("db{db}")]);
        s(c, &["RPUSH", "l", "a", "b"]);
        s(c, &["XADD", "st:db", "1-1", "f", "v"]);
        s(c, &["PEXPIREAT", "k", &(t + 1).to_string()]);
    }
    s(c, &["SELECT", "0"]);
}

fn read_group(c: &mut Conn, key: &str, group: &[u8], consumer: &[u8], count: &str, from: &str) {
    run(
        c,
        &[
            b"XREADGROUP",
            b"GROUP",
            group,
            consumer,
            b"COUNT",
            count.as_bytes(),
            b"STREAMS",
            key.as_bytes(),
            from.as_bytes(),
        ],
    );
}

fn fill_streams(c: &mut Conn) {
    // Several nodes, entries whose fields differ from their node's master
    // entry, deleted entries first, inside and last; a re-delivered PEL, an
    // acknowledged entry, the PEL entry of a deleted message, consumers
    // without pending entries.
    for i in 1..=45u64 {
        let id = format!("{i}-1");
        if i % 7 == 0 {
            s(c, &["XADD", "st", &id, "other", &format!("o{i}")]);
        } else {
            s(c, &["XADD", "st", &id, "n", &i.to_string(), "text", "x"]);
        }
    }
    for del in ["1-1", "15-1", "16-1", "45-1"] {
        assert_eq!(s(c, &["XDEL", "st", del]), Reply::Int(1));
    }
    s(c, &["XGROUP", "CREATE", "st", "g1", "0"]);
    s(c, &["XGROUP", "CREATE", "st", "g2", "$"]);
    read_group(c, "st", b"g1", b"alice", "3", ">");
    read_group(c, "st", b"g1", b"bob", "2", ">");
    read_group(c, "st", b"g1", b"alice", "10", "0");
    assert_eq!(s(c, &["XACK", "st", "g1", "3-1"]), Reply::Int(1));
    read_group(c, "st", b"g1", b"bob", "2", ">");
    // bob's 8-1 stays pending after its message is gone.
    assert_eq!(s(c, &["XDEL", "st", "8-1"]), Reply::Int(1));
    s(c, &["XGROUP", "CREATECONSUMER", "st", "g1", "carol"]);
    read_group(c, "st", b"g2", b"dave", "5", ">");

    s(c, &["XGROUP", "CREATE", "st:empty", "g", "$", "MKSTREAM"]);

    for id in ["1-1", "2-1", "3-1"] {
        s(c, &["XADD", "st:drained", id, "f", "v"]);
    }
    for id in ["1-1", "2-1", "3-1"] {
        s(c, &["XDEL", "st:drained", id]);
    }

    // Trimmed under three delivered entries; two more read after.
    for i in 1..=10 {
        s(
            c,
            &["XADD", "st:trimmed", &format!("{i}-0"), "i", &i.to_string()],
        );
    }
    s(c, &["XGROUP", "CREATE", "st:trimmed", "g", "0"]);
    read_group(c, "st:trimmed", b"g", b"c1", "3", ">");
    s(c, &["XTRIM", "st:trimmed", "MAXLEN", "4"]);
    read_group(c, "st:trimmed", b"g", b"c2", "2", ">");

    // A PEL longer than an XCLAIM holds, a binary consumer name.
    for i in 1..=1200 {
        s(
            c,
            &["XADD", "st:big", &format!("{i}-0"), "i", &i.to_string()],
        );
    }
    s(c, &["XGROUP", "CREATE", "st:big", "g", "0"]);
    read_group(c, "st:big", b"g", b"c", "1100", ">");
    read_group(c, "st:big", b"g", b"d\x00\xff", "50", ">");
    s(c, &["XGROUP", "CREATE", "st:big", "late", "$"]);
}

/// The losses a rebuild of `key` must report.
fn expected_losses(key: &[u8], source: Version, target: Version) -> Vec<Loss> {
    let meta = source >= Version::V7_0 && target < Version::V7_0;
    let expiry = target < Version::V8_2;
    let deleted = |group: &str, entries| Loss::PendingOfDeletedEntry {
        group: b(group),
        entries,
    };
    let mut l = Vec::new();
    match key {
        b"hx:small" if expiry => l.push(Loss::FieldExpiry { fields: 2 }),
        b"hx:big" if expiry => l.push(Loss::FieldExpiry { fields: 5 }),
        b"hx:same" if expiry => l.push(Loss::FieldExpiry { fields: 30 }),
        b"hx:ttl" if expiry => l.push(Loss::FieldExpiry { fields: 1 }),
        b"st" => {
            if meta {
                l.push(Loss::StreamMetadata);
            }
            l.push(deleted("g1", 1));
        }
        b"st:trimmed" => {
            if meta {
                l.push(Loss::StreamMetadata);
            }
            l.push(deleted("g", 3));
        }
        b"st:drained" | b"st:big" if meta => l.push(Loss::StreamMetadata),
        _ => {}
    }
    l
}

/// The type ids each release writes for the data above.
fn expected_types(version: Version) -> BTreeSet<u8> {
    use types::*;
    let mut t: BTreeSet<u8> = [STRING, SET, SET_INTSET, ZSET_2, HASH].into();
    t.extend(match version {
        Version::V6_2 => vec![LIST_QUICKLIST, ZSET_ZIPLIST, HASH_ZIPLIST, STREAM_LISTPACKS],
        Version::V7_0 => vec![
            LIST_QUICKLIST_2,
            ZSET_LISTPACK,
            HASH_LISTPACK,
            STREAM_LISTPACKS_2,
        ],
        Version::V8_2 => vec![
            LIST_QUICKLIST_2,
            ZSET_LISTPACK,
            HASH_LISTPACK,
            SET_LISTPACK,
            STREAM_LISTPACKS_3,
            HASH_METADATA,
            HASH_LISTPACK_EX,
        ],
    });
    t
}

// --- Reading a key back from a server. ---

fn bulk(r: Reply) -> Vec<u8> {
    match r {
        Reply::Bulk(Some(v)) => v,
        Reply::Simple(s) => s.into_bytes(),
        other => panic!("not a string: {other:?}"),
    }
}

fn int(r: Reply) -> i64 {
    match r {
        Reply::Int(n) => n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn array(r: Reply) -> Vec<Reply> {
    match r {
        Reply::Array(a) => a,
        other => panic!("not an array: {other:?}"),
    }
}

/// A RESP2 map (a flat array of names and values).
fn map(r: Reply) -> BTreeMap<String, Reply> {
    let mut out = BTreeMap::new();
    let mut it = array(r).into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.insert(String::from_utf8(bulk(k)).expect("a UTF-8 name"), v);
    }
    out
}

fn take(m: &mut BTreeMap<String, Reply>, name: &str) -> Reply {
    m.remove(name)
        .unwrap_or_else(|| panic!("no {name} in {m:?}"))
}

/// A string of a reply, shown escaped when a comparison fails.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Text(Vec<u8>);

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

fn text(r: Reply) -> Text {
    Text(bulk(r))
}

/// A pending entry: id, consumer, delivery time, delivery count.
type Pending = (Text, Text, i64, i64);
/// A consumer: name, pel-count, and its pending entries (id, delivery
/// time, delivery count). Seen and active times are the rebuild's, not the
/// dump's.
type Consumer = (Text, i64, Vec<(Text, i64, i64)>);

#[derive(Debug, PartialEq)]
struct Group {
    name: Text,
    last_delivered: Text,
    /// entries-read and lag (7.0+).
    read: Option<(Reply, Reply)>,
    pel_count: i64,
    pending: Vec<Pending>,
    consumers: Vec<Consumer>,
}

#[derive(Debug, PartialEq)]
struct StreamView {
    entries: Vec<(Text, Vec<Text>)>,
    length: i64,
    last_id: Text,
    /// max-deleted-entry-id, entries-added, recorded-first-entry-id (7.0+).
    meta: Option<(Reply, Reply, Reply)>,
    groups: Vec<Group>,
}

#[derive(Debug, PartialEq)]
enum View {
    Str(Text),
    List(Vec<Text>),
    Set(BTreeSet<Text>),
    /// Members in ZRANGE order, scores as bits: releases print them
    /// differently (6.2 `%.17g`, 7.0+ shortest).
    ZSet(Vec<(Text, u64)>),
    /// Fields sorted; their HPEXPIRETIME (-1: none) where read.
    Hash(BTreeMap<Text, Text>, Option<Vec<i64>>),
    Stream(StreamView),
}

/// What both servers can say about a key.
#[derive(Clone, Copy)]
struct Both {
    /// Both are 7.0+: stream metadata, entries-read and lag.
    v7: bool,
    /// Both are 7.4+: field TTLs.
    field_ttl: bool,
}

fn view(c: &mut Conn, key: &[u8], both: Both) -> View {
    let t = text(run(c, &[b"TYPE", key]));
    let strings = |r: Reply| array(r).into_iter().map(text).collect::<Vec<_>>();
    match t.0.as_slice() {
        b"string" => View::Str(text(run(c, &[b"GET", key]))),
        b"list" => View::List(strings(run(c, &[b"LRANGE", key, b"0", b"-1"]))),
        b"set" => View::Set(strings(run(c, &[b"SMEMBERS", key])).into_iter().collect()),
        b"zset" => {
            let flat = strings(run(c, &[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]));
            View::ZSet(
                flat.chunks(2)
                    .map(|p| {
                        let text = String::from_utf8(p[1].0.clone()).expect("a UTF-8 score");
                        let score: f64 = text.parse().expect("a score");
                        (p[0].clone(), score.to_bits())
                    })
                    .collect(),
            )
        }
        b"hash" => {
            let flat = strings(run(c, &[b"HGETALL", key]));
            let h: BTreeMap<Text, Text> = flat
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            let ttls = both.field_ttl.then(|| {
                let n = h.len().to_string();
                let mut a: Vec<&[u8]> = vec![b"HPEXPIRETIME", key, b"FIELDS", n.as_bytes()];
                a.extend(h.keys().map(|k| k.0.as_slice()));
                array(run(c, &a)).into_iter().map(int).collect()
            });
            View::Hash(h, ttls)
        }
        b"stream" => View::Stream(stream_view(c, key, both)),
        other => panic!("{key:?}: type {:?}", String::from_utf8_lossy(other)),
    }
}

fn stream_view(c: &mut Conn, key: &[u8], both: Both) -> StreamView {
    let entries = array(run(c, &[b"XRANGE", key, b"-", b"+"]))
        .into_iter()
        .map(|e| {
            let mut e = array(e).into_iter();
            let id = text(e.next().expect("an id"));
            let fields = array(e.next().expect("fields"))
                .into_iter()
                .map(text)
                .collect();
            (id, fields)
        })
        .collect();
    let mut info = map(run(c, &[b"XINFO", b"STREAM", key, b"FULL", b"COUNT", b"0"]));
    let meta = both.v7.then(|| {
        (
            take(&mut info, "max-deleted-entry-id"),
            take(&mut info, "entries-added"),
            take(&mut info, "recorded-first-entry-id"),
        )
    });
    let groups = array(take(&mut info, "groups"))
        .into_iter()
        .map(|g| {
            let mut g = map(g);
            let read = both
                .v7
                .then(|| (take(&mut g, "entries-read"), take(&mut g, "lag")));
            let pending = array(take(&mut g, "pending"))
                .into_iter()
                .map(|p| {
                    let mut p = array(p).into_iter();
                    let mut next = || p.next().expect("a PEL field");
                    (text(next()), text(next()), int(next()), int(next()))
                })
                .collect();
            let consumers = array(take(&mut g, "consumers"))
                .into_iter()
                .map(|c| {
                    let mut c = map(c);
                    let pending = array(take(&mut c, "pending"))
                        .into_iter()
                        .map(|p| {
                            let mut p = array(p).into_iter();
                            let mut next = || p.next().expect("a PEL field");
                            (text(next()), int(next()), int(next()))
                        })
                        .collect();
                    (
                        text(take(&mut c, "name")),
                        int(take(&mut c, "pel-count")),
                        pending,
                    )
                })
                .collect();
            Group {
                name: text(take(&mut g, "name")),
                last_delivered: text(take(&mut g, "last-delivered-id")),
                read,
                pel_count: int(take(&mut g, "pel-count")),
                pending,
                consumers,
            }
        })
        .collect();
    StreamView {
        entries,
        length: int(take(&mut info, "length")),
        last_id: text(take(&mut info, "last-generated-id")),
        meta,
        groups,
    }
}

/// The source's stream as the target must hold it: without the pending
/// entries of deleted messages, which XCLAIM cannot recreate.
fn without_deleted(mut s: StreamView) -> StreamView {
    let live: BTreeSet<Text> = s.entries.iter().map(|(id, _)| id.clone()).collect();
    for g in &mut s.groups {
        g.pending.retain(|p| live.contains(&p.0));
        g.pel_count = g.pending.len() as i64;
        for (_, count, pending) in &mut g.consumers {
            pending.retain(|p| live.contains(&p.0));
            *count = pending.len() as i64;
        }
    }
    s
}

/// The source's value as a target that lost what `losses` says must hold it.
fn expected_view(v: View, losses: &[Loss]) -> View {
    match v {
        View::Stream(s)
            if losses
                .iter()
                .any(|l| matches!(l, Loss::PendingOfDeletedEntry { .. })) =>
        {
            View::Stream(without_deleted(s))
        }
        other => other,
    }
}

// --- Getting commands to a target. ---

/// The commands of every entry as RESP, each database's preceded by its
/// SELECT.
struct Wire {
    resp: Vec<u8>,
    /// Commands in `resp`.
    count: usize,
    /// What each (db, key) lost.
    losses: BTreeMap<(u64, Vec<u8>), Vec<Loss>>,
}

fn wire(
    entries: &[Entry],
    functions: &[Vec<u8>],
    source: Version,
    target: Version,
    options: Options,
) -> Wire {
    let mut out = Vec::new();
    let mut count = 0;
    let mut losses = BTreeMap::new();
    if target >= Version::V7_0 {
        for code in functions {
            commands::encode(&commands::function_load(code), &mut out);
            count += 1;
        }
    }
    let mut db = None;
    for e in entries {
        let rebuilt = commands::rebuild(e, target_of(target), options)
            .unwrap_or_else(|u| panic!("{:?}: {u}", e.key));
        assert_eq!(
            rebuilt.losses,
            expected_losses(&e.key, source, target),
            "{source:?} -> {target:?}: losses of {:?}",
            String::from_utf8_lossy(&e.key)
        );
        if db != Some(e.db) {
            commands::encode(&commands::select(e.db), &mut out);
            count += 1;
            db = Some(e.db);
        }
        for c in &rebuilt.commands {
            assert!(
                c.len() <= 2 * options.max_args + 16,
                "{:?}: a command of {} arguments",
                e.key,
                c.len()
            );
            commands::encode(c, &mut out);
        }
        count += rebuilt.commands.len();
        losses.insert((e.db, e.key.clone()), rebuilt.losses);
    }
    Wire {
        resp: out,
        count,
        losses,
    }
}

/// Pipes RESP into a server with `redis-cli --pipe`, which counts replies
/// and errors.
fn pipe(port: u16, resp: &[u8], commands: usize) {
    let mut child = Process::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli not found: install the redis-tools package");
    // Written from a thread: redis-cli prints every error it gets, and
    // would stop reading once its output pipe is full.
    let mut stdin = child.stdin.take().expect("stdin");
    let resp = resp.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&resp));
    let out = child.wait_with_output().expect("redis-cli --pipe");
    writer.join().expect("the writer").expect("piping commands");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("errors: 0, replies: {commands}")),
        "redis-cli --pipe: {text}"
    );
}

/// A server started from an AOF file (the pre-7.0 single file, which 7.0+
/// takes as the base of a new multi-part AOF).
struct AofServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for AofServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_from_aof(version: Version, aof: &[u8]) -> AofServer {
    let port = common::free_port();
    let dir = std::env::temp_dir().join(format!("rdb-aof-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    std::fs::write(dir.join("appendonly.aof"), aof).expect("writing the AOF");
    let debug: &[&str] = if version >= Version::V7_0 {
        &["--enable-debug-command", "yes"]
    } else {
        &[]
    };
    let child = Process::new(version.binary())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--daemonize", "no"])
        .args(["--appendonly", "yes", "--appendfilename", "appendonly.aof"])
        .args(debug)
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    AofServer { child, port, dir }
}

fn aof_log(server: &AofServer) -> String {
    let log = std::fs::read_to_string(server.dir.join("redis.log")).unwrap_or_default();
    // Warnings only: the errors replayed commands got, a failed load.
    log.lines()
        .filter(|l| l.contains(" # "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Errors the server sent to the client replaying its AOF (counted apart
/// from the `-LOADING` a client connecting too early gets).
fn aof_errors(c: &mut Conn) -> i64 {
    let info = String::from_utf8(bulk(s(c, &["INFO", "stats"]))).expect("UTF-8 INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("unexpected_error_replies:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("unexpected_error_replies in INFO stats")
}

// --- The comparison. ---

#[derive(Clone, Copy, PartialEq)]
enum Load {
    /// Piped into a server whose every key holds a list already: replaced
    /// by DEL first, in commands of at most 7 elements.
    PipeOverExisting,
    /// An AOF file the target starts from, default options.
    AofFile,
}

fn check(source: Version, target: Version, load: Load) {
    let src = start_source(source);
    let mut sc = Conn::open(src.port);
    fill(&mut sc, source);
    if source >= Version::V7_0 {
        s(&mut sc, &["FUNCTION", "LOAD", LIBRARY]);
    }
    assert_eq!(s(&mut sc, &["SAVE"]), Reply::Simple("OK".into()));
    let dump = std::fs::read(src.dir.join("dump.rdb")).expect("dump.rdb");
    let mut reader = Reader::new(&dump[..]).expect("header");
    let entries: Vec<Entry> = reader.by_ref().collect::<Result<_, _>>().expect("entries");
    let functions = reader.functions().to_vec();
    let seen: BTreeSet<u8> = entries.iter().map(|e| e.type_id).collect();
    assert_eq!(seen, expected_types(source), "{source:?}: type ids written");

    let options = match load {
        Load::PipeOverExisting => Options {
            delete_first: true,
            max_args: 7,
        },
        Load::AofFile => Options::default(),
    };
    let Wire {
        resp,
        count,
        losses,
    } = wire(&entries, &functions, source, target, options);

    // The target server, kept until the comparison is done.
    let _keep: Box<dyn std::any::Any>;
    let mut tc = match load {
        Load::PipeOverExisting => {
            let server = common::start_version(target, &[]);
            let mut tc = Conn::open(server.port);
            for e in &entries {
                s(&mut tc, &["SELECT", &e.db.to_string()]);
                run(&mut tc, &[b"RPUSH", &e.key, b"left over"]);
            }
            pipe(server.port, &resp, count);
            _keep = Box::new(server);
            tc
        }
        Load::AofFile => {
            let server = start_from_aof(target, &resp);
            let mut tc = Conn::open(server.port);
            let mut loaded = false;
            for _ in 0..300 {
                let info = String::from_utf8(bulk(s(&mut tc, &["INFO", "persistence"])))
                    .expect("UTF-8 INFO");
                if info.contains("loading:0") {
                    loaded = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            assert!(
                loaded,
                "{target:?} never loaded its AOF: {}",
                aof_log(&server)
            );
            assert_eq!(
                aof_errors(&mut tc),
                0,
                "{target:?}: errors loading the AOF: {}",
                aof_log(&server)
            );
            _keep = Box::new(server);
            tc
        }
    };

    let both = Both {
        v7: source >= Version::V7_0 && target >= Version::V7_0,
        field_ttl: target >= Version::V8_2,
    };
    let same = source == target;
    for e in &entries {
        let key = &e.key;
        let name = String::from_utf8_lossy(key).into_owned();
        let what = format!("{source:?} -> {target:?}: db {} key {name:?}", e.db);
        for c in [&mut sc, &mut tc] {
            s(c, &["SELECT", &e.db.to_string()]);
        }
        let lost = &losses[&(e.db, key.clone())];
        let want = expected_view(view(&mut sc, key, both), lost);
        let got = view(&mut tc, key, both);
        assert_eq!(got, want, "{what}");
        if matches!(e.value, Value::HashWithExpiry(_)) && !both.field_ttl {
            assert!(!lost.is_empty(), "{what}: field expiry dropped silently");
        }

        // The absolute expiry is the dump's, so it is exact where it can
        // be read (7.0+), and PTTLs agree to the time between the reads.
        if both.v7 {
            let pexpiretime = |c: &mut Conn| int(run(c, &[b"PEXPIRETIME", key]));
            assert_eq!(
                pexpiretime(&mut tc),
                pexpiretime(&mut sc),
                "{what}: PEXPIRETIME"
            );
        }
        let (a, z) = (
            int(run(&mut sc, &[b"PTTL", key])),
            int(run(&mut tc, &[b"PTTL", key])),
        );
        assert_eq!(a == -1, z == -1, "{what}: PTTL {a} vs {z}");
        assert!((a - z).abs() < 2000, "{what}: PTTL {a} vs {z}");
        assert_eq!(e.expire_ms.is_some(), a > 0, "{what}: TTL in the dump");

        // The digest of a stream covers its entries only, and a hash's
        // its fields and values (not their TTLs): the views above check
        // the rest.
        if same {
            let digest = |c: &mut Conn| format!("{:?}", run(c, &[b"DEBUG", b"DIGEST-VALUE", key]));
            assert_eq!(digest(&mut tc), digest(&mut sc), "{what}: DIGEST-VALUE");
        }
    }

    // Nothing more on the target, in any database.
    for db in 0..16 {
        for c in [&mut sc, &mut tc] {
            s(c, &["SELECT", &db.to_string()]);
        }
        assert_eq!(
            s(&mut tc, &["DBSIZE"]),
            s(&mut sc, &["DBSIZE"]),
            "{source:?} -> {target:?}: DBSIZE of db {db}"
        );
    }
    if same {
        // Every key, its value and whether it expires, in every database.
        assert_eq!(
            s(&mut tc, &["DEBUG", "DIGEST"]),
            s(&mut sc, &["DEBUG", "DIGEST"])
        );
    }
    if source >= Version::V7_0 && target >= Version::V7_0 {
        assert_eq!(
            s(&mut tc, &["FCALL", "echo", "0", "hi"]),
            Reply::Bulk(Some(b("hi")))
        );
    }
}

#[test]
fn redis_6_2_to_6_2() {
    check(Version::V6_2, Version::V6_2, Load::PipeOverExisting);
}

#[test]
fn redis_7_0_to_7_0() {
    check(Version::V7_0, Version::V7_0, Load::PipeOverExisting);
}

#[test]
fn redis_8_2_to_8_2() {
    check(Version::V8_2, Version::V8_2, Load::PipeOverExisting);
}

#[test]
fn redis_7_0_to_6_2() {
    check(Version::V7_0, Version::V6_2, Load::AofFile);
}

#[test]
fn redis_8_2_to_7_0() {
    check(Version::V8_2, Version::V7_0, Load::AofFile);
}

#[test]
fn redis_8_2_to_6_2() {
    check(Version::V8_2, Version::V6_2, Load::AofFile);
}

/// Each way of loading once more, the other way round: a same-release
/// pair from an AOF file, a cross-release pair piped over existing keys.
#[test]
fn redis_8_2_to_8_2_from_aof() {
    check(Version::V8_2, Version::V8_2, Load::AofFile);
}

#[test]
fn redis_8_2_to_6_2_piped_over_existing_keys() {
    check(Version::V8_2, Version::V6_2, Load::PipeOverExisting);
}

/// What the stream commands of a rebuild do on each release, as the
/// module relies on.
#[test]
fn stream_commands_behave_as_rebuild_relies_on() {
    for version in Version::ALL {
        let server = common::start_version(version, &[]);
        let mut c = Conn::open(server.port);
        let c = &mut c;
        let v7 = version >= Version::V7_0;
        let err = |c: &mut Conn, args: &[&str]| {
            let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
            c.try_cmd(&a).expect_err("an error")
        };

        // A trimmed XADD leaves an empty stream, and no deletion recorded.
        s(c, &["XADD", "e", "MAXLEN", "0", "0-1", "x", "y"]);
        assert_eq!(s(c, &["XLEN", "e"]), Reply::Int(0), "{version:?}");
        assert_eq!(s(c, &["TYPE", "e"]), Reply::Simple("stream".into()));
        if v7 {
            let mut info = map(s(c, &["XINFO", "STREAM", "e"]));
            assert_eq!(text(take(&mut info, "max-deleted-entry-id")).0, b"0-0");
            assert_eq!(take(&mut info, "entries-added"), Reply::Int(1));
        }
        // An empty stream takes any last id, even below its own.
        assert_eq!(s(c, &["XSETID", "e", "0-0"]), Reply::Simple("OK".into()));
        // Not below its top entry; its top entry itself is fine.
        s(c, &["XADD", "e", "5-0", "f", "v"]);
        let e = err(c, &["XSETID", "e", "4-0"]);
        assert!(e.contains("smaller than the target stream top item"), "{e}");
        assert_eq!(s(c, &["XSETID", "e", "5-0"]), Reply::Simple("OK".into()));
        if v7 {
            let e = err(c, &["XSETID", "e", "6-0", "ENTRIESADDED", "0"]);
            assert!(e.contains("smaller than the target stream length"), "{e}");
            let e = err(c, &["XSETID", "e", "6-0", "MAXDELETEDID", "7-0"]);
            assert!(
                e.contains("smaller than the provided max_deleted_entry_id"),
                "{e}"
            );
        } else {
            // 6.2 has neither option.
            err(c, &["XSETID", "e", "6-0", "ENTRIESADDED", "1"]);
        }

        // FORCE creates the pending entry of a live message, RETRYCOUNT
        // sets its count outright, TIME its delivery time.
        s(c, &["XGROUP", "CREATE", "e", "g", "0"]);
        let past = (now_ms() - 60_000).to_string();
        let claim = |c: &mut Conn, id: &str, extra: &[&str]| {
            let mut a = vec!["XCLAIM", "e", "g", "c", "0", id, "TIME", &past];
            a.extend(extra);
            s(c, &a)
        };
        let claimed = claim(c, "5-0", &["RETRYCOUNT", "7", "FORCE", "JUSTID"]);
        assert_eq!(claimed, Reply::Array(vec![Reply::Bulk(Some(b("5-0")))]));
        let pending = |c: &mut Conn| {
            let mut p = array(s(c, &["XPENDING", "e", "g", "-", "+", "10"])).into_iter();
            let mut one = array(p.next().expect("a pending entry")).into_iter();
            assert!(p.next().is_none());
            let mut next = || one.next().expect("a field");
            (text(next()).0, text(next()).0, int(next()), int(next()))
        };
        let (id, owner, idle, count) = pending(c);
        assert_eq!((id, owner, count), (b("5-0"), b("c"), 7), "{version:?}");
        assert!((60_000..70_000).contains(&idle), "{version:?}: idle {idle}");
        // JUSTID alone leaves the count; neither adds one.
        claim(c, "5-0", &["JUSTID"]);
        assert_eq!(pending(c).3, 7, "{version:?}");
        claim(c, "5-0", &[]);
        assert_eq!(pending(c).3, 8, "{version:?}");
        // A delivery time in the server's future becomes now.
        let future = (now_ms() + 3_600_000).to_string();
        s(
            c,
            &[
                "XCLAIM", "e", "g", "c", "0", "5-0", "TIME", &future, "JUSTID",
            ],
        );
        assert!(pending(c).2 < 5_000, "{version:?}");

        // No pending entry for a deleted message, FORCE or not.
        s(c, &["XADD", "e", "6-0", "f", "v"]);
        s(c, &["XDEL", "e", "6-0"]);
        let claimed = claim(c, "6-0", &["RETRYCOUNT", "1", "FORCE", "JUSTID"]);
        assert_eq!(claimed, Reply::Array(vec![]), "{version:?}");
        assert_eq!(pending(c).0, b("5-0"));
        // One that was delivered before its message was deleted is kept by
        // 6.2's XCLAIM and dropped by 7.0's.
        s(c, &["XADD", "e", "7-0", "f", "v"]);
        s(c, &["XREADGROUP", "GROUP", "g", "d", "STREAMS", "e", ">"]);
        s(c, &["XDEL", "e", "7-0"]);
        let claimed = claim(c, "7-0", &["FORCE", "JUSTID"]);
        let left = int(array(s(c, &["XPENDING", "e", "g"])).remove(0));
        if v7 {
            assert_eq!((claimed, left), (Reply::Array(vec![]), 1), "{version:?}");
        } else {
            let kept = Reply::Array(vec![Reply::Bulk(Some(b("7-0")))]);
            assert_eq!((claimed, left), (kept, 2), "{version:?}");
        }
    }
}
