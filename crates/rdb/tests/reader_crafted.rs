//! The reader on hand-built dumps: every opcode and encoding Redis 7.0 does
//! not write any more, edge values, and broken input of every kind.

use rdb::{
    Checksum, Entry, HashField, KeyInfo, Magic, RdbError, Reader, Value, Verifier, crc64::crc64,
    types,
};

mod common;
use common::Pieces;

/// Builds a dump byte by byte.
struct Dump(Vec<u8>);

impl Dump {
    fn new(magic: &[u8]) -> Self {
        Self(magic.to_vec())
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn len(self, n: u64) -> Self {
        let b = if n < 64 {
            vec![n as u8]
        } else if n < 16384 {
            vec![0x40 | (n >> 8) as u8, n as u8]
        } else if n <= u64::from(u32::MAX) {
            let mut v = vec![0x80];
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v
        } else {
            let mut v = vec![0x81];
            v.extend_from_slice(&n.to_be_bytes());
            v
        };
        self.raw(&b)
    }
    fn str(self, s: &[u8]) -> Self {
        self.len(s.len() as u64).raw(s)
    }
    fn aux(self, k: &str, v: &str) -> Self {
        self.raw(&[0xfa]).str(k.as_bytes()).str(v.as_bytes())
    }
    /// EOF opcode and a correct CRC.
    fn end(mut self) -> Vec<u8> {
        self.0.push(0xff);
        let crc = crc64(0, &self.0);
        self.0.extend_from_slice(&crc.to_le_bytes());
        self.0
    }
}

fn base() -> Dump {
    Dump::new(b"REDIS0010")
        .aux("redis-ver", "7.0.15")
        .raw(&[0xfa])
        .str(b"redis-bits")
        .raw(&[0xc0, 64])
        .raw(&[0xfe, 0, 0xfb, 2, 0])
}

fn read_all(d: &[u8]) -> Result<(Vec<Entry>, Option<Checksum>), RdbError> {
    let decoded = decode_all(d);
    // Measuring instead of decoding accepts and refuses the same dumps and
    // counts what decoding finds.
    let measured = measure_all(d);
    match (&decoded, &measured) {
        (Ok((entries, crc)), Ok((keys, crc2))) => {
            assert_eq!(crc, crc2);
            let a: Vec<_> = entries
                .iter()
                .map(|e| (&e.key, e.type_id, e.value.elements()))
                .collect();
            let b: Vec<_> = keys
                .iter()
                .map(|k| (&k.key, k.type_id, k.elements))
                .collect();
            assert_eq!(a, b);
        }
        (Err(_), Err(_)) => {}
        _ => panic!("next_entry: {decoded:?}\nnext_key: {measured:?}"),
    }
    decoded
}

fn decode_all(d: &[u8]) -> Result<(Vec<Entry>, Option<Checksum>), RdbError> {
    let mut r = Reader::new(d)?;
    let mut out = Vec::new();
    while let Some(e) = r.next_entry()? {
        out.push(e);
    }
    Ok((out, r.checksum()))
}

fn measure_all(d: &[u8]) -> Result<(Vec<KeyInfo>, Option<Checksum>), RdbError> {
    let mut r = Reader::new(d)?;
    let mut out = Vec::new();
    while let Some(k) = r.next_key()? {
        out.push(k);
    }
    Ok((out, r.checksum()))
}

fn ziplist(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in entries {
        body.push(0);
        body.extend_from_slice(e);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&((body.len() + 11) as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xff);
    out
}

#[test]
fn strings_at_the_edges() {
    let d = base()
        .raw(&[0]) // type string
        .str(b"empty")
        .str(b"")
        .raw(&[0])
        .str(b"i8")
        .raw(&[0xc0, 0x80])
        .raw(&[0])
        .str(b"i8max")
        .raw(&[0xc0, 0x7f])
        .raw(&[0])
        .str(b"i16")
        .raw(&[0xc1, 0x00, 0x80])
        .raw(&[0])
        .str(b"i16max")
        .raw(&[0xc1, 0xff, 0x7f])
        .raw(&[0])
        .str(b"i32")
        .raw(&[0xc2, 0, 0, 0, 0x80])
        .raw(&[0])
        .str(b"i32max")
        .raw(&[0xc2, 0xff, 0xff, 0xff, 0x7f])
        .raw(&[0])
        .raw(&[0xc3, 0x05, 0x0a, 0x00, b'a', 0xe0, 0x00, 0x00]) // LZF key
        .str(b"\x00\xff")
        .end();
    let (es, crc) = read_all(&d).unwrap();
    let got: Vec<(Vec<u8>, Value)> = es.into_iter().map(|e| (e.key, e.value)).collect();
    let s = |v: &str| Value::String(v.as_bytes().to_vec());
    assert_eq!(
        got,
        vec![
            (b"empty".to_vec(), s("")),
            (b"i8".to_vec(), s("-128")),
            (b"i8max".to_vec(), s("127")),
            (b"i16".to_vec(), s("-32768")),
            (b"i16max".to_vec(), s("32767")),
            (b"i32".to_vec(), s("-2147483648")),
            (b"i32max".to_vec(), s("2147483647")),
            (vec![b'a'; 10], Value::String(vec![0, 0xff])),
        ]
    );
    assert!(matches!(crc, Some(Checksum::Verified(_))));
}

#[test]
fn opcodes_and_legacy_encodings() {
    let zl = ziplist(&[b"\x01a", b"\xc0\x39\x30", b"\x01b", b"\xf3"]);
    let zipmap = [
        2, 3, b'f', b'o', b'o', 3, 2, b'b', b'a', b'r', 0, 0, 1, b'k', 0, 0, 0xff,
    ];
    let d = Dump::new(b"REDIS0009")
        .aux("a", "b")
        .raw(&[0xf5])
        .str(b"#!lua name=lib\n")
        // MODULE_AUX: id, when opcode UINT, when, then a value stream.
        .raw(&[0xf7])
        .len(12345)
        .len(2)
        .len(2)
        .raw(&[1, 5, 5])
        .str(b"xyz")
        .raw(&[3, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .raw(&[0xfe, 5, 0xf4, 1, 2, 3])
        .raw(&[0xfd])
        .raw(&1000u32.to_le_bytes())
        .raw(&[0xf8])
        .len(77)
        .raw(&[types::LIST_ZIPLIST])
        .str(b"zl")
        .str(&zl)
        .raw(&[0xf9, 9])
        .raw(&[types::HASH_ZIPMAP])
        .str(b"zm")
        .str(&zipmap)
        .raw(&[types::ZSET_ZIPLIST])
        .str(b"zz")
        .str(&ziplist(&[b"\x01m", b"\x031.5", b"\x01n", b"\xfe\xfe"]))
        .raw(&[types::HASH_ZIPLIST])
        .str(b"hz")
        .str(&ziplist(&[b"\x01f", b"\x01v"]))
        .raw(&[types::LIST_QUICKLIST])
        .str(b"ql")
        .len(2)
        .str(&zl)
        .str(&ziplist(&[b"\x01z"]))
        .raw(&[types::ZSET])
        .str(b"z1")
        .len(4)
        .str(b"a")
        .raw(&[3])
        .raw(b"2.5")
        .str(b"b")
        .raw(&[254])
        .str(b"c")
        .raw(&[255])
        .str(b"d")
        .raw(&[253])
        .raw(&[types::MODULE_2])
        .str(b"mod")
        .len(999)
        .raw(&[2, 7, 5])
        .str(b"s")
        .raw(&[0])
        .end();
    let mut r = Reader::new(&d[..]).unwrap();
    assert_eq!(r.version(), 9);
    assert_eq!(r.aux(), &[("a".to_owned(), "b".to_owned())]);
    let mut es = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        es.push(e);
    }
    assert_eq!(r.functions(), &[b"#!lua name=lib\n".to_vec()]);
    assert_eq!(es.len(), 7);
    let zl_items: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"12345".to_vec(),
        b"b".to_vec(),
        b"2".to_vec(),
    ];
    assert_eq!(es[0].db, 5);
    assert_eq!(es[0].expire_ms, Some(1_000_000));
    assert_eq!(es[0].idle, Some(77));
    assert_eq!(es[0].value, Value::List(zl_items.clone()));
    assert_eq!(es[1].freq, Some(9));
    assert_eq!(es[1].expire_ms, None);
    assert_eq!(
        es[1].value,
        Value::Hash(vec![
            (b"foo".to_vec(), b"bar".to_vec()),
            (b"k".to_vec(), Vec::new())
        ])
    );
    assert_eq!(
        es[2].value,
        Value::SortedSet(vec![(b"m".to_vec(), 1.5), (b"n".to_vec(), -2.0)])
    );
    assert_eq!(
        es[3].value,
        Value::Hash(vec![(b"f".to_vec(), b"v".to_vec())])
    );
    let mut ql = zl_items;
    ql.push(b"z".to_vec());
    assert_eq!(es[4].value, Value::List(ql));
    let Value::SortedSet(z) = &es[5].value else {
        panic!("{:?}", es[5].value)
    };
    assert_eq!(z[0], (b"a".to_vec(), 2.5));
    assert_eq!(z[1].1, f64::INFINITY);
    assert_eq!(z[2].1, f64::NEG_INFINITY);
    assert!(z[3].1.is_nan());
    assert_eq!(
        es[6].value,
        Value::Module {
            id: 999,
            raw: vec![2, 7, 5, 1, b's', 0]
        }
    );
    assert_eq!(
        r.checksum(),
        Some(Checksum::Verified(crc64(0, &d[..d.len() - 8])))
    );
    assert_eq!(r.offset(), d.len() as u64);
    // After the end, nothing more.
    assert_eq!(r.next_entry().unwrap(), None);
}

#[test]
fn old_versions_have_no_trailer_and_valkey_magic_is_accepted() {
    let mut d = Dump::new(b"REDIS0004").raw(&[0]).str(b"k").str(b"v").0;
    d.push(0xff);
    let (es, crc) = read_all(&d).unwrap();
    assert_eq!(es.len(), 1);
    assert_eq!(crc, Some(Checksum::Absent));

    let d = Dump::new(b"VALKEY080").raw(&[0]).str(b"k").str(b"v").end();
    let r = Reader::new(&d[..]).unwrap();
    assert_eq!((r.magic(), r.version()), (Magic::Valkey, 80));
    assert_eq!(read_all(&d).unwrap().0.len(), 1);
}

/// A Valkey 9 dump, built after Valkey's rdb.c: `VALKEY080`, `valkey-ver`
/// instead of `redis-ver`, a cluster's slot-import opcode, and a hash with
/// field expiries in Valkey's own type 22 (which Redis uses for another).
fn valkey_9() -> Dump {
    let mut hash = Dump::new(b"").len(3);
    for (f, v, at) in [
        ("f1", "v1", 1_900_000_000_000i64),
        ("f2", "v2", -1),
        ("f3", "v3", 0),
    ] {
        hash = hash
            .str(f.as_bytes())
            .str(v.as_bytes())
            .raw(&at.to_le_bytes());
    }
    Dump::new(b"VALKEY080")
        .aux("valkey-ver", "9.0.0")
        .aux("redis-bits", "64")
        .raw(&[0xf3])
        .str(&[b'a'; 40])
        .len(2)
        .len(0)
        .len(99)
        .len(200)
        .len(300)
        .raw(&[0xfe, 0, 0xfb, 2, 0])
        .raw(&[types::VALKEY_HASH_2])
        .str(b"h")
        .raw(&hash.0)
        .raw(&[0])
        .str(b"k")
        .str(b"v")
}

#[test]
fn valkey_9_magic_opcodes_and_field_expiry_hash() {
    let d = valkey_9().end();
    let mut r = Reader::new(&d[..]).unwrap().with_dump_payloads();
    assert_eq!((r.magic(), r.version()), (Magic::Valkey, 80));
    let h = r.next_entry().unwrap().unwrap();
    assert_eq!(h.key, b"h");
    let field = |f: &str, v: &str, at| HashField {
        field: f.into(),
        value: v.into(),
        expire_ms: at,
    };
    assert_eq!(
        h.value,
        Value::HashWithExpiry(vec![
            field("f1", "v1", Some(1_900_000_000_000)),
            field("f2", "v2", None),
            field("f3", "v3", Some(0)),
        ])
    );
    // A DUMP payload carries the version (80) and no magic.
    let dump = h.dump.unwrap();
    assert_eq!(dump[0], types::VALKEY_HASH_2);
    assert_eq!(&dump[dump.len() - 10..dump.len() - 8], &80u16.to_le_bytes());
    let k = r.next_entry().unwrap().unwrap();
    assert_eq!(k.value, Value::String(b"v".to_vec()));
    assert_eq!(r.next_entry().unwrap(), None);
    assert!(matches!(r.checksum(), Some(Checksum::Verified(_))));

    // The backup verifier takes it too, and finds the server version.
    let mut v = Verifier::new();
    v.update(&d).unwrap();
    let header = v.header().unwrap().clone();
    assert_eq!((header.magic, header.version), (Magic::Valkey, 80));
    assert_eq!(header.redis_ver(), Some("9.0.0"));
    assert!(matches!(
        v.finish().unwrap().checksum,
        Checksum::Verified(_)
    ));

    // Under the REDIS magic, 243 is no opcode and 22 is Redis's own type.
    let mut redis = d.clone();
    redis[..9].copy_from_slice(b"REDIS0012");
    assert!(read_all(&redis).is_err());

    // A field expiry below -1 is corrupt.
    let bad = Dump::new(b"VALKEY080")
        .raw(&[types::VALKEY_HASH_2])
        .str(b"h")
        .len(1)
        .str(b"f")
        .str(b"v")
        .raw(&(-2i64).to_le_bytes())
        .end();
    assert!(matches!(
        read_all(&bad),
        Err(RdbError::Malformed { offset: 17, .. })
    ));
    // 9.2's path hash is refused by name; Redis's 24 and 25 mean nothing here.
    for t in [
        types::VALKEY_PATH_HASH,
        types::HASH_METADATA,
        types::HASH_LISTPACK_EX,
    ] {
        let d = Dump::new(b"VALKEY081").raw(&[t]).str(b"k").len(0).end();
        let err = read_all(&d).unwrap_err().to_string();
        assert!(err.contains("type"), "{t}: {err}");
    }
    // VALKEY with a version Valkey never wrote.
    for v in [b"VALKEY011", b"VALKEY079", b"VALKEY082"] {
        assert!(matches!(
            Reader::new(&v[..]).err(),
            Some(RdbError::UnsupportedVersion(_))
        ));
    }
}

/// A listpack of strings; the back-lengths have the right size (all the
/// reader checks of them) but are not filled in.
fn listpack(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in entries {
        let head: Vec<u8> = match e.len() {
            n @ 0..64 => vec![0x80 | n as u8],
            n @ 64..4096 => vec![0xe0 | (n >> 8) as u8, n as u8],
            n => [&[0xf0][..], &(n as u32).to_le_bytes()].concat(),
        };
        let len = head.len() + e.len();
        body.extend_from_slice(&head);
        body.extend_from_slice(e);
        let backlen = match len {
            0..128 => 1,
            128..16_383 => 2,
            16_383..2_097_151 => 3,
            _ => 4,
        };
        body.extend(std::iter::repeat_n(0, backlen));
    }
    let mut out = Vec::new();
    out.extend_from_slice(&((body.len() + 7) as u32).to_le_bytes());
    out.extend_from_slice(&(entries.len().min(65_535) as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xff);
    out
}

/// A stream node whose entries all share a 100 kB master field: each
/// decoded entry would copy it, so a few hundred kB of input would become
/// gigabytes. The reader refuses such a node instead of allocating.
#[test]
fn stream_node_that_would_expand_without_bound_is_refused() {
    let n = 10_000;
    let field = vec![b'f'; 100_000];
    let ids: Vec<Vec<u8>> = (0..n).map(|i| i.to_string().into_bytes()).collect();
    let mut items: Vec<&[u8]> = vec![b"10000", b"0", b"1", &field, b"0"];
    for id in &ids {
        items.extend([&b"2"[..], id, b"0", b"v", b"4"]);
    }
    let lp = listpack(&items);
    let d = base()
        .raw(&[types::STREAM_LISTPACKS])
        .str(b"st")
        .len(1)
        .str(&[0; 16])
        .str(&lp)
        .len(n)
        .len(0)
        .len(1)
        .len(0)
        .end();
    let err = read_all(&d).unwrap_err().to_string();
    assert!(err.contains("expands"), "{err}");
    // The same node with short field names is an ordinary stream.
    let mut items: Vec<&[u8]> = vec![b"10000", b"0", b"1", b"f", b"0"];
    for id in &ids {
        items.extend([&b"2"[..], id, b"0", b"v", b"4"]);
    }
    let d = base()
        .raw(&[types::STREAM_LISTPACKS])
        .str(b"st")
        .len(1)
        .str(&[0; 16])
        .str(&listpack(&items))
        .len(n)
        .len(0)
        .len(1)
        .len(0)
        .end();
    let (es, _) = read_all(&d).unwrap();
    let Value::Stream(s) = &es[0].value else {
        panic!("not a stream");
    };
    assert_eq!(s.entries.len(), n as usize);
}

/// The field-expiry hashes of Redis 7.4's release candidates, which no
/// released server writes: absolute times, no leading earliest expiry.
#[test]
fn redis_7_4_release_candidate_field_expiry_hashes() {
    let d = Dump::new(b"REDIS0012")
        .raw(&[types::HASH_METADATA_PRE_GA])
        .str(b"h")
        .len(2)
        .len(1_800_000_000_000)
        .str(b"f1")
        .str(b"v1")
        .len(0)
        .str(b"f2")
        .str(b"v2")
        .raw(&[types::HASH_LISTPACK_EX_PRE_GA])
        .str(b"lp")
        .str(&listpack(&[b"a", b"1", b"1800000000001", b"b", b"2", b"0"]))
        .end();
    let (es, _) = read_all(&d).unwrap();
    let f = |f: &str, v: &str, at| HashField {
        field: f.into(),
        value: v.into(),
        expire_ms: at,
    };
    assert_eq!(
        es[0].value,
        Value::HashWithExpiry(vec![
            f("f1", "v1", Some(1_800_000_000_000)),
            f("f2", "v2", None)
        ])
    );
    assert_eq!(
        es[1].value,
        Value::HashWithExpiry(vec![
            f("a", "1", Some(1_800_000_000_001)),
            f("b", "2", None)
        ])
    );
    // Past 2^48 - 1 ms, as Redis refuses; and a listpack of pairs, not triples.
    let past = Dump::new(b"REDIS0012")
        .raw(&[types::HASH_METADATA_PRE_GA])
        .str(b"h")
        .len(1)
        .len(1 << 48)
        .str(b"f")
        .str(b"v")
        .end();
    assert!(read_all(&past).unwrap_err().to_string().contains("largest"));
    let pairs = Dump::new(b"REDIS0012")
        .raw(&[types::HASH_LISTPACK_EX])
        .str(b"h")
        .raw(&0u64.to_le_bytes())
        .str(&listpack(&[b"a", b"1"]))
        .end();
    assert!(
        read_all(&pairs)
            .unwrap_err()
            .to_string()
            .contains("triples")
    );
}

#[test]
fn bad_headers() {
    assert!(matches!(
        Reader::new(&b"REDIX0010\xff"[..]).err(),
        Some(RdbError::BadMagic { .. })
    ));
    assert!(matches!(
        Reader::new(&b"REDIS0013\xff"[..]).err(),
        Some(RdbError::UnsupportedVersion(13))
    ));
    assert!(matches!(
        Reader::new(&b"REDIS00"[..]).err(),
        Some(RdbError::Truncated { bytes: 7 })
    ));
}

#[test]
fn checksum_mismatch_and_disabled() {
    let mut d = base().raw(&[0]).str(b"k").str(b"v").end();
    let n = d.len();
    d[n - 1] ^= 1;
    assert!(matches!(
        read_all(&d).unwrap_err(),
        RdbError::BadChecksum { .. }
    ));
    // A flipped byte in the body (not touching structure) also fails.
    let mut d2 = base().raw(&[0]).str(b"k").str(b"v").end();
    let n = d2.len();
    d2[n - 10] = b'w';
    assert!(matches!(
        read_all(&d2).unwrap_err(),
        RdbError::BadChecksum { .. }
    ));
    d[n - 8..].fill(0);
    assert_eq!(read_all(&d).unwrap().1, Some(Checksum::Disabled));
}

#[test]
fn huge_length_with_short_data_errors_without_allocating() {
    // A 512 MiB string announced, 3 bytes present.
    let d = base()
        .raw(&[0])
        .str(b"k")
        .raw(&[0x80, 0x20, 0, 0, 0])
        .raw(b"abc")
        .0;
    let mut r = Reader::new(&d[..]).unwrap();
    assert!(matches!(
        r.next_entry().unwrap_err(),
        RdbError::Truncated { .. }
    ));
    // The error sticks.
    assert!(r.next_entry().is_err());

    // With a limit it is refused as malformed before any reading.
    let mut r = Reader::new(&d[..]).unwrap().with_max_value_bytes(1 << 20);
    assert!(matches!(
        r.next_entry().unwrap_err(),
        RdbError::Malformed { .. }
    ));

    // Huge element counts with no elements behind them.
    for t in [
        types::LIST,
        types::SET,
        types::HASH,
        types::ZSET_2,
        types::LIST_QUICKLIST_2,
    ] {
        let d = base().raw(&[t]).str(b"k").len(u64::MAX).raw(b"\x01a").end();
        assert!(read_all(&d).is_err(), "type {t}");
    }
}

#[test]
fn truncation_at_every_offset_fails() {
    let zl = ziplist(&[b"\x01a", b"\xc0\x39\x30"]);
    let d = base()
        .raw(&[0xfc])
        .raw(&1_700_000_000_000i64.to_le_bytes())
        .raw(&[0])
        .str(b"k")
        .str(b"v")
        .raw(&[types::LIST_ZIPLIST])
        .str(b"l")
        .str(&zl)
        .raw(&[types::SET])
        .str(b"s")
        .len(2)
        .str(b"a")
        .raw(&[0xc0, 1])
        .end();
    let (es, _) = read_all(&d).unwrap();
    assert_eq!(es.len(), 3);
    assert_eq!(es[0].expire_ms, Some(1_700_000_000_000));
    for cut in 0..d.len() {
        assert!(read_all(&d[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn malformed_offsets_are_stream_offsets() {
    let prefix = base().raw(&[0]).str(b"k").str(b"v").0.len();
    let d = base()
        .raw(&[0])
        .str(b"k")
        .str(b"v")
        .raw(&[42]) // unknown value type
        .str(b"k2")
        .end();
    match read_all(&d).unwrap_err() {
        RdbError::Malformed { offset, reason } => {
            assert_eq!(offset, prefix as u64, "{reason}");
            assert!(reason.contains("unknown value type 42"), "{reason}");
        }
        e => panic!("{e:?}"),
    }
    // A bad listpack inside a valid string.
    let d = base()
        .raw(&[types::HASH_LISTPACK])
        .str(b"h")
        .str(&[7, 0, 0, 0, 1, 0, 0x42])
        .end();
    assert!(matches!(
        read_all(&d).unwrap_err(),
        RdbError::Malformed { .. }
    ));
}

#[test]
fn byte_by_byte_reading_gives_the_same_entries() {
    let big = vec![b'q'; 300_000];
    let d = base()
        .raw(&[0])
        .str(b"k")
        .str(&big)
        .raw(&[types::LIST])
        .str(b"l")
        .len(1000)
        .0;
    let mut d = Dump(d);
    for i in 0..1000u32 {
        d = d.str(i.to_string().as_bytes());
    }
    let d = d.end();
    let (want, crc) = read_all(&d).unwrap();
    for n in [1, 3, 4096] {
        let mut r = Reader::new(Pieces(&d, n)).unwrap();
        let got: Vec<Entry> = r.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(got, want, "chunk {n}");
        assert_eq!(r.checksum(), crc);
    }
}

#[test]
fn mutations_never_panic() {
    let zl = ziplist(&[b"\x01a", b"\xc0\x39\x30"]);
    let d = base()
        .raw(&[types::LIST_ZIPLIST])
        .str(b"l")
        .str(&zl)
        .raw(&[types::HASH_LISTPACK])
        .str(b"h")
        .str(&[12, 0, 0, 0, 2, 0, 0x81, b'f', 2, 0x01, 1, 0xff])
        .raw(&[types::STREAM_LISTPACKS_2])
        .str(b"s")
        .len(0)
        .raw(&[0, 0, 0, 0, 0, 0, 0, 0, 0])
        .end();
    assert_eq!(read_all(&d).unwrap().0.len(), 3);
    let mut s: u64 = 1;
    for _ in 0..20_000 {
        let mut m = d.clone();
        for _ in 0..3 {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let i = (s >> 33) as usize % m.len();
            m[i] = (s >> 20) as u8;
        }
        let _ = read_all(&m);
    }
}

/// Found by the `reader` fuzz target: an aux string of absurd length failed
/// one way read whole and another read seven bytes at a time.
#[test]
fn absurd_lengths_fail_the_same_however_the_reads_are_split() {
    let d = b"REDIS0011\xfa\x81\xff\xff\xff\xff\xff\xff\xff\xf0abcdefgh";
    let whole = Reader::new(&d[..]).err();
    let pieces = Reader::new(Pieces(&d[..], 7)).err();
    assert!(
        matches!(whole, Some(RdbError::Malformed { offset: 19, .. })),
        "{whole:?}"
    );
    assert_eq!(whole, pieces);
}
