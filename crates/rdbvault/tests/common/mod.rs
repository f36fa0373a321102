//! Test fixtures: the real service in-process on a free port, with SQLite or
//! PostgreSQL, and real `redis-server` processes on free loopback ports.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdbvault::auth::signature;
use rdbvault::config::{AuthMode, Config, CredentialConfig};
use tokio::sync::oneshot;

pub const AK: &str = "TESTAK0000000000000A";
pub const SK: &str = "test-secret-key-0123456789abcdefghijklmn";
pub const PROJECT: &str = "0123456789abcdef0123456789abcdef";
pub const OTHER_AK: &str = "TESTAK0000000000000B";
pub const OTHER_SK: &str = "other-secret-key-0123456789abcdefghijklm";
pub const OTHER_PROJECT: &str = "fedcba9876543210fedcba9876543210";
pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub config: Config,
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
        let dir = tempfile::tempdir().unwrap();
        let (database_url, pg_schema) = match db {
            Db::Sqlite => (None, None),
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
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let run_config = config.clone();
        let task = tokio::spawn(async move {
            rdbvault::server::run(listener, run_config, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        let server = TestServer {
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
    host: String,
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
        let body = resp.bytes().await.unwrap().to_vec();
        Resp {
            status,
            body,
            request_id,
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
    pub request_id: Option<String>,
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

/// A free loopback port below 45000 (cluster bus ports are +10000).
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = 20000 + (rand_u16() % 25000);
        if StdListener::bind(("127.0.0.1", port)).is_ok()
            && StdListener::bind(("127.0.0.1", port + 10000)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port");
}

fn rand_u16() -> u16 {
    let b = uuid::Uuid::new_v4();
    u16::from_le_bytes([b.as_bytes()[0], b.as_bytes()[1]])
}

/// A real redis-server on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl RedisServer {
    pub fn start(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--repl-diskless-sync-delay",
            "0",
            "--enable-debug-command",
            "local",
            "--daemonize",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--dir".into(), dir.path().display().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let server = RedisServer { port, dir, child };
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
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
