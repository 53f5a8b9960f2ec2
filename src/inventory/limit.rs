//! `--limit` patterns (placeholder until the inventory branch lands).
use super::{Host, InventoryError};
/// A host pattern.
#[derive(Debug, Clone)]
pub struct Limit(Vec<String>);
impl Limit {
    pub fn parse(p: &str) -> Result<Limit, InventoryError> {
        Ok(Limit(p.split([':', ',']).map(String::from).collect()))
    }
    pub fn matches(&self, h: &Host) -> bool {
        self.0.iter().any(|p| p == "all" || *p == h.name || h.groups.contains(p))
    }
}
