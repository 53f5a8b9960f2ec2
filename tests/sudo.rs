//! `become` with a sudo password, against real sshd and real sudo: a login user whose sudo
//! asks for its password (`pfpwsudo`, sudo never caching it), every source of the password
//! (`-K` on a terminal, the `become_password` secret from the environment or a secrets file,
//! Ansible's `ansible_become_password`), the 8 MiB upload that shares stdin with the password,
//! a wrong password (a failed host within the connect timeout, sudo asked once), and the
//! password in no argv, log, output or state file.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use promfleet::transport::{
    BecomePassword, ConnectOptions, PasswordSource, Session, Target, TransportError, Upload,
};
use testkit::sshd::{Fleet, sudo_password};

use crate::support::*;

const WRONG: &str = "not-the-password-4711";

fn fleet(n: usize) -> Option<Fleet> {
    if !require_root() {
        return None;
    }
    Some(Fleet::builder().hosts(n).start().expect("fleet"))
}

fn password(value: &str, source: PasswordSource) -> BecomePassword {
    BecomePassword::new(value, source).expect("password")
}

/// `host` as `user` with become, and the given sudo password.
fn target(fleet: &Fleet, host: &str, user: &str, pw: Option<BecomePassword>) -> Target {
    let h = fleet.host(host).expect("host");
    Target {
        name: host.to_string(),
        address: h.ip.to_string(),
        port: fleet.port(),
        user: user.to_string(),
        keys: vec![fleet.client_key().to_path_buf()],
        keys_explicit: true,
        become_root: true,
        become_password: pw,
        ..Target::default()
    }
}

fn opts(fleet: &Fleet, connect_timeout: Duration) -> ConnectOptions {
    let mut o = ConnectOptions::new(fleet.known_hosts().to_path_buf());
    o.agent = None;
    o.connect_timeout = connect_timeout;
    o.command_timeout = Duration::from_secs(60);
    o
}

async fn connect(t: &Target, o: &ConnectOptions) -> Session {
    Session::connect(t, o)
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", t.name))
}

/// 8 MiB that no line-based reader could pass through unchanged by accident: every byte
/// value, many newlines, no trailing newline.
fn big_content() -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..8 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    Bytes::from(data)
}

