//! `compose`: bring a docker-compose project up — only when one of its files changed in this
//! play or a service is not running — and restart its services when a file they read only at
//! start (`restart_on`: a token, a certificate) changed in this play. What runs and what is
//! defined is the compose fact (`facts::compose`, shared with `status`); this module only
//! decides and runs `up -d` (and `restart`). Unchanged, it costs no round trip of its own (the
//! fact is prefetched with the host's other facts); forced by a write of the step just before,
//! its `up -d` runs in that write's round trip (`after_write`, then `run` reports it).
//!
//! Owns: the compose action (project, file, command, services, watched files) and its
//! arguments, what it learns from the compose file rendered earlier in the play (`link`), its
//! check against the fact, `up -d` and `restart`, and hints for compose errors seen on real
//! hosts.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use super::{Action, Args, Done, HostCtx, Module, PlanCtx, Task, TaskError};
use crate::facts::compose::{ComposeFact, ComposeState, DETECT};
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
    /// Files the services read only when they start (a mounted token or certificate): their
    /// change in this play restarts the services (`restart`, after `up -d` if that runs too:
    /// `up -d` recreates only the services whose definition changed).
    pub restart_on: Vec<String>,
}

/// `up -d` in the project dir, with the compose command the fact's probe would pick.
const UP: &str = r#"$dc -f "$file" up -d --remove-orphans 1>&2"#;

/// `restart` of every service, after `UP` when both run (exit 12: `restart` failed).
const RESTART: &str = r#"$dc -f "$file" restart 1>&2 || exit 12"#;

/// `compose`.
pub struct ComposeModule;

impl Module for ComposeModule {
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (&["project_dir"], &["file", "command", "restart_on"])
    }

    fn plan(&self, args: &Value, _cx: &mut PlanCtx<'_>) -> Result<Action, String> {
        let a = Args(args);
        let project_dir = a.str("project_dir")?;
        let file = a
            .opt_str("file")?
            .unwrap_or_else(|| "docker-compose.yml".into());
        let dir = project_dir.trim_end_matches('/');
        Ok(Action::Compose(ComposeAction {
            watch: vec![format!("{dir}/{file}"), format!("{dir}/.env")],
            project_dir: project_dir.clone(),
            file,
            command: a.opt_str("command")?.filter(|c| !c.trim().is_empty()),
            services: None,
            restart_on: a.list("restart_on")?,
        }))
    }
}

impl Task for ComposeAction {
    super::task_run!();

    fn repeatable(&self) -> bool {
        false
    }

    fn needs_ssh(&self) -> bool {
        true
    }

    fn wants(&self) -> Vec<super::Want> {
        vec![super::Want::Project(self.clone())]
    }

    fn facts(&self) -> Vec<Box<dyn crate::facts::ErasedFact>> {
        vec![Box::new(self.fact())]
    }

    /// A watched file written by the step just before: `run` would bring the project up
    /// whatever its fact says (forced, the fact only peeked), so the write runs the very
    /// script `run` would, in its own round trip.
    fn after_write(&self, ctx: &HostCtx<'_>, dest: &str) -> Option<String> {
        if ctx.check || !self.watch.iter().any(|p| p == dest) {
            return None;
        }
        let facts = ctx.facts?;
        let state = facts.peek(&self.fact());
        let written = ctx.state.get::<super::file::Written>();
        let changed = |p: &str| p == dest || written.is_some_and(|w| w.contains(p));
        let restart = self.restarting(changed, &state);
        let command = self.command.clone().or_else(|| detected(facts, &state));
        Some(
            self.script(command.as_deref(), true, !restart.is_empty())
                .build(),
        )
    }
}

/// Give each `compose` action the service names of a compose file rendered earlier in the
/// same play (so the host need not be asked for them), and watch that file's `env_file:`s.
pub fn link(actions: Vec<&mut Action>) {
    let mut files: BTreeMap<String, Bytes> = BTreeMap::new();
    for a in actions {
        match a {
            Action::File(f) => {
                files.insert(f.dest.clone(), f.content.clone());
            }
            Action::Compose(c) => {
                let dir = c.project_dir.trim_end_matches('/').to_string();
                let path = format!("{dir}/{}", c.file);
                c.watch = vec![path.clone(), format!("{dir}/.env")];
                if let Some((services, env_files)) =
                    files.get(&path).and_then(|c| compose_services(c))
                {
                    c.services = Some(services);
                    c.watch.extend(env_files.into_iter().map(|f| {
                        let f = f.trim_start_matches("./");
                        if f.starts_with('/') {
                            f.to_string()
                        } else {
                            format!("{dir}/{f}")
                        }
                    }));
                }
            }
            _ => {}
        }
    }
}

