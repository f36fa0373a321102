//! Every way a backup can go wrong ends `failed` with a specific error code,
//! leaves no object behind, and leaves the service serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Db, RedisServer, ServeProcess, TestServer, all_files, wait_for};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

local_and_s3!(
    refused_credentials_and_permissions,
    unreachable_garbage_corrupt_and_silent_servers,
    redis_dies_or_drops_the_replica_mid_transfer,
    servers_without_psync_are_backed_up_with_sync,
);

/// Registers `addr` without the live check (the fault is the point) and
/// runs one backup to its end.
async fn backup_of(server: &TestServer, body: serde_json::Value) -> (String, serde_json::Value) {
    let mut body = body;
    body["verify"] = json!(false);
    body["name"] = json!(format!("f{}", uuid::Uuid::new_v4().simple()));
    let instance = server.register(body).await;
    let backup = server.start_backup(&instance).await;
    let record = server.wait_backup(&instance, &backup).await;
    (instance, record)
}

#[track_caller]
fn assert_failed(record: &serde_json::Value, code: &str) {
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], code, "{record}");
    assert!(
        record["error_msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{record}"
    );
    assert_eq!(record["is_support_restore"], "FALSE");
    assert_eq!(record["size"], 0);
}

async fn assert_nothing_stored(server: &TestServer, instance: &str) {
    let files = all_files(&server.objects_root().join(instance));
    assert!(files.is_empty(), "left behind: {files:?}");
    if let Some(s3) = &server.s3 {
        assert!(
            s3.leftovers().is_empty(),
            "multipart state left in the store: {:?}",
            s3.leftovers()
        );
    }
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the service keeps serving");
}

/// A TCP server that runs `script` for every connection.
async fn fake_server<F, Fut>(script: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let script = std::sync::Arc::new(script);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move { script(sock).await });
        }
    });
    addr
}

/// Plays a master: `+OK` to REPLCONF, `+FULLRESYNC`, then `payload` raw.
async fn fake_master(payload: Vec<u8>) -> String {
    fake_old_or_new_master(payload, true).await
}

/// With `psync` false, plays a pre-2.8 server: PSYNC and REPLCONF are
/// unknown commands, and SYNC is answered with the payload directly.
async fn fake_old_or_new_master(payload: Vec<u8>, psync: bool) -> String {
    fake_server(move |mut sock| {
        let payload = payload.clone();
        async move {
            if handshake(&mut sock, psync).await {
                let _ = sock.write_all(&payload).await;
                // Then silence, the connection held open until the client
                // hangs up (what it sends meanwhile is ignored).
                let mut buf = [0u8; 4096];
                while sock.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            }
        }
    })
    .await
}

/// Answers commands as a master would until the sync command; false if the
/// client went away first.
async fn handshake(sock: &mut tokio::net::TcpStream, psync: bool) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return false;
        }
        seen.extend_from_slice(&buf[..n]);
        while let Some(pos) = find_command_end(&seen) {
            // The command name is the third line: `*N`, `$len`, name.
            let text = String::from_utf8_lossy(&seen[..pos]).to_string();
            let name = text.split("\r\n").nth(2).unwrap_or_default().to_uppercase();
            seen.drain(..pos);
            let (is_psync, is_sync) = (name == "PSYNC", name == "SYNC");
            let reply = match name.as_str() {
                "PSYNC" if psync => format!("+FULLRESYNC {} 0\r\n", "a".repeat(40)),
                "PSYNC" => "-ERR unknown command 'PSYNC'\r\n".to_string(),
                "REPLCONF" if !psync => "-ERR unknown command 'REPLCONF'\r\n".to_string(),
                "SYNC" => String::new(),
                "INFO" => "$0\r\n\r\n".to_string(),
                _ => "+OK\r\n".to_string(),
            };
            let _ = sock.write_all(reply.as_bytes()).await;
            // After FULLRESYNC (or SYNC) the payload follows.
            if (is_psync && psync) || is_sync {
                return true;
            }
        }
    }
}

/// The end of the first complete RESP command (`*N` then N bulk strings).
fn find_command_end(buf: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(buf).ok()?;
    let mut lines = text.split_inclusive("\r\n");
    let head = lines.next()?;
    let n: usize = head.trim().strip_prefix('*')?.parse().ok()?;
    let mut used = head.len();
    for _ in 0..n {
        let len_line = lines.next()?;
        let data = lines.next()?;
        if !data.ends_with("\r\n") {
            return None;
        }
        used += len_line.len() + data.len();
    }
    Some(used)
}

