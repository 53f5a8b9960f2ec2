//! Consul's connection settings — agents, ACL token, TLS — resolved once from every source,
//! with Consul's own variable names and meanings. Precedence, per setting, first set wins:
//!
//! 1. the environment: `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`, `CONSUL_HTTP_SSL`,
//!    `CONSUL_HTTP_SSL_VERIFY`, `CONSUL_CACERT`, `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`,
//!    `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`;
//! 2. the secrets: `PROMFLEET_SECRET_CONSUL_<KEY>`, else `consul_<key>` in the `--secrets`
//!    file (`consul_token`, `consul_ca_file`, …);
//! 3. the inventory's `consul:` block (paths relative to the inventory file);
//! 4. the project config file's `consul:` block (paths relative to that file);
//! 5. defaults: no token, the public CA roots, verification on.
//!
//! The agents are the inventory's `consul.agents` (they are also what Prometheus discovers
//! through); `CONSUL_HTTP_ADDR` is used only when the inventory names none, so that a
//! variable left in a shell cannot point registration away from discovery.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Env, SettingsError, TlsOptions, parse_bool, relative_to};
use crate::inventory::AgentUrl;
use crate::modules::consul::ConsulClient;
use crate::playbook::Secrets;

/// Consul client options as one source gives them (inventory `consul:` block, project file,
/// secrets file); `None` means "not given here".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsulOptions {
    /// `https` for `CONSUL_HTTP_ADDR` without a scheme (`CONSUL_HTTP_SSL`).
    pub ssl: Option<bool>,
    pub ssl_verify: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    /// A file holding the ACL token (never the token itself: inventories live in repos).
    pub token_file: Option<PathBuf>,
    /// `DeregisterCriticalServiceAfter` of every registered check (a Consul duration, e.g.
    /// `90m`); unset: Consul never removes a critical service by itself (the seed's choice).
    pub deregister_critical_service_after: Option<String>,
    /// The cluster stack's own TLS (`consul_tls: true`, templates/consul/): the certificate
    /// and key of the Consul servers (must name `server.<dc>.<domain>`) and of the client
    /// agents, deployed into their containers. The CA is `ca_file`/`ca_path`, the one the
    /// fleet trusts.
    pub server_cert: Option<PathBuf>,
    pub server_key: Option<PathBuf>,
    pub agent_cert: Option<PathBuf>,
    pub agent_key: Option<PathBuf>,
}

/// The keys of `ConsulOptions` as written in the inventory, the project file and, prefixed
/// with `consul_`, the secrets file and Ansible variables: the one list of them (the
/// promfleet inventory's `consul:` map adds only `agents` and `datacenter`).
pub const OPTION_KEYS: &[&str] = &[
    "ssl",
    "ssl_verify",
    "ca_file",
    "ca_path",
    "client_cert",
    "client_key",
    "tls_server_name",
    "token_file",
    "deregister_critical_service_after",
    "server_cert",
    "server_key",
    "agent_cert",
    "agent_key",
];

