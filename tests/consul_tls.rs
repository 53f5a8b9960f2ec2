//! Consul as production runs it (issue 13): ACL default-deny and TLS on the HTTP API, with a
//! CA made in the test (rcgen). The Consul double serves HTTPS (optionally requiring client
//! certificates, like `verify_incoming`) and answers 403 without the token.

use std::path::Path;
use std::time::Duration;

use promfleet::inventory::ConsulSettings;
use promfleet::modules::consul::{ServiceDef, ServiceSpec};
use promfleet::playbook::Secrets;
use promfleet::report::Masker;
use promfleet::settings::consul::Sources;
use promfleet::settings::{Consul, ConsulOptions, Env};
use testkit::consul_double::{ConsulDouble, DoubleOptions};
use testkit::tls::{ServerTls, TestCa, TlsFiles};

use crate::support::*;

const TOKEN: &str = "acl-token-tls-default-deny";

/// Environment variables of one run.
type EnvPairs<'a> = Vec<(&'a str, &'a str)>;

/// A default-deny double serving HTTPS with a certificate for `names`.
fn tls_options(ca: &TestCa, names: &[&str], require_client_cert: bool) -> DoubleOptions {
    DoubleOptions {
        acl_token: Some(TOKEN.to_owned()),
        servers: 3,
        tls: Some(ServerTls {
            server: ca.issue(names).expect("server cert"),
            require_client_cert_from: require_client_cert.then(|| ca.ca_pem()),
        }),
        ..DoubleOptions::default()
    }
}

/// [`tls_options`]' double on the caller's runtime.
async fn tls_double(ca: &TestCa, names: &[&str], require_client_cert: bool) -> ConsulDouble {
    ConsulDouble::start_with(tls_options(ca, names, require_client_cert))
        .await
        .expect("consul double")
}

/// The Consul settings of `env` alone (no secrets file, no inventory options).
fn consul_from_env(agent: &str, env: &[(&str, &str)]) -> Result<Consul, String> {
    let env = Env::from_pairs(env.iter().copied());
    let secrets =
        Secrets::load_with_env(None, Masker::default(), env.clone()).map_err(|e| e.to_string())?;
    let inv = ConsulSettings {
        agents: vec![agent.to_owned()],
        ..ConsulSettings::default()
    };
    Consul::resolve(&Sources {
        env: &env,
        secrets: &secrets,
        inventory: &inv,
        inventory_dir: None,
        project: &ConsulOptions::default(),
        project_dir: None,
    })
    .map_err(|e| e.to_string())
}

fn def() -> ServiceDef {
    promfleet::modules::consul::Register::new(ServiceSpec {
        service: "node-exporter".into(),
        id: None,
        hostname: "h1".into(),
        group: "IDE".into(),
        address: "127.0.0.1".into(),
        port: 9,
        check_path: "/metrics".into(),
        interval: "30s".into(),
        meta: Default::default(),
        tags: Vec::new(),
    })
    .def
}

