//! Server configuration: defaults, then a TOML file, then `RDBVAULT_*` variables.
//!
//! Every key has a default that works with nothing configured, so
//! `rdbvault serve` alone gives a running service with its data in
//! `./rdbvault-data`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Keys the server understands at the top level of its TOML file; anything
/// else is reported at start so a typo does not silently fall back to a default.
const KNOWN_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "public_url",
    "auth",
    "credentials",
    "log_format",
    "max_body_bytes",
    "probe_timeout_ms",
    "bucket",
    "node_id",
    "backup_workers",
    "connect_timeout_ms",
    "first_byte_timeout_secs",
    "stall_timeout_secs",
    "redis_tls_ca_file",
    "link_key_rotation_days",
    "storage",
    "s3",
    "sweep_interval_secs",
    "cluster_parallel",
    "restore_listen",
    "restore_announce",
    "schedule_interval_secs",
    "job_lease_secs",
    "shared_data_dir",
    "max_backup_bytes",
    "allowed_hosts",
    "master_key",
    "master_key_file",
    "max_connections",
    "header_read_timeout_secs",
    "idle_timeout_secs",
    "request_timeout_secs",
    "download_idle_timeout_secs",
    "max_downloads",
    "max_downloads_per_client",
    "max_downloads_per_link",
    "tls_cert_file",
    "tls_key_file",
    "mutating_calls_per_minute",
    "project_max_backups",
    "project_max_stored_bytes",
    "project_max_running_jobs",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
    #[error("credential {access_key}: {reason}")]
    Credential { access_key: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Requests must carry a valid `SDK-HMAC-SHA256` signature.
    Aksk,
    /// Anonymous access; only for closed test networks.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// One access key, its secret and the projects it may act in.
#[derive(Clone, Serialize, Deserialize)]
pub struct CredentialConfig {
    pub access_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<PathBuf>,
    #[serde(default)]
    pub projects: Vec<String>,
}

impl std::fmt::Debug for CredentialConfig {
    // The secret never reaches a log line, even through `{:?}` of the config.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialConfig")
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("secret_key_file", &self.secret_key_file)
            .field("projects", &self.projects)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Where the metadata database, generated credentials and the local
    /// object store live.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; empty means SQLite in `data_dir`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Base URL clients reach this service at (download links point here);
    /// empty means `http://{listen}`.
    #[serde(default)]
    pub public_url: Option<String>,
    pub auth: AuthMode,
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
    pub log_format: LogFormat,
    /// Upper bound for a request body; API bodies are small JSON documents.
    pub max_body_bytes: usize,
    /// How long a status probe of a registered Redis may take.
    pub probe_timeout_ms: u64,
    /// Bucket name reported for the local store (`bucket_name` of links).
    pub bucket: String,
    /// Stable id of this node; empty means generated once and kept in `data_dir/node_id`.
    #[serde(default)]
    pub node_id: Option<String>,
    /// Jobs (backups) that run at once on this node.
    pub backup_workers: usize,
    /// TCP connect and each request/reply exchange with Redis.
    pub connect_timeout_ms: u64,
    /// From the sync request to the first payload byte (a large instance's fork can take minutes).
    pub first_byte_timeout_secs: u64,
    /// Longest silence in the middle of a transfer.
    pub stall_timeout_secs: u64,
    /// PEM file of a CA trusted (besides the system's) for instances registered with `tls`.
    #[serde(default)]
    pub redis_tls_ca_file: Option<PathBuf>,
    /// A new link key signs new links after this many days; old ones keep
    /// verifying until the links they signed expire.
    pub link_key_rotation_days: u32,
    /// Where backups are kept: `local` (under `data_dir/objects`) or `s3`.
    pub storage: StorageKind,
    /// The S3-compatible store, when `storage = "s3"`.
    #[serde(default)]
    pub s3: S3Config,
    /// How often abandoned multipart uploads are looked for and aborted.
    pub sweep_interval_secs: u64,
    /// Shards of a cluster pulled at once (0: all of them, at most 16).
    pub cluster_parallel: usize,
    /// Where a `replicate` restore's one-time replication listener binds
    /// (port 0: a free port for each restore). The target connects to it.
    pub restore_listen: SocketAddr,
    /// The host the target is told to connect to (`REPLICAOF host port`);
    /// empty means the listener's address, which must then not be 0.0.0.0.
    pub restore_announce: Option<String>,
    /// How often the scheduler looks for automatic backups due and for
    /// backups past their retention.
    pub schedule_interval_secs: u64,
    /// A running job's lease: a node that has not renewed it for this long
    /// is presumed dead and its job is failed and cleaned by another node.
    pub job_lease_secs: u64,
    /// `data_dir` is on storage every node shares (a network file system),
    /// so several nodes may use the local store.
    pub shared_data_dir: bool,
    /// Most bytes one backup transfer may bring; 0: eight times the
    /// source's `used_memory`, at least 1 GiB.
    pub max_backup_bytes: u64,
    /// `Host` values signed requests may carry besides `public_url`'s own
    /// (aliases of the service). With neither set, any host is answered.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The master key that seals the secrets kept in the metadata store
    /// (base64 of 32 bytes); meant for the environment (`RDBVAULT_MASTER_KEY`).
    /// Wins over `master_key_file`.
    #[serde(default)]
    pub master_key: Option<Redacted>,
    /// The file holding the master key; empty means `data_dir/master.key`,
    /// generated at first start when absent.
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// Connections served at once; one more is closed at once.
    pub max_connections: usize,
    /// A request head (and a TLS handshake) must arrive within this.
    pub header_read_timeout_secs: u64,
    /// A connection waiting to read with no byte moving for this long is closed
    /// (idle keep-alive connections, stalled uploads).
    pub idle_timeout_secs: u64,
    /// An API call (body read included) must be answered within this.
    pub request_timeout_secs: u64,
    /// A client that reads nothing of a response (a download) for this long is cut off.
    pub download_idle_timeout_secs: u64,
    /// Downloads served at once, by all clients.
    pub max_downloads: usize,
    /// Downloads served at once to one client IP address.
    pub max_downloads_per_client: usize,
    /// Downloads served at once through one link.
    pub max_downloads_per_link: usize,
    /// PEM certificate chain: with `tls_key_file`, `serve` speaks HTTPS
    /// (both re-read on SIGHUP).
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Calls that change something (POST, PUT, DELETE) one access key may
    /// make per minute on this node, in bursts of a quarter of it; 0: no limit.
    pub mutating_calls_per_minute: u32,
    /// Backups a project may hold (not deleted, expired or failed); 0: no limit.
    pub project_max_backups: u64,
    /// Bytes a project's backups may hold in the store; 0: no limit.
    pub project_max_stored_bytes: u64,
    /// Jobs of one project this node runs at once; 0: no cap. Unset: all
    /// workers but one when the credentials name several projects (so a
    /// project's stuck backups, waiting minutes for a fork, cannot hold
    /// every worker), no cap with one project.
    #[serde(default)]
    pub project_max_running_jobs: Option<usize>,
}

/// A configured secret: shown as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl std::ops::Deref for Redacted {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Local,
    S3,
}

