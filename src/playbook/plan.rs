//! Plan: plays × selected hosts → a concrete list of actions per host, with every template
//! and argument rendered. Nothing here touches the network, so every input error (bad
//! argument, template syntax, undefined variable, missing secret) is found before any host is.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::PlanError;
use super::load::{Play, Playbook, TaskDef};
use super::template::{Renderer, SharedContext};
use crate::inventory::{Host, Inventory, Limit, SourcePos, Vars};
use crate::modules::{
    Action, Args, ModuleKind,
    command::CommandAction,
    compose::ComposeAction,
    consul,
    file::{FileAction, parse_mode},
    http::HttpAction,
    metrics_check::MetricsCheck,
};

pub use crate::inventory::Serial;

/// A health gate after a stage: every target the stage registered must be UP in Prometheus
/// for `scrapes` consecutive scrapes, with no alert firing for its instances (`no_alerts`),
/// within `timeout`. The defaults suit the exporters play: two scrapes prove Prometheus
/// scrapes the new target repeatedly, five minutes cover discovery and a slow first start.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthGate {
    pub scrapes: u32,
    pub no_alerts: bool,
    pub timeout: Duration,
}

impl HealthGate {
    pub const DEFAULT_SCRAPES: u32 = 2;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// A stage's `gate:` with the defaults filled in.
    pub fn from_spec(g: &crate::inventory::GateSpec) -> HealthGate {
        HealthGate {
            scrapes: g.scrapes.unwrap_or(Self::DEFAULT_SCRAPES),
            no_alerts: g.no_alerts.unwrap_or(true),
            timeout: g
                .timeout
                .as_deref()
                .and_then(crate::base::clock::parse_duration)
                .unwrap_or(Self::DEFAULT_TIMEOUT),
        }
    }
}

/// One task, resolved for one host. `action: None` means skipped by `when`.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub module: ModuleKind,
    pub pos: SourcePos,
    pub action: Option<Action>,
    pub notify: Vec<String>,
}

/// Everything one host will do in a play.
#[derive(Debug, Clone)]
pub struct HostPlan {
    pub host: Host,
    pub steps: Vec<Step>,
    pub handlers: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct PlannedPlay {
    pub name: String,
    /// The rollout stage this play is (staged plays are split into one play per stage).
    pub stage: Option<String>,
    pub serial: Option<Serial>,
    pub max_fail_percentage: Option<f64>,
    /// A canary stage (`max_fail_percentage` defaults to 0 there, see `StageSpec`).
    pub canary: bool,
    /// Health gate after the stage.
    pub gate: Option<HealthGate>,
    pub hosts: Vec<HostPlan>,
}

impl PlannedPlay {
    /// This play turned into a rollback of `files` (host → remote files to restore): each
    /// step that wrote one of them restores it from `.prev` instead, steps writing other
    /// files are left out (they were not changed), every other step runs as in a deploy
    /// (compose up for the restored files, checks, registration).
    pub fn rollback(&self, files: &BTreeMap<String, Vec<String>>) -> PlannedPlay {
        let restore = |steps: &[Step], files: &[String]| -> Vec<Step> {
            steps
                .iter()
                .filter_map(|s| {
                    let Some(Action::File(f)) = &s.action else {
                        return Some(s.clone());
                    };
                    files.contains(&f.dest).then(|| Step {
                        action: Some(Action::Restore(crate::modules::restore::RestoreAction {
                            dest: f.dest.clone(),
                            mode: f.mode,
                            owner: f.owner.clone(),
                        })),
                        ..s.clone()
                    })
                })
                .collect()
        };
        let hosts = self
            .hosts
            .iter()
            .filter_map(|hp| {
                let files = files.get(&hp.host.name)?;
                Some(HostPlan {
                    host: hp.host.clone(),
                    steps: restore(&hp.steps, files),
                    handlers: restore(&hp.handlers, files),
                })
            })
            .collect();
        PlannedPlay {
            name: format!("rollback of {}", self.name),
            gate: None,
            hosts,
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub plays: Vec<PlannedPlay>,
}

impl Plan {
    /// Every host that appears in any play, in first-appearance order.
    pub fn hosts(&self) -> Vec<&Host> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for p in &self.plays {
            for h in &p.hosts {
                if seen.insert(h.host.name.as_str()) {
                    out.push(&h.host);
                }
            }
        }
        out
    }
}

/// Hosts of the inventory a play's `hosts:` selects (`fleet` = every non-monitoring host).
pub fn play_hosts<'a>(inv: &'a Inventory, patterns: &[String]) -> Result<Vec<&'a Host>, String> {
    let mut fleet_all = false;
    let mut rest = Vec::new();
    for p in patterns {
        if p == "fleet" {
            fleet_all = true;
        } else {
            rest.push(p.clone());
        }
    }
    let limit = if rest.is_empty() {
        None
    } else {
        Some(Limit::parse(&rest.join(":")).map_err(|e| e.to_string())?)
    };
    Ok(inv
        .hosts
        .iter()
        .filter(|h| {
            (fleet_all && !h.is_monitoring()) || limit.as_ref().is_some_and(|l| l.matches(h))
        })
        .collect())
}

