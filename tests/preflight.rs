//! Preflight on real sshd hosts, for every condition this machine can make real: a process
//! holding :9100, a login user outside the `docker` group, `/` shared vs private (each host's
//! sshd in a mount namespace of its own), compose v1 found by detection, compose v2 only (a
//! Docker CLI plugin of the login user, no `docker-compose` on the PATH) found and used by
//! deploy, a deploy directory on a full filesystem (a tiny tmpfs), and the registry of an image
//! to pull answering (a loopback double) or not (a closed port). SELinux, cgroup v1 and
//! rootless Docker are unit tests of the fact parsers on recorded outputs.
//! Then the done-when: 12 hosts, 4 broken 4 ways; `exporters` completes the 8, names
//! the 4 with reason and fix without touching them, and completes them once repaired.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use testkit::sshd::Fleet;

use crate::support::*;

/// What the test needs beyond root: the tools the conditions are made with.
fn ready() -> bool {
    if !require_root() {
        return false;
    }
    for tool in ["unshare", "docker", "docker-compose", "ss", "mount"] {
        if !have(tool) {
            eprintln!("SKIPPED: needs {tool}");
            return false;
        }
    }
    true
}

/// A tmpfs of `size` mounted at `dir` (owned by the login user) and filled up; unmounted on drop.
struct FullFs {
    dir: PathBuf,
}

impl FullFs {
    fn mount(dir: &Path, size: &str, uid: u32) -> FullFs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},uid={uid},mode=0755"))
            .arg("tmpfs")
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        let fs = FullFs {
            dir: dir.to_path_buf(),
        };
        // dd stops at ENOSPC: the filesystem is full.
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", fs.filler().display()))
            .arg("bs=64k")
            .stderr(std::process::Stdio::null())
            .status();
        fs
    }
    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }
}

