//! What one credential or project can take: changing calls per access key
//! (429 `DCS.4961` with `Retry-After`), backups and stored bytes per project
//! (`DCS.4970`, `DCS.4971`), and the time one API call may take (`DCS.4080`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Db, OTHER_AK, OTHER_SK, PROJECT, RedisServer, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_calls_are_rate_limited_per_access_key() {
    // 8 a minute in bursts of 2.
    let server = TestServer::start_with(Db::Sqlite, |c| c.mutating_calls_per_minute = 8).await;
    let path = format!("/v2/{PROJECT}/rdbvault/instances");
    let bad = r#"{"name": "x", "mode": "nope", "addrs": ["127.0.0.1:1"]}"#;
    for _ in 0..2 {
        let r = server.req("POST", &path).json(bad).send().await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    }
    let limited = server.req("POST", &path).json(bad).send().await;
    limited.assert_error(429, "DCS.4961");
    let wait: u64 = limited.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=8).contains(&wait), "{wait}");
    // Reads are not limited, nor is another access key.
    let r = server
        .req("GET", &format!("/v2/{PROJECT}/instances"))
        .send()
        .await;
    assert_eq!(r.status, 200);
    let other = format!("/v2/{}/rdbvault/instances", common::OTHER_PROJECT);
    let r = server
        .req("POST", &other)
        .signed_by(OTHER_AK, OTHER_SK)
        .json(bad)
        .send()
        .await;
    assert_ne!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    // After the wait, the key may change things again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let r = server.req("POST", &path).json(bad).send().await;
    assert_eq!(r.status, 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_holds_no_more_backups_than_its_quota() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    let server = TestServer::start_with(Db::Sqlite, |c| c.project_max_backups = 2).await;
    let instance = server.register_single(&redis.addr()).await;
    let first = server.backed_up(&instance).await;
    server.backed_up(&instance).await;
    let path = format!("/v2/{PROJECT}/instances/{instance}/backups");
    let refused = server.req("POST", &path).json("{}").send().await;
    refused.assert_error(403, "DCS.4970");
    assert!(String::from_utf8_lossy(&refused.body).contains("quota is 2"));
    // Nothing was queued; deleting a backup frees its place.
    let all = server.req("GET", &format!("{path}?limit=100")).send().await;
    assert_eq!(all.json()["total_num"], 2);
    let r = server
        .req("DELETE", &format!("{path}/{first}"))
        .send()
        .await;
    assert!(r.status < 300, "{}", String::from_utf8_lossy(&r.body));
    server.backed_up(&instance).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_stores_no_more_bytes_than_its_quota() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    let server = TestServer::start_with(Db::Sqlite, |c| c.project_max_stored_bytes = 10).await;
    let instance = server.register_single(&redis.addr()).await;
    server.backed_up(&instance).await;
    let path = format!("/v2/{PROJECT}/instances/{instance}/backups");
    let refused = server.req("POST", &path).json("{}").send().await;
    refused.assert_error(403, "DCS.4971");
    server.stop().await;
}

/// A body that trickles in (or never ends) does not hold the call open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_body_never_arrives_times_out() {
    let server = TestServer::start_with(Db::Sqlite, |c| c.request_timeout_secs = 1).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v2/{PROJECT}/rdbvault/instances HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{{\"na"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("DCS.") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("DCS.4080"), "{text}");
    assert!(start.elapsed() < Duration::from_secs(3));
    server.stop().await;
}

/// One project's backups stuck waiting for a slow snapshot do not hold
/// every worker: with several projects a project runs at most all workers
/// but one, and the other project's backup goes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_projects_stuck_backups_leave_a_worker_for_another() {
    use common::OTHER_PROJECT;
    let slow: Vec<RedisServer> = (0..2)
        .map(|_| {
            let r = RedisServer::start_fast(&[]);
            // About 20 s of snapshot before the first payload byte.
            r.slow_snapshots(2000, 10_000);
            r
        })
        .collect();
    let quick = RedisServer::start_fast(&[]);
    quick.cli(&["SET", "k", "v"]);
    let server = TestServer::start_with(Db::Sqlite, |c| c.backup_workers = 2).await;
    let mut stuck = Vec::new();
    for r in &slow {
        let instance = server.register_single(&r.addr()).await;
        stuck.push((instance.clone(), server.start_backup(&instance).await));
    }
    // The second of them stays queued: the first holds the one worker
    // this project may use.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = server.backup_record(&stuck[1].0, &stuck[1].1).await;
    assert_eq!(second["status"], "waiting", "{second}");

    let other = |method: &str, path: String| {
        let mut r = server.req(method, &path).signed_by(OTHER_AK, OTHER_SK);
        r.project_header = Some(OTHER_PROJECT.into());
        r
    };
    let r = other("POST", format!("/v2/{OTHER_PROJECT}/rdbvault/instances"))
        .json(
            &serde_json::json!({"name": "b", "mode": "single", "addrs": [quick.addr()]})
                .to_string(),
        )
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let instance = r.json()["instance_id"].as_str().unwrap().to_string();
    let r = other(
        "POST",
        format!("/v2/{OTHER_PROJECT}/instances/{instance}/backups"),
    )
    .json("{}")
    .send()
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let backup = r.json()["backup_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        let r = other(
            "GET",
            format!("/v2/{OTHER_PROJECT}/instances/{instance}/backups?limit=10"),
        )
        .send()
        .await;
        let records = r.json()["backup_record_response"].clone();
        let status = records
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backup_id"] == backup.as_str())
            .map(|b| b["status"].as_str().unwrap().to_string());
        if status.as_deref() == Some("succeed") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{records}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = server.backup_record(&stuck[0].0, &stuck[0].1).await;
    assert_eq!(first["status"], "backuping", "still stuck: {first}");
    server.stop().await;
}
