//! The Consul agent HTTP API test double's check runner: really probes registered HTTP and TCP
//! checks at their interval and writes passing/critical/warning back into the registry.
//!
//! It only probes addresses inside `DoubleOptions::check_networks` (loopback by default): a test
//! inventory may name addresses this machine does not own, and the double must never send
//! traffic there. Such a check goes critical with an output saying why.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::Shared;
use super::registry::{CheckDef, CheckKind, CheckStatus};

/// Consul's floor for check intervals (checks.MinInterval).
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Consul's default HTTP/TCP check timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Consul keeps at most this much of a response body as check output.
const OUTPUT_LIMIT: usize = 4096;

/// Starts one probe task per runnable check of a fresh registration.
pub(crate) fn spawn_runners(
    shared: &Arc<Shared>,
    service_id: &str,
    generation: u64,
    checks: &[CheckDef],
) -> Vec<AbortHandle> {
    checks
        .iter()
        .enumerate()
        .filter(|(_, check)| !matches!(check.kind, CheckKind::Ttl { .. }))
        .map(|(position, check)| {
            let weak = Arc::downgrade(shared);
            let service_id = service_id.to_owned();
            let check = check.clone();
            shared
                .runtime
                .spawn(run_check(weak, service_id, generation, position, check))
                .abort_handle()
        })
        .collect()
}

async fn run_check(
    shared: Weak<Shared>,
    service_id: String,
    generation: u64,
    position: usize,
    check: CheckDef,
) {
    let interval = check.interval.unwrap_or(MIN_INTERVAL).max(MIN_INTERVAL);
    let timeout = check.timeout.unwrap_or(DEFAULT_TIMEOUT).min(interval);
    // Consul staggers the first run randomly inside the interval; the double probes at once so
    // tests see the first result quickly.
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let client = strong.probe_client.clone();
        let networks = strong.opts.check_networks.clone();
        drop(strong);
        let (status, output) = probe(&client, &networks, &check.kind, timeout).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        strong
            .lock_registry()
            .set_check_result(&service_id, generation, position, status, output);
        drop(strong);
        tokio::time::sleep(interval).await;
    }
}

/// Whether `ip` lies in one of the (address, prefix length) networks.
pub(crate) fn ip_allowed(ip: IpAddr, networks: &[(IpAddr, u8)]) -> bool {
    networks.iter().any(|(net, len)| match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let len = u32::from((*len).min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(ip) & mask == u32::from(*net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let len = u32::from((*len).min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(ip) & mask == u128::from(*net) & mask
        }
        _ => false,
    })
}

fn host_ip(host: &str) -> Option<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn refusal(host: &str) -> (CheckStatus, String) {
    (
        CheckStatus::Critical,
        format!(
            "promfleet Consul test double: not probing {host}: outside the allowed check \
             networks (DoubleOptions::check_networks)"
        ),
    )
}

async fn probe(
    client: &reqwest::Client,
    networks: &[(IpAddr, u8)],
    kind: &CheckKind,
    timeout: Duration,
) -> (CheckStatus, String) {
    match kind {
        CheckKind::Http { url, method } => probe_http(client, networks, url, method, timeout).await,
        CheckKind::Tcp { addr } => probe_tcp(networks, addr, timeout).await,
        CheckKind::Ttl { .. } => (CheckStatus::Critical, "TTL expired".to_owned()),
    }
}

async fn probe_http(
    client: &reqwest::Client,
    networks: &[(IpAddr, u8)],
    url: &str,
    method: &str,
    timeout: Duration,
) -> (CheckStatus, String) {
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(err) => return (CheckStatus::Critical, format!("invalid URL {url:?}: {err}")),
    };
    let host = parsed.host_str().unwrap_or_default().to_owned();
    if !host_ip(&host).is_some_and(|ip| ip_allowed(ip, networks)) {
        return refusal(&host);
    }
    let method = match reqwest::Method::from_bytes(method.as_bytes()) {
        Ok(method) => method,
        Err(err) => {
            return (
                CheckStatus::Critical,
                format!("invalid method {method:?}: {err}"),
            );
        }
    };
    let request = client
        .request(method.clone(), parsed)
        .header("User-Agent", "Consul Health Check")
        .header("Accept", "text/plain, text/*, */*")
        .timeout(timeout);
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(err) => {
            return (CheckStatus::Critical, format!("{method} {url:?}: {err:#}"));
        }
    };
    let code = response.status();
    let mut body = Vec::new();
    while body.len() < OUTPUT_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(OUTPUT_LIMIT);
    let output = format!(
        "HTTP {method} {url}: {code} Output: {}",
        String::from_utf8_lossy(&body)
    );
    // Consul's mapping: 2xx passing, 429 warning, anything else critical.
    let status = if code.is_success() {
        CheckStatus::Passing
    } else if code.as_u16() == 429 {
        CheckStatus::Warning
    } else {
        CheckStatus::Critical
    };
    (status, output)
}

async fn probe_tcp(
    networks: &[(IpAddr, u8)],
    addr: &str,
    timeout: Duration,
) -> (CheckStatus, String) {
    let target: SocketAddr = match addr.parse() {
        Ok(target) => target,
        Err(_) => {
            return (
                CheckStatus::Critical,
                format!("promfleet Consul test double: TCP check needs ip:port, got {addr:?}"),
            );
        }
    };
    if !ip_allowed(target.ip(), networks) {
        return refusal(&target.ip().to_string());
    }
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
        Ok(Ok(_)) => (CheckStatus::Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(err)) => (CheckStatus::Critical, format!("dial tcp {addr}: {err}")),
        Err(_) => (
            CheckStatus::Critical,
            format!("dial tcp {addr}: i/o timeout"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn only_allowed_networks_are_probed() {
        let loopback = [
            (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        ];
        assert!(ip_allowed("127.0.0.1".parse().expect("ip"), &loopback));
        assert!(ip_allowed("127.9.8.7".parse().expect("ip"), &loopback));
        assert!(ip_allowed("::1".parse().expect("ip"), &loopback));
        assert!(!ip_allowed("10.0.0.1".parse().expect("ip"), &loopback));
        assert!(!ip_allowed("128.0.0.1".parse().expect("ip"), &loopback));
        assert_eq!(host_ip("localhost"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(host_ip("example.org"), None);
    }
}
