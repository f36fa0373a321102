//! Backup health for `/metrics`: what an operator alerts on, read from the
//! records, so every node sharing the store reports the same fleet-wide
//! values.
//!
//! Two aggregate queries per refresh: one row per registered instance
//! (its last success, the failures since, its policy, its last restore),
//! and one list of counts (backups by instance, status and error code,
//! restores by status, queued jobs by kind).

use chrono::{DateTime, Utc};

use super::backups::BackupStatus;
use super::jobs::JobKind;
use super::restores::RestoreStatus;
use super::{Meta, Result, from_ms};

/// Every backup status, for series that show zeros rather than vanish.
pub const BACKUP_STATUSES: [BackupStatus; 6] = [
    BackupStatus::Waiting,
    BackupStatus::Backuping,
    BackupStatus::Succeed,
    BackupStatus::Failed,
    BackupStatus::Expired,
    BackupStatus::Deleted,
];

/// Every restore status, likewise.
pub const RESTORE_STATUSES: [RestoreStatus; 4] = [
    RestoreStatus::Waiting,
    RestoreStatus::Restoring,
    RestoreStatus::Succeed,
    RestoreStatus::Failed,
];

/// The fleet's backup health at one moment.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub instances: Vec<InstanceHealth>,
    /// Backup records by instance, status and error code (`""` when none).
    pub backups: Vec<BackupCount>,
    /// Restore records by status.
    pub restores: Vec<(String, i64)>,
    /// The oldest queued job of each kind that has one: when it was queued.
    pub oldest_queued: Vec<(JobKind, DateTime<Utc>)>,
}

#[derive(Debug, Clone)]
pub struct InstanceHealth {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub last_success: Option<LastSuccess>,
    /// Failed backups that finished after the last success (all of them
    /// when there was none).
    pub consecutive_failures: i64,
    /// Set only for an automatic policy.
    pub auto_policy: Option<AutoPolicy>,
    /// The status of the newest restore into this instance.
    pub last_restore: Option<String>,
}

/// The newest backup of an instance that succeeded. Expired backups count
/// (they succeeded; retention removed them later), so a series does not
/// vanish because retention ran; deleted ones do not: a record deleted
/// through the API no longer says whether it had succeeded.
#[derive(Debug, Clone)]
pub struct LastSuccess {
    pub finished_at: DateTime<Utc>,
    /// From `started_at` (or `created_at`, if it never recorded a start)
    /// to `finished_at`.
    pub duration: std::time::Duration,
    pub bytes: i64,
}

