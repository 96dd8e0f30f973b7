//! `pkfs secret ...` (Polykey's `pk secrets`).

use std::collections::HashMap;

use pkfs::store::vpath::escape_name;
use pkfs::store::{Change, Kind, VPath};
use pkfs::vault::{Node, Txn, Vault};
use pkfs::Error;
use serde_json::json;

use super::config::Config;
use super::remote::input_limit;
use super::secret_verbs::{generate, grep};
use super::{fmt_time, parse_entry, parse_target, secret_io, shown_name, unlock, write_out, Out};
use pkfs::args::SecretCmd;

/// Vaults opened so far in this command, by name.
pub(super) struct Vaults<'n> {
    node: &'n Node,
    open: HashMap<String, Vault>,
}

impl<'n> Vaults<'n> {
    pub fn new(node: &'n Node) -> Self {
        Vaults {
            node,
            open: HashMap::new(),
        }
    }

    pub fn get(&mut self, name: &str) -> Result<&Vault, Error> {
        if !self.open.contains_key(name) {
            let v = self.node.open_vault(name)?;
            self.open.insert(name.to_string(), v);
        }
        self.open
            .get(name)
            .ok_or_else(|| Error::VaultUndefined(name.to_string()))
    }
}

pub fn run(cfg: &Config, cmd: SecretCmd) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let node = unlock(cfg)?;
    let mut vaults = Vaults::new(&node);
    match cmd {
        SecretCmd::Write { target } => {
            let t = parse_entry(&target)?;
            if t.dir {
                return Err(Error::Usage(format!(
                    "{target:?}: expected a secret's path, not a directory"
                ))
                .into());
            }
            let mut input = secret_io::input(cfg, None)?;
            vaults
                .get(&t.vault)?
                .write_streaming(&t.path, &mut input, input_limit())?;
        }
        SecretCmd::Add { file, target } => {
            let t = parse_target(&target)?;
            let mut input = secret_io::input(cfg, Some(&file))?;
            let vault = vaults.get(&t.vault)?;
            let mut path = t.path.clone();
            if t.dir || vault.tree().is_dir(&path)? {
                let name = file
                    .file_name()
                    .ok_or_else(|| Error::Usage(format!("{file:?}: not a file name")))?;
                path = path.join(name.as_encoded_bytes())?;
            }
            vault.write_streaming(&path, &mut input, input_limit())?;
        }
        SecretCmd::Cat { targets, clip } => {
            if clip && targets.len() != 1 {
                return Err(Error::Usage("--clip takes one secret".into()).into());
            }
            let parsed: Vec<_> = targets
                .iter()
                .map(|t| parse_entry(t))
                .collect::<Result<_, _>>()?;
            for t in parsed {
                // A big file goes out a batch of pages at a time.
                vaults
                    .get(&t.vault)?
                    .tree()
                    .read_streaming(&t.path, &mut |piece| {
                        write_out(piece).map_err(|e| Error::io("stdout", e))
                    })?;
            }
        }
        SecretCmd::Ls { target, long } => {
            let t = parse_target(&target)?;
            let listing = vaults.get(&t.vault)?.tree().list(&t.path)?;
            if out.json() {
                let v: Vec<_> = listing
                    .entries
                    .iter()
                    .map(|e| {
                        json!({"name": escape_name(&e.name), "kind": e.kind,
                               "size": e.size, "mtime": e.mtime, "mode": e.mode})
                    })
                    .collect();
                out.emit(&v)?;
            } else {
                for e in &listing.entries {
                    let name = shown_name(&e.name);
                    let suffix = if e.kind == Kind::Dir { "/" } else { "" };
                    if long {
                        out.data(format!(
                            "{:<4} {:>10} {} {name}{suffix}",
                            kind_word(e.kind),
                            e.size,
                            fmt_time(e.mtime)
                        ));
                    } else {
                        out.data(format!("{name}{suffix}"));
                    }
                }
            }
            if !listing.undecryptable.is_empty() {
                return Err(Error::corrupt(
                    format!("{}:{}", t.vault, t.path),
                    format!(
                        "{} entr(y/ies) whose names do not authenticate (run `pkfs fsck`)",
                        listing.undecryptable.len()
                    ),
                )
                .into());
            }
        }
        SecretCmd::Mkdir { targets, parents } => {
            per_vault(&mut vaults, &targets, |tree, p| tree.mkdir(p, parents))?;
        }
        SecretCmd::Rm { targets, recursive } => {
            per_vault(&mut vaults, &targets, |tree, p| tree.remove(p, recursive))?;
        }
        SecretCmd::Mv { source, dest } => {
            let s = parse_entry(&source)?;
            let d = if dest.contains(':') {
                parse_target(&dest)?
            } else {
                parse_target(&format!("{}:{dest}", s.vault))?
            };
            if s.vault == d.vault {
                vaults.get(&s.vault)?.rename(&s.path, &d.path)?;
            } else {
                secret_io::move_between(&node, &s, &d)?;
            }
        }
        SecretCmd::Stat { target } => {
            let t = parse_target(&target)?;
            let e = vaults.get(&t.vault)?.tree().stat(&t.path)?;
            if out.json() {
                out.emit(
                    &json!({"vault": t.vault, "path": t.path.to_string(), "kind": e.kind,
                                 "size": e.size, "mode": e.mode, "mtime": e.mtime}),
                )?;
            } else {
                out.data(format!("path:     {}:{}", t.vault, t.path));
                out.data(format!("kind:     {}", kind_word(e.kind)));
                out.data(format!("size:     {}", e.size));
                out.data(format!("mode:     {:04o}", e.mode));
                out.data(format!("modified: {}", fmt_time(e.mtime)));
            }
        }
        SecretCmd::Import { dir, target } => {
            let t = parse_target(&target)?;
            let dir = cfg.local_path(&dir);
            let n = secret_io::import(vaults.get(&t.vault)?, &dir, &t.path, cfg)?;
            out.say(format!("Imported {n} file(s) into {}:{}", t.vault, t.path));
        }
        SecretCmd::Edit { .. } => {
            return Err(Error::Usage("the pkfs daemon does not run an editor".into()).into());
        }
        SecretCmd::Generate {
            target,
            length,
            no_symbols,
            words,
            force,
            ..
        } => {
            let kind = match words {
                Some(n) => generate::Kind::Words(n.into()),
                None => generate::Kind::Chars {
                    length: length.into(),
                    symbols: !no_symbols,
                },
            };
            generate::run(&mut vaults, &target, &kind, force)?;
        }
        SecretCmd::Grep {
            pattern,
            vaults: names,
            ignore_case,
        } => grep::run(&node, &mut vaults, &pattern, &names, ignore_case)?,
        SecretCmd::Env {
            targets,
            command,
            keep_pkfs_env,
        } => {
            // The daemon never starts a command: it hands the variables to the
            // client, which does (see remote.rs).
            if cfg.remote() && !command.is_empty() && !cfg.env_values {
                return Err(Error::Usage(
                    "the pkfs daemon does not run commands; the client must".into(),
                )
                .into());
            }
            let vars = secret_io::collect_env(&mut vaults, &targets, cfg.quiet)?;
            if command.is_empty() {
                secret_io::print_exports(&vars)?;
            } else if cfg.remote() {
                secret_io::send_env_values(&vars)?;
            } else {
                return Err(secret_io::exec_with(&vars, &command, keep_pkfs_env).into());
            }
        }
    }
    Ok(())
}

/// Apply `op` to every target, with one commit per vault. All targets are
/// parsed before anything changes.
fn per_vault(
    vaults: &mut Vaults,
    targets: &[String],
    op: impl Fn(&Txn, &VPath) -> Result<Vec<Change>, Error>,
) -> Result<(), Error> {
    let parsed: Vec<_> = targets
        .iter()
        .map(|t| parse_entry(t))
        .collect::<Result<_, _>>()?;
    let mut order: Vec<&str> = Vec::new();
    for t in &parsed {
        if !order.contains(&t.vault.as_str()) {
            order.push(&t.vault);
        }
    }
    for name in order {
        vaults.get(name)?.mutate(|tree, ch| {
            for t in parsed.iter().filter(|t| t.vault == name) {
                ch.extend(op(tree, &t.path)?);
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn kind_word(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "link",
        Kind::Special => "special",
    }
}
