//! Self-tests of the test rig: real OpenSSH clients against the fleet's real sshd hosts, the
//! compose stand-in over SSH, the ssh-agent and a network-namespace host.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use testkit::agent::SshAgent;
use testkit::netns::NetnsHost;
use testkit::sshd::{Fleet, KeyKind, is_root};
use testkit::standin;

/// `/`'s propagation as findmnt reports it: `shared`, `slave` or `private`.
fn root_propagation() -> &'static str {
    let out = Command::new("findmnt")
        .args(["-no", "PROPAGATION", "/"])
        .output()
        .unwrap();
    match String::from_utf8_lossy(&out.stdout).trim() {
        p if p.starts_with("shared") => "shared",
        p if p.starts_with("slave") => "slave",
        _ => "private",
    }
}

/// Held by the tests that read this machine's `/` propagation and the one that changes it.
static MACHINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn machine() -> std::sync::MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The rig needs root (users, sshd on privileged setup, netns); say why a test did nothing.
fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIP {test}: needs root (creates users, runs sshd, network namespaces)");
    true
}

fn ssh(fleet: &Fleet, host: &str, remote: &str) -> Output {
    fleet
        .ssh_command(host)
        .unwrap()
        .arg(remote)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ssh failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// GET http://addr/path with std only; returns the body of a 200.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(std::io::Error::other(format!("bad response: {head}")));
    }
    Ok(body.to_string())
}

fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().to_string();
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| e.file_name().to_string_lossy() != me)
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&needle).then_some(cmd)
        })
        .collect()
}

#[test]
fn every_host_of_a_12_host_fleet_answers_strict_ssh() {
    if skip_unless_root("every_host_of_a_12_host_fleet_answers_strict_ssh") {
        return;
    }
    let fleet = Fleet::builder()
        .hosts(12)
        .groups(&["IDE", "Stage", "Pet"])
        .start()
        .unwrap();
    let children: Vec<_> = fleet
        .hosts()
        .map(|h| {
            let child = fleet
                .ssh_command(&h.name)
                .unwrap()
                .arg("echo $(id -un) ${SSH_CONNECTION##* }; set -- $SSH_CONNECTION; echo $3")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (h.clone(), child)
        })
        .collect();
    assert_eq!(children.len(), 12);
    for (h, child) in children {
        let out = child.wait_with_output().unwrap();
        let text = ok(&out);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(format!("pftest {}", fleet.port()).as_str()),
            "{}",
            h.name
        );
        assert_eq!(
            lines.next(),
            Some(h.ip.to_string().as_str()),
            "{} answers on its own address",
            h.name
        );
    }
    let groups: Vec<&str> = fleet.hosts().map(|h| h.group.as_str()).collect();
    assert_eq!(&groups[..4], ["IDE", "Stage", "Pet", "IDE"]);
    let ips: Vec<String> = fleet.hosts().map(|h| h.ip.to_string()).collect();
    let mut unique = ips.clone();
    unique.dedup();
    assert_eq!(unique.len(), 12);

    // become: pftest has passwordless sudo, pfnosudo has none.
    assert_eq!(ok(&ssh(&fleet, "host001", "sudo -n id -u")), "0");
    let nosudo = fleet
        .ssh_command_as("host001", fleet.nosudo_user(), &[])
        .unwrap()
        .arg("sudo -n id -u")
        .output()
        .unwrap();
    assert!(
        !nosudo.status.success(),
        "pfnosudo must not sudo: {}",
        stderr(&nosudo)
    );
}

