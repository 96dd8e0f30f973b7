//! `pkfs init`, `passwd`, `key rotate-root`, `gc`.

use std::path::Path;

use pkfs::vault::{Node, Passphrase};
use pkfs::Error;
use serde_json::json;

use super::config::{Config, PassSource};
use super::{new_root_key, pass, unlock, unlock_resealing, unlock_verified, Out};
use pkfs::args::KeyCmd;

pub fn init(cfg: &Config) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    if cfg.home.join("root.key").exists() {
        return Err(Error::AlreadyInitialized {
            home: cfg.home.clone(),
        }
        .into());
    }
    let pass = pass::read(&cfg.pass, "New passphrase: ", true)?;
    let root = new_root_key(cfg)?;
    let node = Node::init(&cfg.home, Box::new(Passphrase::new(pass, cfg.kdf)), root)?;
    if out.json() {
        out.emit(&json!({"node_id": node.node_id(), "home": node.home()}))?;
    } else {
        out.say(format!(
            "Initialised pkfs node at {}",
            node.home().display()
        ));
        out.data(format!("node id: {}", node.node_id()));
    }
    Ok(())
}

/// Run by the daemon, both passphrases come from the client: the current one
/// (verified against `root.key`) and the new one (already confirmed).
pub fn passwd(cfg: &Config, new_passfile: Option<&Path>) -> anyhow::Result<()> {
    let mut node = unlock_verified(cfg)?;
    let src = match (&cfg.new_pass, new_passfile) {
        (Some(p), _) => PassSource::Provided(p.clone()),
        _ if cfg.remote() => PassSource::Unavailable,
        (None, Some(p)) => PassSource::File(p.to_path_buf()),
        (None, None) => PassSource::Terminal,
    };
    let new = pass::read(&src, "New passphrase: ", true)?;
    node.change_protector(Box::new(Passphrase::new(new, cfg.kdf)))?;
    Out::new(cfg).say("Passphrase changed.");
    Ok(())
}

pub fn key(cfg: &Config, cmd: KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::RotateRoot => {
            let out = Out::new(cfg);
            let mut node = unlock_resealing(cfg)?;
            let old = node.node_id();
            let root = new_root_key(cfg)?;
            node.rotate_root(root)?;
            if out.json() {
                out.emit(&json!({"old_node_id": old, "node_id": node.node_id()}))?;
            } else {
                out.say(format!(
                    "Root keypair rotated; {} keys re-wrapped.",
                    node.vaults().len() + 1
                ));
                out.data(format!("node id: {}", node.node_id()));
            }
            Ok(())
        }
    }
}

pub fn gc(cfg: &Config, names: &[String]) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let node = unlock(cfg)?;
    let names = node.names_or_all(names);
    let mut reports = Vec::new();
    for name in names {
        let vault = node.open_vault(&name)?;
        let r = vault.history().gc()?;
        out.say(format!(
            "{name}: removed {} discarded ref(s); {} -> {} objects",
            r.discarded_refs_removed, r.objects_before, r.objects_after
        ));
        reports.push(json!({
            "vault": name,
            "discarded_refs_removed": r.discarded_refs_removed,
            "objects_before": r.objects_before,
            "objects_after": r.objects_after,
        }));
    }
    if out.json() {
        out.emit(&reports)?;
    }
    Ok(())
}
