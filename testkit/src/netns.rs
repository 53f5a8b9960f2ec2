//! A host in its own network namespace, reached over a veth pair on 10.213.N.0/24, with its own
//! sshd: for faults loopback cannot fake — a host that silently drops packets (`cut`) or whose
//! link is gone (`link_down`). Owns the namespace `pft-<pid>-<N>`, the veth `pfh<N>`/`pfn<N>`
//! and the sshd inside; removes them on drop, and stale ones of crashed runs at first use.
//!
//! Safety net: `unreachable 10.213.0.0/16` in the root namespace, so nothing addressed to a
//! subnet whose veth is down or gone can leave the machine, and the namespace itself has no
//! default route.

use crate::sshd::{self, Claim, Daemon, DaemonSpec, Fleet, Host, KeyKind};
use anyhow::{Context, Result, bail};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const NS_PREFIX: &str = "pft-";
const SUPERNET: &str = "10.213.0.0/16";

/// A host in its own network namespace.
pub struct NetnsHost {
    host: Host,
    netns: String,
    veth: String,
    port: u16,
    daemon: Option<Daemon>,
    cut: bool,
    _claim: Claim,
}

impl NetnsHost {
    /// Create the namespace and veth, start sshd inside with the fleet's user and keys, and
    /// add its host key to the fleet's known_hosts. `name`/`group` are for the inventory.
    pub fn start(fleet: &Fleet, name: &str, group: &str) -> Result<NetnsHost> {
        let users = sshd::prepare_system()?;
        prepare_root_namespace()?;
        let (n, claim) = (1..=254u8)
            .find_map(|n| match sshd::try_claim(&format!("netns-{n}")) {
                Ok(Some(c)) => Some(Ok((n, c))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
            .transpose()?
            .context("no free 10.213.N.0/24 subnet for a netns host")?;
        let netns = format!("{NS_PREFIX}{}-{n}", std::process::id());
        let veth = format!("pfh{n}");
        let peer = format!("pfn{n}");
        let ip = Ipv4Addr::new(10, 213, n, 2);
        // A veth of a crashed run with the same N would block `ip link add`.
        let _ = run_quiet(&["ip", "link", "del", &veth]);

        let dir = fleet.root().join(name);
        std::fs::create_dir_all(&dir)?;
        std::os::unix::fs::chown(&dir, Some(users.sudo.0), Some(users.sudo.1))?;
        let mut me = NetnsHost {
            host: Host {
                name: name.to_string(),
                ip,
                group: group.to_string(),
                dir,
            },
            netns: netns.clone(),
            veth: veth.clone(),
            port: fleet.port(),
            daemon: None,
            cut: false,
            _claim: claim,
        };
        // From here on, errors drop `me`, which removes what was created.
        run(&["ip", "netns", "add", &netns])?;
        run(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &netns,
        ])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.213.{n}.1/24"),
            "dev",
            &veth,
        ])?;
        run(&["ip", "link", "set", &veth, "up"])?;
        run(&["ip", "-n", &netns, "link", "set", "lo", "up"])?;
        run(&[
            "ip",
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            &peer,
        ])?;
        run(&["ip", "-n", &netns, "link", "set", &peer, "up"])?;

        let sshd_dir = fleet.root().join(".sshd").join(name);
        std::fs::create_dir_all(&sshd_dir)?;
        let key = sshd_dir.join("ssh_host_ed25519_key");
        sshd::keygen(&key, KeyKind::Ed25519, "", &format!("{name}-host-key"))?;
        let listen = [format!("{ip}:{}", me.port)];
        let cfg = sshd::write_config(&DaemonSpec {
            listen: &listen,
            host_key: &key,
            authorized_keys: fleet.authorized_keys(),
            users: &[sshd::SUDO_USER, sshd::NOSUDO_USER],
            dir: &sshd_dir,
            extra: "",
        })?;
        let mut d = Daemon::spawn(&cfg, &sshd_dir, Some(&netns))?;
        let ready = d.wait_ready(me.addr(), Duration::from_secs(15));
        me.daemon = Some(d);
        ready?;
        if !std::fs::read_to_string(fleet.known_hosts())?.is_empty() {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(fleet.known_hosts())?;
            writeln!(f, "[{ip}]:{} {}", me.port, sshd::algo_and_blob(&key)?)?;
        }
        Ok(me)
    }

    /// The host as it goes into an inventory (see `InventorySpec::extra_host`).
    pub fn host(&self) -> &Host {
        &self.host
    }
    /// Its address (10.213.N.2).
    pub fn ip(&self) -> Ipv4Addr {
        self.host.ip
    }
    /// Its sshd's socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.host.ip, self.port))
    }
    /// The namespace name (for `ip netns exec`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Drop every packet arriving in the namespace: connects and open sessions hang.
    pub fn cut(&mut self) -> Result<()> {
        if !self.cut {
            run(&[
                "ip",
                "netns",
                "exec",
                &self.netns,
                "iptables",
                "-I",
                "INPUT",
                "1",
                "-j",
                "DROP",
            ])?;
            self.cut = true;
        }
        Ok(())
    }

    /// Undo [`NetnsHost::cut`].
    pub fn restore(&mut self) -> Result<()> {
        if self.cut {
            run(&[
                "ip",
                "netns",
                "exec",
                &self.netns,
                "iptables",
                "-D",
                "INPUT",
                "-j",
                "DROP",
            ])?;
            self.cut = false;
        }
        Ok(())
    }

    /// Take the root side of the veth down: the route disappears and connects fail at once
    /// ("No route to host", from the unreachable route).
    pub fn link_down(&self) -> Result<()> {
        run(&["ip", "link", "set", &self.veth, "down"])
    }

    /// Undo [`NetnsHost::link_down`].
    pub fn link_up(&self) -> Result<()> {
        run(&["ip", "link", "set", &self.veth, "up"])
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop();
        }
        // Exporters the stand-in started inside the namespace, sessions, anything else.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.netns])
            .output()
        {
            let pids: Vec<i32> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            sshd::proc::terminate(&pids, Duration::from_secs(2));
            sshd::proc::reap_orphans();
        }
        let _ = run_quiet(&["ip", "netns", "del", &self.netns]);
        let _ = run_quiet(&["ip", "link", "del", &self.veth]);
    }
}

/// Once per process: the unreachable safety route, and removal of namespaces left by
/// test processes that no longer exist.
fn prepare_root_namespace() -> Result<()> {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(());
    }
    let routes = output(&["ip", "route", "show", "type", "unreachable", SUPERNET])?;
    if routes.trim().is_empty() {
        run(&["ip", "route", "add", "unreachable", SUPERNET])?;
    }
    for line in output(&["ip", "netns", "list"])?.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let owner: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
        if owner.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let pids = output(&["ip", "netns", "pids", name]).unwrap_or_default();
            let pids: Vec<i32> = pids
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            sshd::proc::terminate(&pids, Duration::from_secs(2));
            let _ = run_quiet(&["ip", "netns", "del", name]);
        }
    }
    *done = true;
    Ok(())
}

fn output(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("run {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(args: &[&str]) -> Result<()> {
    output(args).map(|_| ())
}

fn run_quiet(args: &[&str]) -> Result<()> {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    Ok(())
}

/// Paths a netns host uses inside the fleet root (for tests that look at its sshd log).
pub fn sshd_log(fleet: &Fleet, name: &str) -> PathBuf {
    fleet.root().join(".sshd").join(name).join("sshd.log")
}
