//! OpenSSH as the oracle for ~/.ssh/config: each row of `CASES` is a config file (and inventory
//! overrides). For every row the real `ssh -G` gives the expected resolution and promfleet's
//! (`promfleet inventory ssh-config --json`) must match it; for rows that log in, the real
//! `ssh -F <file> -o BatchMode=yes … whoami` and `promfleet exec … -- whoami` run against the
//! same real sshds and must agree on the verdict, the login user, the identity files offered,
//! and, at every sshd involved (bastions too), the users tried and the number of connections
//! (so a failed login is one connection, never a retry loop). Rows about host keys
//! (`UserKnownHostsFile`, `GlobalKnownHostsFile`, `StrictHostKeyChecking`, `HostKeyAlias`,
//! `HashKnownHosts`) log in against known_hosts files of their own, reset between the two
//! tools, and must also record the same lines there. A new case is one row.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::agent::SshAgent;
use testkit::sshd::{Fleet, KeyKind};

use crate::support::*;

/// Whose keys the row's ssh-agent holds (the same agent serves ssh and promfleet).
#[derive(Clone, Copy, PartialEq)]
enum Agent {
    None,
    /// The fleet's authorized key.
    FleetKey,
    /// Seven keys the servers do not know (more than sshd's MaxAuthTries 6).
    SevenStrangers,
    /// The seven strangers, then the fleet's key.
    SevenStrangersThenFleetKey,
}

/// One case. Text fields take placeholders: `{A}` `{B}` (targets), `{J1}` `{J2}` (bastions),
/// `{S}` (a host that accepts TCP and never answers), `{port}`, `{user}` (sudo user),
/// `{nosudo}`, `{key}` (the authorized key), `{dir}` (the row's directory), `{kh}`, `{Akey}`
/// (`{A}`'s host key, `type base64`).
struct Case {
    name: &'static str,
    config: &'static str,
    /// The inventory host's `ssh.address` (what `ssh` is given as destination).
    dest: &'static str,
    /// Inventory `ssh.user` / `ssh.port` (ssh gets them as `-l` / `-p`).
    user: Option<&'static str>,
    port: Option<&'static str>,
    /// Files written first: (path, content); content `KEY` = a copy of the authorized key,
    /// `PUB` = its public half only.
    files: &'static [(&'static str, &'static str)],
    agent: Agent,
    /// Also log in with both and compare.
    login: bool,
    /// The host key is checked against the row's own known_hosts files (its `files`, which
    /// the config names): compare the lines each tool recorded there.
    host_keys: bool,
    /// Extra promfleet flags.
    flags: &'static [&'static str],
    /// promfleet must finish within this many seconds (a bound the row's flags set).
    within: Option<u64>,
    /// promfleet's error must say this (when the login fails).
    error_says: Option<&'static str>,
}

const fn row(name: &'static str, config: &'static str, dest: &'static str) -> Case {
    Case {
        name,
        config,
        dest,
        user: None,
        port: None,
        files: &[],
        agent: Agent::None,
        login: true,
        host_keys: false,
        flags: &[],
        within: None,
        error_says: None,
    }
}

