//! **TEST DOUBLE** of the Consul agent HTTP API, for promfleet's tests. It is not Consul.
//!
//! No Consul binary can be installed where promfleet's tests run, so this module serves a small,
//! in-process imitation of one Consul client agent (plus one simulated server node) over real
//! HTTP on a loopback port, with axum on tokio.
//!
//! What it implements, following Consul 1.x's HTTP API documentation and what Prometheus'
//! `discovery/consul/consul.go` reads:
//! - `PUT /v1/agent/service/register` with Consul's decoding (case-insensitive keys, `ID`
//!   defaulting to `Name`, `Check`/`Checks`, Consul's meta validation, 400 on a missing name);
//!   an identical re-registration leaves the index alone, a changed one bumps it.
//! - `PUT /v1/agent/service/deregister/<id>` (404 "Unknown service ID …" when absent),
//!   `GET /v1/agent/services`, `GET /v1/agent/service/<id>`, `GET /v1/agent/self`
//!   (`Config.Datacenter`), `GET /v1/agent/members` (`?wan`; `DoubleOptions::servers` alive
//!   server members), `GET /v1/status/leader|peers`.
//! - The ACL token and policy endpoints `consul_acl_agent_token` uses (`acl.rs`), the
//!   `acl_token` standing for the management token.
//! - `GET /v1/catalog/services`, `GET /v1/catalog/service/<name>` and
//!   `GET /v1/health/service/<name>` with blocking queries (`index`, `wait`, default 5m, cap
//!   10m), `X-Consul-Index` (≥ 1, grows on every register/deregister/check status change),
//!   `dc`, `tag`, `node-meta`, `passing`; `stale`/`consistent` are accepted and ignored.
//!   The `consul` service of the server node is listed like real Consul lists it.
//! - HTTP and TCP checks that really run at their interval (clamped to Consul's 1 s minimum,
//!   first probe immediately) and flip passing/critical/warning; TTL checks keep their
//!   initial status. Probes only go to `DoubleOptions::check_networks` (loopback by default).
//! - HTTPS (`DoubleOptions::tls`, a certificate from `testkit::tls::TestCa`), optionally
//!   requiring client certificates like an agent with `verify_incoming`.
//! - An optional ACL token (403 "ACL not found" for a missing or wrong token, on the http_sd
//!   view too: it stands for the catalog queries Prometheus makes), injected 5xx
//!   failures, a request log, stop/restart of the listener, and direct state manipulation for
//!   drift tests.
//! - `GET /promfleet-double/http_sd`: the targets and `__meta_consul_*` labels Prometheus'
//!   Consul SD would produce, as `http_sd_configs` JSON (Debian's Prometheus 2.42 has no
//!   consul_sd, so a real Prometheus in the tests reads this instead).
//!
//! What it cannot prove: anything about Consul's own behaviour (Raft, anti-entropy, per-table
//! indexes — the double has one index for everything, so watchers wake more often than on a
//! real agent; ACL policies — real Consul answers an anonymous read with filtered data, not
//! 403; `filter` expressions are refused with 400; no Connect, KV, sessions, TTL updates), nor
//! that Prometheus' own Consul client accepts these answers — the http_sd view re-implements
//! consul.go's label building and is only as faithful as that re-implementation.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use testkit::consul_double::{ConsulDouble, DoubleOptions};
//! let double = ConsulDouble::start_with(DoubleOptions {
//!     acl_token: Some("s3cret".to_owned()),
//!     ..DoubleOptions::default()
//! })
//! .await?;
//! // Point promfleet's Consul address at double.url(), deploy, then assert on the double:
//! assert!(double.services().iter().all(|s| s.meta.contains_key("hostname")));
//! double.fail_next(1, 503); // the next /v1/ request answers 503
//! double.stop().await; // agent lost: connections refused
//! double.restart().await?; // back, registry kept
//! # Ok(()) }
//! ```

mod acl;
mod api;
mod catalog;
mod checks;
mod duration;
mod registry;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use acl::{AclPolicy, AclToken};
pub use registry::CheckStatus;
use registry::{CheckKind, Registry, ServiceDef, Upsert};

