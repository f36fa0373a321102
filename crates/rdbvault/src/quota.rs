//! Per-project quotas: how many backups a project may hold and how many
//! bytes they may take in the store. Checked before a backup is queued,
//! manual (`DCS.4970`/`DCS.4971`) or automatic (recorded `failed` with
//! `dcs.08.0114`); a backup that starts under the quota may end above it by
//! its own size, never by more.

use crate::config::Config;
use crate::meta::{Meta, MetaError};

#[derive(Debug, Clone, Copy, Default)]
pub struct Quota {
    /// 0: no limit.
    pub max_backups: u64,
    /// 0: no limit.
    pub max_bytes: u64,
}

/// What a project holds against which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    #[error("the project holds {held} backup(s), its quota is {quota} (project_max_backups)")]
    Backups { held: u64, quota: u64 },
    #[error(
        "the project's backups hold {held} bytes, its quota is {quota} (project_max_stored_bytes)"
    )]
    Bytes { held: u64, quota: u64 },
}

impl Quota {
    pub fn from_config(config: &Config) -> Quota {
        Quota {
            max_backups: config.project_max_backups,
            max_bytes: config.project_max_stored_bytes,
        }
    }

    /// `Ok(Err(..))` when one more backup of `project_id` would go over.
    pub async fn check(
        &self,
        meta: &Meta,
        project_id: &str,
    ) -> Result<Result<(), Exceeded>, MetaError> {
        if self.max_backups == 0 && self.max_bytes == 0 {
            return Ok(Ok(()));
        }
        let usage = meta.project_usage(project_id).await?;
        if self.max_backups > 0 && usage.backups >= self.max_backups {
            return Ok(Err(Exceeded::Backups {
                held: usage.backups,
                quota: self.max_backups,
            }));
        }
        if self.max_bytes > 0 && usage.bytes >= self.max_bytes {
            return Ok(Err(Exceeded::Bytes {
                held: usage.bytes,
                quota: self.max_bytes,
            }));
        }
        Ok(Ok(()))
    }
}
