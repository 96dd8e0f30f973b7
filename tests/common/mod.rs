//! Shared harness of the end-to-end CLI suites (`cli_*.rs`).
//!
//! Every test drives the real `pkfs` binary through `std::process::Command`
//! (never a shell), in a throw-away home. Two test-only switches keep the suite
//! fast; neither is ever on by default:
//!
//! * `PKFS_TEST_ONLY_FAST_KDF=1`: cheap Argon2id parameters;
//! * `PKFS_TEST_ONLY_ROOT_KEY=<PEM>`: `init` / `key rotate-root` use that key
//!   instead of generating an RSA-4096 keypair.
//!
//! The two root keys are generated once per `cargo test` run and cached under
//! `$CARGO_TARGET_TMPDIR/test-root-keys/`. A cached key file is published with a
//! hard link (which never replaces an existing file), so parallel test binaries
//! never read a half-written key and never see a key change under them.

#![allow(dead_code)]

pub use pkfs::ExitCode;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_pkfs");

/// The passphrase of every test node (unless a test says otherwise).
pub const PASSPHRASE: &str = "correct horse battery staple";

mod cli;
mod disk;
mod git;
mod keys;
mod node;
mod plaintext;

// Every test binary compiles this module on its own and uses only some of the
// helpers, so an unused re-export is expected, like an unused function.
#[allow(unused_imports)]
pub use cli::{assert_one_error_line, clean_env, Cmd, Output};
#[allow(unused_imports)]
pub use disk::{
    assert_same_tree, contains, copy_tree, files_under, flip_byte, largest_blob, mode_of,
    pseudo_random, set_mode, snapshot, Snap,
};
#[allow(unused_imports)]
pub use git::{git, git_all_objects, git_bin, git_has_object, git_workdirs};
#[allow(unused_imports)]
pub use keys::{key_node_id, node_id_of_root_pub, root_key, root_key_pem};
#[allow(unused_imports)]
pub use node::{ls_set, set, vault_names, Node};
#[allow(unused_imports)]
pub use plaintext::{assert_no_plaintext, encoded_forms, find_plaintext};

pub mod fixtures;
pub mod mount;
pub mod posix;
pub mod tamper;
pub mod tmpfs;
pub mod users;
pub mod vectors;

/// Fail clearly when a tool is missing (scripts/ensure-deps.sh installs them).
pub fn need(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is required (scripts/ensure-deps.sh installs it)"
    );
}
