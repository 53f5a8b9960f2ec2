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
use std::collections::HashMap;

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

// `docker_refused`: true when the Docker CLI is sure to be refused, so that the probes below do
// not start it for nothing (each start costs 10–40 ms of the host's CPU, and a full preflight
// would start it four times to be told "permission denied" four times). The CLI would use the
// system socket (no DOCKER_HOST, no DOCKER_CONTEXT, no current context in its config file:
// https://docs.docker.com/engine/manage-resources/contexts/) and connect(2) to a unix socket
// needs write permission on it, which this user lacks (`test -w` asks access(2), ACLs and
// all; root always has it). In every other case the CLI is asked and answers for itself.
const DOCKER_REFUSED: &str = r#"docker_refused() {
  [ -z "${DOCKER_HOST:-}${DOCKER_CONTEXT:-}" ] && [ -S /var/run/docker.sock ] && [ ! -w /var/run/docker.sock ] || return 1
  c=${DOCKER_CONFIG:-${HOME:-/}/.docker}/config.json
  ! { [ -e "$c" ] && grep -q currentContext "$c" 2>/dev/null; }
}"#;

/// What `docker info` prints when the socket refuses the user, and what the probes print when
/// `docker_refused` spared them the CLI (with why), so that both read as `Denied`.
const REFUSED_MESSAGE: &str = "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock";

