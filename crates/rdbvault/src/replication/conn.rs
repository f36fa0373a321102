//! A connection to one Redis node: TCP or TLS, authenticated, speaking RESP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::resp::{self, Reply, RespError};
use crate::meta::Secret;
use crate::redis_addr::RedisAddr;

/// Longest bulk string an ordinary command's reply may hold: `CLUSTER
/// NODES` of a thousand nodes is a few hundred KiB.
pub(crate) const REPLY_LIMIT: usize = 8 << 20;
/// Longest `INFO` reply accepted.
pub(crate) const INFO_LIMIT: usize = 1 << 20;

/// What it takes to reach and log in to a node.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: RedisAddr,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// TLS settings when the node speaks TLS.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl Endpoint {
    /// How to reach a registered instance (its first address); `tls` is used
    /// when the instance is registered with TLS.
    pub(crate) fn of(
        instance: &crate::meta::Instance,
        tls: &Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Endpoint {
        Endpoint {
            addr: instance.addrs[0].clone(),
            username: instance.username.clone(),
            password: instance.password.clone(),
            tls: instance.tls.then(|| tls.clone()),
        }
    }

    /// Another node of the same deployment: same credentials and TLS.
    pub(crate) fn at(&self, addr: &RedisAddr) -> Endpoint {
        Endpoint {
            addr: addr.clone(),
            ..self.clone()
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to {addr}: no connection within the connect timeout ({ms} ms)")]
    ConnectTimeout { addr: String, ms: u128 },
    #[error("no address to connect to")]
    NoAddress,
    #[error("TLS handshake with {addr}: {reason}")]
    Tls { addr: String, reason: String },
    #[error("authentication refused: {0}")]
    Auth(String),
    /// The ACL user lacks a right: named, so the operator knows what to grant.
    #[error("{addr}: the ACL user may not run {command} ({message}); grant it +{acl}")]
    NoPermission {
        addr: String,
        command: String,
        /// The ACL rule that allows it, e.g. `cluster|shards`.
        acl: String,
        message: String,
    },
    #[error("{addr} answered {command} with an error: {message}")]
    Command {
        addr: String,
        command: String,
        message: String,
    },
    #[error("{addr}: {source}")]
    Resp { addr: String, source: RespError },
    #[error("{addr}: no reply to {command} within {ms} ms")]
    Timeout {
        addr: String,
        command: String,
        ms: u128,
    },
}

impl ConnError {
    /// True when the server refused our credentials or permissions, as
    /// opposed to a network or protocol failure: another node of the same
    /// deployment would refuse them too.
    pub(crate) fn is_auth(&self) -> bool {
        matches!(self, ConnError::Auth(_) | ConnError::NoPermission { .. })
    }

    /// The error for a server's `-ERR...` answer to `args`: a missing ACL
    /// right and a missing login are told apart from other refusals.
    pub(crate) fn refused(addr: &str, args: &[&[u8]], message: String) -> ConnError {
        if message.starts_with("NOPERM") {
            let command = command_name(args);
            ConnError::NoPermission {
                addr: addr.into(),
                acl: command.to_ascii_lowercase().replace(' ', "|"),
                command,
                message,
            }
        } else if message.starts_with("NOAUTH") || message.starts_with("WRONGPASS") {
            ConnError::Auth(message)
        } else {
            ConnError::Command {
                addr: addr.into(),
                command: command_name(args),
                message,
            }
        }
    }
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Connection {
    stream: BufStream<Box<dyn Io>>,
    addr: String,
    /// Applies to every request/reply exchange (not to streamed payloads).
    timeout: Duration,
}

impl Connection {
    /// Connects, and authenticates when the endpoint has credentials.
    pub async fn open(endpoint: &Endpoint, timeout: Duration) -> Result<Connection, ConnError> {
        let addr = endpoint.addr.to_string();
        let tcp = tokio::time::timeout(
            timeout,
            TcpStream::connect((endpoint.addr.host.as_str(), endpoint.addr.port)),
        )
        .await
        .map_err(|_| ConnError::ConnectTimeout {
            addr: addr.clone(),
            ms: timeout.as_millis(),
        })?
        .map_err(|source| ConnError::Connect {
            addr: addr.clone(),
            source,
        })?;
        // Replication streams are throughput-bound; Nagle only delays our small commands.
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &endpoint.tls {
            Some(config) => {
                Box::new(tls_connect(tcp, &endpoint.addr, config.clone(), timeout).await?)
            }
            None => Box::new(tcp),
        };
        let mut conn = Connection {
            stream: BufStream::with_capacity(256 * 1024, 64 * 1024, io),
            addr,
            timeout,
        };
        if let Some(password) = &endpoint.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &endpoint.username {
                args.push(user.as_bytes());
            }
            args.push(password.0.as_bytes());
            if let Reply::Error(e) = conn.request(&args).await? {
                return Err(ConnError::Auth(e));
            }
        }
        Ok(conn)
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends a command and returns the reply as it came, errors included.
    /// Sends one command and reads its reply, bulk strings up to
    /// [`REPLY_LIMIT`]: what an ordinary command answers; a hostile or broken
    /// peer announcing more is refused before a byte of it is read.
    pub(crate) async fn request(&mut self, args: &[&[u8]]) -> Result<Reply, ConnError> {
        self.request_up_to(args, REPLY_LIMIT).await
    }

    /// [`Connection::request`] with replies up to `max_bulk` bytes (a
    /// `FUNCTION DUMP` of many libraries).
    pub(crate) async fn request_up_to(
        &mut self,
        args: &[&[u8]],
        max_bulk: usize,
    ) -> Result<Reply, ConnError> {
        let addr = self.addr.clone();
        let resp_err = |source| ConnError::Resp {
            addr: addr.clone(),
            source,
        };
        let exchange = async {
            self.stream
                .write_all(&resp::encode_command(args))
                .await
                .map_err(|e| resp_err(e.into()))?;
            self.stream.flush().await.map_err(|e| resp_err(e.into()))?;
            resp::read_reply_up_to(&mut self.stream, max_bulk)
                .await
                .map_err(resp_err)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ConnError::Timeout {
                addr: self.addr.clone(),
                command: command_name(args),
                ms: self.timeout.as_millis(),
            })?
    }

    /// Sends `commands` in one write and reads their replies in order, bulk
    /// strings up to `max_bulk` bytes, all within `timeout`.
    pub(crate) async fn pipeline(
        &mut self,
        commands: &[Vec<&[u8]>],
        max_bulk: usize,
        timeout: Duration,
    ) -> Result<Vec<Reply>, ConnError> {
        let addr = self.addr.clone();
        let resp_err = |source| ConnError::Resp {
            addr: addr.clone(),
            source,
        };
        let exchange = async {
            let mut wire = Vec::new();
            for args in commands {
                wire.extend_from_slice(&resp::encode_command(args));
            }
            self.stream
                .write_all(&wire)
                .await
                .map_err(|e| resp_err(e.into()))?;
            self.stream.flush().await.map_err(|e| resp_err(e.into()))?;
            let mut replies = Vec::with_capacity(commands.len());
            for _ in commands {
                replies.push(
                    resp::read_reply_up_to(&mut self.stream, max_bulk)
                        .await
                        .map_err(resp_err)?,
                );
            }
            Ok(replies)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ConnError::Timeout {
                addr: self.addr.clone(),
                command: commands
                    .first()
                    .map(|c| command_name(c))
                    .unwrap_or_default(),
                ms: timeout.as_millis(),
            })?
    }

    /// Sends a command whose answer is not a reply (`SYNC` answers with the payload).
    pub(crate) async fn send_only(&mut self, args: &[&[u8]]) -> Result<(), ConnError> {
        let addr = self.addr.clone();
        let io = |e: std::io::Error| ConnError::Resp {
            addr: addr.clone(),
            source: e.into(),
        };
        self.stream
            .write_all(&resp::encode_command(args))
            .await
            .map_err(io)?;
        self.stream.flush().await.map_err(io)
    }

    /// The buffered stream, for reading a replication payload directly.
    pub(crate) fn stream_mut(&mut self) -> &mut BufStream<Box<dyn Io>> {
        &mut self.stream
    }

    /// Like `request`, with a server error turned into `Err`.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Reply, ConnError> {
        match self.request(args).await? {
            Reply::Error(message) => Err(ConnError::refused(&self.addr, args, message)),
            reply => Ok(reply),
        }
    }

    /// `INFO <section>` parsed into `field -> value`; a reply over
    /// [`INFO_LIMIT`] is refused (a real server's is a few KiB).
    pub(crate) async fn info(
        &mut self,
        section: &str,
    ) -> Result<HashMap<String, String>, ConnError> {
        let args: [&[u8]; 2] = [b"INFO", section.as_bytes()];
        let reply = match self.request_up_to(&args, INFO_LIMIT).await? {
            Reply::Error(message) => return Err(ConnError::refused(&self.addr, &args, message)),
            reply => reply,
        };
        let text = reply.into_string().unwrap_or_default();
        Ok(parse_info(&text))
    }

    pub(crate) async fn shutdown(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// `CLUSTER SHARDS`, `INFO`: the command and, for container commands, its
/// subcommand, as ACL errors and operators name them.
fn command_name(args: &[&[u8]]) -> String {
    let name = |a: &[u8]| String::from_utf8_lossy(a).to_ascii_uppercase();
    match args {
        [cmd, sub, ..]
            if [&b"CLUSTER"[..], b"CONFIG", b"CLIENT", b"ACL"]
                .iter()
                .any(|c| cmd.eq_ignore_ascii_case(c)) =>
        {
            format!("{} {}", name(cmd), name(sub))
        }
        [cmd, ..] => name(cmd),
        [] => String::new(),
    }
}

pub(crate) fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

async fn tls_connect(
    tcp: TcpStream,
    addr: &RedisAddr,
    config: Arc<tokio_rustls::rustls::ClientConfig>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnError> {
    use tokio_rustls::rustls::pki_types::ServerName;
    let err = |reason: String| ConnError::Tls {
        addr: addr.to_string(),
        reason,
    };
    let name = ServerName::try_from(addr.host.clone())
        .map_err(|e| err(format!("invalid server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| err("timed out".into()))?
        .map_err(|e| err(e.to_string()))
}
