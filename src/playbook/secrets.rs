//! Secrets (DingTalk tokens, Grafana admin password, Consul ACL token): read from the
//! environment (`PROMFLEET_SECRET_<NAME>`) or a 0600 YAML secrets file — never from the repo.
//! The Consul token is resolved by the settings layer (`settings::consul`) and set here.
//! Every value handed out is registered with the `Masker` so no output can show it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::report::Masker;
use crate::settings::Env;

/// Prefix of secret environment variables: `dingtalk_token_ide` → `PROMFLEET_SECRET_DINGTALK_TOKEN_IDE`.
pub const ENV_PREFIX: &str = "PROMFLEET_SECRET_";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret `{name}` is not set — export {env}=… or add `{name}: …` to the secrets file (--secrets FILE, mode 0600)"
    )]
    Missing { name: String, env: String },
    #[error("{}: secrets file must not be readable by others (mode {mode:o}) — run `chmod 600 {}`", .path.display(), .path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{}: {message}", .path.display())]
    File { path: PathBuf, message: String },
}

/// Whether templates see real secret values or a mask (review output: render, check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretMode {
    Real,
    Masked,
}

/// The placeholder written instead of a secret in review output.
pub const MASK: &str = "********";

/// Where secrets come from, plus the masker every returned value is registered with.
#[derive(Clone)]
pub struct Secrets {
    /// The environment snapshot `PROMFLEET_SECRET_*` are read from.
    env: Env,
    file: BTreeMap<String, String>,
    file_path: Option<PathBuf>,
    masker: Masker,
    /// Secrets generated during this run (e.g. a Grafana admin password).
    generated: Arc<Mutex<BTreeMap<String, String>>>,
    /// Where a generated secret is stored the moment it is generated (`None`: kept in memory
    /// only — `--check`, `status`, `render` write nothing).
    persist: Option<PathBuf>,
    /// The Consul ACL token with where it came from, set by the settings layer
    /// (`set_consul_token`): every Consul client and the templates'
    /// `secret(name="consul_token")` read this one value.
    consul_token: Option<(String, String)>,
    /// The run's Consul TLS files (`ca`, `cert`, `key`) as the settings layer resolved them,
    /// for the files deployed beside Prometheus (`consul_tls_pem`).
    consul_tls: BTreeMap<String, PathBuf>,
}

/// Whether Consul TLS file `part` is a private key (`key`, `server_key`, `agent_key`): a
/// secret, masked in every output.
pub fn is_key_part(part: &str) -> bool {
    part == "key" || part.ends_with("_key")
}

/// The secret name of the Consul ACL token.
pub const CONSUL_TOKEN: &str = "consul_token";

impl Secrets {
    /// Secrets from a YAML map file (must be mode 0600 or stricter) and the environment
    /// (the environment wins).
    pub fn load(path: Option<&Path>, masker: Masker) -> Result<Secrets, SecretError> {
        Self::load_with_env(path, masker, Env::current().clone())
    }

    /// `load` with the environment given (the run's one snapshot, or a test's).
    pub fn load_with_env(
        path: Option<&Path>,
        masker: Masker,
        env: Env,
    ) -> Result<Secrets, SecretError> {
        let mut s = Secrets {
            env,
            file: BTreeMap::new(),
            file_path: None,
            masker,
            generated: Arc::default(),
            persist: None,
            consul_token: None,
            consul_tls: BTreeMap::new(),
        };
        if let Some(path) = path {
            s.read_file(path)?;
        }
        Ok(s)
    }

    /// The Consul ACL token of the run, resolved by `settings::Consul::resolve` (which owns
    /// its precedence) and set here so templates' `secret(name="consul_token")` read the same
    /// value every Consul client sends.
    pub fn set_consul_token(&mut self, token: Option<(String, String)>) {
        if let Some((t, _)) = &token {
            self.masker.add(t);
        }
        self.consul_token = token;
    }

