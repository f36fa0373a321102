//! Backup health in `/metrics`, against a real server and real
//! redis-server: the last success's time, duration and size; failures by
//! error code and in a row, reset by a success; label values escaped; the
//! wait of a queued job; and the alert rules of `deploy/prometheus`, whose
//! every metric must be one the server exposes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Db, PROJECT, RedisServer, Release, TestServer, wait_for};
use rdbvault::meta::{Meta, Mode, NewInstance};
use serde_json::json;

both_backends!(
    success_failures_and_reset,
    label_values_are_escaped,
    a_queued_job_shows_how_long_it_waits,
    alert_rules_name_exposed_metrics,
);

/// Longer than two refreshes of the 5 s "metrics" task.
const REFRESH: Duration = Duration::from_secs(30);

/// One sample line of the exposition, its label values unescaped.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Every sample of a text exposition. Strict on purpose: a label value
/// left unescaped (a raw `"` or newline) makes a line fail to parse, and
/// the test with it.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("malformed sample line: {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let mut chars = line.chars().peekable();
    let mut name = String::new();
    while let Some(c) = chars.next_if(|c| *c != '{' && *c != ' ') {
        name.push(c);
    }
    let mut labels = BTreeMap::new();
    if chars.next_if_eq(&'{').is_some() {
        loop {
            // key="value", then `,` or `}`.
            let mut key = String::new();
            while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
                key.push(c);
            }
            if key.is_empty() || chars.next()? != '=' || chars.next()? != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '\\' => match chars.next()? {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        _ => return None,
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
            match chars.next()? {
                ',' => {}
                '}' => break,
                _ => return None,
            }
        }
    }
    if chars.next()? != ' ' {
        return None;
    }
    let rest: String = chars.collect();
    let value = rest.split(' ').next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Polls `/metrics` until `holds` is true of its samples; returns them.
