//! Shared harness of the end-to-end CLI suites (`cli_*.rs`).
//!
//! Every test drives the real `pkfs` binary through `std::process::Command`
//! (never a shell), in a throw-away home. Two test-only switches keep the suite
//! fast; neither is ever on by default:
//!
//! * `PKFS_TEST_ONLY_FAST_KDF=1`: cheap Argon2id parameters;
//! * `PKFS_TEST_ONLY_ROOT_KEY=<PEM>`: `init` / `key rotate-root` use that key
//!   instead of generating an RSA-4096 keypair.
//!
//! The two root keys are generated once per `cargo test` run and cached under
//! `$CARGO_TARGET_TMPDIR/test-root-keys/`. A cached key file is published with a
//! hard link (which never replaces an existing file), so parallel test binaries
//! never read a half-written key and never see a key change under them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use pkfs::crypto::rsa::{RootKeypair, RootPublic};
pub use pkfs::ExitCode;
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_pkfs");

/// The passphrase of every test node (unless a test says otherwise).
pub const PASSPHRASE: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------
// Test root keys.

/// Path of cached test root key `i` (0 or 1), generated on first use.
pub fn root_key(i: usize) -> &'static Path {
    static KEYS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-root-keys");
        fs::create_dir_all(&dir).expect("creating the test key directory");
        (0..2).map(|i| cached_key(&dir, i)).collect()
    });
    &keys[i]
}

fn cached_key(dir: &Path, i: usize) -> PathBuf {
    let path = dir.join(format!("key{i}.pem"));
    if let Ok(pem) = fs::read_to_string(&path) {
        if RootKeypair::from_pkcs8_pem(&pem).is_ok() {
            return path;
        }
        // Unparseable (should never happen with hard-link publishing): replace it.
        let _ = fs::remove_file(&path);
    }
    let key = RootKeypair::generate().expect("generating a test root key");
    let tmp = dir.join(format!(
        ".key{i}.pem.tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    {
        let mut f = fs::File::create(&tmp).expect("writing a test root key");
        f.write_all(key.to_pkcs8_pem().as_bytes()).unwrap();
        f.sync_all().unwrap();
    }
    // link(2) fails when `path` exists: the first writer wins, nobody replaces it.
    match fs::hard_link(&tmp, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("publishing {}: {e}", path.display()),
    }
    let _ = fs::remove_file(&tmp);
    path
}

/// The PEM text of test root key `i`.
pub fn root_key_pem(i: usize) -> String {
    fs::read_to_string(root_key(i)).unwrap()
}

/// The node id of test root key `i`, computed by the library.
pub fn key_node_id(i: usize) -> String {
    RootKeypair::from_pkcs8_pem(&root_key_pem(i))
        .expect("test key parses")
        .public()
        .node_id()
}

/// Node id of the `root.pub` of a home, recomputed from its PEM.
pub fn node_id_of_root_pub(home: &Path) -> String {
    let pem = fs::read_to_string(home.join("root.pub")).unwrap();
    RootPublic::from_pem(&pem)
        .expect("root.pub parses")
        .node_id()
}

// ---------------------------------------------------------------------------
// Running the binary.

/// What one run of the binary produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!("{:?}: stdout is not JSON ({e}):\n{}", self.args, self.out())
        })
    }

    fn describe(&self) -> String {
        format!(
            "pkfs {:?}\n  exit code: {}\n  stdout: {:?}\n  stderr: {:?}",
            self.args,
            self.code,
            truncate(&self.out(), 2000),
            self.stderr
        )
    }

    /// Assert success.
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "expected success\n{}", self.describe());
        self
    }

    /// Assert failure with exactly `code`, and one error line `pkfs: ...` on stderr.
    pub fn failure(self, code: ExitCode) -> Self {
        assert_eq!(
            self.code,
            code as i32,
            "expected exit code {} ({code:?})\n{}",
            code as i32,
            self.describe()
        );
        assert_one_error_line(&self);
        self
    }

    /// Assert that stderr (lowercased) mentions `needle` (lowercased).
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}\n{}",
            self.describe()
        );
        self
    }

    pub fn stdout_empty(self) -> Self {
        assert!(
            self.stdout.is_empty(),
            "stdout must be empty\n{}",
            self.describe()
        );
        self
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &s[..end], s.len())
    }
}