#[test]
fn inventory_has_every_host_under_its_group_with_sandboxed_vars() {
    if skip_unless_root("inventory_has_every_host_under_its_group_with_sandboxed_vars") {
        return;
    }
    let _machine = machine();
    let fleet = Fleet::builder()
        .hosts(4)
        .groups(&["IDE", "Stage"])
        .monitoring_host(true)
        .consul_agents(["http://127.0.0.1:8500"])
        .start()
        .unwrap();
    let y = fleet.inventory_yaml(&[("env", "test")]);
    let root = fleet.root().display().to_string();
    let port = fleet.port();
    let key = fleet.client_key().display().to_string();
    let compose = fleet.compose_command().display().to_string();
    let h1 = fleet.host("host001").unwrap();
    assert!(
        y.starts_with(&format!(
            "ssh: {{ user: pftest, port: {port}, key: {key} }}\n"
        )),
        "{y}"
    );
    assert!(
        y.contains("consul: { agents: [\"http://127.0.0.1:8500\"] }\n"),
        "{y}"
    );
    // No registry probe from test hosts (it would ask gcr.io / Docker Hub).
    assert!(
        y.contains("vars: { preflight_registry_timeout: 0, env: test }\n"),
        "{y}"
    );
    // The machine's `/` propagation as findmnt reports it, stated as an operator would.
    let mount = match root_propagation() {
        "shared" | "slave" => "ro,rslave",
        _ => "ro",
    };
    let mount = if mount.contains(',') {
        format!("\"{mount}\"")
    } else {
        mount.to_string()
    };
    // Privileged cAdvisor only where the engine's bounding set is complete (the VM's lacks
    // CAP_SYS_RESOURCE): as preflight's `capabilities` check decides it.
    let cap = |path: &str, key: &str| -> Option<String> {
        std::fs::read_to_string(path)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    let dockerd = std::fs::read_dir("/proc").ok().and_then(|rd| {
        rd.flatten().find_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (comm.trim() == "dockerd").then(|| e.path().join("status"))
        })
    });
    let bounding = dockerd
        .and_then(|p| cap(p.to_str()?, "CapBnd:"))
        .or_else(|| cap("/proc/self/status", "CapBnd:"))
        .and_then(|h| u64::from_str_radix(&h, 16).ok());
    let last: Option<u32> = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let privileged = match (bounding, last) {
        (Some(b), Some(l)) => b.count_ones() > l,
        _ => true,
    };
    // cAdvisor's /dev/disk mount only where the machine has /dev/disk (preflight drops it
    // otherwise).
    let dev_disk = Path::new("/dev/disk").exists();
    assert!(
        y.contains(&format!(
            "groups:\n  IDE:\n    hosts:\n      - {{ name: host001, ip: {}, vars: {{ deploy_dir: {root}/host001/exporter-deploy, compose_command: {compose}, node_exporter_host_mount: {mount}, cadvisor_privileged: {privileged}, cadvisor_dev_disk: {dev_disk} }} }}\n",
            h1.ip
        )),
        "{y}"
    );
    assert!(
        y.contains("  Stage:\n    hosts:\n      - { name: host002,"),
        "{y}"
    );
    let mon = fleet.monitoring_host().unwrap();
    assert!(
        y.contains(&format!(
            "monitoring:\n  hosts:\n    - {{ name: mon01, ip: {},",
            mon.ip
        )),
        "{y}"
    );
    assert_eq!(fleet.hosts().count(), 4);
    // The monitoring host is a real sshd host too.
    assert_eq!(ok(&ssh(&fleet, "mon01", "id -un")), "pftest");
    // The YAML means what promfleet expects (parsed by PyYAML, which docker-compose ships).
    let parsed = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(y.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(v["ssh"]["port"], port);
    assert_eq!(v["ssh"]["user"], "pftest");
    assert_eq!(v["consul"]["agents"][0], "http://127.0.0.1:8500");
    assert_eq!(v["groups"]["Stage"]["hosts"][1]["name"], "host004");
    assert_eq!(v["groups"]["IDE"]["hosts"][0]["ip"], h1.ip.to_string());
    assert_eq!(
        v["groups"]["IDE"]["hosts"][0]["vars"]["deploy_dir"],
        format!("{root}/host001/exporter-deploy")
    );
    assert_eq!(v["monitoring"]["hosts"][0]["name"], "mon01");
    // Sandboxes belong to the login user, so deploys need no sudo.
    ok(&ssh(
        &fleet,
        "host003",
        &format!(
            "mkdir -p {root}/host003/exporter-deploy && touch {root}/host003/exporter-deploy/x"
        ),
    ));
}

#[test]
fn stop_refuses_connections_and_start_brings_the_host_back() {
    if skip_unless_root("stop_refuses_connections_and_start_brings_the_host_back") {
        return;
    }
    let fleet = Fleet::builder().hosts(3).start().unwrap();
    fleet.stop("host002").unwrap();
    let addr = fleet.addr("host002").unwrap();
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let out = ssh(&fleet, "host002", "true");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Connection refused"),
        "{}",
        stderr(&out)
    );
    ok(&ssh(&fleet, "host001", "true"));
    fleet.start("host002").unwrap();
    ok(&ssh(&fleet, "host002", "true"));
}

