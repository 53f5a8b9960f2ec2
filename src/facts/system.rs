//! System facts of a Docker host: what the exporters need from it before anything is written
//! there. Docker access and engine (version, root dir, rootless, SELinux support, free space
//! of its root), its socket, compose (v2 plugin, standalone v1/v2, or the inventory's command),
//! listening TCP ports and the process holding each, `/`'s mount propagation, cgroup version,
//! SELinux mode, free space under a path, the host clock, local images and device paths.
//!
//! Owns: each probe's script and the parser of what it prints (unit-tested on outputs recorded
//! from real hosts). Must not: judge what a fact means for a deployment (that is
//! `status::preflight`), or write anything on the host. Every probe exits 0 when it could
//! answer, so one failing probe never hides the others of a batch.

use super::{Fact, Probe};
use crate::transport::Script;

// ---------------------------------------------------------------------------------------------
// Docker engine

/// `docker info` as the transport's user (the login user, or root through `become`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DockerEngine;

/// What the Docker client could get from the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerAccess {
    /// The engine answered.
    Ok(EngineInfo),
    /// The socket refused the user (not in the `docker` group, no `become`).
    Denied { message: String },
    /// The client is there but no engine answered (not running, wrong DOCKER_HOST).
    NoEngine { message: String },
    /// No `docker` client on the PATH.
    NoClient,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    pub version: String,
    /// Docker's root dir (`/var/lib/docker`; `~/.local/share/docker` when rootless).
    pub root_dir: String,
    /// `docker info`'s security options name `rootless`.
    pub rootless: bool,
    /// The engine labels containers for SELinux (`selinux-enabled`).
    pub selinux: bool,
    /// Free space of the filesystem holding the root dir, in KiB (None when `df` failed).
    pub root_free_kib: Option<u64>,
}

const DOCKER_ENGINE: &str = r#"command -v docker >/dev/null 2>&1 || { echo __noclient; exit 0; }
if info=$(docker info --format '{{.ServerVersion}}|{{.DockerRootDir}}|{{range .SecurityOptions}}{{.}},{{end}}' 2>/dev/null); then
  echo "__info $info"
  root=${info#*|}; root=${root%%|*}
  [ -n "$root" ] && df -Pk "$root" 2>/dev/null | tail -n 1 | sed 's/^/__df /'
else
  echo "__error $(docker info --format x 2>&1 >/dev/null | tail -n 1)"
fi
exit 0"#;

impl Fact for DockerEngine {
    type Output = DockerAccess;
    fn key(&self) -> String {
        "docker_engine".into()
    }
    fn script(&self) -> Script {
        Script::new().fragment(DOCKER_ENGINE)
    }
    fn parse(&self, p: &Probe) -> Result<DockerAccess, String> {
        let mut info = None;
        let mut free = None;
        for line in p.stdout.lines() {
            if line == "__noclient" {
                return Ok(DockerAccess::NoClient);
            }
            if let Some(e) = line.strip_prefix("__error ") {
                let message = e.trim().to_string();
                return Ok(if message.to_lowercase().contains("permission denied") {
                    DockerAccess::Denied { message }
                } else {
                    DockerAccess::NoEngine { message }
                });
            }
            if let Some(i) = line.strip_prefix("__info ") {
                info = Some(i.to_string());
            }
            if let Some(d) = line.strip_prefix("__df ") {
                free = df_available(d);
            }
        }
        let info = info.ok_or("no `docker info` answer")?;
        let mut parts = info.splitn(3, '|');
        let version = parts.next().unwrap_or_default().trim().to_string();
        let root_dir = parts.next().unwrap_or_default().trim().to_string();
        let opts = parts.next().unwrap_or_default();
        let names: Vec<&str> = opts
            .split(',')
            .filter_map(|o| o.trim().strip_prefix("name="))
            .collect();
        Ok(DockerAccess::Ok(EngineInfo {
            version,
            root_dir,
            rootless: names.contains(&"rootless"),
            selinux: names.contains(&"selinux"),
            root_free_kib: free,
        }))
    }
}

/// The socket the Docker client talks to: `DOCKER_HOST`, else a rootless engine's socket
/// (`$XDG_RUNTIME_DIR/docker.sock`) when there is one, else the system socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct DockerSocket;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    /// `DOCKER_HOST` of the probe's environment, if set.
    pub docker_host: Option<String>,
    /// A rootless engine's socket of the user, if it exists.
    pub rootless_socket: Option<String>,
    /// `/var/run/docker.sock` exists.
    pub system_socket: bool,
}

