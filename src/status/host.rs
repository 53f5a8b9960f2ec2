//! Facts of one fleet host, compared with what the exporters plan would do there now.
//!
//! The wanted state comes from the plan (the same rendered actions `deploy` runs): files with
//! their content, the compose project and its services, metrics endpoints, Consul service
//! definitions. The host is asked once over its one SSH session (one script: file hashes and
//! `compose ps`); endpoints and Consul are asked from the jump host. Nothing is written.

use std::sync::Arc;

use super::targets::{self, PromTargets};
use super::{Check, Checks, HostRow, State};
use crate::executor::{Connector, Scheduler};
use crate::inventory::Host;
use crate::modules::Action;
use crate::modules::compose::{ComposeAction, ComposeRun};
use crate::modules::consul::{ConsulClient, Registration, ServiceDef};
use crate::modules::file::sha256_hex;
use crate::modules::metrics_check::MetricsCheck;
use crate::playbook::Step;
use crate::transport::{ExecOutput, Script, TransportError};

/// What promfleet would put on one host now.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// Remote path → SHA-256 of the rendered content.
    pub files: Vec<(String, String)>,
    pub compose: Option<ComposeAction>,
    /// Column name (the service registered on that port, else `:port`) → endpoint check.
    pub metrics: Vec<(String, MetricsCheck)>,
    pub registrations: Vec<ServiceDef>,
}

impl Wanted {
    /// Collect the comparable actions of a host's planned steps (every play, in order).
    pub fn from_steps<'a>(steps: impl IntoIterator<Item = &'a Step>) -> Wanted {
        let mut w = Wanted::default();
        let mut metrics = Vec::new();
        for s in steps {
            match &s.action {
                Some(Action::File(f)) => w.files.push((f.dest.clone(), sha256_hex(&f.content))),
                Some(Action::Compose(c)) => w.compose = Some(c.clone()),
                Some(Action::MetricsCheck(m)) => metrics.push(m.clone()),
                Some(Action::ConsulRegister(r)) => w.registrations.push(r.def.clone()),
                _ => {}
            }
        }
        for m in metrics {
            let port = reqwest::Url::parse(&m.url)
                .ok()
                .and_then(|u| u.port_or_known_default());
            let name = w
                .registrations
                .iter()
                .find(|d| Some(d.port) == port)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| format!(":{}", port.unwrap_or_default()));
            w.metrics.push((name, m));
        }
        w
    }

    /// One POSIX sh script printing `__file <i> <sha256|missing>` per file, then the output
    /// of deploy's own compose script (observe only) and `__compose_exit <code>`. Always
    /// exits 0.
    fn script(&self) -> String {
        let mut s = Script::new()
            .positional_paths(self.files.iter().map(|(dest, _)| dest.as_str()))
            .fragment(FILES_SCRIPT);
        if let Some(c) = &self.compose {
            s = s
                .subshell(c.script(ComposeRun::Observe))
                .fragment(r#"echo "__compose_exit $?""#);
        }
        s.fragment("exit 0").build()
    }
}

/// `__file <i> <sha256|missing>` for each path in `"$@"`.
const FILES_SCRIPT: &str = r#"i=0
for p in "$@"; do
  if [ -f "$p" ]; then echo "__file $i $(sha256sum < "$p" | cut -d' ' -f1)"; else echo "__file $i missing"; fi
  i=$((i + 1))
done"#;

/// Shared read-only clients for gathering every host's facts.
pub struct Gatherer {
    pub connector: Arc<Connector>,
    pub http: reqwest::Client,
    pub consul: Arc<ConsulClient>,
    pub proms: Arc<Vec<PromTargets>>,
}

