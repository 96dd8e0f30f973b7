//! History through the FUSE mount: what shell tools change is committed after
//! the commit delay, `version checkout` shows at once in the mount, commands run
//! while mounted go through the daemon and show at once, and `status` / `umount`
//! behave.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::Command;

use common::mount::{is_mounted, Mounted};
use common::*;
use serde_json::Value;

// ---------------------------------------------------------------------------
// Helpers.

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Sorted names in a directory.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_absent(p: &Path, what: &str) {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        other => panic!("{what}: {} should be gone, got {other:?}", p.display()),
    }
}

/// The pending changes of vault `v` in the daemon's status.
fn pending(m: &Mounted) -> u64 {
    let st = m.status();
    st["vaults"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == "v"))
        .and_then(|v| v["pending_changes"].as_u64())
        .unwrap_or_else(|| panic!("no pending_changes of v in {st}"))
}

/// The changes of one `version log --json` entry, as ("added", "path") pairs.
fn changes(entry: &Value) -> BTreeSet<(String, String)> {
    entry["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {entry}"))
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ids(log: &[Value]) -> Vec<String> {
    log.iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Commits.

#[test]
fn what_shell_tools_change_is_committed_after_the_delay() {
    // A delay long enough that the status below sees the changes still pending.
    let m = Mounted::with_args(&["--commit-delay", "3s"]);
    for f in ["keep", "modify", "remove", "rename-src"] {
        fs::write(m.path(f), format!("{f}\n")).unwrap();
    }
    m.wait_committed();
    let before = m.node.log("v", false);

    let st = Command::new("sh")
        .arg("-c")
        .arg("echo new > added && echo more >> modify && rm remove && mv rename-src rename-dst")
        .current_dir(m.v())
        .status()
        .unwrap();
    assert!(st.success(), "the shell commands failed: {st}");
    assert!(
        pending(&m) > 0,
        "the changes should wait for the commit delay: {}",
        m.status()
    );
    m.wait_committed();
    assert_eq!(pending(&m), 0);
    let st = m.status();
    assert!(st["vaults"][0]["last_error"].is_null(), "{st}");

    let log = m.node.log("v", false);
    assert_eq!(
        log.len(),
        before.len() + 1,
        "one commit for the batch of shell changes: {log:?}"
    );
    assert_eq!(log[1]["id"], before[0]["id"]);
    assert_eq!(st["vaults"][0]["last_commit"], log[0]["id"], "{st}");
    let want: BTreeSet<(String, String)> = [
        ("added", "added"),
        ("modified", "modify"),
        ("removed", "remove"),
        ("removed", "rename-src"),
        ("added", "rename-dst"),
    ]
    .into_iter()
    .map(|(k, p)| (k.to_string(), p.to_string()))
    .collect();
    assert_eq!(changes(&log[0]), want, "{}", log[0]);

    // The committed state is what the shell left.
    assert_eq!(m.node.cat("v:added"), b"new\n");
    assert_eq!(m.node.cat("v:modify"), b"modify\nmore\n");
    assert_eq!(m.node.cat("v:rename-dst"), b"rename-src\n");
    assert_eq!(
        m.node.ls("v:"),
        ["added", "keep", "modify", "rename-dst"],
        "remove and rename-src are gone"
    );
}

#[test]
fn change_lists_mark_directories_and_leave_out_what_is_not_versioned() {
    let m = Mounted::with_args(&["--commit-delay", "60s"]);
    fs::create_dir(m.path("d")).unwrap();
    fs::create_dir(m.path("d/sub")).unwrap();
    fs::write(m.path("d/sub/f"), "f").unwrap();
    m.node.log("v", false); // a forwarded command commits first
    let fifo = std::ffi::CString::new(s(&m.path("fifo"))).unwrap();
    // SAFETY: a valid C string; mkfifo reads it only.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    // A directory changed only by chmod and an xattr, beside a real change.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(m.path("d"), fs::Permissions::from_mode(0o750)).unwrap();
    let name = std::ffi::CString::new("user.note").unwrap();
    let path = std::ffi::CString::new(s(&m.path("d/sub"))).unwrap();
    // SAFETY: valid C strings and buffer; result checked.
    let rc = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"x".as_ptr().cast(), 1, 0) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    fs::rename(m.path("d/sub"), m.path("moved")).unwrap();
    fs::write(m.path("new"), "n").unwrap();
    let log = m.node.log("v", false);
    let want: BTreeSet<(String, String)> = [
        ("modified", "d/"),
        ("modified", "d/sub/"),
        ("removed", "d/sub/"),
        ("added", "moved/"),
        ("added", "new"),
    ]
    .into_iter()
    .map(|(k, p)| (k.to_string(), p.to_string()))
    .collect();
    assert_eq!(changes(&log[0]), want, "{}", log[0]);
    // Removing the FIFO alone changes no tree: no commit, nothing listed.
    fs::remove_file(m.path("fifo")).unwrap();
    assert_eq!(ids(&m.node.log("v", false)), ids(&log));
}

