//! Why a backup or a restore failed: the `error_code` a failed record carries.
//!
//! DCS documents `dcs.08.0001`–`dcs.08.0008` (reference §4.3); rdbvault
//! reuses `dcs.08.0002` (timed out) and adds `dcs.08.01xx` in the same form
//! for failures DCS does not name. The README lists them all.

use crate::objects::ObjectError;
use crate::replication::ConnError;
use crate::replication::snapshot::SnapshotError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    TimedOut,
    Unreachable,
    AuthRefused,
    ReplicationRefused,
    ConnectionLost,
    Protocol,
    Verification,
    Storage,
    Interrupted,
    Internal,
    TopologyChanged,
    PermissionMissing,
    TargetRefused,
    Incompatible,
    TooLarge,
}

impl FailureKind {
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::TimedOut => "dcs.08.0002",
            FailureKind::Unreachable => "dcs.08.0101",
            FailureKind::AuthRefused => "dcs.08.0102",
            FailureKind::ReplicationRefused => "dcs.08.0103",
            FailureKind::ConnectionLost => "dcs.08.0104",
            FailureKind::Protocol => "dcs.08.0105",
            FailureKind::Verification => "dcs.08.0106",
            FailureKind::Storage => "dcs.08.0107",
            FailureKind::Interrupted => "dcs.08.0108",
            FailureKind::Internal => "dcs.08.0109",
            FailureKind::TopologyChanged => "dcs.08.0110",
            FailureKind::PermissionMissing => "dcs.08.0111",
            FailureKind::TargetRefused => "dcs.08.0007",
            FailureKind::Incompatible => "dcs.08.0112",
            FailureKind::TooLarge => "dcs.08.0113",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            FailureKind::TimedOut => {
                "execution timed out (connect, first payload byte, or a stall)"
            }
            FailureKind::Unreachable => "no node of the instance could be reached",
            FailureKind::AuthRefused => "Redis refused the credentials",
            FailureKind::ReplicationRefused => "Redis refused the replication handshake",
            FailureKind::ConnectionLost => "the connection closed in the middle of the transfer",
            FailureKind::Protocol => "the server did not speak the Redis protocol",
            FailureKind::Verification => {
                "the RDB payload failed verification (magic, version, EOF, CRC-64)"
            }
            FailureKind::Storage => "reading or writing the object store failed",
            FailureKind::Interrupted => "the service stopped during the backup or restore",
            FailureKind::Internal => "internal error (metadata store)",
            FailureKind::TopologyChanged => {
                "the cluster failed over or resharded, or the replica copied changed, during the backup"
            }
            FailureKind::PermissionMissing => {
                "the ACL user lacks a right the backup or restore needs (the message names it)"
            }
            FailureKind::TargetRefused => {
                "data sync failed during restore: the target refused a write (the message says which and why)"
            }
            FailureKind::Incompatible => {
                "the backup cannot be made or restored as asked (the message says why)"
            }
            FailureKind::TooLarge => {
                "the snapshot outgrew the backup size limit (max_backup_bytes)"
            }
        }
    }

    #[cfg(test)]
    pub const ALL: [FailureKind; 15] = [
        FailureKind::TimedOut,
        FailureKind::Unreachable,
        FailureKind::AuthRefused,
        FailureKind::ReplicationRefused,
        FailureKind::ConnectionLost,
        FailureKind::Protocol,
        FailureKind::Verification,
        FailureKind::Storage,
        FailureKind::Interrupted,
        FailureKind::Internal,
        FailureKind::TopologyChanged,
        FailureKind::PermissionMissing,
        FailureKind::TargetRefused,
        FailureKind::Incompatible,
        FailureKind::TooLarge,
    ];
}

/// A failure with the operator-facing message stored in the record.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl std::fmt::Display) -> Failure {
        Failure {
            kind,
            message: message.to_string(),
        }
    }
}

impl From<ConnError> for Failure {
    fn from(e: ConnError) -> Failure {
        Failure::new(Failure::from_conn_kind(&e), e)
    }
}

impl From<SnapshotError> for Failure {
    fn from(e: SnapshotError) -> Failure {
        let kind = match &e {
            SnapshotError::Conn(c) => return Failure::new(Failure::from_conn_kind(c), &e),
            SnapshotError::Refused { .. } => FailureKind::ReplicationRefused,
            SnapshotError::ForkTimeout { .. }
            | SnapshotError::FirstByteTimeout { .. }
            | SnapshotError::Stalled { .. } => FailureKind::TimedOut,
            SnapshotError::Closed { .. } | SnapshotError::Io { .. } => FailureKind::ConnectionLost,
            SnapshotError::Protocol { .. } => FailureKind::Protocol,
            SnapshotError::NotFrozen { .. } => FailureKind::TopologyChanged,
        };
        Failure::new(kind, e)
    }
}

impl Failure {
    fn from_conn_kind(c: &ConnError) -> FailureKind {
        match c {
            ConnError::NoPermission { .. } => FailureKind::PermissionMissing,
            ConnError::Connect { .. } | ConnError::Tls { .. } | ConnError::NoAddress => {
                FailureKind::Unreachable
            }
            ConnError::ConnectTimeout { .. } | ConnError::Timeout { .. } => FailureKind::TimedOut,
            ConnError::Auth(_) => FailureKind::AuthRefused,
            ConnError::Command { .. } => FailureKind::ReplicationRefused,
            ConnError::Resp { source, .. } => match source {
                crate::replication::resp::RespError::Protocol(_) => FailureKind::Protocol,
                _ => FailureKind::ConnectionLost,
            },
        }
    }
}

impl From<ObjectError> for Failure {
    fn from(e: ObjectError) -> Failure {
        Failure::new(FailureKind::Storage, e)
    }
}

impl From<rdb::RdbError> for Failure {
    fn from(e: rdb::RdbError) -> Failure {
        Failure::new(FailureKind::Verification, e)
    }
}

impl From<crate::meta::MetaError> for Failure {
    fn from(e: crate::meta::MetaError) -> Failure {
        Failure::new(FailureKind::Internal, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_in_dcs_form() {
        let mut codes: Vec<_> = FailureKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), FailureKind::ALL.len());
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 11 && c.starts_with("dcs.08."))
        );
    }

    #[test]
    fn readme_lists_every_failure_code() {
        let readme = include_str!("../../../../README.md");
        for k in FailureKind::ALL {
            let row = format!("| {} | {} |", k.code(), k.meaning());
            assert!(readme.contains(&row), "README lacks: {row}");
        }
    }
}
