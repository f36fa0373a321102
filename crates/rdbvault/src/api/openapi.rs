//! The OpenAPI 3 document of the whole API, generated from the handlers'
//! annotations and the DTO types, so it cannot drift from the code.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

use super::{backups, download, error, instances, links};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rdbvault",
        description = "Self-hosted Redis/Valkey backup service speaking the Huawei Cloud DCS v2 backup API. \
                       Every /v2 request is signed with SDK-HMAC-SHA256 (Authorization header) as the Huawei Cloud SDKs do."
    ),
    paths(
        instances::list_instances,
        instances::show_instance,
        instances::register_instance,
        instances::show_registration,
        instances::remove_instance,
        backups::create_backup,
        backups::list_backups,
        backups::delete_backup,
        links::list_backup_file_links,
        download::download,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&Security),
    security(("sdk_hmac_sha256" = [])),
    tags(
        (name = "instances", description = "DCS instance reads"),
        (name = "backups", description = "DCS backup records and ListBackupFileLinks"),
        (name = "downloads", description = "Download links of the local store (authenticated by the link)"),
        (name = "rdbvault", description = "rdbvault's own extensions: registering existing Redis deployments"),
    )
)]
pub struct ApiDoc;

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

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
