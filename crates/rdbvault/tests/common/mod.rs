//! Test fixtures: the real service in-process on a free port, with SQLite or
//! PostgreSQL, and real `redis-server` processes on free loopback ports.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdbvault::auth::signature;
use rdbvault::config::{AuthMode, Config, CredentialConfig};
use rdbvault::replication::resp::Reply;
use tokio::sync::oneshot;

pub const AK: &str = "TESTAK0000000000000A";
pub const SK: &str = "test-secret-key-0123456789abcdefghijklmn";
pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";
pub const OTHER_AK: &str = "TESTAK0000000000000B";
pub const OTHER_SK: &str = "other-secret-key-0123456789abcdefghijklm";
pub const OTHER_PROJECT: &str = "fedcba9876543210fedcba9876543210";
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Where a test server keeps its metadata and its backups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    /// SQLite, local object store.
    Sqlite,
    /// PostgreSQL, local object store.
    Postgres,
    /// SQLite, backups in a real S3 server (s3s-fs, which checks signatures).
    S3,
}

pub const S3_AK: &str = "S3TESTACCESSKEY00000";
pub const S3_SK: &str = "s3-test-secret-key-0123456789abcdefghij";
pub const S3_BUCKET: &str = "backups";
pub const S3_PREFIX: &str = "rdbvault/";

/// A real S3-compatible server (s3s-fs) on a free loopback port; it can be
/// stopped and started again on the same port and data.
pub struct S3Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl S3Server {
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(S3_BUCKET)).unwrap();
        let mut server = S3Server {
            port: free_port(),
            dir,
            child: None,
        };
        server.resume();
        server
    }

    /// Starts (again) on the same port and data.
    pub fn resume(&mut self) {
        let child = Command::new("s3s-fs")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--access-key",
                S3_AK,
                "--secret-key",
                S3_SK,
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs on PATH (cargo install s3s-fs@0.14.1 --locked --features binary)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Points `config` at this server.
    pub fn configure(&self, config: &mut Config) {
        config.storage = rdbvault::config::StorageKind::S3;
        config.bucket = S3_BUCKET.into();
        config.s3.endpoint = self.endpoint();
        config.s3.access_key = S3_AK.into();
        config.s3.secret_key = Some(S3_SK.into());
        config.s3.prefix = S3_PREFIX.into();
        config.s3.path_style = true;
        config.s3.part_size_mib = 5;
        config.s3.retry_timeout_secs = 3;
    }

    /// The `[s3]` table of a `serve` configuration using this server.
    pub fn toml(&self) -> String {
        format!(
            "storage = \"s3\"\nbucket = \"{S3_BUCKET}\"\n[s3]\nendpoint = \"{}\"\naccess_key = \"{S3_AK}\"\n\
             secret_key = \"{S3_SK}\"\nprefix = \"{S3_PREFIX}\"\npath_style = true\npart_size_mib = 5\n\
             retry_timeout_secs = 3\n",
            self.endpoint()
        )
    }

    /// Where the store keeps the objects of our prefix, on disk.
    pub fn objects_root(&self) -> PathBuf {
        self.dir
            .path()
            .join(S3_BUCKET)
            .join(S3_PREFIX.trim_end_matches('/'))
    }

    /// Multipart uploads s3s-fs still holds (it keeps them as `.upload-*`
    /// files beside the bucket directories).
    pub fn leftovers(&self) -> Vec<PathBuf> {
        all_files(self.dir.path())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(".upload-"))
            })
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub config: Config,
    /// The S3 server of a `Db::S3` test.
    pub s3: Option<S3Server>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pg_schema: Option<String>,
}

fn credentials() -> Vec<CredentialConfig> {
    vec![
        CredentialConfig {
            access_key: AK.into(),
            secret_key: Some(SK.into()),
            secret_key_file: None,
            projects: vec![PROJECT.into()],
        },
        CredentialConfig {
            access_key: OTHER_AK.into(),
            secret_key: Some(OTHER_SK.into()),
            secret_key_file: None,
            projects: vec![OTHER_PROJECT.into()],
        },
    ]
}

/// A fresh schema in the shared `test` database, so tests never see each other's rows.
async fn pg_schema() -> (String, String) {
    use sqlx::Connection;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(PG_URL)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    (
        format!("{PG_URL}?options=-c%20search_path%3D{schema}"),
        schema,
    )
}

impl TestServer {
    pub async fn start(db: Db) -> TestServer {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: Db, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with_clock(db, tweak, Arc::new(rdbvault::schedule::SystemClock)).await
    }

