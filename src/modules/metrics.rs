//! A parser for the Prometheus text exposition format (0.0.4), enough to count samples per
//! metric family and reject pages that are not exposition text. Never panics on any input.

use std::collections::BTreeMap;

/// Sample counts of a scraped page.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Exposition {
    pub samples: usize,
    /// Metric name → sample count.
    pub families: BTreeMap<String, usize>,
}

impl Exposition {
    /// Samples of metrics whose name starts with `prefix`.
    pub fn count_prefix(&self, prefix: &str) -> usize {
        self.families
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| *v)
            .sum()
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_value(s: &str) -> bool {
    matches!(s, "NaN" | "+Inf" | "-Inf" | "Inf") || s.parse::<f64>().is_ok()
}

/// Parse exposition text; `Err` names the first bad line (1-based).
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let bad = |why: &str| {
            let shown: String = line.chars().take(60).collect();
            format!("line {}: {why}: `{shown}`", i + 1)
        };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        // name{labels} value [timestamp]
        let (name, rest) = match line.find(['{', ' ', '\t']) {
            Some(idx) => line.split_at(idx),
            None => return Err(bad("no value")),
        };
        if !valid_name(name) {
            return Err(bad("invalid metric name"));
        }
        let rest = if let Some(r) = rest.strip_prefix('{') {
            // Skip the label set, honouring quoted values with escapes.
            let mut in_str = false;
            let mut esc = false;
            let mut end = None;
            for (j, c) in r.char_indices() {
                if esc {
                    esc = false;
                } else if in_str && c == '\\' {
                    esc = true;
                } else if c == '"' {
                    in_str = !in_str;
                } else if c == '}' && !in_str {
                    end = Some(j);
                    break;
                }
            }
            match end {
                Some(j) => &r[j + 1..],
                None => return Err(bad("unterminated label set")),
            }
        } else {
            rest
        };
        let mut parts = rest.split_whitespace();
        match parts.next() {
            Some(v) if valid_value(v) => {}
            _ => return Err(bad("missing or invalid sample value")),
        }
        if let Some(ts) = parts.next()
            && ts.parse::<i64>().is_err()
        {
            return Err(bad("invalid timestamp"));
        }
        if parts.next().is_some() {
            return Err(bad("trailing garbage"));
        }
        e.samples += 1;
        *e.families.entry(name.to_string()).or_default() += 1;
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_exporter_style_text() {
        let t = "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.5\nnode_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 123.4 1700000000000\nnode_x{a=\"}\\\"\"} NaN\n";
        let e = parse(t).unwrap();
        assert_eq!(e.samples, 3);
        assert_eq!(e.count_prefix("node_"), 3);
        assert_eq!(e.families["node_cpu_seconds_total"], 1);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("<html><body>hello</body></html>").is_err());
        assert!(parse("metric{a=\"b\" 1").is_err());
        assert!(parse("metric notanumber").is_err());
        assert!(parse("9metric 1").is_err());
        let err = parse("ok_metric 1\nbad line here").unwrap_err();
        assert!(err.starts_with("line 2"), "{err}");
    }
}
