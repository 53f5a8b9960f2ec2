//! A real OpenSSH agent (`ssh-agent -D -a <sock>`) for agent-auth tests; killed on drop.

use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running ssh-agent.
pub struct SshAgent {
    child: Child,
    socket: PathBuf,
}

impl SshAgent {
    /// Start an agent whose socket is `<dir>/agent.sock`.
    pub fn start(dir: &Path) -> Result<SshAgent> {
        let socket = dir.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn ssh-agent")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !socket.exists() {
            if let Some(st) = child.try_wait()? {
                bail!("ssh-agent exited early ({st})");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("ssh-agent did not create {} within 5 s", socket.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(SshAgent { child, socket })
    }

    /// The socket path (for `SSH_AUTH_SOCK`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Add an unencrypted key.
    pub fn add(&self, key: &Path) -> Result<()> {
        self.ssh_add(key, None)
    }

    /// Add a passphrase-protected key (the passphrase goes through SSH_ASKPASS).
    pub fn add_with_passphrase(&self, key: &Path, passphrase: &str) -> Result<()> {
        self.ssh_add(key, Some(passphrase))
    }

    /// Number of identities the agent holds.
    pub fn count(&self) -> Result<usize> {
        let out = Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .context("run ssh-add -l")?;
        // Exit 1 = no identities.
        Ok(if out.status.success() {
            String::from_utf8_lossy(&out.stdout).lines().count()
        } else {
            0
        })
    }

    fn ssh_add(&self, key: &Path, passphrase: Option<&str>) -> Result<()> {
        let mut cmd = Command::new("ssh-add");
        cmd.arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let askpass = self.socket.with_extension("askpass");
        if let Some(p) = passphrase {
            // The passphrase travels in the environment, never in a file or argv.
            std::fs::write(
                &askpass,
                "#!/bin/sh\nprintf '%s\\n' \"$TESTKIT_PASSPHRASE\"\n",
            )?;
            std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
            cmd.env("SSH_ASKPASS", &askpass)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", ":0")
                .env("TESTKIT_PASSPHRASE", p);
        }
        let out = cmd.output().context("run ssh-add")?;
        let _ = std::fs::remove_file(&askpass);
        if !out.status.success() {
            bail!(
                "ssh-add {}: {}",
                key.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}
