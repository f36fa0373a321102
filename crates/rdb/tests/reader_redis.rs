//! The reader against a dump written by a real `redis-server`: every value
//! type in its small and large encodings, compared value by value with what
//! was written.

#![allow(clippy::type_complexity)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::time::{SystemTime, UNIX_EPOCH};

use rdb::{Checksum, Entry, RdbError, Reader, Value, types};

mod common;
use common::{Conn, Reply, Server};

/// A server able to `DEBUG DIGEST-VALUE`, writing `dump.rdb`.
fn start() -> Server {
    common::start(&[])
}

/// A value normalized for comparison: sets and hashes sorted.
#[derive(Debug, PartialEq)]
enum Norm {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    ZSet(BTreeMap<Vec<u8>, u64>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    Stream {
        length: u64,
        groups: Vec<(Vec<u8>, u64, Vec<(Vec<u8>, u64)>)>,
    },
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
        Value::HashWithExpiry(_) => panic!("Redis 7.0 has no field expiry"),
        Value::Stream(s) => {
            assert_eq!(s.entries.len() as u64, s.length);
            Norm::Stream {
                length: s.length,
                groups: s
                    .groups
                    .iter()
                    .map(|g| {
                        (
                            g.name.clone(),
                            g.pending.len() as u64,
                            g.consumers
                                .iter()
                                .map(|c| (c.name.clone(), c.pending.len() as u64))
                                .collect(),
                        )
                    })
                    .collect(),
            }
        }
        Value::Module { .. } => panic!("no modules loaded"),
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[test]
fn every_type_round_trips_through_a_redis_dump() {
    let server = start();
    let mut c = Conn::open(server.port);
    // Elements over 100 bytes become PLAIN quicklist nodes.
    c.s(&["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "100"]);

    let mut want: BTreeMap<(u64, Vec<u8>), Norm> = BTreeMap::new();
    let mut expiry: BTreeMap<Vec<u8>, i64> = BTreeMap::new();

    // Strings: empty, integer-encoded, binary, big and compressible.
    let bin: Vec<u8> = (0..=255u8).collect();
    let big = "abcdefgh".repeat(20_000);
    let strings: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b("s:empty"), b("")),
        (b("s:i8"), b("-128")),
        (b("s:i16"), b("32767")),
        (b("s:i32"), b("-2147483648")),
        (b("s:i64"), b("9223372036854775807")),
        (b("s:text"), b("hello world")),
        (vec![0, 1, 0xff, b'k'], bin.clone()),
        (b("s:big"), b(&big)),
    ];
    for (k, v) in &strings {
        c.cmd(&[b"SET", k, v]);
        want.insert((0, k.clone()), Norm::Str(v.clone()));
    }

    // Lists: one listpack node; many nodes; plain nodes.
    let small: Vec<Vec<u8>> = vec![b("a"), b("1"), b("-7"), bin.clone(), b("")];
    let large: Vec<Vec<u8>> = (0..5000)
        .map(|i| {
            if i % 3 == 0 {
                b(&i.to_string())
            } else {
                b(&format!("e{i}"))
            }
        })
        .collect();
    let plain: Vec<Vec<u8>> = vec![b("x"), vec![b'p'; 500], b("y"), vec![7; 1000]];
    for (k, items) in [
        ("l:small", &small),
        ("l:large", &large),
        ("l:plain", &plain),
    ] {
        for chunk in items.chunks(500) {
            let mut a: Vec<&[u8]> = vec![b"RPUSH", k.as_bytes()];
            a.extend(chunk.iter().map(Vec::as_slice));
            c.cmd(&a);
        }
        want.insert((0, b(k)), Norm::List(items.clone()));
    }

    // Sets: intset (16/32/64-bit), hashtable of strings, big intset overflow.
    let sets: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("set:i16", vec![b("1"), b("-3"), b("300")]),
        ("set:i64", vec![b("1"), b("70000"), b("-5000000000")]),
        ("set:str", vec![b("a"), b("b"), bin.clone()]),
        ("set:big", (0..1000).map(|i| b(&i.to_string())).collect()),
        (
            "set:bigstr",
            (0..1000).map(|i| b(&format!("m{i}"))).collect(),
        ),
    ];
    for (k, items) in &sets {
        let mut a: Vec<&[u8]> = vec![b"SADD", k.as_bytes()];
        a.extend(items.iter().map(Vec::as_slice));
        c.cmd(&a);
        want.insert((0, b(k)), Norm::Set(items.iter().cloned().collect()));
    }

    // Sorted sets: listpack (int and float scores) and skiplist.
    let zsets: Vec<(&str, Vec<(Vec<u8>, f64)>)> = vec![
        (
            "z:small",
            vec![
                (b("m1"), 1.5),
                (b("m2"), -2.0),
                (b("m3"), 1e300),
                (b("m4"), f64::INFINITY),
                (b("m5"), 3.0),
            ],
        ),
        (
            "z:big",
            (0..500)
                .map(|i| (b(&format!("member{i}")), f64::from(i) * 0.25 - 10.0))
                .collect(),
        ),
    ];
    for (k, items) in &zsets {
        let scores: Vec<String> = items
            .iter()
            .map(|(_, s)| {
                if s.is_infinite() {
                    "+inf".to_owned()
                } else {
                    format!("{s:?}")
                }
            })
            .collect();
        let mut a: Vec<&[u8]> = vec![b"ZADD", k.as_bytes()];
        for ((m, _), s) in items.iter().zip(&scores) {
            a.push(s.as_bytes());
            a.push(m);
        }
        c.cmd(&a);
        want.insert(
            (0, b(k)),
            Norm::ZSet(
                items
                    .iter()
                    .map(|(m, s)| (m.clone(), s.to_bits()))
                    .collect(),
            ),
        );
    }

    // Hashes: listpack and hashtable (too many fields; too long a value).
    let hashes: Vec<(&str, Vec<(Vec<u8>, Vec<u8>)>)> = vec![
        (
            "h:small",
            vec![(b("f1"), b("v1")), (b("f2"), b("2")), (b("f3"), b(""))],
        ),
        (
            "h:many",
            (0..1000)
                .map(|i| (b(&format!("f{i}")), b(&(i * 7).to_string())))
                .collect(),
        ),
        ("h:long", vec![(b("f"), vec![b'v'; 200])]),
    ];
    for (k, items) in &hashes {
        let mut a: Vec<&[u8]> = vec![b"HSET", k.as_bytes()];
        for (f, v) in items {
            a.push(f);
            a.push(v);
        }
        c.cmd(&a);
        want.insert((0, b(k)), Norm::Hash(items.iter().cloned().collect()));
    }

    // A stream with a consumer group, a PEL and a consumer.
    for i in 1..=250 {
        c.s(&[
            "XADD",
            "st",
            &format!("{i}-1"),
            "field",
            &i.to_string(),
            "other",
            "x",
        ]);
    }
    assert_eq!(c.s(&["XDEL", "st", "5-1"]), Reply::Int(1));
    c.s(&["XGROUP", "CREATE", "st", "g1", "0"]);
    c.s(&["XGROUP", "CREATE", "st", "g2", "$"]);
    c.s(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "alice",
        "COUNT",
        "3",
        "STREAMS",
        "st",
        ">",
    ]);
    c.s(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "bob",
        "COUNT",
        "2",
        "STREAMS",
        "st",
        ">",
    ]);
    want.insert(
        (0, b("st")),
        Norm::Stream {
            length: 249,
            groups: vec![
                (b("g1"), 5, vec![(b("alice"), 3), (b("bob"), 2)]),
                (b("g2"), 0, vec![]),
            ],
        },
    );

    // TTLs.
    let at = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64)
        + 3_600_000;
    for k in ["s:text", "l:small", "h:many"] {
        c.s(&["PEXPIREAT", k, &at.to_string()]);
        expiry.insert(b(k), at);
    }

    // Other databases.
    for db in [3u64, 15] {
        c.s(&["SELECT", &db.to_string()]);
        c.s(&["SET", "k", &format!("db{db}")]);
        c.s(&["RPUSH", "l", "a", "b"]);
        want.insert((db, b("k")), Norm::Str(b(&format!("db{db}"))));
        want.insert((db, b("l")), Norm::List(vec![b("a"), b("b")]));
    }

    assert_eq!(c.s(&["SAVE"]), Reply::Simple("OK".into()));
    let dump = std::fs::read(server.dir.join("dump.rdb")).unwrap();
    drop(c);
    drop(server);

    let mut r = Reader::new(std::io::BufReader::new(&dump[..])).unwrap();
    assert_eq!(r.version(), 10);
    assert!(
        r.aux()
            .iter()
            .any(|(k, v)| k == "redis-ver" && v.starts_with("7."))
    );
    let entries: Vec<Entry> = r.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        r.checksum(),
        Some(Checksum::Verified(rdb::crc64::crc64(
            0,
            &dump[..dump.len() - 8]
        )))
    );

    let mut got = BTreeMap::new();
    let mut type_ids = BTreeSet::new();
    for e in &entries {
        type_ids.insert(e.type_id);
        assert_eq!(
            e.expire_ms,
            expiry.get(&e.key).copied(),
            "expiry of {:?}",
            e.key
        );
        got.insert((e.db, e.key.clone()), norm(&e.value));
    }
    assert_eq!(got.len(), want.len());
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "key {k:?}");
    }
    // Redis 7.0 writes these encodings for the data above.
    for t in [
        types::STRING,
        types::SET,
        types::ZSET_2,
        types::HASH,
        types::SET_INTSET,
        types::HASH_LISTPACK,
        types::ZSET_LISTPACK,
        types::LIST_QUICKLIST_2,
        types::STREAM_LISTPACKS_2,
    ] {
        assert!(type_ids.contains(&t), "type {t} not seen in {type_ids:?}");
    }

    // The same entries when the dump arrives in odd-sized pieces.
    struct Pieces<'a>(&'a [u8], usize);
    impl Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    for n in [7, 1000] {
        let again: Vec<Entry> = Reader::new(Pieces(&dump, n))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(again, entries, "pieces of {n}");
    }

    // Truncated anywhere: an error, never a panic. Every offset near the
    // ends, a stride through the middle.
    let n = dump.len();
    let cuts: Vec<usize> = (0..300.min(n))
        .chain((300..n).step_by(97))
        .chain(n.saturating_sub(300)..n)
        .collect();
    for cut in cuts {
        let res = Reader::new(&dump[..cut]).and_then(|r| r.collect::<Result<Vec<_>, _>>());
        assert!(res.is_err(), "cut at {cut}");
    }

    // A flipped byte: an error (checksum or structure), never a panic.
    let mut bad = dump.clone();
    bad[n / 2] ^= 0x20;
    let res = Reader::new(&bad[..]).and_then(|r| r.collect::<Result<Vec<_>, _>>());
    assert!(res.is_err());
    let mut bad = dump.clone();
    bad[n - 3] ^= 1;
    let res = Reader::new(&bad[..]).and_then(|r| r.collect::<Result<Vec<_>, _>>());
    assert!(matches!(res, Err(RdbError::BadChecksum { .. })));
}

