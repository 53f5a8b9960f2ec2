//! Validators of rendered stacks and the stand-ins they talk to: promtool's view of a
//! Consul-discovering config, `docker-compose config`, a webhook sink, a TCP stand-in whose
//! every connection a test's closure serves.

use std::net::{IpAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{read, yaml};

/// Runs a tool, panics with its output unless it succeeds; returns stdout+stderr.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// `prometheus.http-sd.yml` next to `prometheus_yml` with every `consul_sd_configs` entry
/// replaced by an `http_sd_configs` entry with the same HTTP client settings (scheme, server,
/// authorization), so `promtool check config` can check the rest — relative paths
/// (rule_files, credentials_file) still resolve next to it. Returns the new file.
pub fn http_sd_checkable(prometheus_yml: &Path) -> PathBuf {
    let mut config = yaml(&read(prometheus_yml));
    let mut swapped = 0;
    for job in config["scrape_configs"].as_array_mut().unwrap() {
        let job = job.as_object_mut().unwrap();
        let Some(consul) = job.remove("consul_sd_configs") else {
            continue;
        };
        let http_sd: Vec<Value> = consul
            .as_array()
            .unwrap()
            .iter()
            .map(|sd| {
                let mut h = json!({
                    "url": format!("{}://{}/v1/catalog/services", sd["scheme"].as_str().unwrap_or("http"), sd["server"].as_str().unwrap()),
                });
                if let Some(auth) = sd.get("authorization") {
                    h["authorization"] = auth.clone();
                }
                h
            })
            .collect();
        job.insert("http_sd_configs".into(), Value::Array(http_sd));
        swapped += 1;
    }
    assert!(
        swapped > 0,
        "{} has no consul_sd_configs",
        prometheus_yml.display()
    );
    let checked = prometheus_yml.with_file_name("prometheus.http-sd.yml");
    std::fs::write(&checked, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    checked
}

pub fn compose_config(compose: &Path) -> Value {
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(compose)
        .arg("config")
        .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "docker-compose config {}:\n{}{text}",
        compose.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    yaml(&text)
}

/// One HTTP request the sink received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub body: Value,
}

/// What a sink reads of one request at most: headers, then the body (an Alertmanager
/// notification is a few KiB).
const SINK_HEAD_MAX: usize = 64 * 1024;
const SINK_BODY_MAX: usize = 1024 * 1024;

/// A local HTTP sink standing in for the DingTalk webhook on `addr` (port 0: any free port):
/// records path and JSON body of every request and answers 200. Its empty 200 answer is also a
/// valid, empty /metrics page, so it stands in for an exporter too. Served on the caller's
/// runtime.
pub async fn start_sink_on(addr: &str) -> (u16, Arc<Mutex<Vec<Delivery>>>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    if buf.len() > SINK_HEAD_MAX {
                        return;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .unwrap_or(0)
                    .min(SINK_BODY_MAX);
                while buf.len() < head_end + len {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let end = buf.len().min(head_end + len);
                let body = serde_json::from_slice(&buf[head_end..end]).unwrap_or(Value::Null);
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Delivery { path, body });
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, seen)
}

/// [`start_sink_on`] 127.0.0.1 for a test without a runtime: served by a thread of its own
/// until the test binary exits.
pub fn start_sink_in_thread() -> (u16, Arc<Mutex<Vec<Delivery>>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let _ = tx.send(start_sink_on("127.0.0.1:0").await);
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("sink started")
}

/// A TCP stand-in on `addr` (port 0: any free one): every connection it accepts is handed to
/// `serve` on a thread of its own. It counts the connections and stops accepting when dropped
/// (a connection being served runs on until `serve` returns).
pub struct TcpStandin {
    pub port: u16,
    ip: IpAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl TcpStandin {
    pub fn start(
        addr: impl ToSocketAddrs,
        serve: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> TcpStandin {
        let listener = TcpListener::bind(addr).expect("bind the stand-in");
        let local = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (flag, count, serve) = (stop.clone(), accepted.clone(), Arc::new(serve));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let serve = serve.clone();
                std::thread::spawn(move || serve(conn));
            }
        });
        TcpStandin {
            port: local.port(),
            ip: local.ip(),
            stop,
            accepted,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpStandin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which sees the flag and ends.
        let _ = TcpStream::connect((self.ip, self.port));
    }
}
