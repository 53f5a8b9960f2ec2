//! Ansible YAML inventories (`all: {hosts, vars, children}`) → the shared group graph.

use super::ansible::{ALL, Collected, resolve};
use super::error::InventoryError;
use super::host_range;
use super::node::{Kind, Node, Reader, to_json};
use super::validate::Draft;

const GROUP_KEYS: &[&str] = &["hosts", "vars", "children"];

/// True if a YAML document looks like an Ansible inventory: `all:` at the top, or only
/// group mappings made of `hosts`/`children`/`vars`.
pub(crate) fn looks_like(root: &Node) -> bool {
    let Kind::Map(entries) = &root.kind else {
        return false;
    };
    let has_all = entries
        .iter()
        .any(|(k, _)| matches!(&k.kind, Kind::Str(s) if s == ALL));
    if has_all {
        return true;
    }
    let is_group_body =
        |v: &Node| match &v.kind {
            Kind::Map(body) => !body.is_empty()
                && body.iter().all(
                    |(k, _)| matches!(&k.kind, Kind::Str(s) if GROUP_KEYS.contains(&s.as_str())),
                ),
            _ => false,
        };
    !entries.is_empty()
        && entries.iter().all(|(k, v)| {
            let top_key =
                matches!(&k.kind, Kind::Str(s) if super::promfleet::TOP_KEYS.contains(&s.as_str()));
            !top_key && is_group_body(v)
        })
}

pub(crate) fn parse(root: &Node, r: &Reader) -> Result<Draft, InventoryError> {
    let mut c = Collected::new(r.file);
    parse_into(root, r, &mut c)?;
    resolve(c)
}

/// Add one YAML file's groups and hosts to `c` (several files merge as Ansible merges sources).
pub(crate) fn parse_into(root: &Node, r: &Reader, c: &mut Collected) -> Result<(), InventoryError> {
    for (name_node, body) in r.map(root, "inventory")? {
        let name = r.string(name_node, "group name")?;
        c.group(&name, r.pos(name_node.loc));
        if name != ALL {
            c.add_child(ALL, &name, r.pos(name_node.loc));
        }
        group(&name, body, r, c)?;
    }
    Ok(())
}

fn group(name: &str, body: &Node, r: &Reader, c: &mut Collected) -> Result<(), InventoryError> {
    let ctx = format!("group `{name}`");
    for (key, value) in r.fields(body, GROUP_KEYS, &ctx)? {
        match key {
            "hosts" => {
                for (host_node, vars) in r.map(value, &ctx)? {
                    let written = r.string(host_node, "hostname")?;
                    // As Ansible's YAML plugin: `host:2222` keys carry a port, which the
                    // host's own variables may override.
                    let (pattern, port) = host_range::split_port(&written);
                    let hosts =
                        host_range::expand(pattern).map_err(|m| InventoryError::Syntax {
                            pos: r.pos(host_node.loc),
                            message: m,
                            help: Some(
                                "write a range as `web[01:20]`, `db-[a:f]` or `node[0:10:2]`"
                                    .to_owned(),
                            ),
                        })?;
                    let mut host_vars = Vec::new();
                    if let Some(port) = port {
                        host_vars.push((
                            "ansible_port".to_owned(),
                            serde_json::Value::String(port.to_owned()),
                            r.pos(host_node.loc),
                        ));
                    }
                    for (k, v) in r.map(vars, &format!("host `{pattern}`"))? {
                        host_vars.push((r.string(k, "variable name")?, to_json(v), r.pos(v.loc)));
                    }
                    for host in hosts {
                        let h = c.host(&host, r.pos(host_node.loc), name);
                        for (k, v, p) in &host_vars {
                            h.vars.insert(k.clone(), v.clone(), p.clone());
                        }
                    }
                }
            }
            "vars" => {
                for (k, v) in r.map(value, &ctx)? {
                    let key = r.string(k, "variable name")?;
                    c.group(name, r.pos(body.loc))
                        .vars
                        .insert(key, to_json(v), r.pos(v.loc));
                }
            }
            _ => {
                for (child_node, child_body) in r.map(value, &ctx)? {
                    let child = r.string(child_node, "group name")?;
                    c.group(&child, r.pos(child_node.loc));
                    c.add_child(name, &child, r.pos(child_node.loc));
                    group(&child, child_body, r, c)?;
                }
            }
        }
    }
    Ok(())
}
