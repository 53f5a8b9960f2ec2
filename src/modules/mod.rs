//! Modules (operations): each compares wanted with actual state and acts only when they
//! differ — idempotency lives here. A module's file holds all of it: its arguments, defaults
//! and validation (`Module`, found by name through `ModuleKind::module`), and the planned
//! action's check against facts and apply (`Task`). They read hosts through `facts` and reach
//! them through a `transport::Transport` (SSH in a run, the in-memory fake in `tests`), and
//! services through HTTP; they never print (results go back to the executor). A failure is a
//! `TaskError` whose kind (unreachable, failed, timed out) comes from the transport error in
//! one place (`ErrorKind::from`).
//!
//! Run-wide services (the Consul client) and per-host module state (what `file` wrote, for
//! `compose`) reach modules through typed maps (`extensions`); what a read-only view needs of
//! an action (`status`, the health gate) it asks through `Task::wants`.
//!
//! Owns: the `Module` and `Task` traits, the registry, the generic `HostCtx` and `PlanCtx`,
//! wanted state, outcomes and task errors. Must not: print, or be named by the planner or the executor.

pub mod command;
pub mod compose;
pub mod consul;
pub mod consul_acl;
pub mod extensions;
pub mod file;
pub mod http;
pub mod metrics;
pub mod metrics_check;
pub mod prometheus;
pub mod restore;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::facts::{ErasedFact, FactError, Facts};
use crate::inventory::Host;
use crate::playbook::Renderer;
use crate::report::Masker;
use crate::transport::{Transport, TransportError};

pub use extensions::{HostState, Services};

/// The built-in modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleKind {
    Template,
    Copy,
    Command,
    Shell,
    Compose,
    MetricsCheck,
    ConsulRegister,
    ConsulDeregister,
    ConsulClusterCheck,
    ConsulAclAgentToken,
    Http,
    PrometheusTargets,
}

impl ModuleKind {
    pub const ALL: &'static [ModuleKind] = &[
        ModuleKind::Template,
        ModuleKind::Copy,
        ModuleKind::Command,
        ModuleKind::Shell,
        ModuleKind::Compose,
        ModuleKind::MetricsCheck,
        ModuleKind::ConsulRegister,
        ModuleKind::ConsulDeregister,
        ModuleKind::ConsulClusterCheck,
        ModuleKind::ConsulAclAgentToken,
        ModuleKind::Http,
        ModuleKind::PrometheusTargets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModuleKind::Template => "template",
            ModuleKind::Copy => "copy",
            ModuleKind::Command => "command",
            ModuleKind::Shell => "shell",
            ModuleKind::Compose => "compose",
            ModuleKind::MetricsCheck => "metrics_check",
            ModuleKind::ConsulRegister => "consul_register",
            ModuleKind::ConsulDeregister => "consul_deregister",
            ModuleKind::ConsulClusterCheck => "consul_cluster_check",
            ModuleKind::ConsulAclAgentToken => "consul_acl_agent_token",
            ModuleKind::Http => "http",
            ModuleKind::PrometheusTargets => "prometheus_targets",
        }
    }

    pub fn from_name(s: &str) -> Option<ModuleKind> {
        ModuleKind::ALL.iter().copied().find(|m| m.name() == s)
    }

    /// The module behind this name (the registry).
    pub fn module(self) -> &'static dyn Module {
        match self {
            ModuleKind::Template => &file::TEMPLATE,
            ModuleKind::Copy => &file::COPY,
            ModuleKind::Command | ModuleKind::Shell => &command::CommandModule,
            ModuleKind::Compose => &compose::ComposeModule,
            ModuleKind::MetricsCheck => &metrics_check::MetricsCheckModule,
            ModuleKind::ConsulRegister => &consul::RegisterModule,
            ModuleKind::ConsulDeregister => &consul::DeregisterModule,
            ModuleKind::ConsulClusterCheck => &consul::ClusterCheckModule,
            ModuleKind::ConsulAclAgentToken => &consul_acl::AgentTokenModule,
            ModuleKind::Http => &http::HttpModule,
            ModuleKind::PrometheusTargets => &prometheus::TargetsModule,
        }
    }

    /// Check argument names (values may still be templates); normalise shorthands.
    pub fn check_args(self, args: Value) -> Result<Value, (String, Option<String>)> {
        let module = self.module();
        let args = match args {
            Value::Object(m) => Value::Object(m),
            Value::Null => Value::Object(Default::default()),
            Value::String(s) if let Some(args) = module.shorthand(&s) => args,
            _ => return Err(("arguments must be a map of name: value".into(), None)),
        };
        let (req, opt) = module.keys();
        if let Value::Object(m) = &args {
            for k in m.keys() {
                if !req.contains(&k.as_str()) && !opt.contains(&k.as_str()) {
                    let all = req.iter().chain(opt.iter()).copied();
                    return Err((
                        format!("unknown argument `{k}`"),
                        Some(match crate::playbook::suggest(k, all) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "arguments are: {}",
                                req.iter()
                                    .chain(opt.iter())
                                    .copied()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        }),
                    ));
                }
            }
            for r in req {
                if !m.contains_key(*r) {
                    return Err((format!("missing argument `{r}`"), None));
                }
            }
        }
        Ok(args)
    }
}

