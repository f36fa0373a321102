//! DCS `ListBackupFileLinks`: time-limited download links of a backup's files.

use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::common::{find_backup_with_files, require_succeeded};
use super::error::ApiError;
use super::extract::{self, Json, Path};

/// The DCS ListBackupFileLinks bounds on `expiration`: between 5 minutes and 24 hours.
pub(crate) const MIN_EXPIRATION: i64 = 300;
pub(crate) const MAX_EXPIRATION: i64 = 86_400;
/// The DCS response holds at most 64 links (a cluster backup has one file per shard).
pub(crate) const MAX_LINKS: usize = 64;

/// DCS `DownloadBackupFilesReq`, for the OpenAPI document: the handler reads
/// the body with `parse_expiration`, which tells each mistake apart. (`pub`:
/// only the utoipa derive reads it, which dead-code analysis does not see.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadBackupFilesReq {
    #[schema(schema_with = expiration_schema)]
    pub expiration: i64,
}

fn expiration_schema() -> utoipa::openapi::schema::Object {
    super::common::schema::integer(
        MIN_EXPIRATION,
        MAX_EXPIRATION,
        false,
        "seconds the links stay valid, 300 to 86400; a whole number",
    )
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct LinksItem {
    pub(crate) file_name: String,
    pub(crate) link: String,
    /// Bytes (rdbvault extension, for verifying the download).
    pub(crate) size: i64,
    /// SHA-256 of the stored file, hex (rdbvault extension).
    pub(crate) sha256: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ListBackupFileLinksResponse {
    /// Object prefix of the backup, ending in `/`.
    pub(crate) file_path: String,
    pub(crate) bucket_name: String,
    /// One per file, sorted by file name (by shard for clusters), at most 64.
    pub(crate) links: Vec<LinksItem>,
}

/// Reads `expiration` strictly: each way a client can get it wrong has its own code.
pub(crate) fn parse_expiration(body: &serde_json::Value) -> Result<i64, ApiError> {
    let object = body.as_object().ok_or_else(|| {
        ApiError::invalid("body", "expected a JSON object like {\"expiration\": 3600}")
    })?;
    if let Some(unknown) = object.keys().find(|k| *k != "expiration") {
        return Err(ApiError::invalid(
            "body",
            format!(
                "unknown field {:?}; the only field is expiration",
                extract::truncated(unknown)
            ),
        ));
    }
    let value = match object.get("expiration") {
        None | Some(serde_json::Value::Null) => return Err(ApiError::ExpirationMissing),
        Some(v) => v,
    };
    let range_error =
        || ApiError::ExpirationOutOfRange(value.to_string().chars().take(40).collect());
    match value {
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if (MIN_EXPIRATION..=MAX_EXPIRATION).contains(&i) {
                    Ok(i)
                } else {
                    Err(range_error())
                }
            } else if n.as_u64().is_some() {
                Err(range_error())
            } else {
                // A number written with a fraction or an exponent, or an
                // integer too large for 64 bits (serde_json falls back to f64
                // for those). A whole one is an integer (as JSON Schema has
                // it: `300.0` is 300), in range or not.
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 => {
                        if (MIN_EXPIRATION as f64..=MAX_EXPIRATION as f64).contains(&f) {
                            // Whole and within 300..86400: exact as an i64.
                            Ok(f as i64)
                        } else {
                            Err(range_error())
                        }
                    }
                    _ => Err(ApiError::ExpirationNotInteger(
                        value.to_string().chars().take(40).collect(),
                    )),
                }
            }
        }
        other => Err(ApiError::ExpirationNotInteger(
            other.to_string().chars().take(40).collect(),
        )),
    }
}

#[utoipa::path(post, path = "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/links", tag = "backups",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path)),
    request_body = DownloadBackupFilesReq,
    responses((status = 200, body = ListBackupFileLinksResponse)))]