impl SocketInfo {
    /// The unix socket path the client uses (None for a TCP DOCKER_HOST).
    pub fn path(&self) -> Option<String> {
        match &self.docker_host {
            Some(h) => h.strip_prefix("unix://").map(str::to_string),
            None => self
                .rootless_socket
                .clone()
                .or_else(|| Some("/var/run/docker.sock".into())),
        }
    }
}

const DOCKER_SOCKET: &str = r#"[ -n "${DOCKER_HOST:-}" ] && echo "__host $DOCKER_HOST"
rt=${XDG_RUNTIME_DIR:-/run/user/$(id -u)}
[ -S "$rt/docker.sock" ] && echo "__rootless $rt/docker.sock"
[ -S /var/run/docker.sock ] && echo "__system"
exit 0"#;

impl Fact for DockerSocket {
    type Output = SocketInfo;
    fn key(&self) -> String {
        "docker_socket".into()
    }
    fn script(&self) -> Script {
        Script::new().fragment(DOCKER_SOCKET)
    }
    fn parse(&self, p: &Probe) -> Result<SocketInfo, String> {
        let mut s = SocketInfo {
            docker_host: None,
            rootless_socket: None,
            system_socket: false,
        };
        for line in p.stdout.lines() {
            if let Some(h) = line.strip_prefix("__host ") {
                s.docker_host = Some(h.trim().to_string());
            } else if let Some(r) = line.strip_prefix("__rootless ") {
                s.rootless_socket = Some(r.trim().to_string());
            } else if line == "__system" {
                s.system_socket = true;
            }
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Compose

/// Which compose commands answer `version`: the inventory's `compose_command` when set, the
/// `docker compose` plugin and a standalone `docker-compose` (v1, or a v2 binary).
#[derive(Debug, Clone, Default)]
pub struct Compose {
    /// The inventory's `compose_command` (empty: detect as the compose module does).
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComposeInfo {
    /// `docker compose version --short`.
    pub plugin: Option<String>,
    /// `docker-compose version --short`.
    pub standalone: Option<String>,
    /// The inventory's command: Ok(first line of `version`) or Err(its last error line).
    pub custom: Option<Result<String, String>>,
}

/// The compose command promfleet will run, and its major version when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeChoice {
    pub command: String,
    pub version: String,
    pub v2: bool,
}

impl ComposeInfo {
    /// What the compose module will run: the inventory's command, else the v2 plugin, else
    /// `docker-compose` (its order, src/modules/compose.rs). None: no compose at all.
    pub fn chosen(&self, command: &str) -> Option<Result<ComposeChoice, String>> {
        if !command.trim().is_empty() {
            return self.custom.clone().map(|r| {
                r.map(|line| ComposeChoice {
                    command: command.trim().to_string(),
                    v2: version_major(&line) == Some(2),
                    version: line,
                })
            });
        }
        if let Some(v) = &self.plugin {
            return Some(Ok(ComposeChoice {
                command: "docker compose".into(),
                v2: true,
                version: v.clone(),
            }));
        }
        self.standalone.as_ref().map(|v| {
            Ok(ComposeChoice {
                command: "docker-compose".into(),
                v2: version_major(v) == Some(2),
                version: v.clone(),
            })
        })
    }
}

/// The major version in a version line (`1.29.2`, `v2.24.5`, `docker-compose version 1.29.2, build x`).
fn version_major(line: &str) -> Option<u32> {
    line.split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.trim_start_matches('v'))
        .find(|w| w.contains('.') && w.starts_with(|c: char| c.is_ascii_digit()))
        .and_then(|w| w.split('.').next())
        .and_then(|m| m.parse().ok())
}

// Only what the compose module would run is asked: each `version` may start a Python
// interpreter (docker-compose v1), a cost on every host of a big fleet.
const COMPOSE: &str = r#"set -f
if [ -n "$cmd" ]; then
  if out=$($cmd version 2>&1); then echo "__custom $(printf '%s\n' "$out" | head -n 1)"
  else echo "__custom_error $(printf '%s\n' "$out" | tail -n 1)"; fi
  exit 0
fi
v=$(docker compose version --short 2>/dev/null) && [ -n "$v" ] && { echo "__plugin $v"; exit 0; }
v=$(docker-compose version --short 2>/dev/null) && [ -n "$v" ] && echo "__standalone $v"
exit 0"#;

impl Fact for Compose {
    type Output = ComposeInfo;
    fn key(&self) -> String {
        format!("compose:{}", self.command.trim())
    }
    fn script(&self) -> Script {
        Script::new()
            .var("cmd", self.command.trim())
            .fragment(COMPOSE)
    }
    fn parse(&self, p: &Probe) -> Result<ComposeInfo, String> {
        let mut c = ComposeInfo::default();
        for line in p.stdout.lines() {
            if let Some(v) = line.strip_prefix("__plugin ") {
                c.plugin = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("__standalone ") {
                c.standalone = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("__custom ") {
                c.custom = Some(Ok(v.trim().to_string()));
            } else if let Some(v) = line.strip_prefix("__custom_error") {
                c.custom = Some(Err(v.trim().to_string()));
            }
        }
        Ok(c)
    }
}

// ---------------------------------------------------------------------------------------------
// Listening ports

/// Listening TCP sockets and the process holding each (`ss -ltnp`; a process of another user
/// is named only when the probe runs as root).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListeningPorts;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Local address without brackets or `%iface` (`0.0.0.0`, `::`, `*`, `127.0.0.5`).
    pub addr: String,
    pub port: u16,
    /// Process name, as `ss` shows it (None: not visible to the probe's user).
    pub process: Option<String>,
    pub pid: Option<u32>,
    /// Its command line (spaces for NULs), when readable.
    pub cmdline: Option<String>,
}

impl Listener {
    /// Listening on every address of its family.
    pub fn is_wildcard(&self) -> bool {
        matches!(self.addr.as_str(), "0.0.0.0" | "::" | "*" | "")
    }
}

const LISTENING_PORTS: &str = r#"command -v ss >/dev/null 2>&1 || { echo __noss; exit 0; }
ss -Hltnp 2>/dev/null | sed 's/^/__l /'
for pid in $(ss -Hltnp 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
  [ -r "/proc/$pid/cmdline" ] && printf '__cmd %s %s\n' "$pid" "$(tr '\0' ' ' < "/proc/$pid/cmdline" | cut -c1-400)"
done
exit 0"#;

impl Fact for ListeningPorts {
    type Output = Vec<Listener>;
    fn key(&self) -> String {
        "listening_ports".into()
    }
    fn script(&self) -> Script {
        Script::new().fragment(LISTENING_PORTS)
    }
    fn parse(&self, p: &Probe) -> Result<Vec<Listener>, String> {
        let mut out = Vec::new();
        let mut cmdlines = std::collections::HashMap::new();
        for line in p.stdout.lines() {
            if line == "__noss" {
                return Err("`ss` (iproute2) is not installed".into());
            }
            if let Some(rest) = line.strip_prefix("__cmd ")
                && let Some((pid, cmd)) = rest.split_once(' ')
                && let Ok(pid) = pid.parse::<u32>()
            {
                cmdlines.insert(pid, cmd.trim().to_string());
            } else if let Some(l) = line.strip_prefix("__l ") {
                out.extend(parse_ss_line(l));
            }
        }
        for l in &mut out {
            l.cmdline = l.pid.and_then(|p| cmdlines.get(&p).cloned());
        }
        Ok(out)
    }
}

/// One `ss -Hltnp` line: `LISTEN 0 4096 0.0.0.0:9100 0.0.0.0:* users:(("name",pid=1,fd=3))`.
fn parse_ss_line(line: &str) -> Option<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = fields.get(3)?;
    let (addr, port) = local.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr = addr.split('%').next().unwrap_or(addr).to_string();
    let users = fields.get(5..).map(|f| f.join(" ")).unwrap_or_default();
    let process = users
        .split_once("((\"")
        .and_then(|(_, r)| r.split_once('"'))
        .map(|(name, _)| name.to_string());
    let pid = users
        .split_once("pid=")
        .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok());
    Some(Listener {
        addr,
        port,
        process,
        pid,
        cmdline: None,
    })
}

/// Running containers and the host ports each publishes (`docker ps`; empty when Docker
/// cannot be asked).
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishedPorts;

impl Fact for PublishedPorts {
    /// (container name, published host ports).
    type Output = Vec<(String, Vec<u16>)>;
    fn key(&self) -> String {
        "published_ports".into()
    }
    fn script(&self) -> Script {
        Script::new().fragment(
            "docker ps --format '{{.Names}}\t{{.Ports}}' 2>/dev/null | sed 's/^/__c /'\nexit 0",
        )
    }
    fn parse(&self, p: &Probe) -> Result<Vec<(String, Vec<u16>)>, String> {
        Ok(p.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("__c "))
            .map(|l| {
                let (name, ports) = l.split_once('\t').unwrap_or((l, ""));
                (name.trim().to_string(), published_ports(ports))
            })
            .collect())
    }
}

/// Host ports in `docker ps`' Ports column: `0.0.0.0:9100->9100/tcp, :::9100->9100/tcp`.
fn published_ports(text: &str) -> Vec<u16> {
    let mut out: Vec<u16> = text
        .split(',')
        .filter_map(|m| m.split_once("->"))
        .filter_map(|(host, _)| host.rsplit_once(':')?.1.parse().ok())
        .collect();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------------------------
// Mount propagation, cgroups, SELinux

/// Propagation of the mount at `/` in the login session's mount namespace (the one Docker's
/// bind mounts of `/` inherit), from /proc/self/mountinfo's optional fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct RootPropagation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Shared,
    /// Receives from a master (`master:N`): rslave works.
    Slave,
    Private,
    Unbindable,
}

impl Propagation {
    pub fn name(self) -> &'static str {
        match self {
            Propagation::Shared => "shared",
            Propagation::Slave => "slave",
            Propagation::Private => "private",
            Propagation::Unbindable => "unbindable",
        }
    }
}

