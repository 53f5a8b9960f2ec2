//! `template` and `copy`: a file rendered (or copied) on the jump host, written to the host
//! with the transport's compare-then-atomic-write. The file fact (digest, mode, owner; asked
//! with the host's other facts in one round trip) answers "unchanged" without an upload and
//! answers `--check` on its own. A changed write also runs, in its own round trip, the work
//! the next step would do because of it (`Task::after_write`: compose's `up -d`).
//!
//! Owns: the file action (content, mode, owner, secret), its check against the file fact, the
//! write and its `--diff`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use serde_json::Value;

use super::{Action, Args, Done, HostCtx, Module, Outcome, PlanCtx, Rollback, Task, TaskError};
use crate::facts::files::FileFact;
use crate::playbook::Renderer;
use crate::transport::TransportError;

#[derive(Debug, Clone)]
pub struct FileAction {
    /// Template/source path under templates/ (for messages).
    pub src: String,
    pub dest: String,
    pub content: Bytes,
    pub mode: u32,
    /// The file holds secrets: written 0600 at most, never shown in diffs.
    pub secret: bool,
    /// `user[:group]` the file must belong to.
    pub owner: Option<String>,
}

/// `"0644"`, `"644"`, `644` → 0o644 (modes are always octal, as in Ansible).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim().trim_start_matches("0o");
    u32::from_str_radix(t, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("`mode` must be an octal file mode such as \"0644\", got `{s}`"))
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// `template` (rendered with the host's variables) and `copy` (as is).
pub struct FileModule {
    template: bool,
}

pub const TEMPLATE: FileModule = FileModule { template: true };
pub const COPY: FileModule = FileModule { template: false };

impl Module for FileModule {
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (&["src", "dest"], &["mode", "secret", "owner"])
    }

    fn plan(&self, args: &Value, cx: &mut PlanCtx<'_>) -> Result<Action, String> {
        let a = Args(args);
        let src = a.str("src")?;
        let secret = a.bool("secret", false)?;
        let mut mode = parse_mode(&a.opt_str("mode")?.unwrap_or_else(|| "0644".into()))?;
        if secret {
            mode &= 0o700;
        }
        let content = if self.template {
            cx.renderer.load(&src).map_err(|e| e.to_string())?;
            Bytes::from(
                cx.renderer
                    .render_file(&src, cx.vars)
                    .map_err(|e| e.to_string())?,
            )
        } else if let Some(c) = cx.copies.get(&src) {
            c.clone()
        } else {
            let c = Bytes::from(cx.renderer.read_raw(&src).map_err(|e| e.to_string())?);
            cx.copies.insert(src.clone(), c.clone());
            c
        };
        let owner = a.opt_str("owner")?.filter(|o| !o.is_empty());
        if let Some(o) = &owner {
            let ok = o.split(':').count() <= 2
                && o.split(':').all(|p| {
                    p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                });
            if !ok {
                return Err(format!(
                    "`owner` must be `user`, `user:group` or `:group` (names or ids), got {o:?}"
                ));
            }
        }
        Ok(Action::File(FileAction {
            src,
            dest: a.str("dest")?,
            content,
            mode,
            secret,
            owner,
        }))
    }

    /// A template whose source is itself a template expression may read anything.
    fn reads(&self, args: &Value, word: &str, renderer: &mut Renderer) -> bool {
        self.template
            && match args.get("src").and_then(Value::as_str) {
                Some(src) if !src.contains("{{") => renderer.mentions(src, word),
                _ => true,
            }
    }
}

/// Host state (`HostCtx::state`): the remote paths this play changed (or, in check mode,
/// would change) so far, written by `template`/`copy` and `restore`, read by `compose` to
/// decide on `up`.
#[derive(Debug, Default)]
pub struct Written(pub Vec<String>);

impl Written {
    pub fn contains(&self, path: &str) -> bool {
        self.0.iter().any(|p| p == path)
    }
}

impl Task for FileAction {
    super::task_run!();

    fn wants(&self) -> Vec<super::Want> {
        vec![super::Want::File {
            dest: self.dest.clone(),
            sha256: sha256_hex(&self.content),
        }]
    }

    fn needs_ssh(&self) -> bool {
        true
    }

    fn facts(&self) -> Vec<Box<dyn crate::facts::ErasedFact>> {
        vec![Box::new(FileFact::new(&self.dest))]
    }
}

