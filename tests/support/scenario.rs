//! A fleet scenario read top to bottom, as just's `Test` (tests/test.rs in casey/just): build
//! the fleet, run one promfleet command, state every expectation, and `check()` them all at
//! once; a failure lists every unmet expectation with the run's stdout and stderr.
//!
//! ```ignore
//! let Some(sc) = Scenario::fleet(3).groups(&["IDE"]).consul().start() else { return };
//! sc.exporters(&[]).all_hosts("changed").services(6).check();
//! sc.exporters(&[]).unchanged().check();
//! sc.run(&["rollback", "--limit", "host001"]).only_hosts(&["host001"]).check();
//! ```
//!
//! `run` is for the commands that act on the fleet (deploy, exporters, rollback, status, …):
//! it adds `-i <inventory> --known-hosts … --state-dir … --retry-delay-ms 100 --output json`,
//! so host expectations read the JSON report. Without root `start()` prints SKIPPED and
//! gives None.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use testkit::consul_double::DoubleOptions;
use testkit::sshd::{Fleet, Host};

use super::{Double, Run, require_root, stderr, stdout};

/// A fleet scenario under construction (nothing runs until [`Scenario::start`]).
#[must_use]
pub struct Scenario {
    hosts: usize,
    groups: Vec<String>,
    consul: Option<DoubleOptions>,
    fake_node_exporter: bool,
    monitoring_host: bool,
    vars: Vec<(String, Value)>,
    stages: Option<String>,
}

impl Scenario {
    /// A fleet of `hosts` real-sshd hosts (the fleet's default groups, no Consul).
    pub fn fleet(hosts: usize) -> Scenario {
        Scenario {
            hosts,
            groups: Vec::new(),
            consul: None,
            fake_node_exporter: false,
            monitoring_host: false,
            vars: Vec::new(),
            stages: None,
        }
    }

    /// Groups, assigned round-robin: host001 → first group, host002 → second, …
    pub fn groups(mut self, groups: &[&str]) -> Scenario {
        self.groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }

    /// A plain Consul test double as the fleet's agent.
    pub fn consul(self) -> Scenario {
        self.consul_with(DoubleOptions::default())
    }

    /// A Consul test double started with `options` (ACL token, TLS, servers).
    pub fn consul_with(mut self, options: DoubleOptions) -> Scenario {
        self.consul = Some(options);
        self
    }

    /// The stand-in serves node metrics from the small fake exporter (lighter per host).
    pub fn fake_node_exporter(mut self) -> Scenario {
        self.fake_node_exporter = true;
        self
    }

    /// One more host, `mon01`, in group `monitoring` (not among [`Scene::hosts`]).
    pub fn monitoring_host(mut self) -> Scenario {
        self.monitoring_host = true;
        self
    }

    /// A global inventory variable.
    pub fn var(mut self, key: &str, value: impl Into<Value>) -> Scenario {
        self.vars.push((key.to_owned(), value.into()));
        self
    }

    /// The inventory's `stages:` list (YAML list items, indented by two).
    pub fn stages(mut self, yaml: &str) -> Scenario {
        self.stages = Some(yaml.to_owned());
        self
    }

    /// Start the double and the fleet and write the inventory; None (SKIPPED) without root.
    pub fn start(self) -> Option<Scene> {
        if !require_root() {
            return None;
        }
        let consul = self.consul.map(Double::start_with);
        let mut builder = Fleet::builder()
            .hosts(self.hosts)
            .fake_node_exporter(self.fake_node_exporter)
            .monitoring_host(self.monitoring_host);
        if !self.groups.is_empty() {
            let groups: Vec<&str> = self.groups.iter().map(String::as_str).collect();
            builder = builder.groups(&groups);
        }
        if let Some(c) = &consul {
            builder = builder.consul_agents([c.d.url()]);
        }
        let fleet = builder.start().expect("fleet");
        let inv = fleet.root().join("inventory.yml");
        let scene = Scene {
            consul,
            fleet,
            inv,
            vars: self.vars,
            stages: self.stages,
        };
        scene.write_inventory(&scene.inv, &[]);
        Some(scene)
    }
}

