//! The PLAY RECAP: one line per host with counts, then each failure's one-line cause.

use std::fmt::Write;

use super::{HostStatus, Masker, RunReport};

pub fn recap(run: &RunReport, masker: &Masker) -> String {
    let mut s = String::new();
    let title = if run.check {
        "PLAY RECAP (check mode: nothing was changed) "
    } else {
        "PLAY RECAP "
    };
    let _ = writeln!(s, "\n{title:*<80}");
    let width = run
        .hosts
        .iter()
        .map(|h| h.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for h in &run.hosts {
        let unreachable = usize::from(h.status == HostStatus::Unreachable);
        let mut note = match h.status {
            HostStatus::NotRun => "  (not run)".to_string(),
            _ => String::new(),
        };
        if let Some(g) = &h.gate {
            note.push_str(if g.passed {
                "  gate=passed"
            } else {
                "  gate=FAILED"
            });
        }
        if h.rolled_back {
            note.push_str("  rolled back");
        }
        let _ = writeln!(
            s,
            "{:<width$} : ok={:<4} changed={:<4} unreachable={:<4} failed={:<4} skipped={:<4} {:>6.1}s{note}",
            h.host,
            h.ok,
            h.changed,
            unreachable,
            h.failed,
            h.skipped,
            h.duration_ms as f64 / 1000.0,
        );
    }
    let failures: Vec<_> = run.hosts.iter().filter(|h| h.status.is_failure()).collect();
    if !failures.is_empty() {
        let _ = writeln!(s);
        for h in failures {
            let kind = if h.status == HostStatus::Unreachable {
                "UNREACHABLE"
            } else {
                "FAILED"
            };
            let _ = writeln!(
                s,
                "{kind} {} ({}): {}",
                h.host,
                h.group,
                h.error.as_deref().unwrap_or("unknown error")
            );
        }
    }
    if let Some(why) = &run.halted {
        let _ = writeln!(s, "\nHALTED: {why}");
    }
    if run.interrupted {
        let _ = writeln!(s, "\nINTERRUPTED: hosts not started are marked (not run)");
    }
    let _ = writeln!(
        s,
        "\n{} hosts: {} ok, {} changed, {} failed, {} unreachable, {} not run in {:.1}s",
        run.hosts.len(),
        run.count(HostStatus::Ok),
        run.count(HostStatus::Changed),
        run.count(HostStatus::Failed),
        run.count(HostStatus::Unreachable),
        run.count(HostStatus::NotRun),
        run.duration_ms as f64 / 1000.0
    );
    masker.mask(&s)
}
