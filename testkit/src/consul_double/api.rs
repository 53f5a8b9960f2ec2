//! HTTP surface of the Consul agent HTTP API test double: the axum router, the request gate
//! (recording, injected failures, ACL token) and one handler per emulated endpoint, plus the
//! promfleet-only `/promfleet-double/http_sd` view. Handlers read and write state only through
//! [`Shared`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};

use super::catalog::{self, InstanceFilter, Node};
use super::duration::parse_go_duration;
use super::registry::parse_registration;
use super::{RequestRecord, Shared};

/// Consul's default blocking-query wait.
const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
/// Consul's cap on `wait`.
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);
/// Larger registration bodies are a bug in the caller, not something to buffer.
const MAX_BODY: usize = 4 * 1024 * 1024;

type ApiResult = Result<Response, (StatusCode, String)>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/members", get(agent_members))
        .route("/v1/agent/services", get(agent_services))
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{id}", put(deregister))
        .route("/v1/agent/service/{id}", get(agent_service))
        .route("/v1/catalog/services", get(catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog_service))
        .route("/v1/health/service/{name}", get(health_service))
        .route("/v1/acl/token/self", get(acl_token_self))
        .route("/v1/acl/policies", get(acl_policies))
        .route("/v1/acl/policy", put(acl_policy_create))
        .route("/v1/acl/token", put(acl_token_create))
        .route("/v1/status/leader", get(status_leader))
        .route("/v1/status/peers", get(status_peers))
        .route("/promfleet-double/http_sd", get(http_sd))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Query parameters in order, repeated keys kept (`tag=a&tag=b`, `node-meta=...`).
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Consul's boolean query flags: present-but-empty means true (`?passing`).
    fn flag(&self, key: &str) -> Result<bool, (StatusCode, String)> {
        match self.get(key) {
            None => Ok(false),
            Some("" | "1" | "true" | "t" | "TRUE" | "True") => Ok(true),
            Some("0" | "false" | "f" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(bad_request(format!("Invalid value for {key}: {other:?}"))),
        }
    }
}

fn bad_request(text: impl Into<String>) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, text.into())
}

fn token_of(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(token) = headers.get("x-consul-token").and_then(|v| v.to_str().ok()) {
        return Some(token.to_owned());
    }
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    let query = query?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// Runs before every handler: records the request, then applies injected failures and the
/// ACL token, in that order (an agent that is failing fails before it checks tokens).
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(err) => return bad_request(format!("Request decode failed: {err}")).into_response(),
    };
    let token = token_of(&parts.headers, parts.uri.query());
    shared.lock_requests().push(RequestRecord {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        token: token.clone(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    let path = parts.uri.path();
    if path.starts_with("/v1/")
        && let Some(status) = shared.take_injected_failure()
    {
        return (
            status,
            "promfleet Consul test double: injected failure (fail_next)",
        )
            .into_response();
    }
    // Consul answers the status endpoints without a token; everything else needs it — the
    // http_sd view too, as it stands for the catalog queries Prometheus' Consul SD makes.
    if let Some(required) = &shared.opts.acl_token
        && (path.starts_with("/v1/") || path.starts_with("/promfleet-double/"))
        && !path.starts_with("/v1/status/")
        // Any token Consul knows may read itself: the handler checks it.
        && path != "/v1/acl/token/self"
        && token.as_deref() != Some(required.as_str())
    {
        return (StatusCode::FORBIDDEN, "ACL not found").into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "404 page not found")
}

/// A JSON answer carrying the blocking-query headers Consul's Go client insists on
/// (`X-Consul-Index`, `X-Consul-KnownLeader`, `X-Consul-LastContact`).
fn indexed(index: u64, stale: bool, body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert("X-Consul-Index", HeaderValue::from(index.max(1)));
    headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
    headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    headers.insert(
        "X-Consul-Effective-Consistency",
        HeaderValue::from_static(if stale { "stale" } else { "leader" }),
    );
    response
}

fn check_datacenter(shared: &Shared, params: &Params) -> Result<(), (StatusCode, String)> {
    match params.get("dc") {
        Some(dc) if !dc.is_empty() && dc != shared.opts.datacenter => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "No path to datacenter".to_owned(),
        )),
        _ => Ok(()),
    }
}

fn refuse_filter(params: &Params) -> Result<(), (StatusCode, String)> {
    if params.get("filter").is_some() {
        return Err(bad_request(
            "promfleet Consul test double: the `filter` query parameter is not supported",
        ));
    }
    Ok(())
}

