//! Restores that cannot finish end `failed` with the reason, where it
//! happened and how many keys were written, and nothing stays stuck: a
//! corrupted file fails before the target is touched, a target or a store
//! that dies mid-restore fails it, a killed service's restore is failed at
//! its restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Db, RedisServer, ServeProcess, TestServer, fill_all_types};
use serde_json::json;

local_and_s3!(a_corrupted_file_fails_before_the_target_is_touched);

fn assert_failed(record: &serde_json::Value, code: &str) {
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], code, "{record}");
    assert!(record["stage"].is_null(), "{record}");
    let msg = record["error_msg"].as_str().unwrap();
    assert!(msg.contains("keys had been written"), "{msg}");
}

/// A server holding about `mb` MB the RDB stores uncompressed, so that
/// the file outgrows every buffer between the store and the target.
fn big(mb: u32) -> RedisServer {
    let redis = RedisServer::start_fast(&["--rdbcompression", "no"]);
    redis.cli(&["DEBUG", "POPULATE", &(mb * 1000).to_string(), "key", "1000"]);
    redis
}

/// A `merge` restore of `source`'s backup into `target`, caught while it
/// writes keys (the target's writes held by a pause, so nothing is lost to
/// timing): the source's and target's instance ids and the restore's.
async fn caught_writing(
    server: &TestServer,
    source: &RedisServer,
    target: &RedisServer,
) -> (String, String, String) {
    let instance = server.register_single(&source.addr()).await;
    let target_id = server.register_single(&target.addr()).await;
    let backup = server.backed_up(&instance).await;
    assert_eq!(target.cli(&["CLIENT", "PAUSE", "60000", "WRITE"]), "OK");
    let body = json!({"target_instance_id": target_id, "mode": "merge"});
    let restore = server.start_restore(&instance, &backup, body).await;
    server
        .wait_restore_until(&instance, &restore, "writing", |r| {
            r["stage"] == "writing keys"
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    (instance, target_id, restore)
}

async fn a_corrupted_file_fails_before_the_target_is_touched(db: Db) {
    let redis = RedisServer::start_fast(&[]);
    fill_all_types(&redis).await;
    let server = TestServer::start(db).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.backed_up(&instance).await;
    let files = server.stored_files(&instance, &backup);
    assert_eq!(files.len(), 1, "{files:?}");
    let original = std::fs::read(&files[0]).unwrap();
    redis.cli(&["SET", "written:after", "the backup"]);
    let digest = redis.digest().await;

    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let mut truncated = original.clone();
    truncated.truncate(original.len() - 100);
    for (what, bytes) in [("a flipped byte", flipped), ("a truncated file", truncated)] {
        std::fs::write(&files[0], &bytes).unwrap();
        let restore = server.start_restore(&instance, &backup, json!({})).await;
        let record = server.wait_restore(&instance, &restore).await;
        assert_failed(&record, "dcs.08.0106");
        let msg = record["error_msg"].as_str().unwrap();
        assert!(msg.contains("backup file redis_"), "{what}: {msg}");
        assert_eq!(record["keys_restored"], 0, "{what}: {record}");
        // Not flushed, nothing written: the target is as it was.
        assert_eq!(redis.digest().await, digest, "{what}: {record}");
    }
    std::fs::write(&files[0], &original).unwrap();
    let restore = server.start_restore(&instance, &backup, json!({})).await;
    assert_eq!(
        server.wait_restore(&instance, &restore).await["status"],
        "succeed"
    );
    server.stop().await;
}

/// The target dies while keys are being written (its writes held by a
/// pause so the restore is caught mid-way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_killed_mid_restore_fails_it() {
    let source = big(20);
    let mut target = RedisServer::start_fast(&[]);
    let server = TestServer::start(Db::Sqlite).await;
    let (instance, target_id, restore) = caught_writing(&server, &source, &target).await;
    target.kill();
    let record = server.wait_restore(&instance, &restore).await;
    assert_failed(&record, "dcs.08.0104");
    let msg = record["error_msg"].as_str().unwrap();
    assert!(
        msg.contains("(file redis_") && msg.contains("bytes)"),
        "{msg}"
    );
    // The target may be restored into again.
    assert_eq!(server.show_instance(&target_id).await["status"], "ERROR");
    server.stop().await;
}

/// The object store goes away while a file is being read for writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_stopped_mid_restore_fails_it() {
    let source = big(40);
    let target = RedisServer::start_fast(&[]);
    let mut server = TestServer::start(Db::S3).await;
    let (instance, _, restore) = caught_writing(&server, &source, &target).await;
    server.s3.as_mut().unwrap().stop();
    assert_eq!(target.cli(&["CLIENT", "UNPAUSE"]), "OK");
    let record = server.wait_restore(&instance, &restore).await;
    assert_failed(&record, "dcs.08.0107");
    let written = record["keys_restored"].as_i64().unwrap();
    assert!(written > 0 && written < 40_000, "{record}");
    assert!(
        record["error_msg"]
            .as_str()
            .unwrap()
            .contains(&format!("{written} keys had been written")),
        "{record}"
    );
    server.s3.as_mut().unwrap().resume();
    server.stop().await;
}

/// The service is killed mid-restore: at its restart the restore is
/// `failed` (interrupted), and the target can be restored again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_leaves_no_stuck_restore() {
    let redis = RedisServer::start_fast(&[]);
    fill_all_types(&redis).await;
    let digest = redis.digest().await;
    let data = tempfile::tempdir().unwrap();
    let mut serve = ServeProcess::start(data.path(), &[]);
    let client = serve.client();
    let instance = client.register_single(&redis.addr()).await;
    let backup = client.backed_up(&instance).await;
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "60000", "WRITE"]), "OK");
    let restore = client
        .start_restore(&instance, &backup, json!({"method": "restore"}))
        .await;
    client
        .wait_restore_until(&instance, &restore, "the flush", |r| {
            r["stage"] == "flushing the target"
        })
        .await;
    serve.kill9();
    assert_eq!(redis.cli(&["CLIENT", "UNPAUSE"]), "OK");

    let serve = ServeProcess::start(data.path(), &[]);
    let client = serve.client();
    let record = client.restore_record(&instance, &restore).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0108", "{record}");
    assert_eq!(client.show_instance(&instance).await["status"], "RUNNING");
    let again = client.start_restore(&instance, &backup, json!({})).await;
    assert_eq!(
        client.wait_restore(&instance, &again).await["status"],
        "succeed"
    );
    assert_eq!(redis.digest().await, digest);
}