/// Service names and `env_file:` entries of a compose file.
fn compose_services(content: &[u8]) -> Option<(Vec<String>, Vec<String>)> {
    let text = std::str::from_utf8(content).ok()?;
    let v: Value = serde_saphyr::from_str(text).ok()?;
    let services = v.get("services")?.as_object()?;
    let names: Vec<String> = services.keys().cloned().collect();
    let mut env_files = Vec::new();
    for svc in services.values() {
        match svc.get("env_file") {
            Some(Value::String(f)) => env_files.push(f.clone()),
            Some(Value::Array(a)) => {
                env_files.extend(a.iter().filter_map(|f| f.as_str().map(String::from)))
            }
            _ => {}
        }
    }
    (!names.is_empty()).then_some((names, env_files))
}

impl ComposeAction {
    /// The project as a fact (what `status` and `--check` read too).
    pub fn fact(&self) -> ComposeFact {
        ComposeFact {
            project_dir: self.project_dir.clone(),
            file: self.file.clone(),
            command: self.command.clone(),
            services: self.services.clone(),
        }
    }

    /// The files read only at start that this play changed (`changed`): the services restart
    /// to read them. A project nothing of which ran before (a first deploy: no project dir,
    /// or every service down) starts on the files as written: no restart after its `up -d`.
    /// Not known (the fact not asked): restart.
    fn restarting(
        &self,
        changed: impl Fn(&str) -> bool,
        state: &Option<ComposeState>,
    ) -> Vec<&str> {
        match state {
            Some(ComposeState::NoProjectDir) => Vec::new(),
            Some(ComposeState::Project(p)) if p.running.is_empty() => Vec::new(),
            _ => self
                .restart_on
                .iter()
                .filter(|p| changed(p))
                .map(String::as_str)
                .collect(),
        }
    }

