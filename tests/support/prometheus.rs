//! Real Prometheus (Debian's) on 127.0.0.1: alone with a given config, or discovering a fleet
//! through the Consul double's http_sd view with promfleet's rendered relabels.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use testkit::sshd::Fleet;

use super::{Double, Run, eventually, find, stderr};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Real Prometheus (Debian) on 127.0.0.1, killed on drop.
pub struct Prometheus {
    child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(config_yaml: &str) -> Prometheus {
        Prometheus::start_on(config_yaml, free_port())
    }

    /// On a port chosen by the caller (e.g. already named in the config as a target).
    pub fn start_on(config_yaml: &str, port: u16) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config_yaml).expect("write config");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).expect("log"))
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Prometheus discovering `fleet` through `consul`'s http_sd view, with the relabels of
    /// promfleet's rendered `prometheus.yml` (`render playbooks/monitoring.yml` of the fleet's
    /// inventory). `rules`: an alerting rules file (YAML) to load too. Also returns the name
    /// of the exporters' scrape job.
    pub fn for_fleet(fleet: &Fleet, consul: &Double, rules: Option<&str>) -> (Prometheus, String) {
        let inv = fleet.root().join("inventory-render.yml");
        fleet.write_inventory(&inv).expect("inventory");
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
        let Some(rules) = rules else {
            return (Prometheus::start(&cfg), job);
        };
        let file = fleet.root().join("rules.yml");
        std::fs::write(&file, rules).expect("rules");
        let mut cfg: Value = serde_json::from_str(&cfg).expect("config is JSON");
        cfg["rule_files"] = serde_json::json!([file]);
        (Prometheus::start(&cfg.to_string()), job)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("log")).unwrap_or_default()
    }

    /// Poll the active targets (on `rt`) until `pred` holds for them; fails after `limit`
    /// naming `what` and with Prometheus' log.
    pub fn wait_targets_within(
        &self,
        rt: &tokio::runtime::Runtime,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[Value]) -> bool + Clone,
    ) {
        let url = format!("{}/api/v1/targets?state=active", self.url);
        let http = reqwest::Client::new();
        let seen = rt.block_on(eventually(limit, || {
            let (http, url, pred) = (http.clone(), url.clone(), pred.clone());
            async move {
                let v: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                pred(v["data"]["activeTargets"].as_array()?).then_some(())
            }
        }));
        assert!(
            seen.is_some(),
            "Prometheus never showed {what}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll Prometheus (40 s) until `pred` holds for its active targets.
pub fn wait_targets(
    consul: &Double,
    prom: &Prometheus,
    what: &str,
    pred: impl Fn(&[Value]) -> bool + Clone,
) {
    prom.wait_targets_within(&consul.rt, Duration::from_secs(40), what, pred);
}