impl ConsulOptions {
    /// Set one option from its key and text; `Err` names what is wrong with the value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let path = || Some(PathBuf::from(value));
        match key {
            "ssl" => self.ssl = Some(parse_bool(key, value).map_err(|e| e.to_string())?),
            "ssl_verify" => {
                self.ssl_verify = Some(parse_bool(key, value).map_err(|e| e.to_string())?)
            }
            "ca_file" => self.ca_file = path(),
            "ca_path" => self.ca_path = path(),
            "client_cert" => self.client_cert = path(),
            "client_key" => self.client_key = path(),
            "tls_server_name" => self.tls_server_name = Some(value.to_owned()),
            "token_file" => self.token_file = path(),
            "server_cert" => self.server_cert = path(),
            "server_key" => self.server_key = path(),
            "agent_cert" => self.agent_cert = path(),
            "agent_key" => self.agent_key = path(),
            "deregister_critical_service_after" => {
                if crate::base::clock::parse_duration(value).is_none() {
                    return Err(format!("`{value}` is not a duration such as 90m or 1h"));
                }
                self.deregister_critical_service_after = Some(value.to_owned());
            }
            _ => return Err(format!("unknown key (known: {})", OPTION_KEYS.join(", "))),
        }
        Ok(())
    }

    /// Paths made relative to `base` (the directory of the file that named them).
    pub(crate) fn rebased(mut self, base: Option<&Path>) -> ConsulOptions {
        for p in [
            &mut self.ca_file,
            &mut self.ca_path,
            &mut self.client_cert,
            &mut self.client_key,
            &mut self.token_file,
            &mut self.server_cert,
            &mut self.server_key,
            &mut self.agent_cert,
            &mut self.agent_key,
        ] {
            if let Some(v) = p.take() {
                *p = Some(relative_to(base, &v));
            }
        }
        self
    }

    /// `self`'s values, else `lower`'s.
    pub(crate) fn or(self, lower: ConsulOptions) -> ConsulOptions {
        ConsulOptions {
            ssl: self.ssl.or(lower.ssl),
            ssl_verify: self.ssl_verify.or(lower.ssl_verify),
            ca_file: self.ca_file.or(lower.ca_file),
            ca_path: self.ca_path.or(lower.ca_path),
            client_cert: self.client_cert.or(lower.client_cert),
            client_key: self.client_key.or(lower.client_key),
            tls_server_name: self.tls_server_name.or(lower.tls_server_name),
            token_file: self.token_file.or(lower.token_file),
            deregister_critical_service_after: self
                .deregister_critical_service_after
                .or(lower.deregister_critical_service_after),
            server_cert: self.server_cert.or(lower.server_cert),
            server_key: self.server_key.or(lower.server_key),
            agent_cert: self.agent_cert.or(lower.agent_cert),
            agent_key: self.agent_key.or(lower.agent_key),
        }
    }
}

/// The ACL token and where it came from (for messages; never the value).
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub origin: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(from {})", self.origin)
    }
}

/// Everything promfleet needs to talk to Consul, resolved once per run.
#[derive(Debug, Clone)]
pub struct Consul {
    agents: Vec<String>,
    /// Where the agents run (from the inventory: `Inventory::consul_placement`).
    placement: crate::modules::consul::Placement,
    datacenter: Option<String>,
    token: Option<Token>,
    tls: TlsOptions,
    deregister_critical_service_after: Option<String>,
    /// The cluster agents' certificates and keys (`ConsulOptions::server_cert` …).
    cluster_tls: ClusterTls,
}

/// The certificates and keys of the cluster stack's own agents (README "Consul").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterTls {
    pub server_cert: Option<PathBuf>,
    pub server_key: Option<PathBuf>,
    pub agent_cert: Option<PathBuf>,
    pub agent_key: Option<PathBuf>,
}

/// Where each source of Consul settings is.
pub struct Sources<'a> {
    pub env: &'a Env,
    pub secrets: &'a Secrets,
    /// The inventory's `consul:` block, its agents and the inventory file's directory.
    pub inventory: &'a crate::inventory::ConsulSettings,
    pub inventory_dir: Option<&'a Path>,
    /// The project config file's `consul:` block and that file's directory.
    pub project: &'a ConsulOptions,
    pub project_dir: Option<&'a Path>,
}

impl Consul {
    /// Resolve every setting (see the module comment for the precedence).
    pub fn resolve(s: &Sources<'_>) -> Result<Consul, SettingsError> {
        let env = env_options(s.env)?;
        let secrets = secret_options(s.secrets)?;
        let opts = env
            .or(secrets)
            .or(s.inventory.options.clone().rebased(s.inventory_dir))
            .or(s.project.clone().rebased(s.project_dir));
        let mut agents = s.inventory.agents.clone();
        if agents.is_empty()
            && let Some(addr) = s.env.get("CONSUL_HTTP_ADDR")
        {
            agents.push(http_addr(addr, opts.ssl.unwrap_or(false))?);
        }
        let token = resolve_token(s, &opts)?;
        if let Some(t) = &token {
            s.secrets.masker().add(&t.value);
        }
        let tls = TlsOptions {
            ca_file: opts.ca_file,
            ca_path: opts.ca_path,
            client_cert: opts.client_cert,
            client_key: opts.client_key,
            server_name: opts.tls_server_name,
            verify: opts.ssl_verify.unwrap_or(true),
        };
        Ok(Consul {
            agents,
            placement: Default::default(),
            datacenter: s.inventory.datacenter.clone(),
            token,
            tls,
            deregister_critical_service_after: opts.deregister_critical_service_after,
            cluster_tls: ClusterTls {
                server_cert: opts.server_cert,
                server_key: opts.server_key,
                agent_cert: opts.agent_cert,
                agent_key: opts.agent_key,
            },
        })
    }