impl Drop for FullFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn tool_output(program: &str, args: &[&str]) -> String {
    let o = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn by_host(doc: &Value) -> std::collections::BTreeMap<String, Value> {
    doc["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| (h["host"].as_str().unwrap().to_string(), h.clone()))
        .collect()
}

fn blockers(h: &Value) -> String {
    h["blockers"].to_string()
}

#[test]
fn preflight_reports_each_condition_this_machine_makes_real() {
    if !ready() {
        return;
    }
    let fleet = Fleet::builder().hosts(6).start().expect("fleet");
    let hosts: Vec<testkit::sshd::Host> = fleet.hosts().cloned().collect();
    let name = |i: usize| hosts[i].name.clone();
    // host001 / host002: `/` shared / private in their sessions' mount namespace.
    fleet.use_mount_namespace(&name(0), "shared").unwrap();
    fleet.use_mount_namespace(&name(1), "private").unwrap();
    // host003: this test holds :9100 on its address (root sees the process: become).
    let listener = TcpListener::bind((hosts[2].ip, 9100)).expect("bind :9100");
    // host004: compose detected, Docker asked as the login user (not in the docker group).
    // host005: the same through become: root reaches Docker.
    // host006: the deploy dir on a full filesystem.
    let full = FullFs::mount(&hosts[5].dir.join("full"), "1m", fleet.user_uid());
    let inv = fleet.root().join("inventory.yml");
    fleet
        .inventory()
        .adaptive()
        .host_ssh(&name(2), "become", true)
        .host_var(&name(3), "compose_command", "")
        .host_ssh(&name(4), "become", true)
        .host_var(&name(4), "compose_command", "")
        .host_var(
            &name(5),
            "deploy_dir",
            full.dir.join("exporter-deploy").display().to_string(),
        )
        .write(&inv)
        .unwrap();

    let out = fleet_run(&["preflight"], &inv, &fleet, &["--output", "json"]);
    let doc = report(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "blocked hosts: exit 2\n{}",
        stderr(&out)
    );
    let h = by_host(&doc);
    assert_eq!(h.len(), 6, "{doc:#}");

    // Mount propagation, as the host's own `findmnt` says it in that namespace.
    assert!(
        h[&name(0)]["checks"]["root mount"]
            .as_str()
            .unwrap()
            .starts_with("/ is shared"),
        "{:#}",
        h[&name(0)]
    );
    let adapted = |host: &str, var: &str| -> Option<Value> {
        h[host]["adaptations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["var"] == var && a["applied"] == true)
            .map(|a| a["value"].clone())
    };
    assert_eq!(adapted(&name(0), "node_exporter_host_mount"), None);
    assert_eq!(
        adapted(&name(1), "node_exporter_host_mount"),
        Some(Value::from("ro")),
        "{:#}",
        h[&name(1)]
    );
    for (host, want) in [(name(0), "shared"), (name(1), "private")] {
        let mut ssh = fleet.ssh_command(&host).unwrap();
        let real = String::from_utf8(
            ssh.arg("findmnt -no PROPAGATION /")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert_eq!(real.trim(), want, "findmnt in {host}'s session");
    }

    // The port holder, named with its pid.
    let b = blockers(&h[&name(2)]);
    assert_eq!(h[&name(2)]["verdict"], "blocked");
    assert!(
        b.contains("port 9100 (node_exporter_port) is held by")
            && b.contains(&format!("pid {}", std::process::id()))
            && b.contains(&format!("{}:9100", hosts[2].ip)),
        "{b}"
    );
    // The same as text: the verdict on the host's line, then why and the fix.
    let text = fleet_run(&["preflight"], &inv, &fleet, &["-v"]);
    let text = stdout(&text);
    let mine: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with(&name(2)))
        .take(3)
        .collect();
    assert!(
        mine[0].ends_with("blocked")
            && mine[1].trim_start().starts_with("blocked: port 9100")
            && mine[2].trim_start().starts_with("fix: stop "),
        "{text}"
    );
    assert!(
        text.contains("6 host(s): ") && text.contains(" 3 blocked"),
        "{text}"
    );
    drop(listener);

    // Docker refused to the login user; compose v1 as docker-compose itself reports it.
    let v1 = tool_output("docker-compose", &["version", "--short"]);
    assert_eq!(h[&name(3)]["verdict"], "blocked");
    let b = blockers(&h[&name(3)]);
    assert!(
        b.contains("cannot use the Docker socket") && b.contains("usermod -aG docker pftest"),
        "{b}"
    );
    assert_eq!(
        h[&name(3)]["checks"]["compose"],
        format!("v1 (docker-compose {v1})")
    );
    // Through become, Docker answers with the engine's own version.
    let engine = tool_output("docker", &["version", "--format", "{{.Server.Version}}"]);
    assert_ne!(h[&name(4)]["verdict"], "blocked", "{:#}", h[&name(4)]);
    assert!(
        h[&name(4)]["checks"]["docker"]
            .as_str()
            .unwrap()
            .starts_with(&format!("engine {engine} as root")),
        "{:#}",
        h[&name(4)]
    );

    // The full filesystem under the deploy dir.
    assert_eq!(h[&name(5)]["verdict"], "blocked");
    let b = blockers(&h[&name(5)]);
    assert!(
        b.contains("for the deploy dir") && b.contains("free space on"),
        "{b}"
    );

    // Read-only: nothing was created in any deploy dir.
    for host in &hosts[..5] {
        assert!(!host.deploy_dir().exists(), "{} touched", host.name);
    }
    assert!(!full.dir.join("exporter-deploy").exists());
}

#[test]
fn deploy_completes_healthy_hosts_leaves_four_blocked_untouched_then_completes_them_repaired() {
    if !ready() {
        return;
    }
    let consul = Double::start();
    let fleet = Fleet::builder()
        .hosts(12)
        .consul_agents([consul.d.url()])
        .start()
        .expect("fleet");
    let hosts: Vec<testkit::sshd::Host> = fleet.hosts().cloned().collect();
    let port_host = hosts[2].clone();
    let full_host = hosts[5].clone();
    let mount_host = hosts[8].clone();
    let compose_host = hosts[11].clone();

    // 1. A foreign process holds :9100 on the host's address.
    let listener = TcpListener::bind((port_host.ip, 9100)).expect("bind :9100");
    // 2. The deploy dir's filesystem is full.
    let full = FullFs::mount(&full_host.dir.join("full"), "2m", fleet.user_uid());
    // 3. `/` is private and the inventory pins an rslave host mount (Docker refuses it).
    fleet
        .use_mount_namespace(&mount_host.name, "private")
        .unwrap();
    // 4. The host's compose command is broken (not executable).
    let broken = compose_host.dir.join("compose");
    std::fs::copy(fleet.compose_command(), &broken).unwrap();
    set_mode(&broken, 0o644);
    let inv = fleet.root().join("inventory.yml");
    fleet
        .inventory()
        .host_var(
            &full_host.name,
            "deploy_dir",
            full.dir.join("exporter-deploy").display().to_string(),
        )
        .host_var(&full_host.name, "preflight_min_free_mb", 1)
        .host_var(&mount_host.name, "node_exporter_host_mount", "ro,rslave")
        .host_var(
            &compose_host.name,
            "compose_command",
            broken.display().to_string(),
        )
        .write(&inv)
        .unwrap();
    let deploy_dir = |h: &testkit::sshd::Host| {
        if h.name == full_host.name {
            full.dir.join("exporter-deploy")
        } else {
            h.deploy_dir()
        }
    };

    let out = fleet_run(&["exporters"], &inv, &fleet, &["--output", "json"]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    let blocked = [&port_host, &full_host, &mount_host, &compose_host];
    let is_blocked = |n: &str| blocked.iter().any(|b| b.name == n);
    let st = host_status(&r);
    assert_eq!(st.len(), 12, "{st:?}");
    for (h, (s, _)) in &st {
        let want = if is_blocked(h) { "failed" } else { "changed" };
        assert_eq!(s, want, "{h}: {r:#}");
    }
    let error = |name: &str| -> String {
        r["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .map(|h| h["error"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    for (h, reason, fix) in [
        (
            &port_host,
            "port 9100 (node_exporter_port) is held by",
            "set node_exporter_port",
        ),
        (&full_host, "for the deploy dir", "free space on"),
        (
            &mount_host,
            "needs `/` shared or slave, and it is private",
            "node_exporter_host_mount: ro",
        ),
        (&compose_host, "does not run", "fix compose_command"),
    ] {
        let e = error(&h.name);
        assert!(
            e.starts_with("preflight: ") && e.contains(reason) && e.contains(fix),
            "{}: {e}",
            h.name
        );
        // Untouched: no file written, compose never run.
        assert!(
            !deploy_dir(h).join("docker-compose.yml").exists(),
            "{}",
            h.name
        );
        assert!(
            testkit::standin::calls(&deploy_dir(h)).is_empty(),
            "{}",
            h.name
        );
    }
    // Named on the terminal too, with the fix.
    assert!(
        stderr(&out).contains(&format!(
            "preflight: {} blocked, left untouched",
            port_host.name
        )),
        "{}",
        stderr(&out)
    );
    // The retry file lists the four with their reasons.
    let retry = std::fs::read_to_string(fleet.root().join("state/retry")).unwrap();
    for h in blocked {
        assert!(
            retry
                .lines()
                .any(|l| l.starts_with(&format!("{}  # preflight: ", h.name))),
            "{retry}"
        );
    }
    assert_eq!(
        retry.lines().filter(|l| !l.starts_with('#')).count(),
        4,
        "{retry}"
    );
    // The 8 healthy hosts run the exporters, registered in Consul.
    assert_eq!(consul.d.services().len(), 16);

    // Repair each, re-run: the four complete, the eight change nothing.
    drop(listener);
    std::fs::remove_file(full.filler()).unwrap();
    fleet
        .use_mount_namespace(&mount_host.name, "shared")
        .unwrap();
    set_mode(&broken, 0o755);
    let out = fleet_run(&["exporters"], &inv, &fleet, &["--output", "json"]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    for (h, (s, _)) in host_status(&r) {
        let want = if is_blocked(&h) { "changed" } else { "ok" };
        assert_eq!(s, want, "{h} after the repair: {r:#}");
    }
    assert_eq!(consul.d.services().len(), 24);
    for h in blocked {
        assert_eq!(testkit::standin::starts(&deploy_dir(h)), 1, "{}", h.name);
    }
    assert!(!fleet.root().join("state/retry").exists());
}

/// A Unix socket forwarding to the Docker engine's, open to every user: one test host's login
/// user reaches Docker through it (`DOCKER_HOST`) without joining the `docker` group, which
/// would change every other test's hosts. Connections end with the test process.
fn docker_proxy(path: &Path) {
    use std::os::unix::net::{UnixListener, UnixStream};
    let listener = UnixListener::bind(path).expect("bind the Docker proxy socket");
    set_mode(path, 0o666);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { break };
            std::thread::spawn(move || {
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                    return;
                };
                let (Ok(mut c_in), Ok(mut e_out)) = (client.try_clone(), engine.try_clone()) else {
                    return;
                };
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut e_out);
                    let _ = e_out.shutdown(std::net::Shutdown::Write);
                });
                let (mut e_in, mut c_out) = (engine, client);
                let _ = std::io::copy(&mut e_in, &mut c_out);
                let _ = c_out.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
        }
    });
}

/// A PATH directory with a symlink to every program of the machine's, minus `drop`, plus
/// `extra` (name, target).
fn path_dir(dir: &Path, drop: &str, extra: &[(&str, &Path)]) {
    std::fs::create_dir_all(dir).unwrap();
    for src in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let Ok(entries) = std::fs::read_dir(src) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name == drop || dir.join(&name).exists() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), dir.join(&name));
        }
    }
    for (name, target) in extra {
        let _ = std::fs::remove_file(dir.join(name));
        std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
    }
}

