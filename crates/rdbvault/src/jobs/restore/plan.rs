//! How a restore writes: the method asked for, checked against the target
//! and the backup, and the reason recorded with it (`method_used`).
//!
//! Redis refuses a `RESTORE` payload (and an RDB file) of a newer RDB
//! version than its own, so which method works is decided by the target's
//! release: a backup newer than the target is rebuilt with native commands.

use std::collections::HashMap;

use super::read::Contents;
use super::write::How;
use crate::jobs::failure::{Failure, FailureKind};
use crate::meta::{BackupFile, Instance, Mode, Restore, RestoreMethod, RestoreMode};
use crate::object_keys::Format;

/// A target's release, as the writers need it.
#[derive(Debug, Clone)]
pub(super) struct Version {
    /// `redis_version` as reported.
    pub redis: String,
    pub target: rdb::commands::Target,
    /// The newest RDB version the release reads.
    pub rdb: u32,
}

impl Version {
    /// From `INFO server`; `None` without a parsable `redis_version`.
    pub(super) fn of(server: &HashMap<String, String>) -> Option<Version> {
        let redis = server.get("redis_version")?.clone();
        let target = rdb::commands::Target::parse(&redis)?;
        Some(Version {
            rdb: rdb_version_read_by(target),
            redis,
            target,
        })
    }
}

/// The RDB version each release writes and reads (rdb.h `RDB_VERSION`).
fn rdb_version_read_by(t: rdb::commands::Target) -> u32 {
    match (t.major, t.minor) {
        (0..=3, _) => 7,
        (4, _) => 8,
        (5 | 6, _) => 9,
        (7, 0 | 1) => 10,
        (7, 2 | 3) => 11,
        _ => 12,
    }
}

/// How the keys get into the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    /// The target loads the file itself ([`super::replicate`]); with
    /// `fallback`, keys are written instead when it cannot.
    Replicate { fallback: bool },
    /// Keys written by rdbvault ([`super::write`]).
    Write(How),
}

/// The method chosen, and why, for the record.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub method: Method,
    why: String,
}

impl Plan {
    pub(super) fn describe(&self) -> String {
        let name = match self.method {
            Method::Replicate { .. } => "replicate",
            Method::Write(How::Restore { .. }) => "restore",
            Method::Write(How::Commands) => "commands",
        };
        format!("{name}: {}", self.why)
    }

    /// What `auto` does when `replicate` could not be used, and why.
    pub(super) fn fallback(&self, why: &str) -> Plan {
        Plan {
            method: Method::Write(How::Restore { fallback: true }),
            why: format!(
                "pipelined RESTORE; replicate was tried first and could not be used: {why}"
            ),
        }
    }
}

/// The method for `restore` of `files` into `target`.
pub(super) fn choose(
    restore: &Restore,
    target: &Instance,
    format: Format,
    files: &[BackupFile],
    contents: &Contents,
    version: &Version,
) -> Result<Plan, Failure> {
    if format == Format::Aof {
        return replay(restore.method, version);
    }
    let newest = files
        .iter()
        .filter_map(|f| f.rdb_version)
        .max()
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    let readable = newest <= version.rdb;
    let versions = format!(
        "the backup is RDB {newest}, the target (Redis {}) reads RDB {}",
        version.redis, version.rdb
    );
    // Why the target cannot simply load the file, if it cannot.
    let unloadable = if !readable {
        Some(versions.clone())
    } else if target.mode == Mode::Cluster {
        Some("the target is a cluster".to_string())
    } else if restore.mode == RestoreMode::Merge {
        Some("merge keeps the target's keys, a load replaces them".to_string())
    } else if let Some(why) = refuses_replicate(contents) {
        Some(why)
    } else if files.len() != 1 {
        Some(format!(
            "the backup has {} files (a cluster's shards), a server loads one",
            files.len()
        ))
    } else {
        None
    };
    let write = |how, why: String| {
        Ok(Plan {
            method: Method::Write(how),
            why,
        })
    };
    match (restore.method, unloadable) {
        (RestoreMethod::Auto, None) => Ok(Plan {
            method: Method::Replicate { fallback: true },
            why: format!("the target loads the RDB file itself ({versions})"),
        }),
        (RestoreMethod::Replicate, None) => Ok(Plan {
            method: Method::Replicate { fallback: false },
            why: format!("the target loads the RDB file itself, as asked ({versions})"),
        }),
        (RestoreMethod::Replicate, Some(why)) => Err(Failure::new(
            FailureKind::Incompatible,
            format!("the method `replicate` cannot work: {why}"),
        )),
        (RestoreMethod::Auto, Some(why)) if readable => write(
            How::Restore { fallback: true },
            format!(
                "pipelined RESTORE ({versions}; a payload it refuses is rebuilt with commands){}; \
                 not replicate: {why}",
                cluster_note(target)
            ),
        ),
        (RestoreMethod::Auto | RestoreMethod::Commands, _) => write(
            How::Commands,
            format!("values rebuilt with native commands ({versions})"),
        ),
        (RestoreMethod::Restore, _) if readable => write(
            How::Restore { fallback: false },
            format!(
                "pipelined RESTORE, as asked ({versions}){}",
                cluster_note(target)
            ),
        ),
        (RestoreMethod::Restore, _) => Err(Failure::new(
            FailureKind::Incompatible,
            format!("the method `restore` cannot work: {versions}; `commands` or `auto` can"),
        )),
    }
}

/// Why what a file holds cannot be loaded by the target itself, if it
/// cannot: a server stops (exits) on a module value it has no module for.
pub(super) fn refuses_replicate(contents: &Contents) -> Option<String> {
    (!contents.modules.is_empty()).then(|| {
        format!(
            "the backup holds module values ({}); a target without the module would stop loading it",
            contents.modules.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

/// An AOF backup holds commands: they are replayed, whatever `auto` would
/// do with a dump.
fn replay(method: RestoreMethod, version: &Version) -> Result<Plan, Failure> {
    match method {
        RestoreMethod::Auto | RestoreMethod::Commands => Ok(Plan {
            method: Method::Write(How::Commands),
            why: format!(
                "the AOF backup's commands replayed into Redis {} (commands of the source's release)",
                version.redis
            ),
        }),
        RestoreMethod::Replicate | RestoreMethod::Restore => Err(Failure::new(
            FailureKind::Incompatible,
            format!(
                "an AOF backup holds commands, not an RDB dump: `{}` cannot read it; `auto` or `commands` replay it",
                method.as_str()
            ),
        )),
    }
}

fn cluster_note(target: &Instance) -> &'static str {
    match target.mode {
        Mode::Cluster => ", each key to the master of its slot",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: &str) -> Version {
        Version::of(&HashMap::from([(
            "redis_version".to_string(),
            v.to_string(),
        )]))
        .expect("parsed")
    }

    #[test]
    fn releases_read_their_rdb_versions() {
        assert_eq!(version("6.2.14").rdb, 9);
        assert_eq!(version("7.0.15").rdb, 10);
        assert_eq!(version("7.2.4").rdb, 11);
        assert_eq!(version("7.4.1").rdb, 12);
        assert_eq!(version("8.2.1").rdb, 12);
        assert!(Version::of(&HashMap::new()).is_none());
    }
}
