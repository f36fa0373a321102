//! Keys that sign download links (see `objects::link_signing`).

use chrono::{DateTime, Utc};
use rand::Rng;

use super::{Meta, MetaError, Result, from_ms, now_ms};

/// The associated-data name the secret is sealed under.
const SECRET: &str = "link_keys.secret";

#[derive(Clone)]
pub struct LinkKey {
    /// Public: it travels in links as `AWSAccessKeyId`.
    pub(crate) id: String,
    pub(crate) secret: Vec<u8>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) retired_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKey")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

fn new_key() -> (String, String) {
    let mut rng = rand::rng();
    let id: String = (0..18)
        .map(|_| {
            let c = rng.sample(rand::distr::Alphanumeric) as char;
            c.to_ascii_uppercase()
        })
        .collect();
    let secret: [u8; 32] = rng.random();
    (format!("RV{id}"), hex::encode(secret))
}

impl Meta {
    /// Every key not yet purged, newest first.
    pub(crate) async fn link_keys(&self) -> Result<Vec<LinkKey>> {
        let rows: Vec<(String, Option<String>, i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, secret_sealed, created_at, retired_at FROM link_keys \
             ORDER BY created_at DESC, id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for (id, sealed, created, retired) in rows {
            let corrupt = || MetaError::Corrupt(format!("link key {id}: secret"));
            let hex_secret =
                self.keys()
                    .unseal(SECRET, &id, sealed.as_deref().ok_or_else(corrupt)?)?;
            keys.push(LinkKey {
                secret: hex::decode(hex_secret).map_err(|_| corrupt())?,
                id,
                created_at: from_ms(created),
                retired_at: retired.map(from_ms),
            });
        }
        Ok(keys)
    }

    /// Makes sure a key exists that signs new links.
    pub(crate) async fn ensure_link_key(&self) -> Result<()> {
        let active: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM link_keys WHERE retired_at IS NULL")
                .fetch_one(self.pool())
                .await?;
        if active == 0 {
            self.insert_link_key().await?;
        }
        Ok(())
    }

    async fn insert_link_key(&self) -> Result<()> {
        let (id, secret) = new_key();
        sqlx::query(
            "INSERT INTO link_keys (id, secret, secret_sealed, created_at) VALUES ($1, '', $2, $3)",
        )
        .bind(&id)
        .bind(self.keys().seal(SECRET, &id, secret.as_bytes()))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        tracing::info!(key_id = %id, "new link key");
        Ok(())
    }

    /// Retires the signing key(s) and makes a new one; retired keys keep
    /// verifying the links they signed until those expire.
    pub async fn rotate_link_key(&self) -> Result<()> {
        sqlx::query("UPDATE link_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        self.insert_link_key().await
    }

    /// Forgets keys retired before `before`: no link they signed is valid any more.
    pub(crate) async fn purge_link_keys(&self, before: DateTime<Utc>) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM link_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
                .bind(before.timestamp_millis())
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected())
    }
}
