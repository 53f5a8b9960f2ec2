//! The settings layer's precedence and parsing, one table row per source.

use std::path::{Path, PathBuf};

use super::consul::Sources;
use super::{Consul, ConsulOptions, Env, ProjectFile, parse_bool};
use crate::inventory::ConsulSettings;
use crate::playbook::Secrets;
use crate::report::Masker;

/// A secrets file (0600) with these lines, loaded with `env`.
fn secrets(dir: &Path, text: &str, env: &Env) -> Secrets {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("secrets.yml");
    std::fs::write(&p, text).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    Secrets::load_with_env(Some(&p), Masker::default(), env.clone()).expect("secrets")
}

fn resolve(
    env: &Env,
    secrets: &Secrets,
    inv: &ConsulSettings,
    project: &ConsulOptions,
) -> Result<Consul, super::SettingsError> {
    Consul::resolve(&Sources {
        env,
        secrets,
        inventory: inv,
        inventory_dir: Some(Path::new("/inv")),
        project,
        project_dir: Some(Path::new("/proj")),
    })
}

fn inventory_with(key: &str, value: &str) -> ConsulSettings {
    let mut c = ConsulSettings {
        agents: vec!["https://127.0.0.1:8501".into()],
        ..ConsulSettings::default()
    };
    c.options.set(key, value).expect("option");
    c
}

/// Each row sets the CA file in one source and a wrong one in every source below it: the
/// row's source must win, relative paths resolved against the file that named them.
#[test]
fn consul_ca_file_precedence_env_secrets_inventory_project() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut project = ConsulOptions::default();
    project.set("ca_file", "proj.pem").expect("set");
    let rows: [(&str, Env, &str, Option<&str>, PathBuf); 4] = [
        (
            "environment",
            Env::from_pairs([("CONSUL_CACERT", "/env/ca.pem")]),
            "consul_ca_file: sec.pem\n",
            Some("inv.pem"),
            PathBuf::from("/env/ca.pem"),
        ),
        (
            "secrets file",
            Env::default(),
            "consul_ca_file: sec.pem\n",
            Some("inv.pem"),
            dir.path().join("sec.pem"),
        ),
        (
            "inventory",
            Env::default(),
            "other: x\n",
            Some("inv.pem"),
            PathBuf::from("/inv/inv.pem"),
        ),
        (
            "project file",
            Env::default(),
            "other: x\n",
            None,
            PathBuf::from("/proj/proj.pem"),
        ),
    ];
    for (what, env, secrets_text, inv_ca, want) in rows {
        let s = secrets(dir.path(), secrets_text, &env);
        let inv = match inv_ca {
            Some(ca) => inventory_with("ca_file", ca),
            None => ConsulSettings::default(),
        };
        let c = resolve(&env, &s, &inv, &project).expect(what);
        assert_eq!(c.tls().ca_file.as_deref(), Some(want.as_path()), "{what}");
    }
}

/// The token: `CONSUL_HTTP_TOKEN` > `CONSUL_HTTP_TOKEN_FILE` > `PROMFLEET_SECRET_CONSUL_TOKEN`
/// > `consul_token` in the secrets file > the inventory's `token_file`.
#[test]
fn consul_token_precedence() {
    let dir = tempfile::tempdir().expect("tmp");
    let env_file = dir.path().join("env-token");
    std::fs::write(&env_file, "from-env-file\n").expect("write");
    let inv_file = dir.path().join("inv-token");
    std::fs::write(&inv_file, "  from-inventory-file\n").expect("write");
    let env_file_s = env_file.display().to_string();
    let inv = inventory_with("token_file", &inv_file.display().to_string());
    let project = ConsulOptions::default();
    let rows: Vec<(Env, &str, &str)> = vec![
        (
            Env::from_pairs([
                ("CONSUL_HTTP_TOKEN", "from-env"),
                ("CONSUL_HTTP_TOKEN_FILE", env_file_s.as_str()),
            ]),
            "consul_token: from-secrets\n",
            "from-env",
        ),
        (
            Env::from_pairs([
                ("CONSUL_HTTP_TOKEN_FILE", env_file_s.as_str()),
                ("PROMFLEET_SECRET_CONSUL_TOKEN", "from-secret-env"),
            ]),
            "consul_token: from-secrets\n",
            "from-env-file",
        ),
        (
            Env::from_pairs([("PROMFLEET_SECRET_CONSUL_TOKEN", "from-secret-env")]),
            "consul_token: from-secrets\n",
            "from-secret-env",
        ),
        (
            Env::default(),
            "consul_token: from-secrets\n",
            "from-secrets",
        ),
        (Env::default(), "other: x\n", "from-inventory-file"),
    ];
    for (env, text, want) in rows {
        let s = secrets(dir.path(), text, &env);
        let c = resolve(&env, &s, &inv, &project).expect(want);
        assert_eq!(c.token().map(|t| t.value.as_str()), Some(want));
    }
    let s = secrets(dir.path(), "other: x\n", &Env::default());
    let none = resolve(&Env::default(), &s, &ConsulSettings::default(), &project).expect("none");
    assert!(none.token().is_none());
}

