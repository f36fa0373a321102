//! AOF-format backups (`"backup_format": "aof"`) against real redis-server
//! processes: the stored file is RESP commands that rebuild the snapshot,
//! proven by `DEBUG DIGEST` of a fresh server that took it through
//! `redis-cli --pipe` and of one that loaded it as its append-only file, on
//! every release; cluster shards, `ha` replicas and copies, links, module
//! values, and a payload still verified as an RDB first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    Db, PROJECT, RedisCluster, RedisServer, Release, TestServer, fill_all_types, slot_label,
    wait_for,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

per_release!(aof_backup_rebuilds_the_dataset);
local_and_s3!(aof_link_downloads_the_stored_bytes);

type Cmd = Vec<Vec<u8>>;

/// Starts an AOF backup of `instance` and waits for its end.
async fn aof_backup(server: &TestServer, instance: &str) -> (String, serde_json::Value) {
    let r = server
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/backups"),
        )
        .json(r#"{"remark": "aof test", "backup_format": "aof"}"#)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let backup = r.json()["backup_id"].as_str().unwrap().to_string();
    let record = server.wait_backup(instance, &backup).await;
    (backup, record)
}

/// The one stored file of a single-node backup, its record checked.
fn the_aof_file(
    server: &TestServer,
    instance: &str,
    backup: &str,
    record: &serde_json::Value,
) -> PathBuf {
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(record["backup_format"], "aof", "{record}");
    assert_eq!(record["progress"], "100.00", "{record}");
    // Restores replay them.
    assert_eq!(record["is_support_restore"], "TRUE", "{record}");
    let files = server.stored_files(instance, backup);
    assert_eq!(files.len(), 1, "{files:?}");
    let size = std::fs::metadata(&files[0]).unwrap().len();
    assert_eq!(record["size"], size, "the record's size is the AOF's");
    files[0].clone()
}

/// `redis_127.0.0.1_{port}[_{slots}]_{yyyyMMddHHmmss}.aof`.
#[track_caller]
fn assert_aof_name(file: &Path, port: u16, slots: Option<&str>) {
    let name = file.file_name().unwrap().to_str().unwrap();
    let slots = slots.map(|s| format!("{s}_")).unwrap_or_default();
    let prefix = format!("redis_127.0.0.1_{port}_{slots}");
    let stamp = name
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(".aof"))
        .unwrap_or_else(|| panic!("{name} is not {prefix}{{time}}.aof"));
    assert!(
        stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
}

/// The commands of a RESP file; panics unless the whole file is commands.
fn commands(aof: &[u8]) -> Vec<Cmd> {
    fn number(b: &[u8], at: usize, prefix: u8) -> (usize, usize) {
        assert_eq!(b[at], prefix, "byte {at}");
        let end = at + b[at..].windows(2).position(|w| w == b"\r\n").unwrap();
        let n = std::str::from_utf8(&b[at + 1..end])
            .unwrap()
            .parse()
            .unwrap();
        (n, end + 2)
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < aof.len() {
        let (n, next) = number(aof, at, b'*');
        at = next;
        let mut cmd = Vec::with_capacity(n);
        for _ in 0..n {
            let (len, next) = number(aof, at, b'$');
            cmd.push(aof[next..next + len].to_vec());
            assert_eq!(&aof[next + len..next + len + 2], b"\r\n");
            at = next + len + 2;
        }
        out.push(cmd);
    }
    out
}

fn named<'a>(cmds: &'a [Cmd], name: &str) -> Vec<&'a Cmd> {
    cmds.iter()
        .filter(|c| c[0].eq_ignore_ascii_case(name.as_bytes()))
        .collect()
}

/// `redis-cli --pipe < file` into `redis`: its summary line.
fn pipe(redis: &RedisServer, file: &Path) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string(), "--pipe"])
        .stdin(std::fs::File::open(file).unwrap())
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli on PATH");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with("errors:"))
        .unwrap_or_else(|| panic!("no summary from redis-cli --pipe: {text}"))
        .to_string()
}