pub(crate) async fn list_backup_file_links(
    State(state): State<SharedState>,
    Path((project_id, instance_id, raw_backup_id)): Path<(String, String, String)>,
    Json(body): Json<serde_json::Value>,
) -> Result<Json<ListBackupFileLinksResponse>, ApiError> {
    let expiration = parse_expiration(&body)?;
    let (backup, mut files) =
        find_backup_with_files(&state, &project_id, &instance_id, &raw_backup_id).await?;
    require_succeeded(&backup)?;
    // By shard (first slot) for clusters, by name otherwise.
    let first_slot = |f: &crate::meta::BackupFile| {
        f.slots
            .as_deref()
            .and_then(|s| s.split(['-', '.']).next()?.parse::<u32>().ok())
            .unwrap_or(0)
    };
    files.sort_by(|a, b| {
        first_slot(a)
            .cmp(&first_slot(b))
            .then_with(|| a.file_name.cmp(&b.file_name))
    });
    files.truncate(MAX_LINKS);
    let expires = Utc::now() + chrono::TimeDelta::seconds(expiration);
    let bucket = state.objects.bucket().to_string();
    let mut links = Vec::with_capacity(files.len());
    let lifetime = std::time::Duration::from_secs(expiration.unsigned_abs());
    for f in files {
        // An S3 store verifies its own presigned links; the local store's
        // links come back to rdbvault.
        let presigned = state
            .objects
            .presigned_get(&f.object_key, &f.file_name, lifetime)
            .await
            .map_err(ApiError::internal)?;
        let link = match presigned {
            Some(url) => url,
            None => {
                let path = format!("/{bucket}/{}", encode_key(&f.object_key));
                let query = state.links.sign(&path, expires).await?;
                format!("{}{path}?{query}", state.public_url)
            }
        };
        links.push(LinksItem {
            link,
            file_name: f.file_name,
            size: f.size,
            sha256: f.sha256,
        });
    }
    Ok(Json(ListBackupFileLinksResponse {
        file_path: state
            .objects
            .bucket_key(&crate::object_keys::backup_prefix(&backup)),
        bucket_name: bucket,
        links,
    }))
}

/// Each segment of an object key percent-encoded (the `/` between them kept).
fn encode_key(key: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    key.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiration_is_parsed_strictly() {
        assert_eq!(
            parse_expiration(&json!({"expiration": 300})).expect("ok"),
            300
        );
        assert_eq!(
            parse_expiration(&json!({"expiration": 86400})).expect("ok"),
            86400
        );
        let code = |v: serde_json::Value| parse_expiration(&v).expect_err("refused").code();
        assert_eq!(code(json!({})), "DCS.4940");
        assert_eq!(code(json!({"expiration": null})), "DCS.4940");
        assert_eq!(code(json!({"expiration": "300"})), "DCS.4941");
        assert_eq!(code(json!({"expiration": 300.5})), "DCS.4941");
        // A whole number written as a float is that integer.
        assert_eq!(
            parse_expiration(&json!({"expiration": 600.0})).expect("whole"),
            600
        );
        let exp: serde_json::Value = serde_json::from_str(r#"{"expiration": 3e3}"#).expect("json");
        assert_eq!(parse_expiration(&exp).expect("whole"), 3000);
        assert_eq!(code(json!({"expiration": 299.0})), "DCS.4942");
        assert_eq!(code(json!({"expiration": 1e300})), "DCS.4942");
        assert_eq!(code(json!({"expiration": true})), "DCS.4941");
        assert_eq!(code(json!({"expiration": -1})), "DCS.4942");
        assert_eq!(code(json!({"expiration": 299})), "DCS.4942");
        assert_eq!(code(json!({"expiration": 86401})), "DCS.4942");
        assert_eq!(code(json!({"expiration": u64::MAX})), "DCS.4942");
        let huge: serde_json::Value =
            serde_json::from_str(r#"{"expiration": 123456789012345678901234567890}"#)
                .expect("json");
        assert_eq!(code(huge), "DCS.4942");
        assert_eq!(code(json!({"expiration": 300, "x": 1})), "DCS.4800");
        assert_eq!(code(json!([300])), "DCS.4800");
    }
}
