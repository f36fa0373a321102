//! A quick look at a live node: what it is and whether it answers.

use std::time::Duration;

use super::conn::{ConnError, Connection, Endpoint, parse_info};
use super::resp::Reply;

/// What `INFO` tells about a node, as the API and the backup planner need it.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeInfo {
    pub(crate) redis_version: String,
    pub(crate) cluster_enabled: bool,
    pub(crate) used_memory: u64,
    pub(crate) maxmemory: u64,
    pub(crate) connected_replicas: u32,
    /// Configured number of databases (16 when CONFIG is not allowed).
    pub(crate) databases: u32,
    /// Masters serving slots (cluster mode only).
    pub(crate) cluster_size: u32,
    /// For a replica cut off from its master: which master, since when.
    pub(crate) master_down: Option<super::copy::Frozen>,
}

impl NodeInfo {
    /// `7.0` from `7.0.15`: DCS reports major.minor as `engine_version`.
    pub(crate) fn engine_version(&self) -> String {
        self.redis_version
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".")
    }
}

pub(crate) async fn probe(endpoint: &Endpoint, timeout: Duration) -> Result<NodeInfo, ConnError> {
    let mut conn = Connection::open(endpoint, timeout).await?;
    let info = conn.info("everything").await?;
    let num = |k: &str| info.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let cluster_enabled = num("cluster_enabled") == 1;
    let cluster = if cluster_enabled {
        let reply = conn.command(&[b"CLUSTER", b"INFO"]).await?;
        parse_info(&reply.into_string().unwrap_or_default())
    } else {
        Default::default()
    };
    // CONFIG may be renamed or denied by ACL; DCS reports 16 by default too.
    let databases = match conn.request(&[b"CONFIG", b"GET", b"databases"]).await? {
        Reply::Array(Some(items)) => items
            .get(1)
            .and_then(|r| r.as_bytes())
            .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
        _ => None,
    };
    conn.shutdown().await;
    Ok(NodeInfo {
        databases: databases.unwrap_or(16),
        cluster_size: cluster
            .get("cluster_size")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        redis_version: info.get("redis_version").cloned().unwrap_or_default(),
        cluster_enabled,
        used_memory: num("used_memory"),
        maxmemory: num("maxmemory"),
        connected_replicas: u32::try_from(num("connected_slaves")).unwrap_or(0),
        master_down: super::copy::Frozen::from_info(&info),
    })
}
