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
    /// Show the history of a vault: one line per commit with its counts of changes
    #[command(
        long_about = "Show the history of VAULT, newest first: one line per commit with its \
                  short id, time, counts of added, modified and removed paths (`+12 ~3 -1`) \
                  and the first three paths (\"… and N more\"). --name-status lists every path \
                  (A, M or D and the path); --json gives every field. Bytes of a name that are \
                  not UTF-8 are shown as \\xFF escapes (and a backslash as \\\\)."
    )]
    Log {
        vault: String,
        /// Show at most N commits
        #[arg(short = 'n', long, value_name = "N")]
        max_count: Option<usize>,
        /// Include discarded commits (kept until `pkfs gc`)
        #[arg(long)]
        all: bool,
        /// List every changed path of each commit: A, M or D, a tab, the path
        #[arg(long)]
        name_status: bool,
    },
    /// Move a vault to REF: a commit id prefix, HEAD~N, or `latest`
    Checkout { vault: String, reference: String },
    /// Show what changed between two versions, or between a version and HEAD
    #[command(
        long_about = "Show what changed from REF1 to REF2 in VAULT (REF: `latest`, `HEAD`, \
                  `HEAD~N` or a commit id prefix of at least 4 hex digits). With one REF, from \
                  REF to the vault's current version (HEAD); with none, from HEAD's parent to \
                  HEAD. HEAD is the live tree: while the vault is mounted the daemon runs this \
                  command and commits the mount's pending changes first. Default output: one line per path, `added`, \
                  `modified` or `removed`, with the sizes of files (contents are not shown; \
                  compare them with `diff <(pkfs version show VAULT REF1:PATH) <(pkfs \
                  version show VAULT REF2:PATH)`). --name-status: A, M or D, a tab, the \
                  path, or R, the old path and the new one. A move is found exactly (a moved \
                  entry keeps its ciphertext, a copy does not): a moved directory is one \
                  `renamed` line (one whose contents also changed between the two versions \
                  shows as removed and added). --stat: the counts. Directories end in `/`; non-UTF-8 bytes of names \
                  are shown as \\xFF escapes."
    )]
    Diff {
        vault: String,
        /// The older version [default: HEAD~1]
        ref1: Option<String>,
        /// The newer version [default: HEAD]
        ref2: Option<String>,
        /// One line per path: A, M or D, a tab, the path (R, old path, new path)
        #[arg(long, conflicts_with = "stat")]
        name_status: bool,
        /// Only the counts of added, modified, removed and renamed paths
        #[arg(long)]
        stat: bool,
    },
    /// Describe a version, or print one file (or list one directory) as it was
    #[command(
        long_about = "With REF alone: describe that version of VAULT (id, time, parents and \
                  its change list). With REF:PATH: print the file at PATH as it was at REF \
                  (decrypted a page at a time), list the directory at PATH (one name a line, \
                  directories ending in `/`), or print a symlink's target. Nothing in the \
                  vault moves. Exit status 13 when PATH was absent at REF."
    )]
    Show {
        vault: String,
        /// REF or REF:PATH
        target: String,
    },
    /// Bring back files or directories as they were at REF, as one new commit
    #[command(
        long_about = "Bring back each PATH of VAULT as it was at REF, in one new commit, \
                  without moving the rest of the vault. A \
                  file replaces what is at PATH now; a directory comes back with its whole \
                  subtree as it was: files and directories inside it that exist now but did \
                  not exist at REF are removed (they stay in the history). Missing parent \
                  directories are made. Contents come back, modes and times do not; symlinks \
                  inside a restored directory are skipped and reported. Works mounted (run by \
                  the daemon) and unmounted. Like any change, one made while the vault is \
                  checked out at an older version discards the later versions. A PATH absent at REF is an error (exit status \
                  13) and nothing is changed."
    )]
    Restore {
        vault: String,
        reference: String,
        #[arg(required = true)]
        paths: Vec<String>,
    },
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
