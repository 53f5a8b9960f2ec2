//! Rollout control on the test fleet: stages by group, max_fail_percentage halting, the retry
//! file and --retry-failed, --check changing nothing.

use std::path::Path;
use std::time::Duration;

use testkit::sshd::Fleet;

use crate::support::*;

fn exporters(inv: &Path, fleet: &Fleet, extra: &[&str]) -> std::process::Output {
    let book = repo().join("playbooks/exporters.yml");
    let mut args = vec!["--output", "json"];
    args.extend_from_slice(extra);
    fleet_run(
        &["exporters", "--playbook", book.to_str().expect("utf8")],
        inv,
        fleet,
        &args,
    )
}

fn with_stages(fleet: &Fleet, stages: &str, extra_vars: &[(&str, &str)]) -> std::path::PathBuf {
    let inv = fleet.root().join("inventory.yml");
    let mut spec = fleet.inventory();
    for (k, v) in extra_vars {
        spec = spec.var(k, v.to_string());
    }
    let yaml = format!("{}\nstages:\n{stages}", spec.yaml());
    std::fs::write(&inv, yaml).expect("write inventory");
    inv
}

fn retry_file(fleet: &Fleet) -> std::path::PathBuf {
    fleet.root().join("state").join("retry")
}

/// A fleet of `hosts` over `groups`, with the small fake node exporter, registering with
/// the Consul double.
fn fast_fleet(hosts: usize, groups: &[&str], consul: &Double) -> Fleet {
    Fleet::builder()
        .hosts(hosts)
        .groups(groups)
        .fake_node_exporter(true)
        .consul_agents([consul.d.url()])
        .start()
        .expect("fleet")
}

/// Make `compose up` fail on `h` with `message`.
fn fail_up(fleet: &Fleet, h: &testkit::sshd::Host, message: &str) {
    testkit::standin::fail_up(&h.deploy_dir(), message).expect("inject failure");
    // The injection ran as root; the deploy dir must stay the login user's.
    for p in [h.dir.clone(), h.deploy_dir()] {
        std::os::unix::fs::chown(&p, Some(fleet.user_uid()), None).expect("chown");
    }
}

#[test]
fn a_refusing_stage_host_fails_alone_and_retry_failed_completes_it() {
    let Some(sc) = Scenario::fleet(9)
        .groups(&["IDE", "Stage", "Pet"])
        .consul()
        .stages("  - { name: IDE, hosts: [IDE] }\n  - { name: Stage, hosts: [Stage], max_fail_percentage: 50 }\n  - { name: Pet, hosts: [Pet] }\n")
        .start()
    else {
        return;
    };
    let bad = sc.group("Stage")[0].name.clone();
    sc.fleet.stop(&bad).expect("stop sshd");

    // Unreachable host → exit 4; every other host, in every stage, completes.
    sc.exporters(&["--retries", "2", "--connect-timeout", "2"])
        .status(4)
        .host(&bad, "unreachable")
        .hosts_changed(8)
        .retry(&[&bad])
        .stderr_contains(&format!("UNREACHABLE {bad}"))
        .check();

    // Only the failed host reruns; the retry file goes when nothing failed.
    sc.fleet.start(&bad).expect("start sshd");
    sc.exporters(&["--retry-failed"])
        .only_hosts(&[&bad])
        .host(&bad, "changed")
        .services(18)
        .check();
    assert!(
        !retry_file(&sc.fleet).exists(),
        "retry file removed when nothing failed"
    );
}

