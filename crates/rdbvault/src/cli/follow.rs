//! Following a job (a backup, a restore) through its record: found in the
//! pages of its instance's list, polled under a progress bar until it ends.

use std::future::Future;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::client::Client;
use crate::api::backups::BackupRecord;
use crate::api::restores::RestoreRecord;

/// What the CLI reads of a job's record to follow it and report its end.
pub(crate) trait JobRecord {
    fn status(&self) -> &str;
    /// Percentage with two decimals, e.g. `"42.50"`.
    fn progress(&self) -> &str;
    fn stage(&self) -> Option<&str>;
    /// Waiting or running: not ended yet.
    fn running(&self) -> bool;
    fn error_code(&self) -> Option<&str>;
    fn error_msg(&self) -> Option<&str>;

    /// `code: message` of a failed job (either part may be missing).
    fn error_text(&self) -> String {
        match (self.error_code(), self.error_msg()) {
            (Some(code), Some(msg)) if !msg.is_empty() => format!("{code}: {msg}"),
            (Some(code), _) => code.to_string(),
            (None, Some(msg)) => msg.to_string(),
            (None, None) => String::new(),
        }
    }

    /// The exit code of a job that was waited for.
    fn exit_code(&self) -> std::process::ExitCode {
        if self.status() == "succeed" {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    }
}

impl JobRecord for BackupRecord {
    fn status(&self) -> &str {
        &self.status
    }
    fn progress(&self) -> &str {
        &self.progress
    }
    fn stage(&self) -> Option<&str> {
        self.stage.as_deref()
    }
    fn running(&self) -> bool {
        matches!(self.status.as_str(), "waiting" | "backuping")
    }
    fn error_code(&self) -> Option<&str> {
        self.error_code.as_deref()
    }
    fn error_msg(&self) -> Option<&str> {
        self.error_msg.as_deref()
    }
}

impl JobRecord for RestoreRecord {
    fn status(&self) -> &str {
        &self.status
    }
    fn progress(&self) -> &str {
        &self.progress
    }
    fn stage(&self) -> Option<&str> {
        self.stage.as_deref()
    }
    fn running(&self) -> bool {
        matches!(self.status.as_str(), "waiting" | "restoring")
    }
    fn error_code(&self) -> Option<&str> {
        self.error_code.as_deref()
    }
    fn error_msg(&self) -> Option<&str> {
        self.error_msg.as_deref()
    }
}

/// Polls `fetch` until the record it returns has ended, showing its
/// progress and stage on a bar (on stderr, drawn only on a terminal) when
/// `bar` is set.
pub(crate) async fn until_ended<T, F, Fut>(bar: bool, mut fetch: F) -> anyhow::Result<T>
where
    T: JobRecord,
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let progress = indicatif::ProgressBar::new(10_000);
    if bar {
        progress.set_style(indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}",
        )?);
    } else {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    loop {
        let record = fetch().await?;
        let pct: f64 = record.progress().parse().unwrap_or(0.0);
        progress.set_position((pct * 100.0) as u64);
        progress.set_message(match record.stage() {
            Some(stage) => format!("{}: {stage}", record.status()),
            None => record.status().to_string(),
        });
        if !record.running() {
            progress.finish_and_clear();
            return Ok(record);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The first item `wanted` picks in the list at `path`, read 1000 at a
/// time; `split` turns a page into its total and its items.
pub(crate) async fn find_listed<P, T>(
    client: &Client,
    path: &str,
    split: impl Fn(P) -> (usize, Vec<T>),
    wanted: impl Fn(&T) -> bool,
) -> anyhow::Result<Option<T>>
where
    P: DeserializeOwned,
{
    let mut offset = 0;
    loop {
        let page: P = client
            .call_json(
                Method::GET,
                path,
                &format!("limit=1000&offset={offset}"),
                None,
            )
            .await?;
        let (total, items) = split(page);
        let n = items.len();
        if let Some(item) = items.into_iter().find(&wanted) {
            return Ok(Some(item));
        }
        offset += n;
        if n == 0 || offset >= total {
            return Ok(None);
        }
    }
}
