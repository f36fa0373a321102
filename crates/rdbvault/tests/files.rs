//! What the service keeps on disk is private: the data directory, the
//! metadata database and its journals, `node_id`, the credentials file and
//! every backup file are 0700/0600, and what was left more open is
//! tightened at start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Db, RedisServer, TestServer, all_files};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_on_disk_is_private() {
    // A data directory an earlier version left open.
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = data
        .path()
        .join("objects")
        .join("old-instance")
        .join("old-backup");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("redis_x.rdb"), b"REDIS").unwrap();
    for p in [data.path().join("objects"), old.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        old.join("redis_x.rdb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let dir = data.path().to_path_buf();
    let server = TestServer::start_with(Db::Sqlite, |c| c.data_dir = dir).await;
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    let instance = server.register_single(&redis.addr()).await;
    server.backed_up(&instance).await;

    assert_eq!(mode(data.path()), 0o700);
    let mut seen = 0;
    for file in all_files(data.path()) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        seen += 1;
        let mut dir = file.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(data.path())) {
            assert_eq!(mode(d), 0o700, "{}", d.display());
            dir = d.parent();
        }
    }
    let names: Vec<String> = all_files(data.path())
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for expected in ["meta.db", "node_id", "redis_x.rdb"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.starts_with("redis_127.0.0.1_")),
        "the new backup: {names:?}"
    );
    assert!(seen >= 4, "{names:?}");
    server.stop().await;
}