/// A real dump of a small dataset, as a disk-based payload would carry it.
async fn real_dump() -> Vec<u8> {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["DEBUG", "POPULATE", "1000"]);
    assert_eq!(redis.cli(&["SAVE"]), "OK");
    std::fs::read(redis.data_dir().join("dump.rdb")).unwrap()
}

async fn refused_credentials_and_permissions(db: Db) {
    let redis = RedisServer::start_fast(&["--requirepass", "right"]);
    redis.cli(&[
        "-a", "right", "ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@read", "+ping", "+info",
    ]);
    let server = TestServer::start(db).await;

    let (instance, record) = backup_of(
        &server,
        json!({"mode": "single", "addrs": [redis.addr()], "password": "wrong"}),
    )
    .await;
    assert_failed(&record, "dcs.08.0102");
    assert_nothing_stored(&server, &instance).await;

    let (instance, record) = backup_of(
        &server,
        json!({"mode": "single", "addrs": [redis.addr()], "user": "reader", "password": "pw"}),
    )
    .await;
    // A missing right is its own failure, naming what to grant.
    assert_failed(&record, "dcs.08.0111");
    let msg = record["error_msg"].as_str().unwrap();
    assert!(
        msg.contains("NOPERM") && msg.contains("grant it +replconf"),
        "{record}"
    );
    assert_nothing_stored(&server, &instance).await;

    // A user with replication rights works.
    redis.cli(&[
        "-a",
        "right",
        "ACL",
        "SETUSER",
        "backup",
        "on",
        ">pw2",
        "+psync",
        "+replconf",
        "+sync",
        "+ping",
        "+info",
    ]);
    let (_, record) = backup_of(
        &server,
        json!({"mode": "single", "addrs": [redis.addr()], "user": "backup", "password": "pw2"}),
    )
    .await;
    assert_eq!(record["status"], "succeed", "{record}");
    server.stop().await;
}

