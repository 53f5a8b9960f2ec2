//! Topologies beyond one monitoring host (issue 17): HA replicas with an Alertmanager gossip
//! cluster, several datacenters under a global Prometheus tier. Every config here is what
//! `promfleet render` produces from an inventory; the proofs run Debian's real `prometheus`
//! and `prometheus-alertmanager` on 127.0.0.x loopback addresses (one address per monitoring
//! host, so the rendered `host:port` addresses are used as they are). Nothing leaves
//! 127.0.0.0/8.
//!
//! What this cannot prove: the containers themselves (no registry here), Karma and Grafana
//! reading their rendered files, real Consul (the doubles stand in; their http_sd view replaces
//! consul_sd, which Debian's Prometheus lacks).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::consul_double::{ConsulDouble, DoubleOptions};

use crate::support::*;

/// A port that is free on every one of `ips` (each process binds its own address).
fn common_port(ips: &[&str]) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind((ips[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        if ips[1..]
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}")
}

/// `promfleet render <playbooks> -i <inventory> --out <dir>`, which must succeed.
fn render(inventory: &Path, out: &Path, playbooks: &[&str]) {
    Run::render(playbooks, inventory, out).succeeds();
}

/// The rendered monitoring tree of one host (`monitoring_dir` is /opt/promfleet/monitoring).
fn mon_dir(out: &Path, host: &str) -> PathBuf {
    out.join(host).join("opt/promfleet/monitoring")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .unwrap()
}

async fn get_json(url: &str) -> Option<Value> {
    let r = http().get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// The value of an unlabelled-or-summed counter in a /metrics page (0 when absent).
async fn metric_sum(base: &str, name: &str) -> f64 {
    let Ok(r) = http().get(format!("{base}/metrics")).send().await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Firing notifications of alert `name` among `deliveries`, with the sink that got each.
fn notifications(sinks: &[(String, Arc<Mutex<Vec<Delivery>>>)], name: &str) -> Vec<String> {
    let mut got = Vec::new();
    for (ip, seen) in sinks {
        for d in seen.lock().unwrap().iter() {
            let firing = d.body["status"] == "firing";
            let has = d.body["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == name));
            if firing && has {
                got.push(format!("{ip}{}", d.path));
            }
        }
    }
    got
}

/// `promfleet status --scope central --output json`: (host, state, summary) of every
/// Alertmanager row.
async fn alertmanager_rows(inv: &Path) -> Vec<(String, String, String)> {
    service_rows(inv, "alertmanager").await
}

/// `promfleet status --scope central --output json`: (at, state, summary) of every row of
/// `service`.
async fn service_rows(inv: &Path, service: &'static str) -> Vec<(String, String, String)> {
    let inv = inv.to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        Run::new(&["status", "-i"])
            .arg(&inv)
            .arg("--scope")
            .arg("central")
            .arg("--output")
            .arg("json")
            .arg("--state-dir")
            .arg(inv.with_file_name("state"))
            .output()
    })
    .await
    .unwrap();
    central_rows(&report(&o))
        .into_iter()
        .filter(|r| r.service == service)
        .map(|r| (r.at, r.state, r.summary))
        .collect()
}

/// `promfleet alert test --group IDE --output json`, at `alertmanagers` when given (else the
/// inventory's): its output, its report and the notifications it counted per Alertmanager.
async fn alert_test(inv: &Path, alertmanagers: Vec<String>) -> (Output, Value, Vec<u64>) {
    let inv = inv.to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        let mut r =
            Run::new(&["alert", "test", "--group", "IDE", "--output", "json", "-i"]).arg(&inv);
        for u in alertmanagers {
            r = r.arg("--alertmanager").arg(u);
        }
        r.output()
    })
    .await
    .unwrap();
    let r: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("alert test printed no JSON ({e}): {}", stderr(&o)));
    let per_am = r
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| x["notifications"].as_u64().expect("counted"))
        .collect();
    (o, r, per_am)
}

const PEER_TIMEOUT_S: u64 = 2;

