//! The `pkfs` binary: parse, run, and turn errors into one line and an exit code.

mod cli;

use clap::Parser;

fn main() {
    // Everything pkfs creates in the home is private (0600/0700), libgit2's
    // files included; a program pkfs runs for the user gets the user's mask.
    pkfs::vault::home::set_private_umask();
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