    /// The `up -d` script (`up`), then `restart` (`restart`), with `command` as the compose
    /// command (None: detected by the script): exit 10 without the project dir, 127 without
    /// compose, 12 when `restart` failed.
    fn script(&self, command: Option<&str>, up: bool, restart: bool) -> Script {
        let s = Script::new()
            .path_var("dir", &self.project_dir)
            .var("cmd", command.unwrap_or_default())
            .var("file", &self.file)
            .fragment("set -f")
            .fragment(r#"cd -- "$dir" || exit 10"#)
            .fragment(DETECT);
        let s = if up {
            s.fragment("set -e").fragment(UP).fragment("set +e")
        } else {
            s
        };
        if restart { s.fragment(RESTART) } else { s }
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        let written = ctx.state.get::<super::file::Written>();
        let force = written.is_some_and(|w| self.watch.iter().any(|p| w.contains(p)));
        let changed = |p: &str| written.is_some_and(|w| w.contains(p));
        let fact = self.fact();
        let facts = ctx.facts()?;
        // Forced, the project is brought up whatever it runs: the fact is read only if it is
        // at hand (to say what was down), never asked for.
        let forced_apply = force && !ctx.check;
        let state = if forced_apply {
            facts.peek(&fact)
        } else {
            Some(facts.get(&fact).await.map_err(TaskError::from)?)
        };
        let missing = match &state {
            Some(ComposeState::Project(p)) => p.missing(),
            _ => Vec::new(),
        };
        // Forced, a project the fact could not read (asked before this play wrote it) is
        // brought up all the same; `up -d` reports what is still wrong.
        if !forced_apply
            && let Some(state) = &state
            && let Some(why) = fact.failure(state)
        {
            // `--check` on a host never deployed: the project dir (or its compose file) is
            // what an earlier task of this play would write, so a real run would get past
            // here and run `up -d`.
            match state {
                ComposeState::NoProjectDir if force => {
                    let what = format!("{} would be created", self.project_dir);
                    return Ok(Done::changed().with(format!("would run up -d ({what})")));
                }
                ComposeState::Rejected(_) if force => {
                    let what = format!("{} would be written", self.file);
                    return Ok(Done::changed().with(format!("would run up -d ({what})")));
                }
                _ => return Err(TaskError::permanent(ctx.masker.mask(&why))),
            }
        }
        let restart = self.restarting(changed, &state);
        let up = force || !missing.is_empty();
        if !up && restart.is_empty() {
            return Ok(Done::ok().with("all services running, files unchanged"));
        }
        let why = match (force, missing.is_empty()) {
            (true, true) => "compose file changed".to_string(),
            (true, false) => format!("compose file changed; not running: {}", missing.join(" ")),
            (false, _) => format!("not running: {}", missing.join(" ")),
        };
        let did = match (up, restart.is_empty()) {
            (true, true) => format!("up -d ({why})"),
            (true, false) => format!(
                "up -d ({why}), then restart ({} changed)",
                restart.join(", ")
            ),
            (false, _) => format!("restart ({} changed)", restart.join(", ")),
        };
        if ctx.check {
            return Ok(Done::changed().with(format!("would run {did}")));
        }
        let session = ctx.session()?;
        let command = self.command.clone().or_else(|| detected(facts, &state));
        let script = self.script(command.as_deref(), up, !restart.is_empty());
        let script = script.build();
        // Run by the write of the compose file, in its round trip (`after_write`): the same
        // script, decided from the same facts, so its output is this step's.
        let ran = ctx
            .state
            .take::<super::RanAhead>()
            .filter(|r| r.script == script);
        let out = match ran {
            Some(r) => r.output?,
            None => session.exec(&script, None).await?,
        };
        // Whatever happened, what the fact said is no longer what runs.
        facts.forget(&fact);
        if out.status.is_none() {
            return Err(super::no_exit_status(session, "compose up").await);
        }
        if !out.success() {
            let why = match out.status {
                Some(10) => format!("project dir {} does not exist", self.project_dir),
                Some(12) => format!(
                    "compose restart failed ({}){}",
                    out.short_error(),
                    hint(&out.stderr_str())
                ),
                _ => format!(
                    "compose up failed ({}){}",
                    out.short_error(),
                    hint(&out.stderr_str())
                ),
            };
            return Err(TaskError::permanent(ctx.masker.mask(&why)));
        }
        Ok(Done::changed().with(did))
    }
}

/// The compose command this run's facts already found on the host (this project's probe, or
/// preflight's compose probe, in the script's own order): the `up -d` then starts no
/// `docker compose version` of its own, which on a real host starts the Docker CLI and its
/// compose plugin (tens of ms of the host's CPU). None: the script detects it.
fn detected(facts: &crate::facts::Facts, state: &Option<ComposeState>) -> Option<String> {
    if let Some(ComposeState::Project(p)) = state {
        return Some(p.command.clone());
    }
    let info = facts.peek(&crate::facts::system::Compose::default())?;
    info.chosen("")?.ok().map(|c| c.command)
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
    use super::*;

    fn copy(dest: &str, content: &str) -> Action {
        Action::File(crate::fixtures::file(dest, content.as_bytes()))
    }

    fn compose(dir: &str) -> Action {
        Action::Compose(ComposeAction {
            project_dir: dir.into(),
            file: "docker-compose.yml".into(),
            command: None,
            services: None,
            watch: Vec::new(),
            restart_on: Vec::new(),
        })
    }

    #[test]
    fn compose_watches_its_file_env_and_env_files_and_knows_its_services() {
        let file = "services:\n  node:\n    image: x\n    env_file: [./node.env, /etc/shared.env]\n  cadvisor:\n    image: y\n    env_file: cadvisor.env\n";
        let mut actions = [
            copy("/opt/exp/docker-compose.yml", file),
            compose("/opt/exp/"),
        ];
        link(actions.iter_mut().collect());
        let Action::Compose(c) = &actions[1] else {
            panic!("not compose");
        };
        // Order is of no consequence (a membership test); compose's map is sorted by name.
        let mut watch = c.watch.clone();
        watch.sort();
        assert_eq!(
            watch,
            [
                "/etc/shared.env",
                "/opt/exp/.env",
                "/opt/exp/cadvisor.env",
                "/opt/exp/docker-compose.yml",
                "/opt/exp/node.env",
            ]
        );
        let mut services = c.services.clone().expect("services");
        services.sort();
        assert_eq!(services, ["cadvisor", "node"]);
    }

    #[test]
    fn compose_whose_file_is_not_planned_asks_compose_for_its_services() {
        let mut actions = [compose("/opt/exp")];
        link(actions.iter_mut().collect());
        let Action::Compose(c) = &actions[0] else {
            panic!("not compose");
        };
        assert_eq!(c.services, None);
        assert_eq!(c.watch, ["/opt/exp/docker-compose.yml", "/opt/exp/.env"]);
    }

    /// The script run by sh with a compose that logs its calls: `restart` runs after `up -d`
    /// succeeded, never after it failed, and its own failure is exit 12.
    #[test]
    fn restart_runs_after_a_successful_up_and_fails_as_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("calls");
        let run = |up: bool, restart: bool, fail: &str| -> (Option<i32>, String) {
            let dc = tmp.path().join("dc");
            std::fs::write(
                &dc,
                format!(
                    "#!/bin/sh\necho \"$3\" >> '{}'\n[ \"$3\" = '{fail}' ] && exit 3\nexit 0\n",
                    log.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dc, std::fs::Permissions::from_mode(0o755)).unwrap();
            let _ = std::fs::remove_file(&log);
            let a = ComposeAction {
                project_dir: tmp.path().display().to_string(),
                file: "docker-compose.yml".into(),
                command: Some(dc.display().to_string()),
                services: None,
                watch: Vec::new(),
                restart_on: Vec::new(),
            };
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(a.script(a.command.as_deref(), up, restart).build())
                .output()
                .unwrap();
            let calls = std::fs::read_to_string(&log).unwrap_or_default();
            (
                out.status.code(),
                calls.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        };
        assert_eq!(run(true, false, ""), (Some(0), "up".into()));
        assert_eq!(run(true, true, ""), (Some(0), "up restart".into()));
        assert_eq!(run(false, true, ""), (Some(0), "restart".into()));
        assert_eq!(run(true, true, "up"), (Some(3), "up".into()));
        assert_eq!(run(true, true, "restart"), (Some(12), "up restart".into()));
    }

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
