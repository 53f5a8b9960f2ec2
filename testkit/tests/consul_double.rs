//! Contract tests of the Consul agent HTTP API test double: they pin the behaviour promfleet's
//! registration code and Prometheus' Consul discovery rely on, over real HTTP on loopback.
//! They prove the double keeps its contract, not that real Consul behaves the same.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::consul_double::{CheckStatus, ConsulDouble, DoubleOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Options without the check runner, so check probes cannot move the index under a test.
fn quiet() -> DoubleOptions {
    DoubleOptions {
        bind: loopback(),
        run_checks: false,
        ..DoubleOptions::default()
    }
}

/// The registration body promfleet sends for a node exporter (lower-case keys, like the seed
/// system's script).
fn node_exporter(host: &str, ip: &str, group: &str) -> Value {
    json!({
        "id": format!("node-exporter-{host}-{ip}"),
        "name": "node-exporter",
        "address": ip,
        "port": 9100,
        "tags": [],
        "meta": {"hostname": host, "group": group},
        "checks": [{"http": format!("http://{ip}:9100/metrics"), "interval": "5s"}]
    })
}

async fn put_json(double: &ConsulDouble, path: &str, body: &Value) -> reqwest::Response {
    client()
        .put(format!("{}{path}", double.url()))
        .json(body)
        .send()
        .await
        .expect("request reaches the double")
}

async fn get(double: &ConsulDouble, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", double.url()))
        .send()
        .await
        .expect("request reaches the double")
}

fn consul_index(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("X-Consul-Index")
        .expect("X-Consul-Index header")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("numeric index")
}

/// Polls `condition` every 50 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

#[tokio::test]
async fn agent_self_reports_the_configured_datacenter() {
    let double = ConsulDouble::start_with(DoubleOptions {
        datacenter: "fleet-dc".to_owned(),
        ..quiet()
    })
    .await
    .expect("start");
    let body: Value = get(&double, "/v1/agent/self")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["Config"]["Datacenter"], "fleet-dc");
    assert_eq!(body["Config"]["NodeName"], "consul-client-double");
    assert_eq!(body["Member"]["Status"], 1);

    let leader: Value = get(&double, "/v1/status/leader")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(leader, "127.0.0.1:8300");
    let members: Value = get(&double, "/v1/agent/members")
        .await
        .json()
        .await
        .expect("json");
    let servers: Vec<&Value> = members
        .as_array()
        .expect("list")
        .iter()
        .filter(|m| m["Tags"]["role"] == "consul" && m["Status"] == 1)
        .collect();
    assert_eq!(servers.len(), 1, "one alive server member: {members}");
}

