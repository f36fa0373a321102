//! Automatic backups: instances' backup policies ([`policy`]) and the
//! scheduler that runs them and applies their retention.
//!
//! Every node runs the scheduler; each round it asks every automatic policy
//! what is due *now* (by the injected [`Clock`]): a backup due and not yet
//! made is created — once per instance and due date across all nodes, the
//! metadata store's unique index decides — and so catches up after a stop
//! while its window is still open. One that cannot start because the
//! instance is busy (a backup or restore running) is tried again next
//! round; if its window closes first, a `failed` record says so
//! (`dcs.08.0008`). Automatic backups older than `save_days` become
//! `expired` and their files are deleted; manual backups are never touched.

pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::jobs::{JobContext, Workers};
use crate::meta::{MetaError, NewBackup, Refusal, StoredPolicy};
use crate::object_keys;

/// `error_code` of an automatic backup whose window closed before it could
/// start (DCS's "backup window expired").
pub const WINDOW_CLOSED: &str = "dcs.08.0008";
/// The `error_code` of an automatic backup the project's quota refused.
pub const QUOTA_EXCEEDED: &str = "dcs.08.0114";

/// The time the scheduler goes by; tests move their own.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands where it is set: for tests and simulations.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        if let Ok(mut now) = self.0.lock() {
            *now = at;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.lock().map(|now| *now).unwrap_or_else(|_| Utc::now())
    }
}

/// What one round did, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub started: usize,
    pub postponed: usize,
    pub missed: usize,
    pub expired: usize,
}

/// The scheduler of one node.
pub struct Scheduler {
    ctx: Arc<JobContext>,
    workers: Workers,
    clock: Arc<dyn Clock>,
    /// Backups this node found due but could not start, by instance and
    /// due date, with why and when their window closes.
    postponed: Mutex<HashMap<(String, String), Postponed>>,
}

struct Postponed {
    project_id: String,
    period: String,
    closes: DateTime<Utc>,
    why: String,
}

impl Scheduler {
    pub fn new(ctx: Arc<JobContext>, workers: Workers, clock: Arc<dyn Clock>) -> Scheduler {
        Scheduler {
            ctx,
            workers,
            clock,
            postponed: Mutex::default(),
        }
    }

    /// One round over every automatic policy.
    pub async fn round(&self) -> Result<Round, MetaError> {
        let now = self.clock.now();
        let mut round = Round::default();
        for stored in self.ctx.meta.auto_policies().await? {
            self.start_due(&stored, now, &mut round).await?;
            round.expired += self.expire(&stored, now).await?;
        }
        round.missed += self.close_windows(now).await?;
        if round != Round::default() {
            tracing::info!(
                started = round.started,
                postponed = round.postponed,
                missed = round.missed,
                expired = round.expired,
                "scheduler round"
            );
        }
        Ok(round)
    }

