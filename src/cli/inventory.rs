//! `promfleet inventory list|import`.

use std::path::PathBuf;

use clap::Subcommand;

use futures::StreamExt;

use super::common::{ConnArgs, InventoryArgs, load_inventory_with, select, ssh_config};
use crate::inventory;
use crate::transport::{StrictHostKeyChecking, Target};

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

pub async fn run(
    cmd: InventoryCmd,
    printer: &crate::report::Printer,
) -> anyhow::Result<crate::report::ExitCode> {
    match cmd {
        InventoryCmd::SshConfig {
            inv: args,
            conn,
            json,
        } => {
            let inv = load_inventory_with(&args.inventory, args.no_resolve, printer)?;
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
            let mut failed = 0;
            let mut rows = Vec::new();
            for (h, r) in resolved {
                match r {
                    Ok(t) if json => rows.push(target_json(&t)),
                    Ok(t) => print!("{}", target_text(&t, "")),
                    Err(e) => {
                        failed += 1;
                        if json {
                            rows.push(serde_json::json!({"name": h.name, "error": e.to_string()}));
                        } else {
                            eprintln!("{}: {e}", h.name);
                        }
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            }
            // A host ssh cannot resolve is bad setup, not a run outcome.
            Ok(if failed > 0 {
                crate::report::ExitCode::Error
            } else {
                crate::report::ExitCode::Ok
            })
        }
        InventoryCmd::List { inv: args, json } => {
            let inv = load_inventory_with(&args.inventory, args.no_resolve, printer)?;
            let hosts = select(&inv, &args)?;
            if json {
                let rows: Vec<serde_json::Value> = hosts
                    .iter()
                    .map(|h| {
                        let by_name = inv.resolved_names.get(&h.name);
                        // A `--no-resolve` stand-in is no address of the host's.
                        let ip = (!by_name.is_some_and(|r| r.stand_in)).then(|| h.ip.to_string());
                        serde_json::json!({
                            "name": h.name, "ip": ip, "group": h.group,
                            "resolved_from": by_name.map(|r| &r.name),
                            "groups": h.groups, "user": h.ssh.user, "port": h.ssh.port,
                            "address": h.ssh.address.clone().unwrap_or_else(|| h.ip.to_string()),
                            "become": h.ssh.become_root,
                            // Where the sudo password comes from, never the password.
                            "become_password_from": h.ssh.become_password.as_ref().map(|p| p.source().to_string()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(crate::report::ExitCode::Ok);
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
                    eprintln!("wrote {} host(s) to {}", inv.hosts.len(), p.display());
                }
                None => print!("{yaml}"),
            }
            Ok(crate::report::ExitCode::Ok)
        }
    }
}

fn strict_name(s: Option<StrictHostKeyChecking>) -> Option<&'static str> {
    s.map(|s| match s {
        StrictHostKeyChecking::Yes => "yes",
        StrictHostKeyChecking::AcceptNew => "accept-new",
        StrictHostKeyChecking::No => "no",
    })
}

/// A resolved target as JSON; `null` = not set by the config (promfleet's flag applies).
fn target_json(t: &Target) -> serde_json::Value {
    let paths = |v: &[std::path::PathBuf]| -> Vec<String> {
        v.iter().map(|p| p.display().to_string()).collect()
    };
    serde_json::json!({
        "name": t.name,
        "hostname": t.address,
        "user": t.user,
        "port": t.port,
        "identityfile": paths(&t.keys),
        "identityfile_explicit": t.keys_explicit,
        "identitiesonly": t.identities_only,
        "proxyjump": t.jump.as_deref().map(target_json),
        "hostkeyalias": t.host_key_alias,
        "userknownhostsfile": paths(&t.user_known_hosts),
        "globalknownhostsfile": paths(&t.global_known_hosts),
        "stricthostkeychecking": strict_name(t.strict_host_key_checking),
        "hashknownhosts": t.hash_known_hosts,
        "connecttimeout": t.connect_timeout.map(|d| d.as_secs()),
        "serveraliveinterval": t.server_alive_interval.map(|d| d.as_secs()),
        "serveralivecountmax": t.server_alive_count_max,
        "become": t.become_root,
    })
}

/// `ssh -G`-style lines; a bastion's lines follow, indented, under `proxyjump`.
fn target_text(t: &Target, indent: &str) -> String {
    let mut out = format!("{indent}{}\n", t.name);
    let mut line = |k: &str, v: &str| out.push_str(&format!("{indent}  {k} {v}\n"));
    let yes = |b: bool| if b { "yes" } else { "no" };
    let unset = "(not set: promfleet's flag applies)";
    line("hostname", &t.address);
    line("user", &t.user);
    line("port", &t.port.to_string());
    for k in &t.keys {
        line("identityfile", &k.display().to_string());
    }
    line("identitiesonly", yes(t.identities_only));
    line(
        "hostkeyalias",
        t.host_key_alias.as_deref().unwrap_or("none"),
    );
    let files = |v: &[std::path::PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    line(
        "userknownhostsfile",
        &Some(files(&t.user_known_hosts))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| unset.into()),
    );
    line("globalknownhostsfile", &files(&t.global_known_hosts));
    line(
        "stricthostkeychecking",
        strict_name(t.strict_host_key_checking).unwrap_or(unset),
    );
    line("hashknownhosts", yes(t.hash_known_hosts));
    let secs = |d: Option<std::time::Duration>| {
        d.map_or_else(|| unset.to_string(), |d| d.as_secs().to_string())
    };
    line("connecttimeout", &secs(t.connect_timeout));
    line("serveraliveinterval", &secs(t.server_alive_interval));
    line(
        "serveralivecountmax",
        &t.server_alive_count_max
            .map_or_else(|| unset.to_string(), |n| n.to_string()),
    );
    match &t.jump {
        None => line("proxyjump", "none"),
        Some(j) => {
            line("proxyjump", "");
            out.push_str(&target_text(j, &format!("{indent}    ")));
        }
    }
    out
}
