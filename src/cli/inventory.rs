//! `promfleet inventory list|import`.

use std::path::PathBuf;

use clap::Subcommand;

use super::common::{InventoryArgs, load_inventory, select};
use crate::inventory;

#[derive(Subcommand, Debug)]
pub enum InventoryCmd {
    /// Print the resolved hosts with their group, address and SSH settings.
    List {
        #[command(flatten)]
        inv: InventoryArgs,
        /// Print JSON instead of a table.
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

pub fn run(cmd: InventoryCmd) -> anyhow::Result<i32> {
    match cmd {
        InventoryCmd::List { inv: args, json } => {
            let inv = load_inventory(&args.inventory)?;
            let hosts = select(&inv, &args)?;
            if json {
                let rows: Vec<serde_json::Value> = hosts
                    .iter()
                    .map(|h| {
                        serde_json::json!({
                            "name": h.name, "ip": h.ip.to_string(), "group": h.group,
                            "groups": h.groups, "user": h.ssh.user, "port": h.ssh.port,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            let w = hosts.iter().map(|h| h.name.len()).max().unwrap_or(4).max(4);
            println!("{:<w$}  {:<15}  {:<12}  SSH", "HOST", "IP", "GROUP");
            for h in &hosts {
                let ssh = format!(
                    "{}{}:{}",
                    h.ssh
                        .user
                        .as_deref()
                        .map(|u| format!("{u}@"))
                        .unwrap_or_default(),
                    h.ssh.address.clone().unwrap_or_else(|| h.ip.to_string()),
                    h.ssh.port.unwrap_or(22)
                );
                println!(
                    "{:<w$}  {:<15}  {:<12}  {ssh}",
                    h.name,
                    h.ip.to_string(),
                    h.group
                );
            }
            let groups: std::collections::BTreeSet<&str> =
                hosts.iter().map(|h| h.group.as_str()).collect();
            println!(
                "\n{} host(s) in {} group(s); Consul agents: {}",
                hosts.len(),
                groups.len(),
                if inv.consul.agents.is_empty() {
                    "none".to_string()
                } else {
                    inv.consul.agents.join(", ")
                }
            );
            Ok(0)
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
                    eprintln!("wrote {} host(s) to {}", inv.hosts.len(), p.display());
                }
                None => print!("{yaml}"),
            }
            Ok(0)
        }
    }
}
