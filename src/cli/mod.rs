//! Command-line interface: clap definitions, then one module per subcommand, which loads the
//! inventory, playbooks and secrets it needs, runs, reports through the `report::Printer`
//! `main` built from its flags (`Command::output`), and returns a `report::ExitCode`.
//! What several subcommands share (flags, inventory loading, the connector) is in `common`;
//! Consul settings (agents, token, TLS) are resolved once by `settings` (through
//! `common::resolve_consul`) and every Consul client is built from them.

pub mod alert;
pub mod common;
pub mod completions;
pub mod consul;
pub mod deploy;
pub mod exec;
pub mod init;
pub mod inventory;
pub mod preflight;
pub mod render;
pub mod rollback;
pub mod status;

use clap::{Parser, Subcommand};

use crate::report::{Format, OutputPolicy, Printer};

/// `promfleet --version`: the crate version and the git commit it was built from (build.rs;
/// "unknown" when built outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PROMFLEET_COMMIT"),
    ")"
);

/// Roll out Prometheus monitoring to a fleet of Docker hosts over SSH — agentless, Ansible-style.
#[derive(Parser, Debug)]
#[command(name = "promfleet", version = VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write an editable project (inventory, playbooks, templates, secrets skeleton), or with
    /// --diff show how a project differs from this version's built-in files.
    Init(init::InitArgs),
    /// Inspect or convert inventories.
    #[command(subcommand)]
    Inventory(inventory::InventoryCmd),
    /// Run an ad-hoc shell command on hosts (like `ansible all -a …`).
    Exec(exec::ExecArgs),
    /// Run playbooks against the inventory.
    Deploy(deploy::DeployArgs),
    /// Shortcut: deploy playbooks/exporters.yml (node-exporter + cAdvisor, verify, register).
    Exporters(deploy::ExportersArgs),
    /// Restore the files the last run changed on the chosen hosts (from `.prev`), re-apply.
    Rollback(rollback::RollbackArgs),
    /// Render every file for every host into a directory, without connecting (secrets masked).
    Render(render::RenderArgs),
    /// Consul housekeeping.
    #[command(subcommand)]
    Consul(consul::ConsulCmd),
    /// Check every fleet host before changing it: Docker access, compose, exporter ports,
    /// mounts, cgroups, SELinux, disk, clock, images — ready / will adapt / blocked (read-only).
    Preflight(preflight::PreflightArgs),
    /// Read-only fleet status: drift from what promfleet would deploy, and what is down.
    Status(status::StatusArgs),
    /// Smoke tests of the alert path.
    #[command(subcommand)]
    Alert(alert::AlertCmd),
    /// Print a shell completion script (see the README for where to put it).
    Completions(completions::CompletionsArgs),
    /// Print the man page, or write one per subcommand with --out DIR.
    Man(completions::ManArgs),
}

impl Command {
    /// How the command wants its output: what `main` builds the one `report::Printer` from.
    pub fn output(&self) -> OutputPolicy {
        match self {
            Command::Deploy(a) => a.common.out.policy(a.common.diff),
            Command::Exporters(a) => a.common.out.policy(a.common.diff),
            Command::Rollback(a) => a.out.policy(false),
            Command::Status(a) => a.out.policy(false),
            Command::Exec(a) => OutputPolicy {
                format: if a.json { Format::Json } else { Format::Text },
                ..OutputPolicy::default()
            },
            Command::Inventory(c) => OutputPolicy {
                format: c.format(),
                ..OutputPolicy::default()
            },
            Command::Alert(alert::AlertCmd::Test(a)) => OutputPolicy {
                format: a.output.format(),
                ..OutputPolicy::default()
            },
            _ => OutputPolicy::default(),
        }
    }
}

/// Run a parsed command, printing through `printer`; returns the process exit code.
pub async fn run(cli: Cli, printer: &Printer) -> anyhow::Result<crate::report::ExitCode> {
    match cli.command {
        Command::Init(a) => init::run(a, printer),
        Command::Inventory(c) => inventory::run(c, printer).await,
        Command::Exec(a) => exec::run(a, printer).await,
        Command::Deploy(a) => deploy::run(a, printer).await,
        Command::Exporters(a) => deploy::run_exporters(a, printer).await,
        Command::Render(a) => render::run(a, printer),
        Command::Rollback(a) => rollback::run(a, printer).await,
        Command::Consul(c) => consul::run(c, printer).await,
        Command::Preflight(a) => preflight::run(a, printer).await,
        Command::Status(a) => status::run(a, printer).await,
        Command::Alert(c) => alert::run(c, printer).await,
        Command::Completions(a) => completions::completions(a, printer),
        Command::Man(a) => completions::man(a, printer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(args: &[&str]) -> OutputPolicy {
        let argv = std::iter::once("promfleet").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect("parses").command.output()
    }

    /// The printer is built from each command's own output flags, before it runs.
    #[test]
    fn each_command_names_its_output() {
        let inv = ["-i", "inv.yml"];
        let p = policy(&[&["exec"][..], &inv, &["--json", "--", "true"]].concat());
        assert_eq!(p.format, Format::Json);
        let p = policy(&[&["exec"][..], &inv, &["--", "true"]].concat());
        assert_eq!(p.format, Format::Text);
        let p = policy(&[&["status"][..], &inv, &["-o", "json", "-q"]].concat());
        assert_eq!((p.format, p.quiet), (Format::Json, true));
        let p = policy(&[&["deploy", "site.yml"][..], &inv, &["--diff", "-vv"]].concat());
        assert_eq!(
            (p.format, p.verbosity, p.show_diff),
            (Format::Text, 2, true)
        );
        let p = policy(&[&["exporters"][..], &inv, &["-o", "json"]].concat());
        assert_eq!((p.format, p.show_diff), (Format::Json, false));
        let p = policy(
            &[
                &["alert", "test", "--group", "IDE"][..],
                &inv,
                &["-o", "json"],
            ]
            .concat(),
        );
        assert_eq!(p.format, Format::Json);
        let p = policy(&[&["rollback"][..], &inv, &["-q"]].concat());
        assert!(p.quiet);
    }
}
