//! The `pkfs` binary: parse, run, and turn errors into one line and an exit code.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse_from(cli::fstab::rewrite(std::env::args_os().collect()));
    let result = cli::run(cli);
    // Directories a checkout dropped are removed in the background; finish
    // before exiting (a removal cut short is resumed by the next open anyway).
    pkfs::store::reaper::drain();
    if let Err(err) = result {
        let code = match err.downcast_ref::<pkfs::Error>() {
            Some(e) => e.exit_code() as i32,
            None => pkfs::ExitCode::Failure as i32,
        };
        eprintln!("pkfs: {err:#}");
        std::process::exit(code);
    }
}