#[test]
fn exceeding_max_fail_percentage_in_the_first_stage_leaves_later_stages_untouched() {
    let Some(sc) = Scenario::fleet(6)
        .groups(&["IDE", "Stage", "Pet"])
        .consul()
        .stages("  - { name: canary, hosts: [IDE], max_fail_percentage: 0 }\n  - { name: rest, hosts: [Stage, Pet] }\n")
        .start()
    else {
        return;
    };
    let (fleet, consul) = (&sc.fleet, sc.consul());
    let ide = sc.group("IDE");
    fail_up(fleet, &ide[0], "image pull failed: no such image");

    // Halted → exit 3; the compose stderr is surfaced in the failed host's error.
    let ran = sc
        .exporters(&[])
        .status(3)
        .host(&ide[0].name, "failed")
        .error_contains(&ide[0].name, "image pull failed")
        .check();
    let r = ran.report();
    let halted = r["halted"].as_str().expect("halted message");
    assert!(halted.contains("max_fail_percentage"), "{halted}");
    assert!(
        halted.contains("--from-stage canary"),
        "says how to resume: {halted}"
    );
    for h in fleet.hosts().filter(|h| h.group != "IDE") {
        assert!(
            !h.deploy_dir().exists(),
            "{} in a later stage was touched",
            h.name
        );
    }
    assert!(
        consul
            .d
            .services()
            .iter()
            .all(|s| s.meta.get("group").is_some_and(|g| g == "IDE")),
        "no later-stage registration"
    );

    // Resume from the failed stage once fixed: everything completes.
    testkit::standin::clear_fail_up(&ide[0].deploy_dir()).expect("clear");
    sc.exporters(&["--from-stage", "canary"])
        .services(12)
        .check();
}

#[test]
fn check_mode_changes_no_remote_file_and_lists_what_would_change() {
    let Some(sc) = Scenario::fleet(3).groups(&["IDE"]).consul().start() else {
        return;
    };
    let fleet = &sc.fleet;
    sc.exporters(&[]).all_hosts("changed").services(6).check();
    let before: Vec<(String, Vec<u8>)> = fleet
        .hosts()
        .map(|h| {
            let f = h.deploy_dir().join("docker-compose.yml");
            (h.name.clone(), std::fs::read(&f).expect("compose file"))
        })
        .collect();

    // A changed variable changes the rendered compose file: --check --diff shows it only.
    let inv2 = sc.inventory_with(
        "inventory-changed.yml",
        &[("exporter_mem_node", "400m".into())],
    );
    let ran = sc
        .exporters(&["--check", "--diff"])
        .inventory(&inv2)
        .all_hosts("changed")
        .services(6)
        .check();
    let r = ran.report();
    assert_eq!(r["check"], true);
    for h in r["hosts"].as_array().expect("hosts") {
        let file_task = h["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .find(|t| t["module"] == "template")
            .expect("template task");
        assert_eq!(file_task["outcome"], "changed");
        let detail = file_task["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("would write") && detail.ends_with("docker-compose.yml"),
            "{detail}"
        );
        let diff = file_task["diff"].as_str().unwrap_or_default();
        assert!(
            diff.contains("-    mem_limit: 500m") && diff.contains("+    mem_limit: 400m"),
            "{diff}"
        );
    }
    for (name, content) in before {
        let h = fleet.host(&name).expect("host");
        assert_eq!(
            std::fs::read(h.deploy_dir().join("docker-compose.yml")).expect("file"),
            content,
            "{name}: --check changed the file"
        );
        assert_eq!(
            testkit::standin::starts(&h.deploy_dir()),
            1,
            "{name}: --check restarted"
        );
    }
}

/// The README's example stages on a fleet whose canary refuses SSH: the rollout halts after
/// the canary stage (every host of its batch failed, and a canary tolerates no failure), no
/// other host is touched, the exit code is the halt's, and the recap names the failure once.
#[test]
fn a_refusing_canary_halts_the_rollout_and_touches_no_other_host() {
    if !require_root() {
        return;
    }
    let consul = Double::start();
    let fleet = fast_fleet(6, &["IDE", "Stage", "Pet"], &consul);
    let canary = fleet
        .hosts()
        .find(|h| h.group == "IDE")
        .expect("an IDE host")
        .name
        .clone();
    let inv = with_stages(
        &fleet,
        &format!(
            "  - {{ name: canary, hosts: [{canary}] }}\n  - {{ name: IDE, hosts: [IDE], serial: 2, max_fail_percentage: 25 }}\n  - {{ name: rest, hosts: [Stage, Pet], serial: \"50%\" }}\n"
        ),
        &[],
    );
    fleet.stop(&canary).expect("stop sshd");

    let out = exporters(&inv, &fleet, &["--retries", "1", "--connect-timeout", "2"]);
    let text = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::Halted as i32),
        "a halted rollout exits with the halt code\n{text}"
    );
    for h in fleet.hosts().filter(|h| h.name != canary) {
        assert!(
            !h.deploy_dir().join("docker-compose.yml").exists(),
            "{} ({}) was touched after the canary failed\n{text}",
            h.name,
            h.group
        );
    }
    assert!(consul.d.services().is_empty(), "nothing registered");
    let r = report(&out);
    let halted = r["halted"].as_str().expect("halted message");
    for needle in [
        canary.as_str(),
        "canary",
        "--from-stage canary",
        "--retry-failed",
    ] {
        assert!(halted.contains(needle), "`{needle}` not in: {halted}");
    }
    let st = host_status(&r);
    assert_eq!(st[&canary].0, "unreachable");
    for h in fleet.hosts().filter(|h| h.name != canary) {
        assert_eq!(st[&h.name].0, "not_run", "{}", h.name);
    }
    let recap = &text[text.find("PLAY RECAP").expect("recap")..];
    assert_eq!(
        recap.matches(&format!("UNREACHABLE {canary}")).count(),
        1,
        "each failure once in the recap:\n{recap}"
    );
    assert_eq!(
        text.matches("Connection refused").count(),
        1,
        "the cause is printed once:\n{text}"
    );
}

