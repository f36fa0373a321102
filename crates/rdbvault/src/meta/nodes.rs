//! The nodes sharing this metadata store: each reports itself when it
//! starts and then with every recovery round, so a node can tell which
//! others are alive.

use chrono::{DateTime, Utc};

use super::{Meta, Result, from_ms, now_ms};

/// Another node, as it last reported itself.
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: String,
    pub storage: String,
    pub shared_data_dir: bool,
    pub seen_at: DateTime<Utc>,
}

impl Meta {
    /// Records this node (or renews its record).
    pub async fn report_node(&self, id: &str, storage: &str, shared_data_dir: bool) -> Result<()> {
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE nodes SET storage = $1, shared_data_dir = $2, seen_at = $3 WHERE id = $4",
        )
        .bind(storage)
        .bind(i64::from(shared_data_dir))
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO nodes (id, storage, shared_data_dir, started_at, seen_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(storage)
            .bind(i64::from(shared_data_dir))
            .bind(now)
            .execute(self.pool())
            .await?;
        }
        Ok(())
    }

    /// A node stopping cleanly says so: it is no longer counted alive
    /// (by the store check of a starting node, by `keys rotate`).
    pub async fn leave_node(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE nodes SET seen_at = 0 WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The other nodes seen since `since`.
    pub async fn live_peers(&self, id: &str, since: DateTime<Utc>) -> Result<Vec<Peer>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT id, storage, shared_data_dir, seen_at FROM nodes WHERE id <> $1 AND seen_at >= $2 \
             ORDER BY id",
        )
        .bind(id)
        .bind(since.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, storage, shared, seen)| Peer {
                id,
                storage,
                shared_data_dir: shared != 0,
                seen_at: from_ms(seen),
            })
            .collect())
    }
}
