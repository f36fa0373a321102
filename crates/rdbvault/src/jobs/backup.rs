//! One backup: choose the source node(s), pull each snapshot, verify and
//! hash it while it streams into the object store, publish it only when
//! every check has passed.
//!
//! A cluster backup pulls one file per shard, in parallel, and is all or
//! nothing: the first shard that fails stops the others, and the caller
//! removes every file. The topology is read before and after; a failover or
//! a slot move in between fails the backup rather than leave an
//! inconsistent set of files.
//!
//! As a job ([`Backups`]): a backup deleted while it runs, or a service
//! stopping, interrupts it (`failed`, `dcs.08.0108`, nothing kept); one whose
//! node died is recovered the same way by another node.
//!
//! An `aof` backup pulls and verifies the same RDB payload, and stores the
//! commands that rebuild it instead ([`aof`]).

mod aof;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::failure::{Failure, FailureKind};
use super::{JobContext, JobHandler};
use crate::meta::{Backup, BackupFile, BackupStatus, Instance, Job, JobState, Mode};
use crate::object_keys::{self, Format};
use crate::replication::cluster::{self, Shard, TopologyError};
use crate::replication::copy::ReplicaCopy;
use crate::replication::snapshot::{self, Payload, SnapshotError, Transfer};
use crate::replication::source::{self, Role, Source};
use crate::replication::{Connection, Endpoint};

/// How often progress reaches the metadata store.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Upper bound of parallel shard transfers when the configuration sets none.
const MAX_PARALLEL_SHARDS: usize = 16;
/// RDB bytes per byte of `used_memory` assumed for a diskless transfer when
/// the instance has no earlier backup to learn from (values are compressed
/// and stripped of their in-memory overhead; 0.2 to 0.6 is usual).
const DEFAULT_RDB_RATIO: f64 = 0.4;

/// What a successful backup stored.
pub struct Stored {
    pub size: u64,
    /// The sources' `used_memory` summed, for the next backup's estimate.
    pub used_memory: u64,
}

/// Bytes moved and expected, summed over every transfer of the backup, and
/// how many transfers are at which step.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    used_memory: AtomicU64,
    /// Transfers that sent `PSYNC` and have no payload yet: the master is
    /// waiting to fork (its delay, or another child) or writing its file.
    waiting: AtomicUsize,
    /// Transfers whose payload is flowing.
    moving: AtomicUsize,
    /// Replicas being copied key by key (their master is down).
    copying: AtomicUsize,
    /// Transfers stored.
    stored: AtomicUsize,
}

impl Progress {
    fn stage(&self) -> String {
        let waiting = self.waiting.load(Ordering::Relaxed);
        let moving = self.moving.load(Ordering::Relaxed);
        let stored = self.stored.load(Ordering::Relaxed);
        if self.copying.load(Ordering::Relaxed) > 0 {
            return "copying the replica key by key (its master is down)".into();
        }
        match (waiting, moving) {
            (0, 0) if stored > 0 => "checking the cluster".into(),
            (0, 0) => "connecting".into(),
            (_, 0) => "waiting for the fork".into(),
            (0, _) => "transferring".into(),
            (w, _) => format!("transferring ({w} more waiting for the fork)"),
        }
    }

    /// The report for the record. Diskless transfers announce no length, so
    /// `total` may be an estimate: past 90 % of it the percentage only creeps
    /// towards 99.99, and it never goes below the last report (`floor`).
    fn report(&self, floor: i64) -> crate::meta::ProgressReport {
        let done = self.done.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        crate::meta::ProgressReport {
            bytes_done: i64::try_from(done).unwrap_or(i64::MAX),
            bytes_total: (total > 0).then(|| i64::try_from(total).unwrap_or(i64::MAX)),
            basis_points: basis_points(done, total).max(floor),
            stage: self.stage(),
        }
    }
}

