//! `rdbvault keys rotate`: a new master key for the secrets the metadata
//! store keeps, run by the operator with every node stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Config;
use crate::jobs::Lease;
use crate::master_key::Rotation;
use crate::meta::Meta;

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate a new master key and re-seal every stored secret (Redis
    /// passwords, link keys) with it, in one transaction. Stop every node
    /// first; then give each the new key file.
    Rotate {
        /// The node's TOML configuration (as for `serve`); RDBVAULT_<KEY> too.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where to write the new key; needed when the current key is given
        /// as a value (RDBVAULT_MASTER_KEY). Default: the master key file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Rotate even though nodes reported themselves alive recently.
        #[arg(long)]
        force: bool,
    },
}

pub(crate) async fn run(command: KeysCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Rotate { config, out, force } => rotate(config, out, force, json).await,
    }
}

async fn rotate(
    file: Option<PathBuf>,
    out: Option<PathBuf>,
    force: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(file.as_deref())?;
    let meta = Meta::open(&config).await?;
    // A running node keeps sealing with the old key: it would write values
    // nobody can open after the rotation.
    let alive = meta
        .live_peers("", Lease::from_config(&config).expired_before())
        .await?;
    if !alive.is_empty() && !force {
        let ids: Vec<&str> = alive.iter().map(|p| p.id.as_str()).collect();
        anyhow::bail!(
            "nodes still running on this metadata store ({}): stop every node first, or pass --force",
            ids.join(", ")
        );
    }
    let old = meta.keys().id().to_string();
    let rotation = Rotation::prepare(&config, out.as_deref())?;
    let (resealed, count) = match meta.reseal(&rotation.next).await {
        Ok(done) => done,
        Err(e) => {
            // Nothing was re-sealed: the new key must not be left to be
            // mistaken for the one in use.
            let _ = std::fs::remove_file(&rotation.written_to);
            return Err(e).context("re-sealing the secrets (nothing changed)");
        }
    };
    let new = resealed.keys().id().to_string();
    let written_to = rotation.written_to.clone();
    let key_file = rotation.commit()?.unwrap_or(written_to);
    meta.close().await;
    if json {
        println!(
            "{}",
            serde_json::json!({"old_key_id": old, "new_key_id": new, "resealed": count,
                "key_file": key_file})
        );
    } else {
        println!("master key rotated: {old} -> {new}, {count} secret(s) re-sealed");
        println!("new key in {}", key_file.display());
        if config.master_key.as_deref().is_some_and(|v| !v.is_empty()) {
            println!(
                "set RDBVAULT_MASTER_KEY to its content on every node (or unset it and point master_key_file there)"
            );
        } else {
            println!(
                "give every node this key file before starting it; the old key opens nothing now"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
