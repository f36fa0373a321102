//! The contract as a client and an operator meet it, against the real
//! service: every operation of the served `/openapi.json` answers at its path
//! and method, guarded as the document says, and a documented path refuses
//! every method the document does not name for it. (That the router has no
//! route outside the document holds by construction: it is built from the
//! document's operations only; `api::tests` check that list.) And the
//! configuration file's unknown keys, nested ones too, reach the operator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, OTHER_AK, OTHER_SK, PROJECT, Resp, TestServer};

/// Every method a documented path is probed with. HEAD is not among them:
/// HTTP serves it wherever GET is (axum answers it with the GET handler),
/// so documenting GET documents it.
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"];

/// A concrete path for a documented template.
fn fill(template: &str, bucket: &str) -> String {
    let path = template
        .replace("{project_id}", PROJECT)
        .replace("{bucket}", bucket)
        .replace("{instance_id}", "7b0c1f7e-3f4e-4d2a-9a51-0c2f3e4d5a6b")
        .replace("{backup_id}", "0e8a9b7c-6d5e-4f3a-8b2c-1d0e9f8a7b6c")
        .replace("{file_name}", "dump.rdb");
    assert!(!path.contains('{'), "{template}: a parameter to fill in");
    path
}

/// The router's own answer for a path or method it does not serve.
fn is_fallback(r: &Resp) -> bool {
    let code = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|b| b["error_code"].as_str().map(str::to_string));
    matches!(
        (r.status, code.as_deref()),
        (404, Some("DCS.4001")) | (405, Some("DCS.5001"))
    )
}

#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else_on_its_path() {
    let server = TestServer::start(Db::Sqlite).await;
    let doc = server.openapi().await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10, "{doc}");
    for (template, item) in paths {
        let path = fill(template, &server.config.bucket);
        for method in METHODS {
            let what = format!("{method} {template}");
            let unsigned = {
                let mut req = server.req(method, &path);
                req.sign = false;
                req.send().await
            };
            let Some(operation) = item.get(method.to_lowercase()) else {
                assert!(
                    unsigned.status == 405 && is_fallback(&unsigned),
                    "{what} is not documented, yet answered {} {}",
                    unsigned.status,
                    String::from_utf8_lossy(&unsigned.body)
                );
                unsigned.assert_error(405, "DCS.5001");
                continue;
            };
            if operation["security"] == serde_json::json!([{}]) {
                // Open to anyone (or authenticated by the link itself).
                assert!(
                    !is_fallback(&unsigned) && unsigned.status != 401,
                    "{what} is documented without authentication, yet answered {} {}",
                    unsigned.status,
                    String::from_utf8_lossy(&unsigned.body)
                );
            } else {
                // Signed: refused unsigned by the authentication of the route,
                // answered by its handler when signed.
                assert!(
                    !is_fallback(&unsigned),
                    "{what} is documented, yet answered {} {}",
                    unsigned.status,
                    String::from_utf8_lossy(&unsigned.body)
                );
                unsigned.assert_error(401, "DCS.1003");
                let signed = server.req(method, &path).send().await;
                assert!(
                    !is_fallback(&signed) && ![401, 403].contains(&signed.status),
                    "{what} is documented, yet answered {} {} when signed",
                    signed.status,
                    String::from_utf8_lossy(&signed.body)
                );
            }
        }
    }
    server.stop().await;
}

/// Unknown keys are reported, not refused: `serve` names each, in nested
/// tables too, before anything else can go wrong.
#[test]
fn serve_reports_unknown_keys_in_nested_tables() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        r#"
        listenn = "127.0.0.1:1"
        [s3]
        endpiont = "http://127.0.0.1:9000"
        [[credentials]]
        access_key = "AK"
        secret = "SK"
        projects = ["p"]
        "#,
    )
    .unwrap();
    // `secret` is not `secret_key`: the credential has none, and serve
    // stops after the warnings.
    let out = common::serve_config_output(&file, dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["listenn", "s3.endpiont", "credentials[0].secret"] {
        assert!(
            err.contains(&format!("unknown configuration key {key} in")),
            "{key} not reported: {err}"
        );
    }
    assert!(err.contains("credential AK"), "{err}");
}

