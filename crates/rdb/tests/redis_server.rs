//! Verifies dumps written by a real `redis-server`, the only way to know the
//! verifier agrees with Redis itself rather than with our reading of rdb.c.
//!
//! Each test starts its own throwaway server on a free loopback port in a
//! fresh directory, so it neither touches nor depends on any Redis already
//! running on the machine.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdb::{Checksum, RdbError, Summary, Verifier, crc64::crc64};

/// A running `redis-server`; dropping it kills the server and removes its
/// directory.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(std::process::id()) * 7919 + u64::from(nanos)
}

/// A port in 20000..45000 that nothing listens on right now.
fn free_port() -> u16 {
    let start = seed();
    (0..2000)
        .map(|i| 20_000 + ((start + i * 37) % 25_000) as u16)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("no free port in 20000..45000")
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli not found: install the redis-tools package");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn start(extra: &[&str]) -> Server {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("rdb-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--enable-debug-command", "yes", "--dbfilename", "dump.rdb"])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server not found: install the redis-server package");
    let server = Server { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(15);
    while cli(port, &["PING"]) != "PONG" {
        assert!(
            Instant::now() < deadline,
            "redis-server did not answer on port {port}; see {}",
            server.dir.join("redis.log").display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

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
