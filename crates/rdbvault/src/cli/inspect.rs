//! `rdbvault inspect`: offline key analysis of an RDB file, read entry by
//! entry (memory bounded by the largest value): version and aux fields, keys
//! per database, counts and bytes by type and encoding, the biggest keys, key
//! prefixes, and the TTL distribution. A backup's files are analyzed as they
//! stream from the store through their links, never written to disk.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use rdb::Reader;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::links::LinksItem;

#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) file: String,
    pub(crate) version: u32,
    pub(crate) aux: BTreeMap<String, String>,
    pub(crate) bytes: u64,
    pub(crate) keys: u64,
    pub(crate) databases: BTreeMap<u64, DbStats>,
    /// Keyed by `type/encoding`, e.g. `hash/listpack`.
    pub(crate) by_encoding: BTreeMap<String, Tally>,
    /// The keys taking the most bytes in the file.
    pub(crate) biggest_by_size: Vec<KeyStat>,
    /// The keys with the most elements.
    pub(crate) biggest_by_elements: Vec<KeyStat>,
    /// Keys grouped by the part before the first separator.
    pub(crate) prefixes: Vec<PrefixStat>,
    /// Keys with a TTL, by how long they still have to live.
    pub(crate) ttl: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct DbStats {
    pub(crate) keys: u64,
    pub(crate) expiring: u64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Tally {
    pub(crate) keys: u64,
    pub(crate) bytes: u64,
    pub(crate) elements: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KeyStat {
    pub(crate) measure: u64,
    pub(crate) db: u64,
    pub(crate) key: String,
    pub(crate) kind: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct PrefixStat {
    pub(crate) prefix: String,
    pub(crate) keys: u64,
    pub(crate) bytes: u64,
}

/// What to report, and where each key's line goes, if anywhere.
#[derive(Clone)]
pub(crate) struct Options {
    /// How many of the biggest keys to list.
    pub(crate) top: usize,
    /// Key prefixes end at this separator.
    pub(crate) separator: String,
    /// How many prefixes to list.
    pub(crate) prefixes: usize,
    /// One JSON line per key, for analyses the summary does not make.
    pub(crate) keys: Option<KeyLog>,
}

/// A JSON-lines file of every key, shared by the files of a backup that are
/// analyzed in parallel.
#[derive(Clone)]
pub(crate) struct KeyLog(Arc<Mutex<BufWriter<std::fs::File>>>);

/// One line of the key log.
#[derive(Serialize)]
struct KeyLine<'a> {
    file: &'a str,
    db: u64,
    /// The key, when it is UTF-8 ...
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    /// ... else its bytes in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_hex: Option<String>,
    kind: &'a str,
    bytes: u64,
    elements: u64,
    expire_ms: Option<i64>,
}

impl KeyLog {
    pub(crate) fn create(path: &Path) -> Result<KeyLog, String> {
        let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(KeyLog(Arc::new(Mutex::new(BufWriter::new(f)))))
    }

    fn write(&self, line: &KeyLine<'_>) -> Result<(), String> {
        let mut out = self
            .0
            .lock()
            .map_err(|_| "the key log is unusable".to_string())?;
        serde_json::to_writer(&mut *out, line).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())
    }

    pub(crate) fn finish(&self) -> Result<(), String> {
        let mut out = self
            .0
            .lock()
            .map_err(|_| "the key log is unusable".to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        out.get_ref().sync_all().map_err(|e| e.to_string())
    }
}

/// Keeps the `n` largest items seen.
struct Top {
    n: usize,
    heap: BinaryHeap<Reverse<KeyStat>>,
}

impl Top {
    fn new(n: usize) -> Top {
        Top {
            n,
            heap: BinaryHeap::new(),
        }
    }

    fn offer(&mut self, stat: impl FnOnce() -> KeyStat, measure: u64) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() < self.n {
            self.heap.push(Reverse(stat()));
        } else if self
            .heap
            .peek()
            .is_some_and(|Reverse(min)| measure > min.measure)
        {
            self.heap.pop();
            self.heap.push(Reverse(stat()));
        }
    }

    fn into_sorted(self) -> Vec<KeyStat> {
        let mut v: Vec<KeyStat> = self.heap.into_iter().map(|Reverse(s)| s).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// The TTL bucket of a key that expires at `expire_ms`, seen at `now_ms`.
fn ttl_bucket(expire_ms: i64, now_ms: i64) -> &'static str {
    let left = expire_ms - now_ms;
    match left {
        i64::MIN..=0 => "expired",
        1..=60_000 => "< 1 min",
        60_001..=3_600_000 => "< 1 hour",
        3_600_001..=86_400_000 => "< 1 day",
        86_400_001..=604_800_000 => "< 1 week",
        _ => ">= 1 week",
    }
}

/// Reads the whole file once.
pub(crate) fn analyze(file: &Path, options: &Options) -> Result<Report, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    analyze_reader(
        std::io::BufReader::with_capacity(1 << 20, f),
        &file.display().to_string(),
        options,
    )
}

pub(crate) fn analyze_reader<R: Read>(
    input: R,
    name: &str,
    options: &Options,
) -> Result<Report, String> {
    let (top, separator, prefixes) = (options.top, options.separator.as_str(), options.prefixes);
    let mut reader = Reader::new(input).map_err(|e| format!("{name}: {e}"))?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut report = Report {
        file: name.to_string(),
        version: reader.version(),
        ..Report::default()
    };
    let mut by_size = Top::new(top);
    let mut by_elements = Top::new(top);
    let mut prefix_stats: HashMap<String, (u64, u64)> = HashMap::new();
    // Measured, not decoded: the analysis needs sizes and counts, not
    // values, and that spares a copy of every element.
    while let Some(entry) = reader.next_key().map_err(|e| format!("{name}: {e}"))? {
        let (size, count) = (entry.bytes, entry.elements);
        let kind: std::borrow::Cow<'static, str> = match entry.module_id {
            Some(id) => format!("module/{}", rdb::module_type_name(id).0).into(),
            None => rdb::encoding_name(entry.type_id, reader.magic()).into(),
        };
        let key = String::from_utf8_lossy(&entry.key);
        report.keys += 1;
        let db = report.databases.entry(entry.db).or_default();
        db.keys += 1;
        if let Some(expire) = entry.expire_ms {
            db.expiring += 1;
            *report
                .ttl
                .entry(ttl_bucket(expire, now_ms).to_string())
                .or_default() += 1;
        }
        // Looked up by &str first: a String per key is what it would cost.
        if !report.by_encoding.contains_key(kind.as_ref()) {
            report
                .by_encoding
                .insert(kind.to_string(), Tally::default());
        }
        if let Some(tally) = report.by_encoding.get_mut(kind.as_ref()) {
            tally.keys += 1;
            tally.bytes += size;
            tally.elements += count;
        }
        let stat = |measure| KeyStat {
            measure,
            db: entry.db,
            key: key.to_string(),
            kind: kind.to_string(),
        };
        if let Some(log) = &options.keys {
            let utf8 = std::str::from_utf8(&entry.key).ok();
            log.write(&KeyLine {
                file: name,
                db: entry.db,
                key: utf8,
                key_hex: utf8.is_none().then(|| hex::encode(&entry.key)),
                kind: &kind,
                bytes: size,
                elements: count,
                expire_ms: entry.expire_ms,
            })
            .map_err(|e| format!("{name}: key log: {e}"))?;
        }
        by_size.offer(|| stat(size), size);
        by_elements.offer(|| stat(count), count);
        if prefixes > 0 {
            let prefix = match key.split_once(separator) {
                Some((p, _)) if !separator.is_empty() => p,
                _ => "(no prefix)",
            };
            // Bounded: past 100 000 distinct prefixes, the rest are pooled.
            let slot = if prefix_stats.len() < 100_000 || prefix_stats.contains_key(prefix) {
                prefix
            } else {
                "(other)"
            };
            if !prefix_stats.contains_key(slot) {
                prefix_stats.insert(slot.to_string(), (0, 0));
            }
            if let Some(e) = prefix_stats.get_mut(slot) {
                e.0 += 1;
                e.1 += size;
            }
        }
    }
    report.aux = reader.aux().iter().cloned().collect();
    report.bytes = reader.offset();
    report.biggest_by_size = by_size.into_sorted();
    report.biggest_by_elements = by_elements.into_sorted();
    let mut p: Vec<PrefixStat> = prefix_stats
        .into_iter()
        .map(|(prefix, (keys, bytes))| PrefixStat {
            prefix,
            keys,
            bytes,
        })
        .collect();
    p.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.prefix.cmp(&b.prefix)));
    p.truncate(prefixes);
    report.prefixes = p;
    Ok(report)
}

