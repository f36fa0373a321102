//! The job model across nodes: a node that dies mid-job (its heartbeat
//! stops) has its job recovered by another, running node — not only when it
//! restarts — and `/metrics` shows jobs and background tasks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Db, PROJECT, TestServer};
use rdbvault::meta::{Meta, Mode, NewBackup, NewInstance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_job_is_recovered_by_a_live_node() {
    // Another node ("dead-node") claimed a backup and started it, then died.
    let shared = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        shared.path().join("meta.db").display()
    );
    // The node below shares this database and so its master key file.
    let key = shared.path().join("master.key");
    let node = rdbvault::config::Config {
        database_url: Some(url.clone()),
        master_key_file: Some(key.clone()),
        ..Default::default()
    };
    let meta = Meta::open(&node).await.unwrap();
    let instance = meta
        .insert_instance(NewInstance {
            project_id: PROJECT.into(),
            name: "gone".into(),
            mode: Mode::Single,
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
            username: None,
            password: None,
            tls: false,
        })
        .await
        .unwrap();
    let backup = meta
        .create_backup(NewBackup {
            instance_id: instance.id.clone(),
            project_id: PROJECT.into(),
            backup_type: "manual".into(),
            backup_format: "rdb".into(),
            remark: None,
            period: None,
            due: None,
        })
        .await
        .unwrap();
    let job = meta
        .claim_job("dead-node", 0)
        .await
        .unwrap()
        .expect("queued");
    assert_eq!(job.target_id, backup.id);
    assert!(
        meta.start_backup(&backup.id, "127.0.0.1:1 (master)", None)
            .await
            .unwrap()
    );

    // This node starts while the dead one's heartbeat is still fresh: the
    // job is not its own, so it leaves it alone...
    let server = TestServer::start_with(Db::Sqlite, |c| {
        c.database_url = Some(url.clone());
        c.master_key_file = Some(key);
    })
    .await;
    let record = server.backup_record(&instance.id, &backup.id).await;
    assert_eq!(record["status"], "backuping", "{record}");

    // ...until the heartbeat is older than the staleness bound.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE jobs SET heartbeat_at = 0 WHERE id = ?")
        .bind(&job.id)
        .execute(&pool)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let record = loop {
        let record = server.backup_record(&instance.id, &backup.id).await;
        if record["status"] != "backuping" {
            break record;
        }
        assert!(Instant::now() < deadline, "never recovered: {record}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0108", "{record}");
    let (state,): (String,) = sqlx::query_as("SELECT state FROM jobs WHERE id = ?")
        .bind(&job.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "failed");

    // /metrics: the job counts and this node's background tasks.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = server.get_text("/metrics").await;
        let failed_jobs = text.contains(r#"rdbvault_jobs{kind="backup",state="failed"} 1"#);
        let tasks = ["job-worker-0", "upload-sweep", "job-recovery", "link-keys"]
            .iter()
            .all(|t| text.contains(&format!(r#"rdbvault_background_task_busy{{task="{t}"}}"#)));
        let recovery_ran =
            text.contains(r#"rdbvault_background_task_failures{task="job-recovery"} 0"#);
        if failed_jobs && tasks && recovery_ran {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed it:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    server.stop().await;
}
