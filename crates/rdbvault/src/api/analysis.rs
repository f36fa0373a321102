//! rdbvault's `analysis` of a backup: what `rdbvault inspect` reports
//! (types and encodings, the biggest keys, prefixes, TTLs), computed here
//! from the stored files as they stream through the RDB reader, for the
//! console's charts. One analysis at a time per node: it reads whole files.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use tokio_util::io::SyncIoBridge;
use utoipa::{IntoParams, ToSchema};

use super::SharedState;
use super::common::{find_backup_with_files, require_succeeded};
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::cli::inspect::{self, Options};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnalysisQuery {
    /// How many of the biggest keys to list (1..100, default 10).
    #[param(minimum = 1, maximum = 100)]
    top: Option<usize>,
    /// How many prefixes to list (1..100, default 20).
    #[param(minimum = 1, maximum = 100)]
    prefixes: Option<usize>,
    /// Where a key's prefix ends (1..8 characters, default `:`).
    #[param(min_length = 1, max_length = 8)]
    separator: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AnalysisResponse {
    /// One report per file (per shard for a cluster), as `rdbvault inspect --json`
    /// prints it: `keys`, `bytes`, `databases`, `by_encoding`, `biggest_by_size`,
    /// `biggest_by_elements`, `prefixes`, `ttl`.
    #[schema(value_type = Vec<Object>)]
    pub(crate) files: Vec<serde_json::Value>,
}

fn options(q: AnalysisQuery) -> Result<Options, ApiError> {
    let bounded = |field: &'static str, v: Option<usize>, default: usize| match v {
        None => Ok(default),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid(field, format!("{n} is outside 1..100"))),
    };
    let separator = q.separator.unwrap_or_else(|| ":".into());
    if separator.is_empty() || separator.chars().count() > 8 {
        return Err(ApiError::invalid("separator", "must be 1 to 8 characters"));
    }
    Ok(Options {
        top: bounded("top", q.top, 10)?,
        prefixes: bounded("prefixes", q.prefixes, 20)?,
        separator,
        keys: None,
    })
}

#[utoipa::path(get, path = "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/rdbvault/analysis", tag = "rdbvault",
    description = "rdbvault: the key analysis of a succeeded RDB backup (what `rdbvault inspect` prints), read from the store. An AOF backup (`backup_format` aof) has no RDB to analyze and is refused (DCS.4800).",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path), AnalysisQuery),
    responses((status = 200, body = AnalysisResponse)))]
pub(crate) async fn analyze_backup(
    State(state): State<SharedState>,
    Path((project_id, instance_id, raw_backup_id)): Path<(String, String, String)>,
    Query(query): Query<AnalysisQuery>,
) -> Result<Json<AnalysisResponse>, ApiError> {
    let options = options(query)?;
    let (backup, files) =
        find_backup_with_files(&state, &project_id, &instance_id, &raw_backup_id).await?;
    require_succeeded(&backup)?;
    if backup.backup_format != "rdb" {
        return Err(ApiError::invalid(
            "backup_id",
            format!(
                "backup {} is {}: only RDB backups are analyzed",
                backup.id, backup.backup_format
            ),
        ));
    }
    let _turn = state.analyses.acquire().await.map_err(ApiError::internal)?;
    let mut reports = Vec::with_capacity(files.len());
    for file in files {
        let input = state
            .objects
            .read(&file.object_key)
            .await
            .map_err(ApiError::internal)?;
        let (options, name) = (options.clone(), file.file_name.clone());
        let input = SyncIoBridge::new(input);
        let report = tokio::task::spawn_blocking(move || {
            inspect::analyze_reader(
                std::io::BufReader::with_capacity(1 << 20, input),
                &name,
                &options,
            )
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        reports.push(serde_json::to_value(report).map_err(ApiError::internal)?);
    }
    Ok(Json(AnalysisResponse { files: reports }))
}