#[tokio::test]
async fn registration_shows_up_in_agent_and_catalog_views() {
    let double = ConsulDouble::start(loopback()).await.expect("start");
    let response = put_json(
        &double,
        "/v1/agent/service/register",
        &node_exporter("web01", "127.0.0.1", "IDE"),
    )
    .await;
    assert_eq!(response.status(), 200);

    let services: Value = get(&double, "/v1/agent/services")
        .await
        .json()
        .await
        .expect("json");
    let entry = &services["node-exporter-web01-127.0.0.1"];
    assert_eq!(entry["ID"], "node-exporter-web01-127.0.0.1");
    assert_eq!(entry["Service"], "node-exporter");
    assert_eq!(entry["Address"], "127.0.0.1");
    assert_eq!(entry["Port"], 9100);
    assert_eq!(entry["Tags"], json!([]));
    assert_eq!(entry["Meta"], json!({"hostname": "web01", "group": "IDE"}));
    assert_eq!(entry["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(entry["EnableTagOverride"], false);
    assert_eq!(entry["Datacenter"], "dc1");
    assert!(
        services.get("consul").is_none(),
        "a client agent does not own `consul`"
    );

    let response = get(&double, "/v1/catalog/services").await;
    assert!(consul_index(&response) >= 1);
    let catalog: Value = response.json().await.expect("json");
    assert_eq!(catalog, json!({"consul": [], "node-exporter": []}));

    let registered = double.services();
    assert_eq!(registered.len(), 1);
    assert_eq!(
        registered[0].checks[0].http.as_deref(),
        Some("http://127.0.0.1:9100/metrics")
    );
    assert_eq!(
        registered[0].checks[0].interval,
        Some(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn index_grows_on_change_and_not_on_identical_reregistration() {
    let double = ConsulDouble::start_with(quiet()).await.expect("start");
    let start = consul_index(&get(&double, "/v1/catalog/services").await);
    assert!(start >= 1);

    let body = node_exporter("web01", "10.0.0.1", "IDE");
    assert_eq!(
        put_json(&double, "/v1/agent/service/register", &body)
            .await
            .status(),
        200
    );
    let registered = consul_index(&get(&double, "/v1/catalog/services").await);
    assert!(registered > start, "{registered} > {start}");

    // The same content again, even spelled with Consul's canonical key case, is no change.
    assert_eq!(
        put_json(&double, "/v1/agent/service/register", &body)
            .await
            .status(),
        200
    );
    let canonical = json!({
        "ID": "node-exporter-web01-10.0.0.1", "Name": "node-exporter", "Address": "10.0.0.1",
        "Port": 9100, "Tags": [], "Meta": {"group": "IDE", "hostname": "web01"},
        "Checks": [{"HTTP": "http://10.0.0.1:9100/metrics", "Interval": "5s"}]
    });
    assert_eq!(
        put_json(&double, "/v1/agent/service/register", &canonical)
            .await
            .status(),
        200
    );
    assert_eq!(
        consul_index(&get(&double, "/v1/catalog/services").await),
        registered
    );
    assert_eq!(double.index(), registered);

    let changed = node_exporter("web01", "10.0.0.1", "Stage");
    assert_eq!(
        put_json(&double, "/v1/agent/service/register", &changed)
            .await
            .status(),
        200
    );
    let after_change = double.index();
    assert!(after_change > registered);
    assert_eq!(double.services()[0].meta["group"], "Stage");

    let response = put_json(
        &double,
        "/v1/agent/service/deregister/node-exporter-web01-10.0.0.1",
        &json!(null),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(double.index() > after_change);
    assert!(double.services().is_empty());

    let response = put_json(&double, "/v1/agent/service/deregister/nope", &json!(null)).await;
    assert_eq!(response.status(), 404);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("Unknown service ID")
    );
}

#[tokio::test]
async fn registration_without_a_name_is_refused() {
    let double = ConsulDouble::start_with(quiet()).await.expect("start");
    let before = double.index();
    let response = put_json(
        &double,
        "/v1/agent/service/register",
        &json!({"id": "x", "port": 1}),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("Missing service name")
    );
    let response = put_json(
        &double,
        "/v1/agent/service/register",
        &json!({"name": "x", "meta": {"bad key": "v"}}),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(double.index(), before);
    assert!(double.services().is_empty());
}

#[tokio::test]
async fn blocking_catalog_query_returns_at_once_when_stale_and_waits_for_a_change() {
    let double = ConsulDouble::start_with(quiet()).await.expect("start");
    double
        .register_direct(node_exporter("web01", "10.0.0.1", "IDE"))
        .expect("register");
    let current = double.index();
    assert!(current >= 2);

    // A stale index answers at once, with the current index.
    let started = Instant::now();
    let response = get(
        &double,
        &format!("/v1/catalog/services?index={}&wait=5s", current - 1),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(consul_index(&response), current);
    let started = Instant::now();
    let response = get(&double, "/v1/catalog/services?index=0&wait=5s").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "index=0 must not block"
    );
    assert_eq!(consul_index(&response), current);

    // With the current index it blocks until a registration from elsewhere lands.
    let url = double.url();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client()
            .put(format!("{url}/v1/agent/service/register"))
            .json(&json!({"Name": "cadvisor-exporter", "ID": "cadvisor-web02", "Port": 9105}))
            .send()
            .await
            .expect("register")
            .status()
    });
    let started = Instant::now();
    let response = get(
        &double,
        &format!("/v1/catalog/services?index={current}&wait=5s"),
    )
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "returned before the change: {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "woke too late: {waited:?}");
    let woke_at = consul_index(&response);
    assert!(woke_at > current);
    let body: Value = response.json().await.expect("json");
    assert!(body.get("cadvisor-exporter").is_some(), "{body}");
    assert_eq!(writer.await.expect("writer"), 200);

    // Nothing changes: it times out at `wait` with the same index.
    let started = Instant::now();
    let response = get(
        &double,
        &format!("/v1/catalog/services?index={woke_at}&wait=400ms"),
    )
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(380),
        "did not wait: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(2),
        "waited too long: {waited:?}"
    );
    assert_eq!(consul_index(&response), woke_at);

    let response = get(&double, "/v1/catalog/services?index=1&wait=soon").await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn blocking_health_query_wakes_on_a_check_status_change() {
    let double = ConsulDouble::start_with(quiet()).await.expect("start");
    double
        .register_direct(node_exporter("web03", "10.0.0.3", "IDE"))
        .expect("register");
    let index = double.index();
    let url = double.url();
    let query = tokio::spawn(async move {
        let started = Instant::now();
        let response = client()
            .get(format!(
                "{url}/v1/health/service/node-exporter?index={index}&wait=5s"
            ))
            .send()
            .await
            .expect("query");
        (started.elapsed(), consul_index(&response))
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(double.set_check_status("service:node-exporter-web03-10.0.0.3", CheckStatus::Passing));
    let (waited, woke_at) = query.await.expect("query task");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert!(woke_at > index);
}

#[tokio::test]
async fn acl_token_is_enforced_when_configured() {
    let double = ConsulDouble::start_with(DoubleOptions {
        acl_token: Some("s3cret".to_owned()),
        ..quiet()
    })
    .await
    .expect("start");
    let body = node_exporter("web01", "10.0.0.1", "IDE");
    let url = format!("{}/v1/agent/service/register", double.url());

    let response = client().put(&url).json(&body).send().await.expect("send");
    assert_eq!(response.status(), 403);
    assert_eq!(response.text().await.expect("text"), "ACL not found");
    let response = client()
        .put(&url)
        .header("X-Consul-Token", "wrong")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 403);
    let response = client()
        .get(format!("{}/v1/catalog/services", double.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 403, "reads need the token too");
    assert!(double.services().is_empty());

    let response = client()
        .put(&url)
        .header("X-Consul-Token", "s3cret")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(double.services().len(), 1);

    let tokens: Vec<Option<String>> = double
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.token)
        .collect();
    assert_eq!(
        tokens,
        vec![None, Some("wrong".to_owned()), Some("s3cret".to_owned())]
    );
}

#[tokio::test]
async fn health_service_payload_has_the_shape_consul_sd_reads() {
    let double = ConsulDouble::start_with(quiet()).await.expect("start");
    double
        .register_direct(node_exporter("web01", "10.0.0.1", "IDE"))
        .expect("register");
    let response = get(&double, "/v1/health/service/node-exporter?stale&dc=dc1").await;
    assert_eq!(response.status(), 200);
    assert!(consul_index(&response) >= 1);
    assert_eq!(response.headers()["X-Consul-KnownLeader"], "true");
    let body: Value = response.json().await.expect("json");
    let entries = body.as_array().expect("list");
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["Node"]["Node"], "consul-client-double");
    assert_eq!(entry["Node"]["Address"], "127.0.0.1");
    assert_eq!(entry["Node"]["Datacenter"], "dc1");
    assert!(entry["Node"]["ID"].is_string());
    assert_eq!(entry["Node"]["TaggedAddresses"]["lan"], "127.0.0.1");
    assert!(entry["Node"]["Meta"].is_object());
    assert_eq!(entry["Service"]["ID"], "node-exporter-web01-10.0.0.1");
    assert_eq!(entry["Service"]["Service"], "node-exporter");
    assert_eq!(entry["Service"]["Address"], "10.0.0.1");
    assert_eq!(entry["Service"]["Port"], 9100);
    assert_eq!(entry["Service"]["Meta"]["hostname"], "web01");
    let checks = entry["Checks"].as_array().expect("checks");
    assert_eq!(checks[0]["CheckID"], "serfHealth");
    assert_eq!(checks[0]["Status"], "passing");
    assert_eq!(checks[1]["CheckID"], "service:node-exporter-web01-10.0.0.1");
    assert_eq!(checks[1]["ServiceID"], "node-exporter-web01-10.0.0.1");
    assert_eq!(checks[1]["Status"], "critical", "Consul's initial status");

    // `?passing` hides instances with any non-passing check.
    let body: Value = get(&double, "/v1/health/service/node-exporter?passing")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body, json!([]));
    double.set_check_status("service:node-exporter-web01-10.0.0.1", CheckStatus::Passing);
    let body: Value = get(&double, "/v1/health/service/node-exporter?passing=1")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body.as_array().expect("list").len(), 1);

    let body: Value = get(&double, "/v1/health/service/node-exporter?tag=missing")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        body,
        json!([]),
        "tag filter: instances must carry every tag"
    );
    let body: Value = get(&double, "/v1/catalog/service/node-exporter")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body[0]["ServiceAddress"], "10.0.0.1");
    assert_eq!(body[0]["ServicePort"], 9100);
    assert_eq!(body[0]["Address"], "127.0.0.1");

    let response = get(&double, "/v1/health/service/node-exporter?dc=elsewhere").await;
    assert_eq!(response.status(), 500);
    let body: Value = get(&double, "/v1/health/service/consul")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body[0]["Service"]["Port"], 8300);
}

