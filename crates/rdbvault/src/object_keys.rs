//! Where a backup's files live in the object store; the one place that
//! knows the layout: `{instance_id}/{backup_id}/{file name}`, file names as
//! DCS gives them, `redis_{ip}_{port}[_{slots}]_{yyyyMMddHHmmss}.rdb`.

use crate::meta::Backup;

/// Every object of `backup` lies under this prefix.
pub fn backup_prefix(backup: &Backup) -> String {
    format!("{}/{}/", backup.instance_id, backup.id)
}

/// The object key of the file `name` of `backup`.
pub fn file_key(backup: &Backup, name: &str) -> String {
    format!("{}{name}", backup_prefix(backup))
}

/// DCS file name: `redis_{ip}_{port}[_{slots}]_{yyyyMMddHHmmss}.rdb`.
pub fn file_name(
    host: &str,
    port: u16,
    slots: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    // IPv6 colons would make the name unusable on some filesystems and in URLs.
    let host = host.replace(':', "-");
    let slots = slots.map(|s| format!("_{s}")).unwrap_or_default();
    format!(
        "redis_{host}_{port}{slots}_{}.rdb",
        at.format("%Y%m%d%H%M%S")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcs_file_names() {
        let at = "2019-08-20T21:18:16Z".parse().expect("time");
        assert_eq!(
            file_name("192.168.63.250", 6379, None, at),
            "redis_192.168.63.250_6379_20190820211816.rdb"
        );
        assert_eq!(
            file_name("192.168.63.250", 6379, Some("10923-16383"), at),
            "redis_192.168.63.250_6379_10923-16383_20190820211816.rdb"
        );
        assert_eq!(
            file_name("::1", 7000, None, at),
            "redis_--1_7000_20190820211816.rdb"
        );
    }
}
