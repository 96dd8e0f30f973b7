//! Secret commands that move data between vaults, the local disk and processes.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use pkfs::daemon::protocol::encode_env_values;
use pkfs::store::vpath::check_component;
use pkfs::store::{Kind, VPath};
use pkfs::vault::{Node, Vault};
use pkfs::Error;
use zeroize::Zeroizing;

use super::cmd_secret::Vaults;
use super::config::Config;
use super::{parse_target, progress, write_err, write_out, Target};

/// Copy a local directory tree into `dest`, as one commit. What a vault will not
/// take (a `.git`, a name too long, a symlink or special file) is skipped with
/// a notice when the tree is read; every other name is checked before anything
/// is written.
/// The tree is read whole before the vault is touched: here, or on the daemon
/// side by the client, which sends it as the command's input ([`encode_tree`]);
/// the daemon never reads the directory itself. Returns the file count.
pub fn import(vault: &Vault, dir: &Path, dest: &VPath, cfg: &Config) -> Result<usize, Error> {
    let tree = if cfg.remote() {
        let bytes = cfg
            .stdin
            .as_ref()
            .ok_or_else(|| Error::Usage("the client sent no directory to import".into()))?;
        decode_tree(bytes)?
    } else {
        read_tree(dir, cfg.quiet)?
    };
    let mut plan = Vec::with_capacity(tree.len());
    for (rel, data) in &tree {
        let mut target = dest.clone();
        for c in rel {
            target = target.join(c)?;
        }
        // `.versions` at the vault's top level.
        target.check_new()?;
        plan.push((target, data));
    }
    let bar = progress::bar(cfg, plan.len() as u64, "import");
    let res = vault.mutate(|tree, ch| {
        ch.extend(tree.mkdir(dest, true)?);
        let mut files = 0;
        for (target, data) in &plan {
            match data {
                None => ch.extend(tree.mkdir(target, true)?),
                Some(data) => {
                    ch.push(tree.write(target, data)?);
                    files += 1;
                }
            }
            bar.inc(1);
        }
        Ok(files)
    });
    bar.finish_and_clear();
    res
}

/// The input a command stores, as a stream: standard input, or the local
/// `file` (`secret add`), read by this process; on the daemon side, what the
/// client read and sent (the daemon never opens a path a client names).
pub fn input<'a>(cfg: &'a Config, file: Option<&Path>) -> Result<Box<dyn Read + 'a>, Error> {
    if cfg.remote() {
        let data = cfg
            .stdin
            .as_ref()
            .ok_or_else(|| Error::Usage("the client sent no input to the pkfs daemon".into()))?;
        return Ok(Box::new(&data[..]));
    }
    match file {
        None => Ok(Box::new(std::io::stdin().lock())),
        Some(f) => {
            let path = cfg.local_path(f);
            let opened = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            Ok(Box::new(opened))
        }
    }
}

/// A local tree to import: each entry's path below the imported directory
/// (its components) and, for a file, its bytes (`None`: a directory). Parents
/// come before their children.
pub type LocalTree = Vec<(Vec<Vec<u8>>, Option<Zeroizing<Vec<u8>>>)>;

/// Read the directory `dir` whole: its subdirectories and regular files
/// (anything else is skipped with a warning unless `quiet`).
pub fn read_tree(dir: &Path, quiet: bool) -> Result<LocalTree, Error> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory(dir.display().to_string()));
    }
    let mut tree: LocalTree = Vec::new();
    let mut stack: Vec<(PathBuf, Vec<Vec<u8>>)> = vec![(dir.to_path_buf(), Vec::new())];
    while let Some((local, inside)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&local)
            .map_err(|e| Error::io(&local, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| Error::io(&local, e))?;
        entries.sort_by_key(|e| e.file_name());
        for ent in entries {
            let path = ent.path();
            let name = ent.file_name();
            // What a vault will not take (a name longer than 255 bytes, one
            // with a NUL) is left out with a notice, not a reason to import
            // nothing.
            let refused = check_component(name.as_bytes()).err();
            if let Some(reason) = refused {
                if !quiet {
                    let why = match reason {
                        Error::InvalidName { reason, .. } => reason.to_string(),
                        e => e.to_string(),
                    };
                    write_err(format!("pkfs: skipped {path:?} ({why})\n").as_bytes());
                }
                continue;
            }
            let mut rel = inside.clone();
            rel.push(name.as_bytes().to_vec());
            let ft = ent.file_type().map_err(|e| Error::io(&path, e))?;
            if ft.is_dir() {
                tree.push((rel.clone(), None));
                stack.push((path, rel));
            } else if ft.is_file() {
                let data = super::remote::read_file(&path)?;
                tree.push((rel, Some(data)));
            } else if !quiet {
                write_err(
                    format!("pkfs: skipped {path:?} (not a regular file or directory)\n")
                        .as_bytes(),
                );
            }
        }
    }
    Ok(tree)
}