    /// A server whose scheduler goes by `clock`, looking every second.
    pub async fn start_with_clock(
        db: Db,
        tweak: impl FnOnce(&mut Config),
        clock: Arc<dyn rdbvault::schedule::Clock>,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, pg_schema) = match db {
            Db::Sqlite | Db::S3 => (None, None),
            Db::Postgres => {
                let (url, schema) = pg_schema().await;
                (Some(url), Some(schema))
            }
        };
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            database_url,
            auth: AuthMode::Aksk,
            credentials: credentials(),
            ..Config::default()
        };
        let s3 = (db == Db::S3).then(S3Server::start);
        if let Some(s3) = &s3 {
            s3.configure(&mut config);
        }
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let run_config = config.clone();
        let task = tokio::spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            rdbvault::server::run_with_clock(listener, run_config, stop, clock)
                .await
                .expect("server runs");
        });
        let server = TestServer {
            s3,
            base,
            dir,
            config,
            shutdown: Some(tx),
            task: Some(task),
            pg_schema,
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.base)).await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the service and hands back its data dir, for a restart on it.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        self.shutdown_task().await;
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    async fn shutdown_task(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub async fn stop(mut self) {
        self.shutdown_task().await;
        if let Some(schema) = self.pg_schema.take() {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(PG_URL).await {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }

    /// A request signed as the SDK signs it, with the default test credential.
    pub fn req(&self, method: &str, path_and_query: &str) -> Req {
        Req::new(self, method, path_and_query)
    }
}

/// A signed request under construction; every part can be spoiled on purpose.
pub struct Req {
    url: String,
    pub host: String,
    method: String,
    path: String,
    query: String,
    pub ak: String,
    pub sk: String,
    pub project_header: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub date: chrono::DateTime<chrono::Utc>,
    pub sign: bool,
    pub extra_headers: Vec<(String, String)>,
}

impl Req {
    fn new(server: &TestServer, method: &str, path_and_query: &str) -> Req {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Req {
            url: server.base.clone(),
            host: server.base.trim_start_matches("http://").to_string(),
            method: method.into(),
            path: path.into(),
            query: query.into(),
            ak: AK.into(),
            sk: SK.into(),
            project_header: Some(PROJECT.into()),
            content_type: Some("application/json".into()),
            body: Vec::new(),
            date: chrono::Utc::now(),
            sign: true,
            extra_headers: Vec::new(),
        }
    }

    pub fn json(mut self, body: &str) -> Req {
        self.body = body.as_bytes().to_vec();
        self.content_type = Some("application/json;charset=utf-8".into());
        self
    }

    pub fn signed_by(mut self, ak: &str, sk: &str) -> Req {
        self.ak = ak.into();
        self.sk = sk.into();
        self
    }

    pub async fn send(self) -> Resp {
        let date = self.date.format(signature::DATE_FORMAT).to_string();
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("user-agent".to_string(), "rdbvault-tests".to_string()),
            ("x-sdk-date".to_string(), date.clone()),
        ];
        if let Some(ct) = &self.content_type {
            headers.push(("content-type".into(), ct.clone()));
        }
        if let Some(p) = &self.project_header {
            headers.push(("x-project-id".into(), p.clone()));
        }
        let mut builder = reqwest::Client::new().request(
            self.method.parse().unwrap(),
            format!(
                "{}{}{}{}",
                self.url,
                self.path,
                if self.query.is_empty() { "" } else { "?" },
                self.query
            ),
        );
        if self.sign {
            let auth = signature::Request {
                method: &self.method,
                path: &self.path,
                query: &self.query,
                headers: headers.clone(),
                body: &self.body,
            }
            .authorization(&self.ak, &self.sk, &date);
            builder = builder.header("authorization", auth);
        }
        for (n, v) in headers.iter().chain(self.extra_headers.iter()) {
            builder = builder.header(n, v);
        }
        let resp = builder.body(self.body).send().await.expect("request sent");
        let status = resp.status().as_u16();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.bytes().await.unwrap().to_vec();
        Resp {
            status,
            body,
            request_id,
            retry_after,
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
    pub request_id: Option<String>,
    pub retry_after: Option<String>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the DCS error body with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        let body = self.json();
        assert_eq!(self.status, status, "status; body {body}");
        assert_eq!(body["error_code"], code, "error_code; body {body}");
        assert!(
            body["error_msg"]
                .as_str()
                .is_some_and(|m| !m.is_empty() && m.len() <= 1024),
            "{body}"
        );
        assert!(body["error_ext_msg"].is_null(), "{body}");
        assert!(body.as_object().unwrap().len() == 3, "extra fields: {body}");
        assert!(self.request_id.is_some(), "no X-Request-Id");
    }
}

/// A free loopback port below 45000 (cluster bus ports are +10000), never
/// handed out twice within [`PORT_QUARANTINE`] by any test process: a test
/// that kills a server expects its port to stay dead, not to be reused by
/// another test's server (nextest runs tests in parallel processes).
pub fn free_port() -> u16 {
    let claims = std::env::temp_dir().join("rdbvault-test-ports");
    let _ = std::fs::create_dir_all(&claims);
    for _ in 0..1000 {
        let port = 20000 + (rand_u16() % 25000);
        if StdListener::bind(("127.0.0.1", port)).is_err()
            || StdListener::bind(("127.0.0.1", port + 10000)).is_err()
        {
            continue;
        }
        if claim_port(&claims.join(port.to_string())) {
            return port;
        }
    }
    panic!("no free port");
}

/// How long a port handed out stays reserved for its test.
const PORT_QUARANTINE: Duration = Duration::from_secs(600);

/// Claims `file` for this process unless another claimed it recently.
fn claim_port(file: &Path) -> bool {
    let fresh = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() < PORT_QUARANTINE);
    if fresh {
        return false;
    }
    // A stale claim is taken over; between two takers, create_new decides.
    let _ = std::fs::remove_file(file);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .is_ok()
}

fn rand_u16() -> u16 {
    let b = uuid::Uuid::new_v4();
    u16::from_le_bytes([b.as_bytes()[0], b.as_bytes()[1]])
}

/// Where `.ci/redis-releases` unpacks Redis 8.2 and the FalkorDB module.
pub fn redis_8_2_dir() -> PathBuf {
    Release::V8_2.dir()
}

/// A Redis release this machine runs: 7.0 is Debian's `redis-server` on the
/// PATH, 6.2 and 8.2 are unpacked by `.ci/redis-releases`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    V6_2,
    V7_0,
    V8_2,
}

