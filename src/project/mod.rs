//! Where playbooks and templates come from: a project directory overlaid, file by file, on
//! the copies built into the binary (`builtin`). A user overrides one template by writing
//! just that file under `templates/`; everything else still comes from the binary. This
//! module only finds and reads files; it knows nothing of YAML or tera.

mod builtin;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use builtin::{BUILTIN_PREFIX, builtin, builtin_files};

/// Where one file was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Project(PathBuf),
    BuiltIn,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Project(p) => write!(f, "{}", p.display()),
            Origin::BuiltIn => f.write_str("built-in"),
        }
    }
}

/// A file found through the overlay.
#[derive(Debug, Clone)]
pub struct Source {
    /// Name inside the project, e.g. `templates/exporters/docker-compose.yml`.
    pub name: String,
    pub origin: Origin,
    pub bytes: Vec<u8>,
}

impl Source {
    /// The path messages name: the real file, or `(built-in)/<name>`.
    pub fn path(&self) -> PathBuf {
        match &self.origin {
            Origin::Project(p) => p.clone(),
            Origin::BuiltIn => Path::new(BUILTIN_PREFIX).join(&self.name),
        }
    }

    pub fn text(&self) -> Result<String, ProjectError> {
        String::from_utf8(self.bytes.clone()).map_err(|_| ProjectError::Read {
            path: self.path(),
            message: "not UTF-8 text".into(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{what} `{name}` not found: looked in {looked} — {help}")]
    NotFound {
        what: &'static str,
        name: String,
        looked: String,
        help: String,
    },
    #[error("{}: cannot read {what}: {message}", .path.display())]
    ReadFailed {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{}: {message}", .path.display())]
    Read { path: PathBuf, message: String },
    #[error("project directory {}: {message}", .path.display())]
    Dir { path: PathBuf, message: String },
}

/// The project directory (if any) and the built-in files under it. Clones share the record
/// of which file came from where (`-v` prints it).
#[derive(Debug, Clone, Default)]
pub struct Project {
    root: Option<PathBuf>,
    /// `--templates DIR`: replaces the project's `templates/` layer.
    templates: Option<PathBuf>,
    used: Arc<Mutex<BTreeMap<String, Origin>>>,
}

impl Project {
    /// The project directory: `explicit` (`--project` / `PROMFLEET_PROJECT`), else the
    /// directory holding the `playbooks/` of a playbook given as a real path (with a
    /// `templates/` beside it), else the current directory when it holds `playbooks/` or
    /// `templates/`, else none (built-in files only).
    pub fn discover(
        explicit: Option<&Path>,
        templates: Option<&Path>,
        playbook: Option<&Path>,
    ) -> Result<Project, ProjectError> {
        let root = match explicit {
            Some(d) if !d.is_dir() => {
                return Err(ProjectError::Dir {
                    path: d.to_path_buf(),
                    message: "is not a directory — create one with `promfleet init DIR`".into(),
                });
            }
            Some(d) => Some(d.to_path_buf()),
            None => playbook
                .filter(|p| p.is_file())
                .and_then(|p| p.parent()?.parent())
                .map(|d| {
                    if d.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        d
                    }
                })
                .filter(|d| d.join("templates").is_dir())
                .map(Path::to_path_buf)
                .or_else(|| {
                    let cwd = Path::new(".");
                    (cwd.join("playbooks").is_dir() || cwd.join("templates").is_dir())
                        .then(|| cwd.to_path_buf())
                }),
        };
        Ok(Project {
            root,
            templates: templates.map(Path::to_path_buf),
            used: Arc::default(),
        })
    }

    /// Built-in files only (no project directory).
    pub fn builtin_only() -> Project {
        Project::default()
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The project directory holding `name` (`templates/…` honours `--templates`).
    fn local(&self, name: &str) -> Option<PathBuf> {
        if let (Some(t), Some(rest)) = (&self.templates, name.strip_prefix("templates/")) {
            return Some(t.join(rest));
        }
        self.root.as_ref().map(|r| r.join(name))
    }

    /// `name` (e.g. `templates/exporters/docker-compose.yml`) from the project directory,
    /// else from the binary; `None` when neither has it.
    pub fn find(&self, name: &str) -> Result<Option<Source>, ProjectError> {
        let found = match self.local(name).filter(|p| p.is_file()) {
            Some(path) => {
                let bytes = std::fs::read(&path).map_err(|e| ProjectError::ReadFailed {
                    what: kind(name),
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                Some(Source {
                    name: name.to_string(),
                    origin: Origin::Project(path),
                    bytes,
                })
            }
            None => builtin(name).map(|bytes| Source {
                name: name.to_string(),
                origin: Origin::BuiltIn,
                bytes: bytes.to_vec(),
            }),
        };
        if let (Some(s), Ok(mut used)) = (&found, self.used.lock()) {
            used.insert(s.name.clone(), s.origin.clone());
        }
        Ok(found)
    }

    /// Like `find`, but a missing file is an error naming where it was looked for.
    pub fn read(&self, name: &str) -> Result<Source, ProjectError> {
        self.find(name)?.ok_or_else(|| self.not_found(name))
    }

    fn not_found(&self, name: &str) -> ProjectError {
        let looked = match self.local(name) {
            Some(p) => format!("{} and the built-in files", p.display()),
            None => "the built-in files (no project directory: no --project, PROMFLEET_PROJECT, or playbooks/ or templates/ in the current directory)".into(),
        };
        let (dir, _) = name.split_once('/').unwrap_or(("", name));
        let known: Vec<&str> = builtin_files()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(&format!("{dir}/")))
            .collect();
        // Compared by base name (`exporter` → `exporters.yml`), suggested as the full name.
        let key = |n: &str| {
            let n = n.strip_prefix(&format!("{dir}/")).unwrap_or(n).to_string();
            n.strip_suffix(".yml").map(str::to_string).unwrap_or(n)
        };
        let keys: Vec<String> = known.iter().map(|n| key(n)).collect();
        let best = crate::playbook::suggest(&key(name), keys.iter().map(String::as_str))
            .and_then(|k| keys.iter().position(|x| *x == k))
            .and_then(|i| known.get(i));
        let help = match best {
            Some(s) => format!("did you mean `{s}`?"),
            None if dir == "playbooks" => format!(
                "built-in playbooks: {}",
                known
                    .iter()
                    .map(|n| n.trim_start_matches("playbooks/"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("add it to the project's {dir}/ directory"),
        };
        ProjectError::NotFound {
            what: kind(name),
            name: name.to_string(),
            looked,
            help,
        }
    }

    /// A playbook argument: an existing file is read as given; otherwise `NAME`,
    /// `NAME.yml` or `playbooks/NAME` is looked up in the overlay.
    pub fn playbook(&self, arg: &Path) -> Result<Source, ProjectError> {
        if arg.is_file() {
            let bytes = std::fs::read(arg).map_err(|e| ProjectError::ReadFailed {
                what: "playbook",
                path: arg.to_path_buf(),
                message: e.to_string(),
            })?;
            let name = arg.display().to_string();
            if let Ok(mut used) = self.used.lock() {
                used.insert(name.clone(), Origin::Project(arg.to_path_buf()));
            }
            return Ok(Source {
                name,
                origin: Origin::Project(arg.to_path_buf()),
                bytes,
            });
        }
        let s = arg.to_string_lossy();
        let bare = s.strip_prefix("./").unwrap_or(&s);
        let bare = bare.strip_prefix("playbooks/").unwrap_or(bare);
        let name = format!("playbooks/{bare}");
        if let Some(src) = self.find(&name)? {
            return Ok(src);
        }
        if !bare.ends_with(".yml")
            && !bare.ends_with(".yaml")
            && let Some(src) = self.find(&format!("{name}.yml"))?
        {
            return Ok(src);
        }
        Err(match self.not_found(&name) {
            ProjectError::NotFound {
                what, looked, help, ..
            } => ProjectError::NotFound {
                what,
                name: s.to_string(),
                looked: format!("{}, {looked}", arg.display()),
                help,
            },
            other => other,
        })
    }

    /// Which file came from where, in name order (for `-v`).
    pub fn origins(&self) -> Vec<(String, Origin)> {
        self.used
            .lock()
            .map(|u| u.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

fn kind(name: &str) -> &'static str {
    match name.split('/').next() {
        Some("playbooks") => "playbook",
        Some("templates") => "template",
        _ => "file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `builtin()` binary-searches the generated table: every file must be found by its own
    /// name (the table is sorted as strings, not as paths).
    #[test]
    fn every_builtin_file_is_found_by_name() {
        let names: Vec<&str> = builtin_files().map(|(n, _)| n).collect();
        for must in [
            "playbooks/exporters.yml",
            "templates/defaults.yml",
            "templates/monitoring/rules/node-exporter.rules.yml",
            "inventory/example.yml",
        ] {
            assert!(names.contains(&must), "{must} not embedded: {names:?}");
        }
        for (n, bytes) in builtin_files() {
            assert_eq!(builtin(n), Some(bytes), "{n}");
        }
        assert_eq!(builtin("templates/none.yml"), None);
    }

    #[test]
    fn a_project_file_wins_over_the_builtin_one_and_only_that_file() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("templates")).expect("mkdir");
        std::fs::write(dir.path().join("templates/defaults.yml"), "a: 1\n").expect("write");
        let p = Project::discover(Some(dir.path()), None, None).expect("project");
        let d = p.read("templates/defaults.yml").expect("defaults");
        assert_eq!(d.bytes, b"a: 1\n");
        assert_eq!(
            d.origin,
            Origin::Project(dir.path().join("templates/defaults.yml"))
        );
        let e = p
            .read("templates/exporters/docker-compose.yml")
            .expect("compose");
        assert_eq!(e.origin, Origin::BuiltIn);
        assert_eq!(
            Some(e.bytes.as_slice()),
            builtin("templates/exporters/docker-compose.yml")
        );
        let err = p
            .read("templates/exporter/docker-compose.yml")
            .expect_err("missing");
        assert!(
            err.to_string()
                .contains("did you mean `templates/exporters/docker-compose.yml`?"),
            "{err}"
        );
    }
}
