//! `alert test`'s conversation with Alertmanager's v2 API: post a synthetic alert for one
//! fleet group, read which receiver Alertmanager routed it to, keep it firing long enough for
//! the group's notification to go out (the route's `group_wait`, plus the cluster's peer
//! waits with several Alertmanagers), then resolve it. Delivery is observed on each
//! Alertmanager's own counter of notifications sent (`alertmanager_notifications_total`,
//! counted once a notification passed the cluster's de-duplication): read before the alert is
//! posted and before it is resolved, the sum of the increases is how many notifications the
//! Alertmanagers sent for it — exactly one when they form one cluster.
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

/// Counter of notifications an Alertmanager sent (every integration; only those that passed
/// the notification log's de-duplication are counted).
pub const NOTIFICATIONS_METRIC: &str = "alertmanager_notifications_total";

/// The sum of [`NOTIFICATIONS_METRIC`] in a Prometheus text exposition (None: absent).
pub fn notifications_in(metrics: &str) -> Option<u64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(NOTIFICATIONS_METRIC) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        // `name{labels} value [timestamp]`: the value follows the labels' closing brace.
        let after = rest.rsplit_once('}').map_or(rest, |(_, v)| v);
        if let Some(v) = after
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            found = true;
            sum += v;
        }
    }
    found.then_some(sum.max(0.0) as u64)
}

/// Notifications `base` has sent so far ([`NOTIFICATIONS_METRIC`], from `/metrics`).
async fn notifications_sent(http: &reqwest::Client, base: &str) -> Result<u64, String> {
    let resp = http
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| short_reqwest(&e))?;
    if !resp.status().is_success() {
        return Err(format!("/metrics: HTTP {}", resp.status()));
    }
    let body = read_capped(resp, METRICS_CAP).await?;
    notifications_in(&String::from_utf8_lossy(&body))
        .ok_or_else(|| format!("/metrics has no {NOTIFICATIONS_METRIC}"))
}

/// Alertmanager's own /metrics page is a few hundred KiB at most.
const METRICS_CAP: u64 = 4 << 20;

/// What happened at one Alertmanager.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertOutcome {
    pub alertmanager: String,
    /// Receivers Alertmanager routed the alert to.
    pub receivers: Vec<String>,
    /// The receiver the inventory's group should route to.
    pub expected: String,
    pub resolved: bool,
    /// Notifications this Alertmanager sent while the test alert was held (None: its
    /// counter could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AlertOutcome {
    pub fn routed_right(&self) -> bool {
        self.error.is_none() && self.receivers.contains(&self.expected)
    }
}

/// Notifications all `outcomes` sent for the test alert, when every Alertmanager's counter was
/// read: one alert through one cluster must make exactly one.
pub fn notifications_total(outcomes: &[AlertOutcome]) -> Option<u64> {
    outcomes.iter().map(|o| o.notifications).sum()
}

/// Post, read the routing, hold (`hold`, else each Alertmanager's `group_wait` + `settle` +
/// 2 s; `settle` covers the cluster members' peer waits), count the notifications sent
/// meanwhile, resolve.
/// The Alertmanagers are asked at once through `sched`; a Ctrl-C (its cancellation) cuts the
/// hold short, and the resolution is sent to every Alertmanager that got the alert whatever
/// happened: a test alert left firing would page someone.
pub async fn run_test(
    http: &reqwest::Client,
    alertmanagers: &[String],
    group: &str,
    expected: &str,
    hold: Option<Duration>,
    settle: Duration,
    sched: &Scheduler,
) -> Vec<AlertOutcome> {
    let outcome = |a: &String| AlertOutcome {
        alertmanager: a.trim_end_matches('/').to_string(),
        receivers: vec![],
        expected: expected.to_string(),
        resolved: false,
        notifications: None,
        error: None,
    };
    let count_all = || {
        futures::future::join_all(
            alertmanagers
                .iter()
                .map(|a| notifications_sent(http, a.trim_end_matches('/'))),
        )
    };
    let counted_before = count_all().await;
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
                match s.or_abort(fire(h, g, hold, settle, o)).await {
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
        if !sched.is_cancelled() {
            // Before the resolution, whose own notification would count too.
            for ((o, b), a) in out.iter_mut().zip(counted_before).zip(count_all().await) {
                if let (Ok(b), Ok(a)) = (b, a) {
                    o.notifications = Some(a.saturating_sub(b));
                }
            }
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
    settle: Duration,
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
        None => group_wait(http, &o.alertmanager).await + settle + Duration::from_secs(2),
    };
    (o, gw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_summed_over_integrations_and_absent_is_none() {
        let page = "# HELP alertmanager_notifications_total The total number of attempted notifications.\n\
# TYPE alertmanager_notifications_total counter\n\
alertmanager_notifications_total{integration=\"email\"} 0\n\
alertmanager_notifications_total{integration=\"webhook\"} 3\n\
alertmanager_notifications_total{integration=\"we} bhook\"} 1 1700000000\n\
alertmanager_notifications_failed_total{integration=\"webhook\"} 7\n";
        assert_eq!(notifications_in(page), Some(4));
        assert_eq!(
            notifications_in("alertmanager_notifications_totalx 5\n"),
            None
        );
        assert_eq!(
            notifications_in("alertmanager_notifications_total 2\n"),
            Some(2)
        );
    }

    #[test]
    fn total_is_known_only_when_every_counter_was_read() {
        let o = |n| AlertOutcome {
            alertmanager: "a".into(),
            receivers: vec![],
            expected: "webhook-x".into(),
            resolved: true,
            notifications: n,
            error: None,
        };
        assert_eq!(
            notifications_total(&[o(Some(1)), o(Some(0)), o(Some(0))]),
            Some(1)
        );
        assert_eq!(notifications_total(&[o(Some(1)), o(None)]), None);
    }
}
