//! promfleet's inventory YAML for a fleet: `ssh`, `consul`, `vars`, `groups` and `monitoring`.
//! Scalars are written as JSON strings/numbers, which YAML reads as the same values, so paths
//! and odd names never need YAML quoting rules.

use super::{Fleet, Host, MONITORING_GROUP};
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// An inventory under construction; defaults come from the fleet.
pub struct InventorySpec<'a> {
    fleet: &'a Fleet,
    user: String,
    key: PathBuf,
    vars: Vec<(String, Value)>,
    consul: Vec<String>,
    extra: Vec<(Host, Vec<(String, Value)>)>,
    host_vars: bool,
    /// (host, key, value) added to one fleet host's vars / ssh settings.
    one_host_vars: Vec<(String, String, Value)>,
    one_host_ssh: Vec<(String, String, Value)>,
    /// Leave `node_exporter_host_mount` to preflight (see [`InventorySpec::adaptive`]).
    adaptive: bool,
    /// Fleet hosts left out of this inventory (see [`InventorySpec::without_host`]).
    left_out: Vec<String>,
}

impl Fleet {
    /// Start an inventory for this fleet (see [`InventorySpec`]).
    pub fn inventory(&self) -> InventorySpec<'_> {
        InventorySpec {
            fleet: self,
            user: self.user().to_string(),
            key: self.client_key().to_path_buf(),
            // No registry probe from the test hosts: an image to pull would make preflight ask
            // gcr.io / Docker Hub, outside loopback. Tests of the probe set it themselves.
            vars: vec![("preflight_registry_timeout".to_string(), Value::from(0))],
            consul: self.consul_agents(),
            extra: Vec::new(),
            host_vars: true,
            one_host_vars: Vec::new(),
            one_host_ssh: Vec::new(),
            adaptive: false,
            left_out: Vec::new(),
        }
    }

    /// The inventory YAML with `extra_vars` as global vars.
    pub fn inventory_yaml(&self, extra_vars: &[(&str, &str)]) -> String {
        let mut spec = self.inventory();
        for (k, v) in extra_vars {
            spec = spec.var(k, *v);
        }
        spec.yaml()
    }

    /// Write [`Fleet::inventory_yaml`] (no extra vars) to `path`.
    pub fn write_inventory(&self, path: &Path) -> Result<()> {
        self.inventory().write(path)
    }
}

