//! Where a command's secret material comes from, mounted and not: the client
//! reads its own inputs, a passphrase is read once, bounded, and never taken
//! from the command's data, and the answer is the same whether or not a mount
//! daemon runs for the home.

mod common;

use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use common::mount::Mounted;
use common::*;

/// Run `check` once against an unmounted node and once against a mounted one.
fn both_modes(check: impl Fn(&Node, &str)) {
    let n = Node::with_vault();
    check(&n, "unmounted");
    let m = Mounted::new();
    check(&m.node, "mounted");
}

#[test]
fn a_passfile_that_is_the_commands_stdin_is_refused() {
    both_modes(|n, mode| {
        let o = n
            .cmd()
            .no_passfile()
            .env("PKFS_PASSFILE", "/dev/stdin")
            .args(["secret", "write", "v:s"])
            .stdin(format!("{PASSPHRASE}\nBODY\n"))
            .run();
        assert_ne!(o.code, 0, "{mode}: {o:?}");
        let o = o.failure(ExitCode::Usage).stderr_has("same stream");
        assert!(o.stdout.is_empty());
        n.fail(ExitCode::NotFound, ["secret", "cat", "v:s"]);
        // Nor is a passfile the same file as what `secret add` stores.
        let f = n.scratch_file("both", format!("{PASSPHRASE}\n").as_bytes());
        n.cmd()
            .passfile(&f)
            .args(["secret", "add", f.to_str().unwrap(), "v:t"])
            .run()
            .failure(ExitCode::Usage)
            .stderr_has("same stream");
        n.fail(ExitCode::NotFound, ["secret", "cat", "v:t"]);
    });
}

#[test]
fn an_endless_passfile_is_refused_at_once() {
    let n = Node::with_vault();
    let t = Instant::now();
    n.cmd()
        .passfile("/dev/zero")
        .args(["secret", "ls", "v"])
        .run()
        .failure(ExitCode::Usage)
        .stderr_has("longer than 2048 bytes");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The limit itself is accepted: a node whose passphrase is 2048 bytes.
    let n = Node::new();
    let long = n.scratch_file("long", &[b'p'; 2048]);
    n.cmd().passfile(&long).args(["init"]).run().success();
    n.cmd()
        .passfile(&long)
        .args(["vault", "list"])
        .run()
        .success();
}

#[test]
fn extpass_reads_one_line_and_does_not_wait_for_what_the_helper_left_behind() {
    let n = Node::with_vault();
    n.write("v:s", "x");
    // The helper exits at once, but a child of it keeps the pipe open.
    let helper = format!("echo '{PASSPHRASE}'; (sleep 30 2>/dev/null &)");
    let t = Instant::now();
    let o = n
        .cmd()
        .no_passfile()
        .args(["--extpass", &helper, "secret", "cat", "v:s"])
        .run()
        .success();
    assert_eq!(o.stdout, b"x");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Endless output without a line end is refused, not read to the end.
    n.cmd()
        .no_passfile()
        .args(["--extpass", "cat /dev/zero", "vault", "list"])
        .run()
        .failure(ExitCode::Usage)
        .stderr_has("longer than 2048 bytes");
    // The helper never sees the command's input.
    let o = n
        .cmd()
        .no_passfile()
        .args(["--extpass", "cat", "secret", "write", "v:t"])
        .stdin(format!("{PASSPHRASE}\nBODY\n"))
        .run();
    assert_ne!(o.code, 0, "{o:?}");
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:t"]);
}

#[test]
fn secret_env_children_get_no_pkfs_variables_unless_asked() {
    both_modes(|n, mode| {
        n.write("v:TOKEN", "t0k");
        let run = |keep: bool| {
            let mut args = vec!["secret", "env", "v:TOKEN"];
            if keep {
                args.push("--keep-pkfs-env");
            }
            args.extend(["--", "env"]);
            let o = n
                .cmd()
                .no_passfile()
                .no_home()
                .env("PKFS_HOME", &n.home)
                .env("PKFS_PASSFILE", &n.passfile)
                .args(args)
                .run()
                .success();
            o.out()
        };
        let env = run(false);
        assert!(env.lines().any(|l| l == "TOKEN=t0k"), "{mode}: {env}");
        assert!(
            !env.lines().any(|l| l.starts_with("PKFS_")),
            "{mode}: the child inherited pkfs variables:\n{env}"
        );
        let env = run(true);
        let passfile = format!("PKFS_PASSFILE={}", n.passfile.display());
        assert!(env.lines().any(|l| l == passfile), "{mode}: {env}");
        assert!(env.lines().any(|l| l.starts_with("PKFS_HOME=")), "{mode}");
    });
}

