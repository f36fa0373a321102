//! `rdbvault store`: the object store as this node's configuration sees it,
//! without a running service — for the operator's explicit acts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::table;
use crate::config::Config;
use crate::jobs::orphans;
use crate::meta::Meta;
use crate::objects::Objects;

#[derive(Subcommand)]
pub(crate) enum StoreCommand {
    /// List the objects no backup record owns (what a crash between storing
    /// and recording, or a copy by hand, left); with --delete, remove them.
    Sweep {
        /// The node's TOML configuration (as for `serve`); RDBVAULT_<KEY> too.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Delete them (objects that became owned meanwhile are kept).
        #[arg(long)]
        delete: bool,
    },
}

pub(crate) async fn run(command: StoreCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Sweep { config, delete } => sweep(config, delete, json).await,
    }
}

async fn sweep(file: Option<PathBuf>, delete: bool, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(file.as_deref())?;
    let meta = Meta::open(&config).await?;
    let objects = Objects::from_config(&config).await?;
    let found = orphans::find(&meta, &objects).await?;
    let deleted = match delete {
        true => Some(orphans::delete(&meta, &objects, &found).await?),
        false => None,
    };
    meta.close().await;
    if json {
        let objects: Vec<_> = found
            .objects
            .iter()
            .map(|(key, size)| serde_json::json!({"key": key, "size": size}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"orphans": objects, "bytes": found.bytes(),
                "pending_uploads": found.pending_uploads, "deleted": deleted})
        );
        return Ok(ExitCode::SUCCESS);
    }
    if found.objects.is_empty() {
        println!("no orphaned objects in the store");
    } else {
        let rows = found
            .objects
            .iter()
            .map(|(key, size)| vec![key.clone(), size.to_string()])
            .collect();
        println!("{}", table(&["KEY", "SIZE"], rows));
        println!(
            "{} orphaned object(s), {} bytes",
            found.objects.len(),
            found.bytes()
        );
    }
    if found.pending_uploads > 0 {
        println!(
            "{} multipart upload(s) recorded as pending (the service's upload sweep aborts them)",
            found.pending_uploads
        );
    }
    match deleted {
        Some(n) => println!("deleted {n} object(s)"),
        None if !found.objects.is_empty() => println!("run again with --delete to remove them"),
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}
