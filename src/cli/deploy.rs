//! `promfleet deploy PLAYBOOK…` and `promfleet exporters`: plan (every input error surfaces
//! here, before any host is touched), execute, recap, record state and the retry file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::common::{
    ConnArgs, Interrupts, InventoryArgs, OutputArgs, executor, load_inventory_args, print_origins,
    project_for, select,
};
use crate::executor::RunOptions;
use crate::inventory::{Host, Inventory};
use crate::playbook::{self, Plan, Renderer, SecretMode, Secrets};
use crate::report::{Printer, RunState};
use crate::status::unchanged::{Memo, Unchanged, planned_digests};

#[derive(Args, Debug, Clone)]
pub struct DeployCommon {
    #[command(flatten)]
    pub inv: InventoryArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    /// Change nothing; report what would change.
    #[arg(short = 'C', long)]
    pub check: bool,
    /// Show unified diffs of changed files (secrets masked).
    #[arg(short = 'D', long)]
    pub diff: bool,
    /// Templates directory overriding the built-in templates file by file (default: the
    /// project's `templates/`).
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// YAML secrets file (mode 0600); PROMFLEET_SECRET_<NAME> variables take precedence.
    #[arg(long, env = "PROMFLEET_SECRETS")]
    pub secrets: Option<PathBuf>,
    /// Resume a staged rollout at this stage (earlier stages are skipped).
    #[arg(long)]
    pub from_stage: Option<String>,
    /// Wait this long between rollout stages (e.g. 30s, 5m).
    #[arg(long, value_parser = crate::base::clock::parse_cli_duration)]
    pub pause: Option<std::time::Duration>,
    /// Ask on the terminal before each next rollout stage.
    #[arg(long)]
    pub confirm: bool,
    /// Do not check the hosts first (`promfleet preflight`): no host is blocked, and the
    /// exporter variables keep the inventory's and built-in values.
    #[arg(long)]
    pub skip_preflight: bool,
    /// Probe every host in full, also those unchanged since promfleet last deployed them
    /// (their files as written, every service running), which are otherwise judged as then.
    #[arg(long, conflicts_with = "skip_preflight")]
    pub full_preflight: bool,
    /// When a stage's health gate halts the rollout, put that stage's hosts back on the
    /// files this run changed there (from `.prev`) and re-apply, as `promfleet rollback`.
    #[arg(long)]
    pub rollback_on_failure: bool,
}

/// `--confirm` between stages (the executor does `--pause` itself: it must stop at Ctrl-C).
/// Its reporter says when there is no terminal to ask on.
struct ConfirmGate(Arc<dyn crate::report::Reporter>);

impl crate::executor::StageGate for ConfirmGate {
    fn proceed(&self, done: &str, next: &str) -> bool {
        use std::io::{BufRead, Write};
        // The terminal, not stdin: stdin may be a pipe.
        let Ok(tty) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
        else {
            self.0.warning(&format!(
                "--confirm needs a terminal; stopping before stage `{next}`"
            ));
            return false;
        };
        let mut w = &tty;
        let _ = write!(
            w,
            "stage `{done}` done. Continue with stage `{next}`? [y/N] "
        );
        let _ = w.flush();
        let mut line = String::new();
        let _ = std::io::BufReader::new(&tty).read_line(&mut line);
        matches!(line.trim(), "y" | "Y" | "yes")
    }
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// Playbooks, run in order: a file, or a name (`exporters.yml`, `playbooks/site.yml`)
    /// looked up in the project, then among the built-in playbooks.
    #[arg(required = true)]
    pub playbooks: Vec<PathBuf>,
    #[command(flatten)]
    pub common: DeployCommon,
}

#[derive(Args, Debug)]
pub struct ExportersArgs {
    /// The exporter playbook (a file, or a name resolved as `deploy` does).
    #[arg(long, default_value = "playbooks/exporters.yml")]
    pub playbook: PathBuf,
    #[command(flatten)]
    pub common: DeployCommon,
}

