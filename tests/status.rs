//! Issue "Fleet status, drift and smoke tests": `promfleet status` on a real-sshd fleet (compose
//! stand-in, Consul test double, real Prometheus) after a rollout — all green, then each drift
//! made by hand shows in its own column with exit 5, and an outage with exit 6; the central
//! services are reported down when they do not answer. `promfleet alert test` against real
//! Alertmanager reaches the sink of the tested group and no other.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::sshd::Fleet;

use crate::support::*;

/// `promfleet status … --output json`: (exit code, report).
fn status_json(inv: &Path, fleet: &Fleet, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "--output",
        "json",
        "--retries",
        "1",
        "--connect-timeout",
        "3",
    ];
    args.extend_from_slice(extra);
    let out = fleet_run(&["status"], inv, fleet, &args);
    let code = out.status.code().unwrap_or(-1);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status printed no JSON ({e}); stdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (code, v)
}

fn row<'a>(r: &'a Value, host: &str) -> &'a Value {
    r["hosts"]
        .as_array()
        .and_then(|a| a.iter().find(|h| h["host"] == host))
        .unwrap_or_else(|| panic!("no row for {host}: {r:#}"))
}

/// (state, summary) of one column of one host.
fn cell(r: &Value, host: &str, column: &str) -> (String, String) {
    let c = &row(r, host)["checks"][column];
    (
        c["state"].as_str().unwrap_or("?").to_string(),
        c["summary"].as_str().unwrap_or("?").to_string(),
    )
}

