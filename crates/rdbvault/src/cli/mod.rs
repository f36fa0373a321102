//! The `rdbvault` command line: `serve` runs the service; `instance`,
//! `backup` and `restore` call the HTTP API (signed like the SDK) and print
//! tables, or the API's JSON with `--json`; `inspect` analyzes the keys of an RDB file, or
//! of a backup's files streamed through their links.

mod backup;
pub mod client;
mod download;
mod follow;
pub(crate) mod inspect;
mod instance;
mod keys;
mod restore;
mod store;

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::auth::bootstrap;
use crate::config::{Config, LogFormat};
use client::{Client, ClientConfig};

#[derive(Parser)]
#[command(
    name = "rdbvault",
    version,
    about = "Backups of Redis and Valkey, behind the DCS v2 API"
)]
pub(crate) struct Cli {
    /// Declared once here and global, so they are accepted anywhere on the
    /// command line: `rdbvault --json backup list X`, `rdbvault backup --json
    /// list X` and `rdbvault backup list X --json` are the same. `serve`
    /// refuses them (see `refuse_client_flags`).
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: Command,
}

/// How the client commands reach the service.
#[derive(clap::Args, Clone)]
#[command(next_help_heading = "Client options")]
pub(crate) struct ClientArgs {
    /// Base URL of the rdbvault service.
    #[arg(long, env = "RDBVAULT_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// Access key.
    #[arg(long, env = "RDBVAULT_AK", global = true)]
    ak: Option<String>,
    /// Secret key (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "RDBVAULT_SK", global = true, hide_env_values = true)]
    sk: Option<String>,
    /// Project id.
    #[arg(long, env = "RDBVAULT_PROJECT_ID", global = true)]
    project_id: Option<String>,
    /// A TOML file with endpoint, ak, sk, project_id (flags and env win).
    #[arg(long, env = "RDBVAULT_CLIENT_CONFIG", global = true)]
    client_config: Option<PathBuf>,
    /// PEM CA certificate(s) to trust besides the system's, for a service
    /// (and its download links) with a private certificate.
    #[arg(long, env = "RDBVAULT_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let flags = ClientConfig {
            endpoint: self.endpoint.clone(),
            ak: self.ak.clone(),
            sk: self.sk.clone(),
            project_id: self.project_id.clone(),
            ca_file: self.ca_file.clone(),
        };
        Ok(Client::new(
            flags.or(ClientConfig::load(self.client_config.as_ref())?),
        )?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// TOML configuration file; every key can also be set as RDBVAULT_<KEY>.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Create, list and delete backups.
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
    /// Offline key analysis of an RDB file, or of a backup's files (with --instance).
    Inspect {
        /// An RDB file, or a backup id when --instance is given.
        target: String,
        /// Read the backup `target` of this instance (streamed from the store, verified).
        #[arg(long)]
        instance: Option<String>,
        /// How many of the biggest keys to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Key prefixes end at this separator.
        #[arg(long, default_value = ":")]
        separator: String,
        /// How many prefixes to list (by bytes).
        #[arg(long, default_value_t = 20)]
        prefixes: usize,
        /// Also write one JSON line per key to this file (file, db, key or
        /// key_hex, kind, bytes, elements, expire_ms).
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Register, list, show and remove instances.
    Instance {
        #[command(subcommand)]
        command: instance::InstanceCommand,
    },
    /// Restore a backup into an instance; list and show restores.
    Restore {
        #[command(subcommand)]
        command: restore::RestoreCommand,
    },
    /// The object store, read with this node's configuration (no service).
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// The master key that seals the secrets kept in the metadata store.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
}

/// The ids of `ClientArgs`' flags (clap names them after the fields).
const CLIENT_FLAGS: [&str; 7] = [
    "endpoint",
    "ak",
    "sk",
    "project_id",
    "client_config",
    "ca_file",
    "json",
];

pub fn main() -> std::process::ExitCode {
    let mut command = command();
    let matches = command.get_matches_mut();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut command).exit(),
    };
    if matches!(cli.command, Command::Serve { .. }) {
        refuse_client_flags(&matches);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command line, with the client flags kept out of `serve --help`.
fn command() -> clap::Command {
    let cli = Cli::command();
    // clap hands a global argument to every subcommand that has none of that
    // id: `serve` gets hidden copies instead (refused when given, see
    // `refuse_client_flags`).
    let hidden: Vec<clap::Arg> = cli
        .get_arguments()
        .filter(|a| CLIENT_FLAGS.contains(&a.get_id().as_str()))
        .map(|a| a.clone().global(false).hide(true))
        .collect();
    cli.mut_subcommands(|sub| {
        if sub.get_name() == "serve" {
            sub.args(hidden.clone())
        } else {
            sub
        }
    })
}

/// The client flags are global so that they may stand before the command
/// group, which makes clap accept them after `serve` too; `serve` reads its
/// settings from `--config` and `RDBVAULT_<KEY>`, so such a flag is a mistake
/// to report, not to ignore. (Their environment variables are not: the
/// shell that runs `serve` may well have the client's set.)
fn refuse_client_flags(matches: &clap::ArgMatches) {
    for id in CLIENT_FLAGS {
        if matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            let flag = format!("--{}", id.replace('_', "-"));
            command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "{flag} is a client option; `serve` takes --config (or RDBVAULT_<KEY> variables)"
                    ),
                )
                .exit();
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let client = &cli.client;
    match cli.command {
        Command::Serve { config } => serve(config).await,
        Command::Instance { command } => instance::run(command, client).await,
        Command::Backup { command } => backup::run(command, client).await,
        Command::Restore { command } => restore::run(command, client).await,
        Command::Store { command } => store::run(command, client.json).await,
        Command::Keys { command } => keys::run(command, client.json).await,
        Command::Inspect {
            target,
            instance,
            top,
            separator,
            prefixes,
            keys,
        } => {
            let keys = keys
                .as_deref()
                .map(inspect::KeyLog::create)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let options = inspect::Options {
                top,
                separator,
                prefixes,
                keys,
            };
            inspect_command(&target, instance.as_deref(), &options, client).await
        }
    }
}

