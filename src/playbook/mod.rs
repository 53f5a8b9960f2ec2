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

use std::path::PathBuf;

use crate::project::Project;

use crate::inventory::{SourcePos, Vars};

/// Why a playbook could not be planned. Display starts with `file:line:col:`.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{}: cannot read playbook: {message}", .path.display())]
    Read { path: PathBuf, message: String },
    /// A playbook, template or defaults file neither the project nor the binary has.
    #[error("{0}")]
    NotFound(String),
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

/// Variable defaults (`templates/defaults.yml`, the project's copy else the built-in one),
/// lowest precedence.
pub fn load_defaults(project: &Project) -> Result<Vars, PlanError> {
    let src = match project.find("templates/defaults.yml") {
        Ok(Some(src)) => src,
        Ok(None) => return Ok(Vars::new()),
        Err(e) => return Err(PlanError::NotFound(e.to_string())),
    };
    let path = src.path();
    let text = src.text().map_err(|e| PlanError::Read {
        path: path.clone(),
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
                file: path.clone(),
                line,
                column,
            },
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
            help: None,
        }
    })
}
