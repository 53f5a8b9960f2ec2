//! Central stacks (issue "Central stacks"): the monitoring and Consul templates rendered with a
//! fixture inventory context, then proven with the real tools — promtool, amtool, docker-compose
//! and a running Alertmanager that delivers to a local HTTP sink. Nothing leaves 127.0.0.0/8.
//!
//! Rendering here uses `tera::Tera` directly with the context contract the renderer implements:
//! templates/defaults.yml, overridden by tests/fixtures/stacks/context.json (host, fleet_groups,
//! monitoring_hosts, consul, ...), and a stand-in `secret` function.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

const MASK: &str = "********";

fn fixture(name: &str) -> Value {
    serde_json::from_str(&read(repo().join("tests/fixtures/stacks").join(name))).unwrap()
}

/// Top-level keys of `over` replace those of `base` (the renderer's precedence: defaults <
/// global < group < host vars).
fn merge(mut base: Value, over: Value) -> Value {
    let (Some(b), Value::Object(o)) = (base.as_object_mut(), over) else {
        panic!("contexts must be objects")
    };
    b.extend(o);
    base
}

/// defaults.yml + context.json + `extra` overrides.
fn context(extra: Value) -> Value {
    let defaults = yaml(&read(repo().join("templates/defaults.yml")));
    merge(merge(defaults, fixture("context.json")), extra)
}

#[derive(Clone, Copy, PartialEq)]
enum Secrets {
    /// What review/diff output shows.
    Masked,
    /// The fake values of tests/fixtures/stacks/secrets.json (what lands on the host).
    Real,
}

fn secret_values() -> HashMap<String, String> {
    serde_json::from_value(fixture("secrets.json")).unwrap()
}

/// Renders one template of templates/ with `ctx`.
fn render(src: &str, ctx: &Value, secrets: Secrets) -> Result<String, tera::Error> {
    let mut tera = tera::Tera::default();
    tera.add_raw_template(src, &read(repo().join("templates").join(src)))?;
    let values = secret_values();
    tera.register_function("secret", move |args: &HashMap<String, tera::Value>| {
        let name = args
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| tera::Error::msg("secret() needs name="))?;
        let value = values
            .get(name)
            .ok_or_else(|| tera::Error::msg(format!("unknown secret {name}")))?;
        Ok(tera::Value::String(match secrets {
            Secrets::Masked => MASK.to_owned(),
            Secrets::Real => value.clone(),
        }))
    });
    tera.render(src, &tera::Context::from_value(ctx.clone())?)
}

fn must_render(src: &str, ctx: &Value, secrets: Secrets) -> String {
    render(src, ctx, secrets).unwrap_or_else(|e| {
        let mut msg = format!("{e}");
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        panic!("render {src}: {msg}")
    })
}

/// Evaluates a playbook `when:` the way a tera expression is evaluated.
fn when(expr: &str, ctx: &Value) -> bool {
    let out = tera::Tera::one_off(
        &format!("{{% if {expr} %}}true{{% endif %}}"),
        &tera::Context::from_value(ctx.clone()).unwrap(),
        false,
    )
    .unwrap_or_else(|e| panic!("when {expr}: {e:?}"));
    out == "true"
}

fn one_off(text: &str, ctx: &Value) -> String {
    tera::Tera::one_off(
        text,
        &tera::Context::from_value(ctx.clone()).unwrap(),
        false,
    )
    .unwrap()
}

/// A file the playbook writes: where it lands and whether it was declared secret.
struct Written {
    path: PathBuf,
    secret: bool,
}

/// Runs the template/copy tasks of a playbook against a local directory: `dir_var` (e.g.
/// `monitoring_dir`) points into `root`, so the tree is what the host would get.
fn apply_playbook(
    playbook: &str,
    dir_var: &str,
    root: &Path,
    ctx: &Value,
    secrets: Secrets,
) -> Vec<Written> {
    let ctx = merge(ctx.clone(), json!({ dir_var: root.to_str().unwrap() }));
    let plays = yaml(&read(repo().join("playbooks").join(playbook)));
    let mut written = Vec::new();
    for play in plays.as_array().unwrap() {
        for task in play["tasks"].as_array().unwrap() {
            if let Some(cond) = task.get("when").and_then(Value::as_str)
                && !when(cond, &ctx)
            {
                continue;
            }
            let (args, templated) = match (task.get("template"), task.get("copy")) {
                (Some(a), _) => (a, true),
                (_, Some(a)) => (a, false),
                _ => continue,
            };
            let src = args["src"].as_str().unwrap();
            let dest = PathBuf::from(one_off(args["dest"].as_str().unwrap(), &ctx));
            assert!(
                dest.starts_with(root),
                "{src} escapes {dir_var}: {}",
                dest.display()
            );
            let body = if templated {
                must_render(src, &ctx, secrets)
            } else {
                read(repo().join("templates").join(src))
            };
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::write(&dest, body).unwrap();
            let secret = args.get("secret").and_then(Value::as_bool).unwrap_or(false);
            written.push(Written { path: dest, secret });
        }
    }
    written
}

