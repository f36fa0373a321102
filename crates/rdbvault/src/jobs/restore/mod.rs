//! One restore: put a stored backup back into a registered instance.
//!
//! The steps, each a `stage` of the record:
//! 1. *resolving the target*: its master (`single`, `ha`) or its masters
//!    and their slots (`cluster`), and its Redis version;
//! 2. *verifying the backup files*: every file is read once and checked
//!    (size, SHA-256, every RDB check) before the target is touched, so a
//!    file corrupted in the store fails the restore with the target as it
//!    was; what it holds is learnt here (databases: a cluster has only 0;
//!    module types), and with the target's version decides how keys are
//!    written ([`plan`]);
//! 3. *flushing the target* (`replace` mode): `FLUSHALL` on each master;
//! 4. *writing keys*: each file streamed again, into pipelined `RESTORE`s
//!    or rebuilt native commands ([`write`]), files in parallel; or
//!    *replicating*: the target loads the file itself ([`replicate`]).
//!
//! A `replicate` restore into a target that loads a sync only once it has
//! all of it (Redis's default) skips step 2: the file is verified beside
//! the transfer and its last byte waits for the verification.
//!
//! A restore that fails says why, where (file, byte offset) and how many
//! keys it had written; the target keeps what was written (in `replace`
//! mode its old data is gone either way). A restore interrupted by a stop
//! of the service, or whose node died, ends `failed` (`dcs.08.0108`).

mod plan;
mod read;
mod replay;
mod replicate;
mod write;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::failure::{Failure, FailureKind};
use super::{JobContext, JobHandler};
use crate::meta::{
    BackupFile, Instance, Job, JobState, Mode, Restore, RestoreMode, RestoreProgress, RestoreStatus,
};
use crate::object_keys::Format;
use crate::replication::cluster;
use crate::replication::source;
use crate::replication::{Connection, Endpoint};
use plan::Method;
use read::Item;
use replicate::Attempt;
use write::{Settings, Tally, Writer};

/// How often progress reaches the metadata store.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Upper bound of files written at once when the configuration sets none.
const MAX_PARALLEL_FILES: usize = 16;

/// Where the keys go: one server, or a cluster's masters and their slots.
enum Destination {
    Single(Endpoint),
    Cluster {
        template: Endpoint,
        masters: Vec<(crate::redis_addr::RedisAddr, Vec<(u16, u16)>)>,
    },
}

impl Destination {
    fn nodes(&self) -> Vec<Endpoint> {
        match self {
            Destination::Single(e) => vec![e.clone()],
            Destination::Cluster { template, masters } => {
                masters.iter().map(|(a, _)| template.at(a)).collect()
            }
        }
    }
}

/// What the record shows while the restore runs.
struct Progress {
    stage: Mutex<&'static str>,
    /// Bytes read by the verification pass and by the writing pass, per
    /// file; the total is twice the backup's size.
    verified: Vec<Arc<AtomicU64>>,
    written: Vec<Arc<AtomicU64>>,
    total: u64,
    tally: Tally,
}

impl Progress {
    fn new(files: usize, total: u64) -> Progress {
        let counters = || (0..files).map(|_| Arc::new(AtomicU64::new(0))).collect();
        Progress {
            stage: Mutex::new("resolving the target"),
            verified: counters(),
            written: counters(),
            total,
            tally: Tally::default(),
        }
    }

    fn enter(&self, stage: &'static str) {
        if let Ok(mut s) = self.stage.lock() {
            *s = stage;
        }
    }

    fn report(&self) -> RestoreProgress {
        let sum = |c: &[Arc<AtomicU64>]| c.iter().map(|n| n.load(Ordering::Relaxed)).sum::<u64>();
        let done = sum(&self.verified) + sum(&self.written);
        let total = self.total * 2;
        let basis_points = if total == 0 {
            0
        } else {
            ((done as f64 / total as f64) * 10_000.0).clamp(0.0, 9999.0) as i64
        };
        RestoreProgress {
            bytes_done: i64::try_from(done).unwrap_or(i64::MAX),
            bytes_total: Some(i64::try_from(total).unwrap_or(i64::MAX)),
            basis_points,
            stage: self.stage.lock().map(|s| s.to_string()).unwrap_or_default(),
            keys: self.tally.counts(),
        }
    }
}

