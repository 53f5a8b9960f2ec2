//! Consul agent HTTP API: register / deregister exporter services, check the cluster.
//!
//! Registrations are spread over the inventory's agents (a stable hash of the hostname picks
//! each host's first choice) so that losing one agent loses only its share of services — the
//! hand-built version put everything on one agent. When that agent is down, the next one is
//! used, and copies on other agents are removed so Prometheus never sees a target twice.
//! Each agent's service list is fetched once per run and kept current (no N² GETs).
//!
//! Owns: the Consul client, and the `consul_register`, `consul_deregister` and
//! `consul_cluster_check` modules (their arguments and defaults are at the end of the file).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::base::poll::{self, Pace};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::http::{API_BODY_CAP, error_snippet, get_json, read_capped};
use super::metrics_check::short_reqwest;
use super::{Done, HostCtx, TaskError};
use crate::executor::Scheduler;

/// A service as promfleet registers it (Consul's agent API field names).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceDef {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub checks: Vec<CheckDef>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckDef {
    #[serde(rename = "HTTP")]
    pub http: String,
    #[serde(rename = "Interval")]
    pub interval: String,
    #[serde(rename = "Timeout", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        skip_serializing_if = "Option::is_none"
    )]
    pub deregister_critical_service_after: Option<String>,
}

/// What `GET /v1/agent/services` returns per service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub address: String,
}

impl AgentService {
    /// Same registration as `def` (checks are derived from address and port, compared there).
    pub fn matches(&self, def: &ServiceDef) -> bool {
        self.service == def.name
            && self.address == def.address
            && self.port == def.port
            && self.tags.clone().unwrap_or_default() == def.tags
            && self.meta.clone().unwrap_or_default() == def.meta
    }
}

impl AgentService {
    /// What differs from `def`, one `field: held → wanted` item each (empty when it matches).
    pub fn differences(&self, def: &ServiceDef) -> Vec<String> {
        let mut out = Vec::new();
        if self.service != def.name {
            out.push(format!("name: {} → {}", self.service, def.name));
        }
        if self.address != def.address {
            out.push(format!("address: {} → {}", self.address, def.address));
        }
        if self.port != def.port {
            out.push(format!("port: {} → {}", self.port, def.port));
        }
        let tags = self.tags.clone().unwrap_or_default();
        if tags != def.tags {
            out.push(format!("tags: {tags:?} → {:?}", def.tags));
        }
        let meta = self.meta.clone().unwrap_or_default();
        for (k, want) in &def.meta {
            match meta.get(k) {
                Some(v) if v == want => {}
                Some(v) => out.push(format!("meta.{k}: {v} → {want}")),
                None => out.push(format!("meta.{k}: (none) → {want}")),
            }
        }
        for k in meta.keys().filter(|k| !def.meta.contains_key(*k)) {
            out.push(format!("meta.{k}: extra"));
        }
        out
    }
}

pub use crate::facts::consul::Registration;

/// Meta key marking services promfleet owns (what `consul prune` may remove).
pub const MANAGED_BY: &str = "managed_by";

type Services = HashMap<String, AgentService>;

/// How long one request to an agent may take, answer included.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled HTTP client for the inventory's Consul agents, with a per-run service cache.
pub struct ConsulClient {
    agents: Vec<String>,
    token: Option<String>,
    http: reqwest::Client,
    cache: Vec<Mutex<Option<Services>>>,
    /// Why agent `i` is down for the rest of the run: it timed out once. A hung agent would
    /// otherwise cost every registration (and every waiter on its cache) the full timeout.
    down: Vec<std::sync::OnceLock<String>>,
    /// `DeregisterCriticalServiceAfter` set on every check registered (None: never).
    deregister_critical_after: Option<String>,
}

impl ConsulClient {
    pub fn new(agents: Vec<String>, token: Option<String>, http: reqwest::Client) -> ConsulClient {
        let agents: Vec<String> = agents
            .into_iter()
            .map(|a| a.trim_end_matches('/').to_string())
            .collect();
        let cache = agents.iter().map(|_| Mutex::new(None)).collect();
        let down = agents.iter().map(|_| std::sync::OnceLock::new()).collect();
        ConsulClient {
            agents,
            token,
            http,
            cache,
            down,
            deregister_critical_after: None,
        }
    }

