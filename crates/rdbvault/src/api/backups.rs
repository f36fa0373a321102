//! Backups: DCS `copy_instance`, `list_backup_records`, `delete_backup_file`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::SharedState;
use super::error::{ApiError, ErrorBody};
use super::extract::{self, Json, OptionalJson, Path, Query};
use super::instances::{dcs_time, find, parse_limit, parse_offset};
use crate::meta::{Backup, BackupStatus, MetaError, Mode, NewBackup};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/v2/{project_id}/instances/{instance_id}/backups",
            post(create_backup).get(list_backups),
        )
        .route(
            "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}",
            delete(delete_backup),
        )
}

/// DCS `BackupInstanceBody`; both fields optional, an empty body means defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupInstanceBody {
    /// Description, at most 128 characters.
    pub remark: Option<String>,
    /// `rdb` (default) or `aof`.
    pub backup_format: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CopyInstanceResponse {
    pub backup_id: String,
}

/// DCS `BackupRecordResponse`, plus `error_msg` and `source_node`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupRecord {
    pub backup_id: String,
    pub period: String,
    pub backup_name: String,
    pub instance_id: String,
    /// Stored bytes (0 until `succeed`).
    pub size: i64,
    /// `manual` or `auto`.
    pub backup_type: String,
    pub created_at: String,
    pub updated_at: String,
    /// Percentage with two decimals, e.g. `"42.50"`.
    pub progress: String,
    pub error_code: Option<String>,
    /// What went wrong, for a `failed` backup (rdbvault extension).
    pub error_msg: Option<String>,
    pub remark: Option<String>,
    /// `waiting`, `backuping`, `succeed`, `failed`, `expired`, `deleted`.
    pub status: String,
    /// `TRUE` or `FALSE`.
    pub is_support_restore: String,
    pub backup_format: String,
    pub execution_at: String,
    /// The node the snapshot was pulled from (rdbvault extension).
    pub source_node: Option<String>,
    /// What a running backup is doing now, e.g. `waiting for the fork`,
    /// `transferring` (rdbvault extension; null once it ended).
    pub stage: Option<String>,
}

impl From<&Backup> for BackupRecord {
    fn from(b: &Backup) -> Self {
        BackupRecord {
            backup_id: b.id.clone(),
            period: String::new(),
            backup_name: b.name.clone(),
            instance_id: b.instance_id.clone(),
            size: b.size,
            backup_type: b.backup_type.clone(),
            created_at: dcs_time(b.created_at),
            updated_at: dcs_time(b.updated_at),
            progress: b.progress(),
            error_code: b.error_code.clone(),
            error_msg: b.error_msg.clone(),
            remark: b.remark.clone(),
            status: b.status.as_str().into(),
            is_support_restore: if b.status == BackupStatus::Succeed {
                "TRUE"
            } else {
                "FALSE"
            }
            .into(),
            backup_format: b.backup_format.clone(),
            execution_at: b.started_at.map(dcs_time).unwrap_or_default(),
            source_node: b.source_node.clone(),
            stage: b.stage.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ListBackupRecordsResponse {
    pub total_num: usize,
    pub backup_record_response: Vec<BackupRecord>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListBackupsQuery {
    /// UTC, `yyyyMMddHHmmss`: only backups created at or after.
    pub begin_time: Option<String>,
    /// UTC, `yyyyMMddHHmmss`: only backups created at or before.
    pub end_time: Option<String>,
    /// >= 0.
    pub offset: Option<String>,
    /// 1 to 1000, default 10.
    pub limit: Option<String>,
}

fn parse_dcs_time(
    field: &'static str,
    raw: Option<&str>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let valid = raw.len() == 14 && raw.bytes().all(|b| b.is_ascii_digit());
    valid
        .then(|| NaiveDateTime::parse_from_str(raw, "%Y%m%d%H%M%S").ok())
        .flatten()
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!(
                    "{:?} is not a UTC time yyyyMMddHHmmss",
                    extract::truncated(raw)
                ),
            )
        })
}

/// A cluster is backed up only if its slots are all served and it has at
/// most 64 shards; said now rather than as a failed backup later.
async fn check_cluster(
    state: &SharedState,
    instance: &crate::meta::Instance,
) -> Result<(), ApiError> {
    use crate::replication::cluster::{self, TopologyError};
    let template = crate::replication::Endpoint::of(instance, &state.redis_tls);
    match cluster::discover(&template, &instance.addrs, state.probe_timeout()).await {
        Ok(_) => Ok(()),
        Err(TopologyError::Uncovered(n)) => Err(ApiError::ClusterIncomplete(n)),
        Err(TopologyError::TooManyShards(n)) => Err(ApiError::ClusterTooLarge(n)),
        Err(TopologyError::Conn(e)) => Err(ApiError::from_redis(e)),
        Err(e) => Err(ApiError::InstanceUnreachable(e.to_string())),
    }
}

/// Backup ids are UUIDs.
pub(crate) fn backup_id(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::InvalidBackupId(extract::truncated(raw)))
}