    pub fn agents(&self) -> &[String] {
        &self.agents
    }

    /// Place registrations by where the agents run (HA copies, per-datacenter agents).
    pub fn set_placement(&mut self, placement: crate::modules::consul::Placement) {
        self.placement = placement;
    }

    pub fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    pub fn tls(&self) -> &TlsOptions {
        &self.tls
    }

    pub fn cluster_tls(&self) -> &ClusterTls {
        &self.cluster_tls
    }

    /// Every TLS file of the run by the part name templates ask `consul_tls(part=…)` for:
    /// the fleet's `ca` (file), `ca_dir`, `cert`, `key`, and the cluster agents'
    /// `server_cert`, `server_key`, `agent_cert`, `agent_key` (`Secrets::set_consul_tls_files`).
    pub fn tls_files(&self) -> std::collections::BTreeMap<String, PathBuf> {
        let c = &self.cluster_tls;
        [
            ("ca", &self.tls.ca_file),
            ("ca_dir", &self.tls.ca_path),
            ("cert", &self.tls.client_cert),
            ("key", &self.tls.client_key),
            ("server_cert", &c.server_cert),
            ("server_key", &c.server_key),
            ("agent_cert", &c.agent_cert),
            ("agent_key", &c.agent_key),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)))
        .collect()
    }

    pub fn deregister_critical_service_after(&self) -> Option<&str> {
        self.deregister_critical_service_after.as_deref()
    }

    /// The HTTP client every request to Consul goes through (TLS as resolved).
    pub fn http_client(&self) -> Result<reqwest::Client, SettingsError> {
        self.tls.http_client()
    }

    /// The Consul client of this run: the agents, the token, the TLS client.
    pub fn client(&self) -> Result<Arc<ConsulClient>, SettingsError> {
        let mut c = ConsulClient::new(
            self.agents.clone(),
            self.token.as_ref().map(|t| t.value.clone()),
            self.http_client()?,
        );
        c.set_deregister_critical_service_after(self.deregister_critical_service_after.clone());
        c.set_placement(self.placement.clone());
        Ok(Arc::new(c))
    }

    /// Agents the token would reach over plain http on a non-loopback address, where anyone
    /// on the path can read it (empty without a token).
    pub fn token_over_plain_http(&self) -> Vec<&str> {
        if self.token.is_none() {
            return Vec::new();
        }
        self.agents
            .iter()
            .filter(|a| {
                AgentUrl::parse(a).is_ok_and(|u| u.scheme == "http" && !is_loopback(&u.host))
            })
            .map(String::as_str)
            .collect()
    }

    /// The warning printed once per run when `token_over_plain_http` is not empty.
    pub fn plain_http_warning(&self) -> Option<String> {
        let agents = self.token_over_plain_http();
        (!agents.is_empty()).then(|| {
            format!(
                "the Consul ACL token is sent over plain http to {} — anyone on the network \
                 path can read it; use https:// agents (see README, Consul)",
                agents.join(", ")
            )
        })
    }

    /// The resolved settings written back into the inventory, which is what templates see
    /// (`consul.tls`, `consul.token_set`): the rendered `consul_sd_configs` and the files
    /// deployed beside them then follow the same resolution as the clients.
    pub fn apply_to(&self, inv: &mut crate::inventory::Inventory) {
        inv.consul.agents = self.agents.clone();
        inv.consul.options = ConsulOptions {
            ssl: None,
            ssl_verify: Some(self.tls.verify),
            ca_file: self.tls.ca_file.clone(),
            ca_path: self.tls.ca_path.clone(),
            client_cert: self.tls.client_cert.clone(),
            client_key: self.tls.client_key.clone(),
            tls_server_name: self.tls.server_name.clone(),
            token_file: None,
            deregister_critical_service_after: self.deregister_critical_service_after.clone(),
            server_cert: self.cluster_tls.server_cert.clone(),
            server_key: self.cluster_tls.server_key.clone(),
            agent_cert: self.cluster_tls.agent_cert.clone(),
            agent_key: self.cluster_tls.agent_key.clone(),
        };
    }

    pub fn datacenter(&self) -> Option<&str> {
        self.datacenter.as_deref()
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `CONSUL_HTTP_ADDR` as Consul reads it: `host:port`, or a URL; `https` when it says so or
/// when `CONSUL_HTTP_SSL` is true.
fn http_addr(addr: &str, ssl: bool) -> Result<String, SettingsError> {
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("{}://{addr}", if ssl { "https" } else { "http" })
    };
    AgentUrl::parse(&url)
        .map(|u| u.url())
        .map_err(|why| SettingsError::Invalid {
            what: "CONSUL_HTTP_ADDR".into(),
            message: format!("`{addr}`: {why}"),
        })
}

