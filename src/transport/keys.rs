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

mod short_scalar;

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
        let key = match load_secret_key(&path, None) {
            Ok(k) => k,
            Err(LoadError::Encrypted) => {
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
                match load_secret_key(&path, Some(&pass)) {
                    Ok(key) => key,
                    Err(LoadError::Encrypted) => return Err(key_err("cannot decrypt".into())),
                    Err(LoadError::Other(e)) => {
                        return Err(key_err(format!("cannot decrypt: {e}")));
                    }
                }
            }
            Err(LoadError::Other(e)) => return Err(key_err(e)),
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
    load_secret_key(path, None)
        .ok()
        .map(|k| k.public_key().clone())
}

/// Why [`load_secret_key`] has no key.
enum LoadError {
    /// The file is encrypted and no passphrase was given.
    Encrypted,
    /// Anything else, as russh (or the passphrase check) words it.
    Other(String),
}

/// A private key file as `ssh` reads it: russh's decoder, and for the ECDSA keys with a short
/// scalar that ssh-key refuses, [`short_scalar`].
fn load_secret_key(path: &Path, passphrase: Option<&str>) -> Result<PrivateKey, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Other(e.to_string()))?;
    match russh::keys::decode_secret_key(&text, passphrase) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(LoadError::Encrypted),
        Err(e) => short_scalar::load(&text, passphrase)
            .unwrap_or_else(|| Err(e.to_string()))
            .map_err(LoadError::Other),
    }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use super::*;

    /// One P-256 key (a 31-byte scalar, found by generating keys with `ssh-keygen` until one
    /// had it), as ssh-keygen wrote it unencrypted and re-encrypted with four ciphers.
    const SHORT_SCALAR: [(&str, &str); 5] = [
        ("ecdsa-p256-short-scalar", ""),
        ("ecdsa-p256-short-scalar-aes256-ctr", "correct horse"),
        ("ecdsa-p256-short-scalar-aes256-gcm", "correct horse"),
        ("ecdsa-p256-short-scalar-aes256-cbc", "correct horse"),
        ("ecdsa-p256-short-scalar-chacha20-poly1305", "correct horse"),
    ];

    /// A fixture key copied to a 0600 file, as ssh-keygen wants it.
    fn fixture(dir: &Path, name: &str) -> PathBuf {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name);
        let to = dir.join(name);
        std::fs::copy(&from, &to).expect("copy the fixture key");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        to
    }

    /// ssh-keygen's answer: the public key line of `path` opened with `passphrase`, or None.
    fn keygen_public(path: &Path, passphrase: &str) -> Option<String> {
        let out = Command::new("ssh-keygen")
            .args(["-y", "-P", passphrase, "-f"])
            .arg(path)
            .output()
            .expect("ssh-keygen");
        out.status.success().then(|| {
            let line = String::from_utf8_lossy(&out.stdout);
            line.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    #[test]
    fn an_ecdsa_key_with_a_31_byte_scalar_was_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, passphrase) in SHORT_SCALAR {
            let path = fixture(dir.path(), name);
            let expected = keygen_public(&path, passphrase).expect("ssh-keygen opens the key");
            let key = KeyStore::with_passphrase(passphrase)
                .load(&path)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let public = key.public_key().to_openssh().expect("public key");
            assert_eq!(public, format!("{expected} short-scalar"), "{name}");

            // The private half is the scalar ssh-keygen holds: ssh-keygen verifies a signature
            // made with it.
            let message = b"promfleet short scalar";
            let sig = key
                .sign("promfleet-test", HashAlg::Sha256, message)
                .expect("sign")
                .to_pem(russh::keys::ssh_key::LineEnding::LF)
                .expect("signature pem");
            let sig_path = dir.path().join(format!("{name}.sig"));
            std::fs::write(&sig_path, sig).expect("write signature");
            let msg_path = dir.path().join("message");
            std::fs::write(&msg_path, message).expect("write message");
            let check = Command::new("sh")
                .arg("-c")
                .arg("ssh-keygen -Y check-novalidate -n promfleet-test -s \"$1\" < \"$2\"")
                .args([
                    "sh",
                    &sig_path.to_string_lossy(),
                    &msg_path.to_string_lossy(),
                ])
                .output()
                .expect("ssh-keygen -Y");
            assert!(
                check.status.success(),
                "{name}: ssh-keygen rejects the signature: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }

    #[test]
    fn a_short_scalar_key_opened_with_the_wrong_passphrase_fails_as_ssh_keygen_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, _) in &SHORT_SCALAR[1..] {
            let path = fixture(dir.path(), name);
            assert_eq!(
                keygen_public(&path, "wrong"),
                None,
                "{name}: ssh-keygen opened it"
            );
            let err = KeyStore::with_passphrase("wrong")
                .load(&path)
                .err()
                .unwrap_or_else(|| panic!("{name}: opened with the wrong passphrase"));
            assert!(err.to_string().contains("cannot decrypt"), "{name}: {err}");
        }
    }

    #[test]
    fn a_key_ssh_key_reads_is_not_rewritten() {
        // Keys ssh-key reads itself never reach the short-scalar path: its answer is None.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("id_ecdsa");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen");
        assert!(made.success());
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(short_scalar::load(&text, None).is_none());
        assert!(short_scalar::load("not a key", None).is_none());
    }
}
