//! `alert test`'s conversation with Alertmanager's v2 API: post a synthetic alert for one
//! fleet group, read which receiver Alertmanager routed it to, keep it firing long enough for
//! the group's notification to go out (the route's `group_wait`), then resolve it.
//!
//! The only thing this module writes is that one synthetic alert (and its resolution).

use std::time::Duration;

use crate::base::poll::{self, Miss, Pace};

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
        .and_then(|c| {
            c["route"]["group_wait"]
                .as_str()
                .and_then(crate::base::clock::parse_duration)
        })
        .unwrap_or(default)
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
        let am = o.alertmanager.as_str();
        let every = Pace::every(Duration::from_millis(200));
        let listed = poll::until(Duration::from_secs(10), every, move || async move {
            match receivers(http, am, group).await {
                Ok(Some(r)) => Ok(r),
                Ok(None) => Err(Miss::Retry("accepted the alert but never listed it".into())),
                Err(e) => Err(Miss::Fail(format!("listing alerts: {e}"))),
            }
        })
        .await;
        match listed {
            Ok(r) => o.receivers = r,
            Err(e) => o.error = Some(e),
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
    let resolved = alert_body(group, Some(&crate::base::clock::rfc3339_millis(now_unix())));
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
