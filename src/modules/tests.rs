//! Modules against a fake host (`transport::fake`): what they decide from the host's state,
//! and what they send, without sshd.

use std::sync::Arc;

use super::command::CommandAction;
use super::compose::ComposeAction;
use super::consul::ConsulClient;
use super::file::{FileAction, Written};
use super::restore::RestoreAction;
use super::{Done, ErrorKind, HostCtx, HostState, Outcome, Services, TaskError};
use crate::facts::Facts;
use crate::fixtures;
use crate::inventory::{Host, SourcePos};
use crate::report::Masker;
use crate::transport::fake::{FakeHost, Reply};

/// Runs a module on one fake host, in deploy, `--check` or `--diff` mode.
struct Bench {
    host: Host,
    fake: Arc<FakeHost>,
    facts: Facts,
    http: reqwest::Client,
    services: Services,
    masker: Masker,
    check: bool,
    diff: bool,
    state: HostState,
}

impl Bench {
    fn new() -> Bench {
        let http = reqwest::Client::new();
        let fake = Arc::new(FakeHost::new("web1"));
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
            fake: fake.clone(),
            facts: Facts::new(fake),
            services: Services::new()
                .with(Arc::new(ConsulClient::new(Vec::new(), None, http.clone())))
                .with(Arc::new(crate::settings::Endpoints::default())),
            http,
            masker: Masker::default(),
            check: false,
            diff: false,
            state: HostState::default(),
        }
    }

    /// The paths the play changed so far (`file::Written`).
    fn written(&self) -> Vec<String> {
        self.state
            .get::<Written>()
            .map(|w| w.0.clone())
            .unwrap_or_default()
    }

    /// As if an earlier step of the play had changed `paths`.
    fn set_written(&mut self, paths: &[&str]) {
        self.state.entry::<Written>().0 = paths.iter().map(|p| p.to_string()).collect();
    }

    async fn run<F>(&mut self, f: F) -> Result<Done, TaskError>
    where
        F: for<'c> AsyncFnOnce(&'c mut HostCtx<'_>) -> Result<Done, TaskError>,
    {
        let mut ctx = HostCtx {
            host: &self.host,
            session: Some(self.fake.as_ref()),
            facts: Some(&self.facts),
            http: &self.http,
            services: &self.services,
            check: self.check,
            diff: self.diff,
            masker: &self.masker,
            state: &mut self.state,
            next: None,
        };
        f(&mut ctx).await
    }
}

fn file(dest: &str, content: &str, mode: u32) -> FileAction {
    FileAction {
        mode,
        ..fixtures::file(dest, content.as_bytes())
    }
}

