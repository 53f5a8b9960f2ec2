//! Ports the demo (`scripts/demo.sh`) listens on or relies on, checked against what already
//! runs on the machine: its own services move to a free port when their default is taken, the
//! exporter ports (part of the product's contract) are refused with the name of the program
//! holding them. Without this the demo talked to whatever listened on its defaults (a foreign
//! Consul got the registrations, a foreign exporter was scraped).

use anyhow::{Context, Result, bail};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::Command;

/// `preferred` if a listener can bind `ip:preferred` now, otherwise a free port the kernel
/// picks, with a note naming who holds `preferred`. The caller binds the port right after;
/// the demo's services fail (and the demo stops) in the rare case another program takes it
/// in between.
pub fn pick(ip: IpAddr, preferred: u16) -> Result<(u16, Option<String>)> {
    let wanted = SocketAddr::new(ip, preferred);
    match TcpListener::bind(wanted) {
        Ok(_) => Ok((preferred, None)),
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            let free = TcpListener::bind(SocketAddr::new(ip, 0))
                .and_then(|l| l.local_addr())
                .with_context(|| format!("bind {ip}:0 for a free port"))?
                .port();
            let note = format!("{wanted} is taken by {}", holders(preferred));
            Ok((free, Some(note)))
        }
        Err(e) => Err(e).with_context(|| format!("bind {wanted}")),
    }
}

/// Fails, naming the holder and the fix, if no listener can bind `ip:port` because another
/// program listens there (on that address or on all addresses).
pub fn ensure_free(ip: IpAddr, port: u16, what: &str) -> Result<()> {
    let addr = SocketAddr::new(ip, port);
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AddrInUse => bail!(
            "{what} must listen on {addr}, but port {port} there is held by {} \
             (see `ss -ltnp 'sport = :{port}'`); stop that program and run the demo again",
            holders(port)
        ),
        Err(e) => Err(e).with_context(|| format!("bind {addr} for {what}")),
    }
}

/// Who listens on TCP `port`, as `ss -ltnp` reports it: "python3 (pid 12) on 0.0.0.0:9100".
fn holders(port: u16) -> String {
    let filter = format!("sport = :{port}");
    let out = Command::new("ss").args(["-Hltnp", &filter]).output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => return "another program (`ss` could not tell which)".to_string(),
    };
    let found: Vec<String> = text.lines().filter_map(describe).collect();
    if found.is_empty() {
        "another program (`ss` shows no process; run it as root to see it)".to_string()
    } else {
        found.join(", ")
    }
}

/// One `ss -Hltnp` line, e.g.
/// `LISTEN 0 5 0.0.0.0:9100 0.0.0.0:* users:(("python3",pid=12,fd=3))`.
fn describe(line: &str) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = fields.get(3)?;
    let Some(users) = line.split_once("users:((").map(|(_, u)| u) else {
        return Some(format!("an unknown process on {local}"));
    };
    let name = users.split('"').nth(1).unwrap_or("?");
    let pid = users
        .split_once("pid=")
        .and_then(|(_, p)| p.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or("?");
    Some(format!("{name} (pid {pid}) on {local}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn describe_reads_ss_lines() {
        let line = "LISTEN 0      5      0.0.0.0:9100     0.0.0.0:*    users:((\"python3\",pid=4242,fd=3))";
        assert_eq!(
            describe(line).as_deref(),
            Some("python3 (pid 4242) on 0.0.0.0:9100")
        );
        let no_process = "LISTEN 0      128     0.0.0.0:2024       0.0.0.0:*";
        assert_eq!(
            describe(no_process).as_deref(),
            Some("an unknown process on 0.0.0.0:2024")
        );
    }

    #[test]
    fn pick_keeps_a_free_default() {
        // A port the kernel just handed out and this test released is free — unless another
        // test of this binary, binding port 0 in parallel, was handed the same one in between
        // (CI saw it once). So a move counts only if it happens on every one of 5 attempts.
        let mut moved = Vec::new();
        for _ in 0..5 {
            let port = TcpListener::bind((LOCAL, 0))
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let (picked, note) = pick(LOCAL, port).expect("pick");
            if picked == port {
                assert_eq!(note, None);
                return;
            }
            moved.push((port, picked, note));
        }
        panic!("pick moved off a free port every time: {moved:?}");
    }

    #[test]
    fn pick_moves_off_a_taken_default_and_names_the_holder() {
        let held = TcpListener::bind((LOCAL, 0)).expect("bind");
        let port = held.local_addr().expect("addr").port();
        let (picked, note) = pick(LOCAL, port).expect("pick");
        assert_ne!(picked, port);
        TcpListener::bind((LOCAL, picked)).expect("the picked port is free");
        let note = note.expect("a note for the taken default");
        let me = format!("(pid {})", std::process::id());
        assert!(note.contains(&me), "{note}");
    }

    #[test]
    fn ensure_free_names_a_wildcard_holder_for_a_loopback_address() {
        // A service on all addresses blocks the demo hosts' 127.0.x.y exporters too.
        let held = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        let port = held.local_addr().expect("addr").port();
        let host = IpAddr::V4(Ipv4Addr::new(127, 0, 9, 2));
        let err = ensure_free(host, port, "node-exporter of host001")
            .expect_err("taken")
            .to_string();
        // `ss -p` may name a thread of this test process (any test thread: they share the
        // socket) rather than the process, and that thread may have ended since: the holder
        // named is this process, one of its threads, or a task that no longer exists.
        let me = std::process::id();
        let ours = |id: u32| {
            id == me
                || match std::fs::read_to_string(format!("/proc/{id}/status")) {
                    Ok(status) => status
                        .lines()
                        .any(|l| l.split_whitespace().eq(["Tgid:", me.to_string().as_str()])),
                    Err(_) => true,
                }
        };
        let marker = format!(") on 0.0.0.0:{port}");
        let named: Vec<u32> = err
            .match_indices(&marker)
            .filter_map(|(i, _)| err[..i].rsplit("(pid ").next()?.parse().ok())
            .collect();
        assert!(
            !named.is_empty() && named.iter().all(|id| ours(*id)),
            "{err}"
        );
        assert!(
            err.contains("node-exporter of host001 must listen on 127.0.9.2"),
            "{err}"
        );
        drop(held);
        // Free once the holder is gone. Another test thread of this process may fork (`ss`)
        // while `held` is open: its child keeps a copy of the socket until it execs, so the
        // port is polled for a moment instead of asserted at once (failed once in CI).
        let mut last = None;
        for _ in 0..100 {
            match ensure_free(host, port, "node-exporter") {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("still taken 5 s after the holder was dropped: {last:?}");
    }
}