/// How to start the Consul agent HTTP API test double.
#[derive(Clone, Debug)]
pub struct DoubleOptions {
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Datacenter name reported in `/v1/agent/self` and on nodes.
    pub datacenter: String,
    /// Node name of the simulated client agent that owns registered services.
    pub node_name: String,
    /// Node address reported for both simulated nodes (and used as `__address__` fallback).
    pub node_address: IpAddr,
    /// Extra node metadata of the client node (becomes `__meta_consul_metadata_*`).
    pub node_meta: BTreeMap<String, String>,
    /// When set, every `/v1/` request except `/v1/status/*` must carry this token.
    pub acl_token: Option<String>,
    /// Whether registered HTTP/TCP checks are really probed.
    pub run_checks: bool,
    /// Networks (address, prefix length) the check runner may probe; anything else goes
    /// critical without a packet sent.
    pub check_networks: Vec<(IpAddr, u8)>,
    /// Alive server members `/v1/agent/members` lists (at least 1): a single double can then
    /// stand for a healthy three-server cluster (`consul_cluster_check`).
    pub servers: usize,
    /// Serve HTTPS with this certificate (and require client certificates when it says so),
    /// like an agent with `ports.https` and `verify_incoming`; plain HTTP when unset.
    pub tls: Option<crate::tls::ServerTls>,
    /// Further datacenters whose server the WAN pool (`/v1/agent/members?wan=1`) lists beside
    /// this double's own, as after a WAN join.
    pub wan_datacenters: Vec<String>,
}

impl Default for DoubleOptions {
    fn default() -> Self {
        DoubleOptions {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            datacenter: "dc1".to_owned(),
            node_name: "consul-client-double".to_owned(),
            node_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            node_meta: BTreeMap::new(),
            acl_token: None,
            run_checks: true,
            check_networks: vec![
                (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
                (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            ],
            servers: 1,
            tls: None,
            wan_datacenters: Vec::new(),
        }
    }
}

/// A registered service as the double holds it, with live check states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredService {
    /// Service ID.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Service address (may be empty: Consul then uses the node address).
    pub address: String,
    /// Service port.
    pub port: u16,
    /// Tags in registration order.
    pub tags: Vec<String>,
    /// Service metadata.
    pub meta: BTreeMap<String, String>,
    /// The service's checks.
    pub checks: Vec<RegisteredCheck>,
}

/// One check of a registered service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredCheck {
    /// Check ID (`service:<id>` or `service:<id>:<n>` unless given).
    pub id: String,
    /// Check name.
    pub name: String,
    /// URL of an HTTP check.
    pub http: Option<String>,
    /// `host:port` of a TCP check.
    pub tcp: Option<String>,
    /// TTL of a TTL check.
    pub ttl: Option<Duration>,
    /// Probe interval as registered (before the 1 s clamp).
    pub interval: Option<Duration>,
    /// Current status.
    pub status: CheckStatus,
    /// Output of the last probe.
    pub output: String,
}

/// One request the double received, for contract assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method, e.g. `PUT`.
    pub method: String,
    /// Path with query, e.g. `/v1/catalog/services?index=3&wait=5s`.
    pub path: String,
    /// Token sent (`X-Consul-Token`, `Authorization: Bearer`, or `?token=`), if any.
    pub token: Option<String>,
    /// Request body as text (lossy UTF-8).
    pub body: String,
}

/// State shared by the handlers, the check runner and the test-facing handle.
pub(crate) struct Shared {
    opts: DoubleOptions,
    registry: Mutex<Registry>,
    index_rx: watch::Receiver<u64>,
    requests: Mutex<Vec<RequestRecord>>,
    /// Remaining injected failures and their status.
    failures: Mutex<(usize, u16)>,
    /// ACL tokens and policies made through the ACL endpoints (`acl.rs`).
    acl: Mutex<acl::AclStore>,
    runtime: tokio::runtime::Handle,
    probe_client: reqwest::Client,
}