#[track_caller]
fn assert_piped_cleanly(summary: &str) {
    assert!(summary.starts_with("errors: 0, replies: "), "{summary}");
}

/// How a server is given the file as its append-only file.
#[derive(Clone, Copy, Debug)]
enum AsAppendOnly {
    /// `appendfilename` in `dir`: read as is before 7.0, migrated into a
    /// multi-part AOF directory (as its base file) by 7.0 and later.
    File,
    /// The 7.0+ layout: the file in `appenddirname` and a manifest naming
    /// it as the base.
    Manifest,
}

/// A fresh server of `release` that loads `aof` at start; the directory
/// lives as long as the returned guard.
fn load_appendonly(
    release: Release,
    aof: &Path,
    how: AsAppendOnly,
) -> (RedisServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().display().to_string();
    let mut args = vec!["--dir", &dir_arg, "--appendonly", "yes"];
    match how {
        AsAppendOnly::File => {
            std::fs::copy(aof, dir.path().join("backup.aof")).unwrap();
            args.extend(["--appendfilename", "backup.aof"]);
        }
        AsAppendOnly::Manifest => {
            let sub = dir.path().join("appendonlydir");
            std::fs::create_dir(&sub).unwrap();
            std::fs::copy(aof, sub.join("backup.aof")).unwrap();
            std::fs::write(
                sub.join("appendonly.aof.manifest"),
                "file backup.aof seq 1 type b\n",
            )
            .unwrap();
        }
    }
    let server = RedisServer::start_release(release, &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !server.cli(&["INFO", "persistence"]).contains("loading:0") {
        assert!(std::time::Instant::now() < deadline, "still loading");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server
            .cli(&["INFO", "persistence"])
            .contains("aof_enabled:1")
    );
    (server, dir)
}

/// Every type in both encodings, TTLs, three databases, on each release's
/// defaults; 7.0+ a function library, 8.2 hash fields that expire. The
/// AOF is RESP commands only, each database selected, each TTL a
/// `PEXPIREAT`, and a fresh server of the release holds the same data after
/// `redis-cli --pipe` and after loading it as its append-only file.
async fn aof_backup_rebuilds_the_dataset(release: Release) {
    let source = RedisServer::start_release(release, &[]);
    fill_all_types(&source).await;
    let functions = release != Release::V6_2;
    if functions {
        let code = "#!lua name=aoflib\nredis.register_function('aof_echo', function(keys, args) return args[1] end)";
        assert_eq!(source.cli(&["FUNCTION", "LOAD", code]), "aoflib");
    }
    if release == Release::V8_2 {
        source.cli(&["HSET", "hx", "f1", "v1", "f2", "v2", "f3", "v3"]);
        source.cli(&["HPEXPIRE", "hx", "100000000", "FIELDS", "2", "f1", "f2"]);
    }
    let digest = source.digest().await;
    let function_list = source.cli(&["FUNCTION", "LIST", "WITHCODE"]);

    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&source.addr()).await;
    let (backup, record) = aof_backup(&server, &instance).await;
    let file = the_aof_file(&server, &instance, &backup, &record);
    assert_aof_name(&file, source.port, None);

    let bytes = std::fs::read(&file).unwrap();
    assert!(!bytes.starts_with(b"REDIS"), "an RDB was stored");
    let cmds = commands(&bytes);
    let selects: Vec<String> = named(&cmds, "SELECT")
        .iter()
        .map(|c| String::from_utf8_lossy(&c[1]).into_owned())
        .collect();
    assert_eq!(selects, ["0", "1", "5"], "one SELECT per database");
    // str:ttl, str:pttl and hash:big in each of the three databases.
    assert_eq!(named(&cmds, "PEXPIREAT").len(), 9);
    assert_eq!(named(&cmds, "FUNCTION").len(), usize::from(functions));
    if functions {
        assert_eq!(
            named(&cmds, "FUNCTION")[0][1..3],
            [b"LOAD".to_vec(), b"REPLACE".to_vec()]
        );
    }
    assert_eq!(
        named(&cmds, "HPEXPIREAT").len(),
        usize::from(release == Release::V8_2)
    );
    assert!(
        named(&cmds, "RESTORE").is_empty(),
        "values are native commands"
    );

    let fresh = RedisServer::start_release(release, &[]);
    assert_piped_cleanly(&pipe(&fresh, &file));
    assert_eq!(fresh.digest().await, digest, "{release:?} after --pipe");
    assert_eq!(fresh.cli(&["FUNCTION", "LIST", "WITHCODE"]), function_list);
    let ttl: i64 = fresh.cli(&["-n", "5", "TTL", "str:ttl"]).parse().unwrap();
    assert!(ttl > 99_000 && ttl <= 100_000, "{ttl}");
    if release == Release::V8_2 {
        let ttls = fresh.cli(&["HPTTL", "hx", "FIELDS", "3", "f1", "f2", "f3"]);
        let ttls: Vec<i64> = ttls.lines().map(|l| l.parse().unwrap()).collect();
        assert!(ttls[0] > 0 && ttls[1] > 0 && ttls[2] == -1, "{ttls:?}");
    }

    let ways: &[AsAppendOnly] = match release {
        Release::V6_2 => &[AsAppendOnly::File],
        _ => &[AsAppendOnly::File, AsAppendOnly::Manifest],
    };
    for &how in ways {
        let (loaded, _dir) = load_appendonly(release, &file, how);
        assert_eq!(loaded.digest().await, digest, "{release:?} {how:?}");
        assert_eq!(loaded.cli(&["FUNCTION", "LIST", "WITHCODE"]), function_list);
    }
    server.stop().await;
}

