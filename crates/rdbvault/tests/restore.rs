//! Restores end to end against real redis-server processes: backup,
//! FLUSHALL, restore, and the dataset is the one backed up (`DEBUG DIGEST`,
//! or key by key across releases and cluster shapes), by every method, from
//! the local store and S3; and every refusal and fault ends cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{
    Db, PROJECT, RedisCluster, RedisServer, Release, TestServer, assert_same_values,
    fill_all_types, key_slot, values,
};

type Values = BTreeMap<(u64, Vec<u8>), (String, i64)>;
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
        ("auto", "replicate"),
        ("replicate", "replicate"),
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
        // Whatever the method, the target is a master afterwards.
        assert!(redis.cli(&["INFO", "replication"]).contains("role:master"));
    }
    server.stop().await;
}

/// The restores listed for `instance`.
async fn restore_count(server: &TestServer, instance: &str) -> u64 {
    let r = server
        .req(
            "GET",
            &format!("/v2/{PROJECT}/instances/{instance}/restores"),
        )
        .send()
        .await;
    assert_eq!(r.status, 200);
    r.json()["total_num"].as_u64().unwrap()
}

/// DCS's refusals, while a restore runs (held by a write pause on the
/// target) and while a backup runs: one restore at a time, no backup while
/// restoring, no restore while backing up, the backup read cannot be
/// deleted, and `show_instance` says `RESTORING`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_restore_at_a_time_and_nothing_else_meanwhile() {
    let redis = RedisServer::start_fast(&[]);
    fill_all_types(&redis).await;
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.backed_up(&instance).await;

    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "20000", "WRITE"]), "OK");
    let restore = server
        .start_restore(&instance, &backup, json!({"method": "restore"}))
        .await;
    let record = server
        .wait_restore_until(&instance, &restore, "the flush", |r| {
            r["stage"] == "flushing the target"
        })
        .await;
    assert_eq!(record["status"], "restoring", "{record}");
    assert_eq!(server.show_instance(&instance).await["status"], "RESTORING");
    let listed = server
        .req("GET", &format!("/v2/{PROJECT}/instances?status=RESTORING"))
        .send()
        .await;
    assert_eq!(listed.json()["instance_num"], 1, "{}", listed.json());

    server
        .post_restore(&instance, json!({"backup_id": backup}))
        .await
        .assert_error(400, "DCS.4097");
    server
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/backups"),
        )
        .json("{}")
        .send()
        .await
        .assert_error(400, "DCS.4097");
    server
        .req(
            "DELETE",
            &format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}"),
        )
        .send()
        .await
        .assert_error(400, "DCS.4947");
    server
        .req(
            "DELETE",
            &format!("/v2/{PROJECT}/rdbvault/instances/{instance}"),
        )
        .send()
        .await
        .assert_error(400, "DCS.4026");
    assert_eq!(restore_count(&server, &instance).await, 1);

    assert_eq!(redis.cli(&["CLIENT", "UNPAUSE"]), "OK");
    let record = server.wait_restore(&instance, &restore).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(server.show_instance(&instance).await["status"], "RUNNING");

    // A backup running: no restore; the backup is not disturbed.
    redis.slow_snapshots(2000, 1000);
    let running = server.start_backup(&instance).await;
    server
        .wait_backup_status(&instance, &running, &["backuping"])
        .await;
    server
        .post_restore(&instance, json!({"backup_id": backup}))
        .await
        .assert_error(400, "DCS.4096");
    assert_eq!(restore_count(&server, &instance).await, 1);
    server
        .req(
            "DELETE",
            &format!("/v2/{PROJECT}/instances/{instance}/backups/{running}"),
        )
        .send()
        .await;
    // The backup read by a finished restore can be deleted.
    let deleted = server
        .req(
            "DELETE",
            &format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}"),
        )
        .send()
        .await;
    assert_eq!(
        deleted.status,
        204,
        "{}",
        String::from_utf8_lossy(&deleted.body)
    );
    server.stop().await;
}

