//! IP addresses in URLs and `host:port` pairs: an IPv6 literal is bracketed (RFC 3986
//! §3.2.2), as Prometheus, Consul and every HTTP client expect.

/// `host` as it goes before `:port` in a URL: `[v6]`, or unchanged (IPv4, DNS name).
pub fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `host:port` as Prometheus writes a target address (`[v6]:port` for IPv6).
pub fn host_port(host: &str, port: impl std::fmt::Display) -> String {
    format!("{}:{port}", url_host(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_only_v6_literals_and_only_once() {
        assert_eq!(url_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(url_host("node.example"), "node.example");
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("fe80::1%eth0"), "[fe80::1%eth0]");
        assert_eq!(url_host("[::1]"), "[::1]");
        assert_eq!(host_port("::ffff:10.0.0.1", 9100), "[::ffff:10.0.0.1]:9100");
        assert_eq!(host_port("10.0.0.1", "9100"), "10.0.0.1:9100");
    }
}