pub async fn run_exporters(
    a: ExportersArgs,
    printer: &Printer,
) -> anyhow::Result<crate::report::ExitCode> {
    run(
        DeployArgs {
            playbooks: vec![a.playbook],
            common: a.common,
        },
        printer,
    )
    .await
}

/// Everything needed before execution: inventory, hosts, plan. Shared with `render`.
pub struct Planned {
    pub inventory: Inventory,
    pub hosts: Vec<Host>,
    pub plan: Plan,
    pub secrets: Secrets,
    /// The run's Consul settings (agents, token, TLS), resolved once.
    pub consul: crate::settings::Consul,
    /// The run's Prometheus and Alertmanager clients (scheme, TLS, basic auth).
    pub endpoints: crate::settings::Endpoints,
    /// templates/defaults.yml, the lowest-precedence variables.
    pub defaults: crate::inventory::Vars,
    /// Where the playbooks and templates were read from (`-v` prints it).
    pub project: crate::project::Project,
    /// The loaded playbooks (`adapt` plans them again).
    books: Vec<playbook::Playbook>,
    /// Set when the plays' `hosts:` select none of the chosen hosts: why, for the commands
    /// that must act on hosts (`require_hosts`).
    nothing_to_do: Option<String>,
}

impl Planned {
    /// An error saying what was looked for when no play selects a host: deploy, render and
    /// rollback never succeed with nothing done. (`status --scope central` needs no fleet
    /// host, so the check is the caller's.)
    pub fn require_hosts(&self) -> anyhow::Result<()> {
        match &self.nothing_to_do {
            Some(why) => Err(anyhow::anyhow!("{why}")),
            None => Ok(()),
        }
    }

    /// Plan again with preflight's variables added to the hosts' own (host → variables; the
    /// caller passes only variables the inventory does not set, so the inventory still wins).
    pub fn adapt(
        &mut self,
        overrides: &HashMap<String, crate::inventory::Vars>,
        opts: &playbook::PlanOptions,
    ) -> anyhow::Result<()> {
        for h in self.inventory.hosts.iter_mut().chain(self.hosts.iter_mut()) {
            if let Some(v) = overrides.get(&h.name) {
                h.vars.extend(v.clone());
            }
        }
        let mut renderer =
            Renderer::new(self.project.clone(), self.secrets.clone(), SecretMode::Real);
        let refs: Vec<&Host> = self.hosts.iter().collect();
        self.plan = playbook::plan(
            &self.inventory,
            &refs,
            &self.books,
            &mut renderer,
            &self.defaults,
            opts,
        )?;
        Ok(())
    }
}

/// The Prometheus servers health gates ask: each monitoring host's, found as `status` finds
/// it (`prometheus_url`, else its ip and `prometheus_port`).
fn prometheus_urls(p: &Planned) -> Vec<String> {
    p.inventory
        .monitoring()
        .filter_map(|h| {
            let vars = crate::status::central::host_vars(&p.inventory, &p.defaults, h);
            crate::status::central::service_url(&vars, h, "prometheus", "prometheus_port")
        })
        .collect()
}

