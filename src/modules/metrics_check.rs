//! `metrics_check`: from the jump host, GET `http://<ip>:<port>/metrics` until a deadline and
//! require exposition text with samples of an expected family (node_… on 9100,
//! container_…/cadvisor_… on 9105).
//!
//! Owns: the module's arguments and defaults (the URL from the host's ip) and the poll of the
//! endpoint until its deadline.

use std::time::Duration;

use crate::base::poll::{self, Pace};

use super::http::{BodyError, read_capped};
use super::metrics;
use serde_json::Value;

use super::{Action, Args, Done, HostCtx, Module, PlanCtx, Task, TaskError};

#[derive(Debug, Clone)]
pub struct MetricsCheck {
    pub url: String,
    /// At least one of these prefixes must have samples (empty: any sample will do).
    pub expect: Vec<String>,
    pub min_samples: usize,
    pub timeout: Duration,
    /// Largest page read (`max_bytes`, inventory var `metrics_max_bytes`); over it → failed.
    pub max_bytes: u64,
}

/// `metrics_check`.
pub struct MetricsCheckModule;

impl Module for MetricsCheckModule {
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (
            &["port"],
            &[
                "path",
                "expect",
                "timeout",
                "address",
                "min_samples",
                "max_bytes",
            ],
        )
    }

    /// `http://<address, default the host's ip>:<port><path, default /metrics>`.
    fn plan(&self, args: &Value, cx: &mut PlanCtx<'_>) -> Result<Action, String> {
        let a = Args(args);
        let port = a.port("port")?;
        let addr = a
            .opt_str("address")?
            .unwrap_or_else(|| cx.host.ip.to_string());
        let path = a.opt_str("path")?.unwrap_or_else(|| "/metrics".into());
        Ok(Action::MetricsCheck(MetricsCheck {
            url: format!("http://{}:{port}{path}", crate::base::addr::url_host(&addr)),
            expect: a.list("expect")?,
            min_samples: a.opt_u64("min_samples")?.unwrap_or(1) as usize,
            timeout: Duration::from_secs(a.opt_u64("timeout")?.unwrap_or(60)),
            max_bytes: a
                .opt_u64("max_bytes")?
                .unwrap_or(super::http::METRICS_BODY_CAP),
        }))
    }
}

impl Task for MetricsCheck {
    super::task_run!();

    fn wants(&self) -> Vec<super::Want> {
        vec![super::Want::Endpoint(self.clone())]
    }
}

impl MetricsCheck {
    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        if ctx.check {
            return Ok(Done::skipped("not checked in --check mode"));
        }
        let pace = Pace {
            first: Duration::from_millis(200),
            max: Duration::from_secs(2),
        };
        let http = ctx.http;
        let polled = poll::until(self.timeout, pace, move || async move {
            match self.probe(http).await {
                Ok(detail) => Ok(detail),
                Err(e @ Miss::TooLarge(_)) => Err(poll::Miss::Fail(TaskError::permanent(format!(
                    "{e} — raise `metrics_max_bytes` if this exporter's page really is that big"
                )))),
                Err(Miss::NotYet(last)) => Err(poll::Miss::Retry(TaskError::transient(format!(
                    "{} not serving metrics after {}s: {last}",
                    self.url,
                    self.timeout.as_secs()
                )))),
            }
        })
        .await;
        polled.map(|detail| Done::ok().with(detail))
    }

    /// One GET, no retry (for `status`): the sample counts, or why it is not exposition.
    pub async fn probe_once(&self, http: &reqwest::Client) -> Result<String, String> {
        self.probe(http).await.map_err(|e| e.to_string())
    }

    async fn probe(&self, http: &reqwest::Client) -> Result<String, Miss> {
        let body = self.fetch(http).await.map_err(Miss::NotYet)?;
        let body = read_capped(body, self.max_bytes)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { .. } => Miss::TooLarge(e.to_string()),
                BodyError::Read(m) => Miss::NotYet(m),
            })?;
        self.judge(&body).map_err(Miss::NotYet)
    }

    /// The response, once it answered 2xx.
    async fn fetch(&self, http: &reqwest::Client) -> Result<reqwest::Response, String> {
        let resp = http
            .get(&self.url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| short_reqwest(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        Ok(resp)
    }

    /// Whether a page is exposition text with the expected families.
    fn judge(&self, body: &[u8]) -> Result<String, String> {
        let exp = metrics::parse(&String::from_utf8_lossy(body))
            .map_err(|e| format!("not Prometheus exposition ({e})"))?;
        if exp.samples < self.min_samples {
            return Err(format!(
                "only {} samples (want ≥ {})",
                exp.samples, self.min_samples
            ));
        }
        if self.expect.is_empty() {
            return Ok(format!("{} samples", exp.samples));
        }
        let found: Vec<String> = self
            .expect
            .iter()
            .filter(|p| exp.count_prefix(p) > 0)
            .map(|p| format!("{} {p}*", exp.count_prefix(p)))
            .collect();
        if found.is_empty() {
            return Err(format!(
                "{} samples but none of {} — is the right exporter on this port?",
                exp.samples,
                self.expect
                    .iter()
                    .map(|p| format!("{p}*"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(format!("{} samples ({})", exp.samples, found.join(", ")))
    }
}

/// Why a probe found no usable page: not yet (retry until the deadline) or too large (final).
#[derive(Debug, thiserror::Error)]
enum Miss {
    #[error("{0}")]
    NotYet(String),
    #[error("{0}")]
    TooLarge(String),
}

/// reqwest's error with its root cause (e.g. "connection refused"), on one line.
pub fn short_reqwest(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    let mut root = None;
    while let Some(s) = src {
        root = Some(s.to_string());
        src = s.source();
    }
    if let Some(r) = root {
        msg = format!("{msg}: {r}");
    }
    msg
}
