//! Settings: raw flags, the environment, the project config file (`promfleet.yml`), the
//! inventory and the secrets file resolve here, once, into validated settings that hand out
//! built objects (the Consul client, HTTP clients). Like ripgrep's lowargs → hiargs: nothing
//! downstream re-reads the environment or re-validates.
//!
//! Owns: the process environment snapshot (`Env`, the one reader of Consul's and promfleet's
//! variables), the project config file (`project_file`), Consul's connection settings and
//! their precedence (`consul`), Prometheus' and Alertmanager's API clients (`endpoints`),
//! TLS client construction (`tls`). Must not: connect, print, or know playbooks.

pub mod consul;
pub mod endpoints;
pub mod project_file;
pub mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use consul::{Consul, ConsulOptions};
pub use endpoints::{Endpoint, Endpoints, Service};
pub use project_file::ProjectFile;
pub use tls::TlsOptions;

/// Why settings could not be resolved: the setting and where it came from are named.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{what}: {}: {source}", .path.display())]
    File {
        path: PathBuf,
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl SettingsError {
    pub(crate) fn file(path: &Path, what: &str, source: std::io::Error) -> SettingsError {
        SettingsError::File {
            path: path.to_path_buf(),
            what: what.to_owned(),
            source,
        }
    }
}

/// The variables of the process environment promfleet reads (Consul's `CONSUL_*`, its own
/// `PROMFLEET_*`, and what `ssh` itself reads: `USER`, `HOME`, `PATH`, `SSH_AUTH_SOCK`), taken
/// once. Empty values count as unset, as Consul's CLI treats them.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

/// What the transport takes from the environment, as `ssh` does: the local login name (the
/// default remote user), the home directory (`~` in paths, default identities), `PATH`
/// (ProxyCommand's programs) and the agent's socket.
const SSH_VARIABLES: &[&str] = &["USER", "HOME", "PATH", "SSH_AUTH_SOCK"];

impl Env {
    /// The run's snapshot, taken on first use.
    pub fn current() -> &'static Env {
        static CURRENT: std::sync::OnceLock<Env> = std::sync::OnceLock::new();
        CURRENT.get_or_init(Env::process)
    }

    /// A snapshot of the process environment: the one place these variables are read.
    pub fn process() -> Env {
        Env {
            vars: std::env::vars()
                .filter(|(k, _)| {
                    k.starts_with("CONSUL_")
                        || k.starts_with("PROMFLEET_")
                        || SSH_VARIABLES.contains(&k.as_str())
                })
                .collect(),
        }
    }

    /// An environment of exactly these variables (tests, and callers that filter).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The value of `name` when set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean variable, read as Go's `strconv.ParseBool` reads it (Consul's own parser).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, SettingsError> {
        self.get(name).map(|v| parse_bool(name, v)).transpose()
    }
}

/// Go's `strconv.ParseBool` (what Consul uses for `CONSUL_HTTP_SSL[_VERIFY]`): `1 t T TRUE
/// true True` and `0 f F FALSE false False`. Anything else is refused here, where Consul's
/// CLI only logs it (and for `CONSUL_HTTP_SSL_VERIFY` then turns verification off).
pub fn parse_bool(what: &str, v: &str) -> Result<bool, SettingsError> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(SettingsError::Invalid {
            what: what.to_owned(),
            message: format!("`{v}` is not a boolean (true/false, 1/0, t/f)"),
        }),
    }
}

/// `path` relative to `base` (the directory of the file that named it); absolute paths and
/// `~/` paths as given.
pub(crate) fn relative_to(base: Option<&Path>, path: &Path) -> PathBuf {
    let path = crate::transport::keys::expand_home(path);
    match base {
        Some(b) if path.is_relative() => b.join(path),
        _ => path,
    }
}

#[cfg(test)]
mod tests;
