//! The `replicate` method: rdbvault acts as a master for a moment, so the
//! target loads the stored RDB file itself, at the speed of its own load.
//!
//! 1. A one-time listener is bound (`restore_listen`), and the address the
//!    target is told to follow is recorded in the restore *before*
//!    `REPLICAOF`, so whoever recovers the restore after a crash can
//!    promote the target back;
//! 2. `REPLICAOF host port`; the listener accepts one connection, from the
//!    target's own address only, and answers the replica's handshake
//!    (`PING`, `AUTH`, `REPLCONF`s) and its `PSYNC` with `+FULLRESYNC` and
//!    the file as a `$<len>` bulk, streamed from the store;
//! 3. keep-alive `PING`s (the replication stream) until the target reports
//!    `master_link_status:up`: it has loaded the file;
//! 4. `REPLICAOF NO ONE`. An `ha` target's replicas resync from it.
//!
//! Until the target has connected, nothing of its data has changed: a
//! target that refuses `REPLICAOF` or cannot reach rdbvault is
//! [`Attempt::Unavailable`], and `auto` falls back to writing keys. Any
//! failure after that promotes the target back before it is reported.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::read::check_record;
use crate::jobs::JobContext;
use crate::jobs::failure::{Failure, FailureKind};
use crate::meta::{BackupFile, Instance};
use crate::replication::resp::{self, Reply};
use crate::replication::{Connection, Endpoint};

/// How long `auto` waits for the target to connect before writing keys
/// instead (a target on another network never will).
pub(super) const CONNECT_AUTO: Duration = Duration::from_secs(5);
/// The same, when `replicate` was asked for explicitly.
pub(super) const CONNECT_EXPLICIT: Duration = Duration::from_secs(10);
/// How often the replication stream carries a `PING` (Redis's own
/// `repl-ping-replica-period` is 10 s; the replica drops a silent master
/// after `repl-timeout`, 60 s).
const KEEPALIVE: Duration = Duration::from_secs(5);
/// How often the target's state is asked while it loads.
const POLL: Duration = Duration::from_millis(20);
/// Longest command of the replica's handshake accepted.
const MAX_HANDSHAKE: usize = 64 * 1024;
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// Why a `replicate` restore did not go through.
pub(super) enum Attempt {
    /// Nothing of the target changed: it refused `REPLICAOF`, or never
    /// connected. `auto` writes keys instead.
    Unavailable(String),
    /// It failed after the target had started to sync; the target was
    /// promoted back (best effort) and the restore fails.
    Failed(Failure),
}

impl From<Failure> for Attempt {
    fn from(f: Failure) -> Attempt {
        Attempt::Failed(f)
    }
}

/// One `replicate` restore of `file` into the master `target`.
pub(super) struct Replication<'a> {
    pub ctx: &'a JobContext,
    pub restore_id: &'a str,
    pub target: &'a Endpoint,
    pub file: &'a BackupFile,
    /// Bytes of the file sent so far.
    pub sent: Arc<AtomicU64>,
    pub connect_within: Duration,
}

