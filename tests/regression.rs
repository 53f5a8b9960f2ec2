//! Regression tests, each named after the defect it pins (ripgrep's `tests/regression.rs`):
//! every one failed on the code that had the defect.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::faults::Rig;
use crate::support::*;

/// How long the hanging `compose up` of [`hang_up_on`] sleeps: every bound on "promfleet
/// did not wait for it" is derived from it.
const HANG: Duration = Duration::from_secs(120);

/// Make `compose up` hang on one host (a wrapper around the stand-in that sleeps [`HANG`]
/// after touching a marker); returns the marker's path.
fn hang_up_on(rig: &Rig, host: &str) -> PathBuf {
    let h = rig.fleet.host(host).expect("host");
    let marker = h.dir.join("up-started");
    let wrapper = rig.fleet.root().join("bin").join("compose-hang");
    let real = rig.fleet.compose_command().display().to_string();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" up \"*) touch {m}; sleep {s};; esac\nexec {real} \"$@\"\n",
            m = marker.display(),
            s = HANG.as_secs()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let w = wrapper.display().to_string();
    rig.write_inventory(&[(host, &|l: String| l.replace(&real, &w))]);
    marker
}

fn state(rig: &Rig) -> Value {
    let text = std::fs::read_to_string(rig.state_dir().join("last-run.json"))
        .unwrap_or_else(|e| panic!("last-run.json: {e}"));
    serde_json::from_str(&text).expect("state is JSON")
}

/// Issue 12 defect 9: Ctrl-C during `--pause` waited the pause out.
#[test]
fn ctrl_c_interrupts_pause_at_once() {
    let Some(rig) = Rig::start(4, 1) else { return };
    let yaml = std::fs::read_to_string(&rig.inv).expect("inventory");
    std::fs::write(
        &rig.inv,
        format!("{yaml}\nstages:\n  - {{ name: first, hosts: [IDE] }}\n  - {{ name: second, hosts: [Stage] }}\n"),
    )
    .expect("inventory");
    let pause = Duration::from_secs(300);
    let mut run = Watched::spawn(rig.command(&["--pause", &format!("{}s", pause.as_secs())]));
    assert!(
        run.wait_for("pausing", Duration::from_secs(120)),
        "never paused:\n{}",
        run.text()
    );
    run.signal(libc::SIGINT);
    // Far below the pause: waiting it out fails here.
    let (out, took) = run.finish(pause / 5);
    let ctx = stderr(&out);
    assert!(took < pause / 5, "{ctx}");
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::Interrupted as i32),
        "{ctx}"
    );
    assert_eq!(state(&rig)["interrupted"], true);
    let retry = rig.retry_list();
    for h in rig.fleet.hosts() {
        let second = h.group == "Stage";
        assert_eq!(
            retry.contains(&h.name),
            second,
            "{} ({}) in the retry file: {retry:?}\n{ctx}",
            h.name,
            h.group
        );
        assert_eq!(
            h.deploy_dir().join("docker-compose.yml").exists(),
            !second,
            "{}: a stage after the interrupted pause ran\n{ctx}",
            h.name
        );
    }
}

/// Issue 12 defect 9: a second Ctrl-C exited without writing the state or retry file.
#[test]
fn second_ctrl_c_still_writes_retry_file() {
    let Some(rig) = Rig::start(2, 1) else { return };
    let hung = "host002";
    let marker = hang_up_on(&rig, hung);
    let mut run = Watched::spawn(rig.command(&[]));
    assert!(
        wait_for_file(&marker, Duration::from_secs(120)),
        "compose up never started on {hung}:\n{}",
        run.text()
    );
    run.signal(libc::SIGINT);
    assert!(
        run.wait_for("interrupted:", HANG / 4),
        "first signal not seen:\n{}",
        run.text()
    );
    run.signal(libc::SIGINT);
    // Far below the hung step: waiting for it fails here.
    let (out, took) = run.finish(HANG / 4);
    let ctx = stderr(&out);
    assert!(took < HANG / 4, "{ctx}");
    eprintln!("exited {took:?} after the second signal");
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::Interrupted as i32),
        "{ctx}"
    );
    assert!(
        rig.retry_list().iter().any(|h| h == hung),
        "{hung} not in the retry file: {:?}\n{ctx}",
        rig.retry_list()
    );
    let st = state(&rig);
    assert_eq!(st["hosts"][hung], "not_run", "{ctx}");
    // The compose file written before the abandoned step is recorded for `rollback`.
    let files = st["changes"][hung]["files"].to_string();
    assert!(files.contains("docker-compose.yml"), "{st:#}");
    let r = report(&out);
    let h = r["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["host"] == hung)
        .expect("hung host");
    assert_eq!(h["status"], "not_run", "{h:#}");
    let err = h["error"].as_str().unwrap_or_default();
    assert!(err.contains("aborted during `exporters up`"), "{err}");
}

/// Issue 12 defect 12: two runs on one state directory could lose each other's updates; the
/// second is refused and told which run holds the directory.
#[test]
fn state_dir_is_locked_per_run() {
    let Some(rig) = Rig::start(2, 1) else { return };
    let marker = hang_up_on(&rig, "host002");
    let mut first = Watched::spawn(rig.command(&[]));
    assert!(
        wait_for_file(&marker, Duration::from_secs(120)),
        "compose up never started:\n{}",
        first.text()
    );
    // Without the lock the second run deploys too and hangs in the same `compose up`.
    let (out, _) = Watched::spawn(rig.command(&[])).finish(HANG / 4);
    let ctx = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::Error as i32),
        "{ctx}"
    );
    assert!(ctx.contains("is in use by another promfleet run"), "{ctx}");
    assert!(
        ctx.contains(&format!("pid {}", first.child.id())) && ctx.contains("command "),
        "names the holder: {ctx}"
    );
    assert!(
        !ctx.contains("--known-hosts"),
        "only the subcommand: the rest of a command line may hold secrets: {ctx}"
    );
    first.signal(libc::SIGINT);
    assert!(first.wait_for("interrupted:", HANG / 4), "{}", first.text());
    first.signal(libc::SIGINT);
    let (out, _) = first.finish(HANG / 4);
    assert_eq!(
        out.status.code(),
        Some(promfleet::report::ExitCode::Interrupted as i32)
    );
}

/// Issue 12 defect 12: state files went through a fixed `<name>.tmp`; anything at that path
/// (a directory, a symlink, another run's half-written file) broke or corrupted the state.
#[test]
fn state_files_are_written_through_a_unique_temp_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("last-run.tmp")).expect("squatter");
    let run = promfleet::report::RunReport::default();
    promfleet::report::RunState::record(dir.path(), &run, "inv.yml", &[])
        .expect("state written despite a squatted fixed temp name");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["last-run.json", "last-run.tmp"],
        "no temp file left"
    );
}
