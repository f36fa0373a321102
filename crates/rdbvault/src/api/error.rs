//! The DCS error model, in one place: every error the API can answer, its
//! stable `error_code` and its HTTP status.
//!
//! Codes reuse the DCS catalogue where one fits (reference §4); rdbvault's own
//! additions are `DCS.49xx`, a block DCS does not document. The README's
//! error table is generated from [`ApiError::catalogue`] by a test, so the
//! two cannot drift.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;

/// The body of every 4xx/5xx answer.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code, at most 9 characters, e.g. `DCS.4800`.
    pub error_code: String,
    /// What went wrong and, where it helps, what is allowed; at most 1024 characters.
    pub error_msg: String,
    /// Unused, always null (as in DCS).
    pub error_ext_msg: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is empty; this operation needs a JSON body")]
    EmptyBody,
    #[error("the request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("Content-Type must be application/json, not {0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("invalid parameter {field}: {reason}")]
    InvalidParam { field: &'static str, reason: String },
    #[error("invalid project id {0:?}: expected 1 to 64 characters of [A-Za-z0-9_-]")]
    InvalidProjectId(String),
    #[error("invalid instance id {0:?}: expected a UUID")]
    InvalidInstanceId(String),
    #[error("remark is {0} characters long; at most 128 are allowed")]
    RemarkTooLong(usize),
    #[error("instance {0} does not exist")]
    InstanceNotFound(String),
    #[error("an instance named {0:?} already exists in this project")]
    InstanceNameTaken(String),
    #[error("the instance cannot be reached: {0}")]
    InstanceUnreachable(String),
    #[error("Redis refused the credentials: {0}")]
    CredentialsRefused(String),
    #[error("{0}")]
    PermissionMissing(String),
    #[error("the instance does not match its registration: {0}")]
    InstanceMismatch(String),
    #[error("operation not allowed in the instance's current state: {0}")]
    InstanceBusy(String),
    #[error("invalid backup id {0:?}: expected a UUID")]
    InvalidBackupId(String),
    #[error("backup {0} does not exist")]
    BackupNotFound(String),
    #[error("backup {0} belongs to another instance")]
    BackupOfOtherInstance(String),
    #[error("backup {0} belongs to another project")]
    BackupOfOtherProject(String),
    #[error("backup_format {0} is not supported yet; use rdb")]
    FormatNotSupported(String),
    #[error("instance {0} is already being backed up; wait for that backup to end")]
    InstanceBackingUp(String),
    #[error("deleting the backup files failed")]
    DeleteFailed(String),
    #[error("expiration is required: the number of seconds the links stay valid, 300 to 86400")]
    ExpirationMissing,
    #[error("expiration must be an integer number of seconds from 300 to 86400, not {0}")]
    ExpirationNotInteger(String),
    #[error(
        "expiration {0} is out of range: links stay valid between 300 (5 minutes) and 86400 (24 hours) seconds"
    )]
    ExpirationOutOfRange(String),
    #[error("backup {0} has not finished yet; links are available once it has succeeded")]
    BackupInProgress(String),
    #[error("backup {0} failed; it has no files to download")]
    BackupFailed(String),
    #[error("backup {0} was deleted; its files are gone")]
    BackupDeleted(String),
    #[error("backup {0} has expired; its files are gone")]
    BackupExpired(String),
    #[error(
        "the cluster does not serve all 16384 slots ({0} are not covered); a backup would be incomplete"
    )]
    ClusterIncomplete(u32),
    #[error("the cluster has {0} shards; at most 64 can be backed up")]
    ClusterTooLarge(usize),
    #[error("the requested URL does not exist")]
    UnknownUrl,
    #[error("method {0} is not allowed on this URL")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Unauthenticated(AuthError),
    #[error("{0}")]
    Forbidden(AuthError),
    /// Never shown to the client: logged with the request id, answered as a
    /// generic internal error so no path, SQL or secret leaks.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }

    pub fn invalid(field: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidParam {
            field,
            reason: reason.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.entry().1
    }

    /// What a registration or a check of a live instance answers when
    /// talking to it failed: a refused login and a missing ACL right are
    /// the operator's to fix, and said so, not taken for an unreachable node.
    pub fn from_redis(e: crate::replication::ConnError) -> ApiError {
        use crate::replication::ConnError;
        match e {
            ConnError::Auth(_) => ApiError::CredentialsRefused(e.to_string()),
            ConnError::NoPermission { .. } => ApiError::PermissionMissing(e.to_string()),
            other => ApiError::InstanceUnreachable(other.to_string()),
        }
    }

    pub fn code(&self) -> &'static str {
        self.entry().0
    }

    fn entry(&self) -> (&'static str, StatusCode, &'static str) {
        use ApiError::*;
        use StatusCode as S;
        match self {
            EmptyBody => ("DCS.4004", S::BAD_REQUEST, "empty request body"),
            NotJson(_) => ("DCS.4005", S::BAD_REQUEST, "body is not valid JSON"),
            UnsupportedMediaType(_) => (
                "DCS.4915",
                S::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type is not application/json",
            ),
            BodyTooLarge(_) => ("DCS.4913", S::PAYLOAD_TOO_LARGE, "request body too large"),
            InvalidParam { .. } => ("DCS.4800", S::BAD_REQUEST, "invalid parameter"),
            InvalidProjectId(_) => ("DCS.4002", S::BAD_REQUEST, "invalid project id format"),
            InvalidInstanceId(_) => ("DCS.4061", S::BAD_REQUEST, "invalid instance id format"),
            RemarkTooLong(_) => (
                "DCS.4098",
                S::BAD_REQUEST,
                "remark longer than 128 characters",
            ),
            InstanceNotFound(_) => ("DCS.3022", S::NOT_FOUND, "instance does not exist"),
            InstanceNameTaken(_) => ("DCS.4909", S::CONFLICT, "instance name already registered"),
            InstanceUnreachable(_) => ("DCS.4920", S::BAD_REQUEST, "instance unreachable"),
            CredentialsRefused(_) => (
                "DCS.4922",
                S::BAD_REQUEST,
                "Redis refused the password or ACL user",
            ),
            PermissionMissing(_) => (
                "DCS.4923",
                S::BAD_REQUEST,
                "the ACL user lacks a right rdbvault needs (named in error_msg)",
            ),
            InstanceMismatch(_) => (
                "DCS.4921",
                S::BAD_REQUEST,
                "instance mode does not match the live server",
            ),
            InstanceBusy(_) => (
                "DCS.4026",
                S::BAD_REQUEST,
                "not allowed in the current state",
            ),
            InvalidBackupId(_) => ("DCS.4934", S::BAD_REQUEST, "invalid backup id format"),
            BackupNotFound(_) => ("DCS.4930", S::NOT_FOUND, "backup does not exist"),
            BackupOfOtherInstance(_) => (
                "DCS.4932",
                S::NOT_FOUND,
                "backup belongs to another instance",
            ),
            BackupOfOtherProject(_) => (
                "DCS.4933",
                S::NOT_FOUND,
                "backup belongs to another project",
            ),
            FormatNotSupported(_) => (
                "DCS.4931",
                S::BAD_REQUEST,
                "backup format not supported yet",
            ),
            InstanceBackingUp(_) => ("DCS.4096", S::BAD_REQUEST, "instance is already backing up"),
            DeleteFailed(_) => (
                "DCS.4101",
                S::INTERNAL_SERVER_ERROR,
                "deleting the backup files failed",
            ),
            ExpirationMissing => ("DCS.4940", S::BAD_REQUEST, "expiration missing"),
            ExpirationNotInteger(_) => ("DCS.4941", S::BAD_REQUEST, "expiration not an integer"),
            ExpirationOutOfRange(_) => {
                ("DCS.4942", S::BAD_REQUEST, "expiration outside 300..86400")
            }
            BackupInProgress(_) => ("DCS.4943", S::BAD_REQUEST, "backup not finished yet"),
            BackupFailed(_) => ("DCS.4944", S::BAD_REQUEST, "backup failed"),
            BackupDeleted(_) => ("DCS.4945", S::BAD_REQUEST, "backup deleted"),
            BackupExpired(_) => ("DCS.4946", S::BAD_REQUEST, "backup expired"),
            ClusterIncomplete(_) => ("DCS.4950", S::BAD_REQUEST, "cluster slots not all covered"),
            ClusterTooLarge(_) => (
                "DCS.4951",
                S::BAD_REQUEST,
                "cluster has more than 64 shards",
            ),
            UnknownUrl => ("DCS.4001", S::NOT_FOUND, "requested URL does not exist"),
            MethodNotAllowed(_) => ("DCS.5001", S::METHOD_NOT_ALLOWED, "method not allowed"),
            Unauthenticated(AuthError::Missing) => {
                ("DCS.1003", S::UNAUTHORIZED, "no Authorization header")
            }
            Unauthenticated(AuthError::Skew) => (
                "DCS.1002",
                S::UNAUTHORIZED,
                "X-Sdk-Date outside the 15-minute window",
            ),
            Unauthenticated(_) => ("DCS.1001", S::UNAUTHORIZED, "signature verification failed"),
            Forbidden(_) => (
                "DCS.1004",
                S::FORBIDDEN,
                "credential does not hold the project",
            ),
            Internal(_) => (
                "DCS.5000",
                S::INTERNAL_SERVER_ERROR,
                "internal service error",
            ),
        }
    }

    /// One example of every code, for the README table and its test.
    pub fn catalogue() -> Vec<(&'static str, u16, &'static str)> {
        use ApiError::*;
        let s = String::new;
        let mut all: Vec<_> = [
            EmptyBody,
            NotJson(s()),
            UnsupportedMediaType(s()),
            BodyTooLarge(0),
            InvalidParam {
                field: "",
                reason: s(),
            },
            InvalidProjectId(s()),
            InvalidInstanceId(s()),
            RemarkTooLong(0),
            InstanceNotFound(s()),
            InstanceNameTaken(s()),
            InstanceUnreachable(s()),
            CredentialsRefused(s()),
            PermissionMissing(s()),
            InstanceMismatch(s()),
            InstanceBusy(s()),
            InvalidBackupId(s()),
            BackupNotFound(s()),
            BackupOfOtherInstance(s()),
            BackupOfOtherProject(s()),
            FormatNotSupported(s()),
            InstanceBackingUp(s()),
            DeleteFailed(s()),
            ExpirationMissing,
            ExpirationNotInteger(s()),
            ExpirationOutOfRange(s()),
            BackupInProgress(s()),
            BackupFailed(s()),
            BackupDeleted(s()),
            BackupExpired(s()),
            ClusterIncomplete(0),
            ClusterTooLarge(0),
            UnknownUrl,
            MethodNotAllowed(s()),
            Unauthenticated(AuthError::Missing),
            Unauthenticated(AuthError::Skew),
            Unauthenticated(AuthError::BadSignature),
            Forbidden(AuthError::ProjectForbidden(s())),
            Internal(s()),
        ]
        .iter()
        .map(|e| {
            let (code, status, meaning) = e.entry();
            (code, status.as_u16(), meaning)
        })
        .collect();
        all.sort();
        all
    }

    pub fn body(&self) -> ErrorBody {
        let msg = match self {
            ApiError::Internal(_) => "Internal service error.".to_string(),
            ApiError::DeleteFailed(_) => "Deleting the backup files failed; try again.".to_string(),
            other => other.to_string(),
        };
        ErrorBody {
            error_code: self.code().to_string(),
            error_msg: truncate(msg, 1024),
            error_ext_msg: None,
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // The request id is on the span of the request (see api::layers).
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::warn!(code = self.code(), status = status.as_u16(), error = %self, "request refused");
        }
        (status, Json(self.body())).into_response()
    }
}

impl From<crate::meta::MetaError> for ApiError {
    fn from(e: crate::meta::MetaError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_short_and_unique_per_meaning() {
        let all = ApiError::catalogue();
        for (code, status, _) in &all {
            assert!(code.len() <= 9, "{code} longer than 9 characters");
            assert!(code.starts_with("DCS."), "{code}");
            assert!(*status >= 400);
        }
        let mut codes: Vec<_> = all.iter().map(|e| e.0).collect();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "a code is used for two meanings");
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let body = ApiError::internal("open /secret/path: permission denied").body();
        assert_eq!(body.error_code, "DCS.5000");
        assert!(!body.error_msg.contains("/secret"));
    }

    #[test]
    fn messages_are_bounded() {
        let body = ApiError::NotJson("é".repeat(2000)).body();
        assert!(body.error_msg.len() <= 1024);
    }

    #[test]
    fn readme_lists_every_code() {
        let readme = include_str!("../../../../README.md");
        for (code, status, meaning) in ApiError::catalogue() {
            let row = format!("| {code} | {status} | {meaning} |");
            assert!(readme.contains(&row), "README lacks the row: {row}");
        }
    }
}
