//! `promfleet exec -- COMMAND`: an ad-hoc command on every selected host, output grouped per
//! host, a summary line, non-zero exit if any host failed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::report::ExitCode;

use super::common::{ConnArgs, InventoryArgs, connector, load_inventory, masker, select};
use crate::playbook::Secrets;
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
    /// The command, run by the login shell (`/bin/sh -c`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

struct HostResult {
    host: String,
    status: Option<u32>,
    stdout: String,
    stderr: String,
    error: Option<String>,
    unreachable: bool,
    ms: u128,
}

pub async fn run(a: ExecArgs) -> anyhow::Result<crate::report::ExitCode> {
    let inv = load_inventory(&a.inv.inventory)?;
    let hosts = select(&inv, &a.inv)?;
    let secrets = Secrets::load(a.secrets.as_deref(), masker())?;
    let conn = Arc::new(connector(&a.conn, &secrets)?);
    // The operator's own shell text, run as written (quoting it is theirs to do).
    let command = Arc::new(Script::new().operator_shell(&a.command.join(" ")).build());
    let forks = Arc::new(Semaphore::new(a.conn.forks.max(1)));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for h in hosts.iter().cloned() {
        let conn = conn.clone();
        let command = command.clone();
        let forks = forks.clone();
        set.spawn(async move {
            let _p = forks.acquire_owned().await;
            let t = Instant::now();
            let mut r = HostResult {
                host: h.name.clone(),
                status: None,
                stdout: String::new(),
                stderr: String::new(),
                error: None,
                unreachable: false,
                ms: 0,
            };
            match conn.session(&h).await {
                Err(e) => {
                    r.unreachable = e.is_unreachable();
                    r.error = Some(e.to_string());
                }
                Ok((s, _)) => match s.exec(&command, None).await {
                    Ok(out) => {
                        r.status = out.status;
                        r.stdout = out.stdout_str();
                        r.stderr = out.stderr_str();
                    }
                    Err(e) => {
                        r.unreachable = e.is_unreachable();
                        r.error = Some(e.to_string());
                    }
                },
            }
            r.ms = t.elapsed().as_millis();
            r
        });
    }
    let m = masker();
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        let Ok(r) = r else { continue };
        if !a.json {
            print_host(&r, &m);
        }
        results.push(r);
    }
    conn.close_all().await;
    let ok = results.iter().filter(|r| r.status == Some(0)).count();
    let unreachable = results.iter().filter(|r| r.unreachable).count();
    let failed = results.len() - ok - unreachable;
    if a.json {
        for r in &results {
            let v = serde_json::json!({
                "host": r.host, "rc": r.status, "stdout": m.mask(&r.stdout),
                "stderr": m.mask(&r.stderr), "error": r.error.as_deref().map(|e| m.mask(e)),
                "unreachable": r.unreachable, "duration_ms": r.ms,
            });
            println!("{v}");
        }
    }
    eprintln!(
        "{} host(s): {ok} ok, {failed} failed, {unreachable} unreachable in {:.1}s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(if failed > 0 {
        ExitCode::HostFailed
    } else if unreachable > 0 {
        ExitCode::HostUnreachable
    } else {
        ExitCode::Ok
    })
}

fn print_host(r: &HostResult, m: &crate::report::Masker) {
    let head = match (&r.error, r.status) {
        (Some(e), _) if r.unreachable => format!("{} | UNREACHABLE: {e}", r.host),
        (Some(e), _) => format!("{} | FAILED: {e}", r.host),
        (None, Some(0)) => format!("{} | CHANGED | rc=0", r.host),
        (None, Some(c)) => format!("{} | FAILED | rc={c}", r.host),
        (None, None) => format!("{} | FAILED | killed by a signal", r.host),
    };
    let mut s = head;
    s.push('\n');
    s.push_str(&r.stdout);
    if !r.stdout.is_empty() && !r.stdout.ends_with('\n') {
        s.push('\n');
    }
    if !r.stderr.is_empty() {
        for l in r.stderr.lines() {
            s.push_str("stderr: ");
            s.push_str(l);
            s.push('\n');
        }
    }
    print!("{}", m.mask(&s));
}
