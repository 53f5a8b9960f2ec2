//! Consul agent HTTP API: register / deregister exporter services, check the cluster.
//!
//! Registrations are spread over the inventory's agents (a stable hash of the hostname picks
//! each host's first choice) so that losing one agent loses only its share of services — the
//! hand-built version put everything on one agent. When that agent is down, the next one is
//! used, and copies on other agents are removed so Prometheus never sees a target twice.
//! Where the agents run on two or more monitoring hosts (HA, [`Placement`]), every exporter is
//! registered on two agents of two different hosts, so losing any one monitoring host loses no
//! registration; with several datacenters a host registers on its own datacenter's agents only.
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

/// Where an agent runs, as the inventory tells: the monitoring host whose ip (or name) its URL
/// names, and that host's datacenter (`None`: the URL names no monitoring host).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentSite {
    pub host: Option<String>,
    pub datacenter: Option<String>,
}

/// How registrations are placed over the agents (built from the inventory by
/// `Inventory::consul_placement`). The default places as if every agent's host were unknown:
/// one copy per exporter, on any agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// Per agent, parallel to the client's agents.
    pub sites: Vec<AgentSite>,
    /// Several datacenters: the datacenter of every inventory host (by name). Empty otherwise,
    /// and then every agent serves every host.
    pub host_datacenter: HashMap<String, String>,
}

impl Placement {
    /// The agents (indices) serving datacenter `dc`: those on its monitoring hosts, or, when
    /// none is, those on no monitoring host — never another datacenter's. Registration
    /// (`ConsulClient`) and the rendered discovery (`topology.datacenters[].agents`) both
    /// use this rule.
    pub fn serving(&self, dc: &str) -> Vec<usize> {
        let of = |want: Option<&str>| -> Vec<usize> {
            (0..self.sites.len())
                .filter(|i| self.sites[*i].datacenter.as_deref() == want)
                .collect()
        };
        let own = of(Some(dc));
        if own.is_empty() { of(None) } else { own }
    }
}

