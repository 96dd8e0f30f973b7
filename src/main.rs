//! The `pkfs` binary: parse, run, and turn errors into one line and an exit code.

mod cli;

use clap::Parser;

fn main() {
    no_core_dumps();
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
        // `secret grep` finding nothing says so by its exit code alone.
        if !matches!(err.downcast_ref(), Some(pkfs::Error::NoMatch)) {
            eprintln!("pkfs: {}", cli::error_line(&err));
        }
        std::process::exit(code);
    }
}

/// Make this process non-dumpable before it reads any passphrase or key: no
/// core dump is written for it (with the default `fs.suid_dumpable = 0`), its
/// `/proc/PID` files belong to root, and other processes of the same user may
/// not ptrace it. Every pkfs command does this,
/// not only the daemon: a long `secret cat`, `import` or `passwd` holds the
/// root key too. A program it starts (`secret env -- CMD`, `--extpass`) is
/// dumpable again after `exec`.
fn no_core_dumps() {
    // SAFETY: PR_SET_DUMPABLE takes integer arguments only and touches no
    // memory of ours.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}
