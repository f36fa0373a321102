//! Instances: the DCS reads (`list_instances`, `show_instance`) and
//! rdbvault's own registration extension under `/v2/{project_id}/rdbvault/instances`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::SharedState;
use super::common::{dcs_time, find, parse_limit, parse_offset, schema};
use super::error::{ApiError, ErrorBody};
use super::extract::{self, Json, Path, Query};
use super::policies::{BackupPolicyBody, InstanceBackupPolicyView};
use crate::meta::{Instance, InstanceFilter, MetaError, Mode, NewInstance, Secret};
use crate::redis_addr::RedisAddr;
use crate::replication::Endpoint;
use crate::replication::probe::{NodeInfo, probe};

/// Registration of an existing Redis deployment (rdbvault extension). A
/// `single` instance has exactly one address; a `user` needs a `password`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterInstanceBody {
    #[schema(schema_with = name_schema)]
    pub(crate) name: String,
    pub(crate) mode: Mode,
    #[schema(schema_with = addrs_schema)]
    pub(crate) addrs: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = user_schema)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    #[schema(schema_with = password_schema)]
    pub(crate) password: Option<String>,
    #[serde(default)]
    pub(crate) tls: bool,
    /// Check at registration that the instance answers, accepts the
    /// credentials and is deployed as `mode` says (default true).
    #[serde(default = "yes")]
    pub(crate) verify: bool,
    /// DCS `BackupPolicy`: automatic backups and their retention (as
    /// `update_instance` sets it).
    #[serde(default, deserialize_with = "extract::object::option")]
    pub(crate) instance_backup_policy: Option<BackupPolicyBody>,
}

fn yes() -> bool {
    true
}

/// An instance name, as [`validate_registration`] checks it.
const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";
/// An ACL user: 1 to 128 characters, no white space, no control character
/// (Rust's `char::is_whitespace` and `is_control`, listed: regex `\s`
/// differs between dialects).
const USER_PATTERN: &str =
    "^[^\\x00-\\x20\\x7F-\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]{1,128}$";
/// A password: 1 to 512 characters, no line break.
const PASSWORD_PATTERN: &str = "^[^\\r\\n]{1,512}$";

fn name_schema() -> utoipa::openapi::schema::Object {
    schema::text(
        NAME_PATTERN,
        false,
        "1 to 64 characters: letters, digits, `-`, `_`, `.`; starts with a letter or digit; unique in the project",
    )
}

fn addrs_schema() -> utoipa::openapi::schema::Array {
    schema::list(
        schema::text(
            crate::redis_addr::ADDR_PATTERN,
            false,
            "`host:port` (a host name of at most 253 characters, or IPv4) or `[ipv6]:port`",
        ),
        Some(16),
        true,
        "the node (`single`: exactly one), the master and/or replicas (`ha`), or any cluster nodes \
         (`cluster`); 1 to 16, each once",
    )
}

fn user_schema() -> utoipa::openapi::schema::Object {
    schema::text(
        USER_PATTERN,
        true,
        "ACL user, 1 to 128 characters without white space; needs a `password`; omit for `AUTH <password>`",
    )
}

fn password_schema() -> utoipa::openapi::schema::Object {
    schema::text(
        PASSWORD_PATTERN,
        true,
        "1 to 512 characters, no line break; stored sealed to reach the instance, never returned, never logged",
    )
}

/// A registration as rdbvault keeps it (the password is never shown).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RegistrationView {
    pub(crate) instance_id: String,
    pub(crate) name: String,
    pub(crate) mode: Mode,
    pub(crate) addrs: Vec<String>,
    pub(crate) user: Option<String>,
    pub(crate) has_password: bool,
    pub(crate) tls: bool,
    pub(crate) created_at: String,
}

impl From<&Instance> for RegistrationView {
    fn from(i: &Instance) -> Self {
        RegistrationView {
            instance_id: i.id.clone(),
            name: i.name.clone(),
            mode: i.mode,
            addrs: i.addrs.iter().map(ToString::to_string).collect(),
            user: i.username.clone(),
            has_password: i.password.is_some(),
            tls: i.tls,
            created_at: dcs_time(i.created_at),
        }
    }
}

