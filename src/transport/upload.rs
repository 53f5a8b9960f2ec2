//! The remote half of an atomic upload, as one POSIX sh script: content on stdin.
//!
//! Every file it creates gets a fresh name from `mktemp` (created with O_EXCL, so never a
//! path someone planted) in the target directory, and reaches its final name by rename, which
//! replaces a symlink instead of following it. Concurrent uploads to one path therefore never
//! collide: the last rename wins and the file is always one whole version.

use super::command::Script;

/// Refuses a `dest` that is a directory (or a symlink to one) before anything is created:
/// `mv` would move the new file *into* it and the upload would look "changed" while the
/// directory gained a stray `.promfleet.*` file.
const NOT_A_DIRECTORY: &str = r#"if [ -d "$dest" ]; then printf '%s\n' "promfleet: $dest is a directory; it cannot be replaced by a file" >&2; exit 1; fi"#;

/// Written, mode set and owned like the final file, compared, backed up, renamed.
///
/// The temp file gets the final mode (and owner) first, so "unchanged" compares the
/// attributes the system resolved, not our spelling of them (names vs ids).
const INSTALL: &str = r#"case $dest in */*) dir=${dest%/*}; dir=${dir:-/} ;; *) dir=. ;; esac
[ -d "$dir" ] || mkdir -p -- "$dir"
tmp=$(mktemp -- "$dir/.promfleet.XXXXXX")
prev=
trap 'rm -f -- "$tmp" ${prev:+"$prev"}' EXIT
cat > "$tmp"
chmod "$mode" "$tmp"
own "$tmp"
if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s -- "$tmp" "$dest" && [ "$(stat -c "$attrs" -- "$tmp")" = "$(stat -c "$attrs" -- "$dest")" ]; then echo unchanged; exit 0; fi
if [ -f "$dest" ] && [ ! -L "$dest" ]; then
  prev=$(mktemp -- "$dir/.promfleet.XXXXXX")
  old=$(stat -c %a -- "$dest")
  cat -- "$dest" > "$prev"
  own "$prev"
  chmod "$(printf %o "$((0$old & 0$mode))")" "$prev"
  rm -f -- "$dest.prev"
  mv -f -- "$prev" "$dest.prev"
fi
mv -f -- "$tmp" "$dest"
trap - EXIT
echo changed"#;

/// The remote half of `upload`: POSIX sh, content on stdin.
///
/// The previous version is kept as `<dest>.prev`, owned like the file being installed and with
/// the stricter of the two modes (the bits both allow): a secret written 0600 must not leave
/// its old token readable in a 0644 `.prev`, and loosening a file's mode must not loosen the
/// copy of its old content. It is written while still mktemp's 0600, then chowned and
/// chmodded. A `dest` that is a symlink to a file is replaced, never backed up (that would
/// copy its target); a `dest` that is a directory is an error.
pub(super) fn upload_script(dest: &str, mode: u32, owner: Option<&str>) -> String {
    let s = Script::new()
        .fragment("set -e")
        .path_var("dest", dest)
        .var("mode", &format!("{mode:o}"));
    let s = match owner {
        Some(o) => s
            .var("owner", o)
            .fragment(r#"own() { chown -- "$owner" "$1"; }"#)
            .fragment("attrs=%a:%u:%g"),
        None => s.fragment("own() { :; }").fragment("attrs=%a"),
    };
    s.fragment(NOT_A_DIRECTORY).fragment(INSTALL).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The directory of `dest`, found without starting `dirname`, is the one `dirname` names
    /// (`dirname` as the oracle; the same directory, spelled with or without a doubled slash).
    #[test]
    fn the_directory_of_a_destination_is_dirnames() {
        let first_line = INSTALL.lines().next().expect("first line");
        for dest in [
            "/a/b/c.yml",
            "/c.yml",
            "a/c.yml",
            "c.yml",
            "/a//c.yml",
            "./c.yml",
            "a b/$x",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "dest=$1\n{first_line}\nprintf '%s\\n' \"$dir\" \"$(dirname -- \"$dest\")\""
                ))
                .args(["sh", dest])
                .output()
                .expect("sh");
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{dest}: {text}");
            assert_eq!(
                std::path::Path::new(lines[0])
                    .components()
                    .collect::<Vec<_>>(),
                std::path::Path::new(lines[1])
                    .components()
                    .collect::<Vec<_>>(),
                "{dest}: ours {:?}, dirname {:?}",
                lines[0],
                lines[1]
            );
        }
    }

    /// Values stay values: a hostile path and owner reach `mkdir`/`chown` as one word each
    /// and nothing they spell runs (the local sh as the oracle, in a scratch directory).
    #[test]
    fn hostile_dest_and_owner_are_never_syntax() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("pwned");
        let evil = format!("$(touch {m}); `touch {m}`; touch {m}", m = marker.display());
        let dest = dir.path().join(format!("sub {evil}")).join("f'\n*");
        let script = upload_script(dest.to_str().expect("utf8"), 0o640, None);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "changed\n", "{out:?}");
        assert!(dest.is_file(), "{}", dest.display());
        assert!(!marker.exists());
        // The owner is a value too (chown fails on the hostile name; nothing runs).
        let owner = format!("x$(touch {})", marker.display());
        let script = upload_script(dest.to_str().expect("utf8"), 0o600, Some(&owner));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("sh");
        assert!(!out.status.success());
        assert!(!marker.exists());
    }
}
