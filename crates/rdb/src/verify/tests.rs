use super::*;
use crate::MAX_VERSION;

const CTIME: i32 = 1_700_000_000;
const USED_MEM: i32 = 1_234_567;

fn string(out: &mut Vec<u8>, s: &[u8]) {
    assert!(s.len() < 64, "test strings use the 6-bit length form");
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

fn aux(out: &mut Vec<u8>, key: &[u8], encoded_value: &[u8]) {
    out.push(0xfa);
    string(out, key);
    out.extend_from_slice(encoded_value);
}

/// A small dump as Redis 7 writes it: aux fields (plain, INT8, INT32 and
/// LZF values), one database with one string key, EOF, and, from version 5
/// on, the CRC-64 trailer (or zeros when `checksum` is false).
fn dump(version: u32, checksum: bool) -> Vec<u8> {
    let mut d = format!("REDIS{version:04}").into_bytes();
    aux(&mut d, b"redis-ver", b"\x067.0.15");
    aux(&mut d, b"redis-bits", &[0xc0, 0x40]);
    let mut ctime = vec![0xc2];
    ctime.extend_from_slice(&CTIME.to_le_bytes());
    aux(&mut d, b"ctime", &ctime);
    let mut used = vec![0xc2];
    used.extend_from_slice(&USED_MEM.to_le_bytes());
    aux(&mut d, b"used-mem", &used);
    aux(&mut d, b"aof-base", &[0xc0, 0x00]);
    // "a" then a 9-byte back-reference: ten 'a's.
    aux(
        &mut d,
        b"lzf",
        &[0xc3, 0x05, 0x0a, 0x00, b'a', 0xe0, 0x00, 0x00],
    );
    d.extend_from_slice(&[0xfe, 0x00]); // SELECTDB 0
    d.extend_from_slice(&[0xfb, 0x01, 0x00]); // RESIZEDB 1 0
    d.push(0x00); // string type
    string(&mut d, b"foo");
    string(&mut d, b"bar");
    d.push(0xff);
    if version >= 5 {
        let crc = if checksum { crc64(0, &d) } else { 0 };
        d.extend_from_slice(&crc.to_le_bytes());
    }
    d
}

/// Offset of SELECTDB in [`dump`]: where the head ends.
fn head_end(d: &[u8]) -> usize {
    d.iter().position(|&b| b == 0xfe).unwrap()
}

fn verify_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Summary, RdbError> {
    let mut v = Verifier::new();
    for c in chunks {
        v.update(c)?;
    }
    v.finish()
}

fn verify(d: &[u8]) -> Result<Summary, RdbError> {
    verify_chunks([d])
}

fn expected_aux() -> Vec<(String, String)> {
    [
        ("redis-ver", "7.0.15".to_owned()),
        ("redis-bits", "64".to_owned()),
        ("ctime", CTIME.to_string()),
        ("used-mem", USED_MEM.to_string()),
        ("aof-base", "0".to_owned()),
        ("lzf", "a".repeat(10)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[test]
fn valid_dump_verifies() {
    let d = dump(10, true);
    let s = verify(&d).unwrap();
    let crc = crc64(0, &d[..d.len() - 8]);
    assert_eq!(
        s,
        Summary {
            version: 10,
            aux: expected_aux(),
            bytes: d.len() as u64,
            checksum: Checksum::Verified(crc),
        }
    );
}

#[test]
fn header_accessors() {
    let d = dump(10, true);
    let mut v = Verifier::new();
    v.update(&d).unwrap();
    let h = v.header().unwrap();
    assert_eq!(h.version, 10);
    assert_eq!(h.redis_ver(), Some("7.0.15"));
    assert_eq!(h.redis_bits(), Some(64));
    assert_eq!(h.ctime(), Some(CTIME as u64));
    assert_eq!(h.used_mem(), Some(USED_MEM as u64));
    assert_eq!(h.aux_value("aof-base"), Some("0"));
    assert_eq!(h.aux_value("missing"), None);
    assert_eq!(v.bytes(), d.len() as u64);
}

#[test]
fn every_split_into_two_chunks() {
    let d = dump(10, true);
    let whole = verify(&d).unwrap();
    for at in 0..=d.len() {
        let (a, b) = d.split_at(at);
        assert_eq!(verify_chunks([a, b]).unwrap(), whole, "split at {at}");
    }
}

#[test]
fn every_split_into_three_chunks() {
    let d = dump(9, true);
    let whole = verify(&d).unwrap();
    for i in 0..=d.len() {
        for j in i..=d.len() {
            let got = verify_chunks([&d[..i], &d[i..j], &d[j..]]).unwrap();
            assert_eq!(got, whole, "splits at {i}, {j}");
        }
    }
}

#[test]
fn byte_by_byte_and_header_appears_when_aux_ends() {
    let d = dump(10, true);
    let end = head_end(&d);
    let mut v = Verifier::new();
    for (i, b) in d.iter().enumerate() {
        v.update(std::slice::from_ref(b)).unwrap();
        assert_eq!(v.bytes(), i as u64 + 1);
        // The head is known once the first non-aux opcode has arrived.
        assert_eq!(v.header().is_some(), i >= end, "after byte {i}");
    }
    assert_eq!(v.finish().unwrap(), verify(&d).unwrap());
}

#[test]
fn empty_chunks_are_harmless() {
    let d = dump(10, true);
    let mut v = Verifier::new();
    for b in &d {
        v.update(&[]).unwrap();
        v.update(std::slice::from_ref(b)).unwrap();
    }
    v.update(&[]).unwrap();
    assert!(matches!(
        v.finish().unwrap().checksum,
        Checksum::Verified(_)
    ));
}

#[test]
fn any_corrupted_byte_is_caught() {
    let d = dump(10, true);
    let end = head_end(&d);
    let eof = d.len() - 9;
    for i in 0..d.len() {
        let mut bad = d.clone();
        bad[i] ^= 0xff;
        let r = verify(&bad);
        assert!(r.is_err(), "flipped byte {i} went unnoticed: {r:?}");
        if (end..eof).contains(&i) || i > eof {
            assert!(
                matches!(r, Err(RdbError::BadChecksum { .. })),
                "byte {i}: {r:?}"
            );
        }
    }
    // One flipped bit in the body.
    let mut bad = d.clone();
    bad[end + 5] ^= 0x01;
    let expected = u64::from_le_bytes(d[d.len() - 8..].try_into().unwrap());
    let actual = crc64(0, &bad[..bad.len() - 8]);
    assert_eq!(
        verify(&bad).unwrap_err(),
        RdbError::BadChecksum { expected, actual }
    );
}

#[test]
fn truncation_at_every_offset_is_caught() {
    for version in [3, 10] {
        let d = dump(version, true);
        for len in 0..d.len() {
            let r = verify(&d[..len]);
            assert!(r.is_err(), "v{version} cut to {len} bytes passed: {r:?}");
            let r = verify_chunks(d[..len].chunks(3));
            assert!(r.is_err(), "v{version} cut to {len} bytes passed: {r:?}");
        }
    }
}

#[test]
fn too_short_streams_are_truncated() {
    assert_eq!(verify(b"").unwrap_err(), RdbError::Truncated { bytes: 0 });
    assert_eq!(
        verify(b"REDIS0010").unwrap_err(),
        RdbError::Truncated { bytes: 9 }
    );
    // Head complete (SELECTDB seen) but nothing after it.
    let d = dump(10, true);
    let end = head_end(&d);
    assert_eq!(
        verify(&d[..=end]).unwrap_err(),
        RdbError::Truncated {
            bytes: end as u64 + 1
        }
    );
    // Just EOF and a zero trailer, one byte short.
    let mut d = b"REDIS0010\xff".to_vec();
    d.extend_from_slice(&[0; 7]);
    assert_eq!(verify(&d).unwrap_err(), RdbError::Truncated { bytes: 17 });
}

#[test]
fn smallest_valid_dumps() {
    let mut d = b"REDIS0010\xff".to_vec();
    d.extend_from_slice(&crc64(0, &d).to_le_bytes());
    let s = verify(&d).unwrap();
    assert_eq!(s.bytes, 18);
    assert!(s.aux.is_empty());
    assert!(matches!(s.checksum, Checksum::Verified(_)));
    let s = verify(b"REDIS0004\xff").unwrap();
    assert_eq!(s.checksum, Checksum::Absent);
}

#[test]
fn zero_trailer_means_checksum_disabled() {
    let d = dump(10, false);
    assert_eq!(verify(&d).unwrap().checksum, Checksum::Disabled);
}

#[test]
fn versions_before_5_have_no_trailer() {
    for version in 1..5 {
        let d = dump(version, true);
        let s = verify(&d).unwrap();
        assert_eq!(s.checksum, Checksum::Absent);
        assert_eq!(s.version, version);
        let mut bad = d.clone();
        *bad.last_mut().unwrap() = 0x00;
        assert_eq!(
            verify(&bad).unwrap_err(),
            RdbError::MissingEof {
                offset: d.len() as u64 - 1,
                found: 0
            }
        );
    }
    // Version 5 is the first with a trailer.
    assert!(matches!(
        verify(&dump(5, true)).unwrap().checksum,
        Checksum::Verified(_)
    ));
}

#[test]
fn missing_eof_before_trailer() {
    let mut d = dump(10, true);
    d.truncate(d.len() - 9); // drop EOF and trailer
    d.push(0x00);
    d.extend_from_slice(&crc64(0, &d).to_le_bytes());
    assert_eq!(
        verify(&d).unwrap_err(),
        RdbError::MissingEof {
            offset: d.len() as u64 - 9,
            found: 0
        }
    );
}

#[test]
fn wrong_magic_fails_on_the_first_wrong_byte() {
    let mut v = Verifier::new();
    let e = v.update(b"H").unwrap_err();
    assert_eq!(e, RdbError::BadMagic { found: "H".into() });
    // The error sticks.
    assert_eq!(v.update(b"REDIS0010").unwrap_err(), e);
    assert_eq!(v.finish().unwrap_err(), e);

    let e = verify(b"HTTP/1.1 502 Bad Gateway\r\n").unwrap_err();
    assert_eq!(
        e,
        RdbError::BadMagic {
            found: "HTTP/1.1 ".into()
        }
    );
    assert!(matches!(
        verify(b"REDIS00x9\xff").unwrap_err(),
        RdbError::BadMagic { .. }
    ));
    assert!(matches!(
        verify(b"\x00\x01REDIS").unwrap_err(),
        RdbError::BadMagic { .. }
    ));
}

#[test]
fn unsupported_version_fails_at_the_ninth_byte() {
    for (magic, version) in [(b"REDIS0013", 13), (b"REDIS0000", 0), (b"REDIS9999", 9999)] {
        let mut v = Verifier::new();
        for b in &magic[..8] {
            v.update(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(
            v.update(&magic[8..]).unwrap_err(),
            RdbError::UnsupportedVersion(version)
        );
    }
    // Also when the version arrives inside a longer chunk.
    let mut d = dump(10, true);
    d[7..9].copy_from_slice(b"13");
    let mut v = Verifier::new();
    assert_eq!(v.update(&d).unwrap_err(), RdbError::UnsupportedVersion(13));
    for version in 1..=MAX_VERSION {
        assert!(verify(&dump(version, true)).is_ok(), "version {version}");
    }
}

#[test]
fn oversized_aux_value_is_refused() {
    let mut d = b"REDIS0010".to_vec();
    aux(&mut d, b"k", &[20]);
    d.extend_from_slice(&[b'x'; 20]);
    d.push(0xff);
    let mut v = Verifier::with_aux_limit(16);
    assert!(matches!(
        v.update(&d).unwrap_err(),
        RdbError::Malformed { offset: 12, .. }
    ));
    assert!(Verifier::with_aux_limit(32).update(&d).is_ok());

    // An absurd announced length is refused at once, not awaited.
    let mut d = b"REDIS0010".to_vec();
    aux(&mut d, b"k", &[0x81, 0x40, 0, 0, 0, 0, 0, 0, 0]);
    let e = Verifier::new().update(&d).unwrap_err();
    assert!(matches!(e, RdbError::Malformed { offset: 12, .. }), "{e:?}");

    // Likewise an LZF value announcing a huge original length.
    let mut d = b"REDIS0010".to_vec();
    aux(&mut d, b"k", &[0xc3, 0x01, 0x80, 0x7f, 0xff, 0xff, 0xff]);
    assert!(matches!(
        Verifier::new().update(&d).unwrap_err(),
        RdbError::Malformed { .. }
    ));
}

#[test]
fn aux_section_is_bounded() {
    // Many small aux fields: the head may not grow past the limit.
    let mut field = Vec::new();
    aux(&mut field, b"key", b"\x0avalue12345");
    let mut v = Verifier::new();
    v.update(b"REDIS0010").unwrap();
    let mut fed = 0usize;
    let err = loop {
        match v.update(&field) {
            Ok(()) => fed += field.len(),
            Err(e) => break e,
        }
        assert!(fed <= DEFAULT_AUX_LIMIT, "limit not enforced");
    };
    assert!(
        err.to_string().contains("exceed the 1048576-byte limit"),
        "{err}"
    );
    assert!(fed + field.len() > DEFAULT_AUX_LIMIT);
}

#[test]
fn large_aux_section_within_limit_byte_by_byte_is_fast() {
    // A single 1 MiB - 100 aux value fed one byte at a time: the parser
    // must wait for the announced length, not re-parse on every byte.
    let len = DEFAULT_AUX_LIMIT - 100;
    let mut d = b"REDIS0010\xfa\x01k".to_vec();
    d.push(0x80);
    d.extend_from_slice(&(len as u32).to_be_bytes());
    d.extend(std::iter::repeat_n(b'v', len));
    d.push(0xff);
    d.extend_from_slice(&crc64(0, &d).to_le_bytes());
    let start = std::time::Instant::now();
    let s = verify_chunks(d.chunks(1)).unwrap();
    assert_eq!(s.aux[0].1.len(), len);
    assert!(start.elapsed().as_secs() < 20);
}

#[test]
fn malformed_aux_reports_offset() {
    let mut d = b"REDIS0010".to_vec();
    aux(&mut d, b"k", &[0xc3, 0x03, 0x05, 0x20, 0x05, 0x00]); // reference before start
    d.push(0xff);
    let e = verify(&d).unwrap_err();
    assert_eq!(
        e,
        RdbError::Malformed {
            offset: 15,
            reason: "LZF back-reference points before the start of the output".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "malformed RDB dump at byte offset 15: LZF back-reference points before the start of the output"
    );
}

#[test]
fn messages_name_what_was_found() {
    let cases = [
        (
            RdbError::BadChecksum {
                expected: 0xab,
                actual: 0xcd,
            },
            "trailer records CRC-64 0x00000000000000ab but the bytes received hash to 0x00000000000000cd",
        ),
        (
            RdbError::MissingEof {
                offset: 99,
                found: 0x42,
            },
            "byte 0x42 at offset 99 where 0xff was expected",
        ),
        (RdbError::Truncated { bytes: 7 }, "ended after 7 bytes"),
        (
            RdbError::UnsupportedVersion(13),
            "RDB version 13 is not supported",
        ),
        (
            RdbError::BadMagic {
                found: "GET / HTT".into(),
            },
            "it starts with \"GET / HTT\"",
        ),
    ];
    for (e, fragment) in cases {
        assert!(e.to_string().contains(fragment), "{e}");
    }
}

/// Mutated dumps in random chunkings: never a panic, and never a pass.
#[test]
fn mutations_never_panic() {
    let d = dump(10, true);
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for _ in 0..5_000 {
        let mut bad = d.clone();
        for _ in 0..=(next() % 4) {
            let i = (next() % bad.len() as u64) as usize;
            match next() % 3 {
                0 => bad[i] = next() as u8,
                1 => {
                    bad.remove(i);
                }
                _ => bad.insert(i, next() as u8),
            }
        }
        let mut v = Verifier::new();
        let mut rest = &bad[..];
        let mut result = Ok(());
        while !rest.is_empty() && result.is_ok() {
            let n = 1 + (next() % 20) as usize;
            let (a, b) = rest.split_at(n.min(rest.len()));
            result = v.update(a);
            rest = b;
        }
        let r = result.and_then(|()| v.finish());
        // A mutation that slips past the CRC-64 would be a 2^-64 event.
        if bad != d {
            assert!(r.is_err(), "mutated dump passed: {bad:02x?}");
        }
    }
}