/// Every bad request is refused with its code and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_requests_are_validated() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    let other = server.register_single(&redis.addr()).await;
    let cluster = server
        .register(
            json!({"name": "c", "mode": "cluster", "addrs": ["127.0.0.1:1"], "verify": false}),
        )
        .await;
    let backup = server.backed_up(&instance).await;
    let b = backup.as_str();

    let cases: Vec<(serde_json::Value, u16, &str)> = vec![
        (json!({}), 400, "DCS.4800"),
        (json!({"backup_id": b, "mode": "upsert"}), 400, "DCS.4800"),
        (json!({"backup_id": b, "method": "rsync"}), 400, "DCS.4800"),
        (json!({"backup_id": b, "strict": "yes"}), 400, "DCS.4800"),
        (json!({"backup_id": b, "colour": "blue"}), 400, "DCS.4800"),
        (
            json!({"backup_id": b, "method": "replicate", "mode": "merge"}),
            400,
            "DCS.4800",
        ),
        (
            json!({"backup_id": b, "method": "replicate", "target_instance_id": cluster}),
            400,
            "DCS.4800",
        ),
        (
            json!({"backup_id": b, "remark": "r".repeat(129)}),
            400,
            "DCS.4098",
        ),
        (json!({"backup_id": "not-a-uuid"}), 400, "DCS.4934"),
        (
            json!({"backup_id": uuid::Uuid::new_v4().to_string()}),
            404,
            "DCS.4930",
        ),
        (
            json!({"backup_id": b, "target_instance_id": "nope"}),
            400,
            "DCS.4061",
        ),
        (
            json!({"backup_id": b, "target_instance_id": uuid::Uuid::new_v4().to_string()}),
            404,
            "DCS.3022",
        ),
    ];
    for (body, status, code) in cases {
        let r = server.post_restore(&instance, body.clone()).await;
        assert_eq!(
            (r.status, r.json()["error_code"].as_str().unwrap_or("")),
            (status, code),
            "{body}: {}",
            r.json()
        );
        r.assert_error(status, code);
    }
    // The backup belongs to another instance than the one in the path.
    server
        .post_restore(&other, json!({"backup_id": b}))
        .await
        .assert_error(404, "DCS.4932");
    // Only a successful backup: one whose instance is gone fails.
    let dead = RedisServer::start_fast(&[]);
    let dead_instance = server.register_single(&dead.addr()).await;
    drop(dead);
    let failed = server.start_backup(&dead_instance).await;
    assert_eq!(
        server.wait_backup(&dead_instance, &failed).await["status"],
        "failed"
    );
    server
        .post_restore(&dead_instance, json!({"backup_id": failed}))
        .await
        .assert_error(400, "DCS.4087");
    let r = server
        .req(
            "GET",
            &format!("/v2/{PROJECT}/instances/{instance}/restores?limit=0"),
        )
        .send()
        .await;
    r.assert_error(400, "DCS.4800");
    let r = server
        .req(
            "GET",
            &format!("/v2/{PROJECT}/instances/{instance}/restores?begin_time=2026"),
        )
        .send()
        .await;
    r.assert_error(400, "DCS.4800");
    for i in [&instance, &other, &dead_instance] {
        assert_eq!(restore_count(&server, i).await, 0);
    }
    assert_eq!(redis.cli(&["GET", "k"]), "v");
    server.stop().await;
}

/// `merge`: the backup's keys are written over what the target holds,
/// counted as replaced; keys the backup does not have stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_overwrites_same_names_and_keeps_the_rest() {
    let redis = RedisServer::start_fast(&[]);
    fill_all_types(&redis).await;
    let before = values(&redis, &[0, 1, 5]).await;
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.backed_up(&instance).await;
    for method in ["restore", "commands"] {
        redis.cli(&["SET", "str:small", "changed"]);
        redis.cli(&["SADD", "set:small", "extra"]);
        redis.cli(&["DEL", "list:small"]);
        redis.cli(&["SET", "only:here", "stays"]);
        let restore = server
            .start_restore(
                &instance,
                &backup,
                json!({"mode": "merge", "method": method}),
            )
            .await;
        let record = server.wait_restore(&instance, &restore).await;
        assert_eq!(record["status"], "succeed", "{method}: {record}");
        assert_eq!(record["mode"], "merge");
        // 48 keys, all but `list:small` of database 0 present before.
        assert_eq!(record["keys_replaced"], 47, "{method}: {record}");
        assert_eq!(redis.cli(&["GET", "only:here"]), "stays");
        redis.cli(&["DEL", "only:here"]);
        assert_same_values(&before, &values(&redis, &[0, 1, 5]).await, 60_000);
    }
    server.stop().await;
}

