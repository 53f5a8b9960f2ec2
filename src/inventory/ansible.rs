//! What Ansible inventories (YAML and INI) have in common: a graph of groups and hosts
//! with variables, resolved into a `Draft`.
//!
//! Owns: the group graph (`Collected`), the meaning of Ansible connection variables
//! (`ansible_host`, `ansible_user`, `ansible_port`, `ansible_ssh_private_key_file`,
//! `ansible_become`, `ansible_become_password`, `ansible_connection`, the SSH options of
//! `ansible_ssh_common_args`/`_extra_args` via `ssh_args`), which address is a DNS name to
//! resolve (`resolve`), the promfleet variables read from `all` (`consul_agents`,
//! `consul_datacenter`), Ansible's variable precedence, and the choice of a host's fleet
//! group: the innermost group that lists it directly, other than `all`, `ungrouped` and
//! `monitoring` (`ungrouped` for a host in none).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::{InventoryError, SourcePos};
use super::validate::{Draft, DraftHost};
use super::{ConsulSettings, Group, MONITORING_GROUP, SshSettings, Vars};
use crate::transport::{BecomePassword, PasswordSource};

pub(crate) const ALL: &str = "all";
pub(crate) const UNGROUPED: &str = "ungrouped";

/// A variable map that remembers where each variable was written.
#[derive(Debug, Default)]
pub(crate) struct LocatedVars {
    pub vars: Vars,
    pub pos: HashMap<String, SourcePos>,
}

impl LocatedVars {
    pub fn insert(&mut self, key: String, value: Value, pos: SourcePos) {
        self.pos.insert(key.clone(), pos);
        self.vars.insert(key, value);
    }

    /// Overwrite with every variable of `other` (a later, stronger level).
    pub fn extend(&mut self, other: &LocatedVars) {
        for (k, v) in &other.vars {
            if let Some(p) = other.pos.get(k) {
                self.pos.insert(k.clone(), p.clone());
            }
            self.vars.insert(k.clone(), v.clone());
        }
    }
}

#[derive(Debug)]
pub(crate) struct AGroup {
    pub name: String,
    pub pos: SourcePos,
    pub vars: LocatedVars,
    /// Variables from `group_vars/` files, tagged with the index of the `-i` source whose
    /// directory they were found beside (see `layout`).
    pub file_vars: Vec<(usize, LocatedVars)>,
    pub parents: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct AHost {
    pub name: String,
    pub pos: SourcePos,
    pub vars: LocatedVars,
    /// Variables from `host_vars/` files, in `-i` source order.
    pub file_vars: Vec<LocatedVars>,
    /// Groups that list this host directly, in file order.
    pub direct: Vec<String>,
}

/// The group graph as read from the file. A group or host may be mentioned many times;
/// Ansible merges the mentions, and so do we.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub file: PathBuf,
    pub groups: Vec<AGroup>,
    group_idx: HashMap<String, usize>,
    pub hosts: Vec<AHost>,
    host_idx: HashMap<String, usize>,
    /// How many `-i` sources `file_vars` may refer to (0 or 1 for a single file).
    pub sources: usize,
}

impl Collected {
    pub fn new(file: &Path) -> Self {
        let mut c = Collected {
            file: file.to_path_buf(),
            ..Collected::default()
        };
        c.group(ALL, SourcePos::default());
        c
    }

