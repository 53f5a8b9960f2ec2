//! known_hosts decided as OpenSSH decides it. Each row of `ROWS` is a known_hosts content built
//! from a real host's keys, plus flags and ssh_config lines; the real `ssh` (OpenSSH 9.2) and
//! `promfleet exec` run against the same sshd, each on its own copy of the user file, with the
//! same config (`ssh -F cfg` / `--ssh-config cfg`). Expected: the verdict ssh reached (connect
//! or refuse), the same keys recorded (or none), the same offending line; rows marked
//! `differs` are documented, stricter, differences: ssh connects, promfleet refuses and records
//! nothing. A new case is one row.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::sshd::Fleet;

use crate::support::{Run, have, require_root, stderr, stdout};

/// What a host's sshd presents (see `setup`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    /// Its ed25519 host key only.
    Ed25519,
    /// An ECDSA host key as well.
    EcdsaAndEd25519,
    /// A host certificate for its ed25519 key, principal = its address, valid now.
    Certified,
    /// A host certificate whose only principal is another name.
    WrongPrincipal,
    /// A host certificate that expired in 2020.
    Expired,
}

impl Server {
    fn host(self) -> &'static str {
        match self {
            Server::Ed25519 => "host001",
            Server::EcdsaAndEd25519 => "host002",
            Server::Certified => "host003",
            Server::WrongPrincipal => "host004",
            Server::Expired => "host005",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Strict {
    /// No flag (ssh in BatchMode refuses unknown keys; promfleet's default).
    Default,
    /// `-o StrictHostKeyChecking=accept-new` / `--accept-new-host-keys`.
    AcceptNew,
}

/// Names and keys a row builds its files from.
struct Keys {
    /// `[ip]:port`: the name both tools look the host up under.
    name: String,
    ip: String,
    port: u16,
    /// The host's ed25519 key (`type base64`).
    ed: String,
    /// The host's ECDSA key (EcdsaAndEd25519 only, else empty).
    ecdsa: String,
    /// The CA that signed the certified hosts' keys.
    ca: String,
    /// Keys no host has.
    other_ed: String,
    other_ecdsa: String,
}

struct Row {
    name: &'static str,
    server: Server,
    strict: Strict,
    /// The user known_hosts file.
    user: fn(&Keys) -> String,
    /// Run `ssh-keygen -H` over the user file first.
    hashed: bool,
    /// The global known_hosts file (GlobalKnownHostsFile); empty → /dev/null.
    global: fn(&Keys) -> String,
    /// More lines under `Host *` in the config both tools read.
    config: &'static str,
    /// A deliberate difference: ssh connects here, promfleet refuses (README says why).
    differs: Option<&'static str>,
    /// promfleet must warn about this line of the user file (a malformed line it skipped).
    warns_line: Option<usize>,
}

const fn row(name: &'static str, server: Server, user: fn(&Keys) -> String) -> Row {
    Row {
        name,
        server,
        strict: Strict::Default,
        user,
        hashed: false,
        global: |_| String::new(),
        config: "",
        differs: None,
        warns_line: None,
    }
}

impl Row {
    const fn accept_new(mut self) -> Row {
        self.strict = Strict::AcceptNew;
        self
    }
    const fn hashed(mut self) -> Row {
        self.hashed = true;
        self
    }
    const fn global(mut self, global: fn(&Keys) -> String) -> Row {
        self.global = global;
        self
    }
    const fn config(mut self, config: &'static str) -> Row {
        self.config = config;
        self
    }
    const fn differs(mut self, why: &'static str) -> Row {
        self.differs = Some(why);
        self
    }
    const fn warns_line(mut self, line: usize) -> Row {
        self.warns_line = Some(line);
        self
    }
}

use Server::*;

const ROWS: &[Row] = &[
    row("plain key known", Ed25519, |k| format!("{} {}\n", k.name, k.ed)),
    row("unknown key, strict", Ed25519, |_| String::new()),
    row("unknown key, accept-new records it", Ed25519, |_| String::new()).accept_new(),
    row("changed key", Ed25519, |k| format!("{} {}\n", k.name, k.other_ed)),
    row("changed key, accept-new", Ed25519, |k| {
        format!("{} {}\n", k.name, k.other_ed)
    })
    .accept_new(),
    row("changed key after comments and blank lines: its line number", Ed25519, |k| {
        format!("# fleet\n\n# web\n{} {}\n", k.name, k.other_ed)
    }),
    row("@revoked key also listed as known", Ed25519, |k| {
        format!("@revoked * {}\n{} {}\n", k.ed, k.name, k.ed)
    }),
    row("@revoked key, accept-new", Ed25519, |k| format!("@revoked * {}\n", k.ed)).accept_new(),
    row("ECDSA known, server also offers ed25519", EcdsaAndEd25519, |k| {
        format!("{} {}\n", k.name, k.ecdsa)
    }),
    row("ECDSA known, server also offers ed25519, accept-new", EcdsaAndEd25519, |k| {
        format!("{} {}\n", k.name, k.ecdsa)
    })
    .accept_new(),
    row("another ECDSA key known, server has ed25519 only, accept-new", Ed25519, |k| {
        format!("{} {}\n", k.name, k.other_ecdsa)
    })
    .accept_new(),
    row("@cert-authority, valid host certificate", Certified, |k| {
        format!("@cert-authority {} {}\n", k.name, k.ca)
    }),
    row("@cert-authority, valid certificate, accept-new records nothing", Certified, |k| {
        format!("@cert-authority {} {}\n", k.name, k.ca)
    })
    .accept_new(),
    row("@cert-authority by wildcard, valid certificate", Certified, |k| {
        format!("@cert-authority [127.*]:{} {}\n", k.port, k.ca)
    }),
    row("@cert-authority, certificate for another name, plain key known", WrongPrincipal, |k| {
        format!("@cert-authority {} {}\n{} {}\n", k.name, k.ca, k.name, k.ed)
    }),
    row("@cert-authority, certificate for another name, accept-new", WrongPrincipal, |k| {
        format!("@cert-authority {} {}\n", k.name, k.ca)
    })
    .accept_new()
    .differs("ssh falls back to trust-on-first-use of the plain key; promfleet never records a plain key for a host a CA covers"),
    row("@cert-authority, expired certificate", Expired, |k| {
        format!("@cert-authority {} {}\n", k.name, k.ca)
    }),
    row("@cert-authority of another CA", Certified, |k| {
        format!("@cert-authority {} {}\n", k.name, k.other_ed)
    }),
    row("@revoked CA", Certified, |k| {
        format!("@cert-authority {} {}\n@revoked * {}\n", k.name, k.ca, k.ca)
    }),
    row("wildcard [127.*]:port", Ed25519, |k| format!("[127.*]:{} {}\n", k.port, k.ed)),
    row("? pattern [127.0.*.?]:port", Ed25519, |k| {
        format!("[127.0.*.?]:{} {}\n", k.port, k.ed)
    }),
    row("negated pattern excludes the host", Ed25519, |k| {
        format!("[127.*]:{},!{} {}\n", k.port, k.name, k.ed)
    }),
    row("negated pattern, accept-new", Ed25519, |k| {
        format!("[127.*]:{},!{} {}\n", k.port, k.name, k.ed)
    })
    .accept_new(),
    row("comma list", Ed25519, |k| format!("web.lan,{} {}\n", k.name, k.ed)),
    row("entry without the port", Ed25519, |k| format!("{} {}\n", k.ip, k.ed)),
    row("@revoked under the bare host, accept-new", Ed25519, |k| {
        format!("@revoked {} {}\n", k.ip, k.ed)
    })
    .accept_new()
    .differs("ssh records a key that the bare host's line marks @revoked; promfleet refuses it"),
    row("entry for another port, accept-new", Ed25519, |k| {
        format!("[{}]:1 {}\n", k.ip, k.other_ed)
    })
    .accept_new(),
    row("tab separators", Ed25519, |k| {
        format!("{}\t{}\n", k.name, k.ed.replacen(' ', "\t", 1))
    }),
    row("malformed line for the host is skipped", Ed25519, |k| {
        format!("{} ssh-ed25519 AAAA%%%%\n{} {}\n", k.name, k.name, k.ed)
    })
    .warns_line(1),
    row("only a malformed line, accept-new", Ed25519, |k| {
        format!("{} ssh-ed25519 AAAA%%%%\n", k.name)
    })
    .accept_new()
    .warns_line(1),
    row("hashed entry", Ed25519, |k| format!("{} {}\n", k.name, k.ed)).hashed(),
    row("hashed entry, changed key", Ed25519, |k| {
        format!("# one\n{} {}\n", k.name, k.other_ed)
    })
    .hashed(),
    row("global file knows the key", Ed25519, |_| String::new())
        .global(|k| format!("{} {}\n", k.name, k.ed)),
    row("global file has another key, accept-new", Ed25519, |_| String::new())
        .global(|k| format!("{} {}\n", k.name, k.other_ed))
        .accept_new(),
    row("HashKnownHosts yes records a hashed line", Ed25519, |_| String::new())
        .config("HashKnownHosts yes")
        .accept_new(),
    row("HostKeyAlias is the lookup name", Ed25519, |k| format!("web-alias {}\n", k.ed))
        .config("HostKeyAlias web-alias"),
    row("HostKeyAlias, accept-new records the alias", Ed25519, |k| {
        format!("{} {}\n", k.name, k.ed)
    })
    .config("HostKeyAlias web-alias")
    .accept_new(),
    row("HostKeyAlias in capitals against a lower-case line", Ed25519, |k| {
        format!("web-alias {}\n", k.ed)
    })
    .config("HostKeyAlias Web-Alias"),
    row("StrictHostKeyChecking accept-new in the config", Ed25519, |_| String::new())
        .config("StrictHostKeyChecking accept-new"),
    row("StrictHostKeyChecking no, unknown key", Ed25519, |_| String::new())
        .config("StrictHostKeyChecking no"),
    row("StrictHostKeyChecking no, changed key", Ed25519, |k| {
        format!("{} {}\n", k.name, k.other_ed)
    })
    .config("StrictHostKeyChecking no")
    .differs("ssh connects with a changed key under StrictHostKeyChecking=no; promfleet always refuses"),
    row("StrictHostKeyChecking no, revoked key", Ed25519, |k| {
        format!("@revoked * {}\n", k.ed)
    })
    .config("StrictHostKeyChecking no")
    .differs("ssh connects with a revoked key under StrictHostKeyChecking=no; promfleet always refuses"),
];

const CA_PRINCIPAL_OTHER: &str = "nobody.example";

fn keygen(path: &Path, kind: &str) -> String {
    let _ = std::fs::remove_file(path);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", kind, "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    public(path)
}

/// `type base64` of a key's `.pub`.
fn public(private: &Path) -> String {
    let text = std::fs::read_to_string(format!("{}.pub", private.display())).expect("pub");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Sign a host's ed25519 key with the CA and make its sshd present the certificate.
fn certify(fleet: &Fleet, host: &str, ca: &Path, principal: &str, validity: &str) {
    let key = fleet.host_key_path(host).expect("host key");
    let pubkey = format!("{}.pub", key.display());
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(ca)
            .args(["-I", host, "-h", "-n", principal, "-V", validity])
            .arg(&pubkey),
    );
    let cert = format!("{}-cert.pub", key.display());
    fleet
        .add_sshd_config(host, &format!("HostCertificate {cert}\n"))
        .expect("restart with certificate");
}

struct Lab {
    fleet: Fleet,
    dir: PathBuf,
    inventory: PathBuf,
    ca: String,
    other_ed: String,
    other_ecdsa: String,
    ecdsa: String,
}

impl Lab {
    fn start() -> Lab {
        let fleet = Fleet::builder()
            .hosts(5)
            .groups(&["web"])
            .trust_host_keys(false)
            .start()
            .expect("fleet");
        let dir = fleet.root().join("kh-lab");
        std::fs::create_dir(&dir).expect("lab dir");
        let ca_key = dir.join("ca");
        let ca = keygen(&ca_key, "ed25519");
        let other_ed = keygen(&dir.join("other_ed"), "ed25519");
        let other_ecdsa = keygen(&dir.join("other_ecdsa"), "ecdsa");
        let ecdsa_key = dir.join("ssh_host_ecdsa_key");
        let ecdsa = keygen(&ecdsa_key, "ecdsa");
        fleet
            .add_sshd_config(
                EcdsaAndEd25519.host(),
                &format!("HostKey {}\n", ecdsa_key.display()),
            )
            .expect("ecdsa host key");
        let ip = |s: Server| fleet.host(s.host()).expect("host").ip.to_string();
        certify(&fleet, Certified.host(), &ca_key, &ip(Certified), "-5m:+1h");
        certify(
            &fleet,
            WrongPrincipal.host(),
            &ca_key,
            CA_PRINCIPAL_OTHER,
            "-5m:+1h",
        );
        certify(
            &fleet,
            Expired.host(),
            &ca_key,
            &ip(Expired),
            "20200101:20200102",
        );
        let inventory = dir.join("inventory.yml");
        fleet.inventory().write(&inventory).expect("inventory");
        Lab {
            fleet,
            dir,
            inventory,
            ca,
            other_ed,
            other_ecdsa,
            ecdsa,
        }
    }

    fn keys(&self, server: Server) -> Keys {
        let host = self.fleet.host(server.host()).expect("host");
        let port = self.fleet.port();
        Keys {
            name: format!("[{}]:{port}", host.ip),
            ip: host.ip.to_string(),
            port,
            ed: self.fleet.host_key_line(server.host()).expect("host key"),
            ecdsa: if server == EcdsaAndEd25519 {
                self.ecdsa.clone()
            } else {
                String::new()
            },
            ca: self.ca.clone(),
            other_ed: self.other_ed.clone(),
            other_ecdsa: self.other_ecdsa.clone(),
        }
    }
}

/// What one tool did with one row.
#[derive(Debug)]
struct Outcome {
    connected: bool,
    /// `type base64` of each line appended to the user file, and whether it was hashed.
    recorded: Vec<(String, bool)>,
    /// "Offending … key in FILE:N" (ssh) / "FILE:N" (promfleet) → N.
    offending_line: Option<usize>,
    output: String,
}

fn appended(before: &str, after: &str) -> Vec<(String, bool)> {
    let Some(new) = after.strip_prefix(before) else {
        panic!("the file was rewritten, not appended to:\n{before}\n---\n{after}");
    };
    new.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1..3].join(" "), f[0].starts_with("|1|"))
        })
        .collect()
}

