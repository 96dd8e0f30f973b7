//! The man pages under `man/` are generated from the clap definition. This test
//! fails when they are stale; regenerate them with
//!
//!     PKFS_BLESS=1 cargo test --test man_pages

use std::path::PathBuf;

use clap::CommandFactory;
use pkfs::args::Cli;
use pkfs::error::EXIT_CODES;

fn roff_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('-', "\\-")
}

fn examples(page: &str) -> &'static [(&'static str, &'static str)] {
    match page {
        "pkfs" => &[
            ("pkfs init", "Create a node; asks for a passphrase twice."),
            (
                "echo s3cret | pkfs secret write work:db/password",
                "Store a secret.",
            ),
            ("pkfs version log work", "Show what changed, and when."),
        ],
        "init" => &[
            ("pkfs init", "Create the node in the default home."),
            (
                "pkfs --home /srv/pkfs --passfile ~/.pkfs-pass init",
                "Create it elsewhere, passphrase from a file.",
            ),
        ],
        "passwd" => &[(
            "pkfs passwd --new-passfile new.txt",
            "Change the passphrase; the old one is asked for.",
        )],
        "key" => &[(
            "pkfs key rotate-root",
            "New root keypair; no vault data is re-encrypted.",
        )],
        "vault" => &[
            ("pkfs vault create work", "Create an empty vault."),
            ("pkfs vault list --json", "List vaults as JSON."),
            (
                "pkfs vault delete old --yes",
                "Delete a vault without asking.",
            ),
        ],
        "secret" => &[
            (
                "pkfs secret add ~/.ssh/id_ed25519 work:ssh/",
                "Copy a file into a vault directory.",
            ),
            ("pkfs secret cat work:db/password", "Print a secret."),
            (
                "pkfs secret env work:db -- psql",
                "Run a command with each secret as a variable.",
            ),
            (
                "pkfs secret import ./certs work:certs",
                "Import a directory tree in one commit.",
            ),
        ],
        "version" => &[
            (
                "pkfs version log work -n 5",
                "The last five versions with their changes.",
            ),
            ("pkfs version checkout work HEAD~2", "Go back two versions."),
            (
                "pkfs version checkout work latest",
                "Return to the latest version.",
            ),
            (
                "pkfs version diff work HEAD~3 --name-status",
                "What changed in the last three versions.",
            ),
            (
                "pkfs version show work HEAD~1:db/password",
                "Print a secret as it was one version ago.",
            ),
            (
                "pkfs version restore work HEAD~1 db",
                "Bring back directory db as it was, as one new commit.",
            ),
        ],
        "mount" => &[
            (
                "pkfs mount ~/secrets",
                "Unlock and mount every vault under ~/secrets/VAULT/.",
            ),
            (
                "pkfs mount -f --commit-delay 10s ~/secrets",
                "Stay in the foreground; commit after 10 s of quiet.",
            ),
            (
                "sudo pkfs mount --allow-other --cache-size 256M /mnt/pkfs",
                "Let other users in (kernel permission checks) with a bigger cache.",
            ),
        ],
        "umount" => &[(
            "pkfs umount ~/secrets",
            "Write back, commit and unmount; fails while the mount is busy.",
        )],
        "status" => &[(
            "pkfs status --json",
            "Mountpoint, pending changes per vault and cache figures as JSON.",
        )],
        "completions" => &[
            (
                "pkfs completions bash > ~/.local/share/bash-completion/completions/pkfs",
                "Install bash completion for this user.",
            ),
            (
                "pkfs completions fish > ~/.config/fish/completions/pkfs.fish",
                "The same for fish.",
            ),
        ],
        "format" => &[
            (
                "ls -a ~/.local/share/pkfs/vaults/*/contents",
                "Encrypted names only: nothing of the plaintext tree shows.",
            ),
            (
                "git -C ~/.local/share/pkfs/vaults/ID log --stat",
                "The history holds ciphertext and encrypted messages only.",
            ),
        ],
        "keys" => &[
            (
                "pkfs keys get billing --owner acme",
                "The current default key of (acme, billing), as {\"id\": ..., \"key\": ...}.",
            ),
            (
                "pkfs keys get billing --owner acme --id 7Xq...",
                "Exactly the key that encrypted an object.",
            ),
            (
                "pkfs keys delete-owner acme --backup acme.bak --backup-to ops.pub",
                "Back up acme's keys for ops.pub's holder, then crypto-shred them.",
            ),
        ],
        "gc" => &[(
            "pkfs gc",
            "Drop discarded versions of every vault and repack.",
        )],
        "fsck" => &[
            (
                "pkfs fsck",
                "Check every vault; exit status 12 if anything is wrong.",
            ),
            (
                "pkfs --json fsck work",
                "Check one vault; findings as JSON.",
            ),
            (
                "pkfs fsck --restore work",
                "Put back the last good committed versions; untracked entries go to quarantine/.",
            ),
        ],
        _ => &[],
    }
}