    /// Have Consul remove a service whose check stayed critical this long (a Consul duration
    /// such as `90m`); unset by default, as in the seed: a host that is down stays visible.
    pub fn set_deregister_critical_service_after(&mut self, after: Option<String>) {
        self.deregister_critical_after = after;
    }

    pub fn agents(&self) -> &[String] {
        &self.agents
    }

    /// The ACL token sent with every request (for the few requests built elsewhere).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A GET of any Consul API URL (not only the inventory's agents) with this client's TLS
    /// settings, token and timeout.
    pub fn get(&self, url: String) -> reqwest::RequestBuilder {
        self.req(reqwest::Method::GET, url)
    }

    fn req(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url).timeout(AGENT_TIMEOUT);
        match &self.token {
            Some(t) => r.header("X-Consul-Token", t),
            None => r,
        }
    }

    /// Agent order for a host: its hash-chosen agent first, then the others.
    fn order(&self, key: &str) -> Vec<usize> {
        let n = self.agents.len();
        if n == 0 {
            return vec![];
        }
        // FNV-1a: stable across runs and builds (std's hasher is randomly seeded).
        let mut h: u64 = 0xcbf29ce484222325;
        for b in key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        let start = (h % n as u64) as usize;
        (0..n).map(|i| (start + i) % n).collect()
    }

    /// Of the agents at `holders` (URLs), the one a registration for `key` would use: the
    /// first in `key`'s agent order. `consul prune` keeps the copy there and removes the others.
    pub fn keeper<'a>(&self, key: &str, holders: &[&'a str]) -> Option<&'a str> {
        self.order(key)
            .into_iter()
            .find_map(|i| holders.iter().find(|h| **h == self.agents[i]).copied())
    }

    /// Send `r` to agent `i`, unless it is down; a timeout marks it down for the run.
    async fn send(
        &self,
        i: usize,
        r: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        if let Some(why) = self.down.get(i).and_then(|d| d.get()) {
            return Err(format!("skipped: {why} earlier in this run"));
        }
        r.send().await.map_err(|e| {
            let msg = short_reqwest(&e);
            if e.is_timeout()
                && let Some(d) = self.down.get(i)
            {
                let _ = d.set(msg.clone());
            }
            msg
        })
    }

    async fn fetch(&self, i: usize) -> Result<Services, String> {
        let url = format!("{}/v1/agent/services", self.agents[i]);
        let resp = self.send(i, self.req(reqwest::Method::GET, url)).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {status} {}", error_snippet(resp, 200).await));
        }
        let body = read_capped(resp, API_BODY_CAP).await?;
        serde_json::from_slice::<Services>(&body)
            .map_err(|e| format!("bad /v1/agent/services answer: {e}"))
    }

    /// The services on agent `i` (cached for the run).
    pub async fn services(&self, i: usize) -> Result<Services, String> {
        let mut slot = self.cache[i].lock().await;
        if let Some(s) = &*slot {
            return Ok(s.clone());
        }
        let s = self.fetch(i).await?;
        *slot = Some(s.clone());
        Ok(s)
    }

    async fn put(&self, i: usize, path: &str, body: Option<&ServiceDef>) -> Result<(), String> {
        let url = format!("{}{path}", self.agents[i]);
        let mut r = self.req(reqwest::Method::PUT, url);
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = self.send(i, r).await?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status} {}", error_snippet(resp, 200).await))
        }
    }

    /// Register `def` (idempotent). Returns (changed, agent used).
    pub async fn register(&self, def: &ServiceDef, key: &str) -> Result<(bool, String), TaskError> {
        if self.agents.is_empty() {
            return Err(TaskError::permanent(
                "no Consul agents in the inventory (consul.agents)",
            ));
        }
        let def = &self.with_client_options(def);
        let mut errors = Vec::new();
        let mut used = None;
        for i in self.order(key) {
            match self.services(i).await {
                Ok(s) if s.get(&def.id).is_some_and(|x| x.matches(def)) => {
                    used = Some((i, false));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    errors.push(format!("{}: {e}", self.agents[i]));
                    continue;
                }
            }
            match self.put(i, "/v1/agent/service/register", Some(def)).await {
                Ok(()) => {
                    if let Some(s) = self.cache[i].lock().await.as_mut() {
                        s.insert(def.id.clone(), as_agent_service(def));
                    }
                    used = Some((i, true));
                    break;
                }
                Err(e) => errors.push(format!("{}: {e}", self.agents[i])),
            }
        }
        let Some((i, mut changed)) = used else {
            return Err(TaskError::transient(format!(
                "no Consul agent accepted {} ({})",
                def.id,
                errors.join("; ")
            )));
        };
        // A copy left on another agent (after a failover) would be a duplicate target.
        for j in (0..self.agents.len()).filter(|j| *j != i) {
            let held = match self.cache[j].lock().await.as_ref() {
                Some(s) => s.contains_key(&def.id),
                None => false,
            };
            if held && self.deregister_on(j, &def.id).await.is_ok() {
                changed = true;
            }
        }
        Ok((changed, self.agents[i].clone()))
    }

    /// `def` with the client-wide check options (`DeregisterCriticalServiceAfter`).
    fn with_client_options(&self, def: &ServiceDef) -> ServiceDef {
        let mut def = def.clone();
        if let Some(after) = &self.deregister_critical_after {
            for c in &mut def.checks {
                c.deregister_critical_service_after = Some(after.clone());
            }
        }
        def
    }

    async fn deregister_on(&self, i: usize, id: &str) -> Result<(), String> {
        // One path segment, whatever the id holds: a `/`, `..` or `?` read from an agent must
        // not turn this PUT into another endpoint (e.g. `/v1/agent/leave`). A whole `.`/`..`
        // is a dot segment in any spelling (the URL parser removes it), so it is refused.
        if id == "." || id == ".." {
            return Err(format!("refusing to deregister service id `{id}`"));
        }
        const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let segment = percent_encoding::utf8_percent_encode(id, SEGMENT);
        self.put(i, &format!("/v1/agent/service/deregister/{segment}"), None)
            .await?;
        if let Some(s) = self.cache[i].lock().await.as_mut() {
            s.remove(id);
        }
        Ok(())
    }

    /// Deregister `id` from every agent holding it. Returns how many agents removed it.
    pub async fn deregister(&self, id: &str) -> Result<usize, TaskError> {
        let mut removed = 0;
        let mut errors = Vec::new();
        for i in 0..self.agents.len() {
            match self.services(i).await {
                Ok(s) if s.contains_key(id) => match self.deregister_on(i, id).await {
                    Ok(()) => removed += 1,
                    Err(e) => errors.push(format!("{}: {e}", self.agents[i])),
                },
                Ok(_) => {}
                Err(e) => errors.push(format!("{}: {e}", self.agents[i])),
            }
        }
        if removed == 0 && !errors.is_empty() {
            return Err(TaskError::transient(format!(
                "cannot deregister {id}: {}",
                errors.join("; ")
            )));
        }
        Ok(removed)
    }

    /// Every promfleet-managed service on every reachable agent: (agent url, service), and
    /// why the others could not be asked. Every agent is asked at once (a fan-out of its own:
    /// a task asking from inside a run must not wait for the run's forks).
    pub async fn managed(self: &Arc<Self>) -> (Vec<(String, AgentService)>, Vec<String>) {
        let never = tokio_util::sync::CancellationToken::new();
        let sched = Scheduler::new(self.agents.len(), never.clone(), never);
        self.managed_on(&sched).await
    }

    /// [`ConsulClient::managed`], one agent per item of `sched` (its forks, its Ctrl-C: an
    /// agent a cancellation kept from being asked is reported as not asked).
    pub async fn managed_on(
        self: &Arc<Self>,
        sched: &Scheduler,
    ) -> (Vec<(String, AgentService)>, Vec<String>) {
        let items = (0..self.agents.len())
            .map(|i| (self.agents[i].clone(), i))
            .collect();
        let me = self.clone();
        let asked = sched
            .run(items, move |i| {
                let me = me.clone();
                async move { me.services(i).await }
            })
            .in_order()
            .await;
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (i, answer) in asked.into_iter().enumerate() {
            match answer {
                Some(Ok(s)) => {
                    let mut v: Vec<_> = s
                        .into_values()
                        .filter(|x| {
                            x.meta
                                .as_ref()
                                .and_then(|m| m.get(MANAGED_BY))
                                .is_some_and(|v| v == "promfleet")
                        })
                        .map(|x| (self.agents[i].clone(), x))
                        .collect();
                    v.sort_by(|a, b| a.1.id.cmp(&b.1.id));
                    out.extend(v);
                }
                Some(Err(e)) => errors.push(format!("{}: {e}", self.agents[i])),
                None => errors.push(format!("{}: not asked (interrupted)", self.agents[i])),
            }
        }
        (out, errors)
    }

    /// Remove `id` from the agent at `url` (used by prune).
    pub async fn deregister_at(&self, url: &str, id: &str) -> Result<(), String> {
        match self.agents.iter().position(|a| a == url) {
            Some(i) => self.deregister_on(i, id).await,
            None => Err(format!("{url} is not an inventory agent")),
        }
    }

    /// Compare `def` with what the agents hold, without changing anything (the
    /// registration fact, `facts::consul`).
    pub async fn compare(&self, def: &ServiceDef) -> Registration {
        crate::facts::consul::registration(self, def).await
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

fn as_agent_service(def: &ServiceDef) -> AgentService {
    AgentService {
        id: def.id.clone(),
        service: def.name.clone(),
        tags: Some(def.tags.clone()),
        meta: Some(def.meta.clone()),
        port: def.port,
        address: def.address.clone(),
    }
}

/// `consul_register`: one exporter service of this host.
#[derive(Debug, Clone)]
pub struct Register {
    pub def: ServiceDef,
}

/// The inputs of one exporter registration (from the task's arguments and the host).
pub struct ServiceSpec {
    pub service: String,
    pub id: Option<String>,
    pub hostname: String,
    pub group: String,
    pub address: String,
    pub port: u16,
    pub check_path: String,
    pub interval: String,
    pub meta: BTreeMap<String, String>,
    pub tags: Vec<String>,
}

impl Register {
    /// The seed's payload: id `<service>-<hostname>-<ip>`, address = the host's ip, meta
    /// {hostname, group}, an HTTP check on /metrics.
    pub fn new(spec: ServiceSpec) -> Register {
        let ServiceSpec {
            service,
            id,
            hostname,
            group,
            address,
            port,
            check_path,
            interval,
            mut meta,
            tags,
        } = spec;
        meta.insert("hostname".into(), hostname.clone());
        meta.insert("group".into(), group);
        meta.insert(MANAGED_BY.into(), "promfleet".into());
        Register {
            def: ServiceDef {
                id: id.unwrap_or_else(|| format!("{service}-{hostname}-{address}")),
                checks: vec![CheckDef {
                    http: format!(
                        "http://{}:{port}{check_path}",
                        crate::base::addr::url_host(&address)
                    ),
                    interval,
                    timeout: Some("3s".into()),
                    deregister_critical_service_after: None,
                }],
                name: service,
                address,
                port,
                tags,
                meta,
            },
        }
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        if ctx.check {
            let id = &self.def.id;
            return Ok(
                match ctx.service::<ConsulClient>()?.compare(&self.def).await {
                    Registration::Ok { .. } => Done::ok(),
                    Registration::Differs { agent, what } => Done::changed().with(format!(
                        "would update {id} on {agent} ({})",
                        what.join(", ")
                    )),
                    Registration::Duplicate { agents } => Done::changed().with(format!(
                        "would keep one copy of {id} (held by {})",
                        agents.join(", ")
                    )),
                    Registration::Missing { .. } | Registration::Unknown { .. } => {
                        Done::changed().with(format!("would register {id}"))
                    }
                },
            );
        }
        let (changed, agent) = ctx
            .service::<ConsulClient>()?
            .register(&self.def, &ctx.host.name)
            .await?;
        let d = if changed { Done::changed() } else { Done::ok() };
        Ok(d.with(format!("{} on {agent}", self.def.id)))
    }
}

/// `consul_deregister`.
#[derive(Debug, Clone)]
pub struct Deregister {
    pub id: String,
}

impl Deregister {
    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        if ctx.check {
            return Ok(Done::changed().with(format!("would deregister {}", self.id)));
        }
        let n = ctx.service::<ConsulClient>()?.deregister(&self.id).await?;
        Ok(if n > 0 {
            Done::changed().with(format!("removed {} from {n} agent(s)", self.id))
        } else {
            Done::ok()
        })
    }
}

