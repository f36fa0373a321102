//! The contract as a client and an operator meet it, against the real
//! service: every operation of the served `/openapi.json` answers at its path
//! and method, guarded as the document says, and a documented path refuses
//! every method the document does not name for it. (That the router has no
//! route outside the document holds by construction: it is built from the
//! document's operations only; `api::tests` check that list.) And the
//! configuration file's unknown keys, nested ones too, reach the operator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, PROJECT, Resp, TestServer};

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
