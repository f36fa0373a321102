//! Backups: DCS `copy_instance`, `list_backup_records`, `delete_backup_file`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::common::{WindowQuery, dcs_time, find, find_backup, schema};
use super::error::ApiError;
use super::extract::{self, Json, OptionalJson, Path, Query};
use crate::meta::{Backup, BackupStatus, MetaError, Mode, NewBackup, Refusal};
use crate::object_keys::Format;

/// DCS `BackupInstanceBody`; both fields optional, an empty body means defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupInstanceBody {
    #[schema(schema_with = remark_schema)]
    pub(crate) remark: Option<String>,
    #[schema(schema_with = backup_format_schema)]
    pub(crate) backup_format: Option<String>,
}

/// A backup's or restore's `remark`, as [`check_remark`] reads it.
pub(crate) fn remark_schema() -> utoipa::openapi::schema::Object {
    let mut remark = schema::bounded(
        REMARK_MAX,
        true,
        "description, at most 128 characters, none of them U+0000",
    );
    remark.pattern = Some("^[^\\x00]*$".into());
    remark
}

fn backup_format_schema() -> utoipa::openapi::schema::Object {
    schema::one_of(
        &["rdb", "aof"],
        true,
        "`rdb` (default): the snapshot as the node sent it; or `aof`: the commands that rebuild it, as RESP",
    )
}

/// The longest `remark`, in characters.
pub(crate) const REMARK_MAX: usize = 128;

/// A `remark` of at most [`REMARK_MAX`] characters, without U+0000 (which
/// PostgreSQL cannot store in text: it was a 500 there, found by the fuzz
/// campaign).
pub(crate) fn check_remark(remark: Option<&str>) -> Result<(), ApiError> {
    let Some(remark) = remark else { return Ok(()) };
    let n = remark.chars().count();
    if n > REMARK_MAX {
        return Err(ApiError::RemarkTooLong(n));
    }
    if remark.contains('\0') {
        return Err(ApiError::invalid("remark", "U+0000 is not allowed"));
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CopyInstanceResponse {
    pub(crate) backup_id: String,
}

/// DCS `BackupRecordResponse`, plus `error_msg` and `source_node`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BackupRecord {
    pub(crate) backup_id: String,
    pub(crate) period: String,
    pub(crate) backup_name: String,
    pub(crate) instance_id: String,
    /// Stored bytes (0 until `succeed`).
    pub(crate) size: i64,
    /// `manual` or `auto`.
    pub(crate) backup_type: String,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    /// Percentage with two decimals, e.g. `"42.50"`.
    pub(crate) progress: String,
    pub(crate) error_code: Option<String>,
    /// What went wrong, for a `failed` backup (rdbvault extension).
    pub(crate) error_msg: Option<String>,
    pub(crate) remark: Option<String>,
    /// `waiting`, `backuping`, `succeed`, `failed`, `expired`, `deleted`.
    pub(crate) status: String,
    /// `TRUE` or `FALSE`.
    pub(crate) is_support_restore: String,
    pub(crate) backup_format: String,
    pub(crate) execution_at: String,
    /// The node the snapshot was pulled from (rdbvault extension).
    pub(crate) source_node: Option<String>,
    /// What a running backup is doing now, e.g. `waiting for the fork`,
    /// `transferring` (rdbvault extension; null once it ended).
    pub(crate) stage: Option<String>,
}

impl From<&Backup> for BackupRecord {
    fn from(b: &Backup) -> Self {
        BackupRecord {
            backup_id: b.id.clone(),
            period: b.period.clone().unwrap_or_default(),
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
pub(crate) struct ListBackupRecordsResponse {
    pub(crate) total_num: usize,
    pub(crate) backup_record_response: Vec<BackupRecord>,
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

#[utoipa::path(post, path = "/v2/{project_id}/instances/{instance_id}/backups", tag = "backups",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body(content = Option<BackupInstanceBody>, description = "optional; an empty body means defaults"),
    responses((status = 200, body = CopyInstanceResponse)))]
pub(crate) async fn create_backup(
    State(state): State<SharedState>,
    Path((project_id, instance_id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<BackupInstanceBody>,
) -> Result<Json<CopyInstanceResponse>, ApiError> {
    let instance = find(&state, &project_id, &instance_id).await?;
    check_remark(body.remark.as_deref())?;
    let format = match body.backup_format.as_deref() {
        None => Format::Rdb,
        Some(given) => Format::parse(given).ok_or_else(|| {
            ApiError::invalid(
                "backup_format",
                format!("{:?} is not one of rdb, aof", extract::truncated(given)),
            )
        })?,
    };
    if instance.mode == Mode::Cluster {
        check_cluster(&state, &instance).await?;
    }
    crate::quota::Quota::from_config(&state.config)
        .check(&state.meta, &project_id)
        .await??;
    let backup = state
        .meta
        .create_backup(NewBackup {
            instance_id: instance.id.clone(),
            project_id,
            backup_type: "manual".into(),
            backup_format: format.as_str().into(),
            remark: body.remark,
            period: None,
            due: None,
        })
        .await
        .map_err(|e| match e {
            MetaError::Conflict => ApiError::InstanceBackingUp(instance.id.clone()),
            MetaError::Refused(Refusal::Restoring) => {
                ApiError::InstanceRestoring(instance.id.clone())
            }
            other => other.into(),
        })?;
    state.workers.wake();
    tracing::info!(backup_id = %backup.id, instance_id = %instance.id, "backup queued");
    Ok(Json(CopyInstanceResponse {
        backup_id: backup.id,
    }))
}

#[utoipa::path(get, path = "/v2/{project_id}/instances/{instance_id}/backups", tag = "backups",
    params(("project_id" = String, Path), ("instance_id" = String, Path), WindowQuery),
    responses((status = 200, body = ListBackupRecordsResponse)))]
pub(crate) async fn list_backups(
    State(state): State<SharedState>,
    Path((project_id, instance_id)): Path<(String, String)>,
    Query(q): Query<WindowQuery>,
) -> Result<Json<ListBackupRecordsResponse>, ApiError> {
    let w = q.window()?;
    let instance = find(&state, &project_id, &instance_id).await?;
    let (total, backups) = state
        .meta
        .list_backups(&instance.id, w.begin, w.end, w.offset, w.limit)
        .await?;
    Ok(Json(ListBackupRecordsResponse {
        total_num: total,
        backup_record_response: backups.iter().map(BackupRecord::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}", tag = "backups",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path)),
    responses((status = 204, description = "files removed; the record stays, status deleted")))]
pub(crate) async fn delete_backup(
    State(state): State<SharedState>,
    Path((project_id, instance_id, raw_backup_id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let backup = find_backup(&state, &project_id, &instance_id, &raw_backup_id).await?;
    let marked = state
        .meta
        .mark_backup_deleted(&backup.id)
        .await
        .map_err(|e| match e {
            MetaError::Refused(Refusal::BackupInRestore) => {
                ApiError::BackupInRestore(backup.id.clone())
            }
            other => other.into(),
        })?;
    if let Some(before) = marked {
        if before.is_active() {
            state.workers.cancel(&backup.id);
        }
        state
            .objects
            .delete_prefix(&crate::object_keys::backup_prefix(&backup))
            .await
            .map_err(|e| ApiError::DeleteFailed(e.to_string()))?;
        tracing::info!(backup_id = %backup.id, was = before.as_str(), "backup deleted");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
