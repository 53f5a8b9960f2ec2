//! `promfleet status`: a read-only report of the fleet (one row per host, gathered through
//! the `Scheduler`) and the central services, compared with what promfleet would deploy now,
//! handed to the reporter (text tables, or JSON). Exit codes for cron and CI: 0 all good,
//! 5 drift, 6 down (down wins when both), 130 interrupted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use super::common::{ConnArgs, InventoryArgs, OutputArgs, connector, signals};
use super::deploy::make_plan;
use crate::executor::{Scheduler, http_client};
use crate::playbook::{self, SecretMode, Step};
use crate::report::{ExitCode, Printer};
use crate::status::host::{Gatherer, Wanted};
use crate::status::targets::PromTargets;
use crate::status::{StatusReport, central};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// Fleet hosts and central services.
    All,
    /// Only the fleet hosts' rows.
    Fleet,
    /// Only the central services.
    Central,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    /// The exporter playbook whose rendering the hosts are compared with.
    #[arg(long, default_value = "playbooks/exporters.yml")]
    pub playbook: PathBuf,
    /// Templates directory overriding the built-in templates file by file (default: the
    /// project's `templates/`).
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// YAML secrets file (mode 0600), if the exporter templates use secrets.
    #[arg(long, env = "PROMFLEET_SECRETS")]
    pub secrets: Option<PathBuf>,
    /// What to report on.
    #[arg(long, value_enum, default_value_t = Scope::All)]
    pub scope: Scope,
    /// Compare with the built-in and inventory exporter variables as they are, without the
    /// ones deploy's preflight would choose per host (the same one round trip per host: the
    /// comparison's facts are asked in preflight's batch otherwise).
    #[arg(long)]
    pub skip_preflight: bool,
}

pub async fn run(a: StatusArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let reporter = printer.reporter();
    let mut planned = make_plan(
        printer,
        std::slice::from_ref(&a.playbook),
        &a.inv,
        &a.conn.ssh_config,
        a.templates.as_deref(),
        a.secrets.as_deref(),
        SecretMode::Real,
        &playbook::PlanOptions::default(),
        false,
    )?;
    // Central services need no fleet host: only the fleet view needs the play to select one.
    if a.scope != Scope::Central {
        planned.require_hosts()?;
    }
    // Compared with what deploy would write after its preflight (a host where it adapts
    // the exporter variables is not drift). The sessions are the gatherer's, and so are the
    // facts preflight asks with its own in its one round trip per host (`primed`).
    let connector = Arc::new(connector(&a.conn, &planned.secrets, &reporter)?);
    let (cancel, abort) = signals(&reporter);
    let sched = Scheduler::new(a.conn.forks, cancel, abort).reporting_to(reporter.clone());
    let primed = crate::facts::Primed::default();
    if a.scope != Scope::Central && !a.skip_preflight {
        super::deploy::preflight_plan(
            &mut planned,
            connector.clone(),
            |plan| {
                wanted_of(plan)
                    .into_iter()
                    .map(|(h, w)| (h.name, w.ask()))
                    .collect()
            },
            a.conn.forks,
            &Scheduler::new(
                a.conn.forks,
                sched.cancel_token().clone(),
                sched.abort_token().clone(),
            ),
            &primed,
            &playbook::PlanOptions::default(),
            // `status` probes every host in full: it reports what is there now.
            &Default::default(),
        )
        .await?;
    }
    let defaults = planned.defaults.clone();
    let inv = &planned.inventory;
    // Stand-in addresses would only show every check down.
    crate::inventory::refuse_stand_ins(inv)?;

    let wanted = wanted_of(&planned.plan);

    let http = http_client();
    let consul = planned.consul.client()?;

    let hosts_fut = async {
        if a.scope == Scope::Central {
            return Vec::new();
        }
        let proms = futures::future::join_all(inv.monitoring().filter_map(|h| {
            let vars = central::host_vars(inv, &defaults, h);
            let url = central::service_url(&vars, h, "prometheus", "prometheus_port")?;
            let prom = &planned.endpoints.prometheus;
            Some(async move { PromTargets::fetch(prom, &url).await })
        }))
        .await;
        let g = Arc::new(Gatherer {
            connector: connector.clone(),
            http: http.clone(),
            consul: consul.clone(),
            proms: Arc::new(proms),
            primed: primed.clone(),
        });
        reporter.work_started("status", wanted.len());
        g.gather_all(wanted, &sched).await
    };
    let central_fut = async {
        if a.scope == Scope::Fleet {
            return Vec::new();
        }
        // Central services share the forks and Ctrl-C, not the hosts' progress bar.
        central::gather(
            inv,
            &defaults,
            &http,
            &consul,
            &planned.endpoints,
            &sched.without_progress(),
        )
        .await
    };
    let (hosts, central) = tokio::join!(hosts_fut, central_fut);
    primed.clear();
    connector.close_all().await;

    let report = StatusReport::new(hosts, central);
    reporter.status(&report);
    // Interrupted: the hosts not gathered are missing from the report, so it cannot be
    // trusted as "all good".
    if sched.is_cancelled() {
        return Ok(ExitCode::Interrupted);
    }
    Ok(report.exit_code)
}

/// What each host of the plan should have: every step it would run, across the plays (a
/// staged play is one play per stage).
fn wanted_of(plan: &playbook::Plan) -> Vec<(crate::inventory::Host, Wanted)> {
    let mut steps: HashMap<&str, Vec<&Step>> = HashMap::new();
    for play in &plan.plays {
        for hp in &play.hosts {
            steps
                .entry(hp.host.name.as_str())
                .or_default()
                .extend(hp.steps.iter());
        }
    }
    plan.hosts()
        .into_iter()
        .map(|h| {
            let w = Wanted::from_steps(steps.get(h.name.as_str()).into_iter().flatten().copied());
            (h.clone(), w)
        })
        .collect()
}
