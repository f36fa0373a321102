//! A bounded soak against a real `rdbvault serve`: backups, links and
//! downloads in a loop while the Redis node is killed and restarted.
//! Every answer must be right: a backup ends `succeed` (and then downloads
//! whole, its SHA-256 and key count as recorded and as the node held) or
//! `failed` with a failure code, never anything else, never stuck; the
//! service's memory stays flat. `SOAK_SECS` sets the length (CI: 90 s;
//! longer by hand, e.g. `SOAK_SECS=1800`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{PROJECT, RedisServer, ServeProcess};
use sha2::{Digest, Sha256};

const KEYS: u64 = 20_000;
const MIB: u64 = 1024 * 1024;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// A Redis on `port` holding exactly `KEYS` keys.
fn redis_on(port: u16) -> RedisServer {
    let r = RedisServer::start_fast_on(port, &[]);
    assert_eq!(
        r.cli(&["DEBUG", "POPULATE", &KEYS.to_string(), "soak", "64"]),
        "OK"
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_links_and_downloads_while_redis_dies_and_comes_back() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90);
    let port = common::free_port();
    // The node's life, on its own thread: up 5 s, killed (whatever it is
    // doing: often in the middle of a transfer), down 2 s, back.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cycle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut restarts = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut r = redis_on(port);
                std::thread::sleep(Duration::from_secs(5));
                r.kill();
                std::thread::sleep(Duration::from_secs(2));
                restarts += 1;
            }
            restarts
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start_configured(dir.path(), &[], "connect_timeout_ms = 1000\n");
    let client = serve.client();
    let pid = serve.child.id();
    // Registered without the live check: the node may be down right now.
    let instance = client
        .register(serde_json::json!({"name": "soak", "mode": "single",
            "addrs": [format!("127.0.0.1:{port}")], "verify": false}))
        .await;
    let files = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let (mut succeeded, mut failed, mut full) = (0u32, 0u32, 0u32);
    let mut rss = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        let backup = client.start_backup(&instance).await;
        let record = client.wait_backup(&instance, &backup).await;
        match record["status"].as_str() {
            Some("succeed") => {
                succeeded += 1;
                let r = client
                    .req(
                        "POST",
                        &format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}/links"),
                    )
                    .json(r#"{"expiration": 300}"#)
                    .send()
                    .await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                let item = r.json()["links"][0].clone();
                let body = reqwest::get(item["link"].as_str().unwrap())
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                assert_eq!(
                    body.len() as u64,
                    item["size"].as_u64().unwrap(),
                    "{record}"
                );
                assert_eq!(
                    hex::encode(Sha256::digest(&body)),
                    item["sha256"].as_str().unwrap(),
                    "{record}"
                );
                // Exactly the keys the node held: all of them, or none when
                // the backup caught the node just restarted, before it was
                // refilled; never part of them.
                let file = files.path().join("b.rdb");
                std::fs::write(&file, &body).unwrap();
                let out = Command::new(env!("CARGO_BIN_EXE_rdbvault"))
                    .args(["inspect", "--json"])
                    .arg(&file)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let keys = report["keys"].as_u64().unwrap();
                assert!(keys == KEYS || keys == 0, "{keys} keys: {record}");
                full += u32::from(keys == KEYS);
                // Deleted again, so the store does not grow without bound.
                let r = client
                    .req(
                        "DELETE",
                        &format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}"),
                    )
                    .send()
                    .await;
                assert!(r.status < 300, "{}", String::from_utf8_lossy(&r.body));
            }
            Some("failed") => {
                failed += 1;
                let code = record["error_code"].as_str().unwrap_or("");
                assert!(code.starts_with("dcs.08."), "{record}");
                // Nothing of a failed backup is left in the store.
                assert!(
                    common::all_files(&dir.path().join("objects").join(&instance).join(&backup))
                        .is_empty(),
                    "{record}"
                );
            }
            other => panic!("a backup ended {other:?}: {record}"),
        }
        rss.push(rss_bytes(pid));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let restarts = cycle.join().unwrap();
    let n = rss.len();
    assert!(n >= 6, "only {n} rounds");
    // Flat: the last quarter's peak is not far above the first quarter's.
    let first = *rss[..n / 4].iter().max().unwrap();
    let last = *rss[n - n / 4..].iter().max().unwrap();
    eprintln!(
        "soak: {secs} s, {succeeded} backups verified ({full} of all keys), {failed} failed with a code, {restarts} Redis restarts; RSS first quarter {} MiB, last quarter {} MiB",
        first / MIB,
        last / MIB
    );
    assert!(
        full > 0 && failed > 0,
        "{succeeded} succeeded ({full} full), {failed} failed"
    );
    assert!(
        last < first + 16 * MIB,
        "RSS grew: {} -> {} MiB",
        first / MIB,
        last / MIB
    );
}
