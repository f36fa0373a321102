//! The OpenAPI 3 document of the whole API, generated from the handlers'
//! annotations and the DTO types, and the list of operations it is generated
//! from. The router serves the same list (`api::routes`): each handler at the
//! path and methods its `#[utoipa::path]` names, so the document lists every
//! route and every route is in the document. Adding an operation is adding
//! its handler to [`operations!`]'s invocation below.

use axum::Json;
use axum::extract::State;
use axum::routing::{MethodFilter, MethodRouter};
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Content, Header, Ref, RefOr, Response};

use super::extract::{DOWNLOAD_ID_PATTERN, FILE_NAME_PATTERN, PROJECT_ID_PATTERN, UUID_PATTERN};
use super::{
    SharedState, analysis, backups, console, download, error, instances, links, policies, restores,
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
            modifiers(&Security, &Contract),
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

/// What every operation may answer besides its own results, and the format
/// of every path parameter, added to each operation by its [`Access`] so no
/// handler can forget one: a schema-driven client (or fuzzer) meets no
/// status the document does not name. The statuses are those of the layers
/// every such request passes (`api::authenticate`, the request timeout, the
/// extractors of `api::extract`) and of the handlers' lookups; a handler's
/// own description of one of them, where it has a more precise one, is kept.
struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let handlers = handlers();
        let access = |op: &Operation| {
            let id = op.operation_id.as_deref().unwrap_or_default();
            handlers
                .iter()
                .find(|h| h.operation_id == id)
                .map(|h| h.access)
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in operations.into_iter().flatten() {
                let Some(access) = access(op) else { continue };
                path_formats(op, access);
                let mut errors = match access {
                    Access::Signed => signed_errors(path, op),
                    Access::Link => link_errors(),
                    Access::Public => Vec::new(),
                };
                errors.extend(transport_errors());
                for (status, response) in errors {
                    let specific = matches!(
                        op.responses.responses.get(status),
                        Some(RefOr::T(r)) if !r.description.is_empty()
                    );
                    if !specific {
                        op.responses
                            .responses
                            .insert(status.to_string(), RefOr::T(response));
                    }
                }
                if access != Access::Public {
                    // Both answers say when to try again, whoever described them.
                    for status in ["429", "503"] {
                        if let Some(RefOr::T(r)) = op.responses.responses.get_mut(status)
                            && !r.headers.contains_key("Retry-After")
                        {
                            *r = retry_after(r.clone());
                        }
                    }
                }
                if access == Access::Link {
                    // Only the configured bucket is served (see `served`):
                    // under any other, the router's own DCS error answers.
                    if let Some(RefOr::T(r)) = op.responses.responses.get_mut("404") {
                        r.description.push_str(
                            "; under another bucket the URL is not served (`DCS.4001`, JSON)",
                        );
                        r.content.insert(
                            "application/json".into(),
                            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                        );
                    }
                }
            }
        }
    }
}

/// The format of each path parameter, as its validator checks it
/// (`api::extract`; the download handler's for its key).
fn path_formats(op: &mut Operation, access: Access) {
    for p in op.parameters.iter_mut().flatten() {
        if p.parameter_in != ParameterIn::Path {
            continue;
        }
        let (pattern, what) = match (p.name.as_str(), access) {
            ("project_id", _) => (PROJECT_ID_PATTERN, "1 to 64 of `[A-Za-z0-9_-]`"),
            ("instance_id" | "backup_id", Access::Link) => (
                DOWNLOAD_ID_PATTERN,
                "a UUID, hyphenated or as 32 hex digits",
            ),
            ("instance_id" | "backup_id", _) => (
                UUID_PATTERN,
                "a UUID: hyphenated, 32 hex digits, braced or `urn:uuid:`",
            ),
            ("file_name", Access::Link) => (
                FILE_NAME_PATTERN,
                "letters, digits, `-`, `_`, `.`, but not `.` or `..`",
            ),
            _ => continue,
        };
        p.schema = Some(RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
                .description(Some(what))
                .build(),
        )));
    }
}

/// A DCS error answer: the JSON error body.
fn dcs_error(description: &str) -> Response {
    let mut r = Response::new(description);
    r.content.insert(
        "application/json".into(),
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    );
    r
}

