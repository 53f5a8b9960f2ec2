//! Hosts in memory, for unit tests of everything above the transport (executor, modules,
//! planner): no sshd, no root, no network, and no sleeping. A `FakeHost` is a `Transport`
//! with files in a map and scripted replies to commands; a `FakeFleet` is the `Connect` that
//! hands them out, and can refuse a host for a while or for good. Every operation is recorded
//! in order, so a test asserts what was run, written and never run again.
//!
//! Operations are recorded (and matched by scripted replies) as text: a command as its own
//! text, an upload as `upload <dest>`, a comparison as `sha256 <dest>`, a read as `cat <path>`,
//! a polite close as `close`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::output::{Capture, ExecOutput};
use super::{Connect, Target, Transport, TransportError, Upload};
use crate::inventory::Host;

/// What a scripted operation does.
#[derive(Clone)]
pub enum Reply {
    /// The command ran and exited with `status`, printing `stdout` and `stderr`. For an
    /// upload, comparison or read, a non-zero status is the remote side refusing it.
    Exit {
        status: u32,
        stdout: String,
        stderr: String,
    },
    /// No exit status (killed by a signal), the connection still alive.
    Killed,
    /// The command outlived `--command-timeout` (`TransportError::CommandTimeout`).
    TimedOut,
    /// The connection died under the operation (`TransportError::Lost`).
    Lost,
    /// Never answers: only a run's abort (its future dropped) ends it.
    Hang,
    /// Calls the function (e.g. to cancel the run while a step is in flight), then answers
    /// as an unscripted operation does.
    Call(Arc<dyn Fn() + Send + Sync>),
    /// The reply the function computes from the operation's text (e.g. a facts batch, whose
    /// answer must repeat the marker the batch chose).
    Compute(Arc<dyn Fn(&str) -> Reply + Send + Sync>),
}

