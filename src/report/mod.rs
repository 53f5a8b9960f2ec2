//! What a run leaves behind: the events the executor sends through `Reporter` (one
//! implementation draws the terminal, `TerminalReporter`; `Silent` drops them), the final
//! `RunReport` and PLAY RECAP, the exit code, the state files (`RunState`, `StateLock`,
//! `write_atomic`) and the `Masker`. There is no JSON reporter: `--output json` prints the
//! whole `RunReport` once the run ends (cli/common.rs `print_report`). `status`, `exec`,
//! `alert` and `consul prune` still print from their cli modules, and the CLI keeps the
//! run's masker in a global (`cli::common::masker`).

mod atomic;
mod event;
mod lock;
mod mask;
mod recap;
mod state;
mod terminal;

pub use atomic::write_atomic;
pub use event::{
    ExitCode, GateResult, HostReport, HostStatus, Reporter, RunReport, Silent, TaskReport,
};
pub use lock::{LockError, StateLock};
pub use mask::Masker;
pub use recap::recap;
pub use state::{HostChange, RunState, STATE_DIR};
pub use terminal::TerminalReporter;
