//! `pkfs mount`, `umount`, `status`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pkfs::args::MountArgs;
use pkfs::daemon::mount::{self, Ctl, MountPlan};
use pkfs::daemon::protocol::{Request, Response};
use pkfs::daemon::{client, control, unseal};
use pkfs::fs::gate::Gate;
use pkfs::fs::{FsCore, MountConfig};
use pkfs::Error;
use serde_json::json;

use super::config::Config;
use super::{unlock_owned, Out};

/// `64M`, `512K`, `1G`, or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, Error> {
    let bad = || Error::Usage(format!("{s:?} is not a size (examples: 64M, 512K, 1G)"));
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(bad()),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or_else(bad)
}

/// A duration (see [`pkfs::args::parse_duration`]).
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    pkfs::args::parse_duration(s).map_err(Error::Usage)
}

/// The validated mount request.
fn plan(cfg: &Config, a: &MountArgs) -> Result<MountPlan, Error> {
    let mut ro = a.ro;
    let mut allow_other = a.allow_other;
    let mut extra = Vec::new();
    for o in &a.options {
        match o.as_str() {
            "" => {}
            "ro" => ro = true,
            "rw" => ro = false,
            "allow_other" => allow_other = true,
            // Generic options mount(8) passes along, or ones pkfs always sets.
            "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "_netdev" | "nofail"
            | "dev" | "suid" | "exec" | "async" => {}
            o if o.starts_with("x-")
                || o.starts_with("comment=")
                || o.starts_with("fsname=")
                || o.starts_with("subtype=") => {}
            "nodev"
            | "nosuid"
            | "noexec"
            | "noatime"
            | "sync"
            | "dirsync"
            | "default_permissions" => extra.push(o.to_string()),
            other => {
                return Err(Error::Usage(format!("unknown mount option {other:?}")));
            }
        }
    }
    let mountpoint = std::path::absolute(&a.dir).map_err(|e| Error::io(&a.dir, e))?;
    Ok(MountPlan {
        mountpoint,
        home: cfg.home.clone(),
        fs: MountConfig {
            ro,
            cache_bytes: parse_size(&a.cache_size)?,
            commit_delay: parse_duration(&a.commit_delay)?,
            ttl: Duration::from_secs(1),
        },
        allow_other,
        options: extra,
    })
}

