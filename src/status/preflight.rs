//! Preflight: what each fleet host is, before anything is written there, and a verdict —
//! ready, will adapt (the exporter variables preflight chooses, and why), or blocked (why, and
//! the fix). One round trip per host: every system fact (`facts::system`) in one batch, with
//! the facts the command's next pass will read there (`Ask::also`, handed over through
//! `facts::Primed`: deploy's first play, `status`'s comparison).
//!
//! Owns: turning facts and a host's variables into a verdict and the variable overrides that
//! adapt the exporter compose file (each only where the inventory does not set it).
//! Must not: write to a host, print (the CLI renders), or run a module.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::executor::{Connector, Scheduler};
use crate::facts::system::{
    CapBounds, CapabilityBounds, CgroupVersion, Cgroups, Clock, Compose, ComposeInfo, DockerAccess,
    DockerEngine, DockerSocket, FreeSpace, Listener, ListeningPorts, LocalImages, PathsExist,
    Propagation, PublishedPorts, Reach, RegistryProbe, RegistryReach, RootPropagation, Selinux,
    SelinuxMode, SocketInfo, Space, registry_of,
};
use crate::facts::{ErasedFact, Fact, FactError, Facts, Primed};
use crate::inventory::{Host, Vars};
use crate::report::HostStatus;
use crate::transport::TransportError;

/// cAdvisor's upstream device; its /dev/disk mount; RHEL 6/7's cgroup v1 mount point.
#[cfg(test)]
const KMSG: &str = "/dev/kmsg";
const DEV_DISK: &str = "/dev/disk";
const CGROUP_V1_RHEL: &str = "/cgroup";
/// Names of promfleet's exporter containers (templates/exporters/docker-compose.yml).
const OUR_CONTAINERS: [&str; 2] = ["node-exporter", "cadvisor-exporter"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ready,
    /// Deployable with exporter variables preflight chose for this host.
    Adapt,
    /// Not deployable until fixed: left untouched by `deploy`.
    Blocked,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ready => "ready",
            Verdict::Adapt => "will adapt",
            Verdict::Blocked => "blocked",
        }
    }
}

/// Why a host is blocked, and what fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    pub why: String,
    pub fix: String,
}

/// A template variable preflight chose for a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adaptation {
    pub var: String,
    pub value: Value,
    pub why: String,
    /// False when the inventory sets the variable itself: the inventory wins.
    pub applied: bool,
}

/// One host's preflight.
#[derive(Debug, Clone, Serialize)]
pub struct HostPreflight {
    pub host: String,
    pub group: String,
    pub verdict: Verdict,
    /// The host could not be asked at all (deploy leaves it to the run's own connect retries).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unreachable: bool,
    /// What was found, one line per check (`docker`, `compose`, `ports`, …).
    pub checks: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adaptations: Vec<Adaptation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
    /// How the run reports an unreachable host (the connect error's kind), so deploy does not
    /// connect a second time.
    #[serde(skip)]
    pub connect_failure: Option<crate::executor::Blocked>,
    /// Not probed again: unchanged since the full preflight of this time (`status::unchanged`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchanged_since: Option<String>,
}

impl HostPreflight {
    /// The variables to add to the host's (those the inventory does not set).
    pub fn overrides(&self) -> Vars {
        self.adaptations
            .iter()
            .filter(|a| a.applied)
            .map(|a| (a.var.clone(), a.value.clone()))
            .collect()
    }