    /// The group called `name`, created on first mention.
    pub fn group(&mut self, name: &str, pos: SourcePos) -> &mut AGroup {
        let idx = match self.group_idx.get(name) {
            Some(&i) => i,
            None => {
                self.groups.push(AGroup {
                    name: name.to_owned(),
                    pos,
                    vars: LocatedVars::default(),
                    file_vars: Vec::new(),
                    parents: Vec::new(),
                });
                self.group_idx
                    .insert(name.to_owned(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        &mut self.groups[idx]
    }

    pub fn add_child(&mut self, parent: &str, child: &str, pos: SourcePos) {
        let g = self.group(child, pos);
        if !g.parents.iter().any(|p| p == parent) {
            g.parents.push(parent.to_owned());
        }
    }

    /// The host called `name`, created on first mention, recorded as a direct member of `group`.
    pub fn host(&mut self, name: &str, pos: SourcePos, group: &str) -> &mut AHost {
        let idx = match self.host_idx.get(name) {
            Some(&i) => i,
            None => {
                self.hosts.push(AHost {
                    name: name.to_owned(),
                    pos,
                    vars: LocatedVars::default(),
                    file_vars: Vec::new(),
                    direct: Vec::new(),
                });
                self.host_idx.insert(name.to_owned(), self.hosts.len() - 1);
                self.hosts.len() - 1
            }
        };
        let h = &mut self.hosts[idx];
        if !h.direct.iter().any(|g| g == group) {
            h.direct.push(group.to_owned());
        }
        h
    }

    fn depth(
        &self,
        name: &str,
        memo: &mut HashMap<String, usize>,
        path: &mut Vec<String>,
    ) -> Result<usize, InventoryError> {
        if name == ALL {
            return Ok(0);
        }
        if let Some(&d) = memo.get(name) {
            return Ok(d);
        }
        let Some(&idx) = self.group_idx.get(name) else {
            return Ok(1);
        };
        let g = &self.groups[idx];
        if path.iter().any(|p| p == name) {
            return Err(InventoryError::Syntax {
                pos: g.pos.clone(),
                message: format!(
                    "group `{name}` is its own ancestor ({} → {name})",
                    path.join(" → ")
                ),
                help: Some("remove one of the `children` entries that form the cycle".to_owned()),
            });
        }
        path.push(name.to_owned());
        let mut d = 1;
        for p in &g.parents {
            d = d.max(1 + self.depth(p, memo, path)?);
        }
        path.pop();
        memo.insert(name.to_owned(), d);
        Ok(d)
    }

    /// Every ancestor of the given groups, nearest first (breadth-first), without `all`.
    fn ancestors(&self, start: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut queue: std::collections::VecDeque<&str> =
            start.iter().map(String::as_str).collect();
        while let Some(name) = queue.pop_front() {
            let Some(&idx) = self.group_idx.get(name) else {
                continue;
            };
            for p in &self.groups[idx].parents {
                if p != ALL && p != UNGROUPED && !out.contains(p) && !start.contains(p) {
                    out.push(p.clone());
                    queue.push_back(p);
                }
            }
        }
        out
    }
}

/// Connection variables: read into `SshSettings`, removed from the variables templates see.
const CONNECTION_VARS: &[&str] = &[
    "ansible_host",
    "ansible_ssh_host",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_become",
    "ansible_become_password",
    "ansible_become_pass",
    "ansible_sudo_pass",
    "ansible_connection",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
];

/// Resolve the group graph into a draft inventory.
///
/// Variables merge as Ansible merges them: a host's groups (with every ancestor and `all`)
/// sorted by depth, then `ansible_group_priority`, then name, later ones winning, then the
/// host's own variables; connection variables are read from that merged result.
pub(crate) fn resolve(mut c: Collected) -> Result<Draft, InventoryError> {
    let mut draft = Draft {
        source: c.file.clone(),
        ..Draft::default()
    };
    if let Some(all) = c.groups.iter_mut().find(|g| g.name == ALL) {
        draft.consul = take_consul(&mut all.vars, &mut draft.consul_pos, &c.file)?;
        // `group_vars/all` may set them too, and wins over the inventory file's `all`.
        for (_, v) in &mut all.file_vars {
            let mut positions = Vec::new();
            let more = take_consul(v, &mut positions, &c.file)?;
            if !more.agents.is_empty() {
                draft.consul.agents = more.agents;
                draft.consul_pos = positions;
            }
            if more.datacenter.is_some() {
                draft.consul.datacenter = more.datacenter;
            }
            draft.consul.options = more.options.or(draft.consul.options.clone());
        }
    }

    // Ansible's implicit group for hosts in no other; dropped below if no host is in it.
    let file_pos = SourcePos {
        file: c.file.clone(),
        ..SourcePos::default()
    };
    c.group(UNGROUPED, file_pos);

    let mut memo = HashMap::new();
    let mut order: HashMap<String, (usize, i64)> = HashMap::new();
    for g in &c.groups {
        let depth = c.depth(&g.name, &mut memo, &mut Vec::new())?;
        order.insert(g.name.clone(), (depth, group_priority(&g.vars)?));
    }

    let mut fleet_groups: Vec<bool> = vec![false; c.groups.len()];
    let hosts = std::mem::take(&mut c.hosts);
    draft.hosts.reserve(hosts.len());
    for h in hosts {
        let direct: Vec<String> = h
            .direct
            .iter()
            .filter(|g| *g != ALL && *g != UNGROUPED)
            .cloned()
            .collect();
        let mut fleet: Option<(&str, usize)> = None;
        for g in direct.iter().filter(|g| *g != MONITORING_GROUP) {
            let d = order.get(g.as_str()).map_or(1, |o| o.0);
            if fleet.is_none_or(|(_, best)| d > best) {
                fleet = Some((g, d));
            }
        }
        // A host in no group but `all`/`ungrouped` is in `ungrouped`, as Ansible puts it.
        let group = match fleet {
            Some((g, _)) => g.to_owned(),
            None if direct.iter().any(|g| g == MONITORING_GROUP) => MONITORING_GROUP.to_owned(),
            None => UNGROUPED.to_owned(),
        };
        if let Some(i) = c.groups.iter().position(|x| x.name == group) {
            fleet_groups[i] = true;
        }
        let mut groups: Vec<String> = vec![group.clone()];
        groups.extend(direct.iter().filter(|g| **g != group).cloned());
        let parents = c.ancestors(&groups);
        groups.extend(parents);

        let mut sorted: Vec<&str> = groups.iter().map(String::as_str).collect();
        sorted.push(ALL);
        sorted.sort_by_key(|g| {
            let (depth, priority) = order.get(*g).copied().unwrap_or((1, 1));
            (depth, priority, *g)
        });
        // ansible-core's VariableManager order (VARIABLE_PRECEDENCE): every group's inventory
        // vars, then `group_vars/all` of every source, then the other groups' `group_vars`
        // files source by source, then the host's inventory vars, then its `host_vars` files.
        let mut merged = LocatedVars::default();
        for g in &sorted {
            if let Some(&i) = c.group_idx.get(*g) {
                merged.extend(&c.groups[i].vars);
            }
        }
        if let Some(&i) = c.group_idx.get(ALL) {
            for (_, v) in &c.groups[i].file_vars {
                merged.extend(v);
            }
        }
        for source in 0..c.sources {
            for g in sorted.iter().filter(|g| **g != ALL) {
                if let Some(&i) = c.group_idx.get(*g) {
                    for (_, v) in c.groups[i].file_vars.iter().filter(|(s, _)| *s == source) {
                        merged.extend(v);
                    }
                }
            }
        }
        merged.extend(&h.vars);
        for v in &h.file_vars {
            merged.extend(v);
        }

        check_connection(&mut merged, &h.name)?;
        let options = take_ssh_options(&mut merged, &h.name)?;
        let address = take_address(&mut merged, &h)?;
        let mut ssh = take_ssh(&mut merged)?;
        ssh.options = options;
        ssh.become_password = BecomePassVars::take(&mut merged)?.password()?;
        ssh.address = address.ssh;
        draft.hosts.push(DraftHost {
            name: h.name,
            ip: address.ip,
            group: Some(group),
            groups,
            ssh,
            vars: merged.vars,
            pos: h.pos,
            by_name: address.by_name,
        });
    }

    for (mut g, is_fleet) in c.groups.into_iter().zip(fleet_groups) {
        for (_, v) in std::mem::take(&mut g.file_vars) {
            g.vars.extend(&v);
        }
        for key in CONNECTION_VARS {
            g.vars.vars.remove(*key);
        }
        if g.name == ALL {
            draft.vars = g.vars.vars;
            continue;
        }
        if g.name == UNGROUPED && !is_fleet {
            continue;
        }
        let group = Group {
            name: g.name,
            vars: g.vars.vars,
            pos: g.pos,
        };
        if is_fleet && group.name != MONITORING_GROUP {
            draft.groups.push(group);
        } else {
            draft.extra_groups.push(group);
        }
    }
    Ok(draft)
}

/// `ansible_group_priority` (default 1, as Ansible's).
fn group_priority(v: &LocatedVars) -> Result<i64, InventoryError> {
    let Some(value) = v.vars.get("ansible_group_priority") else {
        return Ok(1);
    };
    let n = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| InventoryError::Syntax {
        pos: v
            .pos
            .get("ansible_group_priority")
            .cloned()
            .unwrap_or_default(),
        message: format!("ansible_group_priority must be a whole number, found {value}"),
        help: None,
    })
}

/// Refuse connections other than SSH, naming the host and the fix.
fn check_connection(v: &mut LocatedVars, host: &str) -> Result<(), InventoryError> {
    if let Some((kind, pos)) = take_string(v, &["ansible_connection"])? {
        match kind.as_str() {
            "ssh" | "smart" | "paramiko" => {}
            "local" => {
                return Err(InventoryError::Syntax {
                    pos,
                    message: format!(
                        "host `{host}`: ansible_connection=local: promfleet reaches every host \
                         over SSH and never runs tasks on the jump host itself"
                    ),
                    help: Some(format!(
                        "to deploy to this machine, drop ansible_connection and give `{host}` \
                         an address sshd listens on here (ansible_host=127.0.0.1, or the \
                         machine's own address); otherwise remove the host"
                    )),
                });
            }
            other => {
                return Err(InventoryError::Syntax {
                    pos,
                    message: format!(
                        "host `{host}`: ansible_connection={other}: promfleet only connects over SSH"
                    ),
                    help: Some("use ansible_connection=ssh or drop the variable".to_owned()),
                });
            }
        }
    }
    Ok(())
}

/// `ansible_ssh_common_args` then `ansible_ssh_extra_args` (the order Ansible puts them on
/// ssh's command line) as `ssh -o` options; see `ssh_args`.
fn take_ssh_options(
    v: &mut LocatedVars,
    host: &str,
) -> Result<Vec<(String, String)>, InventoryError> {
    let mut out = Vec::new();
    for key in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
        if let Some((args, pos)) = take_string(v, &[key])? {
            let options = super::ssh_args::parse(&args).map_err(|why| InventoryError::Syntax {
                pos,
                message: format!("host `{host}`: {key}=`{args}`: {why}"),
                help: Some(
                    "promfleet passes `-o` options it implements to `ssh -G` (ProxyJump, Port, \
                     User, IdentityFile, StrictHostKeyChecking, UserKnownHostsFile, …); others \
                     it refuses rather than ignore"
                        .to_owned(),
                ),
            })?;
            out.extend(options);
        }
    }
    Ok(out)
}

/// A host's addresses as its variables give them.
struct Address {
    /// The address to register and scrape as written: an IP, or a DNS name when `by_name`.
    ip: Option<(String, SourcePos)>,
    /// What SSH connects to, when not `ip`.
    ssh: Option<String>,
    /// `ip` is a DNS name to resolve at load (see `resolve`).
    by_name: bool,
}

/// The host's address: the `ip` var (then `ansible_host` is only where SSH goes), else
/// `ansible_ssh_host`/`ansible_host` — the former wins in Ansible's ssh plugin —, else the
/// hostname. An Ansible address that is no IP is a DNS name: resolved at load for Consul and
/// the metrics checks, while SSH connects to the name itself, as `ssh NAME` does (so
/// ~/.ssh/config's `Host NAME` blocks apply).
fn take_address(v: &mut LocatedVars, h: &AHost) -> Result<Address, InventoryError> {
    let ansible_host = take_string(v, &["ansible_ssh_host", "ansible_host"])?;
    let ip = take_string(v, &["ip"])?;
    let is_ip = |s: &str| s.trim().parse::<std::net::IpAddr>().is_ok();
    Ok(match (ip, ansible_host) {
        (Some(ip), Some((addr, _))) => Address {
            ip: Some(ip),
            ssh: Some(addr),
            by_name: false,
        },
        (Some(ip), None) => Address {
            ip: Some(ip),
            ssh: None,
            by_name: false,
        },
        (None, Some((addr, pos))) => Address {
            // Trimmed: a name is looked up and connected to as written, minus stray blanks.
            ip: Some((addr.trim().to_owned(), pos)),
            by_name: !is_ip(&addr),
            ssh: (!is_ip(&addr)).then(|| addr.trim().to_owned()),
        },
        (None, None) => Address {
            by_name: !is_ip(&h.name),
            ssh: (!is_ip(&h.name)).then(|| h.name.clone()),
            ip: Some((h.name.clone(), h.pos.clone())),
        },
    })
}

fn take_string(
    v: &mut LocatedVars,
    keys: &[&str],
) -> Result<Option<(String, SourcePos)>, InventoryError> {
    let mut found = None;
    for key in keys {
        if let Some(value) = v.vars.remove(*key) {
            let pos = v.pos.get(*key).cloned().unwrap_or_default();
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(InventoryError::Syntax {
                        pos,
                        message: format!("`{key}` must be a string, found {other}"),
                        help: None,
                    });
                }
            };
            found = found.or(Some((text, pos)));
        }
    }
    Ok(found)
}