// ---------------------------------------------------------------------------
// Checkout while mounted.

#[test]
fn checkout_while_mounted_shows_at_once_and_a_write_discards_later_versions() {
    let m = Mounted::new();
    let (one, two) = ("version one", "version two, longer");
    fs::write(m.path("f"), one).unwrap();
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/nested"), one).unwrap();
    m.wait_committed();
    fs::write(m.path("f"), two).unwrap();
    fs::write(m.path("d/nested"), two).unwrap();
    fs::write(m.path("later"), b"added later").unwrap();
    m.wait_committed();
    let log = m.node.log("v", false);
    let latest = log[0]["id"].as_str().unwrap().to_string();
    assert!(
        changes(&log[0]).contains(&("added".into(), "later".into())),
        "{log:?}"
    );

    // The kernel has all of it cached.
    assert_eq!(fs::read(m.path("f")).unwrap(), two.as_bytes());
    assert_eq!(fs::metadata(m.path("f")).unwrap().len(), two.len() as u64);
    assert_eq!(fs::read(m.path("d/nested")).unwrap(), two.as_bytes());
    assert_eq!(names(&m.v()), ["d", "f", "later"]);
    assert!(m.path("later").is_file());

    m.node.ok(["version", "checkout", "v", "HEAD~1"]);
    // No sleep: the mount shows the old version right away.
    assert_eq!(fs::metadata(m.path("f")).unwrap().len(), one.len() as u64);
    assert_eq!(fs::read(m.path("f")).unwrap(), one.as_bytes());
    assert_eq!(fs::read(m.path("d/nested")).unwrap(), one.as_bytes());
    assert_absent(&m.path("later"), "after checkout HEAD~1");
    assert_eq!(names(&m.v()), ["d", "f"]);

    m.node.ok(["version", "checkout", "v", "latest"]);
    assert_eq!(fs::metadata(m.path("f")).unwrap().len(), two.len() as u64);
    assert_eq!(fs::read(m.path("f")).unwrap(), two.as_bytes());
    assert_eq!(fs::read(m.path("later")).unwrap(), b"added later");
    assert_eq!(fs::read(m.path("d/nested")).unwrap(), two.as_bytes());
    assert_eq!(names(&m.v()), ["d", "f", "later"]);

    // Back again, and a write there discards the later version.
    m.node.ok(["version", "checkout", "v", "HEAD~1"]);
    assert_eq!(fs::read(m.path("f")).unwrap(), one.as_bytes());
    fs::write(m.path("new"), b"written at an older version").unwrap();
    m.wait_committed();
    let log = m.node.log("v", false);
    assert!(
        !ids(&log).contains(&latest),
        "the discarded version {latest} is still in the log: {log:?}"
    );
    assert_eq!(log[0]["head"], true, "{log:?}");
    assert!(
        changes(&log[0]).contains(&("added".into(), "new".into())),
        "{log:?}"
    );
    let all = m.node.log("v", true);
    let discarded = all
        .iter()
        .find(|e| e["id"] == latest.as_str())
        .unwrap_or_else(|| panic!("--all does not show the discarded {latest}: {all:?}"));
    assert_eq!(discarded["discarded"], true, "{discarded}");
    for e in &all {
        if e["id"] != latest.as_str() {
            assert_eq!(e["discarded"], false, "{e}");
        }
    }
    assert_eq!(names(&m.v()), ["d", "f", "new"]);
    assert_eq!(fs::read(m.path("f")).unwrap(), one.as_bytes());
    m.node
        .fail(ExitCode::Usage, ["version", "checkout", "v", &latest])
        .stderr_has("discarded");
}

