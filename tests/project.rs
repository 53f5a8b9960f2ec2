//! The binary on its own (issue 18): the built-in playbooks and templates, a project that
//! overrides single files, `promfleet init` and `init --diff`, errors instead of silent
//! nothing, and `--version`. Every run here starts in a temp directory, not the checkout.
//! The oracle for "built-in" is the checkout itself: rendering with the repository as the
//! project must give the same bytes as rendering with no project at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

/// promfleet run in `cwd` with no project in the environment.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    run_with(Path::new(bin()), cwd, args)
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(o));
    stderr(o)
}

fn failed(o: &Output) -> String {
    assert_ne!(
        o.status.code(),
        Some(0),
        "must fail; stderr:\n{}",
        stderr(o)
    );
    assert!(o.status.code().is_some(), "killed: {o:?}");
    stderr(o)
}

/// An empty working directory holding only the example inventory (as `inv.yml`).
fn empty_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        repo().join("inventory/example.yml"),
        d.path().join("inv.yml"),
    )
    .expect("inventory");
    d
}

/// Every file under `dir`, by relative path.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(at: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(at).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `render` of the default playbooks (consul, monitoring, exporters) from `cwd` into a fresh
/// directory; returns the tree and stderr.
fn render(cwd: &Path, extra: &[&str]) -> (BTreeMap<PathBuf, Vec<u8>>, String) {
    let out = tempfile::tempdir().expect("out");
    let inv = repo().join("inventory/example.yml");
    let mut args = vec![
        "render",
        "-v",
        "-i",
        inv.to_str().expect("utf8"),
        "--out",
        out.path().to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    let o = run_in(cwd, &args);
    let err = ok(&o);
    (tree(out.path()), err)
}

#[test]
fn builtin_files_render_from_an_empty_directory_as_the_checkout_does() {
    let empty = empty_dir();
    let (built_in, err) = render(empty.path(), &[]);
    assert!(
        err.contains("project directory: none (built-in files only)"),
        "{err}"
    );
    assert!(
        err.contains("templates/exporters/docker-compose.yml: built-in"),
        "-v names the origin: {err}"
    );
    // Every fleet host got its exporter compose file, every monitoring host its stack.
    for h in ["ide-01", "stage-02", "pet-01"] {
        let compose = built_in
            .iter()
            .find(|(p, _)| p.starts_with(h) && p.ends_with("docker-compose.yml"))
            .unwrap_or_else(|| panic!("{h}: no compose file in {:?}", built_in.keys()));
        let text = String::from_utf8_lossy(compose.1);
        assert!(text.contains("node-exporter"), "{h}: {text}");
    }
    assert!(
        built_in.keys().any(|p| p.ends_with("prometheus.yml")),
        "{:?}",
        built_in.keys()
    );
    // The same render with the checkout as the project: byte for byte the same tree.
    let (checkout, err) = render(&repo(), &[]);
    assert!(
        err.contains(
            "templates/exporters/docker-compose.yml: ./templates/exporters/docker-compose.yml"
        ),
        "{err}"
    );
    assert_eq!(
        built_in.keys().collect::<Vec<_>>(),
        checkout.keys().collect::<Vec<_>>()
    );
    for (p, bytes) in &checkout {
        assert!(built_in.get(p) == Some(bytes), "{} differs", p.display());
    }
}

#[test]
fn overriding_one_template_changes_only_that_files_rendering() {
    let empty = empty_dir();
    let (built_in, _) = render(empty.path(), &[]);

    let proj = tempfile::tempdir().expect("project");
    let t = proj.path().join("templates/exporters/docker-compose.yml");
    std::fs::create_dir_all(t.parent().expect("parent")).expect("mkdir");
    let original = std::fs::read_to_string(repo().join("templates/exporters/docker-compose.yml"))
        .expect("read");
    std::fs::write(&t, format!("# site override\n{original}")).expect("write");

    for how in ["cwd", "--project"] {
        let (overlaid, err) = match how {
            "cwd" => render(proj.path(), &[]),
            _ => render(
                empty.path(),
                &["--project", proj.path().to_str().expect("utf8")],
            ),
        };
        assert!(
            err.contains(&format!(
                "templates/exporters/docker-compose.yml: {}",
                t.display()
            )) || err.contains(
                "templates/exporters/docker-compose.yml: ./templates/exporters/docker-compose.yml"
            ),
            "{how}: -v names the project's file: {err}"
        );
        assert!(
            err.contains("templates/monitoring/prometheus.yml: built-in"),
            "{how}: {err}"
        );
        assert_eq!(
            built_in.keys().collect::<Vec<_>>(),
            overlaid.keys().collect::<Vec<_>>(),
            "{how}"
        );
        let mut changed = 0;
        for (p, bytes) in &built_in {
            let new = &overlaid[p];
            // The exporter compose files are the fleet hosts' `docker-compose.yml` under the
            // deploy dir; the monitoring host's compose comes from another template.
            let fleet_compose = p.ends_with("exporter-deploy/docker-compose.yml");
            if fleet_compose {
                changed += 1;
                let mut expected = b"# site override\n".to_vec();
                expected.extend_from_slice(bytes);
                assert_eq!(new, &expected, "{how}: {}", p.display());
            } else {
                assert!(new == bytes, "{how}: {} changed", p.display());
            }
        }
        assert_eq!(
            changed, 7,
            "{how}: one exporter compose file per fleet host"
        );
    }
}

#[test]
fn playbook_names_resolve_through_the_overlay_and_real_paths_still_work() {
    let empty = empty_dir();
    let render_one = |book: &str| {
        let out = empty.path().join(format!("out-{}", book.replace('/', "_")));
        let o = run_in(
            empty.path(),
            &[
                "render",
                book,
                "-i",
                "inv.yml",
                "--out",
                out.to_str().expect("utf8"),
            ],
        );
        ok(&o);
        tree(&out)
    };
    let by_name = render_one("exporters.yml");
    assert_eq!(by_name.len(), 7, "{:?}", by_name.keys());
    assert_eq!(render_one("exporters"), by_name);
    assert_eq!(render_one("playbooks/exporters.yml"), by_name);
    let real = repo().join("playbooks/exporters.yml");
    assert_eq!(render_one(real.to_str().expect("utf8")), by_name);
}

#[test]
fn a_missing_playbook_or_template_is_an_error_saying_where_it_looked() {
    let empty = empty_dir();
    let err = failed(&run_in(
        empty.path(),
        &["deploy", "exporter", "-i", "inv.yml", "--check"],
    ));
    assert!(err.contains("playbook `exporter` not found"), "{err}");
    assert!(err.contains("built-in"), "{err}");
    assert!(
        err.contains("did you mean `playbooks/exporters.yml`?"),
        "{err}"
    );

    // A project playbook naming a template neither the project nor the binary has.
    let proj = tempfile::tempdir().expect("project");
    std::fs::create_dir_all(proj.path().join("playbooks")).expect("mkdir");
    std::fs::write(
        proj.path().join("playbooks/t.yml"),
        "- hosts: fleet\n  tasks:\n    - template: { src: nope.j2, dest: /tmp/x }\n",
    )
    .expect("write");
    let inv = empty.path().join("inv.yml");
    let err = failed(&run_in(
        proj.path(),
        &[
            "render",
            "t.yml",
            "-i",
            inv.to_str().expect("utf8"),
            "--out",
            "o",
        ],
    ));
    assert!(
        err.contains("template `templates/nope.j2` not found"),
        "{err}"
    );
    assert!(
        err.contains("templates/nope.j2 and the built-in files"),
        "{err}"
    );
}

#[test]
fn no_host_to_act_on_is_an_error() {
    let dir = tempfile::tempdir().expect("tmp");
    // Only a monitoring host: the exporters play (`hosts: fleet`) has nothing to do.
    std::fs::write(
        dir.path().join("inv.yml"),
        "consul:\n  agents: [http://127.0.0.1:8500]\nmonitoring:\n  hosts:\n    - { name: mon-01, ip: 127.0.0.9 }\n",
    )
    .expect("inventory");
    for sub in [
        &["render", "exporters.yml", "-i", "inv.yml", "--out", "o"][..],
        &["deploy", "exporters.yml", "-i", "inv.yml", "--check"][..],
        &["exporters", "-i", "inv.yml", "--check"][..],
    ] {
        let err = failed(&run_in(dir.path(), sub));
        assert!(err.contains("no host to act on"), "{sub:?}: {err}");
        assert!(
            err.contains("`fleet`"),
            "{sub:?}: names the play's hosts: {err}"
        );
        assert!(err.contains("inv.yml"), "{sub:?}: {err}");
    }
    assert!(!dir.path().join("o").exists(), "nothing written");
}

/// Moving the "no host to act on" check into planning made `status --scope central` fail on
/// an inventory of monitoring hosts only, although central services need no fleet host.
#[test]
fn status_scope_central_needs_no_fleet_host() {
    let dir = tempfile::tempdir().expect("tmp");
    // Nothing listens on these loopback ports: the services are reported down, not an error.
    std::fs::write(
        dir.path().join("inv.yml"),
        "consul:\n  agents: [http://127.0.0.1:1]\nmonitoring:\n  hosts:\n    - { name: mon-01, ip: 127.0.0.9 }\n",
    )
    .expect("inventory");
    let central = run_in(
        dir.path(),
        &[
            "status", "-i", "inv.yml", "--scope", "central", "--output", "json",
        ],
    );
    assert!(
        !stderr(&central).contains("no host to act on"),
        "{}",
        stderr(&central)
    );
    assert_ne!(central.status.code(), Some(1), "{}", stderr(&central));
    let report: serde_json::Value =
        serde_json::from_slice(&central.stdout).expect("status JSON on stdout");
    assert!(
        report["central"].as_array().is_some_and(|c| !c.is_empty()),
        "{report}"
    );
    // The fleet view still needs a fleet host.
    let fleet = run_in(dir.path(), &["status", "-i", "inv.yml", "--scope", "fleet"]);
    assert!(failed(&fleet).contains("no host to act on"));
}

#[test]
fn init_writes_an_editable_project_that_renders_as_the_builtin_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let proj = dir.path().join("site");
    ok(&run_in(dir.path(), &["init", "site"]));

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(proj.join("secrets.yml"))
        .expect("secrets")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "secrets skeleton mode {mode:o}");
    let ignore = std::fs::read_to_string(proj.join(".gitignore")).expect("gitignore");
    let ignored: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(ignored.contains(&"/secrets.yml"), "{ignore}");
    assert!(ignored.contains(&"/.promfleet/"), "{ignore}");
    assert_eq!(
        std::fs::read(proj.join("inventory.yml")).expect("inventory"),
        std::fs::read(repo().join("inventory/example.yml")).expect("example")
    );
    for f in ["playbooks/exporters.yml", "templates/defaults.yml"] {
        assert_eq!(
            std::fs::read(proj.join(f)).expect(f),
            std::fs::read(repo().join(f)).expect(f),
            "{f}"
        );
    }

    // The project renders as the built-in files do, with its secrets skeleton accepted.
    let (from_project, err) = render(&proj, &["--secrets", "secrets.yml"]);
    assert!(
        err.contains(
            "templates/exporters/docker-compose.yml: ./templates/exporters/docker-compose.yml"
        ),
        "{err}"
    );
    let (built_in, _) = render(empty_dir().path(), &[]);
    assert!(
        from_project == built_in,
        "init's project renders differently"
    );

    // --diff: nothing differs yet; then one edited template shows up as a unified diff.
    let o = run_in(dir.path(), &["init", "--diff", "site"]);
    ok(&o);
    assert_eq!(stdout(&o), "", "fresh project differs: {}", stdout(&o));
    let t = proj.join("templates/exporters/docker-compose.yml");
    let text = std::fs::read_to_string(&t).expect("read");
    std::fs::write(
        &t,
        text.replacen("restart: always", "restart: unless-stopped", 1),
    )
    .expect("write");
    std::fs::remove_file(proj.join("playbooks/site.yml")).expect("rm");
    let o = run_in(dir.path(), &["init", "--diff", "site"]);
    ok(&o);
    let diff = stdout(&o);
    assert!(
        diff.contains("--- built-in/templates/exporters/docker-compose.yml"),
        "{diff}"
    );
    assert!(diff.contains("-    restart: always"), "{diff}");
    assert!(diff.contains("+    restart: unless-stopped"), "{diff}");
    assert!(diff.contains("only built-in: playbooks/site.yml"), "{diff}");
    assert_eq!(
        diff.matches("\n+++ ").count() + diff.starts_with("+++ ") as usize,
        1,
        "{diff}"
    );
}