/// A started scenario: the fleet, its Consul double, its inventory.
pub struct Scene {
    consul: Option<Double>,
    pub fleet: Fleet,
    /// The inventory `run` passes unless told another.
    pub inv: PathBuf,
    vars: Vec<(String, Value)>,
    stages: Option<String>,
}

impl Scene {
    /// The Consul double (the scenario asked for one).
    pub fn consul(&self) -> &Double {
        self.consul
            .as_ref()
            .expect("the scenario has no Consul double: add .consul()")
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.fleet.hosts()
    }

    /// The fleet's hosts of `group`.
    pub fn group(&self, group: &str) -> Vec<Host> {
        self.fleet
            .hosts()
            .filter(|h| h.group == group)
            .cloned()
            .collect()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.fleet.root().join("state")
    }

    /// Hosts listed in the run's retry file.
    pub fn retry_list(&self) -> Vec<String> {
        super::retry_list(&self.state_dir())
    }

    /// Another inventory file `name` in the fleet's root: the scenario's, with `vars` on top.
    pub fn inventory_with(&self, name: &str, vars: &[(&str, Value)]) -> PathBuf {
        let path = self.fleet.root().join(name);
        self.write_inventory(&path, vars);
        path
    }

    fn write_inventory(&self, path: &Path, extra: &[(&str, Value)]) {
        let mut spec = self.fleet.inventory();
        for (k, v) in &self.vars {
            spec = spec.var(k, v.clone());
        }
        for (k, v) in extra {
            spec = spec.var(k, v.clone());
        }
        let mut yaml = spec.yaml();
        if let Some(stages) = &self.stages {
            yaml = format!("{yaml}\nstages:\n{stages}");
        }
        std::fs::write(path, yaml).expect("write inventory");
    }

    /// `promfleet exporters --playbook <checkout>/playbooks/exporters.yml <extra>`.
    pub fn exporters(&self, extra: &[&str]) -> Expect<'_> {
        let book = super::repo().join("playbooks/exporters.yml");
        self.run(&["exporters", "--playbook"]).arg(book).args(extra)
    }

    /// `promfleet <args>` against the fleet; state expectations, then [`Expect::check`].
    pub fn run(&self, args: &[&str]) -> Expect<'_> {
        Expect {
            scene: self,
            args: args.iter().map(OsString::from).collect(),
            inv: self.inv.clone(),
            env: Vec::new(),
            code: 0,
            hosts: Vec::new(),
            all_hosts: None,
            only: None,
            changed: None,
            min_tasks_changed: None,
            unchanged: false,
            services: None,
            registered: Vec::new(),
            retry: None,
            stderr_has: Vec::new(),
            errors_have: Vec::new(),
        }
    }
}

/// One promfleet run and what it must show; nothing runs until [`Expect::check`].
#[must_use = "nothing is run or checked until .check()"]
pub struct Expect<'a> {
    scene: &'a Scene,
    args: Vec<OsString>,
    inv: PathBuf,
    env: Vec<(String, String)>,
    code: i32,
    hosts: Vec<(String, String)>,
    all_hosts: Option<String>,
    only: Option<Vec<String>>,
    changed: Option<usize>,
    min_tasks_changed: Option<u64>,
    unchanged: bool,
    services: Option<usize>,
    registered: Vec<(String, String, u16)>,
    retry: Option<Vec<String>>,
    stderr_has: Vec<String>,
    errors_have: Vec<(String, String)>,
}

