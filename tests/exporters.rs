//! The main job, end to end on a real-sshd fleet: roll out node-exporter and cAdvisor with the
//! compose stand-in, verify /metrics, register in the Consul test double, and prove with real
//! Prometheus (through the double's http_sd view and promfleet's own relabels) that every
//! registered exporter is scraped UP with the right labels.
//!
//! What this cannot prove: Prometheus' own Consul client (Debian's Prometheus 2.42 is built
//! without consul_sd) — the double's contract tests cover what that client relies on.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use testkit::sshd::Fleet;

use crate::support::*;

#[test]
fn exporters_roll_out_register_and_prometheus_scrapes_every_target() {
    if !require_root() || !have("prometheus") {
        eprintln!("SKIPPED: needs root and Debian's prometheus");
        return;
    }
    let consul = Double::start();
    let fleet = Fleet::builder()
        .hosts(12)
        .groups(&["IDE", "Stage", "Pet"])
        .monitoring_host(true)
        .consul_agents([consul.d.url()])
        .start()
        .expect("fleet");
    let inv = fleet.root().join("inventory.yml");
    fleet.write_inventory(&inv).expect("inventory");
    let book = repo().join("playbooks/exporters.yml");

    // First run: everything changes, every endpoint verified, 2×12 services registered.
    let out = fleet_run(
        &["exporters", "--playbook", book.to_str().expect("utf8")],
        &inv,
        &fleet,
        &["--output", "json"],
    );
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let st = host_status(&r);
    assert_eq!(st.len(), 12, "{st:?}");
    for (h, (s, changed)) in &st {
        assert_eq!(s, "changed", "{h}");
        assert!(
            *changed >= 3,
            "{h}: file, up, 2 registrations changed: {changed}"
        );
    }
    let services = consul.d.services();
    assert_eq!(services.len(), 24, "{services:#?}");
    for h in fleet.hosts() {
        for (svc, port) in [("node-exporter", 9100), ("cadvisor-exporter", 9105)] {
            let id = format!("{svc}-{}-{}", h.name, h.ip);
            let s = services
                .iter()
                .find(|s| s.id == id)
                .unwrap_or_else(|| panic!("{id} registered"));
            assert_eq!(s.name, svc);
            assert_eq!(s.address, h.ip.to_string());
            assert_eq!(s.port, port);
            assert_eq!(s.meta.get("hostname"), Some(&h.name));
            assert_eq!(s.meta.get("group"), Some(&h.group));
            assert_eq!(
                s.checks.first().and_then(|c| c.http.clone()),
                Some(format!("http://{}:{port}/metrics", h.ip))
            );
        }
        assert_eq!(testkit::standin::starts(&h.deploy_dir()), 1, "{}", h.name);
    }

    // Second run: nothing changes, nothing restarts.
    let out = fleet_run(
        &["exporters", "--playbook", book.to_str().expect("utf8")],
        &inv,
        &fleet,
        &["--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    for (h, (s, changed)) in host_status(&report(&out)) {
        assert_eq!((s.as_str(), changed), ("ok", 0), "{h} on the second run");
    }
    for h in fleet.hosts() {
        assert_eq!(
            testkit::standin::starts(&h.deploy_dir()),
            1,
            "{} restarted",
            h.name
        );
    }

    // Real Prometheus with promfleet's generated relabels sees exactly what Consul holds.
    let rendered = fleet.root().join("rendered");
    let out = Run::new(&["render", "playbooks/monitoring.yml", "-i"])
        .arg(&inv)
        .arg("--out")
        .arg(&rendered)
        .output();
    assert!(out.status.success(), "render: {}", stderr(&out));
    let prom_yml = find(&rendered, "prometheus.yml").expect("rendered prometheus.yml");
    let (cfg, job) = testkit::prometheus::runnable_config(
        &std::fs::read_to_string(&prom_yml).expect("rendered prometheus.yml"),
        &format!("{}/promfleet-double/http_sd", consul.d.url()),
    )
    .expect("runnable config");
    let prom = Prometheus::start(&cfg);
    let url = format!("{}/api/v1/targets?state=active", prom.url);
    let http = reqwest::Client::new();
    let expected: BTreeSet<(String, String, String)> = fleet
        .hosts()
        .flat_map(|h| {
            [9100, 9105].map(|p| (format!("{}:{p}", h.ip), h.name.clone(), h.group.clone()))
        })
        .collect();
    let seen = consul.rt.block_on(eventually(Duration::from_secs(60), || {
        let http = http.clone();
        let url = url.clone();
        let job = job.clone();
        let expected = expected.clone();
        async move {
            let v: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            let targets: Vec<&Value> = v["data"]["activeTargets"]
                .as_array()?
                .iter()
                .filter(|t| t["scrapePool"] == job.as_str())
                .collect();
            let up: BTreeSet<(String, String, String)> = targets
                .iter()
                .filter(|t| t["health"] == "up")
                .map(|t| {
                    let l = &t["labels"];
                    (
                        t["discoveredLabels"]["__address__"]
                            .as_str()
                            .unwrap_or("")
                            .into(),
                        l["instance"].as_str().unwrap_or("").into(),
                        l["group"].as_str().unwrap_or("").into(),
                    )
                })
                .collect();
            (targets.len() == expected.len() && up == expected).then_some(up)
        }
    }));
    assert!(
        seen.is_some(),
        "Prometheus never showed all 24 targets UP with instance/group labels; log:\n{}",
        prom.log()
    );

    // promfleet's own end-to-end check agrees: every registered exporter is UP...
    let inv_verify = fleet.root().join("inventory-verify.yml");
    fleet
        .inventory()
        .var("prometheus_url", prom.url.clone())
        .var("verify_timeout", "20")
        .write(&inv_verify)
        .expect("inventory");
    let verify = repo().join("playbooks/verify.yml");
    let out = fleet_run(
        &["deploy", verify.to_str().expect("utf8")],
        &inv_verify,
        &fleet,
        &["--output", "json", "--retries", "1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let detail = report(&out)["hosts"][0]["tasks"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains("all 24 registered exporters are UP"),
        "{detail}"
    );
    // ...and names the host whose exporters went down.
    let victim = fleet.hosts().nth(2).expect("host").clone();
    stop_exporters(&fleet, &victim);
    // Wait until Prometheus itself has scraped the dead target, then ask promfleet.
    let victim_addr = format!("{}:9100", victim.ip);
    let seen_down = consul.rt.block_on(eventually(Duration::from_secs(30), || {
        let http = http.clone();
        let url = url.clone();
        let victim_addr = victim_addr.clone();
        async move {
            let v: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            v["data"]["activeTargets"]
                .as_array()?
                .iter()
                .any(|t| {
                    t["discoveredLabels"]["__address__"] == victim_addr.as_str()
                        && t["health"] == "down"
                })
                .then_some(())
        }
    }));
    assert!(
        seen_down.is_some(),
        "Prometheus never saw {victim_addr} down"
    );
    let out = fleet_run(
        &["deploy", verify.to_str().expect("utf8")],
        &inv_verify,
        &fleet,
        &["--output", "json", "--retries", "1"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = report(&out)["hosts"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains(&format!(
            "{} node-exporter {}:9100 is down",
            victim.name, victim.ip
        )),
        "{err}"
    );

    // A host leaves the inventory: prune removes exactly its two services.
    let gone = fleet.hosts().nth(4).expect("host").clone();
    let text = std::fs::read_to_string(&inv).expect("inventory");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            !l.contains(&format!("name: {}", gone.name))
                && !l.contains(&format!("name: \"{}\"", gone.name))
        })
        .collect();
    assert_eq!(
        kept.len() + 1,
        text.lines().count(),
        "host entry is one line"
    );
    let inv2 = fleet.root().join("inventory-without.yml");
    std::fs::write(&inv2, kept.join("\n")).expect("write");
    let check = Run::new(&["consul", "prune", "--check", "-i"])
        .arg(&inv2)
        .output();
    assert!(check.status.success(), "{}", stderr(&check));
    assert_eq!(consul.d.services().len(), 24, "--check removes nothing");
    assert_eq!(stdout(&check).lines().count(), 2, "{}", stdout(&check));
    let prune = Run::new(&["consul", "prune", "-i"]).arg(&inv2).output();
    assert!(prune.status.success(), "{}", stderr(&prune));
    let left: Vec<String> = consul.d.services().into_iter().map(|s| s.id).collect();
    assert_eq!(left.len(), 22, "{left:?}");
    assert!(
        left.iter()
            .all(|id| !id.contains(&format!("-{}-", gone.name))),
        "{left:?}"
    );
}
