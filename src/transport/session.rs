//! One SSH connection per host, reused by every task of a run: connect, authenticate, exec,
//! upload. Moves bytes only; what to run is decided by `modules`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use russh::client::{self, Handle};
use russh::{ChannelMsg, Disconnect};

use super::auth::authenticate;
use super::keys::KeyStore;
use super::quote::{remote_path, sh_quote};
use super::upload::upload_script;
use super::verify::Verifier;
use super::{Target, TransportError};

/// One bastion's shared session, connected by whoever needs it first.
pub type JumpSlot = Arc<tokio::sync::Mutex<Option<Arc<Session>>>>;

/// Run-wide connection settings (parsed once from the CLI).
#[derive(Clone)]
pub struct ConnectOptions {
    pub known_hosts: PathBuf,
    pub accept_new_host_keys: bool,
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
}

impl ConnectOptions {
    pub fn new(known_hosts: PathBuf) -> Self {
        ConnectOptions {
            known_hosts,
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(600),
            keepalive: Duration::from_secs(15),
            keys: Arc::new(KeyStore::default()),
            known_hosts_lock: Arc::new(Mutex::new(())),
            agent: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
            jumps: Arc::default(),
        }
    }
}

/// The output of one remote command.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Exit status; `None` if the command was killed by a signal or the channel closed early.
    pub status: Option<u32>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// A one-line cause for reports: last non-empty stderr line, else stdout's.
    pub fn short_error(&self) -> String {
        let pick = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        };
        let code = match self.status {
            Some(c) => format!("exit {c}"),
            None => "killed".to_string(),
        };
        match pick(&self.stderr).or_else(|| pick(&self.stdout)) {
            Some(l) => format!("{code}: {l}"),
            None => code,
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
    // Set once `sudo -n` was seen to work on this connection (become targets only).
    become_checked: tokio::sync::OnceCell<()>,
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
        // The config's ServerAliveInterval/CountMax, else `--keepalive` and OpenSSH's 3.
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(target.server_alive_interval.unwrap_or(opts.keepalive)),
            keepalive_max: target.server_alive_count_max.map_or(3, |n| n as usize),
            nodelay: true,
            ..Default::default()
        });
        let problem = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            host: target.address.clone(),
            port: target.port,
            opts: opts.clone(),
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
                    .map_err(|e| TransportError::Remote {
                        what: format!("ProxyJump {} → {addr}", jump_target.address),
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
            become_checked: tokio::sync::OnceCell::new(),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Run `command` through the login shell (wrapped in `sudo -n` when the target needs
    /// `become`), feeding `stdin` while reading, until the channel closes.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<Bytes>,
    ) -> Result<ExecOutput, TransportError> {
        let wrapped;
        let command = if self.target.become_root {
            self.become_checked
                .get_or_try_init(|| self.check_become())
                .await?;
            wrapped = format!("sudo -n sh -c {}", sh_quote(command));
            wrapped.as_str()
        } else {
            command
        };
        self.exec_limited(command, stdin).await
    }

    async fn exec_limited(
        &self,
        command: &str,
        stdin: Option<Bytes>,
    ) -> Result<ExecOutput, TransportError> {
        let limit = self.command_timeout;
        match tokio::time::timeout(limit, self.exec_raw(command, stdin)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout {
                what: format!("command on {}", self.target.name),
                after: limit,
            }),
        }
    }

    /// Prove once per connection that `sudo -n` works: otherwise every become command would
    /// fail with sudo's own exit 1, indistinguishable from the command's, and no hint why.
    async fn check_become(&self) -> Result<(), TransportError> {
        let out = self.exec_limited("sudo -n true", None).await?;
        if out.success() {
            return Ok(());
        }
        Err(TransportError::Remote {
            what: format!(
                "become: {} cannot run sudo without a password on {}",
                self.target.user, self.target.name
            ),
            message: format!(
                "{} — give {} passwordless sudo (NOPASSWD) or turn off `become` for this host",
                out.short_error(),
                self.target.user
            ),
        })
    }

    async fn exec_raw(
        &self,
        command: &str,
        stdin: Option<Bytes>,
    ) -> Result<ExecOutput, TransportError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, command).await?;
        let (mut read, write) = channel.split();
        // Write stdin concurrently with reading: a command that prints while it reads would
        // otherwise fill the window in both directions and deadlock.
        let writer = tokio::spawn(async move {
            if let Some(data) = stdin {
                write.data(&data[..]).await?;
            }
            write.eof().await?;
            Ok::<_, russh::Error>(write)
        });
        let mut out = ExecOutput::default();
        // exit-status can arrive before the last data: drain until the channel closes.
        while let Some(msg) = read.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                _ => {}
            }
        }
        if out.status.is_none() && self.handle.is_closed() {
            // The connection died under the command: worth a retry on a new connection.
            return Err(TransportError::Lost {
                host: self.target.name.clone(),
            });
        }
        match writer.await {
            Ok(Ok(_)) => {}
            // The command may exit without reading its input (e.g. `true`): not an error.
            Ok(Err(_)) => {}
            Err(e) => {
                return Err(TransportError::Remote {
                    what: "stdin writer".into(),
                    message: e.to_string(),
                });
            }
        }
        Ok(out)
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
        let stdout = out.stdout_str();
        match (out.status, stdout.trim()) {
            (Some(0), "unchanged") => Ok(Upload::Unchanged),
            (Some(0), "changed") => Ok(Upload::Changed),
            _ => Err(TransportError::Remote {
                what: format!("writing {dest}"),
                message: out.short_error(),
            }),
        }
    }

    /// Compare `dest` with content of the given SHA-256 without writing: `Some(true)` equal,
    /// `Some(false)` differs or missing.
    pub async fn file_matches(&self, dest: &str, sha256: &str) -> Result<bool, TransportError> {
        let p = remote_path(dest);
        let cmd =
            format!("if [ -f {p} ]; then sha256sum < {p} | cut -d' ' -f1; else echo missing; fi");
        let out = self.exec(&cmd, None).await?;
        Ok(out.success() && out.stdout_str().trim() == sha256)
    }

    /// Read a remote file (for `--diff`); `None` if it does not exist.
    pub async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
        let p = remote_path(path);
        let out = self
            .exec(
                &format!("if [ -f {p} ]; then cat {p}; else exit 3; fi"),
                None,
            )
            .await?;
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
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
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
