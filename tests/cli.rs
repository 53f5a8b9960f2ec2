//! The promfleet binary: `inventory list|import` on every inventory format, bad inventories
//! rejected with `file:line:col` and a hint before any connection, and `exec` on a real-sshd
//! fleet with its exit codes (0 ok, 2 a command failed, 4 unreachable, 130 interrupted).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

use testkit::sshd::{Fleet, KeyKind};

use crate::support::*;

/// Host names (first column) of `inventory list` output.
fn listed(out: &str) -> BTreeSet<String> {
    out.lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(o));
    stdout(o)
}

#[test]
fn inventory_list_shows_every_host_with_its_group() {
    let out = ok(&Run::new(&["inventory", "list", "-i", "inventory/example.yml"]).output());
    let want = [
        ("ide-01", "IDE"),
        ("ide-02", "IDE"),
        ("ide-03", "IDE"),
        ("stage-01", "Stage"),
        ("stage-02", "Stage"),
        ("pet-01", "Pet"),
        ("pet-02", "Pet"),
        ("mon-01", "monitoring"),
    ];
    for (host, group) in want {
        assert!(
            out.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&host) && f.get(2) == Some(&group)
            }),
            "{host} in {group}:\n{out}"
        );
    }
    assert_eq!(listed(&out).len(), want.len(), "{out}");
    assert!(
        out.contains("admin@ide-02.lan:2222"),
        "per-host ssh overrides:\n{out}"
    );

    let out = ok(&Run::new(&[
        "inventory",
        "list",
        "-i",
        "inventory/example.yml",
        "--limit",
        "IDE:!ide-02",
    ])
    .output());
    assert_eq!(listed(&out), set(&["ide-01", "ide-03"]), "{out}");
}

#[test]
fn ansible_inventories_list() {
    for f in [
        "inventory/ansible-example.ini",
        "inventory/ansible-example.yml",
    ] {
        let out = ok(&Run::new(&["inventory", "list", "-i", f, "--json"]).output());
        let rows: serde_json::Value = serde_json::from_str(&out).expect("json");
        let got: BTreeSet<(String, String)> = rows
            .as_array()
            .expect("array")
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap_or_default().to_string(),
                    r["group"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        for (h, g) in [
            ("ide-01", "IDE"),
            ("ide-02", "IDE"),
            ("stage-01", "Stage"),
            ("pet-01", "Pet"),
            ("mon-01", "monitoring"),
        ] {
            assert!(
                got.contains(&(h.into(), g.into())),
                "{f}: {h} in {g}: {got:?}"
            );
        }
    }
}

#[test]
fn imported_server_list_parses_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = dir.path().join("fleet.yml");
    let src = "inventory/server_list.example.txt";
    let o = Run::new(&["inventory", "import", src, "-o"])
        .arg(&written)
        .output();
    ok(&o);
    let relisted = ok(&Run::new(&["inventory", "list", "-i"])
        .arg(&written)
        .output());
    let direct = ok(&Run::new(&["inventory", "list", "-i", src]).output());
    assert_eq!(
        relisted, direct,
        "import → list must equal listing the source"
    );
    assert_eq!(listed(&relisted).len(), 8, "{relisted}");
    // To stdout, as a complete file (ends with a newline: `> file` then appending works).
    let printed = ok(&Run::new(&["inventory", "import", src]).output());
    assert_eq!(printed, std::fs::read_to_string(&written).expect("written"));
    assert!(printed.ends_with('\n'), "{printed:?}");
}

/// A TCP listener that counts connections: the "host" every bad inventory points at.
struct Tripwire {
    listener: TcpListener,
}

