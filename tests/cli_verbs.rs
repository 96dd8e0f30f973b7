//! The verbs a pass or gopass user reaches for: `secret edit`, `secret
//! generate`, `--clip` and `secret grep`, unmounted and through a mount.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::mount::Mounted;
use common::*;

/// An executable shell script `name` in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// An editor that checks its file is on a tmpfs in a 0700 directory, records
/// the file's path in `seen`, and appends `line` to it.
fn appending_editor(n: &Node, line: &str) -> (PathBuf, PathBuf) {
    let seen = n.scratch().join("seen");
    let ed = script(
        &n.scratch().join("bin"),
        "ed-append",
        &format!(
            "[ \"$(stat -f -c %T \"$1\")\" = tmpfs ] || exit 41\n\
             [ \"$(stat -c %a \"$(dirname \"$1\")\")\" = 700 ] || exit 42\n\
             [ \"$(stat -c %a \"$1\")\" = 600 ] || exit 43\n\
             env | grep -q '^PKFS_' && exit 44\n\
             echo \"$1\" > {seen}\n\
             printf '%s\\n' '{line}' >> \"$1\"",
            seen = seen.display()
        ),
    );
    (ed, seen)
}

fn edit(n: &Node, editor: &Path, target: &str) -> Output {
    n.cmd()
        .args(["secret", "edit", target])
        .env("EDITOR", editor)
        .run()
}

/// The copy the editor saw is gone, and so is its directory.
fn assert_wiped(seen: &Path) {
    let path = PathBuf::from(fs::read_to_string(seen).unwrap().trim());
    assert!(
        path.starts_with("/dev/shm")
            || path.starts_with(std::env::var("XDG_RUNTIME_DIR").unwrap_or_default())
    );
    assert!(!path.exists(), "{path:?} left behind");
    assert!(
        !path.parent().unwrap().exists(),
        "its directory left behind"
    );
}

fn check_edit(n: &Node) {
    n.write("v:db/pw", "old\n");
    let before = n.commits("v");
    let (ed, seen) = appending_editor(n, "added");
    edit(n, &ed, "v:db/pw").success();
    assert_eq!(n.cat("v:db/pw"), b"old\nadded\n");
    assert_eq!(n.commits("v"), before + 1, "one change");
    assert_wiped(&seen);

    // Unchanged: nothing is committed.
    let same = script(&n.scratch().join("bin"), "ed-same", "true");
    edit(n, &same, "v:db/pw").success().stderr_has("unchanged");
    assert_eq!(n.commits("v"), before + 1);

    // A failing editor stores nothing; the copy is wiped all the same.
    let fail = script(
        &n.scratch().join("bin"),
        "ed-fail",
        &format!(
            "echo \"$1\" > {}\necho junk >> \"$1\"\nexit 3",
            seen.display()
        ),
    );
    edit(n, &fail, "v:db/pw")
        .failure(ExitCode::Usage)
        .stderr_has("nothing was stored");
    assert_eq!(n.cat("v:db/pw"), b"old\nadded\n");
    assert_wiped(&seen);

    // A new secret is created; $VISUAL is used when $EDITOR is unset.
    let (ed2, _) = appending_editor(n, "fresh");
    n.cmd()
        .args(["secret", "edit", "v:new"])
        .env_remove("EDITOR")
        .env("VISUAL", &ed2)
        .run()
        .success();
    assert_eq!(n.cat("v:new"), b"fresh\n");
}

#[test]
fn edit_unmounted() {
    let n = Node::with_vault();
    check_edit(&n);
    // Only a disk for the copy: refused before anything is read.
    let disk = n.scratch().join("disk-runtime");
    fs::create_dir_all(&disk).unwrap();
    let (ed, _) = appending_editor(&n, "x");
    n.cmd()
        .args(["secret", "edit", "v:db/pw"])
        .env("EDITOR", &ed)
        .env("XDG_RUNTIME_DIR", &disk)
        .env("PKFS_TEST_ONLY_EDIT_NO_SHM", "1")
        .run()
        .failure(ExitCode::Usage)
        .stderr_has("memory file system");
    assert_eq!(n.cat("v:db/pw"), b"old\nadded\n");
    n.fail(ExitCode::Usage, ["secret", "edit", "v:"]);
    n.fail(ExitCode::VaultUndefined, ["secret", "edit", "nope:x"]);
}

