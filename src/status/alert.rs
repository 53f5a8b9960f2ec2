//! `alert test`'s conversation with Alertmanager's v2 API: post a synthetic alert for one
//! fleet group, read which receiver Alertmanager routed it to, keep it firing long enough for
//! the group's notification to go out (the route's `group_wait`), then resolve it.
//!
//! The only thing this module writes is that one synthetic alert (and its resolution).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::now_unix;
use crate::modules::http::{API_BODY_CAP, error_snippet, get_json, read_capped};
use crate::modules::metrics_check::short_reqwest;

/// `alertname` of the synthetic alert.
pub const ALERTNAME: &str = "PromfleetTest";

/// The synthetic alert's labels for `group`.
pub fn labels(group: &str) -> Value {
    json!({
        "alertname": ALERTNAME,
        "group": group,
        "severity": "info",
        "instance": "promfleet",
    })
}

fn alert_body(group: &str, ends_at: Option<&str>) -> Value {
    let mut a = json!({
        "labels": labels(group),
        "annotations": {
            "title": format!("promfleet alert test for group {group}"),
            "description": "Synthetic alert sent by `promfleet alert test` to prove the route to this group's chat; resolved right after.",
        },
    });
    if let Some(e) = ends_at {
        a["endsAt"] = json!(e);
    }
    json!([a])
}

async fn post(http: &reqwest::Client, base: &str, body: &Value) -> Result<(), String> {
    let resp = http
        .post(format!("{base}/api/v2/alerts"))
        .timeout(Duration::from_secs(10))
        .json(body)
        .send()
        .await
        .map_err(|e| short_reqwest(&e))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        let code = resp.status();
        Err(format!("HTTP {code} {}", error_snippet(resp, 200).await))
    }
}

/// Receivers of the synthetic alert of `group` as Alertmanager lists it (None: not listed yet).
async fn receivers(
    http: &reqwest::Client,
    base: &str,
    group: &str,
) -> Result<Option<Vec<String>>, String> {
    let v: Value = get_json(
        http.get(format!("{base}/api/v2/alerts"))
            .query(&[
                ("filter", format!("alertname=\"{ALERTNAME}\"")),
                ("filter", format!("group=\"{group}\"")),
            ])
            .timeout(Duration::from_secs(10)),
        "/api/v2/alerts",
    )
    .await?;
    let Some(a) = v.as_array().and_then(|a| a.first()) else {
        return Ok(None);
    };
    Ok(Some(
        a["receivers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(String::from))
            .collect(),
    ))
}

/// The top route's `group_wait` from the running config (Alertmanager's default: 30s).
pub async fn group_wait(http: &reqwest::Client, base: &str) -> Duration {
    let default = Duration::from_secs(30);
    let Ok(resp) = http
        .get(format!("{base}/api/v2/status"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
    else {
        return default;
    };
    let Ok(body) = read_capped(resp, API_BODY_CAP).await else {
        return default;
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return default;
    };
    let Some(text) = v["config"]["original"].as_str() else {
        return default;
    };
    serde_saphyr::from_str::<Value>(text)
        .ok()
        .and_then(|c| c["route"]["group_wait"].as_str().and_then(parse_duration))
        .unwrap_or(default)
}

/// Prometheus-style durations: `500ms`, `30s`, `5m`, `1h30m`, `1d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            'h' => 3600.0,
            'd' => 86400.0,
            'w' => 604800.0,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    (any && num.is_empty()).then(|| Duration::from_secs_f64(total))
}

/// Unix seconds → RFC 3339 UTC with milliseconds (what Alertmanager accepts as `endsAt`).
pub fn rfc3339(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let ms = ((unix - secs as f64) * 1000.0) as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What happened at one Alertmanager.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertOutcome {
    pub alertmanager: String,
    /// Receivers Alertmanager routed the alert to.
    pub receivers: Vec<String>,
    /// The receiver the inventory's group should route to.
    pub expected: String,
    pub resolved: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AlertOutcome {
    pub fn routed_right(&self) -> bool {
        self.error.is_none() && self.receivers.contains(&self.expected)
    }
}

/// Post, read the routing, hold (`hold`, else each Alertmanager's `group_wait` + 2 s), resolve.
pub async fn run_test(
    http: &reqwest::Client,
    alertmanagers: &[String],
    group: &str,
    expected: &str,
    hold: Option<Duration>,
) -> Vec<AlertOutcome> {
    let mut out: Vec<AlertOutcome> = alertmanagers
        .iter()
        .map(|a| AlertOutcome {
            alertmanager: a.trim_end_matches('/').to_string(),
            receivers: vec![],
            expected: expected.to_string(),
            resolved: false,
            error: None,
        })
        .collect();
    let firing = alert_body(group, None);
    let mut wait = Duration::ZERO;
    for o in &mut out {
        if let Err(e) = post(http, &o.alertmanager, &firing).await {
            o.error = Some(format!("posting the alert: {e}"));
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match receivers(http, &o.alertmanager, group).await {
                Ok(Some(r)) => {
                    o.receivers = r;
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(None) => {
                    o.error = Some("accepted the alert but never listed it".into());
                    break;
                }
                Err(e) => {
                    o.error = Some(format!("listing alerts: {e}"));
                    break;
                }
            }
        }
        let gw = match hold {
            Some(h) => h,
            None => group_wait(http, &o.alertmanager).await + Duration::from_secs(2),
        };
        wait = wait.max(gw);
    }
    if out.iter().any(|o| o.error.is_none()) {
        tokio::time::sleep(wait).await;
    }
    let resolved = alert_body(group, Some(&rfc3339(now_unix())));
    for o in &mut out {
        // Resolve wherever the alert may have arrived, even if listing it failed.
        if o.error.as_deref().is_some_and(|e| e.starts_with("posting")) {
            continue;
        }
        match post(http, &o.alertmanager, &resolved).await {
            Ok(()) => o.resolved = true,
            Err(e) => {
                let msg = format!("resolving the alert: {e}");
                o.error = Some(match o.error.take() {
                    Some(prev) => format!("{prev}; {msg}"),
                    None => msg,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_timestamps() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(rfc3339(1714564800.25), "2024-05-01T12:00:00.250Z");
        let back = super::super::age_secs(&rfc3339(1714564800.0), 1714564801.0).unwrap();
        assert!((back - 1.0).abs() < 1e-6);
    }
}
