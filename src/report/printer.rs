//! The output owner (uv's `Printer`): built once per process, in `main`, from the command's
//! output flags (`OutputPolicy`). It holds the run's `Masker` — every secret read anywhere
//! is registered on it, and everything printed goes through it — and the one `Reporter`
//! (terminal, or JSON for `--output json`) all of a command's output goes through.

use std::sync::Arc;

use super::{JsonReporter, Masker, Reporter, TerminalReporter};

/// Text for people, or JSON on stdout for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// How a command wants its output, from its flags (`cli::Command::output`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputPolicy {
    pub format: Format,
    /// 0: host lines and failures; 1: every task; 2: task details too.
    pub verbosity: u8,
    /// Only results, the recap and errors.
    pub quiet: bool,
    /// Print the diffs of changed files as they happen (`--diff`).
    pub show_diff: bool,
}

pub struct Printer {
    masker: Masker,
    reporter: Arc<dyn Reporter>,
}

impl Printer {
    pub fn new(policy: OutputPolicy) -> Printer {
        let masker = Masker::default();
        let terminal = TerminalReporter::new(
            masker.clone(),
            policy.verbosity,
            policy.show_diff,
            policy.quiet,
        );
        let reporter: Arc<dyn Reporter> = match policy.format {
            Format::Text => Arc::new(terminal),
            Format::Json => Arc::new(JsonReporter::new(terminal)),
        };
        Printer { masker, reporter }
    }

    /// The masker secrets are registered on (a handle: clones share the secrets).
    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// The reporter everything is printed through.
    pub fn reporter(&self) -> Arc<dyn Reporter> {
        self.reporter.clone()
    }

    /// The error a command failed with, masked, on stderr (after the bars are down).
    pub fn error(&self, message: &str) {
        self.reporter.finish();
        eprintln!("error: {}", self.masker.mask(message));
    }

    /// Bytes generated for a program to read as they are (a completion script, a man page):
    /// on stdout, unmasked (they hold no secret: built from the clap definitions only).
    pub fn raw_stdout(&self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.reporter.finish();
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    /// An error before the command's output flags are known (the project file, the async
    /// runtime): through a default printer, masked, on stderr.
    pub fn early_error(message: &str) {
        Printer::new(OutputPolicy::default()).error(message);
    }

    /// The command is over: take progress bars down (the process exits without dropping).
    pub fn finish(&self) {
        self.reporter.finish();
    }
}