/// The bytes a client sends for `secret import` (postcard).
pub fn encode_tree(tree: &LocalTree) -> Zeroizing<Vec<u8>> {
    type WireRef<'a> = Vec<(&'a Vec<Vec<u8>>, Option<&'a [u8]>)>;
    let wire: WireRef = tree
        .iter()
        .map(|(rel, data)| (rel, data.as_ref().map(|d| &d[..])))
        .collect();
    // Encoding byte strings into memory cannot fail.
    Zeroizing::new(postcard::to_allocvec(&wire).unwrap_or_default())
}

/// Decode what [`encode_tree`] produced.
fn decode_tree(bytes: &[u8]) -> Result<LocalTree, Error> {
    type Wire = Vec<(Vec<Vec<u8>>, Option<Vec<u8>>)>;
    let bad = |e: String| Error::Usage(format!("malformed directory from the client: {e}"));
    let (wire, rest) = postcard::take_from_bytes::<Wire>(bytes).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes".into()));
    }
    Ok(wire
        .into_iter()
        .map(|(rel, data)| (rel, data.map(Zeroizing::new)))
        .collect())
}

/// Move `src` in one vault to `dst` in another: copy (one commit), then remove
/// (one commit).
pub fn move_between(node: &Node, src: &Target, dst: &Target) -> Result<(), Error> {
    let from = node.open_vault(&src.vault)?;
    let to = node.open_vault(&dst.vault)?;
    let kind = from.tree().stat(&src.path)?.kind;
    let mut dest = dst.path.clone();
    if to.tree().is_dir(&dest)? {
        dest = dest.join(src.path.name().unwrap_or_default())?;
    }
    to.mutate(|tree, ch| {
        if kind != Kind::Dir {
            ch.push(tree.write(&dest, &from.tree().read(&src.path)?)?);
            return Ok(());
        }
        if tree.exists(&dest)? {
            return Err(Error::Exists(dest.to_string()));
        }
        ch.extend(tree.mkdir(&dest, false)?);
        let mut walk = from.tree().walk(&src.path)?;
        walk.sort_by_key(|(p, _)| p.components().len());
        for (p, e) in walk {
            let rel = &p.components()[src.path.components().len()..];
            let mut target = dest.clone();
            for c in rel {
                target = target.join(c)?;
            }
            if e.kind == Kind::Dir {
                ch.extend(tree.mkdir(&target, false)?);
            } else {
                ch.push(tree.write(&target, &from.tree().read(&p)?)?);
            }
        }
        Ok(())
    })?;
    from.apply(|tree| tree.remove(&src.path, true))
}

