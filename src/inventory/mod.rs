//! The one Inventory model every input format turns into.
//!
//! Owns: hosts, their groups, vars, the monitoring hosts and the Consul agent addresses.
//! Must not touch: the network (but for the one DNS lookup of hosts given by name, at load:
//! `resolve`), playbooks, templates. Formats live in submodules and only
//! build this model; `validate` is the single place that enforces its invariants.

// InventoryError is large (positions carry paths), but it is returned once per run on a
// cold path and callers match on its variants; boxing it would only complicate the API.
#![allow(clippy::result_large_err)]

mod ansible;
mod ansible_ini;
mod ansible_yaml;
mod emit;
mod error;
mod host_range;
mod ini_value;
mod layout;
mod limit;
mod node;
mod promfleet;
mod resolve;
mod serial;
mod server_list;
mod ssh_args;
#[cfg(test)]
mod tests;
mod topology;
mod validate;

pub use emit::to_yaml;
pub use error::{InventoryError, SourcePos};
/// Ansible host-range expansion (`web[01:20]`), public for the differential test against ansible-core.
pub use host_range::expand as expand_host_range;
pub use layout::{load_sources, load_sources_with};
pub use limit::Limit;
pub use resolve::{
    Lookup, Names, RESOLVE_TIMEOUT, ResolvedName, Resolver, STAND_IN_NET, SystemResolver,
    refuse_stand_ins, stand_in_note,
};
pub use serial::Serial;
pub use topology::{DEFAULT_DATACENTER, Datacenter, Topology, TopologyKind};

use crate::transport::BecomePassword;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Variables as free-form JSON values (strings, numbers, lists, maps), merged global → group → host.
pub type Vars = serde_json::Map<String, serde_json::Value>;

/// The name of the group that holds the monitoring hosts (central stacks, Consul cluster).
pub const MONITORING_GROUP: &str = "monitoring";

/// A resolved inventory: every host once, with its connection settings and variables.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// The file this inventory was read from (used in messages).
    pub source: PathBuf,
    /// All hosts, fleet and monitoring, in file order. Hostnames and ips are unique.
    pub hosts: Vec<Host>,
    /// Fleet groups (environments such as IDE, Stage, Pet) in file order; excludes `monitoring`.
    pub groups: Vec<Group>,
    /// Groups that are not environments: `monitoring` and Ansible parent groups (e.g. a
    /// `fleet` group with `children`). Their vars still apply to their members.
    pub extra_groups: Vec<Group>,
    /// Global variables (lowest precedence after built-in defaults).
    pub vars: Vars,
    /// Consul agents used both for registration and by Prometheus' discovery (one source of truth).
    pub consul: ConsulSettings,
    /// Ordered rollout stages (group names or host patterns); empty means one stage of everything.
    pub stages: Vec<StageSpec>,
    /// Hosts given by DNS name (Ansible), by hostname: the name their `ip` was resolved from,
    /// or that `--no-resolve` gave a stand-in address.
    pub resolved_names: BTreeMap<String, ResolvedName>,
}

/// A fleet group: an environment whose hosts share alert routing and variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub name: String,
    pub vars: Vars,
    /// Where the group is defined (for error messages).
    pub pos: SourcePos,
}

/// One machine promfleet reaches over SSH.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Inventory hostname: unique, used in Consul ids, the `instance` label and the recap.
    pub name: String,
    /// The address the exporters listen on and that is registered in Consul.
    pub ip: IpAddr,
    /// The fleet group the host belongs to (e.g. `IDE`), or `monitoring` for monitoring hosts.
    pub group: String,
    /// Every group the host is a member of (its own group first; Ansible parents follow).
    pub groups: Vec<String>,
    /// SSH connection overrides; unset fields fall back to ~/.ssh/config, then defaults.
    pub ssh: SshSettings,
    /// Host variables (highest precedence). From an Ansible inventory they are already merged
    /// with its groups' and `all`'s in Ansible's order, so they win as a whole.
    pub vars: Vars,
    /// Where the host is defined (for error messages).
    pub pos: SourcePos,
}

impl Host {
    /// True for hosts of the `monitoring` group (central stacks), false for fleet hosts.
    pub fn is_monitoring(&self) -> bool {
        self.groups.iter().any(|g| g == MONITORING_GROUP)
    }
}