impl Gatherer {
    /// Gather every host through `sched` (its forks, its Ctrl-C); rows in the order given,
    /// without the hosts a cancellation kept from starting or an abort abandoned.
    pub async fn gather_all(
        self: &Arc<Self>,
        hosts: Vec<(Host, Wanted)>,
        sched: &Scheduler,
    ) -> Vec<HostRow> {
        let items = hosts
            .into_iter()
            .map(|(h, w)| (h.name.clone(), (h, w)))
            .collect();
        let (me, s) = (self.clone(), sched.clone());
        sched
            .run(items, move |(host, want)| {
                let (me, s) = (me.clone(), s.clone());
                // A second Ctrl-C abandons the hosts still being read (nothing is written).
                async move { s.or_abort(me.gather(&host, &want)).await }
            })
            .in_order()
            .await
            .into_iter()
            .flatten()
            .flatten()
            .collect()
    }

    /// One host's row.
    pub async fn gather(&self, host: &Host, want: &Wanted) -> HostRow {
        let mut checks = Checks::default();
        let (ssh, remote) = self.remote(host, want).await;
        checks.push("ssh", ssh);
        checks.push("file", remote.file);
        checks.push("containers", remote.containers);
        for (name, m) in &want.metrics {
            checks.push(name.clone(), metrics(&self.http, m).await);
        }
        checks.push("consul", self.consul_check(&want.registrations).await);
        let addrs: Vec<(String, String)> = want
            .registrations
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    crate::base::addr::host_port(&d.address, d.port),
                )
            })
            .collect();
        checks.push("targets", targets::check(&self.proms, &addrs));
        HostRow {
            host: host.name.clone(),
            group: host.group.clone(),
            ip: host.ip.to_string(),
            state: checks.worst(),
            checks,
        }
    }

    /// SSH reachability, then the file and containers facts from one remote script.
    async fn remote(&self, host: &Host, want: &Wanted) -> (Check, Remote) {
        let unknown = |why: &str| Remote {
            file: Check::unknown(why),
            containers: Check::unknown(why),
        };
        let session = match self.connector.session(host).await {
            Ok((s, _)) => s,
            Err(e) => {
                return (
                    Check::new(State::Down, "unreachable", e.to_string()),
                    unknown("not checked: host unreachable"),
                );
            }
        };
        let out = match session.exec(&want.script(), None).await {
            Ok(o) if o.success() => o,
            Ok(o) => {
                return (
                    Check::new(
                        State::Down,
                        "error",
                        format!("status script: {}", o.short_error()),
                    ),
                    unknown("not checked: status script failed"),
                );
            }
            // The host answered but the script outlived --command-timeout: a failure of the
            // script (issue 12), not a lost connection.
            Err(e @ TransportError::CommandTimeout { after, .. }) => {
                return (
                    Check::new(
                        State::Down,
                        format!("timed out after {}s", after.as_secs()),
                        e.to_string(),
                    ),
                    unknown("not checked: status script timed out"),
                );
            }
            Err(e) => {
                return (
                    Check::new(State::Down, "lost", e.to_string()),
                    unknown("not checked: connection lost"),
                );
            }
        };
        let text = out.stdout_str();
        (Check::ok("ok"), Remote::parse(want, &text, &out))
    }

    async fn consul_check(&self, defs: &[ServiceDef]) -> Check {
        if defs.is_empty() {
            return Check::unknown("nothing to register for this host");
        }
        if self.consul.agents().is_empty() {
            return Check::unknown("no Consul agents in the inventory");
        }
        let mut worst = State::Ok;
        let mut cells = Vec::new();
        let mut details = Vec::new();
        for d in defs {
            let (state, cell, detail) = match self.consul.compare(d).await {
                Registration::Ok { agent } => (State::Ok, "ok", format!("{} on {agent}", d.id)),
                Registration::Differs { agent, what } => (
                    State::Drift,
                    "differs",
                    format!("{} on {agent} differs: {}", d.id, what.join(", ")),
                ),
                Registration::Duplicate { agents } => (
                    State::Drift,
                    "duplicate",
                    format!(
                        "{} registered on {} agents: {}",
                        d.id,
                        agents.len(),
                        agents.join(", ")
                    ),
                ),
                Registration::Missing { unanswered } => (
                    State::Drift,
                    "missing",
                    if unanswered.is_empty() {
                        format!("{} not registered", d.id)
                    } else {
                        format!(
                            "{} not on the agents that answered ({} did not)",
                            d.id,
                            unanswered.join("; ")
                        )
                    },
                ),
                Registration::Unknown { errors } => (
                    State::Down,
                    "no agent",
                    format!("{}: no Consul agent answered ({})", d.id, errors.join("; ")),
                ),
            };
            worst = worst.max(state);
            if state != State::Ok {
                cells.push(format!("{cell}: {}", d.name));
                details.push(detail);
            }
        }
        if worst == State::Ok {
            return Check::ok(format!("ok {}/{}", defs.len(), defs.len()));
        }
        Check::new(worst, cells.join(", "), details.join("; "))
    }
}

