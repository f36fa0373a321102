//! Redis Cluster topology: the shards, their masters and replicas, and the
//! slot ranges each owns, from `CLUSTER SHARDS` (Redis 7+) or, for older
//! servers, `CLUSTER NODES`.

use std::time::Duration;

use super::conn::{ConnError, Connection, Endpoint};
use super::resp::Reply;
use crate::redis_addr::RedisAddr;

pub(crate) const SLOTS: u32 = 16384;
/// A backup holds one file per shard and a links answer at most 64 links.
pub(crate) const MAX_SHARDS: usize = 64;

/// The slot of a key: CRC16 (XMODEM) of the key, or of its non-empty
/// `{hash tag}`, mod 16384, as Redis Cluster routes it.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS as u16
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) addr: RedisAddr,
    /// Not flagged as failed by the cluster.
    pub(crate) healthy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub(crate) master: Node,
    pub(crate) replicas: Vec<Node>,
    /// Inclusive ranges, sorted.
    pub(crate) slots: Vec<(u16, u16)>,
}

impl Shard {
    /// `0-5460`, or `0-99.200-5460` for several ranges: file-name and URL safe,
    /// and `_`-free so it stays one field of the DCS file name.
    pub(crate) fn slot_label(&self) -> String {
        self.slots
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(".")
    }

    fn first_slot(&self) -> u16 {
        self.slots.first().map_or(u16::MAX, |r| r.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    /// Sorted by first slot.
    pub(crate) shards: Vec<Shard>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TopologyError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("{0}")]
    Malformed(String),
    #[error("the cluster does not cover all 16384 slots ({0} are not served)")]
    Uncovered(u32),
    #[error("the cluster has {0} shards; at most 64 can be backed up")]
    TooManyShards(usize),
}

impl Topology {
    /// The same shards with the same masters and slots: nothing moved.
    pub(crate) fn same_layout(&self, other: &Topology) -> bool {
        let key = |t: &Topology| -> Vec<(String, Vec<(u16, u16)>)> {
            t.shards
                .iter()
                .map(|s| (s.master.id.clone(), s.slots.clone()))
                .collect()
        };
        key(self) == key(other)
    }