#[test]
fn edit_mounted_goes_through_the_daemon() {
    let m = Mounted::new();
    check_edit(&m.node);
    m.wait_committed();
    assert_eq!(fs::read(m.path("db/pw")).unwrap(), b"old\nadded\n");
}

#[test]
fn edit_interrupted_by_a_signal_wipes_and_stores_nothing() {
    let n = Node::with_vault();
    n.write("v:s", "old\n");
    let seen = n.scratch().join("seen");
    // The editor changes the file, then pkfs gets SIGTERM.
    let ed = script(
        &n.scratch().join("bin"),
        "ed-term",
        &format!(
            "echo \"$1\" > {seen}\necho changed >> \"$1\"\n\
             p=$PPID\n\
             while [ \"$(cat /proc/$p/comm)\" != pkfs ]; do p=$(cut -d' ' -f4 /proc/$p/stat); done\n\
             kill -TERM $p\nsleep 0.2",
            seen = seen.display()
        ),
    );
    let mut c = std::process::Command::new(BIN);
    clean_env(&mut c);
    let out = c
        .arg("--home")
        .arg(&n.home)
        .arg("--passfile")
        .arg(&n.passfile)
        .args(["secret", "edit", "v:s"])
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .env("EDITOR", &ed)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(15), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was stored"));
    assert_wiped(&seen);
    assert_eq!(n.cat("v:s"), b"old\n");
}

// ---------------------------------------------------------------------------
// generate

#[test]
fn generate_lengths_charsets_and_words() {
    let n = Node::with_vault();
    let o = n.ok(["secret", "generate", "v:a"]);
    let pw = o.stdout.clone();
    assert_eq!(pw.len(), 25, "24 characters and a newline: {pw:?}");
    assert_eq!(pw.last(), Some(&b'\n'));
    assert!(pw[..24].iter().all(|c| c.is_ascii_graphic()));
    assert_eq!(n.cat("v:a"), pw, "stored as printed");

    // Characters are uniform over 94 with --symbols, 62 without: a long
    // password shows symbols, the other none.
    let long = n.ok(["secret", "generate", "v:b", "4000"]).stdout;
    assert_eq!(long.len(), 4001);
    assert!(long.iter().any(|c| c.is_ascii_punctuation()));
    let alnum = n
        .ok(["secret", "generate", "--no-symbols", "v:c", "4000"])
        .stdout;
    assert!(alnum[..4000].iter().all(|c| c.is_ascii_alphanumeric()));
    let digits = alnum.iter().filter(|c| c.is_ascii_digit()).count();
    // 10/62 of 4000 = 645; far outside the bounds only with a biased draw.
    assert!((450..850).contains(&digits), "{digits} digits");
    assert_ne!(n.cat("v:b"), n.cat("v:c"));

    let words = n.ok(["secret", "generate", "--words", "6", "v:w"]).out();
    let list = bip39::Language::English.word_list();
    let w: Vec<&str> = words.trim_end().split('-').collect();
    assert_eq!(w.len(), 6, "{words}");
    assert!(w.iter().all(|x| list.contains(x)), "{words}");

    // No silent overwrite; --force replaces.
    n.fail(ExitCode::Exists, ["secret", "generate", "v:a"])
        .stderr_has("--force");
    assert_eq!(n.cat("v:a"), pw);
    let new = n.ok(["secret", "generate", "-f", "v:a", "8"]).stdout;
    assert_eq!(new.len(), 9);
    assert_eq!(n.cat("v:a"), new);

    // Clap's own refusals (several lines, exit 2).
    assert_eq!(n.run(["secret", "generate", "v:z", "0"]).code, 2);
    assert_eq!(n.run(["secret", "generate", "v:z", "--words", "0"]).code, 2);
    assert_eq!(
        n.run(["secret", "generate", "v:z", "--words", "2", "-n"])
            .code,
        2
    );
    n.fail(ExitCode::Usage, ["secret", "generate", "v:z/"]);
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:z"]);
}

