//! `promfleet deploy playbooks/site.yml` end to end on the test fleet (issues 13 and 17):
//! consul.yml → monitoring.yml → exporters.yml → verify.yml in one command, over real SSH.
//!
//! What runs for real: sshd, the exporters (prometheus-node-exporter; cAdvisor is the fake
//! exporter), `docker-compose config` (inside the compose stand-in), and the Prometheus the
//! verify play asks (Debian's). Stand-ins: Consul is the test double; the central containers
//! are the stand-in's placeholders, and Prometheus, Alertmanager, Grafana, the DingTalk
//! webhook and Karma are `fake-central` (testkit/src/bin/fake-central.rs), which answers only
//! the ready, health and reload calls the plays make and the health and status calls of
//! `promfleet status`.
//!
//! How the verify play reaches a real Prometheus: a follower thread watches the placeholder
//! Prometheus of the first monitoring host; when the monitoring play's handler POSTs
//! `/-/reload` to it, the follower (re)starts real Prometheus from the files that play deployed
//! on that host (prometheus.yml, consul_token, consul_tls/*), with the `consul_sd_configs`
//! entries' client settings (scheme, tls_config, authorization) moved unchanged onto
//! `http_sd_configs` entries reading the double's view of the same registry (Debian's
//! Prometheus has no Consul SD; see tests/consul_tls.rs). `-e prometheus_url=` points the verify
//! play (and `status`) at it.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::consul_double::{ConsulDouble, DoubleOptions};
use testkit::sshd::{Fleet, Host};
use testkit::tls::{ServerTls, TestCa};

use crate::support::*;

const TOKEN: &str = "acl-token-site-default-deny-5e1c";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn can_run() -> bool {
    if !require_root() {
        return false;
    }
    for p in ["prometheus", "docker-compose", "prometheus-node-exporter"] {
        if !have(p) {
            println!("SKIPPED: {p} not installed");
            return false;
        }
    }
    true
}

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The secrets every monitoring play needs besides Consul's (two groups: IDE, Stage).
const STACK_SECRETS: &str = "grafana_admin_password: site-grafana-pw\n\
    dingtalk_token_ide: site-tok-ide\ndingtalk_secret_ide: site-sec-ide\n\
    dingtalk_token_stage: site-tok-stage\ndingtalk_secret_stage: site-sec-stage\n";

/// The central services' published ports (free on this machine; each monitoring host serves
/// them on its own address).
struct Ports {
    vars: Vec<(&'static str, u16)>,
}

impl Ports {
    fn new() -> Ports {
        let vars = [
            "prometheus_port",
            "alertmanager_port",
            "grafana_port",
            "dingtalk_port",
            "karma_port",
        ]
        .into_iter()
        .map(|v| (v, free_port()))
        .collect();
        Ports { vars }
    }

