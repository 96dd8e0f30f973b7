//! A CLI command that changes a vault leaves its whole change or nothing:
//! a failure half-way, or a kill -9 at any moment, leaves nothing that
//! `fsck` calls tampering, and the exit code says whether the change was kept.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{clean_env, files_under, need, root_key, ExitCode, Node, BIN};

/// `pkfs fsck` finds nothing (no `--restore`), and nothing is quarantined.
fn assert_clean(n: &Node) {
    let o = n.run(["fsck"]);
    assert_eq!(o.code, 0, "fsck: {}{}", o.out(), o.stderr);
    let q = n.vault_dir("v").join("quarantine");
    assert!(!q.exists(), "something was quarantined");
}

/// Every backing file of vault `v` (names only: the tree's shape).
fn backing_files(n: &Node) -> Vec<std::path::PathBuf> {
    files_under(&n.vault_dir("v").join("contents"))
}

#[test]
fn a_write_that_fails_deep_down_leaves_no_directories() {
    let n = Node::with_vault();
    n.write("v:keep", "kept");
    let before = backing_files(&n);
    let commits = n.commits("v");
    // The backing path outgrows PATH_MAX after some dozens of directories.
    let deep = format!("v:{}f", "a/".repeat(3000));
    let o = n.cmd().args(["secret", "write", &deep]).stdin("x").run();
    assert_ne!(o.code, 0, "{}", o.stderr);
    assert_eq!(backing_files(&n), before, "nothing of the write is left");
    assert_eq!(n.ls("v:"), ["keep"]);
    assert_eq!(n.commits("v"), commits);
    assert_clean(&n);
}

#[test]
fn an_import_that_fails_half_way_imports_nothing() {
    let n = Node::with_vault();
    n.write("v:dst/sub", "a file where the import needs a directory");
    let src = n.scratch().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for name in ["a1", "a2", "a3"] {
        fs::write(src.join(name), name).unwrap();
    }
    fs::write(src.join("sub/inner"), "inner").unwrap();
    let before = backing_files(&n);
    let log = n.log("v", true);
    // a1..a3 are written first, then `sub` cannot become a directory.
    let o = n.run(["secret", "import", &src.display().to_string(), "v:dst"]);
    assert_eq!(o.code, ExitCode::WrongKind as i32, "{}", o.stderr);
    assert_eq!(n.ls("v:dst"), ["sub"], "nothing was imported");
    assert_eq!(backing_files(&n), before);
    assert_eq!(n.log("v", true), log, "no commit");
    assert_clean(&n);
    // A move and a recursive removal that fail leave the vault alone too.
    n.fail(ExitCode::NotFound, ["secret", "mv", "v:nothing", "v:dst2"]);
    n.fail(
        ExitCode::NotFound,
        ["secret", "rm", "-r", "v:dst", "v:nothing"],
    );
    assert_eq!(
        n.cat("v:dst/sub"),
        b"a file where the import needs a directory"
    );
    assert_eq!(backing_files(&n), before);
    assert_clean(&n);
}

