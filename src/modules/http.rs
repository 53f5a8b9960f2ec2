//! `http`: one request from the jump host (e.g. `POST /-/reload`), optionally retried until it
//! answers an expected status.
//!
//! Owns: the `http` module (arguments, request, retry until a status), and the bounded body
//! readers every HTTP caller uses (`read_capped`, `get_json`, the caps).

use std::time::Duration;

use crate::base::poll::{self, Pace};

use serde_json::Value;

use super::metrics_check::short_reqwest;
use super::{Action, Args, Done, HostCtx, Module, PlanCtx, Task, TaskError};
use crate::settings::{Endpoint, Service};

/// Default cap of a scraped `/metrics` page (inventory var `metrics_max_bytes`): node-exporter
/// and cAdvisor pages are well under 1 MiB; Prometheus' own default limit is unlimited, ours is
/// not, because a broken or hostile exporter could otherwise stream until we run out of memory
/// (times `--forks`).
pub const METRICS_BODY_CAP: u64 = 16 * 1024 * 1024;
/// Cap of answers from Consul, Prometheus and Alertmanager APIs.
pub const API_BODY_CAP: u64 = 8 * 1024 * 1024;
/// Bytes of an error page kept for the message (the rest is not read).
const ERROR_BODY_KEEP: usize = 4 * 1024;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over the cap: asking again will not make it smaller.
    #[error("answer from {url} is larger than the {} cap", size(*.cap))]
    TooLarge { url: String, cap: u64 },
    /// The transfer failed (reset, timeout): may work next time.
    #[error("{0}")]
    Read(String),
}

impl From<BodyError> for String {
    fn from(e: BodyError) -> String {
        e.to_string()
    }
}

/// The one way promfleet reads an HTTP body: refused (with the URL and the cap) as soon as it
/// is known to be over `cap` bytes, from Content-Length or while streaming; never buffered
/// past the cap.
pub async fn read_capped(mut resp: reqwest::Response, cap: u64) -> Result<Vec<u8>, BodyError> {
    let over = |url: &reqwest::Url| BodyError::TooLarge {
        url: url.to_string(),
        cap,
    };
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(over(resp.url()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Read(short_reqwest(&e)))?
    {
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
    api_json(req, what, None).await
}

/// `get_json` for a request to Prometheus or Alertmanager through `endpoint`'s client: an
/// answer its settings can fix (401) says so, naming the URL and the settings.
pub async fn api_json<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
    what: &str,
    endpoint: Option<&Endpoint>,
) -> Result<T, String> {
    let resp = req.send().await.map_err(|e| short_reqwest(&e))?;
    if let Some(m) = endpoint.and_then(|e| e.explain(resp.status().as_u16(), resp.url().as_str())) {
        return Err(m);
    }
    json_answer(resp, what).await
}

/// A received answer as `get_json` takes it: 2xx, at most `API_BODY_CAP` bytes of JSON.
pub async fn json_answer<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    what: &str,
) -> Result<T, String> {
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {status} from {what}"));
    }
    let body = read_capped(resp, API_BODY_CAP).await?;
    serde_json::from_slice(&body).map_err(|e| format!("bad answer from {what}: {e}"))
}

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
    /// `endpoint: prometheus|alertmanager`: sent through that service's client (its TLS and
    /// basic auth, from the run's settings) instead of the plain one.
    pub endpoint: Option<Service>,
}

/// Why a request did not get its status.
enum Failed {
    /// The endpoint refused the credentials (401): the message says which settings to fix.
    Refused(String),
    /// Anything else: may pass on a later attempt.
    Transient(String),
}

/// `http`.
pub struct HttpModule;