fn node_meta_filter(params: &Params) -> Vec<(String, String)> {
    params
        .all("node-meta")
        .map(|pair| match pair.split_once(':') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (pair.to_owned(), String::new()),
        })
        .collect()
}

/// Blocking-query wait: returns at once without `index` (or with 0), otherwise when the
/// index moves past it or `wait` runs out. The double has one index for everything, so a
/// watcher may wake for a change elsewhere — the blocking-query contract allows that.
async fn block(shared: &Shared, params: &Params) -> Result<(), (StatusCode, String)> {
    let index = match params.get("index") {
        None | Some("") => 0,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| bad_request("Invalid index"))?,
    };
    let wait = match params.get("wait") {
        None | Some("") => DEFAULT_WAIT,
        Some(text) => parse_go_duration(text)
            .ok_or_else(|| bad_request("Invalid wait time"))?
            .min(MAX_WAIT),
    };
    if index == 0 {
        return Ok(());
    }
    let mut changes = shared.index_rx.clone();
    // A timeout is the normal end of a quiet blocking query, not an error.
    let _ = tokio::time::timeout(wait, changes.wait_for(|current| *current > index)).await;
    Ok(())
}

async fn agent_self(State(shared): State<Arc<Shared>>) -> Response {
    let opts = &shared.opts;
    let client = Node::client(opts);
    axum::Json(json!({
        "Config": {
            "Datacenter": opts.datacenter,
            "PrimaryDatacenter": opts.datacenter,
            "NodeName": opts.node_name,
            "NodeID": client.id,
            "Revision": "promfleet-test-double",
            "Server": false,
            "Version": catalog::CLAIMED_VERSION,
            "TestDouble": "promfleet Consul agent HTTP API test double",
        },
        "Member": catalog::member_json(&client, false, false),
        "Meta": client.meta,
        "Coord": null,
        "Stats": {},
        "xDS": null,
    }))
    .into_response()
}

async fn agent_members(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult {
    let params = Params(params);
    let server = Node::server(&shared.opts);
    let members = if params.flag("wan")? {
        let mut members = vec![catalog::member_json(&server, true, true)];
        for dc in &shared.opts.wan_datacenters {
            let mut other = server.clone();
            other.datacenter = dc.clone();
            members.push(catalog::member_json(&other, true, true));
        }
        members
    } else {
        let mut members = vec![
            catalog::member_json(&Node::client(&shared.opts), false, false),
            catalog::member_json(&server, true, false),
        ];
        // Further simulated servers: only members (no catalog node, no `consul` service).
        for n in 2..=shared.opts.servers {
            let mut extra = server.clone();
            extra.name = format!("{}-{n}", server.name);
            let mut member = catalog::member_json(&extra, true, false);
            member["Tags"]["id"] = Value::String(format!("{}-{n}", server.id));
            members.push(member);
        }
        members
    };
    Ok(axum::Json(members).into_response())
}

async fn agent_services(State(shared): State<Arc<Shared>>) -> Response {
    let registry = shared.lock_registry();
    let services: serde_json::Map<String, Value> = catalog::instances(&registry, &shared.opts)
        .iter()
        .filter(|instance| instance.node.name == shared.opts.node_name && instance.id != "consul")
        .map(|instance| (instance.id.clone(), instance.agent_json()))
        .collect();
    axum::Json(Value::Object(services)).into_response()
}

async fn agent_service(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let registry = shared.lock_registry();
    catalog::instances(&registry, &shared.opts)
        .iter()
        .find(|instance| instance.id == id && instance.node.name == shared.opts.node_name)
        .map(|instance| axum::Json(instance.agent_json()).into_response())
        .ok_or((StatusCode::NOT_FOUND, format!("unknown service ID: {id}")))
}

async fn register(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|err| bad_request(format!("Request decode failed: {err}")))?;
    let def = parse_registration(&value).map_err(bad_request)?;
    shared.register(def);
    Ok(StatusCode::OK.into_response())
}

async fn deregister(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    if shared.lock_registry().remove(&id) {
        Ok(StatusCode::OK.into_response())
    } else {
        Err((
            StatusCode::NOT_FOUND,
            format!(
                "Unknown service ID {id:?}. Ensure that the service ID is passed, not the \
                 service name."
            ),
        ))
    }
}

