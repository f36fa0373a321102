//! Backup speed and memory, against a baseline measured in the same run.
//!
//! Fills a fresh redis-server with a mixed dataset (default 1 GiB of used
//! memory; `RDBVAULT_BENCH_MB` to change), then alternately times
//! `redis-cli --rdb` writing the snapshot to a local file (the baseline) and
//! an rdbvault backup of the same instance into the local store (API request
//! to `succeed`), and samples the server's peak RSS (VmHWM) over the backup.
//!
//! `cargo bench -p rdbvault --bench backup`

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

fn main() {
    let target_mb: u64 = std::env::var("RDBVAULT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let work = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut redis = spawn(Command::new("redis-server").stderr(Stdio::null()).args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
        &work.path().display().to_string(),
    ]));
    wait_port(port);
    let started = Instant::now();
    fill(port, target_mb * 1024 * 1024);
    let used = info_field(port, "used_memory");
    eprintln!(
        "dataset: {:.2} GiB used_memory, filled in {:.1} s",
        used as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64()
    );

    let http_port = free_port();
    let data = work.path().join("rdbvault-data");
    let mut server = spawn(
        Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .arg("serve")
            .env("RDBVAULT_LISTEN", format!("127.0.0.1:{http_port}"))
            .env("RDBVAULT_DATA_DIR", &data)
            .env("RDBVAULT_AUTH", "none")
            .env(
                "RDBVAULT_LOG",
                std::env::var("RDBVAULT_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(std::fs::File::create(work.path().join("server.log")).expect("log file")),
    );
    let log_copy = std::env::var("RDBVAULT_BENCH_LOG").ok();
    wait_port(http_port);
    let base = format!("http://127.0.0.1:{http_port}");
    let project = "bench";
    let instance = post(
        &base,
        &format!("/v2/{project}/rdbvault/instances"),
        &format!(r#"{{"name":"bench","mode":"single","addrs":["127.0.0.1:{port}"]}}"#),
    )["instance_id"]
        .as_str()
        .expect("instance id")
        .to_string();

    let mut baseline = Vec::new();
    let mut ours = Vec::new();
    let mut rdb_size = 0;
    let mut cpu = Vec::new();
    for round in 0..ROUNDS {
        let out = work.path().join("baseline.rdb");
        let t = Instant::now();
        let status = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--rdb", &out.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success(), "redis-cli --rdb failed");
        baseline.push(t.elapsed().as_secs_f64());
        rdb_size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&out);

        let cpu_before = cpu_secs(server.id());
        let backup = post(
            &base,
            &format!("/v2/{project}/instances/{instance}/backups"),
            "{}",
        )["backup_id"]
            .as_str()
            .expect("backup id")
            .to_string();
        // Polled slowly so the polling costs the server nothing measurable; the
        // duration comes from the record itself (request accepted → succeed).
        let record = loop {
            std::thread::sleep(Duration::from_millis(250));
            let list = get(
                &base,
                &format!("/v2/{project}/instances/{instance}/backups?limit=1"),
            );
            let r = list["backup_record_response"][0].clone();
            if r["backup_id"] == backup.as_str()
                && !matches!(r["status"].as_str(), Some("waiting" | "backuping"))
            {
                break r;
            }
        };
        ours.push(record_secs(&record));
        cpu.push(cpu_secs(server.id()) - cpu_before);
        assert_eq!(record["status"], "succeed", "{record}");
        eprintln!(
            "round {round}: redis-cli --rdb {:.2} s, rdbvault {:.2} s (server CPU {:.2} s)",
            baseline[round], ours[round], cpu[round]
        );
        delete(
            &base,
            &format!("/v2/{project}/instances/{instance}/backups/{backup}"),
        );
    }
    let peak_rss = vm_hwm(server.id());
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let (b, o) = (best(&baseline), best(&ours));
    println!(
        "backup of {:.2} GiB used memory (RDB {:.2} GiB): redis-cli --rdb {b:.2} s; rdbvault {o:.2} s; ratio {:.2}x (target <= 1.10x); \
         server peak RSS {:.1} MiB (target <= 64 MiB)",
        used as f64 / (1u64 << 30) as f64,
        rdb_size as f64 / (1u64 << 30) as f64,
        o / b,
        peak_rss as f64 / 1024.0,
    );
    for child in [&mut server, &mut redis] {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(dest) = log_copy {
        let _ = std::fs::copy(work.path().join("server.log"), dest);
    }
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null()).spawn().expect("spawn")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// From `created_at` (the request was accepted) to `updated_at` (it succeeded).
fn record_secs(record: &serde_json::Value) -> f64 {
    let at = |f: &str| {
        record[f]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .expect("record time")
    };
    (at("updated_at") - at("created_at")).as_seconds_f64()
}

/// User + system CPU time of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set of a process, in KiB.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A small xorshift generator: incompressible values without a dependency.
struct Rng(u64);

impl Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

fn resp(out: &mut impl Write, args: &[&[u8]]) {
    write!(out, "*{}\r\n", args.len()).expect("write");
    for a in args {
        write!(out, "${}\r\n", a.len()).expect("write");
        out.write_all(a).expect("write");
        out.write_all(b"\r\n").expect("write");
    }
}

/// Mixed types until used_memory reaches `bytes`: mostly strings, with
/// hashes, lists, sets and sorted sets; half the values are random (LZF
/// cannot shrink them), half repetitive text.
fn fill(port: u16, bytes: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut reader = stream.try_clone().expect("clone");
    // Drain replies in the background so the pipeline never blocks.
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while reader.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    });
    let mut out = BufWriter::with_capacity(1 << 20, stream);
    let mut value = vec![0u8; 1024];
    let mut n: u64 = 0;
    loop {
        for _ in 0..10_000 {
            n += 1;
            let key = format!("k:{n}");
            match n % 10 {
                0 => {
                    for f in 0..10 {
                        rng.fill(&mut value[..64]);
                        resp(
                            &mut out,
                            &[
                                b"HSET",
                                key.as_bytes(),
                                format!("f{f}").as_bytes(),
                                &value[..64],
                            ],
                        );
                    }
                }
                1 => {
                    for _ in 0..10 {
                        rng.fill(&mut value[..64]);
                        resp(&mut out, &[b"RPUSH", key.as_bytes(), &value[..64]]);
                    }
                }
                2 => {
                    for _ in 0..10 {
                        rng.fill(&mut value[..32]);
                        resp(&mut out, &[b"SADD", key.as_bytes(), &value[..32]]);
                    }
                }
                3 => {
                    for s in 0..10 {
                        rng.fill(&mut value[..32]);
                        resp(
                            &mut out,
                            &[
                                b"ZADD",
                                key.as_bytes(),
                                s.to_string().as_bytes(),
                                &value[..32],
                            ],
                        );
                    }
                }
                4..=6 => {
                    let text = format!("{n:0>1000}");
                    resp(&mut out, &[b"SET", key.as_bytes(), text.as_bytes()]);
                }
                _ => {
                    rng.fill(&mut value);
                    resp(&mut out, &[b"SET", key.as_bytes(), &value]);
                }
            }
        }
        out.flush().expect("flush");
        if info_field(port, "used_memory") >= bytes {
            break;
        }
    }
    // Half-close: Redis answers everything pipelined, then closes; the drain
    // thread ends there, so the dataset is complete before the first timing.
    let stream = out.into_inner().expect("flush");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    drain.join().expect("drain");
}

fn info_field(port: u16, field: &str) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "memory"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn call(method: &str, base: &str, path: &str, body: Option<&str>) -> serde_json::Value {
    let mut args = vec![
        "-s".to_string(),
        "-X".into(),
        method.into(),
        format!("{base}{path}"),
    ];
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "-d".into(),
            b.into(),
        ]);
    }
    let out = Command::new("curl").args(&args).output().expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn post(base: &str, path: &str, body: &str) -> serde_json::Value {
    call("POST", base, path, Some(body))
}

fn get(base: &str, path: &str) -> serde_json::Value {
    call("GET", base, path, None)
}

fn delete(base: &str, path: &str) {
    call("DELETE", base, path, None);
}
