//! The `SDK-HMAC-SHA256` algorithm of the Huawei Cloud SDKs.
//!
//! One implementation serves both sides: the server recomputes the signature
//! from what it received, the CLI computes it for what it sends. The
//! SDK's signer (its steps are in `docs/design.md`, "The signature") is
//! followed step by step; the tests
//! below are the worked examples computed by the SDK's own signer.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

pub(crate) const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// `X-Sdk-Date` layout, always UTC.
pub const DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// RFC 3986 unreserved characters stay literal; everything else is `%XX`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The path as the SDK canonicalises it: decoded as a whole, split on `/`,
/// each segment re-encoded, with a trailing `/` added.
pub(crate) fn canonical_uri(path: &str) -> String {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    let mut uri = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// The raw query string parsed into pairs, sorted by key then value, and
/// re-encoded; the SDK sends exactly this form, so any client that does not
/// is rejected rather than guessed at. It is parsed exactly as the handlers
/// parse it (`application/x-www-form-urlencoded`: `+` is a space), so the
/// values that were signed are the values acted on: a request signed for
/// `A%2BB` cannot be replayed as `A+B`, which a handler reads as `A B`.
pub(crate) fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Inputs of one signature. `headers` are the signed headers as
/// `(lower-case name, value)`, in any order.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl Request<'_> {
    /// Sorted, `;`-joined names of the signed headers.
    pub(crate) fn signed_headers(&self) -> String {
        let mut names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.join(";")
    }

    #[cfg(test)]
    pub(crate) fn canonical_request(&self) -> String {
        self.canonical_request_with(&self.payload_hash())
    }

    /// The last line of the canonical request as the SDK writes it for a
    /// body hashed in full: the SHA-256 of the body (of nothing, when empty).
    fn payload_hash(&self) -> String {
        sha256_hex(self.body)
    }

    /// The canonical request with `payload` as its last line: the body's
    /// hash, or what the client said in `X-Sdk-Content-Sha256` (the SDK
    /// sends `UNSIGNED-PAYLOAD` there for a body that is not JSON, and signs
    /// that word instead of the body).
    fn canonical_request_with(&self, payload: &str) -> String {
        let mut headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.trim()))
            .collect();
        headers.sort_unstable();
        let block: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method.to_ascii_uppercase(),
            canonical_uri(self.path),
            canonical_query(self.query),
            block,
            self.signed_headers(),
            payload,
        )
    }

    #[cfg(test)]
    pub(crate) fn string_to_sign(&self, sdk_date: &str) -> String {
        self.string_to_sign_with(sdk_date, &self.payload_hash())
    }

    fn string_to_sign_with(&self, sdk_date: &str, payload: &str) -> String {
        format!(
            "{ALGORITHM}\n{sdk_date}\n{}",
            sha256_hex(self.canonical_request_with(payload).as_bytes())
        )
    }

    /// Lower-case hex HMAC-SHA256 of the string to sign, keyed with the SK.
    pub(crate) fn signature(&self, secret_key: &str, sdk_date: &str) -> String {
        self.signature_with(secret_key, sdk_date, &self.payload_hash())
    }

    /// [`Request::signature`] with `payload` as the canonical request's last
    /// line (see [`Request::canonical_request_with`]).
    pub(crate) fn signature_with(&self, secret_key: &str, sdk_date: &str, payload: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(self.string_to_sign_with(sdk_date, payload).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn authorization(&self, access_key: &str, secret_key: &str, sdk_date: &str) -> String {
        format!(
            "{ALGORITHM} Access={access_key}, SignedHeaders={}, Signature={}",
            self.signed_headers(),
            self.signature(secret_key, sdk_date)
        )
    }
}

/// The parts of an `Authorization: SDK-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Authorization<'a> {
    pub(crate) access_key: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub(crate) signature: &'a str,
}

