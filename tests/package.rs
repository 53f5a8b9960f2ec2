//! The Debian package (issue 18): what a jump host gets from `dpkg -i promfleet_*.deb` —
//! /usr/bin/promfleet, its man pages found by `man`, its bash completion loaded by
//! bash-completion itself, and `init` + `exporters` from an empty directory against a test
//! fleet with the installed binary. scripts/package.sh builds the package and .ci/run installs
//! it. Without the package (or with one built from another commit) these tests print SKIPPED —
//! except in CI (`CI=true`), where that is a failure: CI exists to prove the package works.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::support::*;

const INSTALLED: &str = "/usr/bin/promfleet";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skip outside CI, fail in CI.
fn unavailable(why: &str) -> bool {
    assert!(!in_ci(), "CI=true: {why}");
    eprintln!("SKIPPED: {why}");
    false
}

/// Whether the promfleet package is installed (dpkg's answer, not just a file on PATH) and
/// built from this checkout: its `--version` must name the same version and commit as the
/// binary cargo built for these tests, or the tests would judge some older package.
fn package_installed() -> bool {
    let status = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "promfleet"])
        .output();
    let installed = status
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| stdout(&o) == "install ok installed");
    if !installed {
        return unavailable(
            "the promfleet Debian package is not installed (scripts/package.sh --install)",
        );
    }
    let version = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .map(|o| stdout(&o))
            .unwrap_or_else(|e| format!("{program}: {e}"))
    };
    let (theirs, mine) = (version(INSTALLED), version(bin()));
    if theirs != mine {
        return unavailable(&format!(
            "the installed package is `{}`, this checkout builds `{}` (rebuild: scripts/package.sh --install)",
            theirs.trim(),
            mine.trim()
        ));
    }
    true
}

/// The files the package installed, as dpkg lists them.
fn package_files() -> BTreeSet<String> {
    let o = Command::new("dpkg")
        .args(["-L", "promfleet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "dpkg -L: {}", stderr(&o));
    stdout(&o).lines().map(str::to_string).collect()
}

/// The package carries what the issue lists: the binary, one man page per command (the set
/// this build's `promfleet man --out` writes), the bash/zsh/fish completions this build
/// generates (byte for byte), the license; its dependencies were computed (libc6).
#[test]
fn package_carries_the_binary_man_pages_completions_and_license() {
    if !package_installed() {
        return;
    }
    let files = package_files();
    for f in [
        INSTALLED,
        "/usr/share/doc/promfleet/copyright",
        "/usr/share/man/man1/promfleet.1.gz",
    ] {
        assert!(files.contains(f), "{f} not in the package: {files:?}");
    }
    let copyright = std::fs::read_to_string("/usr/share/doc/promfleet/copyright").unwrap();
    assert!(copyright.contains("MIT"), "{copyright}");

    // Man pages: the same names as this build writes.
    let dir = tempfile::tempdir().unwrap();
    let o = Run::new(&["man", "--out"]).arg(dir.path()).output();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            format!(
                "/usr/share/man/man1/{}.gz",
                e.unwrap().file_name().to_string_lossy()
            )
        })
        .collect();
    let got: BTreeSet<String> = files
        .iter()
        .filter(|f| f.starts_with("/usr/share/man/man1/"))
        .cloned()
        .collect();
    assert_eq!(got, want);

    // Completions: where each shell's Debian package looks for vendor completions.
    for (shell, path) in [
        ("bash", "/usr/share/bash-completion/completions/promfleet"),
        ("zsh", "/usr/share/zsh/vendor-completions/_promfleet"),
        (
            "fish",
            "/usr/share/fish/vendor_completions.d/promfleet.fish",
        ),
    ] {
        assert!(files.contains(path), "{path} not in the package");
        let generated = Run::new(&["completions", shell]).output();
        assert_eq!(
            std::fs::read(path).unwrap(),
            generated.stdout,
            "{path} differs from `promfleet completions {shell}`"
        );
    }

    let o = Command::new("dpkg-query")
        .args(["-W", "-f=${Depends}", "promfleet"])
        .output()
        .unwrap();
    assert!(stdout(&o).contains("libc6"), "Depends: {}", stdout(&o));
}

/// `man promfleet` and `man promfleet-deploy` find the installed pages (man-db's own search,
/// `man -w`), and the main page renders without warnings.
#[test]
fn man_finds_the_installed_pages() {
    if !package_installed() {
        return;
    }
    if !have("man") {
        unavailable("man (man-db) is not installed");
        return;
    }
    for page in ["promfleet", "promfleet-deploy", "promfleet-exporters"] {
        let o = Command::new("man").args(["-w", page]).output().unwrap();
        assert!(o.status.success(), "man -w {page}: {}", stderr(&o));
        assert_eq!(
            stdout(&o).trim(),
            format!("/usr/share/man/man1/{page}.1.gz"),
            "man -w {page}"
        );
    }
    let o = Command::new("man")
        .env("MANWIDTH", "200")
        .args(["--warnings", "promfleet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "man promfleet: {}", stderr(&o));
    assert_eq!(stderr(&o).trim(), "", "warnings rendering man promfleet");
    assert!(
        stdout(&o).contains("promfleet-exporters(1)"),
        "{}",
        stdout(&o)
    );
}

/// bash-completion's own loader (`__load_completion`, what it runs on the first TAB after
/// `promfleet`) finds the packaged file by command name, and the loaded function completes
/// subcommands.
#[test]
fn bash_completion_loads_the_packaged_completion() {
    if !package_installed() {
        return;
    }
    let loader = Path::new("/usr/share/bash-completion/bash_completion");
    if !have("bash") || !loader.exists() {
        unavailable("bash or bash-completion is not installed");
        return;
    }
    let script = format!(
        "source {}\n\
         complete -p promfleet >/dev/null 2>&1 && {{ echo 'already loaded'; exit 3; }}\n\
         __load_completion promfleet || exit 4\n\
         complete -p promfleet\n\
         COMP_WORDS=(promfleet expor); COMP_CWORD=1; COMPREPLY=()\n\
         _promfleet promfleet expor promfleet\n\
         printf 'offer %s\\n' \"${{COMPREPLY[@]}}\"\n",
        loader.display()
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env_remove("BASH_COMPLETION_USER_DIR")
        .env_remove("XDG_DATA_DIRS")
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "bash: {out}{}", stderr(&o));
    assert!(
        out.lines()
            .any(|l| l.starts_with("complete ") && l.ends_with(" -F _promfleet promfleet")),
        "bash-completion did not load the package's completion: {out}"
    );
    assert!(out.contains("offer exporters\n"), "{out}");
}

/// The "done when", with the installed package: `init` then `exporters -i
/// inventory.yml` from an empty directory rolls out to a test fleet.
#[test]
fn installed_package_inits_and_rolls_out_from_an_empty_directory() {
    if !package_installed() || !require_root() {
        return;
    }
    init_then_exporters_rolls_out(Path::new(INSTALLED));
}
