//! promfleet's own YAML inventory format → `Draft`.
//!
//! Top-level keys: `vars`, `ssh`, `consul`, `groups`, `monitoring`, `stages` (see
//! inventory/example.yml). Owns only the shape of that format; invariants are checked by
//! `validate`.

use std::path::PathBuf;

use super::error::InventoryError;
use super::node::{Kind, Node, Reader, scalar_text};
use super::validate::{Draft, DraftHost};
use super::{
    ConsulSettings, GateSpec, Group, MONITORING_GROUP, Serial, SshSettings, StageSpec, Vars,
};

/// Top-level keys; also used to recognise the format.
pub(crate) const TOP_KEYS: &[&str] = &["vars", "ssh", "consul", "groups", "monitoring", "stages"];
const SSH_KEYS: &[&str] = &["user", "port", "key", "become"];
const HOST_SSH_KEYS: &[&str] = &["user", "port", "key", "become", "address"];
/// The `consul:` keys of the inventory's own: the client options follow, one list with every
/// other source of them (`settings::consul::OPTION_KEYS`).
const CONSUL_OWN_KEYS: &[&str] = &["agents", "datacenter"];

/// Every key a `consul:` map may hold.
fn consul_keys() -> Vec<&'static str> {
    CONSUL_OWN_KEYS
        .iter()
        .chain(crate::settings::consul::OPTION_KEYS)
        .copied()
        .collect()
}
const GROUP_KEYS: &[&str] = &["vars", "ssh", "hosts"];
const HOST_KEYS: &[&str] = &["name", "hostname", "ip", "ssh", "vars"];
const STAGE_KEYS: &[&str] = &[
    "name",
    "hosts",
    "serial",
    "max_fail_percentage",
    "canary",
    "gate",
];
const GATE_KEYS: &[&str] = &["scrapes", "no_alerts", "timeout"];

pub(crate) fn parse(root: &Node, r: &Reader) -> Result<Draft, InventoryError> {
    let mut draft = Draft {
        source: r.file.to_path_buf(),
        ..Draft::default()
    };
    let mut global_ssh = SshSettings::default();
    let mut groups_node = None;
    let mut monitoring_node = None;
    let mut stages_node = None;
    for (key, value) in r.fields(root, TOP_KEYS, "inventory")? {
        match key {
            "vars" => draft.vars = r.vars(value, "vars")?,
            "ssh" => global_ssh = ssh(value, r, SSH_KEYS, "ssh")?,
            "consul" => consul(value, r, &mut draft)?,
            "groups" => groups_node = Some(value),
            "monitoring" => monitoring_node = Some(value),
            _ => stages_node = Some(value),
        }
    }
    // Hosts are read after the global ssh defaults regardless of key order in the file.
    if let Some(groups) = groups_node {
        for (name_node, body) in r.map(groups, "groups")? {
            let name = r.string(name_node, "group name")?;
            let pos = r.pos(name_node.loc);
            if name == MONITORING_GROUP {
                return Err(r.error(
                    name_node.loc,
                    "`monitoring` is reserved",
                    Some("put monitoring hosts under the top-level `monitoring:` key".to_owned()),
                ));
            }
            let vars = group(body, &name, r, &global_ssh, &mut draft)?;
            draft.groups.push(Group { name, vars, pos });
        }
    }
    if let Some(mon) = monitoring_node {
        let vars = group(mon, MONITORING_GROUP, r, &global_ssh, &mut draft)?;
        draft.extra_groups.push(Group {
            name: MONITORING_GROUP.to_owned(),
            vars,
            pos: r.pos(mon.loc),
        });
    }
    if let Some(stages) = stages_node {
        for item in r.seq(stages, "stages")? {
            draft.stages.push(stage(item, r)?);
        }
    }
    Ok(draft)
}

/// One group body (`vars`, `ssh`, `hosts`); pushes its hosts, returns its vars.
fn group(
    body: &Node,
    name: &str,
    r: &Reader,
    global_ssh: &SshSettings,
    draft: &mut Draft,
) -> Result<Vars, InventoryError> {
    let ctx = format!("group `{name}`");
    let mut vars = Vars::new();
    let mut group_ssh = SshSettings::default();
    let mut hosts_node = None;
    for (key, value) in r.fields(body, GROUP_KEYS, &ctx)? {
        match key {
            "vars" => vars = r.vars(value, &ctx)?,
            "ssh" => group_ssh = ssh(value, r, SSH_KEYS, &ctx)?,
            _ => hosts_node = Some(value),
        }
    }
    let defaults = group_ssh.or(global_ssh);
    if let Some(hosts) = hosts_node {
        let items = r.seq(hosts, &ctx)?;
        draft.hosts.reserve(items.len());
        for item in items {
            let mut h = host(item, r, &ctx)?;
            h.ssh = h.ssh.or(&defaults);
            h.group = Some(name.to_owned());
            h.groups = vec![name.to_owned()];
            draft.hosts.push(h);
        }
    }
    Ok(vars)
}

