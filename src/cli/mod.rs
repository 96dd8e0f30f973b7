//! The command-line front end: thin commands over the library API.

mod cmd_fsck;
mod cmd_key;
mod cmd_keygen;
mod cmd_keys;
mod cmd_mount;
mod cmd_node;
mod cmd_quarantine;
mod cmd_seal;
mod cmd_secret;
mod cmd_vault;
mod cmd_version;
mod cmd_version_diff;
mod cmd_version_log;
mod config;
pub mod fstab;
mod pass;
mod progress;
pub mod remote;
mod secret_io;

pub use pkfs::args::Cli;

use std::ops::{Deref, DerefMut};

use parking_lot::MutexGuard;
use pkfs::crypto::rsa::RootKeypair;
use pkfs::daemon::client;
use pkfs::store::VPath;
use pkfs::vault::protector::open_key_file;
use pkfs::vault::{Node, Passphrase};
use pkfs::Error;
use serde::Serialize;
use zeroize::Zeroizing;

use config::Config;
use pkfs::args::Command;
use remote::{write_err, write_out};

/// Run a command: through the mount daemon when one runs for this home and the
/// command is one it runs (see [`remote`]), else here.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::from_args(&cli.global);
    init_logging(&cfg);
    check_pass_source(&cfg, &cli.command)?;
    if remote::through_daemon(&cli.command) {
        if let Some(probe) = client::connect(&cfg.home) {
            return remote::forward(&cfg, &cli.command, probe);
        }
    }
    dispatch(&cfg, cli.command)
}

/// Refuse a passphrase file that is the same stream as the data the command
/// reads (mounted or not: the check is the client's).
fn check_pass_source(cfg: &Config, command: &Command) -> Result<(), Error> {
    use pkfs::args::SecretCmd;
    match command {
        Command::Secret(SecretCmd::Write { .. }) => pass::check_not_input(&cfg.pass, None),
        Command::Secret(SecretCmd::Add { file, .. }) => {
            pass::check_not_input(&cfg.pass, Some(file))
        }
        Command::Passwd {
            new_passfile: Some(new),
            ..
        } => pass::check_not_input(&cfg.pass, Some(new)),
        _ => Ok(()),
    }
}

/// The command functions, shared by local runs and the daemon.
fn dispatch(cfg: &Config, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init {
            shares: Some(shares),
            threshold: Some(threshold),
            share_dir,
        } => cmd_key::init_shares(
            cfg,
            pkfs::args::SharesArgs {
                shares,
                threshold,
                share_dir,
            },
        ),
        Command::Init { .. } => cmd_node::init(cfg),
        Command::Passwd {
            new_passfile,
            recovery,
        } => cmd_node::passwd(cfg, new_passfile.as_deref(), recovery),
        Command::Key(k) => cmd_key::key(cfg, k),
        Command::Unseal => cmd_seal::unseal(cfg),
        Command::Seal => cmd_seal::seal(cfg),
        Command::Gc { vaults } => cmd_node::gc(cfg, &vaults),
        Command::Fsck { vaults, restore } => cmd_fsck::run(cfg, &vaults, restore),
        Command::Quarantine(q) => cmd_quarantine::run(cfg, q),
        Command::Mount(m) => cmd_mount::mount(cfg, m),
        Command::Umount { dir } => cmd_mount::umount(cfg, dir.as_deref()),
        Command::Status => cmd_mount::status(cfg),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "pkfs", &mut script);
            // Through the output sink: `pkfs completions bash | head` is no panic.
            let _ = write_out(&script);
            Ok(())
        }
        Command::Vault(v) => cmd_vault::run(cfg, v),
        Command::Secret(s) => cmd_secret::run(cfg, s),
        Command::Version(v) => cmd_version::run(cfg, v),
        Command::Keys(k) => cmd_keys::run(cfg, k),
    }
}

