//! `rdbvault instance add|list|show|policy|remove`.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::Client;
use super::{ClientArgs, output, table};
use crate::api::instances::{InstanceInfo, ListInstancesResponse, RegistrationView};
use crate::api::policies::{BackupPolicyBody, InstanceBackupPolicyView};

#[derive(Subcommand)]
pub(crate) enum InstanceCommand {
    /// Register an existing Redis deployment.
    Add {
        #[arg(long)]
        name: String,
        /// single, ha or cluster.
        #[arg(long)]
        mode: String,
        /// host:port; repeat for replicas or cluster nodes.
        #[arg(long = "addr", required = true)]
        addrs: Vec<String>,
        /// ACL user.
        #[arg(long)]
        user: Option<String>,
        /// Name of an environment variable holding the Redis password.
        #[arg(long)]
        password_env: Option<String>,
        #[arg(long)]
        tls: bool,
        /// Register without checking that the instance answers.
        #[arg(long)]
        no_verify: bool,
    },
    /// List the instances of the project.
    List,
    /// Show one instance, with its live status.
    Show { instance_id: String },
    /// Set the backup policy of an instance (--auto or --manual), or show it
    /// (neither).
    Policy {
        instance_id: String,
        /// Automatic backups on --days, started in --window, kept --save-days.
        #[arg(
            long,
            conflicts_with = "manual",
            requires = "save_days",
            requires = "days",
            requires = "window"
        )]
        auto: bool,
        /// Manual backups only: no automatic ones.
        #[arg(long, conflicts_with_all = ["save_days", "days", "window", "timezone"])]
        manual: bool,
        /// Days automatic backups are kept (the service takes 1 to 3650).
        #[arg(long, requires = "auto")]
        save_days: Option<i64>,
        /// Days of the week: 1 (Monday) to 7 (Sunday) or names (mon,tue,...),
        /// comma separated.
        #[arg(long, value_delimiter = ',', value_parser = parse_day, requires = "auto")]
        days: Vec<u8>,
        /// The window a backup starts in, HH:MM-HH:MM (one that ends before it
        /// starts runs past midnight).
        #[arg(long, requires = "auto")]
        window: Option<String>,
        /// Zone of --days and --window, -1200 to +1200 (default UTC).
        #[arg(long, allow_hyphen_values = true, requires = "auto")]
        timezone: Option<String>,
    },
    /// Remove a registration (refused while it still has backups).
    Remove { instance_id: String },
}

