//! Build script: embeds the shipped playbooks, templates and example inventories (a generated
//! table of `include_bytes!`, so no crate is needed for it) and records the git commit the
//! binary is built from for `promfleet --version`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which files of a directory are embedded, by path below that directory (`examples/ha.yml`).
type Keep = fn(&str) -> bool;

/// Directories whose files are compiled into the binary, and which of their files.
const EMBEDDED: &[(&str, Keep)] = &[
    ("playbooks", |_| true),
    ("templates", |_| true),
    // The examples only (`example.yml`, the topology examples in `examples/`): a user's own
    // inventory files never belong in the binary.
    ("inventory", |rel| rel.contains("example")),
];

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed=build.rs");

    let mut files = Vec::new();
    for (dir, keep) in EMBEDDED {
        let abs = root.join(dir);
        if abs.is_dir() {
            // A directory makes cargo rerun when any file below it changes.
            println!("cargo:rerun-if-changed={}", abs.display());
            walk(&abs, &mut files);
        }
        files.retain(|p: &PathBuf| match p.strip_prefix(&abs) {
            Ok(rel) => rel.to_str().is_some_and(keep),
            Err(_) => true,
        });
    }
    // Sorted by name as a string: `builtin()` binary-searches the table.
    let mut named: Vec<(String, &PathBuf)> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&root).ok()?;
            match rel.to_str() {
                Some(r) => Some((r.to_string(), f)),
                None => panic!("{}: embedded file names must be UTF-8", f.display()),
            }
        })
        .collect();
    named.sort();
    let mut table = String::from("pub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, f) in &named {
        table.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            f.display().to_string()
        ));
    }
    table.push_str("];\n");
    if let Err(e) = std::fs::write(out.join("builtin_files.rs"), table) {
        panic!(
            "cannot write {}: {e}",
            out.join("builtin_files.rs").display()
        );
    }

    println!("cargo:rustc-env=PROMFLEET_COMMIT={}", commit(&root));
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, files);
        } else if p.is_file() {
            files.push(p);
        }
    }
}

/// `git rev-parse --short HEAD` of this source tree, or "unknown" (a tarball, no git). A tree
/// unpacked inside some other repository must not report that repository's commit, hence the
/// top-level check.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| -> Option<String> {
        let o = Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let Some(top) = git(&["rev-parse", "--show-toplevel"]) else {
        return "unknown".into();
    };
    let same = match (Path::new(&top).canonicalize(), root.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        return "unknown".into();
    }
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit).
    for name in ["HEAD"]
        .into_iter()
        .map(str::to_string)
        .chain(git(&["symbolic-ref", "-q", "HEAD"]))
        .chain(["packed-refs".to_string()])
    {
        if let Some(p) = git(&["rev-parse", "--git-path", &name]) {
            let p = root.join(p);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into())
}