async fn execute(
    ctx: &JobContext,
    restore: &Restore,
    format: Format,
    files: &[BackupFile],
    target: &Instance,
    progress: &Progress,
) -> Result<(), Failure> {
    let (destination, version) = resolve(ctx, target).await?;

    // The fast path: a target that loads what it receives only once all of
    // it has arrived (`repl-diskless-load disabled`, the default) is sent
    // the file while rdbvault verifies it, and the last byte is held back
    // until the verification has passed.
    let provisional = plan::choose(
        restore,
        target,
        format,
        files,
        &read::Contents::default(),
        &version,
    )?;
    let mut tried = None;
    // What the verification beside the transfer found, if it finished
    // unread (the target never connected): not read again.
    let mut verified_beside = None;
    if let (Method::Replicate { fallback }, Destination::Single(master), [file]) =
        (provisional.method, &destination, files)
        && replicate::loads_from_disk(ctx, master).await
    {
        record_plan(ctx, restore, &provisional).await?;
        let mut verifying = Some(spawn_verify(ctx, file, progress.verified[0].clone()).await?);
        let gate = async {
            let contents = joined(verifying.take()).await?;
            match plan::refuses_replicate(&contents) {
                Some(why) => Err(Attempt::Unavailable(why)),
                None => Ok(contents),
            }
        };
        match replicate_step(ctx, restore, master, file, progress, fallback, gate).await? {
            Step::Done(contents) => {
                progress
                    .tally
                    .loaded(i64::try_from(contents.keys).unwrap_or(i64::MAX));
                return Ok(());
            }
            Step::FallBack(why) => tried = Some(why),
        }
        match verifying {
            Some(handle) => verified_beside = Some(joined(Some(handle)).await?),
            // Read through the gate, and then refused: read it again.
            None => progress.verified[0].store(0, Ordering::Relaxed),
        }
    }

    progress.enter("verifying the backup files");
    let verifying = std::time::Instant::now();
    let mut contents = read::Contents::default();
    for (file, counter) in files.iter().zip(&progress.verified) {
        if let Some(found) = verified_beside.take() {
            contents.add(found);
            continue;
        }
        let input = ctx.objects.read(&file.object_key).await?;
        contents.add(match format {
            Format::Rdb => read::verify(input, file, counter.clone()).await?,
            Format::Aof => replay::verify(input, file, counter.clone()).await?,
        });
    }
    if matches!(destination, Destination::Cluster { .. }) {
        refuse_other_dbs(&contents.dbs)?;
    }
    tracing::info!(restore_id = %restore.id, keys = contents.keys,
        secs = verifying.elapsed().as_secs_f64(), "backup files verified");
    let mut plan = match &tried {
        Some(why) => provisional.fallback(why),
        None => plan::choose(restore, target, format, files, &contents, &version)?,
    };
    record_plan(ctx, restore, &plan).await?;

    // A target that loads as it receives gets only a verified file.
    if let (Method::Replicate { fallback }, Destination::Single(master), [file]) =
        (plan.method, &destination, files)
    {
        let gate = std::future::ready(Ok(()));
        match replicate_step(ctx, restore, master, file, progress, fallback, gate).await? {
            Step::Done(()) => {
                progress
                    .tally
                    .loaded(i64::try_from(contents.keys).unwrap_or(i64::MAX));
                return Ok(());
            }
            Step::FallBack(why) => {
                plan = plan.fallback(&why);
                record_plan(ctx, restore, &plan).await?;
            }
        }
    }
    let Method::Write(how) = plan.method else {
        return Err(Failure::new(
            FailureKind::Internal,
            "replicate planned for a target it cannot serve",
        ));
    };

    if restore.mode == RestoreMode::Replace {
        progress.enter("flushing the target");
        for node in destination.nodes() {
            flush(ctx, &node).await?;
        }
    }

    progress.enter("writing keys");
    let settings = Settings {
        mode: restore.mode,
        how,
        strict: restore.strict,
        target: version.target,
        stall: ctx.timeouts.transfer.stall,
        connect: ctx.timeouts.connect,
    };
    let parallel = match ctx.cluster_parallel {
        0 => files.len().min(MAX_PARALLEL_FILES),
        n => n,
    }
    .max(1);
    // The first failure ends the restore: the other files' writers are
    // dropped, closing their connections.
    let mut waiting = files.iter().zip(&progress.written);
    let mut running = futures::stream::FuturesUnordered::new();
    loop {
        while running.len() < parallel {
            let Some((file, counter)) = waiting.next() else {
                break;
            };
            running.push(write_file(
                ctx,
                format,
                file,
                &destination,
                settings,
                &progress.tally,
                counter.clone(),
            ));
        }
        match running.next().await {
            Some(done) => done?,
            None => return Ok(()),
        }
    }
}