#[test]
fn rotated_host_key_fails_strict_checking() {
    if skip_unless_root("rotated_host_key_fails_strict_checking") {
        return;
    }
    let fleet = Fleet::builder().hosts(2).start().unwrap();
    let before = fleet.host_key_line("host001").unwrap();
    fleet.rotate_host_key("host001").unwrap();
    assert_ne!(before, fleet.host_key_line("host001").unwrap());
    let out = ssh(&fleet, "host001", "true");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        stderr(&out)
    );
    ok(&ssh(&fleet, "host002", "true"));
}

#[test]
fn silenced_host_accepts_tcp_but_ssh_times_out() {
    if skip_unless_root("silenced_host_accepts_tcp_but_ssh_times_out") {
        return;
    }
    let fleet = Fleet::builder().hosts(2).start().unwrap();
    fleet.silence("host001").unwrap();
    let addr = fleet.addr("host001").unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("TCP still accepted");
    assert!(
        testkit::sshd::banner(addr).is_err(),
        "a silenced host sends no banner"
    );
    let t = Instant::now();
    let out = fleet
        .ssh_command_as("host001", fleet.user(), &["-o", "ConnectTimeout=2"])
        .unwrap()
        .arg("true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "failed too early: {:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    fleet.unsilence("host001").unwrap();
    ok(&ssh(&fleet, "host001", "true"));
}

#[test]
fn agent_and_other_key_types_authenticate() {
    if skip_unless_root("agent_and_other_key_types_authenticate") {
        return;
    }
    let fleet = Fleet::builder().hosts(1).start().unwrap();
    let rsa = fleet
        .make_client_key("id_rsa", KeyKind::Rsa, "", true)
        .unwrap();
    let ecdsa = fleet
        .make_client_key("id_ecdsa", KeyKind::Ecdsa, "", true)
        .unwrap();
    let enc = fleet
        .make_client_key("id_enc", KeyKind::Ed25519, "s3cret pass", true)
        .unwrap();
    let stranger = fleet
        .make_client_key("id_stranger", KeyKind::Ed25519, "", false)
        .unwrap();
    let ip = fleet.host("host001").unwrap().ip;
    let with_key = |key: &Path| {
        Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                fleet.known_hosts().display()
            ))
            .arg("-i")
            .arg(key)
            .args(["-p", &fleet.port().to_string()])
            .arg(format!("pftest@{ip}"))
            .arg("true")
            .output()
            .unwrap()
    };
    ok(&with_key(&rsa));
    ok(&with_key(&ecdsa));
    assert!(
        !with_key(&stranger).status.success(),
        "unauthorized key must be refused"
    );
    assert!(
        !with_key(&enc).status.success(),
        "encrypted key without passphrase in batch mode"
    );

    let agent = SshAgent::start(fleet.root()).unwrap();
    agent.add_with_passphrase(&enc, "s3cret pass").unwrap();
    assert_eq!(agent.count().unwrap(), 1);
    let via_agent = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("IdentityAgent={}", agent.socket().display()))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            fleet.known_hosts().display()
        ))
        .args(["-p", &fleet.port().to_string()])
        .arg(format!("pftest@{ip}"))
        .arg("id -un")
        .env("HOME", fleet.root()) // no ~/.ssh/id_* of the machine may help
        .output()
        .unwrap();
    assert_eq!(ok(&via_agent), "pftest");
}

