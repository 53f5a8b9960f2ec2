//! `compose`: bring a docker-compose project up — only when one of its files changed in this
//! play or a service is not running. Detects `docker compose` (v2), then `docker-compose` (v1),
//! unless the inventory names the command (`compose_command`). One round trip.

use super::{Done, HostCtx, TaskError};
use crate::transport::Script;

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

/// What the compose script does after reading the project's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeRun {
    /// `up -d` when `force` (a watched file changed) or a service is not running.
    Apply { force: bool },
    /// As `Apply`, but print `__would_up` instead of running it (`--check`).
    Check { force: bool },
    /// Report expected and running services only (`status`).
    Observe,
}

/// The one compose script, for deploy, `--check` and `status`. Exit codes: 10 project dir
/// missing, 11 `config --services` failed, 127 no compose command; else compose's own.
/// Prints `__compose <cmd>`, `__expected <svc…>`, `__running <svc…>`, `__missing <svc…>`,
/// then `__up` / `__would_up` when it ran (or would run) `up -d`.
const COMPOSE_SCRIPT: &str = r#"set -f
cd -- "$dir" || exit 10
if [ -n "$cmd" ]; then dc=$cmd
elif docker compose version >/dev/null 2>&1; then dc="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then dc=docker-compose
else echo "neither 'docker compose' nor 'docker-compose' found on this host" >&2; exit 127; fi
echo "__compose $dc"
if [ -z "$expected" ]; then expected=$($dc -f "$file" config --services) || exit 11; fi
running=$($dc -f "$file" ps --services --filter status=running 2>/dev/null | tr '\n' ' ')
echo "__expected" $expected
echo "__running" $running
missing=""
for s in $expected; do case " $running " in *" $s "*) ;; *) missing="$missing $s";; esac; done
echo "__missing$missing"
if [ "$run" = observe ]; then exit 0; fi
if [ "$force" = 1 ] || [ -n "$missing" ]; then
  if [ "$run" = check ]; then echo "__would_up"; exit 0; fi
  $dc -f "$file" up -d --remove-orphans 1>&2 || exit $?
  echo "__up"
fi"#;

impl ComposeAction {
    /// The compose script for this project (see [`COMPOSE_SCRIPT`]).
    pub fn script(&self, run: ComposeRun) -> Script {
        let (mode, force) = match run {
            ComposeRun::Apply { force } => ("apply", force),
            ComposeRun::Check { force } => ("check", force),
            ComposeRun::Observe => ("observe", false),
        };
        Script::new()
            .path_var("dir", &self.project_dir)
            .var("cmd", self.command.as_deref().unwrap_or_default())
            .var("file", &self.file)
            .var(
                "expected",
                &self.services.clone().unwrap_or_default().join(" "),
            )
            .var("run", mode)
            .var("force", if force { "1" } else { "0" })
            .fragment(COMPOSE_SCRIPT)
    }

    /// Why the compose script failed with `status`, for reports (shared with `status`).
    pub fn failure(&self, status: Option<u32>, short_error: &str, stderr: &str) -> String {
        match status {
            Some(10) => format!("project dir {} does not exist", self.project_dir),
            Some(11) => format!("compose file rejected ({short_error})"),
            _ => format!("compose up failed ({short_error}){}", hint(stderr)),
        }
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        let changed: Vec<&String> = ctx
            .changed_paths
            .iter()
            .filter(|p| self.watch.contains(p))
            .collect();
        let force = !changed.is_empty();
        let run = if ctx.check {
            ComposeRun::Check { force }
        } else {
            ComposeRun::Apply { force }
        };
        let out = ctx.session()?.exec(&self.script(run).build(), None).await?;
        if out.status.is_none() {
            return Err(super::no_exit_status(ctx.session()?, "compose up").await);
        }
        let stdout = out.stdout_str();
        if !out.success() {
            // `--check` on a host never deployed: the project dir (or its compose file) is
            // what an earlier task of this play would write, so a real run would get past
            // here and run `up -d`.
            if ctx.check && force && matches!(out.status, Some(10) | Some(11)) {
                let what = if out.status == Some(10) {
                    format!("{} would be created", self.project_dir)
                } else {
                    format!("{} would be written", self.file)
                };
                return Ok(Done::changed().with(format!("would run up -d ({what})")));
            }
            let why = self.failure(out.status, &out.short_error(), &out.stderr_str());
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