pub fn mount(cfg: &Config, a: MountArgs) -> anyhow::Result<()> {
    let plan = plan(cfg, &a)?;
    if let Some(s) = client::connect(&cfg.home) {
        // Where and by which process, from the daemon's status.
        let at = match client::call(&s, &Request::Status) {
            Ok(Response::Status(ref j)) => serde_json::from_str::<serde_json::Value>(j)
                .ok()
                .and_then(|v| {
                    let mnt = v["mountpoint"].as_str()?.to_string();
                    Some(format!(" at {mnt:?} (pid {})", v["pid"].as_u64()?))
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        return Err(Error::Mount(format!("the home {:?} is already mounted{at}", cfg.home)).into());
    }
    mount::check_mountpoint(&plan.mountpoint)?;
    let keys = super::cmd_keys::plan(&a)?;
    let opts = super::cmd_seal::SealOpts {
        idle: a.idle.as_deref().map(parse_duration).transpose()?,
        group: a
            .unseal_group
            .as_deref()
            .map(unseal::group_id)
            .transpose()?,
    };
    // A node without a passphrase slot mounts sealed unless its shares (or
    // a key file) are given; `--sealed` asks for it.
    let slots = pkfs::vault::slots::change::read(&cfg.home)?;
    let has_pass = slots.iter().any(|s| s.id == pkfs::vault::Passphrase::ID);
    if a.sealed && pkfs::vault::slots::share_slots(&slots).is_empty() {
        return Err(Error::Usage(
            "this node has no shares slot, so a sealed mount could never be unsealed \
             (add one with `pkfs key add shares`)"
                .into(),
        )
        .into());
    }
    let opener_given = !cfg.share_files.is_empty() || cfg.key_file.is_some();
    let node = if a.sealed || (!has_pass && !opener_given) {
        None
    } else {
        Some(unlock_owned(cfg)?)
    };
    if a.foreground {
        return serve(cfg, node, plan, keys, None, opts);
    }
    // Daemonize: the parent returns once the child reports the mount live.
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors; the result is checked.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating a pipe");
    }
    // SAFETY: no other threads exist yet in this process.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("fork"),
        0 => {
            // SAFETY: fds[0] is ours to close; setsid detaches from the terminal.
            unsafe {
                libc::close(fds[0]);
                libc::setsid();
            }
            // SAFETY: fds[1] is an open descriptor owned by nobody else.
            let ready = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
            let res = serve(cfg, node, plan, keys, Some(ready), opts);
            std::process::exit(if res.is_ok() { 0 } else { 1 });
        }
        _ => {
            drop(node);
            // SAFETY: fds[1] belongs to the child now.
            unsafe { libc::close(fds[1]) };
            // SAFETY: fds[0] is an open descriptor owned by nobody else.
            let mut r = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
            let mut msg = String::new();
            let _ = r.read_to_string(&mut msg);
            match msg.strip_prefix("OK") {
                Some(_) => Ok(()),
                None if msg.is_empty() => {
                    Err(Error::Mount("the daemon exited early".into()).into())
                }
                None => {
                    let msg = msg.trim();
                    let inner = msg.strip_prefix("mount failed: ").unwrap_or(msg);
                    Err(Error::Mount(inner.to_string()).into())
                }
            }
        }
    }
}

/// Log to `HOME/pkfs.log` (0600) in the background; stdio goes to /dev/null.
fn daemon_stdio(home: &Path) -> anyhow::Result<()> {
    let log = home.join("pkfs.log");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let null = std::fs::File::open("/dev/null")?;
    use std::os::fd::AsRawFd;
    // SAFETY: duplicating open descriptors onto 0, 1, 2.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(f.as_raw_fd(), 1);
        libc::dup2(f.as_raw_fd(), 2);
    }
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;

fn serve(
    cfg: &Config,
    mut node: Option<pkfs::vault::Node>,
    plan: MountPlan,
    keys: super::cmd_keys::KeysPlan,
    ready: Option<std::fs::File>,
    opts: super::cmd_seal::SealOpts,
) -> anyhow::Result<()> {
    // Keys are in memory from here on: no core dumps, no ptrace by others.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // fork(2) drops memory locks: lock the key pages again in the daemon.
    pkfs::crypto::secmem::relock_after_fork();
    pkfs::fs::cache::one_malloc_arena();
    let report = |ready: &Option<std::fs::File>, msg: &str| {
        if let Some(mut f) = ready.as_ref() {
            let _ = f.write_all(msg.as_bytes());
        }
    };
    let keyring = match node.as_mut() {
        Some(node) => super::cmd_keys::daemon_keyring(node),
        None => Arc::new(pkfs::keys::ring::Keyring::sealed(&cfg.home)),
    };
    let mut mounted = match mount::mount(node, plan.clone()) {
        Ok(m) => m,
        Err(e) => {
            report(&ready, &format!("{e}"));
            return Err(e.into());
        }
    };
    mounted.idle = opts.idle;
    let gate = mounted.gate.clone();
    if let Some(core) = gate.core() {
        super::cmd_keys::hold(&keyring, core.node.clone());
    }
    super::cmd_keys::follow_gate(&gate, keyring.clone());
    let (tx, rx) = mpsc::channel::<Ctl>();
    let unseal_listener = match unseal::bind(&cfg.home) {
        Ok(l) => l,
        Err(e) => {
            report(&ready, &format!("unseal socket: {e}"));
            return Err(e.into());
        }
    };
    let unsealer = super::cmd_seal::unsealer(cfg, &plan, gate.clone(), tx.clone(), opts.group)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sock = client::socket_path(&cfg.home);
    let listener = match control::bind(&sock) {
        Ok(l) => l,
        Err(e) => {
            report(&ready, &format!("control socket {}: {e}", sock.display()));
            return Err(e.into());
        }
    };
    let handler = make_handler(gate, tx, plan.mountpoint.clone(), unsealer.clone());
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || control::serve(listener, handler, stop))
    };
    let key_service = match super::cmd_keys::start(&cfg.home, &keys, keyring, stop.clone()) {
        Ok(k) => k,
        Err(e) => {
            report(&ready, &format!("key service: {e}"));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = std::fs::remove_file(&sock);
            let _ = server.join();
            drop(mounted);
            return Err(e.into());
        }
    };
    let unseal_server = {
        let stop = stop.clone();
        std::thread::spawn(move || unseal::serve(unseal_listener, unsealer, stop))
    };
    if ready.is_some() {
        daemon_stdio(&cfg.home)?;
    }
    tracing::info!(
        "mounted {} at {}",
        cfg.home.display(),
        plan.mountpoint.display()
    );
    report(&ready, "OK");
    drop(ready);
    mount::sd_notify("READY=1");
    let res = mounted.run(rx);
    mount::sd_notify("STOPPING=1");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = std::fs::remove_file(&sock);
    let _ = server.join();
    key_service.finish();
    let _ = unseal_server.join();
    tracing::info!("unmounted {}", plan.mountpoint.display());
    res.map_err(Into::into)
}

