//! Commands and the mount daemon.
//!
//! While `pkfs mount` runs, the daemon owns the home. The client side
//! ([`forward`]) sends vault, secret, version, key, passwd, gc and fsck commands over
//! the control socket; the daemon side ([`execute`]) runs them with the same
//! command functions, against its unlocked node, with their output captured
//! (see [`write_out`]) and sent back.
//!
//! What crosses the socket (see `pkfs::daemon::protocol`): the argv without
//! `--passfile`/`--extpass`, the working directory, whether stdout is a
//! terminal, the `PKFS_TEST_ONLY_*` variables, and only what a command needs of
//! the client: its input, read here and streamed after the request (`secret
//! write`: standard input; `secret add FILE`: the file; `secret import DIR`:
//! the tree, see `secret_io::encode_tree`), its passphrases (`passwd`).
//! The daemon never prompts, never reads a passphrase file, never opens a
//! local path a command names, and never starts a user's command: `secret
//! env -- CMD` fetches the variables and runs CMD here. Likewise `secret edit`
//! runs the editor here between a `secret cat` and a `secret write` it sends
//! (`secret_verbs::steps`), and `--clip` hands what the daemon printed to the
//! clipboard here.

use std::cell::RefCell;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use anyhow::anyhow;
use clap::Parser;
use parking_lot::Mutex;
use pkfs::args::{Command, KeyCmd, SecretCmd, VaultCmd};
use pkfs::daemon::client;
use pkfs::daemon::protocol::{decode_env_values, CommandRequest, Request, Response};
use pkfs::vault::Node;
use pkfs::Error;
use zeroize::Zeroizing;

use super::config::{Config, PassSource, ENV_TEST_PREFIX};
use super::secret_verbs::clip::{self, Tool};
use super::{cmd_keygen, cmd_vault, pass, secret_io, Cli};

// ---------------------------------------------------------------------------
// Output: the real stdout/stderr, or a capture for the daemon.

struct Capture {
    stdout: Zeroizing<Vec<u8>>,
    stderr: Zeroizing<Vec<u8>>,
    stdout_tty: bool,
}

thread_local! {
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// Append without leaving copies behind: a full buffer is replaced by a bigger
/// one and the old one is wiped when dropped.
pub(crate) fn append(buf: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    if buf.capacity() - buf.len() < bytes.len() {
        let want = (buf.len() + bytes.len()).max(buf.capacity() * 2).max(4096);
        let mut bigger = Zeroizing::new(Vec::with_capacity(want));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(bytes);
}

/// Write to standard output, or to this thread's capture.
pub(crate) fn write_out(bytes: &[u8]) -> std::io::Result<()> {
    let captured = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(cap) => {
            append(&mut cap.stdout, bytes);
            true
        }
        None => false,
    });
    if captured {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Write to standard error, or to this thread's capture.
pub(crate) fn write_err(bytes: &[u8]) {
    let captured = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(cap) => {
            append(&mut cap.stderr, bytes);
            true
        }
        None => false,
    });
    if !captured {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes);
        let _ = err.flush();
    }
}

/// Is the (client's) standard output a terminal?
pub(crate) fn stdout_is_terminal() -> bool {
    CAPTURE
        .with(|c| c.borrow().as_ref().map(|cap| cap.stdout_tty))
        .unwrap_or_else(|| std::io::stdout().is_terminal())
}

/// Run `f` with this thread's output captured; returns (result, stdout, stderr).
pub(crate) fn captured<R>(stdout_tty: bool, f: impl FnOnce() -> R) -> (R, Vec<u8>, Vec<u8>) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CAPTURE.with(|c| c.borrow_mut().take());
        }
    }
    CAPTURE.with(|c| {
        *c.borrow_mut() = Some(Capture {
            stdout: Zeroizing::new(Vec::new()),
            stderr: Zeroizing::new(Vec::new()),
            stdout_tty,
        })
    });
    let reset = Reset;
    let r = f();
    let cap = CAPTURE.with(|c| c.borrow_mut().take());
    drop(reset);
    let (mut out, mut err) = match cap {
        Some(c) => (c.stdout, c.stderr),
        None => Default::default(),
    };
    (r, std::mem::take(&mut *out), std::mem::take(&mut *err))
}