impl StorageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageKind::Local => "local",
            StorageKind::S3 => "s3",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkSigning {
    /// AWS Signature Version 4 query auth (`X-Amz-*`), object_store's signer.
    #[default]
    V4,
    /// The style of the DCS ListBackupFileLinks example link: `AWSAccessKeyId`, `Expires`, `Signature` (HMAC-SHA1).
    V2,
}

/// An S3-compatible store: OBS, MinIO, Ceph, AWS. The bucket is `bucket`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Config {
    /// `https://obs.cn-north-4.myhuaweicloud.com`, `http://127.0.0.1:9000`, ...
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<PathBuf>,
    /// `https://endpoint/bucket/key` (true) or `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// Send `UNSIGNED-PAYLOAD` instead of hashing bodies (OBS needs it).
    pub unsigned_payload: bool,
    /// Key prefix inside the bucket, e.g. `rdbvault/`.
    pub prefix: String,
    /// PEM CA for a store with a private certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub link_signing: LinkSigning,
    /// Name of the access-key parameter of V2 links: `AWSAccessKeyId`, or
    /// `AccessKeyId` for OBS's own form.
    pub v2_access_key_param: String,
    /// Multipart part size in MiB (S3's minimum is 5).
    pub part_size_mib: usize,
    /// How long a request is retried before the store counts as down.
    pub retry_timeout_secs: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key: String::new(),
            secret_key: None,
            secret_key_file: None,
            path_style: true,
            unsigned_payload: false,
            prefix: String::new(),
            ca_file: None,
            link_signing: LinkSigning::V4,
            v2_access_key_param: "AWSAccessKeyId".into(),
            part_size_mib: 8,
            retry_timeout_secs: 60,
        }
    }
}