/// Every config divergence of issue 11, and the basics around them.
const CASES: &[Case] = &[
    row(
        "host_block_hostname_user_port_identityfile",
        "Host web\n  HostName {A}\n  User {user}\n  Port {port}\n  IdentityFile {key}\n",
        "web",
    ),
    row(
        "host_star_first_then_specific_first_value_wins",
        "Host *\n  User {user}\nHost web\n  HostName {A}\n  Port {port}\n  User {nosudo}\n  IdentityFile {key}\n",
        "web",
    ),
    row(
        "specific_then_host_star_first_value_wins",
        "Host web\n  HostName {A}\n  Port {port}\n  User {nosudo}\n  IdentityFile {key}\nHost *\n  User {user}\n",
        "web",
    ),
    row(
        "host_patterns_negation_and_case",
        "Host w* !web\n  User {nosudo}\nHost WEB\n  User nobody\nHost *\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
        "web",
    ),
    row(
        "match_host_sees_the_hostname",
        "Host web\n  HostName {A}\n  Port {port}\n  IdentityFile {key}\nMatch host {A}\n  User {nosudo}\nHost *\n  User {user}\n",
        "web",
    ),
    row(
        "match_originalhost_sees_the_alias",
        "Match originalhost web\n  HostName {A}\n  User {nosudo}\nHost *\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
        "web",
    ),
    Case {
        user: Some("{nosudo}"),
        ..row(
            "match_user_sees_the_inventory_user",
            "Match user {nosudo}\n  HostName {A}\nHost *\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n",
            "web",
        )
    },
    row(
        "match_localuser",
        "Match localuser root\n  User {nosudo}\nHost *\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
        "web",
    ),
    row(
        "match_all",
        "Host web\n  HostName {A}\n  Port {port}\n  IdentityFile {key}\nMatch all\n  User {nosudo}\n",
        "web",
    ),
    Case {
        files: &[("{dir}/flag", "")],
        ..row(
            "match_exec_true",
            "Match exec \"test -e {dir}/flag\"\n  User {nosudo}\nHost *\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
            "web",
        )
    },
    row(
        "match_exec_false",
        "Match exec \"test -e {dir}/absent\"\n  User {nosudo}\nHost *\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
        "web",
    ),
    row(
        "match_exec_with_tokens",
        "Host web\n  HostName {A}\nMatch exec \"test %h = {A} && test %n = web\"\n  User {nosudo}\nHost *\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
        "web",
    ),
    Case {
        files: &[("{dir}/{user}@{A}-{port}", "KEY")],
        ..row(
            "tokens_r_h_p_in_identityfile",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentitiesOnly yes\n  IdentityFile {dir}/%r@%h-%p\n",
            "web",
        )
    },
    Case {
        files: &[("{dir}/root_%_web_key", "KEY")],
        ..row(
            "tokens_d_u_n_percent_in_identityfile",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentitiesOnly yes\n  IdentityFile %d/..{dir}/%u_%%_%n_key\n",
            "web",
        )
    },
    row(
        "missing_first_identityfile_tries_the_next",
        "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {dir}/missing\n  IdentityFile {key}\n",
        "web",
    ),
    Case {
        agent: Agent::SevenStrangers,
        error_says: Some("IdentitiesOnly yes"),
        ..row(
            "agent_with_seven_keys_hits_max_auth_tries",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
            "web",
        )
    },
    Case {
        agent: Agent::SevenStrangers,
        ..row(
            "identities_only_with_seven_agent_keys",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentitiesOnly yes\n  IdentityFile {key}\n",
            "web",
        )
    },
    Case {
        agent: Agent::SevenStrangersThenFleetKey,
        files: &[("{dir}/agent_key.pub", "PUB")],
        ..row(
            "identities_only_agent_key_named_by_its_pub_file",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentitiesOnly yes\n  IdentityFile {dir}/agent_key\n",
            "web",
        )
    },
    row(
        "proxyjump_chain_a_b",
        "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  ProxyJump {user}@{J1}:{port},{nosudo}@{J2}:{port}\nHost {J1} {J2}\n  IdentityFile {key}\n",
        "web",
    ),
    row(
        "proxyjump_none_wins_over_a_later_block",
        "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  ProxyJump none\nHost *\n  ProxyJump {user}@127.0.0.1:1\n",
        "web",
    ),
    row(
        "bastion_without_user_is_the_local_user",
        "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  ProxyJump bastion\nHost bastion\n  HostName {J1}\n  Port {port}\n  IdentityFile {key}\n",
        "web",
    ),
    row(
        "bastion_user_from_its_own_block",
        "Host web\n  HostName {A}\n  Port {port}\n  User {nosudo}\n  IdentityFile {key}\n  ProxyJump bastion\nHost bastion\n  HostName {J1}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
        "web",
    ),
    Case {
        agent: Agent::FleetKey,
        ..row(
            "bastion_jumping_through_its_own_proxyjump",
            "Host web\n  HostName {B}\n  Port {port}\n  User {user}\n  ProxyJump b2\nHost b2\n  HostName {J2}\n  Port {port}\n  User {nosudo}\n  ProxyJump {user}@{J1}:{port}\n",
            "web",
        )
    },
    Case {
        files: &[("{dir}/included", "Host web\n  User {nosudo}\n")],
        ..row(
            "include",
            "Include {dir}/included\nHost *\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
            "web",
        )
    },
    Case {
        user: Some("{nosudo}"),
        ..row(
            "inventory_user_wins_over_config",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n",
            "web",
        )
    },
    Case {
        port: Some("{port}"),
        ..row(
            "inventory_port_wins_over_config",
            "Host web\n  HostName {A}\n  Port 1\n  User {user}\n  IdentityFile {key}\n",
            "web",
        )
    },
    Case {
        flags: &["--connect-timeout", "30", "--retries", "1"],
        within: Some(25),
        ..row(
            "connect_timeout_from_config_beats_the_flag",
            "Host web\n  HostName {S}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  ConnectTimeout 2\n",
            "web",
        )
    },
    row(
        "server_alive_interval_and_count_max",
        "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  ServerAliveInterval 7\n  ServerAliveCountMax 2\n",
        "web",
    ),
    // Host-key options: both tools log in against the row's own known_hosts files (listed in
    // `files`, reset between the two runs) and must reach the same verdict and record the
    // same lines in the same file.
    Case {
        files: &[
            ("{dir}/kh1", ""),
            ("{dir}/kh_{A}_{port}", "[{A}]:{port} {Akey}\n"),
        ],
        host_keys: true,
        ..row(
            "user_known_hosts_files",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {dir}/kh1 ~/kh_%h_%p {dir}/kh_%h_%p\n",
            "web",
        )
    },
    Case {
        files: &[
            ("{dir}/known_hosts", ""),
            ("{dir}/global", "[{A}]:{port} {Akey}\n"),
        ],
        host_keys: true,
        ..row(
            "global_known_hosts_file",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {dir}/known_hosts\n  GlobalKnownHostsFile {dir}/global\n",
            "web",
        )
    },
    Case {
        files: &[("{dir}/known_hosts", ""), ("{dir}/global", "")],
        host_keys: true,
        ..row(
            "hash_known_hosts_records_a_hashed_line",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {dir}/known_hosts\n  GlobalKnownHostsFile {dir}/global\n  HashKnownHosts yes\n  StrictHostKeyChecking accept-new\n",
            "web",
        )
    },
    Case {
        files: &[("{dir}/known_hosts", "")],
        host_keys: true,
        ..row(
            "strict_host_key_checking_accept_new",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {dir}/known_hosts\n  StrictHostKeyChecking accept-new\n",
            "web",
        )
    },
    Case {
        files: &[("{dir}/known_hosts", "")],
        host_keys: true,
        ..row(
            "strict_host_key_checking_no",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {dir}/known_hosts\n  StrictHostKeyChecking no\n",
            "web",
        )
    },
    Case {
        files: &[("{dir}/known_hosts", "")],
        host_keys: true,
        ..row(
            "strict_host_key_checking_yes",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {dir}/known_hosts\n  StrictHostKeyChecking yes\n",
            "web",
        )
    },
    Case {
        files: &[("{dir}/known_hosts", "")],
        host_keys: true,
        ..row(
            "strict_host_key_checking_ask_is_the_default",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {dir}/known_hosts\n  StrictHostKeyChecking ask\n",
            "web",
        )
    },
    Case {
        files: &[("{dir}/known_hosts", "web-key {Akey}\n")],
        host_keys: true,
        ..row(
            "host_key_alias",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {dir}/known_hosts\n  HostKeyAlias web-key\n",
            "web",
        )
    },
    Case {
        files: &[("{dir}/known_hosts", "")],
        host_keys: true,
        ..row(
            "host_key_alias_accept_new_records_the_alias",
            "Host web\n  HostName {A}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {dir}/known_hosts\n  HostKeyAlias web-key\n  StrictHostKeyChecking accept-new\n",
            "web",
        )
    },
];

