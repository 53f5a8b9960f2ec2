//! `become` through sudo: the command lines that wrap a command, and the password protocol.
//!
//! Without a password, commands run under `sudo -n` (fails at once instead of asking).
//! With one, under `sudo -S -p <prompt>`: the password goes on stdin, never on a command line,
//! so it is in no process's argv on either side. stdin then carries, in order:
//!
//! ```text
//! <password>\n <marker>\n <the command's own input…>
//! ```
//!
//! sudo reads its password one byte at a time up to the newline, so when it asks it takes
//! exactly the first line. It does not always ask (NOPASSWD rules, cached credentials), so a
//! prelude in the root shell reads up to and including the marker line: whichever way sudo
//! went, the command sees only its own input. A wrong password would make sudo read the next
//! lines as more attempts; `Session` therefore proves the password once per connection with
//! `check`, whose stdin is the password line alone (then EOF: sudo cannot wait).
//!
//! The prompt and marker carry a random token per run, so sudo's prompt can be told apart
//! from the command's output and stripped from stderr.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use super::command::Cmd;
use super::output::Capture;

/// Where a become password came from, for messages that say what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// Typed at `--ask-become-pass` / `-K`.
    AskBecomePass,
    /// The `become_password` secret, and where it was read (environment variable or file).
    Secret { from: String },
    /// An Ansible inventory variable (`ansible_become_password` …), with where it was set.
    Inventory { var: String, at: String },
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::AskBecomePass => write!(f, "--ask-become-pass (-K)"),
            PasswordSource::Secret { from } => write!(f, "the `become_password` secret ({from})"),
            PasswordSource::Inventory { var, at } => write!(f, "`{var}` ({at})"),
        }
    }
}

/// A sudo password and its source. Debug never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct BecomePassword {
    value: Arc<str>,
    source: PasswordSource,
}

impl fmt::Debug for BecomePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BecomePassword(******** from {})", self.source)
    }
}

impl BecomePassword {
    /// Refuses what sudo could not take as one line: empty, or with a newline or NUL (it would
    /// end the password early and feed the rest to the command).
    pub fn new(value: &str, source: PasswordSource) -> Result<BecomePassword, String> {
        if value.is_empty() {
            return Err(format!("the become password from {source} is empty"));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(format!(
                "the become password from {source} contains a line break or NUL, which sudo cannot read as one line"
            ));
        }
        Ok(BecomePassword {
            value: Arc::from(value),
            source,
        })
    }

    /// The password itself (to register with the masker).
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn source(&self) -> &PasswordSource {
        &self.source
    }
}

/// Random per run: sudo's prompt and the marker line carry it.
fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        use rand::Rng;
        let bytes: [u8; 12] = rand::thread_rng().r#gen();
        hex::encode(bytes)
    })
}

/// The prompt sudo prints before reading the password (no `%` escapes, which sudo expands).
fn prompt() -> String {
    format!("[promfleet-sudo-{}]", token())
}

fn marker() -> String {
    format!("promfleet-become-{}", token())
}

/// `command` as root, for a user with passwordless sudo.
pub(super) fn without_password(command: &str) -> String {
    Cmd::new("sudo")
        .opt("-n")
        .opt("sh")
        .opt("-c")
        .arg(command)
        .to_string()
}

/// The root shell's prelude for `with_password`: `$1` is the marker, `$2` the command.
/// It reads up to and including the marker line, then replaces itself with the command, so
/// the command runs in a `sh -c` of its own exactly as `without_password` runs it. Exit 125
/// if the marker never comes: the input is not what this protocol sent, and running the
/// command on it could write a password into a file.
const PRELUDE: &str = r#"lost() { echo 'promfleet: become: the input did not start as sent; command not run' >&2; exit 125; }
IFS= read -r l || lost
if [ "$l" != "$1" ]; then IFS= read -r l || lost; [ "$l" = "$1" ] || lost; fi
exec sh -c "$2""#;

/// `command` as root through `sudo -S`; its stdin must be `stdin_with_password`.
pub(super) fn with_password(command: &str) -> String {
    Cmd::new("sudo")
        .opt("-S")
        .opt("-p")
        .arg(&prompt())
        .opt("sh")
        .opt("-c")
        .arg(PRELUDE)
        .opt("sh")
        .arg(&marker())
        .arg(command)
        .to_string()
}

/// The stdin for a `with_password` command: password line, marker line, then `input`.
pub(super) fn stdin_with_password(password: &BecomePassword, input: Option<Bytes>) -> Bytes {
    let m = marker();
    let input = input.unwrap_or_default();
    let mut b = BytesMut::with_capacity(password.value.len() + m.len() + 2 + input.len());
    b.extend_from_slice(password.value.as_bytes());
    b.extend_from_slice(b"\n");
    b.extend_from_slice(m.as_bytes());
    b.extend_from_slice(b"\n");
    b.extend_from_slice(&input);
    b.freeze()
}