/// Every entry's `dump` payload is byte for byte what `DUMP` of the same key
/// returns on the server that wrote the file, and `RESTORE` accepts it on a
/// fresh server, which then dumps the same bytes again.
#[test]
fn dump_payloads_round_trip_through_restore() {
    let source = start();
    let mut c = Conn::open(source.port);
    c.s(&["SET", "str", "hello"]);
    c.s(&["SET", "int", "-123456"]);
    c.s(&["SET", "long", &"abcabcabc".repeat(500)]);
    c.s(&["RPUSH", "list", "a", "b", "c"]);
    c.s(&["SADD", "ints", "1", "2", "3"]);
    c.s(&["SADD", "set", "x", "y"]);
    c.s(&["ZADD", "zset", "1.5", "a", "-3", "b"]);
    c.s(&["HSET", "hash", "f", "v", "g", "w"]);
    for i in 0..200 {
        let m = format!("member-{i}-{}", "z".repeat(80));
        c.s(&["RPUSH", "biglist", &m]);
        c.s(&["SADD", "bigset", &m]);
        c.s(&["ZADD", "bigzset", &i.to_string(), &m]);
        c.s(&["HSET", "bighash", &m, &i.to_string()]);
        c.s(&["XADD", "stream", "*", "n", &i.to_string()]);
    }
    c.s(&["XGROUP", "CREATE", "stream", "g", "0"]);
    c.s(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "alice",
        "COUNT",
        "3",
        "STREAMS",
        "stream",
        ">",
    ]);
    c.s(&["SAVE"]);

    let file = std::fs::File::open(source.dir.join("dump.rdb")).expect("dump.rdb");
    let mut reader = Reader::new(BufReader::new(file))
        .expect("header")
        .with_dump_payloads();
    let target = start();
    let mut t = Conn::open(target.port);
    let mut seen = 0;
    while let Some(entry) = reader.next_entry().expect("entry") {
        let payload = entry.dump.expect("a dump payload");
        let Reply::Bulk(Some(expected)) = c.cmd(&[b"DUMP", &entry.key]) else {
            panic!("DUMP {:?}", String::from_utf8_lossy(&entry.key));
        };
        assert_eq!(
            payload,
            expected,
            "DUMP of {:?}",
            String::from_utf8_lossy(&entry.key)
        );
        t.cmd(&[b"RESTORE", &entry.key, b"0", &payload]);
        // Hash tables iterate in insertion-dependent order, so a restored
        // set or hash may dump its members in another order: compare the
        // order-insensitive digest of the value instead of the bytes.
        let digest = |conn: &mut Conn| match conn.cmd(&[b"DEBUG", b"DIGEST-VALUE", &entry.key]) {
            Reply::Array(items) => format!("{items:?}"),
            other => format!("{other:?}"),
        };
        assert_eq!(
            digest(&mut t),
            digest(&mut c),
            "{:?} after RESTORE",
            String::from_utf8_lossy(&entry.key)
        );
        seen += 1;
    }
    assert_eq!(seen, 13);
}