/// The fields of `--json` output, by page: part of the interface, kept stable.
fn json_fields(page: &str) -> &'static [(&'static str, &'static str)] {
    match page {
        "pkfs-vault-list" => &[
            ("(array of objects)", "one per vault"),
            ("name", "vault name"),
            ("id", "vault id (Base58 of 16 random bytes)"),
            ("created", "creation time, Unix seconds"),
        ],
        "pkfs-vault-stat" => &[
            ("name, id, created", "as in vault list"),
            (
                "files, directories",
                "counts in the vault's current version",
            ),
            ("bytes", "plaintext bytes in its files"),
            ("commits", "versions up to the current one"),
            ("head", "commit id of the current version"),
            ("at_latest", "true unless checked out at an older version"),
            (
                "generations",
                "array of {generation, created, blobs, current}: the key generations, oldest \
                 first, with the files of the working tree using each; current marks the newest",
            ),
            (
                "dropped",
                "array of {generation, dropped}: generations destroyed by vault drop-key",
            ),
            (
                "rotate_after_ms",
                "automatic rotation age in milliseconds (absent when none)",
            ),
        ],
        "pkfs-secret-ls" => &[
            ("(array of objects)", "one per entry"),
            ("name", "entry name"),
            ("kind", "file, dir, symlink or special"),
            ("size", "plaintext size in bytes (files)"),
            ("mode", "permission bits, as a decimal number"),
            ("mtime", "modification time, Unix seconds"),
        ],
        "pkfs-secret-stat" => &[
            ("vault, path", "what was asked for"),
            ("kind, size, mode, mtime", "as in secret ls"),
        ],
        "pkfs-version-log" => &[
            ("(array of objects)", "one per version, newest first"),
            ("id", "commit id"),
            ("time", "commit time, Unix seconds"),
            ("head", "true for the version the vault is at"),
            ("discarded", "true for versions only --all shows"),
            (
                "changes",
                "array of {kind: added|modified|removed, path}; directories end in /",
            ),
            (
                "unreadable_generations",
                "dropped key generations that files of this version are under (they can no \
                 longer be read); empty for most versions",
            ),
            ("counts", "{added, modified, removed}: how many paths of each kind"),
        ],
        "pkfs-version-diff" => &[
            ("from, to", "the full ids of the two versions compared"),
            (
                "changes",
                "array of {kind: added|modified|removed|renamed, path, from, old_size, \
                 new_size}; from is the old path of a rename, else null; directories end in /; \
                 sizes are null but for files",
            ),
            ("counts", "{added, modified, removed, renamed}"),
        ],
        "pkfs-version-show" => &[
            (
                "id, time, head, parents, changes, counts",
                "for REF alone: the version, as in version log, with its parent ids",
            ),
            (
                "(array of objects)",
                "for REF:DIR: one {name, kind, size} per entry (a file prints its bytes)",
            ),
        ],
        "pkfs-version-restore" => &[
            ("vault, from", "the vault and the full id of REF"),
            ("commit", "the new commit's id, null when nothing differed"),
            ("changes, counts", "its change list, as in version log"),
            ("skipped", "paths not brought back (symlinks)"),
        ],
        "pkfs-fsck" => &[
            (
                "vaults",
                "array of {vault, clean, files, directories, commits, objects, \
                 unreadable_history}: what was checked; unreadable_history is null or \
                 {commits, generations}: history that dropped key generations made unreadable \
                 (not a problem)",
            ),
            (
                "findings",
                "array of {vault, path, kind, detail}, plus page (tag-mismatch) or object (git findings); \
                 path is the plaintext path, empty for the repository",
            ),
            (
                "kind",
                "tag-mismatch, bad-header, truncated, bad-name, bad-diriv, bad-symlink, foreign-entry, \
                 orphan-sidecar, modified-since-commit, missing, untracked, duplicate-file-id, \
                 git-object, git-ref, commit-mac, bad-vault, mode-changed, bad-mode-record",
            ),
            (
                "uncommitted",
                "array of {vault, path}: changes since the last commit (not problems)",
            ),
            (
                "actions",
                "with --restore: array of {vault, path, action, detail}; action is restored, \
                 quarantined, rewrote-object, committed or not-restored",
            ),
        ],
        "pkfs-status" => &[
            (
                "mounted",
                "false (with home) when no daemon runs; then nothing else",
            ),
            (
                "mountpoint, pid, read_only, commit_delay_ms, open_files",
                "the running mount",
            ),
            (
                "cache",
                "{capacity_bytes, clean_bytes, dirty_bytes, hits, misses}",
            ),
            (
                "removing_dirs",
                "directories that a checkout dropped, still being removed in the background",
            ),
            (
                "vaults",
                "array of {name, pending_changes, last_commit, last_commit_time, last_error}",
            ),
        ],
        _ => &[],
    }
}

