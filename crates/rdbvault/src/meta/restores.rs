//! Restores.
//!
//! Status moves only forward: `waiting → restoring → succeed | failed`,
//! every transition a conditional UPDATE on the status it leaves. A restore
//! and a backup of the same instance exclude each other, and a backup being
//! read by a restore cannot be deleted: [`Meta::create_restore`],
//! [`Meta::create_backup`] and [`Meta::mark_backup_deleted`] decide that in
//! transactions that first lock the rows they check (the instance, the
//! backup), so two nodes cannot both win.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::jobs::JobKind;
use super::{Meta, MetaError, Refusal, Result, from_ms, map_unique, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStatus {
    Waiting,
    Restoring,
    Succeed,
    Failed,
}

impl RestoreStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreStatus::Waiting => "waiting",
            RestoreStatus::Restoring => "restoring",
            RestoreStatus::Succeed => "succeed",
            RestoreStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<RestoreStatus> {
        [
            RestoreStatus::Waiting,
            RestoreStatus::Restoring,
            RestoreStatus::Succeed,
            RestoreStatus::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What happens to the target's existing data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// The target is flushed first (what DCS does).
    Replace,
    /// Keys are added; an existing key of the same name is overwritten (and counted).
    Merge,
}

/// How the keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMethod {
    /// The fastest way the target allows.
    Auto,
    /// The target loads the file itself, as a replica of rdbvault.
    Replicate,
    /// Pipelined `RESTORE` of each key's payload.
    Restore,
    /// Each value rebuilt with native commands (targets older than the backup).
    Commands,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),+ }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s,)+ }
            }
            fn parse(s: &str) -> Option<$t> {
                match s { $($s => Some(<$t>::$v),)+ _ => None }
            }
        }
    };
}

text_enum!(RestoreMode { Replace => "replace", Merge => "merge" });
text_enum!(RestoreMethod { Auto => "auto", Replicate => "replicate", Restore => "restore", Commands => "commands" });

