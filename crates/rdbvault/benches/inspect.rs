//! Offline key analysis speed and memory, against `redis-check-rdb` reading
//! the same file in the same run.
//!
//! Two datasets, each saved by a fresh redis-server as a dump of about
//! 1 GiB (`RDBVAULT_BENCH_MB` to change): the backup benchmark's mix, and
//! small collections only. For each, alternately times `redis-check-rdb
//! FILE` (the baseline: it loads every value as a Redis object) and
//! `rdbvault inspect FILE --json`, keeping the best of each, and samples
//! each process's peak RSS. `RDBVAULT_BENCH_DIR=DIR` keeps the dumps there
//! and reuses them next time.
//!
//! `cargo bench -p rdbvault --bench inspect`

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fill, fill_collections, info_field, start_redis, vm_hwm};

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

/// A dataset: its name, how to fill a server, and roughly how many bytes
/// of used memory make one byte of dump.
struct Dataset {
    name: &'static str,
    fill: fn(u16, u64),
    memory_per_dump_byte: u64,
}

const DATASETS: [Dataset; 2] = [
    // The backup benchmark's mix: strings of 1 KiB (half random, half text
    // that LZF shrinks), small hashes, lists, sets and sorted sets.
    Dataset {
        name: "mixed",
        fill,
        memory_per_dump_byte: 2,
    },
    // Small collections only: elements, not bulk bytes, dominate.
    Dataset {
        name: "collections",
        fill: fill_collections,
        memory_per_dump_byte: 3,
    },
];

fn make_dump(dir: &Path, set: &Dataset, rdb_mb: u64) -> PathBuf {
    let (mut redis, port) = start_redis(dir, &["--dbfilename", &format!("{}.rdb", set.name)]);
    let started = Instant::now();
    (set.fill)(port, rdb_mb * set.memory_per_dump_byte * 1024 * 1024);
    let used = info_field(port, "used_memory");
    let save = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "SAVE"])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&save.stdout).trim(), "OK");
    let _ = redis.kill();
    let _ = redis.wait();
    let file = dir.join(format!("{}.rdb", set.name));
    let size = std::fs::metadata(&file).expect("the dump").len();
    eprintln!(
        "{}: {:.2} GiB used_memory, RDB {:.2} GiB, made in {:.1} s",
        set.name,
        used as f64 / (1u64 << 30) as f64,
        size as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64()
    );
    file
}

fn main() {
    let rdb_mb = common::bench_mb(1024);
    let work = tempfile::tempdir().expect("tempdir");
    // RDBVAULT_BENCH_DIR: where to keep the dumps and reuse them next time.
    let dir = std::env::var_os("RDBVAULT_BENCH_DIR")
        .map_or_else(|| work.path().to_path_buf(), PathBuf::from);
    for set in &DATASETS {
        let kept = dir.join(format!("{}.rdb", set.name));
        let file = if kept.is_file() {
            kept
        } else {
            make_dump(&dir, set, rdb_mb)
        };
        compare(set.name, &file);
    }
}

/// Alternates the two, keeping the best time and the highest peak of each.
fn compare(name: &str, file: &Path) {
    let (mut check, mut inspect) = ((f64::MAX, 0), (f64::MAX, 0));
    for round in 0..ROUNDS {
        let c = measure(Command::new("redis-check-rdb").arg(file));
        let i = measure(
            Command::new(env!("CARGO_BIN_EXE_rdbvault"))
                .arg("inspect")
                .arg(file)
                .arg("--json"),
        );
        eprintln!(
            "{name} round {}: redis-check-rdb {:.2} s, rdbvault inspect {:.2} s",
            round + 1,
            c.0,
            i.0
        );
        check = (check.0.min(c.0), check.1.max(c.1));
        inspect = (inspect.0.min(i.0), inspect.1.max(i.1));
    }
    let size = std::fs::metadata(file).expect("the dump").len();
    println!(
        "inspect of a {:.2} GiB {name} RDB: redis-check-rdb {:.2} s (peak RSS {} MiB); rdbvault inspect {:.2} s \
         (peak RSS {} MiB); ratio {:.2}x (target <= 0.50x)",
        size as f64 / (1u64 << 30) as f64,
        check.0,
        check.1 / 1024,
        inspect.0,
        inspect.1 / 1024,
        inspect.0 / check.0
    );
}
