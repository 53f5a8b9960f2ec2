//! Client authentication: ssh-agent identities first, then key files, RSA with SHA-2 only.

use russh::client::Handle;
use russh::keys::PrivateKeyWithHashAlg;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;

use super::keys::rsa_hash;
use super::verify::Verifier;
use super::{ConnectOptions, Target, TransportError};

pub(super) async fn authenticate(
    handle: &mut Handle<Verifier>,
    target: &Target,
    opts: &ConnectOptions,
) -> Result<(), TransportError> {
    let user = target.user.as_str();
    let mut tried: Vec<String> = Vec::new();
    let server_rsa = handle.best_supported_rsa_hash().await.ok().flatten();

    if let Some(sock) = &opts.agent
        && let Ok(mut agent) = AgentClient::connect_uds(sock).await
        && let Ok(ids) = agent.request_identities().await
    {
        for id in ids {
            let AgentIdentity::PublicKey { key, comment } = id else {
                continue;
            };
            let label = format!("agent key {comment}");
            let hash = match rsa_hash(&key.algorithm(), server_rsa) {
                Ok(h) => h,
                Err(why) => {
                    tried.push(format!("{label} ({why})"));
                    continue;
                }
            };
            match handle
                .authenticate_publickey_with(user, key, hash, &mut agent)
                .await
            {
                Ok(r) if r.success() => return Ok(()),
                Ok(_) => tried.push(label),
                Err(e) => tried.push(format!("{label} ({e})")),
            }
        }
    }

    for path in &target.keys {
        if !path.exists() {
            // OpenSSH skips a missing IdentityFile and tries the next (silently for defaults).
            if target.keys_explicit {
                tried.push(format!("{} (no such file)", path.display()));
            }
            continue;
        }
        let key = match opts.keys.load(path) {
            Ok(k) => k,
            Err(e) if target.keys_explicit => return Err(e),
            Err(_) => continue,
        };
        let label = path.display().to_string();
        let hash = match rsa_hash(&key.algorithm(), server_rsa) {
            Ok(h) => h,
            Err(why) => {
                tried.push(format!("{label} ({why})"));
                continue;
            }
        };
        let r = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
            .await?;
        if r.success() {
            return Ok(());
        }
        tried.push(label);
    }
    Err(TransportError::Auth {
        user: user.to_string(),
        host: format!("{}:{}", target.address, target.port),
        tried: if tried.is_empty() {
            "no keys: none in ssh-agent and no key file found".into()
        } else {
            tried.join(", ")
        },
    })
}