impl Release {
    pub const ALL: [Release; 3] = [Release::V6_2, Release::V7_0, Release::V8_2];

    fn dir(self) -> PathBuf {
        let name = match self {
            Release::V6_2 => "6.2",
            Release::V7_0 => return PathBuf::new(),
            Release::V8_2 => "8.2",
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/redis-releases")
            .join(name);
        assert!(
            dir.join("redis-server").is_file(),
            "no Redis {name} in {}: run .ci/redis-releases",
            dir.display()
        );
        dir
    }

    pub fn binary(self) -> PathBuf {
        match self {
            Release::V7_0 => PathBuf::from("redis-server"),
            other => other.dir().join("redis-server"),
        }
    }

    /// Redis 7 refuses `DEBUG` (our integrity judge, `DEBUG DIGEST`) unless
    /// enabled; 6.2 has no such setting and always allows it.
    fn debug_args(self) -> &'static [&'static str] {
        match self {
            Release::V6_2 => &[],
            _ => &["--enable-debug-command", "local"],
        }
    }
}

/// How much of a test server's configuration is the release's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// Nothing but port, address, directory and `DEBUG`: diskless sync with
    /// its 5 s delay on 7.0+, disk-based on 6.2, RDB save points that fork
    /// now and then. What production runs, and what a backup path is proven on.
    Defaults,
    /// No delay before a replication fork and no save points: quick, but it
    /// hides what a real master does while a replica waits for its fork.
    /// For tests about something else than talking to a default master.
    Fast,
}

