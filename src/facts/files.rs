//! File facts: what is at a remote path — missing, something other than a regular file, or a
//! regular file with its SHA-256, mode and owner. One fact per path; a play's paths are asked
//! together through `Facts::prefetch`, so every file of a host costs one round trip in all.
//!
//! Owns: the file probe, its parser, and the rule "would an upload of this leave the file
//! unchanged" (the same attributes the upload script compares). Must not: write anything.

use super::{Fact, Probe};
use crate::transport::Script;

/// What a path holds on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Missing,
    /// A symlink, directory or device: an upload replaces (or refuses) it, never keeps it.
    NotAFile,
    /// A regular file the login user cannot read or stat (no `become`).
    Unreadable,
    File(FileMeta),
}

/// A regular file's content digest and attributes, as `stat` resolved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub sha256: String,
    /// Permission bits (`stat %a`), e.g. 0o644.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Names, or `UNKNOWN` when the id has none (`stat %U`/`%G`).
    pub user: String,
    pub group: String,
}

impl FileState {
    pub fn sha256(&self) -> Option<&str> {
        match self {
            FileState::File(m) => Some(&m.sha256),
            _ => None,
        }
    }

    /// Whether writing `sha256` content with `mode` and `owner` (`user[:group]`, names or ids)
    /// would leave this file as it is — the upload script's own rule: content and mode, and
    /// owner and group when an owner is given. `None` when the fact cannot tell: an owner
    /// without a group (or without a user) leaves that half to whoever creates the file,
    /// which the fact does not know, so the upload decides.
    pub fn unchanged_by(&self, sha256: &str, mode: u32, owner: Option<&str>) -> Option<bool> {
        let m = match self {
            FileState::File(m) => m,
            FileState::Missing | FileState::NotAFile => return Some(false),
            FileState::Unreadable => return None,
        };
        if m.sha256 != sha256 || m.mode != mode {
            return Some(false);
        }
        let Some(owner) = owner else {
            return Some(true);
        };
        let (user, group) = owner.split_once(':')?;
        if user.is_empty() || group.is_empty() {
            return None;
        }
        let is = |want: &str, name: &str, id: u32| want == name || want == id.to_string();
        Some(is(user, &m.user, m.uid) && is(group, &m.group, m.gid))
    }
}

/// The state of one remote path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFact {
    pub path: String,
}

impl FileFact {
    pub fn new(path: &str) -> FileFact {
        FileFact { path: path.into() }
    }
}

/// Prints one line: `missing`, `other`, `unreadable`, or
/// `file <mode> <uid> <gid> <user> <group> <sha256>`. A symlink is `other` even when it points
/// at a file: the upload replaces a symlink, it never writes through it.
const PROBE: &str = r#"if [ -L "$p" ]; then echo other
elif [ -f "$p" ]; then
  if meta=$(stat -c '%a %u %g %U %G' -- "$p") && sum=$(sha256sum < "$p"); then printf '%s\n' "file $meta ${sum%% *}"; else echo unreadable; fi
elif [ -e "$p" ]; then echo other
else echo missing; fi"#;

impl Fact for FileFact {
    type Output = FileState;

    fn key(&self) -> String {
        format!("file:{}", self.path)
    }

    fn script(&self) -> Script {
        Script::new().path_var("p", &self.path).fragment(PROBE)
    }

