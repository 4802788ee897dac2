use std::process::ExitCode;

use clap::Parser;
use ohem_studio::cli::Cli;

fn main() -> ExitCode {
    passive_openmp();
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

/// Restarts the program with `OMP_WAIT_POLICY=PASSIVE` unless the variable is set. libtorch's
/// OpenMP reads it once, when the library loads before `main`, and its default lets idle threads
/// spin: with anything else on the cores (the evaluator, the UI, another program) training
/// steps became 5–15× slower. A value of the user's own is kept.
fn passive_openmp() {
    #[cfg(unix)]
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        use std::os::unix::process::CommandExt;
        let mut args = std::env::args_os();
        let (Some(name), Ok(exe)) = (args.next(), std::env::current_exe()) else {
            return;
        };
        let error = std::process::Command::new(exe)
            .arg0(name)
            .args(args)
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .exec();
        eprintln!(
            "note: could not restart with OMP_WAIT_POLICY=PASSIVE ({error}); training may slow down while other programs share the cores"
        );
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
