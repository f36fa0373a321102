//! A throwaway `redis-server` per test, on a free loopback port in a fresh
//! directory, so tests neither touch nor depend on any Redis already running.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

pub fn start(extra: &[&str]) -> Server {
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
