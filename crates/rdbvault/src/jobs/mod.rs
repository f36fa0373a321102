//! Background work: a bounded pool of workers that claim queued jobs from
//! the metadata store (so any node may run any job), run them, and record
//! the outcome; and the recovery that runs at start.

pub mod backup;
pub mod failure;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::meta::{Backup, BackupStatus, Job, Meta};
use crate::objects::Objects;
use crate::replication::snapshot;
use failure::{Failure, FailureKind};

/// A node whose job heartbeat is older than this is presumed dead.
const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(120);
/// Workers look for work this often even without a wake-up (jobs queued by other nodes).
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub snapshot: snapshot::Timeouts,
}

/// What every job may use.
pub struct JobContext {
    pub meta: Meta,
    pub objects: Objects,
    pub timeouts: Timeouts,
    /// This node's stable id (owner of the jobs it claims).
    pub node_id: String,
    /// TLS settings for instances registered with `tls`.
    pub redis_tls: Arc<tokio_rustls::rustls::ClientConfig>,
    /// Shard transfers at once in a cluster backup (0: all shards, capped).
    pub cluster_parallel: usize,
}

/// Handle of the worker pool, held by the API to wake workers and cancel backups.
#[derive(Clone)]
pub struct Workers {
    wake: Arc<Notify>,
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
}

impl Workers {
    /// Starts `count` workers; they stop when `shutdown` is cancelled,
    /// abandoning their jobs to the recovery of the next start.
    pub fn spawn(
        ctx: Arc<JobContext>,
        count: usize,
        shutdown: CancellationToken,
    ) -> (Workers, JoinSet<()>) {
        let workers = Workers {
            wake: Arc::new(Notify::new()),
            running: Arc::default(),
        };
        let mut set = JoinSet::new();
        for n in 0..count.max(1) {
            let (ctx, workers, shutdown) = (ctx.clone(), workers.clone(), shutdown.clone());
            set.spawn(async move { workers.work(n, ctx, shutdown).await });
        }
        (workers, set)
    }

