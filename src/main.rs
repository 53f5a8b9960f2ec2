//! promfleet's entry point: parse, build the one output owner (`report::Printer`) from the
//! command's flags, run, map errors to exit codes (`report::ExitCode`; run outcomes from
//! `RunReport::exit_code`).

use clap::Parser;

fn main() {
    let cli = promfleet::cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("promfleet: cannot start the async runtime: {e}");
            std::process::exit(promfleet::report::ExitCode::Error.code());
        }
    };
    let printer = promfleet::report::Printer::new(cli.command.output());
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
