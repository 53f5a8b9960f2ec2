//! Transport errors, classified once: transient (worth a retry) or permanent, and whether
//! the host was reached (`is_unreachable`; the task's error kind is built from it in
//! `modules::TaskError`).

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
    /// A step that is safe to repeat (connecting) took too long.
    #[error("{what} timed out after {}s", .after.as_secs_f32())]
    Timeout { what: String, after: Duration },
    /// A remote command outlived `--command-timeout`. It may have done part of its work, so
    /// it is a failure of the task, never a reason to run it again.
    #[error(
        "command on {host} timed out after {}s (--command-timeout): promfleet sent SIGTERM to its process group and closed the channel; it was not run again",
        .after.as_secs_f32()
    )]
    CommandTimeout { host: String, after: Duration },
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
        "HOST KEY CHANGED for {host}: it offers {fingerprint}, which does not match the {known} key at {}:{line} — possible man-in-the-middle. Verify the new key out of band (e.g. `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the host's console), then remove the old line with `ssh-keygen -R '{host}' -f {}` and rerun with --accept-new-host-keys",
        .known_hosts.display(), .known_hosts.display()
    )]
    HostKeyChanged {
        /// The name known_hosts is searched under (what `ssh-keygen -R` takes).
        host: String,
        fingerprint: String,
        /// Algorithm of the key on the offending line.
        known: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error(
        "REVOKED host key for {host} ({fingerprint}): {}:{line} marks it @revoked — someone may be impersonating the host with a stolen key; it is never accepted",
        .known_hosts.display()
    )]
    HostKeyRevoked {
        host: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error(
        "host key of {host} ({fingerprint}) is not trusted: {}:{line} names a @cert-authority for it, but {reason}. promfleet never records a plain key for a host a CA vouches for — give the host a valid certificate (HostCertificate in sshd_config, signed with `ssh-keygen -s ca -h -n {principal}`) or remove that line",
        .known_hosts.display()
    )]
    HostKeyNotCertified {
        host: String,
        fingerprint: String,
        principal: String,
        // Boxed: keeps TransportError small (clippy::result_large_err).
        reason: Box<str>,
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
    /// The ProxyJump host would not open a channel to the target (its sshd could not connect
    /// to it, or forbids forwarding): the target cannot be reached from here.
    #[error("ProxyJump {via} → {to}: {message}")]
    Jump {
        via: String,
        to: String,
        message: String,
        /// The bastion could not connect (or was short of resources), as opposed to refusing.
        transient: bool,
    },
    /// The host answered and refused what was asked (a failed remote script, sudo's refusal).
    #[error("{what}: {message}")]
    Remote { what: String, message: String },
}

impl TransportError {
    /// Worth another attempt: the network or the peer may recover (refused, reset, connect
    /// timeout). Authentication, host keys and bad keys are permanent: retrying cannot fix
    /// them; a command timeout is permanent: the command may have run (see `CommandTimeout`).
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Connect { .. }
            | TransportError::Timeout { .. }
            | TransportError::Lost { .. } => true,
            TransportError::Jump { transient, .. } => *transient,
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

    /// True when the host could not be reached or spoken to at all (recap: `unreachable`):
    /// connecting, the host key, logging in, a lost connection. A host that answered and
    /// refused, or whose command ran too long, was reached: its task failed. Every variant is
    /// named, so a new one must be classified here.
    pub fn is_unreachable(&self) -> bool {
        match self {
            TransportError::Connect { .. }
            | TransportError::Timeout { .. }
            | TransportError::HostKeyUnknown { .. }
            | TransportError::HostKeyChanged { .. }
            | TransportError::HostKeyRevoked { .. }
            | TransportError::HostKeyNotCertified { .. }
            | TransportError::HostKeyRecord { .. }
            | TransportError::Auth { .. }
            | TransportError::TooManyAuthFailures { .. }
            | TransportError::Config { .. }
            | TransportError::Key { .. }
            | TransportError::Ssh(_)
            | TransportError::Lost { .. }
            | TransportError::Jump { .. } => true,
            TransportError::CommandTimeout { .. } | TransportError::Remote { .. } => false,
        }
    }
}