/// A real redis-server on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub release: Release,
    child: Child,
    extra_dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Redis 7.0 on its default configuration.
    pub fn start(extra: &[&str]) -> RedisServer {
        Self::start_release(Release::V7_0, extra)
    }

    /// A release on its default configuration.
    pub fn start_release(release: Release, extra: &[&str]) -> RedisServer {
        Self::spawn(release, Tuning::Defaults, free_port(), extra)
    }

    /// Redis 7.0 tuned for speed ([`Tuning::Fast`]).
    pub fn start_fast(extra: &[&str]) -> RedisServer {
        Self::spawn(Release::V7_0, Tuning::Fast, free_port(), extra)
    }

    /// Like `start_fast`, on a given port: a node coming back where it was
    /// (empty) after `kill`.
    pub fn start_fast_on(port: u16, extra: &[&str]) -> RedisServer {
        Self::spawn(Release::V7_0, Tuning::Fast, port, extra)
    }

    /// Redis 8.2 (RDB 12: hash field expiry, set listpacks, streams 3) tuned
    /// for speed; with `--loadmodule` of the FalkorDB module in
    /// [`redis_8_2_dir`], module values too.
    pub fn start_8_2(extra: &[&str]) -> RedisServer {
        Self::spawn(Release::V8_2, Tuning::Fast, free_port(), extra)
    }

    /// A server speaking only TLS, with a certificate for 127.0.0.1 signed by
    /// a fresh CA, on Redis 7.0's defaults otherwise (the keep-alives of its
    /// fork delay then cross TLS too); returns the CA's PEM file too.
    pub fn start_tls() -> (RedisServer, tempfile::TempDir, PathBuf) {
        let pki = Pki::new();
        let (crt, key) = pki.server_cert("srv");
        let p = |f: &Path| f.display().to_string();
        let port = free_port();
        let port_s = port.to_string();
        let server = Self::spawn(
            Release::V7_0,
            Tuning::Defaults,
            port,
            &[
                "--port",
                "0",
                "--tls-port",
                &port_s,
                "--tls-cert-file",
                &p(&crt),
                "--tls-key-file",
                &p(&key),
                "--tls-ca-cert-file",
                &p(&pki.ca()),
                "--tls-auth-clients",
                "no",
                "--tls-replication",
                "yes",
            ],
        );
        let ca = pki.ca();
        (server, pki.dir, ca)
    }

    fn spawn(release: Release, tuning: Tuning, port: u16, extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--daemonize".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        args.extend(release.debug_args().iter().map(|s| s.to_string()));
        if tuning == Tuning::Fast {
            args.extend(
                [
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--repl-diskless-sync-delay",
                    "0",
                ]
                .map(String::from),
            );
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let binary = release.binary();
        let child = Command::new(&binary)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let server = RedisServer {
            port,
            dir,
            release,
            child,
            extra_dir: None,
        };
        server.wait_ready();
        server
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs redis-cli against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli on PATH");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestServer {
    /// Registers an instance (without the live check when `verify` is false).
    pub async fn register(&self, body: serde_json::Value) -> String {
        let r = self
            .req("POST", &format!("/v2/{PROJECT}/rdbvault/instances"))
            .json(&body.to_string())
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["instance_id"].as_str().unwrap().to_string()
    }

    pub async fn register_single(&self, addr: &str) -> String {
        let name = format!("i{}", uuid::Uuid::new_v4().simple());
        self.register(serde_json::json!({"name": name, "mode": "single", "addrs": [addr]}))
            .await
    }

    /// `show_instance`'s answer.
    pub async fn show_instance(&self, instance: &str) -> serde_json::Value {
        let r = self
            .req("GET", &format!("/v2/{PROJECT}/instances/{instance}"))
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// ListBackupFileLinks valid for `secs` (links asked within one second
    /// for the same time are the same link): the first file's item, with
    /// `link`, `size` and `sha256`.
    pub async fn first_link(&self, instance: &str, backup: &str, secs: u32) -> serde_json::Value {
        let r = self
            .req(
                "POST",
                &format!("/v2/{PROJECT}/instances/{instance}/backups/{backup}/links"),
            )
            .json(&format!(r#"{{"expiration": {secs}}}"#))
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["links"][0].clone()
    }

    /// Starts a backup and returns its id.
    pub async fn start_backup(&self, instance: &str) -> String {
        let r = self
            .req(
                "POST",
                &format!("/v2/{PROJECT}/instances/{instance}/backups"),
            )
            .json(r#"{"remark": "test", "backup_format": "rdb"}"#)
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["backup_id"].as_str().unwrap().to_string()
    }

    pub async fn backup_record(&self, instance: &str, backup: &str) -> serde_json::Value {
        let r = self
            .req(
                "GET",
                &format!("/v2/{PROJECT}/instances/{instance}/backups?limit=1000"),
            )
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["backup_record_response"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backup_id"] == backup)
            .cloned()
            .unwrap_or_else(|| panic!("backup {backup} not listed"))
    }

    /// Polls until the backup is in one of `statuses`.
    pub async fn wait_backup_status(
        &self,
        instance: &str,
        backup: &str,
        statuses: &[&str],
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let record = self.backup_record(instance, backup).await;
            if statuses.iter().any(|s| record["status"] == *s) {
                return record;
            }
            assert!(Instant::now() < deadline, "backup stuck: {record}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the backup to end (succeed or failed).
    pub async fn wait_backup(&self, instance: &str, backup: &str) -> serde_json::Value {
        self.wait_backup_status(instance, backup, &["succeed", "failed", "deleted"])
            .await
    }

    /// Files stored for a backup (local staging files included), read from
    /// the disk of whichever store holds them.
    pub fn stored_files(&self, instance: &str, backup: &str) -> Vec<PathBuf> {
        let dir = self.objects_root().join(instance).join(backup);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// The directory the objects of this server's backups live under.
    pub fn objects_root(&self) -> PathBuf {
        match &self.s3 {
            Some(s3) => s3.objects_root(),
            None => self.dir.path().join("objects"),
        }
    }
}

/// Every file under a directory, recursively.
pub fn all_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(all_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

impl RedisServer {
    /// A connection through rdbvault's own client, for binary-safe commands.
    pub async fn conn(&self) -> rdbvault::replication::Connection {
        let endpoint = rdbvault::replication::Endpoint {
            addr: self.addr().parse().unwrap(),
            username: None,
            password: None,
            tls: None,
        };
        rdbvault::replication::Connection::open(&endpoint, Duration::from_secs(5))
            .await
            .unwrap()
    }

    pub async fn digest(&self) -> String {
        let mut c = self.conn().await;
        let r = c.command(&[b"DEBUG", b"DIGEST"]).await.unwrap();
        r.into_string().unwrap()
    }

    /// Makes every snapshot slow (microseconds per key), to catch a transfer mid-way.
    pub fn slow_snapshots(&self, keys: u32, micros_per_key: u32) {
        assert_eq!(
            self.cli(&["DEBUG", "POPULATE", &keys.to_string(), "slow", "100"]),
            "OK"
        );
        assert_eq!(
            self.cli(&[
                "CONFIG",
                "SET",
                "rdb-key-save-delay",
                &micros_per_key.to_string()
            ]),
            "OK"
        );
    }

    /// Starts a fresh Redis 7.0 that loads `rdb` at start.
    pub fn load(rdb: &std::path::Path) -> RedisServer {
        Self::load_release(Release::V7_0, rdb)
    }

    /// Starts a fresh server of `release` that loads `rdb` at start (a
    /// release refuses RDB versions newer than its own).
    pub fn load_release(release: Release, rdb: &std::path::Path) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(rdb, dir.path().join("dump.rdb")).unwrap();
        let dir_str = dir.path().display().to_string();
        let mut server = Self::spawn(
            release,
            Tuning::Fast,
            free_port(),
            &["--dir", &dir_str, "--dbfilename", "dump.rdb"],
        );
        // Keep the loaded dir alive with the server.
        server.extra_dir = Some(dir);
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.cli(&["INFO", "persistence"]).contains("loading:1") {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

/// Writes every type in small and large encodings, TTLs, binary keys and
/// values, in several databases.
pub async fn fill_all_types(redis: &RedisServer) {
    let big_string = vec![b'x'; 100_000];
    let small: Vec<Vec<&[u8]>> = vec![
        vec![b"SET", b"str:small", b"hello"],
        vec![b"SET", b"str:int", b"1234567"],
        vec![b"SET", b"str:big", &big_string],
        vec![b"SET", b"\x00bin\xffkey\r\n", b"\x00\x01\x02\xfe\xff"],
        vec![b"SET", b"str:ttl", b"v", b"EX", b"100000"],
        vec![b"SET", b"str:pttl", b"v", b"PX", b"99999999"],
        vec![b"RPUSH", b"list:small", b"a", b"b", b"c"],
        vec![b"SADD", b"set:int", b"1", b"2", b"3"],
        vec![b"SADD", b"set:small", b"a", b"b"],
        vec![b"ZADD", b"zset:small", b"1.5", b"a", b"-2", b"b"],
        vec![b"HSET", b"hash:small", b"f1", b"v1", b"f2", b"v2"],
    ];
    let mut c = redis.conn().await;
    for db in [b"0".as_slice(), b"1", b"5"] {
        c.command(&[b"SELECT", db]).await.unwrap();
        for cmd in &small {
            c.command(cmd).await.unwrap();
        }
        // Past the listpack/intset limits: quicklist, hashtable, skiplist encodings.
        for i in 0..300u32 {
            let m = format!("member-{i}-{}", "y".repeat(70));
            let (m, s) = (m.as_bytes(), i.to_string());
            let s = s.as_bytes();
            for cmd in [
                vec![b"RPUSH".as_slice(), b"list:big", m],
                vec![b"SADD", b"set:big", m],
                vec![b"ZADD", b"zset:big", s, m],
                vec![b"HSET", b"hash:big", m, s],
                vec![b"XADD", b"stream", b"*", b"n", s],
            ] {
                c.command(&cmd).await.unwrap();
            }
        }
        for cmd in [
            vec![b"EXPIRE".as_slice(), b"hash:big", b"100000"],
            vec![b"XGROUP", b"CREATE", b"stream", b"g1", b"0"],
            vec![
                b"XREADGROUP",
                b"GROUP",
                b"g1",
                b"alice",
                b"COUNT",
                b"5",
                b"STREAMS",
                b"stream",
                b">",
            ],
            vec![
                b"XREADGROUP",
                b"GROUP",
                b"g1",
                b"bob",
                b"COUNT",
                b"3",
                b"STREAMS",
                b"stream",
                b">",
            ],
        ] {
            c.command(&cmd).await.unwrap();
        }
    }
}

/// Runs each named scenario `async fn name(release: Release)` as one test
/// per Redis release.
#[macro_export]
macro_rules! per_release {
    ($($name:ident),* $(,)?) => {
        mod v6_2 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Release::V6_2).await } )* }
        mod v7_0 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Release::V7_0).await } )* }
        mod v8_2 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Release::V8_2).await } )* }
    };
}

