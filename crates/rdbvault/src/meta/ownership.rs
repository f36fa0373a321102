//! What the records own in the object store, for the sweep that looks for
//! objects nobody owns.

use std::collections::HashSet;

use super::{Meta, Result};

/// The objects the records own: the files of backups that keep them, and
/// everything under the prefix of a backup still running (its files are
/// stored before they are recorded).
#[derive(Debug, Default)]
pub struct Owned {
    keys: HashSet<String>,
    prefixes: Vec<String>,
}

impl Owned {
    pub fn owns(&self, key: &str) -> bool {
        self.keys.contains(key) || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

impl Meta {
    pub async fn owned_objects(&self) -> Result<Owned> {
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT f.object_key FROM backup_files f JOIN backups b ON b.id = f.backup_id \
             WHERE b.status IN ('waiting', 'backuping', 'succeed')",
        )
        .fetch_all(self.pool())
        .await?;
        let running: Vec<(String, String)> = sqlx::query_as(
            "SELECT instance_id, id FROM backups WHERE status IN ('waiting', 'backuping')",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(Owned {
            keys: keys.into_iter().collect(),
            prefixes: running
                .into_iter()
                .map(|(instance, backup)| crate::object_keys::prefix(&instance, &backup))
                .collect(),
        })
    }

    /// Multipart uploads recorded and not yet completed or aborted.
    pub async fn pending_upload_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM pending_uploads")
            .fetch_one(self.pool())
            .await?)
    }
}
