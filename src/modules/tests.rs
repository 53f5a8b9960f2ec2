//! Modules against a fake host (`transport::fake`): what they decide from the host's state,
//! and what they send, without sshd.

use bytes::Bytes;

use super::command::CommandAction;
use super::compose::ComposeAction;
use super::consul::ConsulClient;
use super::file::FileAction;
use super::restore::RestoreAction;
use super::{Done, ErrorKind, HostCtx, Outcome, TaskError};
use crate::inventory::{Host, SourcePos};
use crate::report::Masker;
use crate::transport::fake::{FakeHost, Reply};

/// Runs a module on one fake host, in deploy, `--check` or `--diff` mode.
struct Bench {
    host: Host,
    fake: FakeHost,
    http: reqwest::Client,
    consul: ConsulClient,
    masker: Masker,
    check: bool,
    diff: bool,
    changed_paths: Vec<String>,
}

impl Bench {
    fn new() -> Bench {
        let http = reqwest::Client::new();
        Bench {
            host: Host {
                name: "web1".into(),
                ip: std::net::IpAddr::from([127, 0, 0, 1]),
                group: "IDE".into(),
                groups: vec!["IDE".into()],
                ssh: Default::default(),
                vars: Default::default(),
                pos: SourcePos::default(),
            },
            fake: FakeHost::new("web1"),
            consul: ConsulClient::new(Vec::new(), None, http.clone()),
            http,
            masker: Masker::default(),
            check: false,
            diff: false,
            changed_paths: Vec::new(),
        }
    }

    async fn run<F>(&mut self, f: F) -> Result<Done, TaskError>
    where
        F: for<'c> AsyncFnOnce(&'c mut HostCtx<'_>) -> Result<Done, TaskError>,
    {
        let mut ctx = HostCtx {
            host: &self.host,
            session: Some(&self.fake),
            http: &self.http,
            consul: &self.consul,
            check: self.check,
            diff: self.diff,
            masker: &self.masker,
            changed_paths: std::mem::take(&mut self.changed_paths),
        };
        let r = f(&mut ctx).await;
        self.changed_paths = ctx.changed_paths;
        r
    }
}

fn file(dest: &str, content: &str, mode: u32) -> FileAction {
    FileAction {
        src: "exporter.yml".into(),
        dest: dest.into(),
        content: Bytes::from(content.to_string()),
        mode,
        secret: false,
        owner: None,
    }
}

#[tokio::test]
async fn a_file_is_written_once_then_left_alone() {
    let mut b = Bench::new();
    let a = file("/etc/x.conf", "v1\n", 0o644);
    let first = b.run(async |c| a.run(c).await).await.expect("write");
    assert_eq!(first.outcome, Outcome::Changed);
    assert_eq!(b.changed_paths, ["/etc/x.conf"]);
    let again = b.run(async |c| a.run(c).await).await.expect("again");
    assert_eq!(again.outcome, Outcome::Ok);
    // A mode change alone is a change.
    let loose = file("/etc/x.conf", "v1\n", 0o600);
    let moded = b.run(async |c| loose.run(c).await).await.expect("mode");
    assert_eq!(moded.outcome, Outcome::Changed);
    assert_eq!(b.fake.file("/etc/x.conf").expect("file").mode, 0o600);
    assert_eq!(b.fake.count("upload /etc/x.conf"), 3);
}

#[tokio::test]
async fn check_mode_compares_and_never_writes() {
    let mut b = Bench::new();
    b.check = true;
    b.fake.put("/etc/same.conf", b"v1\n", 0o644);
    let same = file("/etc/same.conf", "v1\n", 0o644);
    let done = b.run(async |c| same.run(c).await).await.expect("same");
    assert_eq!(done.outcome, Outcome::Ok);
    let other = file("/etc/new.conf", "v1\n", 0o644);
    let done = b.run(async |c| other.run(c).await).await.expect("new");
    assert_eq!(done.outcome, Outcome::Changed);
    assert_eq!(done.detail.as_deref(), Some("would write /etc/new.conf"));
    assert_eq!(b.fake.count("upload"), 0, "{:?}", b.fake.log());
    assert_eq!(b.fake.file("/etc/new.conf"), None);
}