/// The link of an AOF backup downloads the stored bytes, named `.aof`;
/// keys expired but not yet reclaimed when the snapshot was taken are in
/// the RDB and left out of the AOF.
async fn aof_link_downloads_the_stored_bytes(db: Db) {
    let source = RedisServer::start_fast(&[]);
    fill_all_types(&source).await;
    assert_eq!(source.cli(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), "OK");
    source.cli(&["SET", "expired:gone", "v", "PX", "1"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let server = TestServer::start(db).await;
    let instance = server.register_single(&source.addr()).await;

    let rdb_backup = server.start_backup(&instance).await;
    assert_eq!(
        server.wait_backup(&instance, &rdb_backup).await["status"],
        "succeed"
    );
    let rdb = std::fs::read(&server.stored_files(&instance, &rdb_backup)[0]).unwrap();
    let holds = |bytes: &[u8], what: &[u8]| bytes.windows(what.len()).any(|w| w == what);
    assert!(holds(&rdb, b"expired:gone"), "the snapshot holds the key");

    let (backup, record) = aof_backup(&server, &instance).await;
    let file = the_aof_file(&server, &instance, &backup, &record);
    let stored = std::fs::read(&file).unwrap();
    assert!(holds(&stored, b"str:small"));
    assert!(
        !holds(&stored, b"expired:gone"),
        "an expired key was written"
    );

    let r = server
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}/links"),
        )
        .json(r#"{"expiration": 300}"#)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let links = r.json()["links"].as_array().unwrap().clone();
    assert_eq!(links.len(), 1);
    let name = file.file_name().unwrap().to_str().unwrap();
    assert_eq!(links[0]["file_name"], name);
    assert!(name.ends_with(".aof"), "{name}");
    assert_eq!(links[0]["size"], stored.len());
    let link = links[0]["link"].as_str().unwrap();
    let out = Command::new("curl")
        .args(["-s", "-f", link])
        .output()
        .expect("curl on PATH");
    assert!(out.status.success(), "{link}");
    assert_eq!(out.stdout, stored, "the link serves the stored bytes");
    server.stop().await;
}

/// One `.aof` per shard, named by its slots; each holds exactly its
/// master's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_aof_backup_is_one_file_per_shard() {
    let cluster = RedisCluster::start_fast(3, 0);
    cluster.fill(3000).await;
    cluster.wait_ok();
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server
        .register(json!({"name": format!("c{}", uuid::Uuid::new_v4().simple()), "mode": "cluster", "addrs": [cluster.seed()]}))
        .await;
    let (backup, record) = aof_backup(&server, &instance).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(record["backup_format"], "aof");
    let files = server.stored_files(&instance, &backup);
    let masters = cluster.masters();
    assert_eq!(files.len(), masters.len(), "{files:?}");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(record["size"], total);
    for (master, slots) in &masters {
        let label = slot_label(slots);
        let file = files
            .iter()
            .find(|f| {
                let name = f.file_name().unwrap().to_str().unwrap();
                name.starts_with(&format!("redis_127.0.0.1_{}_{label}_", master.port))
            })
            .unwrap_or_else(|| panic!("no file for {label}: {files:?}"));
        assert_aof_name(file, master.port, Some(&label));
        let fresh = RedisServer::start_fast(&[]);
        assert_piped_cleanly(&pipe(&fresh, file));
        assert_eq!(fresh.cli(&["DBSIZE"]), master.cli(&["DBSIZE"]), "{label}");
        assert_eq!(fresh.digest().await, master.digest().await, "{label}");
    }
    server.stop().await;
}

