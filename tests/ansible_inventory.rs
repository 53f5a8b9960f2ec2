//! `ansible-inventory --list` (ansible-core, pinned in scripts/install-deps.sh) as the oracle
//! for Ansible inventories. Every file of `../shared/ansible-inventories/` and every row of
//! `EDGE_CASES` goes through both tools; per host, the groups (transitively, without `all`),
//! the address, user, port and become must agree, or promfleet must reject the file for the
//! reason its `REJECTED` row documents (each one explained in the README's Inventory section),
//! naming the file and line. Which Ansible variable wins among synonyms (`ansible_ssh_user`
//! over `ansible_user`, …) is itself checked against `ansible -vvv` in
//! `synonyms_as_ansible_ssh_plugin_uses_them`; host ranges against ansible-core's own
//! `expand_hostname_range` in `host_ranges_as_ansible_expands_them`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Files promfleet rejects on purpose: file name → a substring of the reason. The README's
/// Inventory section ("Documented differences") explains each reason. Hosts given by DNS
/// name are no rejection: the files are read with `--no-resolve` (no lookup here; the
/// address compared is the one SSH connects to, the name, as Ansible's).
const REJECTED: &[(&str, &str)] = &[
    // Two hosts sharing one address: Consul service ids and targets would collide.
    (
        "BenjaminHuang__k8s-ansible-playbook__inventories__production__hosts",
        "duplicate ip",
    ),
    // ansible_connection=local: promfleet only works over SSH.
    (
        "geerlingguy__raspberry-pi-dramble__testing__docker__inventory",
        "ansible_connection=local",
    ),
    (
        "kubernetes-sigs__kubespray__inventory__local__hosts.ini",
        "ansible_connection=local",
    ),
    (
        "spurin__diveintoansible__Ansible-Architecture-and-Design__Inventories__13__hosts",
        "ansible_connection=local",
    ),
    (
        "spurin__diveintoansible__Ansible-Architecture-and-Design__Inventories__14__hosts.yaml",
        "ansible_connection=local",
    ),
    (
        "spurin__diveintoansible__Ansible-Architecture-and-Design__Inventories__15__hosts.json",
        "ansible_connection=local",
    ),
    // An IPv6 address as the inventory name: names end up in file paths and Consul ids.
    ("edge_ipv6_names.ini", "invalid name `2001:db8::10`"),
    // SSH options promfleet's client does not implement are refused, not ignored.
    (
        "edge_ssh_args_refused.ini",
        "`-o ProxyCommand` is not supported",
    ),
    (
        "edge_ssh_flags_refused.yml",
        "the ssh flag `-A` is not supported",
    ),
];

