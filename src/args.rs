//! The clap definition of the command line. It lives in the library so the man
//! pages can be generated from it; the binary validates these values into its
//! `Config` before any command runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// A duration as every option takes it: a whole number and a unit, `ms`,
/// `s`, `m`, `h` or `d` (`500ms`, `2s`, `1h`, `30d`); a bare number is
/// seconds. The error is one line for the user.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("{s:?} is not a duration (a number with ms, s, m, h or d: 500ms, 2s, 1h, 30d)");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    Ok(Duration::from_millis(n.checked_mul(ms).ok_or_else(bad)?))
}

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
    /// A share of the node's master key, one line in FILE; give it once per
    /// share (k times) to open a sealed node without a daemon, or once to
    /// `pkfs unseal`
    #[arg(long = "share-file", global = true, value_name = "FILE", action = clap::ArgAction::Append)]
    pub share_files: Vec<PathBuf>,
    /// Open the node with the key file FILE (a slot added by `pkfs key add keyfile`)
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node: root keypair and empty vault table
    ///
    /// With --shares N --threshold K the node's only slot is a master key
    /// split into N shares, any K of which open it (Shamir's scheme): the
    /// shares are written to DIR/share-1.txt ... DIR/share-N.txt (mode 0600;
    /// existing files are never overwritten), or without --share-dir printed
    /// once, on a terminal only. Give each share to a different holder.
    Init {
        /// Split a master key into N shares instead of asking for a passphrase
        #[arg(long, value_name = "N", requires = "threshold")]
        shares: Option<u8>,
        /// How many shares open the node (K, 2..=N)
        #[arg(long, value_name = "K", requires = "shares")]
        threshold: Option<u8>,
        /// Write the shares to DIR/share-1.txt ... DIR/share-N.txt
        #[arg(long, value_name = "DIR", requires = "shares")]
        share_dir: Option<PathBuf>,
    },
    /// Change the passphrase that protects the root key
    ///
    /// The node's other slots (shares, recovery code, key file) are kept.
    /// With --recovery the node is opened with the 24-word recovery code read
    /// from standard input instead of the current passphrase.
    Passwd {
        /// Read the new passphrase from the first line of FILE
        #[arg(long, value_name = "FILE")]
        new_passfile: Option<PathBuf>,
        /// Open the node with the recovery code (read from standard input)
        #[arg(long)]
        recovery: bool,
    },
    /// Give one share to the running, sealed mount and print the progress
    ///
    /// The share is read from --share-file FILE, else from standard input
    /// (`ssh host pkfs unseal < share`). The daemon answers `2/3 shares`;
    /// at the threshold the node unseals and every vault appears in the
    /// mount. Holders other than the node's owner need the mount's
    /// --unseal-group.
    Unseal,
    /// Commit every vault, drop every key from memory, and leave the mount sealed
    Seal,
    /// Root key operations
    #[command(subcommand)]
    Key(KeyCmd),
    /// Mount every vault under DIR (runs the daemon)
    #[command(
        long_about = "Mount every vault under DIR (runs the daemon): DIR/NAME is vault NAME.\n\n\
                  Every version of a vault is there too, read-only, in the hidden directory \
                  DIR/NAME/.versions: one directory per version by short id (the ids of `pkfs \
                  version log`, newest first, each with its commit time as mtime), `latest`, \
                  `HEAD~N`, `by-time/MOMENT` (the version current at MOMENT, any prefix of an \
                  ISO-8601 time, UTC unless it names a zone, e.g. by-time/2026-12-01T10:00) and \
                  `discarded/` (versions a change at an older version discarded, until `pkfs \
                  gc`). `.versions` is not listed, so ls -a, find, tar, rsync and du never \
                  descend into it; `cd`, `diff -r`, `cp` and `grep -r` reach it by name. \
                  Nothing in it can be changed (EROFS), and no entry at a vault's top level \
                  may be named `.versions` (EINVAL)."
    )]
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
    /// Data keys for other programs, by owner and service (the key service)
    #[command(
        subcommand,
        long_about = "Data keys for other programs, by owner and service: each (owner, service) \
                  has a keychain whose newest key is its default, replaced by a new one once it is \
                  older than the node's expiration. Keys are kept in HOME/keys, encrypted under a \
                  key wrapped by the root key. While a mount runs, these commands go through its \
                  key service (HOME/run/keys.sock, see docs/KEYS.md); otherwise they open the node \
                  with the passphrase."
    )]
    Keys(KeysCmd),
    /// Clears the clipboard after `--clip` (started by pkfs itself)
    #[command(name = "clip-clear", hide = true)]
    ClipClear,
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Print {"id": ..., "key": BASE64}: the default key of (OWNER, SERVICE), or key ID
    #[command(
        long_about = "Print {\"id\": ID, \"key\": BASE64 of 32 bytes}. Without --id: the \
                  current default key of (OWNER, SERVICE), made when there is none or when it is \
                  older than the node's expiration (`pkfs keys config`). With --id: exactly that \
                  key; exit status 17 when there is no such key."
    )]
    Get {
        service: String,
        /// The keys' owner [default: default]
        #[arg(long, value_name = "OWNER")]
        owner: Option<String>,
        /// Exactly this key, not the default one
        #[arg(long, value_name = "ID")]
        id: Option<String>,
    },
    /// List owners, services, key ids and ages (never keys)
    #[command(visible_alias = "ls")]
    List {
        /// Only this owner's keys
        #[arg(long, value_name = "OWNER")]
        owner: Option<String>,
    },
    /// Show the key service's settings, or change them
    Config {
        /// Make a new default key once the current one is older than N days
        #[arg(long, value_name = "N")]
        expiration_days: Option<u32>,
    },
    /// Back up every keychain of OWNER to FILE, encrypted to PUBKEY, then
    /// crypto-shred them
    #[command(
        long_about = "Write every keychain of OWNER to FILE (which must not exist), encrypted \
                  to the RSA-4096 public key in PUBKEY (SPKI PEM), then delete them from the node: \
                  nothing pkfs keeps can decrypt what they encrypted any more (see docs/KEYS.md \
                  for what that does not cover). `pkfs keys restore-owner FILE --backup-key \
                  PRIVKEY` puts them back."
    )]
    DeleteOwner {
        owner: String,
        /// Where the encrypted backup goes (must not exist)
        #[arg(long, value_name = "FILE", required = true)]
        backup: PathBuf,
        /// The RSA-4096 public key (SPKI PEM) the backup is encrypted to
        #[arg(long, value_name = "PUBKEY", required = true)]
        backup_to: PathBuf,
    },
    /// Put back the keychains of a `delete-owner` backup
    RestoreOwner {
        /// The backup file
        file: PathBuf,
        /// The private key (PKCS#8 PEM, unencrypted) matching the backup's PUBKEY
        #[arg(long, value_name = "PRIVKEY", required = true)]
        backup_key: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Generate a new root keypair and re-wrap every key under it
    RotateRoot,
    /// Add a protector slot to root.key (opened with any slot the node has)
    #[command(subcommand)]
    Add(KeyAddCmd),
    /// List the slots of root.key: id, kind, created, threshold
    #[command(visible_alias = "ls")]
    List,
    /// Remove a slot (by the id `pkfs key list` shows); the last is refused
    Remove {
        /// The slot id (8 hex digits, or a unique prefix)
        slot: String,
    },
    /// Replace the shares slot by a new master key split into new shares
    ///
    /// Opened with K current shares (--share-file, K times); the old shares
    /// no longer open the node once the new ones are written.
    Rekey(SharesArgs),
}

