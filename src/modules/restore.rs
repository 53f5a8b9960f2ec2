//! `rollback`'s file step: put `<dest>.prev` (the version before promfleet's last change)
//! back over `dest` with the transport's atomic write, which keeps the replaced version as
//! the new `.prev` (so a rollback can itself be rolled back), running the next step's work in
//! the same round trip as `template`/`copy` do (`file::write`). Planned by `promfleet rollback`
//! in place of the `template`/`copy` step that wrote `dest` (`FileAction::rollback`); never
//! written in a playbook.
//!
//! Owns: the restore action and its apply; it has no arguments (no `Module`).

use super::file::sha256_hex;
use super::{Done, HostCtx, TaskError};

#[derive(Debug, Clone)]
pub struct RestoreAction {
    pub dest: String,
    /// Mode and owner of the step that wrote `dest` (the restored file keeps them).
    pub mode: u32,
    pub owner: Option<String>,
}

impl super::Task for RestoreAction {
    super::task_run!();

    fn needs_ssh(&self) -> bool {
        true
    }
}

impl RestoreAction {
    pub fn prev(&self) -> String {
        format!("{}.prev", self.dest)
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        let session = ctx.session()?;
        let prev = self.prev();
        let Some(content) = session.read_file_exact(&prev).await? else {
            // Created by the last run (nothing before it) or .prev removed by hand.
            return Ok(Done::ok().with(format!(
                "no previous version of {} ({prev} missing): left as is",
                self.dest
            )));
        };
        let changed = if ctx.check {
            !session
                .file_matches(&self.dest, &sha256_hex(&content))
                .await?
        } else {
            let (content, owner) = (bytes::Bytes::from(content), self.owner.as_deref());
            let left = "current version left in place";
            super::file::write(ctx, &self.dest, content, self.mode, owner, left).await?
        };
        if !changed {
            return Ok(Done::ok().with(format!("{} already equals {prev}", self.dest)));
        }
        ctx.state
            .entry::<super::file::Written>()
            .0
            .push(self.dest.clone());
        Ok(Done::changed().wrote(&self.dest).with(if ctx.check {
            format!("would restore {} from {prev}", self.dest)
        } else {
            format!("restored {} from {prev}", self.dest)
        }))
    }
}
