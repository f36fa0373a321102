//! `rdbvault backup create|list|delete`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::Client;
use super::instance::encode;
use super::{ClientArgs, output, table};
use crate::api::backups::{BackupRecord, CopyInstanceResponse, ListBackupRecordsResponse};
use crate::api::links::ListBackupFileLinksResponse;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Start a backup of an instance.
    Create {
        instance_id: String,
        #[arg(long)]
        remark: Option<String>,
        /// Wait for the backup to end, with a progress bar; exit non-zero if it fails.
        #[arg(long)]
        wait: bool,
    },
    /// List the backups of an instance, newest first.
    List {
        instance_id: String,
        /// Page size (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Delete a backup's files (a running backup is cancelled).
    Delete {
        instance_id: String,
        backup_id: String,
    },
    /// Time-limited download links of a backup's files.
    Links {
        instance_id: String,
        backup_id: String,
        /// Seconds the links stay valid (300 to 86400).
        #[arg(long, default_value_t = 3600)]
        expiration: i64,
    },
    /// Download every file of a backup (in parallel, resumable) and verify it.
    Download {
        instance_id: String,
        backup_id: String,
        /// Directory to write into.
        #[arg(long, default_value = ".")]
        out: std::path::PathBuf,
    },
}

/// The links of a backup's files (valid an hour).
pub(crate) async fn fetch_links(
    client: &Client,
    instance_id: &str,
    backup_id: &str,
) -> anyhow::Result<Vec<crate::api::links::LinksItem>> {
    let raw = links(client, instance_id, backup_id, 3600).await?;
    let answer: ListBackupFileLinksResponse = serde_json::from_slice(&raw)?;
    Ok(answer.links)
}

async fn links(
    client: &Client,
    instance_id: &str,
    backup_id: &str,
    expiration: i64,
) -> anyhow::Result<Vec<u8>> {
    let path = format!(
        "{}/{}/links",
        backups_path(client, instance_id),
        encode(backup_id)
    );
    Ok(client
        .call(
            Method::POST,
            &path,
            "",
            Some(&json!({ "expiration": expiration })),
        )
        .await?)
}

fn backups_path(client: &Client, instance_id: &str) -> String {
    client.project_path(&format!("instances/{}/backups", encode(instance_id)))
}

pub async fn run(command: BackupCommand, args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let client = args.client()?;
    match command {
        BackupCommand::Create {
            instance_id,
            remark,
            wait,
        } => {
            let body = match remark {
                Some(r) => json!({ "remark": r, "backup_format": "rdb" }),
                None => json!({ "backup_format": "rdb" }),
            };
            let raw = client
                .call(
                    Method::POST,
                    &backups_path(&client, &instance_id),
                    "",
                    Some(&body),
                )
                .await?;
            let created: CopyInstanceResponse = serde_json::from_slice(&raw)?;
            if !wait {
                output(args.json, &raw, |v: CopyInstanceResponse| {
                    format!("backup {} queued", v.backup_id)
                })?;
                return Ok(ExitCode::SUCCESS);
            }
            let record = wait_for(&client, &instance_id, &created.backup_id, !args.json).await?;
            if args.json {
                println!("{}", serde_json::to_string(&record)?);
            } else if record.status == "succeed" {
                println!(
                    "backup {} succeeded: {} bytes from {}",
                    record.backup_id,
                    record.size,
                    record.source_node.as_deref().unwrap_or("?")
                );
            } else {
                eprintln!(
                    "backup {} {}: {} {}",
                    record.backup_id,
                    record.status,
                    record.error_code.as_deref().unwrap_or(""),
                    record.error_msg.as_deref().unwrap_or("")
                );
            }
            return Ok(if record.status == "succeed" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        BackupCommand::List { instance_id, limit } => {
            let raw = client
                .call(
                    Method::GET,
                    &backups_path(&client, &instance_id),
                    &format!("limit={limit}&offset=0"),
                    None,
                )
                .await?;
            output(args.json, &raw, |v: ListBackupRecordsResponse| {
                table(
                    &[
                        "BACKUP_ID",
                        "STATUS",
                        "PROGRESS",
                        "SIZE",
                        "CREATED_AT",
                        "ERROR",
                        "REMARK",
                    ],
                    v.backup_record_response
                        .into_iter()
                        .map(|b| {
                            vec![
                                b.backup_id,
                                b.status,
                                b.progress,
                                b.size.to_string(),
                                b.created_at,
                                b.error_code.unwrap_or_default(),
                                b.remark.unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        BackupCommand::Links {
            instance_id,
            backup_id,
            expiration,
        } => {
            let raw = links(&client, &instance_id, &backup_id, expiration).await?;
            output(args.json, &raw, |v: ListBackupFileLinksResponse| {
                table(
                    &["FILE_NAME", "SIZE", "LINK"],
                    v.links
                        .into_iter()
                        .map(|l| vec![l.file_name, l.size.to_string(), l.link])
                        .collect(),
                )
            })?;
        }
        BackupCommand::Download {
            instance_id,
            backup_id,
            out,
        } => {
            let links = fetch_links(&client, &instance_id, &backup_id).await?;
            let files = super::download::download_all(links, &out, !args.json).await?;
            if args.json {
                println!("{}", json!({ "files": files }));
            } else {
                for f in files {
                    println!("verified {}", f.display());
                }
            }
        }
        BackupCommand::Delete {
            instance_id,
            backup_id,
        } => {
            let path = format!(
                "{}/{}",
                backups_path(&client, &instance_id),
                encode(&backup_id)
            );
            client.call(Method::DELETE, &path, "", None).await?;
            if args.json {
                println!("{}", json!({ "backup_id": backup_id, "deleted": true }));
            } else {
                println!("deleted {backup_id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls the backup's record until it leaves waiting/backuping.
async fn wait_for(
    client: &Client,
    instance_id: &str,
    backup_id: &str,
    bar: bool,
) -> anyhow::Result<BackupRecord> {
    let progress = indicatif::ProgressBar::new(10_000);
    if bar {
        progress.set_style(indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}",
        )?);
    } else {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    loop {
        let record = find_record(client, instance_id, backup_id).await?;
        let pct: f64 = record.progress.parse().unwrap_or(0.0);
        progress.set_position((pct * 100.0) as u64);
        progress.set_message(record.status.clone());
        if !matches!(record.status.as_str(), "waiting" | "backuping") {
            progress.finish_and_clear();
            return Ok(record);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn find_record(
    client: &Client,
    instance_id: &str,
    backup_id: &str,
) -> anyhow::Result<BackupRecord> {
    let mut offset = 0;
    loop {
        let page: ListBackupRecordsResponse = client
            .call_json(
                Method::GET,
                &backups_path(client, instance_id),
                &format!("limit=1000&offset={offset}"),
                None,
            )
            .await?;
        let n = page.backup_record_response.len();
        if let Some(r) = page
            .backup_record_response
            .into_iter()
            .find(|r| r.backup_id == backup_id)
        {
            return Ok(r);
        }
        offset += n;
        if n == 0 || offset >= page.total_num {
            anyhow::bail!("backup {backup_id} is not listed for instance {instance_id}");
        }
    }
}
