//! The download endpoint of the local store: `GET|HEAD /{bucket}/{instance}/{backup}/{file}`
//! with a link's query auth. Answers in the S3 XML error style, as the store
//! behind a presigned link would.
//!
//! The file served is found through the metadata (the backup must exist and
//! be `succeed`), never by mapping the URL onto the filesystem, so no path can
//! escape the store and a deleted backup's links stop working at once.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::download_slots::{Full, Slot};
use crate::meta::BackupStatus;
use crate::objects::link_signing::{LinkError, LinkQuery, VerifyError};

/// Read size of file streaming: large enough that a download runs near
/// disk speed, small enough that the downloads allowed at once
/// (`max_downloads`, each holding one chunk while its client is slow) stay
/// within a few tens of MiB.
const CHUNK: usize = 128 * 1024;

/// Why a download is not served, answered as S3 answers: an S3 error code
/// in an XML body.
#[derive(Debug)]
enum S3StyleError {
    Denied(String),
    BadRequest(&'static str, String),
    NoSuchKey,
    /// A download limit is reached; the client should retry shortly.
    SlowDown(Full),
    Internal(String),
}

impl IntoResponse for S3StyleError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            S3StyleError::Denied(m) => (StatusCode::FORBIDDEN, "AccessDenied", m),
            S3StyleError::BadRequest(code, m) => (StatusCode::BAD_REQUEST, code, m),
            S3StyleError::NoSuchKey => (
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.".to_string(),
            ),
            S3StyleError::SlowDown(full) => {
                tracing::warn!(limit = ?full, "download refused: {}", full.describe());
                let body = xml_error("SlowDown", full.describe());
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [
                        (header::CONTENT_TYPE, "application/xml"),
                        (header::RETRY_AFTER, "1"),
                    ],
                    body,
                )
                    .into_response();
            }
            S3StyleError::Internal(e) => {
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
        let body = xml_error(code, &message);
        (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
    }
}

fn xml_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message></Error>",
        xml_escape(message)
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl From<VerifyError> for S3StyleError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Link(LinkError::BadExpires(v)) => {
                S3StyleError::BadRequest("InvalidArgument", LinkError::BadExpires(v).to_string())
            }
            VerifyError::Link(l) => S3StyleError::Denied(l.to_string()),
            VerifyError::Meta(m) => S3StyleError::Internal(m.to_string()),
        }
    }
}

/// `{instance}/{backup}/{file}` from a raw path under `/{bucket}/`, refusing
/// anything that is not plainly three safe segments.
fn parse_key(raw_rest: &str) -> Result<(String, String, String), S3StyleError> {
    let deny = || S3StyleError::Denied("The path does not name a backup file.".into());
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
              (status = 416, description = "range not satisfiable"),
              (status = 503, description = "a download limit is reached (max_downloads, max_downloads_per_client, max_downloads_per_link): S3 `SlowDown`, retry after `Retry-After` seconds", content_type = "application/xml")))]
pub(crate) async fn download(State(state): State<SharedState>, req: Request) -> Response {
    match serve(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(state: &SharedState, req: Request) -> Result<Response, S3StyleError> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let prefix = format!("/{}/", state.objects.bucket());
    let rest = path.strip_prefix(&prefix).ok_or(S3StyleError::NoSuchKey)?;
    verify_link(state, &path, &query).await?;
    let file = resolve_file(state, rest).await?;
    let range = requested_range(req.headers(), file.etag.as_deref(), file.len);
    // HEAD sends no body and holds nothing: only a GET takes a slot. A link
    // is told apart by its signature (one per link handed out).
    let slot = match req.method() == Method::HEAD {
        true => None,
        false => {
            let client = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            let link = query_param(query.as_str(), "Signature").unwrap_or(path.as_str());
            let taken = state.downloads.take(client, link);
            if taken.is_err() {
                state.metrics.download_refused();
            }
            Some(taken.map_err(S3StyleError::SlowDown)?)
        }
    };
    respond(file, range, slot)
}

/// Checks the link's query auth (key id, expiry, signature) for `path`, raw as requested.
async fn verify_link(state: &SharedState, path: &str, query: &str) -> Result<(), S3StyleError> {
    // The signature value is base64, percent-encoded in the link.
    let signature = query_param(query, "Signature").map(|s| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    });
    let presented = LinkQuery {
        key_id: query_param(query, "AWSAccessKeyId"),
        expires: query_param(query, "Expires"),
        signature: signature.as_deref(),
    };
    state
        .links
        .verify(path, &presented, chrono::Utc::now())
        .await?;
    Ok(())
}

