//! The connector against real OpenSSH (no SSH mocks): key and agent authentication, host key
//! checking, exec (exit codes, ordering, big data both ways, timeouts), atomic upload, become,
//! failure classification, ProxyJump through an ssh config file, and 50 hosts at once.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use promfleet::transport::keys::KeyStore;
use promfleet::transport::{ConnectOptions, Session, SshConfig, Target, TransportError, Upload};
use testkit::agent::SshAgent;
use testkit::sshd::{Fleet, KeyKind};

use crate::support::ssh::{connect, fleet, mode, no_temp_files, opts, target};
use crate::support::*;

async fn run(s: &Session, cmd: &str) -> promfleet::transport::ExecOutput {
    s.exec(cmd, None)
        .await
        .unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"))
}

async fn whoami(t: &Target, o: &ConnectOptions) -> String {
    let s = connect(t, o).await;
    let out = run(&s, "id -un").await;
    s.close().await;
    assert!(out.success(), "{}", out.short_error());
    out.stdout_str().trim().to_string()
}

fn sshd_config(fleet: &Fleet, name: &str) -> PathBuf {
    fleet.root().join(".sshd").join(name).join("sshd_config")
}

#[tokio::test(flavor = "multi_thread")]
async fn key_auth_with_ed25519_rsa_and_ecdsa() {
    let Some(fleet) = fleet(1) else { return };
    let mut t = target(&fleet, "host001");
    let o = opts(&fleet);
    assert_eq!(whoami(&t, &o).await, fleet.user(), "ed25519");

    let ecdsa = fleet
        .make_client_key("id_ecdsa", KeyKind::Ecdsa, "", true)
        .expect("ecdsa key");
    t.keys = vec![ecdsa];
    assert_eq!(whoami(&t, &o).await, fleet.user(), "ecdsa");

    // OpenSSH ≥ 8.8 does not accept SHA-1 `ssh-rsa` signatures: make sure this sshd is such
    // a server, so a successful RSA login proves the client signed with rsa-sha2-*.
    let eff = Command::new("/usr/sbin/sshd")
        .arg("-T")
        .arg("-f")
        .arg(sshd_config(&fleet, "host001"))
        .output()
        .expect("sshd -T");
    let eff = String::from_utf8_lossy(&eff.stdout).to_string();
    let algs = eff
        .lines()
        .find_map(|l| l.strip_prefix("pubkeyacceptedalgorithms "))
        .expect("pubkeyacceptedalgorithms in sshd -T");
    assert!(
        algs.split(',').all(|a| a != "ssh-rsa"),
        "this sshd accepts SHA-1 ssh-rsa, so it cannot prove SHA-2 signing: {algs}"
    );
    assert!(algs.contains("rsa-sha2-512"), "{algs}");
    let rsa = fleet
        .make_client_key("id_rsa", KeyKind::Rsa, "", true)
        .expect("rsa key");
    t.keys = vec![rsa];
    assert_eq!(whoami(&t, &o).await, fleet.user(), "rsa");
    let log = std::fs::read_to_string(fleet.sshd_log("host001")).expect("sshd log");
    assert!(
        log.lines()
            .any(|l| l.contains("Accepted publickey for pftest") && l.contains(": RSA SHA256:")),
        "sshd accepted the RSA key:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_key_with_passphrase() {
    let Some(fleet) = fleet(1) else { return };
    let key = fleet
        .make_client_key("id_encrypted", KeyKind::Ed25519, "correct horse", true)
        .expect("encrypted key");
    let mut t = target(&fleet, "host001");
    t.keys = vec![key.clone()];
    let mut o = opts(&fleet);
    o.keys = Arc::new(KeyStore::with_passphrase("correct horse"));
    assert_eq!(whoami(&t, &o).await, fleet.user());

    o.keys = Arc::new(KeyStore::with_passphrase("wrong"));
    let e = Session::connect(&t, &o)
        .await
        .err()
        .expect("wrong passphrase");
    assert!(matches!(e, TransportError::Key { .. }), "{e:?}");
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains(&key.display().to_string()), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_auth_without_key_files() {
    let Some(fleet) = fleet(1) else { return };
    let mut t = target(&fleet, "host001");
    t.keys = Vec::new();
    t.keys_explicit = false;
    let mut o = opts(&fleet);

    let e = Session::connect(&t, &o).await.err().expect("no keys");
    assert!(matches!(e, TransportError::Auth { .. }), "{e:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let agent = SshAgent::start(dir.path()).expect("ssh-agent");
    agent.add(fleet.client_key()).expect("ssh-add");
    o.agent = Some(agent.socket().to_path_buf());
    assert_eq!(whoami(&t, &o).await, fleet.user(), "ed25519 in the agent");

    // An RSA key in the agent must be asked for an rsa-sha2-* signature too.
    let rsa = fleet
        .make_client_key("id_rsa_agent", KeyKind::Rsa, "", true)
        .expect("rsa key");
    let dir2 = tempfile::tempdir().expect("tempdir");
    let rsa_agent = SshAgent::start(dir2.path()).expect("ssh-agent");
    rsa_agent.add(&rsa).expect("ssh-add rsa");
    o.agent = Some(rsa_agent.socket().to_path_buf());
    assert_eq!(whoami(&t, &o).await, fleet.user(), "rsa in the agent");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_key_refused_until_accepted() {
    if !require_root() {
        return;
    }
    let fleet = Fleet::builder()
        .hosts(1)
        .trust_host_keys(false)
        .start()
        .expect("fleet");
    let t = target(&fleet, "host001");
    let mut o = opts(&fleet);
    let kh = fleet.known_hosts();
    assert_eq!(std::fs::read_to_string(kh).expect("kh"), "");

    let e = Session::connect(&t, &o).await.err().expect("unknown key");
    assert!(matches!(e, TransportError::HostKeyUnknown { .. }), "{e:?}");
    assert!(!e.is_transient());
    let msg = e.to_string();
    assert!(msg.contains(&kh.display().to_string()), "{msg}");
    assert!(msg.contains("--accept-new-host-keys"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(kh).expect("kh"),
        "",
        "strict mode wrote"
    );

    o.accept_new_host_keys = true;
    assert_eq!(whoami(&t, &o).await, fleet.user());
    let text = std::fs::read_to_string(kh).expect("kh");
    let want = format!("[{}]:{} ", t.address, fleet.port());
    let key = fleet.host_key_line("host001").expect("host key");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&want) && l.contains(&key)),
        "known_hosts has no line for {want}{key}:\n{text}"
    );

    o.accept_new_host_keys = false;
    assert_eq!(whoami(&t, &o).await, fleet.user(), "strict after recording");
    // Real OpenSSH agrees with what was recorded.
    let ssh = fleet
        .ssh_command("host001")
        .expect("ssh")
        .arg("true")
        .output()
        .expect("run ssh");
    assert!(ssh.status.success(), "{}", stderr(&ssh));
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_host_key_refused_even_with_accept_new() {
    let Some(fleet) = fleet(2) else { return };
    let before = std::fs::read_to_string(fleet.known_hosts()).expect("kh");
    fleet.rotate_host_key("host002").expect("rotate");
    let t = target(&fleet, "host002");
    let mut o = opts(&fleet);
    for accept in [false, true] {
        o.accept_new_host_keys = accept;
        let e = Session::connect(&t, &o).await.err().expect("changed key");
        let TransportError::HostKeyChanged { line, .. } = &e else {
            panic!("accept_new={accept}: {e:?}");
        };
        assert_eq!(*line, 2, "host002 is the second known_hosts line");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{}:2", fleet.known_hosts().display())),
            "{msg}"
        );
        assert!(!e.is_transient());
    }
    assert_eq!(
        std::fs::read_to_string(fleet.known_hosts()).expect("kh"),
        before,
        "known_hosts must not change"
    );
    // The unchanged host is still fine.
    assert_eq!(whoami(&target(&fleet, "host001"), &o).await, fleet.user());
}

/// Deterministic, non-repeating-looking bytes (so a reordered or dropped chunk shows).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_output_exit_codes_and_big_data() {
    let Some(fleet) = fleet(1) else { return };
    let t = target(&fleet, "host001");
    let o = opts(&fleet);
    let s = connect(&t, &o).await;

    let out = run(&s, "echo out; echo err >&2").await;
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");
    assert_eq!(out.status, Some(0));
    assert_eq!(run(&s, "exit 3").await.status, Some(3));
    let missing = run(&s, "no-such-command-pf").await;
    assert_eq!(missing.status, Some(127));
    assert!(missing.stderr_str().contains("not found"), "{missing:?}");

    // A background child keeps stdout open after the shell exits: sshd sends exit-status
    // first and the late output after it. Both must be collected.
    let late = run(&s, "(sleep 0.3; echo late) & echo early; exit 7").await;
    assert_eq!(late.status, Some(7));
    assert_eq!(late.stdout_str(), "early\nlate\n");

    let big = run(&s, "head -c 1048576 /dev/zero | tr '\\0' x; echo; exit 5").await;
    assert_eq!(big.status, Some(5));
    // Kept as head and tail (64 KiB each), the middle counted.
    assert_eq!(big.stdout.total(), 1024 * 1024 + 1);
    assert_eq!(big.stdout.elided(), 1024 * 1024 + 1 - 2 * 64 * 1024);
    let shown = big.stdout_str();
    assert!(
        shown.contains(&format!("\n… {} bytes elided\n", big.stdout.elided())),
        "{}",
        &shown[64 * 1024 - 10..64 * 1024 + 40]
    );
    assert!(shown.ends_with("xxx\n"));

    let data = Bytes::from(pattern(8 * 1024 * 1024));
    let wc = tokio::time::timeout(Duration::from_secs(30), s.exec("wc -c", Some(data.clone())))
        .await
        .expect("8 MiB stdin within 30 s")
        .expect("wc");
    assert_eq!(wc.stdout_str().trim(), "8388608");
    // Both directions full at once: the writer must not wait for the reader.
    let echoed = tokio::time::timeout(Duration::from_secs(30), s.exec("cat", Some(data.clone())))
        .await
        .expect("8 MiB through cat within 30 s (flow-control deadlock?)")
        .expect("cat");
    assert_eq!(echoed.status, Some(0));
    assert_eq!(echoed.stdout.total(), data.len() as u64);
    let summed = tokio::time::timeout(
        Duration::from_secs(30),
        s.exec("sha256sum", Some(data.clone())),
    )
    .await
    .expect("8 MiB through sha256sum within 30 s")
    .expect("sha256sum");
    assert_eq!(
        summed.stdout_str().split_whitespace().next(),
        Some(promfleet::modules::file::sha256_hex(&data).as_str()),
        "the bytes arrived intact"
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn command_timeout_is_bounded_and_session_survives() {
    let Some(fleet) = fleet(1) else { return };
    let t = target(&fleet, "host001");
    let mut o = opts(&fleet);
    o.command_timeout = Duration::from_secs(1);
    let s = connect(&t, &o).await;
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(10), s.exec("sleep 5", None))
        .await
        .expect("bounded by the test")
        .expect_err("timeout");
    let took = started.elapsed();
    assert!(matches!(e, TransportError::CommandTimeout { .. }), "{e:?}");
    assert!(!e.is_transient() && !e.is_unreachable(), "{e}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(e.to_string().contains("timed out after 1s"), "{e}");
    assert_eq!(run(&s, "echo again").await.stdout_str(), "again\n");
    s.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_is_atomic_idempotent_and_keeps_prev() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.host("host001").expect("host").clone();
    let t = target(&fleet, "host001");
    let s = connect(&t, &opts(&fleet)).await;
    let dir = h.dir.join("conf dir");
    let dest = dir.join("app.yml");
    let d = dest.to_str().expect("utf8");

    let v1 = Bytes::from_static(b"version: 1\n");
    assert_eq!(
        s.upload(d, v1.clone(), 0o640).await.expect("new"),
        Upload::Changed
    );
    assert_eq!(std::fs::read(&dest).expect("read"), v1);
    assert_eq!(mode(&dest), 0o640);
    let meta = std::fs::metadata(&dest).expect("stat");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), fleet.user_uid());

    assert_eq!(
        s.upload(d, v1.clone(), 0o640).await.expect("same"),
        Upload::Unchanged
    );
    assert!(
        !dir.join("app.yml.prev").exists(),
        "no .prev for an unchanged file"
    );
    // Same bytes, other mode: a change.
    assert_eq!(
        s.upload(d, v1.clone(), 0o600).await.expect("mode"),
        Upload::Changed
    );
    assert_eq!(mode(&dest), 0o600);

    let v2 = Bytes::from_static(b"version: 2\n");
    assert_eq!(
        s.upload(d, v2.clone(), 0o600).await.expect("v2"),
        Upload::Changed
    );
    assert_eq!(std::fs::read(&dest).expect("read"), v2);
    assert_eq!(std::fs::read(dir.join("app.yml.prev")).expect("prev"), v1);
    no_temp_files(&dir);

    // `~/` is the login user's HOME on the host.
    let home = passwd_home(fleet.user());
    let rel = format!("pf-upload-test-{}/f.txt", std::process::id());
    let in_home = home.join(&rel);
    let _ = std::fs::remove_dir_all(in_home.parent().expect("parent"));
    assert_eq!(
        s.upload(&format!("~/{rel}"), v1.clone(), 0o644)
            .await
            .expect("home"),
        Upload::Changed
    );
    let got = std::fs::read(&in_home);
    let _ = std::fs::remove_dir_all(in_home.parent().expect("parent"));
    assert_eq!(got.expect("file in HOME"), v1, "{}", in_home.display());

    // A directory the user cannot write: an error, and the old file is untouched.
    let ro = h.dir.join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    std::fs::write(ro.join("keep.conf"), "old\n").expect("write");
    std::os::unix::fs::chown(&ro, Some(fleet.user_uid()), None).expect("chown");
    std::os::unix::fs::chown(ro.join("keep.conf"), Some(fleet.user_uid()), None).expect("chown");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let e = s
        .upload(ro.join("keep.conf").to_str().expect("utf8"), v2, 0o644)
        .await
        .expect_err("read-only dir");
    assert!(matches!(e, TransportError::Remote { .. }), "{e:?}");
    assert!(e.to_string().contains("keep.conf"), "{e}");
    assert_eq!(
        std::fs::read_to_string(ro.join("keep.conf")).expect("old"),
        "old\n"
    );
    no_temp_files(&ro);
    s.close().await;
}

fn passwd_home(user: &str) -> PathBuf {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&user)).then(|| PathBuf::from(f[5]))
        })
        .expect("user in /etc/passwd")
}

