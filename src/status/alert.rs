//! `alert test`'s conversation with Alertmanager's v2 API: post a synthetic alert for one
//! fleet group, read which receiver Alertmanager routed it to, keep it firing long enough for
//! the group's notification to go out (the route's `group_wait`), then resolve it.
//!
//! The only thing this module writes is that one synthetic alert (and its resolution).

use std::time::Duration;

use crate::base::poll::{self, Miss, Pace};
use crate::executor::Scheduler;

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
/// The Alertmanagers are asked at once through `sched`; a Ctrl-C (its cancellation) cuts the
/// hold short, and the resolution is sent to every Alertmanager that got the alert whatever
/// happened: a test alert left firing would page someone.
pub async fn run_test(
    http: &reqwest::Client,
    alertmanagers: &[String],
    group: &str,
    expected: &str,
    hold: Option<Duration>,
    sched: &Scheduler,
) -> Vec<AlertOutcome> {
    let outcome = |a: &String| AlertOutcome {
        alertmanager: a.trim_end_matches('/').to_string(),
        receivers: vec![],
        expected: expected.to_string(),
        resolved: false,
        error: None,
    };
    let items = alertmanagers
        .iter()
        .map(|a| (a.clone(), outcome(a)))
        .collect();
    let (h, g, s) = (http.clone(), group.to_string(), sched.clone());
    let fired = sched
        .run(items, move |o: AlertOutcome| {
            let (h, g, s) = (h.clone(), g.clone(), s.clone());
            async move {
                let mut abandoned = o.clone();
                match s.or_abort(fire(h, g, hold, o)).await {
                    Some(done) => done,
                    // It may have been posted: the resolution below is still sent.
                    None => {
                        abandoned.error = Some("abandoned (second interrupt)".into());
                        (abandoned, Duration::ZERO)
                    }
                }
            }
        })
        .in_order()
        .await;
    let mut out = Vec::new();
    let mut wait = Duration::ZERO;
    for (a, f) in alertmanagers.iter().zip(fired) {
        match f {
            Some((o, gw)) => {
                wait = wait.max(gw);
                out.push(o);
            }
            None => {
                let mut o = outcome(a);
                o.error = Some("not tested (interrupted)".into());
                out.push(o);
            }
        }
    }
    if out.iter().any(|o| o.error.is_none()) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sched.cancel_token().cancelled() => {}
        }
    }
    let resolved = alert_body(group, Some(&crate::base::clock::rfc3339_millis(now_unix())));
    // Not through `sched`: its cancellation must not keep the resolution from being sent.
    let resolve = out.iter_mut().map(|o| {
        let resolved = &resolved;
        async move {
            // Resolve wherever the alert may have arrived, even if listing it failed.
            if o.error
                .as_deref()
                .is_some_and(|e| e.starts_with("posting") || e.starts_with("not tested"))
            {
                return;
            }
            match post(http, &o.alertmanager, resolved).await {
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
    });
    futures::future::join_all(resolve).await;
    out
}

/// Post the firing alert to one Alertmanager and read where it was routed; returns the
/// outcome so far and how long the alert must stay firing there.
async fn fire(
    http: reqwest::Client,
    group: String,
    hold: Option<Duration>,
    mut o: AlertOutcome,
) -> (AlertOutcome, Duration) {
    let http = &http;
    let group = group.as_str();
    if let Err(e) = post(http, &o.alertmanager, &alert_body(group, None)).await {
        o.error = Some(format!("posting the alert: {e}"));
        return (o, Duration::ZERO);
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
    (o, gw)
}