/// The DCS instance shape (fields of `InstanceListInfo` / `ShowInstanceResponse`
/// that rdbvault can fill).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct InstanceInfo {
    pub(crate) instance_id: String,
    pub(crate) name: String,
    pub(crate) engine: String,
    /// `major.minor` of the live server; empty while it cannot be reached.
    pub(crate) engine_version: String,
    /// `RUNNING` when the instance answers, `RESTORING` while a restore
    /// writes into it, `ERROR` when it does not answer.
    pub(crate) status: String,
    /// Host of the first address; for clusters every host, comma separated.
    pub(crate) ip: String,
    pub(crate) port: u16,
    pub(crate) domain_name: String,
    pub(crate) capacity: u64,
    pub(crate) max_memory: u64,
    pub(crate) used_memory: u64,
    pub(crate) spec_code: String,
    pub(crate) created_at: String,
    pub(crate) no_password_access: String,
    pub(crate) access_user: String,
    /// `normal`, or `degraded` when the node that answers is a replica cut
    /// off from its master (an `ha` instance whose master is down).
    pub(crate) sub_status: String,
    /// Why the instance is not `RUNNING`/`normal`, in words (rdbvault extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status_detail: Option<String>,
    /// `show_instance` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cache_mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sharding_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replica_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) db_number: Option<u32>,
    /// `show_instance` only, when a policy was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) instance_backup_policy: Option<InstanceBackupPolicyView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ListInstancesResponse {
    pub(crate) instance_num: usize,
    pub(crate) instances: Vec<InstanceInfo>,
}

/// Query of `list_instances`; every value arrives as text and is checked
/// here, the document giving the type and range it must have.
/// (`pub`, unlike the other DTOs: some fields are read only by the serde and
/// utoipa derives, which dead-code analysis does not see.)
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListInstancesQuery {
    #[param(schema_with = schema::uuid)]
    pub instance_id: Option<String>,
    /// Accepted and ignored (rdbvault keeps no failed or deleted instances).
    pub include_failure: Option<String>,
    /// Accepted and ignored.
    pub include_delete: Option<String>,
    /// Substring of the name.
    pub name: Option<String>,
    #[param(schema_with = schema::offset)]
    pub offset: Option<String>,
    #[param(schema_with = schema::limit)]
    pub limit: Option<String>,
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
    /// The whole name.
    pub name_equal: Option<String>,
    /// Accepted and ignored (no tags).
    pub tags: Option<String>,
    /// Host of an address.
    pub ip: Option<String>,
}

fn status_schema() -> utoipa::openapi::schema::Object {
    schema::one_of(
        &["RUNNING", "RESTORING", "ERROR", ""],
        false,
        "only instances in this live status (empty: any)",
    )
}

#[utoipa::path(get, path = "/v2/{project_id}/instances", tag = "instances",
    params(("project_id" = String, Path), ListInstancesQuery),
    responses((status = 200, body = ListInstancesResponse)))]
pub(crate) async fn list_instances(
    State(state): State<SharedState>,
    Path(project_id): Path<String>,
    Query(q): Query<ListInstancesQuery>,
) -> Result<Json<ListInstancesResponse>, ApiError> {
    let offset = parse_offset(q.offset.as_deref())?;
    let limit = parse_limit(q.limit.as_deref(), 10, 1000)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s @ ("RUNNING" | "RESTORING" | "ERROR")) => Some(s),
        Some(other) => {
            return Err(ApiError::invalid(
                "status",
                format!(
                    "{:?} is not one of RUNNING, RESTORING, ERROR",
                    extract::truncated(other)
                ),
            ));
        }
    };
    let instance_id = q
        .instance_id
        .as_deref()
        .map(extract::instance_id)
        .transpose()?;
    let filter = InstanceFilter {
        instance_id,
        name: q.name,
        name_equal: q.name_equal,
        ip: q.ip,
    };
    let instances = state.meta.list_instances(&project_id, &filter).await?;
    // Filtering on live status needs every candidate probed; otherwise only the page.
    let infos = match status {
        Some(wanted) => {
            let all = describe_all(&state, &instances, false).await;
            let matching: Vec<_> = all.into_iter().filter(|i| i.status == wanted).collect();
            let total = matching.len();
            let page = matching.into_iter().skip(offset).take(limit).collect();
            return Ok(Json(ListInstancesResponse {
                instance_num: total,
                instances: page,
            }));
        }
        None => {
            let page: Vec<Instance> = instances.iter().skip(offset).take(limit).cloned().collect();
            describe_all(&state, &page, false).await
        }
    };
    Ok(Json(ListInstancesResponse {
        instance_num: instances.len(),
        instances: infos,
    }))
}

