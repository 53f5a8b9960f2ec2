//! Key material for the fleet, made with the real `ssh-keygen`: client keys (ed25519, RSA,
//! ECDSA, passphrase-protected) and host keys.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// Algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    Rsa,
    Ecdsa,
}

impl KeyKind {
    fn args(self) -> &'static [&'static str] {
        match self {
            KeyKind::Ed25519 => &["-t", "ed25519"],
            KeyKind::Rsa => &["-t", "rsa", "-b", "3072"],
            KeyKind::Ecdsa => &["-t", "ecdsa", "-b", "256"],
        }
    }
}

/// Generate a key pair at `path` (+ `path.pub`), replacing any existing one.
pub(crate) fn keygen(path: &Path, kind: KeyKind, passphrase: &str, comment: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let out = Command::new("ssh-keygen")
        .args(kind.args())
        .args(["-q", "-N", passphrase, "-C", comment, "-f"])
        .arg(path)
        .output()
        .context("run ssh-keygen")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The `.pub` line of a key: `<algo> <base64> <comment>`.
pub(crate) fn public_line(private: &Path) -> Result<String> {
    let mut pubpath = private.as_os_str().to_owned();
    pubpath.push(".pub");
    let text = std::fs::read_to_string(&pubpath)
        .with_context(|| format!("read {}", Path::new(&pubpath).display()))?;
    Ok(text.trim().to_string())
}

/// `<algo> <base64>` of a public key line (what known_hosts needs, without the comment).
pub(crate) fn algo_and_blob(private: &Path) -> Result<String> {
    let line = public_line(private)?;
    let mut f = line.split_whitespace();
    match (f.next(), f.next()) {
        (Some(a), Some(b)) => Ok(format!("{a} {b}")),
        _ => bail!("malformed public key for {}", private.display()),
    }
}