/// `0-5460`, or `0-99.200-5460`: slot ranges as backup file names carry them.
pub fn slot_label(slots: &[(u16, u16)]) -> String {
    slots
        .iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Runs each named scenario `async fn name(db: Db)` as two tests, one per
/// metadata backend.
/// Like `both_backends!`, and once more with the backups in S3.
#[macro_export]
macro_rules! all_backends {
    ($($name:ident),* $(,)?) => {
        both_backends!($($name),*);
        mod s3 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::S3).await } )* }
    };
}

/// Each scenario with the local store and with S3 (metadata in SQLite).
#[macro_export]
macro_rules! local_and_s3 {
    ($($name:ident),* $(,)?) => {
        mod local { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::Sqlite).await } )* }
        mod s3 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::S3).await } )* }
    };
}

#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::Postgres).await } )* }
    };
}

/// The real `rdbvault serve` binary, configured through a TOML file with the
/// test credentials, optionally run under a wrapper command (e.g. `prlimit`).
pub struct ServeProcess {
    pub child: Child,
    pub base: String,
}

impl ServeProcess {
    pub fn start(data_dir: &std::path::Path, wrapper: &[&str]) -> ServeProcess {
        Self::start_configured(data_dir, wrapper, "")
    }

    /// With `extra` TOML (top-level keys first, then tables) in its
    /// configuration; the configuration file is `config_dir/rdbvault-{port}.toml`.
    pub fn start_configured(
        data_dir: &std::path::Path,
        wrapper: &[&str],
        extra: &str,
    ) -> ServeProcess {
        let port = free_port();
        let config = data_dir.join(format!("rdbvault-{port}.toml"));
        std::fs::create_dir_all(data_dir).unwrap();
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n{extra}\n[[credentials]]\naccess_key = \"{AK}\"\nsecret_key = \"{SK}\"\nprojects = [\"{PROJECT}\"]\n",
                data_dir.display()
            ),
        )
        .unwrap();
        let bin = env!("CARGO_BIN_EXE_rdbvault");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        ServeProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A handle for signed requests; `dir` is unused by it.
    pub fn client(&self) -> TestServer {
        TestServer {
            base: self.base.clone(),
            dir: tempfile::tempdir().unwrap(),
            config: Config::default(),
            s3: None,
            shutdown: None,
            task: None,
            pg_schema: None,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A real Redis Cluster on loopback: `masters` masters with `replicas`
/// replicas each, made with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Redis 7.0 nodes tuned for speed ([`Tuning::Fast`]).
    pub fn start_fast(masters: usize, replicas: usize) -> RedisCluster {
        Self::start_with(Release::V7_0, Tuning::Fast, masters, replicas)
    }

    /// Nodes of `release` on their default configuration (but cluster mode).
    pub fn start_release(release: Release, masters: usize, replicas: usize) -> RedisCluster {
        Self::start_with(release, Tuning::Defaults, masters, replicas)
    }

    fn start_with(
        release: Release,
        tuning: Tuning,
        masters: usize,
        replicas: usize,
    ) -> RedisCluster {
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ];
        if tuning == Tuning::Fast {
            // Failures flagged in 2 s rather than the default 15 s.
            args.extend(["--cluster-node-timeout", "2000"]);
        }
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::spawn(release, tuning, free_port(), &args))
            .collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// Every node says `cluster_state:ok`, and every replica's link is up
    /// and it holds as many keys as its master.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self.nodes.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                let repl = n.cli(&["INFO", "replication"]);
                let synced = repl.contains("role:master")
                    || (repl.contains("master_link_status:up") && {
                        let master_port = repl
                            .lines()
                            .find_map(|l| l.strip_prefix("master_port:"))
                            .unwrap_or("0");
                        let master = self
                            .nodes
                            .iter()
                            .find(|m| m.port.to_string() == master_port.trim());
                        master.is_some_and(|m| m.cli(&["DBSIZE"]) == n.cli(&["DBSIZE"]))
                    });
                info.contains("cluster_state:ok") && synced
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "cluster never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every snapshot of every node takes `micros_per_key` per key (with
    /// ~1000 keys per shard, 3000 µs makes a transfer last a few seconds).
    pub fn slow_snapshots(&self, micros_per_key: u32) {
        for n in &self.nodes {
            assert_eq!(
                n.cli(&[
                    "CONFIG",
                    "SET",
                    "rdb-key-save-delay",
                    &micros_per_key.to_string()
                ]),
                "OK"
            );
        }
    }

    pub fn seed(&self) -> String {
        self.nodes[0].addr()
    }

    /// The masters, with their slot ranges as `CLUSTER NODES` lists them.
    pub fn masters(&self) -> Vec<(&RedisServer, Vec<(u16, u16)>)> {
        let text = self.nodes[0].cli(&["CLUSTER", "NODES"]);
        let mut out = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port: u16 = f[1]
                .split(['@', ','])
                .next()
                .unwrap()
                .rsplit_once(':')
                .unwrap()
                .1
                .parse()
                .unwrap();
            let mut slots: Vec<(u16, u16)> = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .map(|s| {
                    let (a, b) = s.split_once('-').unwrap_or((s, s));
                    (a.parse().unwrap(), b.parse().unwrap())
                })
                .collect();
            slots.sort_unstable();
            // A replica not yet known as one by this node's gossip shows as
            // a master without slots.
            if slots.is_empty() {
                continue;
            }
            if let Some(node) = self.nodes.iter().find(|n| n.port == port) {
                out.push((node, slots));
            }
        }
        out.sort_by_key(|(_, s)| s.first().copied());
        out
    }

    /// Writes `count` keys, each to the master that owns its slot.
    pub async fn fill(&self, count: usize) {
        let masters = self.masters();
        let mut conns = Vec::new();
        for (node, slots) in &masters {
            conns.push((node.conn().await, slots.clone()));
        }
        for i in 0..count {
            let value = format!("value-{i}-{}", "v".repeat(i % 200));
            let mut commands = vec![vec![
                b"SET".to_vec(),
                format!("key:{i}").into_bytes(),
                value.into_bytes(),
            ]];
            if i % 10 == 0 {
                commands.push(vec![
                    b"HSET".to_vec(),
                    format!("h:{i}").into_bytes(),
                    b"f".to_vec(),
                    b"v".to_vec(),
                ]);
            }
            for cmd in commands {
                let slot = key_slot(&cmd[1]);
                let (conn, _) = conns
                    .iter_mut()
                    .find(|(_, slots)| slots.iter().any(|&(a, b)| a <= slot && slot <= b))
                    .expect("a master owns every slot");
                let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
                conn.command(&args).await.unwrap();
            }
        }
    }
}

