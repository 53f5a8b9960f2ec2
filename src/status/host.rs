//! Facts of one fleet host, compared with what the exporters plan would do there now.
//!
//! The wanted state comes from the plan (the same rendered actions `deploy` runs): files with
//! their content, the compose project and its services, metrics endpoints, Consul service
//! definitions. The host is asked through the same facts deploy and `--check` read
//! (`facts::files`, `facts::compose`), all in one round trip over its one SSH session;
//! endpoints and Consul are asked from the jump host. Nothing is written.

use std::sync::Arc;

use super::targets::{self, PromTargets};
use super::{Check, Checks, HostRow, State};
use crate::executor::{Connector, Scheduler};
use crate::facts::compose::{ComposeFact, ComposeState};
use crate::facts::files::{FileFact, FileState};
use crate::facts::{ErasedFact, FactError, Kept, Primed};
use crate::inventory::Host;
use crate::modules::Want;
use crate::modules::compose::ComposeAction;
use crate::modules::consul::{ConsulClient, Registration, ServiceDef};
use crate::modules::metrics_check::MetricsCheck;
use crate::playbook::Step;
use crate::transport::TransportError;

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
        for want in steps
            .into_iter()
            .filter_map(|s| s.action.as_ref())
            .flat_map(|a| a.wants())
        {
            match want {
                Want::File { dest, sha256 } => w.files.push((dest, sha256)),
                Want::Project(c) => w.compose = Some(c),
                Want::Endpoint(m) => metrics.push(m),
                Want::Service(def) => w.registrations.push(def),
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

    /// The host facts to ask: every file, then the compose project.
    fn facts(&self) -> (Vec<FileFact>, Option<ComposeFact>) {
        let files = self.files.iter().map(|(d, _)| FileFact::new(d)).collect();
        (files, self.compose.as_ref().map(ComposeAction::fact))
    }

    /// The same facts, for preflight to ask in its batch (`facts::Primed`).
    pub fn ask(&self) -> Vec<Box<dyn ErasedFact>> {
        let (files, compose) = self.facts();
        let mut out: Vec<Box<dyn ErasedFact>> = Vec::new();
        out.extend(
            files
                .into_iter()
                .map(|f| Box::new(f) as Box<dyn ErasedFact>),
        );
        out.extend(compose.map(|c| Box::new(c) as Box<dyn ErasedFact>));
        out
    }
}

/// Shared read-only clients for gathering every host's facts.
pub struct Gatherer {
    pub connector: Arc<Connector>,
    pub http: reqwest::Client,
    pub consul: Arc<ConsulClient>,
    pub proms: Arc<Vec<PromTargets>>,
    /// Hosts whose facts preflight already asked (with its own, one round trip per host).
    pub primed: Primed,
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
        let facts = Kept::facts_over(self.primed.take(&host.name), session);
        let (files, compose) = want.facts();
        let mut ask: Vec<&dyn ErasedFact> = files.iter().map(|f| f as &dyn ErasedFact).collect();
        ask.extend(compose.as_ref().map(|c| c as &dyn ErasedFact));
        match facts.prefetch(&ask).await {
            Ok(()) => {}
            // The host answered but the probe outlived --command-timeout: a failure of the
            // probe (issue 12), not a lost connection.
            Err(FactError::Transport(e @ TransportError::CommandTimeout { after, .. })) => {
                return (
                    Check::new(
                        State::Down,
                        format!("timed out after {}s", after.as_secs()),
                        e.to_string(),
                    ),
                    unknown("not checked: status script timed out"),
                );
            }
            Err(FactError::Transport(e)) => {
                return (
                    Check::new(State::Down, "lost", e.to_string()),
                    unknown("not checked: connection lost"),
                );
            }
            Err(e) => {
                return (
                    Check::new(State::Down, "error", format!("status script: {e}")),
                    unknown("not checked: status script failed"),
                );
            }
        }
        let files: Vec<Option<FileState>> = files.iter().map(|f| facts.peek(f)).collect();
        let compose = compose.as_ref().map(|c| (c, facts.peek(c)));
        (Check::ok("ok"), Remote::parse(want, &files, compose))
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
    fn parse(
        want: &Wanted,
        files: &[Option<FileState>],
        compose: Option<(&ComposeFact, Option<ComposeState>)>,
    ) -> Remote {
        let mut differs = Vec::new();
        let mut missing = Vec::new();
        for ((dest, sha), got) in want.files.iter().zip(files) {
            match got {
                Some(FileState::File(m)) if m.sha256 == *sha => {}
                Some(FileState::Missing | FileState::NotAFile) | None => missing.push(dest.clone()),
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
        let containers = match compose {
            None => Check::unknown("no compose project in the plan"),
            Some((_, None)) => Check::new(State::Down, "error", "compose: no answer"),
            Some((_, Some(ComposeState::Project(p)))) => {
                let stopped = p.missing();
                let up = p.expected.len() - stopped.len();
                if p.expected.is_empty() {
                    Check::new(State::Drift, "no services", "compose lists no services")
                } else if stopped.is_empty() {
                    Check::ok(format!("{up}/{} running", p.expected.len()))
                } else {
                    Check::new(
                        State::Drift,
                        format!("{up}/{} running", p.expected.len()),
                        format!("not running: {}", stopped.join(", ")),
                    )
                }
            }
            Some((c, Some(state))) => {
                let why = c.failure(&state).unwrap_or_default();
                if state == ComposeState::NoProjectDir {
                    Check::new(State::Drift, "not deployed", why)
                } else {
                    Check::new(State::Down, "error", why)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::RetryPolicy;
    use crate::fixtures::{compose, compose_step, copy_step, file, host};
    use crate::modules::compose::ComposeAction;
    use crate::modules::file::sha256_hex;
    use crate::transport::fake::{FakeFleet, Reply};

    /// `status` reads a host through the same facts as deploy and `--check` (the file and
    /// compose facts), in one round trip, and classifies what they say.
    #[tokio::test]
    async fn status_reads_the_hosts_facts_in_one_round_trip() {
        let fleet = Arc::new(FakeFleet::new());
        let steps = [
            copy_step(file("/opt/exp/docker-compose.yml", b"wanted")),
            compose_step(ComposeAction {
                command: None,
                ..compose("/opt/exp", &["node", "cadvisor"])
            }),
        ];
        let want = Wanted::from_steps(&steps);
        let on_host = sha256_hex(b"edited by hand");
        fleet.host("a").on(
            "pf_fact_marker=",
            Reply::facts_batch(vec![
                format!("file 644 0 0 root root {on_host}"),
                "__compose docker compose\n__expected node cadvisor\n__running cadvisor".into(),
            ]),
        );
        let http = crate::executor::http_client();
        let g = Gatherer {
            connector: Arc::new(Connector::with(fleet.clone(), RetryPolicy::default(), 4)),
            consul: Arc::new(ConsulClient::new(Vec::new(), None, http.clone())),
            http,
            proms: Arc::new(Vec::new()),
            primed: Primed::default(),
        };
        let row = g.gather(&host("a"), &want).await;
        let cell = |name: &str| {
            row.checks
                .0
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| (c.state, c.summary.clone(), c.detail.clone()))
                .expect("check")
        };
        assert_eq!(cell("ssh").0, State::Ok);
        assert_eq!(cell("file").1, "differs", "{:?}", cell("file"));
        assert_eq!(
            cell("containers"),
            (
                State::Drift,
                "1/2 running".to_string(),
                "not running: node".to_string()
            )
        );
        let ops: Vec<String> = fleet
            .host("a")
            .log()
            .into_iter()
            .filter(|op| op != "close")
            .collect();
        assert_eq!(ops.len(), 1, "{ops:?}");
    }

    /// Issue 15: `status` ran preflight, then asked its own facts: two round trips per host.
    /// Preflight's batch now asks the comparison's facts too, and the gatherer reads them
    /// from it: one round trip per host (and without the hand-over, two).
    #[tokio::test]
    async fn status_after_preflight_reads_each_host_in_one_round_trip() {
        use crate::executor::Scheduler;
        use crate::status::preflight::{Ask, Wants, check_all};
        use tokio_util::sync::CancellationToken;
        let steps = [
            copy_step(file("/opt/exp/docker-compose.yml", b"wanted")),
            compose_step(compose("/opt/exp", &["node"])),
        ];
        let want = Wanted::from_steps(&steps);
        for hand_over in [true, false] {
            let fleet = Arc::new(FakeFleet::new());
            let file_answer = format!("file 644 0 0 root root {}", sha256_hex(b"wanted"));
            // Preflight's system probes first (empty answers), the comparison's facts last.
            fleet.host("a").on(
                "pf_fact_marker=",
                Reply::Compute(Arc::new(move |cmd: &str| {
                    let marker = cmd
                        .lines()
                        .find_map(|l| l.strip_prefix("pf_fact_marker="))
                        .unwrap_or_default()
                        .trim_matches('\'')
                        .to_string();
                    let n = cmd.matches("%s begin").count();
                    let mut sections = vec![String::new(); n.saturating_sub(2)];
                    sections.push(file_answer.clone());
                    sections
                        .push("__compose docker compose\n__expected node\n__running node".into());
                    let mut out = String::new();
                    for s in &sections {
                        out.push_str(&format!("\n{marker} begin\n{s}\n{marker} end 0\n"));
                    }
                    Reply::stdout(&out)
                })),
            );
            let connector = Arc::new(Connector::with(fleet.clone(), RetryPolicy::default(), 4));
            let primed = Primed::default();
            let sched = Scheduler::new(4, CancellationToken::new(), CancellationToken::new());
            let ask = Ask {
                host: host("a"),
                wants: Wants::new(&host("a"), &Default::default(), &Default::default()),
                also: want.ask(),
                keep: true,
                unchanged: None,
            };
            let pre = check_all(connector.clone(), vec![ask], &sched, &primed).await;
            assert_eq!(pre.len(), 1);
            let http = crate::executor::http_client();
            let g = Gatherer {
                connector,
                consul: Arc::new(ConsulClient::new(Vec::new(), None, http.clone())),
                http,
                proms: Arc::new(Vec::new()),
                primed: if hand_over {
                    primed.clone()
                } else {
                    Primed::default()
                },
            };
            let row = g.gather(&host("a"), &want).await;
            let cell = |name: &str| {
                row.checks
                    .0
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, c)| (c.state, c.summary.clone()))
                    .expect("check")
            };
            assert_eq!(cell("file").0, State::Ok, "{:?}", cell("file"));
            assert_eq!(cell("containers").0, State::Ok, "{:?}", cell("containers"));
            let ops: Vec<String> = fleet
                .host("a")
                .log()
                .into_iter()
                .filter(|op| op != "close")
                .collect();
            assert_eq!(ops.len(), if hand_over { 1 } else { 2 }, "{ops:?}");
        }
    }

    /// A status probe that hangs (its batch now rides in preflight's): the timeout is
    /// remembered and reported by the status check, after one --command-timeout in all.
    #[tokio::test]
    async fn a_hung_status_probe_in_preflights_batch_times_out_once() {
        use crate::executor::Scheduler;
        use crate::status::preflight::{Ask, Wants, check_all};
        use tokio_util::sync::CancellationToken;
        let steps = [compose_step(ComposeAction {
            watch: Vec::new(),
            ..compose("/opt/exp", &["node"])
        })];
        let want = Wanted::from_steps(&steps);
        let fleet = Arc::new(FakeFleet::new());
        fleet.host("a").on("", Reply::TimedOut);
        let connector = Arc::new(Connector::with(fleet.clone(), RetryPolicy::default(), 4));
        let primed = Primed::default();
        let sched = Scheduler::new(4, CancellationToken::new(), CancellationToken::new());
        let ask = Ask {
            host: host("a"),
            wants: Wants::new(&host("a"), &Default::default(), &Default::default()),
            also: want.ask(),
            keep: true,
            unchanged: None,
        };
        let pre = check_all(connector.clone(), vec![ask], &sched, &primed).await;
        assert!(pre[0].unreachable, "{pre:?}");
        let http = crate::executor::http_client();
        let g = Gatherer {
            connector,
            consul: Arc::new(ConsulClient::new(Vec::new(), None, http.clone())),
            http,
            proms: Arc::new(Vec::new()),
            primed,
        };
        let row = g.gather(&host("a"), &want).await;
        let ssh = row.checks.0.iter().find(|(n, _)| n == "ssh").expect("ssh");
        assert!(ssh.1.summary.starts_with("timed out after"), "{:?}", ssh.1);
        let ops: Vec<String> = fleet
            .host("a")
            .log()
            .into_iter()
            .filter(|op| op != "close")
            .collect();
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert_eq!(fleet.attempts("a"), 1);
    }
}