/// Ansible's rule without any max_fail_percentage: when every host of a batch failed, the
/// rollout halts; the next stage is not started.
#[test]
fn a_stage_where_every_host_fails_halts_before_the_next_stage() {
    let Some(sc) = Scenario::fleet(6)
        .groups(&["IDE", "Stage", "Pet"])
        .fake_node_exporter()
        .consul()
        .stages("  - { name: first, hosts: [IDE] }\n  - { name: second, hosts: [Stage, Pet] }\n")
        .start()
    else {
        return;
    };
    let ide = sc.group("IDE");
    assert_eq!(ide.len(), 2);
    for h in &ide {
        fail_up(&sc.fleet, h, "image pull failed: no such image");
    }

    let mut run = sc
        .exporters(&[])
        .status(promfleet::report::ExitCode::Halted as i32);
    for h in sc.hosts() {
        run = run.host(
            &h.name,
            if h.group == "IDE" {
                "failed"
            } else {
                "not_run"
            },
        );
    }
    // Every host of the halted rollout is to be retried: the failed and the never started.
    let names: Vec<&str> = sc.hosts().map(|h| h.name.as_str()).collect();
    let ran = run.retry(&names).check();
    let halted = ran.report()["halted"].as_str().expect("halted message");
    assert!(halted.contains("every host of a batch failed"), "{halted}");
    assert!(halted.contains("--from-stage first"), "{halted}");
    let text = ran.stderr();
    assert!(
        !text.contains("[stage second]"),
        "second stage started:\n{text}"
    );
    for h in sc.hosts().filter(|h| h.group != "IDE") {
        assert!(
            !h.deploy_dir().join("docker-compose.yml").exists(),
            "{} of the second stage was touched",
            h.name
        );
    }
}

/// `rollback` after a successful run: the chosen host gets back, byte for byte, the compose
/// file it had before the last run, the services are restarted on it and it stays
/// registered; `--check` only shows it; other hosts keep the new version.
#[test]
fn rollback_after_a_successful_run_restores_the_previous_files_byte_for_byte() {
    let Some(sc) = Scenario::fleet(2)
        .groups(&["IDE"])
        .fake_node_exporter()
        .consul()
        .start()
    else {
        return;
    };
    let fleet = &sc.fleet;
    sc.exporters(&[]).all_hosts("changed").check();
    let compose = |h: &testkit::sshd::Host| h.deploy_dir().join("docker-compose.yml");
    let hosts: Vec<_> = fleet.hosts().cloned().collect();
    let before: Vec<Vec<u8>> = hosts
        .iter()
        .map(|h| std::fs::read(compose(h)).expect("v1"))
        .collect();

    let inv2 = sc.inventory_with("inventory-v2.yml", &[("exporter_mem_node", "400m".into())]);
    sc.exporters(&[])
        .inventory(&inv2)
        .all_hosts("changed")
        .check();
    let after: Vec<Vec<u8>> = hosts
        .iter()
        .map(|h| std::fs::read(compose(h)).expect("v2"))
        .collect();
    assert_ne!(before[0], after[0], "the second run changed the file");
    let (target, other) = (&hosts[0], &hosts[1]);
    let starts = testkit::standin::starts(&target.deploy_dir());

    let rollback = || {
        sc.run(&["rollback", "--limit", target.name.as_str()])
            .inventory(&inv2)
            .only_hosts(&[target.name.as_str()])
    };
    let text = rollback().arg("--check").check().stdout();
    assert!(text.contains("would restore"), "{text}");
    assert_eq!(
        std::fs::read(compose(target)).expect("file"),
        after[0],
        "--check wrote"
    );

    let out = rollback().services(4).check().out;
    assert_eq!(
        std::fs::read(compose(target)).expect("file"),
        before[0],
        "{} not back on its previous compose file\n{}",
        target.name,
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(compose(other)).expect("file"),
        after[1],
        "{} outside --limit was rolled back",
        other.name
    );
    assert!(
        testkit::standin::starts(&target.deploy_dir()) > starts,
        "compose re-applied after the restore"
    );
}