/// Per-host or global SSH settings from the inventory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SshSettings {
    /// Address or ~/.ssh/config alias to connect to; defaults to the host's ip.
    pub address: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub key: Option<PathBuf>,
    /// Run commands as root through sudo (login user is not root).
    pub become_root: Option<bool>,
    /// sudo password (Ansible's `ansible_become_password`); wins over the run's.
    pub become_password: Option<BecomePassword>,
    /// `ssh -o Key=Value` options (Ansible's `ansible_ssh_common_args`/`_extra_args`), in
    /// order, OpenSSH's key spelling; passed to `ssh -G` after the user and port.
    pub options: Vec<(String, String)>,
}

impl SshSettings {
    /// Fill unset fields from `other` (used to apply group and global defaults).
    pub fn or(&self, other: &SshSettings) -> SshSettings {
        SshSettings {
            address: self.address.clone().or_else(|| other.address.clone()),
            user: self.user.clone().or_else(|| other.user.clone()),
            port: self.port.or(other.port),
            key: self.key.clone().or_else(|| other.key.clone()),
            become_root: self.become_root.or(other.become_root),
            become_password: self
                .become_password
                .clone()
                .or_else(|| other.become_password.clone()),
            options: if self.options.is_empty() {
                other.options.clone()
            } else {
                self.options.clone()
            },
        }
    }
}

/// The Consul agents promfleet registers with and Prometheus discovers from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsulSettings {
    /// Agent base URLs, e.g. `http://10.0.0.178:8500`; tried in order (failover).
    pub agents: Vec<String>,
    /// Consul datacenter, if not the agent's default.
    pub datacenter: Option<String>,
    /// TLS, token file and check options of the `consul:` block (Ansible: `consul_<key>` in
    /// `all`); `settings::Consul` merges them with the other sources and writes the resolved
    /// values back here for the templates.
    pub options: crate::settings::ConsulOptions,
}

/// Consul's HTTP API port, the port of an agent URL that names none.
pub const CONSUL_DEFAULT_PORT: u16 = 8500;

/// A Consul agent URL, parsed once: the inventory stores `url()` (the port always explicit)
/// and the templates render `host:port` from the same parse, so registration and
/// Prometheus' discovery cannot reach different ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUrl {
    pub scheme: String,
    /// Host as written in a URL (an IPv6 address in brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/` (usually empty).
    pub path: String,
}

impl AgentUrl {
    /// `http(s)://host[:port][/path]`; without a port, `CONSUL_DEFAULT_PORT` (not the
    /// scheme's 80/443: nothing listens there for Consul).
    pub fn parse(raw: &str) -> Result<AgentUrl, String> {
        let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme `{scheme}` is not http or https"));
        }
        let host = url.host_str().ok_or("has no host")?;
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err("must not carry a query, fragment or credentials".into());
        }
        // `port()` is None both when absent and when it is the scheme's default: read it
        // from the text so that an explicit `:80` stays 80.
        let after_host = &raw[raw.find("://").map_or(0, |i| i + 3)..];
        let authority = after_host.split('/').next().unwrap_or_default();
        // `[::1]` has colons but no port: a port never contains `]`.
        let explicit = authority
            .rsplit_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.contains(']'));
        let port = match explicit {
            Some(p) => p.parse::<u16>().map_err(|_| format!("bad port `{p}`"))?,
            None => CONSUL_DEFAULT_PORT,
        };
        Ok(AgentUrl {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            path: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// `host:port`, Prometheus' `consul_sd_configs` `server`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The base URL every client uses, port explicit.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.address(), self.path)
    }
}

/// One stage of a rollout: which hosts, in what batches, how many failures are tolerated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageSpec {
    pub name: String,
    /// Host patterns (group names, hostnames, globs, `!exclusions`).
    pub hosts: Vec<String>,
    /// Batch size: a number of hosts or a percentage such as `"25%"`.
    pub serial: Option<Serial>,
    pub max_fail_percentage: Option<f64>,
    /// `canary: true|false`; unset means "a stage named `canary` is one". A canary stage
    /// tolerates no failure unless it sets `max_fail_percentage` itself.
    pub canary: Option<bool>,
    /// `gate: true` or `gate: {scrapes, no_alerts, timeout}`: a health gate after the stage.
    pub gate: Option<GateSpec>,
    pub pos: SourcePos,
}

