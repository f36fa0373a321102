//! Backup policies: set with DCS `update_instance` (`PUT
//! /v2/{project_id}/instances/{instance_id}`, its `instance_backup_policy`)
//! or at registration, read back in `show_instance`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::common::{dcs_time, find, schema};
use super::error::ApiError;
use super::extract::{Json, Path, object, whole};
use crate::meta::StoredPolicy;
use crate::schedule::policy::{Policy, Raw, RawPlan};

/// DCS `BackupPolicy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupPolicyBody {
    #[schema(schema_with = backup_type_schema)]
    pub(crate) backup_type: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option"
    )]
    #[schema(schema_with = save_days_schema)]
    pub(crate) save_days: Option<i64>,
    /// Required for `auto`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object::option"
    )]
    pub(crate) periodical_backup_plan: Option<BackupPlanBody>,
}

/// DCS `BackupPlan`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupPlanBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = timezone_offset_schema)]
    pub(crate) timezone_offset: Option<String>,
    #[serde(deserialize_with = "whole::list")]
    #[schema(schema_with = backup_at_schema)]
    pub(crate) backup_at: Vec<i64>,
    #[schema(schema_with = period_type_schema)]
    pub(crate) period_type: String,
    #[schema(schema_with = begin_at_schema)]
    pub(crate) begin_at: String,
}

/// A UTC offset as `schedule::policy` reads it: `±HHMM` or `±HH:MM`,
/// -12:00 to +12:00; empty for UTC.
const TIMEZONE_OFFSET_PATTERN: &str = "^(?:[+-](?:(?:0[0-9]|1[01]):?[0-5][0-9]|12:?00))?$";
/// A window `HH:MM-HH:MM` (it may run past midnight, and may not be empty).
const WINDOW_PATTERN: &str = "^(?:[01][0-9]|2[0-3]):[0-5][0-9]-(?:[01][0-9]|2[0-3]):[0-5][0-9]$";

fn backup_type_schema() -> utoipa::openapi::schema::Object {
    schema::one_of(
        &["auto", "manual"],
        false,
        "`auto` (automatic backups by the plan; needs `save_days` and `periodical_backup_plan`) or `manual`",
    )
}

fn save_days_schema() -> utoipa::openapi::schema::Object {
    schema::integer(
        1,
        i64::from(crate::schedule::policy::MAX_SAVE_DAYS),
        true,
        "days automatic backups are kept, 1 to 3650 (DCS: 1 to 7); required for `auto`",
    )
}

fn timezone_offset_schema() -> utoipa::openapi::schema::Object {
    schema::text(
        TIMEZONE_OFFSET_PATTERN,
        true,
        "`-1200` to `+1200` (or `-12:00` to `+12:00`); absent or empty: UTC",
    )
}

fn backup_at_schema() -> utoipa::openapi::schema::Array {
    schema::list(
        schema::integer(1, 7, false, "1 (Monday) to 7 (Sunday)"),
        None,
        false,
        "the days of the week backups run on",
    )
}

fn period_type_schema() -> utoipa::openapi::schema::Object {
    schema::one_of(&["weekly"], false, "`weekly`, the only period DCS has")
}

fn begin_at_schema() -> utoipa::openapi::schema::Object {
    schema::text(
        WINDOW_PATTERN,
        false,
        "the window a backup starts in, `HH:MM-HH:MM` in the plan's zone (past midnight when it \
         ends before it starts; not empty)",
    )
}

impl BackupPolicyBody {
    /// The checked policy, or the DCS error for its first bad field.
    pub(crate) fn check(&self) -> Result<Policy, ApiError> {
        let plan = self.periodical_backup_plan.as_ref().map(|p| RawPlan {
            timezone_offset: p.timezone_offset.as_deref(),
            backup_at: &p.backup_at,
            period_type: &p.period_type,
            begin_at: &p.begin_at,
        });
        Ok(Policy::check(&Raw {
            backup_type: &self.backup_type,
            save_days: self.save_days,
            plan,
        })?)
    }

