//! The web console end to end, in a real browser (Debian's Chromium driven
//! by Playwright, `tests/console/e2e.py`) against this service and real
//! redis-servers: sign in (a wrong secret refused in words), see the
//! instances, back up now and watch it reach 100 %, download a file through
//! the page (its SHA-256 checked against the record here), its key analysis,
//! register and remove an instance, restore a backup and see it on the jobs
//! page, delete a backup,
//! read a failed backup's reason, phone width, unsigned and forged calls
//! refused, sign out. Screenshots go to `target/console-screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{AK, Db, PROJECT, RedisServer, SK, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["DEBUG", "POPULATE", "5000"]);
    for (key, ttl) in [
        ("session:a", "60"),
        ("session:b", "7200"),
        ("session:c", "200000"),
    ] {
        redis.cli(&["SET", key, "v", "EX", ttl]);
    }
    let mut doomed = RedisServer::start_fast(&[]);
    let spare = RedisServer::start_fast(&[]);
    let server = TestServer::start(Db::Sqlite).await;
    let good = server
        .register(
            serde_json::json!({"name": "orders-cache", "mode": "single", "addrs": [redis.addr()]}),
        )
        .await;
    server
        .register(serde_json::json!({"name": "sessions-gone", "mode": "single", "addrs": [doomed.addr()]}))
        .await;
    doomed.kill();

    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/e2e.py");
    let run = Command::new("python3")
        .arg(&script)
        .args([
            &server.base,
            AK,
            SK,
            PROJECT,
            "orders-cache",
            "sessions-gone",
        ])
        .arg(&out)
        .arg(spare.addr())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    // The file the browser saved is the stored one, byte for byte.
    let backup = result["backup_id"].as_str().unwrap();
    let r = server
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{good}/backups/{backup}/links"),
        )
        .json(r#"{"expiration": 300}"#)
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["links"][0]["sha256"], result["sha256"]);
    // What the page deleted is deleted in the records.
    let deleted = result["deleted"].as_str().unwrap();
    let record = server.backup_record(&good, deleted).await;
    assert_eq!(record["status"], "deleted", "{record}");
    for shot in [
        "instances.png",
        "backups.png",
        "links.png",
        "failed.png",
        "instances-phone.png",
        "signin-error.png",
    ] {
        assert!(out.join(shot).metadata().unwrap().len() > 1000, "{shot}");
    }
    server.stop().await;
}
