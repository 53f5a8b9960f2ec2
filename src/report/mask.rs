//! Masking of secret values in every piece of text that leaves the process.

use std::sync::{Arc, RwLock};

/// The set of secret values seen this run; `mask` replaces each with `********`.
#[derive(Clone, Default)]
pub struct Masker {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Masker {
    /// Register a secret value (values shorter than 4 characters are not masked: they would
    /// blank out ordinary text and cannot be meaningful secrets anyway).
    pub fn add(&self, value: &str) {
        if value.len() < 4 {
            return;
        }
        let mut s = self.secrets.write().unwrap_or_else(|p| p.into_inner());
        if !s.iter().any(|x| x == value) {
            s.push(value.to_string());
            // Longest first so a secret containing another is replaced whole.
            s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    /// `text` with every registered secret replaced by `********`.
    pub fn mask(&self, text: &str) -> String {
        let s = self.secrets.read().unwrap_or_else(|p| p.into_inner());
        let mut out = text.to_string();
        for secret in s.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), crate::playbook::MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let m = Masker::default();
        m.add("abcd");
        m.add("abcdefgh");
        assert_eq!(m.mask("x abcdefgh y abcd"), "x ******** y ********");
        m.add("no");
        assert_eq!(m.mask("no"), "no");
    }
}
