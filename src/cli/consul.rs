//! `promfleet consul prune`: deregister, on every agent of the inventory, promfleet's services
//! whose host left the inventory (or whose ip changed), and the extra copies of a live host's
//! service held by more agents than registration designates (after a failover), keeping the
//! copies registration would make (one, or two on two monitoring hosts in HA). The deregistrations fan out through the `Scheduler` (a few at once, Ctrl-C
//! stops the rest); each is reported as a `report::Pruned` event.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::common::{inventory_label, load_inventory, resolve_consul, signals};
use crate::executor::{Done, Scheduler};
use crate::inventory::Inventory;
use crate::modules::consul::{AgentService, ConsulClient};
use crate::playbook::Secrets;
use crate::report::{ExitCode, Printer, PruneAction, Pruned};

/// Deregistrations in flight at once: Consul agents are few and shared; a handful keeps
/// a large prune quick without crowding them.
const PRUNE_FORKS: usize = 8;

#[derive(Subcommand, Debug)]
pub enum ConsulCmd {
    /// Remove services of hosts no longer in the inventory, and duplicate registrations.
    Prune {
        /// Inventory file or directory; repeatable, merged as for the other commands.
        #[arg(
            short = 'i',
            long = "inventory",
            env = "PROMFLEET_INVENTORY",
            required = true
        )]
        inventory: Vec<PathBuf>,
        /// Only list what would be removed.
        #[arg(short = 'C', long)]
        check: bool,
        /// YAML secrets file (mode 0600) that may hold the Consul token (`consul_token`) and
        /// TLS settings (`consul_ca_file`, …).
        #[arg(long, env = "PROMFLEET_SECRETS")]
        secrets: Option<PathBuf>,
    },
}

/// Why a service is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Its host is not in the inventory, or has another address now.
    Departed,
    /// Another agent holds the copy registration would use.
    Duplicate,
}

impl Reason {
    fn text(self) -> &'static str {
        match self {
            Reason::Departed => "host not in the inventory at this address",
            Reason::Duplicate => "duplicate: registered on another agent too",
        }
    }
}

/// What prune removes: (agent, service, why), in agent-then-id order.
fn stale(
    inv: &Inventory,
    client: &ConsulClient,
    services: Vec<(String, AgentService)>,
) -> Vec<(String, AgentService, Reason)> {
    let mut out = Vec::new();
    // Live services by id: every agent holding one.
    let mut live: BTreeMap<String, Vec<(String, AgentService)>> = BTreeMap::new();
    for (agent, s) in services {
        let meta = s.meta.clone().unwrap_or_default();
        let host = meta.get("hostname").and_then(|h| inv.host(h));
        match host {
            // Still in the inventory at the same address: live.
            Some(h) if s.address == h.ip.to_string() => {
                live.entry(s.id.clone()).or_default().push((agent, s))
            }
            _ => out.push((agent, s, Reason::Departed)),
        }
    }
    for copies in live.into_values().filter(|c| c.len() > 1) {
        let holders: Vec<&str> = copies.iter().map(|(a, _)| a.as_str()).collect();
        let hostname = copies[0]
            .1
            .meta
            .as_ref()
            .and_then(|m| m.get("hostname"))
            .cloned()
            .unwrap_or_default();
        // The copies registration makes (two on two monitoring hosts in HA); a lone copy
        // outside them (another datacenter's agent) stays until registration replaces it.
        let mut keep = client.keepers(&hostname, &holders);
        if keep.is_empty() {
            keep.push(holders[0]);
        }
        let keep: Vec<String> = keep.into_iter().map(str::to_owned).collect();
        out.extend(
            copies
                .into_iter()
                .filter(|(a, _)| !keep.contains(a))
                .map(|(a, s)| (a, s, Reason::Duplicate)),
        );
    }
    out
}

pub async fn run(cmd: ConsulCmd, printer: &Printer) -> anyhow::Result<ExitCode> {
    let reporter = printer.reporter();
    // Before anything else: an interrupt while the agents are listed ends the command
    // cleanly, with nothing removed.
    let (cancel, abort) = signals(&reporter);
    let sched = Scheduler::new(PRUNE_FORKS, cancel, abort).reporting_to(reporter.clone());
    let ConsulCmd::Prune {
        inventory,
        check,
        secrets,
    } = cmd;
    let mut secrets = Secrets::load(secrets.as_deref(), printer.masker().clone())?;
    let mut inv = load_inventory(
        &inventory,
        Path::new(crate::transport::SSH_CONFIG_DEFAULT),
        printer,
    )?;
    let consul = resolve_consul(&mut inv, &mut secrets, printer)?;
    if consul.agents().is_empty() {
        anyhow::bail!(
            "{}: no Consul agents (consul.agents) in the inventory, nor CONSUL_HTTP_ADDR",
            inventory_label(&inventory)
        );
    }
    let client = consul.client()?;
    let (services, errors) = client.managed_on(&sched).await;
    if sched.is_cancelled() {
        reporter.notice("interrupted while listing the agents' services: nothing removed");
        return Ok(ExitCode::Interrupted);
    }
    for e in &errors {
        reporter.warning(&format!("cannot list services on {e}"));
    }
    let stale = stale(&inv, &client, services);
    if stale.is_empty() {
        reporter.notice(
            "nothing to prune: every promfleet service belongs to an inventory host and is registered once",
        );
        return Ok(if errors.is_empty() {
            ExitCode::Ok
        } else {
            ExitCode::HostUnreachable
        });
    }
    if check {
        for (agent, s, why) in &stale {
            reporter.pruned(&Pruned {
                service: s.id.clone(),
                agent: agent.clone(),
                reason: why.text().into(),
                action: PruneAction::WouldDeregister,
            });
        }
        return Ok(ExitCode::Ok);
    }
    reporter.work_started("prune", stale.len());
    let items = stale
        .into_iter()
        .map(|(agent, s, why)| (format!("{} on {agent}", s.id), (agent, s.id, why)))
        .collect();
    let s = sched.clone();
    let mut running = sched.run(
        items,
        move |(agent, service, why): (String, String, Reason)| {
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
                    reason: why.text().into(),
                    action,
                }
            }
        },
    );
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