/// The monitoring host's tree, rendered into a fresh temp dir.
fn monitoring_tree(ctx: &Value, secrets: Secrets) -> (tempfile::TempDir, Vec<Written>) {
    let dir = tempfile::tempdir().unwrap();
    let written = apply_playbook("monitoring.yml", "monitoring_dir", dir.path(), ctx, secrets);
    (dir, written)
}

// ---------------------------------------------------------------------------------------------
// Prometheus

#[test]
fn rendered_rules_pass_promtool_check_rules() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let (dir, _) = monitoring_tree(&context(json!({})), Secrets::Masked);
    let rules = dir.path().join("prometheus/rules");
    let out = run_ok(
        Command::new(promtool)
            .arg("check")
            .arg("rules")
            .arg(rules.join("node-exporter.rules.yml"))
            .arg(rules.join("cadvisor.rules.yml")),
    );
    assert!(out.contains("SUCCESS: 7 rules found"), "{out}");
    assert!(out.contains("SUCCESS: 4 rules found"), "{out}");

    // Every rule carries severity and the three annotations, plan_url pointing at its runbook.
    for file in ["node-exporter.rules.yml", "cadvisor.rules.yml"] {
        let doc = yaml(&read(rules.join(file)));
        for rule in doc["groups"][0]["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            let severity = rule["labels"]["severity"].as_str().unwrap();
            assert!(
                ["warning", "critical"].contains(&severity),
                "{name}: {severity}"
            );
            let a = &rule["annotations"];
            assert!(
                a["title"]
                    .as_str()
                    .unwrap()
                    .contains("{{ $labels.instance }}"),
                "{name}"
            );
            assert!(
                a["description"]
                    .as_str()
                    .unwrap()
                    .contains("{{ $labels.group }}"),
                "{name}"
            );
            assert_eq!(
                a["plan_url"],
                format!("https://runbooks.example.test/oncall/{name}")
            );
        }
    }
}

#[test]
fn promtool_unit_tests_fire_host_down_disk_full_and_container_down() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let (dir, _) = monitoring_tree(&context(json!({})), Secrets::Masked);
    let prom = dir.path().join("prometheus");
    let mut cmd = Command::new(promtool);
    cmd.current_dir(&prom).arg("test").arg("rules");
    for entry in std::fs::read_dir(repo().join("tests/promtool")).unwrap() {
        let path = entry.unwrap().path();
        let copy = prom.join(path.file_name().unwrap());
        std::fs::copy(&path, &copy).unwrap();
        cmd.arg(copy);
    }
    let out = run_ok(&mut cmd);
    assert_eq!(out.matches("SUCCESS").count(), 2, "{out}");
}

/// Debian's promtool is built without Consul SD and rejects `consul_sd_configs`; this writes
#[test]
fn prometheus_config_passes_promtool_check_config() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let (dir, _) = monitoring_tree(&context(json!({})), Secrets::Real);
    let prom = dir.path().join("prometheus");
    let checked = http_sd_checkable(&prom.join("prometheus.yml"));
    let out = run_ok(
        Command::new(promtool)
            .arg("check")
            .arg("config")
            .arg(&checked),
    );
    // The relative rule_files glob resolves next to the config, as in the container.
    assert!(out.contains("2 rule files found"), "{out}");
    assert!(
        prom.join("consul_token").is_file(),
        "credentials_file must be deployed"
    );
}

/// Keys of `<consul_sd_config>` as documented in
/// https://prometheus.io/docs/prometheus/latest/configuration/configuration/#consul_sd_config
/// (docs/configuration/configuration.md of prometheus/prometheus), plus the `<http_config>`
/// keys it embeds. `path_prefix` and `filter` are newer than Debian's 2.42 and unused.
const CONSUL_SD_DOCUMENTED_KEYS: &[&str] = &[
    "server",
    "path_prefix",
    "token",
    "datacenter",
    "namespace",
    "partition",
    "scheme",
    "username",
    "password",
    "services",
    "filter",
    "tags",
    "node_meta",
    "tag_separator",
    "allow_stale",
    "refresh_interval",
    // <http_config>
    "basic_auth",
    "authorization",
    "oauth2",
    "follow_redirects",
    "enable_http2",
    "tls_config",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "http_headers",
];

