//! Tampering with a vault on disk, for the fsck suites (`tamper.rs`,
//! `cli_fsck.rs`): a vault with known secrets, where each secret's backing
//! blob is known, and what `pkfs fsck --json` says about it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::mount::Mounted;
use super::{files_under, git, pseudo_random, ExitCode, Node};

/// Page geometry of blob format v1.
pub const HEADER: usize = 58;
pub const PAGE: usize = 4124;

/// The secrets of [`Vault::new`]: plaintext path and content.
pub fn secrets() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.txt", b"alpha secret\n".to_vec()),
        ("other.txt", b"another secret in the root\n".to_vec()),
        // Four pages: 3 full, 1 of 100 bytes.
        ("big.bin", pseudo_random(3 * 4096 + 100, 7)),
        ("docs/note.txt", b"a note in a directory\n".to_vec()),
        ("docs/deep/key.pem", pseudo_random(5000, 9)),
    ]
}

/// A node with vault `v` holding [`secrets`], and the backing blob of each.
pub struct Vault {
    /// The node (`m.node`), mounted only when a test mounts it.
    pub m: Mounted,
    pub dir: PathBuf,
    pub blobs: BTreeMap<String, PathBuf>,
    pub content: BTreeMap<String, Vec<u8>>,
}

fn blob_files(dir: &Path) -> BTreeSet<PathBuf> {
    files_under(&dir.join("contents"))
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n != ".diriv" && !n.ends_with(".name")
        })
        .collect()
}

impl Vault {
    pub fn new() -> Vault {
        Self::on(Node::with_vault())
    }

    /// Write [`secrets`] into vault `v` of `node` (one commit each).
    pub fn on(node: Node) -> Vault {
        let dir = node.vault_dir("v");
        let mut v = Vault {
            m: Mounted::unmounted(node),
            dir,
            blobs: BTreeMap::new(),
            content: BTreeMap::new(),
        };
        for (path, data) in secrets() {
            v.write(path, &data);
        }
        v
    }

    /// Write (or rewrite) a secret and learn its blob.
    pub fn write(&mut self, path: &str, data: &[u8]) {
        let before = blob_files(&self.dir);
        self.m.node.write(&format!("v:{path}"), data);
        let new: Vec<PathBuf> = blob_files(&self.dir).difference(&before).cloned().collect();
        match new.as_slice() {
            [] => assert!(self.blobs.contains_key(path), "no blob for {path}"),
            [one] => {
                self.blobs.insert(path.to_string(), one.clone());
            }
            more => panic!("writing {path} made several blobs: {more:?}"),
        }
        self.content.insert(path.to_string(), data.to_vec());
    }

    pub fn node(&self) -> &Node {
        &self.m.node
    }

    pub fn blob(&self, path: &str) -> &Path {
        &self.blobs[path]
    }

    /// A blob's path relative to the vault dir (`contents/...`), as git names it.
    pub fn rel(&self, path: &str) -> String {
        self.blob(path)
            .strip_prefix(&self.dir)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// `pkfs --json fsck` (all vaults): exit code and the JSON.
    pub fn fsck(&self) -> (i32, Value) {
        fsck_json(&self.m.node, &["fsck"])
    }

    /// `pkfs fsck --restore v`, human output: exit code and stdout.
    pub fn restore(&self) -> (i32, String) {
        let o = self.m.node.run(["fsck", "--restore", "v"]);
        (o.code, o.out())
    }

    /// Assert fsck is clean.
    pub fn assert_clean(&self) {
        let (code, j) = self.fsck();
        assert_eq!(code, 0, "fsck should be clean: {j:#}");
        assert_eq!(j["findings"], Value::Array(vec![]), "{j:#}");
    }

    /// Assert fsck exits 12 with a finding on plaintext `path`; returns the
    /// kinds found there.
    pub fn assert_finding(&self, path: &str) -> Vec<String> {
        let (code, j) = self.fsck();
        assert_eq!(code, ExitCode::FsckFindings as i32, "{j:#}");
        let kinds = kinds_at(&j, path);
        assert!(!kinds.is_empty(), "no finding names {path:?}: {j:#}");
        kinds
    }

    /// Every secret except `except` reads back through the CLI.
    pub fn assert_others_readable(&self, except: &[&str]) {
        for (p, data) in &self.content {
            if !except.contains(&p.as_str()) {
                assert_eq!(&self.m.node.cat(&format!("v:{p}")), data, "{p}");
            }
        }
    }

    /// After the repair every secret reads back its committed content.
    pub fn assert_all_readable(&self) {
        self.assert_others_readable(&[]);
    }

    /// The committed content of a tracked file at `rev` (ciphertext).
    pub fn git_show(&self, rev: &str, rel: &str) -> Vec<u8> {
        let o = git(&self.dir, &["cat-file", "blob", &format!("{rev}:{rel}")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    }

    /// The git blob id of a working file.
    pub fn hash_object(&self, file: &Path) -> String {
        let o = git(&self.dir, &["hash-object", &file.to_string_lossy()]);
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The loose object file of `id`.
    pub fn loose_object(&self, id: &str) -> PathBuf {
        let p = self.dir.join(".git/objects").join(&id[..2]).join(&id[2..]);
        assert!(p.is_file(), "object {id} is not loose");
        p
    }
}

impl Default for Vault {
    fn default() -> Self {
        Vault::new()
    }
}

/// `pkfs --json ARGS...`: exit code and the JSON on stdout.
pub fn fsck_json(node: &Node, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let o = node.run(a);
    assert!(
        o.code == 0 || o.code == ExitCode::FsckFindings as i32,
        "fsck failed: {o:?}"
    );
    (o.code, o.json())
}

/// The kinds of the findings on plaintext `path` (`tag-mismatch page 2`, ...).
pub fn kinds_at(j: &Value, path: &str) -> Vec<String> {
    findings(j)
        .iter()
        .filter(|f| f["path"] == path)
        .map(|f| match f["page"].as_u64() {
            Some(p) => format!("{} page {p}", f["kind"].as_str().unwrap_or("")),
            None => f["kind"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

pub fn findings(j: &Value) -> Vec<Value> {
    j["findings"].as_array().cloned().unwrap_or_default()
}

/// Rewrite a file with `f` applied to its bytes.
pub fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = fs::read(path).unwrap();
    f(&mut b);
    fs::write(path, b).unwrap();
}

/// Swap two files' bytes.
pub fn swap_files(a: &Path, b: &Path) {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    fs::write(a, y).unwrap();
    fs::write(b, x).unwrap();
}

/// Change one character of an encrypted name (keeping it base64url).
pub fn altered_name(name: &str) -> String {
    let mut c: Vec<char> = name.chars().collect();
    let i = c.len() / 2;
    c[i] = if c[i] == 'A' { 'B' } else { 'A' };
    c.into_iter().collect()
}

/// Expectations that hold only once blobs are bound to their place and
/// version (the lead's integrity change): collected rather than asserted at
/// once, so the rest of a case still runs; [`Pending::finish`] fails the test
/// if any did not hold.
#[derive(Default)]
pub struct Pending {
    failed: Vec<String>,
}

impl Pending {
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failed.push(what.into());
        }
    }

    pub fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "expectations that did not hold:\n  {}",
            self.failed.join("\n  ")
        );
    }
}