/// Commands that only read (no re-sync of the mount needed afterwards). The
/// argv is parsed as the daemon will parse it, so global options in any place
/// do not matter; anything unparsable counts as a change (the safe side).
fn read_only(args: &[String]) -> bool {
    use clap::Parser;
    use pkfs::args::{Command, QuarantineCmd, SecretCmd, VaultCmd, VersionCmd};
    match super::Cli::try_parse_from(args).map(|c| c.command) {
        Ok(Command::Secret(s)) => matches!(
            s,
            SecretCmd::Cat { .. }
                | SecretCmd::Ls { .. }
                | SecretCmd::Stat { .. }
                | SecretCmd::Env { .. }
        ),
        Ok(Command::Vault(v)) => matches!(v, VaultCmd::List | VaultCmd::Stat { .. }),
        Ok(Command::Version(v)) => matches!(
            v,
            VersionCmd::Log { .. } | VersionCmd::Diff { .. } | VersionCmd::Show { .. }
        ),
        // A check only reads; --restore rewrites files and may commit.
        Ok(Command::Fsck { restore, .. }) => !restore,
        Ok(Command::Quarantine(q)) => matches!(q, QuarantineCmd::List { .. }),
        _ => false,
    }
}

fn make_handler(
    gate: Arc<Gate>,
    tx: mpsc::Sender<Ctl>,
    mountpoint: PathBuf,
    unsealer: Arc<unseal::Unsealer>,
) -> control::Handler {
    let tx = parking_lot::Mutex::new(tx);
    Arc::new(move |req: Request| match req {
        Request::Status => Response::Status(
            match gate.core() {
                Some(core) => status_json(&core, &mountpoint),
                None => super::cmd_seal::sealed_json(&mountpoint, unsealer.progress()),
            }
            .to_string(),
        ),
        Request::Unmount => {
            let (rtx, rrx) = mpsc::channel();
            if tx.lock().send(Ctl::Unmount(rtx)).is_err() {
                return Response::Error {
                    code: pkfs::ExitCode::MountFailure as i32,
                    message: "the daemon is shutting down".into(),
                };
            }
            // No time limit: writing back and committing what was copied in
            // takes as long as the disk needs, and the daemon unmounts after
            // it either way; giving up early would only report a failure that
            // is not one. (This connection has a thread of its own.)
            match rrx.recv() {
                Ok(Ok(mount::Unmounted::Clean)) => Response::Ok,
                Ok(Ok(mount::Unmounted::Uncommitted(message))) => Response::Error {
                    code: pkfs::ExitCode::Uncommitted as i32,
                    message,
                },
                Ok(Err(message)) => Response::Error {
                    code: pkfs::ExitCode::MountFailure as i32,
                    message,
                },
                Err(_) => Response::Error {
                    code: pkfs::ExitCode::MountFailure as i32,
                    message: "the daemon stopped before it finished the unmount".into(),
                },
            }
        }
        Request::Command(c) => {
            gate.touch();
            let Some(core) = gate.core() else {
                return Response::Error {
                    code: pkfs::ExitCode::Sealed as i32,
                    message: Error::Sealed(
                        "give the shares with `pkfs unseal` (once per holder) first".into(),
                    )
                    .to_string(),
                };
            };
            let changes = !read_only(&c.args);
            let node = core.node.clone();
            match core.exclusive(changes, || super::remote::execute(node, c)) {
                Ok(r) => r,
                Err(e) => Response::Error {
                    code: e.exit_code() as i32,
                    message: format!(
                        "not run: the pending changes of the mount could not be \
                         committed first, and the command could discard them: {e}"
                    ),
                },
            }
        }
    })
}

