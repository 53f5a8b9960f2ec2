//! The compose stand-in (`scripts/compose-standin`): where it is, and how tests read the state
//! it leaves in a project dir (`.standin/`): invocation log, running services, pid files.

use std::path::{Path, PathBuf};

/// Path of the stand-in script in the source tree (fleets copy it into their root).
pub fn compose_standin_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/compose-standin"
    ))
}

/// Path of the fake exporter binary built by testkit's build script.
pub fn fake_exporter_path() -> PathBuf {
    PathBuf::from(env!("TESTKIT_FAKE_EXPORTER"))
}

/// Path of the fake central services binary (`src/bin/fake-central.rs`) built by the build script.
pub fn fake_central_path() -> PathBuf {
    PathBuf::from(env!("TESTKIT_FAKE_CENTRAL"))
}

/// The requests a central placeholder (fake-central) answered for `service` of a project dir,
/// oldest first, as `METHOD path status` (e.g. `POST /-/reload 200`), across restarts.
pub fn requests(project_dir: &Path, service: &str) -> Vec<String> {
    std::fs::read_to_string(project_dir.join(format!(".standin/{service}.log")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("fake-central: "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(str::to_string)
        .collect()
}

/// The stand-in's calls in a project dir, oldest first, without timestamps:
/// `up started`, `up unchanged`, `up invalid`, `up failed`, `up failed-injected`, `ps`, `down`, …
pub fn calls(project_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(project_dir.join(".standin/calls.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()))
        .collect()
}

/// How many times `up` actually (re)started the services in a project dir.
pub fn starts(project_dir: &Path) -> usize {
    calls(project_dir)
        .iter()
        .filter(|c| *c == "up started")
        .count()
}

/// Services whose process is alive, per the pid files in a project dir.
pub fn running_services(project_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(project_dir.join(".standin")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".pid")?.to_string();
            let pid: i32 = std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            crate::sshd::proc::alive(pid).then_some(name)
        })
        .collect();
    out.sort();
    out
}

/// Make `up` fail in a project dir with `message` (removed by [`clear_fail_up`]).
pub fn fail_up(project_dir: &Path, message: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(project_dir)?;
    std::fs::write(project_dir.join(".standin-fail"), message)
}

/// Undo [`fail_up`].
pub fn clear_fail_up(project_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(project_dir.join(".standin-fail")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
