//! Real Prometheus and Alertmanager (Debian's `prometheus`, `prometheus-alertmanager`) on
//! loopback: any config started as an [`Engine`]; Prometheus alone with a given config, or
//! discovering a fleet through the Consul double's http_sd view with promfleet's rendered
//! relabels.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// How a Prometheus engine is started: the program, its config file (read where it lies, so
/// the relative paths in it — rule files, credentials — resolve next to it), the `ip:port` it
/// listens on, and any further flags. Its data and its log (`<program>.log`) go next to the
/// config.
pub struct Launch {
    cmd: Command,
    addr: String,
    log: PathBuf,
}

impl Launch {
    /// `prometheus`, its TSDB in `data/` next to the config.
    pub fn prometheus(config: &Path, addr: &str) -> Launch {
        let dir = config.parent().expect("config in a directory");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"));
        Launch {
            cmd,
            addr: addr.into(),
            log: dir.join("prometheus.log"),
        }
    }

    /// `prometheus-alertmanager`, its silences and notification log in `am-data/` next to the
    /// config. It gossips on 0.0.0.0:9094 unless told otherwise: see [`Launch::standalone`].
    pub fn alertmanager(config: &Path, addr: &str) -> Launch {
        let dir = config.parent().expect("config in a directory");
        let mut cmd = Command::new("prometheus-alertmanager");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address={addr}"));
        Launch {
            cmd,
            addr: addr.into(),
            log: dir.join("alertmanager.log"),
        }
    }

    /// An Alertmanager in no cluster (an empty `--cluster.listen-address` turns gossip off).
    pub fn standalone(self) -> Launch {
        self.arg("--cluster.listen-address=")
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Launch {
        self.cmd.arg(arg);
        self
    }

    pub fn start(mut self) -> Engine {
        let log = std::fs::File::create(&self.log)
            .unwrap_or_else(|e| panic!("{}: {e}", self.log.display()));
        let child = self
            .cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", self.cmd));
        Engine {
            child,
            addr: self.addr,
            log: self.log,
        }
    }
}

/// A running Prometheus engine, killed on drop.
pub struct Engine {
    child: Child,
    /// `ip:port` it listens on.
    pub addr: String,
    log: PathBuf,
}

impl Engine {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it accepts connections; fails after `limit` with its log. For a test
    /// without a runtime of its own (it polls on one made for the wait).
    pub fn wait_listening(&self, limit: Duration) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listening = rt.block_on(eventually(limit, || {
            let addr = self.addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(drop) }
        }));
        assert!(
            listening.is_some(),
            "{} never listened within {limit:?}; log:\n{}",
            self.addr,
            self.log()
        );
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Real Prometheus (Debian) on 127.0.0.1 with a config of the test's, in a directory of its
/// own; killed on drop.
pub struct Prometheus {
    engine: Engine,
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
        let engine = Launch::prometheus(&cfg, &format!("127.0.0.1:{port}")).start();
        Prometheus {
            url: format!("http://{}", engine.addr),
            engine,
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
        Run::render(&["playbooks/monitoring.yml"], &inv, &rendered).succeeds();
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
        self.engine.log()
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

/// Poll Prometheus (40 s) until `pred` holds for its active targets.
pub fn wait_targets(
    consul: &Double,
    prom: &Prometheus,
    what: &str,
    pred: impl Fn(&[Value]) -> bool + Clone,
) {
    prom.wait_targets_within(&consul.rt, Duration::from_secs(40), what, pred);
}