async fn catalog_services(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult {
    let params = Params(params);
    check_datacenter(&shared, &params)?;
    refuse_filter(&params)?;
    block(&shared, &params).await?;
    let filter = InstanceFilter {
        node_meta: node_meta_filter(&params),
        ..InstanceFilter::default()
    };
    let registry = shared.lock_registry();
    let instances: Vec<_> = catalog::instances(&registry, &shared.opts)
        .into_iter()
        .filter(|instance| filter.keeps(instance))
        .collect();
    let body = serde_json::to_value(catalog::services_map(&instances)).unwrap_or(Value::Null);
    Ok(indexed(
        registry.index(),
        params.get("stale").is_some(),
        body,
    ))
}

async fn instances_of(
    shared: &Shared,
    params: &Params,
    name: &str,
    passing_only: bool,
) -> Result<(u64, Vec<catalog::Instance>), (StatusCode, String)> {
    check_datacenter(shared, params)?;
    refuse_filter(params)?;
    block(shared, params).await?;
    let filter = InstanceFilter {
        node_meta: node_meta_filter(params),
        tags: params.all("tag").map(str::to_owned).collect(),
        passing_only,
    };
    let registry = shared.lock_registry();
    let instances = catalog::instances(&registry, &shared.opts)
        .into_iter()
        .filter(|instance| instance.name == name && filter.keeps(instance))
        .collect();
    Ok((registry.index(), instances))
}

async fn catalog_service(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult {
    let params = Params(params);
    let (index, instances) = instances_of(&shared, &params, &name, false).await?;
    let body = Value::Array(instances.iter().map(|i| i.catalog_json()).collect());
    Ok(indexed(index, params.get("stale").is_some(), body))
}

async fn health_service(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult {
    let params = Params(params);
    let passing = params.flag("passing")?;
    let (index, instances) = instances_of(&shared, &params, &name, passing).await?;
    let body = Value::Array(instances.iter().map(|i| i.health_json()).collect());
    Ok(indexed(index, params.get("stale").is_some(), body))
}

/// `GET /v1/acl/token/self`: the token the request carries, 403 "ACL not found" when unknown.
async fn acl_token_self(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult {
    let token = token_of(&headers, None).unwrap_or_default();
    if shared.opts.acl_token.as_deref() == Some(token.as_str()) {
        return Ok(axum::Json(json!({
            "SecretID": token,
            "Policies": [{"Name": "global-management"}],
        }))
        .into_response());
    }
    let acl = shared.lock_acl();
    acl.token(&token)
        .map(|t| axum::Json(super::acl::token_json(t)).into_response())
        .ok_or((StatusCode::FORBIDDEN, "ACL not found".to_owned()))
}

async fn acl_policies(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.lock_acl().policies_json()).into_response()
}

fn acl_body(body: &Bytes) -> Result<Value, (StatusCode, String)> {
    serde_json::from_slice(body).map_err(|err| bad_request(format!("Request decode failed: {err}")))
}

fn acl_error((status, text): (u16, String)) -> (StatusCode, String) {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        text,
    )
}

async fn acl_policy_create(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let v = acl_body(&body)?;
    let out = shared.lock_acl().create_policy(&v).map_err(acl_error)?;
    Ok(axum::Json(out).into_response())
}

async fn acl_token_create(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let v = acl_body(&body)?;
    let out = shared.lock_acl().create_token(&v).map_err(acl_error)?;
    Ok(axum::Json(out).into_response())
}

async fn status_leader(State(shared): State<Arc<Shared>>) -> Response {
    let leader = catalog::join_host_port(&shared.opts.node_address.to_string(), 8300);
    axum::Json(leader).into_response()
}

async fn status_peers(State(shared): State<Arc<Shared>>) -> Response {
    let leader = catalog::join_host_port(&shared.opts.node_address.to_string(), 8300);
    axum::Json(vec![leader]).into_response()
}

/// What Prometheus' Consul SD would discover, as Prometheus `http_sd_configs` JSON: one target
/// group per instance, `__meta_consul_*` labels as consul.go builds them. `?tag_separator=`
/// mirrors consul_sd's `tag_separator` (default ",").
async fn http_sd(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params(params);
    let separator = params.get("tag_separator").unwrap_or(",").to_owned();
    let registry = shared.lock_registry();
    let groups: Vec<Value> = catalog::instances(&registry, &shared.opts)
        .iter()
        .map(|instance| {
            let (target, labels) = instance.sd_target(&separator);
            json!({"targets": [target], "labels": labels})
        })
        .collect();
    axum::Json(groups).into_response()
}