/// An error is exactly one line on stderr, starting with `pkfs: `.
pub fn assert_one_error_line(o: &Output) {
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert!(
        lines.len() == 1 && o.stderr.ends_with('\n') && lines[0].starts_with("pkfs: "),
        "stderr must be exactly one line starting with 'pkfs: '\n{}",
        o.describe()
    );
    assert!(
        lines[0].len() > "pkfs: ".len() + 5,
        "the error line says nothing\n{}",
        o.describe()
    );
}

/// A command line being built.
pub struct Cmd {
    args: Vec<OsString>,
    home: Option<PathBuf>,
    passfile: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    env: Vec<(OsString, Option<OsString>)>,
    scratch: PathBuf,
}

impl Cmd {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Do not pass `--home` (the test supplies it another way).
    pub fn no_home(mut self) -> Self {
        self.home = None;
        self
    }

    /// Do not pass `--passfile` (the test supplies the passphrase another way).
    pub fn no_passfile(mut self) -> Self {
        self.passfile = None;
        self
    }

    pub fn passfile(mut self, p: impl Into<PathBuf>) -> Self {
        self.passfile = Some(p.into());
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.env
            .push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Self {
        self.env.push((k.as_ref().to_owned(), None));
        self
    }

    pub fn run(self) -> Output {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(h) = &self.home {
            argv.push("--home".into());
            argv.push(h.into());
        }
        if let Some(p) = &self.passfile {
            argv.push("--passfile".into());
            argv.push(p.into());
        }
        argv.extend(self.args.iter().cloned());
        let mut c = Command::new(BIN);
        c.args(&argv);
        clean_env(&mut c);
        c.env("PKFS_TEST_ONLY_FAST_KDF", "1")
            .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(0))
            // Whatever a test forgets to pass, it never reaches a real home.
            .env("XDG_DATA_HOME", self.scratch.join("xdg"))
            .current_dir(&self.scratch);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c.spawn().expect("spawning pkfs");
        let writer = self.stdin.map(|data| {
            let mut w = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                // The command may exit before reading everything (an error case).
                let _ = w.write_all(&data);
            })
        });
        let out = child.wait_with_output().expect("waiting for pkfs");
        if let Some(w) = writer {
            w.join().unwrap();
        }
        let code = match out.status.code() {
            Some(c) => c,
            None => panic!("pkfs {argv:?} died by a signal: {:?}", out.status),
        };
        Output {
            args: argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            code,
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Remove every inherited `PKFS_*` (and `GIT_*`) variable.
pub fn clean_env(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let s = k.to_string_lossy();
        if s.starts_with("PKFS_") || s.starts_with("GIT_") {
            c.env_remove(&k);
        }
    }
}

// ---------------------------------------------------------------------------
// The node fixture.

/// A throw-away node: `<tmp>/home` plus a passfile and scratch space in `<tmp>`.
pub struct Node {
    tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub passfile: PathBuf,
}

impl Node {
    /// A fixture whose home does not exist yet.
    pub fn new() -> Node {
        let tmp = tempfile::Builder::new()
            .prefix("pkfs-e2e-")
            .tempdir()
            .unwrap();
        let home = tmp.path().join("home");
        let passfile = tmp.path().join("passfile");
        fs::write(&passfile, format!("{PASSPHRASE}\n")).unwrap();
        Node {
            tmp,
            home,
            passfile,
        }
    }

    /// An initialised node (root key 0).
    pub fn init() -> Node {
        let n = Node::new();
        n.ok(["init"]);
        n
    }

    /// An initialised node with one empty vault `v`.
    pub fn with_vault() -> Node {
        let n = Node::init();
        n.ok(["vault", "create", "v"]);
        n
    }