/// `ha`: from the in-sync replica, and with the master dead from the
/// key-by-key copy of the replica (the other way a payload is made).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_aof_backups_from_the_replica_and_from_its_copy() {
    let mut master = RedisServer::start_fast(&[]);
    let replica = RedisServer::start_fast(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    fill_all_types(&master).await;
    let digest = master.digest().await;
    wait_for(
        "the replica to be in sync",
        Duration::from_secs(20),
        || async { (replica.digest().await == digest).then_some(()) },
    )
    .await;
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server
        .register(json!({"name": "ha", "mode": "ha", "addrs": [master.addr(), replica.addr()]}))
        .await;
    let (backup, record) = aof_backup(&server, &instance).await;
    let file = the_aof_file(&server, &instance, &backup, &record);
    assert_eq!(
        record["source_node"],
        format!("{} (replica)", replica.addr())
    );
    assert_aof_name(&file, replica.port, None);
    let fresh = RedisServer::start_fast(&[]);
    assert_piped_cleanly(&pipe(&fresh, &file));
    assert_eq!(fresh.digest().await, digest);

    master.kill();
    // Keep the dead master's port taken so that no other test's server
    // becomes the replica's master again (best effort, as in backup.rs).
    let _port_held = tokio::net::TcpSocket::new_v4().and_then(|socket| {
        socket.set_reuseaddr(false)?;
        socket.bind(([127, 0, 0, 1], master.port).into())?;
        Ok(socket)
    });
    replica.wait_master_link(false).await;
    let (backup, record) = aof_backup(&server, &instance).await;
    let file = the_aof_file(&server, &instance, &backup, &record);
    assert!(
        record["source_node"]
            .as_str()
            .unwrap()
            .contains("copied as of replication offset"),
        "{record}"
    );
    let fresh = RedisServer::start_fast(&[]);
    assert_piped_cleanly(&pipe(&fresh, &file));
    assert_eq!(fresh.digest().await, digest);
    server.stop().await;
}

