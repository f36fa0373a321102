//! Verifies dumps written by a real `redis-server`, the only way to know the
//! verifier agrees with Redis itself rather than with our reading of rdb.c.
//!
//! Each test starts its own throwaway server on a free loopback port in a
//! fresh directory, so it neither touches nor depends on any Redis already
//! running on the machine.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use rdb::{Checksum, RdbError, Summary, Verifier, crc64::crc64};

mod common;
use common::{Server, cli, start};

/// Fills the server with every common value type, including values long
/// and repetitive enough to be LZF-compressed, and saves a dump.
fn populate_and_save(server: &Server) -> Vec<u8> {
    let p = server.port;
    assert_eq!(cli(p, &["DEBUG", "POPULATE", "1000"]), "OK");
    assert_eq!(cli(p, &["DEBUG", "POPULATE", "100", "big", "2000"]), "OK");
    cli(p, &["HSET", "hash", "f1", "v1", "f2", "2"]);
    cli(p, &["RPUSH", "list", "a", "b", "c"]);
    cli(p, &["SADD", "set", "x", "y", "100"]);
    cli(p, &["ZADD", "zset", "1.5", "m1", "2", "m2"]);
    cli(p, &["XADD", "stream", "*", "field", "value"]);
    cli(p, &["SET", "expiring", "v", "EX", "3600"]);
    assert_eq!(cli(p, &["-n", "3", "SET", "in-db-3", "v"]), "OK");
    assert_eq!(cli(p, &["SAVE"]), "OK");
    read(&server.dir.join("dump.rdb"))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn verify_in(dump: &[u8], chunk: usize) -> Result<Summary, RdbError> {
    let mut v = Verifier::new();
    for c in dump.chunks(chunk) {
        v.update(c)?;
    }
    v.finish()
}

fn server_version() -> String {
    let out = Command::new("redis-server")
        .arg("--version")
        .output()
        .expect("redis-server not found: install the redis-server package");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or_else(|| panic!("unexpected `redis-server --version`: {text}"))
        .to_owned()
}

#[test]
fn dump_from_redis_server_verifies() {
    let server = start(&[]);
    let dump = populate_and_save(&server);
    drop(server);

    let s = verify_in(&dump, 64 * 1024).unwrap();
    let crc = crc64(0, &dump[..dump.len() - 8]);
    assert_eq!(s.checksum, Checksum::Verified(crc));
    assert_eq!(s.bytes, dump.len() as u64);
    assert!((1..=rdb::MAX_VERSION).contains(&s.version));

    // Odd chunk sizes, as a socket would deliver them.
    for chunk in [1, 7, 4093] {
        assert_eq!(verify_in(&dump, chunk).unwrap(), s, "chunk size {chunk}");
    }

    let mut v = Verifier::new();
    v.update(&dump).unwrap();
    let h = v.header().unwrap();
    assert_eq!(h.redis_ver(), Some(server_version().as_str()));
    assert_eq!(h.redis_bits(), Some(64));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ctime = h.ctime().unwrap();
    assert!(
        ctime <= now && now - ctime < 600,
        "ctime {ctime}, now {now}"
    );
    assert!(h.used_mem().unwrap() > 0);

    // One flipped bit anywhere after the head is a checksum failure.
    let mut bad = dump.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    assert!(matches!(
        verify_in(&bad, 4096).unwrap_err(),
        RdbError::BadChecksum { .. }
    ));
    // A dump cut short is refused.
    assert!(verify_in(&dump[..dump.len() - 1000], 4096).is_err());
}

#[test]
fn dump_with_rdbchecksum_no_is_reported_as_disabled() {
    let server = start(&["--rdbchecksum", "no"]);
    let dump = populate_and_save(&server);
    drop(server);

    assert_eq!(dump[dump.len() - 8..], [0; 8]);
    let s = verify_in(&dump, 1000).unwrap();
    assert_eq!(s.checksum, Checksum::Disabled);
    assert_eq!(s.bytes, dump.len() as u64);
}