async fn metrics_until(
    server: &TestServer,
    what: &str,
    holds: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    wait_for(what, REFRESH, || async {
        let samples = parse(&server.get_text("/metrics").await);
        holds(&samples).then_some(samples)
    })
    .await
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// A redis-server on a given port: the one an instance was registered
/// with coming back after it was killed.
struct Respawned {
    child: Child,
    /// Its `--dir`, removed when it goes.
    _dir: tempfile::TempDir,
}

impl Respawned {
    fn on(port: u16) -> Respawned {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(Release::V7_0.binary())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--repl-diskless-sync-delay", "0", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Respawned { child, _dir: dir }
    }
}

impl Drop for Respawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn success_failures_and_reset(db: Db) {
    let server = TestServer::start(db).await;
    let meta = Meta::open(&server.config).await.unwrap();

    // A success: its time, duration and size as the record has them.
    let good = RedisServer::start_fast(&[]);
    good.cli(&["SET", "k", "some value"]);
    let ok_instance = server.register_single(&good.addr()).await;
    let name = server.show_instance(&ok_instance).await["name"]
        .as_str()
        .unwrap()
        .to_string();
    let backup = server.backed_up(&ok_instance).await;
    let record = meta.get_backup_by_id(&backup).await.unwrap().unwrap();
    let finished = record.finished_at.unwrap();
    let began = record.started_at.unwrap_or(record.created_at);
    assert!(record.size > 0, "{record:?}");

    let samples = metrics_until(&server, "the success in /metrics", |s| {
        value(
            s,
            "rdbvault_backup_last_success_timestamp_seconds",
            &[("instance_id", &ok_instance)],
        )
        .is_some()
    })
    .await;
    let ident = [
        ("instance_id", ok_instance.as_str()),
        ("instance_name", name.as_str()),
        ("project_id", PROJECT),
    ];
    let at = value(
        &samples,
        "rdbvault_backup_last_success_timestamp_seconds",
        &ident,
    )
    .unwrap();
    assert!(
        close(at, finished.timestamp_millis() as f64 / 1000.0),
        "{at} vs {finished}"
    );
    let took = value(
        &samples,
        "rdbvault_backup_last_success_duration_seconds",
        &ident,
    )
    .unwrap();
    let expected = (finished - began).num_milliseconds() as f64 / 1000.0;
    assert!(close(took, expected), "{took} vs {expected}");
    assert_eq!(
        value(&samples, "rdbvault_backup_last_success_bytes", &ident),
        Some(record.size as f64)
    );
    let id = [("instance_id", ok_instance.as_str())];
    assert_eq!(
        value(&samples, "rdbvault_backup_consecutive_failures", &id),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "rdbvault_backups",
            &[("instance_id", &ok_instance), ("status", "succeed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "rdbvault_backups",
            &[("instance_id", &ok_instance), ("status", "failed")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "rdbvault_store_bytes", &[("storage", "local")]),
        Some(record.size as f64)
    );
    assert_eq!(value(&samples, "rdbvault_instance_info", &ident), Some(1.0));

    // Failures: the instance's redis-server killed after registration.
    let mut dead = RedisServer::start_fast(&[]);
    let port = dead.port;
    let flaky = server.register_single(&dead.addr()).await;
    dead.kill();
    let mut code = String::new();
    for _ in 0..2 {
        let b = server.start_backup(&flaky).await;
        let r = server.wait_backup(&flaky, &b).await;
        assert_eq!(r["status"], "failed", "{r}");
        code = r["error_code"].as_str().unwrap().to_string();
    }
    assert!(!code.is_empty());
    let by_code = [
        ("instance_id", flaky.as_str()),
        ("error_code", code.as_str()),
    ];
    let flaky_id = [("instance_id", flaky.as_str())];
    let samples = metrics_until(&server, "two failures in /metrics", |s| {
        value(s, "rdbvault_backup_failures_total", &by_code) == Some(2.0)
    })
    .await;
    assert_eq!(
        value(&samples, "rdbvault_backup_consecutive_failures", &flaky_id),
        Some(2.0)
    );
    assert_eq!(
        value(
            &samples,
            "rdbvault_backup_last_success_timestamp_seconds",
            &flaky_id
        ),
        None,
        "no success yet"
    );
    // The other instance is untouched, and failures store nothing.
    assert_eq!(
        value(&samples, "rdbvault_backup_consecutive_failures", &id),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "rdbvault_store_bytes", &[("storage", "local")]),
        Some(record.size as f64)
    );

    // The server comes back: a success resets the run, not the counter.
    let _back = Respawned::on(port);
    let recovered = server.backed_up(&flaky).await;
    let size = meta
        .get_backup_by_id(&recovered)
        .await
        .unwrap()
        .unwrap()
        .size;
    let samples = metrics_until(&server, "the reset in /metrics", |s| {
        value(s, "rdbvault_backup_consecutive_failures", &flaky_id) == Some(0.0)
    })
    .await;
    assert_eq!(
        value(&samples, "rdbvault_backup_failures_total", &by_code),
        Some(2.0)
    );
    assert!(
        value(
            &samples,
            "rdbvault_backup_last_success_timestamp_seconds",
            &flaky_id
        )
        .is_some()
    );
    assert_eq!(
        value(&samples, "rdbvault_store_bytes", &[("storage", "local")]),
        Some((record.size + size) as f64)
    );
    meta.close().await;
    server.stop().await;
}

async fn label_values_are_escaped(db: Db) {
    let server = TestServer::start(db).await;
    let meta = Meta::open(&server.config).await.unwrap();
    let redis = RedisServer::start_fast(&[]);
    // The API refuses such a name; a record can still hold anything, and
    // the exposition must survive it. Inserted straight into the store.
    let name = "we\"ird\\name\nline two";
    let instance = meta
        .insert_instance(NewInstance {
            project_id: PROJECT.into(),
            name: name.into(),
            mode: Mode::Single,
            addrs: vec![redis.addr().parse().unwrap()],
            username: None,
            password: None,
            tls: false,
        })
        .await
        .unwrap()
        .id;
    server.backed_up(&instance).await;

    let text = wait_for("the odd name in /metrics", REFRESH, || async {
        let text = server.get_text("/metrics").await;
        text.contains("rdbvault_backup_last_success_timestamp_seconds{")
            .then_some(text)
    })
    .await;
    let escaped = r#"instance_name="we\"ird\\name\nline two""#;
    assert!(text.contains(escaped), "{text}");
    // Parsed back, every line is well-formed and the name is whole again.
    let samples = parse(&text);
    for metric in [
        "rdbvault_instance_info",
        "rdbvault_backup_last_success_timestamp_seconds",
    ] {
        let s = samples
            .iter()
            .find(|s| s.name == metric && s.labels.get("instance_id") == Some(&instance))
            .unwrap_or_else(|| panic!("{metric} of {instance}"));
        assert_eq!(s.labels["instance_name"], name);
    }
    meta.close().await;
    server.stop().await;
}

async fn a_queued_job_shows_how_long_it_waits(db: Db) {
    // One worker, held by a slow backup (about 20 s of snapshot): the next
    // backup asked for stays queued behind it.
    let server = TestServer::start_with(db, |c| c.backup_workers = 1).await;
    let slow = RedisServer::start_fast(&[]);
    slow.slow_snapshots(20_000, 1000);
    let busy = server.register_single(&slow.addr()).await;
    let redis = RedisServer::start_fast(&[]);
    let instance = server.register_single(&redis.addr()).await;
    let none_yet = metrics_until(&server, "the first refresh", |s| {
        value(
            s,
            "rdbvault_jobs_oldest_queued_seconds",
            &[("kind", "backup")],
        )
        .is_some()
    })
    .await;
    assert_eq!(
        value(
            &none_yet,
            "rdbvault_jobs_oldest_queued_seconds",
            &[("kind", "backup")]
        ),
        Some(0.0)
    );
    let running = server.start_backup(&busy).await;
    server
        .wait_backup_status(&busy, &running, &["backuping"])
        .await;
    server.start_backup(&instance).await;
    // Two refreshes apart, the wait has grown past one refresh period.
    let samples = metrics_until(&server, "the wait to grow", |s| {
        value(
            s,
            "rdbvault_jobs_oldest_queued_seconds",
            &[("kind", "backup")],
        )
        .is_some_and(|w| w > 5.0)
    })
    .await;
    assert_eq!(
        value(
            &samples,
            "rdbvault_jobs_oldest_queued_seconds",
            &[("kind", "restore")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "rdbvault_backups",
            &[("instance_id", &instance), ("status", "waiting")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "rdbvault_jobs",
            &[("kind", "backup"), ("state", "queued")]
        ),
        Some(1.0)
    );
    server.stop().await;
}

/// The rules file shipped in the repository.
fn rules_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/rdbvault-alerts.yml")
}

/// `rdbvault_*` names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("rdbvault_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn balanced(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return false;
                }
            }
            _ => {}
        }
    }
    stack.is_empty() && !in_string
}

