//! `~/.ssh/config` (through the ssh2-config crate): HostName, User, Port, IdentityFile,
//! ProxyJump. Inventory settings win over the config file, the config file over defaults —
//! the same precedence Ansible uses.

use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

use super::Target;
use super::keys::{default_key_files, expand_home};
use crate::inventory::Host;

/// A parsed ssh client config, or none.
#[derive(Default)]
pub struct SshConfigFile {
    config: Option<SshConfig>,
}

impl SshConfigFile {
    /// Parse `path` (unknown options are ignored, like OpenSSH's `IgnoreUnknown`).
    pub fn load(path: &Path) -> Result<SshConfigFile, String> {
        let path = expand_home(path);
        if !path.exists() {
            return Ok(SshConfigFile::default());
        }
        let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut reader = std::io::BufReader::new(f);
        let config = SshConfig::default()
            .parse(&mut reader, ParseRule::ALLOW_UNKNOWN_FIELDS)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(SshConfigFile {
            config: Some(config),
        })
    }

    /// The connection target for an inventory host.
    pub fn target(&self, host: &Host, default_user: &str) -> Target {
        let alias = host
            .ssh
            .address
            .clone()
            .unwrap_or_else(|| host.ip.to_string());
        let params = self.config.as_ref().map(|c| {
            let mut p = c.query(&alias);
            // Users often write `Host ide-*` blocks for inventory names.
            p.overwrite_if_none(&c.query(&host.name));
            p
        });
        let p = params.as_ref();
        let address = p
            .and_then(|p| p.host_name.clone())
            .filter(|_| host.ssh.address.is_some())
            .unwrap_or(alias);
        let user = host
            .ssh
            .user
            .clone()
            .or_else(|| p.and_then(|p| p.user.clone()))
            .unwrap_or_else(|| default_user.to_string());
        let port = host.ssh.port.or(p.and_then(|p| p.port)).unwrap_or(22);
        let (keys, explicit) = if let Some(k) = &host.ssh.key {
            (vec![expand_home(k)], true)
        } else if let Some(files) = p.and_then(|p| p.identity_file.clone()) {
            (files.iter().map(|f| expand_home(f)).collect(), true)
        } else {
            (default_key_files(), false)
        };
        let jump = p
            .and_then(|p| p.proxy_jump.clone())
            .and_then(|j| j.into_iter().next())
            .filter(|j| j != "none")
            .map(|j| Box::new(self.jump_target(&j, &user, &keys)));
        Target {
            name: host.name.clone(),
            address,
            port,
            user,
            keys,
            keys_explicit: explicit,
            jump,
            become_root: host.ssh.become_root.unwrap_or(false),
            ..Target::default()
        }
    }

    /// `[user@]host[:port]` of a ProxyJump, resolved through the config once more.
    fn jump_target(&self, spec: &str, user: &str, keys: &[PathBuf]) -> Target {
        let spec = spec.trim_start_matches("ssh://");
        let (juser, rest) = match spec.split_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (jhost, jport) = match rest.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse::<u16>().ok()),
            _ => (rest.to_string(), None),
        };
        let p = self.config.as_ref().map(|c| c.query(&jhost));
        let p = p.as_ref();
        Target {
            name: format!("jump {jhost}"),
            address: p.and_then(|p| p.host_name.clone()).unwrap_or(jhost),
            port: jport.or(p.and_then(|p| p.port)).unwrap_or(22),
            user: juser
                .or_else(|| p.and_then(|p| p.user.clone()))
                .unwrap_or_else(|| user.to_string()),
            keys: p
                .and_then(|p| p.identity_file.clone())
                .map(|f| f.iter().map(|f| expand_home(f)).collect())
                .unwrap_or_else(|| keys.to_vec()),
            keys_explicit: false,
            jump: None,
            become_root: false,
            ..Target::default()
        }
    }
}
