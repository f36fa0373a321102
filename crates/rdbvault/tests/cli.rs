//! The real `rdbvault` binary: `serve` on first start, the client commands,
//! graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Db, RedisServer, TestServer, fill_all_types};

const BIN: &str = env!("CARGO_BIN_EXE_rdbvault");

struct Serve {
    child: std::process::Child,
    env: Vec<(String, String)>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `rdbvault serve` with nothing configured but a port and a data dir,
/// and reads the credentials it prints on first start.
fn serve(dir: &std::path::Path) -> Serve {
    let port = common::free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("RDBVAULT_LISTEN", format!("127.0.0.1:{port}"))
        .env("RDBVAULT_DATA_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut env = Vec::new();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(kv) = line.trim().strip_prefix("export ") {
            let (k, v) = kv.split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
        }
        if env.len() == 4 {
            break;
        }
    }
    assert_eq!(env.len(), 4, "first start prints endpoint, AK, SK, project");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Serve { child, env }
}

fn cli(env: &[(String, String)], args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn quickstart_with_generated_credentials() {
    let redis = RedisServer::start_fast(&["--requirepass", "pw-from-env"]);
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    let creds = std::fs::metadata(dir.path().join("credentials.toml")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&creds.permissions()) & 0o777,
        0o600
    );

    let mut env = server.env.clone();
    env.push(("REDIS_PW".into(), "pw-from-env".into()));
    let (ok, out, err) = cli(
        &env,
        &[
            "instance",
            "add",
            "--name",
            "c1",
            "--mode",
            "single",
            "--addr",
            &redis.addr(),
            "--password-env",
            "REDIS_PW",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = added["instance_id"].as_str().unwrap().to_string();
    assert!(!out.contains("pw-from-env"));

    let (ok, out, _) = cli(&env, &["instance", "list"]);
    assert!(ok);
    assert!(out.contains(&id) && out.contains("RUNNING"), "{out}");
    let (ok, out, _) = cli(&env, &["instance", "list", "--json"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["instance_num"], 1);
    let (ok, out, _) = cli(&env, &["instance", "show", &id, "--json"]);
    assert!(ok);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["cache_mode"], "single");

    // Errors come back as the DCS code, with a non-zero exit.
    let (ok, _, err) = cli(&env, &["instance", "show", "not-a-uuid"]);
    assert!(!ok);
    assert!(err.contains("DCS.4061"), "{err}");
    let mut wrong = server.env.clone();
    wrong.retain(|(k, _)| k != "RDBVAULT_SK");
    wrong.push(("RDBVAULT_SK".into(), "wrong".into()));
    let (ok, _, err) = cli(&wrong, &["instance", "list"]);
    assert!(!ok);
    assert!(err.contains("401") && err.contains("DCS.1001"), "{err}");

    let (ok, out, err) = cli(&env, &["instance", "remove", &id]);
    assert!(ok, "{out}{err}");
    let (_, out, _) = cli(&env, &["instance", "list", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["instance_num"],
        0
    );

    // SIGTERM: a clean exit.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit after SIGTERM: {status:?}");

    // Second start: credentials are loaded, not printed again.
    let port = common::free_port();
    let out = Command::new(BIN)
        .arg("serve")
        .env("RDBVAULT_LISTEN", format!("127.0.0.1:{port}"))
        .env("RDBVAULT_DATA_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = out.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let second = out.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&second.stdout).contains("RDBVAULT_SK"),
        "secret printed twice"
    );
}

#[test]
fn serve_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[[credentials]]\naccess_key = \"AK\"\nprojects = [\"p\"]\n",
    )
    .unwrap();
    let out = common::serve_config_output(&file, dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("credential AK") && err.contains("secret_key_file"),
        "{err}"
    );
}

#[test]
fn backup_commands() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["DEBUG", "POPULATE", "1000"]);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let env = server.env.clone();
    let (ok, out, err) = cli(
        &env,
        &[
            "instance",
            "add",
            "--name",
            "b1",
            "--mode",
            "single",
            "--addr",
            &redis.addr(),
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["instance_id"]
        .as_str()
        .unwrap()
        .to_string();

    let (ok, out, err) = cli(
        &env,
        &[
            "backup", "create", &id, "--remark", "nightly", "--wait", "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let record: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(record["status"], "succeed");
    assert_eq!(record["remark"], "nightly");
    assert_eq!(record["backup_format"], "rdb");
    let backup = record["backup_id"].as_str().unwrap().to_string();

    let (ok, out, _) = cli(&env, &["backup", "list", &id]);
    assert!(ok);
    assert!(
        out.contains(&backup) && out.contains("succeed") && out.contains("nightly"),
        "{out}"
    );

    let (ok, out, err) = cli(&env, &["backup", "delete", &id, &backup]);
    assert!(ok, "{out}{err}");
    let (_, out, _) = cli(&env, &["backup", "list", &id, "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["backup_record_response"][0]["status"], "deleted");

    let (ok, out, err) = cli(
        &env,
        &[
            "backup", "create", &id, "--format", "aof", "--wait", "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let record: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(record["backup_format"], "aof", "{record}");
    let (ok, _, err) = cli(&env, &["backup", "create", &id, "--format", "xml"]);
    assert!(!ok && err.contains("possible values"), "{err}");

    // --wait exits non-zero when the backup fails.
    let (ok, out, err) = cli(
        &env,
        &[
            "instance",
            "add",
            "--name",
            "gone",
            "--mode",
            "single",
            "--addr",
            &format!("127.0.0.1:{}", common::free_port()),
            "--no-verify",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let gone = serde_json::from_str::<serde_json::Value>(&out).unwrap()["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, _, err) = cli(&env, &["backup", "create", &gone, "--wait"]);
    assert!(!ok);
    assert!(
        err.contains("failed") && err.contains("dcs.08.0101"),
        "{err}"
    );
}

/// The client flags before the command group, `backup show`, the follow-up
/// hint of `backup create`, and the reason of a failure in `backup list`.
#[test]
fn client_flags_anywhere_and_backup_show() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["DEBUG", "POPULATE", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let env = server.env.clone();
    let json = |out: &str| -> serde_json::Value {
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    };

    let (ok, out, err) = cli(
        &env,
        &[
            "--json",
            "instance",
            "add",
            "--name",
            "f1",
            "--mode",
            "single",
            "--addr",
            &redis.addr(),
        ],
    );
    assert!(ok, "{out}{err}");
    let id = json(&out)["instance_id"].as_str().unwrap().to_string();

    // Without --wait: the id, and how to follow it.
    let (ok, out, err) = cli(&env, &["backup", "create", &id]);
    assert!(ok, "{out}{err}");
    let backup = out
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(';')
        .to_string();
    assert!(
        out.contains(&format!("rdbvault backup show {id} {backup} --wait")),
        "{out}"
    );
    let (ok, out, err) = cli(&env, &["backup", "show", &id, &backup, "--wait"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("succeed") && out.contains(&backup), "{out}");

    // --json before the group, between group and command, and at the end.
    for args in [
        vec!["--json", "backup", "list", &id],
        vec!["backup", "--json", "list", &id],
        vec!["backup", "list", &id, "--json"],
    ] {
        let (ok, out, err) = cli(&env, &args);
        assert!(ok, "{args:?}: {out}{err}");
        let listed = json(&out);
        assert_eq!(
            listed["backup_record_response"][0]["backup_id"], backup,
            "{args:?}"
        );
    }
    let (ok, out, err) = cli(&env, &["--json", "backup", "show", &id, &backup]);
    assert!(ok, "{out}{err}");
    assert_eq!(json(&out)["status"], "succeed");
    let (ok, out, err) = cli(&env, &["--json", "instance", "list"]);
    assert!(ok, "{out}{err}");
    assert_eq!(json(&out)["instances"][0]["status"], "RUNNING");

    // `serve` takes none of them.
    let (ok, _, err) = cli(&env, &["--json", "serve"]);
    assert!(!ok);
    assert!(err.contains("client option"), "{err}");

    // A failed backup: `list` shows the code and the reason, `show` all of it.
    let dead = format!("127.0.0.1:{}", common::free_port());
    let (ok, out, err) = cli(
        &env,
        &[
            "--json",
            "instance",
            "add",
            "--name",
            "f2",
            "--mode",
            "single",
            "--addr",
            &dead,
            "--no-verify",
        ],
    );
    assert!(ok, "{out}{err}");
    let gone = json(&out)["instance_id"].as_str().unwrap().to_string();
    let (ok, _, _) = cli(&env, &["backup", "create", &gone, "--wait"]);
    assert!(!ok);
    let (ok, out, err) = cli(&env, &["--json", "backup", "list", &gone]);
    assert!(ok, "{out}{err}");
    let record = json(&out)["backup_record_response"][0].clone();
    let failed = record["backup_id"].as_str().unwrap().to_string();
    let full = format!(
        "{}: {}",
        record["error_code"].as_str().unwrap(),
        record["error_msg"].as_str().unwrap()
    );
    assert!(full.starts_with("dcs.08.0101: "), "{full}");
    let (ok, out, err) = cli(&env, &["backup", "list", &gone]);
    assert!(ok, "{out}{err}");
    let row = out.lines().find(|l| l.contains(&failed)).unwrap();
    let shown = row.split_once("dcs.08.0101").unwrap().1;
    assert!(shown.starts_with(": ") && shown.trim().len() > 2, "{row}");
    assert!(row.trim_end().chars().count() < 200, "{row}");
    let (ok, out, err) = cli(&env, &["backup", "show", &gone, &failed, "--wait"]);
    assert!(!ok, "a failed backup waited for exits non-zero: {out}{err}");
    assert!(out.contains(&full), "{out}");
}

/// The client environment of an in-process test server.
fn env_of(server: &TestServer) -> Vec<(String, String)> {
    [
        ("RDBVAULT_ENDPOINT", server.base.as_str()),
        ("RDBVAULT_AK", common::AK),
        ("RDBVAULT_SK", common::SK),
        ("RDBVAULT_PROJECT_ID", common::PROJECT),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `cli` off the runtime's threads, so the in-process server keeps serving.
async fn cli_async(env: &[(String, String)], args: &[&str]) -> (bool, String, String) {
    let env = env.to_vec();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&env, &args)
    })
    .await
    .unwrap()
}

/// `restore create --wait` puts a flushed Redis back as it was backed up
/// and reports how; without `--wait` it names the command that follows
/// it; `--mode` and `--method` reach the service; `restore list` and
/// `restore show` show the restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_create_wait_list_and_show() {
    let redis = RedisServer::start_fast(&[]);
    fill_all_types(&redis).await;
    let digest = redis.digest().await;
    let server = TestServer::start(Db::Sqlite).await;
    let env = env_of(&server);
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.backed_up(&instance).await;

    redis.cli(&["FLUSHALL"]);
    assert_ne!(redis.digest().await, digest);
    let (ok, out, err) = cli_async(
        &env,
        &[
            "restore", "create", &instance, &backup, "--method", "restore", "--remark", "from cli",
            "--wait",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert_eq!(redis.digest().await, digest, "{out}");
    let restore = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no restore id: {out}"))
        .to_string();
    assert!(
        out.contains(&format!(
            "restore {restore} succeeded into {instance} (replace, restore: "
        )),
        "{out}"
    );
    // 3 databases of 16 keys each, all by RESTORE (the target reads the backup's version).
    assert!(
        out.contains("keys: 48 restored, 0 rebuilt, 0 replaced, 0 skipped"),
        "{out}"
    );
    let record = server.restore_record(&instance, &restore).await;
    assert_eq!(record["status"], "succeed", "{record}");
    assert_eq!(record["restore_remark"], "from cli", "{record}");
    assert_eq!(record["method"], "restore", "{record}");

    // Without --wait: the id and how to follow it; merge by commands over
    // the same keys replaces every one of them and changes nothing.
    let (ok, out, err) = cli_async(
        &env,
        &[
            "restore", "create", &instance, &backup, "--mode", "merge", "--method", "commands",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let merged = out
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(';')
        .to_string();
    assert!(
        out.contains(&format!("rdbvault restore show {instance} {merged} --wait")),
        "{out}"
    );
    let (ok, out, err) = cli_async(
        &env,
        &["restore", "show", &instance, &merged, "--wait", "--json"],
    )
    .await;
    assert!(ok, "{out}{err}");
    let shown: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(shown["status"], "succeed", "{shown}");
    assert_eq!(shown["mode"], "merge", "{shown}");
    assert_eq!(shown["method"], "commands", "{shown}");
    assert_eq!(shown["keys_rebuilt"], 48, "{shown}");
    assert_eq!(shown["keys_replaced"], 48, "{shown}");
    assert_eq!(redis.digest().await, digest);

    // The list: newest first, one row each, with the method that ran and the keys.
    let (ok, out, err) = cli_async(&env, &["restore", "list", &instance]).await;
    assert!(ok, "{out}{err}");
    let header = out.lines().next().unwrap();
    for column in [
        "RESTORE_ID",
        "STATUS",
        "PROGRESS",
        "BACKUP_ID",
        "TARGET",
        "METHOD",
        "KEYS",
        "CREATED_AT",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let rows: Vec<&str> = out
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].contains(&merged) && rows[1].contains(&restore),
        "{out}"
    );
    for (row, method, keys) in [
        (rows[0], "commands", "48 (48 replaced)"),
        (rows[1], "restore", "48"),
    ] {
        let cells: Vec<&str> = row
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert!(
            cells.contains(&"succeed") && cells.contains(&"100.00"),
            "{row}"
        );
        assert!(cells.contains(&backup.as_str()), "{row}");
        assert!(cells.contains(&instance.as_str()), "{row}");
        assert!(cells.contains(&method) && cells.contains(&keys), "{row}");
    }
    let (ok, out, err) = cli_async(
        &env,
        &["restore", "list", &instance, "--limit", "1", "--json"],
    )
    .await;
    assert!(ok, "{out}{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["total_num"], 2, "{listed}");
    assert_eq!(
        listed["restore_record_response"].as_array().unwrap().len(),
        1
    );
    assert_eq!(listed["restore_record_response"][0]["restore_id"], merged);

    // `show` as a table.
    let (ok, out, err) = cli_async(&env, &["restore", "show", &instance, &restore]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("method_used") && out.contains("restore: "),
        "{out}"
    );
    assert!(out.contains("from cli"), "{out}");
    server.stop().await;
}

/// A restore into a target whose Redis died exits non-zero with the
/// failure code, as `list` and `show --wait` report it; the service's own
/// refusals come back as their DCS code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_failures_exit_non_zero() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["DEBUG", "POPULATE", "100"]);
    let mut doomed = RedisServer::start_fast(&[]);
    let server = TestServer::start(Db::Sqlite).await;
    let env = env_of(&server);
    let instance = server.register_single(&redis.addr()).await;
    let target = server.register_single(&doomed.addr()).await;
    let backup = server.backed_up(&instance).await;
    doomed.kill();

    let (ok, out, err) = cli_async(
        &env,
        &[
            "restore", "create", &instance, &backup, "--target", &target, "--wait",
        ],
    )
    .await;
    assert!(
        !ok,
        "a failed restore waited for exits non-zero: {out}{err}"
    );
    assert!(
        err.contains(" failed: dcs.08.0101: ") && err.contains("before it ended: keys: 0 restored"),
        "{err}"
    );
    let failed = err.split_whitespace().nth(1).unwrap().to_string();
    let record = server.restore_record(&target, &failed).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error_code"], "dcs.08.0101", "{record}");

    // Listed under the target (and the backup's instance) with its code.
    for listed_under in [&target, &instance] {
        let (ok, out, err) = cli_async(&env, &["restore", "list", listed_under]).await;
        assert!(ok, "{out}{err}");
        let row = out
            .lines()
            .find(|l| l.contains(&failed))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            row.contains("failed") && row.contains("dcs.08.0101"),
            "{row}"
        );
    }
    let (ok, out, err) = cli_async(&env, &["restore", "show", &target, &failed, "--wait"]).await;
    assert!(!ok, "{out}{err}");
    assert!(out.contains("dcs.08.0101"), "{out}");

    // Refused by the service: its code, a non-zero exit, no restore queued.
    let (ok, out, err) = cli_async(
        &env,
        &[
            "restore",
            "create",
            &instance,
            &backup,
            "--mode",
            "merge",
            "--method",
            "replicate",
        ],
    )
    .await;
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("400 DCS.4800") && err.contains("replicate"),
        "{err}"
    );
    let (ok, out, err) = cli_async(
        &env,
        &["restore", "create", &instance, "not-a-uuid", "--wait"],
    )
    .await;
    assert!(!ok, "{out}{err}");
    assert!(err.contains("DCS.4934"), "{err}");
    let (_, out, _) = cli_async(&env, &["restore", "list", &instance, "--json"]).await;
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["total_num"], 1, "{listed}");
    server.stop().await;
}

/// `--mode` and `--method` take only the values the service knows; clap
/// refuses any other before a request is made.
#[test]
fn restore_flags_are_checked_by_clap() {
    // Nowhere to send a request: a refusal can only come from clap.
    let env = vec![
        (
            "RDBVAULT_ENDPOINT".to_string(),
            format!("http://127.0.0.1:{}", common::free_port()),
        ),
        ("RDBVAULT_AK".to_string(), "ak".to_string()),
        ("RDBVAULT_SK".to_string(), "sk".to_string()),
        ("RDBVAULT_PROJECT_ID".to_string(), "p".to_string()),
    ];
    for (flag, value, possible) in [
        ("--mode", "overwrite", "[possible values: replace, merge]"),
        (
            "--method",
            "rsync",
            "[possible values: auto, replicate, restore, commands]",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["restore", "create", "i", "b", flag, value])
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag} <"))
                && err.contains(possible),
            "{err}"
        );
    }
    // The same values pass clap and fail on the (absent) service instead.
    let (ok, _, err) = cli(&env, &["restore", "create", "i", "b", "--mode", "merge"]);
    assert!(!ok);
    assert!(err.contains("request failed"), "{err}");
}

/// A log that is not a terminal (a file, a pipe, a journal) gets no colours.
#[test]
fn serve_logs_without_colours_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("RDBVAULT_LISTEN", format!("127.0.0.1:{port}"))
        .env("RDBVAULT_DATA_DIR", dir.path().join("data"))
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("rdbvault serving") {
            break text;
        }
        assert!(Instant::now() < deadline, "serve did not start: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !text.contains('\x1b'),
        "escape sequences in the log: {text:?}"
    );
}

/// A `FIELD VALUE` table as printed by the `show` commands, by field.
fn fields(table: &str) -> std::collections::HashMap<String, String> {
    table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("FIELD"))
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(' ')?;
            Some((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// `instance policy`: set automatic (days by name) and manual, shown as
/// fields, as the API's object with `--json` and in one line by `instance
/// show`; the service's refusals come back as its DCS code, changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_policy_set_and_show() {
    let redis = RedisServer::start_fast(&[]);
    let server = TestServer::start(Db::Sqlite).await;
    let env = env_of(&server);
    let instance = server.register_single(&redis.addr()).await;

    // None yet.
    let (ok, out, err) = cli_async(&env, &["instance", "policy", &instance]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "no backup policy (manual backups only)");
    let (ok, out, err) = cli_async(&env, &["instance", "policy", &instance, "--json"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "null");
    let (ok, out, err) = cli_async(&env, &["instance", "show", &instance]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        fields(&out)["backup_policy"],
        "none (manual backups only)",
        "{out}"
    );

    // Automatic, days by name, number and whole name, repeated and out of order.
    let (ok, out, err) = cli_async(
        &env,
        &[
            "instance",
            "policy",
            &instance,
            "--auto",
            "--save-days",
            "30",
            "--days",
            "fri,MON,3,wednesday",
            "--window",
            "02:00-03:00",
            "--timezone",
            "+0800",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with(&format!("backup policy of {instance} set:")),
        "{out}"
    );
    let stored = server.show_instance(&instance).await["instance_backup_policy"].clone();
    assert_eq!(
        stored["policy"],
        serde_json::json!({"backup_type": "auto", "save_days": 30, "periodical_backup_plan":
            {"backup_at": [1, 3, 5], "period_type": "weekly", "begin_at": "02:00-03:00",
             "timezone_offset": "+0800"}}),
        "{stored}"
    );
    let id = stored["backup_policy_id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());

    // Shown field by field, as it was stored.
    let (ok, out, err) = cli_async(&env, &["instance", "policy", &instance]).await;
    assert!(ok, "{out}{err}");
    let shown = fields(&out);
    for (field, value) in [
        ("backup_policy_id", id.as_str()),
        ("backup_type", "auto"),
        ("save_days", "30"),
        ("backup_at", "1,3,5 (mon,wed,fri)"),
        ("period_type", "weekly"),
        ("begin_at", "02:00-03:00"),
        ("timezone_offset", "+0800"),
        ("created_at", stored["created_at"].as_str().unwrap()),
        ("updated_at", stored["updated_at"].as_str().unwrap()),
    ] {
        assert_eq!(shown.get(field).map(String::as_str), Some(value), "{out}");
    }
    assert_eq!(shown.len(), 9, "{out}");
    // --json: the API's object, exactly.
    let (ok, out, err) = cli_async(&env, &["--json", "instance", "policy", &instance]).await;
    assert!(ok, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json, stored);
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "backup_policy_id",
            "created_at",
            "policy",
            "tenant_id",
            "updated_at"
        ],
        "{json}"
    );
    assert_eq!(json["tenant_id"], common::PROJECT);
    // `instance show`: one line.
    let (ok, out, err) = cli_async(&env, &["instance", "show", &instance]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        fields(&out)["backup_policy"],
        "auto, mon,wed,fri 02:00-03:00 +0800, kept 30 days",
        "{out}"
    );

    // A zone west of UTC is a value, not a flag.
    let (ok, out, err) = cli_async(
        &env,
        &[
            "instance",
            "policy",
            &instance,
            "--auto",
            "--save-days",
            "7",
            "--days",
            "sun",
            "--window",
            "23:00-01:00",
            "--timezone",
            "-0500",
            "--json",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        json["policy"]["periodical_backup_plan"]["timezone_offset"], "-0500",
        "{json}"
    );
    assert_eq!(
        json["policy"]["periodical_backup_plan"]["backup_at"],
        serde_json::json!([7])
    );
    assert_eq!(json["backup_policy_id"], id.as_str(), "replaced in place");

    // Without --timezone: UTC, no offset stored.
    let (ok, out, err) = cli_async(
        &env,
        &[
            "instance",
            "policy",
            &instance,
            "--auto",
            "--save-days",
            "1",
            "--days",
            "2",
            "--window",
            "01:00-02:00",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert_eq!(fields(&out)["timezone_offset"], "UTC", "{out}");
    let plan = server.show_instance(&instance).await["instance_backup_policy"]["policy"]
        ["periodical_backup_plan"]
        .clone();
    assert_eq!(
        plan,
        serde_json::json!({"backup_at": [2], "period_type": "weekly", "begin_at": "01:00-02:00"})
    );

    // Manual.
    let (ok, out, err) = cli_async(&env, &["instance", "policy", &instance, "--manual"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(fields(&out)["backup_type"], "manual", "{out}");
    assert!(
        !out.contains("save_days") && !out.contains("begin_at"),
        "{out}"
    );
    let stored = server.show_instance(&instance).await["instance_backup_policy"].clone();
    assert_eq!(
        stored["policy"],
        serde_json::json!({"backup_type": "manual"})
    );
    assert_eq!(stored["backup_policy_id"], id.as_str());
    let (ok, out, err) = cli_async(&env, &["instance", "show", &instance]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(fields(&out)["backup_policy"], "manual", "{out}");

    // Refused by the service: its code, a non-zero exit, the policy unchanged.
    for (flags, code, field) in [
        (
            ["--save-days", "0", "--window", "02:00-03:00"],
            "400 DCS.4072",
            "save_days",
        ),
        (
            ["--save-days", "3651", "--window", "02:00-03:00"],
            "400 DCS.4072",
            "save_days",
        ),
        (
            ["--save-days", "7", "--window", "25:00-26:00"],
            "400 DCS.4076",
            "begin_at",
        ),
    ] {
        let mut args = vec!["instance", "policy", &instance, "--auto", "--days", "mon"];
        args.extend(flags);
        let (ok, out, err) = cli_async(&env, &args).await;
        assert!(!ok, "{args:?}: {out}{err}");
        assert!(
            err.starts_with(&format!("error: {code}: ")) && err.contains(field),
            "{args:?}: {err}"
        );
        assert!(out.is_empty(), "{out}");
    }
    let (ok, _, err) = cli_async(
        &env,
        &[
            "instance",
            "policy",
            &instance,
            "--auto",
            "--save-days",
            "7",
            "--days",
            "mon",
            "--window",
            "02:00-03:00",
            "--timezone",
            "+1300",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("DCS.4800") && err.contains("timezone_offset"),
        "{err}"
    );
    assert_eq!(
        server.show_instance(&instance).await["instance_backup_policy"]["policy"],
        serde_json::json!({"backup_type": "manual"})
    );
    let (ok, _, err) = cli_async(&env, &["instance", "policy", "not-a-uuid", "--manual"]).await;
    assert!(!ok);
    assert!(err.contains("DCS.4061"), "{err}");
    server.stop().await;
}

/// `instance policy`'s flags: `--auto` needs its plan, `--manual` takes
/// none, days are 1..7 or names; refused by clap (exit 2) before a request.
#[test]
fn instance_policy_flags_are_checked_by_clap() {
    // Nowhere to send a request: a refusal can only come from clap.
    let env = vec![
        (
            "RDBVAULT_ENDPOINT".to_string(),
            format!("http://127.0.0.1:{}", common::free_port()),
        ),
        ("RDBVAULT_AK".to_string(), "ak".to_string()),
        ("RDBVAULT_SK".to_string(), "sk".to_string()),
        ("RDBVAULT_PROJECT_ID".to_string(), "p".to_string()),
    ];
    let plan = [
        "--save-days",
        "7",
        "--days",
        "mon",
        "--window",
        "02:00-03:00",
    ];
    let refused = |args: &[&str], says: &[&str]| {
        let out = Command::new(BIN)
            .args(["instance", "policy", "i"])
            .args(args)
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for s in says {
            assert!(err.contains(s), "{args:?}: {err}");
        }
    };
    refused(
        &["--auto", "--save-days", "7", "--days", "mon"],
        &["required arguments were not provided", "--window <WINDOW>"],
    );
    refused(
        &["--auto", "--days", "mon", "--window", "02:00-03:00"],
        &[
            "required arguments were not provided",
            "--save-days <SAVE_DAYS>",
        ],
    );
    let mut both = vec!["--auto", "--manual"];
    both.extend(plan);
    refused(&both, &["'--auto' cannot be used with '--manual'"]);
    refused(
        &["--manual", "--days", "mon"],
        &["'--manual' cannot be used with '--days <DAYS>'"],
    );
    refused(&["--window", "02:00-03:00"], &["--auto"]);
    for bad in ["8", "0", "monday2", "mon,xyz"] {
        let mut args = vec![
            "--auto",
            "--save-days",
            "7",
            "--window",
            "02:00-03:00",
            "--days",
        ];
        args.push(bad);
        refused(&args, &["invalid value", "for '--days <DAYS>'"]);
    }
    // Names and numbers pass clap and fail on the (absent) service instead.
    for args in [
        vec![
            "--auto",
            "--save-days",
            "7",
            "--days",
            "Mon,tuesday,3,sun",
            "--window",
            "02:00-03:00",
        ],
        vec!["--manual"],
        vec![],
    ] {
        let mut all = vec!["instance", "policy", "i"];
        all.extend(&args);
        let (ok, _, err) = cli(&env, &all);
        assert!(!ok);
        assert!(err.contains("request failed"), "{args:?}: {err}");
    }
}
