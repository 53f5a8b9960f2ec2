//! Inventory layouts Ansible users have: several `-i`, `-i DIR`, and `group_vars/` /
//! `host_vars/` beside each source, read as ansible-core 2.19 reads them.
//!
//! Owns: which files a source stands for (`InventoryManager._parse_source`'s directory walk
//! and its INVENTORY_IGNORE_EXTS defaults), which variable files belong to a group or host
//! (`DataLoader.find_vars_files`, used by the `host_group_vars` plugin), and merging every
//! Ansible source into one group graph. Precedence itself is applied in `ansible::resolve`.

use std::path::{Path, PathBuf};

use super::ansible::{Collected, LocatedVars, resolve};
use super::error::{InventoryError, SourcePos};
use super::node::{self, Kind, to_json};
use super::{Format, Inventory, Names, ansible_ini, ansible_yaml, finish};

/// Names a directory source skips: ansible-core's IGNORED_ALWAYS (hidden files, the vars
/// directories) ...
const IGNORED_NAMES: &[&str] = &["host_vars", "group_vars", "vars_plugins"];
/// ... and its default INVENTORY_IGNORE_EXTS (REJECT_EXTS + `.orig`, `.cfg`, `.retry`),
/// matched as suffixes of the name.
const IGNORED_SUFFIXES: &[&str] = &[
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
];
/// Extensions of variable files (YAML_FILENAME_EXTENSIONS), tried after the bare name.
const VARS_EXTENSIONS: &[&str] = &["yml", "yaml", "json"];

/// Read every `-i` source (files and directories) into one inventory, with the `group_vars/`
/// and `host_vars/` beside each. A single file in promfleet's own format (or a server list)
/// is read alone, as before; only Ansible inventories combine.
pub fn load_sources(sources: &[PathBuf]) -> Result<Inventory, InventoryError> {
    load_sources_with(sources, &Names::system())
}

/// `load_sources`, with hosts given by DNS name resolved (or given stand-ins) as `names` says.
pub fn load_sources_with(sources: &[PathBuf], names: &Names) -> Result<Inventory, InventoryError> {
    let Some(first) = sources.first() else {
        return Err(InventoryError::Syntax {
            pos: SourcePos::default(),
            message: "no inventory given".to_owned(),
            help: Some("pass -i FILE (or DIR; repeatable) or set PROMFLEET_INVENTORY".to_owned()),
        });
    };
    let mut files = Vec::new();
    for s in sources {
        inventory_files(s, &mut files)?;
    }
    let mut graph = Collected::new(first);
    graph.sources = sources.len();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| InventoryError::Read(file.to_path_buf(), e))?;
        let Some(draft) = parse_ansible_into(&text, file, &mut graph)? else {
            continue;
        };
        if files.len() == 1 {
            return finish(draft, names);
        }
        return Err(InventoryError::Syntax {
            pos: SourcePos {
                file: file.clone(),
                ..SourcePos::default()
            },
            message: "only Ansible inventories (INI or YAML) combine with other -i sources; \
                      this file is in promfleet's own format"
                .to_owned(),
            help: Some("pass it alone with -i, or write it as an Ansible inventory".to_owned()),
        });
    }
    for (index, source) in sources.iter().enumerate() {
        let base = if source.is_dir() {
            source.clone()
        } else {
            source.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        add_vars_files(&base, index, &mut graph)?;
    }
    finish(resolve(graph)?, names)
}

/// Parse one file into `graph` if it is an Ansible inventory; otherwise its own draft.
fn parse_ansible_into(
    text: &str,
    file: &Path,
    graph: &mut Collected,
) -> Result<Option<super::validate::Draft>, InventoryError> {
    match super::classify(text, file)? {
        Format::AnsibleIni => ansible_ini::parse_into(text, file, graph)?,
        Format::AnsibleYaml(root) => {
            let reader = node::Reader { file };
            ansible_yaml::parse_into(&root, &reader, graph)?;
        }
        other => return super::draft_of(other, text, file).map(Some),
    }
    Ok(None)
}

/// A file source is itself; a directory stands for its entries in name order, recursively,
/// minus what ansible-core ignores there.
fn inventory_files(source: &Path, out: &mut Vec<PathBuf>) -> Result<(), InventoryError> {
    if !source.is_dir() {
        out.push(source.to_path_buf());
        return Ok(());
    }
    walk(source, &mut Vec::new(), &mut |name, path| {
        let ignored = name.starts_with('.')
            || IGNORED_NAMES.contains(&name)
            || IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s));
        if ignored {
            Entry::Skip
        } else if path.is_dir() {
            Entry::Descend
        } else {
            out.push(path.to_path_buf());
            Entry::Skip
        }
    })
}