/// The line number after `FILE:` in `text`.
fn line_after(text: &str, file: &Path) -> Option<usize> {
    let marker = format!("{}:", file.display());
    let at = text.find(&marker)? + marker.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn run_row(lab: &Lab, i: usize, row: &Row) -> Result<(), String> {
    let keys = lab.keys(row.server);
    let host = lab.fleet.host(row.server.host()).expect("host");
    let dir = lab.dir.join(format!("row{i:02}"));
    std::fs::create_dir(&dir).expect("row dir");
    let source = dir.join("known_hosts");
    std::fs::write(&source, (row.user)(&keys)).expect("user file");
    if row.hashed {
        run_ok(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&source));
    }
    let text = std::fs::read_to_string(&source).expect("user file");
    let global_text = (row.global)(&keys);
    let global = if global_text.is_empty() {
        PathBuf::from("/dev/null")
    } else {
        let g = dir.join("global_known_hosts");
        std::fs::write(&g, &global_text).expect("global");
        g
    };
    let config = dir.join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host *\n  GlobalKnownHostsFile {}\n  {}\n",
            global.display(),
            row.config
        ),
    )
    .expect("config");

    // ssh, on its own copy.
    let ssh_file = dir.join("ssh_known_hosts_copy");
    std::fs::write(&ssh_file, &text).expect("copy");
    let mut ssh = Command::new("ssh");
    ssh.arg("-F").arg(&config).args([
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        "ConnectTimeout=10",
    ]);
    ssh.arg("-o")
        .arg(format!("UserKnownHostsFile={}", ssh_file.display()));
    if row.strict == Strict::AcceptNew {
        ssh.args(["-o", "StrictHostKeyChecking=accept-new"]);
    }
    ssh.arg("-i")
        .arg(lab.fleet.client_key())
        .arg("-p")
        .arg(keys.port.to_string())
        .arg(format!("{}@{}", lab.fleet.user(), host.ip))
        .arg("true")
        .env_remove("SSH_AUTH_SOCK");
    let out = ssh.output().expect("run ssh");
    let ssh_text = String::from_utf8_lossy(&out.stderr).into_owned();
    let ssh_outcome = Outcome {
        connected: out.status.success(),
        recorded: appended(&text, &std::fs::read_to_string(&ssh_file).expect("copy")),
        offending_line: ssh_text
            .contains("Offending")
            .then(|| line_after(&ssh_text, &ssh_file))
            .flatten(),
        output: ssh_text,
    };

    // promfleet, on its own copy.
    let pf_file = dir.join("promfleet_known_hosts_copy");
    std::fs::write(&pf_file, &text).expect("copy");
    let mut pf = Run::new(&["exec", "-i"])
        .arg(&lab.inventory)
        .arg("-l")
        .arg(row.server.host())
        .arg("--known-hosts")
        .arg(&pf_file)
        .arg("--ssh-config")
        .arg(&config)
        .arg("--retries")
        .arg("1")
        .arg("--connect-timeout")
        .arg("10");
    if row.strict == Strict::AcceptNew {
        pf = pf.arg("--accept-new-host-keys");
    }
    let out = pf.arg("--").arg("whoami").output();
    let pf_text = format!("{}{}", stdout(&out), stderr(&out));
    let pf_outcome = Outcome {
        connected: out.status.code() == Some(0) && stdout(&out).contains(lab.fleet.user()),
        recorded: appended(&text, &std::fs::read_to_string(&pf_file).expect("copy")),
        offending_line: ssh_outcome
            .offending_line
            .and_then(|_| line_after(&pf_text, &pf_file)),
        output: pf_text,
    };

    let mut problems = Vec::new();
    match row.differs {
        None => {
            if ssh_outcome.connected != pf_outcome.connected {
                problems.push(format!(
                    "ssh connected: {}, promfleet connected: {}",
                    ssh_outcome.connected, pf_outcome.connected
                ));
            }
            if ssh_outcome.recorded != pf_outcome.recorded {
                problems.push(format!(
                    "recorded: ssh {:?}, promfleet {:?}",
                    ssh_outcome.recorded, pf_outcome.recorded
                ));
            }
            if ssh_outcome.offending_line != pf_outcome.offending_line {
                problems.push(format!(
                    "offending line: ssh {:?}, promfleet {:?}",
                    ssh_outcome.offending_line, pf_outcome.offending_line
                ));
            }
        }
        Some(why) => {
            if !ssh_outcome.connected || pf_outcome.connected || !pf_outcome.recorded.is_empty() {
                problems.push(format!(
                    "documented difference ({why}) no longer holds: ssh connected {}, promfleet connected {} recorded {:?}",
                    ssh_outcome.connected, pf_outcome.connected, pf_outcome.recorded
                ));
            }
        }
    }
    // What promfleet recorded, ssh must find (hashed or not) under the name it looks up.
    if !pf_outcome.recorded.is_empty() {
        let name = if row.config.contains("HostKeyAlias web-alias") {
            "web-alias".to_string()
        } else {
            keys.name.clone()
        };
        let found = Command::new("ssh-keygen")
            .arg("-F")
            .arg(&name)
            .arg("-f")
            .arg(&pf_file)
            .output()
            .expect("ssh-keygen -F");
        if !found.status.success() {
            problems.push(format!(
                "ssh-keygen -F {name} does not find promfleet's line"
            ));
        }
    }
    if let Some(line) = row.warns_line {
        let want = format!("{}:{line}", pf_file.display());
        if !pf_outcome.output.contains(&want) {
            problems.push(format!("promfleet did not warn about {want}"));
        }
    }
    if problems.is_empty() {
        eprintln!(
            "ok   {:<70} ssh {} / promfleet {}{}",
            row.name,
            verdict(&ssh_outcome),
            verdict(&pf_outcome),
            row.differs
                .map(|_| " (documented difference)")
                .unwrap_or("")
        );
        return Ok(());
    }
    Err(format!(
        "row {i} `{}`: {}\n  known_hosts:\n{}\n  ssh said:\n{}\n  promfleet said:\n{}",
        row.name,
        problems.join("; "),
        text,
        ssh_outcome.output.trim(),
        pf_outcome.output.trim()
    ))
}

