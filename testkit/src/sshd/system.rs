//! Machine-wide setup the fleet needs, done idempotently once per process: the login users
//! (`pftest` with passwordless sudo, `pfnosudo` without, `pfpwsudo` with sudo behind a
//! password), their sudoers drop-ins and /run/sshd. Touches /etc (users, sudoers.d, the
//! password file) and nothing else outside the fleet's temp dir.

use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The login user with NOPASSWD sudo (for `become` tests).
pub const SUDO_USER: &str = "pftest";
/// A login user without sudo rights (negative `become` tests).
pub const NOSUDO_USER: &str = "pfnosudo";

/// A login user whose sudo asks for its password (`become` with a password).
pub const PASSWORD_SUDO_USER: &str = "pfpwsudo";

/// A login user whose login shell is zsh ([`ZSH`], when installed; else /bin/sh): sshd hands
/// every command to it, and zsh does not split `$x` into fields as sh does.
pub const ZSH_USER: &str = "pfzsh";

/// Where Debian installs zsh (the `zsh` package; scripts/install-deps.sh installs it).
pub const ZSH: &str = "/usr/bin/zsh";

const SUDOERS_DROPIN: &str = "/etc/sudoers.d/promfleet-testkit";
// A file of its own: test processes built from older testkits rewrite the one above.
const PASSWORD_SUDOERS_DROPIN: &str = "/etc/sudoers.d/promfleet-testkit-password";
/// `PASSWORD_SUDO_USER`'s password, random, chosen once per machine, readable by root only:
/// a fixed one would give every local user root through `su` and sudo.
const PASSWORD_FILE: &str = "/etc/promfleet-testkit-sudo-password";

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
    ensure_user(PASSWORD_SUDO_USER)?;
    ensure_user(ZSH_USER)?;
    ensure_password()?;
    install_sudoers(
        SUDOERS_DROPIN,
        &format!(
            "# promfleet testkit: passwordless sudo for become tests\n\
             Defaults:{SUDO_USER} env_keep += \"SSH_CONNECTION\"\n\
             {SUDO_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n"
        ),
    )?;
    // timestamp_timeout=0: sudo asks on every command, never "remembers" the password, so
    // tests see the password path every time (the passwordless user covers "not asked").
    install_sudoers(
        PASSWORD_SUDOERS_DROPIN,
        &format!(
            "# promfleet testkit: sudo with a password for become tests\n\
             Defaults:{PASSWORD_SUDO_USER} env_keep += \"SSH_CONNECTION\", timestamp_timeout=0\n\
             {PASSWORD_SUDO_USER} ALL=(ALL:ALL) ALL\n"
        ),
    )?;
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

/// The login shell of a test user: /bin/sh, not bash (bash's startup costs ~0.1 s per remote
/// command here); zsh for [`ZSH_USER`] where it is installed.
fn login_shell(user: &str) -> &'static str {
    if user == ZSH_USER && std::path::Path::new(ZSH).exists() {
        ZSH
    } else {
        "/bin/sh"
    }
}

fn ensure_user(user: &str) -> Result<(u32, u32)> {
    let shell = login_shell(user);
    if lookup(user)?.is_none() {
        let out = Command::new("useradd")
            .args(["--system", "--create-home", "--home-dir"])
            .arg(format!("/var/lib/{user}"))
            .args(["--shell", shell, user])
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
    // A user made before zsh was installed gets it now.
    let passwd = std::fs::read_to_string("/etc/passwd").context("read /etc/passwd")?;
    let current = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(user))
        .and_then(|l| l.rsplit(':').next());
    if current.is_some_and(|c| c != shell) {
        let st = Command::new("usermod")
            .args(["--shell", shell, user])
            .status()
            .context("run usermod")?;
        if !st.success() {
            bail!("usermod --shell {shell} {user} failed");
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

/// The password of [`PASSWORD_SUDO_USER`].
pub fn sudo_password() -> Result<String> {
    let pw = std::fs::read_to_string(PASSWORD_FILE)
        .with_context(|| format!("read {PASSWORD_FILE} (written by the fleet's setup)"))?;
    Ok(pw.trim().to_string())
}

/// Choose the password once per machine (the first process to link the file wins) and set it.
fn ensure_password() -> Result<()> {
    if std::path::Path::new(PASSWORD_FILE).exists() {
        return Ok(());
    }
    let mut raw = [0u8; 18];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .context("read /dev/urandom")?;
    // Letters, digits and shell/sudo-unfriendly characters: quoting bugs show up.
    let mut pw: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    pw.push_str(" $'\"%p");
    let tmp = format!("{PASSWORD_FILE}.tmp{}", std::process::id());
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("create {tmp}"))?;
        use std::io::Write;
        writeln!(f, "{pw}").with_context(|| format!("write {tmp}"))?;
    }
    let linked = std::fs::hard_link(&tmp, PASSWORD_FILE);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        // Another process chose first: set its password (the same value either way).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => pw = sudo_password()?,
        Err(e) => return Err(e).with_context(|| format!("create {PASSWORD_FILE}")),
    }
    let mut child = Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("run chpasswd")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("chpasswd stdin")?;
        writeln!(stdin, "{PASSWORD_SUDO_USER}:{pw}").context("write to chpasswd")?;
    }
    if !child.wait().context("wait for chpasswd")?.success() {
        bail!("chpasswd for {PASSWORD_SUDO_USER} failed");
    }
    Ok(())
}

fn install_sudoers(path: &str, want: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(want) {
        return Ok(());
    }
    if !std::path::Path::new("/usr/bin/sudo").exists() {
        bail!("sudo is not installed (apt-get install sudo)");
    }
    let tmp = format!("{path}.tmp{}", std::process::id());
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
        bail!("visudo rejected the sudoers drop-in {path}");
    }
    std::fs::rename(&tmp, path).with_context(|| format!("install {path}"))?;
    Ok(())
}