#[utoipa::path(get, path = "/v2/{project_id}/instances/{instance_id}", tag = "instances",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 200, body = InstanceInfo)))]
pub(crate) async fn show_instance(
    State(state): State<SharedState>,
    Path((project_id, instance_id)): Path<(String, String)>,
) -> Result<Json<InstanceInfo>, ApiError> {
    let instance = find(&state, &project_id, &instance_id).await?;
    let restoring = !restoring(&state, std::slice::from_ref(&instance.id))
        .await
        .is_empty();
    let mut info = describe(&state, &instance, true, budget(&state), restoring).await;
    info.instance_backup_policy = state
        .meta
        .get_policy(&instance.id)
        .await?
        .map(|p| InstanceBackupPolicyView::of(&p, &project_id));
    Ok(Json(info))
}

#[utoipa::path(post, path = "/v2/{project_id}/rdbvault/instances", tag = "rdbvault",
    params(("project_id" = String, Path)), request_body = RegisterInstanceBody,
    responses((status = 200, body = RegistrationView),
              (status = 409, body = ErrorBody, description = "an instance of this name is registered in the project (`DCS.4909`)")))]
pub(crate) async fn register_instance(
    State(state): State<SharedState>,
    Path(project_id): Path<String>,
    Json(body): Json<RegisterInstanceBody>,
) -> Result<Json<RegistrationView>, ApiError> {
    let new = validate_registration(
        project_id,
        body.name,
        body.mode,
        &body.addrs,
        body.user,
        body.password,
        body.tls,
    )?;
    let policy = body
        .instance_backup_policy
        .as_ref()
        .map(BackupPolicyBody::check)
        .transpose()?;
    if body.verify {
        let tls = new.tls.then(|| state.redis_tls.clone());
        verify_live(&new, &tls, state.probe_timeout()).await?;
    }
    let name = new.name.clone();
    let instance = state.meta.insert_instance(new).await.map_err(|e| match e {
        MetaError::Conflict => ApiError::InstanceNameTaken(name),
        other => other.into(),
    })?;
    if let Some(policy) = &policy {
        state.meta.set_policy(&instance.id, policy).await?;
    }
    tracing::info!(instance_id = %instance.id, name = %instance.name, mode = instance.mode.as_str(), "instance registered");
    Ok(Json(RegistrationView::from(&instance)))
}

#[utoipa::path(get, path = "/v2/{project_id}/rdbvault/instances/{instance_id}", tag = "rdbvault",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 200, body = RegistrationView)))]
pub(crate) async fn show_registration(
    State(state): State<SharedState>,
    Path((project_id, instance_id)): Path<(String, String)>,
) -> Result<Json<RegistrationView>, ApiError> {
    let instance = find(&state, &project_id, &instance_id).await?;
    Ok(Json(RegistrationView::from(&instance)))
}

#[utoipa::path(delete, path = "/v2/{project_id}/rdbvault/instances/{instance_id}", tag = "rdbvault",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    responses((status = 204, description = "removed; refused (`DCS.4026`) while a backup still holds data")))]
pub(crate) async fn remove_instance(
    State(state): State<SharedState>,
    Path((project_id, instance_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = extract::instance_id(&instance_id)?;
    match state.meta.delete_instance(&project_id, &id).await {
        Ok(true) => {
            tracing::info!(instance_id = %id, "instance removed");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Ok(false) => Err(ApiError::InstanceNotFound(id)),
        Err(MetaError::InUse(why)) => Err(ApiError::InstanceBusy(why)),
        Err(e) => Err(e.into()),
    }
}

fn validate_registration(
    project_id: String,
    name: String,
    mode: Mode,
    addrs: &[String],
    user: Option<String>,
    password: Option<String>,
    tls: bool,
) -> Result<NewInstance, ApiError> {
    let name_ok = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        return Err(ApiError::invalid(
            "name",
            "1 to 64 characters of letters, digits, '-', '_', '.', starting with a letter or digit",
        ));
    }
    if addrs.is_empty() || addrs.len() > 16 {
        return Err(ApiError::invalid(
            "addrs",
            "between 1 and 16 host:port entries",
        ));
    }
    if mode == Mode::Single && addrs.len() != 1 {
        return Err(ApiError::invalid(
            "addrs",
            "a single instance has exactly one address",
        ));
    }
    let mut parsed = Vec::with_capacity(addrs.len());
    for a in addrs {
        let addr: RedisAddr = a
            .parse()
            .map_err(|e: String| ApiError::invalid("addrs", e))?;
        if parsed.contains(&addr) {
            return Err(ApiError::invalid(
                "addrs",
                format!("{addr} is listed twice"),
            ));
        }
        parsed.push(addr);
    }
    if let Some(u) = &user {
        if u.is_empty()
            || u.chars().count() > 128
            || u.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ApiError::invalid(
                "user",
                "1 to 128 characters without spaces",
            ));
        }
        if password.is_none() {
            return Err(ApiError::invalid(
                "password",
                "an ACL user needs a password",
            ));
        }
    }
    if let Some(p) = &password
        && (p.is_empty() || p.chars().count() > 512 || p.contains(['\r', '\n']))
    {
        return Err(ApiError::invalid(
            "password",
            "1 to 512 characters, no line breaks",
        ));
    }
    Ok(NewInstance {
        project_id,
        name,
        mode,
        addrs: parsed,
        username: user,
        password: password.map(Secret),
        tls,
    })
}

