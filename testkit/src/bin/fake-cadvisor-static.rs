//! **STAND-IN** for cAdvisor inside the `promfleet-test/cadvisor:local` image (real cAdvisor
//! cannot be pulled where the tests run). It is not cAdvisor: it serves a small but valid
//! Prometheus exposition on `:8080/metrics` with the families promfleet's checks and alert rules
//! look for (`container_*`, `cadvisor_version_info`, `machine_cpu_cores`), reading cgroup v1
//! counters for `/` and `/docker/<id>` when `/sys/fs/cgroup` is visible, and accepts (ignoring)
//! every cAdvisor flag the exporter compose template passes.
//!
//! std only, so `testkit::images` can compile this file with plain `rustc` and
//! `-C target-feature=+crt-static` into a binary that runs in a `FROM scratch` image.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

unsafe extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn _exit(status: i32) -> !;
}

extern "C" fn on_stop(_signum: i32) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { _exit(0) }
}

fn main() {
    let mut port: u16 = 8080;
    // cAdvisor's flags come as `-name=value` or `--name=value`; only the port matters here.
    for arg in std::env::args().skip(1) {
        let flag = arg.trim_start_matches('-');
        if let Some(p) = flag.strip_prefix("port=") {
            match p.parse() {
                Ok(p) => port = p,
                Err(_) => {
                    eprintln!("fake-cadvisor: invalid -port {p}");
                    std::process::exit(2);
                }
            }
        } else if !arg.starts_with('-') {
            eprintln!("fake-cadvisor: unexpected argument {arg}");
            std::process::exit(2);
        }
    }
    // As PID 1 of a container a signal without a handler is ignored: without these,
    // `docker stop` would wait its full timeout before killing us.
    // SAFETY: installing a handler that only calls _exit.
    unsafe {
        signal(SIGTERM, on_stop);
        signal(SIGINT, on_stop);
    }
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake-cadvisor: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("fake-cadvisor: listening on {addr}");
    let started = now_secs();
    for stream in listener.incoming().flatten() {
        // One thread per connection: a stalled client must not block other scrapes.
        let _ = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || serve(stream, started));
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn serve(mut stream: TcpStream, started: f64) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            exposition(started),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

/// One cgroup seen by the stand-in: its cAdvisor `id` label and its counters.
struct Cgroup {
    id: String,
    cpu_seconds: Option<f64>,
    memory_bytes: Option<u64>,
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `/` and every `/docker/<id>` cgroup of the v1 hierarchy (empty without cgroup v1).
fn cgroups() -> Vec<Cgroup> {
    let cpu = Path::new("/sys/fs/cgroup/cpuacct");
    let mem = Path::new("/sys/fs/cgroup/memory");
    let mut ids = vec![String::from("/")];
    if let Ok(entries) = std::fs::read_dir(mem.join("docker")) {
        let mut docker: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| format!("/docker/{}", e.file_name().to_string_lossy()))
            .collect();
        docker.sort();
        ids.extend(docker);
    }
    ids.into_iter()
        .map(|id| {
            let rel = id.trim_start_matches('/');
            Cgroup {
                cpu_seconds: read_number(&cpu.join(rel).join("cpuacct.usage"))
                    .map(|ns| ns as f64 / 1e9),
                memory_bytes: read_number(&mem.join(rel).join("memory.usage_in_bytes")),
                id,
            }
        })
        .collect()
}

fn exposition(started: f64) -> String {
    let now = now_secs();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let groups = cgroups();
    let mut out = String::new();
    out.push_str("# HELP cadvisor_version_info A metric with a constant '1' value labeled by kernel version, OS version, docker version, cadvisor version & cadvisor revision.\n");
    out.push_str("# TYPE cadvisor_version_info gauge\n");
    out.push_str("cadvisor_version_info{cadvisorRevision=\"promfleet-test\",cadvisorVersion=\"v0.45.0-standin\",dockerVersion=\"\",kernelVersion=\"\",osVersion=\"scratch\"} 1\n");
    out.push_str("# HELP machine_cpu_cores Number of logical CPU cores.\n");
    out.push_str("# TYPE machine_cpu_cores gauge\n");
    out.push_str(&format!("machine_cpu_cores {cores}\n"));
    out.push_str("# HELP container_last_seen Last time a container was seen by the exporter\n");
    out.push_str("# TYPE container_last_seen gauge\n");
    for g in &groups {
        out.push_str(&format!(
            "container_last_seen{{id=\"{}\",image=\"\",name=\"\"}} {now:.3}\n",
            g.id
        ));
    }
    out.push_str("# HELP container_start_time_seconds Start time of the container since unix epoch in seconds.\n");
    out.push_str("# TYPE container_start_time_seconds gauge\n");
    out.push_str(&format!(
        "container_start_time_seconds{{id=\"/\",image=\"\",name=\"\"}} {started:.3}\n"
    ));
    out.push_str(
        "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n",
    );
    out.push_str("# TYPE container_cpu_usage_seconds_total counter\n");
    for g in &groups {
        if let Some(s) = g.cpu_seconds {
            out.push_str(&format!(
                "container_cpu_usage_seconds_total{{cpu=\"total\",id=\"{}\",image=\"\",name=\"\"}} {s:.6}\n",
                g.id
            ));
        }
    }
    out.push_str("# HELP container_memory_usage_bytes Current memory usage in bytes, including all memory regardless of when it was accessed\n");
    out.push_str("# TYPE container_memory_usage_bytes gauge\n");
    for g in &groups {
        if let Some(b) = g.memory_bytes {
            out.push_str(&format!(
                "container_memory_usage_bytes{{id=\"{}\",image=\"\",name=\"\"}} {b}\n",
                g.id
            ));
        }
    }
    out
}
