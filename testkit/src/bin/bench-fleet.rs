//! Benchmark fleet: an N-host shared-sshd fleet, the Consul test double (checks not probed, so
//! the double adds no background load) and the compose stand-in, plus everything a benchmark
//! script needs in `--out DIR`: the promfleet inventory, an Ansible inventory (JSON, which
//! is YAML), `hosts.txt` (one address per line), `env.sh` (port, key, known_hosts, Consul
//! URL) and finally `ready`. Keeps running until SIGTERM / SIGINT, then tears everything down.
//!
//! Usage: bench-fleet --hosts N --out DIR [--real-compose] [--max-startups SPEC]
//!
//! `--real-compose` keeps the stand-in's validation by the real (Python) `docker-compose
//! config`, ~0.5 s of CPU per host because every host's file differs (it names the host); by
//! default a `cat` stands in for it, so the benchmark measures the deployer and not the
//! 2-core machine running N hosts' remote work.
//! `--max-startups SPEC` starts a second sshd (same host key, same users) on another port with
//! `MaxStartups SPEC` and points the inventories at it, to watch refused handshakes.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::consul_double::{ConsulDouble, DoubleOptions};
use testkit::sshd::Fleet;

struct Args {
    hosts: usize,
    out: PathBuf,
    real_compose: bool,
    max_startups: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        hosts: 100,
        out: PathBuf::from("bench-out"),
        real_compose: false,
        max_startups: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--hosts" => a.hosts = value()?.parse().context("--hosts takes a number")?,
            "--out" => a.out = PathBuf::from(value()?),
            "--real-compose" => a.real_compose = true,
            "--max-startups" => a.max_startups = Some(value()?),
            other => bail!("unknown argument {other}"),
        }
    }
    if a.hosts == 0 || a.hosts > 1000 {
        bail!("--hosts must be 1..=1000");
    }
    Ok(a)
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// A second sshd with another MaxStartups, on a fresh port, sharing the fleet's host key.
fn spawn_limited_sshd(fleet: &Fleet, out: &Path, spec: &str) -> Result<(Child, u16)> {
    let shared = fleet.root().join(".sshd/shared");
    let cfg = std::fs::read_to_string(shared.join("sshd_config")).context("shared sshd_config")?;
    let port = std::net::TcpListener::bind("0.0.0.0:0")?
        .local_addr()?
        .port();
    let dir = out.join("limited-sshd");
    std::fs::create_dir_all(&dir)?;
    let text: String = cfg
        .lines()
        .map(|l| {
            if l.starts_with("ListenAddress") {
                format!("ListenAddress 0.0.0.0:{port}")
            } else if l.starts_with("MaxStartups") {
                format!("MaxStartups {spec}")
            } else if l.starts_with("PidFile") {
                format!("PidFile {}/sshd.pid", dir.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg_path = dir.join("sshd_config");
    std::fs::write(&cfg_path, text + "\n")?;
    let child = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-f")
        .arg(&cfg_path)
        .arg("-E")
        .arg(dir.join("sshd.log"))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn limited sshd")?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while testkit::sshd::banner(addr).is_err() {
        if Instant::now() > deadline {
            bail!("limited sshd on {port} sent no banner");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, port))
}

fn main() -> Result<()> {
    let a = parse_args()?;
    // Stop signals are only taken by sigwait below, so the teardown always runs.
    // SAFETY: plain sigset manipulation on a local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::fs::create_dir_all(&a.out)?;
    let out = a.out.canonicalize()?;
    // The login user runs the compose wrapper from here.
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755))?;
    let _ = std::fs::remove_file(out.join("ready"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let consul = rt.block_on(ConsulDouble::start_with(DoubleOptions {
        run_checks: false,
        ..DoubleOptions::default()
    }))?;

    let t0 = Instant::now();
    let fleet = Fleet::builder()
        .hosts(a.hosts)
        .groups(&["IDE", "Stage", "Pet"])
        .shared_sshd(true)
        .fake_node_exporter(true)
        .consul_agents([consul.url()])
        .start()?;
    let startup = t0.elapsed();

    // Compose wrapper: the fleet's, optionally with `cat` as the config validator.
    let validator = out.join("compose-config-cat");
    write_exec(
        &validator,
        "#!/bin/sh\n# `docker-compose -f FILE ... config [--services]` for the benchmark: the file as is.\n\
         f=\nwhile [ $# -gt 0 ]; do case $1 in -f) f=$2; shift 2;; --project-directory) shift 2;; \
         --services) exec awk '/^services:/{s=1;next} /^[^ ]/{s=0} s && /^  [^ #]/{sub(/:$/,\"\",$1); print $1}' \"$f\";; \
         *) shift;; esac; done\nexec cat \"$f\"\n",
    )?;
    let compose = out.join("compose");
    let fleet_compose = fleet.compose_command().display().to_string();
    if a.real_compose {
        write_exec(
            &compose,
            &format!("#!/bin/sh\nexec {fleet_compose} \"$@\"\n"),
        )?;
    } else {
        // The fleet's wrapper with one more variable: one shell started per call, not two.
        let wrapper = std::fs::read_to_string(fleet.compose_command())
            .with_context(|| format!("read {fleet_compose}"))?;
        let (shebang, rest) = wrapper.split_once('\n').unwrap_or((&wrapper, ""));
        write_exec(
            &compose,
            &format!(
                "{shebang}\nexport STANDIN_REAL_COMPOSE={}\n{rest}",
                validator.display()
            ),
        )?;
    }

    let mut limited = None;
    let mut port = fleet.port();
    let mut known_hosts = fleet.known_hosts().to_path_buf();
    if let Some(spec) = &a.max_startups {
        let (child, p) = spawn_limited_sshd(&fleet, &out, spec)?;
        limited = Some(child);
        let kh = std::fs::read_to_string(fleet.known_hosts())?;
        let from = format!("]:{} ", fleet.port());
        let to = format!("]:{p} ");
        known_hosts = out.join("known_hosts");
        std::fs::write(&known_hosts, kh.replace(&from, &to))?;
        port = p;
    }

    // promfleet inventory: the fleet's, with the bench compose wrapper and port.
    let yaml = fleet
        .inventory_yaml(&[])
        .replace(&fleet_compose, &compose.display().to_string())
        .replace(
            &format!("port: {}, ", fleet.port()),
            &format!("port: {port}, "),
        );
    std::fs::write(out.join("promfleet.yml"), yaml)?;

    // Ansible inventory (JSON is YAML).
    let mut groups: Map<String, Value> = Map::new();
    for h in fleet.hosts() {
        let g = groups
            .entry(h.group.clone())
            .or_insert_with(|| json!({"hosts": {}}));
        g["hosts"][&h.name] = json!({
            "ansible_host": h.ip.to_string(),
            "deploy_dir": h.deploy_dir().display().to_string(),
            "fleet_group": h.group,
        });
    }
    let ssh_args = format!(
        "-F /dev/null -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        known_hosts.display()
    );
    let ansible = json!({"all": {
        "vars": {
            "ansible_port": port,
            "ansible_user": fleet.user(),
            "ansible_ssh_private_key_file": fleet.client_key().display().to_string(),
            "ansible_ssh_common_args": ssh_args,
            "ansible_python_interpreter": "/usr/bin/python3",
            "compose_command": compose.display().to_string(),
            "consul_url": consul.url(),
        },
        "children": {"fleet": {"children": groups}},
    }});
    std::fs::write(
        out.join("ansible.yml"),
        serde_json::to_string_pretty(&ansible)?,
    )?;
    let ips: Vec<String> = fleet.hosts().map(|h| h.ip.to_string()).collect();
    std::fs::write(out.join("hosts.txt"), ips.join("\n") + "\n")?;
    std::fs::write(
        out.join("env.sh"),
        format!(
            "FLEET_ROOT={}\nFLEET_PORT={port}\nFLEET_USER={}\nFLEET_KEY={}\nFLEET_KNOWN_HOSTS={}\nCONSUL_URL={}\nFLEET_HOSTS={}\nFLEET_STARTUP_MS={}\n",
            fleet.root().display(),
            fleet.user(),
            fleet.client_key().display(),
            known_hosts.display(),
            consul.url(),
            a.hosts,
            startup.as_millis(),
        ),
    )?;
    std::fs::write(out.join("ready"), "")?;
    eprintln!(
        "bench-fleet: {} hosts up in {:.1}s, port {port}, consul {}",
        a.hosts,
        startup.as_secs_f64(),
        consul.url()
    );

    let mut sig = 0;
    // SAFETY: waits on the set blocked above.
    unsafe { libc::sigwait(&set, &mut sig) };
    if let Some(mut c) = limited {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(fleet);
    drop(consul);
    let _ = std::fs::remove_file(out.join("ready"));
    Ok(())
}
