//! `--limit` patterns (Ansible-style): hostnames, group names, globs, `!exclusions`,
//! `&intersections` and `@file` (a retry file of hostnames).
//!
//! Semantics follow Ansible's `order_patterns`: the union of the plain terms (or every host
//! if there are none), then each `&` term intersects, then each `!` term removes.
//! Owns only matching; choosing hosts in inventory order is `Inventory::select`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use globset::{Glob, GlobMatcher};

use super::{Host, InventoryError};

/// A parsed `--limit` pattern.
#[derive(Debug, Clone)]
pub struct Limit {
    /// The pattern as given (for messages).
    pub pattern: String,
    regular: Vec<Term>,
    intersect: Vec<Term>,
    exclude: Vec<Term>,
}

#[derive(Debug, Clone)]
enum Term {
    All,
    /// A hostname, group name or ip, compared exactly.
    Exact(String),
    /// A glob over hostnames, ips and group names.
    Glob(GlobMatcher),
    /// Hostnames read from an `@file`.
    Names(HashSet<String>),
}

impl Term {
    fn matches(&self, host: &Host) -> bool {
        match self {
            Term::All => true,
            Term::Exact(s) => {
                host.name == *s
                    || host.groups.iter().any(|g| g == s)
                    || s.parse::<IpAddr>().is_ok_and(|ip| ip == host.ip)
            }
            Term::Glob(g) => {
                g.is_match(&host.name)
                    || g.is_match(host.ip.to_string())
                    || host.groups.iter().any(|x| g.is_match(x))
            }
            Term::Names(names) => names.contains(&host.name),
        }
    }

    /// The literal words of this term (for "did you mean" suggestions).
    fn words(&self) -> Vec<&str> {
        match self {
            Term::Exact(s) => vec![s.as_str()],
            Term::Glob(g) => vec![g.glob().glob()],
            Term::Names(n) => n.iter().map(String::as_str).collect(),
            Term::All => Vec::new(),
        }
    }
}

impl Limit {
    /// Parse an Ansible-style pattern such as `IDE:!ide-01`, `ide-*,&Stage` or `@retry.txt`.
    pub fn parse(pattern: &str) -> Result<Limit, InventoryError> {
        let mut limit = Limit {
            pattern: pattern.to_owned(),
            regular: Vec::new(),
            intersect: Vec::new(),
            exclude: Vec::new(),
        };
        for raw in split_pattern(pattern) {
            let (list, body) = if let Some(rest) = raw.strip_prefix('!') {
                (&mut limit.exclude, rest)
            } else if let Some(rest) = raw.strip_prefix('&') {
                (&mut limit.intersect, rest)
            } else {
                (&mut limit.regular, raw)
            };
            list.push(term(body, pattern)?);
        }
        if limit.regular.is_empty() && limit.intersect.is_empty() && limit.exclude.is_empty() {
            return Err(bad(pattern, "the pattern is empty"));
        }
        Ok(limit)
    }

    /// True if the host is selected by this pattern.
    pub fn matches(&self, host: &Host) -> bool {
        let selected = if self.regular.is_empty() {
            true
        } else {
            self.regular.iter().any(|t| t.matches(host))
        };
        selected
            && self.intersect.iter().all(|t| t.matches(host))
            && !self.exclude.iter().any(|t| t.matches(host))
    }

    /// The literal words of the pattern (hostnames, groups), for suggestions.
    pub(crate) fn words(&self) -> Vec<&str> {
        self.regular
            .iter()
            .chain(&self.intersect)
            .flat_map(Term::words)
            .collect()
    }
}

fn bad(pattern: &str, message: impl Into<String>) -> InventoryError {
    InventoryError::BadLimit {
        pattern: pattern.to_owned(),
        message: message.into(),
    }
}

fn term(body: &str, pattern: &str) -> Result<Term, InventoryError> {
    let body = body.trim();
    if body.is_empty() {
        return Err(bad(pattern, "empty term (a stray `:`, `,`, `!` or `&`)"));
    }
    if body == "all" || body == "*" {
        return Ok(Term::All);
    }
    if let Some(path) = body.strip_prefix('@') {
        return read_names(Path::new(path), pattern).map(Term::Names);
    }
    if body.contains(['*', '?', '[']) {
        let glob =
            Glob::new(body).map_err(|e| bad(pattern, format!("invalid glob `{body}`: {e}")))?;
        return Ok(Term::Glob(glob.compile_matcher()));
    }
    Ok(Term::Exact(body.to_owned()))
}

/// An Ansible retry file: one hostname a line; blank lines and `#` comments ignored.
fn read_names(path: &Path, pattern: &str) -> Result<HashSet<String>, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(
            pattern,
            format!("cannot read host list {}: {e}", path.display()),
        )
    })?;
    let names: HashSet<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err(bad(pattern, format!("{} lists no hosts", path.display())));
    }
    Ok(names)
}

/// Split on `,` and `:` like Ansible, but keep IPv6 addresses (which contain `:`) whole.
fn split_pattern(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for piece in pattern.split(',') {
        let bare = piece.trim().trim_start_matches(['!', '&']);
        if bare.contains("::") || bare.parse::<std::net::Ipv6Addr>().is_ok() {
            out.push(piece.trim());
        } else {
            out.extend(piece.split(':').map(str::trim));
        }
    }
    out
}
