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
    #[error("instance {0} is already being backed up; wait for that backup to end")]
    InstanceBackingUp(String),
    #[error("deleting the backup files failed")]
    DeleteFailed(String),
    #[error("backup {0} has not succeeded; only a successful backup can be restored")]
    RestoreFromUnsuccessful(String),
    #[error("instance {0} is already being restored; wait for that restore to end")]
    InstanceRestoring(String),
    #[error("backup {0} is being restored; it can be deleted once the restore ends")]
    BackupInRestore(String),
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
    #[error("instance_backup_policy.{0}")]
    Policy(#[from] crate::schedule::policy::PolicyError),
    #[error("the requested URL does not exist")]
    UnknownUrl,
    #[error("method {0} is not allowed on this URL")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Unauthenticated(AuthError),
    #[error("{0}")]
    Forbidden(AuthError),
    #[error(
        "the request could not be parsed as HTTP/1.1 (request line, header names or values, control characters)"
    )]
    MalformedRequest,
    #[error("the request URI is longer than the service accepts")]
    UriTooLong,
    #[error("the request's headers are larger than the service accepts")]
    HeadersTooLarge,
    #[error("the request was not answered within {0} s (request_timeout_secs)")]
    RequestTimeout(u64),
    #[error("too many changing calls for this access key; retry in {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Quota(#[from] crate::quota::Exceeded),
    /// Never shown to the client: logged with the request id, answered as a
    /// generic internal error so no path, SQL or secret leaks.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Declares [`Entry`] and [`Entry::ALL`] from one list, so no line of the