// ---------------------------------------------------------------------------
// The daemon side.

/// The exit code of a command's error, as `main` computes it.
fn exit_code(err: &anyhow::Error) -> i32 {
    match err.downcast_ref::<Error>() {
        Some(e) => e.exit_code() as i32,
        None => pkfs::ExitCode::Failure as i32,
    }
}

/// Run one client's command against the daemon's node, output captured.
/// `init`, `mount`, `umount` and `status` are refused (exit code 2).
pub fn execute(node: Arc<Mutex<Node>>, mut req: CommandRequest) -> Response {
    let usage = pkfs::ExitCode::Usage as i32;
    let cli = match Cli::try_parse_from(&req.args) {
        Ok(c) => c,
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            return Response::Error {
                code: usage,
                message: first.trim_start_matches("error: ").to_string(),
            };
        }
    };
    let refused = match &cli.command {
        Command::Init { .. } => Some("init"),
        Command::Unseal => Some("unseal"),
        Command::Seal => Some("seal"),
        Command::Mount(_) => Some("mount"),
        Command::Umount { .. } => Some("umount"),
        Command::Status => Some("status"),
        _ => None,
    };
    if let Some(name) = refused {
        return Response::Error {
            code: usage,
            message: format!("the pkfs daemon does not run `pkfs {name}`"),
        };
    }
    let stdout_tty = req.stdout_tty;
    let cfg = Config::for_daemon(&cli.global, node, &mut req);
    drop(req);
    let (result, stdout, mut stderr) = captured(stdout_tty, || super::dispatch(&cfg, cli.command));
    let code = match result {
        Ok(()) => 0,
        Err(err) => {
            if !matches!(err.downcast_ref(), Some(Error::NoMatch)) {
                stderr.extend_from_slice(format!("pkfs: {}\n", super::error_line(&err)).as_bytes());
            }
            exit_code(&err)
        }
    };
    Response::Command {
        code,
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------
// The client side.

/// Is `cmd` run by the daemon when one runs?
pub(super) fn through_daemon(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Vault(_)
            | Command::Secret(_)
            | Command::Version(_)
            | Command::Key(KeyCmd::RotateRoot)
            | Command::Passwd {
                recovery: false,
                ..
            }
            | Command::Gc { .. }
            | Command::Fsck { .. }
            | Command::Quarantine(_)
    )
}

