//! Prometheus metrics: HTTP requests by route and status, latencies by
//! route, jobs by kind and state, and what each background task does.
//! Owned by the server state, not a global registry, so several servers
//! (tests) can live in one process.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
        Metrics {
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
