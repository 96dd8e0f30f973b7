//! `pkfs vault ...`.

use std::io::{BufRead, IsTerminal};

use pkfs::Error;
use serde_json::json;

use super::config::Config;
use super::{cmd_keygen, fmt_time, shown_name, unlock, write_err, Out};
use pkfs::args::VaultCmd;
use pkfs::vault::keychain::ROTATE_AFTER;

pub fn run(cfg: &Config, cmd: VaultCmd) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let mut node = unlock(cfg)?;
    match cmd {
        VaultCmd::Create { name, rotate_after } => {
            let mut settings = std::collections::BTreeMap::new();
            if let Some(age) = rotate_after.as_deref().map(cmd_keygen::parse_rotate_after) {
                if let Some(a) = age? {
                    settings.insert(ROTATE_AFTER.to_string(), a.as_millis().to_string());
                }
            }
            let rec = node.create_vault_with(&name, settings)?;
            if out.json() {
                out.emit(&json!({"name": rec.name, "id": rec.id}))?;
            } else {
                out.say(format!("Created vault {} ({})", rec.name, rec.id));
            }
        }
        VaultCmd::List => {
            let mut list: Vec<_> = node.vaults().to_vec();
            list.sort_by(|a, b| a.name.cmp(&b.name));
            if out.json() {
                let v: Vec<_> = list
                    .iter()
                    .map(|r| json!({"name": r.name, "id": r.id, "created": r.created}))
                    .collect();
                out.emit(&v)?;
            } else {
                for r in list {
                    out.data(format!("{}\t{}", shown_name(r.name.as_bytes()), r.id));
                }
            }
        }
        VaultCmd::Rename { old, new } => {
            node.rename_vault(&old, &new)?;
            out.say(format!("Renamed vault {old} to {new}"));
        }
        VaultCmd::Delete { name, yes } => {
            node.vaults()
                .iter()
                .find(|v| v.name == name)
                .ok_or_else(|| Error::VaultUndefined(name.clone()))?;
            if !yes {
                confirm_delete(cfg, &name)?;
            }
            node.delete_vault(&name)?;
            out.say(format!("Deleted vault {name}"));
        }
        VaultCmd::Stat { name } => {
            let s = node.open_vault(&name)?.stat()?;
            if out.json() {
                out.emit(&s)?;
            } else {
                out.data(format!("name:        {}", s.name));
                out.data(format!("id:          {}", s.id));
                out.data(format!("created:     {}", fmt_time(s.created)));
                out.data(format!("files:       {}", s.files));
                out.data(format!("directories: {}", s.directories));
                out.data(format!("bytes:       {}", s.bytes));
                out.data(format!("commits:     {}", s.commits));
                let at = if s.at_latest {
                    "latest"
                } else {
                    "older version; `pkfs version checkout VAULT latest` returns"
                };
                out.data(format!("head:        {} ({at})", s.head));
                let rotate = s
                    .rotate_after_ms
                    .map(cmd_keygen::show_ms)
                    .unwrap_or_else(|| "never (by hand: `pkfs vault rotate-key`)".into());
                out.data(format!("rotate after: {rotate}"));
                out.data("key generations:");
                for g in &s.generations {
                    let newest = if g.current { "  (newest)" } else { "" };
                    out.data(format!(
                        "  {:>4}  created {}  {} file(s){newest}",
                        g.generation,
                        fmt_time(g.created),
                        g.blobs
                    ));
                }
                for d in &s.dropped {
                    out.data(format!(
                        "  {:>4}  dropped {}  (what only it encrypted can no longer be read)",
                        d.generation,
                        fmt_time(d.dropped)
                    ));
                }
            }
        }
        VaultCmd::Set { name, rotate_after } => {
            cmd_keygen::set(cfg, &mut node, &name, rotate_after.as_deref())?
        }
        VaultCmd::RotateKey { name } => cmd_keygen::rotate(cfg, &mut node, &name)?,
        VaultCmd::Reencrypt { name } => cmd_keygen::reencrypt(cfg, &mut node, &name)?,
        VaultCmd::DropKey { name, generation } => {
            cmd_keygen::drop_key(cfg, &mut node, &name, generation)?
        }
        VaultCmd::Shred {
            name,
            yes,
            backup,
            backup_to,
            backup_export,
            backup_written,
        } => {
            let backup = backup.as_deref().zip(backup_to.as_deref());
            let step = cmd_keygen::ShredStep {
                export: backup_export,
                written: backup_written.as_deref(),
            };
            cmd_keygen::shred(cfg, &mut node, &name, yes, backup, step)?
        }
    }
    Ok(())
}

/// Ask on the terminal for the vault's name. Run by the daemon, there is no
/// terminal: the client asks before sending, and adds `--yes`.
pub(super) fn confirm_delete(cfg: &Config, name: &str) -> Result<(), Error> {
    confirm(cfg, name, "Delete", "")
}

/// [`confirm_delete`] for `verb` (`Delete`, `Shred`); `how` is said after
/// "with all its secrets and history".
pub(super) fn confirm(cfg: &Config, name: &str, verb: &str, how: &str) -> Result<(), Error> {
    let stdin = std::io::stdin();
    if cfg.remote() || !stdin.is_terminal() {
        return Err(Error::Usage(format!(
            "refusing to {} vault {name:?} without confirmation; pass --yes",
            verb.to_lowercase()
        )));
    }
    let how = if how.is_empty() {
        String::new()
    } else {
        format!(", {how}")
    };
    write_err(
        format!(
            "{verb} vault '{name}' with all its secrets and history{how}? Type its name to confirm: "
        )
        .as_bytes(),
    );
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("stdin", e))?;
    if line.trim_end_matches(['\n', '\r']) != name {
        return Err(Error::Usage("not confirmed; nothing was deleted".into()));
    }
    Ok(())
}
