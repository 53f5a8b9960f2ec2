//! What the executor tells the outside world: events while running, a report at the end.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::modules::{ModuleKind, Outcome};

/// Final state of one host in a run (PLAY RECAP columns; `last-run.json` records it by
/// these snake_case names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    Ok,
    Changed,
    Failed,
    Unreachable,
    /// Not run: halted stage, interrupted, or excluded after failing an earlier play.
    NotRun,
}

impl HostStatus {
    pub fn is_failure(self) -> bool {
        matches!(self, HostStatus::Failed | HostStatus::Unreachable)
    }

    /// Still to do: failed, unreachable, or never run (the retry file lists these).
    pub fn needs_retry(self) -> bool {
        self.is_failure() || self == HostStatus::NotRun
    }
}

/// One task's result on one host.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub task: String,
    pub module: ModuleKind,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub attempts: u32,
    pub duration_ms: u128,
}

/// A host's health gate: passed or not, and what Prometheus said.
#[derive(Debug, Clone, Serialize)]
pub struct GateResult {
    pub passed: bool,
    pub detail: String,
}

/// One host's result over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub group: String,
    pub status: HostStatus,
    pub ok: usize,
    pub changed: usize,
    pub skipped: usize,
    pub failed: usize,
    /// `task: cause` of the failure, one line.
    pub error: Option<String>,
    /// The step the host failed at (`connect` before any task), without the cause: live
    /// progress names it, the recap gives the cause (each failure printed once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
    /// Remote files this run changed on the host (recorded in the state for `rollback`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_files: Vec<String>,
    /// The health gate after the host's stage, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateResult>,
    /// Put back on its previous files after its stage failed (`--rollback-on-failure`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rolled_back: bool,
    pub duration_ms: u128,
    pub tasks: Vec<TaskReport>,
}

impl HostReport {
    pub fn new(host: &str, group: &str) -> HostReport {
        HostReport {
            host: host.into(),
            group: group.into(),
            status: HostStatus::NotRun,
            ok: 0,
            changed: 0,
            skipped: 0,
            failed: 0,
            error: None,
            failed_at: None,
            changed_files: Vec::new(),
            gate: None,
            rolled_back: false,
            duration_ms: 0,
            tasks: Vec::new(),
        }
    }

    pub fn add_duration(&mut self, d: Duration) {
        self.duration_ms += d.as_millis();
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunReport {
    pub hosts: Vec<HostReport>,
    /// Why the rollout stopped early (max_fail_percentage exceeded), with how to resume.
    pub halted: Option<String>,
    pub interrupted: bool,
    pub check: bool,
    pub duration_ms: u128,
}

impl RunReport {
    pub fn failed_hosts(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|h| h.status.is_failure())
            .map(|h| h.host.as_str())
            .collect()
    }

    pub fn count(&self, s: HostStatus) -> usize {
        self.hosts.iter().filter(|h| h.status == s).count()
    }

    /// The process exit code this run ends with.
    pub fn exit_code(&self) -> ExitCode {
        if self.interrupted {
            ExitCode::Interrupted
        } else if self.halted.is_some() {
            ExitCode::Halted
        } else if self.count(HostStatus::Failed) > 0 {
            ExitCode::HostFailed
        } else if self.count(HostStatus::Unreachable) > 0 {
            ExitCode::HostUnreachable
        } else {
            ExitCode::Ok
        }
    }
}

/// promfleet's exit codes, every command's: the one definition (README "Exit codes"). 2 and
/// 4 are ansible-playbook's (its task queue's RUN_FAILED_HOSTS and RUN_UNREACHABLE_HOSTS);
/// 5 and 6 are the read-only checks' (`status`, `alert test`), for cron and CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    Ok = 0,
    /// Bad input or setup: nothing was touched.
    Error = 1,
    /// A host failed (the others completed).
    HostFailed = 2,
    /// The rollout halted with batches, stages or plays left undone: every host of a batch
    /// failed, `max_fail_percentage` was exceeded, a health gate failed, or `--confirm` was
    /// declined.
    Halted = 3,
    /// A host was unreachable (the others completed).
    HostUnreachable = 4,
    /// Something differs from what promfleet would deploy, nothing is down (`status`), or
    /// a test alert was routed elsewhere (`alert test`).
    Drift = 5,
    /// Something is down (`status`; wins over drift: a down service needs a person first), or
    /// an Alertmanager did not answer (`alert test`).
    Down = 6,
    /// Ctrl-C / SIGTERM.
    Interrupted = 130,
}

impl ExitCode {
    /// The number the process exits with.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// As its number (`"exit_code": 5` in `status --output json`).
impl Serialize for ExitCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.code())
    }
}

/// `exec`: one host's result (`exec --json` prints it as one JSON object per line).
#[derive(Debug, Clone, Serialize)]
pub struct ExecResult {
    pub host: String,
    /// The command's exit status; `None` when it was killed by a signal or never ran.
    pub rc: Option<u32>,
    pub stdout: String,
    pub stderr: String,
    /// Why the command did not run to an exit status (connection, transport).
    pub error: Option<String>,
    pub unreachable: bool,
    pub duration_ms: u128,
}

