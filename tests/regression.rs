//! Regression tests, each named after the defect it pins (ripgrep's `tests/regression.rs`):
//! every one failed on the code that had the defect.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use promfleet::transport::Upload;

use serde_json::Value;

use testkit::agent::SshAgent;
use testkit::consul_double::{ConsulDouble, DoubleOptions};
use testkit::sshd::{Fleet, KeyKind};

use crate::support::ssh::{connect, fleet, mode, no_temp_files, opts, target};
use crate::support::*;

/// Peak RSS allowed to one promfleet process, whatever a peer sends (issue 12).
const RSS_LIMIT_KIB: u64 = 200 * 1024;

/// Run `cmd` to the end and return its output and its own peak RSS in KiB.
///
/// The command is forked by a small Python process, which reports `wait4`'s `ru_maxrss` of
/// exactly that child. Forking it from this test binary instead would not measure it: Linux
/// records the forked copy's high-water mark at exec, so the child's `ru_maxrss` starts at this
/// (large, multi-threaded) test process's peak — two tests once both read 336504 KiB, the
/// test binary's own peak.
fn run_measured(cmd: Command) -> (Output, u64) {
    const WRAP: &str = r#"
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(ru.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"#;
    let rss_file = tempfile::NamedTempFile::new().expect("rss file");
    let mut wrapped = Command::new("python3");
    wrapped
        .arg("-c")
        .arg(WRAP)
        .arg(rss_file.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let out = wrapped.output().expect("spawn promfleet through python3");
    let rss: u64 = std::fs::read_to_string(rss_file.path())
        .expect("rss")
        .trim()
        .parse()
        .expect("rss number");
    eprintln!("peak RSS of {cmd:?}: {rss} KiB");
    (out, rss)
}

// ---------------------------------------------------------------------------------------------
// Bounded resources

/// Defect 2: `exec -- 'yes AAAA…'` grew to 3 GiB in 30 s; output is now kept as head and tail.
#[test]
fn exec_output_is_bounded() {
    let Some(fleet) = fleet(1) else { return };
    let inv = write(fleet.root(), "inventory.yml", &fleet.inventory().yaml());
    let exec = |cmd: &str, timeout: &str| {
        let r = Run::new(&["exec", "-i"])
            .arg(&inv)
            .arg("--known-hosts")
            .arg(fleet.known_hosts())
            .arg("--command-timeout")
            .arg(timeout)
            .arg("--")
            .arg(cmd);
        run_measured(r.cmd)
    };
    // A fixed 512 MiB, so the bound is proven whatever the machine's speed: all of it passes
    // through promfleet, which keeps 64 KiB of each end.
    let total: u64 = 512 * 1024 * 1024;
    let (out, rss) = exec(
        &format!("yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA | head -c {total}"),
        "300",
    );
    let text = stdout(&out);
    let ctx = format!("stderr:\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let elided = total - 2 * 64 * 1024;
    assert!(
        text.contains(&format!("\n… {elided} bytes elided\n")),
        "no elision marker in {} bytes of output\n{ctx}",
        text.len()
    );
    assert!(text.len() < 200 * 1024, "{} bytes printed", text.len());
    assert!(
        rss < RSS_LIMIT_KIB,
        "peak RSS {rss} KiB for 512 MiB of output"
    );

    // The issue's form: `yes` without end, stopped by a short --command-timeout.
    let (out, rss) = exec("yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "3");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("timed out after 3s"),
        "{}",
        stdout(&out)
    );
    assert!(rss < RSS_LIMIT_KIB, "peak RSS {rss} KiB");
}

/// An HTTP server on 127.0.0.1 that answers every request with `total` bytes of valid
/// exposition text, streamed (never allocated), without Content-Length.
fn endless_metrics(total: u64) -> TcpStandin {
    TcpStandin::start("127.0.0.1:0", move |mut c| {
        let mut req = [0u8; 4096];
        let _ = c.read(&mut req);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nConnection: close\r\n\r\n";
        if c.write_all(head.as_bytes()).is_err() {
            return;
        }
        let chunk = "node_big_metric 1\n".repeat(4096);
        let mut sent = 0u64;
        while sent < total {
            if c.write_all(chunk.as_bytes()).is_err() {
                return;
            }
            sent += chunk.len() as u64;
        }
    })
}

/// Defect 3: a 1 GiB `/metrics` body was read whole (1.6 GiB RSS per host).
#[test]
fn metrics_body_is_capped() {
    let server = endless_metrics(1024 * 1024 * 1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = write(
        dir.path(),
        "inventory.yml",
        "ssh: { user: nobody, port: 1 }\nvars: { metrics_timeout: 3 }\ngroups:\n  IDE:\n    hosts:\n      - { name: a1, ip: 127.0.0.1 }\n",
    );
    let book = write(
        dir.path(),
        "book.yml",
        &format!(
            "- name: scrape\n  hosts: fleet\n  tasks:\n    - name: huge page\n      metrics_check:\n        port: {}\n        timeout: \"{{{{ metrics_timeout }}}}\"\n        max_bytes: \"{{{{ metrics_max_bytes }}}}\"\n",
            server.port
        ),
    );
    let r = Run::new(&["deploy"])
        .arg(&book)
        .arg("-i")
        .arg(&inv)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--known-hosts")
        .arg(dir.path().join("known_hosts"))
        .arg("--retries")
        .arg("1")
        .arg("--output")
        .arg("json");
    let (out, rss) = run_measured(r.cmd);
    let ctx = format!("stderr:\n{}", stderr(&out));
    let rep = report(&out);
    let h = &rep["hosts"][0];
    assert_eq!(h["status"], "failed", "{h:#}\n{ctx}");
    let err = h["error"].as_str().unwrap_or_default();
    let url = format!("http://127.0.0.1:{}/metrics", server.port);
    assert!(
        err.contains(&url) && err.contains("larger than the 16 MiB cap"),
        "{err}"
    );
    assert!(
        err.contains("metrics_max_bytes"),
        "names the setting: {err}"
    );
    // Over the cap is final: not fetched again until the deadline, not retried.
    assert_eq!(h["tasks"][0]["attempts"], 1, "{h:#}");
    assert_eq!(out.status.code(), Some(2), "{ctx}");
    assert!(rss < RSS_LIMIT_KIB, "peak RSS {rss} KiB for a 1 GiB page");
}

// ---------------------------------------------------------------------------------------------
// Honest timeouts

/// Defect 4: a command timeout counted as unreachable and was retried (a slow `compose up`
/// ran three times, overlapping). It is now a failure and the command runs once.
#[test]
fn command_timeout_is_failed_not_retried() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.host("host001").expect("host").clone();
    let log = h.dir.join("runs.log");
    let inv = write(fleet.root(), "inventory.yml", &fleet.inventory().yaml());
    let book = write(
        fleet.root(),
        "slow.yml",
        &format!(
            "- name: slow\n  hosts: fleet\n  tasks:\n    - name: slow step\n      shell: \"echo run >> {}; sleep 60\"\n",
            log.display()
        ),
    );
    let out = fleet_run(
        &["deploy", book.to_str().expect("utf8")],
        &inv,
        &fleet,
        // 5 s is the command's time to start and append its line; it then sleeps past it.
        &[
            "--command-timeout",
            "5",
            "--retries",
            "3",
            "--output",
            "json",
        ],
    );
    let ctx = format!("stderr:\n{}", stderr(&out));
    let runs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        runs,
        "run\n",
        "the command ran {} times",
        runs.lines().count()
    );
    let rep = report(&out);
    let host = &rep["hosts"][0];
    assert_eq!(host["status"], "failed", "{host:#}\n{ctx}");
    let err = host["error"].as_str().unwrap_or_default();
    assert!(err.contains("timed out after 5s"), "{err}");
    assert_eq!(host["tasks"][0]["attempts"], 1, "{host:#}");
    let recap = stderr(&out);
    assert!(
        recap.contains("unreachable=0") && recap.contains("failed=1"),
        "{recap}"
    );
    assert!(recap.contains("FAILED host001"), "{recap}");
    assert_eq!(out.status.code(), Some(2), "{ctx}");
}

/// What happens to the remote command when its timeout passes (defect 4's "say what happens
/// to the remote process"): promfleet sends SIGTERM through the SSH "signal" request — sshd
/// (OpenSSH 9.2) delivers it with killpg to the session's process group — and closes the
/// channel. Without that, OpenSSH leaves a no-pty command running after the channel closes.
#[tokio::test(flavor = "multi_thread")]
async fn command_timeout_stops_the_remote_command() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.host("host001").expect("host").clone();
    for become_root in [false, true] {
        let mut t = target(&fleet, "host001");
        t.become_root = become_root;
        let mut o = opts(&fleet);
        o.command_timeout = Duration::from_secs(1);
        let s = connect(&t, &o).await;
        let marker = h.dir.join(format!("survived-{become_root}"));
        // A child of the shell, in the session's process group, as `compose up`'s are.
        let cmd = format!("sleep 3 && touch {}", marker.display());
        let e = s.exec(&cmd, None).await.expect_err("timeout");
        assert!(e.to_string().contains("timed out after 1s"), "{e}");
        // Wait past the command's own end (3 s from its start) with margin.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !marker.exists(),
            "become={become_root}: the command kept running after its timeout"
        );
        s.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Safe backups

/// A root-owned file outside the sandbox, as an attacker's symlink target.
fn root_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, "root secret\n").expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    p
}

