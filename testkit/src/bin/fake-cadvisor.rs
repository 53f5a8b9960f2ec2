//! A tiny fake exporter for the compose stand-in: serves a small but valid Prometheus text
//! exposition on `/metrics`, either cAdvisor-like (`container_*`, `cadvisor_version_info`) or
//! node-exporter-like (`node_*`). std only and one thread per connection, so 1000 of them fit in
//! memory during benchmarks. `--tag` is ignored: it only marks the process (in its command line)
//! as belonging to one stand-in project so cleanup can find it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy)]
enum Kind {
    Cadvisor,
    Node,
}

fn main() {
    let mut listen = String::from("127.0.0.1:9105");
    let mut kind = Kind::Cadvisor;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or_default(),
            "--kind" => {
                kind = match args.next().as_deref() {
                    Some("node") => Kind::Node,
                    _ => Kind::Cadvisor,
                }
            }
            "--tag" => {
                args.next();
            }
            other => {
                eprintln!("fake-cadvisor: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake-cadvisor: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("fake-cadvisor: listening on {listen}");
    let started = Instant::now();
    let boot = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for stream in listener.incoming().flatten() {
        // A thread per connection: a stalled client must not block scrapes of others.
        let _ = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || serve(stream, kind, started, boot));
    }
}

fn serve(mut stream: TcpStream, kind: Kind, started: Instant, boot: u64) {
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
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path.split('?').next().unwrap_or("/") {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            exposition(kind, started.elapsed().as_secs_f64(), boot),
        ),
        "/healthz" | "/" => ("200 OK", "text/plain", "ok\n".to_string()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn exposition(kind: Kind, up: f64, boot: u64) -> String {
    match kind {
        Kind::Cadvisor => {
            let mut s = String::from(
                "# HELP cadvisor_version_info A metric with a constant '1' value labeled by kernel version, OS version, docker version, cadvisor version & cadvisor revision.\n\
                 # TYPE cadvisor_version_info gauge\n\
                 cadvisor_version_info{cadvisorRevision=\"standin\",cadvisorVersion=\"v0.45.0\",dockerVersion=\"20.10.24\",kernelVersion=\"6.1.0\",osVersion=\"Alpine Linux v3.16\"} 1\n\
                 # HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n\
                 # TYPE container_cpu_usage_seconds_total counter\n",
            );
            let containers = [("node-exporter", 0.01), ("cadvisor-exporter", 0.02)];
            for (name, rate) in containers {
                s.push_str(&format!(
                    "container_cpu_usage_seconds_total{{cpu=\"total\",id=\"/docker/{name}\",image=\"standin\",name=\"{name}\"}} {:.3}\n",
                    up * rate
                ));
            }
            s.push_str(
                "# HELP container_memory_usage_bytes Current memory usage in bytes, including all memory regardless of when it was accessed\n\
                 # TYPE container_memory_usage_bytes gauge\n",
            );
            for (name, _) in containers {
                s.push_str(&format!(
                    "container_memory_usage_bytes{{id=\"/docker/{name}\",image=\"standin\",name=\"{name}\"}} 2.5165824e+07\n"
                ));
            }
            s.push_str(
                "# HELP container_last_seen Last time a container was seen by the exporter\n\
                 # TYPE container_last_seen gauge\n",
            );
            for (name, _) in containers {
                s.push_str(&format!(
                    "container_last_seen{{id=\"/docker/{name}\",image=\"standin\",name=\"{name}\"}} {}\n",
                    boot + up as u64
                ));
            }
            s
        }
        Kind::Node => format!(
            "# HELP node_exporter_build_info A metric with a constant '1' value labeled by version, revision, branch, goversion from which node_exporter was built, and the goos and goarch for the build.\n\
             # TYPE node_exporter_build_info gauge\n\
             node_exporter_build_info{{branch=\"standin\",goarch=\"amd64\",goos=\"linux\",goversion=\"go1.19\",revision=\"standin\",tags=\"standin\",version=\"1.5.0\"}} 1\n\
             # HELP node_boot_time_seconds Node boot time, in unixtime.\n\
             # TYPE node_boot_time_seconds gauge\n\
             node_boot_time_seconds {boot}\n\
             # HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n\
             # TYPE node_cpu_seconds_total counter\n\
             node_cpu_seconds_total{{cpu=\"0\",mode=\"idle\"}} {:.2}\n\
             node_cpu_seconds_total{{cpu=\"0\",mode=\"user\"}} {:.2}\n\
             # HELP node_load1 1m load average.\n\
             # TYPE node_load1 gauge\n\
             node_load1 0.05\n\
             # HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.\n\
             # TYPE node_memory_MemAvailable_bytes gauge\n\
             node_memory_MemAvailable_bytes 1.6e+10\n\
             # HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.\n\
             # TYPE node_memory_MemTotal_bytes gauge\n\
             node_memory_MemTotal_bytes 2.4e+10\n",
            up * 0.9,
            up * 0.1
        ),
    }
}
