//! The clap definition of the command line. It lives in the library so the man
//! pages can be generated from it; the binary validates these values into its
//! `Config` before any command runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pkfs",
    version,
    about = "Encrypted, git-versioned vaults of secrets",
    long_about = "pkfs keeps named vaults of secrets, encrypted at rest (contents and names) and \
                  versioned in a hidden git history. Paths inside vaults are written VAULT:PATH."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Node home directory [default: $XDG_DATA_HOME/pkfs]
    #[arg(long, global = true, env = "PKFS_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Read the passphrase from the first line of FILE
    #[arg(long, global = true, env = "PKFS_PASSFILE", value_name = "FILE")]
    pub passfile: Option<PathBuf>,
    /// Read the passphrase from the standard output of CMD (run by /bin/sh)
    #[arg(long, global = true, value_name = "CMD")]
    pub extpass: Option<String>,
    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail (-vv for debug output)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Machine-readable JSON output for commands that list or describe
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node: root keypair and empty vault table
    Init,
    /// Change the passphrase that protects the root key
    Passwd {
        /// Read the new passphrase from the first line of FILE
        #[arg(long, value_name = "FILE")]
        new_passfile: Option<PathBuf>,
    },
    /// Root key operations
    #[command(subcommand)]
    Key(KeyCmd),
    /// Mount every vault under DIR (runs the daemon)
    Mount(MountArgs),
    /// Flush, commit and unmount the running daemon's mount
    Umount {
        /// The mountpoint (default: wherever this home is mounted)
        dir: Option<PathBuf>,
    },
    /// Show whether the home is mounted, pending changes and cache figures
    ///
    /// A home this user cannot reach (say, permission denied on it) is an
    /// error, exit code 1: whether it is mounted is then unknown.
    Status,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Create, list, rename, delete and describe vaults
    #[command(subcommand, visible_alias = "vaults")]
    Vault(VaultCmd),
    /// Read and change secrets inside vaults (VAULT:PATH)
    #[command(subcommand, visible_alias = "secrets")]
    Secret(SecretCmd),
    /// Browse and move through a vault's history
    #[command(subcommand)]
    Version(VersionCmd),
    /// Check vaults for corruption; with --restore, repair one from its history
    #[command(
        long_about = "Check vaults for corruption: every blob's header and page tags, every \
                  encrypted name, long-name sidecar and directory IV, every git object reachable \
                  from main, HEAD and the discarded refs, every commit message's authentication, \
                  and the working tree against the last commit (modified, missing and untracked \
                  entries; two blobs with one file id). Each problem is one line: \
                  VAULT:PATH: KIND: explanation, with the plaintext path wherever the names \
                  decrypt. No secret content is ever printed.\n\n\
                  With --restore VAULT, every damaged, modified or missing committed file is \
                  replaced by its last good committed version (HEAD's, else the newest older one \
                  that decrypts, which is then committed), damaged git blobs are rebuilt from \
                  intact working files, and untracked entries are moved (never deleted) to \
                  VAULT_DIR/quarantine/UNIX_TIME/ (`pkfs quarantine list` shows them, `pkfs \
                  quarantine restore` puts them back). Every action is reported; the vault is then \
                  checked again.\n\n\
                  Exit status: 0 when no problem was found (after --restore: none is left), \
                  12 when problems were found (or remain), 9 when the metadata itself is corrupt, \
                  7 for an unknown vault."
    )]
    Fsck {
        /// Vaults to check [default: all]
        vaults: Vec<String>,
        /// Repair the (one) named vault from its history, then check it again
        #[arg(long)]
        restore: bool,
    },
    /// Drop discarded history and repack vault repositories
    Gc {
        /// Vaults to collect [default: all]
        vaults: Vec<String>,
    },
    /// List what pkfs moved aside, or put it back
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
    /// Clears the clipboard after `--clip` (started by pkfs itself)
    #[command(name = "clip-clear", hide = true)]
    ClipClear,
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Generate a new root keypair and re-wrap every key under it
    RotateRoot,
}