/// `consul_cluster_check`: a leader is elected and enough servers are alive.
#[derive(Debug, Clone)]
pub struct ClusterCheck {
    pub url: String,
    pub servers: usize,
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Member {
    #[serde(default)]
    status: i64,
    #[serde(default)]
    tags: HashMap<String, String>,
}

impl ClusterCheck {
    async fn probe(&self, ctx: &HostCtx<'_>) -> Result<String, String> {
        let base = self.url.trim_end_matches('/');
        // Through the run's Consul client: under ACL default-deny `/v1/agent/members` needs
        // the token, and a TLS agent the client's CA and certificate.
        let consul = ctx.service::<ConsulClient>().map_err(|e| e.message)?;
        let get = |path: &str| {
            consul
                .get(format!("{base}{path}"))
                .timeout(Duration::from_secs(5))
        };
        let leader: String = get_json(get("/v1/status/leader"), "/v1/status/leader").await?;
        if leader.is_empty() {
            return Err("no leader elected".into());
        }
        let members: Vec<Member> = get_json(get("/v1/agent/members"), "/v1/agent/members").await?;
        let alive = members
            .iter()
            .filter(|m| m.status == 1 && m.tags.get("role").is_some_and(|r| r == "consul"))
            .count();
        if alive < self.servers {
            return Err(format!("{alive} of {} servers alive", self.servers));
        }
        Ok(format!("leader {leader}, {alive} servers alive"))
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        if ctx.check {
            return Ok(Done::skipped("not checked in --check mode"));
        }
        let ctx = &*ctx;
        let every = Pace::every(Duration::from_secs(1));
        let polled = poll::until(self.timeout, every, move || async move {
            self.probe(ctx).await.map_err(poll::Miss::Retry)
        })
        .await;
        match polled {
            Ok(d) => Ok(Done::ok().with(d)),
            Err(e) => Err(TaskError::transient(format!(
                "Consul cluster at {} not healthy after {}s: {e}",
                self.url,
                self.timeout.as_secs()
            ))),
        }
    }
}

// The consul modules' arguments, defaults and what the executor must know about their
// actions (kept together at the end of the file).

/// `consul_register`.
pub struct RegisterModule;

impl super::Module for RegisterModule {
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (
            &["service", "port"],
            &["id", "address", "meta", "check_path", "interval", "tags"],
        )
    }

