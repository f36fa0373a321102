//! AOF-format backups restored through the same API: the stored commands
//! are replayed key by key (`DEBUG DIGEST` equal, merge counted), into a
//! cluster of another shape too; a corrupted file fails before the target
//! is touched; the RDB-only methods are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, PROJECT, RedisCluster, RedisServer, TestServer, fill_all_types};
use serde_json::json;

local_and_s3!(an_aof_backup_is_replayed);

async fn aof_backed_up(server: &TestServer, instance: &str) -> String {
    let r = server
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/backups"),
        )
        .json(r#"{"backup_format": "aof"}"#)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let backup = r.json()["backup_id"].as_str().unwrap().to_string();
    let record = server.wait_backup(instance, &backup).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(record["is_support_restore"], "TRUE", "{record}");
    backup
}

async fn restored(
    server: &TestServer,
    instance: &str,
    backup: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let restore = server.start_restore(instance, backup, extra).await;
    server.wait_restore(instance, &restore).await
}

async fn an_aof_backup_is_replayed(db: Db) {
    let redis = RedisServer::start(&[]);
    fill_all_types(&redis).await;
    let lib = "#!lua name=vaultlib\nredis.register_function('f', function() return 1 end)";
    assert_eq!(redis.cli(&["FUNCTION", "LOAD", lib]), "vaultlib");
    let digest = redis.digest().await;
    let server = TestServer::start(db).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = aof_backed_up(&server, &instance).await;

    redis.cli(&["FLUSHALL"]);
    redis.cli(&["FUNCTION", "FLUSH"]);
    let record = restored(&server, &instance, &backup, json!({})).await;
    assert_eq!(record["status"], "succeed", "{record}");
    let used = record["method_used"].as_str().unwrap();
    assert!(
        used.starts_with("commands:") && used.contains("AOF"),
        "{used}"
    );
    assert_eq!(record["keys_rebuilt"], 48, "{record}");
    assert_eq!(redis.digest().await, digest);
    assert!(redis.cli(&["FUNCTION", "LIST"]).contains("vaultlib"));

    // merge: same names overwritten (counted), other keys kept.
    redis.cli(&["SET", "str:small", "changed"]);
    redis.cli(&["SADD", "set:small", "extra"]);
    redis.cli(&["SET", "only:here", "stays"]);
    let record = restored(&server, &instance, &backup, json!({"mode": "merge"})).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(record["keys_replaced"], 48, "{record}");
    assert_eq!(redis.cli(&["GET", "only:here"]), "stays");
    redis.cli(&["DEL", "only:here"]);
    assert_eq!(redis.digest().await, digest);

    for method in ["restore", "replicate"] {
        let record = restored(&server, &instance, &backup, json!({"method": method})).await;
        assert_eq!(record["status"], "failed", "{method}: {record}");
        assert_eq!(record["error_code"], "dcs.08.0112", "{method}: {record}");
        assert_eq!(redis.digest().await, digest, "{method}");
    }

    // A corrupted file fails before the target is touched.
    let file = &server.stored_files(&instance, &backup)[0];
    let mut bytes = std::fs::read(file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(file, &bytes).unwrap();
    redis.cli(&["SET", "written:after", "the backup"]);
    let before = redis.digest().await;
    let record = restored(&server, &instance, &backup, json!({})).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0106", "{record}");
    assert_eq!(redis.digest().await, before);
    server.stop().await;
}

/// A 3-shard AOF backup (one file per shard) replayed into 6 masters, each
/// key to the master of its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_aof_backup_goes_into_another_shape() {
    let three = RedisCluster::start_fast(3, 0);
    three.fill(2000).await;
    let six = RedisCluster::start_fast(6, 0);
    let server = TestServer::start(Db::Sqlite).await;
    let register = |c: &RedisCluster| json!({"name": format!("c{}", uuid::Uuid::new_v4().simple()), "mode": "cluster", "addrs": [c.seed()]});
    let i3 = server.register(register(&three)).await;
    let i6 = server.register(register(&six)).await;
    let backup = aof_backed_up(&server, &i3).await;
    let record = restored(&server, &i3, &backup, json!({"target_instance_id": i6})).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(record["keys_rebuilt"], 2200, "{record}");
    let mut total = 0;
    for (node, _) in six.masters() {
        let keys: u64 = node.cli(&["DBSIZE"]).parse().unwrap();
        assert!(keys > 0, "a master got no keys");
        total += keys;
    }
    assert_eq!(total, 2200);
    let probe = std::process::Command::new("redis-cli")
        .args([
            "-c",
            "-p",
            &six.nodes[0].port.to_string(),
            "GET",
            "key:1234",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&probe.stdout).starts_with("value-1234-"));
    server.stop().await;
}