/// `CONSUL_HTTP_SSL_VERIFY=false` turns verification off; a value Go's ParseBool refuses is
/// an error here (Consul's CLI would log it and turn verification off).
#[test]
fn consul_http_ssl_verify_reads_go_booleans() {
    let dir = tempfile::tempdir().expect("tmp");
    let project = ConsulOptions::default();
    let inv = inventory_with("ssl_verify", "true");
    for (v, want) in [
        ("false", false),
        ("0", false),
        ("F", false),
        ("TRUE", true),
        ("1", true),
    ] {
        let env = Env::from_pairs([("CONSUL_HTTP_SSL_VERIFY", v)]);
        let s = secrets(dir.path(), "other: x\n", &env);
        let c = resolve(&env, &s, &inv, &project).expect(v);
        assert_eq!(c.tls().verify, want, "{v}");
    }
    let env = Env::from_pairs([("CONSUL_HTTP_SSL_VERIFY", "no")]);
    let s = secrets(dir.path(), "other: x\n", &env);
    let err = resolve(&env, &s, &inv, &project).expect_err("`no` is not a Go boolean");
    assert!(err.to_string().contains("CONSUL_HTTP_SSL_VERIFY"), "{err}");
    assert!(parse_bool("x", "yes").is_err());
}

/// `CONSUL_HTTP_ADDR` only when the inventory names no agent; `CONSUL_HTTP_SSL` makes a
/// scheme-less address https; the port defaults to 8500 as for inventory agents.
#[test]
fn consul_http_addr_fills_in_only_without_inventory_agents() {
    let dir = tempfile::tempdir().expect("tmp");
    let project = ConsulOptions::default();
    let env = Env::from_pairs([
        ("CONSUL_HTTP_ADDR", "10.0.0.5"),
        ("CONSUL_HTTP_SSL", "true"),
    ]);
    let s = secrets(dir.path(), "other: x\n", &env);
    let c = resolve(&env, &s, &ConsulSettings::default(), &project).expect("addr");
    assert_eq!(c.agents(), ["https://10.0.0.5:8500"]);
    let inv = inventory_with("ssl", "false");
    let c = resolve(&env, &s, &inv, &project).expect("inventory wins");
    assert_eq!(c.agents(), ["https://127.0.0.1:8501"]);
}

/// A token bound for a non-loopback agent over plain http is warned about; loopback, https
/// and no token are not.
#[test]
fn consul_token_over_plain_http_to_a_remote_agent_is_warned() {
    let dir = tempfile::tempdir().expect("tmp");
    let project = ConsulOptions::default();
    let env = Env::from_pairs([("CONSUL_HTTP_TOKEN", "t")]);
    let s = secrets(dir.path(), "other: x\n", &env);
    let inv = |agents: &[&str]| ConsulSettings {
        agents: agents.iter().map(|a| (*a).to_owned()).collect(),
        ..ConsulSettings::default()
    };
    let c = resolve(
        &env,
        &s,
        &inv(&[
            "http://10.0.0.5:8500",
            "http://127.0.0.1:8500",
            "http://[::1]:8500",
            "https://10.0.0.6:8501",
        ]),
        &project,
    )
    .expect("resolve");
    assert_eq!(c.token_over_plain_http(), ["http://10.0.0.5:8500"]);
    assert!(c.plain_http_warning().expect("warned").contains("10.0.0.5"));
    let no_token = Env::default();
    let s = secrets(dir.path(), "other: x\n", &no_token);
    let c = resolve(&no_token, &s, &inv(&["http://10.0.0.5:8500"]), &project).expect("resolve");
    assert!(c.plain_http_warning().is_none());
}

