//! Text renderings of the commands' typed results (status tables, `exec` host blocks,
//! `alert test` lines, `consul prune` lines): what the terminal reporter prints. Pure
//! functions from data to text; masking is the reporter's.

use super::{ExecResult, ExecSummary, PruneAction, Pruned};
use crate::status::alert::AlertOutcome;
use crate::status::{CentralRow, HostRow, State, StatusReport};

/// One `exec` host: `host | CHANGED | rc=0`, its stdout, its stderr lines prefixed.
pub fn exec_host(r: &ExecResult) -> String {
    let head = match (&r.error, r.rc) {
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
    for l in r.stderr.lines() {
        s.push_str("stderr: ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// `3 host(s): 2 ok, 1 failed, 0 unreachable in 1.2s` (and how many a Ctrl-C left).
pub fn exec_summary(s: &ExecSummary) -> String {
    let mut line = format!(
        "{} host(s): {} ok, {} failed, {} unreachable",
        s.hosts, s.ok, s.failed, s.unreachable
    );
    if s.not_run > 0 {
        line.push_str(&format!(", {} not run (interrupted)", s.not_run));
    }
    line.push_str(&format!(" in {:.1}s", s.duration_ms as f64 / 1000.0));
    line
}

/// `http://am:9093: alert PromfleetTest for group IDE → receiver webhook-ide: ok; resolved`.
pub fn alert_outcome(o: &AlertOutcome, group: &str) -> String {
    let routed = if o.receivers.is_empty() {
        "no receiver".to_string()
    } else {
        format!("receiver {}", o.receivers.join(", "))
    };
    let verdict = if o.routed_right() {
        "ok".to_string()
    } else if o.error.is_some() {
        "FAILED".to_string()
    } else {
        format!("WRONG ROUTE (expected {})", o.expected)
    };
    let mut s = format!(
        "{}: alert {} for group {group} → {routed}: {verdict}{}{}",
        o.alertmanager,
        crate::status::alert::ALERTNAME,
        o.notifications
            .map(|n| format!("; {n} notification(s) sent"))
            .unwrap_or_default(),
        if o.resolved { "; resolved" } else { "" }
    );
    if let Some(e) = &o.error {
        s.push_str(&format!(" ({e})"));
    }
    s
}

/// One `consul prune` line, and whether it is an error (stderr) or a result (stdout).
pub fn pruned(p: &Pruned) -> (String, bool) {
    match &p.action {
        PruneAction::WouldDeregister => (
            format!(
                "would deregister {} from {} ({})",
                p.service, p.agent, p.reason
            ),
            false,
        ),
        PruneAction::Deregistered => (
            format!("deregistered {} from {} ({})", p.service, p.agent, p.reason),
            false,
        ),
        PruneAction::Failed(e) => (
            format!("failed to deregister {} from {}: {e}", p.service, p.agent),
            true,
        ),
    }
}

/// `4 hosts: 3 ok, 1 drift, 0 down; central: 2 ok, 0 drift, 4 down → exit 6 (down)`.
pub fn status_summary(r: &StatusReport) -> String {
    let s = &r.summary;
    let verdict = match r.state {
        State::Down => "down",
        State::Drift => "drift",
        _ => "all good",
    };
    let mut parts = Vec::new();
    if s.hosts > 0 {
        parts.push(format!(
            "{} hosts: {} ok, {} drift, {} down",
            s.hosts, s.hosts_ok, s.hosts_drift, s.hosts_down
        ));
    }
    if s.central > 0 {
        parts.push(format!(
            "central services: {} ok, {} drift, {} down",
            s.central_ok, s.central_drift, s.central_down
        ));
    }
    format!(
        "{} → exit {} ({verdict})",
        parts.join("; "),
        r.exit_code.code()
    )
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The `status` text report: host table, problems, central table, summary line.
pub fn status(r: &StatusReport, verbose: bool) -> String {
    let mut out = String::new();
    if !r.hosts.is_empty() {
        out.push_str(&hosts_table(&r.hosts));
        let problems: Vec<String> = r
            .hosts
            .iter()
            .flat_map(|h| {
                h.checks
                    .0
                    .iter()
                    .filter(|(_, c)| verbose || matches!(c.state, State::Drift | State::Down))
                    .filter(|(_, c)| !c.detail.is_empty())
                    .map(move |(n, c)| {
                        format!("  {} {n} [{}]: {}", h.host, c.state.as_str(), c.detail)
                    })
            })
            .collect();
        if !problems.is_empty() {
            out.push('\n');
            out.push_str(&problems.join("\n"));
            out.push('\n');
        }
    }
    if !r.central.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&central_table(&r.central));
    }
    out.push('\n');
    out.push_str(&status_summary(r));
    out.push('\n');
    out
}

fn hosts_table(hosts: &[HostRow]) -> String {
    let mut names: Vec<String> = Vec::new();
    for h in hosts {
        for (n, _) in &h.checks.0 {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let mut rows = vec![
        ["HOST", "GROUP", "STATE"]
            .iter()
            .map(|s| s.to_string())
            .chain(names.iter().map(|n| n.to_uppercase()))
            .collect::<Vec<_>>(),
    ];
    for h in hosts {
        let mut row = vec![
            h.host.clone(),
            h.group.clone(),
            h.state.as_str().to_string(),
        ];
        for n in &names {
            row.push(h.checks.get(n).map_or("-".into(), |c| c.summary.clone()));
        }
        rows.push(row);
    }
    table(&rows)
}

fn central_table(central: &[CentralRow]) -> String {
    let mut rows = vec![
        ["SERVICE", "AT", "STATE", "DETAIL"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    ];
    for c in central {
        rows.push(vec![
            c.service.clone(),
            c.at.clone(),
            c.check.state.as_str().to_string(),
            c.check.detail.clone(),
        ]);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rc: Option<u32>, error: Option<&str>, unreachable: bool) -> ExecResult {
        ExecResult {
            host: "h1".into(),
            rc,
            stdout: "out".into(),
            stderr: "e1\ne2\n".into(),
            error: error.map(String::from),
            unreachable,
            duration_ms: 0,
        }
    }

    #[test]
    fn exec_blocks_say_how_each_host_ended() {
        assert_eq!(
            exec_host(&result(Some(0), None, false)),
            "h1 | CHANGED | rc=0\nout\nstderr: e1\nstderr: e2\n"
        );
        assert!(exec_host(&result(Some(3), None, false)).starts_with("h1 | FAILED | rc=3\n"));
        assert!(exec_host(&result(None, None, false)).contains("killed by a signal"));
        assert!(
            exec_host(&result(None, Some("refused"), true))
                .starts_with("h1 | UNREACHABLE: refused")
        );
    }

    #[test]
    fn exec_summary_counts_hosts_an_interrupt_kept_from_running() {
        let mut s = ExecSummary {
            hosts: 3,
            ok: 2,
            failed: 1,
            unreachable: 0,
            not_run: 0,
            duration_ms: 1500,
        };
        assert_eq!(
            exec_summary(&s),
            "3 host(s): 2 ok, 1 failed, 0 unreachable in 1.5s"
        );
        s.not_run = 2;
        s.hosts = 5;
        assert!(exec_summary(&s).contains(", 2 not run (interrupted) in"));
    }
}