/// The hosts every row uses: two targets, two bastions, a silent host; sshds of our own with
/// OpenSSH's default MaxAuthTries (6) and TCP forwarding for ProxyJump.
struct Lab {
    fleet: Fleet,
    sshds: BTreeMap<String, OwnSshd>,
    strangers: Vec<PathBuf>,
    /// ssh's home for `~` (the local user's home from passwd, as ssh uses).
    home: PathBuf,
    /// OpenSSH's defaults (`ssh -G -F none`).
    defaults: BTreeMap<String, Vec<String>>,
}

const ROLES: [(&str, &str); 5] = [
    ("A", "host001"),
    ("B", "host002"),
    ("J1", "host003"),
    ("J2", "host004"),
    ("S", "host005"),
];

impl Lab {
    fn start() -> Option<Lab> {
        if !require_root() {
            return None;
        }
        if !have("ssh") || !have("ssh-agent") {
            eprintln!("SKIPPED: needs OpenSSH's ssh and ssh-agent");
            return None;
        }
        let fleet = Fleet::builder().hosts(5).start().expect("fleet");
        let mut sshds = BTreeMap::new();
        for (_, name) in &ROLES[..4] {
            let d = OwnSshd::replace(
                &fleet,
                name,
                &[
                    "MaxAuthTries 6",
                    "AllowTcpForwarding yes",
                    "LogLevel VERBOSE",
                ],
            );
            sshds.insert(name.to_string(), d);
        }
        fleet.silence("host005").expect("silence");
        let strangers = (0..7)
            .map(|i| {
                fleet
                    .make_client_key(&format!("stranger{i}"), KeyKind::Ed25519, "", false)
                    .expect("stranger key")
            })
            .collect();
        let defaults = ssh_g(&["-F", "none", "promfleet.invalid"]);
        let ukh = defaults["userknownhostsfile"][0].clone();
        let home = Path::new(&ukh)
            .parent()
            .and_then(Path::parent)
            .expect("home from ssh's default known_hosts path")
            .to_path_buf();
        Some(Lab {
            fleet,
            sshds,
            strangers,
            home,
            defaults,
        })
    }

    fn ip(&self, role: &str) -> String {
        let name = ROLES.iter().find(|(r, _)| *r == role).expect("role").1;
        self.fleet.host(name).expect("host").ip.to_string()
    }

    fn fill(&self, text: &str, dir: &Path) -> String {
        let mut s = text
            .replace("{port}", &self.fleet.port().to_string())
            .replace("{user}", self.fleet.user())
            .replace("{nosudo}", self.fleet.nosudo_user())
            .replace("{key}", &self.fleet.client_key().display().to_string())
            .replace("{dir}", &dir.display().to_string())
            .replace("{kh}", &self.fleet.known_hosts().display().to_string())
            .replace(
                "{Akey}",
                &self.fleet.host_key_line(ROLES[0].1).expect("host key"),
            );
        for (role, _) in ROLES {
            s = s.replace(&format!("{{{role}}}"), &self.ip(role));
        }
        s
    }

