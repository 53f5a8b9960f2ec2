//! Compose project facts: which compose command the host has (`docker compose` v2, then
//! `docker-compose` v1, unless the inventory names one), the services a project defines and
//! those running. Read by the `compose` module (deploy and `--check`) and by `status`: the
//! one place promfleet asks a host about a compose project.
//!
//! Owns: compose detection ([`DETECT`], also the prologue of the module's `up -d`), the
//! project probe and its parser. Must not: start, stop or create anything.

use super::{Fact, Probe};
use crate::transport::Script;

/// Picks the compose command into `$dc` from `$cmd` (explicit) or what the host has; exits
/// 127 with the reason on stdout when there is none. Expects `set -f` (a command such as
/// `docker compose` is split into words on purpose, never globbed).
pub(crate) const DETECT: &str = r#"if [ -n "$cmd" ]; then dc=$cmd
elif docker compose version >/dev/null 2>&1; then dc="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then dc=docker-compose
else echo "neither 'docker compose' nor 'docker-compose' found on this host"; exit 127; fi"#;

/// Exit 10: no project dir. Exit 11: `config --services` refused the file (its last words
/// on stdout, after `__error`). Else `__compose <cmd>`, `__expected <svc…>`,
/// `__running <svc…>` (the lists unquoted: `echo` joins compose's lines with spaces, no `tr`
/// started for it on every host of every run).
const PROBE: &str = r#"printf '%s\n' "__compose $dc"
if [ -z "$expected" ]; then
  expected=$($dc -f "$file" config --services 2>/dev/null) || {
    echo "__error"; $dc -f "$file" config --services 2>&1 | tail -n 5; exit 11; }
fi
running=$($dc -f "$file" ps --services --filter status=running 2>/dev/null)
echo "__expected" $expected
echo "__running" $running"#;

/// One compose project on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeFact {
    pub project_dir: String,
    /// The compose file, relative to the project dir.
    pub file: String,
    /// The inventory's compose command; detected when `None`.
    pub command: Option<String>,
    /// The services, when promfleet rendered the compose file itself (compose is then not
    /// asked for `config --services`).
    pub services: Option<Vec<String>>,
}

/// What the host says about the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeState {
    /// The project dir does not exist (a host never deployed).
    NoProjectDir,
    /// Neither `docker compose` nor `docker-compose` (nor the named command) is there.
    NoCompose(String),
    /// `config --services` refused the compose file (missing, invalid): compose's words.
    Rejected(String),
    /// The probe failed otherwise (exit status, last line).
    Failed {
        status: u32,
        message: String,
    },
    Project(Project),
}

/// A project compose could read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The compose command in use (`docker compose`, `docker-compose`, the inventory's).
    pub command: String,
    pub expected: Vec<String>,
    pub running: Vec<String>,
}

impl Project {
    /// Services defined and not running, in definition order.
    pub fn missing(&self) -> Vec<String> {
        self.expected
            .iter()
            .filter(|s| !self.running.contains(s))
            .cloned()
            .collect()
    }
}

impl ComposeFact {
    /// Why the project cannot be brought up, for reports; `None` when compose read it.
    pub fn failure(&self, state: &ComposeState) -> Option<String> {
        Some(match state {
            ComposeState::Project(_) => return None,
            ComposeState::NoProjectDir => {
                format!("project dir {} does not exist", self.project_dir)
            }
            ComposeState::NoCompose(why) => why.clone(),
            ComposeState::Rejected(why) => format!("compose file rejected ({why})"),
            ComposeState::Failed { status, message } => {
                format!("compose failed (exit {status}: {message})")
            }
        })
    }
}

impl Fact for ComposeFact {
    type Output = ComposeState;

    fn key(&self) -> String {
        // JSON: unambiguous whatever the values hold, and readable in an error message.
        format!(
            "compose:{}",
            serde_json::json!([self.project_dir, self.file, self.command, self.services])
        )
    }

