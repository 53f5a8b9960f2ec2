//! Regression tests, each named after the defect it pins (ripgrep's `tests/regression.rs`):
//! every one failed on the code that had the defect.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::Rig;
use crate::support::*;

/// `promfleet deploy <book>` on the rig's fleet, JSON report.
fn deploy(rig: &Rig, book: &str, extra: &[&str]) -> Run {
    let mut r = Run::new(&["deploy", book])
        .arg("-i")
        .arg(&rig.inv)
        .arg("--known-hosts")
        .arg(rig.fleet.known_hosts())
        .arg("--state-dir")
        .arg(rig.state_dir())
        .arg("--output")
        .arg("json")
        .arg("--retries")
        .arg("1");
    for a in extra {
        r = r.arg(a);
    }
    r.cmd.env_remove("PROMFLEET_SECRETS");
    r
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Defect 1: `status` carried its own copy of the compose script and put the quoted
/// deploy_dir inside `echo "…"`, so `$(…)` in it ran on the host.
#[test]
fn status_never_runs_deploy_dir() {
    let Some(rig) = Rig::start(1, 1) else { return };
    let host = rig.fleet.hosts().next().expect("host").clone();
    let tag = std::process::id();
    let markers = [
        PathBuf::from(format!("/tmp/pwned-status-{tag}-1")),
        PathBuf::from(format!("/tmp/pwned-status-{tag}-2")),
    ];
    let dir = format!(
        "{}/x$(touch {})`touch {}`",
        host.dir.display(),
        markers[0].display(),
        markers[1].display()
    );
    let out = fleet_run(
        &["status"],
        &rig.inv,
        &rig.fleet,
        &[
            "--output",
            "json",
            "--retries",
            "1",
            "-e",
            &format!("deploy_dir={dir}"),
        ],
    );
    for m in &markers {
        let created = m.exists();
        let _ = std::fs::remove_file(m);
        assert!(
            !created,
            "{} was created: deploy_dir reached a shell\n{}",
            m.display(),
            stderr(&out)
        );
    }
    // The host is shown as not deployed at that (literal) directory.
    let r: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let text = r.to_string();
    assert!(text.contains("not deployed"), "{text}");
}

/// Defect 7: a secret with `"` or `\` leaked through template error messages, which show
/// values JSON-escaped.
#[test]
fn json_escaped_secret_is_masked() {
    let p = Project::new();
    p.template("t.txt", "{{ secret(name=\"tok\") | round }}\n");
    let book = p.playbook(
        "p.yml",
        "- name: p\n  hosts: fleet\n  tasks:\n    - name: t\n      template: { src: t.txt, dest: /tmp/never-written.txt, mode: \"0644\" }\n",
    );
    let inv = p.path("inventory.yml");
    std::fs::write(
        &inv,
        "ssh: { user: nobody, port: 1 }\ngroups:\n  IDE:\n    hosts:\n      - { name: h1, ip: 127.0.0.9 }\n",
    )
    .expect("inventory");
    for secret in ["quote\"d-s3cr3t-value", "back\\slash-s3cr3t-value"] {
        for mode in [&[][..], &["--output", "json"][..]] {
            let mut r = Run::new(&["deploy", &book])
                .arg("-i")
                .arg(&inv)
                .arg("--state-dir")
                .arg(p.path("state"))
                .arg("--known-hosts")
                .arg(p.path("known_hosts"))
                .env("PROMFLEET_SECRET_TOK", secret);
            for a in mode {
                r = r.arg(a);
            }
            let out = r.output();
            let all = format!("{}{}", stdout(&out), stderr(&out));
            assert_eq!(out.status.code(), Some(1), "{all}");
            assert!(all.contains("round"), "the template error is shown: {all}");
            assert!(
                !all.contains("s3cr3t"),
                "{mode:?}: the secret leaked:\n{all}"
            );
        }
    }
}

/// Defect 8: the generated Grafana password was stored only at the end of the run; a run
/// interrupted after the host got it left the next run to generate another one.
#[test]
fn generated_grafana_password_survives_interrupt() {
    let Some(rig) = Rig::start(1, 1) else { return };
    let host = rig.fleet.hosts().next().expect("host").clone();
    let p = Project::new();
    // The same secret call as templates/monitoring/grafana/config.monitoring.
    let real =
        std::fs::read_to_string(repo().join("templates/monitoring/grafana/config.monitoring"))
            .expect("grafana template");
    let call = "secret(name=\"grafana_admin_password\", generate=true)";
    assert!(real.contains(call), "the Grafana template changed: {real}");
    p.template(
        "gf.env",
        &format!("GF_SECURITY_ADMIN_PASSWORD={{{{ {call} }}}}\n"),
    );
    let task = "    - name: grafana environment\n      template: { src: gf.env, dest: \"{{ deploy_dir }}/config.monitoring\", mode: \"0600\", secret: true }\n";
    let slow = p.playbook(
        "slow.yml",
        &format!(
            "- name: p\n  hosts: fleet\n  tasks:\n{task}    - name: slow step\n      command: {{ cmd: \"sleep 60\" }}\n"
        ),
    );
    let env_file = host.deploy_dir().join("config.monitoring");
    let mut child = deploy(&rig, &slow, &[])
        .cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // The slow step's own 60 s is the bound: the file comes before it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Killed outright (as a lost terminal or a second Ctrl-C would): no end-of-run code runs.
    child.kill().expect("kill");
    let _ = child.wait();
    let first = std::fs::read_to_string(&env_file).expect("the host got the password");
    let stored = rig.state_dir().join("secrets.yml");
    let stored_text = std::fs::read_to_string(&stored).unwrap_or_default();
    #[cfg(unix)]
    if stored.exists() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&stored)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "secrets file mode");
    }
    let password = first
        .trim()
        .trim_start_matches("GF_SECURITY_ADMIN_PASSWORD=");
    assert!(
        password.len() >= 16 && stored_text.contains(password),
        "the password the host has is not stored in {}",
        stored.display()
    );
    // The next run reuses it: the host's file is unchanged.
    let again = p.playbook(
        "again.yml",
        &format!("- name: p\n  hosts: fleet\n  tasks:\n{task}"),
    );
    let out = deploy(&rig, &again, &[]).output();
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(r["hosts"][0]["status"], "ok", "{r:#}");
    assert_eq!(std::fs::read_to_string(&env_file).expect("env file"), first);
}

