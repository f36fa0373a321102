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
/// `Content-Length: 0` when the body model is omitted), or `null`, means
/// the defaults.
pub(crate) struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<OptionalJson<T>, ApiError> {
        match Json::<Option<T>>::from_request(req, state).await {
            Ok(Json(v)) => Ok(OptionalJson(v.unwrap_or_default())),
            Err(ApiError::EmptyBody) => Ok(OptionalJson(T::default())),
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let parsed = serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::NotJson(e.to_string()),
            Category::Data => ApiError::invalid("body", e.to_string()),
        }
    })?;
    // serde reads a struct from an array of its fields in order too
    // (`[null, null]` as `{"remark": null, "backup_format": null}`): a
    // body is an object (nested ones are read with `object::option`).
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::invalid(
            "body",
            "expected a JSON object, not an array",
        ));
    }
    Ok(parsed)
}

/// Objects nested in request bodies, read only as JSON objects (serde
/// would read a struct from an array of its fields as well). For
/// `#[serde(default, deserialize_with = "object::option")]`.
pub(crate) mod object {
    use std::marker::PhantomData;

    use serde::Deserialize;
    use serde::de::value::MapAccessDeserializer;
    use serde::de::{Deserializer, MapAccess, Visitor};

    /// An optional object (`null` is absent).
    pub(crate) fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct Object<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
            type Value = Option<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object or null")
            }

            fn visit_unit<E>(self) -> Result<Option<T>, E> {
                Ok(None)
            }

            fn visit_none<E>(self) -> Result<Option<T>, E> {
                Ok(None)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Some)
            }
        }

        d.deserialize_any(Object(PhantomData))
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The formats of ids as the OpenAPI document gives them: JSON Schema
/// patterns (read alike by ECMA-262 and Python's `re`), each matching
/// exactly what its validator below accepts.
pub(crate) const PROJECT_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// A UUID hyphenated (any case); the pieces of [`UUID_PATTERN`].
macro_rules! hyphenated {
    () => {
        "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    };
}

/// Every spelling `uuid::Uuid::parse_str` reads: hyphenated, 32 hex digits,
/// braced, or a URN (its prefix in any case).
pub(crate) const UUID_PATTERN: &str = concat!(
    "^(?:",
    hyphenated!(),
    "|[0-9A-Fa-f]{32}|\\{",
    hyphenated!(),
    "\\}|[Uu][Rr][Nn]:[Uu][Uu][Ii][Dd]:",
    hyphenated!(),
    ")$"
);

/// The ids of a download link's path: UUIDs in the spellings that are plain
/// path segments (`api::download` refuses any other character).
pub(crate) const DOWNLOAD_ID_PATTERN: &str = concat!("^(?:", hyphenated!(), "|[0-9A-Fa-f]{32})$");

/// A download link's file name: letters, digits, `-`, `_`, `.`, but not
/// `.` or `..`.
pub(crate) const FILE_NAME_PATTERN: &str =
    "^(?:[A-Za-z0-9_-]|\\.[A-Za-z0-9_-]|\\.\\.[A-Za-z0-9._-])[A-Za-z0-9._-]*$";

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

/// Integer fields of request bodies, read as JSON Schema's `integer` is: a
/// number with no fraction, however written (`7`, `7.0`, `7e0`), within 64
/// bits. For `#[serde(deserialize_with = ...)]`.
pub(crate) mod whole {
    use serde::de::{Deserialize, Deserializer, Error, Unexpected};
    use serde_json::Value;

    fn number<E: Error>(v: &Value) -> Result<i64, E> {
        let Value::Number(n) = v else {
            return Err(E::invalid_type(unexpected(v), &"an integer"));
        };
        if let Some(i) = n.as_i64() {
            return Ok(i);
        }
        match n.as_f64() {
            // Whole and below 2^63 in magnitude: exact as an i64.
            Some(f) if f.fract() == 0.0 && f.abs() < 9_223_372_036_854_775_808.0 => Ok(f as i64),
            Some(f) if f.fract() != 0.0 => {
                Err(E::invalid_type(Unexpected::Float(f), &"an integer"))
            }
            _ => Err(E::invalid_value(
                Unexpected::Other(&n.to_string()),
                &"an integer within 64 bits",
            )),
        }
    }

    fn unexpected(v: &Value) -> Unexpected<'_> {
        match v {
            Value::Null => Unexpected::Unit,
            Value::Bool(b) => Unexpected::Bool(*b),
            Value::String(s) => Unexpected::Str(s),
            Value::Array(_) => Unexpected::Seq,
            Value::Object(_) => Unexpected::Map,
            Value::Number(_) => Unexpected::Other("number"),
        }
    }

    /// An optional integer (`null` is absent).
    pub(crate) fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            v => number(&v).map(Some),
        }
    }

    /// A list of integers.
    pub(crate) fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        match Value::deserialize(d)? {
            Value::Array(items) => items.iter().map(number).collect(),
            other => Err(D::Error::invalid_type(
                unexpected(&other),
                &"a list of integers",
            )),
        }
    }
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

    /// The spellings [`UUID_PATTERN`] names are those the validators read,
    /// and its near misses are refused (the fuzz campaign, `tests/fuzz_api.rs`,
    /// checks the patterns against generated ids both ways).
    #[test]
    fn uuid_spellings_are_the_documented_ones() {
        let h = "6f9619ff-8b86-d011-b42d-00cf4fc964ff";
        for ok in [
            h.to_string(),
            h.to_uppercase(),
            h.replace('-', ""),
            format!("{{{h}}}"),
            format!("urn:uuid:{h}"),
            format!("URN:Uuid:{h}"),
        ] {
            assert_eq!(instance_id(&ok).expect(&ok), h);
            assert_eq!(backup_id(&ok).expect(&ok), h);
        }
        for bad in [
            format!("{{{}}}", h.replace('-', "")),
            format!("urn:uuid:{}", h.replace('-', "")),
            format!("urn:uuid:{{{h}}}"),
            h.replacen('-', "", 1),
            format!("{h} "),
            h[1..].to_string(),
        ] {
            assert!(instance_id(&bad).is_err(), "{bad}");
        }
        assert!(UUID_PATTERN.starts_with("^(?:[0-9A-Fa-f]{8}-"));
        assert!(UUID_PATTERN.contains("|\\{[0-9A-Fa-f]{8}-"));
    }

    #[test]
    fn whole_numbers_are_integers_however_written() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "whole::option")]
            n: Option<i64>,
            #[serde(default, deserialize_with = "whole::list")]
            l: Vec<i64>,
        }
        let t: T = serde_json::from_str(r#"{"n": 7.0, "l": [1, 2.0, 3e0]}"#).expect("whole");
        assert_eq!((t.n, t.l), (Some(7), vec![1, 2, 3]));
        let t: T = serde_json::from_str(r#"{"n": null}"#).expect("null");
        assert_eq!(t.n, None);
        for bad in [
            r#"{"n": 7.5}"#,
            r#"{"n": "7"}"#,
            r#"{"n": true}"#,
            r#"{"n": 1e19}"#,
            r#"{"n": 9223372036854775808}"#,
            r#"{"l": [1.5]}"#,
            r#"{"l": 1}"#,
            r#"{"l": null}"#,
        ] {
            assert!(serde_json::from_str::<T>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_and_nested_bodies_are_objects() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Inner {
            a: i64,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Outer {
            #[serde(default, deserialize_with = "object::option")]
            inner: Option<Inner>,
        }
        let o: Outer = parse_json(br#"{"inner": {"a": 1}}"#).expect("object");
        assert_eq!(o.inner.map(|i| i.a), Some(1));
        assert!(
            parse_json::<Outer>(br#"{"inner": null}"#)
                .expect("null")
                .inner
                .is_none()
        );
        assert!(parse_json::<Outer>(b"{}").expect("absent").inner.is_none());
        for bad in [
            &br#"[null]"#[..],
            br#"  [{"a": 1}]"#,
            br#"{"inner": [1]}"#,
            br#"{"inner": 1}"#,
            br#"{"inner": {"a": 1, "a": 2}}"#,
            br#"{"inner": {"a": 1, "b": 2}}"#,
        ] {
            let e = parse_json::<Outer>(bad).expect_err(&String::from_utf8_lossy(bad));
            assert_eq!(e.code(), "DCS.4800", "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse_json::<Outer>(b"[").expect_err("syntax").code(),
            "DCS.4005"
        );
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
