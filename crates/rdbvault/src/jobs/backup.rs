//! One backup: choose the source node(s), pull each snapshot, verify and
//! hash it while it streams into the object store, publish it only when
//! every check has passed.
//!
//! A cluster backup pulls one file per shard, in parallel, and is all or
//! nothing: the first shard that fails stops the others, and the caller
//! removes every file. The topology is read before and after; a failover or
//! a slot move in between fails the backup rather than leave an
//! inconsistent set of files.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::JobContext;
use super::failure::{Failure, FailureKind};
use crate::meta::{Backup, BackupFile, Instance, Mode};
use crate::replication::cluster::{self, Shard, TopologyError};
use crate::replication::snapshot::{self, Payload};
use crate::replication::source::{self, Source};
use crate::replication::{Connection, Endpoint};

/// How often progress (and the job's heartbeat) reach the metadata store.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Upper bound of parallel shard transfers when the configuration sets none.
const MAX_PARALLEL_SHARDS: usize = 16;

/// What a successful backup stored.
pub struct Stored {
    pub size: u64,
}

/// Bytes moved and expected, summed over every transfer of the backup.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

/// The object prefix of a backup: `{instance_id}/{backup_id}/`.
pub fn prefix(backup: &Backup) -> String {
    format!("{}/{}/", backup.instance_id, backup.id)
}

/// DCS file name: `redis_{ip}_{port}[_{slots}]_{yyyyMMddHHmmss}.rdb`.
pub fn file_name(
    host: &str,
    port: u16,
    slots: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    // IPv6 colons would make the name unusable on some filesystems and in URLs.
    let host = host.replace(':', "-");
    let slots = slots.map(|s| format!("_{s}")).unwrap_or_default();
    format!(
        "redis_{host}_{port}{slots}_{}.rdb",
        at.format("%Y%m%d%H%M%S")
    )
}