/// A concrete operation for one host, with every value rendered.
#[derive(Debug, Clone)]
pub enum Action {
    File(file::FileAction),
    Command(command::CommandAction),
    Compose(compose::ComposeAction),
    MetricsCheck(metrics_check::MetricsCheck),
    ConsulRegister(consul::Register),
    ConsulDeregister(consul::Deregister),
    ConsulClusterCheck(consul::ClusterCheck),
    ConsulAclAgentToken(consul_acl::AgentToken),
    Http(http::HttpAction),
    PrometheusTargets(prometheus::TargetsCheck),
    /// Only planned by `promfleet rollback` (in place of the step that wrote the file).
    Restore(restore::RestoreAction),
}

/// A module: its arguments (names, shorthand, defaults, validation) and the action they
/// plan for one host. Each lives in the module's file; [`ModuleKind::module`] finds it.
pub trait Module: Sync {
    /// (required, optional) argument names.
    fn keys(&self) -> (&'static [&'static str], &'static [&'static str]);
    /// The arguments a plain string stands for (`command: "x"`); `None`: not allowed.
    fn shorthand(&self, _text: &str) -> Option<Value> {
        None
    }
    /// Rendered arguments → the action for one host, defaults filled in, values checked.
    fn plan(&self, args: &Value, cx: &mut PlanCtx<'_>) -> Result<Action, String>;
    /// Whether a task reads `word` through a file its arguments name (a template's source),
    /// so the planner gives it that variable. Arguments are not rendered yet.
    fn reads(&self, _args: &Value, _word: &str, _renderer: &mut Renderer) -> bool {
        false
    }
}

/// What a module may read while planning: the host, its variables, the templates. No network.
pub struct PlanCtx<'a> {
    pub host: &'a Host,
    pub vars: &'a tera::Context,
    pub renderer: &'a mut Renderer,
    /// `copy` sources read so far in this plan (each read once, shared by every host).
    pub copies: &'a mut BTreeMap<String, Bytes>,
}