    fn of(policy: &Policy) -> BackupPolicyBody {
        BackupPolicyBody {
            backup_type: policy.backup_type.as_str().into(),
            save_days: policy.save_days.map(i64::from),
            periodical_backup_plan: policy.plan.as_ref().map(|p| BackupPlanBody {
                timezone_offset: p.timezone_offset.clone(),
                backup_at: p.days.iter().map(|&d| i64::from(d)).collect(),
                period_type: "weekly".into(),
                begin_at: p.window.to_string(),
            }),
        }
    }
}

/// DCS `InstanceBackupPolicy`, as `show_instance` gives it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct InstanceBackupPolicyView {
    pub(crate) backup_policy_id: String,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) policy: BackupPolicyBody,
    /// The project the instance belongs to.
    pub(crate) tenant_id: String,
}

impl InstanceBackupPolicyView {
    pub(crate) fn of(stored: &StoredPolicy, project_id: &str) -> InstanceBackupPolicyView {
        InstanceBackupPolicyView {
            backup_policy_id: stored.id.clone(),
            created_at: dcs_time(stored.created_at),
            updated_at: dcs_time(stored.updated_at),
            policy: BackupPolicyBody::of(&stored.policy),
            tenant_id: project_id.to_string(),
        }
    }
}

/// DCS `ModifyInstanceBody`. rdbvault registers instances it does not
/// run, so only `instance_backup_policy` can change, and must be given; the
/// other fields of DCS's body (`name`, `description`, `port`,
/// `rename_commands`, `maintain_begin`, `maintain_end`, `security_group_id`)
/// belong to the deployment and are refused by name (`DCS.4800`) rather
/// than ignored, so the document leaves them out.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModifyInstanceBody {
    #[schema(ignore)]
    pub(crate) name: Option<serde_json::Value>,
    #[schema(ignore)]
    pub(crate) description: Option<serde_json::Value>,
    #[schema(ignore)]
    pub(crate) port: Option<serde_json::Value>,
    #[schema(ignore)]
    pub(crate) rename_commands: Option<serde_json::Value>,
    #[schema(ignore)]
    pub(crate) maintain_begin: Option<serde_json::Value>,
    #[schema(ignore)]
    pub(crate) maintain_end: Option<serde_json::Value>,
    #[schema(ignore)]
    pub(crate) security_group_id: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "object::option")]
    #[schema(value_type = BackupPolicyBody, required = true)]
    pub(crate) instance_backup_policy: Option<BackupPolicyBody>,
}

impl ModifyInstanceBody {
    /// The first field rdbvault cannot change, if any is set.
    fn unsupported(&self) -> Option<&'static str> {
        [
            ("name", self.name.is_some()),
            ("description", self.description.is_some()),
            ("port", self.port.is_some()),
            ("rename_commands", self.rename_commands.is_some()),
            ("maintain_begin", self.maintain_begin.is_some()),
            ("maintain_end", self.maintain_end.is_some()),
            ("security_group_id", self.security_group_id.is_some()),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }
}

#[utoipa::path(put, path = "/v2/{project_id}/instances/{instance_id}", tag = "instances",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = ModifyInstanceBody,
    responses((status = 204, description = "the policy is set")))]
pub(crate) async fn update_instance(
    State(state): State<SharedState>,
    Path((project_id, instance_id)): Path<(String, String)>,
    Json(body): Json<ModifyInstanceBody>,
) -> Result<StatusCode, ApiError> {
    let instance = find(&state, &project_id, &instance_id).await?;
    if let Some(field) = body.unsupported() {
        return Err(ApiError::invalid(
            "instance",
            format!(
                "{field} belongs to the deployment, which rdbvault does not manage; \
                 only instance_backup_policy can be changed"
            ),
        ));
    }
    let Some(policy) = &body.instance_backup_policy else {
        return Err(ApiError::invalid(
            "instance_backup_policy",
            "nothing to change: instance_backup_policy is the field rdbvault can update",
        ));
    };
    let policy = policy.check()?;
    state.meta.set_policy(&instance.id, &policy).await?;
    tracing::info!(instance_id = %instance.id, backup_type = policy.backup_type.as_str(),
        save_days = ?policy.save_days, "backup policy set");
    Ok(StatusCode::NO_CONTENT)
}