async fn serve(file: Option<PathBuf>) -> anyhow::Result<std::process::ExitCode> {
    let mut config = Config::load(file.as_deref())?;
    init_tracing(config.log_format);
    let credentials = bootstrap::ensure_credentials(&mut config)?;
    announce_credentials(&config, credentials);
    // A file-size limit (RLIMIT_FSIZE) or a full disk must fail the write and
    // with it the backup, not kill the whole service with SIGXFSZ.
    let _xfsz =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.listen))?;
    crate::server::run(listener, config, crate::server::shutdown_signal()).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Says where the credentials come from; a credential generated at first
/// start is printed once, to stdout (not the log), so the quickstart can copy it.
fn announce_credentials(config: &Config, outcome: bootstrap::Outcome) {
    match outcome {
        bootstrap::Outcome::Generated(path, c) => {
            let listen = config.public_url(config.listen);
            println!(
                "First start: generated a credential, stored in {} (mode 0600).",
                path.display()
            );
            println!("Use it with the CLI or a Huawei Cloud SDK:\n");
            println!("  export RDBVAULT_ENDPOINT={listen}");
            println!("  export RDBVAULT_AK={}", c.access_key);
            println!(
                "  export RDBVAULT_SK={}",
                c.secret_key.as_deref().unwrap_or_default()
            );
            println!("  export RDBVAULT_PROJECT_ID={}\n", c.projects.join(","));
        }
        bootstrap::Outcome::Loaded(path) => {
            tracing::info!(file = %path.display(), "using the credentials generated at first start");
        }
        bootstrap::Outcome::Configured => {}
    }
}

/// `inspect`: a file read from disk, or every file of a backup streamed
/// through its links and checked against its record.
async fn inspect_command(
    target: &str,
    instance: Option<&str>,
    options: &inspect::Options,
    args: &ClientArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let reports = match instance {
        None => {
            let (f, options) = (PathBuf::from(target), options.clone());
            let report =
                tokio::task::spawn_blocking(move || inspect::analyze(&f, &options)).await?;
            vec![report.map_err(anyhow::Error::msg)?]
        }
        Some(instance) => {
            let client = args.client()?;
            let links = backup::fetch_links(&client, instance, target).await?;
            inspect::analyze_links(client.http(), links, options, !args.json).await?
        }
    };
    if let Some(log) = &options.keys {
        log.finish().map_err(anyhow::Error::msg)?;
    }
    print_reports(&reports, args.json)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// One report as a JSON object, several as an array; or each rendered as tables.
fn print_reports(reports: &[inspect::Report], json: bool) -> anyhow::Result<()> {
    if json {
        let value = if reports.len() == 1 {
            serde_json::to_value(&reports[0])?
        } else {
            serde_json::to_value(reports)?
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for r in reports {
            println!("{}", inspect::render(r));
        }
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RDBVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colours only on a terminal: a log redirected to a file or a journal
    // must not fill with escape sequences. NO_COLOR (no-color.org) turns
    // them off on a terminal too.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Prints the API's answer verbatim (for `--json`) or decoded and rendered by `table`.
pub(crate) fn output<T: serde::de::DeserializeOwned>(
    json: bool,
    raw: &[u8],
    table: impl FnOnce(T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", String::from_utf8_lossy(raw));
    } else {
        let value: T = serde_json::from_slice(raw)?;
        println!("{}", table(value));
    }
    Ok(())
}

pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    t.to_string()
}

/// The widest an ERROR column of a list gets; `show` and `--json` give the
/// whole message.
pub(crate) const ERROR_COLUMN_CHARS: usize = 60;

/// At most `max` characters, the cut marked with `…`.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("0123456789", 10), "0123456789");
        assert_eq!(truncate("0123456789a", 10), "012345678…");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }
}
