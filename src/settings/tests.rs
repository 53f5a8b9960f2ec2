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