/// Every key of every master of `cluster`, database 0.
async fn cluster_values(cluster: &RedisCluster) -> Values {
    let mut all = Values::new();
    for (node, _) in cluster.masters() {
        all.extend(values(node, &[0]).await);
    }
    all
}

async fn register_cluster(server: &TestServer, cluster: &RedisCluster) -> String {
    server
        .register(json!({"name": format!("c{}", uuid::Uuid::new_v4().simple()), "mode": "cluster", "addrs": [cluster.seed()]}))
        .await
}

/// A few keys of every type, some with TTLs and hash tags, on `cluster`.
async fn fill_typed(cluster: &RedisCluster) {
    let cmds: Vec<Vec<&str>> = vec![
        vec!["SET", "{user:1}:name", "ada", "EX", "100000"],
        vec!["RPUSH", "{user:1}:list", "a", "b", "c"],
        vec!["SADD", "tags", "x", "y"],
        vec!["ZADD", "board", "1", "a", "2.5", "b"],
        vec!["HSET", "h:ttl", "f", "v"],
        vec!["PEXPIRE", "h:ttl", "99999999"],
        vec!["XADD", "events", "1-1", "n", "1"],
        vec!["XGROUP", "CREATE", "events", "g", "0"],
    ];
    for cmd in cmds {
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &cluster.nodes[0].port.to_string()])
            .args(&cmd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd:?}");
    }
}

/// A 3-master backup restores into 6 masters and back, each key to the
/// master of its slot, every key with its value and TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_restore_into_other_shapes() {
    let three = RedisCluster::start_fast(3, 0);
    three.fill(3000).await;
    fill_typed(&three).await;
    let original = cluster_values(&three).await;
    let six = RedisCluster::start_fast(6, 0);
    let server = TestServer::start(Db::Sqlite).await;
    let (i3, i6) = (
        register_cluster(&server, &three).await,
        register_cluster(&server, &six).await,
    );

    let backup = server.backed_up(&i3).await;
    let restore = server
        .start_restore(&i3, &backup, json!({"target_instance_id": i6}))
        .await;
    let record = server.wait_restore(&i3, &restore).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(record["target_instance_id"], i6);
    assert!(
        record["method_used"]
            .as_str()
            .unwrap()
            .contains("each key to the master of its slot"),
        "{record}"
    );
    // Listed under the target too.
    assert_eq!(
        server.restore_record(&i6, &restore).await["status"],
        "succeed"
    );
    let on_six = cluster_values(&six).await;
    assert_same_values(&original, &on_six, 60_000);
    // Every key on the master owning its slot (cluster_values read masters only).
    for (node, slots) in six.masters() {
        for ((_, key), _) in values(node, &[0]).await {
            let slot = key_slot(&key);
            assert!(
                slots.iter().any(|&(a, b)| a <= slot && slot <= b),
                "{key:?} on the wrong master"
            );
        }
    }

    let back = server.backed_up(&i6).await;
    let files = server.backup_record(&i6, &back).await;
    assert!(
        files["source_node"]
            .as_str()
            .unwrap()
            .matches("master")
            .count()
            == 6,
        "{files}"
    );
    three.nodes[0].cli(&["SET", "{user:1}:name", "overwritten"]);
    let restore = server
        .start_restore(&i6, &back, json!({"target_instance_id": i3}))
        .await;
    let record = server.wait_restore(&i6, &restore).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_same_values(&original, &cluster_values(&three).await, 60_000);
    server.stop().await;
}