/// A stage's health gate as written; unset fields take the defaults (`playbook::HealthGate`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateSpec {
    /// Consecutive successful scrapes every target of the stage needs.
    pub scrapes: Option<u32>,
    /// Also require that no alert fires for the stage's instances.
    pub no_alerts: Option<bool>,
    /// How long to wait (a Prometheus duration such as `90s` or `5m`).
    pub timeout: Option<String>,
}

impl StageSpec {
    /// Whether this stage is a canary: `canary: true`, or named `canary` without
    /// `canary: false`.
    pub fn is_canary(&self) -> bool {
        self.canary
            .unwrap_or_else(|| self.name.eq_ignore_ascii_case("canary"))
    }

    /// The stage's own max_fail_percentage, else 0 for a canary (one failed canary host
    /// stops the rollout), else none (the play's applies).
    pub fn effective_max_fail_percentage(&self) -> Option<f64> {
        self.max_fail_percentage
            .or_else(|| self.is_canary().then_some(0.0))
    }
}

impl Inventory {
    /// Look a host up by inventory hostname.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Fleet hosts (not in the monitoring group).
    pub fn fleet(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| !h.is_monitoring())
    }

    /// Monitoring hosts (central stacks).
    pub fn monitoring(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.is_monitoring())
    }

    /// Variables for one host: global, then its groups (outermost first), then the host's own.
    pub fn host_vars(&self, host: &Host) -> Vars {
        let mut vars = self.vars.clone();
        for g in host.groups.iter().rev() {
            if let Some(group) = self
                .groups
                .iter()
                .chain(&self.extra_groups)
                .find(|x| &x.name == g)
            {
                vars.extend(group.vars.clone());
            }
        }
        vars.extend(host.vars.clone());
        vars
    }

    /// Hosts grouped by fleet group, in group order.
    pub fn hosts_by_group(&self) -> BTreeMap<&str, Vec<&Host>> {
        let mut map: BTreeMap<&str, Vec<&Host>> = BTreeMap::new();
        for h in self.fleet() {
            map.entry(h.group.as_str()).or_default().push(h);
        }
        map
    }
}

/// Read an inventory file, detect its format and validate it; an Ansible inventory also gets
/// the `group_vars/` and `host_vars/` beside it (see `load_sources`).
///
/// Formats: promfleet YAML, Ansible YAML, Ansible INI (by `.ini` extension, INI-looking
/// content, or text that is no YAML mapping) and, as a convenience, a seed `server_list.txt`.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    load_sources(&[path.to_path_buf()])
}

/// Parse inventory text (format detected as in `load`); `path` is used in messages. No name
/// is looked up: hosts given by DNS name get stand-in addresses (`Names::StandIn`).
pub fn parse_str(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    parse_str_with(text, path, &Names::StandIn)
}

/// `parse_str`, with hosts given by DNS name resolved as `names` says.
pub fn parse_str_with(text: &str, path: &Path, names: &Names) -> Result<Inventory, InventoryError> {
    let format = classify(text, path)?;
    finish(draft_of(format, text, path)?, names)
}

/// A draft's DNS names resolved, then its invariants checked.
pub(crate) fn finish(
    mut draft: validate::Draft,
    names: &Names,
) -> Result<Inventory, InventoryError> {
    resolve::resolve_names(&mut draft, names)?;
    validate::validate(draft)
}

/// An inventory file's format, with its YAML tree when it has one.
pub(crate) enum Format {
    AnsibleIni,
    AnsibleYaml(node::Node),
    ServerList,
    Promfleet(node::Node),
}

