//! `http`: one request from the jump host (e.g. `POST /-/reload`), optionally retried until it
//! answers an expected status.

use std::time::{Duration, Instant};

use super::metrics_check::short_reqwest;

/// Default cap of a scraped `/metrics` page (inventory var `metrics_max_bytes`): node-exporter
/// and cAdvisor pages are well under 1 MiB; Prometheus' own default limit is unlimited, ours is
/// not, because a broken or hostile exporter could otherwise stream until we run out of memory
/// (times `--forks`).
pub const METRICS_BODY_CAP: u64 = 16 * 1024 * 1024;
/// Cap of answers from Consul, Prometheus and Alertmanager APIs.
pub const API_BODY_CAP: u64 = 8 * 1024 * 1024;
/// Bytes of an error page kept for the message (the rest is not read).
const ERROR_BODY_KEEP: usize = 4 * 1024;

/// The one way promfleet reads an HTTP body: refused (with the URL and the cap) as soon as it
/// is known to be over `cap` bytes, from Content-Length or while streaming; never buffered
/// past the cap.
pub async fn read_capped(mut resp: reqwest::Response, cap: u64) -> Result<Vec<u8>, String> {
    let over =
        |url: &reqwest::Url| format!("answer from {url} is larger than the {} cap", size(cap));
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(over(resp.url()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| short_reqwest(&e))? {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(over(resp.url()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `16 MiB`, `1000 bytes`: caps as the operator wrote them.
fn size(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

/// The start of an error page, for a one-line message: at most a few KiB are read.
pub async fn error_snippet(mut resp: reqwest::Response, chars: usize) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_KEEP {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_KEEP);
    String::from_utf8_lossy(&body)
        .trim()
        .chars()
        .take(chars)
        .collect()
}

/// Send `req` and decode a JSON answer of at most `API_BODY_CAP` bytes; errors are one line
/// (`cannot connect: …`, `HTTP 503 …`, `bad answer from <what>: …`).
pub async fn get_json<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<T, String> {
    let resp = req.send().await.map_err(|e| short_reqwest(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {status} from {what}"));
    }
    let body = read_capped(resp, API_BODY_CAP).await?;
    serde_json::from_slice(&body).map_err(|e| format!("bad answer from {what}: {e}"))
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
            Err(format!("HTTP {code} {}", error_snippet(resp, 200).await))
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
