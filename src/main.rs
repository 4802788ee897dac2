use std::process::ExitCode;

use clap::Parser;
use ohem_studio::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(command) => {
            quiet_on_closed_pipe();
            ohem_studio::cli::run(command)
        }
        None => {
            // A run folder brings its own dataset.
            let data = cli.runs.is_empty().then_some(cli.data);
            ohem_studio::ui::run_app(data, cli.start, cli.runs, cli.runs_dir)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A command piped into `head` ends quietly when the reader stops, as other command-line tools
/// do, instead of panicking on the next write (Rust ignores SIGPIPE by default).
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal before any other thread exists; no
    // handler of this program is installed for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