/// The shape of a split and where its shares go.
#[derive(Debug, Args)]
pub struct SharesArgs {
    /// Number of shares
    #[arg(long, value_name = "N")]
    pub shares: u8,
    /// Shares needed to open the node
    #[arg(long, value_name = "K")]
    pub threshold: u8,
    /// Write DIR/share-1.txt ... DIR/share-N.txt (0600, never overwriting);
    /// without it the shares are printed once, on a terminal only
    #[arg(long, value_name = "DIR")]
    pub share_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeyAddCmd {
    /// A master key split into N shares, any K of which open the node
    Shares(SharesArgs),
    /// A passphrase
    Passphrase {
        /// Read the new passphrase from the first line of FILE
        #[arg(long, value_name = "FILE")]
        new_passfile: Option<PathBuf>,
    },
    /// A key file: at least 32 random bytes (`head -c 64 /dev/urandom > FILE`)
    Keyfile {
        /// The key file
        file: PathBuf,
    },
    /// A recovery code: 24 words, printed once
    Recovery,
}

#[derive(Debug, Subcommand)]
pub enum VaultCmd {
    /// Create an empty vault
    Create {
        name: String,
        /// Add a new key generation by itself once the newest is older than
        /// DURATION (ms, s, m, h, d: `30d`), checked when the vault is opened
        /// and when it is written
        #[arg(long, value_name = "DURATION")]
        rotate_after: Option<String>,
    },
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
    /// Show id, creation time, size, commits, head and key generations of a vault
    Stat { name: String },
    /// Change a vault's settings
    Set {
        name: String,
        /// Add a new key generation by itself once the newest is older than
        /// DURATION (ms, s, m, h, d: `30d`); `never` turns it off
        #[arg(long, value_name = "DURATION")]
        rotate_after: Option<String>,
    },
    /// Add a new key generation now: new and rewritten files use it, every
    /// older file and all history stay readable with theirs
    RotateKey { name: String },
    /// Rewrite every current file under the newest key generation, as one commit
    #[command(
        long_about = "Rewrite every file of the working tree whose blob uses an older key                   generation under the newest one, keeping its file id, mode, extended                   attributes and times, and commit them as one change. A cut at any point                   leaves every file readable (the next open undoes the unfinished command).                   Through a mount, files open in it are left as they are and reported; run                   it again once they are closed. History keeps its old blobs."
    )]
    Reencrypt { name: String },
    /// Destroy key generation GEN of a vault (refused while a current file uses it)
    #[command(
        long_about = "Destroy key generation GEN of VAULT. Refused while any file of                   the working tree still uses GEN (`pkfs vault reencrypt` moves them), for the                   newest generation, and for generation 0, which also keys the vault's names                   and history messages. Afterwards the versions of files that only GEN could                   read are unreadable: `pkfs version log` and `pkfs fsck` say which commits."
    )]
    DropKey { name: String, generation: u32 },
    /// Destroy every key generation of a vault and remove it (crypto-shredding)
    #[command(
        long_about = "Destroy every key generation of VAULT and remove the vault, so                   its working tree, history and any copy of them (a backup, a replica on a                   remote) can no longer be read by anyone holding the node's current metadata.                   Asks for the vault's name as `vault delete` does, unless --yes. With                   --backup FILE --backup-to PUBKEY, the keychain is first written to FILE                   encrypted to the RSA public key PUBKEY (PEM). docs/SECURITY.md says what                   this does not protect against (an old copy of the metadata together with                   the root key)."
    )]
    Shred {
        name: String,
        /// Do not ask for confirmation
        #[arg(short, long)]
        yes: bool,
        /// Write the vault's keychain to FILE before shredding (needs --backup-to)
        #[arg(long, value_name = "FILE", requires = "backup_to")]
        backup: Option<PathBuf>,
        /// The RSA public key (PEM) the backup is encrypted to
        #[arg(long, value_name = "PUBKEY", requires = "backup")]
        backup_to: Option<PathBuf>,
        /// Through a mount, first step: the daemon answers with the backup
        /// (for the client to write) and shreds nothing
        #[arg(long, hide = true, requires = "backup")]
        backup_export: bool,
        /// Through a mount, second step: the client wrote the backup of
        /// these generations (comma separated); refused if the keychain changed
        #[arg(long, hide = true, value_name = "GENS", requires = "backup")]
        backup_written: Option<String>,
    },
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
    /// Quiet time in a vault before its changes are committed (ms, s, m, h, d suffixes)
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub commit_delay: String,
    /// Mount options, comma separated (ro, allow_other, default_permissions, ...)
    #[arg(short = 'o', value_name = "OPT,...", value_delimiter = ',')]
    pub options: Vec<String>,
    /// Let members of GROUP use the key service (its sockets become 0660 and
    /// GROUP's); by default only the daemon's user may
    #[arg(long, value_name = "GROUP")]
    pub keys_group: Option<String>,
    /// Also serve the key service at PATH (in a directory the keys group can
    /// reach: HOME/run/keys.sock is inside the private home)
    #[arg(long, value_name = "PATH")]
    pub keys_socket: Option<PathBuf>,
    /// Mount sealed: the mount is live but empty until `pkfs unseal` has
    /// been given enough shares (a node without a passphrase slot always
    /// mounts sealed, unless --share-file opens it)
    #[arg(long)]
    pub sealed: bool,
    /// Let members of GROUP give shares over the unseal socket (and nothing else)
    #[arg(long, value_name = "GROUP")]
    pub unseal_group: Option<String>,
    /// Seal after this long without file system or CLI activity (ms, s, m, h or d suffixes, e.g. 15m)
    #[arg(long, value_name = "DURATION")]
    pub idle: Option<String>,
}