/// `masker`: the printer's, which the inventory's and the secrets' values are registered on.
// Eight inputs until one `Settings` object (src/settings/) carries the inventory, project and
// secrets options.
#[allow(clippy::too_many_arguments)]
pub fn make_plan(
    printer: &Printer,
    playbooks: &[PathBuf],
    inv_args: &InventoryArgs,
    ssh_config: &Path,
    templates: Option<&Path>,
    secrets_file: Option<&Path>,
    mode: SecretMode,
    opts: &playbook::PlanOptions,
    persist_generated: bool,
) -> anyhow::Result<Planned> {
    let mut inventory = load_inventory_args(inv_args, ssh_config, printer)?;
    let hosts = select(&inventory, inv_args)?;
    if hosts.is_empty() {
        anyhow::bail!(
            "no host to act on: {} selects none of the {} host(s) in {}",
            describe_selection(inv_args),
            inventory.hosts.len(),
            super::common::inventory_label(&inv_args.inventory)
        );
    }
    let project = project_for(inv_args, templates, playbooks.first().map(PathBuf::as_path))?;
    let books = playbooks
        .iter()
        .map(|p| playbook::load(&project, p))
        .collect::<Result<Vec<_>, _>>()?;
    let defaults = playbook::load_defaults(&project)?;
    // Without --secrets, secrets promfleet generated earlier live in the state dir.
    let generated = inv_args.state_dir.join("secrets.yml");
    let secrets_file = secrets_file.or_else(|| generated.exists().then_some(generated.as_path()));
    let mut secrets = Secrets::load(secrets_file, printer.masker().clone())?;
    if persist_generated {
        // Stored as generated, before any host sees it (not at the end of the run).
        secrets.persist_generated(&generated);
    }
    let consul = super::common::resolve_consul(&mut inventory, &mut secrets, printer)?;
    let endpoints = super::common::resolve_endpoints(&mut inventory, &secrets)?;
    let mut renderer = Renderer::new(project.clone(), secrets.clone(), mode);
    let refs: Vec<&Host> = hosts.iter().collect();
    let plan = playbook::plan(&inventory, &refs, &books, &mut renderer, &defaults, opts)?;
    let nothing_to_do = plan.plays.iter().all(|p| p.hosts.is_empty()).then(|| {
        let wanted: Vec<String> = books
            .iter()
            .flat_map(|b| &b.plays)
            .map(|p| format!("`{}` ({})", p.hosts.join(","), p.pos))
            .collect();
        format!(
            "no host to act on: the plays' `hosts:` {} match none of the {} host(s) {} selects in {}",
            wanted.join("; "),
            hosts.len(),
            describe_selection(inv_args),
            super::common::inventory_label(&inv_args.inventory)
        )
    });
    Ok(Planned {
        inventory,
        hosts,
        plan,
        secrets,
        consul,
        endpoints,
        defaults,
        project,
        books,
        nothing_to_do,
    })
}

/// How the hosts were chosen, for "no host" errors.
fn describe_selection(inv_args: &InventoryArgs) -> String {
    let mut parts: Vec<String> = inv_args
        .limit
        .iter()
        .map(|l| format!("--limit {l}"))
        .collect();
    if inv_args.retry_failed {
        parts.push("--retry-failed".into());
    }
    if parts.is_empty() {
        "the inventory".into()
    } else {
        parts.join(" ")
    }
}

