//! The job queue: work any node may claim, kept alive by a heartbeat so
//! another node can tell when the one running it died.
//!
//! A job moves only forward, `queued → running → succeeded | failed |
//! cancelled` (and `queued → cancelled` when its target goes first).
//! [`JobState::can_become`] is the one statement of that rule; every UPDATE
//! here is conditional on the state it leaves, so two nodes (or a worker and
//! a recovery) can never both move the same job.

use chrono::{DateTime, Utc};

use super::{Meta, MetaError, Result, now_ms};

/// What a job works on. Stored as text: `backup`, `restore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    Backup,
    Restore,
}

impl JobKind {
    pub const ALL: [JobKind; 2] = [JobKind::Backup, JobKind::Restore];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
        }
    }

    fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a job stands. Stored as text: `queued`, `running`, `done` (for
/// succeeded, as rows have always said), `failed`, `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// The transitions a job may make.
    pub fn can_become(self, next: JobState) -> bool {
        matches!(
            (self, next),
            (JobState::Queued, JobState::Running | JobState::Cancelled)
                | (
                    JobState::Running,
                    JobState::Succeeded | JobState::Failed | JobState::Cancelled
                )
        )
    }
}

/// A job as a worker or the recovery holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    /// The record it works on (a backup's or a restore's id).
    pub target_id: String,
}

type JobRow = (String, String, String);

fn job(row: JobRow) -> Result<Job> {
    let (id, kind, target_id) = row;
    let kind = JobKind::parse(&kind)
        .ok_or_else(|| MetaError::Corrupt(format!("job {id}: kind {kind:?}")))?;
    Ok(Job {
        id,
        kind,
        target_id,
    })
}

/// The running jobs (`o`) of the project of the job `j` whose target is the
/// backup `b` or the restore `r` (a scalar subquery, to compare or order by).
const RUNNING_IN_PROJECT: &str = "SELECT COUNT(*) FROM jobs o \
    LEFT JOIN backups ob ON ob.id = o.target_id LEFT JOIN restores orr ON orr.id = o.target_id \
    WHERE o.state = 'running' \
    AND COALESCE(ob.project_id, orr.project_id) = COALESCE(b.project_id, r.project_id)";

impl Meta {
    /// Queues a job for `target_id`, inside the caller's transaction (the
    /// record it works on is created in the same one).
    pub(super) async fn enqueue_job(
        conn: &mut sqlx::AnyConnection,
        kind: JobKind,
        target_id: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (id, kind, target_id, state, created_at, updated_at) \
             VALUES ($1, $2, $3, 'queued', $4, $4)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(kind.as_str())
        .bind(target_id)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Claims the next job for `owner`, fairly: the queued job of the
    /// project with the fewest jobs running (on every node) goes first,
    /// oldest first among equals, so one project's queue cannot starve
    /// another's; and none of a project that already runs `per_project`
    /// jobs on this node (0: no such cap), so it cannot take every worker.
    pub async fn claim_job(&self, owner: &str, per_project: usize) -> Result<Option<Job>> {
        let cap = i64::try_from(per_project).unwrap_or(i64::MAX);
        let choose = format!(
            "SELECT j.id, j.kind, j.target_id FROM jobs j \
             LEFT JOIN backups b ON b.id = j.target_id LEFT JOIN restores r ON r.id = j.target_id \
             WHERE j.state = 'queued' \
             AND ($2 = 0 OR ({running} AND o.owner = $1) < $2) \
             ORDER BY ({running}), j.created_at, j.id LIMIT 1",
            running = RUNNING_IN_PROJECT
        );
        if self.backend() == super::Backend::Postgres {
            let now = now_ms();
            let row: Option<JobRow> = sqlx::query_as(&format!(
                "UPDATE jobs SET state = 'running', owner = $1, heartbeat_at = $3, updated_at = $3, \
                 attempts = attempts + 1 WHERE id = (SELECT id FROM ({choose} FOR UPDATE OF j SKIP LOCKED) c) \
                 RETURNING id, kind, target_id"
            ))
            .bind(owner)
            .bind(cap)
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
            return row.map(job).transpose();
        }
        loop {
            let candidate: Option<JobRow> = sqlx::query_as(&choose)
                .bind(owner)
                .bind(cap)
                .fetch_optional(self.pool())
                .await?;
            let Some(row) = candidate else {
                return Ok(None);
            };
            let now = now_ms();
            let claimed = sqlx::query(
                "UPDATE jobs SET state = 'running', owner = $1, heartbeat_at = $2, updated_at = $2, \
                 attempts = attempts + 1 WHERE id = $3 AND state = 'queued'",
            )
            .bind(owner)
            .bind(now)
            .bind(&row.0)
            .execute(self.pool())
            .await?;
            if claimed.rows_affected() == 1 {
                return job(row).map(Some);
            }
        }
    }

    /// `running → outcome`; false when the job was no longer running (a
    /// recovery on another node took it over, believing this one dead).
    pub async fn finish_job(&self, job_id: &str, outcome: JobState) -> Result<bool> {
        if !JobState::Running.can_become(outcome) {
            return Err(MetaError::Corrupt(format!(
                "a running job cannot become {}",
                outcome.as_str()
            )));
        }
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, updated_at = $2 WHERE id = $3 AND state = 'running'",
        )
        .bind(outcome.as_str())
        .bind(now_ms())
        .bind(job_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps the job visibly alive for other nodes' crash detection.
    pub async fn heartbeat_job(&self, job_id: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET heartbeat_at = $1 WHERE id = $2 AND state = 'running'")
            .bind(now_ms())
            .bind(job_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// `queued → cancelled` for the jobs of a target that is gone.
    pub async fn cancel_queued_jobs(&self, target_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', updated_at = $1 WHERE target_id = $2 AND state = 'queued'",
        )
        .bind(now_ms())
        .bind(target_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Running jobs whose node stopped: those `owner` (this node, at its
    /// start) was running, and those of any node whose heartbeat is older
    /// than `stale_before`.
    pub async fn orphaned_jobs(
        &self,
        owner: Option<&str>,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<Job>> {
        let rows: Vec<JobRow> = sqlx::query_as(
            "SELECT id, kind, target_id FROM jobs WHERE state = 'running' \
             AND (owner = $1 OR heartbeat_at < $2) ORDER BY created_at, id",
        )
        .bind(owner.unwrap_or(""))
        .bind(stale_before.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(job).collect()
    }

    /// How many jobs of each kind are in each state (for `/metrics`).
    pub async fn job_counts(&self) -> Result<Vec<(JobKind, JobState, i64)>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state")
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, state, n)| {
                Some((JobKind::parse(&kind)?, JobState::parse(&state)?, n))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_move_only_forward() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            assert!(!s.can_become(JobState::Queued), "{s:?} back to queued");
            if s.is_final() {
                assert!(JobState::ALL.iter().all(|&n| !s.can_become(n)));
            }
        }
        assert!(JobState::Queued.can_become(JobState::Running));
        assert!(!JobState::Queued.can_become(JobState::Succeeded));
        assert!(JobState::Running.can_become(JobState::Failed));
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), Some(k));
        }
    }
}