impl Module for HttpModule {
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (
            &["url"],
            &[
                "method", "body", "status", "timeout", "until", "headers", "endpoint",
            ],
        )
    }

    fn plan(&self, args: &Value, _cx: &mut PlanCtx<'_>) -> Result<Action, String> {
        let a = Args(args);
        let method = a.opt_str("method")?.unwrap_or_else(|| "GET".into());
        let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("`method`: `{method}` is not an HTTP method"))?;
        let status = a
            .list("status")?
            .iter()
            .map(|s| {
                s.parse::<u16>()
                    .map_err(|_| format!("`status`: `{s}` is not an HTTP status"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let body = match args.get("body") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let headers = match args.get("headers") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            _ => vec![],
        };
        let endpoint =
            match a.opt_str("endpoint")? {
                None => None,
                Some(e) => Some(Service::parse(&e).ok_or_else(|| {
                    format!("`endpoint`: `{e}` is not prometheus or alertmanager")
                })?),
            };
        Ok(Action::Http(HttpAction {
            url: a.str("url")?,
            method,
            body,
            status: if status.is_empty() { vec![200] } else { status },
            timeout: Duration::from_secs(a.opt_u64("timeout")?.unwrap_or(10)),
            until: Duration::from_secs(a.opt_u64("until")?.unwrap_or(0)),
            headers,
            endpoint,
        }))
    }
}

impl Task for HttpAction {
    super::task_run!();

    /// Only idempotent methods are sent again after a failure.
    fn repeatable(&self) -> bool {
        self.method.is_idempotent()
    }
}

impl HttpAction {
    async fn once(
        &self,
        http: &reqwest::Client,
        endpoint: Option<&Endpoint>,
    ) -> Result<u16, poll::Miss<Failed>> {
        let mut r = http
            .request(self.method.clone(), &self.url)
            .timeout(self.timeout);
        for (k, v) in &self.headers {
            r = r.header(k, v);
        }
        if let Some(b) = &self.body {
            r = r.body(b.clone());
        }
        let resp = r
            .send()
            .await
            .map_err(|e| poll::Miss::Retry(Failed::Transient(short_reqwest(&e))))?;
        let code = resp.status().as_u16();
        if self.status.contains(&code) {
            return Ok(code);
        }
        // Refused credentials stay refused until the settings change: no retry.
        if let Some(m) = endpoint.and_then(|e| e.explain(code, resp.url().as_str())) {
            return Err(poll::Miss::Fail(Failed::Refused(m)));
        }
        Err(poll::Miss::Retry(Failed::Transient(format!(
            "HTTP {code} {}",
            error_snippet(resp, 200).await
        ))))
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        let read_only = self.method == reqwest::Method::GET || self.method == reqwest::Method::HEAD;
        if ctx.check && !read_only {
            return Ok(Done::skipped(format!("would {} {}", self.method, self.url)));
        }
        let endpoints = match self.endpoint {
            Some(_) => Some(ctx.service::<crate::settings::Endpoints>()?),
            None => None,
        };
        let endpoint = self
            .endpoint
            .zip(endpoints.as_deref())
            .map(|(s, e)| e.get(s));
        let http = endpoint.map_or(ctx.http, Endpoint::client);
        let every = Pace::every(Duration::from_secs(1));
        let polled = poll::until(self.until, every, move || async move {
            self.once(http, endpoint).await
        })
        .await;
        match polled {
            Ok(code) => {
                let d = if read_only {
                    Done::ok()
                } else {
                    Done::changed()
                };
                Ok(d.with(format!("{} {} → {code}", self.method, self.url)))
            }
            // The message names the URL and the settings to fix; sending again cannot help.
            Err(Failed::Refused(m)) => Err(TaskError::permanent(ctx.masker.mask(&m))),
            Err(Failed::Transient(e)) => Err(TaskError::transient(
                ctx.masker
                    .mask(&format!("{} {}: {e}", self.method, self.url)),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering every request with `len` bytes of `[` (valid JSON never ends),
    /// streamed; with a Content-Length header when `announce`.
    async fn endless(len: u64, announce: bool) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut req = [0u8; 4096];
                    let _ = c.read(&mut req).await;
                    let length = if announce {
                        format!("Content-Length: {len}\r\n")
                    } else {
                        String::new()
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n"
                    );
                    if c.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'['; 64 * 1024];
                    let mut sent = 0;
                    while sent < len {
                        if c.write_all(&chunk).await.is_err() {
                            return;
                        }
                        sent += chunk.len() as u64;
                    }
                });
            }
        });
        format!("http://{addr}/v1/agent/services")
    }

    #[tokio::test]
    async fn api_answers_over_the_cap_are_refused_naming_url_and_cap() {
        let http = reqwest::Client::new();
        for announce in [true, false] {
            let url = endless(64 * API_BODY_CAP, announce).await;
            let e = get_json::<serde_json::Value>(http.get(&url), "agent")
                .await
                .unwrap_err();
            assert_eq!(
                e,
                format!("answer from {url} is larger than the 8 MiB cap"),
                "announce={announce}"
            );
        }
    }

    #[tokio::test]
    async fn bodies_under_the_cap_are_read_whole() {
        let url = endless(1024 * 1024, false).await;
        let resp = reqwest::get(&url).await.unwrap();
        assert_eq!(
            read_capped(resp, 2 * 1024 * 1024).await.unwrap().len(),
            1024 * 1024
        );
    }
}
