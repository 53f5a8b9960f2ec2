//! SSH on the test fleet: promfleet's transport connected to a fleet host, an sshd of the
//! test's own, and what an operator would do over real ssh.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use promfleet::transport::{ConnectOptions, Session, Target};
use testkit::sshd::Fleet;

use super::{assert_no_temp_files, require_root};

/// A fleet of `n` hosts with one sshd each, or None (SKIPPED) without root.
pub fn fleet(n: usize) -> Option<Fleet> {
    if !require_root() {
        return None;
    }
    Some(Fleet::builder().hosts(n).start().expect("fleet"))
}

/// The target of a fleet host, logging in as the sudo user with the fleet's key.
pub fn target(fleet: &Fleet, name: &str) -> Target {
    let h = fleet.host(name).expect("host");
    Target {
        name: name.to_string(),
        address: h.ip.to_string(),
        port: fleet.port(),
        user: fleet.user().to_string(),
        keys: vec![fleet.client_key().to_path_buf()],
        keys_explicit: true,
        jump: None,
        become_root: false,
        ..Target::default()
    }
}

/// Strict options on the fleet's known_hosts, no agent, short timeouts.
pub fn opts(fleet: &Fleet) -> ConnectOptions {
    let mut o = ConnectOptions::new(fleet.known_hosts().to_path_buf());
    o.agent = None;
    o.connect_timeout = Duration::from_secs(10);
    o.command_timeout = Duration::from_secs(30);
    o
}

pub async fn connect(t: &Target, o: &ConnectOptions) -> Session {
    Session::connect(t, o)
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", t.name))
}

/// `dir` exists and holds no upload temp file, at any depth.
pub fn no_temp_files(dir: &Path) {
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
    assert_no_temp_files(dir);
}

/// Permission bits of `p`.
pub fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Stop a host's exporters the way an operator would: `compose down` over real ssh.
pub fn stop_exporters(fleet: &testkit::sshd::Fleet, host: &testkit::sshd::Host) {
    let down = fleet
        .ssh_command(&host.name)
        .expect("ssh")
        .arg(format!(
            "{} -f {}/docker-compose.yml down",
            fleet.compose_command().display(),
            host.deploy_dir().display()
        ))
        .output()
        .expect("compose down");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}

/// An sshd of the test's own in place of a fleet host's: the rig's config with `settings`
/// (`Keyword value` lines) replacing the rig's lines of the same keywords, logging to its own
/// file. The rig turns TCP forwarding off and allows 20 auth tries; ProxyJump and MaxAuthTries
/// tests need otherwise. Killed on drop.
pub struct OwnSshd {
    child: std::process::Child,
    pub log: PathBuf,
}

impl OwnSshd {
    pub fn replace(fleet: &testkit::sshd::Fleet, name: &str, settings: &[&str]) -> OwnSshd {
        let rig = fleet.root().join(".sshd").join(name).join("sshd_config");
        let cfg = std::fs::read_to_string(rig).expect("sshd_config");
        let dir = fleet.root().join(format!("own-sshd-{name}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let keyword = |l: &str| {
            l.split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        };
        let mut replaced: Vec<String> = settings.iter().map(|s| keyword(s)).collect();
        replaced.push("pidfile".into());
        let mut text: String = cfg
            .lines()
            .filter(|l| !replaced.contains(&keyword(l)))
            .map(|l| format!("{l}\n"))
            .collect();
        for s in settings {
            text.push_str(&format!("{s}\n"));
        }
        text.push_str(&format!("PidFile {}/sshd.pid\n", dir.display()));
        let path = dir.join("sshd_config");
        std::fs::write(&path, text).expect("write config");
        fleet.stop(name).expect("stop");
        let log = dir.join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(&path)
            .arg("-E")
            .arg(&log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sshd");
        let addr = fleet.addr(name).expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        while testkit::sshd::banner(addr).is_err() {
            assert!(Instant::now() < deadline, "own sshd on {name} not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnSshd { child, log }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OwnSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
