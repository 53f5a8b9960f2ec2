//! `promfleet status`: a read-only report of the fleet (one row per host) and the central
//! services, compared with what promfleet would deploy now. Exit codes for cron and CI:
//! 0 all good, 5 drift, 6 down (down wins when both).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use super::common::{ConnArgs, InventoryArgs, OutputArgs, OutputFormat, connector, masker};
use super::deploy::make_plan;
use crate::executor::http_client;
use crate::modules::consul::ConsulClient;
use crate::playbook::{self, SecretMode, Step};
use crate::report::ExitCode;
use crate::status::host::{Gatherer, Wanted};
use crate::status::targets::PromTargets;
use crate::status::{CentralRow, HostRow, State, StatusReport, central};

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
    /// ones deploy's preflight would choose per host (one round trip per host less).
    #[arg(long)]
    pub skip_preflight: bool,
}

pub async fn run(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut planned = make_plan(
        std::slice::from_ref(&a.playbook),
        &a.inv,
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
    // the exporter variables is not drift). The sessions are the gatherer's.
    let connector = Arc::new(connector(&a.conn, &planned.secrets)?);
    if a.scope != Scope::Central && !a.skip_preflight {
        super::deploy::preflight_plan(
            &mut planned,
            connector.clone(),
            a.conn.forks,
            &playbook::PlanOptions::default(),
        )
        .await?;
    }
    let defaults = planned.defaults.clone();
    let inv = &planned.inventory;

    // Every step each host would run, across the plays (a staged play is one play per stage).
    let mut steps: HashMap<&str, Vec<&Step>> = HashMap::new();
    for play in &planned.plan.plays {
        for hp in &play.hosts {
            steps
                .entry(hp.host.name.as_str())
                .or_default()
                .extend(hp.steps.iter());
        }
    }
    let wanted: Vec<_> = planned
        .plan
        .hosts()
        .into_iter()
        .map(|h| {
            let w = Wanted::from_steps(steps.get(h.name.as_str()).into_iter().flatten().copied());
            (h.clone(), w)
        })
        .collect();

    let http = http_client();
    let token = planned.secrets.consul_token().map(str::to_owned);
    let consul = Arc::new(ConsulClient::new(
        inv.consul.agents.clone(),
        token.clone(),
        http.clone(),
    ));

    let hosts_fut = async {
        if a.scope == Scope::Central {
            return Vec::new();
        }
        let proms = futures::future::join_all(inv.monitoring().filter_map(|h| {
            let vars = central::host_vars(inv, &defaults, h);
            let url = central::service_url(&vars, h, "prometheus", "prometheus_port")?;
            let http = http.clone();
            Some(async move { PromTargets::fetch(&http, &url).await })
        }))
        .await;
        let g = Arc::new(Gatherer {
            connector: connector.clone(),
            http: http.clone(),
            consul: consul.clone(),
            proms: Arc::new(proms),
        });
        g.gather_all(wanted, a.conn.forks).await
    };
    let central_fut = async {
        if a.scope == Scope::Fleet {
            return Vec::new();
        }
        central::gather(inv, &defaults, &http, token.as_deref()).await
    };
    let (hosts, central) = tokio::join!(hosts_fut, central_fut);
    connector.close_all().await;

    let report = StatusReport::new(hosts, central);
    let m = masker();
    if a.out.output == OutputFormat::Json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        println!("{}", m.mask(&text));
        eprintln!("{}", m.mask(&summary_line(&report)));
    } else {
        print!("{}", m.mask(&render_text(&report, a.out.verbose > 0)));
    }
    Ok(report.exit_code)
}

/// `4 hosts: 3 ok, 1 drift, 0 down; central: 2 ok, 0 drift, 4 down → exit 6 (down)`.
pub fn summary_line(r: &StatusReport) -> String {
    let s = &r.summary;
    let verdict = match r.state {
        State::Down => "down",
        State::Drift => "drift",
        _ => "all good",
    };
    let mut parts = Vec::new();
    if s.hosts > 0 {
        parts.push(format!(
            "{} hosts: {} ok, {} drift, {} down",
            s.hosts, s.hosts_ok, s.hosts_drift, s.hosts_down
        ));
    }
    if s.central > 0 {
        parts.push(format!(
            "central services: {} ok, {} drift, {} down",
            s.central_ok, s.central_drift, s.central_down
        ));
    }
    format!(
        "{} → exit {} ({verdict})",
        parts.join("; "),
        r.exit_code.code()
    )
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The text report: host table, problems, central table, summary line.
pub fn render_text(r: &StatusReport, verbose: bool) -> String {
    let mut out = String::new();
    if !r.hosts.is_empty() {
        out.push_str(&hosts_table(&r.hosts));
        let problems: Vec<String> = r
            .hosts
            .iter()
            .flat_map(|h| {
                h.checks
                    .0
                    .iter()
                    .filter(|(_, c)| verbose || matches!(c.state, State::Drift | State::Down))
                    .filter(|(_, c)| !c.detail.is_empty())
                    .map(move |(n, c)| {
                        format!("  {} {n} [{}]: {}", h.host, c.state.as_str(), c.detail)
                    })
            })
            .collect();
        if !problems.is_empty() {
            out.push('\n');
            out.push_str(&problems.join("\n"));
            out.push('\n');
        }
    }
    if !r.central.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&central_table(&r.central));
    }
    out.push('\n');
    out.push_str(&summary_line(r));
    out.push('\n');
    out
}

fn hosts_table(hosts: &[HostRow]) -> String {
    let mut names: Vec<String> = Vec::new();
    for h in hosts {
        for (n, _) in &h.checks.0 {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let mut rows = vec![
        ["HOST", "GROUP", "STATE"]
            .iter()
            .map(|s| s.to_string())
            .chain(names.iter().map(|n| n.to_uppercase()))
            .collect::<Vec<_>>(),
    ];
    for h in hosts {
        let mut row = vec![
            h.host.clone(),
            h.group.clone(),
            h.state.as_str().to_string(),
        ];
        for n in &names {
            row.push(h.checks.get(n).map_or("-".into(), |c| c.summary.clone()));
        }
        rows.push(row);
    }
    table(&rows)
}

fn central_table(central: &[CentralRow]) -> String {
    let mut rows = vec![
        ["SERVICE", "AT", "STATE", "DETAIL"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    ];
    for c in central {
        rows.push(vec![
            c.service.clone(),
            c.at.clone(),
            c.check.state.as_str().to_string(),
            c.check.detail.clone(),
        ]);
    }
    table(&rows)
}