/// The facts read over SSH.
struct Remote {
    file: Check,
    containers: Check,
}

impl Remote {
    fn parse(want: &Wanted, text: &str, out: &ExecOutput) -> Remote {
        let mut differs = Vec::new();
        let mut missing = Vec::new();
        for (i, (dest, sha)) in want.files.iter().enumerate() {
            let got = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("__file {i} ")))
                .map(str::trim);
            match got {
                Some(h) if h == sha => {}
                Some("missing") | None => missing.push(dest.clone()),
                Some(_) => differs.push(dest.clone()),
            }
        }
        let file = if want.files.is_empty() {
            Check::unknown("no files in the plan")
        } else if !missing.is_empty() || !differs.is_empty() {
            let mut detail = Vec::new();
            if !differs.is_empty() {
                detail.push(format!(
                    "differs from the current rendering: {}",
                    differs.join(", ")
                ));
            }
            if !missing.is_empty() {
                detail.push(format!("missing: {}", missing.join(", ")));
            }
            let cell = if differs.is_empty() {
                "missing"
            } else {
                "differs"
            };
            Check::new(State::Drift, cell, detail.join("; "))
        } else {
            Check::ok("ok")
        };
        let containers = match &want.compose {
            None => Check::unknown("no compose project in the plan"),
            Some(c) => {
                let exit = text
                    .lines()
                    .find_map(|l| l.strip_prefix("__compose_exit "))
                    .and_then(|c| c.trim().parse::<u32>().ok());
                if exit == Some(10) {
                    Check::new(State::Drift, "not deployed", c.failure(exit, "", ""))
                } else if exit != Some(0) {
                    let stderr = out.stderr_str();
                    let short = ExecOutput {
                        stdout: Default::default(),
                        stderr: out.stderr.clone(),
                        status: exit,
                    }
                    .short_error();
                    let why = match exit {
                        Some(11) => c.failure(exit, &short, &stderr),
                        _ => format!("compose failed ({short})"),
                    };
                    Check::new(State::Down, "error", why)
                } else {
                    let list = |p: &str| -> Vec<String> {
                        text.lines()
                            .find_map(|l| l.strip_prefix(p))
                            .unwrap_or_default()
                            .split_whitespace()
                            .map(String::from)
                            .collect()
                    };
                    let expected = list("__expected");
                    let running = list("__running");
                    let stopped: Vec<&String> =
                        expected.iter().filter(|s| !running.contains(s)).collect();
                    let up = expected.len() - stopped.len();
                    if expected.is_empty() {
                        Check::new(State::Drift, "no services", "compose lists no services")
                    } else if stopped.is_empty() {
                        Check::ok(format!("{up}/{} running", expected.len()))
                    } else {
                        Check::new(
                            State::Drift,
                            format!("{up}/{} running", expected.len()),
                            format!(
                                "not running: {}",
                                stopped
                                    .iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    }
                }
            }
        };
        Remote { file, containers }
    }
}

/// One endpoint, one GET: sample counts, or down with the reason.
async fn metrics(http: &reqwest::Client, m: &MetricsCheck) -> Check {
    match m.probe_once(http).await {
        Ok(detail) => {
            let cell = detail.split(" (").next().unwrap_or(&detail).to_string();
            Check::new(State::Ok, cell, format!("{}: {detail}", m.url))
        }
        Err(e) => Check::new(State::Down, "down", format!("{}: {e}", m.url)),
    }
}