/// A planned action's behaviour on a host: check against facts, apply, and what the executor
/// must know about it. Implemented in each module's file.
pub trait Task: Send + Sync {
    /// Run (or, in check mode, evaluate) the action on one host.
    fn run<'a, 'c>(&'a self, ctx: &'a mut HostCtx<'c>) -> BoxFuture<'a, Result<Done, TaskError>>;
    /// Whether running the action again after a failure is harmless (connecting, atomic
    /// uploads, GETs, registrations). A command (or `compose up`) that failed midway may
    /// have done part of its work, so it is never re-run.
    fn repeatable(&self) -> bool {
        true
    }
    /// Whether the action needs an SSH session to the host.
    fn needs_ssh(&self) -> bool {
        false
    }
    /// The facts the action reads on its host (prefetched together before the host's steps).
    fn facts(&self) -> Vec<Box<dyn ErasedFact>> {
        Vec::new()
    }
    /// The state the action establishes on its host, for the read-only views (`status`
    /// compares it with the host's facts, the health gate waits for its services).
    fn wants(&self) -> Vec<Want> {
        Vec::new()
    }
    /// The script this action would run if the step just before it changed the remote file
    /// `dest` (decided from what is known before that write), so the write runs it in its own
    /// round trip (`Transport::upload_then`) and hands the output on as `RanAhead`. `None`:
    /// the action does not depend on that write, or must see its result first.
    fn after_write(&self, _ctx: &HostCtx<'_>, _dest: &str) -> Option<String> {
        None
    }
}

/// Host state while a write that runs the next step's work (`Task::after_write`) is in
/// flight: `done` is set once the file is written, the next step's work then running. An
/// executor that abandons the step (second interrupt) records the file as changed (for
/// `rollback`) and names the next step as the one in flight.
#[derive(Debug)]
pub struct WriteInFlight {
    pub dest: String,
    pub done: Arc<std::sync::atomic::AtomicBool>,
}

/// Host state: the output of a script a write ran for the step after it (`Task::after_write`),
/// taken by that step, which uses it only if it would run the very same script.
#[derive(Debug)]
pub struct RanAhead {
    pub script: String,
    pub output: crate::transport::AfterWrite,
}

/// A piece of wanted state an action establishes on its host.
#[derive(Debug, Clone)]
pub enum Want {
    /// A file at `dest` with this content (SHA-256 hex).
    File { dest: String, sha256: String },
    /// A compose project with its services running.
    Project(compose::ComposeAction),
    /// A metrics endpoint answering with samples.
    Endpoint(metrics_check::MetricsCheck),
    /// A service registered for discovery (what Prometheus scrapes).
    Service(consul::ServiceDef),
}

/// A task's `run` as the inherent `async fn run` of its type.
macro_rules! task_run {
    () => {
        fn run<'a, 'c>(
            &'a self,
            ctx: &'a mut $crate::modules::HostCtx<'c>,
        ) -> futures::future::BoxFuture<'a, Result<$crate::modules::Done, $crate::modules::TaskError>>
        {
            Box::pin(Self::run(self, ctx))
        }
    };
}
pub(crate) use task_run;

/// What a step becomes in a rollback.
pub enum Rollback {
    /// Run as in the deploy (checks, compose up for the restored files, registration).
    Same,
    /// Leave out (it wrote a file the run did not change).
    Skip,
    /// Run this instead (restore the previous version of the file).
    Replace(Action),
}

impl Action {
    /// The module behind the action.
    pub fn task(&self) -> &dyn Task {
        match self {
            Action::File(a) => a,
            Action::Command(a) => a,
            Action::Compose(a) => a,
            Action::MetricsCheck(a) => a,
            Action::ConsulRegister(a) => a,
            Action::ConsulDeregister(a) => a,
            Action::ConsulClusterCheck(a) => a,
            Action::ConsulAclAgentToken(a) => a,
            Action::Http(a) => a,
            Action::PrometheusTargets(a) => a,
            Action::Restore(a) => a,
        }
    }

    /// See [`Task::repeatable`].
    pub fn repeatable(&self) -> bool {
        self.task().repeatable()
    }

    /// See [`Task::after_write`].
    pub fn after_write(&self, ctx: &HostCtx<'_>, dest: &str) -> Option<String> {
        self.task().after_write(ctx, dest)
    }

    /// See [`Task::facts`].
    pub fn facts(&self) -> Vec<Box<dyn ErasedFact>> {
        self.task().facts()
    }

    /// See [`Task::wants`].
    pub fn wants(&self) -> Vec<Want> {
        self.task().wants()
    }

    /// See [`Task::needs_ssh`].
    pub fn needs_ssh(&self) -> bool {
        self.task().needs_ssh()
    }

    /// Run (or, in check mode, evaluate) the action on one host.
    pub async fn run(&self, ctx: &mut HostCtx<'_>) -> Result<Done, TaskError> {
        self.task().run(ctx).await
    }

    /// This step in a rollback of `files` (the host's files this run changed).
    pub fn rollback(&self, files: &[String]) -> Rollback {
        match self {
            Action::File(f) => f.rollback(files),
            _ => Rollback::Same,
        }
    }
}

/// Links between the actions of one host's play, once all are planned: a `compose` step
/// learns its services and watched files from the compose file an earlier step renders.
pub fn link(actions: Vec<&mut Action>) {
    compose::link(actions);
}

/// What a task did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Changed,
    Skipped,
}

