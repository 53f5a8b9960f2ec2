//! `compose`: bring a docker-compose project up — only when one of its files changed in this
//! play or a service is not running. Detects `docker compose` (v2), then `docker-compose` (v1),
//! unless the inventory names the command (`compose_command`). One round trip.

use super::{Done, HostCtx, TaskError};
use crate::transport::{remote_path, sh_quote};

#[derive(Debug, Clone)]
pub struct ComposeAction {
    pub project_dir: String,
    pub file: String,
    /// Explicit compose command (e.g. `docker-compose`, a wrapper); detected when `None`.
    pub command: Option<String>,
    /// Service names, when the plan rendered the compose file itself (saves asking compose
    /// for `config --services` on every host and run).
    pub services: Option<Vec<String>>,
    /// Files whose change requires `up -d` (the compose file, `.env`, `env_file:` entries);
    /// other files in the project dir (e.g. prometheus.yml) are reloaded, not recreated.
    pub watch: Vec<String>,
}

impl ComposeAction {
    fn script(&self, force: bool, dry: bool) -> String {
        let cmd = self.command.clone().unwrap_or_default();
        format!(
            r#"cd {dir} || exit 10
cmd={cmd}
if [ -n "$cmd" ]; then dc="$cmd"
elif docker compose version >/dev/null 2>&1; then dc="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then dc=docker-compose
else echo "neither 'docker compose' nor 'docker-compose' found on this host" >&2; exit 127; fi
echo "__compose $dc"
expected={expected}
if [ -z "$expected" ]; then expected=$($dc -f {file} config --services) || exit 11; fi
running=$($dc -f {file} ps --services --filter status=running 2>/dev/null | tr '\n' ' ')
missing=""
for s in $expected; do case " $running " in *" $s "*) ;; *) missing="$missing $s";; esac; done
echo "__missing$missing"
if [ {force} = 1 ] || [ -n "$missing" ]; then
  if [ {dry} = 1 ]; then echo "__would_up"; exit 0; fi
  $dc -f {file} up -d --remove-orphans 1>&2 || exit $?
  echo "__up"
fi"#,
            dir = remote_path(&self.project_dir),
            cmd = sh_quote(&cmd),
            file = sh_quote(&self.file),
            force = u8::from(force),
            dry = u8::from(dry),
            expected = sh_quote(&self.services.clone().unwrap_or_default().join(" ")),
        )
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        let changed: Vec<&String> = ctx
            .changed_paths
            .iter()
            .filter(|p| self.watch.contains(p))
            .collect();
        let force = !changed.is_empty();
        let out = ctx
            .session()?
            .exec(&self.script(force, ctx.check), None)
            .await?;
        if out.status.is_none() {
            return Err(super::no_exit_status(ctx.session()?, "compose up").await);
        }
        let stdout = out.stdout_str();
        if !out.success() {
            let why = match out.status {
                Some(10) => format!("project dir {} does not exist", self.project_dir),
                Some(11) => format!("compose file rejected ({})", out.short_error()),
                _ => format!(
                    "compose up failed ({}){}",
                    out.short_error(),
                    hint(&out.stderr_str())
                ),
            };
            return Err(TaskError::permanent(ctx.masker.mask(&why)));
        }
        let missing = stdout
            .lines()
            .find_map(|l| l.strip_prefix("__missing"))
            .unwrap_or("")
            .trim()
            .to_string();
        let ran = stdout.lines().any(|l| l == "__up" || l == "__would_up");
        if !ran {
            return Ok(Done::ok().with("all services running, files unchanged"));
        }
        let why = match (force, missing.is_empty()) {
            (true, true) => "compose file changed".to_string(),
            (true, false) => format!("compose file changed; not running: {missing}"),
            (false, _) => format!("not running: {missing}"),
        };
        let verb = if ctx.check {
            "would run up -d"
        } else {
            "up -d"
        };
        Ok(Done::changed().with(format!("{verb} ({why})")))
    }
}

/// A fix for compose errors operators meet on real hosts.
fn hint(stderr: &str) -> &'static str {
    if stderr.contains("not a shared or slave mount") {
        // node-exporter's `/:/host:ro,rslave` needs a shared `/` (systemd hosts have one).
        " — this host's / is not a shared mount: set `node_exporter_host_mount: ro` for it in the inventory, or run `mount --make-rshared /`"
    } else if stderr.contains("permission denied while trying to connect to the Docker daemon") {
        " — the login user cannot use Docker: add it to the `docker` group or set `ssh.become: true`"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::hint;

    #[test]
    fn known_compose_errors_get_a_fix() {
        assert!(hint("Error response from daemon: path / is mounted on / but it is not a shared or slave mount").contains("node_exporter_host_mount"));
        assert!(
            hint("Got permission denied while trying to connect to the Docker daemon socket")
                .contains("docker` group")
        );
        assert_eq!(hint("ERROR: manifest unknown"), "");
    }
}
