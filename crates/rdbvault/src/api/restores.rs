//! Restores: DCS `restore_instance` and `list_restore_records`, with
//! rdbvault's extensions to the body (`target_instance_id`, `mode`,
//! `method`, `strict`) and to the record (how each key was written).

use std::collections::HashMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::common::{WindowQuery, dcs_time, find, find_backup, schema};
use super::error::ApiError;
use super::extract::{self, Json, Path, Query, UUID_PATTERN};
use crate::meta::{
    BackupStatus, MetaError, Mode, NewRestore, Refusal, Restore, RestoreMethod, RestoreMode,
};

/// DCS `RestoreInstanceBody`, and rdbvault's extensions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreInstanceBody {
    #[schema(schema_with = backup_id_schema)]
    pub(crate) backup_id: String,
    #[schema(schema_with = super::backups::remark_schema)]
    pub(crate) remark: Option<String>,
    #[schema(schema_with = target_schema)]
    pub(crate) target_instance_id: Option<String>,
    #[schema(schema_with = mode_schema)]
    pub(crate) mode: Option<String>,
    #[schema(schema_with = method_schema)]
    pub(crate) method: Option<String>,
    /// Fail on a value that cannot be written instead of skipping and
    /// counting it (default false).
    pub(crate) strict: Option<bool>,
}

fn backup_id_schema() -> utoipa::openapi::schema::Object {
    schema::text(
        UUID_PATTERN,
        false,
        "the backup to restore: a `succeed` backup of the instance in the path",
    )
}

fn target_schema() -> utoipa::openapi::schema::Object {
    schema::text(
        UUID_PATTERN,
        true,
        "restore into this registered instance of the same project instead of the one in the path \
         (rdbvault extension)",
    )
}

fn mode_schema() -> utoipa::openapi::schema::Object {
    schema::one_of(
        &["replace", "merge"],
        true,
        "`replace` (default: the target is flushed first, as DCS does) or `merge` (keys are added; \
         existing keys of the same name are overwritten)",
    )
}

fn method_schema() -> utoipa::openapi::schema::Object {
    schema::one_of(
        &["auto", "replicate", "restore", "commands"],
        true,
        "`auto` (default), `replicate` (a `single` or `ha` target, `replace` mode), `restore` or \
         `commands` (rdbvault extension)",
    )
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RestoreInstanceResponse {
    pub(crate) restore_id: String,
}

/// DCS `InstanceRestoreInfo`, plus what rdbvault knows of how it went.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RestoreRecord {
    pub(crate) restore_id: String,
    pub(crate) restore_name: String,
    pub(crate) restore_remark: Option<String>,
    pub(crate) backup_id: String,
    pub(crate) backup_name: String,
    pub(crate) backup_remark: Option<String>,
    /// `waiting`, `restoring`, `succeed` or `failed`.
    pub(crate) status: String,
    /// Percentage with two decimals, e.g. `"42.50"`.
    pub(crate) progress: String,
    pub(crate) created_at: String,
    /// When it ended (or last changed, while it runs).
    pub(crate) updated_at: String,
    pub(crate) error_code: Option<String>,
    /// What went wrong, with the byte offset where known (rdbvault extension).
    pub(crate) error_msg: Option<String>,
    /// The instance written into (rdbvault extension).
    pub(crate) target_instance_id: String,
    /// `replace` or `merge` (rdbvault extension).
    pub(crate) mode: RestoreMode,
    /// As asked (rdbvault extension).
    pub(crate) method: RestoreMethod,
    /// What ran, and why when `auto` chose it or fell back (rdbvault extension).
    pub(crate) method_used: Option<String>,
    /// What a running restore is doing now (rdbvault extension; null once it ended).
    pub(crate) stage: Option<String>,
    /// Keys written by `RESTORE` (rdbvault extension).
    pub(crate) keys_restored: i64,
    /// Keys rebuilt with native commands (rdbvault extension).
    pub(crate) keys_rebuilt: i64,
    /// `merge`: existing keys overwritten (rdbvault extension).
    pub(crate) keys_replaced: i64,
    /// Keys not written, and why (rdbvault extension).
    pub(crate) keys_skipped: i64,
    pub(crate) skipped_detail: Option<String>,
}