/// Register one service through settings built from `env`; the error text on failure.
async fn register_with(agent: &str, env: &[(&str, &str)]) -> Result<(), String> {
    let consul = consul_from_env(agent, env)?;
    let client = consul.client().map_err(|e| e.to_string())?;
    client
        .register(&def(), "h1")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One row per TLS setting of Consul's: the certificate is checked against the configured
/// CA only, a server name other than the URL host is honoured, verification is off only when
/// asked, and an agent that requires client certificates gets one.
#[tokio::test(flavor = "multi_thread")]
async fn consul_tls_settings_reach_the_agent_as_consul_defines_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new("promfleet test CA").expect("ca");
    let (files, _) = ca.write(dir.path(), &["127.0.0.1"]).expect("files");
    let other = TestCa::new("another CA").expect("ca");
    let other_ca = write(dir.path(), "other-ca.pem", &other.ca_pem());
    let ca_dir = dir.path().join("cadir");
    std::fs::create_dir(&ca_dir).expect("mkdir");
    std::fs::copy(&files.ca, ca_dir.join("ca.pem")).expect("copy");
    let p = |p: &Path| p.to_str().expect("utf8").to_owned();
    let (ca_file, ca_path, cert, key, other_ca) = (
        p(&files.ca),
        p(&ca_dir),
        p(&files.client_cert),
        p(&files.client_key),
        p(&other_ca),
    );

    let by_ip = tls_double(&ca, &["127.0.0.1"], false).await;
    let by_name = tls_double(&ca, &["server.dc1.consul"], false).await;
    let mutual = tls_double(&ca, &["127.0.0.1"], true).await;
    let token = ("CONSUL_HTTP_TOKEN", TOKEN);
    let rows: Vec<(&str, &ConsulDouble, EnvPairs, bool)> = vec![
        ("public roots only", &by_ip, vec![token], false),
        (
            "another CA",
            &by_ip,
            vec![token, ("CONSUL_CACERT", &other_ca)],
            false,
        ),
        (
            "CONSUL_CACERT",
            &by_ip,
            vec![token, ("CONSUL_CACERT", &ca_file)],
            true,
        ),
        (
            "CONSUL_CAPATH",
            &by_ip,
            vec![token, ("CONSUL_CAPATH", &ca_path)],
            true,
        ),
        (
            "verify off",
            &by_ip,
            vec![token, ("CONSUL_HTTP_SSL_VERIFY", "false")],
            true,
        ),
        (
            "right CA, no token",
            &by_ip,
            vec![("CONSUL_CACERT", &ca_file)],
            false,
        ),
        (
            "name mismatch",
            &by_name,
            vec![token, ("CONSUL_CACERT", &ca_file)],
            false,
        ),
        (
            "CONSUL_TLS_SERVER_NAME",
            &by_name,
            vec![
                token,
                ("CONSUL_CACERT", &ca_file),
                ("CONSUL_TLS_SERVER_NAME", "server.dc1.consul"),
            ],
            true,
        ),
        (
            "no client cert",
            &mutual,
            vec![token, ("CONSUL_CACERT", &ca_file)],
            false,
        ),
        (
            "client cert",
            &mutual,
            vec![
                token,
                ("CONSUL_CACERT", &ca_file),
                ("CONSUL_CLIENT_CERT", &cert),
                ("CONSUL_CLIENT_KEY", &key),
            ],
            true,
        ),
    ];
    for (what, double, env, ok) in rows {
        let got = register_with(&double.url(), &env).await;
        assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
        if !ok && what != "right CA, no token" {
            // Refused in the handshake, not by the agent.
            assert!(
                !double.requests().iter().any(|r| r.method == "PUT"),
                "{what}: a request got through"
            );
        }
    }
    assert!(by_ip.services().iter().any(|s| s.id == def().id));
    assert!(by_name.services().iter().any(|s| s.id == def().id));
    assert!(mutual.services().iter().any(|s| s.id == def().id));
}

/// Issue 13: the consul play's cluster-health probe (`consul_cluster_check`) used the plain
/// HTTP client without the token: under ACL default-deny `/v1/agent/members` answered 403 and
/// the play failed after its deadline; over TLS it could not even connect.
#[tokio::test(flavor = "multi_thread")]
async fn consul_cluster_check_sent_no_token() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new("promfleet test CA").expect("ca");
    let (files, _) = ca.write(dir.path(), &["127.0.0.1"]).expect("files");
    let double = tls_double(&ca, &["127.0.0.1"], false).await;
    let ca_file = files.ca.to_str().expect("utf8").to_owned();
    let consul = consul_from_env(
        &double.url(),
        &[("CONSUL_HTTP_TOKEN", TOKEN), ("CONSUL_CACERT", &ca_file)],
    )
    .expect("settings");
    let client = consul.client().expect("client");
    let check = promfleet::modules::consul::ClusterCheck {
        url: double.url(),
        servers: 3,
        timeout: Duration::from_secs(3),
    };
    let host = promfleet::inventory::Host {
        name: "mon-01".into(),
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
        group: "monitoring".into(),
        groups: vec!["monitoring".into()],
        ssh: Default::default(),
        vars: Default::default(),
        pos: Default::default(),
    };
    let http = reqwest::Client::new();
    let masker = Masker::default();
    let services = promfleet::modules::Services::new()
        .with(client)
        .with(std::sync::Arc::new(
            promfleet::settings::Endpoints::default(),
        ));
    let mut state = promfleet::modules::HostState::default();
    let mut ctx = promfleet::modules::HostCtx {
        host: &host,
        session: None,
        facts: None,
        http: &http,
        services: &services,
        check: false,
        diff: false,
        masker: &masker,
        state: &mut state,
        next: None,
    };
    let done = check.run(&mut ctx).await.expect("cluster healthy");
    let detail = done.detail.clone().unwrap_or_default();
    assert!(detail.contains("3 servers alive"), "{detail}");
    let members: Vec<_> = double
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/agent/members"))
        .collect();
    assert!(!members.is_empty());
    assert!(members.iter().all(|r| r.token.as_deref() == Some(TOKEN)));
}