impl Fact for RootPropagation {
    type Output = Propagation;
    fn key(&self) -> String {
        "root_propagation".into()
    }
    fn script(&self) -> Script {
        Script::new().fragment(r#"awk '$5 == "/"' /proc/self/mountinfo; exit 0"#)
    }
    fn parse(&self, p: &Probe) -> Result<Propagation, String> {
        // The last mount on `/` is the visible one (mounts stack).
        let line = p
            .stdout
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .ok_or("no mount at / in /proc/self/mountinfo")?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let optional = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .collect::<Vec<_>>();
        Ok(if optional.iter().any(|f| f.starts_with("shared:")) {
            Propagation::Shared
        } else if optional.iter().any(|f| f.starts_with("master:")) {
            Propagation::Slave
        } else if optional.iter().any(|f| **f == "unbindable") {
            Propagation::Unbindable
        } else {
            Propagation::Private
        })
    }
}

/// cgroup v1, hybrid (v1 with the v2 `unified` hierarchy) or v2, from /sys/fs/cgroup's type.
#[derive(Debug, Clone, Copy, Default)]
pub struct CgroupVersion;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    V1,
    Hybrid,
    V2,
    Unknown(String),
}

impl Cgroups {
    pub fn name(&self) -> String {
        match self {
            Cgroups::V1 => "v1".into(),
            Cgroups::Hybrid => "v1 (hybrid)".into(),
            Cgroups::V2 => "v2".into(),
            Cgroups::Unknown(t) => format!("unknown ({t})"),
        }
    }
}