async fn alert_rules_name_exposed_metrics(db: Db) {
    use yaml_rust2::{Yaml, YamlLoader};

    // Every family with samples: a success with an automatic policy (in
    // a window half a day away, so the scheduler leaves it alone), a
    // restore, and a failure.
    let server = TestServer::start(db).await;
    let redis = RedisServer::start_fast(&[]);
    let instance = server.register_single(&redis.addr()).await;
    let hour = (chrono::Utc::now()
        .format("%H")
        .to_string()
        .parse::<u32>()
        .unwrap()
        + 12)
        % 24;
    let window = format!("{hour:02}:00-{:02}:00", (hour + 1) % 24);
    let r = server
        .req("PUT", &format!("/v2/{PROJECT}/instances/{instance}"))
        .json(
            &json!({"instance_backup_policy": {"backup_type": "auto", "save_days": 30,
                "periodical_backup_plan": {"backup_at": [1, 2, 3, 4, 5, 6, 7],
                    "period_type": "weekly", "begin_at": window}}})
            .to_string(),
        )
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let backup = server.backed_up(&instance).await;
    let restore = server.start_restore(&instance, &backup, json!({})).await;
    let done = server.wait_restore(&instance, &restore).await;
    assert_eq!(done["status"], "succeed", "{done}");
    let mut dead = RedisServer::start_fast(&[]);
    let flaky = server.register_single(&dead.addr()).await;
    dead.kill();
    let b = server.start_backup(&flaky).await;
    assert_eq!(server.wait_backup(&flaky, &b).await["status"], "failed");

    let samples = metrics_until(&server, "every health family", |s| {
        value(
            s,
            "rdbvault_backup_failures_total",
            &[("instance_id", &flaky)],
        )
        .is_some()
            && value(
                s,
                "rdbvault_restore_last_status",
                &[("instance_id", &instance), ("status", "succeed")],
            ) == Some(1.0)
    })
    .await;
    // The policy, as the overdue rule reads it: daily, set once.
    assert_eq!(
        value(
            &samples,
            "rdbvault_backup_policy_interval_seconds",
            &[("instance_id", &instance)]
        ),
        Some(86_400.0)
    );
    assert!(
        value(
            &samples,
            "rdbvault_backup_policy_timestamp_seconds",
            &[("instance_id", &instance)]
        )
        .is_some()
    );
    assert_eq!(
        value(&samples, "rdbvault_restores", &[("status", "succeed")]),
        Some(1.0)
    );
    let exposed: BTreeSet<String> = samples.iter().map(|s| s.name.clone()).collect();

    let text = std::fs::read_to_string(rules_path()).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1, "one YAML document");
    let groups = docs[0]["groups"].as_vec().expect("a `groups:` list");
    assert!(!groups.is_empty());
    let mut alerts = BTreeSet::new();
    let mut named = BTreeSet::new();
    for group in groups {
        assert!(group["name"].as_str().is_some(), "a group without a name");
        let rules = group["rules"].as_vec().expect("a group's `rules:` list");
        assert!(!rules.is_empty());
        for rule in rules {
            let alert = rule["alert"].as_str().expect("an alerting rule");
            assert!(alerts.insert(alert.to_string()), "{alert} twice");
            let expr = rule["expr"].as_str().expect("an expr");
            assert!(balanced(expr), "{alert}: unbalanced brackets in {expr}");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{alert} names no rdbvault metric");
            for name in &names {
                assert!(
                    exposed.contains(name),
                    "{alert} names {name}, which /metrics does not expose: {exposed:?}"
                );
            }
            named.extend(names);
            match &rule["for"] {
                Yaml::BadValue => {}
                Yaml::String(d) => {
                    let (n, unit) = d.split_at(d.len() - 1);
                    assert!(
                        n.parse::<u32>().is_ok() && "smhdwy".contains(unit),
                        "{alert}: for {d}"
                    );
                }
                other => panic!("{alert}: for {other:?}"),
            }
            assert!(
                ["critical", "warning"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                "{alert}: severity"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{alert}: summary"
            );
        }
    }
    // Prometheus's own checker parses the PromQL, and runs the rules' unit
    // tests (firing and not, two nodes scraped, a quote in a name).
    // `.ci/test` installs it (Debian's `prometheus` package).
    let tests = rules_path().with_file_name("rdbvault-alerts.test.yml");
    for args in [
        vec!["check".into(), "rules".into(), rules_path()],
        vec!["test".into(), "rules".into(), tests],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .output()
            .expect("promtool on PATH (apt-get install prometheus; .ci/test does)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The rules the operations section promises.
    for alert in [
        "RdbvaultBackupOverdue",
        "RdbvaultBackupStale",
        "RdbvaultBackupFailingRepeatedly",
        "RdbvaultJobQueuedTooLong",
    ] {
        assert!(alerts.contains(alert), "{alert} missing: {alerts:?}");
    }
    assert!(named.contains("rdbvault_backup_last_success_timestamp_seconds"));
    assert!(named.contains("rdbvault_backup_consecutive_failures"));
    server.stop().await;
}

#[test]
fn the_test_parser_is_strict() {
    let ok = parse_line(r#"m{a="x\"y",b="z\\w\nv"} 1.5"#).unwrap();
    assert_eq!(ok.labels["a"], "x\"y");
    assert_eq!(ok.labels["b"], "z\\w\nv");
    assert_eq!(ok.value, 1.5);
    assert_eq!(parse_line("plain 3").unwrap().value, 3.0);
    // What an unescaped quote would look like.
    assert!(parse_line(r#"m{a="x"y"} 1"#).is_none());
    assert!(parse_line(r#"m{a="x} 1"#).is_none());
    assert_eq!(
        metric_names("max(rdbvault_a_b{x=\"1\"}) > rdbvault_c"),
        ["rdbvault_a_b", "rdbvault_c"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    assert!(balanced("a(b[c]{d=\")\"})"));
    assert!(!balanced("a(b"));
}
