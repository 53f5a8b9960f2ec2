//! The run state: `.promfleet/last-run.json` (every host's outcome) and `.promfleet/retry`
//! (failed and unreachable hosts, one a line — usable as `--limit @.promfleet/retry`).
//! The retry file shrinks as hosts succeed and is removed when empty. Both are written
//! atomically (`write_atomic`); a run holds the directory's `StateLock` while it runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{HostStatus, RunReport, write_atomic};
use crate::status::unchanged::Memo;

pub const STATE_DIR: &str = ".promfleet";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RunState {
    pub finished_at: String,
    pub inventory: String,
    pub playbooks: Vec<String>,
    /// host → its last outcome (`"ok"`, `"changed"`, `"failed"`, `"unreachable"`, `"not_run"`).
    pub hosts: BTreeMap<String, HostStatus>,
    pub failed: Vec<String>,
    pub halted: Option<String>,
    pub interrupted: bool,
    /// host → the remote files the last run that changed anything there changed: what
    /// `promfleet rollback` restores from `.prev`. Kept across jobs (it is about the host).
    #[serde(default)]
    pub changes: BTreeMap<String, HostChange>,
    /// host → what preflight found there when a run last probed it in full and then
    /// deployed it successfully (`status::unchanged`: such a host is not probed again while
    /// its files are as written and its services run).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub preflight: BTreeMap<String, Memo>,
}

/// What one run changed on one host.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct HostChange {
    /// When the run that changed them finished (RFC 3339, UTC).
    pub at: String,
    /// The playbooks that run ran (rollback plans them again).
    pub playbooks: Vec<String>,
    pub files: Vec<String>,
}

impl RunState {
    pub fn state_path(dir: &Path) -> PathBuf {
        dir.join("last-run.json")
    }
    pub fn retry_path(dir: &Path) -> PathBuf {
        dir.join("retry")
    }

    /// Merge this run into the previous state (hosts not in this run keep their outcome),
    /// then write both files atomically.
    pub fn record(
        dir: &Path,
        run: &RunReport,
        inventory: &str,
        playbooks: &[String],
        memos: &BTreeMap<String, Option<Memo>>,
    ) -> std::io::Result<RunState> {
        std::fs::create_dir_all(dir)?;
        let mut state = Self::read(dir).unwrap_or_default();
        if state.inventory != inventory || state.playbooks != playbooks {
            // A different job: earlier outcomes do not apply.
            state.hosts.clear();
            state.preflight.clear();
        }
        for (host, memo) in memos {
            match memo {
                Some(m) => state.preflight.insert(host.clone(), m.clone()),
                None => state.preflight.remove(host),
            };
        }
        for h in &run.hosts {
            // A host that was not run (halted stage, interrupted) is still to do: it is
            // recorded `not_run` and listed in the retry file.
            state.hosts.insert(h.host.clone(), h.status);
        }
        state.failed = state
            .hosts
            .iter()
            .filter(|(_, s)| s.needs_retry())
            .map(|(h, _)| h.clone())
            .collect();
        state.finished_at = crate::base::clock::now_rfc3339();
        for h in run.hosts.iter().filter(|h| !h.changed_files.is_empty()) {
            state.changes.insert(
                h.host.clone(),
                HostChange {
                    at: state.finished_at.clone(),
                    playbooks: playbooks.to_vec(),
                    files: h.changed_files.clone(),
                },
            );
        }
        state.inventory = inventory.to_string();
        state.playbooks = playbooks.to_vec();
        state.halted = run.halted.clone();
        state.interrupted = run.interrupted;
        write_atomic(
            &Self::state_path(dir),
            serde_json::to_string_pretty(&state)
                .unwrap_or_default()
                .as_bytes(),
            0o644,
        )?;
        let retry = Self::retry_path(dir);
        if state.failed.is_empty() {
            if retry.exists() {
                std::fs::remove_file(&retry)?;
            }
        } else {
            let mut text = String::from(
                "# hosts to retry: promfleet … --retry-failed (or --limit @this-file)\n",
            );
            for h in &state.failed {
                text.push_str(h);
                // A host preflight blocked says why after it (a comment to `--limit @file`).
                if let Some(why) = run
                    .hosts
                    .iter()
                    .find(|r| &r.host == h && r.failed_at.as_deref() == Some("preflight"))
                    .and_then(|r| r.error.as_deref())
                {
                    text.push_str("  # ");
                    text.push_str(&why.replace(['\n', '\r'], " "));
                }
                text.push('\n');
            }
            write_atomic(&retry, text.as_bytes(), 0o644)?;
        }
        Ok(state)
    }