/// Planner settings from the command line.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Skip the stages before this one (resume a halted rollout).
    pub from_stage: Option<String>,
}

/// One stage's share of a staged play.
struct StageHosts<'a> {
    name: String,
    serial: Option<Serial>,
    max_fail_percentage: Option<f64>,
    canary: bool,
    gate: Option<HealthGate>,
    hosts: Vec<&'a Host>,
}

/// One stage's hosts of a staged play, in stage order. Hosts matched by no stage form a last
/// stage `rest`; a host is in the first stage that matches it.
fn split_stages<'a>(inv: &Inventory, hosts: &[&'a Host]) -> Result<Vec<StageHosts<'a>>, String> {
    let mut out = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for st in &inv.stages {
        let limit = Limit::parse(&st.hosts.join(":")).map_err(|e| e.to_string())?;
        let members: Vec<&Host> = hosts
            .iter()
            .copied()
            .filter(|h| !taken.contains(h.name.as_str()) && limit.matches(h))
            .collect();
        for h in &members {
            taken.insert(h.name.as_str());
        }
        out.push(StageHosts {
            name: st.name.clone(),
            serial: st.serial,
            max_fail_percentage: st.effective_max_fail_percentage(),
            canary: st.is_canary(),
            gate: st.gate.as_ref().map(HealthGate::from_spec),
            hosts: members,
        });
    }
    let rest: Vec<&Host> = hosts
        .iter()
        .copied()
        .filter(|h| !taken.contains(h.name.as_str()))
        .collect();
    if !rest.is_empty() || out.is_empty() {
        let name = if inv.stages.iter().any(|s| s.name == "rest") {
            "rest (unstaged)".to_string()
        } else {
            "rest".to_string()
        };
        out.push(StageHosts {
            name,
            serial: None,
            max_fail_percentage: None,
            canary: false,
            gate: None,
            hosts: rest,
        });
    }
    Ok(out)
}