/// catalogue can be left out of `ALL` (and with it out of the README table).
macro_rules! catalogue {
    ($($(#[$doc:meta])* $entry:ident => $code:literal, $status:ident, $meaning:literal;)+) => {
        /// A line of the error catalogue: a stable `error_code`, its HTTP
        /// status and what it means. [`ApiError::entry`] maps every error to one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Entry {
            $($(#[$doc])* $entry,)+
        }

        impl Entry {
            /// Every line, in the order declared.
            pub const ALL: &'static [Entry] = &[$(Entry::$entry,)+];

            /// The stable `error_code`, e.g. `DCS.4800`.
            pub fn code(self) -> &'static str {
                match self { $(Entry::$entry => $code,)+ }
            }

            pub fn status(self) -> StatusCode {
                match self { $(Entry::$entry => StatusCode::$status,)+ }
            }

            /// The meaning, as the README table shows it.
            pub fn meaning(self) -> &'static str {
                match self { $(Entry::$entry => $meaning,)+ }
            }
        }
    };
}

catalogue! {
    EmptyBody => "DCS.4004", BAD_REQUEST, "empty request body";
    NotJson => "DCS.4005", BAD_REQUEST, "body is not valid JSON";
    UnsupportedMediaType => "DCS.4915", UNSUPPORTED_MEDIA_TYPE, "Content-Type is not application/json";
    BodyTooLarge => "DCS.4913", PAYLOAD_TOO_LARGE, "request body too large";
    InvalidParam => "DCS.4800", BAD_REQUEST, "invalid parameter";
    InvalidProjectId => "DCS.4002", BAD_REQUEST, "invalid project id format";
    InvalidInstanceId => "DCS.4061", BAD_REQUEST, "invalid instance id format";
    RemarkTooLong => "DCS.4098", BAD_REQUEST, "remark longer than 128 characters";
    InstanceNotFound => "DCS.3022", NOT_FOUND, "instance does not exist";
    InstanceNameTaken => "DCS.4909", CONFLICT, "instance name already registered";
    InstanceUnreachable => "DCS.4920", BAD_REQUEST, "instance unreachable";
    CredentialsRefused => "DCS.4922", BAD_REQUEST, "Redis refused the password or ACL user";
    PermissionMissing => "DCS.4923", BAD_REQUEST, "the ACL user lacks a right rdbvault needs (named in error_msg)";
    InstanceMismatch => "DCS.4921", BAD_REQUEST, "instance mode does not match the live server";
    InstanceBusy => "DCS.4026", BAD_REQUEST, "not allowed in the current state";
    InvalidBackupId => "DCS.4934", BAD_REQUEST, "invalid backup id format";
    BackupNotFound => "DCS.4930", NOT_FOUND, "backup does not exist";
    BackupOfOtherInstance => "DCS.4932", NOT_FOUND, "backup belongs to another instance";
    BackupOfOtherProject => "DCS.4933", NOT_FOUND, "backup belongs to another project";
    InstanceBackingUp => "DCS.4096", BAD_REQUEST, "instance is already backing up";
    DeleteFailed => "DCS.4101", INTERNAL_SERVER_ERROR, "deleting the backup files failed";
    RestoreFromUnsuccessful => "DCS.4087", BAD_REQUEST, "only a successful backup can be restored";
    InstanceRestoring => "DCS.4097", BAD_REQUEST, "instance is already being restored";
    BackupInRestore => "DCS.4947", BAD_REQUEST, "backup is being read by a restore";
    ExpirationMissing => "DCS.4940", BAD_REQUEST, "expiration missing";
    ExpirationNotInteger => "DCS.4941", BAD_REQUEST, "expiration not an integer";
    ExpirationOutOfRange => "DCS.4942", BAD_REQUEST, "expiration outside 300..86400";
    BackupInProgress => "DCS.4943", BAD_REQUEST, "backup not finished yet";
    BackupFailed => "DCS.4944", BAD_REQUEST, "backup failed";
    BackupDeleted => "DCS.4945", BAD_REQUEST, "backup deleted";
    BackupExpired => "DCS.4946", BAD_REQUEST, "backup expired";
    ClusterIncomplete => "DCS.4950", BAD_REQUEST, "cluster slots not all covered";
    ClusterTooLarge => "DCS.4951", BAD_REQUEST, "cluster has more than 64 shards";
    UnknownUrl => "DCS.4001", NOT_FOUND, "requested URL does not exist";
    LockedOut => "DCS.4960", TOO_MANY_REQUESTS, "too many failed signatures for the access key; retry later";
    RateLimited => "DCS.4961", TOO_MANY_REQUESTS, "too many changing calls for the access key; retry after Retry-After seconds";
    QuotaBackups => "DCS.4970", FORBIDDEN, "the project's backup count quota is used up";
    QuotaBytes => "DCS.4971", FORBIDDEN, "the project's stored bytes quota is used up";
    MalformedRequest => "DCS.4000", BAD_REQUEST, "malformed HTTP request (request line, headers, control characters)";
    UriTooLong => "DCS.4014", URI_TOO_LONG, "request URI too long";
    HeadersTooLarge => "DCS.4031", REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large";
    RequestTimeout => "DCS.4080", REQUEST_TIMEOUT, "the request was not answered within request_timeout_secs";
    PolicySaveDays => "DCS.4072", BAD_REQUEST, "invalid backup policy save_days";
    PolicyBackupType => "DCS.4073", BAD_REQUEST, "invalid backup policy backup_type";
    PolicyPeriodType => "DCS.4074", BAD_REQUEST, "invalid backup policy period_type";
    PolicyBackupAt => "DCS.4075", BAD_REQUEST, "invalid backup policy backup_at";
    PolicyBeginAt => "DCS.4076", BAD_REQUEST, "invalid backup policy begin_at";
    MethodNotAllowed => "DCS.5001", METHOD_NOT_ALLOWED, "method not allowed";
    AuthorizationMissing => "DCS.1003", UNAUTHORIZED, "no Authorization header";
    ClockSkew => "DCS.1002", UNAUTHORIZED, "X-Sdk-Date outside the 15-minute window";
    /// Any other refused signature: malformed, unknown key, unsigned header, ...
    SignatureRefused => "DCS.1001", UNAUTHORIZED, "signature verification failed";
    ProjectForbidden => "DCS.1004", FORBIDDEN, "credential does not hold the project";
    /// Logged in full, answered without detail.
    Internal => "DCS.5000", INTERNAL_SERVER_ERROR, "internal service error";
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
        self.entry().status()
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
        self.entry().code()
    }

    /// The line of the catalogue this error is answered with. The match has
    /// no wildcard: a new variant does not compile until it is given a line.
    pub fn entry(&self) -> Entry {
        use ApiError as E;
        match self {
            E::EmptyBody => Entry::EmptyBody,
            E::NotJson(_) => Entry::NotJson,
            E::UnsupportedMediaType(_) => Entry::UnsupportedMediaType,
            E::BodyTooLarge(_) => Entry::BodyTooLarge,
            E::InvalidParam { .. } => Entry::InvalidParam,
            E::InvalidProjectId(_) => Entry::InvalidProjectId,
            E::InvalidInstanceId(_) => Entry::InvalidInstanceId,
            E::RemarkTooLong(_) => Entry::RemarkTooLong,
            E::InstanceNotFound(_) => Entry::InstanceNotFound,
            E::InstanceNameTaken(_) => Entry::InstanceNameTaken,
            E::InstanceUnreachable(_) => Entry::InstanceUnreachable,
            E::CredentialsRefused(_) => Entry::CredentialsRefused,
            E::PermissionMissing(_) => Entry::PermissionMissing,
            E::InstanceMismatch(_) => Entry::InstanceMismatch,
            E::InstanceBusy(_) => Entry::InstanceBusy,
            E::InvalidBackupId(_) => Entry::InvalidBackupId,
            E::BackupNotFound(_) => Entry::BackupNotFound,
            E::BackupOfOtherInstance(_) => Entry::BackupOfOtherInstance,
            E::BackupOfOtherProject(_) => Entry::BackupOfOtherProject,
            E::InstanceBackingUp(_) => Entry::InstanceBackingUp,
            E::DeleteFailed(_) => Entry::DeleteFailed,
            E::RestoreFromUnsuccessful(_) => Entry::RestoreFromUnsuccessful,
            E::InstanceRestoring(_) => Entry::InstanceRestoring,
            E::BackupInRestore(_) => Entry::BackupInRestore,
            E::ExpirationMissing => Entry::ExpirationMissing,
            E::ExpirationNotInteger(_) => Entry::ExpirationNotInteger,
            E::ExpirationOutOfRange(_) => Entry::ExpirationOutOfRange,
            E::BackupInProgress(_) => Entry::BackupInProgress,
            E::BackupFailed(_) => Entry::BackupFailed,
            E::BackupDeleted(_) => Entry::BackupDeleted,
            E::BackupExpired(_) => Entry::BackupExpired,
            E::ClusterIncomplete(_) => Entry::ClusterIncomplete,
            E::ClusterTooLarge(_) => Entry::ClusterTooLarge,
            E::UnknownUrl => Entry::UnknownUrl,
            E::Policy(p) => {
                use crate::schedule::policy::PolicyError as P;
                match p {
                    P::SaveDays(_) => Entry::PolicySaveDays,
                    P::BackupType(_) => Entry::PolicyBackupType,
                    P::PeriodType(_) => Entry::PolicyPeriodType,
                    P::BackupAt(_) => Entry::PolicyBackupAt,
                    P::BeginAt(_) => Entry::PolicyBeginAt,
                    P::TimezoneOffset(_) => Entry::InvalidParam,
                }
            }
            E::MethodNotAllowed(_) => Entry::MethodNotAllowed,
            E::Unauthenticated(AuthError::Missing) => Entry::AuthorizationMissing,
            E::Unauthenticated(AuthError::Skew) => Entry::ClockSkew,
            E::Unauthenticated(AuthError::LockedOut(_)) => Entry::LockedOut,
            E::Unauthenticated(_) => Entry::SignatureRefused,
            E::Forbidden(_) => Entry::ProjectForbidden,
            E::MalformedRequest => Entry::MalformedRequest,
            E::UriTooLong => Entry::UriTooLong,
            E::HeadersTooLarge => Entry::HeadersTooLarge,
            E::RequestTimeout(_) => Entry::RequestTimeout,
            E::RateLimited(_) => Entry::RateLimited,
            E::Quota(crate::quota::Exceeded::Backups { .. }) => Entry::QuotaBackups,
            E::Quota(crate::quota::Exceeded::Bytes { .. }) => Entry::QuotaBytes,
            E::Internal(_) => Entry::Internal,
        }
    }

    /// Every line of the catalogue, by code, for the README table and its test.
    pub fn catalogue() -> Vec<(&'static str, u16, &'static str)> {
        let mut all: Vec<_> = Entry::ALL
            .iter()
            .map(|e| (e.code(), e.status().as_u16(), e.meaning()))
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
        // The request id is on the span of the request (see `api::router`).
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::warn!(code = self.code(), status = status.as_u16(), error = %self, "request refused");
        }
        let mut response = (status, Json(self.body())).into_response();
        let retry_after = match &self {
            ApiError::Unauthenticated(AuthError::LockedOut(secs)) => Some(*secs),
            ApiError::RateLimited(secs) => i64::try_from(*secs).ok(),
            _ => None,
        };
        if let Some(secs) = retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
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
    fn readme_table_is_the_catalogue() {
        let readme = include_str!("../../../../README.md");
        let table: Vec<&str> = readme.lines().filter(|l| l.starts_with("| DCS.")).collect();
        let rows: Vec<String> = ApiError::catalogue()
            .into_iter()
            .map(|(code, status, meaning)| format!("| {code} | {status} | {meaning} |"))
            .collect();
        for row in &rows {
            assert!(table.contains(&row.as_str()), "README lacks the row: {row}");
        }
        for line in &table {
            assert!(
                rows.iter().any(|r| r == line),
                "README row not in the catalogue: {line}"
            );
        }
    }

    #[test]
    fn authentication_failures_keep_their_codes() {
        let code = |e: AuthError| ApiError::Unauthenticated(e).code();
        assert_eq!(code(AuthError::Missing), "DCS.1003");
        assert_eq!(code(AuthError::Skew), "DCS.1002");
        assert_eq!(code(AuthError::BadSignature), "DCS.1001");
        assert_eq!(code(AuthError::UnknownKey), "DCS.1001");
        let forbidden = ApiError::Forbidden(AuthError::ProjectForbidden("p".into()));
        assert_eq!(forbidden.code(), "DCS.1004");
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    }
}
