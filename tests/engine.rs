//! The real engine (issue "Exporter rollout", point 6): `promfleet exporters` over real SSH to
//! one sshd host of the test fleet, with the real Docker engine and docker-compose v1 running
//! the exporter compose template — node-exporter from Debian's binary and a cAdvisor stand-in,
//! both local images (`testkit::images`; nothing can be pulled here) — and registration in the
//! Consul test double. A second run must change nothing and leave the containers alone.
//!
//! cAdvisor as upstream runs it (privileged, `/dev/kmsg`) or its minimal-capabilities variant:
//! preflight chooses the variant where the engine's capability bounding set is incomplete. The
//! test holds that choice against the engine itself: the container runs as chosen, and the
//! upstream file (`render`, no preflight) brought up by docker-compose starts exactly when
//! preflight kept it privileged — else it fails with runc's "unable to apply caps".
//!
//! Skipped, with the reason printed, without root, a Docker engine or docker-compose, or when
//! the exporter ports are taken. The exporters publish on the host's loopback address only
//! (`exporter_bind_address`), never on every interface. Teardown (`docker-compose down`, and
//! the mount propagation change below) runs from a Drop guard, so also after a failure.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::consul_double::{CheckStatus, ConsulDouble, RegisteredService};
use testkit::images::{self, LocalImages};
use testkit::sshd::{Fleet, is_root};

const CONTAINERS: [&str; 2] = ["node-exporter", "cadvisor-exporter"];
const NODE_PORT: u16 = 9100;
const CADVISOR_PORT: u16 = 9105;
/// Upper bound of one `promfleet exporters` run (it waits up to `metrics_timeout` per check).
const RUN_LIMIT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn command_works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why this machine cannot run the test, if it cannot.
fn skip_reason() -> Option<String> {
    if !is_root() {
        return Some("needs root (sshd fleet, docker, mount propagation)".into());
    }
    if let Some(why) = images::docker_unavailable() {
        return Some(format!("no usable Docker engine: {why}"));
    }
    if !command_works("docker-compose", &["version"]) {
        return Some("docker-compose (v1) is not installed".into());
    }
    for name in CONTAINERS {
        if command_works("docker", &["container", "inspect", name]) {
            return Some(format!(
                "a container named {name} already exists; it is not this test's to remove"
            ));
        }
    }
    None
}

fn ports_taken(ip: IpAddr) -> Option<String> {
    [NODE_PORT, CADVISOR_PORT].into_iter().find_map(|port| {
        TcpListener::bind((ip, port))
            .err()
            .map(|e| format!("{ip}:{port} is taken ({e})"))
    })
}

