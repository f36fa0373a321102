//! Backups and their files.
//!
//! Status moves only forward: `waiting → backuping → succeed | failed`, and
//! `deleted` from anywhere. Every transition is a conditional UPDATE on the
//! expected current status, so a worker finishing a backup that was deleted
//! meanwhile cannot resurrect it.

use chrono::{DateTime, Utc};

use super::jobs::JobKind;
use super::{Meta, MetaError, Result, from_ms, map_unique, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupStatus {
    Waiting,
    Backuping,
    Succeed,
    Failed,
    Expired,
    Deleted,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Waiting => "waiting",
            BackupStatus::Backuping => "backuping",
            BackupStatus::Succeed => "succeed",
            BackupStatus::Failed => "failed",
            BackupStatus::Expired => "expired",
            BackupStatus::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Option<BackupStatus> {
        Some(match s {
            "waiting" => BackupStatus::Waiting,
            "backuping" => BackupStatus::Backuping,
            "succeed" => BackupStatus::Succeed,
            "failed" => BackupStatus::Failed,
            "expired" => BackupStatus::Expired,
            "deleted" => BackupStatus::Deleted,
            _ => return None,
        })
    }

    pub fn is_active(self) -> bool {
        matches!(self, BackupStatus::Waiting | BackupStatus::Backuping)
    }
}

#[derive(Debug, Clone)]
pub struct Backup {
    pub id: String,
    pub instance_id: String,
    pub project_id: String,
    pub name: String,
    pub backup_type: String,
    pub backup_format: String,
    pub status: BackupStatus,
    pub remark: Option<String>,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub size: i64,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub source_node: Option<String>,
    /// What a running backup is doing now (rdbvault extension).
    pub stage: Option<String>,
    /// Progress in basis points as the job last reported it.
    pub progress_bp: Option<i64>,
    /// An automatic backup's window (`02:00-03:00`, DCS `period`).
    pub period: Option<String>,
    /// An automatic backup's due date (the policy's local date).
    pub due: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Backup {
    /// DCS `progress`: a percentage with two decimals, as text.
    pub fn progress(&self) -> String {
        let pct = match self.status {
            BackupStatus::Succeed => 100.0,
            BackupStatus::Waiting => 0.0,
            _ => self.progress_bp.unwrap_or(0).clamp(0, 9999) as f64 / 100.0,
        };
        format!("{pct:.2}")
    }
}

#[derive(Debug, Clone)]
pub struct BackupFile {
    pub backup_id: String,
    pub file_name: String,
    pub object_key: String,
    pub slots: Option<String>,
    pub source_addr: String,
    pub size: i64,
    pub sha256: Option<String>,
    pub rdb_version: Option<i64>,
    pub redis_version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewBackup {
    pub instance_id: String,
    pub project_id: String,
    pub backup_type: String,
    pub backup_format: String,
    pub remark: Option<String>,
    /// Automatic backups: the window and the due date (one per date).
    pub period: Option<String>,
    pub due: Option<String>,
}

/// A running backup's progress, as the job reports it.
#[derive(Debug, Clone)]
pub struct ProgressReport {
    pub bytes_done: i64,
    /// Announced or estimated; `None` while unknown.
    pub bytes_total: Option<i64>,
    /// 0..=9999 while running; never lower than the last report.
    pub basis_points: i64,
    pub stage: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    instance_id: String,
    project_id: String,
    name: String,
    backup_type: String,
    backup_format: String,
    status: String,
    remark: Option<String>,
    bytes_done: i64,
    bytes_total: Option<i64>,
    size: i64,
    error_code: Option<String>,
    error_msg: Option<String>,
    source_node: Option<String>,
    stage: Option<String>,
    progress_bp: Option<i64>,
    period: Option<String>,
    due: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
}

impl TryFrom<Row> for Backup {
    type Error = MetaError;
    fn try_from(r: Row) -> Result<Backup> {
        let status = BackupStatus::parse(&r.status)
            .ok_or_else(|| MetaError::Corrupt(format!("backup {}: status {:?}", r.id, r.status)))?;
        Ok(Backup {
            status,
            created_at: from_ms(r.created_at),
            started_at: r.started_at.map(from_ms),
            finished_at: r.finished_at.map(from_ms),
            updated_at: from_ms(r.updated_at),
            id: r.id,
            instance_id: r.instance_id,
            project_id: r.project_id,
            name: r.name,
            backup_type: r.backup_type,
            backup_format: r.backup_format,
            remark: r.remark,
            bytes_done: r.bytes_done,
            bytes_total: r.bytes_total,
            size: r.size,
            error_code: r.error_code,
            error_msg: r.error_msg,
            source_node: r.source_node,
            stage: r.stage,
            progress_bp: r.progress_bp,
            period: r.period,
            due: r.due,
        })
    }
}

#[derive(sqlx::FromRow)]
struct JoinRow {
    #[sqlx(flatten)]
    backup: Row,
    f_file_name: Option<String>,
    f_object_key: Option<String>,
    f_slots: Option<String>,
    f_source_addr: Option<String>,
    f_size: Option<i64>,
    f_sha256: Option<String>,
    f_rdb_version: Option<i64>,
    f_redis_version: Option<String>,
}

const COLUMNS: &str = "id, instance_id, project_id, name, backup_type, backup_format, status, remark, \
    bytes_done, bytes_total, size, error_code, error_msg, source_node, stage, progress_bp, period, due, \
    created_at, started_at, finished_at, updated_at";

/// What a project's backups hold: those not deleted, expired or failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub backups: u64,
    /// Stored bytes of the finished ones.
    pub bytes: u64,
}

impl Meta {
    pub async fn project_usage(&self, project_id: &str) -> Result<Usage> {
        let (backups, bytes): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM backups \
             WHERE project_id = $1 AND status NOT IN ('deleted', 'expired', 'failed')",
        )
        .bind(project_id)
        .fetch_one(self.pool())
        .await?;
        Ok(Usage {
            backups: u64::try_from(backups).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
        })
    }

    /// Records a new backup as `waiting` and queues its job, atomically.
    /// `Conflict` when the instance already has a waiting or running
    /// backup, `Refused(Restoring)` while a restore writes into it.
    pub async fn create_backup(&self, new: NewBackup) -> Result<Backup> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let name = format!("backup_{}", from_ms(now).format("%Y%m%d%H%M%S"));
        let mut tx = self.pool().begin().await?;
        super::restores::lock_instance(&mut tx, &new.instance_id).await?;
        if super::restores::active_into(&mut tx, &new.instance_id).await? > 0 {
            return Err(MetaError::Refused(super::Refusal::Restoring));
        }
        if let Some(due) = &new.due
            && super::policies::due_taken(&mut tx, &new.instance_id, due).await?
        {
            return Err(MetaError::Refused(super::Refusal::AlreadyDue));
        }
        sqlx::query(
            "INSERT INTO backups (id, instance_id, project_id, name, backup_type, backup_format, status, \
             remark, period, due, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'waiting', $7, $9, $10, $8, $8)",
        )
        .bind(&id)
        .bind(&new.instance_id)
        .bind(&new.project_id)
        .bind(&name)
        .bind(&new.backup_type)
        .bind(&new.backup_format)
        .bind(new.remark.as_deref())
        .bind(now)
        .bind(new.period.as_deref())
        .bind(new.due.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(map_unique)?;
        Meta::enqueue_job(&mut tx, JobKind::Backup, &id, now).await?;
        tx.commit().await?;
        self.get_backup_by_id(&id)
            .await?
            .ok_or_else(|| MetaError::Corrupt("backup vanished".into()))
    }

    pub async fn get_backup_by_id(&self, id: &str) -> Result<Option<Backup>> {
        let sql = format!("SELECT {COLUMNS} FROM backups WHERE id = $1");
        let row: Option<Row> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(Backup::try_from).transpose()
    }

    /// Backups of an instance created in `[begin, end]`, newest first, and their total.
    pub async fn list_backups(
        &self,
        instance_id: &str,
        begin: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<Backup>)> {
        let begin = begin.map_or(i64::MIN, |t| t.timestamp_millis());
        let end = end.map_or(i64::MAX, |t| t.timestamp_millis());
        let where_ = "WHERE instance_id = $1 AND created_at >= $2 AND created_at <= $3";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM backups {where_}"))
            .bind(instance_id)
            .bind(begin)
            .bind(end)
            .fetch_one(self.pool())
            .await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM backups {where_} ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
        );
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(instance_id)
            .bind(begin)
            .bind(end)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await?;
        let backups = rows
            .into_iter()
            .map(Backup::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok((usize::try_from(total).unwrap_or(0), backups))
    }

    /// `waiting → backuping`; false when the backup is no longer waiting (deleted).
    pub async fn start_backup(
        &self,
        id: &str,
        source_node: &str,
        bytes_total: Option<i64>,
    ) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE backups SET status = 'backuping', source_node = $1, bytes_total = $2, started_at = $3, \
             updated_at = $3 WHERE id = $4 AND status = 'waiting'",
        )
        .bind(source_node)
        .bind(bytes_total)
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// What a running backup reports each second (and on its stage changes).
    pub async fn set_backup_progress(&self, id: &str, progress: &ProgressReport) -> Result<()> {
        sqlx::query(
            "UPDATE backups SET bytes_done = $1, bytes_total = $2, progress_bp = $3, stage = $4, \
             updated_at = $5 WHERE id = $6 AND status = 'backuping'",
        )
        .bind(progress.bytes_done)
        .bind(progress.bytes_total)
        .bind(progress.basis_points)
        .bind(&progress.stage)
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Stored bytes per byte of `used_memory` in the instance's last
    /// successful RDB backup: how big its next diskless transfer will likely
    /// be. AOF backups are left out: they store commands, not the RDB bytes
    /// a transfer moves (and their progress counts).
    pub async fn last_rdb_ratio(&self, instance_id: &str) -> Result<Option<f64>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT size, used_memory FROM backups WHERE instance_id = $1 AND status = 'succeed' \
             AND backup_format = 'rdb' AND used_memory > 0 AND size > 0 \
             ORDER BY finished_at DESC LIMIT 1",
        )
        .bind(instance_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(size, used)| size as f64 / used as f64))
    }

    /// Records a stored, verified file of a backup.
    pub async fn add_backup_file(&self, f: &BackupFile) -> Result<()> {
        sqlx::query(
            "INSERT INTO backup_files (backup_id, file_name, object_key, slots, source_addr, size, sha256, \
             rdb_version, redis_version, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'stored', $10)",
        )
        .bind(&f.backup_id)
        .bind(&f.file_name)
        .bind(&f.object_key)
        .bind(f.slots.as_deref())
        .bind(&f.source_addr)
        .bind(f.size)
        .bind(f.sha256.as_deref())
        .bind(f.rdb_version)
        .bind(f.redis_version.as_deref())
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(map_unique)?;
        Ok(())
    }

    /// A backup and its files in one query: the hot path of ListBackupFileLinks
    /// and of every download.
    pub async fn backup_with_files(&self, id: &str) -> Result<Option<(Backup, Vec<BackupFile>)>> {
        let columns: String = COLUMNS
            .split(", ")
            .map(|c| format!("b.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, f.file_name AS f_file_name, f.object_key AS f_object_key, f.slots AS f_slots, \
             f.source_addr AS f_source_addr, f.size AS f_size, f.sha256 AS f_sha256, f.rdb_version AS f_rdb_version, \
             f.redis_version AS f_redis_version \
             FROM backups b LEFT JOIN backup_files f ON f.backup_id = b.id WHERE b.id = $1 ORDER BY f.file_name"
        );
        let rows: Vec<JoinRow> = sqlx::query_as(&sql).bind(id).fetch_all(self.pool()).await?;
        let mut files = Vec::with_capacity(rows.len());
        let mut backup = None;
        for r in rows {
            if let (Some(file_name), Some(object_key), Some(source_addr), Some(size)) =
                (r.f_file_name, r.f_object_key, r.f_source_addr, r.f_size)
            {
                files.push(BackupFile {
                    backup_id: r.backup.id.clone(),
                    file_name,
                    object_key,
                    slots: r.f_slots,
                    source_addr,
                    size,
                    sha256: r.f_sha256,
                    rdb_version: r.f_rdb_version,
                    redis_version: r.f_redis_version,
                });
            }
            if backup.is_none() {
                backup = Some(Backup::try_from(r.backup)?);
            }
        }
        Ok(backup.map(|b| (b, files)))
    }

    /// `backuping → succeed`; false when the backup was deleted meanwhile.
    /// `used_memory`: the source's (summed over shards) when it was taken.
    pub async fn succeed_backup(&self, id: &str, size: i64, used_memory: i64) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE backups SET status = 'succeed', size = $1, bytes_done = $1, used_memory = $2, \
             stage = NULL, progress_bp = 10000, finished_at = $3, updated_at = $3 \
             WHERE id = $4 AND status = 'backuping'",
        )
        .bind(size)
        .bind(used_memory)
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `waiting | backuping → failed`, with the reason.
    pub async fn fail_backup(&self, id: &str, code: &str, msg: &str) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE backups SET status = 'failed', error_code = $1, error_msg = $2, stage = NULL, \
             finished_at = $3, updated_at = $3 WHERE id = $4 AND status IN ('waiting', 'backuping')",
        )
        .bind(code)
        .bind(msg)
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a backup deleted (its files are removed by the caller) and
    /// returns the status it had; `None` when it was already deleted;
    /// `Refused(BackupInRestore)` while a restore reads it.
    pub async fn mark_backup_deleted(&self, id: &str) -> Result<Option<BackupStatus>> {
        let Some(before) = self.get_backup_by_id(id).await? else {
            return Ok(None);
        };
        if before.status == BackupStatus::Deleted {
            return Ok(None);
        }
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE backups SET status = 'deleted', updated_at = $1, finished_at = COALESCE(finished_at, $1) \
             WHERE id = $2 AND status = $3 AND NOT EXISTS (SELECT 1 FROM restores r \
             WHERE r.backup_id = $2 AND r.status IN ('waiting', 'restoring'))",
        )
        .bind(now)
        .bind(id)
        .bind(before.status.as_str())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            let reading: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM restores WHERE backup_id = $1 AND status IN ('waiting', 'restoring')",
            )
            .bind(id)
            .fetch_one(self.pool())
            .await?;
            if reading > 0 {
                return Err(MetaError::Refused(super::Refusal::BackupInRestore));
            }
            // The status moved under us (a worker finished); decide again.
            return Box::pin(self.mark_backup_deleted(id)).await;
        }
        sqlx::query("UPDATE backup_files SET status = 'deleted' WHERE backup_id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        self.cancel_queued_jobs(id).await?;
        Ok(Some(before.status))
    }
}
