//! The HTTP server under the API: rdbvault's own accept loop on hyper, so
//! that what a hostile or broken client can hold is bounded.
//!
//! - at most `max_connections` connections; one more is closed at once;
//! - a request head must arrive within `header_read_timeout_secs`
//!   (slowloris), and a connection where no byte moves for
//!   `idle_timeout_secs` while waiting to read, or for
//!   `download_idle_timeout_secs` while waiting to write (a client that
//!   stopped reading a download), is closed (`idle.rs`);
//! - HTTPS when `tls_cert_file`/`tls_key_file` are set (`tls.rs`), its
//!   handshake under the same header deadline, in the connection's own task;
//! - HTTP/1.1 only: with HTTP/2 a client could stall a stream by its flow
//!   control window without the socket ever blocking, out of reach of the
//!   idle timeouts; the SDKs speak HTTP/1.1.
//!
//! - the errors hyper answers by itself (400, 414, 431) carry the DCS error
//!   body like every other (`stack_errors.rs`).
//!
//! Each request carries the peer's address (`ConnectInfo`) for the limits
//! kept per client.

mod idle;
mod stack_errors;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::Config;
use idle::IdleTimeout;
use stack_errors::DcsErrors;
pub use tls::{Certificates, TlsError};

/// hyper's buffer per connection (request head, queued response bytes).
const MAX_BUF: usize = 64 * 1024;

/// What the server enforces on each connection.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_idle_timeout: Duration,
    /// How long a stop waits for requests in flight (downloads) to end.
    pub drain_timeout: Duration,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            max_connections: config.max_connections.max(1),
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs.max(1)),
            write_idle_timeout: Duration::from_secs(config.download_idle_timeout_secs.max(1)),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish (at most `drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<Certificates>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TlsError> {
    let acceptor = tls.as_ref().map(|c| c.acceptor()).transpose()?;
    raise_open_files(limits.max_connections);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper keeps asking a body for chunks until this much is queued
        // (~400 KiB by default): a download whose client is slow would hold
        // several chunks. 64 KiB queues one; it also bounds a request head.
        .max_buf_size(MAX_BUF);
    let connections = Connections {
        builder: Arc::new(builder),
        app,
        limits: limits.clone(),
        acceptor,
    };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut refused_logged = tokio::time::Instant::now() - Duration::from_secs(60);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refused_logged.elapsed() > Duration::from_secs(10) {
                tracing::warn!(max_connections = limits.max_connections, %peer,
                    "connection limit reached: new connections are closed");
                refused_logged = tokio::time::Instant::now();
            }
            drop(tcp);
            continue;
        };
        tokio::spawn(
            connections
                .clone()
                .handle(tcp, peer, slot, graceful.watcher()),
        );
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the drain timeout were cut");
    }
    Ok(())
}

/// Every connection is a descriptor, and so is every file a download or
/// a backup has open: the soft limit is raised to the hard one, and a limit
/// too low for `max_connections` is said at start rather than found as
/// failing accepts under load.
fn raise_open_files(max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "could not raise the open files limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    let needed = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(256);
    if now.is_some_and(|n| n < needed) {
        tracing::warn!(open_files = ?now, max_connections,
            "the open files limit is below max_connections + 256: accepts will fail before the connection limit");
    }
}

/// What every connection's task needs.
#[derive(Clone)]
struct Connections {
    builder: Arc<http1::Builder>,
    app: Router,
    limits: Limits,
    acceptor: Option<TlsAcceptor>,
}

impl Connections {
    async fn handle(
        self,
        tcp: TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        watcher: Watcher,
    ) {
        let _ = tcp.set_nodelay(true);
        let io = IdleTimeout::new(
            tcp,
            self.limits.idle_timeout,
            self.limits.write_idle_timeout,
        );
        match self.acceptor.clone() {
            None => self.serve_io(io, peer, watcher).await,
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(io));
                match handshake.await {
                    Ok(Ok(tls)) => self.serve_io(tls, peer, watcher).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        }
        drop(slot);
    }

    async fn serve_io<I>(&self, io: I, peer: SocketAddr, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(Body::new))
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(DcsErrors::new(io)), service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}
