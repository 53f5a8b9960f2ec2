//! The test fleet: real OpenSSH servers on loopback addresses, one per host (or one shared
//! sshd for big fleets), a login user with sudo, keys, known_hosts, the compose stand-in and
//! promfleet's inventory for all of it. Owns every process it starts and kills them on drop;
//! owns a temp dir (`Fleet::root`) and claims on a port and loopback blocks (see `alloc`).
//!
//! Layout of the root dir:
//! `keys/` client keys (root only), `authorized_keys`, `known_hosts`, `bin/` (compose
//! stand-in, its wrapper and the fake exporter), `.sshd/<host>/` (config, host key, pid, log),
//! `<host>/` the host's sandbox owned by the login user (its `exporter-deploy` lives there).

mod alloc;
mod daemon;
mod inventory;
mod keys;
pub(crate) mod proc;
mod system;

pub use inventory::{InventorySpec, MachineVars};
pub use keys::KeyKind;
pub use system::{
    NOSUDO_USER, PASSWORD_SUDO_USER, SUDO_USER, ZSH, ZSH_USER, is_root, sudo_password,
};

pub(crate) use alloc::{Claim, try_claim};
pub use daemon::banner;
pub(crate) use daemon::{Daemon, DaemonSpec, write_config};
pub(crate) use keys::{algo_and_blob, keygen};
pub(crate) use system::prepare as prepare_system;

use anyhow::{Context, Result, bail};
use daemon::Silencer;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Group name of the monitoring host(s) in the inventory.
pub const MONITORING_GROUP: &str = "monitoring";
/// How long a fresh sshd gets to send its banner.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Hosts per loopback /24 (last octet 2..=251).
const HOSTS_PER_OCTET: usize = 250;

/// One host of the fleet.
#[derive(Debug, Clone)]
pub struct Host {
    /// Inventory hostname: `host001`, … or `mon01`.
    pub name: String,
    /// Loopback address its sshd (and later its exporters) listen on.
    pub ip: Ipv4Addr,
    /// Fleet group (round-robin over the builder's groups) or `monitoring`.
    pub group: String,
    /// Sandbox dir owned by the login user; deploy dirs live inside.
    pub dir: PathBuf,
}

impl Host {
    /// The deploy dir written into the inventory (`<sandbox>/exporter-deploy`).
    pub fn deploy_dir(&self) -> PathBuf {
        self.dir.join("exporter-deploy")
    }
}

/// Builder for [`Fleet`].
#[derive(Debug, Clone)]
pub struct FleetBuilder {
    hosts: usize,
    groups: Vec<String>,
    shared: bool,
    trust: bool,
    monitoring: usize,
    consul_agents: Vec<String>,
    fake_node_exporter: bool,
}

impl Default for FleetBuilder {
    fn default() -> Self {
        FleetBuilder {
            hosts: 3,
            groups: vec!["IDE".into(), "Stage".into(), "Pet".into()],
            shared: false,
            trust: true,
            monitoring: 0,
            consul_agents: Vec::new(),
            fake_node_exporter: false,
        }
    }
}

impl FleetBuilder {
    /// Number of fleet hosts (monitoring host not included).
    pub fn hosts(mut self, n: usize) -> Self {
        self.hosts = n;
        self
    }
    /// Groups, assigned round-robin: host001 → first group, host002 → second, …
    pub fn groups(mut self, groups: &[&str]) -> Self {
        self.groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }
    /// One sshd on the wildcard address serving every host (500–1000 hosts); no per-host control.
    pub fn shared_sshd(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }
    /// Pre-populate `known_hosts` with every host key.
    pub fn trust_host_keys(mut self, trust: bool) -> Self {
        self.trust = trust;
        self
    }
    /// Add one more sshd host, `mon01`, in group `monitoring`.
    pub fn monitoring_host(mut self, on: bool) -> Self {
        self.monitoring = usize::from(on);
        self
    }
    /// Add `n` sshd hosts `mon01`, `mon02`, … in group `monitoring` (HA: an inventory may list
    /// only some of them, see [`InventorySpec::without_host`]).
    pub fn monitoring_hosts(mut self, n: usize) -> Self {
        self.monitoring = n;
        self
    }
    /// Consul agent URLs written into the inventory (`consul: { agents: [...] }`).
    pub fn consul_agents<S: Into<String>>(mut self, agents: impl IntoIterator<Item = S>) -> Self {
        self.consul_agents = agents.into_iter().map(Into::into).collect();
        self
    }
    /// The stand-in serves node metrics from the small fake exporter instead of the real
    /// prometheus-node-exporter (~1 MB instead of ~15 MB per host: for 1000-host benchmarks).
    pub fn fake_node_exporter(mut self, on: bool) -> Self {
        self.fake_node_exporter = on;
        self
    }