#[tokio::test]
async fn diff_shows_the_old_and_new_lines_but_never_a_secrets_content() {
    let mut b = Bench::new();
    b.diff = true;
    b.fake.put("/etc/x.conf", b"port: 1\n", 0o644);
    let a = file("/etc/x.conf", "port: 2\n", 0o644);
    let done = b.run(async |c| a.run(c).await).await.expect("write");
    let diff = done.diff.expect("diff");
    assert!(
        diff.contains("-port: 1") && diff.contains("+port: 2"),
        "{diff}"
    );
    let mut secret = file("/etc/token", "TOKEN=s3cr3t-value\n", 0o600);
    secret.secret = true;
    let done = b.run(async |c| secret.run(c).await).await.expect("secret");
    let diff = done.diff.expect("diff");
    assert!(!diff.contains("s3cr3t"), "{diff}");
}

#[tokio::test]
async fn a_lost_write_is_unreachable_and_a_refused_one_failed() {
    let mut b = Bench::new();
    b.fake.on_times("upload /etc/a", 1, Reply::Lost);
    b.fake
        .on("upload /etc/b", Reply::fail(1, "Read-only file system"));
    let a = file("/etc/a", "v\n", 0o644);
    let e = b.run(async |c| a.run(c).await).await.expect_err("lost");
    assert_eq!((e.kind, e.transient), (ErrorKind::Unreachable, true));
    let bad = file("/etc/b", "v\n", 0o644);
    let e = b
        .run(async |c| bad.run(c).await)
        .await
        .expect_err("refused");
    assert_eq!((e.kind, e.transient), (ErrorKind::Failed, false));
    assert!(e.message.contains("Read-only file system"), "{}", e.message);
    assert!(b.changed_paths.is_empty());
}

#[tokio::test]
async fn restore_puts_prev_back_and_keeps_the_replaced_version() {
    let mut b = Bench::new();
    b.fake.put("/etc/x.conf", b"new\n", 0o640);
    b.fake.put("/etc/x.conf.prev", b"old\n", 0o640);
    let r = RestoreAction {
        dest: "/etc/x.conf".into(),
        mode: 0o640,
        owner: None,
    };
    let done = b.run(async |c| r.run(c).await).await.expect("restore");
    assert_eq!(done.outcome, Outcome::Changed);
    assert_eq!(b.fake.file("/etc/x.conf").expect("dest").content, b"old\n");
    assert_eq!(
        b.fake.file("/etc/x.conf.prev").expect("prev").content,
        b"new\n"
    );
    let missing = RestoreAction {
        dest: "/etc/none".into(),
        mode: 0o644,
        owner: None,
    };
    let done = b.run(async |c| missing.run(c).await).await.expect("none");
    assert_eq!(done.outcome, Outcome::Ok);
    assert_eq!(b.fake.count("upload /etc/none"), 0);
}

#[tokio::test]
async fn restore_refuses_a_prev_larger_than_the_output_bound() {
    let mut b = Bench::new();
    let big = vec![b'x'; 2 * crate::transport::OUTPUT_KEEP + 1];
    b.fake.put("/etc/big.prev", &big, 0o644);
    let r = RestoreAction {
        dest: "/etc/big".into(),
        mode: 0o644,
        owner: None,
    };
    let e = b.run(async |c| r.run(c).await).await.expect_err("too big");
    assert!(e.message.contains("restore it by hand"), "{}", e.message);
    assert_eq!(b.fake.count("upload"), 0);
}

fn compose() -> ComposeAction {
    ComposeAction {
        project_dir: "/opt/exp".into(),
        file: "docker-compose.yml".into(),
        command: None,
        services: Some(vec!["node-exporter".into()]),
        watch: vec!["/opt/exp/docker-compose.yml".into()],
    }
}

#[tokio::test]
async fn compose_is_forced_only_by_a_watched_file() {
    let forced = String::from("force=1");
    let mut b = Bench::new();
    b.fake.on(&forced, Reply::stdout("__missing\n__up\n"));
    let a = compose();
    // Another file of the project changed (reloaded, not recreated): not forced.
    b.changed_paths = vec!["/opt/exp/prometheus.yml".into()];
    let done = b.run(async |c| a.run(c).await).await.expect("calm");
    assert_eq!(done.outcome, Outcome::Ok);
    b.changed_paths = vec!["/opt/exp/docker-compose.yml".into()];
    let done = b.run(async |c| a.run(c).await).await.expect("forced");
    assert_eq!(done.outcome, Outcome::Changed);
    assert_eq!(done.detail.as_deref(), Some("up -d (compose file changed)"));
    assert_eq!(b.fake.count(&forced), 1);
}