#[test]
fn compose_standin_runs_exporters_over_ssh() {
    if skip_unless_root("compose_standin_runs_exporters_over_ssh") {
        return;
    }
    let fleet = Fleet::builder().hosts(2).start().unwrap();
    let h = fleet.host("host002").unwrap().clone();
    let deploy = h.deploy_dir();
    let compose = fleet.compose_command().display().to_string();
    let file = "version: '3.7'\nservices:\n  node-exporter:\n    image: bitnami/node-exporter:latest\n    ports: [\"9100:9100\"]\n  cadvisor-exporter:\n    image: gcr.io/cadvisor/cadvisor:v0.45.0\n    ports: [\"9105:8080\"]\n";
    ok(&ssh(
        &fleet,
        &h.name,
        &format!(
            "mkdir -p {d} && cat > {d}/docker-compose.yml <<'EOF'\n{file}EOF",
            d = deploy.display()
        ),
    ));

    let up = format!(
        "cd {} && {compose} up -d --remove-orphans",
        deploy.display()
    );
    ok(&ssh(&fleet, &h.name, &up));
    let node = http_get(SocketAddr::from((h.ip, 9100)), "/metrics").unwrap();
    assert!(node.contains("node_cpu_seconds_total"), "{node}");
    let cadv = http_get(SocketAddr::from((h.ip, 9105)), "/metrics").unwrap();
    assert!(
        cadv.contains("cadvisor_version_info{")
            && cadv.contains("container_cpu_usage_seconds_total{"),
        "{cadv}"
    );
    let ps = format!(
        "{compose} -f {}/docker-compose.yml ps --services --filter status=running",
        deploy.display()
    );
    let mut running: Vec<String> = ok(&ssh(&fleet, &h.name, &ps))
        .lines()
        .map(String::from)
        .collect();
    running.sort();
    assert_eq!(running, ["cadvisor-exporter", "node-exporter"]);

    // Unchanged file: no restart; changed file: restart.
    ok(&ssh(&fleet, &h.name, &up));
    assert_eq!(standin::starts(&deploy), 1);
    ok(&ssh(
        &fleet,
        &h.name,
        &format!(
            "echo '# changed' >> {}/docker-compose.yml",
            deploy.display()
        ),
    ));
    ok(&ssh(&fleet, &h.name, &up));
    assert_eq!(standin::starts(&deploy), 2);

    // Faults: an invalid file and an injected failure make `up` fail with a message.
    standin::fail_up(&deploy, "boom: injected").unwrap();
    let out = ssh(&fleet, &h.name, &up);
    assert!(
        !out.status.success() && stderr(&out).contains("boom: injected"),
        "{}",
        stderr(&out)
    );
    standin::clear_fail_up(&deploy).unwrap();
    ok(&ssh(
        &fleet,
        &h.name,
        &format!("echo 'services: [' > {}/bad.yml", deploy.display()),
    ));
    let out = ssh(
        &fleet,
        &h.name,
        &format!("{compose} -f {}/bad.yml up -d", deploy.display()),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("ParserError") || stderr(&out).contains("invalid"),
        "{}",
        stderr(&out)
    );

    ok(&ssh(
        &fleet,
        &h.name,
        &format!("{compose} -f {}/docker-compose.yml down", deploy.display()),
    ));
    assert_eq!(ok(&ssh(&fleet, &h.name, &ps)), "");
    assert!(standin::running_services(&deploy).is_empty());
    assert!(
        TcpStream::connect_timeout(&SocketAddr::from((h.ip, 9100)), Duration::from_secs(1))
            .is_err()
    );
    let calls = standin::calls(&deploy);
    assert!(calls.contains(&"down".to_string()), "{calls:?}");
}

#[test]
fn drop_kills_sshd_and_exporters() {
    if skip_unless_root("drop_kills_sshd_and_exporters") {
        return;
    }
    let fleet = Fleet::builder().hosts(2).start().unwrap();
    let root = fleet.root().to_path_buf();
    let h = fleet.host("host001").unwrap().clone();
    let compose = fleet.compose_command().display().to_string();
    let d = h.deploy_dir();
    let file = "services:\n  node-exporter:\n    image: x\n  cadvisor-exporter:\n    image: y\n";
    // Under `become` (sudo) the stand-in still serves the host's own address.
    ok(&ssh(
        &fleet,
        &h.name,
        &format!(
            "mkdir -p {d} && printf '{file}' > {d}/docker-compose.yml && cd {d} && sudo -n {compose} up -d",
            d = d.display()
        ),
    ));
    http_get(SocketAddr::from((h.ip, 9105)), "/metrics").unwrap();
    assert_eq!(
        standin::running_services(&d),
        ["cadvisor-exporter", "node-exporter"]
    );
    assert!(
        processes_mentioning(&root).len() >= 4,
        "2 sshd + 2 exporters"
    );
    drop(fleet);
    assert_eq!(processes_mentioning(&root), Vec::<String>::new());
    assert!(!root.exists());
}

#[test]
fn shared_sshd_serves_hundreds_of_addresses() {
    if skip_unless_root("shared_sshd_serves_hundreds_of_addresses") {
        return;
    }
    let fleet = Fleet::builder()
        .hosts(300)
        .shared_sshd(true)
        .start()
        .unwrap();
    assert_eq!(fleet.hosts().count(), 300);
    assert_eq!(fleet.host("host001").unwrap().ip.octets()[3], 2);
    for name in ["host001", "host150", "host251", "host300"] {
        let h = fleet.host(name).unwrap();
        let out = ok(&ssh(&fleet, name, "set -- $SSH_CONNECTION; echo $3"));
        assert_eq!(out, h.ip.to_string());
    }
    assert_ne!(
        fleet.host("host251").unwrap().ip.octets()[2],
        fleet.host("host001").unwrap().ip.octets()[2]
    );
    assert!(
        fleet.stop("host001").is_err(),
        "per-host stop is unsupported with a shared sshd"
    );
}