    /// sshd name → log length, to read what one client did.
    fn log_marks(&self) -> BTreeMap<String, usize> {
        self.sshds
            .iter()
            .map(|(n, d)| (n.clone(), d.log_text().len()))
            .collect()
    }

    /// Per sshd: (connections, users tried) since `marks`.
    fn log_since(
        &self,
        marks: &BTreeMap<String, usize>,
    ) -> BTreeMap<String, (usize, BTreeSet<String>)> {
        // sshd writes the last lines of a closed session just after the client exits.
        std::thread::sleep(Duration::from_millis(300));
        self.sshds
            .iter()
            .map(|(n, d)| {
                let text = d.log_text();
                let new = text.get(marks[n]..).unwrap_or_default();
                (n.clone(), (connections(new), users_tried(new)))
            })
            .filter(|(_, (c, _))| *c > 0)
            .collect()
    }
}

/// Lines `key value…` of `ssh -G` as key → values (repeated keys in order; lists split).
fn parse_ssh_g(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        let e = m.entry(k.to_string()).or_default();
        match k {
            "userknownhostsfile" | "globalknownhostsfile" => {
                e.extend(v.split_whitespace().map(str::to_string))
            }
            _ => e.push(v.to_string()),
        }
    }
    m
}

fn ssh_g(args: &[&str]) -> BTreeMap<String, Vec<String>> {
    let out = Command::new("ssh")
        .arg("-G")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ssh -G");
    assert!(
        out.status.success(),
        "ssh -G {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_ssh_g(&String::from_utf8_lossy(&out.stdout))
}

fn connections(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("Connection from "))
        .count()
}

/// Users a client tried to log in as, from sshd's VERBOSE log.
fn users_tried(log: &str) -> BTreeSet<String> {
    let after = |l: &str, marker: &str| {
        l.split_once(marker)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(str::to_string)
    };
    log.lines()
        .filter_map(|l| {
            after(l, "Accepted publickey for ")
                .or_else(|| after(l, "Failed publickey for invalid user "))
                .or_else(|| after(l, "Failed publickey for "))
                .or_else(|| after(l, "Invalid user "))
                .or_else(|| after(l, "authenticating user "))
                .or_else(|| {
                    l.contains("not allowed because")
                        .then(|| after(l, "User "))
                        .flatten()
                })
        })
        .collect()
}

/// Identity files ssh loaded (`-v`: "identity file PATH type N"), certificates left out.
fn identity_files_loaded(stderr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in stderr.lines() {
        let Some((_, rest)) = l.split_once("identity file ") else {
            continue;
        };
        let Some((path, _)) = rest.rsplit_once(" type ") else {
            continue;
        };
        if out.last().is_some_and(|p| format!("{p}-cert") == path) {
            continue;
        }
        out.push(path.to_string());
    }
    out
}

