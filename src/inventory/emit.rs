//! Writes an Inventory as promfleet YAML (used by `promfleet inventory import`).
//!
//! Hand-written rather than serialized so the output reads like inventory/example.yml: one
//! flow mapping per host, groups in file order. Values that YAML could mistake for numbers,
//! booleans or null are quoted; variables are written as JSON, which is valid YAML.

use std::fmt::Write;

use serde_json::Value;

use super::{Group, Host, Inventory, MONITORING_GROUP, SshSettings, Vars};

/// The inventory as promfleet YAML; `parse_str` reads it back to the same hosts and groups.
pub fn to_yaml(inv: &Inventory) -> String {
    let mut out = String::with_capacity(64 * inv.hosts.len() + 256);
    let _ = writeln!(
        out,
        "# promfleet inventory (generated from {})",
        inv.source.display()
    );
    if !inv.vars.is_empty() {
        let _ = writeln!(out, "vars: {}", flow(&Value::Object(inv.vars.clone())));
    }
    if !inv.consul.agents.is_empty() || inv.consul.datacenter.is_some() {
        out.push_str("consul:\n");
        let agents: Vec<String> = inv.consul.agents.iter().map(|a| scalar(a)).collect();
        let _ = writeln!(out, "  agents: [{}]", agents.join(", "));
        if let Some(dc) = &inv.consul.datacenter {
            let _ = writeln!(out, "  datacenter: {}", scalar(dc));
        }
    }
    out.push_str("groups:\n");
    for g in &inv.groups {
        write_group(
            &mut out,
            g,
            inv.hosts.iter().filter(|h| h.group == g.name),
            "  ",
        );
    }
    let monitoring: Vec<&Host> = inv
        .hosts
        .iter()
        .filter(|h| h.group == MONITORING_GROUP)
        .collect();
    if !monitoring.is_empty() {
        let vars = inv
            .extra_groups
            .iter()
            .find(|g| g.name == MONITORING_GROUP)
            .map(|g| g.vars.clone())
            .unwrap_or_default();
        out.push_str("monitoring:\n");
        write_body(&mut out, &vars, monitoring.into_iter(), "  ");
    }
    if !inv.stages.is_empty() {
        out.push_str("stages:\n");
        for s in &inv.stages {
            let hosts: Vec<String> = s.hosts.iter().map(|h| scalar(h)).collect();
            let _ = write!(
                out,
                "  - {{ name: {}, hosts: [{}]",
                scalar(&s.name),
                hosts.join(", ")
            );
            if let Some(serial) = &s.serial {
                let _ = write!(out, ", serial: {}", scalar(&serial.to_string()));
            }
            if let Some(p) = s.max_fail_percentage {
                let _ = write!(out, ", max_fail_percentage: {p}");
            }
            if let Some(c) = s.canary {
                let _ = write!(out, ", canary: {c}");
            }
            if let Some(g) = &s.gate {
                let mut fields = Vec::new();
                if let Some(n) = g.scrapes {
                    fields.push(format!("scrapes: {n}"));
                }
                if let Some(a) = g.no_alerts {
                    fields.push(format!("no_alerts: {a}"));
                }
                if let Some(t) = &g.timeout {
                    fields.push(format!("timeout: {}", scalar(t)));
                }
                let _ = write!(out, ", gate: {{{}}}", fields.join(", "));
            }
            out.push_str(" }\n");
        }
    }
    out
}

fn write_group<'a>(
    out: &mut String,
    g: &Group,
    hosts: impl Iterator<Item = &'a Host>,
    indent: &str,
) {
    let _ = writeln!(out, "{indent}{}:", scalar(&g.name));
    write_body(out, &g.vars, hosts, &format!("{indent}  "));
}

fn write_body<'a>(
    out: &mut String,
    vars: &Vars,
    hosts: impl Iterator<Item = &'a Host>,
    indent: &str,
) {
    if !vars.is_empty() {
        let _ = writeln!(out, "{indent}vars: {}", flow(&Value::Object(vars.clone())));
    }
    let _ = writeln!(out, "{indent}hosts:");
    for h in hosts {
        let _ = write!(
            out,
            "{indent}  - {{ name: {}, ip: {}",
            scalar(&h.name),
            scalar(&h.ip.to_string())
        );
        if h.ssh != SshSettings::default() {
            let _ = write!(out, ", ssh: {}", ssh(&h.ssh));
        }
        if !h.vars.is_empty() {
            let _ = write!(out, ", vars: {}", flow(&Value::Object(h.vars.clone())));
        }
        out.push_str(" }\n");
    }
}

fn ssh(s: &SshSettings) -> String {
    let mut parts = Vec::new();
    if let Some(u) = &s.user {
        parts.push(format!("user: {}", scalar(u)));
    }
    if let Some(p) = s.port {
        parts.push(format!("port: {p}"));
    }
    if let Some(k) = &s.key {
        parts.push(format!("key: {}", scalar(&k.to_string_lossy())));
    }
    if let Some(b) = s.become_root {
        parts.push(format!("become: {b}"));
    }
    if let Some(a) = &s.address {
        parts.push(format!("address: {}", scalar(a)));
    }
    format!("{{ {} }}", parts.join(", "))
}

/// A string as a YAML scalar: plain when unambiguous, JSON-quoted otherwise.
fn scalar(s: &str) -> String {
    let plain_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'~'));
    let starts_ok = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'/');
    let looks_typed = s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o")
        || s.starts_with("0b")
        || matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "nan" | "inf"
        );
    if plain_chars && starts_ok && !looks_typed {
        s.to_owned()
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

/// A JSON value as a YAML flow node.
fn flow(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), flow(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}
