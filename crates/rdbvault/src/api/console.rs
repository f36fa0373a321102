//! The web console (`/console/`): a small static front-end compiled into
//! the binary (`console/`), which signs every call to the same API the SDKs
//! use in the browser. Served with a Content-Security-Policy that allows
//! only its own script and style (no inline script), framing refused.
//! `credential` tells the console which projects its key holds.

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use super::error::ApiError;
use super::extract::{Json, Path};
use crate::auth::Principal;

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLE: &str = include_str!("../../console/console.css");

/// Only the console's own files; calls to the API on this origin; no
/// frames, no plugins, no base or form targets elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The console's pages (unauthenticated: they hold no data; every call
/// they make is signed).
pub(crate) fn assets() -> Router<SharedState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CredentialView {
    /// The access key that signed the call.
    pub(crate) access_key: Option<String>,
    /// Every project the credential may act in.
    pub(crate) projects: Vec<String>,
}

#[utoipa::path(get, path = "/v2/{project_id}/rdbvault/credential", tag = "rdbvault",
    description = "The credential that signed the call and the projects it holds (the console's project switcher).",
    params(("project_id" = String, Path)),
    responses((status = 200, body = CredentialView)))]
pub(crate) async fn show_credential(
    State(state): State<SharedState>,
    Path(_project_id): Path<String>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<CredentialView>, ApiError> {
    Ok(Json(CredentialView {
        projects: state.auth.projects_of(&principal),
        access_key: principal.access_key,
    }))
}
