//! Prometheus' and Alertmanager's HTTP APIs as promfleet reaches them (verify's
//! `prometheus_targets`, the health gates, `status`, `alert test`, the monitoring play's
//! ready and reload checks): the scheme of the URLs built from an ip and port, TLS (a private
//! CA, a client certificate, a server name) and basic auth, resolved once into one client per
//! service. Precedence, per setting, first set wins (`<svc>` is `prometheus` or
//! `alertmanager`):
//!
//! 1. the secrets: `PROMFLEET_SECRET_<SVC>_<KEY>`, else `<svc>_<key>` in the `--secrets` file
//!    (paths relative to that file). The password is read here and nowhere else:
//!    `<svc>_basic_auth_password` (`PROMFLEET_SECRET_PROMETHEUS_BASIC_AUTH_PASSWORD`);
//! 2. the inventory variables `<svc>_<key>` of the first monitoring host (so `-e`, group and
//!    `all` variables count; paths relative to the inventory file);
//! 3. the project config file's `<svc>:` block (paths relative to that file);
//! 4. defaults: `http`, the public CA roots, no credentials.
//!
//! A password given anywhere else (inventory, `-e`, which is argv, project file) is refused.
//! `<svc>_url`, when set, is the whole base URL and its scheme wins over `<svc>_scheme`.

use std::path::{Path, PathBuf};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;

use super::{SettingsError, TlsOptions, relative_to};
use crate::inventory::Vars;
use crate::playbook::Secrets;

/// The two services whose APIs promfleet's clients talk to with these settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Prometheus,
    Alertmanager,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::Prometheus, Service::Alertmanager];

    /// The prefix of its variables, secrets and project-file block (`prometheus`).
    pub fn key(self) -> &'static str {
        match self {
            Service::Prometheus => "prometheus",
            Service::Alertmanager => "alertmanager",
        }
    }

    /// Its name in messages.
    pub fn title(self) -> &'static str {
        match self {
            Service::Prometheus => "Prometheus",
            Service::Alertmanager => "Alertmanager",
        }
    }

    /// `prometheus` / `alertmanager` as a module argument or a key names it.
    pub fn parse(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|v| v.key() == s)
    }
}

/// The scheme of URLs built from a host's ip and the service's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One service's options as one source gives them; `None`: not given here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointOptions {
    pub scheme: Option<Scheme>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub server_name: Option<String>,
    pub basic_auth_username: Option<String>,
}

/// The keys of `EndpointOptions`, as written after `<svc>_` (variables, secrets) or inside
/// the project file's `<svc>:` block.
pub const OPTION_KEYS: &[&str] = &[
    "scheme",
    "ca_file",
    "client_cert",
    "client_key",
    "server_name",
    "basic_auth_username",
];

/// The password's key; read from the secrets only.
pub const PASSWORD_KEY: &str = "basic_auth_password";

impl EndpointOptions {
    /// Set one option from its key and text; `Err` says what is wrong with the value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let path = || Some(PathBuf::from(value));
        match key {
            "scheme" => {
                self.scheme = Some(match value {
                    "http" => Scheme::Http,
                    "https" => Scheme::Https,
                    _ => return Err(format!("`{value}` is not http or https")),
                })
            }
            "ca_file" => self.ca_file = path(),
            "client_cert" => self.client_cert = path(),
            "client_key" => self.client_key = path(),
            "server_name" => self.server_name = Some(value.to_owned()),
            "basic_auth_username" => self.basic_auth_username = Some(value.to_owned()),
            PASSWORD_KEY => return Err(password_elsewhere(key)),
            _ => return Err(format!("unknown key (known: {})", OPTION_KEYS.join(", "))),
        }
        Ok(())
    }

    /// Paths made relative to `base` (the directory of the file that named them).
    pub(crate) fn rebased(mut self, base: Option<&Path>) -> EndpointOptions {
        for p in [
            &mut self.ca_file,
            &mut self.client_cert,
            &mut self.client_key,
        ] {
            if let Some(v) = p.take() {
                *p = Some(relative_to(base, &v));
            }
        }
        self
    }

    /// `self`'s values, else `lower`'s.
    pub(crate) fn or(self, lower: EndpointOptions) -> EndpointOptions {
        EndpointOptions {
            scheme: self.scheme.or(lower.scheme),
            ca_file: self.ca_file.or(lower.ca_file),
            client_cert: self.client_cert.or(lower.client_cert),
            client_key: self.client_key.or(lower.client_key),
            server_name: self.server_name.or(lower.server_name),
            basic_auth_username: self.basic_auth_username.or(lower.basic_auth_username),
        }
    }
}

