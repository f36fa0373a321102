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
        // Decimal as written, no sign and no leading zero: one port, one spelling.
        if port.is_empty() || port.starts_with('0') || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(if port == "0" {
                format!("{s:?}: port must be 1 to 65535")
            } else {
                bad()
            });
        }
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

/// A hostname label: letters, digits and `-`, neither first nor last.
macro_rules! label {
    () => {
        "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    };
}
/// A group of an IPv6 address.
macro_rules! h4 {
    () => {
        "[0-9A-Fa-f]{1,4}"
    };
}
/// A dotted IPv4 address as Rust reads it (no leading zeros).
macro_rules! v4 {
    () => {
        concat!(
            "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])",
            "(?:\\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}"
        )
    };
}

/// What [`RedisAddr::from_str`] accepts, as a JSON Schema pattern for the
/// OpenAPI document: `host:port` with an RFC 1123 host name (or dotted
/// IPv4; at most 253 characters, which a pattern does not say) or
/// `[ipv6]:port` with an address `std::net::Ipv6Addr` reads, and a port
/// 1 to 65535 written without sign or leading zero.
pub(crate) const ADDR_PATTERN: &str = concat!(
    "^(?:",
    label!(),
    "(?:\\.",
    label!(),
    ")*|\\[(?:",
    // Eight groups, or fewer with one `::`.
    "(?:",
    h4!(),
    ":){7}",
    h4!(),
    "|(?:",
    h4!(),
    ":){1,7}:",
    "|(?:",
    h4!(),
    ":){1,6}:",
    h4!(),
    "|(?:",
    h4!(),
    ":){1,5}(?::",
    h4!(),
    "){1,2}",
    "|(?:",
    h4!(),
    ":){1,4}(?::",
    h4!(),
    "){1,3}",
    "|(?:",
    h4!(),
    ":){1,3}(?::",
    h4!(),
    "){1,4}",
    "|(?:",
    h4!(),
    ":){1,2}(?::",
    h4!(),
    "){1,5}",
    "|",
    h4!(),
    ":(?::",
    h4!(),
    "){1,6}",
    "|:(?:(?::",
    h4!(),
    "){1,7}|:)",
    // The last 32 bits as dotted IPv4.
    "|(?:",
    h4!(),
    ":){6}",
    v4!(),
    "|::(?:",
    h4!(),
    ":){0,5}",
    v4!(),
    "|(?:",
    h4!(),
    ":){1}:(?:",
    h4!(),
    ":){0,4}",
    v4!(),
    "|(?:",
    h4!(),
    ":){2}:(?:",
    h4!(),
    ":){0,3}",
    v4!(),
    "|(?:",
    h4!(),
    ":){3}:(?:",
    h4!(),
    ":){0,2}",
    v4!(),
    "|(?:",
    h4!(),
    ":){4}:(?:",
    h4!(),
    ":)?",
    v4!(),
    "|(?:",
    h4!(),
    ":){5}:",
    v4!(),
    ")\\]):(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
);

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
            "host:+1",
            "host:06379",
            "host:00",
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
