//! Regression tests, each named after the defect it pins (ripgrep's `tests/regression.rs`):
//! every one failed on the code that had the defect.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use promfleet::transport::Upload;

use crate::support::*;
use crate::transport::{connect, fleet, mode, no_temp_files, opts, target};

/// Peak RSS allowed to one promfleet process, whatever a peer sends (issue 12).
const RSS_LIMIT_KIB: u64 = 200 * 1024;

/// Run `cmd` to the end and return its output and its own peak RSS in KiB (`wait4` reports
/// the rusage of exactly that child, not of every child this test binary ever waited for).
// Reaped by `wait4` below, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measured(mut cmd: Command) -> (Output, u64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promfleet");
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t2 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 writes it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let out = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: t1.join().unwrap_or_default(),
        stderr: t2.join().unwrap_or_default(),
    };
    let rss = ru.ru_maxrss as u64;
    eprintln!("peak RSS of {cmd:?}: {rss} KiB");
    (out, rss)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
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

    // The form: `yes` without end, stopped by a short --command-timeout.
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
struct EndlessMetrics {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl EndlessMetrics {
    fn start(total: u64) -> EndlessMetrics {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(mut c) = conn else { continue };
                std::thread::spawn(move || {
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
                });
            }
        });
        EndlessMetrics { port, stop }
    }
}

impl Drop for EndlessMetrics {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Defect 3: a 1 GiB `/metrics` body was read whole (1.6 GiB RSS per host).
#[test]
fn metrics_body_is_capped() {
    let server = EndlessMetrics::start(1024 * 1024 * 1024);
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