/// A single instance's backup goes into a cluster when it has keys in
/// database 0 only; other databases are refused by name before anything
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_into_cluster_only_from_database_0() {
    let cluster = RedisCluster::start_fast(3, 0);
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["DEBUG", "POPULATE", "2000", "k", "20"]);
    redis.cli(&["SET", "ttl", "v", "EX", "5000"]);
    let original = values(&redis, &[0]).await;
    let server = TestServer::start(Db::Sqlite).await;
    let single = server.register_single(&redis.addr()).await;
    let target = register_cluster(&server, &cluster).await;
    let backup = server.backed_up(&single).await;
    let restore = server
        .start_restore(&single, &backup, json!({"target_instance_id": target}))
        .await;
    let record = server.wait_restore(&single, &restore).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_same_values(&original, &cluster_values(&cluster).await, 60_000);

    fill_all_types(&redis).await;
    let backup = server.backed_up(&single).await;
    let restore = server
        .start_restore(&single, &backup, json!({"target_instance_id": target}))
        .await;
    let record = server.wait_restore(&single, &restore).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0112", "{record}");
    let msg = record["error_msg"].as_str().unwrap();
    assert!(
        msg.contains("databases 1, 5") && msg.contains("nothing was written"),
        "{msg}"
    );
    assert_eq!(record["keys_restored"], 0);
    // The cluster was not flushed: the first restore's keys are all there.
    assert_same_values(&original, &cluster_values(&cluster).await, 60_000);
    server.stop().await;
}

/// A Redis 8.2 backup (RDB 12: listpack sets, hash field expiry, stream
/// metadata) goes into 7.0 and 6.2 by `commands` under `auto`, every key
/// compared value by value; what an older release cannot hold (a field's
/// TTL) is said in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_backups_go_into_older_releases_by_commands() {
    let source = RedisServer::start_8_2(&[]);
    fill_all_types(&source).await;
    source.cli(&["HSET", "hash:fttl", "a", "1", "b", "2"]);
    source.cli(&["HEXPIRE", "hash:fttl", "100000", "FIELDS", "1", "a"]);
    source.cli(&["SADD", "set:listpack", "p", "q", "r"]);
    let original = values(&source, &[0, 1, 5]).await;
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&source.addr()).await;
    let backup = server.backed_up(&instance).await;
    for release in [Release::V7_0, Release::V6_2] {
        let target = RedisServer::start_release(release, &[]);
        let target_id = server.register_single(&target.addr()).await;
        let restore = server
            .start_restore(&instance, &backup, json!({"target_instance_id": target_id}))
            .await;
        let record = server.wait_restore(&instance, &restore).await;
        assert_eq!(record["status"], "succeed", "{release:?}: {record}");
        let used = record["method_used"].as_str().unwrap();
        assert!(
            used.starts_with("commands:") && used.contains("RDB 12"),
            "{used}"
        );
        assert_eq!(record["keys_rebuilt"], 50, "{record}");
        assert_eq!(record["keys_skipped"], 0, "{record}");
        let detail = record["skipped_detail"].as_str().unwrap_or_default();
        assert!(detail.contains("field"), "{release:?}: {record}");
        assert_same_values(&original, &values(&target, &[0, 1, 5]).await, 60_000);
        // And `restore` is refused for what the target cannot read.
        let restore = server
            .start_restore(
                &instance,
                &backup,
                json!({"target_instance_id": target_id, "method": "restore"}),
            )
            .await;
        let record = server.wait_restore(&instance, &restore).await;
        assert_eq!(record["status"], "failed", "{record}");
        assert_eq!(record["error_code"], "dcs.08.0112", "{record}");
        assert_same_values(&original, &values(&target, &[0, 1, 5]).await, 60_000);
    }
    server.stop().await;
}

