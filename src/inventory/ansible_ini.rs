//! Ansible INI inventories (`[group]`, `[group:vars]`, `[group:children]`) → the shared
//! group graph.

use std::path::Path;

use serde_json::Value;

use super::ansible::{ALL, Collected, UNGROUPED, resolve};
use super::error::{InventoryError, SourcePos};
use super::host_range;
use super::ini_value;
use super::validate::Draft;

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

/// True if the first meaningful line is a `[section]` header or an INI host line
/// (`name key=value`).
pub(crate) fn looks_like(text: &str) -> bool {
    let Some(line) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
    else {
        return false;
    };
    // A YAML document marker or directive is never INI.
    if line.starts_with("---") || line.starts_with('%') {
        return false;
    }
    if line.starts_with('[') && line.ends_with(']') {
        return true;
    }
    let mut words = line.split_whitespace();
    words.next().is_some_and(|w| !w.contains(':')) && words.all(|w| w.contains('='))
}

pub(crate) fn parse(text: &str, file: &Path) -> Result<Draft, InventoryError> {
    let mut c = Collected::new(file);
    parse_into(text, file, &mut c)?;
    resolve(c)
}

/// Add one INI file's groups and hosts to `c` (several files merge as Ansible merges sources).
pub(crate) fn parse_into(text: &str, file: &Path, c: &mut Collected) -> Result<(), InventoryError> {
    let mut section = Section::Hosts(UNGROUPED.to_owned());
    let pos = |line: usize, column: usize| SourcePos {
        file: file.to_path_buf(),
        line: line as u64,
        column: column as u64,
    };
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let indent = raw.len() - raw.trim_start().len();
        // Ansible strips the line and skips `#`/`;` comment lines; trailing comments are
        // the business of each kind of line (shlex for hosts, none for variables).
        let full = raw.trim();
        if full.is_empty() || full.starts_with('#') || full.starts_with(';') {
            continue;
        }
        let line = strip_comment(raw).trim();
        let col = indent + 1;
        // `[2001:db8::1]:2222` is a host (Ansible's section pattern excludes it).
        let bracketed_ipv6 = host_range::split_port(line.split_whitespace().next().unwrap_or(""))
            .0
            .parse::<std::net::Ipv6Addr>()
            .is_ok();
        if let Some(header) = line.strip_prefix('[').filter(|_| !bracketed_ipv6) {
            let Some(header) = header.strip_suffix(']') else {
                return Err(InventoryError::Syntax {
                    pos: pos(lineno, col),
                    message: format!("unterminated section header `{line}`"),
                    help: Some("write `[group]`, `[group:vars]` or `[group:children]`".to_owned()),
                });
            };
            let (name, kind) = header.split_once(':').unwrap_or((header, ""));
            let name = name.trim().to_owned();
            c.group(&name, pos(lineno, col + 1));
            if name != ALL {
                c.add_child(ALL, &name, pos(lineno, col + 1));
            }
            section = match kind.trim() {
                "" | "hosts" => Section::Hosts(name),
                "vars" => Section::Vars(name),
                "children" => Section::Children(name),
                other => {
                    let suggestion = super::node::nearest(other, ["vars", "children"]);
                    return Err(InventoryError::UnknownKey {
                        key: format!(":{other}"),
                        suggestion: suggestion.map(|s| format!(":{s}")),
                        pos: pos(lineno, col + 1 + name.len()),
                    });
                }
            };
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let words = ini_value::shlex_split(full).map_err(|m| {
                    syntax(
                        pos(lineno, col),
                        format!("cannot split `{full}` as Ansible does (Python shlex): {m}"),
                    )
                })?;
                let Some((name, rest)) = words.split_first() else {
                    continue;
                };
                let (pattern, port) = host_range::split_port(name);
                let names = host_range::expand(pattern).map_err(|m| InventoryError::Syntax {
                    pos: pos(lineno, col),
                    message: m,
                    help: Some(
                        "write a range as `web[01:20]`, `db-[a:f]` or `node[0:10:2]`".to_owned(),
                    ),
                })?;
                // Check the variables once, before they are copied to every host of a range.
                let mut vars = Vec::with_capacity(rest.len());
                for word in rest {
                    let Some((k, v)) = word.split_once('=') else {
                        let column = col + line.find(word.as_str()).unwrap_or(0);
                        return Err(InventoryError::Syntax {
                            pos: pos(lineno, column),
                            message: format!("`{word}` is not a `key=value` host variable"),
                            help: Some("write host lines as `ide-01 ansible_host=10.0.1.11 ansible_user=deploy`".to_owned()),
                        });
                    };
                    let column = col + line.find(k).unwrap_or(0);
                    vars.push((k.to_owned(), ini_value::parse_value(v), pos(lineno, column)));
                }
                let group = group.clone();
                for name in names {
                    let h = c.host(&name, pos(lineno, col), &group);
                    if let Some(port) = port {
                        h.vars.insert(
                            "ansible_port".to_owned(),
                            Value::String(port.to_owned()),
                            pos(lineno, col),
                        );
                    }
                    for (k, v, p) in &vars {
                        h.vars.insert(k.clone(), v.clone(), p.clone());
                    }
                }
            }
            Section::Vars(group) => {
                // The whole line (a trailing `# …` included: literal_eval drops it only
                // where Python would) — Ansible's `_parse_variable_definition`.
                let Some((k, v)) = full.split_once('=') else {
                    return Err(syntax(
                        pos(lineno, col),
                        format!("`{full}` is not a `key=value` group variable"),
                    ));
                };
                let group = group.clone();
                c.group(&group, pos(lineno, col)).vars.insert(
                    k.trim().to_owned(),
                    ini_value::parse_value(v.trim()),
                    pos(lineno, col + full.find('=').unwrap_or(0) + 1),
                );
            }
            Section::Children(parent) => {
                // `child`, optionally followed by whitespace and a `#` comment (Ansible's
                // `groupname` pattern: `child#x` is one name, `child x` is an error).
                let (child, rest) = full.split_once(char::is_whitespace).unwrap_or((full, ""));
                let rest = rest.trim_start();
                if !rest.is_empty() && !rest.starts_with('#') {
                    return Err(InventoryError::Syntax {
                        pos: pos(lineno, col),
                        message: format!("`{full}` is not a group name"),
                        help: Some(
                            "list one child group per line under `[group:children]`".to_owned(),
                        ),
                    });
                }
                let parent = parent.clone();
                c.group(child, pos(lineno, col));
                c.add_child(&parent, child, pos(lineno, col));
            }
        }
    }
    Ok(())
}

fn syntax(pos: SourcePos, message: String) -> InventoryError {
    InventoryError::Syntax {
        pos,
        message,
        help: None,
    }
}

/// Drop `;`/`#` whole-line comments and ` #` trailing comments (Ansible's rule).
fn strip_comment(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with(';') {
        return "";
    }
    let mut quote = None;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (None, b'\'' | b'"') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'#') if i > 0 && bytes[i - 1].is_ascii_whitespace() => return &line[..i],
            _ => {}
        }
    }
    line
}