    pub fn read(dir: &Path) -> Option<RunState> {
        let text = std::fs::read_to_string(Self::state_path(dir)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_written_with_status_strings_still_read_and_write_back_the_same() {
        // `hosts` as promfleet wrote it when the statuses were strings.
        let old = r#"{"finished_at":"2026-12-01T10:00:00Z","inventory":"inv.yml",
            "playbooks":["exporters.yml"],"hosts":{"a":"ok","b":"changed","c":"failed",
            "d":"unreachable","e":"not_run"},"failed":["c","d","e"],"halted":null,
            "interrupted":false}"#;
        let state: RunState = serde_json::from_str(old).unwrap();
        assert_eq!(state.hosts["d"], HostStatus::Unreachable);
        assert_eq!(state.hosts["e"], HostStatus::NotRun);
        let retry: Vec<&str> = state
            .hosts
            .iter()
            .filter(|(_, s)| s.needs_retry())
            .map(|(h, _)| h.as_str())
            .collect();
        assert_eq!(retry, ["c", "d", "e"]);
        let back = serde_json::to_value(&state).unwrap();
        let was: serde_json::Value = serde_json::from_str(old).unwrap();
        assert_eq!(back["hosts"], was["hosts"]);
        assert!(serde_json::from_str::<RunState>(&old.replace("\"ok\"", "\"fine\"")).is_err());
    }

    #[test]
    fn preflight_memos_are_set_dropped_kept_and_cleared_by_another_job() {
        use crate::status::preflight::Verdict;
        let dir = tempfile::tempdir().unwrap();
        let memo = |at: &str| Memo {
            by: Memo::this_build(),
            at: at.into(),
            verdict: Verdict::Ready,
            adaptations: Vec::new(),
            files: BTreeMap::from([("/d/docker-compose.yml".into(), "ab".into())]),
        };
        let run = |hosts: &[(&str, HostStatus)]| {
            let mut r = RunReport::default();
            for (h, s) in hosts {
                let mut hr = super::super::HostReport::new(h, "web");
                hr.status = *s;
                r.hosts.push(hr);
            }
            r
        };
        let books = ["exporters.yml".to_string()];
        let set = BTreeMap::from([
            ("a".into(), Some(memo("t1"))),
            ("b".into(), Some(memo("t1"))),
        ]);
        let r = run(&[("a", HostStatus::Changed), ("b", HostStatus::Changed)]);
        RunState::record(dir.path(), &r, "inv.yml", &books, &set).unwrap();
        // A later run of host b only: b's memo dropped (it failed), a's kept.
        let drop_b = BTreeMap::from([("b".into(), None)]);
        let r = run(&[("b", HostStatus::Failed)]);
        let st = RunState::record(dir.path(), &r, "inv.yml", &books, &drop_b).unwrap();
        assert_eq!(st.preflight.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            RunState::read(dir.path()).unwrap().preflight["a"],
            memo("t1")
        );
        // Another inventory: another job, whose hosts start without memos.
        let r = run(&[("c", HostStatus::Ok)]);
        let st = RunState::record(dir.path(), &r, "other.yml", &books, &BTreeMap::new()).unwrap();
        assert!(st.preflight.is_empty(), "{:?}", st.preflight);
    }
}
