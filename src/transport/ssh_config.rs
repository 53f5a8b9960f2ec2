//! `~/.ssh/config` as OpenSSH resolves it, by asking OpenSSH: `ssh -G` prints the options it
//! would use for a destination after `Host`/`Match` blocks (host, originalhost, user,
//! localuser, exec, all, …), `Include`, first-value-wins and tokens. No Rust crate does all
//! of that faithfully (ssh2-config has no `Match`, no tokens), and a second implementation
//! would drift from the one the operator's own `ssh` uses.
//!
//! One `ssh -G` per distinct (destination, user, port, jump chain), cached for the run, run
//! concurrently (each host resolves when the executor first connects it). Inventory settings
//! win over the config: they are passed as `-l user -p port`, as Ansible passes them, so
//! `Match user` sees them. `ssh -G` also prints OpenSSH's built-in defaults; a value equal to
//! the default (learnt once from `ssh -G -F none`) counts as "not set", so promfleet's own
//! flags (`--user`, `--known-hosts`, `--connect-timeout`, `--keepalive`) still apply.
//! Without an `ssh` binary there is no config at all (the CLI warns once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::keys::{default_key_files, expand_home};
use super::{StrictHostKeyChecking, Target, TransportError};
use crate::inventory::Host;

/// ProxyJump hops followed before giving up (a config can make bastions jump through each
/// other in a cycle).
const MAX_JUMP_DEPTH: usize = 8;

/// `ssh -G` runs local commands for `Match exec`: a hanging one must not hang the run.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);

/// The client config every connection is resolved through.
pub struct SshConfig {
    /// The `ssh` binary, or `None` when there is none (then: no config).
    ssh: Option<PathBuf>,
    /// Which config files `ssh` reads.
    file: ConfigFile,
    cache: Mutex<HashMap<Query, Arc<OnceCell<Arc<Resolved>>>>>,
    /// IdentityFile → its expansion, for files that expand the same for every host.
    expanded: Mutex<HashMap<String, PathBuf>>,
    /// OpenSSH's built-in defaults (`ssh -G -F none`), to tell set values from defaults.
    defaults: OnceCell<Resolved>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ConfigFile {
    /// ssh's own lookup: `~/.ssh/config`, then `/etc/ssh/ssh_config`.
    Lookup,
    /// `-F path` (ssh then reads only that file, as `ssh -F` does).
    File(PathBuf),
    /// `-F none`: no config file at all.
    Nothing,
}

/// One `ssh -G` question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Query {
    destination: String,
    user: Option<String>,
    port: Option<u16>,
    /// ProxyJump given on the command line (the rest of a chain, for a bastion).
    jump: Option<String>,
    /// `-o Key=Value` options from the inventory (Ansible's `ansible_ssh_common_args`).
    options: Vec<(String, String)>,
}

/// OpenSSH's answer for one destination: the options promfleet uses, as `ssh -G` prints them.
#[derive(Debug, Clone, Default, PartialEq)]
struct Resolved {
    hostname: String,
    user: String,
    port: u16,
    /// As configured (tokens unexpanded: `ssh -G` prints them so).
    identity_files: Vec<String>,
    /// The same, expanded by ssh itself (`~`, `%h`, `%r`, `${VAR}`, …).
    identity_paths: Vec<PathBuf>,
    identities_only: bool,
    proxy_jump: Option<String>,
    proxy_command: Option<String>,
    user_known_hosts: Vec<PathBuf>,
    global_known_hosts: Vec<PathBuf>,
    strict_host_key_checking: String,
    hash_known_hosts: bool,
    /// Seconds; `None` for `none`.
    connect_timeout: Option<u64>,
    server_alive_interval: u64,
    server_alive_count_max: u32,
    host_key_alias: Option<String>,
}

