//! The HTTP API: routing, authentication of every `/v2` request, request
//! ids, metrics, and the DCS error body for everything that goes wrong.
//! Handlers validate their input and call `meta` / `replication`; they
//! never hold SQL or storage logic of their own.

mod analysis;
pub mod backups;
mod common;
mod console;
pub mod download;
pub(crate) mod download_slots;
pub mod error;
pub mod extract;
pub mod instances;
pub mod links;
pub mod metrics;
pub mod openapi;
pub mod policies;
pub mod restores;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::auth::{Authenticator, Presented, Principal};
use crate::config::Config;
use crate::meta::Meta;
pub use error::{ApiError, ErrorBody};
pub use openapi::Access;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a handler may use; shared by all requests.
pub struct AppState {
    pub config: Config,
    pub meta: Meta,
    pub auth: Authenticator,
    pub objects: crate::objects::Objects,
    pub workers: crate::jobs::Workers,
    /// TLS settings for instances registered with `tls`.
    pub redis_tls: Arc<tokio_rustls::rustls::ClientConfig>,
    /// Signs and verifies download links of the local store.
    pub links: Arc<crate::objects::link_signing::LinkSigner>,
    pub metrics: Arc<metrics::Metrics>,
    /// Backup analyses running on this node (one at a time).
    pub(crate) analyses: tokio::sync::Semaphore,
    /// The downloads running, against their limits.
    pub(crate) downloads: Arc<download_slots::DownloadSlots>,
    /// Base URL of this service as clients reach it.
    pub public_url: String,
}

impl AppState {
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.config.probe_timeout_ms)
    }
}

pub type SharedState = Arc<AppState>;

/// A route of the router: an operation of the document and where it is served.
pub struct Route {
    pub method: Method,
    /// Its path in the document.
    pub documented: String,
    /// The path the router matches: the documented one, but for download
    /// links ([`Access::Link`]), served for any key under the configured bucket.
    pub served: String,
    pub access: Access,
    handler: MethodRouter<SharedState>,
}

/// Every route of the router: each operation of [`openapi::ApiDoc`], at its
/// path and method there, served by its handler from [`openapi::handlers`].
/// The router has no other routes, so it serves what the document says.
pub fn routes(bucket: &str) -> Vec<Route> {
    let handlers = openapi::handlers();
    let doc = openapi::ApiDoc::openapi();
    let mut routes = Vec::new();
    for (path, item) in &doc.paths.paths {
        let operations = [
            (Method::GET, MethodFilter::GET, &item.get),
            (Method::PUT, MethodFilter::PUT, &item.put),
            (Method::POST, MethodFilter::POST, &item.post),
            (Method::DELETE, MethodFilter::DELETE, &item.delete),
            (Method::OPTIONS, MethodFilter::OPTIONS, &item.options),
            (Method::HEAD, MethodFilter::HEAD, &item.head),
            (Method::PATCH, MethodFilter::PATCH, &item.patch),
            (Method::TRACE, MethodFilter::TRACE, &item.trace),
        ];
        for (method, filter, operation) in operations {
            let Some(operation) = operation else {
                continue;
            };
            let id = operation.operation_id.as_deref().unwrap_or_default();
            // Only a changed `operation_id` or two handlers of one name can
            // break this, and then every start and every test fails here.
            let [handler] = handlers
                .iter()
                .filter(|h| h.operation_id == id)
                .collect::<Vec<_>>()[..]
            else {
                panic!("{method} {path}: operation {id:?} needs exactly one handler");
            };
            let served = match handler.access {
                Access::Link => format!("/{bucket}/{{*key}}"),
                Access::Signed | Access::Public => path.clone(),
            };
            routes.push(Route {
                method,
                documented: path.clone(),
                served,
                access: handler.access,
                handler: (handler.route)(filter),
            });
        }
    }
    routes
}

pub fn router(state: SharedState) -> Router {
    let mut signed = Router::new();
    let mut open = Router::new();
    for route in routes(state.objects.bucket()) {
        match route.access {
            Access::Signed => signed = signed.route(&route.served, route.handler),
            Access::Public | Access::Link => open = open.route(&route.served, route.handler),
        }
    }
    let signed = signed
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            within_request_timeout,
        ));

    open.merge(console::assets())
        .merge(signed)
        .fallback(|| async { ApiError::UnknownUrl })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::map_request(drop_unsafe_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
        .with_state(state)
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(req.method().to_string())
}