/// `done / total` in basis points, linear to 90 %, then approaching 99.99 %
/// without reaching it however far `done` passes an underestimated `total`.
fn basis_points(done: u64, total: u64) -> i64 {
    if total == 0 {
        return 0;
    }
    let x = done as f64 / total as f64;
    let pct = if x <= 0.9 {
        x
    } else {
        0.9 + 0.0999 * (1.0 - (-(x - 0.9) / 0.1).exp())
    };
    ((pct * 10_000.0) as i64).clamp(0, 9999)
}

/// Counts a transfer in one step of [`Progress`] while alive.
struct InStep<'a>(&'a AtomicUsize);

impl<'a> InStep<'a> {
    fn enter(counter: &'a AtomicUsize) -> InStep<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        InStep(counter)
    }
}

impl Drop for InStep<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn take(ctx: &JobContext, backup: &Backup, instance: &Instance) -> Result<Stored, Failure> {
    let progress = Progress::default();
    let ratio = ctx
        .meta
        .last_rdb_ratio(&instance.id)
        .await?
        .unwrap_or(DEFAULT_RDB_RATIO)
        .clamp(0.01, 4.0);
    let work = async {
        match instance.mode {
            Mode::Single | Mode::Ha => take_node(ctx, backup, instance, &progress, ratio).await,
            Mode::Cluster => take_cluster(ctx, backup, instance, &progress, ratio).await,
        }
    };
    tokio::pin!(work);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let mut reported = 0;
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = tick.tick() => {
                let report = progress.report(reported);
                reported = report.basis_points;
                ctx.meta.set_backup_progress(&backup.id, &report).await?;
            }
        }
    }
}

/// `waiting → backuping`, naming the node(s) pulled from; a backup deleted
/// meanwhile is not started.
async fn mark_started(ctx: &JobContext, backup: &Backup, source_node: &str) -> Result<(), Failure> {
    if ctx.meta.start_backup(&backup.id, source_node, None).await? {
        Ok(())
    } else {
        Err(Failure::new(
            FailureKind::Interrupted,
            "the backup was deleted before it started",
        ))
    }
}

async fn take_node(
    ctx: &JobContext,
    backup: &Backup,
    instance: &Instance,
    progress: &Progress,
    ratio: f64,
) -> Result<Stored, Failure> {
    let template = Endpoint::of(instance, &ctx.redis_tls);
    let source = match instance.mode {
        Mode::Ha => source::choose(&template, &instance.addrs, true, ctx.timeouts.connect).await?,
        _ => Source::normal(template, Role::Master),
    };
    let source_node = source.describe();
    mark_started(ctx, backup, &source_node).await?;
    let file = pull(ctx, backup, &source, None, progress, ratio).await?;
    Ok(Stored {
        size: u64::try_from(file.size).unwrap_or(0),
        used_memory: progress.used_memory.load(Ordering::Relaxed),
    })
}

async fn take_cluster(
    ctx: &JobContext,
    backup: &Backup,
    instance: &Instance,
    progress: &Progress,
    ratio: f64,
) -> Result<Stored, Failure> {
    let template = Endpoint::of(instance, &ctx.redis_tls);
    let timeout = ctx.timeouts.connect;
    let before = cluster::discover(&template, &instance.addrs, timeout)
        .await
        .map_err(topology_failure)?;
    let mut sources = Vec::with_capacity(before.shards.len());
    for shard in &before.shards {
        sources.push((
            shard,
            source::choose_in_shard(&template, shard, timeout).await?,
        ));
    }
    let source_node = sources
        .iter()
        .map(|(_, s)| s.describe())
        .collect::<Vec<_>>()
        .join(", ");
    mark_started(ctx, backup, &source_node).await?;
    let files = pull_shards(ctx, backup, &sources, progress, ratio).await?;
    check_unchanged(&template, instance, &before, timeout).await?;
    Ok(Stored {
        size: files
            .iter()
            .map(|f| u64::try_from(f.size).unwrap_or(0))
            .sum(),
        used_memory: progress.used_memory.load(Ordering::Relaxed),
    })
}

