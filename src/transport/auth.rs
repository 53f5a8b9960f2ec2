//! Client authentication as OpenSSH's `pubkey_prepare` orders it: ssh-agent keys first (an
//! agent key that is also an IdentityFile stands for that file), then the remaining
//! IdentityFiles in config order. With `IdentitiesOnly` (or an inventory key) only the
//! configured identities are offered: agent keys only when they match one of them. RSA signs
//! with SHA-2 only.
//!
//! Every key offered counts against the server's `MaxAuthTries`; when the server gives up and
//! disconnects, that is an authentication failure (permanent, never retried), reported with
//! the fix.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::client::Handle;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};

use super::keys::{public_key_of, rsa_hash};
use super::session::Client;
use super::{ConnectOptions, Target, TransportError};

/// The message sshd sends when `MaxAuthTries` is reached.
const TOO_MANY_FAILURES: &str = "Too many authentication failures";

/// One identity to offer, in order.
enum Identity {
    /// Signed by the agent; `file` when it stands for an IdentityFile.
    Agent {
        key: PublicKey,
        comment: String,
        file: Option<PathBuf>,
    },
    File(PathBuf),
}

impl Identity {
    fn is_file(&self, path: &Path) -> bool {
        match self {
            Identity::Agent { file, .. } => file.as_deref() == Some(path),
            Identity::File(p) => p == path,
        }
    }

    fn label(&self) -> String {
        match self {
            Identity::Agent { file: Some(f), .. } => format!("{} (agent)", f.display()),
            Identity::Agent { comment, .. } => format!("agent key {comment}"),
            Identity::File(p) => p.display().to_string(),
        }
    }
}

pub(super) async fn authenticate(
    handle: &mut Handle<Client>,
    target: &Target,
    opts: &ConnectOptions,
    disconnect: &Arc<Mutex<Option<String>>>,
) -> Result<(), TransportError> {
    let user = target.user.as_str();
    let host = format!("{}:{}", target.address, target.port);
    let mut tried: Vec<String> = Vec::new();
    let mut offered = 0usize;
    let server_rsa = handle.best_supported_rsa_hash().await.ok().flatten();

    let mut agent = match &opts.agent {
        Some(sock) => AgentClient::connect_uds(sock).await.ok(),
        None => None,
    };
    let agent_keys = match agent.as_mut() {
        Some(a) => a.request_identities().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let plan = plan(target, agent_keys, &mut tried);

    for id in plan {
        let label = id.label();
        let file_key = match &id {
            Identity::File(path) => match opts.keys.load(path) {
                Ok(k) => Some(k),
                Err(e) if target.keys_explicit => return Err(e),
                Err(_) => continue,
            },
            Identity::Agent { .. } => None,
        };
        let alg = match (&id, &file_key) {
            (Identity::Agent { key, .. }, _) => key.algorithm(),
            (_, Some(k)) => k.algorithm(),
            (Identity::File(_), None) => continue,
        };
        let hash = match rsa_hash(&alg, server_rsa) {
            Ok(h) => h,
            Err(why) => {
                tried.push(format!("{label} ({why})"));
                continue;
            }
        };
        offered += 1;
        let result = match (&id, file_key, agent.as_mut()) {
            (Identity::Agent { key, .. }, _, Some(agent)) => handle
                .authenticate_publickey_with(user, key.clone(), hash, agent)
                .await
                .map_err(|e| e.to_string()),
            (_, Some(key), _) => handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
                .await
                .map_err(|e| e.to_string()),
            _ => continue,
        };
        match result {
            Ok(r) if r.success() => return Ok(()),
            Ok(_) => tried.push(label),
            Err(e) => tried.push(format!("{label} ({e})")),
        }
        if handle.is_closed() {
            // The server hung up mid-login: MaxAuthTries, or it refused us otherwise. Either
            // way a new attempt would be one more failed login in its log.
            let message = disconnect
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| "connection closed by the server".into());
            if message.contains(TOO_MANY_FAILURES) {
                return Err(TransportError::TooManyAuthFailures {
                    user: user.to_string(),
                    host,
                    offered,
                    message,
                    tried: tried.join(", "),
                });
            }
            tried.push(format!("then the server disconnected: {message}"));
            break;
        }
    }
    Err(TransportError::Auth {
        user: user.to_string(),
        host,
        tried: if tried.is_empty() {
            "no keys: none in ssh-agent and no key file found".into()
        } else {
            tried.join(", ")
        },
    })
}

/// The identities to offer, in OpenSSH's order; notes skipped files in `tried`.
fn plan(target: &Target, agent_keys: Vec<AgentIdentity>, tried: &mut Vec<String>) -> Vec<Identity> {
    // IdentityFiles with their public half when it can be read without a passphrase
    // (`.pub`, or the private file's clear public part), to match agent keys. A file whose
    // private half is missing still names an agent key through its `.pub`, as in OpenSSH.
    let mut files: Vec<(PathBuf, Option<PublicKey>)> = target
        .keys
        .iter()
        .map(|p| (p.clone(), public_key_of(p)))
        .filter(|(p, public)| p.exists() || public.is_some())
        .collect();
    let mut out = Vec::new();
    for id in agent_keys {
        let AgentIdentity::PublicKey { key, comment } = id else {
            continue;
        };
        let matching = files
            .iter()
            .position(|(_, p)| p.as_ref().is_some_and(|p| p.key_data() == key.key_data()));
        match matching {
            Some(i) => {
                let (file, _) = files.remove(i);
                out.push(Identity::Agent {
                    key,
                    comment,
                    file: Some(file),
                });
            }
            None if !target.identities_only => out.push(Identity::Agent {
                key,
                comment,
                file: None,
            }),
            None => {}
        }
    }
    for (path, _) in files {
        if path.exists() {
            out.push(Identity::File(path));
        }
    }
    // OpenSSH skips a missing IdentityFile and tries the next ("no such identity"); only a
    // default one is skipped silently.
    if target.keys_explicit {
        for path in target.keys.iter().filter(|p| !p.exists()) {
            if !out.iter().any(|id| id.is_file(path)) {
                tried.push(format!("{} (no such file)", path.display()));
            }
        }
    }
    out
}
