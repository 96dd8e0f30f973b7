//! The [`Node`] fixture: a home in a temporary directory, with shortcuts for the
//! secret, vault and version commands most tests repeat.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Cmd, ExitCode, Output, PASSPHRASE};

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

/// The names `vault list --json` gives, in its order.
pub fn vault_names(n: &Node) -> Vec<String> {
    n.ok(["--json", "vault", "list"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

/// A set of owned strings, to compare listings without caring about order.
pub fn set(items: &[&str]) -> std::collections::BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What `secret ls TARGET` lists, as a set.
pub fn ls_set(n: &Node, target: &str) -> std::collections::BTreeSet<String> {
    n.ls(target).into_iter().collect()
}