impl std::fmt::Debug for S3Config {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("secret_key_file", &self.secret_key_file)
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .field("link_signing", &self.link_signing)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// The secret, from `secret_key` or the file `secret_key_file` names.
    pub fn secret(&self) -> Result<String, ConfigError> {
        let secret = match (&self.secret_key, &self.secret_key_file) {
            (Some(s), None) => s.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ConfigError::Invalid(format!("s3.secret_key_file {}: {e}", path.display()))
                })?
                .trim()
                .to_string(),
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set s3.secret_key or s3.secret_key_file, not both".into(),
                ));
            }
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "storage = \"s3\" needs s3.secret_key (or RDBVAULT_S3__SECRET_KEY) or s3.secret_key_file".into(),
                ));
            }
        };
        if secret.is_empty() {
            return Err(ConfigError::Invalid("the S3 secret key is empty".into()));
        }
        Ok(secret)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            data_dir: PathBuf::from("./rdbvault-data"),
            database_url: None,
            public_url: None,
            auth: AuthMode::Aksk,
            credentials: Vec::new(),
            log_format: LogFormat::Text,
            max_body_bytes: 64 * 1024,
            probe_timeout_ms: 2000,
            bucket: "rdbvault".into(),
            node_id: None,
            backup_workers: 2,
            connect_timeout_ms: 5000,
            first_byte_timeout_secs: 600,
            stall_timeout_secs: 60,
            redis_tls_ca_file: None,
            link_key_rotation_days: 30,
            storage: StorageKind::Local,
            s3: S3Config::default(),
            sweep_interval_secs: 600,
            cluster_parallel: 0,
            restore_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            restore_announce: None,
            schedule_interval_secs: 30,
            job_lease_secs: 120,
            shared_data_dir: false,
            max_backup_bytes: 0,
            allowed_hosts: Vec::new(),
            master_key: None,
            master_key_file: None,
            max_connections: 1024,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            request_timeout_secs: 60,
            download_idle_timeout_secs: 30,
            max_downloads: 128,
            max_downloads_per_client: 32,
            max_downloads_per_link: 16,
            tls_cert_file: None,
            tls_key_file: None,
            mutating_calls_per_minute: 600,
            project_max_backups: 0,
            project_max_stored_bytes: 0,
            project_max_running_jobs: None,
        }
    }
}

