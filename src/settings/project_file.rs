//! The project config file, promfleet's `ansible.cfg`: `promfleet.yml` in the current
//! directory, or the file named by `PROMFLEET_CONFIG`. It gives a project its defaults —
//! the inventory, forks, state dir, secrets file and Consul options — below flags and the
//! environment:
//!
//! ```yaml
//! inventory: [inventory.yml]        # or one path; relative to this file
//! forks: 20
//! state_dir: .promfleet
//! secrets: secrets.yml
//! consul: { ca_file: tls/consul-ca.pem, tls_server_name: server.dc1.consul }
//! prometheus: { scheme: https, ca_file: tls/ca.pem, basic_auth_username: promfleet }
//! alertmanager: { scheme: https, ca_file: tls/ca.pem }
//! ```
//!
//! Flags and environment variables win (`-i`, `PROMFLEET_INVENTORY`, `--forks`, …): the file's
//! values become the flags' defaults before the command line is parsed (`apply_defaults`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::endpoints::{ProjectEndpoints, Service};
use super::{ConsulOptions, Env, SettingsError, relative_to};

/// The file name looked up in the current directory.
pub const FILE_NAME: &str = "promfleet.yml";

/// The parsed project config file (all unset when there is none).
#[derive(Debug, Clone, Default)]
pub struct ProjectFile {
    pub path: Option<PathBuf>,
    pub inventory: Vec<PathBuf>,
    pub forks: Option<usize>,
    pub state_dir: Option<PathBuf>,
    pub secrets: Option<PathBuf>,
    pub consul: ConsulOptions,
    /// The `prometheus:` and `alertmanager:` blocks (`settings::endpoints`).
    pub endpoints: ProjectEndpoints,
}

const KEYS: &[&str] = &[
    "inventory",
    "forks",
    "state_dir",
    "secrets",
    "consul",
    "prometheus",
    "alertmanager",
];

static CURRENT: OnceLock<ProjectFile> = OnceLock::new();

impl ProjectFile {
    /// `PROMFLEET_CONFIG`, else `./promfleet.yml` when it exists, else none.
    pub fn discover(env: &Env) -> Result<ProjectFile, SettingsError> {
        if let Some(p) = env.get("PROMFLEET_CONFIG") {
            return ProjectFile::read(Path::new(p));
        }
        let here = Path::new(FILE_NAME);
        if here.is_file() {
            return ProjectFile::read(here);
        }
        Ok(ProjectFile::default())
    }

    /// The file of this run (set once by `main`; none in library callers that did not).
    pub fn current() -> &'static ProjectFile {
        CURRENT.get_or_init(ProjectFile::default)
    }

    /// Make `self` the run's file; the first call wins.
    pub fn install(self) -> &'static ProjectFile {
        CURRENT.get_or_init(|| self)
    }

    /// The file's directory (its relative paths start there).
    pub fn dir(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }

    pub fn read(path: &Path) -> Result<ProjectFile, SettingsError> {
        let invalid = |message: String| SettingsError::Invalid {
            what: format!("project config {}", path.display()),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| SettingsError::file(path, "project config", e))?;
        let map: BTreeMap<String, serde_json::Value> = if text.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))?
        };
        let base = path.parent().map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
        let mut f = ProjectFile {
            path: Some(path.to_path_buf()),
            ..ProjectFile::default()
        };
        let text_of = |key: &str, v: &serde_json::Value| -> Result<String, SettingsError> {
            match v {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Bool(b) => Ok(b.to_string()),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                other => Err(invalid(format!("{key}: expected a scalar, found {other}"))),
            }
        };
        for (key, value) in &map {
            match key.as_str() {
                "inventory" => {
                    let items = match value {
                        serde_json::Value::Array(a) => a.clone(),
                        other => vec![other.clone()],
                    };
                    for i in &items {
                        f.inventory
                            .push(relative_to(base, Path::new(&text_of(key, i)?)));
                    }
                }
                "forks" => {
                    let t = text_of(key, value)?;
                    f.forks = Some(t.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        invalid(format!("forks: `{t}` is not a positive number"))
                    })?);
                }
                "state_dir" => {
                    f.state_dir = Some(relative_to(base, Path::new(&text_of(key, value)?)))
                }
                "secrets" => f.secrets = Some(relative_to(base, Path::new(&text_of(key, value)?))),
                "consul" => {
                    for (k, v) in object(key, value).map_err(invalid)? {
                        f.consul
                            .set(k, &text_of(k, v)?)
                            .map_err(|why| invalid(format!("consul.{k}: {why}")))?;
                    }
                    // Relative to this file, like every path in it.
                    f.consul = f.consul.rebased(base);
                }
                "prometheus" | "alertmanager" => {
                    let svc = if key == "prometheus" {
                        Service::Prometheus
                    } else {
                        Service::Alertmanager
                    };
                    let opts = f.endpoints.get_mut(svc);
                    for (k, v) in object(key, value).map_err(invalid)? {
                        opts.set(k, &text_of(k, v)?)
                            .map_err(|why| invalid(format!("{key}.{k}: {why}")))?;
                    }
                    *opts = opts.clone().rebased(base);
                }
                other => {
                    let hint = crate::base::suggest::nearest(other, KEYS.iter().copied())
                        .map(|s| format!(" — did you mean `{s}`?"))
                        .unwrap_or_default();
                    return Err(invalid(format!(
                        "unknown key `{other}`{hint} (known: {})",
                        KEYS.join(", ")
                    )));
                }
            }
        }
        Ok(f)
    }

    /// Give the command line's `--inventory`, `--forks`, `--state-dir` and `--secrets` this
    /// file's values as defaults (every subcommand that has them); flags and their
    /// environment variables still win. `-i` is no longer required when the file names one.
    pub fn apply_defaults(&self, cmd: clap::Command) -> clap::Command {
        let mut cmd = cmd;
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        for name in names {
            cmd = cmd.mut_subcommand(name, |sub| self.apply_defaults(sub));
        }
        let ids: Vec<String> = cmd
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        let os = |p: &Path| clap::builder::OsStr::from(p.display().to_string());
        for id in ids {
            cmd = match id.as_str() {
                "inventory" if !self.inventory.is_empty() => {
                    let values: Vec<clap::builder::OsStr> =
                        self.inventory.iter().map(|p| os(p)).collect();
                    cmd.mut_arg(id, |a| a.required(false).default_values(values))
                }
                "forks" => match self.forks {
                    Some(n) => cmd.mut_arg(id, |a| a.default_value(n.to_string())),
                    None => cmd,
                },
                "state_dir" => match &self.state_dir {
                    Some(p) => cmd.mut_arg(id, |a| a.default_value(os(p))),
                    None => cmd,
                },
                "secrets" => match &self.secrets {
                    Some(p) => cmd.mut_arg(id, |a| a.default_value(os(p))),
                    None => cmd,
                },
                _ => cmd,
            };
        }
        cmd
    }
}

fn object<'a>(
    key: &str,
    value: &'a serde_json::Value,
) -> Result<&'a serde_json::Map<String, serde_json::Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{key}: expected a map of settings"))
}