impl FileAction {
    /// In a rollback, this write restores the previous version when the run changed the
    /// file, and is left out otherwise.
    pub fn rollback(&self, files: &[String]) -> Rollback {
        if !files.contains(&self.dest) {
            return Rollback::Skip;
        }
        Rollback::Replace(Action::Restore(super::restore::RestoreAction {
            dest: self.dest.clone(),
            mode: self.mode,
            owner: self.owner.clone(),
        }))
    }

    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        let session = ctx.session()?;
        let old = if ctx.diff {
            session.read_file(&self.dest).await?
        } else {
            None
        };
        let fact = FileFact::new(&self.dest);
        let sha = sha256_hex(&self.content);
        let owner = self.owner.as_deref();
        // Apply asks nothing the upload would not: a prefetched answer saves the upload, a
        // missing one costs nothing (the upload compares on its own).
        let known = match ctx.facts {
            // A fact that cannot be read leaves the question to the direct comparison below,
            // which reports the host's error if there is one.
            Some(f) if ctx.check => f.get(&fact).await.ok(),
            Some(f) => f.peek(&fact),
            None => None,
        };
        let unchanged = known.and_then(|s| s.unchanged_by(&sha, self.mode, owner));
        let changed = if unchanged == Some(true) {
            false
        } else if ctx.check {
            unchanged == Some(false) || !session.file_matches(&self.dest, &sha).await?
        } else {
            let content = self.content.clone();
            let owner = self.owner.as_deref();
            write(
                ctx,
                &self.dest,
                content,
                self.mode,
                owner,
                "previous version left in place",
            )
            .await?
        };
        if changed
            && !ctx.check
            && let Some(f) = ctx.facts
        {
            f.forget(&fact);
        }
        if !changed {
            return Ok(Done::ok());
        }
        ctx.state.entry::<Written>().0.push(self.dest.clone());
        let mut done = Done::changed().wrote(&self.dest).with(if ctx.check {
            format!("would write {}", self.dest)
        } else {
            format!("wrote {}", self.dest)
        });
        if ctx.diff {
            done.diff = Some(if self.secret {
                format!(
                    "--- {0}\n+++ {0}\n(secret file: content not shown)\n",
                    self.dest
                )
            } else {
                let old = old
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let new = String::from_utf8_lossy(&self.content);
                let d = similar::TextDiff::from_lines(old.as_str(), new.as_ref())
                    .unified_diff()
                    .context_radius(3)
                    .header(
                        &format!("{} (before)", self.dest),
                        &format!("{} (after)", self.dest),
                    )
                    .to_string();
                ctx.masker.mask(&d)
            });
        }
        debug_assert_eq!(done.outcome, Outcome::Changed);
        Ok(done)
    }
}

/// Write `content` to `dest` atomically (the transport's compare-then-rename) and say whether
/// it changed; the work the next step would do because of it (`Task::after_write`: compose's
/// `up -d`) runs in the same round trip, only if the file changes, its output left for that
/// step (`RanAhead`). `left` says what a failed write leaves (the `template`/`copy` step and
/// `rollback`'s restore say it differently).
pub(super) async fn write(
    ctx: &mut HostCtx<'_>,
    dest: &str,
    content: Bytes,
    mode: u32,
    owner: Option<&str>,
    left: &str,
) -> Result<bool, TaskError> {
    let session = ctx.session()?;
    let then = ctx.next.and_then(|n| n.after_write(ctx, dest));
    let written = match &then {
        Some(then) => {
            // Done once the upload says so, `then` still running: what the executor reads if
            // it abandons this step (second interrupt).
            let done = Arc::new(AtomicBool::new(false));
            ctx.state.insert(super::WriteInFlight {
                dest: dest.to_string(),
                done: done.clone(),
            });
            let r = session
                .upload_then(dest, content, mode, owner, then, &done)
                .await;
            ctx.state.take::<super::WriteInFlight>();
            r
        }
        None => session
            .upload_owned(dest, content, mode, owner)
            .await
            .map(|up| (up, None)),
    };
    // A failed write (disk full, read-only dir, connection lost) leaves the old file in place;
    // a lost connection stays unreachable, so it is retried on a new one (whose upload
    // compares again). A connection lost or timed out while the next step's work ran too may
    // have left the write done and that work begun.
    let (up, ran) = written.map_err(|e| {
        let note = match (&then, &e) {
            (Some(_), TransportError::Lost { .. } | TransportError::CommandTimeout { .. }) => {
                "the write may have finished, and the next step's work begun"
            }
            _ => left,
        };
        TaskError::from(e).noting(note)
    })?;
    if let (Some(script), Some(output)) = (then, ran) {
        ctx.state.insert(super::RanAhead { script, output });
    }
    Ok(up == crate::transport::Upload::Changed)
}
