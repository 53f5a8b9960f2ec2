//! Playbook files (YAML, Ansible-like) → typed, position-carrying plays. Nothing is rendered
//! here; `plan` does that per host.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::PlanError;
use crate::inventory::{SourcePos, Vars};
use crate::modules::ModuleKind;
use crate::project::{Origin, Project, ProjectError, Source};

/// A play as written.
#[derive(Debug, Clone)]
pub struct Play {
    pub name: String,
    pub hosts: Vec<String>,
    pub serial: Option<String>,
    pub max_fail_percentage: Option<f64>,
    /// Split the play's hosts into the inventory's rollout stages.
    pub staged: bool,
    pub vars: Vars,
    pub tasks: Vec<TaskDef>,
    pub handlers: Vec<TaskDef>,
    pub pos: SourcePos,
}

/// A task as written: one module with unrendered arguments.
#[derive(Debug, Clone)]
pub struct TaskDef {
    pub name: String,
    pub module: ModuleKind,
    pub args: Value,
    pub when: Option<String>,
    pub notify: Vec<String>,
    pub pos: SourcePos,
}

#[derive(Debug, Clone)]
pub struct Playbook {
    pub path: PathBuf,
    pub plays: Vec<Play>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlay {
    name: Option<String>,
    hosts: OneOrMany,
    #[serde(default)]
    serial: Option<Value>,
    #[serde(default)]
    max_fail_percentage: Option<f64>,
    #[serde(default)]
    staged: bool,
    #[serde(default)]
    vars: Vars,
    #[serde(default)]
    tasks: Vec<Spanned<serde_json::Map<String, Value>>>,
    #[serde(default)]
    handlers: Vec<Spanned<serde_json::Map<String, Value>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

const PLAY_KEYS: &[&str] = &[
    "name",
    "hosts",
    "serial",
    "max_fail_percentage",
    "staged",
    "vars",
    "tasks",
    "handlers",
];
const TASK_KEYS: &[&str] = &["name", "when", "notify"];

fn pos(file: &Path, loc: serde_saphyr::Location) -> SourcePos {
    SourcePos {
        file: file.to_path_buf(),
        line: loc.line(),
        column: loc.column(),
    }
}

pub use crate::base::suggest::nearest as suggest;

/// `- import_playbook: other.yml` — a playbook made of other playbooks (e.g. site.yml).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Import {
    import_playbook: String,
}

/// Read and type-check a playbook (following `import_playbook` entries): a file given by
/// path, or a name looked up in the project directory, then in the built-in playbooks.
pub fn load(project: &Project, arg: &Path) -> Result<Playbook, PlanError> {
    let src = project.playbook(arg).map_err(project_error)?;
    load_depth(project, &src, 0)
}

fn project_error(e: ProjectError) -> PlanError {
    match e {
        ProjectError::ReadFailed { path, message, .. } | ProjectError::Read { path, message } => {
            PlanError::Read { path, message }
        }
        other => PlanError::NotFound(other.to_string()),
    }
}

fn load_depth(project: &Project, src: &Source, depth: usize) -> Result<Playbook, PlanError> {
    let path = src.path();
    let path = path.as_path();
    let text = src.text().map_err(project_error)?;
    if let Ok(imports) = serde_saphyr::from_str::<Vec<Spanned<Import>>>(&text)
        && !imports.is_empty()
    {
        if depth > 8 {
            return Err(PlanError::Read {
                path: path.to_path_buf(),
                message: "import_playbook nested more than 8 deep (a cycle?)".into(),
            });
        }
        let mut plays = Vec::new();
        for i in imports {
            // Beside the importing file when that is a real one, else through the overlay
            // (a built-in site.yml imports the project's consul.yml if it has one).
            let name = &i.value.import_playbook;
            let beside = match &src.origin {
                Origin::Project(p) => p.parent().map(|d| d.join(name)),
                Origin::BuiltIn => None,
            };
            let target = match beside.filter(|b| b.is_file()) {
                Some(b) => project.playbook(&b),
                None => project.playbook(Path::new(name)),
            }
            .map_err(|e| PlanError::Task {
                pos: pos(path, i.referenced),
                message: format!("import_playbook: {e}"),
                help: None,
            })?;
            plays.extend(load_depth(project, &target, depth + 1)?.plays);
        }
        return Ok(Playbook {
            path: path.to_path_buf(),
            plays,
        });
    }
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Result<Playbook, PlanError> {
    let raw: Vec<Spanned<RawPlay>> = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let mut message = e.to_string();
        // serde-saphyr appends a source snippet; the first line is the message.
        if let Some(first) = message.lines().next() {
            message = first.to_string();
        }
        let help = unknown_field(&message).and_then(|f| {
            suggest(&f, PLAY_KEYS.iter().copied()).map(|s| format!("did you mean `{s}`?"))
        });
        PlanError::Syntax {
            pos: SourcePos {
                file: path.to_path_buf(),
                line,
                column,
            },
            message,
            help,
        }
    })?;
    let mut plays = Vec::new();
    for rp in raw {
        let p = rp.value;
        let play_pos = pos(path, rp.referenced);
        let tasks = p
            .tasks
            .into_iter()
            .map(|t| task(path, t))
            .collect::<Result<Vec<_>, _>>()?;
        let handlers = p
            .handlers
            .into_iter()
            .map(|t| task(path, t))
            .collect::<Result<Vec<_>, _>>()?;
        for t in &tasks {
            for n in &t.notify {
                if !handlers.iter().any(|h| &h.name == n) {
                    return Err(PlanError::Task {
                        pos: t.pos.clone(),
                        message: format!("notifies unknown handler `{n}`"),
                        help: suggest(n, handlers.iter().map(|h| h.name.as_str()))
                            .map(|s| format!("did you mean `{s}`?")),
                    });
                }
            }
        }
        plays.push(Play {
            name: p.name.unwrap_or_else(|| "play".into()),
            hosts: match p.hosts {
                OneOrMany::One(s) => s
                    .split([',', ':'])
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect(),
                OneOrMany::Many(v) => v,
            },
            serial: p.serial.map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            }),
            max_fail_percentage: p.max_fail_percentage,
            staged: p.staged,
            vars: p.vars,
            tasks,
            handlers,
            pos: play_pos,
        });
    }
    Ok(Playbook {
        path: path.to_path_buf(),
        plays,
    })
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

