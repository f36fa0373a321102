//! `rdbvault instance add|list|show|remove`.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::Client;
use super::{ClientArgs, output, table};
use crate::api::instances::{InstanceInfo, ListInstancesResponse, RegistrationView};

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
            ]
            .into_iter()
            .map(|(k, v)| vec![k.to_string(), v])
            .collect(),
        )
    })
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
