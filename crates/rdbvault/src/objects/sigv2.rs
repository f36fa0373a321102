//! S3 Signature Version 2 query authentication, the style of the example
//! link in the DCS ListBackupFileLinks documentation (`AWSAccessKeyId`,
//! `Expires`, `Signature`), which OBS still
//! speaks. No maintained crate produces it, so this is the whole of it:
//!
//! `Signature = Base64(HMAC-SHA1(secret, "GET\n\n\n{Expires}\n/{bucket}/{key}[?sub-resources]"))`
//!
//! where sub-resources are the `response-*` overrides, sorted, values not encoded.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;

/// Unreserved characters stay literal in keys and query values.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Keys keep their `/` separators.
const KEY: &AsciiSet = &UNRESERVED.remove(b'/');

pub struct V2Link<'a> {
    /// `http(s)://host[:port]`, no trailing slash.
    pub endpoint: &'a str,
    pub path_style: bool,
    pub bucket: &'a str,
    pub key: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
    /// `AWSAccessKeyId`, or OBS's `AccessKeyId`.
    pub access_key_param: &'a str,
    /// Unix seconds.
    pub expires: i64,
    /// `response-content-disposition` and friends: signed, then sent.
    pub overrides: &'a [(&'a str, String)],
}

impl V2Link<'_> {
    fn string_to_sign(&self) -> String {
        let mut overrides: Vec<&(&str, String)> = self.overrides.iter().collect();
        overrides.sort_by(|a, b| a.0.cmp(b.0));
        let sub: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let query = if sub.is_empty() {
            String::new()
        } else {
            format!("?{}", sub.join("&"))
        };
        format!(
            "GET\n\n\n{}\n/{}/{}{query}",
            self.expires, self.bucket, self.key
        )
    }

    fn signature(&self) -> String {
        // HMAC takes keys of any length.
        let mut mac = Hmac::<Sha1>::new_from_slice(self.secret_key.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(self.string_to_sign().as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

    pub fn url(&self) -> String {
        let key = utf8_percent_encode(self.key, KEY);
        let base = if self.path_style {
            format!("{}/{}/{key}", self.endpoint, self.bucket)
        } else {
            match self.endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{}.{host}/{key}", self.bucket),
                None => format!("{}.{}/{key}", self.bucket, self.endpoint),
            }
        };
        let mut query = format!(
            "{}={}&Expires={}&Signature={}",
            self.access_key_param,
            utf8_percent_encode(self.access_key, UNRESERVED),
            self.expires,
            utf8_percent_encode(&self.signature(), UNRESERVED)
        );
        for (k, v) in self.overrides {
            query.push_str(&format!("&{k}={}", utf8_percent_encode(v, UNRESERVED)));
        }
        format!("{base}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link<'a>(overrides: &'a [(&'a str, String)]) -> V2Link<'a> {
        V2Link {
            endpoint: "https://obs.example.com",
            path_style: false,
            bucket: "bucket",
            key: "a/b/redis_1.2.3.4_6379_20190820211816.rdb",
            access_key: "AKIDEXAMPLE",
            secret_key: "secret",
            access_key_param: "AWSAccessKeyId",
            expires: 1_566_308_915,
            overrides,
        }
    }

    #[test]
    fn string_to_sign_and_signature() {
        let l = link(&[]);
        assert_eq!(
            l.string_to_sign(),
            "GET\n\n\n1566308915\n/bucket/a/b/redis_1.2.3.4_6379_20190820211816.rdb"
        );
        // HMAC-SHA1 is deterministic: the same inputs, the same signature.
        assert_eq!(l.signature(), link(&[]).signature());
        assert_eq!(l.signature().len(), 28, "base64 of 20 bytes");
    }

    /// The example of AWS's S3 developer guide (REST authentication, "Query
    /// string request authentication alternative"); Python's hmac agrees.
    #[test]
    fn aws_documented_example() {
        let l = V2Link {
            endpoint: "https://s3.amazonaws.com",
            path_style: false,
            bucket: "johnsmith",
            key: "photos/puppy.jpg",
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            access_key_param: "AWSAccessKeyId",
            expires: 1_175_139_620,
            overrides: &[],
        };
        assert_eq!(l.signature(), "NpgCjnDzrM+WFzoENXmpNDUsSn8=");
        assert_eq!(
            l.url(),
            "https://johnsmith.s3.amazonaws.com/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE\
             &Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
        );
    }

    #[test]
    fn overrides_are_signed_and_sent() {
        let o = [(
            "response-content-disposition",
            "attachment; filename=\"x.rdb\"".to_string(),
        )];
        let l = link(&o);
        assert!(
            l.string_to_sign()
                .ends_with("?response-content-disposition=attachment; filename=\"x.rdb\"")
        );
        assert_ne!(l.signature(), link(&[]).signature());
        assert!(
            l.url()
                .contains("&response-content-disposition=attachment%3B%20filename%3D%22x.rdb%22")
        );
    }

    #[test]
    fn obs_parameter_name_and_path_style() {
        let mut l = link(&[]);
        l.access_key_param = "AccessKeyId";
        l.path_style = true;
        let url = l.url();
        assert!(
            url.starts_with("https://obs.example.com/bucket/a/b/redis_"),
            "{url}"
        );
        assert!(
            url.contains("?AccessKeyId=AKIDEXAMPLE&Expires=1566308915&Signature="),
            "{url}"
        );
    }
}