/// Remove the connection variables from `v` and return them as SSH settings.
fn take_ssh(v: &mut LocatedVars) -> Result<SshSettings, InventoryError> {
    let mut s = SshSettings {
        // Ansible's ssh plugin lists `ansible_user` before `ansible_ssh_user` and the last
        // one set wins (checked against `ansible -vvv` in tests/ansible_inventory.rs).
        user: take_string(v, &["ansible_ssh_user", "ansible_user"])?.map(|x| x.0),
        key: take_string(
            v,
            &["ansible_ssh_private_key_file", "ansible_private_key_file"],
        )?
        .map(|x| PathBuf::from(x.0)),
        ..SshSettings::default()
    };
    if let Some((port, pos)) = take_string(v, &["ansible_ssh_port", "ansible_port"])? {
        s.port = Some(
            port.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| InventoryError::Syntax {
                    pos,
                    message: format!("ansible_port `{port}` is not a port number"),
                    help: Some("use a number from 1 to 65535".to_owned()),
                })?,
        );
    }
    if let Some(value) = v.vars.remove("ansible_become") {
        let pos = v.pos.get("ansible_become").cloned().unwrap_or_default();
        s.become_root = Some(as_bool(&value).ok_or_else(|| InventoryError::Syntax {
            pos,
            message: format!("ansible_become must be true or false, found {value}"),
            help: None,
        })?);
    }
    Ok(s)
}

