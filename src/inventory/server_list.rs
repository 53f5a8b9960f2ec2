//! The seed system's `server_list.txt` (`hostname ip group`, one host a line) → `Draft`.
//!
//! Unlike the hand-built script (defect 2), fields may be separated by any run of tabs or
//! spaces; `#` starts a comment anywhere on a line.

use std::path::Path;

use super::error::{InventoryError, SourcePos};
use super::validate::{Draft, DraftHost};
use super::{Group, MONITORING_GROUP};

const FORMAT_HELP: &str =
    "write one host a line as `hostname ip group`, e.g. `ide-01  10.0.1.11  IDE`";

/// True if the first meaningful line is `hostname ip group`.
pub(crate) fn looks_like(text: &str) -> bool {
    let first = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .find(|l| !l.trim().is_empty());
    first.is_some_and(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() == 3 && fields[1].parse::<std::net::IpAddr>().is_ok()
    })
}

pub(crate) fn parse(text: &str, file: &Path) -> Result<Draft, InventoryError> {
    let mut draft = Draft {
        source: file.to_path_buf(),
        ..Draft::default()
    };
    let mut seen_groups = std::collections::HashSet::new();
    let pos = |line: usize, column: usize| SourcePos {
        file: file.to_path_buf(),
        line: line as u64,
        column: column as u64,
    };
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.split('#').next().unwrap_or("");
        // Fields with their 1-based column (in characters) for messages.
        let mut fields = Vec::with_capacity(3);
        let mut start = None;
        for (col, ch) in line.chars().chain(std::iter::once(' ')).enumerate() {
            match (ch.is_whitespace(), start) {
                (false, None) => start = Some(col),
                (true, Some(s)) => {
                    fields.push((
                        line.chars().skip(s).take(col - s).collect::<String>(),
                        s + 1,
                    ));
                    start = None;
                }
                _ => {}
            }
        }
        if fields.is_empty() {
            continue;
        }
        let end = line.trim_end().chars().count() + 1;
        let (name, ip, group) = match fields.as_slice() {
            [name, ip, group] => (name, ip, group),
            [_] | [_, _] => {
                let missing = if fields.len() == 1 {
                    "ip and group"
                } else {
                    "group"
                };
                return Err(InventoryError::Syntax {
                    pos: pos(lineno, end),
                    message: format!("missing {missing} for host `{}`", fields[0].0),
                    help: Some(FORMAT_HELP.to_owned()),
                });
            }
            [_, _, _, extra, ..] => {
                return Err(InventoryError::Syntax {
                    pos: pos(lineno, extra.1),
                    message: format!("unexpected fourth field `{}`", extra.0),
                    help: Some(format!("{FORMAT_HELP}; put comments after `#`")),
                });
            }
            [] => continue,
        };
        if seen_groups.insert(group.0.clone()) {
            let g = Group {
                name: group.0.clone(),
                vars: Default::default(),
                pos: pos(lineno, group.1),
            };
            if g.name == MONITORING_GROUP {
                draft.extra_groups.push(g);
            } else {
                draft.groups.push(g);
            }
        }
        draft.hosts.push(DraftHost {
            name: name.0.clone(),
            ip: Some((ip.0.clone(), pos(lineno, ip.1))),
            group: Some(group.0.clone()),
            groups: vec![group.0.clone()],
            pos: pos(lineno, name.1),
            ..DraftHost::default()
        });
    }
    Ok(draft)
}
