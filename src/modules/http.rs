//! `http`: one request from the jump host (e.g. `POST /-/reload`), optionally retried until it
//! answers an expected status.

use std::time::{Duration, Instant};

use super::metrics_check::short_reqwest;

/// Send `req` and decode a JSON answer; errors are one line (`cannot connect: …`,
/// `HTTP 503 …`, `bad answer from <what>: …`).
pub async fn get_json<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<T, String> {
    let resp = req.send().await.map_err(|e| short_reqwest(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {status} from {what}"));
    }
    resp.json()
        .await
        .map_err(|e| format!("bad answer from {what}: {e}"))
}
use super::{Done, HostCtx, TaskError};

#[derive(Debug, Clone)]
pub struct HttpAction {
    pub url: String,
    pub method: reqwest::Method,
    pub body: Option<String>,
    pub status: Vec<u16>,
    pub timeout: Duration,
    /// Keep retrying for this long until the expected status comes back.
    pub until: Duration,
    pub headers: Vec<(String, String)>,
}

impl HttpAction {
    async fn once(&self, http: &reqwest::Client) -> Result<u16, String> {
        let mut r = http
            .request(self.method.clone(), &self.url)
            .timeout(self.timeout);
        for (k, v) in &self.headers {
            r = r.header(k, v);
        }
        if let Some(b) = &self.body {
            r = r.body(b.clone());
        }
        let resp = r.send().await.map_err(|e| short_reqwest(&e))?;
        let code = resp.status().as_u16();
        if self.status.contains(&code) {
            Ok(code)
        } else {
            let body = resp.text().await.unwrap_or_default();
            let body: String = body.trim().chars().take(200).collect();
            Err(format!("HTTP {code} {body}"))
        }
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        let read_only = self.method == reqwest::Method::GET || self.method == reqwest::Method::HEAD;
        if ctx.check && !read_only {
            return Ok(Done::skipped(format!("would {} {}", self.method, self.url)));
        }
        let deadline = Instant::now() + self.until;
        loop {
            match self.once(ctx.http).await {
                Ok(code) => {
                    let d = if read_only {
                        Done::ok()
                    } else {
                        Done::changed()
                    };
                    return Ok(d.with(format!("{} {} → {code}", self.method, self.url)));
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(TaskError::transient(
                        ctx.masker
                            .mask(&format!("{} {}: {e}", self.method, self.url)),
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}