    /// Create keys, users and dirs, start the sshd(s) and wait until every host sends its banner.
    pub fn start(self) -> Result<Fleet> {
        Fleet::launch(self)
    }
}

/// Per-host processes (default mode).
#[derive(Default)]
struct HostState {
    daemon: Option<Daemon>,
    silencer: Option<Silencer>,
    /// sshd_config lines added by `add_sshd_config`, kept across restarts.
    extra_config: String,
    /// Run sshd in its own mount namespace with `/` of this propagation (`shared`, `private`).
    mount_ns: Option<String>,
}

/// A running fleet of SSH hosts. Dropping it kills everything it started.
pub struct Fleet {
    root: PathBuf,
    tempdir: Option<tempfile::TempDir>,
    hosts: Vec<Host>,
    port: u16,
    shared: bool,
    trust: bool,
    users: system::Users,
    client_key: PathBuf,
    authorized_keys: PathBuf,
    known_hosts: PathBuf,
    compose_command: PathBuf,
    consul_agents: Mutex<Vec<String>>,
    states: Mutex<Vec<HostState>>,
    shared_daemon: Mutex<Option<Daemon>>,
    /// What this machine was like, for the exporter variables an inventory states: read once
    /// per fleet (see `inventory::MachineVars`).
    machine: std::sync::OnceLock<inventory::MachineVars>,
    _claims: Vec<Claim>,
}

impl Fleet {
    /// Start building a fleet.
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    fn launch(b: FleetBuilder) -> Result<Fleet> {
        if b.groups.is_empty() {
            bail!("a fleet needs at least one group");
        }
        let users = system::prepare()?;
        proc::become_subreaper();
        let total = b.hosts + b.monitoring;
        if !b.shared && total > 240 {
            bail!("{total} hosts with one sshd each is too many; use shared_sshd(true)");
        }
        let (port, port_claim) = alloc::claim_port()?;
        let (base, mut claims) = alloc::claim_octets(total.div_ceil(HOSTS_PER_OCTET).max(1))?;
        claims.push(port_claim);

        let tempdir = tempfile::Builder::new()
            .prefix("pf-fleet-")
            .tempdir_in("/tmp")
            .context("create the fleet's temp dir")?;
        let root = tempdir.path().to_path_buf();
        // sshd reads authorized_keys as the login user and the user works in its sandbox.
        chmod(&root, 0o755)?;
        let keys = root.join("keys");
        std::fs::create_dir(&keys)?;
        chmod(&keys, 0o700)?;
        let sshd_root = root.join(".sshd");
        std::fs::create_dir(&sshd_root)?;
        chmod(&sshd_root, 0o700)?;

        let client_key = keys.join("id_ed25519");
        keys::keygen(&client_key, KeyKind::Ed25519, "", "promfleet-test-client")?;
        let authorized_keys = root.join("authorized_keys");
        std::fs::write(
            &authorized_keys,
            format!("{}\n", keys::public_line(&client_key)?),
        )?;
        chmod(&authorized_keys, 0o644)?;
        let known_hosts = root.join("known_hosts");
        std::fs::write(&known_hosts, "")?;
        let compose_command = install_standin(&root, b.fake_node_exporter)?;

        let width = b.hosts.to_string().len().max(3);
        let mut hosts = Vec::with_capacity(total);
        for i in 0..total {
            let (name, group) = if i < b.hosts {
                (
                    format!("host{:0width$}", i + 1),
                    b.groups[i % b.groups.len()].clone(),
                )
            } else {
                (
                    format!("mon{:02}", i - b.hosts + 1),
                    MONITORING_GROUP.to_string(),
                )
            };
            let ip = Ipv4Addr::new(
                127,
                0,
                base + (i / HOSTS_PER_OCTET) as u8,
                2 + (i % HOSTS_PER_OCTET) as u8,
            );
            let dir = root.join(&name);
            std::fs::create_dir(&dir)?;
            std::os::unix::fs::chown(&dir, Some(users.sudo.0), Some(users.sudo.1))
                .with_context(|| format!("chown {}", dir.display()))?;
            // Fallback for the stand-in when $SSH_CONNECTION is gone (e.g. stripped by sudo).
            std::fs::write(dir.join(".standin-ip"), format!("{ip}\n"))?;
            hosts.push(Host {
                name,
                ip,
                group,
                dir,
            });
        }

        let fleet = Fleet {
            root,
            tempdir: Some(tempdir),
            states: Mutex::new((0..total).map(|_| HostState::default()).collect()),
            hosts,
            port,
            shared: b.shared,
            trust: b.trust,
            users,
            client_key,
            authorized_keys,
            known_hosts,
            compose_command,
            consul_agents: Mutex::new(b.consul_agents),
            shared_daemon: Mutex::new(None),
            machine: std::sync::OnceLock::new(),
            _claims: claims,
        };
        // From here on, a failure drops `fleet`, which kills whatever already started.
        if fleet.shared {
            fleet.start_shared()?;
        } else {
            fleet.start_all()?;
        }
        fleet.write_known_hosts()?;
        Ok(fleet)
    }