/// Build the plan for `playbooks` on the `selected` hosts (after --limit).
pub fn plan(
    inv: &Inventory,
    selected: &[&Host],
    playbooks: &[Playbook],
    renderer: &mut Renderer,
    defaults: &Vars,
    opts: &PlanOptions,
) -> Result<Plan, PlanError> {
    let shared = SharedContext::new(inv, renderer.consul_token_set());
    let mut plan = Plan::default();
    let mut copies: BTreeMap<String, Bytes> = BTreeMap::new();
    for pb in playbooks {
        for play in &pb.plays {
            let serial = play
                .serial
                .as_deref()
                .map(Serial::parse)
                .transpose()
                .map_err(|m| PlanError::Task {
                    pos: play.pos.clone(),
                    message: m,
                    help: None,
                })?;
            let hosts = play_hosts(inv, &play.hosts).map_err(|m| PlanError::Task {
                pos: play.pos.clone(),
                message: format!("hosts: {m}"),
                help: None,
            })?;
            let hosts: Vec<&Host> = hosts
                .into_iter()
                .filter(|h| selected.iter().any(|s| s.name == h.name))
                .collect();
            let with_fleet = uses_fleet_groups(play, renderer);
            let mut planned = Vec::with_capacity(hosts.len());
            for &host in &hosts {
                let mut ctx = shared.for_host(inv, defaults, host, with_fleet);
                if !play.vars.is_empty() {
                    // Play vars override built-in defaults; the inventory (and -e) wins.
                    let inventory_vars = inv.host_vars(host);
                    for (k, v) in &play.vars {
                        if !inventory_vars.contains_key(k) {
                            ctx.insert(k, v);
                        }
                    }
                }
                let mut steps = play
                    .tasks
                    .iter()
                    .map(|t| step(t, host, &ctx, renderer, &mut copies))
                    .collect::<Result<Vec<_>, _>>()?;
                fill_compose_services(&mut steps);
                let handlers = play
                    .handlers
                    .iter()
                    .map(|t| step(t, host, &ctx, renderer, &mut copies))
                    .collect::<Result<Vec<_>, _>>()?;
                planned.push(HostPlan {
                    host: host.clone(),
                    steps,
                    handlers,
                });
            }
            if !play.staged {
                plan.plays.push(PlannedPlay {
                    name: play.name.clone(),
                    stage: None,
                    serial,
                    max_fail_percentage: play.max_fail_percentage,
                    canary: false,
                    gate: None,
                    hosts: planned,
                });
                continue;
            }
            let stages = split_stages(inv, &hosts).map_err(|m| PlanError::Task {
                pos: play.pos.clone(),
                message: format!("stages: {m}"),
                help: None,
            })?;
            let mut by_name: BTreeMap<String, HostPlan> = planned
                .into_iter()
                .map(|hp| (hp.host.name.clone(), hp))
                .collect();
            for StageHosts {
                name,
                serial: st_serial,
                max_fail_percentage: st_max,
                canary,
                gate,
                hosts: members,
            } in stages
            {
                let serial = st_serial.or(serial);
                let hosts: Vec<HostPlan> = members
                    .iter()
                    .filter_map(|h| by_name.remove(&h.name))
                    .collect();
                plan.plays.push(PlannedPlay {
                    name: format!("{} [stage {name}]", play.name),
                    stage: Some(name),
                    serial,
                    max_fail_percentage: st_max.or(play.max_fail_percentage),
                    canary,
                    gate,
                    hosts,
                });
            }
        }
    }
    if let Some(from) = &opts.from_stage {
        let Some(first) = plan
            .plays
            .iter()
            .position(|p| p.stage.as_deref() == Some(from.as_str()))
        else {
            let names: Vec<String> = plan.plays.iter().filter_map(|p| p.stage.clone()).collect();
            return Err(PlanError::Task {
                pos: SourcePos::default(),
                message: format!("--from-stage `{from}`: no such stage"),
                help: Some(if names.is_empty() {
                    "no play is staged (`staged: true`) or the inventory has no `stages:`".into()
                } else {
                    format!("stages are: {}", names.join(", "))
                }),
            });
        };
        // Skip earlier stages of staged plays; unstaged plays before them still run (they
        // are idempotent, and later stages may depend on them).
        let mut i = 0;
        plan.plays.retain(|p| {
            let keep = i >= first || p.stage.is_none();
            i += 1;
            keep
        });
    }
    Ok(plan)
}

fn step(
    t: &TaskDef,
    host: &Host,
    ctx: &tera::Context,
    renderer: &mut Renderer,
    copies: &mut BTreeMap<String, Bytes>,
) -> Result<Step, PlanError> {
    let task_err = |message: String| PlanError::Task {
        pos: t.pos.clone(),
        message: format!("task `{}` for host {}: {message}", t.name, host.name),
        help: None,
    };
    let origin = t.pos.to_string();
    if let Some(w) = &t.when
        && !renderer
            .eval_when(w, ctx, &origin)
            .map_err(|e| task_err(format!("when: {}", e.message)))?
    {
        return Ok(Step {
            name: t.name.clone(),
            module: t.module,
            pos: t.pos.clone(),
            action: None,
            notify: t.notify.clone(),
        });
    }
    let args = renderer
        .render_value(&t.args, ctx, &origin)
        .map_err(|e| task_err(e.message))?;
    let action = build(t.module, &args, host, ctx, renderer, copies).map_err(task_err)?;
    Ok(Step {
        name: t.name.clone(),
        module: t.module,
        pos: t.pos.clone(),
        action: Some(action),
        notify: t.notify.clone(),
    })
}