impl Config {
    /// Defaults, overlaid by the TOML file (if any), overlaid by `RDBVAULT_*`.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "configuration file {} does not exist",
                    file.display()
                )));
            }
            warn_unknown_keys(file);
            figment = figment.merge(Toml::file(file));
        }
        // Only the server's own keys: the CLI's RDBVAULT_ENDPOINT/AK/SK share the prefix.
        // Nested keys use `__`: RDBVAULT_S3__SECRET_KEY sets s3.secret_key.
        let env = Env::prefixed("RDBVAULT_")
            .filter(|k| {
                let top = k.as_str().split("__").next().unwrap_or_default();
                KNOWN_KEYS
                    .iter()
                    .any(|known| top.eq_ignore_ascii_case(known))
            })
            .split("__");
        figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Figment(Box::new(e)))
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.is_empty() => url.clone(),
            _ => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("meta.db").display()
            ),
        }
    }

    /// Where the master key is read from (and generated into) when
    /// `master_key` is not set.
    pub fn master_key_path(&self) -> PathBuf {
        match &self.master_key_file {
            Some(path) if !path.as_os_str().is_empty() => path.clone(),
            _ => self.data_dir.join("master.key"),
        }
    }

    /// The configured node id, or the one this data dir was given at its first start.
    pub fn node_id(&self) -> std::io::Result<String> {
        if let Some(id) = self.node_id.as_ref().filter(|id| !id.is_empty()) {
            return Ok(id.clone());
        }
        let path = self.data_dir.join("node_id");
        match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
            _ => {
                let id = uuid::Uuid::new_v4().to_string();
                std::fs::create_dir_all(&self.data_dir)?;
                std::fs::write(&path, &id)?;
                Ok(id)
            }
        }
    }

    /// The `Host` values signed requests must carry: `public_url`'s host (and
    /// port, as clients write it) and `allowed_hosts`, lower-cased; empty
    /// when neither is configured (then any host is answered).
    pub fn signed_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .allowed_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(url) = self.public_url.as_deref().filter(|u| !u.is_empty())
            && let Ok(url) = url::Url::parse(url)
            && let Some(host) = url.host_str()
        {
            hosts.push(
                match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                }
                .to_ascii_lowercase(),
            );
        }
        hosts
    }

    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) if !url.is_empty() => url.trim_end_matches('/').to_string(),
            _ if self.tls().is_some() => format!("https://{bound}"),
            _ => format!("http://{bound}"),
        }
    }

    /// Jobs of one project a node runs at once (0: no cap), see
    /// `project_max_running_jobs`.
    pub fn per_project_jobs(&self) -> usize {
        if let Some(cap) = self.project_max_running_jobs {
            return cap;
        }
        let projects: std::collections::HashSet<&String> =
            self.credentials.iter().flat_map(|c| &c.projects).collect();
        match (projects.len(), self.backup_workers) {
            (0 | 1, _) | (_, 0 | 1) => 0,
            (_, workers) => workers - 1,
        }
    }

    /// The certificate and key files, when HTTPS is configured.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        fn set(p: &Option<PathBuf>) -> Option<&Path> {
            p.as_deref().filter(|p| !p.as_os_str().is_empty())
        }
        Some((set(&self.tls_cert_file)?, set(&self.tls_key_file)?))
    }
}

/// Bucket names follow S3's rules, and must not shadow the API's own paths
/// (download links are served under `/{bucket}/`).
pub fn check_bucket_name(bucket: &str) -> Result<(), ConfigError> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && bucket
            .as_bytes()
            .last()
            .is_some_and(u8::is_ascii_alphanumeric);
    if !valid {
        return Err(ConfigError::Invalid(format!(
            "bucket {bucket:?}: 3 to 63 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
        )));
    }
    if ["v2", "healthz", "metrics", "openapi.json"].contains(&bucket) {
        return Err(ConfigError::Invalid(format!(
            "bucket {bucket:?} would shadow an API path; choose another name"
        )));
    }
    Ok(())
}

/// Reports every key of the file the server does not understand, in nested
/// tables too (`s3.endpiont`, `credentials[0].secret`), so a typo does not
/// silently fall back to a default. The file's syntax and types are left to
/// the extraction, which refuses them with a better message.
fn warn_unknown_keys(file: &Path) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return;
    };
    for key in unknown_keys(&table) {
        // `serve` reads its configuration before it can set up logging
        // (the configuration says how to log): until then, stderr.
        if tracing::dispatcher::has_been_set() {
            tracing::warn!(key = %key, file = %file.display(), "unknown configuration key ignored");
        } else {
            eprintln!(
                "warning: unknown configuration key {key} in {} ignored",
                file.display()
            );
        }
    }
}

/// The keys of `table` that are not configuration keys, as dotted paths.
fn unknown_keys(table: &toml::Table) -> Vec<String> {
    let mut unknown = Vec::new();
    for (key, value) in table {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            unknown.push(key.clone());
            continue;
        }
        let Some(known) = nested_keys(key) else {
            continue;
        };
        let tables: Vec<(String, &toml::Table)> = match value {
            toml::Value::Table(t) => vec![(key.clone(), t)],
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.as_table().map(|t| (format!("{key}[{i}]"), t)))
                .collect(),
            _ => Vec::new(),
        };
        for (path, t) in tables {
            unknown.extend(
                t.keys()
                    .filter(|k| !known.contains(&k.as_str()))
                    .map(|k| format!("{path}.{k}")),
            );
        }
    }
    unknown
}

