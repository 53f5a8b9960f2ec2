//! Client identities: private key files (decrypted once per run) and the ssh-agent.
//!
//! RSA keys always sign with SHA-2 (`rsa-sha2-512`/`-256`); a server that only offers SHA-1
//! `ssh-rsa` is refused rather than downgraded.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};

use super::TransportError;

/// Environment variable holding the passphrase of encrypted key files.
pub const PASSPHRASE_ENV: &str = "PROMFLEET_SSH_PASSPHRASE";

/// Loads each key file once per run, however many hosts use it.
#[derive(Default)]
pub struct KeyStore {
    keys: Mutex<HashMap<PathBuf, Arc<PrivateKey>>>,
    // One prompt at a time: hosts connect in parallel but the terminal is shared.
    prompt: Mutex<()>,
    // Given by the caller instead of read from the (process-global) environment.
    passphrase: Option<String>,
}

impl KeyStore {
    /// A store that decrypts encrypted key files with `passphrase` (no env lookup, no prompt).
    pub fn with_passphrase(passphrase: impl Into<String>) -> KeyStore {
        KeyStore {
            passphrase: Some(passphrase.into()),
            ..KeyStore::default()
        }
    }

    /// The decrypted key at `path` (asks for the passphrase once if it is encrypted).
    pub fn load(&self, path: &Path) -> Result<Arc<PrivateKey>, TransportError> {
        let path = expand_home(path);
        if let Some(k) = lock(&self.keys).get(&path) {
            return Ok(k.clone());
        }
        let _guard = lock(&self.prompt);
        if let Some(k) = lock(&self.keys).get(&path) {
            return Ok(k.clone());
        }
        let key_err = |message: String| TransportError::Key {
            path: path.clone(),
            message,
        };
        let key = match russh::keys::load_secret_key(&path, None) {
            Ok(k) => k,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                let from_env = || {
                    crate::settings::Env::current()
                        .get(PASSPHRASE_ENV)
                        .map(str::to_owned)
                };
                let pass = match self.passphrase.clone().or_else(from_env) {
                    Some(p) => p,
                    None if std::io::stdin().is_terminal() => {
                        rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
                            .map_err(|e| key_err(format!("cannot read passphrase: {e}")))?
                    }
                    None => {
                        return Err(key_err(format!(
                            "the key is encrypted: set {PASSPHRASE_ENV} or add it to ssh-agent"
                        )));
                    }
                };
                russh::keys::load_secret_key(&path, Some(&pass))
                    .map_err(|e| key_err(format!("cannot decrypt: {e}")))?
            }
            Err(e) => return Err(key_err(e.to_string())),
        };
        let key = Arc::new(key);
        lock(&self.keys).insert(path, key.clone());
        Ok(key)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The local home directory as `ssh` finds it: `$HOME` (from the run's environment snapshot),
/// else the password database.
pub fn home_dir() -> Option<PathBuf> {
    crate::settings::Env::current()
        .get("HOME")
        .map(PathBuf::from)
        .or_else(std::env::home_dir)
}

/// `~/x` → `$HOME/x` for local paths (inventory, ssh config).
pub fn expand_home(p: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~")
        && let Some(home) = home_dir()
    {
        return home.join(rest);
    }
    p.to_path_buf()
}

/// The public half of a key file without asking for its passphrase, as OpenSSH finds it to
/// match agent keys: `<file>.pub`, else the clear public part of an OpenSSH private key, else
/// the key itself when it is not encrypted. `None` when none of these works.
pub fn public_key_of(path: &Path) -> Option<PublicKey> {
    let mut pubfile = path.as_os_str().to_owned();
    pubfile.push(".pub");
    if let Ok(k) = russh::keys::load_public_key(PathBuf::from(pubfile)) {
        return Some(k);
    }
    let text = std::fs::read(path).ok()?;
    if let Ok(k) = PrivateKey::from_openssh(&text) {
        return Some(k.public_key().clone());
    }
    russh::keys::load_secret_key(path, None)
        .ok()
        .map(|k| k.public_key().clone())
}

/// Default identity files, in OpenSSH's order.
pub fn default_key_files() -> Vec<PathBuf> {
    let Some(home) = home_dir() else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .filter(|p| p.exists())
        .collect()
}

/// How an RSA key must sign for this server: SHA-512 or SHA-256, never SHA-1.
/// `Ok(None)` for non-RSA keys; `Err` when the server offers only `ssh-rsa` (SHA-1).
pub fn rsa_hash(
    alg: &Algorithm,
    server: Option<Option<HashAlg>>,
) -> Result<Option<HashAlg>, &'static str> {
    if !matches!(alg, Algorithm::Rsa { .. }) {
        return Ok(None);
    }
    match server {
        Some(Some(h)) => Ok(Some(h)),
        // The server accepts RSA only with SHA-1: refuse instead of downgrading.
        Some(None) => Err("server offers only SHA-1 ssh-rsa signatures; refusing to downgrade"),
        // No server-sig-algs extension: OpenSSH ≥7.2 accepts rsa-sha2-256.
        None => Ok(Some(HashAlg::Sha256)),
    }
}