/// issue 17, proof 1: three real Alertmanagers in one gossip cluster (flags from the rendered
/// compose file), two real Prometheus replicas (rendered HA prometheus.yml) firing the same
/// alert → one notification; after the Alertmanager that sent it is killed, the survivors do
/// not send it again, and a new alert is still notified exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_alertmanager_cluster_of_three_notifies_once_even_after_losing_one() {
    let (Some(_), Some(_)) = (tool("prometheus-alertmanager"), tool("prometheus")) else {
        eprintln!("SKIPPED: needs Debian's prometheus and prometheus-alertmanager");
        return;
    };
    let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let names = ["mon-01", "mon-02", "mon-03"];
    let am_port = common_port(&ips);
    let cluster_port = common_port(&ips);
    let sink_port = common_port(&ips);
    let prom_port = common_port(&ips);
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yml");
    std::fs::write(
        &inv,
        format!(
            "vars:\n  alertmanager_port: {am_port}\n  alertmanager_cluster_port: {cluster_port}\n  \
             dingtalk_port: {sink_port}\n  prometheus_port: {prom_port}\n  \
             alertmanager_group_wait: 1s\n  alertmanager_group_interval: 1s\n  \
             alertmanager_peer_timeout: {PEER_TIMEOUT_S}s\n  prometheus_evaluation_interval: 1s\n\
             consul: {{agents: [http://127.0.0.11:8500]}}\n\
             groups:\n  IDE: {{hosts: [{{name: ide-01, ip: 127.0.0.31}}]}}\n\
             monitoring:\n  hosts:\n    - {{name: mon-01, ip: 127.0.0.11}}\n    \
             - {{name: mon-02, ip: 127.0.0.12}}\n    - {{name: mon-03, ip: 127.0.0.13}}\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("rendered");
    render(&inv, &out, &["playbooks/monitoring.yml"]);

    // Sinks standing in for each host's DingTalk webhook (each Alertmanager posts to its own).
    let mut sinks = Vec::new();
    for ip in ips {
        let (_, seen) = start_sink_on(&format!("{ip}:{sink_port}")).await;
        sinks.push((ip.to_owned(), seen));
    }

    // The Alertmanagers, with the cluster flags of the rendered compose file.
    let mut ams: Vec<Option<Engine>> = Vec::new();
    for (ip, name) in ips.iter().zip(names) {
        let mon = mon_dir(&out, name);
        let compose = yaml(&read(mon.join("docker-compose.yml")));
        let flags: Vec<String> = compose["services"]["alertmanager"]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .filter(|f| f.starts_with("--cluster."))
            .collect();
        let peers: Vec<&String> = flags
            .iter()
            .filter(|f| f.starts_with("--cluster.peer="))
            .collect();
        assert_eq!(peers.len(), 2, "{name}: {flags:?}");
        assert!(
            flags.contains(&format!("--cluster.advertise-address={ip}:{cluster_port}")),
            "{name}: {flags:?}"
        );
        let mut am = Launch::alertmanager(
            &mon.join("alertmanager/config.yml"),
            &format!("{ip}:{am_port}"),
        );
        for f in &flags {
            // Each process binds its own host address instead of the container's 0.0.0.0.
            am = am.arg(f.replace("=0.0.0.0:", &format!("={ip}:")));
        }
        ams.push(Some(am.start()));
    }
    let am_url = |ip: &str| format!("http://{ip}:{am_port}");
    for (ip, am) in ips.iter().zip(&ams) {
        let ready = wait_for(Duration::from_secs(30), async || {
            let s = get_json(&format!("{}/api/v2/status", am_url(ip))).await?;
            let peers = s["cluster"]["peers"].as_array()?.len();
            (s["cluster"]["status"] == "ready" && peers == 3).then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "{ip}: no 3-peer cluster within 30 s; log:\n{}",
            am.as_ref().map(Engine::log).unwrap_or_default()
        );
    }

    // `status` shows every replica and the cluster each one sees.
    let rows = alertmanager_rows(&inv).await;
    let want: Vec<(String, String, String)> = names
        .iter()
        .map(|n| (n.to_string(), "ok".into(), "cluster ready 3/3 peers".into()))
        .collect();
    assert_eq!(rows, want);

    // Two Prometheus replicas: rendered config, plus a probe rule that always fires.
    let rule = |name: &str| {
        format!(
            "groups:\n  - name: probe\n    rules:\n      - alert: {name}\n        expr: vector(1)\n        \
             labels: {{group: IDE, instance: ide-01, severity: warning}}\n        \
             annotations: {{title: probe, description: probe}}\n"
        )
    };
    let mut proms = Vec::new();
    for (ip, name) in ips.iter().zip(names).take(2) {
        let prom = mon_dir(&out, name).join("prometheus");
        let mut cfg = yaml(&read(prom.join("prometheus.yml")));
        assert_eq!(cfg["global"]["external_labels"]["replica"], name);
        let targets = &cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"];
        let want: Vec<String> = ips.iter().map(|i| format!("{i}:{am_port}")).collect();
        assert_eq!(
            targets,
            &json!(want),
            "every replica alerts to every Alertmanager"
        );
        // Only the alerting path is under test: no scrape jobs (their targets are not here).
        cfg["scrape_configs"] = json!([]);
        let runnable = prom.join("prometheus.test.yml");
        std::fs::write(&runnable, serde_json::to_string(&cfg).unwrap()).unwrap();
        std::fs::write(prom.join("rules/probe.rules.yml"), rule("HaProbe")).unwrap();
        proms.push(
            Launch::prometheus(&runnable, &format!("{ip}:{prom_port}"))
                .arg("--web.enable-lifecycle")
                // The first evaluation can run before the static Alertmanagers are known, and a
                // dropped alert is re-sent only after this delay (default 1m).
                .arg("--rules.alert.resend-delay=2s")
                .start(),
        );
    }

    // Every Alertmanager has the alert from both replicas (the same alert: `replica` dropped).
    for ip in ips {
        let got = wait_for(Duration::from_secs(60), async || {
            let a = get_json(&format!("{}/api/v2/alerts", am_url(ip))).await?;
            let probes: Vec<&Value> = a
                .as_array()?
                .iter()
                .filter(|x| x["labels"]["alertname"] == "HaProbe")
                .collect();
            (!probes.is_empty()).then(|| {
                probes
                    .iter()
                    .map(|p| p["labels"].clone())
                    .collect::<Vec<_>>()
            })
        })
        .await;
        let got = got.unwrap_or_else(|| {
            panic!(
                "{ip} never received HaProbe; prometheus log:\n{}",
                proms[0].log()
            )
        });
        assert_eq!(got.len(), 1, "{ip} holds HaProbe more than once: {got:?}");
        assert!(got[0].get("replica").is_none(), "{got:?}");
        assert_eq!(got[0]["dc"], "dc1");
    }

    let first = wait_for(Duration::from_secs(60), async || {
        let n = notifications(&sinks, "HaProbe");
        (!n.is_empty()).then_some(n)
    })
    .await
    .expect("no notification for HaProbe within 60 s");
    // Each peer decides after waiting its position × peer timeout, then asks the shared
    // notification log. Once every peer has asked it twice, every one has decided.
    for ip in ips {
        let asked = wait_for(Duration::from_secs(10 * PEER_TIMEOUT_S), async || {
            (metric_sum(&am_url(ip), "alertmanager_nflog_queries_total").await >= 2.0).then_some(())
        })
        .await;
        assert!(asked.is_some(), "{ip} never consulted the notification log");
    }
    let all = notifications(&sinks, "HaProbe");
    assert_eq!(all.len(), 1, "HaProbe notified more than once: {all:?}");
    assert!(
        first[0].ends_with("/dingtalk/webhook-ide/send"),
        "{first:?}"
    );

    // Kill the Alertmanager that sent it.
    let sender = ips.iter().position(|ip| first[0].starts_with(ip)).unwrap();
    ams[sender] = None;
    let survivors: Vec<&str> = ips
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != sender)
        .map(|(_, ip)| *ip)
        .collect();
    let before: Vec<f64> = {
        let mut v = Vec::new();
        for ip in &survivors {
            v.push(metric_sum(&am_url(ip), "alertmanager_nflog_queries_total").await);
        }
        v
    };

    // `status`: the killed one is down, the survivors see a cluster short of one member.
    let split = wait_for(Duration::from_secs(60), async || {
        let rows = alertmanager_rows(&inv).await;
        let ok = rows.iter().enumerate().all(|(i, (_, state, summary))| {
            if i == sender {
                state == "down"
            } else {
                state == "drift" && summary.ends_with("2/3 peers")
            }
        });
        ok.then_some(rows)
    })
    .await;
    assert!(
        split.is_some(),
        "status never showed the lost member: {:?}",
        alertmanager_rows(&inv).await
    );

    // A new alert after the loss: both replicas load it (reload), the survivors notify once.
    for (i, (ip, name)) in ips.iter().zip(names).take(2).enumerate() {
        let prom = mon_dir(&out, name).join("prometheus");
        std::fs::write(
            prom.join("rules/probe2.rules.yml"),
            rule("HaProbeAfterLoss"),
        )
        .unwrap();
        let r = http()
            .post(format!("http://{ip}:{prom_port}/-/reload"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("reload prometheus {i}: {e}"));
        assert!(r.status().is_success(), "reload: {}", r.status());
    }
    wait_for(Duration::from_secs(60), async || {
        (!notifications(&sinks, "HaProbeAfterLoss").is_empty()).then_some(())
    })
    .await
    .expect("survivors never notified HaProbeAfterLoss");
    for (ip, b) in survivors.iter().zip(before) {
        let asked = wait_for(Duration::from_secs(10 * PEER_TIMEOUT_S), async || {
            (metric_sum(&am_url(ip), "alertmanager_nflog_queries_total").await >= b + 4.0)
                .then_some(())
        })
        .await;
        assert!(
            asked.is_some(),
            "{ip} stopped consulting the notification log"
        );
    }
    let after = notifications(&sinks, "HaProbeAfterLoss");
    assert_eq!(after.len(), 1, "new alert notified {after:?}");
    assert!(!after[0].starts_with(ips[sender]), "{after:?}");
    let old = notifications(&sinks, "HaProbe");
    assert_eq!(old.len(), 1, "HaProbe re-sent after the loss: {old:?}");

    // `alert test` sends its alert to every surviving Alertmanager, as Prometheus does, and
    // sees exactly one notification go out between them.
    let urls: Vec<String> = survivors.iter().map(|ip| am_url(ip)).collect();
    let (o, r, per_am) = alert_test(&inv, urls).await;
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(per_am.len(), 2, "{r:#}");
    assert_eq!(per_am.iter().sum::<u64>(), 1, "{r:#}");
    assert!(
        stderr(&o).contains("exactly one notification"),
        "{}",
        stderr(&o)
    );
    let test_alert = notifications(&sinks, "PromfleetTest");
    assert_eq!(test_alert.len(), 1, "{test_alert:?}");
    drop(proms);
}

/// issue 17, proof 2: two datacenters, each with a real Prometheus (rendered config) that
/// discovers through its own Consul double's http_sd view, and a real global Prometheus
/// (rendered prometheus-global.yml) federating both: it shows every target of both
/// datacenters, each with its `dc` label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_prometheus_federates_every_target_of_two_datacenters_with_its_dc() {
    let Some(_) = tool("prometheus") else {
        eprintln!("SKIPPED: needs Debian's prometheus");
        return;
    };
    let mon = [
        ("mon-fra", "127.0.0.21", "fra"),
        ("mon-sha", "127.0.0.22", "sha"),
    ];
    let prom_port = common_port(&["127.0.0.21", "127.0.0.22"]);
    let global_port = common_port(&["127.0.0.21"]);
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yml");
    std::fs::write(
        &inv,
        format!(
            "vars: {{primary_datacenter: fra, global_tier: federate, prometheus_port: {prom_port}, \
             prometheus_global_port: {global_port}}}\n\
             consul: {{agents: [http://127.0.0.21:8500, http://127.0.0.22:8500]}}\n\
             groups:\n  IDE:\n    vars: {{datacenter: fra}}\n    hosts:\n      \
             - {{name: ide-01, ip: 127.0.0.41}}\n      - {{name: ide-02, ip: 127.0.0.42}}\n  \
             Stage:\n    vars: {{datacenter: sha}}\n    hosts:\n      - {{name: stage-01, ip: 127.0.0.51}}\n\
             monitoring:\n  hosts:\n    - {{name: mon-fra, ip: 127.0.0.21, vars: {{datacenter: fra}}}}\n    \
             - {{name: mon-sha, ip: 127.0.0.22, vars: {{datacenter: sha}}}}\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("rendered");
    render(&inv, &out, &["playbooks/monitoring.yml"]);

    // One Consul double per datacenter; each fleet host's two "exporters" are sinks (an empty
    // 200 page is a valid, empty scrape).
    let fleet = [
        ("ide-01", "127.0.0.41", "IDE", "fra"),
        ("ide-02", "127.0.0.42", "IDE", "fra"),
        ("stage-01", "127.0.0.51", "Stage", "sha"),
    ];
    let mut doubles = Vec::new();
    for (_, _, dc) in mon {
        let d = ConsulDouble::start_with(DoubleOptions {
            datacenter: dc.to_owned(),
            run_checks: false,
            ..DoubleOptions::default()
        })
        .await
        .unwrap();
        doubles.push(d);
    }
    let mut exporters = Vec::new();
    for (name, ip, group, dc) in fleet {
        let double = &doubles[mon.iter().position(|m| m.2 == dc).unwrap()];
        for svc in ["node-exporter", "cadvisor-exporter"] {
            let (port, seen) = start_sink_on(&format!("{ip}:0")).await;
            exporters.push(seen);
            double
                .register_direct(json!({
                    "ID": format!("{svc}-{name}-{ip}"), "Name": svc, "Address": ip, "Port": port,
                    "Meta": {"hostname": name, "group": group},
                }))
                .unwrap();
        }
    }

    // The datacenter Prometheus instances, discovering only through their own double.
    let mut procs = Vec::new();
    for ((name, ip, dc), double) in mon.iter().zip(&doubles) {
        let prom = mon_dir(&out, name).join("prometheus");
        let rendered = read(prom.join("prometheus.yml"));
        let parsed = yaml(&rendered);
        let job = &parsed["scrape_configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j.get("consul_sd_configs").is_some())
            .unwrap()["consul_sd_configs"];
        assert!(
            job.as_array()
                .unwrap()
                .iter()
                .all(|sd| sd["datacenter"] == *dc),
            "{name} must discover only {dc}: {job}"
        );
        let (cfg, _) = testkit::prometheus::runnable_config(
            &rendered,
            &format!("{}/promfleet-double/http_sd", double.url()),
        )
        .unwrap();
        assert_eq!(yaml(&cfg)["global"]["external_labels"]["dc"], *dc);
        let file = prom.join("prometheus.test.yml");
        std::fs::write(&file, cfg).unwrap();
        procs.push(Launch::prometheus(&file, &format!("{ip}:{prom_port}")).start());
    }

    // The global tier, on the primary datacenter's host, as rendered (intervals shortened).
    let global_dir = mon_dir(&out, "mon-fra").join("prometheus-global");
    let mut cfg = yaml(&read(global_dir.join("prometheus.yml")));
    cfg["global"]["scrape_interval"] = json!("1s");
    for job in cfg["scrape_configs"].as_array().unwrap() {
        if job["job_name"].as_str().unwrap().starts_with("federate-") {
            assert_eq!(job["honor_labels"], true, "{job}");
        }
    }
    let file = global_dir.join("prometheus.test.yml");
    std::fs::write(&file, serde_json::to_string(&cfg).unwrap()).unwrap();
    procs.push(Launch::prometheus(&file, &format!("127.0.0.21:{global_port}")).start());

    let query = format!(
        "http://127.0.0.21:{global_port}/api/v1/query?query=up%7Bjob%3D%22consul-services%22%7D"
    );
    let mut want: Vec<(String, String, String)> = fleet
        .iter()
        .flat_map(|(name, _, group, dc)| {
            let t = (name.to_string(), group.to_string(), dc.to_string());
            [t.clone(), t]
        })
        .collect();
    want.sort();
    let seen = wait_for(Duration::from_secs(90), async || {
        let r = get_json(&query).await?;
        let mut got: Vec<(String, String, String)> = r["data"]["result"]
            .as_array()?
            .iter()
            .filter(|s| s["value"][1] == "1")
            .map(|s| {
                let l = &s["metric"];
                let t = |k: &str| l[k].as_str().unwrap_or("").to_owned();
                (t("instance"), t("group"), t("dc"))
            })
            .collect();
        got.sort();
        (got == want).then_some(got)
    })
    .await;
    assert!(
        seen.is_some(),
        "global tier never showed {want:?}; last answer: {}",
        get_json(&query).await.unwrap_or_default()
    );
    drop(procs);
}

/// issue 17: `render` of the example inventory of each topology passes promtool, amtool and
/// `docker-compose config`; the HA and multi-datacenter trees carry their topology.
#[test]
fn render_of_each_topology_example_passes_promtool_amtool_and_compose_config() {
    let (Some(promtool), Some(amtool)) = (tool("promtool"), tool("amtool")) else {
        eprintln!("SKIPPED: needs promtool and amtool");
        return;
    };
    let compose = tool("docker-compose").is_some();
    let multi = vec!["mon-fra-1", "mon-fra-2", "mon-sha-1", "mon-sha-2"];
    for (example, extra, mons) in [
        ("single", None, vec!["mon-01"]),
        ("ha", None, vec!["mon-01", "mon-02", "mon-03"]),
        ("multi-dc", None, multi.clone()),
        ("multi-dc", Some("global_tier=remote_write"), multi),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let inv = repo().join(format!("inventory/examples/{example}.yml"));
        let extra: Vec<&str> = extra.iter().flat_map(|e| ["-e", e]).collect();
        Run::render(&[], &inv, dir.path()).args(&extra).succeeds();
        let remote_write = !extra.is_empty();
        for m in &mons {
            let mon = mon_dir(dir.path(), m);
            let prom = mon.join("prometheus/prometheus.yml");
            let out = run_ok(
                Command::new(&promtool)
                    .args(["check", "config"])
                    .arg(http_sd_checkable(&prom)),
            );
            assert!(out.contains("SUCCESS"), "{example}/{m}: {out}");
            let global = mon.join("prometheus-global/prometheus.yml");
            assert_eq!(
                global.is_file(),
                example == "multi-dc" && m.starts_with("mon-fra"),
                "{example}/{m}: global tier only on the primary datacenter"
            );
            if global.is_file() {
                run_ok(
                    Command::new(&promtool)
                        .args(["check", "config"])
                        .arg(&global),
                );
            }
            run_ok(
                Command::new(&amtool)
                    .arg("check-config")
                    .arg(mon.join("alertmanager/config.yml")),
            );
            let cfg = yaml(&read(&prom));
            // remote_write: every datacenter Prometheus pushes to each global replica.
            let pushes = cfg["remote_write"].as_array().map_or(0, Vec::len);
            assert_eq!(pushes, if remote_write { 2 } else { 0 }, "{example}/{m}");
            if global.is_file() {
                let g = yaml(&read(&global)).to_string();
                assert_eq!(g.contains("/federate"), !remote_write, "{g}");
            }
            let labels = &cfg["global"]["external_labels"];
            assert_eq!(
                labels.get("replica").is_some(),
                example != "single",
                "{labels}"
            );
            assert!(labels["dc"].is_string(), "{labels}");
            if compose {
                let c = compose_config(&mon.join("docker-compose.yml"));
                let am = c["services"]["alertmanager"]["command"].to_string();
                assert_eq!(am.contains("--cluster.peer="), example != "single", "{am}");
                assert_eq!(
                    c["services"].get("prometheus-global").is_some(),
                    global.is_file()
                );
                if global.is_file() {
                    let cmd = c["services"]["prometheus-global"]["command"].to_string();
                    assert_eq!(
                        cmd.contains("--web.enable-remote-write-receiver"),
                        remote_write
                    );
                }
            }
        }
        if compose {
            for m in &mons {
                let consul = dir.path().join(m).join("data/consul/docker-compose.yml");
                if consul.is_file() {
                    compose_config(&consul);
                }
            }
        }
        if example == "multi-dc" {
            let am = yaml(&read(
                mon_dir(dir.path(), "mon-sha-1").join("alertmanager/config.yml"),
            ));
            let dcs: Vec<&Value> = am["route"]["routes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| &r["matchers"][0])
                .collect();
            assert_eq!(dcs, [&json!("dc=\"fra\""), &json!("dc=\"sha\"")]);
        }
    }
}

/// Consul agent configuration keys promfleet writes into promfleet-server.json, each as
/// documented by Consul (agent configuration file reference):
/// - `datacenter`, `primary_datacenter`: general parameters,
///   https://developer.hashicorp.com/consul/docs/reference/agent/configuration-file/general
///   (primary_datacenter on every agent of a WAN federation: "Enable ACLs in WAN-federated
///   datacenters", developer.hashicorp.com/consul/tutorials/security-operations/access-control-replication-multiple-datacenters);
/// - `advertise_addr_wan`: advertise address parameters,
///   https://developer.hashicorp.com/consul/docs/reference/agent/configuration-file/address;
/// - `retry_join_wan`: join parameters,
///   https://developer.hashicorp.com/consul/docs/reference/agent/configuration-file/join;
/// - `acl.*` (promfleet-acl-*.json, `consul_acl`): ACL parameters,
///   https://developer.hashicorp.com/consul/docs/reference/agent/configuration-file/acl —
///   `enabled`, `default_policy` ("allow" or "deny"), `down_policy` ("allow", "deny",
///   "extend-cache" or "async-cache"), `enable_token_persistence`, `enable_token_replication`,
///   `tokens.initial_management` (1.11+, replaces the deprecated `tokens.master`),
///   `tokens.agent`, `tokens.replication`;
/// - `tls.*` (promfleet-tls.json, `consul_tls`): TLS configuration parameters, added in 1.12,
///   https://developer.hashicorp.com/consul/docs/reference/agent/configuration-file/tls —
///   `tls.defaults.{ca_file,cert_file,key_file,verify_incoming,verify_outgoing}`,
///   `tls.internal_rpc.verify_server_hostname`, `tls.https.verify_incoming`;
/// - `ports.http` (-1 disables it), `ports.https`: general parameters, `ports`,
///   https://developer.hashicorp.com/consul/docs/reference/agent/configuration-file/general
///   (8501 is the documented convention for https:
///   https://developer.hashicorp.com/consul/docs/v1.16.x/install/ports).
///
/// Nested keys are written as dotted paths to their leaf.
const CONSUL_DOCUMENTED_KEYS: &[(&str, &str)] = &[
    ("datacenter", "string"),
    ("primary_datacenter", "string"),
    ("advertise_addr_wan", "string"),
    ("retry_join_wan", "array"),
    ("acl.enabled", "bool"),
    ("acl.default_policy", "string"),
    ("acl.down_policy", "string"),
    ("acl.enable_token_persistence", "bool"),
    ("acl.enable_token_replication", "bool"),
    ("acl.tokens.initial_management", "string"),
    ("acl.tokens.agent", "string"),
    ("acl.tokens.replication", "string"),
    ("tls.defaults.ca_file", "string"),
    ("tls.defaults.cert_file", "string"),
    ("tls.defaults.key_file", "string"),
    ("tls.defaults.verify_incoming", "bool"),
    ("tls.defaults.verify_outgoing", "bool"),
    ("tls.internal_rpc.verify_server_hostname", "bool"),
    ("tls.https.verify_incoming", "bool"),
    ("ports.http", "number"),
    ("ports.https", "number"),
];

/// Every leaf of a Consul JSON config as (dotted path, value).
fn config_leaves<'a>(prefix: &str, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                config_leaves(&path, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other)),
    }
}

/// Every leaf of the Consul agent config `file` is a documented key with its documented type.
fn assert_documented_consul_config(file: &Path) {
    let cfg: Value = serde_json::from_str(&read(file))
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
    let mut leaves = Vec::new();
    config_leaves("", &cfg, &mut leaves);
    assert!(!leaves.is_empty(), "{}", file.display());
    for (key, value) in leaves {
        let documented = CONSUL_DOCUMENTED_KEYS.iter().find(|(k, _)| *k == key);
        assert!(
            documented.is_some(),
            "{}: undocumented key {key}",
            file.display()
        );
        assert_eq!(
            json_type(value),
            documented.unwrap().1,
            "{}: {key}: {value}",
            file.display()
        );
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::Null => "null",
    }
}

/// issue 17: the Consul server configs rendered for two datacenters (both layouts) use only
/// documented keys with their documented types, name their own datacenter and the same
/// primary, and the secondary joins the primary's WAN-reachable servers.
#[test]
fn consul_server_configs_of_two_datacenters_use_documented_keys_and_join_the_primary_over_wan() {
    for layout in ["single", "spread"] {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("inventory.yml");
        let mons: String = ["fra", "sha"]
            .iter()
            .enumerate()
            .flat_map(|(d, dc)| {
                (1..=3).map(move |n| {
                    format!("    - {{name: mon-{dc}-{n}, ip: 10.{d}.0.{n}, vars: {{datacenter: {dc}}}}}\n")
                })
            })
            .collect();
        std::fs::write(
            &inv,
            format!(
                "vars: {{primary_datacenter: fra, consul_layout: {layout}}}\n\
                 consul: {{agents: [http://10.0.0.1:8500]}}\n\
                 groups:\n  IDE: {{vars: {{datacenter: fra}}, hosts: [{{name: ide-01, ip: 10.0.1.1}}]}}\n  \
                 Stage: {{vars: {{datacenter: sha}}, hosts: [{{name: stage-01, ip: 10.1.1.1}}]}}\n\
                 monitoring:\n  hosts:\n{mons}"
            ),
        )
        .unwrap();
        let out = dir.path().join("rendered");
        render(&inv, &out, &["playbooks/consul.yml"]);
        let server_hosts: &[usize] = if layout == "single" { &[1] } else { &[1, 2, 3] };
        for dc in ["fra", "sha"] {
            for n in 1..=3 {
                let file = out.join(format!("mon-{dc}-{n}/data/consul/promfleet-server.json"));
                assert_eq!(
                    file.is_file(),
                    server_hosts.contains(&n),
                    "{layout}: {}",
                    file.display()
                );
                if !file.is_file() {
                    continue;
                }
                let cfg: Value = serde_json::from_str(&read(&file)).unwrap();
                for (key, value) in cfg.as_object().unwrap() {
                    let documented = CONSUL_DOCUMENTED_KEYS.iter().find(|(k, _)| k == key);
                    assert!(
                        documented.is_some(),
                        "{layout}/{dc}: undocumented key {key}"
                    );
                    assert_eq!(json_type(value), documented.unwrap().1, "{key}: {value}");
                }
                assert_eq!(cfg["datacenter"], dc);
                assert_eq!(cfg["primary_datacenter"], "fra");
                let wan: Vec<&str> = cfg["retry_join_wan"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                let mut want: Vec<String> = server_hosts
                    .iter()
                    .map(|i| format!("10.0.0.{i}"))
                    .filter(|ip| dc != "fra" || *ip != format!("10.0.0.{n}"))
                    .collect();
                want.sort();
                assert_eq!(wan, want, "{layout}/{dc}/{n}");
                if tool("docker-compose").is_some() {
                    let c = compose_config(&file.with_file_name("docker-compose.yml"));
                    let text = c.to_string();
                    assert!(
                        text.contains("8302"),
                        "{layout}/{dc}: WAN port not published"
                    );
                    assert!(text.contains("promfleet-server.json"), "{text}");
                }
            }
        }
    }
}

/// issue 13: with `consul_acl` and `consul_tls` on, every agent config of the cluster stack
/// (promfleet-server.json, promfleet-acl-server.json, promfleet-acl-client.json,
/// promfleet-tls.json), in both layouts, in one datacenter and in two, uses only documented
/// keys with their documented types; the primary datacenter's servers bootstrap the ACL
/// system with `initial_management`, the other's replicate it.
#[test]
fn consul_acl_and_tls_configs_of_every_layout_use_documented_keys() {
    let dir = tempfile::tempdir().unwrap();
    let ca = testkit::tls::TestCa::new("consul keys CA").unwrap();
    let (f, _) = ca.write(dir.path(), &["server.dc1.consul"]).unwrap();
    let tls = format!(
        "ca_file: {}, server_cert: {}, server_key: {}, agent_cert: {}, agent_key: {}",
        f.ca.display(),
        f.server_cert.display(),
        f.server_key.display(),
        f.client_cert.display(),
        f.client_key.display()
    );
    for multi in [false, true] {
        for layout in ["single", "spread"] {
            let dcs: &[&str] = if multi { &["fra", "sha"] } else { &["dc1"] };
            let mons: String = dcs
                .iter()
                .enumerate()
                .flat_map(|(d, dc)| {
                    (1..=3).map(move |n| {
                        format!("    - {{name: mon-{dc}-{n}, ip: 10.{d}.0.{n}, vars: {{datacenter: {dc}}}}}\n")
                    })
                })
                .collect();
            let agents: Vec<String> = (0..dcs.len())
                .flat_map(|d| {
                    let second = if layout == "spread" { 2 } else { 1 };
                    [
                        format!("https://10.{d}.0.1:8500"),
                        format!("https://10.{d}.0.{second}:8501"),
                    ]
                })
                .collect();
            let groups: String = dcs
                .iter()
                .enumerate()
                .map(|(d, dc)| {
                    format!("  G{d}: {{vars: {{datacenter: {dc}}}, hosts: [{{name: h-{dc}, ip: 10.{d}.1.1}}]}}\n")
                })
                .collect();
            let inv = write(
                dir.path(),
                "inventory.yml",
                &format!(
                    "vars: {{primary_datacenter: {}, consul_layout: {layout}, consul_acl: true, consul_tls: true}}\n\
                     consul: {{agents: [{}], {tls}}}\n\
                     groups:\n{groups}\
                     monitoring:\n  hosts:\n{mons}",
                    dcs[0],
                    agents.join(", ")
                ),
            );
            let out = dir.path().join(format!("rendered-{multi}-{layout}"));
            render(&inv, &out, &["playbooks/consul.yml"]);
            let mut seen = std::collections::BTreeSet::new();
            for dc in dcs {
                for n in 1..=3 {
                    let cdir = out.join(format!("mon-{dc}-{n}/data/consul"));
                    let mut files = vec![
                        "promfleet-server.json",
                        "promfleet-acl-server.json",
                        "promfleet-acl-client.json",
                        "promfleet-tls.json",
                    ];
                    files.retain(|name| cdir.join(name).is_file());
                    for name in &files {
                        assert_documented_consul_config(&cdir.join(name));
                        seen.insert(*name);
                    }
                    let compose = cdir.join("docker-compose.yml");
                    if compose.is_file() && tool("docker-compose").is_some() {
                        let text = compose_config(&compose).to_string();
                        assert!(
                            text.contains("/consul/config/promfleet-acl.json")
                                && text.contains("/consul/tls/key.pem"),
                            "{layout}/{dc}/{n}: {text}"
                        );
                        // A host with client agents publishes their https port.
                        assert_eq!(
                            text.contains("\"target\":8501"),
                            cdir.join("promfleet-acl-client.json").is_file(),
                            "{layout}/{dc}/{n}: {text}"
                        );
                    }
                    let acl = cdir.join("promfleet-acl-server.json");
                    if acl.is_file() {
                        let v: Value = serde_json::from_str(&read(&acl)).unwrap();
                        assert_eq!(v["acl"]["default_policy"], "deny");
                        assert_eq!(v["acl"]["down_policy"], "extend-cache");
                        let primary = *dc == dcs[0];
                        assert_eq!(
                            v["acl"]["tokens"].get("initial_management").is_some(),
                            primary,
                            "{layout}/{dc}: {v}"
                        );
                        assert_eq!(
                            v["acl"]["tokens"].get("replication").is_some(),
                            !primary,
                            "{layout}/{dc}: {v}"
                        );
                    }
                }
            }
            let mut want = vec![
                "promfleet-acl-client.json",
                "promfleet-acl-server.json",
                "promfleet-tls.json",
            ];
            if multi {
                want.push("promfleet-server.json");
                want.sort();
            }
            assert_eq!(
                seen.into_iter().collect::<Vec<_>>(),
                want,
                "{multi} {layout}"
            );
        }
    }
}

/// issue 17: a datacenter with fleet hosts but no monitoring host would go unscraped; render
/// stops before any host is touched and names it.
#[test]
fn a_datacenter_without_a_monitoring_host_stops_render_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yml");
    std::fs::write(
        &inv,
        "consul: {agents: [http://10.0.0.9:8500]}\n\
         groups:\n  IDE: {vars: {datacenter: far}, hosts: [{name: ide-01, ip: 10.0.1.1}]}\n\
         monitoring: {hosts: [{name: mon-01, ip: 10.0.0.9}]}\n",
    )
    .unwrap();
    let o = Run::render(&["playbooks/monitoring.yml"], &inv, &dir.path().join("out")).output();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("datacenter far has fleet hosts but no monitoring host"),
        "{}",
        stderr(&o)
    );
}

/// The ids of the promfleet services a double holds, sorted.
fn held_ids(d: &ConsulDouble) -> Vec<String> {
    let mut ids: Vec<String> = d.services().into_iter().map(|s| s.id).collect();
    ids.sort();
    ids
}

/// issue 17, "every exporter's registration survives the loss of any one monitoring host":
/// with the inventory's agents on two monitoring hosts (here two Consul doubles bound to the
/// two monitoring hosts' addresses), `exporters` registers every exporter on both; with one
/// agent down a re-run still succeeds and re-registers on the live one without touching its
/// copies; `--check` sees the two copies as wanted; `consul prune` keeps exactly them, removes
/// a third copy on another agent and every copy of a departed host.
#[test]
fn ha_exporters_registered_on_two_monitoring_hosts_survive_losing_one_and_prune_keeps_both() {
    if !require_root() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fleet = testkit::sshd::Fleet::builder()
        .hosts(2)
        .groups(&["IDE"])
        .fake_node_exporter(true)
        .start()
        .expect("fleet");
    // Monitoring host addresses inside the fleet's own claimed octet (hosts use .2 and .3).
    let o = fleet.hosts().next().expect("host").ip.octets();
    let mon_ip = |last: u8| std::net::Ipv4Addr::new(o[0], o[1], o[2], last);
    let mon = |name: &str, last: u8| testkit::sshd::Host {
        name: name.into(),
        ip: mon_ip(last),
        group: testkit::sshd::MONITORING_GROUP.into(),
        dir: fleet.root().join(name),
    };
    let start = |ip: std::net::IpAddr| {
        rt.block_on(ConsulDouble::start(std::net::SocketAddr::new(ip, 0)))
            .expect("consul double")
    };
    let a = start(mon_ip(240).into());
    let b = start(mon_ip(241).into());
    // An agent on no monitoring host (for prune's "other duplicate").
    let stray = start([127, 0, 0, 1].into());
    let inv = fleet.root().join("inventory.yml");
    let write_inv = |agents: Vec<String>| {
        let yaml = fleet
            .inventory()
            .var("metrics_timeout", 3)
            .consul_agents(agents)
            .extra_host(mon("mon-1", 240), &[])
            .extra_host(mon("mon-2", 241), &[])
            .yaml();
        std::fs::write(&inv, yaml).expect("inventory");
    };
    write_inv(vec![a.url(), b.url()]);
    let book = repo().join("playbooks/exporters.yml");
    let book = book.to_str().expect("utf8");
    let exporters = |extra: &[&str]| {
        let mut flags = vec![
            "--output",
            "json",
            "--connect-timeout",
            "2",
            "--retries",
            "2",
        ];
        flags.extend(extra);
        fleet_run(&["exporters", "--playbook", book], &inv, &fleet, &flags)
    };
    let hosts: Vec<String> = fleet.hosts().map(|h| h.name.clone()).collect();

    let out = exporters(&[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let on_a = held_ids(&a);
    assert!(!on_a.is_empty());
    assert_eq!(on_a, held_ids(&b), "every exporter on both hosts' agents");
    for h in &hosts {
        assert!(
            on_a.iter().any(|id| id.contains(h.as_str())),
            "{h}: {on_a:?}"
        );
    }

    // The two copies are what registration wants: --check changes nothing.
    let out = exporters(&["--check"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    for (h, (status, changed)) in host_status(&report(&out)) {
        assert_eq!(
            (status.as_str(), changed),
            ("ok", 0),
            "{h}: {}",
            stdout(&out)
        );
    }

    // mon-2 lost: its agent refuses connections. One registration went missing on mon-1's
    // agent meanwhile; the re-run succeeds, puts it back there, and leaves the others.
    rt.block_on(b.stop());
    let before: Vec<_> = a.services();
    let dropped = on_a[0].clone();
    assert!(a.deregister_direct(&dropped));
    let out = exporters(&[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("1 of 2 copies"), "{}", stdout(&out));
    assert_eq!(held_ids(&a), on_a, "registrations on the live agent intact");
    let mut after = a.services();
    let mut before = before;
    let key = |s: &testkit::consul_double::RegisteredService| s.id.clone();
    before.sort_by_key(key);
    after.sort_by_key(key);
    let same = |x: &testkit::consul_double::RegisteredService| {
        (x.id.clone(), x.address.clone(), x.port, x.meta.clone())
    };
    assert_eq!(
        before.iter().map(same).collect::<Vec<_>>(),
        after.iter().map(same).collect::<Vec<_>>()
    );

    // mon-2 back, a third agent listed; prune keeps the two designated copies, removes the
    // copy on the third agent and both copies of a host that left the inventory.
    rt.block_on(b.restart()).expect("restart");
    write_inv(vec![a.url(), b.url(), stray.url()]);
    let live = a
        .services()
        .into_iter()
        .find(|s| s.id == dropped)
        .expect("re-registered");
    let body = |id: &str, host: &str, address: &str| {
        json!({
            "ID": id, "Name": live.name, "Address": address, "Port": live.port,
            "Meta": {"managed_by": "promfleet", "hostname": host, "group": "IDE"}
        })
    };
    stray
        .register_direct(body(&live.id, &live.meta["hostname"], &live.address))
        .expect("stray copy");
    for d in [&a, &b] {
        d.register_direct(body("node-exporter-gone-10.9.9.9", "gone", "10.9.9.9"))
            .expect("departed");
    }
    let out = Run::new(&["consul", "prune", "-i"]).arg(&inv).output();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(held_ids(&a), on_a, "{}", stdout(&out));
    assert_eq!(held_ids(&b), on_a, "{}", stdout(&out));
    assert!(held_ids(&stray).is_empty(), "{}", stdout(&out));
}

/// issue 17, per-datacenter agents: in `multi_dc` an agent belongs to the datacenter of the
/// monitoring host its URL names; each datacenter's Prometheus discovers through its own
/// datacenter's agents only (the ones its fleet registers with), and a datacenter no agent
/// serves stops render, named.
#[test]
fn multi_dc_prometheus_discovers_through_its_own_datacenters_agents_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    render(
        &repo().join("inventory/examples/multi-dc.yml"),
        &out,
        &["playbooks/monitoring.yml"],
    );
    for (m, want) in [
        ("mon-fra-1", ["10.0.0.178:8500", "10.0.0.178:8501"]),
        ("mon-fra-2", ["10.0.0.178:8500", "10.0.0.178:8501"]),
        ("mon-sha-1", ["10.8.0.178:8500", "10.8.0.178:8501"]),
        ("mon-sha-2", ["10.8.0.178:8500", "10.8.0.178:8501"]),
    ] {
        let cfg = yaml(&read(mon_dir(&out, m).join("prometheus/prometheus.yml")));
        let job = cfg["scrape_configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_name"] == "consul-services")
            .expect("consul-services job");
        let servers: Vec<&str> = job["consul_sd_configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["server"].as_str().unwrap())
            .collect();
        assert_eq!(servers, want, "{m}");
        let dc = if m.starts_with("mon-fra") {
            "fra"
        } else {
            "sha"
        };
        assert!(
            job["consul_sd_configs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["datacenter"] == dc)
        );
    }

    // Agents only in fra: sha's Prometheus would have no agent; render names the datacenter.
    let inv = dir.path().join("one-dc-agents.yml");
    let text = read(repo().join("inventory/examples/multi-dc.yml")).replace(
        "    - http://10.8.0.178:8500\n    - http://10.8.0.178:8501\n",
        "",
    );
    assert!(!text.contains("10.8.0.178:85"), "{text}");
    std::fs::write(&inv, text).unwrap();
    let o = Run::render(
        &["playbooks/monitoring.yml"],
        &inv,
        &dir.path().join("out2"),
    )
    .output();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no Consul agent serves datacenter sha"),
        "{}",
        stderr(&o)
    );
}

/// issue 17: the topology example inventories are built into the binary like the other
/// examples (build.rs once kept only file names holding "example", which `examples/ha.yml`
/// does not): `init` writes them, and they render with the built-in playbooks and templates
/// from a directory that is no checkout.
#[test]
fn topology_examples_are_built_in_and_render_from_an_init_project() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut r = Run::new(args);
        r.cmd
            .current_dir(dir.path())
            .env_remove("PROMFLEET_PROJECT")
            .env_remove("PROMFLEET_SECRETS")
            .env_remove("PROMFLEET_CONFIG");
        r.output()
    };
    let o = run(&["init", "site"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (example, hosts) in [("single", 1), ("ha", 3), ("multi-dc", 4)] {
        let rel = format!("inventory/examples/{example}.yml");
        let written = dir.path().join("site").join(&rel);
        assert_eq!(read(&written), read(repo().join(&rel)), "{rel}");
        // Rendered from the temp dir (no playbooks/ or templates/ there): the built-in files.
        let out = format!("out-{example}");
        let o = run(&["render", "-i", written.to_str().unwrap(), "--out", &out]);
        assert!(o.status.success(), "{example}: {}", stderr(&o));
        let out = dir.path().join(&out);
        let mons = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                let host = e.file_name().to_string_lossy().into_owned();
                mon_dir(&out, &host)
                    .join("prometheus/prometheus.yml")
                    .is_file()
            })
            .count();
        assert_eq!(mons, hosts, "{example}");
    }
}

/// issue 17: `alert test` judges delivery, not only routing: two Alertmanagers that are NOT
/// one cluster both notify the same alert, and `alert test` reports the two notifications
/// and exits 5 (drift).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_test_reports_two_notifications_from_two_alertmanagers_that_are_not_a_cluster() {
    let Some(_) = tool("prometheus-alertmanager") else {
        eprintln!("SKIPPED: needs Debian's prometheus-alertmanager");
        return;
    };
    let ips = ["127.0.0.16", "127.0.0.17"];
    let am_port = common_port(&ips);
    let sink_port = common_port(&ips);
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yml");
    std::fs::write(
        &inv,
        format!(
            "vars:\n  alertmanager_port: {am_port}\n  dingtalk_port: {sink_port}\n  \
             alertmanager_group_wait: 1s\n  alertmanager_group_interval: 1s\n  \
             alertmanager_peer_timeout: 1s\n\
             consul: {{agents: [http://127.0.0.16:8500]}}\n\
             groups:\n  IDE: {{hosts: [{{name: ide-01, ip: 127.0.0.36}}]}}\n\
             monitoring:\n  hosts:\n    - {{name: mon-01, ip: 127.0.0.16}}\n    \
             - {{name: mon-02, ip: 127.0.0.17}}\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("rendered");
    render(&inv, &out, &["playbooks/monitoring.yml"]);
    let mut sinks = Vec::new();
    let mut ams = Vec::new();
    for (ip, name) in ips.iter().zip(["mon-01", "mon-02"]) {
        let (_, seen) = start_sink_on(&format!("{ip}:{sink_port}")).await;
        sinks.push((ip.to_string(), seen));
        let mon = mon_dir(&out, name);
        // No gossip: each decides alone.
        ams.push(
            Launch::alertmanager(
                &mon.join("alertmanager/config.yml"),
                &format!("{ip}:{am_port}"),
            )
            .standalone()
            .start(),
        );
    }
    for ip in ips {
        let up = wait_for(Duration::from_secs(30), async || {
            get_json(&format!("http://{ip}:{am_port}/api/v2/status"))
                .await
                .map(|_| ())
        })
        .await;
        assert!(up.is_some(), "{ip}: Alertmanager not up");
    }
    let (o, r, per_am) = alert_test(&inv, Vec::new()).await;
    assert_eq!(o.status.code(), Some(5), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(per_am, [1, 1], "{r:#}");
    assert!(
        stderr(&o).contains("2 notifications went out from 2 Alertmanager(s)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(notifications(&sinks, "PromfleetTest").len(), 2);
    drop(ams);
}

/// issue 17, `status` with several datacenters: each Consul agent's row names its datacenter
/// (the monitoring host its URL names) and that datacenter's leader, and the WAN members;
/// a datacenter of the inventory missing from an agent's WAN pool is drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_each_datacenters_consul_leader_and_the_wan_members() {
    let start = |ip: [u8; 4], dc: &str, wan: &[&str]| {
        ConsulDouble::start_with(DoubleOptions {
            bind: std::net::SocketAddr::from((ip, 0)),
            datacenter: dc.to_owned(),
            run_checks: false,
            wan_datacenters: wan.iter().map(|d| d.to_string()).collect(),
            ..DoubleOptions::default()
        })
    };
    // fra's servers see sha over WAN; sha's do not (yet) see fra.
    let fra = start([127, 0, 0, 26], "fra", &["sha"]).await.unwrap();
    let sha = start([127, 0, 0, 27], "sha", &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yml");
    std::fs::write(
        &inv,
        format!(
            "vars: {{primary_datacenter: fra}}\n\
             consul: {{agents: [{}, {}]}}\n\
             groups:\n  IDE: {{vars: {{datacenter: fra}}, hosts: [{{name: ide-01, ip: 127.0.0.46}}]}}\n  \
             Stage: {{vars: {{datacenter: sha}}, hosts: [{{name: stage-01, ip: 127.0.0.47}}]}}\n\
             monitoring:\n  hosts:\n    - {{name: mon-fra, ip: 127.0.0.26, vars: {{datacenter: fra}}}}\n    \
             - {{name: mon-sha, ip: 127.0.0.27, vars: {{datacenter: sha}}}}\n",
            fra.url(),
            sha.url()
        ),
    )
    .unwrap();
    let rows = service_rows(&inv, "consul").await;
    assert_eq!(
        rows,
        [
            (
                fra.url(),
                "ok".into(),
                "fra leader, 2 alive, WAN fra+sha".into()
            ),
            (
                sha.url(),
                "drift".into(),
                "sha leader, 2 alive, WAN lacks fra".into()
            ),
        ]
    );
}