/// Hand-written cases: (file name, text). The extension matters: both tools pick the format
/// by it.
const EDGE_CASES: &[(&str, &str)] = &[
    // Group variable precedence: by depth, then name (`other` < `parent`), then the child;
    // all:vars lowest; a host in several groups.
    (
        "edge_precedence.ini",
        "[all:vars]\nansible_user=from_all\nansible_port=2200\n\
         [parent:children]\nchild\n\
         [parent:vars]\nansible_user=from_parent\nansible_port=2201\n\
         [child]\nh1 ansible_host=10.1.0.1\nh2 ansible_host=10.1.0.2 ansible_user=from_host\n\
         h3 ansible_host=10.1.0.3\n\
         [child:vars]\nansible_port=2202\n\
         [other]\nh1\nh4 ansible_host=10.1.0.4\n\
         [other:vars]\nansible_user=from_other\n\
         [zz_other]\nh3\n\
         [zz_other:vars]\nansible_user=from_zz\n",
    ),
    // ansible_group_priority beats name order; become at group and host level.
    (
        "edge_priority.yml",
        "all:\n  vars:\n    ansible_user: all_user\n  children:\n\
         \x20   a_group:\n      vars: {ansible_user: a_user, ansible_group_priority: 10, ansible_become: true}\n\
         \x20     hosts:\n        p1: {ansible_host: 10.2.0.1}\n\
         \x20   b_group:\n      vars: {ansible_user: b_user, ansible_port: 2222}\n\
         \x20     hosts:\n        p1:\n        p2: {ansible_host: 10.2.0.2, ansible_become: false}\n",
    ),
    // Hosts only in `ungrouped`, in INI and in YAML.
    (
        "edge_ungrouped.ini",
        "10.3.0.1\nloose ansible_host=10.3.0.2 ansible_user=u\n[web]\n10.3.0.3\n",
    ),
    (
        "edge_ungrouped.yml",
        "all:\n  hosts:\n    10.3.1.1:\n    loose: {ansible_host: 10.3.1.2}\n  children:\n\
         \x20   web:\n      hosts:\n        10.3.1.3:\n",
    ),
    // Ranges of IPv4 addresses: numeric, stepped, several in one name.
    (
        "edge_ranges.ini",
        "[web]\n10.4.0.[1:3] ansible_user=deploy\n10.4.1.[0:20:5]\n10.4.[2:3].[7:8]:2222\n",
    ),
    (
        "edge_ranges.yml",
        "all:\n  children:\n    web:\n      hosts:\n        10.4.0.[1:3]:\n          ansible_user: deploy\n\
         \x20       10.4.1.[0:20:5]:\n",
    ),
    // `host:port` keys in YAML, a range with a port.
    (
        "edge_hostport.yml",
        "all:\n  children:\n    g:\n      hosts:\n        10.7.0.1:2222:\n\
         \x20       10.7.0.[2:3]:2201:\n        10.7.0.4:2202: {ansible_port: 2203}\n",
    ),
    // Ranges of names: zero-padded, letters, steps, letters with steps, two in one name.
    (
        "edge_range_names.ini",
        "[web]\nweb[01:03]\ndb-[a:c]\nnode[0:10:5]\nz[a:f:2].lan ansible_port=2201\nr[1:2]-[x:y]\n",
    ),
    (
        "edge_range_names.yml",
        "all:\n  children:\n    web:\n      hosts:\n        web[08:11]:\n        q[b:h:3]:\n          ansible_user: q\n",
    ),
    // Hosts given by DNS name: as the inventory name, as ansible_host (also a name for a
    // host whose inventory name is an address), mixed with addresses.
    (
        "edge_dns_names.ini",
        "[app]\napp1.example.com\napp2 ansible_host=app2.internal ansible_user=deploy\n\
         10.8.0.3 ansible_host=box3.internal\n10.8.0.4\n[db]\ndb1 ansible_host=10.8.0.5\n\
         app1.example.com\n[all:vars]\nansible_port=2200\n",
    ),
    (
        "edge_dns_names.yml",
        "all:\n  children:\n    web:\n      hosts:\n        web1.lan:\n        web2: {ansible_host: web2.lan, ansible_port: 2222}\n",
    ),
    // ansible_ssh_common_args / extra_args with options promfleet passes to `ssh -G` (what
    // they do is compared with `ssh -G` in `ssh_args_resolve_as_openssh_resolves_them`).
    (
        "edge_ssh_args.ini",
        "[web]\nw1 ansible_host=10.9.0.1 ansible_ssh_extra_args='-o ServerAliveInterval=5'\n\
         w2 ansible_host=10.9.0.2\n[web:vars]\n\
         ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -J jump@bastion'\n",
    ),
    (
        "edge_ssh_args_refused.ini",
        "[web]\nw1 ansible_host=10.9.1.1\n[web:vars]\n\
         ansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p -q bastion\"'\n",
    ),
    (
        "edge_ssh_flags_refused.yml",
        "all:\n  hosts:\n    w1: {ansible_host: 10.9.2.1, ansible_ssh_extra_args: '-A'}\n",
    ),
    // IPv6 addresses as ansible_host, and as the name (rejected).
    (
        "edge_ipv6.ini",
        "[v6]\nv6a ansible_host=2001:db8::10\nv6b ansible_host=fd00::1:2 ansible_port=2222\n",
    ),
    (
        "edge_ipv6_names.ini",
        "[v6]\n2001:db8::10\n[2001:db8::11]:2222\n",
    ),
    // INI text in a `.yml` file, and INI without extension that is no YAML mapping.
    (
        "edge_ini_in.yml",
        "[db]\ndb1 ansible_host=10.5.0.1\n[db:vars]\nansible_user=postgres\n",
    ),
    (
        "edge_ini_hostport",
        "10.5.1.1:2201\n[db]\ndb1 ansible_host=10.5.1.2\n",
    ),
    (
        "edge_ini_quoted",
        "db1 ansible_host=10.5.2.1 motd=\"hello world\"\n[db]\ndb1\n",
    ),
    // Sudo password synonyms at host, group and `all` level.
    (
        "edge_become_pass.ini",
        "[web]\nw1 ansible_host=10.6.0.1 ansible_become_pass=host-pass\n\
         w2 ansible_host=10.6.0.2 ansible_become_password=host-password\n\
         w3 ansible_host=10.6.0.3\n[web:vars]\nansible_become_password=web-password\n\
         [db]\nd1 ansible_host=10.6.0.4 ansible_sudo_pass=d1-sudo\nd2 ansible_host=10.6.0.5\n\
         [all:vars]\nansible_become_pass=all-pass\n",
    ),
    // User synonyms at different levels (see `synonyms_as_ansible_ssh_plugin_uses_them`).
    ("edge_user_synonyms.ini", USER_SYNONYMS),
];

/// `ansible_ssh_user` vs `ansible_user`, `ansible_ssh_port` vs `ansible_port` and
/// `ansible_ssh_host` vs `ansible_host` at host and group level. Loopback addresses on port 1
/// only: `synonyms_as_ansible_ssh_plugin_uses_them` lets ansible try to connect.
const USER_SYNONYMS: &str = "[g]\n\
    s1 ansible_host=127.77.0.1 ansible_port=1 ansible_ssh_user=host_ssh\n\
    s2 ansible_host=127.77.0.2 ansible_port=1 ansible_user=host_user\n\
    s3 ansible_host=127.77.0.3 ansible_ssh_port=1 ansible_port=2\n\
    s4 ansible_host=127.77.0.99 ansible_ssh_host=127.77.0.4 ansible_port=1 ansible_ssh_user=s4_ssh ansible_user=s4_user\n\
    [g:vars]\nansible_user=group_user\nansible_ssh_user=group_ssh\n\
    [h]\n\
    s5 ansible_host=127.77.0.5 ansible_port=1 ansible_user=host_user\n";

/// The sudo plugin's `become_pass` variables, in the order it lists them; which one wins is
/// checked against the plugin in `become_password_as_ansible_sudo_plugin_picks_it`.
const BECOME_PASS_VARS: [&str; 3] = [
    "ansible_become_password",
    "ansible_become_pass",
    "ansible_sudo_pass",
];

/// What both tools must agree on, per host.
#[derive(Debug, PartialEq, Eq, Clone)]
struct HostView {
    groups: BTreeSet<String>,
    address: String,
    user: Option<String>,
    port: Option<u64>,
    become_root: Option<bool>,
    /// Which variable the sudo password comes from (never the password).
    become_password_var: Option<String>,
}

