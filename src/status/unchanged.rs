//! Hosts unchanged since promfleet last deployed them: preflight's memo and its cheap check.
//!
//! A deploy that succeeded on a host records (in the state file, `report::RunState`) the
//! verdict and adaptations preflight gave it and the SHA-256 of every file its compose
//! projects watch, as written. The next deploy asks such a host only what the compose module
//! reads anyway — those files and whether every service runs — in one round trip. When they
//! are as recorded, the host is not probed again (no Docker CLI, no port walk): the recorded
//! verdict and adaptations stand, and `unchanged_since` says so in every report. Anything else
//! — a file edited, a service down, another promfleet build, or a plan that would now write
//! other content — and the host gets the full preflight before anything is changed there, so
//! no host is ever changed on a memo.
//!
//! Owns: the memo, the files it covers (`watched_files`), the cheap check and the verdict it
//! stands for. Must not: write to a host or to the state file (the CLI records memos).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::preflight::{Adaptation, HostPreflight, Verdict};
use crate::facts::compose::{ComposeFact, ComposeState};
use crate::facts::files::FileFact;
use crate::facts::{ErasedFact, FactError, Facts};
use crate::inventory::Host;
use crate::modules::Action;
use crate::modules::file::{FileAction, sha256_hex};
use crate::playbook::Plan;

/// What a successful deploy recorded of a host's preflight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memo {
    /// The promfleet build that probed the host (`version commit`): another build probes again.
    pub by: String,
    /// When the host was last probed in full (RFC 3339, UTC).
    pub at: String,
    pub verdict: Verdict,
    #[serde(default)]
    pub adaptations: Vec<Adaptation>,
    /// Path → SHA-256 of the content the deploy wrote there (the files its compose projects
    /// watch).
    pub files: BTreeMap<String, String>,
}

impl Memo {
    pub fn this_build() -> String {
        format!("{} {}", env!("CARGO_PKG_VERSION"), env!("PROMFLEET_COMMIT"))
    }

    /// The memo of a host preflight judged in full (`None` for a blocked or unreachable
    /// host, or one without a watched file the plan writes).
    pub fn of(r: &HostPreflight, files: BTreeMap<String, String>, at: &str) -> Option<Memo> {
        if r.verdict == Verdict::Blocked || r.unreachable || files.is_empty() {
            return None;
        }
        Some(Memo {
            by: Memo::this_build(),
            at: at.to_string(),
            verdict: r.verdict,
            adaptations: r.adaptations.clone(),
            files,
        })
    }
}

/// The files a host's compose projects watch (compose file, `.env`, `env_file:`s) that the
/// plan writes, over every play the host is in, and the projects' facts.
pub fn watched_files<'a>(plan: &'a Plan, host: &str) -> (Vec<&'a FileAction>, Vec<ComposeFact>) {
    let actions: Vec<&Action> = plan
        .plays
        .iter()
        .flat_map(|p| &p.hosts)
        .filter(|hp| hp.host.name == host)
        .flat_map(|hp| hp.steps.iter().chain(&hp.handlers))
        .filter_map(|s| s.action.as_ref())
        .collect();
    let projects: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Compose(c) => Some(c),
            _ => None,
        })
        .collect();
    let files = actions
        .iter()
        .filter_map(|a| match a {
            Action::File(f) if projects.iter().any(|c| c.watch.contains(&f.dest)) => Some(f),
            _ => None,
        })
        .collect();
    (files, projects.iter().map(|c| c.fact()).collect())
}

/// Path → SHA-256 of what the plan writes to the host's watched files.
pub fn planned_digests(plan: &Plan, host: &str) -> BTreeMap<String, String> {
    watched_files(plan, host)
        .0
        .into_iter()
        .map(|f| (f.dest.clone(), sha256_hex(&f.content)))
        .collect()
}

/// The cheap check of one host with a memo.
pub struct Unchanged {
    pub memo: Memo,
    /// Each file of the memo, with the mode and owner the plan gives it.
    files: Vec<(FileFact, u32, Option<String>)>,
    projects: Vec<ComposeFact>,
}

impl Unchanged {
    /// The check for `host` when its memo is this build's and names exactly the files the
    /// plan writes to its watched paths; `None` otherwise (the host is probed in full).
    pub fn new(plan: &Plan, host: &str, memo: &Memo) -> Option<Unchanged> {
        if memo.by != Memo::this_build() || memo.verdict == Verdict::Blocked {
            return None;
        }
        let (files, projects) = watched_files(plan, host);
        let paths: Vec<&String> = files.iter().map(|f| &f.dest).collect();
        if projects.is_empty() || paths.len() != memo.files.len() {
            return None;
        }
        if !paths.iter().all(|p| memo.files.contains_key(*p)) {
            return None;
        }
        Some(Unchanged {
            memo: memo.clone(),
            files: files
                .iter()
                .map(|f| (FileFact::new(&f.dest), f.mode, f.owner.clone()))
                .collect(),
            projects,
        })
    }