    /// Record the run's Consul TLS files: `ca` (a file), `ca_dir` (a directory of PEM
    /// files), `cert`, `key` (set by the settings layer).
    pub fn set_consul_tls_files(&mut self, files: BTreeMap<String, PathBuf>) {
        self.consul_tls = files;
    }

    /// The PEM text of Consul TLS file `part` (`ca`, `cert`, `key`). `ca` is the CA file and
    /// every file of the CA directory joined, as the clients trust both and Prometheus'
    /// `tls_config` takes one CA file. The key is a secret: registered with the masker.
    pub fn consul_tls_pem(&self, part: &str) -> Result<String, SecretError> {
        let mut paths: Vec<PathBuf> = self.consul_tls.get(part).cloned().into_iter().collect();
        if part == "ca"
            && let Some(dir) = self.consul_tls.get("ca_dir")
        {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| SecretError::File {
                    path: dir.clone(),
                    message: format!("Consul CA directory: {e}"),
                })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            paths.extend(files);
        }
        if paths.is_empty() {
            return Err(SecretError::Missing {
                name: format!("consul TLS {part} file"),
                env: match part {
                    "ca" => "CONSUL_CACERT".to_owned(),
                    "cert" => "CONSUL_CLIENT_CERT".to_owned(),
                    "key" => "CONSUL_CLIENT_KEY".to_owned(),
                    // The cluster agents' files (`server_cert` …) have no Consul variable.
                    other => Self::env_name(&format!("consul_{other}")),
                },
            });
        }
        let mut text = String::new();
        for path in &paths {
            let one = std::fs::read_to_string(path).map_err(|e| SecretError::File {
                path: path.clone(),
                message: format!("Consul TLS {part} file: {e}"),
            })?;
            text.push_str(&one);
            if !text.ends_with('\n') && paths.len() > 1 {
                text.push('\n');
            }
        }
        if is_key_part(part) {
            self.masker.add(text.trim());
        }
        Ok(text)
    }

    /// A value of the secrets layer that is a setting rather than a secret to hand to
    /// templates (e.g. `consul_ca_file`): `PROMFLEET_SECRET_<NAME>`, else the secrets file.
    pub fn setting(&self, name: &str) -> Option<String> {
        self.env
            .get(&Self::env_name(name))
            .map(str::to_owned)
            .or_else(|| self.file.get(name).cloned())
            .filter(|v| !v.is_empty())
    }

    /// The directory of the secrets file (paths in it are relative to it).
    pub fn file_dir(&self) -> Option<&Path> {
        self.file_path.as_deref().and_then(Path::parent)
    }

    /// The Consul ACL token of this run (already registered with the masker), if any.
    pub fn consul_token(&self) -> Option<&str> {
        self.consul_token.as_ref().map(|(t, _)| t.as_str())
    }

    fn read_file(&mut self, path: &Path) -> Result<(), SecretError> {
        let file_err = |message: String| SecretError::File {
            path: path.to_path_buf(),
            message,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|e| file_err(e.to_string()))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SecretError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let map: BTreeMap<String, serde_json::Value> = if text.trim().is_empty() {
            BTreeMap::new()
        } else {
            // Do not echo the parser's snippet: it could show a secret.
            serde_saphyr::from_str(&text).map_err(|e| {
                file_err(match e.location() {
                    Some(l) => format!("line {}: not a YAML map of name: value", l.line()),
                    None => "not a YAML map of name: value".into(),
                })
            })?
        };
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            self.masker.add(&v);
            self.file.insert(k, v);
        }
        self.file_path = Some(path.to_path_buf());
        Ok(())
    }

    pub fn env_name(name: &str) -> String {
        format!(
            "{ENV_PREFIX}{}",
            name.to_ascii_uppercase().replace(['-', '.'], "_")
        )
    }

    /// The value of secret `name`, registered with the masker.
    pub fn get(&self, name: &str) -> Result<String, SecretError> {
        let env = Self::env_name(name);
        if name == CONSUL_TOKEN {
            return self
                .consul_token()
                .map(str::to_owned)
                .ok_or_else(|| SecretError::Missing {
                    name: name.to_string(),
                    env,
                });
        }
        let v = self
            .env
            .get(&env)
            .map(str::to_owned)
            .or_else(|| self.file.get(name).cloned())
            .or_else(|| {
                self.generated
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(name)
                    .cloned()
            });
        match v {
            Some(v) => {
                self.masker.add(&v);
                Ok(v)
            }
            None => Err(SecretError::Missing {
                name: name.to_string(),
                env,
            }),
        }
    }

    /// Where `get(name)` reads the secret from, for messages: its environment variable, else
    /// the secrets file.
    pub fn origin(&self, name: &str) -> String {
        match &self.consul_token {
            Some((_, from)) if name == CONSUL_TOKEN => from.clone(),
            _ => self.plain_origin(name),
        }
    }

    fn plain_origin(&self, name: &str) -> String {
        let env = Self::env_name(name);
        match &self.file_path {
            Some(p) if self.env.get(&env).is_none() && self.file.contains_key(name) => {
                p.display().to_string()
            }
            _ => env,
        }
    }

    /// From now on, store each generated secret in the secrets file (`--secrets`), else in
    /// `default_path`, before handing it out.
    pub fn persist_generated(&mut self, default_path: &Path) {
        self.persist = Some(
            self.file_path
                .clone()
                .unwrap_or_else(|| default_path.to_path_buf()),
        );
    }

    /// Where generated secrets of this run were stored, if any were generated and stored.
    pub fn generated_stored_in(&self) -> Option<&Path> {
        let any = !self
            .generated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        self.persist.as_deref().filter(|_| any)
    }

    /// Like `get`, but generates a random value when the secret is absent — for passwords
    /// promfleet itself sets, such as Grafana's admin. The value is stored (see
    /// `persist_generated`) before it is returned, so before any host can see it: a run
    /// interrupted after that still leaves the next run the same value.
    pub fn get_or_generate(&self, name: &str) -> Result<String, SecretError> {
        if let Ok(v) = self.get(name) {
            return Ok(v);
        }
        // Held while storing: two templates generating at once append one after the other.
        let mut generated = self.generated.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = generated.get(name) {
            return Ok(v.clone());
        }
        use rand::Rng;
        let v: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        self.masker.add(&v);
        if let Some(path) = &self.persist {
            store(path, name, &v)?;
        }
        generated.insert(name.to_string(), v.clone());
        Ok(v)
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }
}

