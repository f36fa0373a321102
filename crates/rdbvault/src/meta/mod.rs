//! Metadata: instances, backups, jobs and link keys, in SQLite (embedded
//! default) or PostgreSQL (several nodes).
//!
//! Both backends go through sqlx's `Any` driver with one portable schema
//! (`migrations/`), so every query is written once; SQLite accepts the `$N`
//! placeholders PostgreSQL needs.

mod backups;
pub mod health;
mod instances;
mod jobs;
mod link_keys;
mod nodes;
mod ownership;
mod policies;
mod restores;
mod sealing;
mod uploads;

pub use backups::{Backup, BackupFile, BackupStatus, NewBackup, ProgressReport};
pub use instances::{Instance, InstanceFilter, Mode, NewInstance, Secret};
pub use jobs::{Job, JobKind, JobState};
pub use link_keys::LinkKey;
pub use nodes::Peer;
pub use policies::StoredPolicy;
pub use restores::{
    KeyCounts, NewRestore, Restore, RestoreMethod, RestoreMode, RestoreProgress, RestoreStatus,
};
pub use uploads::PendingUpload;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::master_key::KeyError;
pub use crate::master_key::Keyring;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a record with the same unique key exists")]
    Conflict,
    #[error("the record is still referenced: {0}")]
    InUse(String),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    #[error(transparent)]
    MasterKey(#[from] KeyError),
    /// A backup or restore that the state of its instance or backup forbids.
    #[error("{0}")]
    Refused(Refusal),
}

/// Why a backup, a restore or a deletion was not allowed to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the instance is being backed up")]
    BackingUp,
    #[error("the instance is being restored")]
    Restoring,
    #[error("the backup has not succeeded (or is no longer available)")]
    BackupNotSucceeded,
    #[error("a restore is reading the backup")]
    BackupInRestore,
    #[error("the automatic backup of that date exists already")]
    AlreadyDue,
}

/// Why `Meta::open` failed: the key or the database.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

pub type Result<T> = std::result::Result<T, MetaError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The handle every part shares; cheap to clone.
#[derive(Clone)]
pub struct Meta {
    pool: AnyPool,
    backend: Backend,
    /// Seals and opens the secrets the tables hold.
    keys: Keyring,
}

impl Meta {
    /// Connects, brings the schema up to date and checks that `keys` holds
    /// the master key the stored secrets are sealed with (sealing those a
    /// release before sealing left in plaintext).
    pub async fn connect(url: &str, keys: Keyring) -> Result<Meta> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(MetaError::Corrupt(
                "database_url must start with sqlite:// or postgres://".into(),
            ));
        };
        if backend == Backend::Sqlite {
            create_sqlite_dir(url)?;
        }
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; a few connections serve concurrent readers.
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            // A ping before every acquire doubles the round trips of every
            // query (for SQLite, two thread hand-offs); a dead connection
            // shows up as a query error anyway, and the pool replaces it.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during a write; busy_timeout turns
                        // writer contention into a short wait instead of an error.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        // Overwrites what an UPDATE or DELETE frees, so a
                        // secret replaced by its sealed form leaves no copy
                        // in the file's free pages.
                        conn.execute("PRAGMA secure_delete = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let meta = Meta {
            pool,
            backend,
            keys,
        };
        meta.adopt_master_key().await
    }

    /// The node's metadata store as its configuration names it, opened with
    /// its master key (an interrupted key rotation is settled on the way).
    pub async fn open(config: &crate::config::Config) -> std::result::Result<Meta, OpenError> {
        let keys = Keyring::load(config)?;
        let meta = Meta::connect(&config.database_url(), keys).await?;
        meta.keys.settle()?;
        Ok(meta)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn create_sqlite_dir(url: &str) -> Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| MetaError::Corrupt(format!("creating {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Unique-key violations of both backends, told apart from real failures.
fn map_unique(e: sqlx::Error) -> MetaError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => MetaError::Conflict,
        _ => MetaError::Db(e),
    }
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}