fn relock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not turn every later call into a second panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn lock_acl(&self) -> MutexGuard<'_, acl::AclStore> {
        relock(&self.acl)
    }

    fn lock_registry(&self) -> MutexGuard<'_, Registry> {
        relock(&self.registry)
    }

    fn lock_requests(&self) -> MutexGuard<'_, Vec<RequestRecord>> {
        relock(&self.requests)
    }

    fn take_injected_failure(&self) -> Option<StatusCode> {
        let mut failures = relock(&self.failures);
        if failures.0 == 0 {
            return None;
        }
        failures.0 -= 1;
        Some(StatusCode::from_u16(failures.1).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
    }

    /// Registers (or re-registers) a service and, if it changed, (re)starts its probes.
    fn register(self: &Arc<Self>, def: ServiceDef) {
        let mut registry = self.lock_registry();
        let id = def.id.clone();
        let checks = def.checks.clone();
        if let Upsert::Changed { generation } = registry.upsert(def)
            && self.opts.run_checks
        {
            let runners = checks::spawn_runners(self, &id, generation, &checks);
            if let Some(record) = registry.services.get_mut(&id) {
                record.runners = runners;
            }
        }
    }
}

/// A running Consul agent HTTP API test double. Dropping it stops the listener and all probes.
pub struct ConsulDouble {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl ConsulDouble {
    /// Starts the double on `bind` (port 0 picks a free port) with default options.
    pub async fn start(bind: SocketAddr) -> anyhow::Result<ConsulDouble> {
        Self::start_with(DoubleOptions {
            bind,
            ..DoubleOptions::default()
        })
        .await
    }

    /// Starts the double with explicit options. Must run inside a tokio runtime.
    pub async fn start_with(opts: DoubleOptions) -> anyhow::Result<ConsulDouble> {
        let listener = TcpListener::bind(opts.bind)
            .await
            .with_context(|| format!("Consul test double: cannot listen on {}", opts.bind))?;
        let addr = listener
            .local_addr()
            .context("Consul test double: listener has no local address")?;
        let allowed = opts.check_networks.clone();
        let probe_client = reqwest::Client::builder()
            // Probes must reach the registered address itself, never an environment proxy.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                let allowed_target = attempt
                    .url()
                    .host_str()
                    .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
                    .is_some_and(|ip| checks::ip_allowed(ip, &allowed));
                if allowed_target && attempt.previous().len() < 10 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .context("Consul test double: cannot build the check probe client")?;
        // Consul's indexes start above zero; 0 would make every blocking query non-blocking.
        let (index_tx, index_rx) = watch::channel(1);
        let shared = Arc::new(Shared {
            opts,
            registry: Mutex::new(Registry::new(index_tx)),
            index_rx,
            requests: Mutex::new(Vec::new()),
            failures: Mutex::new((0, 500)),
            acl: Mutex::new(acl::AclStore::default()),
            runtime: tokio::runtime::Handle::current(),
            probe_client,
        });
        let tls = tls_acceptor(&shared.opts)?;
        let server = tokio::spawn(serve(listener, api::router(shared.clone()), tls));
        Ok(ConsulDouble {
            shared,
            addr,
            server: Mutex::new(Some(server)),
        })
    }

    /// The address the double listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.shared.opts.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The current modify index (what `X-Consul-Index` reports).
    pub fn index(&self) -> u64 {
        self.shared.lock_registry().index()
    }