/// A backup file about to be served, and what its headers say about it.
struct ServedFile {
    local: PathBuf,
    name: String,
    len: u64,
    etag: Option<String>,
    modified: Option<std::time::SystemTime>,
}

/// The file that `rest` (`{instance}/{backup}/{file}`) names, found through
/// the metadata: a file of a `succeed` backup of that instance, present in
/// the store.
async fn resolve_file(state: &SharedState, rest: &str) -> Result<ServedFile, S3StyleError> {
    let (instance_id, backup_id, file_name) = parse_key(rest)?;
    let (_, files) = state
        .meta
        .backup_with_files(&backup_id)
        .await
        .map_err(|e| S3StyleError::Internal(e.to_string()))?
        .filter(|(b, _)| b.instance_id == instance_id && b.status == BackupStatus::Succeed)
        .ok_or(S3StyleError::NoSuchKey)?;
    let file = files
        .into_iter()
        .find(|f| f.file_name == file_name)
        .ok_or(S3StyleError::NoSuchKey)?;
    let local = state
        .objects
        .local_path(&file.object_key)
        .ok_or(S3StyleError::NoSuchKey)?;
    let meta = tokio::fs::metadata(&local)
        .await
        .map_err(|_| S3StyleError::NoSuchKey)?;
    Ok(ServedFile {
        local,
        name: file.file_name,
        len: meta.len(),
        etag: file.sha256.as_ref().map(|sha| format!("\"{sha}\"")),
        modified: meta.modified().ok(),
    })
}

/// The answer to a GET (holding its download `slot`) or a HEAD (no slot)
/// of `file`: its headers, and the bytes `range` asks for.
fn respond(file: ServedFile, range: Range, slot: Option<Slot>) -> Result<Response, S3StyleError> {
    let len = file.len;
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(etag) = &file.etag {
        builder = builder.header(header::ETAG, etag.as_str());
    }
    if let Some(modified) = file.modified {
        let at: chrono::DateTime<chrono::Utc> = modified.into();
        builder = builder.header(
            header::LAST_MODIFIED,
            at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
    }
    if let Ok(cd) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file.name)) {
        builder = builder.header(header::CONTENT_DISPOSITION, cd);
    }
    let (status, span) = match range {
        Range::Full => (StatusCode::OK, 0..=len.saturating_sub(1)),
        Range::Part(r) => {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{len}", r.start(), r.end()),
            );
            (StatusCode::PARTIAL_CONTENT, r)
        }
        Range::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .map_err(|e| S3StyleError::Internal(e.to_string()));
        }
    };
    let count = if len == 0 {
        0
    } else {
        span.end() - span.start() + 1
    };
    let body = match slot {
        Some(slot) if count > 0 => stream_file(file.local, *span.start(), count, slot),
        _ => Body::empty(),
    };
    builder
        .status(status)
        .header(header::CONTENT_LENGTH, count)
        .body(body)
        .map_err(|e| S3StyleError::Internal(e.to_string()))
}

enum Range {
    Full,
    Part(RangeInclusive<u64>),
    Unsatisfiable,
}

/// The single range asked for. A malformed header, several ranges, or an
/// `If-Range` naming another version of the file mean the whole file (as
/// HTTP allows); a well-formed range outside the file is unsatisfiable.
fn requested_range(headers: &HeaderMap, etag: Option<&str>, len: u64) -> Range {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Range::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && Some(if_range) != etag
    {
        return Range::Full;
    }
    // What RFC 9110 (14.1.1) says and the parser does not: a suffix longer
    // than the file is the whole file, a zero-length suffix cannot be
    // satisfied, and a range ending before it starts is invalid, so the
    // header is ignored.
    if let Some(spec) = value.trim().strip_prefix("bytes=")
        && !spec.contains(',')
    {
        let spec = spec.trim();
        if let Some(suffix) = spec.strip_prefix('-').and_then(|n| n.parse::<u64>().ok()) {
            return match suffix {
                0 => Range::Unsatisfiable,
                _ if len == 0 => Range::Unsatisfiable,
                n if n >= len => Range::Part(0..=len - 1),
                n => Range::Part(len - n..=len - 1),
            };
        }
        if let Some((first, last)) = spec.split_once('-')
            && let (Ok(first), Ok(last)) = (first.parse::<u64>(), last.parse::<u64>())
            && last < first
        {
            return Range::Full;
        }
    }
    let Ok(parsed) = http_range_header::parse_range_header(value) else {
        return Range::Full;
    };
    match parsed.validate(len) {
        Ok(ranges) if ranges.len() == 1 && len > 0 => {
            ranges.into_iter().next().map_or(Range::Full, Range::Part)
        }
        Ok(_) if len == 0 => Range::Unsatisfiable,
        Ok(_) => Range::Full,
        Err(_) => Range::Unsatisfiable,
    }
}

