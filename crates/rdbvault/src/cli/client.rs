//! An HTTP client of the rdbvault API that signs its requests exactly as the
//! Huawei Cloud SDKs do, so the CLI exercises the same path as any DCS tool.

use std::path::PathBuf;

use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::api::ErrorBody;
use crate::auth::signature;

/// Where and as whom the CLI talks: flags/environment first, then the
/// client config file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientConfig {
    pub endpoint: Option<String>,
    pub ak: Option<String>,
    pub sk: Option<String>,
    pub project_id: Option<String>,
    /// PEM CA certificates trusted besides the system's (a service with a
    /// private certificate).
    pub ca_file: Option<PathBuf>,
}

impl ClientConfig {
    pub(crate) fn load(file: Option<&PathBuf>) -> anyhow::Result<ClientConfig> {
        let Some(path) = file else {
            return Ok(ClientConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading client config {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing client config {}: {e}", path.display()))
    }

    /// `self` overrides `file` field by field.
    pub(crate) fn or(self, file: ClientConfig) -> ClientConfig {
        ClientConfig {
            endpoint: self.endpoint.or(file.endpoint),
            ak: self.ak.or(file.ak),
            sk: self.sk.or(file.sk),
            project_id: self.project_id.or(file.project_id),
            ca_file: self.ca_file.or(file.ca_file),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0} is not set: pass --{1}, set RDBVAULT_{2}, or put {1} in the client config file")]
    Missing(&'static str, &'static str, &'static str),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("bad endpoint {0:?}: {1}")]
    Endpoint(String, String),
    /// The API answered with its error body.
    #[error("{status} {}: {}", body.error_code, body.error_msg)]
    Api { status: u16, body: ErrorBody },
    #[error("unexpected answer {status}: {text}")]
    Unexpected { status: u16, text: String },
    #[error("CA file {0}: {1}")]
    CaFile(String, String),
}

/// The HTTP client every command uses (API calls and downloads): the
/// system's roots, plus the CAs of `ca_file`; certificates are verified.
pub(crate) fn http_client(
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_file {
        let err = |e: String| ClientError::CaFile(path.display().to_string(), e);
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no certificate in the file".into()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    ak: String,
    sk: String,
    pub(crate) project_id: String,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let endpoint = config
            .endpoint
            .unwrap_or_else(|| "http://127.0.0.1:7480".into());
        let base = url::Url::parse(&endpoint)
            .map_err(|e| ClientError::Endpoint(endpoint.clone(), e.to_string()))?;
        if base.host_str().is_none() {
            return Err(ClientError::Endpoint(endpoint, "no host".into()));
        }
        Ok(Client {
            http: http_client(config.ca_file.as_deref())?,
            base,
            ak: config
                .ak
                .ok_or(ClientError::Missing("access key", "ak", "AK"))?,
            sk: config
                .sk
                .ok_or(ClientError::Missing("secret key", "sk", "SK"))?,
            project_id: config.project_id.ok_or(ClientError::Missing(
                "project id",
                "project-id",
                "PROJECT_ID",
            ))?,
        })
    }

    /// The HTTP client, for following links the API handed out.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `/v2/{project_id}/{rest}` with `rest` already percent-encoded.
    pub fn project_path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.project_id)
    }

    fn host(&self) -> String {
        match (self.base.host_str(), self.base.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => String::new(),
        }
    }

    /// Sends a signed request; `query` must be in canonical (sorted, encoded)
    /// form. A call refused by the service's rate limit (429 `DCS.4961`) is
    /// sent again, signed anew, after the `Retry-After` it names (a few
    /// times, waits of at most 30 s): a script registering a fleet slows
    /// down instead of failing half-way.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        const RETRIES: u32 = 5;
        let mut attempt = 0;
        loop {
            let (status, bytes, retry_after) =
                self.send_once(method.clone(), path, query, body).await?;
            let rate_limited = status == 429
                && serde_json::from_slice::<ErrorBody>(&bytes)
                    .is_ok_and(|b| b.error_code == "DCS.4961");
            match retry_after.filter(|s| rate_limited && *s <= 30 && attempt < RETRIES) {
                Some(secs) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(secs.max(1))).await;
                }
                None => return Ok((status, bytes)),
            }
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>, Option<u64>), ClientError> {
        let body_bytes = match body {
            Some(v) => serde_json::to_vec(v).unwrap_or_default(),
            None => Vec::new(),
        };
        let date = chrono::Utc::now()
            .format(signature::DATE_FORMAT)
            .to_string();
        let content_type = if body.is_some() {
            "application/json;charset=utf-8"
        } else {
            "application/json"
        };
        let user_agent = concat!("rdbvault-cli/", env!("CARGO_PKG_VERSION"));
        let headers: Vec<(String, String)> = [
            ("content-type", content_type.to_string()),
            ("host", self.host()),
            ("user-agent", user_agent.to_string()),
            ("x-project-id", self.project_id.clone()),
            ("x-sdk-date", date.clone()),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
        let auth = signature::Request {
            method: method.as_str(),
            path,
            query,
            headers: headers.clone(),
            body: &body_bytes,
        }
        .authorization(&self.ak, &self.sk, &date);
        let mut url = self.base.clone();
        url.set_path(path);
        url.set_query((!query.is_empty()).then_some(query));
        let mut req = self.http.request(method, url).header("authorization", auth);
        for (n, v) in headers {
            req = req.header(n, v);
        }
        let resp = req.body(body_bytes).send().await?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok((status, resp.bytes().await?.to_vec(), retry_after))
    }

    /// Sends and returns the raw body of a successful answer, turning DCS
    /// error bodies into errors.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, ClientError> {
        let (status, bytes) = self.send(method, path, query, body).await?;
        check(status, &bytes)?;
        Ok(bytes)
    }

    /// Like `call`, decoded.
    pub async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let bytes = self.call(method, path, query, body).await?;
        serde_json::from_slice(&bytes).map_err(|_| ClientError::Unexpected {
            status: 200,
            text: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
        })
    }
}

fn check(status: u16, bytes: &[u8]) -> Result<(), ClientError> {
    if status < 400 {
        return Ok(());
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => Err(ClientError::Api { status, body }),
        Err(_) => Err(ClientError::Unexpected {
            status,
            text: String::from_utf8_lossy(bytes).chars().take(500).collect(),
        }),
    }
}
