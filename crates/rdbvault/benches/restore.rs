//! Restore speed, against a baseline measured in the same run: a fresh
//! redis-server loading the same RDB file at start (a cold start).
//!
//! Fills a redis-server with the mixed dataset of the backup benchmark
//! (default 512 MiB of used memory; `RDBVAULT_BENCH_MB` to change), backs
//! it up into the local store, then alternately times
//! - the baselines: `redis-server --dbfilename` of the stored file, from
//!   spawn until `INFO persistence` says `loading:0` (a cold start), and the
//!   same with the file copied into the server's directory first (a restore
//!   by hand);
//! - rdbvault restores of the backup into an empty server, by `replicate`,
//!   `restore` (pipelined RESTORE) and `commands`, from the API request to
//!   `succeed` (both passes over the file: verification, then writing).
//!
//! The target is `FLUSHALL`ed between rounds; rdbvault's peak RSS is taken
//! per restore (VmHWM reset before each).
//!
//! `cargo bench -p rdbvault --bench restore` (`RDBVAULT_LOG=info
//! RDBVAULT_BENCH_LOG=file` keeps the service's log, with each restore's
//! phase timings)

mod common;

use std::process::Command;
use std::time::Instant;

use common::{
    backup_once, fill, free_port, info_field, loading, post, record_secs, restore_once, spawn,
    start_redis, vm_hwm, wait_port,
};

const ROUNDS: usize = 3;

fn main() {
    let target_mb = common::bench_mb(512);
    let work = tempfile::tempdir().expect("tempdir");
    let (mut source, port) = start_redis(work.path(), &[]);
    fill(port, target_mb * 1024 * 1024);
    let used = info_field(port, "used_memory");
    eprintln!(
        "dataset: {:.2} GiB used_memory",
        used as f64 / (1u64 << 30) as f64
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
    wait_port(http_port);
    let base = format!("http://127.0.0.1:{http_port}");
    let project = "bench";
    let register = |port: u16, name: &str| {
        post(
            &base,
            &format!("/v2/{project}/rdbvault/instances"),
            &format!(r#"{{"name":"{name}","mode":"single","addrs":["127.0.0.1:{port}"]}}"#),
        )["instance_id"]
            .as_str()
            .expect("instance id")
            .to_string()
    };
    let instance = register(port, "source");
    let record = backup_once(&base, project, &instance);
    assert_eq!(record["status"], "succeed", "{record}");
    let backup = record["backup_id"].as_str().expect("backup id").to_string();
    let size = record["size"].as_u64().unwrap_or(0);
    let file = std::fs::read_dir(data.join("objects").join(&instance).join(&backup))
        .expect("backup dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "rdb"))
        .expect("the stored file");
    let _ = source.kill();
    let _ = source.wait();

    let target_dir = work.path().join("target");
    std::fs::create_dir_all(&target_dir).expect("target dir");
    let (mut target, target_port) = start_redis(&target_dir, &[]);
    let target_id = register(target_port, "target");

    // The baselines: a fresh server loading the file at start, with the
    // file already in its directory, and with it copied there first (what
    // restoring by hand takes: put the file in place, start the server).
    let cold_dir = work.path().join("cold");
    std::fs::create_dir_all(&cold_dir).expect("cold dir");
    let cold_start = |copy: bool| {
        let dump = cold_dir.join("dump.rdb");
        if !copy {
            std::fs::copy(&file, &dump).expect("copy");
        }
        let t = Instant::now();
        if copy {
            std::fs::copy(&file, &dump).expect("copy");
        }
        let port = free_port();
        let mut child = spawn(
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .args([
                    "--dir",
                    &cold_dir.display().to_string(),
                    "--dbfilename",
                    "dump.rdb",
                ])
                .stderr(std::process::Stdio::null()),
        );
        wait_port(port);
        while loading(port) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let secs = t.elapsed().as_secs_f64();
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&dump);
        secs
    };

    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let methods = ["replicate", "restore", "commands"];
    let (mut cold, mut copied) = (Vec::new(), Vec::new());
    let mut ours: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    let mut peak = vec![0u64; methods.len()];
    // The service's resident memory between restores, which each peak includes.
    let mut idle = 0;
    for round in 0..ROUNDS {
        cold.push(cold_start(false));
        copied.push(cold_start(true));
        for (i, method) in methods.iter().enumerate() {
            let status = Command::new("redis-cli")
                .args(["-p", &target_port.to_string(), "FLUSHALL"])
                .output()
                .expect("redis-cli");
            assert!(status.status.success());
            // The peak of this restore alone (writing 5 resets VmHWM).
            let _ = std::fs::write(format!("/proc/{}/clear_refs", server.id()), "5");
            idle = idle.max(vm_hwm(server.id()));
            let body = format!(
                r#"{{"backup_id":"{backup}","target_instance_id":"{target_id}","method":"{method}"}}"#
            );
            let record = restore_once(&base, project, &instance, &body);
            assert_eq!(record["status"], "succeed", "{method}: {record}");
            ours[i].push(record_secs(&record));
            peak[i] = peak[i].max(vm_hwm(server.id()));
        }
        eprintln!(
            "round {round}: cold start {:.2} s (copy + cold start {:.2} s); replicate {:.2} s, restore {:.2} s, commands {:.2} s",
            cold[round], copied[round], ours[0][round], ours[1][round], ours[2][round]
        );
    }
    let (b, c) = (best(&cold), best(&copied));
    println!(
        "restore of a {:.2} GiB RDB ({:.2} GiB used memory): cold start loading it {b:.2} s; copying it into place and a cold start {c:.2} s",
        size as f64 / (1u64 << 30) as f64,
        used as f64 / (1u64 << 30) as f64,
    );
    println!(
        "  (rdbvault resident between restores: {:.1} MiB)",
        idle as f64 / 1024.0
    );
    for (i, method) in methods.iter().enumerate() {
        let o = best(&ours[i]);
        let goal = match *method {
            "replicate" => " (target <= 1.10x of copy + cold start)",
            _ => "",
        };
        println!(
            "  {method}: {o:.2} s; ratio {:.2}x of cold start, {:.2}x of copy + cold start{goal}; rdbvault peak RSS {:.1} MiB (target <= 64 MiB)",
            o / b,
            o / c,
            peak[i] as f64 / 1024.0
        );
    }
    // The service's log (its phase timings at RDBVAULT_LOG=info), kept if asked.
    if let Ok(copy) = std::env::var("RDBVAULT_BENCH_LOG") {
        let _ = std::fs::copy(work.path().join("server.log"), copy);
    }
    let _ = target.kill();
    let _ = target.wait();
    let _ = server.kill();
    let _ = server.wait();
}