// One `docker info` (each start of the Docker CLI costs 10–40 ms of CPU): its answer is the
// line the format prefixes with `__info ` (warnings may come on stderr), its error the last line.
const DOCKER_ENGINE: &str = r#"command -v docker >/dev/null 2>&1 || { echo __noclient; exit 0; }
if docker_refused; then printf '%s\n' "__error $refused (the socket is not writable by ${LOGNAME:-$(id -un)}; the Docker CLI was not started)"; exit 0; fi
nl='
'
if out=$(docker info --format '__info {{.ServerVersion}}|{{.DockerRootDir}}|{{range .SecurityOptions}}{{.}},{{end}}' 2>&1); then
  info=""
  case $nl$out in *"${nl}__info "*) info=${nl}$out; info=${info#*"${nl}__info "}; info=${info%%"$nl"*} ;; esac
  printf '%s\n' "__info $info"
  root=${info#*|}; root=${root%%|*}
  [ -n "$root" ] && d=$(df -Pk "$root" 2>/dev/null) && printf '%s\n' "__df ${d##*"$nl"}"
else
  printf '%s\n' "__error ${out##*"$nl"}"
fi
exit 0"#;

impl Fact for DockerEngine {
    type Output = DockerAccess;
    fn key(&self) -> String {
        "docker_engine".into()
    }
    fn script(&self) -> Script {
        Script::new()
            .var("refused", REFUSED_MESSAGE)
            .fragment(DOCKER_REFUSED)
            .fragment(DOCKER_ENGINE)
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

const DOCKER_SOCKET: &str = r#"[ -n "${DOCKER_HOST:-}" ] && printf '%s\n' "__host $DOCKER_HOST"
# The effective uid as `id -u` prints it, read by the shell from its own status (no fork).
uid=
{ while read -r k _ e _; do [ "$k" = Uid: ] && { uid=$e; break; }; done < /proc/self/status; } 2>/dev/null
rt=${XDG_RUNTIME_DIR:-/run/user/${uid:-$(id -u)}}
[ -S "$rt/docker.sock" ] && printf '%s\n' "__rootless $rt/docker.sock"
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
  nl='
'
  if out=$($cmd version 2>&1); then printf '%s\n' "__custom ${out%%"$nl"*}"
  else printf '%s\n' "__custom_error ${out##*"$nl"}"; fi
  exit 0
fi
v=$(docker compose version --short 2>/dev/null) && [ -n "$v" ] && { printf '%s\n' "__plugin $v"; exit 0; }
v=$(docker-compose version --short 2>/dev/null) && [ -n "$v" ] && printf '%s\n' "__standalone $v"
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

/// The listening TCP sockets that take one of `ports` on an address the exporters publish on
/// (every listener when `ports` is empty; on a shared-loopback test fleet, the other hosts'
/// exporters are left out), from `ss -ltn` (the kernel's socket table, no walk of `/proc`),
/// and the process holding each (a process of another user is named only when the probe runs
/// as root).
///
/// Naming a holder is what costs: `ss -p` reads every descriptor of every process. So the
/// probe first looks among the processes that can be promfleet's own exporters — Docker's
/// `docker-proxy` and any process whose command line names `<dir>/` (the test fleet's compose
/// stand-in) — by their command lines, and runs `ss -ltnp` only for a socket none of them
/// holds (something else took the port: a blocker, whose owner the verdict names). All in the
/// probe's one round trip. A first run (ports free) and a re-run (ports held by the exporters)
/// never walk the descriptors of the host's processes.
#[derive(Debug, Clone, Default)]
pub struct ListeningPorts {
    /// Ports whose holders matter (the exporters'); empty: every listener, no holder named.
    pub ports: Vec<u16>,
    /// Addresses a listener collides on besides the wildcards (`0.0.0.0`, `::`, `*`).
    pub addrs: Vec<String>,
    /// A process whose command line contains `<dir>/` is looked at first (empty: none).
    pub dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Local address without brackets or `%iface` (`0.0.0.0`, `::`, `*`, `127.0.0.5`).
    pub addr: String,
    pub port: u16,
    /// Process name, as `ss` shows it (None: not looked up, or not visible to the probe's user).
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

// `ss -e` adds the socket's inode (`ino:N`), which is how a holder is matched to its socket.
// No `-H`: iproute2 before 4.13 (CentOS 7's iproute2-ss130716) refuses it ("invalid option --
// 'H'"), and with its error silenced every port looked free; the header line is skipped here.
// `l`: the listeners on a wanted port and a colliding address (the address normalised as
// `parse_ss_line` does: brackets and `%iface` dropped); `hit`: their inodes. `ls -l` of several fd
// dirs heads each with `/proc/N/fd:`; of one dir, it does not (`one` is then its pid).
const LISTENING_PORTS: &str = r#"command -v ss >/dev/null 2>&1 || { echo __noss; exit 0; }
l=$(ss -ltne 2>/dev/null | awk -v ports="$ports" -v addrs=" $addrs " '
  $1 == "State" { next }
  ports == "" { print "__l " $0; next }
  { a = $4; p = a; sub(/.*:/, "", p); sub(/:[^:]*$/, "", a); gsub(/[][]/, "", a); sub(/%.*/, "", a)
    if (!index(" " ports " ", " " p " ")) next
    if (a != "0.0.0.0" && a != "::" && a != "*" && a != "" && !index(addrs, " " a " ")) next
    print "__l " $0 }')
[ -n "$l" ] || exit 0
printf '%s\n' "$l"
[ -n "$ports" ] || exit 0
# (From here on, words are split and matched by the shell: each fork saved is saved on every
# host a full probe finds its exporters listening on.)
nl='
'
hit=" "
set -f
for w in $l; do case $w in ino:*) hit="$hit${w#ino:} " ;; esac; done
set +f
[ "$hit" != " " ] || exit 0
if [ -n "$dir" ]; then set -- -e docker-proxy -e "$dir/"; else set -- -e docker-proxy; fi
cand=""
for f in $(grep -laF "$@" /proc/[0-9]*/cmdline 2>/dev/null); do f=${f#/proc/}; cand="$cand ${f%%/*}"; done
own=""
if [ -n "$cand" ]; then
  dirs=""; for p in $cand; do dirs="$dirs /proc/$p/fd"; done
  own=$(ls -l $dirs 2>/dev/null | awk -v hit="$hit" -v one="${cand# }" '
    /^\/proc\/[0-9]+\/fd:$/ { split($0, x, "/"); pid = x[3]; next }
    / -> socket:\[[0-9]+\]$/ { i = $NF; gsub(/[^0-9]/, "", i); if (index(hit, " " i " ")) print i, (pid == "" ? one : pid) }')
fi
cmd() { [ -r "/proc/$1/cmdline" ] && printf '__cmd %s %s\n' "$1" "$(tr '\0' ' ' < "/proc/$1/cmdline" | cut -c1-400)"; }
left=$hit
ifs=$IFS
IFS=$nl
for o in $own; do
  IFS=$ifs
  set -f; set -- $o; set +f
  [ $# -eq 2 ] || continue
  i=$1; p=$2
  comm=""; { read -r comm < "/proc/$p/comm"; } 2>/dev/null
  printf '__own %s %s %s\n' "$i" "$p" "$comm"
  cmd "$p"
  while :; do case $left in *" $i "*) left="${left%%" $i "*} ${left#*" $i "}" ;; *) break ;; esac; done
done
IFS=$ifs
case $left in *[0-9]*) ;; *) exit 0 ;; esac
p=$(ss -ltnpe 2>/dev/null | awk -v left="$left" '{ for (i = 5; i <= NF; i++) if ($i ~ /^ino:/ && index(left, " " substr($i, 5) " ")) { print "__p " $0; next } }')
[ -n "$p" ] && printf '%s\n' "$p"
for pid in $(printf '%s\n' "$p" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do cmd "$pid"; done
exit 0"#;

impl Fact for ListeningPorts {
    type Output = Vec<Listener>;
    fn key(&self) -> String {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        format!(
            "listening_ports:{}:{}:{}",
            ports.join(" "),
            self.addrs.join(" "),
            self.dir
        )
    }
    fn script(&self) -> Script {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        Script::new()
            .var("ports", &ports.join(" "))
            .var("addrs", &self.addrs.join(" "))
            .var("dir", &self.dir)
            .fragment(LISTENING_PORTS)
    }
    fn parse(&self, p: &Probe) -> Result<Vec<Listener>, String> {
        let mut out: Vec<(Listener, Option<u64>)> = Vec::new();
        // Socket inode → (process name, pid) of its holder.
        let mut holders: HashMap<u64, (Option<String>, Option<u32>)> = HashMap::new();
        let mut cmdlines = HashMap::new();
        for line in p.stdout.lines() {
            if line == "__noss" {
                return Err("`ss` (iproute2) is not installed".into());
            }
            if let Some(rest) = line.strip_prefix("__cmd ")
                && let Some((pid, cmd)) = rest.split_once(' ')
                && let Ok(pid) = pid.parse::<u32>()
            {
                cmdlines.insert(pid, cmd.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("__own ") {
                let mut w = rest.splitn(3, ' ');
                if let (Some(Ok(ino)), Some(Ok(pid))) = (
                    w.next().map(str::parse::<u64>),
                    w.next().map(str::parse::<u32>),
                ) {
                    let comm = w.next().map(str::trim).filter(|c| !c.is_empty());
                    holders.insert(ino, (comm.map(str::to_string), Some(pid)));
                }
            } else if let Some(l) = line.strip_prefix("__p ") {
                if let (Some(h), Some(ino)) = (parse_ss_line(l), ss_inode(l)) {
                    holders.insert(ino, (h.process, h.pid));
                }
            } else if let Some(l) = line.strip_prefix("__l ") {
                out.extend(parse_ss_line(l).map(|x| (x, ss_inode(l))));
            }
        }
        Ok(out
            .into_iter()
            .map(|(mut l, ino)| {
                if let Some((process, pid)) = ino.and_then(|i| holders.get(&i)) {
                    (l.process, l.pid) = (process.clone(), *pid);
                }
                l.cmdline = l.pid.and_then(|p| cmdlines.get(&p).cloned());
                l
            })
            .collect())
    }
}

/// The socket inode of an `ss -e` line (`ino:12345`).
fn ss_inode(line: &str) -> Option<u64> {
    line.split_whitespace()
        .skip(5)
        .find_map(|f| f.strip_prefix("ino:"))
        .and_then(|i| i.parse().ok())
}

/// One `ss -ltn[p][e]` data line (the probe drops the header):
/// `LISTEN 0 4096 0.0.0.0:9100 0.0.0.0:* users:(("name",pid=1,fd=3)) ino:77 sk:1 <->`.
fn parse_ss_line(line: &str) -> Option<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = fields.get(3)?;
    let (addr, port) = local.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr = addr.split('%').next().unwrap_or(addr).to_string();
    // `users:((…))` only: `-e`'s fields after it (a cgroup path) may hold anything.
    let rest = fields.get(5..).map(|f| f.join(" ")).unwrap_or_default();
    let users = rest
        .split_once("users:((")
        .map(|(_, u)| u.split_once("))").map_or(u, |(u, _)| u))
        .unwrap_or_default();
    let process = users
        .strip_prefix('"')
        .and_then(|r| r.split_once('"'))
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
        Script::new().fragment(DOCKER_REFUSED).fragment(
            "docker_refused && exit 0\n\
             docker ps --format '{{.Names}}\t{{.Ports}}' 2>/dev/null | sed 's/^/__c /'\nexit 0",
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
elif [ -r /sys/fs/selinux/enforce ]; then printf '%s\n' "enforce $(cat /sys/fs/selinux/enforce)"
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

const FREE_SPACE: &str = r#"while [ ! -e "$p" ] && [ "$p" != / ] && [ -n "$p" ]; do
  case $p in */*) p=${p%/*}; p=${p:-/} ;; *) p=. ;; esac
done
printf '%s\n' "__path $p"
nl='
'
d=$(df -Pk -- "$p" 2>/dev/null) && printf '%s\n' "__df ${d##*"$nl"}"
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

// `present_images REF...`: `present REF` or `absent REF` for each, from one `docker image
// inspect` of them all (one CLI start, not one per image). The engine names each image it lacks
// on a line ending `No such image: REF` (Docker 20.10: `Error: No such image: REF`; Docker 28:
// `Error response from daemon: no such image: REF: No such image: REF`) and prints the format
// once per image it has. The others are present only when those counts add up: any other
// error (the daemon down, a malformed reference) leaves them absent, as a refused CLI does.
const PRESENT_IMAGES: &str = r#"present_images() {
  if docker_refused; then for i in "$@"; do printf '%s\n' "absent $i"; done; return 0; fi
  if out=$(docker image inspect --format __found -- "$@" 2>&1); then
    for i in "$@"; do printf '%s\n' "present $i"; done; return 0
  fi
  nl='
'
  out="$nl$out$nl"
  found=0; rest=0
  case $out in *"$nl__found$nl"*)
    ifs=$IFS; IFS=$nl; set -f
    for l in $out; do [ "$l" = __found ] && found=$((found + 1)); done
    IFS=$ifs; set +f ;;
  esac
  for i in "$@"; do case $out in *"No such image: $i$nl"*) ;; *) rest=$((rest + 1)) ;; esac; done
  for i in "$@"; do
    case $out in *"No such image: $i$nl"*) printf '%s\n' "absent $i"; continue ;; esac
    if [ "$found" -eq "$rest" ]; then printf '%s\n' "present $i"; else printf '%s\n' "absent $i"; fi
  done
}"#;

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
            .fragment(DOCKER_REFUSED)
            .fragment(PRESENT_IMAGES)
            .fragment("[ $# -eq 0 ] || present_images \"$@\"\nexit 0")
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

// ---------------------------------------------------------------------------------------------
// Capabilities

/// Linux capability names by number (`capability.h`), for the bounding-set check.
const CAP_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capability bounding set of the Docker engine (`dockerd`'s `CapBnd`, or the probe's own
/// when no dockerd process is visible) and the kernel's last capability. A privileged container
/// asks for every capability the kernel has; runc cannot grant one outside the engine's
/// bounding set, and the container does not start (`unable to apply caps: operation not
/// permitted`, Docker 20.10).
#[derive(Debug, Clone, Copy, Default)]
pub struct CapabilityBounds;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapBounds {
    /// `dockerd` (its process was read) or `session` (the probe's own).
    pub source: String,
    pub bounding: u64,
    /// `/proc/sys/kernel/cap_last_cap` (None: unknown, nothing is judged missing).
    pub last_cap: Option<u32>,
}

impl CapBounds {
    /// Capabilities the kernel has that the bounding set lacks (`SYS_RESOURCE`, or `CAP_<n>`).
    pub fn missing(&self) -> Vec<String> {
        let Some(last) = self.last_cap else {
            return Vec::new();
        };
        (0..=last.min(63))
            .filter(|&n| self.bounding & (1u64 << n) == 0)
            .map(|n| {
                CAP_NAMES
                    .get(n as usize)
                    .map_or_else(|| format!("CAP_{n}"), |s| (*s).to_string())
            })
            .collect()
    }
}

// dockerd's pid file first (`$pidfile`): `/var/run/docker.pid` is dockerd's default `--pidfile` (`dockerd
// --help`, Docker 20.10.24: `-p, --pidfile string  Path to use for daemon PID file (default
// "/var/run/docker.pid")`; https://docs.docker.com/reference/cli/dockerd/). A stale file (its
// pid now another process) is skipped. Only without it `pidof`/`pgrep`, which read every
// process of the host. dockerd writes the pid with no newline after it (the file is the 4
// bytes `1433` on this project's test machine, Docker 28.2.2), and `read` then fails at end
// of file with the value read: so a value counts, whatever `read` returned.
const CAP_BOUNDS: &str = r#"p=""
comm=""
q=""
if [ -r "$pidfile" ] && { read -r q < "$pidfile" || [ -n "$q" ]; } && { read -r comm < "/proc/$q/comm"; } 2>/dev/null && [ "$comm" = dockerd ]; then p=$q
else p=$(pidof dockerd 2>/dev/null) || p=$(pgrep -x dockerd 2>/dev/null); fi
p=${p%% *}; p=${p%%"
"*}
# CapBnd: from a status file, read by the shell (no grep started).
capbnd() { b=""; while read -r k v; do [ "$k" = CapBnd: ] && { b=$v; return 0; }; done < "$1"; return 1; }
if [ -n "$p" ] && { capbnd "/proc/$p/status"; } 2>/dev/null; then printf '%s\n' "__capbnd dockerd $b"
else capbnd /proc/self/status; printf '%s\n' "__capbnd session $b"; fi
# (`cat`, not `read`: the shell reads a byte at a time, and a sysctl file answers a read at an
# offset past 0 with end-of-file, so `read` would give "4" of "40".)
printf '%s\n' "__last $(cat /proc/sys/kernel/cap_last_cap 2>/dev/null)"
exit 0"#;

/// dockerd's default `--pidfile` (see `CAP_BOUNDS`).
const DOCKERD_PIDFILE: &str = "/var/run/docker.pid";

fn cap_bounds_script(pidfile: &str) -> Script {
    Script::new().var("pidfile", pidfile).fragment(CAP_BOUNDS)
}

impl Fact for CapabilityBounds {
    type Output = CapBounds;
    fn key(&self) -> String {
        "capability_bounds".into()
    }
    fn script(&self) -> Script {
        cap_bounds_script(DOCKERD_PIDFILE)
    }
    fn parse(&self, p: &Probe) -> Result<CapBounds, String> {
        let mut out = None;
        let mut last_cap = None;
        for line in p.stdout.lines() {
            if let Some(rest) = line.strip_prefix("__capbnd ") {
                let mut w = rest.split_whitespace();
                let source = w.next().unwrap_or_default().to_string();
                let hex = w.next().ok_or_else(|| format!("no CapBnd in `{line}`"))?;
                let bounding = u64::from_str_radix(hex, 16)
                    .map_err(|_| format!("CapBnd `{hex}` is not hexadecimal"))?;
                out = Some((source, bounding));
            } else if let Some(n) = line.strip_prefix("__last") {
                last_cap = n.trim().parse().ok();
            }
        }
        let (source, bounding) = out.ok_or("no CapBnd line")?;
        Ok(CapBounds {
            source,
            bounding,
            last_cap,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Registry reachability

/// The registry host an image reference is pulled from: its first path part when that names a
/// host (has `.` or `:`, or is `localhost`), else Docker Hub's API host.
pub fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
            if first == "docker.io" || first == "index.docker.io" {
                DOCKER_HUB.into()
            } else {
                first.to_string()
            }
        }
        _ => DOCKER_HUB.into(),
    }
}

/// Docker Hub's registry API host (what `docker pull bitnami/node-exporter` talks to).
pub const DOCKER_HUB: &str = "registry-1.docker.io";

/// For each image the engine does not have, whether its registry answers `GET /v2/` from the
/// host (HTTPS, then plain HTTP; each try bounded by `timeout_secs`), with curl or wget.
/// Images present are not probed; each registry is probed once.
#[derive(Debug, Clone)]
pub struct RegistryReach {
    pub refs: Vec<String>,
    pub timeout_secs: u64,
}

/// One registry's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// An HTTP status from `/v2/` (`scheme` https or http).
    Answered { scheme: String, status: u16 },
    /// Neither scheme answered: the client's last error.
    Unreachable { error: String },
    /// Neither curl nor wget on the host: not checked.
    NoClient,
}

impl Reach {
    /// 200 (open) or 401 (auth required) from `/v2/`: a Docker registry answers.
    pub fn reachable(&self) -> bool {
        matches!(
            self,
            Reach::Answered {
                status: 200 | 401,
                ..
            }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryProbe {
    /// Image references the engine has (not pulled, not probed).
    pub present: Vec<String>,
    /// (registry host, answer), one per registry of an absent image.
    pub registries: Vec<(String, Reach)>,
}

// `$@`: `<registry> <reference>` pairs; the references the engine has (one `docker image
// inspect` for them all) are not probed. The error line is the client's, on one line.
const REGISTRY_REACH: &str = r#"[ $# -eq 0 ] && exit 0
nl='
'
refs() { n=$#; for a in "$@"; do set -- "$@" "${a#* }"; done; shift "$n"; present_images "$@"; }
present=$nl$(refs "$@")$nl
set -f
seen=" "
for a in "$@"; do
  reg=${a%% *}; ref=${a#* }
  case $present in *"${nl}present $ref$nl"*) printf '%s\n' "__present $ref"; continue ;; esac
  case $seen in *" $reg "*) continue ;; esac
  seen="$seen$reg "
  if command -v curl >/dev/null 2>&1; then
    r=""
    for s in https http; do
      out=$(curl -skS -o /dev/null -w '\n__code %{http_code}' --connect-timeout "$t" --max-time "$t" "$s://$reg/v2/" 2>&1)
      code=$(printf '%s\n' "$out" | sed -n 's/^__code //p')
      if [ -n "$code" ] && [ "$code" != 000 ]; then r="__answer $reg $s $code"; break; fi
      err=$(printf '%s\n' "$out" | grep -v '^__code' | grep -v '^$' | tail -n 1)
    done
    printf '%s\n' "${r:-__unreachable $reg $err}"
  elif command -v wget >/dev/null 2>&1; then
    r=""
    for s in https http; do
      out=$(wget -S --spider --no-check-certificate -T "$t" -t 1 "$s://$reg/v2/" 2>&1)
      code=$(printf '%s\n' "$out" | sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' | tail -n 1)
      if [ -n "$code" ]; then r="__answer $reg $s $code"; break; fi
      err=$(printf '%s\n' "$out" | grep -v '^$' | tail -n 1)
    done
    printf '%s\n' "${r:-__unreachable $reg $err}"
  else
    printf '%s\n' "__noclient $reg"
  fi
done
exit 0"#;

impl Fact for RegistryReach {
    type Output = RegistryProbe;
    fn key(&self) -> String {
        format!(
            "registry_reach:{}:{}",
            self.timeout_secs,
            self.refs.join(" ")
        )
    }
    fn script(&self) -> Script {
        let pairs: Vec<String> = self
            .refs
            .iter()
            .map(|r| format!("{} {r}", registry_of(r)))
            .collect();
        Script::new()
            .var("t", &self.timeout_secs.max(1).to_string())
            .positional(pairs.iter().map(String::as_str))
            .fragment(DOCKER_REFUSED)
            .fragment(PRESENT_IMAGES)
            .fragment(REGISTRY_REACH)
    }
    fn parse(&self, p: &Probe) -> Result<RegistryProbe, String> {
        let mut out = RegistryProbe::default();
        for line in p.stdout.lines() {
            if let Some(r) = line.strip_prefix("__present ") {
                out.present.push(r.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("__answer ") {
                let mut w = rest.split_whitespace();
                let (Some(reg), Some(scheme), Some(code)) = (w.next(), w.next(), w.next()) else {
                    return Err(format!("bad registry answer `{line}`"));
                };
                let status = code
                    .parse()
                    .map_err(|_| format!("bad HTTP status in `{line}`"))?;
                out.registries.push((
                    reg.to_string(),
                    Reach::Answered {
                        scheme: scheme.to_string(),
                        status,
                    },
                ));
            } else if let Some(rest) = line.strip_prefix("__unreachable ") {
                let (reg, error) = rest.split_once(' ').unwrap_or((rest, ""));
                // The client's error line, bounded (it quotes the host's own text).
                let error: String = error.trim().chars().take(300).collect();
                out.registries
                    .push((reg.to_string(), Reach::Unreachable { error }));
            } else if let Some(reg) = line.strip_prefix("__noclient ") {
                out.registries
                    .push((reg.trim().to_string(), Reach::NoClient));
            }
        }
        Ok(out)
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

    /// A script at `path` that the tests' sh can start (a shim standing in for a tool).
    fn executable(path: &std::path::Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `fact`'s script run by sh with a `docker` on the PATH that logs each call, then runs
    /// `body`: its answer, and how many times the Docker CLI was started. (DOCKER_HOST set:
    /// the CLI is asked whoever runs the test, see DOCKER_REFUSED.)
    fn with_docker_shim<F: Fact>(fact: &F, body: &str) -> (F::Output, usize) {
        let tmp = tempfile::tempdir().unwrap();
        let calls = tmp.path().join("calls");
        let shim = tmp.path().join("docker");
        executable(
            &shim,
            &format!("#!/bin/sh\necho \"$*\" >> '{}'\n{body}\n", calls.display()),
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(fact.script().build())
            .env("PATH", format!("{}:/usr/bin:/bin", tmp.path().display()))
            .env("DOCKER_HOST", "unix:///var/run/docker.sock")
            .output()
            .unwrap();
        let got = fact
            .parse(&probe(&String::from_utf8_lossy(&out.stdout)))
            .unwrap();
        let n = std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .count();
        (got, n)
    }

    #[test]
    fn docker_info_is_asked_once_whether_it_answers_or_fails() {
        // A `docker` that logs each call: answering (a warning on stderr, as Docker 20.10
        // prints without swap limit support) and refusing (exit 1, the error on stderr).
        let run = |body: &str| with_docker_shim(&DockerEngine, body);
        let (ok, n) = run("echo 'WARNING: No swap limit support' >&2\n\
             echo '__info 20.10.24+dfsg1|/nonexistent/docker|name=seccomp,profile=default,'");
        assert_eq!(n, 1);
        let DockerAccess::Ok(e) = ok else {
            panic!("{ok:?}")
        };
        assert_eq!(
            (e.version.as_str(), e.root_dir.as_str()),
            ("20.10.24+dfsg1", "/nonexistent/docker")
        );
        let (denied, n) = run(
            "echo 'permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock' >&2\nexit 1",
        );
        assert_eq!(n, 1);
        assert!(matches!(denied, DockerAccess::Denied { .. }), "{denied:?}");
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
        let got = ListeningPorts::default().parse(&p).unwrap();
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
        assert!(ListeningPorts::default().parse(&probe("__noss\n")).is_err());
    }

    #[test]
    fn ss_e_listeners_take_the_holder_found_for_their_socket_inode() {
        // `ss -Hltne` / `ss -Hltnpe` lines as iproute2 6.1 prints them (Debian 12): the holder
        // of 127.0.0.5:9100 found among the deploy dir's processes (`__own`), the one of
        // 0.0.0.0:9105 by `ss -p` (`__p`); the other two were not looked up.
        let p = probe(
            "__l LISTEN 0      4096       127.0.0.5:9100       0.0.0.0:* uid:1001 ino:52001 sk:3 cgroup:/user.slice <->\n\
             __l LISTEN 0      4096       127.0.0.6:9100       0.0.0.0:* uid:1001 ino:52002 sk:4 cgroup:/user.slice <->\n\
             __l LISTEN 0      4096         0.0.0.0:9105       0.0.0.0:* ino:61000 sk:5 cgroup:/system.slice/docker.service <->\n\
             __l LISTEN 0      128             [::]:22            [::]:* ino:1088 sk:1 cgroup:/ v6only:1 <->\n\
             __own 52001 4242 prometheus-node\n\
             __cmd 4242 /usr/bin/prometheus-node-exporter --collector.textfile.directory=/home/ops/exporter-deploy/textfile \n\
             __p LISTEN 0      4096         0.0.0.0:9105       0.0.0.0:* users:((\"cadvisor\",pid=77,fd=3)) ino:61000 sk:5 cgroup:/system.slice/docker.service <->\n\
             __cmd 77 /usr/bin/cadvisor -port 9105\n",
        );
        let got = ListeningPorts::default().parse(&p).unwrap();
        let brief: Vec<(&str, u16, Option<&str>, Option<u32>)> = got
            .iter()
            .map(|l| (l.addr.as_str(), l.port, l.process.as_deref(), l.pid))
            .collect();
        assert_eq!(
            brief,
            [
                ("127.0.0.5", 9100, Some("prometheus-node"), Some(4242)),
                ("127.0.0.6", 9100, None, None),
                ("0.0.0.0", 9105, Some("cadvisor"), Some(77)),
                ("::", 22, None, None),
            ]
        );
        assert_eq!(
            got[0].cmdline.as_deref(),
            Some(
                "/usr/bin/prometheus-node-exporter --collector.textfile.directory=/home/ops/exporter-deploy/textfile"
            )
        );
        assert_eq!(
            got[2].cmdline.as_deref(),
            Some("/usr/bin/cadvisor -port 9105")
        );
        // A cgroup path after `users:((…))` is not read as a process or a pid.
        let l = parse_ss_line(
            "LISTEN 0 5 0.0.0.0:9 0.0.0.0:* ino:9 sk:1 cgroup:/x/pid=12/((\"odd\" <->",
        )
        .unwrap();
        assert_eq!((l.process, l.pid), (None, None));
    }

    /// The listening-ports probe run by sh on this machine, with the test's own listener.
    fn ports_probe(f: &ListeningPorts) -> Option<(String, Vec<Listener>)> {
        ports_probe_with_path(f, None)
    }

    /// [`ports_probe`] with `path` (if any) first on the PATH.
    fn ports_probe_with_path(
        f: &ListeningPorts,
        path: Option<&std::path::Path>,
    ) -> Option<(String, Vec<Listener>)> {
        if std::process::Command::new("ss").arg("-V").output().is_err() {
            eprintln!("SKIPPED: no `ss` (iproute2) on this machine");
            return None;
        }
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(f.script().build());
        if let Some(dir) = path {
            let rest = std::env::var("PATH").unwrap_or_default();
            sh.env("PATH", format!("{}:{rest}", dir.display()));
        }
        let out = sh.output().unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let got = f.parse(&probe(&stdout)).unwrap();
        Some((stdout, got))
    }

    #[test]
    fn a_port_held_by_a_process_from_the_deploy_dir_is_named_without_walking_every_process() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        // This test's executable stands in for an exporter started from the deploy dir.
        let exe = std::fs::read_to_string("/proc/self/cmdline").unwrap();
        let exe = exe.split('\0').next().unwrap();
        let dir = std::path::Path::new(exe).parent().unwrap();
        let f = ListeningPorts {
            ports: vec![port],
            addrs: vec!["127.0.0.1".into()],
            dir: dir.display().to_string(),
        };
        let Some((stdout, got)) = ports_probe(&f) else {
            return;
        };
        assert!(stdout.contains("__own "), "{stdout}");
        assert!(!stdout.contains("__p "), "ss -p ran: {stdout}");
        let l = got.iter().find(|l| l.port == port).unwrap();
        // This process (or a fork of it that holds the socket a moment before its exec).
        assert!(l.pid.is_some(), "{stdout}");
        assert!(
            l.cmdline.as_deref().unwrap_or_default().contains(exe),
            "{l:?}"
        );
    }

    /// A port of 127.0.0.1 held by this test (a process outside any deploy dir), and the probe
    /// of it. Keep the listener alive while probing.
    fn foreign_listener() -> (std::net::TcpListener, u16, ListeningPorts) {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let f = ListeningPorts {
            ports: vec![port],
            addrs: vec!["127.0.0.1".into()],
            dir: "/nonexistent/promfleet-deploy-dir".into(),
        };
        (held, port, f)
    }

    /// iproute2 before 4.13 has no `ss -H` (CentOS 7: "ss: invalid option -- 'H'", exit 255,
    /// as iproute2-ss130716 answers); the probe silenced that error and saw no listener at all,
    /// so a port taken by an old exporter looked free. Here an `ss` that refuses `-H` as that
    /// one does and otherwise is this machine's.
    #[test]
    fn an_ss_without_no_header_made_every_port_look_free() {
        let Ok(real) = std::process::Command::new("sh")
            .args(["-c", "command -v ss"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        else {
            return;
        };
        if real.is_empty() {
            eprintln!("SKIPPED: no `ss` (iproute2) on this machine");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let shim = tmp.path().join("ss");
        executable(
            &shim,
            &format!(
                "#!/bin/sh\nfor a; do case $a in --*) ;; -*H*) echo \"ss: invalid option -- 'H'\" >&2; exit 255 ;; esac; done\nexec {real} \"$@\"\n"
            ),
        );
        let (_held, port, f) = foreign_listener();
        let Some((stdout, got)) = ports_probe_with_path(&f, Some(tmp.path())) else {
            return;
        };
        assert!(got.iter().any(|l| l.port == port), "{stdout}");
        // Every listener, asked for none in particular: the header is not one of them.
        let Some((stdout, all)) =
            ports_probe_with_path(&ListeningPorts::default(), Some(tmp.path()))
        else {
            return;
        };
        assert!(all.iter().any(|l| l.port == port), "{stdout}");
        assert!(!stdout.contains("State"), "{stdout}");
    }

    #[test]
    fn a_port_held_by_anything_else_is_named_by_ss_p() {
        let (_held, port, f) = foreign_listener();
        let Some((stdout, got)) = ports_probe(&f) else {
            return;
        };
        assert!(stdout.contains("__p "), "{stdout}");
        let l = got.iter().find(|l| l.port == port).unwrap();
        // As root, `ss -p` names the holder (a process of this test; a concurrent fork may
        // hold the socket a moment, so it is not necessarily this pid).
        if std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        {
            assert!(l.process.is_some() && l.pid.is_some(), "{stdout}");
        }
    }

    #[test]
    fn a_listener_on_another_address_or_port_is_left_out() {
        let held = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let port = held.local_addr().unwrap().port();
        // Another host of a shared-loopback fleet (127.0.0.2) and a port nobody asked about.
        for f in [
            ListeningPorts {
                ports: vec![port],
                addrs: vec!["127.0.0.1".into()],
                dir: String::new(),
            },
            ListeningPorts {
                ports: vec![port.wrapping_add(1)],
                addrs: vec!["127.0.0.2".into()],
                dir: String::new(),
            },
        ] {
            let Some((stdout, got)) = ports_probe(&f) else {
                return;
            };
            assert!(
                !stdout.contains("__p ") && !stdout.contains("__own "),
                "{stdout}"
            );
            assert!(got.iter().all(|l| l.port != port), "{got:?}");
        }
        // Asked for no port in particular: every listener, none looked up.
        let Some((stdout, got)) = ports_probe(&ListeningPorts::default()) else {
            return;
        };
        assert!(
            !stdout.contains("__p ") && !stdout.contains("__own "),
            "{stdout}"
        );
        let l = got.iter().find(|l| l.port == port).unwrap();
        assert_eq!((l.addr.as_str(), l.process.as_deref()), ("127.0.0.2", None));
    }

    /// `pidof` and `pgrep` in `dir` that find nothing and append their name to the file
    /// returned: which of the walks of every process a probe started.
    fn process_walk_shims(dir: &std::path::Path) -> std::path::PathBuf {
        let called = dir.join("called");
        for tool in ["pidof", "pgrep"] {
            executable(
                &dir.join(tool),
                &format!("#!/bin/sh\necho {tool} >> '{}'\nexit 1\n", called.display()),
            );
        }
        called
    }

    #[test]
    fn dockerd_is_found_from_its_pid_file_before_pidof_walks_the_processes() {
        let tmp = tempfile::tempdir().unwrap();
        // A process named dockerd (sleep through a symlink: the kernel names a process after
        // the path it was started by), and pidof/pgrep that record being called. Not a copy:
        // a test thread forking while the copy is still open for writing makes its exec fail
        // with ETXTBSY ("Text file busy").
        let fake = tmp.path().join("dockerd");
        std::os::unix::fs::symlink("/bin/sleep", &fake).unwrap();
        let mut child = std::process::Command::new(&fake)
            .arg("600")
            .spawn()
            .unwrap();
        let shims = tmp.path().join("bin");
        std::fs::create_dir(&shims).unwrap();
        let called = process_walk_shims(&shims);
        let pidfile = tmp.path().join("docker.pid");
        let run = |pid: String| {
            std::fs::write(&pidfile, pid).unwrap();
            let _ = std::fs::remove_file(&called);
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cap_bounds_script(&pidfile.display().to_string()).build())
                .env("PATH", format!("{}:/usr/bin:/bin", shims.display()))
                .output()
                .unwrap();
            let c = CapabilityBounds
                .parse(&probe(&String::from_utf8_lossy(&out.stdout)))
                .unwrap();
            (
                c.source,
                std::fs::read_to_string(&called).unwrap_or_default(),
            )
        };
        // As dockerd writes it (no newline: see CAP_BOUNDS), and with a newline.
        let fresh = run(child.id().to_string());
        let fresh_line = run(format!("{}\n", child.id()));
        // A stale pid file (its pid is now another process): the walk, then the session's.
        let stale = run(std::process::id().to_string());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(fresh, ("dockerd".to_string(), String::new()));
        assert_eq!(fresh_line, ("dockerd".to_string(), String::new()));
        assert_eq!(stale, ("session".to_string(), "pidof\npgrep\n".to_string()));
    }

    /// The machine's own dockerd and the pid file it wrote: the probe finds it there, with no
    /// walk of the processes (`pidof`, `pgrep` recorded by shims as above).
    #[test]
    fn the_pid_file_of_the_real_dockerd_was_never_read() {
        let pidfile = std::path::Path::new(DOCKERD_PIDFILE);
        let Ok(pid) = std::fs::read_to_string(pidfile) else {
            eprintln!("SKIPPED: no {DOCKERD_PIDFILE} (no Docker engine on this machine)");
            return;
        };
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", pid.trim()));
        if comm.as_deref().map(str::trim).ok() != Some("dockerd") {
            eprintln!("SKIPPED: {DOCKERD_PIDFILE} names no running dockerd");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let called = process_walk_shims(tmp.path());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cap_bounds_script(DOCKERD_PIDFILE).build())
            .env("PATH", format!("{}:/usr/bin:/bin", tmp.path().display()))
            .output()
            .unwrap();
        let c = CapabilityBounds
            .parse(&probe(&String::from_utf8_lossy(&out.stdout)))
            .unwrap();
        assert_eq!(c.source, "dockerd");
        assert_eq!(std::fs::read_to_string(&called).unwrap_or_default(), "");
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

    /// dash's `echo` reads backslash escapes (`\c` ends its output, newline included) where
    /// bash's does not, so a value echoed by a probe came back cut short, glued to the next
    /// line, on Debian's /bin/sh only. Run by the machine's sh (dash here) and by bash.
    #[test]
    fn a_deploy_dir_with_a_backslash_hid_its_free_space() {
        let tmp = tempfile::tempdir().unwrap();
        let odd = tmp.path().join("a\\cb\\nc");
        std::fs::create_dir(&odd).unwrap();
        let f = FreeSpace {
            path: odd.join("exporter-deploy").display().to_string(),
        };
        for shell in ["sh", "bash"] {
            let out = std::process::Command::new(shell)
                .arg("-c")
                .arg(f.script().build())
                .output()
                .unwrap();
            let space = f
                .parse(&probe(&String::from_utf8_lossy(&out.stdout)))
                .unwrap_or_else(|e| panic!("{shell}: {e}"));
            assert_eq!(space.checked, odd.display().to_string(), "{shell}");
            assert!(space.available_kib > 0, "{shell}");
        }
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
    fn capability_bounds_of_an_engine_lacking_sys_resource_name_it() {
        // Recorded on the test VM (Debian 12, Docker 20.10): PID 1's bounding set, and so
        // dockerd's, lacks bit 24; `docker run --privileged` fails there with "unable to apply
        // caps: operation not permitted".
        let c = CapabilityBounds
            .parse(&probe("__capbnd dockerd \t000001fffeffffff\n__last 40\n"))
            .unwrap();
        assert_eq!(c.source, "dockerd");
        assert_eq!(c.missing(), ["SYS_RESOURCE"]);
        // A systemd host: complete.
        let c = CapabilityBounds
            .parse(&probe("__capbnd dockerd \t000001ffffffffff\n__last 40\n"))
            .unwrap();
        assert!(c.missing().is_empty());
        // An older kernel (5.4: cap_last_cap 37) with the full set of its own.
        let c = CapabilityBounds
            .parse(&probe("__capbnd session 0000003fffffffff\n__last 37\n"))
            .unwrap();
        assert!(c.missing().is_empty(), "{:?}", c.missing());
        // No cap_last_cap: nothing can be judged missing.
        let c = CapabilityBounds
            .parse(&probe("__capbnd session 00000000a80425fb\n__last\n"))
            .unwrap();
        assert!(c.missing().is_empty());
        assert!(CapabilityBounds.parse(&probe("__last 40\n")).is_err());
        assert!(
            CapabilityBounds
                .parse(&probe("__capbnd dockerd zz\n"))
                .is_err()
        );
    }

    #[test]
    fn registry_of_an_image_is_its_host_part_or_docker_hub() {
        assert_eq!(registry_of("gcr.io/cadvisor/cadvisor:v0.45.0"), "gcr.io");
        assert_eq!(registry_of("bitnami/node-exporter:latest"), DOCKER_HUB);
        assert_eq!(registry_of("busybox:1"), DOCKER_HUB);
        assert_eq!(registry_of("docker.io/bitnami/node-exporter:1"), DOCKER_HUB);
        assert_eq!(
            registry_of("mirror:5000/cadvisor/cadvisor:v1"),
            "mirror:5000"
        );
        assert_eq!(registry_of("localhost/x:1"), "localhost");
        assert_eq!(registry_of("127.0.0.1:5000/x:1"), "127.0.0.1:5000");
    }

    #[test]
    fn registry_answers_recorded_from_curl_and_wget_parse() {
        // Recorded on Debian 12: a double answering 401 on :45123 (plain HTTP, so the HTTPS
        // try failed first), a closed port :45124; then the same with wget only.
        let f = RegistryReach {
            refs: vec![],
            timeout_secs: 3,
        };
        let p = f
            .parse(&probe(
                "__present promfleet-test/node-exporter:local\n\
                 __answer 127.0.0.1:45123 http 401\n\
                 __unreachable 127.0.0.1:45124 curl: (7) Failed to connect to 127.0.0.1 port 45124 after 0 ms: Couldn't connect to server\n\
                 __unreachable 127.0.0.1:45125 Connecting to 127.0.0.1:45125... failed: Connection refused.\n\
                 __noclient gcr.io\n",
            ))
            .unwrap();
        assert_eq!(p.present, ["promfleet-test/node-exporter:local"]);
        let r: Vec<(&str, bool)> = p
            .registries
            .iter()
            .map(|(h, r)| (h.as_str(), r.reachable()))
            .collect();
        assert_eq!(
            r,
            [
                ("127.0.0.1:45123", true),
                ("127.0.0.1:45124", false),
                ("127.0.0.1:45125", false),
                ("gcr.io", false)
            ]
        );
        assert_eq!(
            p.registries[1].1,
            Reach::Unreachable {
                error: "curl: (7) Failed to connect to 127.0.0.1 port 45124 after 0 ms: Couldn't connect to server".into()
            }
        );
        assert_eq!(p.registries[3].1, Reach::NoClient);
        // 404 from /v2/: something answers, but not a registry.
        let p = f.parse(&probe("__answer proxy.local https 404\n")).unwrap();
        assert!(!p.registries[0].1.reachable());
        assert!(f.parse(&probe("__answer proxy.local https\n")).is_err());
        // A hostile host's error line is bounded.
        let long = format!("__unreachable r {}\n", "x".repeat(10_000));
        let p = f.parse(&probe(&long)).unwrap();
        assert!(matches!(&p.registries[0].1, Reach::Unreachable { error } if error.len() == 300));
    }

    /// LocalImages run by sh against a `docker` that logs its calls and answers `image
    /// inspect` as Docker 28.2 does on this machine (recorded: `docker image inspect --format x
    /// -- nonexist:1 also/missing:latest` printed `Error response from daemon: no such image:
    /// nonexist:1: No such image: nonexist:1` on stderr per missing image, exit 1).
    fn local_images_with(
        present: &[&str],
        stderr_extra: &str,
        refs: &[&str],
    ) -> (Vec<(String, bool)>, usize) {
        let have = present.join(" ");
        let f = LocalImages {
            refs: refs.iter().map(|r| r.to_string()).collect(),
        };
        with_docker_shim(
            &f,
            &format!(
                "{stderr_extra}\nshift 4; rc=0\n\
                 for r in \"$@\"; do case ' {have} ' in *\" $r \"*) echo __found ;; \
                 *) echo \"Error response from daemon: no such image: $r: No such image: $r\" >&2; rc=1 ;; esac; done\n\
                 exit $rc"
            ),
        )
    }

    #[test]
    fn local_images_started_the_docker_cli_once_per_image() {
        let row = |refs: &[&str], present: &[bool]| -> Vec<(String, bool)> {
            refs.iter()
                .map(|r| r.to_string())
                .zip(present.iter().copied())
                .collect()
        };
        let refs = [
            "bitnami/node-exporter:latest",
            "gcr.io/cadvisor/cadvisor:v0.45.0",
            "b:1",
        ];
        // Some present, some missing: one call, each image as the engine said.
        let (got, n) = local_images_with(&["bitnami/node-exporter:latest", "b:1"], "", &refs);
        assert_eq!((got, n), (row(&refs, &[true, false, true]), 1));
        // All present, all missing (`b:1` missing does not make `b:10` missing).
        let (got, n) = local_images_with(&refs, "", &refs);
        assert_eq!((got, n), (row(&refs, &[true, true, true]), 1));
        let (got, n) = local_images_with(&["b:10"], "", &["b:1", "b:10"]);
        assert_eq!((got, n), (row(&["b:1", "b:10"], &[false, true]), 1));
        // Any other error: the images it did not name are not taken as present.
        let (got, n) = local_images_with(
            &[],
            "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1",
            &refs,
        );
        assert_eq!((got, n), (row(&refs, &[false, false, false]), 1));
        // No image asked: no call.
        let (got, n) = local_images_with(&[], "", &[]);
        assert_eq!((got, n), (Vec::new(), 0));
    }

    #[test]
    fn the_registry_probe_asks_a_registry_once_and_skips_images_the_engine_has() {
        // The script run by sh against a closed loopback port: one line per registry.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let f = RegistryReach {
            refs: vec![
                format!("127.0.0.1:{port}/a/b:1"),
                format!("127.0.0.1:{port}/c:2"),
            ],
            timeout_secs: 2,
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(f.script().build())
            .output()
            .unwrap();
        let p = f
            .parse(&probe(&String::from_utf8_lossy(&out.stdout)))
            .unwrap();
        assert_eq!(p.registries.len(), 1, "{p:?}");
        assert_eq!(p.registries[0].0, format!("127.0.0.1:{port}"));
        if !matches!(p.registries[0].1, Reach::NoClient) {
            assert!(!p.registries[0].1.reachable(), "{p:?}");
        }
    }

    #[test]
    fn cap_last_cap_was_read_one_byte_at_a_time() {
        // The probe run by sh on this machine gives the kernel's whole number.
        let Ok(want) = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap") else {
            eprintln!("SKIPPED: no /proc/sys/kernel/cap_last_cap");
            return;
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(CapabilityBounds.script().build())
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(
            got.lines().any(|l| l == format!("__last {}", want.trim())),
            "{got}"
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
            Box::new(CapabilityBounds),
            Box::new(ListeningPorts {
                ports: vec![22, 9100],
                addrs: vec!["127.0.0.1".into()],
                dir: "exporter-deploy".into(),
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
