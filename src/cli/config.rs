//! Validated settings: clap values are turned into this before any work happens.

use std::path::PathBuf;

use pkfs::crypto::kdf::Argon2Params;
use pkfs::vault::home::default_home;

use pkfs::args::Global;

/// Where the passphrase comes from, in the documented order of precedence.
#[derive(Debug, Clone)]
pub enum PassSource {
    File(PathBuf),
    Command(String),
    Terminal,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub home: PathBuf,
    pub pass: PassSource,
    pub quiet: bool,
    pub verbose: u8,
    pub json: bool,
    pub kdf: Argon2Params,
    /// Test-only: use this PKCS#8 PEM key instead of generating a root key.
    pub test_root_key: Option<PathBuf>,
}

/// Test-only switches. They exist so test suites need not spend seconds on
/// RSA-4096 generation and Argon2id per test; they are never on by default.
pub const ENV_TEST_FAST_KDF: &str = "PKFS_TEST_ONLY_FAST_KDF";
pub const ENV_TEST_ROOT_KEY: &str = "PKFS_TEST_ONLY_ROOT_KEY";

impl Config {
    pub fn from_args(g: &Global) -> Config {
        let pass = match (&g.passfile, &g.extpass) {
            (Some(f), _) => PassSource::File(f.clone()),
            (None, Some(c)) => PassSource::Command(c.clone()),
            (None, None) => PassSource::Terminal,
        };
        let fast = std::env::var(ENV_TEST_FAST_KDF).is_ok_and(|v| v == "1");
        Config {
            home: g.home.clone().unwrap_or_else(default_home),
            pass,
            quiet: g.quiet,
            verbose: g.verbose,
            json: g.json,
            kdf: if fast {
                Argon2Params::TEST_ONLY
            } else {
                Argon2Params::DEFAULT
            },
            test_root_key: std::env::var_os(ENV_TEST_ROOT_KEY).map(PathBuf::from),
        }
    }
}
