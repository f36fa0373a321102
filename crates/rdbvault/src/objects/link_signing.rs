//! Signing and verifying the download links of the local store (the
//! ListBackupFileLinks operation itself is `api::links`), in the shape of the
//! example link of the DCS ListBackupFileLinks documentation:
//! `{public_url}/{bucket}/{key}?AWSAccessKeyId=<key id>&Expires=<unix s>&Signature=<b64>`.
//!
//! The signature is HMAC-SHA256 over `GET\n{path}\n{expires}` with a
//! server-side link key (never a user's SK), so a link needs no other
//! credential, works only for that path and only until it expires. HEAD uses
//! the GET signature, so a client can size a download before starting it.
//! Keys live in the metadata store (shared by all nodes) and rotate; a
//! retired key verifies until the longest link it could have signed expires.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::meta::{LinkKey, Meta, MetaError};

/// The longest validity a link can be given (ListBackupFileLinks allows 86400 s).
pub(crate) const MAX_LINK_SECS: i64 = 86_400;
/// How far another node's clock may run ahead of this one's.
const CLOCK_SKEW_SECS: i64 = 300;
/// Unknown key ids trigger a reload (another node may have rotated), at most this often.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// Keys are re-read this often anyway, to pick up rotations by other nodes.
const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// Query values as AWS/OBS encode them: RFC 3986 unreserved stay literal.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error(
        "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
    )]
    MissingParams,
    #[error("Invalid date (should be seconds since epoch): {0}")]
    BadExpires(String),
    #[error("Request has expired")]
    Expired,
    #[error("The AWS access key Id you provided does not exist in our records.")]
    UnknownKey,
    #[error("The request signature we calculated does not match the signature you provided.")]
    BadSignature,
    #[error("Expires is further ahead than any link can be valid (24 hours)")]
    TooFarAhead,
}

struct Cache {
    keys: Vec<LinkKey>,
    loaded: Instant,
}

pub struct LinkSigner {
    meta: Meta,
    cache: RwLock<Cache>,
}

/// What a presented link carries, from its query string.
pub struct LinkQuery<'a> {
    pub key_id: Option<&'a str>,
    pub expires: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl LinkSigner {
    pub async fn new(meta: Meta) -> Result<LinkSigner, MetaError> {
        meta.ensure_link_key().await?;
        let keys = meta.link_keys().await?;
        Ok(LinkSigner {
            meta,
            cache: RwLock::new(Cache {
                keys,
                loaded: Instant::now(),
            }),
        })
    }

    /// Re-reads the keys (after a rotation, say).
    pub async fn refresh(&self) -> Result<(), MetaError> {
        self.reload().await
    }

    async fn reload(&self) -> Result<(), MetaError> {
        let keys = self.meta.link_keys().await?;
        if let Ok(mut cache) = self.cache.write() {
            *cache = Cache {
                keys,
                loaded: Instant::now(),
            };
        }
        Ok(())
    }

    fn cached(&self, id: Option<&str>) -> (Option<LinkKey>, Duration) {
        match self.cache.read() {
            Ok(cache) => {
                let key = match id {
                    Some(id) => cache.keys.iter().find(|k| k.id == id).cloned(),
                    None => cache.keys.iter().find(|k| k.retired_at.is_none()).cloned(),
                };
                (key, cache.loaded.elapsed())
            }
            Err(_) => (None, Duration::MAX),
        }
    }

    /// The key `id` (or the signing key), reloading when it is unknown or the cache is old.
    async fn key(&self, id: Option<&str>) -> Result<Option<LinkKey>, MetaError> {
        let (key, age) = self.cached(id);
        let stale = age >= REFRESH_EVERY;
        if (key.is_none() && age >= RELOAD_AT_MOST_EVERY) || stale {
            self.reload().await?;
            return Ok(self.cached(id).0);
        }
        Ok(key)
    }

    /// The query string of a link to `path` (already percent-encoded, as it
    /// will be requested) valid until `expires`.
    pub async fn sign(&self, path: &str, expires: DateTime<Utc>) -> Result<String, MetaError> {
        let key = match self.key(None).await? {
            Some(k) => k,
            None => {
                self.meta.ensure_link_key().await?;
                self.reload().await?;
                self.cached(None)
                    .0
                    .ok_or_else(|| MetaError::Corrupt("no link key".into()))?
            }
        };
        let expires = expires.timestamp();
        let signature = BASE64.encode(mac(&key.secret, path, expires));
        Ok(format!(
            "AWSAccessKeyId={}&Expires={expires}&Signature={}",
            key.id,
            utf8_percent_encode(&signature, QUERY)
        ))
    }

    /// Checks a presented link for `path` (raw, as requested) at `now`.
    pub async fn verify(
        &self,
        path: &str,
        p: &LinkQuery<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let (Some(key_id), Some(expires_raw), Some(signature)) = (p.key_id, p.expires, p.signature)
        else {
            return Err(LinkError::MissingParams.into());
        };
        let expires: i64 = expires_raw
            .parse()
            .map_err(|_| LinkError::BadExpires(expires_raw.chars().take(40).collect()))?;
        let key = self.key(Some(key_id)).await?.ok_or(LinkError::UnknownKey)?;
        let presented = BASE64
            .decode(signature)
            .map_err(|_| LinkError::BadSignature)?;
        let expected = mac(&key.secret, path, expires);
        if !bool::from(expected.as_slice().ct_eq(&presented)) {
            return Err(LinkError::BadSignature.into());
        }
        // Only after the signature holds is the expiry trusted; a retired
        // key signed nothing that outlives its retirement by MAX_LINK_SECS.
        let now_s = now.timestamp();
        let retired_too_long = key
            .retired_at
            .is_some_and(|r| now_s > r.timestamp() + MAX_LINK_SECS);
        if now_s > expires || retired_too_long {
            return Err(LinkError::Expired.into());
        }
        // No link is issued for longer than MAX_LINK_SECS: one that claims
        // more was not signed by this service (or by a leaked key), whoever
        // signed it. A few minutes allow for other nodes' clocks.
        if expires > now_s + MAX_LINK_SECS + CLOCK_SKEW_SECS {
            return Err(LinkError::TooFarAhead.into());
        }
        Ok(())
    }
}

fn mac(secret: &[u8], path: &str, expires: i64) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(format!("GET\n{path}\n{expires}").as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// A refusal, or a failure of ours while checking.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_path_and_expiry() {
        let a = mac(b"k", "/b/x", 100);
        assert_eq!(a, mac(b"k", "/b/x", 100));
        assert_ne!(a, mac(b"k", "/b/y", 100));
        assert_ne!(a, mac(b"k", "/b/x", 101));
        assert_ne!(a, mac(b"j", "/b/x", 100));
    }
}
