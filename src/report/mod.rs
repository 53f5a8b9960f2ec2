//! Output through one door: the executor reports events through `Reporter`; the CLI picks
//! an implementation (progress bars, plain lines, JSON). Secrets are masked here.

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