/// Every refusal the real service answers is in the document for that
/// operation: each signed operation is sent unsigned (401), signed by a
/// credential without the project (403), with a body over `max_body_bytes`
/// (413), a body that is not JSON (415, where it takes one), a malformed
/// instance id (400) and an unknown one (404); then an access key locked
/// out (429). The fuzz campaign (`tests/fuzz_api.rs`) checks the same for
/// what it generates; this holds it for each refusal by name.
#[tokio::test]
async fn every_refusal_the_service_answers_is_documented() {
    let server = TestServer::start(Db::Sqlite).await;
    let doc = server.openapi().await;
    let mut checked = 0;
    let mut signed_operations = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation["security"] == serde_json::json!([{}])
                || !METHODS.contains(&method.to_uppercase().as_str())
            {
                continue;
            }
            signed_operations.push((method.to_uppercase(), template.clone(), operation.clone()));
        }
    }
    assert!(signed_operations.len() >= 12);
    for (method, template, operation) in &signed_operations {
        let documented = |r: &Resp, why: &str| {
            let status = r.status.to_string();
            assert!(
                operation["responses"][&status].is_object(),
                "{method} {template} answered {status} ({why}), which its document does not name: {}",
                String::from_utf8_lossy(&r.body)
            );
        };
        let path = fill(template, &server.config.bucket);
        // A body each operation reads past its extractor to its lookups.
        let body = if template.ends_with("/links") {
            r#"{"expiration": 600}"#.to_string()
        } else if template.ends_with("/restores") {
            format!(r#"{{"backup_id": "{}"}}"#, uuid::Uuid::new_v4())
        } else {
            "{}".to_string()
        };
        let takes_body = !operation["requestBody"].is_null();
        let req = |path: &str| {
            let r = server.req(method, path);
            if takes_body { r.json(&body) } else { r }
        };

        let mut unsigned = req(&path);
        unsigned.sign = false;
        let r = unsigned.send().await;
        assert_eq!(r.status, 401);
        documented(&r, "unsigned");

        let r = req(&path).signed_by(OTHER_AK, OTHER_SK).send().await;
        assert_eq!(r.status, 403);
        documented(&r, "another credential's");

        let mut large = req(&path);
        large.body = vec![b' '; server.config.max_body_bytes + 1];
        let r = large.send().await;
        assert_eq!(r.status, 413);
        documented(&r, "a body too large");

        if takes_body {
            let mut text = req(&path);
            text.content_type = Some("text/plain".into());
            let r = text.send().await;
            assert_eq!(r.status, 415);
            documented(&r, "not JSON");
        }

        if template.contains("{instance_id}") {
            let bad = path.replace("7b0c1f7e-3f4e-4d2a-9a51-0c2f3e4d5a6b", "not-a-uuid");
            let r = req(&bad).send().await;
            assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
            documented(&r, "a malformed instance id");
            let r = req(&path).send().await;
            assert_eq!(
                r.status,
                404,
                "{method} {template}: {}",
                String::from_utf8_lossy(&r.body)
            );
            documented(&r, "an unknown instance");
        }
        checked += 1;
    }
    assert_eq!(checked, signed_operations.len());

    // Five failed signatures lock the key: 429 with Retry-After, documented.
    let (method, template, operation) = &signed_operations[0];
    let path = fill(template, &server.config.bucket);
    for _ in 0..5 {
        let mut bad = server.req(method, &path);
        bad.sk = "wrong".into();
        assert_eq!(bad.send().await.status, 401);
    }
    let r = server.req(method, &path).send().await;
    r.assert_error(429, "DCS.4960");
    assert!(r.retry_after.is_some());
    assert!(operation["responses"]["429"]["headers"]["Retry-After"].is_object());
    server.stop().await;
}
