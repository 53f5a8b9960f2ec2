//! One OpenSSH server process: its config file, launch (`sshd -D -f cfg -E log`, optionally
//! inside a network namespace), readiness (the SSH banner arrives) and stop. Also the
//! "silenced host": a listener that accepts TCP and never speaks.

use super::proc;
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What goes into one sshd_config.
pub(crate) struct DaemonSpec<'a> {
    pub listen: &'a [String],
    pub host_key: &'a Path,
    pub authorized_keys: &'a Path,
    pub users: &'a [&'a str],
    /// Directory for the config, pid file and log.
    pub dir: &'a Path,
    /// More sshd_config lines (extra HostKey, HostCertificate, …), appended last.
    pub extra: &'a str,
}

/// A running sshd.
pub(crate) struct Daemon {
    child: Child,
    pub log: PathBuf,
}

pub(crate) fn write_config(spec: &DaemonSpec<'_>) -> Result<PathBuf> {
    let mut cfg = String::new();
    for l in spec.listen {
        cfg.push_str(&format!("ListenAddress {l}\n"));
    }
    cfg.push_str(&format!(
        "HostKey {hk}\n\
         PidFile {dir}/sshd.pid\n\
         AuthorizedKeysFile {ak}\n\
         AllowUsers {users}\n\
         UsePAM no\n\
         StrictModes no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         PermitRootLogin no\n\
         MaxStartups 1000:30:2000\n\
         MaxSessions 100\n\
         MaxAuthTries 20\n\
         LoginGraceTime 30\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         X11Forwarding no\n\
         AllowTcpForwarding no\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n",
        hk = spec.host_key.display(),
        dir = spec.dir.display(),
        ak = spec.authorized_keys.display(),
        users = spec.users.join(" "),
    ));
    cfg.push_str(spec.extra);
    let path = spec.dir.join("sshd_config");
    std::fs::write(&path, cfg).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

impl Daemon {
    /// Launch sshd on `config`; `netns` runs it inside that network namespace.
    pub(crate) fn spawn(config: &Path, dir: &Path, netns: Option<&str>) -> Result<Daemon> {
        match netns {
            Some(ns) => Self::spawn_under(config, dir, &["ip", "netns", "exec", ns]),
            None => Self::spawn_under(config, dir, &[]),
        }
    }

    /// As `spawn`, sshd run by a wrapper command (`unshare …`, `ip netns exec …`).
    pub(crate) fn spawn_under(config: &Path, dir: &Path, wrapper: &[&str]) -> Result<Daemon> {
        let log = dir.join("sshd.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg("/usr/sbin/sshd");
                c
            }
            None => Command::new("/usr/sbin/sshd"),
        };
        cmd.arg("-D").arg("-f").arg(config).arg("-E").arg(&log);
        // Own process group: a Ctrl-C meant for the test runner is handled by our Drop.
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().context("spawn /usr/sbin/sshd")?;
        Ok(Daemon { child, log })
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait until `addr` sends an SSH banner; fails early if sshd exits (with its log).
    pub(crate) fn wait_ready(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "sshd for {addr} exited ({status}) before accepting connections:\n{}",
                    tail(&self.log)
                );
            }
            if banner(addr).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "sshd for {addr} sent no SSH banner within {timeout:?}:\n{}",
                    tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill the listener and its sessions (a host going down drops its connections too).
    pub(crate) fn stop(mut self) {
        let pid = self.pid();
        let mut pids = proc::descendants(pid);
        pids.push(pid);
        proc::terminate(&pids, Duration::from_secs(2));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read the server's identification line (`SSH-2.0-…`) from `addr`.
pub fn banner(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300))?;
    s.set_read_timeout(Some(Duration::from_millis(1000)))?;
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while !got.contains(&b'\n') && got.len() < 256 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    if text.starts_with("SSH-") {
        Ok(text.trim().to_string())
    } else {
        bail!("no SSH banner from {addr} (got {text:?})")
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A hung host: the TCP handshake completes (the kernel does it) but nothing is ever sent.
pub(crate) struct Silencer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silencer {
    pub(crate) fn start(addr: SocketAddr) -> Result<Silencer> {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("bind silent listener on {addr}"))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Silencer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Silencer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
