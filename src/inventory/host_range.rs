//! Ansible host patterns: `web[01:20]`, `db-[a:f]`, `node[0:10:2]` → one name per host, and
//! the `:port` a pattern may carry (`10.0.0.1:2222`, `[2001:db8::1]:2222`).
//!
//! Follows ansible-core's `expand_hostname_range`: the first `[…]` is expanded, then the
//! result again (so several ranges multiply); numbers keep the begin's zero padding; letters
//! run over `a-zA-Z`; an empty begin means 0. Expansion is bounded: an inventory line cannot
//! make more than `MAX_HOSTS` names.

/// More names than this from one pattern is an error (a typo like `[1:100000000]` would
/// otherwise exhaust memory before anything is validated).
pub(crate) const MAX_HOSTS: usize = 100_000;

const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// True if `pattern` holds a range (Ansible: a `[` followed later by `:` and `]`).
pub(crate) fn is_range(pattern: &str) -> bool {
    pattern
        .split_once('[')
        .is_some_and(|(_, rest)| rest.split_once(']').is_some_and(|(r, _)| r.contains(':')))
}

/// Every hostname `pattern` stands for, in Ansible's order; the error says what is wrong
/// with the range.
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand_into(pattern, &mut out)?;
    Ok(out)
}

fn expand_into(pattern: &str, out: &mut Vec<String>) -> Result<(), String> {
    if !is_range(pattern) {
        out.push(pattern.to_owned());
        return Ok(());
    }
    let (head, rest) = pattern.split_once('[').unwrap_or((pattern, ""));
    let (range, tail) = rest.split_once(']').unwrap_or((rest, ""));
    let bounds: Vec<&str> = range.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(format!(
            "host range `[{range}]` must be begin:end or begin:end:step"
        ));
    }
    let beg = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(format!("host range `[{range}]` has no end value"));
    }
    let step: usize = match bounds.get(2) {
        None => 1,
        Some(s) => s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
            format!("host range `[{range}]`: step `{s}` is not a positive number")
        })?,
    };
    let items: Vec<String> = match (LETTERS.find(beg), LETTERS.find(end)) {
        (Some(b), Some(e)) if beg.len() == 1 && end.len() == 1 => {
            if b > e {
                return Err(format!("host range `[{range}]` must have begin <= end"));
            }
            LETTERS[b..=e]
                .chars()
                .step_by(step)
                .map(String::from)
                .collect()
        }
        _ => {
            let number = |s: &str| {
                s.parse::<u64>().map_err(|_| {
                    format!("host range `[{range}]`: `{s}` is not a number or a letter")
                })
            };
            let (b, e) = (number(beg)?, number(end)?);
            let width = if beg.starts_with('0') && beg.len() > 1 {
                if beg.len() != end.len() {
                    return Err(format!(
                        "host range `[{range}]` must have begin and end of equal length when zero-padded"
                    ));
                }
                beg.len()
            } else {
                0
            };
            let count = (e.saturating_sub(b) / step as u64).saturating_add(1);
            if e >= b && out.len() as u64 + count > MAX_HOSTS as u64 {
                return Err(too_many(range));
            }
            (b..=e)
                .step_by(step)
                .map(|n| format!("{n:0width$}"))
                .collect()
        }
    };
    for item in items {
        expand_into(&format!("{head}{item}{tail}"), out)?;
        if out.len() > MAX_HOSTS {
            return Err(too_many(range));
        }
    }
    Ok(())
}

fn too_many(range: &str) -> String {
    format!("host range `[{range}]` makes more than {MAX_HOSTS} hosts")
}

/// `host:2222` → (`host`, Some("2222")); IPv6 literals and plain names are left alone; the
/// colons of a range (`web[1:3]:2222`) are not a port separator.
pub(crate) fn split_port(name: &str) -> (&str, Option<&str>) {
    // `[2001:db8::1]:2222` or `[2001:db8::1]`: a bracketed IPv6 address, not a range.
    if let Some((addr, rest)) = name.strip_prefix('[').and_then(|n| n.split_once(']'))
        && addr.parse::<std::net::Ipv6Addr>().is_ok()
    {
        match rest.strip_prefix(':') {
            Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                return (addr, Some(port));
            }
            None if rest.is_empty() => return (addr, None),
            _ => {}
        }
    }
    match name.rsplit_once(':') {
        Some((host, port))
            if !outside_brackets(host).contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (host, Some(port))
        }
        _ => (name, None),
    }
}

/// `name` without its `[…]` parts.
fn outside_brackets(name: &str) -> String {
    let mut depth = 0usize;
    name.chars()
        .filter(|c| {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect()
}