fn init_logging(cfg: &Config) {
    let level = match (cfg.quiet, cfg.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("PKFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // fuser's debug output names every file it is asked about: plaintext names
    // must never reach the daemon's log, whatever filter was asked for.
    if let Ok(d) = "fuser=error".parse() {
        filter = filter.add_directive(d);
    }
    // The key service's audit lines (uid, op, outcome; never a key) are
    // always written, whatever the level.
    if let Ok(d) = format!("{}=info", pkfs::daemon::keysock::AUDIT_TARGET).parse() {
        filter = filter.add_directive(d);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .log_internal_errors(false)
        .try_init();
}

/// stderr for logs: a failed write (the daemon's log on a full disk) is
/// dropped rather than allowed to take the process down.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The node a command works on: freshly unlocked here, or the daemon's, locked
/// for the length of the command.
pub(crate) enum NodeGuard<'a> {
    Own(Box<Node>),
    Daemon(MutexGuard<'a, Node>),
}

impl Deref for NodeGuard<'_> {
    type Target = Node;
    fn deref(&self) -> &Node {
        match self {
            NodeGuard::Own(n) => n,
            NodeGuard::Daemon(g) => g,
        }
    }
}

impl DerefMut for NodeGuard<'_> {
    fn deref_mut(&mut self) -> &mut Node {
        match self {
            NodeGuard::Own(n) => n,
            NodeGuard::Daemon(g) => g,
        }
    }
}

/// Ask for the passphrase (only once the home is known to exist) and unlock;
/// run by the daemon, take its node (no passphrase needed: it is unlocked).
/// The passphrase is wiped as soon as the root key is open.
pub(crate) fn unlock(cfg: &Config) -> Result<NodeGuard<'_>, Error> {
    let mut node = unlock_resealing(cfg)?;
    if let NodeGuard::Own(n) = &mut node {
        n.forget_protector();
    }
    // Opening vaults: add the key generations that `rotate-after` says are due.
    node.rotate_all_due();
    Ok(node)
}

/// [`unlock`] for `key rotate-root`, which re-seals `root.key` with the
/// passphrase and so keeps it until the command ends.
pub(crate) fn unlock_resealing(cfg: &Config) -> Result<NodeGuard<'_>, Error> {
    if let Some(shared) = &cfg.daemon_node {
        return Ok(NodeGuard::Daemon(shared.lock()));
    }
    unlock_owned(cfg).map(|n| NodeGuard::Own(Box::new(n)))
}

/// Open and unlock the home in this process (what the mount daemon does).
pub(crate) fn unlock_owned(cfg: &Config) -> Result<Node, Error> {
    if !cfg.home.join("root.key").exists() {
        return Err(Error::NotInitialized {
            home: cfg.home.clone(),
        });
    }
    Node::unlock(&cfg.home, cmd_key::open_protector(cfg)?)
}

/// [`unlock`], and on the daemon side prove the client knows the passphrase:
/// the one it sent must open `root.key` (`passwd` asks for it either way).
pub(crate) fn unlock_verified(cfg: &Config) -> Result<NodeGuard<'_>, Error> {
    if cfg.remote() {
        // Checked before taking the node so Argon2id does not stall the mount;
        // root.key only ever changes by an atomic rename.
        let pass = pass::read(&cfg.pass, "Passphrase: ", false)?;
        let path = cfg.home.join("root.key");
        let file = Zeroizing::new(std::fs::read(&path).map_err(|e| Error::io(&path, e))?);
        open_key_file(&Passphrase::new(pass, cfg.kdf), &file)?;
    }
    unlock(cfg)
}

/// The command's standard input, to the end (on the daemon side: what the
/// client sent).
pub(crate) fn read_stdin(cfg: &Config) -> Result<Zeroizing<Vec<u8>>, Error> {
    if let Some(data) = &cfg.stdin {
        return Ok(data.clone());
    }
    if cfg.remote() {
        return Err(Error::Usage(
            "the client sent no standard input to the pkfs daemon".into(),
        ));
    }
    remote::read_all(&mut std::io::stdin().lock()).map_err(|e| Error::io("stdin", e))
}

/// The bytes of the local file `file` that a command stores (`secret add`):
/// read here, or on the daemon side, what the client read and sent. The
/// daemon never opens a path a client names.
pub(crate) fn read_input_file(
    cfg: &Config,
    file: &std::path::Path,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    if cfg.remote() {
        return cfg
            .stdin
            .clone()
            .ok_or_else(|| Error::Usage("the client sent no input to the pkfs daemon".into()));
    }
    remote::read_file(&cfg.local_path(file))
}