type TlsConfig = Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>;

fn endpoint(
    user: &Option<String>,
    password: &Option<Secret>,
    tls: &TlsConfig,
    addr: &RedisAddr,
) -> Endpoint {
    Endpoint {
        addr: addr.clone(),
        username: user.clone(),
        password: password.clone(),
        tls: tls.clone(),
    }
}

/// Addresses of one instance probed at once.
const ADDRESS_PROBES: usize = 8;
/// Instances of a listing probed at once (each with up to `ADDRESS_PROBES`
/// connections): a page of dead instances costs one probe timeout per this
/// many, not one per instance.
const INSTANCE_PROBES: usize = 64;

/// Probes the addresses at once (up to `ADDRESS_PROBES`); the first that
/// answers describes the instance, so a dead address costs nothing when
/// another answers. Each probe (connect, AUTH, INFO, ...) is bounded by
/// `timeout` as a whole. A refused login ends the search: the other
/// addresses would refuse it too.
async fn probe_any(
    addrs: &[RedisAddr],
    user: &Option<String>,
    password: &Option<Secret>,
    tls: &TlsConfig,
    timeout: Duration,
) -> Result<NodeInfo, crate::replication::ConnError> {
    // Owned endpoints: a stream of futures borrowing them would not be `Send`
    // for every lifetime, as axum's handlers must be.
    let endpoints: Vec<Endpoint> = addrs
        .iter()
        .map(|addr| endpoint(user, password, tls, addr))
        .collect();
    let mut probes = futures::stream::iter(endpoints)
        .map(move |endpoint| async move {
            tokio::time::timeout(timeout, probe(&endpoint, timeout))
                .await
                .unwrap_or_else(|_| {
                    Err(crate::replication::ConnError::Timeout {
                        addr: endpoint.addr.to_string(),
                        command: "the status probe".into(),
                        ms: timeout.as_millis(),
                    })
                })
        })
        .buffer_unordered(ADDRESS_PROBES);
    let mut last = None;
    while let Some(result) = probes.next().await {
        match result {
            Ok(info) => return Ok(info),
            Err(e) if e.is_auth() => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(crate::replication::ConnError::NoAddress))
}

async fn verify_live(
    new: &NewInstance,
    tls: &TlsConfig,
    timeout: Duration,
) -> Result<(), ApiError> {
    let info = probe_any(&new.addrs, &new.username, &new.password, tls, timeout)
        .await
        .map_err(ApiError::from_redis)?;
    match (new.mode, info.cluster_enabled) {
        (Mode::Cluster, false) => Err(ApiError::InstanceMismatch(
            "mode is cluster but the server has cluster mode disabled".into(),
        )),
        (Mode::Single | Mode::Ha, true) => Err(ApiError::InstanceMismatch(format!(
            "mode is {} but the server runs in cluster mode; register it as cluster",
            new.mode.as_str()
        ))),
        _ => Ok(()),
    }
}

fn status_detail(i: &Instance, live: Option<&NodeInfo>) -> Option<String> {
    let Some(live) = live else {
        return Some("no registered address answers".into());
    };
    let f = live.master_down.as_ref()?;
    Some(format!(
        "the master {} is unreachable: its replica has had no link to it for {} s; {}",
        f.master,
        f.down_secs,
        if i.mode == Mode::Ha {
            "backups copy the most up-to-date replica key by key"
        } else {
            "backups fail until it is back (register the instance as ha with its replicas)"
        }
    ))
}

async fn describe_all(
    state: &SharedState,
    instances: &[Instance],
    detail: bool,
) -> Vec<InstanceInfo> {
    // Probes run concurrently (bounded) and keep their order; all of them
    // share one time budget, so a fleet of silent nodes cannot hold a
    // listing (and a worker of the API) for minutes.
    let deadline = budget(state);
    let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
    let restoring = restoring(state, &ids).await;
    futures::stream::iter(instances.iter().cloned())
        .map(|i| {
            let state = state.clone();
            let restoring = restoring.contains(&i.id);
            async move { describe(&state, &i, detail, deadline, restoring).await }
        })
        .buffered(INSTANCE_PROBES)
        .collect()
        .await
}

/// The instances among `ids` a restore writes into; a failed lookup only
/// loses the RESTORING detail (the probes say the rest).
async fn restoring(state: &SharedState, ids: &[String]) -> Vec<String> {
    state
        .meta
        .restoring_instances(ids)
        .await
        .unwrap_or_default()
}

/// When the probes of one API call must be over: three probe timeouts.
fn budget(state: &SharedState) -> tokio::time::Instant {
    tokio::time::Instant::now() + state.probe_timeout() * 3
}

async fn describe(
    state: &SharedState,
    i: &Instance,
    detail: bool,
    deadline: tokio::time::Instant,
    restoring: bool,
) -> InstanceInfo {
    let tls = i.tls.then(|| state.redis_tls.clone());
    let probe = probe_any(
        &i.addrs,
        &i.username,
        &i.password,
        &tls,
        state.probe_timeout(),
    );
    let (live, out_of_time) = match tokio::time::timeout_at(deadline, probe).await {
        Ok(Ok(live)) => (Some(live), false),
        Ok(Err(e)) => {
            tracing::debug!(instance_id = %i.id, error = %e, "instance probe failed");
            (None, false)
        }
        Err(_) => (None, true),
    };
    let first = &i.addrs[0];
    let ip = if i.mode == Mode::Cluster {
        i.addrs
            .iter()
            .map(|a| a.host.as_str())
            .collect::<Vec<_>>()
            .join(",")
    } else {
        first.host.clone()
    };
    let mb = |bytes: u64| bytes / (1024 * 1024);
    let info = live.clone().unwrap_or_default();
    InstanceInfo {
        instance_id: i.id.clone(),
        name: i.name.clone(),
        engine: "Redis".into(),
        engine_version: if live.is_some() {
            info.engine_version()
        } else {
            String::new()
        },
        status: match (&live, restoring) {
            (None, _) => "ERROR",
            (Some(_), true) => "RESTORING",
            (Some(_), false) => "RUNNING",
        }
        .into(),
        status_detail: if out_of_time {
            Some("not probed: the call's time budget for probing instances ran out".into())
        } else {
            status_detail(i, live.as_ref())
        },
        ip,
        port: first.port,
        domain_name: if first.host.parse::<std::net::IpAddr>().is_ok() {
            String::new()
        } else {
            first.host.clone()
        },
        capacity: info.maxmemory.div_ceil(1024 * 1024 * 1024),
        max_memory: mb(info.maxmemory),
        used_memory: mb(info.used_memory),
        spec_code: format!("rdbvault.{}", i.mode.as_str()),
        created_at: dcs_time(i.created_at),
        no_password_access: i.password.is_none().to_string(),
        access_user: i.username.clone().unwrap_or_default(),
        sub_status: match live.as_ref().and_then(|l| l.master_down.as_ref()) {
            Some(_) => "degraded",
            None => "normal",
        }
        .into(),
        cache_mode: detail.then_some(i.mode),
        sharding_count: detail.then_some(if i.mode == Mode::Cluster {
            info.cluster_size.max(1)
        } else {
            1
        }),
        replica_count: detail.then_some(info.connected_replicas),
        db_number: detail.then_some(info.databases),
        instance_backup_policy: None,
    }
}