/// Detect a file's format from its extension and text.
pub(crate) fn classify(text: &str, path: &Path) -> Result<Format, InventoryError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let is_yaml_ext = matches!(ext.as_str(), "yml" | "yaml" | "json");
    if ext == "ini" || (!is_yaml_ext && ansible_ini::looks_like(text)) {
        return Ok(Format::AnsibleIni);
    }
    if ext == "txt" || (!is_yaml_ext && server_list::looks_like(text)) {
        return Ok(Format::ServerList);
    }
    match node::parse_yaml(text, path) {
        Ok(root) if matches!(root.kind, node::Kind::Map(_)) => {
            if ansible_yaml::looks_like(&root) {
                Ok(Format::AnsibleYaml(root))
            } else {
                Ok(Format::Promfleet(root))
            }
        }
        // Text that is not a YAML mapping (`host:2222`, a quoted value with a space,
        // INI in a `.yml` file) goes to the INI reader, as Ansible's plugin chain tries its
        // INI plugin after the YAML one; the YAML reading's error is reported when the
        // text is not INI either.
        other => match ansible_ini::parse(text, path) {
            Ok(_) => Ok(Format::AnsibleIni),
            Err(ini_err) => match other {
                Err(yaml_err) => Err(yaml_err),
                Ok(root) => {
                    let reader = node::Reader { file: path };
                    promfleet::parse(&root, &reader)?;
                    Err(ini_err)
                }
            },
        },
    }
}

/// Parse a classified file into a draft (one file alone).
pub(crate) fn draft_of(
    format: Format,
    text: &str,
    path: &Path,
) -> Result<validate::Draft, InventoryError> {
    let reader = node::Reader { file: path };
    match format {
        Format::AnsibleIni => ansible_ini::parse(text, path),
        Format::AnsibleYaml(root) => ansible_yaml::parse(&root, &reader),
        Format::ServerList => server_list::parse(text, path),
        Format::Promfleet(root) => promfleet::parse(&root, &reader),
    }
}

/// Read the seed's `server_list.txt` (`hostname ip group` a line, tabs or spaces, `#` comments).
pub fn import_server_list(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    finish(server_list::parse(text, path)?, &Names::StandIn)
}

impl Inventory {
    /// Hosts selected by `limit` (all hosts without one), in inventory order; an error if none.
    pub fn select(&self, limit: Option<&Limit>) -> Result<Vec<&Host>, InventoryError> {
        let Some(limit) = limit else {
            return Ok(self.hosts.iter().collect());
        };
        let selected: Vec<&Host> = self.hosts.iter().filter(|h| limit.matches(h)).collect();
        if !selected.is_empty() {
            return Ok(selected);
        }
        let candidates: Vec<&str> = self
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .chain(
                self.groups
                    .iter()
                    .chain(&self.extra_groups)
                    .map(|g| g.name.as_str()),
            )
            .collect();
        let mut near: Vec<String> = Vec::new();
        for word in limit.words() {
            for n in node::near_names(word, candidates.iter().copied(), 3) {
                if !near.contains(&n) && n != word {
                    near.push(n);
                }
            }
        }
        near.truncate(5);
        Err(InventoryError::NoMatch {
            pattern: limit.pattern.clone(),
            near,
        })
    }
}

#[cfg(test)]
mod agent_url_tests {
    use super::AgentUrl;

    #[test]
    fn agent_urls_get_an_explicit_port() {
        let ok = [
            ("http://10.0.0.1", "http://10.0.0.1:8500", "10.0.0.1:8500"),
            ("http://10.0.0.1/", "http://10.0.0.1:8500", "10.0.0.1:8500"),
            (
                "https://consul.lan",
                "https://consul.lan:8500",
                "consul.lan:8500",
            ),
            ("http://10.0.0.1:80", "http://10.0.0.1:80", "10.0.0.1:80"),
            ("https://h:443", "https://h:443", "h:443"),
            ("http://h:8501/", "http://h:8501", "h:8501"),
            ("http://[::1]", "http://[::1]:8500", "[::1]:8500"),
            ("http://[::1]:9", "http://[::1]:9", "[::1]:9"),
            ("http://h:8500/consul", "http://h:8500/consul", "h:8500"),
        ];
        for (raw, url, address) in ok {
            let a = AgentUrl::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(
                (a.url().as_str(), a.address().as_str()),
                (url, address),
                "{raw}"
            );
        }
        for bad in [
            "10.0.0.1:8500",
            "ftp://h",
            "http://u:p@h",
            "http://h?x=1",
            "http://h:99999",
        ] {
            assert!(AgentUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