/// What `walk` does with one directory entry.
enum Entry {
    Skip,
    Descend,
}

/// Visit `dir`'s entries in name order, descending where `visit` says; a directory reached
/// twice (a symlink loop) is an error rather than endless recursion.
fn walk(
    dir: &Path,
    seen: &mut Vec<PathBuf>,
    visit: &mut dyn FnMut(&str, &Path) -> Entry,
) -> Result<(), InventoryError> {
    let read = |e| InventoryError::Read(dir.to_path_buf(), e);
    let real = dir.canonicalize().map_err(read)?;
    if seen.contains(&real) {
        return Err(InventoryError::Syntax {
            pos: SourcePos {
                file: dir.to_path_buf(),
                ..SourcePos::default()
            },
            message: format!("directory loop: {} is reached twice", real.display()),
            help: Some("remove the symbolic link that points back up the tree".to_owned()),
        });
    }
    seen.push(real);
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        entries.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    entries.sort();
    for (name, path) in entries {
        if let Entry::Descend = visit(&name, &path) {
            walk(&path, seen, visit)?;
        }
    }
    seen.pop();
    Ok(())
}

/// Attach `base/group_vars/<group>` and `base/host_vars/<host>` files to the groups and
/// hosts of the graph (files for names the inventory lacks are not read, as Ansible's).
fn add_vars_files(base: &Path, source: usize, graph: &mut Collected) -> Result<(), InventoryError> {
    let group_dir = base.join("group_vars");
    if group_dir.is_dir() {
        for g in &mut graph.groups {
            for file in vars_files(&group_dir, &g.name)? {
                g.file_vars.push((source, read_vars_file(&file)?));
            }
        }
    }
    let host_dir = base.join("host_vars");
    if host_dir.is_dir() {
        for h in &mut graph.hosts {
            for file in vars_files(&host_dir, &h.name)? {
                h.file_vars.push(read_vars_file(&file)?);
            }
        }
    }
    Ok(())
}

/// ansible-core's `find_vars_files`: the first of `NAME`, `NAME.yml`, `NAME.yaml`,
/// `NAME.json` that exists; a directory stands for its files (bare or with those
/// extensions, recursively, name order, skipping hidden and `~` files).
fn vars_files(dir: &Path, name: &str) -> Result<Vec<PathBuf>, InventoryError> {
    // As host_group_vars: a name starting with `/` (a chroot path as hostname) has no file.
    if name.starts_with('/') {
        return Ok(Vec::new());
    }
    let candidates = std::iter::once(dir.join(name)).chain(
        VARS_EXTENSIONS
            .iter()
            .map(|ext| dir.join(format!("{name}.{ext}"))),
    );
    for path in candidates {
        if path.is_dir() {
            let mut out = Vec::new();
            dir_vars_files(&path, &mut out)?;
            return Ok(out);
        }
        if path.exists() {
            return Ok(vec![path]);
        }
    }
    Ok(Vec::new())
}

fn dir_vars_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), InventoryError> {
    walk(dir, &mut Vec::new(), &mut |name, path| {
        let ext = Path::new(name).extension().and_then(|e| e.to_str());
        if name.starts_with('.') || name.ends_with('~') {
            Entry::Skip
        } else if path.is_dir() && ext.is_none() {
            Entry::Descend
        } else {
            if path.is_file() && ext.is_none_or(|e| VARS_EXTENSIONS.contains(&e)) {
                out.push(path.to_path_buf());
            }
            Entry::Skip
        }
    })
}

/// One variables file: a YAML (or JSON) mapping; an empty file sets nothing.
fn read_vars_file(file: &Path) -> Result<LocatedVars, InventoryError> {
    let text =
        std::fs::read_to_string(file).map_err(|e| InventoryError::Read(file.to_path_buf(), e))?;
    let mut vars = LocatedVars::default();
    if text.trim().is_empty() {
        return Ok(vars);
    }
    let root = node::parse_yaml(&text, file)?;
    let reader = node::Reader { file };
    if matches!(root.kind, Kind::Null) {
        return Ok(vars);
    }
    for (k, v) in reader.map(&root, "a group_vars/host_vars file")? {
        let key = reader.string(k, "variable name")?;
        vars.insert(key, to_json(v), reader.pos(v.loc));
    }
    Ok(vars)
}