    /// Registered services (not the simulated `consul` service), ordered by id.
    pub fn services(&self) -> Vec<RegisteredService> {
        let registry = self.shared.lock_registry();
        registry
            .services
            .values()
            .map(|record| RegisteredService {
                id: record.def.id.clone(),
                name: record.def.name.clone(),
                address: record.def.address.clone(),
                port: record.def.port,
                tags: record.def.tags.clone(),
                meta: record.def.meta.clone(),
                checks: record
                    .def
                    .checks
                    .iter()
                    .zip(&record.checks)
                    .map(|(check, state)| RegisteredCheck {
                        id: check.id.clone(),
                        name: check.name.clone(),
                        http: match &check.kind {
                            CheckKind::Http { url, .. } => Some(url.clone()),
                            _ => None,
                        },
                        tcp: match &check.kind {
                            CheckKind::Tcp { addr } => Some(addr.clone()),
                            _ => None,
                        },
                        ttl: match &check.kind {
                            CheckKind::Ttl { ttl } => Some(*ttl),
                            _ => None,
                        },
                        interval: check.interval,
                        status: state.status,
                        output: state.output.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock_requests().clone()
    }

    /// The ACL tokens created through `PUT /v1/acl/token`.
    pub fn acl_tokens(&self) -> Vec<acl::AclToken> {
        self.shared.lock_acl().tokens.clone()
    }

    /// The ACL policies created through `PUT /v1/acl/policy`.
    pub fn acl_policies(&self) -> Vec<acl::AclPolicy> {
        self.shared.lock_acl().policies.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared.lock_requests().clear();
    }

    /// Makes the next `n` `/v1/` requests answer `status` (e.g. 500, 503) without effect.
    pub fn fail_next(&self, n: usize, status: u16) {
        *relock(&self.shared.failures) = (n, status);
    }

    /// Registers a service from the same JSON `PUT /v1/agent/service/register` accepts,
    /// bypassing HTTP (no ACL, no request log) — for setting up drift.
    pub fn register_direct(&self, body: serde_json::Value) -> anyhow::Result<()> {
        let def = registry::parse_registration(&body).map_err(|reason| {
            anyhow::anyhow!("Consul test double refused registration: {reason}")
        })?;
        self.shared.register(def);
        Ok(())
    }

    /// Removes a service behind promfleet's back; returns whether it existed.
    pub fn deregister_direct(&self, id: &str) -> bool {
        self.shared.lock_registry().remove(id)
    }

    /// Sets one meta key of a registered service (bumping the index if it changed); returns
    /// whether the service exists.
    pub fn set_service_meta(&self, id: &str, key: &str, value: &str) -> bool {
        self.shared.lock_registry().set_meta(id, key, value)
    }

    /// Forces a check's status by check id (a running probe will overwrite it on its next
    /// run); returns whether the check exists.
    pub fn set_check_status(&self, check_id: &str, status: CheckStatus) -> bool {
        self.shared
            .lock_registry()
            .force_check_status(check_id, status)
    }

    /// Whether the listener is up.
    pub fn is_running(&self) -> bool {
        relock(&self.server).is_some()
    }

    /// Drops the listener and every open connection, like a crashed agent: connections are
    /// refused afterwards. The registry and probes are kept.
    pub async fn stop(&self) {
        let handle = relock(&self.server).take();
        if let Some(handle) = handle {
            handle.abort();
            // Awaiting the aborted task guarantees the listener socket is closed on return.
            let _ = handle.await;
        }
    }

    /// Listens again on the same address with the registry kept. No-op when running.
    pub async fn restart(&self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .with_context(|| format!("Consul test double: cannot listen again on {}", self.addr))?;
        let tls = tls_acceptor(&self.shared.opts)?;
        let server = tokio::spawn(serve(listener, api::router(self.shared.clone()), tls));
        *relock(&self.server) = Some(server);
        Ok(())
    }
}

impl Drop for ConsulDouble {
    fn drop(&mut self) {
        if let Some(handle) = relock(&self.server).take() {
            handle.abort();
        }
        // Records abort their probes when dropped.
        self.shared.lock_registry().services.clear();
    }
}

/// Accept loop. Connections live in a JoinSet owned by this future, so aborting the task
/// closes the listener and cuts every keep-alive connection at once (axum::serve would leave
/// open connections running).
fn tls_acceptor(opts: &DoubleOptions) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    opts.tls
        .as_ref()
        .map(|t| Ok(tokio_rustls::TlsAcceptor::from(t.config()?)))
        .transpose()
}

async fn serve(listener: TcpListener, router: Router, tls: Option<tokio_rustls::TlsAcceptor>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Transient accept errors (e.g. EMFILE): back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let service = TowerToHyperService::new(router.clone());
                let tls = tls.clone();
                connections.spawn(async move {
                    // A client hanging up mid-request (or failing the handshake: an unknown
                    // CA, no client certificate) is normal in tests.
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
