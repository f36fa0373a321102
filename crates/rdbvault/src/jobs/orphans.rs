//! Objects in the store that no record owns: what a crash between storing
//! and recording, a manual copy, or a bug left behind. They are found and
//! reported by every node (the log, `/metrics`); deleting them is an
//! operator's explicit act (`rdbvault store sweep --delete`), never
//! automatic — a wrong ownership rule must not cost anyone a backup.

use crate::meta::{Meta, MetaError};
use crate::objects::{ObjectError, Objects};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
}

/// What a sweep found.
#[derive(Debug, Default, Clone)]
pub struct Orphans {
    /// Keys and sizes of the objects no record owns.
    pub objects: Vec<(String, u64)>,
    /// Multipart uploads recorded and neither completed nor aborted yet
    /// (the upload sweep aborts them once their backup is over).
    pub pending_uploads: i64,
}

impl Orphans {
    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|(_, size)| size).sum()
    }
}

/// Lists the store and the records; what the store holds that no record owns.
pub async fn find(meta: &Meta, objects: &Objects) -> Result<Orphans, SweepError> {
    // The store is listed first: an object stored after the listing is not
    // looked at, one recorded after it is owned when the records are read.
    let listed = objects.list_all().await?;
    let owned = meta.owned_objects().await?;
    Ok(Orphans {
        objects: listed
            .into_iter()
            .filter(|(key, _)| !owned.owns(key))
            .collect(),
        pending_uploads: meta.pending_upload_count().await?,
    })
}

/// Deletes `found`'s objects that are still unowned now; how many went.
pub async fn delete(meta: &Meta, objects: &Objects, found: &Orphans) -> Result<usize, SweepError> {
    let owned = meta.owned_objects().await?;
    let mut deleted = 0;
    for (key, _) in &found.objects {
        if owned.owns(key) {
            continue;
        }
        objects.delete(key).await?;
        tracing::warn!(key = %key, "orphaned object deleted");
        deleted += 1;
    }
    Ok(deleted)
}