/// Lines of the host's sshd log that record a session (one per exec).
fn sessions_started(fleet: &Fleet, host: &str) -> usize {
    std::fs::read_to_string(fleet.sshd_log(host))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Starting session"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn password_become_runs_as_root_streams_8mib_and_hides_the_password() {
    let Some(fleet) = fleet(1) else { return };
    let pw = sudo_password().expect("sudo password");
    let o = opts(&fleet, Duration::from_secs(10));
    let t = target(
        &fleet,
        "host001",
        fleet.password_sudo_user(),
        Some(password(
            &pw,
            PasswordSource::Secret {
                from: "PROMFLEET_SECRET_BECOME_PASSWORD".into(),
            },
        )),
    );
    let s = connect(&t, &o).await;

    let out = s
        .exec("id -u; echo on-stderr >&2", None)
        .await
        .expect("exec");
    assert!(out.success(), "{}", out.short_error());
    assert_eq!(out.stdout_str(), "0\n");
    assert_eq!(out.stderr_str(), "on-stderr\n", "sudo's prompt is stripped");

    // The command's own stdin arrives whole after the password line.
    let input = Bytes::from_static(b"first line\nsecond, no newline");
    let out = s.exec("cat", Some(input.clone())).await.expect("cat");
    assert_eq!(out.stdout.complete().as_deref(), Some(&input[..]));

    let dest = fleet.host("host001").expect("host").dir.join("big.bin");
    let content = big_content();
    let d = dest.to_str().expect("utf-8 path");
    assert_eq!(
        s.upload(d, content.clone(), 0o600).await.expect("upload"),
        Upload::Changed
    );
    let written = std::fs::read(&dest).expect("uploaded file");
    assert!(written == content[..], "8 MiB upload is not byte-exact");
    let meta = std::fs::metadata(&dest).expect("meta");
    assert_eq!(meta.uid(), 0, "written by root");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        s.upload(d, content, 0o600).await.expect("again"),
        Upload::Unchanged
    );

    // Every process's argv while a become command runs — sudo among them, since it is an
    // ancestor of this one — and sshd's log: the password is in none of them.
    let out = s
        .exec(
            r#"for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$f" 2>/dev/null; echo; done"#,
            None,
        )
        .await
        .expect("ps");
    let argv = out.stdout_str();
    assert!(
        argv.lines()
            .any(|l| l.starts_with("sudo -S -p [promfleet-sudo-")),
        "the scan should see promfleet's sudo: {argv}"
    );
    assert!(
        !argv.contains(&pw),
        "the password is in some process's argv"
    );
    s.close().await;
    let log = std::fs::read_to_string(fleet.sshd_log("host001")).expect("sshd log");
    assert!(!log.contains(&pw));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_sudo_does_not_ask_for_never_reaches_the_command() {
    // Passwordless sudo (NOPASSWD), yet a password is configured, as Ansible inventories
    // often have everywhere: sudo does not read it, the command still gets only its input.
    let Some(fleet) = fleet(1) else { return };
    let o = opts(&fleet, Duration::from_secs(10));
    let secret = "configured-but-unused-pw";
    let t = target(
        &fleet,
        "host001",
        fleet.user(),
        Some(password(secret, PasswordSource::AskBecomePass)),
    );
    let s = connect(&t, &o).await;
    let input = Bytes::from_static(b"only this\n");
    let out = s.exec("id -u; cat", Some(input)).await.expect("exec");
    assert!(out.success(), "{}", out.short_error());
    assert_eq!(out.stdout_str(), "0\nonly this\n");
    let dest = fleet.host("host001").expect("host").dir.join("small.txt");
    let d = dest.to_str().expect("utf-8 path");
    s.upload(d, Bytes::from_static(b"content"), 0o644)
        .await
        .expect("upload");
    assert_eq!(std::fs::read(&dest).expect("file"), b"content");
    s.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_fails_the_host_within_the_connect_timeout_and_is_asked_once() {
    let Some(fleet) = fleet(1) else { return };
    let connect_timeout = Duration::from_secs(8);
    let o = opts(&fleet, connect_timeout);
    let source = PasswordSource::Inventory {
        var: "ansible_become_password".into(),
        at: "hosts.ini:3".into(),
    };
    let user = fleet.password_sudo_user();
    let t = target(&fleet, "host001", user, Some(password(WRONG, source)));
    let s = connect(&t, &o).await;
    let flag = fleet.root().join("ran");
    let cmd = format!("touch {}", flag.display());
    let before = sessions_started(&fleet, "host001");

    let started = Instant::now();
    let e = s.exec(&cmd, None).await.expect_err("wrong password");
    let took = started.elapsed();
    // The check is bounded by the connect timeout; a refusal by timeout says so instead.
    assert!(took < connect_timeout, "took {took:?}");
    let msg = e.to_string();
    for want in [
        "rejected the password",
        user,
        "host001",
        "ansible_become_password",
        "hosts.ini:3",
    ] {
        assert!(msg.contains(want), "`{want}` missing: {msg}");
    }
    assert!(!msg.contains(WRONG), "{msg}");
    assert!(matches!(e, TransportError::Remote { .. }), "{e:?}");
    assert!(!e.is_transient(), "a wrong password is never retried");
    assert!(!e.is_unreachable(), "a failed host, not an unreachable one");

    // The next command on the connection gets the same answer without asking sudo again.
    let again = s.exec(&cmd, None).await.expect_err("still wrong");
    assert_eq!(again.to_string(), msg);
    s.close().await;
    assert!(!flag.exists(), "the command must not run");
    assert_eq!(
        sessions_started(&fleet, "host001") - before,
        1,
        "one sudo check, then nothing"
    );
    let log = std::fs::read_to_string(fleet.sshd_log("host001")).expect("sshd log");
    assert!(!log.contains(WRONG));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_when_sudo_needs_one_names_the_ways_to_give_it() {
    let Some(fleet) = fleet(1) else { return };
    let o = opts(&fleet, Duration::from_secs(10));
    let user = fleet.password_sudo_user();
    let s = connect(&target(&fleet, "host001", user, None), &o).await;
    let msg = s
        .exec("id -u", None)
        .await
        .expect_err("no password")
        .to_string();
    for want in [
        user,
        "host001",
        "a password is required",
        "--ask-become-pass",
        "become_password",
    ] {
        assert!(msg.contains(want), "`{want}` missing: {msg}");
    }
    s.close().await;
}

// ------------------------------------------------------------------ the CLI, every source

/// A promfleet YAML inventory logging in as the password-sudo user, with become.
fn yaml_inventory(fleet: &Fleet, dir: &Path) -> PathBuf {
    let yaml = fleet
        .inventory()
        .user(fleet.password_sudo_user())
        .yaml()
        .replacen("ssh: {", "ssh: { become: true,", 1);
    let p = dir.join("inventory.yml");
    std::fs::write(&p, yaml).expect("inventory");
    p
}

/// An Ansible YAML inventory for the fleet's hosts with a per-host `ansible_become_password`.
fn ansible_inventory(fleet: &Fleet, dir: &Path, passwords: &[(&str, &str)]) -> PathBuf {
    let q = |s: &str| serde_json::to_string(s).expect("json");
    let mut y = String::from("all:\n  children:\n    fleet:\n      hosts:\n");
    for h in fleet.hosts() {
        y.push_str(&format!(
            "        {}:\n          ansible_host: {}\n          ansible_port: {}\n          ansible_user: {}\n          ansible_ssh_private_key_file: {}\n          ansible_become: true\n          deploy_dir: {}\n",
            h.name,
            h.ip,
            fleet.port(),
            fleet.password_sudo_user(),
            q(&fleet.client_key().display().to_string()),
            q(&h.deploy_dir().display().to_string()),
        ));
        if let Some((_, pw)) = passwords.iter().find(|(n, _)| *n == h.name) {
            y.push_str(&format!("          ansible_become_password: {}\n", q(pw)));
        }
    }
    let p = dir.join("hosts.yml");
    std::fs::write(&p, y).expect("inventory");
    p
}

fn exec_args(fleet: &Fleet, inv: &Path) -> Vec<String> {
    [
        "exec",
        "-i",
        &inv.display().to_string(),
        "--known-hosts",
        &fleet.known_hosts().display().to_string(),
        "--state-dir",
        &fleet.root().join("state").display().to_string(),
        "--connect-timeout",
        "8",
        "--retries",
        "1",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `exec --json … -- id -u`: host → (rc, stdout, error).
fn exec_results(out: &Output) -> Vec<(String, Option<u64>, String, String)> {
    stdout(out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            (
                v["host"].as_str().unwrap_or_default().to_string(),
                v["rc"].as_u64(),
                v["stdout"].as_str().unwrap_or_default().to_string(),
                v["error"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// host001 ran `id -u` as root, and the password shows nowhere.
fn assert_root_and_silent(out: &Output, pw: &str) {
    assert_eq!(
        exec_results(out),
        [("host001".into(), Some(0), "0\n".into(), String::new())],
        "{}",
        stderr(out)
    );
    assert_nowhere(out, pw);
}

fn assert_nowhere(out: &Output, secret: &str) {
    assert!(!stdout(out).contains(secret), "stdout: {}", stdout(out));
    assert!(!stderr(out).contains(secret), "stderr: {}", stderr(out));
}

#[test]
fn exec_takes_the_password_from_the_environment_and_the_secrets_file() {
    let Some(fleet) = fleet(1) else { return };
    let pw = sudo_password().expect("sudo password");
    let work = tempfile::tempdir().expect("tempdir");
    let inv = yaml_inventory(&fleet, work.path());
    let args = exec_args(&fleet, &inv);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let out = Run::new(&args)
        .arg("--")
        .arg("id -u")
        .env("PROMFLEET_SECRET_BECOME_PASSWORD", &pw)
        .output();
    assert_root_and_silent(&out, &pw);

    // The secrets file (0600), a YAML map; the value needs YAML quoting (space, quotes, $).
    let secrets = work.path().join("secrets.yml");
    std::fs::write(
        &secrets,
        format!(
            "become_password: {}\n",
            serde_json::to_string(&pw).expect("json")
        ),
    )
    .expect("secrets");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = Run::new(&args)
        .arg("--secrets")
        .arg(&secrets)
        .arg("--")
        .arg("id -u")
        .output();
    assert_root_and_silent(&out, &pw);

    // The environment wins over the file, as for every secret: a wrong one there fails.
    let started = Instant::now();
    let out = Run::new(&args)
        .arg("--secrets")
        .arg(&secrets)
        .env("PROMFLEET_SECRET_BECOME_PASSWORD", WRONG)
        .arg("--")
        .arg("id -u")
        .output();
    // Connecting and the sudo check are each bounded by --connect-timeout (8 s).
    assert!(
        started.elapsed() < Duration::from_secs(16),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a failed host: {}",
        stderr(&out)
    );
    let r = exec_results(&out);
    assert_eq!(r.len(), 1);
    assert!(
        r[0].3.contains("rejected the password")
            && r[0].3.contains(fleet.password_sudo_user())
            && r[0].3.contains("PROMFLEET_SECRET_BECOME_PASSWORD"),
        "{:?}",
        r[0]
    );
    assert_nowhere(&out, WRONG);

    // A wrong one in the file: the message names the file to fix.
    std::fs::write(&secrets, format!("become_password: {WRONG}\n")).expect("secrets");
    let out = Run::new(&args)
        .arg("--secrets")
        .arg(&secrets)
        .arg("--")
        .arg("id -u")
        .output();
    let r = exec_results(&out);
    assert!(
        r[0].3.contains("rejected the password") && r[0].3.contains(&secrets.display().to_string()),
        "{:?}",
        r[0]
    );
    assert_nowhere(&out, WRONG);
}

#[test]
fn exec_asks_once_on_the_terminal_without_echo() {
    let Some(fleet) = fleet(2) else { return };
    if !have("script") {
        eprintln!("SKIPPED: needs script(1) for a terminal");
        return;
    }
    let pw = sudo_password().expect("sudo password");
    let work = tempfile::tempdir().expect("tempdir");
    let inv = yaml_inventory(&fleet, work.path());
    let mut words = vec![bin().to_string()];
    words.extend(exec_args(&fleet, &inv));
    words.extend(["-K".into(), "--".into(), "id -u".into()]);
    let line = shlex::try_join(words.iter().map(String::as_str)).expect("quote");
    // script(1) gives promfleet a terminal; the password is typed once the prompt shows.
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(repo())
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("PROMFLEET_SECRET_BECOME_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("BECOME password: ") {
        let n = out.read(&mut buf).expect("read");
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // rpassword prints the prompt, then turns echo off: type once it is off, as a person would.
    wait_for_echo_off(child.id());
    stdin.write_all(format!("{pw}\n").as_bytes()).expect("type");
    out.read_to_end(&mut seen).expect("read");
    let status = child.wait().expect("wait");
    let text = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{text}");
    assert_eq!(
        text.matches("BECOME password: ").count(),
        1,
        "asked once: {text}"
    );
    assert_eq!(text.matches("\"rc\":0").count(), 2, "{text}");
    assert_eq!(text.matches("\"stdout\":\"0\\n\"").count(), 2, "{text}");
    assert!(!text.contains(&pw), "echoed or printed: {text}");
}

#[test]
fn deploy_per_host_ansible_password_wins_and_no_output_or_state_shows_it() {
    let Some(fleet) = fleet(2) else { return };
    let pw = sudo_password().expect("sudo password");
    let work = tempfile::tempdir().expect("tempdir");
    // host001: the right password in the inventory, over a wrong run-wide one.
    // host002: a wrong password in the inventory, over the right run-wide one.
    let inv = ansible_inventory(
        &fleet,
        work.path(),
        &[("host001", pw.as_str()), ("host002", WRONG)],
    );
    let books = work.path().join("playbooks");
    std::fs::create_dir_all(&books).expect("mkdir");
    std::fs::create_dir_all(work.path().join("templates")).expect("mkdir");
    let book = books.join("become.yml");
    std::fs::write(
        &book,
        "- name: become with a password\n  hosts: all\n  tasks:\n    - name: uid\n      shell: { cmd: \"mkdir -p {{ deploy_dir }} && id -u > {{ deploy_dir }}/uid\" }\n",
    )
    .expect("playbook");
    let state = fleet.root().join("state");
    let started = Instant::now();
    let out = Run::new(&["deploy"])
        .arg(&book)
        .args_for(&fleet, &inv, &state)
        .env("PROMFLEET_SECRET_BECOME_PASSWORD", WRONG)
        .output();
    let took = started.elapsed();
    let r = report(&out);
    let st = host_status(&r);
    assert_eq!(st["host001"].0, "changed", "{}", stderr(&out));
    assert_eq!(st["host002"].0, "failed", "{}", stderr(&out));
    let h1 = fleet.host("host001").expect("host");
    assert_eq!(
        std::fs::read_to_string(h1.deploy_dir().join("uid")).expect("uid"),
        "0\n"
    );
    let h2 = fleet.host("host002").expect("host");
    assert!(!h2.deploy_dir().join("uid").exists());
    let text = stdout(&out) + &stderr(&out);
    assert!(
        text.contains("rejected the password")
            && text.contains("host002")
            && text.contains(fleet.password_sudo_user()),
        "{text}"
    );
    // Two hosts in parallel: connect, then the sudo check, each within --connect-timeout.
    assert!(took < Duration::from_secs(16), "took {took:?}");
    for secret in [pw.as_str(), WRONG] {
        assert_nowhere(&out, secret);
        for f in files_under(&state) {
            let content = std::fs::read_to_string(&f).unwrap_or_default();
            assert!(
                !content.contains(secret),
                "{} shows a password",
                f.display()
            );
        }
    }
}

/// Wait until the terminal of `script`'s child (promfleet) no longer echoes.
fn wait_for_echo_off(script_pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let child = std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                    st.rsplit_once(") ")
                        .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok())
                        == Some(script_pid)
                })
            });
        let tty = child.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/fd/0")).ok());
        if let Some(tty) = tty {
            let st = Command::new("stty")
                .arg("-F")
                .arg(&tty)
                .arg("-a")
                .output()
                .expect("stty");
            if String::from_utf8_lossy(&st.stdout)
                .split_whitespace()
                .any(|w| w == "-echo")
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the terminal kept echoing");
        std::thread::sleep(Duration::from_millis(20));
    }
}

trait FleetArgs {
    fn args_for(self, fleet: &Fleet, inv: &Path, state: &Path) -> Self;
}

impl FleetArgs for Run {
    fn args_for(self, fleet: &Fleet, inv: &Path, state: &Path) -> Run {
        self.arg("-i")
            .arg(inv)
            .arg("--known-hosts")
            .arg(fleet.known_hosts())
            .arg("--state-dir")
            .arg(state)
            .arg("--connect-timeout")
            .arg("8")
            .arg("--retries")
            .arg("1")
            .arg("--output")
            .arg("json")
    }
}