impl Replication<'_> {
    /// Runs it; on any failure after `REPLICAOF` the target is promoted
    /// back before this returns.
    /// `gate` must pass before the file's last byte is sent: until then the
    /// target has not loaded anything (it loads a complete payload only).
    pub(super) async fn run<T>(
        &self,
        stage: impl Fn(&'static str),
        gate: impl Future<Output = Result<T, Attempt>>,
    ) -> Result<T, Attempt> {
        let listener = TcpListener::bind(self.ctx.restore_listen)
            .await
            .map_err(|e| {
                Attempt::Unavailable(format!(
                    "cannot listen on restore_listen {}: {e}",
                    self.ctx.restore_listen
                ))
            })?;
        let bound = listener
            .local_addr()
            .map_err(|e| Attempt::Unavailable(format!("the listener has no address: {e}")))?;
        let announce = announced(self.ctx.restore_announce.as_deref(), bound)?;
        let peers = target_ips(self.target).await?;
        let mut control = Connection::open(self.target, self.ctx.timeouts.connect)
            .await
            .map_err(|e| Attempt::Failed(e.into()))?;

        self.ctx
            .meta
            .set_restore_replica_of(self.restore_id, Some(&announce.to_string()))
            .await
            .map_err(|e| Attempt::Failed(e.into()))?;
        let (host, port) = (announce.ip().to_string(), announce.port().to_string());
        if let Err(e) = control
            .command(&[b"REPLICAOF", host.as_bytes(), port.as_bytes()])
            .await
        {
            self.forget().await;
            return Err(Attempt::Unavailable(format!(
                "the target refused REPLICAOF: {e}"
            )));
        }
        stage("replicating: waiting for the target to connect");
        let result = self
            .serve(&listener, &peers, &mut control, &stage, gate)
            .await;
        drop(listener);
        stage("replicating: promoting the target back to master");
        let promoted = promote(&mut control).await;
        control.shutdown().await;
        match (&result, promoted) {
            (_, Ok(())) => self.forget().await,
            (Ok(_), Err(e)) => return Err(Attempt::Failed(e)),
            // The failure reported is the first; the recovery retries the promotion.
            (Err(_), Err(e)) => {
                tracing::error!(restore_id = self.restore_id, error = %e, "the target could not be promoted back")
            }
        }
        result
    }

    async fn forget(&self) {
        if let Err(e) = self
            .ctx
            .meta
            .set_restore_replica_of(self.restore_id, None)
            .await
        {
            tracing::warn!(restore_id = self.restore_id, error = %e, "could not clear the restore's replica_of");
        }
    }

    /// Accepts the target, answers its sync with the file, and waits until
    /// it has loaded it.
    async fn serve<T>(
        &self,
        listener: &TcpListener,
        peers: &HashSet<IpAddr>,
        control: &mut Connection,
        stage: &impl Fn(&'static str),
        gate: impl Future<Output = Result<T, Attempt>>,
    ) -> Result<T, Attempt> {
        let asked = Instant::now();
        let mut replica = accept(listener, peers, self.connect_within).await?;
        let connected = asked.elapsed().as_secs_f64();
        let psync = tokio::time::timeout(self.ctx.timeouts.connect * 4, handshake(&mut replica))
            .await
            .map_err(|_| {
                Failure::new(
                    FailureKind::TimedOut,
                    "the target did not finish the replication handshake",
                )
            })??;
        stage("replicating: the target receives the file");
        if psync {
            let replid = hex::encode(rand::random::<[u8; 20]>());
            replica
                .get_mut()
                .write_all(format!("+FULLRESYNC {replid} 0\r\n").as_bytes())
                .await
                .map_err(|e| lost("writing +FULLRESYNC", e))?;
        }
        let sending = Instant::now();
        let passed = self.send_file(replica.get_mut(), gate).await?;
        let sent = sending.elapsed().as_secs_f64();
        stage("replicating: the target loads the file");
        let loading = Instant::now();
        self.wait_loaded(replica, control).await?;
        tracing::info!(
            restore_id = self.restore_id,
            connect_secs = connected,
            send_secs = sent,
            load_secs = loading.elapsed().as_secs_f64(),
            "the target loaded the file"
        );
        Ok(passed)
    }

    /// `$<len>\r\n` and the stored file, checked against its record as it
    /// goes; its last byte only once that check and `gate` have passed.
    async fn send_file<T>(
        &self,
        out: &mut TcpStream,
        gate: impl Future<Output = Result<T, Attempt>>,
    ) -> Result<T, Attempt> {
        let stall = self.ctx.timeouts.transfer.stall;
        let size = u64::try_from(self.file.size).unwrap_or(0);
        let mut input = self
            .ctx
            .objects
            .read(&self.file.object_key)
            .await
            .map_err(Failure::from)?;
        let header = format!("${size}\r\n");
        write_within(out, header.as_bytes(), stall).await?;
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut last = None;
        loop {
            let n = input.read(&mut buf).await.map_err(|e| {
                Failure::new(
                    FailureKind::Storage,
                    format!(
                        "reading backup file {} at byte {total}: {e}",
                        self.file.file_name
                    ),
                )
            })?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            sha.update(chunk);
            total += n as u64;
            if total > size {
                // More than recorded: the check below fails; send none of it.
                break;
            }
            let send = if total == size {
                last = chunk.last().copied();
                &chunk[..n - 1]
            } else {
                chunk
            };
            write_within(out, send, stall).await?;
            self.sent.fetch_add(send.len() as u64, Ordering::Relaxed);
        }
        check_record(self.file, total, &hex::encode(sha.finalize()))?;
        let passed = gate.await?;
        let Some(last) = last else {
            return Err(Failure::new(FailureKind::Verification, "the backup file is empty").into());
        };
        write_within(out, &[last], stall).await?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(passed)
    }

    /// Keeps the link alive until the target says its link is up (the file
    /// is loaded); fails when it drops the link or its load stalls.
    async fn wait_loaded(
        &self,
        replica: BufReader<TcpStream>,
        control: &mut Connection,
    ) -> Result<(), Attempt> {
        let stall = self.ctx.timeouts.transfer.stall;
        let (mut from, mut to) = replica.into_inner().into_split();
        // The replica's `REPLCONF ACK`s are read and dropped; its end of the
        // link closing means it gave up the sync.
        let dropped = async move {
            let mut sink = [0u8; 4096];
            loop {
                match from.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::pin!(dropped);
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        let mut poll = tokio::time::interval(POLL);
        let mut loaded_bytes = None;
        let mut moved_at = Instant::now();
        loop {
            tokio::select! {
                _ = &mut dropped => return Err(Failure::new(
                    FailureKind::TargetRefused,
                    "the target dropped the replication link before it had loaded the file \
                     (its log says why: an RDB it cannot read, or no disk space for its temporary file)",
                ).into()),
                _ = keepalive.tick() => {
                    write_within(&mut to, PING, stall).await?;
                }
                _ = poll.tick() => {
                    let replication = control.info("replication").await.map_err(Failure::from)?;
                    if replication.get("master_link_status").map(String::as_str) == Some("up") {
                        return Ok(());
                    }
                    let persistence = control.info("persistence").await.map_err(Failure::from)?;
                    let now = persistence.get("loading_loaded_bytes").cloned();
                    if now != loaded_bytes {
                        loaded_bytes = now;
                        moved_at = Instant::now();
                    } else if moved_at.elapsed() > stall {
                        return Err(Failure::new(
                            FailureKind::TimedOut,
                            format!("the target's load made no progress for {} s", stall.as_secs()),
                        ).into());
                    }
                }
            }
        }
    }
}

/// Whether `target` loads a full sync only once the whole payload has
/// arrived (`repl-diskless-load disabled`, Redis's default): then a payload
/// cut short is never loaded. Unknown (no `CONFIG GET` right) counts as no.
pub(super) async fn loads_from_disk(ctx: &JobContext, target: &Endpoint) -> bool {
    let Ok(mut conn) = Connection::open(target, ctx.timeouts.connect).await else {
        return false;
    };
    let reply = conn
        .command(&[b"CONFIG", b"GET", b"repl-diskless-load"])
        .await;
    conn.shutdown().await;
    let value = match reply {
        Ok(Reply::Array(Some(items))) => items.get(1).and_then(Reply::as_bytes).map(<[u8]>::to_vec),
        _ => None,
    };
    value.as_deref() == Some(b"disabled")
}

/// The address told to the target: `restore_announce`'s host (or the
/// listener's address) and the listener's port.
fn announced(announce: Option<&str>, bound: SocketAddr) -> Result<SocketAddr, Attempt> {
    match announce {
        Some(host) => host
            .parse::<IpAddr>()
            .map(|ip| SocketAddr::new(ip, bound.port()))
            .map_err(|_| {
                Attempt::Unavailable(format!("restore_announce {host:?} is not an IP address"))
            }),
        None if bound.ip().is_unspecified() => Err(Attempt::Unavailable(format!(
            "restore_listen {bound} binds every address: set restore_announce to the one the target reaches"
        ))),
        None => Ok(bound),
    }
}

/// The addresses the target may connect from: what its host name resolves to.
async fn target_ips(target: &Endpoint) -> Result<HashSet<IpAddr>, Attempt> {
    let addrs = tokio::net::lookup_host((target.addr.host.as_str(), target.addr.port))
        .await
        .map_err(|e| Attempt::Unavailable(format!("resolving {}: {e}", target.addr)))?;
    Ok(addrs.map(|a| a.ip()).collect())
}

/// The target's connection; connections from anywhere else are closed.
async fn accept(
    listener: &TcpListener,
    peers: &HashSet<IpAddr>,
    within: Duration,
) -> Result<BufReader<TcpStream>, Attempt> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let accepted = tokio::time::timeout_at(deadline, listener.accept()).await;
        match accepted {
            Err(_) => {
                let addr = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                return Err(Attempt::Unavailable(format!(
                    "the target did not connect to {addr} within {} s (it cannot reach rdbvault: see restore_listen)",
                    within.as_secs()
                )));
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "accepting the replica failed"),
            Ok(Ok((sock, peer))) if peers.contains(&peer.ip()) => {
                let _ = sock.set_nodelay(true);
                return Ok(BufReader::new(sock));
            }
            Ok(Ok((_, peer))) => {
                tracing::warn!(%peer, "a connection to the restore listener from another address than the target's was refused")
            }
        }
    }
}

/// Answers the replica until its `PSYNC` (true) or `SYNC` (false).
async fn handshake(replica: &mut BufReader<TcpStream>) -> Result<bool, Attempt> {
    loop {
        let command = resp::read_reply_up_to(replica, MAX_HANDSHAKE)
            .await
            .map_err(|e| {
                Failure::new(
                    FailureKind::Protocol,
                    format!("the replica's handshake: {e}"),
                )
            })?;
        let Reply::Array(Some(args)) = command else {
            return Err(Failure::new(
                FailureKind::Protocol,
                "the replica sent something else than a command",
            )
            .into());
        };
        let name = args
            .first()
            .and_then(Reply::as_bytes)
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        let answer: &[u8] = match name.as_slice() {
            b"PSYNC" => return Ok(true),
            b"SYNC" => return Ok(false),
            b"PING" => b"+PONG\r\n",
            // The target's own `masterauth`, meant for its real master.
            b"AUTH" | b"REPLCONF" => b"+OK\r\n",
            _ => b"-ERR unexpected command during the replication handshake\r\n",
        };
        replica
            .get_mut()
            .write_all(answer)
            .await
            .map_err(|e| lost("answering the handshake", e))?;
    }
}

async fn promote(control: &mut Connection) -> Result<(), Failure> {
    control
        .command(&[b"REPLICAOF", b"NO", b"ONE"])
        .await
        .map(drop)
        .map_err(Failure::from)
}

/// Promotes back a target a crashed `replicate` restore left following
/// `replica_of`: each registered node that still follows it.
pub(super) async fn reset(
    ctx: &JobContext,
    target: &Instance,
    replica_of: &str,
) -> Result<(), Failure> {
    let template = Endpoint::of(target, &ctx.redis_tls);
    let Ok(listener) = replica_of.parse::<SocketAddr>() else {
        return Ok(());
    };
    for addr in &target.addrs {
        let mut conn = Connection::open(&template.at(addr), ctx.timeouts.connect).await?;
        let info = conn.info("replication").await?;
        let follows = info.get("master_host").map(String::as_str)
            == Some(&listener.ip().to_string())
            && info.get("master_port").map(String::as_str) == Some(&listener.port().to_string());
        if follows {
            promote(&mut conn).await?;
            tracing::warn!(node = %addr, "a target left replicating from a stopped restore was promoted back");
        }
        conn.shutdown().await;
    }
    Ok(())
}

async fn write_within(
    out: &mut (impl AsyncWriteExt + Unpin),
    bytes: &[u8],
    stall: Duration,
) -> Result<(), Failure> {
    match tokio::time::timeout(stall, out.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(lost("sending the file", e)),
        Err(_) => Err(Failure::new(
            FailureKind::TimedOut,
            format!("the target took no data for {} s", stall.as_secs()),
        )),
    }
}

fn lost(what: &str, e: std::io::Error) -> Failure {
    Failure::new(
        FailureKind::ConnectionLost,
        format!("{what} to the target: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_address() {
        let bound: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        assert_eq!(announced(None, bound).ok(), Some(bound));
        let any: SocketAddr = "0.0.0.0:4000".parse().expect("addr");
        assert!(matches!(announced(None, any), Err(Attempt::Unavailable(_))));
        assert_eq!(
            announced(Some("10.1.2.3"), any).ok(),
            Some("10.1.2.3:4000".parse().expect("addr"))
        );
        assert!(matches!(
            announced(Some("host.example"), any),
            Err(Attempt::Unavailable(_))
        ));
    }
}