#[utoipa::path(post, path = "/v2/{project_id}/instances/{instance_id}/backups", tag = "backups",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body(content = BackupInstanceBody, description = "optional; an empty body means defaults"),
    responses((status = 200, body = CopyInstanceResponse), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn create_backup(
    State(state): State<SharedState>,
    Path((project_id, instance_id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<BackupInstanceBody>,
) -> Result<Json<CopyInstanceResponse>, ApiError> {
    let instance = find(&state, &project_id, &instance_id).await?;
    if let Some(remark) = &body.remark {
        let n = remark.chars().count();
        if n > 128 {
            return Err(ApiError::RemarkTooLong(n));
        }
    }
    match body.backup_format.as_deref() {
        None | Some("rdb") => {}
        Some("aof") => return Err(ApiError::FormatNotSupported("aof".into())),
        Some(other) => {
            return Err(ApiError::invalid(
                "backup_format",
                format!("{:?} is not one of rdb, aof", extract::truncated(other)),
            ));
        }
    }
    if instance.mode == Mode::Cluster {
        check_cluster(&state, &instance).await?;
    }
    let backup = state
        .meta
        .create_backup(NewBackup {
            instance_id: instance.id.clone(),
            project_id,
            backup_type: "manual".into(),
            backup_format: "rdb".into(),
            remark: body.remark,
        })
        .await
        .map_err(|e| match e {
            MetaError::Conflict => ApiError::InstanceBackingUp(instance.id.clone()),
            other => other.into(),
        })?;
    state.workers.wake();
    tracing::info!(backup_id = %backup.id, instance_id = %instance.id, "backup queued");
    Ok(Json(CopyInstanceResponse {
        backup_id: backup.id,
    }))
}

#[utoipa::path(get, path = "/v2/{project_id}/instances/{instance_id}/backups", tag = "backups",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ListBackupsQuery),
    responses((status = 200, body = ListBackupRecordsResponse), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list_backups(
    State(state): State<SharedState>,
    Path((project_id, instance_id)): Path<(String, String)>,
    Query(q): Query<ListBackupsQuery>,
) -> Result<Json<ListBackupRecordsResponse>, ApiError> {
    let begin = parse_dcs_time("begin_time", q.begin_time.as_deref())?;
    let end = parse_dcs_time("end_time", q.end_time.as_deref())?;
    if let (Some(b), Some(e)) = (begin, end)
        && b > e
    {
        return Err(ApiError::invalid(
            "begin_time",
            "begin_time is after end_time",
        ));
    }
    let offset = parse_offset(q.offset.as_deref())?;
    let limit = parse_limit(q.limit.as_deref(), 10, 1000)?;
    let instance = find(&state, &project_id, &instance_id).await?;
    // end_time names a second; include all of it.
    let end = end.map(|e| e + chrono::TimeDelta::milliseconds(999));
    let (total, backups) = state
        .meta
        .list_backups(&instance.id, begin, end, offset, limit)
        .await?;
    Ok(Json(ListBackupRecordsResponse {
        total_num: total,
        backup_record_response: backups.iter().map(BackupRecord::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}", tag = "backups",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path)),
    responses((status = 204, description = "files removed; the record stays, status deleted"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_backup(
    State(state): State<SharedState>,
    Path((project_id, instance_id, raw_backup_id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let backup = find_backup(&state, &project_id, &instance_id, &raw_backup_id).await?;
    if let Some(before) = state.meta.mark_backup_deleted(&backup.id).await? {
        if before.is_active() {
            state.workers.cancel(&backup.id);
        }
        state
            .objects
            .delete_prefix(&crate::jobs::backup::prefix(&backup))
            .await
            .map_err(|e| ApiError::DeleteFailed(e.to_string()))?;
        tracing::info!(backup_id = %backup.id, was = before.as_str(), "backup deleted");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A backup of the instance in the path, with a distinct error for each way it is not.
/// The common case costs one query: a backup of the instance and project in
/// the path proves the instance exists; the instance is looked up only to
/// tell the error cases apart.
pub(crate) async fn find_backup(
    state: &SharedState,
    project_id: &str,
    instance_id: &str,
    raw_backup_id: &str,
) -> Result<Backup, ApiError> {
    find_backup_with_files(state, project_id, instance_id, raw_backup_id)
        .await
        .map(|(b, _)| b)
}

/// [`find_backup`], with the backup's files, in one query on the common path.
pub(crate) async fn find_backup_with_files(
    state: &SharedState,
    project_id: &str,
    instance_id: &str,
    raw_backup_id: &str,
) -> Result<(Backup, Vec<crate::meta::BackupFile>), ApiError> {
    let instance_id = extract::instance_id(instance_id)?;
    let id = backup_id(raw_backup_id)?;
    match state.meta.backup_with_files(&id).await? {
        Some((b, files)) if b.project_id == project_id && b.instance_id == instance_id => {
            Ok((b, files))
        }
        other => {
            // Unknown instance first, as for every instance-scoped request.
            find(state, project_id, &instance_id).await?;
            match other {
                None => Err(ApiError::BackupNotFound(id)),
                Some((b, _)) if b.project_id != project_id => {
                    Err(ApiError::BackupOfOtherProject(id))
                }
                Some(_) => Err(ApiError::BackupOfOtherInstance(id)),
            }
        }
    }
}
