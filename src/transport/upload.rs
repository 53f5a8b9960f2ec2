//! The remote half of an atomic upload, as one POSIX sh script: content on stdin.
//!
//! Every file it creates gets a fresh name from `mktemp` (created with O_EXCL, so never a
//! path someone planted) in the target directory, and reaches its final name by rename, which
//! replaces a symlink instead of following it. Concurrent uploads to one path therefore never
//! collide: the last rename wins and the file is always one whole version.

use super::AfterWrite;
use super::command::Script;
use super::error::TransportError;
use super::output::ExecOutput;
use super::session::Upload;

/// Refuses a `dest` that is a directory (or a symlink to one) before anything is created:
/// `mv` would move the new file *into* it and the upload would look "changed" while the
/// directory gained a stray `.promfleet.*` file.
const NOT_A_DIRECTORY: &str = r#"if [ -d "$dest" ]; then printf '%s\n' "promfleet: $dest is a directory; it cannot be replaced by a file" >&2; exit 1; fi"#;

/// Whether two files have the same content: `cmp` (diffutils, or busybox's), else their
/// SHA-256 (coreutils) on a host without it — a missing `cmp` made every upload "changed", so
/// every run rewrote every file and restarted what watches it.
const SAME: &str = r#"if command -v cmp > /dev/null 2>&1; then same() { cmp -s -- "$1" "$2"; }
else same() { a=$(sha256sum < "$1") && b=$(sha256sum < "$2") && [ "$a" = "$b" ]; }; fi"#;

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
if [ -f "$dest" ] && [ ! -L "$dest" ] && same "$tmp" "$dest" && [ "$(stat -c "$attrs" -- "$tmp")" = "$(stat -c "$attrs" -- "$dest")" ]; then echo unchanged; exit 0; fi
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
    s.fragment(NOT_A_DIRECTORY)
        .fragment(SAME)
        .fragment(INSTALL)
        .build()
}

/// `upload_script`, then `then` when (and only when) the file changed, in the same shell
/// after the rename (the write is done by then) with `set -e` off: its exit status and its
/// output after the upload's `changed` line are its own.
pub(super) fn upload_then_script(dest: &str, mode: u32, owner: Option<&str>, then: &str) -> String {
    format!("{}\nset +e\n{then}", upload_script(dest, mode, owner))
}

/// The upload's verdict from its script's output (`then`: the script was
/// `upload_then_script`): `changed` or `unchanged` on stdout and exit 0, else the write
/// failed and the previous version is in place. After a change, `then`'s output is handed
/// back with the upload's line taken off its stdout.
pub(super) fn read_answer(
    mut out: ExecOutput,
    dest: &str,
    then: bool,
) -> Result<(Upload, Option<AfterWrite>), TransportError> {
    if then && out.stdout.strip_prefix(b"changed\n") {
        return Ok((Upload::Changed, Some(Ok(out))));
    }
    match (out.status, out.stdout_str().trim()) {
        (Some(0), "unchanged") => Ok((Upload::Unchanged, None)),
        (Some(0), "changed") if !then => Ok((Upload::Changed, None)),
        _ => Err(TransportError::Remote {
            what: format!("writing {dest}"),
            message: out.short_error(),
        }),
    }
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

    /// `script` run by /bin/sh with `content` on stdin (and only `path` as PATH, if given).
    fn sh(script: &str, content: &str, path: Option<&std::path::Path>) -> std::process::Output {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(script);
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut stdin = child.stdin.take().expect("stdin");
        // A script that refuses before reading (a directory in the way) may have exited.
        let _ = stdin.write_all(content.as_bytes());
        drop(stdin);
        child.wait_with_output().expect("sh")
    }

    /// The first deploy of a host opened a channel for `up -d` right after the one that wrote
    /// its compose file. The write now runs what follows it in its own round trip, and only
    /// when the file changed: run by the local sh, a new file runs it (its exit status and
    /// output are its own, the upload's line taken off), the same content again does not, nor
    /// does a write that failed.
    #[test]
    fn the_first_deploy_opened_a_channel_for_up_after_the_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (dest, marker) = (dir.path().join("f.yml"), dir.path().join("ran"));
        let then = format!(
            "printf '%s\\n' x >> '{}'; echo out; echo err >&2; exit 7",
            marker.display()
        );
        let write = |dest: &std::path::Path, content: &str| {
            let script = upload_then_script(dest.to_str().expect("utf8"), 0o644, None, &then);
            let o = sh(&script, content, None);
            let mut out = ExecOutput::default();
            out.stdout.push(&o.stdout);
            out.stderr.push(&o.stderr);
            out.status = o.status.code().map(|c| c as u32);
            read_answer(out, "f.yml", true)
        };
        let runs = || {
            std::fs::read_to_string(&marker)
                .unwrap_or_default()
                .lines()
                .count()
        };

        let (up, ran) = write(&dest, "v1\n").expect("written");
        assert_eq!(up, Upload::Changed);
        let ran = ran
            .expect("ran after the write")
            .expect("no transport error");
        assert_eq!(
            (ran.status, ran.stdout_str(), ran.stderr_str()),
            (Some(7), "out\n".to_string(), "err\n".to_string())
        );
        assert_eq!(std::fs::read_to_string(&dest).expect("dest"), "v1\n");
        assert_eq!(runs(), 1);

        let (up, ran) = write(&dest, "v1\n").expect("compared");
        assert_eq!((up, ran.is_none()), (Upload::Unchanged, true));
        assert_eq!(runs(), 1, "ran though the file was unchanged");

        let (up, ran) = write(&dest, "v2\n").expect("written");
        assert_eq!(
            (up, ran.and_then(|r| r.ok()).map(|r| r.status)),
            (Upload::Changed, Some(Some(7)))
        );
        assert_eq!(runs(), 2);

        // A directory in the way: the write fails as itself and nothing runs after it.
        let err = write(dir.path(), "v1\n").expect_err("a directory");
        assert!(err.to_string().contains("is a directory"), "{err}");
        assert_eq!(runs(), 2, "ran after a failed write");
    }

    /// On a host without `cmp` (no diffutils), the compare failed as if the files differed:
    /// every run rewrote every file as "changed" (and forced `up -d` and restarts). Run by the
    /// local sh with a PATH that has every tool the script uses but `cmp`, the same content
    /// twice is written once, and different content still is.
    #[test]
    fn a_host_without_cmp_rewrote_every_file_on_every_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        for tool in [
            "mktemp",
            "cat",
            "chmod",
            "stat",
            "mv",
            "rm",
            "mkdir",
            "sha256sum",
        ] {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| std::path::Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool} not found"));
            std::os::unix::fs::symlink(found, bin.join(tool)).expect("symlink");
        }
        let dest = dir.path().join("f.yml");
        let write = |content: &str| {
            let script = upload_script(dest.to_str().expect("utf8"), 0o644, None);
            let o = sh(&script, content, Some(&bin));
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        assert_eq!(write("v1\n"), "changed\n");
        assert_eq!(write("v1\n"), "unchanged\n", "rewritten without cmp");
        assert_eq!(write("v2\n"), "changed\n");
        assert_eq!(std::fs::read_to_string(&dest).expect("dest"), "v2\n");
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
