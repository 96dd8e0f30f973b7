//! Routing of commands between the `pkfs` binary and a mount daemon's control
//! socket (`HOME/run/pkfs.sock`).
//!
//! Without a daemon (no socket, or a stale socket file nothing listens on) the
//! binary runs commands itself. With one, it sends them: these tests stand in
//! for the daemon with the library's own server (`pkfs::daemon::control::serve`)
//! and a handler that records each request and answers as told, so they check
//! exactly what the client sends and how it relays the answer. The daemon's
//! execution of commands is covered by the mount tests.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::*;
use pkfs::daemon::client::socket_path;
use pkfs::daemon::control::{bind, serve};
use pkfs::daemon::protocol::{encode_env_values, CommandRequest, Request, Response};

type Reply = dyn Fn(&CommandRequest) -> Response + Send + Sync;

/// A stand-in daemon on `home`'s control socket; stopped on drop.
struct FakeDaemon {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<CommandRequest>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    fn start(
        home: &Path,
        reply: impl Fn(&CommandRequest) -> Response + Send + Sync + 'static,
    ) -> Self {
        fs::create_dir_all(home).unwrap();
        set_mode(home, 0o700);
        let listener = bind(&socket_path(home)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<CommandRequest>>> = Arc::default();
        let reply: Arc<Reply> = Arc::new(reply);
        let record = seen.clone();
        let handler = Arc::new(move |req: Request| match req {
            Request::Command(c) => {
                let r = reply(&c);
                record.lock().unwrap().push(c);
                r
            }
            _ => Response::Error {
                code: 1,
                message: "the fake daemon only takes commands".into(),
            },
        });
        let s = stop.clone();
        let thread = std::thread::spawn(move || serve(listener, handler, s));
        FakeDaemon {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// The one request received (the client's probe connection is no request).
    fn only_request(&self) -> CommandRequest {
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "expected exactly one request: {seen:?}");
        seen[0].clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(code: i32, stdout: &[u8], stderr: &str) -> Response {
    Response::Command {
        code,
        stdout: stdout.to_vec(),
        stderr: stderr.as_bytes().to_vec(),
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------
// No daemon: the command runs here.

#[test]
fn without_a_daemon_commands_run_locally_and_leave_no_socket() {
    let n = Node::with_vault();
    n.write("v:a", b"alpha");
    assert_eq!(n.cat("v:a"), b"alpha");
    n.ok(["secret", "rm", "v:a"]);
    assert!(!n.home.join("run").exists(), "no client creates run/");
}

#[test]
fn a_stale_socket_file_is_not_a_daemon() {
    let n = Node::with_vault();
    let sock = socket_path(&n.home);
    drop(bind(&sock).unwrap()); // the file stays; nothing listens any more
    assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    n.write("v:a", b"alpha");
    assert_eq!(n.cat("v:a"), b"alpha");
    assert_eq!(n.ls("v:"), ["a"]);
    let list = n.ok(["--json", "vault", "list"]).json();
    assert_eq!(list[0]["name"], "v");
    // A wrong passphrase is still refused: the command really unlocked here.
    let bad = n.scratch_file("bad", b"wrong\n");
    n.cmd()
        .passfile(&bad)
        .args(["secret", "ls", "v:"])
        .run()
        .failure(ExitCode::WrongPassphrase);
    // passwd runs locally too, and the new passphrase works.
    let new = n.scratch_file("new", b"new passphrase\n");
    n.ok(["passwd", "--new-passfile", new.to_str().unwrap()]);
    let out = n.cmd().passfile(&new).args(["secret", "cat", "v:a"]).run();
    assert_eq!(out.success().stdout, b"alpha");
    // The client leaves the stale file alone (the daemon replaces it).
    assert!(fs::symlink_metadata(&sock).is_ok());
}

/// A daemon killed while a client connects: the connection lands in its
/// listen queue and is reset when it dies, without the request being read.
/// `status`, `umount` and a forwarded command then say what happened instead
/// of relaying "Connection reset by peer" (`umount` of a dead mount in CI).
#[test]
fn a_daemon_that_dies_before_reading_the_request_is_no_daemon() {
    let n = Node::with_vault();
    let sock = socket_path(&n.home);
    let dying = |ms: u64| {
        let listener = bind(&sock).unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            drop(listener); // never accepted: queued connections are reset
        })
    };
    let t = dying(1500);
    let out = n.ok(["status"]);
    assert!(out.out().contains("not mounted"), "{}", out.out());
    t.join().unwrap();

    let t = dying(1500);
    let mnt = n.scratch().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    n.cmd()
        .args(["umount", mnt.to_str().unwrap()])
        .run()
        .failure(ExitCode::MountFailure)
        .stderr_has("not mounted");
    t.join().unwrap();

    // A forwarded command: the probe and the request both land in the queue.
    let t = dying(1500);
    n.cmd()
        .args(["secret", "ls", "v:"])
        .run()
        .failure(ExitCode::Failure)
        .stderr_has("stopped before it read the command; nothing was done");
    t.join().unwrap();
}

// ---------------------------------------------------------------------------
// A daemon answers: the command is sent to it.

#[test]
fn a_command_is_sent_without_passphrase_options() {
    let n = Node::new(); // not even initialised: only the daemon could answer
    let d = FakeDaemon::start(&n.home, |_| answer(0, b"from the daemon\0\xff", ""));
    let out = n
        .cmd()
        .args(["secret", "--extpass", "echo pw", "cat", "v:x"])
        .run()
        .success();
    assert_eq!(out.stdout, b"from the daemon\0\xff");
    assert_eq!(out.stderr, "");
    let req = d.only_request();
    let home = n.home.to_str().unwrap();
    assert_eq!(
        strs(&req.args),
        ["pkfs", "--home", home, "secret", "cat", "v:x"]
    );
    assert_eq!(
        req.cwd.canonicalize().unwrap(),
        n.scratch().canonicalize().unwrap()
    );
    assert!(req.stdin.is_none() && req.passphrase.is_none() && req.new_passphrase.is_none());
    assert!(!req.stdout_tty, "stdout is a pipe");
    assert!(!req.env_values);
    let env: Vec<&str> = req.test_env.iter().map(|(k, _)| k.as_str()).collect();
    assert!(env.contains(&"PKFS_TEST_ONLY_FAST_KDF"), "{env:?}");
    assert!(
        env.iter().all(|k| k.starts_with("PKFS_TEST_ONLY_")),
        "{env:?}"
    );
    assert!(!n.home.join("root.key").exists());
}

#[test]
fn passfile_from_the_environment_is_not_sent() {
    let n = Node::new();
    let d = FakeDaemon::start(&n.home, |_| answer(0, b"", ""));
    n.cmd()
        .no_passfile()
        .env("PKFS_PASSFILE", &n.passfile)
        .args(["vault", "list"])
        .run()
        .success();
    let req = d.only_request();
    assert!(req.passphrase.is_none());
    assert!(req.test_env.iter().all(|(k, _)| k != "PKFS_PASSFILE"));
    assert!(
        !req.args.iter().any(|a| a.contains("passfile")),
        "{:?}",
        req.args
    );
}

#[test]
fn the_daemons_exit_code_and_error_line_are_relayed() {
    let n = Node::new();
    let _d = FakeDaemon::start(&n.home, |_| {
        answer(13, b"", "pkfs: \"nope\": no such secret or directory\n")
    });
    n.fail(ExitCode::NotFound, ["secret", "cat", "v:nope"])
        .stdout_empty()
        .stderr_has("no such secret");
}

#[test]
fn an_error_response_becomes_one_error_line() {
    let n = Node::new();
    let _d = FakeDaemon::start(&n.home, |_| Response::Error {
        code: 2,
        message: "bad request: malformed message".into(),
    });
    n.fail(ExitCode::Usage, ["vault", "list"])
        .stdout_empty()
        .stderr_has("malformed");
}

#[test]
fn secret_write_sends_standard_input() {
    let n = Node::new();
    let d = FakeDaemon::start(&n.home, |_| answer(0, b"", ""));
    let data = pseudo_random(300_000, 7);
    n.cmd()
        .args(["secret", "write", "v:blob"])
        .stdin(data.clone())
        .run()
        .success()
        .stdout_empty();
    assert_eq!(d.only_request().stdin.as_deref(), Some(&data[..]));
}

#[test]
fn relative_paths_travel_unresolved_with_the_working_directory() {
    let n = Node::new();
    let d = FakeDaemon::start(&n.home, |_| answer(0, b"", ""));
    n.scratch_file("local.txt", b"x");
    n.ok(["secret", "add", "local.txt", "v:"]);
    let req = d.only_request();
    assert_eq!(req.args.last().map(String::as_str), Some("v:"));
    assert!(req.args.iter().any(|a| a == "local.txt"));
    assert!(req.cwd.join("local.txt").is_file());
}

#[test]
fn passwd_sends_the_current_and_the_new_passphrase() {
    let n = Node::new();
    let d = FakeDaemon::start(&n.home, |_| answer(0, b"Passphrase changed.\n", ""));
    let new = n.scratch_file("new", b"the new one\nsecond line ignored\n");
    let out = n.ok(["passwd", "--new-passfile", new.to_str().unwrap()]);
    assert_eq!(out.out(), "Passphrase changed.\n");
    let req = d.only_request();
    assert_eq!(req.passphrase.as_deref(), Some(PASSPHRASE.as_bytes()));
    assert_eq!(req.new_passphrase.as_deref(), Some(&b"the new one"[..]));
    assert!(!req.args.iter().any(|a| a == "--passfile"));
}

#[test]
fn secret_env_runs_the_command_here_with_the_daemons_values() {
    let n = Node::new();
    let d = FakeDaemon::start(&n.home, |req| {
        if !req.env_values {
            return answer(2, b"", "pkfs: expected env_values\n");
        }
        let vars = [
            ("A".to_string(), &b"it's \"quoted\"\n"[..]),
            ("B".to_string(), &b"second"[..]),
        ];
        answer(0, &encode_env_values(&vars), "")
    });
    let out = n.ok([
        "secret",
        "env",
        "v:dir",
        "--",
        "/bin/sh",
        "-c",
        "printf '%s|%s' \"$A\" \"$B\"",
    ]);
    assert_eq!(out.out(), "it's \"quoted\"\n|second");
    let req = d.only_request();
    assert!(req.env_values);
    // Without `--`, the daemon prints the export lines itself.
    let n2 = Node::new();
    let d2 = FakeDaemon::start(&n2.home, |_| answer(0, b"export A='x'\n", ""));
    assert_eq!(n2.ok(["secret", "env", "v:a=A"]).out(), "export A='x'\n");
    assert!(!d2.only_request().env_values);
}

#[test]
fn secret_env_does_not_run_the_command_when_the_daemon_fails() {
    let n = Node::new();
    let _d = FakeDaemon::start(&n.home, |_| {
        answer(7, b"", "pkfs: vault \"v\" does not exist\n")
    });
    let marker = n.scratch().join("ran");
    n.fail(
        ExitCode::VaultUndefined,
        [
            "secret",
            "env",
            "v",
            "--",
            "/usr/bin/touch",
            marker.to_str().unwrap(),
        ],
    );
    assert!(!marker.exists(), "the command must not run");
}

#[test]
fn vault_delete_without_a_terminal_is_sent_unconfirmed() {
    let n = Node::new();
    let d = FakeDaemon::start(&n.home, |_| {
        answer(
            2,
            b"",
            "pkfs: refusing to delete vault \"v\" without confirmation; pass --yes\n",
        )
    });
    n.fail(ExitCode::Usage, ["vault", "delete", "v"]);
    assert!(!d.only_request().args.iter().any(|a| a == "--yes"));
}

#[test]
fn init_is_never_sent_to_the_daemon() {
    let n = Node::new();
    let d = FakeDaemon::start(&n.home, |_| answer(0, b"", ""));
    let _ = n.run(["init"]);
    assert_eq!(d.count(), 0);
}

#[test]
fn arguments_that_are_not_utf8_cannot_be_sent() {
    let n = Node::new();
    let d = FakeDaemon::start(&n.home, |_| answer(0, b"", ""));
    let name = std::ffi::OsStr::from_bytes(b"file-\xff");
    n.cmd()
        .args(["secret", "add"])
        .arg(name)
        .arg("v:")
        .run()
        .failure(ExitCode::Usage)
        .stderr_has("UTF-8");
    assert_eq!(d.count(), 0);
}
