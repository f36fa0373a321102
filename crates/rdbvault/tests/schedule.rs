//! Automatic backups driven by an injected clock (never by waiting for the
//! wall clock's window): due backups run once per day inside their window,
//! catching up after a stop; a busy instance postpones them and a window
//! that closes first leaves a `failed` record; retention expires automatic
//! backups only; two nodes on one PostgreSQL fire each due backup once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use common::{Db, PROJECT, RedisServer, TestServer, wait_for};
use rdbvault::schedule::ManualClock;
use serde_json::{Value, json};

/// A policy running every day in the UTC hour of `at`, keeping `save_days`.
fn every_day_at(at: DateTime<Utc>, save_days: u32) -> Value {
    let h = at.hour();
    json!({"instance_backup_policy": {"backup_type": "auto", "save_days": save_days,
        "periodical_backup_plan": {"backup_at": [1, 2, 3, 4, 5, 6, 7], "period_type": "weekly",
        "begin_at": format!("{h:02}:00-{:02}:00", (h + 1) % 24)}}})
}

/// The top of the current UTC hour: every test's times are taken from it
/// once, so a test crossing the hour stays consistent.
fn this_hour() -> DateTime<Utc> {
    let now = Utc::now();
    now.with_minute(0)
        .unwrap()
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap()
}

fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

async fn server_with(
    clock: &Arc<ManualClock>,
    db: Db,
    tweak: impl FnOnce(&mut rdbvault::config::Config),
) -> TestServer {
    let clock: Arc<dyn rdbvault::schedule::Clock> = clock.clone();
    TestServer::start_with_clock(
        db,
        |c| {
            c.schedule_interval_secs = 1;
            tweak(c);
        },
        clock,
    )
    .await
}

async fn records(server: &TestServer, instance: &str) -> Vec<Value> {
    let r = server
        .req(
            "GET",
            &format!("/v2/{PROJECT}/instances/{instance}/backups?limit=1000"),
        )
        .send()
        .await;
    r.json()["backup_record_response"]
        .as_array()
        .unwrap()
        .clone()
}

async fn set_policy(server: &TestServer, instance: &str, policy: Value) {
    let r = server
        .req("PUT", &format!("/v2/{PROJECT}/instances/{instance}"))
        .json(&policy.to_string())
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
}

