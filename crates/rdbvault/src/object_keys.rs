//! Where a backup's files live in the object store; the one place that
//! knows the layout: `{instance_id}/{backup_id}/{file name}`, file names as
//! DCS gives them, `redis_{ip}_{port}[_{slots}]_{yyyyMMddHHmmss}.{rdb|aof}`.

use crate::meta::Backup;

/// What a backup's files hold (the record's `backup_format`), which their
/// names end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The snapshot as the node sent it: an RDB dump.
    Rdb,
    /// The commands that rebuild the snapshot, as RESP: what an
    /// append-only file and `redis-cli --pipe` hold.
    Aof,
}

impl Format {
    /// `rdb` or `aof`, as DCS spells them; `None` for anything else.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "rdb" => Some(Format::Rdb),
            "aof" => Some(Format::Aof),
            _ => None,
        }
    }

    /// The DCS name, which is also the file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Rdb => "rdb",
            Format::Aof => "aof",
        }
    }
}

/// Every object of `backup` lies under this prefix.
pub fn backup_prefix(backup: &Backup) -> String {
    prefix(&backup.instance_id, &backup.id)
}

/// The prefix of backup `backup_id` of instance `instance_id`.
pub fn prefix(instance_id: &str, backup_id: &str) -> String {
    format!("{instance_id}/{backup_id}/")
}

/// The object key of the file `name` of `backup`.
pub fn file_key(backup: &Backup, name: &str) -> String {
    format!("{}{name}", backup_prefix(backup))
}

/// DCS file name: `redis_{ip}_{port}[_{slots}]_{yyyyMMddHHmmss}.{rdb|aof}`.
pub fn file_name(
    host: &str,
    port: u16,
    slots: Option<&str>,
    format: Format,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    // IPv6 colons would make the name unusable on some filesystems and in URLs.
    let host = host.replace(':', "-");
    let slots = slots.map(|s| format!("_{s}")).unwrap_or_default();
    format!(
        "redis_{host}_{port}{slots}_{}.{}",
        at.format("%Y%m%d%H%M%S"),
        format.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcs_file_names() {
        let at = "2019-08-20T21:18:16Z".parse().expect("time");
        assert_eq!(
            file_name("192.168.63.250", 6379, None, Format::Rdb, at),
            "redis_192.168.63.250_6379_20190820211816.rdb"
        );
        assert_eq!(
            file_name("192.168.63.250", 6379, Some("10923-16383"), Format::Rdb, at),
            "redis_192.168.63.250_6379_10923-16383_20190820211816.rdb"
        );
        assert_eq!(
            file_name("::1", 7000, None, Format::Rdb, at),
            "redis_--1_7000_20190820211816.rdb"
        );
        assert_eq!(
            file_name("192.168.63.250", 6379, Some("0-5460"), Format::Aof, at),
            "redis_192.168.63.250_6379_0-5460_20190820211816.aof"
        );
    }

    #[test]
    fn formats_are_the_dcs_names() {
        for f in [Format::Rdb, Format::Aof] {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse("RDB"), None);
        assert_eq!(Format::parse("xml"), None);
    }
}