#[test]
fn netns_host_is_reachable_then_cut_then_unrouted() {
    if skip_unless_root("netns_host_is_reachable_then_cut_then_unrouted") {
        return;
    }
    let fleet = Fleet::builder().hosts(1).start().unwrap();
    let mut ns = NetnsHost::start(&fleet, "nshost01", "Pet").unwrap();
    let ip = ns.ip();
    let ssh_ns = |timeout: u32| {
        Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                &format!("ConnectTimeout={timeout}"),
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                fleet.known_hosts().display()
            ))
            .arg("-i")
            .arg(fleet.client_key())
            .args(["-p", &fleet.port().to_string()])
            .arg(format!("pftest@{ip}"))
            .arg("set -- $SSH_CONNECTION; echo $3")
            .output()
            .unwrap()
    };
    assert_eq!(ok(&ssh_ns(5)), ip.to_string());

    ns.cut().unwrap();
    let t = Instant::now();
    let out = ssh_ns(2);
    assert!(!out.status.success());
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?} {}",
        t.elapsed(),
        stderr(&out)
    );
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));

    ns.restore().unwrap();
    assert_eq!(ok(&ssh_ns(5)), ip.to_string());

    ns.link_down().unwrap();
    let out = ssh_ns(5);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No route to host") || stderr(&out).contains("unreachable"),
        "{}",
        stderr(&out)
    );
    ns.link_up().unwrap();

    let name = ns.netns().to_string();
    drop(ns);
    let list = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!list.contains(&name), "{list}");
}