/// FalkorDB graphs (module values) have no native commands: they are
/// written as `RESTORE` of their payload, which a server with the module
/// loads; one without it reports the error rather than dropping the key
/// silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_values_are_written_as_restore() {
    let module = common::redis_8_2_dir().join("falkordb.so");
    let module = module.to_str().unwrap();
    let source = RedisServer::start_8_2(&["--loadmodule", module]);
    let query = "CREATE (:P {n: 1, name: 'a'})-[:K {w: 2.5}]->(:P {n: 2})";
    source.cli(&["GRAPH.QUERY", "g", query]);
    source.cli(&["SET", "plain", "x", "EX", "100000"]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&source.addr()).await;
    let (backup, record) = aof_backup(&server, &instance).await;
    let file = the_aof_file(&server, &instance, &backup, &record);
    let cmds = commands(&std::fs::read(&file).unwrap());
    let restores = named(&cmds, "RESTORE");
    assert_eq!(restores.len(), 1, "one RESTORE, for the graph");
    assert_eq!(restores[0][1], b"g");
    assert_eq!(restores[0][4], b"REPLACE");

    let read = "MATCH (n) OPTIONAL MATCH (n)-[r]->(m) RETURN n.n, n.name, r.w, m.n ORDER BY n.n";
    let with_module = RedisServer::start_8_2(&["--loadmodule", module]);
    assert_piped_cleanly(&pipe(&with_module, &file));
    let rows = |r: &RedisServer| {
        let out = r.cli(&["GRAPH.QUERY", "g", read]);
        // The last lines are statistics (cached or not, timing).
        out.lines()
            .filter(|l| !l.contains("execution"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&with_module), rows(&source));
    assert!(
        rows(&source).iter().any(|l| l == "2.5"),
        "{:?}",
        rows(&source)
    );
    assert_eq!(with_module.cli(&["GET", "plain"]), "x");

    let without = RedisServer::start_8_2(&[]);
    let summary = pipe(&without, &file);
    assert!(summary.starts_with("errors: 1,"), "{summary}");
    assert_eq!(without.cli(&["GET", "plain"]), "x");
    server.stop().await;
}

/// `backup_format`: `rdb` (the default) and `aof` accepted, each named and
/// recorded as such; anything else refused as an invalid parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_formats_are_validated() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    let server = TestServer::start(Db::Sqlite).await;
    let instance = server.register_single(&redis.addr()).await;
    let path = format!("/v2/{PROJECT}/instances/{instance}/backups");
    for bad in ["xml", "AOF", ""] {
        let r = server
            .req("POST", &path)
            .json(&json!({ "backup_format": bad }).to_string())
            .send()
            .await;
        r.assert_error(400, "DCS.4800");
        let msg = r.json()["error_msg"].as_str().unwrap().to_string();
        assert!(
            msg.contains("backup_format") && msg.contains("not one of rdb, aof"),
            "{bad}: {msg}"
        );
    }
    server
        .req("POST", &path)
        .json(r#"{"backup_format": 1}"#)
        .send()
        .await
        .assert_error(400, "DCS.4800");
    for (body, format, restorable) in [
        (r#"{"backup_format": "rdb"}"#, "rdb", "TRUE"),
        (r#"{"backup_format": "aof"}"#, "aof", "TRUE"),
        ("{}", "rdb", "TRUE"),
    ] {
        let r = server.req("POST", &path).json(body).send().await;
        assert_eq!(
            r.status,
            200,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let backup = r.json()["backup_id"].as_str().unwrap().to_string();
        let record = server.wait_backup(&instance, &backup).await;
        assert_eq!(record["status"], "succeed", "{record}");
        assert_eq!(record["backup_format"], format, "{body}");
        assert_eq!(record["is_support_restore"], restorable, "{body}");
        let files = server.stored_files(&instance, &backup);
        let name = files[0].file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with(&format!(".{format}")), "{body}: {name}");
    }

    // An empty dataset is an empty file, still a complete backup.
    let empty = RedisServer::start_fast(&[]);
    let instance = server.register_single(&empty.addr()).await;
    let (backup, record) = aof_backup(&server, &instance).await;
    let file = the_aof_file(&server, &instance, &backup, &record);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0);
    server.stop().await;
}

/// A TCP server playing a master: `+OK` to the handshake, `+FULLRESYNC`
/// to PSYNC, then `payload` raw, then silence until the client hangs up.
async fn fake_master(payload: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let payload = payload.clone();
            tokio::spawn(async move {
                if until_psync(&mut sock).await {
                    let _ = sock.write_all(&payload).await;
                    let mut buf = [0u8; 4096];
                    while sock.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                }
            });
        }
    });
    addr
}

