//! `promfleet consul prune`: deregister promfleet's services whose host left the inventory
//! (or whose ip changed), on every agent of the inventory. The deregistrations fan out
//! through the `Scheduler` (a few at once, Ctrl-C stops the rest); each is reported as a
//! `report::Pruned` event.

use std::sync::Arc;

use clap::Subcommand;

use super::common::{load_inventory, signals};
use crate::executor::{Done, Scheduler, http_client};
use crate::modules::consul::ConsulClient;
use crate::playbook::Secrets;
use crate::report::{ExitCode, Printer, PruneAction, Pruned};

/// Deregistrations in flight at once: Consul agents are few and shared; a handful keeps
/// a large prune quick without crowding them.
const PRUNE_FORKS: usize = 8;

#[derive(Subcommand, Debug)]
pub enum ConsulCmd {
    /// Remove services of hosts no longer in the inventory.
    Prune {
        #[arg(short = 'i', long = "inventory", env = "PROMFLEET_INVENTORY")]
        inventory: std::path::PathBuf,
        /// Only list what would be removed.
        #[arg(short = 'C', long)]
        check: bool,
        /// YAML secrets file (mode 0600) that may hold the Consul token (`consul_token`).
        #[arg(long, env = "PROMFLEET_SECRETS")]
        secrets: Option<std::path::PathBuf>,
    },
}

pub async fn run(cmd: ConsulCmd, printer: &Printer) -> anyhow::Result<ExitCode> {
    let reporter = printer.reporter();
    let ConsulCmd::Prune {
        inventory,
        check,
        secrets,
    } = cmd;
    let secrets = Secrets::load(secrets.as_deref(), printer.masker().clone())?;
    let inv = load_inventory(std::slice::from_ref(&inventory), printer.masker())?;
    if inv.consul.agents.is_empty() {
        anyhow::bail!(
            "{}: no Consul agents (consul.agents) in the inventory",
            inventory.display()
        );
    }
    let client = Arc::new(ConsulClient::new(
        inv.consul.agents.clone(),
        secrets.consul_token().map(str::to_owned),
        http_client(),
    ));
    let (services, errors) = client.managed().await;
    for e in &errors {
        reporter.warning(&format!("cannot list services on {e}"));
    }
    let stale: Vec<_> = services
        .into_iter()
        .filter(|(_, s)| {
            let meta = s.meta.clone().unwrap_or_default();
            let host = meta.get("hostname").and_then(|h| inv.host(h));
            match host {
                // Still in the inventory: stale only if its address moved.
                Some(h) => s.address != h.ip.to_string(),
                None => true,
            }
        })
        .collect();
    if stale.is_empty() {
        reporter.notice("nothing to prune: every promfleet service belongs to an inventory host");
        return Ok(if errors.is_empty() {
            ExitCode::Ok
        } else {
            ExitCode::HostUnreachable
        });
    }
    if check {
        for (agent, s) in &stale {
            reporter.pruned(&Pruned {
                service: s.id.clone(),
                agent: agent.clone(),
                action: PruneAction::WouldDeregister,
            });
        }
        return Ok(ExitCode::Ok);
    }
    let (cancel, abort) = signals(&reporter);
    let sched = Scheduler::new(PRUNE_FORKS, cancel, abort).reporting_to(reporter.clone());
    reporter.work_started("prune", stale.len());
    let items = stale
        .into_iter()
        .map(|(agent, s)| (format!("{} on {agent}", s.id), (agent, s.id)))
        .collect();
    let s = sched.clone();
    let mut running = sched.run(items, move |(agent, service): (String, String)| {
        let (client, s) = (client.clone(), s.clone());
        async move {
            let action = match s.or_abort(client.deregister_at(&agent, &service)).await {
                Some(Ok(())) => PruneAction::Deregistered,
                Some(Err(e)) => PruneAction::Failed(e),
                None => PruneAction::Failed("abandoned (second interrupt)".into()),
            };
            Pruned {
                service,
                agent,
                action,
            }
        }
    });
    let mut failed = 0;
    while let Some((_, done)) = running.next().await {
        if let Done::Ran(p) = done {
            failed += usize::from(matches!(p.action, PruneAction::Failed(_)));
            reporter.pruned(&p);
        }
    }
    Ok(if sched.is_cancelled() {
        ExitCode::Interrupted
    } else if failed > 0 {
        ExitCode::HostFailed
    } else {
        ExitCode::Ok
    })
}