impl SshConfig {
    /// The config named by `--ssh-config`: the default `~/.ssh/config` means ssh's normal
    /// lookup (which also reads `/etc/ssh/ssh_config`); another existing file is `ssh -F file`;
    /// a missing file is no config (not an error).
    pub fn new(path: &Path) -> SshConfig {
        let file = if path == Path::new(DEFAULT_PATH) {
            ConfigFile::Lookup
        } else {
            let p = expand_home(path);
            if p.exists() {
                ConfigFile::File(p)
            } else {
                ConfigFile::Nothing
            }
        };
        SshConfig {
            ssh: find_in_path("ssh"),
            file,
            cache: Mutex::default(),
            expanded: Mutex::default(),
            defaults: OnceCell::new(),
        }
    }

    /// No config: inventory settings and defaults only.
    pub fn none() -> SshConfig {
        SshConfig {
            ssh: None,
            file: ConfigFile::Nothing,
            cache: Mutex::default(),
            expanded: Mutex::default(),
            defaults: OnceCell::new(),
        }
    }

    /// Why the config is ignored, if it is (shown once per run by the CLI).
    pub fn warning(&self) -> Option<String> {
        if self.ssh.is_some() || self.file == ConfigFile::Nothing {
            return None;
        }
        Some(
            "OpenSSH's `ssh` is not installed: ~/.ssh/config is ignored (promfleet resolves \
             it with `ssh -G`); hosts use the inventory's settings and defaults"
                .into(),
        )
    }

    /// Where and how to reach an inventory host: OpenSSH's resolution of its address (the
    /// inventory's `ssh.address`, else its ip), with the inventory's user and port passed as
    /// `-l`/`-p`. `fallback_user` (`--user`) applies when neither names a user.
    pub async fn target(
        &self,
        host: &Host,
        fallback_user: Option<&str>,
    ) -> Result<Target, TransportError> {
        let alias = host
            .ssh
            .address
            .clone()
            .unwrap_or_else(|| host.ip.to_string());
        let err = |message: String| TransportError::Config {
            host: host.name.clone(),
            message,
        };
        let Some(ssh) = &self.ssh else {
            if !host.ssh.options.is_empty() {
                return Err(err(
                    "the inventory passes ssh options (ansible_ssh_common_args), which promfleet \
                     applies through OpenSSH's `ssh -G`, and `ssh` is not installed"
                        .into(),
                ));
            }
            return Ok(self.target_without_ssh(host, alias, fallback_user));
        };
        let query = Query {
            destination: alias,
            user: host.ssh.user.clone(),
            port: host.ssh.port,
            jump: None,
            options: host.ssh.options.clone(),
        };
        let defaults = self.defaults(ssh).await.map_err(err)?;
        let r = self.resolve(ssh, &query).await.map_err(err)?;
        let mut t = self
            .to_target(ssh, &query, &r, defaults, 0)
            .await
            .map_err(err)?;
        t.name = host.name.clone();
        if host.ssh.user.is_none()
            && let Some(u) = fallback_user
            && r.user == defaults.user
        {
            // Nothing named a user: `--user` beats OpenSSH's default (the local user).
            t.user = u.to_string();
        }
        if let Some(k) = &host.ssh.key {
            // An inventory key is the identity to use, and the only one (like IdentitiesOnly).
            t.keys = vec![expand_home(k)];
            t.keys_explicit = true;
            t.identities_only = true;
        }
        t.become_root = host.ssh.become_root.unwrap_or(false);
        Ok(t)
    }

