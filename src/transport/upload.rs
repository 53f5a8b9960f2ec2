//! The remote half of an atomic upload, as one POSIX sh script: content on stdin.

use super::quote::{remote_path, sh_quote};

/// The remote half of `upload`: POSIX sh, content on stdin.
pub(super) fn upload_script(dest: &str, mode: u32, owner: Option<&str>) -> String {
    let d = remote_path(dest);
    // The temp file gets the final mode (and owner) first, so "unchanged" compares the
    // attributes the system resolved, not our spelling of them (names vs ids).
    let (chown, attrs) = match owner {
        Some(o) => (format!("chown -- {} \"$tmp\"", sh_quote(o)), "%a:%u:%g"),
        None => (String::from(":"), "%a"),
    };
    format!(
        r#"set -e
dest={d}
dir=$(dirname -- "$dest")
mkdir -p -- "$dir"
tmp=$(mktemp -- "$dir/.promfleet.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chmod {mode:o} "$tmp"
{chown}
if [ -f "$dest" ] && cmp -s -- "$tmp" "$dest" && [ "$(stat -c {attrs} -- "$tmp")" = "$(stat -c {attrs} -- "$dest")" ]; then echo unchanged; exit 0; fi
if [ -f "$dest" ]; then cp -p -- "$dest" "$dest.prev.tmp" && mv -f -- "$dest.prev.tmp" "$dest.prev"; fi
mv -f -- "$tmp" "$dest"
trap - EXIT
echo changed"#
    )
}
