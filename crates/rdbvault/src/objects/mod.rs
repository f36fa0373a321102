//! Object storage for backup files: the local filesystem or any
//! S3-compatible store (OBS, MinIO, Ceph, AWS), both on the `object_store`
//! crate, so the rest of the code does not know which one is configured.
//!
//! Writes are streaming uploads: nothing is visible under the final key until
//! [`Upload::commit`], which the caller reaches only after the RDB checks pass.
//! Locally the upload is a staging file renamed into place (and fsynced); on
//! S3 it is a multipart upload with a bounded number of parts in flight,
//! completed on commit and aborted otherwise. An S3 upload has an id the
//! caller records, so an upload abandoned by a crash or by an unreachable
//! store can be aborted later (by the sweep in `jobs`).
//!
//! Download links: S3 presigns them (`Objects::presigned_get`, SigV4 or
//! V2 as in the DCS ListBackupFileLinks example, [`sigv2`]); the local store's are signed and verified by
//! rdbvault itself ([`link_signing`]).

pub mod link_signing;
mod s3;
pub mod sigv2;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::config::{Config, StorageKind};

/// Parts of a streamed upload kept in flight: bounds memory to about
/// `(PARTS_IN_FLIGHT + 1) × part size` whatever the size of the file.
const PARTS_IN_FLIGHT: usize = 2;
/// Local parts are only write batches, no minimum applies.
const LOCAL_PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("object store: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid object key {0:?}")]
    BadKey(String),
    #[error("object store configuration: {0}")]
    Config(String),
}

/// Bytes read from a local file at once.
const READ_BUFFER: usize = 1 << 20;

#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    storage: Storage,
    bucket: String,
}

/// Which store holds the objects, with what only that one needs.
#[derive(Clone)]
enum Storage {
    /// Staging files of interrupted uploads live beside their final names
    /// under `root` and are swept from there.
    Local {
        root: PathBuf,
    },
    S3(Arc<s3::S3Storage>),
}

impl Objects {
    /// The store the configuration names, checked: an S3 bucket must accept
    /// a write, a read and a delete of a probe object, or `serve` refuses to start.
    pub async fn from_config(config: &Config) -> Result<Objects, ObjectError> {
        let objects = match config.storage {
            StorageKind::Local => {
                Objects::local(config.data_dir.join("objects"), config.bucket.clone())?
            }
            StorageKind::S3 => {
                let s3 = Arc::new(s3::S3Storage::new(&config.s3, &config.bucket)?);
                let store: Arc<dyn ObjectStore> = s3.store();
                Objects {
                    store,
                    storage: Storage::S3(s3),
                    bucket: config.bucket.clone(),
                }
            }
        };
        objects.probe().await?;
        Ok(objects)
    }