    fn sshd_dir(&self, name: &str) -> PathBuf {
        self.root.join(".sshd").join(name)
    }

    fn host_key(&self, name: &str) -> PathBuf {
        let owner = if self.shared { "shared" } else { name };
        self.sshd_dir(owner).join("ssh_host_ed25519_key")
    }

    fn spec_users() -> [&'static str; 4] {
        [SUDO_USER, NOSUDO_USER, PASSWORD_SUDO_USER, ZSH_USER]
    }

    fn start_shared(&self) -> Result<()> {
        let dir = self.sshd_dir("shared");
        std::fs::create_dir_all(&dir)?;
        let key = dir.join("ssh_host_ed25519_key");
        keys::keygen(&key, KeyKind::Ed25519, "", "shared-host-key")?;
        // sshd takes at most 16 ListenAddress entries: the wildcard serves every 127.x.y.z.
        let listen = [format!("0.0.0.0:{}", self.port)];
        let cfg = daemon::write_config(&DaemonSpec {
            listen: &listen,
            host_key: &key,
            authorized_keys: &self.authorized_keys,
            users: &Self::spec_users(),
            dir: &dir,
            extra: "",
        })?;
        let mut d = Daemon::spawn(&cfg, &dir, None)?;
        let first = self.hosts.first().map(|h| self.addr_of(h));
        let last = self.hosts.last().map(|h| self.addr_of(h));
        let result = [first, last]
            .into_iter()
            .flatten()
            .try_for_each(|a| d.wait_ready(a, READY_TIMEOUT));
        *lock(&self.shared_daemon) = Some(d);
        result
    }

    fn start_all(&self) -> Result<()> {
        let mut states = lock(&self.states);
        for (i, h) in self.hosts.iter().enumerate() {
            let dir = self.sshd_dir(&h.name);
            std::fs::create_dir_all(&dir)?;
            keys::keygen(
                &self.host_key(&h.name),
                KeyKind::Ed25519,
                "",
                &format!("{}-host-key", h.name),
            )?;
            states[i].daemon = Some(self.spawn_host(h, "")?);
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if let Some(d) = states[i].daemon.as_mut() {
                d.wait_ready(self.addr_of(h), READY_TIMEOUT)?;
            }
        }
        Ok(())
    }

