//! `pkfs vault set|rotate-key|reencrypt|drop-key|shred`: the vault's key
//! generations (see `pkfs::vault::keychain`).

use std::path::Path;

use pkfs::crypto::rsa::RootPublic;
use pkfs::store::atomic::write_atomic;
use pkfs::vault::keychain;
use pkfs::vault::Node;
use pkfs::Error;
use serde_json::json;

use anyhow::anyhow;
use pkfs::daemon::client;
use pkfs::daemon::protocol::{CommandRequest, Request, Response};

use super::config::Config;
use super::remote::{insert_option, read_file, write_err};
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

/// The steps of `vault shred --backup` through a mount (see
/// `remote::forward`): the daemon writes no file a client names, so it first
/// hands the backup to the client (`export`), which writes it and then asks
/// for the shredding, naming the generations it saved (`written`).
pub struct ShredStep<'a> {
    pub export: bool,
    pub written: Option<&'a str>,
}

/// The generations of vault `name`, as `0,1,2`.
fn generation_list(node: &Node, name: &str) -> Result<String, Error> {
    let rec = node
        .vaults()
        .iter()
        .find(|v| v.name == name)
        .ok_or_else(|| Error::VaultUndefined(name.to_string()))?;
    let mut g: Vec<u32> = rec.keys.iter().map(|k| k.generation).collect();
    g.sort_unstable();
    Ok(g.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
}

/// `vault shred`: confirmation, the backup (when asked for), the shredding.
pub fn shred(
    cfg: &Config,
    node: &mut Node,
    name: &str,
    yes: bool,
    backup: Option<(&Path, &Path)>,
    step: ShredStep<'_>,
) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let gens = generation_list(node, name)?;
    if step.export {
        // First step through a mount: the recipient's key came as input.
        let pem = super::read_stdin(cfg)?;
        let pem = std::str::from_utf8(&pem)
            .map_err(|_| Error::Usage("the backup recipient is not PEM text".into()))?;
        let recipient = RootPublic::from_pem(pem).map_err(|_| {
            Error::Usage("the backup recipient is not an RSA public key (PEM)".into())
        })?;
        let bytes = node.keychain_backup(name, &recipient)?;
        use base64::Engine;
        let backup = base64::engine::general_purpose::STANDARD.encode(bytes);
        return out.emit(&json!({"generations": gens, "backup": backup}));
    }
    if !yes {
        super::cmd_vault::confirm(cfg, name, "Shred", "destroying every key of it")?;
    }
    if let Some((file, pubkey)) = backup {
        if cfg.remote() {
            if step.written != Some(gens.as_str()) {
                return Err(Error::Usage(format!(
                    "the keychain of vault {name:?} changed since its backup was written \
                     (generations {gens} now); nothing was shredded"
                ))
                .into());
            }
        } else {
            let recipient = read_recipient(&cfg.local_path(pubkey))?;
            let bytes = node.keychain_backup(name, &recipient)?;
            write_atomic(&cfg.local_path(file), &bytes)?;
        }
        out.say(format!(
            "Wrote the keychain of {name} (generations {gens}) to {}",
            file.display()
        ));
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

/// The first step of `vault shred --backup` through a mount: the daemon
/// answers with the keychain backup, encrypted to PUBKEY (read here), and
/// this writes it to FILE, durably, before any key is destroyed. Returns the
/// generations saved, for the daemon to check in the second step.
pub(super) fn shred_backup_first(
    cfg: &Config,
    args: &[String],
    file: &std::path::Path,
    pubkey: &std::path::Path,
) -> anyhow::Result<String> {
    let pem = read_file(pubkey)?;
    let mut first = args.to_vec();
    insert_option(&mut first, "--backup-export");
    insert_option(&mut first, "--json");
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    let mut req = CommandRequest::new(first, cwd);
    req.input_follows = true;
    let stream = client::connect(&cfg.home).ok_or_else(|| {
        anyhow!("the pkfs daemon stopped before the command could be sent; nothing was done")
    })?;
    let mut got = Vec::new();
    let resp = client::call_streaming(&stream, &Request::Command(req), Some(&pem), &mut |p| {
        got.extend_from_slice(p);
        Ok(())
    })?;
    match &resp {
        Response::Command {
            code: 0, stdout, ..
        } => got.extend_from_slice(stdout),
        Response::Command { code, stderr, .. } => {
            write_err(stderr);
            std::process::exit(*code)
        }
        Response::Error { code, message } => {
            write_err(format!("pkfs: {message}\n").as_bytes());
            std::process::exit(*code)
        }
        other => return Err(anyhow!("unexpected answer from the pkfs daemon: {other:?}")),
    }
    let v: serde_json::Value = serde_json::from_slice(&got)
        .map_err(|e| anyhow!("bad keychain backup from the pkfs daemon: {e}"))?;
    let (Some(gens), Some(b64)) = (v["generations"].as_str(), v["backup"].as_str()) else {
        return Err(anyhow!("bad keychain backup from the pkfs daemon"));
    };
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| anyhow!("bad keychain backup from the pkfs daemon"))?;
    pkfs::store::atomic::write_atomic(file, &bytes)?;
    Ok(gens.to_string())
}
