//! Power cuts: the home lives on a fault-injecting FUSE file system
//! (tests/faultfs) that keeps only what was fsync'd (file bytes at fsync of
//! the file, directory entries at fsync of the directory) and drops the rest
//! at a cut; `syncfs` makes nothing durable there. Each cycle runs a mixed
//! workload (fsync'd writes through a pkfs mount, `secret write`,
//! `version checkout` back and to latest, `key rotate-root`, `vault create`
//! and `vault rename`), kills the daemon and the running command with
//! SIGKILL at a random moment, cuts the power, and recovers: fsck is clean
//! without `fsck --restore`, `git fsck` passes in every vault,
//! every fsync'd file and every acknowledged command's effect is there, and
//! the next write commits.
//!
//! 20 cycles by default; `PKFS_POWERCUT_CYCLES=200` for the long run.
//! The seed is printed; `PKFS_POWERCUT_SEED=N` replays it.

mod common;
mod faultfs;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::mount::is_mounted;
use common::*;
use faultfs::FaultFs;

fn env_num(k: &str) -> Option<u64> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// What acknowledged operations promise.
/// How many vaults besides `v` the workload keeps at most.
const MAX_EXTRA_VAULTS: usize = 4;

#[derive(Default)]
struct Model {
    /// Files of vault `v` whose fsync (and their directory's) returned.
    files: BTreeMap<String, Vec<u8>>,
    /// Vaults a successful command created (or renamed to), and renamed away.
    present: BTreeSet<String>,
    absent: BTreeSet<String>,
    /// A checkout back may be in effect (not followed by a successful `latest`).
    maybe_old: bool,
    /// The root key a successful rotation installed (None: unknown).
    key: Option<usize>,
    /// Successful operations by kind, to show what the cycles covered.
    done: BTreeMap<&'static str, usize>,
}

/// Stop flag and the running command, shared between workload and killer.
#[derive(Default)]
struct Ctl {
    stop: bool,
    child: Option<u32>,
}

#[derive(Clone)]
struct Env {
    home: PathBuf,
    passfile: PathBuf,
    scratch: PathBuf,
    mnt: PathBuf,
}