    fn check(self) -> Result<Topology, TopologyError> {
        if self.shards.len() > MAX_SHARDS {
            return Err(TopologyError::TooManyShards(self.shards.len()));
        }
        let mut covered = vec![false; SLOTS as usize];
        for shard in &self.shards {
            for &(a, b) in &shard.slots {
                for slot in a..=b.min((SLOTS - 1) as u16) {
                    covered[slot as usize] = true;
                }
            }
        }
        let missing = covered.iter().filter(|c| !**c).count() as u32;
        if missing > 0 {
            return Err(TopologyError::Uncovered(missing));
        }
        Ok(self)
    }
}

/// The topology as the first seed that answers sees it.
pub(crate) async fn discover(
    template: &Endpoint,
    seeds: &[RedisAddr],
    timeout: Duration,
) -> Result<Topology, TopologyError> {
    let mut last = None;
    for seed in seeds {
        let endpoint = template.at(seed);
        match discover_from(&endpoint, timeout).await {
            Ok(t) => return t.check(),
            Err(TopologyError::Conn(e)) if !e.is_auth() => last = Some(TopologyError::Conn(e)),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| TopologyError::Malformed("no seed address".into())))
}

async fn discover_from(endpoint: &Endpoint, timeout: Duration) -> Result<Topology, TopologyError> {
    let mut conn = Connection::open(endpoint, timeout).await?;
    let shards = match conn.request(&[b"CLUSTER", b"SHARDS"]).await? {
        Reply::Array(Some(items)) => parse_shards(&items, &endpoint.addr)?,
        // Before Redis 7, or an ACL user allowed only CLUSTER NODES.
        Reply::Error(shards_error) => match conn.command(&[b"CLUSTER", b"NODES"]).await {
            Ok(reply) => parse_nodes(&reply.into_string().unwrap_or_default(), &endpoint.addr)?,
            // Both refused: on Redis 7+ name the right the docs ask for.
            Err(ConnError::NoPermission { .. }) if shards_error.starts_with("NOPERM") => {
                return Err(ConnError::refused(
                    conn.addr(),
                    &[b"CLUSTER", b"SHARDS"],
                    shards_error,
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        },
        other => {
            return Err(TopologyError::Malformed(format!(
                "unexpected CLUSTER SHARDS answer {other:?}"
            )));
        }
    };
    conn.shutdown().await;
    let mut shards: Vec<Shard> = shards.into_iter().filter(|s| !s.slots.is_empty()).collect();
    shards.sort_by_key(Shard::first_slot);
    Ok(Topology { shards })
}

/// RESP2 maps come as flat arrays of key, value, key, value...
fn map_field<'a>(items: &'a [Reply], key: &str) -> Option<&'a Reply> {
    items.chunks(2).find_map(|kv| match kv {
        [k, v] if k.as_bytes() == Some(key.as_bytes()) => Some(v),
        _ => None,
    })
}

fn text(r: Option<&Reply>) -> String {
    match r {
        Some(Reply::Int(i)) => i.to_string(),
        Some(other) => other
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
        None => String::new(),
    }
}

fn int(r: Option<&Reply>) -> Option<i64> {
    match r {
        Some(Reply::Int(i)) => Some(*i),
        other => text(other).parse().ok(),
    }
}

/// A node's address as clients should use it: `ip` unless empty or unknown,
/// then the seed's host (a node that reports `127.0.0.1` may mean itself).
fn node_addr(ip: &str, port: i64, seed: &RedisAddr) -> Option<RedisAddr> {
    let port = u16::try_from(port).ok().filter(|p| *p > 0)?;
    let host = if ip.is_empty() || ip == "?" {
        seed.host.clone()
    } else {
        ip.to_string()
    };
    Some(RedisAddr { host, port })
}

pub(crate) fn parse_shards(items: &[Reply], seed: &RedisAddr) -> Result<Vec<Shard>, TopologyError> {
    let bad = |why: &str| TopologyError::Malformed(format!("CLUSTER SHARDS: {why}"));
    let mut shards = Vec::new();
    for shard in items {
        let Reply::Array(Some(fields)) = shard else {
            return Err(bad("a shard is not a map"));
        };
        let slots: Vec<i64> = match map_field(fields, "slots") {
            Some(Reply::Array(Some(s))) => s.iter().filter_map(|r| int(Some(r))).collect(),
            _ => Vec::new(),
        };
        let mut ranges: Vec<(u16, u16)> = slots
            .chunks(2)
            .filter_map(|p| match p {
                [a, b] => Some((u16::try_from(*a).ok()?, u16::try_from(*b).ok()?)),
                _ => None,
            })
            .collect();
        ranges.sort_unstable();
        let Some(Reply::Array(Some(nodes))) = map_field(fields, "nodes") else {
            return Err(bad("no nodes"));
        };
        let mut master = None;
        let mut replicas = Vec::new();
        for node in nodes {
            let Reply::Array(Some(nf)) = node else {
                return Err(bad("a node is not a map"));
            };
            let port = int(map_field(nf, "port"))
                .or_else(|| int(map_field(nf, "tls-port")))
                .unwrap_or(0);
            let Some(addr) = node_addr(&text(map_field(nf, "ip")), port, seed) else {
                continue;
            };
            let n = Node {
                id: text(map_field(nf, "id")),
                addr,
                // "loading" also marks a replica whose offset the gossip has
                // not carried yet; the caller asks a replica itself before using it.
                healthy: !matches!(text(map_field(nf, "health")).as_str(), "fail" | "failed"),
            };
            match text(map_field(nf, "role")).as_str() {
                "master" => master = Some(n),
                _ => replicas.push(n),
            }
        }
        let Some(master) = master else { continue };
        shards.push(Shard {
            master,
            replicas,
            slots: ranges,
        });
    }
    Ok(shards)
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
pub(crate) fn parse_nodes(text: &str, seed: &RedisAddr) -> Result<Vec<Shard>, TopologyError> {
    struct Line {
        id: String,
        master_of: String,
        node: Node,
        is_master: bool,
        slots: Vec<(u16, u16)>,
    }
    let mut lines = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            return Err(TopologyError::Malformed(format!(
                "CLUSTER NODES line {line:?}"
            )));
        }
        let hostport = f[1].split(['@', ',']).next().unwrap_or("");
        let Some((ip, port)) = hostport.rsplit_once(':') else {
            continue;
        };
        let Some(addr) = node_addr(ip, port.parse().unwrap_or(0), seed) else {
            continue;
        };
        let flags: Vec<&str> = f[2].split(',').collect();
        if flags.iter().any(|fl| matches!(*fl, "handshake" | "noaddr")) {
            continue;
        }
        let mut slots = Vec::new();
        for s in &f[8..] {
            // `[slot->-id]` entries are migrations in progress, not ownership.
            if s.starts_with('[') {
                continue;
            }
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                slots.push((a, b));
            }
        }
        slots.sort_unstable();
        lines.push(Line {
            id: f[0].to_string(),
            master_of: f[3].to_string(),
            is_master: flags.contains(&"master"),
            node: Node {
                id: f[0].to_string(),
                addr,
                healthy: !flags.iter().any(|fl| matches!(*fl, "fail" | "fail?"))
                    && f[7] == "connected",
            },
            slots,
        });
    }
    let shards = lines
        .iter()
        .filter(|l| l.is_master)
        .map(|m| Shard {
            master: m.node.clone(),
            replicas: lines
                .iter()
                .filter(|r| !r.is_master && r.master_of == m.id)
                .map(|r| r.node.clone())
                .collect(),
            slots: m.slots.clone(),
        })
        .collect();
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> RedisAddr {
        "10.0.0.1:7000".parse().expect("addr")
    }

