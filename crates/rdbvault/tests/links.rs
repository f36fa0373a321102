//! ListBackupFileLinks and the download endpoint: links download the very
//! bytes stored, only with an intact signature and only until they expire.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{
    Db, OTHER_AK, OTHER_PROJECT, OTHER_SK, PROJECT, RedisServer, TestServer, fill_all_types,
    wait_for,
};
use serde_json::json;

struct Fixture {
    server: TestServer,
    _redis: RedisServer,
    instance: String,
    backup: String,
    file: std::path::PathBuf,
}

async fn fixture(db: Db) -> Fixture {
    let redis = RedisServer::start_fast(&[]);
    fill_all_types(&redis).await;
    let server = TestServer::start(db).await;
    let instance = server.register_single(&redis.addr()).await;
    let backup = server.start_backup(&instance).await;
    assert_eq!(
        server.wait_backup(&instance, &backup).await["status"],
        "succeed"
    );
    let file = server.stored_files(&instance, &backup).remove(0);
    Fixture {
        server,
        _redis: redis,
        instance,
        backup,
        file,
    }
}

impl Fixture {
    fn links_path(&self) -> String {
        format!(
            "/v2/{PROJECT}/instances/{}/backups/{}/links",
            self.instance, self.backup
        )
    }

    async fn link(&self) -> String {
        let r = self
            .server
            .req("POST", &self.links_path())
            .json(r#"{"expiration": 300}"#)
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["links"][0]["link"].as_str().unwrap().to_string()
    }
}

/// `curl` as a user would run it: status, headers, body.
fn curl(args: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("h");
    let body = dir.path().join("b");
    let out = Command::new("curl")
        .args(["-s", "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl on PATH");
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (
        status,
        std::fs::read_to_string(&headers)
            .unwrap_or_default()
            .to_lowercase(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

fn assert_denied((status, _, body): &(u16, String, Vec<u8>), want: u16, code: &str) {
    let text = String::from_utf8_lossy(body);
    assert_eq!(*status, want, "{text}");
    assert!(text.contains(&format!("<Code>{code}</Code>")), "{text}");
}

both_backends!(links_download_the_stored_bytes, link_requests_are_validated);

async fn links_download_the_stored_bytes(db: Db) {
    let f = fixture(db).await;
    let stored = std::fs::read(&f.file).unwrap();
    let r = f
        .server
        .req("POST", &f.links_path())
        .json(r#"{"expiration": 300}"#)
        .send()
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["file_path"], format!("{}/{}/", f.instance, f.backup));
    assert_eq!(v["bucket_name"], "rdbvault");
    let links = v["links"].as_array().unwrap();
    assert_eq!(links.len(), 1);
    let name = f.file.file_name().unwrap().to_str().unwrap();
    assert_eq!(links[0]["file_name"], name);
    assert_eq!(links[0]["size"], stored.len());
    let link = links[0]["link"].as_str().unwrap();
    let expected_prefix = format!(
        "{}/rdbvault/{}/{}/{name}?AWSAccessKeyId=",
        f.server.base, f.instance, f.backup
    );
    assert!(link.starts_with(&expected_prefix), "{link}");
    let expires: i64 = link
        .split("Expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (expires - chrono::Utc::now().timestamp() - 300).abs() <= 5,
        "Expires {expires}"
    );
    assert!(link.contains("&Signature="));

    // A plain GET with nothing but the link.
    let (status, headers, body) = curl(&[link]);
    assert_eq!(status, 200);
    assert_eq!(body, stored, "downloaded bytes differ from the stored file");
    assert_eq!(
        header(&headers, "content-length"),
        Some(stored.len().to_string().as_str())
    );
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
    assert!(
        header(&headers, "etag").is_some_and(|e| e.len() == 66),
        "{headers}"
    );
    assert!(header(&headers, "last-modified").is_some());
    assert_eq!(
        header(&headers, "content-disposition"),
        Some(format!("attachment; filename=\"{name}\"").as_str())
    );

    // HEAD: the same headers, no body.
    let head = reqwest::Client::new().head(link).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        stored.len().to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());

    // Ranges, so a broken download resumes.
    let (status, headers, body) = curl(&["-H", "Range: bytes=10-99", link]);
    assert_eq!(status, 206);
    assert_eq!(body, &stored[10..100]);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes 10-99/{}", stored.len()).as_str())
    );
    let (status, _, body) = curl(&["-H", "Range: bytes=-100", link]);
    assert_eq!(status, 206);
    assert_eq!(body, &stored[stored.len() - 100..]);
    let (status, _, body) = curl(&["-H", "Range: bytes=1000-", link]);
    assert_eq!(status, 206);
    assert_eq!(body, &stored[1000..]);
    let (status, headers, _) = curl(&["-H", &format!("Range: bytes={}-", stored.len()), link]);
    assert_eq!(status, 416);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes */{}", stored.len()).as_str())
    );

    // Many at once.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let link = link.to_string();
            std::thread::spawn(move || curl(&[&link]))
        })
        .collect();
    for h in handles {
        let (status, _, body) = h.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, stored);
    }
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_expired_and_escaping_links_are_refused() {
    let f = fixture(Db::Sqlite).await;
    let link = f.link().await;
    let (url, query) = link.split_once('?').unwrap();
    let sig = query.split("Signature=").nth(1).unwrap();
    let expires = query
        .split("Expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();

    // The signature, the expiry, the path, the key id: any change is refused.
    let flipped = if sig.starts_with('A') {
        sig.replacen('A', "B", 1)
    } else {
        format!("A{}", &sig[1..])
    };
    assert_denied(&curl(&[&link.replace(sig, &flipped)]), 403, "AccessDenied");
    let later = (expires.parse::<i64>().unwrap() + 1).to_string();
    assert_denied(
        &curl(&[&link.replace(&format!("Expires={expires}"), &format!("Expires={later}"))]),
        403,
        "AccessDenied",
    );
    let other_file = url.replace(".rdb", "x.rdb");
    assert_denied(
        &curl(&[&format!("{other_file}?{query}")]),
        403,
        "AccessDenied",
    );
    let key_id = query
        .split("AWSAccessKeyId=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert_denied(
        &curl(&[&link.replace(key_id, "RVNOSUCHKEY0000000000")]),
        403,
        "AccessDenied",
    );
    // Missing or malformed parameters.
    assert_denied(&curl(&[url]), 403, "AccessDenied");
    assert_denied(
        &curl(&[&link.replace(&format!("&Signature={sig}"), "")]),
        403,
        "AccessDenied",
    );
    assert_denied(
        &curl(&[&link.replace(&format!("Expires={expires}"), "Expires=tomorrow")]),
        400,
        "InvalidArgument",
    );

    // Paths that try to leave the store never reach a file, signed or not.
    let base = &f.server.base;
    for path in [
        "/rdbvault/../../../../etc/passwd".to_string(),
        "/rdbvault/..%2F..%2F..%2Fetc%2Fpasswd".to_string(),
        format!("/rdbvault/{}%2F{}/x.rdb", f.instance, f.backup),
        "/rdbvault//etc/passwd".to_string(),
        format!("/rdbvault/{}/{}/..", f.instance, f.backup),
    ] {
        let (status, _, body) = curl(&["--path-as-is", &format!("{base}{path}?{query}")]);
        assert!(
            status == 403 || status == 400 || status == 404,
            "{path}: {status}"
        );
        assert!(
            !String::from_utf8_lossy(&body).contains("root:"),
            "{path} leaked a file"
        );
    }

    // A correctly signed link whose time is up.
    let meta = rdbvault::meta::Meta::open(&f.server.config).await.unwrap();
    let signer = rdbvault::objects::link_signing::LinkSigner::new(meta.clone())
        .await
        .unwrap();
    let path = url.trim_start_matches(base.as_str());
    let past = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let stale = format!("{url}?{}", signer.sign(path, past).await.unwrap());
    let denied = curl(&[&stale]);
    assert_denied(&denied, 403, "AccessDenied");
    assert!(String::from_utf8_lossy(&denied.2).contains("expired"));
    let fresh = format!(
        "{url}?{}",
        signer
            .sign(path, chrono::Utc::now() + chrono::TimeDelta::seconds(60))
            .await
            .unwrap()
    );
    assert_eq!(
        curl(&[&fresh]).0,
        200,
        "a link signed the same way but still valid works"
    );
    // Signed with the service's own key, but valid for longer than any link
    // it issues (a leaked key minting links until 2100): refused.
    let sign_until = |at: chrono::DateTime<chrono::Utc>| {
        let (signer, path) = (&signer, path);
        async move { format!("{url}?{}", signer.sign(path, at).await.unwrap()) }
    };
    let far = sign_until("2100-01-01T00:00:00Z".parse().unwrap()).await;
    let denied = curl(&[&far]);
    assert_denied(&denied, 403, "AccessDenied");
    assert!(
        String::from_utf8_lossy(&denied.2).contains("further ahead"),
        "{:?}",
        String::from_utf8_lossy(&denied.2)
    );
    let day_and_more = sign_until(chrono::Utc::now() + chrono::TimeDelta::hours(25)).await;
    assert_eq!(curl(&[&day_and_more]).0, 403);
    let within_a_day = sign_until(chrono::Utc::now() + chrono::TimeDelta::hours(23)).await;
    assert_eq!(
        curl(&[&within_a_day]).0,
        200,
        "the API's longest links stay valid"
    );

    // Key rotation: old links keep working, new links use the new key, and a
    // retired key stops verifying once its longest link would have expired.
    // (The rotation happens as another node would do it: through the
    // metadata store; this server learns the new key when it first sees it.)
    meta.rotate_link_key().await.unwrap();
    assert_eq!(
        curl(&[&link]).0,
        200,
        "a link of the retired key still works"
    );
    signer.refresh().await.unwrap();
    let in_a_minute = chrono::Utc::now() + chrono::TimeDelta::seconds(60);
    let new_link = format!("{url}?{}", signer.sign(path, in_a_minute).await.unwrap());
    assert!(
        !new_link.contains(key_id),
        "new links still signed with the retired key"
    );
    // A link of the new key works on a server that has not seen it yet: the
    // unknown key id makes it reload its keys. At most once a second, though
    // (a flood of bogus ids must not become a flood of queries), and the
    // bogus id above may just have made it reload: until then it is refused.
    wait_for(
        "a link of the new key to work on a server that had not seen it",
        std::time::Duration::from_secs(10),
        || async {
            let answer = curl(&[&new_link]);
            if answer.0 != 200 {
                assert_denied(&answer, 403, "AccessDenied");
            }
            (answer.0 == 200).then_some(())
        },
    )
    .await;
    let presented = rdbvault::objects::link_signing::LinkQuery {
        key_id: Some(key_id),
        expires: Some(expires),
        signature: Some(&percent_encoding::percent_decode_str(sig).decode_utf8_lossy()),
    };
    assert!(
        signer
            .verify(path, &presented, chrono::Utc::now())
            .await
            .is_ok()
    );
    let day_after = chrono::Utc::now() + chrono::TimeDelta::hours(25);
    assert!(signer.verify(path, &presented, day_after).await.is_err());

    // Deleting the backup kills its links at once.
    let r = f
        .server
        .req(
            "DELETE",
            &format!(
                "/v2/{PROJECT}/instances/{}/backups/{}",
                f.instance, f.backup
            ),
        )
        .send()
        .await;
    assert_eq!(r.status, 204);
    assert_denied(&curl(&[&new_link]), 404, "NoSuchKey");
    f.server.stop().await;
}

async fn link_requests_are_validated(db: Db) {
    let f = fixture(db).await;
    let path = f.links_path();
    let post = |body: &str| f.server.req("POST", &path).json(body).send();
    let mut empty = f.server.req("POST", &path);
    empty.content_type = Some("application/json;charset=utf-8".into());
    empty.send().await.assert_error(400, "DCS.4004");
    post("{").await.assert_error(400, "DCS.4005");
    post("{}").await.assert_error(400, "DCS.4940");
    post(r#"{"expiration": null}"#)
        .await
        .assert_error(400, "DCS.4940");
    post(r#"{"expiration": "300"}"#)
        .await
        .assert_error(400, "DCS.4941");
    post(r#"{"expiration": 300.5}"#)
        .await
        .assert_error(400, "DCS.4941");
    for out_of_range in [
        "-1",
        "0",
        "299",
        "86401",
        "18446744073709551616",
        "123456789012345678901234567890",
    ] {
        let r = post(&format!(r#"{{"expiration": {out_of_range}}}"#)).await;
        r.assert_error(400, "DCS.4942");
        let msg = r.json()["error_msg"].as_str().unwrap().to_string();
        assert!(msg.contains("300") && msg.contains("86400"), "{msg}");
    }
    post(r#"{"expiration": 300, "format": "zip"}"#)
        .await
        .assert_error(400, "DCS.4800");
    post("[300]").await.assert_error(400, "DCS.4800");
    assert_eq!(post(r#"{"expiration": 86400}"#).await.status, 200);

    let unknown = uuid::Uuid::new_v4();
    let srv = &f.server;
    let links = |inst: &str, bk: &str| format!("/v2/{PROJECT}/instances/{inst}/backups/{bk}/links");
    let ok_body = r#"{"expiration": 300}"#;
    srv.req("POST", &links(&unknown.to_string(), &f.backup))
        .json(ok_body)
        .send()
        .await
        .assert_error(404, "DCS.3022");
    srv.req("POST", &links(&f.instance, &unknown.to_string()))
        .json(ok_body)
        .send()
        .await
        .assert_error(404, "DCS.4930");
    srv.req("POST", &links(&f.instance, "nope"))
        .json(ok_body)
        .send()
        .await
        .assert_error(400, "DCS.4934");
    let other = srv.register_single(&f._redis.addr()).await;
    srv.req("POST", &links(&other, &f.backup))
        .json(ok_body)
        .send()
        .await
        .assert_error(404, "DCS.4932");

    // A backup of another project, reached through an instance of ours.
    let mut reg = srv
        .req("POST", &format!("/v2/{OTHER_PROJECT}/rdbvault/instances"))
        .signed_by(OTHER_AK, OTHER_SK);
    reg.project_header = Some(OTHER_PROJECT.into());
    let reg = reg
        .json(&json!({"name": "theirs", "mode": "single", "addrs": [f._redis.addr()]}).to_string())
        .send()
        .await;
    let their_instance = reg.json()["instance_id"].as_str().unwrap().to_string();
    let mut start = srv
        .req(
            "POST",
            &format!("/v2/{OTHER_PROJECT}/instances/{their_instance}/backups"),
        )
        .signed_by(OTHER_AK, OTHER_SK);
    start.project_header = Some(OTHER_PROJECT.into());
    let their_backup = start.json("{}").send().await.json()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    srv.req("POST", &links(&f.instance, &their_backup))
        .json(ok_body)
        .send()
        .await
        .assert_error(404, "DCS.4933");

    // Backups that are not `succeed`.
    let meta = rdbvault::meta::Meta::open(&srv.config).await.unwrap();
    let nobody = format!("127.0.0.1:{}", common::free_port());
    let dead = srv
        .register(json!({"name": "dead", "mode": "single", "addrs": [nobody], "verify": false}))
        .await;
    let failed = srv.start_backup(&dead).await;
    srv.wait_backup(&dead, &failed).await;
    srv.req("POST", &links(&dead, &failed))
        .json(ok_body)
        .send()
        .await
        .assert_error(400, "DCS.4944");
    let second = srv.start_backup(&f.instance).await;
    srv.wait_backup(&f.instance, &second).await;
    sqlx::query("UPDATE backups SET status = 'expired' WHERE id = $1")
        .bind(&second)
        .execute(meta.pool())
        .await
        .unwrap();
    srv.req("POST", &links(&f.instance, &second))
        .json(ok_body)
        .send()
        .await
        .assert_error(400, "DCS.4946");
    sqlx::query("UPDATE backups SET status = 'backuping' WHERE id = $1")
        .bind(&second)
        .execute(meta.pool())
        .await
        .unwrap();
    srv.req("POST", &links(&f.instance, &second))
        .json(ok_body)
        .send()
        .await
        .assert_error(400, "DCS.4943");
    sqlx::query("UPDATE backups SET status = 'deleted' WHERE id = $1")
        .bind(&second)
        .execute(meta.pool())
        .await
        .unwrap();
    srv.req("POST", &links(&f.instance, &second))
        .json(ok_body)
        .send()
        .await
        .assert_error(400, "DCS.4945");
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_downloads_resume_and_verify() {
    let f = fixture(Db::Sqlite).await;
    let stored = std::fs::read(&f.file).unwrap();
    let name = f.file.file_name().unwrap().to_str().unwrap().to_string();
    let out = tempfile::tempdir().unwrap();
    let env = [
        ("RDBVAULT_ENDPOINT", f.server.base.as_str()),
        ("RDBVAULT_AK", common::AK),
        ("RDBVAULT_SK", common::SK),
        ("RDBVAULT_PROJECT_ID", PROJECT),
    ];
    let cli = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .args(args)
            .envs(env)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let out_s = out.path().to_str().unwrap();

    let (ok, stdout, err) = cli(&[
        "backup",
        "links",
        &f.instance,
        &f.backup,
        "--expiration",
        "600",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["links"][0]["file_name"], name.as_str());

    let (ok, stdout, err) = cli(&["backup", "download", &f.instance, &f.backup, "--out", out_s]);
    assert!(ok, "{stdout}{err}");
    assert_eq!(std::fs::read(out.path().join(&name)).unwrap(), stored);

    // A partial file from an interrupted download is resumed, not restarted.
    std::fs::remove_file(out.path().join(&name)).unwrap();
    std::fs::write(
        out.path().join(format!("{name}.part")),
        &stored[..stored.len() / 3],
    )
    .unwrap();
    let (ok, stdout, err) = cli(&["backup", "download", &f.instance, &f.backup, "--out", out_s]);
    assert!(ok, "{stdout}{err}");
    assert_eq!(std::fs::read(out.path().join(&name)).unwrap(), stored);
    assert!(!out.path().join(format!("{name}.part")).exists());

    // A partial file with wrong bytes fails verification: deleted, non-zero exit.
    std::fs::remove_file(out.path().join(&name)).unwrap();
    let mut bad = stored[..stored.len() / 2].to_vec();
    bad[20] ^= 0xff;
    std::fs::write(out.path().join(format!("{name}.part")), &bad).unwrap();
    let (ok, _, err) = cli(&["backup", "download", &f.instance, &f.backup, "--out", out_s]);
    assert!(!ok);
    assert!(err.contains("verification failed"), "{err}");
    assert!(!out.path().join(&name).exists() && !out.path().join(format!("{name}.part")).exists());
    f.server.stop().await;
}

/// On S3 the links are presigned for the store itself: s3s-fs checks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_links_are_verified_by_the_store() {
    for signing in [
        rdbvault::config::LinkSigning::V4,
        rdbvault::config::LinkSigning::V2,
    ] {
        let redis = RedisServer::start_fast(&[]);
        fill_all_types(&redis).await;
        let server = TestServer::start_with(Db::S3, |c| c.s3.link_signing = signing).await;
        let instance = server.register_single(&redis.addr()).await;
        let backup = server.start_backup(&instance).await;
        assert_eq!(
            server.wait_backup(&instance, &backup).await["status"],
            "succeed"
        );
        let stored = std::fs::read(server.stored_files(&instance, &backup).remove(0)).unwrap();

        let path = format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}/links");
        let answer = server
            .req("POST", &path)
            .json(r#"{"expiration": 300}"#)
            .send()
            .await
            .json();
        assert_eq!(answer["bucket_name"], common::S3_BUCKET);
        assert_eq!(
            answer["file_path"],
            format!("{}{instance}/{backup}/", common::S3_PREFIX)
        );
        let link = answer["links"][0]["link"].as_str().unwrap().to_string();
        let s3 = server.s3.as_ref().unwrap();
        assert!(
            link.starts_with(&format!(
                "{}/{}/{}",
                s3.endpoint(),
                common::S3_BUCKET,
                common::S3_PREFIX
            )),
            "{link}"
        );
        match signing {
            rdbvault::config::LinkSigning::V4 => {
                assert!(link.contains("X-Amz-Signature="), "{link}")
            }
            rdbvault::config::LinkSigning::V2 => {
                assert!(
                    link.contains("AWSAccessKeyId=") && link.contains("&Signature="),
                    "{link}"
                )
            }
        }

        // Straight from the store, byte for byte, with the file's own name.
        let (status, headers, body) = curl(&[&link]);
        assert_eq!(
            status,
            200,
            "{signing:?}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(body, stored);
        assert!(
            headers.contains("content-disposition: attachment"),
            "{headers}"
        );
        let (status, _, body) = curl(&["-H", "Range: bytes=5-14", &link]);
        assert_eq!(status, 206);
        assert_eq!(body, &stored[5..15]);

        // The store refuses a changed signature or expiry.
        let sig_param = if signing == rdbvault::config::LinkSigning::V4 {
            "X-Amz-Signature="
        } else {
            "&Signature="
        };
        let sig = link
            .split(sig_param)
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let flipped = format!(
            "{}{}",
            if sig.starts_with('0') { "1" } else { "0" },
            &sig[1..]
        );
        assert_eq!(
            curl(&[&link.replace(sig, &flipped)]).0,
            403,
            "{signing:?} tampered signature"
        );
        let expiry_param = if signing == rdbvault::config::LinkSigning::V4 {
            "X-Amz-Expires="
        } else {
            "Expires="
        };
        let expiry = link
            .split(expiry_param)
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let longer = (expiry.parse::<i64>().unwrap() + 1).to_string();
        let extended = link.replace(
            &format!("{expiry_param}{expiry}"),
            &format!("{expiry_param}{longer}"),
        );
        assert_eq!(curl(&[&extended]).0, 403, "{signing:?} changed expiry");

        // The CLI downloads from the store unchanged.
        let out = tempfile::tempdir().unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_rdbvault"))
            .args([
                "backup",
                "download",
                &instance,
                &backup,
                "--out",
                out.path().to_str().unwrap(),
            ])
            .envs([
                ("RDBVAULT_ENDPOINT", server.base.as_str()),
                ("RDBVAULT_AK", common::AK),
                ("RDBVAULT_SK", common::SK),
                ("RDBVAULT_PROJECT_ID", PROJECT),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        server.stop().await;
    }
}

/// A V2 link whose time is up is refused by the store itself (signed here
/// with the store's key, as rdbvault signs them, but in the past).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_refuses_expired_v2_links() {
    let s3 = common::S3Server::start();
    let key = "rdbvault/x/y/f.rdb";
    let file = s3.dir.path().join(common::S3_BUCKET).join(key);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // Upload through the API so s3s-fs knows the object.
    let mut config = rdbvault::config::Config::default();
    s3.configure(&mut config);
    let objects = rdbvault::objects::Objects::from_config(&config)
        .await
        .unwrap();
    let mut up = objects.upload("x/y/f.rdb").await.unwrap();
    up.write(b"hello").await.unwrap();
    up.commit().await.unwrap();
    let endpoint = s3.endpoint();
    let link = |expires: i64| {
        rdbvault::objects::sigv2::V2Link {
            endpoint: &endpoint,
            path_style: true,
            bucket: common::S3_BUCKET,
            key,
            access_key: common::S3_AK,
            secret_key: common::S3_SK,
            access_key_param: "AWSAccessKeyId",
            expires,
            overrides: &[],
        }
        .url()
    };
    let now = chrono::Utc::now().timestamp();
    let (status, _, body) = curl(&[&link(now + 60)]);
    assert_eq!((status, body.as_slice()), (200, b"hello".as_slice()));
    assert_eq!(
        curl(&[&link(now - 5)]).0,
        403,
        "an expired V2 link was accepted"
    );
}

/// A SigV4 presigned GET of `key` in the test bucket as object_store signs
/// it, but signed at `at` rather than now, valid `secs` from then.
fn presign_v4(endpoint: &str, key: &str, at: chrono::DateTime<chrono::Utc>, secs: u64) -> String {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let hmac = |key: &[u8], data: &str| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    let (day, stamp) = (
        at.format("%Y%m%d").to_string(),
        at.format("%Y%m%dT%H%M%SZ").to_string(),
    );
    let scope = format!("{day}/us-east-1/s3/aws4_request");
    let host = endpoint.trim_start_matches("http://");
    let path = format!("/{}/{key}", common::S3_BUCKET);
    // Already in canonical (sorted, encoded) order.
    let query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}%2F{}&X-Amz-Date={stamp}&X-Amz-Expires={secs}&X-Amz-SignedHeaders=host",
        common::S3_AK,
        scope.replace('/', "%2F")
    );
    let canonical = format!("GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut signing_key = format!("AWS4{}", common::S3_SK).into_bytes();
    for part in [day.as_str(), "us-east-1", "s3", "aws4_request"] {
        signing_key = hmac(&signing_key, part);
    }
    let signature = hex::encode(hmac(&signing_key, &to_sign));
    format!("{endpoint}{path}?{query}&X-Amz-Signature={signature}")
}

/// SigV4 links carry their own lifetime (`X-Amz-Expires`) from their signing
/// time (`X-Amz-Date`); past it the store refuses. The signing time is
/// injected, so nothing waits for a link to age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_refuses_expired_v4_links() {
    use object_store::ObjectStoreExt;
    use object_store::signer::Signer;
    let s3 = common::S3Server::start();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_region("us-east-1")
        .with_bucket_name(common::S3_BUCKET)
        .with_access_key_id(common::S3_AK)
        .with_secret_access_key(common::S3_SK)
        .with_allow_http(true)
        .build()
        .unwrap();
    let path = object_store::path::Path::from("rdbvault/v4/f.rdb");
    store
        .put(&path, bytes::Bytes::from_static(b"hello").into())
        .await
        .unwrap();
    let url = store
        .signed_url(
            reqwest::Method::GET,
            &path,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    let (status, _, body) = curl(&[url.as_str()]);
    assert_eq!((status, body.as_slice()), (200, b"hello".as_slice()));

    // `presign_v4` signs as object_store does: the same link for the same
    // signing time.
    let param = |url: &str, name: &str| {
        url.split(&format!("{name}="))
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string()
    };
    let signed_at =
        chrono::NaiveDateTime::parse_from_str(&param(url.as_str(), "X-Amz-Date"), "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc();
    let same = presign_v4(&s3.endpoint(), path.as_ref(), signed_at, 60);
    assert_eq!(
        param(&same, "X-Amz-Signature"),
        param(url.as_str(), "X-Amz-Signature"),
        "{same} vs {url}"
    );

    // Signed 30 s ago for a minute: still valid. Signed two minutes ago for
    // a minute: expired, refused by the store.
    let now = chrono::Utc::now();
    let aging = presign_v4(
        &s3.endpoint(),
        path.as_ref(),
        now - chrono::TimeDelta::seconds(30),
        60,
    );
    assert_eq!(curl(&[&aging]).0, 200, "a V4 link within its lifetime");
    let expired = presign_v4(
        &s3.endpoint(),
        path.as_ref(),
        now - chrono::TimeDelta::seconds(120),
        60,
    );
    let denied = curl(&[&expired]);
    assert_eq!(denied.0, 403, "an expired V4 link was accepted");
    assert!(
        String::from_utf8_lossy(&denied.2).contains("expired"),
        "{}",
        String::from_utf8_lossy(&denied.2)
    );
}
