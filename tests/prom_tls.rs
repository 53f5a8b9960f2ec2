//! Prometheus and Alertmanager behind TLS and basic auth (issue 13, point 3), with the real
//! engines: Debian's `prometheus` and `prometheus-alertmanager` started with
//! `--web.config.file` (a server certificate from a CA made in the test, `basic_auth_users`
//! with a bcrypt hash from `htpasswd -nbBC 10`). Then promfleet's clients, built from the
//! settings layer: the verify play (`prometheus_targets`), the monitoring play's ready and
//! reload checks (its own task lines), `status` and `alert test` succeed; a wrong password
//! fails with the 401 message naming the URL and the setting; a password given outside the
//! secrets is refused; no password (nor its base64 header form) is ever printed.
//!
//! Settings come from three sources at once: Prometheus' from inventory variables with the
//! password in the `--secrets` file, Alertmanager's from the project file (`PROMFLEET_CONFIG`)
//! with the password in `PROMFLEET_SECRET_ALERTMANAGER_BASIC_AUTH_PASSWORD`.
//! Nothing leaves 127.0.0.1; no SSH is needed (every step here runs from the jump host).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::tls::TestCa;

use crate::support::*;

const USER: &str = "promfleet";
const PROM_PASSWORD: &str = "PROMTLS-prom-pw-6c1e9a";
const AM_PASSWORD: &str = "PROMTLS-am-pw-0b7d42";
const WRONG_PASSWORD: &str = "PROMTLS-wrong-pw-93fa11";

/// `user:<bcrypt hash>` of `password`, as Apache's htpasswd writes it.
fn bcrypt(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-nbBC", "10", user, password])
        .output()
        .expect("htpasswd");
    assert!(out.status.success(), "htpasswd: {}", stderr(&out));
    let line = stdout(&out);
    let (_, hash) = line.trim().split_once(':').expect("user:hash");
    hash.to_string()
}

/// A web config (exporter-toolkit): TLS with the test CA's server certificate, basic auth.
fn web_config(dir: &Path, name: &str, cert: &Path, key: &Path, password: &str) -> PathBuf {
    let cfg = json!({
        "tls_server_config": {
            "cert_file": cert.display().to_string(),
            "key_file": key.display().to_string(),
        },
        "basic_auth_users": { USER: bcrypt(USER, password) },
    });
    let p = dir.join(name);
    std::fs::write(&p, cfg.to_string()).expect("web config");
    p
}