/// How a `replicate` attempt ended, when it did not fail the restore.
enum Step<T> {
    /// The target loaded the file; what the gate gave.
    Done(T),
    /// It could not be used (nothing of the target changed): keys are
    /// written instead, and the record says why.
    FallBack(String),
}

/// One `replicate` attempt of `file` into `master`, its last byte held
/// back until `gate` passes; `fallback` says whether `auto` chose it.
async fn replicate_step<T>(
    ctx: &JobContext,
    restore: &Restore,
    master: &Endpoint,
    file: &BackupFile,
    progress: &Progress,
    fallback: bool,
    gate: impl std::future::Future<Output = Result<T, Attempt>>,
) -> Result<Step<T>, Failure> {
    let replication = replicate::Replication {
        ctx,
        restore_id: &restore.id,
        target: master,
        file,
        sent: progress.written[0].clone(),
        connect_within: if fallback {
            replicate::CONNECT_AUTO
        } else {
            replicate::CONNECT_EXPLICIT
        },
    };
    match replication.run(|stage| progress.enter(stage), gate).await {
        Ok(done) => Ok(Step::Done(done)),
        Err(Attempt::Failed(f)) => Err(f),
        Err(Attempt::Unavailable(why)) if fallback => {
            tracing::warn!(restore_id = %restore.id, reason = %why, "replicate not possible; writing keys instead");
            progress.written[0].store(0, Ordering::Relaxed);
            Ok(Step::FallBack(why))
        }
        Err(Attempt::Unavailable(why)) => Err(Failure::new(
            FailureKind::Incompatible,
            format!("the method `replicate` cannot work: {why}"),
        )),
    }
}

/// The outcome of a verification started by [`spawn_verify`].
async fn joined(
    handle: Option<tokio::task::JoinHandle<Result<read::Contents, Failure>>>,
) -> Result<read::Contents, Failure> {
    let handle =
        handle.ok_or_else(|| Failure::new(FailureKind::Internal, "verification awaited twice"))?;
    handle
        .await
        .map_err(|e| Failure::new(FailureKind::Internal, format!("verification: {e}")))?
}

/// Starts verifying `file` on its own task, so it runs beside a transfer.
async fn spawn_verify(
    ctx: &JobContext,
    file: &BackupFile,
    counter: Arc<AtomicU64>,
) -> Result<tokio::task::JoinHandle<Result<read::Contents, Failure>>, Failure> {
    let input = ctx.objects.read(&file.object_key).await?;
    let file = file.clone();
    Ok(tokio::spawn(async move {
        read::verify(input, &file, counter).await
    }))
}

async fn record_plan(
    ctx: &JobContext,
    restore: &Restore,
    plan: &plan::Plan,
) -> Result<(), Failure> {
    let text = plan.describe();
    ctx.meta.set_restore_method(&restore.id, &text).await?;
    tracing::info!(restore_id = %restore.id, method = %text, "restore planned");
    Ok(())
}

