//! Backup speed and memory, against a baseline measured in the same run.
//!
//! Fills a fresh redis-server with a mixed dataset (default 1 GiB of used
//! memory; `RDBVAULT_BENCH_MB` to change), then alternately times
//! `redis-cli --rdb` writing the snapshot to a local file (the baseline) and
//! an rdbvault backup of the same instance into the local store (API request
//! to `succeed`), and samples the server's peak RSS (VmHWM) over the backup.
//! Both are measured twice: with `repl-diskless-sync-delay 0`, and with
//! Redis's default delay of 5 s, which production masters keep (save points
//! stay off throughout, so no persistence fork adds noise).
//!
//! `cargo bench -p rdbvault --bench backup`

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::{
    backup_once, cpu_secs, delete, fill, free_port, info_field, post, record_secs, spawn,
    start_redis, vm_hwm, wait_port,
};

const ROUNDS: usize = 3;

fn main() {
    let target_mb = common::bench_mb(1024);
    let work = tempfile::tempdir().expect("tempdir");
    let (mut redis, port) = start_redis(work.path(), &[]);
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

    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut rdb_size = 0;
    let mut measure = |label: &str| {
        let (mut baseline, mut ours, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
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
            let record = backup_once(&base, project, &instance);
            ours.push(record_secs(&record));
            cpu.push(cpu_secs(server.id()) - cpu_before);
            assert_eq!(record["status"], "succeed", "{record}");
            eprintln!(
                "{label} round {round}: redis-cli --rdb {:.2} s, rdbvault {:.2} s (server CPU {:.2} s)",
                baseline[round], ours[round], cpu[round]
            );
            let backup = record["backup_id"].as_str().expect("backup id");
            delete(
                &base,
                &format!("/v2/{project}/instances/{instance}/backups/{backup}"),
            );
        }
        (best(&baseline), best(&ours))
    };
    // Tuned (no delay before the fork), then Redis's own default delay of
    // 5 s, which both sides wait for alike.
    let (b, o) = measure("delay 0");
    let config_set = |value: &str| {
        let status = Command::new("redis-cli")
            .args([
                "-p",
                &port.to_string(),
                "CONFIG",
                "SET",
                "repl-diskless-sync-delay",
                value,
            ])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success());
    };
    config_set("5");
    let (bd, od) = measure("default delay 5 s");
    config_set("0");
    let peak_rss = vm_hwm(server.id());
    println!(
        "backup of {:.2} GiB used memory (RDB {:.2} GiB): redis-cli --rdb {b:.2} s; rdbvault {o:.2} s; ratio {:.2}x (target <= 1.10x); \
         server peak RSS {:.1} MiB (target <= 64 MiB)",
        used as f64 / (1u64 << 30) as f64,
        rdb_size as f64 / (1u64 << 30) as f64,
        o / b,
        peak_rss as f64 / 1024.0,
    );
    println!(
        "on the default repl-diskless-sync-delay (5 s): redis-cli --rdb {bd:.2} s; rdbvault {od:.2} s; ratio {:.2}x",
        od / bd
    );

    // The same backups into a real S3 server (s3s-fs), from a second rdbvault.
    let s3_port = free_port();
    let s3_dir = work.path().join("s3");
    std::fs::create_dir_all(s3_dir.join("backups")).expect("bucket dir");
    let mut s3 = spawn(
        Command::new("s3s-fs")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &s3_port.to_string(),
                "--access-key",
                "BENCHAK",
                "--secret-key",
                "BENCHSK",
            ])
            .arg(&s3_dir)
            .stderr(Stdio::null()),
    );
    wait_port(s3_port);
    let s3_http = free_port();
    let part_mib = 8;
    let mut s3_server = spawn(
        Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .arg("serve")
            .env("RDBVAULT_LISTEN", format!("127.0.0.1:{s3_http}"))
            .env("RDBVAULT_DATA_DIR", work.path().join("rdbvault-s3"))
            .env("RDBVAULT_AUTH", "none")
            .env("RDBVAULT_LOG", "warn")
            .env("RDBVAULT_STORAGE", "s3")
            .env("RDBVAULT_BUCKET", "backups")
            .env(
                "RDBVAULT_S3__ENDPOINT",
                format!("http://127.0.0.1:{s3_port}"),
            )
            .env("RDBVAULT_S3__ACCESS_KEY", "BENCHAK")
            .env("RDBVAULT_S3__SECRET_KEY", "BENCHSK")
            .env("RDBVAULT_S3__PART_SIZE_MIB", part_mib.to_string())
            .stderr(Stdio::null()),
    );
    wait_port(s3_http);
    let s3_base = format!("http://127.0.0.1:{s3_http}");
    let s3_instance = post(
        &s3_base,
        &format!("/v2/{project}/rdbvault/instances"),
        &format!(r#"{{"name":"bench","mode":"single","addrs":["127.0.0.1:{port}"]}}"#),
    )["instance_id"]
        .as_str()
        .expect("instance id")
        .to_string();
    let mut to_s3 = Vec::new();
    for round in 0..ROUNDS {
        let record = backup_once(&s3_base, project, &s3_instance);
        assert_eq!(record["status"], "succeed", "{record}");
        to_s3.push(record_secs(&record));
        eprintln!("round {round}: rdbvault to s3s-fs {:.2} s", to_s3[round]);
        let backup = record["backup_id"].as_str().expect("backup id");
        delete(
            &s3_base,
            &format!("/v2/{project}/instances/{s3_instance}/backups/{backup}"),
        );
    }
    let s3_rss = vm_hwm(s3_server.id());
    let s = best(&to_s3);
    println!(
        "backup to S3 (s3s-fs on loopback) {s:.2} s vs local store {o:.2} s: ratio {:.2}x; \
         server peak RSS during S3 uploads {:.1} MiB (target <= 64 MiB + 3 x {part_mib} MiB parts)",
        s / o,
        s3_rss as f64 / 1024.0,
    );
    for child in [&mut server, &mut redis, &mut s3_server, &mut s3] {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(dest) = log_copy {
        let _ = std::fs::copy(work.path().join("server.log"), dest);
    }
}