/// Have the daemon run `cmd`; print what it printed and exit with its code.
/// `probe` (the connection that showed a daemon runs) is closed first: what the
/// command needs of the user is gathered before the request connection opens,
/// so the daemon's request timeout never runs while someone types.
///
/// With `clip`, what the command prints goes to the clipboard instead (see
/// `secret_verbs::clip`).
pub(super) fn forward(
    cfg: &Config,
    cmd: &Command,
    probe: UnixStream,
    clip: Option<Tool>,
) -> anyhow::Result<()> {
    drop(probe);
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    let mut args = client_args(std::env::args_os())?;
    let mut req_stdin = None;
    let (mut pass_now, mut pass_new) = (None, None);
    let mut exec_command = None;
    match cmd {
        Command::Passwd { new_passfile, .. } => {
            // Both are asked for here, in the order a local `passwd` asks.
            pass_now = Some(pass::read(&cfg.pass, "Passphrase: ", false)?);
            let src = match new_passfile {
                Some(p) => PassSource::File(p.clone()),
                None => PassSource::Terminal,
            };
            pass_new = Some(pass::read(&src, "New passphrase: ", true)?);
        }
        // The client reads what the command names, with its own descriptors,
        // /proc and directory, before it connects: the daemon never opens a
        // path for a client, nor waits on the client's sources.
        Command::Secret(SecretCmd::Write { .. }) => {
            let data = read_all(&mut std::io::stdin().lock()).map_err(|e| Error::io("stdin", e))?;
            req_stdin = Some(data);
        }
        Command::Secret(SecretCmd::Add { file, .. }) => {
            req_stdin = Some(read_file(file)?);
        }
        Command::Secret(SecretCmd::Import { dir, .. }) => {
            let tree = secret_io::read_tree(dir, cfg.quiet)?;
            req_stdin = Some(secret_io::encode_tree(&tree));
        }
        Command::Secret(SecretCmd::Env {
            command,
            keep_pkfs_env,
            ..
        }) if !command.is_empty() => {
            exec_command = Some((command.clone(), *keep_pkfs_env));
        }
        Command::Vault(VaultCmd::Delete { name, yes: false }) if std::io::stdin().is_terminal() => {
            // The daemon cannot ask; without a terminal it refuses as a local
            // run would.
            cmd_vault::confirm_delete(cfg, name)?;
            insert_option(&mut args, "--yes");
        }
        Command::Vault(VaultCmd::Shred {
            name,
            yes,
            backup,
            backup_to,
            ..
        }) => {
            if !*yes && std::io::stdin().is_terminal() {
                cmd_vault::confirm(cfg, name, "Shred", "destroying every key of it")?;
                insert_option(&mut args, "--yes");
            }
            if let (Some(file), Some(pubkey), true) =
                (backup, backup_to, *yes || std::io::stdin().is_terminal())
            {
                let gens = cmd_keygen::shred_backup_first(cfg, &args, file, pubkey)?;
                insert_option(&mut args, &format!("--backup-written={gens}"));
            }
        }
        _ => {}
    }
    let mut req = CommandRequest::new(args, cwd);
    let take = |z: Option<Zeroizing<Vec<u8>>>| z.map(|mut z| std::mem::take(&mut *z));
    req.input_follows = req_stdin.is_some();
    req.passphrase = take(pass_now);
    req.new_passphrase = take(pass_new);
    req.stdout_tty = std::io::stdout().is_terminal();
    req.env_values = exec_command.is_some();
    req.test_env = test_env();
    let stream = client::connect(&cfg.home).ok_or_else(|| {
        anyhow!("the pkfs daemon stopped before the command could be sent; nothing was done")
    })?;
    // Output that comes ahead of the answer is printed as it arrives, except
    // the variables of `secret env -- CMD`, which are kept for CMD.
    let mut early = Zeroizing::new(Vec::new());
    let collect = exec_command.is_some() || clip.is_some();
    let mut out = |piece: &[u8]| {
        if collect {
            append(&mut early, piece);
            Ok(())
        } else {
            write_out(piece)
        }
    };
    let input = req_stdin.as_deref().map(|d| &d[..]);
    let resp =
        client::call_streaming(&stream, &Request::Command(req), input, &mut out).map_err(|e| {
            if client::daemon_gone(&e) {
                anyhow!("the pkfs daemon stopped before it read the command; nothing was done")
            } else {
                e.into()
            }
        })?;
    drop(stream);
    drop(req_stdin);
    match &resp {
        Response::Command {
            code: 0,
            stdout,
            stderr,
        } if exec_command.is_some() => {
            write_err(stderr);
            append(&mut early, stdout);
            let vars = decode_env_values(&early)
                .map_err(|e| anyhow!("bad variables from the pkfs daemon: {e}"))?;
            let (command, keep) = exec_command.unwrap_or_default();
            Err(secret_io::exec_with(&vars, &command, keep).into())
        }
        Response::Command {
            code: 0,
            stdout,
            stderr,
        } if clip.is_some() => {
            write_err(stderr);
            append(&mut early, stdout);
            match clip {
                Some(tool) => Ok(clip::copy_output(tool, &early, cfg.quiet)?),
                None => Ok(()),
            }
        }
        Response::Command {
            code,
            stdout,
            stderr,
        } => {
            let written = write_out(stdout);
            write_err(stderr);
            written.map_err(|e| Error::io("stdout", e))?;
            if *code != 0 {
                std::process::exit(*code);
            }
            Ok(())
        }
        Response::Error { code, message } => {
            write_err(format!("pkfs: {message}\n").as_bytes());
            std::process::exit(*code)
        }
        other => Err(anyhow!("unexpected answer from the pkfs daemon: {other:?}")),
    }
}