fn consul_job(prometheus_yml: &str) -> Value {
    let config = yaml(prometheus_yml);
    config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "consul-services")
        .cloned()
        .expect("job consul-services")
}

#[test]
fn consul_sd_uses_the_fleet_agents_documented_fields_and_seed_relabels() {
    let ctx = context(json!({}));
    let job = consul_job(&must_render(
        "monitoring/prometheus.yml",
        &ctx,
        Secrets::Masked,
    ));
    let sds = job["consul_sd_configs"].as_array().unwrap();
    let servers: Vec<&str> = sds.iter().map(|s| s["server"].as_str().unwrap()).collect();
    // Defect 3: discovery asks exactly the agents the fleet registers with.
    assert_eq!(servers, ["10.0.0.178:8500", "10.0.0.178:8501"]);
    for sd in sds {
        for key in sd.as_object().unwrap().keys() {
            assert!(
                CONSUL_SD_DOCUMENTED_KEYS.contains(&key.as_str()),
                "undocumented key {key}"
            );
        }
        assert_eq!(sd["scheme"], "http");
        assert_eq!(sd["datacenter"], "dc1");
        assert_eq!(sd["services"], json!([]));
        // The token is read from a file, never inlined (defect 9).
        assert!(sd.get("token").is_none());
        // The type is explicit: Prometheus 2.42 sent the bare token on the http_sd path.
        assert_eq!(
            sd["authorization"],
            json!({ "type": "Bearer", "credentials_file": "consul_token" })
        );
    }
    assert_eq!(
        job["relabel_configs"],
        json!([
            { "source_labels": ["__meta_consul_service"], "regex": "consul", "action": "drop" },
            { "source_labels": ["__meta_consul_service_metadata_hostname"], "target_label": "instance" },
            { "source_labels": ["__meta_consul_service_metadata_group"], "target_label": "group" },
            {
                "source_labels": ["__scheme__", "__address__", "__metrics_path__"],
                "regex": "(http|https)(.*)",
                "separator": "",
                "target_label": "endpoint",
                "replacement": "${1}://${2}"
            }
        ])
    );

    // No datacenter, no token: neither key appears, and no token file is deployed.
    let bare = context(json!({ "consul": {
        "agents": [{ "url": "https://10.0.9.1:8501", "scheme": "https", "address": "10.0.9.1:8501", "host": "10.0.9.1", "port": 8501 }],
        "datacenter": null, "token_set": false } }));
    let job = consul_job(&must_render(
        "monitoring/prometheus.yml",
        &bare,
        Secrets::Masked,
    ));
    let sd = &job["consul_sd_configs"][0];
    assert_eq!(sd.as_object().unwrap().len(), 3, "{sd}");
    assert_eq!(
        (&sd["server"], &sd["scheme"]),
        (&json!("10.0.9.1:8501"), &json!("https"))
    );
    let (dir, _) = monitoring_tree(&bare, Secrets::Masked);
    assert!(!dir.path().join("prometheus/consul_token").exists());
}

// ---------------------------------------------------------------------------------------------
// Alertmanager

#[test]
fn alertmanager_config_passes_amtool_and_follows_the_inventory_groups() {
    let Some(amtool) = tool("amtool") else { return };
    for (extra, slugs) in [
        (json!({}), vec!["ide", "stage", "pet"]),
        (
            fixture("four-groups.json"),
            vec!["ide", "stage", "pet", "prod-east"],
        ),
    ] {
        let (dir, _) = monitoring_tree(&context(extra), Secrets::Masked);
        let file = dir.path().join("alertmanager/config.yml");
        let out = run_ok(Command::new(&amtool).arg("check-config").arg(&file));
        assert!(
            out.contains(&format!("{} receivers", slugs.len() + 1)),
            "{out}"
        );
        let am = yaml(&read(&file));
        let routes: Vec<&str> = am["route"]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["receiver"].as_str().unwrap())
            .collect();
        let want: Vec<String> = slugs.iter().map(|s| format!("webhook-{s}")).collect();
        assert_eq!(routes, want);
        let urls: Vec<&str> = am["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r.get("webhook_configs"))
            .map(|w| w[0]["url"].as_str().unwrap())
            .collect();
        let want: Vec<String> = slugs
            .iter()
            .map(|s| format!("http://10.0.0.178:9060/dingtalk/webhook-{s}/send"))
            .collect();
        assert_eq!(urls, want);
        // Defect 8: inhibition keyed on severity, same alertname and instance.
        assert_eq!(
            am["inhibit_rules"],
            json!([{
                "source_matchers": ["severity=\"critical\""],
                "target_matchers": ["severity=\"warning\""],
                "equal": ["alertname", "instance"]
            }])
        );
        // And the DingTalk webhook has a target for every route.
        let ding = yaml(&read(dir.path().join("dingtalk/config.yml")));
        let mut targets: Vec<&String> = ding["targets"].as_object().unwrap().keys().collect();
        targets.sort();
        let mut want: Vec<String> = slugs.iter().map(|s| format!("webhook-{s}")).collect();
        want.sort();
        assert_eq!(targets, want.iter().collect::<Vec<_>>());
    }
}

