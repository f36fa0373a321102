//! Object storage for backup files, on the `object_store` crate so the rest
//! of the code does not know which backend is configured.
//!
//! Writes are streaming uploads: nothing is visible under the final key until
//! [`Upload::commit`], which the caller reaches only after the RDB checks pass.
//! On the local filesystem the upload is a staging file renamed into place
//! (and fsynced); an aborted or dropped upload removes it.

pub mod links;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

/// Parts of a streamed upload kept in flight: bounds memory to about
/// `PARTS_IN_FLIGHT × PART_SIZE` whatever the size of the file.
const PARTS_IN_FLIGHT: usize = 2;
const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("object store: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid object key {0:?}")]
    BadKey(String),
}

#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// Root directory of the local backend: staging files of interrupted
    /// uploads live beside their final names and are swept from here.
    local_root: Option<PathBuf>,
    bucket: String,
}

impl Objects {
    /// The local filesystem store under `root` (created if missing).
    pub fn local(root: PathBuf, bucket: String) -> Result<Objects, ObjectError> {
        std::fs::create_dir_all(&root)?;
        let store = LocalFileSystem::new_with_prefix(&root)?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Objects {
            store: Arc::new(store),
            local_root: Some(root),
            bucket,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The file behind `key` on the local backend (`None` elsewhere). The
    /// key comes from the metadata store, never from a URL.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        let root = self.local_root.as_ref()?;
        let path = Self::path(key).ok()?;
        Some(root.join(path.as_ref()))
    }

    fn path(key: &str) -> Result<ObjectPath, ObjectError> {
        ObjectPath::parse(key).map_err(|_| ObjectError::BadKey(key.to_string()))
    }

    /// Starts a streamed upload to `key`; nothing is visible until `commit`.
    pub async fn upload(&self, key: &str) -> Result<Upload, ObjectError> {
        let upload = self.store.put_multipart(&Self::path(key)?).await?;
        Ok(Upload {
            writer: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            bytes: 0,
        })
    }

    pub async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        match self.store.head(&Self::path(key)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams an object's bytes.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<impl futures::Stream<Item = Result<Bytes, ObjectError>> + use<>, ObjectError> {
        let result = self.store.get(&Self::path(key)?).await?;
        Ok(result.into_stream().map_err(ObjectError::from))
    }

    /// Removes every object under `prefix` (`a/b/` removes `a/b/*`), and on
    /// the local backend any staging file an interrupted upload left there.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, ObjectError> {
        let path = Self::path(prefix.trim_end_matches('/'))?;
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
        if let Some(root) = &self.local_root {
            let dir = root.join(path.as_ref());
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(count)
    }

    /// Keys under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let path = Self::path(prefix.trim_end_matches('/'))?;
        let mut keys: Vec<String> = self
            .store
            .list(Some(&path))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await?;
        keys.sort();
        Ok(keys)
    }
}

/// A streamed upload in progress. Dropping it without `commit` aborts it.
pub struct Upload {
    writer: Option<WriteMultipart>,
    bytes: u64,
}

impl Upload {
    /// Queues `data`, waiting while too many parts are in flight (backpressure
    /// towards the Redis socket instead of buffering).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ObjectError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(ObjectError::Io(std::io::Error::other(
                "upload already finished",
            )));
        };
        writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        writer.write(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Makes the object visible under its key.
    pub async fn commit(mut self) -> Result<(), ObjectError> {
        match self.writer.take() {
            Some(w) => {
                w.finish().await?;
                Ok(())
            }
            None => Err(ObjectError::Io(std::io::Error::other(
                "upload already finished",
            ))),
        }
    }

    /// Discards everything written.
    pub async fn abort(mut self) {
        if let Some(w) = self.writer.take()
            && let Err(e) = w.abort().await
        {
            tracing::warn!(error = %e, "aborting an upload failed; the sweep at start removes leftovers");
        }
    }
}
