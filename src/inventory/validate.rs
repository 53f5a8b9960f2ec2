//! The one place that enforces the Inventory invariants.
//!
//! Formats only translate their syntax into a `Draft` (names, ips as written, positions);
//! `validate` turns a draft into an `Inventory` or the first error in file order: names,
//! ips, duplicates, hosts without a group, stage patterns, Consul agent URLs, emptiness.
//! Duplicate checks use hash maps so 100k-host inventories stay linear.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use super::error::{InventoryError, SourcePos};
use super::node::near_names;
use super::resolve::ResolvedName;
use super::{
    ConsulSettings, Group, Host, Inventory, MONITORING_GROUP, SshSettings, StageSpec, Vars,
};

/// An inventory as a format read it, before any invariant is checked.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    pub source: PathBuf,
    pub hosts: Vec<DraftHost>,
    pub groups: Vec<Group>,
    pub extra_groups: Vec<Group>,
    pub vars: Vars,
    pub consul: ConsulSettings,
    /// Position of each Consul agent entry (parallel to `consul.agents`).
    pub consul_pos: Vec<SourcePos>,
    pub stages: Vec<StageSpec>,
    /// Hosts whose `ip` was resolved from a DNS name (filled by `resolve::resolve_names`).
    pub resolved_names: BTreeMap<String, ResolvedName>,
}

/// A host as written: the ip is still text, the group may be missing.
#[derive(Debug, Default)]
pub(crate) struct DraftHost {
    pub name: String,
    /// The ip as written, and where; `None` if the format found no address at all.
    pub ip: Option<(String, SourcePos)>,
    pub group: Option<String>,
    pub groups: Vec<String>,
    /// Effective settings (host, then group, then global defaults already applied).
    pub ssh: SshSettings,
    pub vars: Vars,
    pub pos: SourcePos,
    /// `ip` holds a DNS name still to resolve (Ansible: `ansible_host` or the inventory name).
    pub by_name: bool,
}

