//! Sealed mounts, for real: a node whose only slot is a 3-of-5 split mounts
//! sealed (live, empty root, `sealed, 0/3 shares`), three different Unix
//! users of `--unseal-group` unseal it with `pkfs unseal` on standard input,
//! duplicates and bad shares are refused, shares that do not combine reset
//! the progress, `pkfs seal` and `--idle` seal it again, and no share ever
//! reaches the log, the home or argv.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mount::{is_mounted, Mounted};
use common::{contains, files_under, ExitCode, Node, BIN};
use sha2::{Digest, Sha256};

const GROUP: &str = "pkfs-holders";
const HOLDERS: [&str; 3] = ["pkfs-holder1", "pkfs-holder2", "pkfs-holder3"];

fn id_of(flag: &str, name: &str) -> u32 {
    let out = Command::new("id").arg(flag).arg(name).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn gid_of_group(name: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", name])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    line.split(':').nth(2).unwrap().trim().parse().unwrap()
}

/// The holders' group and users (made once; kept, as system users are).
fn holders() -> (u32, Vec<(u32, u32)>) {
    let _ = Command::new("groupadd").arg(GROUP).status();
    let users = HOLDERS
        .iter()
        .map(|u| {
            let _ = Command::new("useradd")
                .args(["-M", "-N", "-G", GROUP, "-s", "/usr/sbin/nologin", u])
                .stderr(Stdio::null())
                .status();
            (id_of("-u", u), id_of("-g", u))
        })
        .collect();
    (gid_of_group(GROUP), users)
}

/// `pkfs --home HOME ARGS` as uid/gid with `groups`, `stdin` on standard input.
fn as_user(
    uid: u32,
    gid: u32,
    groups: &[u32],
    home: &Path,
    args: &[&str],
    stdin: &[u8],
) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    common::clean_env(&mut c);
    c.arg("--home").arg(home).args(args).current_dir("/");
    let groups = groups.to_vec();
    // SAFETY: only async-signal-safe calls before exec.
    unsafe {
        c.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A shares-only node with vault `v` holding `v:a`, not mounted.
fn sealed_node() -> (Mounted, Vec<String>) {
    let n = Node::new();
    let dir = n.scratch().join("shares");
    fs::create_dir(&dir).unwrap();
    n.cmd()
        .no_passfile()
        .args(["init", "--shares", "5", "--threshold", "3", "--share-dir"])
        .arg(&dir)
        .run()
        .success();
    let files: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("share-{i}.txt")))
        .collect();
    let mut c = n.cmd().no_passfile();
    for f in &files[..3] {
        c = c.arg("--share-file").arg(f);
    }
    c.args(["vault", "create", "v"]).run().success();
    let mut c = n.cmd().no_passfile();
    for f in &files[..3] {
        c = c.arg("--share-file").arg(f);
    }
    c.args(["secret", "write", "v:a"])
        .stdin(b"kept".to_vec())
        .run()
        .success();
    let shares = files
        .iter()
        .map(|f| fs::read_to_string(f).unwrap())
        .collect();
    (Mounted::unmounted(n), shares)
}

fn status(m: &Mounted) -> serde_json::Value {
    m.node
        .cmd()
        .no_passfile()
        .args(["--json", "status"])
        .run()
        .success()
        .json()
}

