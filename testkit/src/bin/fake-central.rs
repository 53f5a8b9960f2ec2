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
//! std only (testkit/build.rs builds it with rustc alone), one thread per connection; requests
//! are read up to 16 KiB of head.

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
    format!(
        concat!(
            r#"{{"cluster":{{"name":"{name}","peers":[{{"address":"{ip}:9094","name":"{name}"}}],"status":"ready"}},"#,
            r#""config":{{"original":{original}}},"uptime":"{started}","#,
            r#""versionInfo":{{"branch":"standin","buildDate":"standin","buildUser":"standin","#,
            r#""goVersion":"standin","revision":"standin","version":"standin"}}}}"#,
        ),
        name = name,
        ip = me.listen.ip(),
        original = json_string(&original),
        started = me.started,
    )
}

/// `s` as a JSON string (RFC 8259 section 7: quote, backslash and control characters escaped).
/// The stand-in is built with rustc alone (testkit/build.rs): no serde_json here.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn me(config: Option<std::path::PathBuf>) -> Me {
        Me {
            started: "2026-12-02T00:37:07.230Z".into(),
            listen: "127.0.0.7:9093".parse().expect("addr"),
            config,
        }
    }

    /// The fields of Alertmanager's `alertmanagerStatus` that promfleet's `status` reads, and
    /// the required rest (versionInfo, uptime), as Debian's prometheus-alertmanager 0.25
    /// answers them: a settled one-member cluster and the config file's text.
    #[test]
    fn alertmanager_status_has_the_openapi_v2_shape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.yml");
        let text = "route:\n  receiver: \"r\"\nreceivers:\n  - name: r\n";
        std::fs::write(&cfg, text).expect("config");
        let (status, ctype, body) =
            answer(Kind::Alertmanager, &me(Some(cfg)), "GET", "/api/v2/status");
        assert_eq!((status, ctype), ("200 OK", "application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["cluster"]["status"], "ready", "{v:#}");
        let peers = v["cluster"]["peers"].as_array().expect("peers");
        assert_eq!(peers.len(), 1, "{v:#}");
        assert_eq!(peers[0]["address"], "127.0.0.7:9094", "{v:#}");
        assert_eq!(peers[0]["name"], v["cluster"]["name"], "{v:#}");
        assert_eq!(v["config"]["original"], text, "{v:#}");
        assert_eq!(v["uptime"], "2026-12-02T00:37:07.230Z");
        for k in [
            "branch",
            "buildDate",
            "buildUser",
            "goVersion",
            "revision",
            "version",
        ] {
            assert!(v["versionInfo"][k].is_string(), "versionInfo.{k}: {v:#}");
        }
        // Not for the other kinds.
        let (status, _, _) = answer(Kind::Prometheus, &me(None), "GET", "/api/v2/status");
        assert_eq!(status, "404 Not Found");
    }

    /// Karma's `/health` is its `pong` handler (prymitive/karma cmd/karma/views.go): 200 and
    /// `Pong`; nothing else of Karma is served.
    #[test]
    fn karma_health_answers_pong() {
        let (status, _, body) = answer(Kind::Karma, &me(None), "GET", "/health");
        assert_eq!((status, body.as_str()), ("200 OK", "Pong\n"));
        let (status, _, _) = answer(Kind::Karma, &me(None), "GET", "/-/healthy");
        assert_eq!(status, "404 Not Found");
    }

    #[test]
    fn json_string_round_trips_quotes_backslashes_and_control_characters() {
        for s in [
            "",
            "plain",
            "a \"q\" b",
            "back\\slash",
            "l1\nl2\r\t",
            "\u{1}\u{1f}",
            "ü €",
        ] {
            let back: String = serde_json::from_str(&json_string(s)).expect("JSON string");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn uptime_is_rfc3339_utc_with_milliseconds() {
        let t = now_rfc3339_millis();
        let b = t.as_bytes();
        assert_eq!(t.len(), 24, "{t}");
        assert_eq!((b[4], b[10], b[19], b[23]), (b'-', b'T', b'.', b'Z'), "{t}");
    }
}