// ---------------------------------------------------------------------------
// Commands through the control socket.

/// `pkfs secret write TARGET` with `data` on stdin, sent to the daemon.
fn cli_write(m: &Mounted, target: &str, data: &[u8]) {
    m.node
        .cmd()
        .args(["secret", "write", target])
        .stdin(data.to_vec())
        .run()
        .success();
}

#[test]
fn commands_while_mounted_go_through_the_daemon_and_show_at_once() {
    // A long delay: nothing is committed by the timer during this test.
    let m = Mounted::with_args(&["--commit-delay", "1m"]);
    assert_absent(&m.path("fromcli"), "before the write");
    cli_write(&m, "v:fromcli", b"from the cli");
    assert_eq!(fs::read(m.path("fromcli")).unwrap(), b"from the cli");
    assert!(names(&m.v()).contains(&"fromcli".to_string()));
    cli_write(&m, "v:fromcli", b"rewritten by the cli");
    assert_eq!(
        fs::read(m.path("fromcli")).unwrap(),
        b"rewritten by the cli"
    );
    // Same length, so only the daemon's invalidation can show it: the kernel
    // keeps a file's cached pages across opens.
    cli_write(&m, "v:fromcli", b"REWRITTEN BY THE CLI");
    assert_eq!(
        fs::read(m.path("fromcli")).unwrap(),
        b"REWRITTEN BY THE CLI"
    );
    m.node.ok(["secret", "mv", "v:fromcli", "v:moved"]);
    assert_absent(&m.path("fromcli"), "after secret mv");
    assert_eq!(fs::read(m.path("moved")).unwrap(), b"REWRITTEN BY THE CLI");
    m.node.ok(["secret", "mkdir", "-p", "v:made/by/cli"]);
    assert!(m.path("made/by/cli").is_dir());
    m.node.ok(["secret", "rm", "v:moved"]);
    assert_absent(&m.path("moved"), "after secret rm");
    assert_eq!(names(&m.v()), ["made"]);

    // Vaults come and go at the mount's root.
    assert_eq!(names(&m.mnt), ["v"]);
    m.node.ok(["vault", "create", "w"]);
    assert!(m.mnt.join("w").is_dir());
    assert_eq!(names(&m.mnt), ["v", "w"]);
    fs::write(m.mnt.join("w/inside"), b"in w").unwrap();
    m.node.ok(["vault", "rename", "w", "w2"]);
    assert_absent(&m.mnt.join("w"), "after vault rename");
    assert_eq!(names(&m.mnt), ["v", "w2"]);
    assert_eq!(fs::read(m.mnt.join("w2/inside")).unwrap(), b"in w");
    assert_eq!(m.node.cat("w2:inside"), b"in w");
    m.node.ok(["vault", "delete", "w2", "--yes"]);
    assert_absent(&m.mnt.join("w2"), "after vault delete");
    assert_eq!(names(&m.mnt), ["v"]);

    // A file written through the mount and not yet committed reads from the CLI.
    let mut f = fs::File::create(m.path("viamount")).unwrap();
    f.write_all(b"written through the mount").unwrap();
    drop(f);
    assert!(pending(&m) > 0, "{}", m.status());
    assert_eq!(m.node.cat("v:viamount"), b"written through the mount");
    assert!(m.node.ls("v:").contains(&"viamount".to_string()));
}

