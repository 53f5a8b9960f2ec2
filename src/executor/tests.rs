//! The scheduler against fake hosts (`transport::fake`): batches, stages, halts, retries,
//! timeouts and cancellation, without sshd or root. Each test scripts the hosts, runs a plan
//! and asserts what each host was asked to do (the fake records every operation).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Connector, Executor, RetryPolicy, RunOptions};
use crate::fixtures::{self, compose_step, copy_step, file, host, step};
use crate::modules::Services;
use crate::modules::command::CommandAction;
use crate::modules::consul::ConsulClient;
use crate::modules::{Action, ModuleKind};
use crate::playbook::{HostPlan, Plan, PlannedPlay, Serial, Step};
use crate::report::{HostStatus, Masker, RunReport, Silent};
use crate::transport::fake::{AFTER_WRITE, FakeFleet, Refusal, Reply};

const ATTEMPTS: u32 = 3;

/// A `command` step running `cmd` (the fake matches on the text).
fn command(cmd: &str) -> Step {
    let action = CommandAction {
        cmd: cmd.into(),
        creates: None,
        chdir: None,
        changed_if_output: None,
    };
    step(cmd, ModuleKind::Command, Action::Command(action))
}

fn copy(dest: &str, content: &str) -> Step {
    copy_step(file(dest, content.as_bytes()))
}

/// The project in `dir`, defining node-exporter.
fn compose(dir: &str) -> Step {
    compose_step(fixtures::compose(dir, &["node-exporter"]))
}

/// The compose probe (`facts::compose`) and `up -d`, as the fake host sees them.
const PROBE: &str = "__expected";
const UP: &str = "up -d --remove-orphans";

/// The `up -d`s `host` ran on channels of their own (not in the round trip of a write).
fn own_ups(host: &crate::transport::fake::FakeHost) -> usize {
    host.log()
        .iter()
        .filter(|op| op.contains(UP) && !op.starts_with(AFTER_WRITE))
        .count()
}

/// The compose probe's answer: node-exporter defined and running.
fn running() -> Reply {
    Reply::stdout("__compose docker compose\n__expected node-exporter\n__running node-exporter\n")
}

fn play(name: &str, hosts: &[&str], steps: &[Step]) -> PlannedPlay {
    PlannedPlay {
        name: name.into(),
        stage: None,
        serial: None,
        max_fail_percentage: None,
        canary: false,
        gate: None,
        hosts: hosts
            .iter()
            .map(|h| HostPlan {
                host: host(h),
                steps: steps.to_vec(),
                handlers: Vec::new(),
            })
            .collect(),
    }
}

fn executor(fleet: &Arc<FakeFleet>, forks: usize) -> Arc<Executor> {
    let retry = RetryPolicy {
        attempts: ATTEMPTS,
        base: Duration::from_millis(1),
        max: Duration::from_millis(1),
    };
    let http = super::http_client();
    Arc::new(Executor {
        connector: Arc::new(Connector::with(fleet.clone(), retry, forks)),
        services: Services::new()
            .with(Arc::new(ConsulClient::new(Vec::new(), None, http.clone())))
            .with(Arc::new(crate::settings::Endpoints::default())),
        http,
        masker: Masker::default(),
        reporter: Arc::new(Silent),
        opts: RunOptions {
            forks,
            retry,
            ..RunOptions::default()
        },
        cancel: CancellationToken::new(),
        abort: CancellationToken::new(),
    })
}

async fn run(fleet: &Arc<FakeFleet>, plays: Vec<PlannedPlay>) -> RunReport {
    executor(fleet, 10).run(Arc::new(Plan { plays })).await
}

fn status(run: &RunReport, host: &str) -> HostStatus {
    run.hosts
        .iter()
        .find(|h| h.host == host)
        .map(|h| h.status)
        .unwrap_or_else(|| panic!("{host} not in the report"))
}

/// Every command of `names`, recorded when it runs, in the order the hosts ran them.
fn recording(fleet: &FakeFleet, names: &[&str], cmd: &str) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    for &n in names {
        let (seen, n2) = (seen.clone(), n.to_string());
        let f = move || seen.lock().expect("lock").push(n2.clone());
        fleet.host(n).on(cmd, Reply::Call(Arc::new(f)));
    }
    seen
}

