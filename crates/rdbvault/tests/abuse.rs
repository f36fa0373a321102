//! A bounded abuse run on loopback, against a real `rdbvault serve`: 500
//! downloads whose clients stop reading, 200 slowloris connections and 64
//! concurrent ListBackupFileLinks callers, while two backups run. Every
//! honest request is answered, the service's RSS stays under 128 MiB
//! throughout, and it comes back near its baseline once the attackers go.
//!
//! The attackers come from many loopback addresses (127.0.x.y), as a crowd
//! would, so the per-client limits do not simply turn them all away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{PROJECT, RedisServer, ServeProcess, TestServer};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const MIB: u64 = 1024 * 1024;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// Samples the RSS of `pid` every 50 ms until stopped; the highest seen.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut max = 0;
        while !stop.load(Ordering::Relaxed) {
            max = max.max(rss_bytes(pid));
            std::thread::sleep(Duration::from_millis(50));
        }
        max
    })
}

/// A connection from the loopback address 127.0.`a`.`b`.
async fn connect_from(a: u8, b: u8, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, a, b], 0))).unwrap();
    socket.connect(server).await.unwrap()
}

async fn link(
    server: &TestServer,
    instance: &str,
    backup: &str,
    secs: u32,
) -> (String, u64, String) {
    let item = server.first_link(instance, backup, secs).await;
    (
        item["link"].as_str().unwrap().to_string(),
        item["size"].as_u64().unwrap(),
        item["sha256"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_downloads_slowloris_and_link_callers_during_backups() {
    // A 40 MB file, far more than the sockets' buffers hold.
    let big = RedisServer::start_fast(&["--rdbcompression", "no"]);
    big.cli(&["DEBUG", "POPULATE", "40000", "k", "1000"]);
    let other = RedisServer::start_fast(&[]);
    other.cli(&["DEBUG", "POPULATE", "10000"]);
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start_configured(
        dir.path(),
        &[],
        "download_idle_timeout_secs = 5\nheader_read_timeout_secs = 20\nidle_timeout_secs = 60\n",
    );
    let client = serve.client();
    let pid = serve.child.id();
    let addr: SocketAddr = serve.base.trim_start_matches("http://").parse().unwrap();
    let big_id = client.register_single(&big.addr()).await;
    let other_id = client.register_single(&other.addr()).await;
    let backup = client.backed_up(&big_id).await;
    // 32 links to the file (a link per expiration), 16 downloads each at most.
    let mut links = Vec::new();
    for i in 0..32 {
        links.push(link(&client, &big_id, &backup, 600 + i).await);
    }
    let (_, size, sha) = links[0].clone();
    assert!(size > 30 * MIB, "{size}");
    // Warm: one whole download and a few calls, then the baseline.
    let whole = reqwest::get(&links[0].0)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(whole.len() as u64, size);
    drop(whole);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_bytes(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pid, stop.clone());

    // 500 downloads that read their status line and nothing more, from 20
    // addresses, over the 32 links.
    let mut stalled = Vec::new();
    for i in 0..500u32 {
        let (a, b) = (1 + (i % 20) as u8, 1 + (i / 20) as u8);
        let mut s = connect_from(a, b, addr).await;
        let path = links[(i % 32) as usize]
            .0
            .strip_prefix(&serve.base)
            .unwrap()
            .to_string();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        stalled.push(s);
    }
    // 200 slowloris connections: a head that never ends.
    let mut slowloris = Vec::new();
    for i in 0..200u32 {
        let mut s = connect_from(100 + (i % 50) as u8, 1 + (i / 50) as u8, addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slowloris.push(s);
    }
    let trickle = tokio::spawn(async move {
        for round in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for s in &mut slowloris {
                let _ = s.write_all(format!("X-{round}: y\r\n").as_bytes()).await;
            }
        }
        slowloris
    });

    // Two backups while it all goes on, and 64 honest link callers.
    let first = client.start_backup(&big_id).await;
    let second = client.start_backup(&other_id).await;
    let answered = Arc::new(AtomicU64::new(0));
    let callers_stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..64 {
        let (client, answered, stop) = (serve.client(), answered.clone(), callers_stop.clone());
        let (instance, backup) = (big_id.clone(), backup.clone());
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .req(
                        "POST",
                        &format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}/links"),
                    )
                    .json(r#"{"expiration": 300}"#)
                    .send()
                    .await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // An honest download (from 127.0.0.1) gets the whole file, waiting as
    // told while the crowd holds the slots; the stalled ones are cut off.
    let started = Instant::now();
    let fresh = link(&client, &big_id, &backup, 900).await.0;
    let body = loop {
        let r = reqwest::get(&fresh).await.unwrap();
        if r.status() == 200 {
            break r.bytes().await.unwrap();
        }
        assert_eq!(r.status(), 503, "only a limit may refuse it");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(90), "never served");
        tokio::time::sleep(Duration::from_secs(wait)).await;
    };
    assert_eq!(body.len() as u64, size);
    assert_eq!(hex::encode(Sha256::digest(&body)), sha);
    drop(body);
    for id in [(&big_id, &first), (&other_id, &second)] {
        let record = client.wait_backup(id.0, id.1).await;
        assert_eq!(record["status"], "succeed", "{record}");
    }
    callers_stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }
    let calls = answered.load(Ordering::Relaxed);
    assert!(calls > 64, "{calls} link calls answered");
    let slowloris = trickle.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();

    drop((stalled, slowloris));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_bytes(pid);
    eprintln!(
        "abuse: baseline RSS {} MiB, peak {} MiB, after {} MiB; {calls} ListBackupFileLinks answered; honest download after {:?}",
        baseline / MIB,
        peak / MIB,
        after / MIB,
        started.elapsed()
    );
    assert!(peak < 128 * MIB, "peak RSS {} MiB", peak / MIB);
    assert!(
        after < baseline + 32 * MIB,
        "RSS after {} MiB vs baseline {} MiB",
        after / MIB,
        baseline / MIB
    );
    let health = reqwest::get(format!("{}/healthz", serve.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