impl Tripwire {
    fn new() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        Tripwire { listener }
    }
    fn port(&self) -> u16 {
        self.listener.local_addr().expect("addr").port()
    }
    fn touched(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

#[test]
fn bad_inventories_fail_with_location_and_hint_before_connecting() {
    let wire = Tripwire::new();
    let p = wire.port();
    let dir = tempfile::tempdir().expect("tempdir");
    let ssh = format!("ssh: {{ port: {p}, user: nobody }}\n");
    // (file name, content, line:col, hint)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "malformed.yml",
            format!("{ssh}groups:\n  IDE:\n    hosts:\n      - {{ name: a, ip: 127.0.0.1\n"),
            ":5:",
            "invalid YAML",
        ),
        (
            "dup_host.yml",
            format!(
                "{ssh}groups:\n  IDE:\n    hosts:\n      - {{ name: a, ip: 127.0.0.1 }}\n  Pet:\n    hosts:\n      - {{ name: a, ip: 127.0.0.2 }}\n"
            ),
            ":8:9:",
            "hostnames must be unique",
        ),
        (
            "dup_ip.yml",
            format!(
                "{ssh}groups:\n  IDE:\n    hosts:\n      - {{ name: a, ip: 127.0.0.1 }}\n      - {{ name: b, ip: 127.0.0.1 }}\n"
            ),
            ":6:",
            "each host needs its own address",
        ),
        (
            "bad_ip.yml",
            format!(
                "{ssh}groups:\n  IDE:\n    hosts:\n      - {{ name: a, ip: 127.0.0.1 }}\n      - {{ name: b, ip: 127.0.0.300 }}\n"
            ),
            ":6:",
            "not a valid IP address",
        ),
        (
            "connection_local.yml",
            format!(
                "all:\n  vars: {{ ansible_port: {p} }}\n  hosts:\n    lonely: {{ ansible_host: 127.0.0.1, ansible_connection: local }}\n  children:\n    IDE:\n      hosts:\n        a: {{ ansible_host: 127.0.0.2 }}\n"
            ),
            ":4:",
            "ansible_connection=local",
        ),
        (
            "unknown_key.yml",
            format!("{ssh}groups:\n  IDE:\n    hots:\n      - {{ name: a, ip: 127.0.0.1 }}\n"),
            ":4:5:",
            "did you mean `hosts`?",
        ),
    ];
    for (name, text, pos, hint) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("write");
        let o = Run::new(&[
            "exec",
            "--known-hosts",
            "/dev/null",
            "--connect-timeout",
            "2",
        ])
        .arg("-i")
        .arg(&file)
        .args(&["--", "true"])
        .output();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        let loc = format!("{}{pos}", file.display());
        assert!(err.contains(&loc), "{name}: want {loc} in:\n{err}");
        assert!(err.contains(hint), "{name}: want hint {hint:?} in:\n{err}");
        assert!(stdout(&o).is_empty(), "{name}: {}", stdout(&o));
        assert!(
            !wire.touched(),
            "{name}: promfleet connected despite the bad inventory"
        );
    }
    // The checked-in fixtures too (10.0.x.x: only listed, never contacted).
    for (f, hint) in [
        ("bad_duplicate_host.yml", "duplicate hostname `ide-01`"),
        ("bad_ip.yml", "`10.0.1.300` is not a valid IP address"),
        ("bad_unknown_key.yml", "did you mean `hosts`?"),
        ("bad_stage_group.yml", "did you mean `IDE`?"),
        ("bad_server_list.txt", "missing group"),
    ] {
        let path = format!("tests/fixtures/inventory/{f}");
        let o = Run::new(&["inventory", "list", "-i", &path]).output();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{f}: {err}");
        let has_pos = err.split_whitespace().any(|w| {
            w.strip_prefix(&format!("{path}:")).is_some_and(|r| {
                let n: Vec<&str> = r.trim_end_matches(':').split(':').collect();
                n.len() == 2 && n.iter().all(|x| x.parse::<u32>().is_ok())
            })
        });
        assert!(has_pos, "{f}: no {path}:line:col in:\n{err}");
        assert!(err.contains(hint), "{f}: {err}");
    }
}

/// `hostNNN | …` block heads of `exec`'s text output.
fn heads(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with("host") && l.contains(" | "))
        .collect()
}

