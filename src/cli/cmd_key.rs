//! Protector slots from the command line: `init --shares`, `key add`, `key
//! list`, `key remove`, `key rekey`, `passwd --recovery`, and opening a node
//! with whichever slot the user holds (`--share-file` k times, `--key-file`,
//! else the passphrase).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use pkfs::crypto::rsa::RootPublic;
use pkfs::vault::protector::Slot;
use pkfs::vault::slots::share::{self, Share};
use pkfs::vault::slots::{self, change, recovery, slot_id, Keyed, SlotInfo};
use pkfs::vault::{Node, Passphrase, Protector};
use pkfs::Error;
use serde_json::json;
use zeroize::Zeroizing;

use super::config::{Config, PassSource};
use super::{fmt_time, pass, unlock, Out};
use pkfs::args::{KeyAddCmd, KeyCmd, SharesArgs};

/// The node id of the node at `home`, from `root.pub` (no secret needed).
pub fn node_id_of(home: &Path) -> Result<String, Error> {
    let path = home.join("root.pub");
    let pem = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let public =
        RootPublic::from_pem(&pem).map_err(|_| Error::corrupt("root.pub", "not a public key"))?;
    Ok(public.node_id())
}

/// One share from `path`: its first line.
fn share_from_file(path: &Path) -> Result<Share, Error> {
    let line = pass::from_file(path)?;
    let text = std::str::from_utf8(&line)
        .map_err(|_| Error::BadShare(format!("{}: not a share", path.display())))?;
    Share::parse(text).map_err(|e| Error::BadShare(format!("{}: {e}", path.display())))
}

/// The protector of the shares in `files`: each must be a share of this
/// node's (one) split; a share given twice counts once; k are needed.
fn shares_protector(cfg: &Config, files: &[PathBuf]) -> Result<Keyed, Error> {
    let node_id = node_id_of(&cfg.home)?;
    let splits = slots::share_slots(&change::read(&cfg.home)?);
    let mut got: Vec<Share> = Vec::new();
    for f in files {
        let s = share_from_file(&cfg.local_path(f))?;
        s.check_for(&node_id, &splits)
            .map_err(|e| Error::BadShare(format!("{}: {e}", f.display())))?;
        if let Some(first) = got.first() {
            if first.slot != s.slot {
                return Err(Error::BadShare(format!(
                    "{}: a share of another split than {}",
                    f.display(),
                    slots::hex(&first.slot)
                )));
            }
        }
        if !got.iter().any(|g| g.index == s.index) {
            got.push(s);
        }
    }
    let Some(first) = got.first() else {
        return Err(Error::Usage("no share given".into()));
    };
    let (k, n, id) = splits
        .iter()
        .copied()
        .find(|(_, _, id)| *id == first.slot)
        .ok_or_else(|| Error::BadShare("a share of an unknown split".into()))?;
    if got.len() < k as usize {
        return Err(Error::Sealed(format!(
            "{}/{k} distinct shares given; give {k} with --share-file (once per share)",
            got.len()
        )));
    }
    let refs: Vec<&Share> = got.iter().take(k as usize).collect();
    let master = share::combine(&refs)?;
    Ok(Keyed::shares(master, id, k, n))
}

/// Whatever opens the node: `--share-file` (k times), `--key-file`, else the
/// passphrase; a node with no passphrase slot and none of the others given is
/// sealed.
pub fn open_protector(cfg: &Config) -> Result<Box<dyn Protector>, Error> {
    if !cfg.share_files.is_empty() {
        return Ok(Box::new(shares_protector(cfg, &cfg.share_files)?));
    }
    if let Some(f) = &cfg.key_file {
        let path = cfg.local_path(f);
        let bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| Error::io(&path, e))?);
        return Ok(Box::new(Keyed::key_file(&bytes)?));
    }
    let has_pass = change::read(&cfg.home)?
        .iter()
        .any(|s| s.id == Passphrase::ID);
    if !has_pass {
        return Err(Error::Sealed(
            "this node has no passphrase slot: give its shares with --share-file FILE \
             (once per share), or --key-file FILE"
                .into(),
        ));
    }
    let pass = pass::read(&cfg.pass, "Passphrase: ", false)?;
    Ok(Box::new(Passphrase::new(pass, cfg.kdf)))
}