fn password_elsewhere(key: &str) -> String {
    format!(
        "{key}: a password is read from the secrets only (the --secrets file, or \
         PROMFLEET_SECRET_<NAME>), never from the inventory, -e or the project file"
    )
}

/// Who the client says it is (never the password: it lives only in the client's header).
#[derive(Debug, Clone)]
struct BasicAuth {
    username: String,
    /// Where the password came from (the secrets file's path or the variable's name).
    password_origin: String,
}

/// One service's API as promfleet reaches it: the scheme of built URLs, and the one client
/// (TLS as resolved, the basic-auth header on every request) every caller uses.
#[derive(Clone)]
pub struct Endpoint {
    service: Service,
    scheme: Scheme,
    tls: TlsOptions,
    auth: Option<BasicAuth>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("service", &self.service)
            .field("scheme", &self.scheme)
            .field("tls", &self.tls)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Plain http, the public roots, no credentials (what an unconfigured run uses).
    pub fn plain(service: Service) -> Endpoint {
        Endpoint {
            service,
            scheme: Scheme::Http,
            tls: TlsOptions::default(),
            auth: None,
            client: super::tls::base_builder().build().unwrap_or_default(),
        }
    }

    fn build(
        service: Service,
        opts: EndpointOptions,
        password: Option<(String, String)>,
        masker: &crate::report::Masker,
    ) -> Result<Endpoint, SettingsError> {
        let tls = TlsOptions {
            ca_file: opts.ca_file,
            ca_path: None,
            client_cert: opts.client_cert,
            client_key: opts.client_key,
            server_name: opts.server_name,
            verify: true,
        };
        let what = |k: &str| format!("{}_{k}", service.key());
        let auth = match (opts.basic_auth_username, password) {
            (None, None) => None,
            (Some(username), Some((password, origin))) => Some((username, password, origin)),
            (None, Some((_, origin))) => {
                return Err(SettingsError::Invalid {
                    what: format!("{} (from {origin})", what(PASSWORD_KEY)),
                    message: format!(
                        "a password without a user name: set {} (inventory variable or the \
                         project file's `{}:` block)",
                        what("basic_auth_username"),
                        service.key()
                    ),
                });
            }
            (Some(_), None) => {
                return Err(SettingsError::Invalid {
                    what: what("basic_auth_username"),
                    message: format!(
                        "a user name without a password: set the secret {} (--secrets file) \
                         or {}",
                        what(PASSWORD_KEY),
                        Secrets::env_name(&what(PASSWORD_KEY))
                    ),
                });
            }
        };
        let mut headers = HeaderMap::new();
        if let Some((user, password, _)) = &auth {
            use base64::Engine as _;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            // The header's value shows the password to anyone who decodes it.
            masker.add(&token);
            let mut v = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
                SettingsError::Invalid {
                    what: what("basic_auth_username"),
                    message: "not usable in an HTTP header".into(),
                }
            })?;
            // Kept out of reqwest's Debug output and off cross-host redirects.
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let client = tls
            .client_builder()?
            .default_headers(headers)
            .build()
            .map_err(|e| SettingsError::Client(e.to_string()))?;
        Ok(Endpoint {
            service,
            scheme: opts.scheme.unwrap_or_default(),
            tls,
            auth: auth.map(|(username, _, password_origin)| BasicAuth {
                username,
                password_origin,
            }),
            client,
        })
    }

    pub fn service(&self) -> Service {
        self.service
    }

    /// The scheme of URLs built from a host's ip and port.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn tls(&self) -> &TlsOptions {
        &self.tls
    }

    /// The client of every request to this service (its TLS; its credentials, if any, on
    /// every request).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The message for an HTTP 401 from `url`: which credentials were sent (none, or whose)
    /// and which settings to fix.
    pub fn unauthorized(&self, url: &str) -> String {
        let key = self.service.key();
        let pw = format!("{key}_{PASSWORD_KEY}");
        let fix = format!(
            "{key}_basic_auth_username (inventory variable or promfleet.yml `{key}:`) and the \
             secret {pw} (--secrets file or {}); see README, \"Prometheus and Alertmanager \
             behind TLS / basic auth\"",
            Secrets::env_name(&pw)
        );
        match &self.auth {
            None => format!(
                "{url}: HTTP 401 Unauthorized — {} asks for credentials and none are set: set {fix}",
                self.service.title()
            ),
            Some(a) => format!(
                "{url}: HTTP 401 Unauthorized — {} refused user `{}` with the password from {}: \
                 fix {fix}",
                self.service.title(),
                a.username,
                a.password_origin
            ),
        }
    }

    /// The message for `status` from `url` when it is one these settings can fix (401).
    pub fn explain(&self, status: u16, url: &str) -> Option<String> {
        (status == 401).then(|| self.unauthorized(url))
    }
}

