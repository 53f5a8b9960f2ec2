//! The fault rig: a small real-sshd fleet with the fake node exporter, its Consul double(s)
//! and an inventory with the fast settings (`metrics_timeout: 3`), run with fast flags. The
//! fault matrix (tests/faults.rs) and the hostile and regression tests break one thing in it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use testkit::consul_double::ConsulDouble;
use testkit::sshd::Fleet;

use super::{
    Double, Run, assert_file_whole, assert_no_temp_files, find, repo, require_root, stderr,
};

/// Flags every fault run uses (the fast settings).
pub const FAST: &[&str] = &[
    "--output",
    "json",
    "--connect-timeout",
    "2",
    "--retries",
    "2",
    "--keepalive",
    "1",
];

/// A fleet, its Consul double(s) and an inventory written with the fast settings.
pub struct Rig {
    pub consul: Double,
    /// Extra agents (started on `consul`'s runtime), for the failover scenarios.
    pub more_agents: Vec<ConsulDouble>,
    pub fleet: Fleet,
    pub inv: PathBuf,
    pub book: PathBuf,
}

impl Rig {
    /// A fleet of `hosts` with `agents` Consul doubles; `None` (SKIPPED) without root.
    pub fn start(hosts: usize, agents: usize) -> Option<Rig> {
        if !require_root() {
            return None;
        }
        let consul = Double::start();
        let more_agents: Vec<ConsulDouble> = (1..agents).map(|_| consul.another()).collect();
        let mut urls = vec![consul.d.url()];
        urls.extend(more_agents.iter().map(|d| d.url()));
        let fleet = Fleet::builder()
            .hosts(hosts)
            .groups(&["IDE", "Stage"])
            .fake_node_exporter(true)
            .consul_agents(urls)
            .start()
            .expect("fleet");
        let inv = fleet.root().join("inventory.yml");
        let rig = Rig {
            consul,
            more_agents,
            fleet,
            inv,
            book: repo().join("playbooks/exporters.yml"),
        };
        rig.write_inventory(&[]);
        Some(rig)
    }

    /// The inventory with `metrics_timeout: 3`, each `(host, edit)` applied to that host's line.
    pub fn write_inventory(&self, edits: &[(&str, &dyn Fn(String) -> String)]) {
        let yaml = self.fleet.inventory().var("metrics_timeout", 3).yaml();
        std::fs::write(&self.inv, edit_hosts(&yaml, edits)).expect("write inventory");
    }

    /// `promfleet exporters` with the fast flags (plus `extra`), timed.
    pub fn run(&self, extra: &[&str]) -> (Output, Duration) {
        let started = Instant::now();
        let mut cmd = self.command(extra);
        let out = cmd.output().expect("run promfleet");
        (out, started.elapsed())
    }

    /// The command [`Rig::run`] runs (for tests that signal it).
    pub fn command(&self, extra: &[&str]) -> Command {
        let mut r = Run::new(&["exporters", "--playbook", self.book.to_str().expect("utf8")])
            .on_fleet(&self.inv, &self.fleet);
        for a in FAST.iter().chain(extra) {
            r = r.arg(a);
        }
        r.cmd
    }

    pub fn state_dir(&self) -> PathBuf {
        self.fleet.root().join("state")
    }

    /// Hosts listed in `<state-dir>/retry`.
    pub fn retry_list(&self) -> Vec<String> {
        super::retry_list(&self.state_dir())
    }

    /// host → the compose file promfleet renders for it (`promfleet render`, no connection).
    pub fn rendered(&self) -> BTreeMap<String, String> {
        let dir = self.fleet.root().join("rendered");
        let _ = std::fs::remove_dir_all(&dir);
        Run::render(&["playbooks/exporters.yml"], &self.inv, &dir).succeeds();
        self.fleet
            .hosts()
            .map(|h| {
                let f = find(&dir.join(&h.name), "docker-compose.yml")
                    .unwrap_or_else(|| panic!("rendered compose file of {}", h.name));
                (h.name.clone(), std::fs::read_to_string(f).expect("read"))
            })
            .collect()
    }

    /// Every compose file is absent, the previous version, or the whole new one; no temp
    /// files anywhere in the hosts' sandboxes.
    pub fn assert_files_whole(&self, rendered: &BTreeMap<String, String>, previous: Option<&str>) {
        for h in self.fleet.hosts() {
            assert_file_whole(
                &h.deploy_dir().join("docker-compose.yml"),
                &rendered[&h.name],
                previous,
            );
            assert_no_temp_files(&h.dir);
        }
    }
}

/// Apply `edits` to the inventory line of each named host (`{ name: host002, ip: … }`).
fn edit_hosts(yaml: &str, edits: &[(&str, &dyn Fn(String) -> String)]) -> String {
    let mut out = String::new();
    for line in yaml.lines() {
        let mut l = line.to_string();
        for (host, f) in edits {
            if l.contains(&format!("name: {host},")) {
                l = f(l);
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    for (host, _) in edits {
        assert!(
            yaml.contains(&format!("name: {host},")),
            "{host} not in inventory"
        );
    }
    out
}
