//! Who may call the API: AK/SK credentials, `SDK-HMAC-SHA256` verification,
//! and project scoping.

pub(crate) mod bootstrap;
pub mod signature;

mod lockout;
mod rate_limit;

use std::collections::{HashMap, HashSet};

use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDateTime, Utc};
use subtle::ConstantTimeEq;

use crate::config::{AuthMode, Config, ConfigError, CredentialConfig};

/// Requests whose `X-Sdk-Date` is further than this from our clock are refused,
/// as Huawei's API gateway does; it bounds how long a captured request can be replayed.
pub(crate) const MAX_CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the request carries no Authorization header")]
    Missing,
    #[error("the Authorization header is not a valid SDK-HMAC-SHA256 authorization")]
    Malformed,
    /// Said to the client exactly as [`AuthError::BadSignature`], so access
    /// keys cannot be told apart from wrong secrets (enumerated); the log
    /// tells them apart.
    #[error("the signature does not match")]
    UnknownKey,
    #[error("header {0} must be signed")]
    UnsignedHeader(&'static str),
    #[error("signed header {0} is missing from the request")]
    MissingSignedHeader(String),
    #[error("X-Sdk-Date is missing or not in the form yyyyMMddTHHmmssZ")]
    BadDate,
    #[error("X-Sdk-Date is more than 15 minutes away from the server's clock")]
    Skew,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the credential may not act in project {0}")]
    ProjectForbidden(String),
    #[error("too many failed signatures for this access key; retry in {0} s")]
    LockedOut(i64),
    #[error("the request is signed for host {0:?}, which this service does not answer to")]
    WrongHost(String),
    /// A JSON body the signature does not cover (`X-Sdk-Content-Sha256`
    /// named another payload): authentic request, unauthenticated body.
    #[error(
        "the body is not signed: X-Sdk-Content-Sha256 names another payload; a JSON body is signed with its SHA-256"
    )]
    UnsignedBody,
}

struct Credential {
    secret_key: String,
    projects: HashSet<String>,
}

/// The identity a verified request acts as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub access_key: Option<String>,
    /// Whether the signature covers the body. It does not when the client
    /// signed `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` in its stead, as the
    /// SDK does for a Content-Type that is not JSON: such a request is
    /// authentic, but its body may have been replaced on the way.
    pub body_signed: bool,
}

impl Principal {
    pub(crate) fn anonymous() -> Principal {
        Principal {
            access_key: None,
            body_signed: true,
        }
    }
}

/// What a request presents for verification; `path` and `query` are raw,
/// exactly as on the wire.
pub(crate) struct Presented<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

pub struct Authenticator {
    mode: AuthMode,
    keys: HashMap<String, Credential>,
    lockout: lockout::Lockout,
    changes: rate_limit::RateLimit,
}

impl Authenticator {
    /// Builds the key ring from config, reading `secret_key_file`s.
    pub(crate) fn from_config(config: &Config) -> Result<Authenticator, ConfigError> {
        let mut keys = HashMap::new();
        for c in &config.credentials {
            let secret_key = resolve_secret(c)?;
            keys.insert(
                c.access_key.clone(),
                Credential {
                    secret_key,
                    projects: c.projects.iter().cloned().collect(),
                },
            );
        }
        Ok(Authenticator {
            mode: config.auth,
            keys,
            lockout: lockout::Lockout::default(),
            changes: rate_limit::RateLimit::per_minute(config.mutating_calls_per_minute),
        })
    }

    /// Counts a call that changes something against its access key's rate
    /// (`Err`: seconds to wait). Anonymous calls (`auth = "none"`) are not limited.
    pub(crate) fn allow_change(&self, principal: &Principal) -> Result<(), u64> {
        match &principal.access_key {
            Some(ak) => self.changes.check(ak),
            None => Ok(()),
        }
    }

    /// The projects `principal`'s credential holds, sorted (none for an
    /// anonymous caller).
    pub(crate) fn projects_of(&self, principal: &Principal) -> Vec<String> {
        let mut projects: Vec<String> = principal
            .access_key
            .as_ref()
            .and_then(|ak| self.keys.get(ak))
            .map(|c| c.projects.iter().cloned().collect())
            .unwrap_or_default();
        projects.sort();
        projects
    }

