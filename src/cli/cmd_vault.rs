//! `pkfs vault ...`.

use std::io::{BufRead, IsTerminal};

use pkfs::Error;
use serde_json::json;

use super::config::Config;
use super::{fmt_time, shown_name, unlock, write_err, Out};
use pkfs::args::VaultCmd;

pub fn run(cfg: &Config, cmd: VaultCmd) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let mut node = unlock(cfg)?;
    match cmd {
        VaultCmd::Create { name } => {
            let rec = node.create_vault(&name)?;
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
            }
        }
    }
    Ok(())
}

/// Ask on the terminal for the vault's name. Run by the daemon, there is no
/// terminal: the client asks before sending, and adds `--yes`.
pub(super) fn confirm_delete(cfg: &Config, name: &str) -> Result<(), Error> {
    let stdin = std::io::stdin();
    if cfg.remote() || !stdin.is_terminal() {
        return Err(Error::Usage(format!(
            "refusing to delete vault {name:?} without confirmation; pass --yes"
        )));
    }
    write_err(
        format!(
            "Delete vault '{name}' with all its secrets and history? Type its name to confirm: "
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
