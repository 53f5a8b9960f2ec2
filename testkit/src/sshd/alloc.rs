//! Claims of shared resources (an SSH port, blocks of loopback addresses, netns subnets)
//! between fleets running at the same time, in this process or another: an flock on a file
//! under /tmp per resource, held for the claimant's lifetime and freed by the kernel even if
//! the process crashes.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

const LOCK_DIR: &str = "/tmp/promfleet-testkit-locks";

/// A held claim; dropping it releases the resource.
#[derive(Debug)]
pub(crate) struct Claim {
    _file: File,
}

/// Try to claim `name` without waiting.
pub(crate) fn try_claim(name: &str) -> Result<Option<Claim>> {
    std::fs::create_dir_all(LOCK_DIR).with_context(|| format!("create {LOCK_DIR}"))?;
    let path = PathBuf::from(LOCK_DIR).join(name);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open lock {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    Ok((rc == 0).then_some(Claim { _file: file }))
}

/// A TCP port free on every address (so any 127.x.y.z can listen on it), claimed.
/// 22022 first so inventories look familiar, then pseudo-random high ports.
pub(crate) fn claim_port() -> Result<(u16, Claim)> {
    let seed = std::process::id() as u64 ^ now_nanos();
    let candidates =
        std::iter::once(22022u16).chain((0..400u64).map(|i| {
            20000 + ((seed.wrapping_mul(2654435761).wrapping_add(i * 7919)) % 40000) as u16
        }));
    for port in candidates {
        let Some(claim) = try_claim(&format!("port-{port}"))? else {
            continue;
        };
        // Binding the wildcard fails if anything listens on the port on any address.
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return Ok((port, claim));
        }
    }
    bail!("no free TCP port found for the fleet's sshd")
}

/// Claim `count` consecutive third octets of 127.0.X.0 (hosts use 127.0.X.2..=251).
/// Returns the first octet and the claims.
pub(crate) fn claim_octets(count: usize) -> Result<(u8, Vec<Claim>)> {
    'base: for base in 0..=(256 - count) {
        let mut claims = Vec::with_capacity(count);
        for x in base..base + count {
            match try_claim(&format!("loopback-127.0.{x}"))? {
                Some(c) => claims.push(c),
                None => continue 'base,
            }
        }
        return Ok((base as u8, claims));
    }
    bail!("no free block of {count} loopback /24s for the fleet")
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
