//! The SSH `Transport`: one connection per host, reused by every task of a run — connect,
//! authenticate, exec, upload — and `Ssh`, the `Connect` that opens it. Moves bytes only;
//! what to run is decided by `modules`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use russh::client::{self, Handle};
use russh::{ChannelMsg, Disconnect, Sig};

use super::auth::authenticate;
use super::command::{Script, in_posix_sh};
use super::keys::KeyStore;
use super::output::{Capture, ExecOutput};
use super::ssh_config::SshConfig;
use super::sudo;
use super::upload::{read_answer, upload_script, upload_then_script};
use super::verify::{HostKeyPolicy, Verifier};
use super::{AfterWrite, BecomePassword, Connect, Target, Transport, TransportError};
use crate::inventory::Host;

/// Set when a command's stdout starts with these bytes (as soon as they arrive, the command
/// still running): how `upload_then` tells that its write is done.
type Marker<'m> = Option<(&'static [u8], &'m AtomicBool)>;

/// A command that did not finish (connection lost, command timeout, or never started): the
/// error, and what it printed until then.
struct Partial {
    error: TransportError,
    output: ExecOutput,
}

impl From<TransportError> for Partial {
    fn from(error: TransportError) -> Partial {
        Partial {
            error,
            output: ExecOutput::default(),
        }
    }
}

/// How long stopping a timed-out command (signal, close) may take before promfleet moves on.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// One bastion's shared session, connected by whoever needs it first.
pub type JumpSlot = Arc<tokio::sync::Mutex<Option<Arc<Session>>>>;

/// Run-wide connection settings (parsed once from the CLI).
#[derive(Clone)]
pub struct ConnectOptions {
    /// User known_hosts file (`--known-hosts`), used when the target's ~/.ssh/config names no
    /// UserKnownHostsFile; new keys are recorded in it.
    pub known_hosts: PathBuf,
    /// Global known_hosts files, used when the target names no GlobalKnownHostsFile.
    pub global_known_hosts: Vec<PathBuf>,
    /// `--accept-new-host-keys`: StrictHostKeyChecking accept-new for targets whose config
    /// does not set it.
    pub accept_new_host_keys: bool,
    /// False in `--check`: no host key is ever recorded, whatever `--accept-new-host-keys` or
    /// a config's `StrictHostKeyChecking` says (an unknown key is then refused and reported).
    pub record_host_keys: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub keepalive: Duration,
    pub keys: Arc<KeyStore>,
    /// Serialises appends to known_hosts from parallel connections.
    pub known_hosts_lock: Arc<Mutex<()>>,
    /// ssh-agent socket to try first (the CLI passes `SSH_AUTH_SOCK`).
    pub agent: Option<PathBuf>,
    /// Open ProxyJump connections, one per bastion, shared by every host behind it (each
    /// host is a direct-tcpip channel): a bastion sees one login, not one per host.
    pub jumps: Arc<Mutex<HashMap<String, JumpSlot>>>,
    /// The run's sudo password (-K, else the `become_password` secret), for become hosts
    /// whose inventory gives none.
    pub become_password: Option<BecomePassword>,
    /// Where warnings go (a malformed known_hosts line): the CLI's reporter; `log::warn!`
    /// for library use.
    pub warn: Warn,
}

/// A sink for warnings the transport cannot act on but the user should fix.
#[derive(Clone)]
pub struct Warn(Arc<dyn Fn(&str) + Send + Sync>);

impl Warn {
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Warn {
        Warn(Arc::new(f))
    }

    pub fn warn(&self, message: &str) {
        (self.0)(message)
    }
}

impl std::fmt::Debug for Warn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Warn")
    }
}

impl ConnectOptions {
    pub fn new(known_hosts: PathBuf) -> Self {
        ConnectOptions {
            known_hosts,
            global_known_hosts: vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ],
            accept_new_host_keys: false,
            record_host_keys: true,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(600),
            keepalive: Duration::from_secs(15),
            keys: Arc::new(KeyStore::default()),
            known_hosts_lock: Arc::new(Mutex::new(())),
            agent: crate::settings::Env::current()
                .get("SSH_AUTH_SOCK")
                .map(PathBuf::from),
            jumps: Arc::default(),
            become_password: None,
            warn: Warn::new(|m| log::warn!("{m}")),
        }
    }
}

/// Result of an upload: whether the remote file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    Unchanged,
    Changed,
}