/// The project file: paths relative to it, unknown keys named with a suggestion.
#[test]
fn project_file_paths_are_relative_to_it_and_typos_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("promfleet.yml");
    std::fs::write(
        &p,
        "inventory: [inv/a.yml, /abs/b.yml]\nforks: 7\nstate_dir: st\nconsul:\n  ca_file: tls/ca.pem\n  ssl_verify: false\n",
    )
    .expect("write");
    let f = ProjectFile::read(&p).expect("read");
    assert_eq!(
        f.inventory,
        [dir.path().join("inv/a.yml"), PathBuf::from("/abs/b.yml")]
    );
    assert_eq!(f.forks, Some(7));
    assert_eq!(f.state_dir, Some(dir.path().join("st")));
    assert_eq!(f.consul.ca_file, Some(dir.path().join("tls/ca.pem")));
    assert_eq!(f.consul.ssl_verify, Some(false));
    std::fs::write(&p, "invetory: x.yml\n").expect("write");
    let err = ProjectFile::read(&p).expect_err("typo");
    assert!(
        err.to_string().contains("did you mean `inventory`"),
        "{err}"
    );
    std::fs::write(&p, "consul:\n  cafile: x\n").expect("write");
    let err = ProjectFile::read(&p).expect_err("unknown consul key");
    assert!(err.to_string().contains("consul.cafile"), "{err}");
}

/// An Ansible inventory gives the same options as `consul_<key>` variables of `all`.
#[test]
fn ansible_inventory_consul_options_from_all_vars() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("hosts.ini");
    std::fs::write(
        &p,
        "[IDE]\nh1 ansible_host=10.0.1.1\n\n[all:vars]\nconsul_agents=https://10.0.0.1:8501\nconsul_ca_file=tls/ca.pem\nconsul_ssl_verify=false\nconsul_tls_server_name=server.dc1.consul\n",
    )
    .expect("write");
    let inv = crate::inventory::load_sources(&[p]).expect("inventory");
    let o = &inv.consul.options;
    assert_eq!(o.ca_file.as_deref(), Some(Path::new("tls/ca.pem")));
    assert_eq!(o.ssl_verify, Some(false));
    assert_eq!(o.tls_server_name.as_deref(), Some("server.dc1.consul"));
    assert!(
        inv.host("h1")
            .expect("h1")
            .vars
            .get("consul_ca_file")
            .is_none()
    );
}

/// The CA deployed for Prometheus is every CA the clients trust (file and directory joined);
/// the client key's text is masked from then on.
#[test]
fn deployed_consul_ca_joins_file_and_directory_and_key_is_masked() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "CA-FILE").expect("write");
    let cadir = dir.path().join("cas");
    std::fs::create_dir(&cadir).expect("mkdir");
    std::fs::write(cadir.join("b.pem"), "CA-B\n").expect("write");
    std::fs::write(cadir.join("a.pem"), "CA-A\n").expect("write");
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "KEY-TEXT\n").expect("write");
    let masker = Masker::default();
    let mut s = Secrets::load_with_env(None, masker.clone(), Env::default()).expect("secrets");
    s.set_consul_tls_files(
        [("ca", ca), ("ca_dir", cadir), ("key", key)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    );
    assert_eq!(s.consul_tls_pem("ca").expect("ca"), "CA-FILE\nCA-A\nCA-B\n");
    assert!(s.consul_tls_pem("cert").is_err());
    assert_eq!(s.consul_tls_pem("key").expect("key"), "KEY-TEXT\n");
    assert!(!masker.mask("shown: KEY-TEXT").contains("KEY-TEXT"));
}

mod endpoints {
    use std::path::{Path, PathBuf};

    use serde_json::json;

    use super::secrets;
    use crate::inventory::Vars;
    use crate::settings::endpoints::{ProjectEndpoints, Scheme, Sources};
    use crate::settings::{Endpoints, Env, SettingsError};

    fn resolve(
        secrets: &crate::playbook::Secrets,
        vars: &Vars,
        project: &ProjectEndpoints,
    ) -> Result<Endpoints, SettingsError> {
        resolve_in(Path::new("/"), secrets, vars, project)
    }

