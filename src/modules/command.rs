//! `command` / `shell`: run a command line through the host's shell. `changed` unless
//! `creates` names a path that already exists, or `changed_if_output` is set and the output
//! does not contain it (a command that repairs drift says so only when it did something).
//!
//! Owns: the arguments (and the plain-string shorthand), the remote script around the
//! operator's text, and what its output means. Never repeated after a failure.

use serde_json::Value;

use super::{Action, Args, Done, HostCtx, Module, PlanCtx, Task, TaskError};
use crate::transport::Script;

#[derive(Debug, Clone)]
pub struct CommandAction {
    pub cmd: String,
    pub creates: Option<String>,
    pub chdir: Option<String>,
    /// Report `changed` only when stdout contains this text.
    pub changed_if_output: Option<String>,
}

/// `command` and `shell` (the same: both run by `/bin/sh -c`, whatever the login shell).
pub struct CommandModule;

impl Module for CommandModule {
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (&["cmd"], &["creates", "chdir", "changed_if_output"])
    }

    fn shorthand(&self, text: &str) -> Option<Value> {
        Some(serde_json::json!({ "cmd": text }))
    }

    fn plan(&self, args: &Value, _cx: &mut PlanCtx<'_>) -> Result<Action, String> {
        let a = Args(args);
        Ok(Action::Command(CommandAction {
            cmd: a.str("cmd")?,
            creates: a.opt_str("creates")?,
            chdir: a.opt_str("chdir")?,
            changed_if_output: a.opt_str("changed_if_output")?,
        }))
    }
}

impl Task for CommandAction {
    super::task_run!();

    fn repeatable(&self) -> bool {
        false
    }

    fn needs_ssh(&self) -> bool {
        true
    }
}

impl CommandAction {
    /// The full remote command line: `creates`/`chdir` as quoted variables (prefixed so the
    /// operator's own text is unlikely to use the names), then the operator's shell text.
    pub fn script(&self) -> String {
        let mut s = Script::new();
        if let Some(c) = &self.creates {
            s = s.path_var("promfleet_creates", c).fragment(
                r#"if [ -e "$promfleet_creates" ]; then echo __promfleet_exists; exit 0; fi"#,
            );
        }
        if let Some(d) = &self.chdir {
            s = s
                .path_var("promfleet_chdir", d)
                .fragment(r#"cd -- "$promfleet_chdir" || exit 1"#);
        }
        s.operator_shell(&self.cmd).build()
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        if ctx.check {
            return Ok(Done::skipped(format!(
                "would run: {}",
                ctx.masker.mask(&self.cmd)
            )));
        }
        let session = ctx.session()?;
        let out = session.exec(&self.script(), None).await?;
        if out.status.is_none() {
            return Err(super::no_exit_status(session, "the command").await);
        }
        if out.stdout_str().trim() == "__promfleet_exists" {
            return Ok(Done::ok().with("creates exists"));
        }
        if !out.success() {
            return Err(TaskError::permanent(
                ctx.masker
                    .mask(&format!("command failed ({})", out.short_error())),
            ));
        }
        let last = out
            .stdout_str()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string());
        let changed = match &self.changed_if_output {
            Some(marker) => out.stdout_str().contains(marker.as_str()),
            None => true,
        };
        let done = if changed { Done::changed() } else { Done::ok() };
        Ok(match last {
            Some(l) => done.with(ctx.masker.mask(&l)),
            None => done,
        })
    }
}
