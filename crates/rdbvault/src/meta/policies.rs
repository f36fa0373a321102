//! Backup policies: one row per instance that has one.

use chrono::{DateTime, Utc};

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