/// Whether any task of the play (arguments, conditions, templates) uses `fleet_groups`.
fn uses_fleet_groups(play: &Play, renderer: &mut Renderer) -> bool {
    const WORD: &str = "fleet_groups";
    play.tasks.iter().chain(&play.handlers).any(|t| {
        let in_args = t.args.to_string().contains(WORD);
        let in_when = t.when.as_deref().is_some_and(|w| w.contains(WORD));
        let in_template = t.module == ModuleKind::Template
            && match t.args.get("src").and_then(Value::as_str) {
                Some(src) if !src.contains("{{") => renderer.mentions(src, WORD),
                _ => true,
            };
        in_args || in_when || in_template
    })
}

/// Give each `compose` step the service names of a compose file rendered earlier in the
/// same play, so the host need not be asked for them.
fn fill_compose_services(steps: &mut [Step]) {
    let mut files: BTreeMap<String, Bytes> = BTreeMap::new();
    for s in steps.iter_mut() {
        match &mut s.action {
            Some(Action::File(f)) => {
                files.insert(f.dest.clone(), f.content.clone());
            }
            Some(Action::Compose(c)) => {
                let dir = c.project_dir.trim_end_matches('/').to_string();
                let path = format!("{dir}/{}", c.file);
                c.watch = vec![path.clone(), format!("{dir}/.env")];
                if let Some((services, env_files)) =
                    files.get(&path).and_then(|c| compose_services(c))
                {
                    c.services = Some(services);
                    c.watch.extend(env_files.into_iter().map(|f| {
                        let f = f.trim_start_matches("./");
                        if f.starts_with('/') {
                            f.to_string()
                        } else {
                            format!("{dir}/{f}")
                        }
                    }));
                }
            }
            _ => {}
        }
    }
}

/// Service names and `env_file:` entries of a compose file.
fn compose_services(content: &[u8]) -> Option<(Vec<String>, Vec<String>)> {
    let text = std::str::from_utf8(content).ok()?;
    let v: Value = serde_saphyr::from_str(text).ok()?;
    let services = v.get("services")?.as_object()?;
    let names: Vec<String> = services.keys().cloned().collect();
    let mut env_files = Vec::new();
    for svc in services.values() {
        match svc.get("env_file") {
            Some(Value::String(f)) => env_files.push(f.clone()),
            Some(Value::Array(a)) => {
                env_files.extend(a.iter().filter_map(|f| f.as_str().map(String::from)))
            }
            _ => {}
        }
    }
    (!names.is_empty()).then_some((names, env_files))
}

