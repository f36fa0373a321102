//! The OpenAPI 3 document of the whole API, generated from the handlers'
//! annotations and the DTO types, and the list of operations it is generated
//! from. The router serves the same list (`api::routes`): each handler at the
//! path and methods its `#[utoipa::path]` names, so the document lists every
//! route and every route is in the document. Adding an operation is adding
//! its handler to [`operations!`]'s invocation below.

use axum::Json;
use axum::routing::{MethodFilter, MethodRouter};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

use super::{
    SharedState, analysis, backups, console, download, error, instances, links, policies,
    restores,
};

/// Who may call an operation, and so how the router guards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Signed with SDK-HMAC-SHA256 by a credential holding the project
    /// (`api::authenticate`); the document's default security.
    Signed,
    /// Anyone: health, metrics and this document (`security(())`).
    Public,
    /// A download link of the local store, authenticated by the link itself
    /// (`security(())`). Served for any key under the configured bucket: the
    /// handler parses the key and answers S3-style errors for a bad one.
    Link,
}

/// The handler of one operation of [`ApiDoc`].
pub struct Handler {
    /// The operation's `operationId`: utoipa's default, the handler's name.
    pub operation_id: &'static str,
    pub access: Access,
    /// The handler, routed for the given methods.
    pub route: fn(MethodFilter) -> MethodRouter<SharedState>,
}

/// Declares [`ApiDoc`] and [`handlers`] from one list of handlers, by access.
macro_rules! operations {
    ($($access:ident: [$($module:ident::$handler:ident),+ $(,)?],)+) => {
        #[derive(OpenApi)]
        #[openapi(
            info(
                title = "rdbvault",
                description = "Self-hosted Redis/Valkey backup service speaking the Huawei Cloud DCS v2 backup API. \
                               Every /v2 request is signed with SDK-HMAC-SHA256 (Authorization header) as the Huawei Cloud SDKs do."
            ),
            paths($($($module::$handler,)+)+),
            components(schemas(error::ErrorBody)),
            modifiers(&Security),
            security(("sdk_hmac_sha256" = [])),
            tags(
                (name = "instances", description = "DCS instance reads"),
                (name = "backups", description = "DCS backup records and ListBackupFileLinks"),
                (name = "restores", description = "DCS restores of backups into instances"),
                (name = "downloads", description = "Download links of the local store (authenticated by the link)"),
                (name = "rdbvault", description = "rdbvault's own extensions: registering existing Redis deployments"),
                (name = "service", description = "Health, metrics and this document; unauthenticated"),
            )
        )]
        pub struct ApiDoc;

        /// The handler of every operation of [`ApiDoc`].
        pub fn handlers() -> Vec<Handler> {
            vec![$($(Handler {
                operation_id: stringify!($handler),
                access: Access::$access,
                route: |methods| axum::routing::on(methods, $module::$handler),
            },)+)+]
        }
    };
}

operations! {
    Signed: [
        instances::list_instances,
        instances::show_instance,
        policies::update_instance,
        instances::register_instance,
        instances::show_registration,
        instances::remove_instance,
        backups::create_backup,
        backups::list_backups,
        backups::delete_backup,
        links::list_backup_file_links,
        restores::restore_instance,
        restores::list_restore_records,
        console::show_credential,
        analysis::analyze_backup,
    ],
    Public: [
        super::healthz,
        super::prometheus_metrics,
        self::openapi_json,
    ],
    Link: [
        download::download,
    ],
}

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "sdk_hmac_sha256",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<list>, Signature=<hex>; needs X-Sdk-Date",
            ))),
        );
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "service",
    description = "This document.",
    security(()),
    responses((status = 200, description = "the OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