fn unseal_as_owner(m: &Mounted, share: &str) -> common::Output {
    m.node
        .cmd()
        .no_passfile()
        .arg("unseal")
        .stdin(share.as_bytes().to_vec())
        .run()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A share of the same split and index with another value, checksum redone:
/// it passes every form check and combines to a wrong key.
fn forged(share: &str) -> String {
    let line = share.trim();
    let body = &line[..line.len() - 9];
    let mut b = body.as_bytes().to_vec();
    let i = b.len() - 1;
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    let body = String::from_utf8(b).unwrap();
    let check: String = Sha256::digest(body.as_bytes())[..4]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    format!("{body}-{check}\n")
}

#[test]
fn three_holders_of_five_unseal_a_sealed_mount() {
    let (gid, users) = holders();
    let (mut m, shares) = sealed_node();
    m.mount(&["--unseal-group", GROUP, "--commit-delay", "200ms"]);
    let home = m.node.home.clone();
    // Live, empty, sealed.
    assert!(is_mounted(&m.mnt));
    assert!(listing(&m.mnt).is_empty());
    let s = status(&m);
    assert_eq!(
        (s["sealed"].as_bool(), s["state"].as_str()),
        (Some(true), Some("sealed, 0/3 shares"))
    );
    let human = m
        .node
        .cmd()
        .no_passfile()
        .arg("status")
        .run()
        .success()
        .out();
    assert!(human.contains("sealed, 0/3 shares"), "{human}");
    m.node
        .cmd()
        .no_passfile()
        .args(["vault", "list"])
        .run()
        .failure(ExitCode::Sealed)
        .stderr_has("node is sealed");
    assert!(fs::create_dir(m.mnt.join("x")).is_err());
    // Someone outside the group is refused, and counts for nothing.
    let (code, _, err) = as_user(65534, 65534, &[], &home, &["unseal"], shares[0].as_bytes());
    assert_eq!(code, ExitCode::Usage as i32, "{err}");
    // Holder 1: share 1; again: not counted twice.
    let (u1, g1) = users[0];
    let (code, out, err) = as_user(u1, g1, &[gid], &home, &["unseal"], shares[0].as_bytes());
    assert_eq!((code, out.trim()), (0, "1/3 shares"), "{err}");
    let (code, out, err) = as_user(u1, g1, &[gid], &home, &["unseal"], shares[0].as_bytes());
    assert_eq!((code, out.trim()), (0, "1/3 shares"));
    assert!(err.contains("not counted twice"), "{err}");
    // A mistyped share is refused at once, without counting.
    let mut typo = shares[1].clone().into_bytes();
    typo[40] = if typo[40] == b'a' { b'b' } else { b'a' };
    let (code, _, err) = as_user(users[1].0, users[1].1, &[gid], &home, &["unseal"], &typo);
    assert_eq!(code, ExitCode::BadShare as i32, "{err}");
    assert_eq!(status(&m)["state"], "sealed, 1/3 shares");
    // Holder 2 gives share 4; a forged third share does not combine: reset.
    let (u2, g2) = users[1];
    let (code, out, _) = as_user(u2, g2, &[gid], &home, &["unseal"], shares[3].as_bytes());
    assert_eq!((code, out.trim()), (0, "2/3 shares"));
    let bad = forged(&shares[4]);
    let (code, _, err) = as_user(
        users[2].0,
        users[2].1,
        &[gid],
        &home,
        &["unseal"],
        bad.as_bytes(),
    );
    assert_eq!(code, ExitCode::WrongPassphrase as i32, "{err}");
    assert!(err.contains("progress is reset"), "{err}");
    assert_eq!(status(&m)["state"], "sealed, 0/3 shares");
    // Three holders, three users: unsealed, every vault appears.
    for (i, (u, g)) in users.iter().enumerate() {
        let (code, out, err) = as_user(
            *u,
            *g,
            &[gid],
            &home,
            &["unseal"],
            shares[[0, 3, 4][i]].as_bytes(),
        );
        assert_eq!(code, 0, "{err}");
        let want = if i == 2 {
            "unsealed".to_string()
        } else {
            format!("{}/3 shares", i + 1)
        };
        assert_eq!(out.trim(), want);
    }
    assert_eq!(listing(&m.mnt), ["v"]);
    assert_eq!(fs::read(m.mnt.join("v/a")).unwrap(), b"kept");
    assert_eq!(status(&m)["sealed"], false);
    // A late share is harmless.
    let (code, out, _) = as_user(u1, g1, &[gid], &home, &["unseal"], shares[1].as_bytes());
    assert_eq!((code, out.trim()), (0, "unsealed"));
    // The log names who gave a share, never the share.
    let log = m.log();
    assert!(log.contains("pkfs-holder2"), "{log}");
    m.umount();
    for s in &shares {
        let value = &s.trim()[s.trim().len() - 73..s.trim().len() - 9];
        assert!(!log.contains(value));
        for p in files_under(&home) {
            let bytes = fs::read(&p).unwrap_or_default();
            assert!(!contains(&bytes, value.as_bytes()), "{}", p.display());
        }
    }
}

#[test]
fn seal_commits_drops_the_keys_and_leaves_the_mount_sealed() {
    let (mut m, shares) = sealed_node();
    m.mount(&["--commit-delay", "10s"]);
    for s in &shares[..3] {
        unseal_as_owner(&m, s).success();
    }
    fs::write(m.mnt.join("v/b"), b"written before the seal").unwrap();
    // An open file keeps it unsealed.
    let f = fs::File::open(m.mnt.join("v/b")).unwrap();
    m.node
        .cmd()
        .no_passfile()
        .arg("seal")
        .run()
        .failure(ExitCode::MountFailure)
        .stderr_has("open");
    drop(f);
    std::thread::sleep(Duration::from_millis(300));
    m.node.cmd().no_passfile().arg("seal").run().success();
    assert!(is_mounted(&m.mnt));
    assert!(listing(&m.mnt).is_empty());
    assert!(fs::read(m.mnt.join("v/b")).is_err());
    assert_eq!(status(&m)["state"], "sealed, 0/3 shares");
    m.node
        .cmd()
        .no_passfile()
        .args(["secret", "cat", "v:b"])
        .run()
        .failure(ExitCode::Sealed);
    // Unsealed again: what was written before the seal was committed.
    for s in &shares[2..5] {
        unseal_as_owner(&m, s).success();
    }
    assert_eq!(
        fs::read(m.mnt.join("v/b")).unwrap(),
        b"written before the seal"
    );
    let log = m
        .node
        .cmd()
        .no_passfile()
        .args(["--json", "version", "log", "v"])
        .run()
        .success();
    assert!(log.out().contains("b"));
    m.umount();
}

#[test]
fn an_idle_mount_seals_itself() {
    let (mut m, shares) = sealed_node();
    m.mount(&["--idle", "2s"]);
    for s in &shares[..3] {
        unseal_as_owner(&m, s).success();
    }
    assert_eq!(fs::read(m.mnt.join("v/a")).unwrap(), b"kept");
    let t = Instant::now();
    while status(&m)["sealed"] != true {
        assert!(t.elapsed() < Duration::from_secs(20), "never sealed");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(listing(&m.mnt).is_empty());
    m.umount();
}

#[test]
fn a_passphrase_node_mounted_sealed_opens_with_shares_added_later() {
    let m0 = Mounted::unmounted(Node::with_vault());
    let n = &m0.node;
    let dir = n.scratch().join("sh");
    fs::create_dir(&dir).unwrap();
    n.cmd()
        .args([
            "key",
            "add",
            "shares",
            "--shares",
            "2",
            "--threshold",
            "2",
            "--share-dir",
        ])
        .arg(&dir)
        .run()
        .success();
    let mut m = m0;
    m.mount(&["--sealed"]);
    assert!(listing(&m.mnt).is_empty());
    for i in 1..=2 {
        let s = fs::read_to_string(dir.join(format!("share-{i}.txt"))).unwrap();
        unseal_as_owner(&m, &s).success();
    }
    assert_eq!(listing(&m.mnt), ["v"]);
    // A share of another node is refused by the client, before it is sent.
    let other = Node::new();
    let od = other.scratch().join("sh");
    fs::create_dir(&od).unwrap();
    other
        .cmd()
        .no_passfile()
        .env("PKFS_TEST_ONLY_ROOT_KEY", common::root_key(1))
        .args(["init", "--shares", "2", "--threshold", "2", "--share-dir"])
        .arg(&od)
        .run()
        .success();
    m.node
        .cmd()
        .no_passfile()
        .arg("unseal")
        .arg("--share-file")
        .arg(od.join("share-1.txt"))
        .run()
        .failure(ExitCode::BadShare)
        .stderr_has("nothing was sent");
    m.umount();
}

/// Unmounts on drop (a mount made by hand, with its own environment).
struct Umount<'a>(&'a Node, PathBuf);

impl Drop for Umount<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd().no_passfile().arg("umount").arg(&self.1).run();
    }
}