fn build(
    kind: ModuleKind,
    args: &Value,
    host: &Host,
    ctx: &tera::Context,
    renderer: &mut Renderer,
    copies: &mut BTreeMap<String, Bytes>,
) -> Result<Action, String> {
    let a = Args(args);
    let ip = host.ip.to_string();
    Ok(match kind {
        ModuleKind::Template | ModuleKind::Copy => {
            let src = a.str("src")?;
            let secret = a.bool("secret", false)?;
            let mut mode = parse_mode(&a.opt_str("mode")?.unwrap_or_else(|| "0644".into()))?;
            if secret {
                mode &= 0o700;
            }
            let content = if kind == ModuleKind::Template {
                renderer.load(&src).map_err(|e| e.to_string())?;
                Bytes::from(renderer.render_file(&src, ctx).map_err(|e| e.to_string())?)
            } else if let Some(c) = copies.get(&src) {
                c.clone()
            } else {
                let c = Bytes::from(renderer.read_raw(&src).map_err(|e| e.to_string())?);
                copies.insert(src.clone(), c.clone());
                c
            };
            let owner = a.opt_str("owner")?.filter(|o| !o.is_empty());
            if let Some(o) = &owner {
                let ok = o.split(':').count() <= 2
                    && o.split(':').all(|p| {
                        p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                    });
                if !ok {
                    return Err(format!(
                        "`owner` must be `user`, `user:group` or `:group` (names or ids), got {o:?}"
                    ));
                }
            }
            Action::File(FileAction {
                src,
                dest: a.str("dest")?,
                content,
                mode,
                secret,
                owner,
            })
        }
        ModuleKind::Command | ModuleKind::Shell => Action::Command(CommandAction {
            cmd: a.str("cmd")?,
            creates: a.opt_str("creates")?,
            chdir: a.opt_str("chdir")?,
            changed_if_output: a.opt_str("changed_if_output")?,
        }),
        ModuleKind::Compose => {
            let project_dir = a.str("project_dir")?;
            let file = a
                .opt_str("file")?
                .unwrap_or_else(|| "docker-compose.yml".into());
            let dir = project_dir.trim_end_matches('/');
            Action::Compose(ComposeAction {
                watch: vec![format!("{dir}/{file}"), format!("{dir}/.env")],
                project_dir: project_dir.clone(),
                file,
                command: a.opt_str("command")?.filter(|c| !c.trim().is_empty()),
                services: None,
            })
        }
        ModuleKind::MetricsCheck => {
            let port = port(&a, "port")?;
            let addr = a.opt_str("address")?.unwrap_or_else(|| ip.clone());
            let path = a.opt_str("path")?.unwrap_or_else(|| "/metrics".into());
            Action::MetricsCheck(MetricsCheck {
                url: format!("http://{}:{port}{path}", crate::base::addr::url_host(&addr)),
                expect: a.list("expect")?,
                min_samples: a.opt_u64("min_samples")?.unwrap_or(1) as usize,
                timeout: Duration::from_secs(a.opt_u64("timeout")?.unwrap_or(60)),
                max_bytes: a
                    .opt_u64("max_bytes")?
                    .unwrap_or(crate::modules::http::METRICS_BODY_CAP),
            })
        }
        ModuleKind::ConsulRegister => {
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
            let address = a.opt_str("address")?.unwrap_or_else(|| ip.clone());
            Action::ConsulRegister(consul::Register::new(consul::ServiceSpec {
                service: a.str("service")?,
                id: a.opt_str("id")?,
                hostname: host.name.clone(),
                group: host.group.clone(),
                address,
                port: port(&a, "port")?,
                check_path: a
                    .opt_str("check_path")?
                    .unwrap_or_else(|| "/metrics".into()),
                interval: a.opt_str("interval")?.unwrap_or_else(|| "5s".into()),
                meta,
                tags: a.list("tags")?,
            }))
        }
        ModuleKind::ConsulDeregister => {
            Action::ConsulDeregister(consul::Deregister { id: a.str("id")? })
        }
        ModuleKind::ConsulClusterCheck => Action::ConsulClusterCheck(consul::ClusterCheck {
            url: a.str("url")?,
            servers: a.opt_u64("servers")?.unwrap_or(3) as usize,
            timeout: Duration::from_secs(a.opt_u64("timeout")?.unwrap_or(120)),
        }),
        ModuleKind::PrometheusTargets => {
            Action::PrometheusTargets(crate::modules::prometheus::TargetsCheck {
                url: a.str("url")?,
                timeout: Duration::from_secs(a.opt_u64("timeout")?.unwrap_or(120)),
            })
        }
        ModuleKind::Http => {
            let method = a.opt_str("method")?.unwrap_or_else(|| "GET".into());
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("`method`: `{method}` is not an HTTP method"))?;
            let status = a
                .list("status")?
                .iter()
                .map(|s| {
                    s.parse::<u16>()
                        .map_err(|_| format!("`status`: `{s}` is not an HTTP status"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let body = match args.get("body") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            };
            let headers = match args.get("headers") {
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
                _ => vec![],
            };
            Action::Http(HttpAction {
                url: a.str("url")?,
                method,
                body,
                status: if status.is_empty() { vec![200] } else { status },
                timeout: Duration::from_secs(a.opt_u64("timeout")?.unwrap_or(10)),
                until: Duration::from_secs(a.opt_u64("until")?.unwrap_or(0)),
                headers,
            })
        }
    })
}

fn port(a: &Args<'_>, k: &str) -> Result<u16, String> {
    let p = a.u64(k)?;
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("`{k}` must be a TCP port (1-65535), got {p}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{host, step};
    use crate::modules::restore::RestoreAction;

    fn copy(dest: &str, content: &str) -> Step {
        let f = FileAction {
            src: "src".into(),
            dest: dest.into(),
            content: Bytes::from(content.to_string()),
            mode: 0o640,
            secret: false,
            owner: Some("prometheus".into()),
        };
        step(dest, ModuleKind::Copy, Action::File(f))
    }

    fn compose(dir: &str) -> Step {
        let c = ComposeAction {
            project_dir: dir.into(),
            file: "docker-compose.yml".into(),
            command: None,
            services: None,
            watch: Vec::new(),
        };
        step("up", ModuleKind::Compose, Action::Compose(c))
    }

    fn command(cmd: &str) -> Step {
        let c = CommandAction {
            cmd: cmd.into(),
            creates: None,
            chdir: None,
            changed_if_output: None,
        };
        step(cmd, ModuleKind::Command, Action::Command(c))
    }

    #[test]
    fn a_rollback_restores_only_what_changed_on_hosts_that_changed() {
        let steps = vec![
            copy("/opt/a.yml", "a"),
            copy("/opt/b.yml", "b"),
            command("reload"),
        ];
        let play = PlannedPlay {
            name: "exporters".into(),
            stage: None,
            serial: Some(Serial::Count(1)),
            max_fail_percentage: None,
            canary: false,
            gate: Some(HealthGate {
                scrapes: 2,
                no_alerts: true,
                timeout: Duration::from_secs(1),
            }),
            hosts: ["h1", "h2"]
                .iter()
                .map(|h| HostPlan {
                    host: host(h),
                    steps: steps.clone(),
                    handlers: Vec::new(),
                })
                .collect(),
        };
        let files = BTreeMap::from([("h1".to_string(), vec!["/opt/a.yml".to_string()])]);
        let back = play.rollback(&files);
        assert_eq!(back.name, "rollback of exporters");
        assert!(back.gate.is_none(), "a rollback is not gated");
        assert_eq!(
            back.serial,
            Some(Serial::Count(1)),
            "nor faster than the deploy"
        );
        let hosts: Vec<&str> = back.hosts.iter().map(|h| h.host.name.as_str()).collect();
        assert_eq!(hosts, ["h1"]);
        let actions: Vec<String> = back.hosts[0]
            .steps
            .iter()
            .map(|s| match &s.action {
                Some(Action::Restore(RestoreAction { dest, mode, owner })) => {
                    format!("restore {dest} {mode:o} {owner:?}")
                }
                Some(Action::File(f)) => format!("write {}", f.dest),
                _ => s.name.clone(),
            })
            .collect();
        assert_eq!(
            actions,
            [
                "restore /opt/a.yml 640 Some(\"prometheus\")".to_string(),
                "reload".to_string()
            ]
        );
    }

    #[test]
    fn compose_watches_its_file_env_and_env_files_and_knows_its_services() {
        let file = "services:\n  node:\n    image: x\n    env_file: [./node.env, /etc/shared.env]\n  cadvisor:\n    image: y\n    env_file: cadvisor.env\n";
        let mut steps = vec![
            copy("/opt/exp/docker-compose.yml", file),
            compose("/opt/exp/"),
        ];
        fill_compose_services(&mut steps);
        let Some(Action::Compose(c)) = &steps[1].action else {
            panic!("not compose");
        };
        // Order is of no consequence (a membership test); compose's map is sorted by name.
        let mut watch = c.watch.clone();
        watch.sort();
        assert_eq!(
            watch,
            [
                "/etc/shared.env",
                "/opt/exp/.env",
                "/opt/exp/cadvisor.env",
                "/opt/exp/docker-compose.yml",
                "/opt/exp/node.env",
            ]
        );
        let mut services = c.services.clone().expect("services");
        services.sort();
        assert_eq!(services, ["cadvisor", "node"]);
    }

    #[test]
    fn compose_whose_file_is_not_planned_asks_compose_for_its_services() {
        let mut steps = vec![compose("/opt/exp")];
        fill_compose_services(&mut steps);
        let Some(Action::Compose(c)) = &steps[0].action else {
            panic!("not compose");
        };
        assert_eq!(c.services, None);
        assert_eq!(c.watch, ["/opt/exp/docker-compose.yml", "/opt/exp/.env"]);
    }
}