/// `../shared/ansible-inventories` beside the clone (as CI has it), or
/// `$PROMFLEET_ANSIBLE_CORPUS` (a worktree elsewhere).
fn corpus_dir() -> PathBuf {
    std::env::var_os("PROMFLEET_ANSIBLE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/ansible-inventories"))
}

fn ansible_ready() -> bool {
    if !have("ansible-inventory") {
        eprintln!("SKIPPED: ansible-inventory not installed (scripts/install-deps.sh installs it)");
        return false;
    }
    true
}

fn ansible_list(file: &Path) -> Result<Value, String> {
    ansible_list_sources(&[file])
}

/// `ansible-inventory -i S1 -i S2 … --list`, run from an empty directory so no playbook-adjacent
/// `group_vars/` can join in.
fn ansible_list_sources(sources: &[&Path]) -> Result<Value, String> {
    let cwd = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("ansible-inventory");
    for s in sources {
        cmd.arg("-i").arg(s);
    }
    let out = cmd
        .current_dir(cwd.path())
        .arg("--list")
        .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
        .env(
            "ANSIBLE_HOME",
            std::env::temp_dir().join("promfleet-ansible-home"),
        )
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// The interpreter ansible runs under: the last parenthesis of `python version = …`.
fn ansible_python() -> String {
    let version = Command::new("ansible-inventory")
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    version
        .lines()
        .find(|l| l.trim_start().starts_with("python version"))
        .and_then(|l| {
            l.rsplit_once('(')
                .map(|x| x.1.trim_end_matches(')').to_owned())
        })
        .unwrap_or_else(|| "python3".to_owned())
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The merged variable Ansible's ssh plugin uses: among synonyms, the last one its option
/// lists (`names` is in that order) that is set.
fn synonym(vars: &Value, names: &[&str]) -> Option<String> {
    names
        .iter()
        .rev()
        .find_map(|n| vars.get(*n).and_then(as_text))
}

fn ansible_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

/// Per host, what `ansible-inventory --list` says.
fn ansible_view(list: &Value) -> BTreeMap<String, HostView> {
    let groups = list.as_object().cloned().unwrap_or_default();
    fn members(
        groups: &serde_json::Map<String, Value>,
        g: &str,
        seen: &mut BTreeSet<String>,
    ) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if !seen.insert(g.to_owned()) {
            return out;
        }
        let Some(body) = groups.get(g) else {
            return out;
        };
        for h in body["hosts"].as_array().into_iter().flatten() {
            out.insert(h.as_str().unwrap().to_owned());
        }
        for c in body["children"].as_array().into_iter().flatten() {
            out.extend(members(groups, c.as_str().unwrap(), seen));
        }
        out
    }
    let mut hosts: BTreeMap<String, HostView> = BTreeMap::new();
    for h in members(&groups, "all", &mut BTreeSet::new()) {
        let vars = &list["_meta"]["hostvars"][&h];
        hosts.insert(
            h.clone(),
            HostView {
                groups: BTreeSet::new(),
                address: synonym(vars, &["ansible_host", "ansible_ssh_host"]).unwrap_or(h.clone()),
                user: synonym(vars, &["ansible_user", "ansible_ssh_user"]),
                port: synonym(vars, &["ansible_port", "ansible_ssh_port"])
                    .map(|p| p.parse().unwrap()),
                become_root: vars.get("ansible_become").and_then(ansible_bool),
                become_password_var: BECOME_PASS_VARS
                    .iter()
                    .rev()
                    .find(|n| vars.get(**n).is_some_and(|v| !v.is_null()))
                    .map(|n| n.to_string()),
            },
        );
    }
    for g in groups.keys().filter(|g| *g != "all" && *g != "_meta") {
        for h in members(&groups, g, &mut BTreeSet::new()) {
            hosts.get_mut(&h).unwrap().groups.insert(g.clone());
        }
    }
    hosts
}

/// Per host, what `promfleet inventory list --json` says; Err = promfleet's error text.
fn promfleet_view(file: &Path) -> Result<BTreeMap<String, HostView>, String> {
    promfleet_view_sources(&[file])
}

fn promfleet_view_sources(sources: &[&Path]) -> Result<BTreeMap<String, HostView>, String> {
    let mut run = Run::new(&["inventory", "list", "--json", "--no-resolve"]);
    for s in sources {
        run = run.arg("-i").arg(s);
    }
    let out = run.output();
    if !out.status.success() {
        return Err(stderr(&out));
    }
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let view = HostView {
                groups: r["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_str().unwrap().to_owned())
                    .collect(),
                address: r["address"].as_str().unwrap().to_owned(),
                user: r["user"].as_str().map(str::to_owned),
                port: r["port"].as_u64(),
                become_root: r["become"].as_bool(),
                // "`ansible_become_pass` (file:line:col)"
                become_password_var: r["become_password_from"]
                    .as_str()
                    .and_then(|s| s.split('`').nth(1))
                    .map(str::to_owned),
            };
            (r["name"].as_str().unwrap().to_owned(), view)
        })
        .collect())
}