impl InventorySpec<'_> {
    /// Add a global var.
    pub fn var(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.into()));
        self
    }
    /// Log in as another user (e.g. [`super::NOSUDO_USER`]).
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_string();
        self
    }
    /// Use another client key.
    pub fn key(mut self, key: &Path) -> Self {
        self.key = key.to_path_buf();
        self
    }
    /// Consul agents (overrides the fleet's).
    pub fn consul_agents<S: Into<String>>(mut self, agents: impl IntoIterator<Item = S>) -> Self {
        self.consul = agents.into_iter().map(Into::into).collect();
        self
    }
    /// Add a host that is not one of the fleet's sshd hosts (e.g. a netns host), with vars.
    pub fn extra_host(mut self, host: Host, vars: &[(&str, Value)]) -> Self {
        let vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.extra.push((host, vars));
        self
    }
    /// Set a var on one fleet host (after its standard vars: it overrides them).
    pub fn host_var(mut self, host: &str, key: &str, value: impl Into<Value>) -> Self {
        self.one_host_vars
            .push((host.to_string(), key.to_string(), value.into()));
        self
    }
    /// Set an `ssh:` setting on one fleet host (e.g. `become`).
    pub fn host_ssh(mut self, host: &str, key: &str, value: impl Into<Value>) -> Self {
        self.one_host_ssh
            .push((host.to_string(), key.to_string(), value.into()));
        self
    }
    /// Do not state this machine's `/` propagation as `node_exporter_host_mount` (nor whether
    /// cAdvisor can run privileged and mount /dev/disk): deploy's preflight chooses it per host (offline `render`, and `status`' comparison, then differ
    /// from what deploy writes wherever it adapts).
    pub fn adaptive(mut self) -> Self {
        self.adaptive = true;
        self
    }
    /// Leave one of the fleet's hosts out of this inventory, e.g. the second monitoring host of
    /// [`super::FleetBuilder::monitoring_hosts`] before a 1 → 2 (HA) move.
    pub fn without_host(mut self, host: &str) -> Self {
        self.left_out.push(host.to_string());
        self
    }
    /// Leave out the per-host `deploy_dir` / `compose_command` vars.
    pub fn without_host_vars(mut self) -> Self {
        self.host_vars = false;
        self
    }

    fn standard_vars(&self, h: &Host) -> Vec<(String, Value)> {
        let mut v = self.base_vars(h);
        for (host, k, value) in &self.one_host_vars {
            if *host == h.name {
                v.retain(|(x, _)| x != k);
                v.push((k.clone(), value.clone()));
            }
        }
        v
    }

    fn host_ssh_of(&self, h: &Host) -> Vec<(String, Value)> {
        self.one_host_ssh
            .iter()
            .filter(|(host, _, _)| *host == h.name)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn base_vars(&self, h: &Host) -> Vec<(String, Value)> {
        if !self.host_vars {
            return Vec::new();
        }
        let mut v = vec![
            (
                "deploy_dir".into(),
                Value::from(h.deploy_dir().display().to_string()),
            ),
            (
                "compose_command".into(),
                Value::from(self.fleet.compose_command().display().to_string()),
            ),
        ];
        if !self.adaptive {
            // As an operator states it: rslave only where `/` propagates (the fleet's hosts
            // share this machine's mount namespace unless a test gives one its own).
            let m = self.fleet.machine_vars();
            v.push((HOST_MOUNT.into(), Value::from(m.host_mount)));
            // Likewise cAdvisor privileged only where the engine can start it, so what deploy
            // writes is what `render` shows.
            v.push((PRIVILEGED.into(), Value::from(m.privileged)));
            // And cAdvisor's /dev/disk mount only where it exists (a VM without udev's
            // by-id links has none; preflight would drop it there).
            v.push((DEV_DISK.into(), Value::from(m.dev_disk)));
        }
        v
    }

    /// Render the YAML.
    pub fn yaml(&self) -> String {
        let mut y = format!(
            "ssh: {{ user: {}, port: {}, key: {} }}\n",
            q(&self.user),
            self.fleet.port(),
            q(&self.key.display().to_string())
        );
        if !self.consul.is_empty() {
            let agents: Vec<String> = self.consul.iter().map(|a| q(a)).collect();
            y.push_str(&format!("consul: {{ agents: [{}] }}\n", agents.join(", ")));
        }
        y.push_str(&format!("vars: {}\n", map(&self.vars)));
        let mut all: Vec<(Host, Vec<(String, Value)>)> = self
            .fleet
            .all_hosts()
            .iter()
            .filter(|h| !self.left_out.contains(&h.name))
            .map(|h| {
                let v = self.standard_vars(h);
                (h.clone(), v)
            })
            .collect();
        all.extend(self.extra.iter().cloned().map(|(h, mut v)| {
            // Netns hosts share this machine's `/` too (`ip netns exec` keeps its propagation).
            let m = self.fleet.machine_vars();
            if self.host_vars && !self.adaptive && !v.iter().any(|(k, _)| k == HOST_MOUNT) {
                v.push((HOST_MOUNT.into(), Value::from(m.host_mount)));
            }
            if self.host_vars && !self.adaptive && !v.iter().any(|(k, _)| k == PRIVILEGED) {
                v.push((PRIVILEGED.into(), Value::from(m.privileged)));
            }
            if self.host_vars && !self.adaptive && !v.iter().any(|(k, _)| k == DEV_DISK) {
                v.push((DEV_DISK.into(), Value::from(m.dev_disk)));
            }
            (h, v)
        }));
        let mut groups: Vec<&str> = Vec::new();
        for (h, _) in &all {
            if h.group != MONITORING_GROUP && !groups.contains(&h.group.as_str()) {
                groups.push(&h.group);
            }
        }
        y.push_str("groups:\n");
        for g in &groups {
            y.push_str(&format!("  {}:\n    hosts:\n", q(g)));
            for (h, v) in all.iter().filter(|(h, _)| h.group == *g) {
                y.push_str(&format!("      - {}\n", entry(h, v, &self.host_ssh_of(h))));
            }
        }
        let mon: Vec<_> = all
            .iter()
            .filter(|(h, _)| h.group == MONITORING_GROUP)
            .collect();
        if !mon.is_empty() {
            y.push_str("monitoring:\n  hosts:\n");
            for (h, v) in mon {
                y.push_str(&format!("    - {}\n", entry(h, v, &self.host_ssh_of(h))));
            }
        }
        y
    }

    /// Write the YAML to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.yaml())
            .with_context(|| format!("write inventory {}", path.display()))
    }
}

