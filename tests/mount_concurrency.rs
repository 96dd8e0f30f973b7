//! The CLI and the mount at the same time: shell writers (short files, one
//! long-lived descriptor, appends) run through the mount while every mutating
//! command runs through the daemon. Every write the shell saw succeed reads
//! back, through the mount and, after `umount`, through the CLI; `fsck` is
//! clean without `--restore`, and nothing is quarantined. Then each mutating
//! command is killed (SIGKILL) at random moments, and `fsck` stays clean.
//!
//! Fixed rounds; the seed is printed, and `PKFS_STRESS_SEED=N` replays one.
//! `PKFS_STRESS_ROUNDS` raises the number of rounds for a longer soak.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::mount::Mounted;
use common::*;

/// A small xorshift generator: the same seed, the same run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    let seed = std::env::var("PKFS_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
        })
        | 1;
    eprintln!("seed {seed} (PKFS_STRESS_SEED={seed} replays it)");
    seed
}

fn rounds(default: usize) -> usize {
    std::env::var("PKFS_STRESS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

const SHORT: usize = 200;
const LONG: usize = 200;
const APPENDS: usize = 200;

/// The three shell writers, each logging every write that succeeded to its
/// acknowledgement file (outside the mount) right after it returned.
fn writers(dir: &Path, acks: &Path) -> Vec<Child> {
    let scripts = [
        format!(
            r#"i=0; while [ $i -lt {SHORT} ]; do i=$((i+1));
               echo "short $i" > "$D/s/f$i" || exit 1; echo $i >> "$A/short"; done"#
        ),
        format!(
            r#"exec 3>"$D/long" || exit 1; i=0; while [ $i -lt {LONG} ]; do i=$((i+1));
               echo "line $i" >&3 || exit 1; echo $i >> "$A/long"; sleep 0.02; done"#
        ),
        format!(
            r#"i=0; while [ $i -lt {APPENDS} ]; do i=$((i+1));
               echo "append $i" >> "$D/app" || exit 1; echo $i >> "$A/app"; sleep 0.01; done"#
        ),
    ];
    scripts
        .iter()
        .map(|s| {
            Command::new("sh")
                .arg("-c")
                .arg(s)
                .env("D", dir)
                .env("A", acks)
                .stdin(Stdio::null())
                .spawn()
                .expect("starting a shell writer")
        })
        .collect()
}

/// The writers, stopped if the test fails before they finish.
struct Shells(Vec<Child>);

impl Drop for Shells {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How many writes the writer logged to `acks/name`.
fn acked(acks: &Path, name: &str) -> usize {
    fs::read_to_string(acks.join(name))
        .unwrap_or_default()
        .lines()
        .count()
}

/// What the writers wrote, as the files must read back.
fn expected(acks: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = (1..=acked(acks, "short"))
        .map(|i| (format!("d/s/f{i}"), format!("short {i}\n")))
        .collect();
    let lines =
        |n: usize, word: &str| -> String { (1..=n).map(|i| format!("{word} {i}\n")).collect() };
    out.push(("d/long".into(), lines(acked(acks, "long"), "line")));
    out.push(("d/app".into(), lines(acked(acks, "app"), "append")));
    out
}

/// A source tree for `secret import`.
fn import_source(n: &Node) -> PathBuf {
    let src = n.scratch().join("import-src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("sub/i{i}")), format!("imported {i}")).unwrap();
    }
    src
}

/// The mutating commands, as argument lists for round `r` (several steps
/// where one command needs a setup, such as a secret to move).
fn command(which: u64, r: usize, src: &Path, key: &mut usize) -> Vec<Vec<String>> {
    let v = |s: &str| s.to_string();
    let src = src.display().to_string();
    match which {
        0 => vec![vec![v("secret"), v("write"), format!("v:cli/k{r}")]],
        // `-p`: the commands run in a random order, and `cli/` is made by
        // whichever of them comes first.
        1 => vec![vec![
            v("secret"),
            v("mkdir"),
            v("-p"),
            format!("v:cli/d{r}"),
        ]],
        2 => vec![
            vec![v("secret"), v("write"), format!("v:cli/m{r}")],
            vec![
                v("secret"),
                v("mv"),
                format!("v:cli/m{r}"),
                format!("v:cli/moved{r}"),
            ],
        ],
        3 => vec![
            vec![v("secret"), v("write"), format!("v:cli/r{r}")],
            vec![v("secret"), v("rm"), format!("v:cli/r{r}")],
        ],
        4 => vec![vec![v("secret"), v("import"), src, format!("v:cli/imp{r}")]],
        5 => vec![
            vec![v("vault"), v("rename"), v("w"), v("w2")],
            vec![v("vault"), v("rename"), v("w2"), v("w")],
        ],
        6 => vec![vec![v("gc")]],
        7 => vec![
            vec![v("version"), v("checkout"), v("w"), v("HEAD~1")],
            vec![v("version"), v("checkout"), v("w"), v("latest")],
        ],
        _ => {
            *key = 1 - *key;
            vec![vec![v("key"), v("rotate-root"), format!("{key}")]]
        }
    }
}

const COMMANDS: u64 = 9;

/// Run one step; `key` steps carry the test key to rotate to.
fn run_step(n: &Node, step: &[String], r: usize) -> Output {
    if step[0] == "key" {
        let key: usize = step[2].parse().unwrap();
        return n
            .cmd()
            .args(&step[..2])
            .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(key))
            .run();
    }
    let mut c = n.cmd().args(step);
    if step.get(1).is_some_and(|s| s == "write") {
        c = c.stdin(format!("cli {r}"));
    }
    c.run()
}

#[test]
fn shell_writers_and_every_mutating_command_at_once() {
    need("sh");
    let seed = seed();
    let mut rng = Rng(seed);
    let mut m = Mounted::new();
    let n = &m.node;
    n.ok(["vault", "create", "w"]);
    n.write("w:a", "one");
    n.write("w:a", "two");
    let src = import_source(n);
    let dir = m.path("d");
    fs::create_dir_all(dir.join("s")).unwrap();
    let acks = n.scratch().join("acks");
    fs::create_dir_all(&acks).unwrap();
    let mut shells = Shells(writers(&dir, &acks));
    let mut key = 0;
    let mut made: Vec<(String, String)> = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for r in 0..rounds(2) {
        // Every command once per round, in a seeded order.
        let mut order: Vec<u64> = (0..COMMANDS).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for which in order {
            std::thread::sleep(Duration::from_millis(rng.below(100)));
            for step in command(which, r, &src, &mut key) {
                let o = run_step(n, &step, r);
                assert_eq!(o.code, 0, "round {r}: pkfs {step:?}: {}", o.stderr);
            }
            match which {
                0 => made.push((format!("cli/k{r}"), format!("cli {r}"))),
                1 => dirs.push(format!("cli/d{r}")),
                2 => made.push((format!("cli/moved{r}"), format!("cli {r}"))),
                4 => made.push((format!("cli/imp{r}/sub/i7"), "imported 7".into())),
                _ => {}
            }
        }
    }
    for (i, mut sh) in shells.0.drain(..).enumerate() {
        let status = sh.wait().unwrap();
        assert!(status.success(), "writer {i} saw an error: {status:?}");
    }
    let want = expected(&acks);
    assert_eq!(acked(&acks, "short"), SHORT);
    // Through the mount.
    for (path, content) in &want {
        let got = fs::read_to_string(m.path(path))
            .unwrap_or_else(|e| panic!("reading {path} through the mount: {e}"));
        assert_eq!(&got, content, "{path} through the mount");
    }
    for (path, content) in &made {
        assert_eq!(
            &fs::read_to_string(m.path(path)).unwrap(),
            content,
            "{path}"
        );
    }
    for d in &dirs {
        assert!(m.path(d).is_dir(), "{d} through the mount");
    }
    m.wait_committed();
    m.umount();
    // Through the CLI, from what was committed.
    let n = &m.node;
    let targets: Vec<String> = want.iter().map(|(p, _)| format!("v:{p}")).collect();
    let mut args = vec!["secret".to_string(), "cat".to_string()];
    args.extend(targets);
    let all: String = want.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(n.ok(&args).out(), all, "through the CLI after umount");
    for (path, content) in &made {
        assert_eq!(n.cat(&format!("v:{path}")), content.as_bytes(), "{path}");
    }
    let listed = n.ls("v:cli");
    for d in &dirs {
        let name = format!("{}/", &d["cli/".len()..]);
        assert!(listed.contains(&name), "{d} through the CLI: {listed:?}");
    }
    let o = n.run(["fsck"]);
    assert_eq!(o.code, 0, "fsck: {}{}", o.out(), o.stderr);
    for v in ["v", "w"] {
        assert!(
            !n.vault_dir(v).join("quarantine").exists(),
            "something of {v} was quarantined"
        );
    }
}

/// A mutating command started in the background, its stdin fed.
fn spawn(n: &Node, step: &[String], key: usize) -> Child {
    let mut c = Command::new(BIN);
    clean_env(&mut c);
    let args: &[String] = if step[0] == "key" { &step[..2] } else { step };
    c.arg("--home")
        .arg(&n.home)
        .arg("--passfile")
        .arg(&n.passfile)
        .args(args)
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(key))
        .env("XDG_DATA_HOME", n.scratch().join("xdg"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawning pkfs");
    if let Some(mut w) = child.stdin.take() {
        let _ = w.write_all(b"killed secret");
    }
    child
}

#[test]
fn every_mutating_command_killed_at_random_moments_leaves_fsck_clean() {
    let seed = seed();
    let mut rng = Rng(seed);
    let n = Node::with_vault();
    n.ok(["vault", "create", "w"]);
    n.write("w:a", "one");
    n.write("w:a", "two");
    n.write("v:keep", "kept");
    let src = import_source(&n);
    let mut key = 0;
    let mut killed = 0;
    let mut runs = 0;
    for r in 0..rounds(2) {
        for which in 0..COMMANDS {
            for step in command(which, 100 + r, &src, &mut key) {
                // Debug builds take a few hundred milliseconds per command.
                let delay = Duration::from_millis(rng.below(250));
                let mut child = spawn(&n, &step, if step[0] == "key" { key } else { 0 });
                std::thread::sleep(delay);
                let _ = child.kill();
                let status = child.wait().unwrap();
                runs += 1;
                if status.code().is_none() {
                    killed += 1;
                }
                let o = n.run(["fsck"]);
                assert_eq!(
                    o.code,
                    0,
                    "after pkfs {step:?} killed at {delay:?}: {}{}",
                    o.out(),
                    o.stderr
                );
                // A key rotation killed half-way leaves the old key or the
                // new one: follow whichever is on disk.
                if step[0] == "key" && n.run(["vault", "list"]).code != 0 {
                    panic!("round {r}: no root key opens after a killed rotation");
                }
            }
        }
    }
    eprintln!("{killed} of {runs} commands were killed before they finished");
    assert!(killed > 0, "nothing was killed: the test proves nothing");
    for v in fs::read_dir(n.home.join("vaults")).unwrap() {
        let q = v.unwrap().path().join("quarantine");
        assert!(!q.exists(), "{} holds something", q.display());
    }
    assert_eq!(n.cat("v:keep"), b"kept");
}

#[test]
fn descriptors_stay_valid_across_secret_mv() {
    let mut m = Mounted::new();
    fs::create_dir(m.path("dd")).unwrap();
    let mut inside = fs::File::create(m.path("dd/f")).unwrap();
    inside.write_all(b"before ").unwrap();
    let mut file = fs::File::create(m.path("g")).unwrap();
    file.write_all(b"one ").unwrap();
    m.node.ok(["secret", "mv", "v:dd", "v:dd2"]);
    m.node.ok(["secret", "mv", "v:g", "v:h"]);
    inside.write_all(b"after").unwrap();
    inside.sync_all().unwrap();
    file.write_all(b"two").unwrap();
    drop((inside, file));
    assert_eq!(fs::read_to_string(m.path("dd2/f")).unwrap(), "before after");
    assert_eq!(fs::read_to_string(m.path("h")).unwrap(), "one two");
    assert!(!m.path("dd").exists() && !m.path("g").exists());
    m.umount();
    assert_eq!(m.node.cat("v:dd2/f"), b"before after");
    assert_eq!(m.node.cat("v:h"), b"one two");
    let o = m.node.run(["fsck"]);
    assert_eq!(o.code, 0, "fsck: {}{}", o.out(), o.stderr);
}

#[test]
fn files_opened_up_to_the_limit_leave_listings_and_commits_working() {
    let m = Mounted::new();
    let files = 400;
    for i in 0..files {
        fs::write(m.path(&format!("f{i}")), format!("{i}")).unwrap();
    }
    // This process may hold them all; the daemon gets a small limit.
    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit/prlimit on rlimits we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut own), 0);
        own.rlim_cur = own.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &own), 0);
    }
    assert!(
        own.rlim_cur > 2 * files as u64,
        "the test needs descriptors"
    );
    let pid = m.status()["pid"].as_i64().expect("the daemon's pid") as libc::pid_t;
    let small = libc::rlimit {
        rlim_cur: 300,
        rlim_max: 300,
    };
    // SAFETY: as above.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &small, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let mut held = Vec::new();
    let mut refused = None;
    for i in 0..files {
        match fs::File::open(m.path(&format!("f{i}"))) {
            Ok(f) => held.push(f),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the daemon's limit was reached");
    assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
    assert!(held.len() > 100, "only {} opened", held.len());
    // Everyone else's listing, a command over the control socket and its
    // commit still work.
    assert_eq!(fs::read_dir(m.v()).unwrap().count(), files);
    m.node.write("v:while-full", "committed");
    assert_eq!(m.node.cat("v:while-full"), b"committed");
    drop(held);
    assert_eq!(fs::read_to_string(m.path("f399")).unwrap(), "399");
}