/// The russh handler: host keys are the verifier's business; a disconnect message from the
/// server is kept so a failed login can say why (e.g. "Too many authentication failures").
pub(super) struct Client {
    verifier: Verifier,
    disconnect: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = <Verifier as client::Handler>::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        client::Handler::check_server_key(&mut self.verifier, key).await
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                *self.disconnect.lock().unwrap_or_else(|p| p.into_inner()) = Some(info.message);
                Ok(())
            }
            client::DisconnectReason::Error(e) => Err(e),
        }
    }
}

/// An authenticated SSH connection to one host.
pub struct Session {
    handle: Handle<Client>,
    // Keeps the ProxyJump connection alive as long as this one.
    _jump: Option<Arc<Session>>,
    target: Target,
    command_timeout: Duration,
    // Bound of the once-per-connection sudo check: it authenticates, like connecting.
    become_timeout: Duration,
    // sudo's verdict on this connection, checked before the first become command.
    become_checked: tokio::sync::OnceCell<Result<(), BecomeRefused>>,
}

/// sudo refused `become` on a connection (kept, so it is reported, never asked again).
#[derive(Debug, Clone)]
struct BecomeRefused {
    what: String,
    message: String,
}

impl From<BecomeRefused> for TransportError {
    fn from(r: BecomeRefused) -> TransportError {
        TransportError::Remote {
            what: r.what,
            message: r.message,
        }
    }
}