#[tokio::test]
async fn compose_starts_a_service_that_is_not_running() {
    let mut b = Bench::new();
    b.fake.on(
        "__missing",
        Reply::stdout("__missing node-exporter\n__up\n"),
    );
    let done = b.run(async |c| compose().run(c).await).await.expect("up");
    assert_eq!(done.outcome, Outcome::Changed);
    assert_eq!(
        done.detail.as_deref(),
        Some("up -d (not running: node-exporter)")
    );
}

#[tokio::test]
async fn compose_in_check_mode_on_a_new_host_would_run_up() {
    let mut b = Bench::new();
    b.check = true;
    b.fake.on("__missing", Reply::fail(10, ""));
    b.changed_paths = vec!["/opt/exp/docker-compose.yml".into()];
    let done = b
        .run(async |c| compose().run(c).await)
        .await
        .expect("check");
    assert_eq!(done.outcome, Outcome::Changed);
    assert_eq!(
        done.detail.as_deref(),
        Some("would run up -d (/opt/exp would be created)")
    );
}

#[tokio::test]
async fn a_command_that_lost_its_exit_status_tells_killed_from_lost() {
    let mut b = Bench::new();
    let cmd = CommandAction {
        cmd: "migrate".into(),
        creates: None,
        chdir: None,
        changed_if_output: None,
    };
    // Killed, and the connection still runs `true`: the command failed.
    b.fake.on_times("migrate", 1, Reply::Killed);
    let e = b.run(async |c| cmd.run(c).await).await.expect_err("killed");
    assert_eq!(e.kind, ErrorKind::Failed);
    // Killed, and the probe finds the connection gone: the host is unreachable.
    b.fake.on_times("migrate", 1, Reply::Killed);
    b.fake.on_times("true", 1, Reply::Lost);
    let e = b.run(async |c| cmd.run(c).await).await.expect_err("lost");
    assert_eq!(e.kind, ErrorKind::Unreachable);
    assert!(
        e.message.starts_with("connection lost during the command"),
        "{}",
        e.message
    );
    assert_eq!(b.fake.count("migrate"), 2);
}

/// Every transport failure a task can meet, and what the task's error becomes: the recap's
/// word and whether a step safe to repeat is tried again.
#[test]
fn transport_errors_become_one_task_error_kind() {
    use crate::transport::TransportError as T;
    let after = std::time::Duration::from_secs(1);
    let s = String::new;
    let rows: Vec<(T, ErrorKind, bool)> = vec![
        (
            T::Connect {
                addr: s(),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            },
            ErrorKind::Unreachable,
            true,
        ),
        (
            T::Timeout { what: s(), after },
            ErrorKind::Unreachable,
            true,
        ),
        (T::Lost { host: s() }, ErrorKind::Unreachable, true),
        (
            T::Ssh(russh::Error::Disconnect),
            ErrorKind::Unreachable,
            true,
        ),
        (
            T::Jump {
                via: s(),
                to: s(),
                message: s(),
                transient: true,
            },
            ErrorKind::Unreachable,
            true,
        ),
        (
            T::Jump {
                via: s(),
                to: s(),
                message: s(),
                transient: false,
            },
            ErrorKind::Unreachable,
            false,
        ),
        (
            T::Auth {
                user: s(),
                host: s(),
                tried: s(),
            },
            ErrorKind::Unreachable,
            false,
        ),
        (
            T::HostKeyUnknown {
                host: s(),
                fingerprint: s(),
                known_hosts: Default::default(),
            },
            ErrorKind::Unreachable,
            false,
        ),
        (
            T::HostKeyNotCertified {
                host: s(),
                fingerprint: s(),
                principal: s(),
                reason: "expired".into(),
                known_hosts: Default::default(),
                line: 1,
            },
            ErrorKind::Unreachable,
            false,
        ),
        (
            T::CommandTimeout { host: s(), after },
            ErrorKind::TimedOut,
            false,
        ),
        (
            T::Remote {
                what: s(),
                message: s(),
            },
            ErrorKind::Failed,
            false,
        ),
    ];
    for (e, kind, transient) in rows {
        let shown = format!("{e:?}");
        let t = TaskError::from(e);
        assert_eq!((t.kind, t.transient), (kind, transient), "{shown}");
    }
}
