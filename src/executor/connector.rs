//! One SSH session per host for the whole run, opened on first use and reused by every task;
//! transient connect failures (refused, timeout, a handshake refused by MaxStartups) are
//! retried with backoff; authentication failures never are.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use super::retry::RetryPolicy;
use crate::inventory::Host;
use crate::transport::{ConnectOptions, Session, SshConfig, Target, TransportError};

/// A host's session, created on first use.
type Slot = Arc<Mutex<Option<Arc<Session>>>>;

/// Minimum attempts for handshakes the server dropped (see `Connector::budget`).
const HANDSHAKE_ATTEMPTS: u32 = 10;

pub struct Connector {
    opts: ConnectOptions,
    ssh_config: SshConfig,
    /// `--user`: the login user when neither the inventory nor the ssh config names one.
    user: Option<String>,
    retry: RetryPolicy,
    sessions: Mutex<HashMap<String, Slot>>,
    /// Handshakes in flight at once (`--max-handshakes`): keeps a burst of connections under
    /// a server's or bastion's MaxStartups.
    handshakes: tokio::sync::Semaphore,
}

impl Connector {
    pub fn new(
        opts: ConnectOptions,
        ssh_config: SshConfig,
        user: Option<String>,
        retry: RetryPolicy,
        max_handshakes: usize,
    ) -> Connector {
        Connector {
            opts,
            ssh_config,
            user,
            retry,
            sessions: Mutex::new(HashMap::new()),
            handshakes: tokio::sync::Semaphore::new(max_handshakes.max(1)),
        }
    }

    /// Where and how to reach `host` (OpenSSH's resolution of ~/.ssh/config, cached); its
    /// inventory's sudo password wins over the run's (as in Ansible, where host variables beat
    /// `--ask-become-pass`).
    pub async fn target(&self, host: &Host) -> Result<Target, TransportError> {
        let mut t = self.ssh_config.target(host, self.user.as_deref()).await?;
        t.become_password = host
            .ssh
            .become_password
            .clone()
            .or_else(|| self.opts.become_password.clone());
        Ok(t)
    }

    async fn slot(&self, host: &str) -> Slot {
        self.sessions
            .lock()
            .await
            .entry(host.to_string())
            .or_default()
            .clone()
    }

    /// The host's session, connecting (with retries) if needed. Returns attempts used.
    pub async fn session(&self, host: &Host) -> Result<(Arc<Session>, u32), TransportError> {
        let slot = self.slot(&host.name).await;
        let mut guard = slot.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok((s.clone(), 0));
        }
        let target = self.target(host).await?;
        let mut attempt = 1;
        loop {
            let result = {
                let _permit = self.handshakes.acquire().await;
                Session::connect(&target, &self.opts).await
            };
            match result {
                Ok(s) => {
                    let s = Arc::new(s);
                    *guard = Some(s.clone());
                    return Ok((s, attempt));
                }
                Err(e) if e.is_transient() && attempt < self.budget(&e) => {
                    tokio::time::sleep(self.retry.delay(attempt + 1)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Attempts allowed for this error. An authentication failure gets one: every retry is
    /// one more failed login in the server's log, which fail2ban counts, and retrying cannot
    /// fix a key. A handshake the server dropped (sshd past `MaxStartups`: reset or closed
    /// before the key exchange finished; authentication never yields `Ssh`) is back-pressure,
    /// not a host fault, so it gets a larger budget than other transient failures.
    fn budget(&self, e: &TransportError) -> u32 {
        match e {
            TransportError::Auth { .. } | TransportError::TooManyAuthFailures { .. } => 1,
            TransportError::Ssh(_) => self.retry.attempts.max(HANDSHAKE_ATTEMPTS),
            _ => self.retry.attempts,
        }
    }

    /// Close and forget a host's session once the run no longer needs it, so open
    /// connections (and remote sshd sessions, and our memory) stay O(forks), not O(hosts).
    pub async fn release(&self, host: &str) {
        let slot = self.sessions.lock().await.remove(host);
        if let Some(slot) = slot
            && let Some(s) = slot.lock().await.take()
            && let Ok(s) = Arc::try_unwrap(s)
        {
            s.close().await;
        }
    }

    /// Forget a host's session (after it broke) so the next use reconnects.
    pub async fn drop_session(&self, host: &str) {
        let slot = self.slot(host).await;
        slot.lock().await.take();
    }

    /// Close every session politely.
    pub async fn close_all(&self) {
        let all: Vec<_> = self.sessions.lock().await.drain().collect();
        for (_, slot) in all {
            if let Some(s) = slot.lock().await.take()
                && let Ok(s) = Arc::try_unwrap(s)
            {
                s.close().await;
            }
        }
    }
}