/// Module values: `auto` does not let a target without the module load the
/// file (it would stop); `RESTORE` of such a value is refused, it cannot be
/// rebuilt, and it is skipped and named (`strict`: the restore fails). A
/// target with the module gets it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_values_are_skipped_and_named_where_the_module_is_missing() {
    let module = common::redis_8_2_dir().join("falkordb.so");
    let with_module = ["--loadmodule", module.to_str().unwrap()];
    let source = RedisServer::start_8_2(&with_module);
    source.cli(&["GRAPH.QUERY", "g", "CREATE (:P {n: 1})-[:K]->(:P {n: 2})"]);
    source.cli(&["SET", "plain", "value"]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&source.addr()).await;
    let backup = server.backed_up(&instance).await;

    let bare = RedisServer::start_8_2(&[]);
    let bare_id = server.register_single(&bare.addr()).await;
    let restore = server
        .start_restore(&instance, &backup, json!({"target_instance_id": bare_id}))
        .await;
    let record = server.wait_restore(&instance, &restore).await;
    assert_eq!(record["status"], "succeed", "{record}");
    let used = record["method_used"].as_str().unwrap();
    assert!(
        used.starts_with("restore:") && used.contains("graphdata"),
        "{used}"
    );
    assert_eq!(record["keys_restored"], 1, "{record}");
    assert_eq!(record["keys_skipped"], 1, "{record}");
    assert!(
        record["skipped_detail"]
            .as_str()
            .unwrap()
            .contains("graphdata"),
        "{record}"
    );
    assert_eq!(bare.cli(&["GET", "plain"]), "value");
    assert_eq!(bare.cli(&["DBSIZE"]), "1");
    // `replicate` asked for explicitly is refused for such a file, before
    // the target is touched.
    let restore = server
        .start_restore(
            &instance,
            &backup,
            json!({"target_instance_id": bare_id, "method": "replicate"}),
        )
        .await;
    let record = server.wait_restore(&instance, &restore).await;
    assert_eq!(record["error_code"], "dcs.08.0112", "{record}");
    assert!(bare.cli(&["INFO", "replication"]).contains("role:master"));

    let restore = server
        .start_restore(
            &instance,
            &backup,
            json!({"target_instance_id": bare_id, "strict": true}),
        )
        .await;
    let record = server.wait_restore(&instance, &restore).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0112", "{record}");
    assert!(
        record["error_msg"].as_str().unwrap().contains("graphdata"),
        "{record}"
    );

    let other = RedisServer::start_8_2(&with_module);
    let other_id = server.register_single(&other.addr()).await;
    let restore = server
        .start_restore(
            &instance,
            &backup,
            json!({"target_instance_id": other_id, "method": "restore"}),
        )
        .await;
    let record = server.wait_restore(&instance, &restore).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(record["keys_restored"], 2, "{record}");
    // FalkorDB gives no stable DEBUG DIGEST: compare the graph by a query.
    let query = [
        "GRAPH.QUERY",
        "g",
        "MATCH (a:P)-[:K]->(b:P) RETURN a.n, b.n",
    ];
    let answer = |r: &RedisServer| {
        let out = r.cli(&query);
        // Without the statistics (execution time varies).
        out.lines()
            .take_while(|l| !l.contains("execution"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(answer(&other), answer(&source));
    assert!(answer(&other).contains('2'), "{}", answer(&other));
    assert_eq!(other.cli(&["GET", "plain"]), "value");
    server.stop().await;
}

/// A slot migrating while the restore writes: its owner answers `ASK`,
/// and the keys go to the importing master (`ASKING` first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_migrating_slot_follow_ask() {
    let cluster = RedisCluster::start_fast(3, 0);
    let redis = RedisServer::start_fast(&[]);
    for i in 0..200 {
        redis.cli(&["SET", &format!("{{t}}:{i}"), &format!("v{i}")]);
    }
    redis.cli(&["SET", "elsewhere", "x"]);
    let server = TestServer::start(Db::Sqlite).await;
    let single = server.register_single(&redis.addr()).await;
    let target = register_cluster(&server, &cluster).await;
    let backup = server.backed_up(&single).await;

    let slot = key_slot(b"{t}").to_string();
    let masters = cluster.masters();
    let owner = masters
        .iter()
        .find(|(_, ranges)| {
            ranges
                .iter()
                .any(|&(a, b)| (a..=b).contains(&key_slot(b"{t}")))
        })
        .map(|(n, _)| *n)
        .unwrap();
    let importer = masters
        .iter()
        .map(|(n, _)| *n)
        .find(|n| n.port != owner.port)
        .unwrap();
    let (owner_id, importer_id) = (
        owner.cli(&["CLUSTER", "MYID"]),
        importer.cli(&["CLUSTER", "MYID"]),
    );
    assert_eq!(
        importer.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &owner_id]),
        "OK"
    );
    assert_eq!(
        owner.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &importer_id]),
        "OK"
    );

    let restore = server
        .start_restore(
            &single,
            &backup,
            json!({"target_instance_id": target, "method": "restore"}),
        )
        .await;
    let record = server.wait_restore(&single, &restore).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(record["keys_restored"], 201, "{record}");
    assert_eq!(importer.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]), "200");
    assert_eq!(owner.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]), "0");
    for node in &cluster.nodes {
        node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &importer_id]);
    }
    assert_eq!(importer.cli(&["GET", "{t}:7"]), "v7");
    server.stop().await;
}
