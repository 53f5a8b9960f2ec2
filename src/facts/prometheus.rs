//! Prometheus targets, as a fact of a Prometheus server (HTTP, from the jump host): its
//! active targets by `__address__` (the `ip:port` Consul discovery gives a registered
//! service), with health, last error and last scrape. Read by `status`, the
//! `prometheus_targets` module and the health gate. Not cached: every reader polls it until
//! a deadline, and a cached answer would never change.
//!
//! Owns: the `/api/v1/targets` request and its typed answer. Must not: judge it (each reader
//! says what UP enough means to it).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::modules::http::get_json;
use crate::status::{age_secs, now_unix};

/// What Prometheus says about one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub health: String,
    pub last_error: String,
    /// Seconds since the last scrape, when Prometheus has scraped it.
    pub last_scrape_age: Option<f64>,
    /// The last scrape's timestamp as Prometheus wrote it (a new value = a new scrape).
    pub last_scrape: String,
}

/// One Prometheus and its active targets by `__address__` (or why they could not be read).
#[derive(Debug, Clone)]
pub struct PromTargets {
    pub url: String,
    pub targets: Result<HashMap<String, Target>, String>,
}

impl PromTargets {
    /// Read the active targets of the Prometheus at `url` (one GET).
    pub async fn fetch(http: &reqwest::Client, url: &str) -> PromTargets {
        let base = url.trim_end_matches('/').to_string();
        let targets = fetch(http, &base).await;
        PromTargets { url: base, targets }
    }
}

/// One GET of the active targets (bounded answer, 10 s).
async fn fetch(http: &reqwest::Client, base: &str) -> Result<HashMap<String, Target>, String> {
    let v: Value = get_json(
        http.get(format!("{base}/api/v1/targets?state=active"))
            .timeout(Duration::from_secs(10)),
        "/api/v1/targets",
    )
    .await?;
    let now = now_unix();
    let mut out = HashMap::new();
    for t in v["data"]["activeTargets"].as_array().into_iter().flatten() {
        let s = |x: &Value| x.as_str().unwrap_or_default().to_string();
        out.insert(
            s(&t["discoveredLabels"]["__address__"]),
            Target {
                health: s(&t["health"]),
                last_error: s(&t["lastError"]),
                last_scrape_age: t["lastScrape"].as_str().and_then(|l| age_secs(l, now)),
                last_scrape: s(&t["lastScrape"]),
            },
        );
    }
    Ok(out)
}
