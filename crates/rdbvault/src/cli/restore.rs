//! `rdbvault restore create|list|show`.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::json;

use super::client::Client;
use super::follow::{self, JobRecord};
use super::instance::encode;
use super::{ClientArgs, ERROR_COLUMN_CHARS, output, table, truncate};
use crate::api::restores::{ListRestoreRecordsResponse, RestoreInstanceResponse, RestoreRecord};
use crate::meta::{RestoreMethod, RestoreMode};

#[derive(Subcommand)]
pub(crate) enum RestoreCommand {
    /// Restore a backup of an instance (into it, or into --target).
    Create {
        /// The instance the backup belongs to.
        instance_id: String,
        /// A succeeded backup of that instance.
        backup_id: String,
        /// Restore into this registered instance instead.
        #[arg(long)]
        target: Option<String>,
        /// What happens to the target's data (default replace).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// How the keys are written (default auto).
        #[arg(long, value_enum)]
        method: Option<MethodArg>,
        /// Fail on a value that cannot be written instead of skipping and counting it.
        #[arg(long)]
        strict: bool,
        /// Description, at most 128 characters.
        #[arg(long)]
        remark: Option<String>,
        /// Wait for the restore to end, with a progress bar; exit non-zero if it fails.
        #[arg(long)]
        wait: bool,
    },
    /// List the restores of an instance (of its backups and into it), newest first.
    List {
        instance_id: String,
        /// Page size (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one restore: status, stage, progress, method, keys, error.
    Show {
        instance_id: String,
        restore_id: String,
        /// Wait for the restore to end, with a progress bar; exit non-zero if it fails.
        #[arg(long)]
        wait: bool,
    },
}

/// `--mode`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ModeArg {
    /// The target is flushed first.
    Replace,
    /// Keys are added; existing keys of the same name are overwritten.
    Merge,
}

impl From<ModeArg> for RestoreMode {
    fn from(m: ModeArg) -> RestoreMode {
        match m {
            ModeArg::Replace => RestoreMode::Replace,
            ModeArg::Merge => RestoreMode::Merge,
        }
    }
}

/// `--method`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum MethodArg {
    /// The fastest way the target allows.
    Auto,
    /// The target loads the file itself, as a replica of rdbvault.
    Replicate,
    /// Pipelined RESTORE of each key's payload.
    Restore,
    /// Each value rebuilt with native commands (targets older than the backup).
    Commands,
}

impl From<MethodArg> for RestoreMethod {
    fn from(m: MethodArg) -> RestoreMethod {
        match m {
            MethodArg::Auto => RestoreMethod::Auto,
            MethodArg::Replicate => RestoreMethod::Replicate,
            MethodArg::Restore => RestoreMethod::Restore,
            MethodArg::Commands => RestoreMethod::Commands,
        }
    }
}

/// What `restore create` asks for.
struct Request {
    backup_id: String,
    target: Option<String>,
    mode: Option<ModeArg>,
    method: Option<MethodArg>,
    strict: bool,
    remark: Option<String>,
}

impl Request {
    /// The `restore_instance` body: only what was given, so that the
    /// service's defaults apply to the rest.
    fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("backup_id".into(), json!(self.backup_id));
        if let Some(remark) = &self.remark {
            body.insert("remark".into(), json!(remark));
        }
        if let Some(target) = &self.target {
            body.insert("target_instance_id".into(), json!(target));
        }
        if let Some(mode) = self.mode {
            body.insert("mode".into(), json!(RestoreMode::from(mode).as_str()));
        }
        if let Some(method) = self.method {
            body.insert("method".into(), json!(RestoreMethod::from(method).as_str()));
        }
        if self.strict {
            body.insert("strict".into(), json!(true));
        }
        serde_json::Value::Object(body)
    }
}

fn restores_path(client: &Client, instance_id: &str) -> String {
    client.project_path(&format!("instances/{}/restores", encode(instance_id)))
}