#[test]
fn compose_v2_plugin_is_detected_and_used_where_docker_compose_is_absent_and_v1_elsewhere() {
    if !ready() {
        return;
    }
    let consul = Double::start();
    let fleet = Fleet::builder()
        .hosts(2)
        .consul_agents([consul.d.url()])
        .start()
        .expect("fleet");
    let hosts: Vec<testkit::sshd::Host> = fleet.hosts().cloned().collect();
    let (v2, v1) = (&hosts[0], &hosts[1]);
    let root = fleet.root().to_path_buf();
    // host001: no `docker-compose` on the PATH; `docker compose` is the login user's CLI
    // plugin (its DOCKER_CONFIG), which hands the work to the compose stand-in.
    let config = root.join("docker-config-v2");
    let plugins = config.join("cli-plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let plugin = plugins.join("docker-compose");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testkit/scripts/compose-plugin-standin"),
        &plugin,
    )
    .unwrap();
    set_mode(&plugin, 0o755);
    set_mode(&plugins, 0o1777);
    path_dir(&root.join("path-v2"), "docker-compose", &[]);
    // host002: docker-compose (v1: the stand-in itself) and no plugin.
    let empty_config = root.join("docker-config-v1");
    std::fs::create_dir_all(&empty_config).unwrap();
    path_dir(
        &root.join("path-v1"),
        "docker-compose",
        &[("docker-compose", fleet.compose_command())],
    );
    for (h, config, path) in [(v2, &config, "path-v2"), (v1, &empty_config, "path-v1")] {
        let sock = root.join(format!("docker-{}.sock", h.name));
        docker_proxy(&sock);
        fleet
            .add_sshd_config(
                &h.name,
                &format!(
                    "SetEnv DOCKER_CONFIG={} DOCKER_HOST=unix://{} PATH={} STANDIN_COMPOSE={}\n",
                    config.display(),
                    sock.display(),
                    root.join(path).display(),
                    fleet.compose_command().display()
                ),
            )
            .unwrap();
    }
    // What each host's session really has.
    let mut ssh = fleet.ssh_command(&v2.name).unwrap();
    let o = ssh
        .arg("command -v docker-compose; docker compose version --short")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "2.24.5-standin",
        "host001's session: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut ssh = fleet.ssh_command(&v1.name).unwrap();
    let o = ssh
        .arg("docker compose version >/dev/null 2>&1 || echo no-plugin; docker-compose version --short")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "no-plugin\n1.29.2"
    );

    let inv = root.join("inventory.yml");
    fleet
        .inventory()
        .adaptive()
        .host_var(&v2.name, "compose_command", "")
        .host_var(&v1.name, "compose_command", "")
        .write(&inv)
        .unwrap();
    let out = fleet_run(&["preflight"], &inv, &fleet, &["--output", "json"]);
    let doc = report(&out);
    let h = by_host(&doc);
    assert_eq!(out.status.code(), Some(0), "{doc:#}\n{}", stderr(&out));
    assert_eq!(
        h[&v2.name]["checks"]["compose"], "v2 (docker compose 2.24.5-standin)",
        "{doc:#}"
    );
    assert_eq!(
        h[&v1.name]["checks"]["compose"], "v1 (docker-compose 1.29.2)",
        "{doc:#}"
    );
    // The login user reached the engine (through its DOCKER_HOST).
    for host in [v2, v1] {
        assert!(
            h[&host.name]["checks"]["docker"]
                .as_str()
                .unwrap()
                .contains("as login user"),
            "{doc:#}"
        );
    }

    // Deploy: host001 through `docker compose`, host002 through `docker-compose`.
    let out = fleet_run(&["exporters"], &inv, &fleet, &["--output", "json"]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}\n{}", stderr(&out));
    let plugin_calls = std::fs::read_to_string(plugins.join("calls.log")).unwrap_or_default();
    // One `up -d` through the plugin: host001's (host002 has no plugin to go through).
    let ups = plugin_calls
        .lines()
        .filter(|l| l.starts_with("compose -f ") && l.ends_with(" up -d --remove-orphans"))
        .count();
    assert_eq!(
        ups, 1,
        "`docker compose … up -d` on host001 only: {plugin_calls}"
    );
    assert_eq!(testkit::standin::starts(&v2.deploy_dir()), 1);
    assert_eq!(testkit::standin::starts(&v1.deploy_dir()), 1);
    assert_eq!(consul.d.services().len(), 4);
}

