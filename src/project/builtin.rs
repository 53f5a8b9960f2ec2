//! The shipped `playbooks/`, `templates/` and example inventories, compiled in by build.rs.

mod files {
    include!(concat!(env!("OUT_DIR"), "/builtin_files.rs"));
}

/// How built-in files are named in messages: `(built-in)/templates/defaults.yml`.
pub const BUILTIN_PREFIX: &str = "(built-in)";

/// Every built-in file, by project-relative name, in name order.
pub fn builtin_files() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    files::FILES.iter().copied()
}

/// One built-in file by project-relative name.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    files::FILES
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .and_then(|i| files::FILES.get(i))
        .map(|(_, bytes)| *bytes)
}