/// `exec`: the counts of the summary line.
#[derive(Debug, Clone, Serialize)]
pub struct ExecSummary {
    pub hosts: usize,
    pub ok: usize,
    pub failed: usize,
    pub unreachable: usize,
    /// Hosts a Ctrl-C kept from starting.
    pub not_run: usize,
    pub duration_ms: u128,
}

/// `consul prune`: what became of one stale service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub service: String,
    pub agent: String,
    /// Why it goes: its host left (or moved), or it is a duplicate of another agent's copy.
    pub reason: String,
    pub action: PruneAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneAction {
    /// `--check`: listed only.
    WouldDeregister,
    Deregistered,
    Failed(String),
}

/// `inventory list`: the selected hosts and the inventory's Consul agents.
#[derive(Debug, Clone, Serialize)]
pub struct HostListing {
    pub hosts: Vec<ListedHost>,
    pub agents: Vec<String>,
}

/// One host of `inventory list` (JSON: these names).
#[derive(Debug, Clone, Serialize)]
pub struct ListedHost {
    pub name: String,
    /// The address the table shows (a `--no-resolve` stand-in too).
    #[serde(skip)]
    pub shown_ip: String,
    /// `None` for a `--no-resolve` stand-in: no address of the host's.
    pub ip: Option<String>,
    pub group: String,
    pub resolved_from: Option<String>,
    pub groups: Vec<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub address: String,
    #[serde(rename = "become")]
    pub become_root: Option<bool>,
    /// Where the sudo password comes from, never the password.
    pub become_password_from: Option<String>,
}

/// `inventory ssh-config`: how each host will be reached, or why it cannot be resolved.
#[derive(Debug, Clone)]
pub struct SshTargets {
    pub hosts: Vec<(String, Result<crate::transport::Target, String>)>,
}

/// A fan-out's progress, from `executor::Scheduler`: every item gets `Started` then
/// `Finished`, or `Skipped` when a cancellation kept it from starting. `index` is the item's
/// place in the fan-out's input, `label` its name (a host, an Alertmanager, a service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Started { index: usize, label: String },
    Finished { index: usize, label: String },
    Skipped { index: usize, label: String },
}

/// Receives everything a command has to say: the executor's progress, the fan-outs'
/// progress, and each command's typed results. Implementations must not block for long.
/// Nothing outside `report` formats for the terminal or writes to stdout/stderr (generated
/// bytes — completion scripts, man pages — go out through `Printer::raw_stdout`).
pub trait Reporter: Send + Sync {
    /// A fan-out of `total` items begins (`status`, `exec`, …): sizes the progress bar.
    fn work_started(&self, _what: &str, _total: usize) {}
    /// See `Progress`.
    fn progress(&self, _p: &Progress) {}
    fn play_started(&self, _name: &str, _hosts: usize) {}
    fn host_started(&self, _host: &str) {}
    fn task_started(&self, _host: &str, _task: &str) {}
    fn task_finished(&self, _host: &str, _report: &TaskReport) {}
    fn host_finished(&self, _report: &HostReport) {}
    /// A run-level message (stage halted, retrying, interrupted).
    fn notice(&self, _message: &str) {}
    /// A line for people that `-q` does not silence (what was written where, what is left to
    /// retry).
    fn message(&self, _text: &str) {}
    /// Something the user should fix but the run goes on without (a malformed known_hosts
    /// line, an unreadable ssh config, a Consul agent that could not be listed).
    fn warning(&self, _message: &str) {}
    /// The deploy / rollback run ended: the recap, and with `--output json` the report.
    fn run_finished(&self, _run: &RunReport) {}
    /// `exec`: one host's result, as it arrives.
    fn exec_host(&self, _r: &ExecResult) {}
    /// `exec`: every host is done.
    fn exec_finished(&self, _s: &ExecSummary) {}
    /// `status`: the whole report.
    fn status(&self, _r: &crate::status::StatusReport) {}
    /// `alert test`: what each Alertmanager did with the synthetic alert of `group`.
    fn alert_tested(&self, _group: &str, _outcomes: &[crate::status::alert::AlertOutcome]) {}
    /// `consul prune`: one stale service and what was done with it.
    fn pruned(&self, _p: &Pruned) {}
    /// `inventory list`: the selected hosts.
    fn hosts_listed(&self, _l: &HostListing) {}
    /// `inventory ssh-config`: every selected host's resolved target.
    fn ssh_targets(&self, _t: &SshTargets) {}
    /// A document the command generated, for stdout as is (a YAML inventory, the list of
    /// files differing from the built-in ones): `-q` does not silence it.
    fn generated(&self, _text: &str) {}
    /// The command is over: take progress bars down.
    fn finish(&self) {}
}

/// A reporter that ignores everything (library use, tests).
pub struct Silent;
impl Reporter for Silent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_reports_name_modules_as_playbooks_do() {
        for &m in ModuleKind::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        assert_eq!(serde_json::to_value(ExitCode::Drift).unwrap(), 5);
    }
}
