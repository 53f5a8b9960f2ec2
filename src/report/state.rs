//! The run state: `.promfleet/last-run.json` (every host's outcome) and `.promfleet/retry`
//! (failed and unreachable hosts, one a line — usable as `--limit @.promfleet/retry`).
//! The retry file shrinks as hosts succeed and is removed when empty. Both are written
//! atomically (`write_atomic`); a run holds the directory's `StateLock` while it runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{HostStatus, RunReport, write_atomic};

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
    ) -> std::io::Result<RunState> {
        std::fs::create_dir_all(dir)?;
        let mut state = Self::read(dir).unwrap_or_default();
        if state.inventory != inventory || state.playbooks != playbooks {
            // A different job: earlier outcomes do not apply.
            state.hosts.clear();
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
}
