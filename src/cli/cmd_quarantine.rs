//! `pkfs quarantine list [VAULT...]` and `pkfs quarantine restore VAULT BATCH`.

use pkfs::args::QuarantineCmd;
use pkfs::store::quarantine::plain_path;
use serde_json::json;

use super::config::Config;
use super::{shown_name, unlock, write_err, Out};

pub fn run(cfg: &Config, cmd: QuarantineCmd) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let node = unlock(cfg)?;
    match cmd {
        QuarantineCmd::List { vaults } => {
            let mut rows = Vec::new();
            for name in node.names_or_all(&vaults) {
                let entries = node.quarantined(&name)?;
                if entries.is_empty() {
                    continue;
                }
                let vault = node.open_vault(&name)?;
                let qdir = vault.dir().join("quarantine");
                for q in entries {
                    let shown = plain_path(vault.tree(), &qdir.join(&q.batch), &q.rel)
                        .map(|p| p.to_string());
                    rows.push((name.clone(), q, shown));
                }
            }
            if out.json() {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(vault, q, shown)| {
                        json!({
                            "vault": vault, "batch": q.batch, "path": shown,
                            "backing": q.rel, "dir": q.is_dir,
                            "occupied": q.occupied, "indexed": !q.rel.is_empty(),
                        })
                    })
                    .collect();
                return out.emit(&v);
            }
            for (vault, q, shown) in rows {
                let path = match (&shown, q.rel.is_empty()) {
                    (_, true) => "(no index)".to_string(),
                    (Some(p), _) => shown_name(p.as_bytes()),
                    (None, _) => q.rel.clone(),
                };
                let kind = if q.is_dir { "directory" } else { "file" };
                let note = if q.occupied { " (occupied)" } else { "" };
                out.data(format!(
                    "{} {} {path} {kind}{note}",
                    shown_name(vault.as_bytes()),
                    q.batch
                ));
            }
        }
        QuarantineCmd::Restore { vault, batch } => {
            let done = node.restore_quarantined(&vault, &batch)?;
            let mut kept = 0;
            for r in &done {
                let path = r.shown.clone().unwrap_or_else(|| r.entry.rel.clone());
                let path = shown_name(path.as_bytes());
                match r.outcome {
                    Ok(()) => out.say(format!("restored {path}")),
                    Err(why) => {
                        kept += 1;
                        write_err(format!("pkfs: not restored: {path}: {why}\n").as_bytes());
                    }
                }
            }
            if kept > 0 {
                return Err(anyhow::anyhow!(
                    "{kept} of {} entries of batch {batch:?} stayed in quarantine",
                    done.len()
                ));
            }
        }
    }
    Ok(())
}
