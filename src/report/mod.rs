//! Everything that leaves the process as output, and what a run leaves behind.
//! - `Printer`: the output owner, built once in `main`; it holds the run's `Masker` and the
//!   one `Reporter` every command prints through.
//! - `Reporter`: typed events — the executor's progress, the scheduler's `Progress`, and
//!   each command's results (`RunReport`, `ExecResult`, `StatusReport`, `AlertOutcome`,
//!   `Pruned`). `TerminalReporter` draws them for people (`render` turns results into
//!   text); `JsonReporter` writes results as JSON on stdout (`--output json`, `exec --json`);
//!   `Silent` drops them.
//! - The final `RunReport` and PLAY RECAP, the exit code, the state files (`RunState`,
//!   `StateLock`, `write_atomic`).

mod atomic;
mod event;
mod json;
mod lock;
mod mask;
mod printer;
mod recap;
pub mod render;
mod state;
mod terminal;

pub use atomic::write_atomic;
pub use event::{
    ExecResult, ExecSummary, ExitCode, GateResult, HostListing, HostReport, HostStatus, ListedHost,
    Progress, PruneAction, Pruned, Reporter, RunReport, Silent, SshTargets, TaskReport,
};
pub use json::JsonReporter;
pub use lock::{LockError, StateLock};
pub use mask::Masker;
pub use printer::{Format, OutputPolicy, Printer};
pub use recap::recap;
pub use state::{HostChange, RunState, STATE_DIR};
pub use terminal::TerminalReporter;
