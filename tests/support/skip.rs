//! SKIPPED, with the reason printed, when the machine lacks what a test needs: a test that
//! cannot run must say so rather than pass silently.

use std::path::PathBuf;
use std::process::Command;

/// Root is needed for sshd fleets, users and network namespaces.
pub fn require_root() -> bool {
    if !testkit::sshd::is_root() {
        eprintln!("SKIPPED: needs root (sshd fleet, users, netns)");
        return false;
    }
    true
}

/// Whether `cmd` is on PATH (the caller prints its own SKIPPED line).
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Path of an installed tool, or None after printing why the test is skipped.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: `{name}` is not installed (CI installs it, see .ci/run)");
    }
    found
}