impl Env {
    /// Run pkfs as a killable child; None when stopped or killed.
    fn pkfs(&self, ctl: &Mutex<Ctl>, args: &[&str], stdin: &[u8], key: usize) -> Option<i32> {
        let mut c = Command::new(BIN);
        clean_env(&mut c);
        c.arg("--home")
            .arg(&self.home)
            .arg("--passfile")
            .arg(&self.passfile)
            .args(args)
            .env("PKFS_TEST_ONLY_FAST_KDF", "1")
            .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(key))
            .env("XDG_DATA_HOME", self.scratch.join("xdg"))
            .current_dir(&self.scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = {
            let mut g = ctl.lock().unwrap();
            if g.stop {
                return None;
            }
            let child = c.spawn().expect("spawning pkfs");
            g.child = Some(child.id());
            child
        };
        if let Some(mut w) = child.stdin.take() {
            let _ = w.write_all(stdin);
        }
        let out = child.wait_with_output().expect("waiting for pkfs");
        ctl.lock().unwrap().child = None;
        match out.status.code() {
            Some(0) => Some(0),
            Some(c) => {
                eprintln!(
                    "  pkfs {args:?}: exit {c}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                Some(c)
            }
            None => None,
        }
    }

    /// Write `data` to vault file `name` through the mount, fsync it and its directory.
    fn write_file(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        let dir = self.mnt.join("v");
        let mut f = File::create(dir.join(name))?;
        f.write_all(data)?;
        f.sync_all()?;
        File::open(&dir)?.sync_all()
    }
}

/// The workload of cycle `c`, until stopped or the daemon is gone.
fn workload(env: Env, c: usize, seed: u64, ctl: Arc<Mutex<Ctl>>, model: Arc<Mutex<Model>>) {
    let mut rng = Lcg(seed);
    for n in 0.. {
        if ctl.lock().unwrap().stop {
            return;
        }
        let pick = rng.next() % 100;
        let tag = format!("{c}_{n}");
        let data = pseudo_random(100 + (rng.next() % 30000) as usize, seed + n);
        let done = |k: &'static str| *model.lock().unwrap().done.entry(k).or_default() += 1;
        if pick < 40 {
            // A new file, or the rewrite of one shared file.
            let name = if pick < 30 {
                format!("f{tag}")
            } else {
                "shared".to_string()
            };
            model.lock().unwrap().files.remove(&name);
            if env.write_file(&name, &data).is_err() {
                return; // the daemon is gone
            }
            model.lock().unwrap().files.insert(name, data);
            done("fsync'd write");
        } else if pick < 60 {
            let name = format!("s{tag}");
            match env.pkfs(&ctl, &["secret", "write", &format!("v:{name}")], &data, 0) {
                Some(0) => {
                    model.lock().unwrap().files.insert(name, data);
                    done("secret write");
                }
                None => return,
                Some(_) => {}
            }
        } else if pick < 72 {
            model.lock().unwrap().maybe_old = true;
            match env.pkfs(&ctl, &["version", "checkout", "v", "HEAD~1"], b"", 0) {
                Some(0) => done("checkout back"),
                None => return,
                Some(_) => {}
            }
            match env.pkfs(&ctl, &["version", "checkout", "v", "latest"], b"", 0) {
                Some(0) => {
                    model.lock().unwrap().maybe_old = false;
                    done("checkout latest");
                }
                None => return,
                Some(_) => {}
            }
        } else if pick < 82 {
            let Some(cur) = model.lock().unwrap().key else {
                continue;
            };
            let next = 1 - cur;
            model.lock().unwrap().key = None;
            match env.pkfs(&ctl, &["key", "rotate-root"], b"", next) {
                Some(0) => {
                    model.lock().unwrap().key = Some(next);
                    done("key rotate-root");
                }
                // A failure may come from the daemon killed under the
                // rotation, which may then have happened or not: unknown.
                Some(_) => {}
                None => return,
            }
        } else {
            // Keep the node small, so that a long run's recovery (which runs
            // `git fsck` over every vault) costs the same at cycle 200 as at
            // cycle 1: past a few vaults, delete one instead of creating one.
            let oldest = {
                let m = model.lock().unwrap();
                (m.present.len() >= MAX_EXTRA_VAULTS)
                    .then(|| m.present.iter().next().cloned())
                    .flatten()
            };
            if let Some(old) = oldest {
                match env.pkfs(&ctl, &["vault", "delete", "--yes", &old], b"", 0) {
                    Some(0) => {
                        let mut m = model.lock().unwrap();
                        m.present.remove(&old);
                        m.absent.insert(old);
                        drop(m);
                        done("vault delete");
                    }
                    None => return,
                    // Killed under the delete: it may have happened or not.
                    Some(_) => {
                        model.lock().unwrap().present.remove(&old);
                    }
                }
                continue;
            }
            let (w, x) = (format!("w{tag}"), format!("x{tag}"));
            match env.pkfs(&ctl, &["vault", "create", &w], b"", 0) {
                Some(0) => {
                    model.lock().unwrap().present.insert(w.clone());
                    done("vault create");
                }
                None => return,
                Some(_) => continue,
            }
            model.lock().unwrap().present.remove(&w);
            match env.pkfs(&ctl, &["vault", "rename", &w, &x], b"", 0) {
                Some(0) => {
                    let mut m = model.lock().unwrap();
                    m.present.insert(x);
                    m.absent.insert(w);
                    drop(m);
                    done("vault rename");
                }
                None => return,
                Some(_) => {}
            }
        }
    }
}

fn kill_and_wait(pid: i32) {
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: kill(pid, 0) only checks whether the process still exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(Instant::now() < deadline, "{pid} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn detach(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string; failure (not mounted) is fine.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// Detaches the pkfs mount when the test ends (also on a failure).
struct Detach(PathBuf);

impl Drop for Detach {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            detach(&self.0);
        }
    }
}

/// fsck clean as the cut left it, with no `fsck --restore`: a commit makes
/// every work-tree file it records durable before its version record names
/// it, and a checkout every file it writes before the record moves.
fn fsck_clean(node: &Node, c: usize) {
    let o = node.run(["--json", "fsck"]);
    assert_eq!(
        o.code,
        0,
        "cycle {c}: fsck after the cut (no --restore): {} {}",
        o.stderr.trim(),
        o.out().trim()
    );
}

fn git_fsck_all(home: &Path, c: usize) {
    let dirs = git_workdirs(home);
    assert!(
        !dirs.is_empty(),
        "no vault repositories under {}",
        home.display()
    );
    for d in dirs {
        let o = git(&d, &["fsck", "--no-progress"]);
        assert!(
            o.status.success(),
            "cycle {c}: git fsck in {}: {}{}",
            d.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn power_cuts_lose_nothing_acknowledged_and_never_brick_a_vault() {
    let cycles = env_num("PKFS_POWERCUT_CYCLES").unwrap_or(20) as usize;
    let seed = env_num("PKFS_POWERCUT_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("power cut seed {seed} (PKFS_POWERCUT_SEED={seed} replays it), {cycles} cycles");
    let started = Instant::now();
    let mut rng = Lcg(seed);
    let node = Node::new();
    let backing = node.scratch().join("backing");
    fs::create_dir_all(&backing).unwrap();
    fs::set_permissions(&backing, fs::Permissions::from_mode(0o700)).unwrap();
    let mut ff = Some(FaultFs::mount(&backing, &node.home));
    let env = Env {
        home: node.home.clone(),
        passfile: node.passfile.clone(),
        scratch: node.scratch().to_path_buf(),
        mnt: node.scratch().join("mnt"),
    };
    fs::create_dir_all(&env.mnt).unwrap();
    let _detach = Detach(env.mnt.clone());
    let mnt = env.mnt.display().to_string();
    node.ok(["init"]);
    node.ok(["vault", "create", "v"]);
    node.write("v:first", b"one");
    node.write("v:first", b"two");
    let model = Arc::new(Mutex::new(Model {
        key: Some(0),
        ..Model::default()
    }));
    node.ok(["mount", &mnt, "--commit-delay", "50ms"]);
    for c in 0..cycles {
        let pid = node.ok(["--json", "status"]).json()["pid"]
            .as_i64()
            .expect("status shows the daemon's pid") as i32;
        let ctl = Arc::new(Mutex::new(Ctl::default()));
        let w = {
            let (env, ctl, model, s) = (env.clone(), ctl.clone(), model.clone(), rng.next());
            std::thread::spawn(move || workload(env, c, s, ctl, model))
        };
        std::thread::sleep(Duration::from_millis(100 + rng.next() % 1500));
        {
            let mut g = ctl.lock().unwrap();
            g.stop = true;
            kill_and_wait(pid);
            if let Some(child) = g.child {
                kill_and_wait(child as i32);
            }
        }
        w.join().unwrap();
        detach(&env.mnt);
        // The cut.
        let f = ff.take().unwrap();
        let (fsyncs, dir_fsyncs) = f.fsyncs();
        f.cut();
        ff = Some(FaultFs::mount(&backing, &node.home));
        eprintln!(
            "cycle {c}: cut after {fsyncs} file and {dir_fsyncs} directory fsyncs ({:?})",
            started.elapsed()
        );

        // Recovery.
        fsck_clean(&node, c);
        git_fsck_all(&node.home, c);
        let mut m = model.lock().unwrap();
        match m.key {
            Some(k) => assert_eq!(
                node_id_of_root_pub(&node.home),
                key_node_id(k),
                "cycle {c}: an acknowledged key rotation was lost"
            ),
            None => {
                let id = node_id_of_root_pub(&node.home);
                m.key = Some(if id == key_node_id(1) { 1 } else { 0 });
            }
        }
        let names: BTreeSet<String> = vault_names(&node).into_iter().collect();
        for v in &m.present {
            assert!(names.contains(v), "cycle {c}: vault {v} lost: {names:?}");
        }
        for v in &m.absent {
            assert!(
                !names.contains(v),
                "cycle {c}: vault {v} is back: {names:?}"
            );
        }
        // A vault whose create or rename was cut short is in neither set:
        // remove it, so that the node stays small however long the run.
        let leftovers: Vec<String> = names
            .iter()
            .filter(|v| *v != "v" && !m.present.contains(*v))
            .cloned()
            .collect();
        for v in leftovers {
            node.ok(["vault", "delete", "--yes", &v]);
            m.absent.insert(v);
        }
        if m.maybe_old {
            node.ok(["version", "checkout", "v", "latest"]);
            m.maybe_old = false;
        }
        node.ok(["mount", &mnt, "--commit-delay", "50ms"]);
        for (name, want) in &m.files {
            let got = fs::read(env.mnt.join("v").join(name))
                .unwrap_or_else(|e| panic!("cycle {c}: acknowledged {name} unreadable: {e}"));
            assert!(got == *want, "cycle {c}: acknowledged {name} changed");
        }
        drop(m);
        // The next write commits.
        let before = node.commits("v");
        node.write(&format!("v:probe{c}"), b"probe");
        assert!(
            node.commits("v") > before,
            "cycle {c}: the next write made no commit"
        );
    }
    node.ok(["umount", &mnt]);
    let m = model.lock().unwrap();
    eprintln!(
        "{cycles} cycles in {:?}; acknowledged operations: {:?}",
        started.elapsed(),
        m.done
    );
    // The cycles did exercise the workload.
    assert!(
        m.done.get("fsync'd write").copied().unwrap_or(0) > 0,
        "{:?}",
        m.done
    );
}

/// The fault file system itself: a cut keeps file bytes as of their last
/// fsync and directory entries as of their directory's last fsync, and
/// nothing else.
#[test]
fn the_fault_fs_keeps_only_what_was_fsynced() {
    let tmp = tempfile::tempdir().unwrap();
    let (backing, mnt) = (tmp.path().join("b"), tmp.path().join("m"));
    let ff = FaultFs::mount(&backing, &mnt);
    let write = |name: &str, data: &[u8], sync: bool| {
        let mut f = File::create(mnt.join(name)).unwrap();
        f.write_all(data).unwrap();
        if sync {
            f.sync_all().unwrap();
        }
    };
    let sync_dir = |d: &Path| File::open(d).unwrap().sync_all().unwrap();
    write("synced", b"kept", true);
    write("unsynced", b"bytes lost", false);
    fs::create_dir(mnt.join("d")).unwrap();
    write("d/inner", b"inner", true);
    sync_dir(&mnt.join("d"));
    sync_dir(&mnt);
    // After the directory fsync: bytes changed but not fsync'd, a rename
    // and a new name without a directory fsync.
    write("synced", b"changed", false);
    write("late", b"late", true);
    fs::rename(mnt.join("d/inner"), mnt.join("moved")).unwrap();
    assert_eq!(ff.fsyncs(), (3, 2));
    ff.cut();
    let names: BTreeSet<String> = fs::read_dir(&backing)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["d", "synced", "unsynced"].map(String::from))
    );
    assert_eq!(fs::read(backing.join("synced")).unwrap(), b"kept");
    assert_eq!(fs::read(backing.join("unsynced")).unwrap(), b"");
    assert_eq!(fs::read(backing.join("d/inner")).unwrap(), b"inner");
    // Mounted again, the survivor is all there is, and everything is durable.
    let ff = FaultFs::mount(&backing, &mnt);
    assert_eq!(fs::read(mnt.join("d/inner")).unwrap(), b"inner");
    assert!(!mnt.join("moved").exists());
    fs::remove_file(mnt.join("unsynced")).unwrap();
    ff.cut();
    assert!(
        backing.join("unsynced").exists(),
        "the unlink was not fsync'd"
    );
}
