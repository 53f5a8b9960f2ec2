//! `serial`: a batch size, a number of hosts or a percentage of them. Parsed once where it
//! is read (a stage in the inventory, a play in a playbook); the plan and executor only
//! ever see this type.

use std::fmt;

/// Batch size inside a play or stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Serial {
    Count(usize),
    Percent(f64),
}

impl Serial {
    pub fn parse(s: &str) -> Result<Serial, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            return p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| *p > 0.0 && *p <= 100.0)
                .map(Serial::Percent)
                .ok_or_else(|| format!("serial `{s}`: a percentage must be in (0, 100]"));
        }
        t.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .map(Serial::Count)
            .ok_or_else(|| format!("serial `{s}` must be a positive number or a percentage"))
    }

    /// Batch size for `total` hosts, as ansible-core's `pct_to_int` computes it: a
    /// percentage is truncated (in Ansible's order of operations, so the same float gives the
    /// same answer), and never less than 1.
    pub fn size(self, total: usize) -> usize {
        match self {
            Serial::Count(n) => n.max(1),
            Serial::Percent(p) => (((p / 100.0) * total as f64) as usize).max(1),
        }
    }
}

/// As written in YAML: `2`, `25%`.
impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Serial::Count(n) => write!(f, "{n}"),
            Serial::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentages_truncate_and_never_reach_zero() {
        assert_eq!(Serial::parse(" 2 "), Ok(Serial::Count(2)));
        assert_eq!(Serial::parse("25%"), Ok(Serial::Percent(25.0)));
        assert_eq!(Serial::parse("25%").unwrap().size(10), 2);
        assert_eq!(
            Serial::parse("29%").unwrap().size(100),
            28,
            "Ansible's float order"
        );
        assert_eq!(Serial::parse("1%").unwrap().size(10), 1);
        assert_eq!(Serial::parse("100%").unwrap().size(7), 7);
        for bad in ["0", "0%", "101%", "-1", "lots", "", "%"] {
            assert!(Serial::parse(bad).is_err(), "{bad}");
        }
        for text in ["2", "50%", "12.5%"] {
            assert_eq!(Serial::parse(text).unwrap().to_string(), text);
        }
    }
}