/// Addresses compare as addresses (`2001:db8::0010` is `2001:db8::10`), names as text.
fn same_address(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Every difference between the two tools for one file (empty = agreement).
fn compare(file: &Path) -> Vec<String> {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let expected = match ansible_list(file) {
        Ok(list) => ansible_view(&list),
        Err(e) => return vec![format!("{name}: ansible-inventory failed: {e}")],
    };
    let rejection = REJECTED.iter().find(|(f, _)| *f == name).map(|r| r.1);
    match (promfleet_view(file), rejection) {
        (Err(err), Some(reason)) => {
            let located = err.lines().next().is_some_and(|l| {
                l.split_once(&format!("{name}:"))
                    .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit()))
            });
            let mut diffs = Vec::new();
            if !err.contains(reason) {
                diffs.push(format!("{name}: rejected, but not for `{reason}`: {err}"));
            }
            if !located {
                diffs.push(format!("{name}: the rejection names no file:line: {err}"));
            }
            diffs
        }
        (Err(err), None) => vec![format!("{name}: rejected without a REJECTED row: {err}")],
        (Ok(_), Some(reason)) => vec![format!(
            "{name}: accepted, but its REJECTED row expects `{reason}` (remove the row)"
        )],
        (Ok(actual), None) => diff_views(&name, &expected, &actual),
    }
}

/// Every host on which the two views differ (empty = agreement).
fn diff_views(
    name: &str,
    expected: &BTreeMap<String, HostView>,
    actual: &BTreeMap<String, HostView>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (host, want) in expected {
        match actual.get(host) {
            None => diffs.push(format!("{name}: host {host} missing in promfleet")),
            Some(got) => {
                let same = got.groups == want.groups
                    && same_address(&got.address, &want.address)
                    && got.user == want.user
                    && got.port == want.port
                    && got.become_root == want.become_root
                    && got.become_password_var == want.become_password_var;
                if !same {
                    diffs.push(format!(
                        "{name}: host {host}: ansible {want:?}, promfleet {got:?}"
                    ));
                }
            }
        }
    }
    for host in actual.keys().filter(|h| !expected.contains_key(*h)) {
        diffs.push(format!("{name}: host {host} only in promfleet"));
    }
    diffs
}

