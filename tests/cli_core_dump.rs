//! No key material in core dumps: a `secret cat` that is still printing and a
//! `passwd` that is still waiting for its new passphrase are killed with
//! SIGQUIT under `ulimit -c unlimited`. Whatever core file the kernel writes
//! must hold neither the passphrase nor any 64-bit limb of the root key's
//! primes (pkfs makes itself non-dumpable, so normally there is none).
//!
//! And, as `nobody`, that another process of the same user cannot look inside
//! a running pkfs (its `/proc` files belong to root, its environment is
//! closed): what `PR_SET_DUMPABLE` 0 also gives.
//!
//! A control run first checks that this machine writes core files into the
//! process's directory at all (`kernel.core_pattern` of the plain kind); where
//! it does not, the test says so and checks nothing else.

mod common;

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PrivateKeyParts;

/// Start `cmd` in `dir` with an unlimited core size.
fn spawn_dumpable(cmd: &mut Command, dir: &Path) -> Child {
    cmd.current_dir(dir);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs before exec.
    unsafe {
        cmd.pre_exec(|| {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &unlimited) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// SIGQUIT `child`, reap it, and return the core files it left in `dir`.
fn quit(mut child: Child, dir: &Path) -> Vec<PathBuf> {
    // SAFETY: kill has no memory preconditions; the child is not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGQUIT), "{st:?}");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("core"))
        })
        .collect()
}

/// Does this machine write a core file into a dumpable process's directory?
fn cores_are_written(dir: &Path) -> bool {
    let child = spawn_dumpable(Command::new("sleep").arg("30"), dir);
    std::thread::sleep(Duration::from_millis(200));
    let cores = quit(child, dir);
    for c in &cores {
        std::fs::remove_file(c).unwrap();
    }
    !cores.is_empty()
}

/// Every 64-bit limb of the primes of test root key 0, as stored in memory.
fn prime_limbs() -> Vec<[u8; 8]> {
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&root_key_pem(0)).unwrap();
    let mut limbs = Vec::new();
    for p in key.primes() {
        for w in p.as_words() {
            limbs.push(w.to_le_bytes());
        }
    }
    assert!(limbs.len() >= 64, "two 2048-bit primes");
    limbs
}

/// What of the key material `core` holds (empty: nothing).
fn secrets_in(core: &Path) -> Vec<String> {
    let bytes = std::fs::read(core).unwrap();
    let mut found = Vec::new();
    if contains(&bytes, PASSPHRASE.as_bytes()) {
        found.push("the passphrase".to_string());
    }
    let limbs = prime_limbs();
    let hits = limbs.iter().filter(|l| contains(&bytes, &l[..])).count();
    if hits > 0 {
        found.push(format!("{hits} of {} prime limbs", limbs.len()));
    }
    found
}

fn pkfs(n: &Node) -> Command {
    let mut c = Command::new(BIN);
    clean_env(&mut c);
    c.env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .arg("--home")
        .arg(&n.home)
        .arg("--passfile")
        .arg(&n.passfile)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Wait until `pid` sleeps in `wchan` (the kernel function it waits in), or
/// 5 s at most (a kernel may hide wait channels; by then it waits anyway).
fn wait_in(pid: u32, wchan: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let now = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if now.contains(wchan) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_long_secret_cat_and_passwd_dump_no_key_material() {
    let n = Node::with_vault();
    let dumps = n.scratch().join("dumps");
    std::fs::create_dir(&dumps).unwrap();
    if !cores_are_written(&dumps) {
        eprintln!("this machine writes no core files into the process's directory; skipped");
        return;
    }
    n.write("v:big", pseudo_random(1 << 20, 7));

    // `secret cat` printing into a pipe nobody reads any more: it holds the
    // unlocked node while it waits.
    let mut cat = spawn_dumpable(
        pkfs(&n)
            .args(["secret", "cat", "v:big"])
            .stdout(Stdio::piped()),
        &dumps,
    );
    let mut first = vec![0u8; 4096];
    cat.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    wait_in(cat.id(), "pipe_write");
    let cores = quit(cat, &dumps);
    for core in &cores {
        let found = secrets_in(core);
        assert!(found.is_empty(), "secret cat: {core:?} holds {found:?}");
    }

    // `passwd` waiting to open the new passphrase's FIFO, the node unlocked.
    let fifo = n.scratch().join("new-pass");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo reads it only.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let passwd = spawn_dumpable(
        pkfs(&n)
            .arg("passwd")
            .arg("--new-passfile")
            .arg(&fifo)
            .stdout(Stdio::null()),
        &dumps,
    );
    wait_in(passwd.id(), "wait_for_partner");
    let cores = quit(passwd, &dumps);
    for core in &cores {
        let found = secrets_in(core);
        assert!(found.is_empty(), "passwd: {core:?} holds {found:?}");
    }
    // The node is unchanged and still opens with the old passphrase.
    assert_eq!(n.cat("v:big").len(), 1 << 20);
}

use common::users::as_nobody;

#[test]
fn another_process_of_the_same_user_cannot_look_inside_pkfs() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root (to become nobody); skipped");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("pkfs-ptrace-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = dir.path().join("pkfs");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    // `init` waiting for its --extpass helper: a pkfs process of user nobody
    // that is about to hold a passphrase.
    let mut child = as_nobody(
        Command::new(&bin)
            .env_clear()
            .env("PKFS_TEST_ONLY_FAST_KDF", "1")
            .arg("--home")
            .arg(dir.path().join("home"))
            .args(["--extpass", "sleep 8; echo pw", "init"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .unwrap();
    let pid = child.id();
    // Wait until it runs pkfs (not the pre-exec child any more).
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{pid}/exe")).ok() != Some(bin.clone()) {
        assert!(Instant::now() < deadline, "pkfs did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    // Non-dumpable: the kernel gives its /proc files to root.
    let owner = std::fs::metadata(format!("/proc/{pid}/mem")).unwrap().uid();
    // Another process of the same user may not read its memory or environment.
    let peek = as_nobody(
        Command::new("cat")
            .arg(format!("/proc/{pid}/environ"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .output()
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(owner, 0, "pkfs's /proc files belong to its user: dumpable");
    assert!(
        !peek.status.success() && peek.stdout.is_empty(),
        "the same user read pkfs's environment: {peek:?}"
    );
}