/// Issue 13: registrations spread over several agents left a copy on an agent that had been
/// down during a failover; `consul prune` only looked for departed hosts, so the live host's
/// target stayed duplicated. It now keeps the copy registration would use and removes the
/// others, and takes several `-i` like the other commands.
#[tokio::test(flavor = "multi_thread")]
async fn consul_prune_missed_duplicates_on_other_agents() {
    let a = ConsulDouble::start_with(DoubleOptions::default())
        .await
        .expect("a");
    let b = ConsulDouble::start_with(DoubleOptions::default())
        .await
        .expect("b");
    let dir = tempfile::tempdir().expect("tmp");
    // Two inventory sources: the agents in one, the hosts in the other (Ansible YAML merges).
    let agents = write(
        dir.path(),
        "agents.yml",
        &format!(
            "all:\n  vars:\n    consul_agents: [{}, {}]\n",
            a.url(),
            b.url()
        ),
    );
    let hosts = write(
        dir.path(),
        "hosts.yml",
        "all:\n  children:\n    IDE:\n      hosts:\n        h1: { ansible_host: 127.0.0.1 }\n",
    );
    let service = serde_json::json!({
        "ID": "node-exporter-h1-127.0.0.1", "Name": "node-exporter", "Address": "127.0.0.1",
        "Port": 9100, "Meta": {"managed_by": "promfleet", "hostname": "h1", "group": "IDE"}
    });
    a.register_direct(service.clone()).expect("a");
    b.register_direct(service).expect("b");
    let mut r = Run::new(&["consul", "prune", "-i"])
        .arg(&agents)
        .arg("-i")
        .arg(&hosts);
    r.cmd.env_remove("PROMFLEET_SECRETS");
    let out = tokio::task::spawn_blocking(move || r.output())
        .await
        .expect("join");
    assert!(out.status.success(), "{}", stderr(&out));
    let held: Vec<usize> = [&a, &b].iter().map(|d| d.services().len()).collect();
    assert_eq!(held.iter().sum::<usize>(), 1, "{held:?}\n{}", stdout(&out));
    assert!(stdout(&out).contains("duplicate"), "{}", stdout(&out));
    // The copy kept is where registration goes.
    let kept = if held[0] == 1 { a.url() } else { b.url() };
    let both = ConsulSettings {
        agents: vec![a.url(), b.url()],
        ..ConsulSettings::default()
    };
    let env = Env::default();
    let secrets = Secrets::load_with_env(None, Masker::default(), env.clone()).expect("secrets");
    let client = Consul::resolve(&Sources {
        env: &env,
        secrets: &secrets,
        inventory: &both,
        inventory_dir: None,
        project: &ConsulOptions::default(),
        project_dir: None,
    })
    .expect("settings")
    .client()
    .expect("client");
    let (ua, ub) = (a.url(), b.url());
    let keep = client.keeper("h1", &[ua.as_str(), ub.as_str()]);
    assert_eq!(keep, Some(kept.as_str()));
}

/// `deregister_critical_service_after` (inventory `consul:` block) reaches every registered
/// check; unset, no check carries it (the seed's behaviour).
#[tokio::test(flavor = "multi_thread")]
async fn deregister_critical_service_after_is_opt_in() {
    let double = ConsulDouble::start_with(DoubleOptions {
        run_checks: false,
        ..DoubleOptions::default()
    })
    .await
    .expect("double");
    for (after, want) in [(None, false), (Some("90m"), true)] {
        double.clear_requests();
        let env = Env::default();
        let secrets = Secrets::load_with_env(None, Masker::default(), env.clone()).expect("s");
        let mut inv = ConsulSettings {
            agents: vec![double.url()],
            ..ConsulSettings::default()
        };
        if let Some(a) = after {
            inv.options
                .set("deregister_critical_service_after", a)
                .expect("set");
        }
        let client = Consul::resolve(&Sources {
            env: &env,
            secrets: &secrets,
            inventory: &inv,
            inventory_dir: None,
            project: &ConsulOptions::default(),
            project_dir: None,
        })
        .expect("settings")
        .client()
        .expect("client");
        double.deregister_direct(&def().id);
        client.register(&def(), "h1").await.expect("register");
        let put = double
            .requests()
            .into_iter()
            .find(|r| r.method == "PUT")
            .expect("registered");
        assert_eq!(
            put.body
                .contains("\"DeregisterCriticalServiceAfter\":\"90m\""),
            want,
            "{after:?}: {}",
            put.body
        );
    }
}

