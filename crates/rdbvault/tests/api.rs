//! The HTTP API end to end: the real service (SQLite and PostgreSQL), real
//! redis-server processes, requests signed as the SDK signs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, OTHER_AK, OTHER_PROJECT, OTHER_SK, PROJECT, RedisServer, TestServer};
use serde_json::json;

both_backends!(
    instance_lifecycle,
    registration_is_validated,
    authentication_and_project_scoping,
    bad_requests_get_dcs_errors,
    list_filters_and_pages,
    bodies_and_queries_are_read_as_documented,
);

fn register_body(name: &str, addr: &str) -> String {
    json!({ "name": name, "mode": "single", "addrs": [addr] }).to_string()
}

async fn register(server: &TestServer, name: &str, addr: &str) -> String {
    let r = server
        .req("POST", &format!("/v2/{PROJECT}/rdbvault/instances"))
        .json(&register_body(name, addr))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["instance_id"].as_str().unwrap().to_string()
}

async fn instance_lifecycle(db: Db) {
    let redis = RedisServer::start(&[]);
    let server = TestServer::start(db).await;
    let id = register(&server, "cache-1", &redis.addr()).await;

    let shown = server
        .req("GET", &format!("/v2/{PROJECT}/instances/{id}"))
        .send()
        .await;
    assert_eq!(shown.status, 200);
    let v = shown.json();
    assert_eq!(v["instance_id"], id.as_str());
    assert_eq!(v["name"], "cache-1");
    assert_eq!(v["engine"], "Redis");
    assert_eq!(v["status"], "RUNNING");
    assert_eq!(v["cache_mode"], "single");
    assert_eq!(v["ip"], "127.0.0.1");
    assert_eq!(v["port"], redis.port);
    assert_eq!(v["no_password_access"], "true");
    let version = redis.cli(&["INFO", "server"]);
    let live = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap();
    assert!(
        live.starts_with(v["engine_version"].as_str().unwrap()),
        "{live} vs {v}"
    );
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));

    let list = server
        .req("GET", &format!("/v2/{PROJECT}/instances"))
        .send()
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["instance_num"], 1);
    assert_eq!(list.json()["instances"][0]["instance_id"], id.as_str());

    // Another project sees nothing of it.
    let other = server
        .req("GET", &format!("/v2/{OTHER_PROJECT}/instances/{id}"))
        .signed_by(OTHER_AK, OTHER_SK);
    let mut other = other;
    other.project_header = Some(OTHER_PROJECT.into());
    other.send().await.assert_error(404, "DCS.3022");

    // The registration view never shows the password.
    drop(redis);
    let shown = server
        .req("GET", &format!("/v2/{PROJECT}/instances/{id}"))
        .send()
        .await;
    assert_eq!(
        shown.json()["status"],
        "ERROR",
        "a stopped instance is reported as such"
    );

    let removed = server
        .req("DELETE", &format!("/v2/{PROJECT}/rdbvault/instances/{id}"))
        .send()
        .await;
    assert_eq!(removed.status, 204);
    server
        .req("GET", &format!("/v2/{PROJECT}/instances/{id}"))
        .send()
        .await
        .assert_error(404, "DCS.3022");
    server
        .req("DELETE", &format!("/v2/{PROJECT}/rdbvault/instances/{id}"))
        .send()
        .await
        .assert_error(404, "DCS.3022");
    server.stop().await;
}

