//! The Consul cluster stack's own ACL and TLS config (issue 13 point 2, README "Consul"):
//! opt-in (`consul_acl`, `consul_tls`), so with both off the rendered cluster files are the
//! ones rendered before they existed (golden copies in tests/fixtures/consul_cluster/);
//! the refusals at planning (no management token, an http:// agent of an https-only cluster,
//! missing certificates); the secret files' modes and owners on a real sshd host, and the
//! tokens and key masked in `--diff` and the JSON report; the cluster check of every
//! datacenter through its own agent.

use std::path::{Path, PathBuf};

use testkit::consul_double::DoubleOptions;
use testkit::sshd::Fleet;
use testkit::tls::TestCa;

use crate::support::*;

const MANAGEMENT: &str = "MGMT-0c7e51d2-token";
const AGENT: &str = "AGENT-5b1f9e07-token";

/// The inventory of golden case `case` (tests/fixtures/consul_cluster/<case>/).
fn case_dir(case: &str) -> PathBuf {
    repo().join("tests/fixtures/consul_cluster").join(case)
}

/// `promfleet render playbooks/consul.yml` of `inv` with `extra` arguments; the output.
fn render_consul(inv: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut run = Run::new(&["render", "playbooks/consul.yml"])
        .without_settings_env()
        .arg("-i")
        .arg(inv)
        .arg("--out")
        .arg(out);
    for e in extra {
        run = run.arg(e);
    }
    run.output()
}

/// The cluster files (`<host>/<file>`) rendered into `out` (consul_dir /data/consul).
fn cluster_files(out: &Path) -> Vec<PathBuf> {
    files_under_relative(out)
        .into_iter()
        .map(|p| {
            let mut parts = p.components();
            let host = parts.next().expect("host dir").as_os_str().to_owned();
            let rest = parts.as_path();
            let file = rest.strip_prefix("data/consul").unwrap_or_else(|_| {
                panic!("{} rendered outside consul_dir", p.display());
            });
            Path::new(&host).join(file)
        })
        .collect()
}

/// With `consul_acl` and `consul_tls` off (the default, and said explicitly), every layout
/// renders the cluster files byte for byte as before the settings existed: the goldens were
/// rendered from main's templates before this change.
#[test]
fn consul_cluster_with_acl_and_tls_off_renders_byte_identical_to_before() {
    for case in ["single", "spread", "multi_single", "multi_spread"] {
        for explicit in [false, true] {
            let dir = tempfile::tempdir().expect("tmp");
            let out = dir.path().join("out");
            let mut inv = case_dir(case).join("inventory.yml");
            if explicit {
                let text = read(&inv);
                let off = "consul_acl: false, consul_tls: false";
                let text = match text.strip_prefix("vars: {") {
                    Some(rest) => format!("vars: {{{off}, {rest}"),
                    None => format!("vars: {{{off}}}\n{text}"),
                };
                inv = write(dir.path(), "inventory.yml", &text);
            }
            let o = render_consul(&inv, &out, &[]);
            assert!(o.status.success(), "{case}: {}", stderr(&o));
            let expected = case_dir(case).join("expected");
            let extra = if explicit {
                "explicitly off"
            } else {
                "default"
            };
            assert_eq!(
                cluster_files(&out),
                files_under_relative(&expected),
                "{case} {extra}"
            );
            for f in files_under_relative(&expected) {
                let host = f.components().next().expect("host").as_os_str();
                let got = out
                    .join(host)
                    .join("data/consul")
                    .join(f.strip_prefix(host).expect("host prefix"));
                assert_eq!(
                    read(&got),
                    read(expected.join(&f)),
                    "{case} {extra}: {} differs from before",
                    f.display()
                );
            }
        }
    }
}

/// A copy of golden case `case`'s inventory whose `consul:` block gets `consul` (YAML flow
/// entries) and whose agents are `agents`.
fn inventory_with(dir: &Path, case: &str, agents: &str, consul: &str) -> PathBuf {
    let text = read(case_dir(case).join("inventory.yml"));
    let line = text
        .lines()
        .find(|l| l.starts_with("consul:"))
        .expect("consul line");
    let text = text.replace(line, &format!("consul: {{agents: [{agents}]{consul}}}"));
    write(dir, "inventory.yml", &text)
}