    /// Address defaults to the host's ip, the check to GET /metrics every 5s; meta values
    /// that are not strings are sent as their JSON text.
    fn plan(
        &self,
        args: &serde_json::Value,
        cx: &mut super::PlanCtx<'_>,
    ) -> Result<super::Action, String> {
        use serde_json::Value;
        let a = super::Args(args);
        let meta = match args.get("meta") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            None | Some(Value::Null) => BTreeMap::new(),
            Some(_) => return Err("`meta` must be a map".into()),
        };
        let address = a
            .opt_str("address")?
            .unwrap_or_else(|| cx.host.ip.to_string());
        Ok(super::Action::ConsulRegister(Register::new(ServiceSpec {
            service: a.str("service")?,
            id: a.opt_str("id")?,
            hostname: cx.host.name.clone(),
            group: cx.host.group.clone(),
            address,
            port: a.port("port")?,
            check_path: a
                .opt_str("check_path")?
                .unwrap_or_else(|| "/metrics".into()),
            interval: a.opt_str("interval")?.unwrap_or_else(|| "5s".into()),
            meta,
            tags: a.list("tags")?,
        })))
    }
}

/// `consul_deregister`.
pub struct DeregisterModule;

impl super::Module for DeregisterModule {
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (&["id"], &[])
    }

    fn plan(
        &self,
        args: &serde_json::Value,
        _cx: &mut super::PlanCtx<'_>,
    ) -> Result<super::Action, String> {
        Ok(super::Action::ConsulDeregister(Deregister {
            id: super::Args(args).str("id")?,
        }))
    }
}

/// `consul_cluster_check`.
pub struct ClusterCheckModule;

impl super::Module for ClusterCheckModule {
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (&["url"], &["servers", "timeout"])
    }

    fn plan(
        &self,
        args: &serde_json::Value,
        _cx: &mut super::PlanCtx<'_>,
    ) -> Result<super::Action, String> {
        let a = super::Args(args);
        Ok(super::Action::ConsulClusterCheck(ClusterCheck {
            url: a.str("url")?,
            servers: a.opt_u64("servers")?.unwrap_or(3) as usize,
            timeout: Duration::from_secs(a.opt_u64("timeout")?.unwrap_or(120)),
        }))
    }
}

impl super::Task for Register {
    super::task_run!();

    fn wants(&self) -> Vec<super::Want> {
        vec![super::Want::Service(self.def.clone())]
    }
}

impl super::Task for Deregister {
    super::task_run!();
}

impl super::Task for ClusterCheck {
    super::task_run!();
}
