//! Inventory errors: every one names the file, line and column, and says how to fix it.

use std::fmt;
use std::path::PathBuf;

/// A position in an input file (1-based line and column; 0 means unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePos {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        Ok(())
    }
}

/// Why an inventory could not be used. Display is `file:line:col: what — fix`.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{0}: cannot read inventory: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{pos}: {message}{}", hint(.help))]
    Syntax {
        pos: SourcePos,
        message: String,
        help: Option<String>,
    },
    #[error(
        "{pos}: duplicate hostname `{name}` (first defined at {first}) — hostnames must be unique; rename or remove one"
    )]
    DuplicateHost {
        name: String,
        pos: SourcePos,
        first: SourcePos,
    },
    #[error(
        "{pos}: duplicate ip {ip} for `{name}` (already used by `{other}` at {first}) — each host needs its own address"
    )]
    DuplicateIp {
        ip: String,
        name: String,
        other: String,
        pos: SourcePos,
        first: SourcePos,
    },
    #[error(
        "{pos}: `{value}` is not a valid IP address for host `{name}` — write an IPv4 or IPv6 address such as 10.0.1.12"
    )]
    InvalidIp {
        name: String,
        value: String,
        pos: SourcePos,
    },
    #[error(
        "{pos}: host `{name}` is in no group — put it under a group (e.g. IDE, Stage, Pet) or `monitoring`"
    )]
    NoGroup { name: String, pos: SourcePos },
    #[error("{pos}: unknown key `{key}`{}", hint(&.suggestion.as_ref().map(|s| format!("did you mean `{s}`?"))))]
    UnknownKey {
        key: String,
        suggestion: Option<String>,
        pos: SourcePos,
    },
    #[error("{pos}: unknown group `{group}` in {context}{}", hint(&.suggestion.as_ref().map(|s| format!("did you mean `{s}`?"))))]
    UnknownGroup {
        group: String,
        context: String,
        suggestion: Option<String>,
        pos: SourcePos,
    },
    #[error("{pos}: invalid name `{name}`: {why}")]
    InvalidName {
        name: String,
        why: String,
        pos: SourcePos,
    },
    #[error(
        "{pos}: the inventory defines no hosts — add hosts under `groups:` (or Ansible `hosts:`)"
    )]
    NoHosts { pos: SourcePos },
    #[error("invalid --limit `{pattern}`: {message}")]
    BadLimit { pattern: String, message: String },
    #[error("no host matches --limit `{pattern}`{}", near_hint(.near))]
    NoMatch { pattern: String, near: Vec<String> },
    #[error("{file}: {message}")]
    Other { file: PathBuf, message: String },
}

fn near_hint(near: &[String]) -> String {
    if near.is_empty() {
        " — check the hostname or group name".to_owned()
    } else {
        let names: Vec<String> = near.iter().map(|n| format!("`{n}`")).collect();
        format!(" — did you mean {}?", names.join(", "))
    }
}

fn hint(help: &Option<String>) -> String {
    match help {
        Some(h) => format!(" — {h}"),
        None => String::new(),
    }
}
