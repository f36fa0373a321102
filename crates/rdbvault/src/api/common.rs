//! What several resource files share: finding the instance or backup a path
//! names (with the DCS error for each way it does not exist), paging
//! parameters, and the DCS time format.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::SharedState;
use super::error::ApiError;
use super::extract;
use crate::meta::{Backup, BackupFile, Instance};

/// A time as DCS answers it: UTC, milliseconds, `Z`.
pub(crate) fn dcs_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The `offset` query parameter: >= 0, default 0.
pub(crate) fn parse_offset(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(0),
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::invalid(
                "offset",
                format!("{:?} is not an integer >= 0", extract::truncated(v)),
            )
        }),
    }
}

/// The `limit` query parameter: 1 to `max`, `default` when absent.
pub(crate) fn parse_limit(
    raw: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(v) = raw else { return Ok(default) };
    match v.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(
            "limit",
            format!(
                "{:?} is not an integer from 1 to {max}",
                extract::truncated(v)
            ),
        )),
    }
}

/// The instance of a project, or the DCS "does not exist" error.
pub(crate) async fn find(
    state: &SharedState,
    project_id: &str,
    raw_id: &str,
) -> Result<Instance, ApiError> {
    let id = extract::instance_id(raw_id)?;
    state
        .meta
        .get_instance(project_id, &id)
        .await?
        .ok_or(ApiError::InstanceNotFound(id))
}

/// A backup of the instance in the path, with a distinct error for each way it is not.
/// The common case costs one query: a backup of the instance and project in
/// the path proves the instance exists; the instance is looked up only to
/// tell the error cases apart.
pub(crate) async fn find_backup(
    state: &SharedState,
    project_id: &str,
    instance_id: &str,
    raw_backup_id: &str,
) -> Result<Backup, ApiError> {
    find_backup_with_files(state, project_id, instance_id, raw_backup_id)
        .await
        .map(|(b, _)| b)
}

/// [`find_backup`], with the backup's files, in one query on the common path.
pub(crate) async fn find_backup_with_files(
    state: &SharedState,
    project_id: &str,
    instance_id: &str,
    raw_backup_id: &str,
) -> Result<(Backup, Vec<BackupFile>), ApiError> {
    let instance_id = extract::instance_id(instance_id)?;
    let id = extract::backup_id(raw_backup_id)?;
    match state.meta.backup_with_files(&id).await? {
        Some((b, files)) if b.project_id == project_id && b.instance_id == instance_id => {
            Ok((b, files))
        }
        other => {
            // Unknown instance first, as for every instance-scoped request.
            find(state, project_id, &instance_id).await?;
            match other {
                None => Err(ApiError::BackupNotFound(id)),
                Some((b, _)) if b.project_id != project_id => {
                    Err(ApiError::BackupOfOtherProject(id))
                }
                Some(_) => Err(ApiError::BackupOfOtherInstance(id)),
            }
        }
    }
}

/// A `begin_time`/`end_time` query parameter: UTC, `yyyyMMddHHmmss`.
pub(crate) fn parse_dcs_time(
    field: &'static str,
    raw: Option<&str>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let valid = raw.len() == 14 && raw.bytes().all(|b| b.is_ascii_digit());
    valid
        .then(|| NaiveDateTime::parse_from_str(raw, "%Y%m%d%H%M%S").ok())
        .flatten()
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!(
                    "{:?} is not a UTC time yyyyMMddHHmmss",
                    extract::truncated(raw)
                ),
            )
        })
}

/// A listing's window and page (`begin_time`, `end_time`, `offset`,
/// `limit`), checked; `end` covers the whole second `end_time` names.
pub(crate) struct Window {
    pub begin: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub offset: usize,
    pub limit: usize,
}

/// The DCS query of a record listing (backups, restores), as sent.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowQuery {
    /// UTC, `yyyyMMddHHmmss`: only records created at or after.
    pub(crate) begin_time: Option<String>,
    /// UTC, `yyyyMMddHHmmss`: only records created at or before.
    pub(crate) end_time: Option<String>,
    /// >= 0.
    pub(crate) offset: Option<String>,
    /// 1 to 1000, default 10.
    pub(crate) limit: Option<String>,
}

impl WindowQuery {
    pub(crate) fn window(&self) -> Result<Window, ApiError> {
        Window::parse(
            self.begin_time.as_deref(),
            self.end_time.as_deref(),
            self.offset.as_deref(),
            self.limit.as_deref(),
        )
    }
}

impl Window {
    fn parse(
        begin: Option<&str>,
        end: Option<&str>,
        offset: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Window, ApiError> {
        let begin = parse_dcs_time("begin_time", begin)?;
        let end = parse_dcs_time("end_time", end)?;
        if let (Some(b), Some(e)) = (begin, end)
            && b > e
        {
            return Err(ApiError::invalid(
                "begin_time",
                "begin_time is after end_time",
            ));
        }
        Ok(Window {
            begin,
            end: end.map(|e| e + chrono::TimeDelta::milliseconds(999)),
            offset: parse_offset(offset)?,
            limit: parse_limit(limit, 10, 1000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_parameters() {
        assert_eq!(parse_offset(None).expect("default"), 0);
        assert_eq!(parse_offset(Some("20")).expect("ok"), 20);
        assert!(parse_offset(Some("-1")).is_err());
        assert_eq!(parse_limit(None, 10, 1000).expect("default"), 10);
        assert_eq!(parse_limit(Some("1000"), 10, 1000).expect("ok"), 1000);
        for bad in ["0", "1001", "x"] {
            assert!(parse_limit(Some(bad), 10, 1000).is_err(), "{bad}");
        }
    }

    #[test]
    fn dcs_times_are_utc_milliseconds() {
        let t = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).expect("time");
        assert_eq!(dcs_time(t), "2023-11-14T22:13:20.123Z");
    }
}
