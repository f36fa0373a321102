//! The standing fuzz campaign of the API: schemathesis (PyPI) generates
//! requests from the served `/openapi.json`, schema-valid and not, against a
//! real `rdbvault serve` on PostgreSQL with a real redis-server registered;
//! every `/v2` request is signed by the official Huawei Cloud SDK's signer
//! (`tests/fuzz/hooks.py`). It must end with no server error, no answer
//! outside the document (status, content type, headers, body schema), no
//! schema-valid request refused for its form and no schema-violating one
//! accepted, and the service's own metrics must agree: no 5xx, no 401 (the
//! SDK's signature of any generated request verifies), and every signed
//! operation answered with success at least once (the campaign reached the
//! handlers, not only the guards).
//!
//! Bounded: `RDBVAULT_FUZZ_EXAMPLES` cases per operation and phase (150,
//! about a minute and a half on 2 cores) with the seed `RDBVAULT_FUZZ_SEED`
//! (fixed, so CI is reproducible; set another to explore).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{AK, PROJECT, RedisServer, SK, ServeProcess, shared_pg};

const HOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/hooks.py");

/// The checks the campaign runs on every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      positive_data_acceptance,negative_data_rejection";

/// schemathesis's CLI, through the `python3` the SDK tests use.
const CLI: &str = "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())";

/// The keys of an OpenAPI path item that are operations.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// `rdbvault_http_requests_total` by (method, route, status).
fn requests(metrics: &str) -> BTreeMap<(String, String, u16), u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("rdbvault_http_requests_total{") else {
            continue;
        };
        let (labels, count) = rest.rsplit_once("} ").unwrap();
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            labels[start..].split('"').next().unwrap().to_string()
        };
        out.insert(
            (
                label("method"),
                label("route"),
                label("status").parse().unwrap(),
            ),
            count.parse().unwrap(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_the_document_does_not_allow() {
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["DEBUG", "POPULATE", "200"]);
    let dir = tempfile::tempdir().unwrap();
    let db = shared_pg().await;
    // Probes of the addresses the campaign registers are short; the rate
    // limit of changing calls (tested on its own) would only answer 429.
    let serve = ServeProcess::start_configured(
        dir.path(),
        &[],
        &format!(
            "database_url = \"{db}\"\nprobe_timeout_ms = 300\nmutating_calls_per_minute = 0\n"
        ),
    );
    let api = serve.client();
    let instance = api.register_single(&redis.addr()).await;
    let backup = api.backed_up(&instance).await;
    let spare = api.backed_up(&instance).await;
    let spare_instance = api
        .register(serde_json::json!({
            "name": "spare", "mode": "single", "addrs": [redis.addr()],
        }))
        .await;

    let examples = setting("RDBVAULT_FUZZ_EXAMPLES", "150");
    let seed = setting("RDBVAULT_FUZZ_SEED", "15");
    let scratch = tempfile::tempdir().unwrap();
    let report = scratch.path().join("schemathesis.xml");
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new("python3")
        .args(["-c", CLI, "run", &format!("{}/openapi.json", serve.base)])
        .args([
            "--checks",
            CHECKS,
            "--mode",
            "all",
            "--max-examples",
            &examples,
        ])
        .args(["--seed", &seed, "--workers", "1", "--no-color"])
        .args(["--generation-database", "none"])
        // The signature is the SDK's (the hooks); the campaign fuzzes the
        // rest, not the Authorization header (`tests/contract.rs`, `sdk.rs`).
        .args(["--generation-with-security-parameters", "false"])
        .args(["--generation-allow-x00", "true", "--request-timeout", "30"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&report)
        // What schemathesis keeps between runs goes there, not into the source tree.
        .current_dir(scratch.path())
        .env("SCHEMATHESIS_HOOKS", HOOKS)
        .env("RDBVAULT_FUZZ_AK", AK)
        .env("RDBVAULT_FUZZ_SK", SK)
        .env("RDBVAULT_FUZZ_PROJECT", PROJECT)
        .env("RDBVAULT_FUZZ_INSTANCE", &instance)
        .env("RDBVAULT_FUZZ_BACKUP", &backup)
        .env("RDBVAULT_FUZZ_SPARE", &spare)
        .env("RDBVAULT_FUZZ_SPARE_INSTANCE", &spare_instance)
        .output()
        .await
        .expect("python3 with schemathesis (pip install schemathesis)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "schemathesis ({} examples, seed {seed}) ran {:.0} s:\n{stdout}",
        examples,
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "schemathesis found something (reproduce: RDBVAULT_FUZZ_SEED={seed}):\n{stdout}\n{stderr}"
    );

    // Every documented operation was tested, and every case passed.
    let doc: serde_json::Value =
        serde_json::from_str(&api.get_text("/openapi.json").await).unwrap();
    let operations: Vec<(String, String, &serde_json::Value)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .iter()
                .filter(|(key, _)| METHODS.contains(&key.as_str()))
                .map(|(method, op)| (method.to_uppercase(), path.clone(), op))
        })
        .collect();
    // All but `/openapi.json` itself, which schemathesis leaves out.
    let fuzzed = operations.len() - 1;
    assert!(
        stdout.contains(&format!("Selected: {fuzzed}/{fuzzed}\n"))
            && stdout.contains(&format!("Tested: {fuzzed}\n")),
        "not all {fuzzed} operations were tested:\n{stdout}"
    );
    let cases = stdout
        .lines()
        .find(|l| l.contains(" generated, "))
        .expect("a summary of the test cases");
    let (generated, passed) = cases.trim().split_once(" generated, ").unwrap();
    assert_eq!(passed, format!("{generated} passed"), "{cases}\n{stdout}");
    assert!(generated.parse::<u64>().unwrap() >= 1000, "{cases}");
    let junit = std::fs::read_to_string(&report).unwrap();
    assert!(
        junit.contains("failures=\"0\"") && junit.contains("errors=\"0\""),
        "{junit}"
    );

    // What the service itself counted.
    let counted = requests(&api.get_text("/metrics").await);
    let server_errors: Vec<_> = counted.iter().filter(|((_, _, s), _)| *s >= 500).collect();
    assert!(server_errors.is_empty(), "5xx answered: {server_errors:?}");
    let refused_signatures: Vec<_> = counted.iter().filter(|((_, _, s), _)| *s == 401).collect();
    assert!(
        refused_signatures.is_empty(),
        "the SDK's signature of a generated request was refused: {refused_signatures:?}"
    );
    let succeeded: BTreeSet<(String, String)> = counted
        .iter()
        .filter(|((_, _, s), _)| (200..300).contains(s))
        .map(|((m, r, _), _)| (m.clone(), r.clone()))
        .collect();
    for (method, path, operation) in &operations {
        if operation["security"] == serde_json::json!([{}]) {
            continue;
        }
        let key = (method.clone(), path.clone());
        assert!(
            succeeded.contains(&key),
            "{key:?} never answered with success: the campaign did not reach it"
        );
    }
    let total: u64 = counted.values().sum();
    println!("the service answered {total} requests: {counted:?}");
}
