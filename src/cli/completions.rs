//! `promfleet completions SHELL` and `promfleet man`: shell completion scripts and man pages
//! generated from the clap definitions (`Cli`), so they always list the flags this build has.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;
use crate::report::{ExitCode, Printer, write_atomic};

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to print a completion script for (on stdout).
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write promfleet.1 and one page per subcommand (promfleet-deploy.1, …) into DIR,
    /// instead of printing promfleet.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn completions(a: CompletionsArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "promfleet", &mut buf);
    printer
        .raw_stdout(&buf)
        .context("writing the completion script to stdout")?;
    Ok(ExitCode::Ok)
}

pub fn man(a: ManArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    // Built once, as clap_mangen::generate_to does: subcommands then carry their full names
    // (`promfleet-inventory-list`), which become the page names.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    match a.out {
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .context("rendering the man page")?;
            printer
                .raw_stdout(&buf)
                .context("writing the man page to stdout")?;
        }
        Some(dir) => {
            let written = write_pages(cmd, &dir)?;
            printer
                .reporter()
                .message(&format!("wrote {written} man pages to {}", dir.display()));
        }
    }
    Ok(ExitCode::Ok)
}

/// One page for `cmd` and one for each of its (visible) subcommands, recursively; returns
/// how many were written.
fn write_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_pages(sub.clone(), dir)?;
    }
    let man = clap_mangen::Man::new(cmd);
    let path = dir.join(man.get_filename());
    let mut buf = Vec::new();
    man.render(&mut buf)
        .with_context(|| format!("rendering {}", path.display()))?;
    write_atomic(&path, &buf, 0o644).with_context(|| format!("writing {}", path.display()))?;
    Ok(written + 1)
}
