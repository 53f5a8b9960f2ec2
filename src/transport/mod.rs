//! How promfleet reaches a host: the `Transport` trait (run a command, write a file
//! atomically, read or compare one) and `Connect` (a host → a connected `Transport`), as
//! pyinfra's connectors: they only move bytes and run commands; what to run is the modules'
//! business, and they know no task or module. Two implementations: `Session`, SSH (russh) with
//! OpenSSH's conventions — `~/.ssh/config`, ssh-agent, known_hosts checking — and `fake`, hosts
//! in memory with scripted replies, for unit tests of the executor and modules (no sshd).

mod auth;
mod command;
mod error;
pub mod fake;
pub mod keys;
pub mod known_hosts;
mod output;
mod quote;
mod session;
mod ssh_config;
mod sudo;
mod upload;
mod verify;

pub use command::{Cmd, Script};
pub use error::TransportError;
pub use output::{Capture, ExecOutput, KEEP as OUTPUT_KEEP};
pub use quote::{remote_path, sh_quote};
pub use session::{ConnectOptions, Session, Ssh, Upload, Warn};
pub use ssh_config::{DEFAULT_PATH as SSH_CONFIG_DEFAULT, HostnameResolver, SshConfig};
pub use sudo::{BecomePassword, PasswordSource};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::inventory::Host;

/// What the script `Transport::upload_then` ran after a changed write came to: its output
/// and exit status, or the failure that hit it — the connection lost or the command timeout
/// — as a command of its own would have met it.
pub type AfterWrite = Result<ExecOutput, TransportError>;

/// One connected host: moves bytes, runs commands. Object-safe (boxed futures) so the
/// executor holds `Arc<dyn Transport>` and runs the same code over SSH and over the fake.
pub trait Transport: Send + Sync {
    /// Where this transport is connected (the inventory name is `target().name`).
    fn target(&self) -> &Target;

    /// Run `command` by `/bin/sh`, whatever the login shell (as root when the target needs
    /// `become`), feeding `stdin`. A command that outlives the command timeout is
    /// `TransportError::CommandTimeout` (it may have run: never run it again); one whose
    /// connection died is `TransportError::Lost`.
    fn exec<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<Bytes>,
    ) -> BoxFuture<'a, Result<ExecOutput, TransportError>>;

    /// Write `content` to `dest` atomically with `mode` (and `owner`, `user[:group]`): no
    /// write when content, mode and owner already match; else the previous version is kept
    /// as `<dest>.prev`.
    fn upload_owned<'a>(
        &'a self,
        dest: &'a str,
        content: Bytes,
        mode: u32,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Upload, TransportError>>;

    /// `upload_owned` without an owner.
    fn upload<'a>(
        &'a self,
        dest: &'a str,
        content: Bytes,
        mode: u32,
    ) -> BoxFuture<'a, Result<Upload, TransportError>> {
        self.upload_owned(dest, content, mode, None)
    }

    /// `upload_owned`, then — only when the file changed — the script `then`, by `/bin/sh`
    /// after the rename, in the same round trip: work that must follow a write (compose's
    /// `up -d` after its compose file) costs no channel of its own. `None` when the file was
    /// unchanged (`then` did not run); else what `then` came to (`AfterWrite`: the write is
    /// done whatever it is). An error is the upload's: the write did not finish, or the
    /// connection failed before it said so. `written` is set as soon as the write is done,
    /// while `then` still runs (for a caller whose wait is abandoned midway).
    fn upload_then<'a>(
        &'a self,
        dest: &'a str,
        content: Bytes,
        mode: u32,
        owner: Option<&'a str>,
        then: &'a str,
        written: &'a std::sync::atomic::AtomicBool,
    ) -> BoxFuture<'a, Result<(Upload, Option<AfterWrite>), TransportError>>;

    /// Whether `dest` is a regular file whose SHA-256 is `sha256` (missing → false).
    fn file_matches<'a>(
        &'a self,
        dest: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>>;

    /// The bounded content of a remote regular file (`Capture`'s bound, as every output);
    /// `None` if there is none.
    fn cat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Capture>, TransportError>>;

    /// Read a remote file (for `--diff`); `None` if it does not exist. A file larger than
    /// the output bound comes back as its head and tail with the "… bytes elided" line.
    fn read_file<'a>(
        &'a self,
        path: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, TransportError>> {
        Box::pin(async move {
            Ok(self
                .cat(path)
                .await?
                .map(|c| c.complete().unwrap_or_else(|| c.text().into_bytes())))
        })
    }

    /// Read a remote file byte for byte, for content that is written back (rollback):
    /// a file larger than the output bound is an error, never its head and tail.
    fn read_file_exact<'a>(
        &'a self,
        path: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, TransportError>> {
        Box::pin(async move {
            let Some(c) = self.cat(path).await? else {
                return Ok(None);
            };
            c.complete().map(Some).ok_or_else(|| TransportError::Remote {
                what: format!("reading {path}"),
                message: format!(
                    "{} bytes, more than promfleet keeps of a command's output ({} KiB); restore it by hand",
                    c.total(),
                    2 * output::KEEP / 1024
                ),
            })
        })
    }

    /// Close the connection politely (errors are of no interest by then).
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// How a host of the inventory becomes a connected `Transport`: the executor's `Connector`
/// (sessions reused per run, connect retries, handshake limit) calls it, so tests inject fake
/// hosts here (`fake::FakeFleet`); runs use `Ssh`.
pub trait Connect: Send + Sync {
    /// Where and how to reach `host` (for SSH: inventory, then ~/.ssh/config).
    fn target<'a>(&'a self, host: &'a Host) -> BoxFuture<'a, Result<Target, TransportError>>;

