//! `xspack`: a thin shell over the xspack libraries. It parses arguments, sets up output and
//! signal cleanup, runs one subcommand, and turns the outcome into an exit code.

mod artifact;
mod cli;
mod docs;
mod exit;
mod hint;
mod image;
mod inspect;
mod outputs;
mod pack;
mod template;
mod ui;
mod verify;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit::clap_error(&e),
    };
    let ui = ui::Ui::new(&cli.global, cli.command.name());
    if let Err(e) = xspack_io::install_signal_cleanup() {
        ui.warn(&format!("cannot install signal handlers: {e}"));
    }
    let epoch = cli.global.source_date_epoch.unwrap_or(0);
    let result = match cli.command {
        cli::Command::Verify(args) => verify::run(args, &ui),
        cli::Command::Inspect(args) => inspect::run(args, &ui),
        cli::Command::Image(args) => image::run(args, &ui, epoch),
        cli::Command::Pack(args) => pack::run(args, &ui, epoch),
        cli::Command::Template(args) => template::run(args, &ui, epoch),
        cli::Command::Completions(args) => docs::completions(&args, &ui),
        cli::Command::Man(args) => docs::man(&args, &ui, epoch),
    };
    match result {
        Ok(code) => code,
        Err(e) => exit::report(&e, &ui),
    }
}
