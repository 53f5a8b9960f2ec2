//! The terminal reporter: an overall progress bar plus one line per running item on a TTY
//! (indicatif), plain lines otherwise; failures and diffs printed as they happen; each
//! command's results as text (`report::render`), on stdout for results and stderr for the
//! rest. Every line goes through the masker first. `-q` silences progress and notices, never
//! results, warnings or the recap.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{
    ExecResult, ExecSummary, HostListing, HostReport, HostStatus, Masker, Progress, Pruned,
    Reporter, RunReport, SshTargets, TaskReport, recap, render,
};
use crate::modules::Outcome;
use crate::status::StatusReport;
use crate::status::alert::AlertOutcome;

pub struct TerminalReporter {
    multi: MultiProgress,
    overall: Mutex<Option<ProgressBar>>,
    lines: Mutex<HashMap<String, ProgressBar>>,
    masker: Masker,
    /// 0: host lines and failures; 1: every task; 2: task details too.
    verbosity: u8,
    show_diff: bool,
    tty: bool,
    quiet: bool,
}

impl TerminalReporter {
    pub fn new(masker: Masker, verbosity: u8, show_diff: bool, quiet: bool) -> TerminalReporter {
        let tty = std::io::stderr().is_terminal() && !quiet;
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        TerminalReporter {
            multi,
            overall: Mutex::new(None),
            lines: Mutex::new(HashMap::new()),
            masker,
            verbosity,
            show_diff,
            tty,
            quiet,
        }
    }