/// Health gates against real Prometheus: a stage whose targets are all UP passes its gate
/// and the next stage runs; then, on a redeploy, one target goes down and never comes back:
/// the gate fails at its deadline, the stage (max_fail_percentage 0) halts the rollout, the
/// next stage is not started and, with --rollback-on-failure, the stage's hosts are back on
/// their previous compose file.
#[test]
fn a_failed_health_gate_halts_and_rolls_the_stage_back() {
    if !require_root() || !have("prometheus") {
        eprintln!("SKIPPED: needs root and Debian's prometheus");
        return;
    }
    let consul = Double::start();
    let fleet = Fleet::builder()
        .hosts(4)
        .groups(&["IDE", "Stage"])
        .monitoring_host(true)
        .fake_node_exporter(true)
        .consul_agents([consul.d.url()])
        .start()
        .expect("fleet");
    let (prom, _job) = Prometheus::for_fleet(&fleet, &consul, None);
    // Enough scrapes (1 s apart here) that the target is stopped before the gate can pass.
    let gate_timeout = Duration::from_secs(25);
    let stages = format!(
        "  - {{ name: gated, hosts: [IDE], max_fail_percentage: 0, gate: {{ scrapes: 10, timeout: {}s }} }}\n  - {{ name: rest, hosts: [Stage] }}\n",
        gate_timeout.as_secs()
    );
    let write = |name: &str, mem: Option<&str>| {
        let mut spec = fleet.inventory().var("prometheus_url", prom.url.clone());
        if let Some(m) = mem {
            spec = spec.var("exporter_mem_node", m);
        }
        let p = fleet.root().join(name);
        std::fs::write(&p, format!("{}\nstages:\n{stages}", spec.yaml())).expect("inventory");
        p
    };
    let ide: Vec<_> = fleet
        .hosts()
        .filter(|h| h.group == "IDE")
        .cloned()
        .collect();
    let rest: Vec<_> = fleet
        .hosts()
        .filter(|h| h.group == "Stage")
        .cloned()
        .collect();
    let compose = |h: &testkit::sshd::Host| h.deploy_dir().join("docker-compose.yml");

    // 1. Every target comes up: the gate passes per host, the next stage runs.
    let v1 = write("inventory-v1.yml", None);
    let out = exporters(&v1, &fleet, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        prom.log()
    );
    let r = report(&out);
    for h in r["hosts"].as_array().expect("hosts") {
        let ide_host = ide
            .iter()
            .any(|x| x.name == h["host"].as_str().unwrap_or(""));
        assert_eq!(
            h["gate"]["passed"].as_bool(),
            ide_host.then_some(true),
            "{h:#}"
        );
    }
    let before: Vec<Vec<u8>> = fleet
        .hosts()
        .map(|h| std::fs::read(compose(h)).expect("v1"))
        .collect();

    // 2. A redeploy during which one IDE host's exporters stop for good.
    let v2 = write("inventory-v2.yml", Some("400m"));
    let book = repo().join("playbooks/exporters.yml");
    let mut cmd = Run::new(&["exporters", "--playbook", book.to_str().expect("utf8")])
        .on_fleet(&v2, &fleet)
        .arg("--rollback-on-failure")
        .arg("--output")
        .arg("json")
        .cmd;
    cmd.env_remove("SSH_AUTH_SOCK");
    let mut run = Watched::spawn(cmd);
    assert!(
        run.wait_for("health gate after", Duration::from_secs(120)),
        "no gate:\n{}",
        run.text()
    );
    stop_exporters(&fleet, &ide[0]);
    let (out, _) = run.finish(gate_timeout * 6);
    let text = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::Halted as i32),
        "{text}"
    );
    let r = report(&out);
    let halted = r["halted"].as_str().expect("halted");
    assert!(
        halted.contains(&format!("{} failed the health gate", ide[0].name)),
        "{halted}"
    );
    assert!(halted.contains("rolled back"), "{halted}");
    let host = |name: &str| {
        r["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["host"] == name)
            .cloned()
            .expect("host")
    };
    let bad = host(&ide[0].name);
    assert_eq!(bad["gate"]["passed"], false, "{bad:#}");
    assert_eq!(bad["status"], "failed", "{bad:#}");
    assert!(
        bad["gate"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("node-exporter"),
        "{bad:#}"
    );
    assert_eq!(host(&ide[1].name)["gate"]["passed"], true);
    for (h, v1) in fleet.hosts().zip(&before) {
        assert_eq!(
            &std::fs::read(compose(h)).expect("compose"),
            v1,
            "{} not on its previous compose file\n{text}",
            h.name
        );
    }
    for h in &ide {
        assert_eq!(host(&h.name)["rolled_back"], true, "{}", h.name);
    }
    for h in &rest {
        assert_eq!(host(&h.name)["status"], "not_run", "{}", h.name);
        assert!(
            !h.deploy_dir().join("docker-compose.yml.prev").exists(),
            "{} of the next stage was rewritten",
            h.name
        );
    }
}

/// The gate's alert half against real Prometheus: an alert firing for one host's instance
/// fails that host's gate (and only that host's); one failed host of two, without a
/// max_fail_percentage, fails the host without halting.
#[test]
fn a_firing_alert_fails_the_gate_of_its_instance_only() {
    if !require_root() || !have("prometheus") {
        eprintln!("SKIPPED: needs root and Debian's prometheus");
        return;
    }
    let consul = Double::start();
    let fleet = Fleet::builder()
        .hosts(2)
        .groups(&["IDE"])
        .monitoring_host(true)
        .fake_node_exporter(true)
        .consul_agents([consul.d.url()])
        .start()
        .expect("fleet");
    let hosts: Vec<_> = fleet.hosts().cloned().collect();
    let rules = format!(
        "groups:\n  - name: gate-test\n    rules:\n      - alert: AlwaysFiring\n        expr: vector(1)\n        labels: {{ instance: {} }}\n",
        hosts[0].name
    );
    let (prom, _job) = Prometheus::for_fleet(&fleet, &consul, Some(&rules));
    let inv = fleet.root().join("inventory-gated.yml");
    let spec = fleet.inventory().var("prometheus_url", prom.url.clone());
    std::fs::write(
        &inv,
        format!(
            "{}\nstages:\n  - {{ name: gated, hosts: [IDE], gate: {{ scrapes: 2, timeout: 20s }} }}\n",
            spec.yaml()
        ),
    )
    .expect("inventory");
    let out = exporters(&inv, &fleet, &[]);
    let text = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::HostFailed as i32),
        "{text}\n{}",
        prom.log()
    );
    let r = report(&out);
    assert!(r["halted"].is_null(), "nothing left to halt: {r:#}");
    let gate = |name: &str| {
        r["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["host"] == name)
            .map(|h| h["gate"].clone())
            .expect("host")
    };
    let bad = gate(&hosts[0].name);
    assert_eq!(bad["passed"], false, "{bad:#}");
    let why = bad["detail"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!("alert AlwaysFiring firing for {}", hosts[0].name)),
        "{why}"
    );
    assert_eq!(gate(&hosts[1].name)["passed"], true, "{r:#}");
}