fn entry(h: &Host, vars: &[(String, Value)], ssh: &[(String, Value)]) -> String {
    let mut e = format!("{{ name: {}, ip: {}", q(&h.name), h.ip);
    if !ssh.is_empty() {
        e.push_str(&format!(", ssh: {}", map(ssh)));
    }
    if !vars.is_empty() {
        e.push_str(&format!(", vars: {}", map(vars)));
    }
    e.push_str(" }");
    e
}

fn map(vars: &[(String, Value)]) -> String {
    if vars.is_empty() {
        return "{}".into();
    }
    let items: Vec<String> = vars
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{}: {}", q(k), q(s)),
            other => format!("{}: {other}", q(k)),
        })
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// A YAML-safe scalar: plain when obviously harmless, else a JSON (= YAML double-quoted) string.
fn q(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        Value::from(s).to_string()
    }
}

/// The exporter variable stating `/`'s propagation (see `host_mount_of_this_machine`).
const HOST_MOUNT: &str = "node_exporter_host_mount";
const PRIVILEGED: &str = "cadvisor_privileged";
const DEV_DISK: &str = "cadvisor_dev_disk";

/// The exporter variables an inventory of the fleet states as an operator would for this
/// machine. Read once per fleet, when its first inventory is written: other tests change the
/// machine while they run (the real-Docker test makes `/` shared for its duration, and its
/// containers' bind mounts can create `/dev/disk`), and a fleet whose second inventory saw
/// another machine than its first would see every host's compose file change
/// (`rig::a_fleets_inventories_saw_the_machine_change_between_them`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineVars {
    pub host_mount: &'static str,
    pub privileged: bool,
    pub dev_disk: bool,
}

impl MachineVars {
    pub fn read() -> MachineVars {
        MachineVars {
            host_mount: host_mount_of_this_machine(),
            privileged: privileged_works_on_this_machine(),
            dev_disk: dev_disk_on_this_machine(),
        }
    }
}

impl Fleet {
    /// This fleet's [`MachineVars`], read at the first call.
    pub fn machine_vars(&self) -> MachineVars {
        *self.machine.get_or_init(MachineVars::read)
    }
}

/// Whether cAdvisor's `/dev/disk` mount source exists here (the fleet's hosts share this
/// machine's `/dev`): preflight keeps the mount exactly then.
fn dev_disk_on_this_machine() -> bool {
    std::path::Path::new("/dev/disk").exists()
}

/// Whether the Docker engine's capability bounding set (dockerd's, else this process's) holds
/// every capability of the kernel: a privileged container cannot start otherwise (preflight's
/// `capabilities` check, src/facts/system.rs).
fn privileged_works_on_this_machine() -> bool {
    let dockerd = std::fs::read_dir("/proc").ok().and_then(|rd| {
        rd.flatten().find_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (comm.trim() == "dockerd").then(|| e.path().join("status"))
        })
    });
    let status = dockerd
        .and_then(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::fs::read_to_string("/proc/self/status").ok())
        .unwrap_or_default();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
    let last: Option<u32> = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    match (bounding, last) {
        (Some(b), Some(last)) => (0..=last.min(63)).all(|n| b & (1u64 << n) != 0),
        _ => true,
    }
}

/// `ro,rslave` when this process's `/` is a shared or slave mount, else `ro`.
fn host_mount_of_this_machine() -> &'static str {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root = info
        .lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap_or_default();
    let optional = root.split(" - ").next().unwrap_or_default();
    if optional.contains(" shared:") || optional.contains(" master:") {
        "ro,rslave"
    } else {
        "ro"
    }
}
