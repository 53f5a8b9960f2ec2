//! The executor: runs a Plan on many hosts at once under a forks limit (the fan-out is
//! `Scheduler`'s, shared with every other command that works on many hosts), batch by batch
//! (`serial`), each host's tasks in order on its one connection (a `Transport` from the
//! `Connector`), with no barrier between hosts inside a batch. A failed host never stops the
//! others; it is left out of later plays. The rollout halts before the next batch, stage or
//! play when every host of a batch failed (Ansible's rule) or when a play's or stage's
//! `max_fail_percentage` is exceeded, counting the hosts that fail a stage's health gate
//! (`gate`); `--rollback-on-failure` then rolls that stage back.
//! Transient failures of steps safe to repeat are retried with backoff
//! (`Action::repeatable`), on a new connection when the host was unreachable; a command is
//! never run again. Cancellation stops new hosts and tasks and cuts a `--pause` short;
//! in-flight steps finish (remote writes are atomic, so nothing is left half-written) unless
//! the run is aborted, which abandons them at once. `tests` runs all of it against
//! `transport::fake`.

mod connector;
mod gate;
mod halt;
#[cfg(test)]
mod prefetch_tests;
mod retry;
mod scheduler;
#[cfg(test)]
mod tests;

pub use connector::{Connector, Deferred};
pub use retry::RetryPolicy;
pub use scheduler::{Done, ProgressSink, Running, Scheduler, listen_for_signals, or_abort};

use halt::{halt_message, stage_halt, work_left};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::facts::{ErasedFact, FactError, Facts, Kept, Primed};
use crate::modules::{Action, ErrorKind, HostCtx, HostState, Outcome, Services};
use crate::playbook::{HostPlan, Plan, Step};
use crate::report::{GateResult, HostReport, HostStatus, Masker, Reporter, RunReport, TaskReport};
use crate::transport::{Transport, TransportError};

/// What a host's facts batch before its first step is reported as.
const GATHERING: &str = "gathering facts";

/// Asked between two rollout stages whether to go on (`--confirm`). Called on a blocking
/// thread (it may read the terminal); a cancellation stops waiting for it at once.
pub trait StageGate: Send + Sync {
    fn proceed(&self, done: &str, next: &str) -> bool;
}

/// Run-wide execution settings.
#[derive(Clone)]
pub struct RunOptions {
    pub forks: usize,
    pub check: bool,
    pub diff: bool,
    pub retry: RetryPolicy,
    /// Wait between rollout stages (`--pause`); cut short by a cancellation.
    pub pause: Option<Duration>,
    pub gate: Option<Arc<dyn StageGate>>,
    /// Base URLs of the Prometheus servers health gates ask.
    pub prometheus: Vec<String>,
    /// Roll a stage back when its health gate halts the rollout (`--rollback-on-failure`).
    pub rollback_on_failure: bool,
    /// Hosts a pre-pass (deploy's preflight) already failed: never touched, reported with
    /// this outcome in their batch, so they count toward `max_fail_percentage` and the
    /// "whole batch failed" rule like any failure.
    pub blocked: HashMap<String, Blocked>,
    /// Hosts' facts a pre-pass (deploy's preflight) already asked, in its one round trip per
    /// host, among them those of each host's first play (`first_play_facts`): that play reads
    /// them instead of asking again. Dropped unused at the first wait of the run (a health
    /// gate, `--pause` or `--confirm` between stages): answers that old are not acted on.
    pub primed: Primed,
}

/// A host failed before the run: how, why, and at what (`preflight`, `connect`).
#[derive(Clone, Debug)]
pub struct Blocked {
    pub status: HostStatus,
    pub error: String,
    pub failed_at: String,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            forks: 50,
            check: false,
            diff: false,
            retry: RetryPolicy::default(),
            pause: None,
            gate: None,
            prometheus: Vec::new(),
            rollback_on_failure: false,
            blocked: HashMap::new(),
            primed: Primed::default(),
        }
    }
}

pub struct Executor {
    pub connector: Arc<Connector>,
    pub http: reqwest::Client,
    /// The run-wide services modules ask for by type (the Consul client).
    pub services: Services,
    pub masker: Masker,
    pub reporter: Arc<dyn Reporter>,
    pub opts: RunOptions,
    /// First interrupt: start nothing new, let steps in flight finish.
    pub cancel: CancellationToken,
    /// Second interrupt: abandon steps in flight too (their hosts are reported not run).
    pub abort: CancellationToken,
}