/// A registry double on loopback: `GET /v2/` answers 401 with the registry API header, as a
/// registry that wants a token does.
fn registry_double() -> TcpStandin {
    use std::io::{Read, Write};
    TcpStandin::start("127.0.0.1:0", |mut c| {
        let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf).unwrap_or(0);
        let req = String::from_utf8_lossy(&buf[..n]);
        let status = if req.starts_with("GET /v2/ ") || req.starts_with("HEAD /v2/ ") {
            "401 Unauthorized"
        } else {
            "404 Not Found"
        };
        let _ = write!(
            c,
            "HTTP/1.1 {status}\r\nDocker-Distribution-API-Version: registry/2.0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    })
}

#[test]
fn an_image_to_pull_blocks_the_host_when_its_registry_does_not_answer() {
    if !ready() {
        return;
    }
    if !have("curl") {
        eprintln!("SKIPPED: needs curl (the probe's client on the test hosts)");
        return;
    }
    let fleet = Fleet::builder().hosts(2).start().expect("fleet");
    let hosts: Vec<testkit::sshd::Host> = fleet.hosts().cloned().collect();
    let registry = registry_double();
    let open = registry.port;
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let inv = fleet.root().join("inventory.yml");
    // Docker through become (root reaches it); images nobody has, under each mirror.
    fleet
        .inventory()
        .adaptive()
        .var("preflight_registry_timeout", 3)
        .var("cadvisor_tag", "pf-never-built")
        .var("node_exporter_tag", "pf-never-built")
        .host_ssh(&hosts[0].name, "become", true)
        .host_ssh(&hosts[1].name, "become", true)
        .host_var(&hosts[0].name, "compose_command", "")
        .host_var(&hosts[1].name, "compose_command", "")
        .host_var(
            &hosts[0].name,
            "image_registry",
            format!("127.0.0.1:{open}"),
        )
        .host_var(
            &hosts[1].name,
            "image_registry",
            format!("127.0.0.1:{closed}"),
        )
        .write(&inv)
        .unwrap();
    let out = fleet_run(&["preflight"], &inv, &fleet, &["--output", "json"]);
    let doc = report(&out);
    let h = by_host(&doc);
    assert_eq!(out.status.code(), Some(2), "{doc:#}");
    let reachable = &h[&hosts[0].name];
    assert_ne!(reachable["verdict"], "blocked", "{reachable:#}");
    assert_eq!(
        reachable["checks"]["registry"],
        format!("127.0.0.1:{open} answers /v2/ (http 401)"),
        "{reachable:#}"
    );
    let blocked = &h[&hosts[1].name];
    assert_eq!(blocked["verdict"], "blocked", "{blocked:#}");
    let b = blockers(blocked);
    assert!(
        b.contains(&format!(
            "127.0.0.1:{closed}/bitnami/node-exporter:pf-never-built, 127.0.0.1:{closed}/cadvisor/cadvisor:pf-never-built must be pulled and its registry 127.0.0.1:{closed} does not answer within 3s (curl: (7)"
        )),
        "{b}"
    );
    assert!(b.contains("image_registry") && b.contains("preload"), "{b}");
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Issue 14 point 6: a re-run probes a host in full only when something may have changed
/// there. Each host's `docker` logs its calls (the full preflight starts the Docker CLI, the
/// cheap check never does). Run 1 probes all three hosts and records their memos; run 2 finds
/// them unchanged and starts no Docker CLI anywhere; then host001's compose file is edited,
/// host002's cAdvisor stopped and host003's plan changed (its memory limit): run 3 probes
/// exactly those three in full and repairs them; `--full-preflight` probes every host again.
/// Puts a `docker` on each host's PATH that logs its calls and runs the real one, with
/// DOCKER_HOST set for the login sessions when `docker_host` is; returns a function giving
/// each host's number of Docker CLI starts since it was last called.
fn docker_shims(
    fleet: &Fleet,
    hosts: &[testkit::sshd::Host],
    docker_host: Option<&str>,
) -> impl Fn() -> std::collections::BTreeMap<String, usize> {
    let root = fleet.root().to_path_buf();
    let docker = tool_output("sh", &["-c", "command -v docker"]);
    let logs = root.join("docker-calls");
    std::fs::create_dir_all(&logs).unwrap();
    set_mode(&logs, 0o1777);
    for h in hosts {
        let shim = root.join(format!("docker-shim-{}", h.name));
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}/{}\nexec {} \"$@\"\n",
                logs.display(),
                h.name,
                docker.trim()
            ),
        )
        .unwrap();
        set_mode(&shim, 0o755);
        let dir = root.join(format!("path-{}", h.name));
        path_dir(&dir, "docker", &[("docker", &shim)]);
        let env = match docker_host {
            Some(d) => format!("SetEnv PATH={} DOCKER_HOST={d}\n", dir.display()),
            None => format!("SetEnv PATH={}\n", dir.display()),
        };
        fleet.add_sshd_config(&h.name, &env).unwrap();
    }
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    move || {
        names
            .iter()
            .map(|h| {
                let p = logs.join(h);
                let n = std::fs::read_to_string(&p)
                    .unwrap_or_default()
                    .lines()
                    .count();
                let _ = std::fs::remove_file(&p);
                (h.clone(), n)
            })
            .collect()
    }
}