/// A task's result: outcome plus a short human detail (sample counts, which agent, …).
#[derive(Debug, Clone)]
pub struct Done {
    pub outcome: Outcome,
    pub detail: Option<String>,
    /// Unified diff of a changed file (`--diff`), masked.
    pub diff: Option<String>,
    /// The remote file the task changed (recorded in the run's state for `rollback`).
    pub wrote: Option<String>,
}

impl Done {
    pub fn ok() -> Done {
        Done {
            outcome: Outcome::Ok,
            detail: None,
            diff: None,
            wrote: None,
        }
    }
    pub fn changed() -> Done {
        Done {
            outcome: Outcome::Changed,
            detail: None,
            diff: None,
            wrote: None,
        }
    }
    /// Not run (check mode, condition false), with the reason.
    pub fn skipped(detail: impl Into<String>) -> Done {
        Done {
            outcome: Outcome::Skipped,
            detail: Some(detail.into()),
            diff: None,
            wrote: None,
        }
    }
    pub fn with(mut self, detail: impl Into<String>) -> Done {
        self.detail = Some(detail.into());
        self
    }
    /// Changed because it wrote the remote file `path`.
    pub fn wrote(mut self, path: impl Into<String>) -> Done {
        self.wrote = Some(path.into());
        self
    }
}

/// What kind of failure a task had: what the recap calls it and whether the executor
/// reconnects before a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The host could not be reached or spoken to (connect, host key, login, lost connection).
    Unreachable,
    /// The host answered and the task failed (exit status, refused write, sudo's refusal, a
    /// service's answer).
    Failed,
    /// A command outlived `--command-timeout`: it may have run, so it failed and is never
    /// run again.
    TimedOut,
}

impl From<&TransportError> for ErrorKind {
    /// The one place a transport error becomes a task's error kind.
    fn from(e: &TransportError) -> ErrorKind {
        match e {
            TransportError::CommandTimeout { .. } => ErrorKind::TimedOut,
            e if e.is_unreachable() => ErrorKind::Unreachable,
            _ => ErrorKind::Failed,
        }
    }
}

/// A task failure: message, kind, and whether retrying may help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub message: String,
    pub kind: ErrorKind,
    pub transient: bool,
}

impl TaskError {
    pub fn permanent(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            kind: ErrorKind::Failed,
            transient: false,
        }
    }
    pub fn transient(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            kind: ErrorKind::Failed,
            transient: true,
        }
    }
    /// The same failure, with what it left behind said after the cause.
    pub fn noting(mut self, note: &str) -> TaskError {
        self.message = format!("{} ({note})", self.message);
        self
    }
}

impl From<TransportError> for TaskError {
    fn from(e: TransportError) -> TaskError {
        TaskError {
            transient: e.is_transient(),
            kind: ErrorKind::from(&e),
            message: e.to_string(),
        }
    }
}

/// A remote command ended without an exit status: the connection died under it (host cut
/// off, keepalives unanswered) or the command was killed by a signal. A no-op on the same
/// session tells which, so a lost host is reported unreachable instead of as a failed command
/// with a misleading cause. Either way the command is not run again (`Action::repeatable`).
pub(crate) async fn no_exit_status(session: &dyn Transport, what: &str) -> TaskError {
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        session.exec("true", None),
    )
    .await;
    match probe {
        Ok(Ok(out)) if out.success() => TaskError::permanent(format!(
            "{what} was killed before it finished (no exit status)"
        )),
        Ok(Err(e)) => {
            let mut t = TaskError::from(e);
            t.message = format!("connection lost during {what}: {}", t.message);
            t
        }
        // The session is alive but cannot even run `true`: treat like a lost connection.
        _ => TaskError {
            message: format!("connection lost during {what}: the host stopped answering"),
            kind: ErrorKind::Unreachable,
            transient: true,
        },
    }
}