/// `pkfs secret import SRC v:imp`, started but not waited for.
fn spawn_import(n: &Node, src: &Path, dest: &str) -> std::process::Child {
    let mut c = Command::new(BIN);
    clean_env(&mut c);
    c.arg("--home")
        .arg(&n.home)
        .arg("--passfile")
        .arg(&n.passfile)
        .args(["secret", "import"])
        .arg(src)
        .arg(dest)
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(0))
        .env("XDG_DATA_HOME", n.scratch().join("xdg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().expect("spawning pkfs")
}

#[test]
fn an_import_killed_at_any_moment_leaves_all_or_nothing() {
    let n = Node::with_vault();
    n.write("v:keep", "kept");
    let src = n.scratch().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    let files = 2000;
    for i in 0..files {
        fs::write(src.join(format!("d/f{i:04}")), format!("file {i}")).unwrap();
    }
    // A whole import takes seconds here: kills within the first two land
    // at every stage of it (making directories, writing files).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill delays from seed {seed}");
    let mut killed = 0;
    for round in 0..3u64 {
        // The first round a quarter of a second in, as reported.
        let ms = if round == 0 {
            250
        } else {
            (seed.wrapping_mul(round * 2654435761) >> 7) % 2000
        };
        let dest = format!("v:imp{round}");
        let mut child = spawn_import(&n, &src, &dest);
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed += 1;
        }
        // The next command undoes an unfinished import; fsck never calls
        // anything of it tampering.
        assert_clean(&n);
        let o = n.run(["secret", "ls", &format!("{dest}/d")]);
        match o.code {
            0 => {
                assert_eq!(
                    o.out().lines().count(),
                    files,
                    "round {round}: all or nothing"
                );
                assert_eq!(n.cat(&format!("{dest}/d/f1999")), b"file 1999");
            }
            code => assert_eq!(
                code,
                ExitCode::NotFound as i32,
                "round {round}: {}",
                o.stderr
            ),
        }
        assert_eq!(n.cat("v:keep"), b"kept");
    }
    eprintln!("{killed} of 3 imports were killed before they finished");
    assert!(killed > 0, "no import was killed: the test proves nothing");
}

#[test]
fn a_write_whose_commit_fails_exits_non_zero_and_leaves_nothing() {
    let n = Node::with_vault();
    n.write("v:keep", "kept");
    let objects = n.vault_dir("v").join(".git/objects");
    // Every loose-object directory that does not exist yet becomes a file,
    // so the commit cannot store its new objects.
    let mut blocked = Vec::new();
    for i in 0..256 {
        let d = objects.join(format!("{i:02x}"));
        if !d.exists() {
            fs::write(&d, b"").unwrap();
            blocked.push(d);
        }
    }
    let before = backing_files(&n);
    let o = n.cmd().args(["secret", "write", "v:new"]).stdin("x").run();
    assert_ne!(o.code, 0, "the commit cannot have succeeded");
    assert_eq!(backing_files(&n), before, "the secret is not there");
    for d in blocked {
        fs::remove_file(d).unwrap();
    }
    assert_eq!(n.ls("v:"), ["keep"]);
    assert_clean(&n);
    n.write("v:new", "now");
    assert_eq!(n.cat("v:new"), b"now");
    assert_clean(&n);
}

#[test]
fn a_command_waits_for_the_home_lock_and_names_its_holder() {
    need("flock");
    let n = Node::with_vault();
    n.write("v:s", "x");
    let path = n.home.join("lock");
    // A process that holds the lock, named by the kernel's lock table.
    // flock(1) itself holds the lock (-o: its child does not inherit it), in
    // a process group of its own, so that killing the group releases it.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&path)
        .args(["sleep", "1000"])
        .process_group(0)
        .spawn()
        .expect("running flock(1)");
    let me = holder.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string("/proc/locks")
        .unwrap()
        .contains(&format!(" {me} "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "flock(1) took no lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A short limit: exit 10, naming the holder.
    let o = n
        .cmd()
        .env("PKFS_LOCK_TIMEOUT", "0.3")
        .args(["secret", "cat", "v:s"])
        .run()
        .failure(ExitCode::HomeLocked);
    assert!(
        o.stderr.contains(&format!("pid {me} (flock sleep)")),
        "{}",
        o.stderr
    );
    // Within the limit: the command waits, says for whom, and runs.
    let cmd = n
        .cmd()
        .env("PKFS_LOCK_TIMEOUT", "20")
        .args(["secret", "cat", "v:s"]);
    let waiter = std::thread::spawn(move || cmd.run());
    std::thread::sleep(Duration::from_millis(1600));
    // SAFETY: signals the process group made above.
    unsafe { libc::kill(-(me as i32), libc::SIGKILL) };
    holder.wait().unwrap();
    let o = waiter.join().unwrap().success();
    assert_eq!(o.stdout, b"x");
    assert!(
        o.stderr.contains(&format!(
            "waiting for the home lock, held by pid {me} (flock sleep)"
        )),
        "{}",
        o.stderr
    );
}
