//! `promfleet rollback -i INV --limit …`: on the chosen hosts, put back the previous version
//! (`<file>.prev`) of every file the last run that changed them changed (recorded in the
//! state), then re-apply the rest of those playbooks as a deploy does (compose up for the
//! restored files, metrics checks, registration). `--check` shows what would be restored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::common::{
    ConnArgs, Interrupts, InventoryArgs, OutputArgs, executor, load_inventory_args, select,
};
use super::deploy::make_plan;
use crate::executor::RunOptions;
use crate::modules::Want;
use crate::playbook::{self, Plan, SecretMode};
use crate::report::{HostChange, RunState, StateLock};

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    /// Change nothing; show what would be restored.
    #[arg(short = 'C', long)]
    pub check: bool,
    /// Templates directory overriding the built-in templates file by file (default: the
    /// project's `templates/`).
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// YAML secrets file (mode 0600); PROMFLEET_SECRET_<NAME> variables take precedence.
    #[arg(long, env = "PROMFLEET_SECRETS")]
    pub secrets: Option<PathBuf>,
}

pub async fn run(
    a: RollbackArgs,
    printer: &crate::report::Printer,
) -> anyhow::Result<crate::report::ExitCode> {
    let reporter = printer.reporter();
    // First: a signal while planning is an interrupt, not the default action (death).
    let interrupts = Interrupts::install(printer);
    if a.inv.limit.is_empty() && !a.inv.retry_failed {
        anyhow::bail!(
            "rollback needs the hosts to roll back: --limit PATTERN (e.g. --limit canary-host, --limit IDE, --limit all)"
        );
    }
    let _lock = (!a.check)
        .then(|| StateLock::acquire(&a.inv.state_dir))
        .transpose()?;
    let dir = &a.inv.state_dir;
    let state = RunState::read(dir).ok_or_else(|| {
        anyhow::anyhow!(
            "no run recorded in {} (last-run.json): nothing to roll back",
            dir.display()
        )
    })?;
    let inventory = load_inventory_args(&a.inv, &a.conn.ssh_config, printer)?;
    let mut changes: BTreeMap<String, HostChange> = BTreeMap::new();
    for h in select(&inventory, &a.inv)? {
        match state.changes.get(&h.name) {
            Some(c) => {
                changes.insert(h.name.clone(), c.clone());
            }
            None => reporter.message(&format!(
                "{}: no change recorded by promfleet: left alone",
                h.name
            )),
        }
    }
    let Some(first) = changes.values().next() else {
        anyhow::bail!("no change recorded on the selected hosts: nothing to roll back");
    };
    let books = first.playbooks.clone();
    if let Some((h, c)) = changes.iter().find(|(_, c)| c.playbooks != books) {
        anyhow::bail!(
            "{h} was last changed by {} but others by {}: roll them back separately (--limit)",
            c.playbooks.join(", "),
            books.join(", ")
        );
    }
    for (h, c) in &changes {
        reporter.message(&format!(
            "{h}: {} the versions before the run of {}: {}",
            if a.check {
                "would restore"
            } else {
                "restoring"
            },
            c.at,
            c.files.join(", ")
        ));
    }
    let mut inv_args = a.inv.clone();
    inv_args.retry_failed = false;
    inv_args.limit = vec![changes.keys().cloned().collect::<Vec<_>>().join(":")];
    let paths: Vec<PathBuf> = books.iter().map(PathBuf::from).collect();
    let planned = make_plan(
        printer,
        &paths,
        &inv_args,
        &a.conn.ssh_config,
        a.templates.as_deref(),
        a.secrets.as_deref(),
        SecretMode::Real,
        &playbook::PlanOptions::default(),
        !a.check,
    )?;
    planned.require_hosts()?;
    for (h, c) in &changes {
        let written: Vec<String> = planned
            .plan
            .plays
            .iter()
            .flat_map(|p| &p.hosts)
            .filter(|hp| &hp.host.name == h)
            .flat_map(|hp| hp.steps.iter().chain(&hp.handlers))
            .filter_map(|s| s.action.as_ref())
            .flat_map(|a| a.wants())
            .filter_map(|w| match w {
                Want::File { dest, .. } => Some(dest),
                _ => None,
            })
            .collect();
        for f in c.files.iter().filter(|f| !written.contains(f)) {
            reporter.warning(&format!(
                "{h}: no step of {} writes {f} now: not restored",
                books.join(", ")
            ));
        }
    }
    let files: BTreeMap<String, Vec<String>> = changes
        .iter()
        .map(|(h, c)| (h.clone(), c.files.clone()))
        .collect();
    let plan = Plan {
        plays: planned
            .plan
            .plays
            .iter()
            .map(|p| p.rollback(&files))
            .collect(),
    };
    // Stand-in addresses (`--no-resolve`) are for offline rendering only.
    crate::inventory::refuse_stand_ins(&planned.inventory)?;
    if let Some(code) = interrupts.before_run("planning") {
        return Ok(code);
    }
    let setup = executor(
        printer,
        &planned.consul,
        &planned.endpoints,
        &planned.secrets,
        &a.conn,
        RunOptions {
            check: a.check,
            ..RunOptions::default()
        },
        &interrupts,
    )?;
    let run = setup.executor.run(Arc::new(plan)).await;
    setup.executor.connector.close_all().await;
    drop(setup);
    reporter.run_finished(&run);
    if !a.check {
        let inv = super::common::inventory_label(&a.inv.inventory);
        // Restored files are not what the memos recorded: the next deploy probes these hosts.
        let memos = run.hosts.iter().map(|h| (h.host.clone(), None)).collect();
        if let Err(e) = RunState::record(dir, &run, &inv, &books, &memos) {
            reporter.warning(&format!("cannot write run state in {}: {e}", dir.display()));
        }
    }
    Ok(run.exit_code())
}