/// Every process's argv, joined.
fn all_argv() -> Vec<u8> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(b) = fs::read(e.path().join("cmdline")) {
            out.extend_from_slice(&b);
            out.push(b'\n');
        }
    }
    out
}

#[test]
fn partial_shares_expire_and_shares_never_reach_argv() {
    let (m, shares) = sealed_node();
    let n = &m.node;
    n.cmd()
        .no_passfile()
        .env("PKFS_TEST_ONLY_UNSEAL_EXPIRE_MS", "1500")
        .arg("mount")
        .arg(&m.mnt)
        .run()
        .success();
    let _guard = Umount(n, m.mnt.clone());
    // A holder's `pkfs unseal` waiting for its share on standard input.
    let mut c = Command::new(BIN);
    common::clean_env(&mut c);
    c.arg("--home").arg(&n.home).arg("unseal");
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let argv = all_argv();
    for s in &shares {
        let value = &s.trim()[s.trim().len() - 73..s.trim().len() - 9];
        assert!(
            !contains(&argv, value.as_bytes()),
            "a share is in some argv"
        );
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(shares[0].as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1/3 shares");
    assert_eq!(status(&m)["state"], "sealed, 1/3 shares");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(status(&m)["state"], "sealed, 0/3 shares");
    // After the expiry the count starts again.
    unseal_as_owner(&m, &shares[1]).success();
    assert_eq!(status(&m)["state"], "sealed, 1/3 shares");
}

#[test]
fn two_holders_racing_with_the_last_share_open_the_node_once() {
    let (mut m, shares) = sealed_node();
    m.mount(&[]);
    unseal_as_owner(&m, &shares[0]).success();
    unseal_as_owner(&m, &shares[1]).success();
    let racers: Vec<_> = [2, 3]
        .into_iter()
        .map(|i| {
            let mut c = Command::new(BIN);
            common::clean_env(&mut c);
            c.arg("--home").arg(&m.node.home).arg("unseal");
            c.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = c.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(shares[i].as_bytes())
                .unwrap();
            child
        })
        .collect();
    for r in racers {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "unsealed");
    }
    assert_eq!(listing(&m.mnt), ["v"]);
    assert_eq!(fs::read(m.mnt.join("v/a")).unwrap(), b"kept");
    m.umount();
}

#[test]
fn a_node_without_shares_is_not_mounted_sealed() {
    let m = Mounted::unmounted(Node::with_vault());
    m.node
        .cmd()
        .arg("mount")
        .arg(&m.mnt)
        .arg("--sealed")
        .run()
        .failure(ExitCode::Usage)
        .stderr_has("no shares slot");
    assert!(!is_mounted(&m.mnt));
}