fn edge_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in EDGE_CASES {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn corpus_and_edge_cases_read_as_ansible_inventory_reads_them() {
    if !ansible_ready() {
        return;
    }
    let mut files: Vec<PathBuf> = Vec::new();
    let corpus = corpus_dir();
    if corpus.is_dir() {
        for entry in std::fs::read_dir(&corpus).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name().is_some_and(|n| n != "SOURCES.md") {
                files.push(p);
            }
        }
    } else {
        eprintln!(
            "SKIPPED (corpus part): {} absent; the edge cases still run",
            corpus.display()
        );
    }
    let edges = edge_dir();
    for (name, _) in EDGE_CASES {
        files.push(edges.path().join(name));
    }
    files.sort();
    let names: BTreeSet<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut diffs: Vec<String> = Vec::new();
    if corpus.is_dir() {
        for (f, _) in REJECTED {
            if !names.contains(*f) {
                diffs.push(format!("REJECTED row `{f}` names no file"));
            }
        }
    }
    // Files in parallel (each is two process runs); two at a time on a shared machine.
    let chunks: Vec<Vec<PathBuf>> = files
        .chunks(files.len().div_ceil(2))
        .map(<[_]>::to_vec)
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            std::thread::spawn(move || chunk.iter().flat_map(|f| compare(f)).collect::<Vec<_>>())
        })
        .collect();
    for h in handles {
        diffs.extend(h.join().unwrap());
    }
    eprintln!("{} file(s) compared", files.len());
    assert!(
        diffs.is_empty(),
        "{} unexplained difference(s):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// The rule `ansible_view` applies to synonyms, checked against what Ansible's ssh plugin
/// really does: `ansible -vvv` logs the user, port and address of each connection attempt
/// (to closed loopback ports, so nothing answers).
#[test]
fn synonyms_as_ansible_ssh_plugin_uses_them() {
    if !ansible_ready() || !have("ssh") {
        eprintln!("SKIPPED: needs ansible and ssh");
        return;
    }
    let edges = edge_dir();
    let file = edges.path().join("edge_user_synonyms.ini");
    let out = Command::new("ansible")
        .arg("all")
        .arg("-i")
        .arg(&file)
        .args(["-m", "ping", "-vvv", "-f", "2", "-T", "5"])
        .env("ANSIBLE_HOST_KEY_CHECKING", "false")
        .env("ANSIBLE_HOME", edges.path().join("ansible-home"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    // `<ADDR> SSH: EXEC ssh … -o Port=N … -o 'User="U"' …`: one line per connection.
    let mut seen: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("SSH: EXEC ssh")) {
        let addr = line
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_owned();
        let port = line
            .split("-o Port=")
            .nth(1)
            .and_then(|r| r.split(' ').next());
        let user = line
            .split("User=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        if let (Some(port), Some(user)) = (port, user) {
            seen.insert(addr, (user.to_owned(), port.parse().unwrap()));
        }
    }
    let expected = ansible_view(&ansible_list(&file).unwrap());
    assert_eq!(seen.len(), expected.len(), "ansible log:\n{log}");
    for (host, view) in &expected {
        let (user, port) = seen
            .get(&view.address)
            .unwrap_or_else(|| panic!("{host}: no connection to {} in:\n{log}", view.address));
        assert_eq!(Some(user), view.user.as_ref(), "{host}");
        assert_eq!(Some(*port), view.port, "{host}");
    }
}

/// The rule `ansible_view` applies to the sudo password's names, checked against ansible-core's
/// sudo become plugin itself, given the variables as the task executor gives them.
#[test]
fn become_password_as_ansible_sudo_plugin_picks_it() {
    if !ansible_ready() {
        return;
    }
    let script = "import sys, json\n\
        from ansible.plugins.loader import become_loader\n\
        b = become_loader.get('sudo')\n\
        out = []\n\
        for names in json.loads(sys.argv[1]):\n\
        \x20   b.set_options(var_options={n: n for n in names})\n\
        \x20   out.append(b.get_option('become_pass'))\n\
        print(json.dumps(out))\n";
    let mut subsets: Vec<Vec<&str>> = Vec::new();
    for mask in 1..8u8 {
        subsets.push(
            BECOME_PASS_VARS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect(),
        );
    }
    let out = Command::new(ansible_python())
        .arg("-c")
        .arg(script)
        .arg(serde_json::to_string(&subsets).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let picked: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    for (names, picked) in subsets.iter().zip(picked) {
        let vars: serde_json::Map<String, Value> = names
            .iter()
            .map(|n| (n.to_string(), Value::from("x")))
            .collect();
        let rule = BECOME_PASS_VARS
            .iter()
            .rev()
            .find(|n| vars.contains_key(**n))
            .unwrap();
        assert_eq!(*rule, picked, "{names:?}");
    }
}

/// Host ranges as ansible-core's own `expand_hostname_range` expands them.
#[test]
fn host_ranges_as_ansible_expands_them() {
    if !ansible_ready() {
        return;
    }
    let patterns = [
        "web[01:03]",
        "web[1:3].example.com",
        "db-[a:c]",
        "db-[x:B]",
        "node[0:10:5]",
        "n[:2]",
        "r[1:2]-[a:b]",
        "z[a:f:2]",
        "10.0.[1:2].[8:9]",
        "w[08:11]",
    ];
    let script = "import sys, json\n\
        from ansible.plugins.inventory import expand_hostname_range\n\
        print(json.dumps([expand_hostname_range(p) for p in sys.argv[1:]]))\n";
    let python = ansible_python();
    let out = Command::new(python.trim())
        .arg("-c")
        .arg(script)
        .args(patterns)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "SKIPPED: ansible's python cannot import ansible: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let expected: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
    for (pattern, want) in patterns.iter().zip(expected) {
        assert_eq!(
            promfleet::inventory::expand_host_range(pattern).unwrap(),
            want,
            "{pattern}"
        );
    }
}

/// `serial: N%` batch sizes as ansible-core's own `pct_to_int` computes them (the play
/// iterator's batch size): truncated, at least one host. promfleet rounded up, so a 30%
/// batch of 5 hosts was 2 hosts where Ansible takes 1.
#[test]
fn serial_percent_batches_as_ansible_sizes_them() {
    if !ansible_ready() {
        return;
    }
    let mut cases: Vec<(u32, usize)> = Vec::new();
    for pct in [1, 10, 25, 29, 30, 33, 50, 57, 66, 75, 99, 100] {
        for n in [1, 2, 3, 5, 7, 10, 12, 100, 1000] {
            cases.push((pct, n));
        }
    }
    let script = "import json, sys\n\
        from ansible.utils.helpers import pct_to_int\n\
        print(json.dumps([pct_to_int('%d%%' % p, n) for p, n in json.loads(sys.argv[1])]))\n";
    let out = Command::new(ansible_python().trim())
        .arg("-c")
        .arg(script)
        .arg(serde_json::to_string(&cases).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ansible: Vec<usize> = serde_json::from_slice(&out.stdout).unwrap();
    let differ: Vec<String> = cases
        .iter()
        .zip(ansible)
        .filter_map(|(&(pct, n), want)| {
            let got = promfleet::inventory::Serial::parse(&format!("{pct}%"))
                .unwrap()
                .size(n);
            (got != want).then(|| format!("{pct}% of {n}: ansible {want}, promfleet {got}"))
        })
        .collect();
    assert!(differ.is_empty(), "{differ:#?}");
}

/// A layout case: its name, the files written under a temp dir (path, text), and the `-i`
/// sources relative to it.
type Layout = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

/// Users and ports carry the precedence under test; ansible-inventory is the expected value.
const LAYOUTS: &[Layout] = &[
    (
        // group_vars/web beats the inventory's [web:vars]; group_vars/all beats even the
        // inventory's vars of a deeper group; a host's inline vars beat group_vars.
        "group_vars_over_inventory_group_vars",
        &[
            (
                "inv/hosts.ini",
                "[web]\nw1 ansible_host=10.1.0.1\nw2 ansible_host=10.1.0.2 ansible_user=inline\n\
                 [web:vars]\nansible_user=inv\nansible_port=2201\n[all:vars]\nansible_port=2202\n",
            ),
            ("inv/group_vars/web.yml", "ansible_user: gv\n"),
            ("inv/group_vars/all.yaml", "ansible_port: 2200\n"),
            // A group the inventory lacks: its file is never read.
            ("inv/group_vars/nosuch.yml", "not: [valid\n"),
        ],
        &["inv/hosts.ini"],
    ),
    (
        // host_vars beat the host's inline vars; a bare file name is found first, before
        // `.yml`; a directory stands for its .yml/.yaml/.json/bare files in name order.
        "host_vars_and_vars_directories",
        &[
            (
                "inv/hosts.yml",
                "all:\n  children:\n    db:\n      hosts:\n        d1: {ansible_host: 10.2.0.1, ansible_user: inline}\n        d2: {ansible_host: 10.2.0.2}\n",
            ),
            ("inv/host_vars/d1.yml", "ansible_user: hv\n"),
            ("inv/group_vars/db", "ansible_port: 2301\n"),
            ("inv/group_vars/db.yml", "ansible_port: 2399\n"),
            (
                "inv/host_vars/d2/a.yml",
                "ansible_user: first\nansible_port: 2302\n",
            ),
            ("inv/host_vars/d2/b.yaml", "ansible_user: second\n"),
            ("inv/host_vars/d2/c.txt", "ansible_user: ignored\n"),
            ("inv/host_vars/d2/.hidden.yml", "ansible_port: 9\n"),
        ],
        &["inv/hosts.yml"],
    ),
    (
        // -i DIR: every file in name order, recursively, minus ansible-core's ignored names
        // (.bak, .md, .txt, .cfg, hidden, group_vars/host_vars), with the dir's group_vars.
        "inventory_directory",
        &[
            (
                "dir/10-web.ini",
                "[web]\nw1 ansible_host=10.3.0.1\n[web:vars]\nansible_user=first\n",
            ),
            (
                "dir/20-more.yml",
                "web:\n  hosts:\n    w2: {ansible_host: 10.3.0.2}\n  vars:\n    ansible_user: second\n",
            ),
            ("dir/sub/30-db.ini", "[db]\nd1 ansible_host=10.3.0.3\n"),
            ("dir/old.bak", "this is not an inventory [\n"),
            ("dir/README.md", "# not an inventory: [\n"),
            ("dir/notes.txt", "not an inventory [\n"),
            ("dir/ansible.cfg", "[defaults]\n"),
            ("dir/.hidden", "not an inventory [\n"),
            ("dir/group_vars/db.yml", "ansible_port: 2401\n"),
        ],
        &["dir"],
    ),
    (
        // Several -i: the sources merge, later ones winning, each with its own group_vars.
        "several_sources",
        &[
            (
                "a/hosts.ini",
                "[web]\nw1 ansible_host=10.4.0.1\n[web:vars]\nansible_port=2501\n",
            ),
            ("a/group_vars/web.yml", "ansible_user: from_a\n"),
            (
                "b/hosts.yml",
                "all:\n  children:\n    web:\n      hosts:\n        w2: {ansible_host: 10.4.0.2}\n      vars: {ansible_port: 2502}\n",
            ),
            ("b/group_vars/web.yml", "ansible_user: from_b\n"),
        ],
        &["a/hosts.ini", "b/hosts.yml"],
    ),
];

#[test]
fn layouts_read_as_ansible_inventory_reads_them() {
    if !ansible_ready() {
        return;
    }
    let mut diffs = Vec::new();
    for (name, files, sources) in LAYOUTS {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in *files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let sources: Vec<PathBuf> = sources.iter().map(|s| dir.path().join(s)).collect();
        let sources: Vec<&Path> = sources.iter().map(PathBuf::as_path).collect();
        let expected = match ansible_list_sources(&sources) {
            Ok(list) => ansible_view(&list),
            Err(e) => {
                diffs.push(format!("{name}: ansible-inventory failed: {e}"));
                continue;
            }
        };
        match promfleet_view_sources(&sources) {
            Ok(actual) => diffs.extend(diff_views(name, &expected, &actual)),
            Err(e) => diffs.push(format!("{name}: promfleet rejected it: {e}")),
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// `ansible_ssh_common_args` / `ansible_ssh_extra_args` rows: (inventory vars of the host
/// `10.9.0.N`, where N is the row's index + 1). Both tools read the same ssh config file.
const SSH_ARGS_ROWS: &[&str] = &[
    // The command line beats the config file (first value wins).
    "ansible_ssh_common_args='-o User=bob -o Port=2200 -o StrictHostKeyChecking=accept-new'",
    // The inventory's user and port beat `-o User=`/`-o Port=` (Ansible puts them first).
    "ansible_user=inv ansible_port=2201 ansible_ssh_common_args='-o User=bob -o Port=2200'",
    "ansible_ssh_common_args='-o ProxyJump=jump@bastion -o UserKnownHostsFile=/tmp/pf-kh \
     -o IdentityFile=/tmp/pf-id -o IdentitiesOnly=yes'",
    "ansible_ssh_extra_args='-J bastion:2224 -o ConnectTimeout=7 -o ServerAliveInterval=9 \
     -o ServerAliveCountMax=5 -o HostKeyAlias=alias9'",
    // common before extra: the common one wins; HostName redirects the connection.
    "ansible_ssh_common_args='-oStrictHostKeyChecking=accept-new -o \"HostName 10.9.9.9\"' \
     ansible_ssh_extra_args='-o StrictHostKeyChecking=no -o HashKnownHosts=yes'",
    // No options: the config file alone.
    "ansible_user=plain",
];

const SSH_ARGS_CONFIG: &str = "Host 10.9.*\n  User cfguser\n  Port 2022\n  StrictHostKeyChecking yes\n\
    \x20 ConnectTimeout 3\n  UserKnownHostsFile /tmp/pf-cfg-kh\nHost bastion\n  Port 2223\n";

/// `ssh -G` output as (key → values), keys lower-case.
fn ssh_g(args: &[String]) -> BTreeMap<String, Vec<String>> {
    let out = Command::new("ssh").arg("-G").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ssh -G {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line.split_once(' ') {
            map.entry(k.to_ascii_lowercase())
                .or_default()
                .push(v.to_owned());
        }
    }
    map
}

/// The same options through real `ssh -G` (given as Ansible's ssh plugin gives them: user and
/// port first, then the common args, then the extra args) and through promfleet's
/// `inventory ssh-config`: every field promfleet uses must agree.
#[test]
fn ssh_args_resolve_as_openssh_resolves_them() {
    if !have("ssh") {
        eprintln!("SKIPPED: needs OpenSSH's ssh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ssh_config");
    std::fs::write(&config, SSH_ARGS_CONFIG).unwrap();
    let mut ini = String::from("[g]\n");
    for (i, vars) in SSH_ARGS_ROWS.iter().enumerate() {
        ini.push_str(&format!(
            "h{} ansible_host=10.9.0.{} {vars}\n",
            i + 1,
            i + 1
        ));
    }
    let inv = dir.path().join("hosts.ini");
    std::fs::write(&inv, &ini).unwrap();
    let out = Run::new(&["inventory", "ssh-config", "--json", "-i"])
        .arg(&inv)
        .arg("--ssh-config")
        .arg(&config)
        .output();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let defaults = ssh_g(&["-F".into(), "none".into(), "promfleet.invalid".into()]);
    let home = std::env::var("HOME").unwrap_or_default();
    let expand = |p: &str| p.replacen('~', &home, 1);
    let yes_no = |v: &str| match v {
        "true" | "yes" | "ask" => "yes".to_owned(),
        "false" | "no" | "off" => "no".to_owned(),
        other => other.to_owned(),
    };
    let mut diffs = Vec::new();
    for (i, vars) in SSH_ARGS_ROWS.iter().enumerate() {
        let words = shlex::split(&vars.replace('\n', " ")).unwrap();
        let var = |name: &str| {
            words
                .iter()
                .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned))
        };
        let mut args: Vec<String> = vec!["-F".into(), config.display().to_string()];
        if let Some(p) = var("ansible_port") {
            args.extend(["-o".into(), format!("Port={p}")]);
        }
        if let Some(u) = var("ansible_user") {
            args.extend(["-o".into(), format!("User={u}")]);
        }
        for key in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
            if let Some(a) = var(key) {
                args.extend(shlex::split(&a).unwrap());
            }
        }
        args.push(format!("10.9.0.{}", i + 1));
        let ssh = ssh_g(&args);
        let one = |k: &str| {
            ssh.get(k)
                .and_then(|v| v.first().cloned())
                .unwrap_or_default()
        };
        let default = |k: &str| {
            defaults
                .get(k)
                .and_then(|v| v.first().cloned())
                .unwrap_or_default()
        };
        let row = &rows[i];
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        // promfleet prints null (or []) where ssh's value is OpenSSH's default.
        let or_default = |k: &str, v: &Value| {
            let t = text(v);
            if t.is_empty() || t == "[]" {
                default(k)
            } else {
                t
            }
        };
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect()
        };
        let mut pairs: Vec<(&str, String, String)> = vec![
            ("hostname", text(&row["hostname"]), one("hostname")),
            ("user", text(&row["user"]), one("user")),
            ("port", text(&row["port"]), one("port")),
            (
                "stricthostkeychecking",
                yes_no(&or_default(
                    "stricthostkeychecking",
                    &row["stricthostkeychecking"],
                )),
                yes_no(&one("stricthostkeychecking")),
            ),
            (
                "connecttimeout",
                or_default("connecttimeout", &row["connecttimeout"]),
                one("connecttimeout"),
            ),
            (
                "serveraliveinterval",
                or_default("serveraliveinterval", &row["serveraliveinterval"]),
                one("serveraliveinterval"),
            ),
            (
                "serveralivecountmax",
                or_default("serveralivecountmax", &row["serveralivecountmax"]),
                one("serveralivecountmax"),
            ),
            (
                "hostkeyalias",
                text(&row["hostkeyalias"]),
                one("hostkeyalias"),
            ),
            (
                "identitiesonly",
                yes_no(&text(&row["identitiesonly"])),
                one("identitiesonly"),
            ),
            (
                "hashknownhosts",
                yes_no(&text(&row["hashknownhosts"])),
                one("hashknownhosts"),
            ),
        ];
        let ukh = list(&row["userknownhostsfile"]);
        let ukh = if ukh.is_empty() {
            default("userknownhostsfile")
        } else {
            ukh.join(" ")
        };
        pairs.push((
            "userknownhostsfile",
            expand(&ukh),
            expand(&one("userknownhostsfile")),
        ));
        let ids: Vec<String> = ssh
            .get("identityfile")
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| expand(p))
            .collect();
        pairs.push((
            "identityfile",
            list(&row["identityfile"]).join(" "),
            ids.join(" "),
        ));
        // ProxyJump: ssh prints the hop as written; promfleet resolves it.
        let jump = match &row["proxyjump"] {
            Value::Null => "none".to_owned(),
            j => {
                let hop = one("proxyjump");
                let (user, rest) = hop
                    .rsplit_once('@')
                    .map_or((None, hop.as_str()), |(u, r)| (Some(u), r));
                let (host, port) = rest
                    .split_once(':')
                    .map_or((rest, None), |(h, p)| (h, Some(p)));
                format!(
                    "{}{}{}",
                    user.map(|_| format!("{}@", text(&j["user"])))
                        .unwrap_or_default(),
                    if text(&j["hostname"]) == host {
                        host.to_owned()
                    } else {
                        text(&j["hostname"])
                    },
                    port.map(|_| format!(":{}", text(&j["port"])))
                        .unwrap_or_default()
                )
            }
        };
        let ssh_jump = ssh
            .get("proxyjump")
            .and_then(|v| v.first().cloned())
            .unwrap_or_else(|| "none".into());
        pairs.push(("proxyjump", jump, ssh_jump));
        if let Some(j) = row["proxyjump"].as_object() {
            // The bastion is resolved through the config on its own (`Host bastion`), as ssh does.
            let bastion = ssh_g(&["-F".into(), config.display().to_string(), "bastion".into()]);
            let hop = one("proxyjump");
            if !hop.contains(':') {
                pairs.push((
                    "proxyjump port",
                    text(&j["port"]),
                    bastion["port"][0].clone(),
                ));
            }
        }
        for (key, ours, theirs) in pairs {
            if ours != theirs {
                diffs.push(format!(
                    "row {} ({vars}): {key}: promfleet `{ours}`, ssh -G `{theirs}`",
                    i + 1
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// `--no-resolve`: no lookup, stand-in addresses that `render` uses and `deploy` refuses;
/// without it, a name resolves as the system resolver answers (`localhost` only: /etc/hosts,
/// no DNS traffic) and SSH keeps the name.
#[test]
fn no_resolve_renders_offline_and_deploy_refuses_stand_ins() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("hosts.ini");
    std::fs::write(
        &inv,
        "[web]\nweb1.example.com\n[monitoring]\nmon ansible_host=mon.example.com\n\
         [all:vars]\nconsul_agents=http://10.0.0.5:8500\n",
    )
    .unwrap();
    let out = Run::new(&["render", "--no-resolve", "--out"])
        .arg(dir.path().join("out"))
        .arg("-i")
        .arg(&inv)
        .output();
    assert!(out.status.success(), "{}", stderr(&out));
    let note = stderr(&out);
    assert!(
        note.contains("--no-resolve: 2 host(s)")
            && note.contains("web1.example.com → 240.0.0.1")
            && note.contains("mon (mon.example.com) → 240.0.0.2"),
        "{note}"
    );
    let compose = std::fs::read_to_string(
        dir.path()
            .join("out/mon/opt/promfleet/monitoring/docker-compose.yml"),
    )
    .unwrap();
    assert!(compose.contains("http://240.0.0.2:"), "{compose}");

    let out = Run::new(&["deploy", "exporters.yml", "--check", "--no-resolve", "-i"])
        .arg(&inv)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("hosts.ini:2:1: host `web1.example.com` has a --no-resolve stand-in"),
        "{err}"
    );

    for cmd in [&["status"][..], &["alert", "test", "--group", "web"]] {
        let out = Run::new(cmd)
            .arg("--no-resolve")
            .arg("-i")
            .arg(&inv)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .output();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(
            err.contains("has a --no-resolve stand-in"),
            "{cmd:?}: {err}"
        );
    }

    std::fs::write(
        &inv,
        "[web]\napp ansible_host=localhost ansible_port=2222\n",
    )
    .unwrap();
    let out = Run::new(&["inventory", "list", "--json", "-i"])
        .arg(&inv)
        .output();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0))
        .unwrap()
        .next()
        .unwrap()
        .ip();
    assert_eq!(rows[0]["ip"], want.to_string());
    assert_eq!(rows[0]["resolved_from"], "localhost");
    assert_eq!(rows[0]["address"], "localhost");
}

/// INI values as Ansible's INI plugin reads them: host lines split by Python's shlex (quotes,
/// backslash escapes, `#` comments), every value through `ast.literal_eval` (numbers in every
/// base, lists, dicts, tuples, None, adjacent strings), and `[group:vars]` lines taken whole.
/// One row per line; the expected value is `ansible-inventory --list`'s hostvars.
const INI_VALUE_ROWS: &[&str] = &[
    r#"h1 ansible_host=10.0.0.1 v_a="x\"y" v_b='p q' v_c=1.5 v_d="[1, 2]" v_e=x\ y"#,
    r#"h2 ansible_host=10.0.0.2 v_f=None v_g=0x10 v_h=0o17 v_i=1_000 v_j=-3 v_k=true v_l=True"#,
    r#"h3 ansible_host=10.0.0.3 v_m="{'a': 1, 2: [3]}" v_n='(1,)' v_o="'a' 'b'" v_p=0777 v_q=a#c"#,
    r#"h4 ansible_host=10.0.0.4 v_r='1 # one' v_s="x\\y" v_t='x\y' v_u="" v_v=1e3 v_w=.5 # end"#,
    r#"h5 ansible_host=10.0.0.5 v_x="'\x41\n'" v_y="r'\n'" v_z='1, 2' v_aa=--1 v_ab=1+2 v_ac=set()"#,
];
const INI_GROUP_VAR_ROWS: &[&str] = &[
    r#"v_ga="a b""#,
    r#"v_gb='c\'d'"#,
    r#"v_gc=a "b" c"#,
    r#"v_gd=1 # a Python comment"#,
    r#"v_ge=x # not one"#,
    r#"v_gf = [1, {'k': None}]"#,
];

#[test]
fn ini_values_read_as_ansible_ini_plugin_reads_them() {
    if !ansible_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.ini");
    let text = format!(
        "[web]\n{}\n[web:vars]\n{}\n",
        INI_VALUE_ROWS.join("\n"),
        INI_GROUP_VAR_ROWS.join("\n")
    );
    std::fs::write(&file, &text).unwrap();
    let expected = ansible_list(&file).unwrap();
    let inv = promfleet::inventory::load(&file).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut differences = Vec::new();
    let mut compared = 0;
    for host in inv.fleet() {
        let ours = inv.host_vars(host);
        let theirs = expected["_meta"]["hostvars"][&host.name]
            .as_object()
            .unwrap_or_else(|| panic!("ansible has no {}", host.name));
        for (k, want) in theirs.iter().filter(|(k, _)| k.starts_with("v_")) {
            compared += 1;
            let got = ours.get(k).cloned().unwrap_or(Value::Null);
            if &got != want {
                differences.push(format!(
                    "{} {k}: ansible {want}, promfleet {got}",
                    host.name
                ));
            }
            if ours.get(k).is_none() {
                differences.push(format!("{} {k}: missing in promfleet", host.name));
            }
        }
    }
    assert!(
        compared >= 30,
        "only {compared} values compared:\n{expected:#}"
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
