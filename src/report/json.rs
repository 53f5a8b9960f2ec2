//! The JSON reporter (`--output json`, `exec --json`): results as JSON on stdout, for
//! programs; everything for people (progress, notices, warnings, the recap, summary lines)
//! stays on stderr through the terminal reporter it wraps. Masked like every other output.

use serde::Serialize;

use super::{
    ExecResult, ExecSummary, HostListing, HostReport, Progress, Pruned, Reporter, RunReport,
    SshTargets, TaskReport, TerminalReporter, render,
};
use crate::status::StatusReport;
use crate::status::alert::AlertOutcome;

pub struct JsonReporter {
    terminal: TerminalReporter,
}

impl JsonReporter {
    pub fn new(terminal: TerminalReporter) -> JsonReporter {
        JsonReporter { terminal }
    }

    /// `value` with every string value masked. Keys are left alone: they are promfleet's
    /// field names and inventory names (hosts, groups, service ids), never secrets — and
    /// masking text would corrupt them when a secret happens to be a word of a field name
    /// (a sudo password `password` turned `become_password_from` into `become_********_from`).
    fn masked(&self, value: &impl Serialize) -> serde_json::Value {
        fn walk(v: &mut serde_json::Value, masker: &super::Masker) {
            match v {
                serde_json::Value::String(s) => *s = masker.mask(s),
                serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, masker)),
                serde_json::Value::Object(o) => o.values_mut().for_each(|x| walk(x, masker)),
                _ => {}
            }
        }
        let mut v = serde_json::to_value(value).unwrap_or_default();
        walk(&mut v, self.terminal.masker());
        v
    }

    /// `value` pretty-printed, one document.
    fn document(&self, value: &impl Serialize) {
        let text = serde_json::to_string_pretty(&self.masked(value)).unwrap_or_default();
        self.terminal.stdout_masked_already(&format!("{text}\n"));
    }

    /// `value` on one line (JSON Lines: one object per host as it arrives).
    fn line(&self, value: &impl Serialize) {
        let text = serde_json::to_string(&self.masked(value)).unwrap_or_default();
        self.terminal.stdout_masked_already(&format!("{text}\n"));
    }
}

impl Reporter for JsonReporter {
    fn work_started(&self, what: &str, total: usize) {
        self.terminal.work_started(what, total);
    }
    fn progress(&self, p: &Progress) {
        self.terminal.progress(p);
    }
    fn play_started(&self, name: &str, hosts: usize) {
        self.terminal.play_started(name, hosts);
    }
    fn host_started(&self, host: &str) {
        self.terminal.host_started(host);
    }
    fn task_started(&self, host: &str, task: &str) {
        self.terminal.task_started(host, task);
    }
    fn task_finished(&self, host: &str, report: &TaskReport) {
        self.terminal.task_finished(host, report);
    }
    fn host_finished(&self, report: &HostReport) {
        self.terminal.host_finished(report);
    }
    fn notice(&self, message: &str) {
        self.terminal.notice(message);
    }
    fn message(&self, text: &str) {
        self.terminal.message(text);
    }
    fn warning(&self, message: &str) {
        self.terminal.warning(message);
    }

    /// The whole report on stdout, the recap still on stderr.
    fn run_finished(&self, run: &RunReport) {
        self.terminal.clear_bars();
        self.document(run);
        self.terminal.run_finished(run);
    }

    fn exec_host(&self, r: &ExecResult) {
        self.line(r);
    }

    fn exec_finished(&self, s: &ExecSummary) {
        self.terminal.exec_finished(s);
    }

    /// The whole report on stdout, its summary line on stderr.
    fn status(&self, r: &StatusReport) {
        self.terminal.clear_bars();
        self.document(r);
        self.terminal
            .stderr(&format!("{}\n", render::status_summary(r)));
    }

    fn alert_tested(&self, _group: &str, outcomes: &[AlertOutcome]) {
        self.document(&outcomes);
    }

    fn pruned(&self, p: &Pruned) {
        self.line(p);
    }

    /// The hosts as one JSON array.
    fn hosts_listed(&self, l: &HostListing) {
        self.document(&l.hosts);
    }

    /// One JSON array: each host's target, or its name and why it could not be resolved.
    fn ssh_targets(&self, t: &SshTargets) {
        let rows: Vec<serde_json::Value> = t
            .hosts
            .iter()
            .map(|(host, target)| match target {
                Ok(t) => render::ssh_target_json(t),
                Err(e) => serde_json::json!({"name": host, "error": e}),
            })
            .collect();
        self.document(&rows);
    }

    fn generated(&self, text: &str) {
        self.terminal.generated(text);
    }

    fn finish(&self) {
        self.terminal.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sudo password `password` (a real inventory of the corpus) masked the JSON key
    /// `become_password_from` into `become_********_from`, so programs lost the field.
    #[test]
    fn a_secret_that_is_a_word_of_a_key_masked_the_json_key() {
        let masker = crate::report::Masker::default();
        masker.add("password");
        let r = JsonReporter::new(TerminalReporter::new(masker, 0, false, true));
        let v = r.masked(&serde_json::json!({
            "become_password_from": "`ansible_become_pass` (hosts:7:29)",
            "error": "sudo: password is wrong",
            "nested": [{"token": "password"}],
        }));
        assert_eq!(
            v["become_password_from"],
            "`ansible_become_pass` (hosts:7:29)"
        );
        assert_eq!(v["error"], "sudo: ******** is wrong");
        assert_eq!(v["nested"][0]["token"], "********");
    }
}