/// What happened between two stages.
enum Between {
    Proceed,
    Declined,
    Interrupted,
}

/// A pooled HTTP client for exporters, Consul and service APIs (keep-alive, no proxy: every
/// target is on the fleet's own network).
pub fn http_client() -> reqwest::Client {
    crate::settings::tls::base_builder()
        .build()
        .unwrap_or_default()
}

impl Executor {
    /// The same executor (connections, clients, cancellation) with other options: deploy
    /// learns which hosts preflight blocked only after connecting through it.
    pub fn with_options(&self, opts: RunOptions) -> Executor {
        Executor {
            connector: self.connector.clone(),
            http: self.http.clone(),
            services: self.services.clone(),
            masker: self.masker.clone(),
            reporter: self.reporter.clone(),
            opts,
            cancel: self.cancel.clone(),
            abort: self.abort.clone(),
        }
    }

    /// Run every play of the plan; returns the per-host report (never fails as a whole).
    pub async fn run(self: &Arc<Self>, plan: Arc<Plan>) -> RunReport {
        let started = Instant::now();
        let mut run = RunReport {
            check: self.opts.check,
            ..Default::default()
        };
        let mut index: HashMap<String, usize> = HashMap::new();
        for h in plan.hosts() {
            index.insert(h.name.clone(), run.hosts.len());
            run.hosts.push(HostReport::new(&h.name, &h.group));
        }
        let mut excluded: HashSet<String> = HashSet::new();
        // The last play each host is in: its session is released after it.
        let mut last_play: HashMap<String, usize> = HashMap::new();
        for (pi, play) in plan.plays.iter().enumerate() {
            for hp in &play.hosts {
                last_play.insert(hp.host.name.clone(), pi);
            }
        }
        let last_play = Arc::new(last_play);
        // One scheduler for the whole run: the rollback of a stage shares its forks.
        let sched = Scheduler::new(self.opts.forks, self.cancel.clone(), self.abort.clone())
            .reporting_to(self.reporter.clone());
        let mut last_stage: Option<String> = None;
        'plays: for (pi, play) in plan.plays.iter().enumerate() {
            let hosts: Vec<usize> = (0..play.hosts.len())
                .filter(|&hi| !excluded.contains(&play.hosts[hi].host.name))
                .collect();
            if hosts.is_empty() {
                continue;
            }
            if let (Some(done), Some(next)) = (&last_stage, &play.stage) {
                self.opts.primed.clear();
                match self.between_stages(done, next).await {
                    Between::Proceed => {}
                    Between::Interrupted => {
                        run.interrupted = true;
                        break 'plays;
                    }
                    Between::Declined => {
                        let msg = format!(
                            "stopped before stage `{next}` as asked; resume with --from-stage {next}"
                        );
                        self.reporter.notice(&msg);
                        run.halted = Some(msg);
                        break 'plays;
                    }
                }
            }
            if play.stage.is_some() {
                last_stage = play.stage.clone();
            }
            self.reporter.play_started(&play.name, hosts.len());
            let size = play
                .serial
                .map(|s| s.size(hosts.len()))
                .unwrap_or(hosts.len());
            // This play's failed hosts, in the order they failed, with how.
            let mut failed: Vec<(String, &'static str)> = Vec::new();
            let batches: Vec<&[usize]> = hosts.chunks(size.max(1)).collect();
            for (bi, &batch) in batches.iter().enumerate() {
                if self.cancel.is_cancelled() {
                    run.interrupted = true;
                    break 'plays;
                }
                let items = batch
                    .iter()
                    .map(|&hi| (play.hosts[hi].host.name.clone(), hi))
                    .collect();
                let (me, plan2, last_play) = (self.clone(), plan.clone(), last_play.clone());
                let mut running = sched.run(items, move |hi| {
                    let (me, plan, last_play) = (me.clone(), plan2.clone(), last_play.clone());
                    async move {
                        let r = me.run_host(&plan, pi, hi).await;
                        let name = &plan.plays[pi].hosts[hi].host.name;
                        // After an abort the polite close is left to the caller's bounded
                        // `close_all`: a session whose command was abandoned may be slow.
                        if (last_play.get(name) == Some(&pi) || r.status.is_failure())
                            && !me.abort.is_cancelled()
                        {
                            me.connector.release(name).await;
                        }
                        r
                    }
                });
                let mut batch_failed = 0usize;
                while let Some((k, done)) = running.next().await {
                    let part = match done {
                        Done::Ran(r) => r,
                        // Cancelled before it started: not run in this play.
                        Done::NotStarted => {
                            let h = &play.hosts[batch[k]].host;
                            HostReport::new(&h.name, &h.group)
                        }
                    };
                    let Some(&i) = index.get(&part.host) else {
                        continue;
                    };
                    if part.status.is_failure() {
                        batch_failed += 1;
                        let how = if part.status == HostStatus::Unreachable {
                            "unreachable"
                        } else {
                            "failed"
                        };
                        failed.push((part.host.clone(), how));
                        excluded.insert(part.host.clone());
                    }
                    merge(&mut run.hosts[i], part);
                }
                if self.cancel.is_cancelled() {
                    run.interrupted = true;
                    break 'plays;
                }
                let halt = stage_halt(play, failed.len(), hosts.len(), batch_failed, batch.len());
                // A halt stops what is left; with nothing left the run just ends (exit 2/4).
                if let Some(why) = halt
                    && (bi + 1 < batches.len() || work_left(&plan, pi, &excluded))
                {
                    let msg = halt_message(play, &why, &failed);
                    self.halting(play);
                    run.halted = Some(msg);
                    break 'plays;
                }
            }
            let Some(gate) = play.gate.as_ref().filter(|_| !self.opts.check) else {
                continue;
            };
            self.opts.primed.clear();
            let Some(gate_failed) = self
                .gate_stage(play, gate, &hosts, &mut run, &mut failed, &mut excluded)
                .await
            else {
                run.interrupted = true;
                break 'plays;
            };
            if gate_failed == 0 {
                continue;
            }
            // A failed gate counts like failed hosts: the same two rules, over the stage.
            let Some(why) = stage_halt(play, failed.len(), hosts.len(), 0, 1) else {
                continue;
            };
            let mut msg = halt_message(play, &why, &failed);
            if self.opts.rollback_on_failure {
                let back = self.roll_back(play, &mut run, &index, &sched).await;
                let note = if back.is_empty() {
                    "--rollback-on-failure: nothing this run changed to roll back".to_string()
                } else {
                    format!(
                        "{} rolled back to their previous files by --rollback-on-failure",
                        back.join(", ")
                    )
                };
                self.reporter.notice(&note);
                msg.push_str(&format!(" ({note})"));
            }
            if work_left(&plan, pi, &excluded) {
                self.halting(play);
                run.halted = Some(msg);
                break 'plays;
            }
        }
        run.duration_ms = started.elapsed().as_millis();
        run
    }