/// The keys of a table (or of each table of an array) inside the file.
/// A test checks that every key whose value is a table is listed here.
fn nested_keys(key: &str) -> Option<&'static [&'static str]> {
    match key {
        "s3" => Some(fields_of::<S3Config>()),
        "credentials" => Some(fields_of::<CredentialConfig>()),
        _ => None,
    }
}

/// The keys a struct accepts, as its derived `Deserialize` names them to
/// the deserializer: the lists cannot drift from the structs.
fn fields_of<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor, value};

    /// A deserializer that only records the field names it is asked for.
    struct Fields(&'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, value::Error> {
            Err(value::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, value::Error> {
            self.0 = fields;
            Err(value::Error::custom("fields recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields = Fields(&[]);
    let _ = T::deserialize(&mut fields);
    fields.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_with_nothing_configured() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7480");
        assert_eq!(c.auth, AuthMode::Aksk);
        assert!(
            c.database_url()
                .starts_with("sqlite://./rdbvault-data/meta.db")
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API, not ours
    fn file_then_env_override() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                r#"
                listen = "127.0.0.1:9000"
                data_dir = "/tmp/x"
                [[credentials]]
                access_key = "AK1"
                secret_key = "SK1"
                projects = ["p1"]
                "#,
            )?;
            jail.set_env("RDBVAULT_LISTEN", "127.0.0.1:9001");
            jail.set_env("RDBVAULT_ENDPOINT", "http://ignored");
            let c = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9001);
            assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
            assert_eq!(c.credentials[0].projects, vec!["p1"]);
            assert!(!format!("{c:?}").contains("SK1"), "secret in Debug output");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_found_in_nested_tables_too() {
        let table: toml::Table = r#"
            listen = "127.0.0.1:9000"
            listenn = "127.0.0.1:9001"
            storage = "s3"
            [s3]
            endpoint = "http://127.0.0.1:9000"
            endpiont = "http://127.0.0.1:9000"
            [[credentials]]
            access_key = "AK1"
            secret_key = "SK1"
            [[credentials]]
            access_key = "AK2"
            secret = "SK2"
            "#
        .parse()
        .unwrap();
        let mut unknown = unknown_keys(&table);
        unknown.sort();
        assert_eq!(unknown, ["credentials[1].secret", "listenn", "s3.endpiont"]);
    }

    #[test]
    fn known_keys_are_the_fields_of_config() {
        let mut known = KNOWN_KEYS.to_vec();
        let mut fields = fields_of::<Config>().to_vec();
        known.sort_unstable();
        fields.sort_unstable();
        assert_eq!(
            known, fields,
            "KNOWN_KEYS differs from the fields of Config"
        );
    }

    /// A configuration with every key set, written as TOML, has no unknown
    /// key, and every table in it has its keys checked.
    #[test]
    fn every_key_of_a_full_config_is_known() {
        let mut config = Config {
            database_url: Some("sqlite://x".into()),
            public_url: Some("http://x".into()),
            node_id: Some("n".into()),
            redis_tls_ca_file: Some("ca.pem".into()),
            ..Config::default()
        };
        config.credentials.push(CredentialConfig {
            access_key: "AK".into(),
            secret_key: Some("SK".into()),
            secret_key_file: Some("sk".into()),
            projects: vec!["p".into()],
        });
        config.s3.secret_key = Some("SK".into());
        config.s3.secret_key_file = Some("sk".into());
        config.s3.ca_file = Some("ca.pem".into());
        let table = toml::Table::try_from(&config).unwrap();
        assert_eq!(unknown_keys(&table), Vec::<String>::new());
        for (key, value) in &table {
            let is_table = match value {
                toml::Value::Table(_) => true,
                toml::Value::Array(items) => items.iter().any(toml::Value::is_table),
                _ => false,
            };
            assert_eq!(
                is_table,
                nested_keys(key).is_some(),
                "{key}: a table's keys must be listed in nested_keys, and only a table's"
            );
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(Config::load(Some(Path::new("/nonexistent/rdbvault.toml"))).is_err());
    }
}
