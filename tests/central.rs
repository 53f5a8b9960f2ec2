//! Central stacks through promfleet itself (issue "Central stacks"): the tree `promfleet render`
//! produces for inventory/example.yml, proven with the real tools; and playbooks/consul.yml +
//! playbooks/monitoring.yml deployed over SSH to a test monitoring host (compose stand-in,
//! Consul double, local HTTP sinks standing in for the services' APIs): files and modes,
//! secrets from the environment only, a rerun that changes nothing, and a prometheus.yml change
//! that reloads Prometheus instead of restarting anything. Nothing leaves 127.0.0.0/8.
//!
//! What this cannot prove: that the real containers start (no Docker here) — the stand-in runs
//! idle placeholders for them, and the sinks answer for their HTTP APIs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use testkit::consul_double::{ConsulDouble, DoubleOptions};
use testkit::sshd::Fleet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const MASK: &str = "********";

/// Distinctive secret values: none may show up in a rendered tree or in promfleet's output.
const SECRETS: &[(&str, &str)] = &[
    ("dingtalk_token_ide", "CENTRALTOK-ide-a81f2c"),
    ("dingtalk_secret_ide", "CENTRALSEC-ide-77d0e4"),
    ("dingtalk_token_stage", "CENTRALTOK-stage-3b9e10"),
    ("dingtalk_secret_stage", "CENTRALSEC-stage-c2a655"),
    ("dingtalk_token_pet", "CENTRALTOK-pet-5f03ab"),
    ("dingtalk_secret_pet", "CENTRALSEC-pet-91e7d8"),
    ("grafana_admin_password", "CENTRALGRAFANA-pw-0e6b3f"),
    ("consul_token", "CENTRALCONSUL-tok-4d2a90"),
];

fn with_secrets(mut run: Run) -> Run {
    for (name, value) in SECRETS {
        run = run.env(
            &format!("PROMFLEET_SECRET_{}", name.to_ascii_uppercase()),
            value,
        );
    }
    run
}

/// `promfleet render -i <inventory> --out <dir>` (default playbooks), with the test secrets set.
fn render(inventory: &Path, out: &Path) {
    with_secrets(Run::render(&[], inventory, out)).succeeds();
}