impl Session {
    /// Connect and authenticate within the target's `ConnectTimeout`, else
    /// `opts.connect_timeout` (russh has no connect timeout of its own).
    pub async fn connect(
        target: &Target,
        opts: &ConnectOptions,
    ) -> Result<Session, TransportError> {
        let limit = target.connect_timeout.unwrap_or(opts.connect_timeout);
        match tokio::time::timeout(limit, Self::connect_inner(target, opts)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout {
                what: format!("connecting to {}:{}", target.address, target.port),
                after: limit,
            }),
        }
    }

    async fn connect_inner(
        target: &Target,
        opts: &ConnectOptions,
    ) -> Result<Session, TransportError> {
        let policy = HostKeyPolicy::new(target, opts);
        // The config's ServerAliveInterval/CountMax, else `--keepalive` and OpenSSH's 3.
        let config = Arc::new(client::Config {
            preferred: policy.preferred(),
            inactivity_timeout: None,
            keepalive_interval: Some(target.server_alive_interval.unwrap_or(opts.keepalive)),
            keepalive_max: target.server_alive_count_max.map_or(3, |n| n as usize),
            nodelay: true,
            ..Default::default()
        });
        let problem = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            policy,
            known_hosts_lock: opts.known_hosts_lock.clone(),
            problem: problem.clone(),
        };
        let disconnect = Arc::new(Mutex::new(None));
        let handler = Client {
            verifier,
            disconnect: disconnect.clone(),
        };
        let addr = format!("{}:{}", target.address, target.port);
        let (jump, result) = match &target.jump {
            None => {
                let stream = tokio::net::TcpStream::connect((target.address.as_str(), target.port))
                    .await
                    .map_err(|source| TransportError::Connect {
                        addr: addr.clone(),
                        source,
                    })?;
                (None, client::connect_stream(config, stream, handler).await)
            }
            Some(jump_target) => {
                let jump = shared_jump(jump_target, opts).await?;
                let ch = jump
                    .handle
                    .channel_open_direct_tcpip(
                        target.address.clone(),
                        u32::from(target.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|e| TransportError::Jump {
                        via: jump_target.address.clone(),
                        to: addr.clone(),
                        transient: matches!(
                            e,
                            russh::Error::ChannelOpenFailure(
                                russh::ChannelOpenFailure::ConnectFailed
                                    | russh::ChannelOpenFailure::ResourceShortage
                            )
                        ),
                        message: e.to_string(),
                    })?;
                let r = client::connect_stream(config, ch.into_stream(), handler).await;
                (Some(jump), r)
            }
        };
        let mut handle = match result {
            Ok(h) => h,
            Err(e) => {
                if let Some(p) = problem.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(p);
                }
                return Err(TransportError::Ssh(e));
            }
        };
        authenticate(&mut handle, target, opts, &disconnect).await?;
        Ok(Session {
            handle,
            _jump: jump,
            target: target.clone(),
            command_timeout: opts.command_timeout,
            become_timeout: opts.connect_timeout,
            become_checked: tokio::sync::OnceCell::new(),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Run `command` by `/bin/sh` (as root through sudo when the target needs `become`),
    /// feeding `stdin` while reading, until the channel closes. sshd hands a command to the
    /// login user's shell, which may be zsh (no field splitting of `$x`) or any other: the
    /// login shell only `exec`s `/bin/sh -c` with the command quoted, as Ansible's `sh`
    /// shell plugin does, so every host runs promfleet's POSIX scripts alike.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<Bytes>,
    ) -> Result<ExecOutput, TransportError> {
        self.exec_keeping(command, stdin, None)
            .await
            .map_err(|p| p.error)
    }

    /// `exec`, keeping what the command printed before its connection was lost or its time
    /// ran out (`Partial`): enough to tell how far a script got.
    async fn exec_keeping(
        &self,
        command: &str,
        stdin: Option<Bytes>,
        marker: Marker<'_>,
    ) -> Result<ExecOutput, Partial> {
        if !self.target.become_root {
            return self.exec_raw(&in_posix_sh(command), stdin, marker).await;
        }
        // A refusal is kept for the connection: sudo is never asked again with a password it
        // rejected (lockouts), nor made to wait again for one.
        let verdict = self
            .become_checked
            .get_or_try_init(|| self.check_become())
            .await?;
        if let Err(refusal) = verdict {
            return Err(TransportError::from(refusal.clone()).into());
        }
        match &self.target.become_password {
            None => {
                self.exec_raw(&sudo::without_password(command), stdin, marker)
                    .await
            }
            Some(pw) => {
                let stdin = sudo::stdin_with_password(pw, stdin);
                let mut out = self
                    .exec_raw(&sudo::with_password(command), Some(stdin), marker)
                    .await?;
                sudo::strip_prompts(&mut out.stderr);
                Ok(out)
            }
        }
    }

    /// Prove once per connection that sudo works (`sudo -n true`, or `sudo -k -S true` fed the
    /// password line and then EOF, so sudo cannot wait for another attempt), within the
    /// connect timeout: otherwise every become command would fail with sudo's own exit 1,
    /// indistinguishable from the command's, and no hint why — and a wrong password would be
    /// tried again by every command. `Err` is a transport failure (not kept: a new
    /// connection checks again); `Ok(Err)` is sudo's refusal.
    async fn check_become(&self) -> Result<Result<(), BecomeRefused>, TransportError> {
        let (user, host) = (&self.target.user, &self.target.name);
        let (command, stdin) = sudo::check(self.target.become_password.as_ref());
        let limit = self.become_timeout;
        let out = match tokio::time::timeout(limit, self.exec_raw(&command, stdin, None)).await {
            Ok(r) => r.map_err(|p| p.error)?,
            Err(_) => {
                return Ok(Err(BecomeRefused {
                    what: format!(
                        "become: sudo for {user} on {host} did not finish within {}s",
                        limit.as_secs_f32()
                    ),
                    message: "sudo's authentication hangs (PAM, LDAP?) — fix sudo on the host, or raise --connect-timeout".into(),
                }));
            }
        };
        if out.success() {
            return Ok(Ok(()));
        }
        let refusal = match &self.target.become_password {
            None => BecomeRefused {
                what: format!("become: {user} cannot run sudo without a password on {host}"),
                message: format!(
                    "{} — give {user} passwordless sudo (NOPASSWD), give its password \
                     (--ask-become-pass/-K, the `become_password` secret or \
                     `ansible_become_password` in the inventory), or turn off `become` for this host",
                    out.short_error()
                ),
            },
            Some(pw) if sudo::prompts(&out.stderr) > 1 => BecomeRefused {
                what: format!("become: sudo rejected the password of {user} on {host}"),
                message: format!(
                    "the password from {} is wrong for {user} — correct it (a per-host \
                     `ansible_become_password` wins over -K and the `become_password` secret)",
                    pw.source()
                ),
            },
            Some(_) => {
                let mut out = out;
                sudo::strip_prompts(&mut out.stderr);
                BecomeRefused {
                    what: format!("become: {user} cannot run sudo on {host}"),
                    message: format!(
                        "{} — give {user} sudo rights on the host, or turn off `become` for this host",
                        out.short_error()
                    ),
                }
            }
        };
        Ok(Err(refusal))
    }

    /// Run `command` on a new channel, keeping the first and last `output::KEEP` bytes of
    /// stdout and stderr (see `Capture`), within the command timeout. A command that outlives it is never
    /// waited for again: its process group gets SIGTERM (the SSH "signal" request, which sshd
    /// turns into `killpg` as the login user) and the channel is closed.
    async fn exec_raw(
        &self,
        command: &str,
        stdin: Option<Bytes>,
        marker: Marker<'_>,
    ) -> Result<ExecOutput, Partial> {
        let deadline = tokio::time::Instant::now() + self.command_timeout;
        let opened = tokio::time::timeout_at(deadline, async {
            let channel = self.handle.channel_open_session().await?;
            channel.exec(true, command).await?;
            Ok::<_, TransportError>(channel)
        })
        .await;
        let channel = match opened {
            Ok(r) => r?,
            Err(_) => return Err(self.command_timed_out().into()),
        };
        let (mut read, write) = channel.split();
        let write = Arc::new(write);
        // Write stdin concurrently with reading: a command that prints while it reads would
        // otherwise fill the window in both directions and deadlock.
        let writer = {
            let write = write.clone();
            tokio::spawn(async move {
                if let Some(data) = stdin {
                    write.data(&data[..]).await?;
                }
                write.eof().await
            })
        };
        let mut out = ExecOutput::default();
        // exit-status can arrive before the last data: drain until the channel closes.
        let drained = tokio::time::timeout_at(deadline, async {
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        out.stdout.push(&data);
                        if let Some((prefix, seen)) = marker
                            && out.stdout.kept()[0].starts_with(prefix)
                        {
                            seen.store(true, Ordering::SeqCst);
                        }
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.push(&data),
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    _ => {}
                }
            }
        })
        .await;
        if drained.is_err() {
            writer.abort();
            // Bounded: a wedged connection must not hold the host past its deadline.
            let _ = tokio::time::timeout(STOP_GRACE, async {
                let _ = write.signal(Sig::TERM).await;
                let _ = write.close().await;
            })
            .await;
            return Err(Partial {
                error: self.command_timed_out(),
                output: out,
            });
        }
        if out.status.is_none() && self.handle.is_closed() {
            // The connection died under the command: the host is unreachable (a step safe to
            // repeat is retried on a new connection; a command is not, it may have run).
            return Err(Partial {
                error: TransportError::Lost {
                    host: self.target.name.clone(),
                },
                output: out,
            });
        }
        match writer.await {
            Ok(Ok(())) => {}
            // The command may exit without reading its input (e.g. `true`): not an error.
            Ok(Err(_)) => {}
            Err(e) => {
                return Err(TransportError::Remote {
                    what: "stdin writer".into(),
                    message: e.to_string(),
                }
                .into());
            }
        }
        Ok(out)
    }

    fn command_timed_out(&self) -> TransportError {
        TransportError::CommandTimeout {
            host: self.target.name.clone(),
            after: self.command_timeout,
        }
    }

    /// Write `content` to `dest` atomically: compared first (equal content and mode → no
    /// write), else written to a temp file in the same directory, the previous version kept as
    /// `<dest>.prev`, then renamed over `dest`. One round trip.
    pub async fn upload(
        &self,
        dest: &str,
        content: Bytes,
        mode: u32,
    ) -> Result<Upload, TransportError> {
        self.upload_owned(dest, content, mode, None).await
    }

    /// `upload`, and the file belongs to `owner` (`user`, `user:group`, `:group`; names or
    /// ids; needs the right to chown, usually `become`). The owner is part of "unchanged".
    pub async fn upload_owned(
        &self,
        dest: &str,
        content: Bytes,
        mode: u32,
        owner: Option<&str>,
    ) -> Result<Upload, TransportError> {
        let script = upload_script(dest, mode, owner);
        let out = self.exec(&script, Some(content)).await?;
        read_answer(out, dest, false).map(|(up, _)| up)
    }

    /// `upload_owned`, then `then` after the rename when the file changed, in the same round
    /// trip (`Transport::upload_then`).
    pub async fn upload_then(
        &self,
        dest: &str,
        content: Bytes,
        mode: u32,
        owner: Option<&str>,
        then: &str,
        written: &AtomicBool,
    ) -> Result<(Upload, Option<AfterWrite>), TransportError> {
        let script = upload_then_script(dest, mode, owner, then);
        let marker = Some((&b"changed\n"[..], written));
        match self.exec_keeping(&script, Some(content), marker).await {
            Ok(out) => read_answer(out, dest, true),
            // Cut off or out of time after the upload said `changed`: the write is done, and
            // the failure is `then`'s (as if it had run on a channel of its own).
            Err(p) if p.output.stdout.kept()[0].starts_with(b"changed\n") => {
                Ok((Upload::Changed, Some(Err(p.error))))
            }
            Err(p) => Err(p.error),
        }
    }

    /// Compare `dest` with content of the given SHA-256 without writing: `Some(true)` equal,
    /// `Some(false)` differs or missing.
    pub async fn file_matches(&self, dest: &str, sha256: &str) -> Result<bool, TransportError> {
        let cmd = Script::new()
            .path_var("p", dest)
            .fragment(
                r#"if [ -f "$p" ]; then sha256sum < "$p" | cut -d' ' -f1; else echo missing; fi"#,
            )
            .build();
        let out = self.exec(&cmd, None).await?;
        Ok(out.success() && out.stdout_str().trim() == sha256)
    }

    /// The bounded content of a remote regular file; `None` if there is none.
    async fn cat(&self, path: &str) -> Result<Option<Capture>, TransportError> {
        let cmd = Script::new()
            .path_var("p", path)
            .fragment(r#"if [ -f "$p" ]; then cat -- "$p"; else exit 3; fi"#)
            .build();
        let out = self.exec(&cmd, None).await?;
        match out.status {
            Some(0) => Ok(Some(out.stdout)),
            Some(3) => Ok(None),
            _ => Err(TransportError::Remote {
                what: format!("reading {path}"),
                message: out.short_error(),
            }),
        }
    }

    /// Close the connection politely.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

impl Transport for Session {
    fn target(&self) -> &Target {
        &self.target
    }

    fn exec<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<Bytes>,
    ) -> BoxFuture<'a, Result<ExecOutput, TransportError>> {
        Box::pin(Session::exec(self, command, stdin))
    }

    fn upload_owned<'a>(
        &'a self,
        dest: &'a str,
        content: Bytes,
        mode: u32,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Upload, TransportError>> {
        Box::pin(Session::upload_owned(self, dest, content, mode, owner))
    }

    fn upload_then<'a>(
        &'a self,
        dest: &'a str,
        content: Bytes,
        mode: u32,
        owner: Option<&'a str>,
        then: &'a str,
        written: &'a AtomicBool,
    ) -> BoxFuture<'a, Result<(Upload, Option<AfterWrite>), TransportError>> {
        Box::pin(Session::upload_then(
            self, dest, content, mode, owner, then, written,
        ))
    }

    fn file_matches<'a>(
        &'a self,
        dest: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>> {
        Box::pin(Session::file_matches(self, dest, sha256))
    }

    fn cat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Capture>, TransportError>> {
        Box::pin(Session::cat(self, path))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(Session::close(self))
    }
}

