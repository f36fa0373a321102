//! Helpers shared by the benchmarks: processes, ports, a dataset, HTTP via curl.
#![allow(dead_code)]

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `RDBVAULT_BENCH_MB`, the dataset size in MiB, or this default.
pub fn bench_mb(default: u64) -> u64 {
    std::env::var("RDBVAULT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null()).spawn().expect("spawn")
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// From `created_at` (the request was accepted) to `updated_at` (it succeeded).
pub fn record_secs(record: &serde_json::Value) -> f64 {
    let at = |f: &str| {
        record[f]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .expect("record time")
    };
    (at("updated_at") - at("created_at")).as_seconds_f64()
}

/// User + system CPU time of a process so far.
pub fn cpu_secs(pid: u32) -> f64 {
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
pub fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A small xorshift generator: incompressible values without a dependency.
pub struct Rng(pub u64);

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

/// A pipelined connection: commands go out through the writer while a
/// thread drains the replies, so the pipeline never blocks on them.
pub fn pipeline(port: u16) -> (BufWriter<TcpStream>, std::thread::JoinHandle<()>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut reader = stream.try_clone().expect("clone");
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while reader.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    });
    (BufWriter::with_capacity(1 << 20, stream), drain)
}

/// Half-close: Redis answers everything pipelined, then closes; the drain
/// thread ends there, so the dataset is complete before the first timing.
pub fn finish(out: BufWriter<TcpStream>, drain: std::thread::JoinHandle<()>) {
    let stream = out.into_inner().expect("flush");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    drain.join().expect("drain");
}

/// A redis-server for a benchmark, on a free port, keeping nothing on disk.
pub fn start_redis(dir: &std::path::Path, extra: &[&str]) -> (Child, u16) {
    let port = free_port();
    let child = spawn(
        Command::new("redis-server")
            .stderr(Stdio::null())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                &dir.display().to_string(),
            ])
            .args(extra),
    );
    wait_port(port);
    (child, port)
}

pub fn resp(out: &mut impl Write, args: &[&[u8]]) {
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
pub fn fill(port: u16, bytes: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut out, drain) = pipeline(port);
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
    finish(out, drain);
}

pub fn info_field(port: u16, field: &str) -> u64 {
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

pub fn call(method: &str, base: &str, path: &str, body: Option<&str>) -> serde_json::Value {
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

pub fn post(base: &str, path: &str, body: &str) -> serde_json::Value {
    call("POST", base, path, Some(body))
}

pub fn get(base: &str, path: &str) -> serde_json::Value {
    call("GET", base, path, None)
}

pub fn delete(base: &str, path: &str) {
    call("DELETE", base, path, None);
}

/// Many small collections until used_memory reaches `bytes`: user-like
/// hashes of five short fields, sorted sets of ten members, sets of eight
/// tags, lists of twenty integers, all in compact encodings, so a reader
/// spends its time on elements rather than on bulk bytes.
pub fn fill_collections(port: u16, bytes: u64) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut word = [0u8; 8];
    let mut next = move || {
        rng.fill(&mut word);
        u64::from_le_bytes(word)
    };
    let (mut out, drain) = pipeline(port);
    let mut n: u64 = 0;
    while info_field(port, "used_memory") < bytes {
        for _ in 0..10_000 {
            n += 1;
            let key = |kind: &str| format!("{kind}:{n}").into_bytes();
            let num = |v: u64| v.to_string().into_bytes();
            let mut args: Vec<Vec<u8>> = match n % 4 {
                0 => {
                    let mut a = vec![b"HSET".to_vec(), key("user")];
                    for (f, v) in [
                        ("name", format!("n{}", next() % 1_000_000)),
                        ("age", (next() % 99).to_string()),
                        ("city", format!("c{}", next() % 500)),
                        ("score", format!("{:.6}", (next() % 1_000_000) as f64 / 7.0)),
                        ("flag", "1".to_string()),
                    ] {
                        a.push(f.as_bytes().to_vec());
                        a.push(v.into_bytes());
                    }
                    a
                }
                1 => {
                    let mut a = vec![b"ZADD".to_vec(), key("rank")];
                    for j in 0..10 {
                        a.push(num(next() % 100_000));
                        a.push(format!("m{j}:{}", next() % (1 << 30)).into_bytes());
                    }
                    a
                }
                2 => {
                    let mut a = vec![b"SADD".to_vec(), key("tags")];
                    a.extend((0..8).map(|_| format!("t{}", next() % 1000).into_bytes()));
                    a
                }
                _ => {
                    let mut a = vec![b"RPUSH".to_vec(), key("queue")];
                    a.extend((0..20).map(|_| num(next() % (1 << 40))));
                    a
                }
            };
            let refs: Vec<&[u8]> = args.iter_mut().map(|a| a.as_slice()).collect();
            resp(&mut out, &refs);
        }
        out.flush().expect("flush");
    }
    finish(out, drain);
}

/// Random 4 KiB strings until used_memory reaches `bytes`: an RDB about as
/// large as the dataset (LZF cannot shrink random bytes).
pub fn fill_random(port: u16, bytes: u64) {
    fill_random_keys(port, bytes, "r");
}

/// [`fill_random`] with keys `{prefix}:{n}` (a `{hash tag}` prefix keeps a
/// cluster master's keys in its own slots).
pub fn fill_random_keys(port: u16, bytes: u64, prefix: &str) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut out, drain) = pipeline(port);
    let mut value = vec![0u8; 4096];
    let mut n: u64 = 0;
    while info_field(port, "used_memory") < bytes {
        for _ in 0..2_000 {
            n += 1;
            rng.fill(&mut value);
            resp(
                &mut out,
                &[b"SET", format!("{prefix}:{n}").as_bytes(), &value],
            );
        }
        out.flush().expect("flush");
    }
    finish(out, drain);
}