    /// Ask the files and projects (with `also`, one round trip): whether every file is as the
    /// memo recorded it (content, and the plan's mode and owner) and every service of every
    /// project runs. Err only when the host could not be asked.
    pub async fn holds(&self, facts: &Facts, also: &[&dyn ErasedFact]) -> Result<bool, FactError> {
        let mut batch: Vec<&dyn ErasedFact> = Vec::new();
        batch.extend(self.files.iter().map(|(f, _, _)| f as &dyn ErasedFact));
        batch.extend(self.projects.iter().map(|p| p as &dyn ErasedFact));
        batch.extend_from_slice(also);
        if let Err(e @ FactError::Transport(_)) = facts.prefetch(&batch).await {
            return Err(e);
        }
        for (f, mode, owner) in &self.files {
            let Some(sha) = self.memo.files.get(&f.path) else {
                return Ok(false);
            };
            match facts.get(f).await {
                Ok(s) if s.unchanged_by(sha, *mode, owner.as_deref()) == Some(true) => {}
                _ => return Ok(false),
            }
        }
        for p in &self.projects {
            match facts.get(p).await {
                Ok(ComposeState::Project(p))
                    if !p.expected.is_empty() && p.missing().is_empty() => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The verdict the memo stands for.
    pub fn verdict(&self, host: &Host) -> HostPreflight {
        let m = &self.memo;
        HostPreflight {
            host: host.name.clone(),
            group: host.group.clone(),
            verdict: m.verdict,
            unreachable: false,
            checks: BTreeMap::from([(
                "unchanged".to_string(),
                format!(
                    "{} file(s) as deployed, every service running: not probed again since {} (`promfleet preflight` or `deploy --full-preflight` probes it)",
                    m.files.len(),
                    m.at
                ),
            )]),
            adaptations: m.adaptations.clone(),
            blockers: Vec::new(),
            connect_failure: None,
            unchanged_since: Some(m.at.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{compose, compose_step, copy_step, file, host};
    use crate::playbook::{HostPlan, PlannedPlay};

    const DIR: &str = "/opt/exporters";

    fn plan(content: &[u8], extra: Option<&str>) -> Plan {
        let mut steps = vec![copy_step(file(
            &format!("{DIR}/docker-compose.yml"),
            content,
        ))];
        if let Some(dest) = extra {
            steps.push(copy_step(file(dest, b"other")));
        }
        steps.push(compose_step(compose(DIR, &["node-exporter"])));
        Plan {
            plays: vec![PlannedPlay {
                name: "exporters".into(),
                stage: None,
                serial: None,
                max_fail_percentage: None,
                canary: false,
                gate: None,
                hosts: vec![HostPlan {
                    host: host("web1"),
                    steps,
                    handlers: Vec::new(),
                }],
            }],
        }
    }

    fn memo(p: &Plan) -> Memo {
        Memo {
            by: Memo::this_build(),
            at: "2026-12-02T00:00:00Z".into(),
            verdict: Verdict::Ready,
            adaptations: Vec::new(),
            files: planned_digests(p, "web1"),
        }
    }

    #[test]
    fn only_the_watched_files_the_plan_writes_are_remembered() {
        // A file the compose project does not watch is not part of the memo.
        let p = plan(b"services: {}\n", Some("/opt/exporters/prometheus.yml"));
        let d = planned_digests(&p, "web1");
        assert_eq!(
            d.keys().collect::<Vec<_>>(),
            ["/opt/exporters/docker-compose.yml"]
        );
        assert_eq!(
            d.values().next().map(String::as_str),
            Some(sha256_hex(b"services: {}\n").as_str())
        );
        assert!(planned_digests(&p, "web2").is_empty());
    }

    #[test]
    fn a_memo_of_another_build_or_other_files_or_a_blocked_host_is_not_used() {
        let p = plan(b"a", None);
        let m = memo(&p);
        assert!(Unchanged::new(&p, "web1", &m).is_some());
        // Another promfleet build probes again.
        let other = Memo {
            by: "0.0.0 0000000".into(),
            ..m.clone()
        };
        assert!(Unchanged::new(&p, "web1", &other).is_none());
        // The memo names a file the plan no longer writes.
        let mut moved = m.clone();
        moved
            .files
            .insert("/elsewhere/docker-compose.yml".into(), "x".into());
        assert!(Unchanged::new(&p, "web1", &moved).is_none());
        // A host without a compose project.
        assert!(Unchanged::new(&p, "web2", &m).is_none());
        // Blocked hosts get no memo at all.
        let judged = HostPreflight {
            verdict: Verdict::Blocked,
            ..Unchanged::new(&p, "web1", &m)
                .unwrap()
                .verdict(&host("web1"))
        };
        assert!(Memo::of(&judged, planned_digests(&p, "web1"), "now").is_none());
    }
}