#[tokio::test]
async fn a_file_is_written_once_then_left_alone() {
    let mut b = Bench::new();
    let a = file("/etc/x.conf", "v1\n", 0o644);
    let first = b.run(async |c| a.run(c).await).await.expect("write");
    assert_eq!(first.outcome, Outcome::Changed);
    assert_eq!(b.written(), ["/etc/x.conf"]);
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
    assert!(b.written().is_empty());
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

/// The exporters' project, its compose command left to the fact to detect.
fn compose() -> ComposeAction {
    ComposeAction {
        command: None,
        ..fixtures::compose("/opt/exp", &["node-exporter"])
    }
}

/// The compose probe (`facts::compose`), as the fake host answers it.
const PROBE: &str = "__expected";
/// The module's own `up -d`.
const UP: &str = "up -d --remove-orphans";

fn project(running: &str) -> Reply {
    Reply::stdout(&format!(
        "__compose docker compose\n__expected node-exporter\n__running {running}\n"
    ))
}

#[tokio::test]
async fn compose_is_forced_only_by_a_watched_file() {
    let mut b = Bench::new();
    b.fake.on(PROBE, project("node-exporter"));
    let a = compose();
    // Another file of the project changed (reloaded, not recreated): not forced.
    b.set_written(&["/opt/exp/prometheus.yml"]);
    let done = b.run(async |c| a.run(c).await).await.expect("calm");
    assert_eq!(done.outcome, Outcome::Ok);
    assert_eq!(b.fake.count(UP), 0);
    b.set_written(&["/opt/exp/docker-compose.yml"]);
    let done = b.run(async |c| a.run(c).await).await.expect("forced");
    assert_eq!(done.outcome, Outcome::Changed);
    assert_eq!(done.detail.as_deref(), Some("up -d (compose file changed)"));
    assert_eq!(b.fake.count(UP), 1);
    // The project was asked once (the forced run read the cached answer).
    assert_eq!(b.fake.count(PROBE), 1);
}

#[tokio::test]
async fn compose_starts_a_service_that_is_not_running() {
    let mut b = Bench::new();
    b.fake.on(PROBE, project(""));
    let done = b.run(async |c| compose().run(c).await).await.expect("up");
    assert_eq!(done.outcome, Outcome::Changed);
    assert_eq!(
        done.detail.as_deref(),
        Some("up -d (not running: node-exporter)")
    );
    assert_eq!(b.fake.count(UP), 1);
}

#[tokio::test]
async fn compose_in_check_mode_answers_from_the_fact_and_runs_nothing() {
    let mut b = Bench::new();
    b.check = true;
    b.fake.on(PROBE, project(""));
    let done = b
        .run(async |c| compose().run(c).await)
        .await
        .expect("check");
    assert_eq!(done.outcome, Outcome::Changed);
    assert_eq!(
        done.detail.as_deref(),
        Some("would run up -d (not running: node-exporter)")
    );
    assert_eq!(b.fake.count(UP), 0, "{:?}", b.fake.log());
    assert_eq!(b.fake.log().len(), 1, "one probe: {:?}", b.fake.log());
}

#[tokio::test]
async fn compose_in_check_mode_on_a_new_host_would_run_up() {
    let mut b = Bench::new();
    b.check = true;
    b.fake.on(PROBE, Reply::fail(10, ""));
    b.set_written(&["/opt/exp/docker-compose.yml"]);
    let done = b
        .run(async |c| compose().run(c).await)
        .await
        .expect("check");
    assert_eq!(done.outcome, Outcome::Changed);
    assert_eq!(
        done.detail.as_deref(),
        Some("would run up -d (/opt/exp would be created)")
    );
    assert_eq!(b.fake.count(UP), 0);
}

#[tokio::test]
async fn compose_without_its_project_dir_fails_when_nothing_would_create_it() {
    let mut b = Bench::new();
    b.fake.on(PROBE, Reply::fail(10, ""));
    let e = b
        .run(async |c| compose().run(c).await)
        .await
        .expect_err("no dir");
    assert_eq!(e.message, "project dir /opt/exp does not exist");
    assert_eq!(b.fake.count(UP), 0);
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

/// A batch answer (`facts::Facts::prefetch`) with marker `--m--`: each probe's output, in
/// the order the facts were asked.
fn batch(sections: &[String]) -> Reply {
    let mut out = String::new();
    for s in sections {
        out.push_str(&format!("\n--m-- begin\n{s}\n--m-- end 0\n"));
    }
    Reply::stdout(&out)
}

/// The file probe's answer for a regular file holding `content`.
fn on_host(content: &str, mode: u32) -> String {
    format!(
        "file {mode:o} 0 0 root root {}",
        super::file::sha256_hex(content.as_bytes())
    )
}

/// Issue 14 point 6: a host already as planned costs the one round trip of its facts —
/// no upload, no compare, no compose probe of its own — in a deploy and in `--check`.
#[tokio::test]
async fn an_unchanged_host_costs_one_round_trip_in_deploy_and_in_check() {
    use super::{Action, prefetch};
    for check in [false, true] {
        let mut b = Bench::new();
        b.check = check;
        b.facts = Facts::with_marker(b.fake.clone(), "--m--");
        let actions = [
            Action::File(file("/etc/a.yml", "a", 0o644)),
            Action::File(file("/etc/b.yml", "b", 0o600)),
            Action::Compose(compose()),
        ];
        b.fake.on(
            "pf_fact_marker=",
            batch(&[
                on_host("a", 0o644),
                on_host("b", 0o600),
                "__compose docker compose\n__expected node-exporter\n__running node-exporter"
                    .into(),
            ]),
        );
        prefetch(&b.facts, &actions).await;
        for a in &actions {
            let done = b.run(async |c| a.run(c).await).await.expect("runs");
            assert_eq!(done.outcome, Outcome::Ok, "check={check} {a:?}: {done:?}");
        }
        assert_eq!(b.facts.round_trips(), 1, "check={check}");
        assert_eq!(b.fake.log().len(), 1, "check={check}: {:?}", b.fake.log());
    }
}

/// The other half: what the facts say differs is written (content or mode), and a written
/// file's fact is dropped, so nothing later in the run reads the old answer.
#[tokio::test]
async fn a_file_the_facts_say_differs_is_uploaded_and_its_fact_forgotten() {
    use crate::facts::files::FileFact;
    let mut b = Bench::new();
    b.facts = Facts::with_marker(b.fake.clone(), "--m--");
    let (a, m) = (
        file("/etc/a.yml", "new", 0o644),
        file("/etc/m.yml", "m", 0o600),
    );
    b.fake.on(
        "pf_fact_marker=",
        batch(&[on_host("old", 0o644), on_host("m", 0o644)]),
    );
    let facts: [&dyn crate::facts::ErasedFact; 2] =
        [&FileFact::new("/etc/a.yml"), &FileFact::new("/etc/m.yml")];
    b.facts.prefetch(&facts).await.expect("prefetch");
    for f in [&a, &m] {
        let done = b.run(async |c| f.run(c).await).await.expect("write");
        assert_eq!(done.outcome, Outcome::Changed);
        assert_eq!(b.fake.count(&format!("upload {}", f.dest)), 1);
        assert_eq!(b.facts.peek(&FileFact::new(&f.dest)), None);
    }
}

/// The registry: every module name finds its module, its schema checks arguments (with a
/// did-you-mean), and only `command`/`shell` accept a plain string.
#[test]
fn the_registry_checks_arguments_and_shorthands_per_module() {
    use super::ModuleKind;
    use serde_json::json;
    for k in ModuleKind::ALL {
        let (req, _) = k.module().keys();
        assert!(!req.is_empty(), "{} has no required argument", k.name());
        assert_eq!(ModuleKind::from_name(k.name()), Some(*k));
    }
    let (msg, help) = ModuleKind::Compose
        .check_args(json!({ "project_dri": "/opt" }))
        .expect_err("typo");
    assert_eq!(msg, "unknown argument `project_dri`");
    assert_eq!(help.as_deref(), Some("did you mean `project_dir`?"));
    assert_eq!(
        ModuleKind::Shell
            .check_args(json!("echo hi"))
            .expect("shorthand"),
        json!({ "cmd": "echo hi" })
    );
    assert!(ModuleKind::Http.check_args(json!("http://x")).is_err());
    let (msg, _) = ModuleKind::ConsulRegister
        .check_args(json!({ "service": "x" }))
        .expect_err("port");
    assert_eq!(msg, "missing argument `port`");
}

/// A module plans its own defaults and validates its own values (no planner involved).
#[test]
fn modules_plan_defaults_and_refuse_bad_values() {
    use super::{Action, ModuleKind, PlanCtx};
    use serde_json::json;
    let host = crate::fixtures::host("web1");
    let mut renderer = crate::playbook::Renderer::new(
        crate::project::Project::builtin_only(),
        crate::playbook::Secrets::load(None, Masker::default()).expect("secrets"),
        crate::playbook::SecretMode::Masked,
    );
    let vars = tera::Context::new();
    let mut copies = Default::default();
    let mut plan = |k: ModuleKind, args: serde_json::Value| {
        let mut cx = PlanCtx {
            host: &host,
            vars: &vars,
            renderer: &mut renderer,
            copies: &mut copies,
        };
        k.module().plan(&args, &mut cx)
    };
    let Ok(Action::MetricsCheck(m)) = plan(ModuleKind::MetricsCheck, json!({ "port": "9100" }))
    else {
        panic!("metrics_check")
    };
    assert_eq!(m.url, "http://127.0.0.1:9100/metrics");
    assert_eq!((m.min_samples, m.timeout.as_secs()), (1, 60));
    let Ok(Action::ConsulRegister(r)) = plan(
        ModuleKind::ConsulRegister,
        json!({ "service": "node", "port": 9100 }),
    ) else {
        panic!("consul_register")
    };
    assert_eq!(r.def.id, "node-web1-127.0.0.1");
    assert_eq!(r.def.meta.get("group").map(String::as_str), Some("IDE"));
    let Ok(Action::Compose(c)) = plan(ModuleKind::Compose, json!({ "project_dir": "/opt/x/" }))
    else {
        panic!("compose")
    };
    assert_eq!(c.file, "docker-compose.yml");
    assert_eq!(c.watch, ["/opt/x/docker-compose.yml", "/opt/x/.env"]);
    let e = plan(ModuleKind::MetricsCheck, json!({ "port": 0 })).expect_err("port 0");
    assert_eq!(e, "`port` must be a TCP port (1-65535), got 0");
    let e = plan(ModuleKind::Http, json!({ "url": "u", "method": "GE T" })).expect_err("method");
    assert!(e.contains("not an HTTP method"), "{e}");
    let e = plan(
        ModuleKind::Copy,
        json!({ "src": "exporters/docker-compose.yml", "dest": "/x", "owner": "a b" }),
    )
    .expect_err("owner");
    assert!(e.starts_with("`owner` must be"), "{e}");
}

/// Found by the scenario tests: the compose fact is prefetched before the play writes the
/// project, so on a new host it says "no project dir"; a forced deploy must still run `up -d`
/// (only `--check` answers "would be created" from it).
#[tokio::test]
async fn forced_compose_runs_up_though_the_prefetched_fact_predates_the_project() {
    let mut b = Bench::new();
    b.fake.on(PROBE, Reply::fail(10, ""));
    b.facts.get(&compose().fact()).await.expect("prefetched");
    b.set_written(&["/opt/exp/docker-compose.yml"]);
    let done = b.run(async |c| compose().run(c).await).await.expect("up");
    assert_eq!(done.detail.as_deref(), Some("up -d (compose file changed)"));
    assert_eq!(b.fake.count(UP), 1, "{:?}", b.fake.log());
}

/// A changed `restart_on` file restarts the services that ran before this play: not those
/// of a first deploy (no project dir, or nothing running), which start on the files as
/// written; and when the fact was never asked, to be safe, it restarts.
#[tokio::test]
async fn restart_on_restarts_only_services_that_ran_before() {
    let token = "/opt/exp/acl.json";
    let c = ComposeAction {
        restart_on: vec![token.to_string()],
        ..compose()
    };
    for (probe, restarts) in [
        (Some(Reply::fail(10, "")), 0),
        (Some(project("")), 0),
        (Some(project("node-exporter")), 1),
        (None, 1),
    ] {
        let mut b = Bench::new();
        if let Some(p) = probe {
            b.fake.on(PROBE, p);
            b.facts.get(&c.fact()).await.expect("prefetched");
        }
        b.set_written(&["/opt/exp/docker-compose.yml", token]);
        b.run(async |ctx| c.run(ctx).await).await.expect("up");
        let log = b.fake.log();
        assert_eq!(b.fake.count(UP), 1, "{log:?}");
        assert_eq!(b.fake.count("restart 1>&2"), restarts, "{log:?}");
    }
}

/// The compose command in the `up -d` script the fake host was sent (`''`: detect it there).
fn up_command(b: &Bench) -> String {
    let log = b.fake.log();
    let up = log.iter().find(|op| op.contains(UP)).expect("an up -d");
    let line = up
        .lines()
        .find_map(|l| l.strip_prefix("cmd="))
        .expect("a cmd= line");
    shlex::split(line).expect("shell words").concat()
}

/// The `up -d` ran `docker compose version` again although the run's facts had just found the
/// host's compose: the project's probe (`__compose …`), or preflight's compose probe in the
/// script's own order (plugin, then docker-compose). Only what no fact said is detected.
#[tokio::test]
async fn the_up_started_docker_compose_version_again_after_the_facts_found_compose() {
    use crate::facts::system::Compose;
    let c = compose();
    let preflight = "docker compose version --short";
    for (project_probe, compose_probe, expected) in [
        (Some(project("")), None, "docker compose"),
        (None, Some("__plugin 2.24.5\n"), "docker compose"),
        (None, Some("__standalone 1.29.2\n"), "docker-compose"),
        (None, Some(""), ""),
        (None, None, ""),
    ] {
        let mut b = Bench::new();
        if let Some(p) = project_probe {
            b.fake.on(PROBE, p);
            b.facts.get(&c.fact()).await.expect("project fact");
        }
        if let Some(out) = compose_probe {
            b.fake.on(preflight, Reply::stdout(out));
            b.facts
                .get(&Compose::default())
                .await
                .expect("compose fact");
        }
        b.set_written(&["/opt/exp/docker-compose.yml"]);
        b.run(async |ctx| c.run(ctx).await).await.expect("up");
        assert_eq!(up_command(&b), expected, "{:?}", b.fake.log());
    }
}

/// Two Consul doubles, each holding one promfleet service and one service of someone else.
async fn two_agents() -> (Vec<testkit::consul_double::ConsulDouble>, Arc<ConsulClient>) {
    let mut doubles = Vec::new();
    for (i, host) in ["h1", "h2"].iter().enumerate() {
        let d = testkit::consul_double::ConsulDouble::start(([127, 0, 0, 1], 0).into())
            .await
            .expect("double");
        d.register_direct(serde_json::json!({
            "ID": format!("node-exporter-{host}"), "Name": "node-exporter",
            "Address": "127.0.0.1", "Port": 9100 + i,
            "Meta": {"managed_by": "promfleet", "hostname": host}
        }))
        .expect("register");
        d.register_direct(serde_json::json!({
            "ID": format!("theirs-{i}"), "Name": "theirs", "Address": "127.0.0.1", "Port": 80
        }))
        .expect("register");
        doubles.push(d);
    }
    let urls = doubles.iter().map(|d| d.url()).collect();
    let client = Arc::new(ConsulClient::new(urls, None, reqwest::Client::new()));
    (doubles, client)
}

/// `managed` fans out on the Scheduler: every agent is one item (a progress event each) and
/// only promfleet's services come back, each with the agent holding it.
#[tokio::test(flavor = "multi_thread")]
async fn managed_asks_every_agent_as_one_scheduler_item() {
    use crate::executor::Scheduler;
    use crate::report::Progress;
    use tokio_util::sync::CancellationToken;
    let (doubles, client) = two_agents().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let sched = Scheduler::new(1, CancellationToken::new(), CancellationToken::new())
        .with_progress(Arc::new(move |p: &Progress| {
            s.lock().expect("lock").push(p.clone())
        }));
    let (services, errors) = client.managed_on(&sched).await;
    assert!(errors.is_empty(), "{errors:?}");
    let got: Vec<(String, String)> = services
        .iter()
        .map(|(agent, s)| (agent.clone(), s.id.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (doubles[0].url(), "node-exporter-h1".to_string()),
            (doubles[1].url(), "node-exporter-h2".to_string()),
        ]
    );
    let started: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|p| match p {
            Progress::Started { label, .. } => Some(label.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(started, [doubles[0].url(), doubles[1].url()]);
    // Without a scheduler of the caller's (a task inside a run): the same answer.
    let (again, _) = client.managed().await;
    assert_eq!(again.len(), 2);
}

/// A cancelled run asks no agent and says so, instead of reporting an empty agent.
#[tokio::test(flavor = "multi_thread")]
async fn managed_after_a_cancel_asks_no_agent() {
    use crate::executor::Scheduler;
    use tokio_util::sync::CancellationToken;
    let (doubles, client) = two_agents().await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let sched = Scheduler::new(4, cancel, CancellationToken::new());
    let (services, errors) = client.managed_on(&sched).await;
    assert!(services.is_empty());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.ends_with("not asked (interrupted)")),
        "{errors:?}"
    );
    for d in &doubles {
        assert!(d.requests().is_empty(), "{:?}", d.requests());
    }
}