async fn unreachable_garbage_corrupt_and_silent_servers(db: Db) {
    let server = TestServer::start_with(db, |c| {
        c.first_byte_timeout_secs = 1;
        c.connect_timeout_ms = 1000;
    })
    .await;

    let nobody = format!("127.0.0.1:{}", common::free_port());
    let (instance, record) = backup_of(&server, json!({"mode": "single", "addrs": [nobody]})).await;
    assert_failed(&record, "dcs.08.0101");
    assert_nothing_stored(&server, &instance).await;

    let http = fake_server(|mut sock| async move {
        let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    })
    .await;
    let (instance, record) = backup_of(&server, json!({"mode": "single", "addrs": [http]})).await;
    assert_failed(&record, "dcs.08.0105");
    assert_nothing_stored(&server, &instance).await;

    // A payload that is a real dump with one byte flipped fails its CRC.
    let mut dump = real_dump().await;
    let middle = dump.len() / 2;
    dump[middle] ^= 0x01;
    let mut payload = format!("${}\r\n", dump.len()).into_bytes();
    payload.extend_from_slice(&dump);
    let corrupt = fake_master(payload).await;
    let (instance, record) =
        backup_of(&server, json!({"mode": "single", "addrs": [corrupt]})).await;
    assert_failed(&record, "dcs.08.0106");
    assert!(
        record["error_msg"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("checksum"),
        "{record}"
    );
    assert_nothing_stored(&server, &instance).await;

    // Not an RDB at all.
    let payload = b"$12\r\nNOTANRDB1234".to_vec();
    let bogus = fake_master(payload).await;
    let (instance, record) = backup_of(&server, json!({"mode": "single", "addrs": [bogus]})).await;
    assert_failed(&record, "dcs.08.0106");
    assert_nothing_stored(&server, &instance).await;

    // Announces a payload, then never sends it.
    let silent = fake_master(Vec::new()).await;
    let (instance, record) = backup_of(&server, json!({"mode": "single", "addrs": [silent]})).await;
    assert_failed(&record, "dcs.08.0002");
    assert_nothing_stored(&server, &instance).await;

    // A payload cut short: the connection closes mid-transfer.
    let dump = real_dump().await;
    let mut payload = format!("${}\r\n", dump.len()).into_bytes();
    payload.extend_from_slice(&dump[..dump.len() / 2]);
    let short = fake_server(move |mut sock| {
        let payload = payload.clone();
        async move {
            if handshake(&mut sock, true).await {
                // Dropping the socket closes it half-way through the payload.
                let _ = sock.write_all(&payload).await;
            }
        }
    })
    .await;
    let (instance, record) = backup_of(&server, json!({"mode": "single", "addrs": [short]})).await;
    assert_failed(&record, "dcs.08.0104");
    assert_nothing_stored(&server, &instance).await;
    server.stop().await;
}

async fn redis_dies_or_drops_the_replica_mid_transfer(db: Db) {
    let server = TestServer::start(db).await;
    for fault in ["kill", "client-kill"] {
        let mut redis = RedisServer::start_fast(&[]);
        redis.slow_snapshots(20_000, 500);
        let instance = server.register_single(&redis.addr()).await;
        let backup = server.start_backup(&instance).await;
        // Mid-transfer: the payload is flowing.
        server.wait_backup_transferring(&instance, &backup).await;
        match fault {
            "kill" => redis.kill(),
            _ => assert_ne!(redis.cli(&["CLIENT", "KILL", "TYPE", "replica"]), "0"),
        }
        let record = server.wait_backup(&instance, &backup).await;
        assert_failed(&record, "dcs.08.0104");
        assert_nothing_stored(&server, &instance).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_leaves_no_stuck_record_and_no_partial_file() {
    let redis = RedisServer::start_fast(&[]);
    redis.slow_snapshots(20_000, 500);
    let data = tempfile::tempdir().unwrap();
    let mut serve = ServeProcess::start(data.path(), &[]);
    let client = serve.client();
    let instance = client.register_single(&redis.addr()).await;
    let backup = client.start_backup(&instance).await;
    client
        .wait_backup_status(&instance, &backup, &["backuping"])
        .await;
    // Let some bytes land in the staging file.
    wait_for("a staging file", Duration::from_secs(20), || async {
        (!all_files(&data.path().join("objects")).is_empty()).then_some(())
    })
    .await;
    serve.kill9();
    assert!(
        !all_files(&data.path().join("objects")).is_empty(),
        "the kill left a partial file to clean"
    );

    let serve = ServeProcess::start(data.path(), &[]);
    let client = serve.client();
    let record = client.backup_record(&instance, &backup).await;
    assert_failed(&record, "dcs.08.0108");
    assert!(
        all_files(&data.path().join("objects")).is_empty(),
        "partial file survived the restart"
    );
    // And the instance can be backed up again.
    redis.cli(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    let again = client.start_backup(&instance).await;
    let record = client.wait_backup(&instance, &again).await;
    assert_eq!(record["status"], "succeed", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_backup_cleanly() {
    let redis = RedisServer::start_fast(&[]);
    // About 10 MB of incompressible data; the service may write files of at most 4 MB.
    let mut c = redis.conn().await;
    for i in 0..10_000u32 {
        let value: Vec<u8> = (0..64)
            .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
            .collect();
        c.command(&[b"SET", format!("k{i}").as_bytes(), &value])
            .await
            .unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(data.path(), &["prlimit", "--fsize=4000000"]);
    let client = serve.client();
    let instance = client.register_single(&redis.addr()).await;
    let backup = client.start_backup(&instance).await;
    let record = client.wait_backup(&instance, &backup).await;
    assert_failed(&record, "dcs.08.0107");
    assert!(
        all_files(&data.path().join("objects")).is_empty(),
        "partial file left behind"
    );
    let health = reqwest::get(format!("{}/healthz", serve.base))
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "the service survived the failed write"
    );

    // The same data fits once it is small enough.
    redis.cli(&["FLUSHALL"]);
    redis.cli(&["DEBUG", "POPULATE", "100"]);
    let again = client.start_backup(&instance).await;
    let record = client.wait_backup(&instance, &again).await;
    assert_eq!(record["status"], "succeed", "{record}");
}

async fn servers_without_psync_are_backed_up_with_sync(db: Db) {
    let server = TestServer::start(db).await;
    let dump = real_dump().await;
    let mut payload = format!("\n\n${}\r\n", dump.len()).into_bytes();
    payload.extend_from_slice(&dump);
    let old = fake_old_or_new_master(payload, false).await;
    let (instance, record) = backup_of(&server, json!({"mode": "single", "addrs": [old]})).await;
    assert_eq!(record["status"], "succeed", "{record}");
    let backup = record["backup_id"].as_str().unwrap();
    let stored = server.stored_files(&instance, backup);
    assert_eq!(
        std::fs::read(&stored[0]).unwrap(),
        dump,
        "stored bytes differ from the payload"
    );
    server.stop().await;
}

/// The S3 store stops in the middle of an upload: the backup fails, and once
/// the store is back the sweep aborts the multipart upload it could not abort
/// then, so nothing of it remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_mid_upload() {
    let db = Db::S3;
    let redis = RedisServer::start_fast(&[]);
    redis.slow_snapshots(20_000, 300);
    let mut server = TestServer::start_with(db, |c| c.sweep_interval_secs = 1).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.start_backup(&instance).await;
    server
        .wait_backup_status(&instance, &backup, &["backuping"])
        .await;
    // Let the multipart upload get under way in the store.
    let s3 = server.s3.as_mut().unwrap();
    wait_for(
        "a multipart upload under way",
        Duration::from_secs(20),
        || async { (!s3.leftovers().is_empty()).then_some(()) },
    )
    .await;
    s3.stop();
    let record = server.wait_backup(&instance, &backup).await;
    assert_failed(&record, "dcs.08.0107");
    server.s3.as_mut().unwrap().resume();
    let s3 = server.s3.as_ref().unwrap();
    wait_for(
        "the sweep to abort the dangling multipart upload",
        Duration::from_secs(20),
        || async { s3.leftovers().is_empty().then_some(()) },
    )
    .await;
    assert_nothing_stored(&server, &instance).await;
    server.stop().await;
}

/// Wrong S3 credentials: `serve` refuses to start, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_an_s3_store_it_cannot_use() {
    let s3 = common::S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    for (what, tweak) in [
        (
            "wrong secret",
            Box::new(|c: &mut rdbvault::config::Config| c.s3.secret_key = Some("wrong".into()))
                as Box<dyn Fn(&mut _)>,
        ),
        // (A missing bucket cannot be tried here: s3s-fs creates buckets on first write.)
        (
            "unknown access key",
            Box::new(|c: &mut rdbvault::config::Config| c.s3.access_key = "NOSUCHKEY".into()),
        ),
        (
            "no secret",
            Box::new(|c: &mut rdbvault::config::Config| c.s3.secret_key = None),
        ),
    ] {
        let mut config = rdbvault::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        s3.configure(&mut config);
        config.credentials = vec![rdbvault::config::CredentialConfig {
            access_key: common::AK.into(),
            secret_key: Some(common::SK.into()),
            secret_key_file: None,
            projects: vec![common::PROJECT.into()],
        }];
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            rdbvault::server::run(listener, config, std::future::pending()),
        )
        .await
        .expect("serve gave up in time");
        let err = result.expect_err(what).to_string();
        assert!(
            err.contains("bucket") || err.contains("secret"),
            "{what}: {err}"
        );
    }
}

/// A source announcing (or streaming) more than a backup may hold fails the
/// backup with `dcs.08.0113` and stores nothing: an announced 4 TiB is
/// refused before a byte is written, a diskless stream once it passes the
/// limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_snapshots_are_refused() {
    let server = TestServer::start_with(Db::Sqlite, |c| c.max_backup_bytes = 1 << 20).await;
    let addr = fake_master(b"$4398046511104\r\nREDIS0011".to_vec()).await;
    let started = std::time::Instant::now();
    let (instance, record) = backup_of(&server, json!({"mode": "single", "addrs": [addr]})).await;
    assert_failed(&record, "dcs.08.0113");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_nothing_stored(&server, &instance).await;

    // 4 MB uncompressed behind a diskless (EOF-marked, unannounced) transfer.
    let redis = RedisServer::start_fast(&["--rdbcompression", "no", "--repl-diskless-sync", "yes"]);
    redis.cli(&["DEBUG", "POPULATE", "40000", "key", "100"]);
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.start_backup(&instance).await;
    let record = server.wait_backup(&instance, &backup).await;
    assert_failed(&record, "dcs.08.0113");
    assert!(
        record["error_msg"]
            .as_str()
            .unwrap()
            .contains("max_backup_bytes"),
        "{record}"
    );
    assert_nothing_stored(&server, &instance).await;
    server.stop().await;
}