fn host(item: &Node, r: &Reader, ctx: &str) -> Result<DraftHost, InventoryError> {
    let mut h = DraftHost {
        pos: r.pos(item.loc),
        ..DraftHost::default()
    };
    let mut name = None;
    if !matches!(item.kind, Kind::Map(_)) {
        return Err(r.error(
            item.loc,
            format!("{ctx}: a host must be a mapping"),
            Some("write `- { name: ide-01, ip: 10.0.1.11 }`".to_owned()),
        ));
    }
    for (key, value) in r.fields(item, HOST_KEYS, ctx)? {
        match key {
            "name" | "hostname" => {
                if name.is_some() {
                    return Err(r.error(
                        value.loc,
                        "both `name` and `hostname` given",
                        Some("keep one of them".to_owned()),
                    ));
                }
                name = Some(r.string(value, "host name")?);
            }
            "ip" => {
                let text = scalar_text(&value.kind).unwrap_or_default();
                h.ip = Some((text, r.pos(value.loc)));
            }
            "ssh" => h.ssh = ssh(value, r, HOST_SSH_KEYS, "host ssh")?,
            _ => h.vars = r.vars(value, "host vars")?,
        }
    }
    h.name = name.ok_or_else(|| {
        r.error(
            item.loc,
            format!("{ctx}: host without a name"),
            Some("add `name: <hostname>`".to_owned()),
        )
    })?;
    Ok(h)
}

fn ssh(
    node: &Node,
    r: &Reader,
    allowed: &[&str],
    ctx: &str,
) -> Result<SshSettings, InventoryError> {
    let ctx = format!("{ctx} ssh");
    let mut s = SshSettings::default();
    for (key, value) in r.fields(node, allowed, &ctx)? {
        match key {
            "user" => s.user = Some(r.string(value, "ssh user")?),
            "port" => s.port = Some(r.port(value, "ssh port")?),
            "key" => s.key = Some(PathBuf::from(r.string(value, "ssh key")?)),
            "become" => s.become_root = Some(r.bool(value, "ssh become")?),
            _ => s.address = Some(r.string(value, "ssh address")?),
        }
    }
    Ok(s)
}

fn consul(node: &Node, r: &Reader, draft: &mut Draft) -> Result<(), InventoryError> {
    let mut c = ConsulSettings::default();
    for (key, value) in r.fields(node, &consul_keys(), "consul")? {
        match key {
            "agents" => {
                let items: Vec<&Node> = match &value.kind {
                    Kind::Seq(items) => items.iter().collect(),
                    _ => vec![value],
                };
                for item in items {
                    c.agents.push(r.string(item, "consul agent")?);
                    draft.consul_pos.push(r.pos(item.loc));
                }
            }
            "datacenter" => c.datacenter = Some(r.string(value, "consul datacenter")?),
            option => {
                let text = r.string(value, &format!("consul {option}"))?;
                c.options
                    .set(option, &text)
                    .map_err(|why| r.error(value.loc, format!("consul {option}: {why}"), None))?;
            }
        }
    }
    draft.consul = c;
    Ok(())
}

/// `gate: true|false` or `gate: {scrapes: 2, no_alerts: true, timeout: 5m}`.
fn gate(value: &Node, r: &Reader) -> Result<Option<GateSpec>, InventoryError> {
    if !matches!(value.kind, Kind::Map(_)) {
        return Ok(r.bool(value, "stage gate")?.then(GateSpec::default));
    }
    let mut g = GateSpec::default();
    for (key, v) in r.fields(value, GATE_KEYS, "stage gate")? {
        match key {
            "scrapes" => {
                let n = r
                    .string(v, "gate scrapes")?
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        r.error(
                            v.loc,
                            "gate scrapes must be a positive whole number",
                            Some("e.g. `scrapes: 2`".to_owned()),
                        )
                    })?;
                g.scrapes = Some(n);
            }
            "no_alerts" => g.no_alerts = Some(r.bool(v, "gate no_alerts")?),
            _ => {
                let t = r.string(v, "gate timeout")?;
                if crate::base::clock::parse_duration(&t).is_none() {
                    return Err(r.error(
                        v.loc,
                        format!("gate timeout `{t}` is not a duration"),
                        Some("e.g. `timeout: 5m` or `timeout: 90s`".to_owned()),
                    ));
                }
                g.timeout = Some(t);
            }
        }
    }
    Ok(Some(g))
}

