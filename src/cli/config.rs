//! Validated settings: clap values are turned into this before any work happens.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use pkfs::crypto::kdf::Argon2Params;
use pkfs::daemon::protocol::CommandRequest;
use pkfs::vault::home::default_home;
use pkfs::vault::Node;
use zeroize::Zeroizing;

use pkfs::args::Global;

/// Where the passphrase comes from, in the documented order of precedence.
#[derive(Clone)]
pub enum PassSource {
    File(PathBuf),
    Command(String),
    Terminal,
    /// Bytes the client already read (the daemon side of `passwd`).
    Provided(Zeroizing<Vec<u8>>),
    /// The daemon side, when the client sent none: reading fails, never prompts.
    Unavailable,
}

#[derive(Clone)]
pub struct Config {
    pub home: PathBuf,
    pub pass: PassSource,
    pub quiet: bool,
    pub verbose: u8,
    pub json: bool,
    pub kdf: Argon2Params,
    /// Test-only: use this PKCS#8 PEM key instead of generating a root key.
    pub test_root_key: Option<PathBuf>,
    /// The directory relative local paths resolve against (the client's, on the
    /// daemon side); `None`: this process's own.
    pub cwd: Option<PathBuf>,
    /// Set on the daemon side: the daemon's unlocked node, which commands use
    /// instead of opening the home.
    pub daemon_node: Option<Arc<Mutex<Node>>>,
    /// The daemon side: the client's standard input (`secret write`).
    pub stdin: Option<Zeroizing<Vec<u8>>>,
    /// The daemon side: the new passphrase of `passwd`, read by the client.
    pub new_pass: Option<Zeroizing<Vec<u8>>>,
    /// The daemon side: `secret env ... -- CMD` answers with the variables and
    /// the client runs CMD.
    pub env_values: bool,
    /// `--share-file`: shares that open a sealed node (never on the daemon side).
    pub share_files: Vec<PathBuf>,
    /// `--key-file`: a key file that opens the node (never on the daemon side).
    pub key_file: Option<PathBuf>,
}

/// Test-only switches. They exist so test suites need not spend seconds on
/// RSA-4096 generation and Argon2id per test; they are never on by default.
pub const ENV_TEST_FAST_KDF: &str = "PKFS_TEST_ONLY_FAST_KDF";
pub const ENV_TEST_ROOT_KEY: &str = "PKFS_TEST_ONLY_ROOT_KEY";
/// The prefix of every test-only variable (forwarded to a daemon).
pub const ENV_TEST_PREFIX: &str = "PKFS_TEST_ONLY_";

impl Config {
    pub fn from_args(g: &Global) -> Config {
        let pass = match (&g.passfile, &g.extpass) {
            (Some(f), _) => PassSource::File(f.clone()),
            (None, Some(c)) => PassSource::Command(c.clone()),
            (None, None) => PassSource::Terminal,
        };
        let home = g.home.clone().unwrap_or_else(default_home);
        Config::build(g, home, pass, &|k| std::env::var_os(k))
    }

    /// The settings of a command run by the daemon for a client: the daemon's
    /// home and node; the client's directory, input, passphrases, and test-only
    /// variables. Passphrase options in the request are ignored: the daemon
    /// never reads a passphrase file nor runs an `--extpass` command.
    pub fn for_daemon(g: &Global, node: Arc<Mutex<Node>>, req: &mut CommandRequest) -> Config {
        let home = node.lock().home().to_path_buf();
        let pass = match req.passphrase.take() {
            Some(p) => PassSource::Provided(Zeroizing::new(p)),
            None => PassSource::Unavailable,
        };
        let test_env = std::mem::take(&mut req.test_env);
        let lookup = |k: &str| {
            test_env
                .iter()
                .find(|(n, _)| n == k && n.starts_with(ENV_TEST_PREFIX))
                .map(|(_, v)| OsString::from(v))
        };
        let mut cfg = Config::build(g, home, pass, &lookup);
        cfg.cwd = Some(req.cwd.clone());
        let key = cfg.test_root_key.take();
        cfg.test_root_key = key.map(|p| cfg.local_path(&p));
        cfg.daemon_node = Some(node);
        cfg.stdin = req.stdin.take().map(Zeroizing::new);
        cfg.new_pass = req.new_passphrase.take().map(Zeroizing::new);
        cfg.env_values = req.env_values;
        // The daemon never opens a path a client names.
        cfg.share_files.clear();
        cfg.key_file = None;
        cfg
    }

    fn build(
        g: &Global,
        home: PathBuf,
        pass: PassSource,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Config {
        let fast = env(ENV_TEST_FAST_KDF).is_some_and(|v| v == "1");
        Config {
            home,
            pass,
            quiet: g.quiet,
            verbose: g.verbose,
            json: g.json,
            kdf: if fast {
                Argon2Params::TEST_ONLY
            } else {
                Argon2Params::DEFAULT
            },
            test_root_key: env(ENV_TEST_ROOT_KEY).map(PathBuf::from),
            cwd: None,
            daemon_node: None,
            stdin: None,
            new_pass: None,
            env_values: false,
            share_files: g.share_files.clone(),
            key_file: g.key_file.clone(),
        }
    }

    /// Run by the daemon on behalf of a client?
    pub fn remote(&self) -> bool {
        self.daemon_node.is_some()
    }

    /// A local path named by the user, resolved against the user's directory.
    pub fn local_path(&self, p: &Path) -> PathBuf {
        match &self.cwd {
            Some(cwd) if p.is_relative() => cwd.join(p),
            _ => p.to_path_buf(),
        }
    }
}
