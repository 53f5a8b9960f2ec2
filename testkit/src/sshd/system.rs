//! Machine-wide setup the fleet needs, done idempotently once per process: the login users
//! (`pftest` with passwordless sudo, `pfnosudo` without), their sudoers drop-in and /run/sshd.
//! Touches /etc (users, sudoers.d) and nothing else outside the fleet's temp dir.

use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The login user with NOPASSWD sudo (for `become` tests).
pub const SUDO_USER: &str = "pftest";
/// A login user without sudo rights (negative `become` tests).
pub const NOSUDO_USER: &str = "pfnosudo";

const SUDOERS_DROPIN: &str = "/etc/sudoers.d/promfleet-testkit";

/// uid/gid of the login users.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Users {
    pub sudo: (u32, u32),
}

/// True when running as root (the fleet needs it: users, sshd, netns).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Set up users, sudoers and /run/sshd; cached for the process.
pub(crate) fn prepare() -> Result<Users> {
    static DONE: OnceLock<Users> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    if let Some(u) = DONE.get() {
        return Ok(*u);
    }
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(u) = DONE.get() {
        return Ok(*u);
    }
    if !is_root() {
        bail!("the test fleet needs root (users, sshd, sudoers); run the tests as root");
    }
    std::fs::create_dir_all("/run/sshd").context("create /run/sshd (sshd's privsep dir)")?;
    std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755))?;
    let users = Users {
        sudo: ensure_user(SUDO_USER)?,
    };
    ensure_user(NOSUDO_USER)?;
    ensure_sudoers()?;
    let _ = DONE.set(users);
    Ok(users)
}

fn lookup(user: &str) -> Result<Option<(u32, u32)>> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("read /etc/passwd")?;
    Ok(passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    }))
}

fn ensure_user(user: &str) -> Result<(u32, u32)> {
    if lookup(user)?.is_none() {
        // /bin/sh, not bash: bash's startup costs ~0.1 s per remote command here.
        let out = Command::new("useradd")
            .args(["--system", "--create-home", "--home-dir"])
            .arg(format!("/var/lib/{user}"))
            .args(["--shell", "/bin/sh", user])
            .output()
            .context("run useradd")?;
        // Exit 9 = already exists (another test process won the race).
        if !out.status.success() && out.status.code() != Some(9) {
            bail!(
                "useradd {user}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    // With `UsePAM no`, sshd refuses accounts whose password field starts with '!' (locked),
    // which is how useradd leaves them; '*' means "no password" without being locked.
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let locked = shadow.lines().any(|l| {
        l.split(':').next() == Some(user) && l.split(':').nth(1).is_some_and(|p| p.starts_with('!'))
    });
    if locked {
        let st = Command::new("usermod")
            .args(["-p", "*", user])
            .status()
            .context("run usermod")?;
        if !st.success() {
            bail!("usermod -p '*' {user} failed");
        }
    }
    lookup(user)?.with_context(|| format!("user {user} missing after useradd"))
}

fn ensure_sudoers() -> Result<()> {
    // SSH_CONNECTION survives sudo so the compose stand-in, run under `become`, still knows
    // which host address it serves.
    let want = format!(
        "# promfleet testkit: passwordless sudo for become tests\n\
         Defaults:{SUDO_USER} env_keep += \"SSH_CONNECTION\"\n\
         {SUDO_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    );
    if std::fs::read_to_string(SUDOERS_DROPIN).ok().as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    if !std::path::Path::new("/usr/bin/sudo").exists() {
        bail!("sudo is not installed (apt-get install sudo)");
    }
    let tmp = format!("{SUDOERS_DROPIN}.tmp{}", std::process::id());
    std::fs::write(&tmp, want).with_context(|| format!("write {tmp}"))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o440))?;
    // A file sudo cannot parse would lock out every later sudo: check before installing.
    let ok = Command::new("visudo")
        .args(["-cqf", &tmp])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let _ = std::fs::remove_file(&tmp);
        bail!("visudo rejected the sudoers drop-in");
    }
    std::fs::rename(&tmp, SUDOERS_DROPIN).with_context(|| format!("install {SUDOERS_DROPIN}"))?;
    Ok(())
}
