//! Prometheus metrics: HTTP requests by route and status, latencies by
//! route, jobs by kind and state, what each background task does, and the
//! fleet's backup health (last success, failures, restores, stored bytes).
//! Owned by the server state, not a global registry, so several servers
//! (tests) can live in one process.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::meta::health::{BACKUP_STATUSES, Health, InstanceHealth, RESTORE_STATUSES};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    jobs: Family<JobLabels, Gauge>,
    task_busy: Family<TaskLabels, Gauge>,
    task_runs: Family<TaskLabels, Gauge>,
    task_failures: Family<TaskLabels, Gauge>,
    health: Arc<HealthCollector>,
    orphaned_objects: Gauge,
    orphaned_bytes: Gauge,
    pending_uploads: Gauge,
    downloads_running: Gauge,
    downloads_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rdbvault");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        let jobs = Family::<JobLabels, Gauge>::default();
        registry.register(
            "jobs",
            "Jobs in the queue (every node's) by kind and state",
            jobs.clone(),
        );
        let task_busy = Family::<TaskLabels, Gauge>::default();
        registry.register(
            "background_task_busy",
            "1 while a background task of this node is working, else 0",
            task_busy.clone(),
        );
        let task_runs = Family::<TaskLabels, Gauge>::default();
        registry.register(
            "background_task_runs",
            "Rounds or jobs a background task of this node has finished",
            task_runs.clone(),
        );
        let task_failures = Family::<TaskLabels, Gauge>::default();
        registry.register(
            "background_task_failures",
            "Rounds or jobs of a background task of this node that failed",
            task_failures.clone(),
        );
        let health = Arc::new(HealthCollector::default());
        registry.register_collector(Box::new(health.clone()));
        let orphaned_objects = Gauge::default();
        registry.register(
            "store_orphaned_objects",
            "Objects in the store that no backup record owns, at the last store sweep (review with `rdbvault store sweep`)",
            orphaned_objects.clone(),
        );
        let orphaned_bytes = Gauge::default();
        registry.register(
            "store_orphaned_bytes",
            "Bytes of the objects no backup record owns, at the last store sweep",
            orphaned_bytes.clone(),
        );
        let pending_uploads = Gauge::default();
        registry.register(
            "store_pending_uploads",
            "Multipart uploads recorded and neither completed nor aborted, at the last store sweep",
            pending_uploads.clone(),
        );
        let downloads_running = Gauge::default();
        registry.register(
            "downloads_running",
            "Downloads through links of the local store being served by this node",
            downloads_running.clone(),
        );
        let downloads_refused = Counter::default();
        registry.register(
            "downloads_refused",
            "Downloads answered 503 SlowDown because a download limit was reached",
            downloads_refused.clone(),
        );
        Metrics {
            health,
            downloads_running,
            downloads_refused,
            orphaned_objects,
            orphaned_bytes,
            pending_uploads,
            registry,
            requests,
            latency,
            jobs,
            task_busy,
            task_runs,
            task_failures,
        }
    }
}

impl Metrics {
    /// Takes in the background tasks' statuses and the job counts.
    pub fn observe_background(
        &self,
        tasks: &std::collections::BTreeMap<String, crate::jobs::background::TaskStatus>,
        jobs: &[(crate::meta::JobKind, crate::meta::JobState, i64)],
    ) {
        use crate::jobs::background::Activity;
        use crate::meta::{JobKind, JobState};
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (name, status) in tasks {
            let labels = TaskLabels { task: name.clone() };
            let busy = matches!(status.activity, Activity::Busy(_));
            self.task_busy.get_or_create(&labels).set(i64::from(busy));
            self.task_runs
                .get_or_create(&labels)
                .set(gauge(status.runs));
            self.task_failures
                .get_or_create(&labels)
                .set(gauge(status.failures));
        }
        // Every kind and state, zeros included, so a series drops to 0
        // rather than vanishing when its last job moves on.
        for kind in JobKind::ALL {
            for state in JobState::ALL {
                let n = jobs
                    .iter()
                    .find(|(k, s, _)| *k == kind && *s == state)
                    .map_or(0, |(_, _, n)| *n);
                let labels = JobLabels {
                    kind: kind.as_str().into(),
                    state: state.as_str().into(),
                };
                self.jobs.get_or_create(&labels).set(n);
            }
        }
    }