fn write_0600(p: &Path, text: &str) {
    std::fs::write(p, text).expect("write");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// The ready checks and reload handlers of playbooks/monitoring.yml for Prometheus and
/// Alertmanager, as tasks of a play on the monitoring hosts: the shipped lines, not copies.
fn monitoring_http_checks(out: &Path) {
    let text = std::fs::read_to_string(repo().join("playbooks/monitoring.yml")).expect("read");
    let plays: Value = serde_saphyr::from_str(&text).expect("yaml");
    let wanted = [
        "prometheus ready",
        "alertmanager ready",
        "reload prometheus",
        "reload alertmanager",
    ];
    let tasks: Vec<Value> = ["tasks", "handlers"]
        .iter()
        .flat_map(|k| plays[0][k].as_array().cloned().unwrap_or_default())
        .filter(|t| wanted.contains(&t["name"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(tasks.len(), 4, "{tasks:#?}");
    let book = json!([{ "name": "monitoring http checks", "hosts": "monitoring", "tasks": tasks }]);
    std::fs::write(out, book.to_string()).expect("playbook");
}

fn all_output(outs: &[&Output]) -> String {
    outs.iter()
        .map(|o| format!("{}\n{}", stdout(o), stderr(o)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn verify_status_alert_test_and_the_http_checks_reach_tls_basic_auth_engines() {
    for tool in ["prometheus", "prometheus-alertmanager", "htpasswd"] {
        if !have(tool) {
            eprintln!("SKIPPED: needs {tool} (scripts/install-deps.sh)");
            return;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = TestCa::new("promtls test CA").expect("ca");
    let (files, _) = ca.write(d, &["127.0.0.1"]).expect("tls files");
    let (prom_port, am_port) = (free_port(), free_port());

    // Prometheus: TLS + basic auth, scraping itself through the same (a target to verify).
    let prom_web = web_config(
        d,
        "prom-web.yml",
        &files.server_cert,
        &files.server_key,
        PROM_PASSWORD,
    );
    let prom_cfg = d.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        json!({
            "global": { "scrape_interval": "1s" },
            "scrape_configs": [{
                "job_name": "self",
                "scheme": "https",
                "tls_config": { "ca_file": files.ca.display().to_string() },
                "basic_auth": { "username": USER, "password": PROM_PASSWORD },
                "static_configs": [{ "targets": [format!("127.0.0.1:{prom_port}")] }],
            }],
        })
        .to_string(),
    )
    .expect("prometheus.yml");
    let prom = Launch::prometheus(&prom_cfg, &format!("127.0.0.1:{prom_port}"))
        .arg(format!("--web.config.file={}", prom_web.display()))
        .arg("--web.enable-lifecycle")
        .start();

    // Alertmanager: TLS + basic auth, routing group IDE to webhook-ide.
    let am_web = web_config(
        d,
        "am-web.yml",
        &files.server_cert,
        &files.server_key,
        AM_PASSWORD,
    );
    // The receiver posts to a sink: `alert test` proves that exactly one notification went out.
    let (sink_port, deliveries) = start_sink_in_thread();
    let am_cfg = d.join("alertmanager.yml");
    std::fs::write(
        &am_cfg,
        json!({
            "route": {
                "receiver": "default-receiver",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "routes": [{ "matchers": ["group = IDE"], "receiver": "webhook-ide" }],
            },
            "receivers": [
                { "name": "default-receiver" },
                {
                    "name": "webhook-ide",
                    "webhook_configs": [{ "url": format!("http://127.0.0.1:{sink_port}/ide") }],
                },
            ],
        })
        .to_string(),
    )
    .expect("alertmanager.yml");
    let am = Launch::alertmanager(&am_cfg, &format!("127.0.0.1:{am_port}"))
        .arg(format!("--web.config.file={}", am_web.display()))
        .standalone()
        .start();
    prom.wait_listening(Duration::from_secs(120));
    am.wait_listening(Duration::from_secs(120));

    // The exporter Consul lists as promfleet's: Prometheus itself (its target is UP once
    // Prometheus' own TLS + basic-auth scrape works).
    let consul = Double::start();
    consul
        .d
        .register_direct(json!({
            "ID": "node-exporter-mon-01-127.0.0.1",
            "Name": "node-exporter",
            "Address": "127.0.0.1",
            "Port": prom_port,
            "Meta": { "hostname": "mon-01", "group": "monitoring", "managed_by": "promfleet" },
        }))
        .expect("register");

    // Prometheus: inventory variables; its password: the secrets file.
    let inv = d.join("inventory.yml");
    std::fs::write(
        &inv,
        format!(
            r#"vars:
  prometheus_port: {prom_port}
  alertmanager_port: {am_port}
  grafana_port: {g}
  dingtalk_port: {k1}
  karma_port: {k2}
  verify_timeout: 120
  prometheus_scheme: https
  prometheus_ca_file: ca.pem
  prometheus_basic_auth_username: {USER}
consul: {{ agents: ["{consul}"] }}
groups:
  IDE: {{ hosts: [ {{ name: ide-01, ip: 127.0.0.11 }} ] }}
monitoring:
  hosts: [ {{ name: mon-01, ip: 127.0.0.1 }} ]
"#,
            g = free_port(),
            k1 = free_port(),
            k2 = free_port(),
            consul = consul.d.url(),
        ),
    )
    .expect("inventory");
    let secrets = d.join("secrets.yml");
    write_0600(
        &secrets,
        &format!("prometheus_basic_auth_password: {PROM_PASSWORD}\n"),
    );
    let wrong_secrets = d.join("wrong-secrets.yml");
    write_0600(
        &wrong_secrets,
        &format!("prometheus_basic_auth_password: {WRONG_PASSWORD}\n"),
    );
    // Alertmanager: the project file (paths relative to it); its password: the environment.
    let project = d.join("promfleet.yml");
    std::fs::write(
        &project,
        format!(
            "alertmanager: {{ scheme: https, ca_file: ca.pem, basic_auth_username: {USER} }}\n"
        ),
    )
    .expect("project file");
    let state = d.join("state");
    let run = |args: &[&str], secrets: &Path, am_password: &str| -> Output {
        let mut r = Run::new(args)
            .arg("-i")
            .arg(&inv)
            .arg("--secrets")
            .arg(secrets)
            .env("PROMFLEET_CONFIG", project.to_str().expect("utf8"))
            .env(
                "PROMFLEET_SECRET_ALERTMANAGER_BASIC_AUTH_PASSWORD",
                am_password,
            );
        if args[0] != "alert" {
            r = r.arg("--state-dir").arg(&state);
        }
        r.output()
    };
    let mut outputs: Vec<Output> = Vec::new();

    // verify: every registered exporter UP, asked over TLS with the credentials.
    let verify = repo().join("playbooks/verify.yml");
    let verify = verify.to_str().expect("utf8");
    let out = run(
        &["deploy", verify, "--output", "json", "--retries", "1"],
        &secrets,
        AM_PASSWORD,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}\nprometheus log:\n{}",
        stdout(&out),
        stderr(&out),
        prom.log()
    );
    let detail = report(&out)["hosts"][0]["tasks"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains("all 1 registered exporters are UP"),
        "{detail}"
    );
    outputs.push(out);

    // The monitoring play's ready checks and reload handlers, as shipped.
    let checks = d.join("http-checks.yml");
    monitoring_http_checks(&checks);
    let out = run(
        &[
            "deploy",
            checks.to_str().expect("utf8"),
            "--output",
            "json",
            "--retries",
            "1",
        ],
        &secrets,
        AM_PASSWORD,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let tasks: Vec<(String, String)> = report(&out)["hosts"][0]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["task"].as_str().unwrap_or_default().to_string(),
                t["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (name, url) in [
        (
            "prometheus ready",
            format!("https://127.0.0.1:{prom_port}/-/ready"),
        ),
        (
            "alertmanager ready",
            format!("https://127.0.0.1:{am_port}/-/ready"),
        ),
        (
            "reload prometheus",
            format!("https://127.0.0.1:{prom_port}/-/reload"),
        ),
        (
            "reload alertmanager",
            format!("https://127.0.0.1:{am_port}/-/reload"),
        ),
    ] {
        assert!(
            tasks
                .iter()
                .any(|(n, d)| n == name && d.contains(&url) && d.contains("→ 200")),
            "{name} {url}: {tasks:?}"
        );
    }
    outputs.push(out);

    // status: the Prometheus and Alertmanager rows are ok (the other services are not
    // running here and show down).
    let out = run(
        &["status", "--scope", "central", "--output", "json"],
        &secrets,
        AM_PASSWORD,
    );
    let rows = central_states(&report(&out));
    for svc in ["prometheus", "alertmanager"] {
        assert!(
            rows.iter().any(|(s, st)| s == svc && st == "ok"),
            "{svc} row not ok: {rows:#?}\n{}",
            stderr(&out)
        );
    }
    outputs.push(out);

    // alert test: the IDE alert is routed to webhook-ide, notified once (held past the 1 s
    // group_wait) and resolved.
    let out = run(
        &[
            "alert", "test", "--group", "IDE", "--hold", "5s", "--output", "json",
        ],
        &secrets,
        AM_PASSWORD,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r[0]["receivers"], json!(["webhook-ide"]), "{r:#}");
    assert_eq!(r[0]["resolved"], true, "{r:#}");
    assert_eq!(r[0]["notifications"], 1, "{r:#}");
    assert!(
        deliveries.lock().unwrap().iter().any(|d| d.path == "/ide"),
        "the sink got no notification"
    );
    outputs.push(out);

    // A wrong Prometheus password: verify fails at once (not at its 120 s deadline) with the
    // 401 message naming the URL and the settings.
    let started = Instant::now();
    let out = run(
        &["deploy", verify, "--output", "json", "--retries", "1"],
        &wrong_secrets,
        AM_PASSWORD,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "a refused password must not be polled until verify_timeout (120 s): {:?}",
        started.elapsed()
    );
    let err = report(&out)["hosts"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let prom_url = format!("https://127.0.0.1:{prom_port}/api/v1/targets");
    for want in [
        prom_url.as_str(),
        "HTTP 401 Unauthorized",
        "refused user `promfleet`",
        "prometheus_basic_auth_password",
        "PROMFLEET_SECRET_PROMETHEUS_BASIC_AUTH_PASSWORD",
        wrong_secrets.to_str().expect("utf8"),
    ] {
        assert!(err.contains(want), "`{want}` missing from: {err}");
    }
    outputs.push(out);

    // ... the monitoring play's ready check fails on its first attempt (no retry: the
    // credentials will not change), with the same message.
    let out = run(
        &[
            "deploy",
            checks.to_str().expect("utf8"),
            "--output",
            "json",
            "--retries",
            "3",
        ],
        &wrong_secrets,
        AM_PASSWORD,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let task = &report(&out)["hosts"][0]["tasks"][0];
    assert_eq!(task["task"], "prometheus ready", "{task:#}");
    assert_eq!(task["attempts"], 1, "{task:#}");
    let err = format!("{task}");
    for want in [
        format!("https://127.0.0.1:{prom_port}/-/ready"),
        "HTTP 401 Unauthorized".into(),
        "prometheus_basic_auth_password".into(),
    ] {
        assert!(err.contains(&want), "`{want}` missing from: {err}");
    }
    outputs.push(out);

    // ... status shows Prometheus unauthorized, with the same message.
    let out = run(
        &["status", "--scope", "central", "--output", "json"],
        &wrong_secrets,
        AM_PASSWORD,
    );
    let rows = central_rows(&report(&out));
    let prom_row = rows
        .iter()
        .find(|r| r.service == "prometheus")
        .expect("prometheus row");
    assert_eq!(prom_row.state, "down", "{rows:#?}");
    assert!(
        prom_row.detail.contains("HTTP 401 Unauthorized")
            && prom_row.detail.contains("prometheus_basic_auth_password"),
        "{prom_row:?}"
    );
    outputs.push(out);

    // A wrong Alertmanager password: alert test exits 6 with the 401 message.
    let out = run(
        &[
            "alert", "test", "--group", "IDE", "--hold", "1s", "--output", "json",
        ],
        &secrets,
        WRONG_PASSWORD,
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    let err = r[0]["error"].as_str().unwrap_or_default();
    for want in [
        format!("https://127.0.0.1:{am_port}"),
        "HTTP 401 Unauthorized".into(),
        "alertmanager_basic_auth_password".into(),
        "PROMFLEET_SECRET_ALERTMANAGER_BASIC_AUTH_PASSWORD".into(),
    ] {
        assert!(err.contains(&want), "`{want}` missing from: {err}");
    }
    outputs.push(out);

    // A password on the command line (`-e`, visible in ps) is refused, without echoing it.
    let out = run(
        &[
            "status",
            "--scope",
            "central",
            "-e",
            &format!("prometheus_basic_auth_password={WRONG_PASSWORD}"),
        ],
        &secrets,
        AM_PASSWORD,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a password is read from the secrets only"),
        "{}",
        stderr(&out)
    );
    outputs.push(out);

    // No password, nor the base64 `user:password` of the Authorization header, anywhere.
    use base64::Engine as _;
    let all = all_output(&outputs.iter().collect::<Vec<_>>());
    for pw in [PROM_PASSWORD, AM_PASSWORD, WRONG_PASSWORD] {
        let header = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{pw}"));
        assert!(!all.contains(pw), "{pw} printed:\n{all}");
        assert!(!all.contains(&header), "{pw}'s header printed:\n{all}");
    }
    drop(am);
    drop(prom);
}
