//! Hostile peers cost bounded resources: a "Redis" that answers with huge
//! replies is refused after their first line, not read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Db, PROJECT, TestServer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server answering every command with a 64 MiB bulk string, counting
/// the bytes it manages to hand over.
async fn huge_replier(sent: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if sock.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                if sock.write_all(b"$67108864\r\n").await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 1 << 16];
                for _ in 0..1024 {
                    if sock.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_info_replies_are_refused_unread() {
    let sent = Arc::new(AtomicU64::new(0));
    let addr = huge_replier(sent.clone()).await;
    let server = TestServer::start(Db::Sqlite).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            server
                .register(json!({"name": format!("hostile-{i}"), "mode": "single", "addrs": [addr], "verify": false}))
                .await,
        );
    }
    let started = Instant::now();
    let r = server
        .req("GET", &format!("/v2/{PROJECT}/instances"))
        .send()
        .await;
    assert_eq!(r.status, 200);
    let listed = r.json();
    assert!(
        listed["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "ERROR"),
        "{listed}"
    );
    let shown = server.show_instance(&ids[0]).await;
    assert_eq!(shown["status"], "ERROR", "{shown}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Five probes of 64 MiB each were offered; what the kernel buffered
    // before the connections closed is all that left the fake.
    let total = sent.load(Ordering::Relaxed);
    assert!(total < 5 * (8 << 20), "{total} bytes were read");
    server.stop().await;
}

/// Nodes that accept connections and never answer: the probes of one call
/// share a time budget (three probe timeouts), so a page of 256 silent
/// instances (4 rounds of 64 probes, 2 s) is answered within it, the
/// instances not probed in time shown `ERROR` and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_nodes_cannot_hold_a_listing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    // 256 registrations in a row are more than the default rate of changing
    // calls allows (tests/quotas.rs tests that limit).
    let server = TestServer::start_with(Db::Sqlite, |c| {
        c.probe_timeout_ms = 500;
        c.mutating_calls_per_minute = 0;
    })
    .await;
    for i in 0..256 {
        server
            .register(json!({"name": format!("silent-{i}"), "mode": "single", "addrs": [addr], "verify": false}))
            .await;
    }
    let started = Instant::now();
    let r = server
        .req("GET", &format!("/v2/{PROJECT}/instances?limit=1000"))
        .send()
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    let listed = r.json();
    let all = listed["instances"].as_array().unwrap();
    assert_eq!(all.len(), 256);
    assert!(all.iter().all(|i| i["status"] == "ERROR"));
    let out_of_time = all
        .iter()
        .filter(|i| {
            i["status_detail"]
                .as_str()
                .unwrap_or("")
                .contains("time budget")
        })
        .count();
    assert!(out_of_time >= 64, "{out_of_time} not probed in time");
    assert!(took < Duration::from_millis(1900), "{took:?}");
    server.stop().await;
}