pub async fn run(a: DeployArgs, printer: &Printer) -> anyhow::Result<crate::report::ExitCode> {
    let c = &a.common;
    // First: a signal while planning is an interrupt, not the default action (death).
    let interrupts = Interrupts::install(printer);
    // One run per state directory, from before anything in it is read or written until the
    // state is recorded (`--check` writes nothing there).
    let _lock = (!c.check)
        .then(|| crate::report::StateLock::acquire(&c.inv.state_dir))
        .transpose()?;
    let plan_opts = playbook::PlanOptions {
        from_stage: c.from_stage.clone(),
    };
    let mut planned = make_plan(
        printer,
        &a.playbooks,
        &c.inv,
        &c.conn.ssh_config,
        c.templates.as_deref(),
        c.secrets.as_deref(),
        SecretMode::Real,
        &plan_opts,
        !c.check,
    )?;
    planned.require_hosts()?;
    if c.out.verbose > 0 {
        print_origins(&planned.project, printer.reporter().as_ref());
    }
    let gate: Option<Arc<dyn crate::executor::StageGate>> = c
        .confirm
        .then(|| Arc::new(ConfirmGate(printer.reporter())) as Arc<dyn crate::executor::StageGate>);
    // Stand-in addresses (`--no-resolve`) are for offline rendering only.
    crate::inventory::refuse_stand_ins(&planned.inventory)?;
    if let Some(code) = interrupts.before_run("planning") {
        return Ok(code);
    }
    let setup = executor(
        printer,
        &planned.consul,
        &planned.endpoints,
        &planned.secrets,
        &c.conn,
        RunOptions {
            check: c.check,
            diff: c.diff,
            pause: c.pause,
            gate,
            prometheus: prometheus_urls(&planned),
            rollback_on_failure: c.rollback_on_failure,
            ..RunOptions::default()
        },
        &interrupts,
    )?;
    // The memos of hosts deployed before (`status::unchanged`).
    let memos = match RunState::read(&c.inv.state_dir) {
        Some(s) if !c.full_preflight => s.preflight,
        _ => BTreeMap::new(),
    };
    let mut judged = Vec::new();
    let executor = if c.skip_preflight {
        setup.executor.clone()
    } else {
        // Preflight's round trip per host also asks the facts of the host's first play.
        let primed = crate::facts::Primed::default();
        let (blocked, results) = preflight(
            &mut planned,
            &setup,
            c.conn.forks,
            &plan_opts,
            &primed,
            &memos,
        )
        .await?;
        judged = results
            .into_iter()
            .map(|r| {
                let files = planned_digests(&planned.plan, &r.host);
                (r, files)
            })
            .collect();
        Arc::new(setup.executor.with_options(RunOptions {
            blocked,
            primed,
            ..setup.executor.opts.clone()
        }))
    };
    // Interrupted during preflight (hosts were already being reached): the run starts no
    // host and records them all as not run, like an interrupt at its first batch.
    let run = executor.run(Arc::new(planned.plan)).await;
    drop(executor);
    if setup.executor.abort.is_cancelled() {
        // Aborted: sessions may be mid-command; a polite close must not delay the state.
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            setup.executor.connector.close_all(),
        )
        .await;
    } else {
        setup.executor.connector.close_all().await;
    }
    drop(setup);
    let reporter = printer.reporter();
    reporter.run_finished(&run);
    if !c.check {
        let books: Vec<String> = a
            .playbooks
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let dir = c.inv.state_dir.as_path();
        let memos = new_memos(&run, judged, &memos);
        match RunState::record(
            dir,
            &run,
            &super::common::inventory_label(&c.inv.inventory),
            &books,
            &memos,
        ) {
            Ok(state) if !state.failed.is_empty() => reporter.message(&format!(
                "{} host(s) to retry: rerun with --retry-failed (or --limit @{})",
                state.failed.len(),
                RunState::retry_path(dir).display()
            )),
            Ok(_) => {}
            Err(e) => {
                reporter.warning(&format!("cannot write run state in {}: {e}", dir.display()))
            }
        }
        if let Some(p) = planned.secrets.generated_stored_in() {
            reporter.message(&format!(
                "generated secrets stored in {} (0600)",
                p.display()
            ));
        }
    }
    Ok(run.exit_code())
}

/// Sessions preflight leaves open for the run at least (more with more `--forks`): a fleet
/// this size costs one connection per host. Each kept host costs ~0.1 MiB of peak RSS more
/// than one preflight closed: 1,000 hosts at forks 100 peaked at 89.2 MiB (first run) / 82.9
/// MiB (re-run) with 100 kept, 189.6 / 151.2 MiB with all 1,000 kept, which saved a reconnect
/// each (116.5 s → 99.9 s first run). It is russh's: a massif profile of a deploy keeping 150
/// sessions shows per session ~49 KB of packet buffers, ~31 KB for its task and ~71 KB for
/// the four message queues `connect_stream` creates (tokio allocates each queue's first block
/// up front); nothing promfleet holds comes close (benches/README.md, session 9). Each is also
/// a file descriptor (a jump host's default soft limit is 1,024).
const PREFLIGHT_KEPT_SESSIONS: usize = 100;

