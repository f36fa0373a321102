//! ListBackupFileLinks under load, and download throughput through a link.
//!
//! 1. Requests per second and p99 latency of ListBackupFileLinks (signature
//!    checked on every request) with 64 concurrent keep-alive connections,
//!    next to the same load on `/healthz` of the same server (the baseline).
//! 2. A 1 GiB backup file downloaded through its link with curl, next to
//!    `cat` of the same file to /dev/null (both from the page cache).
//!
//! `cargo bench -p rdbvault --bench links` (`RDBVAULT_BENCH_MB` resizes the file)

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fill_random, serve, start_redis};
use rdbvault::auth::signature;
use rdbvault::cli::client::{Client, ClientConfig};

const AK: &str = "BENCHAK0000000000000";
const SK: &str = "bench-secret-key-0123456789abcdefghijklm";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const CONNECTIONS: usize = 64;
const LOAD_SECS: u64 = 5;

#[tokio::main]
async fn main() {
    let mb: u64 = std::env::var("RDBVAULT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let work = tempfile::tempdir().expect("tempdir");
    let (mut redis, port) = start_redis(work.path(), &[]);
    fill_random(port, mb * 1024 * 1024);
    let data = work.path().join("data");
    let (mut server, base) = serve(&data, AK, SK, PROJECT);
    let client = Client::new(ClientConfig {
        endpoint: Some(base.clone()),
        ak: Some(AK.into()),
        sk: Some(SK.into()),
        project_id: Some(PROJECT.into()),
        ca_file: None,
    })
    .expect("client");
    let body = serde_json::json!({"name": "bench", "mode": "single", "addrs": [format!("127.0.0.1:{port}")]});
    let reg: serde_json::Value = client
        .call_json(
            reqwest::Method::POST,
            &client.project_path("rdbvault/instances"),
            "",
            Some(&body),
        )
        .await
        .expect("register");
    let instance = reg["instance_id"].as_str().expect("id").to_string();
    let backups = client.project_path(&format!("instances/{instance}/backups"));
    let created: serde_json::Value = client
        .call_json(
            reqwest::Method::POST,
            &backups,
            "",
            Some(&serde_json::json!({})),
        )
        .await
        .expect("backup");
    let backup = created["backup_id"].as_str().expect("id").to_string();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let list: serde_json::Value = client
            .call_json(reqwest::Method::GET, &backups, "limit=1", None)
            .await
            .expect("list");
        match list["backup_record_response"][0]["status"].as_str() {
            Some("succeed") => break,
            Some("waiting" | "backuping") => continue,
            other => panic!("backup ended {other:?}"),
        }
    }

    // 1. Links under load vs the trivial endpoint, same server, same run.
    let links_path = client.project_path(&format!("instances/{instance}/backups/{backup}/links"));
    let links_req = signed_request(&base, &links_path, br#"{"expiration": 3600}"#);
    let health_req = Signed {
        url: format!("{base}/healthz"),
        headers: Vec::new(),
        body: None,
    };
    let (health_rps, health_p99) = load(&health_req).await;
    let (links_rps, links_p99) = load(&links_req).await;
    println!(
        "ListBackupFileLinks: {links_rps:.0} req/s, p99 {:.2} ms; /healthz: {health_rps:.0} req/s, p99 {:.2} ms; \
         ratio {:.2} (target >= 0.50, p99 < 10 ms; {CONNECTIONS} connections)",
        links_p99 * 1e3,
        health_p99 * 1e3,
        links_rps / health_rps
    );

    // 2. Download through the link vs cat.
    let answer: serde_json::Value = client
        .call_json(
            reqwest::Method::POST,
            &links_path,
            "",
            Some(&serde_json::json!({"expiration": 3600})),
        )
        .await
        .expect("links");
    let link = answer["links"][0]["link"]
        .as_str()
        .expect("link")
        .to_string();
    let file = std::fs::read_dir(data.join("objects").join(&instance).join(&backup))
        .expect("backup dir")
        .next()
        .expect("a file")
        .expect("entry")
        .path();
    let size = std::fs::metadata(&file).expect("stat").len();
    let time = |cmd: &mut Command| {
        let t = Instant::now();
        assert!(cmd.stdout(Stdio::null()).status().expect("run").success());
        t.elapsed().as_secs_f64()
    };
    let cat_cmd = || {
        let mut c = Command::new("cat");
        c.arg(&file);
        c
    };
    let curl_cmd = || {
        let mut c = Command::new("curl");
        c.args(["-s", "-f", "-o", "/dev/null", &link]);
        c
    };
    let gbps = |s: f64| size as f64 / s / 1e9;
    // Cold: both read the disk, as a download of an old backup does
    // (needs root for drop_caches; skipped with a note otherwise).
    let best = |cmd: &dyn Fn() -> Command, cold: bool| {
        (0..3)
            .map(|_| {
                if cold {
                    drop_caches();
                }
                time(&mut cmd())
            })
            .fold(f64::INFINITY, f64::min)
    };
    if drop_caches() {
        let (cat, curl) = (best(&cat_cmd, true), best(&curl_cmd, true));
        println!(
            "download of {:.2} GiB from disk (caches dropped): through the link {:.2} GB/s; cat {:.2} GB/s; ratio {:.2} (target >= 0.80)",
            size as f64 / (1u64 << 30) as f64,
            gbps(curl),
            gbps(cat),
            cat / curl
        );
    } else {
        println!("download from disk: not measured (dropping the page cache needs root)");
    }
    let (cat, curl) = (best(&cat_cmd, false), best(&curl_cmd, false));
    println!(
        "download of {:.2} GiB from the page cache: through the link {:.2} GB/s; cat {:.2} GB/s; ratio {:.2} (memory copy vs loopback HTTP)",
        size as f64 / (1u64 << 30) as f64,
        gbps(curl),
        gbps(cat),
        cat / curl
    );
    for child in [&mut server, &mut redis] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Empties the page cache; false when not allowed.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

struct Signed {
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

/// One request signed once: X-Sdk-Date stays valid for 15 minutes, so the
/// load replays it and the server still verifies every copy.
fn signed_request(base: &str, path: &str, body: &[u8]) -> Signed {
    let host = base.trim_start_matches("http://").to_string();
    let date = chrono::Utc::now()
        .format(signature::DATE_FORMAT)
        .to_string();
    let mut headers = vec![
        (
            "content-type".to_string(),
            "application/json;charset=utf-8".to_string(),
        ),
        ("host".to_string(), host),
        ("user-agent".to_string(), "rdbvault-bench".to_string()),
        ("x-project-id".to_string(), PROJECT.to_string()),
        ("x-sdk-date".to_string(), date.clone()),
    ];
    let auth = signature::Request {
        method: "POST",
        path,
        query: "",
        headers: headers.clone(),
        body,
    }
    .authorization(AK, SK, &date);
    headers.push(("authorization".into(), auth));
    Signed {
        url: format!("{base}{path}"),
        headers,
        body: Some(body.to_vec()),
    }
}

/// Requests per second and p99 latency (seconds) over `LOAD_SECS`.
async fn load(req: &Signed) -> (f64, f64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .expect("client");
    let req = Arc::new((req.url.clone(), req.headers.clone(), req.body.clone()));
    let deadline = Instant::now() + Duration::from_secs(LOAD_SECS);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, req) = (client.clone(), req.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let mut r = match &req.2 {
                        Some(body) => client.post(&req.0).body(body.clone()),
                        None => client.get(&req.0),
                    };
                    for (n, v) in &req.1 {
                        r = r.header(n, v);
                    }
                    let resp = r.send().await.expect("request");
                    assert!(resp.status().is_success(), "{}", resp.status());
                    let _ = resp.bytes().await;
                    latencies.push(t.elapsed().as_secs_f64());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let p99 = all[((all.len() as f64) * 0.99) as usize];
    (all.len() as f64 / elapsed, p99)
}
