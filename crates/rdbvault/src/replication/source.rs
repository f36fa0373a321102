//! Which node of an instance a backup pulls from.
//!
//! For `ha` instances a healthy replica is preferred, so the master does not
//! pay for the fork; a replica whose link to the master is down, or which lags,
//! is skipped. Roles are discovered at each backup, so a failover between two
//! backups is followed without re-registration.

use std::time::Duration;

use super::conn::{ConnError, Connection, Endpoint};
use super::copy::Frozen;
use crate::redis_addr::RedisAddr;

/// A replica lagging more than this many seconds is not a backup source.
pub const MAX_REPLICA_LAG_SECS: u64 = 10;

/// The part a node plays in its deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Replica => "replica",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Source {
    pub endpoint: Endpoint,
    pub role: Role,
    /// Set when the instance's master is down and this replica, cut off
    /// from it, is the most up-to-date copy left: it cannot be synced from
    /// and is copied key by key ([`super::copy`]).
    pub master_down: Option<Frozen>,
}

impl Source {
    pub fn normal(endpoint: Endpoint, role: Role) -> Source {
        Source {
            endpoint,
            role,
            master_down: None,
        }
    }

    /// For the record: the node, its role, and why it was chosen when that
    /// is out of the ordinary.
    pub fn describe(&self) -> String {
        match &self.master_down {
            None => format!("{} ({})", self.endpoint.addr, self.role),
            Some(f) => format!(
                "{} (replica; its master {} was unreachable and the link down for {} s: \
                 copied as of replication offset {}, writes after that are not in the backup)",
                self.endpoint.addr, f.master, f.down_secs, f.offset
            ),
        }
    }
}

/// `slave0:ip=10.0.0.2,port=6379,state=online,offset=1234,lag=0`
#[derive(Debug, PartialEq, Eq)]
pub struct ReplicaEntry {
    pub addr: RedisAddr,
    pub online: bool,
    pub lag: u64,
}

pub fn parse_replica_entry(value: &str) -> Option<ReplicaEntry> {
    let field = |name: &str| {
        value.split(',').find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
    };
    let host = field("ip")?.to_string();
    let port = field("port")?.parse().ok()?;
    Some(ReplicaEntry {
        addr: RedisAddr { host, port },
        online: field("state") == Some("online"),
        lag: field("lag")
            .and_then(|l| l.parse().ok())
            .unwrap_or(u64::MAX),
    })
}

