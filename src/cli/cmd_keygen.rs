//! `pkfs vault set|rotate-key|reencrypt|drop-key|shred`: the vault's key
//! generations (see `pkfs::vault::keychain`).

use std::path::Path;

use pkfs::crypto::rsa::RootPublic;
use pkfs::store::atomic::write_atomic;
use pkfs::vault::keychain;
use pkfs::vault::Node;
use pkfs::Error;
use serde_json::json;

use super::config::Config;
use super::{progress, Out};

/// A `--rotate-after` value: a duration, or `never` (also `0`) for none.
pub fn parse_rotate_after(s: &str) -> Result<Option<std::time::Duration>, Error> {
    if s.trim() == "never" {
        return Ok(None);
    }
    let d = pkfs::args::parse_duration(s).map_err(Error::Usage)?;
    Ok((!d.is_zero()).then_some(d))
}

/// A duration in milliseconds for people: the largest unit that divides it.
pub fn show_ms(ms: u64) -> String {
    for (unit, n) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= n && ms.is_multiple_of(n) {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

pub fn set(
    cfg: &Config,
    node: &mut Node,
    name: &str,
    rotate_after: Option<&str>,
) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let Some(r) = rotate_after else {
        return Err(Error::Usage("nothing to set (see `pkfs vault set --help`)".into()).into());
    };
    let age = parse_rotate_after(r)?;
    node.set_rotate_after(name, age)?;
    match age {
        Some(a) => out.say(format!(
            "Vault {name} adds a key generation by itself once the newest is {} old",
            show_ms(a.as_millis() as u64)
        )),
        None => out.say(format!("Vault {name} no longer rotates its key by itself")),
    }
    // The new age may already be due.
    if let Some(g) = node.rotate_if_due(name)? {
        out.say(format!(
            "Added key generation {g} (the newest was older than that)"
        ));
    }
    Ok(())
}

pub fn rotate(cfg: &Config, node: &mut Node, name: &str) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let g = node.rotate_key(name)?;
    if out.json() {
        out.emit(&json!({"vault": name, "generation": g}))?;
    } else {
        out.say(format!(
            "Vault {name}: key generation {g} added; new and rewritten files use it \
             (`pkfs vault reencrypt {name}` moves the others)"
        ));
    }
    Ok(())
}

pub fn reencrypt(cfg: &Config, node: &mut Node, name: &str) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let vault = node.open_vault(name)?;
    let open = keychain::open_files_of(&vault.record.id);
    let bar = progress::bar(cfg, 0, "reencrypt");
    let res = keychain::reencrypt(
        &vault,
        &|p| open.contains(&p.to_string()),
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let r = res?;
    if out.json() {
        return out.emit(&r);
    }
    out.say(format!(
        "Vault {name}: {} file(s) rewritten under key generation {}, {} already under it{}",
        r.rewritten,
        r.generation,
        r.current,
        r.commit
            .as_deref()
            .map(|c| format!(" (commit {})", &c[..c.len().min(12)]))
            .unwrap_or_default()
    ));
    for p in &r.skipped {
        out.say(format!(
            "  left as it is (open in the mount; run again once it is closed): {p}"
        ));
    }
    Ok(())
}

pub fn drop_key(cfg: &Config, node: &mut Node, name: &str, generation: u32) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    node.drop_key(name, generation)?;
    out.say(format!(
        "Vault {name}: key generation {generation} destroyed; versions in the history that \
         only it could read can no longer be read (`pkfs version log {name}` marks them)"
    ));
    Ok(())
}

/// `vault shred`: the backup first (when asked for), then the shredding.
pub fn shred(
    cfg: &Config,
    node: &mut Node,
    name: &str,
    yes: bool,
    backup: Option<(&Path, &Path)>,
) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    node.vaults()
        .iter()
        .find(|v| v.name == name)
        .ok_or_else(|| Error::VaultUndefined(name.to_string()))?;
    if let Some((file, pubkey)) = backup {
        if cfg.remote() {
            // The daemon opens no path a client names; the client writes the
            // backup (see `remote::forward`) and then asks for the shredding.
            return Err(Error::Usage(
                "with a mount running, `vault shred --backup` is refused (the daemon writes \
                 no file a client names): unmount first, or shred without --backup"
                    .into(),
            )
            .into());
        }
        let recipient = read_recipient(&cfg.local_path(pubkey))?;
        let bytes = node.keychain_backup(name, &recipient)?;
        write_atomic(&cfg.local_path(file), &bytes)?;
        out.say(format!(
            "Wrote the keychain of {name} to {}",
            file.display()
        ));
    }
    if !yes {
        super::cmd_vault::confirm(cfg, name, "Shred", "destroying every key of it")?;
    }
    node.shred_vault(name)?;
    out.say(format!(
        "Shredded vault {name}: every key generation is destroyed and the vault removed"
    ));
    Ok(())
}

/// The RSA public key (PEM) a backup is encrypted to.
pub fn read_recipient(path: &Path) -> Result<RootPublic, Error> {
    let pem = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    RootPublic::from_pem(&pem)
        .map_err(|_| Error::Usage(format!("{path:?} is not an RSA public key (PEM)")))
}