/// Alertmanager routes as (matchers, receiver) and the DingTalk webhook's target names.
fn routes_and_targets(mon: &Path) -> (Vec<(Value, String)>, Vec<String>, BTreeSet<String>) {
    let am = yaml(&read(mon.join("alertmanager/config.yml")));
    let routes = am["route"]["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| {
            (
                r["matchers"].clone(),
                r["receiver"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let receivers = am["receivers"]
        .as_array()
        .expect("receivers")
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    let ding = yaml(&read(mon.join("dingtalk/config.yml")));
    let targets = ding["targets"]
        .as_object()
        .expect("targets")
        .keys()
        .cloned()
        .collect();
    (routes, receivers, targets)
}

fn route(group: &str, slug: &str) -> (Value, String) {
    (
        serde_json::json!([format!("group=\"{group}\"")]),
        format!("webhook-{slug}"),
    )
}

#[test]
fn render_of_the_example_inventory_passes_the_real_tools_and_hides_secrets() {
    let (Some(promtool), Some(amtool), Some(compose)) =
        (tool("promtool"), tool("amtool"), tool("docker-compose"))
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tree");
    render(&repo().join("inventory/example.yml"), &out);

    // Every file the playbooks write for mon-01, at the inventory's default paths.
    let mon = out.join("mon-01/opt/promfleet/monitoring");
    let consul_compose = out.join("mon-01/data/consul/docker-compose.yml");
    for rel in [
        "docker-compose.yml",
        "prometheus/prometheus.yml",
        "prometheus/consul_token",
        "prometheus/rules/node-exporter.rules.yml",
        "prometheus/rules/cadvisor.rules.yml",
        "alertmanager/config.yml",
        "dingtalk/config.yml",
        "dingtalk/template.tmpl",
        "grafana/config.monitoring",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/promfleet.yml",
        "grafana/dashboards/hosts.json",
        "grafana/dashboards/containers.json",
    ] {
        assert!(mon.join(rel).is_file(), "mon-01 lacks {rel}");
    }
    assert!(
        consul_compose.is_file(),
        "mon-01 lacks the consul compose file"
    );
    let fleet_hosts = [
        "ide-01", "ide-02", "ide-03", "stage-01", "stage-02", "pet-01", "pet-02",
    ];
    let hosts: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let want: BTreeSet<String> = fleet_hosts
        .iter()
        .chain(&["mon-01"])
        .map(|h| h.to_string())
        .collect();
    assert_eq!(hosts, want);

    let rules = mon.join("prometheus/rules");
    let o = run_ok(
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(rules.join("node-exporter.rules.yml"))
            .arg(rules.join("cadvisor.rules.yml")),
    );
    assert_eq!(o.matches("SUCCESS").count(), 2, "{o}");
    let checkable = http_sd_checkable(&mon.join("prometheus/prometheus.yml"));
    let o = run_ok(
        Command::new(&promtool)
            .args(["check", "config"])
            .arg(&checkable),
    );
    assert!(o.contains("2 rule files found"), "{o}");
    std::fs::remove_file(&checkable).unwrap();
    // The example's two agents are both discovery sources, the token read from a file.
    let prom = yaml(&read(mon.join("prometheus/prometheus.yml")));
    let sds = prom["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|j| j.get("consul_sd_configs"))
        .and_then(Value::as_array)
        .expect("consul_sd_configs");
    let servers: Vec<&str> = sds.iter().map(|s| s["server"].as_str().unwrap()).collect();
    assert_eq!(servers, ["10.0.0.178:8500", "10.0.0.178:8501"]);
    assert!(
        sds.iter()
            .all(|s| s["authorization"]["credentials_file"] == "consul_token")
    );

    let o = run_ok(
        Command::new(&amtool)
            .arg("check-config")
            .arg(mon.join("alertmanager/config.yml")),
    );
    assert!(o.contains("4 receivers"), "{o}");

    let mut composes = vec![mon.join("docker-compose.yml"), consul_compose];
    composes.extend(
        fleet_hosts
            .iter()
            .map(|h| out.join(h).join("exporter-deploy/docker-compose.yml")),
    );
    for c in &composes {
        run_ok(
            Command::new(&compose)
                .arg("-f")
                .arg(c)
                .args(["config", "-q"])
                .env("COMPOSE_INTERACTIVE_NO_CLI", "1"),
        );
    }

    // No secret value anywhere in the tree; the mask stands where each secret goes.
    for f in files_under(&out) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        for (name, value) in SECRETS {
            assert!(
                !text.contains(value),
                "{} contains secret {name}",
                f.display()
            );
        }
    }
    for rel in [
        "dingtalk/config.yml",
        "grafana/config.monitoring",
        "prometheus/consul_token",
    ] {
        assert!(read(mon.join(rel)).contains(MASK), "{rel} has no mask");
    }
    let ding = read(mon.join("dingtalk/config.yml"));
    assert_eq!(
        ding.matches(MASK).count(),
        6,
        "token + secret per group:\n{ding}"
    );

    // One route, receiver and DingTalk target per inventory group — exactly these three.
    let (routes, receivers, targets) = routes_and_targets(&mon);
    assert_eq!(
        routes,
        [
            route("IDE", "ide"),
            route("Stage", "stage"),
            route("Pet", "pet")
        ]
    );
    assert_eq!(
        receivers,
        [
            "default-receiver",
            "webhook-ide",
            "webhook-stage",
            "webhook-pet"
        ]
    );
    assert_eq!(
        targets,
        BTreeSet::from(["webhook-ide", "webhook-stage", "webhook-pet"].map(String::from))
    );

    // A fourth group in a copy of the inventory gets its own route, receiver and target.
    let example = read(repo().join("inventory/example.yml"));
    let anchor = "\n# Monitoring hosts run";
    assert!(
        example.contains(anchor),
        "inventory/example.yml changed shape"
    );
    let four = example.replacen(
        anchor,
        "\n  Prod-East:\n    hosts:\n      - { name: east-01, ip: 10.0.4.41 }\n# Monitoring hosts run",
        1,
    );
    let inv4 = tmp.path().join("four-groups.yml");
    std::fs::write(&inv4, four).unwrap();
    let out4 = tmp.path().join("tree4");
    render(&inv4, &out4);
    let mon4 = out4.join("mon-01/opt/promfleet/monitoring");
    let (routes, receivers, targets) = routes_and_targets(&mon4);
    assert_eq!(routes.len(), 4);
    assert_eq!(routes[3], route("Prod-East", "prod-east"));
    assert_eq!(
        receivers.last().map(String::as_str),
        Some("webhook-prod-east")
    );
    assert_eq!(targets.len(), 4);
    assert!(targets.contains("webhook-prod-east"), "{targets:?}");
    let am = yaml(&read(mon4.join("alertmanager/config.yml")));
    assert_eq!(
        am["receivers"][4]["webhook_configs"][0]["url"],
        "http://10.0.0.178:9060/dingtalk/webhook-prod-east/send"
    );
    run_ok(
        Command::new(&amtool)
            .arg("check-config")
            .arg(mon4.join("alertmanager/config.yml")),
    );
    assert!(
        out4.join("east-01/exporter-deploy/docker-compose.yml")
            .is_file()
    );
}

// ---------------------------------------------------------------------------------------------
// Deploy over SSH

/// One request a sink received: (service, method, path).
type Hit = (String, String, String);

/// Stand-ins for the HTTP APIs the playbook calls (readiness, reload): one listener per
/// service on the monitoring host's address, answering 200 to everything and recording it.
struct Sinks {
    /// Runs the sinks (and the Consul double started on it) until the test ends.
    _rt: tokio::runtime::Runtime,
    hits: Arc<Mutex<Vec<Hit>>>,
    ports: Vec<(String, u16)>,
}

impl Sinks {
    fn start(rt: tokio::runtime::Runtime, ip: std::net::Ipv4Addr, services: &[&str]) -> Sinks {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let mut ports = Vec::new();
        for svc in services {
            let listener = rt
                .block_on(tokio::net::TcpListener::bind((ip, 0)))
                .expect("bind sink");
            ports.push((svc.to_string(), listener.local_addr().unwrap().port()));
            let hits = hits.clone();
            let svc = svc.to_string();
            rt.spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let hits = hits.clone();
                    let svc = svc.clone();
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 2048];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let head = String::from_utf8_lossy(&buf).into_owned();
                        let mut words = head.split_whitespace();
                        let method = words.next().unwrap_or("").to_owned();
                        let path = words.next().unwrap_or("").to_owned();
                        hits.lock().unwrap().push((svc, method, path));
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                            .await;
                    });
                }
            });
        }
        Sinks {
            _rt: rt,
            hits,
            ports,
        }
    }

    fn port(&self, svc: &str) -> u16 {
        self.ports.iter().find(|(s, _)| s == svc).expect("sink").1
    }

    fn take(&self) -> Vec<Hit> {
        std::mem::take(&mut *self.hits.lock().unwrap())
    }
}