/// Run with a deadline; the child is killed past it.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("wait"));
    while !waiter.is_finished() {
        if started.elapsed() > limit {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(id as i32, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (waiter.join().expect("join"), started.elapsed())
}

/// The values promfleet's JSON must show for an `ssh -G` answer (`None`: not set).
fn expected_option(
    key: &str,
    ssh: &BTreeMap<String, Vec<String>>,
    d: &BTreeMap<String, Vec<String>>,
) -> Value {
    let v = ssh.get(key).cloned().unwrap_or_default();
    let first = v.first().cloned().unwrap_or_default();
    let is_default = d.get(key) == ssh.get(key);
    match key {
        "userknownhostsfile" if is_default => Value::Array(vec![]),
        "userknownhostsfile" | "globalknownhostsfile" => v.into(),
        "stricthostkeychecking" if is_default => Value::Null,
        "stricthostkeychecking" => match first.as_str() {
            "true" | "yes" | "ask" => "yes".into(),
            "false" | "no" | "off" => "no".into(),
            other => other.into(),
        },
        "hashknownhosts" | "identitiesonly" => (first == "yes").into(),
        "connecttimeout" if is_default || first == "0" => Value::Null,
        "serveraliveinterval" if is_default || first == "0" => Value::Null,
        "serveralivecountmax" if is_default => Value::Null,
        "connecttimeout" | "serveraliveinterval" | "serveralivecountmax" => {
            first.parse::<u64>().map(Value::from).unwrap_or(Value::Null)
        }
        "hostkeyalias" if first.is_empty() || first == "none" => Value::Null,
        "port" => first.parse::<u64>().map(Value::from).unwrap_or(Value::Null),
        _ => first.into(),
    }
}

const COMPARED: [&str; 12] = [
    "hostname",
    "user",
    "port",
    "identitiesonly",
    "hostkeyalias",
    "userknownhostsfile",
    "globalknownhostsfile",
    "stricthostkeychecking",
    "hashknownhosts",
    "connecttimeout",
    "serveraliveinterval",
    "serveralivecountmax",
];

/// The ProxyJump hops of promfleet's JSON, first hop first.
fn hops(t: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut j = &t["proxyjump"];
    while j.is_object() {
        out.push(j.clone());
        j = &j["proxyjump"];
    }
    out.reverse();
    out
}

/// Write the row's files; returns the plain-text ones with their content (the known_hosts
/// files of a `host_keys` row), to reset them and to see what a tool appended.
fn write_files(lab: &Lab, c: &Case, dir: &Path) -> Vec<(PathBuf, String)> {
    let mut texts = Vec::new();
    for (path, content) in c.files {
        let path = PathBuf::from(lab.fill(path, dir));
        match *content {
            "KEY" => {
                std::fs::copy(lab.fleet.client_key(), &path).expect("copy key");
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
            "PUB" => {
                let mut pubfile = lab.fleet.client_key().as_os_str().to_owned();
                pubfile.push(".pub");
                std::fs::copy(PathBuf::from(pubfile), &path).expect("copy pub");
            }
            text => {
                let text = lab.fill(text, dir);
                std::fs::write(&path, &text).expect("file");
                texts.push((path, text));
            }
        }
    }
    texts
}

/// The lines a tool appended to the row's known_hosts files, as `file: name type base64`
/// (a hashed name, salted afresh each time, as `(hashed)`); the files are reset afterwards
/// for the next tool.
fn recorded(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, before) in files {
        let after = std::fs::read_to_string(path).unwrap_or_default();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match after.strip_prefix(before.as_str()) {
            Some(new) => {
                for l in new.lines().filter(|l| !l.trim().is_empty()) {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let host = match f.first() {
                        Some(h) if h.starts_with("|1|") => "(hashed)",
                        Some(h) => h,
                        None => "",
                    };
                    let key = f.get(1..3).map(|k| k.join(" ")).unwrap_or_default();
                    out.push(format!("{name}: {host} {key}"));
                }
            }
            None => out.push(format!("{name}: rewritten, not appended to:\n{after}")),
        }
        std::fs::write(path, before).expect("reset known_hosts");
    }
    out
}

fn run_case(lab: &Lab, c: &Case) -> Vec<String> {
    let mut bad = Vec::new();
    let dir = lab.fleet.root().join("cases").join(c.name);
    std::fs::create_dir_all(&dir).expect("case dir");
    let cfg = dir.join("ssh_config");
    // Host keys: the fleet's known_hosts for every row that does not name its own (first
    // value wins, so this trailer only fills in).
    let config = lab.fill(c.config, &dir) + &lab.fill("Host *\n  UserKnownHostsFile {kh}\n", &dir);
    std::fs::write(&cfg, &config).expect("config");
    let mut known_hosts = write_files(lab, c, &dir);
    if !c.host_keys {
        known_hosts.clear();
    }
    let user = c.user.map(|u| lab.fill(u, &dir));
    let port = c.port.map(|p| lab.fill(p, &dir));
    let inv = dir.join("inventory.yml");
    let mut ssh_fields = format!("address: {}", serde_json::json!(c.dest));
    if let Some(u) = &user {
        ssh_fields += &format!(", user: {}", serde_json::json!(u));
    }
    if let Some(p) = &port {
        ssh_fields += &format!(", port: {p}");
    }
    std::fs::write(
        &inv,
        format!(
            "groups:\n  IDE:\n    hosts:\n      - {{ name: h, ip: {}, ssh: {{ {ssh_fields} }} }}\n",
            lab.ip("A")
        ),
    )
    .expect("inventory");

    // ssh's command-line flags for this row (inventory overrides as Ansible passes them).
    let mut flags: Vec<String> = vec!["-F".into(), cfg.display().to_string()];
    if let Some(u) = &user {
        flags.extend(["-l".into(), u.clone()]);
    }
    if let Some(p) = &port {
        flags.extend(["-p".into(), p.clone()]);
    }

    // 1. Resolution: ssh -G against promfleet's.
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--", c.dest]);
    let expected = ssh_g(&args);
    let out = Command::new(bin())
        .args(["inventory", "ssh-config", "--json", "-i"])
        .arg(&inv)
        .arg("--ssh-config")
        .arg(&cfg)
        .output()
        .expect("promfleet inventory ssh-config");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: no JSON ({e}): {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let got = got[0].clone();
    for key in COMPARED {
        let want = expected_option(key, &expected, &lab.defaults);
        if got[key] != want {
            bad.push(format!("{key}: ssh -G says {want}, promfleet {}", got[key]));
        }
    }
    // IdentityFile: ssh -G prints them unexpanded; `~` alone is checked here, tokens by the
    // login below (ssh -v names the files it loads).
    let raw = expected.get("identityfile").cloned().unwrap_or_default();
    let want_files: Vec<Value> = raw
        .iter()
        .map(|f| match f.strip_prefix("~/") {
            Some(rest) => lab.home.join(rest).display().to_string(),
            None => f.clone(),
        })
        .map(Value::from)
        .collect();
    if !raw.iter().any(|f| f.contains('%'))
        && got["identityfile"] != Value::Array(want_files.clone())
    {
        bad.push(format!(
            "identityfile: ssh -G says {want_files:?}, promfleet {}",
            got["identityfile"]
        ));
    }
    // ProxyJump: the same hops, each resolved as ssh resolves it (`ssh -J <earlier hops>`).
    let chain = expected.get("proxyjump").and_then(|v| v.first()).cloned();
    // A bastion's own ProxyJump (beyond the first hop) is its own resolution's business.
    let all_hops = hops(&got);
    let specs: Vec<&str> = chain
        .as_deref()
        .map(|c| c.split(',').collect())
        .unwrap_or_default();
    let ours = &all_hops[all_hops.len().saturating_sub(specs.len())..];
    if ours.len() != specs.len() {
        bad.push(format!(
            "proxyjump: ssh -G says {chain:?}, promfleet has {} hop(s)",
            all_hops.len()
        ));
    } else {
        for (i, spec) in specs.iter().enumerate() {
            let (u, rest) = match spec.rsplit_once('@') {
                Some((u, r)) => (Some(u), r),
                None => (None, *spec),
            };
            // ssh -G prints hops as `user@[host]:port`.
            let (h, p) = match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
                _ => (rest, None),
            };
            let h = h.trim_start_matches('[').trim_end_matches(']');
            let earlier = specs[..i].join(",");
            let mut a: Vec<&str> = vec!["-F", flags[1].as_str()];
            if let Some(u) = u {
                a.extend(["-l", u]);
            }
            if let Some(p) = p {
                a.extend(["-p", p]);
            }
            if !earlier.is_empty() {
                a.extend(["-J", earlier.as_str()]);
            }
            a.extend(["--", h]);
            let hop = ssh_g(&a);
            for key in ["hostname", "user", "port"] {
                let want = expected_option(key, &hop, &lab.defaults);
                if ours[i][key] != want {
                    bad.push(format!(
                        "hop {spec} {key}: ssh -G says {want}, promfleet {}",
                        ours[i][key]
                    ));
                }
            }
        }
    }
    if !c.login {
        return bad;
    }

    // 2. Log in with both, with the same agent.
    let agent = (c.agent != Agent::None).then(|| {
        let a = SshAgent::start(&dir).expect("ssh-agent");
        if matches!(
            c.agent,
            Agent::SevenStrangers | Agent::SevenStrangersThenFleetKey
        ) {
            for k in &lab.strangers {
                a.add(k).expect("ssh-add");
            }
        }
        if matches!(c.agent, Agent::FleetKey | Agent::SevenStrangersThenFleetKey) {
            a.add(lab.fleet.client_key()).expect("ssh-add");
        }
        a
    });
    let with_agent = |cmd: &mut Command| match &agent {
        Some(a) => {
            cmd.env("SSH_AUTH_SOCK", a.socket());
        }
        None => {
            cmd.env_remove("SSH_AUTH_SOCK");
        }
    };
    let limit = Duration::from_secs(60);

    let marks = lab.log_marks();
    let mut ssh = Command::new("ssh");
    ssh.arg("-v").args(&flags).args(["-o", "BatchMode=yes"]);
    if c.host_keys {
        // Only the key the row is about: no learning of the server's other host keys.
        ssh.args(["-o", "UpdateHostKeys=no"]);
    }
    ssh.args(["--", c.dest, "whoami"]);
    with_agent(&mut ssh);
    let (ssh_out, _) = run_bounded(ssh, limit);
    let ssh_sessions = lab.log_since(&marks);
    let ssh_recorded = recorded(&known_hosts);
    let ssh_ok = ssh_out.status.success();
    let ssh_user = String::from_utf8_lossy(&ssh_out.stdout).trim().to_string();
    let ssh_err = String::from_utf8_lossy(&ssh_out.stderr).to_string();

    let marks = lab.log_marks();
    let mut pf = Command::new(bin());
    pf.args(["exec", "--json", "-i"])
        .arg(&inv)
        .arg("--ssh-config")
        .arg(&cfg)
        .arg("--known-hosts")
        .arg(lab.fleet.known_hosts())
        .args(["--state-dir"])
        .arg(dir.join("state"))
        .args(["--retry-delay-ms", "100"])
        .args(c.flags)
        .args(["--", "whoami"]);
    with_agent(&mut pf);
    let (pf_out, took) = run_bounded(pf, limit);
    let pf_sessions = lab.log_since(&marks);
    let pf_recorded = recorded(&known_hosts);
    if c.host_keys {
        eprintln!(
            "  {}: ssh {}, recorded {ssh_recorded:?}",
            c.name,
            if ssh_out.status.success() {
                "logged in"
            } else {
                "refused"
            }
        );
    }
    if c.host_keys && ssh_recorded != pf_recorded {
        bad.push(format!(
            "known_hosts lines recorded: ssh {ssh_recorded:?}, promfleet {pf_recorded:?}"
        ));
    }
    let line = String::from_utf8_lossy(&pf_out.stdout)
        .lines()
        .next()
        .unwrap_or("{}")
        .to_string();
    let pf_json: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let pf_ok = pf_json["rc"] == 0;
    let pf_user = pf_json["stdout"].as_str().unwrap_or("").trim().to_string();
    let pf_error = pf_json["error"].as_str().unwrap_or("").to_string();

    if (ssh_ok, &ssh_user) != (pf_ok, &pf_user) {
        bad.push(format!(
            "login: ssh {} as {ssh_user:?}, promfleet {} as {pf_user:?} ({pf_error})\nssh stderr tail: {}",
            if ssh_ok { "logged in" } else { "failed" },
            if pf_ok { "logged in" } else { "failed" },
            ssh_err.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
        ));
    }
    if ssh_sessions != pf_sessions {
        bad.push(format!(
            "sshd logs (connections, users tried): ssh {ssh_sessions:?}, promfleet {pf_sessions:?}"
        ));
    }
    if !c.config.contains("ProxyJump {") && !c.config.contains("ProxyJump b") {
        let loaded = identity_files_loaded(&ssh_err);
        let ours: Vec<String> = got["identityfile"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !loaded.is_empty() && loaded != ours {
            bad.push(format!(
                "identity files: ssh loaded {loaded:?}, promfleet {ours:?}"
            ));
        }
    }
    if let Some(limit) = c.within
        && took > Duration::from_secs(limit)
    {
        bad.push(format!("promfleet took {took:?}, more than {limit}s"));
    }
    if let Some(want) = c.error_says
        && !pf_error.contains(want)
    {
        bad.push(format!(
            "promfleet's error does not say {want:?}: {pf_error}"
        ));
    }
    bad
}

#[test]
fn openssh_config_differential_table() {
    let Some(lab) = Lab::start() else { return };
    assert!(
        CASES.len() >= 25,
        "the table keeps at least 25 config cases"
    );
    let mut failures = Vec::new();
    for c in CASES {
        let bad = run_case(&lab, c);
        eprintln!(
            "{:<55} {}",
            c.name,
            if bad.is_empty() {
                "agrees with OpenSSH"
            } else {
                "DIFFERS"
            }
        );
        if !bad.is_empty() {
            failures.push(format!("{}:\n  {}", c.name, bad.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "promfleet differs from OpenSSH:\n{}",
        failures.join("\n")
    );
}

/// Without an `ssh` binary the config cannot be resolved: no config, one warning, inventory
/// settings still apply.
#[test]
fn without_ssh_there_is_no_config_and_one_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inventory.yml");
    std::fs::write(
        &inv,
        "groups:\n  IDE:\n    hosts:\n      - { name: a, ip: 10.0.0.1, ssh: { user: deploy, port: 2222 } }\n      - { name: b, ip: 10.0.0.2 }\n",
    )
    .expect("inventory");
    let cfg = dir.path().join("ssh_config");
    std::fs::write(&cfg, "Host *\n  User fromconfig\n").expect("config");
    let out = Command::new(bin())
        .env("PATH", dir.path())
        .args(["inventory", "ssh-config", "--json", "-u", "fallback", "-i"])
        .arg(&inv)
        .arg("--ssh-config")
        .arg(&cfg)
        .output()
        .expect("promfleet");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (v[0]["user"].as_str(), v[0]["port"].as_u64()),
        (Some("deploy"), Some(2222))
    );
    assert_eq!(v[1]["user"], "fallback", "{v:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("is not installed").count(), 1, "{stderr}");
}

/// What promfleet cannot do as OpenSSH would is refused for that host, never bypassed: a
/// ProxyCommand (connecting directly would skip the operator's proxy) and a ProxyJump cycle.
#[test]
fn proxy_command_and_jump_cycles_are_refused_not_bypassed() {
    if !have("ssh") {
        eprintln!("SKIPPED: needs OpenSSH's ssh");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inventory.yml");
    std::fs::write(
        &inv,
        "groups:\n  IDE:\n    hosts:\n      - { name: p, ip: 10.0.0.1, ssh: { address: viaproxy } }\n      - { name: c, ip: 10.0.0.2, ssh: { address: loop1 } }\n      - { name: ok, ip: 10.0.0.3 }\n",
    )
    .expect("inventory");
    let cfg = dir.path().join("ssh_config");
    std::fs::write(
        &cfg,
        "Host viaproxy\n  ProxyCommand nc %h %p\nHost loop1\n  ProxyJump loop2\nHost loop2\n  ProxyJump loop1\n",
    )
    .expect("config");
    let out = Command::new(bin())
        .args(["inventory", "ssh-config", "--json", "-i"])
        .arg(&inv)
        .arg("--ssh-config")
        .arg(&cfg)
        .output()
        .expect("promfleet");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    let error = |i: usize| v[i]["error"].as_str().unwrap_or_default().to_string();
    assert!(error(0).contains("ProxyCommand"), "{v:#}");
    assert!(error(1).contains("cycle"), "{v:#}");
    assert_eq!(v[2]["hostname"], "10.0.0.3", "{v:#}");
}

/// Regression: a host known only as an alias of the operator's ssh config (`Host web1` +
/// `HostName 10.0.1.12`, the inventory naming just `web1`, as Ansible's own inventories do) was
/// refused at load: promfleet asked DNS for `web1` while `ssh web1` goes to the config's
/// HostName. Now an inventory name resolves as ssh resolves it. Oracle per row: the real
/// `ssh -G -F cfg NAME`'s `hostname`, then (for a name) `getent ahosts`' first address.
/// `promfleet inventory list --json --ssh-config CFG -i INV`: each host's row by name.
fn listed(cfg: &Path, inv: &Path) -> BTreeMap<String, Value> {
    let out = Run::new(&["inventory", "list", "--json", "--ssh-config"])
        .arg(cfg)
        .arg("-i")
        .arg(inv)
        .output();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter()
        .map(|r| (r["name"].as_str().unwrap_or_default().to_string(), r))
        .collect()
}

#[test]
fn ssh_config_only_alias_was_refused_for_want_of_an_ip() {
    const CONFIG: &str = "Host web1\n  HostName 127.0.0.42\n\
                          Host web2\n  HostName localhost\n\
                          Match originalhost web3\n  HostName 127.0.0.43\n\
                          Host web4 web5\n  HostName 127.0.0.44\n";
    // Inventory names: four aliases (`web4` through a multi-pattern `Host` line; `web2` to a
    // name, resolved from /etc/hosts). No row may need DNS: tests send nothing off the machine
    // (so the config-less case, which would ask DNS for `web1`, is not run).
    let names = ["web1", "web2", "web3", "web4"];
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::write(&cfg, CONFIG).unwrap();
    let inv = dir.path().join("hosts.ini");
    std::fs::write(&inv, format!("[web]\n{}\n", names.join("\n"))).unwrap();

    let rows = listed(&cfg, &inv);
    for name in names {
        let hostname = ssh_g(&["-F", cfg.to_str().unwrap(), "--", name])["hostname"][0].clone();
        let want = if hostname.parse::<std::net::IpAddr>().is_ok() {
            hostname.clone()
        } else {
            let getent = Command::new("getent")
                .args(["ahosts", &hostname])
                .output()
                .expect("getent");
            String::from_utf8_lossy(&getent.stdout)
                .split_whitespace()
                .next()
                .expect("getent ahosts answers")
                .to_owned()
        };
        let row = rows
            .get(name)
            .unwrap_or_else(|| panic!("{name} listed: {rows:?}"));
        assert_eq!(row["ip"], want, "{name} (ssh -G hostname {hostname})");
        // SSH still goes to the name, so the config applies to the connection as for `ssh`.
        assert_eq!(row["address"], name);
    }
}

/// An inventory name was resolved with `ssh -G NAME` alone, so a `Match user` (or a `%p`
/// token) of the config saw the local user and port 22, not the host's login: the address
/// registered in Consul and scraped could differ from where `ssh -l USER -p PORT NAME` (as
/// Ansible and promfleet connect) goes. The oracle is `ssh -G` with the host's `-l` / `-p`.
#[test]
fn match_user_saw_the_local_user_when_resolving_an_inventory_name() {
    const CONFIG: &str = "Match user deploy originalhost web1,web3\n  HostName 127.0.0.51\n\
                          Match exec \"test %p = 2222\" originalhost web4\n  HostName 127.0.0.53\n\
                          Host web1\n  HostName 127.0.0.61\n\
                          Host web2\n  HostName 127.0.0.62\n\
                          Host web3\n  HostName 127.0.0.63\n\
                          Host web4\n  HostName 127.0.0.64\n";
    // (name, ansible_user, ansible_port); web3 has no user: the local user's answer.
    let rows: [(&str, Option<&str>, Option<&str>); 4] = [
        ("web1", Some("deploy"), None),
        ("web2", Some("deploy"), None),
        ("web3", None, None),
        ("web4", Some("ops"), Some("2222")),
    ];
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::write(&cfg, CONFIG).unwrap();
    let inv = dir.path().join("hosts.ini");
    let lines: Vec<String> = rows
        .iter()
        .map(|(name, user, port)| {
            let mut l = name.to_string();
            if let Some(u) = user {
                l.push_str(&format!(" ansible_user={u}"));
            }
            if let Some(p) = port {
                l.push_str(&format!(" ansible_port={p}"));
            }
            l
        })
        .collect();
    std::fs::write(&inv, format!("[web]\n{}\n", lines.join("\n"))).unwrap();

    let listed = listed(&cfg, &inv);
    let mut seen = Vec::new();
    for (name, user, port) in rows {
        let mut args = vec!["-F", cfg.to_str().unwrap()];
        if let Some(u) = user {
            args.extend(["-l", u]);
        }
        if let Some(p) = port {
            args.extend(["-p", p]);
        }
        args.extend(["--", name]);
        let want = ssh_g(&args)["hostname"][0].clone();
        let row = listed
            .get(name)
            .unwrap_or_else(|| panic!("{name} listed: {listed:?}"));
        assert_eq!(row["ip"], want, "{name}: ssh -G {args:?}");
        seen.push(want);
    }
    // The table does tell the logins apart (web1 and web4 differ from `ssh -G NAME` alone:
    // .61 and .64).
    assert_eq!(
        seen,
        ["127.0.0.51", "127.0.0.62", "127.0.0.63", "127.0.0.53"]
    );
}