    fn target_without_ssh(&self, host: &Host, alias: String, fallback: Option<&str>) -> Target {
        let (keys, explicit) = match &host.ssh.key {
            Some(k) => (vec![expand_home(k)], true),
            None => (default_key_files(), false),
        };
        Target {
            name: host.name.clone(),
            address: alias,
            port: host.ssh.port.unwrap_or(22),
            user: host
                .ssh
                .user
                .clone()
                .or_else(|| fallback.map(str::to_string))
                .or_else(|| {
                    crate::settings::Env::current()
                        .get("USER")
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "root".into()),
            identities_only: explicit,
            keys,
            keys_explicit: explicit,
            become_root: host.ssh.become_root.unwrap_or(false),
            ..Target::default()
        }
    }

    /// Build a target from `r` (the answer to `query`), its ProxyJump hops resolved too.
    fn to_target<'a>(
        &'a self,
        ssh: &'a Path,
        query: &'a Query,
        r: &'a Resolved,
        d: &'a Resolved,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Result<Target, String>> {
        Box::pin(async move {
            if let Some(cmd) = &r.proxy_command {
                return Err(format!(
                    "ProxyCommand ({cmd}) is not supported: use ProxyJump, or ProxyJump none for this host"
                ));
            }
            let jump = match &r.proxy_jump {
                None => None,
                Some(chain) => {
                    if depth >= MAX_JUMP_DEPTH {
                        return Err(format!(
                            "ProxyJump of {} goes more than {MAX_JUMP_DEPTH} bastions deep (a cycle in the config?)",
                            query.destination
                        ));
                    }
                    Some(Box::new(self.jump_target(ssh, chain, d, depth + 1).await?))
                }
            };
            Ok(Target {
                name: query.destination.clone(),
                address: r.hostname.clone(),
                port: r.port,
                user: r.user.clone(),
                keys: r.identity_paths.clone(),
                keys_explicit: r.identity_files != d.identity_files,
                jump,
                become_root: false,
                become_password: None,
                host_key_alias: r.host_key_alias.clone(),
                user_known_hosts: if r.user_known_hosts == d.user_known_hosts {
                    Vec::new()
                } else {
                    r.user_known_hosts.clone()
                },
                global_known_hosts: r.global_known_hosts.clone(),
                strict_host_key_checking: if r.strict_host_key_checking
                    == d.strict_host_key_checking
                {
                    None
                } else {
                    strict(&r.strict_host_key_checking)
                },
                hash_known_hosts: r.hash_known_hosts,
                identities_only: r.identities_only,
                // `ConnectTimeout 0` is no timeout in OpenSSH: the run's bound applies.
                connect_timeout: r
                    .connect_timeout
                    .filter(|&s| s > 0 && r.connect_timeout != d.connect_timeout)
                    .map(Duration::from_secs),
                server_alive_interval: (r.server_alive_interval != d.server_alive_interval
                    && r.server_alive_interval > 0)
                    .then(|| Duration::from_secs(r.server_alive_interval)),
                server_alive_count_max: (r.server_alive_count_max != d.server_alive_count_max)
                    .then_some(r.server_alive_count_max),
            })
        })
    }

    /// `ProxyJump a,b`: connect through `b`, which is reached through `a` — as OpenSSH runs
    /// `ssh -J a b` for the last hop. Each bastion is resolved through the config on its own:
    /// its own User (else the local user, never the target's), keys, port.
    async fn jump_target(
        &self,
        ssh: &Path,
        chain: &str,
        d: &Resolved,
        depth: usize,
    ) -> Result<Target, String> {
        let (rest, last) = match chain.rsplit_once(',') {
            Some((rest, last)) => (Some(rest.to_string()), last),
            None => (None, chain),
        };
        let (user, host, port) = parse_jump(last)?;
        // The inventory's options are the target host's, not its bastions' (as `ssh -o … -J`).
        let query = Query {
            destination: host,
            user,
            port,
            jump: rest,
            options: Vec::new(),
        };
        let r = self.resolve(ssh, &query).await?;
        let mut t = self.to_target(ssh, &query, &r, d, depth).await?;
        t.name = format!("jump {}", query.destination);
        Ok(t)
    }

    async fn defaults(&self, ssh: &Path) -> Result<&Resolved, String> {
        self.defaults
            .get_or_try_init(|| async {
                let args = vec![
                    "-F".into(),
                    "none".into(),
                    "--".into(),
                    "promfleet.invalid".into(),
                ];
                let text = run_ssh_g(ssh, &args).await?;
                parse(&text)
            })
            .await
    }

