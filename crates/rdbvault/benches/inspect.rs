//! Offline key analysis speed and memory, against `redis-check-rdb` reading
//! the same file in the same run.
//!
//! Fills a fresh redis-server with the mixed dataset of the backup benchmark
//! until its dump is about 1 GiB (`RDBVAULT_BENCH_MB` to change), saves it,
//! then alternately times `redis-check-rdb FILE` (the baseline: it decodes
//! every value into a Redis object) and `rdbvault inspect FILE --json`,
//! keeping the best of each, and samples each process's peak RSS.
//! `RDBVAULT_BENCH_RDB=PATH` keeps the dump there and reuses it next time.
//!
//! `cargo bench -p rdbvault --bench inspect`

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fill, info_field, start_redis, vm_hwm};

const ROUNDS: usize = 3;

/// Runs a command to completion; its wall time and peak RSS (KiB, sampled).
fn measure(cmd: &mut Command) -> (f64, u64) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut peak = 0;
    loop {
        peak = peak.max(vm_hwm(child.id()));
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{cmd:?} failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (started.elapsed().as_secs_f64(), peak)
}

fn make_dump(dir: &Path, rdb_mb: u64) -> std::path::PathBuf {
    let (mut redis, port) = start_redis(dir, &[]);
    let started = Instant::now();
    // This dataset's dump is about half its used memory.
    fill(port, rdb_mb * 2 * 1024 * 1024);
    let used = info_field(port, "used_memory");
    let save = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "SAVE"])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&save.stdout).trim(), "OK");
    let _ = redis.kill();
    let _ = redis.wait();
    let file = dir.join("dump.rdb");
    let size = std::fs::metadata(&file).expect("dump.rdb").len();
    eprintln!(
        "dataset: {:.2} GiB used_memory, RDB {:.2} GiB, made in {:.1} s",
        used as f64 / (1u64 << 30) as f64,
        size as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64()
    );
    file
}

fn main() {
    let rdb_mb = common::bench_mb(1024);
    let work = tempfile::tempdir().expect("tempdir");
    // RDBVAULT_BENCH_RDB: a dump to reuse across runs (made there if absent).
    let file = match std::env::var_os("RDBVAULT_BENCH_RDB").map(std::path::PathBuf::from) {
        Some(path) if path.is_file() => path,
        Some(path) => {
            std::fs::copy(make_dump(work.path(), rdb_mb), &path).expect("keeping the dump");
            path
        }
        None => make_dump(work.path(), rdb_mb),
    };

    let (mut check, mut inspect) = ((f64::MAX, 0), (f64::MAX, 0));
    for round in 0..ROUNDS {
        let c = measure(Command::new("redis-check-rdb").arg(&file));
        let i = measure(
            Command::new(env!("CARGO_BIN_EXE_rdbvault"))
                .arg("inspect")
                .arg(&file)
                .arg("--json"),
        );
        eprintln!(
            "round {}: redis-check-rdb {:.2} s, rdbvault inspect {:.2} s",
            round + 1,
            c.0,
            i.0
        );
        check = (check.0.min(c.0), check.1.max(c.1));
        inspect = (inspect.0.min(i.0), inspect.1.max(i.1));
    }
    let size = std::fs::metadata(&file).expect("dump.rdb").len();
    println!(
        "inspect of a {:.2} GiB RDB: redis-check-rdb {:.2} s (peak RSS {} MiB); rdbvault inspect {:.2} s \
         (peak RSS {} MiB); ratio {:.2}x (target <= 0.50x)",
        size as f64 / (1u64 << 30) as f64,
        check.0,
        check.1 / 1024,
        inspect.0,
        inspect.1 / 1024,
        inspect.0 / check.0
    );
}