    fn spawn_host(&self, h: &Host, extra: &str) -> Result<Daemon> {
        let dir = self.sshd_dir(&h.name);
        let listen = [format!("{}:{}", h.ip, self.port)];
        let cfg = daemon::write_config(&DaemonSpec {
            listen: &listen,
            host_key: &self.host_key(&h.name),
            authorized_keys: &self.authorized_keys,
            users: &Self::spec_users(),
            dir: &dir,
            extra,
        })?;
        Daemon::spawn(&cfg, &dir, None)
    }

    fn write_known_hosts(&self) -> Result<()> {
        if !self.trust {
            return Ok(());
        }
        let mut text = String::new();
        for h in &self.hosts {
            text.push_str(&format!(
                "[{}]:{} {}\n",
                h.ip,
                self.port,
                keys::algo_and_blob(&self.host_key(&h.name))?
            ));
        }
        std::fs::write(&self.known_hosts, text).context("write known_hosts")?;
        Ok(())
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .with_context(|| format!("no host {name} in the fleet"))
    }

    fn per_host(&self, what: &str) -> Result<()> {
        if self.shared {
            bail!("{what} needs one sshd per host; this fleet uses shared_sshd(true)");
        }
        Ok(())
    }

    /// Kill a host's sshd (and its sessions): new connections are refused.
    pub fn stop(&self, name: &str) -> Result<()> {
        self.per_host("stop")?;
        let i = self.index(name)?;
        let mut states = lock(&self.states);
        if let Some(d) = states[i].daemon.take() {
            d.stop();
        }
        states[i].silencer = None;
        Ok(())
    }

    /// (Re)start a stopped or silenced host's sshd and wait for its banner.
    pub fn start(&self, name: &str) -> Result<()> {
        self.per_host("start")?;
        let i = self.index(name)?;
        let mut states = lock(&self.states);
        states[i].silencer = None;
        if states[i].daemon.is_none() {
            let h = &self.hosts[i];
            let mut d = match states[i].mount_ns.clone() {
                Some(p) => self.spawn_host_under(h, &states[i].extra_config, &p)?,
                None => self.spawn_host(h, &states[i].extra_config)?,
            };
            let ready = d.wait_ready(self.addr_of(h), READY_TIMEOUT);
            states[i].daemon = Some(d);
            ready?;
        }
        Ok(())
    }

    /// Restart a host's sshd in a mount namespace of its own whose `/` has `propagation`
    /// (`shared`, `slave`, `private`; `unshare --mount --propagation`): its sessions see that
    /// propagation, the machine's mounts are unchanged.
    pub fn use_mount_namespace(&self, name: &str, propagation: &str) -> Result<()> {
        self.per_host("use_mount_namespace")?;
        let i = self.index(name)?;
        self.stop(name)?;
        lock(&self.states)[i].mount_ns = Some(propagation.to_string());
        self.start(name)
    }

    fn spawn_host_under(&self, h: &Host, extra: &str, propagation: &str) -> Result<Daemon> {
        let dir = self.sshd_dir(&h.name);
        let listen = [format!("{}:{}", h.ip, self.port)];
        let cfg = daemon::write_config(&DaemonSpec {
            listen: &listen,
            host_key: &self.host_key(&h.name),
            authorized_keys: &self.authorized_keys,
            users: &Self::spec_users(),
            dir: &dir,
            extra,
        })?;
        Daemon::spawn_under(
            &cfg,
            &dir,
            &["unshare", "--mount", "--propagation", propagation],
        )
    }

    /// Give a host a new host key and restart it: the fleet's known_hosts no longer matches.
    pub fn rotate_host_key(&self, name: &str) -> Result<()> {
        self.per_host("rotate_host_key")?;
        let i = self.index(name)?;
        let was_running = lock(&self.states)[i].daemon.is_some();
        self.stop(name)?;
        keys::keygen(
            &self.host_key(name),
            KeyKind::Ed25519,
            "",
            &format!("{name}-rotated"),
        )?;
        if was_running {
            self.start(name)?;
        }
        Ok(())
    }

