//! The reader against dumps of three real Redis releases (6.2, 7.0, 8.2),
//! each configured so that every type comes out in every encoding that
//! release writes: small and large strings, lists, sets, sorted sets and
//! hashes, compressed quicklist nodes, streams with deleted entries,
//! consumer groups and PELs, hashes with expiring fields, TTLs, several
//! databases. Each value is compared with what the test wrote, each entry's
//! `DUMP` payload with the server's own, and each payload is `RESTORE`d on a
//! fresh server of the same release.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::time::{SystemTime, UNIX_EPOCH};

use rdb::{Checksum, Entry, KeyInfo, Reader, StreamId, Value, types};

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

/// 7.0 evicts by LFU, so its dump carries a `FREQ` before every key; the
/// others by LRU, so theirs carry an `IDLE`.
fn uses_lfu(version: Version) -> bool {
    version == Version::V7_0
}

fn start(version: Version) -> Server {
    let mut args = SMALL_LIMITS.to_vec();
    if version >= Version::V8_2 {
        args.extend(["--set-max-listpack-entries", "16"]);
        args.extend(["--set-max-listpack-value", "32"]);
    }
    let policy = if uses_lfu(version) {
        "allkeys-lfu"
    } else {
        "allkeys-lru"
    };
    args.extend(["--maxmemory-policy", policy]);
    common::start_version(version, &args)
}

/// A function library (7.0+), which dumps keep in a `FUNCTION2` opcode.
const LIBRARY: &str = "#!lua name=rdbtest\n\
    redis.register_function('echo', function(keys, args) return args[1] end)";