    /// The local filesystem store under `root` (created if missing).
    fn local(root: PathBuf, bucket: String) -> Result<Objects, ObjectError> {
        std::fs::create_dir_all(&root)?;
        let store = LocalFileSystem::new_with_prefix(&root)?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Objects {
            store: Arc::new(store),
            storage: Storage::Local { root },
            bucket,
        })
    }

    async fn probe(&self) -> Result<(), ObjectError> {
        let key = format!(".rdbvault-probe-{}", uuid::Uuid::new_v4().simple());
        let path = self.path(&key)?;
        let what = |step: &str, e: object_store::Error| {
            ObjectError::Config(format!(
                "bucket {:?}: could not {step} a probe object: {e}",
                self.bucket
            ))
        };
        self.store
            .put(&path, Bytes::from_static(b"probe").into())
            .await
            .map_err(|e| what("write", e))?;
        let back = self
            .store
            .get(&path)
            .await
            .map_err(|e| what("read", e))?
            .bytes()
            .await
            .map_err(|e| what("read", e))?;
        if back.as_ref() != b"probe" {
            return Err(ObjectError::Config(format!(
                "bucket {:?}: the probe object read back wrong",
                self.bucket
            )));
        }
        self.store
            .delete(&path)
            .await
            .map_err(|e| what("delete", e))?;
        Ok(())
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Where `key` lives in the bucket (S3 adds the configured prefix).
    pub(crate) fn bucket_key(&self, key: &str) -> String {
        match &self.storage {
            Storage::Local { .. } => key.to_string(),
            Storage::S3(s3) => format!("{}{key}", s3.prefix()),
        }
    }

    fn path(&self, key: &str) -> Result<ObjectPath, ObjectError> {
        let full = self.bucket_key(key);
        ObjectPath::parse(&full).map_err(|_| ObjectError::BadKey(full))
    }

    /// The file behind `key` of the local store (`None` on S3). The
    /// key comes from the metadata store, never from a URL.
    pub(crate) fn local_path(&self, key: &str) -> Option<PathBuf> {
        let Storage::Local { root } = &self.storage else {
            return None;
        };
        let path = self.path(key).ok()?;
        Some(root.join(path.as_ref()))
    }

    /// Starts a streamed upload to `key`; nothing is visible until `commit`.
    pub async fn upload(&self, key: &str) -> Result<Upload, ObjectError> {
        let path = self.path(key)?;
        let inner = match &self.storage {
            Storage::Local { .. } => {
                let upload = self.store.put_multipart(&path).await?;
                Inner::Local(WriteMultipart::new_with_chunk_size(upload, LOCAL_PART_SIZE))
            }
            Storage::S3(s3) => Inner::S3(s3.start_upload(path, PARTS_IN_FLIGHT).await?),
        };
        Ok(Upload {
            inner: Some(inner),
            bytes: 0,
        })
    }

    /// Streams the object at `key` (a backup file, for a restore or its
    /// verification): never whole in memory.
    pub(crate) async fn read(
        &self,
        key: &str,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin + 'static>, ObjectError> {
        // The local store's own stream reads 8 KiB at a time, each on the
        // blocking pool; a restore reads whole files, 1 MiB at a time.
        if let Some(file) = self.local_path(key) {
            let file = tokio::fs::File::open(file).await?;
            return Ok(Box::new(tokio::io::BufReader::with_capacity(
                READ_BUFFER,
                file,
            )));
        }
        let path = self.path(key)?;
        let stream = self
            .store
            .get(&path)
            .await?
            .into_stream()
            .map_err(std::io::Error::other);
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    /// Aborts an S3 multipart upload left behind (no-op locally, where an
    /// interrupted upload is a staging file that `delete_prefix` removes).
    pub(crate) async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        match &self.storage {
            Storage::Local { .. } => Ok(()),
            Storage::S3(s3) => s3.abort(&self.path(key)?, upload_id).await,
        }
    }

    /// A link the store itself verifies (S3), or `None` for the local store
    /// (whose links rdbvault signs and serves: see [`link_signing`]).
    pub(crate) async fn presigned_get(
        &self,
        key: &str,
        file_name: &str,
        expires_in: Duration,
    ) -> Result<Option<String>, ObjectError> {
        match &self.storage {
            Storage::Local { .. } => Ok(None),
            Storage::S3(s3) => Ok(Some(
                s3.presign_get(&self.path(key)?, file_name, expires_in)
                    .await?,
            )),
        }
    }

    /// Every object of the store (under the configured prefix on S3), by
    /// key, with its size.
    pub(crate) async fn list_all(&self) -> Result<Vec<(String, u64)>, ObjectError> {
        let prefix = match &self.storage {
            Storage::Local { .. } => String::new(),
            Storage::S3(s3) => s3.prefix().to_string(),
        };
        let root = (!prefix.is_empty())
            .then(|| ObjectPath::parse(prefix.trim_end_matches('/')))
            .transpose()
            .map_err(|_| ObjectError::BadKey(prefix.clone()))?;
        let listed: Vec<object_store::ObjectMeta> =
            self.store.list(root.as_ref()).try_collect().await?;
        Ok(listed
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref();
                let key = full
                    .strip_prefix(prefix.as_str())
                    .unwrap_or(full)
                    .to_string();
                (key, m.size)
            })
            .collect())
    }

    /// Removes the object at `key`.
    pub(crate) async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        self.store.delete(&self.path(key)?).await?;
        Ok(())
    }

    /// Removes every object under `prefix` (`a/b/` removes `a/b/*`), and on
    /// the local store any staging file an interrupted upload left there.
    pub(crate) async fn delete_prefix(&self, prefix: &str) -> Result<usize, ObjectError> {
        let path = self.path(prefix.trim_end_matches('/'))?;
        let keys: Vec<ObjectPath> = self
            .store
            .list(Some(&path))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        let count = keys.len();
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Storage::Local { root } = &self.storage {
            let dir = root.join(path.as_ref());
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(count)
    }
}

/// A streamed upload in progress. Dropping it without `commit` aborts it
/// (locally at once; on S3 the recorded id lets the sweep finish the job).
pub struct Upload {
    inner: Option<Inner>,
    bytes: u64,
}

enum Inner {
    Local(WriteMultipart),
    S3(s3::S3Upload),
}

impl Upload {
    /// The store's id of this upload, to record until it is committed or
    /// aborted (S3 only).
    pub(crate) fn id(&self) -> Option<&str> {
        match &self.inner {
            Some(Inner::S3(u)) => Some(u.id()),
            _ => None,
        }
    }

    /// Queues `data`, waiting while too many parts are in flight (backpressure
    /// towards the Redis socket instead of buffering).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ObjectError> {
        match self.inner.as_mut() {
            Some(Inner::Local(writer)) => {
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(data);
            }
            Some(Inner::S3(upload)) => upload.write(data).await?,
            None => {
                return Err(ObjectError::Io(std::io::Error::other(
                    "upload already finished",
                )));
            }
        }
        self.bytes += data.len() as u64;
        Ok(())
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Makes the object visible under its key.
    pub async fn commit(mut self) -> Result<(), ObjectError> {
        match self.inner.take() {
            Some(Inner::Local(w)) => {
                w.finish().await?;
                Ok(())
            }
            Some(Inner::S3(u)) => u.complete().await,
            None => Err(ObjectError::Io(std::io::Error::other(
                "upload already finished",
            ))),
        }
    }

    /// Discards everything written. An error means the store still holds
    /// the upload (S3 unreachable, say): keep its id for the sweep.
    pub(crate) async fn abort(mut self) -> Result<(), ObjectError> {
        match self.inner.take() {
            Some(Inner::Local(w)) => w.abort().await.map_err(ObjectError::from),
            Some(Inner::S3(u)) => u.abort().await,
            None => Ok(()),
        }
    }
}