#[tokio::test]
async fn http_sd_view_carries_consul_sd_labels_and_address() {
    let double = ConsulDouble::start_with(DoubleOptions {
        node_meta: [("rack".to_owned(), "r1".to_owned())].into(),
        ..quiet()
    })
    .await
    .expect("start");
    double
        .register_direct(node_exporter("web01", "10.0.0.1", "IDE"))
        .expect("register");
    // No service address: Prometheus falls back to the node address.
    double
        .register_direct(json!({
            "ID": "cadvisor-exporter-web01", "Name": "cadvisor-exporter", "Port": 9105,
            "Tags": ["a", "b"], "Meta": {"host-name": "web01"}
        }))
        .expect("register");

    let groups: Value = get(&double, "/promfleet-double/http_sd")
        .await
        .json()
        .await
        .expect("json");
    let groups = groups.as_array().expect("list");
    let find = |service: &str| {
        groups
            .iter()
            .find(|g| g["labels"]["__meta_consul_service"] == service)
            .unwrap_or_else(|| panic!("no group for {service}: {groups:?}"))
    };

    let node = find("node-exporter");
    assert_eq!(node["targets"], json!(["10.0.0.1:9100"]));
    let labels = &node["labels"];
    assert_eq!(labels["__meta_consul_address"], "127.0.0.1");
    assert_eq!(labels["__meta_consul_dc"], "dc1");
    assert_eq!(labels["__meta_consul_node"], "consul-client-double");
    assert_eq!(labels["__meta_consul_health"], "critical");
    assert_eq!(labels["__meta_consul_service_address"], "10.0.0.1");
    assert_eq!(labels["__meta_consul_service_port"], "9100");
    assert_eq!(
        labels["__meta_consul_service_id"],
        "node-exporter-web01-10.0.0.1"
    );
    assert_eq!(labels["__meta_consul_tags"], ",,");
    assert_eq!(labels["__meta_consul_service_metadata_hostname"], "web01");
    assert_eq!(labels["__meta_consul_service_metadata_group"], "IDE");
    assert_eq!(labels["__meta_consul_metadata_rack"], "r1");
    assert_eq!(labels["__meta_consul_metadata_consul_network_segment"], "");
    assert_eq!(labels["__meta_consul_tagged_address_lan"], "127.0.0.1");
    assert_eq!(labels["__meta_consul_tagged_address_wan_ipv4"], "127.0.0.1");
    assert!(
        labels
            .as_object()
            .expect("map")
            .keys()
            .all(|k| k.starts_with("__meta_consul_")),
        "only meta labels: {labels}"
    );

    let cadvisor = find("cadvisor-exporter");
    assert_eq!(cadvisor["targets"], json!(["127.0.0.1:9105"]));
    assert_eq!(cadvisor["labels"]["__meta_consul_service_address"], "");
    assert_eq!(cadvisor["labels"]["__meta_consul_tags"], ",a,b,");
    assert_eq!(
        cadvisor["labels"]["__meta_consul_health"], "passing",
        "no checks = passing"
    );
    assert_eq!(
        cadvisor["labels"]["__meta_consul_service_metadata_host_name"],
        "web01"
    );

    let consul = find("consul");
    assert_eq!(consul["targets"], json!(["127.0.0.1:8300"]));

    let groups: Value = get(&double, "/promfleet-double/http_sd?tag_separator=;")
        .await
        .json()
        .await
        .expect("json");
    assert!(
        groups
            .as_array()
            .expect("list")
            .iter()
            .any(|g| g["labels"]["__meta_consul_tags"] == ";a;b;")
    );
}