/// Defect 10: `render` wrote outside `--out` for `-e deploy_dir=/../../../../srv/x`.
#[test]
fn render_stays_inside_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path().join("out").join("a").join("b");
    let escape = tmp.path().join("escaped");
    // Enough `..` to leave out/<host>/ and reach the temp dir.
    let deploy_dir = format!("/../../../../../{}", escape.display());
    let render = |extra: &[&str]| -> Output {
        let mut r = Run::new(&["render", "playbooks/exporters.yml", "-i"])
            .arg(repo().join("inventory/example.yml"))
            .arg("--out")
            .arg(&out_dir);
        for a in extra {
            r = r.arg(a);
        }
        r.output()
    };
    let out = render(&["-e", &format!("deploy_dir={deploy_dir}")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        files_under(tmp.path()).is_empty(),
        "files written: {:?}",
        files_under(tmp.path())
    );
    for what in ["ide-01", "docker-compose.yml", "deploy_dir", "--out"] {
        assert!(err.contains(what), "error lacks {what:?}: {err}");
    }

    // A symlink inside --out pointing out of it is not followed.
    let out = render(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let host_dir = out_dir.join("ide-01");
    let link_at = files_under(&host_dir)
        .into_iter()
        .find(|f| f.ends_with("docker-compose.yml"))
        .expect("rendered compose file")
        .parent()
        .expect("dir")
        .to_path_buf();
    std::fs::remove_dir_all(&link_at).expect("rm");
    std::fs::create_dir_all(&escape).expect("mkdir");
    std::os::unix::fs::symlink(&escape, &link_at).expect("symlink");
    let out = render(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
    assert!(
        files_under(&escape).is_empty(),
        "written through the symlink: {:?}",
        files_under(&escape)
    );
}

/// Defect 11 (first half): `--check` on a host never deployed failed ("project dir … does
/// not exist") and evaluated nothing after that.
#[test]
fn check_on_fresh_host_reports_would_create() {
    let Some(rig) = Rig::start(1, 1) else { return };
    let host = rig.fleet.hosts().next().expect("host").clone();
    let before = files_under(&host.dir);
    let kh = std::fs::read(rig.fleet.known_hosts()).unwrap_or_default();
    let (out, _) = rig.run(&["--check"]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{}\n{r:#}", stderr(&out));
    let h = &r["hosts"][0];
    assert_eq!(h["status"], "changed", "{h:#}");
    let detail = |task: &str| -> String {
        h["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .find(|t| t["task"] == task)
            .unwrap_or_else(|| panic!("task {task} reported: {h:#}"))["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        detail("exporter compose file").contains("would write"),
        "{h:#}"
    );
    assert!(detail("exporters up").contains("would run up -d"), "{h:#}");
    // The rest of the play is evaluated, not cut short.
    let tasks = h["tasks"].as_array().expect("tasks");
    assert!(
        tasks
            .iter()
            .any(|t| t["task"] == "register cadvisor in Consul"),
        "{h:#}"
    );
    // Nothing written anywhere: the host, the state dir, known_hosts, Consul.
    assert_eq!(files_under(&host.dir), before, "files appeared on the host");
    assert!(!host.deploy_dir().exists());
    assert!(
        files_under(&rig.state_dir()).is_empty(),
        "{:?}",
        files_under(&rig.state_dir())
    );
    assert_eq!(
        std::fs::read(rig.fleet.known_hosts()).unwrap_or_default(),
        kh
    );
}

/// Defect 11 (second half): `--check --accept-new-host-keys` recorded unknown host keys.
/// In `--check` the host is reported (unreachable, "host key … is not known"), not recorded.
#[test]
fn check_never_writes_known_hosts() {
    let Some(rig) = Rig::start(1, 1) else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let kh = tmp.path().join("known_hosts");
    std::fs::write(&kh, "").expect("known_hosts");
    let run = |extra: &[&str]| -> Output {
        let mut r = Run::new(&["exporters", "--playbook"])
            .arg(&rig.book)
            .arg("-i")
            .arg(&rig.inv)
            .arg("--known-hosts")
            .arg(&kh)
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .arg("--output")
            .arg("json")
            .arg("--retries")
            .arg("1")
            .arg("--accept-new-host-keys");
        for a in extra {
            r = r.arg(a);
        }
        r.output()
    };
    // ~/.ssh/config may ask for recording too (`accept-new`, `no`): not in --check either.
    for strict in ["accept-new", "no"] {
        let cfg = tmp.path().join(format!("ssh_config-{strict}"));
        std::fs::write(&cfg, format!("Host *\n  StrictHostKeyChecking {strict}\n"))
            .expect("ssh config");
        let out = run(&["--check", "--ssh-config", cfg.to_str().expect("utf8")]);
        assert_eq!(
            std::fs::read_to_string(&kh).expect("known_hosts"),
            "",
            "--check with StrictHostKeyChecking {strict} recorded a host key\n{}",
            stderr(&out)
        );
    }
    let out = run(&["--check"]);
    let err = stderr(&out);
    assert_eq!(
        std::fs::read_to_string(&kh).expect("known_hosts"),
        "",
        "--check recorded a host key\n{err}"
    );
    let r = report(&out);
    let h = &r["hosts"][0];
    assert_eq!(h["status"], "unreachable", "{h:#}");
    assert!(
        h["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not known"),
        "{h:#}"
    );
    assert!(err.contains("--check records no host keys"), "{err}");
    assert_eq!(out.status.code(), Some(4), "{err}");
    // The same flags without --check do record it (the test would pass vacuously otherwise).
    let out = run(&[]);
    assert!(
        !std::fs::read_to_string(&kh)
            .expect("known_hosts")
            .is_empty(),
        "a real run records the key: {}",
        stderr(&out)
    );
}
