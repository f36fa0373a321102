//! Secrets at rest: Redis passwords and link keys are sealed with the master
//! key, which never enters the database; a copy of the database alone
//! opens nothing, a node with another key refuses to start, and
//! `rdbvault keys rotate` re-seals everything with a new key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Db, RedisServer, TestServer};
use rdbvault::config::Config;
use rdbvault::meta::{Keyring, Meta, MetaError};

const PASSWORD: &str = "pw-7f3a-never-in-the-db";

/// Every byte the SQLite database keeps on disk (file, WAL, shared memory).
fn database_bytes(data_dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["meta.db", "meta.db-wal", "meta.db-shm"] {
        if let Ok(bytes) = std::fs::read(data_dir.join(name)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn raw_pool(data_dir: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", data_dir.join("meta.db").display()))
        .await
        .unwrap()
}

/// A service on `dir` (which the caller keeps: stop it with `stop`).
async fn restart(config: &Config, dir: &Path) -> TestServer {
    let config = Config {
        data_dir: dir.to_path_buf(),
        ..config.clone()
    };
    TestServer::start_with(Db::Sqlite, |c| *c = config).await
}

async fn register_with_password(server: &TestServer, redis: &RedisServer) -> String {
    server
        .register(serde_json::json!({
            "name": "sealed", "mode": "single", "addrs": [redis.addr()], "password": PASSWORD,
        }))
        .await
}

async fn link(server: &TestServer, instance: &str, backup: &str) -> String {
    let item = server.first_link(instance, backup, 3600).await;
    item["link"].as_str().unwrap().to_string()
}

fn rotate(data_dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .args(["keys", "rotate"])
        .args(extra)
        .env("RDBVAULT_DATA_DIR", data_dir)
        .env_remove("RDBVAULT_MASTER_KEY")
        .output()
        .unwrap()
}

fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_link_keys_are_sealed_and_the_database_alone_opens_nothing() {
    let redis = RedisServer::start_fast(&["--requirepass", PASSWORD]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = register_with_password(&server, &redis).await;
    // The sealed password opens: a backup authenticates with it.
    let backup = server.backed_up(&instance).await;
    let link = link(&server, &instance, &backup).await;
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 200);

    let dir = server.config.data_dir.clone();
    let key = key_file(&dir);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key.display());
    let key_text = std::fs::read_to_string(&key).unwrap();

    // What the tables hold: no plaintext, sealed values naming the key.
    let pool = raw_pool(&dir).await;
    let (plain, sealed): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT password, password_sealed FROM instances WHERE id = ?")
            .bind(&instance)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(plain, None);
    let sealed = sealed.unwrap();
    let (key_id,): (String,) = sqlx::query_as("SELECT key_id FROM sealing")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(sealed.starts_with(&format!("{key_id}:")), "{sealed}");
    let link_keys: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT secret, secret_sealed FROM link_keys")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(!link_keys.is_empty());
    for (secret, sealed) in &link_keys {
        assert_eq!(secret, "");
        assert!(sealed.as_deref().unwrap().starts_with(&key_id));
    }
    pool.close().await;
    let bytes = database_bytes(&dir);
    assert!(!contains(&bytes, PASSWORD.as_bytes()), "password on disk");
    assert!(
        !contains(&bytes, key_text.trim().as_bytes()),
        "master key in the database"
    );

    // A copy of the database, opened with any other key: refused, by id.
    let _kept = server.stop_keeping_data().await;
    let copy = tempfile::tempdir().unwrap();
    for name in ["meta.db", "meta.db-wal"] {
        if dir.join(name).exists() {
            std::fs::copy(dir.join(name), copy.path().join(name)).unwrap();
        }
    }
    let url = format!("sqlite://{}", copy.path().join("meta.db").display());
    let err = Meta::connect(&url, Keyring::ephemeral())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, MetaError::MasterKey(_)), "{err}");
    assert!(err.to_string().contains(&key_id), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_key_refuses_to_start() {
    let server = TestServer::start(Db::Sqlite).await;
    let dir = server.stop_keeping_data().await;
    std::fs::write(key_file(dir.path()), format!("{}\n", "A".repeat(43) + "=")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .arg("serve")
        .env("RDBVAULT_DATA_DIR", dir.path())
        .env(
            "RDBVAULT_LISTEN",
            format!("127.0.0.1:{}", common::free_port()),
        )
        .env("RDBVAULT_AUTH", "none")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sealed with master key") && err.contains("RDBVAULT_MASTER_KEY"),
        "{err}"
    );
}

/// A database written by a release that kept secrets in plaintext: the next
/// start seals them, leaves no copy on disk, and they still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_left_by_an_earlier_release_is_sealed_at_start() {
    let redis = RedisServer::start_fast(&["--requirepass", PASSWORD]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = register_with_password(&server, &redis).await;
    let config = server.config.clone();
    let dir = server.stop_keeping_data().await;
    let pool = raw_pool(dir.path()).await;
    sqlx::query("UPDATE instances SET password = ?, password_sealed = NULL")
        .bind(PASSWORD)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM link_keys")
        .execute(&pool)
        .await
        .unwrap();
    let legacy_secret = "ab".repeat(32);
    sqlx::query("INSERT INTO link_keys (id, secret, created_at) VALUES ('RVLEGACY', ?, 1)")
        .bind(&legacy_secret)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(contains(&database_bytes(dir.path()), PASSWORD.as_bytes()));

    let again = restart(&config, dir.path()).await;
    let backup = again.backed_up(&instance).await;
    let link = link(&again, &instance, &backup).await;
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 200);
    let pool = raw_pool(dir.path()).await;
    let (plain,): (Option<String>,) = sqlx::query_as("SELECT password FROM instances")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(plain, None);
    let (secret,): (String,) = sqlx::query_as("SELECT secret FROM link_keys WHERE id = 'RVLEGACY'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(secret, "");
    pool.close().await;
    let bytes = database_bytes(dir.path());
    assert!(
        !contains(&bytes, PASSWORD.as_bytes()),
        "plaintext password left on disk"
    );
    assert!(
        !contains(&bytes, legacy_secret.as_bytes()),
        "plaintext link key left on disk"
    );
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_reseals_everything_and_survives_a_crash_midway() {
    let redis = RedisServer::start_fast(&["--requirepass", PASSWORD]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = register_with_password(&server, &redis).await;
    let backup = server.backed_up(&instance).await;
    let old_link = link(&server, &instance, &backup).await;
    let old_base = server.base.clone();
    let dir = server.config.data_dir.clone();

    // Refused while the node runs: it would go on sealing with the old key.
    let out = rotate(&dir, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop every node first"), "{err}");

    let config = server.config.clone();
    let kept = server.stop_keeping_data().await;
    let old_key = std::fs::read_to_string(key_file(&dir)).unwrap();
    let out = rotate(&dir, &["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["resealed"], 2,
        "one password, one link key: {report}"
    );
    let new_key = std::fs::read_to_string(key_file(&dir)).unwrap();
    assert_ne!(old_key, new_key);
    assert!(!dir.join("master.key.next").exists());
    let mode = std::fs::metadata(key_file(&dir))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // The old key opens nothing any more.
    let stale = tempfile::tempdir().unwrap();
    std::fs::write(key_file(stale.path()), &old_key).unwrap();
    let stale_config = Config {
        data_dir: stale.path().to_path_buf(),
        database_url: Some(config.database_url()),
        ..Config::default()
    };
    assert!(matches!(
        Meta::open(&stale_config).await.err().unwrap(),
        rdbvault::meta::OpenError::Meta(MetaError::MasterKey(_))
    ));

    // The service starts on the new key: the password and the link key work.
    let again = restart(&config, kept.path()).await;
    let old_link = old_link.replacen(&old_base, &again.base, 1);
    assert_eq!(reqwest::get(&old_link).await.unwrap().status(), 200);
    again.backed_up(&instance).await;
    again.stop().await;

    // A crash after the database was re-sealed, before the new key replaced
    // the old file: the next start finishes the rotation.
    let before = std::fs::read_to_string(key_file(&dir)).unwrap();
    let out = rotate(&dir, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(key_file(&dir)).unwrap();
    std::fs::write(dir.join("master.key.next"), &after).unwrap();
    std::fs::write(key_file(&dir), &before).unwrap();
    let again = restart(&config, kept.path()).await;
    again.backed_up(&instance).await;
    assert_eq!(std::fs::read_to_string(key_file(&dir)).unwrap(), after);
    assert!(!dir.join("master.key.next").exists());
    again.stop().await;

    // A crash before the database was touched: the stray new key is dropped.
    use base64::Engine;
    let stray = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    std::fs::write(dir.join("master.key.next"), format!("{stray}\n")).unwrap();
    let again = restart(&config, kept.path()).await;
    again.backed_up(&instance).await;
    assert_eq!(std::fs::read_to_string(key_file(&dir)).unwrap(), after);
    assert!(!dir.join("master.key.next").exists());
    again.stop().await;
}

/// The key given as a value (the environment): no key file is written, and
/// rotation needs a file of the operator's choosing for the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_given_in_the_environment() {
    let redis = RedisServer::start_fast(&["--requirepass", PASSWORD]);
    let value = format!("{}=", "Q".repeat(43));
    let server = TestServer::start_with(Db::Sqlite, |c| {
        c.master_key = Some(rdbvault::config::Redacted(value.clone()));
    })
    .await;
    let instance = register_with_password(&server, &redis).await;
    server.backed_up(&instance).await;
    let dir = server.config.data_dir.clone();
    assert!(!key_file(&dir).exists());
    let _kept = server.stop_keeping_data().await;

    let rotate_env = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .args(["keys", "rotate"])
            .args(extra)
            .env("RDBVAULT_DATA_DIR", &dir)
            .env("RDBVAULT_MASTER_KEY", &value)
            .output()
            .unwrap()
    };
    let out = rotate_env(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));
    let new = dir.join("new.key");
    let out = rotate_env(&["--out", new.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("RDBVAULT_MASTER_KEY"));
    let config = Config {
        data_dir: dir.clone(),
        master_key_file: Some(new),
        ..Config::default()
    };
    Meta::open(&config).await.unwrap();
}