pub async fn take(
    ctx: &JobContext,
    job_id: &str,
    backup: &Backup,
    instance: &Instance,
) -> Result<Stored, Failure> {
    let progress = Progress::default();
    let work = async {
        match instance.mode {
            Mode::Single | Mode::Ha => take_node(ctx, backup, instance, &progress).await,
            Mode::Cluster => take_cluster(ctx, backup, instance, &progress).await,
        }
    };
    tokio::pin!(work);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = tick.tick() => {
                let done = i64::try_from(progress.done.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
                let total = i64::try_from(progress.total.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
                ctx.meta.set_backup_progress(&backup.id, done, (total > 0).then_some(total)).await?;
                ctx.meta.heartbeat_job(job_id).await?;
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
) -> Result<Stored, Failure> {
    let template = Endpoint::of(instance, &ctx.redis_tls);
    let source = match instance.mode {
        Mode::Ha => source::choose(&template, &instance.addrs, true, ctx.timeouts.connect).await?,
        _ => Source {
            endpoint: template,
            role: "master",
        },
    };
    let source_node = format!("{} ({})", source.endpoint.addr, source.role);
    mark_started(ctx, backup, &source_node).await?;
    let file = pull(ctx, backup, &source, None, progress).await?;
    Ok(Stored {
        size: u64::try_from(file.size).unwrap_or(0),
    })
}

async fn take_cluster(
    ctx: &JobContext,
    backup: &Backup,
    instance: &Instance,
    progress: &Progress,
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
        .map(|(_, s)| format!("{} ({})", s.endpoint.addr, s.role))
        .collect::<Vec<_>>()
        .join(", ");
    mark_started(ctx, backup, &source_node).await?;
    let parallel = match ctx.cluster_parallel {
        0 => sources.len().min(MAX_PARALLEL_SHARDS),
        n => n,
    };
    // The first failure ends the backup: the other transfers are dropped
    // (closing their links, abandoning their uploads) and the caller removes
    // every file of the backup.
    let mut waiting = sources.iter();
    let mut running = futures::stream::FuturesUnordered::new();
    let mut files = Vec::with_capacity(sources.len());
    loop {
        while running.len() < parallel.max(1) {
            let Some((shard, source)) = waiting.next() else {
                break;
            };
            running.push(pull_shard(ctx, backup, shard, source, progress));
        }
        match running.next().await {
            Some(result) => files.push(result?),
            None => break,
        }
    }

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
    let after = cluster::discover(&template, &seeds, timeout)
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
    Ok(Stored {
        size: files
            .iter()
            .map(|f| u64::try_from(f.size).unwrap_or(0))
            .sum(),
    })
}

async fn pull_shard(
    ctx: &JobContext,
    backup: &Backup,
    shard: &Shard,
    source: &Source,
    progress: &Progress,
) -> Result<BackupFile, Failure> {
    pull(ctx, backup, source, Some(shard), progress)
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

fn topology_failure(e: TopologyError) -> Failure {
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
) -> Result<BackupFile, Failure> {
    let addr = source.endpoint.addr.clone();
    tracing::info!(backup_id = %backup.id, node = %addr, role = source.role, "pulling snapshot");
    let mut conn = Connection::open(&source.endpoint, ctx.timeouts.connect).await?;
    // Diskless transfers announce no length: the RDB is usually smaller than
    // used memory, so that bounds the estimate (progress stays below 100 until the end).
    let used_memory = conn
        .info("memory")
        .await?
        .get("used_memory")
        .and_then(|v| v.parse::<u64>().ok());
    let mut transfer = snapshot::start(conn, ctx.timeouts.snapshot).await?;
    let estimate = match transfer.payload {
        Payload::Sized(len) => len,
        Payload::EofMarked(_) => used_memory.unwrap_or(0),
    };
    progress.total.fetch_add(estimate, Ordering::Relaxed);

    let slots = shard.map(Shard::slot_label);
    let name = file_name(&addr.host, addr.port, slots.as_deref(), chrono::Utc::now());
    let key = format!("{}{name}", prefix(backup));
    let mut upload = ctx.objects.upload(&key).await?;
    // An S3 upload's id is recorded until it is completed or aborted, so
    // one abandoned by a crash or an unreachable store is aborted later.
    let upload_id = upload.id().map(str::to_string);
    if let Some(id) = &upload_id {
        ctx.meta.add_pending_upload(id, &backup.id, &key).await?;
    }
    let started = std::time::Instant::now();
    let (summary, sha) = match stream(&mut transfer, &mut upload, progress).await {
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
        status: "stored".into(),
    };
    ctx.meta.add_backup_file(&file).await?;
    tracing::info!(
        backup_id = %backup.id, file = %name, bytes = size, rdb_version = summary.version,
        transfer_secs, commit_secs, "backup file stored"
    );
    Ok(file)
}

/// Socket → verifier → SHA-256 → upload; the RDB summary and the hex
/// SHA-256 once the payload has passed every check.
async fn stream(
    transfer: &mut snapshot::Transfer,
    upload: &mut crate::objects::Upload,
    progress: &Progress,
) -> Result<(rdb::Summary, String), Failure> {
    let mut verifier = rdb::Verifier::new();
    let mut sha = Sha256::new();
    while let Some(chunk) = transfer.next_chunk().await? {
        verifier.update(chunk)?;
        sha.update(chunk);
        upload.write(chunk).await?;
        progress
            .done
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    Ok((verifier.finish()?, hex::encode(sha.finalize())))
}

/// The upload is finished with (completed or aborted): no sweep needed.
async fn forget_upload(ctx: &JobContext, upload_id: Option<&str>) {
    if let Some(id) = upload_id
        && let Err(e) = ctx.meta.remove_pending_upload(id).await
    {
        tracing::warn!(upload_id = id, error = %e, "could not clear a finished upload; the sweep will find it aborted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcs_file_names() {
        let at = "2019-08-20T21:18:16Z".parse().expect("time");
        assert_eq!(
            file_name("192.168.63.250", 6379, None, at),
            "redis_192.168.63.250_6379_20190820211816.rdb"
        );
        assert_eq!(
            file_name("192.168.63.250", 6379, Some("10923-16383"), at),
            "redis_192.168.63.250_6379_10923-16383_20190820211816.rdb"
        );
        assert_eq!(
            file_name("::1", 7000, None, at),
            "redis_--1_7000_20190820211816.rdb"
        );
    }
}