/// Preflight the plan's fleet hosts that get a compose project, over `connector`'s sessions
/// (kept for the run), through `sched`, and plan again with the variables preflight chose:
/// what `deploy` and `status` compare and write is then the same. Each host's batch also asks
/// `also(plan)` for it (the facts the command reads next; their paths do not depend on the
/// variables preflight chooses, and a fact whose question did change is simply asked again),
/// left in `primed`.
// Eight inputs: the pass's plan, sessions, scheduler and hand-overs, each needed as is.
#[allow(clippy::too_many_arguments)]
pub async fn preflight_plan(
    planned: &mut Planned,
    connector: Arc<crate::executor::Connector>,
    also: impl FnOnce(&crate::playbook::Plan) -> super::preflight::Also,
    forks: usize,
    sched: &crate::executor::Scheduler,
    primed: &crate::facts::Primed,
    opts: &playbook::PlanOptions,
    memos: &BTreeMap<String, Memo>,
) -> anyhow::Result<Vec<crate::status::preflight::HostPreflight>> {
    // What preflight checks is what compose needs.
    let composing: std::collections::HashSet<&str> = planned
        .plan
        .plays
        .iter()
        .flat_map(|p| &p.hosts)
        .filter(|hp| {
            hp.steps
                .iter()
                .any(|s| matches!(s.action, Some(crate::modules::Action::Compose(_))))
        })
        .map(|hp| hp.host.name.as_str())
        .collect();
    let hosts: Vec<Host> = planned
        .plan
        .hosts()
        .into_iter()
        .filter(|h| composing.contains(h.name.as_str()) && !h.is_monitoring())
        .cloned()
        .collect();
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    let also = also(&planned.plan);
    // Hosts promfleet deployed, unchanged since: the cheap check first (`status::unchanged`).
    let unchanged: HashMap<String, Unchanged> = hosts
        .iter()
        .filter_map(|h| {
            let memo = memos.get(&h.name)?;
            Some((
                h.name.clone(),
                Unchanged::new(&planned.plan, &h.name, memo)?,
            ))
        })
        .collect();
    // The hosts the next pass starts first keep their session (and preflight asks their
    // facts for it); the rest reconnect when their turn comes, so 1,000 hosts do not hold
    // 1,000 connections through the whole run.
    let keep = forks.max(PREFLIGHT_KEPT_SESSIONS);
    let mut results = super::preflight::preflight_fleet(
        connector.clone(),
        &planned.inventory,
        &planned.defaults,
        &hosts,
        also,
        unchanged,
        keep,
        sched,
        primed,
    )
    .await;
    let before =
        (!memos.is_empty()).then(|| (planned.inventory.hosts.clone(), planned.hosts.clone()));
    let overrides = overrides_of(&results);
    if !overrides.is_empty() {
        planned.adapt(&overrides, opts)?;
    }
    // A host judged on its memo whose plan now writes other content would be changed: it is
    // probed in full first, and the plan made again from the inventory with what it found.
    let stale: Vec<Host> = results
        .iter()
        .filter(|r| {
            r.unchanged_since.is_some()
                && memos.get(&r.host).map(|m| &m.files)
                    != Some(&planned_digests(&planned.plan, &r.host))
        })
        .filter_map(|r| hosts.iter().find(|h| h.name == r.host).cloned())
        .collect();
    if let Some(before) = before
        && !stale.is_empty()
    {
        let again = super::preflight::preflight_fleet(
            connector,
            &planned.inventory,
            &planned.defaults,
            &stale,
            super::preflight::Also::new(),
            HashMap::new(),
            keep,
            sched,
            primed,
        )
        .await;
        for r in again {
            if let Some(slot) = results.iter_mut().find(|x| x.host == r.host) {
                *slot = r;
            }
        }
        (planned.inventory.hosts, planned.hosts) = before;
        planned.adapt(&overrides_of(&results), opts)?;
    }
    Ok(results)
}

