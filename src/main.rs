use std::process::ExitCode;

use clap::Parser;
use ohem_studio::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(command) => ohem_studio::cli::run(command),
        None => ohem_studio::ui::run_app(cli.data, cli.start),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