/// Passes bytes through, counting and hashing them, so that a file read
/// once can be checked against its record afterwards; fails as soon as
/// `stop` is set (another file of the backup failed), since the blocking
/// reader would otherwise read its file to the end regardless.
struct Tap<R> {
    inner: R,
    size: u64,
    sha: Sha256,
    bar: indicatif::ProgressBar,
    stop: Arc<AtomicBool>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopped: another file failed"));
        }
        let n = self.inner.read(buf)?;
        self.size += n as u64;
        self.sha.update(&buf[..n]);
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Analyzes each file of a backup as it streams through its link (in
/// parallel), then checks what was read against the record: the RDB's own
/// CRC-64 (by the reader), the size and the SHA-256. The first failure
/// stops the others.
pub(crate) async fn analyze_links(
    client: &reqwest::Client,
    links: Vec<LinksItem>,
    options: &Options,
    show: bool,
) -> anyhow::Result<Vec<Report>> {
    let bars = indicatif::MultiProgress::new();
    if !show {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = links.into_iter().map(|link| {
        let bar = bars.add(indicatif::ProgressBar::new(
            u64::try_from(link.size).unwrap_or(0),
        ));
        bar.set_style(super::download::style(&link.file_name));
        let (client, options, stop) = (client.clone(), options.clone(), stop.clone());
        async move {
            let result = analyze_link(&client, &link, options, bar, stop.clone()).await;
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            result
        }
    });
    futures::future::try_join_all(tasks).await
}

async fn analyze_link(
    client: &reqwest::Client,
    link: &LinksItem,
    options: Options,
    bar: indicatif::ProgressBar,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Report> {
    // Without the URL: its query string is the link's signature.
    let fetch_failed =
        |e: reqwest::Error| anyhow::anyhow!("{}: {}", link.file_name, e.without_url());
    let resp = client
        .get(&link.link)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(fetch_failed)?;
    let body = tokio_util::io::StreamReader::new(
        resp.bytes_stream()
            .map_err(|e| std::io::Error::other(e.without_url())),
    );
    let mut tap = Tap {
        inner: tokio_util::io::SyncIoBridge::new(body),
        size: 0,
        sha: Sha256::new(),
        bar,
        stop,
    };
    let name = link.file_name.clone();
    let (report, tap) = tokio::task::spawn_blocking(move || {
        let buffered = std::io::BufReader::with_capacity(1 << 20, &mut tap);
        let report = analyze_reader(buffered, &name, &options).and_then(|r| {
            // The reader stops at the dump's end; the rest (there should be
            // none) still counts towards size and digest.
            std::io::copy(&mut tap, &mut std::io::sink()).map_err(|e| format!("{name}: {e}"))?;
            Ok(r)
        });
        tap.bar.finish();
        (report, tap)
    })
    .await?;
    let report = report.map_err(anyhow::Error::msg)?;
    check_record(link, tap.size, &hex::encode(tap.sha.finalize()))?;
    Ok(report)
}

fn check_record(link: &LinksItem, size: u64, sha256: &str) -> anyhow::Result<()> {
    if i64::try_from(size).ok() != Some(link.size) {
        anyhow::bail!(
            "{}: read {size} bytes, the record says {}",
            link.file_name,
            link.size
        );
    }
    if let Some(expected) = &link.sha256
        && expected != sha256
    {
        anyhow::bail!(
            "{}: SHA-256 {sha256}, the record says {expected}",
            link.file_name
        );
    }
    Ok(())
}

/// The human form of a report.
pub(crate) fn render(r: &Report) -> String {
    use super::table;
    let mut out = format!(
        "{}: RDB version {}, {} keys, {} bytes\n\n",
        r.file, r.version, r.keys, r.bytes
    );
    out += &table(
        &["AUX", "VALUE"],
        r.aux
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect(),
    );
    out += "\n\n";
    out += &table(
        &["DB", "KEYS", "EXPIRING"],
        r.databases
            .iter()
            .map(|(db, s)| vec![db.to_string(), s.keys.to_string(), s.expiring.to_string()])
            .collect(),
    );
    out += "\n\n";
    out += &table(
        &["TYPE/ENCODING", "KEYS", "BYTES", "ELEMENTS"],
        r.by_encoding
            .iter()
            .map(|(k, t)| {
                vec![
                    k.clone(),
                    t.keys.to_string(),
                    t.bytes.to_string(),
                    t.elements.to_string(),
                ]
            })
            .collect(),
    );
    for (title, list) in [
        ("BYTES", &r.biggest_by_size),
        ("ELEMENTS", &r.biggest_by_elements),
    ] {
        out += "\n\n";
        out += &table(
            &[title, "DB", "TYPE/ENCODING", "KEY"],
            list.iter()
                .map(|k| {
                    vec![
                        k.measure.to_string(),
                        k.db.to_string(),
                        k.kind.clone(),
                        k.key.clone(),
                    ]
                })
                .collect(),
        );
    }
    out += "\n\n";
    out += &table(
        &["PREFIX", "KEYS", "BYTES"],
        r.prefixes
            .iter()
            .map(|p| vec![p.prefix.clone(), p.keys.to_string(), p.bytes.to_string()])
            .collect(),
    );
    out += "\n\n";
    out += &table(
        &["TTL", "KEYS"],
        r.ttl
            .iter()
            .map(|(b, n)| vec![b.clone(), n.to_string()])
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key that is not UTF-8 goes to the key log as hex.
    #[test]
    fn key_log_lines() {
        let mut dump = b"REDIS0011\xfe\x00".to_vec();
        dump.extend_from_slice(b"\x00\x02\xff\xfe\x01v");
        dump.extend_from_slice(b"\xfc");
        dump.extend_from_slice(&1_900_000_000_000i64.to_le_bytes());
        dump.extend_from_slice(b"\x00\x04user\x02vv\xff");
        let crc = rdb::crc64::crc64(0, &dump);
        dump.extend_from_slice(&crc.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.jsonl");
        let options = Options {
            top: 1,
            separator: ":".into(),
            prefixes: 1,
            keys: Some(KeyLog::create(&path).unwrap()),
        };
        let report = analyze_reader(&dump[..], "d.rdb", &options).unwrap();
        assert_eq!(report.keys, 2);
        options.keys.unwrap().finish().unwrap();
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["key_hex"], "fffe");
        assert!(lines[0].get("key").is_none());
        assert_eq!(lines[0]["expire_ms"], serde_json::Value::Null);
        assert_eq!(lines[1]["key"], "user");
        assert_eq!(lines[1]["expire_ms"], 1_900_000_000_000i64);
        assert_eq!(lines[1]["file"], "d.rdb");
        assert_eq!(lines[1]["kind"], "string/raw");
    }

    #[test]
    fn ttl_buckets() {
        assert_eq!(ttl_bucket(0, 10), "expired");
        assert_eq!(ttl_bucket(30_000, 0), "< 1 min");
        assert_eq!(ttl_bucket(600_000, 0), "< 1 hour");
        assert_eq!(ttl_bucket(7_200_000, 0), "< 1 day");
        assert_eq!(ttl_bucket(200_000_000, 0), "< 1 week");
        assert_eq!(ttl_bucket(900_000_000, 0), ">= 1 week");
    }

    #[test]
    fn top_keeps_the_largest() {
        let mut t = Top::new(2);
        for (i, m) in [5u64, 1, 9, 3, 7].iter().enumerate() {
            t.offer(
                || KeyStat {
                    measure: *m,
                    db: 0,
                    key: i.to_string(),
                    kind: String::new(),
                },
                *m,
            );
        }
        let v: Vec<u64> = t.into_sorted().iter().map(|k| k.measure).collect();
        assert_eq!(v, vec![9, 7]);
    }
}
