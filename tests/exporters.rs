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

use crate::support::*;

#[test]
fn exporters_roll_out_register_and_prometheus_scrapes_every_target() {
    if !require_root() || !have("prometheus") {
        eprintln!("SKIPPED: needs root and Debian's prometheus");
        return;
    }
    let Some(sc) = Scenario::fleet(12)
        .groups(&["IDE", "Stage", "Pet"])
        .monitoring_host()
        .consul()
        .start()
    else {
        return;
    };
    let (fleet, consul, inv) = (&sc.fleet, sc.consul(), &sc.inv);
    let book = repo().join("playbooks/exporters.yml");
    let book = book.to_str().expect("utf8");
    let exporters = [("node-exporter", 9100), ("cadvisor-exporter", 9105)];

    // Channels each host's sshd started (one per command).
    let sessions = |host: &str| {
        std::fs::read_to_string(fleet.sshd_log(host))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Starting session"))
            .count()
    };
    let before: Vec<usize> = fleet.hosts().map(|h| sessions(&h.name)).collect();

    // First run: everything changes (file, up, 2 registrations), every endpoint verified,
    // 2×12 services registered.
    sc.run(&["exporters", "--playbook", book])
        .all_hosts("changed")
        .each_host_changed_at_least(3)
        .services(24)
        .every_host_registered(&exporters)
        .check();
    for (h, before) in fleet.hosts().zip(before) {
        assert_eq!(testkit::standin::starts(&h.deploy_dir()), 1, "{}", h.name);
        // Two round trips: preflight's facts, then the write with its `up -d` (the
        // `/metrics` checks and the registrations are HTTP from the jump host).
        assert_eq!(sessions(&h.name) - before, 2, "{}: commands run", h.name);
    }

    // Second run: nothing changes, nothing restarts.
    sc.run(&["exporters", "--playbook", book])
        .unchanged()
        .services(24)
        .check();
    for h in fleet.hosts() {
        assert_eq!(
            testkit::standin::starts(&h.deploy_dir()),
            1,
            "{} restarted",
            h.name
        );
    }

    // Real Prometheus with promfleet's generated relabels sees exactly what Consul holds.
    let (prom, job) = Prometheus::for_fleet(fleet, consul, None);
    let url = format!("{}/api/v1/targets?state=active", prom.url);
    let http = reqwest::Client::new();
    let expected: BTreeSet<(String, String, String)> = fleet
        .hosts()
        .flat_map(|h| {
            [9100, 9105].map(|p| (format!("{}:{p}", h.ip), h.name.clone(), h.group.clone()))
        })
        .collect();
    prom.wait_targets_within(
        &consul.rt,
        Duration::from_secs(60),
        "all 24 targets UP with instance/group labels",
        move |targets| {
            let mine: Vec<&Value> = targets
                .iter()
                .filter(|t| t["scrapePool"] == job.as_str())
                .collect();
            let up: BTreeSet<(String, String, String)> = mine
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
            mine.len() == expected.len() && up == expected
        },
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
    let verify = verify.to_str().expect("utf8");
    let ran = sc
        .run(&["deploy", verify, "--retries", "1"])
        .inventory(&inv_verify)
        .check();
    let detail = ran.report()["hosts"][0]["tasks"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains("all 24 registered exporters are UP"),
        "{detail}"
    );
    // ...and names the host whose exporters went down.
    let victim = fleet.hosts().nth(2).expect("host").clone();
    stop_exporters(fleet, &victim);
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
    let ran = sc
        .run(&["deploy", verify, "--retries", "1"])
        .inventory(&inv_verify)
        .status(2)
        .check();
    let err = ran.report()["hosts"][0]["error"]
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
    let text = std::fs::read_to_string(inv).expect("inventory");
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