impl Reply {
    /// Exit 0 printing `stdout`.
    pub fn stdout(stdout: &str) -> Reply {
        Reply::Exit {
            status: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    /// The answer to a facts batch (`facts::Facts::prefetch`): each probe's output in
    /// `sections`, in the order the facts were asked, under the marker the batch chose (read
    /// from its `pf_fact_marker=` assignment).
    pub fn facts_batch(sections: Vec<String>) -> Reply {
        Reply::Compute(Arc::new(move |cmd: &str| {
            let marker = cmd
                .lines()
                .find_map(|l| l.strip_prefix("pf_fact_marker="))
                .unwrap_or_default()
                .trim_matches('\'')
                .to_string();
            let mut out = String::new();
            for s in &sections {
                out.push_str(&format!("\n{marker} begin\n{s}\n{marker} end 0\n"));
            }
            Reply::stdout(&out)
        }))
    }

    /// Exit `status` printing `stderr`.
    pub fn fail(status: u32, stderr: &str) -> Reply {
        Reply::Exit {
            status,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
}

/// A file on a fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFile {
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: Option<String>,
}

struct Rule {
    /// Matches an operation whose text contains it.
    pattern: String,
    reply: Reply,
    /// How many more operations it answers; `None`: every one.
    times: Option<usize>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, FakeFile>,
    rules: Vec<Rule>,
    log: Vec<String>,
}

/// How the fake logs the script `upload_then` runs after a changed write (the rules match
/// it like any operation's text).
pub const AFTER_WRITE: &str = "after write: ";

/// One host in memory (a `Transport`).
pub struct FakeHost {
    target: Target,
    state: Mutex<State>,
}

impl FakeHost {
    pub fn new(name: &str) -> FakeHost {
        FakeHost {
            target: Target {
                name: name.into(),
                address: name.into(),
                port: 22,
                user: "root".into(),
                ..Target::default()
            },
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding it has failed already.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer every operation whose text contains `pattern` with `reply` (the first rule
    /// added wins; unscripted commands exit 0 with no output).
    pub fn on(&self, pattern: &str, reply: Reply) -> &FakeHost {
        self.rule(pattern, reply, None)
    }

    /// As `on`, for the next `times` matching operations only.
    pub fn on_times(&self, pattern: &str, times: usize, reply: Reply) -> &FakeHost {
        self.rule(pattern, reply, Some(times))
    }

    fn rule(&self, pattern: &str, reply: Reply, times: Option<usize>) -> &FakeHost {
        self.state().rules.push(Rule {
            pattern: pattern.into(),
            reply,
            times,
        });
        self
    }

    /// Put a file on the host.
    pub fn put(&self, path: &str, content: &[u8], mode: u32) -> &FakeHost {
        self.state().files.insert(
            path.into(),
            FakeFile {
                content: content.to_vec(),
                mode,
                owner: None,
            },
        );
        self
    }

    /// A file on the host, if there is one.
    pub fn file(&self, path: &str) -> Option<FakeFile> {
        self.state().files.get(path).cloned()
    }

    /// Every operation so far, in order.
    pub fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    /// How many operations so far contained `pattern`.
    pub fn count(&self, pattern: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|op| op.contains(pattern))
            .count()
    }

    /// Record `op` and find its scripted reply.
    fn begin(&self, op: String) -> Option<Reply> {
        let mut st = self.state();
        let reply = st
            .rules
            .iter_mut()
            .find(|r| op.contains(&r.pattern) && r.times != Some(0))
            .map(|r| {
                if let Some(n) = r.times.as_mut() {
                    *n -= 1;
                }
                r.reply.clone()
            });
        let reply = match reply {
            Some(Reply::Compute(f)) => Some(f(&op)),
            other => other,
        };
        st.log.push(op);
        reply
    }

    /// Play `reply`: `Ok(None)` goes on as an unscripted operation, `Ok(Some(out))` is the
    /// scripted output.
    async fn play(&self, reply: Option<Reply>) -> Result<Option<ExecOutput>, TransportError> {
        match reply {
            None => Ok(None),
            Some(Reply::Exit {
                status,
                stdout,
                stderr,
            }) => {
                let mut out = ExecOutput::default();
                out.stdout.push(stdout.as_bytes());
                out.stderr.push(stderr.as_bytes());
                out.status = Some(status);
                Ok(Some(out))
            }
            Some(Reply::Killed) => Ok(Some(ExecOutput::default())),
            Some(Reply::TimedOut) => Err(TransportError::CommandTimeout {
                host: self.target.name.clone(),
                after: Duration::from_secs(600),
            }),
            Some(Reply::Lost) => Err(TransportError::Lost {
                host: self.target.name.clone(),
            }),
            Some(Reply::Hang) => futures::future::pending().await,
            Some(Reply::Call(f)) => {
                f();
                Ok(None)
            }
            // Computed once in `begin`; a computed `Compute` is not computed again.
            Some(Reply::Compute(_)) => Ok(None),
        }
    }

    /// The scripted answer to a non-command operation: a refusal is `Remote`, like the
    /// session's when the remote script fails.
    async fn scripted(&self, what: &str, op: String) -> Result<(), TransportError> {
        let reply = self.begin(op);
        match self.play(reply).await? {
            Some(out) if !out.success() => Err(TransportError::Remote {
                what: what.into(),
                message: out.short_error(),
            }),
            _ => Ok(()),
        }
    }
}

/// Let other tasks run, as a real round trip would.
async fn round_trip() {
    tokio::task::yield_now().await;
}

impl Transport for FakeHost {
    fn target(&self) -> &Target {
        &self.target
    }

    fn exec<'a>(
        &'a self,
        command: &'a str,
        _stdin: Option<Bytes>,
    ) -> BoxFuture<'a, Result<ExecOutput, TransportError>> {
        Box::pin(async move {
            let reply = self.begin(command.to_string());
            let out = self.play(reply).await?;
            round_trip().await;
            Ok(out.unwrap_or_else(|| ExecOutput {
                status: Some(0),
                ..ExecOutput::default()
            }))
        })
    }

    fn upload_owned<'a>(
        &'a self,
        dest: &'a str,
        content: Bytes,
        mode: u32,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Upload, TransportError>> {
        Box::pin(async move {
            self.scripted(&format!("writing {dest}"), format!("upload {dest}"))
                .await?;
            let new = FakeFile {
                content: content.to_vec(),
                mode,
                owner: owner.map(String::from),
            };
            let mut st = self.state();
            if st.files.get(dest) == Some(&new) {
                return Ok(Upload::Unchanged);
            }
            // As the session's upload script: the replaced version is kept as `.prev`.
            if let Some(old) = st.files.insert(dest.into(), new) {
                st.files.insert(format!("{dest}.prev"), old);
            }
            Ok(Upload::Changed)
        })
    }

    /// The upload (logged `upload <dest>`), then after a change `then` as one more operation
    /// of the same round trip, logged `after write: <script>` and answered by the rules as a command.
    fn upload_then<'a>(
        &'a self,
        dest: &'a str,
        content: Bytes,
        mode: u32,
        owner: Option<&'a str>,
        then: &'a str,
        written: &'a std::sync::atomic::AtomicBool,
    ) -> BoxFuture<'a, Result<(Upload, Option<crate::transport::AfterWrite>), TransportError>> {
        Box::pin(async move {
            let up = self.upload_owned(dest, content, mode, owner).await?;
            if up == Upload::Unchanged {
                return Ok((up, None));
            }
            written.store(true, std::sync::atomic::Ordering::SeqCst);
            let reply = self.begin(format!("{AFTER_WRITE}{then}"));
            let out = self.play(reply).await.map(|out| {
                out.unwrap_or_else(|| ExecOutput {
                    status: Some(0),
                    ..ExecOutput::default()
                })
            });
            Ok((up, Some(out)))
        })
    }

    fn file_matches<'a>(
        &'a self,
        dest: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>> {
        Box::pin(async move {
            self.scripted(&format!("comparing {dest}"), format!("sha256 {dest}"))
                .await?;
            Ok(self
                .state()
                .files
                .get(dest)
                .is_some_and(|f| crate::modules::file::sha256_hex(&f.content) == sha256))
        })
    }

    fn cat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Capture>, TransportError>> {
        Box::pin(async move {
            self.scripted(&format!("reading {path}"), format!("cat {path}"))
                .await?;
            Ok(self.state().files.get(path).map(|f| {
                let mut c = Capture::default();
                c.push(&f.content);
                c
            }))
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.state().log.push("close".into());
        Box::pin(async {})
    }
}

/// Why a fake host cannot be connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Connection refused, every time (transient: retried, then unreachable).
    Down,
    /// Connection refused this many more times, then accepted.
    Flaky(usize),
    /// Authentication fails (permanent: never retried).
    Auth,
}

/// The `Connect` for fake hosts: any host name is a `FakeHost`, created on first use.
#[derive(Default)]
pub struct FakeFleet {
    hosts: Mutex<HashMap<String, Arc<FakeHost>>>,
    refusals: Mutex<HashMap<String, Refusal>>,
    attempts: Mutex<HashMap<String, usize>>,
    open: Arc<Open>,
}

/// Connections open now and at most, over the fleet.
#[derive(Default)]
struct Open {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// One connection to a fake host: counted open until dropped; `close` is recorded on the
/// host (`close`).
struct FakeConn {
    host: Arc<FakeHost>,
    open: Arc<Open>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.open.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Transport for FakeConn {
    fn target(&self) -> &Target {
        self.host.target()
    }

    fn exec<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<Bytes>,
    ) -> BoxFuture<'a, Result<ExecOutput, TransportError>> {
        self.host.exec(command, stdin)
    }

    fn upload_owned<'a>(
        &'a self,
        dest: &'a str,
        content: Bytes,
        mode: u32,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Upload, TransportError>> {
        self.host.upload_owned(dest, content, mode, owner)
    }

    fn upload_then<'a>(
        &'a self,
        dest: &'a str,
        content: Bytes,
        mode: u32,
        owner: Option<&'a str>,
        then: &'a str,
        written: &'a std::sync::atomic::AtomicBool,
    ) -> BoxFuture<'a, Result<(Upload, Option<crate::transport::AfterWrite>), TransportError>> {
        self.host
            .upload_then(dest, content, mode, owner, then, written)
    }