/// Connecting over SSH: the inventory's settings, then OpenSSH's resolution of
/// ~/.ssh/config (`ssh -G`), then the run's options.
pub struct Ssh {
    pub opts: ConnectOptions,
    pub config: SshConfig,
    /// `--user`: the login user when neither the inventory nor the ssh config names one.
    pub user: Option<String>,
}

impl Connect for Ssh {
    /// The host's inventory sudo password wins over the run's (as in Ansible, where host
    /// variables beat `--ask-become-pass`).
    fn target<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Result<Target, TransportError>> {
        Box::pin(async move {
            let mut t = self.config.target(host, self.user.as_deref()).await?;
            t.become_password = host
                .ssh
                .become_password
                .clone()
                .or_else(|| self.opts.become_password.clone());
            Ok(t)
        })
    }

    fn connect<'a>(
        &'a self,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, TransportError>> {
        Box::pin(async move {
            let s = Session::connect(target, &self.opts).await?;
            Ok(Arc::new(s) as Arc<dyn Transport>)
        })
    }
}

/// The bastion's session for `jump`, connecting it on first use (or again if it died).
async fn shared_jump(jump: &Target, opts: &ConnectOptions) -> Result<Arc<Session>, TransportError> {
    let slot = opts
        .jumps
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(chain_key(jump))
        .or_default()
        .clone();
    // Held across the connect: hosts behind a new bastion wait for its one login. One lock
    // per bastion, so a chain (this bastion's own bastion) does not wait on itself.
    let mut slot = slot.lock().await;
    if let Some(s) = slot.as_ref()
        && !s.handle.is_closed()
    {
        return Ok(s.clone());
    }
    // The bastion's own ConnectTimeout (or the run's) bounds its login.
    let s = Arc::new(Box::pin(Session::connect(jump, opts)).await?);
    *slot = Some(s.clone());
    Ok(s)
}

/// `user@host:port` of a bastion and of every hop before it: one bastion reached by two
/// different chains is two connections.
fn chain_key(t: &Target) -> String {
    let me = format!("{}@{}:{}", t.user, t.address, t.port);
    match &t.jump {
        Some(j) => format!("{} via {me}", chain_key(j)),
        None => me,
    }
}