    pub(crate) fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Checks the signature and that the credential holds `project_id`.
    /// A key with [`lockout::MAX_FAILURES`] failed signatures in a row is
    /// refused for a while, even with a good signature.
    pub(crate) fn verify(
        &self,
        req: &Presented<'_>,
        project_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        if self.mode == AuthMode::None {
            return Ok(Principal::anonymous());
        }
        let access_key = req
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(signature::Authorization::parse)
            .map(|a| a.access_key.to_string());
        if let Some(wait) = access_key
            .as_deref()
            .and_then(|ak| self.lockout.locked(ak, now))
        {
            return Err(AuthError::LockedOut(wait));
        }
        let verified = self.check(req, project_id, now);
        if let Some(ak) = access_key.as_deref() {
            match &verified {
                Err(AuthError::BadSignature | AuthError::UnknownKey) => {
                    self.lockout.failed(ak, now)
                }
                Ok(_) => self.lockout.succeeded(ak),
                Err(_) => {}
            }
        }
        verified
    }

    fn check(
        &self,
        req: &Presented<'_>,
        project_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let header = req
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?
            .to_str()
            .map_err(|_| AuthError::Malformed)?;
        let auth = signature::Authorization::parse(header).ok_or(AuthError::Malformed)?;
        let credential = self
            .keys
            .get(auth.access_key)
            .ok_or(AuthError::UnknownKey)?;
        for required in ["host", "x-sdk-date"] {
            if !auth.signed_headers.contains(&required) {
                return Err(AuthError::UnsignedHeader(required));
            }
        }
        let sdk_date = header_value(req.headers, "x-sdk-date").ok_or(AuthError::BadDate)?;
        let signed_at = NaiveDateTime::parse_from_str(&sdk_date, signature::DATE_FORMAT)
            .map_err(|_| AuthError::BadDate)?
            .and_utc();
        if (now - signed_at).abs() > MAX_CLOCK_SKEW {
            return Err(AuthError::Skew);
        }
        let mut headers = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            let value = header_value(req.headers, name)
                .ok_or_else(|| AuthError::MissingSignedHeader(name.to_string()))?;
            headers.push((name.to_string(), value));
        }
        let (payload, body_signed) = payload(req, &auth)?;
        let expected = signature::Request {
            method: req.method,
            path: req.path,
            query: req.query,
            headers,
            body: req.body,
        }
        .signature_with(&credential.secret_key, &sdk_date, &payload);
        if !bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
            return Err(AuthError::BadSignature);
        }
        // The SDK signs X-Project-Id; a request that names one project in the
        // header and another in the path is refused rather than guessed at.
        let header_project = header_value(req.headers, "x-project-id");
        if header_project.as_deref().is_some_and(|p| p != project_id)
            || !credential.projects.contains(project_id)
        {
            return Err(AuthError::ProjectForbidden(project_id.to_string()));
        }
        Ok(Principal {
            access_key: Some(auth.access_key.to_string()),
            body_signed,
        })
    }
}

/// The header in which the SDK names the payload it signed instead of the
/// body's hash: `UNSIGNED-PAYLOAD` whenever the Content-Type is not JSON
/// (or BSON), so such a request is signed without its body.
pub(crate) const CONTENT_SHA256: &str = "x-sdk-content-sha256";

/// The last line of the canonical request, as the SDK's signer writes it,
/// and whether it covers the body: an empty body is always the hash of
/// nothing; otherwise `X-Sdk-Content-Sha256` (trimmed, as the signer trims
/// headers before it reads it) when the request has one, else the body's
/// SHA-256. A body the signature does not cover must not be acted on (see
/// `api::extract::Json`); a client that names a payload must sign that header.
fn payload(
    req: &Presented<'_>,
    auth: &signature::Authorization<'_>,
) -> Result<(String, bool), AuthError> {
    let hash = signature::sha256_hex(req.body);
    if req.body.is_empty() {
        return Ok((hash, true));
    }
    let Some(named) = header_value(req.headers, CONTENT_SHA256) else {
        return Ok((hash, true));
    };
    if !auth.signed_headers.contains(&CONTENT_SHA256) {
        return Err(AuthError::UnsignedHeader(CONTENT_SHA256));
    }
    let named = named.trim().to_string();
    let signed = named.eq_ignore_ascii_case(&hash);
    Ok((named, signed))
}