pub use rdbvault::replication::cluster::key_slot;

/// Polls `probe` (every 50 ms) until it gives `Some`, and returns that;
/// fails the test naming `what` once `timeout` has passed. For waiting on a
/// condition rather than for a time that hopes it came about.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl TestServer {
    /// Polls a running backup's record until `holds(record)`, and returns
    /// that record; fails the test if the backup ends first.
    pub async fn wait_backup_until(
        &self,
        instance: &str,
        backup: &str,
        what: &str,
        holds: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let record = self.backup_record(instance, backup).await;
            if holds(&record) {
                return record;
            }
            assert!(
                record["status"] == "waiting" || record["status"] == "backuping",
                "the backup ended before {what}: {record}"
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {record}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every transfer of a running backup has its payload
    /// flowing (the record's stage is `transferring`: no source is still
    /// connecting or waiting for its fork).
    pub async fn wait_backup_transferring(
        &self,
        instance: &str,
        backup: &str,
    ) -> serde_json::Value {
        self.wait_backup_until(instance, backup, "every payload flowing", |r| {
            r["status"] == "backuping" && r["stage"] == "transferring"
        })
        .await
    }
}

impl RedisServer {
    /// `connected_slaves` of `INFO replication`: the replicas (a backup's
    /// transfer among them) this server is feeding.
    pub fn connected_replicas(&self) -> usize {
        self.cli(&["INFO", "replication"])
            .lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl TestServer {
    /// The body of an unsigned GET (`/healthz`, `/metrics`, `/openapi.json`).
    pub async fn get_text(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `/openapi.json`, parsed.
    pub async fn openapi(&self) -> serde_json::Value {
        serde_json::from_str(&self.get_text("/openapi.json").await).unwrap()
    }
}

/// A fresh PostgreSQL schema's URL, for several nodes to share.
pub async fn shared_pg() -> String {
    pg_schema().await.0
}

/// Runs `rdbvault serve --config file` on a free port in `data_dir` until it
/// exits (for configurations it must refuse).
pub fn serve_config_output(file: &Path, data_dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rdbvault"))
        .args(["serve", "--config"])
        .arg(file)
        .env("RDBVAULT_DATA_DIR", data_dir)
        .env("RDBVAULT_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap()
}

/// A throwaway PKI made with openssl: a CA, and certificates for
/// 127.0.0.1 (and localhost) it signs.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

fn openssl(args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .expect("openssl on PATH");
    assert!(ok.success(), "openssl {args:?}");
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let p = |f: &str| dir.path().join(f).display().to_string();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.crt"),
            "-days",
            "2",
            "-subj",
            "/CN=rdbvault-test-ca",
        ]);
        Pki { dir }
    }

    /// The CA's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A new certificate and key, `name.crt` and `name.key`, each with its
    /// own serial.
    pub fn server_cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let p = |f: &str| self.dir.path().join(f).display().to_string();
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p(&key),
            "-out",
            &p("srv.csr"),
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            self.dir.path().join("ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("srv.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p(&crt),
            "-days",
            "2",
            "-extfile",
            &p("ext"),
        ]);
        (self.dir.path().join(crt), self.dir.path().join(key))
    }
}

