//! Restores end to end against real redis-server processes: backup,
//! FLUSHALL, restore, and the dataset is the one backed up (`DEBUG DIGEST`,
//! or key by key across releases and cluster shapes), by every method, from
//! the local store and S3; and every refusal and fault ends cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, RedisServer, TestServer, fill_all_types};
use serde_json::json;

local_and_s3!(every_method_puts_the_same_dataset_back);

/// Backup → FLUSHALL → restore gives the same `DEBUG DIGEST`, by `auto`,
/// `restore` and `commands`, into a Redis on its default settings.
async fn every_method_puts_the_same_dataset_back(db: Db) {
    let redis = RedisServer::start(&[]);
    fill_all_types(&redis).await;
    let digest = redis.digest().await;
    let server = TestServer::start(db).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.backed_up(&instance).await;
    for (method, used) in [
        ("auto", "restore"),
        ("restore", "restore"),
        ("commands", "commands"),
    ] {
        redis.cli(&["FLUSHALL"]);
        assert_ne!(redis.digest().await, digest);
        let restore = server
            .start_restore(&instance, &backup, json!({"method": method}))
            .await;
        let record = server.wait_restore(&instance, &restore).await;
        assert_eq!(record["status"], "succeed", "{method}: {record}");
        assert_eq!(redis.digest().await, digest, "{method}: {record}");
        assert_eq!(record["progress"], "100.00");
        assert_eq!(record["backup_id"], backup);
        assert_eq!(record["restore_remark"], "test restore");
        assert!(record["error_code"].is_null(), "{record}");
        assert!(record["stage"].is_null(), "{record}");
        assert!(
            record["method_used"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{used}:")),
            "{method}: {record}"
        );
        let (restored, rebuilt) = (
            record["keys_restored"].as_i64().unwrap(),
            record["keys_rebuilt"].as_i64().unwrap(),
        );
        // 3 databases of 16 keys each.
        assert_eq!(restored + rebuilt, 48, "{record}");
        assert_eq!(
            if used == "commands" {
                rebuilt
            } else {
                restored
            },
            48,
            "{record}"
        );
        assert_eq!(record["keys_skipped"], 0, "{record}");
        assert_eq!(server.show_instance(&instance).await["status"], "RUNNING");
    }
    server.stop().await;
}