/// An environment variable name for a secret's file name.
fn env_name(file_name: &[u8]) -> String {
    let mut s: String = file_name
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

use pkfs::daemon::protocol::EnvVars;

/// `VAULT[:PATH][=NAME]...` to (name, value) pairs. One trailing newline is
/// stripped from each value (what `echo VALUE | pkfs secret write` stores).
/// Two different secrets that give the same variable name are refused, naming
/// both; naming the same secret twice is fine. Symlinks and special files
/// inside a directory are skipped with a notice (unless `quiet`).
pub fn collect_env(vaults: &mut Vaults, targets: &[String], quiet: bool) -> Result<EnvVars, Error> {
    let mut vars: EnvVars = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    let mut set = |name: String, source: String, mut value: Zeroizing<Vec<u8>>| {
        if value.last() == Some(&b'\n') {
            value.pop();
        }
        if let Some(i) = vars.iter().position(|(n, _)| *n == name) {
            if sources[i] != source {
                return Err(Error::Usage(format!(
                    "{:?} and {:?} both give the variable {name}; rename one with =NAME",
                    sources[i], source
                )));
            }
            vars.remove(i);
            sources.remove(i);
        }
        vars.push((name, value));
        sources.push(source);
        Ok(())
    };
    for spec in targets {
        let (target, rename) = match spec.rsplit_once('=') {
            Some((t, n)) => (t, Some(n)),
            None => (spec.as_str(), None),
        };
        let t = parse_target(target)?;
        let tree = vaults.get(&t.vault)?.tree();
        let kind = tree.stat(&t.path)?.kind;
        let source = |p: &VPath| format!("{}:{}", t.vault, p);
        if kind == Kind::Dir {
            if rename.is_some() {
                return Err(Error::Usage(format!(
                    "{spec:?}: =NAME only applies to a single secret"
                )));
            }
            for (p, e) in tree.walk(&t.path)? {
                match e.kind {
                    Kind::Dir => {}
                    Kind::File => set(env_name(&e.name), source(&p), tree.read(&p)?)?,
                    Kind::Symlink | Kind::Special => {
                        if !quiet {
                            write_err(
                                format!("pkfs: skipped {:?} (not a regular file)\n", source(&p))
                                    .as_bytes(),
                            );
                        }
                    }
                }
            }
        } else {
            let name = match rename {
                Some(n) if valid_env_name(n) => n.to_string(),
                Some(n) => return Err(Error::Usage(format!("{n:?} is not a valid variable name"))),
                None => env_name(t.path.name().unwrap_or_default()),
            };
            set(name, source(&t.path), tree.read(&t.path)?)?;
        }
    }
    Ok(vars)
}

/// Replace this process with `command`, secrets added to its environment.
/// Unless `keep_pkfs_env`, every `PKFS_*` variable is removed first: the child
/// gets no way to unlock the node (`PKFS_PASSFILE`) nor a pointer to it.
pub fn exec_with(vars: &EnvVars, command: &[String], keep_pkfs_env: bool) -> Error {
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    if !keep_pkfs_env {
        for (name, _) in std::env::vars_os() {
            if name.as_encoded_bytes().starts_with(b"PKFS_") {
                cmd.env_remove(name);
            }
        }
    }
    for (n, v) in vars {
        cmd.env(n, OsStr::from_bytes(v));
    }
    pkfs::vault::home::restore_user_umask();
    let err = cmd.exec();
    Error::io(&command[0], err)
}

/// The daemon side of `secret env -- CMD`: the variables, encoded for the
/// client, which runs CMD.
pub fn send_env_values(vars: &EnvVars) -> Result<(), Error> {
    let pairs: Vec<(String, &[u8])> = vars.iter().map(|(n, v)| (n.clone(), &v[..])).collect();
    write_out(&encode_env_values(&pairs)).map_err(|e| Error::io("stdout", e))
}

/// Print `export NAME='value'` lines, quoted for POSIX shells.
pub fn print_exports(vars: &EnvVars) -> Result<(), Error> {
    for (n, v) in vars {
        let mut line = Zeroizing::new(format!("export {n}='").into_bytes());
        for &b in v.iter() {
            if b == b'\'' {
                line.extend_from_slice(b"'\\''");
            } else {
                line.push(b);
            }
        }
        line.extend_from_slice(b"'\n");
        write_out(&line).map_err(|e| Error::io("stdout", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert_eq!(env_name(b"db-password.txt"), "db_password_txt");
        assert_eq!(env_name(b"1key"), "_1key");
        assert!(valid_env_name("API_KEY"));
        assert!(!valid_env_name("1A") && !valid_env_name("A-B") && !valid_env_name(""));
    }
}
