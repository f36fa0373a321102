//! The `replicate` method against real servers: an `ha` target and its
//! replicas end with the backup's dataset; a target that cannot reach
//! rdbvault falls back under `auto` (and fails when `replicate` was asked
//! for) with its data untouched; only the target may connect to the
//! listener; and a target is never left a replica of rdbvault, even when
//! rdbvault is killed mid-load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Db, RedisServer, ServeProcess, TestServer, fill_all_types, wait_for};
use serde_json::json;
use tokio::io::AsyncReadExt;

fn is_master(redis: &RedisServer) -> bool {
    redis.cli(&["INFO", "replication"]).contains("role:master")
}

async fn in_sync(replica: &RedisServer, master: &RedisServer) {
    wait_for(
        "the replica to be in sync",
        Duration::from_secs(30),
        || async {
            (replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
                && replica.digest().await == master.digest().await)
                .then_some(())
        },
    )
    .await;
}

/// An `ha` target on Redis's defaults: the master loads the file, its
/// replica resyncs from it; both hold the backup's dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_target_and_its_replicas_get_the_dataset() {
    let master = RedisServer::start(&[]);
    let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    fill_all_types(&master).await;
    in_sync(&replica, &master).await;
    let digest = master.digest().await;
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server
        .register(json!({"name": "ha", "mode": "ha", "addrs": [master.addr(), replica.addr()]}))
        .await;
    let backup = server.backed_up(&instance).await;
    for method in ["replicate", "restore"] {
        master.cli(&["FLUSHALL"]);
        master.cli(&["SET", "not", "in the backup"]);
        in_sync(&replica, &master).await;
        let restore = server
            .start_restore(&instance, &backup, json!({"method": method}))
            .await;
        let record = server.wait_restore(&instance, &restore).await;
        assert_eq!(record["status"], "succeed", "{method}: {record}");
        assert_eq!(record["keys_restored"], 48, "{method}: {record}");
        assert!(is_master(&master), "{method}");
        assert_eq!(master.digest().await, digest, "{method}");
        in_sync(&replica, &master).await;
        assert_eq!(replica.digest().await, digest, "{method}");
    }
    server.stop().await;
}

/// The target is told an address it cannot reach: `auto` writes keys
/// instead and says so; `replicate` fails; either way the target is a
/// master with its data as it was before the attempt. A connection to
/// the listener from another address than the target's is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_listener_falls_back_and_strangers_are_refused() {
    let redis = RedisServer::start_fast(&[]);
    fill_all_types(&redis).await;
    let digest = redis.digest().await;
    let server = TestServer::start_with(Db::Sqlite, |c| {
        c.restore_announce = Some("127.0.0.2".into());
    })
    .await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.backed_up(&instance).await;

    redis.cli(&["SET", "extra", "key"]);
    let changed = redis.digest().await;
    let restore = server
        .start_restore(&instance, &backup, json!({"method": "replicate"}))
        .await;
    server
        .wait_restore_until(&instance, &restore, "the listener", |r| {
            r["stage"] == "replicating: waiting for the target to connect"
        })
        .await;
    // A stranger (another loopback address) reaches the real listener.
    let port: u16 = redis
        .cli(&["INFO", "replication"])
        .lines()
        .find_map(|l| l.strip_prefix("master_port:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut stranger = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stranger.read_to_end(&mut got)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(got.is_empty(), "the stranger was answered: {got:?}");

    let record = server.wait_restore(&instance, &restore).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0112", "{record}");
    assert!(
        record["error_msg"]
            .as_str()
            .unwrap()
            .contains("did not connect"),
        "{record}"
    );
    assert!(is_master(&redis));
    assert_eq!(redis.digest().await, changed, "the target's data changed");

    let restore = server.start_restore(&instance, &backup, json!({})).await;
    let record = server.wait_restore(&instance, &restore).await;
    assert_eq!(record["status"], "succeed", "{record}");
    let used = record["method_used"].as_str().unwrap();
    assert!(
        used.starts_with("restore:") && used.contains("replicate was tried first"),
        "{used}"
    );
    assert!(is_master(&redis));
    assert_eq!(redis.digest().await, digest);
    server.stop().await;
}

/// rdbvault is killed while the target loads the file: at rdbvault's
/// restart the restore is failed and the target is a master again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_never_leaves_the_target_a_replica() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["DEBUG", "POPULATE", "50000", "k", "10"]);
    let data = tempfile::tempdir().unwrap();
    let mut serve = ServeProcess::start(data.path(), &[]);
    let client = serve.client();
    let instance = client.register_single(&redis.addr()).await;
    let backup = client.backed_up(&instance).await;
    // 100 µs a key: the load takes about 5 s.
    assert_eq!(redis.cli(&["CONFIG", "SET", "key-load-delay", "100"]), "OK");
    let restore = client
        .start_restore(&instance, &backup, json!({"method": "replicate"}))
        .await;
    client
        .wait_restore_until(&instance, &restore, "the load", |r| {
            r["stage"] == "replicating: the target loads the file"
        })
        .await;
    serve.kill9();
    assert!(
        !is_master(&redis),
        "the target should be mid-load, a replica"
    );

    let serve = ServeProcess::start(data.path(), &[]);
    let client = serve.client();
    wait_for(
        "the target promoted back",
        Duration::from_secs(30),
        || async { is_master(&redis).then_some(()) },
    )
    .await;
    let record = client.restore_record(&instance, &restore).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0108", "{record}");
    redis.cli(&["CONFIG", "SET", "key-load-delay", "0"]);
    let again = client.start_restore(&instance, &backup, json!({})).await;
    let record = client.wait_restore(&instance, &again).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(redis.cli(&["DBSIZE"]), "50000");
    drop(serve);
}

/// A target that loads while it receives (`repl-diskless-load swapdb` or
/// `on-empty-db`) is sent the file only after it was verified whole; one
/// that loads from disk is sent it while it is verified, its last byte held
/// back. Both end with the dataset; a corrupted file reaches neither's load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diskless_and_disk_loading_targets() {
    for load in ["swapdb", "on-empty-db", "disabled"] {
        let redis = RedisServer::start_fast(&["--repl-diskless-load", load]);
        fill_all_types(&redis).await;
        let digest = redis.digest().await;
        let server = TestServer::start(Db::Sqlite).await;
        let instance = server.register_single(&redis.addr()).await;
        let backup = server.backed_up(&instance).await;
        redis.cli(&["FLUSHALL"]);
        let restore = server
            .start_restore(&instance, &backup, json!({"method": "replicate"}))
            .await;
        let record = server.wait_restore(&instance, &restore).await;
        assert_eq!(record["status"], "succeed", "{load}: {record}");
        assert_eq!(redis.digest().await, digest, "{load}");

        let file = &server.stored_files(&instance, &backup)[0];
        let mut bytes = std::fs::read(file).unwrap();
        let at = bytes.len() - 20;
        bytes[at] ^= 0xff;
        std::fs::write(file, &bytes).unwrap();
        redis.cli(&["SET", "after", "backup"]);
        let before = redis.digest().await;
        let restore = server
            .start_restore(&instance, &backup, json!({"method": "replicate"}))
            .await;
        let record = server.wait_restore(&instance, &restore).await;
        assert_eq!(record["error_code"], "dcs.08.0106", "{load}: {record}");
        assert!(is_master(&redis), "{load}");
        assert_eq!(redis.digest().await, before, "{load}");
        server.stop().await;
    }
}
