//! One connection (`Transport`) per host for the whole run, opened on first use and reused by
//! every task; transient connect failures (refused, timeout, a handshake refused by
//! MaxStartups) are retried with backoff; authentication failures never are. How a host is
//! reached is the `Connect` it is given: SSH in a run, `transport::fake` in unit tests.
//! [`Deferred`] is a host's session as a `Transport` that connects only when first used.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::Mutex;

use super::retry::RetryPolicy;
use crate::inventory::Host;
use crate::transport::{
    Capture, Connect, ConnectOptions, ExecOutput, Ssh, SshConfig, Target, Transport,
    TransportError, Upload,
};

/// A host's session, created on first use.
type Slot = Arc<Mutex<Option<Arc<dyn Transport>>>>;

/// Minimum attempts for handshakes the server dropped (see `Connector::budget`).
const HANDSHAKE_ATTEMPTS: u32 = 10;

pub struct Connector {
    connect: Arc<dyn Connect>,
    retry: RetryPolicy,
    sessions: Mutex<HashMap<String, Slot>>,
    /// Handshakes in flight at once (`--max-handshakes`): keeps a burst of connections under
    /// a server's or bastion's MaxStartups.
    handshakes: tokio::sync::Semaphore,
}

impl Connector {
    /// Connecting over SSH (`user`: `--user`).
    pub fn new(
        opts: ConnectOptions,
        ssh_config: SshConfig,
        user: Option<String>,
        retry: RetryPolicy,
        max_handshakes: usize,
    ) -> Connector {
        let ssh = Ssh {
            opts,
            config: ssh_config,
            user,
        };
        Connector::with(Arc::new(ssh), retry, max_handshakes)
    }

    /// Connecting through `connect` (tests: `transport::fake::FakeFleet`).
    pub fn with(connect: Arc<dyn Connect>, retry: RetryPolicy, max_handshakes: usize) -> Connector {
        Connector {
            connect,
            retry,
            sessions: Mutex::new(HashMap::new()),
            handshakes: tokio::sync::Semaphore::new(max_handshakes.max(1)),
        }
    }

    /// Where and how to reach `host` (for SSH: OpenSSH's resolution of ~/.ssh/config, cached).
    pub async fn target(&self, host: &Host) -> Result<Target, TransportError> {
        self.connect.target(host).await
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
    pub async fn session(&self, host: &Host) -> Result<(Arc<dyn Transport>, u32), TransportError> {
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
                self.connect.connect(&target).await
            };
            match result {
                Ok(s) => {
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
        {
            close_if_last(s).await;
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
            if let Some(s) = slot.lock().await.take() {
                close_if_last(s).await;
            }
        }
    }
}

/// Close a session taken out of its slot unless a task still holds it (that task's use
/// ends with the last clone, which drops the connection).
async fn close_if_last(s: Arc<dyn Transport>) {
    if Arc::strong_count(&s) == 1 {
        s.close().await;
    }
}

/// A host's session opened on first use instead of up front: for a host whose next pass may
/// need no round trip at all (preflight judged it unchanged over a session it then closed,
/// and kept its answers: `facts::Kept::Detached`). Every call goes through the connector, so
/// the session is the host's one shared session, connected with the connector's retries the
/// first time something is asked, and released or closed with the others.
pub struct Deferred {
    connector: Arc<Connector>,
    host: Host,
    target: Target,
}

impl Deferred {
    pub fn new(connector: Arc<Connector>, host: Host, target: Target) -> Deferred {
        Deferred {
            connector,
            host,
            target,
        }
    }

    async fn session(&self) -> Result<Arc<dyn Transport>, TransportError> {
        Ok(self.connector.session(&self.host).await?.0)
    }
}

impl Transport for Deferred {
    fn target(&self) -> &Target {
        &self.target
    }

    fn exec<'a>(
        &'a self,
        command: &'a str,
        stdin: Option<Bytes>,
    ) -> BoxFuture<'a, Result<ExecOutput, TransportError>> {
        Box::pin(async move { self.session().await?.exec(command, stdin).await })
    }

    fn upload_owned<'a>(
        &'a self,
        dest: &'a str,
        content: Bytes,
        mode: u32,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Upload, TransportError>> {
        Box::pin(async move {
            self.session()
                .await?
                .upload_owned(dest, content, mode, owner)
                .await
        })
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
        Box::pin(async move {
            self.session()
                .await?
                .upload_then(dest, content, mode, owner, then, written)
                .await
        })
    }

    fn file_matches<'a>(
        &'a self,
        dest: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<bool, TransportError>> {
        Box::pin(async move { self.session().await?.file_matches(dest, sha256).await })
    }

    fn cat<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Capture>, TransportError>> {
        Box::pin(async move { self.session().await?.cat(path).await })
    }

    /// The session is the connector's: it closes it (`release`, `close_all`).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