/// A login user who may not write the Docker socket was refused four times per full preflight:
/// `docker info`, `docker ps` and one `docker image inspect` per image each started the CLI
/// (10–40 ms of the host's CPU each) to be told "permission denied". Now none is started and
/// the verdict is the same: blocked, with the `usermod` fix. Where DOCKER_HOST (or a context)
/// is set the CLI is asked as before, and says the same for itself.
#[test]
fn preflight_started_the_docker_cli_where_the_socket_refuses_the_user() {
    if !ready() {
        return;
    }
    let sock = Path::new("/var/run/docker.sock");
    if !std::fs::metadata(sock).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        eprintln!("SKIPPED: needs the Docker engine's socket at /var/run/docker.sock");
        return;
    }
    let fleet = Fleet::builder().hosts(2).start().expect("fleet");
    let hosts: Vec<testkit::sshd::Host> = fleet.hosts().cloned().collect();
    let (plain, with_host) = (&hosts[0], &hosts[1]);
    let plain_calls = docker_shims(&fleet, std::slice::from_ref(plain), None);
    let host_calls = docker_shims(
        &fleet,
        std::slice::from_ref(with_host),
        Some("unix:///var/run/docker.sock"),
    );
    let inv = fleet.root().join("inventory.yml");
    fleet
        .inventory()
        .adaptive()
        .host_var(&plain.name, "compose_command", "")
        .host_var(&with_host.name, "compose_command", "")
        .write(&inv)
        .unwrap();
    let out = fleet_run(&["preflight"], &inv, &fleet, &["--output", "json"]);
    let h = by_host(&report(&out));
    for host in [plain, with_host] {
        assert_eq!(h[&host.name]["verdict"], "blocked", "{:#}", h[&host.name]);
        let b = blockers(&h[&host.name]);
        assert!(
            b.contains("cannot use the Docker socket") && b.contains("usermod -aG docker pftest"),
            "{b}"
        );
    }
    // Only `docker compose version` (compose detection needs no engine) on the plain host.
    let calls = plain_calls();
    assert_eq!(calls[&plain.name], 1, "{calls:?}");
    let check = h[&plain.name]["checks"]["docker"]
        .as_str()
        .unwrap_or_default();
    assert!(
        check.contains("permission denied") && check.contains("the Docker CLI was not started"),
        "{check}"
    );
    let calls = host_calls();
    assert!(calls[&with_host.name] >= 4, "{calls:?}");
}