    async fn resolve(&self, ssh: &Path, q: &Query) -> Result<Arc<Resolved>, String> {
        let cell = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.entry(q.clone()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let args = self.args(q, &[]);
            let mut r = parse(&run_ssh_g(ssh, &args).await?)?;
            r.identity_paths = self.expand_identities(ssh, q, &r).await?;
            Ok::<_, String>(Arc::new(r))
        })
        .await
        .cloned()
    }

    /// IdentityFile as OpenSSH expands it before loading: `ssh -G` prints it unexpanded, but
    /// expands UserKnownHostsFile with the same function (tilde, `%` tokens, `${VAR}`), so ssh
    /// is asked once more with the identity files in that option's place.
    async fn expand_identities(
        &self,
        ssh: &Path,
        q: &Query,
        r: &Resolved,
    ) -> Result<Vec<PathBuf>, String> {
        if r.identity_files.is_empty() {
            return Ok(Vec::new());
        }
        if r.identity_files
            .iter()
            .any(|f| f.chars().any(char::is_whitespace) || f.contains('"'))
        {
            return Err(format!(
                "an IdentityFile with a space or a quote is not supported: {:?}",
                r.identity_files
            ));
        }
        // A file without `%` or `$` expands the same for every host (only `~`): ask once.
        let host_free = |f: &str| !f.contains('%') && !f.contains('$');
        {
            let known = self.expanded.lock().unwrap_or_else(|p| p.into_inner());
            let cached: Option<Vec<PathBuf>> = r
                .identity_files
                .iter()
                .map(|f| known.get(f).cloned())
                .collect();
            if let Some(paths) = cached {
                return Ok(paths);
            }
        }
        let files = r.identity_files.join(" ");
        let args = self.args(q, &["-o".into(), format!("UserKnownHostsFile={files}")]);
        let expanded = parse(&run_ssh_g(ssh, &args).await?)?.user_known_hosts;
        if expanded.len() != r.identity_files.len() {
            return Err(format!(
                "ssh expanded {} identity files into {}: {expanded:?}",
                r.identity_files.len(),
                expanded.len()
            ));
        }
        let mut known = self.expanded.lock().unwrap_or_else(|p| p.into_inner());
        for (raw, path) in r.identity_files.iter().zip(&expanded) {
            if host_free(raw) {
                known.insert(raw.clone(), path.clone());
            }
        }
        Ok(expanded)
    }

    fn args(&self, q: &Query, extra: &[String]) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        match &self.file {
            ConfigFile::Lookup => {}
            ConfigFile::File(p) => {
                a.push("-F".into());
                a.push(p.display().to_string());
            }
            ConfigFile::Nothing => a.extend(["-F".into(), "none".into()]),
        }
        if let Some(u) = &q.user {
            a.extend(["-l".into(), u.clone()]);
        }
        if let Some(p) = q.port {
            a.extend(["-p".into(), p.to_string()]);
        }
        if let Some(j) = &q.jump {
            a.extend(["-J".into(), j.clone()]);
        }
        // OpenSSH keeps an option's first value: `extra` (the identity-file expansion's own
        // UserKnownHostsFile) must beat the inventory's; the inventory's user and port (-l/-p)
        // beat a `-o User=`/`-o Port=`, as on the command line Ansible builds.
        a.extend(extra.iter().cloned());
        for (k, v) in &q.options {
            a.extend(["-o".into(), format!("{k}={v}")]);
        }
        a.push("--".into());
        a.push(q.destination.clone());
        a
    }
}

/// Inventory names resolved as `ssh NAME` resolves them: the `HostName` OpenSSH would connect
/// to (after `Host`/`Match` blocks and tokens: `ssh -G NAME`), then the system resolver, so a
/// host known only as an alias in the operator's ssh config gets the address ssh reaches
/// (registered in Consul, scraped). Without `ssh` (or with `-F none`), the name itself.
/// Blocking (one `ssh -G` per distinct name): it runs on the inventory's lookup threads, whose
/// per-lookup deadline also bounds a hanging `Match exec`.
pub struct HostnameResolver {
    config: SshConfig,
}

impl SshConfig {
    /// The resolver of inventory names through this config.
    pub fn hostname_resolver(path: &Path) -> HostnameResolver {
        HostnameResolver {
            config: SshConfig::new(path),
        }
    }
}