/// A local HTTP sink standing in for the DingTalk webhook: records path and JSON body of every
/// request and answers 200.
async fn start_sink() -> (u16, Arc<Mutex<Vec<Delivery>>>) {
    start_sink_on("127.0.0.1:0").await
}

fn alert(labels: Value) -> Value {
    json!({ "labels": labels, "annotations": { "title": "probe", "description": "probe" },
            "generatorURL": "http://127.0.0.1:9090/graph" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_routes_by_group_and_inhibits_warnings() {
    let Some(_) = tool("prometheus-alertmanager") else {
        return;
    };
    let (sink_port, seen) = start_sink().await;
    let ctx = context(json!({
        "host": { "name": "mon-01", "ip": "127.0.0.1", "group": "monitoring", "groups": ["monitoring"], "datacenter": "dc1" },
        "dingtalk_port": sink_port,
        "alertmanager_group_wait": "1s",
        "alertmanager_group_interval": "1s",
    }));
    let (dir, _) = monitoring_tree(&ctx, Secrets::Masked);
    let port = free_port();
    let _am = Launch::alertmanager(
        &dir.path().join("alertmanager/config.yml"),
        &format!("127.0.0.1:{port}"),
    )
    .standalone()
    .start();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let ready = wait_for(Duration::from_secs(15), async || {
        let r = http.get(format!("{base}/-/ready")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    assert!(ready.is_some(), "alertmanager did not become ready");

    let alerts = json!([
        alert(
            json!({ "alertname": "RouteProbe", "group": "Stage", "instance": "stage-01", "severity": "warning" })
        ),
        alert(
            json!({ "alertname": "InhibitProbe", "group": "IDE", "instance": "ide-01", "severity": "critical" })
        ),
        alert(
            json!({ "alertname": "InhibitProbe", "group": "IDE", "instance": "ide-01", "severity": "warning" })
        ),
        // Same alertname, other instance: must NOT be inhibited.
        alert(
            json!({ "alertname": "InhibitProbe", "group": "IDE", "instance": "ide-02", "severity": "warning" })
        ),
    ]);
    let r = http
        .post(format!("{base}/api/v2/alerts"))
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "post alerts: {}", r.status());

    let labels_of = |d: &Delivery| -> Vec<(String, String, String)> {
        d.body["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        let l = &x["labels"];
                        let s = |k: &str| l[k].as_str().unwrap_or("").to_owned();
                        (s("alertname"), s("instance"), s("severity"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let delivered = wait_for(Duration::from_secs(20), async || {
        let seen = seen.lock().unwrap().clone();
        let stage = seen
            .iter()
            .any(|d| labels_of(d).iter().any(|l| l.0 == "RouteProbe"));
        let ide = seen
            .iter()
            .any(|d| labels_of(d).iter().any(|l| l.0 == "InhibitProbe"));
        (stage && ide).then_some(seen)
    })
    .await
    .expect("alertmanager delivered nothing to the sink within 20 s");

    for d in &delivered {
        let labels = labels_of(d);
        if labels.iter().any(|l| l.0 == "RouteProbe") {
            assert_eq!(
                d.path, "/dingtalk/webhook-stage/send",
                "Stage alert went elsewhere"
            );
        }
        if labels.iter().any(|l| l.0 == "InhibitProbe") {
            assert_eq!(d.path, "/dingtalk/webhook-ide/send");
            assert!(
                !labels.contains(&("InhibitProbe".into(), "ide-01".into(), "warning".into())),
                "inhibited warning was delivered: {labels:?}"
            );
            assert!(labels.contains(&("InhibitProbe".into(), "ide-01".into(), "critical".into())));
            assert!(labels.contains(&("InhibitProbe".into(), "ide-02".into(), "warning".into())));
        }
    }
    // Alertmanager's own view: the ide-01 warning is suppressed by the critical.
    let all: Value = http
        .get(format!("{base}/api/v2/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let warning = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["instance"] == "ide-01" && a["labels"]["severity"] == "warning")
        .expect("warning alert known to alertmanager");
    assert_eq!(warning["status"]["state"], "suppressed", "{warning}");
    assert_eq!(
        warning["status"]["inhibitedBy"].as_array().map(Vec::len),
        Some(1)
    );
}

// ---------------------------------------------------------------------------------------------
// DingTalk, Grafana, secrets

#[test]
fn dingtalk_config_lists_the_template_the_compose_file_mounts() {
    let (dir, _) = monitoring_tree(&context(json!({})), Secrets::Real);
    let ding = yaml(&read(dir.path().join("dingtalk/config.yml")));
    let compose = yaml(&read(dir.path().join("docker-compose.yml")));
    let volumes: Vec<&str> = compose["services"]["webhook"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // Defect 7: the listed template is exactly the mounted one.
    assert_eq!(ding["templates"], json!(["/config/template.tmpl"]));
    assert!(
        volumes.contains(&"./dingtalk/template.tmpl:/config/template.tmpl:ro"),
        "{volumes:?}"
    );
    assert!(
        volumes.contains(&"./dingtalk/config.yml:/config/config.yml:ro"),
        "{volumes:?}"
    );
    assert_eq!(
        ding["targets"]["webhook-stage"],
        json!({ "url": "https://oapi.dingtalk.com/robot/send?access_token=FAKETOKEN-stage-0b4c8e21",
                "secret": "SECFAKE-stage-44a7d0" })
    );
    assert_eq!(
        ding["default_message"]["title"],
        r#"{{ template "promfleet.title" . }}"#
    );
}

#[test]
fn dingtalk_message_template_renders_firing_and_resolved_in_shanghai_time() {
    let Some(amtool) = tool("amtool") else { return };
    let (dir, _) = monitoring_tree(&context(json!({})), Secrets::Masked);
    let render = |name: &str| {
        run_ok(
            Command::new(&amtool)
                .arg("template")
                .arg("render")
                .arg(format!(
                    "--template.glob={}",
                    dir.path().join("dingtalk/template.tmpl").display()
                ))
                .arg(format!("--template.text={{{{ template \"{name}\" . }}}}"))
                .arg(format!(
                    "--template.data={}",
                    repo()
                        .join("tests/fixtures/stacks/alert-data.json")
                        .display()
                )),
        )
    };
    assert_eq!(render("promfleet.title").trim(), "[FIRING:1] HostDown");
    let text = render("promfleet.content");
    for want in [
        "#### Firing: 1",
        "#### Resolved: 1",
        "**Host ide-01 is down**",
        "- Severity: critical",
        "- Group: IDE",
        "- Instance: ide-01",
        "- Description: node-exporter on ide-01 has not answered",
        // 12:04:05Z is 20:04:05 in Asia/Shanghai.
        "- Started: 2024.03.01 20:04:05 (Asia/Shanghai)",
        "- Ended: 2024.03.02 01:30:00 (Asia/Shanghai)",
        "[Graph](http://10.0.0.178:9090/graph?g0.expr=up)",
        "[Runbook](https://runbooks.example.test/oncall/HostDown)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert_eq!(
        text.matches("- Ended:").count(),
        1,
        "only resolved alerts have an end time"
    );
}

#[test]
fn grafana_dashboards_are_json_with_group_and_instance_variables() {
    let (dir, _) = monitoring_tree(&context(json!({})), Secrets::Masked);
    for (file, metric) in [("hosts.json", "node_"), ("containers.json", "container_")] {
        let d: Value =
            serde_json::from_str(&read(dir.path().join("grafana/dashboards").join(file))).unwrap();
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(vars, ["group", "instance"], "{file}");
        for panel in d["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                assert!(
                    expr.contains(metric) && expr.contains("$instance"),
                    "{file}: {expr}"
                );
                assert!(
                    t["legendFormat"].as_str().unwrap().contains("{{instance}}"),
                    "{file}"
                );
            }
        }
    }
    let ds = yaml(&read(
        dir.path()
            .join("grafana/provisioning/datasources/prometheus.yml"),
    ));
    // The fixture has three monitoring hosts (HA): the dashboards' uid `prometheus` is this
    // host's own replica, the default; the other replicas have a datasource each.
    let own = ds["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["uid"] == "prometheus")
        .expect("a datasource with the dashboards' uid");
    assert_eq!(own["url"], "http://10.0.0.178:9090");
    assert_eq!(own["isDefault"], true);
    assert_eq!(ds["datasources"].as_array().unwrap().len(), 3);
    let provider = yaml(&read(
        dir.path()
            .join("grafana/provisioning/dashboards/promfleet.yml"),
    ));
    let compose = read(dir.path().join("docker-compose.yml"));
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert!(
        compose.contains(&format!("./grafana/dashboards:{path}:ro")),
        "dashboards not mounted at {path}"
    );
}

/// Defect 9: in review/diff output every secret is masked, and every file that holds one is
/// declared `secret: true` (written 0600, masked in diffs).
#[test]
fn secrets_are_masked_and_only_in_files_declared_secret() {
    let values = secret_values();
    let ctx = context(fixture("four-groups.json"));
    let (masked, _) = monitoring_tree(&ctx, Secrets::Masked);
    let (real, written) = monitoring_tree(&ctx, Secrets::Real);
    let mut holders = Vec::new();
    for w in &written {
        let rel = w.path.strip_prefix(real.path()).unwrap();
        let masked_text = read(masked.path().join(rel));
        let real_text = read(&w.path);
        for v in values.values() {
            assert!(
                !masked_text.contains(v.as_str()),
                "{} leaks {v} when masked",
                rel.display()
            );
        }
        let holds = values.values().any(|v| real_text.contains(v.as_str()));
        assert_eq!(
            holds,
            w.secret,
            "{}: holds a secret = {holds}, declared secret = {}",
            rel.display(),
            w.secret
        );
        if holds {
            assert!(masked_text.contains(MASK));
            holders.push(rel.to_str().unwrap().to_owned());
        }
    }
    holders.sort();
    assert_eq!(
        holders,
        [
            "dingtalk/config.yml",
            "grafana/config.monitoring",
            "prometheus/consul_token"
        ]
    );
    let env = read(real.path().join("grafana/config.monitoring"));
    assert!(
        env.contains("GF_SECURITY_ADMIN_PASSWORD=FAKEGRAFANA-pw-6d2e71"),
        "{env}"
    );
    // The compose file only references the env file, never the password.
    assert!(!read(real.path().join("docker-compose.yml")).contains("FAKEGRAFANA"));
}

// ---------------------------------------------------------------------------------------------
// Compose files

#[test]
fn monitoring_compose_is_valid_and_limits_every_service() {
    if tool("docker-compose").is_none() {
        return;
    }
    let ctx = context(json!({ "monitoring_data_dir": "/srv/mon-data" }));
    let (dir, _) = monitoring_tree(&ctx, Secrets::Masked);
    let compose = dir.path().join("docker-compose.yml");
    run_ok(
        Command::new("docker-compose")
            .arg("-f")
            .arg(&compose)
            .arg("config")
            .arg("-q"),
    );
    // docker-compose v1's normalised view keeps the limits: they are honoured without
    // --compatibility (defect 4).
    let config = compose_config(&compose);
    let services = config["services"].as_object().unwrap();
    let mut names: Vec<&String> = services.keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "alertmanager",
            "alertmanager-dashboard",
            "grafana",
            "prometheus",
            "webhook"
        ]
    );
    for (name, s) in services {
        assert_eq!(s["restart"], "always", "{name}");
        assert_eq!(s["cpus"].as_f64(), Some(1.0), "{name}");
        assert_eq!(s["mem_limit"], "500m", "{name}");
        assert!(s.get("deploy").is_none(), "{name}");
        let image = s["image"].as_str().unwrap();
        assert!(
            image
                .rsplit_once(':')
                .is_some_and(|(_, tag)| tag != "latest"),
            "{name}: unpinned {image}"
        );
    }
    let prom = &services["prometheus"];
    let cmd: Vec<&str> = prom["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        cmd.contains(&"--web.external-url=http://10.0.0.178:9090"),
        "{cmd:?}"
    );
    assert!(
        cmd.contains(&"--web.enable-lifecycle") && cmd.contains(&"--storage.tsdb.path=/prometheus")
    );
    let text = read(&compose);
    assert!(text.contains("/srv/mon-data/prometheus-data:/prometheus"));
    assert!(text.contains("/srv/mon-data/grafana-data:/var/lib/grafana"));
    assert!(text.contains(r#""9060:8060""#) && text.contains(r#""9094:8080""#));
    // HA fixture (three monitoring hosts): Karma reads every Alertmanager from karma.yml.
    assert_eq!(
        services["alertmanager-dashboard"]["environment"]["CONFIG_FILE"],
        "/etc/karma/karma.yml"
    );
    let karma = yaml(&read(compose.with_file_name("karma/karma.yml")));
    let uris: Vec<&str> = karma["alertmanager"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        uris,
        [
            "http://10.0.0.178:9093",
            "http://10.0.0.179:9093",
            "http://10.0.0.180:9093"
        ]
    );
}

/// Renders the consul compose for one monitoring host, as the playbook would.
fn consul_tree(ctx: &Value) -> Option<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().unwrap();
    let written = apply_playbook("consul.yml", "consul_dir", dir.path(), ctx, Secrets::Masked);
    let compose = written
        .into_iter()
        .find(|w| w.path.ends_with("docker-compose.yml"))?
        .path;
    Some((dir, compose))
}

fn as_host(ctx: &Value, index: usize) -> Value {
    let mh = &ctx["monitoring_hosts"][index];
    merge(
        ctx.clone(),
        json!({ "host": { "name": mh["name"], "ip": mh["ip"], "group": "monitoring", "groups": ["monitoring"], "datacenter": "dc1", "dc_index": index + 1 } }),
    )
}

#[test]
fn consul_single_layout_runs_the_whole_cluster_on_the_first_host() {
    if tool("docker-compose").is_none() {
        return;
    }
    let ctx = context(json!({ "consul_layout": "single" }));
    let (_dir, compose) = consul_tree(&as_host(&ctx, 0)).expect("first host gets the cluster");
    assert!(
        consul_tree(&as_host(&ctx, 1)).is_none(),
        "second host must get nothing"
    );
    run_ok(
        Command::new("docker-compose")
            .arg("-f")
            .arg(&compose)
            .arg("config")
            .arg("-q"),
    );
    let config = compose_config(&compose);
    let services = config["services"].as_object().unwrap();
    let mut names: Vec<&String> = services.keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "consul-client1",
            "consul-client2",
            "consul-server1",
            "consul-server2",
            "consul-server3"
        ]
    );
    for (name, s) in services {
        // Defect 6: pinned hashicorp/consul, a real network instead of `network_mode`.
        assert_eq!(s["image"], "hashicorp/consul:1.16.6", "{name}");
        assert!(s.get("network_mode").is_none(), "{name}");
        assert!(s["networks"].get("consul-network").is_some(), "{name}");
        let cmd: Vec<&str> = s["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let joins = cmd.contains(&"-retry-join=consul-server1");
        assert_eq!(joins, name != "consul-server1", "{name}: {cmd:?}");
        if name.starts_with("consul-server") {
            assert!(
                cmd.contains(&"-server") && cmd.contains(&"-bootstrap-expect=3"),
                "{name}"
            );
        } else {
            assert!(cmd.contains(&"-ui"), "{name}");
        }
    }
    // Published client ports are the ports of the inventory's agents (registration + discovery).
    let published = |n: &str| {
        services[n]["ports"][0]["published"].as_u64().or_else(|| {
            services[n]["ports"][0]["published"]
                .as_str()
                .and_then(|p| p.parse().ok())
        })
    };
    assert_eq!(
        (published("consul-client1"), published("consul-client2")),
        (Some(8500), Some(8501))
    );
    let subnet = &config["networks"]["consul-network"]["ipam"]["config"][0]["subnet"];
    assert_eq!(subnet, "10.10.0.0/24");

    // An agent the compose file would not publish is refused at render time.
    let drift = merge(
        ctx.clone(),
        json!({ "consul": { "agents": [
        { "url": "http://10.0.0.178:8502", "scheme": "http", "address": "10.0.0.178:8502", "host": "10.0.0.178", "port": 8502 }
    ], "datacenter": null, "token_set": false } }),
    );
    let err = render(
        "consul/docker-compose.yml",
        &as_host(&drift, 0),
        Secrets::Masked,
    )
    .unwrap_err();
    assert!(
        format!("{err:?}").contains("is not a published client port"),
        "{err:?}"
    );
}

#[test]
fn consul_spread_layout_puts_one_server_on_each_of_three_hosts() {
    if tool("docker-compose").is_none() {
        return;
    }
    let mut ctx = context(json!({ "consul_layout": "spread" }));
    // The second client agent is on the second host.
    ctx["consul"]["agents"][1] = json!({ "url": "http://10.0.0.179:8501", "scheme": "http",
        "address": "10.0.0.179:8501", "host": "10.0.0.179", "port": 8501 });
    let ips = ["10.0.0.178", "10.0.0.179", "10.0.0.180"];
    let mut servers = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let (_dir, compose) =
            consul_tree(&as_host(&ctx, i)).expect("each of the three hosts runs a server");
        run_ok(
            Command::new("docker-compose")
                .arg("-f")
                .arg(&compose)
                .arg("config")
                .arg("-q"),
        );
        let config = compose_config(&compose);
        let services = config["services"].as_object().unwrap();
        let server = format!("consul-server{}", i + 1);
        let cmd: Vec<String> = services[&server]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert!(cmd.contains(&format!("-advertise={ip}")), "{cmd:?}");
        let joins: Vec<&String> = cmd
            .iter()
            .filter(|c| c.starts_with("-retry-join="))
            .collect();
        let want: Vec<String> = ips
            .iter()
            .filter(|o| *o != ip)
            .map(|o| format!("-retry-join={o}"))
            .collect();
        assert_eq!(joins, want.iter().collect::<Vec<_>>());
        // One client agent on each of the first two hosts: every exporter is registered on
        // both, so losing either host loses no registration (README "Topology").
        let clients: Vec<&String> = services
            .keys()
            .filter(|k| k.starts_with("consul-client"))
            .collect();
        let want: Vec<String> = match i {
            0 => vec!["consul-client1".into()],
            1 => vec!["consul-client2".into()],
            _ => vec![],
        };
        assert_eq!(clients, want.iter().collect::<Vec<_>>(), "host {}", i + 1);
        servers.extend(
            services
                .keys()
                .filter(|k| k.starts_with("consul-server"))
                .cloned(),
        );
    }
    assert_eq!(
        servers,
        ["consul-server1", "consul-server2", "consul-server3"]
    );

    // Spread needs three monitoring hosts: fewer is an error, not a silently smaller cluster.
    let two = merge(
        ctx.clone(),
        json!({ "monitoring_hosts": [ctx["monitoring_hosts"][0], ctx["monitoring_hosts"][1]] }),
    );
    let err = render(
        "consul/docker-compose.yml",
        &as_host(&two, 0),
        Secrets::Masked,
    )
    .unwrap_err();
    assert!(
        format!("{err:?}").contains("needs three monitoring hosts"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Playbooks

/// Both central playbooks honour the inventory's `compose_command` (docker-compose v1, a
/// wrapper), like the exporter playbook; empty means detect.
#[test]
fn central_playbooks_pass_compose_command() {
    for book in ["monitoring.yml", "consul.yml"] {
        let plays = yaml(&read(repo().join("playbooks").join(book)));
        let composes: Vec<&Value> = plays
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["tasks"].as_array().unwrap())
            .filter_map(|t| t.get("compose"))
            .collect();
        assert_eq!(composes.len(), 1, "{book}");
        assert_eq!(composes[0]["command"], "{{ compose_command }}", "{book}");
    }
}

#[test]
fn monitoring_playbook_reloads_instead_of_restarting() {
    let plays = yaml(&read(repo().join("playbooks/monitoring.yml")));
    let play = &plays[0];
    assert_eq!(play["hosts"], "monitoring");
    let handlers: HashMap<&str, &Value> = play["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["name"].as_str().unwrap(), &h["http"]))
        .collect();
    for task in play["tasks"].as_array().unwrap() {
        let src = task
            .get("template")
            .map(|t| t["src"].as_str().unwrap())
            .unwrap_or("");
        let want = if src.starts_with("monitoring/rules/") || src == "monitoring/prometheus.yml" {
            Some("reload prometheus")
        } else if src == "monitoring/alertmanager.yml" {
            Some("reload alertmanager")
        } else {
            None
        };
        if let Some(want) = want {
            assert_eq!(task["notify"], json!([want]), "{src}");
            let h = handlers[want];
            assert_eq!(h["method"], "POST");
            assert!(h["url"].as_str().unwrap().ends_with("/-/reload"));
        }
        for module in ["template", "copy"] {
            if let Some(args) = task.get(module) {
                let src = args["src"].as_str().unwrap();
                assert!(
                    repo().join("templates").join(src).is_file(),
                    "missing templates/{src}"
                );
            }
        }
    }
}