/// One transfer per shard, `cluster_parallel` at a time. The first failure
/// ends the backup: the other transfers are dropped (closing their links,
/// abandoning their uploads) and the caller removes every file.
async fn pull_shards(
    ctx: &JobContext,
    backup: &Backup,
    sources: &[(&Shard, Source)],
    progress: &Progress,
    ratio: f64,
) -> Result<Vec<BackupFile>, Failure> {
    let parallel = match ctx.cluster_parallel {
        0 => sources.len().min(MAX_PARALLEL_SHARDS),
        n => n,
    };
    let mut waiting = sources.iter();
    let mut running = futures::stream::FuturesUnordered::new();
    let mut files = Vec::with_capacity(sources.len());
    loop {
        while running.len() < parallel.max(1) {
            let Some((shard, source)) = waiting.next() else {
                break;
            };
            running.push(pull_shard(ctx, backup, shard, source, progress, ratio));
        }
        match running.next().await {
            Some(result) => files.push(result?),
            None => return Ok(files),
        }
    }
}

/// The files form one backup only if no master changed and none died while
/// they were pulled.
async fn check_unchanged(
    template: &Endpoint,
    instance: &Instance,
    before: &cluster::Topology,
    timeout: Duration,
) -> Result<(), Failure> {
    // Every node seen at the start is a seed now: the registered one may be
    // the node that just failed.
    let mut seeds = instance.addrs.clone();
    for shard in &before.shards {
        for node in std::iter::once(&shard.master).chain(&shard.replicas) {
            if !seeds.contains(&node.addr) {
                seeds.push(node.addr.clone());
            }
        }
    }
    let after = cluster::discover(template, &seeds, timeout)
        .await
        .map_err(topology_failure)?;
    if !before.same_layout(&after) {
        return Err(Failure::new(
            FailureKind::TopologyChanged,
            "the cluster's masters or slots changed during the backup (failover or resharding); \
             the shard files would not form one consistent backup",
        ));
    }
    // Gossip takes a node timeout to flag a dead master, so ask each directly:
    // a shard whose master is gone lost writes its replica may not have had.
    for shard in &after.shards {
        let master = template.at(&shard.master.addr);
        let alive = match Connection::open(&master, timeout).await {
            Ok(mut conn) => conn.command(&[b"PING"]).await.is_ok(),
            Err(_) => false,
        };
        if !alive || !shard.master.healthy {
            return Err(Failure::new(
                FailureKind::TopologyChanged,
                format!(
                    "the master {} of shard {} failed during the backup",
                    shard.master.addr,
                    shard.slot_label()
                ),
            ));
        }
    }
    Ok(())
}

async fn pull_shard(
    ctx: &JobContext,
    backup: &Backup,
    shard: &Shard,
    source: &Source,
    progress: &Progress,
    ratio: f64,
) -> Result<BackupFile, Failure> {
    pull(ctx, backup, source, Some(shard), progress, ratio)
        .await
        .map_err(|f| Failure {
            kind: f.kind,
            message: format!(
                "shard {} ({}): {}",
                shard.slot_label(),
                source.endpoint.addr,
                f.message
            ),
        })
}

pub(super) fn topology_failure(e: TopologyError) -> Failure {
    match e {
        TopologyError::Conn(c) => c.into(),
        other => Failure::new(FailureKind::ReplicationRefused, other),
    }
}