/// All values of a header joined by `,`, as an HTTP intermediary would fold them.
fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str())
        .collect::<Result<_, _>>()
        .ok()?;
    (!values.is_empty()).then(|| values.join(","))
}

fn resolve_secret(c: &CredentialConfig) -> Result<String, ConfigError> {
    let err = |reason: String| ConfigError::Credential {
        access_key: c.access_key.clone(),
        reason,
    };
    let secret = match (&c.secret_key, &c.secret_key_file) {
        (Some(s), None) => s.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| err(format!("reading secret_key_file {}: {e}", path.display())))?
            .trim()
            .to_string(),
        (Some(_), Some(_)) => {
            return Err(err("set secret_key or secret_key_file, not both".into()));
        }
        (None, None) => {
            return Err(err(
                "no secret: set secret_key, or secret_key_file to a file holding it".into(),
            ));
        }
    };
    if secret.is_empty() {
        return Err(err("the secret key is empty".into()));
    }
    if c.projects.is_empty() {
        return Err(err(
            "lists no projects; add projects = [\"<project_id>\"]".into()
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const AK: &str = "AKEXAMPLE1234567890";
    const SK: &str = "SKEXAMPLEsecretKEY0123456789abcdefghijkl";
    const PROJECT: &str = "0123456789abcdef0123456789abcdef";

    fn authenticator() -> Authenticator {
        let mut config = Config::default();
        config.credentials.push(CredentialConfig {
            access_key: AK.into(),
            secret_key: Some(SK.into()),
            secret_key_file: None,
            projects: vec![PROJECT.into()],
        });
        Authenticator::from_config(&config).expect("valid config")
    }

    /// The SDK's worked example, as it arrives on the wire.
    fn example_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("content-type", "application/json;charset=utf-8"),
            ("host", "127.0.0.1:8080"),
            ("user-agent", "huaweicloud-usdk-python/3.0"),
            ("x-project-id", PROJECT),
            ("x-sdk-date", "20240102T030405Z"),
            ("accept-encoding", "gzip, deflate"),
            (
                "authorization",
                "SDK-HMAC-SHA256 Access=AKEXAMPLE1234567890, \
                 SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, \
                 Signature=ac319d2d0456af9560df60e35463b3c6afc444f298e87270733a4702f8f6819d",
            ),
        ] {
            h.insert(n, HeaderValue::from_static(v));
        }
        h
    }

    fn at(minutes_after: i64) -> DateTime<Utc> {
        "2024-01-02T03:04:05Z"
            .parse::<DateTime<Utc>>()
            .expect("valid")
            + chrono::TimeDelta::minutes(minutes_after)
    }

    fn verify(
        headers: &HeaderMap,
        body: &[u8],
        project: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let path = format!("/v2/{PROJECT}/instances/inst-1/backups/bk-1/links");
        authenticator().verify(
            &Presented {
                method: "POST",
                path: &path,
                query: "",
                headers,
                body,
            },
            project,
            now,
        )
    }

    #[test]
    fn accepts_the_sdk_example() {
        let p = verify(
            &example_headers(),
            br#"{"expiration": 300}"#,
            PROJECT,
            at(0),
        )
        .expect("valid");
        assert_eq!(p.access_key.as_deref(), Some(AK));
    }

    #[test]
    fn refuses_tampering_skew_and_other_projects() {
        let body = br#"{"expiration": 300}"#;
        assert_eq!(
            verify(
                &example_headers(),
                br#"{"expiration": 301}"#,
                PROJECT,
                at(0)
            )
            .unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(
            verify(&example_headers(), body, PROJECT, at(16)).unwrap_err(),
            AuthError::Skew
        );
        assert_eq!(
            verify(&example_headers(), body, PROJECT, at(-16)).unwrap_err(),
            AuthError::Skew
        );
        assert!(verify(&example_headers(), body, PROJECT, at(14)).is_ok());
        assert!(matches!(
            verify(&example_headers(), body, "another", at(0)).unwrap_err(),
            AuthError::ProjectForbidden(_)
        ));
        let mut h = example_headers();
        h.insert("user-agent", HeaderValue::from_static("curl/8"));
        assert_eq!(
            verify(&h, body, PROJECT, at(0)).unwrap_err(),
            AuthError::BadSignature
        );
        let mut h = example_headers();
        h.remove("authorization");
        assert_eq!(
            verify(&h, body, PROJECT, at(0)).unwrap_err(),
            AuthError::Missing
        );
        let mut h = example_headers();
        h.remove("user-agent");
        assert!(matches!(
            verify(&h, body, PROJECT, at(0)).unwrap_err(),
            AuthError::MissingSignedHeader(_)
        ));
        let mut h = example_headers();
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "SDK-HMAC-SHA256 Access=NOPE, SignedHeaders=host;x-sdk-date, Signature=00",
            ),
        );
        assert_eq!(
            verify(&h, body, PROJECT, at(0)).unwrap_err(),
            AuthError::UnknownKey
        );
        let mut h = example_headers();
        h.insert("authorization", HeaderValue::from_static("SDK-HMAC-SHA256 Access=AKEXAMPLE1234567890, SignedHeaders=x-sdk-date, Signature=00"));
        assert_eq!(
            verify(&h, body, PROJECT, at(0)).unwrap_err(),
            AuthError::UnsignedHeader("host")
        );
    }

    /// What the SDK's signer makes of a body that is not JSON (computed by
    /// it): `UNSIGNED-PAYLOAD` signed in the body's stead, in a signed header.
    fn unsigned_payload_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("content-type", "text/plain"),
            ("host", "127.0.0.1:8080"),
            ("user-agent", "huaweicloud-usdk-python/3.0"),
            ("x-project-id", PROJECT),
            ("x-sdk-date", "20240102T030405Z"),
            ("x-sdk-content-sha256", "UNSIGNED-PAYLOAD"),
            (
                "authorization",
                "SDK-HMAC-SHA256 Access=AKEXAMPLE1234567890, \
                 SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-content-sha256;x-sdk-date, \
                 Signature=a624192101ca251b352bc4ee56bcddd65636b95b39345613e082ff340a89a138",
            ),
        ] {
            h.insert(n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn an_unsigned_payload_verifies_but_is_marked_unsigned() {
        let path = format!("/v2/{PROJECT}/instances/inst-1/backups");
        let check = |headers: &HeaderMap, body: &[u8]| {
            authenticator().verify(
                &Presented {
                    method: "POST",
                    path: &path,
                    query: "",
                    headers,
                    body,
                },
                PROJECT,
                at(0),
            )
        };
        let h = unsigned_payload_headers();
        let p = check(&h, br#"{"remark": "x"}"#).expect("the SDK's signature");
        assert!(!p.body_signed);
        // Any body: the signature does not cover it.
        assert!(!check(&h, b"another body").expect("verifies").body_signed);
        // The header takes part in the signature ...
        let mut h = unsigned_payload_headers();
        h.insert("x-sdk-content-sha256", HeaderValue::from_static("UNSIGNED"));
        assert_eq!(check(&h, b"x").unwrap_err(), AuthError::BadSignature);
        // ... and must be signed to count.
        let mut h = unsigned_payload_headers();
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "SDK-HMAC-SHA256 Access=AKEXAMPLE1234567890, \
                 SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, Signature=00",
            ),
        );
        assert_eq!(
            check(&h, b"x").unwrap_err(),
            AuthError::UnsignedHeader(CONTENT_SHA256)
        );
        // A body signed in full is marked so.
        let p = verify(
            &example_headers(),
            br#"{"expiration": 300}"#,
            PROJECT,
            at(0),
        )
        .expect("valid");
        assert!(p.body_signed);
    }

    #[test]
    fn secrets_come_from_files_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sk");
        std::fs::write(&file, format!("{SK}\n")).expect("write");
        let mut c = CredentialConfig {
            access_key: AK.into(),
            secret_key: None,
            secret_key_file: Some(file),
            projects: vec![PROJECT.into()],
        };
        assert_eq!(resolve_secret(&c).expect("read"), SK);
        c.projects.clear();
        assert!(resolve_secret(&c).is_err());
        c.projects.push(PROJECT.into());
        c.secret_key_file = None;
        assert!(resolve_secret(&c).is_err());
    }
}