pub(crate) async fn run(command: RestoreCommand, args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let client = args.client()?;
    match command {
        RestoreCommand::Create {
            instance_id,
            backup_id,
            target,
            mode,
            method,
            strict,
            remark,
            wait,
        } => {
            let request = Request {
                backup_id,
                target,
                mode,
                method,
                strict,
                remark,
            };
            create(&client, args.json, &instance_id, &request, wait).await
        }
        RestoreCommand::List { instance_id, limit } => {
            list(&client, args.json, &instance_id, limit).await
        }
        RestoreCommand::Show {
            instance_id,
            restore_id,
            wait,
        } => show(&client, args.json, &instance_id, &restore_id, wait).await,
    }
}

/// `restore create`: queues a restore; with `wait`, follows it to its end.
async fn create(
    client: &Client,
    json: bool,
    instance_id: &str,
    request: &Request,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let raw = client
        .call(
            Method::POST,
            &restores_path(client, instance_id),
            "",
            Some(&request.body()),
        )
        .await?;
    let created: RestoreInstanceResponse = serde_json::from_slice(&raw)?;
    if !wait {
        output(json, &raw, |v: RestoreInstanceResponse| {
            format!(
                "restore {id} queued; follow it with: rdbvault restore show {instance} {id} --wait",
                id = v.restore_id,
                instance = instance_id,
            )
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let record = wait_for(client, instance_id, &created.restore_id, !json).await?;
    if json {
        println!("{}", serde_json::to_string(&record)?);
    } else if record.status == "succeed" {
        println!(
            "restore {} succeeded into {} ({}, {})",
            record.restore_id,
            record.target_instance_id,
            record.mode.as_str(),
            record.method_used.as_deref().unwrap_or("?")
        );
        println!("{}", keys_text(&record));
    } else {
        eprintln!(
            "restore {} {}: {}",
            record.restore_id,
            record.status,
            record.error_text()
        );
        eprintln!("before it ended: {}", keys_text(&record));
    }
    Ok(record.exit_code())
}

/// `restore show`: one restore's record; with `wait`, once it has ended.
async fn show(
    client: &Client,
    json: bool,
    instance_id: &str,
    restore_id: &str,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let record = if wait {
        wait_for(client, instance_id, restore_id, !json).await?
    } else {
        find_record(client, instance_id, restore_id).await?
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

/// `restore list`: one page of an instance's restores.
async fn list(
    client: &Client,
    json: bool,
    instance_id: &str,
    limit: u32,
) -> anyhow::Result<ExitCode> {
    let raw = client
        .call(
            Method::GET,
            &restores_path(client, instance_id),
            &format!("limit={limit}&offset=0"),
            None,
        )
        .await?;
    output(json, &raw, |v: ListRestoreRecordsResponse| {
        table(
            &[
                "RESTORE_ID",
                "STATUS",
                "PROGRESS",
                "BACKUP_ID",
                "TARGET",
                "METHOD",
                "KEYS",
                "CREATED_AT",
                "ERROR",
            ],
            v.restore_record_response
                .into_iter()
                .map(|r| {
                    let error = truncate(&r.error_text(), ERROR_COLUMN_CHARS);
                    let keys = keys_cell(&r);
                    let method = method_name(&r);
                    vec![
                        r.restore_id,
                        r.status,
                        r.progress,
                        r.backup_id,
                        r.target_instance_id,
                        method,
                        keys,
                        r.created_at,
                        error,
                    ]
                })
                .collect(),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The method that ran (`method_used` without its reason), or the one
/// asked for while none has been chosen yet.
fn method_name(r: &RestoreRecord) -> String {
    match r.method_used.as_deref() {
        Some(used) => used.split(':').next().unwrap_or(used).trim().to_string(),
        None => r.method.as_str().to_string(),
    }
}

/// Keys written, and those replaced or skipped when there are any.
fn keys_cell(r: &RestoreRecord) -> String {
    let written = r.keys_restored + r.keys_rebuilt;
    let extra: Vec<String> = [("replaced", r.keys_replaced), ("skipped", r.keys_skipped)]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    if extra.is_empty() {
        written.to_string()
    } else {
        format!("{written} ({})", extra.join(", "))
    }
}

/// Every key count, and why keys were skipped.
fn keys_text(r: &RestoreRecord) -> String {
    let mut text = format!(
        "keys: {} restored, {} rebuilt, {} replaced, {} skipped",
        r.keys_restored, r.keys_rebuilt, r.keys_replaced, r.keys_skipped
    );
    if let Some(detail) = r.skipped_detail.as_deref().filter(|d| !d.is_empty()) {
        text.push_str(&format!(" ({detail})"));
    }
    text
}

fn record_table(r: &RestoreRecord) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    table(
        &["FIELD", "VALUE"],
        [
            ("restore_id", r.restore_id.clone()),
            ("backup_id", r.backup_id.clone()),
            ("target_instance_id", r.target_instance_id.clone()),
            ("status", r.status.clone()),
            ("stage", opt(&r.stage)),
            ("progress", r.progress.clone()),
            ("mode", r.mode.as_str().to_string()),
            ("method", r.method.as_str().to_string()),
            ("method_used", opt(&r.method_used)),
            ("keys_restored", r.keys_restored.to_string()),
            ("keys_rebuilt", r.keys_rebuilt.to_string()),
            ("keys_replaced", r.keys_replaced.to_string()),
            ("keys_skipped", r.keys_skipped.to_string()),
            ("skipped_detail", opt(&r.skipped_detail)),
            ("created_at", r.created_at.clone()),
            ("updated_at", r.updated_at.clone()),
            ("remark", opt(&r.restore_remark)),
            ("error", r.error_text()),
        ]
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect(),
    )
}

/// Polls the restore's record until it leaves waiting/restoring.
async fn wait_for(
    client: &Client,
    instance_id: &str,
    restore_id: &str,
    bar: bool,
) -> anyhow::Result<RestoreRecord> {
    follow::until_ended(bar, || find_record(client, instance_id, restore_id)).await
}

async fn find_record(
    client: &Client,
    instance_id: &str,
    restore_id: &str,
) -> anyhow::Result<RestoreRecord> {
    follow::find_listed(
        client,
        &restores_path(client, instance_id),
        |page: ListRestoreRecordsResponse| (page.total_num, page.restore_record_response),
        |r| r.restore_id == restore_id,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("restore {restore_id} is not listed for instance {instance_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RestoreRecord {
        serde_json::from_value(json!({
            "restore_id": "r", "restore_name": "", "restore_remark": null,
            "backup_id": "b", "backup_name": "", "backup_remark": null,
            "status": "succeed", "progress": "100.00", "created_at": "", "updated_at": "",
            "error_code": null, "error_msg": null, "target_instance_id": "t",
            "mode": "merge", "method": "auto", "method_used": null, "stage": null,
            "keys_restored": 40, "keys_rebuilt": 8, "keys_replaced": 0, "keys_skipped": 0,
            "skipped_detail": null,
        }))
        .expect("a record")
    }

    #[test]
    fn the_body_holds_only_what_was_given() {
        let mut request = Request {
            backup_id: "b".into(),
            target: None,
            mode: None,
            method: None,
            strict: false,
            remark: None,
        };
        assert_eq!(request.body(), json!({"backup_id": "b"}));
        request.target = Some("t".into());
        request.mode = Some(ModeArg::Merge);
        request.method = Some(MethodArg::Commands);
        request.strict = true;
        request.remark = Some("again".into());
        assert_eq!(
            request.body(),
            json!({"backup_id": "b", "target_instance_id": "t", "mode": "merge",
                   "method": "commands", "strict": true, "remark": "again"})
        );
    }

    #[test]
    fn keys_and_method_cells() {
        let mut r = record();
        assert_eq!(keys_cell(&r), "48");
        assert_eq!(method_name(&r), "auto");
        r.keys_replaced = 3;
        r.keys_skipped = 2;
        r.skipped_detail = Some("2 module values".into());
        r.method_used = Some("commands: the target is older than the backup".into());
        assert_eq!(keys_cell(&r), "48 (3 replaced, 2 skipped)");
        assert_eq!(method_name(&r), "commands");
        assert_eq!(
            keys_text(&r),
            "keys: 40 restored, 8 rebuilt, 3 replaced, 2 skipped (2 module values)"
        );
    }
}