/// Refuse an existing share file before anything is made.
fn check_share_dir(a: &SharesArgs) -> Result<(), Error> {
    match &a.share_dir {
        Some(dir) => {
            for i in 1..=a.shares {
                let p = dir.join(format!("share-{i}.txt"));
                if p.symlink_metadata().is_ok() {
                    return Err(Error::Exists(p.display().to_string()));
                }
            }
            Ok(())
        }
        None if super::remote::stdout_is_terminal() => Ok(()),
        None => Err(Error::Usage(
            "the shares are printed on a terminal only: use --share-dir DIR to write them to files"
                .into(),
        )),
    }
}

/// Write (or print, on a terminal) the shares; files are 0600, created new,
/// fsynced, and the directory fsynced after them.
fn deliver_shares(cfg: &Config, a: &SharesArgs, shares: &[Share]) -> Result<(), Error> {
    let Some(dir) = &a.share_dir else {
        let out = Out::new(cfg);
        for s in shares {
            out.data(format!("share {}: {}", s.index, &*s.encode()));
        }
        return Ok(());
    };
    let dir = cfg.local_path(dir);
    for (n, s) in shares.iter().enumerate() {
        let p = dir.join(format!("share-{}.txt", n + 1));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        let mut line = s.encode();
        line.push('\n');
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&p, e))?;
    }
    pkfs::store::atomic::fsync_dir(&dir)
}

fn check_shape(a: &SharesArgs) -> Result<(), Error> {
    if a.threshold < 2 || a.shares < a.threshold {
        return Err(Error::Usage(format!(
            "need 2 <= --threshold <= --shares (got threshold {}, shares {})",
            a.threshold, a.shares
        )));
    }
    Ok(())
}

/// A new split of a fresh master key for node `node_id`: its slot protector
/// and shares, delivered before the caller writes the slot (a crash between
/// leaves shares of a split the node does not have, which are refused).
fn new_split(cfg: &Config, a: &SharesArgs, node_id: &str) -> Result<Keyed, Error> {
    let id: [u8; 4] = pkfs::crypto::random_array();
    let (master, shares) = share::split(node_id, id, a.threshold, a.shares)?;
    deliver_shares(cfg, a, &shares)?;
    Ok(Keyed::shares(master, id, a.threshold, a.shares))
}

/// `pkfs init --shares N --threshold K [--share-dir DIR]`.
pub fn init_shares(cfg: &Config, a: SharesArgs) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    if cfg.home.join("root.key").exists() {
        return Err(Error::AlreadyInitialized {
            home: cfg.home.clone(),
        }
        .into());
    }
    check_shape(&a)?;
    check_share_dir(&a)?;
    let root = super::new_root_key(cfg)?;
    let node_id = root.public().node_id();
    let protector = new_split(cfg, &a, &node_id)?;
    let node = Node::init(&cfg.home, Box::new(protector), root)?;
    if out.json() {
        out.emit(&json!({"node_id": node.node_id(), "home": node.home(),
            "shares": a.shares, "threshold": a.threshold}))?;
    } else {
        out.say(format!(
            "Initialised pkfs node at {} ({} shares, {} needed)",
            node.home().display(),
            a.shares,
            a.threshold
        ));
        out.data(format!("node id: {}", node.node_id()));
    }
    Ok(())
}

fn said(cfg: &Config, verb: &str, info: &SlotInfo) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    if out.json() {
        return out.emit(info);
    }
    out.say(format!("{verb} {} slot {}", info.kind, info.slot));
    Ok(())
}

/// Add `slot` (sealed by the unlocked node) to root.key.
fn add(cfg: &Config, slot: Slot) -> anyhow::Result<()> {
    let info = change::add(&cfg.home, slot)?;
    said(cfg, "Added", &info)
}

