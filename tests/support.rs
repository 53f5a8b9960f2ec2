//! Shared helpers of the scenario tests: run the promfleet binary, start real Prometheus.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_promfleet")
}

/// Skip (with a printed reason) when the machine lacks what a test needs.
pub fn require_root() -> bool {
    if !testkit::sshd::is_root() {
        eprintln!("SKIPPED: needs root (sshd fleet, users, netns)");
        return false;
    }
    true
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A promfleet invocation against a fleet: cwd = repo root, known_hosts and state dir set.
pub struct Run {
    pub cmd: Command,
}

impl Run {
    pub fn new(args: &[&str]) -> Run {
        let mut cmd = Command::new(bin());
        cmd.current_dir(repo()).args(args);
        cmd.env_remove("SSH_AUTH_SOCK");
        Run { cmd }
    }
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Run {
        self.cmd.arg(a);
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Run {
        self.cmd.env(k, v);
        self
    }
    pub fn output(mut self) -> Output {
        self.cmd.output().expect("run promfleet")
    }
}

/// `promfleet <sub> -i inv --known-hosts kh --state-dir dir --output json ...` for a fleet.
pub fn fleet_run(sub: &[&str], inv: &Path, fleet: &testkit::sshd::Fleet, extra: &[&str]) -> Output {
    let mut r = Run::new(sub)
        .arg("-i")
        .arg(inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg("--state-dir")
        .arg(fleet.root().join("state"))
        .arg("--retry-delay-ms")
        .arg("100");
    for e in extra {
        r = r.arg(e);
    }
    r.output()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parse the `--output json` run report.
pub fn report(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout:\n{}\nstderr:\n{}",
            stdout(o),
            stderr(o)
        )
    })
}

/// host → (status, changed) from a JSON report.
pub fn host_status(r: &Value) -> std::collections::BTreeMap<String, (String, u64)> {
    r["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap_or_default().to_string(),
                (
                    h["status"].as_str().unwrap_or_default().to_string(),
                    h["changed"].as_u64().unwrap_or(99),
                ),
            )
        })
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Real Prometheus (Debian) on 127.0.0.1, killed on drop.
pub struct Prometheus {
    child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(config_yaml: &str) -> Prometheus {
        Prometheus::start_on(config_yaml, free_port())
    }

    /// On a port chosen by the caller (e.g. already named in the config as a target).
    pub fn start_on(config_yaml: &str, port: u16) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config_yaml).expect("write config");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).expect("log"))
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
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

/// A temp project: `playbooks/<name>.yml` and `templates/` (with the repo's defaults.yml).
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("playbooks")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("templates")).expect("mkdir");
        std::fs::copy(
            repo().join("templates/defaults.yml"),
            dir.path().join("templates/defaults.yml"),
        )
        .expect("defaults");
        Project { dir }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn template(&self, name: &str, text: &str) {
        std::fs::write(self.path("templates").join(name), text).expect("template");
    }
    pub fn playbook(&self, name: &str, text: &str) -> String {
        let p = self.path("playbooks").join(name);
        std::fs::write(&p, text).expect("playbook");
        p.display().to_string()
    }
}

/// A running promfleet whose stderr is read as it comes (to act on its progress).
pub struct Watched {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Watched {
    pub fn spawn(mut cmd: std::process::Command) -> Watched {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn promfleet");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, buf) = (child.stderr.take().expect("stderr"), stderr.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
                b.push_str(&line);
                b.push('\n');
            }
        });
        let mut out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        Watched {
            child,
            stderr,
            reader: Some(reader),
            stdout: Some(stdout),
        }
    }

    pub fn text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wait until stderr contains `needle` (false when `limit` passes or the run ended).
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.text().contains(needle) {
                return true;
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return self.text().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child, not yet waited for.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill");
    }

    /// Wait for the exit; kill it and fail when `limit` passes first.
    pub fn finish(mut self, limit: Duration) -> (Output, Duration) {
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "promfleet still running after {limit:?}; stderr:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = started.elapsed();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stdout = self
            .stdout
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let stderr = self.text().into_bytes();
        (
            Output {
                status,
                stdout,
                stderr,
            },
            took,
        )
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Poll for a file with a bound.
pub fn wait_for_file(p: &Path, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if p.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
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
