//! The fault matrix: `promfleet exporters` on a small real-sshd fleet where exactly ONE thing
//! is broken. Every scenario asserts the same contract (see [`Rig::assert_fault`]): the healthy
//! hosts finish, the faulty one is reported failed/unreachable with a one-line cause and listed
//! in `<state-dir>/retry`, no remote compose file is half-written and no temp file is left, the
//! exit code says what happened (2 failed, 4 unreachable) and the run ends within a bound.
//! Consul faults, disk faults and signals have their own assertions on top.
//!
//! Runs are tuned for speed: `--connect-timeout 2 --retries 2 --keepalive 1`, inventory var
//! `metrics_timeout: 3`, the small fake node exporter. Needs root (sshd fleet); prints SKIPPED
//! otherwise.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::netns::NetnsHost;
use testkit::sshd::{Fleet, KeyKind};

use crate::support::*;

/// The host every single-fault scenario breaks.
const BAD: &str = "host002";

/// What a fault scenario expects of the faulty host and the run.
struct Fault<'a> {
    status: &'a str,
    code: i32,
    /// Substrings the host's one-line error must contain.
    cause: &'a [&'a str],
    within: Duration,
    /// Content the faulty host's compose file had before the run (`None`: it had none).
    previous: Option<&'a str>,
}

impl Rig {
    /// The common contract of a one-faulty-host run.
    fn assert_fault(&self, out: &Output, elapsed: Duration, f: &Fault) {
        let ctx = format!("stderr:\n{}\nstdout:\n{}", stderr(out), stdout(out));
        let r = report(out);
        let hosts = r["hosts"].as_array().expect("hosts");
        assert_eq!(hosts.len(), self.fleet.hosts().count(), "{ctx}");
        for h in hosts {
            let name = h["host"].as_str().unwrap_or_default();
            let status = h["status"].as_str().unwrap_or_default();
            if name == BAD {
                assert_eq!(status, f.status, "{BAD}: {h:#}");
                let err = h["error"].as_str().expect("the faulty host has an error");
                assert!(!err.contains('\n'), "cause is one line: {err:?}");
                for c in f.cause {
                    assert!(err.contains(c), "{BAD}: cause {err:?} lacks {c:?}");
                }
            } else {
                assert!(
                    status == "changed" || status == "ok",
                    "healthy {name} is {status}: {h:#}\n{ctx}"
                );
                assert!(h["error"].is_null(), "{name}: {h:#}");
            }
        }
        assert_eq!(out.status.code(), Some(f.code), "{ctx}");
        assert!(
            elapsed < f.within,
            "run took {elapsed:?}, bound {:?}\n{ctx}",
            f.within
        );
        assert_eq!(self.retry_list(), vec![BAD.to_string()], "retry file");
        self.assert_files_whole(&self.rendered(), f.previous);
    }
}

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn chown_to_user(fleet: &Fleet, path: &Path) {
    std::os::unix::fs::chown(path, Some(fleet.user_uid()), None).expect("chown");
}

// ---------------------------------------------------------------------------------------------
// Connection faults

#[test]
fn fault_host_refuses_connections() {
    let Some(rig) = Rig::start(4, 1) else { return };
    rig.fleet.stop(BAD).expect("stop");
    let (out, took) = rig.run(&[]);
    rig.assert_fault(
        &out,
        took,
        &Fault {
            status: "unreachable",
            code: 4,
            cause: &["connect", "refused"],
            within: Duration::from_secs(30),
            previous: None,
        },
    );
    assert!(!rig.fleet.host(BAD).expect("host").deploy_dir().exists());
}

#[test]
fn fault_host_accepts_tcp_but_never_speaks() {
    let Some(rig) = Rig::start(4, 1) else { return };
    rig.fleet.silence(BAD).expect("silence");
    let (out, took) = rig.run(&[]);
    // 2 attempts × 2 s connect timeout + backoff, then the other hosts' own work.
    rig.assert_fault(
        &out,
        took,
        &Fault {
            status: "unreachable",
            code: 4,
            cause: &["timed out"],
            within: Duration::from_secs(30),
            previous: None,
        },
    );
}

