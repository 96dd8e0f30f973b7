//! `pkfs init`, `passwd`, `key rotate-root`, `gc`.

use std::path::Path;

use pkfs::vault::{Node, Passphrase};
use pkfs::Error;
use serde_json::json;

use super::config::{Config, PassSource};
use super::{new_root_key, pass, unlock, unlock_resealing, unlock_verified, Out};
use pkfs::vault::slots::change;

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
/// The new passphrase slot replaces every passphrase slot; the other slots
/// stay. With `recovery`, the recovery code on standard input opens the node.
pub fn passwd(cfg: &Config, new_passfile: Option<&Path>, recovery: bool) -> anyhow::Result<()> {
    let node = if recovery {
        let protector = super::cmd_key::recovery_protector(cfg)?;
        super::NodeGuard::Own(Box::new(Node::unlock(&cfg.home, protector)?))
    } else {
        unlock_verified(cfg)?
    };
    let src = match (&cfg.new_pass, new_passfile) {
        (Some(p), _) => PassSource::Provided(p.clone()),
        _ if cfg.remote() => PassSource::Unavailable,
        (None, Some(p)) => PassSource::File(p.to_path_buf()),
        (None, None) => PassSource::Terminal,
    };
    let new = pass::read(&src, "New passphrase: ", true)?;
    let mut node = node;
    let slots = change::read(&cfg.home)?;
    if slots.iter().all(|s| s.id == Passphrase::ID) {
        // Only passphrase slots: the node (the daemon's, say) keeps the new
        // passphrase for `key rotate-root`.
        node.change_protector(Box::new(Passphrase::new(new, cfg.kdf)))?;
    } else {
        let slot = node.seal_slot(&Passphrase::new(new, cfg.kdf));
        change::replace(&cfg.home, |s| s.id == Passphrase::ID, slot)?;
    }
    Out::new(cfg).say("Passphrase changed.");
    Ok(())
}

/// `pkfs key rotate-root` re-seals `root.key` with the one protector that
/// opened it, so it is refused while root.key holds other slots.
pub fn rotate_root(cfg: &Config) -> anyhow::Result<()> {
    {
        let slots = change::read(&cfg.home)?;
        if slots.len() != 1 || slots[0].id != Passphrase::ID {
            return Err(Error::Usage(
                "rotate-root re-seals root.key with the passphrase alone: remove the other \
                 slots first (`pkfs key list`, `pkfs key remove`)"
                    .into(),
            )
            .into());
        }
    }
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