pub fn key(cfg: &Config, cmd: KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::RotateRoot => super::cmd_node::rotate_root(cfg),
        KeyCmd::List => list(cfg),
        KeyCmd::Remove { slot } => {
            let _node = unlock(cfg)?;
            let info = change::remove(&cfg.home, &slot)?;
            said(cfg, "Removed", &info)
        }
        KeyCmd::Rekey(a) => rekey(cfg, a),
        KeyCmd::Add(KeyAddCmd::Shares(a)) => {
            check_shape(&a)?;
            check_share_dir(&a)?;
            let node = unlock(cfg)?;
            let protector = new_split(cfg, &a, &node.node_id())?;
            add(cfg, node.seal_slot(&protector))
        }
        KeyCmd::Add(KeyAddCmd::Passphrase { new_passfile }) => {
            let node = unlock(cfg)?;
            let src = match new_passfile {
                Some(p) => PassSource::File(cfg.local_path(&p)),
                None => PassSource::Terminal,
            };
            let new = pass::read(&src, "New passphrase: ", true)?;
            add(cfg, node.seal_slot(&Passphrase::new(new, cfg.kdf)))
        }
        KeyCmd::Add(KeyAddCmd::Keyfile { file }) => {
            let path = cfg.local_path(&file);
            let bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| Error::io(&path, e))?);
            let protector = Keyed::key_file(&bytes)?;
            let node = unlock(cfg)?;
            add(cfg, node.seal_slot(&protector))
        }
        KeyCmd::Add(KeyAddCmd::Recovery) => {
            let node = unlock(cfg)?;
            let (entropy, words) = recovery::generate()?;
            let slot = node.seal_slot(&Keyed::recovery(entropy));
            let info = change::add(&cfg.home, slot)?;
            let out = Out::new(cfg);
            out.say(format!(
                "Added recovery slot {}. Write these 24 words down; they are not shown again:",
                info.slot
            ));
            out.data(&*words);
            Ok(())
        }
    }
}

fn list(cfg: &Config) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let slots = change::list(&cfg.home)?;
    if out.json() {
        return out.emit(&slots);
    }
    for s in &slots {
        let created = s.created.map_or("-".to_string(), fmt_time);
        let shape = match (s.threshold, s.shares) {
            (Some(k), Some(n)) => format!("{k} of {n}"),
            _ => "-".into(),
        };
        out.data(format!(
            "{}  {:<10}  {}  {}",
            s.slot, s.kind, created, shape
        ));
    }
    Ok(())
}

/// `pkfs key rekey`: k current shares open the node; a new split replaces
/// the shares slot in one atomic write, after the new shares are delivered.
fn rekey(cfg: &Config, a: SharesArgs) -> anyhow::Result<()> {
    if cfg.share_files.is_empty() {
        return Err(Error::Usage(
            "rekey needs the current shares: give --share-file FILE once per share".into(),
        )
        .into());
    }
    check_shape(&a)?;
    check_share_dir(&a)?;
    let node = unlock(cfg)?;
    let old: Vec<[u8; 4]> = slots::share_slots(&change::read(&cfg.home)?)
        .into_iter()
        .map(|(_, _, id)| id)
        .collect();
    let protector = new_split(cfg, &a, &node.node_id())?;
    let slot = node.seal_slot(&protector);
    let info = change::replace(
        &cfg.home,
        |s| s.id == slots::SHARES && old.contains(&slot_id(s)),
        slot,
    )?;
    said(cfg, "Rekeyed: new", &info)
}

/// `pkfs passwd --recovery`: the 24 words on standard input open the node;
/// the new passphrase replaces every passphrase slot.
pub fn recovery_protector(cfg: &Config) -> Result<Box<dyn Protector>, Error> {
    let text = super::read_stdin(cfg)?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| Error::BadShare("the recovery code is not text".into()))?;
    Ok(Box::new(Keyed::recovery(recovery::parse(text)?)))
}