#[test]
fn generate_mounted() {
    let m = Mounted::new();
    let pw = m.node.ok(["secret", "generate", "v:g", "30"]).stdout;
    assert_eq!(pw.len(), 31);
    assert_eq!(fs::read(m.path("g")).unwrap(), pw);
    m.node.fail(ExitCode::Exists, ["secret", "generate", "v:g"]);
}

// ---------------------------------------------------------------------------
// --clip

/// Fake clipboard tools in `bin`: the clipboard is the file `board`; every
/// argv is appended to `argv`.
struct Clip {
    bin: PathBuf,
    board: PathBuf,
    argv: PathBuf,
}

fn fake_clipboard(n: &Node) -> Clip {
    let bin = n.scratch().join("clipbin");
    let board = n.scratch().join("board");
    let argv = n.scratch().join("argv");
    let (b, a) = (board.display(), argv.display());
    script(
        &bin,
        "wl-copy",
        &format!(
            "echo \"wl-copy $*\" >> {a}\n\
             if [ \"$1\" = --clear ]; then : > {b}; else cat > {b}; fi"
        ),
    );
    script(
        &bin,
        "wl-paste",
        &format!("echo \"wl-paste $*\" >> {a}\ncat {b}"),
    );
    script(
        &bin,
        "xclip",
        &format!(
            "echo \"xclip $*\" >> {a}\n\
             case \"$*\" in *-out*) cat {b};; *) cat > {b};; esac"
        ),
    );
    fs::write(&board, b"before").unwrap();
    Clip { bin, board, argv }
}

