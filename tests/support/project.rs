//! A project of the test's own: a temp directory with playbooks and templates, promfleet run
//! in a directory with no project in the environment, and the init → exporters scenario that
//! tests/project.rs runs with this build and tests/package.rs with the installed package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{Double, host_status, repo, report, stderr};

/// A temp project: `playbooks/<name>.yml` and `templates/` (with the repo's defaults.yml).
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("playbooks")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("templates")).expect("mkdir");
        std::fs::copy(
            repo().join("templates/defaults.yml"),
            dir.path().join("templates/defaults.yml"),
        )
        .expect("defaults");
        Project { dir }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn template(&self, name: &str, text: &str) {
        std::fs::write(self.path("templates").join(name), text).expect("template");
    }
    pub fn playbook(&self, name: &str, text: &str) -> String {
        let p = self.path("playbooks").join(name);
        std::fs::write(&p, text).expect("playbook");
        p.display().to_string()
    }
}

/// `program` (this build's binary, or the installed package's: tests/package.rs) run in `cwd`
/// with no project in the environment.
pub fn run_with(program: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .current_dir(cwd)
        .args(args)
        .env_remove("PROMFLEET_PROJECT")
        .env_remove("PROMFLEET_SECRETS")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run promfleet")
}

fn succeeded(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(o));
}

/// The "done when" with `program` as promfleet: from an empty directory, `init`
/// then `exporters -i inventory.yml` rolls out to a test fleet with the project's files.
/// Needs root (the caller checks).
pub fn init_then_exporters_rolls_out(program: &Path) {
    let run_in = |cwd: &Path, args: &[&str]| run_with(program, cwd, args);
    let consul = Double::start();
    let fleet = testkit::sshd::Fleet::builder()
        .hosts(2)
        .groups(&["IDE"])
        .consul_agents([consul.d.url()])
        .start()
        .expect("fleet");
    let dir = tempfile::tempdir().expect("tmp");
    succeeded(&run_in(dir.path(), &["init"]));
    // The fleet's inventory replaces the example one, as a user edits inventory.yml.
    fleet
        .write_inventory(&dir.path().join("inventory.yml"))
        .expect("inventory");
    let o = run_in(
        dir.path(),
        &[
            "exporters",
            "-i",
            "inventory.yml",
            "--known-hosts",
            fleet.known_hosts().to_str().expect("utf8"),
            "--retry-delay-ms",
            "100",
            "--output",
            "json",
        ],
    );
    succeeded(&o);
    let st = host_status(&report(&o));
    assert_eq!(st.len(), 2, "{st:?}");
    for (h, (s, _)) in &st {
        assert_eq!(s, "changed", "{h}");
    }
    assert_eq!(consul.d.services().len(), 4);
    // State stays in the project's .promfleet/, which init's .gitignore keeps out of git.
    assert!(dir.path().join(".promfleet").is_dir());
}
