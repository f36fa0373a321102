//! Request extractors that answer every rejection with the DCS error body,
//! and the validators of path ids.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::auth::{AuthError, Principal};

/// `axum::extract::Path`, rejected with a DCS error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct Path<T>(pub T);

/// `axum::extract::Query`, rejected with a DCS error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct Query<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> ApiError {
        ApiError::invalid("path", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        // serde's message names the field and what it expected.
        let text = e.body_text();
        let reason = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        ApiError::invalid("query", reason.to_string())
    }
}

/// A JSON body, with the checks in the order a client can act on them:
/// presence, then media type, then whether the signature covers it, then
/// syntax, then meaning.
pub(crate) struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Json<T>, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| truncated(v.to_str().unwrap_or("<not text>")));
        // Set by `api::authenticate` on every signed route; without it (no
        // authentication on the route) there is no signature to cover it.
        let body_signed = req
            .extensions()
            .get::<Principal>()
            .is_none_or(|p| p.body_signed);
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid("body", e.body_text()))?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::EmptyBody);
        }
        match content_type {
            Some(ct) if is_json(&ct) => {}
            Some(ct) => return Err(ApiError::UnsupportedMediaType(ct)),
            None => return Err(ApiError::UnsupportedMediaType("none".into())),
        }
        // The SDK signs `UNSIGNED-PAYLOAD` instead of a body that is not
        // JSON; such a request got this far only to be told its media type
        // (above). A JSON body it did not sign is never acted on.
        if !body_signed {
            return Err(ApiError::Unauthenticated(AuthError::UnsignedBody));
        }
        parse_json(&body).map(Json)
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// A JSON body whose fields are all optional: an empty body (the SDK sends
/// `Content-Length: 0` when the body model is omitted) means the defaults.
pub(crate) struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<OptionalJson<T>, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(OptionalJson(v)),
            Err(ApiError::EmptyBody) => Ok(OptionalJson(T::default())),
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::NotJson(e.to_string()),
            Category::Data => ApiError::invalid("body", e.to_string()),
        }
    })
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Project ids are opaque to us, but bounded: 1 to 64 of `[A-Za-z0-9_-]`
/// (Huawei's are 32 hex digits).
pub(crate) fn project_id(raw: &str) -> Result<&str, ApiError> {
    let ok = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(raw)
        .ok_or_else(|| ApiError::InvalidProjectId(truncated(raw)))
}

/// Instance ids are UUIDs; any spelling uuid accepts becomes the canonical one.
pub(crate) fn instance_id(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::InvalidInstanceId(truncated(raw)))
}

/// Backup ids are UUIDs.
pub(crate) fn backup_id(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::InvalidBackupId(truncated(raw)))
}

/// Echoing a client's input is useful, echoing a megabyte of it is not.
pub(crate) fn truncated(raw: &str) -> String {
    raw.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(project_id("0123456789abcdef0123456789abcdef").is_ok());
        for bad in ["", "a/b", "a b", "ü", &"a".repeat(65)] {
            assert!(project_id(bad).is_err(), "{bad:?}");
        }
        let id = instance_id("6F9619FF-8B86-D011-B42D-00CF4FC964FF").expect("uuid");
        assert_eq!(id, "6f9619ff-8b86-d011-b42d-00cf4fc964ff");
        assert!(instance_id("inst-1").is_err());
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json;charset=utf-8"));
        assert!(is_json("Application/JSON; charset=UTF-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
    }
}