/// Defect 5: `.prev` went through a fixed `<dest>.prev.tmp`; a planted symlink there made
/// promfleet (under become) overwrite a root-owned file.
#[tokio::test(flavor = "multi_thread")]
async fn prev_backup_never_follows_symlinks() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.host("host001").expect("host").clone();
    let outside = tempfile::tempdir().expect("tempdir");
    let victim_tmp = root_file(outside.path(), "victim-tmp");
    let victim_prev = root_file(outside.path(), "victim-prev");
    let dest = h.dir.join("app.yml");
    std::os::unix::fs::symlink(&victim_tmp, h.dir.join("app.yml.prev.tmp")).expect("plant");
    std::os::unix::fs::symlink(&victim_prev, h.dir.join("app.yml.prev")).expect("plant");
    let mut t = target(&fleet, "host001");
    t.become_root = true;
    let s = connect(&t, &opts(&fleet)).await;
    let d = dest.to_str().expect("utf8");
    for v in ["version: 1\n", "version: 2\n", "version: 3\n"] {
        let up = s.upload(d, Bytes::from(v), 0o644).await.expect("upload");
        assert_eq!(up, Upload::Changed);
    }
    s.close().await;
    assert_eq!(
        std::fs::read_to_string(&victim_tmp).expect("read"),
        "root secret\n"
    );
    assert_eq!(
        std::fs::read_to_string(&victim_prev).expect("read"),
        "root secret\n"
    );
    assert_eq!(
        std::fs::read_to_string(&dest).expect("dest"),
        "version: 3\n"
    );
    let prev = h.dir.join("app.yml.prev");
    assert!(!prev.is_symlink(), "the planted .prev symlink was replaced");
    assert_eq!(
        std::fs::read_to_string(&prev).expect("prev"),
        "version: 2\n"
    );
}

