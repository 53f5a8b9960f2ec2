//! Transport errors, classified as transient (worth a retry) or permanent.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} timed out after {}s", .after.as_secs_f32())]
    Timeout { what: String, after: Duration },
    #[error(
        "host key of {host} is not known ({fingerprint}) in {} — check it, then rerun with --accept-new-host-keys to record it (or add it with ssh-keyscan)",
        .known_hosts.display()
    )]
    HostKeyUnknown {
        host: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    #[error(
        "HOST KEY CHANGED for {host} ({fingerprint}): it does not match {}:{line} — possible man-in-the-middle; if the host was reinstalled, remove that line and verify the new key",
        .known_hosts.display()
    )]
    HostKeyChanged {
        host: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error("cannot record host key of {host} in {}: {message}", .known_hosts.display())]
    HostKeyRecord {
        host: String,
        known_hosts: PathBuf,
        message: String,
    },
    #[error(
        "authentication failed for {user}@{host} (tried: {tried}) — check the key in the inventory, ~/.ssh/config, or ssh-agent"
    )]
    Auth {
        user: String,
        host: String,
        tried: String,
    },
    #[error(
        "{user}@{host}: the server closed the connection after {offered} keys: too many authentication failures ({message}; tried: {tried}) — the ssh-agent offers every key it holds and sshd's MaxAuthTries stops counting before the right one: set `IdentitiesOnly yes` and the right `IdentityFile` for this host in ~/.ssh/config (or `ssh.key` in the inventory)"
    )]
    TooManyAuthFailures {
        user: String,
        host: String,
        offered: usize,
        message: String,
        tried: String,
    },
    #[error("ssh config for {host}: {message}")]
    Config { host: String, message: String },
    #[error("cannot use key {}: {message}", .path.display())]
    Key { path: PathBuf, message: String },
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
    #[error(
        "connection lost while running a command on {host} (the peer closed or stopped answering keepalives)"
    )]
    Lost { host: String },
    #[error("{what}: {message}")]
    Remote { what: String, message: String },
}

impl TransportError {
    /// Worth another attempt: the network or the peer may recover (refused, reset, timeout).
    /// Authentication, host keys and bad keys are permanent: retrying cannot fix them.
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Connect { .. }
            | TransportError::Timeout { .. }
            | TransportError::Lost { .. } => true,
            TransportError::Ssh(e) => matches!(
                e,
                russh::Error::IO(_)
                    | russh::Error::Disconnect
                    | russh::Error::ConnectionTimeout
                    | russh::Error::KeepaliveTimeout
                    | russh::Error::InactivityTimeout
                    | russh::Error::SendError
                    | russh::Error::RecvError
                    | russh::Error::HUP
            ),
            _ => false,
        }
    }

    /// True when the host could not be reached or spoken to at all (recap: `unreachable`).
    pub fn is_unreachable(&self) -> bool {
        !matches!(self, TransportError::Remote { .. })
    }
}
