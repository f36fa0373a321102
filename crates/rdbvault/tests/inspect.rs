//! `rdbvault inspect` on dumps written by a real redis-server, from a file
//! and from a backup in the store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Db, PROJECT, RedisServer, TestServer, fill_all_types};

fn inspect(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .arg("inspect")
        .args(args)
        .arg("--json")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `.rdb` files under `dir`, at any depth.
fn rdb_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(rdb_files(&path));
        } else if path.extension().is_some_and(|e| e == "rdb") {
            found.push(path);
        }
    }
    found
}

fn check(report: &serde_json::Value, redis: &RedisServer) {
    let dbsize = |db: &str| redis.cli(&["-n", db, "DBSIZE"]).parse::<u64>().unwrap();
    assert_eq!(report["keys"], dbsize("0") + dbsize("1") + dbsize("5"));
    for db in ["0", "1", "5"] {
        assert_eq!(report["databases"][db]["keys"], dbsize(db), "db {db}");
        // str:ttl, str:pttl and hash:big expire in each database.
        assert_eq!(report["databases"][db]["expiring"], 3, "db {db}");
    }
    let enc = &report["by_encoding"];
    for kind in [
        "string/raw",
        "hash/listpack",
        "hash/hashtable",
        "set/intset",
        "set/hashtable",
        "zset/listpack",
        "zset/skiplist",
        "list/quicklist-listpack",
        "stream/listpacks",
    ] {
        assert!(
            enc[kind]["keys"].as_u64().unwrap_or(0) > 0,
            "no {kind}: {enc}"
        );
    }
    assert_eq!(enc["hash/hashtable"]["elements"], 3 * 300);
    // Sizes are bytes in the file: the 100 kB of `str:big` compress to almost
    // nothing; the 300 members of `zset:big` take the most.
    assert_eq!(
        report["biggest_by_size"][0]["key"], "zset:big",
        "{}",
        report["biggest_by_size"]
    );
    assert!(report["biggest_by_size"][0]["measure"].as_u64().unwrap() > 1000);
    assert_eq!(report["biggest_by_elements"][0]["measure"], 300);
    let prefixes: Vec<&str> = report["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["prefix"].as_str().unwrap())
        .collect();
    assert!(
        prefixes.contains(&"str") && prefixes.contains(&"hash"),
        "{prefixes:?}"
    );
    // Every TTL set (100000 s, 99999999 ms) is between a day and a week.
    assert_eq!(report["ttl"]["< 1 week"], 9, "{}", report["ttl"]);
    assert!(
        report["aux"]["redis-ver"]
            .as_str()
            .unwrap()
            .starts_with('7')
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_a_file_and_a_backup() {
    let redis = RedisServer::start_fast(&[]);
    fill_all_types(&redis).await;
    assert_eq!(redis.cli(&["SAVE"]), "OK");
    let dump = redis.data_dir().join("dump.rdb");
    check(&inspect(&[dump.to_str().unwrap()], &[]), &redis);

    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.start_backup(&instance).await;
    assert_eq!(
        server.wait_backup(&instance, &backup).await["status"],
        "succeed"
    );
    let env = [
        ("RDBVAULT_ENDPOINT", server.base.as_str()),
        ("RDBVAULT_AK", common::AK),
        ("RDBVAULT_SK", common::SK),
        ("RDBVAULT_PROJECT_ID", PROJECT),
    ];
    check(&inspect(&[&backup, "--instance", &instance], &env), &redis);

    // --keys: one JSON line per key of the backup, TTLs included.
    let log = redis.data_dir().join("keys.jsonl");
    inspect(
        &[
            &backup,
            "--instance",
            &instance,
            "--keys",
            log.to_str().unwrap(),
        ],
        &env,
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dbsize = |db: &str| redis.cli(&["-n", db, "DBSIZE"]).parse::<usize>().unwrap();
    assert_eq!(lines.len(), dbsize("0") + dbsize("1") + dbsize("5"));
    let big = lines
        .iter()
        .find(|l| l["db"] == 0 && l["key"] == "zset:big")
        .expect("zset:big in the key log");
    assert_eq!(big["elements"], 300);
    assert_eq!(big["kind"], "zset/skiplist");
    assert!(big["bytes"].as_u64().unwrap() > 1000);
    let ttls = lines.iter().filter(|l| l["expire_ms"].is_i64()).count();
    assert_eq!(ttls, 9);

    // A stored file damaged after the backup: the analysis streamed from
    // the store fails, naming the file, instead of reporting on bad data.
    let stored = rdb_files(server.dir.path());
    assert_eq!(stored.len(), 1, "{stored:?}");
    let mut bytes = std::fs::read(&stored[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&stored[0], &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .args(["inspect", &backup, "--instance", &instance, "--json"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let name = stored[0].file_name().unwrap().to_string_lossy();
    assert!(err.contains(name.as_ref()), "{err}");

    // Gone from the store: the link answers 404, and the error names the
    // file without printing the link (its query string is a signature).
    std::fs::remove_file(&stored[0]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .args(["inspect", &backup, "--instance", &instance])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(name.as_ref()) && err.contains("404"), "{err}");
    assert!(!err.contains("Signature"), "{err}");

    // A file that is not an RDB is refused with a clear error.
    let junk = redis.data_dir().join("junk.rdb");
    std::fs::write(&junk, b"not an rdb at all").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .args(["inspect"])
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.rdb"));
    server.stop().await;
}

/// A Redis 8.2 dump: hashes with expiring fields (listpack and hashtable),
/// set listpacks, streams with their entries, and module values named by
/// their module type (FalkorDB graphs).
#[test]
fn inspect_a_redis_8_2_dump_with_field_expiry_and_modules() {
    let module = common::redis_8_2_dir().join("falkordb.so");
    let redis = RedisServer::start_8_2(&[
        "--loadmodule",
        module.to_str().unwrap(),
        "--hash-max-listpack-entries",
        "16",
    ]);
    redis.cli(&["HSET", "hx:small", "a", "1", "b", "2", "c", "3"]);
    redis.cli(&["HPEXPIRE", "hx:small", "100000000", "FIELDS", "2", "a", "b"]);
    let fields: Vec<String> = (0..40)
        .flat_map(|i| [format!("f{i}"), i.to_string()])
        .collect();
    let mut args = vec!["HSET", "hx:big"];
    args.extend(fields.iter().map(String::as_str));
    redis.cli(&args);
    redis.cli(&["HPEXPIRE", "hx:big", "100000000", "FIELDS", "1", "f7"]);
    redis.cli(&["SADD", "set:small", "a", "b", "c"]);
    for i in 0..25 {
        redis.cli(&["XADD", "st", "*", "n", &i.to_string()]);
    }
    redis.cli(&["GRAPH.QUERY", "g", "CREATE (:P {n: 1})-[:K]->(:P {n: 2})"]);
    assert_eq!(redis.cli(&["SAVE"]), "OK");

    let report = inspect(&[redis.data_dir().join("dump.rdb").to_str().unwrap()], &[]);
    assert_eq!(report["version"], 12);
    assert_eq!(report["keys"], 5);
    let enc = &report["by_encoding"];
    assert_eq!(enc["hash/listpack-ex"]["elements"], 3, "{enc}");
    assert_eq!(enc["hash/hashtable-ex"]["elements"], 40, "{enc}");
    assert_eq!(enc["set/listpack"]["elements"], 3, "{enc}");
    assert_eq!(enc["stream/listpacks"]["elements"], 25, "{enc}");
    assert_eq!(enc["module/graphdata"]["keys"], 1, "{enc}");
}