    /// The inventory file is in `<base>/inv`, the project file in `<base>/proj`.
    fn resolve_in(
        base: &Path,
        secrets: &crate::playbook::Secrets,
        vars: &Vars,
        project: &ProjectEndpoints,
    ) -> Result<Endpoints, SettingsError> {
        Endpoints::resolve(&Sources {
            secrets,
            inventory_vars: vars,
            inventory_dir: Some(&base.join("inv")),
            project,
            project_dir: Some(&base.join("proj")),
        })
    }

    /// A CA certificate PEM (the client reads its CA file when it is built).
    fn ca_pem(path: &Path) {
        let ca = testkit::tls::TestCa::new("settings test CA").expect("ca");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(path, ca.ca_pem()).expect("write");
    }

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect()
    }

    /// Each row sets the CA file and the scheme in one source and other values in every
    /// source below it: the row's source wins, its relative path against its own file.
    #[test]
    fn prometheus_settings_precedence_secrets_inventory_project() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut project = ProjectEndpoints::default();
        project.prometheus.set("ca_file", "proj.pem").expect("set");
        project.prometheus.set("scheme", "http").expect("set");
        let inv = vars(&[
            ("prometheus_ca_file", "inv.pem"),
            ("prometheus_scheme", "https"),
        ]);
        let d = dir.path();
        let rows: [(&str, &str, Vars, PathBuf, Scheme); 3] = [
            (
                "secrets",
                "prometheus_ca_file: sec.pem\nprometheus_scheme: http\n",
                inv.clone(),
                d.join("sec.pem"),
                Scheme::Http,
            ),
            (
                "inventory",
                "",
                inv.clone(),
                d.join("inv/inv.pem"),
                Scheme::Https,
            ),
            (
                "project",
                "",
                Vars::new(),
                d.join("proj/proj.pem"),
                Scheme::Http,
            ),
        ];
        for (_, _, _, ca, _) in &rows {
            ca_pem(ca);
        }
        for (row, sec, vars, ca, scheme) in rows {
            let s = secrets(d, sec, &Env::default());
            let e = resolve_in(d, &s, &vars, &project).expect(row);
            assert_eq!(e.prometheus.tls().ca_file.as_ref(), Some(&ca), "{row}");
            assert_eq!(e.prometheus.scheme(), scheme, "{row}");
            // The other service is untouched by Prometheus' settings.
            assert_eq!(e.alertmanager.scheme(), Scheme::Http, "{row}");
            assert!(e.alertmanager.tls().is_default(), "{row}");
        }
    }

    #[test]
    fn password_outside_the_secrets_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = secrets(dir.path(), "", &Env::default());
        let inv = vars(&[
            ("alertmanager_basic_auth_username", "u"),
            ("alertmanager_basic_auth_password", "ARGV-pw-1"),
        ]);
        let e = resolve(&s, &inv, &ProjectEndpoints::default())
            .expect_err("a password in the inventory")
            .to_string();
        assert!(e.contains("alertmanager_basic_auth_password"), "{e}");
        assert!(e.contains("read from the secrets only"), "{e}");
        assert!(!e.contains("ARGV-pw-1"), "{e}");
        let mut project = ProjectEndpoints::default();
        assert!(project.prometheus.set("basic_auth_password", "x").is_err());
    }

    #[test]
    fn user_and_password_come_as_a_pair() {
        let dir = tempfile::tempdir().expect("tmp");
        let none = ProjectEndpoints::default();
        let s = secrets(dir.path(), "", &Env::default());
        let user_only = vars(&[("prometheus_basic_auth_username", "u")]);
        let e = resolve(&s, &user_only, &none).expect_err("no password");
        assert!(
            e.to_string()
                .contains("PROMFLEET_SECRET_PROMETHEUS_BASIC_AUTH_PASSWORD"),
            "{e}"
        );
        let s = secrets(
            dir.path(),
            "prometheus_basic_auth_password: pw-77\n",
            &Env::default(),
        );
        let e = resolve(&s, &Vars::new(), &none).expect_err("no user");
        assert!(
            e.to_string().contains("prometheus_basic_auth_username"),
            "{e}"
        );
    }

    /// The password reaches the server as a basic-auth header on every request of the
    /// service's client (and only that service's), and is registered with the masker in
    /// both forms.
    #[tokio::test]
    async fn the_client_sends_basic_auth_and_the_masker_knows_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tmp");
        let env = Env::from_pairs([(
            "PROMFLEET_SECRET_PROMETHEUS_BASIC_AUTH_PASSWORD",
            "pw-env-5",
        )]);
        let s = secrets(dir.path(), "", &env);
        let e = resolve(
            &s,
            &vars(&[("prometheus_basic_auth_username", "alice")]),
            &ProjectEndpoints::default(),
        )
        .expect("resolve");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/-/ready", l.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let mut heads = Vec::new();
            for _ in 0..2 {
                let (mut c, _) = l.accept().await.expect("accept");
                let mut buf = vec![0u8; 4096];
                let n = c.read(&mut buf).await.expect("read");
                heads.push(String::from_utf8_lossy(&buf[..n]).to_lowercase());
                let _ = c
                    .write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            }
            heads
        });
        for ep in [&e.prometheus, &e.alertmanager] {
            let r = ep.client().get(&url).send().await.expect("send");
            assert_eq!(r.status().as_u16(), 401);
        }
        let heads = server.await.expect("server");
        // base64("alice:pw-env-5")
        assert!(
            heads[0].contains("authorization: basic ywxpy2u6chctzw52ltu="),
            "{}",
            heads[0]
        );
        assert!(!heads[1].contains("authorization"), "{}", heads[1]);
        let masked = s.masker().mask("pw-env-5 YWxpY2U6cHctZW52LTU=");
        assert!(
            !masked.contains("pw-env-5") && !masked.contains("YWxpY2U6"),
            "{masked}"
        );
        let m = e.prometheus.unauthorized(&url);
        assert!(
            m.contains(&url) && m.contains("refused user `alice`"),
            "{m}"
        );
        assert!(
            m.contains("PROMFLEET_SECRET_PROMETHEUS_BASIC_AUTH_PASSWORD"),
            "{m}"
        );
        let m = e.alertmanager.unauthorized(&url);
        assert!(m.contains("none are set"), "{m}");
    }
}