async fn registration_is_validated(db: Db) {
    let redis = RedisServer::start(&["--requirepass", "s3cret"]);
    let server = TestServer::start(db).await;
    let path = format!("/v2/{PROJECT}/rdbvault/instances");
    let post = |body: serde_json::Value| server.req("POST", &path).json(&body.to_string()).send();

    // Wrong or missing password: refused at registration with a code of
    // its own (not "unreachable"), nothing stored.
    post(json!({"name": "a", "mode": "single", "addrs": [redis.addr()]}))
        .await
        .assert_error(400, "DCS.4922");
    post(json!({"name": "a", "mode": "single", "addrs": [redis.addr()], "password": "nope"}))
        .await
        .assert_error(400, "DCS.4922");
    // Nothing listens there.
    let dead = format!("127.0.0.1:{}", common::free_port());
    post(json!({"name": "a", "mode": "single", "addrs": [dead]}))
        .await
        .assert_error(400, "DCS.4920");
    // Not a cluster.
    post(json!({"name": "a", "mode": "cluster", "addrs": [redis.addr()], "password": "s3cret"}))
        .await
        .assert_error(400, "DCS.4921");

    let ok =
        post(json!({"name": "a", "mode": "single", "addrs": [redis.addr()], "password": "s3cret"}))
            .await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let text = String::from_utf8_lossy(&ok.body).to_string();
    assert!(!text.contains("s3cret"), "password echoed: {text}");
    assert_eq!(ok.json()["has_password"], true);
    let id = ok.json()["instance_id"].as_str().unwrap().to_string();
    let shown = server
        .req("GET", &format!("/v2/{PROJECT}/instances/{id}"))
        .send()
        .await;
    assert_eq!(
        shown.json()["status"],
        "RUNNING",
        "the stored password is used"
    );
    assert!(!String::from_utf8_lossy(&shown.body).contains("s3cret"));
    let reg = server
        .req("GET", &format!("/v2/{PROJECT}/rdbvault/instances/{id}"))
        .send()
        .await;
    assert!(!String::from_utf8_lossy(&reg.body).contains("s3cret"));

    post(json!({"name": "a", "mode": "single", "addrs": [redis.addr()], "password": "s3cret"}))
        .await
        .assert_error(409, "DCS.4909");

    for bad in [
        json!({"name": "", "mode": "single", "addrs": ["127.0.0.1:1"]}),
        json!({"name": "-x", "mode": "single", "addrs": ["127.0.0.1:1"]}),
        json!({"name": "a b", "mode": "single", "addrs": ["127.0.0.1:1"]}),
        json!({"name": "x".repeat(65), "mode": "single", "addrs": ["127.0.0.1:1"]}),
        json!({"name": "b", "mode": "proxy", "addrs": ["127.0.0.1:1"]}),
        json!({"name": "b", "mode": "single", "addrs": []}),
        json!({"name": "b", "mode": "single", "addrs": ["127.0.0.1:1", "127.0.0.1:2"]}),
        json!({"name": "b", "mode": "ha", "addrs": ["127.0.0.1:1", "127.0.0.1:1"]}),
        json!({"name": "b", "mode": "single", "addrs": ["127.0.0.1"]}),
        json!({"name": "b", "mode": "single", "addrs": ["127.0.0.1:70000"]}),
        json!({"name": "b", "mode": "single", "addrs": [6379]}),
        json!({"name": "b", "mode": "single", "addrs": ["127.0.0.1:1"], "user": "u"}),
        json!({"name": "b", "mode": "single", "addrs": ["127.0.0.1:1"], "password": ""}),
        json!({"name": "b", "mode": "single", "addrs": ["127.0.0.1:1"], "surprise": 1}),
        json!({"mode": "single", "addrs": ["127.0.0.1:1"]}),
        json!(["not", "an", "object"]),
        json!(null),
    ] {
        let r = post(bad.clone()).await;
        assert_eq!(
            r.status,
            400,
            "{bad} accepted: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.assert_error(400, "DCS.4800");
    }
    let listed = server
        .req("GET", &format!("/v2/{PROJECT}/instances"))
        .send()
        .await;
    assert_eq!(
        listed.json()["instance_num"],
        1,
        "refused registrations stored nothing"
    );
    server.stop().await;
}

async fn authentication_and_project_scoping(db: Db) {
    let server = TestServer::start(db).await;
    let path = format!("/v2/{PROJECT}/instances");
    assert_eq!(server.req("GET", &path).send().await.status, 200);

    let mut r = server.req("GET", &path);
    r.sign = false;
    r.send().await.assert_error(401, "DCS.1003");

    let wrong_secret = server
        .req("GET", &path)
        .signed_by(common::AK, "wrong-secret")
        .send()
        .await;
    wrong_secret.assert_error(401, "DCS.1001");
    let unknown_key = server
        .req("GET", &path)
        .signed_by("UNKNOWNAK", common::SK)
        .send()
        .await;
    unknown_key.assert_error(401, "DCS.1001");
    // Word for word the same: access keys cannot be enumerated.
    assert_eq!(unknown_key.json(), wrong_secret.json());

    let mut r = server.req("GET", &path);
    r.date = chrono::Utc::now() - chrono::TimeDelta::minutes(16);
    r.send().await.assert_error(401, "DCS.1002");
    let mut r = server.req("GET", &path);
    r.date = chrono::Utc::now() + chrono::TimeDelta::minutes(16);
    r.send().await.assert_error(401, "DCS.1002");

    // A header added after signing is ignored; a signed one changed breaks the signature.
    let mut r = server.req("GET", &format!("{path}?limit=5"));
    r.extra_headers.push(("x-unsigned".into(), "1".into()));
    assert_eq!(r.send().await.status, 200);

    // A valid credential for another project.
    let mut r = server.req("GET", &format!("/v2/{OTHER_PROJECT}/instances"));
    r.project_header = Some(OTHER_PROJECT.into());
    r.send().await.assert_error(403, "DCS.1004");
    // Header and path disagree.
    let mut r = server
        .req("GET", &format!("/v2/{OTHER_PROJECT}/instances"))
        .signed_by(OTHER_AK, OTHER_SK);
    r.project_header = Some(PROJECT.into());
    r.send().await.assert_error(403, "DCS.1004");
    let mut r = server
        .req("GET", &format!("/v2/{OTHER_PROJECT}/instances"))
        .signed_by(OTHER_AK, OTHER_SK);
    r.project_header = Some(OTHER_PROJECT.into());
    assert_eq!(r.send().await.status, 200);

    let mut r = server.req("GET", &path);
    r.extra_headers
        .push(("authorization".into(), "Bearer x".into()));
    r.sign = false;
    r.send().await.assert_error(401, "DCS.1001");
    server.stop().await;
}

async fn bad_requests_get_dcs_errors(db: Db) {
    let server = TestServer::start(db).await;
    let reg = format!("/v2/{PROJECT}/rdbvault/instances");

    let mut r = server.req("POST", &reg);
    r.content_type = Some("application/json;charset=utf-8".into());
    r.send().await.assert_error(400, "DCS.4004");
    server
        .req("POST", &reg)
        .json("{\"name\": ")
        .send()
        .await
        .assert_error(400, "DCS.4005");
    server
        .req("POST", &reg)
        .json("not json at all")
        .send()
        .await
        .assert_error(400, "DCS.4005");
    let mut r = server
        .req("POST", &reg)
        .json(&register_body("x", "127.0.0.1:1"));
    r.content_type = Some("text/plain".into());
    r.send().await.assert_error(415, "DCS.4915");
    let mut r = server
        .req("POST", &reg)
        .json(&register_body("x", "127.0.0.1:1"));
    r.content_type = None;
    r.send().await.assert_error(415, "DCS.4915");
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(100_000));
    server
        .req("POST", &reg)
        .json(&huge)
        .send()
        .await
        .assert_error(413, "DCS.4913");

    server
        .req("GET", "/v2/nothing/here/at/all")
        .send()
        .await
        .assert_error(404, "DCS.4001");
    server
        .req("GET", "/whatever")
        .send()
        .await
        .assert_error(404, "DCS.4001");
    server
        .req("PUT", &format!("/v2/{PROJECT}/instances"))
        .send()
        .await
        .assert_error(405, "DCS.5001");
    server
        .req("PATCH", &reg)
        .send()
        .await
        .assert_error(405, "DCS.5001");

    let mut r = server.req("GET", "/v2/bad%20project/instances");
    r.project_header = None;
    r.send().await.assert_error(400, "DCS.4002");
    server
        .req("GET", &format!("/v2/{PROJECT}/instances/not-a-uuid"))
        .send()
        .await
        .assert_error(400, "DCS.4061");
    server
        .req(
            "GET",
            &format!("/v2/{PROJECT}/instances/{}", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .assert_error(404, "DCS.3022");
    server
        .req(
            "DELETE",
            &format!("/v2/{PROJECT}/rdbvault/instances/..%2F.."),
        )
        .send()
        .await
        .assert_error(400, "DCS.4061");

    for q in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "offset=-1",
        "offset=x",
        "status=SLEEPING",
        "instance_id=nope",
        "limit=99999999999999999999999",
    ] {
        server
            .req("GET", &format!("/v2/{PROJECT}/instances?{q}"))
            .send()
            .await
            .assert_error(
                400,
                if q.starts_with("instance_id") {
                    "DCS.4061"
                } else {
                    "DCS.4800"
                },
            );
    }

    // Health, metrics and the OpenAPI document need no signature.
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"rdbvault_http_requests_total{method="GET",route="/v2/{project_id}/instances",status="400"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("rdbvault_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    let doc = server.openapi().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v2/{project_id}/instances/{instance_id}"]["get"].is_object());
    assert!(doc["paths"]["/v2/{project_id}/rdbvault/instances"]["post"].is_object());

    // The client's request id is kept; otherwise one is made.
    let mut r = server.req("GET", &format!("/v2/{PROJECT}/instances"));
    r.extra_headers
        .push(("x-request-id".into(), "trace-me-42".into()));
    assert_eq!(r.send().await.request_id.as_deref(), Some("trace-me-42"));
    // One that is long or not plain (it goes into every log line) is replaced.
    for hostile in [
        "a".repeat(65),
        "x y".into(),
        "id;drop".into(),
        "<script>".into(),
        "a\"b".into(),
    ] {
        let mut r = server.req("GET", &format!("/v2/{PROJECT}/instances"));
        r.extra_headers
            .push(("x-request-id".into(), hostile.clone()));
        let id = r.send().await.request_id.unwrap();
        assert_ne!(id, hostile);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    server.stop().await;
}

async fn list_filters_and_pages(db: Db) {
    let redis = RedisServer::start(&[]);
    let server = TestServer::start(db).await;
    let mut ids = Vec::new();
    for name in ["alpha", "beta", "alphabet"] {
        ids.push(register(&server, name, &redis.addr()).await);
    }
    let get = |q: &str| {
        server
            .req("GET", &format!("/v2/{PROJECT}/instances?{q}"))
            .send()
    };
    let names = |v: serde_json::Value| -> Vec<String> {
        v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(get("name=alpha").await.json()), ["alpha", "alphabet"]);
    assert_eq!(names(get("name_equal=alpha").await.json()), ["alpha"]);
    assert_eq!(
        names(get(&format!("instance_id={}", ids[1])).await.json()),
        ["beta"]
    );
    let page = get("limit=1&offset=1").await.json();
    assert_eq!(page["instance_num"], 3);
    assert_eq!(names(page), ["beta"]);
    assert_eq!(names(get("offset=10").await.json()), Vec::<String>::new());
    assert_eq!(get("status=RUNNING").await.json()["instance_num"], 3);
    assert_eq!(get("status=ERROR").await.json()["instance_num"], 0);
    assert_eq!(get("ip=10.0.0.1").await.json()["instance_num"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_a_restart() {
    let redis = RedisServer::start(&[]);
    let server = TestServer::start(Db::Sqlite).await;
    let id = register(&server, "durable", &redis.addr()).await;
    let config = server.config.clone();
    let dir = server.stop_keeping_data().await;
    let again = TestServer::start_with(Db::Sqlite, |c| {
        *c = rdbvault::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..config.clone()
        };
    })
    .await;
    let shown = again
        .req("GET", &format!("/v2/{PROJECT}/instances/{id}"))
        .send()
        .await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["name"], "durable");
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_none_accepts_unsigned_requests() {
    let server =
        TestServer::start_with(Db::Sqlite, |c| c.auth = rdbvault::config::AuthMode::None).await;
    let mut r = server.req("GET", &format!("/v2/{PROJECT}/instances"));
    r.sign = false;
    assert_eq!(r.send().await.status, 200);
    server.stop().await;
}

/// `list_instances` probes instances, and the addresses of each, in parallel:
/// dead instances cost one probe timeout in all, not one each, and a dead
/// address ahead of a live one costs nothing. The dead here are silent (a
/// listener that never answers, so each probe waits its whole timeout) or
/// refuse connections (a closed port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_probes_in_parallel() {
    let redis = RedisServer::start(&[]);
    let server = TestServer::start_with(Db::Sqlite, |c| c.probe_timeout_ms = 1000).await;
    // The kernel completes connections to a listener nobody accepts from; the
    // INFO sent on them gets no answer.
    let silent: Vec<std::net::TcpListener> = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let silent: Vec<String> = silent
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let closed = format!("127.0.0.1:{}", common::free_port());
    let mut expected = Vec::new();
    let mut add = async |name: String, mode: &str, addrs: Vec<String>, status: &str| {
        server
            .register(json!({"name": name, "mode": mode, "addrs": addrs, "verify": false}))
            .await;
        expected.push((name, status.to_string()));
        // Listed by registration time (milliseconds): keep them apart.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    };
    for n in 0..20 {
        let addr = silent[n % silent.len()].clone();
        add(format!("silent-{n}"), "single", vec![addr], "ERROR").await;
    }
    add("closed".into(), "single", vec![closed.clone()], "ERROR").await;
    let mut ha = silent.clone();
    ha.push(closed);
    ha.push(redis.addr());
    add("ha-live-last".into(), "ha", ha, "RUNNING").await;
    add("live".into(), "single", vec![redis.addr()], "RUNNING").await;
    // 20 + 1 + 4 silent probes of 1 s each: 25 s one after the other, 5 s in
    // waves of 16 instances with each instance's addresses in turn.
    for query in ["limit=1000", "limit=1000&status=ERROR"] {
        let start = std::time::Instant::now();
        let r = server
            .req("GET", &format!("/v2/{PROJECT}/instances?{query}"))
            .send()
            .await;
        let elapsed = start.elapsed();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            elapsed < std::time::Duration::from_millis(2500),
            "{query}: listing took {elapsed:?}"
        );
        let listed: Vec<(String, String)> = r.json()["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_string(),
                    i["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let wanted: Vec<_> = expected
            .iter()
            .filter(|(_, status)| !query.contains("status") || status == "ERROR")
            .cloned()
            .collect();
        assert_eq!(listed, wanted, "{query}");
    }
    let live = server
        .req(
            "GET",
            &format!("/v2/{PROJECT}/instances?name_equal=ha-live-last"),
        )
        .send()
        .await
        .json();
    assert_eq!(live["instances"][0]["status"], "RUNNING");
    assert!(
        !live["instances"][0]["engine_version"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    server.stop().await;
}

/// Five failed signatures for one access key lock it for a while: 429 with
/// Retry-After, even for a good signature; other keys are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_signatures_lock_the_access_key() {
    let server = TestServer::start(Db::Sqlite).await;
    let path = format!("/v2/{PROJECT}/instances");
    for _ in 0..5 {
        server
            .req("GET", &path)
            .signed_by(common::AK, "guessed-secret")
            .send()
            .await
            .assert_error(401, "DCS.1001");
    }
    let locked = server.req("GET", &path).send().await;
    locked.assert_error(429, "DCS.4960");
    let wait: u64 = locked.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    // Another credential still works.
    let mut other = server
        .req("GET", &format!("/v2/{OTHER_PROJECT}/instances"))
        .signed_by(OTHER_AK, OTHER_SK);
    other.project_header = Some(OTHER_PROJECT.into());
    let other = other.send().await;
    assert_eq!(
        other.status,
        200,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    server.stop().await;
}

/// With `public_url` (or `allowed_hosts`) set, a request signed for another
/// host is refused, whatever its signature; the service's own names work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_signed_for_another_host_are_refused() {
    let server = TestServer::start_with(Db::Sqlite, |c| {
        c.public_url = Some("https://backup.example.com".into());
        c.allowed_hosts = vec!["Alias.Example:7480".into()];
    })
    .await;
    let path = format!("/v2/{PROJECT}/instances");
    // Signed, but for the address it was sent to: not a name of the service.
    let r = server.req("GET", &path).send().await;
    r.assert_error(401, "DCS.1001");
    assert!(
        r.json()["error_msg"]
            .as_str()
            .unwrap()
            .contains("does not answer to"),
        "{}",
        r.json()
    );
    for host in ["backup.example.com", "alias.example:7480"] {
        let mut r = server.req("GET", &path);
        r.host = host.into();
        let r = r.send().await;
        assert_eq!(
            r.status,
            200,
            "{host}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let mut r = server.req("GET", &path);
    r.host = "backup.example.com.evil.example".into();
    r.send().await.assert_error(401, "DCS.1001");
    // Unsigned endpoints answer whatever the host.
    assert!(!server.get_text("/healthz").await.is_empty());
    server.stop().await;
}

/// What the fuzz campaign (`tests/fuzz_api.rs`) found, held on both
/// backends: a remark with U+0000 was a 500 on PostgreSQL; a body (or a
/// nested policy) written as an array of its fields was read as the
/// object; whole numbers written `7.0` were refused although the document's
/// `integer` allows them; `+1`, a port `06379` and an offset past what SQL
/// can skip were read although the document does not allow them.
async fn bodies_and_queries_are_read_as_documented(db: Db) {
    let redis = RedisServer::start_fast(&[]);
    let server = TestServer::start(db).await;
    let instance = register(&server, "fuzzed", &redis.addr()).await;
    let backups = format!("/v2/{PROJECT}/instances/{instance}/backups");
    let post = |path: &str, body: &str| server.req("POST", path).json(body).send();

    post(&backups, r#"{"remark": "a\u0000b"}"#)
        .await
        .assert_error(400, "DCS.4800");
    let backup = server.backed_up(&instance).await;
    let restores = format!("/v2/{PROJECT}/instances/{instance}/restores");
    post(
        &restores,
        &json!({"backup_id": backup, "remark": "a\u{0}b"}).to_string(),
    )
    .await
    .assert_error(400, "DCS.4800");
    let unknown = uuid::Uuid::new_v4();
    post(&backups, "[null, null]")
        .await
        .assert_error(400, "DCS.4800");
    post(&backups, r#" ["x", "rdb"]"#)
        .await
        .assert_error(400, "DCS.4800");

    let policy = format!("/v2/{PROJECT}/instances/{instance}");
    let put = |body: serde_json::Value| server.req("PUT", &policy).json(&body.to_string()).send();
    let plan = json!({"backup_at": [1.0, 3], "period_type": "weekly", "begin_at": "01:00-02:00"});
    let r = put(json!({"instance_backup_policy": {"backup_type": "auto", "save_days": 7.0, "periodical_backup_plan": plan}})).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let shown = server.show_instance(&instance).await;
    assert_eq!(shown["instance_backup_policy"]["policy"]["save_days"], 7);
    assert_eq!(
        shown["instance_backup_policy"]["policy"]["periodical_backup_plan"]["backup_at"],
        json!([1, 3])
    );
    for bad in [
        json!({"instance_backup_policy": ["auto", 7, null]}),
        json!({"instance_backup_policy": {"backup_type": "auto", "save_days": 7, "periodical_backup_plan": [[1], "weekly", "01:00-02:00"]}}),
        json!({"instance_backup_policy": {"backup_type": "manual", "save_days": 7.5}}),
        json!({"instance_backup_policy": {"backup_type": "manual", "periodical_backup_plan": {"backup_at": [1], "period_type": "weekly", "begin_at": "01:00-02:00", "timezone_offset": "+0:800"}}}),
        json!({"instance_backup_policy": {"backup_type": "manual", "periodical_backup_plan": {"backup_at": [1], "period_type": "weekly", "begin_at": "+1:00-02:00"}}}),
    ] {
        let r = put(bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", String::from_utf8_lossy(&r.body));
    }

    // 600.0 is an expiration of 600: the backup is what is missing.
    post(
        &format!("{backups}/{unknown}/links"),
        r#"{"expiration": 600.0}"#,
    )
    .await
    .assert_error(404, "DCS.4930");

    for q in ["limit=%2B1", "offset=%2B1", "offset=9223372036854775808"] {
        server
            .req("GET", &format!("{backups}?{q}"))
            .send()
            .await
            .assert_error(400, "DCS.4800");
    }
    let r = server
        .req("GET", &format!("{backups}?offset=9223372036854775807"))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let registrations = format!("/v2/{PROJECT}/rdbvault/instances");
    post(
        &registrations,
        &json!({"name": "zero", "mode": "single", "addrs": ["127.0.0.1:06379"], "verify": false})
            .to_string(),
    )
    .await
    .assert_error(400, "DCS.4800");
    server.stop().await;
}