/// The variables each adapting host gets (those the inventory does not set).
fn overrides_of(
    results: &[crate::status::preflight::HostPreflight],
) -> HashMap<String, crate::inventory::Vars> {
    use crate::status::preflight::Verdict;
    results
        .iter()
        .filter(|r| r.verdict == Verdict::Adapt)
        .map(|r| (r.host.clone(), r.overrides()))
        .collect()
}

/// The memos this run leaves (`None`: forget the host's): a host the run left ok or changed
/// keeps the memo it was judged on, or gets one from its full preflight and the files the run
/// wrote; every other host of the run loses its memo.
fn new_memos(
    run: &crate::report::RunReport,
    judged: Vec<(
        crate::status::preflight::HostPreflight,
        BTreeMap<String, String>,
    )>,
    previous: &BTreeMap<String, Memo>,
) -> BTreeMap<String, Option<Memo>> {
    use crate::report::HostStatus;
    let now = crate::base::clock::now_rfc3339();
    let mut out: BTreeMap<String, Option<Memo>> =
        run.hosts.iter().map(|h| (h.host.clone(), None)).collect();
    for (r, files) in judged {
        let done = run
            .hosts
            .iter()
            .any(|h| h.host == r.host && matches!(h.status, HostStatus::Ok | HostStatus::Changed));
        if !done {
            continue;
        }
        let memo = if r.unchanged_since.is_some() {
            previous.get(&r.host).cloned()
        } else {
            Memo::of(&r, files, &now)
        };
        out.insert(r.host.clone(), memo);
    }
    out
}

/// Deploy's first step: preflight (see `preflight_plan`), print each host that adapts or is
/// blocked, and return the hosts the run must not touch (blocked ones, with why and the fix;
/// unreachable ones as the run would report them).
async fn preflight(
    planned: &mut Planned,
    setup: &super::common::Setup,
    forks: usize,
    opts: &playbook::PlanOptions,
    primed: &crate::facts::Primed,
    memos: &BTreeMap<String, Memo>,
) -> anyhow::Result<(
    HashMap<String, crate::executor::Blocked>,
    Vec<crate::status::preflight::HostPreflight>,
)> {
    use crate::status::preflight::Verdict;
    let ex = &setup.executor;
    // The run's forks and Ctrl-C (a host cancellation kept from its preflight is not run).
    let sched = crate::executor::Scheduler::new(forks, ex.cancel.clone(), ex.abort.clone());
    let results = preflight_plan(
        planned,
        ex.connector.clone(),
        crate::executor::first_play_facts,
        forks,
        &sched,
        primed,
        opts,
        memos,
    )
    .await?;
    let reporter = &setup.reporter;
    let unchanged = results
        .iter()
        .filter(|r| r.unchanged_since.is_some())
        .count();
    if unchanged > 0 {
        reporter.notice(&format!(
            "preflight: {unchanged} of {} host(s) unchanged since promfleet deployed them (files as written, every service running): not probed again (--full-preflight probes them)",
            results.len()
        ));
    }
    let mut blocked = HashMap::new();
    for r in &results {
        match r.verdict {
            Verdict::Blocked => {
                let b = match r.connect_failure.clone() {
                    Some(b) => b,
                    None => {
                        reporter.notice(&format!(
                            "preflight: {} blocked, left untouched: {}",
                            r.host,
                            r.summary()
                        ));
                        crate::executor::Blocked {
                            status: crate::report::HostStatus::Failed,
                            error: format!("preflight: {}", r.summary()),
                            failed_at: "preflight".into(),
                        }
                    }
                };
                blocked.insert(r.host.clone(), b);
            }
            Verdict::Adapt => reporter.notice(&format!(
                "preflight: {} will adapt: {}{}",
                r.host,
                r.summary(),
                match &r.unchanged_since {
                    Some(at) => format!(" (unchanged since it was probed at {at})"),
                    None => String::new(),
                }
            )),
            Verdict::Ready => {}
        }
    }
    Ok((blocked, results))
}
