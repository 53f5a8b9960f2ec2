//! **STAND-IN** for the central services' HTTP APIs, run by the compose stand-in
//! (`testkit/scripts/compose-standin`) in place of the Prometheus, Alertmanager, Grafana,
//! DingTalk-webhook and Karma containers of the monitoring stack (no Docker, no images on test
//! hosts). It is none of those programs: it answers only what promfleet's plays and `status`
//! ask them, on the port the compose file publishes, with the status codes and shapes the real
//! programs give:
//!
//! | `--kind` | answers |
//! | --- | --- |
//! | `prometheus`, `alertmanager`, `dingtalk` | `GET /-/ready`, `GET /-/healthy` 200; `POST`/`PUT /-/reload` 200, other methods 405 |
//! | `alertmanager` | also `GET /api/v2/status` 200: Alertmanager's OpenAPI v2 `alertmanagerStatus` of a settled one-member cluster, the text of `--config FILE` as `config.original` |
//! | `grafana` | `GET /api/health` 200 with Grafana's JSON shape |
//! | `karma` | `GET /health` 200 `Pong` |
//!
//! Everything else is 404 (so `/api/v1/targets` of a fake Prometheus is not an answer: the
//! verify play must be pointed at a real Prometheus). Each request is logged to stderr as
//! `fake-central: <METHOD> <path> <status>` (the stand-in appends it to `<service>.log`; tests
//! read it through `testkit::standin::requests`). When the published port is already taken on
//! that address (a test's own HTTP sink holds it), it says so and serves on a free port instead,
//! so such tests keep their sinks. `--tag` only marks the process as one project's.
//! std (and serde_json), one thread per connection; requests are read up to 16 KiB of head.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Prometheus,
    Alertmanager,
    Dingtalk,
    Grafana,
    Karma,
}

/// What `/api/v2/status` reports besides the config: the process' start and listen address.
struct Me {
    /// RFC 3339 UTC with milliseconds, as Alertmanager prints `uptime` (its start time).
    started: String,
    listen: SocketAddr,
    /// Alertmanager's config file (`--config`), read at each request.
    config: Option<std::path::PathBuf>,
}

fn main() {
    let mut listen = String::new();
    let mut kind = None;
    let mut config = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or_default(),
            "--kind" => {
                kind = match args.next().as_deref() {
                    Some("prometheus") => Some(Kind::Prometheus),
                    Some("alertmanager") => Some(Kind::Alertmanager),
                    Some("dingtalk") => Some(Kind::Dingtalk),
                    Some("grafana") => Some(Kind::Grafana),
                    Some("karma") => Some(Kind::Karma),
                    other => {
                        eprintln!("fake-central: unknown kind {other:?}");
                        std::process::exit(2);
                    }
                }
            }
            "--config" => config = args.next().map(std::path::PathBuf::from),
            "--tag" => {
                args.next();
            }
            other => {
                eprintln!("fake-central: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let Some(kind) = kind else {
        eprintln!("fake-central: --kind is required");
        std::process::exit(2);
    };
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fake-central: --listen {listen:?}: {e}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let any = SocketAddr::new(addr.ip(), 0);
            match TcpListener::bind(any) {
                Ok(l) => {
                    eprintln!(
                        "fake-central: {addr} is taken by another process: serving on {} instead",
                        l.local_addr().map(|a| a.to_string()).unwrap_or_default()
                    );
                    l
                }
                Err(e) => {
                    eprintln!("fake-central: cannot listen on {any}: {e}");
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("fake-central: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "fake-central: listening on {}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let me = std::sync::Arc::new(Me {
        started: now_rfc3339_millis(),
        listen: listener.local_addr().unwrap_or(addr),
        config,
    });
    for stream in listener.incoming().flatten() {
        let me = me.clone();
        let _ = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || serve(stream, kind, &me));
    }
}

/// Now as `date` prints it in Alertmanager's `uptime` format (std has no calendar).
fn now_rfc3339_millis() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%3NZ"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Alertmanager's `GET /api/v2/status` (OpenAPI v2 `alertmanagerStatus`: api/v2/openapi.yaml
/// of prometheus/alertmanager; the fields as Debian's prometheus-alertmanager 0.25 answers):
/// a one-member cluster that has settled (`ready`), the member gossiping on the default
/// cluster port 9094 of its address, the config file's text as `config.original`.
fn alertmanager_status(me: &Me) -> String {
    let original = me
        .config
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let name = "fake-central";
    serde_json::json!({
        "cluster": {
            "name": name,
            "peers": [{ "address": format!("{}:9094", me.listen.ip()), "name": name }],
            "status": "ready",
        },
        "config": { "original": original },
        "uptime": me.started,
        "versionInfo": {
            "branch": "standin",
            "buildDate": "standin",
            "buildUser": "standin",
            "goVersion": "standin",
            "revision": "standin",
            "version": "standin",
        },
    })
    .to_string()
}

/// The reply to one request: (status line, content type, body).
fn answer(kind: Kind, me: &Me, method: &str, path: &str) -> (&'static str, &'static str, String) {
    const NOT_FOUND: (&str, &str) = ("404 Not Found", "text/plain; charset=utf-8");
    let read = matches!(method, "GET" | "HEAD");
    match (kind, path) {
        // Karma's `pong` handler on /health (prymitive/karma cmd/karma/views.go).
        (Kind::Karma, "/health") if read => {
            ("200 OK", "text/plain; charset=utf-8", "Pong\n".to_owned())
        }
        (Kind::Karma, _) => (NOT_FOUND.0, NOT_FOUND.1, "404 page not found\n".to_owned()),
        (Kind::Alertmanager, "/api/v2/status") if read => {
            ("200 OK", "application/json", alertmanager_status(me))
        }
        (Kind::Grafana, "/api/health") if read => (
            "200 OK",
            "application/json",
            "{\n  \"commit\": \"standin\",\n  \"database\": \"ok\",\n  \"version\": \"standin\"\n}"
                .to_owned(),
        ),
        (Kind::Grafana, _) => (NOT_FOUND.0, NOT_FOUND.1, "404 page not found\n".to_owned()),
        (_, "/-/ready" | "/-/healthy") if read => {
            let body = match (kind, path) {
                (Kind::Prometheus, "/-/ready") => "Prometheus Server is Ready.\n",
                (Kind::Prometheus, _) => "Prometheus Server is Healthy.\n",
                _ => "OK",
            };
            ("200 OK", "text/plain; charset=utf-8", body.to_owned())
        }
        (_, "/-/reload") if matches!(method, "POST" | "PUT") => {
            ("200 OK", "text/plain; charset=utf-8", String::new())
        }
        (_, "/-/reload" | "/-/ready" | "/-/healthy") => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "Only POST or PUT requests allowed\n".to_owned(),
        ),
        _ => (NOT_FOUND.0, NOT_FOUND.1, "404 page not found\n".to_owned()),
    }
}

fn serve(mut stream: TcpStream, kind: Kind, me: &Me) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("GET").to_owned();
    let path = words
        .next()
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_owned();
    let (status, ctype, body) = answer(kind, me, &method, &path);
    eprintln!(
        "fake-central: {method} {path} {}",
        status.split(' ').next().unwrap_or("")
    );
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if method == "HEAD" { "" } else { &body }
    );
}
