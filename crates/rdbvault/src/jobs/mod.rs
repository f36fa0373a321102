//! Background work, in one shape.
//!
//! **Jobs** are work any node may claim from the metadata store's queue
//! (`meta::jobs`). Every kind runs under one contract, [`JobHandler`]: the
//! worker claims the job, keeps its heartbeat while it runs, cancels it when
//! its target is deleted or the server stops, and records the final state;
//! the kind says only how to run one job and how to leave its target
//! consistent when the node running it died. A running job holds a lease
//! (`job_lease_secs`) that its node renews with a heartbeat; a node that
//! stops renewing has its jobs recovered by any other node within the
//! lease and a recovery round, not only when it restarts.
//!
//! **Periodic tasks** (the upload sweep, that recovery, link-key upkeep,
//! metrics) and the workers themselves are owned by one guard,
//! [`background::Background`], which stops them all on shutdown.

pub mod background;
pub mod backup;
pub mod failure;
pub mod orphans;
mod restore;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::meta::{Job, JobKind, JobState, Meta, MetaError};
use crate::objects::Objects;
use crate::replication::snapshot::TransferTimeouts;
use background::{Background, Status};

/// A job's lease, and how often its node renews it and every node looks
/// for expired ones.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// A job whose heartbeat is older than this is presumed dead.
    pub length: Duration,
}

impl Lease {
    pub fn from_config(config: &Config) -> Lease {
        Lease {
            length: Duration::from_secs(config.job_lease_secs.max(3)),
        }
    }

    /// Renewed four times or more per lease (every 5 s at most), so a
    /// slow metadata store or a paused process does not lose it.
    pub fn heartbeat_every(self) -> Duration {
        (self.length / 4).min(Duration::from_secs(5))
    }

    /// A heartbeat older than this (now minus the lease) is of a dead node.
    pub fn expired_before(self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            - chrono::TimeDelta::from_std(self.length).unwrap_or(chrono::TimeDelta::seconds(120))
    }

    /// Expired leases are looked for at least twice per lease (every 30 s
    /// at most).
    pub fn recovery_every(self) -> Duration {
        (self.length / 2).min(Duration::from_secs(30))
    }
}
/// Workers look for work this often even without a wake-up (jobs queued by other nodes).
const POLL: Duration = Duration::from_secs(2);

/// How long talking to Redis may take.
#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
    /// Connecting, and each ordinary command.
    pub connect: Duration,
    pub transfer: TransferTimeouts,
}

impl RedisTimeouts {
    pub fn from_config(config: &Config) -> RedisTimeouts {
        RedisTimeouts {
            connect: Duration::from_millis(config.connect_timeout_ms),
            transfer: TransferTimeouts {
                first_byte: Duration::from_secs(config.first_byte_timeout_secs),
                stall: Duration::from_secs(config.stall_timeout_secs),
            },
        }
    }
}

/// What every job may use.
pub struct JobContext {
    pub meta: Meta,
    pub objects: Objects,
    pub timeouts: RedisTimeouts,
    /// This node's stable id (owner of the jobs it claims).
    pub node_id: String,
    /// TLS settings for instances registered with `tls`.
    pub redis_tls: Arc<tokio_rustls::rustls::ClientConfig>,
    /// Shard transfers at once in a cluster backup (0: all shards, capped).
    pub cluster_parallel: usize,
    pub lease: Lease,
    /// Most payload one backup transfer may bring (0: by the source's memory).
    pub max_backup_bytes: u64,
    /// Where a `replicate` restore listens, and the host it announces.
    pub restore_listen: std::net::SocketAddr,
    pub restore_announce: Option<String>,
    /// What each project may hold (checked before automatic backups too).
    pub quota: crate::quota::Quota,
    /// Jobs of one project this node runs at once (0: no cap); see
    /// `Config::per_project_jobs`.
    pub per_project_jobs: usize,
}

/// What one kind of job provides; [`Workers`] and [`recover`] do the rest.
pub(crate) trait JobHandler {
    /// Runs a claimed job to its end and says how it ended. The worker keeps
    /// the heartbeat meanwhile; `cancel` fires when the job's target is
    /// deleted or the server stops, and the job must then stop promptly,
    /// leaving nothing partial behind.
    async fn run(&self, ctx: &JobContext, job: &Job, cancel: CancellationToken) -> JobState;

    /// The node running `job` stopped (this one, before its restart, or
    /// another whose heartbeat went stale); the job is already `failed`.
    /// Leave its target consistent: failed, with nothing partial behind.
    async fn recover(&self, ctx: &JobContext, job: &Job);
}