fn task(path: &Path, t: Spanned<serde_json::Map<String, Value>>) -> Result<TaskDef, PlanError> {
    let p = pos(path, t.referenced);
    let err = |message: String, help: Option<String>| PlanError::Task {
        pos: p.clone(),
        message,
        help,
    };
    let mut map = t.value;
    let name = match map.remove("name") {
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(err("`name` must be a string".into(), None)),
        None => None,
    };
    let when = match map.remove("when") {
        Some(Value::String(s)) => Some(s),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(_) => return Err(err("`when` must be an expression string".into(), None)),
        None => None,
    };
    let notify = match map.remove("notify") {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(err("`notify` must list handler names".into(), None)),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(err("`notify` must list handler names".into(), None)),
        None => vec![],
    };
    let mut module = None;
    for (k, v) in map {
        let Some(kind) = ModuleKind::from_name(&k) else {
            let all = ModuleKind::ALL
                .iter()
                .map(|m| m.name())
                .chain(TASK_KEYS.iter().copied());
            return Err(err(
                format!("unknown module or task key `{k}`"),
                Some(match suggest(&k, all) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "modules are: {}",
                        ModuleKind::ALL
                            .iter()
                            .map(|m| m.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            ));
        };
        if module.is_some() {
            return Err(err(
                format!("second module `{k}` in one task"),
                Some("give each module its own task".into()),
            ));
        }
        module = Some((kind, v));
    }
    let Some((kind, args)) = module else {
        return Err(err(
            "task names no module".into(),
            Some("add one module, e.g. `template: {src: …, dest: …}`".into()),
        ));
    };
    let args = kind
        .check_args(args)
        .map_err(|(m, h)| err(format!("{}: {m}", kind.name()), h))?;
    Ok(TaskDef {
        name: name.unwrap_or_else(|| kind.name().to_string()),
        module: kind,
        args,
        when,
        notify,
        pos: p,
    })
}