#[derive(Debug, Subcommand)]
pub enum VaultCmd {
    /// Create an empty vault
    Create { name: String },
    /// List vaults
    #[command(visible_alias = "ls")]
    List,
    /// Rename a vault
    Rename { old: String, new: String },
    /// Delete a vault and its whole history
    Delete {
        name: String,
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
    },
    /// Show id, creation time, size, commits and head of a vault
    Stat { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Write standard input to VAULT:PATH
    Write { target: String },
    /// Copy a local FILE into VAULT[:PATH]
    Add { file: PathBuf, target: String },
    /// Print secrets
    Cat {
        #[arg(required = true)]
        targets: Vec<String>,
        /// Copy the (one) secret to the clipboard instead of printing it, and
        /// clear it after 45 seconds unless it changed meanwhile (wl-copy on
        /// Wayland, xclip on X11). One trailing newline is left out.
        #[arg(short, long)]
        clip: bool,
    },
    /// Edit a secret with $EDITOR (else $VISUAL, else vi)
    ///
    /// The editor works on a copy held only in a private directory on a tmpfs
    /// ($XDG_RUNTIME_DIR, else /dev/shm; pkfs refuses when neither is a
    /// memory file system). The result is stored as one change (none when
    /// nothing changed) and the copy is overwritten and removed, also on error
    /// or when pkfs is interrupted. A secret that does not exist yet is
    /// created.
    Edit { target: String },
    /// Store a fresh random password (or passphrase) and print it
    ///
    /// Characters are drawn uniformly from the operating system's random
    /// source: letters and digits, and with --symbols (the default) the ASCII
    /// punctuation too. --words N makes a phrase of N words from the BIP-39
    /// English list (2048 words, 11 bits each) joined by '-'. The secret is
    /// stored with a trailing newline.
    Generate {
        target: String,
        /// Number of characters
        #[arg(default_value_t = 24, value_parser = clap::value_parser!(u16).range(1..=4096))]
        length: u16,
        /// Include ASCII punctuation (the default)
        #[arg(long, overrides_with = "no_symbols")]
        symbols: bool,
        /// Letters and digits only
        #[arg(short = 'n', long)]
        no_symbols: bool,
        /// A passphrase of N words instead of characters
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64),
              conflicts_with_all = ["symbols", "no_symbols"])]
        words: Option<u16>,
        /// Replace an existing secret
        #[arg(short, long)]
        force: bool,
        /// Copy it to the clipboard instead of printing it (see `secret cat --clip`)
        #[arg(short, long)]
        clip: bool,
    },
    /// Search the decrypted secrets for a regular expression
    ///
    /// Prints VAULT:PATH:LINE for each matching line, file by file in path
    /// order. Files that look binary (a NUL byte) are skipped, as are symlinks
    /// and special files. Exit status 0 when a line matched, 1 when none did.
    Grep {
        /// A regular expression (Rust `regex` syntax)
        pattern: String,
        /// Vaults to search [default: all]
        vaults: Vec<String>,
        /// Case-insensitive
        #[arg(short, long)]
        ignore_case: bool,
    },
    /// List a directory of a vault
    #[command(visible_alias = "list")]
    Ls {
        target: String,
        /// Long format: kind, size, modification time
        #[arg(short, long)]
        long: bool,
    },
    /// Create directories
    Mkdir {
        #[arg(required = true)]
        targets: Vec<String>,
        /// Create missing parents; no error if it exists
        #[arg(short, long)]
        parents: bool,
    },
    /// Remove secrets or directories
    Rm {
        #[arg(required = true)]
        targets: Vec<String>,
        /// Remove directories and their contents
        #[arg(short, long)]
        recursive: bool,
    },
    /// Move or rename a secret (DEST may be VAULT:PATH or a PATH in the same vault)
    Mv { source: String, dest: String },
    /// Describe one secret or directory
    Stat { target: String },
    /// Import a local directory recursively into VAULT[:PATH]
    Import { dir: PathBuf, target: String },
    /// Run CMD with secrets as environment variables (or print them as `export` lines)
    ///
    /// CMD does not inherit pkfs's own variables (PKFS_HOME, PKFS_PASSFILE and
    /// every other PKFS_*), so that it cannot unlock the node by running pkfs;
    /// --keep-pkfs-env passes them on.
    ///
    /// One trailing newline is stripped from each value (as `echo VALUE | pkfs
    /// secret write` stores one). Two secrets that would give the same variable
    /// name (say `a-b` and `a_b`) are refused; =NAME renames one. Symlinks and
    /// special files inside a directory are skipped with a notice.
    Env {
        /// VAULT[:PATH][=NAME] (directories contribute every file inside)
        #[arg(required = true)]
        targets: Vec<String>,
        /// Let CMD inherit the PKFS_* variables (PKFS_HOME, PKFS_PASSFILE, ...)
        #[arg(long)]
        keep_pkfs_env: bool,
        /// The command and its arguments, after `--`
        #[arg(last = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum VersionCmd {
    /// Show the history of a vault with the changes of each commit
    Log {
        vault: String,
        /// Show at most N commits
        #[arg(short = 'n', long, value_name = "N")]
        max_count: Option<usize>,
        /// Include discarded commits (kept until `pkfs gc`)
        #[arg(long)]
        all: bool,
    },
    /// Move a vault to REF: a commit id prefix, HEAD~N, or `latest`
    Checkout { vault: String, reference: String },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCmd {
    /// List quarantined entries: BATCH, plaintext path (where it decrypts), kind
    #[command(
        visible_alias = "ls",
        long_about = "List what pkfs moved out of a vault instead of deleting it: untracked \
                  entries `fsck --restore` moved aside, and new directories that a power cut left \
                  without their IV, moved at the next open. One line per entry: \
                  VAULT BATCH PATH KIND, where BATCH names the move (its Unix time, with \
                  `-lost-iv` for the second kind) and PATH is the entry's plaintext path where the \
                  names decrypt, else its backing path. `(occupied)` marks an entry whose place is \
                  taken now; `(no index)` a batch from an older pkfs."
    )]
    List {
        /// Vaults to list [default: all]
        vaults: Vec<String>,
    },
    /// Put every entry of BATCH back where it came from, and commit it
    #[command(
        long_about = "Put every entry of quarantine BATCH (as `pkfs quarantine list` shows \
                  it) back where it came from in VAULT, and commit it: the entries are adopted as \
                  they are, so restore only what you trust. An entry whose place is taken, whose \
                  directory is gone or whose name does not decrypt stays, and is reported. \
                  Exit status 13 when BATCH holds nothing to restore."
    )]
    Restore { vault: String, batch: String },
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Empty directory to mount on
    pub dir: PathBuf,
    /// Stay in the foreground and log to stderr
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount read-only
    #[arg(long)]
    pub ro: bool,
    /// Let other users in (and have the kernel check their permissions:
    /// default_permissions). The mount root's mode is the owner's choice
    /// (`chmod`, kept across mounts) and starts as the home's (0700): `chmod
    /// 711 DIR` lets others into vaults whose names they know, `chmod 755 DIR`
    /// lists the names
    #[arg(long)]
    pub allow_other: bool,
    /// Size of the decrypted page cache (K, M, G suffixes)
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    pub cache_size: String,
    /// Quiet time in a vault before its changes are committed (ms, s, m suffixes)
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub commit_delay: String,
    /// Mount options, comma separated (ro, allow_other, default_permissions, ...)
    #[arg(short = 'o', value_name = "OPT,...", value_delimiter = ',')]
    pub options: Vec<String>,
}