impl HostnameResolver {
    /// What `ssh -G` gives as `hostname` for the name with the host's login (`-l user -p
    /// port -o …`, as the connection asks: `Match user`, `Match exec "… %r"` see that user);
    /// the name itself without ssh or config.
    fn hostname(&self, l: &crate::inventory::Lookup) -> Result<String, String> {
        let name = l.name.as_str();
        let Some(ssh) = &self.config.ssh else {
            return Ok(name.to_owned());
        };
        if self.config.file == ConfigFile::Nothing {
            return Ok(name.to_owned());
        }
        let q = Query {
            destination: name.to_owned(),
            user: l.user.clone(),
            port: l.port,
            jump: None,
            options: l.options.clone(),
        };
        let args = self.config.args(&q, &[]);
        let shown = || format!("ssh -G {}", args.join(" "));
        let out = std::process::Command::new(ssh)
            .arg("-G")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("{}: {e}", shown()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!("{} failed: {}", shown(), stderr.trim()));
        }
        let text = String::from_utf8(out.stdout)
            .map_err(|_| format!("{}: output is not UTF-8", shown()))?;
        let hostname = parse(&text)?.hostname;
        Ok(if hostname.is_empty() {
            name.to_owned()
        } else {
            hostname
        })
    }
}

impl crate::inventory::Resolver for HostnameResolver {
    fn lookup(&self, name: &str) -> Result<Vec<std::net::IpAddr>, String> {
        self.lookup_as(&crate::inventory::Lookup {
            name: name.to_owned(),
            user: None,
            port: None,
            options: Vec::new(),
        })
    }

    fn lookup_as(&self, l: &crate::inventory::Lookup) -> Result<Vec<std::net::IpAddr>, String> {
        let name = l.name.as_str();
        let target = self.hostname(l)?;
        if let Ok(ip) = target.parse::<std::net::IpAddr>() {
            return Ok(vec![ip]);
        }
        crate::inventory::SystemResolver
            .lookup(&target)
            .map_err(|e| match target == name {
                true => e,
                false => format!("{e} (its ssh config HostName is `{target}`)"),
            })
    }
}

/// The value of `--ssh-config` that means "ssh's own lookup".
pub const DEFAULT_PATH: &str = "~/.ssh/config";

/// `yes`/`ask` (ask is yes in batch mode), `accept-new`, `no`/`off`.
fn strict(v: &str) -> Option<StrictHostKeyChecking> {
    match v {
        "yes" | "true" | "ask" => Some(StrictHostKeyChecking::Yes),
        "accept-new" => Some(StrictHostKeyChecking::AcceptNew),
        "no" | "false" | "off" => Some(StrictHostKeyChecking::No),
        _ => None,
    }
}

/// One ProxyJump hop: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
fn parse_jump(spec: &str) -> Result<(Option<String>, String, Option<u16>), String> {
    let spec = spec.trim();
    let spec = spec.strip_prefix("ssh://").unwrap_or(spec);
    let (user, rest) = match spec.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, spec),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        // [v6]:port or [v6]
        match inner.split_once(']') {
            Some((h, p)) => (h.to_string(), p.strip_prefix(':')),
            None => return Err(format!("ProxyJump hop {spec:?}: unbalanced [")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            _ => (rest.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("ProxyJump hop {spec:?}: bad port {p:?}"))?,
        ),
        None => None,
    };
    if host.is_empty() {
        return Err(format!("ProxyJump hop {spec:?}: no host"));
    }
    Ok((user, host, port))
}