/// Defect 6: the `.prev` of a secret kept the old mode (0644, with the old token in it). It
/// gets the owner of the file being installed and the stricter of the two modes.
#[tokio::test(flavor = "multi_thread")]
async fn prev_of_secret_keeps_secret_mode() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.host("host001").expect("host").clone();
    let mut t = target(&fleet, "host001");
    t.become_root = true;
    let s = connect(&t, &opts(&fleet)).await;
    let dest = h.dir.join("token.env");
    let d = dest.to_str().expect("utf8");
    s.upload_owned(d, Bytes::from_static(b"TOKEN=old\n"), 0o644, Some("root"))
        .await
        .expect("v1");
    let user = fleet.user().to_string();
    s.upload_owned(d, Bytes::from_static(b"TOKEN=new\n"), 0o600, Some(&user))
        .await
        .expect("v2");
    let prev = h.dir.join("token.env.prev");
    assert_eq!(std::fs::read_to_string(&prev).expect("prev"), "TOKEN=old\n");
    assert_eq!(
        mode(&prev),
        0o600,
        "the old token is as protected as the new one"
    );
    let meta = std::fs::metadata(&prev).expect("stat");
    assert_eq!(meta.uid(), fleet.user_uid(), "owner of the installed file");
    assert_eq!(mode(&dest), 0o600);
    // Loosening the file does not loosen the copy of the old secret.
    s.upload(d, Bytes::from_static(b"TOKEN=none\n"), 0o644)
        .await
        .expect("v3");
    assert_eq!(std::fs::read_to_string(&prev).expect("prev"), "TOKEN=new\n");
    assert_eq!(mode(&prev), 0o600);
    assert_eq!(mode(&dest), 0o644);
    s.close().await;
    no_temp_files(&h.dir);
}

/// Defect 5 (second half): concurrent writers to one path failed with `mv: cannot stat`.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_to_one_path_never_fail() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.host("host001").expect("host").clone();
    let s = connect(&target(&fleet, "host001"), &opts(&fleet)).await;
    let dest = h.dir.join("shared.yml");
    let d = dest.to_str().expect("utf8");
    let version = |i: usize| Bytes::from(format!("writer: {i}\n{}\n", "x".repeat(64 * 1024)));
    for round in 0..3 {
        let all = futures::future::join_all((0..8).map(|i| s.upload(d, version(i), 0o644))).await;
        for (i, r) in all.into_iter().enumerate() {
            r.unwrap_or_else(|e| panic!("round {round}, writer {i}: {e}"));
        }
        let got = Bytes::from(std::fs::read(&dest).expect("dest"));
        assert!(
            (0..8).any(|i| got == version(i)),
            "round {round}: the file is not one whole version ({} bytes)",
            got.len()
        );
        no_temp_files(&h.dir);
    }
    s.close().await;
}

/// An upload onto an existing directory moved the new file *into* it (`mv` into a directory)
/// and reported "changed", leaving a stray `.promfleet.*` file there. It is a clear failure
/// with nothing created, for a directory and for a symlink to one.
#[tokio::test(flavor = "multi_thread")]
async fn upload_onto_a_directory_fails_cleanly() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.host("host001").expect("host").clone();
    let s = connect(&target(&fleet, "host001"), &opts(&fleet)).await;
    let conf = h.dir.join("conf.d");
    std::fs::create_dir(&conf).expect("mkdir");
    std::fs::write(conf.join("keep.yml"), "keep\n").expect("write");
    // The login user's own directory: `mv` can write into it (the defect's condition).
    std::os::unix::fs::chown(&conf, Some(fleet.user_uid()), None).expect("chown");
    let link = h.dir.join("conf-link");
    std::os::unix::fs::symlink(&conf, &link).expect("symlink");
    for dest in [&conf, &link] {
        let d = dest.to_str().expect("utf8");
        let e = s
            .upload(d, Bytes::from_static(b"new\n"), 0o644)
            .await
            .expect_err("a directory is not replaced by a file");
        assert!(
            e.to_string().contains(&format!("{d} is a directory")),
            "{e}"
        );
    }
    s.close().await;
    let mut inside: Vec<_> = std::fs::read_dir(&conf)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    inside.sort();
    assert_eq!(
        inside,
        ["keep.yml"],
        "files added inside {}",
        conf.display()
    );
    assert!(link.is_symlink());
    no_temp_files(&h.dir);
}

/// `promfleet deploy <book>` on the rig's fleet, JSON report.
fn deploy(rig: &Rig, book: &str, extra: &[&str]) -> Run {
    let mut r = Run::new(&["deploy", book])
        .on_fleet(&rig.inv, &rig.fleet)
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

/// Issue 12 made a command timeout a failure (`CommandTimeout`), but `status` still labelled a
/// timed-out status script "lost", as if the connection had dropped.
#[test]
fn status_script_timeout_is_labelled_timed_out_not_lost() {
    let Some(rig) = Rig::start(1, 1) else { return };
    let host = rig.fleet.hosts().next().expect("host").clone();
    // `compose ps` (the status script's container probe) outlives the timeout below.
    let wrapper = rig.fleet.root().join("bin").join("compose-slow-ps");
    let real = rig.fleet.compose_command().display().to_string();
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\ncase \" $* \" in *\" ps \"*) sleep 60;; esac\nexec {real} \"$@\"\n"),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let w = wrapper.display().to_string();
    rig.write_inventory(&[(&host.name, &|l: String| l.replace(&real, &w))]);
    let out = fleet_run(
        &["status"],
        &rig.inv,
        &rig.fleet,
        &[
            "--output",
            "json",
            "--retries",
            "1",
            "--command-timeout",
            "2",
            "-e",
            &format!("deploy_dir={}", host.dir.display()),
        ],
    );
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}\n{}", stderr(&out)));
    let ssh = &r["hosts"][0]["checks"]["ssh"];
    assert_eq!(ssh["summary"], "timed out after 2s", "{r:#}");
    assert!(
        ssh["detail"]
            .as_str()
            .is_some_and(|d| d.contains("--command-timeout")),
        "{r:#}"
    );
    assert_eq!(
        r["hosts"][0]["checks"]["containers"]["detail"], "not checked: status script timed out",
        "{r:#}"
    );
}

/// Every output of a `deploy` that fails on a template error showing the secret `tok`
/// (set to `secret`), in text and JSON modes: (mode, stdout + stderr), exit 1 checked.
fn template_error_outputs(secret: &str) -> Vec<(&'static [&'static str], String)> {
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
    let modes: [&'static [&'static str]; 2] = [&[], &["--output", "json"]];
    modes
        .into_iter()
        .map(|mode| {
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
            (mode, all)
        })
        .collect()
}

