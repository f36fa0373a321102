//! HTTPS: `serve` terminates TLS itself with `tls_cert_file`/`tls_key_file`,
//! links and the CLI follow `https`, the CLI verifies the certificate
//! (`--ca-file` for a private CA), and SIGHUP swaps the certificate for new
//! handshakes without dropping the connections that are open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{AK, PROJECT, Pki, RedisServer, SK, ServeProcess};

const BIN: &str = env!("CARGO_BIN_EXE_rdbvault");

/// A certificate for 127.0.0.1 signed by the PKI's CA, in `name.crt` and
/// `name.key`; returns its serial as openssl prints it.
fn server_cert(pki: &Pki, name: &str) -> String {
    let (crt, _) = pki.server_cert(name);
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(crt)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The serial of the certificate a new handshake with `port` is given.
fn served_serial(port: &str) -> String {
    let shown = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&shown.stdout).trim().to_string()
}

/// The status `/healthz` answers over `client`.
async fn health(client: &reqwest::Client, base: &str) -> u16 {
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    r.status().as_u16()
}

fn cli(base: &str, ca: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("RDBVAULT_ENDPOINT", base)
        .env("RDBVAULT_AK", AK)
        .env("RDBVAULT_SK", SK)
        .env("RDBVAULT_PROJECT_ID", PROJECT)
        .env_remove("RDBVAULT_CA_FILE");
    if let Some(ca) = ca {
        cmd.arg("--ca-file").arg(ca);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_links_the_cli_and_a_certificate_reload() {
    let pki = Pki::new();
    let ca = pki.ca();
    let first = server_cert(&pki, "first");
    let (cert, key) = (
        pki.dir.path().join("live.crt"),
        pki.dir.path().join("live.key"),
    );
    std::fs::copy(pki.dir.path().join("first.crt"), &cert).unwrap();
    std::fs::copy(pki.dir.path().join("first.key"), &key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let serve = ServeProcess::start_configured(dir.path(), &[], &extra);
    let port = serve.base.rsplit(':').next().unwrap().to_string();
    let base = format!("https://127.0.0.1:{port}");

    // Plain HTTP to the TLS port gets nothing usable; HTTPS with the CA works.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_err()
    );
    let pem = std::fs::read(&ca).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    assert_eq!(health(&trusting, &base).await, 200);

    // The CLI verifies the certificate: refused without the CA, fine with it.
    let (ok, _, err) = cli(&base, None, &["instance", "list"]);
    assert!(!ok);
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("request failed"),
        "{err}"
    );
    let redis = RedisServer::start_fast(&[]);
    redis.cli(&["SET", "k", "v"]);
    let (ok, out, err) = cli(
        &base,
        Some(&ca),
        &[
            "instance",
            "add",
            "--name",
            "tls",
            "--mode",
            "single",
            "--addr",
            &redis.addr(),
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let instance = serde_json::from_str::<serde_json::Value>(&out).unwrap()["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, err) = cli(
        &base,
        Some(&ca),
        &["backup", "create", &instance, "--wait", "--json"],
    );
    assert!(ok, "{out}{err}");
    let backup = serde_json::from_str::<serde_json::Value>(out.lines().last().unwrap()).unwrap()
        ["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Links follow the scheme, and the CLI downloads (and verifies) through them.
    let (ok, out, err) = cli(
        &base,
        Some(&ca),
        &["backup", "links", &instance, &backup, "--json"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("\"{base}/")), "{out}");
    let files = tempfile::tempdir().unwrap();
    let (ok, out, err) = cli(
        &base,
        Some(&ca),
        &[
            "backup",
            "download",
            &instance,
            &backup,
            "--out",
            files.path().to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(common::all_files(files.path()).len(), 1);

    // A connection open across the reload keeps working; new handshakes
    // get the new certificate.
    assert_eq!(health(&trusting, &base).await, 200);
    assert_eq!(served_serial(&port), first);
    let second = server_cert(&pki, "second");
    assert_ne!(first, second);
    std::fs::copy(pki.dir.path().join("second.crt"), &cert).unwrap();
    std::fs::copy(pki.dir.path().join("second.key"), &key).unwrap();
    let pid = serve.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut served = String::new();
    for _ in 0..50 {
        served = served_serial(&port);
        if served == second {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(served, second, "the new certificate is served after SIGHUP");
    assert_eq!(health(&trusting, &base).await, 200);

    // A broken file on reload: the service keeps the pair it has.
    std::fs::write(&cert, "not a certificate").unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(served_serial(&port), second);
    drop(serve);
}

#[test]
fn half_a_tls_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "tls_cert_file = \"/nonexistent.crt\"\n").unwrap();
    let out = common::serve_config_output(&config, dir.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set both"),
        "{out:?}"
    );
}