/// The target's master(s) and its Redis version.
async fn resolve(
    ctx: &JobContext,
    target: &Instance,
) -> Result<(Destination, plan::Version), Failure> {
    let template = Endpoint::of(target, &ctx.redis_tls);
    let timeout = ctx.timeouts.connect;
    let destination = match target.mode {
        Mode::Single | Mode::Ha => {
            let master = source::choose(&template, &target.addrs, false, timeout).await?;
            if master.master_down.is_some() || master.role != source::Role::Master {
                return Err(Failure::new(
                    FailureKind::Unreachable,
                    format!(
                        "the master of the target is unreachable ({})",
                        master.describe()
                    ),
                ));
            }
            Destination::Single(master.endpoint)
        }
        Mode::Cluster => {
            let topology = cluster::discover(&template, &target.addrs, timeout)
                .await
                .map_err(super::backup::topology_failure)?;
            if let Some(shard) = topology.shards.iter().find(|s| !s.master.healthy) {
                return Err(Failure::new(
                    FailureKind::Unreachable,
                    format!(
                        "the master {} of shard {} is failing",
                        shard.master.addr,
                        shard.slot_label()
                    ),
                ));
            }
            Destination::Cluster {
                template,
                masters: topology
                    .shards
                    .into_iter()
                    .map(|s| (s.master.addr, s.slots))
                    .collect(),
            }
        }
    };
    let mut version: Option<plan::Version> = None;
    for node in destination.nodes() {
        let mut conn = Connection::open(&node, timeout).await?;
        let server = conn.info("server").await?;
        conn.shutdown().await;
        let found = plan::Version::of(&server).ok_or_else(|| {
            Failure::new(
                FailureKind::Protocol,
                format!("{} reports no usable redis_version", node.addr),
            )
        })?;
        // A cluster mid-upgrade is written for its oldest node.
        if version.as_ref().is_none_or(|v| found.target < v.target) {
            version = Some(found);
        }
    }
    let version = version
        .ok_or_else(|| Failure::new(FailureKind::Unreachable, "the target has no master"))?;
    Ok((destination, version))
}

/// A cluster has database 0 only: a backup with keys elsewhere cannot go
/// there, and nothing is written.
fn refuse_other_dbs(dbs: &BTreeSet<u64>) -> Result<(), Failure> {
    let others: Vec<String> = dbs
        .iter()
        .filter(|&&db| db != 0)
        .map(u64::to_string)
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        FailureKind::Incompatible,
        format!(
            "the backup holds keys in database{} {} and a cluster has only database 0; nothing was written",
            if others.len() > 1 { "s" } else { "" },
            others.join(", ")
        ),
    ))
}

async fn flush(ctx: &JobContext, node: &Endpoint) -> Result<(), Failure> {
    let mut conn = Connection::open(node, ctx.timeouts.connect).await?;
    // Synchronous: the memory is free before the keys arrive. A big
    // dataset makes this take seconds; the connection waits as long as a
    // stall allows.
    let flushed =
        tokio::time::timeout(ctx.timeouts.transfer.stall, conn.command(&[b"FLUSHALL"])).await;
    conn.shutdown().await;
    match flushed {
        Ok(r) => r.map(drop).map_err(Failure::from),
        Err(_) => Err(Failure::new(
            FailureKind::TimedOut,
            format!(
                "FLUSHALL on {} took longer than {} s",
                node.addr,
                ctx.timeouts.transfer.stall.as_secs()
            ),
        )),
    }
}

