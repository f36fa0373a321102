//! Backup policies: set with DCS `update_instance` (`PUT
//! /v2/{project_id}/instances/{instance_id}`, its `instance_backup_policy`)
//! or at registration, read back in `show_instance`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::common::{dcs_time, find};
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Path};
use crate::meta::StoredPolicy;
use crate::schedule::policy::{Policy, Raw, RawPlan};

/// DCS `BackupPolicy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupPolicyBody {
    /// `auto` (automatic backups by the plan) or `manual`.
    pub(crate) backup_type: String,
    /// Days automatic backups are kept, 1 to 3650 (DCS: 1 to 7); required for `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) save_days: Option<i64>,
    /// Required for `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) periodical_backup_plan: Option<BackupPlanBody>,
}

/// DCS `BackupPlan`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupPlanBody {
    /// `-1200` to `+1200`; absent or empty: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timezone_offset: Option<String>,
    /// Days of the week, 1 (Monday) to 7 (Sunday).
    pub(crate) backup_at: Vec<i64>,
    /// `weekly`.
    pub(crate) period_type: String,
    /// The window a backup starts in, `HH:MM-HH:MM`.
    pub(crate) begin_at: String,
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
/// run, so only `instance_backup_policy` can change; the other fields are
/// refused by name rather than ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModifyInstanceBody {
    #[schema(value_type = Option<String>)]
    pub(crate) name: Option<serde_json::Value>,
    #[schema(value_type = Option<String>)]
    pub(crate) description: Option<serde_json::Value>,
    #[schema(value_type = Option<i64>)]
    pub(crate) port: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub(crate) rename_commands: Option<serde_json::Value>,
    #[schema(value_type = Option<String>)]
    pub(crate) maintain_begin: Option<serde_json::Value>,
    #[schema(value_type = Option<String>)]
    pub(crate) maintain_end: Option<serde_json::Value>,
    #[schema(value_type = Option<String>)]
    pub(crate) security_group_id: Option<serde_json::Value>,
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
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
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
