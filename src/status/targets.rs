//! Prometheus' view of the fleet: `/api/v1/targets` of each monitoring host's Prometheus,
//! fetched once per status run, then looked up per exporter address (`ip:port`, the
//! `__address__` Consul discovery gives a registered service).

use super::{Check, State};

pub use crate::facts::prometheus::{PromTargets, Target};

/// The targets column of one host: every `(service, address)` it should have, in every
/// Prometheus. Down wins (a silent target is an outage), then missing (drift).
pub fn check(proms: &[PromTargets], want: &[(String, String)]) -> Check {
    if proms.is_empty() {
        return Check::unknown("no Prometheus to ask (no monitoring host in the inventory)");
    }
    if want.is_empty() {
        return Check::unknown("nothing registered for this host");
    }
    let mut down = Vec::new();
    let mut missing = Vec::new();
    let mut up = 0usize;
    let mut oldest: Option<f64> = None;
    let many = proms.len() > 1;
    for p in proms {
        let at = if many {
            format!(" in {}", p.url)
        } else {
            String::new()
        };
        let targets = match &p.targets {
            Ok(t) => t,
            Err(e) => {
                down.push(format!("Prometheus {} not answering: {e}", p.url));
                continue;
            }
        };
        for (service, addr) in want {
            match targets.get(addr) {
                Some(t) if t.health == "up" => {
                    up += 1;
                    if let Some(a) = t.last_scrape_age {
                        oldest = Some(oldest.map_or(a, |o: f64| o.max(a)));
                    }
                }
                Some(t) => down.push(format!(
                    "{service} {addr} is {}{}{at}",
                    if t.health.is_empty() {
                        "unknown"
                    } else {
                        &t.health
                    },
                    if t.last_error.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", t.last_error)
                    }
                )),
                None => missing.push(format!("{service} {addr} is not a target{at}")),
            }
        }
    }
    let total = want.len() * proms.len();
    let scraped = oldest
        .map(|a| format!(", scraped {:.0}s ago", a.max(0.0)))
        .unwrap_or_default();
    if !down.is_empty() {
        let mut all = down;
        all.extend(missing);
        return Check::new(
            State::Down,
            format!("down {}/{total}", total - up),
            all.join("; "),
        );
    }
    if !missing.is_empty() {
        return Check::new(
            State::Drift,
            format!("missing {}/{total}", missing.len()),
            missing.join("; "),
        );
    }
    Check::new(
        State::Ok,
        format!("up {up}/{total}"),
        format!("all up{scraped}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prom(entries: &[(&str, &str)]) -> PromTargets {
        PromTargets {
            url: "http://p:9090".into(),
            targets: Ok(entries
                .iter()
                .map(|(a, h)| {
                    (
                        a.to_string(),
                        Target {
                            health: h.to_string(),
                            last_error: String::new(),
                            last_scrape_age: Some(1.0),
                            last_scrape: String::new(),
                        },
                    )
                })
                .collect()),
            refused: false,
        }
    }

    #[test]
    fn down_beats_missing_beats_up() {
        let want = vec![
            ("node-exporter".to_string(), "10.0.0.1:9100".to_string()),
            ("cadvisor-exporter".to_string(), "10.0.0.1:9105".to_string()),
        ];
        let all_up = prom(&[("10.0.0.1:9100", "up"), ("10.0.0.1:9105", "up")]);
        assert_eq!(check(&[all_up], &want).state, State::Ok);
        let one_missing = prom(&[("10.0.0.1:9100", "up")]);
        assert_eq!(check(&[one_missing], &want).state, State::Drift);
        let one_down = prom(&[("10.0.0.1:9100", "down")]);
        let c = check(&[one_down], &want);
        assert_eq!(c.state, State::Down);
        assert!(
            c.detail.contains("node-exporter 10.0.0.1:9100 is down"),
            "{c:?}"
        );
        let dead = PromTargets {
            url: "http://p:9090".into(),
            targets: Err("cannot connect".into()),
            refused: false,
        };
        assert_eq!(check(&[dead], &want).state, State::Down);
    }
}