async fn info_replication(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<std::collections::HashMap<String, String>, ConnError> {
    let mut conn = Connection::open(endpoint, timeout).await?;
    let info = conn.info("replication").await?;
    conn.shutdown().await;
    Ok(info)
}

/// The node of a single-server instance, or the best node of an `ha` one.
pub async fn choose(
    template: &Endpoint,
    addrs: &[RedisAddr],
    prefer_replica: bool,
    timeout: Duration,
) -> Result<Source, ConnError> {
    let with_addr = |addr: &RedisAddr| template.at(addr);
    let mut last_err = None;
    // Registered replicas that answered, in case the master does not.
    let mut replicas = Vec::new();
    // Find the master through any registered address that answers.
    let mut master = None;
    for addr in addrs {
        match info_replication(&with_addr(addr), timeout).await {
            Ok(info) if info.get("role").map(String::as_str) == Some("master") => {
                master = Some((addr.clone(), info));
                break;
            }
            Ok(info) => {
                let host = info.get("master_host").cloned().unwrap_or_default();
                let port = info
                    .get("master_port")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let master_addr = RedisAddr { host, port };
                replicas.push((addr.clone(), info));
                match info_replication(&with_addr(&master_addr), timeout).await {
                    Ok(minfo) => {
                        master = Some((master_addr, minfo));
                        break;
                    }
                    Err(e) if e.is_auth() => return Err(e),
                    Err(e) => last_err = Some(e),
                }
            }
            Err(e) if e.is_auth() => return Err(e),
            Err(e) => last_err = Some(e),
        }
    }
    let Some((master_addr, master_info)) = master else {
        return without_master(template, replicas)
            .ok_or_else(|| last_err.unwrap_or(ConnError::NoAddress));
    };
    if prefer_replica {
        let mut replicas: Vec<ReplicaEntry> = master_info
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("slave")
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter_map(|(_, v)| parse_replica_entry(v))
            .filter(|r| r.online && r.lag <= MAX_REPLICA_LAG_SECS)
            .collect();
        replicas.sort_by_key(|r| r.lag);
        for replica in replicas {
            let endpoint = with_addr(&replica.addr);
            match info_replication(&endpoint, timeout).await {
                Ok(info) if info.get("master_link_status").map(String::as_str) == Some("up") => {
                    return Ok(Source::normal(endpoint, Role::Replica));
                }
                Ok(_) => tracing::info!(replica = %replica.addr, "replica link is down; skipped"),
                Err(e) => {
                    tracing::info!(replica = %replica.addr, error = %e, "replica unreachable; skipped")
                }
            }
        }
    }
    Ok(Source::normal(with_addr(&master_addr), Role::Master))
}

/// The master cannot be reached. A replica still linked to it (rdbvault is
/// cut off, not the replica) is synced from as usual; otherwise the replica
/// that applied the most of the master's stream is copied key by key.
fn without_master(
    template: &Endpoint,
    replicas: Vec<(RedisAddr, std::collections::HashMap<String, String>)>,
) -> Option<Source> {
    if let Some((addr, _)) = replicas
        .iter()
        .find(|(_, info)| info.get("master_link_status").map(String::as_str) == Some("up"))
    {
        return Some(Source::normal(template.at(addr), Role::Replica));
    }
    let (addr, frozen) = replicas
        .into_iter()
        .filter_map(|(addr, info)| Some((addr, Frozen::from_info(&info)?)))
        .max_by_key(|(_, f)| f.offset)?;
    tracing::warn!(replica = %addr, master = %frozen.master, offset = frozen.offset,
        down_secs = frozen.down_secs, "the master is down: copying its most up-to-date replica");
    Some(Source {
        endpoint: template.at(&addr),
        role: Role::Replica,
        master_down: Some(frozen),
    })
}

/// A replica further behind its master than this is not a backup source:
/// its snapshot would miss writes the master has long acknowledged.
pub const MAX_REPLICA_LAG_BYTES: u64 = 1024 * 1024;

/// A shard's healthy replica whose link to the master is up and which has
/// caught up with it, else its master.
pub async fn choose_in_shard(
    template: &Endpoint,
    shard: &super::cluster::Shard,
    timeout: Duration,
) -> Result<Source, ConnError> {
    let master = template.at(&shard.master.addr);
    let master_offset = match info_replication(&master, timeout).await {
        Ok(info) => info
            .get("master_repl_offset")
            .and_then(|v| v.parse::<u64>().ok()),
        Err(e) if e.is_auth() => return Err(e),
        Err(_) => None,
    };
    for replica in shard.replicas.iter().filter(|r| r.healthy) {
        let endpoint = template.at(&replica.addr);
        match info_replication(&endpoint, timeout).await {
            Ok(info) => {
                let up = info.get("master_link_status").map(String::as_str) == Some("up");
                let offset = info
                    .get("slave_repl_offset")
                    .and_then(|v| v.parse::<u64>().ok());
                let caught_up = match (master_offset, offset) {
                    (Some(m), Some(r)) => m.saturating_sub(r) <= MAX_REPLICA_LAG_BYTES,
                    _ => false,
                };
                if up && caught_up {
                    return Ok(Source::normal(endpoint, Role::Replica));
                }
                tracing::info!(replica = %replica.addr, up, ?offset, ?master_offset, "replica not in sync; skipped");
            }
            Err(e) if e.is_auth() => return Err(e),
            Err(e) => {
                tracing::info!(replica = %replica.addr, error = %e, "replica unreachable; skipped")
            }
        }
    }
    Ok(Source::normal(master, Role::Master))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_entries() {
        let e = parse_replica_entry("ip=127.0.0.1,port=6380,state=online,offset=42,lag=1")
            .expect("parses");
        assert_eq!(e.addr.to_string(), "127.0.0.1:6380");
        assert!(e.online);
        assert_eq!(e.lag, 1);
        let e = parse_replica_entry("ip=::1,port=6380,state=wait_bgsave,offset=0,lag=0")
            .expect("parses");
        assert!(!e.online);
        assert!(parse_replica_entry("ip=x").is_none());
    }
}