/// Streams `count` bytes of `path` from `start`, holding `slot` until the
/// body ends or is dropped (the client went away, or was cut off idle).
/// Each chunk is one positioned read on tokio's blocking pool (a turn of a
/// few shared by all downloads), and the next is read while the socket
/// takes this one: the disk and the network work at once, and a client
/// that stops reading holds two chunks and no thread.
fn stream_file(path: PathBuf, start: u64, count: u64, slot: Slot) -> Body {
    struct Reading {
        file: Option<Arc<std::fs::File>>,
        path: PathBuf,
        /// Where the next read starts, and how much is left to read.
        at: u64,
        left: u64,
        ahead: Option<tokio::task::JoinHandle<std::io::Result<Bytes>>>,
        slot: Slot,
    }

    impl Reading {
        /// Starts reading the next chunk, if any is left.
        async fn read_ahead(&mut self) -> std::io::Result<()> {
            if self.left == 0 {
                return Ok(());
            }
            let file = match &self.file {
                Some(f) => f.clone(),
                None => {
                    let path = self.path.clone();
                    let opened = tokio::task::spawn_blocking(move || std::fs::File::open(path))
                        .await
                        .map_err(std::io::Error::other)??;
                    self.file.insert(Arc::new(opened)).clone()
                }
            };
            let want = usize::try_from(self.left).unwrap_or(usize::MAX).min(CHUNK);
            let (at, turn) = (self.at, self.slot.read_turn().await);
            self.ahead = Some(tokio::task::spawn_blocking(move || {
                let _turn = turn;
                let mut buf = vec![0u8; want];
                file.read_exact_at(&mut buf, at).map(|()| Bytes::from(buf))
            }));
            self.at += want as u64;
            self.left -= want as u64;
            Ok(())
        }
    }

    let reading = Reading {
        file: None,
        path,
        at: start,
        left: count,
        ahead: None,
        slot,
    };
    let chunks = futures::stream::try_unfold(reading, |mut r| async move {
        if r.ahead.is_none() {
            r.read_ahead().await?;
        }
        let Some(reading) = r.ahead.take() else {
            return Ok(None);
        };
        let chunk = reading.await.map_err(std::io::Error::other)??;
        r.read_ahead().await?;
        Ok::<_, std::io::Error>(Some((chunk, r)))
    });
    Body::from_stream(chunks)
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
    fn ranges() {
        let mut h = HeaderMap::new();
        assert!(matches!(requested_range(&h, None, 100), Range::Full));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=10-19"));
        assert!(matches!(requested_range(&h, None, 100), Range::Part(r) if r == (10..=19)));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=-5"));
        assert!(matches!(requested_range(&h, None, 100), Range::Part(r) if r == (95..=99)));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=90-200"));
        assert!(matches!(requested_range(&h, None, 100), Range::Part(r) if r == (90..=99)));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=100-"));
        assert!(matches!(
            requested_range(&h, None, 100),
            Range::Unsatisfiable
        ));
        // RFC 9110: a suffix longer than the file is all of it; a zero
        // suffix is unsatisfiable; a range ending before it starts is ignored.
        h.insert(header::RANGE, HeaderValue::from_static("bytes=-500"));
        assert!(matches!(requested_range(&h, None, 100), Range::Part(r) if r == (0..=99)));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=-100"));
        assert!(matches!(requested_range(&h, None, 100), Range::Part(r) if r == (0..=99)));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=-0"));
        assert!(matches!(
            requested_range(&h, None, 100),
            Range::Unsatisfiable
        ));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=5-3"));
        assert!(matches!(requested_range(&h, None, 100), Range::Full));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1,5-6"));
        assert!(matches!(requested_range(&h, None, 100), Range::Full));
        h.insert(header::RANGE, HeaderValue::from_static("pages=1"));
        assert!(matches!(requested_range(&h, None, 100), Range::Full));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=10-19"));
        h.insert(header::IF_RANGE, HeaderValue::from_static("\"old\""));
        assert!(matches!(
            requested_range(&h, Some("\"new\""), 100),
            Range::Full
        ));
        assert!(matches!(
            requested_range(&h, Some("\"old\""), 100),
            Range::Part(_)
        ));
    }

    #[test]
    fn xml_errors_escape() {
        assert_eq!(xml_escape("<a&\"b>"), "&lt;a&amp;&quot;b&gt;");
    }
}