/// Copies of one registration where the agents run on two or more monitoring hosts: one is
/// enough to keep a target, two on two hosts survive the loss of any one host.
pub const HA_COPIES: usize = 2;

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
    placement: Placement,
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
            placement: Placement::default(),
        }
    }

    /// Where the agents run (see [`Placement`]); sites beyond the agent list are ignored and
    /// missing ones count as unknown.
    pub fn set_placement(&mut self, mut placement: Placement) {
        placement
            .sites
            .resize(self.agents.len(), AgentSite::default());
        self.placement = placement;
    }

    fn site(&self, i: usize) -> &AgentSite {
        static UNKNOWN: AgentSite = AgentSite {
            host: None,
            datacenter: None,
        };
        self.placement.sites.get(i).unwrap_or(&UNKNOWN)
    }

    /// Agent `i` runs on a known monitoring host other than those of every agent in `picked`.
    fn on_another_host(&self, i: usize, picked: &[usize]) -> bool {
        let Some(host) = &self.site(i).host else {
            return false;
        };
        picked
            .iter()
            .all(|p| self.site(*p).host.as_ref().is_some_and(|h| h != host))
    }

    /// The datacenter whose agents serve `key`'s host (several datacenters only).
    fn datacenter_of(&self, key: &str) -> Option<&str> {
        self.placement.host_datacenter.get(key).map(String::as_str)
    }

    /// The agents a registration for `key` may use, in preference order: its hash order, and
    /// with several datacenters only the agents serving its host's datacenter
    /// ([`Placement::serving`]).
    fn candidates(&self, key: &str) -> Vec<usize> {
        let order = self.order(key);
        let Some(dc) = self.datacenter_of(key) else {
            return order;
        };
        let serving = self.placement.serving(dc);
        order.into_iter().filter(|i| serving.contains(i)).collect()
    }

    /// How many agents hold a registration for `key`: two ([`HA_COPIES`]) when its candidate
    /// agents run on two or more monitoring hosts, else one.
    pub fn copies(&self, key: &str) -> usize {
        let hosts: std::collections::BTreeSet<&str> = self
            .candidates(key)
            .into_iter()
            .filter_map(|i| self.site(i).host.as_deref())
            .collect();
        if hosts.len() >= 2 { HA_COPIES } else { 1 }
    }

    /// The candidates in the order registration tries them: with two copies wanted, agents
    /// on a monitoring host first (an agent elsewhere cannot be told apart from one on the
    /// same host, so it only stands in for a lost host's).
    fn preference(&self, key: &str) -> Vec<usize> {
        let mut c = self.candidates(key);
        if self.copies(key) > 1 {
            c.sort_by_key(|i| self.site(*i).host.is_none());
        }
        c
    }

    /// The designated agents for `key` among those `usable`: the first in its preference
    /// order, then the next ones on other monitoring hosts, up to [`ConsulClient::copies`].
    /// Registration (with `usable` = accepted) and `consul prune` (= holds a copy) both
    /// choose by this rule, so prune keeps exactly the copies registration makes.
    fn designate(&self, key: &str, usable: impl Fn(usize) -> bool) -> Vec<usize> {
        let want = self.copies(key);
        let mut picked = Vec::new();
        for i in self.preference(key) {
            if picked.len() == want {
                break;
            }
            if usable(i) && (picked.is_empty() || self.on_another_host(i, &picked)) {
                picked.push(i);
            }
        }
        picked
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

    /// Of the agents at `holders` (URLs), the ones a registration for `key` would use (see
    /// [`ConsulClient::designate`]). `consul prune` keeps the copies there and removes the
    /// others.
    pub fn keepers<'a>(&self, key: &str, holders: &[&'a str]) -> Vec<&'a str> {
        let held = |i: usize| holders.contains(&self.agents[i].as_str());
        self.designate(key, held)
            .into_iter()
            .filter_map(|i| holders.iter().find(|h| **h == self.agents[i]).copied())
            .collect()
    }

    /// The first of [`ConsulClient::keepers`].
    pub fn keeper<'a>(&self, key: &str, holders: &[&'a str]) -> Option<&'a str> {
        self.keepers(key, holders).into_iter().next()
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

    /// Register `def` (idempotent) on the agents designated for `key` (one, or two on two
    /// monitoring hosts: [`ConsulClient::designate`]), failing over along `key`'s candidate
    /// order, and remove the copies any other agent holds. Returns (changed, where: the agents
    /// used, and the copies missing when fewer agents than wanted accepted it).
    pub async fn register(&self, def: &ServiceDef, key: &str) -> Result<(bool, String), TaskError> {
        if self.agents.is_empty() {
            return Err(TaskError::permanent(
                "no Consul agents in the inventory (consul.agents)",
            ));
        }
        let candidates = self.preference(key);
        if candidates.is_empty() {
            return Err(TaskError::permanent(format!(
                "no Consul agent of datacenter {} in consul.agents (an agent belongs to the \
                 datacenter of the monitoring host its URL names)",
                self.datacenter_of(key).unwrap_or_default()
            )));
        }
        let want = self.copies(key);
        let def = &self.with_client_options(def);
        let mut errors = Vec::new();
        let mut used: Vec<usize> = Vec::new();
        let mut changed = false;
        for i in candidates {
            if used.len() == want {
                break;
            }
            if !used.is_empty() && !self.on_another_host(i, &used) {
                continue;
            }
            match self.services(i).await {
                Ok(s) if s.get(&def.id).is_some_and(|x| x.matches(def)) => {
                    used.push(i);
                    continue;
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
                    used.push(i);
                    changed = true;
                }
                Err(e) => errors.push(format!("{}: {e}", self.agents[i])),
            }
        }
        if used.is_empty() {
            return Err(TaskError::transient(format!(
                "no Consul agent accepted {} ({})",
                def.id,
                errors.join("; ")
            )));
        }
        // A copy left on another agent this run has read (after a failover) would be a
        // duplicate target; agents not read (another datacenter's) are `consul prune`'s.
        for j in (0..self.agents.len()).filter(|j| !used.contains(j)) {
            let held = match self.cache[j].lock().await.as_ref() {
                Some(s) => s.contains_key(&def.id),
                None => false,
            };
            if held && self.deregister_on(j, &def.id).await.is_ok() {
                changed = true;
            }
        }
        let at: Vec<&str> = used.iter().map(|i| self.agents[*i].as_str()).collect();
        let mut place = at.join(", ");
        if used.len() < want {
            place.push_str(&format!(
                " ({} of {want} copies: no agent on another monitoring host accepted it: {})",
                used.len(),
                if errors.is_empty() {
                    "none answered".to_owned()
                } else {
                    errors.join("; ")
                }
            ));
        }
        Ok((changed, place))
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

#[cfg(test)]
mod placement_tests {
    use super::*;

    fn site(host: Option<&str>, dc: Option<&str>) -> AgentSite {
        AgentSite {
            host: host.map(str::to_owned),
            datacenter: dc.map(str::to_owned),
        }
    }

    fn client(agents: &[(&str, AgentSite)], host_dc: &[(&str, &str)]) -> ConsulClient {
        let mut c = ConsulClient::new(
            agents.iter().map(|(a, _)| a.to_string()).collect(),
            None,
            reqwest::Client::new(),
        );
        c.set_placement(Placement {
            sites: agents.iter().map(|(_, s)| s.clone()).collect(),
            host_datacenter: host_dc
                .iter()
                .map(|(h, d)| (h.to_string(), d.to_string()))
                .collect(),
        });
        c
    }

    const KEYS: std::ops::Range<usize> = 0..200;

    #[test]
    fn ha_designates_two_agents_on_two_monitoring_hosts_and_prune_keeps_exactly_those() {
        let c = client(
            &[
                ("http://a1", site(Some("mon-1"), Some("dc1"))),
                ("http://a2", site(Some("mon-1"), Some("dc1"))),
                ("http://b1", site(Some("mon-2"), Some("dc1"))),
                ("http://x", site(None, None)),
            ],
            &[],
        );
        let all = ["http://a1", "http://a2", "http://b1", "http://x"];
        for k in KEYS.map(|n| format!("host{n:03}")) {
            assert_eq!(c.copies(&k), 2, "{k}");
            let keep = c.keepers(&k, &all);
            assert_eq!(keep.len(), 2, "{k}: {keep:?}");
            // One on each host: b1 always (the only agent of mon-2), never the agent of no
            // known host while both hosts have one.
            assert!(keep.contains(&"http://b1"), "{k}: {keep:?}");
            assert!(!keep.contains(&"http://x"), "{k}: {keep:?}");
            // mon-2 lost: the stand-in is the other host's agent or the unknown one, and
            // prune keeps the copies the failover made.
            let without_b = c.keepers(&k, &["http://a1", "http://a2", "http://x"]);
            assert_eq!(without_b.len(), 1, "{k}: {without_b:?}");
        }
        // The hash still spreads the first copy over mon-1's two agents.
        let firsts: std::collections::BTreeSet<&str> = KEYS
            .map(|n| c.keeper(&format!("host{n:03}"), &all).unwrap_or_default())
            .collect();
        assert!(firsts.len() >= 2, "{firsts:?}");
    }

    #[test]
    fn agents_on_one_host_or_unknown_hosts_keep_one_copy_as_before() {
        let same = client(
            &[
                ("http://a1", site(Some("mon-1"), Some("dc1"))),
                ("http://a2", site(Some("mon-1"), Some("dc1"))),
            ],
            &[],
        );
        let unknown = ConsulClient::new(
            vec!["http://p".into(), "http://q".into()],
            None,
            reqwest::Client::new(),
        );
        for c in [&same, &unknown] {
            let agents: Vec<&str> = c.agents().iter().map(String::as_str).collect();
            for k in KEYS.map(|n| format!("host{n:03}")) {
                assert_eq!(c.copies(&k), 1);
                assert_eq!(c.keepers(&k, &agents).len(), 1);
            }
        }
    }

    #[tokio::test]
    async fn several_datacenters_register_on_their_own_datacenters_agents_only() {
        let c = client(
            &[
                ("http://fra1", site(Some("mon-fra-1"), Some("fra"))),
                ("http://fra2", site(Some("mon-fra-2"), Some("fra"))),
                ("http://sha1", site(Some("mon-sha-1"), Some("sha"))),
                ("http://elsewhere", site(None, None)),
            ],
            &[("ide-01", "fra"), ("stage-01", "sha"), ("nyc-01", "nyc")],
        );
        let name = |v: Vec<usize>| -> Vec<String> {
            let mut v: Vec<String> = v.into_iter().map(|i| c.agents[i].clone()).collect();
            v.sort();
            v
        };
        assert_eq!(name(c.candidates("ide-01")), ["http://fra1", "http://fra2"]);
        assert_eq!(c.copies("ide-01"), 2);
        assert_eq!(name(c.candidates("stage-01")), ["http://sha1"]);
        assert_eq!(c.copies("stage-01"), 1);
        // A datacenter no agent's host is in: the agents on no monitoring host, never
        // another datacenter's.
        assert_eq!(name(c.candidates("nyc-01")), ["http://elsewhere"]);
        let all: Vec<&str> = c.agents().iter().map(String::as_str).collect();
        assert_eq!(c.keepers("stage-01", &all), ["http://sha1"]);

        // No agent may serve the host: refused before any request.
        let only_fra = client(
            &[("http://fra1", site(Some("mon-fra-1"), Some("fra")))],
            &[("stage-01", "sha")],
        );
        let def = Register::new(ServiceSpec {
            service: "node".into(),
            id: None,
            hostname: "stage-01".into(),
            group: "Stage".into(),
            address: "10.8.2.21".into(),
            port: 9100,
            check_path: "/metrics".into(),
            interval: "5s".into(),
            meta: BTreeMap::new(),
            tags: vec![],
        })
        .def;
        let err = only_fra.register(&def, "stage-01").await.unwrap_err();
        assert!(err.message.contains("datacenter sha"), "{}", err.message);
        assert!(!err.transient);
    }
}