fn hit(svc: &str, method: &str, path: &str) -> Hit {
    (svc.to_owned(), method.to_owned(), path.to_owned())
}

/// Names of the tasks (and handlers) a host reported `changed`, in run order.
fn changed_tasks(report: &Value, host: &str) -> Vec<String> {
    report["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter(|h| h["host"] == host)
        .flat_map(|h| h["tasks"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["outcome"] == "changed")
        .map(|t| t["task"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn consul_and_monitoring_playbooks_deploy_idempotently_and_reload_on_config_change() {
    if !require_root() || tool("docker-compose").is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Three alive servers and a leader: what playbooks/consul.yml waits for.
    let consul = rt
        .block_on(ConsulDouble::start_with(DoubleOptions {
            servers: 3,
            run_checks: false,
            ..DoubleOptions::default()
        }))
        .expect("consul double");
    let fleet = Fleet::builder()
        .hosts(2)
        .monitoring_host(true)
        .consul_agents([consul.url()])
        .start()
        .expect("fleet");
    let mon = fleet.monitoring_host().expect("monitoring host").clone();
    let sinks = Sinks::start(
        rt,
        mon.ip,
        &["prometheus", "alertmanager", "grafana", "dingtalk"],
    );
    let mdir = mon.dir.join("monitoring");
    let ddir = mon.dir.join("data");
    let cdir = mon.dir.join("consul");

    let inventory = |scrape_interval: &str| -> PathBuf {
        let yaml = fleet
            .inventory()
            .var("monitoring_dir", mdir.display().to_string())
            .var("monitoring_data_dir", ddir.display().to_string())
            .var("consul_dir", cdir.display().to_string())
            .var("prometheus_port", sinks.port("prometheus"))
            .var("alertmanager_port", sinks.port("alertmanager"))
            .var("grafana_port", sinks.port("grafana"))
            .var("dingtalk_port", sinks.port("dingtalk"))
            .var("prometheus_scrape_interval", scrape_interval)
            .yaml();
        // chown to the containers' users needs root: the login user has NOPASSWD sudo.
        let (first, rest) = yaml.split_once('\n').expect("ssh line");
        assert!(
            first.starts_with("ssh: {") && first.ends_with(" }"),
            "{first}"
        );
        let yaml = format!("{}, become: true }}\n{rest}", &first[..first.len() - 2]);
        let path = fleet.root().join("central.yml");
        std::fs::write(&path, yaml).unwrap();
        path
    };
    let deploy = |inv: &Path| -> (Output, Value) {
        let secrets: Vec<&str> = SECRETS.iter().map(|(_, v)| *v).collect();
        let (o, r) = with_secrets(Run::new(&[
            "deploy",
            "playbooks/consul.yml",
            "playbooks/monitoring.yml",
        ]))
        .on_fleet(inv, &fleet)
        .report_hiding(&secrets);
        assert_eq!(o.status.code(), Some(0), "stderr:\n{}\n{r:#}", stderr(&o));
        (o, r)
    };

    // First run: everything written, both stacks brought up once, every service reloaded.
    let (_, r) = deploy(&inventory("15s"));
    let st = host_status(&r);
    assert_eq!(st.keys().collect::<Vec<_>>(), ["mon01"], "{st:?}");
    assert_eq!(st["mon01"].0, "changed");
    let check = r["hosts"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "consul has a leader and three servers")
        .cloned()
        .expect("cluster check ran");
    assert_eq!(check["outcome"], "ok", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap_or("")
            .contains("3 servers alive"),
        "{check}"
    );
    for (rel, mode, owner) in [
        ("docker-compose.yml", 0o644, None),
        ("prometheus/prometheus.yml", 0o644, None),
        ("prometheus/rules/node-exporter.rules.yml", 0o644, None),
        ("prometheus/rules/cadvisor.rules.yml", 0o644, None),
        ("prometheus/consul_token", 0o600, Some((65534, 65534))),
        ("alertmanager/config.yml", 0o644, None),
        ("dingtalk/config.yml", 0o600, Some((65534, 65534))),
        ("dingtalk/template.tmpl", 0o644, None),
        ("grafana/config.monitoring", 0o600, None),
        (
            "grafana/provisioning/datasources/prometheus.yml",
            0o644,
            None,
        ),
        ("grafana/provisioning/dashboards/promfleet.yml", 0o644, None),
        ("grafana/dashboards/hosts.json", 0o644, None),
        ("grafana/dashboards/containers.json", 0o644, None),
    ] {
        let p = mdir.join(rel);
        assert_eq!(mode_of(&p), mode, "{rel}: mode {:o}", mode_of(&p));
        if let Some(owner) = owner {
            assert_eq!(owner_of(&p), owner, "{rel}");
        }
    }
    for (d, owner) in [
        ("prometheus-data", (65534, 65534)),
        ("alertmanager-data", (65534, 65534)),
        ("grafana-data", (472, 0)),
    ] {
        assert_eq!(owner_of(&ddir.join(d)), owner, "{d}");
    }
    assert_eq!(mode_of(&cdir.join("docker-compose.yml")), 0o644);
    for node in [
        "consul-server1",
        "consul-server2",
        "consul-server3",
        "consul-client1",
        "consul-client2",
    ] {
        assert!(cdir.join(node).join("data").is_dir(), "{node}/data");
        assert!(cdir.join(node).join("config").is_dir(), "{node}/config");
    }
    // The secrets reached the host (from the environment) and only the 0600 files.
    let ding = read(mdir.join("dingtalk/config.yml"));
    assert!(
        ding.contains("access_token=CENTRALTOK-ide-a81f2c"),
        "{ding}"
    );
    assert!(
        ding.contains("secret: \"CENTRALSEC-stage-c2a655\""),
        "{ding}"
    );
    assert!(read(mdir.join("grafana/config.monitoring")).contains("CENTRALGRAFANA-pw-0e6b3f"));
    assert_eq!(
        read(mdir.join("prometheus/consul_token")).trim(),
        "CENTRALCONSUL-tok-4d2a90"
    );
    let prom_yml = read(mdir.join("prometheus/prometheus.yml"));
    assert!(prom_yml.contains(&consul.addr().to_string()), "{prom_yml}");
    assert!(!prom_yml.contains("CENTRAL"), "token inlined:\n{prom_yml}");

    let monitoring_services = [
        "alertmanager",
        "alertmanager-dashboard",
        "grafana",
        "prometheus",
        "webhook",
    ];
    assert_eq!(testkit::standin::starts(&mdir), 1);
    assert_eq!(testkit::standin::starts(&cdir), 1);
    assert_eq!(
        testkit::standin::running_services(&mdir),
        monitoring_services
    );
    assert_eq!(testkit::standin::running_services(&cdir).len(), 5);
    let hits = sinks.take();
    for want in [
        hit("prometheus", "GET", "/-/ready"),
        hit("alertmanager", "GET", "/-/ready"),
        hit("grafana", "GET", "/api/health"),
        hit("prometheus", "POST", "/-/reload"),
        hit("alertmanager", "POST", "/-/reload"),
        hit("dingtalk", "POST", "/-/reload"),
    ] {
        assert!(hits.contains(&want), "{want:?} not in {hits:?}");
    }

    // Second run: nothing changes, nothing restarts, nothing is reloaded.
    let (_, r) = deploy(&inventory("15s"));
    assert_eq!(
        host_status(&r)["mon01"],
        ("ok".to_owned(), 0),
        "changed: {:?}",
        changed_tasks(&r, "mon01")
    );
    assert!(
        sinks.take().iter().all(|(_, m, _)| m == "GET"),
        "a rerun posted a reload"
    );
    assert_eq!(testkit::standin::starts(&mdir), 1);
    assert_eq!(testkit::standin::starts(&cdir), 1);

    // A var that only prometheus.yml uses: Prometheus is reloaded, nothing else, no restart.
    let (_, r) = deploy(&inventory("30s"));
    let changed = changed_tasks(&r, "mon01");
    assert!(
        changed.contains(&"prometheus config".to_owned())
            && changed.contains(&"reload prometheus".to_owned()),
        "{changed:?}"
    );
    // `stack up` reacts only to the compose file and its env files, not to prometheus.yml.
    for t in &changed {
        assert!(
            ["prometheus config", "reload prometheus"].contains(&t.as_str()),
            "unexpected change {t} in {changed:?}"
        );
    }
    let posts: Vec<Hit> = sinks
        .take()
        .into_iter()
        .filter(|(_, m, _)| m == "POST")
        .collect();
    assert_eq!(posts, [hit("prometheus", "POST", "/-/reload")]);
    assert!(read(mdir.join("prometheus/prometheus.yml")).contains("scrape_interval: 30s"));
    assert_eq!(
        testkit::standin::starts(&mdir),
        1,
        "monitoring stack restarted"
    );
    assert_eq!(testkit::standin::starts(&cdir), 1, "consul restarted");
    assert_eq!(
        testkit::standin::running_services(&mdir),
        monitoring_services
    );
}