impl RedisServer {
    /// Waits until this replica's link to its master is `up` (or down).
    pub async fn wait_master_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        let wanted = format!("master_link_status:{state}");
        wait_for(
            &format!("{} to see its master link {state}", self.addr()),
            Duration::from_secs(60),
            || async {
                self.cli(&["INFO", "replication"])
                    .contains(&wanted)
                    .then_some(())
            },
        )
        .await;
    }
}

impl TestServer {
    /// A backup of `instance` that succeeded: its id.
    pub async fn backed_up(&self, instance: &str) -> String {
        let backup = self.start_backup(instance).await;
        let record = self.wait_backup(instance, &backup).await;
        assert_eq!(record["status"], "succeed", "{record}");
        backup
    }

    /// `restore_instance` with `body`: the answer, whatever it is.
    pub async fn post_restore(&self, instance: &str, body: serde_json::Value) -> Resp {
        self.req(
            "POST",
            &format!("/v2/{PROJECT}/instances/{instance}/restores"),
        )
        .json(&body.to_string())
        .send()
        .await
    }

    /// Starts a restore of `backup` (fields of `extra` added to the body)
    /// and returns its id.
    pub async fn start_restore(
        &self,
        instance: &str,
        backup: &str,
        extra: serde_json::Value,
    ) -> String {
        let mut body = serde_json::json!({"backup_id": backup, "remark": "test restore"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = self.post_restore(instance, body).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["restore_id"].as_str().unwrap().to_string()
    }

    /// The restore's record in `list_restore_records` of `instance`.
    pub async fn restore_record(&self, instance: &str, restore: &str) -> serde_json::Value {
        let r = self
            .req(
                "GET",
                &format!("/v2/{PROJECT}/instances/{instance}/restores?limit=1000"),
            )
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["restore_record_response"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["restore_id"] == restore)
            .cloned()
            .unwrap_or_else(|| panic!("restore {restore} not listed"))
    }

    /// Polls until the restore's record satisfies `holds`; fails the test
    /// if it ends first.
    pub async fn wait_restore_until(
        &self,
        instance: &str,
        restore: &str,
        what: &str,
        holds: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let record = self.restore_record(instance, restore).await;
            if holds(&record) {
                return record;
            }
            assert!(
                record["status"] == "waiting" || record["status"] == "restoring",
                "the restore ended before {what}: {record}"
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {record}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the restore to end (succeed or failed).
    pub async fn wait_restore(&self, instance: &str, restore: &str) -> serde_json::Value {
        self.wait_restore_until(instance, restore, "its end", |r| {
            r["status"] == "succeed" || r["status"] == "failed"
        })
        .await
    }
}

/// Every key of the given databases of `redis`, read back with ordinary
/// commands into a comparable text (`TYPE` and the value; unordered
/// collections sorted; streams with their groups, consumers' pending
/// counts and last IDs), with its TTL in ms (-1 without).
pub async fn values(redis: &RedisServer, dbs: &[u64]) -> BTreeMap<(u64, Vec<u8>), (String, i64)> {
    let mut c = redis.conn().await;
    let mut out = BTreeMap::new();
    for &db in dbs {
        let db_text = db.to_string();
        c.command(&[b"SELECT", db_text.as_bytes()]).await.unwrap();
        for key in bulk_list(c.command(&[b"KEYS", b"*"]).await.unwrap()) {
            let value = describe(&mut c, &key).await;
            let ttl = match c.command(&[b"PTTL", &key]).await.unwrap() {
                Reply::Int(n) => n,
                other => panic!("PTTL: {other:?}"),
            };
            out.insert((db, key), (value, ttl));
        }
    }
    out
}

/// The value of `key` as text, independent of its encoding.
pub async fn describe(c: &mut rdbvault::replication::Connection, key: &[u8]) -> String {
    let kind = c
        .command(&[b"TYPE", key])
        .await
        .unwrap()
        .into_string()
        .unwrap();
    let read = |args: &[&[u8]]| args.iter().map(|a| a.to_vec()).collect::<Vec<_>>();
    let (cmd, sort) = match kind.as_str() {
        "string" => (read(&[b"GET", key]), false),
        "list" => (read(&[b"LRANGE", key, b"0", b"-1"]), false),
        "set" => (read(&[b"SMEMBERS", key]), true),
        "zset" => (read(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]), false),
        "hash" => (read(&[b"HGETALL", key]), false),
        "stream" => {
            let entries = c.command(&[b"XRANGE", key, b"-", b"+"]).await.unwrap();
            let groups = c.command(&[b"XINFO", b"GROUPS", key]).await.unwrap();
            let mut text = format!("stream {entries:?}");
            for group in array(groups) {
                let fields = array(group);
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|kv| kv[0].clone().into_string().as_deref() == Some(name))
                        .map(|kv| format!("{:?}", kv[1]))
                        .unwrap_or_default()
                };
                let name = fields[1].clone().into_string().unwrap();
                let pending = c
                    .command(&[b"XPENDING", key, name.as_bytes(), b"-", b"+", b"1000"])
                    .await
                    .unwrap();
                let pending: Vec<String> = array(pending)
                    .into_iter()
                    .map(|p| {
                        let p = array(p);
                        format!("{:?}/{:?}", p[0], p[1])
                    })
                    .collect();
                text += &format!(
                    " group {name} last {} pending {pending:?}",
                    field("last-delivered-id")
                );
            }
            let last = c.command(&[b"XINFO", b"STREAM", key]).await.unwrap();
            let last = array(last);
            let field = |name: &str| {
                last.chunks(2)
                    .find(|kv| kv[0].clone().into_string().as_deref() == Some(name))
                    .map(|kv| format!("{:?}", kv[1]))
                    .unwrap_or_default()
            };
            return text
                + &format!(
                    " length {} last-id {}",
                    field("length"),
                    field("last-generated-id")
                );
        }
        other => return format!("type {other}"),
    };
    let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
    let reply = c.command(&args).await.unwrap();
    let mut items: Vec<String> = match reply {
        Reply::Array(Some(items)) => items.iter().map(|i| format!("{i:?}")).collect(),
        other => vec![format!("{other:?}")],
    };
    if kind == "hash" {
        let mut pairs: Vec<String> = items.chunks(2).map(|p| p.join("=")).collect();
        pairs.sort();
        items = pairs;
    } else if sort {
        items.sort();
    }
    format!("{kind} {items:?}")
}

fn array(reply: Reply) -> Vec<Reply> {
    match reply {
        Reply::Array(Some(items)) => items,
        other => panic!("not an array: {other:?}"),
    }
}

fn bulk_list(reply: Reply) -> Vec<Vec<u8>> {
    array(reply)
        .into_iter()
        .map(|r| match r {
            Reply::Bulk(Some(b)) => b,
            other => panic!("not a bulk: {other:?}"),
        })
        .collect()
}

/// The two datasets hold the same keys with the same values, and TTLs
/// within `slack_ms` of each other (the restore took some time).
pub fn assert_same_values(
    before: &BTreeMap<(u64, Vec<u8>), (String, i64)>,
    after: &BTreeMap<(u64, Vec<u8>), (String, i64)>,
    slack_ms: i64,
) {
    let missing: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let extra: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (key, (value, ttl)) in before {
        let (got, got_ttl) = &after[key];
        assert_eq!(value, got, "value of {key:?}");
        assert_eq!(*ttl < 0, *got_ttl < 0, "TTL of {key:?}: {ttl} vs {got_ttl}");
        assert!(
            (ttl - got_ttl).abs() <= slack_ms,
            "TTL of {key:?}: {ttl} vs {got_ttl}"
        );
    }
}