/// How many keys went which way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCounts {
    pub restored: i64,
    pub rebuilt: i64,
    pub replaced: i64,
    pub skipped: i64,
    /// Why keys were skipped, e.g. `3 module values (graphdata)`.
    pub skipped_detail: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Restore {
    pub id: String,
    pub instance_id: String,
    pub target_instance_id: String,
    pub project_id: String,
    pub backup_id: String,
    pub name: String,
    pub remark: Option<String>,
    pub mode: RestoreMode,
    pub method: RestoreMethod,
    pub strict: bool,
    pub status: RestoreStatus,
    pub stage: Option<String>,
    pub method_used: Option<String>,
    pub progress_bp: Option<i64>,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub keys: KeyCounts,
    /// `replicate`: the listener the target follows until it is promoted back.
    pub replica_of: Option<String>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Restore {
    /// DCS `progress`: a percentage with two decimals, as text.
    pub fn progress(&self) -> String {
        let pct = match self.status {
            RestoreStatus::Succeed => 100.0,
            RestoreStatus::Waiting => 0.0,
            _ => self.progress_bp.unwrap_or(0).clamp(0, 9999) as f64 / 100.0,
        };
        format!("{pct:.2}")
    }
}

#[derive(Debug, Clone)]
pub struct NewRestore {
    pub instance_id: String,
    pub target_instance_id: String,
    pub project_id: String,
    pub backup_id: String,
    pub remark: Option<String>,
    pub mode: RestoreMode,
    pub method: RestoreMethod,
    pub strict: bool,
}

/// A running restore's progress, as the job reports it.
#[derive(Debug, Clone)]
pub struct RestoreProgress {
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    /// 0..=9999 while running; never lower than the last report.
    pub basis_points: i64,
    pub stage: String,
    pub keys: KeyCounts,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    instance_id: String,
    target_instance_id: String,
    project_id: String,
    backup_id: String,
    name: String,
    remark: Option<String>,
    mode: String,
    method: String,
    strict: i64,
    status: String,
    stage: Option<String>,
    method_used: Option<String>,
    progress_bp: Option<i64>,
    bytes_done: i64,
    bytes_total: Option<i64>,
    keys_restored: i64,
    keys_rebuilt: i64,
    keys_replaced: i64,
    keys_skipped: i64,
    skipped_detail: Option<String>,
    replica_of: Option<String>,
    error_code: Option<String>,
    error_msg: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
}

const COLUMNS: &str = "id, instance_id, target_instance_id, project_id, backup_id, name, remark, mode, \
    method, strict, status, stage, method_used, progress_bp, bytes_done, bytes_total, keys_restored, \
    keys_rebuilt, keys_replaced, keys_skipped, skipped_detail, replica_of, error_code, error_msg, \
    created_at, started_at, finished_at, updated_at";

impl TryFrom<Row> for Restore {
    type Error = MetaError;
    fn try_from(r: Row) -> Result<Restore> {
        let corrupt =
            |what: &str, v: &str| MetaError::Corrupt(format!("restore {}: {what} {v:?}", r.id));
        let status = RestoreStatus::parse(&r.status).ok_or_else(|| corrupt("status", &r.status))?;
        let mode = RestoreMode::parse(&r.mode).ok_or_else(|| corrupt("mode", &r.mode))?;
        let method = RestoreMethod::parse(&r.method).ok_or_else(|| corrupt("method", &r.method))?;
        Ok(Restore {
            status,
            mode,
            method,
            strict: r.strict != 0,
            keys: KeyCounts {
                restored: r.keys_restored,
                rebuilt: r.keys_rebuilt,
                replaced: r.keys_replaced,
                skipped: r.keys_skipped,
                skipped_detail: r.skipped_detail,
            },
            created_at: from_ms(r.created_at),
            started_at: r.started_at.map(from_ms),
            finished_at: r.finished_at.map(from_ms),
            updated_at: from_ms(r.updated_at),
            id: r.id,
            instance_id: r.instance_id,
            target_instance_id: r.target_instance_id,
            project_id: r.project_id,
            backup_id: r.backup_id,
            name: r.name,
            remark: r.remark,
            stage: r.stage,
            method_used: r.method_used,
            progress_bp: r.progress_bp,
            bytes_done: r.bytes_done,
            bytes_total: r.bytes_total,
            replica_of: r.replica_of,
            error_code: r.error_code,
            error_msg: r.error_msg,
        })
    }
}

/// Takes the row lock of an instance for the rest of the transaction, so
/// backups and restores of it are decided one at a time (PostgreSQL locks
/// the row; SQLite's first write takes the database's write lock).
pub(super) async fn lock_instance(conn: &mut sqlx::AnyConnection, id: &str) -> Result<()> {
    sqlx::query("UPDATE instances SET updated_at = updated_at WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Restores waiting or running into `instance_id`.
pub(super) async fn active_into(conn: &mut sqlx::AnyConnection, instance_id: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM restores WHERE target_instance_id = $1 AND status IN ('waiting', 'restoring')",
    )
    .bind(instance_id)
    .fetch_one(conn)
    .await?)
}

impl Meta {
    /// Records a restore as `waiting` and queues its job, atomically;
    /// refused while the target backs up or restores, or when the backup is
    /// not (or no longer) `succeed`.
    pub async fn create_restore(&self, new: NewRestore) -> Result<Restore> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let name = format!("restore_{}", from_ms(now).format("%Y%m%d%H%M%S"));
        let mut tx = self.pool().begin().await?;
        lock_instance(&mut tx, &new.target_instance_id).await?;
        let backing_up: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM backups WHERE instance_id = $1 AND status IN ('waiting', 'backuping')",
        )
        .bind(&new.target_instance_id)
        .fetch_one(&mut *tx)
        .await?;
        if backing_up > 0 {
            return Err(MetaError::Refused(Refusal::BackingUp));
        }
        if active_into(&mut tx, &new.target_instance_id).await? > 0 {
            return Err(MetaError::Refused(Refusal::Restoring));
        }
        // Locks the backup too: a delete waits for this to commit, then sees the restore.
        let readable = sqlx::query(
            "UPDATE backups SET updated_at = updated_at WHERE id = $1 AND status = 'succeed'",
        )
        .bind(&new.backup_id)
        .execute(&mut *tx)
        .await?;
        if readable.rows_affected() != 1 {
            return Err(MetaError::Refused(Refusal::BackupNotSucceeded));
        }
        sqlx::query(
            "INSERT INTO restores (id, instance_id, target_instance_id, project_id, backup_id, name, remark, \
             mode, method, strict, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'waiting', $11, $11)",
        )
        .bind(&id)
        .bind(&new.instance_id)
        .bind(&new.target_instance_id)
        .bind(&new.project_id)
        .bind(&new.backup_id)
        .bind(&name)
        .bind(new.remark.as_deref())
        .bind(new.mode.as_str())
        .bind(new.method.as_str())
        .bind(i64::from(new.strict))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| match map_unique(e) {
            MetaError::Conflict => MetaError::Refused(Refusal::Restoring),
            other => other,
        })?;
        Meta::enqueue_job(&mut tx, JobKind::Restore, &id, now).await?;
        tx.commit().await?;
        self.get_restore(&id)
            .await?
            .ok_or_else(|| MetaError::Corrupt("restore vanished".into()))
    }

    pub async fn get_restore(&self, id: &str) -> Result<Option<Restore>> {
        let sql = format!("SELECT {COLUMNS} FROM restores WHERE id = $1");
        let row: Option<Row> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(Restore::try_from).transpose()
    }

    /// Restores of an instance's backups or into it, created in `[begin,
    /// end]`, newest first, and their total.
    pub async fn list_restores(
        &self,
        instance_id: &str,
        begin: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<Restore>)> {
        let begin = begin.map_or(i64::MIN, |t| t.timestamp_millis());
        let end = end.map_or(i64::MAX, |t| t.timestamp_millis());
        let where_ = "WHERE (instance_id = $1 OR target_instance_id = $1) \
                      AND created_at >= $2 AND created_at <= $3";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM restores {where_}"))
            .bind(instance_id)
            .bind(begin)
            .bind(end)
            .fetch_one(self.pool())
            .await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM restores {where_} ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
        );
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(instance_id)
            .bind(begin)
            .bind(end)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await?;
        let restores = rows
            .into_iter()
            .map(Restore::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok((usize::try_from(total).unwrap_or(0), restores))
    }

    /// The instances among `ids` a restore is writing into now.
    pub async fn restoring_instances(&self, ids: &[String]) -> Result<Vec<String>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT target_instance_id FROM restores WHERE status IN ('waiting', 'restoring')",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().filter(|id| ids.contains(id)).collect())
    }

    /// `waiting → restoring`; false when it is no longer waiting.
    pub async fn start_restore(&self, id: &str, bytes_total: i64) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE restores SET status = 'restoring', bytes_total = $1, progress_bp = 0, started_at = $2, \
             updated_at = $2 WHERE id = $3 AND status = 'waiting'",
        )
        .bind(bytes_total)
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// What the restore runs as, and why (auto's choice, a fallback).
    pub async fn set_restore_method(&self, id: &str, method_used: &str) -> Result<()> {
        sqlx::query("UPDATE restores SET method_used = $1, updated_at = $2 WHERE id = $3")
            .bind(method_used)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// `replicate`: the address the target was told to replicate from
    /// (recorded before `REPLICAOF`, cleared once it is a master again), so
    /// that whoever recovers a restore whose node died can promote it back.
    pub async fn set_restore_replica_of(&self, id: &str, addr: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE restores SET replica_of = $1, updated_at = $2 WHERE id = $3")
            .bind(addr)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// What a running restore reports each second.
    pub async fn set_restore_progress(&self, id: &str, p: &RestoreProgress) -> Result<()> {
        sqlx::query(
            "UPDATE restores SET bytes_done = $1, bytes_total = $2, progress_bp = $3, stage = $4, \
             keys_restored = $5, keys_rebuilt = $6, keys_replaced = $7, keys_skipped = $8, \
             skipped_detail = $9, updated_at = $10 WHERE id = $11 AND status = 'restoring'",
        )
        .bind(p.bytes_done)
        .bind(p.bytes_total)
        .bind(p.basis_points)
        .bind(&p.stage)
        .bind(p.keys.restored)
        .bind(p.keys.rebuilt)
        .bind(p.keys.replaced)
        .bind(p.keys.skipped)
        .bind(p.keys.skipped_detail.as_deref())
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// `restoring → succeed`, with the final counts.
    pub async fn succeed_restore(&self, id: &str, keys: &KeyCounts) -> Result<bool> {
        self.end_restore(id, "succeed", None, keys, "status = 'restoring'")
            .await
    }

    /// `waiting | restoring → failed`, with the reason and what was written.
    pub async fn fail_restore(
        &self,
        id: &str,
        code: &str,
        msg: &str,
        keys: Option<&KeyCounts>,
    ) -> Result<bool> {
        match keys {
            Some(keys) => {
                self.end_restore(
                    id,
                    "failed",
                    Some((code, msg)),
                    keys,
                    "status IN ('waiting', 'restoring')",
                )
                .await
            }
            None => {
                let now = now_ms();
                let done = sqlx::query(
                    "UPDATE restores SET status = 'failed', error_code = $1, error_msg = $2, stage = NULL, \
                     finished_at = $3, updated_at = $3 WHERE id = $4 AND status IN ('waiting', 'restoring')",
                )
                .bind(code)
                .bind(msg)
                .bind(now)
                .bind(id)
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    }

    async fn end_restore(
        &self,
        id: &str,
        status: &str,
        error: Option<(&str, &str)>,
        keys: &KeyCounts,
        from: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let progress = if status == "succeed" {
            Some(10_000)
        } else {
            None
        };
        let sql = format!(
            "UPDATE restores SET status = $1, error_code = $2, error_msg = $3, stage = NULL, \
             progress_bp = COALESCE($4, progress_bp), keys_restored = $5, keys_rebuilt = $6, \
             keys_replaced = $7, keys_skipped = $8, skipped_detail = $9, finished_at = $10, \
             updated_at = $10 WHERE id = $11 AND {from}"
        );
        let done = sqlx::query(&sql)
            .bind(status)
            .bind(error.map(|e| e.0))
            .bind(error.map(|e| e.1))
            .bind(progress)
            .bind(keys.restored)
            .bind(keys.rebuilt)
            .bind(keys.replaced)
            .bind(keys.skipped)
            .bind(keys.skipped_detail.as_deref())
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