#[test]
fn a_rerun_probed_every_unchanged_host_in_full() {
    if !ready() {
        return;
    }
    let consul = Double::start();
    let fleet = Fleet::builder()
        .hosts(4)
        .consul_agents([consul.d.url()])
        .start()
        .expect("fleet");
    let hosts: Vec<testkit::sshd::Host> = fleet.hosts().cloned().collect();
    let root = fleet.root().to_path_buf();
    // (DOCKER_HOST set: the CLI is started and refused, as on a host where it answers.)
    let docker_calls = docker_shims(&fleet, &hosts, Some("unix:///var/run/docker.sock"));
    let memos = || -> Value {
        let text = std::fs::read_to_string(root.join("state/last-run.json")).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["preflight"].clone()
    };
    let inv = root.join("inventory.yml");
    fleet.inventory().write(&inv).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["--output", "json"];
        args.extend_from_slice(extra);
        let out = fleet_run(&["exporters"], &inv, &fleet, &args);
        let r = report(&out);
        assert_eq!(out.status.code(), Some(0), "{r:#}\n{}", stderr(&out));
        host_status(&r)
            .into_iter()
            .map(|(h, (s, _))| (h, s))
            .collect::<std::collections::BTreeMap<String, String>>()
    };
    let all = |n: usize| {
        hosts
            .iter()
            .map(|h| (h.name.clone(), n))
            .collect::<Vec<_>>()
    };
    let probed = |calls: &std::collections::BTreeMap<String, usize>| -> Vec<String> {
        calls
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(h, _)| h.clone())
            .collect()
    };

    // 1. First run: every host probed in full, deployed, and its memo recorded.
    let st = run(&[]);
    assert!(st.values().all(|s| s == "changed"), "{st:?}");
    let calls = docker_calls();
    assert_eq!(probed(&calls).len(), 4, "{calls:?}");
    let first = memos();
    for h in &hosts {
        let m = &first[&h.name];
        assert_eq!(m["verdict"], "ready", "{first:#}");
        let file = h.deploy_dir().join("docker-compose.yml");
        let sha = tool_output("sha256sum", &[&file.display().to_string()]);
        assert_eq!(
            m["files"][file.display().to_string()].as_str(),
            sha.split_whitespace().next(),
            "{first:#}"
        );
    }

    // 2. Nothing changed: no host starts the Docker CLI; the memos keep their time.
    let st = run(&[]);
    assert!(st.values().all(|s| s == "ok"), "{st:?}");
    let calls = docker_calls();
    assert_eq!(calls.into_iter().collect::<Vec<_>>(), all(0));
    assert_eq!(memos(), first);

    // 3. A file edited, a service stopped, a plan changed: those three are probed in full
    //    (and repaired); host004 is not.
    let (edited, stopped, replanned) = (&hosts[0], &hosts[1], &hosts[2]);
    let file = edited.deploy_dir().join("docker-compose.yml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}# edited by hand\n")).unwrap();
    let pid = std::fs::read_to_string(stopped.deploy_dir().join(".standin/cadvisor-exporter.pid"))
        .expect("cadvisor's pid file");
    let st_kill = Command::new("kill")
        .arg("-KILL")
        .arg(pid.trim())
        .status()
        .unwrap();
    assert!(st_kill.success());
    fleet
        .inventory()
        .host_var(&replanned.name, "exporter_mem_node", "300m")
        .write(&inv)
        .unwrap();
    let st = run(&[]);
    let calls = docker_calls();
    assert_eq!(
        probed(&calls),
        [&edited.name, &stopped.name, &replanned.name].map(String::clone),
        "{calls:?}"
    );
    let now = memos();
    for h in [edited, stopped, replanned] {
        assert_eq!(st[&h.name], "changed", "{st:?}");
        assert_eq!(now[&h.name]["verdict"], "ready", "{now:#}");
    }
    assert_ne!(
        now[&replanned.name]["files"],
        first[&replanned.name]["files"]
    );
    assert_eq!(st[&hosts[3].name], "ok", "{st:?}");
    assert_eq!(memos()[&hosts[3].name], first[&hosts[3].name]);
    assert!(
        std::fs::read_to_string(replanned.deploy_dir().join("docker-compose.yml"))
            .unwrap()
            .contains("300m")
    );

    // 4. `--full-preflight`: every host probed, nothing changed.
    let st = run(&["--full-preflight"]);
    assert!(st.values().all(|s| s == "ok"), "{st:?}");
    let calls = docker_calls();
    assert_eq!(probed(&calls).len(), 4, "{calls:?}");
}
