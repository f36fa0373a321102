//! Redis Cluster backups against real clusters on loopback: one verified
//! file per shard, named by slot range, all or nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{Db, PROJECT, RedisCluster, RedisServer, TestServer, all_files, wait_for};
use serde_json::json;

async fn register_cluster(server: &TestServer, cluster: &RedisCluster) -> String {
    server
        .register(json!({"name": format!("c{}", uuid::Uuid::new_v4().simple()), "mode": "cluster", "addrs": [cluster.seed()]}))
        .await
}

/// Every key of a server, as `KEYS *` lists them.
fn keys(server: &RedisServer) -> BTreeSet<String> {
    server
        .cli(&["KEYS", "*"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// `key_slot` (what files are split and checked by) agrees with a live
/// server's `CLUSTER KEYSLOT`: the spec's examples, every hash-tag corner,
/// binary keys, and a few thousand generated ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_slots_match_cluster_keyslot() {
    let node = RedisServer::start_fast(&["--cluster-enabled", "yes"]);
    let mut keys: Vec<Vec<u8>> = [
        "123456789",
        "foo",
        "bar",
        "somekey",
        "",
        "user1000",
        "{user1000}.following",
        "{user1000}.followers",
        "foo{hash_tag}",
        "bar{hash_tag}",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "{bar",
        "foo{bar}{zap}",
        "{}",
        "{",
        "}",
        "}{",
        "a}{b}",
        "{{}}",
        "{}}",
        "x{y}",
    ]
    .iter()
    .map(|k| k.as_bytes().to_vec())
    .collect();
    keys.push(b"\x00{\xff\xfe}\r\n".to_vec());
    keys.push(vec![0xff; 300]);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for n in 0..3000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Short keys over a small alphabet, so braces often pair up.
        let len = (seed % 12) as usize;
        let key: Vec<u8> = (0..len)
            .map(|i| b"ab{}\x00\xff"[((seed >> (i * 5)) % 6) as usize])
            .collect();
        keys.push(key);
        keys.push(format!("key:{n}").into_bytes());
    }
    let mut c = node.conn().await;
    for key in &keys {
        let reply = c.command(&[b"CLUSTER", b"KEYSLOT", key]).await.unwrap();
        let rdbvault::replication::resp::Reply::Int(slot) = reply else {
            panic!("CLUSTER KEYSLOT answered {reply:?}");
        };
        assert_eq!(
            i64::from(common::key_slot(key)),
            slot,
            "key {:?}",
            String::from_utf8_lossy(key)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_three_files_each_a_shard() {
    let cluster = RedisCluster::start_fast(3, 1);
    cluster.fill(3000).await;
    cluster.wait_ok();
    let server = TestServer::start(Db::Sqlite).await;
    let instance = register_cluster(&server, &cluster).await;
    let backup = server.start_backup(&instance).await;
    let record = server.wait_backup(&instance, &backup).await;
    assert_eq!(record["status"], "succeed", "{record}");
    // Pulled from replicas where one was in sync at that moment (a replica
    // that lags is skipped for its master, which is also a correct source).
    assert!(
        record["source_node"]
            .as_str()
            .unwrap()
            .contains("(replica)"),
        "{record}"
    );

    let files = server.stored_files(&instance, &backup);
    assert_eq!(files.len(), 3, "{files:?}");
    let masters = cluster.masters();
    let mut all_keys = BTreeSet::new();
    for (master, slots) in &masters {
        let label = common::slot_label(slots);
        let file = files
            .iter()
            .find(|f| {
                f.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .contains(&format!("_{label}_"))
            })
            .unwrap_or_else(|| panic!("no file for slots {label}: {files:?}"));
        // The file is the shard: same keys, same digest as its master (read
        // once each, right after loading).
        let loaded = RedisServer::load(file);
        let (size, digest, keys_loaded) = (
            loaded.cli(&["DBSIZE"]),
            loaded.digest().await,
            keys(&loaded),
        );
        assert_eq!(size, master.cli(&["DBSIZE"]), "shard {label}");
        assert_eq!(digest, master.digest().await, "shard {label}");
        all_keys.extend(keys_loaded);
    }
    let expected: usize = masters
        .iter()
        .map(|(m, _)| m.cli(&["DBSIZE"]).parse::<usize>().unwrap())
        .sum();
    assert_eq!(
        all_keys.len(),
        expected,
        "together the files hold every key"
    );
    assert_eq!(all_keys.len(), 3000 + 300);

    // Links: one per shard, sorted by slot range.
    let r = server
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}/links"),
        )
        .json(r#"{"expiration": 600}"#)
        .send()
        .await;
    let links = r.json()["links"].as_array().unwrap().clone();
    assert_eq!(links.len(), 3);
    let firsts: Vec<u32> = links
        .iter()
        .map(|l| {
            let name = l["file_name"].as_str().unwrap();
            name.split('_')
                .nth(3)
                .unwrap()
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(
        firsts,
        vec![0, masters[1].1[0].0 as u32, masters[2].1[0].0 as u32]
    );

    // `rdbvault inspect` of the backup: the three files streamed from the
    // store in parallel, one report each, every key counted once.
    let inspect = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .args(["inspect", &backup, "--instance", &instance, "--json"])
            .env("RDBVAULT_ENDPOINT", &server.base)
            .env("RDBVAULT_AK", common::AK)
            .env("RDBVAULT_SK", common::SK)
            .env("RDBVAULT_PROJECT_ID", PROJECT)
            .output()
            .unwrap()
    };
    let out = inspect();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().expect("one report per file");
    assert_eq!(reports.len(), 3);
    let counted: u64 = reports.iter().map(|r| r["keys"].as_u64().unwrap()).sum();
    assert_eq!(counted as usize, expected);
    // One shard's file damaged in the store: the whole analysis fails.
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&files[1], &bytes).unwrap();
    let out = inspect();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let name = files[1].file_name().unwrap().to_string_lossy();
    assert!(err.contains(name.as_ref()), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_masters_and_non_contiguous_slots() {
    let cluster = RedisCluster::start_fast(6, 0);
    // Move the empty slots 100..=199 from the first master to the second:
    // the second then owns two ranges.
    let masters = cluster.masters();
    let (to_port, to_id) = {
        let (node, _) = &masters[1];
        (node.port, node.cli(&["CLUSTER", "MYID"]))
    };
    let from_port = masters[0].0.port;
    for slot in 100..200 {
        for n in &cluster.nodes {
            assert_eq!(
                n.cli(&["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &to_id]),
                "OK"
            );
        }
    }
    cluster.wait_ok();
    cluster.fill(1200).await;
    let server = TestServer::start(Db::Sqlite).await;
    let instance = register_cluster(&server, &cluster).await;
    let backup = server.start_backup(&instance).await;
    let record = server.wait_backup(&instance, &backup).await;
    assert_eq!(record["status"], "succeed", "{record}");
    let files = server.stored_files(&instance, &backup);
    assert_eq!(files.len(), 6, "{files:?}");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    let gained = names
        .iter()
        .find(|n| n.contains(&format!("_{to_port}_")))
        .unwrap();
    assert!(
        gained.contains("_100-199."),
        "two ranges joined in the name: {gained}"
    );
    let gave = names
        .iter()
        .find(|n| n.contains(&format!("_{from_port}_")))
        .unwrap();
    assert!(
        gave.contains("_0-99.200-"),
        "the range split in two: {gave}"
    );
    let total: u64 = files
        .iter()
        .map(|f| {
            RedisServer::load(f)
                .cli(&["DBSIZE"])
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, 1200 + 120);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_mid_backup_fails_it_and_leaves_nothing() {
    let cluster = RedisCluster::start_fast(3, 1);
    cluster.fill(3000).await;
    cluster.wait_ok();
    cluster.slow_snapshots(3000);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = register_cluster(&server, &cluster).await;
    let backup = server.start_backup(&instance).await;
    server
        .wait_backup_status(&instance, &backup, &["backuping"])
        .await;
    // Resharding while the shards stream: an empty slot of the first master
    // moves to the second. Every transfer completes, but the files no longer
    // form one consistent cut of the cluster.
    let masters = cluster.masters();
    let (from, from_slots) = &masters[0];
    let slot = (from_slots[0].0..=from_slots[0].1)
        .find(|s| from.cli(&["CLUSTER", "COUNTKEYSINSLOT", &s.to_string()]) == "0")
        .unwrap();
    let to_id = masters[1].0.cli(&["CLUSTER", "MYID"]);
    for n in &cluster.nodes {
        n.cli(&["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &to_id]);
    }
    let record = server.wait_backup(&instance, &backup).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0110", "{record}");
    assert!(all_files(&server.objects_root().join(&instance)).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_backup_fails_it_and_leaves_nothing() {
    let cluster = RedisCluster::start_fast(3, 1);
    cluster.fill(3000).await;
    cluster.wait_ok();
    cluster.slow_snapshots(3000);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = register_cluster(&server, &cluster).await;
    let backup = server.start_backup(&instance).await;
    server
        .wait_backup_status(&instance, &backup, &["backuping"])
        .await;
    // A shard's master dies: the replica we pull from drops its own
    // sub-replica link, or is promoted; either way the backup must fail.
    let victim_port = cluster.masters()[0].0.port;
    let victim = cluster
        .nodes
        .iter()
        .position(|n| n.port == victim_port)
        .unwrap();
    let mut nodes = cluster.nodes;
    nodes[victim].kill();
    let record = server.wait_backup(&instance, &backup).await;
    assert_eq!(record["status"], "failed", "{record}");
    let code = record["error_code"].as_str().unwrap();
    assert!(code == "dcs.08.0104" || code == "dcs.08.0110", "{record}");
    assert!(all_files(&server.objects_root().join(&instance)).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_lost_mid_transfer_fails_the_backup_naming_it() {
    let cluster = RedisCluster::start_fast(3, 0);
    cluster.fill(3000).await;
    cluster.slow_snapshots(3000);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = register_cluster(&server, &cluster).await;
    let backup = server.start_backup(&instance).await;
    // Mid-transfer: the victim feeds our replica link (PSYNC sent) and no
    // transfer is still waiting for its fork, so every payload is flowing.
    let victim = &cluster.nodes[1];
    server
        .wait_backup_until(&instance, &backup, "the shard's payload flowing", |r| {
            r["stage"] == "transferring" && victim.connected_replicas() == 1
        })
        .await;
    let mut nodes = cluster.nodes;
    nodes[1].kill();
    let record = server.wait_backup(&instance, &backup).await;
    assert_eq!(record["status"], "failed", "{record}");
    let msg = record["error_msg"].as_str().unwrap();
    assert!(
        msg.starts_with("shard ") && msg.contains(&format!("127.0.0.1:{}", nodes[1].port)),
        "{msg}"
    );
    assert!(all_files(&server.objects_root().join(&instance)).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_clusters_are_refused_at_creation() {
    let cluster = RedisCluster::start_fast(3, 0);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = register_cluster(&server, &cluster).await;
    // Unassign a slot everywhere: the cluster no longer covers all slots.
    // Its owner first: a node that still claims it would teach it back, by
    // gossip, to the nodes that already dropped it. Then wait until every
    // node agrees (dropping it again where gossip won the race).
    let masters = cluster.masters();
    let owner = masters
        .iter()
        .find(|(_, slots)| slots.iter().any(|&(a, b)| a <= 16000 && 16000 <= b))
        .map(|(node, _)| node.port)
        .unwrap();
    let mut nodes: Vec<&RedisServer> = cluster.nodes.iter().collect();
    nodes.sort_by_key(|n| n.port != owner);
    wait_for(
        "every node to see slot 16000 unassigned",
        std::time::Duration::from_secs(30),
        || async {
            let mut all = true;
            for n in &nodes {
                if !n
                    .cli(&["CLUSTER", "INFO"])
                    .contains("cluster_slots_assigned:16383")
                {
                    n.cli(&["CLUSTER", "DELSLOTS", "16000"]);
                    all = false;
                }
            }
            all.then_some(())
        },
    )
    .await;
    server
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/backups"),
        )
        .json("{}")
        .send()
        .await
        .assert_error(400, "DCS.4950");
    server.stop().await;
}
