//! What several resource files share: finding the instance or backup a path
//! names (with the DCS error for each way it does not exist), paging
//! parameters, and the DCS time format.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::SharedState;
use super::error::ApiError;
use super::extract;
use crate::meta::{Backup, BackupFile, BackupStatus, Instance};

/// A time as DCS answers it: UTC, milliseconds, `Z`.
pub(crate) fn dcs_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The largest `offset`: what a metadata query can skip (a signed 64-bit
/// SQL `OFFSET`); far beyond any listing.
pub(crate) const MAX_OFFSET: usize = i64::MAX as usize;

/// The `offset` query parameter: 0 to [`MAX_OFFSET`], default 0.
pub(crate) fn parse_offset(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(0),
        Some(v) => decimal(v).filter(|n| *n <= MAX_OFFSET).ok_or_else(|| {
            ApiError::invalid(
                "offset",
                format!(
                    "{:?} is not an integer from 0 to {MAX_OFFSET}",
                    extract::truncated(v)
                ),
            )
        }),
    }
}

/// A decimal integer as the document's `integer` reads: digits only (no
/// sign, no spaces), within `usize`.
fn decimal(v: &str) -> Option<usize> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The `limit` query parameter: 1 to `max`, `default` when absent.
pub(crate) fn parse_limit(
    raw: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(v) = raw else { return Ok(default) };
    match decimal(v) {
        Some(n) if (1..=max).contains(&n) => Ok(n),
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

/// The DCS query of a record listing (backups, restores), as sent. Every
/// value arrives as text and is parsed by the handler; the document gives
/// the type and range it must have (`schema`).
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowQuery {
    #[param(schema_with = schema::begin_time)]
    pub(crate) begin_time: Option<String>,
    #[param(schema_with = schema::end_time)]
    pub(crate) end_time: Option<String>,
    #[param(schema_with = schema::offset)]
    pub(crate) offset: Option<String>,
    #[param(schema_with = schema::limit)]
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

/// The JSON Schemas of what the handlers check, for the OpenAPI document
/// (`schema_with`): each says exactly what its parser accepts, so a client
/// (or a fuzzer) that follows the document is not refused for the form of
/// a value, and one that does not is. Rules between fields (a `begin_time`
/// after the `end_time`, ...) are in the descriptions.
pub(crate) mod schema {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{
        Array, ArrayBuilder, Object, ObjectBuilder, Schema, SchemaType, Type,
    };

    use super::super::extract::UUID_PATTERN;
    use super::MAX_OFFSET;

    /// A UTC time `yyyyMMddHHmmss` that exists on the calendar (leap days;
    /// second 60, which chrono reads as a leap second).
    pub(crate) const DCS_TIME_PATTERN: &str = concat!(
        "^(?:[0-9]{4}(?:(?:0[1-9]|1[0-2])(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])(?:29|30)",
        "|(?:0[13578]|1[02])31)|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])",
        "|(?:[02468][048]|[13579][26])00)0229)(?:[01][0-9]|2[0-3])[0-5][0-9](?:[0-5][0-9]|60)$"
    );

    /// A string of `pattern`; `nullable` when `null` means absent.
    pub(crate) fn text(pattern: &str, nullable: bool, description: &str) -> Object {
        ObjectBuilder::new()
            .schema_type(kind(Type::String, nullable))
            .pattern(Some(pattern))
            .description(Some(description))
            .build()
    }

    /// One of `values` (or `null`, when `nullable`).
    pub(crate) fn one_of(values: &[&str], nullable: bool, description: &str) -> Object {
        let mut listed: Vec<serde_json::Value> = values.iter().map(|v| (*v).into()).collect();
        if nullable {
            listed.push(serde_json::Value::Null);
        }
        ObjectBuilder::new()
            .schema_type(kind(Type::String, nullable))
            .enum_values(Some(listed))
            .description(Some(description))
            .build()
    }

    /// An integer from `min` to `max` (or `null`, when `nullable`).
    pub(crate) fn integer(min: i64, max: i64, nullable: bool, description: &str) -> Object {
        ObjectBuilder::new()
            .schema_type(kind(Type::Integer, nullable))
            .minimum(Some(min))
            .maximum(Some(max))
            .description(Some(description))
            .build()
    }

    /// A string of at most `max` characters (or `null`, when `nullable`).
    pub(crate) fn bounded(max: usize, nullable: bool, description: &str) -> Object {
        ObjectBuilder::new()
            .schema_type(kind(Type::String, nullable))
            .max_length(Some(max))
            .description(Some(description))
            .build()
    }

    /// An array of 1 to `max` `items`, `unique` or not.
    pub(crate) fn list(
        items: Object,
        max: Option<usize>,
        unique: bool,
        description: &str,
    ) -> Array {
        ArrayBuilder::new()
            .items(RefOr::T(Schema::Object(items)))
            .min_items(Some(1))
            .max_items(max)
            .unique_items(unique)
            .description(Some(description))
            .build()
    }

    fn kind(t: Type, nullable: bool) -> SchemaType {
        if nullable {
            SchemaType::from_iter([t, Type::Null])
        } else {
            SchemaType::Type(t)
        }
    }

    pub(crate) fn uuid() -> Object {
        text(
            UUID_PATTERN,
            false,
            "a UUID: hyphenated, 32 hex digits, braced or `urn:uuid:`",
        )
    }

    pub(crate) fn begin_time() -> Object {
        text(
            DCS_TIME_PATTERN,
            false,
            "UTC, `yyyyMMddHHmmss`: only records created at or after; not after `end_time`",
        )
    }

    pub(crate) fn end_time() -> Object {
        text(
            DCS_TIME_PATTERN,
            false,
            "UTC, `yyyyMMddHHmmss`: only records created at or before (the whole second)",
        )
    }

    pub(crate) fn offset() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(MAX_OFFSET))
            .description(Some("records skipped, default 0"))
            .build()
    }

    pub(crate) fn limit() -> Object {
        integer(1, 1000, false, "page size, default 10")
    }
}

/// A backup's files can be read only once it has succeeded.
pub(crate) fn require_succeeded(backup: &Backup) -> Result<(), ApiError> {
    match backup.status {
        BackupStatus::Succeed => Ok(()),
        BackupStatus::Waiting | BackupStatus::Backuping => {
            Err(ApiError::BackupInProgress(backup.id.clone()))
        }
        BackupStatus::Failed => Err(ApiError::BackupFailed(backup.id.clone())),
        BackupStatus::Deleted => Err(ApiError::BackupDeleted(backup.id.clone())),
        BackupStatus::Expired => Err(ApiError::BackupExpired(backup.id.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calendar [`schema::DCS_TIME_PATTERN`] describes is chrono's:
    /// leap days of leap years only (1900 is none, 2000 and year 0 are),
    /// the months' lengths, second 60.
    #[test]
    fn dcs_times_are_the_calendar_the_document_gives() {
        for ok in [
            "20240102030405",
            "20240229000000",
            "20000229000000",
            "00000229000000",
            "20240131235960",
            "20241231235959",
            "99991231235959",
            "20240430000000",
        ] {
            assert!(parse_dcs_time("t", Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "19000229000000",
            "20230229000000",
            "20240230000000",
            "20240431000000",
            "20241301000000",
            "20240100000000",
            "20240101240000",
            "20240101006000",
            "20240101000061",
            "2024010100000",
            "+2024010100000",
        ] {
            assert!(parse_dcs_time("t", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn paging_parameters() {
        assert_eq!(parse_offset(None).expect("default"), 0);
        assert_eq!(parse_offset(Some("20")).expect("ok"), 20);
        assert!(parse_offset(Some("-1")).is_err());
        assert_eq!(
            parse_offset(Some("9223372036854775807")).expect("i64::MAX"),
            MAX_OFFSET
        );
        assert!(parse_offset(Some("9223372036854775808")).is_err());
        assert!(parse_offset(Some("+1")).is_err());
        assert!(parse_limit(Some("+1"), 10, 1000).is_err());
        assert!(parse_limit(Some(" 1"), 10, 1000).is_err());
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
