//! The `pkfs` binary: parse, run, and turn errors into one line and an exit code.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse_from(cli::fstab::rewrite(std::env::args_os().collect()));
    if let Err(err) = cli::run(cli) {
        let code = match err.downcast_ref::<pkfs::Error>() {
            Some(e) => e.exit_code() as i32,
            None => pkfs::ExitCode::Failure as i32,
        };
        eprintln!("pkfs: {err:#}");
        std::process::exit(code);
    }
}
