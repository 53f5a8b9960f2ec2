//! Running the promfleet binary: one invocation (`Run`), one against a fleet (`fleet_run`),
//! one watched while it runs (`Watched`), and reading its `--output json` report.

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

/// The environment variables through which Consul's and promfleet's settings reach a run.
pub const SETTINGS_ENV: &[&str] = &[
    "CONSUL_HTTP_TOKEN",
    "CONSUL_HTTP_TOKEN_FILE",
    "CONSUL_HTTP_ADDR",
    "CONSUL_HTTP_SSL",
    "CONSUL_HTTP_SSL_VERIFY",
    "CONSUL_CACERT",
    "CONSUL_CAPATH",
    "CONSUL_CLIENT_CERT",
    "CONSUL_CLIENT_KEY",
    "CONSUL_TLS_SERVER_NAME",
    "PROMFLEET_SECRET_CONSUL_TOKEN",
    "PROMFLEET_SECRETS",
    "PROMFLEET_CONFIG",
    "PROMFLEET_INVENTORY",
];

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
    /// `promfleet render <playbooks…> -i <inv> --out <out>` (no playbook: the default ones).
    pub fn render(playbooks: &[&str], inv: &Path, out: &Path) -> Run {
        Run::new(&["render"])
            .args(playbooks)
            .arg("-i")
            .arg(inv)
            .arg("--out")
            .arg(out)
    }
    pub fn args(mut self, args: &[&str]) -> Run {
        self.cmd.args(args);
        self
    }
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Run {
        self.cmd.arg(a);
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Run {
        self.cmd.env(k, v);
        self
    }
    pub fn env_remove(mut self, k: &str) -> Run {
        self.cmd.env_remove(k);
        self
    }
    /// No Consul or promfleet setting inherited from the test's environment: the run sees
    /// only what the test gives it.
    pub fn without_settings_env(mut self) -> Run {
        for k in SETTINGS_ENV {
            self.cmd.env_remove(k);
        }
        self
    }
    /// Against `fleet` through inventory `inv`: the fleet's known_hosts, the state dir
    /// `<fleet root>/state`, retries 100 ms apart.
    pub fn on_fleet(self, inv: &Path, fleet: &testkit::sshd::Fleet) -> Run {
        self.arg("-i")
            .arg(inv)
            .arg("--known-hosts")
            .arg(fleet.known_hosts())
            .arg("--state-dir")
            .arg(fleet.root().join("state"))
            .arg("--retry-delay-ms")
            .arg("100")
    }
    pub fn output(mut self) -> Output {
        self.cmd.output().expect("run promfleet")
    }
    /// Runs it; fails with its command line and stderr unless it exits 0.
    #[track_caller]
    pub fn succeeds(self) -> Output {
        let line = format!("{:?}", self.cmd);
        let out = self.output();
        assert!(out.status.success(), "{line} failed:\n{}", stderr(&out));
        out
    }
    /// Run with `--output json`: the output and its report. Fails when any of `secrets`
    /// shows in stdout or stderr.
    #[track_caller]
    pub fn report_hiding(self, secrets: &[&str]) -> (Output, Value) {
        let out = self.arg("--output").arg("json").output();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        for s in secrets {
            assert!(!text.contains(s), "promfleet printed the secret `{s}`");
        }
        let report = report(&out);
        (out, report)
    }
}

/// `promfleet <sub> -i inv --known-hosts kh --state-dir dir ...` for a fleet.
pub fn fleet_run(sub: &[&str], inv: &Path, fleet: &testkit::sshd::Fleet, extra: &[&str]) -> Output {
    let mut r = Run::new(sub).on_fleet(inv, fleet);
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

/// One row of the `central` view of a `status --output json` report.
#[derive(Debug, Clone, PartialEq)]
pub struct CentralRow {
    pub service: String,
    /// The monitoring host (or agent) it was asked on.
    pub at: String,
    pub state: String,
    pub summary: String,
    pub detail: String,
}

/// The central rows of a `status --output json` report, in its order (none without a view).
pub fn central_rows(report: &Value) -> Vec<CentralRow> {
    report["central"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let t = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            CentralRow {
                service: t("service"),
                at: t("at"),
                state: t("state"),
                summary: t("summary"),
                detail: t("detail"),
            }
        })
        .collect()
}

/// (service, state) of each central row: what a test compares with the rows it expects.
pub fn central_states(report: &Value) -> Vec<(String, String)> {
    central_rows(report)
        .into_iter()
        .map(|r| (r.service, r.state))
        .collect()
}

/// Hosts listed in `<state_dir>/retry` (comments and blank lines skipped).
pub fn retry_list(state_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(state_dir.join("retry"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(String::from)
        .collect()
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