async fn run_ssh_g(ssh: &Path, args: &[String]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(ssh);
    cmd.arg("-G")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let shown = || format!("ssh -G {}", args.join(" "));
    let out = match tokio::time::timeout(RESOLVE_TIMEOUT, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("{}: {e}", shown())),
        Err(_) => {
            return Err(format!(
                "{} did not answer within {}s (a Match exec command that hangs?)",
                shown(),
                RESOLVE_TIMEOUT.as_secs()
            ));
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr
            .lines()
            .filter(|l| !l.starts_with("Pseudo-terminal will not be allocated"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(format!("{} failed: {why}", shown()));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{}: output is not UTF-8", shown()))
}

/// `ssh -G` output: one `key value` per line, keys lower-case, repeated keys for lists.
fn parse(text: &str) -> Result<Resolved, String> {
    let mut r = Resolved {
        port: 22,
        server_alive_count_max: 3,
        ..Resolved::default()
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let value = value.trim();
        let num = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("ssh -G printed {what} {value:?}"))
        };
        match key {
            "hostname" => r.hostname = value.to_string(),
            "user" => r.user = value.to_string(),
            "port" => {
                r.port = u16::try_from(num("port")?).map_err(|_| format!("port {value}"))?;
            }
            "identityfile" => r.identity_files.push(value.to_string()),
            "identitiesonly" => r.identities_only = value == "yes",
            "proxyjump" if value != "none" => r.proxy_jump = Some(value.to_string()),
            "proxycommand" if value != "none" => r.proxy_command = Some(value.to_string()),
            "userknownhostsfile" => r.user_known_hosts = paths(value),
            "globalknownhostsfile" => r.global_known_hosts = paths(value),
            "stricthostkeychecking" => r.strict_host_key_checking = value.to_string(),
            "hashknownhosts" => r.hash_known_hosts = value == "yes",
            "connecttimeout" => {
                r.connect_timeout = (value != "none")
                    .then(|| num("connecttimeout"))
                    .transpose()?;
            }
            "serveraliveinterval" => r.server_alive_interval = num("serveraliveinterval")?,
            "serveralivecountmax" => {
                r.server_alive_count_max = u32::try_from(num("serveralivecountmax")?)
                    .map_err(|_| format!("serveralivecountmax {value}"))?;
            }
            "hostkeyalias" if value != "none" => r.host_key_alias = Some(value.to_string()),
            _ => {}
        }
    }
    if r.hostname.is_empty() || r.user.is_empty() {
        return Err(format!(
            "unexpected ssh -G output (no hostname or user): {:?}",
            text.lines().take(3).collect::<Vec<_>>()
        ));
    }
    Ok(r)
}

fn paths(value: &str) -> Vec<PathBuf> {
    value.split_whitespace().map(PathBuf::from).collect()
}

/// An executable named `name` in `$PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = crate::settings::Env::current().get("PATH")?;
    std::env::split_paths(path).map(|d| d.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_lists_and_none() {
        let r = parse(
            "host web\nhostname web.lan\nuser deploy\nport 2222\nidentityfile ~/.ssh/a\n\
             identityfile %d/b\nidentitiesonly yes\nproxyjump a,b@c:22\n\
             userknownhostsfile /k1 /k2\nglobalknownhostsfile /g\nstricthostkeychecking accept-new\n\
             hashknownhosts yes\nconnecttimeout none\nserveraliveinterval 5\nserveralivecountmax 2\n\
             hostkeyalias web-key\n",
        )
        .expect("parse");
        assert_eq!(r.hostname, "web.lan");
        assert_eq!(r.user, "deploy");
        assert_eq!(r.port, 2222);
        assert_eq!(r.identity_files, vec!["~/.ssh/a", "%d/b"]);
        assert!(r.identities_only && r.hash_known_hosts);
        assert_eq!(r.proxy_jump.as_deref(), Some("a,b@c:22"));
        assert_eq!(r.user_known_hosts, vec![PathBuf::from("/k1"), "/k2".into()]);
        assert_eq!(r.connect_timeout, None);
        assert_eq!((r.server_alive_interval, r.server_alive_count_max), (5, 2));
        assert_eq!(r.host_key_alias.as_deref(), Some("web-key"));
    }

    #[test]
    fn jump_hops() {
        assert_eq!(
            parse_jump("alice@b1:2200").expect("hop"),
            (Some("alice".into()), "b1".into(), Some(2200))
        );
        assert_eq!(parse_jump("b2").expect("hop"), (None, "b2".into(), None));
        assert_eq!(
            parse_jump("ssh://u@[::1]:22").expect("hop"),
            (Some("u".into()), "::1".into(), Some(22))
        );
        assert!(parse_jump("b:port").is_err());
    }
}
