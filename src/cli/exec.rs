//! `promfleet exec -- COMMAND`: an ad-hoc command on every selected host (fanned out by the
//! `Scheduler`: `--forks`, Ctrl-C), each host's result reported as it arrives (grouped
//! text, or one JSON object per host with `--json`), a summary line, non-zero exit if any
//! host failed (130 when interrupted).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use super::common::{ConnArgs, InventoryArgs, connector, load_inventory, select, signals};
use crate::executor::{Done, Scheduler, or_abort};
use crate::playbook::Secrets;
use crate::report::{ExecResult, ExecSummary, ExitCode, Printer};
use crate::transport::Script;

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// YAML secrets file (mode 0600), for the `become_password` secret; PROMFLEET_SECRET_<NAME>
    /// variables take precedence.
    #[arg(long, env = "PROMFLEET_SECRETS")]
    pub secrets: Option<PathBuf>,
    /// Print one JSON object per host instead of text.
    #[arg(long)]
    pub json: bool,
    /// The command, run by `/bin/sh -c` whatever the login shell (as Ansible's `shell` module).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub async fn run(a: ExecArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let reporter = printer.reporter();
    let inv = load_inventory(&a.inv.inventory, &a.conn.ssh_config, printer)?;
    let hosts = select(&inv, &a.inv)?;
    let secrets = Secrets::load(a.secrets.as_deref(), printer.masker().clone())?;
    let conn = Arc::new(connector(&a.conn, &secrets, &reporter)?);
    // The operator's own shell text, run as written (quoting it is theirs to do).
    let command = Arc::new(Script::new().operator_shell(&a.command.join(" ")).build());
    let (cancel, abort) = signals(&reporter);
    let sched = Scheduler::new(a.conn.forks, cancel, abort.clone()).reporting_to(reporter.clone());
    let started = Instant::now();
    reporter.work_started("exec", hosts.len());
    let items = hosts.iter().map(|h| (h.name.clone(), h.clone())).collect();
    let c = conn.clone();
    let mut running = sched.run(items, move |h| {
        let (conn, command, abort) = (c.clone(), command.clone(), abort.clone());
        async move {
            let t = Instant::now();
            let mut r = ExecResult {
                host: h.name.clone(),
                rc: None,
                stdout: String::new(),
                stderr: String::new(),
                error: None,
                unreachable: false,
                duration_ms: 0,
            };
            let ran = or_abort(&abort, async {
                let (s, _) = conn.session(&h).await?;
                s.exec(&command, None).await
            })
            .await;
            match ran {
                None => r.error = Some("abandoned (second interrupt)".into()),
                Some(Ok(out)) => {
                    r.rc = out.status;
                    r.stdout = out.stdout_str();
                    r.stderr = out.stderr_str();
                }
                Some(Err(e)) => {
                    r.unreachable = e.is_unreachable();
                    r.error = Some(e.to_string());
                }
            }
            r.duration_ms = t.elapsed().as_millis();
            r
        }
    });
    let mut results = Vec::new();
    let mut not_run = 0usize;
    while let Some((_, done)) = running.next().await {
        match done {
            Done::Ran(r) => {
                reporter.exec_host(&r);
                results.push(r);
            }
            Done::NotStarted => not_run += 1,
        }
    }
    if !sched.abort_token().is_cancelled() {
        conn.close_all().await;
    }
    let ok = results.iter().filter(|r| r.rc == Some(0)).count();
    let unreachable = results.iter().filter(|r| r.unreachable).count();
    let failed = results.len() - ok - unreachable;
    reporter.exec_finished(&ExecSummary {
        hosts: results.len() + not_run,
        ok,
        failed,
        unreachable,
        not_run,
        duration_ms: started.elapsed().as_millis(),
    });
    Ok(if sched.is_cancelled() {
        ExitCode::Interrupted
    } else if failed > 0 {
        ExitCode::HostFailed
    } else if unreachable > 0 {
        ExitCode::HostUnreachable
    } else {
        ExitCode::Ok
    })
}
