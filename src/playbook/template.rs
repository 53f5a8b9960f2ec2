//! Tera rendering for templates and task arguments, and the per-host template context.
//!
//! Context (documented in README "Templates"): every variable at top level (built-in
//! defaults < inventory global < group < host), plus `host`, `fleet_groups`,
//! `monitoring_hosts`, `topology` (inventory/topology.rs), `consul`, and the function `secret(name=…)`.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use tera::Tera;

use super::secrets::{MASK, SecretMode, Secrets};
use crate::inventory::{Host, Inventory, Vars};
use crate::project::Project;

/// A rendering failure with the template (or playbook position) it came from.
#[derive(Debug, thiserror::Error)]
#[error("{origin}{}{message}", if .message.starts_with(|c: char| c.is_ascii_digit()) { ":" } else { ": " })]
pub struct TemplateError {
    pub origin: String,
    pub message: String,
}

/// Tera's error with its cause chain on one line (the chain holds the useful part).
pub fn tera_message(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    // Drop tera's generic "Failed to render '__tera_one_off'" wrappers.
    parts.retain(|p| !p.contains("__tera_one_off") && !p.starts_with("Failed to render '__arg"));
    let parts: Vec<String> = parts.iter().map(|p| parse_error_line(p)).collect();
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ").replace('\n', " ")
    }
}

/// Tera's parse errors are a drawn snippet (` --> 51:1`, `= expected tag …`); keep the
/// position and the message: `51:1: expected tag …`.
fn parse_error_line(p: &str) -> String {
    let pos = p
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .map(str::trim);
    let msg = p
        .lines()
        .find_map(|l| l.trim().strip_prefix("= "))
        .map(str::trim);
    match (pos, msg) {
        (Some(pos), Some(msg)) => format!("{pos}: {msg}"),
        _ => p.to_string(),
    }
}

/// Renders template files (by path under `templates/`, found through the project overlay)
/// and inline argument strings.
pub struct Renderer {
    tera: Tera,
    project: Project,
    /// Template sources by name (parsed into `tera` once), with the file they came from.
    loaded: HashMap<String, (String, PathBuf)>,
    inline: HashMap<String, String>,
    /// Whether the run has a Consul token (`Secrets::consul_token`): templates reference
    /// its file only then.
    consul_token_set: bool,
}