/// An S3-style error answer of a download link: an XML `<Error>` body.
fn xml_error(description: &str) -> Response {
    let mut r = Response::new(description);
    r.content.insert(
        "application/xml".into(),
        Content::new(Some(ObjectBuilder::new().schema_type(Type::String).build())),
    );
    r
}

/// `response`, with the `Retry-After` header it carries.
fn retry_after(mut response: Response) -> Response {
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .build();
    let mut header = Header::new(seconds);
    header.description = Some("seconds to wait before trying again".into());
    response.headers.insert("Retry-After".into(), header);
    response
}

/// What a signed operation may answer besides its results. `path` says
/// whether it looks an instance (and a backup) up.
fn signed_errors(path: &str, op: &Operation) -> Vec<(&'static str, Response)> {
    let mut errors = vec![
        (
            "400",
            dcs_error(
                "refused, `error_code` says why: an invalid parameter (`DCS.4800`), project id \
                 (`DCS.4002`), instance id (`DCS.4061`) or backup id (`DCS.4934`), an empty body \
                 (`DCS.4004`) or one that is not JSON (`DCS.4005`), or a state of the instance or \
                 backup that does not allow the operation",
            ),
        ),
        (
            "401",
            dcs_error(
                "no valid SDK-HMAC-SHA256 signature: no `Authorization` (`DCS.1003`), `X-Sdk-Date` \
                 more than 15 minutes away (`DCS.1002`), any other refused signature (`DCS.1001`)",
            ),
        ),
        (
            "403",
            dcs_error("the credential does not hold the project (`DCS.1004`)"),
        ),
        (
            "408",
            dcs_error("not answered within `request_timeout_secs` (`DCS.4080`)"),
        ),
        (
            "413",
            dcs_error("the body is larger than `max_body_bytes` (`DCS.4913`)"),
        ),
        (
            "429",
            retry_after(dcs_error(
                "too many failed signatures for the access key (`DCS.4960`), or too many calls \
                 that change something (`DCS.4961`); retry after `Retry-After` seconds",
            )),
        ),
        (
            "500",
            dcs_error(
                "an internal error, logged with the request id (`DCS.5000`); or deleting a \
                 backup's files failed (`DCS.4101`)",
            ),
        ),
        (
            "503",
            retry_after(dcs_error(
                "the service is busy; retry after `Retry-After` seconds",
            )),
        ),
    ];
    if path.contains("{instance_id}") {
        errors.push((
            "404",
            dcs_error(
                "the instance (`DCS.3022`) or backup (`DCS.4930`, `DCS.4932`, `DCS.4933`) named \
                 does not exist in the project",
            ),
        ));
    }
    if op.request_body.is_some() {
        errors.push((
            "415",
            dcs_error("the body is not `application/json` (`DCS.4915`)"),
        ));
    }
    errors
}

/// What the HTTP server answers before any route, for a request its parser
/// refuses (`http::stack_errors`): with the DCS error body, whatever the URL.
fn transport_errors() -> Vec<(&'static str, Response)> {
    vec![
        (
            "414",
            dcs_error("the request URI is longer than the server reads (`DCS.4014`)"),
        ),
        (
            "431",
            dcs_error("the request headers are larger than the server reads (`DCS.4031`)"),
        ),
    ]
}

/// What a download link may answer besides the file: S3-style XML errors.
fn link_errors() -> Vec<(&'static str, Response)> {
    vec![
        ("400", xml_error("`InvalidArgument`: a malformed `Expires`")),
        (
            "403",
            xml_error(
                "`AccessDenied`: a bad, tampered or expired link, or a path that names no backup file",
            ),
        ),
        (
            "404",
            xml_error("`NoSuchKey`: the backup or its file no longer exists"),
        ),
        (
            "416",
            Response::new(
                "the range is not satisfiable (`Content-Range: bytes */<length>`, no body)",
            ),
        ),
        ("500", xml_error("`InternalError`")),
        (
            "503",
            retry_after(xml_error(
                "`SlowDown`: a download limit is reached; retry after `Retry-After` seconds",
            )),
        ),
    ]
}

/// The document as this node serves it: download links live under the
/// configured bucket only, so that is the one value `{bucket}` takes.
pub(crate) fn served(bucket: &str) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.head].into_iter().flatten() {
            for p in op.parameters.iter_mut().flatten() {
                if p.parameter_in == ParameterIn::Path && p.name == "bucket" {
                    p.schema = Some(RefOr::T(Schema::Object(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some([bucket]))
                            .description(Some("the bucket of the local store (`bucket`)"))
                            .build(),
                    )));
                }
            }
        }
    }
    doc
}