#[tokio::test(flavor = "multi_thread")]
async fn become_root_needs_passwordless_sudo() {
    let Some(fleet) = fleet(1) else { return };
    let o = opts(&fleet);
    let mut t = target(&fleet, "host001");
    t.become_root = true;
    let s = connect(&t, &o).await;
    let out = run(&s, "id -u; echo \"$0\" 'it'\\''s'").await;
    assert!(out.success(), "{}", out.short_error());
    assert_eq!(out.stdout_str(), "0\nsh it's\n");
    s.close().await;

    t.user = fleet.nosudo_user().to_string();
    let s = connect(&t, &o).await;
    let e = s
        .exec("id -u", None)
        .await
        .expect_err("pfnosudo must not become root");
    assert!(matches!(e, TransportError::Remote { .. }), "{e:?}");
    assert!(
        !e.is_unreachable(),
        "a failed become is a failed host, not unreachable"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("become")
            && msg.contains(fleet.nosudo_user())
            && msg.contains("passwordless sudo")
            && msg.contains("a password is required"),
        "the message should say that {} cannot use sudo: {msg}",
        fleet.nosudo_user()
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failures_are_classified_and_bounded() {
    let Some(fleet) = fleet(3) else { return };
    let mut o = opts(&fleet);
    o.connect_timeout = Duration::from_secs(1);

    fleet.silence("host001").expect("silence");
    let started = Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        Session::connect(&target(&fleet, "host001"), &o),
    )
    .await
    .expect("bounded by the test")
    .err()
    .expect("silenced");
    let took = started.elapsed();
    assert!(matches!(e, TransportError::Timeout { .. }), "{e:?}");
    assert!(e.is_transient(), "{e}");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    fleet.stop("host002").expect("stop");
    let e = Session::connect(&target(&fleet, "host002"), &o)
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, TransportError::Connect { .. }), "{e:?}");
    assert!(e.is_transient(), "{e}");
    assert!(e.is_unreachable(), "{e}");

    let stranger = fleet
        .make_client_key("id_stranger", KeyKind::Ed25519, "", false)
        .expect("key");
    let mut t = target(&fleet, "host003");
    t.keys = vec![stranger.clone()];
    let e = Session::connect(&t, &o).await.err().expect("auth");
    assert!(matches!(e, TransportError::Auth { .. }), "{e:?}");
    assert!(!e.is_transient(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&stranger.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("pftest@{}", t.address)), "{msg}");

    // A missing explicit key is skipped as OpenSSH does ("no such identity"), and named when
    // nothing else works.
    t.keys = vec![fleet.root().join("keys/does-not-exist")];
    let e = Session::connect(&t, &o).await.err().expect("missing key");
    assert!(matches!(e, TransportError::Auth { .. }), "{e:?}");
    assert!(
        e.to_string().contains("does-not-exist (no such file)"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_jump_from_ssh_config() {
    let Some(fleet) = fleet(3) else { return };
    let jump = OwnSshd::replace(
        &fleet,
        "host001",
        &["AllowTcpForwarding yes", "LogLevel DEBUG1"],
    );
    let ip1 = fleet.host("host001").expect("h1").ip;
    let ip2 = fleet.host("host002").expect("h2").ip;
    let port = fleet.port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("ssh_config");
    std::fs::write(
        &cfg,
        format!(
            // The bastion has its own block: OpenSSH resolves it on its own (no key from the target's).
            "Host jumped\n  HostName {ip2}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  ProxyJump {user}@{ip1}:{port}\nHost {ip1}\n  IdentityFile {key}\n",
            user = fleet.user(),
            key = fleet.client_key().display()
        ),
    )
    .expect("write ssh config");
    let inv_path = dir.path().join("inventory.yml");
    std::fs::write(
        &inv_path,
        format!("groups:\n  IDE:\n    hosts:\n      - {{ name: behind, ip: {ip2}, ssh: {{ address: jumped }} }}\n"),
    )
    .expect("write inventory");
    let inv = promfleet::inventory::load(&inv_path).expect("inventory");
    let host = inv.hosts.first().expect("host");
    let config = SshConfig::new(&cfg);
    let t = config.target(host, Some("nobody")).await.expect("target");
    assert_eq!(t.address, ip2.to_string());
    assert_eq!(t.port, port);
    assert_eq!(t.user, fleet.user());
    assert_eq!(t.keys, vec![fleet.client_key().to_path_buf()]);
    let j = t.jump.as_deref().expect("jump target");
    assert_eq!(
        (j.address.as_str(), j.port),
        (ip1.to_string().as_str(), port)
    );

    let o = opts(&fleet);
    let s = connect(&t, &o).await;
    let out = run(&s, "echo $SSH_CONNECTION").await;
    assert_eq!(
        out.stdout_str().split_whitespace().nth(2),
        Some(ip2.to_string().as_str()),
        "{out:?}"
    );
    // A second host behind the same bastion rides the same bastion connection.
    let ip3 = fleet.host("host003").expect("h3").ip;
    let mut t3 = t.clone();
    t3.name = "behind-too".into();
    t3.address = ip3.to_string();
    let s3 = connect(&t3, &o).await;
    let out = run(&s3, "echo $SSH_CONNECTION").await;
    assert_eq!(
        out.stdout_str().split_whitespace().nth(2),
        Some(ip3.to_string().as_str()),
        "{out:?}"
    );
    s.close().await;
    s3.close().await;
    let log = std::fs::read_to_string(&jump.log).expect("jump log");
    assert!(
        log.contains(&format!("target {ip2} port {port}"))
            && log.contains(&format!("target {ip3} port {port}")),
        "the jump host forwarded to {ip2}:{port} and {ip3}:{port}:\n{log}"
    );
    assert_eq!(
        log.matches("Accepted publickey").count(),
        1,
        "one bastion login for both hosts:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_hosts_at_once_over_one_sshd() {
    if !require_root() {
        return;
    }
    let fleet = Fleet::builder()
        .hosts(50)
        .shared_sshd(true)
        .start()
        .expect("fleet");
    let o = opts(&fleet);
    let targets: Vec<Target> = fleet.hosts().map(|h| target(&fleet, &h.name)).collect();
    let started = Instant::now();
    let results = futures::future::join_all(targets.iter().map(|t| {
        let o = o.clone();
        async move {
            let s = Session::connect(t, &o).await?;
            let out = s.exec("echo $SSH_CONNECTION", None).await?;
            s.close().await;
            Ok::<_, TransportError>(out)
        }
    }))
    .await;
    for (t, r) in targets.iter().zip(results) {
        let out = r.unwrap_or_else(|e| panic!("{}: {e}", t.name));
        assert_eq!(
            out.stdout_str().split_whitespace().nth(2),
            Some(t.address.as_str()),
            "{}",
            t.name
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_with_owner_is_part_of_unchanged() {
    let Some(fleet) = fleet(1) else { return };
    let h = fleet.host("host001").expect("host").clone();
    let mut t = target(&fleet, "host001");
    t.become_root = true;
    let s = connect(&t, &opts(&fleet)).await;
    let dest = h.dir.join("owned").join("secret.yml");
    let d = dest.to_str().expect("utf8");
    let body = Bytes::from_static(b"token: x\n");
    let owner_of = |p: &std::path::Path| {
        let m = std::fs::metadata(p).expect("stat");
        (
            std::os::unix::fs::MetadataExt::uid(&m),
            std::os::unix::fs::MetadataExt::gid(&m),
        )
    };
    assert_eq!(
        s.upload_owned(d, body.clone(), 0o600, Some("65534:65534"))
            .await
            .expect("new"),
        Upload::Changed
    );
    assert_eq!(owner_of(&dest), (65534, 65534));
    assert_eq!(mode(&dest), 0o600);
    // Same content, mode and owner (spelled by name this time): unchanged.
    let nobody = std::process::Command::new("id")
        .args(["-un", "65534"])
        .output()
        .expect("id");
    let name = String::from_utf8_lossy(&nobody.stdout).trim().to_string();
    assert_eq!(
        s.upload_owned(d, body.clone(), 0o600, Some(&format!("{name}:65534")))
            .await
            .expect("same"),
        Upload::Unchanged
    );
    // Ownership drift is repaired.
    std::os::unix::fs::chown(&dest, Some(0), Some(0)).expect("chown");
    assert_eq!(
        s.upload_owned(d, body.clone(), 0o600, Some("65534:65534"))
            .await
            .expect("repair"),
        Upload::Changed
    );
    assert_eq!(owner_of(&dest), (65534, 65534));
    s.close().await;
}

/// The same ECDSA key (a 31-byte scalar) as five files: `ssh` logs in with each, and so must
/// promfleet; with a wrong passphrase neither does. ssh-key 0.7 refused such keys ("length
/// invalid"), one randomly generated P-256 key in 256.
#[tokio::test(flavor = "multi_thread")]
async fn an_ecdsa_key_with_a_31_byte_scalar_was_refused() {
    let Some(fleet) = fleet(1) else { return };
    let dir = fleet.root().join("short-scalar");
    std::fs::create_dir_all(&dir).expect("key dir");
    let copy = |name: &str| {
        let to = dir.join(name);
        std::fs::copy(PathBuf::from("tests/fixtures/keys").join(name), &to).expect("copy key");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        to
    };
    let plain = copy("ecdsa-p256-short-scalar");
    let public = Command::new("ssh-keygen")
        .arg("-yf")
        .arg(&plain)
        .output()
        .expect("ssh-keygen -y");
    assert!(public.status.success(), "ssh-keygen -y");
    std::fs::write(dir.join("ecdsa-p256-short-scalar.pub"), &public.stdout).expect("public key");
    fleet.authorize_key(&plain).expect("authorize");
    let askpass = dir.join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\nprintf '%s\\n' \"$PASSPHRASE\"\n").expect("askpass");
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let h = fleet.host("host001").expect("host");
    let rows = [
        ("ecdsa-p256-short-scalar", "", true),
        ("ecdsa-p256-short-scalar-aes256-ctr", "correct horse", true),
        ("ecdsa-p256-short-scalar-aes256-gcm", "correct horse", true),
        ("ecdsa-p256-short-scalar-aes256-cbc", "correct horse", true),
        (
            "ecdsa-p256-short-scalar-chacha20-poly1305",
            "correct horse",
            true,
        ),
        ("ecdsa-p256-short-scalar-aes256-ctr", "wrong", false),
    ];
    for (name, passphrase, logs_in) in rows {
        let key = copy(name);
        // The oracle: OpenSSH with this key only, its passphrase given through SSH_ASKPASS.
        let ssh = Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
            ])
            .args([
                "-o",
                "PreferredAuthentications=publickey",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                fleet.known_hosts().display()
            ))
            .arg("-i")
            .arg(&key)
            .args(["-p", &fleet.port().to_string()])
            .arg(format!("{}@{}", fleet.user(), h.ip))
            .arg("id -un")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("PASSPHRASE", passphrase)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ssh");
        assert_eq!(
            ssh.status.success(),
            logs_in,
            "{name} with {passphrase:?}: ssh {}",
            String::from_utf8_lossy(&ssh.stderr)
        );

        let mut t = target(&fleet, "host001");
        t.keys = vec![key];
        let mut o = opts(&fleet);
        o.keys = Arc::new(KeyStore::with_passphrase(passphrase));
        match Session::connect(&t, &o).await {
            Ok(s) => {
                let out = run(&s, "id -un").await;
                s.close().await;
                assert!(
                    logs_in,
                    "{name} with {passphrase:?}: promfleet logged in, ssh did not"
                );
                assert_eq!(out.stdout_str().trim(), fleet.user());
            }
            Err(e) => assert!(!logs_in, "{name} with {passphrase:?}: {e}"),
        }
    }
}

/// sshd runs a command through the login user's shell. Under zsh (`$x` is not split into
/// fields) promfleet's POSIX scripts gave other facts than under sh: a compose project's
/// services came back as one service per line, and only the first was read. The oracle shows
/// the user's shell is such a zsh: real `ssh` runs the same line and gets no splitting.
#[tokio::test(flavor = "multi_thread")]
async fn a_zsh_login_shell_read_one_service_of_a_running_project() {
    let Some(fleet) = fleet(1) else { return };
    if tool("zsh").is_none() {
        return;
    }
    let split = r#"x='a b'; for w in $x; do echo "[$w]"; done"#;
    let ssh = fleet
        .ssh_command_as("host001", fleet.zsh_user(), &[])
        .expect("ssh")
        .arg(split)
        .output()
        .expect("ssh");
    assert!(
        ssh.status.success(),
        "{}",
        String::from_utf8_lossy(&ssh.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ssh.stdout),
        "[a b]\n",
        "the login shell of {} is not a zsh that leaves $x whole",
        fleet.zsh_user()
    );

    let mut t = target(&fleet, "host001");
    t.user = fleet.zsh_user().to_string();
    let s = Arc::new(connect(&t, &opts(&fleet)).await);
    assert_eq!(run(&s, split).await.stdout_str(), "[a]\n[b]\n");

    // A project whose compose (a stand-in printing its services one per line) runs both.
    let dir = tempfile::Builder::new()
        .prefix("pf-zsh-project")
        .tempdir_in("/tmp")
        .expect("project dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.path().join("docker-compose.yml"), "services: {}\n").expect("file");
    let compose = dir.path().join("compose");
    std::fs::write(
        &compose,
        "#!/bin/sh\ncase \"$*\" in *--services*) printf 'node-exporter\\ncadvisor-exporter\\n' ;; esac\n",
    )
    .expect("compose stand-in");
    std::fs::set_permissions(&compose, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let facts = promfleet::facts::Facts::new(s.clone());
    let state = facts
        .get(&promfleet::facts::compose::ComposeFact {
            project_dir: dir.path().display().to_string(),
            file: "docker-compose.yml".into(),
            command: Some(compose.display().to_string()),
            services: None,
        })
        .await
        .expect("compose fact");
    let both = vec!["node-exporter".to_string(), "cadvisor-exporter".to_string()];
    match state {
        promfleet::facts::compose::ComposeState::Project(p) => {
            assert_eq!((p.expected, p.running), (both.clone(), both));
        }
        other => panic!("{other:?}"),
    }
}