#[test]
fn init_refuses_to_overwrite_and_writes_nothing_then() {
    let dir = tempfile::tempdir().expect("tmp");
    ok(&run_in(dir.path(), &["init"]));
    let before = tree(dir.path());
    let err = failed(&run_in(dir.path(), &["init", "."]));
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert!(err.contains("secrets.yml"), "{err}");
    assert_eq!(tree(dir.path()), before);

    // One existing file is enough: it is named and nothing else is written.
    let other = tempfile::tempdir().expect("tmp");
    std::fs::write(other.path().join(".gitignore"), "mine\n").expect("write");
    let err = failed(&run_in(other.path(), &["init"]));
    assert!(err.contains("1 existing file(s): .gitignore"), "{err}");
    assert_eq!(
        tree(other.path()).into_keys().collect::<Vec<_>>(),
        vec![PathBuf::from(".gitignore")]
    );
    assert_eq!(
        std::fs::read_to_string(other.path().join(".gitignore")).expect("read"),
        "mine\n"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let o = run_in(&std::env::temp_dir(), &["--version"]);
    let out = stdout(&o);
    // The oracle: git itself on this checkout (or "unknown" where git cannot answer).
    let commit = Command::new("git")
        .current_dir(repo())
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        out.trim(),
        format!("promfleet {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}

/// The "done when": from an empty directory, `init` then `exporters -i
/// inventory.yml` rolls out to the test fleet with the project's files.
#[test]
fn init_then_exporters_from_an_empty_directory_rolls_out() {
    if !require_root() {
        return;
    }
    init_then_exporters_rolls_out(Path::new(bin()));
}
