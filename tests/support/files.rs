//! Small file helpers every scenario needs: write a file, a 0600 secret, find one in a tree or
//! list them all, read text and YAML with the path in the panic.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// `dir/name` with `text`; its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// `dir/name` with `text`, mode 0600 (promfleet refuses secrets others can read); its path.
pub fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = write(dir, name, text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

/// The first file called `name` anywhere under `dir` (e.g. in a `render --out` tree).
pub fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.is_dir() {
            if let Some(f) = find(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// Every file under `dir`, at any depth, sorted (none when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// [`files_under`], each relative to `dir`.
pub fn files_under_relative(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).expect("under dir").to_path_buf())
        .collect()
}

/// The permission bits of `p` (`0o7777`).
pub fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The owner of `p`: (uid, gid).
pub fn owner_of(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
}

/// No `.promfleet.*` upload temp file anywhere under `dir`.
pub fn assert_no_temp_files(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".promfleet.") && !name.ends_with(".prev.tmp"),
            "temp file left behind: {}",
            p.display()
        );
        if p.is_dir() && !p.is_symlink() {
            assert_no_temp_files(&p);
        }
    }
}

/// The file is absent, the `previous` content, or the whole `new` one: never half-written.
pub fn assert_file_whole(path: &Path, new: &str, previous: Option<&str>) {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("{}: {e}", path.display()),
        Ok(text) => assert!(
            text == new || previous.is_some_and(|p| p == text),
            "{} is neither the previous nor the new content ({} bytes):\n{text}",
            path.display(),
            text.len()
        ),
    }
}