/// The once-per-connection check: the command, and its stdin. With a password, stdin is the
/// password line alone, then EOF: sudo cannot wait for (or read input as) another attempt.
/// `-k`: credentials sudo cached earlier (another session, `timestamp_type=global`) must not
/// pass the check for an untested password, which sudo could ask for later, when the cache
/// has expired, reading the command's input as further attempts.
pub(super) fn check(password: Option<&BecomePassword>) -> (String, Option<Bytes>) {
    match password {
        None => (Cmd::new("sudo").opt("-n").opt("true").to_string(), None),
        Some(pw) => (
            Cmd::new("sudo")
                .opt("-k")
                .opt("-S")
                .opt("-p")
                .arg(&prompt())
                .opt("true")
                .to_string(),
            Some(Bytes::from(format!("{}\n", pw.value))),
        ),
    }
}

/// How many times sudo asked for the password: twice means it rejected the first one.
pub(super) fn prompts(stderr: &Capture) -> usize {
    stderr.kept().iter().map(|part| count_prompts(part)).sum()
}

fn count_prompts(stderr: &[u8]) -> usize {
    let p = prompt();
    let p = p.as_bytes();
    stderr.windows(p.len()).filter(|w| *w == p).count()
}

/// stderr without sudo's prompt (which it prints with no newline, glued to the next output).
pub(super) fn strip_prompts(stderr: &mut Capture) {
    stderr.edit_kept(strip_prompts_from);
}

fn strip_prompts_from(stderr: &mut Vec<u8>) {
    let p = prompt();
    let p = p.as_bytes();
    if count_prompts(stderr) == 0 {
        return;
    }
    let mut out = Vec::with_capacity(stderr.len());
    let mut i = 0;
    while i < stderr.len() {
        if stderr[i..].starts_with(p) {
            i += p.len();
        } else {
            out.push(stderr[i]);
            i += 1;
        }
    }
    *stderr = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(v: &str) -> BecomePassword {
        let from = "PROMFLEET_SECRET_BECOME_PASSWORD".to_string();
        BecomePassword::new(v, PasswordSource::Secret { from }).expect("valid")
    }

    #[test]
    fn the_password_is_never_on_the_command_line_nor_in_debug() {
        let p = pw("s3cret-Pa55");
        let cmd = with_password("cat > /tmp/x");
        assert!(!cmd.contains("s3cret"), "{cmd}");
        let (check_cmd, check_stdin) = check(Some(&p));
        assert!(!check_cmd.contains("s3cret"), "{check_cmd}");
        assert!(!format!("{p:?}").contains("s3cret"));
        let stdin = stdin_with_password(&p, Some(Bytes::from_static(b"data\n")));
        assert_eq!(
            stdin,
            Bytes::from(format!("s3cret-Pa55\n{}\ndata\n", marker()))
        );
        assert_eq!(check_stdin, Some(Bytes::from_static(b"s3cret-Pa55\n")));
    }

    #[test]
    fn passwords_sudo_cannot_read_as_one_line_are_refused() {
        for bad in ["", "a\nb", "a\rb", "a\0b"] {
            assert!(BecomePassword::new(bad, PasswordSource::AskBecomePass).is_err());
        }
    }

    #[test]
    fn prompts_are_counted_and_stripped() {
        let p = prompt();
        let mut e =
            format!("{p}Sorry, try again.\n{p}\nsudo: no password was provided\n").into_bytes();
        assert_eq!(count_prompts(&e), 2);
        strip_prompts_from(&mut e);
        assert_eq!(
            String::from_utf8_lossy(&e),
            "Sorry, try again.\n\nsudo: no password was provided\n"
        );
        let mut e = format!("{p}warning: x\n").into_bytes();
        strip_prompts_from(&mut e);
        assert_eq!(e, b"warning: x\n");
    }

    /// The prelude, run by the local sh: whether or not something ate the password line
    /// first (sudo asking or not), the command gets exactly its own input; without the
    /// marker it does not run.
    #[test]
    fn the_prelude_hands_the_command_exactly_its_input() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let script = with_password("cat");
        // The `sh -c` argument as sudo would receive it.
        let words = shlex::split(&script).expect("shell words");
        assert_eq!(&words[..4], ["sudo", "-S", "-p", prompt().as_str()]);
        assert_eq!(&words[4..6], ["sh", "-c"]);
        // What sudo runs: `sh -c <prelude> sh <marker> <command>`.
        let inner = &words[6..];
        assert_eq!(inner[2..], [marker(), "cat".to_string()]);
        let p = pw("pa55word");
        let input = Bytes::from_static(b"line1\nline2 no newline");
        let full = stdin_with_password(&p, Some(input.clone()));
        let run = |stdin: &[u8]| {
            let mut child = Command::new("sh")
                .arg("-c")
                .args(inner)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("sh");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(stdin)
                .expect("write");
            child.wait_with_output().expect("wait")
        };
        // sudo did not ask: the password line is still there.
        let out = run(&full);
        assert!(out.status.success());
        assert_eq!(out.stdout, input);
        // sudo asked and took the first line.
        let after = &full[p.expose().len() + 1..];
        let out = run(after);
        assert_eq!(out.stdout, input);
        // No marker: the command does not run.
        let out = run(b"pa55word\nsomething else\nline1\n");
        assert_eq!(out.status.code(), Some(125));
        assert!(out.stdout.is_empty());
        let out = run(b"");
        assert_eq!(out.status.code(), Some(125));
    }
}
