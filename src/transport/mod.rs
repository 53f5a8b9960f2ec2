//! The connector: an SSH session per host (russh), with OpenSSH's conventions —
//! `~/.ssh/config`, ssh-agent, known_hosts checking. It only moves bytes and runs commands;
//! it does not know about tasks or modules.

mod auth;
mod command;
mod error;
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
pub use output::{Capture, ExecOutput};
pub use quote::{remote_path, sh_quote};
pub use session::{ConnectOptions, Session, Upload};
pub use ssh_config::{DEFAULT_PATH as SSH_CONFIG_DEFAULT, SshConfig};
pub use sudo::{BecomePassword, PasswordSource};

use std::path::PathBuf;
use std::time::Duration;

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