    /// Append sshd_config lines for a host (another `HostKey`, a `HostCertificate`, …) and
    /// restart its sshd; the lines stay for later restarts. Paths in them must be readable by
    /// root only where sshd demands it (host keys: 0600).
    pub fn add_sshd_config(&self, name: &str, lines: &str) -> Result<()> {
        self.per_host("add_sshd_config")?;
        let i = self.index(name)?;
        self.stop(name)?;
        {
            let mut states = lock(&self.states);
            states[i].extra_config.push_str(lines);
            if !lines.ends_with('\n') {
                states[i].extra_config.push('\n');
            }
        }
        self.start(name)
    }

    /// The private key file of a host's (first) ed25519 host key, e.g. to sign a host
    /// certificate for it with `ssh-keygen -s`.
    pub fn host_key_path(&self, name: &str) -> Result<PathBuf> {
        self.index(name)?;
        Ok(self.host_key(name))
    }

    /// Replace a host's sshd by a listener that accepts TCP and never speaks (a hung host).
    pub fn silence(&self, name: &str) -> Result<()> {
        self.per_host("silence")?;
        self.stop(name)?;
        let i = self.index(name)?;
        let s = Silencer::start(self.addr_of(&self.hosts[i]))?;
        lock(&self.states)[i].silencer = Some(s);
        Ok(())
    }

    /// Undo [`Fleet::silence`]: the real sshd answers again.
    pub fn unsilence(&self, name: &str) -> Result<()> {
        self.start(name)
    }

    /// The host's current host key line (`ssh-ed25519 AAAA…`).
    pub fn host_key_line(&self, name: &str) -> Result<String> {
        self.index(name)?;
        keys::algo_and_blob(&self.host_key(name))
    }

    /// Make another client key in the fleet's key dir; `authorize` adds it to authorized_keys.
    /// A non-empty `passphrase` encrypts it.
    pub fn make_client_key(
        &self,
        file_name: &str,
        kind: KeyKind,
        passphrase: &str,
        authorize: bool,
    ) -> Result<PathBuf> {
        let path = self.root.join("keys").join(file_name);
        keys::keygen(&path, kind, passphrase, file_name)?;
        if authorize {
            self.authorize_key(&path)?;
        }
        Ok(path)
    }

