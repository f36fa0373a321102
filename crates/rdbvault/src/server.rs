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
    let objects = Objects::local(config.data_dir.join("objects"), config.bucket.clone())?;

    let redis_tls = crate::replication::tls::client_config(config.redis_tls_ca_file.as_deref())?;
    let ctx = Arc::new(JobContext {
        redis_tls: redis_tls.clone(),
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
        metrics: Arc::default(),
        config,
    });
    let app = api::router(state);
    tracing::info!(listen = %bound, node_id = %ctx.node_id, "rdbvault serving");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    stop_workers.cancel();
    while worker_tasks.join_next().await.is_some() {}
    meta.close().await;
    served?;
    tracing::info!("rdbvault stopped");
    Ok(())
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