/// Add `name: "value"` to the secrets file at `path` (created 0600), atomically: the file
/// is rewritten whole through a fresh temporary name, fsynced, then renamed.
fn store(path: &Path, name: &str, value: &str) -> Result<(), SecretError> {
    let err = |e: std::io::Error| SecretError::File {
        path: path.to_path_buf(),
        message: format!("cannot store generated secret `{name}`: {e}"),
    };
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(err(e)),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    // Generated values are alphanumeric: no YAML quoting issue.
    text.push_str(&format!("{name}: \"{value}\"\n"));
    crate::report::write_atomic(path, text.as_bytes(), 0o600).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_is_stored_0600_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.yml");
        std::fs::write(&path, "other: \"kept\"").expect("write");
        let mut s = Secrets::load(None, Masker::default()).expect("no file");
        s.persist_generated(&path);
        let v = s
            .get_or_generate("promfleet_unit_test_password")
            .expect("generate");
        assert_eq!(v.len(), 24);
        // Stored already, before the run goes on.
        assert_eq!(s.generated_stored_in(), Some(path.as_path()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = Secrets::load(Some(&path), Masker::default()).expect("load");
        assert_eq!(
            again.get("promfleet_unit_test_password").expect("stored"),
            v
        );
        assert_eq!(
            again
                .get_or_generate("promfleet_unit_test_password")
                .expect("reused"),
            v
        );
        assert_eq!(again.get("other").expect("kept"), "kept");
    }

    #[test]
    fn a_secrets_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.yml");
        std::fs::write(&path, "x: y\n").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = Secrets::load(Some(&path), Masker::default())
                .err()
                .expect("refused");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }
}