    /// One line: the blockers with their fixes, or the adaptations.
    pub fn summary(&self) -> String {
        match self.verdict {
            Verdict::Blocked => self
                .blockers
                .iter()
                .map(|b| format!("{} — fix: {}", b.why, b.fix))
                .collect::<Vec<_>>()
                .join("; "),
            Verdict::Adapt => self
                .adaptations
                .iter()
                .filter(|a| a.applied)
                .map(|a| format!("{}={} ({})", a.var, show(&a.value), a.why))
                .collect::<Vec<_>>()
                .join("; "),
            Verdict::Ready => "ready".into(),
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What the inventory (over the built-in defaults) asks of one host.
#[derive(Debug, Clone)]
pub struct Wants {
    pub compose_command: String,
    /// (variable, port) of each exporter port.
    pub ports: Vec<(&'static str, u16)>,
    /// `exporter_bind_address` (None: every interface).
    pub bind: Option<String>,
    /// The host's inventory address.
    pub ip: String,
    pub deploy_dir: String,
    /// (service, image reference as it will be pulled).
    pub images: Vec<(&'static str, String)>,
    pub min_free_deploy_kib: u64,
    pub min_free_docker_kib: u64,
    pub max_clock_offset: f64,
    /// Devices cAdvisor is given (`cadvisor_devices`), and whether /dev/disk is mounted.
    pub cadvisor_devices: Vec<String>,
    pub cadvisor_dev_disk: bool,
    /// cAdvisor runs privileged, as upstream (`cadvisor_privileged`).
    pub cadvisor_privileged: bool,
    /// Seconds each registry probe may take (`preflight_registry_timeout`; 0: no probe).
    pub registry_timeout: u64,
    /// The host mount the inventory sets itself, if it does.
    pub inventory_host_mount: Option<String>,
    /// Variables the inventory sets (they are not overridden).
    pub set: std::collections::HashSet<String>,
    /// The defaults' value of each variable preflight may choose.
    pub defaults: Vars,
}

impl Wants {
    /// From the built-in defaults and the inventory's variables for the host.
    pub fn new(host: &Host, defaults: &Vars, inventory: &Vars) -> Wants {
        let mut all = defaults.clone();
        all.extend(inventory.clone());
        let s = |k: &str| var_str(&all, k);
        let n = |k: &str, d: u64| var_u64(&all, k).unwrap_or(d);
        let registry = s("image_registry");
        let image = |name: &str, tag: &str| image_ref(&registry, &s(name), &s(tag));
        Wants {
            compose_command: s("compose_command"),
            ports: [
                ("node_exporter_port", n("node_exporter_port", 9100)),
                ("cadvisor_port", n("cadvisor_port", 9105)),
            ]
            .into_iter()
            .map(|(k, p)| (k, u16::try_from(p).unwrap_or(0)))
            .collect(),
            bind: Some(s("exporter_bind_address")).filter(|b| !b.is_empty()),
            ip: host.ip.to_string(),
            deploy_dir: Some(s("deploy_dir"))
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "~/exporter-deploy".into()),
            images: vec![
                (
                    "node-exporter",
                    image("node_exporter_image", "node_exporter_tag"),
                ),
                ("cadvisor-exporter", image("cadvisor_image", "cadvisor_tag")),
            ],
            min_free_deploy_kib: n("preflight_min_free_mb", 100) * 1024,
            min_free_docker_kib: n("preflight_min_free_docker_mb", 1024) * 1024,
            max_clock_offset: var_u64(&all, "preflight_max_clock_offset").unwrap_or(30) as f64,
            cadvisor_devices: all
                .get("cadvisor_devices")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(show).collect())
                .unwrap_or_default(),
            cadvisor_dev_disk: all
                .get("cadvisor_dev_disk")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            cadvisor_privileged: all
                .get("cadvisor_privileged")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            registry_timeout: n("preflight_registry_timeout", 5),
            inventory_host_mount: inventory
                .get("node_exporter_host_mount")
                .map(|v| show(v).trim().to_string()),
            set: inventory.keys().cloned().collect(),
            defaults: defaults.clone(),
        }
    }

    /// The addresses, besides the wildcards, on which a listener takes the exporters' ports.
    /// Publishing on every interface collides with a listener on the host's address or its
    /// loopback; other addresses of a shared-loopback test fleet are other hosts.
    pub fn colliding_addrs(&self) -> Vec<String> {
        match &self.bind {
            Some(b) => vec![b.clone()],
            None => vec![self.ip.clone(), "127.0.0.1".into(), "::1".into()],
        }
    }

    /// A process whose command line contains `<this>/` was started from the deploy dir (the
    /// test fleet's compose stand-in runs the exporters from there). Empty: no such test.
    pub fn own_dir(&self) -> &str {
        self.deploy_dir.trim_start_matches("~/")
    }
}

fn var_str(vars: &Vars, k: &str) -> String {
    vars.get(k).map(show).unwrap_or_default().trim().to_string()
}

fn var_u64(vars: &Vars, k: &str) -> Option<u64> {
    match vars.get(k)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An image reference as the compose template writes it: with `image_registry` set, the
/// image's own registry host (a first path part with a `.` or `:`, e.g. `gcr.io`) is
/// replaced by it — `gcr.io/cadvisor/cadvisor` through `mirror:5000` is
/// `mirror:5000/cadvisor/cadvisor`, `bitnami/node-exporter` is `mirror:5000/bitnami/node-exporter`.
pub fn image_ref(registry: &str, image: &str, tag: &str) -> String {
    let registry = registry.trim().trim_end_matches('/');
    let path = match image.split_once('/') {
        Some((first, rest)) if !registry.is_empty() && first.contains(['.', ':']) => rest,
        _ => image,
    };
    let base = if registry.is_empty() {
        path.to_string()
    } else {
        format!("{registry}/{path}")
    };
    if tag.is_empty() {
        base
    } else {
        format!("{base}:{tag}")
    }
}

/// Every fact preflight asks of a host (one batch).
struct Probes {
    engine: DockerEngine,
    socket: DockerSocket,
    compose: Compose,
    ports: ListeningPorts,
    published: PublishedPorts,
    propagation: RootPropagation,
    cgroups: CgroupVersion,
    selinux: SelinuxMode,
    space: FreeSpace,
    clock: Clock,
    images: LocalImages,
    paths: PathsExist,
    caps: CapabilityBounds,
    registry: RegistryReach,
}

impl Probes {
    fn new(w: &Wants) -> Probes {
        Probes {
            engine: DockerEngine,
            socket: DockerSocket,
            compose: Compose {
                command: w.compose_command.clone(),
            },
            ports: ListeningPorts {
                ports: w.ports.iter().map(|&(_, p)| p).collect(),
                addrs: w.colliding_addrs(),
                dir: w.own_dir().to_string(),
            },
            published: PublishedPorts,
            propagation: RootPropagation,
            cgroups: CgroupVersion,
            selinux: SelinuxMode,
            space: FreeSpace {
                path: w.deploy_dir.clone(),
            },
            clock: Clock,
            images: LocalImages {
                refs: w.images.iter().map(|(_, r)| r.clone()).collect(),
            },
            paths: PathsExist {
                paths: w
                    .cadvisor_devices
                    .iter()
                    .cloned()
                    .chain([DEV_DISK, CGROUP_V1_RHEL].map(String::from))
                    .collect(),
            },
            caps: CapabilityBounds,
            registry: RegistryReach {
                refs: if w.registry_timeout == 0 {
                    Vec::new()
                } else {
                    w.images.iter().map(|(_, r)| r.clone()).collect()
                },
                timeout_secs: w.registry_timeout,
            },
        }
    }

    fn all(&self) -> Vec<&dyn ErasedFact> {
        vec![
            &self.engine,
            &self.socket,
            &self.compose,
            &self.ports,
            &self.published,
            &self.propagation,
            &self.cgroups,
            &self.selinux,
            &self.space,
            &self.clock,
            &self.images,
            &self.paths,
            &self.caps,
            &self.registry,
        ]
    }
}

/// What the probes found on one host (a fact that could not be read is its error text).
#[derive(Debug, Clone)]
pub struct Findings {
    pub docker: DockerAccess,
    pub socket: SocketInfo,
    pub compose: ComposeInfo,
    pub listeners: Result<Vec<Listener>, String>,
    /// Container name → host ports it publishes.
    pub published: Vec<(String, Vec<u16>)>,
    pub propagation: Result<Propagation, String>,
    pub cgroups: Cgroups,
    pub selinux: Result<Selinux, String>,
    pub deploy_space: Result<Space, String>,
    /// (offset of the host's clock from the jump host's, in seconds; its uncertainty).
    pub clock: Result<(f64, f64), String>,
    pub images: Vec<(String, bool)>,
    pub paths: Vec<(String, bool)>,
    /// The Docker engine's capability bounding set.
    pub caps: Result<CapBounds, String>,
    /// Registries of the images to pull, and whether each answers.
    pub registry: Result<RegistryProbe, String>,
    /// Running as root (through become) or as the login user.
    pub as_root: bool,
    pub user: String,
}

async fn get<F: Fact>(facts: &Facts, f: &F) -> Result<F::Output, String> {
    facts.get(f).await.map_err(|e| e.to_string())
}

/// Ask every probe of a host in one round trip, with `also` (facts a later pass reads; their
/// answers stay in `facts`, a failure among them is that pass's to report).
pub async fn probe(
    facts: &Facts,
    w: &Wants,
    user: &str,
    as_root: bool,
    also: &[&dyn ErasedFact],
) -> Result<Findings, FactError> {
    let p = Probes::new(w);
    let mut batch = p.all();
    batch.extend_from_slice(also);
    let t0 = crate::base::clock::now_unix();
    let batch = facts.prefetch(&batch).await;
    let t1 = crate::base::clock::now_unix();
    // The host could not be asked: nothing else will answer either. (When one answer did
    // not parse, the others are in the cache and each `get` below says why its failed,
    // without asking again.)
    if let Err(e @ FactError::Transport(_)) = batch {
        return Err(e);
    }
    Ok(Findings {
        docker: get(facts, &p.engine)
            .await
            .unwrap_or_else(|message| DockerAccess::NoEngine { message }),
        socket: get(facts, &p.socket).await.unwrap_or(SocketInfo {
            docker_host: None,
            rootless_socket: None,
            system_socket: false,
        }),
        compose: get(facts, &p.compose).await.unwrap_or_default(),
        listeners: get(facts, &p.ports).await,
        published: get(facts, &p.published).await.unwrap_or_default(),
        propagation: get(facts, &p.propagation).await,
        cgroups: get(facts, &p.cgroups)
            .await
            .unwrap_or_else(Cgroups::Unknown),
        selinux: get(facts, &p.selinux).await,
        deploy_space: get(facts, &p.space).await,
        clock: get(facts, &p.clock)
            .await
            .map(|remote| (remote - (t0 + t1) / 2.0, (t1 - t0) / 2.0)),
        images: get(facts, &p.images).await.unwrap_or_default(),
        paths: get(facts, &p.paths).await.unwrap_or_default(),
        caps: get(facts, &p.caps).await,
        registry: get(facts, &p.registry).await,
        as_root,
        user: user.to_string(),
    })
}

/// The verdict for one host from what was found and what the inventory asks.
pub fn judge(host: &Host, w: &Wants, f: &Findings) -> HostPreflight {
    let mut j = Judgement {
        w,
        checks: BTreeMap::new(),
        adaptations: Vec::new(),
        blockers: Vec::new(),
    };
    j.docker(f);
    j.compose(f);
    j.ports(f);
    j.propagation(f);
    j.cadvisor(f);
    j.space(f);
    j.clock(f);
    j.images(f);
    let verdict = if !j.blockers.is_empty() {
        Verdict::Blocked
    } else if j.adaptations.iter().any(|a| a.applied) {
        Verdict::Adapt
    } else {
        Verdict::Ready
    };
    HostPreflight {
        host: host.name.clone(),
        group: host.group.clone(),
        verdict,
        unreachable: false,
        checks: j.checks,
        adaptations: j.adaptations,
        blockers: j.blockers,
        connect_failure: None,
        unchanged_since: None,
    }
}

/// A host that could not be asked.
pub fn unreachable(host: &Host, e: &TransportError) -> HostPreflight {
    let error = e.to_string();
    let status = match crate::modules::ErrorKind::from(e) {
        crate::modules::ErrorKind::Unreachable => HostStatus::Unreachable,
        _ => HostStatus::Failed,
    };
    HostPreflight {
        connect_failure: Some(crate::executor::Blocked {
            status,
            error: format!("connect: {error}"),
            failed_at: "connect".into(),
        }),
        host: host.name.clone(),
        group: host.group.clone(),
        verdict: Verdict::Blocked,
        unreachable: true,
        checks: BTreeMap::from([("ssh".to_string(), format!("unreachable: {error}"))]),
        adaptations: Vec::new(),
        blockers: vec![Blocker {
            why: format!("unreachable: {error}"),
            fix: "make the host answer over SSH (address, port, user, key, known_hosts)".into(),
        }],
        unchanged_since: None,
    }
}

struct Judgement<'a> {
    w: &'a Wants,
    checks: BTreeMap<String, String>,
    adaptations: Vec<Adaptation>,
    blockers: Vec<Blocker>,
}

impl Judgement<'_> {
    fn check(&mut self, name: &str, text: impl Into<String>) {
        self.checks.insert(name.to_string(), text.into());
    }

    fn block(&mut self, why: impl Into<String>, fix: impl Into<String>) {
        self.blockers.push(Blocker {
            why: why.into(),
            fix: fix.into(),
        });
    }

    /// Choose `value` for `var` unless the inventory sets it. A value equal to the default
    /// is no adaptation.
    fn adapt(&mut self, var: &str, value: Value, why: impl Into<String>) {
        if self.w.defaults.get(var) == Some(&value) && !self.w.set.contains(var) {
            return;
        }
        self.adaptations.push(Adaptation {
            var: var.to_string(),
            value,
            why: why.into(),
            applied: !self.w.set.contains(var),
        });
    }

    fn docker(&mut self, f: &Findings) {
        let who = if f.as_root {
            format!("root (become, login {})", f.user)
        } else {
            format!("login user {}", f.user)
        };
        // With its own compose_command the inventory says how compose reaches Docker (e.g.
        // `sudo docker compose`): the login user's access is reported, not required.
        let required = self.w.compose_command.is_empty();
        let (line, blocker) = match &f.docker {
            DockerAccess::Ok(e) => (
                format!(
                    "engine {} as {who}{}",
                    e.version,
                    if e.rootless { ", rootless" } else { "" }
                ),
                None,
            ),
            DockerAccess::Denied { message } => (
                format!("denied to {who}: {message}"),
                Some((
                    format!("{who} cannot use the Docker socket (permission denied)"),
                    format!(
                        "add {} to the `docker` group (`usermod -aG docker {}`), or set `become: true` for the host",
                        f.user, f.user
                    ),
                )),
            ),
            DockerAccess::NoEngine { message } => (
                format!("no engine answers: {message}"),
                Some((
                    format!("the Docker engine does not answer ({message})"),
                    "start it (`systemctl enable --now docker`)".to_string(),
                )),
            ),
            DockerAccess::NoClient => (
                "no `docker` client on the PATH".into(),
                Some((
                    "Docker is not installed (no `docker` on the PATH)".into(),
                    "install Docker Engine, or set compose_command".to_string(),
                )),
            ),
        };
        match (blocker, required) {
            (Some((why, fix)), true) => {
                self.check("docker", line);
                self.block(why, fix);
            }
            (Some(_), false) => self.check(
                "docker",
                format!("{line} (not required: the inventory's compose_command runs compose)"),
            ),
            (None, _) => self.check("docker", line),
        }
    }

    fn compose(&mut self, f: &Findings) {
        match f.compose.chosen(&self.w.compose_command) {
            Some(Ok(c)) => self.check(
                "compose",
                format!(
                    "{} ({} {})",
                    if c.v2 { "v2" } else { "v1" },
                    c.command,
                    c.version
                ),
            ),
            Some(Err(e)) => {
                self.check("compose", format!("compose_command fails: {e}"));
                self.block(
                    format!(
                        "compose_command `{}` does not run ({e})",
                        self.w.compose_command
                    ),
                    "fix compose_command in the inventory, or remove it to use `docker compose` / `docker-compose`",
                );
            }
            None => {
                self.check("compose", "none");
                self.block(
                    "no compose: neither `docker compose` (v2) nor `docker-compose` (v1) answers",
                    "install the Docker Compose plugin (v2) or docker-compose (v1), or set compose_command",
                );
            }
        }
    }

    /// Whether a listener takes the address the exporters publish on.
    fn conflicts(&self, l: &Listener) -> bool {
        l.is_wildcard() || self.w.colliding_addrs().contains(&l.addr)
    }

    /// promfleet's own exporters: a published port of one of its containers, or a process
    /// started from the deploy directory (the test fleet's compose stand-in).
    fn ours(&self, l: &Listener, f: &Findings) -> bool {
        let published = f.published.iter().any(|(name, ports)| {
            OUR_CONTAINERS.contains(&name.as_str()) && ports.contains(&l.port)
        });
        let docker_held = matches!(l.process.as_deref(), Some("docker-proxy") | None);
        let dir = self.w.own_dir();
        let from_dir = !dir.is_empty()
            && l.cmdline
                .as_deref()
                .is_some_and(|c| c.contains(&format!("{dir}/")));
        (published && docker_held) || from_dir
    }

    fn ports(&mut self, f: &Findings) {
        let listeners = match &f.listeners {
            Ok(l) => l,
            Err(e) => {
                self.check("ports", format!("not checked: {e}"));
                return;
            }
        };
        let mut line = Vec::new();
        for &(var, port) in &self.w.ports {
            let holders: Vec<&Listener> = listeners
                .iter()
                .filter(|l| l.port == port && self.conflicts(l))
                .collect();
            let foreign: Vec<&&Listener> = holders.iter().filter(|l| !self.ours(l, f)).collect();
            if foreign.is_empty() {
                line.push(if holders.is_empty() {
                    format!("{port} free")
                } else {
                    format!("{port} held by promfleet's exporter")
                });
                continue;
            }
            let who: Vec<String> = foreign
                .iter()
                .map(|l| {
                    let proc = match (&l.process, l.pid) {
                        (Some(p), Some(pid)) => format!("{p} (pid {pid})"),
                        (Some(p), None) => p.clone(),
                        _ => "a process the probe cannot name (run with become to see it)".into(),
                    };
                    format!(
                        "{proc} on {}",
                        crate::base::addr::host_port(&l.addr, l.port)
                    )
                })
                .collect();
            line.push(format!("{port} held by {}", who.join(", ")));
            let name = foreign
                .iter()
                .find_map(|l| l.process.clone())
                .unwrap_or_else(|| "it".into());
            self.block(
                format!("port {port} ({var}) is held by {}", who.join(", ")),
                format!(
                    "stop {name} (a host-installed exporter: `systemctl disable --now` its service), or publish on another port: set {var}"
                ),
            );
        }
        self.check("ports", line.join(", "));
    }

    fn propagation(&mut self, f: &Findings) {
        let p = match &f.propagation {
            Ok(p) => *p,
            Err(e) => {
                self.check("root mount", format!("not checked: {e}"));
                return;
            }
        };
        let receives = matches!(p, Propagation::Shared | Propagation::Slave);
        let mount = if receives { "ro,rslave" } else { "ro" };
        self.check(
            "root mount",
            format!("/ is {} → node_exporter_host_mount {mount}", p.name()),
        );
        if let Some(set) = &self.w.inventory_host_mount
            && set.contains("slave")
            && !receives
        {
            self.block(
                format!(
                    "node_exporter_host_mount `{set}` needs `/` shared or slave, and it is {}: Docker refuses the mount",
                    p.name()
                ),
                "set node_exporter_host_mount: ro (or remove it and let preflight choose), or `mount --make-rshared /`",
            );
            return;
        }
        self.adapt(
            "node_exporter_host_mount",
            Value::from(mount),
            format!("/ is a {} mount", p.name()),
        );
    }

    /// cAdvisor as its upstream README runs it (privileged, /dev/kmsg, /dev/disk), minus what
    /// the host lacks; SELinux; a rootless engine's socket and root dir; cgroups.
    fn cadvisor(&mut self, f: &Findings) {
        let has = |p: &str| f.paths.iter().any(|(x, e)| x == p && *e);
        let wanted = self.w.cadvisor_devices.clone();
        let devices: Vec<Value> = wanted
            .iter()
            .filter(|d| has(d))
            .map(|d| Value::from(d.as_str()))
            .collect();
        if devices.len() < wanted.len() && !f.paths.is_empty() {
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|d| !has(d))
                .map(String::as_str)
                .collect();
            self.adapt(
                "cadvisor_devices",
                Value::Array(devices),
                format!("{} does not exist on the host", missing.join(", ")),
            );
        }
        if self.w.cadvisor_dev_disk && !has(DEV_DISK) && !f.paths.is_empty() {
            self.adapt(
                "cadvisor_dev_disk",
                Value::Bool(false),
                format!("{DEV_DISK} does not exist on the host"),
            );
        }
        self.privileged(f);
        if has(CGROUP_V1_RHEL) {
            self.adapt(
                "cadvisor_cgroup_mount",
                Value::Bool(true),
                format!("cgroups are mounted at {CGROUP_V1_RHEL} (CentOS/RHEL)"),
            );
        }
        self.check("cgroup", f.cgroups.name());
        match &f.selinux {
            Ok(s) => {
                self.check("selinux", s.name());
                if *s == Selinux::Enforcing {
                    self.adapt(
                        "exporter_security_opt",
                        Value::from(vec![Value::from("label=disable")]),
                        "SELinux is enforcing: the exporters read /, /sys and /var/run, which must not be relabelled",
                    );
                }
            }
            Err(e) => self.check("selinux", format!("not checked: {e}")),
        }
        let rootless = match &f.docker {
            DockerAccess::Ok(e) => e.rootless,
            _ => false,
        } || (f.socket.rootless_socket.is_some() && !f.socket.system_socket);
        if rootless {
            let socket = f.socket.path().unwrap_or_default();
            self.check("rootless", format!("yes, socket {socket}"));
            if !socket.is_empty() {
                self.adapt(
                    "docker_socket",
                    Value::from(socket.clone()),
                    "rootless Docker: the engine's socket is the user's",
                );
            }
        } else {
            self.check("rootless", "no");
        }
        if let DockerAccess::Ok(e) = &f.docker
            && !e.root_dir.is_empty()
        {
            self.adapt(
                "docker_root_dir",
                Value::from(e.root_dir.clone()),
                "Docker's root dir is not /var/lib/docker",
            );
        }
    }

    /// Upstream runs cAdvisor privileged; a privileged container needs every capability of the
    /// kernel in the engine's bounding set. Without them: the minimal-capabilities variant.
    fn privileged(&mut self, f: &Findings) {
        if !self.w.cadvisor_privileged {
            self.check(
                "capabilities",
                "cAdvisor not privileged (its devices, and CAP_SYSLOG to read /dev/kmsg)",
            );
            return;
        }
        let c = match &f.caps {
            Ok(c) => c,
            Err(e) => {
                self.check("capabilities", format!("not checked: {e}"));
                return;
            }
        };
        let missing = c.missing();
        let whose = if c.source == "dockerd" {
            "the Docker engine's (dockerd)"
        } else {
            "the login session's"
        };
        if missing.is_empty() {
            self.check(
                "capabilities",
                format!("{whose} bounding set is complete: cAdvisor runs privileged"),
            );
            return;
        }
        let lacks = missing.join(", ");
        self.check(
            "capabilities",
            format!("{whose} bounding set lacks {lacks}: a privileged container cannot start"),
        );
        let why = format!(
            "{whose} capability bounding set lacks {lacks}: a privileged container cannot start (runc: unable to apply caps)"
        );
        if self.w.set.contains("cadvisor_privileged") {
            self.block(
                format!("cadvisor_privileged is true and {why}"),
                "set cadvisor_privileged: false (cAdvisor with its devices and CAP_SYSLOG only), or give dockerd the full capability bounding set",
            );
        } else {
            self.adapt("cadvisor_privileged", Value::Bool(false), why);
        }
    }

    fn space(&mut self, f: &Findings) {
        match &f.deploy_space {
            Ok(s) => {
                self.check(
                    "deploy dir space",
                    format!(
                        "{} free on {} ({})",
                        kib(s.available_kib),
                        s.mount,
                        s.checked
                    ),
                );
                if s.available_kib < self.w.min_free_deploy_kib {
                    self.block(
                        format!(
                            "{} free on {} for the deploy dir {} (under preflight_min_free_mb {})",
                            kib(s.available_kib),
                            s.mount,
                            self.w.deploy_dir,
                            self.w.min_free_deploy_kib / 1024
                        ),
                        format!(
                            "free space on {}, or set deploy_dir to another filesystem",
                            s.mount
                        ),
                    );
                }
            }
            Err(e) => self.check("deploy dir space", format!("not checked: {e}")),
        }
        if let DockerAccess::Ok(e) = &f.docker
            && let Some(free) = e.root_free_kib
        {
            self.check(
                "docker root space",
                format!("{} free in {}", kib(free), e.root_dir),
            );
            let pulls = f.images.iter().any(|(_, present)| !present);
            if pulls && free < self.w.min_free_docker_kib {
                self.block(
                    format!(
                        "{} free in Docker's root {} and images to pull (under preflight_min_free_docker_mb {})",
                        kib(free),
                        e.root_dir,
                        self.w.min_free_docker_kib / 1024
                    ),
                    "free space there (`docker system prune`), or pre-load the images",
                );
            }
        }
    }

    fn clock(&mut self, f: &Findings) {
        match f.clock {
            Ok((offset, uncertainty)) => {
                self.check(
                    "clock",
                    format!("{offset:+.2}s vs the jump host (±{uncertainty:.2}s)"),
                );
                if offset.abs() - uncertainty > self.w.max_clock_offset {
                    self.block(
                        format!(
                            "the clock is {offset:+.0}s off the jump host's (over preflight_max_clock_offset {}s): alert and sample timestamps would be wrong",
                            self.w.max_clock_offset
                        ),
                        "synchronise it (chrony or systemd-timesyncd)",
                    );
                }
            }
            Err(ref e) => self.check("clock", format!("not checked: {e}")),
        }
    }

    fn images(&mut self, f: &Findings) {
        if !matches!(f.docker, DockerAccess::Ok(_)) {
            self.check("images", "not checked: Docker not reachable");
            return;
        }
        let line: Vec<String> = f
            .images
            .iter()
            .map(|(r, present)| format!("{r} {}", if *present { "present" } else { "to pull" }))
            .collect();
        self.check("images", line.join(", "));
        self.registry(f);
    }

    /// An image to pull whose registry does not answer from the host blocks it: `up -d` would
    /// fail after the files are written.
    fn registry(&mut self, f: &Findings) {
        if self.w.registry_timeout == 0 {
            return;
        }
        let probe = match &f.registry {
            Ok(p) => p,
            Err(e) => {
                self.check("registry", format!("not checked: {e}"));
                return;
            }
        };
        if probe.registries.is_empty() {
            self.check("registry", "nothing to pull");
            return;
        }
        let mut line = Vec::new();
        for (reg, reach) in &probe.registries {
            let images: Vec<&str> = f
                .images
                .iter()
                .filter(|(r, present)| !present && registry_of(r) == *reg)
                .map(|(r, _)| r.as_str())
                .collect();
            let images = if images.is_empty() {
                "an image".to_string()
            } else {
                images.join(", ")
            };
            let trouble = match reach {
                Reach::Answered { scheme, status } => {
                    line.push(format!("{reg} answers /v2/ ({scheme} {status})"));
                    (!reach.reachable()).then(|| {
                        format!("answers /v2/ with HTTP {status} ({scheme}), not as a registry (200 or 401)")
                    })
                }
                Reach::Unreachable { error } => {
                    line.push(format!("{reg} unreachable"));
                    Some(format!(
                        "does not answer within {}s ({})",
                        self.w.registry_timeout,
                        if error.is_empty() { "no answer" } else { error }
                    ))
                }
                Reach::NoClient => {
                    line.push(format!("{reg} not checked (no curl or wget on the host)"));
                    None
                }
            };
            if let Some(t) = trouble {
                self.block(
                    format!("{images} must be pulled and its registry {reg} {t}"),
                    "set image_registry to a registry mirror the host reaches, or preload the image (`docker save IMAGE | ssh HOST docker load`)",
                );
            }
        }
        self.check("registry", line.join(", "));
    }
}

/// KiB as a short size.
fn kib(k: u64) -> String {
    let mib = k as f64 / 1024.0;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// One host to preflight: what the inventory asks of it, and the facts the command's next
/// pass will read there (asked in the same batch; empty for `promfleet preflight`).
pub struct Ask {
    pub host: Host,
    pub wants: Wants,
    pub also: Vec<Box<dyn ErasedFact>>,
    /// Keep the session open for the next pass; otherwise it is closed after the check, so
    /// a large fleet does not hold every host's connection (and its memory) at once.
    pub keep: bool,
    /// The host's memo from its last deploy: the cheap check first, the full probe only when
    /// it does not hold.
    pub unchanged: Option<super::unchanged::Unchanged>,
}

/// Preflight every host through `sched` (its forks, its Ctrl-C), over the connector's
/// sessions (kept open: a deploy after it reuses them). Results in the order given, without
/// the hosts a cancellation kept from starting or an abort abandoned. Each host's facts
/// (`also` included) are left in `primed` for the next pass.
pub async fn check_all(
    connector: Arc<Connector>,
    hosts: Vec<Ask>,
    sched: &Scheduler,
    primed: &Primed,
) -> Vec<HostPreflight> {
    let items = hosts
        .into_iter()
        .map(|a| (a.host.name.clone(), a))
        .collect();
    let (s, primed) = (sched.clone(), primed.clone());
    sched
        .run(items, move |ask: Ask| {
            let (connector, s, primed) = (connector.clone(), s.clone(), primed.clone());
            async move { s.or_abort(check_host(&connector, &ask, &primed)).await }
        })
        .in_order()
        .await
        .into_iter()
        .flatten()
        .flatten()
        .collect()
}

/// One host: connect (or reuse), one batch of probes (and `also`), the verdict.
pub async fn check_host(connector: &Connector, ask: &Ask, primed: &Primed) -> HostPreflight {
    let (host, w) = (&ask.host, &ask.wants);
    let target = match connector.target(host).await {
        Ok(t) => t,
        Err(e) => return unreachable(host, &e),
    };
    let session = match connector.session(host).await {
        Ok((s, _)) => s,
        Err(e) => return unreachable(host, &e),
    };
    let facts = Arc::new(Facts::new(session));
    let also: Vec<&dyn ErasedFact> = ask.also.iter().map(|f| f.as_ref()).collect();
    let judged = async {
        if let Some(u) = &ask.unchanged
            && u.holds(&facts, &also).await?
        {
            return Ok((u.verdict(host), true));
        }
        // (After a check that did not hold, its answers are cached: only the probes are new.)
        probe(&facts, w, &target.user, target.become_root, &also)
            .await
            .map(|f| (judge(host, w, &f), false))
    };
    match judged.await {
        Ok((r, unchanged)) => {
            if !ask.keep {
                // An unchanged host's answers are what the next pass reads of it (its files,
                // its services): kept without the session, they spare it a connection.
                if unchanged {
                    primed.put_detached(&host.name, facts.answers());
                }
                drop(facts);
                connector.release(&host.name).await;
            } else if !also.is_empty() {
                primed.put(&host.name, facts);
            }
            r
        }
        // The batch outlived --command-timeout: the host answers but hangs on a probe. The
        // next pass gets the facts with the timeout remembered (over the same session), so
        // the host costs one timeout in all, not one per pass.
        Err(FactError::Transport(e @ TransportError::CommandTimeout { .. }))
            if ask.keep && !also.is_empty() =>
        {
            primed.put(&host.name, facts);
            unreachable(host, &e)
        }
        Err(FactError::Transport(e)) => {
            connector.drop_session(&host.name).await;
            unreachable(host, &e)
        }
        // `probe` returns only transport errors; a parse error is per fact, in `Findings`.
        Err(e) => HostPreflight {
            host: host.name.clone(),
            group: host.group.clone(),
            verdict: Verdict::Blocked,
            unreachable: false,
            checks: BTreeMap::new(),
            adaptations: Vec::new(),
            blockers: vec![Blocker {
                why: format!("the probes failed: {e}"),
                fix: "run `promfleet preflight -v` for this host and fix what it names".into(),
            }],
            connect_failure: None,
            unchanged_since: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::system::EngineInfo;

    fn host() -> Host {
        crate::fixtures::host("h1")
    }

    fn defaults() -> Vars {
        serde_json::from_str(
            r#"{"deploy_dir":"~/exporter-deploy","node_exporter_port":9100,"cadvisor_port":9105,
            "node_exporter_host_mount":"ro,rslave","compose_command":"","exporter_bind_address":"",
            "node_exporter_image":"bitnami/node-exporter","node_exporter_tag":"latest",
            "cadvisor_image":"gcr.io/cadvisor/cadvisor","cadvisor_tag":"v0.45.0",
            "cadvisor_privileged":true,"cadvisor_devices":["/dev/kmsg"],"cadvisor_dev_disk":true,
            "cadvisor_cgroup_mount":false,"preflight_registry_timeout":5,
            "exporter_security_opt":[],"docker_socket":"/var/run/docker.sock",
            "docker_root_dir":"/var/lib/docker","image_registry":""}"#,
        )
        .unwrap()
    }

    /// A healthy systemd host: rootful Docker, compose v2, shared /, nothing on the ports.
    fn healthy() -> Findings {
        Findings {
            docker: DockerAccess::Ok(EngineInfo {
                version: "24.0.7".into(),
                root_dir: "/var/lib/docker".into(),
                rootless: false,
                selinux: false,
                root_free_kib: Some(50 << 20),
            }),
            socket: SocketInfo {
                docker_host: None,
                rootless_socket: None,
                system_socket: true,
            },
            compose: ComposeInfo {
                plugin: Some("2.24.5".into()),
                ..Default::default()
            },
            listeners: Ok(vec![]),
            published: vec![],
            propagation: Ok(Propagation::Shared),
            cgroups: Cgroups::V2,
            selinux: Ok(Selinux::Disabled),
            deploy_space: Ok(Space {
                checked: "/home/ops".into(),
                available_kib: 10 << 20,
                mount: "/".into(),
            }),
            clock: Ok((0.01, 0.02)),
            images: vec![],
            paths: vec![
                (KMSG.into(), true),
                (DEV_DISK.into(), true),
                (CGROUP_V1_RHEL.into(), false),
            ],
            // Recorded on Debian 12 (Docker 24): every capability of the kernel (0..=40).
            caps: Ok(CapBounds {
                source: "dockerd".into(),
                bounding: 0x1ff_ffff_ffff,
                last_cap: Some(40),
            }),
            registry: Ok(RegistryProbe::default()),
            as_root: false,
            user: "ops".into(),
        }
    }

    fn verdict(inv: &str, f: &Findings) -> HostPreflight {
        let inv: Vars = serde_json::from_str(inv).unwrap();
        judge(&host(), &Wants::new(&host(), &defaults(), &inv), f)
    }

    #[test]
    fn a_healthy_host_is_ready_with_nothing_adapted() {
        let p = verdict("{}", &healthy());
        assert_eq!(p.verdict, Verdict::Ready, "{p:#?}");
        assert!(p.adaptations.is_empty());
        assert_eq!(p.checks["compose"], "v2 (docker compose 2.24.5)");
    }

    #[test]
    fn selinux_enforcing_rootless_and_a_private_root_adapt_the_compose_variables() {
        // Recorded on Fedora 39 with rootless Docker: SELinux enforcing, / private in the
        // user's namespace, no /dev/disk.
        let mut f = healthy();
        f.selinux = Ok(Selinux::Enforcing);
        f.propagation = Ok(Propagation::Private);
        f.docker = DockerAccess::Ok(EngineInfo {
            version: "24.0.7".into(),
            root_dir: "/home/ops/.local/share/docker".into(),
            rootless: true,
            selinux: true,
            root_free_kib: Some(50 << 20),
        });
        f.socket = SocketInfo {
            docker_host: None,
            rootless_socket: Some("/run/user/1000/docker.sock".into()),
            system_socket: false,
        };
        f.paths[1].1 = false;
        f.paths[0].1 = false;
        let p = verdict(
            r#"{"cadvisor_devices":["/dev/kmsg"],"cadvisor_dev_disk":true}"#,
            &f,
        );
        assert_eq!(p.verdict, Verdict::Adapt, "{p:#?}");
        let o = p.overrides();
        assert_eq!(o["node_exporter_host_mount"], "ro");
        assert_eq!(
            o["exporter_security_opt"],
            serde_json::json!(["label=disable"])
        );
        assert_eq!(o["docker_socket"], "/run/user/1000/docker.sock");
        assert_eq!(o["docker_root_dir"], "/home/ops/.local/share/docker");
        // Set by the inventory: kept, and preflight says what it would choose.
        assert!(!o.contains_key("cadvisor_dev_disk") && !o.contains_key("cadvisor_devices"));
        let kept: Vec<&str> = p
            .adaptations
            .iter()
            .filter(|a| !a.applied)
            .map(|a| a.var.as_str())
            .collect();
        assert_eq!(kept, ["cadvisor_devices", "cadvisor_dev_disk"]);
    }

    /// The test VM's engine: its bounding set lacks CAP_SYS_RESOURCE (bit 24).
    fn lacking_sys_resource() -> Result<CapBounds, String> {
        Ok(CapBounds {
            source: "dockerd".into(),
            bounding: 0x1ff_feff_ffff,
            last_cap: Some(40),
        })
    }

    #[test]
    fn cadvisor_runs_privileged_as_upstream_where_the_engine_has_every_capability() {
        let p = verdict("{}", &healthy());
        assert_eq!(p.verdict, Verdict::Ready, "{p:#?}");
        assert!(
            p.checks["capabilities"].contains("complete: cAdvisor runs privileged"),
            "{p:#?}"
        );
    }

    #[test]
    fn privileged_cadvisor_on_an_engine_lacking_a_capability_adapts_to_the_minimal_variant() {
        let mut f = healthy();
        f.caps = lacking_sys_resource();
        let p = verdict("{}", &f);
        assert_eq!(p.verdict, Verdict::Adapt, "{p:#?}");
        assert_eq!(p.overrides()["cadvisor_privileged"], false);
        assert!(
            p.summary().contains("lacks SYS_RESOURCE"),
            "{}",
            p.summary()
        );
        // The inventory pins privileged: blocked, with the variant as the fix.
        let p = verdict(r#"{"cadvisor_privileged":true}"#, &f);
        assert_eq!(p.verdict, Verdict::Blocked, "{p:#?}");
        assert!(p.blockers[0].why.contains("lacks SYS_RESOURCE"));
        assert!(p.blockers[0].fix.contains("cadvisor_privileged: false"));
        // Already the minimal variant: nothing to check.
        let p = verdict(r#"{"cadvisor_privileged":false}"#, &f);
        assert_eq!(p.verdict, Verdict::Ready, "{p:#?}");
    }

    fn to_pull(f: &mut Findings, reach: Reach) {
        f.images = vec![
            ("bitnami/node-exporter:latest".into(), true),
            ("gcr.io/cadvisor/cadvisor:v0.45.0".into(), false),
        ];
        f.registry = Ok(RegistryProbe {
            present: vec!["bitnami/node-exporter:latest".into()],
            registries: vec![("gcr.io".into(), reach)],
        });
    }

    #[test]
    fn an_image_to_pull_from_an_unreachable_registry_blocks_with_the_mirror_fix() {
        let mut f = healthy();
        to_pull(
            &mut f,
            Reach::Unreachable {
                error: "curl: (28) Connection timed out after 5001 milliseconds".into(),
            },
        );
        let p = verdict("{}", &f);
        assert_eq!(p.verdict, Verdict::Blocked, "{p:#?}");
        let b = &p.blockers[0];
        assert!(
            b.why.starts_with("gcr.io/cadvisor/cadvisor:v0.45.0 must be pulled and its registry gcr.io does not answer within 5s (curl: (28)"),
            "{b:?}"
        );
        assert!(b.fix.contains("image_registry") && b.fix.contains("preload"));
        // 401 (auth required) and 200 answer as a registry.
        for status in [401, 200] {
            to_pull(
                &mut f,
                Reach::Answered {
                    scheme: "https".into(),
                    status,
                },
            );
            let p = verdict("{}", &f);
            assert_eq!(p.verdict, Verdict::Ready, "{p:#?}");
            assert_eq!(
                p.checks["registry"],
                format!("gcr.io answers /v2/ (https {status})")
            );
        }
        // Something else answering /v2/ is no registry.
        to_pull(
            &mut f,
            Reach::Answered {
                scheme: "https".into(),
                status: 404,
            },
        );
        assert_eq!(verdict("{}", &f).verdict, Verdict::Blocked);
        // No client to probe with: reported, not blocked.
        to_pull(&mut f, Reach::NoClient);
        let p = verdict("{}", &f);
        assert_eq!(p.verdict, Verdict::Ready, "{p:#?}");
        assert!(p.checks["registry"].contains("not checked"));
        // preflight_registry_timeout 0: no registry check at all.
        to_pull(
            &mut f,
            Reach::Unreachable {
                error: String::new(),
            },
        );
        let p = verdict(r#"{"preflight_registry_timeout":0}"#, &f);
        assert_eq!(p.verdict, Verdict::Ready, "{p:#?}");
        assert!(!p.checks.contains_key("registry"));
    }

    #[test]
    fn the_inventory_keeps_its_own_value_and_a_slave_mount_on_a_private_root_is_blocked() {
        let mut f = healthy();
        f.propagation = Ok(Propagation::Private);
        let p = verdict(r#"{"node_exporter_host_mount":"ro"}"#, &f);
        assert_eq!(p.verdict, Verdict::Ready, "{p:#?}");
        assert!(p.overrides().is_empty());
        let p = verdict(r#"{"node_exporter_host_mount":"ro,rslave"}"#, &f);
        assert_eq!(p.verdict, Verdict::Blocked, "{p:#?}");
        assert!(p.blockers[0].fix.contains("node_exporter_host_mount: ro"));
    }

    #[test]
    fn cgroup_v1_at_slash_cgroup_mounts_it_for_cadvisor() {
        let mut f = healthy();
        f.cgroups = Cgroups::V1;
        f.paths[2].1 = true;
        let p = verdict("{}", &f);
        assert_eq!(p.overrides()["cadvisor_cgroup_mount"], true);
        assert_eq!(p.checks["cgroup"], "v1");
    }

    #[test]
    fn a_foreign_listener_blocks_and_promfleets_own_exporter_does_not() {
        let l = |addr: &str, port, process: Option<&str>, cmd: Option<&str>| Listener {
            addr: addr.into(),
            port,
            process: process.map(Into::into),
            pid: Some(42),
            cmdline: cmd.map(Into::into),
        };
        let mut f = healthy();
        f.listeners = Ok(vec![l("0.0.0.0", 9100, Some("node_exporter"), None)]);
        let p = verdict("{}", &f);
        assert_eq!(p.verdict, Verdict::Blocked);
        assert!(
            p.blockers[0]
                .why
                .contains("node_exporter (pid 42) on 0.0.0.0:9100"),
            "{p:#?}"
        );
        // docker-proxy of promfleet's own container, and another address than the bind one.
        f.listeners = Ok(vec![
            l("0.0.0.0", 9100, Some("docker-proxy"), None),
            l("10.1.1.1", 9105, Some("nc"), None),
        ]);
        f.published = vec![("node-exporter".into(), vec![9100])];
        let p = verdict(r#"{"exporter_bind_address":"10.0.0.9"}"#, &f);
        assert_eq!(p.verdict, Verdict::Ready, "{p:#?}");
        // The same docker-proxy for someone else's container is a conflict.
        f.published = vec![("grafana".into(), vec![9100])];
        assert_eq!(verdict("{}", &f).verdict, Verdict::Blocked);
    }

    #[test]
    fn the_ports_probe_names_holders_only_on_the_exporter_ports_and_the_addresses_they_take() {
        let none: Vars = serde_json::from_str("{}").unwrap();
        let w = Wants::new(&host(), &defaults(), &none);
        let p = Probes::new(&w).ports;
        assert_eq!(p.ports, [9100, 9105]);
        assert_eq!(p.addrs, [w.ip.as_str(), "127.0.0.1", "::1"]);
        assert_eq!(p.dir, "exporter-deploy");
        let bound: Vars = serde_json::from_str(
            r#"{"exporter_bind_address":"10.0.0.9","node_exporter_port":9200}"#,
        )
        .unwrap();
        let p = Probes::new(&Wants::new(&host(), &defaults(), &bound)).ports;
        assert_eq!(
            (p.ports, p.addrs),
            (vec![9200, 9105], vec!["10.0.0.9".to_string()])
        );
    }

    #[test]
    fn a_rerun_host_whose_exporters_hold_their_ports_is_ready_from_the_probe_output() {
        // What the probe prints on a re-run of the loopback fleet: the exporters, started from
        // the deploy dir, found among its processes (`__own`), no `ss -p`.
        let ip = host().ip.to_string();
        let text = format!(
            "__l LISTEN 0 128 {ip}:9100 0.0.0.0:* uid:999 ino:346093 sk:9 cgroup:/ <->\n\
             __l LISTEN 0 128 {ip}:9105 0.0.0.0:* uid:999 ino:347170 sk:6 cgroup:/ <->\n\
             __own 346093 15597 fake-cadvisor\n\
             __cmd 15597 /tmp/f/bin/fake-cadvisor --listen {ip}:9100 --tag /tmp/f/h1/exporter-deploy/.standin\n\
             __own 347170 15598 fake-cadvisor\n\
             __cmd 15598 /tmp/f/bin/fake-cadvisor --listen {ip}:9105 --tag /tmp/f/h1/exporter-deploy/.standin\n"
        );
        let none: Vars = serde_json::from_str("{}").unwrap();
        let w = Wants::new(&host(), &defaults(), &none);
        let probe = crate::facts::Probe {
            stdout: text.clone(),
            status: 0,
        };
        let mut f = healthy();
        f.listeners = Probes::new(&w).ports.parse(&probe);
        let p = verdict("{}", &f);
        assert_eq!(p.verdict, Verdict::Ready, "{p:#?}");
        assert_eq!(
            p.checks["ports"],
            "9100 held by promfleet's exporter, 9105 held by promfleet's exporter"
        );
        // The same sockets held by something else, named by `ss -p` (`__p`): blocked.
        let foreign = text
            .lines()
            .filter(|l| l.starts_with("__l "))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            + &format!(
                "__p LISTEN 0 128 {ip}:9100 0.0.0.0:* users:((\"node_exporter\",pid=900,fd=3)) uid:0 ino:346093 sk:9 <->\n"
            );
        f.listeners = Probes::new(&w).ports.parse(&crate::facts::Probe {
            stdout: foreign,
            status: 0,
        });
        let p = verdict("{}", &f);
        assert_eq!(p.verdict, Verdict::Blocked, "{p:#?}");
        assert!(
            p.blockers[0]
                .why
                .contains(&format!("node_exporter (pid 900) on {ip}:9100")),
            "{p:#?}"
        );
    }

    #[test]
    fn docker_denied_blocks_unless_the_inventory_runs_compose_itself() {
        let mut f = healthy();
        f.docker = DockerAccess::Denied {
            message: "permission denied".into(),
        };
        let p = verdict("{}", &f);
        assert_eq!(p.verdict, Verdict::Blocked);
        assert!(
            p.blockers[0].fix.contains("usermod -aG docker ops"),
            "{p:#?}"
        );
        f.compose.custom = Some(Ok("Docker Compose version v2.24.5".into()));
        let p = verdict(r#"{"compose_command":"sudo docker compose"}"#, &f);
        assert_eq!(p.verdict, Verdict::Ready, "{p:#?}");
    }

    #[test]
    fn no_compose_a_full_deploy_disk_and_a_skewed_clock_block_with_their_fixes() {
        let mut f = healthy();
        f.compose = ComposeInfo::default();
        f.deploy_space = Ok(Space {
            checked: "/mnt/full".into(),
            available_kib: 12,
            mount: "/mnt/full".into(),
        });
        f.clock = Ok((-95.0, 0.1));
        let p = verdict("{}", &f);
        let whys: Vec<&str> = p.blockers.iter().map(|b| b.why.as_str()).collect();
        assert_eq!(p.blockers.len(), 3, "{whys:?}");
        assert!(whys[0].starts_with("no compose"), "{whys:?}");
        assert!(
            whys[1].contains("12.0 KiB") || whys[1].contains("0.0 MiB"),
            "{whys:?}"
        );
        assert!(whys[2].contains("-95s"), "{whys:?}");
    }

    #[test]
    fn image_registry_replaces_the_images_own_registry() {
        assert_eq!(
            image_ref("mirror:5000", "gcr.io/cadvisor/cadvisor", "v0.45.0"),
            "mirror:5000/cadvisor/cadvisor:v0.45.0"
        );
        assert_eq!(
            image_ref("mirror:5000/", "bitnami/node-exporter", "latest"),
            "mirror:5000/bitnami/node-exporter:latest"
        );
        assert_eq!(
            image_ref("", "gcr.io/cadvisor/cadvisor", "v0.45.0"),
            "gcr.io/cadvisor/cadvisor:v0.45.0"
        );
    }
}