/// `findmnt`'s propagation of `/` (`private`, `shared`, …).
fn root_propagation() -> String {
    let out = Command::new("findmnt")
        .args(["-n", "-o", "PROPAGATION", "/"])
        .output()
        .expect("run findmnt");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Brings the compose project down and undoes the mount propagation change, on every exit path.
struct Teardown {
    compose_file: PathBuf,
    restore_private_root: bool,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if self.compose_file.exists() {
            let down = Command::new("docker-compose")
                .arg("-f")
                .arg(&self.compose_file)
                .args(["down", "--timeout", "5", "--remove-orphans"])
                .output();
            if let Ok(out) = down
                && !out.status.success()
            {
                eprintln!(
                    "engine teardown: docker-compose down failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // The names were free when the test started, so whatever holds them now is ours (e.g.
        // left behind when the compose file was never written).
        let _ = Command::new("docker")
            .args(["rm", "--force"])
            .args(CONTAINERS)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if self.restore_private_root {
            let _ = Command::new("mount").args(["--make-private", "/"]).status();
        }
    }
}

/// Run promfleet with a hard time limit; stdout and stderr are collected.
fn promfleet(cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_promfleet"))
        .current_dir(cwd)
        .args(args)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("PROMFLEET_INVENTORY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promfleet");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    // Drain both pipes while waiting, so a chatty run cannot block on a full pipe.
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for promfleet") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("promfleet {args:?} ran longer than {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// The RunReport printed by `--output json`, after asserting exit code 0.
fn successful_report(out: &Output, which: &str) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{which} run failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{which} run: stdout is not a JSON run report ({e}):\n{stdout}"))
}

/// One line per task (`outcome task: detail`), for the test log.
fn task_lines(report: &Value) -> String {
    let tasks = report["hosts"][0]["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    tasks
        .iter()
        .map(|t| format!("  {} {}: {}", t["outcome"], t["task"], t["detail"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(id, StartedAt, image)` of a running container.
fn running_container(name: &str) -> (String, String, String) {
    let text = run_ok(Command::new("docker").args([
        "inspect",
        "--format",
        "{{.Id}} {{.State.Running}} {{.State.StartedAt}} {{.Config.Image}}",
        name,
    ]));
    let f: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(f.len(), 4, "docker inspect {name}: {text}");
    assert_eq!(f[1], "true", "container {name} is not running: {text}");
    (f[0].to_string(), f[2].to_string(), f[3].to_string())
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(
        body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"),
        "GET http://{addr}{path}: {}",
        body.lines().next().unwrap_or("")
    );
    body
}

/// Samples (non-comment lines) of families starting with `prefix`.
fn samples(body: &str, prefix: &str) -> usize {
    body.lines().filter(|l| l.starts_with(prefix)).count()
}

fn service<'a>(services: &'a [RegisteredService], id: &str) -> &'a RegisteredService {
    services
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("service {id} not registered; the double holds {services:#?}"))
}

#[test]
fn exporters_run_on_the_real_docker_engine_and_rerun_changes_nothing() {
    let test = "exporters_run_on_the_real_docker_engine_and_rerun_changes_nothing";
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED {test}: {why}");
        return;
    }
    let t0 = Instant::now();
    let images: LocalImages = images::ensure_local_images().expect("build the local images");
    eprintln!("{test}: local images ready in {:?}", t0.elapsed());

    let fleet = Fleet::builder()
        .hosts(1)
        .groups(&["IDE"])
        .start()
        .expect("start the sshd host");
    let host = fleet.hosts().next().expect("one host").clone();
    let ip = IpAddr::V4(host.ip);
    if let Some(why) = ports_taken(ip) {
        eprintln!("SKIPPED {test}: {why}");
        return;
    }

    // The template mounts `/:/host:ro,rslave`; Docker refuses that unless `/` is a shared or
    // slave mount, which systemd makes it on a real Docker host but this test VM does not.
    let restore_private_root = root_propagation() == "private";
    if restore_private_root {
        eprintln!("{test}: `/` is a private mount; making it shared for the test");
        run_ok(Command::new("mount").args(["--make-shared", "/"]));
    }
    let deploy_dir = host.deploy_dir();
    let _teardown = Teardown {
        compose_file: deploy_dir.join("docker-compose.yml"),
        restore_private_root,
    };

    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let double = rt
        .block_on(ConsulDouble::start(SocketAddr::from(([127, 0, 0, 1], 0))))
        .expect("start the Consul double");

    let work = tempfile::tempdir().expect("work dir");
    let mut vars = json!({
        "deploy_dir": deploy_dir.display().to_string(),
        "compose_command": "docker-compose",
        "exporter_bind_address": host.ip.to_string(),
        "metrics_timeout": 90,
    });
    for (k, v) in images.inventory_vars() {
        vars[k] = Value::from(v);
    }
    // Scalars as JSON, which YAML reads as the same values. `become`: docker needs root.
    let inventory = format!(
        "ssh: {{ user: {user}, port: {port}, key: {key}, become: true }}\n\
         consul: {{ agents: [{agent}] }}\n\
         vars: {vars}\n\
         groups:\n  IDE:\n    hosts:\n      - {{ name: {name}, ip: {ip} }}\n",
        user = json!(fleet.user()),
        port = fleet.port(),
        key = json!(fleet.client_key().display().to_string()),
        agent = json!(double.url()),
        name = json!(host.name),
        ip = host.ip,
    );
    let inv_path = work.path().join("inventory.yml");
    std::fs::write(&inv_path, &inventory).unwrap();
    let playbook = repo().join("playbooks/exporters.yml");
    let known_hosts = fleet.known_hosts().display().to_string();
    let state_dir = work.path().join("state");
    let args = [
        "exporters",
        "-i",
        inv_path.to_str().unwrap(),
        "--known-hosts",
        &known_hosts,
        "--ssh-config",
        "/dev/null",
        "--no-agent",
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--playbook",
        playbook.to_str().unwrap(),
        "--output",
        "json",
    ];

    // First run: files written, containers started, both endpoints checked, both registered.
    let t1 = Instant::now();
    let first_out = promfleet(work.path(), &args);
    let first = successful_report(&first_out, "first");
    let first_stderr = String::from_utf8_lossy(&first_out.stderr).into_owned();
    eprintln!(
        "{test}: first run took {:?}\n{}",
        t1.elapsed(),
        task_lines(&first)
    );
    let h = &first["hosts"][0];
    assert_eq!(h["host"], host.name, "{first:#}");
    assert_eq!(h["failed"], 0, "{first:#}");
    assert!(
        h["changed"].as_u64().unwrap_or(0) >= 2,
        "the first run must write the compose file and bring it up: {first:#}"
    );

    let node = running_container("node-exporter");
    let cadvisor = running_container("cadvisor-exporter");
    assert_eq!(node.2, images.node_exporter.reference());
    assert_eq!(cadvisor.2, images.cadvisor.reference());
    // The variant preflight chose (printed during the run) is the one running.
    let minimal = first_stderr.contains("cadvisor_privileged=false");
    eprintln!(
        "{test}: preflight chose cAdvisor {}",
        if minimal {
            "minimal-capabilities"
        } else {
            "privileged"
        }
    );
    let hc = container_json("cadvisor-exporter", "{{json .HostConfig}}");
    assert_eq!(hc["Privileged"], !minimal, "{hc:#}\n{first_stderr}");
    let kmsg = Path::new("/dev/kmsg").exists();
    let devices: Vec<&str> = hc["Devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["PathOnHost"].as_str())
        .collect();
    assert_eq!(devices.contains(&"/dev/kmsg"), kmsg, "{hc:#}");
    if minimal {
        assert!(
            first_stderr.contains("bounding set lacks"),
            "the adaptation names the missing capability: {first_stderr}"
        );
        assert_eq!(hc["CapAdd"], json!(["SYSLOG"]), "{hc:#}");
    }
    let mounts = container_json("cadvisor-exporter", "{{json .Mounts}}");
    let mount_rw = |dest: &str| {
        mounts
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["Destination"] == dest)
            .map(|m| m["RW"].as_bool().unwrap_or(true))
    };
    assert_eq!(mount_rw("/var/run"), Some(false), "{mounts:#}");
    if Path::new("/dev/disk").exists() {
        assert_eq!(mount_rw("/dev/disk"), Some(false), "{mounts:#}");
    }

    let body = http_get(SocketAddr::new(ip, NODE_PORT), "/metrics");
    assert!(samples(&body, "node_") > 0, "no node_ samples:\n{body}");
    // Reads the host's /proc through the template's `/host/proc` mount.
    assert!(
        samples(&body, "node_cpu_seconds_total") > 0,
        "no CPU samples:\n{body}"
    );
    // The template's flags reached the binary: --web.disable-exporter-metrics drops the
    // exporter's own go_/process_ families.
    for own in ["go_", "process_"] {
        assert_eq!(
            samples(&body, own),
            0,
            "{own} samples despite the flag:\n{body}"
        );
    }
    assert!(
        body.lines().any(
            |l| l.starts_with("node_filesystem_avail_bytes{") && l.contains("mountpoint=\"/\"")
        ),
        "no filesystem sample for the host's /:\n{body}"
    );
    let body = http_get(SocketAddr::new(ip, CADVISOR_PORT), "/metrics");
    assert!(
        samples(&body, "container_") > 0,
        "no container_ samples:\n{body}"
    );
    assert!(samples(&body, "cadvisor_version_info") > 0, "{body}");

    // Registration as the seed system's script did it (SEED-SYSTEM.md §2).
    let services = double.services();
    assert_eq!(services.len(), 2, "{services:#?}");
    for (name, port) in [
        ("node-exporter", NODE_PORT),
        ("cadvisor-exporter", CADVISOR_PORT),
    ] {
        let s = service(&services, &format!("{name}-{}-{}", host.name, host.ip));
        assert_eq!(s.name, name);
        assert_eq!(s.address, host.ip.to_string());
        assert_eq!(s.port, port);
        assert!(s.tags.is_empty(), "{s:?}");
        assert_eq!(s.meta.get("hostname"), Some(&host.name), "{s:?}");
        assert_eq!(
            s.meta.get("group").map(String::as_str),
            Some("IDE"),
            "{s:?}"
        );
        assert_eq!(s.checks.len(), 1, "{s:?}");
        let url = format!("http://{}:{port}/metrics", host.ip);
        assert_eq!(s.checks[0].http.as_deref(), Some(url.as_str()), "{s:?}");
        assert_eq!(s.checks[0].interval, Some(Duration::from_secs(5)), "{s:?}");
    }
    // The double really probes the check URLs: both must turn passing against the containers.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let statuses: Vec<(String, CheckStatus)> = double
            .services()
            .iter()
            .flat_map(|s| s.checks.iter().map(|c| (c.id.clone(), c.status)))
            .collect();
        if statuses.iter().all(|(_, st)| *st == CheckStatus::Passing) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "checks not passing after 20s: {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Second run: nothing to do, and the containers keep running untouched.
    let t2 = Instant::now();
    let second = successful_report(&promfleet(work.path(), &args), "second");
    eprintln!(
        "{test}: second run took {:?}\n{}",
        t2.elapsed(),
        task_lines(&second)
    );
    let h = &second["hosts"][0];
    assert_eq!(h["failed"], 0, "{second:#}");
    assert_eq!(
        h["changed"], 0,
        "the second run changed something: {second:#}"
    );
    assert_eq!(
        running_container("node-exporter"),
        node,
        "node-exporter was recreated"
    );
    assert_eq!(
        running_container("cadvisor-exporter"),
        cadvisor,
        "cadvisor-exporter was recreated"
    );
    assert_eq!(double.services().len(), 2);

    // Upstream as rendered without preflight: privileged. It starts on this engine exactly
    // when preflight kept it privileged.
    let rendered = work.path().join("rendered");
    let out = promfleet(
        work.path(),
        &[
            "render",
            playbook.to_str().unwrap(),
            "-i",
            inv_path.to_str().unwrap(),
            "--out",
            rendered.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let upstream = find_file(&rendered, "docker-compose.yml").expect("rendered compose file");
    let text = std::fs::read_to_string(&upstream).unwrap();
    for want in [
        "privileged: true",
        "- /dev/kmsg",
        "/var/run:/var/run:ro",
        "/dev/disk/:/dev/disk:ro",
    ] {
        assert!(
            text.contains(want),
            "upstream rendering lacks {want}:\n{text}"
        );
    }
    run_ok(
        Command::new("docker-compose")
            .arg("-f")
            .arg(deploy_dir.join("docker-compose.yml"))
            .args(["down", "--timeout", "5"]),
    );
    let up = Command::new("docker-compose")
        .arg("-f")
        .arg(&upstream)
        .args(["-p", "pf-engine-upstream", "up", "-d", "cadvisor-exporter"])
        .output()
        .expect("run docker-compose");
    let up_err = String::from_utf8_lossy(&up.stderr).into_owned();
    let _ = Command::new("docker-compose")
        .arg("-f")
        .arg(&upstream)
        .args(["-p", "pf-engine-upstream", "down", "--timeout", "5"])
        .output();
    eprintln!("{test}: upstream (privileged) compose up: {}", up.status);
    if minimal {
        assert!(
            !up.status.success() && up_err.contains("unable to apply caps"),
            "preflight chose the minimal variant, yet privileged cAdvisor: {}\n{up_err}",
            up.status
        );
    } else {
        assert!(up.status.success(), "privileged cAdvisor failed: {up_err}");
    }

    drop(double);
    drop(rt);
    eprintln!("{test}: total {:?}", t0.elapsed());
}

/// `docker inspect --format FORMAT name` as JSON.
fn container_json(name: &str, format: &str) -> Value {
    let text = run_ok(Command::new("docker").args(["inspect", "--format", format, name]));
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("docker inspect {name}: {e}: {text}"))
}

/// The first file named `name` under `dir`.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}
