//! `serve`: the one entry point shared by `main` and the tests.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::auth::Authenticator;
use crate::config::{AuthMode, Config};
use crate::jobs::{self, JobContext, Workers};
use crate::meta::Meta;
use crate::objects::Objects;
use crate::objects::links::{LinkSigner, MAX_LINK_SECS};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Meta(#[from] crate::meta::MetaError),
    #[error(transparent)]
    Objects(#[from] crate::objects::ObjectError),
    #[error(transparent)]
    Tls(#[from] crate::replication::tls::TlsConfigError),
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the service on an already-bound listener until `shutdown` resolves,
/// then drains in-flight requests and stops the workers. `config` must
/// already hold its credentials (see [`crate::auth::bootstrap`]).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let bound = listener.local_addr()?;
    let auth = Authenticator::from_config(&config)?;
    if auth.mode() == AuthMode::None {
        tracing::warn!(
            "auth = \"none\": every request is accepted without a signature; use only on a closed network"
        );
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let meta = Meta::connect(&config.database_url()).await?;
    tracing::info!(backend = ?meta.backend(), "metadata store ready");
    crate::config::check_bucket_name(&config.bucket)?;
    let objects = Objects::from_config(&config).await?;
    tracing::info!(storage = ?config.storage, bucket = %config.bucket, "object store ready");
    let links = Arc::new(LinkSigner::new(meta.clone()).await?);

    let redis_tls = crate::replication::tls::client_config(config.redis_tls_ca_file.as_deref())?;
    let ctx = Arc::new(JobContext {
        redis_tls: redis_tls.clone(),
        cluster_parallel: config.cluster_parallel,
        meta: meta.clone(),
        objects: objects.clone(),
        timeouts: config.job_timeouts(),
        node_id: config.node_id()?,
    });
    let recovered = jobs::recover(&ctx).await?;
    if recovered > 0 {
        tracing::warn!(
            count = recovered,
            "backups interrupted by the last stop were marked failed"
        );
    }
    let sweeper = tokio::spawn(jobs::sweep_forever(
        ctx.clone(),
        std::time::Duration::from_secs(config.sweep_interval_secs.max(1)),
    ));
    let stop_workers = CancellationToken::new();
    let (workers, mut worker_tasks): (Workers, _) =
        Workers::spawn(ctx.clone(), config.backup_workers, stop_workers.clone());

    let state = Arc::new(AppState {
        public_url: config.public_url(bound),
        auth,
        meta: meta.clone(),
        objects,
        workers,
        redis_tls,
        links: links.clone(),
        metrics: Arc::default(),
        config,
    });
    let maintenance = tokio::spawn(link_key_maintenance(
        meta.clone(),
        links,
        state.config.link_key_rotation_days,
    ));
    let app = api::router(state);
    tracing::info!(listen = %bound, node_id = %ctx.node_id, "rdbvault serving");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    stop_workers.cancel();
    while worker_tasks.join_next().await.is_some() {}
    maintenance.abort();
    sweeper.abort();
    meta.close().await;
    served?;
    tracing::info!("rdbvault stopped");
    Ok(())
}

/// Rotates the link key when it is older than `rotation_days`, and forgets
/// retired keys once no link they signed can still be valid.
async fn link_key_maintenance(meta: Meta, links: Arc<LinkSigner>, rotation_days: u32) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let now = chrono::Utc::now();
        let result = async {
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
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "link key maintenance failed");
        }
    }
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