#[derive(Debug, Clone)]
pub struct AutoPolicy {
    /// When the policy was last set.
    pub set_at: DateTime<Utc>,
    /// The longest wait between two planned days, in days (1 for a daily
    /// policy, 7 for one day a week); `None` when no day parses.
    pub longest_gap_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupCount {
    pub instance_id: String,
    pub status: String,
    pub error_code: String,
    pub count: i64,
    /// The summed `size` of these records (meaningful for `succeed`).
    pub bytes: i64,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: String,
    name: String,
    project_id: String,
    policy_type: Option<String>,
    policy_days: Option<String>,
    policy_updated_at: Option<i64>,
    ok_created_at: Option<i64>,
    ok_started_at: Option<i64>,
    ok_finished_at: Option<i64>,
    ok_size: Option<i64>,
    consecutive_failures: i64,
    restore_status: Option<String>,
}

// The last success and the last restore are picked by correlated
// subqueries in the joins, which both SQLite and PostgreSQL accept and
// answer from the per-instance indexes.
const INSTANCES: &str = "\
SELECT i.id AS id, i.name AS name, i.project_id AS project_id, \
  p.backup_type AS policy_type, p.backup_at AS policy_days, p.updated_at AS policy_updated_at, \
  ok.created_at AS ok_created_at, ok.started_at AS ok_started_at, \
  ok.finished_at AS ok_finished_at, ok.size AS ok_size, \
  (SELECT COUNT(*) FROM backups f WHERE f.instance_id = i.id AND f.status = 'failed' \
     AND COALESCE(f.finished_at, f.created_at) > COALESCE(ok.finished_at, $1)) AS consecutive_failures, \
  r.status AS restore_status \
FROM instances i \
LEFT JOIN backup_policies p ON p.instance_id = i.id \
LEFT JOIN backups ok ON ok.id = (SELECT b.id FROM backups b WHERE b.instance_id = i.id \
  AND b.status IN ('succeed', 'expired') AND b.finished_at IS NOT NULL \
  ORDER BY b.finished_at DESC, b.id DESC LIMIT 1) \
LEFT JOIN restores r ON r.id = (SELECT x.id FROM restores x WHERE x.target_instance_id = i.id \
  ORDER BY x.created_at DESC, x.id DESC LIMIT 1) \
ORDER BY i.project_id, i.name";

// One statement for every count: sources told apart by the first column.
// SUM of a BIGINT is NUMERIC in PostgreSQL, which the Any driver cannot
// decode: hence the casts.
const COUNTS: &str = "\
SELECT 'backup' AS source, instance_id AS id, status, COALESCE(error_code, '') AS code, \
  COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS v \
  FROM backups GROUP BY instance_id, status, error_code \
UNION ALL \
SELECT 'restore', '', status, '', COUNT(*), CAST(0 AS BIGINT) FROM restores GROUP BY status \
UNION ALL \
SELECT 'job', kind, state, '', COUNT(*), MIN(created_at) FROM jobs WHERE state = 'queued' \
  GROUP BY kind, state";

impl Meta {
    /// The health of every instance, and the fleet's counts.
    pub async fn health(&self) -> Result<Health> {
        let rows: Vec<InstanceRow> = sqlx::query_as(INSTANCES)
            // Before any time a record can have: every failure counts
            // while there was no success.
            .bind(i64::MIN)
            .fetch_all(self.pool())
            .await?;
        let instances = rows.into_iter().map(instance).collect();
        let counts: Vec<(String, String, String, String, i64, i64)> =
            sqlx::query_as(COUNTS).fetch_all(self.pool()).await?;
        let mut health = Health {
            instances,
            ..Health::default()
        };
        for (source, id, status, code, n, v) in counts {
            match source.as_str() {
                "backup" => health.backups.push(BackupCount {
                    instance_id: id,
                    status,
                    error_code: code,
                    count: n,
                    bytes: v,
                }),
                "restore" => health.restores.push((status, n)),
                // A kind this build does not know is left out, as
                // `job_counts` does.
                _ => {
                    if let Some(kind) = JobKind::ALL.into_iter().find(|k| k.as_str() == id) {
                        health.oldest_queued.push((kind, from_ms(v)));
                    }
                }
            }
        }
        Ok(health)
    }
}

fn instance(r: InstanceRow) -> InstanceHealth {
    let last_success = match (r.ok_finished_at, r.ok_created_at) {
        (Some(finished), Some(created)) => {
            let began = r.ok_started_at.unwrap_or(created);
            // A clock that went back between start and finish gives 0, not
            // a negative duration.
            let ms = u64::try_from(finished.saturating_sub(began)).unwrap_or(0);
            Some(LastSuccess {
                finished_at: from_ms(finished),
                duration: std::time::Duration::from_millis(ms),
                bytes: r.ok_size.unwrap_or(0),
            })
        }
        _ => None,
    };
    let auto_policy = match (r.policy_type.as_deref(), r.policy_updated_at) {
        (Some("auto"), Some(updated)) => Some(AutoPolicy {
            set_at: from_ms(updated),
            longest_gap_days: r.policy_days.as_deref().and_then(longest_gap_days),
        }),
        _ => None,
    };
    InstanceHealth {
        id: r.id,
        name: r.name,
        project_id: r.project_id,
        last_success,
        consecutive_failures: r.consecutive_failures,
        auto_policy,
        last_restore: r.restore_status,
    }
}

/// The longest wait, in days, from one planned weekday (`1,3,5`: 1 is
/// Monday) to the next, around the week: how long an instance can go
/// without an automatic backup while every one succeeds.
pub fn longest_gap_days(days: &str) -> Option<u32> {
    let mut days: Vec<u32> = days
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .filter(|d| (1..=7).contains(d))
        .collect();
    days.sort_unstable();
    days.dedup();
    let (first, last) = (*days.first()?, *days.last()?);
    let around = first + 7 - last;
    Some(days.windows(2).map(|w| w[1] - w[0]).fold(around, u32::max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_between_planned_days() {
        assert_eq!(longest_gap_days("1,2,3,4,5,6,7"), Some(1));
        assert_eq!(longest_gap_days("3"), Some(7));
        // Friday to Monday.
        assert_eq!(longest_gap_days("1,3,5"), Some(3));
        assert_eq!(longest_gap_days("7,1"), Some(6));
        assert_eq!(longest_gap_days("2,2,9,x"), Some(7));
        assert_eq!(longest_gap_days(""), None);
        assert_eq!(longest_gap_days("0,8"), None);
    }
}