/// The TLS files of a test CA: `consul:` block entries for the cluster's certificates.
fn tls_block(dir: &Path) -> String {
    let ca = TestCa::new("consul cluster test CA").expect("ca");
    let (f, _) = ca
        .write(
            dir,
            &[
                "server.dc1.consul",
                "server.fra.consul",
                "server.sha.consul",
            ],
        )
        .expect("tls files");
    format!(
        ", ca_file: {}, server_cert: {}, server_key: {}, agent_cert: {}, agent_key: {}",
        f.ca.display(),
        f.server_cert.display(),
        f.server_key.display(),
        f.client_cert.display(),
        f.client_key.display()
    )
}

/// `consul_acl` refuses to plan a deploy without the management token, naming the secret and
/// where to set it, before any host is touched; render (masked) does not need it.
#[test]
fn consul_acl_without_the_management_token_is_refused_naming_the_secret() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = case_dir("single").join("inventory.yml");
    let o = Run::new(&["deploy", "playbooks/consul.yml", "-e", "consul_acl=true"])
        .without_settings_env()
        .env_remove("PROMFLEET_SECRET_CONSUL_MANAGEMENT_TOKEN")
        .arg("-i")
        .arg(&inv)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("consul_management_token"), "{err}");
    assert!(
        err.contains("PROMFLEET_SECRET_CONSUL_MANAGEMENT_TOKEN"),
        "{err}"
    );
    assert!(err.contains("acl-server.json"), "{err}");
    let out = dir.path().join("out");
    let r = render_consul(&inv, &out, &["-e", "consul_acl=true"]);
    assert!(r.status.success(), "{}", stderr(&r));
}