/// Streams one stored file into the target.
async fn write_file(
    ctx: &JobContext,
    format: Format,
    file: &BackupFile,
    destination: &Destination,
    settings: Settings,
    tally: &Tally,
    read: Arc<AtomicU64>,
) -> Result<(), Failure> {
    let whence = |f: Failure, read: &AtomicU64| Failure {
        kind: f.kind,
        message: format!(
            "{} (file {}, after {} of its {} bytes)",
            f.message,
            file.file_name,
            read.load(Ordering::Relaxed),
            file.size
        ),
    };
    let input = ctx.objects.read(&file.object_key).await?;
    let mut items = match format {
        Format::Rdb => {
            let decode = settings.how == write::How::Commands;
            read::keys(input, file, decode, read.clone())
        }
        Format::Aof => replay::keys(input, file, read.clone()),
    };
    let mut writer = match destination {
        Destination::Single(endpoint) => Writer::single(endpoint, settings, tally).await?,
        Destination::Cluster { template, masters } => {
            Writer::cluster(template, masters, settings, tally).await?
        }
    };
    loop {
        let item = items
            .recv()
            .await
            .unwrap_or_else(|| {
                Err(Failure::new(
                    FailureKind::Internal,
                    "the file reader stopped",
                ))
            })
            .map_err(|f| whence(f, &read))?;
        match item {
            Item::Functions(libraries) => writer.functions(&libraries).await,
            Item::Keys(keys) => {
                let mut result = Ok(());
                for key in keys {
                    result = writer.write(key).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            Item::End => break,
        }
        .map_err(|f| whence(f, &read))?;
    }
    writer.finish().await.map_err(|f| whence(f, &read))
}

/// Restores as jobs: the run of one, and the recovery of one whose node died.
pub(crate) struct Restores;

impl JobHandler for Restores {
    async fn run(&self, ctx: &JobContext, job: &Job, cancel: CancellationToken) -> JobState {
        let loaded = match load(ctx, job).await {
            Ok(Some(found)) => found,
            Ok(None) => return JobState::Cancelled,
            Err(f) => {
                tracing::error!(job_id = %job.id, error = %f, "restore job could not run");
                record_failure(ctx, &job.target_id, &f, None).await;
                return JobState::Failed;
            }
        };
        let Work {
            restore,
            format,
            files,
            target,
        } = loaded;
        let total: u64 = files
            .iter()
            .map(|f| u64::try_from(f.size).unwrap_or(0))
            .sum();
        match ctx
            .meta
            .start_restore(&restore.id, i64::try_from(total * 2).unwrap_or(i64::MAX))
            .await
        {
            Ok(true) => {}
            Ok(false) => return JobState::Cancelled,
            Err(e) => {
                record_failure(ctx, &restore.id, &e.into(), None).await;
                return JobState::Failed;
            }
        }
        let progress = Progress::new(files.len(), total);
        let outcome = tokio::select! {
            outcome = report_while(ctx, &restore, &progress, execute(ctx, &restore, format, &files, &target, &progress)) => outcome,
            _ = cancel.cancelled() => Err(Failure::new(FailureKind::Interrupted, FailureKind::Interrupted.meaning())),
        };
        if outcome.is_err() {
            promote_back(ctx, &restore.id, &target).await;
        }
        let counts = progress.tally.counts();
        match outcome {
            Ok(()) => match ctx.meta.succeed_restore(&restore.id, &counts).await {
                Ok(_) => {
                    tracing::info!(restore_id = %restore.id, restored = counts.restored, rebuilt = counts.rebuilt,
                        replaced = counts.replaced, skipped = counts.skipped, "restore succeeded");
                    JobState::Succeeded
                }
                Err(e) => {
                    tracing::error!(restore_id = %restore.id, error = %e, "recording success failed");
                    JobState::Failed
                }
            },
            Err(f) => {
                let written = progress.tally.written();
                let f = Failure {
                    kind: f.kind,
                    message: format!("{}; {written} keys had been written", f.message),
                };
                tracing::warn!(restore_id = %restore.id, code = f.kind.code(), error = %f, "restore failed");
                record_failure(ctx, &restore.id, &f, Some(&counts)).await;
                JobState::Failed
            }
        }
    }

    async fn recover(&self, ctx: &JobContext, job: &Job) {
        let interrupted =
            Failure::new(FailureKind::Interrupted, FailureKind::Interrupted.meaning());
        record_failure(ctx, &job.target_id, &interrupted, None).await;
        match ctx.meta.get_restore(&job.target_id).await {
            Ok(Some(restore)) => match ctx
                .meta
                .get_instance(&restore.project_id, &restore.target_instance_id)
                .await
            {
                Ok(Some(target)) => promote_back(ctx, &restore.id, &target).await,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(restore_id = %restore.id, error = %e, "recovery could not read the target")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::error!(restore_id = %job.target_id, error = %e, "recovery could not read the restore")
            }
        }
    }
}

/// A `replicate` restore that stopped (failed, cancelled, its node died)
/// may have left the target following its listener: promote it back.
async fn promote_back(ctx: &JobContext, restore_id: &str, target: &Instance) {
    let replica_of = match ctx.meta.get_restore(restore_id).await {
        Ok(Some(r)) => r.replica_of,
        Ok(None) => None,
        Err(e) => {
            tracing::error!(restore_id, error = %e, "could not read whether the target follows rdbvault");
            None
        }
    };
    let Some(replica_of) = replica_of else { return };
    match replicate::reset(ctx, target, &replica_of).await {
        Ok(()) => {
            if let Err(e) = ctx.meta.set_restore_replica_of(restore_id, None).await {
                tracing::warn!(restore_id, error = %e, "could not clear the restore's replica_of");
            }
        }
        Err(e) => tracing::error!(restore_id, error = %e,
            "the target still follows a stopped restore's listener; run REPLICAOF NO ONE on it"),
    }
}

/// Runs `work`, writing the progress to the record once a second.
async fn report_while(
    ctx: &JobContext,
    restore: &Restore,
    progress: &Progress,
    work: impl std::future::Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    // A fallback reads a file again: the percentage holds still meanwhile.
    let mut floor = 0;
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = tick.tick() => {
                let mut report = progress.report();
                report.basis_points = report.basis_points.max(floor);
                floor = report.basis_points;
                if let Err(e) = ctx.meta.set_restore_progress(&restore.id, &report).await {
                    tracing::warn!(restore_id = %restore.id, error = %e, "restore progress not recorded");
                }
            }
        }
    }
}