    fn script(&self) -> Script {
        Script::new()
            .path_var("dir", &self.project_dir)
            .var("cmd", self.command.as_deref().unwrap_or_default())
            .var("file", &self.file)
            .var(
                "expected",
                &self.services.as_deref().unwrap_or_default().join(" "),
            )
            .fragment("set -f")
            .fragment(r#"cd -- "$dir" 2>/dev/null || exit 10"#)
            .fragment(DETECT)
            .fragment(PROBE)
    }

    fn parse(&self, probe: &Probe) -> Result<ComposeState, String> {
        let text = &probe.stdout;
        let last = || {
            text.lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no output")
                .to_string()
        };
        let list = |prefix: &str| -> Option<Vec<String>> {
            text.lines().find_map(|l| {
                let rest = l.strip_prefix(prefix)?;
                (rest.is_empty() || rest.starts_with(' '))
                    .then(|| rest.split_whitespace().map(String::from).collect())
            })
        };
        Ok(match probe.status {
            10 => ComposeState::NoProjectDir,
            127 if !text.contains("__compose ") => ComposeState::NoCompose(last()),
            11 => {
                let after = text
                    .split_once("__error\n")
                    .map(|(_, e)| e)
                    .unwrap_or_default();
                let why = after
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("no output");
                ComposeState::Rejected(why.to_string())
            }
            0 => {
                let command = list("__compose").ok_or("no `__compose` line")?.join(" ");
                ComposeState::Project(Project {
                    command,
                    expected: list("__expected").ok_or("no `__expected` line")?,
                    running: list("__running").ok_or("no `__running` line")?,
                })
            }
            status => ComposeState::Failed {
                status,
                message: last(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(services: Option<&[&str]>) -> ComposeFact {
        ComposeFact {
            project_dir: "/opt/exp".into(),
            file: "docker-compose.yml".into(),
            command: None,
            services: services.map(|s| s.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn probe(stdout: &str, status: u32) -> Probe {
        Probe {
            stdout: stdout.into(),
            status,
        }
    }

    #[test]
    fn a_running_project_lists_what_is_defined_and_not_running() {
        let got = fact(None)
            .parse(&probe(
                "__compose docker compose\n__expected node cadvisor\n__running cadvisor\n",
                0,
            ))
            .expect("parse");
        let ComposeState::Project(p) = got else {
            panic!("{got:?}")
        };
        assert_eq!(p.command, "docker compose");
        assert_eq!(p.missing(), ["node"]);
        let none_running = fact(None)
            .parse(&probe("__compose x\n__expected a\n__running\n", 0))
            .expect("parse");
        assert!(matches!(none_running, ComposeState::Project(p) if p.missing() == ["a"]));
    }

    #[test]
    fn failures_keep_composes_words() {
        let f = fact(None);
        assert_eq!(
            f.parse(&probe("", 10)).expect("parse"),
            ComposeState::NoProjectDir
        );
        let rejected = f
            .parse(&probe(
                "__compose docker-compose\n__error\nERROR: yaml: line 3\n\n",
                11,
            ))
            .expect("parse");
        assert_eq!(
            f.failure(&rejected).as_deref(),
            Some("compose file rejected (ERROR: yaml: line 3)")
        );
        let none = f
            .parse(&probe(
                "neither 'docker compose' nor 'docker-compose' found",
                127,
            ))
            .expect("parse");
        assert!(matches!(none, ComposeState::NoCompose(ref w) if w.starts_with("neither")));
        // A cut answer is an error, not an empty project.
        assert!(f.parse(&probe("__compose x\n", 0)).is_err());
    }

    /// The probe run by the local sh with a stand-in compose command (the oracle is what the
    /// stand-in was told to print), including a hostile project dir that must stay a value.
    #[test]
    fn the_probe_run_by_sh_detects_nothing_else_when_told_the_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("pwned");
        // Relative: the probe runs in `dir`, so a name that ran would create `dir/pwned`.
        let project = dir.path().join("p $(touch pwned) `touch pwned`");
        std::fs::create_dir(&project).expect("mkdir");
        let bin = dir.path().join("fake-compose");
        std::fs::write(
            &bin,
            "#!/bin/sh\ncase \"$*\" in *config*) printf 'a\\nb\\n';; *ps*) echo b;; esac\n",
        )
        .expect("write");
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let run = |f: &ComposeFact| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(f.script().build())
                .current_dir(dir.path())
                .output()
                .expect("sh");
            f.parse(&probe(
                &String::from_utf8_lossy(&out.stdout),
                out.status.code().unwrap_or(255) as u32,
            ))
            .expect("parse")
        };
        let mut f = fact(None);
        f.project_dir = project.display().to_string();
        f.command = Some(bin.display().to_string());
        let ComposeState::Project(p) = run(&f) else {
            panic!("not read")
        };
        assert_eq!(p.expected, ["a", "b"]);
        assert_eq!(p.missing(), ["a"]);
        f.project_dir = dir.path().join("none").display().to_string();
        assert_eq!(run(&f), ComposeState::NoProjectDir);
        assert!(
            !marker.exists(),
            "the project dir reached the shell as code"
        );
    }
}
