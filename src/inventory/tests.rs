//! Inventory unit tests: every format, every validation error (with its file:line and hint),
//! `--limit` patterns and the import → to_yaml → parse_str round trip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inventory")
        .join(name)
}

fn load_fixture(name: &str) -> Inventory {
    match load(&fixture(name)) {
        Ok(inv) => inv,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn err_fixture(name: &str) -> String {
    match load(&fixture(name)) {
        Ok(_) => panic!("{name} should not load"),
        Err(e) => e.to_string(),
    }
}

fn parse_err(text: &str, file: &str) -> String {
    match parse_str(text, Path::new(file)) {
        Ok(inv) => panic!("expected an error, got {} hosts", inv.hosts.len()),
        Err(e) => e.to_string(),
    }
}

fn names<'a>(hosts: impl IntoIterator<Item = &'a Host>) -> Vec<&'a str> {
    hosts.into_iter().map(|h| h.name.as_str()).collect()
}

fn group_names(inv: &Inventory) -> Vec<&str> {
    inv.groups.iter().map(|g| g.name.as_str()).collect()
}

/// Hosts as comparable tuples (name, ip, group, ssh) for round-trip checks.
fn host_set(inv: &Inventory) -> BTreeSet<(String, String, String, String)> {
    inv.hosts
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                h.ip.to_string(),
                h.group.clone(),
                format!("{:?}", h.ssh),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- formats

#[test]
fn example_yaml_reads_groups_hosts_ssh_consul_stages() {
    let inv = load_fixture("example.yml");
    assert_eq!(group_names(&inv), ["IDE", "Stage", "Pet"]);
    assert_eq!(
        names(&inv.hosts),
        [
            "ide-01", "ide-02", "ide-03", "stage-01", "stage-02", "pet-01", "pet-02", "mon-01"
        ]
    );
    assert_eq!(names(inv.monitoring()), ["mon-01"]);
    assert_eq!(inv.fleet().count(), 7);
    assert_eq!(
        inv.consul.agents,
        ["http://10.0.0.178:8500", "http://10.0.0.178:8501"]
    );
    assert_eq!(inv.consul.datacenter.as_deref(), Some("dc1"));

    let ide01 = inv.host("ide-01").unwrap();
    assert_eq!(ide01.ip.to_string(), "10.0.1.11");
    assert_eq!(ide01.group, "IDE");
    assert_eq!(ide01.groups, ["IDE"]);
    assert_eq!(
        ide01.ssh.user.as_deref(),
        Some("deploy"),
        "global ssh applies"
    );
    assert_eq!(ide01.ssh.port, Some(22));
    assert_eq!(ide01.ssh.become_root, Some(true));
    assert_eq!(ide01.pos.line, 35, "pos is the host entry: {}", ide01.pos);

    let ide02 = inv.host("ide-02").unwrap();
    assert_eq!(ide02.ssh.user.as_deref(), Some("admin"), "host ssh wins");
    assert_eq!(ide02.ssh.port, Some(2222));
    assert_eq!(ide02.ssh.address.as_deref(), Some("ide-02.lan"));
    assert_eq!(ide02.ssh.key, Some(PathBuf::from("~/.ssh/ide_ed25519")));
    assert_eq!(ide02.vars["cadvisor_port"], 9105);
    assert_eq!((ide02.pos.line, ide02.pos.column), (36, 9));

    let stage = inv.host("stage-01").unwrap();
    assert_eq!(
        stage.ssh.user.as_deref(),
        Some("stage"),
        "group ssh beats global"
    );
    assert_eq!(
        stage.ssh.port,
        Some(22),
        "global fills what the group leaves unset"
    );

    let pet = inv.host("pet-01").unwrap();
    assert_eq!(pet.group, "Pet", "`hostname` is an alias of `name`");
    let vars = inv.host_vars(pet);
    assert_eq!(vars["alert_severity_floor"], "warning");
    assert_eq!(
        vars["runbook_base_url"],
        "https://wiki.example.com/runbooks"
    );

    let mon = inv.host("mon-01").unwrap();
    assert!(mon.is_monitoring());
    assert_eq!(mon.group, MONITORING_GROUP);

    assert_eq!(inv.stages.len(), 3);
    assert_eq!(inv.stages[1].hosts, ["IDE"]);
    assert_eq!(
        inv.stages[1].serial,
        Some(crate::inventory::Serial::Count(2))
    );
    assert_eq!(inv.stages[1].max_fail_percentage, Some(25.0));
    assert_eq!(
        inv.stages[2].serial,
        Some(crate::inventory::Serial::Percent(50.0))
    );
}

#[test]
fn shipped_examples_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory");
    for f in ["example.yml", "ansible-example.yml", "ansible-example.ini"] {
        let inv = load(&root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(inv.hosts.len() >= 6, "{f}");
    }
    let path = root.join("server_list.example.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(import_server_list(&text, &path).unwrap().hosts.len(), 8);
}

fn check_ansible(inv: &Inventory) {
    assert_eq!(
        group_names(inv),
        ["IDE", "Stage", "Pet"],
        "parents are not fleet groups"
    );
    assert_eq!(
        names(&inv.hosts),
        [
            "ide-01", "ide-02", "stage-01", "stage-02", "pet-01", "mon-01"
        ]
    );
    let ide02 = inv.host("ide-02").unwrap();
    assert_eq!(ide02.ip.to_string(), "10.0.1.12");
    assert_eq!(ide02.group, "IDE");
    assert_eq!(
        ide02.groups,
        ["IDE", "fleet"],
        "parents follow the fleet group"
    );
    assert_eq!(ide02.ssh.user.as_deref(), Some("admin"));
    assert_eq!(ide02.ssh.port, Some(2222));
    assert_eq!(
        ide02.ssh.become_root,
        Some(true),
        "from the parent group's vars"
    );
    assert_eq!(ide02.vars["cadvisor_port"], 9105);
    assert!(
        !ide02.vars.contains_key("ansible_host"),
        "connection vars are not template vars"
    );
    let ide01 = inv.host("ide-01").unwrap();
    assert_eq!(ide01.ssh.user.as_deref(), Some("deploy"), "from all:vars");
    assert_eq!(inv.host_vars(ide01)["env_label"], "ide");
    let mon = inv.host("mon-01").unwrap();
    assert!(mon.is_monitoring());
    assert_eq!(mon.group, "monitoring");
    assert_eq!(
        inv.consul.agents,
        ["http://10.0.0.178:8500", "http://10.0.0.178:8501"]
    );
    assert_eq!(inv.consul.datacenter.as_deref(), Some("dc1"));
    assert!(!inv.vars.contains_key("consul_agents"));
}

#[test]
fn ansible_yaml_inventory() {
    let inv = load_fixture("ansible.yml");
    check_ansible(&inv);
    assert_eq!(
        inv.host("ide-02").unwrap().ssh.key,
        Some(PathBuf::from("~/.ssh/ide_ed25519"))
    );
    assert_eq!(
        inv.vars["runbook_base_url"],
        "https://wiki.example.com/runbooks"
    );
    let ide01 = inv.host("ide-01").unwrap();
    assert_eq!(
        (ide01.pos.line, ide01.pos.column),
        (17, 13),
        "{}",
        ide01.pos
    );
}

#[test]
fn ansible_ini_inventory() {
    let inv = load_fixture("ansible.ini");
    check_ansible(&inv);
    assert_eq!(inv.host("stage-02").unwrap().pos.line, 11);
}

#[test]
fn ini_detected_without_extension() {
    let inv = load_fixture("hosts");
    check_ansible(&inv);
}

#[test]
fn yaml_detected_without_extension() {
    let text = "---\ngroups:\n  IDE:\n    hosts:\n      - { name: a, ip: 10.0.0.1 }\n";
    assert_eq!(
        parse_str(text, Path::new("inventory")).unwrap().hosts[0].group,
        "IDE"
    );
    let text = "---\nall:\n  children:\n    IDE:\n      hosts: { a: { ansible_host: 10.0.0.1 } }\n";
    assert_eq!(
        parse_str(text, Path::new("hosts")).unwrap().hosts[0].group,
        "IDE"
    );
    let text = "# seed list\na\t10.0.0.1\tIDE\n";
    assert_eq!(
        parse_str(text, Path::new("servers")).unwrap().hosts[0].group,
        "IDE"
    );
}

#[test]
fn ansible_top_level_groups_without_all() {
    let inv = parse_str(
        "IDE:\n  hosts:\n    ide-01: { ansible_host: 10.0.1.11, ansible_port: 2200 }\n",
        Path::new("inv.yml"),
    )
    .unwrap();
    assert_eq!(names(&inv.hosts), ["ide-01"]);
    assert_eq!(inv.hosts[0].ssh.port, Some(2200));
}

/// The sudo password Ansible's `sudo` become plugin would use, as (value, variable).
fn become_pass(inv: &Inventory, host: &str) -> Option<(String, String)> {
    let pw = inv.host(host).unwrap().ssh.become_password.clone()?;
    let var = match pw.source() {
        crate::transport::PasswordSource::Inventory { var, .. } => var.clone(),
        other => panic!("{other}"),
    };
    Some((pw.expose().to_owned(), var))
}

/// ansible-core merges variables by name (host over group over `all`), then its sudo plugin
/// takes the last of `ansible_become_password`, `ansible_become_pass`, `ansible_sudo_pass`
/// that is set (`ConfigManager._loop_entries` keeps the last found). The same text is a row
/// of tests/ansible_inventory.rs, where the sudo plugin itself gives the answer.
#[test]
fn ansible_become_password_names_and_precedence() {
    let text = "[web]\n\
        w1 ansible_host=10.0.0.1 ansible_become_pass=host-pass\n\
        w2 ansible_host=10.0.0.2 ansible_become_password=host-password\n\
        w3 ansible_host=10.0.0.3\n\
        [web:vars]\n\
        ansible_become_password=web-password\n\
        [db]\n\
        d1 ansible_host=10.0.0.4 ansible_sudo_pass=d1-sudo\n\
        d2 ansible_host=10.0.0.5\n\
        [all:vars]\n\
        ansible_become_pass=all-pass\n";
    let inv = parse_str(text, Path::new("inv.ini")).unwrap();
    let rows = [
        // host, (password, variable): `all`'s `ansible_become_pass` beats a host's
        // `ansible_become_password`, as the name listed later wins.
        ("w1", "host-pass", "ansible_become_pass"),
        ("w2", "all-pass", "ansible_become_pass"),
        ("w3", "all-pass", "ansible_become_pass"),
        ("d1", "d1-sudo", "ansible_sudo_pass"),
        ("d2", "all-pass", "ansible_become_pass"),
    ];
    for (host, value, var) in rows {
        assert_eq!(
            become_pass(&inv, host),
            Some((value.to_owned(), var.to_owned())),
            "{host}"
        );
    }
    // Not variables any more: they must not reach templates (or the rendered files).
    for h in &inv.hosts {
        assert!(!h.vars.keys().any(|k| k.contains("pass")), "{:?}", h.vars);
    }
    assert!(!inv.vars.keys().any(|k| k.contains("pass")));
    // Debug (test failures, logs) never shows the value.
    let ssh = format!("{:?}", inv.host("w1").unwrap().ssh);
    assert!(!ssh.contains("host-pass"), "{ssh}");
    assert!(
        ssh.contains("inv.ini:2"),
        "the source names file:line: {ssh}"
    );

    let yaml = "all:\n  vars: { ansible_sudo_pass: legacy-pass }\n  children:\n    IDE:\n      hosts:\n        a: { ansible_host: 10.0.0.1 }\n";
    let inv = parse_str(yaml, Path::new("inv.yml")).unwrap();
    assert_eq!(
        become_pass(&inv, "a"),
        Some(("legacy-pass".to_owned(), "ansible_sudo_pass".to_owned()))
    );
}

#[test]
fn ansible_become_password_promfleet_cannot_use_is_an_error() {
    let rows = [
        (
            "IDE:\n  hosts:\n    a:\n      ansible_host: 10.0.0.1\n      ansible_become_password: \"{{ vault_sudo }}\"\n",
            "inv.yml:5",
            "Jinja template",
        ),
        (
            "IDE:\n  hosts:\n    a:\n      ansible_host: 10.0.0.1\n      ansible_become_pass: \"$ANSIBLE_VAULT;1.1;AES256\\n6162\"\n",
            "inv.yml:5",
            "vault-encrypted",
        ),
    ];
    for (text, at, why) in rows {
        let e = parse_err(text, "inv.yml");
        assert!(
            e.contains(at) && e.contains(why) && e.contains("--ask-become-pass"),
            "{e}"
        );
    }
}

#[test]
fn ansible_innermost_group_wins_and_ip_var_keeps_dns_address() {
    let text = "[fleet]\nide-01 ip=10.0.1.11 ansible_host=ide-01.lan\n[IDE]\nide-01\n[fleet:children]\nIDE\n";
    let inv = parse_str(text, Path::new("inv.ini")).unwrap();
    let h = &inv.hosts[0];
    assert_eq!(h.group, "IDE", "IDE is nested in fleet");
    assert_eq!(h.groups, ["IDE", "fleet"]);
    assert_eq!(h.ip.to_string(), "10.0.1.11");
    assert_eq!(h.ssh.address.as_deref(), Some("ide-01.lan"));
    assert_eq!(group_names(&inv), ["IDE"]);
}

#[test]
fn server_list_tabs_spaces_and_comments() {
    let path = fixture("server_list.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let inv = import_server_list(&text, &path).unwrap();
    assert_eq!(group_names(&inv), ["IDE", "Stage", "Pet"]);
    assert_eq!(inv.hosts.len(), 8);
    let ide03 = inv.host("ide-03").unwrap();
    assert_eq!(
        (ide03.ip.to_string().as_str(), ide03.group.as_str()),
        ("10.0.1.13", "IDE")
    );
    assert_eq!(inv.host("stage-02").unwrap().group, "Stage");
    assert_eq!(inv.host("stage-02").unwrap().pos.line, 8);
    assert!(inv.host("mon-01").unwrap().is_monitoring());
    // `load` accepts a server list too.
    assert_eq!(load(&path).unwrap().hosts.len(), 8);
}

// ---------------------------------------------------------------- errors

#[test]
fn malformed_yaml_is_a_located_syntax_error() {
    let e = parse_err(
        "groups:\n  IDE:\n    hosts: [\n      { name: a, ip: 10.0.0.1 }\n",
        "bad.yml",
    );
    assert!(e.starts_with("bad.yml:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
    assert_eq!(e.lines().count(), 1, "one-line message: {e}");
    let e = parse_err("groups:\n  IDE:\n   hosts:\n  - x\n", "bad2.yml");
    assert!(e.starts_with("bad2.yml:4:5: invalid YAML"), "{e}");
    let e = parse_err("groups:\n  IDE: {}\n  IDE: {}\n", "dup.yml");
    assert!(
        e.starts_with("dup.yml:3:3: invalid YAML: duplicate key `IDE`"),
        "{e}"
    );
    assert!(
        e.contains("merge the two entries") && !e.contains("DuplicateKeyPolicy"),
        "{e}"
    );
    let e = parse_err(
        "groups:\n  IDE:\n    hosts:\n      - name: a\n        ip: 10.0.0.1\n\tfoo: 1\n",
        "tab.yml",
    );
    assert!(
        e.starts_with("tab.yml:5:") && e.contains("spaces, not tabs"),
        "{e}"
    );
}

#[test]
fn unknown_key_suggests_nearest() {
    let e = err_fixture("bad_unknown_key.yml");
    assert!(
        e.contains("bad_unknown_key.yml:3:5: unknown key `hots`"),
        "{e}"
    );
    assert!(e.contains("did you mean `hosts`?"), "{e}");
    let e = parse_err("grups:\n  IDE: {}\n", "t.yml");
    assert!(
        e.starts_with("t.yml:1:1: unknown key `grups`") && e.contains("`groups`"),
        "{e}"
    );
    let e = parse_err(
        "groups:\n  IDE:\n    hosts:\n      - { name: a, ip: 10.0.0.1, ssh: { usr: x } }\n",
        "t.yml",
    );
    assert!(
        e.contains("t.yml:4:") && e.contains("`usr`") && e.contains("`user`"),
        "{e}"
    );
    let e = parse_err("all:\n  children:\n    IDE:\n      hots: {}\n", "a.yml");
    assert!(
        e.contains("a.yml:4:7: unknown key `hots`") && e.contains("`hosts`"),
        "{e}"
    );
}

#[test]
fn duplicate_hostname_names_both_positions() {
    let e = err_fixture("bad_duplicate_host.yml");
    assert!(
        e.contains("bad_duplicate_host.yml:8:9: duplicate hostname `ide-01`"),
        "{e}"
    );
    assert!(
        e.contains("first defined at") && e.contains("bad_duplicate_host.yml:4:9"),
        "{e}"
    );
    assert!(e.contains("rename or remove one"), "{e}");
}

#[test]
fn duplicate_ip_is_rejected() {
    let text = "groups:\n  IDE:\n    hosts:\n      - { name: a, ip: 10.0.1.11 }\n      - { name: b, ip: 10.0.1.11 }\n";
    let e = parse_err(text, "d.yml");
    assert!(e.starts_with("d.yml:5:"), "{e}");
    assert!(
        e.contains("duplicate ip 10.0.1.11 for `b` (already used by `a` at d.yml:4:"),
        "{e}"
    );
}

#[test]
fn invalid_ip_is_rejected() {
    let e = err_fixture("bad_ip.yml");
    assert!(e.contains("bad_ip.yml:5:"), "{e}");
    assert!(
        e.contains("`10.0.1.300` is not a valid IP address for host `ide-02`"),
        "{e}"
    );
    assert!(e.contains("such as 10.0.1.12"), "{e}");
    // promfleet's own `ip:` is an address, never a name to resolve.
    let e = parse_err(
        "groups:\n  IDE:\n    hosts:\n      - { name: a, ip: a.lan }\n",
        "n.yml",
    );
    assert!(e.contains("`a.lan` is not a valid IP"), "{e}");
}

#[test]
fn missing_ip_is_rejected() {
    let e = parse_err(
        "groups:\n  IDE:\n    hosts:\n      - { name: a }\n",
        "m.yml",
    );
    assert!(
        e.starts_with("m.yml:4:") && e.contains("host `a` has no ip"),
        "{e}"
    );
}

fn parse_ok(text: &str, file: &str) -> Inventory {
    match parse_str(text, Path::new(file)) {
        Ok(inv) => inv,
        Err(e) => panic!("{file}: {e}"),
    }
}

#[test]
fn hosts_only_in_all_or_ungrouped_are_in_ungrouped() {
    let inv = load_fixture("ansible_ungrouped.yml");
    let lonely = inv.host("lonely").unwrap();
    assert_eq!(lonely.group, "ungrouped");
    assert_eq!(lonely.groups, ["ungrouped"]);
    assert_eq!(inv.host("ide-01").unwrap().group, "IDE");
    assert!(
        group_names(&inv).contains(&"ungrouped"),
        "{:?}",
        group_names(&inv)
    );
    let inv = parse_ok(
        "ungrouped-host ansible_host=10.0.0.1\n[IDE]\nide-01 ansible_host=10.0.0.2\n",
        "u.ini",
    );
    assert_eq!(inv.host("ungrouped-host").unwrap().group, "ungrouped");
    // Without ungrouped hosts there is no `ungrouped` group.
    let inv = parse_ok("[IDE]\nide-01 ansible_host=10.0.0.2\n", "v.ini");
    assert_eq!(group_names(&inv), ["IDE"]);
}

#[test]
fn host_ranges_expand_in_ini_and_yaml() {
    let inv = parse_ok(
        "[web]\n10.9.0.[1:3] ansible_user=deploy\n10.9.1.[0:20:10]:2222\n",
        "r.ini",
    );
    assert_eq!(
        names(&inv.hosts),
        [
            "10.9.0.1",
            "10.9.0.2",
            "10.9.0.3",
            "10.9.1.0",
            "10.9.1.10",
            "10.9.1.20"
        ]
    );
    assert!(
        inv.hosts[..3]
            .iter()
            .all(|h| h.ssh.user.as_deref() == Some("deploy"))
    );
    assert!(inv.hosts[3..].iter().all(|h| h.ssh.port == Some(2222)));
    let inv = parse_ok(
        "all:\n  children:\n    web:\n      hosts:\n        10.9.[0:1].[7:8]:\n          ansible_port: 2200\n",
        "r.yml",
    );
    assert_eq!(
        names(&inv.hosts),
        ["10.9.0.7", "10.9.0.8", "10.9.1.7", "10.9.1.8"]
    );
    assert!(inv.hosts.iter().all(|h| h.ssh.port == Some(2200)));
    // Padding, letters (a-z then A-Z), steps, an empty begin.
    for (pattern, want) in [
        ("w[08:10]", vec!["w08", "w09", "w10"]),
        ("db-[y:B]", vec!["db-y", "db-z", "db-A", "db-B"]),
        ("z[a:f:2]", vec!["za", "zc", "ze"]),
        ("n[:2]", vec!["n0", "n1", "n2"]),
        ("n[3:1]", vec![]),
    ] {
        assert_eq!(expand_host_range(pattern).unwrap(), want, "{pattern}");
    }
}

#[test]
fn yaml_host_keys_carry_a_port_the_host_vars_may_override() {
    let inv = parse_ok(
        "all:\n  children:\n    g:\n      hosts:\n        10.7.0.1:2222:\n\
         \x20       10.7.0.[2:3]:2201:\n        10.7.0.4:2202: {ansible_port: 2203}\n",
        "p.yml",
    );
    let ports: Vec<(&str, Option<u16>)> = inv
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.ssh.port))
        .collect();
    assert_eq!(
        ports,
        [
            ("10.7.0.1", Some(2222)),
            ("10.7.0.2", Some(2201)),
            ("10.7.0.3", Some(2201)),
            ("10.7.0.4", Some(2203))
        ]
    );
}

#[test]
fn bad_host_ranges_are_located_errors() {
    let e = parse_err("[web]\nok ansible_host=10.0.0.1\nweb[1:x]\n", "r.ini");
    assert!(e.starts_with("r.ini:3:1: host range `[1:x]`"), "{e}");
    assert!(e.contains("web[01:20]"), "{e}");
    let e = parse_err("[web]\nweb[01:100]\n", "r.ini");
    assert!(e.contains("equal length"), "{e}");
    let e = parse_err("[web]\nweb[c:a]\n", "r.ini");
    assert!(e.contains("begin <= end"), "{e}");
    // Bounded: a typo cannot make millions of hosts.
    let e = parse_err("[web]\nh[0:99999999]\n", "r.ini");
    assert!(e.contains("more than 100000 hosts"), "{e}");
    let e = parse_err("[web]\nh[0:999].[0:999]\n", "r.ini");
    assert!(e.contains("more than 100000 hosts"), "{e}");
}

#[test]
fn ini_text_in_a_yml_file_or_not_yaml_mapping_is_read_as_ini() {
    let ini = "[db]\ndb1 ansible_host=10.5.0.1\n[db:vars]\nansible_user=postgres\n";
    let inv = parse_ok(ini, "hosts.yml");
    assert_eq!(
        inv.host("db1").unwrap().ssh.user.as_deref(),
        Some("postgres")
    );
    // First line `host:port`: a YAML scalar, not a mapping.
    let inv = parse_ok("10.5.1.1:2201\n[db]\ndb1 ansible_host=10.5.1.2\n", "hosts");
    assert_eq!(inv.host("10.5.1.1").unwrap().ssh.port, Some(2201));
    // A quoted value with a space.
    let inv = parse_ok(
        "db1 ansible_host=10.5.2.1 motd=\"hello world\"\n[db]\ndb1\n",
        "hosts",
    );
    assert_eq!(inv.host("db1").unwrap().vars["motd"], "hello world");
    // Neither YAML nor INI: the YAML error is the one reported.
    let e = parse_err("all:\n  hosts: [\n", "broken.yml");
    assert!(e.contains("invalid YAML"), "{e}");
}

#[test]
fn group_vars_apply_by_depth_then_priority_then_name() {
    let inv = parse_ok(
        "[all:vars]\nansible_user=from_all\nlevel=all\n\
         [parent:children]\nchild\n[parent:vars]\nansible_user=from_parent\nlevel=parent\n\
         [child]\nh1 ansible_host=10.1.0.1\nh2 ansible_host=10.1.0.2 ansible_user=from_host\n\
         [child:vars]\nlevel=child\n\
         [other]\nh1\n[other:vars]\nansible_user=from_other\n",
        "p.ini",
    );
    let h1 = inv.host("h1").unwrap();
    // `other` and `parent` are both at depth 1: `parent` sorts later by name and wins.
    assert_eq!(h1.ssh.user.as_deref(), Some("from_parent"));
    assert_eq!(inv.host_vars(h1)["level"], "child");
    assert_eq!(
        inv.host("h2").unwrap().ssh.user.as_deref(),
        Some("from_host")
    );
    // Connection variables are not template variables.
    assert!(!inv.host_vars(h1).contains_key("ansible_user"));
    let inv = parse_ok(
        "[a]\nh1 ansible_host=10.1.0.1\n[a:vars]\nansible_user=a\nansible_group_priority=10\n\
         [b]\nh1\n[b:vars]\nansible_user=b\n",
        "q.ini",
    );
    assert_eq!(inv.host("h1").unwrap().ssh.user.as_deref(), Some("a"));
    let e = parse_err(
        "[a]\nh1 ansible_host=10.1.0.1\n[a:vars]\nansible_group_priority=high\n",
        "q.ini",
    );
    assert!(e.starts_with("q.ini:4:"), "{e}");
    assert!(e.contains("whole number"), "{e}");
}

#[test]
fn ssh_synonyms_win_as_in_ansible_ssh_plugin() {
    let inv = parse_ok(
        "[g]\nh1 ansible_host=10.1.0.1 ansible_user=host_user\n\
         h2 ansible_host=10.1.0.9 ansible_ssh_host=10.1.0.2 ansible_port=1 ansible_ssh_port=2\n\
         [g:vars]\nansible_ssh_user=group_ssh\n",
        "s.ini",
    );
    // Merged by name first, then `ansible_ssh_user` beats `ansible_user` (ansible -vvv).
    assert_eq!(
        inv.host("h1").unwrap().ssh.user.as_deref(),
        Some("group_ssh")
    );
    let h2 = inv.host("h2").unwrap();
    assert_eq!(h2.ip.to_string(), "10.1.0.2");
    assert_eq!(h2.ssh.port, Some(2));
}

#[test]
fn connection_local_and_extra_ssh_args_are_refused_with_their_line() {
    let e = parse_err(
        "[g]\nh1 ansible_host=10.1.0.1\nh2 ansible_host=127.0.0.1 ansible_connection=local\n",
        "c.ini",
    );
    assert!(e.starts_with("c.ini:3:"), "{e}");
    assert!(e.contains("ansible_connection=local"), "{e}");
    let e = parse_err(
        "[g]\nh1 ansible_host=10.1.0.1\n[g:vars]\nansible_connection=winrm\n",
        "c.ini",
    );
    assert!(e.contains("only connects over SSH"), "{e}");
    let e = parse_err(
        "[g]\nh1 ansible_host=10.1.0.1\n[g:vars]\nansible_ssh_common_args='-o ControlPersist=60s'\n",
        "c.ini",
    );
    assert!(e.starts_with("c.ini:4:"), "{e}");
    assert!(e.contains("one connection per host"), "{e}");
    let inv = parse_ok(
        "[g]\nh1 ansible_host=10.1.0.1 ansible_connection=ssh ansible_ssh_extra_args=''\n",
        "c.ini",
    );
    assert!(
        !inv.host_vars(&inv.hosts[0])
            .contains_key("ansible_connection")
    );
}

#[test]
fn bracketed_ipv6_host_line_is_a_host_not_a_section() {
    let e = parse_err("[v6]\n[2001:db8::11]:2222\n", "v.ini");
    assert!(e.contains("invalid name `2001:db8::11`"), "{e}");
}

#[test]
fn unknown_stage_group_suggests_nearest() {
    let e = err_fixture("bad_stage_group.yml");
    assert!(
        e.contains("bad_stage_group.yml:6:5: unknown group `IED` in stage `first`"),
        "{e}"
    );
    assert!(e.contains("did you mean `IDE`?"), "{e}");
}

#[test]
fn bad_stage_serial_is_rejected() {
    let text = "groups:\n  IDE:\n    hosts:\n      - { name: a, ip: 10.0.0.1 }\nstages:\n  - { name: s, hosts: [IDE], serial: lots }\n";
    let e = parse_err(text, "s.yml");
    assert!(
        e.starts_with("s.yml:6:5:") && e.contains("serial `lots`") && e.contains("25%"),
        "{e}"
    );
}

#[test]
fn invalid_names_state_the_rule() {
    let e = parse_err(
        "groups:\n  IDE:\n    hosts:\n      - { name: \"ide 01; rm -rf /\", ip: 10.0.0.1 }\n",
        "n.yml",
    );
    assert!(
        e.starts_with("n.yml:4:9: invalid name `ide 01; rm -rf /`"),
        "{e}"
    );
    assert!(e.contains("letters, digits, `.`, `_` and `-`"), "{e}");
    let e = parse_err(
        "groups:\n  \"-IDE\":\n    hosts:\n      - { name: a, ip: 10.0.0.1 }\n",
        "n.yml",
    );
    assert!(
        e.starts_with("n.yml:2:3: invalid name `-IDE`")
            && e.contains("start with a letter or digit"),
        "{e}"
    );
    let long = "a".repeat(64);
    let e = parse_err(
        &format!("groups:\n  IDE:\n    hosts:\n      - {{ name: {long}, ip: 10.0.0.1 }}\n"),
        "n.yml",
    );
    assert!(e.contains("at most 63"), "{e}");
    assert!(validate::is_valid_name(&"a".repeat(63)));
    assert!(validate::is_valid_name("10.0.1.11"));
    assert!(!validate::is_valid_name("a/b"));
}

#[test]
fn empty_inventory_is_rejected() {
    for text in ["", "# only a comment\n", "groups: {}\n", "vars: { a: 1 }\n"] {
        let e = parse_err(text, "e.yml");
        assert!(
            e.starts_with("e.yml:1:1: the inventory defines no hosts"),
            "{text:?}: {e}"
        );
    }
    let e = parse_err("[IDE]\n", "e.ini");
    assert!(e.contains("no hosts"), "{e}");
}

#[test]
fn server_list_errors_carry_line_numbers() {
    let e = err_fixture("bad_server_list.txt");
    assert!(
        e.contains("bad_server_list.txt:2:17: missing group for host `ide-02`"),
        "{e}"
    );
    assert!(e.contains("hostname ip group"), "{e}");
    let p = Path::new("s.txt");
    let e = import_server_list("a 10.0.0.1 IDE\nb 10.0.0.999 IDE\n", p)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.txt:2:3: `10.0.0.999` is not a valid IP"),
        "{e}"
    );
    let e = import_server_list("a 10.0.0.1 IDE\n\n# c\nb\t10.0.0.1\tIDE\n", p)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.txt:4:3: duplicate ip 10.0.0.1 for `b`"),
        "{e}"
    );
    let e = import_server_list("a 10.0.0.1 IDE\na 10.0.0.2 IDE\n", p)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.txt:2:1: duplicate hostname `a` (first defined at s.txt:1:1)"),
        "{e}"
    );
    let e = import_server_list("a 10.0.0.1 IDE extra\n", p)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.txt:1:16: unexpected fourth field `extra`"),
        "{e}"
    );
}

