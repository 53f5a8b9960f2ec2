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

use crate::modules::http::json_answer;
use crate::modules::metrics_check::short_reqwest;
use crate::settings::Endpoint;
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
    /// Prometheus refused the credentials (HTTP 401): asking again will not help.
    pub refused: bool,
}

impl PromTargets {
    /// Read the active targets of the Prometheus at `url` (one GET, through `prom`'s client:
    /// its TLS and credentials).
    pub async fn fetch(prom: &Endpoint, url: &str) -> PromTargets {
        let base = url.trim_end_matches('/').to_string();
        let (targets, refused) = match fetch(prom, &base).await {
            Err(Fetch::Refused(m)) => (Err(m), true),
            Err(Fetch::Other(m)) => (Err(m), false),
            Ok(t) => (Ok(t), false),
        };
        PromTargets {
            url: base,
            targets,
            refused,
        }
    }
}

enum Fetch {
    Refused(String),
    Other(String),
}

/// One GET of the active targets (bounded answer, 10 s).
async fn fetch(prom: &Endpoint, base: &str) -> Result<HashMap<String, Target>, Fetch> {
    let req = prom
        .client()
        .get(format!("{base}/api/v1/targets?state=active"))
        .timeout(Duration::from_secs(10));
    let resp = req
        .send()
        .await
        .map_err(|e| Fetch::Other(short_reqwest(&e)))?;
    if let Some(m) = prom.explain(resp.status().as_u16(), resp.url().as_str()) {
        return Err(Fetch::Refused(m));
    }
    let v: Value = json_answer(resp, "/api/v1/targets")
        .await
        .map_err(Fetch::Other)?;
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