/// The rule for hostnames and group names, stated in errors.
pub(crate) const NAME_RULE: &str = "names must start with a letter or digit and contain only letters, digits, `.`, `_` and `-` (at most 63 characters), because they end up in shell commands, file paths and Consul ids";

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$` without pulling in a regex engine.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_name(name: &str, what: &str, pos: &SourcePos) -> Result<(), InventoryError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(InventoryError::InvalidName {
            name: name.to_owned(),
            why: format!("{what} {NAME_RULE}"),
            pos: pos.clone(),
        })
    }
}

/// Check every invariant and build the Inventory.
pub(crate) fn validate(draft: Draft) -> Result<Inventory, InventoryError> {
    let Draft {
        source,
        hosts: draft_hosts,
        groups,
        extra_groups,
        vars,
        consul,
        consul_pos,
        stages,
        resolved_names,
    } = draft;

    for g in groups.iter().chain(&extra_groups) {
        check_name(&g.name, "group", &g.pos)?;
    }

    let mut hosts = Vec::with_capacity(draft_hosts.len());
    let mut by_name: HashMap<String, SourcePos> = HashMap::with_capacity(draft_hosts.len());
    let mut by_ip: HashMap<IpAddr, usize> = HashMap::with_capacity(draft_hosts.len());
    for h in draft_hosts {
        check_name(&h.name, "host", &h.pos)?;
        if let Some(first) = by_name.get(&h.name) {
            return Err(InventoryError::DuplicateHost {
                name: h.name,
                pos: h.pos,
                first: first.clone(),
            });
        }
        let Some((ip_text, ip_pos)) = h.ip else {
            return Err(InventoryError::Syntax {
                pos: h.pos,
                message: format!("host `{}` has no ip", h.name),
                help: Some(
                    "give it an address, e.g. `ip: 10.0.1.12` (Ansible: `ansible_host=10.0.1.12`)"
                        .to_owned(),
                ),
            });
        };
        let ip: IpAddr = ip_text
            .trim()
            .parse()
            .map_err(|_| InventoryError::InvalidIp {
                name: h.name.clone(),
                value: ip_text.clone(),
                pos: ip_pos.clone(),
            })?;
        let Some(group) = h.group else {
            return Err(InventoryError::NoGroup {
                name: h.name,
                pos: h.pos,
            });
        };
        if let Some(&other) = by_ip.get(&ip) {
            let other: &Host = &hosts[other];
            // Two names that resolve to one address are the same machine twice.
            let ip = match (resolved_names.get(&h.name), resolved_names.get(&other.name)) {
                (None, None) => ip.to_string(),
                (a, b) => {
                    let mut from: Vec<String> = [a, b]
                        .into_iter()
                        .flatten()
                        .map(|r| format!("`{}`", r.name))
                        .collect();
                    from.dedup();
                    format!("{ip} (resolved from {})", from.join(" and "))
                }
            };
            return Err(InventoryError::DuplicateIp {
                ip,
                name: h.name,
                other: other.name.clone(),
                pos: ip_pos,
                first: other.pos.clone(),
            });
        }
        by_ip.insert(ip, hosts.len());
        by_name.insert(h.name.clone(), h.pos.clone());
        let mut member_of = h.groups;
        if member_of.first() != Some(&group) {
            member_of.retain(|g| g != &group);
            member_of.insert(0, group.clone());
        }
        hosts.push(Host {
            name: h.name,
            ip,
            group,
            groups: member_of,
            ssh: h.ssh,
            vars: h.vars,
            pos: h.pos,
        });
    }
    if hosts.is_empty() {
        return Err(InventoryError::NoHosts {
            pos: SourcePos {
                file: source,
                line: 1,
                column: 1,
            },
        });
    }

    check_stages(&stages, &hosts, &groups, &extra_groups)?;
    let mut consul = consul;
    for (agent, pos) in consul.agents.iter_mut().zip(&consul_pos) {
        let parsed = super::AgentUrl::parse(agent).map_err(|why| InventoryError::Syntax {
            pos: pos.clone(),
            message: format!("consul agent `{agent}`: {why}"),
            help: Some("write the agent's base URL, e.g. http://10.0.0.178:8500".to_owned()),
        })?;
        *agent = parsed.url();
    }

    Ok(Inventory {
        source,
        hosts,
        groups,
        extra_groups,
        vars,
        consul,
        stages,
        resolved_names,
    })
}

/// Every literal term of a stage must name a known group or host; max_fail_percentage must
/// make sense (serial is checked where it is read: it is a `Serial` by now).
fn check_stages(
    stages: &[StageSpec],
    hosts: &[Host],
    groups: &[Group],
    extra: &[Group],
) -> Result<(), InventoryError> {
    if stages.is_empty() {
        return Ok(());
    }
    let mut known: HashSet<&str> = groups
        .iter()
        .chain(extra)
        .map(|g| g.name.as_str())
        .collect();
    known.insert(MONITORING_GROUP);
    known.insert("all");
    let host_names: HashSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    for stage in stages {
        for pattern in &stage.hosts {
            let term = pattern.trim_start_matches(['!', '&']);
            let is_glob = term.contains(['*', '?', '[']);
            if is_glob || term.starts_with('@') || known.contains(term) || host_names.contains(term)
            {
                continue;
            }
            if term.parse::<IpAddr>().is_ok() && hosts.iter().any(|h| h.ip.to_string() == term) {
                continue;
            }
            let candidates = known.iter().copied().filter(|g| *g != "all");
            return Err(InventoryError::UnknownGroup {
                group: term.to_owned(),
                context: format!("stage `{}`", stage.name),
                suggestion: near_names(term, candidates, 1).into_iter().next(),
                pos: stage.pos.clone(),
            });
        }
        if let Some(p) = stage.max_fail_percentage
            && !(0.0..=100.0).contains(&p)
        {
            return Err(InventoryError::Syntax {
                pos: stage.pos.clone(),
                message: format!(
                    "stage `{}`: max_fail_percentage {p} is out of range",
                    stage.name
                ),
                help: Some("use a value from 0 to 100".to_owned()),
            });
        }
    }
    Ok(())
}