/// Starts `rdbvault serve` with one credential, returns it and its base URL.
pub fn serve(data: &std::path::Path, ak: &str, sk: &str, project: &str) -> (Child, String) {
    let port = free_port();
    std::fs::create_dir_all(data).expect("data dir");
    let config = data.join("rdbvault.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[[credentials]]\naccess_key = \"{ak}\"\nsecret_key = \"{sk}\"\nprojects = [\"{project}\"]\n",
            data.display()
        ),
    )
    .expect("config");
    let child = spawn(
        Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RDBVAULT_LOG", "warn")
            .stderr(Stdio::null()),
    );
    wait_port(port);
    (child, format!("http://127.0.0.1:{port}"))
}

/// One backup through the API, polled slowly (so polling costs the server
/// nothing measurable) until it ends; its record.
pub fn backup_once(base: &str, project: &str, instance: &str) -> serde_json::Value {
    let backup = post(
        base,
        &format!("/v2/{project}/instances/{instance}/backups"),
        "{}",
    )["backup_id"]
        .as_str()
        .expect("backup id")
        .to_string();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let list = get(
            base,
            &format!("/v2/{project}/instances/{instance}/backups?limit=1"),
        );
        let r = list["backup_record_response"][0].clone();
        if r["backup_id"] == backup.as_str()
            && !matches!(r["status"].as_str(), Some("waiting" | "backuping"))
        {
            return r;
        }
    }
}

/// One restore through the API (`body` holds `backup_id` and the rest),
/// polled slowly until it ends; its record.
pub fn restore_once(base: &str, project: &str, instance: &str, body: &str) -> serde_json::Value {
    let started = post(
        base,
        &format!("/v2/{project}/instances/{instance}/restores"),
        body,
    );
    let restore = started["restore_id"]
        .as_str()
        .unwrap_or_else(|| panic!("restore refused: {started}"))
        .to_string();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let list = get(
            base,
            &format!("/v2/{project}/instances/{instance}/restores?limit=10"),
        );
        let found = list["restore_record_response"].as_array().and_then(|rs| {
            rs.iter()
                .find(|r| r["restore_id"] == restore.as_str())
                .cloned()
        });
        if let Some(r) = found
            && !matches!(r["status"].as_str(), Some("waiting" | "restoring"))
        {
            return r;
        }
    }
}

/// Whether the server at `port` is loading a dataset (`INFO persistence`).
pub fn loading(port: u16) -> bool {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "persistence"])
        .output()
        .expect("redis-cli");
    // Not `async_loading`, which Redis 7 reports beside it.
    !String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "loading:0")
}