#[test]
fn wrong_types_are_located() {
    let e = parse_err(
        "groups:\n  IDE:\n    hosts:\n      - { name: a, ip: 10.0.0.1, ssh: { port: 99999 } }\n",
        "w.yml",
    );
    assert!(
        e.starts_with("w.yml:4:") && e.contains("port number"),
        "{e}"
    );
    let e = parse_err("groups:\n  IDE:\n    hosts: { a: 1 }\n", "w.yml");
    assert!(
        e.starts_with("w.yml:3:12:") && e.contains("expected a list"),
        "{e}"
    );
    let e = parse_err(
        "consul:\n  agents: [10.0.0.1:8500]\ngroups:\n  IDE:\n    hosts:\n      - { name: a, ip: 10.0.0.1 }\n",
        "c.yml",
    );
    assert!(
        e.starts_with("c.yml:2:") && e.contains("http://10.0.0.178:8500"),
        "{e}"
    );
}

#[test]
fn large_inventory_parses_and_validates() {
    let n = 100_000;
    let mut text = String::from("groups:\n");
    for g in 0..4 {
        text.push_str(&format!("  G{g}:\n    hosts:\n"));
        for i in (g..n).step_by(4) {
            text.push_str(&format!(
                "      - {{ name: host{i:06}, ip: 10.{}.{}.{} }}\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ));
        }
    }
    let inv = parse_str(&text, Path::new("big.yml")).unwrap();
    assert_eq!(inv.hosts.len(), n);
    assert_eq!(inv.groups.len(), 4);
    assert_eq!(inv.hosts[n - 1].name, "host099999");
    // A duplicate at the very end is still found.
    text.push_str("  Dup:\n    hosts:\n      - { name: host000000, ip: 10.200.0.1 }\n");
    let e = parse_err(&text, "big.yml");
    assert!(e.contains("duplicate hostname `host000000`"), "{e}");

    let mut list = String::new();
    for i in 0..n {
        list.push_str(&format!(
            "h{i}\t10.{}.{}.{}\tG{}\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255,
            i % 3
        ));
    }
    assert_eq!(
        import_server_list(&list, Path::new("big.txt"))
            .unwrap()
            .hosts
            .len(),
        n
    );
}

// ---------------------------------------------------------------- limits

fn select_names(inv: &Inventory, pattern: &str) -> Vec<String> {
    let limit = Limit::parse(pattern).unwrap();
    inv.select(Some(&limit))
        .unwrap_or_else(|e| panic!("{pattern}: {e}"))
        .into_iter()
        .map(|h| h.name.clone())
        .collect()
}

#[test]
fn limit_patterns() {
    let inv = load_fixture("example.yml");
    assert_eq!(inv.select(None).unwrap().len(), 8);
    assert_eq!(select_names(&inv, "all").len(), 8);
    assert_eq!(select_names(&inv, "*").len(), 8);
    assert_eq!(select_names(&inv, "ide-02"), ["ide-02"]);
    assert_eq!(select_names(&inv, "Stage"), ["stage-01", "stage-02"]);
    assert_eq!(select_names(&inv, "monitoring"), ["mon-01"]);
    assert_eq!(select_names(&inv, "ide-*"), ["ide-01", "ide-02", "ide-03"]);
    assert_eq!(select_names(&inv, "10.0.3.*"), ["pet-01", "pet-02"]);
    assert_eq!(select_names(&inv, "10.0.0.178"), ["mon-01"]);
    // Inventory order, not pattern order.
    assert_eq!(
        select_names(&inv, "Pet,ide-01"),
        ["ide-01", "pet-01", "pet-02"]
    );
    assert_eq!(select_names(&inv, "IDE:!ide-02"), ["ide-01", "ide-03"]);
    assert_eq!(
        select_names(&inv, "!IDE:!monitoring"),
        ["stage-01", "stage-02", "pet-01", "pet-02"]
    );
    assert_eq!(select_names(&inv, "*-01:&IDE"), ["ide-01"]);
    assert_eq!(select_names(&inv, "&Pet"), ["pet-01", "pet-02"]);
    assert_eq!(
        select_names(&inv, "IDE,Stage,!*-02"),
        ["ide-01", "ide-03", "stage-01"]
    );
}

#[test]
fn limit_from_retry_file() {
    let inv = load_fixture("example.yml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.retry");
    std::fs::write(
        &path,
        "# failed last time\npet-02\n\nide-03  # trailing comment\n",
    )
    .unwrap();
    assert_eq!(
        select_names(&inv, &format!("@{}", path.display())),
        ["ide-03", "pet-02"]
    );
    assert_eq!(
        select_names(&inv, &format!("@{}:!Pet", path.display())),
        ["ide-03"]
    );
    let e = Limit::parse("@/nonexistent/retry").unwrap_err().to_string();
    assert!(
        e.contains("cannot read host list /nonexistent/retry"),
        "{e}"
    );
}

#[test]
fn limit_matching_nothing_suggests_names() {
    let inv = load_fixture("example.yml");
    let limit = Limit::parse("ide-1").unwrap();
    let e = inv.select(Some(&limit)).unwrap_err().to_string();
    assert!(e.starts_with("no host matches --limit `ide-1`"), "{e}");
    assert!(e.contains("did you mean") && e.contains("`ide-01`"), "{e}");
    let limit = Limit::parse("IDE:&Stage").unwrap();
    assert!(inv.select(Some(&limit)).is_err());
    assert!(Limit::parse("").is_err());
    assert!(
        Limit::parse("IDE:")
            .unwrap_err()
            .to_string()
            .contains("empty term")
    );
    assert!(Limit::parse("ide-[").is_err());
}

#[test]
fn limit_keeps_ipv6_whole() {
    let inv = parse_str(
        "groups:\n  IDE:\n    hosts:\n      - { name: v6, ip: \"fd00::1\" }\n      - { name: v4, ip: 10.0.0.1 }\n",
        Path::new("v6.yml"),
    )
    .unwrap();
    assert_eq!(select_names(&inv, "fd00::1"), ["v6"]);
    assert_eq!(select_names(&inv, "fd00::1,v4"), ["v6", "v4"]);
}

// ---------------------------------------------------------------- round trip

#[test]
fn import_to_yaml_round_trips() {
    let path = fixture("server_list.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let imported = import_server_list(&text, &path).unwrap();
    let yaml = to_yaml(&imported);
    let back =
        parse_str(&yaml, Path::new("imported.yml")).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(host_set(&back), host_set(&imported));
    assert_eq!(group_names(&back), group_names(&imported));
    assert_eq!(names(&back.hosts), names(&imported.hosts));
}

#[test]
fn full_inventories_round_trip_through_yaml() {
    for f in ["example.yml", "ansible.yml", "ansible.ini"] {
        let inv = load_fixture(f);
        let yaml = to_yaml(&inv);
        let back =
            parse_str(&yaml, Path::new("out.yml")).unwrap_or_else(|e| panic!("{f}: {e}\n{yaml}"));
        assert_eq!(host_set(&back), host_set(&inv), "{f}");
        assert_eq!(group_names(&back), group_names(&inv), "{f}");
        assert_eq!(back.consul, inv.consul, "{f}");
        assert_eq!(back.stages.len(), inv.stages.len(), "{f}");
        for h in &inv.hosts {
            let b = back.host(&h.name).unwrap();
            assert_eq!(
                back.host_vars(b),
                inv.host_vars(h),
                "{f}: vars of {}",
                h.name
            );
        }
    }
}

#[test]
fn to_yaml_quotes_ambiguous_scalars() {
    let text = "vars: { flag: \"yes\", n: \"007\" }\ngroups:\n  \"123\":\n    hosts:\n      - { name: \"true\", ip: 10.0.0.1, vars: { s: \"a: b\" } }\n";
    let inv = parse_str(text, Path::new("q.yml")).unwrap();
    let back = parse_str(&to_yaml(&inv), Path::new("q2.yml")).unwrap();
    assert_eq!(back.hosts[0].name, "true");
    assert_eq!(back.hosts[0].group, "123");
    assert_eq!(back.vars["flag"], "yes");
    assert_eq!(back.hosts[0].vars["s"], "a: b");
}

const STAGED: &str = "groups:\n  IDE:\n    hosts:\n      - { name: ide-01, ip: 10.0.1.11 }\n      - { name: ide-02, ip: 10.0.1.12 }\nstages:\n";

#[test]
fn a_canary_stage_tolerates_no_failure_unless_it_says_so() {
    let inv = parse_str(
        &format!(
            "{STAGED}  - {{ name: canary, hosts: [ide-01] }}\n  - {{ name: first, hosts: [ide-02], canary: true }}\n  - {{ name: Canary, hosts: [IDE], max_fail_percentage: 50 }}\n  - {{ name: canary2, hosts: [IDE], canary: false }}\n"
        ),
        Path::new("inv.yml"),
    )
    .unwrap();
    let got: Vec<(bool, Option<f64>)> = inv
        .stages
        .iter()
        .map(|s| (s.is_canary(), s.effective_max_fail_percentage()))
        .collect();
    assert_eq!(
        got,
        [
            (true, Some(0.0)),
            (true, Some(0.0)),
            (true, Some(50.0)),
            (false, None)
        ]
    );
    // The canary key survives the round trip through the emitted YAML.
    let again = parse_str(&to_yaml(&inv), Path::new("again.yml")).unwrap();
    let key = |i: &Inventory| -> Vec<(String, Option<bool>, Option<f64>)> {
        i.stages
            .iter()
            .map(|s| (s.name.clone(), s.canary, s.max_fail_percentage))
            .collect()
    };
    assert_eq!(key(&again), key(&inv));
}

#[test]
fn stage_gates_parse_with_their_defaults_and_reject_nonsense() {
    let inv = parse_str(
        &format!(
            "{STAGED}  - {{ name: a, hosts: [ide-01], gate: true }}\n  - {{ name: b, hosts: [ide-02], gate: {{ scrapes: 3, no_alerts: false, timeout: 90s }} }}\n  - {{ name: c, hosts: [IDE], gate: false }}\n"
        ),
        Path::new("inv.yml"),
    )
    .unwrap();
    assert_eq!(inv.stages[0].gate, Some(GateSpec::default()));
    assert_eq!(
        inv.stages[1].gate,
        Some(GateSpec {
            scrapes: Some(3),
            no_alerts: Some(false),
            timeout: Some("90s".into()),
        })
    );
    assert_eq!(inv.stages[2].gate, None);
    let e = parse_err(
        &format!("{STAGED}  - {{ name: a, hosts: [IDE], gate: {{ scrape: 2 }} }}\n"),
        "inv.yml",
    );
    assert!(e.contains("did you mean `scrapes`?"), "{e}");
    let e = parse_err(
        &format!("{STAGED}  - {{ name: a, hosts: [IDE], gate: {{ timeout: soon }} }}\n"),
        "inv.yml",
    );
    assert!(e.contains("gate timeout `soon` is not a duration"), "{e}");
}

/// Write `files` (path, text) under a fresh temp dir.
fn layout(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn layout_refuses_promfleet_format_among_several_sources() {
    let dir = layout(&[
        ("a.ini", "[web]\nw1 ansible_host=10.0.0.1\n"),
        (
            "b.yml",
            "groups:\n  IDE:\n    hosts:\n      - { name: ide-01, ip: 10.0.1.11 }\n",
        ),
    ]);
    let err = load_sources(&[dir.path().join("a.ini"), dir.path().join("b.yml")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("b.yml"), "{err}");
    assert!(err.contains("only Ansible inventories"), "{err}");
    // Alone, the same file loads.
    let inv = load_sources(&[dir.path().join("b.yml")]).unwrap();
    assert_eq!(inv.hosts.len(), 1);
}

#[test]
fn layout_vars_file_that_is_no_mapping_names_its_file_and_line() {
    let dir = layout(&[
        ("hosts.ini", "[web]\nw1 ansible_host=10.0.0.1\n"),
        ("group_vars/web.yml", "# a comment\n- a list\n"),
    ]);
    let err = load(&dir.path().join("hosts.ini")).unwrap_err().to_string();
    assert!(err.contains("group_vars/web.yml:2:"), "{err}");
}

#[test]
fn layout_group_vars_reach_template_vars_and_consul_settings() {
    let dir = layout(&[
        (
            "hosts.ini",
            "[web]\nw1 ansible_host=10.0.0.1\n[web:vars]\ncadvisor_port=1\n[all:vars]\nconsul_agents=http://10.0.0.9:8500\n",
        ),
        ("group_vars/web/ports.yml", "cadvisor_port: 9105\n"),
        (
            "group_vars/all.yml",
            "consul_agents: [http://10.0.0.8:8500]\n",
        ),
    ]);
    let inv = load(&dir.path().join("hosts.ini")).unwrap();
    let vars = inv.host_vars(&inv.hosts[0]);
    assert_eq!(vars["cadvisor_port"], serde_json::json!(9105));
    assert!(!vars.contains_key("consul_agents"));
    assert_eq!(inv.consul.agents, vec!["http://10.0.0.8:8500".to_owned()]);
}

#[test]
fn layout_directory_loop_is_an_error_not_endless_recursion() {
    let dir = layout(&[("inv/a.ini", "[web]\nw1 ansible_host=10.0.0.1\n")]);
    let inv_dir = dir.path().join("inv");
    std::os::unix::fs::symlink(&inv_dir, inv_dir.join("again")).unwrap();
    let err = load_sources(&[inv_dir]).unwrap_err().to_string();
    assert!(err.contains("directory loop"), "{err}");
}

/// A resolver answering from a table; a name mapped to `None` never answers (until the test
/// ends); every lookup is counted.
/// A fake answer: `None` never answers.
type Answer = Option<Result<Vec<IpAddr>, String>>;

struct FakeResolver {
    table: std::collections::HashMap<&'static str, Answer>,
    calls: std::sync::Mutex<Vec<String>>,
    /// Lookups block until this many are in flight at once (proves they run in parallel).
    barrier: Option<std::sync::Barrier>,
}

impl Resolver for FakeResolver {
    fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        self.calls.lock().unwrap().push(name.to_owned());
        if let Some(b) = &self.barrier {
            b.wait();
        }
        match self.table.get(name) {
            Some(Some(answer)) => answer.clone(),
            Some(None) => loop {
                std::thread::park();
            },
            None => Err("Name or service not known".to_owned()),
        }
    }
}

fn fake(entries: &[(&'static str, Answer)], barrier: usize) -> std::sync::Arc<FakeResolver> {
    std::sync::Arc::new(FakeResolver {
        table: entries.iter().cloned().collect(),
        calls: Default::default(),
        barrier: (barrier > 0).then(|| std::sync::Barrier::new(barrier)),
    })
}

fn ips(list: &[&str]) -> Answer {
    Some(Ok(list.iter().map(|s| s.parse().unwrap()).collect()))
}

fn with(resolver: std::sync::Arc<FakeResolver>, timeout: std::time::Duration) -> Names {
    Names::Resolve { resolver, timeout }
}

#[test]
fn dns_names_are_resolved_once_in_parallel_and_ssh_keeps_the_name() {
    // Three distinct names: the lookups wait for each other at a barrier of 3, so the load
    // only finishes if all three run at once.
    let r = fake(
        &[
            ("db1.lan", ips(&["10.9.0.1", "fd00::1"])),
            ("web", ips(&["10.9.0.2"])),
            ("v6.lan", ips(&["fd00::3"])),
        ],
        3,
    );
    let text = "[db]\ndb1 ansible_host=db1.lan\n[web]\nweb ansible_user=u\n\
                [six]\nsix ansible_host=v6.lan\n[all:children]\ndb\n[again]\ndb1\n\
                [lit]\nlit ansible_host=10.9.0.9\n";
    let inv = parse_str_with(
        text,
        Path::new("r.ini"),
        &with(r.clone(), std::time::Duration::from_secs(60)),
    )
    .unwrap();
    let view: Vec<(String, String, Option<String>)> = inv
        .hosts
        .iter()
        .map(|h| (h.name.clone(), h.ip.to_string(), h.ssh.address.clone()))
        .collect();
    assert_eq!(
        view,
        [
            ("db1", "10.9.0.1", Some("db1.lan")),
            ("web", "10.9.0.2", Some("web")),
            ("six", "fd00::3", Some("v6.lan")),
            ("lit", "10.9.0.9", None),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.map(str::to_owned)))
    );
    let mut calls = r.calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(calls, ["db1.lan", "v6.lan", "web"], "one lookup per name");
    assert_eq!(
        inv.resolved_names.get("db1"),
        Some(&ResolvedName {
            name: "db1.lan".to_owned(),
            stand_in: false
        })
    );
    assert!(!inv.resolved_names.contains_key("lit"));
}

#[test]
fn unresolvable_name_names_host_and_line() {
    let r = fake(&[("ok.lan", ips(&["10.9.1.1"]))], 0);
    let text = "[g]\na ansible_host=ok.lan\nb ansible_user=x ansible_host=nosuch.lan\n";
    let e = parse_str_with(
        text,
        Path::new("u.ini"),
        &with(r, std::time::Duration::from_secs(60)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("u.ini:3:18:")
            && e.contains("host `b`: cannot resolve `nosuch.lan`: Name or service not known")
            && e.contains("--no-resolve"),
        "{e}"
    );
    // The inventory name itself, when there is no ansible_host.
    let r = fake(&[], 0);
    let e = parse_str_with(
        "[g]\nweb1\n",
        Path::new("n.ini"),
        &with(r, std::time::Duration::from_secs(60)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("n.ini:2:1:") && e.contains("host `web1`: cannot resolve `web1`"),
        "{e}"
    );
}

#[test]
fn a_name_that_does_not_answer_is_an_error_at_the_deadline() {
    let r = fake(&[("fast.lan", ips(&["10.9.2.1"])), ("hang.lan", None)], 0);
    let deadline = std::time::Duration::from_millis(300);
    let started = std::time::Instant::now();
    let text = "[g]\nf ansible_host=fast.lan\nh ansible_host=hang.lan\n";
    let e = parse_str_with(text, Path::new("t.ini"), &with(r, deadline))
        .unwrap_err()
        .to_string();
    // The bound is the deadline the test set, plus slack for a loaded machine.
    assert!(started.elapsed() < deadline + std::time::Duration::from_secs(10));
    assert!(
        e.starts_with("t.ini:3:") && e.contains("host `h`: `hang.lan` did not resolve within 0.3s"),
        "{e}"
    );
}

#[test]
fn two_names_for_one_address_are_a_duplicate_ip() {
    let r = fake(
        &[("a.lan", ips(&["10.9.3.1"])), ("b.lan", ips(&["10.9.3.1"]))],
        0,
    );
    let text = "[g]\na ansible_host=a.lan\nb ansible_host=b.lan\n";
    let e = parse_str_with(
        text,
        Path::new("d.ini"),
        &with(r, std::time::Duration::from_secs(60)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("duplicate ip 10.9.3.1 (resolved from `b.lan` and `a.lan`) for `b`"),
        "{e}"
    );
}

#[test]
fn no_resolve_gives_stand_ins_that_deploy_refuses() {
    let text = "[g]\nweb1\nweb2 ansible_host=web2.lan\nlit ansible_host=10.9.4.1\n";
    let inv = parse_str_with(text, Path::new("s.ini"), &Names::StandIn).unwrap();
    let ips: Vec<String> = inv.hosts.iter().map(|h| h.ip.to_string()).collect();
    assert_eq!(ips, ["240.0.0.1", "240.0.0.2", "10.9.4.1"]);
    assert!(inv.hosts[..2].iter().all(|h| !h.ip.is_loopback()
        && matches!(h.ip, IpAddr::V4(v4) if v4.octets()[0] >= 240)));
    let note = stand_in_note(&inv).unwrap();
    assert!(
        note.contains("2 host(s)") && note.contains("web2 (web2.lan) → 240.0.0.2"),
        "{note}"
    );
    let e = refuse_stand_ins(&inv).unwrap_err().to_string();
    assert!(
        e.starts_with("s.ini:2:1:") && e.contains("host `web1`"),
        "{e}"
    );
    let resolved = parse_str_with(
        "[g]\nlit ansible_host=10.9.4.1\n",
        Path::new("s.ini"),
        &Names::StandIn,
    )
    .unwrap();
    assert!(refuse_stand_ins(&resolved).is_ok() && stand_in_note(&resolved).is_none());
}

#[test]
fn real_localhost_resolves_as_getaddrinfo_answers() {
    // The one real lookup: `localhost` comes from /etc/hosts, no DNS traffic.
    let inv = parse_str_with(
        "[g]\napp ansible_host=localhost\n",
        Path::new("l.ini"),
        &Names::system(),
    )
    .unwrap();
    let want = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0))
        .unwrap()
        .next()
        .unwrap()
        .ip();
    assert_eq!(inv.hosts[0].ip, want);
    assert!(inv.hosts[0].ip.is_loopback());
    assert_eq!(inv.hosts[0].ssh.address.as_deref(), Some("localhost"));
}

#[test]
fn ssh_args_become_ssh_options_or_a_located_refusal() {
    let text = "[g]\na ansible_host=10.9.5.1 ansible_ssh_common_args='-o StrictHostKeyChecking=no -J b@bast'\n\
                [g:vars]\nansible_ssh_extra_args=-oport=2200\n";
    let inv = parse_str(text, Path::new("o.ini")).unwrap();
    let opts: Vec<(&str, &str)> = inv.hosts[0]
        .ssh
        .options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        opts,
        [
            ("StrictHostKeyChecking", "no"),
            ("ProxyJump", "b@bast"),
            ("Port", "2200")
        ]
    );
    assert!(!inv.hosts[0].vars.contains_key("ansible_ssh_common_args"));
    let e = parse_err(
        "[g]\na ansible_host=10.9.5.1\n[g:vars]\nansible_ssh_common_args='-o ProxyCommand=\"nc %h %p\"'\n",
        "p.ini",
    );
    assert!(
        e.starts_with("p.ini:4:")
            && e.contains("host `a`: ansible_ssh_common_args=")
            && e.contains("`-o ProxyCommand` is not supported")
            && e.contains("ProxyJump"),
        "{e}"
    );
}

#[test]
fn connection_local_is_refused_naming_host_line_and_fix() {
    let e = parse_err(
        "[g]\nbox ansible_host=10.9.6.1\nme ansible_connection=local\n",
        "c.ini",
    );
    assert!(
        e.starts_with("c.ini:3:4:")
            && e.contains("host `me`: ansible_connection=local")
            && e.contains("drop ansible_connection and give `me` an address sshd listens on"),
        "{e}"
    );
}

#[test]
fn ip_var_pins_the_address_of_a_name_without_a_lookup() {
    // No entries: any lookup would fail the load.
    let r = fake(&[], 0);
    let text = "[g]\nweb1 ip=10.9.7.1 ansible_host=web1\nweb2 ip=10.9.7.2\n";
    let inv = parse_str_with(
        text,
        Path::new("p.ini"),
        &with(r.clone(), std::time::Duration::from_secs(60)),
    )
    .unwrap();
    let view: Vec<(String, Option<String>)> = inv
        .hosts
        .iter()
        .map(|h| (h.ip.to_string(), h.ssh.address.clone()))
        .collect();
    assert_eq!(
        view,
        [
            ("10.9.7.1".to_owned(), Some("web1".to_owned())),
            ("10.9.7.2".to_owned(), None)
        ]
    );
    assert!(r.calls.lock().unwrap().is_empty());
    assert!(inv.resolved_names.is_empty());
}

/// Answers `n<i>` with 10.10.i/256.i%256 after `delay`.
struct SlowResolver {
    delay: std::time::Duration,
}

impl Resolver for SlowResolver {
    fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        std::thread::sleep(self.delay);
        let i: u32 = name
            .trim_start_matches('n')
            .parse()
            .map_err(|_| "bad".to_owned())?;
        Ok(vec![IpAddr::from([
            10,
            10,
            (i / 256) as u8,
            (i % 256) as u8,
        ])])
    }
}

#[test]
fn the_deadline_is_per_lookup_so_a_large_inventory_is_not_failed_by_its_size() {
    // 960 names on the 32-thread pool, 50 ms each: 30 rounds, 1.5 s in all — more than the
    // 1 s each lookup is allowed, far more than one lookup takes.
    let mut text = String::from("[g]\n");
    for i in 0..960 {
        text.push_str(&format!("n{i}\n"));
    }
    let names = Names::Resolve {
        resolver: std::sync::Arc::new(SlowResolver {
            delay: std::time::Duration::from_millis(50),
        }),
        timeout: std::time::Duration::from_secs(1),
    };
    let started = std::time::Instant::now();
    let inv = parse_str_with(&text, Path::new("big.ini"), &names).unwrap();
    assert!(started.elapsed() > std::time::Duration::from_secs(1));
    assert_eq!(inv.hosts.len(), 960);
    assert_eq!(inv.hosts[959].ip.to_string(), "10.10.3.191");
}