#[test]
fn exec_on_fifty_hosts() {
    if !require_root() {
        return;
    }
    let fleet = Fleet::builder()
        .hosts(50)
        .shared_sshd(true)
        .start()
        .expect("fleet");
    let inv = fleet.root().join("inventory.yml");
    fleet.write_inventory(&inv).expect("inventory");
    let o = fleet_run(&["exec"], &inv, &fleet, &["--", "hostname; id -un"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(&o));
    let hs = heads(&out);
    assert_eq!(hs.len(), 50, "{out}");
    assert!(hs.iter().all(|h| h.ends_with("| CHANGED | rc=0")), "{hs:?}");
    let names: BTreeSet<&str> = hs.iter().filter_map(|h| h.split(' ').next()).collect();
    assert_eq!(names.len(), 50);
    assert_eq!(
        out.lines().filter(|l| *l == fleet.user()).count(),
        50,
        "id -un on every host:\n{out}"
    );
    assert!(stderr(&o).contains("50 host(s): 50 ok"), "{}", stderr(&o));

    // One host's command fails (hosts share this machine: pick it by its address).
    let bad = fleet.host("host017").expect("host").ip;
    let cmd = format!("set -- $SSH_CONNECTION; test \"$3\" != {bad} || exit 9");
    let o = fleet_run(&["exec"], &inv, &fleet, &["--", &cmd]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{}", stderr(&o));
    let failed: Vec<&str> = heads(&out)
        .into_iter()
        .filter(|h| !h.ends_with("rc=0"))
        .collect();
    assert_eq!(failed, vec!["host017 | FAILED | rc=9"], "{out}");
    assert!(
        stderr(&o).contains("50 host(s): 49 ok, 1 failed, 0 unreachable"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn exec_with_a_stopped_host_is_unreachable_and_others_ok() {
    if !require_root() {
        return;
    }
    let fleet = Fleet::builder().hosts(4).start().expect("fleet");
    let inv = fleet.root().join("inventory.yml");
    fleet.write_inventory(&inv).expect("inventory");
    fleet.stop("host002").expect("stop");
    let started = std::time::Instant::now();
    let o = fleet_run(
        &["exec"],
        &inv,
        &fleet,
        &["--retries", "2", "--", "echo hi"],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(4), "{out}\n{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(20));
    let hs = heads(&out);
    assert_eq!(hs.len(), 4, "{out}");
    for h in &hs {
        if h.starts_with("host002") {
            assert!(
                h.contains("UNREACHABLE") && h.contains("cannot connect"),
                "{h}"
            );
        } else {
            assert!(h.ends_with("| CHANGED | rc=0"), "{h}");
        }
    }
    assert!(
        stderr(&o).contains("4 host(s): 3 ok, 0 failed, 1 unreachable"),
        "{}",
        stderr(&o)
    );
}

/// The passphrase of an encrypted key comes from PROMFLEET_SSH_PASSPHRASE (set only for the
/// child process: the environment is process-global and tests run in parallel).
#[test]
fn exec_with_encrypted_key_from_env_passphrase() {
    if !require_root() {
        return;
    }
    let fleet = Fleet::builder().hosts(1).start().expect("fleet");
    let key = fleet
        .make_client_key("id_locked", KeyKind::Ed25519, "open sesame", true)
        .expect("key");
    let inv = fleet.root().join("inventory.yml");
    fleet.inventory().key(&key).write(&inv).expect("inventory");
    let run = |pass: Option<&str>| {
        let mut r = Run::new(&["exec", "-i"])
            .arg(&inv)
            .arg("--known-hosts")
            .arg(fleet.known_hosts())
            .args(&["--retries", "1", "--", "id -un"]);
        if let Some(p) = pass {
            r = r.env("PROMFLEET_SSH_PASSPHRASE", p);
        }
        r.cmd.stdin(std::process::Stdio::null());
        r.output()
    };
    let o = run(Some("open sesame"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("\n{}\n", fleet.user())),
        "{}",
        stdout(&o)
    );
    let o = run(None);
    assert_ne!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("PROMFLEET_SSH_PASSPHRASE"), "{out}");
    assert!(out.contains(&key.display().to_string()), "{out}");
}

/// `exec` fans out through the one scheduler: a Ctrl-C starts no new host, lets the commands
/// in flight finish and print, and exits 130 with the hosts not run counted. The commands
/// wait for the test's go, so which hosts were in flight is known, not timed.
#[test]
fn exec_ctrl_c_starts_no_new_host_and_finishes_those_in_flight() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root() {
        return;
    }
    let fleet = Fleet::builder()
        .hosts(6)
        .shared_sshd(true)
        .start()
        .expect("fleet");
    let inv = fleet.root().join("inventory.yml");
    fleet.write_inventory(&inv).expect("inventory");
    let gate = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(gate.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let dir = gate.path().display().to_string();
    let cmd = format!(
        "touch {dir}/started.$$; while [ ! -e {dir}/go ]; do sleep 0.1; done; echo finished"
    );
    let started = || {
        std::fs::read_dir(&dir)
            .expect("gate dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("started."))
            .count()
    };
    let run = Run::new(&["exec"])
        .on_fleet(&inv, &fleet)
        .arg("--forks")
        .arg("2")
        .arg("--")
        .arg(&cmd);
    let mut w = Watched::spawn(run.cmd);
    // Both forks busy (the limit set here): the next host waits for one of them.
    let limit = std::time::Instant::now() + Duration::from_secs(60);
    while started() < 2 {
        assert!(
            std::time::Instant::now() < limit,
            "the first two hosts never started:\n{}",
            w.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    w.signal(libc::SIGINT);
    assert!(
        w.wait_for("interrupted", Duration::from_secs(30)),
        "no notice of the interrupt:\n{}",
        w.text()
    );
    std::fs::write(gate.path().join("go"), "").expect("go");
    let (out, _) = w.finish(Duration::from_secs(60));
    let ctx = format!("stdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(130), "{ctx}");
    let text = stdout(&out);
    let hs = heads(&text);
    assert_eq!(hs.len(), 2, "only the hosts in flight report: {ctx}");
    assert!(hs.iter().all(|h| h.ends_with("| CHANGED | rc=0")), "{ctx}");
    assert_eq!(text.matches("finished").count(), 2, "{ctx}");
    assert_eq!(started(), 2, "a host started after the Ctrl-C: {ctx}");
    assert!(
        stderr(&out).contains("6 host(s): 2 ok, 0 failed, 0 unreachable, 4 not run (interrupted)"),
        "{ctx}"
    );
}
