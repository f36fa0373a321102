//! `rdbvault backup create|list|show|delete|links|download`.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::json;

use super::client::Client;
use super::follow::{self, JobRecord};
use super::instance::encode;
use super::{ClientArgs, ERROR_COLUMN_CHARS, output, table, truncate};
use crate::api::backups::{BackupRecord, CopyInstanceResponse, ListBackupRecordsResponse};
use crate::api::links::{LinksItem, ListBackupFileLinksResponse};

/// What a backup's files hold.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Rdb,
    Aof,
}

#[derive(Subcommand)]
pub(crate) enum BackupCommand {
    /// Start a backup of an instance.
    Create {
        instance_id: String,
        #[arg(long)]
        remark: Option<String>,
        /// `rdb` (the snapshot as the node sends it) or `aof` (the commands
        /// that rebuild it, as RESP).
        #[arg(long, value_enum, default_value = "rdb")]
        format: Format,
        /// Wait for the backup to end, with a progress bar; exit non-zero if it fails.
        #[arg(long)]
        wait: bool,
    },
    /// Show one backup: status, stage, progress, size, source, error.
    Show {
        instance_id: String,
        backup_id: String,
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
) -> anyhow::Result<Vec<LinksItem>> {
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

pub(crate) async fn run(command: BackupCommand, args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let client = args.client()?;
    match command {
        BackupCommand::Create {
            instance_id,
            remark,
            format,
            wait,
        } => create(&client, args.json, &instance_id, remark, format, wait).await,
        BackupCommand::Show {
            instance_id,
            backup_id,
            wait,
        } => show(&client, args.json, &instance_id, &backup_id, wait).await,
        BackupCommand::List { instance_id, limit } => {
            list(&client, args.json, &instance_id, limit).await
        }
        BackupCommand::Links {
            instance_id,
            backup_id,
            expiration,
        } => print_links(&client, args.json, &instance_id, &backup_id, expiration).await,
        BackupCommand::Download {
            instance_id,
            backup_id,
            out,
        } => download(&client, args.json, &instance_id, &backup_id, &out).await,
        BackupCommand::Delete {
            instance_id,
            backup_id,
        } => delete(&client, args.json, &instance_id, &backup_id).await,
    }
}

/// `backup create`: queues a backup; with `wait`, follows it to its end.
async fn create(
    client: &Client,
    json: bool,
    instance_id: &str,
    remark: Option<String>,
    format: Format,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let format = match format {
        Format::Rdb => "rdb",
        Format::Aof => "aof",
    };
    let body = match remark {
        Some(r) => json!({ "remark": r, "backup_format": format }),
        None => json!({ "backup_format": format }),
    };
    let raw = client
        .call(
            Method::POST,
            &backups_path(client, instance_id),
            "",
            Some(&body),
        )
        .await?;
    let created: CopyInstanceResponse = serde_json::from_slice(&raw)?;
    if !wait {
        output(json, &raw, |v: CopyInstanceResponse| {
            format!(
                "backup {id} queued; follow it with: rdbvault backup show {instance} {id} --wait",
                id = v.backup_id,
                instance = instance_id,
            )
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let record = wait_for(client, instance_id, &created.backup_id, !json).await?;
    if json {
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
            "backup {} {}: {}",
            record.backup_id,
            record.status,
            record.error_text()
        );
    }
    Ok(record.exit_code())
}

/// `backup show`: one backup's record; with `wait`, once it has ended.
async fn show(
    client: &Client,
    json: bool,
    instance_id: &str,
    backup_id: &str,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let record = if wait {
        wait_for(client, instance_id, backup_id, !json).await?
    } else {
        find_record(client, instance_id, backup_id).await?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        println!("{}", record_table(&record));
    }
    Ok(if wait {
        record.exit_code()
    } else {
        ExitCode::SUCCESS
    })
}

/// `backup list`: one page of an instance's backups.
async fn list(
    client: &Client,
    json: bool,
    instance_id: &str,
    limit: u32,
) -> anyhow::Result<ExitCode> {
    let raw = client
        .call(
            Method::GET,
            &backups_path(client, instance_id),
            &format!("limit={limit}&offset=0"),
            None,
        )
        .await?;
    output(json, &raw, |v: ListBackupRecordsResponse| {
        table(
            &[
                "BACKUP_ID",
                "STATUS",
                "PROGRESS",
                "SIZE",
                "CREATED_AT",
                "REMARK",
                "ERROR",
            ],
            v.backup_record_response
                .into_iter()
                .map(|b| {
                    let error = truncate(&b.error_text(), ERROR_COLUMN_CHARS);
                    vec![
                        b.backup_id,
                        b.status,
                        b.progress,
                        b.size.to_string(),
                        b.created_at,
                        b.remark.unwrap_or_default(),
                        error,
                    ]
                })
                .collect(),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `backup links`: the download links, valid for `expiration` seconds.
async fn print_links(
    client: &Client,
    json: bool,
    instance_id: &str,
    backup_id: &str,
    expiration: i64,
) -> anyhow::Result<ExitCode> {
    let raw = links(client, instance_id, backup_id, expiration).await?;
    output(json, &raw, |v: ListBackupFileLinksResponse| {
        table(
            &["FILE_NAME", "SIZE", "LINK"],
            v.links
                .into_iter()
                .map(|l| vec![l.file_name, l.size.to_string(), l.link])
                .collect(),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `backup download`: every file into `out`, verified.
async fn download(
    client: &Client,
    json: bool,
    instance_id: &str,
    backup_id: &str,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let links = fetch_links(client, instance_id, backup_id).await?;
    let files = super::download::download_all(client.http(), links, out, !json).await?;
    if json {
        println!("{}", json!({ "files": files }));
    } else {
        for f in files {
            println!("verified {}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `backup delete`.
async fn delete(
    client: &Client,
    json: bool,
    instance_id: &str,
    backup_id: &str,
) -> anyhow::Result<ExitCode> {
    let path = format!(
        "{}/{}",
        backups_path(client, instance_id),
        encode(backup_id)
    );
    client.call(Method::DELETE, &path, "", None).await?;
    if json {
        println!("{}", json!({ "backup_id": backup_id, "deleted": true }));
    } else {
        println!("deleted {backup_id}");
    }
    Ok(ExitCode::SUCCESS)
}

fn record_table(r: &BackupRecord) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    table(
        &["FIELD", "VALUE"],
        [
            ("backup_id", r.backup_id.clone()),
            ("instance_id", r.instance_id.clone()),
            ("status", r.status.clone()),
            ("stage", opt(&r.stage)),
            ("progress", r.progress.clone()),
            ("size", r.size.to_string()),
            ("source_node", opt(&r.source_node)),
            ("backup_format", r.backup_format.clone()),
            ("created_at", r.created_at.clone()),
            ("updated_at", r.updated_at.clone()),
            ("remark", opt(&r.remark)),
            ("error", r.error_text()),
        ]
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect(),
    )
}

/// Polls the backup's record until it leaves waiting/backuping.
async fn wait_for(
    client: &Client,
    instance_id: &str,
    backup_id: &str,
    bar: bool,
) -> anyhow::Result<BackupRecord> {
    follow::until_ended(bar, || find_record(client, instance_id, backup_id)).await
}

async fn find_record(
    client: &Client,
    instance_id: &str,
    backup_id: &str,
) -> anyhow::Result<BackupRecord> {
    follow::find_listed(
        client,
        &backups_path(client, instance_id),
        |page: ListBackupRecordsResponse| (page.total_num, page.backup_record_response),
        |r| r.backup_id == backup_id,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("backup {backup_id} is not listed for instance {instance_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_joins_code_and_message() {
        let mut record: BackupRecord = serde_json::from_value(json!({
            "backup_id": "b", "period": "", "backup_name": "", "instance_id": "i",
            "size": 0, "backup_type": "manual", "created_at": "", "updated_at": "",
            "progress": "0.00", "error_code": null, "error_msg": null, "remark": null,
            "status": "succeed", "is_support_restore": "TRUE", "backup_format": "rdb",
            "execution_at": "", "source_node": null, "stage": null,
        }))
        .expect("a record");
        assert_eq!(record.error_text(), "");
        record.error_code = Some("dcs.08.0101".into());
        assert_eq!(record.error_text(), "dcs.08.0101");
        record.error_msg = Some("no node answered".into());
        assert_eq!(record.error_text(), "dcs.08.0101: no node answered");
    }
}
