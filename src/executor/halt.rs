//! When a rollout halts (Ansible's rules, `ansible-core`'s playbook_executor.py: the
//! failure percentage first, then "the whole batch failed"), and the message that says what
//! failed and how to resume.

use std::collections::HashSet;

use crate::playbook::{Plan, PlannedPlay};

/// Why a play stops after a batch.
pub(super) enum Halt {
    OverMax {
        failed: usize,
        total: usize,
        max: f64,
    },
    BatchFailed {
        size: usize,
    },
}

/// Whether a play halts after a batch (Ansible's order, playbook_executor.py: the percentage
/// first, then "the whole batch failed", which halts even without a max_fail_percentage).
/// After a health gate the "batch" is the whole stage: pass `batch_failed: 0`.
pub(super) fn stage_halt(
    play: &PlannedPlay,
    failed: usize,
    total: usize,
    batch_failed: usize,
    batch: usize,
) -> Option<Halt> {
    match play.max_fail_percentage {
        Some(max) if failed as f64 * 100.0 / total as f64 > max => {
            Some(Halt::OverMax { failed, total, max })
        }
        _ if batch_failed == batch => Some(Halt::BatchFailed { size: batch }),
        _ if failed == total => Some(Halt::BatchFailed { size: total }),
        _ => None,
    }
}

/// Whether a later play still has a host to run (a halt would leave it undone).
pub(super) fn work_left(plan: &Plan, pi: usize, excluded: &HashSet<String>) -> bool {
    plan.plays
        .iter()
        .skip(pi + 1)
        .flat_map(|p| &p.hosts)
        .any(|hp| !excluded.contains(&hp.host.name))
}

/// The halt notice: what failed, and how to resume.
pub(super) fn halt_message(play: &PlannedPlay, why: &Halt, failed: &[(String, &str)]) -> String {
    const SHOWN: usize = 5;
    let mut names: Vec<String> = failed
        .iter()
        .take(SHOWN)
        .map(|(h, how)| format!("{h} {how}"))
        .collect();
    if failed.len() > SHOWN {
        names.push(format!("and {} more", failed.len() - SHOWN));
    }
    let reason = match why {
        Halt::OverMax { failed, total, max } => {
            let pct = *failed as f64 * 100.0 / *total as f64;
            let default = if play.canary && *max == 0.0 {
                ", a canary stage's default"
            } else {
                ""
            };
            format!(
                "{failed} of {total} hosts failed ({pct:.0}% > max_fail_percentage {max}%{default})"
            )
        }
        Halt::BatchFailed { size } => format!("every host of a batch failed ({size} of {size})"),
    };
    let resume = match &play.stage {
        Some(s) => format!(
            "fix the cause (each failure is in the recap), then resume with --from-stage {s}, or rerun the failed and not-run hosts with --retry-failed"
        ),
        None => "fix the cause (each failure is in the recap), then rerun, or rerun the failed and not-run hosts with --retry-failed".to_string(),
    };
    format!(
        "play `{}`: {reason}: {}; later batches, stages and plays were not started — {resume}",
        play.name,
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(max: Option<f64>, canary: bool) -> PlannedPlay {
        PlannedPlay {
            name: "Exporters [stage s]".into(),
            stage: Some("s".into()),
            serial: None,
            max_fail_percentage: max,
            canary,
            gate: None,
            hosts: Vec::new(),
        }
    }

    /// (max_fail_percentage, failed so far, stage size, failed in batch, batch size) → halts?
    /// Ansible's playbook_executor: `max < failed*100/size` breaks, else a fully failed
    /// batch breaks.
    #[test]
    fn the_two_rules_in_ansibles_order() {
        type Row = (
            Option<f64>,
            usize,
            usize,
            usize,
            usize,
            Option<&'static str>,
        );
        let rows: &[Row] = &[
            (None, 1, 4, 1, 2, None),
            (
                None,
                2,
                4,
                2,
                2,
                Some("every host of a batch failed (2 of 2)"),
            ),
            (Some(25.0), 1, 4, 1, 2, None),
            (
                Some(25.0),
                2,
                4,
                1,
                2,
                Some("2 of 4 hosts failed (50% > max_fail_percentage 25%)"),
            ),
            (Some(50.0), 2, 4, 2, 2, Some("every host of a batch failed")),
            (
                Some(0.0),
                1,
                1,
                1,
                1,
                Some("1 of 1 hosts failed (100% > max_fail_percentage 0%)"),
            ),
            (Some(100.0), 3, 4, 1, 2, None),
        ];
        for &(max, failed, total, bf, b, want) in rows {
            let play = stage(max, false);
            let got = stage_halt(&play, failed, total, bf, b)
                .map(|h| halt_message(&play, &h, &[("h1".into(), "failed")]));
            match (want, &got) {
                (None, None) => {}
                (Some(w), Some(g)) => assert!(g.contains(w), "{max:?} {failed}/{total}: {g}"),
                _ => panic!("{max:?} {failed}/{total} batch {bf}/{b}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_message_names_the_failures_and_both_ways_to_resume() {
        let play = stage(Some(0.0), true);
        let why = stage_halt(&play, 1, 1, 1, 1).expect("halts");
        let msg = halt_message(&play, &why, &[("ide-01".into(), "unreachable")]);
        for part in [
            "ide-01 unreachable",
            "a canary stage's default",
            "--from-stage s",
            "--retry-failed",
        ] {
            assert!(msg.contains(part), "`{part}` not in {msg}");
        }
    }
}
