//! Running the git CLI on the repositories inside a home, with user and system
//! configuration shut out.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::clean_env;

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