impl RestoreRecord {
    fn new(r: &Restore, backup: Option<&crate::meta::Backup>) -> RestoreRecord {
        RestoreRecord {
            restore_id: r.id.clone(),
            restore_name: r.name.clone(),
            restore_remark: r.remark.clone(),
            backup_id: r.backup_id.clone(),
            backup_name: backup.map(|b| b.name.clone()).unwrap_or_default(),
            backup_remark: backup.and_then(|b| b.remark.clone()),
            status: r.status.as_str().into(),
            progress: r.progress(),
            created_at: dcs_time(r.created_at),
            updated_at: dcs_time(r.finished_at.unwrap_or(r.updated_at)),
            error_code: r.error_code.clone(),
            error_msg: r.error_msg.clone(),
            target_instance_id: r.target_instance_id.clone(),
            mode: r.mode,
            method: r.method,
            method_used: r.method_used.clone(),
            stage: r.stage.clone(),
            keys_restored: r.keys.restored,
            keys_rebuilt: r.keys.rebuilt,
            keys_replaced: r.keys.replaced,
            keys_skipped: r.keys.skipped,
            skipped_detail: r.keys.skipped_detail.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ListRestoreRecordsResponse {
    pub(crate) total_num: usize,
    pub(crate) restore_record_response: Vec<RestoreRecord>,
}

fn parse_mode(raw: Option<&str>) -> Result<RestoreMode, ApiError> {
    match raw {
        None | Some("replace") => Ok(RestoreMode::Replace),
        Some("merge") => Ok(RestoreMode::Merge),
        Some(other) => Err(ApiError::invalid(
            "mode",
            format!(
                "{:?} is not one of replace, merge",
                extract::truncated(other)
            ),
        )),
    }
}

fn parse_method(raw: Option<&str>) -> Result<RestoreMethod, ApiError> {
    match raw {
        None | Some("auto") => Ok(RestoreMethod::Auto),
        Some("replicate") => Ok(RestoreMethod::Replicate),
        Some("restore") => Ok(RestoreMethod::Restore),
        Some("commands") => Ok(RestoreMethod::Commands),
        Some(other) => Err(ApiError::invalid(
            "method",
            format!(
                "{:?} is not one of auto, replicate, restore, commands",
                extract::truncated(other)
            ),
        )),
    }
}

#[utoipa::path(post, path = "/v2/{project_id}/instances/{instance_id}/restores", tag = "restores",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = RestoreInstanceBody,
    responses((status = 200, body = RestoreInstanceResponse)))]
pub(crate) async fn restore_instance(
    State(state): State<SharedState>,
    Path((project_id, instance_id)): Path<(String, String)>,
    Json(body): Json<RestoreInstanceBody>,
) -> Result<Json<RestoreInstanceResponse>, ApiError> {
    let backup = find_backup(&state, &project_id, &instance_id, &body.backup_id).await?;
    super::backups::check_remark(body.remark.as_deref())?;
    let mode = parse_mode(body.mode.as_deref())?;
    let method = parse_method(body.method.as_deref())?;
    let target = match body.target_instance_id.as_deref() {
        Some(raw) => find(&state, &project_id, raw).await?,
        None => find(&state, &project_id, &backup.instance_id).await?,
    };
    if method == RestoreMethod::Replicate {
        if target.mode == Mode::Cluster {
            return Err(ApiError::invalid(
                "method",
                "replicate needs a single or ha target; a cluster is restored with restore or commands",
            ));
        }
        if mode == RestoreMode::Merge {
            return Err(ApiError::invalid(
                "method",
                "replicate replaces the target's whole dataset; merge needs restore or commands",
            ));
        }
    }
    if backup.status != BackupStatus::Succeed {
        return Err(ApiError::RestoreFromUnsuccessful(backup.id));
    }
    let restore = state
        .meta
        .create_restore(NewRestore {
            instance_id: backup.instance_id.clone(),
            target_instance_id: target.id.clone(),
            project_id,
            backup_id: backup.id.clone(),
            remark: body.remark,
            mode,
            method,
            strict: body.strict.unwrap_or(false),
        })
        .await
        .map_err(|e| match e {
            MetaError::Refused(Refusal::BackingUp) => {
                ApiError::InstanceBackingUp(target.id.clone())
            }
            MetaError::Refused(Refusal::Restoring) => {
                ApiError::InstanceRestoring(target.id.clone())
            }
            MetaError::Refused(_) => ApiError::RestoreFromUnsuccessful(backup.id.clone()),
            other => other.into(),
        })?;
    state.workers.wake();
    tracing::info!(restore_id = %restore.id, backup_id = %backup.id, target = %target.id,
        mode = mode.as_str(), method = method.as_str(), "restore queued");
    Ok(Json(RestoreInstanceResponse {
        restore_id: restore.id,
    }))
}

#[utoipa::path(get, path = "/v2/{project_id}/instances/{instance_id}/restores", tag = "restores",
    params(("project_id" = String, Path), ("instance_id" = String, Path), WindowQuery),
    responses((status = 200, body = ListRestoreRecordsResponse)))]
pub(crate) async fn list_restore_records(
    State(state): State<SharedState>,
    Path((project_id, instance_id)): Path<(String, String)>,
    Query(q): Query<WindowQuery>,
) -> Result<Json<ListRestoreRecordsResponse>, ApiError> {
    let w = q.window()?;
    let instance = find(&state, &project_id, &instance_id).await?;
    let (total, restores) = state
        .meta
        .list_restores(&instance.id, w.begin, w.end, w.offset, w.limit)
        .await?;
    let mut backups = HashMap::new();
    for r in &restores {
        if !backups.contains_key(&r.backup_id)
            && let Some(b) = state.meta.get_backup_by_id(&r.backup_id).await?
        {
            backups.insert(r.backup_id.clone(), b);
        }
    }
    Ok(Json(ListRestoreRecordsResponse {
        total_num: total,
        restore_record_response: restores
            .iter()
            .map(|r| RestoreRecord::new(r, backups.get(&r.backup_id)))
            .collect(),
    }))
}
