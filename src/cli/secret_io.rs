//! Secret commands that move data between vaults, the local disk and processes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use pkfs::daemon::protocol::encode_env_values;
use pkfs::store::{Kind, VPath};
use pkfs::vault::{Node, Vault};
use pkfs::Error;
use zeroize::Zeroizing;

use super::cmd_secret::Vaults;
use super::config::Config;
use super::{parse_target, progress, write_err, write_out, Target};

/// Copy a local directory tree into `dest`, as one commit. Every name is checked
/// before anything is written, so an invalid one (say `.git`) imports nothing.
/// Returns the file count.
pub fn import(vault: &Vault, dir: &Path, dest: &VPath, cfg: &Config) -> Result<usize, Error> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory(dir.display().to_string()));
    }
    let plan = plan_import(dir, dest, cfg.quiet)?;
    let bar = progress::bar(cfg, plan.len() as u64, "import");
    let res = vault.mutate(|tree, ch| {
        ch.extend(tree.mkdir(dest, true)?);
        let mut files = 0;
        for (local, target, is_dir) in &plan {
            if *is_dir {
                ch.extend(tree.mkdir(target, true)?);
            } else {
                let data = Zeroizing::new(std::fs::read(local).map_err(|e| Error::io(local, e))?);
                ch.push(tree.write(target, &data)?);
                files += 1;
            }
            bar.inc(1);
        }
        Ok(files)
    });
    bar.finish_and_clear();
    res
}

/// (local path, vault path, is a directory) for every entry below `dir`, parents
/// before children.
fn plan_import(
    dir: &Path,
    dest: &VPath,
    quiet: bool,
) -> Result<Vec<(PathBuf, VPath, bool)>, Error> {
    let mut plan = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), dest.clone())];
    while let Some((local, inside)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&local)
            .map_err(|e| Error::io(&local, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| Error::io(&local, e))?;
        entries.sort_by_key(|e| e.file_name());
        for ent in entries {
            let path = ent.path();
            let target = inside.join(ent.file_name().as_bytes())?;
            let ft = ent.file_type().map_err(|e| Error::io(&path, e))?;
            if ft.is_dir() {
                plan.push((path.clone(), target.clone(), true));
                stack.push((path, target));
            } else if ft.is_file() {
                plan.push((path, target, false));
            } else if !quiet {
                write_err(
                    format!("pkfs: skipped {path:?} (not a regular file or directory)\n")
                        .as_bytes(),
                );
            }
        }
    }
    Ok(plan)
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

/// `VAULT[:PATH][=NAME]...` to (name, value) pairs; later ones win.
pub fn collect_env(vaults: &mut Vaults, targets: &[String]) -> Result<EnvVars, Error> {
    let mut vars: EnvVars = Vec::new();
    let mut set = |name: String, value: Zeroizing<Vec<u8>>| {
        vars.retain(|(n, _)| *n != name);
        vars.push((name, value));
    };
    for spec in targets {
        let (target, rename) = match spec.rsplit_once('=') {
            Some((t, n)) => (t, Some(n)),
            None => (spec.as_str(), None),
        };
        let t = parse_target(target)?;
        let tree = vaults.get(&t.vault)?.tree();
        let kind = tree.stat(&t.path)?.kind;
        if kind == Kind::Dir {
            if rename.is_some() {
                return Err(Error::Usage(format!(
                    "{spec:?}: =NAME only applies to a single secret"
                )));
            }
            for (p, e) in tree.walk(&t.path)? {
                if e.kind != Kind::Dir {
                    set(env_name(&e.name), tree.read(&p)?);
                }
            }
        } else {
            let name = match rename {
                Some(n) if valid_env_name(n) => n.to_string(),
                Some(n) => return Err(Error::Usage(format!("{n:?} is not a valid variable name"))),
                None => env_name(t.path.name().unwrap_or_default()),
            };
            set(name, tree.read(&t.path)?);
        }
    }
    Ok(vars)
}

/// Replace this process with `command`, secrets added to its environment.
pub fn exec_with(vars: &EnvVars, command: &[String]) -> Error {
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
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
