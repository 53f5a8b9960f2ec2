//! Fleet status: read-only *facts* about what promfleet deployed, compared with what it would
//! deploy now. For every fleet host: SSH reachable, exporter files equal to the current
//! rendering, compose services running, metrics endpoints answering, Consul registrations
//! equal to what `consul_register` would send, Prometheus target health. For the central
//! services: Consul agents, Prometheus, Alertmanager, Grafana, DingTalk webhook, Karma.
//!
//! Owns: gathering and classifying (`ok` / `drift` / `down`), the report model, and which
//! `report::ExitCode` a state means (`Drift`, `Down`).
//! Must not: write anything anywhere (no uploads, no `up`, no registrations), or print — the
//! reporter renders the report (`report::render`, `Reporter::status`).

pub mod alert;
pub mod central;
pub mod host;
pub mod preflight;
pub mod targets;
pub mod unchanged;

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::report::ExitCode;

/// How one fact compares with what promfleet wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not checked (no SSH session, nothing to compare with).
    Unknown,
    Ok,
    /// Running, but not what promfleet would deploy now (file, registration, container).
    Drift,
    /// Not answering: host unreachable, exporter silent, target down, service unanswered.
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Ok => "ok",
            State::Drift => "drift",
            State::Down => "down",
        }
    }
}

/// One fact: its state, a short cell for the table and the full reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub state: State,
    /// A few words for a table cell (`ok`, `differs`, `2/2 running`, `312 samples`).
    pub summary: String,
    /// The whole story, for the lines under the table and for JSON.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Check {
    pub fn new(state: State, summary: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            state,
            summary: summary.into(),
            detail: detail.into(),
        }
    }
    pub fn ok(summary: impl Into<String>) -> Check {
        Check::new(State::Ok, summary, "")
    }
    pub fn unknown(detail: impl Into<String>) -> Check {
        Check::new(State::Unknown, "-", detail)
    }
}

/// Named checks in display order (serialised as a JSON object in that order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checks(pub Vec<(String, Check)>);

impl Checks {
    pub fn push(&mut self, name: impl Into<String>, c: Check) {
        self.0.push((name.into(), c));
    }
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
    /// The worst state (Unknown counts as nothing).
    pub fn worst(&self) -> State {
        self.0
            .iter()
            .map(|(_, c)| c.state)
            .max()
            .filter(|s| *s != State::Unknown)
            .unwrap_or(State::Ok)
    }
}

impl Serialize for Checks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One fleet host's row.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host: String,
    pub group: String,
    pub ip: String,
    pub state: State,
    pub checks: Checks,
}

/// One central service on one monitoring host (or one Consul agent).
#[derive(Debug, Clone, Serialize)]
pub struct CentralRow {
    pub service: String,
    /// Monitoring host name, or the agent URL for Consul.
    pub at: String,
    pub url: String,
    #[serde(flatten)]
    pub check: Check,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub hosts: usize,
    pub hosts_ok: usize,
    pub hosts_drift: usize,
    pub hosts_down: usize,
    pub central: usize,
    pub central_ok: usize,
    pub central_drift: usize,
    pub central_down: usize,
}

/// The whole status report.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub hosts: Vec<HostRow>,
    pub central: Vec<CentralRow>,
    pub summary: Summary,
    pub state: State,
    pub exit_code: ExitCode,
}

impl StatusReport {
    pub fn new(hosts: Vec<HostRow>, central: Vec<CentralRow>) -> StatusReport {
        let mut s = Summary {
            hosts: hosts.len(),
            central: central.len(),
            ..Summary::default()
        };
        for h in &hosts {
            match h.state {
                State::Down => s.hosts_down += 1,
                State::Drift => s.hosts_drift += 1,
                _ => s.hosts_ok += 1,
            }
        }
        for c in &central {
            match c.check.state {
                State::Down => s.central_down += 1,
                State::Drift => s.central_drift += 1,
                _ => s.central_ok += 1,
            }
        }
        let state = hosts
            .iter()
            .map(|h| h.state)
            .chain(central.iter().map(|c| c.check.state))
            .max()
            .filter(|s| *s != State::Unknown)
            .unwrap_or(State::Ok);
        let exit_code = match state {
            State::Down => ExitCode::Down,
            State::Drift => ExitCode::Drift,
            _ => ExitCode::Ok,
        };
        StatusReport {
            hosts,
            central,
            summary: s,
            state,
            exit_code,
        }
    }
}

/// Seconds since an RFC 3339 timestamp as Prometheus writes them
/// (`2024-05-01T12:00:00.123456789Z`, `…+08:00`); `None` if it cannot be read or is
/// Prometheus's `0001-01-01` for "never scraped" (anything before 1971).
pub fn age_secs(rfc3339: &str, now_unix: f64) -> Option<f64> {
    const YEAR_1971: f64 = 365.0 * 86400.0;
    let unix = crate::base::clock::parse_rfc3339(rfc3339)?;
    (unix >= YEAR_1971).then_some(now_unix - unix)
}

pub use crate::base::clock::now_unix;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_of_prometheus_timestamps() {
        // 2024-05-01T12:00:00Z = 1714564800
        let now = 1714564810.5;
        let a = age_secs("2024-05-01T12:00:00.5Z", now).unwrap();
        assert!((a - 10.0).abs() < 1e-6, "{a}");
        let b = age_secs("2024-05-01T20:00:00+08:00", now).unwrap();
        assert!((b - 10.5).abs() < 1e-6, "{b}");
        assert_eq!(age_secs("0001-01-01T00:00:00Z", now), None);
        assert_eq!(age_secs("garbage", now), None);
        let written = crate::base::clock::rfc3339_millis(1714564800.0);
        assert!((age_secs(&written, 1714564801.0).unwrap() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn down_wins_over_drift() {
        let row = |state| HostRow {
            host: "h".into(),
            group: "g".into(),
            ip: "127.0.0.1".into(),
            state,
            checks: Checks::default(),
        };
        assert_eq!(
            StatusReport::new(vec![row(State::Ok)], vec![]).exit_code,
            ExitCode::Ok
        );
        assert_eq!(
            StatusReport::new(vec![row(State::Ok), row(State::Drift)], vec![]).exit_code,
            ExitCode::Drift
        );
        assert_eq!(
            StatusReport::new(vec![row(State::Down), row(State::Drift)], vec![]).exit_code,
            ExitCode::Down
        );
    }
}
