//! `--limit` patterns (placeholder until the inventory branch lands).
/// A host pattern.
#[derive(Debug, Clone)]
pub struct Limit;