    async fn start_due(
        &self,
        stored: &StoredPolicy,
        now: DateTime<Utc>,
        round: &mut Round,
    ) -> Result<(), MetaError> {
        let Some(due) = stored.policy.due(now) else {
            return Ok(());
        };
        let date = due.date.to_string();
        if self
            .ctx
            .meta
            .has_due_backup(&stored.instance_id, &date)
            .await?
        {
            return Ok(());
        }
        let Some(instance) = self.ctx.meta.instance_by_id(&stored.instance_id).await? else {
            return Ok(());
        };
        let period = stored
            .policy
            .plan
            .as_ref()
            .map(|p| p.window.to_string())
            .unwrap_or_default();
        let new = automatic(&instance.id, &instance.project_id, &period, &date);
        let key = (instance.id.clone(), date.clone());
        if let Err(exceeded) = self
            .ctx
            .quota
            .check(&self.ctx.meta, &instance.project_id)
            .await?
        {
            // Waiting would not help: the quota frees only when the operator acts.
            let message = format!("the automatic backup of {date} was not taken: {exceeded}");
            if self
                .ctx
                .meta
                .record_missed_backup(&new, QUOTA_EXCEEDED, &message)
                .await?
            {
                tracing::warn!(instance_id = %instance.id, due = %date, %exceeded, "automatic backup refused by the project quota");
            }
            self.forget(&key);
            return Ok(());
        }
        match self.ctx.meta.create_backup(new).await {
            Ok(backup) => {
                self.forget(&key);
                self.workers.wake();
                round.started += 1;
                tracing::info!(backup_id = %backup.id, instance_id = %instance.id, due = %date,
                    period = %period, "automatic backup started");
            }
            Err(MetaError::Refused(Refusal::AlreadyDue)) => self.forget(&key),
            Err(MetaError::Conflict | MetaError::Refused(Refusal::BackingUp)) => {
                self.postpone(
                    key,
                    &instance.project_id,
                    &period,
                    due.closes,
                    "a backup was running",
                );
                round.postponed += 1;
            }
            Err(MetaError::Refused(Refusal::Restoring)) => {
                self.postpone(
                    key,
                    &instance.project_id,
                    &period,
                    due.closes,
                    "a restore was running",
                );
                round.postponed += 1;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn postpone(
        &self,
        key: (String, String),
        project_id: &str,
        period: &str,
        closes: DateTime<Utc>,
        why: &str,
    ) {
        if let Ok(mut p) = self.postponed.lock() {
            p.insert(
                key,
                Postponed {
                    project_id: project_id.to_string(),
                    period: period.to_string(),
                    closes,
                    why: why.to_string(),
                },
            );
        }
    }

    fn forget(&self, key: &(String, String)) {
        if let Ok(mut p) = self.postponed.lock() {
            p.remove(key);
        }
    }

    /// Postponed backups whose window closed: a `failed` record each
    /// (one across nodes: the due date is unique).
    async fn close_windows(&self, now: DateTime<Utc>) -> Result<usize, MetaError> {
        let closed: Vec<((String, String), Postponed)> = match self.postponed.lock() {
            Ok(mut p) => {
                let keys: Vec<_> = p
                    .iter()
                    .filter(|(_, v)| v.closes <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.into_iter()
                    .filter_map(|k| p.remove(&k).map(|v| (k, v)))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        let mut missed = 0;
        for ((instance_id, date), p) in closed {
            let new = automatic(&instance_id, &p.project_id, &p.period, &date);
            let message = format!(
                "the backup window {} of {date} closed before the backup could start: {}",
                p.period, p.why
            );
            if self
                .ctx
                .meta
                .record_missed_backup(&new, WINDOW_CLOSED, &message)
                .await?
            {
                tracing::warn!(instance_id = %instance_id, due = %date, reason = %p.why, "automatic backup missed its window");
                missed += 1;
            }
        }
        Ok(missed)
    }

    /// Retention: automatic backups older than `save_days` expire and
    /// their files go.
    async fn expire(&self, stored: &StoredPolicy, now: DateTime<Utc>) -> Result<usize, MetaError> {
        let Some(days) = stored.policy.save_days else {
            return Ok(0);
        };
        let before = now - chrono::TimeDelta::days(i64::from(days));
        let expired = self
            .ctx
            .meta
            .expire_backups(&stored.instance_id, before)
            .await?;
        for backup in &expired {
            match self
                .ctx
                .objects
                .delete_prefix(&object_keys::backup_prefix(backup))
                .await
            {
                Ok(_) => tracing::info!(backup_id = %backup.id, instance_id = %backup.instance_id,
                    save_days = days, "automatic backup expired; its files were deleted"),
                Err(e) => tracing::error!(backup_id = %backup.id, error = %e,
                    "an expired backup's files could not be deleted; the store sweep will report them"),
            }
        }
        Ok(expired.len())
    }
}

/// An automatic backup's record, RDB like every automatic backup.
fn automatic(instance_id: &str, project_id: &str, period: &str, due: &str) -> NewBackup {
    NewBackup {
        instance_id: instance_id.to_string(),
        project_id: project_id.to_string(),
        backup_type: "auto".into(),
        backup_format: "rdb".into(),
        remark: None,
        period: Some(period.to_string()),
        due: Some(due.to_string()),
    }
}