#[utoipa::path(get, path = "/openapi.json", tag = "service",
    description = "This document.",
    security(()),
    responses((status = 200, description = "the OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json(State(state): State<SharedState>) -> Json<utoipa::openapi::OpenApi> {
    Json(served(state.objects.bucket()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::api::error::Entry;

    /// Every operation of the document with its access, as a client reads it.
    fn operations(doc: &Value) -> Vec<(String, String, Access, Value)> {
        let handlers = handlers();
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let Some(h) = handlers
                    .iter()
                    .find(|h| op["operationId"] == h.operation_id)
                else {
                    continue;
                };
                out.push((method.clone(), path.clone(), h.access, op.clone()));
            }
        }
        out
    }

    fn statuses(op: &Value) -> BTreeSet<String> {
        op["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn every_operation_documents_every_refusal_it_can_answer() {
        let doc = serde_json::to_value(served("backups")).expect("document");
        let ops = operations(&doc);
        assert!(ops.iter().filter(|o| o.2 == Access::Signed).count() >= 12);
        for (method, path, access, op) in &ops {
            let what = format!("{method} {path}");
            let has = statuses(op);
            let mut expected: Vec<&str> = vec!["414", "431"];
            match access {
                Access::Signed => {
                    expected.extend(["400", "401", "403", "408", "413", "429", "500", "503"]);
                    if path.contains("{instance_id}") {
                        expected.push("404");
                    }
                    assert_eq!(
                        has.contains("415"),
                        !op["requestBody"].is_null(),
                        "{what}: 415 exactly when it takes a body"
                    );
                    for (status, response) in op["responses"].as_object().expect("responses") {
                        if status.starts_with('4') || status.starts_with('5') {
                            assert_eq!(
                                response["content"]["application/json"]["schema"]["$ref"],
                                "#/components/schemas/ErrorBody",
                                "{what} {status}: the DCS error body"
                            );
                            assert!(
                                !response["description"].as_str().unwrap_or("").is_empty(),
                                "{what} {status}: described"
                            );
                        }
                    }
                }
                Access::Link => {
                    expected.extend(["400", "403", "404", "416", "500", "503"]);
                    for status in ["400", "403", "404", "500", "503"] {
                        assert!(
                            op["responses"][status]["content"]["application/xml"].is_object(),
                            "{what} {status}: S3-style XML"
                        );
                    }
                    assert!(
                        op["responses"]["404"]["content"]["application/json"].is_object(),
                        "{what}: another bucket is the router's JSON 404"
                    );
                }
                Access::Public => {}
            }
            for status in expected {
                assert!(has.contains(status), "{what} does not document {status}");
            }
            for status in ["429", "503"] {
                if has.contains(status) && *access != Access::Public {
                    assert!(
                        op["responses"][status]["headers"]["Retry-After"].is_object(),
                        "{what} {status}: Retry-After"
                    );
                }
            }
        }
    }

    /// Every status of the error catalogue is documented on some operation
    /// (but 405, the answer to a method the document does not name): a new
    /// error with a new status cannot be left out of the document.
    #[test]
    fn every_status_of_the_catalogue_is_documented() {
        let doc = serde_json::to_value(served("backups")).expect("document");
        let documented: BTreeSet<String> = operations(&doc)
            .iter()
            .flat_map(|(_, _, _, op)| statuses(op))
            .collect();
        for entry in Entry::ALL {
            let status = entry.status().as_u16().to_string();
            if status == "405" {
                continue;
            }
            assert!(
                documented.contains(&status),
                "{} ({status}) is documented nowhere",
                entry.code()
            );
        }
    }

    /// Every path parameter says its format: a pattern, or the one value
    /// (`bucket`) this node serves.
    #[test]
    fn every_path_parameter_has_its_format() {
        let doc = serde_json::to_value(served("backups")).expect("document");
        for (method, path, _, op) in operations(&doc) {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] != "path" {
                    continue;
                }
                let schema = &p["schema"];
                assert!(
                    schema["pattern"].is_string()
                        || schema["enum"] == serde_json::json!(["backups"]),
                    "{method} {path}: {} has no format",
                    p["name"]
                );
            }
        }
    }
}