impl Renderer {
    pub fn new(project: Project, secrets: Secrets, mode: SecretMode) -> Renderer {
        let consul_token_set = secrets.consul_token().is_some();
        let tls_secrets = secrets.clone();
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        tera.register_function(
            "secret",
            move |args: &HashMap<String, Value>| -> tera::Result<Value> {
                let name = args
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| tera::Error::msg("secret() needs name=\"…\""))?;
                let generate = args
                    .get("generate")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                // `default=…`: the value when the secret is not set (e.g. the Consul agent
                // token falls back to the management token); itself a secret value.
                let default = args.get("default").and_then(Value::as_str);
                // Review output never needs the value, so it must not require it either.
                if mode == SecretMode::Masked {
                    return Ok(Value::String(MASK.to_string()));
                }
                if let Some(d) = default
                    && !generate
                {
                    return Ok(Value::String(
                        secrets.get(name).unwrap_or_else(|_| d.to_owned()),
                    ));
                }
                let v = if generate {
                    secrets
                        .get_or_generate(name)
                        .map_err(|e| tera::Error::msg(e.to_string()))?
                } else {
                    secrets
                        .get(name)
                        .map_err(|e| tera::Error::msg(e.to_string()))?
                };
                Ok(Value::String(match mode {
                    SecretMode::Real => v,
                    SecretMode::Masked => MASK.to_string(),
                }))
            },
        );
        // `{{ consul_tls(part="ca"|"cert"|"key") }}`: the PEM text of the run's Consul TLS
        // file, for the copies deployed beside Prometheus; the key is masked in review output.
        tera.register_function(
            "consul_tls",
            move |args: &HashMap<String, Value>| -> tera::Result<Value> {
                const PARTS: &[&str] = &[
                    "ca",
                    "cert",
                    "key",
                    "server_cert",
                    "server_key",
                    "agent_cert",
                    "agent_key",
                ];
                let part = args
                    .get("part")
                    .and_then(Value::as_str)
                    .filter(|p| PARTS.contains(p))
                    .ok_or_else(|| {
                        tera::Error::msg(format!("consul_tls() needs part= one of {PARTS:?}"))
                    })?;
                if super::secrets::is_key_part(part) && mode == SecretMode::Masked {
                    return Ok(Value::String(MASK.to_string()));
                }
                tls_secrets
                    .consul_tls_pem(part)
                    .map(Value::String)
                    .map_err(|e| tera::Error::msg(e.to_string()))
            },
        );
        // `{{ path | shquote }}`: a value placed in a shell command, quoted for /bin/sh.
        tera.register_filter(
            "shquote",
            |v: &Value, _: &HashMap<String, Value>| -> tera::Result<Value> {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Ok(Value::String(crate::transport::remote_path(&s)))
            },
        );
        Renderer {
            tera,
            project,
            loaded: HashMap::new(),
            inline: HashMap::new(),
            consul_token_set,
        }
    }

    pub fn consul_token_set(&self) -> bool {
        self.consul_token_set
    }

    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The bytes of `templates/<name>` as they are (the `copy` module).
    pub fn read_raw(&self, name: &str) -> Result<Vec<u8>, TemplateError> {
        self.project
            .read(&format!("templates/{name}"))
            .map(|s| s.bytes)
            .map_err(|e| TemplateError {
                origin: name.to_string(),
                message: e.to_string(),
            })
    }

    /// Parse a template file once (syntax errors come out here, before any host is touched).
    pub fn load(&mut self, name: &str) -> Result<(), TemplateError> {
        if self.loaded.contains_key(name) {
            return Ok(());
        }
        let src = self
            .project
            .read(&format!("templates/{name}"))
            .map_err(|e| TemplateError {
                origin: name.to_string(),
                message: e.to_string(),
            })?;
        let path = src.path();
        let text = src.text().map_err(|e| TemplateError {
            origin: path.display().to_string(),
            message: format!("cannot read template: {e}"),
        })?;
        self.tera.add_raw_template(name, &text).map_err(|e| {
            // `path:51:1: expected tag …` — the position joins the file name.
            let m = tera_message(&e);
            let m = m
                .split_once(&format!("'{name}': "))
                .map(|(_, rest)| rest.to_string())
                .unwrap_or(m);
            TemplateError {
                origin: path.display().to_string(),
                message: m,
            }
        })?;
        self.loaded.insert(name.to_string(), (text, path));
        Ok(())
    }

    /// Whether template `name` mentions `word` (loading it if needed; unreadable → true, the
    /// error surfaces when it is rendered).
    pub fn mentions(&mut self, name: &str, word: &str) -> bool {
        if self.load(name).is_err() {
            return true;
        }
        self.loaded.get(name).is_none_or(|(t, _)| t.contains(word))
    }

    /// Render a loaded template file for one host.
    pub fn render_file(&self, name: &str, ctx: &tera::Context) -> Result<String, TemplateError> {
        self.tera.render(name, ctx).map_err(|e| TemplateError {
            origin: self
                .loaded
                .get(name)
                .map(|(_, p)| p.display().to_string())
                .unwrap_or_else(|| name.to_string()),
            message: tera_message(&e),
        })
    }

    /// Render an inline string (task argument); parsed once, rendered per host.
    pub fn render_str(
        &mut self,
        text: &str,
        ctx: &tera::Context,
        origin: &str,
    ) -> Result<String, TemplateError> {
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(text.to_string());
        }
        let err = |e: tera::Error| TemplateError {
            origin: origin.to_string(),
            message: tera_message(&e),
        };
        let name = match self.inline.get(text) {
            Some(n) => n.clone(),
            None => {
                let n = format!("__arg{}", self.inline.len());
                self.tera.add_raw_template(&n, text).map_err(err)?;
                self.inline.insert(text.to_string(), n.clone());
                n
            }
        };
        self.tera.render(&name, ctx).map_err(err)
    }

    /// Evaluate a `when:` expression (a tera expression such as `consul_layout == 'single'`).
    pub fn eval_when(
        &mut self,
        expr: &str,
        ctx: &tera::Context,
        origin: &str,
    ) -> Result<bool, TemplateError> {
        let expr = expr.trim();
        let expr = expr
            .strip_prefix("{{")
            .and_then(|e| e.strip_suffix("}}"))
            .unwrap_or(expr);
        let out = self.render_str(
            &format!("{{% if {expr} %}}true{{% else %}}false{{% endif %}}"),
            ctx,
            origin,
        )?;
        Ok(out == "true")
    }

    /// Render every string inside a JSON value (task arguments).
    pub fn render_value(
        &mut self,
        v: &Value,
        ctx: &tera::Context,
        origin: &str,
    ) -> Result<Value, TemplateError> {
        Ok(match v {
            Value::String(s) => Value::String(self.render_str(s, ctx, origin)?),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.render_value(x, ctx, origin))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), self.render_value(x, ctx, origin)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
}