    /// Takes in the backup health read from the metadata store; `storage`
    /// names the store this node writes to (`local`, `s3`).
    /// Takes in what the last store sweep found.
    pub fn observe_orphans(&self, found: &crate::jobs::orphans::Orphans) {
        self.orphaned_objects
            .set(i64::try_from(found.objects.len()).unwrap_or(i64::MAX));
        self.orphaned_bytes
            .set(i64::try_from(found.bytes()).unwrap_or(i64::MAX));
        self.pending_uploads.set(found.pending_uploads);
    }

    pub(crate) fn observe_downloads(&self, running: usize) {
        self.downloads_running
            .set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    pub(crate) fn download_refused(&self) {
        self.downloads_refused.inc();
    }

    pub fn observe_health(&self, health: Health, storage: &'static str) {
        let snapshot = HealthSnapshot {
            health,
            storage,
            taken_at: chrono::Utc::now(),
        };
        // A poisoned lock (a panic mid-swap) keeps the old values.
        if let Ok(mut current) = self.health.0.write() {
            *current = Some(snapshot);
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Middleware: counts and times every request by its route template (never
/// the raw path, whose ids would make the label set unbounded).
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { method, route })
        .observe(elapsed);
    response
}

/// The last health snapshot, swapped whole at each refresh so a scrape
/// never sees half of one, and rendered as constant series: an instance
/// deregistered (or a status no longer present) simply stops appearing,
/// with nothing to forget in a long-lived family.
#[derive(Debug, Default)]
struct HealthCollector(RwLock<Option<HealthSnapshot>>);

#[derive(Debug)]
struct HealthSnapshot {
    health: Health,
    storage: &'static str,
    taken_at: chrono::DateTime<chrono::Utc>,
}

/// A label value from a record (an instance's name, an error code),
/// escaped as the text format requires: prometheus-client writes label
/// values verbatim, and a `"` or a newline in one would break the
/// exposition.
#[derive(Debug, Clone, Copy)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

type Labels<'a> = Vec<(&'static str, Escaped<'a>)>;

/// The labels that name an instance in its own series.
fn ident(i: &InstanceHealth) -> Labels<'_> {
    vec![
        ("instance_id", Escaped(&i.id)),
        ("instance_name", Escaped(&i.name)),
        ("project_id", Escaped(&i.project_id)),
    ]
}

fn by_id(i: &InstanceHealth) -> Labels<'_> {
    vec![("instance_id", Escaped(&i.id))]
}

fn seconds(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// One gauge family: its HELP and TYPE, then each sample.
fn gauges<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels<'_>, V)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        family.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

impl Collector for HealthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(guard) = self.0.read() else {
            return Ok(());
        };
        // Nothing before the first refresh: no series is better than
        // zeros that would claim there are no instances.
        let Some(snap) = guard.as_ref() else {
            return Ok(());
        };
        let h = &snap.health;

        let info: Vec<_> = h.instances.iter().map(|i| (ident(i), 1i64)).collect();
        gauges(
            &mut encoder,
            "instance_info",
            "Every registered instance, 1; its labels name it (join on instance_id).",
            &info,
        )?;

        let ok = || {
            h.instances
                .iter()
                .filter_map(|i| i.last_success.as_ref().map(|s| (i, s)))
        };
        let when: Vec<_> = ok()
            .map(|(i, s)| (ident(i), seconds(s.finished_at)))
            .collect();
        gauges(
            &mut encoder,
            "backup_last_success_timestamp_seconds",
            "When the newest successful backup of the instance finished (unix seconds); \
             absent while none has succeeded.",
            &when,
        )?;
        let took: Vec<_> = ok()
            .map(|(i, s)| (ident(i), s.duration.as_secs_f64()))
            .collect();
        gauges(
            &mut encoder,
            "backup_last_success_duration_seconds",
            "How long the newest successful backup of the instance took, from its start to its end.",
            &took,
        )?;
        let size: Vec<_> = ok().map(|(i, s)| (ident(i), s.bytes)).collect();
        gauges(
            &mut encoder,
            "backup_last_success_bytes",
            "Stored bytes of the newest successful backup of the instance.",
            &size,
        )?;
        let in_a_row: Vec<_> = h
            .instances
            .iter()
            .map(|i| (by_id(i), i.consecutive_failures))
            .collect();
        gauges(
            &mut encoder,
            "backup_consecutive_failures",
            "Failed backups of the instance since its last successful one (0 after a success).",
            &in_a_row,
        )?;

        {
            let mut failures = encoder.encode_descriptor(
                "backup_failures",
                "Failed backup records by instance and error code. Counted from the records: it only \
                 grows while they stay; deleting a failed record or the instance lowers it, which \
                 Prometheus takes as a counter reset.",
                None,
                MetricType::Counter,
            )?;
            for c in h.backups.iter().filter(|c| c.status == "failed") {
                let labels: Labels<'_> = vec![
                    ("instance_id", Escaped(&c.instance_id)),
                    ("error_code", Escaped(&c.error_code)),
                ];
                let n = u64::try_from(c.count).unwrap_or(0);
                failures
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }

        // Every status of every instance, zeros included, so a series drops
        // to 0 rather than vanishing when its last record moves on.
        let mut by_status = Vec::new();
        for i in &h.instances {
            for status in BACKUP_STATUSES.map(|s| s.as_str()) {
                let n: i64 = h
                    .backups
                    .iter()
                    .filter(|c| c.instance_id == i.id && c.status == status)
                    .map(|c| c.count)
                    .sum();
                by_status.push((
                    vec![("instance_id", Escaped(&i.id)), ("status", Escaped(status))],
                    n,
                ));
            }
        }
        gauges(
            &mut encoder,
            "backups",
            "Backup records of the instance by status.",
            &by_status,
        )?;

        let policy = || {
            h.instances
                .iter()
                .filter_map(|i| i.auto_policy.as_ref().map(|p| (i, p)))
        };
        let interval: Vec<_> = policy()
            .filter_map(|(i, p)| {
                p.longest_gap_days
                    .map(|d| (ident(i), i64::from(d) * 86_400))
            })
            .collect();
        gauges(
            &mut encoder,
            "backup_policy_interval_seconds",
            "Instances with an automatic backup policy: the longest wait between two planned \
             backups (86400 when every day is planned).",
            &interval,
        )?;
        let set_at: Vec<_> = policy()
            .map(|(i, p)| (ident(i), seconds(p.set_at)))
            .collect();
        gauges(
            &mut encoder,
            "backup_policy_timestamp_seconds",
            "Instances with an automatic backup policy: when it was last set (unix seconds).",
            &set_at,
        )?;

        let restores: Vec<_> = RESTORE_STATUSES
            .map(|s| s.as_str())
            .into_iter()
            .map(|status| {
                let n = h
                    .restores
                    .iter()
                    .filter(|(s, _)| s == status)
                    .map(|(_, n)| *n)
                    .sum::<i64>();
                (vec![("status", Escaped(status))], n)
            })
            .collect();
        gauges(
            &mut encoder,
            "restores",
            "Restore records by status.",
            &restores,
        )?;
        let mut last_restore = Vec::new();
        for i in &h.instances {
            let Some(last) = &i.last_restore else {
                continue;
            };
            for status in RESTORE_STATUSES.map(|s| s.as_str()) {
                let is = i64::from(last == status);
                last_restore.push((
                    vec![("instance_id", Escaped(&i.id)), ("status", Escaped(status))],
                    is,
                ));
            }
        }
        gauges(
            &mut encoder,
            "restore_last_status",
            "1 for the status of the newest restore into the instance, 0 for the others; \
             absent while none was asked.",
            &last_restore,
        )?;

        let stored: i64 = h
            .backups
            .iter()
            .filter(|c| c.status == "succeed")
            .map(|c| c.bytes)
            .sum();
        gauges(
            &mut encoder,
            "store_bytes",
            "Bytes of the successful backups kept in the object store, from their records.",
            &[(vec![("storage", Escaped(snap.storage))], stored)],
        )?;

        let waiting: Vec<_> = crate::meta::JobKind::ALL
            .into_iter()
            .map(|kind| {
                let age = h
                    .oldest_queued
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(0.0, |(_, at)| {
                        (snap.taken_at - *at).num_milliseconds().max(0) as f64 / 1000.0
                    });
                (vec![("kind", Escaped(kind.as_str()))], age)
            })
            .collect();
        gauges(
            &mut encoder,
            "jobs_oldest_queued_seconds",
            "How long the oldest queued job of the kind has waited for a worker, as of the last \
             refresh (0 when none is queued).",
            &waiting,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::health::{AutoPolicy, BackupCount, InstanceHealth, LastSuccess};

    #[test]
    fn health_renders_as_exposition_with_escaped_labels() {
        let metrics = Metrics::default();
        assert!(
            !metrics.render().contains("rdbvault_instance_info"),
            "nothing claimed before the first refresh"
        );
        let at = chrono::DateTime::from_timestamp_millis(1_700_000_000_250).unwrap_or_default();
        let count = |status: &str, code: &str, count, bytes| BackupCount {
            instance_id: "i1".into(),
            status: status.into(),
            error_code: code.into(),
            count,
            bytes,
        };
        metrics.observe_health(
            Health {
                instances: vec![InstanceHealth {
                    id: "i1".into(),
                    name: "a\"b\\c\nd".into(),
                    project_id: "p".into(),
                    last_success: Some(LastSuccess {
                        finished_at: at,
                        duration: std::time::Duration::from_millis(1500),
                        bytes: 42,
                    }),
                    consecutive_failures: 2,
                    auto_policy: Some(AutoPolicy {
                        set_at: at,
                        longest_gap_days: Some(3),
                    }),
                    last_restore: Some("failed".into()),
                }],
                backups: vec![
                    count("succeed", "", 1, 42),
                    count("failed", "dcs.08.0101", 2, 0),
                ],
                restores: vec![("failed".into(), 1)],
                oldest_queued: Vec::new(),
            },
            "s3",
        );
        let text = metrics.render();
        let ident = r#"{instance_id="i1",instance_name="a\"b\\c\nd",project_id="p"}"#;
        for line in [
            "# TYPE rdbvault_backup_last_success_timestamp_seconds gauge".to_string(),
            format!("rdbvault_backup_last_success_timestamp_seconds{ident} 1700000000.25"),
            format!("rdbvault_backup_last_success_duration_seconds{ident} 1.5"),
            format!("rdbvault_backup_last_success_bytes{ident} 42"),
            format!("rdbvault_backup_policy_interval_seconds{ident} 259200"),
            format!("rdbvault_instance_info{ident} 1"),
            r#"rdbvault_backup_consecutive_failures{instance_id="i1"} 2"#.into(),
            "# TYPE rdbvault_backup_failures counter".into(),
            r#"rdbvault_backup_failures_total{instance_id="i1",error_code="dcs.08.0101"} 2"#.into(),
            r#"rdbvault_backups{instance_id="i1",status="deleted"} 0"#.into(),
            r#"rdbvault_restores{status="failed"} 1"#.into(),
            r#"rdbvault_restore_last_status{instance_id="i1",status="failed"} 1"#.into(),
            r#"rdbvault_restore_last_status{instance_id="i1",status="succeed"} 0"#.into(),
            r#"rdbvault_store_bytes{storage="s3"} 42"#.into(),
            r#"rdbvault_jobs_oldest_queued_seconds{kind="backup"} 0.0"#.into(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        // The health families sit inside the exposition, before its end.
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