/// Columns of a host that are not ok.
fn not_ok(r: &Value, host: &str) -> Vec<String> {
    row(r, host)["checks"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, c)| c["state"] != "ok")
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn status_reports_a_healthy_fleet_then_each_drift_and_outage_in_its_column() {
    if !require_root() || !have("prometheus") {
        eprintln!("SKIPPED: needs root and Debian's prometheus");
        return;
    }
    let consul = Double::start();
    let fleet = Fleet::builder()
        .hosts(4)
        .groups(&["IDE", "Stage"])
        .monitoring_host(true)
        .consul_agents([consul.d.url()])
        .start()
        .expect("fleet");
    let inv = fleet.root().join("inventory.yml");
    fleet.write_inventory(&inv).expect("inventory");
    let book = repo().join("playbooks/exporters.yml");
    let out = fleet_run(
        &["exporters", "--playbook", book.to_str().expect("utf8")],
        &inv,
        &fleet,
        &["--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "rollout:\n{}", stderr(&out));

    // Real Prometheus with promfleet's relabels, discovering through the double.
    let (prom, job) = Prometheus::for_fleet(&fleet, &consul, None);
    let job2 = job.clone();
    wait_targets(&consul, &prom, "all 8 exporters up", move |t| {
        let mine: Vec<&Value> = t
            .iter()
            .filter(|x| x["scrapePool"] == job2.as_str())
            .collect();
        mine.len() == 8 && mine.iter().all(|x| x["health"] == "up")
    });

    // Central services that are not running here answer nowhere: free ports, nothing bound.
    let inv_status = fleet.root().join("inventory-status.yml");
    fleet
        .inventory()
        .var("prometheus_url", prom.url.clone())
        .var("alertmanager_port", free_port())
        .var("grafana_port", free_port())
        .var("dingtalk_port", free_port())
        .var("karma_port", free_port())
        .write(&inv_status)
        .expect("inventory");
    let hosts: Vec<testkit::sshd::Host> = fleet.hosts().cloned().collect();
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();

    // 1. Healthy: every column of every host ok, exit 0.
    let (code, r) = status_json(&inv_status, &fleet, &["--scope", "fleet"]);
    for h in &names {
        assert!(not_ok(&r, h).is_empty(), "{h}: {:#}", row(&r, h));
    }
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["summary"]["hosts_ok"], 4, "{r:#}");
    assert_eq!(cell(&r, names[0], "containers").1, "2/2 running");
    assert_eq!(cell(&r, names[0], "consul").1, "ok 2/2");
    assert_eq!(cell(&r, names[0], "targets").1, "up 2/2");
    assert!(
        cell(&r, names[0], "node-exporter").1.ends_with("samples"),
        "{:#}",
        row(&r, names[0])
    );
    // The human table (captured for the README with --nocapture).
    let text = fleet_run(&["status"], &inv_status, &fleet, &["--scope", "fleet"]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    eprintln!("--- status, healthy ---\n{}", stdout(&text));
    assert!(
        stdout(&text).contains("4 hosts: 4 ok, 0 drift, 0 down"),
        "{}",
        stdout(&text)
    );

    // 2. Central services: real Prometheus and the Consul agent ok, the others down → 6.
    let (code, r) = status_json(&inv_status, &fleet, &["--scope", "central"]);
    assert_eq!(code, 6, "{r:#}");
    let central = central_states(&r);
    let want: Vec<(String, String)> = [
        ("consul", "ok"),
        ("prometheus", "ok"),
        ("alertmanager", "down"),
        ("grafana", "down"),
        ("dingtalk", "down"),
        ("karma", "down"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(central, want, "{r:#}");
    let all = fleet_run(&["status"], &inv_status, &fleet, &[]);
    eprintln!("--- status, central down ---\n{}", stdout(&all));
    assert_eq!(all.status.code(), Some(6));

    // 3. A compose file edited by hand: `file` drifts on that host only, exit 5.
    let compose = hosts[0].deploy_dir().join("docker-compose.yml");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&compose)
        .expect("compose file");
    writeln!(f, "# edited by hand").expect("edit");
    drop(f);
    let (code, r) = status_json(&inv_status, &fleet, &["--scope", "fleet"]);
    assert_eq!(
        cell(&r, names[0], "file"),
        ("drift".into(), "differs".into())
    );
    assert_eq!(
        not_ok(&r, names[0]),
        vec!["file"],
        "{:#}",
        row(&r, names[0])
    );
    for h in &names[1..] {
        assert!(not_ok(&r, h).is_empty(), "{h}: {:#}", row(&r, h));
    }
    assert_eq!(code, 5, "{r:#}");

    // 4. A service deregistered behind promfleet's back: `consul` says missing.
    let id = format!("node-exporter-{}-{}", hosts[1].name, hosts[1].ip);
    assert!(consul.d.deregister_direct(&id), "{id} was registered");
    let (code, r) = status_json(&inv_status, &fleet, &["--scope", "fleet"]);
    assert_eq!(
        cell(&r, names[1], "consul"),
        ("drift".into(), "missing: node-exporter".into())
    );
    assert_eq!(code, 5, "{r:#}");

    // 5. A service's meta changed: `consul` says differs, naming the field.
    let id = format!("cadvisor-exporter-{}-{}", hosts[2].name, hosts[2].ip);
    assert!(consul.d.set_service_meta(&id, "group", "Elsewhere"));
    let (code, r) = status_json(&inv_status, &fleet, &["--scope", "fleet"]);
    assert_eq!(
        cell(&r, names[2], "consul"),
        ("drift".into(), "differs: cadvisor-exporter".into())
    );
    let detail = row(&r, names[2])["checks"]["consul"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains(&format!("meta.group: Elsewhere → {}", hosts[2].group)),
        "{detail}"
    );
    assert_eq!(code, 5, "{r:#}");

    // 6. Exporters stopped on one host: containers drift, endpoints and targets down → 6.
    let victim = &hosts[3];
    stop_exporters(&fleet, victim);
    let addr = format!("{}:9100", victim.ip);
    wait_targets(&consul, &prom, "the stopped exporter down", move |t| {
        t.iter()
            .any(|x| x["discoveredLabels"]["__address__"] == addr.as_str() && x["health"] == "down")
    });
    let (code, r) = status_json(&inv_status, &fleet, &["--scope", "fleet"]);
    assert_eq!(
        cell(&r, names[3], "containers"),
        ("drift".into(), "0/2 running".into())
    );
    assert_eq!(cell(&r, names[3], "node-exporter").0, "down");
    assert_eq!(cell(&r, names[3], "cadvisor-exporter").0, "down");
    assert_eq!(
        cell(&r, names[3], "targets").0,
        "down",
        "{:#}",
        row(&r, names[3])
    );
    assert_eq!(row(&r, names[3])["state"], "down");
    // Drift elsewhere is still reported, but down wins the exit code.
    assert_eq!(cell(&r, names[0], "file").0, "drift");
    assert_eq!(code, 6, "{r:#}");

    // 7. A host whose sshd is gone: unreachable, its SSH facts unknown, exit 6.
    fleet.stop(&hosts[1].name).expect("stop sshd");
    let (code, r) = status_json(&inv_status, &fleet, &["--scope", "fleet"]);
    assert_eq!(
        cell(&r, names[1], "ssh"),
        ("down".into(), "unreachable".into())
    );
    assert_eq!(cell(&r, names[1], "file").0, "unknown");
    assert_eq!(code, 6);
    let text = fleet_run(&["status"], &inv_status, &fleet, &["--scope", "fleet"]);
    eprintln!("--- status, after the drifts ---\n{}", stdout(&text));
    assert_eq!(text.status.code(), Some(6));
}

/// What the webhook sink received.
type Deliveries = Arc<Mutex<Vec<Delivery>>>;

/// A local HTTP sink standing in for the DingTalk webhook (records, answers 200).
fn start_sink() -> (u16, Deliveries) {
    start_sink_in_thread()
}

#[test]
fn alert_test_reaches_the_groups_receiver_and_no_other() {
    if !have("prometheus-alertmanager") {
        eprintln!("SKIPPED: needs Debian's prometheus-alertmanager");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (sink_port, seen) = start_sink();
    let am_port = free_port();
    // No SSH involved: rendering and `alert test` only read the inventory.
    let inv = dir.path().join("inventory.yml");
    std::fs::write(
        &inv,
        format!(
            r#"vars:
  dingtalk_port: {sink_port}
  alertmanager_port: {am_port}
  alertmanager_group_wait: 1s
  alertmanager_group_interval: 1s
  prometheus_port: {p}
  grafana_port: {g}
  karma_port: {k}
consul: {{ agents: ["http://127.0.0.1:{c}"] }}
groups:
  IDE: {{ hosts: [ {{ name: ide-01, ip: 127.0.0.11 }} ] }}
  Stage: {{ hosts: [ {{ name: stage-01, ip: 127.0.0.12 }} ] }}
  Pet: {{ hosts: [ {{ name: pet-01, ip: 127.0.0.13 }} ] }}
monitoring:
  hosts: [ {{ name: mon-01, ip: 127.0.0.1 }} ]
"#,
            p = free_port(),
            g = free_port(),
            k = free_port(),
            c = free_port(),
        ),
    )
    .expect("inventory");
    let rendered = dir.path().join("rendered");
    Run::render(&["playbooks/monitoring.yml"], &inv, &rendered).succeeds();
    let am_cfg = rendered.join("mon-01/opt/promfleet/monitoring/alertmanager/config.yml");
    assert!(am_cfg.is_file(), "{} rendered", am_cfg.display());
    let am = Launch::alertmanager(&am_cfg, &format!("127.0.0.1:{am_port}"))
        .standalone()
        .start();
    am.wait_listening(Duration::from_secs(15));

    // An unknown group is refused, naming the inventory's groups.
    let out = Run::new(&["alert", "test", "--group", "Nope", "-i"])
        .arg(&inv)
        .output();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("groups are: IDE, Stage, Pet"),
        "{}",
        stderr(&out)
    );

    // The Stage test alert: routed to webhook-stage, held past group_wait, resolved.
    let out = Run::new(&[
        "alert", "test", "--group", "Stage", "--output", "json", "-i",
    ])
    .arg(&inv)
    .output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        r[0]["receivers"],
        serde_json::json!(["webhook-stage"]),
        "{r:#}"
    );
    assert_eq!(r[0]["resolved"], true, "{r:#}");

    // The sink got the firing and the resolved notification on Stage's path, nothing else.
    let test_alerts = |seen: &Deliveries| -> Vec<(String, String)> {
        seen.lock()
            .expect("sink")
            .iter()
            .filter(|d| {
                d.body["alerts"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x["labels"]["alertname"] == "PromfleetTest")
                })
            })
            .map(|d| {
                (
                    d.path.clone(),
                    d.body["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let start = Instant::now();
    loop {
        let got = test_alerts(&seen);
        if got.iter().any(|(_, s)| s == "resolved") || start.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = test_alerts(&seen);
    assert!(
        got.contains(&("/dingtalk/webhook-stage/send".into(), "firing".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("/dingtalk/webhook-stage/send".into(), "resolved".into())),
        "{got:?}"
    );
    assert!(
        got.iter().all(|(p, _)| p == "/dingtalk/webhook-stage/send"),
        "test alert reached another receiver: {got:?}"
    );
    let all = seen.lock().expect("sink").clone();
    assert_eq!(all.len(), got.len(), "unexpected deliveries: {all:?}");

    // The central view of the same inventory: Alertmanager ok, the rest down → 6.
    let out = Run::new(&["status", "--scope", "central", "--output", "json", "-i"])
        .arg(&inv)
        .output();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let rows = central_rows(&report(&out));
    let am = rows
        .iter()
        .find(|c| c.service == "alertmanager")
        .expect("alertmanager row");
    assert_eq!(am.state, "ok", "{am:#?}");
    assert!(am.detail.contains("config loaded"), "{am:#?}");

    // Ctrl-C during the hold (the scheduler's cancellation): the hold is cut short, the test
    // alert is still resolved — left firing it would page someone — and the exit is 130.
    const HOLD_SECS: u64 = 600;
    let run = Run::new(&[
        "alert",
        "test",
        "--group",
        "IDE",
        "--output",
        "json",
        "--hold",
        &format!("{HOLD_SECS}s"),
        "-i",
    ])
    .arg(&inv);
    let w = Watched::spawn(run.cmd);
    let ide = "/dingtalk/webhook-ide/send";
    let start = Instant::now();
    while !test_alerts(&seen)
        .iter()
        .any(|(p, s)| p == ide && s == "firing")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "IDE's test alert never fired:\n{}",
            w.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    w.signal(libc::SIGINT);
    // Well before the hold this run set would have ended.
    let (out, _) = w.finish(Duration::from_secs(HOLD_SECS / 2));
    let ctx = format!("{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(130), "{ctx}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        r[0]["receivers"],
        serde_json::json!(["webhook-ide"]),
        "{ctx}"
    );
    assert_eq!(r[0]["resolved"], true, "{ctx}");
    let start = Instant::now();
    while !test_alerts(&seen)
        .iter()
        .any(|(p, s)| p == ide && s == "resolved")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "IDE's test alert was never resolved: {:?}",
            test_alerts(&seen)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