/// Lowercase, `[a-z0-9-]` only: group names in URLs, receiver names, secret names.
pub fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// The parts of the context every host shares, computed once per run.
pub struct SharedContext {
    base: Value,
}

impl SharedContext {
    /// `consul_token_set`: the run has a Consul token (`Renderer::consul_token_set`).
    pub fn new(inv: &Inventory, consul_token_set: bool) -> SharedContext {
        let groups: Vec<Value> = inv
            .groups
            .iter()
            .map(|g| {
                let hosts: Vec<Value> = inv
                    .fleet()
                    .filter(|h| h.group == g.name)
                    .map(|h| json!({"name": h.name, "ip": h.ip.to_string()}))
                    .collect();
                json!({"name": g.name, "slug": slug(&g.name), "hosts": hosts})
            })
            .collect();
        let monitoring: Vec<Value> = inv
            .monitoring()
            .map(|h| json!({"name": h.name, "ip": h.ip.to_string(), "datacenter": inv.datacenter_of(h)}))
            .collect();
        let agents: Vec<Value> = inv.consul.agents.iter().map(|u| agent_json(u)).collect();
        let o = &inv.consul.options;
        SharedContext {
            base: json!({
                "fleet_groups": groups,
                "monitoring_hosts": monitoring,
                "topology": inv.topology().to_json(),
                "consul": {
                    "agents": agents,
                    "datacenter": inv.consul.datacenter,
                    "token_set": consul_token_set,
                    // The resolved TLS settings (`settings::Consul::apply_to`): which files
                    // are deployed for Prometheus' `tls_config`.
                    "tls": {
                        "ca": o.ca_file.is_some() || o.ca_path.is_some(),
                        "cert": o.client_cert.is_some() && o.client_key.is_some(),
                        "server_name": o.tls_server_name,
                        "insecure_skip_verify": o.ssl_verify == Some(false),
                        // The cluster stack's own certificates (`consul_tls: true`).
                        "server_cert": o.server_cert.is_some() && o.server_key.is_some(),
                        "agent_cert": o.agent_cert.is_some() && o.agent_key.is_some(),
                    },
                    "deregister_critical_service_after": o.deregister_critical_service_after,
                },
            }),
        }
    }

    /// The full context for one host. `fleet_groups` lists every fleet host, so it is only
    /// copied into contexts whose play uses it (else planning would be O(hosts²)).
    pub fn for_host(
        &self,
        inv: &Inventory,
        defaults: &Vars,
        host: &Host,
        with_fleet: bool,
    ) -> tera::Context {
        let mut vars = defaults.clone();
        vars.extend(inv.host_vars(host));
        if let Value::Object(base) = &self.base {
            for (k, v) in base {
                if k == "fleet_groups" && !with_fleet {
                    continue;
                }
                vars.insert(k.clone(), v.clone());
            }
        }
        vars.insert(
            "host".into(),
            json!({
                "name": host.name,
                "ip": host.ip.to_string(),
                "group": host.group,
                "group_slug": slug(&host.group),
                "groups": host.groups,
                "datacenter": inv.datacenter_of(host),
                "dc_index": dc_index(inv, host),
            }),
        );
        tera::Context::from_value(Value::Object(vars)).unwrap_or_default()
    }
}

/// 1-based position of a monitoring host among its datacenter's monitoring hosts (the Consul
/// layouts place servers by it); 0 for fleet hosts.
fn dc_index(inv: &Inventory, host: &Host) -> usize {
    if !host.is_monitoring() {
        return 0;
    }
    let dc = inv.datacenter_of(host);
    inv.monitoring()
        .filter(|h| inv.datacenter_of(h) == dc)
        .position(|h| h.name == host.name)
        .map_or(0, |i| i + 1)
}

fn agent_json(url: &str) -> Value {
    // The inventory holds parsed, normalized agent URLs; parsed again with the same parser.
    match crate::inventory::AgentUrl::parse(url) {
        Ok(a) => json!({
            "url": a.url(), "scheme": a.scheme, "address": a.address(), "host": a.host, "port": a.port
        }),
        Err(_) => json!({"url": url}),
    }
}