/// Verifies the SDK signature of a `/v2/{project_id}/...` request and its
/// right to the project, then hands the handler the body it has read (the
/// signature covers the raw bytes, so they are read here, with the size limit).
/// A client's own `X-Request-Id` is kept (tracing across systems) only
/// when it is short and plain: it goes into every log line and back to the
/// client, so anything else is replaced by a generated one.
async fn drop_unsafe_request_id(mut req: Request) -> Request {
    let safe = |v: &[u8]| {
        !v.is_empty()
            && v.len() <= 64
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    if req
        .headers()
        .get(REQUEST_ID)
        .is_some_and(|v| !safe(v.as_bytes()))
    {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

async fn authenticate(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let limit = state.config.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return ApiError::BodyTooLarge(limit).into_response(),
    };
    let path = parts.uri.path();
    let raw_project = path
        .trim_start_matches("/v2/")
        .split('/')
        .next()
        .unwrap_or("");
    let project = percent_encoding::percent_decode_str(raw_project).decode_utf8_lossy();
    if let Err(e) = extract::project_id(&project) {
        return e.into_response();
    }
    // A request signed for another service (a shared gateway, a copied
    // capture) is not answered here, whatever its signature.
    let hosts = state.config.signed_hosts();
    if !hosts.is_empty() {
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !hosts.contains(&host) {
            let shown: String = host.chars().take(100).collect();
            return ApiError::Unauthenticated(crate::auth::AuthError::WrongHost(shown))
                .into_response();
        }
    }
    let presented = Presented {
        method: parts.method.as_str(),
        path,
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &bytes,
    };
    let principal: Principal = match state.auth.verify(&presented, &project, chrono::Utc::now()) {
        Ok(p) => p,
        Err(e @ crate::auth::AuthError::ProjectForbidden(_)) => {
            return ApiError::Forbidden(e).into_response();
        }
        Err(e) => {
            if e == crate::auth::AuthError::UnknownKey {
                tracing::warn!("request signed with an access key no credential has");
            }
            return ApiError::Unauthenticated(e).into_response();
        }
    };
    // ListBackupFileLinks is a POST that changes nothing (links are signed,
    // not stored): it is not counted, so download tools may ask freely.
    let changes = !matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    ) && !parts.uri.path().ends_with("/links");
    if changes && let Err(wait) = state.auth.allow_change(&principal) {
        return ApiError::RateLimited(wait).into_response();
    }
    let mut req = Request::from_parts(parts, axum::body::Body::from(bytes));
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Every signed call, its body read included, is answered within
/// `request_timeout_secs` (a body trickling in byte by byte included).
async fn within_request_timeout(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Response {
    let secs = state.config.request_timeout_secs.max(1);
    match tokio::time::timeout(Duration::from_secs(secs), next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout(secs).into_response(),
    }
}

#[utoipa::path(get, path = "/healthz", tag = "service",
    description = "Health of this node: whether its metadata store answers.",
    security(()),
    responses((status = 200, description = "healthy", content_type = "text/plain", body = String),
              (status = 503, description = "the metadata store is unreachable", content_type = "text/plain", body = String)))]
async fn healthz(State(state): State<SharedState>) -> Response {
    match state.meta.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: metadata store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "metadata store unreachable\n",
            )
                .into_response()
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "service",
    description = "Prometheus metrics of this node.",
    security(()),
    responses((status = 200, description = "the Prometheus text format, version 0.0.4", content_type = "text/plain", body = String)))]
