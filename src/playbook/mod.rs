//! Playbooks → a typed Plan. `load` reads YAML into plays and tasks (with positions),
//! `plan` renders them per host, `template` owns tera and the context, `secrets` the
//! credentials. Plan first, execute second: `--check` is the plan compared, not applied.

mod load;
pub mod plan;
pub mod secrets;
pub mod template;

pub use load::{Play, Playbook, TaskDef, load, parse, suggest};
pub use plan::{HealthGate, HostPlan, Plan, PlanOptions, PlannedPlay, Serial, Step, plan};
pub use secrets::{MASK, SecretError, SecretMode, Secrets};
pub use template::{Renderer, SharedContext, slug};

use std::path::{Path, PathBuf};

use crate::inventory::{SourcePos, Vars};

/// Why a playbook could not be planned. Display starts with `file:line:col:`.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{}: cannot read playbook: {message}", .path.display())]
    Read { path: PathBuf, message: String },
    #[error("{pos}: {message}{}", .help.as_ref().map(|h| format!(" — {h}")).unwrap_or_default())]
    Syntax {
        pos: SourcePos,
        message: String,
        help: Option<String>,
    },
    #[error("{pos}: {message}{}", .help.as_ref().map(|h| format!(" — {h}")).unwrap_or_default())]
    Task {
        pos: SourcePos,
        message: String,
        help: Option<String>,
    },
}

/// Built-in variable defaults (`templates/defaults.yml`), lowest precedence.
pub fn load_defaults(path: &Path) -> Result<Vars, PlanError> {
    if !path.exists() {
        return Ok(Vars::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| PlanError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if text.trim().is_empty() {
        return Ok(Vars::new());
    }
    serde_saphyr::from_str::<Vars>(&text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        PlanError::Syntax {
            pos: SourcePos {
                file: path.to_path_buf(),
                line,
                column,
            },
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
            help: None,
        }
    })
}