/// What a module sees while running on one host.
pub struct HostCtx<'a> {
    pub host: &'a Host,
    /// The host's connection (SSH, or `transport::fake` in tests); `None` when the host's
    /// steps need none.
    pub session: Option<&'a dyn Transport>,
    /// The host's facts for this run, over the same connection (`None` without one).
    pub facts: Option<&'a Facts>,
    pub http: &'a reqwest::Client,
    /// The run-wide services the caller built (each module asks for its own by type).
    pub services: &'a Services,
    pub check: bool,
    pub diff: bool,
    pub masker: &'a Masker,
    /// The host's module state in this play (kept across its steps and their retries).
    pub state: &'a mut HostState,
    /// The action of the host's next step (none for handlers): a write may run its work in
    /// the same round trip (`Task::after_write`).
    pub next: Option<&'a Action>,
}

impl<'a> HostCtx<'a> {
    pub fn session(&self) -> Result<&'a dyn Transport, TaskError> {
        self.session
            .ok_or_else(|| TaskError::permanent("no SSH session for this host"))
    }

    pub fn facts(&self) -> Result<&'a Facts, TaskError> {
        self.facts
            .ok_or_else(|| TaskError::permanent("no SSH session for this host"))
    }

    /// The run's service of type `T` (the Consul client, …).
    pub fn service<T: std::any::Any + Send + Sync>(&self) -> Result<Arc<T>, TaskError> {
        self.services.shared::<T>().ok_or_else(|| {
            TaskError::permanent(format!(
                "this command runs without {} (a module it does not support)",
                std::any::type_name::<T>()
            ))
        })
    }
}

impl From<FactError> for TaskError {
    /// A fact the host could not be asked fails like any command (the transport's kind); one
    /// whose answer makes no sense is a failure of the task.
    fn from(e: FactError) -> TaskError {
        match e {
            FactError::Transport(t) => TaskError::from(t),
            other => TaskError::permanent(other.to_string()),
        }
    }
}

/// Ask, in one round trip, every fact the actions will read on this host (file digests,
/// compose projects): then an unchanged host costs that one round trip. A failure here is
/// not the host's failure: each action asks again (and reports) what it still needs.
pub async fn prefetch<'a>(facts: &Facts, actions: impl IntoIterator<Item = &'a Action>) {
    let wanted: Vec<Box<dyn ErasedFact>> = actions.into_iter().flat_map(Action::facts).collect();
    let refs: Vec<&dyn ErasedFact> = wanted.iter().map(|f| f.as_ref()).collect();
    let _ = facts.prefetch(&refs).await;
}

/// Typed argument access for building actions from rendered JSON.
pub struct Args<'a>(pub &'a Value);

impl Args<'_> {
    pub fn str(&self, k: &str) -> Result<String, String> {
        match self.0.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::Bool(b)) => Ok(b.to_string()),
            Some(_) => Err(format!("`{k}` must be a string")),
            None => Err(format!("missing argument `{k}`")),
        }
    }
    pub fn opt_str(&self, k: &str) -> Result<Option<String>, String> {
        if self.0.get(k).is_none_or(Value::is_null) {
            Ok(None)
        } else {
            self.str(k).map(Some)
        }
    }
    pub fn u64(&self, k: &str) -> Result<u64, String> {
        let s = self.str(k)?;
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("`{k}` must be a whole number, got `{s}`"))
    }
    pub fn opt_u64(&self, k: &str) -> Result<Option<u64>, String> {
        if self.0.get(k).is_none_or(Value::is_null) {
            Ok(None)
        } else {
            self.u64(k).map(Some)
        }
    }
    pub fn bool(&self, k: &str, default: bool) -> Result<bool, String> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.trim() {
                "true" | "yes" | "True" => Ok(true),
                "false" | "no" | "False" | "" => Ok(false),
                _ => Err(format!("`{k}` must be true or false, got `{s}`")),
            },
            Some(_) => Err(format!("`{k}` must be true or false")),
        }
    }
    /// A TCP port, 1-65535.
    pub fn port(&self, k: &str) -> Result<u16, String> {
        let p = self.u64(k)?;
        u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{k}` must be a TCP port (1-65535), got {p}"))
    }
    pub fn list(&self, k: &str) -> Result<Vec<String>, String> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(format!("`{k}` must be a list of strings")),
                })
                .collect(),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(_) => Err(format!("`{k}` must be a list")),
        }
    }
}
