//! The remote half of an atomic upload, as one POSIX sh script: content on stdin.
//!
//! Every file it creates gets a fresh name from `mktemp` (created with O_EXCL, so never a
//! path someone planted) in the target directory, and reaches its final name by rename, which
//! replaces a symlink instead of following it. Concurrent uploads to one path therefore never
//! collide: the last rename wins and the file is always one whole version.

use super::quote::{remote_path, sh_quote};

/// The remote half of `upload`: POSIX sh, content on stdin.
///
/// The previous version is kept as `<dest>.prev`, owned like the file being installed and with
/// the stricter of the two modes (the bits both allow): a secret written 0600 must not leave
/// its old token readable in a 0644 `.prev`, and loosening a file's mode must not loosen the
/// copy of its old content. It is written while still mktemp's 0600, then chowned and
/// chmodded. A `dest` that is a symlink is replaced, never backed up (that would copy its
/// target).
pub(super) fn upload_script(dest: &str, mode: u32, owner: Option<&str>) -> String {
    let d = remote_path(dest);
    // The temp file gets the final mode (and owner) first, so "unchanged" compares the
    // attributes the system resolved, not our spelling of them (names vs ids).
    let (chown, attrs) = match owner {
        Some(o) => (format!("chown -- {} ", sh_quote(o)), "%a:%u:%g"),
        None => (String::from(": "), "%a"),
    };
    format!(
        r#"set -e
dest={d}
dir=$(dirname -- "$dest")
mkdir -p -- "$dir"
tmp=$(mktemp -- "$dir/.promfleet.XXXXXX")
prev=
trap 'rm -f -- "$tmp" ${{prev:+"$prev"}}' EXIT
cat > "$tmp"
chmod {mode:o} "$tmp"
{chown}"$tmp"
if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s -- "$tmp" "$dest" && [ "$(stat -c {attrs} -- "$tmp")" = "$(stat -c {attrs} -- "$dest")" ]; then echo unchanged; exit 0; fi
if [ -f "$dest" ] && [ ! -L "$dest" ]; then
  prev=$(mktemp -- "$dir/.promfleet.XXXXXX")
  old=$(stat -c %a -- "$dest")
  cat -- "$dest" > "$prev"
  {chown}"$prev"
  chmod "$(printf %o "$((0$old & 0{mode:o}))")" "$prev"
  rm -f -- "$dest.prev"
  mv -f -- "$prev" "$dest.prev"
fi
mv -f -- "$tmp" "$dest"
trap - EXIT
echo changed"#
    )
}
