//! Command-line interface: clap definitions, then one module per subcommand, which loads the
//! inventory, playbooks and secrets it needs, runs, prints, and returns a `report::ExitCode`.
//! What several subcommands share (flags, inventory loading, the masker, the connector) is in
//! `common`. There is no single Settings object yet: each subcommand builds what it uses.

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

/// Run a parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<crate::report::ExitCode> {
    match cli.command {
        Command::Init(a) => init::run(a),
        Command::Inventory(c) => inventory::run(c).await,
        Command::Exec(a) => exec::run(a).await,
        Command::Deploy(a) => deploy::run(a).await,
        Command::Exporters(a) => deploy::run_exporters(a).await,
        Command::Render(a) => render::run(a),
        Command::Rollback(a) => rollback::run(a).await,
        Command::Consul(c) => consul::run(c).await,
        Command::Preflight(a) => preflight::run(a).await,
        Command::Status(a) => status::run(a).await,
        Command::Alert(c) => alert::run(c).await,
        Command::Completions(a) => completions::completions(a),
        Command::Man(a) => completions::man(a),
    }
}