/// A value normalized for comparison: sets and hashes sorted, scores as bits.
#[derive(Debug, PartialEq)]
enum Norm {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    ZSet(BTreeMap<Vec<u8>, u64>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    HashEx(BTreeMap<Vec<u8>, (Vec<u8>, Option<i64>)>),
    Stream(StreamNorm),
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;
/// A PEL entry: id, owning consumer, delivery count.
type Pending = (StreamId, Vec<u8>, u64);

#[derive(Debug, PartialEq)]
struct StreamNorm {
    entries: Vec<(StreamId, Fields)>,
    last_id: StreamId,
    /// Group name, last id, PEL.
    groups: Vec<(Vec<u8>, StreamId, Vec<Pending>)>,
}

fn norm(v: &Value) -> Norm {
    match v {
        Value::String(s) => Norm::Str(s.clone()),
        Value::List(l) => Norm::List(l.clone()),
        Value::Set(s) => Norm::Set(s.iter().cloned().collect()),
        Value::SortedSet(z) => {
            Norm::ZSet(z.iter().map(|(m, s)| (m.clone(), s.to_bits())).collect())
        }
        Value::Hash(h) => Norm::Hash(h.iter().cloned().collect()),
        Value::HashWithExpiry(h) => Norm::HashEx(
            h.iter()
                .map(|f| (f.field.clone(), (f.value.clone(), f.expire_ms)))
                .collect(),
        ),
        Value::Stream(s) => {
            assert_eq!(s.entries.len() as u64, s.length, "XLEN vs entries");
            Norm::Stream(StreamNorm {
                entries: s.entries.iter().map(|e| (e.id, e.fields.clone())).collect(),
                last_id: s.last_id,
                groups: s
                    .groups
                    .iter()
                    .map(|g| {
                        let owner = |id: &StreamId| {
                            let owners: Vec<&Vec<u8>> = g
                                .consumers
                                .iter()
                                .filter(|c| c.pending.contains(id))
                                .map(|c| &c.name)
                                .collect();
                            assert_eq!(owners.len(), 1, "one owner of {id}");
                            owners[0].clone()
                        };
                        let pel = g
                            .pending
                            .iter()
                            .map(|p| (p.id, owner(&p.id), p.delivery_count))
                            .collect();
                        (g.name.clone(), g.last_id, pel)
                    })
                    .collect(),
            })
        }
        Value::Module { .. } => panic!("no modules loaded"),
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn id(ms: u64, seq: u64) -> StreamId {
    StreamId { ms, seq }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Writes data through a connection and records what the dump must hold.
struct Writer {
    c: Conn,
    db: u64,
    want: BTreeMap<(u64, Vec<u8>), Norm>,
    ttl: BTreeMap<(u64, Vec<u8>), i64>,
}

impl Writer {
    fn run(&mut self, cmd: &str, key: &[u8], args: &[Vec<u8>]) {
        let mut a: Vec<&[u8]> = vec![cmd.as_bytes(), key];
        a.extend(args.iter().map(Vec::as_slice));
        self.c.cmd(&a);
    }

    fn select(&mut self, db: u64) {
        self.c.s(&["SELECT", &db.to_string()]);
        self.db = db;
    }

    fn expect(&mut self, key: &[u8], v: Norm) {
        self.want.insert((self.db, key.to_vec()), v);
    }

    fn string(&mut self, key: &[u8], v: Vec<u8>) {
        self.run("SET", key, std::slice::from_ref(&v));
        self.expect(key, Norm::Str(v));
    }

    fn list(&mut self, key: &str, items: Vec<Vec<u8>>) {
        for chunk in items.chunks(100) {
            self.run("RPUSH", key.as_bytes(), chunk);
        }
        self.expect(key.as_bytes(), Norm::List(items));
    }

    fn set(&mut self, key: &str, items: Vec<Vec<u8>>) {
        self.run("SADD", key.as_bytes(), &items);
        self.expect(key.as_bytes(), Norm::Set(items.into_iter().collect()));
    }

    fn zset(&mut self, key: &str, items: Vec<(Vec<u8>, f64)>) {
        let args: Vec<Vec<u8>> = items
            .iter()
            .flat_map(|(m, s)| {
                let score = if s.is_infinite() {
                    if *s > 0.0 { b("+inf") } else { b("-inf") }
                } else {
                    b(&format!("{s:?}"))
                };
                [score, m.clone()]
            })
            .collect();
        self.run("ZADD", key.as_bytes(), &args);
        let n = items.into_iter().map(|(m, s)| (m, s.to_bits())).collect();
        self.expect(key.as_bytes(), Norm::ZSet(n));
    }

    fn hash(&mut self, key: &str, items: Vec<(Vec<u8>, Vec<u8>)>) {
        let args: Vec<Vec<u8>> = items
            .iter()
            .flat_map(|(f, v)| [f.clone(), v.clone()])
            .collect();
        self.run("HSET", key.as_bytes(), &args);
        self.expect(key.as_bytes(), Norm::Hash(items.into_iter().collect()));
    }

    /// A hash whose fields given a time expire then (`HPEXPIREAT`, 7.4+).
    fn hash_ex(&mut self, key: &str, items: Vec<(Vec<u8>, Vec<u8>, Option<i64>)>) {
        let args: Vec<Vec<u8>> = items
            .iter()
            .flat_map(|(f, v, _)| [f.clone(), v.clone()])
            .collect();
        self.run("HSET", key.as_bytes(), &args);
        for (f, _, at) in &items {
            if let Some(at) = at {
                let r = self.c.cmd(&[
                    b"HPEXPIREAT",
                    key.as_bytes(),
                    at.to_string().as_bytes(),
                    b"FIELDS",
                    b"1",
                    f,
                ]);
                assert_eq!(r, Reply::Array(vec![Reply::Int(1)]), "HPEXPIREAT");
            }
        }
        let n = items.into_iter().map(|(f, v, at)| (f, (v, at))).collect();
        self.expect(key.as_bytes(), Norm::HashEx(n));
    }

    fn expire(&mut self, key: &[u8], at: i64) {
        self.run("PEXPIREAT", key, &[b(&at.to_string())]);
        self.ttl.insert((self.db, key.to_vec()), at);
    }
}

/// Strings, lists, sets, sorted sets and hashes, each small (a compact
/// encoding) and large (past the limits of `SMALL_LIMITS`).
fn write_collections(w: &mut Writer, version: Version) {
    let bin: Vec<u8> = (0..=255u8).collect();
    for (k, v) in [
        ("s:empty", b("")),
        ("s:i8", b("-128")),
        ("s:i16", b("32767")),
        ("s:i32", b("-2147483648")),
        ("s:i64", b("9223372036854775807")),
        ("s:text", b("hello world")),
        ("s:lzf", b(&"compressible ".repeat(300))),
        ("s:binary", bin.clone()),
    ] {
        w.string(k.as_bytes(), v);
    }
    w.string(&[0, 0xff, b'k'], b("binary key"));

    w.list(
        "l:small",
        vec![b("a"), b("1"), b("-7"), b(""), b("4294967296")],
    );
    // 8 entries per node, compressible: inner nodes are stored LZF-compressed.
    w.list(
        "l:long",
        (0..200)
            .map(|i| match i % 4 {
                0 => b(&i.to_string()),
                1 => bin.clone(),
                _ => b(&format!("element-{i}-{}", "x".repeat(40))),
            })
            .collect(),
    );
    if version >= Version::V7_0 {
        // Elements over the threshold become PLAIN quicklist nodes.
        w.c.s(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "100"]);
        w.list(
            "l:plain",
            vec![b("x"), vec![b'p'; 500], b("y"), vec![7; 1000]],
        );
    }

    w.set("set:i16", vec![b("1"), b("-3"), b("300")]);
    w.set("set:i64", vec![b("1"), b("70000"), b("-5000000000")]);
    w.set("set:small", vec![b("a"), b("b"), b("c")]);
    w.set(
        "set:bigints",
        (0..40).map(|i| b(&(i * 3).to_string())).collect(),
    );
    w.set("set:big", (0..40).map(|i| b(&format!("m{i}"))).collect());
    w.set("set:long", vec![b("x"), b(&"long member ".repeat(5))]);

    w.zset(
        "z:small",
        vec![
            (b("m1"), 1.5),
            (b("m2"), -2.0),
            (b("m3"), 1e300),
            (b("m4"), f64::INFINITY),
            (b("m5"), f64::NEG_INFINITY),
            (b("m6"), 3.0),
        ],
    );
    w.zset(
        "z:big",
        (0..40)
            .map(|i| (b(&format!("member{i}")), f64::from(i) * 0.25 - 3.0))
            .collect(),
    );
    w.zset("z:long", vec![(b(&"long member ".repeat(5)), 1.0)]);

    w.hash(
        "h:small",
        vec![(b("f1"), b("v1")), (b("f2"), b("2")), (b("f3"), b(""))],
    );
    w.hash(
        "h:big",
        (0..40)
            .map(|i| (b(&format!("f{i}")), b(&(i * 7).to_string())))
            .collect(),
    );
    w.hash("h:long", vec![(b("f"), vec![b'v'; 100])]);

    if version >= Version::V8_2 {
        let t = now_ms() + 3_600_000;
        w.hash_ex(
            "hx:small",
            vec![
                (b("f1"), b("v1"), Some(t)),
                (b("f2"), b("v2"), None),
                (b("f3"), b("3"), Some(t + 5)),
            ],
        );
        w.hash_ex(
            "hx:big",
            (0..40)
                .map(|i| {
                    let at = (i % 8 == 0).then_some(t + i64::from(i) * 1000);
                    (b(&format!("f{i}")), b(&format!("v{i}")), at)
                })
                .collect(),
        );
    }

    let t = now_ms() + 86_400_000;
    for k in ["s:text", "l:small", "h:big", "z:small"] {
        w.expire(k.as_bytes(), t);
    }
    for db in [2, 9] {
        w.select(db);
        w.string(b"k", b(&format!("db{db}")));
        w.list("l", vec![b("a"), b("b")]);
        w.expire(b"k", t + 1);
    }
    w.select(0);
}

/// A stream over several nodes, with entries whose fields differ from the
/// node's master entry, deleted entries (first, middle and last), two
/// consumer groups, a PEL re-delivered once; and an empty stream with a group.
fn write_streams(w: &mut Writer) {
    let mut entries = Vec::new();
    for i in 1..=45u64 {
        let fields = if i % 7 == 0 {
            vec![(b("other"), b(&format!("o{i}")))]
        } else {
            vec![(b("n"), b(&i.to_string())), (b("text"), b("x"))]
        };
        let mut args = vec![b(&format!("{i}-1"))];
        args.extend(fields.iter().flat_map(|(f, v)| [f.clone(), v.clone()]));
        w.run("XADD", b"st", &args);
        entries.push((id(i, 1), fields));
    }
    for del in [1u64, 15, 16, 45] {
        assert_eq!(w.c.s(&["XDEL", "st", &format!("{del}-1")]), Reply::Int(1));
        entries.retain(|(e, _)| e.ms != del);
    }
    w.c.s(&["XGROUP", "CREATE", "st", "g1", "0"]);
    w.c.s(&["XGROUP", "CREATE", "st", "g2", "$"]);
    let read = |w: &mut Writer, consumer: &str, count: &str, from: &str| {
        w.c.s(&[
            "XREADGROUP",
            "GROUP",
            "g1",
            consumer,
            "COUNT",
            count,
            "STREAMS",
            "st",
            from,
        ]);
    };
    read(w, "alice", "3", ">");
    read(w, "bob", "2", ">");
    read(w, "alice", "10", "0"); // re-delivers alice's three
    assert_eq!(w.c.s(&["XACK", "st", "g1", "3-1"]), Reply::Int(1));
    // Delivered: 2-1, 3-1, 4-1 to alice (twice), 5-1, 6-1 to bob; 3-1 acked.
    let pel = vec![
        (id(2, 1), b("alice"), 2),
        (id(4, 1), b("alice"), 2),
        (id(5, 1), b("bob"), 1),
        (id(6, 1), b("bob"), 1),
    ];
    w.expect(
        b"st",
        Norm::Stream(StreamNorm {
            entries,
            last_id: id(45, 1),
            groups: vec![(b("g1"), id(6, 1), pel), (b("g2"), id(45, 1), vec![])],
        }),
    );
    w.c.s(&["XGROUP", "CREATE", "st:empty", "g", "$", "MKSTREAM"]);
    w.expect(
        b"st:empty",
        Norm::Stream(StreamNorm {
            entries: vec![],
            last_id: id(0, 0),
            groups: vec![(b("g"), id(0, 0), vec![])],
        }),
    );
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

fn digest(c: &mut Conn, key: &[u8]) -> String {
    format!("{:?}", c.cmd(&[b"DEBUG", b"DIGEST-VALUE", key]))
}

fn check_release(version: Version) {
    let server = start(version);
    let mut w = Writer {
        c: Conn::open(server.port),
        db: 0,
        want: BTreeMap::new(),
        ttl: BTreeMap::new(),
    };
    write_collections(&mut w, version);
    write_streams(&mut w);
    if version >= Version::V7_0 {
        w.c.s(&["FUNCTION", "LOAD", LIBRARY]);
    }
    assert_eq!(w.c.s(&["SAVE"]), Reply::Simple("OK".into()));
    let dump = std::fs::read(server.dir.join("dump.rdb")).expect("dump.rdb");

    let mut r = Reader::new(&dump[..]).expect("header").with_dump_payloads();
    assert_eq!(r.version(), version.rdb_version(), "{version:?}");
    let entries: Vec<Entry> = r.by_ref().collect::<Result<_, _>>().expect("entries");
    assert_eq!(
        r.checksum(),
        Some(Checksum::Verified(rdb::crc64::crc64(
            0,
            &dump[..dump.len() - 8]
        )))
    );

    let mut got = BTreeMap::new();
    let mut seen_types = BTreeSet::new();
    let functions: &[Vec<u8>] = if version >= Version::V7_0 {
        &[LIBRARY.as_bytes().to_vec()]
    } else {
        &[]
    };
    assert_eq!(r.functions(), functions, "{version:?}: function libraries");
    for e in &entries {
        seen_types.insert(e.type_id);
        let key = (e.db, e.key.clone());
        assert_eq!(e.expire_ms, w.ttl.get(&key).copied(), "TTL of {key:?}");
        if uses_lfu(version) {
            assert!(e.freq.is_some() && e.idle.is_none(), "FREQ of {key:?}");
        } else {
            assert!(e.idle.is_some() && e.freq.is_none(), "IDLE of {key:?}");
        }
        got.insert(key, norm(&e.value));
    }
    for (k, v) in &w.want {
        assert_eq!(got.get(k), Some(v), "{version:?}: key {k:?}");
    }
    assert_eq!(got.len(), w.want.len(), "{version:?}: key count");
    assert_eq!(seen_types, expected_types(version), "{version:?}: type ids");

    // Each payload is the server's own DUMP, and RESTORE takes it back.
    let target = start(version);
    let mut t = Conn::open(target.port);
    for e in &entries {
        let payload = e.dump.as_ref().expect("a dump payload");
        w.c.s(&["SELECT", &e.db.to_string()]);
        t.s(&["SELECT", &e.db.to_string()]);
        let Reply::Bulk(Some(expected)) = w.c.cmd(&[b"DUMP", &e.key]) else {
            panic!("DUMP {:?}", e.key);
        };
        assert_eq!(payload, &expected, "{version:?}: DUMP of {:?}", e.key);
        let ttl = e.expire_ms.unwrap_or(0).to_string();
        t.cmd(&[b"RESTORE", &e.key, ttl.as_bytes(), payload, b"ABSTTL"]);
        assert_eq!(
            digest(&mut t, &e.key),
            digest(&mut w.c, &e.key),
            "{version:?}: {:?} after RESTORE",
            e.key
        );
        // Hash tables iterate in an order that depends on their history,
        // so a restored set or hash may dump its members in another order;
        // every other encoding dumps back the same bytes.
        let hashed = [types::SET, types::HASH, types::HASH_METADATA].contains(&e.type_id);
        if !hashed {
            let Reply::Bulk(Some(again)) = t.cmd(&[b"DUMP", &e.key]) else {
                panic!("DUMP {:?} after RESTORE", e.key);
            };
            assert_eq!(&again, payload, "{version:?}: DUMP of restored {:?}", e.key);
        }
    }

    // Measured instead of decoded: the same keys, types, TTLs, LFU/LRU data
    // and element counts, sizes that add up to the dump, the same checksum.
    let mut m = Reader::new(&dump[..]).expect("header");
    let keys: Vec<KeyInfo> = std::iter::from_fn(|| m.next_key().transpose())
        .collect::<Result<_, _>>()
        .expect("keys");
    assert_eq!(m.checksum(), r.checksum());
    assert_eq!(keys.len(), entries.len());
    for (k, e) in keys.iter().zip(&entries) {
        let from_entry = (e.db, &e.key, e.expire_ms, e.idle, e.freq, e.type_id);
        assert_eq!(
            (k.db, &k.key, k.expire_ms, k.idle, k.freq, k.type_id),
            from_entry
        );
        assert_eq!(k.elements, e.value.elements(), "{version:?}: {:?}", e.key);
    }
    let sized: u64 = keys.iter().map(|k| k.bytes).sum();
    assert!(sized > 0 && sized < dump.len() as u64);

    // Read in odd-sized pieces: the same entries.
    for n in [1, 13, 1000] {
        let again: Vec<Entry> = Reader::new(common::Pieces(&dump, n))
            .expect("header")
            .with_dump_payloads()
            .collect::<Result<_, _>>()
            .expect("entries");
        assert_eq!(again, entries, "{version:?}: pieces of {n}");
    }

    // Cut anywhere: an error, never a panic. Every offset near the ends, a
    // stride through the middle.
    let n = dump.len();
    let cuts = (0..300.min(n))
        .chain((300..n).step_by(97))
        .chain(n.saturating_sub(300)..n);
    for cut in cuts {
        let res = Reader::new(&dump[..cut]).and_then(|r| r.collect::<Result<Vec<_>, _>>());
        assert!(res.is_err(), "{version:?}: cut at {cut}");
    }
    // A flipped byte: an error (checksum or structure), never a panic; in
    // the trailer, a checksum error.
    let mut bad = dump.clone();
    bad[n / 2] ^= 0x20;
    assert!(
        Reader::new(&bad[..])
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .is_err()
    );
    let mut bad = dump.clone();
    bad[n - 3] ^= 1;
    let res = Reader::new(&bad[..]).and_then(|r| r.collect::<Result<Vec<_>, _>>());
    assert!(
        matches!(res, Err(rdb::RdbError::BadChecksum { .. })),
        "{version:?}"
    );
}

#[test]
fn redis_6_2_every_encoding() {
    check_release(Version::V6_2);
}

#[test]
fn redis_7_0_every_encoding() {
    check_release(Version::V7_0);
}

#[test]
fn redis_8_2_every_encoding() {
    check_release(Version::V8_2);
}

/// Real module values: FalkorDB graphs on Redis 8.2 are type-7 values with
/// the module's aux data before the databases. Each is read as raw bytes
/// with its module type, and a fresh server with the module loaded
/// `RESTORE`s its payload to the same graph.
#[test]
fn redis_8_2_module_values_round_trip() {
    let module = Version::V8_2.binary().with_file_name("falkordb.so");
    let module = module.to_str().expect("a UTF-8 path");
    let start = || common::start_version(Version::V8_2, &["--loadmodule", module]);
    let source = start();
    let mut c = Conn::open(source.port);
    let graphs = [
        (
            "g",
            "CREATE (:P {n: 1, name: 'a'})-[:K {w: 2.5}]->(:P {n: 2})",
        ),
        (
            "g:big",
            "UNWIND range(1, 500) AS i CREATE (:N {i: i, s: 'node' + toString(i)})",
        ),
    ];
    for (key, query) in graphs {
        c.s(&["GRAPH.QUERY", key, query]);
    }
    c.s(&["SET", "plain", "x"]);
    assert_eq!(c.s(&["SAVE"]), Reply::Simple("OK".into()));
    let file = std::fs::File::open(source.dir.join("dump.rdb")).expect("dump.rdb");
    let entries: Vec<Entry> = Reader::new(BufReader::new(file))
        .expect("header")
        .with_dump_payloads()
        .collect::<Result<_, _>>()
        .expect("entries");
    assert_eq!(entries.len(), 3);

    let target = start();
    let mut t = Conn::open(target.port);
    let query = "MATCH (n) OPTIONAL MATCH (n)-[r]->(m) RETURN n, r, m ORDER BY id(n)";
    for (key, _) in graphs {
        let e = entries
            .iter()
            .find(|e| e.key == key.as_bytes())
            .expect("the graph's key");
        assert_eq!(e.type_id, types::MODULE_2);
        let Value::Module { id, raw } = &e.value else {
            panic!("{key}: not a module value: {:?}", e.value);
        };
        let (name, _) = rdb::module_type_name(*id);
        assert_eq!(name, "graphdata", "{key}");
        assert!(raw.len() > 16);
        // FalkorDB serializes a graph a little differently from one save
        // to the next (its LZF-compressed strings differ by a few bytes
        // between SAVE and DUMP), so the proof is the restored graph.
        let payload = e.dump.as_ref().expect("payload");
        t.cmd(&[b"RESTORE", key.as_bytes(), b"0", payload]);
        // The header and the rows; the last element is timing statistics.
        let rows = |conn: &mut Conn| match conn.s(&["GRAPH.QUERY", key, query]) {
            Reply::Array(mut parts) => {
                parts.truncate(2);
                parts
            }
            other => panic!("GRAPH.QUERY {key}: {other:?}"),
        };
        assert_eq!(rows(&mut t), rows(&mut c), "{key} after RESTORE");
    }
}