fn common_sections(page: &str, full: &str) -> String {
    let mut s = String::new();
    let fields = json_fields(full);
    if !fields.is_empty() {
        s += ".SH JSON OUTPUT\nWith \\fB\\-\\-json\\fR the output is one JSON value with these fields \
              (stable; new fields may be added):\n";
        for (name, what) in fields {
            s += &format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                roff_escape(name),
                roff_escape(what)
            );
        }
    }
    s += ".SH EXAMPLES\n";
    for (cmd, what) in examples(page) {
        s += &format!(".TP\n\\fB{}\\fR\n{}\n", roff_escape(cmd), roff_escape(what));
    }
    s += ".SH EXIT STATUS\n";
    for (code, what) in EXIT_CODES {
        s += &format!(".TP\n\\fB{}\\fR\n{}\n", *code as u8, roff_escape(what));
    }
    s += ".SH ENVIRONMENT\n";
    for (var, what) in [
        ("PKFS_HOME", "The node home, as --home."),
        (
            "PKFS_PASSFILE",
            "Read the passphrase from this file, as --passfile.",
        ),
        (
            "XDG_DATA_HOME",
            "The default home is $XDG_DATA_HOME/pkfs (else ~/.local/share/pkfs).",
        ),
        (
            "PKFS_LOG",
            "Log filter (tracing EnvFilter syntax), overriding -q and -v.",
        ),
    ] {
        s += &format!(".TP\n\\fB{var}\\fR\n{}\n", roff_escape(what));
    }
    s += ".SH FILES\n";
    for (file, what) in [
        (
            "HOME/root.key",
            "The root private key, sealed by the passphrase (Argon2id, AES-256-GCM).",
        ),
        (
            "HOME/root.pub",
            "The root public key; the node id derives from it.",
        ),
        ("HOME/metadata", "The encrypted vault table."),
        ("HOME/lock", "Held by the one process that owns the home."),
        (
            "HOME/run/pkfs.sock",
            "Control socket of the mount daemon (0600); other commands go through it.",
        ),
        (
            "HOME/pkfs.log",
            "Log of the mount daemon when it runs in the background.",
        ),
        (
            "HOME/vaults/ID/",
            "A vault: its encrypted tree (contents/) and its git history (.git).",
        ),
    ] {
        s += &format!(
            ".TP\n\\fI{}\\fR\n{}\n",
            roff_escape(file),
            roff_escape(what)
        );
    }
    s += ".SH SEE ALSO\n\\fBpkfs\\fR(1), \\fBpkfs\\fR(5); docs/FORMAT.md, docs/SECURITY.md in the source tree\n";
    s
}

fn render(cmd: clap::Command, page: &str, full: &str) -> String {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .date("")
        .render(&mut buf)
        .expect("rendering to memory");
    let mut text = String::from_utf8(buf).expect("roff is UTF-8");
    text += &common_sections(page, full);
    text
}