/// The cluster agents' certificates and keys (`consul_tls`) resolve like the other Consul
/// settings (secrets over inventory over project file, paths relative to the file naming
/// them), reach the templates' `consul_tls(part=…)` through `tls_files`, and the agents' keys
/// are masked like the fleet's client key.
#[test]
fn consul_cluster_certificates_resolve_like_the_other_settings_and_keys_are_masked() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut project = ConsulOptions::default();
    project.set("agent_cert", "agent.pem").expect("set");
    project.set("agent_key", "agent-key.pem").expect("set");
    let s = secrets(
        dir.path(),
        "consul_server_key: server-key.pem\n",
        &Env::default(),
    );
    let mut inv = inventory_with("server_cert", "server.pem");
    inv.options.set("server_key", "ignored.pem").expect("set");
    let c = resolve(&Env::default(), &s, &inv, &project).expect("resolve");
    let files = c.tls_files();
    let want = [
        ("server_cert", PathBuf::from("/inv/server.pem")),
        ("server_key", dir.path().join("server-key.pem")),
        ("agent_cert", PathBuf::from("/proj/agent.pem")),
        ("agent_key", PathBuf::from("/proj/agent-key.pem")),
    ];
    for (part, path) in &want {
        assert_eq!(files.get(*part), Some(path), "{part}");
    }
    assert!(!files.contains_key("ca"), "{files:?}");

    std::fs::write(dir.path().join("server-key.pem"), "SERVER-KEY-TEXT\n").expect("write");
    let masker = Masker::default();
    let mut s2 = Secrets::load_with_env(None, masker.clone(), Env::default()).expect("secrets");
    s2.set_consul_tls_files(files);
    assert_eq!(
        s2.consul_tls_pem("server_key").expect("key"),
        "SERVER-KEY-TEXT\n"
    );
    assert!(
        !masker
            .mask("shown: SERVER-KEY-TEXT")
            .contains("SERVER-KEY-TEXT")
    );
    let missing = s2.consul_tls_pem("agent_cert").expect_err("no such file");
    assert!(missing.to_string().contains("agent.pem"), "{missing}");
}
