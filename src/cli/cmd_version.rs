//! `pkfs version log|diff|show|restore|checkout`.

use serde_json::json;

use super::config::Config;
use super::{progress, unlock, Out};
use pkfs::args::VersionCmd;

pub fn run(cfg: &Config, cmd: VersionCmd) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let node = unlock(cfg)?;
    match cmd {
        VersionCmd::Log {
            vault,
            max_count,
            all,
            name_status,
        } => {
            let v = node.open_vault(&vault)?;
            let log = v.history().log(max_count, all)?;
            let ids: Vec<String> = log.iter().map(|e| e.id.clone()).collect();
            let lost = pkfs::vault::keychain::unreadable_commits(&v, &ids);
            super::cmd_version_log::print(&out, &log, name_status, &|id: &str| {
                lost.get(id)
                    .map(|g| g.iter().copied().collect())
                    .unwrap_or_default()
            })?;
        }
        VersionCmd::Diff {
            vault,
            ref1,
            ref2,
            name_status,
            stat,
        } => {
            let v = node.open_vault(&vault)?;
            super::cmd_version_diff::diff(&out, &v, (ref1, ref2), name_status, stat)?;
        }
        VersionCmd::Show { vault, target } => {
            let v = node.open_vault(&vault)?;
            super::cmd_version_diff::show(&out, &v, &vault, &target)?;
        }
        VersionCmd::Restore {
            vault,
            reference,
            paths,
        } => {
            let v = node.open_vault(&vault)?;
            super::cmd_version_diff::restore(&out, &v, &vault, &reference, &paths)?;
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