/// Sizing check for benchmarks (slow; run with `--ignored`): a 1000-host shared fleet where 100
/// hosts run the stand-in with fake node exporters.
#[test]
#[ignore]
fn big_shared_fleet_runs_fake_exporters() {
    if skip_unless_root("big_shared_fleet_runs_fake_exporters") {
        return;
    }
    let t = Instant::now();
    let fleet = Fleet::builder()
        .hosts(1000)
        .shared_sshd(true)
        .fake_node_exporter(true)
        .start()
        .unwrap();
    eprintln!("1000-host fleet started in {:?}", t.elapsed());
    let compose = fleet.compose_command().display().to_string();
    let file = "services:\n  node-exporter:\n    image: x\n    ports: [\"9100:9100\"]\n  cadvisor-exporter:\n    image: y\n    ports: [\"9105:8080\"]\n";
    let t = Instant::now();
    let hosts: Vec<_> = fleet.hosts().step_by(10).cloned().collect();
    for chunk in hosts.chunks(20) {
        let children: Vec<_> = chunk
            .iter()
            .map(|h| {
                let d = h.deploy_dir().display().to_string();
                fleet
                    .ssh_command(&h.name)
                    .unwrap()
                    .arg(format!("mkdir -p {d} && printf '{file}' > {d}/docker-compose.yml && cd {d} && {compose} up -d"))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            ok(&c.wait_with_output().unwrap());
        }
    }
    eprintln!("stand-in up on {} hosts in {:?}", hosts.len(), t.elapsed());
    for h in &hosts {
        let body = http_get(SocketAddr::from((h.ip, 9100)), "/metrics").unwrap();
        assert!(body.contains("node_cpu_seconds_total"));
        let body = http_get(SocketAddr::from((h.ip, 9105)), "/metrics").unwrap();
        assert!(body.contains("cadvisor_version_info"));
    }
    let running = processes_mentioning(fleet.root())
        .iter()
        .filter(|c| c.contains("fake-cadvisor"))
        .count();
    eprintln!("{running} fake exporters running");
    assert_eq!(running, 2 * hosts.len());
}

/// Cost of one OpenSSH login + command on this machine (run with `--ignored`).
#[test]
#[ignore]
fn ssh_round_trip_cost() {
    if skip_unless_root("ssh_round_trip_cost") {
        return;
    }
    let fleet = Fleet::builder().hosts(1).start().unwrap();
    let t = Instant::now();
    for _ in 0..10 {
        ok(&ssh(&fleet, "host001", "true"));
    }
    eprintln!("ssh true: {:?} each", t.elapsed() / 10);
}

/// Regression (CI flakes, then a benchmark run: "Cannot start service node-exporter (it
/// exited): fake-cadvisor: listening on 127.0.0.95:9100"): `up` judged a service it had just
/// started by `alive`, whose command-line check fails until the forked shell has exec'd the
/// service (its command line is still the stand-in's). Here the service's log is a FIFO, so the
/// forked shell blocks opening it — that window, held open — until the test reads the FIFO.
/// `up` must wait (bounded by its own deadline) instead of reporting the service exited.
#[test]
fn standin_up_took_a_starting_service_for_an_exited_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let project = dir.path().join("proj");
    let state = project.join(".standin");
    std::fs::create_dir_all(&state).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // Already in `docker-compose config`'s normalized form: the validator is `cat`.
    std::fs::write(
        project.join("docker-compose.yml"),
        format!(
            "services:\n  node-exporter:\n    image: prom/node-exporter\n    ports:\n    - published: {port}\n      target: 9100\n"
        ),
    )
    .unwrap();
    let validator = dir.path().join("config-cat");
    std::fs::write(&validator, "#!/bin/sh\nexec cat \"$2\"\n").unwrap();
    std::fs::set_permissions(
        &validator,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let log = state.join("node-exporter.log");
    let c = std::ffi::CString::new(log.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let mut up = Command::new("sh")
        .arg(standin::compose_standin_path())
        .arg("-f")
        .arg(project.join("docker-compose.yml"))
        .args(["up", "-d"])
        .env("STANDIN_IP", "127.0.0.1")
        .env("STANDIN_NODE_EXPORTER", "fake")
        .env("STANDIN_FAKE_EXPORTER", standin::fake_exporter_path())
        .env("STANDIN_REAL_COMPOSE", &validator)
        .env("STANDIN_START_SECS", "30")
        .env_remove("SSH_CONNECTION")
        .env_remove("STANDIN_CACHE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("compose-standin");
    // With the defect, `up` gives up at its first poll, while the service's shell is blocked.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        if up.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let early = up.try_wait().expect("wait");
    // Let the service's shell go on: read its log.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut s));
        s
    });
    // `up` ends by its own deadline (STANDIN_START_SECS) at the latest.
    let t1 = Instant::now();
    while up.try_wait().expect("wait").is_none() && t1.elapsed() < Duration::from_secs(45) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every process of the project names its dir (the service's shell, before its exec, the
    // stand-in's own command line with the compose file): kill them all, so the FIFO's writers
    // close and the reader ends.
    let t0 = Instant::now();
    while !processes_mentioning(&project).is_empty() && t0.elapsed() < Duration::from_secs(10) {
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(project.to_string_lossy().as_ref())
            .status();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = up.kill();
    let out = up.wait_with_output().expect("up");
    let log_text = reader.join().unwrap_or_default();
    assert!(
        early.is_none() && out.status.success(),
        "`up` did not wait for the starting service (ended within 3 s: {early:?}; then {:?}): {}\n{}\nservice log: {log_text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        log_text.contains(&format!("listening on 127.0.0.1:{port}")),
        "{log_text}"
    );
}

/// A fleet's inventories read the machine each time they were written: when another test
/// changed it in between (the real-Docker test makes `/` shared for its duration), the second
/// inventory stated another `node_exporter_host_mount` and every host's compose file changed
/// (seen as `preflight::a_rerun_probed_every_unchanged_host_in_full` probing the one host it
/// had left alone). The machine is now read once per fleet. Here `/`'s propagation is flipped
/// between two inventories of one fleet, and restored.
#[test]
fn a_fleets_inventories_saw_the_machine_change_between_them() {
    if skip_unless_root("a_fleets_inventories_saw_the_machine_change_between_them") {
        return;
    }
    let _machine = machine();
    let fleet = Fleet::builder().hosts(1).start().unwrap();
    let before = root_propagation();
    let first = fleet.inventory_yaml(&[]);
    let (flip, back) = match before {
        "private" => ("--make-shared", "--make-private"),
        "slave" => ("--make-private", "--make-slave"),
        _ => ("--make-private", "--make-shared"),
    };
    let st = Command::new("mount").args([flip, "/"]).status().unwrap();
    assert!(st.success(), "mount {flip} /");
    let changed = testkit::sshd::MachineVars::read();
    let second = fleet.inventory_yaml(&[]);
    let st = Command::new("mount").args([back, "/"]).status().unwrap();
    assert!(st.success(), "mount {back} / (restore)");
    assert_eq!(root_propagation(), before, "restored");
    // The flip did change what the machine says, so the test can tell.
    assert_ne!(changed.host_mount, fleet.machine_vars().host_mount);
    assert_eq!(first, second);
}