    fn parse(&self, probe: &Probe) -> Result<FileState, String> {
        let line = probe.stdout.trim();
        let mut words = line.split_whitespace();
        let state = match words.next() {
            Some("missing") => FileState::Missing,
            Some("other") => FileState::NotAFile,
            Some("unreadable") => FileState::Unreadable,
            Some("file") => {
                let w: Vec<&str> = words.collect();
                let [mode, uid, gid, user, group, sha] = w[..] else {
                    return Err(format!("unexpected probe answer {line:?}"));
                };
                let num = |s: &str, radix| {
                    u32::from_str_radix(s, radix).map_err(|_| format!("bad number in {line:?}"))
                };
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!("no SHA-256 in {line:?}"));
                }
                FileState::File(FileMeta {
                    sha256: sha.to_ascii_lowercase(),
                    mode: num(mode, 8)?,
                    uid: num(uid, 10)?,
                    gid: num(gid, 10)?,
                    user: user.into(),
                    group: group.into(),
                })
            }
            _ => return Err(format!("unexpected probe answer {line:?}")),
        };
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn probe(stdout: &str) -> Probe {
        Probe {
            stdout: stdout.into(),
            status: 0,
        }
    }

    fn meta(mode: u32) -> FileState {
        FileState::File(FileMeta {
            sha256: "ab".repeat(32),
            mode,
            uid: 65534,
            gid: 65534,
            user: "nobody".into(),
            group: "nogroup".into(),
        })
    }

    #[test]
    fn probe_answers_parse_into_states() {
        let f = FileFact::new("/x");
        let sha = "ab".repeat(32);
        let got = f
            .parse(&probe(&format!(
                "file 4755 65534 65534 nobody nogroup {sha}\n"
            )))
            .expect("file");
        assert_eq!(got, meta(0o4755));
        assert_eq!(f.parse(&probe("missing")), Ok(FileState::Missing));
        assert_eq!(f.parse(&probe("other\n")), Ok(FileState::NotAFile));
        assert_eq!(f.parse(&probe("unreadable")), Ok(FileState::Unreadable));
        // A cut or garbled answer is an error, never "missing".
        assert!(f.parse(&probe("")).is_err());
        assert!(f.parse(&probe("file 644 0 0 root")).is_err());
        assert!(f.parse(&probe("file 644 0 0 root root nothex")).is_err());
    }

    #[test]
    fn unchanged_follows_the_upload_rule_content_mode_then_owner() {
        let sha = "ab".repeat(32);
        let f = meta(0o600);
        assert_eq!(f.unchanged_by(&sha, 0o600, None), Some(true));
        assert_eq!(f.unchanged_by(&"cd".repeat(32), 0o600, None), Some(false));
        assert_eq!(f.unchanged_by(&sha, 0o644, None), Some(false));
        // Owner by name or by id, both halves.
        assert_eq!(f.unchanged_by(&sha, 0o600, Some("65534:65534")), Some(true));
        assert_eq!(
            f.unchanged_by(&sha, 0o600, Some("nobody:nogroup")),
            Some(true)
        );
        assert_eq!(f.unchanged_by(&sha, 0o600, Some("root:65534")), Some(false));
        // Half an owner: the creator's id fills the other half; the upload decides.
        assert_eq!(f.unchanged_by(&sha, 0o600, Some("nobody")), None);
        assert_eq!(f.unchanged_by(&sha, 0o600, Some(":nogroup")), None);
        assert_eq!(
            FileState::Missing.unchanged_by(&sha, 0o600, None),
            Some(false)
        );
        assert_eq!(FileState::Unreadable.unchanged_by(&sha, 0o600, None), None);
    }

    /// The probe run by the local sh (the oracle: `std::fs` metadata and our own SHA-256) on
    /// a file, a symlink to it, a directory, a missing path and a hostile name.
    #[test]
    fn the_probe_run_by_sh_reports_what_std_fs_sees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("pwned");
        // Relative: the probe runs in `dir`, so a name that ran would create `dir/pwned`.
        let name = "a $(touch pwned) `touch pwned` 'b\n";
        let file = dir.path().join(name);
        std::fs::write(&file, b"content\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let ask = |p: &std::path::Path| -> FileState {
            let fact = FileFact::new(p.to_str().expect("utf8"));
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(fact.script().build())
                .current_dir(dir.path())
                .output()
                .expect("sh");
            fact.parse(&probe(&String::from_utf8_lossy(&out.stdout)))
                .expect("parse")
        };
        let md = std::fs::metadata(&file).expect("metadata");
        let FileState::File(m) = ask(&file) else {
            panic!("not a file");
        };
        assert_eq!(m.sha256, crate::modules::file::sha256_hex(b"content\n"));
        assert_eq!(m.mode, md.permissions().mode() & 0o7777);
        assert_eq!((m.uid, m.gid), (md.uid(), md.gid()));
        assert_eq!(ask(&link), FileState::NotAFile);
        assert_eq!(ask(dir.path()), FileState::NotAFile);
        assert_eq!(ask(&dir.path().join("none")), FileState::Missing);
        assert!(!marker.exists(), "the path reached the shell as code");
    }
}