impl Fact for CgroupVersion {
    type Output = Cgroups;
    fn key(&self) -> String {
        "cgroup_version".into()
    }
    fn script(&self) -> Script {
        Script::new().fragment(
            "stat -fc %T /sys/fs/cgroup/ 2>/dev/null || echo missing\n\
             [ -d /sys/fs/cgroup/unified ] && echo unified\nexit 0",
        )
    }
    fn parse(&self, p: &Probe) -> Result<Cgroups, String> {
        let mut lines = p.stdout.lines().map(str::trim);
        let fs = lines.next().unwrap_or_default();
        let unified = lines.any(|l| l == "unified");
        Ok(match fs {
            "cgroup2fs" => Cgroups::V2,
            "tmpfs" if unified => Cgroups::Hybrid,
            "tmpfs" => Cgroups::V1,
            other => Cgroups::Unknown(other.to_string()),
        })
    }
}

/// SELinux mode: `getenforce`, else /sys/fs/selinux/enforce, else disabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelinuxMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selinux {
    Enforcing,
    Permissive,
    Disabled,
}

impl Selinux {
    pub fn name(self) -> &'static str {
        match self {
            Selinux::Enforcing => "enforcing",
            Selinux::Permissive => "permissive",
            Selinux::Disabled => "disabled",
        }
    }
}

