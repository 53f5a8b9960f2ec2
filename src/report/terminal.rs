//! The terminal reporter: an overall progress bar plus one line per running host on a TTY
//! (indicatif), plain lines otherwise; failures and diffs printed as they happen.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{HostReport, HostStatus, Masker, Reporter, TaskReport};
use crate::modules::Outcome;

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
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reporter for TerminalReporter {
    fn play_started(&self, name: &str, hosts: usize) {
        self.println(&format!("\nPLAY [{name}] — {hosts} host(s) {:*<40}", ""));
        if let Some(old) = lock(&self.overall).take() {
            old.finish_and_clear();
        }
        let bar = self.multi.add(ProgressBar::new(hosts as u64));
        bar.set_style(
            ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} hosts {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        *lock(&self.overall) = Some(bar);
    }

    fn host_started(&self, host: &str) {
        if !self.tty {
            return;
        }
        let line = self.multi.add(ProgressBar::new_spinner());
        line.set_style(
            ProgressStyle::with_template("  {spinner} {prefix:.bold} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        line.set_prefix(host.to_string());
        line.enable_steady_tick(Duration::from_millis(120));
        lock(&self.lines).insert(host.to_string(), line);
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
        if let Some(l) = lock(&self.lines).remove(&h.host) {
            l.finish_and_clear();
            self.multi.remove(&l);
        }
        if let Some(b) = lock(&self.overall).as_ref() {
            b.inc(1);
        }
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
}

impl Drop for TerminalReporter {
    fn drop(&mut self) {
        if let Some(b) = lock(&self.overall).take() {
            b.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}