    fn file_matches<'a>(
        &'a self,
        dest: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>> {
        self.host.file_matches(dest, sha256)
    }

    fn cat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Capture>, TransportError>> {
        self.host.cat(path)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.host.close()
    }
}

impl FakeFleet {
    pub fn new() -> FakeFleet {
        FakeFleet::default()
    }

    /// The host named `name` (created empty if new).
    pub fn host(&self, name: &str) -> Arc<FakeHost> {
        lock(&self.hosts)
            .entry(name.into())
            .or_insert_with(|| Arc::new(FakeHost::new(name)))
            .clone()
    }

    /// Make connecting to `name` fail as `how` says.
    pub fn refuse(&self, name: &str, how: Refusal) -> &FakeFleet {
        lock(&self.refusals).insert(name.into(), how);
        self
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.now.load(Ordering::SeqCst)
    }

    /// The most connections open at once so far.
    pub fn peak_open(&self) -> usize {
        self.open.peak.load(Ordering::SeqCst)
    }

    /// Connection attempts made to `name` so far.
    pub fn attempts(&self, name: &str) -> usize {
        lock(&self.attempts).get(name).copied().unwrap_or(0)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connect for FakeFleet {
    fn target<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Result<Target, TransportError>> {
        Box::pin(async move { Ok(self.host(&host.name).target.clone()) })
    }

    fn connect<'a>(
        &'a self,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, TransportError>> {
        Box::pin(async move {
            let name = target.name.as_str();
            *lock(&self.attempts).entry(name.into()).or_default() += 1;
            let refused = || TransportError::Connect {
                addr: format!("{}:{}", target.address, target.port),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            };
            let how = lock(&self.refusals).get(name).copied();
            match how {
                Some(Refusal::Down) => return Err(refused()),
                Some(Refusal::Flaky(n)) if n > 0 => {
                    lock(&self.refusals).insert(name.into(), Refusal::Flaky(n - 1));
                    return Err(refused());
                }
                Some(Refusal::Auth) => {
                    return Err(TransportError::Auth {
                        user: target.user.clone(),
                        host: name.into(),
                        tried: "fake".into(),
                    });
                }
                _ => {}
            }
            let now = self.open.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.open.peak.fetch_max(now, Ordering::SeqCst);
            let conn = FakeConn {
                host: self.host(name),
                open: self.open.clone(),
            };
            Ok(Arc::new(conn) as Arc<dyn Transport>)
        })
    }
}