/// The rendered monitoring files for one monitoring host, through `make_plan` (what deploy
/// writes): `(dest, content, mode, owner)`.
fn rendered_monitoring(
    inv: &Path,
    secrets: &Path,
    state: &Path,
) -> Vec<(String, Vec<u8>, u32, Option<String>)> {
    planned_files(&plan_of("monitoring.yml", inv, Some(secrets), state, &[]))
        .into_iter()
        .map(|f| (f.dest, f.content.to_vec(), f.mode, f.owner))
        .collect()
}

/// Real Prometheus (Debian) discovers the fleet through the double over https with the
/// rendered `tls_config` (CA, client certificate and key deployed beside prometheus.yml, the
/// key 0600 for Prometheus' user) and the token from its credentials file. Debian's
/// Prometheus has no Consul SD, so the rendered entry's client settings are moved, unchanged,
/// onto an http_sd entry reading the double's view of the same registry.
#[tokio::test(flavor = "multi_thread")]
async fn prometheus_discovers_through_tls_consul_with_the_rendered_tls_config() {
    if !have("prometheus") {
        println!("SKIPPED: prometheus not installed");
        return;
    }
    for k in [
        "CONSUL_HTTP_TOKEN",
        "CONSUL_HTTP_TOKEN_FILE",
        "PROMFLEET_SECRET_CONSUL_TOKEN",
        "CONSUL_CACERT",
        "CONSUL_CAPATH",
        "CONSUL_CLIENT_CERT",
        "CONSUL_CLIENT_KEY",
    ] {
        if std::env::var_os(k).is_some() {
            println!("SKIPPED: {k} is set in the test environment");
            return;
        }
    }
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new("promfleet test CA").expect("ca");
    let (files, _): (TlsFiles, _) = ca.write(dir.path(), &["127.0.0.1"]).expect("files");
    let double = tls_double(&ca, &["127.0.0.1"], true).await;
    let inv = write(
        dir.path(),
        "inventory.yml",
        &format!(
            "consul:\n  agents: [{}]\n  ca_file: ca.pem\n  client_cert: client.pem\n  client_key: client-key.pem\n\
             groups:\n  IDE:\n    hosts:\n      - {{ name: h1, ip: 127.0.0.2 }}\n\
             monitoring:\n  hosts:\n    - {{ name: mon-01, ip: 127.0.0.1 }}\n",
            double.url()
        ),
    );
    let mut secrets = format!("consul_token: \"{TOKEN}\"\ngrafana_admin_password: pw\n");
    secrets.push_str("dingtalk_token_ide: t\ndingtalk_secret_ide: s\n");
    let secrets = secret_file(dir.path(), "secrets.yml", &secrets);
    let rendered = rendered_monitoring(&inv, &secrets, &dir.path().join("state"));
    let file = |suffix: &str| {
        rendered
            .iter()
            .find(|f| f.0.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} rendered"))
            .clone()
    };
    let key = file("/prometheus/consul_tls/key.pem");
    assert_eq!((key.2, key.3.as_deref()), (0o600, Some("65534:65534")));
    assert_eq!(key.1, std::fs::read(&files.client_key).expect("key"));
    assert_eq!(
        file("/prometheus/consul_tls/ca.pem").1,
        std::fs::read(&files.ca).expect("ca")
    );
    let prom = String::from_utf8(file("/prometheus/prometheus.yml").1).expect("utf8");
    assert!(
        !prom.contains(TOKEN) && !prom.contains("PRIVATE KEY"),
        "{prom}"
    );

    // Lay the files out as deployed, then swap consul_sd for http_sd keeping the client
    // settings (scheme, tls_config, authorization) exactly as rendered.
    let out = dir.path().join("prometheus");
    for (dest, content, _, _) in &rendered {
        if let Some(rel) = dest.split("/prometheus/").nth(1) {
            let p = out.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write");
        }
    }
    assert_eq!(
        std::fs::read_to_string(out.join("consul_token"))
            .expect("token file")
            .trim(),
        TOKEN
    );
    let mut cfg: serde_json::Value = serde_saphyr::from_str(&prom).expect("yaml");
    let port = free_port();
    cfg["global"] = serde_json::json!({"scrape_interval": "1s"});
    let obj = cfg.as_object_mut().expect("map");
    obj.remove("alerting");
    obj.remove("rule_files");
    let jobs = cfg["scrape_configs"].as_array_mut().expect("jobs");
    jobs.retain(|j| j.get("consul_sd_configs").is_some());
    let job = jobs[0].as_object_mut().expect("job");
    let sd = job.remove("consul_sd_configs").expect("consul_sd")[0].clone();
    assert_eq!(sd["scheme"], "https");
    let mut http_sd = serde_json::json!({
        "url": format!("https://{}/promfleet-double/http_sd", sd["server"].as_str().expect("server")),
        "refresh_interval": "1s",
        "tls_config": sd["tls_config"].clone(),
        "authorization": sd["authorization"].clone(),
    });
    // Paths relative to the config file, as Prometheus reads them on the monitoring host.
    for k in ["ca_file", "cert_file", "key_file"] {
        let rel = http_sd["tls_config"][k].as_str().expect(k).to_owned();
        http_sd["tls_config"][k] = out.join(rel).display().to_string().into();
    }
    let cred = http_sd["authorization"]["credentials_file"]
        .as_str()
        .expect("credentials")
        .to_owned();
    http_sd["authorization"]["credentials_file"] = out.join(cred).display().to_string().into();
    job.insert("http_sd_configs".into(), serde_json::json!([http_sd]));
    // The one registered target is Prometheus itself.
    double
        .register_direct(serde_json::json!({
            "ID": "self", "Name": "prometheus-self", "Address": "127.0.0.1", "Port": port,
            "Meta": {"hostname": "h1", "group": "IDE"}
        }))
        .expect("register");
    let prometheus = Prometheus::start_on(&serde_json::to_string(&cfg).expect("json"), port);
    let url = format!("{}/api/v1/targets", prometheus.url);
    let up = eventually(Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let v: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
            let active = v["data"]["activeTargets"].as_array()?.clone();
            active
                .iter()
                .any(|t| t["labels"]["instance"] == "h1" && t["health"] == "up")
                .then_some(())
        }
    })
    .await;
    let sd_requests = double
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/promfleet-double/http_sd"))
        .collect::<Vec<_>>();
    assert!(
        up.is_some(),
        "no target discovered over TLS; double saw {} requests\n{}\n{cfg}\n{:?}",
        sd_requests.len(),
        prometheus
            .log()
            .lines()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"),
        std::fs::read_dir(&out).map(|d| d
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect::<Vec<_>>())
    );
    assert!(
        sd_requests
            .iter()
            .all(|r| r.token.as_deref() == Some(TOKEN))
    );
}