fn with_clip(n: &Node, c: &Clip, wayland: bool, args: &[&str]) -> Output {
    let path = format!("{}:/usr/bin:/bin", c.bin.display());
    let cmd = n
        .cmd()
        .args(args)
        .env("PATH", path)
        .env("PKFS_TEST_ONLY_CLIP_SECONDS", "1");
    if wayland {
        cmd.env("WAYLAND_DISPLAY", "wayland-0")
            .env_remove("DISPLAY")
    } else {
        cmd.env("DISPLAY", ":0").env_remove("WAYLAND_DISPLAY")
    }
    .run()
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check_clip(n: &Node, wayland: bool) {
    let c = fake_clipboard(n);
    n.write("v:pw", "hunter2\n");
    let o = with_clip(n, &c, wayland, &["secret", "cat", "--clip", "v:pw"]).success();
    assert!(o.stdout.is_empty(), "nothing printed");
    o.stderr_has("clipboard");
    assert_eq!(fs::read(&c.board).unwrap(), b"hunter2");
    // The clearing process finds it unchanged and clears it.
    wait_for("the clipboard to clear", || {
        fs::read(&c.board).unwrap().is_empty()
    });
    let argv = fs::read_to_string(&c.argv).unwrap();
    assert!(!argv.contains("hunter2"), "{argv}");

    // Changed meanwhile: left alone.
    with_clip(n, &c, wayland, &["secret", "cat", "-c", "v:pw"]).success();
    fs::write(&c.board, b"mine now").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(fs::read(&c.board).unwrap(), b"mine now");

    // generate --clip: stored, copied, not printed.
    let o = with_clip(
        n,
        &c,
        wayland,
        &["secret", "generate", "--clip", "v:gen", "16"],
    )
    .success();
    assert!(o.stdout.is_empty());
    let stored = n.cat("v:gen");
    assert_eq!(stored.len(), 17);
    assert_eq!(fs::read(&c.board).unwrap(), &stored[..16]);

    with_clip(
        n,
        &c,
        wayland,
        &["secret", "cat", "--clip", "v:pw", "v:gen"],
    )
    .failure(ExitCode::Usage);
}

#[test]
fn clip_wayland_and_x11() {
    let n = Node::with_vault();
    check_clip(&n, true);
    let n = Node::with_vault();
    check_clip(&n, false);
}

#[test]
fn clip_mounted() {
    let m = Mounted::new();
    check_clip(&m.node, true);
}

#[test]
fn clip_without_a_tool_is_a_clear_error_before_anything_changes() {
    let n = Node::with_vault();
    n.write("v:pw", "x");
    let o = n
        .cmd()
        .args(["secret", "generate", "--clip", "v:new"])
        .env("PATH", "/usr/bin:/bin")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .run()
        .failure(ExitCode::Usage)
        .stderr_has("wl-copy");
    o.stderr_has("xclip");
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:new"]);
}

// ---------------------------------------------------------------------------
// grep

fn grep_fixture(n: &Node) {
    n.ok(["vault", "create", "a"]);
    n.write("a:z", "token=1\nnothing\n");
    n.write("a:dir/x", "no\nTOKEN=2\ntoken=3");
    n.write("a:bin", b"token=\0binary");
    n.write("v:y", "token=4\n");
}

fn check_grep(n: &Node) {
    let o = n.ok(["secret", "grep", "token"]);
    assert_eq!(o.out(), "a:dir/x:token=3\na:z:token=1\nv:y:token=4\n");
    let o = n.ok(["secret", "grep", "-i", "^token=[23]$", "a"]);
    assert_eq!(o.out(), "a:dir/x:TOKEN=2\na:dir/x:token=3\n");
    let o = n.run(["secret", "grep", "absent"]);
    assert_eq!((o.code, o.stdout.len(), o.stderr.as_str()), (1, 0, ""));
    n.fail(ExitCode::Usage, ["secret", "grep", "("]);
    n.fail(ExitCode::VaultUndefined, ["secret", "grep", "x", "nope"]);
}

#[test]
fn grep_unmounted() {
    let n = Node::with_vault();
    grep_fixture(&n);
    check_grep(&n);
}

#[test]
fn grep_mounted_skips_symlinks_and_fifos() {
    let m = Mounted::new();
    grep_fixture(&m.node);
    std::os::unix::fs::symlink("y", m.path("link")).unwrap();
    let fifo = std::ffi::CString::new(m.path("fifo").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    m.wait_committed();
    check_grep(&m.node);
}

// ---------------------------------------------------------------------------
// Endless input

fn check_endless_input(n: &Node) {
    for args in [
        &["secret", "add", "/dev/zero", "v:z"][..],
        &["secret", "add", "/dev/urandom", "v:"],
    ] {
        n.cmd()
            .args(args)
            .env("PKFS_TEST_ONLY_MAX_INPUT", "8388608")
            .run()
            .failure(ExitCode::Failure)
            .stderr_has("longer than 8 MiB");
    }
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:z"]);
    // Just under the limit is stored.
    let f = n.scratch_file("big", &vec![7u8; 8 * 1024 * 1024]);
    n.cmd()
        .args(["secret", "add", f.to_str().unwrap(), "v:big"])
        .env("PKFS_TEST_ONLY_MAX_INPUT", "8388608")
        .run()
        .success();
    assert_eq!(n.cat("v:big").len(), 8 * 1024 * 1024);
}

#[test]
fn an_endless_input_ends_with_a_clear_error() {
    let n = Node::with_vault();
    check_endless_input(&n);
    let m = Mounted::new();
    check_endless_input(&m.node);
}

#[test]
fn completions_and_help_name_the_verbs() {
    let n = Node::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = n.ok(["completions", shell]).out();
        for verb in ["edit", "generate", "grep", "clip", "words"] {
            assert!(out.contains(verb), "{shell} completions lack {verb}");
        }
    }
    let help = n.ok(["secret", "--help"]).out();
    for verb in ["edit", "generate", "grep"] {
        assert!(help.contains(verb), "{help}");
    }
    assert!(!help.contains("clip-clear"));
}
