//! Plan: plays × selected hosts → a concrete list of actions per host, with every template
//! and argument rendered. Nothing here touches the network, so every input error (bad
//! argument, template syntax, undefined variable, missing secret) is found before any host is.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::PlanError;
use super::load::{Play, Playbook, TaskDef};
use super::template::{Renderer, SharedContext};
use crate::inventory::{Host, Inventory, Limit, SourcePos, Vars};
use crate::modules::{Action, ModuleKind, PlanCtx, Rollback};

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
                .filter_map(|s| match s.action.as_ref().map(|a| a.rollback(files)) {
                    None | Some(Rollback::Same) => Some(s.clone()),
                    Some(Rollback::Skip) => None,
                    Some(Rollback::Replace(action)) => Some(Step {
                        action: Some(action),
                        ..s.clone()
                    }),
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
                crate::modules::link(steps.iter_mut().filter_map(|s| s.action.as_mut()).collect());
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
    let mut cx = PlanCtx {
        host,
        vars: ctx,
        renderer,
        copies,
    };
    let action = t.module.module().plan(&args, &mut cx).map_err(task_err)?;
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
        let in_file = t.module.module().reads(&t.args, WORD, renderer);
        in_args || in_when || in_file
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{copy_step, file, host, step};
    use crate::modules::command::CommandAction;
    use crate::modules::file::FileAction;
    use crate::modules::restore::RestoreAction;

    fn copy(dest: &str, content: &str) -> Step {
        copy_step(FileAction {
            mode: 0o640,
            owner: Some("prometheus".into()),
            ..file(dest, content.as_bytes())
        })
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

    /// The planner end to end on the built-in exporters playbook and the example inventory:
    /// each task planned by its module through the registry, the compose step linked to the
    /// compose file rendered before it, `when: false` planning nothing.
    #[test]
    fn the_exporters_playbook_plans_every_task_through_its_module() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let inv = crate::inventory::load(&root.join("inventory/example.yml")).expect("inventory");
        let project = crate::project::Project::builtin_only();
        let book = crate::playbook::load(&project, std::path::Path::new("exporters.yml"))
            .expect("playbook");
        let defaults = crate::playbook::load_defaults(&project).expect("defaults");
        let mut renderer = Renderer::new(
            project,
            crate::playbook::Secrets::load(None, crate::report::Masker::default())
                .expect("secrets"),
            crate::playbook::SecretMode::Masked,
        );
        let ide = inv.host("ide-01").expect("ide-01");
        let plan = plan(
            &inv,
            &[ide],
            &[book],
            &mut renderer,
            &defaults,
            &PlanOptions::default(),
        )
        .expect("plan");
        let steps: Vec<&Step> = plan
            .plays
            .iter()
            .flat_map(|p| &p.hosts)
            .flat_map(|h| &h.steps)
            .collect();
        let kinds: Vec<&str> = steps.iter().map(|s| s.module.name()).collect();
        assert_eq!(
            kinds,
            [
                "template",
                "compose",
                "metrics_check",
                "metrics_check",
                "consul_register",
                "consul_register"
            ]
        );
        let Some(Action::File(f)) = &steps[0].action else {
            panic!("{:?}", steps[0]);
        };
        let Some(Action::Compose(c)) = &steps[1].action else {
            panic!("{:?}", steps[1]);
        };
        assert!(c.watch.contains(&f.dest), "{:?} / {}", c.watch, f.dest);
        let rendered: serde_json::Value =
            serde_saphyr::from_str(std::str::from_utf8(&f.content).expect("utf8")).expect("yaml");
        let defined: Vec<&String> = rendered["services"]
            .as_object()
            .expect("services")
            .keys()
            .collect();
        let mut services = c.services.clone().expect("services from the rendered file");
        services.sort();
        assert_eq!(services.iter().collect::<Vec<_>>(), defined);
        let Some(Action::MetricsCheck(m)) = &steps[2].action else {
            panic!("{:?}", steps[2]);
        };
        assert_eq!(m.url, "http://10.0.1.11:9100/metrics");
    }
}
