//! `promfleet inventory list|import`.

use std::path::PathBuf;

use clap::Subcommand;

use futures::StreamExt;

use super::common::{ConnArgs, InventoryArgs, load_inventory_with, select, ssh_config};
use crate::inventory;
use crate::report::{Format, HostListing, ListedHost, SshTargets};

/// `ssh -G` runs at once while resolving a whole inventory.
const RESOLVE_CONCURRENCY: usize = 16;

#[derive(Subcommand, Debug)]
pub enum InventoryCmd {
    /// Print the resolved hosts with their group, address and SSH settings.
    List {
        #[command(flatten)]
        inv: InventoryArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// OpenSSH client config through which hosts given by name are resolved, as for the
        /// commands that connect (`ssh -G`'s HostName, then DNS); the default means ssh's own
        /// lookup.
        #[arg(long, default_value = crate::transport::SSH_CONFIG_DEFAULT)]
        ssh_config: PathBuf,
    },
    /// Print how each host will be reached, after ~/.ssh/config as OpenSSH resolves it
    /// (`ssh -G`) and the inventory's overrides: the same names as `ssh -G`, plus ProxyJump hops.
    SshConfig {
        #[command(flatten)]
        inv: InventoryArgs,
        #[command(flatten)]
        conn: ConnArgs,
        /// Print JSON instead of `key value` lines.
        #[arg(long)]
        json: bool,
    },
    /// Convert the seed's server_list.txt (`hostname ip group`, tabs or spaces) to promfleet YAML.
    Import {
        /// The server list file.
        file: PathBuf,
        /// Write here instead of stdout.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
    },
}

impl InventoryCmd {
    /// `--json`: the reporter prints JSON on stdout.
    pub fn format(&self) -> Format {
        match self {
            InventoryCmd::List { json: true, .. } | InventoryCmd::SshConfig { json: true, .. } => {
                Format::Json
            }
            _ => Format::Text,
        }
    }
}

pub async fn run(
    cmd: InventoryCmd,
    printer: &crate::report::Printer,
) -> anyhow::Result<crate::report::ExitCode> {
    let reporter = printer.reporter();
    match cmd {
        InventoryCmd::SshConfig {
            inv: args, conn, ..
        } => {
            let inv =
                load_inventory_with(&args.inventory, args.no_resolve, &conn.ssh_config, printer)?;
            let hosts = select(&inv, &args)?;
            let config = ssh_config(&conn, printer.reporter().as_ref());
            let user = conn.user.as_deref();
            let resolved: Vec<_> = futures::stream::iter(hosts.iter())
                .map(|h| {
                    let config = &config;
                    async move { (h, config.target(h, user).await) }
                })
                .buffered(RESOLVE_CONCURRENCY)
                .collect()
                .await;
            let targets = SshTargets {
                hosts: resolved
                    .into_iter()
                    .map(|(h, r)| (h.name.clone(), r.map_err(|e| e.to_string())))
                    .collect(),
            };
            let failed = targets.hosts.iter().filter(|(_, r)| r.is_err()).count();
            reporter.ssh_targets(&targets);
            // A host ssh cannot resolve is bad setup, not a run outcome.
            Ok(if failed > 0 {
                crate::report::ExitCode::Error
            } else {
                crate::report::ExitCode::Ok
            })
        }
        InventoryCmd::List {
            inv: args,
            ssh_config,
            ..
        } => {
            let inv = load_inventory_with(&args.inventory, args.no_resolve, &ssh_config, printer)?;
            let hosts = select(&inv, &args)?;
            let listing = HostListing {
                hosts: hosts
                    .iter()
                    .map(|h| {
                        let by_name = inv.resolved_names.get(&h.name);
                        ListedHost {
                            name: h.name.clone(),
                            shown_ip: h.ip.to_string(),
                            // A `--no-resolve` stand-in is no address of the host's.
                            ip: (!by_name.is_some_and(|r| r.stand_in)).then(|| h.ip.to_string()),
                            group: h.group.clone(),
                            resolved_from: by_name.map(|r| r.name.clone()),
                            groups: h.groups.clone(),
                            user: h.ssh.user.clone(),
                            port: h.ssh.port,
                            address: h.ssh.address.clone().unwrap_or_else(|| h.ip.to_string()),
                            become_root: h.ssh.become_root,
                            become_password_from: h
                                .ssh
                                .become_password
                                .as_ref()
                                .map(|p| p.source().to_string()),
                        }
                    })
                    .collect(),
                agents: inv.consul.agents.clone(),
            };
            reporter.hosts_listed(&listing);
            Ok(crate::report::ExitCode::Ok)
        }
        InventoryCmd::Import { file, out } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let inv = inventory::import_server_list(&text, &file)?;
            let yaml = inventory::to_yaml(&inv);
            match out {
                Some(p) => {
                    std::fs::write(&p, yaml)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                    reporter.message(&format!(
                        "wrote {} host(s) to {}",
                        inv.hosts.len(),
                        p.display()
                    ));
                }
                None => reporter.generated(&yaml),
            }
            Ok(crate::report::ExitCode::Ok)
        }
    }
}
