//! The ACL user the README documents backs up every mode on every release,
//! on their default configurations; a right taken away is reported by name
//! (registration `DCS.4923`, backup `dcs.08.0111`), never as an unreachable
//! node, and refused credentials have a code of their own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, PROJECT, RedisCluster, RedisServer, Release, TestServer, fill_all_types};
use serde_json::{Value, json};

const PASSWORD: &str = "backup-pw";

per_release!(
    documented_user_backs_up_single_and_ha,
    documented_user_backs_up_a_cluster,
    documented_user_restores_by_every_method
);

/// The `ACL SETUSER rdbvault ...` lines exactly as the README gives them:
/// for backups the one for every release, then the one for Redis 7+; for
/// restores the one for every release, then 7+, then 7.4+.
fn documented_lines() -> Vec<Vec<String>> {
    let readme = include_str!("../../../README.md");
    let lines: Vec<Vec<String>> = readme
        .lines()
        .filter(|l| l.starts_with("ACL SETUSER rdbvault "))
        .map(|line| {
            line.split_whitespace()
                .map(|w| match w {
                    ">PASSWORD" => format!(">{PASSWORD}"),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    assert_eq!(
        lines.len(),
        5,
        "the README documents the ACL user in two lines for backups, three for restores"
    );
    lines
}

/// Creates user `rdbvault` as documented for `redis`'s release, minus the
/// rules in `without`.
fn create_user(redis: &RedisServer, without: &[&str]) {
    let lines = documented_lines();
    let for_release = if redis.release == Release::V6_2 {
        &lines[..1]
    } else {
        &lines[..2]
    };
    apply(redis, for_release, without);
}

/// Adds the documented restore rights to user `rdbvault`, minus `without`.
fn grant_restores(redis: &RedisServer, without: &[&str]) {
    let lines = documented_lines();
    let for_release = match redis.release {
        Release::V6_2 => &lines[2..3],
        Release::V7_0 => &lines[2..4],
        Release::V8_2 => &lines[2..5],
    };
    apply(redis, for_release, without);
}

fn apply(redis: &RedisServer, lines: &[Vec<String>], without: &[&str]) {
    for line in lines {
        let args: Vec<&str> = line
            .iter()
            .map(String::as_str)
            .filter(|r| !without.contains(r))
            .collect();
        assert_eq!(redis.cli(&args), "OK", "{args:?} on {:?}", redis.release);
    }
}

fn with_user(mut body: Value) -> Value {
    body["user"] = json!("rdbvault");
    body["password"] = json!(PASSWORD);
    body
}

async fn backup(server: &TestServer, instance: &str) -> Value {
    let backup = server.start_backup(instance).await;
    server.wait_backup(instance, &backup).await
}

async fn documented_user_backs_up_single_and_ha(release: Release) {
    let mut master = RedisServer::start_release(release, &[]);
    fill_all_types(&master).await;
    if release != Release::V6_2 {
        let lib = "#!lua name=vaultlib\nredis.register_function('f', function() return 1 end)";
        assert_eq!(master.cli(&["FUNCTION", "LOAD", lib]), "vaultlib");
    }
    let replica = RedisServer::start_release(
        release,
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
    );
    for node in [&master, &replica] {
        create_user(node, &[]);
    }
    let server = TestServer::start(Db::Sqlite).await;
    let single = server
        .register(with_user(
            json!({"name": "s", "mode": "single", "addrs": [master.addr()]}),
        ))
        .await;
    let record = backup(&server, &single).await;
    assert_eq!(record["status"], "succeed", "{release:?}: {record}");

    let digest = master.digest().await;
    replica.wait_master_link(true).await;
    let ha = server
        .register(with_user(
            json!({"name": "h", "mode": "ha", "addrs": [master.addr(), replica.addr()]}),
        ))
        .await;
    let record = backup(&server, &ha).await;
    assert_eq!(record["status"], "succeed", "{release:?}: {record}");
    assert_eq!(
        record["source_node"],
        format!("{} (replica)", replica.addr())
    );
    let file = &server.stored_files(&ha, record["backup_id"].as_str().unwrap())[0];
    let loaded = RedisServer::load_release(release, file);
    assert_eq!(loaded.digest().await, digest);

    // The master dies and nothing fails over: the instance says it is
    // degraded, and the replica, which refuses PSYNC now, is copied key by
    // key into a dump that holds the same data.
    master.kill();
    replica.wait_master_link(false).await;
    let shown = server.show_instance(&ha).await;
    assert_eq!(shown["status"], "RUNNING", "{shown}");
    assert_eq!(shown["sub_status"], "degraded", "{shown}");
    assert!(
        shown["status_detail"]
            .as_str()
            .unwrap()
            .contains(&master.addr()),
        "{shown}"
    );
    let record = backup(&server, &ha).await;
    assert_eq!(record["status"], "succeed", "{release:?}: {record}");
    let source = record["source_node"].as_str().unwrap();
    assert!(
        source.starts_with(&format!(
            "{} (replica; its master {} was unreachable",
            replica.addr(),
            master.addr()
        )),
        "{source}"
    );
    let file = &server.stored_files(&ha, record["backup_id"].as_str().unwrap())[0];
    let loaded = RedisServer::load_release(release, file);
    assert_eq!(loaded.digest().await, digest, "{release:?}");
    let ttl: i64 = loaded
        .cli(&["-n", "5", "PTTL", "str:pttl"])
        .parse()
        .unwrap();
    assert!(ttl > 90_000_000, "expiry kept: {ttl}");
    if release != Release::V6_2 {
        assert!(loaded.cli(&["FUNCTION", "LIST"]).contains("vaultlib"));
    }
    server.stop().await;
}

async fn documented_user_backs_up_a_cluster(release: Release) {
    let cluster = RedisCluster::start_release(release, 3, 1);
    cluster.fill(500).await;
    cluster.wait_ok();
    for node in &cluster.nodes {
        create_user(node, &[]);
    }
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server
        .register(with_user(
            json!({"name": "c", "mode": "cluster", "addrs": [cluster.seed()]}),
        ))
        .await;
    let shown = server.show_instance(&instance).await;
    assert_eq!(shown["status"], "RUNNING", "{shown}");
    assert_eq!(shown["sharding_count"], 3, "{shown}");
    let record = backup(&server, &instance).await;
    assert_eq!(record["status"], "succeed", "{release:?}: {record}");
    assert_eq!(
        server
            .stored_files(&instance, record["backup_id"].as_str().unwrap())
            .len(),
        3
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_rights_are_named() {
    let cluster = RedisCluster::start_fast(3, 0);
    let server = TestServer::start(Db::Sqlite).await;
    let register = |name: &str| {
        server
            .req("POST", &format!("/v2/{PROJECT}/rdbvault/instances"))
            .json(
                &with_user(json!({"name": name, "mode": "cluster", "addrs": [cluster.seed()]}))
                    .to_string(),
            )
            .send()
    };

    // Without +cluster|info the registration says so.
    for node in &cluster.nodes {
        create_user(node, &["+cluster|info"]);
    }
    let r = register("a").await;
    r.assert_error(400, "DCS.4923");
    let msg = r.json()["error_msg"].as_str().unwrap().to_string();
    assert!(
        msg.contains("CLUSTER INFO") && msg.contains("+cluster|info"),
        "{msg}"
    );

    // Without the topology rights, asking for a backup says which to grant.
    for node in &cluster.nodes {
        assert_eq!(node.cli(&["ACL", "DELUSER", "rdbvault"]), "1");
        create_user(node, &["+cluster|shards", "+cluster|nodes"]);
    }
    let r = register("b").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let instance = r.json()["instance_id"].as_str().unwrap().to_string();
    let r = server
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/backups"),
        )
        .json(r#"{"backup_format": "rdb"}"#)
        .send()
        .await;
    r.assert_error(400, "DCS.4923");
    let msg = r.json()["error_msg"].as_str().unwrap().to_string();
    assert!(msg.contains("+cluster|shards"), "{msg}");

    // Granted CLUSTER NODES alone (as on Redis 6.2), the backup works.
    for node in &cluster.nodes {
        assert_eq!(
            node.cli(&["ACL", "SETUSER", "rdbvault", "+cluster|nodes"]),
            "OK"
        );
    }
    let record = backup(&server, &instance).await;
    assert_eq!(record["status"], "succeed", "{record}");

    // A right lost between registration and backup fails the backup by name.
    for node in &cluster.nodes {
        assert_eq!(node.cli(&["ACL", "SETUSER", "rdbvault", "-psync"]), "OK");
    }
    let record = backup(&server, &instance).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0111", "{record}");
    let msg = record["error_msg"].as_str().unwrap();
    assert!(
        msg.contains("PSYNC") && msg.contains("grant it +psync"),
        "{msg}"
    );
    server.stop().await;
}

/// With exactly the documented rights a target is restored into by every
/// method; without `+replicaof`, `auto` writes keys instead; without
/// `+restore`, the `restore` method fails naming the right.
async fn documented_user_restores_by_every_method(release: Release) {
    let redis = RedisServer::start_release(release, &[]);
    fill_all_types(&redis).await;
    if release != Release::V6_2 {
        let lib = "#!lua name=vaultlib\nredis.register_function('f', function() return 1 end)";
        assert_eq!(redis.cli(&["FUNCTION", "LOAD", lib]), "vaultlib");
    }
    let digest = redis.digest().await;
    create_user(&redis, &[]);
    grant_restores(&redis, &[]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server
        .register(with_user(
            json!({"name": "s", "mode": "single", "addrs": [redis.addr()]}),
        ))
        .await;
    let backup = server.backed_up(&instance).await;
    for method in ["replicate", "restore", "commands"] {
        redis.cli(&["FLUSHALL"]);
        if release != Release::V6_2 {
            redis.cli(&["FUNCTION", "FLUSH"]);
        }
        let restore = server
            .start_restore(&instance, &backup, json!({"method": method}))
            .await;
        let record = server.wait_restore(&instance, &restore).await;
        assert_eq!(
            record["status"], "succeed",
            "{release:?} {method}: {record}"
        );
        assert_eq!(redis.digest().await, digest, "{release:?} {method}");
        if release != Release::V6_2 {
            assert!(
                redis.cli(&["FUNCTION", "LIST"]).contains("vaultlib"),
                "{method}"
            );
        }
    }

    assert_eq!(
        redis.cli(&["ACL", "SETUSER", "rdbvault", "-replicaof"]),
        "OK"
    );
    let restore = server.start_restore(&instance, &backup, json!({})).await;
    let record = server.wait_restore(&instance, &restore).await;
    assert_eq!(record["status"], "succeed", "{release:?}: {record}");
    let used = record["method_used"].as_str().unwrap();
    assert!(used.contains("replicate was tried first"), "{used}");
    assert_eq!(redis.digest().await, digest);
    assert_eq!(redis.cli(&["ACL", "SETUSER", "rdbvault", "-restore"]), "OK");
    let restore = server
        .start_restore(&instance, &backup, json!({"method": "restore"}))
        .await;
    let record = server.wait_restore(&instance, &restore).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0111", "{record}");
    let msg = record["error_msg"].as_str().unwrap();
    assert!(msg.contains("+restore"), "{msg}");
    server.stop().await;
}
