//! Ansible INI inventories (`[group]`, `[group:vars]`, `[group:children]`) → the shared
//! group graph.

use std::path::Path;

use serde_json::Value;

use super::ansible::{ALL, Collected, UNGROUPED, resolve};
use super::error::{InventoryError, SourcePos};
use super::host_range;
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
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
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
                let words = split_words(line).map_err(|m| syntax(pos(lineno, col), m))?;
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
                    vars.push((k.to_owned(), ini_value(v), pos(lineno, column)));
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
                let Some((k, v)) = line.split_once('=') else {
                    return Err(syntax(
                        pos(lineno, col),
                        format!("`{line}` is not a `key=value` group variable"),
                    ));
                };
                let v = split_words(v.trim())
                    .map_err(|m| syntax(pos(lineno, col), m))?
                    .join(" ");
                let group = group.clone();
                c.group(&group, pos(lineno, col)).vars.insert(
                    k.trim().to_owned(),
                    ini_value(&v),
                    pos(lineno, col + line.find('=').unwrap_or(0) + 1),
                );
            }
            Section::Children(parent) => {
                let parent = parent.clone();
                c.group(line, pos(lineno, col));
                c.add_child(&parent, line, pos(lineno, col));
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

/// Split on whitespace, keeping quoted parts (`foo="a b"`) together and unquoting them.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut in_word = false;
    for ch in line.chars() {
        match (quote, ch) {
            (None, '\'' | '"') => {
                quote = Some(ch);
                in_word = true;
            }
            (Some(q), _) if q == ch => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in `{line}`"));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// INI values are text; numbers and booleans are read as such, like Ansible does.
fn ini_value(v: &str) -> Value {
    match v {
        "true" | "True" => Value::Bool(true),
        "false" | "False" => Value::Bool(false),
        _ => v
            .parse::<i64>()
            .map_or_else(|_| Value::String(v.to_owned()), Value::from),
    }
}