/// Defect 7: a secret with `"` or `\` leaked through template error messages, which show
/// values JSON-escaped.
#[test]
fn json_escaped_secret_is_masked() {
    for secret in ["quote\"d-s3cr3t-value", "back\\slash-s3cr3t-value"] {
        for (mode, all) in template_error_outputs(secret) {
            assert!(
                !all.contains("s3cr3t"),
                "{mode:?}: the secret leaked:\n{all}"
            );
        }
    }
}

/// Defect: the masker skipped values shorter than 4 characters, so a short secret (a
/// 3-character sudo password, a 1-character token) was printed in clear — here through the
/// same template error message as `json_escaped_secret_is_masked`, in text and JSON modes.
#[test]
fn short_secret_was_not_masked() {
    for secret in ["Q7z", "Zx"] {
        for (mode, all) in template_error_outputs(secret) {
            assert!(all.contains("********"), "nothing was masked: {all}");
            assert!(
                !all.contains(secret),
                "{mode:?}: the {}-character secret leaked:\n{all}",
                secret.len()
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

/// How long the hanging `compose up` of [`hang_up_on`] sleeps: every bound on "promfleet
/// did not wait for it" is derived from it.
const HANG: Duration = Duration::from_secs(120);

/// Make `compose up` hang on one host (a wrapper around the stand-in that sleeps [`HANG`]
/// after touching a marker); returns the marker's path.
fn hang_up_on(rig: &Rig, host: &str) -> PathBuf {
    let h = rig.fleet.host(host).expect("host");
    let marker = h.dir.join("up-started");
    let wrapper = rig.fleet.root().join("bin").join("compose-hang");
    let real = rig.fleet.compose_command().display().to_string();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" up \"*) touch {m}; sleep {s};; esac\nexec {real} \"$@\"\n",
            m = marker.display(),
            s = HANG.as_secs()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let w = wrapper.display().to_string();
    rig.write_inventory(&[(host, &|l: String| l.replace(&real, &w))]);
    marker
}

fn state(rig: &Rig) -> Value {
    let text = std::fs::read_to_string(rig.state_dir().join("last-run.json"))
        .unwrap_or_else(|e| panic!("last-run.json: {e}"));
    serde_json::from_str(&text).expect("state is JSON")
}

/// Issue 12 defect 9: Ctrl-C during `--pause` waited the pause out.
#[test]
fn ctrl_c_interrupts_pause_at_once() {
    let Some(rig) = Rig::start(4, 1) else { return };
    let yaml = std::fs::read_to_string(&rig.inv).expect("inventory");
    std::fs::write(
        &rig.inv,
        format!("{yaml}\nstages:\n  - {{ name: first, hosts: [IDE] }}\n  - {{ name: second, hosts: [Stage] }}\n"),
    )
    .expect("inventory");
    let pause = Duration::from_secs(300);
    let mut run = Watched::spawn(rig.command(&["--pause", &format!("{}s", pause.as_secs())]));
    assert!(
        run.wait_for("pausing", Duration::from_secs(120)),
        "never paused:\n{}",
        run.text()
    );
    run.signal(libc::SIGINT);
    // Far below the pause: waiting it out fails here.
    let (out, took) = run.finish(pause / 5);
    let ctx = stderr(&out);
    assert!(took < pause / 5, "{ctx}");
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::Interrupted as i32),
        "{ctx}"
    );
    assert_eq!(state(&rig)["interrupted"], true);
    let retry = rig.retry_list();
    for h in rig.fleet.hosts() {
        let second = h.group == "Stage";
        assert_eq!(
            retry.contains(&h.name),
            second,
            "{} ({}) in the retry file: {retry:?}\n{ctx}",
            h.name,
            h.group
        );
        assert_eq!(
            h.deploy_dir().join("docker-compose.yml").exists(),
            !second,
            "{}: a stage after the interrupted pause ran\n{ctx}",
            h.name
        );
    }
}

/// Issue 12 defect 9: a second Ctrl-C exited without writing the state or retry file.
#[test]
fn second_ctrl_c_still_writes_retry_file() {
    let Some(rig) = Rig::start(2, 1) else { return };
    let hung = "host002";
    let marker = hang_up_on(&rig, hung);
    let mut run = Watched::spawn(rig.command(&[]));
    assert!(
        wait_for_file(&marker, Duration::from_secs(120)),
        "compose up never started on {hung}:\n{}",
        run.text()
    );
    run.signal(libc::SIGINT);
    assert!(
        run.wait_for("interrupted:", HANG / 4),
        "first signal not seen:\n{}",
        run.text()
    );
    run.signal(libc::SIGINT);
    // Far below the hung step: waiting for it fails here.
    let (out, took) = run.finish(HANG / 4);
    let ctx = stderr(&out);
    assert!(took < HANG / 4, "{ctx}");
    eprintln!("exited {took:?} after the second signal");
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::Interrupted as i32),
        "{ctx}"
    );
    assert!(
        rig.retry_list().iter().any(|h| h == hung),
        "{hung} not in the retry file: {:?}\n{ctx}",
        rig.retry_list()
    );
    let st = state(&rig);
    assert_eq!(st["hosts"][hung], "not_run", "{ctx}");
    // The compose file written before the abandoned step is recorded for `rollback`.
    let files = st["changes"][hung]["files"].to_string();
    assert!(files.contains("docker-compose.yml"), "{st:#}");
    let r = report(&out);
    let h = r["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["host"] == hung)
        .expect("hung host");
    assert_eq!(h["status"], "not_run", "{h:#}");
    let err = h["error"].as_str().unwrap_or_default();
    assert!(err.contains("aborted during `exporters up`"), "{err}");
}

/// Issue 12 defect 12: two runs on one state directory could lose each other's updates; the
/// second is refused and told which run holds the directory.
#[test]
fn state_dir_is_locked_per_run() {
    let Some(rig) = Rig::start(2, 1) else { return };
    let marker = hang_up_on(&rig, "host002");
    let mut first = Watched::spawn(rig.command(&[]));
    assert!(
        wait_for_file(&marker, Duration::from_secs(120)),
        "compose up never started:\n{}",
        first.text()
    );
    // Without the lock the second run deploys too and hangs in the same `compose up`.
    let (out, _) = Watched::spawn(rig.command(&[])).finish(HANG / 4);
    let ctx = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::Error as i32),
        "{ctx}"
    );
    assert!(ctx.contains("is in use by another promfleet run"), "{ctx}");
    assert!(
        ctx.contains(&format!("pid {}", first.child.id())) && ctx.contains("command "),
        "names the holder: {ctx}"
    );
    assert!(
        !ctx.contains("--known-hosts"),
        "only the subcommand: the rest of a command line may hold secrets: {ctx}"
    );
    first.signal(libc::SIGINT);
    assert!(first.wait_for("interrupted:", HANG / 4), "{}", first.text());
    first.signal(libc::SIGINT);
    let (out, _) = first.finish(HANG / 4);
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::Interrupted as i32)
    );
}