    /// Scratch space outside the home.
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    /// A file in the scratch space with `data`.
    pub fn scratch_file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.tmp.path().join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, data).unwrap();
        p
    }

    pub fn cmd(&self) -> Cmd {
        Cmd {
            args: Vec::new(),
            home: Some(self.home.clone()),
            passfile: Some(self.passfile.clone()),
            stdin: None,
            env: Vec::new(),
            scratch: self.tmp.path().to_path_buf(),
        }
    }

    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd().args(args).run()
    }

    /// Run and assert success.
    pub fn ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run(args).success()
    }

    /// Run and assert failure with `code` and one `pkfs: ` line on stderr.
    pub fn fail<I, S>(&self, code: ExitCode, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run(args).failure(code)
    }

    /// `secret write TARGET` with `data` on stdin.
    pub fn write(&self, target: &str, data: impl AsRef<[u8]>) {
        self.cmd()
            .args(["secret", "write", target])
            .stdin(data.as_ref().to_vec())
            .run()
            .success();
    }

    /// `secret cat TARGET...`.
    pub fn cat(&self, target: &str) -> Vec<u8> {
        self.ok(["secret", "cat", target]).stdout
    }

    /// Names of `secret ls TARGET` (directories end in '/').
    pub fn ls(&self, target: &str) -> Vec<String> {
        self.ok(["secret", "ls", target])
            .out()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `version log VAULT --json` (with `--all` when asked).
    pub fn log(&self, vault: &str, all: bool) -> Vec<Value> {
        let mut args = vec!["--json", "version", "log", vault];
        if all {
            args.push("--all");
        }
        match self.ok(args).json() {
            Value::Array(a) => a,
            other => panic!("version log --json is not an array: {other}"),
        }
    }

    /// Number of commits in the current history of VAULT.
    pub fn commits(&self, vault: &str) -> usize {
        self.log(vault, false).len()
    }

    /// `vault stat NAME --json`.
    pub fn vault_stat(&self, name: &str) -> Value {
        self.ok(["--json", "vault", "stat", name]).json()
    }

    /// The id of vault NAME (from `vault list --json`).
    pub fn vault_id(&self, name: &str) -> String {
        let list = self.ok(["--json", "vault", "list"]).json();
        list.as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no vault {name} in {list}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `<home>/vaults/<id>` of vault NAME.
    pub fn vault_dir(&self, name: &str) -> PathBuf {
        self.home.join("vaults").join(self.vault_id(name))
    }
}

impl Default for Node {
    fn default() -> Self {
        Node::new()
    }
}

// ---------------------------------------------------------------------------
// Looking at the disk.

/// One filesystem entry of a [`snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snap {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

/// Every entry below `dir` (relative path -> kind, mode and content).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Snap> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.insert(rel, Snap::Link(fs::read_link(&p).unwrap()));
            } else if m.is_dir() {
                out.insert(rel, Snap::Dir(mode));
                stack.push(p);
            } else {
                out.insert(rel, Snap::File(mode, fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Assert two snapshots are equal, naming the first differences.
pub fn assert_same_tree(
    before: &BTreeMap<PathBuf, Snap>,
    after: &BTreeMap<PathBuf, Snap>,
    what: &str,
) {
    if before == after {
        return;
    }
    let mut diffs = Vec::new();
    for (p, s) in before {
        match after.get(p) {
            None => diffs.push(format!("removed: {}", p.display())),
            Some(t) if t != s => diffs.push(format!("changed: {}", p.display())),
            _ => {}
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) {
            diffs.push(format!("added: {}", p.display()));
        }
    }
    panic!("{what}: the tree changed:\n  {}", diffs.join("\n  "));
}

/// Every regular file below `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_iter()
        .filter(|(_, s)| matches!(s, Snap::File(..)))
        .map(|(p, _)| dir.join(p))
        .collect()
}

/// The largest content blob of a vault: the biggest regular file under
/// `contents/` that is neither a `.diriv` nor a long-name sidecar `*.name`.
pub fn largest_blob(vault_dir: &Path) -> PathBuf {
    files_under(&vault_dir.join("contents"))
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n != ".diriv" && !n.ends_with(".name")
        })
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("the vault has a blob")
}

/// XOR one byte of a file with 0x01.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut b = fs::read(path).unwrap();
    assert!(offset < b.len(), "{} has {} bytes", path.display(), b.len());
    b[offset] ^= 0x01;
    fs::write(path, b).unwrap();
}

pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic pseudo-random bytes (xorshift64*), good enough for test data.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// git.

/// The git executable (required by the plaintext scan).
pub fn git_bin() -> PathBuf {
    static GIT: OnceLock<PathBuf> = OnceLock::new();
    GIT.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join("git")).collect())
            .unwrap_or_default();
        candidates.push("/usr/bin/git".into());
        candidates.push("/usr/local/bin/git".into());
        candidates
            .into_iter()
            .find(|p| p.is_file())
            .expect("the git CLI is needed to inspect decompressed git objects")
    })
    .clone()
}