const SELINUX: &str = r#"if command -v getenforce >/dev/null 2>&1; then getenforce 2>/dev/null
elif [ -r /sys/fs/selinux/enforce ]; then echo "enforce $(cat /sys/fs/selinux/enforce)"
else echo Disabled; fi
exit 0"#;

impl Fact for SelinuxMode {
    type Output = Selinux;
    fn key(&self) -> String {
        "selinux_mode".into()
    }
    fn script(&self) -> Script {
        Script::new().fragment(SELINUX)
    }
    fn parse(&self, p: &Probe) -> Result<Selinux, String> {
        match p.stdout.trim() {
            "Enforcing" | "enforce 1" => Ok(Selinux::Enforcing),
            "Permissive" | "enforce 0" => Ok(Selinux::Permissive),
            "Disabled" | "" => Ok(Selinux::Disabled),
            other => Err(format!("unexpected SELinux mode `{other}`")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Space, clock, images, paths

/// Free space of the filesystem that holds `path` (or, when it does not exist yet, its
/// nearest existing parent: where it will be created). A leading `~/` is the user's home.
#[derive(Debug, Clone)]
pub struct FreeSpace {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    /// The existing path `df` was asked about.
    pub checked: String,
    pub available_kib: u64,
    /// Mount point of that filesystem.
    pub mount: String,
}

const FREE_SPACE: &str = r#"while [ ! -e "$p" ] && [ "$p" != / ] && [ -n "$p" ]; do p=$(dirname -- "$p"); done
echo "__path $p"
df -Pk -- "$p" 2>/dev/null | tail -n 1 | sed 's/^/__df /'
exit 0"#;

impl Fact for FreeSpace {
    type Output = Space;
    fn key(&self) -> String {
        format!("free_space:{}", self.path)
    }
    fn script(&self) -> Script {
        Script::new().path_var("p", &self.path).fragment(FREE_SPACE)
    }
    fn parse(&self, p: &Probe) -> Result<Space, String> {
        let mut checked = String::new();
        for line in p.stdout.lines() {
            if let Some(c) = line.strip_prefix("__path ") {
                checked = c.to_string();
            } else if let Some(d) = line.strip_prefix("__df ") {
                let available_kib = df_available(d).ok_or_else(|| format!("bad df line `{d}`"))?;
                let mount = d.split_whitespace().last().unwrap_or_default().to_string();
                return Ok(Space {
                    checked,
                    available_kib,
                    mount,
                });
            }
        }
        Err(format!("df gave no answer for {}", self.path))
    }
}

/// Available KiB from a `df -Pk` data line (`dev total used avail cap% mount`).
fn df_available(line: &str) -> Option<u64> {
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The host's clock, as Unix seconds (fractional where `date` has `%N`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock;

impl Fact for Clock {
    type Output = f64;
    fn key(&self) -> String {
        "clock".into()
    }
    fn script(&self) -> Script {
        Script::new().fragment("date +%s.%N; exit 0")
    }
    fn parse(&self, p: &Probe) -> Result<f64, String> {
        let t = p.stdout.trim();
        // A `date` without %N prints it literally (`1700000000.N` or `.%N`).
        let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
        let secs: f64 = secs
            .parse()
            .map_err(|_| format!("`date +%s` printed `{t}`"))?;
        let frac = if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
            format!("0.{frac}").parse().unwrap_or(0.0)
        } else {
            0.0
        };
        Ok(secs + frac)
    }
}

/// Which of these image references the engine has locally (`docker image inspect`).
#[derive(Debug, Clone)]
pub struct LocalImages {
    pub refs: Vec<String>,
}

impl Fact for LocalImages {
    /// (reference, present) in the order asked; every image absent when Docker cannot be asked.
    type Output = Vec<(String, bool)>;
    fn key(&self) -> String {
        format!("local_images:{}", self.refs.join(" "))
    }
    fn script(&self) -> Script {
        Script::new()
            .positional(self.refs.iter().map(String::as_str))
            .fragment(
                "for i in \"$@\"; do\n\
                 if docker image inspect --format x -- \"$i\" >/dev/null 2>&1; then echo \"present $i\"; else echo \"absent $i\"; fi\n\
                 done\nexit 0",
            )
    }
    fn parse(&self, p: &Probe) -> Result<Vec<(String, bool)>, String> {
        let seen: Vec<(&str, &str)> = p.stdout.lines().filter_map(|l| l.split_once(' ')).collect();
        Ok(self
            .refs
            .iter()
            .map(|r| {
                let present = seen.iter().any(|(s, i)| *s == "present" && i == r);
                (r.clone(), present)
            })
            .collect())
    }
}

/// Which of these paths exist on the host (devices such as /dev/kmsg, dirs such as /dev/disk).
#[derive(Debug, Clone)]
pub struct PathsExist {
    pub paths: Vec<String>,
}

impl Fact for PathsExist {
    type Output = Vec<(String, bool)>;
    fn key(&self) -> String {
        format!("paths_exist:{}", self.paths.join(" "))
    }
    fn script(&self) -> Script {
        Script::new()
            .positional(self.paths.iter().map(String::as_str))
            .fragment(
                "for p in \"$@\"; do if [ -e \"$p\" ]; then echo \"1 $p\"; else echo \"0 $p\"; fi; done\nexit 0",
            )
    }
    fn parse(&self, p: &Probe) -> Result<Vec<(String, bool)>, String> {
        let seen: Vec<&str> = p
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("1 "))
            .collect();
        Ok(self
            .paths
            .iter()
            .map(|x| (x.clone(), seen.contains(&x.as_str())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(stdout: &str) -> Probe {
        Probe {
            stdout: stdout.into(),
            status: 0,
        }
    }

    #[test]
    fn docker_info_of_a_rootful_engine_and_its_root_dir_space() {
        // Recorded on Debian 12, Docker 20.10 (root).
        let p = probe(
            "__info 20.10.24+dfsg1|/var/lib/docker|name=seccomp,profile=default,\n\
             __df /dev/vda         264212084 31877844  63408044      34% /\n",
        );
        let got = DockerEngine.parse(&p).unwrap();
        assert_eq!(
            got,
            DockerAccess::Ok(EngineInfo {
                version: "20.10.24+dfsg1".into(),
                root_dir: "/var/lib/docker".into(),
                rootless: false,
                selinux: false,
                root_free_kib: Some(63408044),
            })
        );
    }

    #[test]
    fn docker_info_of_a_rootless_engine_with_selinux() {
        // Recorded from rootless Docker 24 on Fedora (SELinux enforcing, cgroup v2).
        let p = probe(
            "__info 24.0.7|/home/ops/.local/share/docker|name=seccomp,profile=builtin,name=rootless,name=selinux,name=cgroupns,\n",
        );
        let DockerAccess::Ok(e) = DockerEngine.parse(&p).unwrap() else {
            panic!("not ok")
        };
        assert!(e.rootless && e.selinux, "{e:?}");
        assert_eq!(e.root_dir, "/home/ops/.local/share/docker");
        assert_eq!(e.root_free_kib, None);
    }

    #[test]
    fn docker_socket_refusing_the_user_is_denied_and_a_missing_engine_is_not() {
        // Recorded as a user outside the `docker` group.
        let denied = probe(
            "__error permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.50/info\": dial unix /var/run/docker.sock: connect: permission denied\n",
        );
        assert!(matches!(
            DockerEngine.parse(&denied).unwrap(),
            DockerAccess::Denied { .. }
        ));
        let down = probe(
            "__error Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
        );
        assert!(matches!(
            DockerEngine.parse(&down).unwrap(),
            DockerAccess::NoEngine { .. }
        ));
        assert_eq!(
            DockerEngine.parse(&probe("__noclient\n")).unwrap(),
            DockerAccess::NoClient
        );
    }

    #[test]
    fn rootless_socket_wins_over_the_system_one_unless_docker_host_is_set() {
        let s = DockerSocket
            .parse(&probe("__rootless /run/user/1000/docker.sock\n"))
            .unwrap();
        assert_eq!(s.path().as_deref(), Some("/run/user/1000/docker.sock"));
        let s = DockerSocket
            .parse(&probe(
                "__host unix:///run/user/1000/docker.sock\n__system\n",
            ))
            .unwrap();
        assert_eq!(s.path().as_deref(), Some("/run/user/1000/docker.sock"));
        let s = DockerSocket.parse(&probe("__system\n")).unwrap();
        assert_eq!(s.path().as_deref(), Some("/var/run/docker.sock"));
    }

    #[test]
    fn compose_choice_follows_the_compose_modules_order() {
        let c = Compose::default();
        let v1_only = c.parse(&probe("__standalone 1.29.2\n")).unwrap();
        assert_eq!(
            v1_only.chosen(""),
            Some(Ok(ComposeChoice {
                command: "docker-compose".into(),
                version: "1.29.2".into(),
                v2: false
            }))
        );
        let both = c
            .parse(&probe("__plugin 2.24.5\n__standalone 1.29.2\n"))
            .unwrap();
        assert_eq!(both.chosen("").unwrap().unwrap().command, "docker compose");
        let v2_standalone = c.parse(&probe("__standalone v2.20.0\n")).unwrap();
        assert!(v2_standalone.chosen("").unwrap().unwrap().v2);
        assert_eq!(c.parse(&probe("")).unwrap().chosen(""), None);
        let custom = Compose {
            command: "sudo docker-compose".into(),
        };
        let info = custom
            .parse(&probe(
                "__custom docker-compose version 1.29.2, build unknown\n__standalone 1.29.2\n",
            ))
            .unwrap();
        let chosen = info.chosen("sudo docker-compose").unwrap().unwrap();
        assert_eq!(chosen.command, "sudo docker-compose");
        assert!(!chosen.v2);
        let broken = custom
            .parse(&probe("__custom_error sh: 1: nope: not found\n"))
            .unwrap();
        assert_eq!(
            broken.chosen("nope"),
            Some(Err("sh: 1: nope: not found".into()))
        );
    }

    #[test]
    fn ss_lines_give_address_port_process_and_command_line() {
        // Recorded with `ss -Hltnp` as root (iproute2 6.1).
        let p = probe(
            "__l LISTEN 0      4096   127.0.0.1:36787 0.0.0.0:* users:((\"prometheus\",pid=8176,fd=7))       \n\
             __l LISTEN 0      128      0.0.0.0:2024  0.0.0.0:*                                            \n\
             __l LISTEN 0      4096        [::]:9100     [::]:* users:((\"node_exporter\",pid=77,fd=3))\n\
             __l LISTEN 0      4096   127.0.0.53%lo:53  0.0.0.0:* users:((\"systemd-resolve\",pid=5,fd=14))\n\
             __cmd 77 /usr/bin/node_exporter --web.listen-address=:9100 \n",
        );
        let got = ListeningPorts.parse(&p).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0],
            Listener {
                addr: "127.0.0.1".into(),
                port: 36787,
                process: Some("prometheus".into()),
                pid: Some(8176),
                cmdline: None
            }
        );
        assert_eq!((got[1].process.as_deref(), got[1].pid), (None, None));
        assert!(got[1].is_wildcard() && got[2].is_wildcard() && !got[0].is_wildcard());
        assert_eq!(got[2].addr, "::");
        assert_eq!(
            got[2].cmdline.as_deref(),
            Some("/usr/bin/node_exporter --web.listen-address=:9100")
        );
        assert_eq!((got[3].addr.as_str(), got[3].port), ("127.0.0.53", 53));
        assert!(ListeningPorts.parse(&probe("__noss\n")).is_err());
    }

    #[test]
    fn published_ports_of_running_containers() {
        // Recorded `docker ps --format '{{.Names}}\t{{.Ports}}'` (Docker 24).
        let p = probe(
            "__c node-exporter\t0.0.0.0:9100->9100/tcp, :::9100->9100/tcp\n\
             __c cadvisor-exporter\t127.0.0.5:9105->8080/tcp\n__c idle\t\n",
        );
        assert_eq!(
            PublishedPorts.parse(&p).unwrap(),
            vec![
                ("node-exporter".into(), vec![9100]),
                ("cadvisor-exporter".into(), vec![9105]),
                ("idle".into(), vec![]),
            ]
        );
    }

    #[test]
    fn root_propagation_from_mountinfo() {
        // Recorded: a Docker-in-VM host (private), systemd hosts (shared), a container (slave).
        let private = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n";
        let shared = "28 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro\n";
        let slave = "612 530 0:52 / / rw,relatime master:287 - overlay overlay rw,lowerdir=/x\n";
        let stacked = format!("{private}700 27 0:60 / / rw shared:9 - tmpfs tmpfs rw\n");
        for (text, want) in [
            (private, Propagation::Private),
            (shared, Propagation::Shared),
            (slave, Propagation::Slave),
            (stacked.as_str(), Propagation::Shared),
        ] {
            assert_eq!(RootPropagation.parse(&probe(text)).unwrap(), want, "{text}");
        }
        assert!(RootPropagation.parse(&probe("")).is_err());
    }

    #[test]
    fn cgroup_version_from_the_filesystem_type() {
        // `stat -fc %T /sys/fs/cgroup/`: CentOS 7 (v1), Ubuntu 20.04 (hybrid), Debian 12 (v2).
        assert_eq!(CgroupVersion.parse(&probe("tmpfs\n")).unwrap(), Cgroups::V1);
        assert_eq!(
            CgroupVersion.parse(&probe("tmpfs\nunified\n")).unwrap(),
            Cgroups::Hybrid
        );
        assert_eq!(
            CgroupVersion.parse(&probe("cgroup2fs\n")).unwrap(),
            Cgroups::V2
        );
    }

    #[test]
    fn selinux_mode_from_getenforce_or_sysfs() {
        for (out, want) in [
            ("Enforcing\n", Selinux::Enforcing),
            ("Permissive\n", Selinux::Permissive),
            ("Disabled\n", Selinux::Disabled),
            ("enforce 1\n", Selinux::Enforcing),
            ("enforce 0\n", Selinux::Permissive),
        ] {
            assert_eq!(SelinuxMode.parse(&probe(out)).unwrap(), want, "{out}");
        }
        assert!(SelinuxMode.parse(&probe("Maybe\n")).is_err());
    }

    #[test]
    fn free_space_of_the_nearest_existing_parent() {
        let f = FreeSpace {
            path: "~/exporter-deploy".into(),
        };
        let p =
            probe("__path /home/ops\n__df /dev/sda2  51290592 40123124 8528028      83% /home\n");
        assert_eq!(
            f.parse(&p).unwrap(),
            Space {
                checked: "/home/ops".into(),
                available_kib: 8528028,
                mount: "/home".into()
            }
        );
        assert!(f.parse(&probe("__path /x\n")).is_err());
    }

    #[test]
    fn clock_with_and_without_nanoseconds() {
        assert_eq!(
            Clock.parse(&probe("1796148119.500000000\n")).unwrap(),
            1796148119.5
        );
        assert_eq!(Clock.parse(&probe("1796148119.N\n")).unwrap(), 1796148119.0);
        assert!(Clock.parse(&probe("Tue Dec 1\n")).is_err());
    }

    #[test]
    fn images_and_paths_in_the_order_asked() {
        let i = LocalImages {
            refs: vec!["a:1".into(), "b:2".into()],
        };
        assert_eq!(
            i.parse(&probe("absent a:1\npresent b:2\n")).unwrap(),
            vec![("a:1".into(), false), ("b:2".into(), true)]
        );
        let p = PathsExist {
            paths: vec!["/dev/kmsg".into(), "/dev/disk".into()],
        };
        assert_eq!(
            p.parse(&probe("1 /dev/kmsg\n0 /dev/disk\n")).unwrap(),
            vec![("/dev/kmsg".into(), true), ("/dev/disk".into(), false)]
        );
    }

    #[test]
    fn the_probes_run_by_sh_on_this_machine_parse() {
        // Every probe's script is valid sh and its output parses (whatever this machine is).
        let facts: Vec<Box<dyn super::super::ErasedFact>> = vec![
            Box::new(DockerSocket),
            Box::new(Compose::default()),
            Box::new(RootPropagation),
            Box::new(CgroupVersion),
            Box::new(SelinuxMode),
            Box::new(FreeSpace {
                path: "/tmp/x/y".into(),
            }),
            Box::new(Clock),
            Box::new(PathsExist {
                paths: vec!["/".into()],
            }),
        ];
        for f in facts {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(f.script().build())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", f.key());
            let p = probe(&String::from_utf8_lossy(&out.stdout));
            f.parse_any(&p)
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", f.key(), p.stdout));
        }
    }
}