async fn run_kind(ctx: &JobContext, job: &Job, cancel: CancellationToken) -> JobState {
    match job.kind {
        JobKind::Backup => backup::Backups.run(ctx, job, cancel).await,
        JobKind::Restore => restore::Restores.run(ctx, job, cancel).await,
    }
}

async fn recover_kind(ctx: &JobContext, job: &Job) {
    match job.kind {
        JobKind::Backup => backup::Backups.recover(ctx, job).await,
        JobKind::Restore => restore::Restores.recover(ctx, job).await,
    }
}

/// Handle of the worker pool, held by the API to wake workers and cancel jobs.
#[derive(Clone)]
pub struct Workers {
    wake: Arc<Notify>,
    /// Cancellation of the jobs running on this node, by target id.
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
}

impl Workers {
    /// Starts `count` workers under `background`.
    pub fn start(background: &mut Background, ctx: Arc<JobContext>, count: usize) -> Workers {
        let workers = Workers {
            wake: Arc::new(Notify::new()),
            running: Arc::default(),
        };
        for n in 0..count.max(1) {
            let (ctx, pool) = (ctx.clone(), workers.clone());
            background.spawn(&format!("job-worker-{n}"), move |stop, status| {
                pool.work(ctx, stop, status)
            });
        }
        workers
    }

    /// Tells an idle worker that a job was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the job working on `target_id` if it runs on this node (its
    /// record already says why, e.g. `deleted`).
    pub fn cancel(&self, target_id: &str) {
        if let Some(token) = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(target_id).cloned())
        {
            token.cancel();
        }
    }

    async fn work(self, ctx: Arc<JobContext>, stop: CancellationToken, status: Status) {
        while !stop.is_cancelled() {
            match ctx.meta.claim_job(&ctx.node_id, ctx.per_project_jobs).await {
                Ok(Some(job)) => {
                    status.busy(format!("{} {}", job.kind.as_str(), job.target_id));
                    let cancel = stop.child_token();
                    self.track(&job.target_id, Some(cancel.clone()));
                    let state = run_claimed(&ctx, &job, cancel).await;
                    self.track(&job.target_id, None);
                    status.done((state == JobState::Failed).then(|| format!("{} failed", job.id)));
                }
                Ok(None) => self.idle(&stop).await,
                Err(e) => {
                    tracing::error!(error = %e, "claiming a job failed");
                    status.done(Some(e.to_string()));
                    self.idle(&stop).await;
                }
            }
        }
    }

    async fn idle(&self, stop: &CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }

    fn track(&self, target_id: &str, token: Option<CancellationToken>) {
        if let Ok(mut running) = self.running.lock() {
            match token {
                Some(t) => running.insert(target_id.to_string(), t),
                None => running.remove(target_id),
            };
        }
    }
}

/// Runs a claimed job with its heartbeat, then records how it ended.
async fn run_claimed(ctx: &JobContext, job: &Job, cancel: CancellationToken) -> JobState {
    let run = run_kind(ctx, job, cancel);
    tokio::pin!(run);
    let mut heartbeat = tokio::time::interval(ctx.lease.heartbeat_every());
    let state = loop {
        tokio::select! {
            state = &mut run => break state,
            _ = heartbeat.tick() => {
                if let Err(e) = ctx.meta.heartbeat_job(&job.id).await {
                    tracing::warn!(job_id = %job.id, error = %e, "job heartbeat not recorded");
                }
            }
        }
    };
    match ctx.meta.finish_job(&job.id, state).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            job_id = %job.id,
            "the job was recovered by another node meanwhile (this node's heartbeat went stale)"
        ),
        Err(e) => tracing::error!(job_id = %job.id, error = %e, "recording the job's end failed"),
    }
    state
}

/// Jobs whose node stopped: those this node was running before it started
/// again (`own`, at start), and those of any node whose heartbeat is older
/// than its lease. Each is moved to `failed` (by one node only: the
/// update is conditional) and its kind leaves the target consistent.
pub async fn recover(ctx: &JobContext, own: bool) -> Result<usize, MetaError> {
    let stale = ctx.lease.expired_before();
    let owner = own.then_some(ctx.node_id.as_str());
    let mut recovered = 0;
    for job in ctx.meta.orphaned_jobs(owner, stale).await? {
        if ctx.meta.finish_job(&job.id, JobState::Failed).await? {
            tracing::warn!(job_id = %job.id, kind = job.kind.as_str(), target = %job.target_id,
                "job interrupted by a stop of its node: recovered as failed");
            recover_kind(ctx, &job).await;
            recovered += 1;
        }
    }
    // The upload sweep has its own task; here only what a stop left behind.
    if own || recovered > 0 {
        backup::sweep(ctx).await?;
    }
    Ok(recovered)
}
