//! A `pkfs version checkout` killed with SIGKILL at a random moment leaves the
//! vault at the old version or at the new one, never a mix: the next command
//! finishes an interrupted checkout (its target is journaled first).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{clean_env, root_key, Node, BIN};

/// Files of each version: version 1 has `d{i}/f{j}` = "one-…"; version 2
/// rewrites half of them, removes a quarter and adds new ones.
fn version(n: &Node, which: u8) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for i in 0..20 {
        for j in 0..40 {
            let rel = format!("d{i}/f{j}");
            let data = match (which, (i * 40 + j) % 4) {
                (1, _) => format!("one {rel} {}", "x".repeat(j * 50)),
                (_, 0) => continue,
                (_, 1) => format!("two {rel}"),
                _ => format!("one {rel} {}", "x".repeat(j * 50)),
            };
            files.insert(rel, data.into_bytes());
        }
        if which == 2 {
            files.insert(format!("d{i}/new"), format!("new in {i}").into_bytes());
        }
    }
    let src = n.scratch().join(format!("src{which}"));
    let _ = std::fs::remove_dir_all(&src);
    for (rel, data) in &files {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    files
}

/// Backing path (relative to the vault dir) → git blob id, for every file
/// under `contents/` of the work tree.
fn work_tree(vault_dir: &Path) -> BTreeMap<String, git2::Oid> {
    let mut out = BTreeMap::new();
    let mut stack = vec![vault_dir.join("contents")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(vault_dir)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                out.insert(
                    rel,
                    git2::Oid::hash_file(git2::ObjectType::Blob, &p).unwrap(),
                );
            }
        }
    }
    out
}

/// The same map for commit `id` of the vault's history.
fn committed(vault_dir: &Path, id: &str) -> BTreeMap<String, git2::Oid> {
    let repo = git2::Repository::open(vault_dir.join(".git")).unwrap();
    let tree = repo
        .find_commit(git2::Oid::from_str(id).unwrap())
        .unwrap()
        .tree()
        .unwrap();
    let mut out = BTreeMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            out.insert(format!("{root}{}", e.name().unwrap()), e.id());
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

#[test]
fn a_killed_checkout_leaves_the_old_or_the_new_version() {
    let n = Node::with_vault();
    let dir = n.vault_dir("v");
    let v1 = version(&n, 1);
    n.ok([
        "secret",
        "import",
        n.scratch().join("src1").to_str().unwrap(),
        "v:t",
    ]);
    let id1 = n.log("v", false)[0]["id"].as_str().unwrap().to_string();
    let v2 = version(&n, 2);
    n.ok(["secret", "rm", "-r", "v:t"]);
    n.ok([
        "secret",
        "import",
        n.scratch().join("src2").to_str().unwrap(),
        "v:t",
    ]);
    let id2 = n.log("v", false)[0]["id"].as_str().unwrap().to_string();
    let trees = [
        (id1.clone(), committed(&dir, &id1), &v1),
        (id2.clone(), committed(&dir, &id2), &v2),
    ];
    assert_eq!(work_tree(&dir), trees[1].1);

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let (mut killed, mut finished, mut at) = (0, 0, id2.clone());
    for round in 0..8u64 {
        let target = if at == id1 { id2.clone() } else { id1.clone() };
        let mut c = Command::new(BIN);
        clean_env(&mut c);
        c.args(["--home", n.home.to_str().unwrap(), "--passfile"])
            .arg(&n.passfile)
            .args(["version", "checkout", "v", &target])
            .env("PKFS_TEST_ONLY_FAST_KDF", "1")
            .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(0))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        // Somewhere inside the checkout (unlock with cheap KDF takes a few ms).
        let delay = 5 + (seed.wrapping_mul(round + 1) >> 7) % 120;
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed += 1;
        }
        // The next command sees one whole version: the old one (killed before
        // the journal record) or the new one.
        let o = n.ok(["--json", "version", "log", "v"]);
        if o.stderr.contains("interrupted checkout") {
            finished += 1;
        }
        let head = o.json();
        let head_id = head
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["head"] == true)
            .map(|e| e["id"].as_str().unwrap().to_string())
            .expect("a head");
        let (_, tree, files) = trees
            .iter()
            .find(|(id, _, _)| *id == head_id)
            .expect("HEAD is one of the two versions");
        assert!(
            work_tree(&dir) == *tree,
            "round {round} (killed after {delay} ms): HEAD {head_id} but the files are a mix"
        );
        // And the CLI reads that version (a sample of files).
        for (rel, data) in files.iter().step_by(97) {
            assert_eq!(n.cat(&format!("v:t/{rel}")), *data, "round {round}: {rel}");
        }
        at = head_id;
    }
    eprintln!("{killed} of 8 checkouts were killed, {finished} finished by the next command");
    // Moving on works normally afterwards.
    n.ok(["version", "checkout", "v", "latest"]);
    assert_eq!(work_tree(&dir), trees[1].1);
    n.ok(["secret", "write", "v:after"]);
    assert_eq!(n.cat("v:t/d3/new"), b"new in 3");
}

/// A git operation killed half-way (a commit, a checkout) leaves lock files in
/// the vault's `.git`; the next command removes them instead of failing with
/// "the index is locked" forever.
#[test]
fn git_lock_files_left_by_a_killed_command_do_not_block_the_next_one() {
    let n = Node::with_vault();
    let dir = n.vault_dir("v");
    n.ok(["secret", "write", "v:a"]);
    let before = n.log("v", false).len();
    let git = dir.join(".git");
    std::fs::create_dir_all(git.join("refs/heads")).unwrap();
    let locks = [
        git.join("index.lock"),
        git.join("HEAD.lock"),
        git.join("refs/heads/main.lock"),
    ];
    for l in &locks {
        std::fs::write(l, b"").unwrap();
    }
    n.ok(["secret", "write", "v:b"]);
    assert_eq!(
        n.log("v", false).len(),
        before + 1,
        "the write was committed"
    );
    for l in &locks {
        assert!(!l.exists(), "{} was left", l.display());
    }
    let first = n.log("v", false).last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    n.ok(["version", "checkout", "v", &first]);
    n.ok(["version", "checkout", "v", "latest"]);
}