/// Ansible's names for the sudo password, in the order ansible-core's sudo plugin lists them
/// for its `become_pass` option: the LAST name set wins (`ConfigManager._loop_entries` keeps
/// overwriting; checked against the plugin itself in tests/ansible_inventory.rs).
const BECOME_PASS_VARS: [&str; 3] = [
    "ansible_become_password",
    "ansible_become_pass",
    "ansible_sudo_pass",
];

/// The become-password variables of a host's merged variables, by name. Ansible merges
/// variables by name first (host over child group over parent over `all`) and only then
/// picks among the names, so an `all:vars` `ansible_become_pass` beats a host's
/// `ansible_become_password`.
#[derive(Debug, Default, Clone)]
struct BecomePassVars([Option<(String, SourcePos)>; 3]);

impl BecomePassVars {
    fn take(v: &mut LocatedVars) -> Result<BecomePassVars, InventoryError> {
        let mut out = BecomePassVars::default();
        for (slot, name) in out.0.iter_mut().zip(BECOME_PASS_VARS) {
            *slot = take_string(v, &[name])?;
        }
        Ok(out)
    }

    /// The password Ansible would use; values promfleet cannot use as they are (vault,
    /// Jinja) are errors rather than wrong passwords sent to sudo.
    fn password(self) -> Result<Option<BecomePassword>, InventoryError> {
        let Some((name, (value, pos))) = BECOME_PASS_VARS
            .iter()
            .zip(self.0)
            .rev()
            .find_map(|(n, v)| v.map(|v| (*n, v)))
        else {
            return Ok(None);
        };
        let unusable = if value.trim_start().starts_with("$ANSIBLE_VAULT;") {
            Some("is vault-encrypted, and promfleet has no vault password")
        } else if value.contains("{{") || value.contains("{%") {
            Some("is a Jinja template, which promfleet does not evaluate")
        } else {
            None
        };
        let help = "give the password with --ask-become-pass (-K) or the `become_password` \
                    secret (PROMFLEET_SECRET_BECOME_PASSWORD or --secrets FILE) instead";
        if let Some(why) = unusable {
            return Err(InventoryError::Syntax {
                pos,
                message: format!("`{name}` {why}"),
                help: Some(help.to_owned()),
            });
        }
        let source = PasswordSource::Inventory {
            var: name.to_owned(),
            at: pos.to_string(),
        };
        BecomePassword::new(&value, source)
            .map(Some)
            .map_err(|message| InventoryError::Syntax {
                pos,
                message,
                help: Some(help.to_owned()),
            })
    }
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

/// `consul_agents` (a list, or a comma-separated string) and `consul_datacenter` from `all`.
fn take_consul(
    v: &mut LocatedVars,
    positions: &mut Vec<SourcePos>,
    file: &Path,
) -> Result<ConsulSettings, InventoryError> {
    let mut c = ConsulSettings::default();
    let pos = v
        .pos
        .get("consul_agents")
        .cloned()
        .unwrap_or_else(|| SourcePos {
            file: file.to_path_buf(),
            ..SourcePos::default()
        });
    match v.vars.remove("consul_agents") {
        None => {}
        Some(Value::String(s)) => {
            c.agents = s
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect()
        }
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => c.agents.push(s),
                    other => {
                        return Err(InventoryError::Syntax {
                            pos,
                            message: format!("consul_agents entries must be URLs, found {other}"),
                            help: Some("e.g. consul_agents: [http://10.0.0.178:8500]".to_owned()),
                        });
                    }
                }
            }
        }
        Some(other) => {
            return Err(InventoryError::Syntax {
                pos,
                message: format!("consul_agents must be a list of URLs, found {other}"),
                help: Some("e.g. consul_agents: [http://10.0.0.178:8500]".to_owned()),
            });
        }
    }
    positions.extend(std::iter::repeat_n(pos, c.agents.len()));
    if let Some((dc, _)) = take_string(v, &["consul_datacenter"])? {
        c.datacenter = Some(dc);
    }
    // `consul_<key>`: strings, and booleans as Ansible types `false` (INI included).
    for key in crate::settings::consul::OPTION_KEYS {
        let name = format!("consul_{key}");
        let Some(value) = v.vars.remove(&name) else {
            continue;
        };
        let pos = v.pos.get(&name).cloned().unwrap_or_default();
        let text = match value {
            Value::String(s) => Some(s),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        text.ok_or_else(|| "expected a string or boolean".to_owned())
            .and_then(|t| c.options.set(key, &t))
            .map_err(|why| InventoryError::Syntax {
                pos,
                message: format!("{name}: {why}"),
                help: None,
            })?;
    }
    Ok(c)
}