/// Run git on a repository, isolated from user and system configuration.
pub fn git(repo_workdir: &Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(git_bin());
    clean_env(&mut c);
    c.arg("-C")
        .arg(repo_workdir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null());
    c.output().expect("running git")
}

/// Every object of a repository, decompressed (`git cat-file --batch-all-objects --batch`).
pub fn git_all_objects(repo_workdir: &Path) -> Vec<u8> {
    let out = git(
        repo_workdir,
        &["cat-file", "--batch-all-objects", "--batch"],
    );
    assert!(
        out.status.success(),
        "git cat-file in {} failed: {}",
        repo_workdir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Does the object database of the repository hold object `id`?
pub fn git_has_object(repo_workdir: &Path, id: &str) -> bool {
    git(repo_workdir, &["cat-file", "-e", id]).status.success()
}

/// Every directory below `home` that holds a `.git` (the vault repositories).
pub fn git_workdirs(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                if e.file_name() == ".git" {
                    out.push(d.clone());
                } else {
                    stack.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// The plaintext scan.

/// `marker` as it would appear if it were merely encoded rather than encrypted:
/// hex, and the alignment-independent middle of its base64 and base64url forms at
/// each of the three byte offsets.
pub fn encoded_forms(marker: &[u8]) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let mut out = vec![marker
        .iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect::<Vec<u8>>()];
    if marker.len() < 12 {
        return out;
    }
    for k in 0..3usize {
        let mut shifted = vec![0u8; k];
        shifted.extend_from_slice(marker);
        for enc in [STANDARD.encode(&shifted), URL_SAFE_NO_PAD.encode(&shifted)] {
            // Skip the characters touched by the prefix and the final group.
            let start = (k * 4).div_ceil(3) + 1;
            let end = enc.len().saturating_sub(4);
            if end > start + 8 {
                out.push(enc.as_bytes()[start..end].to_vec());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Where any of `markers` shows up under `home`: in a file's raw bytes, in a file
/// or directory name, or in a decompressed git object of any repository; as is,
/// or merely encoded (see [`encoded_forms`]).
pub fn find_plaintext(home: &Path, markers: &[&[u8]]) -> Vec<String> {
    let mut variants: Vec<Vec<u8>> = Vec::new();
    for m in markers {
        variants.push(m.to_vec());
        variants.extend(encoded_forms(m));
    }
    let markers: Vec<&[u8]> = variants.iter().map(|v| v.as_slice()).collect();
    let markers = &markers[..];
    let mut found = Vec::new();
    for (rel, snap) in snapshot(home) {
        let name = rel.as_os_str().as_encoded_bytes();
        for m in markers {
            if contains(name, m) {
                found.push(format!(
                    "name {} contains {:?}",
                    rel.display(),
                    String::from_utf8_lossy(m)
                ));
            }
            if let Snap::File(_, data) = &snap {
                if contains(data, m) {
                    found.push(format!(
                        "bytes of {} contain {:?}",
                        rel.display(),
                        String::from_utf8_lossy(m)
                    ));
                }
            }
        }
    }
    for repo in git_workdirs(home) {
        let objects = git_all_objects(&repo);
        for m in markers {
            if contains(&objects, m) {
                found.push(format!(
                    "a git object of {} contains {:?}",
                    repo.display(),
                    String::from_utf8_lossy(m)
                ));
            }
        }
    }
    found
}

pub fn assert_no_plaintext(home: &Path, markers: &[&[u8]]) {
    let found = find_plaintext(home, markers);
    assert!(
        found.is_empty(),
        "plaintext on disk:\n  {}",
        found.join("\n  ")
    );
}

/// Copy a directory tree (files, directories and their modes).
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    set_mode(dst, mode_of(src));
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let (s, d) = (e.path(), dst.join(e.file_name()));
        let m = fs::symlink_metadata(&s).unwrap();
        if m.is_dir() {
            copy_tree(&s, &d);
        } else if m.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&s).unwrap(), &d).unwrap();
        } else {
            fs::copy(&s, &d).unwrap();
        }
    }
}
pub mod fixtures;
pub mod mount;
pub mod posix;
pub mod tamper;
pub mod vectors;
