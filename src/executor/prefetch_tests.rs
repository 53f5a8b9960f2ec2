//! Round trips of deploy's first pass and its run (issue 14 point 6), counted on fake hosts:
//! preflight's one batch per host also asks the facts of the host's first play, so a host
//! already as planned costs that one round trip in all; what preflight asked is used only over
//! the session it was asked on, and never after a wait between stages.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Connector, Executor, RetryPolicy, RunOptions, Scheduler, first_play_facts};
use crate::facts::Primed;
use crate::fixtures::{compose, compose_step, copy_step, file, host};
use crate::inventory::Vars;
use crate::modules::consul::ConsulClient;
use crate::playbook::{HostPlan, Plan, PlannedPlay, Step};
use crate::report::{HostStatus, Masker, RunReport, Silent};
use crate::status::preflight::{Ask, Wants, check_all};
use crate::transport::fake::{FakeFleet, FakeHost, Reply};

const DC: &str = "/opt/exp/docker-compose.yml";

fn steps() -> Vec<Step> {
    vec![
        copy_step(file(DC, b"v1")),
        compose_step(compose("/opt/exp", &["node-exporter"])),
    ]
}

fn play(name: &str, stage: Option<&str>, hosts: &[&str]) -> PlannedPlay {
    PlannedPlay {
        name: name.into(),
        stage: stage.map(String::from),
        serial: None,
        max_fail_percentage: None,
        canary: false,
        gate: None,
        hosts: hosts
            .iter()
            .map(|h| HostPlan {
                host: host(h),
                steps: steps(),
                handlers: Vec::new(),
            })
            .collect(),
    }
}

/// A host where the compose file is as planned and node-exporter runs. Any facts batch is
/// answered: the file and compose probes by what the host holds, every other probe (the
/// system facts preflight asks first) with an empty answer.
fn unchanged(fleet: &FakeFleet, name: &str) -> Arc<FakeHost> {
    let h = fleet.host(name);
    h.put(DC, b"v1", 0o644);
    let file = format!(
        "file 644 0 0 root root {}",
        crate::modules::file::sha256_hex(b"v1")
    );
    let compose = "__compose docker compose\n__expected node-exporter\n__running node-exporter";
    h.on(
        "pf_fact_marker=",
        Reply::Compute(Arc::new(move |cmd: &str| {
            let marker = cmd
                .lines()
                .find_map(|l| l.strip_prefix("pf_fact_marker="))
                .unwrap_or_default()
                .trim_matches('\'')
                .to_string();
            let n = cmd.matches("%s begin").count();
            let mut sections = vec![String::new(); n.saturating_sub(2)];
            sections.extend([file.clone(), compose.to_string()]);
            let mut out = String::new();
            for s in &sections {
                out.push_str(&format!("\n{marker} begin\n{s}\n{marker} end 0\n"));
            }
            Reply::stdout(&out)
        })),
    );
    h
}

fn executor(connector: Arc<Connector>, primed: Primed) -> Arc<Executor> {
    let http = super::http_client();
    Arc::new(Executor {
        connector,
        services: crate::modules::Services::new()
            .with(Arc::new(ConsulClient::new(Vec::new(), None, http.clone())))
            .with(Arc::new(crate::settings::Endpoints::default())),
        http,
        masker: Masker::default(),
        reporter: Arc::new(Silent),
        opts: RunOptions {
            forks: 10,
            primed,
            ..RunOptions::default()
        },
        cancel: CancellationToken::new(),
        abort: CancellationToken::new(),
    })
}

fn connector(fleet: &Arc<FakeFleet>) -> Arc<Connector> {
    let retry = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(1),
        max: Duration::from_millis(1),
    };
    Arc::new(Connector::with(fleet.clone(), retry, 10))
}

/// Deploy's preflight over `connector`, asking each host's first-play facts too.
async fn preflight(connector: &Arc<Connector>, plan: &Plan, primed: &Primed) {
    preflight_as(connector, plan, primed, None).await;
}

/// Deploy's preflight: with `memo`, of hosts past the sessions it keeps (`keep: false`, no
/// facts asked for the run) judged on that memo; without, of kept hosts asked their
/// first-play facts too.
async fn preflight_as(
    connector: &Arc<Connector>,
    plan: &Plan,
    primed: &Primed,
    memo: Option<&crate::status::unchanged::Memo>,
) -> Vec<crate::status::preflight::HostPreflight> {
    use crate::status::unchanged::Unchanged;
    let mut also = first_play_facts(plan);
    let asks = plan
        .hosts()
        .into_iter()
        .map(|h| Ask {
            host: h.clone(),
            wants: Wants::new(h, &Vars::new(), &Vars::new()),
            also: match memo {
                None => also.remove(&h.name).unwrap_or_default(),
                Some(_) => Vec::new(),
            },
            keep: memo.is_none(),
            unchanged: memo.and_then(|m| Unchanged::new(plan, &h.name, m)),
        })
        .collect();
    let sched = Scheduler::new(10, CancellationToken::new(), CancellationToken::new());
    let results = check_all(connector.clone(), asks, &sched, primed).await;
    assert_eq!(results.len(), plan.hosts().len(), "{results:?}");
    results
}

