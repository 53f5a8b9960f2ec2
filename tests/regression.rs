//! Regression tests, each named after the defect it pins (ripgrep's `tests/regression.rs`):
//! every one failed on the code that had the defect.

use std::process::Command;

use testkit::agent::SshAgent;
use testkit::sshd::{Fleet, KeyKind};

use crate::support::*;

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