/// Inline markdown (`code`, **bold**) to roff, escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut code = false;
    let mut bold = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("**") {
            bold = !bold;
            out += if bold { "\\fB" } else { "\\fR" };
            rest = &rest[2..];
            continue;
        }
        if c == '`' {
            code = !code;
            out += if code { "\\fB" } else { "\\fR" };
        } else {
            out += &roff_escape(&c.to_string());
        }
        rest = &rest[c.len_utf8()..];
    }
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// `pkfs.5`: the home layout and on-disk format, from docs/FORMAT.md.
fn format_page() -> String {
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md"))
        .expect("docs/FORMAT.md");
    let mut s = String::from(
        ".TH pkfs 5 \"\" \"pkfs\"\n.SH NAME\npkfs \\- home layout and on\\-disk format of pkfs\n\
         .SH SYNOPSIS\n\\fIHOME\\fR/{root.key,root.pub,metadata,lock,run/,vaults/ID/{contents/,.git/}}\n\
         .SH DESCRIPTION\n",
    );
    let mut fenced = false;
    for line in md.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            s += if fenced { ".PP\n.nf\n" } else { ".fi\n" };
            continue;
        }
        if fenced {
            s += &format!("\\&{}\n", roff_escape(line));
        } else if line.starts_with("# ") {
        } else if let Some(h) = line.strip_prefix("## ") {
            s += &format!(".SH {}\n", inline(&h.to_uppercase()));
        } else if let Some(h) = line.strip_prefix("### ") {
            s += &format!(".SS {}\n", inline(h));
        } else if line.starts_with('|') {
            if !line.starts_with("|-") && !line.starts_with("|--") {
                s += &format!(".br\n{}\n", inline(line.trim_matches('|').trim()));
            }
        } else if let Some(item) = line.trim_start().strip_prefix("- ") {
            s += &format!(".IP \\(bu 2\n{}\n", inline(item));
        } else if line.trim().is_empty() {
            s += ".PP\n";
        } else {
            s += &format!("{}\n", inline(line.trim()));
        }
    }
    s += &common_sections("format", "pkfs.5");
    s
}

/// `pkfs.1`, then one page per subcommand at every depth (`pkfs-vault-create.1`),
/// so every page a SUBCOMMANDS section names exists.
fn pages() -> Vec<(String, String)> {
    let mut root = Cli::command();
    root.build(); // propagates global options into every subcommand
    let mut out = vec![("pkfs.1".to_string(), render(root.clone(), "pkfs", "pkfs"))];
    let mut todo: Vec<(Vec<String>, clap::Command)> = root
        .get_subcommands()
        // Hidden commands are pkfs's own (`clip-clear`), not the user's.
        .filter(|c| c.get_name() != "help" && !c.is_hide_set())
        .map(|c| (vec![c.get_name().to_string()], c.clone()))
        .collect();
    while let Some((path, cmd)) = todo.pop() {
        for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            todo.push((p, sub.clone()));
        }
        let page = format!("pkfs-{}", path.join("-"));
        let cmd = cmd
            .name(page.clone())
            .bin_name(format!("pkfs {}", path.join(" ")));
        out.push((format!("{page}.1"), render(cmd, &path[0], &page)));
    }
    out.push(("pkfs.5".to_string(), format_page()));
    out.sort();
    out
}

#[test]
fn man_pages_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man");
    let bless = std::env::var_os("PKFS_BLESS").is_some();
    let mut stale = Vec::new();
    let pages = pages();
    if bless {
        let _ = std::fs::remove_dir_all(&dir);
    }
    for (file, text) in &pages {
        let path = dir.join(file);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file.clone());
        }
    }
    // A page for a subcommand that no longer exists is stale too.
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if (name.ends_with(".1") || name.ends_with(".5")) && !pages.iter().any(|(f, _)| *f == name)
        {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "stale man pages {stale:?}; run `PKFS_BLESS=1 cargo test --test man_pages`"
    );
}

#[test]
fn json_fields_are_documented_where_json_is_printed() {
    let pages = pages();
    for page in [
        "pkfs-vault-list.1",
        "pkfs-vault-stat.1",
        "pkfs-secret-ls.1",
        "pkfs-secret-stat.1",
        "pkfs-version-log.1",
        "pkfs-version-diff.1",
        "pkfs-version-show.1",
        "pkfs-version-restore.1",
        "pkfs-status.1",
        "pkfs-fsck.1",
    ] {
        let (_, text) = pages.iter().find(|(f, _)| f == page).expect(page);
        assert!(
            text.contains(".SH JSON OUTPUT"),
            "{page} documents no JSON fields"
        );
    }
}

#[test]
fn every_page_has_the_required_sections() {
    for (file, text) in pages() {
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH EXAMPLES",
            ".SH EXIT STATUS",
            ".SH FILES",
            ".SH ENVIRONMENT",
        ] {
            assert!(text.contains(section), "{file} lacks {section}");
        }
    }
}