/// One snapshot from `source` into one verified, published file.
async fn pull(
    ctx: &JobContext,
    backup: &Backup,
    source: &Source,
    shard: Option<&Shard>,
    progress: &Progress,
    ratio: f64,
) -> Result<BackupFile, Failure> {
    let addr = source.endpoint.addr.clone();
    let format = Format::parse(&backup.backup_format).ok_or_else(|| {
        Failure::new(
            FailureKind::Internal,
            format!(
                "unknown backup_format {:?} in the record",
                backup.backup_format
            ),
        )
    })?;
    tracing::info!(backup_id = %backup.id, node = %addr, role = %source.role,
        format = format.as_str(), "pulling snapshot");
    let mut conn = Connection::open(&source.endpoint, ctx.timeouts.connect).await?;
    let used_memory = conn
        .info("memory")
        .await?
        .get("used_memory")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    progress
        .used_memory
        .fetch_add(used_memory, Ordering::Relaxed);
    let mut transfer = match source.master_down {
        None => {
            let _waiting = InStep::enter(&progress.waiting);
            let transfer = snapshot::start(conn, ctx.timeouts.transfer).await?;
            // The point in the master's history the file is a snapshot of.
            tracing::info!(backup_id = %backup.id, node = %addr, replid = %transfer.replid,
                offset = transfer.offset, "snapshot started");
            Feed::Replication(transfer)
        }
        Some(_) => Feed::Copy(ReplicaCopy::start(conn, ctx.timeouts.transfer.stall).await?),
    };
    let _moving = InStep::enter(match transfer {
        Feed::Replication(_) => &progress.moving,
        Feed::Copy(_) => &progress.copying,
    });
    // Diskless transfers and copies announce no length: estimate it from
    // what the instance's last backup weighed against its used memory then.
    let estimate = match &transfer {
        Feed::Replication(Transfer {
            payload: Payload::Sized(len),
            ..
        }) => *len,
        _ => (used_memory as f64 * ratio) as u64,
    };
    progress.total.fetch_add(estimate, Ordering::Relaxed);
    let limit = SizeLimit::of(ctx.max_backup_bytes, used_memory);
    if let Feed::Replication(Transfer {
        payload: Payload::Sized(len),
        ..
    }) = &transfer
    {
        limit.check(*len)?;
    }

    let slots = shard.map(Shard::slot_label);
    let name = object_keys::file_name(
        &addr.host,
        addr.port,
        slots.as_deref(),
        format,
        chrono::Utc::now(),
    );
    let key = object_keys::file_key(backup, &name);
    let mut upload = ctx.objects.upload(&key).await?;
    // An S3 upload's id is recorded until it is completed or aborted, so
    // one abandoned by a crash or an unreachable store is aborted later.
    let upload_id = upload.id().map(str::to_string);
    if let Some(id) = &upload_id {
        ctx.meta.add_pending_upload(id, &backup.id, &key).await?;
    }
    let started = std::time::Instant::now();
    let streamed = match format {
        Format::Rdb => stream(&mut transfer, &mut upload, progress, limit).await,
        Format::Aof => stream_aof(&mut transfer, &mut upload, progress, limit).await,
    };
    let Streamed {
        summary,
        sha,
        generated,
    } = match streamed {
        Ok(done) => done,
        Err(f) => {
            match upload.abort().await {
                Ok(()) => forget_upload(ctx, upload_id.as_deref()).await,
                Err(e) => {
                    tracing::warn!(error = %e, "aborting the upload failed; the sweep will retry")
                }
            }
            return Err(f);
        }
    };
    transfer.close().await;
    let size = upload.bytes();
    let transfer_secs = started.elapsed().as_secs_f64();
    // Only now, with every byte checked, does the file become visible.
    let commit_started = std::time::Instant::now();
    upload.commit().await?;
    forget_upload(ctx, upload_id.as_deref()).await;
    let commit_secs = commit_started.elapsed().as_secs_f64();
    let file = BackupFile {
        backup_id: backup.id.clone(),
        file_name: name.clone(),
        object_key: key,
        slots,
        source_addr: addr.to_string(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        sha256: Some(sha),
        rdb_version: Some(i64::from(summary.version)),
        redis_version: summary
            .aux
            .iter()
            .find(|(k, _)| k == "redis-ver")
            .map(|(_, v)| v.clone()),
    };
    ctx.meta.add_backup_file(&file).await?;
    progress.stored.fetch_add(1, Ordering::Relaxed);
    if let Some(generated) = &generated {
        generated.log(&backup.id, &name);
    }
    tracing::info!(
        backup_id = %backup.id, file = %name, bytes = size, rdb_version = summary.version,
        transfer_secs, commit_secs, "backup file stored"
    );
    Ok(file)
}

/// Where a file's bytes come from: a replication transfer, or (master
/// down) a key-by-key copy of a replica.
// One per transfer, alive as long as it: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Feed {
    Replication(Transfer),
    Copy(ReplicaCopy),
}