    /// The health gate after a stage: its hosts that are still in the run must have their
    /// targets UP in Prometheus; a host failing it is failed (pushed to `failed`, left out of
    /// later plays). Returns how many failed it; `None` when cancelled.
    async fn gate_stage(
        &self,
        play: &crate::playbook::PlannedPlay,
        gate: &crate::playbook::HealthGate,
        hosts: &[usize],
        run: &mut RunReport,
        failed: &mut Vec<(String, &'static str)>,
        excluded: &mut HashSet<String>,
    ) -> Option<usize> {
        let gated: Vec<gate::GateHost> = hosts
            .iter()
            .map(|&hi| &play.hosts[hi])
            .filter(|hp| !excluded.contains(&hp.host.name))
            .map(gate::GateHost::from_plan)
            .collect();
        self.reporter.notice(&format!(
            "health gate after `{}`: waiting up to {}s for the {} target(s) of {} host(s) to be UP in Prometheus for {} consecutive scrapes{}",
            play.name,
            gate.timeout.as_secs(),
            gated.iter().map(|g| g.targets.len()).sum::<usize>(),
            gated.len(),
            gate.scrapes,
            if gate.no_alerts { ", with no alert firing" } else { "" }
        ));
        // Without the settings' endpoints (a caller that built none): plain http, no auth.
        let fallback = crate::settings::Endpoints::default();
        let endpoints = self
            .services
            .get::<crate::settings::Endpoints>()
            .unwrap_or(&fallback);
        let verdicts = gate::wait(
            &endpoints.prometheus,
            &self.opts.prometheus,
            gate,
            &gated,
            &self.cancel,
        )
        .await?;
        let mut gate_failed = 0usize;
        for (host, verdict) in verdicts {
            let Some(h) = run.hosts.iter_mut().find(|h| h.host == host) else {
                continue;
            };
            match verdict {
                Ok(detail) => {
                    h.gate = Some(GateResult {
                        passed: true,
                        detail,
                    })
                }
                Err(why) => {
                    let why = self.masker.mask(&why);
                    h.gate = Some(GateResult {
                        passed: false,
                        detail: why.clone(),
                    });
                    h.status = HostStatus::Failed;
                    h.failed += 1;
                    h.error = Some(format!("health gate: {why}"));
                    h.failed_at = Some("health gate".into());
                    self.reporter.host_finished(h);
                    gate_failed += 1;
                    failed.push((host.clone(), "failed the health gate"));
                    excluded.insert(host);
                }
            }
        }
        Some(gate_failed)
    }

    /// Put the hosts of a failed stage back on the files this run changed there (from
    /// `.prev`) and re-apply the rest of the stage's play; returns the hosts rolled back.
    async fn roll_back(
        self: &Arc<Self>,
        play: &crate::playbook::PlannedPlay,
        run: &mut RunReport,
        index: &HashMap<String, usize>,
        sched: &Scheduler,
    ) -> Vec<String> {
        let files: std::collections::BTreeMap<String, Vec<String>> = play
            .hosts
            .iter()
            .filter_map(|hp| {
                let r = &run.hosts[*index.get(&hp.host.name)?];
                (!r.changed_files.is_empty())
                    .then(|| (hp.host.name.clone(), r.changed_files.clone()))
            })
            .collect();
        let back = Arc::new(Plan {
            plays: vec![play.rollback(&files)],
        });
        let n = back.plays[0].hosts.len();
        if n == 0 {
            return Vec::new();
        }
        self.reporter.play_started(&back.plays[0].name, n);
        let items = back.plays[0]
            .hosts
            .iter()
            .enumerate()
            .map(|(hi, hp)| (hp.host.name.clone(), hi))
            .collect();
        let (me, back2) = (self.clone(), back.clone());
        let mut running = sched.run(items, move |hi| {
            let (me, back) = (me.clone(), back2.clone());
            async move {
                let r = me.run_host(&back, 0, hi).await;
                me.connector
                    .release(&back.plays[0].hosts[hi].host.name)
                    .await;
                r
            }
        });
        let mut done = Vec::new();
        while let Some((k, d)) = running.next().await {
            let part = match d {
                Done::Ran(r) => r,
                // Cancelled before it started: not rolled back, so not done.
                Done::NotStarted => {
                    let h = &back.plays[0].hosts[k].host;
                    HostReport::new(&h.name, &h.group)
                }
            };
            let Some(&i) = index.get(&part.host) else {
                continue;
            };
            if !part.status.is_failure() && part.status != HostStatus::NotRun {
                run.hosts[i].rolled_back = true;
                done.push(part.host.clone());
            }
            merge(&mut run.hosts[i], part);
        }
        done.sort();
        done
    }

    /// The live notice of a halt; the reasons and how to resume are printed once, in the
    /// recap (`RunReport::halted`).
    fn halting(&self, play: &crate::playbook::PlannedPlay) {
        self.reporter.notice(&format!(
            "halting after `{}`: nothing further starts (why, and how to resume: HALTED in the recap)",
            play.name
        ));
    }

    /// `--pause` then `--confirm` between two stages; either is cut short by Ctrl-C.
    async fn between_stages(&self, done: &str, next: &str) -> Between {
        if let Some(p) = self.opts.pause {
            self.reporter.notice(&format!(
                "stage `{done}` done; pausing {}s before stage `{next}` (Ctrl-C stops here)",
                p.as_secs()
            ));
            tokio::select! {
                _ = tokio::time::sleep(p) => {}
                _ = self.cancel.cancelled() => return Between::Interrupted,
            }
        }
        if let Some(gate) = &self.opts.gate {
            let (gate, d, n) = (gate.clone(), done.to_string(), next.to_string());
            // The blocking read of the terminal cannot be cancelled; it is abandoned (the
            // process exits after writing its state).
            let ask = tokio::task::spawn_blocking(move || gate.proceed(&d, &n));
            tokio::select! {
                go = ask => if !go.unwrap_or(false) { return Between::Declined },
                _ = self.cancel.cancelled() => return Between::Interrupted,
            }
        }
        if self.cancel.is_cancelled() {
            return Between::Interrupted;
        }
        Between::Proceed
    }

    /// `f`, unless the run is aborted first (`None`).
    async fn or_abort<T>(&self, f: impl std::future::Future<Output = T>) -> Option<T> {
        or_abort(&self.abort, f).await
    }

    async fn run_host(&self, plan: &Plan, pi: usize, hi: usize) -> HostReport {
        let hp = &plan.plays[pi].hosts[hi];
        let host = &hp.host;
        let mut r = HostReport::new(&host.name, &host.group);
        if self.cancel.is_cancelled() {
            return r;
        }
        let started = Instant::now();
        self.reporter.host_started(&host.name);
        // Out of the store whatever happens next: a cache left there would hold the session.
        let primed = self.opts.primed.take(&host.name);
        if let Some(b) = self.opts.blocked.get(&host.name) {
            r.status = b.status;
            r.failed = usize::from(b.status == HostStatus::Failed);
            r.error = Some(self.masker.mask(&b.error));
            r.failed_at = Some(b.failed_at.clone());
            self.reporter.host_finished(&r);
            return r;
        }
        let needs_ssh = hp
            .steps
            .iter()
            .chain(&hp.handlers)
            .any(|s| s.action.as_ref().is_some_and(|a| a.needs_ssh()));
        let mut session = None;
        // A host preflight judged unchanged over a session it closed comes with its answers:
        // its session is opened only if a step needs more than they say.
        let deferred = matches!(primed, Some(Kept::Detached(_)));
        if needs_ssh {
            let connected = if deferred {
                self.connector.target(host).await.map(|t| {
                    let d = Deferred::new(self.connector.clone(), host.clone(), t);
                    Arc::new(d) as Arc<dyn crate::transport::Transport>
                })
            } else {
                let Some(connected) = self.or_abort(self.connector.session(host)).await else {
                    r.error = Some("aborted while connecting (second interrupt)".into());
                    r.add_duration(started.elapsed());
                    self.reporter.host_finished(&r);
                    return r;
                };
                connected.map(|(s, _)| s)
            };
            match connected {
                Ok(s) => session = Some(s),
                Err(e) => {
                    r.status = failure_status(ErrorKind::from(&e));
                    r.failed = usize::from(r.status == HostStatus::Failed);
                    r.error = Some(self.masker.mask(&format!("connect: {e}")));
                    r.failed_at = Some("connect".into());
                    r.add_duration(started.elapsed());
                    self.reporter.host_finished(&r);
                    return r;
                }
            }
        }
        r.status = HostStatus::Ok;
        // The host's facts for this play, asked together before its first step (none asked
        // when preflight's round trip asked them over this session). A fact that cannot be
        // read is the step's to report, except a batch that outlived --command-timeout: the
        // host hangs, and its steps would only wait for the timeout again (their probes, an
        // upload's own compare), so the host fails here, after one timeout.
        let mut facts = session.clone().map(|s| Kept::facts_over(primed, s));
        if let Some(f) = &facts {
            let wanted = host_facts(hp);
            let refs: Vec<&dyn ErasedFact> = wanted.iter().map(|f| f.as_ref()).collect();
            let failed = match self.or_abort(f.prefetch(&refs)).await {
                None => {
                    abandoned(&mut r, GATHERING);
                    true
                }
                Some(Err(FactError::Transport(e @ TransportError::CommandTimeout { .. }))) => {
                    r.status = failure_status(ErrorKind::TimedOut);
                    r.failed += 1;
                    r.error = Some(self.masker.mask(&format!("{GATHERING}: {e}")));
                    r.failed_at = Some(GATHERING.into());
                    true
                }
                Some(_) => false,
            };
            if failed {
                r.add_duration(started.elapsed());
                self.reporter.host_finished(&r);
                return r;
            }
        }
        // The modules' state for this host's play (what `file` wrote, for `compose`).
        let mut state = HostState::default();
        let mut notified: HashSet<&str> = HashSet::new();
        let mut ok = true;
        for (i, step) in hp.steps.iter().enumerate() {
            // A step whose work the previous step's write already ran (`RanAhead`) is only
            // reported: interrupted or not, what it did is done.
            if self.cancel.is_cancelled() && state.get::<crate::modules::RanAhead>().is_none() {
                // Cut short: not done, so it must be retried (it lands in the retry file).
                r.status = HostStatus::NotRun;
                r.error = Some(format!("interrupted before `{}`", step.name));
                ok = false;
                break;
            }
            let next = hp.steps[i + 1..].iter().find_map(|s| s.action.as_ref());
            let Some(outcome) = self
                .or_abort(self.run_step(
                    hp,
                    (step, next),
                    &mut session,
                    &mut facts,
                    &mut state,
                    &mut r,
                ))
                .await
            else {
                // Abandoned after its write was done: the file changed, and what ran was the
                // next step's work (`WriteInFlight`).
                let in_flight = match state.take::<crate::modules::WriteInFlight>() {
                    Some(w) if w.done.load(std::sync::atomic::Ordering::SeqCst) => {
                        let report = TaskReport {
                            task: step.name.clone(),
                            module: step.module,
                            outcome: Some(Outcome::Changed),
                            error: None,
                            detail: Some(format!("wrote {}", w.dest)),
                            diff: None,
                            attempts: 1,
                            duration_ms: 0,
                        };
                        self.reporter.task_finished(&host.name, &report);
                        r.tasks.push(report);
                        r.changed += 1;
                        if !r.changed_files.contains(&w.dest) {
                            r.changed_files.push(w.dest);
                        }
                        hp.steps[i + 1..].iter().find(|s| s.action.is_some())
                    }
                    _ => None,
                };
                abandoned(&mut r, &in_flight.unwrap_or(step).name);
                ok = false;
                break;
            };
            match outcome {
                Some(Outcome::Changed) => notified.extend(step.notify.iter().map(String::as_str)),
                Some(_) => {}
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            for h in hp
                .handlers
                .iter()
                .filter(|h| notified.contains(h.name.as_str()))
            {
                if self.cancel.is_cancelled() {
                    break;
                }
                match self
                    .or_abort(self.run_step(
                        hp,
                        (h, None),
                        &mut session,
                        &mut facts,
                        &mut state,
                        &mut r,
                    ))
                    .await
                {
                    None => {
                        abandoned(&mut r, &h.name);
                        break;
                    }
                    Some(None) => break,
                    Some(Some(_)) => {}
                }
            }
        }
        r.add_duration(started.elapsed());
        self.reporter.host_finished(&r);
        r
    }

    /// Run one step (and the action of the step after it, for `HostCtx::next`) with
    /// retries; `None` when it failed for good (recorded in `r`).
    async fn run_step(
        &self,
        hp: &crate::playbook::HostPlan,
        (step, next): (&Step, Option<&crate::modules::Action>),
        session: &mut Option<Arc<dyn Transport>>,
        facts: &mut Option<Arc<Facts>>,
        state: &mut HostState,
        r: &mut HostReport,
    ) -> Option<Outcome> {
        let host = &hp.host;
        self.reporter.task_started(&host.name, &step.name);
        let started = Instant::now();
        let mut report = TaskReport {
            task: step.name.clone(),
            module: step.module,
            outcome: None,
            error: None,
            detail: None,
            diff: None,
            attempts: 1,
            duration_ms: 0,
        };
        let Some(action) = &step.action else {
            report.outcome = Some(Outcome::Skipped);
            report.detail = Some("condition false".into());
            r.skipped += 1;
            self.reporter.task_finished(&host.name, &report);
            r.tasks.push(report);
            return Some(Outcome::Skipped);
        };
        let result = loop {
            let mut ctx = HostCtx {
                host,
                session: session.as_deref(),
                facts: facts.as_deref(),
                http: &self.http,
                services: &self.services,
                check: self.opts.check,
                diff: self.opts.diff,
                masker: &self.masker,
                state,
                next,
            };
            match action.run(&mut ctx).await {
                Err(e)
                    if e.transient
                        && action.repeatable()
                        && report.attempts < self.opts.retry.attempts
                        && !self.cancel.is_cancelled() =>
                {
                    self.reporter.notice(&self.masker.mask(&format!(
                        "retrying: [{}] {} (attempt {} failed: {})",
                        host.name, step.name, report.attempts, e.message
                    )));
                    tokio::time::sleep(self.opts.retry.delay(report.attempts + 1)).await;
                    report.attempts += 1;
                    if e.kind == ErrorKind::Unreachable && action.needs_ssh() {
                        self.connector.drop_session(&host.name).await;
                        match self.connector.session(host).await {
                            Ok((s, _)) => {
                                // Facts go with the connection (and may be stale by now).
                                *facts = Some(Arc::new(Facts::new(s.clone())));
                                *session = Some(s);
                            }
                            Err(ce) => break Err(crate::modules::TaskError::from(ce)),
                        }
                    }
                }
                other => break other,
            }
        };
        report.duration_ms = started.elapsed().as_millis();
        let outcome = match result {
            Ok(done) => {
                // What the run changed, for `rollback` (a check run changes nothing).
                if let Some(p) = done.wrote.filter(|_| !self.opts.check)
                    && !r.changed_files.contains(&p)
                {
                    r.changed_files.push(p);
                }
                report.outcome = Some(done.outcome);
                report.detail = done.detail.map(|d| self.masker.mask(&d));
                report.diff = done.diff.map(|d| self.masker.mask(&d));
                match done.outcome {
                    Outcome::Ok => r.ok += 1,
                    Outcome::Changed => {
                        r.changed += 1;
                        r.status = HostStatus::Changed;
                    }
                    Outcome::Skipped => r.skipped += 1,
                }
                Some(done.outcome)
            }
            Err(e) => {
                let msg = self.masker.mask(&e.message);
                report.error = Some(msg.clone());
                r.failed += 1;
                r.status = failure_status(e.kind);
                r.error = Some(format!("{} ({}): {msg}", step.name, step.pos));
                r.failed_at = Some(step.name.clone());
                None
            }
        };
        self.reporter.task_finished(&host.name, &report);
        r.tasks.push(report);
        outcome
    }
}

/// The facts a host's steps and handlers in one play read: asked together before its first
/// step (`Executor::run_host`), or earlier in preflight's round trip (`first_play_facts`).
pub fn host_facts(hp: &HostPlan) -> Vec<Box<dyn ErasedFact>> {
    hp.steps
        .iter()
        .chain(&hp.handlers)
        .filter_map(|s| s.action.as_ref())
        .flat_map(Action::facts)
        .collect()
}

/// Each host's `host_facts` of the first play it is in: what a pre-pass asks for the run.
pub fn first_play_facts(plan: &Plan) -> HashMap<String, Vec<Box<dyn ErasedFact>>> {
    let mut out = HashMap::new();
    for hp in plan.plays.iter().flat_map(|p| &p.hosts) {
        if !out.contains_key(&hp.host.name) {
            out.insert(hp.host.name.clone(), host_facts(hp));
        }
    }
    out
}

/// The recap's word for a host whose task failed this way: a command that timed out was
/// reached, so it failed.
fn failure_status(kind: ErrorKind) -> HostStatus {
    match kind {
        ErrorKind::Unreachable => HostStatus::Unreachable,
        ErrorKind::Failed | ErrorKind::TimedOut => HostStatus::Failed,
    }
}

/// A step abandoned by a second interrupt: the host is not done (it lands in the retry file).
fn abandoned(r: &mut HostReport, step: &str) {
    r.status = HostStatus::NotRun;
    r.error = Some(format!(
        "aborted during `{step}` (second interrupt): a remote command it started may still be running; files it wrote are whole (temp + rename)"
    ));
}

/// Fold one play's result for a host into its run-wide report.
fn merge(into: &mut HostReport, part: HostReport) {
    into.ok += part.ok;
    into.changed += part.changed;
    into.skipped += part.skipped;
    into.failed += part.failed;
    into.duration_ms += part.duration_ms;
    into.tasks.extend(part.tasks);
    if part.error.is_some() {
        into.error = part.error;
    }
    if part.failed_at.is_some() {
        into.failed_at = part.failed_at;
    }
    for f in part.changed_files {
        if !into.changed_files.contains(&f) {
            into.changed_files.push(f);
        }
    }
    into.status = match (into.status, part.status) {
        (a, _) if a.is_failure() => a,
        (_, b) if b.is_failure() => b,
        // A play the host was planned for but did not finish: the host is not done.
        (_, HostStatus::NotRun) => HostStatus::NotRun,
        (HostStatus::Changed, _) | (_, HostStatus::Changed) => HostStatus::Changed,
        (HostStatus::Ok, _) | (_, HostStatus::Ok) => HostStatus::Ok,
        _ => HostStatus::NotRun,
    };
}