/// Both services' endpoints of a run, resolved once.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub prometheus: Endpoint,
    pub alertmanager: Endpoint,
}

/// Where each source of these settings is.
pub struct Sources<'a> {
    pub secrets: &'a Secrets,
    /// The first monitoring host's variables (else the inventory's), and the inventory
    /// file's directory.
    pub inventory_vars: &'a Vars,
    pub inventory_dir: Option<&'a Path>,
    /// The project config file's `prometheus:` and `alertmanager:` blocks, and its directory.
    pub project: &'a ProjectEndpoints,
    pub project_dir: Option<&'a Path>,
}

/// The project file's blocks (`prometheus:`, `alertmanager:`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectEndpoints {
    pub prometheus: EndpointOptions,
    pub alertmanager: EndpointOptions,
}

impl ProjectEndpoints {
    pub fn get(&self, s: Service) -> &EndpointOptions {
        match s {
            Service::Prometheus => &self.prometheus,
            Service::Alertmanager => &self.alertmanager,
        }
    }

    pub fn get_mut(&mut self, s: Service) -> &mut EndpointOptions {
        match s {
            Service::Prometheus => &mut self.prometheus,
            Service::Alertmanager => &mut self.alertmanager,
        }
    }
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            prometheus: Endpoint::plain(Service::Prometheus),
            alertmanager: Endpoint::plain(Service::Alertmanager),
        }
    }
}

impl Endpoints {
    /// Resolve both services (see the module comment for the precedence); the passwords are
    /// registered with the secrets' masker before anything can print them.
    pub fn resolve(s: &Sources<'_>) -> Result<Endpoints, SettingsError> {
        Ok(Endpoints {
            prometheus: resolve_one(Service::Prometheus, s)?,
            alertmanager: resolve_one(Service::Alertmanager, s)?,
        })
    }

    pub fn get(&self, s: Service) -> &Endpoint {
        match s {
            Service::Prometheus => &self.prometheus,
            Service::Alertmanager => &self.alertmanager,
        }
    }

    /// The resolved schemes written into the inventory's variables (`prometheus_scheme`,
    /// `alertmanager_scheme`), which is what playbooks and `status` build URLs from.
    pub fn apply_to(&self, inv: &mut crate::inventory::Inventory) {
        for svc in Service::ALL {
            inv.vars.insert(
                format!("{}_scheme", svc.key()),
                Value::String(self.get(svc).scheme.as_str().into()),
            );
        }
    }
}

fn resolve_one(svc: Service, s: &Sources<'_>) -> Result<Endpoint, SettingsError> {
    let key = svc.key();
    let mut secret = EndpointOptions::default();
    for k in OPTION_KEYS {
        let name = format!("{key}_{k}");
        if let Some(v) = s.secrets.setting(&name) {
            secret
                .set(k, &v)
                .map_err(|message| SettingsError::Invalid {
                    what: format!("{name} (from {})", s.secrets.origin(&name)),
                    message,
                })?;
        }
    }
    let mut inventory = EndpointOptions::default();
    for k in OPTION_KEYS.iter().chain([&PASSWORD_KEY]) {
        let name = format!("{key}_{k}");
        let text = match s.inventory_vars.get(&name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(v)) if v.trim().is_empty() => continue,
            Some(Value::String(v)) => v.trim().to_owned(),
            Some(other) => other.to_string(),
        };
        inventory
            .set(k, &text)
            .map_err(|message| SettingsError::Invalid {
                what: format!("inventory variable {name}"),
                message,
            })?;
    }
    let opts = secret
        .rebased(s.secrets.file_dir())
        .or(inventory.rebased(s.inventory_dir))
        .or(s.project.get(svc).clone().rebased(s.project_dir));
    let pw_name = format!("{key}_{PASSWORD_KEY}");
    let password = s.secrets.setting(&pw_name).map(|v| {
        s.secrets.masker().add(&v);
        (v, s.secrets.origin(&pw_name))
    });
    Endpoint::build(svc, opts, password, s.secrets.masker())
}
