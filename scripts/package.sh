#!/usr/bin/env bash
# Build the Debian package (cargo-deb, `[package.metadata.deb]` in Cargo.toml) and print its path.
# Usage: scripts/package.sh [--profile release|dev] [--no-build] [--install]
#   --profile  which build's binary goes in (default release; CI uses dev, see below)
#   --no-build package the binary already built for that profile instead of running cargo build
#   --install  dpkg -i the package afterwards (root)
# The man pages and completions are generated here, at package time, by the binary being
# packaged (`promfleet man --out`, `promfleet completions SHELL`), rather than by build.rs:
# a build script cannot run the binary it is building, and compiling the clap definitions into
# build.rs would mean building the CLI module twice. Generating them from the very binary that
# goes into the package also guarantees pages and completions match its flags.
# CI packages the dev-profile binary that `cargo test --no-run` has already built (cargo-deb
# warns that dev profiles are meant for testing, which is what this package is for there): a
# release build of promfleet's dependencies would add minutes of CPU on 2 cores for no test
# benefit. Release packages come from the default (release) profile.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-deb version the package metadata is written for (pinned: a newer one may change what
# `--profile dev` does).
CARGO_DEB_VERSION=3.8.0
profile=release
build=1
install=0
while [ $# -gt 0 ]; do
    case $1 in
        --profile) profile=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --install) install=1; shift ;;
        *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case $profile in
    dev|debug) profile=dev; dir=debug ;;
    *) dir=$profile ;;
esac

if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    echo "installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi

target=${CARGO_TARGET_DIR:-$PWD/target}
if [ "$build" = 1 ]; then
    cargo build --profile "$profile" --bin promfleet >&2
fi
bin=$target/$dir/promfleet
[ -x "$bin" ] || { echo "package.sh: no binary at $bin (build it, or drop --no-build)" >&2; exit 1; }

# What Cargo.toml's assets name as target/release/package/… (cargo-deb maps the prefix to
# $target/$dir/).
gen=$target/$dir/package
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/completions"
"$bin" man --out "$gen/man" 2>/dev/null
# -n: no name or timestamp in the gzip header, so the same pages give the same bytes.
gzip -9n "$gen"/man/*.1
"$bin" completions bash > "$gen/completions/promfleet.bash"
"$bin" completions zsh > "$gen/completions/_promfleet"
"$bin" completions fish > "$gen/completions/promfleet.fish"

mkdir -p "$target/debian"
# cargo-deb prints the package's path on stdout, warnings on stderr.
deb=$(cargo deb --no-build --profile "$profile" --output "$target/debian")
echo "$deb"
if [ "$install" = 1 ]; then
    dpkg -i "$deb" >&2
fi