    /// One connection attempt (the caller retries transient failures).
    fn connect<'a>(
        &'a self,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, TransportError>>;
}

/// What to do with a host key that is not in any known_hosts file (OpenSSH's
/// `StrictHostKeyChecking`). A *changed* key is refused whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown keys (OpenSSH `yes`, and `ask` in batch mode).
    #[default]
    Yes,
    /// Record unknown keys and connect (`accept-new`, `--accept-new-host-keys`).
    AcceptNew,
    /// OpenSSH `no`.
    No,
}

/// Where and how to reach one host, after inventory and ~/.ssh/config are applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    /// Inventory hostname (for messages).
    pub name: String,
    /// Address to connect to (ip or DNS name).
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Key files to try, in order (OpenSSH's IdentityFile list, expanded; missing ones are
    /// skipped).
    pub keys: Vec<PathBuf>,
    /// True when the keys were named explicitly (inventory or IdentityFile): one that exists
    /// but cannot be used is an error instead of being skipped.
    pub keys_explicit: bool,
    /// ProxyJump host, if any (`ProxyJump a,b`: `b`, whose own `jump` is `a`).
    pub jump: Option<Box<Target>>,
    /// Run commands as root through sudo: `sudo -n`, or `sudo -S` with `become_password`.
    pub become_root: bool,
    /// The sudo password for this host (inventory, else the run's), if any.
    pub become_password: Option<BecomePassword>,
    /// Name looked up in (and recorded to) known_hosts instead of the address (`HostKeyAlias`).
    pub host_key_alias: Option<String>,
    /// `UserKnownHostsFile` when the config sets one (OpenSSH's default counts as unset);
    /// empty → the run's `--known-hosts` file.
    pub user_known_hosts: Vec<PathBuf>,
    /// `GlobalKnownHostsFile` as ssh resolves it (set or default); empty (no `ssh` binary) →
    /// OpenSSH's defaults.
    pub global_known_hosts: Vec<PathBuf>,
    /// `StrictHostKeyChecking` when the config sets it; `None` (also for `ask`, OpenSSH's
    /// default) → the run's setting.
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    /// `HashKnownHosts` (Debian's /etc/ssh/ssh_config says yes): record new keys hashed.
    pub hash_known_hosts: bool,
    /// `IdentitiesOnly`: offer only `keys`, not every key of the agent.
    pub identities_only: bool,
    /// `ConnectTimeout` from the config; `None` → the run's `--connect-timeout`.
    pub connect_timeout: Option<Duration>,
    /// `ServerAliveInterval` from the config; `None` → the run's `--keepalive`.
    pub server_alive_interval: Option<Duration>,
    /// `ServerAliveCountMax` from the config; `None` → 3.
    pub server_alive_count_max: Option<u32>,
}
