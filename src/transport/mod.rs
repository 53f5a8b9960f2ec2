//! The connector: an SSH session per host (russh), with OpenSSH's conventions —
//! `~/.ssh/config`, ssh-agent, known_hosts checking. It only moves bytes and runs commands;
//! it does not know about tasks or modules.

mod error;
pub mod keys;
mod quote;
mod session;
mod ssh_config;

pub use error::TransportError;
pub use quote::{remote_path, sh_quote};
pub use session::{ConnectOptions, ExecOutput, Session, Upload};
pub use ssh_config::SshConfigFile;

use std::path::PathBuf;

/// Where and how to reach one host, after inventory and ~/.ssh/config are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Inventory hostname (for messages).
    pub name: String,
    /// Address to connect to (ip or DNS name).
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Key files to try, in order (after the agent's keys).
    pub keys: Vec<PathBuf>,
    /// True when the keys were named explicitly (inventory or IdentityFile): a broken one is an
    /// error instead of being skipped.
    pub keys_explicit: bool,
    /// ProxyJump host, if any.
    pub jump: Option<Box<Target>>,
    /// Wrap commands in `sudo -n`.
    pub become_root: bool,
}