fn stage(item: &Node, r: &Reader) -> Result<StageSpec, InventoryError> {
    let mut s = StageSpec {
        pos: r.pos(item.loc),
        ..StageSpec::default()
    };
    let mut named = false;
    let mut serial = None;
    for (key, value) in r.fields(item, STAGE_KEYS, "stage")? {
        match key {
            "name" => {
                s.name = r.string(value, "stage name")?;
                named = true;
            }
            "hosts" => {
                s.hosts = match &value.kind {
                    Kind::Seq(items) => items
                        .iter()
                        .map(|i| r.string(i, "stage hosts"))
                        .collect::<Result<_, _>>()?,
                    // `hosts: "IDE:!ide-01"` — an Ansible-style pattern string.
                    _ => r
                        .string(value, "stage hosts")?
                        .split([',', ':'])
                        .map(|p| p.trim().to_owned())
                        .filter(|p| !p.is_empty())
                        .collect(),
                }
            }
            "serial" => serial = Some(r.string(value, "stage serial")?),
            "canary" => s.canary = Some(r.bool(value, "stage canary")?),
            "gate" => s.gate = gate(value, r)?,
            _ => {
                let text = r.string(value, "max_fail_percentage")?;
                let pct = text
                    .trim_end_matches('%')
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| {
                        r.error(
                            value.loc,
                            "max_fail_percentage must be a number",
                            Some("e.g. `max_fail_percentage: 25`".to_owned()),
                        )
                    })?;
                s.max_fail_percentage = Some(pct);
            }
        }
    }
    if !named {
        return Err(r.error(
            item.loc,
            "stage without a name",
            Some("add `name: <stage>`".to_owned()),
        ));
    }
    if s.hosts.is_empty() {
        return Err(r.error(
            item.loc,
            format!("stage `{}` selects no hosts", s.name),
            Some("add `hosts: [<group or host>, ...]`".to_owned()),
        ));
    }
    if let Some(text) = serial {
        // Parsed once, here: the plan and executor see only `Serial`.
        s.serial = Some(Serial::parse(&text).map_err(|_| {
            r.error(
                item.loc,
                format!("stage `{}`: serial `{text}` is not a batch size", s.name),
                Some("write a number of hosts (e.g. 2) or a percentage such as \"25%\"".to_owned()),
            )
        })?);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::settings::consul::OPTION_KEYS;

    fn with_consul(line: &str) -> Result<crate::inventory::Inventory, String> {
        let text = format!(
            "consul:\n  agents: [http://127.0.0.1:8500]\n  {line}\ngroups:\n  IDE:\n    hosts:\n      - {{ name: a, ip: 10.0.0.1 }}\n"
        );
        crate::inventory::parse_str(&text, Path::new("c.yml")).map_err(|e| e.to_string())
    }

    /// Every client option key (the one list, `OPTION_KEYS`) is a `consul:` key here: a key
    /// added there cannot be missing from the promfleet format.
    #[test]
    fn every_consul_option_key_is_read_from_the_consul_map() {
        for key in OPTION_KEYS {
            let value = match *key {
                "ssl" | "ssl_verify" => "true",
                "deregister_critical_service_after" => "90m",
                _ => "x",
            };
            let inv =
                with_consul(&format!("{key}: {value}")).unwrap_or_else(|e| panic!("{key}: {e}"));
            let mut expected = crate::settings::ConsulOptions::default();
            expected.set(key, value).expect("valid");
            assert_eq!(inv.consul.options, expected, "{key}");
        }
        let e = with_consul("datacenter: dc2").expect("datacenter");
        assert_eq!(e.consul.datacenter.as_deref(), Some("dc2"));
        let e = with_consul("ca_fil: x").expect_err("unknown key");
        assert!(e.contains("ca_fil") && e.contains("ca_file"), "{e}");
    }
}