fn verdict(o: &Outcome) -> String {
    let mut v = if o.connected { "connect" } else { "refuse" }.to_string();
    if !o.recorded.is_empty() {
        v.push_str(&format!(" +{} line(s)", o.recorded.len()));
    }
    v
}

/// The differential table: every row agrees with OpenSSH (or differs as documented).
#[test]
fn known_hosts_table_agrees_with_openssh() {
    if !require_root() {
        return;
    }
    if !have("ssh") || !have("ssh-keygen") {
        eprintln!("SKIPPED: needs OpenSSH's ssh and ssh-keygen");
        return;
    }
    assert!(ROWS.len() >= 15);
    let lab = Lab::start();
    let failures: Vec<String> = ROWS
        .iter()
        .enumerate()
        .filter_map(|(i, row)| run_row(&lab, i, row).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows disagree with OpenSSH:\n\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n\n")
    );
}

/// 50 hosts accepted at once, by two promfleet processes racing on the same file: exactly one
/// valid line per host (HashKnownHosts on, as Debian's ssh_config has it), which ssh then
/// uses to connect strictly.
#[test]
fn fifty_hosts_accepted_at_once_give_one_valid_line_each() {
    if !require_root() {
        return;
    }
    let fleet = Fleet::builder()
        .hosts(50)
        .shared_sshd(true)
        .trust_host_keys(false)
        .start()
        .expect("fleet");
    let inv = fleet.root().join("inventory.yml");
    fleet.inventory().write(&inv).expect("inventory");
    let config = fleet.root().join("ssh_config");
    std::fs::write(
        &config,
        "Host *\n  HashKnownHosts yes\n  GlobalKnownHostsFile /dev/null\n",
    )
    .expect("config");
    let kh = fleet.known_hosts().to_path_buf();
    let spawn = || {
        Run::new(&["exec", "-i"])
            .arg(&inv)
            .arg("--known-hosts")
            .arg(&kh)
            .arg("--ssh-config")
            .arg(&config)
            .cmd
            .args(["--accept-new-host-keys", "--forks", "50", "--", "true"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn promfleet")
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().expect("promfleet");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(&kh).expect("known_hosts");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 50, "{text}");
    assert!(lines.iter().all(|l| l.starts_with("|1|")), "{text}");
    for h in fleet.hosts() {
        let name = format!("[{}]:{}", h.ip, fleet.port());
        let found = Command::new("ssh-keygen")
            .args(["-F", &name, "-f"])
            .arg(&kh)
            .output()
            .expect("ssh-keygen -F");
        let hits = String::from_utf8_lossy(&found.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        assert_eq!(
            hits,
            1,
            "{name}: {}",
            String::from_utf8_lossy(&found.stdout)
        );
    }
    // And OpenSSH itself trusts what was recorded.
    let out = fleet
        .ssh_command("host050")
        .expect("ssh")
        .arg("true")
        .output()
        .expect("ssh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