impl Feed {
    async fn next_chunk(&mut self) -> Result<Option<&[u8]>, SnapshotError> {
        match self {
            Feed::Replication(t) => t.next_chunk().await,
            Feed::Copy(c) => c.next_chunk().await,
        }
    }

    async fn close(self) {
        match self {
            Feed::Replication(t) => t.close().await,
            Feed::Copy(c) => c.close().await,
        }
    }
}

/// A transfer stored: the RDB payload's summary (whatever the file holds),
/// the stored file's hex SHA-256, and for an AOF file what it holds.
struct Streamed {
    summary: rdb::Summary,
    sha: String,
    generated: Option<aof::Generated>,
}

/// The most payload one transfer may bring: `max_backup_bytes`, or by
/// default eight times the source's `used_memory` (an RDB is smaller than
/// the memory it holds) and at least 1 GiB, so a source announcing or
/// streaming endless bytes cannot fill the store.
#[derive(Debug, Clone, Copy)]
struct SizeLimit(u64);

impl SizeLimit {
    fn of(configured: u64, used_memory: u64) -> SizeLimit {
        match configured {
            0 => SizeLimit(used_memory.saturating_mul(8).max(1 << 30)),
            n => SizeLimit(n),
        }
    }

    fn check(self, bytes: u64) -> Result<(), Failure> {
        if bytes > self.0 {
            return Err(Failure::new(
                FailureKind::TooLarge,
                format!(
                    "the snapshot is larger than the {} bytes a backup of this instance may hold \
                     (max_backup_bytes, by default 8 x used_memory and at least 1 GiB)",
                    self.0
                ),
            ));
        }
        Ok(())
    }
}

