//! `pkfs version log|checkout`.

use serde_json::json;

use super::config::Config;
use super::{fmt_time, progress, unlock, Out};
use pkfs::args::VersionCmd;

pub fn run(cfg: &Config, cmd: VersionCmd) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let node = unlock(cfg)?;
    match cmd {
        VersionCmd::Log {
            vault,
            max_count,
            all,
        } => {
            let v = node.open_vault(&vault)?;
            let log = v.history().log(max_count, all)?;
            let ids: Vec<String> = log.iter().map(|e| e.id.clone()).collect();
            let lost = pkfs::vault::keychain::unreadable_commits(&v, &ids);
            let lost_of = |id: &str| -> Vec<u32> {
                lost.get(id)
                    .map(|g| g.iter().copied().collect())
                    .unwrap_or_default()
            };
            if out.json() {
                let list: Vec<_> = log
                    .iter()
                    .map(|e| {
                        json!({"id": e.id, "time": e.time, "head": e.head,
                               "discarded": e.discarded, "changes": e.changes,
                               "unreadable_generations": lost_of(&e.id)})
                    })
                    .collect();
                return out.emit(&list);
            }
            for (i, e) in log.iter().enumerate() {
                if i > 0 {
                    out.data("");
                }
                let mut tags = Vec::new();
                if e.head {
                    tags.push("HEAD");
                }
                if e.discarded {
                    tags.push("discarded");
                }
                let tags = if tags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", tags.join(", "))
                };
                out.data(format!("commit {}{tags}", e.id));
                out.data(format!("Date:   {}", fmt_time(e.time)));
                let gone = lost_of(&e.id);
                if !gone.is_empty() {
                    let gens: Vec<String> = gone.iter().map(u32::to_string).collect();
                    out.data(format!(
                        "Unreadable: files of this version are under dropped key generation(s) \
                         {}, and can no longer be read",
                        gens.join(", ")
                    ));
                }
                if e.changes.is_empty() {
                    out.data("    (vault created)");
                }
                for c in &e.changes {
                    let word = serde_json::to_value(c.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    out.data(format!("    {word:<9}{}", c.path));
                }
            }
        }
        VersionCmd::Checkout { vault, reference } => {
            let v = node.open_vault(&vault)?;
            let bar = progress::bar(cfg, 0, "checkout");
            let id = v
                .history()
                .checkout_with_progress(&reference, &mut |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                });
            bar.finish_and_clear();
            let id = id?;
            let head = v.history().head()?;
            let lost =
                pkfs::vault::keychain::unreadable_commits(&v, std::slice::from_ref(&head.id));
            if let Some(gens) = lost.values().next() {
                let gens: Vec<String> = gens.iter().map(u32::to_string).collect();
                super::write_err(
                    format!(
                        "pkfs: warning: files of this version are under dropped key \
                         generation(s) {}, and can no longer be read\n",
                        gens.join(", ")
                    )
                    .as_bytes(),
                );
            }
            if out.json() {
                out.emit(&json!({"vault": vault, "id": id, "at_latest": head.at_latest}))?;
            } else if head.at_latest {
                out.say(format!("{vault} is at the latest version {id}"));
            } else {
                out.say(format!(
                    "{vault} is now at {id}; a change made here discards the later versions \
                     (`pkfs version checkout {vault} latest` goes back)"
                ));
            }
        }
    }
    Ok(())
}