/// A host in its own network namespace whose compose step hangs (a wrapper sleeps before
/// `up`); the test cuts its network while promfleet waits on that command. Keepalives
/// (1 s × 3) must notice the dead peer long before the 600 s command timeout.
#[test]
fn fault_host_cut_off_mid_run() {
    let Some(rig) = Rig::start(3, 1) else { return };
    let mut edge = NetnsHost::start(&rig.fleet, "edge01", "IDE").expect("netns host");
    let dir = edge.host().dir.clone();
    let marker = dir.join("up-reached");
    let wrapper = rig.fleet.root().join("bin").join("compose-hang");
    write_script(
        &wrapper,
        &format!(
            "#!/bin/sh\ncase \" $* \" in *\" up \"*) touch {m}; sleep 60;; esac\nexec {real} \"$@\"\n",
            m = marker.display(),
            real = rig.fleet.compose_command().display()
        ),
    );
    let deploy = dir.join("exporter-deploy");
    let yaml = rig
        .fleet
        .inventory()
        .var("metrics_timeout", 3)
        .extra_host(
            edge.host().clone(),
            &[
                ("deploy_dir", Value::from(deploy.display().to_string())),
                (
                    "compose_command",
                    Value::from(wrapper.display().to_string()),
                ),
            ],
        )
        .yaml();
    std::fs::write(&rig.inv, yaml).expect("inventory");
    let child = Watched::spawn(rig.command(&[]));
    let started = Instant::now();
    let reached = wait_for_file(&marker, Duration::from_secs(40));
    if reached {
        edge.cut().expect("cut");
    }
    let (out, _) = child.finish(Duration::from_secs(60));
    let took = started.elapsed();
    assert!(
        reached,
        "compose up never reached; stderr:\n{}",
        stderr(&out)
    );
    let ctx = format!("stderr:\n{}", stderr(&out));
    let st = host_status(&report(&out));
    for h in rig.fleet.hosts() {
        assert_eq!(st[&h.name].0, "changed", "{}\n{ctx}", h.name);
    }
    let r = report(&out);
    let e = r["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["host"] == "edge01")
        .expect("edge01 reported")
        .clone();
    let status = e["status"].as_str().unwrap_or_default();
    let err = e["error"].as_str().unwrap_or_default();
    // A lost connection is not a compose failure: the host is unreachable and the recap says
    // why. `compose up` may have run, so it is not run again (only repeatable steps are).
    assert_eq!(status, "unreachable", "{e:#}\n{ctx}");
    assert!(
        !err.is_empty() && !err.contains('\n'),
        "one-line cause: {err:?}"
    );
    assert!(err.contains("exporters up"), "names the task: {err}");
    assert!(
        err.contains("connection lost") || err.contains("timed out"),
        "{err}"
    );
    assert!(stderr(&out).contains("connection lost"), "{ctx}");
    assert_eq!(out.status.code(), Some(4), "{ctx}");
    assert!(
        took < Duration::from_secs(45),
        "took {took:?}: a cut host must not hang the run\n{ctx}"
    );
    assert_eq!(rig.retry_list(), vec!["edge01".to_string()]);
    // The file was written before the cut: whole, and no temp file left.
    let rendered_dir = rig.fleet.root().join("rendered-edge");
    Run::render(&["playbooks/exporters.yml"], &rig.inv, &rendered_dir).succeeds();
    let want = std::fs::read_to_string(
        find(&rendered_dir.join("edge01"), "docker-compose.yml").expect("rendered"),
    )
    .expect("read");
    assert_file_whole(&deploy.join("docker-compose.yml"), &want, None);
    assert_no_temp_files(&dir);
    let _ = edge.restore();
}

// ---------------------------------------------------------------------------------------------
// Authentication and host keys

#[test]
fn fault_authentication_refused() {
    let Some(rig) = Rig::start(4, 1) else { return };
    let stranger = rig
        .fleet
        .make_client_key("stranger", KeyKind::Ed25519, "", false)
        .expect("key");
    let key = stranger.display().to_string();
    rig.write_inventory(&[(BAD, &|l: String| {
        l.replacen(
            ", vars: {",
            &format!(", ssh: {{ key: \"{key}\" }}, vars: {{"),
            1,
        )
    })]);
    let (out, took) = rig.run(&[]);
    rig.assert_fault(
        &out,
        took,
        &Fault {
            status: "unreachable",
            code: 4,
            cause: &["authentication failed", "pftest@", "stranger"],
            within: Duration::from_secs(30),
            previous: None,
        },
    );
    // Permanent: no pointless retries of a refused key.
    let r = report(&out);
    let bad = r["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["host"] == BAD)
        .expect("bad");
    assert!(bad["error"].as_str().unwrap_or("").starts_with("connect: "));
}

#[test]
fn fault_host_key_unknown() {
    let Some(rig) = Rig::start(4, 1) else { return };
    let ip = rig.fleet.host(BAD).expect("host").ip;
    let kh = rig.fleet.known_hosts();
    let text = std::fs::read_to_string(kh).expect("known_hosts");
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&format!("[{ip}]:")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(kept.lines().count() + 1, text.lines().count());
    std::fs::write(kh, &kept).expect("write");
    let (out, took) = rig.run(&[]);
    rig.assert_fault(
        &out,
        took,
        &Fault {
            status: "unreachable",
            code: 4,
            cause: &["is not known", "--accept-new-host-keys"],
            within: Duration::from_secs(30),
            previous: None,
        },
    );
    assert_eq!(
        std::fs::read_to_string(kh).expect("read"),
        kept,
        "an unknown key is never recorded without --accept-new-host-keys"
    );
}

#[test]
fn fault_host_key_changed() {
    let Some(rig) = Rig::start(4, 1) else { return };
    rig.fleet.rotate_host_key(BAD).expect("rotate");
    let before = std::fs::read_to_string(rig.fleet.known_hosts()).expect("kh");
    // Even trust-on-first-use must refuse a changed key.
    let (out, took) = rig.run(&["--accept-new-host-keys"]);
    rig.assert_fault(
        &out,
        took,
        &Fault {
            status: "unreachable",
            code: 4,
            cause: &["HOST KEY CHANGED", "known_hosts:"],
            within: Duration::from_secs(30),
            previous: None,
        },
    );
    assert_eq!(
        std::fs::read_to_string(rig.fleet.known_hosts()).expect("kh"),
        before
    );
}

// ---------------------------------------------------------------------------------------------
// Remote command and endpoint faults

#[test]
fn fault_compose_up_fails() {
    let Some(rig) = Rig::start(4, 1) else { return };
    let dir = rig.fleet.host(BAD).expect("host").deploy_dir();
    let msg = "Error response from daemon: driver failed programming external connectivity: port 9100 is already allocated";
    testkit::standin::fail_up(&dir, msg).expect("fail_up");
    chown_to_user(&rig.fleet, &dir);
    let (out, took) = rig.run(&[]);
    rig.assert_fault(
        &out,
        took,
        &Fault {
            status: "failed",
            code: 2,
            cause: &["exporters up", "compose up failed", msg],
            within: Duration::from_secs(30),
            previous: None,
        },
    );
    assert!(testkit::standin::running_services(&dir).is_empty());
}

/// `up -d` succeeds but node-exporter dies right after (a wrapper kills it): the metrics
/// check must give up after `metrics_timeout` per attempt, not wait forever.
#[test]
fn fault_metrics_endpoint_never_comes_up() {
    let Some(rig) = Rig::start(4, 1) else { return };
    let wrapper = rig.fleet.root().join("bin").join("compose-no-node");
    write_script(
        &wrapper,
        &format!(
            "#!/bin/sh\n{real} \"$@\" || exit $?\ncase \" $* \" in *\" up \"*)\n  for f in .standin/*node*.pid; do [ -f \"$f\" ] && kill \"$(cat \"$f\")\"; done;;\nesac\nexit 0\n",
            real = rig.fleet.compose_command().display()
        ),
    );
    let real = rig.fleet.compose_command().display().to_string();
    let w = wrapper.display().to_string();
    rig.write_inventory(&[(BAD, &|l: String| l.replace(&real, &w))]);
    let (out, took) = rig.run(&[]);
    rig.assert_fault(
        &out,
        took,
        &Fault {
            status: "failed",
            code: 2,
            cause: &[
                "node-exporter serves metrics",
                "not serving metrics after 3s",
            ],
            within: Duration::from_secs(40),
            previous: None,
        },
    );
    let r = report(&out);
    let bad = r["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["host"] == BAD)
        .expect("bad")
        .clone();
    let check = bad["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["module"] == "metrics_check")
        .expect("metrics task");
    assert_eq!(check["attempts"], 2, "transient: retried --retries times");
}

/// Something else squats the node-exporter port and answers HTML (a test HTTP server bound
/// on the host's ip:9100 before the run, so the exporter cannot bind it).
#[test]
fn fault_metrics_endpoint_serves_garbage() {
    let Some(rig) = Rig::start(4, 1) else { return };
    let ip = rig.fleet.host(BAD).expect("host").ip;
    let server = html_server(SocketAddr::from((ip, 9100)));
    // Preflight would block the squatted port before any change (tests/preflight.rs); this
    // test pins what metrics_check says about a squatter that answers.
    let (out, took) = rig.run(&["--skip-preflight"]);
    rig.assert_fault(
        &out,
        took,
        &Fault {
            status: "failed",
            code: 2,
            cause: &["node-exporter serves metrics", "not Prometheus exposition"],
            within: Duration::from_secs(40),
            previous: None,
        },
    );
    assert!(server.accepted() > 0, "the check really asked the squatter");
}

/// A minimal HTTP server answering every request with an HTML page; stops on drop.
fn html_server(addr: SocketAddr) -> TcpStandin {
    TcpStandin::start(addr, |mut conn| {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let body = "<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body><h1>It works</h1></body></html>\n";
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    })
}

// ---------------------------------------------------------------------------------------------
// Consul faults

#[test]
fn fault_one_consul_agent_down_fails_over() {
    let Some(rig) = Rig::start(4, 2) else { return };
    rig.consul.rt.block_on(rig.consul.d.stop());
    let (out, took) = rig.run(&[]);
    let ctx = format!("stderr:\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    for (h, (s, _)) in host_status(&report(&out)) {
        assert_eq!(s, "changed", "{h}\n{ctx}");
    }
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let second = &rig.more_agents[0];
    let ids: Vec<String> = second.services().into_iter().map(|s| s.id).collect();
    assert_eq!(
        ids.len(),
        8,
        "every service landed on the second agent: {ids:?}"
    );
    for h in rig.fleet.hosts() {
        for svc in ["node-exporter", "cadvisor-exporter"] {
            let id = format!("{svc}-{}-{}", h.name, h.ip);
            assert!(ids.contains(&id), "{id} in {ids:?}");
        }
    }
    assert!(rig.retry_list().is_empty());
    rig.assert_files_whole(&rig.rendered(), None);
}

#[test]
fn fault_all_consul_agents_down_then_recover() {
    let Some(rig) = Rig::start(4, 2) else { return };
    rig.consul.rt.block_on(async {
        rig.consul.d.stop().await;
        rig.more_agents[0].stop().await;
    });
    let (out, took) = rig.run(&[]);
    let ctx = format!("stderr:\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(2), "{ctx}");
    assert!(took < Duration::from_secs(40), "took {took:?}");
    let r = report(&out);
    for h in r["hosts"].as_array().expect("hosts") {
        assert_eq!(h["status"], "failed", "{h:#}");
        let err = h["error"].as_str().unwrap_or_default();
        assert!(
            err.contains("register node-exporter in Consul")
                && err.contains("no Consul agent accepted")
                && !err.contains('\n'),
            "{err}"
        );
        let reg = h["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .find(|t| t["module"] == "consul_register")
            .expect("register task");
        assert_eq!(reg["attempts"], 2, "retried: {reg:#}");
    }
    let mut want: Vec<String> = rig.fleet.hosts().map(|h| h.name.clone()).collect();
    want.sort();
    assert_eq!(rig.retry_list(), want);
    // The exporters stay deployed and running: only discovery is missing.
    for h in rig.fleet.hosts() {
        assert_eq!(
            testkit::standin::running_services(&h.deploy_dir()),
            vec!["cadvisor-exporter", "node-exporter"],
            "{}",
            h.name
        );
    }
    rig.assert_files_whole(&rig.rendered(), None);

    rig.consul.rt.block_on(async {
        rig.consul.d.restart().await.expect("restart");
        rig.more_agents[0].restart().await.expect("restart");
    });
    let (out, _) = rig.run(&[]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let total = rig.consul.d.services().len() + rig.more_agents[0].services().len();
    assert_eq!(total, 8, "2 services × 4 hosts, each on one agent");
    assert!(rig.retry_list().is_empty());
    for h in rig.fleet.hosts() {
        assert_eq!(
            testkit::standin::starts(&h.deploy_dir()),
            1,
            "{}: not restarted",
            h.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Disk faults

const OLD_COMPOSE: &str = "# the previous exporter compose file\nversion: \"2.4\"\nservices: {}\n";

/// Give BAD a deploy dir holding an old compose file, owned by the login user.
fn seed_old_file(rig: &Rig) -> PathBuf {
    let dir = rig.fleet.host(BAD).expect("host").deploy_dir();
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("docker-compose.yml"), OLD_COMPOSE).expect("write");
    chown_to_user(&rig.fleet, &dir);
    chown_to_user(&rig.fleet, &dir.join("docker-compose.yml"));
    dir
}

#[test]
fn fault_read_only_deploy_dir_keeps_old_file() {
    let Some(rig) = Rig::start(4, 1) else { return };
    let dir = seed_old_file(&rig);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let (out, took) = rig.run(&[]);
    rig.assert_fault(
        &out,
        took,
        &Fault {
            status: "failed",
            code: 2,
            cause: &[
                "exporter compose file",
                "Permission denied",
                "previous version left in place",
            ],
            within: Duration::from_secs(30),
            previous: Some(OLD_COMPOSE),
        },
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("docker-compose.yml")).expect("read"),
        OLD_COMPOSE
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Unmounts on drop.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn fault_disk_full_keeps_old_file() {
    let Some(rig) = Rig::start(4, 1) else { return };
    let dir = rig.fleet.host(BAD).expect("host").deploy_dir();
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4k,mode=0755", "pf-full"])
        .arg(&dir)
        .stderr(Stdio::piped())
        .output()
        .expect("mount");
    if !mounted.status.success() {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here: {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        return;
    }
    let _m = Mount(dir.clone());
    chown_to_user(&rig.fleet, &dir);
    // The old file takes the tmpfs' only page: nothing else fits.
    let old = format!("{OLD_COMPOSE}#{}\n", "x".repeat(3000));
    std::fs::write(dir.join("docker-compose.yml"), &old).expect("write");
    chown_to_user(&rig.fleet, &dir.join("docker-compose.yml"));
    // Preflight would block this host before any write (tests/preflight.rs); this test pins
    // the write itself failing on a disk that fills after preflight.
    let (out, took) = rig.run(&["--skip-preflight"]);
    rig.assert_fault(
        &out,
        took,
        &Fault {
            status: "failed",
            code: 2,
            cause: &[
                "exporter compose file",
                "No space left on device",
                "previous version left in place",
            ],
            within: Duration::from_secs(30),
            previous: Some(&old),
        },
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("docker-compose.yml")).expect("read"),
        old
    );
}

// ---------------------------------------------------------------------------------------------
// Signals

/// SIGINT/SIGTERM one second into a 50-host run: promfleet stops starting work, lets steps in
/// flight finish, writes the run state and exits 130 within a grace bound; every compose
/// file is absent or whole.
fn interrupted_run(sig: libc::c_int) -> Option<(Rig, Value, Vec<String>)> {
    if !require_root() {
        return None;
    }
    let consul = Double::start();
    let fleet = Fleet::builder()
        .hosts(50)
        .shared_sshd(true)
        .fake_node_exporter(true)
        .consul_agents([consul.d.url()])
        .start()
        .expect("fleet");
    let rig = Rig {
        consul,
        more_agents: Vec::new(),
        inv: fleet.root().join("inventory.yml"),
        fleet,
        book: repo().join("playbooks/exporters.yml"),
    };
    rig.write_inventory(&[]);
    let rendered = rig.rendered();
    // Steps in flight finish within their own deadlines, which this run sets: the bound on
    // "exits soon after the signal" is their sum, not a guess at how loaded the machine is.
    const COMMAND_TIMEOUT: u64 = 10;
    const METRICS_TIMEOUT: u64 = 10;
    const CONNECT_TIMEOUT: u64 = 2; // FAST's --connect-timeout
    let bound = Duration::from_secs(COMMAND_TIMEOUT + METRICS_TIMEOUT + CONNECT_TIMEOUT);
    let mut child = Watched::spawn(rig.command(&[
        "--forks",
        "50",
        "--command-timeout",
        &COMMAND_TIMEOUT.to_string(),
        "-e",
        &format!("metrics_timeout={METRICS_TIMEOUT}"),
    ]));
    // A signal while the run still plans ends it with no run state (its own test:
    // `regression::sigterm_during_planning_killed_deploy`), so this one comes once the hosts
    // are being worked on: the first compose file written. Waiting a fixed second after the
    // state lock let a slow planning under load take the signal instead.
    let started = Instant::now();
    let working = || {
        rig.fleet
            .hosts()
            .any(|h| h.deploy_dir().join("docker-compose.yml").exists())
    };
    while !working() {
        // A run that ended (or never got going) is told by what it said, not by the timeout.
        if let Ok(Some(status)) = child.child.try_wait() {
            panic!(
                "the run ended ({status}) before any host got its compose file; stderr:\n{}",
                child.text()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no host got its compose file in 300 s; stderr so far:\n{}",
            child.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.signal(sig);
    let (out, grace) = child.finish(2 * bound);
    let ctx = format!("stderr:\n{}", stderr(&out));
    assert!(
        grace < bound,
        "exited {grace:?} after the signal (the deadlines of steps in flight add up to {bound:?})\n{ctx}"
    );
    assert_eq!(out.status.code(), Some(130), "{ctx}");
    assert!(stderr(&out).contains("interrupted"), "{ctx}");
    let r = report(&out);
    assert_eq!(r["interrupted"], true);
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(rig.state_dir().join("last-run.json"))
            .unwrap_or_else(|e| panic!("last-run.json: {e}\n{ctx}")),
    )
    .expect("state is JSON");
    assert_eq!(state["interrupted"], true, "{state:#}");
    // The signal really came mid-run: some host had not finished its tasks.
    let tasks = 6;
    let cut_short: Vec<String> = r["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter(|h| h["tasks"].as_array().map_or(0, Vec::len) < tasks)
        .map(|h| h["host"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        !cut_short.is_empty(),
        "the signal came after the run was done"
    );
    rig.assert_files_whole(&rendered, None);
    Some((rig, r, cut_short))
}

#[test]
fn fault_sigint_during_50_host_run() {
    interrupted_run(libc::SIGINT);
}

#[test]
fn fault_sigterm_during_50_host_run() {
    interrupted_run(libc::SIGTERM);
}

/// A host whose tasks were cut short by the signal has not been deployed: it must not be
/// reported ok/changed, and it must be in the retry file so `--retry-failed` finishes it.
#[test]

fn fault_interrupted_hosts_are_listed_for_retry() {
    let Some((rig, r, cut_short)) = interrupted_run(libc::SIGINT) else {
        return;
    };
    let retry = rig.retry_list();
    for h in r["hosts"].as_array().expect("hosts") {
        let name = h["host"].as_str().unwrap_or_default();
        if cut_short.iter().any(|c| c == name) {
            assert!(
                h["status"] != "changed" && h["status"] != "ok",
                "{name} ran {} of 6 tasks but is reported {}",
                h["tasks"].as_array().map_or(0, Vec::len),
                h["status"]
            );
            assert!(retry.iter().any(|x| x == name), "{name} not in retry file");
        }
    }
}
