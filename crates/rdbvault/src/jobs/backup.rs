//! One backup: choose the source node, pull the snapshot, verify and hash
//! it while it streams into the object store, publish it only when every
//! check has passed.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::JobContext;
use super::failure::{Failure, FailureKind};
use crate::meta::{Backup, BackupFile, Instance, Mode};
use crate::replication::snapshot::{self, Payload};
use crate::replication::source::{self, Source};
use crate::replication::{Connection, Endpoint};

/// How often progress (and the job's heartbeat) reach the metadata store.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a successful backup stored.
pub struct Stored {
    pub size: u64,
}

/// The object prefix of a backup: `{instance_id}/{backup_id}/`.
pub fn prefix(backup: &Backup) -> String {
    format!("{}/{}/", backup.instance_id, backup.id)
}

/// DCS file name: `redis_{ip}_{port}_{yyyyMMddHHmmss}.rdb`.
pub fn file_name(host: &str, port: u16, at: chrono::DateTime<chrono::Utc>) -> String {
    // IPv6 colons would make the name unusable on some filesystems and in URLs.
    let host = host.replace(':', "-");
    format!("redis_{host}_{port}_{}.rdb", at.format("%Y%m%d%H%M%S"))
}

pub async fn take(
    ctx: &JobContext,
    job_id: &str,
    backup: &Backup,
    instance: &Instance,
) -> Result<Stored, Failure> {
    let timeouts = &ctx.timeouts;
    let template = Endpoint {
        addr: instance.addrs[0].clone(),
        username: instance.username.clone(),
        password: instance.password.clone(),
        tls: instance.tls.then(|| ctx.redis_tls.clone()),
    };
    let source: Source = match instance.mode {
        Mode::Single => Source {
            endpoint: template,
            role: "master",
        },
        Mode::Ha => source::choose(&template, &instance.addrs, true, timeouts.connect).await?,
        Mode::Cluster => {
            return Err(Failure::new(
                FailureKind::Internal,
                "cluster backups are not supported yet",
            ));
        }
    };
    let addr = source.endpoint.addr.clone();
    tracing::info!(backup_id = %backup.id, node = %addr, role = source.role, "pulling snapshot");

    let mut conn = Connection::open(&source.endpoint, timeouts.connect).await?;
    // Diskless transfers announce no length: the RDB is usually smaller than
    // used memory, so that bounds the estimate (progress stays below 100 until the end).
    let used_memory = conn
        .info("memory")
        .await?
        .get("used_memory")
        .and_then(|v| v.parse::<u64>().ok());
    let mut transfer = snapshot::start(conn, timeouts.snapshot).await?;
    let total = match transfer.payload {
        Payload::Sized(len) => Some(len),
        Payload::EofMarked(_) => used_memory.filter(|m| *m > 0),
    };
    let source_node = format!("{addr} ({})", source.role);
    let total_i64 = total.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
    if !ctx
        .meta
        .start_backup(&backup.id, &source_node, total_i64)
        .await?
    {
        return Err(Failure::new(
            FailureKind::Interrupted,
            "the backup was deleted before it started",
        ));
    }

    let name = file_name(&addr.host, addr.port, chrono::Utc::now());
    let key = format!("{}{name}", prefix(backup));
    let mut upload = ctx.objects.upload(&key).await?;
    // An S3 upload's id is recorded until it is completed or aborted, so
    // one abandoned by a crash or an unreachable store is aborted later.
    let upload_id = upload.id().map(str::to_string);
    if let Some(id) = &upload_id {
        ctx.meta.add_pending_upload(id, &backup.id, &key).await?;
    }
    let transfer_started = Instant::now();
    let streamed = stream(ctx, job_id, backup, &mut transfer, &mut upload).await;
    let (summary, sha) = match streamed {
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
    let transfer_secs = transfer_started.elapsed().as_secs_f64();
    // Only now, with every byte checked, does the file become visible.
    let commit_started = Instant::now();
    upload.commit().await?;
    forget_upload(ctx, upload_id.as_deref()).await;
    let commit_secs = commit_started.elapsed().as_secs_f64();
    let redis_version = summary
        .aux
        .iter()
        .find(|(k, _)| k == "redis-ver")
        .map(|(_, v)| v.clone());
    ctx.meta
        .add_backup_file(&BackupFile {
            backup_id: backup.id.clone(),
            file_name: name.clone(),
            object_key: key,
            slots: None,
            source_addr: addr.to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            sha256: Some(sha),
            rdb_version: Some(i64::from(summary.version)),
            redis_version,
            status: "stored".into(),
        })
        .await?;
    tracing::info!(
        backup_id = %backup.id, file = %name, bytes = size, rdb_version = summary.version,
        transfer_secs, commit_secs, "backup file stored"
    );
    Ok(Stored { size })
}

/// Socket → verifier → SHA-256 → upload, with progress; the RDB summary
/// and the hex SHA-256 once the payload has passed every check.
async fn stream(
    ctx: &JobContext,
    job_id: &str,
    backup: &Backup,
    transfer: &mut snapshot::Transfer,
    upload: &mut crate::objects::Upload,
) -> Result<(rdb::Summary, String), Failure> {
    let mut verifier = rdb::Verifier::new();
    let mut sha = Sha256::new();
    let mut last_report = Instant::now();
    let mut received: u64 = 0;
    while let Some(chunk) = transfer.next_chunk().await? {
        verifier.update(chunk)?;
        sha.update(chunk);
        upload.write(chunk).await?;
        received += chunk.len() as u64;
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            let done = i64::try_from(received).unwrap_or(i64::MAX);
            ctx.meta.set_backup_progress(&backup.id, done, None).await?;
            ctx.meta.heartbeat_job(job_id).await?;
        }
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
            file_name("192.168.63.250", 6379, at),
            "redis_192.168.63.250_6379_20190820211816.rdb"
        );
        assert_eq!(
            file_name("::1", 7000, at),
            "redis_--1_7000_20190820211816.rdb"
        );
    }
}
