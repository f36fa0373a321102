//! Several `rdbvault serve` processes on one PostgreSQL and one S3 store
//! form one service: any node answers any call, each job runs on exactly
//! one node, a killed node's job is failed and cleaned by another within
//! its lease, links verify on every node, and a local store is not shared
//! by accident.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Db, PROJECT, RedisServer, S3Server, ServeProcess, TestServer, shared_pg, wait_for};
use serde_json::Value;

/// The lease of these tests' jobs: short, so a dead node is noticed soon.
const LEASE_SECS: u64 = 6;

/// A node of the fleet: every node is given the same master key file (the
/// first to start generates it), as the README tells operators to do.
fn node(dir: &std::path::Path, db: &str, s3: &S3Server, key: &std::path::Path) -> ServeProcess {
    let extra = format!(
        "database_url = \"{db}\"\njob_lease_secs = {LEASE_SECS}\nmaster_key_file = \"{}\"\n{}",
        key.display(),
        s3.toml()
    );
    ServeProcess::start_configured(dir, &[], &extra)
}

async fn backups_of(node: &TestServer, instance: &str) -> Vec<Value> {
    let r = node
        .req(
            "GET",
            &format!("/v2/{PROJECT}/instances/{instance}/backups?limit=1000"),
        )
        .send()
        .await;
    assert_eq!(r.status, 200);
    r.json()["backup_record_response"]
        .as_array()
        .unwrap()
        .clone()
}

