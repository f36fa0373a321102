//! Interoperability with the official Huawei Cloud Python SDK
//! (`pip install huaweicloudsdkdcs`): its signer and models are the judges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{AK, Db, OTHER_PROJECT, PROJECT, RedisServer, SK, TestServer};

/// Runs `tests/sdk/<script>` with the SDK against `server`; fails on any failed check.
pub async fn run_sdk_script(script: &str, args: &[&str]) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/");
    let out = tokio::process::Command::new("python3")
        .arg(format!("{path}{script}"))
        .args(args)
        .output()
        .await
        .expect("python3 on PATH");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK script {script} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all SDK checks passed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_lists_and_shows_instances() {
    let redis = RedisServer::start_fast(&[]);
    let server = TestServer::start(Db::Sqlite).await;
    let body = serde_json::json!({"name": "sdk-cache", "mode": "single", "addrs": [redis.addr()]});
    let r = server
        .req("POST", &format!("/v2/{PROJECT}/rdbvault/instances"))
        .json(&body.to_string())
        .send()
        .await;
    assert_eq!(r.status, 200);
    let id = r.json()["instance_id"].as_str().unwrap().to_string();
    run_sdk_script(
        "interop.py",
        &[&server.base, AK, SK, PROJECT, OTHER_PROJECT, &id],
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_lists_backups_and_gets_working_links() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["DEBUG", "POPULATE", "1000"]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.start_backup(&instance).await;
    assert_eq!(
        server.wait_backup(&instance, &backup).await["status"],
        "succeed"
    );
    let file = server.stored_files(&instance, &backup).remove(0);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(file).unwrap()))
    };
    run_sdk_script(
        "links.py",
        &[&server.base, AK, SK, PROJECT, &instance, &backup, &sha],
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_restores_an_instance() {
    let redis = RedisServer::start(&[]);
    common::fill_all_types(&redis).await;
    let digest = redis.digest().await;
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.backed_up(&instance).await;
    redis.cli(&["FLUSHALL"]);
    run_sdk_script(
        "restores.py",
        &[&server.base, AK, SK, PROJECT, &instance, &backup],
    )
    .await;
    assert_eq!(redis.digest().await, digest);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_sets_and_reads_a_backup_policy() {
    let redis = RedisServer::start_fast(&[]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    run_sdk_script("policy.py", &[&server.base, AK, SK, PROJECT, &instance]).await;
    let shown = server.show_instance(&instance).await;
    assert_eq!(shown["instance_backup_policy"]["policy"]["save_days"], 14);
    server.stop().await;
}

/// A request the SDK signs with a Content-Type that is not JSON (its signer
/// then signs `UNSIGNED-PAYLOAD` instead of the body) is 415, not 401; a bad
/// signature stays 401, and an unsigned JSON body is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_with_a_content_type_not_json_gets_415() {
    let redis = RedisServer::start_fast(&[]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    run_sdk_script(
        "content_type.py",
        &[&server.base, AK, SK, PROJECT, &instance],
    )
    .await;
    server.stop().await;
}