/// A promfleet run with no Consul or promfleet setting inherited from the test's environment.
fn clean(r: Run) -> Run {
    r.without_settings_env()
}

/// Issue 13, done-when: with the agent in default-deny + TLS, deploy (registration), `status`
/// and `consul prune` work from one token and one CA given in each documented way: the
/// environment, the secrets file, the inventory's `consul:` block, the project file.
#[test]
fn consul_default_deny_tls_works_from_one_token_given_any_way() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new("promfleet test CA").expect("ca");
    let (files, _) = ca.write(dir.path(), &["127.0.0.1"]).expect("files");
    let double = Double::start_with(tls_options(&ca, &["127.0.0.1"], false));
    let consul = &double.d;
    let fleet = testkit::sshd::Fleet::builder()
        .hosts(1)
        .groups(&["IDE"])
        .fake_node_exporter(true)
        .consul_agents([consul.url()])
        .start()
        .expect("fleet");
    let base = fleet.inventory().var("metrics_timeout", 3).yaml();
    assert!(base.contains("consul: { agents:"), "{base}");
    let token_file = write(dir.path(), "token", &format!("{TOKEN}\n"));
    let ca_file = files.ca.display().to_string();
    let token_path = token_file.display().to_string();
    let plain_inv = write(dir.path(), "plain.yml", &base);
    let tls_inv = write(
        dir.path(),
        "tls.yml",
        &base.replace(
            "consul: { agents:",
            &format!("consul: {{ ca_file: \"{ca_file}\", token_file: \"{token_path}\", agents:"),
        ),
    );
    let secrets = secret_file(
        dir.path(),
        "secrets.yml",
        &format!("consul_token: \"{TOKEN}\"\nconsul_ca_file: \"{ca_file}\"\n"),
    );
    let empty_secrets = secret_file(dir.path(), "none.yml", "other: x\n");
    let project = write(
        dir.path(),
        "promfleet.yml",
        &format!("inventory: plain.yml\nconsul:\n  ca_file: \"{ca_file}\"\n  token_file: token\n"),
    );
    let project_s = project.display().to_string();
    // (way, inventory given with -i, secrets file, extra environment)
    let rows: Vec<(&str, Option<&Path>, &Path, EnvPairs)> = vec![
        (
            "environment",
            Some(&plain_inv),
            &empty_secrets,
            vec![("CONSUL_HTTP_TOKEN", TOKEN), ("CONSUL_CACERT", &ca_file)],
        ),
        ("secrets file", Some(&plain_inv), &secrets, vec![]),
        (
            "inventory consul block",
            Some(&tls_inv),
            &empty_secrets,
            vec![],
        ),
        (
            "project file (inventory too)",
            None,
            &empty_secrets,
            vec![("PROMFLEET_CONFIG", &project_s)],
        ),
    ];
    let state = fleet.root().join("state");
    for (way, inv, secrets, env) in rows {
        let run = |args: &[&str], extra: &[&str]| {
            let mut r = clean(Run::new(args));
            if let Some(i) = inv {
                r = r.arg("-i").arg(i);
            }
            for a in extra {
                r = r.arg(a);
            }
            r = r.arg("--secrets").arg(secrets);
            for (k, v) in &env {
                r = r.env(k, v);
            }
            r.output()
        };
        let all_carry_token = |what: &str| {
            let reqs = consul.requests();
            assert!(!reqs.is_empty(), "{way}: {what} sent nothing to Consul");
            for r in reqs.iter().filter(|r| !r.path.starts_with("/v1/status/")) {
                assert_eq!(
                    r.token.as_deref(),
                    Some(TOKEN),
                    "{way}: {what}: {} {}",
                    r.method,
                    r.path
                );
            }
            consul.clear_requests();
        };
        let kh = fleet.known_hosts().display().to_string();
        let st = state.display().to_string();
        let out = run(
            &["deploy", "playbooks/exporters.yml"],
            &["--known-hosts", &kh, "--state-dir", &st, "--retries", "1"],
        );
        assert!(
            out.status.success(),
            "{way}: deploy failed:\n{}",
            stderr(&out)
        );
        assert!(!consul.services().is_empty(), "{way}: nothing registered");
        assert!(!stdout(&out).contains(TOKEN) && !stderr(&out).contains(TOKEN));
        all_carry_token("deploy");

        let out = run(
            &["status", "--scope", "fleet"],
            &["--known-hosts", &kh, "--state-dir", &st],
        );
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !text.contains("403") && !text.contains("certificate"),
            "{way}: status:\n{text}"
        );
        assert!(!text.contains(TOKEN));
        all_carry_token("status");

        consul
            .register_direct(serde_json::json!({
                "ID": "node-exporter-gone", "Name": "node-exporter", "Address": "127.0.0.9",
                "Port": 9100, "Meta": {"managed_by": "promfleet", "hostname": "gone"}
            }))
            .expect("register stale");
        let out = run(&["consul", "prune"], &[]);
        assert!(
            out.status.success(),
            "{way}: prune failed:\n{}",
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
        all_carry_token("consul prune");
    }
}

