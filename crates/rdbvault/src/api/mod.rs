//! The HTTP API: routing, authentication of every `/v2` request, request
//! ids, metrics, and the DCS error body for everything that goes wrong.
//! Handlers validate their input and call `meta` / `replication`; they
//! never hold SQL or storage logic of their own.

pub mod backups;
pub mod download;
pub mod error;
pub mod extract;
pub mod instances;
pub mod links;
pub mod metrics;
pub mod openapi;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::{Authenticator, Presented, Principal};
use crate::config::Config;
use crate::meta::Meta;
pub use error::{ApiError, ErrorBody};

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
    pub links: Arc<crate::objects::links::LinkSigner>,
    pub metrics: Arc<metrics::Metrics>,
    /// Base URL of this service as clients reach it.
    pub public_url: String,
}

impl AppState {
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.config.probe_timeout_ms)
    }
}

pub type SharedState = Arc<AppState>;

pub fn router(state: SharedState) -> Router {
    let dcs = Router::new()
        .merge(instances::routes())
        .merge(backups::routes())
        .merge(links::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));

    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(openapi::serve))
        // Download links of the local store; authenticated by the link itself.
        .route(&format!("/{}/{{*key}}", state.objects.bucket()), get(download::download))
        .merge(dcs)
        .fallback(|| async { ApiError::UnknownUrl })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(
            ServiceBuilder::new()
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
        Err(e) => return ApiError::Unauthenticated(e).into_response(),
    };
    let mut req = Request::from_parts(parts, axum::body::Body::from(bytes));
    req.extensions_mut().insert(principal);
    next.run(req).await
}

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

async fn render_metrics(State(state): State<SharedState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The principal a request was authenticated as (anonymous with `auth = "none"`).
pub type Caller = Extension<Principal>;