/// Issue 12 defect 12: state files went through a fixed `<name>.tmp`; anything at that path
/// (a directory, a symlink, another run's half-written file) broke or corrupted the state.
#[test]
fn state_files_are_written_through_a_unique_temp_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("last-run.tmp")).expect("squatter");
    let run = promfleet::report::RunReport::default();
    promfleet::report::RunState::record(dir.path(), &run, "inv.yml", &[], &Default::default())
        .expect("state written despite a squatted fixed temp name");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["last-run.json", "last-run.tmp"],
        "no temp file left"
    );
}

/// An ssh-agent with more keys than sshd's MaxAuthTries made the server disconnect ("Too many
/// authentication failures"); promfleet took that for a dropped handshake and retried it 10
/// times: 10 failed logins per host in the server's log, a fail2ban ban for the jump host.
#[test]
fn max_auth_tries_disconnect_was_retried_ten_times() {
    if !require_root() {
        return;
    }
    let fleet = Fleet::builder().hosts(1).start().expect("fleet");
    let sshd = OwnSshd::replace(&fleet, "host001", &["MaxAuthTries 6", "LogLevel VERBOSE"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = SshAgent::start(dir.path()).expect("ssh-agent");
    for i in 0..7 {
        let k = fleet
            .make_client_key(&format!("stranger{i}"), KeyKind::Ed25519, "", false)
            .expect("key");
        agent.add(&k).expect("ssh-add");
    }
    let ip = fleet.host("host001").expect("host").ip;
    let inv = dir.path().join("inventory.yml");
    std::fs::write(
        &inv,
        format!(
            "groups:\n  IDE:\n    hosts:\n      - {{ name: h, ip: {ip}, ssh: {{ user: {}, port: {} }} }}\n",
            fleet.user(),
            fleet.port()
        ),
    )
    .expect("inventory");
    // The log so far holds the readiness probe's connection.
    let mark = sshd.log_text().len();
    let out = Command::new(bin())
        .args([
            "exec",
            "--json",
            "--ssh-config",
            "/dev/null",
            "--retry-delay-ms",
            "10",
            "-i",
        ])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .args(["--", "true"])
        .env("SSH_AUTH_SOCK", agent.socket())
        .output()
        .expect("promfleet exec");
    let line: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap_or_default())
            .expect("json line");
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Too many authentication failures") && error.contains("IdentitiesOnly yes"),
        "{line}"
    );
    // sshd writes a closed session's last lines just after the client is gone.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = sshd.log_text().split_off(mark);
    let logins = log
        .lines()
        .filter(|l| l.contains("Connection from "))
        .count();
    assert_eq!(logins, 1, "one login attempt, never retried:\n{log}");
}

/// Issue 18: `render` from a directory without `playbooks/` printed "rendered 0 file(s) for 8
/// host(s)" and exited 0. Now the built-in playbooks render, and a render that writes no
/// file at all (a playbook without template or copy tasks) is an error.
#[test]
fn render_never_succeeds_with_nothing_rendered() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = repo().join("inventory/example.yml");
    let inv = inv.to_str().expect("utf8");
    let render = |extra: &[&str]| {
        Command::new(bin())
            .current_dir(dir.path())
            .env_remove("PROMFLEET_PROJECT")
            .args(["render", "-i", inv, "--out", "out"])
            .args(extra)
            .output()
            .expect("run")
    };
    let o = render(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The count said is the count written, and it is not zero.
    let said: usize = stderr(&o)
        .split("rendered ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", stderr(&o)));
    let mut written = 0;
    let mut stack = vec![dir.path().join("out")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                written += 1;
            }
        }
    }
    assert!(said > 0 && said == written, "said {said}, wrote {written}");
    let o = render(&["verify.yml"]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing rendered"), "{}", stderr(&o));
}

/// A ProxyJump channel the bastion would not open was `TransportError::Remote`, so a host
/// behind a bastion that could not reach it counted as *failed* (issue 14). It is
/// unreachable; transient when the bastion could not connect, permanent when it refuses to
/// forward at all.
#[tokio::test(flavor = "multi_thread")]
async fn proxyjump_channel_refused_counted_as_failed() {
    use promfleet::modules::ErrorKind;
    use promfleet::transport::{Session, TransportError};
    let Some(fleet) = fleet(3) else { return };
    let o = opts(&fleet);
    let _forwards = OwnSshd::replace(&fleet, "host001", &["AllowTcpForwarding yes"]);
    let _refuses = OwnSshd::replace(&fleet, "host003", &["AllowTcpForwarding no"]);
    let via = |bastion: &str, port: u16| {
        let mut t = target(&fleet, "host002");
        t.port = port;
        t.jump = Some(Box::new(target(&fleet, bastion)));
        t
    };
    // Nothing listens on port 1 behind the bastion: it cannot connect.
    let closed = Session::connect(&via("host001", 1), &o)
        .await
        .err()
        .expect("a closed port");
    assert!(
        matches!(
            closed,
            TransportError::Jump {
                transient: true,
                ..
            }
        ),
        "{closed:?}"
    );
    assert_eq!(ErrorKind::from(&closed), ErrorKind::Unreachable, "{closed}");
    let forbidden = Session::connect(&via("host003", fleet.port()), &o)
        .await
        .err()
        .expect("forwarding refused");
    assert!(
        matches!(
            forbidden,
            TransportError::Jump {
                transient: false,
                ..
            }
        ),
        "{forbidden:?}"
    );
    assert_eq!(
        ErrorKind::from(&forbidden),
        ErrorKind::Unreachable,
        "{forbidden}"
    );
}