/// Both interrupts, once an operation containing `pattern` is in flight on `host` (waited for
/// by yields, not by time); the run's report.
async fn second_interrupt_once(
    host: &crate::transport::fake::FakeHost,
    pattern: &str,
    ex: &Executor,
    running: tokio::task::JoinHandle<RunReport>,
) -> RunReport {
    for _ in 0..10_000 {
        if host.count(pattern) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(host.count(pattern), 1, "never started: {:?}", host.log());
    ex.cancel.cancel();
    ex.abort.cancel();
    running.await.expect("run")
}

#[tokio::test]
async fn serial_runs_one_batch_after_the_other() {
    let fleet = Arc::new(FakeFleet::new());
    let names = ["a", "b", "c", "d"];
    let seen = recording(&fleet, &names, "step");
    let mut p = play("p", &names, &[command("step one"), command("step two")]);
    p.serial = Some(Serial::Count(2));
    let r = run(&fleet, vec![p]).await;
    assert_eq!(r.count(HostStatus::Changed), 4, "{r:?}");
    let seen = seen.lock().expect("lock").clone();
    // Each command yields (a round trip): unbatched, c would start before a finished.
    let (first, second) = seen.split_at(4);
    assert!(
        first.iter().all(|h| h == "a" || h == "b") && second.iter().all(|h| h == "c" || h == "d"),
        "batch 2 started before batch 1 ended: {seen:?}"
    );
}

#[tokio::test]
async fn every_host_of_a_batch_failed_halts_the_rest() {
    let fleet = Arc::new(FakeFleet::new());
    for h in ["a", "b"] {
        fleet.host(h).on("deploy", Reply::fail(1, "broken"));
    }
    let mut p = play("p", &["a", "b", "c", "d"], &[command("deploy")]);
    p.serial = Some(Serial::Count(2));
    let r = run(&fleet, vec![p]).await;
    let halted = r.halted.clone().expect("halted");
    assert!(
        halted.contains("every host of a batch failed (2 of 2)"),
        "{halted}"
    );
    for h in ["c", "d"] {
        assert_eq!(status(&r, h), HostStatus::NotRun);
        assert_eq!(fleet.attempts(h), 0, "{h} was connected to");
    }
}

#[tokio::test]
async fn one_failure_in_a_batch_without_a_limit_goes_on() {
    let fleet = Arc::new(FakeFleet::new());
    fleet.host("a").on("deploy", Reply::fail(1, "broken"));
    let mut p = play("p", &["a", "b", "c", "d"], &[command("deploy")]);
    p.serial = Some(Serial::Count(2));
    let r = run(&fleet, vec![p]).await;
    assert_eq!(r.halted, None);
    assert_eq!(status(&r, "a"), HostStatus::Failed);
    for h in ["b", "c", "d"] {
        assert_eq!(status(&r, h), HostStatus::Changed, "{h}");
    }
}

#[tokio::test]
async fn max_fail_percentage_halts_when_exceeded_not_when_reached() {
    let fleet = Arc::new(FakeFleet::new());
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for h in ["b", "d", "f"] {
        fleet.host(h).on("deploy", Reply::fail(1, "broken"));
    }
    let mut p = play("p", &names, &[command("deploy")]);
    p.serial = Some(Serial::Count(2));
    p.max_fail_percentage = Some(25.0);
    let r = run(&fleet, vec![p]).await;
    // After batch 2, 2 of 8 = 25 %: reached, not over; after batch 3, 3 of 8 is over.
    let halted = r.halted.clone().expect("halted");
    assert!(
        halted.contains("3 of 8 hosts failed (") && halted.contains("max_fail_percentage 25%"),
        "{halted}"
    );
    assert_eq!(status(&r, "e"), HostStatus::Changed);
    for h in ["g", "h"] {
        assert_eq!(status(&r, h), HostStatus::NotRun, "{h}");
        assert_eq!(fleet.host(h).count("deploy"), 0, "{h} ran");
    }
}

#[tokio::test]
async fn hosts_blocked_by_preflight_are_never_touched_and_count_toward_max_fail_percentage() {
    let fleet = Arc::new(FakeFleet::new());
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    fleet.host("d").on("deploy", Reply::fail(1, "broken"));
    let mut p = play("p", &names, &[command("deploy")]);
    p.serial = Some(Serial::Count(2));
    p.max_fail_percentage = Some(25.0);
    let blocked = |why: &str| super::Blocked {
        status: HostStatus::Failed,
        error: format!("preflight: {why}"),
        failed_at: "preflight".into(),
    };
    let base = executor(&fleet, 10);
    let ex = Arc::new(
        base.with_options(RunOptions {
            blocked: [("a", "port 9100 held"), ("c", "no compose")]
                .into_iter()
                .map(|(h, why)| (h.to_string(), blocked(why)))
                .collect(),
            ..base.opts.clone()
        }),
    );
    let r = ex.run(Arc::new(Plan { plays: vec![p] })).await;
    for h in ["a", "c"] {
        assert_eq!(status(&r, h), HostStatus::Failed, "{h}");
        assert!(
            fleet.host(h).log().is_empty(),
            "{h} touched: {:?}",
            fleet.host(h).log()
        );
    }
    let a = r.hosts.iter().find(|h| h.host == "a").unwrap();
    assert_eq!(a.error.as_deref(), Some("preflight: port 9100 held"));
    assert_eq!(a.failed_at.as_deref(), Some("preflight"));
    // Blocked a and c plus failed d: 3 of 8 is over 25 % after batch 2.
    let halted = r.halted.clone().expect("halted");
    assert!(halted.contains("3 of 8 hosts failed ("), "{halted}");
    for h in ["e", "f", "g", "h"] {
        assert_eq!(status(&r, h), HostStatus::NotRun, "{h}");
    }
}

#[tokio::test]
async fn a_failed_canary_stage_stops_the_next_stage() {
    let fleet = Arc::new(FakeFleet::new());
    fleet.host("canary1").on("deploy", Reply::fail(1, "broken"));
    let mut canary = play(
        "p [stage canary]",
        &["canary1", "canary2"],
        &[command("deploy")],
    );
    canary.stage = Some("canary".into());
    canary.canary = true;
    canary.max_fail_percentage = Some(0.0);
    let mut rest = play("p [stage rest]", &["r1", "r2"], &[command("deploy")]);
    rest.stage = Some("rest".into());
    let r = run(&fleet, vec![canary, rest]).await;
    let halted = r.halted.clone().expect("halted");
    assert!(halted.contains("--from-stage canary"), "{halted}");
    for h in ["r1", "r2"] {
        assert_eq!(fleet.host(h).count("deploy"), 0, "{h} ran");
    }
}

#[tokio::test]
async fn a_healthy_stage_leads_to_the_next() {
    let fleet = Arc::new(FakeFleet::new());
    let mut canary = play("p [stage canary]", &["canary1"], &[command("deploy")]);
    canary.stage = Some("canary".into());
    canary.max_fail_percentage = Some(0.0);
    let mut rest = play("p [stage rest]", &["r1", "r2"], &[command("deploy")]);
    rest.stage = Some("rest".into());
    let r = run(&fleet, vec![canary, rest]).await;
    assert_eq!(r.halted, None);
    assert_eq!(r.count(HostStatus::Changed), 3, "{r:?}");
}

#[tokio::test]
async fn a_write_cut_off_is_retried_on_a_new_connection() {
    let fleet = Arc::new(FakeFleet::new());
    fleet
        .host("a")
        .on_times("upload /etc/x.conf", 1, Reply::Lost);
    let r = run(
        &fleet,
        vec![play("p", &["a"], &[copy("/etc/x.conf", "v1")])],
    )
    .await;
    assert_eq!(status(&r, "a"), HostStatus::Changed, "{r:?}");
    assert_eq!(r.hosts[0].tasks[0].attempts, 2);
    // The dead session is dropped and the write repeated on a fresh one.
    assert_eq!(fleet.attempts("a"), 2);
    assert_eq!(fleet.host("a").count("upload /etc/x.conf"), 2);
    let f = fleet.host("a").file("/etc/x.conf").expect("written");
    assert_eq!(f.content, b"v1");
}

#[tokio::test]
async fn a_write_that_stays_cut_off_is_unreachable_after_every_attempt() {
    let fleet = Arc::new(FakeFleet::new());
    fleet.host("a").on("upload", Reply::Lost);
    let r = run(
        &fleet,
        vec![play("p", &["a"], &[copy("/etc/x.conf", "v1")])],
    )
    .await;
    assert_eq!(status(&r, "a"), HostStatus::Unreachable, "{r:?}");
    assert_eq!(fleet.host("a").count("upload"), ATTEMPTS as usize);
}

#[tokio::test]
async fn a_refused_write_is_a_failure_and_not_retried() {
    let fleet = Arc::new(FakeFleet::new());
    fleet
        .host("a")
        .on("upload", Reply::fail(1, "No space left on device"));
    let r = run(
        &fleet,
        vec![play("p", &["a"], &[copy("/etc/x.conf", "v1")])],
    )
    .await;
    assert_eq!(status(&r, "a"), HostStatus::Failed, "{r:?}");
    assert_eq!(fleet.host("a").count("upload"), 1);
    let err = r.hosts[0].error.clone().unwrap_or_default();
    assert!(err.contains("previous version left in place"), "{err}");
}

#[tokio::test]
async fn a_command_is_never_run_again_after_a_lost_connection() {
    let fleet = Arc::new(FakeFleet::new());
    fleet.host("a").on("migrate", Reply::Lost);
    let r = run(&fleet, vec![play("p", &["a"], &[command("migrate")])]).await;
    assert_eq!(status(&r, "a"), HostStatus::Unreachable, "{r:?}");
    assert_eq!(fleet.host("a").count("migrate"), 1);
    assert_eq!(r.hosts[0].tasks[0].attempts, 1);
}

#[tokio::test]
async fn a_command_timeout_is_a_failure_not_unreachable_and_not_rerun() {
    let fleet = Arc::new(FakeFleet::new());
    fleet.host("a").on("slow", Reply::TimedOut);
    let r = run(&fleet, vec![play("p", &["a"], &[command("slow")])]).await;
    assert_eq!(status(&r, "a"), HostStatus::Failed, "{r:?}");
    assert_eq!(fleet.host("a").count("slow"), 1);
    let err = r.hosts[0].error.clone().unwrap_or_default();
    assert!(err.contains("timed out"), "{err}");
}

#[tokio::test]
async fn a_killed_command_on_a_live_connection_is_a_failure() {
    let fleet = Arc::new(FakeFleet::new());
    fleet.host("a").on("oom", Reply::Killed);
    let r = run(&fleet, vec![play("p", &["a"], &[command("oom")])]).await;
    assert_eq!(status(&r, "a"), HostStatus::Failed, "{r:?}");
    let err = r.hosts[0].error.clone().unwrap_or_default();
    assert!(err.contains("killed before it finished"), "{err}");
}

#[tokio::test]
async fn connecting_is_retried_while_transient_and_tried_once_on_auth_failure() {
    let fleet = Arc::new(FakeFleet::new());
    fleet
        .refuse("down", Refusal::Down)
        .refuse("flaky", Refusal::Flaky(ATTEMPTS as usize - 1))
        .refuse("badkey", Refusal::Auth);
    let r = run(
        &fleet,
        vec![play(
            "p",
            &["down", "flaky", "badkey"],
            &[command("deploy")],
        )],
    )
    .await;
    assert_eq!(status(&r, "down"), HostStatus::Unreachable);
    assert_eq!(fleet.attempts("down"), ATTEMPTS as usize);
    assert_eq!(status(&r, "flaky"), HostStatus::Changed);
    assert_eq!(fleet.attempts("flaky"), ATTEMPTS as usize);
    assert_eq!(status(&r, "badkey"), HostStatus::Unreachable);
    assert_eq!(
        fleet.attempts("badkey"),
        1,
        "a failed login is never retried"
    );
    assert_eq!(fleet.host("down").count("deploy"), 0);
}

#[tokio::test]
async fn a_first_interrupt_lets_the_step_in_flight_finish_and_starts_nothing_new() {
    let fleet = Arc::new(FakeFleet::new());
    // One fork: b waits for a's; the interrupt comes while a runs its first step.
    let ex = executor(&fleet, 1);
    let cancel = ex.cancel.clone();
    fleet
        .host("a")
        .on("first", Reply::Call(Arc::new(move || cancel.cancel())));
    let p = play("p", &["a", "b"], &[command("first"), command("second")]);
    let r = ex.run(Arc::new(Plan { plays: vec![p] })).await;
    assert!(r.interrupted);
    assert_eq!(r.hosts[0].tasks.len(), 1, "the step in flight is reported");
    assert_eq!(status(&r, "a"), HostStatus::NotRun, "a is not done");
    assert_eq!(fleet.host("a").count("second"), 0);
    assert_eq!(status(&r, "b"), HostStatus::NotRun);
    assert_eq!(fleet.attempts("b"), 0, "b was connected to");
}

#[tokio::test]
async fn a_second_interrupt_abandons_the_step_in_flight() {
    let fleet = Arc::new(FakeFleet::new());
    let ex = executor(&fleet, 1);
    fleet.host("a").on("wedged", Reply::Hang);
    let p = play("p", &["a"], &[command("wedged")]);
    let running = tokio::spawn({
        let ex = ex.clone();
        async move { ex.run(Arc::new(Plan { plays: vec![p] })).await }
    });
    let r = second_interrupt_once(&fleet.host("a"), "wedged", &ex, running).await;
    assert_eq!(status(&r, "a"), HostStatus::NotRun);
    let err = r.hosts[0].error.clone().unwrap_or_default();
    assert!(err.contains("aborted during `wedged`"), "{err}");
}

#[tokio::test]
async fn compose_runs_up_only_when_a_watched_file_changed() {
    let fleet = Arc::new(FakeFleet::new());
    let dc = "/opt/exp/docker-compose.yml";
    let steps = [copy(dc, "services: {}"), compose("/opt/exp")];
    fleet.host("a").on(PROBE, running());

    let first = run(&fleet, vec![play("p", &["a"], &steps)]).await;
    assert_eq!(status(&first, "a"), HostStatus::Changed, "{first:?}");
    assert_eq!(fleet.host("a").count(UP), 1);
    let detail = first.hosts[0].tasks[1].detail.clone().unwrap_or_default();
    assert!(detail.contains("compose file changed"), "{detail}");

    // Same file again: unchanged, so compose is not forced (and reports ok).
    let again = run(&fleet, vec![play("p", &["a"], &steps)]).await;
    assert_eq!(status(&again, "a"), HostStatus::Ok, "{again:?}");
    assert_eq!(fleet.host("a").count(UP), 1);
}

/// A host's first deploy opened a channel for `up -d` right after the one that wrote its
/// compose file. The write runs the `up -d` in its own round trip (`after write: …`, only when the
/// file changed), and the compose step reports it as its own; in `--check` nothing runs.
#[tokio::test]
async fn the_first_deploy_opened_a_channel_for_up_after_the_write() {
    let fleet = Arc::new(FakeFleet::new());
    let dc = "/opt/exp/docker-compose.yml";
    let h = fleet.host("a");
    h.on(PROBE, running());
    let deploy = |v: &str| play("p", &["a"], &[copy(dc, v), compose("/opt/exp")]);
    let first = run(&fleet, vec![deploy("v1")]).await;
    assert_eq!(status(&first, "a"), HostStatus::Changed, "{first:?}");
    assert_eq!((h.count(UP), own_ups(&h)), (1, 0), "{:?}", h.log());
    let detail = first.hosts[0].tasks[1].detail.clone().unwrap_or_default();
    assert_eq!(detail, "up -d (compose file changed)");

    let same = run(&fleet, vec![deploy("v1")]).await;
    assert_eq!(status(&same, "a"), HostStatus::Ok, "{same:?}");
    assert_eq!(h.count(UP), 1, "nothing follows an unchanged write");

    // A failed `up -d` after the write fails the compose step, not the write.
    h.on(UP, Reply::fail(1, "no such image"));
    let failed = run(&fleet, vec![deploy("v2")]).await;
    assert_eq!(status(&failed, "a"), HostStatus::Failed, "{failed:?}");
    assert_eq!(failed.hosts[0].failed_at.as_deref(), Some("compose up"));
    assert_eq!(h.file(dc).expect("dc").content, b"v2");
    assert_eq!((h.count(UP), own_ups(&h)), (2, 0));

    let mut ex = executor(&fleet, 10);
    Arc::get_mut(&mut ex).expect("sole owner").opts.check = true;
    let checked = ex
        .run(Arc::new(Plan {
            plays: vec![deploy("v3")],
        }))
        .await;
    assert_eq!(status(&checked, "a"), HostStatus::Changed, "{checked:?}");
    assert_eq!(h.count(UP), 2, "--check ran up -d");
}

/// A connection lost while the `up -d` run by the write was running was the write's failure:
/// the write was retried (the file looked unwritten) and the host failed at the file step. The
/// write is done once the upload says so; the loss is the compose step's, as on a channel of
/// its own: unreachable, and `up -d` not run again. A timeout likewise.
#[tokio::test]
async fn a_connection_lost_during_the_up_after_the_write_was_blamed_on_the_write() {
    for (reply, want) in [
        (Reply::Lost, HostStatus::Unreachable),
        (Reply::TimedOut, HostStatus::Failed),
    ] {
        let fleet = Arc::new(FakeFleet::new());
        let dc = "/opt/exp/docker-compose.yml";
        let h = fleet.host("a");
        h.on(PROBE, running());
        h.on(AFTER_WRITE, reply);
        let r = run(
            &fleet,
            vec![play("p", &["a"], &[copy(dc, "v1"), compose("/opt/exp")])],
        )
        .await;
        assert_eq!(status(&r, "a"), want, "{r:?}");
        assert_eq!(r.hosts[0].failed_at.as_deref(), Some("compose up"), "{r:?}");
        let outcomes: Vec<_> = r.hosts[0].tasks.iter().map(|t| t.outcome).collect();
        assert_eq!(outcomes, [Some(crate::modules::Outcome::Changed), None]);
        assert_eq!((h.count("upload"), h.count(UP)), (1, 1), "{:?}", h.log());
    }
}

/// A second interrupt while the write's round trip ran the next step's `up -d` abandoned the
/// write step: the file it had written was not recorded for `rollback`, and the report named
/// the write as in flight. Once the upload says the file is written, the file is recorded and
/// the compose step is the one abandoned.
#[tokio::test]
async fn a_second_interrupt_during_the_up_run_by_the_write_lost_the_written_file() {
    let fleet = Arc::new(FakeFleet::new());
    let ex = executor(&fleet, 1);
    let dc = "/opt/exp/docker-compose.yml";
    let h = fleet.host("a");
    h.on(PROBE, running());
    h.on(AFTER_WRITE, Reply::Hang);
    let p = play("p", &["a"], &[copy(dc, "v1"), compose("/opt/exp")]);
    let running = tokio::spawn({
        let ex = ex.clone();
        async move { ex.run(Arc::new(Plan { plays: vec![p] })).await }
    });
    let r = second_interrupt_once(&h, AFTER_WRITE, &ex, running).await;
    assert_eq!(status(&r, "a"), HostStatus::NotRun);
    let err = r.hosts[0].error.clone().unwrap_or_default();
    assert!(err.contains("aborted during `compose up`"), "{err}");
    assert_eq!(r.hosts[0].changed_files, [dc]);
    let tasks: Vec<_> = r.hosts[0]
        .tasks
        .iter()
        .map(|t| (t.task.as_str(), t.outcome))
        .collect();
    assert_eq!(tasks, [(dc, Some(crate::modules::Outcome::Changed))]);
}

/// An interrupt that came while a write ran the next step's `up -d` (in its round trip)
/// reported that `up -d` as never run, so the host looked half-done; it is reported as done,
/// and nothing after it starts.
#[tokio::test]
async fn an_interrupt_during_the_write_reported_the_up_it_ran_as_not_run() {
    let fleet = Arc::new(FakeFleet::new());
    let ex = executor(&fleet, 1);
    let cancel = ex.cancel.clone();
    let dc = "/opt/exp/docker-compose.yml";
    let h = fleet.host("a");
    h.on(PROBE, running());
    h.on(AFTER_WRITE, Reply::Call(Arc::new(move || cancel.cancel())));
    let steps = [copy(dc, "v1"), compose("/opt/exp"), command("metrics-next")];
    let r = ex
        .run(Arc::new(Plan {
            plays: vec![play("p", &["a"], &steps)],
        }))
        .await;
    assert!(r.interrupted);
    let tasks: Vec<_> = r.hosts[0].tasks.iter().map(|t| t.outcome).collect();
    assert_eq!(
        tasks,
        [
            Some(crate::modules::Outcome::Changed),
            Some(crate::modules::Outcome::Changed)
        ],
        "{r:?}"
    );
    assert_eq!(status(&r, "a"), HostStatus::NotRun);
    assert_eq!(h.count("metrics-next"), 0);
}

/// A rotated Consul token or certificate took effect only at the agents' next restart: the
/// files are mounted into the containers and read at start, and `up -d` leaves a running
/// container alone when its definition did not change. A file in `restart_on` that the play
/// changed now restarts the project's services (after `up -d` when that runs too); an
/// unchanged one does not.
#[tokio::test]
async fn a_rotated_token_file_left_the_running_services_on_the_old_one() {
    let fleet = Arc::new(FakeFleet::new());
    let (dc, token) = ("/opt/c/docker-compose.yml", "/opt/c/acl.json");
    const RESTART: &str = "restart 1>&2";
    let h = fleet.host("a");
    h.on(PROBE, running());
    let deploy = |token_text: &str, compose_text: &str| {
        let mut c = fixtures::compose("/opt/c", &["node-exporter"]);
        c.restart_on = vec![token.to_string()];
        play(
            "p",
            &["a"],
            &[
                copy(token, token_text),
                copy(dc, compose_text),
                compose_step(c),
            ],
        )
    };
    // Both files new, the services already running (the probe says so): up -d, then a
    // restart (the token is new too).
    let first = run(&fleet, vec![deploy("t1", "v1")]).await;
    assert_eq!(status(&first, "a"), HostStatus::Changed, "{first:?}");
    assert_eq!((h.count(UP), h.count(RESTART)), (1, 1));
    // Nothing changed: neither.
    let same = run(&fleet, vec![deploy("t1", "v1")]).await;
    assert_eq!(status(&same, "a"), HostStatus::Ok, "{same:?}");
    assert_eq!((h.count(UP), h.count(RESTART)), (1, 1));
    // The token rotated, the compose file did not: a restart alone, and it says why.
    let rotated = run(&fleet, vec![deploy("t2", "v1")]).await;
    assert_eq!(status(&rotated, "a"), HostStatus::Changed, "{rotated:?}");
    assert_eq!((h.count(UP), h.count(RESTART)), (1, 2));
    let detail = rotated.hosts[0].tasks[2].detail.clone().unwrap_or_default();
    assert_eq!(detail, format!("restart ({token} changed)"));
    // A failed restart fails the task, named as such (the script exits 12 then).
    h.on(RESTART, Reply::fail(12, "no such service"));
    let failed = run(&fleet, vec![deploy("t3", "v1")]).await;
    assert_eq!(status(&failed, "a"), HostStatus::Failed, "{failed:?}");
    let error = failed.hosts[0].error.clone().unwrap_or_default();
    assert!(error.contains("compose restart failed"), "{error}");
}

#[tokio::test]
async fn a_rollback_plan_puts_the_previous_file_back_and_recreates_the_project() {
    let fleet = Arc::new(FakeFleet::new());
    let dc = "/opt/exp/docker-compose.yml";
    fleet.host("a").on(PROBE, running());
    let deploy = |v: &str| play("p", &["a"], &[copy(dc, v), compose("/opt/exp")]);
    run(&fleet, vec![deploy("v1")]).await;
    let second = run(&fleet, vec![deploy("v2")]).await;
    assert_eq!(second.hosts[0].changed_files, [dc]);
    let files = std::collections::BTreeMap::from([("a".to_string(), vec![dc.to_string()])]);
    let back = run(&fleet, vec![deploy("v2").rollback(&files)]).await;
    assert_eq!(status(&back, "a"), HostStatus::Changed, "{back:?}");
    let h = fleet.host("a");
    assert_eq!(h.file(dc).expect("dc").content, b"v1");
    assert_eq!(h.file(&format!("{dc}.prev")).expect("prev").content, b"v2");
    // Every run that changed the compose file forced `up -d`: v1, v2, the rollback; each in
    // the round trip of its write (the restore's too).
    assert_eq!((h.count(UP), own_ups(&h)), (3, 0), "{:?}", h.log());
}

#[tokio::test]
async fn one_connection_per_host_for_the_run_and_at_most_forks_open_in_one_play() {
    let fleet = Arc::new(FakeFleet::new());
    let names: Vec<String> = (0..12).map(|i| format!("h{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let ex = executor(&fleet, 3);
    let one = play("one", &names, &[command("first")]);
    let r = ex.run(Arc::new(Plan { plays: vec![one] })).await;
    assert_eq!(r.count(HostStatus::Changed), names.len());
    assert!(fleet.peak_open() <= 3, "{} open at once", fleet.peak_open());
    assert_eq!(fleet.open(), 0, "connections left open");

    // Two plays: a host keeps its connection between them and closes it after the last.
    let fleet = Arc::new(FakeFleet::new());
    let ex = executor(&fleet, 3);
    fleet.host("h00").on("second", Reply::fail(1, "broken"));
    let plays = vec![
        play("one", &names, &[command("first")]),
        play("two", &names, &[command("second")]),
    ];
    ex.run(Arc::new(Plan { plays })).await;
    for h in &names {
        assert_eq!(fleet.attempts(h), 1, "{h} connected again");
        let log: Vec<String> = fleet
            .host(h)
            .log()
            .iter()
            .map(|op| op.trim().to_string())
            .collect();
        assert_eq!(log, ["first", "second", "close"], "{h}");
    }
    assert_eq!(fleet.open(), 0);
}

#[tokio::test]
async fn a_handler_runs_once_when_notified_by_a_change_and_never_after_a_failure() {
    let fleet = Arc::new(FakeFleet::new());
    let mut write = copy("/etc/exp.yml", "v1");
    write.notify = vec!["reload".into()];
    let mut also = copy("/etc/exp2.yml", "v1");
    also.notify = vec!["reload".into()];
    let handler = command("reload exporter");
    let mut p = play("p", &["a", "b"], &[write, also]);
    for hp in &mut p.hosts {
        hp.handlers = vec![Step {
            name: "reload".into(),
            ..handler.clone()
        }];
    }
    // b's second write fails: its handler must not run although the first write changed.
    fleet
        .host("b")
        .on("upload /etc/exp2.yml", Reply::fail(1, "denied"));
    run(&fleet, vec![p.clone()]).await;
    assert_eq!(fleet.host("a").count("reload exporter"), 1);
    assert_eq!(fleet.host("b").count("reload exporter"), 0);
    // Nothing changed: nothing notified.
    run(&fleet, vec![p]).await;
    assert_eq!(fleet.host("a").count("reload exporter"), 1);
}

#[tokio::test]
async fn check_mode_writes_nothing_and_runs_no_command() {
    let fleet = Arc::new(FakeFleet::new());
    let dc = "/opt/exp/docker-compose.yml";
    let mut ex = executor(&fleet, 10);
    Arc::get_mut(&mut ex).expect("sole owner").opts.check = true;
    fleet.host("a").on(PROBE, running());
    let p = play(
        "p",
        &["a"],
        &[copy(dc, "v1"), command("migrate"), compose("/opt/exp")],
    );
    let r = ex.run(Arc::new(Plan { plays: vec![p] })).await;
    assert!(r.check);
    let h = fleet.host("a");
    assert_eq!(h.count("upload"), 0, "{:?}", h.log());
    assert_eq!(h.count("migrate"), 0, "{:?}", h.log());
    assert_eq!(h.count(UP), 0, "{:?}", h.log());
    assert_eq!(h.file(dc), None);
    let details: Vec<String> = r.hosts[0]
        .tasks
        .iter()
        .map(|t| t.detail.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        details,
        [
            format!("would write {dc}"),
            "would run: migrate".to_string(),
            "would run up -d (compose file changed)".to_string()
        ]
    );
    assert!(
        r.hosts[0].changed_files.is_empty(),
        "check records no change"
    );
}

/// Issue 14 point 6: the executor asks a host's facts before its first step, so a host that
/// is already as planned costs one round trip (the facts batch), in a deploy and in `--check`.
#[tokio::test]
async fn an_unchanged_host_costs_one_round_trip_in_deploy_and_check() {
    for check in [false, true] {
        let fleet = Arc::new(FakeFleet::new());
        let dc = "/opt/exp/docker-compose.yml";
        let h = fleet.host("a");
        h.put(dc, b"v1", 0o644);
        let sha = crate::modules::file::sha256_hex(b"v1");
        h.on(
            "pf_fact_marker=",
            Reply::facts_batch(vec![
                format!("file 644 0 0 root root {sha}"),
                "__compose docker compose\n__expected node-exporter\n__running node-exporter"
                    .into(),
            ]),
        );
        let mut ex = executor(&fleet, 10);
        Arc::get_mut(&mut ex).expect("sole owner").opts.check = check;
        let p = play("p", &["a"], &[copy(dc, "v1"), compose("/opt/exp")]);
        let r = ex.run(Arc::new(Plan { plays: vec![p] })).await;
        assert_eq!(status(&r, "a"), HostStatus::Ok, "check={check} {r:?}");
        let ops: Vec<String> = h.log().into_iter().filter(|op| op != "close").collect();
        assert_eq!(ops.len(), 1, "check={check}: {ops:?}");
        assert!(ops[0].contains("pf_fact_marker="), "{ops:?}");
    }
}
