//! Multipart uploads in flight (see `migrations/0004_pending_uploads.sql`).

use super::{Meta, Result, now_ms};

#[derive(Debug, Clone)]
pub struct PendingUpload {
    pub(crate) upload_id: String,
    pub(crate) backup_id: String,
    pub(crate) object_key: String,
}

impl Meta {
    pub(crate) async fn add_pending_upload(
        &self,
        upload_id: &str,
        backup_id: &str,
        object_key: &str,
    ) -> Result<()> {
        sqlx::query("INSERT INTO pending_uploads (upload_id, backup_id, object_key, created_at) VALUES ($1, $2, $3, $4)")
            .bind(upload_id)
            .bind(backup_id)
            .bind(object_key)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub(crate) async fn remove_pending_upload(&self, upload_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM pending_uploads WHERE upload_id = $1")
            .bind(upload_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Uploads whose backup is no longer waiting or running: nobody will
    /// complete them, so they are to be aborted.
    pub(crate) async fn abandoned_uploads(&self) -> Result<Vec<PendingUpload>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT p.upload_id, p.backup_id, p.object_key FROM pending_uploads p \
             LEFT JOIN backups b ON b.id = p.backup_id \
             WHERE b.id IS NULL OR b.status NOT IN ('waiting', 'backuping') ORDER BY p.created_at",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(upload_id, backup_id, object_key)| PendingUpload {
                upload_id,
                backup_id,
                object_key,
            })
            .collect())
    }
}