// ---------------------------------------------------------------------------
// status and umount.

#[test]
fn status_shows_the_mount_and_each_vault() {
    let mut m = Mounted::with_args(&["--commit-delay", "1m", "--cache-size", "16M"]);
    let home = s(&m.node.home);
    let st = m.status();
    assert_eq!(st["mounted"], true, "{st}");
    assert_eq!(st["mountpoint"], s(&m.mnt), "{st}");
    let pid = st["pid"].as_i64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "{st}");
    assert_eq!(st["cache"]["capacity_bytes"], 16 << 20, "{st}");
    for k in ["clean_bytes", "dirty_bytes", "hits", "misses"] {
        assert!(st["cache"][k].is_u64(), "{k}: {st}");
    }
    assert!(st["open_files"].is_u64(), "{st}");
    let vaults = st["vaults"].as_array().unwrap();
    assert_eq!(vaults.len(), 1, "{st}");
    assert_eq!(vaults[0]["name"], "v");
    assert_eq!(vaults[0]["pending_changes"], 0, "{st}");
    assert!(vaults[0]["last_error"].is_null(), "{st}");

    fs::write(m.path("pending"), b"not committed yet").unwrap();
    let st = m.status();
    assert_eq!(st["vaults"][0]["pending_changes"], 1, "{st}");
    let human = m.node.ok(["status"]).out();
    for want in [
        format!("{home}: mounted at {} (pid {pid})", s(&m.mnt)),
        "of 16384 KiB".to_string(),
        "vault v: 1 pending change(s)".to_string(),
    ] {
        assert!(human.contains(&want), "{want:?} not in:\n{human}");
    }

    // A command through the daemon commits first.
    m.node.ok(["secret", "ls", "v:"]);
    let st = m.status();
    let log = m.node.log("v", false);
    assert_eq!(st["vaults"][0]["pending_changes"], 0, "{st}");
    assert_eq!(st["vaults"][0]["last_commit"], log[0]["id"], "{st}");
    assert!(st["vaults"][0]["last_commit_time"].is_i64(), "{st}");
    let human = m.node.ok(["status"]).out();
    let short: String = log[0]["id"].as_str().unwrap().chars().take(12).collect();
    assert!(
        human.contains(&format!(
            "vault v: 0 pending change(s), last commit {short}"
        )),
        "{human}"
    );

    m.umount();
    let st = m.node.ok(["--json", "status"]).json();
    assert_eq!(st["mounted"], false, "{st}");
    let human = m.node.ok(["status"]).out();
    assert_eq!(human.trim_end(), format!("{home}: not mounted"));
}

#[test]
fn umount_with_a_file_held_open_fails_busy_and_the_mount_keeps_working() {
    let mut m = Mounted::new();
    let mut f = fs::File::create(m.path("held")).unwrap();
    f.write_all(b"held open").unwrap();
    m.node
        .fail(ExitCode::MountFailure, ["umount", &s(&m.mnt)])
        .stderr_has("busy");
    assert!(is_mounted(&m.mnt));
    assert_eq!(m.status()["mounted"], true);
    // Still serving, the held file included.
    f.write_all(b", and more").unwrap();
    fs::write(m.path("other"), b"other").unwrap();
    assert_eq!(fs::read(m.path("other")).unwrap(), b"other");
    assert_eq!(fs::read(m.path("held")).unwrap(), b"held open, and more");
    drop(f);
    m.umount();
    assert!(!is_mounted(&m.mnt));
    assert_eq!(m.node.cat("v:held"), b"held open, and more");
    assert_eq!(m.node.cat("v:other"), b"other");
}
