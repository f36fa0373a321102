//! The S3-compatible store: object_store's `AmazonS3` for every request,
//! its `MultipartStore` for uploads whose id we must keep, its SigV4 signer
//! for links, and [`sigv2`](super::sigv2) for V2 links as in the DCS ListBackupFileLinks example.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{Certificate, ClientOptions, ObjectStore, PutPayload, RetryConfig};
use tokio::task::JoinSet;

use super::ObjectError;
use super::sigv2::V2Link;
use crate::config::{LinkSigning, S3Config};

pub(super) struct S3Storage {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    endpoint: String,
    path_style: bool,
    access_key: String,
    secret_key: String,
    signing: LinkSigning,
    v2_access_key_param: String,
    part_size: usize,
}

impl S3Storage {
    pub(super) fn new(c: &S3Config, bucket: &str) -> Result<S3Storage, ObjectError> {
        let err = |m: String| ObjectError::Config(m);
        if c.endpoint.is_empty() {
            return Err(err("storage = \"s3\" needs s3.endpoint".into()));
        }
        if c.access_key.is_empty() {
            return Err(err("storage = \"s3\" needs s3.access_key".into()));
        }
        // S3 refuses parts under 5 MiB (but the last).
        if c.part_size_mib < 5 {
            return Err(err(format!(
                "s3.part_size_mib is {}; S3 needs at least 5",
                c.part_size_mib
            )));
        }
        let secret_key = c.secret().map_err(|e| err(e.to_string()))?;
        let mut options = ClientOptions::new().with_connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &c.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| err(format!("s3.ca_file {}: {e}", ca.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| err(format!("s3.ca_file {}: {e}", ca.display())))?;
            options = options.with_root_certificate(cert);
        }
        let store = AmazonS3Builder::new()
            .with_endpoint(c.endpoint.trim_end_matches('/'))
            .with_region(&c.region)
            .with_bucket_name(bucket)
            .with_access_key_id(&c.access_key)
            .with_secret_access_key(&secret_key)
            // Client options first: they replace what `with_allow_http` sets.
            .with_client_options(options)
            .with_virtual_hosted_style_request(!c.path_style)
            .with_allow_http(c.endpoint.starts_with("http://"))
            .with_unsigned_payload(c.unsigned_payload)
            // A store that is down must fail a backup in bounded time, not after
            // object_store's default three minutes of retries.
            .with_retry(RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(c.retry_timeout_secs),
                ..RetryConfig::default()
            })
            .build()?;
        let mut prefix = c.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Ok(S3Storage {
            store: Arc::new(store),
            bucket: bucket.to_string(),
            prefix,
            endpoint: c.endpoint.trim_end_matches('/').to_string(),
            path_style: c.path_style,
            access_key: c.access_key.clone(),
            secret_key,
            signing: c.link_signing,
            v2_access_key_param: c.v2_access_key_param.clone(),
            part_size: c.part_size_mib * 1024 * 1024,
        })
    }

    pub(super) fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) async fn start_upload(
        &self,
        path: ObjectPath,
        in_flight: usize,
    ) -> Result<S3Upload, ObjectError> {
        let id = self.store.create_multipart(&path).await?;
        Ok(S3Upload {
            store: self.store.clone(),
            path,
            id,
            parts: Vec::new(),
            buf: Vec::with_capacity(self.part_size),
            part_size: self.part_size,
            tasks: JoinSet::new(),
            max_in_flight: in_flight,
            next_idx: 0,
        })
    }

    pub(super) async fn abort(&self, path: &ObjectPath, id: &str) -> Result<(), ObjectError> {
        match self.store.abort_multipart(path, &id.to_string()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn presign_get(
        &self,
        path: &ObjectPath,
        file_name: &str,
        expires_in: Duration,
    ) -> Result<String, ObjectError> {
        // So a browser saves the file under its own name, not the key's.
        let disposition = format!("attachment; filename=\"{file_name}\"");
        match self.signing {
            LinkSigning::V4 => {
                let options = SignedUrlOptions::default()
                    .with_query([("response-content-disposition", disposition.as_str())]);
                let url = self
                    .store
                    .signed_url_opts(reqwest::Method::GET, path, expires_in, &options)
                    .await?;
                Ok(url.to_string())
            }
            LinkSigning::V2 => {
                let expires = chrono::Utc::now().timestamp()
                    + i64::try_from(expires_in.as_secs()).unwrap_or(i64::MAX);
                let overrides = [("response-content-disposition", disposition)];
                Ok(V2Link {
                    endpoint: &self.endpoint,
                    path_style: self.path_style,
                    bucket: &self.bucket,
                    key: path.as_ref(),
                    access_key: &self.access_key,
                    secret_key: &self.secret_key,
                    access_key_param: &self.v2_access_key_param,
                    expires,
                    overrides: &overrides,
                }
                .url())
            }
        }
    }
}

/// A multipart upload with at most `max_in_flight` parts being sent while
/// the next one fills: memory is bounded by `(max_in_flight + 1) × part_size`.
pub(super) struct S3Upload {
    store: Arc<AmazonS3>,
    path: ObjectPath,
    id: String,
    parts: Vec<(usize, PartId)>,
    buf: Vec<u8>,
    part_size: usize,
    tasks: JoinSet<(usize, object_store::Result<PartId>)>,
    max_in_flight: usize,
    next_idx: usize,
}

impl S3Upload {
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    pub(super) async fn write(&mut self, mut data: &[u8]) -> Result<(), ObjectError> {
        while !data.is_empty() {
            let take = (self.part_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.part_size {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<(), ObjectError> {
        while self.tasks.len() >= self.max_in_flight {
            self.collect_one().await?;
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.part_size));
        let (store, path, id, idx) = (
            self.store.clone(),
            self.path.clone(),
            self.id.clone(),
            self.next_idx,
        );
        self.next_idx += 1;
        self.tasks.spawn(async move {
            let payload = PutPayload::from(data);
            (idx, store.put_part(&path, &id, idx, payload).await)
        });
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), ObjectError> {
        if let Some(joined) = self.tasks.join_next().await {
            let (idx, result) = joined.map_err(|e| ObjectError::Io(std::io::Error::other(e)))?;
            self.parts.push((idx, result?));
        }
        Ok(())
    }

    pub(super) async fn complete(mut self) -> Result<(), ObjectError> {
        // The last part may be short; an empty file still needs one part.
        if !self.buf.is_empty() || self.next_idx == 0 {
            self.send_part().await?;
        }
        while !self.tasks.is_empty() {
            self.collect_one().await?;
        }
        self.parts.sort_by_key(|(idx, _)| *idx);
        let parts = std::mem::take(&mut self.parts)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        self.store
            .complete_multipart(&self.path, &self.id, parts)
            .await?;
        Ok(())
    }

    pub(super) async fn abort(mut self) -> Result<(), ObjectError> {
        self.tasks.abort_all();
        match self.store.abort_multipart(&self.path, &self.id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
