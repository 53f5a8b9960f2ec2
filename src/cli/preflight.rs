//! `promfleet preflight -i INV [--limit …]`: every chosen fleet host's verdict — ready, will
//! adapt (how), blocked (why, and the fix) — read-only, one round trip per host. `deploy`
//! and `status` run the same pass first (`preflight_fleet`) unless `--skip-preflight`, asking
//! in the same round trip the facts they read next (`facts::Primed`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::common::{
    ConnArgs, InventoryArgs, OutputArgs, OutputFormat, connector, load_inventory_args, project_for,
    select, signals,
};
use crate::executor::{Connector, Scheduler};
use crate::facts::{ErasedFact, Primed};
use crate::inventory::{Host, Inventory, Vars};
use crate::playbook::Secrets;
use crate::report::{ExitCode, Printer};
use crate::status::preflight::{self, Ask, HostPreflight, Verdict, Wants};
use crate::status::unchanged::Unchanged;

#[derive(Args, Debug)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    /// YAML secrets file (mode 0600): its `become_password`, if any, is used for `become`.
    #[arg(long, env = "PROMFLEET_SECRETS")]
    pub secrets: Option<PathBuf>,
}

/// Facts to ask with each host's preflight batch (host name → facts), left in `Primed`.
pub type Also = std::collections::HashMap<String, Vec<Box<dyn ErasedFact>>>;

/// Preflight the fleet hosts among `hosts` (monitoring hosts run no exporters) through
/// `sched`. The first `keep` hosts keep their session for the command's next pass and have
/// their `also` facts asked in the same round trip (kept in `primed`); the others' sessions
/// are closed after their check (open connections, and memory, stay O(keep), not O(hosts)).
#[allow(clippy::too_many_arguments)]
pub async fn preflight_fleet(
    connector: Arc<Connector>,
    inventory: &Inventory,
    defaults: &Vars,
    hosts: &[Host],
    mut also: Also,
    mut unchanged: std::collections::HashMap<String, Unchanged>,
    keep: usize,
    sched: &Scheduler,
    primed: &Primed,
) -> Vec<HostPreflight> {
    let asks: Vec<Ask> = hosts
        .iter()
        .filter(|h| !h.is_monitoring())
        .enumerate()
        .map(|(i, h)| Ask {
            host: h.clone(),
            wants: Wants::new(h, defaults, &inventory.host_vars(h)),
            also: if i < keep {
                also.remove(&h.name).unwrap_or_default()
            } else {
                Vec::new()
            },
            keep: i < keep,
            unchanged: unchanged.remove(&h.name),
        })
        .collect();
    preflight::check_all(connector, asks, sched, primed).await
}

pub async fn run(a: PreflightArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let inventory = load_inventory_args(&a.inv, &a.conn.ssh_config, printer)?;
    let hosts: Vec<Host> = select(&inventory, &a.inv)?
        .into_iter()
        .filter(|h| !h.is_monitoring())
        .collect();
    if hosts.is_empty() {
        anyhow::bail!("no fleet host to check: the selection has only monitoring hosts, or none");
    }
    let project = project_for(&a.inv, None, None)?;
    let defaults = crate::playbook::load_defaults(&project)?;
    let secrets = Secrets::load(a.secrets.as_deref(), printer.masker().clone())?;
    let reporter = printer.reporter();
    let connector = Arc::new(connector(&a.conn, &secrets, &reporter)?);
    let (cancel, abort) = signals(&reporter);
    let sched = Scheduler::new(a.conn.forks, cancel, abort);
    let results = preflight_fleet(
        connector.clone(),
        &inventory,
        &defaults,
        &hosts,
        Also::new(),
        Default::default(),
        0,
        &sched,
        &Primed::default(),
    )
    .await;
    connector.close_all().await;
    // The verdicts are this command's result (stdout), masked by the run's one masker.
    let m = printer.masker();
    if a.out.output == OutputFormat::Json {
        let count = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
        let doc = serde_json::json!({
            "hosts": results,
            "summary": {
                "ready": count(Verdict::Ready),
                "adapt": count(Verdict::Adapt),
                "blocked": count(Verdict::Blocked),
            }
        });
        println!(
            "{}",
            m.mask(&serde_json::to_string_pretty(&doc).unwrap_or_default())
        );
    } else {
        print!("{}", m.mask(&render(&results, a.out.verbose)));
    }
    // Interrupted: the hosts not checked are missing, so the verdicts are not the fleet's.
    if sched.is_cancelled() {
        return Ok(ExitCode::Interrupted);
    }
    Ok(exit_code(&results))
}

/// Blocked hosts fail the command (2); unreachable ones say so (4).
fn exit_code(results: &[HostPreflight]) -> ExitCode {
    if results
        .iter()
        .any(|r| r.verdict == Verdict::Blocked && !r.unreachable)
    {
        ExitCode::HostFailed
    } else if results.iter().any(|r| r.unreachable) {
        ExitCode::HostUnreachable
    } else {
        ExitCode::Ok
    }
}

/// One line per host (and each check with -v); blockers and adaptations one per line.
pub fn render(results: &[HostPreflight], verbose: u8) -> String {
    let width = results.iter().map(|r| r.host.len()).max().unwrap_or(4);
    let mut s = String::new();
    for r in results {
        s.push_str(&format!(
            "{:width$}  {:8}  {}\n",
            r.host,
            r.group,
            r.verdict.label()
        ));
        for b in &r.blockers {
            s.push_str(&format!("    blocked: {}\n      fix: {}\n", b.why, b.fix));
        }
        for a in &r.adaptations {
            let v = match &a.value {
                serde_json::Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            if a.applied {
                s.push_str(&format!("    adapt: {}={v} ({})\n", a.var, a.why));
            } else {
                s.push_str(&format!(
                    "    kept: {} as the inventory sets it (preflight would choose {v}: {})\n",
                    a.var, a.why
                ));
            }
        }
        if verbose > 0 {
            for (k, v) in &r.checks {
                s.push_str(&format!("    {k}: {v}\n"));
            }
        }
    }
    let count = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
    s.push_str(&format!(
        "{} host(s): {} ready, {} will adapt, {} blocked\n",
        results.len(),
        count(Verdict::Ready),
        count(Verdict::Adapt),
        count(Verdict::Blocked)
    ));
    s
}