async fn job_rows(db: &str) -> Vec<(String, String, i64)> {
    let pool = sqlx::PgPool::connect(db).await.unwrap();
    sqlx::query_as("SELECT target_id, COALESCE(owner, ''), attempts FROM jobs")
        .fetch_all(&pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_run_every_backup_once_and_take_over_a_dead_nodes_job() {
    let db = shared_pg().await;
    let s3 = S3Server::start();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let key = dirs[0].path().join("fleet.key");
    let mut nodes: Vec<ServeProcess> = dirs
        .iter()
        .map(|d| node(d.path(), &db, &s3, &key))
        .collect();
    let clients: Vec<TestServer> = nodes.iter().map(ServeProcess::client).collect();

    let redis: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_fast(&[])).collect();
    let mut instances = Vec::new();
    for (i, r) in redis.iter().enumerate() {
        r.cli(&["SET", "k", &i.to_string()]);
        instances.push(clients[i].register_single(&r.addr()).await);
    }

    // 30 backups, asked of the nodes round-robin, 3 instances at a time.
    let mut asked = Vec::new();
    for round in 0..10 {
        let mut batch = Vec::new();
        for (i, instance) in instances.iter().enumerate() {
            let via = &clients[(round + i) % 3];
            batch.push((instance.clone(), via.start_backup(instance).await));
        }
        for (instance, backup) in &batch {
            let other = &clients[(round + 1) % 3];
            let record = other.wait_backup(instance, backup).await;
            assert_eq!(record["status"], "succeed", "{record}");
        }
        asked.extend(batch);
    }
    let jobs = job_rows(&db).await;
    assert_eq!(jobs.len(), 30, "{jobs:?}");
    assert!(
        jobs.iter().all(|(_, _, attempts)| *attempts == 1),
        "a job ran twice: {jobs:?}"
    );
    let owners: std::collections::BTreeSet<_> = jobs.iter().map(|(_, o, _)| o.clone()).collect();
    eprintln!("jobs ran on {} node(s)", owners.len());
    // Every node lists the same records.
    for instance in &instances {
        let lists: Vec<Vec<Value>> =
            futures::future::join_all(clients.iter().map(|c| backups_of(c, instance))).await;
        assert_eq!(lists[0].len(), 10);
        assert!(lists.iter().all(|l| l == &lists[0]));
    }
    // A link from node 0 downloads the same bytes whichever node is asked.
    let (instance, backup) = &asked[0];
    for client in &clients {
        let r = client
            .req(
                "POST",
                &format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}/links"),
            )
            .json(r#"{"expiration": 300}"#)
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let link = r.json()["links"][0]["link"].as_str().unwrap().to_string();
        let body = reqwest::get(&link).await.unwrap();
        assert!(body.status().is_success());
        assert!(body.bytes().await.unwrap().starts_with(b"REDIS"));
    }

    // A node dies in the middle of a backup: another fails and cleans it
    // within the lease, and the instance can be backed up again.
    let slow = &redis[0];
    slow.slow_snapshots(20_000, 1000);
    let backup = clients[1].start_backup(&instances[0]).await;
    let owner = wait_for("the job's owner", Duration::from_secs(30), || async {
        job_rows(&db)
            .await
            .into_iter()
            .find(|(target, owner, _)| target == &backup && !owner.is_empty())
            .map(|(_, owner, _)| owner)
    })
    .await;
    clients[0]
        .wait_backup_transferring(&instances[0], &backup)
        .await;
    let dead = dirs
        .iter()
        .position(|d| {
            std::fs::read_to_string(d.path().join("node_id")).is_ok_and(|id| id.trim() == owner)
        })
        .expect("the owner is one of the nodes");
    nodes[dead].kill9();
    let alive = &clients[(dead + 1) % 3];
    let started = std::time::Instant::now();
    let record = alive.wait_backup(&instances[0], &backup).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0108", "{record}");
    assert!(
        started.elapsed() < Duration::from_secs(LEASE_SECS * 3),
        "taken over after {:?}",
        started.elapsed()
    );
    wait_for(
        "the dead node's upload aborted",
        Duration::from_secs(30),
        || async { s3.leftovers().is_empty().then_some(()) },
    )
    .await;
    slow.cli(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    let again = alive.start_backup(&instances[0]).await;
    assert_eq!(
        alive.wait_backup(&instances[0], &again).await["status"],
        "succeed"
    );
}

/// Two nodes on one metadata store, each with its own local store: the
/// second is refused at start, saying why — even when it declares its own
/// `data_dir` shared, since the first node's is not. (Nodes that all declare
/// it start: `tests/schedule.rs` runs two.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_store_is_not_shared_by_accident() {
    let db = shared_pg().await;
    let first = TestServer::start_with(Db::Sqlite, |c| c.database_url = Some(db.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("second.toml");
    // Given the fleet's master key, so that the store is what it is refused for.
    let key = first.config.master_key_path();
    let key = format!("master_key_file = \"{}\"\n", key.display());
    std::fs::write(&config, format!("database_url = \"{db}\"\n{key}")).unwrap();
    let out = common::serve_config_output(&config, dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a local store cannot be shared") && err.contains("shared_data_dir"),
        "{err}"
    );
    std::fs::write(
        &config,
        format!("database_url = \"{db}\"\nshared_data_dir = true\n{key}"),
    )
    .unwrap();
    let out = common::serve_config_output(&config, dir.path());
    assert!(
        !out.status.success(),
        "the first node's store is still unshared"
    );
    first.stop().await;
}

/// Two nodes sharing one PostgreSQL and one `data_dir` (declared shared):
/// a download link signed by one node is served by the other, whose link
/// keys come from the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_signed_by_one_node_downloads_from_another() {
    let db = shared_pg().await;
    let shared = tempfile::tempdir().unwrap();
    let on = |id: &'static str| {
        let (db, dir) = (db.clone(), shared.path().to_path_buf());
        move |c: &mut rdbvault::config::Config| {
            c.database_url = Some(db);
            c.data_dir = dir;
            c.shared_data_dir = true;
            c.node_id = Some(id.into());
        }
    };
    let a = TestServer::start_with(Db::Sqlite, on("node-a")).await;
    let b = TestServer::start_with(Db::Sqlite, on("node-b")).await;
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    let instance = a.register_single(&redis.addr()).await;
    let backup = a.backed_up(&instance).await;
    let r = a
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}/links"),
        )
        .json(r#"{"expiration": 300}"#)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let link = r.json()["links"][0]["link"].as_str().unwrap().to_string();
    assert!(link.starts_with(&a.base), "{link}");
    let via_b = link.replacen(&a.base, &b.base, 1);
    let got = reqwest::get(&via_b).await.unwrap();
    assert_eq!(got.status(), 200);
    let bytes = got.bytes().await.unwrap();
    let files = common::all_files(&shared.path().join("objects").join(&instance).join(&backup));
    assert_eq!(files.len(), 1, "{files:?}");
    let stored = std::fs::read(&files[0]).unwrap();
    assert_eq!(bytes.as_ref(), stored.as_slice());
    // A tampered signature is refused there too.
    let tampered = via_b.replace("Signature=", "Signature=x");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
    b.stop().await;
    a.stop().await;
}