/// Socket → verifier → SHA-256 → upload, once the payload has passed every
/// check.
async fn stream(
    transfer: &mut Feed,
    upload: &mut crate::objects::Upload,
    progress: &Progress,
    limit: SizeLimit,
) -> Result<Streamed, Failure> {
    let mut verifier = rdb::Verifier::new();
    let mut sha = Sha256::new();
    let mut seen = 0u64;
    while let Some(chunk) = transfer.next_chunk().await? {
        seen += chunk.len() as u64;
        limit.check(seen)?;
        verifier.update(chunk)?;
        sha.update(chunk);
        upload.write(chunk).await?;
        progress
            .done
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    Ok(Streamed {
        summary: verifier.finish()?,
        sha: hex::encode(sha.finalize()),
        generated: None,
    })
}

/// Socket → verifier → AOF generator (a blocking thread) → SHA-256 →
/// upload. The payload is verified to its last byte whatever the generator
/// does, and the file is complete only when both the verifier and the
/// generator reached the end of the dump. Progress counts payload bytes, as
/// for an RDB file (the estimate is of the payload).
async fn stream_aof(
    transfer: &mut Feed,
    upload: &mut crate::objects::Upload,
    progress: &Progress,
    limit: SizeLimit,
) -> Result<Streamed, Failure> {
    let (input, mut output) = aof::start(chrono::Utc::now().timestamp_millis());
    let feed = async {
        let input = input;
        let mut generating = true;
        let mut verifier = rdb::Verifier::new();
        let mut seen = 0u64;
        while let Some(chunk) = transfer.next_chunk().await? {
            seen += chunk.len() as u64;
            limit.check(seen)?;
            verifier.update(chunk)?;
            progress
                .done
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            // A generator that stopped says why at the end; the rest of the
            // payload is still verified, which tells a corrupt snapshot from
            // one the generator cannot convert.
            generating = generating && input.send(chunk).await;
        }
        // The end of the payload, for the generator.
        drop(input);
        Ok::<_, Failure>(verifier.finish()?)
    };
    let store = async {
        let mut sha = Sha256::new();
        while let Some(bytes) = output.recv().await {
            sha.update(&bytes);
            upload.write(&bytes).await?;
        }
        Ok::<_, Failure>((output.finish().await, sha))
    };
    // The first transfer, verification or store failure ends both at once;
    // a generator failure waits for the verifier's verdict.
    let (summary, (generated, sha)) = tokio::try_join!(feed, store)?;
    let generated = generated.map_err(aof::AofError::into_failure)?;
    Ok(Streamed {
        summary,
        sha: hex::encode(sha.finalize()),
        generated: Some(generated),
    })
}

/// The upload is finished with (completed or aborted): no sweep needed.
async fn forget_upload(ctx: &JobContext, upload_id: Option<&str>) {
    if let Some(id) = upload_id
        && let Err(e) = ctx.meta.remove_pending_upload(id).await
    {
        tracing::warn!(upload_id = id, error = %e, "could not clear a finished upload; the sweep will find it aborted");
    }
}

/// Backups as jobs: the run of one, and the recovery of one whose node died.
pub(crate) struct Backups;

impl JobHandler for Backups {
    async fn run(&self, ctx: &JobContext, job: &Job, cancel: CancellationToken) -> JobState {
        let (backup, instance) = match load(ctx, job).await {
            Ok(Some(found)) => found,
            // Deleted before a worker got to it.
            Ok(None) => return JobState::Cancelled,
            Err(f) => {
                tracing::error!(job_id = %job.id, error = %f, "backup job could not run");
                record_failure(ctx, &job.target_id, &f).await;
                return JobState::Failed;
            }
        };
        let taken = tokio::select! {
            taken = take(ctx, &backup, &instance) => taken,
            _ = cancel.cancelled() => return interrupted(ctx, &backup).await,
        };
        match taken {
            Ok(stored) => publish(ctx, &backup, &stored).await,
            Err(f) => {
                tracing::warn!(backup_id = %backup.id, code = f.kind.code(), error = %f, "backup failed");
                discard(ctx, &backup).await;
                record_failure(ctx, &backup.id, &f).await;
                JobState::Failed
            }
        }
    }

    async fn recover(&self, ctx: &JobContext, job: &Job) {
        let interrupted =
            Failure::new(FailureKind::Interrupted, FailureKind::Interrupted.meaning());
        record_failure(ctx, &job.target_id, &interrupted).await;
        match ctx.meta.get_backup_by_id(&job.target_id).await {
            Ok(Some(backup)) => remove_objects(ctx, &backup).await,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(backup_id = %job.target_id, error = %e, "recovery could not read the backup")
            }
        }
    }
}

/// The backup a job works on and its instance; `None` when the backup is no
/// longer waiting (deleted meanwhile).
async fn load(ctx: &JobContext, job: &Job) -> Result<Option<(Backup, Instance)>, Failure> {
    let backup = ctx
        .meta
        .get_backup_by_id(&job.target_id)
        .await?
        .ok_or_else(|| Failure::new(FailureKind::Internal, "backup record missing"))?;
    if backup.status != BackupStatus::Waiting {
        return Ok(None);
    }
    let instance = ctx
        .meta
        .get_instance(&backup.project_id, &backup.instance_id)
        .await?
        .ok_or_else(|| Failure::new(FailureKind::Internal, "instance no longer registered"))?;
    Ok(Some((backup, instance)))
}