fn status_json(core: &FsCore, mountpoint: &Path) -> serde_json::Value {
    let vaults: Vec<_> = core
        .vaults
        .read()
        .iter()
        .map(|v| {
            let (pending, last, error) = {
                let p = v.pending.lock();
                (p.changes.len(), p.last_commit.clone(), p.last_error.clone())
            };
            // Before the mount's first commit, the vault's current version.
            let last = last.or_else(|| {
                let h = v.history.lock();
                let head = h
                    .log(Some(1000), false)
                    .ok()?
                    .into_iter()
                    .find(|e| e.head)?;
                Some((head.id, head.time))
            });
            json!({
                "name": v.name(),
                "pending_changes": pending,
                "last_commit": last.as_ref().map(|(id, _)| id.clone()),
                "last_commit_time": last.as_ref().map(|(_, t)| *t),
                "last_error": error,
            })
        })
        .collect();
    json!({
        "mounted": true,
        "sealed": false,
        "mountpoint": mountpoint,
        "pid": std::process::id(),
        "read_only": core.cfg.ro,
        "commit_delay_ms": core.cfg.commit_delay.as_millis() as u64,
        "cache": core.cache.stats(),
        "open_files": core.open.lock().len(),
        "removing_dirs": pkfs::store::reaper::pending(),
        "vaults": vaults,
    })
}

/// Find the home mounted at `dir` from /proc/mounts (its fsname is the home).
fn home_of_mount(dir: &Path) -> Option<PathBuf> {
    let want = std::path::absolute(dir).ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split(' ');
        let (src, mnt, ty) = (f.next()?, f.next()?, f.next()?);
        (ty.starts_with("fuse") && Path::new(mnt) == want).then(|| PathBuf::from(src))
    })
}

pub fn umount(cfg: &Config, dir: Option<&Path>) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let home = match dir.and_then(home_of_mount) {
        Some(h) if h.join("root.key").exists() => h,
        _ => cfg.home.clone(),
    };
    let conn = client::connect(&home);
    // The daemon's pid, so that "unmounted" waits for it to have left
    // altogether (its sockets removed), not only for the home's lock.
    let pid = conn
        .as_ref()
        .and_then(|s| pkfs::daemon::control::peer_cred(s).ok())
        .map(|c| c.pid);
    let reply = match conn.map(|s| client::call(&s, &Request::Unmount)) {
        // Killed while we connected: once it is gone, its mount is a dead one.
        Some(Err(e)) if client::daemon_gone(&e) => {
            wait_for_exit(&home, pid);
            None
        }
        other => other.transpose()?,
    };
    let Some(reply) = reply else {
        // No daemon: a dead mount left by a killed one can still be cleaned up.
        if let Some(d) = dir {
            if std::fs::read_dir(d).is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN)) {
                mount::detach(d);
                out.say(format!("Cleaned up the dead mount at {}", d.display()));
                return Ok(());
            }
        }
        return Err(Error::Mount(format!("{} is not mounted", home.display())).into());
    };
    match reply {
        Response::Ok => {
            wait_for_exit(&home, pid);
            out.say("Unmounted; every change is committed.");
            Ok(())
        }
        Response::Error { code, ref message } if code == pkfs::ExitCode::Uncommitted as i32 => {
            wait_for_exit(&home, pid);
            Err(Error::Uncommitted(message.clone()).into())
        }
        Response::Error { ref message, .. } => Err(Error::Mount(message.clone()).into()),
        _ => Err(Error::Mount("unexpected reply from the daemon".into()).into()),
    }
}