fn env_options(env: &Env) -> Result<ConsulOptions, SettingsError> {
    let path = |k: &str| env.get(k).map(PathBuf::from);
    Ok(ConsulOptions {
        ssl: env.bool("CONSUL_HTTP_SSL")?,
        ssl_verify: env.bool("CONSUL_HTTP_SSL_VERIFY")?,
        ca_file: path("CONSUL_CACERT"),
        ca_path: path("CONSUL_CAPATH"),
        client_cert: path("CONSUL_CLIENT_CERT"),
        client_key: path("CONSUL_CLIENT_KEY"),
        tls_server_name: env.get("CONSUL_TLS_SERVER_NAME").map(str::to_owned),
        token_file: path("CONSUL_HTTP_TOKEN_FILE"),
        // Consul's CLI has no variable for the agents' own certificates.
        ..ConsulOptions::default()
    })
}

fn secret_options(secrets: &Secrets) -> Result<ConsulOptions, SettingsError> {
    let mut o = ConsulOptions::default();
    for key in OPTION_KEYS {
        let name = format!("consul_{key}");
        if let Some(v) = secrets.setting(&name) {
            o.set(key, &v).map_err(|message| SettingsError::Invalid {
                what: format!("{name} (from {})", secrets.origin(&name)),
                message,
            })?;
        }
    }
    Ok(o.rebased(secrets.file_dir()))
}

/// The token: `CONSUL_HTTP_TOKEN`, else the `consul_token` secret, else a token file
/// (`CONSUL_HTTP_TOKEN_FILE`, `consul_token_file`, the inventory's, the project file's —
/// already merged in `opts`). `CONSUL_HTTP_TOKEN_FILE` comes before the secret, as in Consul,
/// where the environment wins.
fn resolve_token(s: &Sources<'_>, opts: &ConsulOptions) -> Result<Option<Token>, SettingsError> {
    if let Some(t) = s.env.get("CONSUL_HTTP_TOKEN") {
        return Ok(Some(Token {
            value: t.to_owned(),
            origin: "CONSUL_HTTP_TOKEN".into(),
        }));
    }
    let env_file = s.env.get("CONSUL_HTTP_TOKEN_FILE").map(PathBuf::from);
    let from_file = |path: &Path, what: &str| -> Result<Option<Token>, SettingsError> {
        // Consul trims the file's whitespace (a trailing newline is the usual case).
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
            path: path.to_path_buf(),
            what: format!("{what}: cannot read the Consul token — fix the path or unset it"),
            source: e,
        })?;
        let t = text.trim();
        Ok((!t.is_empty()).then(|| Token {
            value: t.to_owned(),
            origin: path.display().to_string(),
        }))
    };
    if let Some(f) = &env_file
        && let Some(t) = from_file(f, "CONSUL_HTTP_TOKEN_FILE")?
    {
        return Ok(Some(t));
    }
    if let Some(v) = s.secrets.setting(crate::playbook::secrets::CONSUL_TOKEN) {
        return Ok(Some(Token {
            value: v,
            origin: s.secrets.origin(crate::playbook::secrets::CONSUL_TOKEN),
        }));
    }
    match &opts.token_file {
        Some(f) if env_file.as_ref() != Some(f) => from_file(f, "consul token_file"),
        _ => Ok(None),
    }
}