/// A fresh root keypair (or the test-only fixed key).
pub(crate) fn new_root_key(cfg: &Config) -> Result<RootKeypair, Error> {
    if let Some(path) = &cfg.test_root_key {
        tracing::info!("using the test-only root key {}", path.display());
        let pem =
            zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        return RootKeypair::from_pkcs8_pem(&pem)
            .map_err(|_| Error::Usage(format!("{path:?} is not an RSA-4096 PKCS#8 key")));
    }
    let spin = progress::spinner(cfg, "Generating an RSA-4096 root keypair");
    if spin.is_hidden() && !cfg.quiet {
        write_err(b"Generating an RSA-4096 root keypair (this takes a few seconds)...\n");
    }
    let key = RootKeypair::generate().map_err(|_| Error::Crypto("RSA key generation failed"));
    spin.finish_and_clear();
    key
}

/// Human or JSON output, honouring `-q`.
pub(crate) struct Out {
    json: bool,
    quiet: bool,
}

impl Out {
    pub fn new(cfg: &Config) -> Out {
        Out {
            json: cfg.json,
            quiet: cfg.quiet,
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// A status line for humans (suppressed by -q and --json).
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet && !self.json {
            self.data(line);
        }
    }

    /// Data: always printed (it is what was asked for). A closed stdout is not
    /// an error here (`pkfs secret ls v | head -1`).
    pub fn data(&self, line: impl AsRef<str>) {
        let _ = write_out(format!("{}\n", line.as_ref()).as_bytes());
    }

    pub fn emit<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        write_out(format!("{text}\n").as_bytes()).map_err(|e| Error::io("stdout", e))?;
        Ok(())
    }
}

/// A name for display. On a terminal, control characters are shown escaped (as
/// `ls` does), so a hostile name cannot move the cursor or fake extra lines;
/// into a pipe, names pass unchanged.
pub(crate) fn shown_name(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    if remote::stdout_is_terminal() {
        escape_controls(&text)
    } else {
        text.into_owned()
    }
}

fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A `VAULT[:PATH]` argument.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub vault: String,
    pub path: VPath,
    /// The path was written with a trailing '/': it names a directory.
    pub dir: bool,
}

pub(crate) fn parse_target(s: &str) -> Result<Target, Error> {
    let (vault, path) = match s.split_once(':') {
        Some((v, p)) => (v, p),
        None => (s, ""),
    };
    if vault.is_empty() {
        return Err(Error::Usage(format!("{s:?}: expected VAULT:PATH")));
    }
    let path_ = VPath::parse(path)?;
    Ok(Target {
        vault: vault.to_string(),
        dir: path.ends_with('/') && !path_.is_root(),
        path: path_,
    })
}

/// Like [`parse_target`] but the path must name an entry, not the vault root.
pub(crate) fn parse_entry(s: &str) -> Result<Target, Error> {
    let t = parse_target(s)?;
    if t.path.is_root() {
        return Err(Error::Usage(format!(
            "{s:?}: expected VAULT:PATH with a path"
        )));
    }
    Ok(t)
}

/// `YYYY-MM-DD HH:MM:SS UTC` for unix seconds.
pub(crate) fn fmt_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An error as one line: the message, then each cause the message does not
/// already end with (an I/O error names its cause itself; printing the chain
/// as it is would say it twice).
pub(crate) fn error_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !line.ends_with(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_time(1_795_000_000), "2026-11-18 11:06:40 UTC");
        assert_eq!(fmt_time(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn control_characters_are_escaped_for_terminals() {
        assert_eq!(escape_controls("plain name"), "plain name");
        assert_eq!(escape_controls("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }

    #[test]
    fn targets() {
        let t = parse_target("v:a/b").unwrap();
        assert_eq!(
            (t.vault.as_str(), t.path.to_string().as_str()),
            ("v", "a/b")
        );
        assert!(parse_target("v").unwrap().path.is_root());
        assert!(parse_target(":x").is_err());
        assert!(parse_entry("v:").is_err());
        assert!(parse_target("v:../x").is_err());
    }
}