/// Wait (up to a minute) until the daemon has let go of the home's lock, so the
/// next command can open the home itself, and then until its process `pid`
/// has exited, so that its sockets are gone too.
fn wait_for_exit(home: &Path, pid: Option<i32>) {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    if let Ok(f) = std::fs::File::open(home.join("lock")) {
        while std::time::Instant::now() < deadline {
            // SAFETY: valid descriptor; a shared, non-blocking probe of the lock.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
                // SAFETY: as above; release the probe at once.
                unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let Some(pid) = pid.filter(|p| *p > 0 && *p as u32 != std::process::id()) else {
        return;
    };
    while std::time::Instant::now() < deadline && process_lives(pid) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` still runs (a zombie waiting for its parent has finished).
fn process_lives(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

pub fn status(cfg: &Config) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    // A home this user cannot reach says nothing about a mount: an error, not
    // "not mounted".
    let probe = client::probe(&cfg.home)
        .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", cfg.home.display()))?;
    let reply = match probe.map(|s| client::call(&s, &Request::Status)) {
        Some(Err(e)) if client::daemon_gone(&e) => None,
        other => other.transpose()?,
    };
    let Some(reply) = reply else {
        if out.json() {
            return out.emit(&json!({"mounted": false, "home": cfg.home}));
        }
        out.data(format!("{}: not mounted", cfg.home.display()));
        return Ok(());
    };
    let Response::Status(text) = &reply else {
        return Err(Error::Mount("unexpected reply from the daemon".into()).into());
    };
    let v: serde_json::Value = serde_json::from_str(text)?;
    if out.json() {
        return out.emit(&v);
    }
    if v["sealed"] == true {
        out.data(format!(
            "{}: mounted at {} (pid {}), {}",
            cfg.home.display(),
            v["mountpoint"].as_str().unwrap_or("?"),
            v["pid"],
            v["state"].as_str().unwrap_or("sealed")
        ));
        return Ok(());
    }
    out.data(format!(
        "{}: mounted at {} (pid {})",
        cfg.home.display(),
        v["mountpoint"].as_str().unwrap_or("?"),
        v["pid"]
    ));
    let c = &v["cache"];
    out.data(format!(
        "cache: {} KiB clean, {} KiB dirty of {} KiB; {} hits, {} misses",
        c["clean_bytes"].as_u64().unwrap_or(0) / 1024,
        c["dirty_bytes"].as_u64().unwrap_or(0) / 1024,
        c["capacity_bytes"].as_u64().unwrap_or(0) / 1024,
        c["hits"],
        c["misses"]
    ));
    if let Some(n) = v["removing_dirs"].as_u64().filter(|n| *n > 0) {
        out.data(format!(
            "removing {n} director(ies) a checkout dropped, in the background"
        ));
    }
    for vault in v["vaults"].as_array().into_iter().flatten() {
        let last = vault["last_commit"]
            .as_str()
            .map_or("-".to_string(), |id| id.chars().take(12).collect());
        out.data(format!(
            "vault {}: {} pending change(s), last commit {}{}",
            vault["name"].as_str().unwrap_or("?"),
            vault["pending_changes"],
            last,
            vault["last_error"]
                .as_str()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::read_only;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn reads_and_changes_are_told_apart_wherever_global_options_sit() {
        for r in [
            "pkfs secret cat v:a",
            "pkfs --home h secret ls v",
            "pkfs --json vault list",
            "pkfs version log v -n 3",
            "pkfs version diff v HEAD~2 --stat",
            "pkfs version show v HEAD~1:a",
            "pkfs secrets stat --home h v:a",
            "pkfs fsck",
            "pkfs --json fsck v w",
        ] {
            assert!(read_only(&argv(r)), "{r}");
        }
        for w in [
            "pkfs secret write v:a",
            "pkfs --home h version checkout v HEAD~1",
            "pkfs version restore v HEAD~1 a",
            "pkfs vault rename a b",
            "pkfs gc",
            "pkfs fsck --restore v",
            "pkfs --json fsck v --restore",
            "pkfs not a command",
        ] {
            assert!(!read_only(&argv(w)), "{w}");
        }
    }
}
