//! `serve`: the one entry point shared by `main` and the tests.

use crate::schedule::{Clock, Scheduler, SystemClock};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::metrics::Metrics;
use crate::api::{self, AppState};
use crate::auth::Authenticator;
use crate::config::{AuthMode, Config};
use crate::jobs::background::Background;
use crate::jobs::{self, JobContext, RedisTimeouts, Workers};
use crate::meta::Meta;
use crate::objects::Objects;
use crate::objects::link_signing::{LinkSigner, MAX_LINK_SECS};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Meta(#[from] crate::meta::MetaError),
    #[error(transparent)]
    Open(#[from] crate::meta::OpenError),
    #[error(transparent)]
    Objects(#[from] crate::objects::ObjectError),
    #[error(transparent)]
    Tls(#[from] crate::replication::tls::TlsConfigError),
    #[error("{0}")]
    Nodes(String),
    #[error("HTTPS: {0}")]
    Https(#[from] crate::http::TlsError),
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the service on an already-bound listener until `shutdown` resolves,
/// then drains in-flight requests and stops the workers. `config` must
/// already hold its credentials (see `auth::bootstrap`).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    run_with_clock(listener, config, shutdown, Arc::new(SystemClock)).await
}

/// [`run`], with the scheduler going by `clock` (tests move their own).
pub async fn run_with_clock(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
) -> Result<(), ServeError> {
    let bound = listener.local_addr()?;
    let tls = match (&config.tls_cert_file, &config.tls_key_file, config.tls()) {
        (_, _, Some((cert, key))) => {
            let certs = crate::http::Certificates::load(cert, key)?;
            certs.reload_on_sighup()?;
            Some(certs)
        }
        (None, None, None) => None,
        _ => {
            return Err(
                crate::http::TlsError::Pair("set both for HTTPS, or neither".into()).into(),
            );
        }
    };
    let limits = crate::http::Limits::from_config(&config);
    let auth = Authenticator::from_config(&config)?;
    if auth.mode() == AuthMode::None {
        tracing::warn!(
            "auth = \"none\": every request is accepted without a signature; use only on a closed network"
        );
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let tightened = crate::private_files::make_private(&config.data_dir)?;
    if tightened > 0 {
        tracing::warn!(entries = tightened, data_dir = %config.data_dir.display(),
            "files and directories under data_dir were readable by other users; made private (0600/0700)");
    }
    let meta = Meta::open(&config).await?;
    tracing::info!(backend = ?meta.backend(), "metadata store ready");
    crate::config::check_bucket_name(&config.bucket)?;
    let objects = Objects::from_config(&config).await?;
    tracing::info!(storage = ?config.storage, bucket = %config.bucket, "object store ready");
    let links = Arc::new(LinkSigner::new(meta.clone()).await?);

    let redis_tls = crate::replication::tls::client_config(config.redis_tls_ca_file.as_deref())?;
    let ctx = Arc::new(JobContext {
        redis_tls: redis_tls.clone(),
        cluster_parallel: config.cluster_parallel,
        lease: jobs::Lease::from_config(&config),
        max_backup_bytes: config.max_backup_bytes,
        restore_listen: config.restore_listen,
        restore_announce: config.restore_announce.clone().filter(|a| !a.is_empty()),
        quota: crate::quota::Quota::from_config(&config),
        per_project_jobs: config.per_project_jobs(),
        meta: meta.clone(),
        objects: objects.clone(),
        timeouts: RedisTimeouts::from_config(&config),
        node_id: config.node_id()?,
    });
    join_nodes(&ctx, &config).await?;
    let recovered = jobs::recover(&ctx, true).await?;
    if recovered > 0 {
        tracing::warn!(
            count = recovered,
            "jobs interrupted by the last stop were recovered as failed"
        );
    }

    let metrics = Arc::new(Metrics::default());
    let mut background = Background::default();
    let workers = Workers::start(&mut background, ctx.clone(), config.backup_workers);
    start_periodic(&mut background, &ctx, &links, &metrics, &config);
    let scheduler = Arc::new(Scheduler::new(ctx.clone(), workers.clone(), clock));
    background.every(
        "scheduler",
        Duration::from_secs(config.schedule_interval_secs.max(1)),
        move || {
            let scheduler = scheduler.clone();
            async move { scheduler.round().await.map(drop) }
        },
    );

    let state = Arc::new(AppState {
        public_url: config.public_url(bound),
        auth,
        meta: meta.clone(),
        objects,
        workers,
        redis_tls,
        links,
        metrics,
        analyses: tokio::sync::Semaphore::new(1),
        downloads: Arc::new(crate::api::download_slots::DownloadSlots::from_config(
            &config,
        )),
        config,
    });
    let app = api::router(state);
    tracing::info!(listen = %bound, node_id = %ctx.node_id, https = tls.is_some(), "rdbvault serving");
    let served = crate::http::serve(listener, app, limits, tls, shutdown).await;
    background.stop().await;
    if let Err(e) = meta.leave_node(&ctx.node_id).await {
        tracing::warn!(error = %e, "could not record this node's stop");
    }
    meta.close().await;
    served?;
    tracing::info!("rdbvault stopped");
    Ok(())
}

/// Reports this node to the others, refusing to start when its store
/// cannot be shared with the nodes alive beside it: a local store is seen
/// by its own node only, unless `data_dir` is declared shared.
async fn join_nodes(ctx: &JobContext, config: &Config) -> Result<(), ServeError> {
    let storage = config.storage.as_str();
    let since = ctx.lease.expired_before();
    let peers = ctx.meta.live_peers(&ctx.node_id, since).await?;
    let unshared = |s: &str, shared: bool| s == "local" && !shared;
    if let Some(peer) = peers.iter().find(|p| {
        unshared(storage, config.shared_data_dir) || unshared(&p.storage, p.shared_data_dir)
    }) {
        return Err(ServeError::Nodes(format!(
            "node {} (storage {}, seen {}) shares this metadata store, and a local store cannot be \
             shared between nodes: use storage = \"s3\" on every node, or set shared_data_dir = true \
             where data_dir is on storage every node mounts",
            peer.id,
            peer.storage,
            peer.seen_at.format("%Y-%m-%dT%H:%M:%SZ")
        )));
    }
    ctx.meta
        .report_node(&ctx.node_id, storage, config.shared_data_dir)
        .await?;
    if !peers.is_empty() {
        tracing::info!(peers = peers.len(), "other nodes share this metadata store");
    }
    Ok(())
}

/// The periodic tasks beside the job workers.
fn start_periodic(
    background: &mut Background,
    ctx: &Arc<JobContext>,
    links: &Arc<LinkSigner>,
    metrics: &Arc<Metrics>,
    config: &Config,
) {
    let sweep_ctx = ctx.clone();
    background.every(
        "upload-sweep",
        Duration::from_secs(config.sweep_interval_secs.max(1)),
        move || {
            let ctx = sweep_ctx.clone();
            async move { jobs::backup::sweep(&ctx).await.map(drop) }
        },
    );
    // Other nodes' jobs whose heartbeat stopped: checked a few times per
    // staleness period, so a dead node's work ends soon after it died.
    let recovery_ctx = ctx.clone();
    let (storage, shared) = (config.storage.as_str(), config.shared_data_dir);
    background.every("job-recovery", ctx.lease.recovery_every(), move || {
        let ctx = recovery_ctx.clone();
        async move {
            // Each round also tells the other nodes this one is alive.
            ctx.meta.report_node(&ctx.node_id, storage, shared).await?;
            jobs::recover(&ctx, false).await.map(drop)
        }
    });
    // Objects no record owns are reported, never deleted here.
    let (orphan_ctx, orphan_metrics) = (ctx.clone(), metrics.clone());
    background.every(
        "store-sweep",
        Duration::from_secs(config.sweep_interval_secs.max(1)),
        move || {
            let (ctx, metrics) = (orphan_ctx.clone(), orphan_metrics.clone());
            async move {
                let found = jobs::orphans::find(&ctx.meta, &ctx.objects).await?;
                metrics.observe_orphans(&found);
                if !found.objects.is_empty() {
                    tracing::warn!(objects = found.objects.len(), bytes = found.bytes(),
                        first = %found.objects[0].0,
                        "objects in the store that no backup record owns; review them with `rdbvault store sweep`");
                }
                Ok::<_, jobs::orphans::SweepError>(())
            }
        },
    );
    let (meta, keys) = (ctx.meta.clone(), links.clone());
    let rotation_days = config.link_key_rotation_days;
    background.every("link-keys", Duration::from_secs(3600), move || {
        link_key_maintenance(meta.clone(), keys.clone(), rotation_days)
    });
    let (meta, metrics, statuses) = (ctx.meta.clone(), metrics.clone(), background.statuses());
    let storage = config.storage.as_str();
    background.every("metrics", METRICS_EVERY, move || {
        let (meta, metrics, statuses) = (meta.clone(), metrics.clone(), statuses.clone());
        async move {
            metrics.observe_background(&statuses.snapshot(), &meta.job_counts().await?);
            // From the shared records, so every node shows the same fleet.
            metrics.observe_health(meta.health().await?, storage);
            Ok::<_, crate::meta::MetaError>(())
        }
    });
}

/// How often other nodes' stale jobs are looked for.
/// How often `/metrics` learns the jobs and background tasks.
const METRICS_EVERY: Duration = Duration::from_secs(5);

/// Rotates the link key when it is older than `rotation_days`, and forgets
/// retired keys once no link they signed can still be valid.
async fn link_key_maintenance(
    meta: Meta,
    links: Arc<LinkSigner>,
    rotation_days: u32,
) -> Result<(), crate::meta::MetaError> {
    let now = chrono::Utc::now();
    let keys = meta.link_keys().await?;
    let max_age = chrono::TimeDelta::days(i64::from(rotation_days.max(1)));
    if keys
        .iter()
        .filter(|k| k.retired_at.is_none())
        .all(|k| now - k.created_at > max_age)
    {
        meta.rotate_link_key().await?;
    }
    meta.purge_link_keys(now - chrono::TimeDelta::seconds(MAX_LINK_SECS + 3600))
        .await?;
    links.refresh().await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested; draining requests");
}