/// A promfleet run with the Consul token given only as `consul_token` in the `--secrets` file.
fn with_token_only_in(secrets: &Path, r: Run) -> Run {
    r.arg("--secrets").arg(secrets).without_settings_env()
}

/// Issue 13: the Consul token was read from the environment only, so a `consul_token` in the
/// `--secrets` file was never sent: under ACL default-deny, deploy could not register and
/// `status` and `consul prune` were refused.
#[test]
fn consul_token_in_secrets_file_was_never_sent() {
    if !require_root() {
        return;
    }
    const TOKEN: &str = "acl-token-from-secrets-file";
    let double = Double::start_with(DoubleOptions {
        acl_token: Some(TOKEN.to_owned()),
        ..DoubleOptions::default()
    });
    let consul = &double.d;
    let fleet = Fleet::builder()
        .hosts(1)
        .groups(&["IDE"])
        .fake_node_exporter(true)
        .consul_agents([consul.url()])
        .start()
        .expect("fleet");
    let inv = fleet.root().join("inventory.yml");
    std::fs::write(&inv, fleet.inventory().var("metrics_timeout", 3).yaml()).expect("inventory");
    let secrets = secret_file(
        fleet.root(),
        "secrets.yml",
        &format!("consul_token: \"{TOKEN}\"\n"),
    );

    // Every request after `since` that is not a status probe carried the token.
    let all_carry_token = |what: &str| {
        let reqs = consul.requests();
        assert!(!reqs.is_empty(), "{what} sent nothing to Consul");
        for r in reqs.iter().filter(|r| !r.path.starts_with("/v1/status/")) {
            assert_eq!(
                r.token.as_deref(),
                Some(TOKEN),
                "{what}: {} {}",
                r.method,
                r.path
            );
        }
        consul.clear_requests();
    };

    let run = with_token_only_in(
        &secrets,
        Run::new(&["deploy", "playbooks/exporters.yml"])
            .on_fleet(&inv, &fleet)
            .arg("--retries")
            .arg("1"),
    )
    .output();
    assert!(run.status.success(), "deploy failed:\n{}", stderr(&run));
    assert!(!consul.services().is_empty(), "nothing registered");
    assert!(!stdout(&run).contains(TOKEN) && !stderr(&run).contains(TOKEN));
    all_carry_token("deploy");

    let run = with_token_only_in(
        &secrets,
        Run::new(&["status", "--scope", "fleet"]).on_fleet(&inv, &fleet),
    )
    .output();
    assert!(!stdout(&run).contains(TOKEN) && !stderr(&run).contains(TOKEN));
    all_carry_token("status");

    // A promfleet service of a host that left the inventory: prune must see and remove it.
    consul
        .register_direct(serde_json::json!({
            "ID": "node-exporter-gone", "Name": "node-exporter", "Address": "127.0.0.9",
            "Port": 9100, "Meta": {"managed_by": "promfleet", "hostname": "gone"}
        }))
        .expect("register stale");
    let run =
        with_token_only_in(&secrets, Run::new(&["consul", "prune"]).arg("-i").arg(&inv)).output();
    assert!(run.status.success(), "prune failed:\n{}", stderr(&run));
    assert!(
        consul
            .services()
            .iter()
            .all(|s| s.id != "node-exporter-gone"),
        "stale service not pruned:\n{}",
        stdout(&run)
    );
    all_carry_token("consul prune");
}

