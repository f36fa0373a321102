//! `host:port` addresses of Redis nodes, validated once at the edge.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisAddr {
    /// A hostname or an IP address (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl fmt::Display for RedisAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for RedisAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<RedisAddr, String> {
        let bad = || format!("{s:?} is not host:port (IPv6 as [addr]:port)");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (host, port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
            if !is_hostname(host) {
                return Err(bad());
            }
            (host, port)
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(format!("{s:?}: port must be 1 to 65535"));
        }
        Ok(RedisAddr {
            host: host.to_string(),
            port,
        })
    }
}

/// RFC 1123 host names and dotted IPv4 addresses.
fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for ok in [
            "127.0.0.1:6379",
            "redis-1.internal:7000",
            "[::1]:6380",
            "localhost:1",
        ] {
            let a: RedisAddr = ok.parse().expect(ok);
            assert_eq!(a.to_string(), ok);
        }
        for bad in [
            "",
            "6379",
            "host",
            "host:",
            ":6379",
            "host:0",
            "host:65536",
            "host:-1",
            "ho st:1",
            "::1:6379",
            "[::1]6379",
            "[nothex]:1",
            "a..b:1",
            "-a:1",
            "a/b:1",
        ] {
            assert!(bad.parse::<RedisAddr>().is_err(), "{bad:?} accepted");
        }
    }
}
