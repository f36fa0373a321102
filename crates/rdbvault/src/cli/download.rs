//! `rdbvault backup download`: every file of a backup through its link, in
//! parallel, resumable, and verified (size, SHA-256, RDB CRC-64) before it
//! takes its final name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::links::LinksItem;

/// A flaky connection gets this many attempts per file, each resuming where the last stopped.
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DownloadError {
    #[error("{file}: {reason}")]
    Failed { file: String, reason: String },
    #[error("{file}: verification failed ({reason}); the file was deleted")]
    Verification { file: String, reason: String },
}

/// Downloads every link into `out`; returns the paths written.
pub(crate) async fn download_all(
    client: &reqwest::Client,
    links: Vec<LinksItem>,
    out: &Path,
    show: bool,
) -> Result<Vec<PathBuf>, DownloadError> {
    tokio::fs::create_dir_all(out)
        .await
        .map_err(|e| DownloadError::Failed {
            file: out.display().to_string(),
            reason: e.to_string(),
        })?;
    let bars = MultiProgress::new();
    if !show {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let total_bytes: u64 = links
        .iter()
        .map(|l| u64::try_from(l.size).unwrap_or(0))
        .sum();
    let total = bars.add(ProgressBar::new(total_bytes));
    total.set_style(style("total"));
    let tasks = links.into_iter().map(|link| {
        let bar = bars.insert_before(
            &total,
            ProgressBar::new(u64::try_from(link.size).unwrap_or(0)),
        );
        bar.set_style(style(&link.file_name));
        let (client, total, out) = (client.clone(), total.clone(), out.to_path_buf());
        async move {
            let result = download_one(&client, &link, &out, &bar, &total).await;
            bar.finish();
            result
        }
    });
    let results = futures::future::join_all(tasks).await;
    total.finish();
    results.into_iter().collect()
}

pub(crate) fn style(name: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{bar:30}} {{bytes:>10}}/{{total_bytes:10}} {{bytes_per_sec:>12}} {name}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

async fn download_one(
    client: &reqwest::Client,
    link: &LinksItem,
    out: &Path,
    bar: &ProgressBar,
    total: &ProgressBar,
) -> Result<PathBuf, DownloadError> {
    let failed = |reason: String| DownloadError::Failed {
        file: link.file_name.clone(),
        reason,
    };
    if link.file_name.contains(['/', '\\']) || link.file_name.starts_with('.') {
        return Err(failed("refusing an unsafe file name".into()));
    }
    let target = out.join(&link.file_name);
    let part = out.join(format!("{}.part", link.file_name));
    let size = u64::try_from(link.size).unwrap_or(0);
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        match fetch(client, &link.link, &part, size, bar, total).await {
            Ok(()) => {
                verify(&part, link).await.map_err(|reason| {
                    let _ = std::fs::remove_file(&part);
                    DownloadError::Verification {
                        file: link.file_name.clone(),
                        reason,
                    }
                })?;
                tokio::fs::rename(&part, &target)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                return Ok(target);
            }
            Err(Fetch::Fatal(reason)) => return Err(failed(reason)),
            Err(Fetch::Retry(reason)) => last_error = reason,
        }
    }
    Err(failed(format!(
        "gave up after {ATTEMPTS} attempts: {last_error}"
    )))
}

enum Fetch {
    /// Worth another attempt (connection trouble); the part file is kept.
    Retry(String),
    Fatal(String),
}

/// Appends to `part` from where it stops, until it holds `size` bytes.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    part: &Path,
    size: u64,
    bar: &ProgressBar,
    total: &ProgressBar,
) -> Result<(), Fetch> {
    let have = tokio::fs::metadata(part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if have > size {
        let _ = tokio::fs::remove_file(part).await;
        return Err(Fetch::Retry(
            "partial file larger than the backup file; starting over".into(),
        ));
    }
    bar.set_position(have);
    total.inc(have.saturating_sub(total.position().min(have)));
    if have == size && size > 0 {
        return Ok(());
    }
    let mut req = client.get(url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req.send().await.map_err(|e| Fetch::Retry(e.to_string()))?;
    let status = resp.status();
    let append = match status.as_u16() {
        206 => true,
        200 => false,
        s if s >= 500 => return Err(Fetch::Retry(format!("server answered {s}"))),
        s => {
            let text = resp.text().await.unwrap_or_default();
            return Err(Fetch::Fatal(format!(
                "the link answered {s}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .await
        .map_err(|e| Fetch::Fatal(e.to_string()))?;
    if !append {
        bar.set_position(0);
    }
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Fetch::Retry(e.to_string()))?;
        file.write_all(&chunk)
            .await
            .map_err(|e| Fetch::Fatal(e.to_string()))?;
        bar.inc(chunk.len() as u64);
        total.inc(chunk.len() as u64);
    }
    file.flush()
        .await
        .map_err(|e| Fetch::Fatal(e.to_string()))?;
    file.sync_all()
        .await
        .map_err(|e| Fetch::Fatal(e.to_string()))?;
    let now = tokio::fs::metadata(part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if now < size {
        return Err(Fetch::Retry(format!(
            "connection ended after {now} of {size} bytes"
        )));
    }
    Ok(())
}

/// Size, SHA-256 recorded at backup time, and the RDB's own CRC-64.
async fn verify(path: &Path, link: &LinksItem) -> Result<(), String> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| e.to_string())?;
    let mut sha = Sha256::new();
    let mut rdb = rdb::Verifier::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size: u64 = 0;
    loop {
        let n = file.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        rdb.update(&buf[..n]).map_err(|e| format!("RDB: {e}"))?;
        size += n as u64;
    }
    if size != u64::try_from(link.size).unwrap_or(0) {
        return Err(format!("size {size}, expected {}", link.size));
    }
    let digest = hex::encode(sha.finalize());
    if let Some(expected) = &link.sha256
        && *expected != digest
    {
        return Err(format!("SHA-256 {digest}, expected {expected}"));
    }
    rdb.finish().map_err(|e| format!("RDB: {e}"))?;
    Ok(())
}