/// Two scheduler rounds (one a second) go by.
async fn rounds() {
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_backups_run_once_in_their_window_and_expire() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    // Before the window opens.
    let base = this_hour();
    let clock = Arc::new(ManualClock::new(base - minutes(5)));
    let server = server_with(&clock, Db::Sqlite, |_| {}).await;
    let instance = server.register_single(&redis.addr()).await;
    set_policy(&server, &instance, every_day_at(base, 1)).await;
    let manual = server.backed_up(&instance).await;
    rounds().await;
    assert_eq!(
        records(&server, &instance).await.len(),
        1,
        "nothing due before the window"
    );

    // The service "was down" at the window's start: it catches up inside it.
    clock.set(base + minutes(20));
    let auto = wait_for("the automatic backup", Duration::from_secs(30), || async {
        records(&server, &instance)
            .await
            .into_iter()
            .find(|r| r["backup_type"] == "auto" && r["status"] == "succeed")
    })
    .await;
    let h = base.hour();
    assert_eq!(
        auto["period"],
        format!("{h:02}:00-{:02}:00", (h + 1) % 24),
        "{auto}"
    );
    assert_eq!(auto["is_support_restore"], "TRUE");
    // Later in the same window, and the next rounds: never twice.
    clock.set(base + minutes(50));
    rounds().await;
    let all = records(&server, &instance).await;
    assert_eq!(
        all.iter().filter(|r| r["backup_type"] == "auto").count(),
        1,
        "{all:?}"
    );

    // Two days on, outside the window: the automatic backup is past its
    // one day of retention and expires, its files deleted; the manual stays.
    clock.set(base + minutes(2 * 24 * 60 + 6 * 60));
    let expired = wait_for("retention", Duration::from_secs(30), || async {
        records(&server, &instance)
            .await
            .into_iter()
            .find(|r| r["backup_id"] == auto["backup_id"] && r["status"] == "expired")
    })
    .await;
    assert_eq!(expired["is_support_restore"], "FALSE", "{expired}");
    let auto_id = auto["backup_id"].as_str().unwrap();
    assert!(
        server.stored_files(&instance, auto_id).is_empty(),
        "files of the expired backup remain"
    );
    assert_eq!(
        server.backup_record(&instance, &manual).await["status"],
        "succeed"
    );
    assert!(!server.stored_files(&instance, &manual).is_empty());
    let r = server
        .req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/backups/{auto_id}/links"),
        )
        .json(r#"{"expiration": 300}"#)
        .send()
        .await;
    r.assert_error(400, "DCS.4946");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_instance_postpones_and_a_closed_window_is_recorded() {
    let redis = RedisServer::start_fast(&[]);
    redis.slow_snapshots(20_000, 1000);
    let base = this_hour();
    let clock = Arc::new(ManualClock::new(base - minutes(5)));
    let server = server_with(&clock, Db::Sqlite, |_| {}).await;
    let instance = server.register_single(&redis.addr()).await;
    set_policy(&server, &instance, every_day_at(base, 7)).await;
    // A manual backup runs (about 20 s) across the window's opening.
    let manual = server.start_backup(&instance).await;
    server
        .wait_backup_status(&instance, &manual, &["backuping"])
        .await;
    clock.set(base + minutes(10));
    rounds().await;
    assert_eq!(
        records(&server, &instance).await.len(),
        1,
        "postponed while the backup runs"
    );
    // The window closes while the instance is still busy.
    clock.set(base + minutes(61));
    let missed = wait_for(
        "the missed window's record",
        Duration::from_secs(30),
        || async {
            records(&server, &instance)
                .await
                .into_iter()
                .find(|r| r["backup_type"] == "auto")
        },
    )
    .await;
    assert_eq!(missed["status"], "failed", "{missed}");
    assert_eq!(missed["error_code"], "dcs.08.0008", "{missed}");
    let msg = missed["error_msg"].as_str().unwrap();
    assert!(
        msg.contains("closed before the backup could start")
            && msg.contains("a backup was running"),
        "{msg}"
    );
    server
        .req(
            "DELETE",
            &format!("/v2/{PROJECT}/instances/{instance}/backups/{manual}"),
        )
        .send()
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_fire_a_due_backup_once() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    let base = this_hour();
    let clock = Arc::new(ManualClock::new(base - minutes(5)));
    // Two local stores declared shared: only the records matter here.
    let first = server_with(&clock, Db::Postgres, |c| c.shared_data_dir = true).await;
    let url = first.config.database_url.clone();
    let key = first.config.master_key_path();
    let second = server_with(&clock, Db::Sqlite, |c| {
        c.database_url = url;
        c.master_key_file = Some(key);
        c.shared_data_dir = true;
    })
    .await;
    let instance = first.register_single(&redis.addr()).await;
    set_policy(&second, &instance, every_day_at(base, 7)).await;
    clock.set(base + minutes(15));
    wait_for("the automatic backup", Duration::from_secs(30), || async {
        records(&first, &instance)
            .await
            .into_iter()
            .find(|r| r["backup_type"] == "auto" && r["status"] == "succeed")
    })
    .await;
    rounds().await;
    for node in [&first, &second] {
        let all = records(node, &instance).await;
        assert_eq!(
            all.iter().filter(|r| r["backup_type"] == "auto").count(),
            1,
            "{all:?}"
        );
    }
    second.stop().await;
    first.stop().await;
}

/// An automatic backup the project's quota does not allow is recorded
/// `failed` with `dcs.08.0114`, once, instead of being taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_backup_over_the_project_quota_fails_saying_so() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    let base = this_hour();
    let clock = Arc::new(ManualClock::new(base - minutes(5)));
    let server = server_with(&clock, Db::Sqlite, |c| c.project_max_backups = 1).await;
    let instance = server.register_single(&redis.addr()).await;
    set_policy(&server, &instance, every_day_at(base, 1)).await;
    server.backed_up(&instance).await;
    clock.set(base + minutes(20));
    let refused = wait_for(
        "the refused automatic backup",
        Duration::from_secs(30),
        || async {
            records(&server, &instance)
                .await
                .into_iter()
                .find(|r| r["backup_type"] == "auto")
        },
    )
    .await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert_eq!(refused["error_code"], "dcs.08.0114", "{refused}");
    assert!(
        refused["error_msg"]
            .as_str()
            .unwrap()
            .contains("project_max_backups"),
        "{refused}"
    );
    rounds().await;
    let all = records(&server, &instance).await;
    assert_eq!(all.len(), 2, "refused once, not every round: {all:?}");
    server.stop().await;
}
