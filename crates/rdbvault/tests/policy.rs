//! Backup policies through the API: set with DCS `update_instance` or at
//! registration, read back by `show_instance` in DCS's shape; every bad
//! field refused with DCS's own code, changing nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, PROJECT, RedisServer, TestServer};
use serde_json::{Value, json};

both_backends!(policies_are_set_and_read_back, bad_policies_change_nothing);

fn weekly(days: Value, window: &str) -> Value {
    json!({"backup_type": "auto", "save_days": 30,
           "periodical_backup_plan": {"backup_at": days, "period_type": "weekly", "begin_at": window, "timezone_offset": "+0800"}})
}

async fn put(server: &TestServer, instance: &str, body: Value) -> common::Resp {
    server
        .req("PUT", &format!("/v2/{PROJECT}/instances/{instance}"))
        .json(&body.to_string())
        .send()
        .await
}

async fn policies_are_set_and_read_back(db: Db) {
    let redis = RedisServer::start_fast(&[]);
    let server = TestServer::start(db).await;
    let instance = server.register_single(&redis.addr()).await;
    assert!(
        server
            .show_instance(&instance)
            .await
            .get("instance_backup_policy")
            .is_none()
    );

    let r = put(
        &server,
        &instance,
        json!({"instance_backup_policy": weekly(json!([3, 1, 1]), "02:00-03:00")}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let shown = server.show_instance(&instance).await;
    let p = &shown["instance_backup_policy"];
    assert_eq!(p["tenant_id"], PROJECT);
    assert!(
        p["backup_policy_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{p}"
    );
    assert!(p["created_at"].as_str().unwrap().ends_with('Z'), "{p}");
    assert_eq!(
        p["policy"],
        json!({"backup_type": "auto", "save_days": 30, "periodical_backup_plan":
               {"backup_at": [1, 3], "period_type": "weekly", "begin_at": "02:00-03:00", "timezone_offset": "+0800"}})
    );

    // Replaced in place: same id, new content.
    let id = p["backup_policy_id"].clone();
    let r = put(
        &server,
        &instance,
        json!({"instance_backup_policy": {"backup_type": "manual"}}),
    )
    .await;
    assert_eq!(r.status, 204);
    let p = server.show_instance(&instance).await["instance_backup_policy"].clone();
    assert_eq!(p["backup_policy_id"], id);
    assert_eq!(p["policy"], json!({"backup_type": "manual"}));

    // At registration.
    let other = server
        .register(
            json!({"name": "with-policy", "mode": "single", "addrs": [redis.addr()],
                         "instance_backup_policy": weekly(json!([7]), "23:00-01:00")}),
        )
        .await;
    let p = server.show_instance(&other).await["instance_backup_policy"].clone();
    assert_eq!(
        p["policy"]["periodical_backup_plan"]["begin_at"],
        "23:00-01:00"
    );
    // Listing stays light: no policy there.
    let listed = server
        .req("GET", &format!("/v2/{PROJECT}/instances"))
        .send()
        .await
        .json();
    assert!(
        listed["instances"][0]
            .get("instance_backup_policy")
            .is_none(),
        "{listed}"
    );
    server.stop().await;
}

async fn bad_policies_change_nothing(db: Db) {
    let redis = RedisServer::start_fast(&[]);
    let server = TestServer::start(db).await;
    let instance = server.register_single(&redis.addr()).await;
    let good = weekly(json!([1]), "02:00-03:00");
    assert_eq!(
        put(&server, &instance, json!({"instance_backup_policy": good}))
            .await
            .status,
        204
    );
    let before = server.show_instance(&instance).await["instance_backup_policy"].clone();

    let with = |f: &dyn Fn(&mut Value)| {
        let mut p = weekly(json!([1]), "02:00-03:00");
        f(&mut p);
        json!({"instance_backup_policy": p})
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&|p| p["save_days"] = json!(0)), "DCS.4072"),
        (with(&|p| p["save_days"] = json!(3651)), "DCS.4072"),
        (
            with(&|p| {
                p.as_object_mut().unwrap().remove("save_days");
            }),
            "DCS.4072",
        ),
        (with(&|p| p["backup_type"] = json!("hourly")), "DCS.4073"),
        (
            with(&|p| p["periodical_backup_plan"]["period_type"] = json!("daily")),
            "DCS.4074",
        ),
        (
            with(&|p| p["periodical_backup_plan"]["backup_at"] = json!([8])),
            "DCS.4075",
        ),
        (
            with(&|p| p["periodical_backup_plan"]["backup_at"] = json!([])),
            "DCS.4075",
        ),
        (
            with(&|p| p["periodical_backup_plan"]["begin_at"] = json!("25:00-26:00")),
            "DCS.4076",
        ),
        (
            with(&|p| p["periodical_backup_plan"]["begin_at"] = json!("02:00-02:00")),
            "DCS.4076",
        ),
        (
            with(&|p| p["periodical_backup_plan"]["timezone_offset"] = json!("+1300")),
            "DCS.4800",
        ),
        (
            with(&|p| p["periodical_backup_plan"]["colour"] = json!("blue")),
            "DCS.4800",
        ),
        (with(&|p| p["save_days"] = json!("7")), "DCS.4800"),
        (json!({"name": "renamed"}), "DCS.4800"),
        (
            json!({"port": 6380, "instance_backup_policy": {"backup_type": "manual"}}),
            "DCS.4800",
        ),
        (json!({}), "DCS.4800"),
        (json!({"unknown": 1}), "DCS.4800"),
    ];
    for (body, code) in cases {
        let r = put(&server, &instance, body.clone()).await;
        assert_eq!(r.json()["error_code"], code, "{body}: {}", r.json());
        r.assert_error(400, code);
    }
    assert_eq!(
        server.show_instance(&instance).await["instance_backup_policy"],
        before
    );
    put(
        &server,
        &uuid::Uuid::new_v4().to_string(),
        json!({"instance_backup_policy": {"backup_type": "manual"}}),
    )
    .await
    .assert_error(404, "DCS.3022");

    // A registration with a bad policy is not made.
    let r = server
        .req("POST", &format!("/v2/{PROJECT}/rdbvault/instances"))
        .json(
            &json!({"name": "bad", "mode": "single", "addrs": [redis.addr()],
                      "instance_backup_policy": {"backup_type": "auto"}})
            .to_string(),
        )
        .send()
        .await;
    r.assert_error(400, "DCS.4072");
    let listed = server
        .req("GET", &format!("/v2/{PROJECT}/instances"))
        .send()
        .await
        .json();
    assert_eq!(listed["instance_num"], 1, "{listed}");
    server.stop().await;
}
