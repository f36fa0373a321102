//! Backups of Redis as operators run it: every release this machine runs
//! (6.2, 7.0, 8.2) on its default configuration — diskless sync delayed 5 s
//! on 7.0+, disk-based on 6.2, save points that fork — in each mode, and
//! while the master is busy with another child (a `BGSAVE`, a
//! `BGREWRITEAOF`, another replica's sync) or serves two backups at once.
//! In every one of these the master keeps our `PSYNC` waiting with bare
//! `\n` keep-alives before it forks; each backup must still succeed, its
//! files proven by `DEBUG DIGEST` on a server of the same release.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    Db, RedisCluster, RedisServer, Release, TestServer, fill_all_types, slot_label, wait_for,
};
use serde_json::{Value, json};

per_release!(
    single_on_defaults,
    ha_on_defaults,
    cluster_on_defaults,
    while_a_bgsave_runs,
    while_an_aof_rewrite_runs,
    while_another_replica_syncs,
    two_backups_of_one_node_at_once,
);

/// Waits for the backup to end; returns its record and every stage seen.
async fn watch(server: &TestServer, instance: &str, backup: &str) -> (Value, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut stages: Vec<String> = Vec::new();
    loop {
        let record = server.backup_record(instance, backup).await;
        if let Some(stage) = record["stage"].as_str()
            && stages.last().map(String::as_str) != Some(stage)
        {
            stages.push(stage.to_string());
        }
        if matches!(
            record["status"].as_str(),
            Some("succeed" | "failed" | "deleted")
        ) {
            return (record, stages);
        }
        assert!(Instant::now() < deadline, "backup stuck: {record}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The backup succeeded and its one file holds exactly `source`'s data.
async fn assert_snapshot_of(
    server: &TestServer,
    instance: &str,
    backup: &str,
    source: &RedisServer,
) {
    let record = server.backup_record(instance, backup).await;
    assert_eq!(
        record["status"], "succeed",
        "{:?}: {record}",
        source.release
    );
    assert_eq!(record["progress"], "100.00");
    assert!(record["stage"].is_null(), "{record}");
    let files = server.stored_files(instance, backup);
    assert_eq!(files.len(), 1, "{files:?}");
    let loaded = RedisServer::load_release(source.release, &files[0]);
    assert_eq!(
        loaded.digest().await,
        source.digest().await,
        "{:?}",
        source.release
    );
}

/// Keys enough that a child with `rdb-key-save-delay` 200 µs runs ~3 s.
fn make_forks_slow(redis: &RedisServer) {
    redis.slow_snapshots(15_000, 200);
}

fn info(redis: &RedisServer, section: &str) -> String {
    redis.cli(&["INFO", section])
}

async fn single_on_defaults(release: Release) {
    let redis = RedisServer::start_release(release, &[]);
    fill_all_types(&redis).await;
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.start_backup(&instance).await;
    let (record, stages) = watch(&server, &instance, &backup).await;
    assert_eq!(record["status"], "succeed", "{record}");
    if release != Release::V6_2 {
        // The 5 s repl-diskless-sync-delay is seen, and said, while it lasts.
        assert!(
            stages.iter().any(|s| s == "waiting for the fork"),
            "{stages:?}"
        );
    }
    assert_snapshot_of(&server, &instance, &backup, &redis).await;
    server.stop().await;
}

async fn ha_on_defaults(release: Release) {
    let master = RedisServer::start_release(release, &[]);
    fill_all_types(&master).await;
    let replica = RedisServer::start_release(
        release,
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
    );
    let digest = master.digest().await;
    replica.wait_master_link(true).await;
    assert_eq!(replica.digest().await, digest);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server
        .register(json!({"name": "ha", "mode": "ha", "addrs": [master.addr(), replica.addr()]}))
        .await;
    let backup = server.start_backup(&instance).await;
    let (record, _) = watch(&server, &instance, &backup).await;
    assert_eq!(
        record["source_node"],
        format!("{} (replica)", replica.addr()),
        "{record}"
    );
    assert_snapshot_of(&server, &instance, &backup, &master).await;
    server.stop().await;
}

async fn cluster_on_defaults(release: Release) {
    let cluster = RedisCluster::start_release(release, 3, 1);
    cluster.fill(2000).await;
    cluster.wait_ok();
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server
        .register(json!({"name": "c", "mode": "cluster", "addrs": [cluster.seed()]}))
        .await;
    let backup = server.start_backup(&instance).await;
    let (record, _) = watch(&server, &instance, &backup).await;
    assert_eq!(record["status"], "succeed", "{record}");
    let files = server.stored_files(&instance, &backup);
    assert_eq!(files.len(), 3, "{files:?}");
    for (master, slots) in cluster.masters() {
        let label = slot_label(&slots);
        let file = files
            .iter()
            .find(|f| f.to_string_lossy().contains(&format!("_{label}_")))
            .unwrap_or_else(|| panic!("no file for slots {label}: {files:?}"));
        let loaded = RedisServer::load_release(release, file);
        assert_eq!(
            loaded.digest().await,
            master.digest().await,
            "shard {label}"
        );
    }
    server.stop().await;
}

async fn while_a_bgsave_runs(release: Release) {
    while_a_child_runs(release, "BGSAVE", "rdb_bgsave_in_progress:1").await;
}

async fn while_an_aof_rewrite_runs(release: Release) {
    while_a_child_runs(release, "BGREWRITEAOF", "aof_rewrite_in_progress:1").await;
}

/// `command` forks a slow child of the master's persistence (`running` in
/// `INFO persistence` while it lasts); a backup started meanwhile waits for
/// it to end before the master forks for us.
async fn while_a_child_runs(release: Release, command: &str, running: &str) {
    let redis = RedisServer::start_release(release, &[]);
    make_forks_slow(&redis);
    assert!(redis.cli(&[command]).contains("started"));
    // The child keeps its delay; the backup's own fork needs none.
    redis.cli(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.start_backup(&instance).await;
    assert!(
        info(&redis, "persistence").contains(running),
        "{command} ended before the backup started"
    );
    watch(&server, &instance, &backup).await;
    assert_snapshot_of(&server, &instance, &backup, &redis).await;
    server.stop().await;
}

async fn while_another_replica_syncs(release: Release) {
    let master = RedisServer::start_release(release, &[]);
    make_forks_slow(&master);
    let replica = RedisServer::start_release(
        release,
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
    );
    // The replica's full sync is under way (its fork runs with the delay).
    wait_for(
        "the replica's sync to fork",
        Duration::from_secs(60),
        || async {
            info(&master, "persistence")
                .contains("rdb_bgsave_in_progress:1")
                .then_some(())
        },
    )
    .await;
    master.cli(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&master.addr()).await;
    let backup = server.start_backup(&instance).await;
    assert!(
        !info(&replica, "replication").contains("master_link_status:up"),
        "the replica finished syncing before the backup started"
    );
    watch(&server, &instance, &backup).await;
    assert_snapshot_of(&server, &instance, &backup, &master).await;
    server.stop().await;
}

async fn two_backups_of_one_node_at_once(release: Release) {
    let redis = RedisServer::start_release(release, &[]);
    fill_all_types(&redis).await;
    let server = TestServer::start(Db::Sqlite).await;
    let first = server.register_single(&redis.addr()).await;
    let second = server.register_single(&redis.addr()).await;
    let a = server.start_backup(&first).await;
    let b = server.start_backup(&second).await;
    let ((ra, _), (rb, _)) = tokio::join!(watch(&server, &first, &a), watch(&server, &second, &b));
    assert_eq!(ra["status"], "succeed", "{ra}");
    assert_eq!(rb["status"], "succeed", "{rb}");
    assert_snapshot_of(&server, &first, &a, &redis).await;
    assert_snapshot_of(&server, &second, &b, &redis).await;
    server.stop().await;
}

/// `repl-diskless-sync-max-replicas` (7.0+): the master forks as soon as
/// that many replicas wait, before its delay is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_diskless_sync_max_replicas_1() {
    for release in [Release::V7_0, Release::V8_2] {
        let redis =
            RedisServer::start_release(release, &["--repl-diskless-sync-max-replicas", "1"]);
        fill_all_types(&redis).await;
        let server = TestServer::start(Db::Sqlite).await;
        let instance = server.register_single(&redis.addr()).await;
        let backup = server.start_backup(&instance).await;
        watch(&server, &instance, &backup).await;
        assert_snapshot_of(&server, &instance, &backup, &redis).await;
        server.stop().await;
    }
}

/// The wait for the fork is bounded by the first-byte timeout, not by the
/// (short) timeout of ordinary commands; when it runs out, the record says
/// which wait it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_for_the_fork_has_its_own_timeout() {
    let redis = RedisServer::start(&[]);
    fill_all_types(&redis).await;

    // A 1 s command timeout does not cut the 5 s wait short.
    let server = TestServer::start_with(Db::Sqlite, |c| c.connect_timeout_ms = 1000).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.start_backup(&instance).await;
    watch(&server, &instance, &backup).await;
    assert_snapshot_of(&server, &instance, &backup, &redis).await;
    server.stop().await;

    // A first-byte timeout shorter than the delay fails, saying so.
    let server = TestServer::start_with(Db::Sqlite, |c| c.first_byte_timeout_secs = 2).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.start_backup(&instance).await;
    let (record, _) = watch(&server, &instance, &backup).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0002", "{record}");
    let msg = record["error_msg"].as_str().unwrap();
    assert!(
        msg.contains("did not start its snapshot within the first-byte timeout (2 s)"),
        "{msg}"
    );
    assert!(server.stored_files(&instance, &backup).is_empty());
    server.stop().await;
}