    fn port(&self, var: &str) -> u16 {
        self.vars
            .iter()
            .find(|(v, _)| *v == var)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no {var}"))
    }
}

/// A monitoring host's project dirs: (monitoring stack, data, consul cluster).
fn stack_dirs(h: &Host) -> (PathBuf, PathBuf, PathBuf) {
    (
        h.dir.join("monitoring"),
        h.dir.join("data"),
        h.dir.join("consul"),
    )
}

/// The site inventory: every fleet host but `left_out`, each monitoring host with its own
/// stack dirs and `become` (the data directories are chowned to the containers' users).
fn site_inventory(fleet: &Fleet, ports: &Ports, left_out: &[&str], consul_block: &str) -> PathBuf {
    let mut spec = fleet.inventory().var("metrics_timeout", 30);
    for (k, p) in &ports.vars {
        spec = spec.var(k, *p);
    }
    for h in fleet.monitoring_hosts() {
        let (m, d, c) = stack_dirs(h);
        spec = spec
            .host_var(&h.name, "monitoring_dir", m.display().to_string())
            .host_var(&h.name, "monitoring_data_dir", d.display().to_string())
            .host_var(&h.name, "consul_dir", c.display().to_string())
            .host_ssh(&h.name, "become", true);
    }
    for h in left_out {
        spec = spec.without_host(h);
    }
    let mut yaml = spec.yaml();
    if !consul_block.is_empty() {
        assert!(yaml.contains("consul: { agents:"), "{yaml}");
        yaml = yaml.replace(
            "consul: { agents:",
            &format!("consul: {{ {consul_block}, agents:"),
        );
    }
    let name = format!("site-{}.yml", left_out.join("-"));
    write(fleet.root(), &name, &yaml, 0o644)
}

/// `deploy playbooks/site.yml` with the verify play pointed at `prometheus_url`; JSON report.
fn deploy_site(
    fleet: &Fleet,
    inv: &Path,
    secrets: &Path,
    env: &[(&str, &str)],
    prometheus_url: &str,
) -> (Output, Value) {
    let mut r = Run::new(&["deploy", "playbooks/site.yml"]).without_settings_env();
    for (k, v) in env {
        r = r.env(k, v);
    }
    r.on_fleet(inv, fleet)
        .arg("--secrets")
        .arg(secrets)
        .arg("-e")
        .arg(format!("prometheus_url={prometheus_url}"))
        .report_hiding(&[TOKEN])
}

/// Outcome of `task` on `host` in a JSON report.
fn outcome(r: &Value, host: &str, task: &str) -> Option<String> {
    r["hosts"].as_array()?.iter().find(|h| h["host"] == host)?["tasks"]
        .as_array()?
        .iter()
        .find(|t| t["task"] == task)
        .map(|t| t["outcome"].as_str().unwrap_or_default().to_owned())
}

/// Names of the tasks that changed on `host`.
fn changed_tasks(r: &Value, host: &str) -> Vec<String> {
    r["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["host"] == host)
        .flat_map(|h| h["tasks"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["outcome"] == "changed")
        .map(|t| t["task"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// What a fake-central placeholder answered: `METHOD path status` lines.
fn answered(project: &Path, service: &str, line: &str) -> usize {
    testkit::standin::requests(project, service)
        .iter()
        .filter(|l| *l == line)
        .count()
}

/// The deployed `prometheus.yml` of a monitoring host made runnable here: the consul job only,
/// its `consul_sd_configs` entries turned into `http_sd_configs` on the double's view with the
/// same scheme, `tls_config` and `authorization`, their files read where the play put them.
fn runnable_from_deployed(prom_dir: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(prom_dir.join("prometheus.yml"))
        .map_err(|e| format!("prometheus.yml: {e}"))?;
    let mut cfg: Value = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
    let external = cfg["global"]["external_labels"].take();
    cfg["global"] = json!({"scrape_interval": "1s", "evaluation_interval": "1s"});
    if !external.is_null() {
        cfg["global"]["external_labels"] = external;
    }
    let obj = cfg.as_object_mut().ok_or("not a map")?;
    obj.remove("alerting");
    obj.remove("rule_files");
    let jobs = cfg["scrape_configs"]
        .as_array_mut()
        .ok_or("no scrape_configs")?;
    jobs.retain(|j| j.get("consul_sd_configs").is_some());
    if jobs.is_empty() {
        return Err(format!("no consul_sd_configs job in\n{text}"));
    }
    for job in jobs.iter_mut() {
        let o = job.as_object_mut().ok_or("job")?;
        let sds = o.remove("consul_sd_configs").unwrap_or_default();
        let mut http_sd = Vec::new();
        for sd in sds.as_array().ok_or("consul_sd_configs")? {
            let server = sd["server"].as_str().ok_or("server")?;
            let scheme = sd["scheme"].as_str().unwrap_or("http");
            let mut h = json!({
                "url": format!("{scheme}://{server}/promfleet-double/http_sd"),
                "refresh_interval": "1s",
            });
            for key in ["tls_config", "authorization"] {
                let Some(v) = sd.get(key) else { continue };
                let mut v = v.clone();
                for f in ["ca_file", "cert_file", "key_file", "credentials_file"] {
                    if let Some(rel) = v[f].as_str() {
                        v[f] = prom_dir.join(rel).display().to_string().into();
                    }
                }
                h[key] = v;
            }
            http_sd.push(h);
        }
        o.insert("http_sd_configs".into(), Value::Array(http_sd));
        o.insert("scrape_interval".into(), json!("1s"));
    }
    serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())
}

#[derive(Default)]
struct FollowState {
    prometheus: Option<Prometheus>,
    /// Configs real Prometheus was (re)started with, oldest first.
    configs: Vec<String>,
    error: Option<String>,
}

/// How often the follower looks for a new reload of the stand-in Prometheus.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How long a test waits for the follower to catch up with the reloads: its poll, many times
/// over (the restart itself only spawns Prometheus; the wait is for the follower's thread to
/// be scheduled on a loaded machine).
const FOLLOW_LIMIT: Duration = Duration::from_secs(30);

/// Real Prometheus following one monitoring host's placeholder Prometheus (see the header).
struct Follower {
    monitoring_dir: PathBuf,
    url: String,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<FollowState>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn start(monitoring_dir: PathBuf) -> Follower {
        let dir = monitoring_dir.clone();
        let port = free_port();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(FollowState::default()));
        let (s, st) = (stop.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = 0;
            while !s.load(Ordering::Relaxed) {
                let reloads = answered(&monitoring_dir, "prometheus", "POST /-/reload 200");
                if reloads > seen {
                    seen = reloads;
                    let mut g = st.lock().unwrap();
                    match runnable_from_deployed(&monitoring_dir.join("prometheus")) {
                        Ok(cfg) => {
                            g.prometheus = None;
                            g.prometheus = Some(Prometheus::start_on(&cfg, port));
                            g.configs.push(cfg);
                        }
                        Err(e) => g.error = Some(e),
                    }
                }
                std::thread::sleep(FOLLOW_POLL);
            }
        });
        Follower {
            monitoring_dir: dir,
            url: format!("http://127.0.0.1:{port}"),
            stop,
            state,
            thread: Some(thread),
        }
    }

    /// Prometheus starts so far, once the follower has followed every reload the stand-in
    /// answered. The deploy returns as soon as its own checks pass, and they may pass against
    /// the Prometheus started before the last reload: the follower notices a reload only at its
    /// next poll (`FOLLOW_POLL`), so reading the count right away raced it (seen in CI: the
    /// 1 → 2 move's second start missing, no error). Waits at most `FOLLOW_LIMIT`.
    fn starts(&self) -> usize {
        let deadline = std::time::Instant::now() + FOLLOW_LIMIT;
        loop {
            let want = answered(&self.monitoring_dir, "prometheus", "POST /-/reload 200");
            let g = self.state.lock().unwrap();
            if g.configs.len() >= want || g.error.is_some() || std::time::Instant::now() > deadline
            {
                return g.configs.len();
            }
            drop(g);
            std::thread::sleep(FOLLOW_POLL);
        }
    }

    fn error(&self) -> Option<String> {
        self.state.lock().unwrap().error.clone()
    }

    /// What the follower saw, for a failure message: its error, the Prometheus starts, the
    /// stand-in Prometheus' requests (the reloads it follows) and the real Prometheus' log.
    fn diagnosis(&self) -> String {
        format!(
            "follower error: {:?}; Prometheus starts: {}; stand-in prometheus requests: {:?}\nprometheus log:\n{}",
            self.error(),
            self.starts(),
            testkit::standin::requests(&self.monitoring_dir, "prometheus"),
            self.log()
        )
    }

    fn log(&self) -> String {
        let g = self.state.lock().unwrap();
        g.prometheus
            .as_ref()
            .map(Prometheus::log)
            .unwrap_or_default()
    }

    /// The real Prometheus' active targets as (instance, scrape URL, health).
    fn targets(&self, rt: &tokio::runtime::Runtime) -> Vec<(String, String, String)> {
        let url = format!("{}/api/v1/targets?state=active", self.url);
        let v: Value = rt
            .block_on(async { reqwest::get(&url).await.ok()?.json().await.ok() })
            .unwrap_or_default();
        v["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["labels"]["instance"].as_str().unwrap_or("").to_owned(),
                    t["scrapeUrl"].as_str().unwrap_or("").to_owned(),
                    t["health"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An exporter registration: (hostname, service name).
type Reg = (String, String);

/// Environment variables of one run.
type EnvPairs<'a> = Vec<(&'a str, &'a str)>;

/// The exporters promfleet registered, as (hostname, service name).
fn registered(consul: &ConsulDouble) -> BTreeSet<Reg> {
    consul
        .services()
        .into_iter()
        .filter(|s| s.meta.get("managed_by").map(String::as_str) == Some("promfleet"))
        .map(|s| (s.meta.get("hostname").cloned().unwrap_or_default(), s.name))
        .collect()
}

/// Run `f` while polling the registry; every poll must hold all of `want`. Returns f's result,
/// the number of polls and the registrations seen missing (with the first poll missing them).
fn watching_registry<T>(
    consul: &ConsulDouble,
    want: &BTreeSet<Reg>,
    f: impl FnOnce() -> T,
) -> (T, usize, Vec<(usize, Reg)>) {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let (mut polls, mut lost) = (0, Vec::new());
            loop {
                // Read the flag first: the last poll happens after `f` returned.
                let last = done.load(Ordering::Acquire);
                let have = registered(consul);
                polls += 1;
                for w in want.difference(&have) {
                    // The first poll each registration was missing in.
                    if !lost.iter().any(|(_, l)| l == w) {
                        lost.push((polls, w.clone()));
                    }
                }
                if last {
                    return (polls, lost);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let out = f();
        done.store(true, Ordering::Release);
        let (polls, lost) = watcher.join().expect("watcher");
        (out, polls, lost)
    })
}

/// Issue 13, done-when: Consul in ACL default-deny with TLS (client certificates required),
/// `deploy playbooks/site.yml` end to end from one token (and the CA and client certificate)
/// given by the environment, then by the secrets file; the verify play asks a real Prometheus
/// that discovers through the double over https with the deployed tls_config and credentials
/// file; then `status` and `consul prune` succeed. Every request the double sees carries the
/// token.
#[test]
fn site_deploys_end_to_end_against_default_deny_tls_consul() {
    if !can_run() {
        return;
    }
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new("promfleet site CA").expect("ca");
    let (files, _) = ca.write(dir.path(), &["127.0.0.1"]).expect("tls files");
    let p = |p: &Path| p.display().to_string();
    let (ca_file, cert, key) = (p(&files.ca), p(&files.client_cert), p(&files.client_key));
    let stack_only = write(dir.path(), "stack.yml", STACK_SECRETS, 0o600);
    let with_consul = write(
        dir.path(),
        "secrets.yml",
        &format!(
            "{STACK_SECRETS}consul_token: \"{TOKEN}\"\nconsul_ca_file: \"{ca_file}\"\n\
             consul_client_cert: \"{cert}\"\nconsul_client_key: \"{key}\"\n"
        ),
        0o600,
    );
    let env_row = vec![
        ("CONSUL_HTTP_TOKEN", TOKEN),
        ("CONSUL_CACERT", ca_file.as_str()),
        ("CONSUL_CLIENT_CERT", cert.as_str()),
        ("CONSUL_CLIENT_KEY", key.as_str()),
    ];
    let rows: Vec<(&str, &Path, EnvPairs)> = vec![
        ("environment", &stack_only, env_row),
        ("secrets file", &with_consul, Vec::new()),
    ];
    for (way, secrets, env) in rows {
        let consul = rt
            .block_on(ConsulDouble::start_with(DoubleOptions {
                acl_token: Some(TOKEN.to_owned()),
                servers: 3,
                tls: Some(ServerTls {
                    server: ca.issue(&["127.0.0.1"]).expect("server cert"),
                    require_client_cert_from: Some(ca.ca_pem()),
                }),
                ..DoubleOptions::default()
            }))
            .expect("consul double");
        let fleet = Fleet::builder()
            .hosts(2)
            .groups(&["IDE", "Stage"])
            .monitoring_host(true)
            .consul_agents([consul.url()])
            .start()
            .expect("fleet");
        let mon = fleet.monitoring_host().expect("monitoring host").clone();
        let (mdir, _, cdir) = stack_dirs(&mon);
        let inv = site_inventory(&fleet, &Ports::new(), &[], "");
        let follower = Follower::start(mdir.clone());

        let (out, r) = deploy_site(&fleet, &inv, secrets, &env, &follower.url);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{way}: site.yml failed\nstderr:\n{}\nreport:\n{r:#}\n{}",
            stderr(&out),
            follower.diagnosis()
        );
        // Every play ran on its hosts, the verify play against the real Prometheus.
        for (host, task) in [
            ("mon01", "consul has a leader and three servers"),
            ("mon01", "prometheus ready"),
            ("mon01", "alertmanager ready"),
            ("mon01", "grafana ready"),
            ("mon01", "every registered target is UP"),
        ] {
            assert_eq!(
                outcome(&r, host, task).as_deref(),
                Some("ok"),
                "{way}: {task} on {host}\n{r:#}"
            );
        }
        for h in fleet.hosts() {
            let st = host_status(&r);
            assert_eq!(st[&h.name].0, "changed", "{way}: {}: {st:?}", h.name);
        }
        assert_eq!(follower.starts(), 1, "{way}: {:?}", follower.error());
        // The four exporters are registered, and real Prometheus scrapes each of them UP
        // through the double's https view: the verify play's answer, checked independently.
        let got = registered(&consul);
        assert_eq!(
            got.iter().map(|(h, _)| h.as_str()).collect::<BTreeSet<_>>(),
            fleet.hosts().map(|h| h.name.as_str()).collect(),
            "{way}: {got:?}"
        );
        assert_eq!(got.len(), 4, "{way}: {got:?}");
        let targets = follower.targets(&rt);
        for h in fleet.hosts() {
            for port in [9100, 9105] {
                let url = format!("http://{}:{port}/metrics", h.ip);
                assert!(
                    targets
                        .iter()
                        .any(|(i, u, health)| *i == h.name && *u == url && health == "up"),
                    "{way}: {url} not an UP target of {}: {targets:?}",
                    h.name
                );
            }
        }
        // The client settings Prometheus used are the deployed ones.
        let cfg = follower.state.lock().unwrap().configs[0].clone();
        let prom = mdir.join("prometheus");
        for f in [
            "consul_tls/ca.pem",
            "consul_tls/cert.pem",
            "consul_tls/key.pem",
        ] {
            assert!(cfg.contains(&prom.join(f).display().to_string()), "{cfg}");
        }
        assert!(cfg.contains("https://127.0.0.1:"), "{cfg}");
        assert_eq!(read(&prom.join("consul_token")).trim(), TOKEN);
        let key_meta = std::fs::metadata(prom.join("consul_tls/key.pem")).expect("key");
        assert_eq!(
            (key_meta.mode() & 0o777, key_meta.uid()),
            (0o600, 65534),
            "{way}: key.pem"
        );
        assert_eq!(
            read(&prom.join("consul_tls/ca.pem")),
            read(&files.ca),
            "{way}"
        );
        // The stand-in's central services were asked what the plays ask, and reloaded.
        for (svc, line) in [
            ("prometheus", "GET /-/ready 200"),
            ("alertmanager", "GET /-/ready 200"),
            ("grafana", "GET /api/health 200"),
            ("prometheus", "POST /-/reload 200"),
            ("alertmanager", "POST /-/reload 200"),
            ("webhook", "POST /-/reload 200"),
        ] {
            assert!(
                answered(&mdir, svc, line) >= 1,
                "{way}: {svc} never answered {line}: {:?}",
                testkit::standin::requests(&mdir, svc)
            );
        }
        assert_eq!(testkit::standin::starts(&mdir), 1);
        assert_eq!(testkit::standin::starts(&cdir), 1);

        let all_carry_token = |what: &str| {
            let reqs = consul.requests();
            assert!(!reqs.is_empty(), "{way}: {what}: nothing reached Consul");
            let without: Vec<String> = reqs
                .iter()
                .filter(|r| r.token.as_deref() != Some(TOKEN))
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            assert!(
                without.is_empty(),
                "{way}: {what}: requests without the token: {without:?}"
            );
            consul.clear_requests();
        };
        let sd = consul
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/promfleet-double/http_sd"))
            .count();
        assert!(sd > 0, "{way}: Prometheus never asked the double");
        all_carry_token("deploy playbooks/site.yml");

        // `status` (the fleet: files, containers, registrations, Prometheus targets) and
        // `consul prune`, from the same token source.
        let run = |args: &[&str]| {
            let mut r = Run::new(args).without_settings_env();
            for (k, v) in &env {
                r = r.env(k, v);
            }
            r.arg("-i").arg(&inv).arg("--secrets").arg(secrets)
        };
        let prom_url = format!("prometheus_url={}", follower.url);
        let out = run(&["status", "--scope", "fleet"])
            .arg("--known-hosts")
            .arg(fleet.known_hosts())
            .arg("--state-dir")
            .arg(fleet.root().join("state"))
            .arg("-e")
            .arg(&prom_url)
            .output();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(0), "{way}: status:\n{text}");
        assert!(!text.contains(TOKEN));
        all_carry_token("status");
        // The central view: the Consul agent over TLS with the token, the real Prometheus
        // (`prometheus_url`) and the stand-in's central services, every one of them up.
        let (out, v) = run(&["status", "--scope", "central"])
            .arg("-e")
            .arg(&prom_url)
            .report_hiding(&[TOKEN]);
        let rows = central_states(&v);
        let want: Vec<(String, String)> = [
            "consul",
            "prometheus",
            "alertmanager",
            "grafana",
            "dingtalk",
            "karma",
        ]
        .iter()
        .map(|s| (s.to_string(), "ok".to_string()))
        .collect();
        assert_eq!(rows, want, "{way}: {v:#}");
        assert_eq!(out.status.code(), Some(0), "{way}: {v:#}");
        all_carry_token("status --scope central");

        consul
            .register_direct(json!({
                "ID": "node-exporter-gone", "Name": "node-exporter", "Address": "127.0.0.9",
                "Port": 9100, "Meta": {"managed_by": "promfleet", "hostname": "gone"}
            }))
            .expect("register stale");
        consul.clear_requests();
        let out = run(&["consul", "prune"]).output();
        assert!(
            out.status.success(),
            "{way}: prune:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            consul
                .services()
                .iter()
                .all(|s| s.id != "node-exporter-gone"),
            "{way}: stale service not pruned:\n{}",
            stdout(&out)
        );
        assert_eq!(registered(&consul), got, "{way}: prune removed a live one");
        all_carry_token("consul prune");
    }
}

/// Issue 17, done-when: the live 1 → 2 (HA) move. site.yml with one monitoring host, then the
/// inventory with the second host added: site.yml converges (the new host's stack, `replica`
/// on the first host's Prometheus, Alertmanager cluster flags on both), no registration
/// disappears at any point (the registry is polled during both runs), and a third run changes
/// nothing.
#[test]
fn site_moves_from_one_to_two_monitoring_hosts_without_losing_a_registration() {
    if !can_run() {
        return;
    }
    let rt = runtime();
    let consul = rt
        .block_on(ConsulDouble::start_with(DoubleOptions {
            servers: 3,
            ..DoubleOptions::default()
        }))
        .expect("consul double");
    let fleet = Fleet::builder()
        .hosts(2)
        .groups(&["IDE", "Stage"])
        .monitoring_hosts(2)
        .consul_agents([consul.url()])
        .start()
        .expect("fleet");
    let mons: Vec<Host> = fleet.monitoring_hosts().cloned().collect();
    assert_eq!(
        mons.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["mon01", "mon02"]
    );
    let (m1, _, c1) = stack_dirs(&mons[0]);
    let (m2, _, c2) = stack_dirs(&mons[1]);
    let dir = tempfile::tempdir().expect("tmp");
    let secrets = write(dir.path(), "secrets.yml", STACK_SECRETS, 0o600);
    let ports = Ports::new();
    let single = site_inventory(&fleet, &ports, &["mon02"], "");
    let ha = site_inventory(&fleet, &ports, &[], "");
    assert!(!read(&single).contains("mon02") && read(&ha).contains("mon02"));
    let follower = Follower::start(m1.clone());
    // The built-in alertmanager_cluster_port.
    let cluster_port = 9096;

    // 1. One monitoring host.
    let (out, r) = deploy_site(&fleet, &single, &secrets, &[], &follower.url);
    assert_eq!(
        out.status.code(),
        Some(0),
        "single: stderr:\n{}\n{r:#}\n{}",
        stderr(&out),
        follower.diagnosis()
    );
    assert_eq!(
        outcome(&r, "mon01", "every registered target is UP").as_deref(),
        Some("ok")
    );
    let want = registered(&consul);
    assert_eq!(want.len(), 4, "{want:?}");
    assert!(
        !m2.exists(),
        "mon02 was deployed while not in the inventory"
    );
    let p1 = read(&m1.join("prometheus/prometheus.yml"));
    assert!(!p1.contains("replica: "), "{p1}");
    assert!(!read(&m1.join("docker-compose.yml")).contains("--cluster."));
    assert_eq!(testkit::standin::starts(&m1), 1);

    // 2. The second host added: converges, nothing lost while it runs.
    let ((out, r), polls, lost) = watching_registry(&consul, &want, || {
        deploy_site(&fleet, &ha, &secrets, &[], &follower.url)
    });
    assert_eq!(
        out.status.code(),
        Some(0),
        "1 → 2: stderr:\n{}\n{r:#}\n{}",
        stderr(&out),
        follower.diagnosis()
    );
    assert!(polls > 1, "the registry was not polled during the run");
    assert!(lost.is_empty(), "registrations lost during 1 → 2: {lost:?}");
    assert_eq!(registered(&consul), want, "after 1 → 2");
    for h in ["mon01", "mon02"] {
        assert_eq!(
            outcome(&r, h, "every registered target is UP").as_deref(),
            Some("ok"),
            "{h}\n{r:#}"
        );
    }
    // The new host's stack files.
    for rel in [
        "docker-compose.yml",
        "prometheus/prometheus.yml",
        "alertmanager/config.yml",
        "dingtalk/config.yml",
        "karma/karma.yml",
        "grafana/provisioning/datasources/prometheus.yml",
    ] {
        assert!(m2.join(rel).is_file(), "mon02: {rel} not written");
    }
    assert_eq!(
        testkit::standin::running_services(&m2),
        [
            "alertmanager",
            "alertmanager-dashboard",
            "grafana",
            "prometheus",
            "webhook"
        ]
    );
    // Consul stays on the first host (layout single).
    assert!(!c2.exists(), "consul deployed on mon02");
    assert_eq!(testkit::standin::starts(&c1), 1, "consul restarted");
    // The first host's Prometheus carries `replica` and alerts every Alertmanager.
    let p1 = read(&m1.join("prometheus/prometheus.yml"));
    assert!(p1.contains("replica: \"mon01\""), "{p1}");
    let am_port = ports.port("alertmanager_port");
    assert!(
        p1.contains(&format!(
            "\"{}:{am_port}\", \"{}:{am_port}\"",
            mons[0].ip, mons[1].ip
        )),
        "{p1}"
    );
    // Alertmanager cluster flags on both hosts, each peering with the other.
    for (me, other, m) in [(&mons[0], &mons[1], &m1), (&mons[1], &mons[0], &m2)] {
        let compose = read(&m.join("docker-compose.yml"));
        for flag in [
            format!("--cluster.advertise-address={}:{cluster_port}", me.ip),
            format!("--cluster.peer={}:{cluster_port}", other.ip),
            format!("--cluster.listen-address=0.0.0.0:{cluster_port}"),
        ] {
            assert!(compose.contains(&flag), "{}: no {flag}\n{compose}", me.name);
        }
    }
    // The first host's stack was recreated (compose changed) and Prometheus reloaded; the
    // real Prometheus now runs the replica config.
    assert_eq!(testkit::standin::starts(&m1), 2);
    assert_eq!(answered(&m1, "prometheus", "POST /-/reload 200"), 2);
    assert_eq!(follower.starts(), 2, "{:?}", follower.error());
    assert!(follower.state.lock().unwrap().configs[1].contains("\"replica\": \"mon01\""));

    // 3. A third run changes nothing, restarts nothing, reloads nothing, loses nothing.
    let reloads: Vec<usize> = [&m1, &m2]
        .iter()
        .map(|m| answered(m, "prometheus", "POST /-/reload 200"))
        .collect();
    let ((out, r), _, lost) = watching_registry(&consul, &want, || {
        deploy_site(&fleet, &ha, &secrets, &[], &follower.url)
    });
    assert_eq!(out.status.code(), Some(0), "rerun: {}", stderr(&out));
    assert!(
        lost.is_empty(),
        "registrations lost during the rerun: {lost:?}"
    );
    for (h, (status, changed)) in host_status(&r) {
        assert_eq!(
            (status.as_str(), changed),
            ("ok", 0),
            "{h} changed: {:?}",
            changed_tasks(&r, &h)
        );
    }
    assert_eq!(testkit::standin::starts(&m1), 2);
    assert_eq!(testkit::standin::starts(&m2), 1);
    assert_eq!(testkit::standin::starts(&c1), 1);
    let after: Vec<usize> = [&m1, &m2]
        .iter()
        .map(|m| answered(m, "prometheus", "POST /-/reload 200"))
        .collect();
    assert_eq!(after, reloads, "a rerun reloaded Prometheus");
    assert_eq!(registered(&consul), want);
}
