//! promfleet's entry point: read the project config file, parse (its values as the flags'
//! defaults), build the one output owner (`report::Printer`) from the command's flags, run,
//! map errors to exit codes (`report::ExitCode`; run outcomes from
//! `RunReport::exit_code`).

use clap::{CommandFactory, FromArgMatches};

use promfleet::settings::{Env, ProjectFile};

fn main() {
    let project = match ProjectFile::discover(Env::current()) {
        Ok(p) => p.install(),
        Err(e) => {
            promfleet::report::Printer::early_error(&e.to_string());
            std::process::exit(promfleet::report::ExitCode::Error.code());
        }
    };
    let matches = project
        .apply_defaults(promfleet::cli::Cli::command())
        .get_matches();
    let cli = match promfleet::cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let printer = promfleet::report::Printer::new(cli.command.output());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            printer.error(&format!("cannot start the async runtime: {e}"));
            std::process::exit(promfleet::report::ExitCode::Error.code());
        }
    };
    let code = match rt.block_on(promfleet::cli::run(cli, &printer)) {
        Ok(code) => code,
        Err(e) => {
            printer.error(&format!("{e:#}"));
            promfleet::report::ExitCode::Error
        }
    };
    printer.finish();
    // Do not wait for lingering background tasks (keepalives) on exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code.code());
}
