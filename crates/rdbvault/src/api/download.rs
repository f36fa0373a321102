//! The download endpoint of the local store: `GET|HEAD /{bucket}/{instance}/{backup}/{file}`
//! with a link's query auth. Answers in the S3 XML error style, as the store
//! behind a presigned link would.
//!
//! The file served is found through the metadata (the backup must exist and
//! be `succeed`), never by mapping the URL onto the filesystem, so no path can
//! escape the store and a deleted backup's links stop working at once.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::SharedState;
use crate::meta::BackupStatus;
use crate::objects::links::{LinkError, Presented, VerifyError};

/// Read size of file streaming: large reads keep a multi-gigabyte download
/// near disk speed without holding more than this per connection.
const CHUNK: usize = 256 * 1024;

#[derive(Debug)]
enum DownloadError {
    Denied(String),
    BadRequest(&'static str, String),
    NoSuchKey,
    Internal(String),
}

impl IntoResponse for DownloadError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            DownloadError::Denied(m) => (StatusCode::FORBIDDEN, "AccessDenied", m),
            DownloadError::BadRequest(code, m) => (StatusCode::BAD_REQUEST, code, m),
            DownloadError::NoSuchKey => (
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.".to_string(),
            ),
            DownloadError::Internal(e) => {
                tracing::error!(error = %e, "download failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error.".into(),
                )
            }
        };
        if status.is_client_error() {
            tracing::warn!(status = status.as_u16(), code, message = %message, "download refused");
        }
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message></Error>",
            xml_escape(&message)
        );
        (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl From<VerifyError> for DownloadError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Link(LinkError::BadExpires(v)) => {
                DownloadError::BadRequest("InvalidArgument", LinkError::BadExpires(v).to_string())
            }
            VerifyError::Link(l) => DownloadError::Denied(l.to_string()),
            VerifyError::Meta(m) => DownloadError::Internal(m.to_string()),
        }
    }
}

/// `{instance}/{backup}/{file}` from a raw path under `/{bucket}/`, refusing
/// anything that is not plainly three safe segments.
fn parse_key(raw_rest: &str) -> Result<(String, String, String), DownloadError> {
    let deny = || DownloadError::Denied("The path does not name a backup file.".into());
    let parts: Vec<&str> = raw_rest.split('/').collect();
    let [instance, backup, file] = parts.as_slice() else {
        return Err(deny());
    };
    let safe = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if !(safe(instance) && safe(backup) && safe(file)) {
        return Err(deny());
    }
    let uuid = |s: &str| {
        uuid::Uuid::parse_str(s)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| deny())
    };
    Ok((uuid(instance)?, uuid(backup)?, file.to_string()))
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

#[utoipa::path(get, path = "/{bucket}/{instance_id}/{backup_id}/{file_name}", tag = "downloads",
    description = "A download link of the local store, as returned by ListBackupFileLinks. Also answers HEAD; \
                   honours single `Range` requests (206/416). Errors are S3-style XML.",
    params(("bucket" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path),
           ("file_name" = String, Path),
           ("AWSAccessKeyId" = String, Query, description = "id of the link key"),
           ("Expires" = i64, Query, description = "unix seconds"),
           ("Signature" = String, Query, description = "base64 HMAC-SHA256, URL-encoded")),
    security(()),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
              (status = 206, description = "the requested range"),
              (status = 403, description = "bad, tampered or expired link", content_type = "application/xml"),
              (status = 404, description = "the backup or file no longer exists", content_type = "application/xml"),
              (status = 416, description = "range not satisfiable")))]
pub async fn download(State(state): State<SharedState>, req: Request) -> Response {
    match serve(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(state: &SharedState, req: Request) -> Result<Response, DownloadError> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let prefix = format!("/{}/", state.objects.bucket());
    let rest = path.strip_prefix(&prefix).ok_or(DownloadError::NoSuchKey)?;

    // The signature value is base64, percent-encoded in the link.
    let signature = query_param(&query, "Signature").map(|s| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    });
    let presented = Presented {
        key_id: query_param(&query, "AWSAccessKeyId"),
        expires: query_param(&query, "Expires"),
        signature: signature.as_deref(),
    };
    state
        .links
        .verify(&path, &presented, chrono::Utc::now())
        .await?;
    let (instance_id, backup_id, file_name) = parse_key(rest)?;

    let backup = state
        .meta
        .get_backup_by_id(&backup_id)
        .await
        .map_err(|e| DownloadError::Internal(e.to_string()))?
        .filter(|b| b.instance_id == instance_id && b.status == BackupStatus::Succeed)
        .ok_or(DownloadError::NoSuchKey)?;
    let file = state
        .meta
        .backup_files(&backup.id)
        .await
        .map_err(|e| DownloadError::Internal(e.to_string()))?
        .into_iter()
        .find(|f| f.file_name == file_name)
        .ok_or(DownloadError::NoSuchKey)?;
    let local = state
        .objects
        .local_path(&file.object_key)
        .ok_or(DownloadError::NoSuchKey)?;

    // Range, HEAD, Content-Length, Last-Modified and conditional requests
    // are tower-http's; the file never changes once published.
    let mut response = ServeFile::new(&local)
        .with_buf_chunk_size(CHUNK)
        .oneshot(req)
        .await
        .map_err(|e| DownloadError::Internal(e.to_string()))?
        .map(axum::body::Body::new);
    if response.status() == StatusCode::NOT_FOUND {
        return Err(DownloadError::NoSuchKey);
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(sha) = &file.sha256
        && let Ok(etag) = HeaderValue::from_str(&format!("\"{sha}\""))
    {
        headers.insert(header::ETAG, etag);
    }
    if let Ok(cd) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file.file_name)) {
        headers.insert(header::CONTENT_DISPOSITION, cd);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_plain_segments_name_a_file() {
        let i = "6f9619ff-8b86-d011-b42d-00cf4fc964ff";
        assert!(parse_key(&format!("{i}/{i}/redis_1.2.3.4_6379_20240101000000.rdb")).is_ok());
        for bad in [
            format!("{i}/{i}/../x"),
            format!("{i}/{i}/.."),
            format!("{i}/{i}/a%2Fb"),
            format!("{i}/{i}/a/b"),
            format!("{i}/../{i}/x"),
            format!("/{i}/{i}/x"),
            format!("{i}/{i}/"),
            format!("x/{i}/f"),
            "..%2F..%2Fetc%2Fpasswd".to_string(),
        ] {
            assert!(parse_key(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn xml_errors_escape() {
        assert_eq!(xml_escape("<a&\"b>"), "&lt;a&amp;&quot;b&gt;");
    }
}
