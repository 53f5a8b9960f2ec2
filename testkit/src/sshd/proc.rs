//! Process bookkeeping over /proc: find what a fleet started (by ancestry or by a path in the
//! command line), terminate it, and reap orphaned exporters. Owns no processes itself.

use std::path::Path;
use std::time::{Duration, Instant};

/// Parent pid and state letter of a process, `None` if it is gone.
fn stat(pid: i32) -> Option<(i32, char, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: split after the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 2..)?.split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state, comm))
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// True while `pid` exists and is not a zombie.
pub(crate) fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some((_, s, _)) if s != 'Z')
}

/// All descendants of `pid` (children first level first), excluding `pid` itself.
pub(crate) fn descendants(pid: i32) -> Vec<i32> {
    let table: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter_map(|p| stat(p).map(|(pp, _, _)| (p, pp)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &table {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// Live processes whose command line mentions `needle` (e.g. a fleet's root dir).
pub(crate) fn with_cmdline_containing(needle: &Path) -> Vec<i32> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&p| p != me && alive(p))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| c.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

/// SIGTERM, wait up to `grace`, then SIGKILL whatever is left.
pub(crate) fn terminate(pids: &[i32], grace: Duration) {
    for &p in pids {
        // SAFETY: plain kill(2) on a pid we found; a stale pid at worst gets ESRCH.
        unsafe { libc::kill(p, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        reap_orphans();
        std::thread::sleep(Duration::from_millis(10));
    }
    for &p in pids.iter().filter(|&&p| alive(p)) {
        // SAFETY: as above.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
}

/// Make this process the reaper of orphans from its subtree. Exporters that the compose
/// stand-in detaches would otherwise end up as zombies under a PID 1 that never reaps
/// (as in this CI VM).
pub(crate) fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Reap zombie children that are orphaned exporters or sshd session processes. Only those, by
/// name: other zombies are children some `std::process::Child` in the test will still `wait()` for.
pub(crate) fn reap_orphans() {
    let me = std::process::id() as i32;
    for p in all_pids() {
        if let Some((pp, 'Z', comm)) = stat(p)
            && pp == me
            && (comm.starts_with("prometheus-node") || comm == "fake-cadvisor" || comm == "sshd")
        {
            let mut status = 0;
            // SAFETY: waitpid on a zombie child of ours, non-blocking.
            unsafe { libc::waitpid(p, &mut status, libc::WNOHANG) };
        }
    }
}