/// `consul_tls` serves the client agents' API over https only: an `http://` agent on a
/// cluster host is refused at planning with the URL to write instead; missing certificates
/// are refused naming the settings.
#[test]
fn consul_tls_refuses_an_http_agent_and_missing_certificates_with_the_fix() {
    let dir = tempfile::tempdir().expect("tmp");
    let tls = tls_block(dir.path());
    let out = dir.path().join("out");

    let inv = inventory_with(dir.path(), "single", "http://10.0.0.1:8500", &tls);
    let o = render_consul(&inv, &out, &["-e", "consul_tls=true"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("http://10.0.0.1:8500") && err.contains("write https://10.0.0.1:8500"),
        "{err}"
    );

    let inv = inventory_with(dir.path(), "single", "https://10.0.0.1:8500", "");
    let o = render_consul(&inv, &out, &["-e", "consul_tls=true"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("ca_file"), "{err}");

    let no_agent_cert = tls.split(", agent_cert").next().expect("prefix").to_owned();
    let inv = inventory_with(
        dir.path(),
        "single",
        "https://10.0.0.1:8500",
        &no_agent_cert,
    );
    let o = render_consul(&inv, &out, &["-e", "consul_tls=true"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("agent_cert and agent_key"), "{err}");

    let inv = inventory_with(dir.path(), "single", "https://10.0.0.1:8500", &tls);
    let o = render_consul(&inv, &out, &["-e", "consul_tls=true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let compose = read(out.join("mon-1/data/consul/docker-compose.yml"));
    assert!(compose.contains("\"8500:8501\""), "{compose}");
    assert!(compose.contains("\"8501:8501\""), "{compose}");
}

/// The consul play with ACL and TLS on, deployed over SSH to a test monitoring host (compose
/// stand-in, Consul double for the cluster check): the files holding a token or a key are
/// 0600 and owned by the official image's consul user (100:1000), the others 0644; the
/// tokens and the keys appear in neither `--diff` nor the JSON report; the agent token is
/// created in Consul (double in default-deny mode) with the agent policy; a second run
/// changes nothing.
#[test]
fn consul_acl_and_tls_files_are_0600_for_the_images_consul_user_and_masked_in_output() {
    if !require_root() || tool("docker-compose").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let ca = TestCa::new("consul cluster test CA").expect("ca");
    let (tls, _) = ca.write(dir.path(), &["server.dc1.consul"]).expect("tls");
    // Default deny with the management token (the double's one token), which is also the
    // fleet's token here.
    let double = Double::start_with(DoubleOptions {
        servers: 3,
        run_checks: false,
        acl_token: Some(MANAGEMENT.to_owned()),
        ..DoubleOptions::default()
    });
    let fleet = Fleet::builder()
        .hosts(1)
        .monitoring_host(true)
        .consul_agents([double.d.url()])
        .start()
        .expect("fleet");
    let mon = fleet.monitoring_host().expect("monitoring host").clone();
    let cdir = mon.dir.join("consul");
    // chown to the image's user needs root: the login user has NOPASSWD sudo.
    let yaml = fleet
        .inventory()
        .var("consul_dir", cdir.display().to_string())
        .var("consul_acl", true)
        .var("consul_tls", true)
        .yaml()
        .replacen("ssh: {", "ssh: { become: true,", 1);
    let inv = write(dir.path(), "inventory.yml", &yaml);
    let key_text = read(&tls.client_key);
    let key_line = key_text.lines().nth(1).expect("key body").to_owned();
    let deploy = |tls: &testkit::tls::TlsFiles| {
        let o = Run::new(&["deploy", "playbooks/consul.yml", "--diff", "-v"])
            .without_settings_env()
            .env("PROMFLEET_SECRET_CONSUL_MANAGEMENT_TOKEN", MANAGEMENT)
            .env("PROMFLEET_SECRET_CONSUL_TOKEN", MANAGEMENT)
            .env("PROMFLEET_SECRET_CONSUL_AGENT_TOKEN", AGENT)
            .env(
                "PROMFLEET_SECRET_CONSUL_CA_FILE",
                &tls.ca.display().to_string(),
            )
            .env(
                "PROMFLEET_SECRET_CONSUL_SERVER_CERT",
                &tls.server_cert.display().to_string(),
            )
            .env(
                "PROMFLEET_SECRET_CONSUL_SERVER_KEY",
                &tls.server_key.display().to_string(),
            )
            .env(
                "PROMFLEET_SECRET_CONSUL_AGENT_CERT",
                &tls.client_cert.display().to_string(),
            )
            .env(
                "PROMFLEET_SECRET_CONSUL_AGENT_KEY",
                &tls.client_key.display().to_string(),
            )
            .on_fleet(&inv, &fleet)
            .arg("--output")
            .arg("json")
            .output();
        let text = format!("{}{}", stdout(&o), stderr(&o));
        for (what, secret) in [
            ("management token", MANAGEMENT),
            ("agent token", AGENT),
            ("agent key", key_line.as_str()),
        ] {
            assert!(
                !text.contains(secret),
                "promfleet printed the {what}:\n{text}"
            );
        }
        let r = report(&o);
        assert_eq!(o.status.code(), Some(0), "{}\n{r:#}", stderr(&o));
        r
    };
    let r = deploy(&tls);
    assert_eq!(host_status(&r)[&mon.name].0, "changed", "{r:#}");
    let uid_gid = (100, 1000);
    for (rel, mode, owner) in [
        ("promfleet-acl-server.json", 0o600, Some(uid_gid)),
        ("promfleet-acl-client.json", 0o600, Some(uid_gid)),
        ("promfleet-tls.json", 0o644, None),
        ("tls/ca.pem", 0o644, None),
        ("tls/server.pem", 0o644, None),
        ("tls/server-key.pem", 0o600, Some(uid_gid)),
        ("tls/agent.pem", 0o644, None),
        ("tls/agent-key.pem", 0o600, Some(uid_gid)),
    ] {
        let p = cdir.join(rel);
        assert_eq!(mode_of(&p), mode, "{rel}: mode {:o}", mode_of(&p));
        if let Some(owner) = owner {
            assert_eq!(owner_of(&p), owner, "{rel}");
        }
    }
    let server: serde_json::Value =
        serde_json::from_str(&read(cdir.join("promfleet-acl-server.json"))).expect("json");
    assert_eq!(server["acl"]["tokens"]["initial_management"], MANAGEMENT);
    assert_eq!(server["acl"]["tokens"]["agent"], AGENT);
    assert_eq!(server["acl"]["default_policy"], "deny");
    let client: serde_json::Value =
        serde_json::from_str(&read(cdir.join("promfleet-acl-client.json"))).expect("json");
    assert_eq!(client["acl"]["tokens"]["agent"], AGENT);
    assert!(client["acl"]["tokens"].get("initial_management").is_none());
    assert_eq!(read(cdir.join("tls/agent-key.pem")), key_text);

    // The agent token exists in Consul with the agent policy, created with the management
    // token once the cluster had a leader.
    let tokens = double.d.acl_tokens();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0].secret_id, AGENT);
    assert_eq!(tokens[0].policies, ["promfleet-agent"]);
    let policies = double.d.acl_policies();
    assert_eq!(policies.len(), 1, "{policies:?}");
    let rules = policies[0].rules.replace([' ', '\n'], "");
    assert!(
        rules.contains("node_prefix\"\"{policy=\"write\"}")
            && rules.contains("service_prefix\"\"{policy=\"read\"}"),
        "{rules}"
    );
    let task = |r: &serde_json::Value, name: &str| {
        r["hosts"][0]["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .find(|t| t["task"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no task {name}: {r:#}"))
    };
    assert_eq!(
        task(&r, "consul agent token")["outcome"],
        "changed",
        "{r:#}"
    );

    let r = deploy(&tls);
    assert_eq!(host_status(&r)[&mon.name].0, "ok", "second run: {r:#}");
    assert_eq!(task(&r, "consul agent token")["outcome"], "ok", "{r:#}");
    assert_eq!(double.d.acl_tokens().len(), 1);

    // Certificates rotated (new ones from the same CA): the agents read them only at start,
    // so the play restarts them; it did not before (they ran on the old ones until their
    // next restart).
    let restarts = || {
        std::fs::read_to_string(cdir.join(".standin/calls.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(" restart"))
            .count()
    };
    assert_eq!(
        restarts(),
        0,
        "first deploy and unchanged re-run restart nothing"
    );
    let rotated_dir = tempfile::tempdir().expect("tmp");
    let (rotated, _) = ca
        .write(rotated_dir.path(), &["server.dc1.consul"])
        .expect("tls");
    let r = deploy(&rotated);
    assert_eq!(host_status(&r)[&mon.name].0, "changed", "{r:#}");
    let up = task(&r, "consul up");
    let detail = up["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("restart (") && detail.contains("tls/server.pem"),
        "{up:#}"
    );
    assert_eq!(restarts(), 1);
    assert_eq!(
        read(cdir.join("tls/agent-key.pem")),
        read(&rotated.client_key)
    );
}

/// Without `consul_agent_token` the agents use the management token as their agent token
/// (README "Consul"), on servers and clients alike.
#[test]
fn consul_acl_agents_fall_back_to_the_management_token_without_an_agent_token() {
    let dir = tempfile::tempdir().expect("tmp");
    let planned = plan_consul(
        &case_dir("single").join("inventory.yml"),
        dir.path(),
        &[("consul_acl", "true")],
        &[("consul_management_token", MANAGEMENT)],
    );
    let files = planned_texts(&planned);
    for name in ["promfleet-acl-server.json", "promfleet-acl-client.json"] {
        let (_, text) = files
            .iter()
            .find(|(d, _)| d.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not planned"));
        let v: serde_json::Value = serde_json::from_str(text).expect("json");
        assert_eq!(v["acl"]["tokens"]["agent"], MANAGEMENT, "{name}");
    }
}

/// issue 13 (consul_cluster_check checked only `consul.agents[0]`): with two datacenters,
/// the first monitoring host of each checks its own datacenter's cluster through that
/// datacenter's agent.
#[test]
fn consul_cluster_check_covers_every_datacenter_through_its_own_agent() {
    use promfleet::modules::Action;
    for case in ["multi_single", "multi_spread"] {
        let dir = tempfile::tempdir().expect("tmp");
        let planned = plan_consul(&case_dir(case).join("inventory.yml"), dir.path(), &[], &[]);
        let mut checks: Vec<(String, String)> = planned
            .plan
            .plays
            .iter()
            .flat_map(|p| &p.hosts)
            .flat_map(|hp| {
                hp.steps.iter().filter_map(|s| match &s.action {
                    Some(Action::ConsulClusterCheck(c)) => {
                        Some((hp.host.name.clone(), c.url.clone()))
                    }
                    _ => None,
                })
            })
            .collect();
        checks.sort();
        assert_eq!(
            checks,
            [
                ("mon-fra-1".to_owned(), "http://10.0.0.1:8500".to_owned()),
                ("mon-sha-1".to_owned(), "http://10.1.0.1:8500".to_owned()),
            ],
            "{case}"
        );
    }
}

/// The plan of playbooks/consul.yml for `inv` with `vars` as `-e` and `secrets` in a 0600
/// secrets file (real values, as deploy plans).
fn plan_consul(
    inv: &Path,
    dir: &Path,
    vars: &[(&str, &str)],
    secrets: &[(&str, &str)],
) -> promfleet::cli::deploy::Planned {
    let text: String = secrets
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\"\n"))
        .collect();
    let secrets = secret_file(dir, "secrets.yml", &text);
    plan_of("consul.yml", inv, Some(&secrets), &dir.join("state"), vars)
}

/// The files a plan writes: destination and text.
fn planned_texts(planned: &promfleet::cli::deploy::Planned) -> Vec<(String, String)> {
    planned_files(planned)
        .into_iter()
        .map(|f| (f.dest, String::from_utf8_lossy(&f.content).into_owned()))
        .collect()
}