/// What a restore job works on.
struct Work {
    restore: Restore,
    /// What the backup's files hold.
    format: Format,
    files: Vec<BackupFile>,
    target: Instance,
}

/// The restore a job works on, the backup's files and the target; `None`
/// when the restore is no longer waiting.
async fn load(ctx: &JobContext, job: &Job) -> Result<Option<Work>, Failure> {
    let missing =
        |what: &str| Failure::new(FailureKind::Internal, format!("{what} record missing"));
    let restore = ctx
        .meta
        .get_restore(&job.target_id)
        .await?
        .ok_or_else(|| missing("restore"))?;
    if restore.status != RestoreStatus::Waiting {
        return Ok(None);
    }
    let (backup, files) = ctx
        .meta
        .backup_with_files(&restore.backup_id)
        .await?
        .ok_or_else(|| missing("backup"))?;
    let format = Format::parse(&backup.backup_format).ok_or_else(|| {
        Failure::new(
            FailureKind::Internal,
            format!("backup format {:?} unknown", backup.backup_format),
        )
    })?;
    let target = ctx
        .meta
        .get_instance(&restore.project_id, &restore.target_instance_id)
        .await?
        .ok_or_else(|| missing("target instance"))?;
    Ok(Some(Work {
        restore,
        format,
        files,
        target,
    }))
}

async fn record_failure(
    ctx: &JobContext,
    restore_id: &str,
    f: &Failure,
    counts: Option<&crate::meta::KeyCounts>,
) {
    if let Err(e) = ctx
        .meta
        .fail_restore(restore_id, f.kind.code(), &f.message, counts)
        .await
    {
        tracing::error!(restore_id, error = %e, "recording the failure failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_refuses_other_databases_by_name() {
        assert!(refuse_other_dbs(&BTreeSet::from([0])).is_ok());
        let f = refuse_other_dbs(&BTreeSet::from([0, 3, 9])).expect_err("refused");
        assert_eq!(f.kind, FailureKind::Incompatible);
        assert!(f.message.contains("databases 3, 9"), "{}", f.message);
    }

    #[test]
    fn progress_counts_both_passes() {
        let p = Progress::new(2, 100);
        p.verified[0].store(100, Ordering::Relaxed);
        p.written[1].store(50, Ordering::Relaxed);
        let r = p.report();
        assert_eq!(
            (r.bytes_done, r.bytes_total, r.basis_points),
            (150, Some(200), 7500)
        );
        assert_eq!(r.stage, "resolving the target");
    }
}
