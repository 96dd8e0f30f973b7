//! Exact names, messages and exit codes of the CLI: `secret env` on symlinks,
//! FIFOs, clashing names and trailing newlines; `..` in a path, a move onto
//! itself and `mkdir` of a file's path.

mod common;

use common::mount::Mounted;
use common::*;

#[test]
fn env_skips_symlinks_and_fifos_and_refuses_a_link_by_kind() {
    let mut m = Mounted::new();
    m.node.write("v:d/A", "a");
    std::os::unix::fs::symlink("A", m.path("d/ln")).unwrap();
    let fifo =
        std::ffi::CString::new(m.path("d/fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid C string; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    m.wait_committed();
    let check = |n: &Node| {
        let o = n.ok(["secret", "env", "v:d"]);
        assert_eq!(o.out(), "export A='a'\n");
        assert!(o.stderr.contains("skipped \"v:d/ln\""), "{}", o.stderr);
        let o = n.fail(ExitCode::WrongKind, ["secret", "env", "v:d/ln"]);
        assert!(!o.stderr.contains("VPath"), "{}", o.stderr);
        o.stderr_has("\"d/ln\": not a regular file");
        let o = n.ok(["-q", "secret", "env", "v:d"]);
        assert_eq!(o.stderr, "");
    };
    // Through the daemon, then on the vault alone (the symlink is versioned).
    check(&m.node);
    m.umount();
    let o = m.node.ok(["secret", "env", "v:d"]);
    assert_eq!(o.out(), "export A='a'\n");
    assert!(o.stderr.contains("skipped \"v:d/ln\""), "{}", o.stderr);
    m.node
        .fail(ExitCode::WrongKind, ["secret", "cat", "v:d/ln"])
        .stderr_has("\"d/ln\": not a regular file");
}

#[test]
fn env_refuses_two_secrets_with_one_variable_name() {
    let n = Node::with_vault();
    n.write("v:d/a-b", "1");
    n.write("v:d/a_b", "2");
    n.fail(ExitCode::Usage, ["secret", "env", "v:d"])
        .stderr_has("\"v:d/a-b\" and \"v:d/a_b\" both give the variable a_b");
    n.fail(ExitCode::Usage, ["secret", "env", "v:d/a-b", "v:d/a_b"])
        .stderr_has("\"v:d/a-b\" and \"v:d/a_b\"");
    n.fail(ExitCode::Usage, ["secret", "env", "v:d/a-b=X", "v:d/a_b=X"]);
    // =NAME settles it; the same secret twice is no clash.
    let o = n.ok(["secret", "env", "v:d/a-b=X", "v:d/a_b", "v:d/a_b"]);
    assert_eq!(o.out(), "export X='1'\nexport a_b='2'\n");
}

#[test]
fn env_strips_one_trailing_newline() {
    let n = Node::with_vault();
    n.write("v:one", "s3cret\n");
    n.write("v:two", "two\n\n");
    n.write("v:none", "x");
    let o = n.ok(["secret", "env", "v:one", "v:two", "v:none"]);
    assert_eq!(
        o.out(),
        "export one='s3cret'\nexport two='two\n'\nexport none='x'\n"
    );
    let o = n
        .cmd()
        .args(["secret", "env", "v:one", "--", "/bin/sh", "-c"])
        .arg("printf '[%s]' \"$one\"")
        .run()
        .success();
    assert_eq!(o.out(), "[s3cret]");
    // The help says so.
    let help = n.ok(["secret", "env", "--help"]).out();
    assert!(help.contains("trailing newline"), "{help}");
}

#[test]
fn dot_dot_is_refused_with_an_accurate_message() {
    let n = Node::with_vault();
    n.write("v:a/f", "x");
    for t in ["v:a/../f", "v:../x"] {
        let o = n.fail(ExitCode::InvalidName, ["secret", "cat", t]);
        assert!(!o.stderr.contains("escape"), "{}", o.stderr);
        o.stderr_has("'..' is not allowed");
    }
}

#[test]
fn moving_onto_itself_and_mkdir_on_a_file_say_what_happened() {
    let n = Node::with_vault();
    n.write("v:f", "x");
    n.write("v:d/g", "y");
    let o = n.fail(ExitCode::Usage, ["secret", "mv", "v:f", "v:"]);
    assert!(!o.stderr.contains("into itself"), "{}", o.stderr);
    o.stderr_has("\"f\" is already at \"/\"");
    n.fail(ExitCode::Usage, ["secret", "mv", "v:d/g", "v:d"])
        .stderr_has("already at");
    n.fail(ExitCode::Usage, ["secret", "mv", "v:d", "v:d/x"])
        .stderr_has("into itself");
    // mkdir of a file's path: it exists (14); a file on the way is the wrong kind.
    n.fail(ExitCode::Exists, ["secret", "mkdir", "v:f"]);
    n.fail(ExitCode::WrongKind, ["secret", "mkdir", "-p", "v:f"]);
    n.fail(ExitCode::Exists, ["secret", "mkdir", "v:d"]);
    n.fail(ExitCode::WrongKind, ["secret", "mkdir", "-p", "v:f/x"]);
    assert_eq!(n.cat("v:f"), b"x");
}

#[test]
fn an_io_error_names_its_cause_once() {
    let n = Node::with_vault();
    let missing = n.scratch().join("missing");
    let missing = missing.to_str().unwrap();
    for args in [
        vec!["secret", "add", missing, "v:x"],
        vec!["secret", "import", missing, "v:x"],
    ] {
        let o = n.run(&args);
        assert_ne!(o.code, 0);
        assert_one_error_line(&o);
        assert_eq!(o.stderr.matches("os error 2").count(), 1, "{}", o.stderr);
    }
}

#[test]
fn a_missing_state_file_is_corrupt_data() {
    for file in ["root.pub", "metadata"] {
        let n = Node::with_vault();
        std::fs::remove_file(n.home.join(file)).unwrap();
        n.fail(ExitCode::Corrupt, ["secret", "ls", "v"])
            .stderr_has(&format!("{file:?}"))
            .stderr_has("missing");
    }
    // Without root.key there is no node at all.
    let n = Node::with_vault();
    std::fs::remove_file(n.home.join("root.key")).unwrap();
    n.fail(ExitCode::NotInitialized, ["secret", "ls", "v"]);
}