    /// Progress and notices: stderr, not with `-q`.
    fn println(&self, s: &str) {
        if self.quiet {
            return;
        }
        let s = self.masker.mask(s);
        if self.tty {
            let _ = self.multi.println(s);
        } else {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "{s}");
        }
    }

    /// Results people read (recap, summaries, warnings): stderr, even with `-q`.
    pub(super) fn stderr(&self, s: &str) {
        let s = self.masker.mask(s);
        self.multi.suspend(|| {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(s.as_bytes());
            let _ = e.flush();
        });
    }

    /// Results programs read: stdout, even with `-q`.
    pub(super) fn stdout(&self, s: &str) {
        self.stdout_masked_already(&self.masker.mask(s));
    }

    pub(super) fn masker(&self) -> &super::Masker {
        &self.masker
    }

    /// Text whose secrets the caller masked itself (the JSON reporter masks values, not keys).
    pub(super) fn stdout_masked_already(&self, s: &str) {
        self.multi.suspend(|| {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(s.as_bytes());
            let _ = o.flush();
        });
    }

    /// The overall bar of `total` items (replacing the previous one).
    fn bar(&self, total: usize) {
        if let Some(old) = lock(&self.overall).take() {
            old.finish_and_clear();
        }
        let bar = self.multi.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} hosts {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        *lock(&self.overall) = Some(bar);
    }

    /// Take the spinner line of `label` down.
    fn line_done(&self, label: &str) {
        if let Some(l) = lock(&self.lines).remove(label) {
            l.finish_and_clear();
            self.multi.remove(&l);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reporter for TerminalReporter {
    fn work_started(&self, _what: &str, total: usize) {
        self.bar(total);
    }

    fn progress(&self, p: &Progress) {
        match p {
            Progress::Started { label, .. } => {
                if !self.tty {
                    return;
                }
                let line = self.multi.add(ProgressBar::new_spinner());
                line.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:.bold} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                line.set_prefix(self.masker.mask(label));
                line.enable_steady_tick(Duration::from_millis(120));
                lock(&self.lines).insert(label.clone(), line);
            }
            Progress::Finished { label, .. } | Progress::Skipped { label, .. } => {
                self.line_done(label);
                if let Some(b) = lock(&self.overall).as_ref() {
                    b.inc(1);
                }
            }
        }
    }

    fn play_started(&self, name: &str, hosts: usize) {
        self.println(&format!("\nPLAY [{name}] — {hosts} host(s) {:*<40}", ""));
        self.bar(hosts);
    }

    fn task_started(&self, host: &str, task: &str) {
        if let Some(l) = lock(&self.lines).get(host) {
            l.set_message(self.masker.mask(task));
        }
    }

    fn task_finished(&self, host: &str, r: &TaskReport) {
        if let Some(diff) = r.diff.as_ref().filter(|_| self.show_diff) {
            self.println(&format!("--- diff {host}: {}\n{diff}", r.task));
        }
        if r.error.is_some() || self.verbosity == 0 {
            return;
        }
        let what = match r.outcome {
            Some(Outcome::Changed) => "changed",
            Some(Outcome::Skipped) => "skipping",
            _ => "ok",
        };
        let detail = match (&r.detail, self.verbosity) {
            (Some(d), v) if v >= 1 => format!(" — {d}"),
            _ => String::new(),
        };
        let retry = if r.attempts > 1 {
            format!(" (attempt {})", r.attempts)
        } else {
            String::new()
        };
        self.println(&format!("{what}: [{host}] {}{detail}{retry}", r.task));
    }

    fn host_finished(&self, h: &HostReport) {
        // The spinner line and the bar are the scheduler's progress events' (`progress`).
        self.line_done(&h.host);
        let secs = h.duration_ms as f64 / 1000.0;
        let line = match h.status {
            // Where, not why: the cause is printed once, in the recap.
            HostStatus::Failed | HostStatus::Unreachable => format!(
                "{}: [{}] at {} (cause in the recap)",
                if h.status == HostStatus::Failed {
                    "FAILED"
                } else {
                    "UNREACHABLE"
                },
                h.host,
                h.failed_at.as_deref().unwrap_or("an unknown step")
            ),
            HostStatus::NotRun => format!("not run: [{}]", h.host),
            s => format!(
                "{}: [{}] ok={} changed={} ({secs:.1}s)",
                if s == HostStatus::Changed {
                    "changed"
                } else {
                    "ok"
                },
                h.host,
                h.ok,
                h.changed
            ),
        };
        self.println(&line);
    }

    fn notice(&self, message: &str) {
        self.println(message);
    }

    fn message(&self, text: &str) {
        self.stderr(&format!("{text}\n"));
    }

    fn warning(&self, message: &str) {
        self.stderr(&format!("warning: {message}\n"));
    }

    fn run_finished(&self, run: &RunReport) {
        self.clear_bars();
        self.stderr(&recap(run, &self.masker, self.verbosity));
    }

    fn exec_host(&self, r: &ExecResult) {
        self.stdout(&render::exec_host(r));
    }

    fn exec_finished(&self, s: &ExecSummary) {
        self.clear_bars();
        self.stderr(&format!("{}\n", render::exec_summary(s)));
    }

    fn status(&self, r: &StatusReport) {
        self.clear_bars();
        self.stdout(&render::status(r, self.verbosity > 0));
    }

    fn alert_tested(&self, group: &str, outcomes: &[AlertOutcome]) {
        for o in outcomes {
            self.stdout(&format!("{}\n", render::alert_outcome(o, group)));
        }
    }

    fn pruned(&self, p: &Pruned) {
        match render::pruned(p) {
            (line, true) => self.stderr(&format!("{line}\n")),
            (line, false) => self.stdout(&format!("{line}\n")),
        }
    }

    fn hosts_listed(&self, l: &HostListing) {
        self.stdout(&render::host_listing(l));
    }

    fn ssh_targets(&self, t: &SshTargets) {
        for (host, target) in &t.hosts {
            match target {
                Ok(t) => self.stdout(&render::ssh_target_text(t, "")),
                Err(e) => self.stderr(&format!("{host}: {e}\n")),
            }
        }
    }

    fn generated(&self, text: &str) {
        self.stdout(text);
    }

    fn finish(&self) {
        self.clear_bars();
    }
}

impl TerminalReporter {
    /// Take every bar and spinner down (before a final report, and at exit).
    pub(super) fn clear_bars(&self) {
        if let Some(b) = lock(&self.overall).take() {
            b.finish_and_clear();
        }
        for (_, l) in lock(&self.lines).drain() {
            l.finish_and_clear();
            self.multi.remove(&l);
        }
        let _ = self.multi.clear();
    }
}

impl Drop for TerminalReporter {
    fn drop(&mut self) {
        self.clear_bars();
    }
}
