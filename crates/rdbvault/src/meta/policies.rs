//! Backup policies (one row per instance that has one) and what the
//! scheduler asks of the automatic backups they make.

use chrono::{DateTime, Utc};

use super::backups::Backup;
use super::{Meta, MetaError, Result, from_ms, now_ms};
use crate::schedule::policy::{BackupType, Plan, Policy};

/// A policy as stored, with its record's identity and times.
#[derive(Debug, Clone)]
pub struct StoredPolicy {
    pub id: String,
    pub instance_id: String,
    pub policy: Policy,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    instance_id: String,
    id: String,
    backup_type: String,
    save_days: Option<i64>,
    backup_at: Option<String>,
    begin_at: Option<String>,
    timezone_offset: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "instance_id, id, backup_type, save_days, backup_at, begin_at, \
    timezone_offset, created_at, updated_at";

impl TryFrom<Row> for StoredPolicy {
    type Error = MetaError;
    fn try_from(r: Row) -> Result<StoredPolicy> {
        let corrupt =
            |what: &str| MetaError::Corrupt(format!("policy of {}: {what}", r.instance_id));
        let backup_type = match r.backup_type.as_str() {
            "auto" => BackupType::Auto,
            "manual" => BackupType::Manual,
            _ => return Err(corrupt("backup_type")),
        };
        let plan = match (&r.backup_at, &r.begin_at) {
            (Some(days), Some(window)) => {
                let days = days
                    .split(',')
                    .map(|d| d.parse::<u8>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| corrupt("backup_at"))?;
                Some(
                    Plan::stored(days, window, r.timezone_offset.clone())
                        .map_err(|e| corrupt(&e.to_string()))?,
                )
            }
            _ => None,
        };
        let save_days = r
            .save_days
            .map(|d| u32::try_from(d).map_err(|_| corrupt("save_days")))
            .transpose()?;
        Ok(StoredPolicy {
            id: r.id,
            instance_id: r.instance_id,
            policy: Policy {
                backup_type,
                save_days,
                plan,
            },
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

impl Meta {
    pub async fn get_policy(&self, instance_id: &str) -> Result<Option<StoredPolicy>> {
        let sql = format!("SELECT {COLUMNS} FROM backup_policies WHERE instance_id = $1");
        let row: Option<Row> = sqlx::query_as(&sql)
            .bind(instance_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(StoredPolicy::try_from).transpose()
    }

    /// Sets (or replaces) the policy of an instance.
    pub async fn set_policy(&self, instance_id: &str, policy: &Policy) -> Result<StoredPolicy> {
        let now = now_ms();
        let plan = policy.plan.as_ref();
        let days = plan.map(|p| {
            p.days
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(",")
        });
        let mut tx = self.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE backup_policies SET backup_type = $1, save_days = $2, period_type = $3, \
             backup_at = $4, begin_at = $5, timezone_offset = $6, updated_at = $7 WHERE instance_id = $8",
        )
        .bind(policy.backup_type.as_str())
        .bind(policy.save_days.map(i64::from))
        .bind(plan.map(|_| "weekly"))
        .bind(days.as_deref())
        .bind(plan.map(|p| p.window.to_string()))
        .bind(plan.and_then(|p| p.timezone_offset.clone()))
        .bind(now)
        .bind(instance_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO backup_policies (instance_id, id, backup_type, save_days, period_type, \
                 backup_at, begin_at, timezone_offset, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .bind(instance_id)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(policy.backup_type.as_str())
            .bind(policy.save_days.map(i64::from))
            .bind(plan.map(|_| "weekly"))
            .bind(days.as_deref())
            .bind(plan.map(|p| p.window.to_string()))
            .bind(plan.and_then(|p| p.timezone_offset.clone()))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get_policy(instance_id)
            .await?
            .ok_or_else(|| MetaError::Corrupt("policy vanished".into()))
    }

    /// Every automatic policy, for the scheduler.
    pub async fn auto_policies(&self) -> Result<Vec<StoredPolicy>> {
        let sql = format!("SELECT {COLUMNS} FROM backup_policies WHERE backup_type = 'auto'");
        let rows: Vec<Row> = sqlx::query_as(&sql).fetch_all(self.pool()).await?;
        rows.into_iter().map(StoredPolicy::try_from).collect()
    }
}

/// Whether the automatic backup of `instance_id` due on `due` was made
/// (whatever became of it), inside a transaction that locked the instance.
pub(super) async fn due_taken(
    conn: &mut sqlx::AnyConnection,
    instance_id: &str,
    due: &str,
) -> Result<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM backups WHERE instance_id = $1 AND due = $2")
            .bind(instance_id)
            .bind(due)
            .fetch_one(conn)
            .await?;
    Ok(n > 0)
}

impl Meta {
    /// Whether the automatic backup due on `due` was made.
    pub async fn has_due_backup(&self, instance_id: &str, due: &str) -> Result<bool> {
        let mut conn = self.pool().acquire().await?;
        due_taken(&mut conn, instance_id, due).await
    }

    /// Records an automatic backup that could not run in its window
    /// (`failed`, no job), unless that date has a record already.
    pub async fn record_missed_backup(
        &self,
        new: &super::NewBackup,
        code: &str,
        message: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let name = format!("backup_{}", from_ms(now).format("%Y%m%d%H%M%S"));
        let done = sqlx::query(
            "INSERT INTO backups (id, instance_id, project_id, name, backup_type, backup_format, status, \
             remark, period, due, error_code, error_msg, created_at, updated_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'failed', $7, $8, $9, $10, $11, $12, $12, $12) \
             ON CONFLICT DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&new.instance_id)
        .bind(&new.project_id)
        .bind(&name)
        .bind(&new.backup_type)
        .bind(&new.backup_format)
        .bind(new.remark.as_deref())
        .bind(new.period.as_deref())
        .bind(new.due.as_deref())
        .bind(code)
        .bind(message)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Automatic backups of `instance_id` that succeeded before `before`
    /// and that no restore is reading: now `expired`. Their files are the
    /// caller's to delete.
    pub async fn expire_backups(
        &self,
        instance_id: &str,
        before: DateTime<Utc>,
    ) -> Result<Vec<Backup>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM backups WHERE instance_id = $1 AND backup_type = 'auto' \
             AND status = 'succeed' AND created_at < $2",
        )
        .bind(instance_id)
        .bind(before.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        let mut expired = Vec::with_capacity(ids.len());
        for id in ids {
            // As a deletion: never while a restore reads it.
            let done = sqlx::query(
                "UPDATE backups SET status = 'expired', updated_at = $1 WHERE id = $2 AND status = 'succeed' \
                 AND NOT EXISTS (SELECT 1 FROM restores r WHERE r.backup_id = $2 \
                 AND r.status IN ('waiting', 'restoring'))",
            )
            .bind(now_ms())
            .bind(&id)
            .execute(self.pool())
            .await?;
            if done.rows_affected() == 1 {
                sqlx::query("UPDATE backup_files SET status = 'deleted' WHERE backup_id = $1")
                    .bind(&id)
                    .execute(self.pool())
                    .await?;
                if let Some(b) = self.get_backup_by_id(&id).await? {
                    expired.push(b);
                }
            }
        }
        Ok(expired)
    }
}