/// The `PKFS_TEST_ONLY_*` variables, which a request carries.
pub(crate) fn test_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(ENV_TEST_PREFIX))
        .collect()
}

/// Test-only: a smaller limit for [`read_all`], in bytes.
const ENV_TEST_MAX_INPUT: &str = "PKFS_TEST_ONLY_MAX_INPUT";

/// The largest secret a command stores from an input (`MAX_INPUT`, 1 GiB).
pub(crate) fn input_limit() -> u64 {
    std::env::var(ENV_TEST_MAX_INPUT)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(pkfs::daemon::protocol::MAX_INPUT)
}

/// Read `r` to the end into a zeroizing buffer that grows without leaving
/// copies behind. An input longer than the daemon takes (`MAX_INPUT`, 1 GiB)
/// is refused once it passes that, mounted or not: an endless one
/// (`/dev/zero`) ends with an error, not with the memory exhausted.
pub(crate) fn read_all(r: &mut dyn Read) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let max = input_limit();
    let mut data = Zeroizing::new(Vec::new());
    let mut chunk = Zeroizing::new(vec![0u8; 64 * 1024]);
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return Ok(data),
            Ok(n) if (data.len() + n) as u64 > max => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    format!(
                        "longer than {} MiB, the largest secret a command stores (copy a \
                         larger file through the mount)",
                        max >> 20
                    ),
                ))
            }
            Ok(n) => append(&mut data, &chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The whole of a local file a command names, read by this process (so
/// `/dev/stdin`, `/dev/fd/N`, `/proc/self/...` and FIFOs are this process's).
pub(crate) fn read_file(file: &std::path::Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    std::fs::File::open(file)
        .and_then(|mut f| read_all(&mut f))
        .map_err(|e| Error::io(file, e))
}

/// The argv to send: `"pkfs"` first, every argument as UTF-8, and no
/// `--passfile`/`--extpass` (up to a `--`, after which arguments are data).
fn client_args(argv: impl Iterator<Item = std::ffi::OsString>) -> Result<Vec<String>, Error> {
    let mut out = vec!["pkfs".to_string()];
    let mut rest = false;
    let mut skip_value = false;
    for a in argv.skip(1) {
        let a = a.into_string().map_err(|a| {
            Error::Usage(format!(
                "{a:?}: arguments that are not UTF-8 cannot be sent to the pkfs daemon"
            ))
        })?;
        if skip_value {
            skip_value = false;
        } else if rest {
            out.push(a);
        } else if a == "--" {
            rest = true;
            out.push(a);
        } else if a == "--passfile" || a == "--extpass" {
            skip_value = true;
        } else if !(a.starts_with("--passfile=") || a.starts_with("--extpass=")) {
            out.push(a);
        }
    }
    Ok(out)
}

/// Add an option to a parsed command line: before a `--`, else at the end.
pub(super) fn insert_option(args: &mut Vec<String>, opt: &str) {
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.insert(at, opt.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        client_args(s.iter().map(std::ffi::OsString::from)).unwrap()
    }

    #[test]
    fn passphrase_options_are_not_forwarded() {
        assert_eq!(
            argv(&[
                "/usr/bin/pkfs",
                "--passfile",
                "/p",
                "--home",
                "/h",
                "--extpass=cat x",
                "secret",
                "--passfile=/q",
                "cat",
                "--extpass",
                "echo pw",
                "v:a"
            ]),
            ["pkfs", "--home", "/h", "secret", "cat", "v:a"]
        );
        // After `--`, arguments belong to the user's command.
        assert_eq!(
            argv(&["pkfs", "secret", "env", "v", "--", "cmd", "--passfile", "x"]),
            ["pkfs", "secret", "env", "v", "--", "cmd", "--passfile", "x"]
        );
    }

    #[test]
    fn options_go_before_a_double_dash() {
        let mut a = argv(&["pkfs", "vault", "delete", "--", "-v"]);
        insert_option(&mut a, "--yes");
        assert_eq!(a, ["pkfs", "vault", "delete", "--yes", "--", "-v"]);
        let mut a = argv(&["pkfs", "vault", "delete", "v"]);
        insert_option(&mut a, "--yes");
        assert_eq!(a, ["pkfs", "vault", "delete", "v", "--yes"]);
        assert!(Cli::try_parse_from(&a).is_ok());
    }

    #[test]
    fn capture_collects_output_and_resets() {
        let (r, out, err) = captured(true, || {
            assert!(stdout_is_terminal());
            write_out(b"one ").unwrap();
            write_out(&vec![b'x'; 10_000]).unwrap();
            write_err(b"warn\n");
            7
        });
        assert_eq!(r, 7);
        assert_eq!(out.len(), 4 + 10_000);
        assert!(out.starts_with(b"one x"));
        assert_eq!(err, b"warn\n");
        assert!(CAPTURE.with(|c| c.borrow().is_none()));
        // A panic inside does not leave the capture set.
        let _ = std::panic::catch_unwind(|| captured(false, || panic!("boom")));
        assert!(CAPTURE.with(|c| c.borrow().is_none()));
    }

    // -- execute(), the daemon side, against a real node. --------------------

    use pkfs::crypto::kdf::Argon2Params;
    use pkfs::crypto::rsa::RootKeypair;
    use pkfs::vault::protector::open_key_file;
    use pkfs::vault::Passphrase;

    struct Daemon {
        tmp: tempfile::TempDir,
        node: Arc<Mutex<Node>>,
    }

    fn pass(p: &str) -> Box<Passphrase> {
        let bytes = Zeroizing::new(p.as_bytes().to_vec());
        Box::new(Passphrase::new(bytes, Argon2Params::TEST_ONLY))
    }

    /// A node (passphrase "pw") with vault `v`, as a daemon holds it.
    fn daemon() -> Daemon {
        static PEM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let pem = PEM.get_or_init(|| RootKeypair::generate().unwrap().to_pkcs8_pem().to_string());
        let tmp = tempfile::tempdir().unwrap();
        let root = RootKeypair::from_pkcs8_pem(pem).unwrap();
        let mut node = Node::init(&tmp.path().join("home"), pass("pw"), root).unwrap();
        node.create_vault("v").unwrap();
        std::fs::create_dir(tmp.path().join("cwd")).unwrap();
        let node = Arc::new(Mutex::new(node));
        Daemon { tmp, node }
    }

    impl Daemon {
        fn req(&self, args: &[&str]) -> CommandRequest {
            let mut argv = vec!["pkfs".to_string()];
            argv.extend(args.iter().map(|a| a.to_string()));
            let mut r = CommandRequest::new(argv, self.tmp.path().join("cwd"));
            r.test_env = vec![("PKFS_TEST_ONLY_FAST_KDF".into(), "1".into())];
            r
        }

        fn run(&self, req: CommandRequest) -> (i32, Vec<u8>, String) {
            match execute(self.node.clone(), req) {
                Response::Command {
                    code,
                    ref stdout,
                    ref stderr,
                } => (code, stdout.clone(), String::from_utf8_lossy(stderr).into()),
                other => panic!("{other:?}"),
            }
        }

        fn ok(&self, args: &[&str]) -> Vec<u8> {
            let (code, out, err) = self.run(self.req(args));
            assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
            out
        }

        /// Exit code and the one error line.
        fn fails(&self, req: CommandRequest) -> (i32, String) {
            let (code, out, err) = self.run(req);
            assert!(code != 0 && out.is_empty(), "{code} {out:?}");
            assert!(
                err.starts_with("pkfs: ") && err.lines().count() == 1,
                "{err:?}"
            );
            (code, err)
        }
    }

    fn refused(resp: Response) -> String {
        match resp {
            Response::Error {
                code: 2,
                ref message,
            } => message.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn execute_runs_commands_with_captured_output() {
        let d = daemon();
        let mut w = d.req(&["secret", "write", "v:a\x1bb"]);
        w.stdin = Some(b"s3cret\0\xff".to_vec());
        assert_eq!(d.run(w).0, 0);
        assert_eq!(d.ok(&["secret", "cat", "v:a\x1bb"]), b"s3cret\0\xff");
        assert_eq!(d.ok(&["secret", "ls", "v:"]), b"a\x1bb\n");
        let mut tty = d.req(&["secret", "ls", "v:"]);
        tty.stdout_tty = true;
        assert_eq!(d.run(tty).1, b"a\\u{1b}b\n");
        let (code, err) = d.fails(d.req(&["secret", "cat", "v:nope"]));
        assert_eq!(code, 13, "{err}");
        // Without input, a write fails rather than read the daemon's stdin.
        assert_eq!(d.fails(d.req(&["secret", "write", "v:b"])).0, 2);
    }

    #[test]
    fn execute_refuses_what_the_daemon_does_not_run() {
        let d = daemon();
        for args in [&["init"][..], &["status"], &["umount"], &["mount", "/mnt"]] {
            let msg = refused(execute(d.node.clone(), d.req(args)));
            assert!(msg.contains("does not run"), "{msg}");
        }
        refused(execute(d.node.clone(), d.req(&["--no-such-flag", "gc"])));
        // No terminal to confirm on, and no command is ever started.
        let (code, err) = d.fails(d.req(&["vault", "delete", "v"]));
        assert!(code == 2 && err.contains("--yes"), "{err}");
        let (code, err) = d.fails(d.req(&["secret", "env", "v", "--", "/bin/true"]));
        assert!(code == 2 && err.contains("does not run commands"), "{err}");
    }

    #[test]
    fn execute_never_opens_the_file_a_client_names() {
        let d = daemon();
        std::fs::write(d.tmp.path().join("cwd/f.txt"), b"on the daemon's disk").unwrap();
        // Without the bytes the client read, nothing is stored.
        let (code, err) = d.fails(d.req(&["secret", "add", "f.txt", "v:"]));
        assert!(code == 2 && err.contains("sent no input"), "{err}");
        let mut add = d.req(&["secret", "add", "f.txt", "v:"]);
        add.stdin = Some(b"what the client read".to_vec());
        assert_eq!(d.run(add).0, 0);
        assert_eq!(d.ok(&["secret", "cat", "v:f.txt"]), b"what the client read");
    }

    #[test]
    fn execute_hands_env_values_to_the_client() {
        let d = daemon();
        let mut w = d.req(&["secret", "write", "v:K"]);
        w.stdin = Some(b"it's".to_vec());
        assert_eq!(d.run(w).0, 0);
        let mut r = d.req(&["secret", "env", "v:K=NAME", "--", "cmd"]);
        r.env_values = true;
        let (code, out, _) = d.run(r);
        assert_eq!(code, 0);
        let vars = decode_env_values(&out).unwrap();
        assert_eq!((vars[0].0.as_str(), &vars[0].1[..]), ("NAME", &b"it's"[..]));
        assert_eq!(d.ok(&["secret", "env", "v:K"]), b"export K='it'\\''s'\n");
    }

    #[test]
    fn execute_passwd_verifies_the_current_passphrase() {
        let d = daemon();
        let root_key = d.tmp.path().join("home/root.key");
        let with = |now: Option<&str>, new: Option<&str>| {
            let mut r = d.req(&["passwd"]);
            r.passphrase = now.map(|p| p.as_bytes().to_vec());
            r.new_passphrase = new.map(|p| p.as_bytes().to_vec());
            r
        };
        assert_eq!(d.fails(with(None, Some("new"))).0, 2);
        assert_eq!(d.fails(with(Some("wrong"), Some("new"))).0, 3);
        assert_eq!(d.fails(with(Some("pw"), None)).0, 2);
        let file = std::fs::read(&root_key).unwrap();
        assert!(
            open_key_file(&*pass("pw"), &file).is_ok(),
            "unchanged so far"
        );
        assert_eq!(d.run(with(Some("pw"), Some("new"))).0, 0);
        let file = std::fs::read(&root_key).unwrap();
        assert!(open_key_file(&*pass("new"), &file).is_ok());
        assert!(open_key_file(&*pass("pw"), &file).is_err());
    }
}