/// `pkfs ARGS` run by bash (for redirections and process substitutions).
fn bash(n: &Node, line: &str) -> std::process::Output {
    let mut c = std::process::Command::new("bash");
    clean_env(&mut c);
    c.env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .env("PKFS_HOME", &n.home)
        .env("PKFS_PASSFILE", &n.passfile)
        .env("PKFS", BIN)
        .current_dir(n.scratch())
        .args(["-c", line]);
    c.output().unwrap()
}

#[test]
fn the_client_reads_what_the_command_names() {
    both_modes(|n, mode| {
        let ok = |line: &str| {
            let o = bash(n, line);
            assert!(o.status.success(), "{mode}: {line}: {o:?}");
        };
        ok("echo FROMSTDIN | \"$PKFS\" secret add /dev/stdin v:k");
        assert_eq!(n.cat("v:k"), b"FROMSTDIN\n", "{mode}");
        ok("\"$PKFS\" secret add <(echo x) v:p");
        assert_eq!(n.cat("v:p"), b"x\n", "{mode}");
        ok("\"$PKFS\" secret add /proc/self/cmdline v:e");
        let cmdline = n.cat("v:e");
        assert!(
            contains(&cmdline, b"secret\0add\0/proc/self/cmdline\0v:e\0"),
            "{mode}: {:?}",
            String::from_utf8_lossy(&cmdline)
        );
        // A relative path is the client's, and a missing file fails here.
        n.scratch_file("rel.txt", b"relative");
        ok("\"$PKFS\" secret add rel.txt v:");
        assert_eq!(n.cat("v:rel.txt"), b"relative", "{mode}");
        let o = bash(n, "\"$PKFS\" secret add missing.txt v:");
        assert_eq!(o.status.code(), Some(1), "{mode}: {o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("missing.txt"));
    });
}

#[test]
fn a_large_secret_is_the_same_mounted_and_not() {
    let data = pseudo_random(100 << 20, 3);
    both_modes(|n, mode| {
        n.write("v:big", &data);
        let back = n.cat("v:big");
        assert!(back == data, "{mode}: {} bytes back", back.len());
    });
}

#[test]
fn a_fifo_nobody_opens_does_not_wedge_the_mount() {
    let m = Mounted::new();
    let fifo = m.node.scratch().join("F");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let o = bash(&m.node, "timeout 3 \"$PKFS\" secret add F v:x");
    assert_eq!(o.status.code(), Some(124), "{o:?}");
    // A write through the mount completes at once.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = m.path("new");
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::write(&path, b"x").map_err(|e| e.to_string()));
    });
    let written = rx.recv_timeout(Duration::from_secs(10));
    assert_eq!(written, Ok(Ok(())), "a write through the mount was held up");
    // Later input on F reaches nobody, and v:x never appears.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    assert!(f.is_err(), "something still waits on F");
    m.wait_committed();
    m.node.fail(ExitCode::NotFound, ["secret", "cat", "v:x"]);
    assert_eq!(m.node.cat("v:new"), b"x");
}

#[test]
fn import_reads_the_clients_directory_mounted_and_not() {
    both_modes(|n, mode| {
        let src = n.scratch().join(format!("tree-{mode}"));
        std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
        std::fs::write(src.join("a.txt"), b"A").unwrap();
        std::fs::write(src.join("sub/deeper/b.bin"), [0u8, 255, 7]).unwrap();
        let rel = format!("tree-{mode}");
        let o = n.ok(["secret", "import", &rel, "v:imp"]);
        assert!(o.stderr.is_empty(), "{mode}: {o:?}");
        assert_eq!(n.cat("v:imp/a.txt"), b"A", "{mode}");
        assert_eq!(n.cat("v:imp/sub/deeper/b.bin"), [0u8, 255, 7], "{mode}");
        n.fail(ExitCode::WrongKind, ["secret", "import", "passfile", "v:x"]);
        n.fail(
            ExitCode::Failure,
            ["secret", "import", "no-such-dir", "v:x"],
        );
    });
}
