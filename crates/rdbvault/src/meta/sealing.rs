//! Which master key seals the stored secrets, sealing what an earlier
//! release kept in plaintext, and re-sealing everything on a key rotation.

use super::{Backend, Meta, Result, now_ms};
use crate::master_key::{KeyError, Keyring};

/// Every sealed column: (table, sealed column, associated-data name).
const SEALED: [(&str, &str, &str); 2] = [
    ("instances", "password_sealed", "instances.password"),
    ("link_keys", "secret_sealed", "link_keys.secret"),
];

impl Meta {
    pub(crate) fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// The first node to start records its key; every later start must
    /// hold the recorded one.
    pub(super) async fn adopt_master_key(mut self) -> Result<Meta> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sealing (only_row, key_id, updated_at) VALUES (1, $1, $2) \
             ON CONFLICT (only_row) DO NOTHING",
        )
        .bind(self.keys.id())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let recorded: String = sqlx::query_scalar("SELECT key_id FROM sealing WHERE only_row = 1")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        self.keys = self
            .keys
            .adopt(&recorded)
            .ok_or_else(|| KeyError::WrongKey {
                sealed_with: recorded,
                ours: self.keys.id().to_string(),
            })?;
        self.seal_plaintext().await?;
        Ok(self)
    }

    /// Seals the passwords and link keys stored in plaintext before secrets
    /// were sealed, and empties their plaintext columns.
    async fn seal_plaintext(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let passwords: Vec<(String, String)> =
            sqlx::query_as("SELECT id, password FROM instances WHERE password IS NOT NULL")
                .fetch_all(&mut *tx)
                .await?;
        for (id, password) in &passwords {
            let sealed = self
                .keys
                .seal("instances.password", id, password.as_bytes());
            sqlx::query("UPDATE instances SET password_sealed = $1, password = NULL WHERE id = $2")
                .bind(sealed)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let secrets: Vec<(String, String)> =
            sqlx::query_as("SELECT id, secret FROM link_keys WHERE secret <> ''")
                .fetch_all(&mut *tx)
                .await?;
        for (id, secret) in &secrets {
            let sealed = self.keys.seal("link_keys.secret", id, secret.as_bytes());
            sqlx::query("UPDATE link_keys SET secret_sealed = $1, secret = '' WHERE id = $2")
                .bind(sealed)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let count = passwords.len() + secrets.len();
        if count > 0 {
            if self.backend == Backend::Sqlite {
                // The WAL still holds the pages written before; fold it into
                // the (securely deleted) database file and empty it.
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&self.pool)
                    .await?;
            }
            tracing::warn!(
                count,
                key_id = self.keys.id(),
                "secrets kept in plaintext by an earlier release are now sealed with the master key"
            );
        }
        Ok(())
    }

    /// Re-seals every secret with `next` in one transaction and records it
    /// as the key in use; the returned handle seals with it.
    pub async fn reseal(&self, next: &Keyring) -> Result<(Meta, usize)> {
        let mut tx = self.pool.begin().await?;
        let mut count = 0;
        for (table, column, name) in SEALED {
            let rows: Vec<(String, String)> = sqlx::query_as(&format!(
                "SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL"
            ))
            .fetch_all(&mut *tx)
            .await?;
            for (id, sealed) in rows {
                let plain = self.keys.unseal(name, &id, &sealed)?;
                sqlx::query(&format!("UPDATE {table} SET {column} = $1 WHERE id = $2"))
                    .bind(next.seal(name, &id, &plain))
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                count += 1;
            }
        }
        sqlx::query("UPDATE sealing SET key_id = $1, updated_at = $2 WHERE only_row = 1")
            .bind(next.id())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let meta = Meta {
            pool: self.pool.clone(),
            backend: self.backend,
            keys: next.clone(),
        };
        Ok((meta, count))
    }
}