    /// Append a key's public half to authorized_keys (sshd rereads it on every login).
    pub fn authorize_key(&self, private: &Path) -> Result<()> {
        use std::io::Write;
        let line = keys::public_line(private)?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    /// Replace the Consul agents written into inventories.
    pub fn set_consul_agents<S: Into<String>>(&self, agents: impl IntoIterator<Item = S>) {
        *lock(&self.consul_agents) = agents.into_iter().map(Into::into).collect();
    }

    pub(crate) fn consul_agents(&self) -> Vec<String> {
        lock(&self.consul_agents).clone()
    }

    /// An `ssh` command (real OpenSSH client) to `name` as the login user with strict host key
    /// checking and the fleet's key; append the remote command with `.arg(..)`.
    pub fn ssh_command(&self, name: &str) -> Result<Command> {
        self.ssh_command_as(name, SUDO_USER, &[])
    }

    /// Like [`Fleet::ssh_command`], as `user` and with extra client options placed before the
    /// destination (e.g. `["-o", "ConnectTimeout=2"]`; later options do not override earlier ones).
    pub fn ssh_command_as(&self, name: &str, user: &str, options: &[&str]) -> Result<Command> {
        let h = &self.hosts[self.index(name)?];
        let mut c = Command::new("ssh");
        c.args(["-F", "/dev/null"])
            .args(options)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args(["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg("-i")
            .arg(&self.client_key)
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{user}@{}", h.ip));
        Ok(c)
    }

    /// The fleet's temp dir.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Fleet hosts (without the monitoring host).
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.group != MONITORING_GROUP)
    }
    /// Every host, monitoring included, in inventory order.
    pub fn all_hosts(&self) -> &[Host] {
        &self.hosts
    }
    /// A host by name (monitoring included).
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
    /// The (first) monitoring host, if the builder asked for one.
    pub fn monitoring_host(&self) -> Option<&Host> {
        self.hosts.iter().find(|h| h.group == MONITORING_GROUP)
    }
    /// Every monitoring host, `mon01` first.
    pub fn monitoring_hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.group == MONITORING_GROUP)
    }
    /// The login user (with NOPASSWD sudo).
    pub fn user(&self) -> &str {
        SUDO_USER
    }
    /// The login user without sudo rights.
    pub fn nosudo_user(&self) -> &str {
        NOSUDO_USER
    }
    /// A login user whose sudo asks for a password ([`sudo_password`]).
    pub fn password_sudo_user(&self) -> &str {
        PASSWORD_SUDO_USER
    }
    /// A login user whose login shell is zsh (when it is installed: [`ZSH`]).
    pub fn zsh_user(&self) -> &str {
        ZSH_USER
    }
    /// uid of the login user (owner of the host sandboxes).
    pub fn user_uid(&self) -> u32 {
        self.users.sudo.0
    }
    /// The SSH port every host listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Socket address of a host's sshd.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.host(name).map(|h| self.addr_of(h))
    }
    fn addr_of(&self, h: &Host) -> SocketAddr {
        SocketAddr::from((h.ip, self.port))
    }
    /// The authorized client key (ed25519, no passphrase).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }
    /// known_hosts with every host key (empty unless trust_host_keys(true)).
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }
    /// The authorized_keys file all hosts share.
    pub fn authorized_keys(&self) -> &Path {
        &self.authorized_keys
    }
    /// The compose command written into host vars (wrapper around the stand-in).
    pub fn compose_command(&self) -> &Path {
        &self.compose_command
    }
    /// The sshd log of a host (or of the shared sshd).
    pub fn sshd_log(&self, name: &str) -> PathBuf {
        let owner = if self.shared { "shared" } else { name };
        self.sshd_dir(owner).join("sshd.log")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let states = std::mem::take(&mut *lock(&self.states));
        for s in states {
            drop(s.silencer);
            if let Some(d) = s.daemon {
                d.stop();
            }
        }
        if let Some(d) = lock(&self.shared_daemon).take() {
            d.stop();
        }
        // Exporters the stand-in started carry a path under root in their command line.
        let leftovers = proc::with_cmdline_containing(&self.root);
        proc::terminate(&leftovers, Duration::from_secs(3));
        proc::reap_orphans();
        // TESTKIT_KEEP=1 keeps the dir (configs, sshd logs, stand-in state) for debugging.
        if std::env::var_os("TESTKIT_KEEP").is_some()
            && let Some(t) = self.tempdir.take()
        {
            let kept = t.keep();
            eprintln!("testkit: keeping fleet dir {}", kept.display());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {:o} {}", mode, path.display()))
}

/// Copy the stand-in, the fake exporter and the fake central services into `<root>/bin` and write the wrapper that
/// carries this fleet's settings (env does not travel over SSH). Returns the wrapper.
fn install_standin(root: &Path, fake_node: bool) -> Result<PathBuf> {
    let bin = root.join("bin");
    std::fs::create_dir(&bin)?;
    chmod(&bin, 0o755)?;
    let script = bin.join("compose-standin");
    std::fs::copy(crate::standin::compose_standin_path(), &script)
        .context("copy compose-standin")?;
    chmod(&script, 0o755)?;
    let fake = bin.join("fake-cadvisor");
    std::fs::copy(crate::standin::fake_exporter_path(), &fake).context("copy fake-cadvisor")?;
    chmod(&fake, 0o755)?;
    let central = bin.join("fake-central");
    std::fs::copy(crate::standin::fake_central_path(), &central).context("copy fake-central")?;
    chmod(&central, 0o755)?;
    let cache = root.join("standin-cache");
    std::fs::create_dir(&cache)?;
    // Written by whoever runs the stand-in: the login user, or root under `become`.
    chmod(&cache, 0o1777)?;
    let wrapper = bin.join("compose");
    let mode = if fake_node { "fake" } else { "real" };
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport STANDIN_FAKE_EXPORTER={}\nexport STANDIN_FAKE_CENTRAL={}\nexport STANDIN_NODE_EXPORTER={mode}\nexport STANDIN_CACHE={}\nexec {} \"$@\"\n",
            fake.display(),
            central.display(),
            cache.display(),
            script.display()
        ),
    )?;
    chmod(&wrapper, 0o755)?;
    Ok(wrapper)
}