/// Answers commands until PSYNC (true) or the client leaves (false).
async fn until_psync(sock: &mut tokio::net::TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return false;
        }
        seen.extend_from_slice(&buf[..n]);
        // Whole commands only: `*N`, then N `$len` lines and their data.
        while let Some((name, used)) = first_command(&seen) {
            seen.drain(..used);
            let reply = match name.as_str() {
                "PSYNC" => format!("+FULLRESYNC {} 0\r\n", "a".repeat(40)),
                "INFO" => "$0\r\n\r\n".to_string(),
                _ => "+OK\r\n".to_string(),
            };
            let _ = sock.write_all(reply.as_bytes()).await;
            if name == "PSYNC" {
                return true;
            }
        }
    }
}

fn first_command(buf: &[u8]) -> Option<(String, usize)> {
    let text = std::str::from_utf8(buf).ok()?;
    let mut lines = text.split_inclusive("\r\n");
    let head = lines.next()?;
    let n: usize = head.trim().strip_prefix('*')?.parse().ok()?;
    let mut used = head.len();
    let mut name = String::new();
    for i in 0..n {
        let len_line = lines.next()?;
        let data = lines.next()?;
        if !data.ends_with("\r\n") {
            return None;
        }
        if i == 0 {
            name = data.trim_end().to_uppercase();
        }
        used += len_line.len() + data.len();
    }
    Some((name, used))
}

/// A disk-based payload (`$len` then the dump).
fn sized(dump: &[u8]) -> Vec<u8> {
    let mut payload = format!("${}\r\n", dump.len()).into_bytes();
    payload.extend_from_slice(dump);
    payload
}

async fn backup_of_fake(server: &TestServer, addr: &str, format: &str) -> serde_json::Value {
    let instance = server
        .register(
            json!({"name": format!("f{}", uuid::Uuid::new_v4().simple()),
            "mode": "single", "addrs": [addr], "verify": false}),
        )
        .await;
    let r = server
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/backups"),
        )
        .json(&json!({"backup_format": format}).to_string())
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let backup = r.json()["backup_id"].as_str().unwrap().to_string();
    let record = server.wait_backup(&instance, &backup).await;
    if record["status"] == "failed" {
        let left = common::all_files(&server.objects_root().join(&instance));
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    record
}

/// The payload is verified as an RDB before its AOF is kept: a corrupted
/// dump fails on its checksum (`dcs.08.0106`) even where decoding stumbled
/// first; a sound dump holding what cannot be converted fails as such
/// (`dcs.08.0112`), and its RDB backup succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_is_still_verified_as_an_rdb() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["DEBUG", "POPULATE", "20000"]);
    assert_eq!(redis.cli(&["SAVE"]), "OK");
    let mut dump = std::fs::read(redis.data_dir().join("dump.rdb")).unwrap();
    let server = TestServer::start(Db::Sqlite).await;

    // One flipped bit in a key's length: the decoder stops on garbage a
    // little further on, before the CRC-64 at the end, which decides.
    let at = dump.windows(8).position(|w| w == b"key:1000").unwrap() - 1;
    dump[at] ^= 0x04;
    let corrupt = fake_master(sized(&dump)).await;
    let record = backup_of_fake(&server, &corrupt, "aof").await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0106", "{record}");
    let msg = record["error_msg"].as_str().unwrap().to_lowercase();
    assert!(msg.contains("checksum"), "{record}");

    // Sound by every check the verifier makes (magic, version, EOF,
    // CRC-64), but a value type no release writes.
    let mut odd = b"REDIS0009\xfe\x00\x63\x01k\x01v\xff".to_vec();
    let crc = rdb::crc64::crc64(0, &odd);
    odd.extend_from_slice(&crc.to_le_bytes());
    let odd = fake_master(sized(&odd)).await;
    let record = backup_of_fake(&server, &odd, "aof").await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0112", "{record}");
    let msg = record["error_msg"].as_str().unwrap();
    assert!(
        msg.contains("passed verification") && msg.contains("backup_format rdb"),
        "{record}"
    );
    let record = backup_of_fake(&server, &odd, "rdb").await;
    assert_eq!(record["status"], "succeed", "{record}");
    server.stop().await;
}
