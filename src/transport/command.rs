//! The one way to build a remote command line. A value never becomes shell syntax:
//!
//! - a [`Cmd`] is a fixed program and fixed options (`&'static str`, written in promfleet's
//!   code) plus value arguments, each quoted as one word;
//! - a [`Script`] is fixed fragments (`&'static str` again) that refer to values only through
//!   shell variables, assigned quoted at the top of the script.
//!
//! The one exception is shell text the operator wrote on purpose (a playbook's `shell:`,
//! `promfleet exec -- …`): [`Script::operator_shell`] runs it as written.

use std::fmt;

use super::quote::{remote_path, sh_quote};

/// One command line: `program [options…] [values…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    line: String,
}

impl Cmd {
    /// `program` is a word from promfleet's code, never a value.
    pub fn new(program: &'static str) -> Cmd {
        Cmd {
            line: program.to_string(),
        }
    }

    /// A fixed option or sub-command word (`-n`, `--`, `-c`, `up`).
    pub fn opt(mut self, word: &'static str) -> Cmd {
        self.line.push(' ');
        self.line.push_str(word);
        self
    }

    /// A value, quoted as exactly one word.
    pub fn arg(mut self, value: &str) -> Cmd {
        self.line.push(' ');
        self.line.push_str(&sh_quote(value));
        self
    }

    /// A remote path, quoted as one word (a leading `~/` is the login user's home).
    pub fn path(mut self, path: &str) -> Cmd {
        self.line.push(' ');
        self.line.push_str(&remote_path(path));
        self
    }

    pub fn as_str(&self) -> &str {
        &self.line
    }
}

/// `command` run by `/bin/sh` whatever shell parses this line: the login shell `exec`s sh,
/// so it only has to read one simple command (sh, bash, zsh, ksh and ash read it alike).
pub(super) fn in_posix_sh(command: &str) -> String {
    Cmd::new("exec")
        .opt("/bin/sh")
        .opt("-c")
        .arg(command)
        .to_string()
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// A POSIX sh script: quoted variable assignments, then fixed fragments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    text: String,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// `name=<value quoted>`: fragments use it as `"$name"`.
    pub fn var(self, name: &'static str, value: &str) -> Script {
        self.assign(name, &sh_quote(value))
    }

    /// `name=<path quoted>`, a leading `~/` being the login user's home.
    pub fn path_var(self, name: &'static str, path: &str) -> Script {
        self.assign(name, &remote_path(path))
    }

    /// `set -- <values quoted>`: fragments iterate them with `for x in "$@"`.
    pub fn positional<'a>(self, values: impl IntoIterator<Item = &'a str>) -> Script {
        self.set_positional(values, sh_quote)
    }

    /// `set -- <paths quoted>` (see [`Script::path_var`]).
    pub fn positional_paths<'a>(self, paths: impl IntoIterator<Item = &'a str>) -> Script {
        self.set_positional(paths, remote_path)
    }

    /// Fixed script text from promfleet's code.
    pub fn fragment(mut self, text: &'static str) -> Script {
        self.push_line(text);
        self
    }

    /// One built command line.
    pub fn cmd(mut self, c: &Cmd) -> Script {
        self.push_line(c.as_str());
        self
    }

    /// `inner` in a subshell: its variables, `set` options and `exit` stay inside.
    pub fn subshell(mut self, inner: Script) -> Script {
        self.text.push_str("(\n");
        self.text.push_str(&inner.text);
        self.text.push_str(")\n");
        self
    }

    /// Shell text the operator wrote to be run by the shell (a playbook's `shell:`/`command:`,
    /// `promfleet exec -- …`): run as written, its own syntax and all.
    pub fn operator_shell(mut self, text: &str) -> Script {
        self.push_line(text);
        self
    }

    pub fn build(self) -> String {
        self.text
    }

    fn assign(mut self, name: &'static str, quoted: &str) -> Script {
        debug_assert!(
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit(),
            "`{name}` is not a shell variable name"
        );
        self.text.push_str(name);
        self.text.push('=');
        self.text.push_str(quoted);
        self.text.push('\n');
        self
    }

    fn set_positional<'a>(
        mut self,
        values: impl IntoIterator<Item = &'a str>,
        quote: fn(&str) -> String,
    ) -> Script {
        self.text.push_str("set --");
        for v in values {
            self.text.push(' ');
            self.text.push_str(&quote(v));
        }
        self.text.push('\n');
        self
    }

    fn push_line(&mut self, text: &str) {
        self.text.push_str(text);
        if !text.ends_with('\n') {
            self.text.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `script` with /bin/sh and return its stdout (the oracle: the real shell).
    fn sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    const HOSTILE: &[&str] = &[
        "$(echo pwned)",
        "`echo pwned`",
        "it's \"quoted\"",
        "a\nb",
        "x; echo pwned",
        "*",
        "-n",
        "",
        "back\\slash",
        "~/not-home",
    ];

    #[test]
    fn every_value_reaches_the_program_as_one_word() {
        for v in HOSTILE {
            let c = Cmd::new("printf").arg("%s|").arg(v);
            assert_eq!(sh(c.as_str()), format!("{v}|"), "{c}");
        }
    }

    #[test]
    fn script_variables_and_positionals_are_values_not_syntax() {
        for v in HOSTILE {
            let s = Script::new()
                .var("value", v)
                .positional([*v, "second"])
                .fragment(r#"printf '%s|' "$value" "$@""#)
                .build();
            assert_eq!(sh(&s), format!("{v}|{v}|second|"), "{s}");
        }
    }

    #[test]
    fn paths_expand_only_a_leading_home() {
        let home = sh("printf %s \"$HOME\"");
        let s = Script::new()
            .path_var("p", "~/a b")
            .positional_paths(["~/c", "/x/~/d"])
            .fragment(r#"printf '%s|' "$p" "$@""#)
            .build();
        assert_eq!(sh(&s), format!("{home}/a b|{home}/c|/x/~/d|"));
    }

    /// Quoting is the builder's job: outside it, a call to `sh_quote`/`remote_path` is shell
    /// text being assembled by hand (as `sudo.rs` and `upload.rs` once did). The only other
    /// callers produce no command: the masker (the quoted form of a secret, to hide it) and
    /// the template filter that quotes a path inside operator-written shell.
    #[test]
    fn only_the_builder_quotes_values_into_shell_text() {
        const ALLOWED: &[&str] = &[
            "src/transport/command.rs",
            "src/transport/quote.rs",
            "src/report/mask.rs",
            "src/playbook/template.rs",
        ];
        fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).expect("read src").flatten() {
                let p = e.path();
                if p.is_dir() {
                    rust_files(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        assert!(files.len() > 20, "src/ not found under {}", root.display());
        let mut found = Vec::new();
        for f in &files {
            let rel = f.strip_prefix(root).expect("under root");
            let rel = rel.to_string_lossy();
            if ALLOWED.contains(&rel.as_ref()) {
                continue;
            }
            let text = std::fs::read_to_string(f).expect("read");
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                if code.contains("sh_quote(") || code.contains("remote_path(") {
                    found.push(format!("{rel}:{}: {code}", n + 1));
                }
            }
        }
        assert!(
            found.is_empty(),
            "shell text quoted by hand (use Cmd or Script):\n{}",
            found.join("\n")
        );
    }
}