    /// Tells an idle worker that a job was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops a backup running on this node (its record is already `deleted`).
    pub fn cancel(&self, backup_id: &str) {
        if let Some(token) = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(backup_id).cloned())
        {
            token.cancel();
        }
    }

    async fn work(&self, n: usize, ctx: Arc<JobContext>, shutdown: CancellationToken) {
        loop {
            let job = match ctx.meta.claim_job(&ctx.node_id).await {
                Ok(job) => job,
                Err(e) => {
                    tracing::error!(worker = n, error = %e, "claiming a job failed");
                    None
                }
            };
            match job {
                Some(job) => {
                    let token = shutdown.child_token();
                    self.track(&job.target_id, Some(token.clone()));
                    run_job(&ctx, &job, token).await;
                    self.track(&job.target_id, None);
                }
                None => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    fn track(&self, id: &str, token: Option<CancellationToken>) {
        if let Ok(mut running) = self.running.lock() {
            match token {
                Some(t) => running.insert(id.to_string(), t),
                None => running.remove(id),
            };
        }
    }
}

async fn run_job(ctx: &JobContext, job: &Job, cancel: CancellationToken) {
    match job.kind.as_str() {
        "backup" => run_backup(ctx, job, cancel).await,
        other => {
            tracing::error!(job_id = %job.id, kind = other, "unknown job kind");
            let _ = ctx.meta.finish_job(&job.id, "failed").await;
        }
    }
}

async fn run_backup(ctx: &JobContext, job: &Job, cancel: CancellationToken) {
    let outcome = async {
        let backup = ctx
            .meta
            .get_backup_by_id(&job.target_id)
            .await?
            .ok_or_else(|| Failure::new(FailureKind::Internal, "backup record missing"))?;
        if backup.status != BackupStatus::Waiting {
            return Ok((backup, None));
        }
        let instance = ctx
            .meta
            .get_instance(&backup.project_id, &backup.instance_id)
            .await?
            .ok_or_else(|| Failure::new(FailureKind::Internal, "instance no longer registered"))?;
        let stored = tokio::select! {
            r = backup::take(ctx, &job.id, &backup, &instance) => Some(r),
            _ = cancel.cancelled() => None,
        };
        Ok::<_, Failure>((backup, stored))
    }
    .await;

    let (backup, stored) = match outcome {
        Ok(v) => v,
        Err(f) => {
            tracing::error!(job_id = %job.id, error = %f, "backup job could not run");
            let _ = ctx
                .meta
                .fail_backup(&job.target_id, f.kind.code(), &f.message)
                .await;
            let _ = ctx.meta.finish_job(&job.id, "failed").await;
            return;
        }
    };
    let state = match stored {
        // Not waiting any more (deleted before a worker got to it).
        None if !cancel.is_cancelled() => "cancelled",
        None => {
            // Deleted while running, or the service is stopping: a dropped
            // local upload removed its staging file, an S3 one is aborted by
            // the sweep (now, as its backup is no longer active).
            remove_objects(ctx, &backup).await;
            let interrupted = FailureKind::Interrupted;
            let failed = ctx
                .meta
                .fail_backup(&backup.id, interrupted.code(), interrupted.meaning())
                .await
                .unwrap_or(false);
            if let Err(e) = sweep(ctx).await {
                tracing::warn!(error = %e, "sweep after a cancelled backup failed");
            }
            if failed { "failed" } else { "cancelled" }
        }
        Some(Ok(stored)) => {
            let size = i64::try_from(stored.size).unwrap_or(i64::MAX);
            let used_memory = i64::try_from(stored.used_memory).unwrap_or(i64::MAX);
            match ctx.meta.succeed_backup(&backup.id, size, used_memory).await {
                Ok(true) => {
                    tracing::info!(backup_id = %backup.id, bytes = stored.size, "backup succeeded");
                    "done"
                }
                Ok(false) => {
                    remove_objects(ctx, &backup).await;
                    "cancelled"
                }
                Err(e) => {
                    tracing::error!(backup_id = %backup.id, error = %e, "recording success failed");
                    remove_objects(ctx, &backup).await;
                    let _ = ctx
                        .meta
                        .fail_backup(&backup.id, FailureKind::Internal.code(), &e.to_string())
                        .await;
                    "failed"
                }
            }
        }
        Some(Err(f)) => {
            tracing::warn!(backup_id = %backup.id, code = f.kind.code(), error = %f, "backup failed");
            remove_objects(ctx, &backup).await;
            let _ = ctx
                .meta
                .fail_backup(&backup.id, f.kind.code(), &f.message)
                .await;
            // Shard transfers stopped by another shard's failure left their
            // S3 uploads behind: abort them now.
            if let Err(e) = sweep(ctx).await {
                tracing::warn!(error = %e, "sweep after a failed backup failed");
            }
            "failed"
        }
    };
    if let Err(e) = ctx.meta.finish_job(&job.id, state).await {
        tracing::error!(job_id = %job.id, error = %e, "recording the job's end failed");
    }
}

async fn remove_objects(ctx: &JobContext, backup: &Backup) {
    if let Err(e) = ctx.objects.delete_prefix(&backup::prefix(backup)).await {
        tracing::error!(backup_id = %backup.id, error = %e, "removing partial objects failed");
    }
}

/// Aborts multipart uploads nobody will complete (their backup failed, was
/// deleted, or the node running it died); one the store refuses now stays
/// recorded for the next sweep.
pub async fn sweep(ctx: &JobContext) -> Result<usize, crate::meta::MetaError> {
    let mut aborted = 0;
    for upload in ctx.meta.abandoned_uploads().await? {
        match ctx
            .objects
            .abort_upload(&upload.object_key, &upload.upload_id)
            .await
        {
            Ok(()) => {
                ctx.meta.remove_pending_upload(&upload.upload_id).await?;
                tracing::info!(backup_id = %upload.backup_id, key = %upload.object_key, "abandoned upload aborted");
                aborted += 1;
            }
            Err(e) => {
                tracing::warn!(key = %upload.object_key, error = %e, "abandoned upload not aborted yet")
            }
        }
    }
    Ok(aborted)
}

/// Runs [`sweep`] every `every` until the task is dropped.
pub async fn sweep_forever(ctx: Arc<JobContext>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = sweep(&ctx).await {
            tracing::error!(error = %e, "sweep failed");
        }
    }
}

/// At start: backups this node was running when it stopped (crash, kill,
/// power loss), and those of nodes that stopped heart-beating, end `failed`
/// and lose their partial objects. Queued backups stay queued and run.
pub async fn recover(ctx: &JobContext) -> Result<usize, crate::meta::MetaError> {
    let kind = FailureKind::Interrupted;
    let stale = chrono::Utc::now() - STALE_AFTER;
    let orphans = ctx
        .meta
        .fail_orphaned_backups(&ctx.node_id, stale, kind.code(), kind.meaning())
        .await?;
    for backup in &orphans {
        tracing::warn!(backup_id = %backup.id, "backup interrupted by a stop of the service: marked failed");
        remove_objects(ctx, backup).await;
    }
    sweep(ctx).await?;
    Ok(orphans.len())
}