async fn prometheus_metrics(State(state): State<SharedState>) -> Response {
    state.metrics.observe_downloads(state.downloads.running());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const BUCKET: &str = "backups";

    /// The routes outside `/v2`. They are in the document like the DCS
    /// operations (none is left out of it); listed here so that a new one is
    /// a deliberate choice, kept out of the bucket names below.
    const OUTSIDE_V2: &[(&str, &str)] = &[
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/{bucket}/{instance_id}/{backup_id}/{file_name}"),
    ];

    /// Every operation of `/openapi.json` as a client reads it, by method
    /// and path: every key of a path item but its few other fields.
    fn documented() -> BTreeMap<(String, String), serde_json::Value> {
        let doc = serde_json::to_value(openapi::ApiDoc::openapi()).unwrap();
        let mut operations = BTreeMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (key, operation) in item.as_object().unwrap() {
                if ["summary", "description", "servers", "parameters"].contains(&key.as_str())
                    || key.starts_with("x-")
                {
                    continue;
                }
                let method = (key.to_uppercase(), path.clone());
                operations.insert(method, operation.clone());
            }
        }
        operations
    }

    fn served() -> Vec<Route> {
        routes(BUCKET)
    }

    #[test]
    fn the_router_serves_every_operation_of_the_document_and_no_other() {
        let documented: BTreeSet<_> = documented().into_keys().collect();
        let routes = served();
        let served: BTreeSet<_> = routes
            .iter()
            .map(|r| (r.method.to_string(), r.documented.clone()))
            .collect();
        assert_eq!(routes.len(), served.len(), "a route is served twice");
        assert_eq!(
            served.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "served but not documented"
        );
        assert_eq!(
            documented.difference(&served).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "documented but not served"
        );
    }

    #[test]
    fn routes_are_served_at_their_documented_paths() {
        for r in served() {
            match r.access {
                // The handler parses the key itself, to answer a bad one
                // with the S3-style errors clients of a link expect.
                Access::Link => {
                    assert!(r.documented.starts_with("/{bucket}/"), "{}", r.documented);
                    assert_eq!(r.served, format!("/{BUCKET}/{{*key}}"));
                }
                Access::Signed | Access::Public => assert_eq!(r.served, r.documented),
            }
            assert_eq!(
                r.access == Access::Signed,
                r.documented.starts_with("/v2/"),
                "{} {}: /v2 and only /v2 is signed",
                r.method,
                r.documented
            );
        }
    }

    #[test]
    fn routes_outside_v2_are_the_listed_ones() {
        let outside: BTreeSet<_> = documented()
            .into_keys()
            .filter(|(_, path)| !path.starts_with("/v2/"))
            .collect();
        let listed: BTreeSet<_> = OUTSIDE_V2
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(outside, listed);
    }

    /// Download links live under `/{bucket}/`: no bucket may take the first
    /// segment of another route.
    #[test]
    fn no_bucket_shadows_a_route() {
        for r in served().iter().filter(|r| r.access != Access::Link) {
            let first = r.served.trim_start_matches('/').split('/').next().unwrap();
            assert!(
                crate::config::check_bucket_name(first).is_err(),
                "bucket {first:?} would shadow {} {}",
                r.method,
                r.served
            );
        }
    }

    /// The README's API table names the document's operations, no more, no
    /// fewer (`GET`/`HEAD` rows: HEAD comes with GET, as HTTP has it).
    #[test]
    fn readme_api_table_is_the_document() {
        let readme = include_str!("../../../../README.md");
        let mut rows = BTreeSet::new();
        for line in readme.lines() {
            let Some(cell) = line.strip_prefix("| `").and_then(|l| l.split(" |").next()) else {
                continue;
            };
            let cell = cell.replace('`', "");
            let Some((methods, path)) = cell
                .split_once(" /")
                .filter(|(m, _)| m.bytes().all(|b| b.is_ascii_uppercase() || b == b'/'))
            else {
                continue;
            };
            let path = format!("/{}", path.split('?').next().unwrap_or_default());
            for method in methods.split('/').filter(|m| *m != "HEAD") {
                rows.insert((method.to_string(), path.clone()));
            }
        }
        let documented: BTreeSet<_> = documented().into_keys().collect();
        assert_eq!(
            rows, documented,
            "README API table (left) vs the document (right)"
        );
    }

    /// Signed operations inherit the document's SDK-HMAC-SHA256 security;
    /// the others say they need none.
    #[test]
    fn the_document_says_which_operations_are_signed() {
        let documented = documented();
        for r in served() {
            let operation = &documented[&(r.method.to_string(), r.documented.clone())];
            let expected = match r.access {
                Access::Signed => serde_json::Value::Null,
                Access::Public | Access::Link => serde_json::json!([{}]),
            };
            assert_eq!(
                operation["security"], expected,
                "{} {}",
                r.method, r.documented
            );
        }
        let doc = serde_json::to_value(openapi::ApiDoc::openapi()).unwrap();
        assert_eq!(
            doc["security"],
            serde_json::json!([{ "sdk_hmac_sha256": [] }])
        );
    }
}