impl<'a> Authorization<'a> {
    pub(crate) fn parse(header: &'a str) -> Option<Authorization<'a>> {
        let rest = header.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
        let (mut access, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, value) = part.trim().split_once('=')?;
            match key {
                "Access" => access = Some(value),
                "SignedHeaders" => signed = Some(value),
                "Signature" => signature = Some(value),
                _ => return None,
            }
        }
        let signed_headers: Vec<&str> = signed?.split(';').collect();
        if signed_headers.iter().any(|h| h.is_empty()) {
            return None;
        }
        Some(Authorization {
            access_key: access.filter(|a| !a.is_empty())?,
            signed_headers,
            signature: signature?,
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_query_is_canonicalised_as_handlers_read_it() {
        // `+` is a space to the handlers, so to the signature too.
        assert_eq!(canonical_query("name=A+B"), canonical_query("name=A%20B"));
        assert_ne!(canonical_query("name=A%2BB"), canonical_query("name=A+B"));
        assert_eq!(canonical_query("name=A%2BB"), "name=A%2BB");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("flag&x="), "flag=&x=");
    }

    use super::*;

    const AK: &str = "AKEXAMPLE1234567890";
    const SK: &str = "SKEXAMPLEsecretKEY0123456789abcdefghijkl";
    const PROJECT: &str = "0123456789abcdef0123456789abcdef";
    const DATE: &str = "20240102T030405Z";

    fn headers(content_type: &str) -> Vec<(String, String)> {
        [
            ("content-type", content_type),
            ("host", "127.0.0.1:8080"),
            ("user-agent", "huaweicloud-usdk-python/3.0"),
            ("x-project-id", PROJECT),
            ("x-sdk-date", DATE),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn worked_example_post_with_body() {
        let path = format!("/v2/{PROJECT}/instances/inst-1/backups/bk-1/links");
        let req = Request {
            method: "POST",
            path: &path,
            query: "",
            headers: headers("application/json;charset=utf-8"),
            body: br#"{"expiration": 300}"#,
        };
        let expected_canonical = format!(
            "POST\n/v2/{PROJECT}/instances/inst-1/backups/bk-1/links/\n\n\
             content-type:application/json;charset=utf-8\nhost:127.0.0.1:8080\n\
             user-agent:huaweicloud-usdk-python/3.0\nx-project-id:{PROJECT}\n\
             x-sdk-date:{DATE}\n\ncontent-type;host;user-agent;x-project-id;x-sdk-date\n\
             8989765ca779e351975c21c2ceb30b2f634f3aed22ed0f3031117cce4b206dff"
        );
        assert_eq!(req.canonical_request(), expected_canonical);
        assert_eq!(
            req.string_to_sign(DATE),
            "SDK-HMAC-SHA256\n20240102T030405Z\n\
             5aa0fc08ea315dc995e05499031641bf6085e81f74910d3ffd6ba6e792b2ff00"
        );
        assert_eq!(
            req.authorization(AK, SK, DATE),
            "SDK-HMAC-SHA256 Access=AKEXAMPLE1234567890, \
             SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, \
             Signature=ac319d2d0456af9560df60e35463b3c6afc444f298e87270733a4702f8f6819d"
        );
    }

    #[test]
    fn worked_example_get_with_query() {
        let path = format!("/v2/{PROJECT}/instances/inst-1/backups");
        let req = Request {
            method: "GET",
            path: &path,
            query: "begin_time=20240101000000&flag=true&limit=10&name=a%20b%2Fc&offset=0",
            headers: headers("application/json"),
            body: b"",
        };
        assert_eq!(
            req.signature(SK, DATE),
            "7e925b53f73c04764feb2fd251c0c8f8baeb2f27b1a551a3d77270563e6134ad"
        );
    }

    #[test]
    fn query_is_sorted_and_reencoded() {
        assert_eq!(canonical_query("b=2&a=x%20y&a=1"), "a=1&a=x%20y&b=2");
        assert_eq!(canonical_query(""), "");
    }

    #[test]
    fn encoded_slash_in_a_segment_becomes_a_real_slash() {
        assert_eq!(
            canonical_uri("/instances/inst%201%2Fx"),
            "/instances/inst%201/x/"
        );
    }

    #[test]
    fn authorization_header_parsing() {
        let h = "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=ab";
        let a = Authorization::parse(h).expect("parses");
        assert_eq!(a.access_key, "AK");
        assert_eq!(a.signed_headers, vec!["host", "x-sdk-date"]);
        assert_eq!(a.signature, "ab");
        for bad in [
            "",
            "SDK-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=ab",
            "SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature=ab",
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=, Signature=ab",
            "SDK-HMAC-SHA256 Access=AK, Signature=ab",
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=ab, Extra=1",
        ] {
            assert!(Authorization::parse(bad).is_none(), "{bad:?} accepted");
        }
    }
}