impl Expect<'_> {
    /// One more command-line argument, after the fleet flags.
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    /// Run against this inventory instead of the scenario's.
    pub fn inventory(mut self, path: &Path) -> Self {
        self.inv = path.to_path_buf();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The exit code (0 unless told otherwise, as in just's tests).
    pub fn status(mut self, code: i32) -> Self {
        self.code = code;
        self
    }

    /// `host` ends with this status in the report (`changed`, `ok`, `failed`, `unreachable`,
    /// `not_run`).
    pub fn host(mut self, host: &str, status: &str) -> Self {
        self.hosts.push((host.to_owned(), status.to_owned()));
        self
    }

    /// Every fleet host, and no other, is in the report with this status.
    pub fn all_hosts(mut self, status: &str) -> Self {
        self.all_hosts = Some(status.to_owned());
        self
    }

    /// The report lists exactly these hosts (in any order).
    pub fn only_hosts(mut self, hosts: &[&str]) -> Self {
        let mut v: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        v.sort();
        self.only = Some(v);
        self
    }

    /// Exactly `n` hosts are reported changed.
    pub fn hosts_changed(mut self, n: usize) -> Self {
        self.changed = Some(n);
        self
    }

    /// Every fleet host is reported with at least `n` changed tasks.
    pub fn each_host_changed_at_least(mut self, n: u64) -> Self {
        self.min_tasks_changed = Some(n);
        self
    }

    /// Every fleet host, and no other, is reported ok with nothing changed.
    pub fn unchanged(mut self) -> Self {
        self.unchanged = true;
        self
    }

    /// The Consul double holds exactly `n` services after the run.
    pub fn services(mut self, n: usize) -> Self {
        self.services = Some(n);
        self
    }

    /// `service` of `host` is registered as promfleet registers it: id
    /// `<service>-<host>-<ip>`, the host's address, `port`, its hostname and group as meta,
    /// an HTTP check on its /metrics.
    pub fn registered(mut self, host: &str, service: &str, port: u16) -> Self {
        self.registered
            .push((host.to_owned(), service.to_owned(), port));
        self
    }

    /// Every fleet host has each of `services` (name, port) registered, as [`Expect::registered`].
    pub fn every_host_registered(mut self, services: &[(&str, u16)]) -> Self {
        for h in self.scene.fleet.hosts() {
            for (svc, port) in services {
                self.registered
                    .push((h.name.clone(), svc.to_string(), *port));
            }
        }
        self
    }

    /// The retry file lists exactly these hosts (in any order).
    pub fn retry(mut self, hosts: &[&str]) -> Self {
        let mut v: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        v.sort();
        self.retry = Some(v);
        self
    }

    /// stderr (the terminal recap) contains `text`.
    pub fn stderr_contains(mut self, text: &str) -> Self {
        self.stderr_has.push(text.to_owned());
        self
    }

    /// `host`'s one-line error in the report contains `text`.
    pub fn error_contains(mut self, host: &str, text: &str) -> Self {
        self.errors_have.push((host.to_owned(), text.to_owned()));
        self
    }

    /// Run, then check every expectation; panics listing all unmet ones with stdout and
    /// stderr. The run's output and report, for what is left to assert.
    #[track_caller]
    pub fn check(self) -> Ran {
        let sc = self.scene;
        // The subcommand and its own arguments first, then the fleet flags.
        let mut r = Run::new(&[]);
        for a in &self.args {
            r = r.arg(a);
        }
        r = r.on_fleet(&self.inv, &sc.fleet).arg("--output").arg("json");
        for (k, v) in &self.env {
            r = r.env(k, v);
        }
        let out = r.output();
        let report: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        let mut unmet = Vec::new();
        if out.status.code() != Some(self.code) {
            unmet.push(format!(
                "exit code {:?}, expected {}",
                out.status.code(),
                self.code
            ));
        }
        let needs_report = !self.hosts.is_empty()
            || self.all_hosts.is_some()
            || self.only.is_some()
            || self.changed.is_some()
            || self.min_tasks_changed.is_some()
            || self.unchanged
            || !self.errors_have.is_empty();
        let hosts: Vec<(String, String, Option<u64>, String)> = report
            .as_ref()
            .and_then(|r| r["hosts"].as_array())
            .map(|a| {
                a.iter()
                    .map(|h| {
                        (
                            h["host"].as_str().unwrap_or_default().to_owned(),
                            h["status"].as_str().unwrap_or_default().to_owned(),
                            h["changed"].as_u64(),
                            h["error"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if needs_report && report.is_none() {
            unmet.push("no JSON report on stdout".to_owned());
        }
        let row = |name: &str| hosts.iter().find(|h| h.0 == name);
        for (name, want) in &self.hosts {
            match row(name) {
                Some(h) if &h.1 == want => {}
                Some(h) => unmet.push(format!("{name} is {}, expected {want}", h.1)),
                None => unmet.push(format!("{name} is not in the report")),
            }
        }
        let fleet_hosts: Vec<&str> = sc.fleet.hosts().map(|h| h.name.as_str()).collect();
        if self.all_hosts.is_some() || self.unchanged {
            let others: Vec<&str> = hosts
                .iter()
                .map(|h| h.0.as_str())
                .filter(|h| !fleet_hosts.contains(h))
                .collect();
            if !others.is_empty() {
                unmet.push(format!("hosts outside the fleet in the report: {others:?}"));
            }
        }
        if let Some(want) = &self.all_hosts {
            for name in &fleet_hosts {
                match row(name) {
                    Some(h) if &h.1 == want => {}
                    Some(h) => unmet.push(format!("{name} is {}, expected {want}", h.1)),
                    None => unmet.push(format!("{name} is not in the report")),
                }
            }
        }
        if let Some(want) = &self.only {
            let mut got: Vec<String> = hosts.iter().map(|h| h.0.clone()).collect();
            got.sort();
            if &got != want {
                unmet.push(format!("the report lists {got:?}, expected {want:?}"));
            }
        }
        if let Some(n) = self.changed {
            let changed: Vec<&str> = hosts
                .iter()
                .filter(|h| h.1 == "changed")
                .map(|h| h.0.as_str())
                .collect();
            if changed.len() != n {
                unmet.push(format!(
                    "{} hosts changed, expected {n}: {changed:?}",
                    changed.len()
                ));
            }
        }
        if let Some(n) = self.min_tasks_changed {
            for name in &fleet_hosts {
                match row(name) {
                    Some(h) if h.2.is_some_and(|c| c >= n) => {}
                    Some(h) => unmet.push(format!(
                        "{name} changed {:?} tasks, expected at least {n}",
                        h.2
                    )),
                    None => unmet.push(format!("{name} is not in the report")),
                }
            }
        }
        if self.unchanged {
            for name in &fleet_hosts {
                match row(name) {
                    Some(h) if h.1 == "ok" && h.2 == Some(0) => {}
                    Some(h) => unmet.push(format!(
                        "{name} is {} with {:?} changed, expected ok and 0",
                        h.1, h.2
                    )),
                    None => unmet.push(format!("{name} is not in the report")),
                }
            }
        }
        for (name, text) in &self.errors_have {
            match row(name) {
                Some(h) if h.3.contains(text.as_str()) => {}
                Some(h) => unmet.push(format!("{name}'s error {:?} lacks {text:?}", h.3)),
                None => unmet.push(format!("{name} is not in the report")),
            }
        }
        let err_text = stderr(&out);
        for text in &self.stderr_has {
            if !err_text.contains(text.as_str()) {
                unmet.push(format!("stderr lacks {text:?}"));
            }
        }
        if self.services.is_some() || !self.registered.is_empty() {
            let services = sc.consul().d.services();
            if let Some(n) = self.services
                && services.len() != n
            {
                let ids: Vec<&str> = services.iter().map(|s| s.id.as_str()).collect();
                unmet.push(format!(
                    "Consul holds {} services, expected {n}: {ids:?}",
                    services.len()
                ));
            }
            for (name, svc, port) in &self.registered {
                let Some(h) = sc.fleet.host(name) else {
                    unmet.push(format!("{name} is not a fleet host"));
                    continue;
                };
                let id = format!("{svc}-{}-{}", h.name, h.ip);
                let Some(s) = services.iter().find(|s| s.id == id) else {
                    unmet.push(format!("{id} is not registered"));
                    continue;
                };
                let check = s.checks.first().and_then(|c| c.http.clone());
                let want_check = format!("http://{}:{port}/metrics", h.ip);
                if s.name != *svc
                    || s.address != h.ip.to_string()
                    || s.port != *port
                    || s.meta.get("hostname") != Some(&h.name)
                    || s.meta.get("group") != Some(&h.group)
                    || check.as_deref() != Some(want_check.as_str())
                {
                    unmet.push(format!(
                        "{id} registered as {s:?}, expected name {svc}, address {}, port \
                         {port}, hostname {}, group {}, check {want_check}",
                        h.ip, h.name, h.group
                    ));
                }
            }
        }
        if let Some(want) = &self.retry {
            let mut got = sc.retry_list();
            got.sort();
            if &got != want {
                unmet.push(format!("retry file lists {got:?}, expected {want:?}"));
            }
        }
        if !unmet.is_empty() {
            let args: Vec<String> = self
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            panic!(
                "promfleet {}: {} unmet expectation(s):\n  - {}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                unmet.len(),
                unmet.join("\n  - "),
                stdout(&out),
                err_text
            );
        }
        Ran { out, report }
    }
}

/// A checked run: its output and JSON report, for the assertions a scenario adds.
pub struct Ran {
    pub out: Output,
    report: Option<Value>,
}

impl Ran {
    /// The JSON report (panics when stdout held none).
    pub fn report(&self) -> &Value {
        self.report.as_ref().unwrap_or_else(|| {
            panic!(
                "no JSON report; stdout:\n{}\nstderr:\n{}",
                stdout(&self.out),
                stderr(&self.out)
            )
        })
    }

    pub fn stdout(&self) -> String {
        stdout(&self.out)
    }

    pub fn stderr(&self) -> String {
        stderr(&self.out)
    }
}

/// The builder itself: `check()` must fail on each unmet expectation and name them all, or a
/// converted test would pass whatever promfleet does.
#[test]
fn scenario_check_names_every_unmet_expectation_and_passes_met_ones() {
    let Some(sc) = Scenario::fleet(2)
        .groups(&["IDE"])
        .fake_node_exporter()
        .consul()
        .start()
    else {
        return;
    };
    let names: Vec<String> = sc.hosts().map(|h| h.name.clone()).collect();
    let (first, second) = (names[0].as_str(), names[1].as_str());
    let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sc.exporters(&[])
            .status(3)
            .host(first, "ok")
            .only_hosts(&[first])
            .hosts_changed(1)
            .each_host_changed_at_least(99)
            .services(5)
            .registered(second, "node-exporter", 9999)
            .retry(&[second])
            .stderr_contains("no such text")
            .error_contains(first, "no such error")
            .check();
    }));
    let message = match wrong {
        Ok(()) => panic!("check() passed with every expectation wrong"),
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "non-string panic".to_owned()),
    };
    for needle in [
        "11 unmet expectation(s)",
        "exit code Some(0), expected 3",
        &format!("{first} is changed, expected ok"),
        "the report lists",
        "2 hosts changed, expected 1",
        "expected at least 99",
        "Consul holds 4 services, expected 5",
        "expected name node-exporter",
        "retry file lists [], expected",
        "stderr lacks \"no such text\"",
        &format!("{first}'s error \"\" lacks \"no such error\""),
        "\nstdout:\n{",
        "\nstderr:\n",
    ] {
        assert!(message.contains(needle), "`{needle}` not in:\n{message}");
    }
    // The same run, expected right, passes; a second one changes nothing.
    sc.exporters(&[])
        .unchanged()
        .only_hosts(&[first, second])
        .services(4)
        .every_host_registered(&[("node-exporter", 9100), ("cadvisor-exporter", 9105)])
        .retry(&[])
        .check();
}
