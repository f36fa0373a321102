//! A Redis Cluster backup against the floor this machine allows: the same
//! pulls done by `redis-cli --rdb`, one process per master, all at once (the
//! masters' forked saves compete for the cores), and one after another.
//!
//! `cargo bench -p rdbvault --bench cluster` (`RDBVAULT_BENCH_MB`: total data, default 768)

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdbvault::replication::cluster::key_slot;

use common::{
    backup_once, delete, fill_random_keys, free_port, post, record_secs, spawn, wait_port,
};

const MASTERS: usize = 3;
const ROUNDS: usize = 2;

fn main() {
    let mb = common::bench_mb(768);
    let work = tempfile::tempdir().expect("tempdir");
    let ports: Vec<u16> = (0..MASTERS).map(|_| cluster_port()).collect();
    let mut nodes: Vec<_> = ports
        .iter()
        .map(|p| {
            let dir = work.path().join(format!("n{p}"));
            std::fs::create_dir_all(&dir).expect("dir");
            spawn(Command::new("redis-server").stderr(Stdio::null()).args([
                "--port",
                &p.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                &dir.display().to_string(),
            ]))
        })
        .collect();
    for p in &ports {
        wait_port(*p);
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(created.status.success(), "cluster create failed");
    while !ports
        .iter()
        .all(|p| cli(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each master gets its share, under a hash tag it owns.
    for p in &ports {
        let myid = cli(*p, &["CLUSTER", "MYID"]);
        let nodes_text = cli(*p, &["CLUSTER", "NODES"]);
        let line = nodes_text
            .lines()
            .find(|l| l.starts_with(&myid))
            .expect("own line");
        let (a, b) = line
            .split_whitespace()
            .nth(8)
            .and_then(|r| r.split_once('-'))
            .expect("a range");
        let (a, b): (u16, u16) = (a.parse().expect("slot"), b.parse().expect("slot"));
        let tag = (0..)
            .map(|i| format!("{{t{i}}}"))
            .find(|t| (a..=b).contains(&key_slot(t.as_bytes())))
            .expect("a tag");
        fill_random_keys(*p, mb * 1024 * 1024 / MASTERS as u64, &tag);
    }

    let http = free_port();
    let mut server = spawn(
        Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .arg("serve")
            .env("RDBVAULT_LISTEN", format!("127.0.0.1:{http}"))
            .env("RDBVAULT_DATA_DIR", work.path().join("data"))
            .env("RDBVAULT_AUTH", "none")
            .env("RDBVAULT_LOG", "warn")
            .stderr(Stdio::null()),
    );
    wait_port(http);
    let base = format!("http://127.0.0.1:{http}");
    let instance = post(
        &base,
        "/v2/bench/rdbvault/instances",
        &format!(
            r#"{{"name":"cluster","mode":"cluster","addrs":["{}"]}}"#,
            addrs[0]
        ),
    )["instance_id"]
        .as_str()
        .expect("instance id")
        .to_string();

    let (mut parallel, mut sequential, mut ours) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for round in 0..ROUNDS {
        let t = Instant::now();
        let children: Vec<_> = ports
            .iter()
            .map(|p| redis_cli_rdb(*p, &work.path().join(format!("p{p}.rdb"))))
            .collect();
        for mut c in children {
            assert!(c.wait().expect("wait").success());
        }
        let p = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for port in &ports {
            assert!(
                redis_cli_rdb(*port, &work.path().join(format!("s{port}.rdb")))
                    .wait()
                    .expect("wait")
                    .success()
            );
        }
        let s = t.elapsed().as_secs_f64();
        let record = backup_once(&base, "bench", &instance);
        assert_eq!(record["status"], "succeed", "{record}");
        let o = record_secs(&record);
        eprintln!(
            "round {round}: parallel redis-cli {p:.2} s, sequential {s:.2} s, rdbvault {o:.2} s"
        );
        delete(
            &base,
            &format!(
                "/v2/bench/instances/{instance}/backups/{}",
                record["backup_id"].as_str().expect("id")
            ),
        );
        parallel = parallel.min(p);
        sequential = sequential.min(s);
        ours = ours.min(o);
    }
    println!(
        "cluster of {MASTERS} masters, {:.2} GiB: rdbvault {ours:.2} s; parallel redis-cli --rdb {parallel:.2} s \
         (ratio {:.2}x, target <= 1.10x); sequential {sequential:.2} s (ratio {:.2}x)",
        mb as f64 / 1024.0,
        ours / parallel,
        ours / sequential,
    );
    for c in nodes.iter_mut().chain(std::iter::once(&mut server)) {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Free below 45000 with its cluster bus port (+10000) free too.
fn cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p < 45000 && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn redis_cli_rdb(port: u16, out: &std::path::Path) -> std::process::Child {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--rdb", &out.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-cli")
}
