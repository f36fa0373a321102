//! What a client can hold is bounded: connections that send half a request
//! head or nothing at all are closed, the number of connections is capped,
//! a download whose client stops reading is cut off and gives its slot back,
//! and downloads beyond their limits get 503 `SlowDown` with `Retry-After`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Db, RedisServer, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `limit` passes);
/// how long that took.
async fn time_to_close(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf))
            .await
        {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

async fn healthy(server: &TestServer) -> bool {
    reqwest::get(format!("{}/healthz", server.base))
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_heads_and_silent_connections_are_closed() {
    let server = TestServer::start_with(Db::Sqlite, |c| {
        c.header_read_timeout_secs = 2;
        c.idle_timeout_secs = 3;
    })
    .await;

    // Slowloris: a head that never ends, one header line every 500 ms.
    let mut slow = TcpStream::connect(addr(&server)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if slow
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let start = Instant::now();
    trickle.await;
    let mut buf = [0u8; 64];
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(2), slow.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    );
    assert!(
        closed,
        "a head trickling in is still being read after {:?}",
        start.elapsed()
    );

    // A connection that sends nothing, and one idle after a request.
    let mut silent = TcpStream::connect(addr(&server)).await.unwrap();
    let took = time_to_close(&mut silent, Duration::from_secs(8)).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    let mut kept = TcpStream::connect(addr(&server)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 17];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK\r\n");
    let took = time_to_close(&mut kept, Duration::from_secs(8)).await;
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert!(healthy(&server).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let server = TestServer::start_with(Db::Sqlite, |c| {
        c.max_connections = 8;
        c.header_read_timeout_secs = 30;
        c.idle_timeout_secs = 30;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(addr(&server)).await.unwrap());
    }
    // Let the server take all eight before the ninth comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ninth = TcpStream::connect(addr(&server)).await.unwrap();
    let took = time_to_close(&mut ninth, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(healthy(&server).await, "slots came back");
    server.stop().await;
}

/// A link valid for `secs`: links asked within one second for the same
/// time are the same link.
async fn link(server: &TestServer, instance: &str, backup: &str, secs: u32) -> (String, u64) {
    let item = server.first_link(instance, backup, secs).await;
    (
        item["link"].as_str().unwrap().to_string(),
        item["size"].as_u64().unwrap(),
    )
}

/// Opens a download on a raw connection and reads only its status line:
/// a client that then stops reading.
async fn stalled_download(server: &TestServer, link: &str) -> TcpStream {
    let path = link.strip_prefix(&server.base).unwrap();
    let mut stream = TcpStream::connect(addr(server)).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    stream
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server.get_text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_is_cut_off_and_limits_answer_slow_down() {
    // Big enough that it cannot all sit in the sockets' buffers.
    let redis = RedisServer::start_fast(&["--rdbcompression", "no"]);
    redis.cli(&["DEBUG", "POPULATE", "40000", "k", "1000"]);
    let server = TestServer::start_with(Db::Sqlite, |c| {
        c.download_idle_timeout_secs = 2;
        c.max_downloads_per_link = 1;
        c.max_downloads_per_client = 2;
    })
    .await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.backed_up(&instance).await;
    let (first, size) = link(&server, &instance, &backup, 3600).await;
    assert!(size > 30_000_000, "{size}");

    let stalled = stalled_download(&server, &first).await;
    assert_eq!(metric(&server, "rdbvault_downloads_running").await, 1.0);
    // The same link again: its one slot is taken.
    let busy = reqwest::get(&first).await.unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    assert!(busy.text().await.unwrap().contains("<Code>SlowDown</Code>"));
    // Another link, and a third from the same client: the client's limit.
    let (second, _) = link(&server, &instance, &backup, 3601).await;
    let (third, _) = link(&server, &instance, &backup, 3602).await;
    let other = stalled_download(&server, &second).await;
    let refused = reqwest::get(&third).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("max_downloads_per_client")
    );
    assert!(metric(&server, "rdbvault_downloads_refused_total").await >= 2.0);

    // The stalled clients are cut off after the idle timeout; their
    // slots come back, and the link downloads whole.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(metric(&server, "rdbvault_downloads_running").await, 0.0);
    let whole = reqwest::get(&first).await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap().len() as u64, size);
    drop((stalled, other));
    server.stop().await;
}

/// What the HTTP parser itself refuses is answered with the DCS error
/// body too, and the connections after it are served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_http_parser_refuses_get_the_dcs_error_body() {
    let server = TestServer::start(Db::Sqlite).await;
    let cases: [(&[u8], &str, &str); 5] = [
        (b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", "400", "DCS.4000"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
            "400",
            "DCS.4000",
        ),
        (
            b"GET /healthz HTTP/9.1\r\nHost: x\r\n\r\n",
            "400",
            "DCS.4000",
        ),
        (
            &[
                b"GET /".as_slice(),
                &[b'a'; 70_000],
                b" HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
            .concat(),
            "414",
            "DCS.4014",
        ),
        (
            &[
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: ".as_slice(),
                &[b'a'; 500_000],
                b"\r\n\r\n",
            ]
            .concat(),
            "431",
            "DCS.4031",
        ),
    ];
    for (request, status, code) in cases {
        let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
        // A server may answer before it has read everything sent.
        let _ = stream.write_all(request).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        assert!(text.contains("content-type: application/json"), "{text}");
        let body: serde_json::Value =
            serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["error_code"], code, "{text}");
        assert!(body["error_msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The router's own errors are untouched; good requests are served.
    let r = server.req("GET", "/nope").send().await;
    r.assert_error(404, "DCS.4001");
    assert!(healthy(&server).await);
    server.stop().await;
}