/// A token bound for a remote agent over plain http is warned about once per run (not once
/// per client or request); an https agent is not warned about. `render` connects nowhere.
#[test]
fn token_over_plain_http_to_a_remote_agent_is_warned_once() {
    let dir = tempfile::tempdir().expect("tmp");
    for (agent, warned) in [
        ("http://10.0.0.178:8500", true),
        ("https://10.0.0.178:8501", false),
    ] {
        let inv = write(
            dir.path(),
            "inventory.yml",
            &format!(
                "consul:\n  agents: [{agent}]\ngroups:\n  IDE:\n    hosts:\n      - {{ name: h1, ip: 10.0.1.11 }}\n\
                 monitoring:\n  hosts:\n    - {{ name: mon-01, ip: 10.0.0.178 }}\n"
            ),
        );
        let out = clean(Run::new(&["render", "monitoring.yml", "-i"]))
            .arg(&inv)
            .arg("--out")
            .arg(dir.path().join(format!("out-{warned}")))
            .env("CONSUL_HTTP_TOKEN", TOKEN)
            .output();
        assert!(out.status.success(), "{agent}: {}", stderr(&out));
        let err = stderr(&out);
        let n = err
            .matches("Consul ACL token is sent over plain http")
            .count();
        assert_eq!(n, usize::from(warned), "{agent}:\n{err}");
        if warned {
            assert!(err.contains(agent), "{err}");
        }
        assert!(!err.contains(TOKEN));
    }
}