/// Operations a host ran, without the polite close.
fn ops(h: &FakeHost) -> Vec<String> {
    h.log().into_iter().filter(|op| op != "close").collect()
}

fn status(run: &RunReport, host: &str) -> HostStatus {
    run.hosts
        .iter()
        .find(|h| h.host == host)
        .map(|h| h.status)
        .unwrap_or(HostStatus::NotRun)
}

/// Issue 14 point 6: preflight + the run of an unchanged host cost one round trip (the one
/// facts batch); without the hand-over they cost two.
#[tokio::test]
async fn preflight_and_the_first_play_of_an_unchanged_host_cost_one_round_trip() {
    for hand_over in [true, false] {
        let fleet = Arc::new(FakeFleet::new());
        let h = unchanged(&fleet, "a");
        let plan = Arc::new(Plan {
            plays: vec![play("p", None, &["a"])],
        });
        let conn = connector(&fleet);
        let primed = Primed::default();
        preflight(&conn, &plan, &primed).await;
        let used = if hand_over {
            primed.clone()
        } else {
            Primed::default()
        };
        let r = executor(conn.clone(), used).run(plan).await;
        assert_eq!(status(&r, "a"), HostStatus::Ok, "{r:?}");
        let ops = ops(&h);
        assert_eq!(
            ops.len(),
            if hand_over { 1 } else { 2 },
            "hand_over={hand_over}: {ops:?}"
        );
        assert!(
            ops.iter().all(|op| op.contains("pf_fact_marker=")),
            "{ops:?}"
        );
        assert_eq!(fleet.attempts("a"), 1, "one connection for both passes");
        assert!(primed.is_empty() || !hand_over, "taken by the run");
    }
}

/// Facts asked over a session that has since been dropped (reconnected) are not used: the
/// run asks again over its own connection.
#[tokio::test]
async fn facts_asked_over_a_dropped_session_are_asked_again() {
    let fleet = Arc::new(FakeFleet::new());
    let h = unchanged(&fleet, "a");
    let plan = Arc::new(Plan {
        plays: vec![play("p", None, &["a"])],
    });
    let conn = connector(&fleet);
    let primed = Primed::default();
    preflight(&conn, &plan, &primed).await;
    conn.drop_session("a").await;
    let r = executor(conn.clone(), primed).run(plan).await;
    assert_eq!(status(&r, "a"), HostStatus::Ok, "{r:?}");
    assert_eq!(ops(&h).len(), 2, "{:?}", ops(&h));
    assert_eq!(fleet.attempts("a"), 2);
}

/// Answers preflight read before the run are not acted on after a wait between stages: the
/// canary's first play uses them, the next stage's hosts ask again.
#[tokio::test]
async fn facts_from_preflight_are_dropped_at_the_first_stage_boundary() {
    let fleet = Arc::new(FakeFleet::new());
    let (a, b) = (unchanged(&fleet, "a"), unchanged(&fleet, "b"));
    let plan = Arc::new(Plan {
        plays: vec![
            play("p", Some("canary"), &["a"]),
            play("p", Some("rest"), &["b"]),
        ],
    });
    let conn = connector(&fleet);
    let primed = Primed::default();
    preflight(&conn, &plan, &primed).await;
    assert_eq!(primed.len(), 2);
    let r = executor(conn.clone(), primed.clone()).run(plan).await;
    assert_eq!(
        (status(&r, "a"), status(&r, "b")),
        (HostStatus::Ok, HostStatus::Ok)
    );
    assert_eq!(ops(&a).len(), 1, "{:?}", ops(&a));
    assert_eq!(ops(&b).len(), 2, "{:?}", ops(&b));
    assert!(primed.is_empty());
}

/// Regression (issue 14 point 6): a host whose facts batch outlived --command-timeout had
/// its probes run again by its steps, one by one, and the file step's upload after them (2×
/// the timeout or more for a hung host). The batch times out once: the host fails at
/// "gathering facts", timed out, after that one round trip.
#[tokio::test]
async fn timed_out_facts_batch_was_run_again_by_each_step() {
    let fleet = Arc::new(FakeFleet::new());
    let h = fleet.host("a");
    h.on("", Reply::TimedOut);
    let plan = Arc::new(Plan {
        plays: vec![play("p", None, &["a"])],
    });
    let r = executor(connector(&fleet), Primed::default())
        .run(plan)
        .await;
    let host = &r.hosts[0];
    assert_eq!(host.status, HostStatus::Failed, "{r:?}");
    let ops = ops(&h);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert!(ops[0].contains("pf_fact_marker="), "{ops:?}");
    assert_eq!(host.failed_at.as_deref(), Some("gathering facts"));
    let err = host.error.clone().unwrap_or_default();
    assert!(
        err.contains("timed out after") && err.contains("--command-timeout"),
        "{err}"
    );
}

