//! `rdbvault store sweep`: objects no record owns are listed (the local
//! store and S3), deleted only with `--delete`, and the backups' own files
//! are never touched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Db, RedisServer, TestServer, wait_for};

local_and_s3!(orphans_are_listed_and_deleted_only_when_asked);

/// `rdbvault store sweep` with the server's own configuration.
fn sweep(server: &TestServer, args: &[&str]) -> serde_json::Value {
    let c = &server.config;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rdbvault"));
    cmd.args(["--json", "store", "sweep"])
        .args(args)
        .env("RDBVAULT_DATA_DIR", &c.data_dir)
        .env("RDBVAULT_STORAGE", c.storage.as_str())
        .env("RDBVAULT_BUCKET", &c.bucket)
        .env("RDBVAULT_LOG", "warn");
    if let Some(url) = &c.database_url {
        cmd.env("RDBVAULT_DATABASE_URL", url);
    }
    if c.storage == rdbvault::config::StorageKind::S3 {
        cmd.env("RDBVAULT_S3__ENDPOINT", &c.s3.endpoint)
            .env("RDBVAULT_S3__ACCESS_KEY", &c.s3.access_key)
            .env(
                "RDBVAULT_S3__SECRET_KEY",
                c.s3.secret_key.clone().unwrap_or_default(),
            )
            .env("RDBVAULT_S3__PREFIX", &c.s3.prefix)
            .env("RDBVAULT_S3__PATH_STYLE", "true");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn orphans_are_listed_and_deleted_only_when_asked(db: Db) {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    // Every node's own sweep reports them each second here.
    let server = TestServer::start_with(db, |c| c.sweep_interval_secs = 1).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.backed_up(&instance).await;
    let kept = server.stored_files(&instance, &backup);
    assert_eq!(kept.len(), 1);
    assert!(
        sweep(&server, &[])["orphans"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A file nobody recorded, beside the backups (a copy by hand, a crash).
    let stray_dir = server.objects_root().join(&instance).join("not-a-backup");
    std::fs::create_dir_all(&stray_dir).unwrap();
    std::fs::write(stray_dir.join("stray.rdb"), b"REDIS0011 stray").unwrap();
    let found = sweep(&server, &[]);
    let orphans = found["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{found}");
    assert_eq!(
        orphans[0]["key"],
        format!("{instance}/not-a-backup/stray.rdb")
    );
    assert_eq!(orphans[0]["size"], 15);
    assert!(found["deleted"].is_null());
    assert!(stray_dir.join("stray.rdb").exists(), "listed, not deleted");
    let gauge = |n: u32| format!("rdbvault_store_orphaned_objects {n}\n");
    wait_for(
        "the node's sweep to report it",
        Duration::from_secs(20),
        || async {
            let text = server.get_text("/metrics").await;
            (text.contains(&gauge(1)) && text.contains("rdbvault_store_orphaned_bytes 15\n"))
                .then_some(())
        },
    )
    .await;

    let swept = sweep(&server, &["--delete"]);
    assert_eq!(swept["deleted"], 1, "{swept}");
    assert!(!stray_dir.join("stray.rdb").exists());
    assert!(kept[0].exists(), "the backup's own file was touched");
    assert!(
        sweep(&server, &[])["orphans"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    wait_for("the report to clear", Duration::from_secs(20), || async {
        server
            .get_text("/metrics")
            .await
            .contains(&gauge(0))
            .then_some(())
    })
    .await;
    server.stop().await;
}
