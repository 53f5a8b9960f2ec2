//! `promfleet consul prune`: deregister promfleet's services whose host left the inventory
//! (or whose ip changed), on every agent of the inventory.

use clap::Subcommand;

use super::common::{load_inventory, masker};
use crate::executor::http_client;
use crate::modules::consul::ConsulClient;
use crate::playbook::Secrets;
use crate::report::ExitCode;

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

pub async fn run(cmd: ConsulCmd) -> anyhow::Result<crate::report::ExitCode> {
    let ConsulCmd::Prune {
        inventory,
        check,
        secrets,
    } = cmd;
    let secrets = Secrets::load(secrets.as_deref(), masker())?;
    let inv = load_inventory(std::slice::from_ref(&inventory))?;
    if inv.consul.agents.is_empty() {
        anyhow::bail!(
            "{}: no Consul agents (consul.agents) in the inventory",
            inventory.display()
        );
    }
    let client = ConsulClient::new(
        inv.consul.agents.clone(),
        secrets.consul_token().map(str::to_owned),
        http_client(),
    );
    let (services, errors) = client.managed().await;
    for e in &errors {
        eprintln!("warning: cannot list services on {e}");
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
        eprintln!("nothing to prune: every promfleet service belongs to an inventory host");
        return Ok(if errors.is_empty() {
            ExitCode::Ok
        } else {
            ExitCode::HostUnreachable
        });
    }
    let mut failed = 0;
    for (agent, s) in &stale {
        if check {
            println!("would deregister {} from {agent}", s.id);
            continue;
        }
        match client.deregister_at(agent, &s.id).await {
            Ok(()) => println!("deregistered {} from {agent}", s.id),
            Err(e) => {
                failed += 1;
                eprintln!("failed to deregister {} from {agent}: {e}", s.id);
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::HostFailed
    } else {
        ExitCode::Ok
    })
}