/// Past the sessions preflight keeps (`keep: false`), a host's connection is closed after its
/// check and nothing is kept for it: open connections stay bounded, whatever the fleet size.
#[tokio::test]
async fn a_host_preflight_does_not_keep_is_disconnected_after_its_check() {
    let fleet = Arc::new(FakeFleet::new());
    let (a, b) = (unchanged(&fleet, "a"), unchanged(&fleet, "b"));
    let plan = Plan {
        plays: vec![play("p", None, &["a", "b"])],
    };
    let conn = connector(&fleet);
    let primed = Primed::default();
    let mut also = first_play_facts(&plan);
    let asks = ["a", "b"]
        .iter()
        .map(|name| {
            let h = host(name);
            Ask {
                wants: Wants::new(&h, &Vars::new(), &Vars::new()),
                also: also.remove(*name).unwrap_or_default(),
                keep: *name == "a",
                unchanged: None,
                host: h,
            }
        })
        .collect();
    let sched = Scheduler::new(10, CancellationToken::new(), CancellationToken::new());
    let results = check_all(conn.clone(), asks, &sched, &primed).await;
    assert_eq!(results.len(), 2);
    assert_eq!(fleet.open(), 1, "only the kept host's connection is open");
    assert_eq!(primed.len(), 1);
    assert!(primed.take("a").is_some());
    assert_eq!(ops(&a).len(), 1);
    assert_eq!(
        b.log().last().map(String::as_str),
        Some("close"),
        "{:?}",
        b.log()
    );
}

/// Preflight of hosts past the sessions it keeps, judged unchanged on a memo of the plan's
/// v1 compose file: the light check over a session it then closes.
async fn preflight_released(connector: &Arc<Connector>, plan: &Plan, primed: &Primed) {
    use crate::status::unchanged::Memo;
    let memo = Memo {
        by: Memo::this_build(),
        at: "2026-12-01T00:00:00Z".into(),
        verdict: crate::status::preflight::Verdict::Ready,
        adaptations: Vec::new(),
        files: std::collections::BTreeMap::from([(
            DC.to_string(),
            crate::modules::file::sha256_hex(b"v1"),
        )]),
    };
    let results = preflight_as(connector, plan, primed, Some(&memo)).await;
    assert!(
        results.iter().all(|r| r.unchanged_since.is_some()),
        "{results:?}"
    );
}

/// Issue 14 point 6 at scale: a host past the sessions preflight keeps open was connected
/// again for its run, only to ask what preflight had just read (1.9 connections per host on a
/// 1,000-host re-run). Its answers now outlive the session: an unchanged host's run opens
/// none; one whose run must act connects then, once, and acts.
#[tokio::test]
async fn an_unchanged_host_past_the_kept_sessions_was_connected_again_for_its_run() {
    let fleet = Arc::new(FakeFleet::new());
    let h = unchanged(&fleet, "a");
    let plan = Arc::new(Plan {
        plays: vec![play("p", None, &["a"])],
    });
    let conn = connector(&fleet);
    let primed = Primed::default();
    preflight_released(&conn, &plan, &primed).await;
    assert_eq!(fleet.attempts("a"), 1);
    let r = executor(conn.clone(), primed.clone()).run(plan).await;
    assert_eq!(status(&r, "a"), HostStatus::Ok, "{r:?}");
    assert_eq!(fleet.attempts("a"), 1, "the run opened no session");
    assert_eq!(ops(&h).len(), 1, "only preflight's batch: {:?}", ops(&h));
    assert!(primed.is_empty(), "taken by the run");

    // The run must write (the plan's file is v2 where the host and the memo hold v1): the
    // session is opened at the first step that needs it, and the step runs on it.
    let fleet = Arc::new(FakeFleet::new());
    let h = unchanged(&fleet, "b");
    let mut p = play("p", None, &["b"]);
    p.hosts[0].steps[0] = copy_step(file(DC, b"v2"));
    let plan = Arc::new(Plan { plays: vec![p] });
    let conn = connector(&fleet);
    let primed = Primed::default();
    preflight_released(&conn, &plan, &primed).await;
    let r = executor(conn.clone(), primed).run(plan).await;
    assert_eq!(status(&r, "b"), HostStatus::Changed, "{r:?}");
    assert_eq!(fleet.attempts("b"), 2, "{:?}", ops(&h));
    assert_eq!(
        h.file(DC).map(|f| f.content),
        Some(b"v2".to_vec()),
        "{:?}",
        ops(&h)
    );
}