/// A tiny HTTP server on loopback answering 200 to everything, closing each connection.
async fn metrics_stub() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(loopback()).await.expect("bind stub");
    let addr = listener.local_addr().expect("stub addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buffer = [0_u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nup 1\nfoo 2\n\n",
                    )
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn http_check_really_probes_and_flips_status() {
    let double = ConsulDouble::start(loopback()).await.expect("start");
    let (stub, stub_task) = metrics_stub().await;
    double
        .register_direct(json!({
            "Name": "node-exporter", "ID": "ne-local", "Address": "127.0.0.1",
            "Port": stub.port(),
            "Check": {"HTTP": format!("http://{stub}/metrics"), "Interval": "1s", "Timeout": "500ms"}
        }))
        .expect("register");
    let status = || double.services()[0].checks[0].status;
    assert!(
        eventually(Duration::from_secs(4), || status() == CheckStatus::Passing).await,
        "check never passed: {:?}",
        double.services()
    );
    assert!(double.services()[0].checks[0].output.contains("200"));
    let passing_index = double.index();

    stub_task.abort();
    let _ = stub_task.await;
    assert!(
        eventually(Duration::from_secs(4), || status() == CheckStatus::Critical).await,
        "check never went critical: {:?}",
        double.services()
    );
    assert!(
        double.index() > passing_index,
        "a status change bumps the index"
    );

    // Addresses outside the allowed networks are never probed.
    double
        .register_direct(json!({
            "Name": "far", "Check": {"HTTP": "http://192.0.2.1:9100/metrics", "Interval": "1s"}
        }))
        .expect("register");
    let far = |d: &ConsulDouble| {
        d.services()
            .into_iter()
            .find(|s| s.id == "far")
            .map(|s| s.checks[0].output.clone())
            .unwrap_or_default()
    };
    assert!(
        eventually(Duration::from_secs(3), || far(&double)
            .contains("not probing"))
        .await
    );
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_serves_the_same_registry() {
    let double = ConsulDouble::start_with(quiet()).await.expect("start");
    double
        .register_direct(node_exporter("web01", "10.0.0.1", "IDE"))
        .expect("register");
    // One pooled client across the outage: stop() must cut kept-alive connections too.
    let pooled = client();
    let url = format!("{}/v1/agent/services", double.url());
    assert_eq!(pooled.get(&url).send().await.expect("up").status(), 200);

    double.stop().await;
    assert!(!double.is_running());
    let error = pooled.get(&url).send().await.expect_err("agent is down");
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    let error = client().get(&url).send().await.expect_err("agent is down");
    assert!(error.is_connect(), "fresh connection refused: {error:?}");

    double.restart().await.expect("restart");
    let services: Value = pooled
        .get(&url)
        .send()
        .await
        .expect("up again")
        .json()
        .await
        .expect("json");
    assert!(
        services.get("node-exporter-web01-10.0.0.1").is_some(),
        "{services}"
    );
}

#[tokio::test]
async fn fail_next_answers_injected_errors_without_effect() {
    let double = ConsulDouble::start_with(quiet()).await.expect("start");
    double.fail_next(2, 503);
    let body = node_exporter("web01", "10.0.0.1", "IDE");
    assert_eq!(
        put_json(&double, "/v1/agent/service/register", &body)
            .await
            .status(),
        503
    );
    assert_eq!(
        put_json(&double, "/v1/agent/service/register", &body)
            .await
            .status(),
        503
    );
    assert!(
        double.services().is_empty(),
        "failed requests change nothing"
    );
    assert_eq!(
        put_json(&double, "/v1/agent/service/register", &body)
            .await
            .status(),
        200
    );
    assert_eq!(double.services().len(), 1);
    let registers = double
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path == "/v1/agent/service/register")
        .count();
    assert_eq!(registers, 3, "every attempt is recorded");
}

#[tokio::test]
async fn direct_helpers_move_state_behind_the_agents_back() {
    let double = ConsulDouble::start_with(quiet()).await.expect("start");
    double
        .register_direct(node_exporter("web01", "10.0.0.1", "IDE"))
        .expect("register");
    let before = double.index();
    assert!(double.set_service_meta("node-exporter-web01-10.0.0.1", "group", "Pet"));
    assert!(double.index() > before);
    let services: Value = get(&double, "/v1/agent/services")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        services["node-exporter-web01-10.0.0.1"]["Meta"]["group"],
        "Pet"
    );
    assert!(!double.set_service_meta("missing", "k", "v"));
    assert!(double.deregister_direct("node-exporter-web01-10.0.0.1"));
    assert!(!double.deregister_direct("node-exporter-web01-10.0.0.1"));
    assert!(double.register_direct(json!({"ID": "no-name"})).is_err());
}