/// Issue 13: the rendered `prometheus.yml` carried Consul credentials only when
/// `PROMFLEET_SECRET_CONSUL_TOKEN` was set: a token given any other way (here: the secrets
/// file) left `consul_sd_configs` without credentials and the token file unrendered, so under
/// ACL default-deny Prometheus discovered nothing.
#[test]
fn prometheus_consul_sd_had_no_token() {
    if !have("promtool") {
        println!("SKIPPED: promtool not installed");
        return;
    }
    // The token is resolved from this process's environment first.
    for k in [
        "CONSUL_HTTP_TOKEN",
        "CONSUL_HTTP_TOKEN_FILE",
        "PROMFLEET_SECRET_CONSUL_TOKEN",
    ] {
        if std::env::var_os(k).is_some() {
            println!("SKIPPED: {k} is set in the test environment");
            return;
        }
    }
    const TOKEN: &str = "acl-token-for-prometheus-sd";
    let dir = tempfile::tempdir().expect("tmp");
    let mut secrets = format!("consul_token: \"{TOKEN}\"\ngrafana_admin_password: pw\n");
    for g in ["ide", "stage", "pet"] {
        secrets.push_str(&format!(
            "dingtalk_token_{g}: t-{g}\ndingtalk_secret_{g}: s-{g}\n"
        ));
    }
    let secrets = secret_file(dir.path(), "secrets.yml", &secrets);
    let planned = plan_of(
        "monitoring.yml",
        &repo().join("inventory/example.yml"),
        Some(&secrets),
        &dir.path().join("state"),
        &[],
    );
    let files = planned_files(&planned);
    let file = |suffix: &str| {
        files
            .iter()
            .find(|f| f.dest.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} rendered"))
    };
    let token = file("/prometheus/consul_token");
    assert_eq!(String::from_utf8_lossy(&token.content).trim(), TOKEN);
    assert_eq!(token.mode, 0o600);
    assert!(token.secret);
    assert_eq!(token.owner.as_deref(), Some("65534:65534"));
    let prom = file("/prometheus/prometheus.yml");
    let text = String::from_utf8_lossy(&prom.content);
    assert!(!text.contains(TOKEN), "token inlined:\n{text}");
    // Each consul_sd_configs entry reads the token file.
    let entries = text.matches("- server: ").count();
    assert!(entries > 0, "{text}");
    assert_eq!(
        text.matches("credentials_file: consul_token").count(),
        entries,
        "{text}"
    );
    // The real Prometheus accepts it, with the token file beside it as deployed (Debian's
    // promtool has no Consul SD: the entries are checked as http_sd with the same client).
    let out = dir.path().join("prometheus");
    std::fs::create_dir_all(out.join("rules")).expect("mkdir");
    for f in &files {
        if let Some(rel) = f.dest.split("/prometheus/").nth(1) {
            std::fs::write(out.join(rel), &f.content).expect("write");
        }
    }
    let o = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(http_sd_checkable(&out.join("prometheus.yml")))
        .output()
        .expect("promtool");
    assert!(
        o.status.success(),
        "promtool refused:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// Issue 13: `CONSUL_HTTP_TOKEN_FILE` (Consul's own way to give the token) was ignored. The
/// token is the first set of `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`, the
/// `consul_token` secret; each row gives the right token at one level and wrong ones below.
#[tokio::test(flavor = "multi_thread")]
async fn consul_http_token_file_was_ignored() {
    const TOKEN: &str = "acl-token-precedence";
    let consul = ConsulDouble::start_with(DoubleOptions {
        acl_token: Some(TOKEN.to_owned()),
        ..DoubleOptions::default()
    })
    .await
    .expect("consul double");
    let dir = tempfile::tempdir().expect("tmp");
    let inv = write(
        dir.path(),
        "inventory.yml",
        &format!(
            "consul:\n  agents: [{}]\ngroups:\n  IDE:\n    hosts:\n      - {{ name: h1, ip: 10.0.1.11 }}\n",
            consul.url()
        ),
    );
    let right_file = write(dir.path(), "right", &format!("{TOKEN}\n"));
    let wrong_file = write(dir.path(), "wrong", "wrong-file-token\n");
    let secrets = secret_file(
        dir.path(),
        "secrets.yml",
        "consul_token: wrong-secret-token\n",
    );
    let (right_file, wrong_file) = (
        right_file.to_str().expect("utf8"),
        wrong_file.to_str().expect("utf8"),
    );
    let rows: &[&[(&str, &str)]] = &[
        &[
            ("CONSUL_HTTP_TOKEN", TOKEN),
            ("CONSUL_HTTP_TOKEN_FILE", wrong_file),
        ],
        &[("CONSUL_HTTP_TOKEN_FILE", right_file)],
    ];
    for env in rows {
        consul.clear_requests();
        let mut r = with_token_only_in(
            &secrets,
            Run::new(&["consul", "prune", "--check"])
                .arg("-i")
                .arg(&inv),
        );
        for (k, v) in *env {
            r = r.env(k, v);
        }
        let out = tokio::task::spawn_blocking(move || r.output())
            .await
            .expect("join");
        assert!(out.status.success(), "{env:?}: {}", stderr(&out));
        let reqs = consul.requests();
        assert!(!reqs.is_empty(), "{env:?}: nothing sent");
        assert!(
            reqs.iter().all(|q| q.token.as_deref() == Some(TOKEN)),
            "{env:?}: {reqs:?}"
        );
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!text.contains(TOKEN), "{env:?}: token shown: {text}");
    }
}

/// Issue 13: an agent URL without a port was used as is by the clients (port 80) but rendered
/// as `host:8500` for Prometheus. One parse now gives both the same port, Consul's 8500.
#[tokio::test(flavor = "multi_thread")]
async fn agent_url_without_port_registered_on_80() {
    // A loopback address of its own, so port 8500 is free whatever else runs.
    let ip = "127.0.113.85";
    let consul = match ConsulDouble::start(format!("{ip}:8500").parse().expect("addr")).await {
        Ok(c) => c,
        Err(e) => {
            println!("SKIPPED: cannot listen on {ip}:8500 ({e})");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tmp");
    let inv = write(
        dir.path(),
        "inventory.yml",
        &format!(
            "consul:\n  agents: [http://{ip}]\ngroups:\n  IDE:\n    hosts:\n      - {{ name: h1, ip: 10.0.1.11 }}\n\
             monitoring:\n  hosts:\n    - {{ name: mon-01, ip: 10.0.0.178 }}\n"
        ),
    );
    let mut r = Run::new(&["consul", "prune", "--check"])
        .arg("-i")
        .arg(&inv);
    r.cmd.env_remove("PROMFLEET_SECRETS");
    let out = tokio::task::spawn_blocking(move || r.output())
        .await
        .expect("join");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !consul.requests().is_empty(),
        "prune did not reach {ip}:8500"
    );

    let rendered = dir.path().join("out");
    let mut r = Run::new(&["render", "monitoring.yml", "-i"])
        .arg(&inv)
        .arg("--out")
        .arg(&rendered);
    r.cmd.env_remove("PROMFLEET_SECRETS");
    let out = tokio::task::spawn_blocking(move || r.output())
        .await
        .expect("join");
    assert!(out.status.success(), "{}", stderr(&out));
    let prom = files_under(&rendered.join("mon-01"))
        .into_iter()
        .find(|p| p.ends_with("prometheus/prometheus.yml"))
        .expect("prometheus.yml rendered");
    let text = std::fs::read_to_string(&prom).expect("read");
    assert!(
        text.contains(&format!("server: \"{ip}:8500\"")),
        "discovery not on the registration port:\n{text}"
    );
}

/// A TCP listener on 127.0.0.1 that accepts every connection and never answers (a hung
/// Consul agent): it reads what it is sent until the client gives up.
fn hung_agent() -> TcpStandin {
    TcpStandin::start("127.0.0.1:0", |mut c| {
        let _ = std::io::copy(&mut c, &mut std::io::sink());
    })
}

/// Issue 13: a hung agent was not remembered as down: every registration (and every waiter
/// on that agent's service list) waited the full timeout on it before failing over, so a run
/// took one timeout per host. Now the first timeout marks it down for the run. The hosts run
/// one at a time (`--forks 1`), so each would ask the hung agent anew if it were not
/// remembered: the proof is how many connections it got, not how long the run took (which
/// depends on the machine's load).
#[test]
fn hung_consul_agent_cost_every_registration_a_timeout() {
    if !require_root() {
        return;
    }
    const HOSTS: usize = 6;
    let double = Double::start();
    let live = &double.d;
    let hung = hung_agent();
    let fleet = Fleet::builder()
        .hosts(HOSTS)
        .groups(&["IDE"])
        .fake_node_exporter(true)
        .consul_agents([format!("http://127.0.0.1:{}", hung.port), live.url()])
        .start()
        .expect("fleet");
    let inv = fleet.root().join("inventory.yml");
    std::fs::write(&inv, fleet.inventory().var("metrics_timeout", 3).yaml()).expect("inventory");
    let mut r = Run::new(&["deploy", "playbooks/exporters.yml"])
        .on_fleet(&inv, &fleet)
        .arg("--retries")
        .arg("1")
        .arg("--forks")
        .arg("1")
        .arg("--output")
        .arg("json");
    r.cmd.env_remove("PROMFLEET_SECRETS");
    let out = r.output();
    assert!(out.status.success(), "{}", stderr(&out));
    // Every host's two services, each on the live agent.
    assert_eq!(live.services().len(), 2 * HOSTS, "{}", stderr(&out));
    // The first host's requests find it hung (its two services may be asked at once); every
    // later one skips it. Not remembered, each of the HOSTS hosts connects again.
    let asked = hung.accepted();
    assert!(
        (1..=2).contains(&asked),
        "the hung agent was asked {asked} times for {HOSTS} hosts\n{}",
        stderr(&out)
    );
}

/// Issue 14: SIGTERM or Ctrl-C while deploy (or rollback) was still planning — before the
/// executor installed its signal listener — got the default action and killed promfleet where
/// it stood (no exit code, no message). The listener now comes first: the run ends as
/// interrupted, nothing started, no run state written. Planning is held inside by a secrets
/// file that is a FIFO (its read blocks until the test writes it), so the signal surely lands
/// there; no host is ever contacted.
#[test]
fn sigterm_during_planning_killed_deploy() {
    for (sig, cmd) in [
        (libc::SIGTERM, "deploy"),
        (libc::SIGINT, "exporters"),
        (libc::SIGTERM, "rollback"),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let inv = dir.path().join("inv.yml");
        std::fs::write(
            &inv,
            "groups:\n  IDE:\n    hosts:\n      - { name: a, ip: 127.0.0.1 }\n",
        )
        .expect("inventory");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        // Rollback needs a recorded run to get as far as planning.
        if cmd == "rollback" {
            std::fs::write(
                state.join("last-run.json"),
                r#"{"finished_at": "2026-01-01T00:00:00Z", "inventory": "inv.yml", "playbooks": ["playbooks/exporters.yml"], "hosts": {"a": "changed"}, "failed": [], "halted": null, "interrupted": false, "changes": {"a": {"at": "2026-01-01T00:00:00Z", "files": ["/x"], "playbooks": ["playbooks/exporters.yml"]}}}"#,
            )
            .expect("state");
        }
        let before = std::fs::read(state.join("last-run.json")).ok();
        let fifo = dir.path().join("secrets.yml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo(3) on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let mut run = Run::new(&[cmd, "-i"])
            .arg(&inv)
            .arg("--state-dir")
            .arg(&state);
        match cmd {
            "deploy" => run = run.arg("exporters.yml"),
            "rollback" => run = run.arg("--limit").arg("a"),
            _ => {}
        }
        let mut run = Watched::spawn(run.arg("--secrets").arg(&fifo).cmd);
        // The state lock is taken before planning starts; the signal comes after it.
        assert!(
            wait_for_file(&state.join("lock"), Duration::from_secs(60)),
            "{cmd}: never took the state lock:\n{}",
            run.text()
        );
        run.signal(sig);
        let seen = run.wait_for("interrupted", Duration::from_secs(60));
        // Let planning go on (opening the FIFO for writing waits for the reader: promfleet
        // is, or was killed, so a thread does it).
        let f = fifo.clone();
        let writer = std::thread::spawn(move || {
            let _ = std::fs::write(f, "");
        });
        if !seen {
            // Killed by the signal: unblock the writer by reading the FIFO ourselves.
            let _ = std::fs::read(&fifo);
        }
        let _ = writer.join();
        let (out, _) = run.finish(Duration::from_secs(120));
        let ctx = format!("{cmd} on signal {sig}:\n{}", stderr(&out));
        assert!(seen, "the signal was not taken as an interrupt\n{ctx}");
        assert_eq!(
            out.status.code(),
            Some(promfleet::report::ExitCode::Interrupted as i32),
            "{ctx}"
        );
        assert!(
            stderr(&out).contains("nothing was changed, no run state written"),
            "{ctx}"
        );
        assert_eq!(
            std::fs::read(state.join("last-run.json")).ok(),
            before,
            "the run state changed\n{ctx}"
        );
        assert!(!state.join("retry").exists(), "{ctx}");
    }
}

/// `-e KEY=false` was the string "false", which a template's `{% if KEY %}` takes as true:
/// `-e cadvisor_privileged=false` still rendered cAdvisor privileged (and `-e consul_acl=false`
/// would have turned ACLs on). Each row plans exporters.yml for the example inventory with the
/// variable given on the command line and reads the compose file the plan writes.
#[test]
fn extra_var_false_turned_a_boolean_setting_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = repo().join("inventory/example.yml");
    for (value, privileged) in [("false", false), ("true", true), ("False", false)] {
        let planned = plan_of(
            "exporters.yml",
            &inv,
            None,
            &dir.path().join("state"),
            &[("cadvisor_privileged", value)],
        );
        let files = planned_files(&planned);
        let compose = files
            .iter()
            .find(|f| f.dest.ends_with("/docker-compose.yml"))
            .expect("a compose file planned");
        let text = String::from_utf8_lossy(&compose.content);
        assert_eq!(
            text.contains("privileged: true"),
            privileged,
            "-e cadvisor_privileged={value}:\n{text}"
        );
    }
}