    #[test]
    fn key_slots_as_redis_computes_them() {
        // The cluster spec's CRC16 check value: CRC16("123456789") = 0x31C3.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"123456789"), 12739);
        // Every number below is CLUSTER KEYSLOT of a live Redis 7.0
        // (tests/cluster.rs checks the same keys against a live server).
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b""), 0);
        // A hash tag: only what is between the first `{` and the next `}`.
        assert_eq!(key_slot(b"user1000"), 3443);
        assert_eq!(key_slot(b"{user1000}.following"), 3443);
        assert_eq!(key_slot(b"{user1000}.followers"), 3443);
        assert_eq!(key_slot(b"foo{hash_tag}"), 2515);
        assert_eq!(key_slot(b"bar{hash_tag}"), 2515);
        // The first `}` after the first `{` closes the tag, so `{bar` is hashed.
        assert_eq!(key_slot(b"{bar"), 4015);
        assert_eq!(key_slot(b"foo{{bar}}zap"), 4015);
        // Only the first tag counts.
        assert_eq!(key_slot(b"foo{bar}{zap}"), 5061);
        // An empty tag `{}` means no tag: the whole key is hashed, not `bar`.
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"{}"), 15257);
        // Unbalanced braces: no tag.
        assert_eq!(key_slot(b"{"), 4092);
        assert_eq!(key_slot(b"}"), 12090);
        // A `}` before the first `{` does not close anything.
        assert_eq!(key_slot(b"a}{b}"), 3300);
        assert_eq!(key_slot(b"a}{b}"), key_slot(b"b"));
    }

    #[test]
    fn cluster_nodes_output() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [10923->-a3]
a3 127.0.0.1:7002@17002,host3 master - 0 0 3 connected 10923-16383
b1 127.0.0.1:7003@17003 slave a1 0 0 1 connected
b2 127.0.0.1:7004@17004 slave,fail a2 0 0 2 disconnected
";
        let shards = parse_nodes(text, &seed()).expect("parses");
        assert_eq!(shards.len(), 3);
        assert_eq!(shards[0].slots, vec![(0, 5460)]);
        assert_eq!(shards[0].replicas[0].addr.to_string(), "127.0.0.1:7003");
        assert!(shards[0].replicas[0].healthy);
        assert!(!shards[1].replicas[0].healthy);
        assert_eq!(shards[1].slots, vec![(5461, 10922)]);
        assert_eq!(shards[2].master.addr.port, 7002);
        let t = Topology { shards }.check().expect("covered");
        assert_eq!(t.shards[2].slot_label(), "10923-16383");
    }

    #[test]
    fn coverage_and_shard_limits() {
        let node = |p: u16| Node {
            id: p.to_string(),
            addr: RedisAddr {
                host: "h".into(),
                port: p,
            },
            healthy: true,
        };
        let shard = |p, slots| Shard {
            master: node(p),
            replicas: vec![],
            slots,
        };
        let partial = Topology {
            shards: vec![shard(1, vec![(0, 100)])],
        };
        assert!(matches!(
            partial.check(),
            Err(TopologyError::Uncovered(16283))
        ));
        let split = Topology {
            shards: vec![
                shard(1, vec![(0, 99), (200, 16383)]),
                shard(2, vec![(100, 199)]),
            ],
        };
        let t = split.clone().check().expect("covered");
        assert_eq!(t.shards[0].slot_label(), "0-99.200-16383");
        let many = Topology {
            shards: (0..65).map(|i| shard(i, vec![(0, 16383)])).collect(),
        };
        assert!(matches!(
            many.check(),
            Err(TopologyError::TooManyShards(65))
        ));
        let mut moved = split.clone();
        moved.shards[1].master.id = "other".into();
        assert!(!split.same_layout(&moved));
        assert!(split.same_layout(&split.clone()));
    }
}