pub(crate) async fn run(command: InstanceCommand, args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let client = args.client()?;
    match command {
        InstanceCommand::Add {
            name,
            mode,
            addrs,
            user,
            password_env,
            tls,
            no_verify,
        } => {
            let password = password_from(password_env)?;
            let body = json!({
                "name": name, "mode": mode, "addrs": addrs, "user": user,
                "password": password, "tls": tls, "verify": !no_verify,
            });
            add(&client, args.json, &body).await?;
        }
        InstanceCommand::List => list(&client, args.json).await?,
        InstanceCommand::Show { instance_id } => show(&client, args.json, &instance_id).await?,
        InstanceCommand::Policy {
            instance_id,
            auto,
            manual,
            save_days,
            days,
            window,
            timezone,
        } => {
            let body = if auto {
                Some(json!({
                    "backup_type": "auto",
                    "save_days": save_days,
                    "periodical_backup_plan": {
                        "backup_at": days,
                        "period_type": "weekly",
                        "begin_at": window,
                        "timezone_offset": timezone,
                    },
                }))
            } else if manual {
                Some(json!({ "backup_type": "manual" }))
            } else {
                None
            };
            policy(&client, args.json, &instance_id, body).await?;
        }
        InstanceCommand::Remove { instance_id } => {
            remove(&client, args.json, &instance_id).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The Redis password, read from the environment variable `var` names.
fn password_from(var: Option<String>) -> anyhow::Result<Option<String>> {
    match var {
        Some(var) => Ok(Some(std::env::var(&var).map_err(|_| {
            anyhow::anyhow!("environment variable {var} is not set")
        })?)),
        None => Ok(None),
    }
}

/// `instance add`: registers the deployment `body` describes.
async fn add(client: &Client, json: bool, body: &serde_json::Value) -> anyhow::Result<()> {
    let raw = client
        .call(
            Method::POST,
            &client.project_path("rdbvault/instances"),
            "",
            Some(body),
        )
        .await?;
    output(json, &raw, |v: RegistrationView| registration_table(&v))
}

/// `instance list`: every instance of the project, all pages.
async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    // Page through everything: the API caps a page at 1000.
    let mut all: Vec<serde_json::Value> = Vec::new();
    let mut total;
    loop {
        let query = format!("limit=1000&offset={}", all.len());
        let page: serde_json::Value = client
            .call_json(Method::GET, &client.project_path("instances"), &query, None)
            .await?;
        total = page["instance_num"].as_u64().unwrap_or(0) as usize;
        let items = page["instances"].as_array().cloned().unwrap_or_default();
        let got = items.len();
        all.extend(items);
        if got == 0 || all.len() >= total {
            break;
        }
    }
    let raw = serde_json::to_vec(&json!({ "instance_num": total, "instances": all }))?;
    output(json, &raw, |v: ListInstancesResponse| {
        table(
            &[
                "INSTANCE_ID",
                "NAME",
                "STATUS",
                "VERSION",
                "ADDRESS",
                "USED_MB",
            ],
            v.instances
                .iter()
                .map(|i| {
                    vec![
                        i.instance_id.clone(),
                        i.name.clone(),
                        i.status.clone(),
                        i.engine_version.clone(),
                        format!("{}:{}", i.ip, i.port),
                        i.used_memory.to_string(),
                    ]
                })
                .collect(),
        )
    })
}

/// `instance show`: one instance, with its live status.
async fn show(client: &Client, json: bool, instance_id: &str) -> anyhow::Result<()> {
    let path = client.project_path(&format!("instances/{}", encode(instance_id)));
    let raw = client.call(Method::GET, &path, "", None).await?;
    output(json, &raw, |i: InstanceInfo| {
        table(
            &["FIELD", "VALUE"],
            [
                ("instance_id", i.instance_id),
                ("name", i.name),
                (
                    "mode",
                    i.cache_mode
                        .map(|m| m.as_str().to_string())
                        .unwrap_or_default(),
                ),
                ("status", i.status),
                ("engine_version", i.engine_version),
                ("address", format!("{}:{}", i.ip, i.port)),
                ("used_memory_mb", i.used_memory.to_string()),
                ("max_memory_mb", i.max_memory.to_string()),
                ("shards", i.sharding_count.unwrap_or(1).to_string()),
                ("replicas", i.replica_count.unwrap_or(0).to_string()),
                ("access_user", i.access_user),
                ("created_at", i.created_at),
                (
                    "backup_policy",
                    policy_summary(i.instance_backup_policy.as_ref()),
                ),
            ]
            .into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect(),
        )
    })
}

/// `instance policy`: with `body`, replaces the instance's backup policy
/// (DCS `update_instance`, which answers 204) and prints it as stored; without,
/// prints the current one. `--json` prints `show_instance`'s
/// `instance_backup_policy` object (`null` when none is set).
async fn policy(
    client: &Client,
    json: bool,
    instance_id: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let path = client.project_path(&format!("instances/{}", encode(instance_id)));
    let set = body.is_some();
    if let Some(policy) = body {
        let body = json!({ "instance_backup_policy": policy });
        client.call(Method::PUT, &path, "", Some(&body)).await?;
    }
    let raw = client
        .call(Method::GET, &path, "", None)
        .await
        .map_err(|e| {
            if set {
                anyhow::anyhow!("the policy was set, but reading it back failed: {e}")
            } else {
                e.into()
            }
        })?;
    let shown: serde_json::Value = serde_json::from_slice(&raw)?;
    let stored = shown
        .get("instance_backup_policy")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    if set && stored.is_null() {
        anyhow::bail!("the service accepted the policy but shows none for {instance_id}");
    }
    if json {
        println!("{stored}");
        return Ok(());
    }
    let stored: Option<InstanceBackupPolicyView> = serde_json::from_value(stored)?;
    match stored {
        None => println!("no backup policy (manual backups only)"),
        Some(p) => {
            if set {
                println!("backup policy of {instance_id} set:");
            }
            println!("{}", policy_table(&p));
        }
    }
    Ok(())
}

/// The policy field by field.
fn policy_table(v: &InstanceBackupPolicyView) -> String {
    let p = &v.policy;
    let mut rows = vec![
        ("backup_policy_id", v.backup_policy_id.clone()),
        ("backup_type", p.backup_type.clone()),
    ];
    if let Some(d) = p.save_days {
        rows.push(("save_days", d.to_string()));
    }
    if let Some(plan) = &p.periodical_backup_plan {
        let numbers: Vec<String> = plan.backup_at.iter().map(i64::to_string).collect();
        rows.push((
            "backup_at",
            format!("{} ({})", numbers.join(","), day_names(&plan.backup_at)),
        ));
        rows.push(("period_type", plan.period_type.clone()));
        rows.push(("begin_at", plan.begin_at.clone()));
        rows.push(("timezone_offset", zone(plan.timezone_offset.as_deref())));
    }
    rows.push(("created_at", v.created_at.clone()));
    rows.push(("updated_at", v.updated_at.clone()));
    table(
        &["FIELD", "VALUE"],
        rows.into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect(),
    )
}

/// The policy in one line, for `instance show`.
fn policy_summary(view: Option<&InstanceBackupPolicyView>) -> String {
    let Some(view) = view else {
        return "none (manual backups only)".into();
    };
    let p: &BackupPolicyBody = &view.policy;
    let mut text = p.backup_type.clone();
    if let Some(plan) = &p.periodical_backup_plan {
        text.push_str(&format!(
            ", {} {} {}",
            day_names(&plan.backup_at),
            plan.begin_at,
            zone(plan.timezone_offset.as_deref())
        ));
    }
    if let Some(d) = p.save_days {
        text.push_str(&format!(", kept {d} days"));
    }
    text
}

fn zone(offset: Option<&str>) -> String {
    match offset {
        Some(z) if !z.is_empty() => z.to_string(),
        _ => "UTC".into(),
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `1,3` as `mon,wed` (a number outside 1..7 as itself).
fn day_names(days: &[i64]) -> String {
    days.iter()
        .map(|&d| {
            usize::try_from(d)
                .ok()
                .and_then(|d| d.checked_sub(1))
                .and_then(|i| DAY_NAMES.get(i))
                .map_or_else(|| d.to_string(), |n| (*n).to_string())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A day of the week for `--days`: 1 (Monday) to 7, or its name, short or
/// whole, in any case.
fn parse_day(raw: &str) -> Result<u8, String> {
    let day = raw.trim().to_ascii_lowercase();
    if let Ok(n) = day.parse::<u8>() {
        return if (1..=7).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is not a day 1 (Monday) to 7 (Sunday)"))
        };
    }
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    DAY_NAMES
        .iter()
        .zip(FULL)
        .position(|(short, full)| day == *short || day == full)
        .and_then(|i| u8::try_from(i + 1).ok())
        .ok_or_else(|| "not a day: 1 to 7 or mon, tue, wed, thu, fri, sat, sun".to_string())
}

/// `instance remove`.
async fn remove(client: &Client, json: bool, instance_id: &str) -> anyhow::Result<()> {
    let path = client.project_path(&format!("rdbvault/instances/{}", encode(instance_id)));
    client.call(Method::DELETE, &path, "", None).await?;
    if json {
        println!("{}", json!({ "instance_id": instance_id, "removed": true }));
    } else {
        println!("removed {instance_id}");
    }
    Ok(())
}

fn registration_table(v: &RegistrationView) -> String {
    table(
        &["FIELD", "VALUE"],
        vec![
            vec!["instance_id".into(), v.instance_id.clone()],
            vec!["name".into(), v.name.clone()],
            vec!["mode".into(), v.mode.as_str().into()],
            vec!["addrs".into(), v.addrs.join(", ")],
            vec!["user".into(), v.user.clone().unwrap_or_default()],
            vec![
                "password".into(),
                if v.has_password { "set" } else { "none" }.into(),
            ],
            vec!["tls".into(), v.tls.to_string()],
        ],
    )
}

/// A path segment as the SDK encodes it (`quote(v, safe='')`).
pub(crate) fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_numbers_or_names() {
        for (raw, day) in [
            ("1", 1),
            ("7", 7),
            ("mon", 1),
            ("WED", 3),
            (" Sunday", 7),
            ("thursday", 4),
        ] {
            assert_eq!(parse_day(raw), Ok(day), "{raw}");
        }
        for raw in ["0", "8", "", "mo", "monday2", "-1"] {
            assert!(parse_day(raw).is_err(), "{raw}");
        }
        assert_eq!(day_names(&[1, 3, 7]), "mon,wed,sun");
        assert_eq!(day_names(&[0, 8]), "0,8");
    }
}