/// Every file stored and verified: `backuping → succeed`, unless the backup
/// was deleted meanwhile.
async fn publish(ctx: &JobContext, backup: &Backup, stored: &Stored) -> JobState {
    let size = i64::try_from(stored.size).unwrap_or(i64::MAX);
    let used_memory = i64::try_from(stored.used_memory).unwrap_or(i64::MAX);
    match ctx.meta.succeed_backup(&backup.id, size, used_memory).await {
        Ok(true) => {
            tracing::info!(backup_id = %backup.id, bytes = stored.size, "backup succeeded");
            JobState::Succeeded
        }
        Ok(false) => {
            remove_objects(ctx, backup).await;
            JobState::Cancelled
        }
        Err(e) => {
            tracing::error!(backup_id = %backup.id, error = %e, "recording success failed");
            remove_objects(ctx, backup).await;
            record_failure(ctx, &backup.id, &e.into()).await;
            JobState::Failed
        }
    }
}

/// Deleted while running, or the service is stopping: a dropped local
/// upload removed its staging file, an S3 one is aborted by the sweep.
async fn interrupted(ctx: &JobContext, backup: &Backup) -> JobState {
    discard(ctx, backup).await;
    let kind = FailureKind::Interrupted;
    match ctx
        .meta
        .fail_backup(&backup.id, kind.code(), kind.meaning())
        .await
    {
        Ok(true) => JobState::Failed,
        // Already `deleted`: the cancellation was asked for.
        Ok(false) => JobState::Cancelled,
        Err(e) => {
            tracing::error!(backup_id = %backup.id, error = %e, "recording the interruption failed");
            JobState::Failed
        }
    }
}

/// Removes what a backup that will not succeed stored, and aborts the S3
/// uploads of its transfers (shards stopped by another shard's failure
/// leave theirs behind).
async fn discard(ctx: &JobContext, backup: &Backup) {
    remove_objects(ctx, backup).await;
    if let Err(e) = sweep(ctx).await {
        tracing::warn!(error = %e, "sweep after an unsuccessful backup failed");
    }
}

async fn record_failure(ctx: &JobContext, backup_id: &str, f: &Failure) {
    if let Err(e) = ctx
        .meta
        .fail_backup(backup_id, f.kind.code(), &f.message)
        .await
    {
        tracing::error!(backup_id, error = %e, "recording the failure failed");
    }
}

async fn remove_objects(ctx: &JobContext, backup: &Backup) {
    if let Err(e) = ctx
        .objects
        .delete_prefix(&object_keys::backup_prefix(backup))
        .await
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_creeps_past_an_underestimate_and_never_reaches_100() {
        assert_eq!(basis_points(0, 0), 0);
        assert_eq!(basis_points(50, 100), 5000);
        assert_eq!(basis_points(90, 100), 9000);
        let mut last = 0;
        for done in (0..2000).step_by(7) {
            let bp = basis_points(done, 100);
            assert!(bp >= last, "went back at {done}");
            assert!(bp <= 9999);
            last = bp;
        }
        assert!(last > 9900, "{last}");
        let p = Progress::default();
        p.done.store(10, Ordering::Relaxed);
        p.total.store(100, Ordering::Relaxed);
        assert_eq!(p.report(4000).basis_points, 4000, "the floor holds");
        assert_eq!(p.report(0).basis_points, 1000);
    }

    #[test]
    fn stages() {
        let p = Progress::default();
        assert_eq!(p.stage(), "connecting");
        let waiting = InStep::enter(&p.waiting);
        assert_eq!(p.stage(), "waiting for the fork");
        let _moving = InStep::enter(&p.moving);
        assert_eq!(p.stage(), "transferring (1 more waiting for the fork)");
        drop(waiting);
        assert_eq!(p.stage(), "transferring");
    }
}
