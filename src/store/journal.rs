//! The change journal of one vault: which backing paths may differ from the
//! committed version (HEAD), and whether a checkout was interrupted.
//!
//! Everything under `contents/` that the journal does not cover must be exactly
//! what HEAD's tree holds; anything else is tampering (a swapped blob, a rolled
//! back blob, a planted or deleted file), see `docs/SECURITY.md`. A writer marks
//! a path here **before** it changes the backing entry; a commit adopts only
//! covered paths and then empties the journal.
//!
//! # Layout of `V/journal`
//!
//! ```text
//! record*        each record, appended in order:
//!   0   4  len    u32 big-endian, bytes that follow (28 + plaintext length)
//!   4  12  iv     random
//!  16  16  tag    AES-256-GCM tag
//!  32   n  ciphertext of: kind (1 byte) | data
//!        kind 1 = path: data is a backing path relative to V ("contents/…");
//!                 it covers that entry and everything below it
//!        kind 2 = checkout: data is the 20-byte id of the commit being checked out
//!        kind 3 = move: data is from | 0x00 | to, two backing paths: the entry
//!                 at `from` was renamed to `to` unchanged (from == to: a chmod)
//!        kind 4 = swap: as move, but both entries exchanged (RENAME_EXCHANGE)
//!        kind 5 = link: as move, but `from` stays (a hard link)
//!        kind 6 = command: no data; the records after it belong to a CLI
//!                 command that has not committed yet (undone at the next
//!                 open if it never does, see `history_undo.rs`)
//! key = HKDF-SHA256(vault key, no salt, "pkfs journal v1")
//! AAD of record i = "pkfs journal v1" | HEAD commit id (20 bytes, zeros before
//!                   the first commit) | i as u64 big-endian
//! ```
//!
//! Binding every record to HEAD makes a journal stale as soon as HEAD moves: a
//! record of an older HEAD, a reordered record or a forged one fails its tag,
//! and reading stops at the first record that does (a torn tail after a crash
//! is the same case). A journal that cannot be read therefore covers *less*,
//! never more, so it can hide nothing.
//!
//! What the records mean for one path is worked out in `changes.rs`: a moved
//! entry keeps being checked against HEAD's entry at its old path.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use git2::Oid;

use super::changes::{Changes, MoveKind, Origin};
use crate::crypto::aead::{Gcm, IV_LEN, TAG_LEN};
use crate::crypto::kdf::hkdf32;
use crate::crypto::SymKey;
use crate::error::{Error, Result};

/// File name of the journal in the vault directory.
pub const JOURNAL_FILE: &str = "journal";
const DOMAIN: &[u8] = b"pkfs journal v1";
const KIND_PATH: u8 = 1;
const KIND_CHECKOUT: u8 = 2;
const KIND_MOVE: u8 = 3;
const KIND_SWAP: u8 = 4;
const KIND_LINK: u8 = 5;
const KIND_COMMAND: u8 = 6;
/// Longest record accepted when reading (a backing path is far shorter).
const MAX_RECORD: usize = 1 << 20;
/// The longest backing path (relative to the vault dir, `contents/…`) that
/// a new entry may have; the mount refuses a longer one at create, mkdir,
/// symlink, link and rename with ENAMETOOLONG. The history itself has no
/// path limit (commits, checkouts and fsck work through directory
/// descriptors), but each journal record holds one or two backing paths in
/// at most 1 MiB ([`MAX_RECORD`]). 64 KiB is about 1490 levels of short names
/// (an encoded name is 43 bytes or more), or 277 of the longest (235 bytes);
/// renaming a directory on the way to an entry can lengthen its path at most
/// 236/44 times (short names renamed to the longest), which keeps a move
/// record of two such paths under 1 MiB.
pub const MAX_BACKING_PATH: usize = 64 * 1024;

pub struct Journal {
    path: PathBuf,
    gcm: Gcm,
    head: [u8; 20],
    count: u64,
    changes: Changes,
    checkout: Option<Oid>,
    /// An unfinished command: the position of its first change record in
    /// `changes`, and the journal's length in bytes before its record.
    command: Option<(u64, u64)>,
    /// Length of the valid records in bytes.
    len: u64,
    /// Length of the last record appended.
    last_record_len: u64,
    file: Option<File>,
}

/// `from | 0x00 | to` of a move record.
fn split_move(data: &[u8]) -> Option<(&str, &str)> {
    let nul = data.iter().position(|&b| b == 0)?;
    let from = std::str::from_utf8(&data[..nul]).ok()?;
    let to = std::str::from_utf8(&data[nul + 1..]).ok()?;
    (!from.is_empty() && !to.is_empty()).then_some((from, to))
}

fn head_bytes(head: Option<Oid>) -> [u8; 20] {
    let mut out = [0u8; 20];
    if let Some(h) = head {
        out.copy_from_slice(h.as_bytes());
    }
    out
}

impl Journal {
    /// Read the journal of the vault at `vault_dir`, keeping the records bound to
    /// `head`.
    pub fn load(vault_dir: &Path, vault_key: &SymKey, head: Option<Oid>) -> Result<Journal> {
        let key = hkdf32(vault_key, None, DOMAIN);
        let mut j = Journal {
            path: vault_dir.join(JOURNAL_FILE),
            gcm: Gcm::new(&key),
            head: head_bytes(head),
            count: 0,
            changes: Changes::default(),
            checkout: None,
            command: None,
            len: 0,
            last_record_len: 0,
            file: None,
        };
        j.read_records()?;
        Ok(j)
    }

    /// Read the records of the file (after `load` or a cut).
    fn read_records(&mut self) -> Result<()> {
        let j = self;
        let bytes = match fs::read(&j.path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&j.path, e)),
        };
        let mut rest = &bytes[..];
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if !(IV_LEN + TAG_LEN..=MAX_RECORD).contains(&len) || rest.len() < 4 + len {
                break;
            }
            let aad = j.aad(j.count);
            let Ok(plain) = j.gcm.open_envelope(&aad, &rest[4..4 + len]) else {
                break;
            };
            match (plain.first(), &plain[plain.len().min(1)..]) {
                (Some(&KIND_PATH), data) => match std::str::from_utf8(data) {
                    Ok(p) => j.changes.path(p),
                    Err(_) => break,
                },
                (Some(&kind @ (KIND_MOVE | KIND_SWAP | KIND_LINK)), data) => {
                    let how = match kind {
                        KIND_MOVE => MoveKind::Rename,
                        KIND_SWAP => MoveKind::Swap,
                        _ => MoveKind::Link,
                    };
                    match split_move(data) {
                        Some((from, to)) => j.changes.moved(from, to, how),
                        None => break,
                    }
                }
                (Some(&KIND_CHECKOUT), data) => match Oid::from_bytes(data) {
                    Ok(id) => j.checkout = Some(id),
                    Err(_) => break,
                },
                (Some(&KIND_COMMAND), []) => {
                    let at = (bytes.len() - rest.len()) as u64;
                    j.command = Some((j.changes.records(), at));
                }
                _ => break,
            }
            j.count += 1;
            rest = &rest[4 + len..];
        }
        j.len = (bytes.len() - rest.len()) as u64;
        if !rest.is_empty() {
            // A torn, stale or damaged tail: cut it, so that records appended
            // from now on follow the valid ones and can be read back.
            let valid = (bytes.len() - rest.len()) as u64;
            let cut = OpenOptions::new()
                .write(true)
                .open(&j.path)
                .and_then(|f| f.set_len(valid).and_then(|()| f.sync_data()));
            cut.map_err(|e| Error::io(&j.path, e))?;
        }
        Ok(())
    }

    fn aad(&self, index: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(DOMAIN.len() + 28);
        aad.extend_from_slice(DOMAIN);
        aad.extend_from_slice(&self.head);
        aad.extend_from_slice(&index.to_be_bytes());
        aad
    }

    /// Does any record touch backing path `rel` (relative to the vault dir)?
    /// A commit re-stages exactly these paths.
    pub fn covers(&self, rel: &str) -> bool {
        self.changes.covers(rel)
    }

    /// Where the content at `rel` must come from: changed since HEAD, or
    /// HEAD's entry at some path.
    pub fn origin(&self, rel: &str) -> Origin {
        self.changes.origin(rel)
    }

    /// Every record.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// The commit an interrupted checkout was moving to.
    pub fn interrupted_checkout(&self) -> Option<Oid> {
        self.checkout
    }

    /// Is anything recorded?
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Record that `rel` may change (unless it is changed already). Not
    /// synced: see [`Journal::sync`].
    pub fn mark(&mut self, rel: &str) -> Result<()> {
        if self.origin(rel) == Origin::Changed {
            return Ok(());
        }
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(rel.len() + 1));
        plain.push(KIND_PATH);
        plain.extend_from_slice(rel.as_bytes());
        self.append(&plain)?;
        self.changes.path(rel);
        Ok(())
    }

    /// Record that the entry at `from` is about to get to `to` unchanged (see
    /// [`MoveKind`]; a rename with `from == to` is a chmod), so that its
    /// content stays checked against HEAD's entry at `from`. Not synced: see
    /// [`Journal::sync`].
    pub fn mark_move(&mut self, from: &str, to: &str, how: MoveKind) -> Result<()> {
        let changed = |p: &str| self.origin(p) == Origin::Changed;
        if from == to {
            // A chmod: only needed when no record says yet that this entry's
            // mode changed (`Changes::mode_changed`; the mode records
            // trust a live mode only then).
            if self.changes.mode_changed(from) {
                return Ok(());
            }
        } else if changed(from) && (how != MoveKind::Swap || changed(to)) {
            // Nothing of HEAD's moves: what lands at `to` is changed too.
            return self.mark(to);
        }
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(from.len() + to.len() + 2));
        plain.push(match how {
            MoveKind::Rename => KIND_MOVE,
            MoveKind::Swap => KIND_SWAP,
            MoveKind::Link => KIND_LINK,
        });
        plain.extend_from_slice(from.as_bytes());
        plain.push(0);
        plain.extend_from_slice(to.as_bytes());
        self.append(&plain)?;
        self.changes.moved(from, to, how);
        Ok(())
    }

    /// Record, durably, that a CLI command starts changing the vault: what
    /// it journals from now on is undone if it never commits.
    pub fn begin_command(&mut self) -> Result<()> {
        self.append(&[KIND_COMMAND])?;
        let at = self.len - self.last_record_len;
        self.command = Some((self.changes.records(), at));
        self.sync()
    }

    /// The backing paths an unfinished command touched, if there is one.
    pub fn command_paths(&self) -> Option<Vec<String>> {
        self.command.map(|(at, _)| self.changes.touched_since(at))
    }

    /// Forget the unfinished command's records (its changes were undone):
    /// the journal is cut back to what it held before the command began.
    pub fn drop_command(&mut self) -> Result<()> {
        let Some((_, at)) = self.command else {
            return Ok(());
        };
        self.file = None;
        let cut = if at == 0 {
            match fs::remove_file(&self.path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            OpenOptions::new()
                .write(true)
                .open(&self.path)
                .and_then(|f| f.set_len(at).and_then(|()| f.sync_data()))
        };
        cut.map_err(|e| Error::io(&self.path, e))?;
        self.count = 0;
        self.changes = Changes::default();
        self.checkout = None;
        self.command = None;
        self.len = 0;
        self.read_records()
    }

    /// Record, durably, that a checkout to `target` starts now.
    pub fn begin_checkout(&mut self, target: Oid) -> Result<()> {
        let mut plain = vec![KIND_CHECKOUT];
        plain.extend_from_slice(target.as_bytes());
        self.append(&plain)?;
        self.checkout = Some(target);
        self.sync()
    }

    fn append(&mut self, plain: &[u8]) -> Result<()> {
        let env = self.gcm.seal_envelope(&self.aad(self.count), plain);
        let mut rec = Vec::with_capacity(4 + env.len());
        rec.extend_from_slice(&(env.len() as u32).to_be_bytes());
        rec.extend_from_slice(&env);
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode_0600()
                .open(&self.path)
                .map_err(|e| Error::io(&self.path, e))?;
            // The file's entry must be durable before any record is relied
            // on: `sync` only syncs the file's data.
            if let Some(dir) = self.path.parent() {
                super::atomic::fsync_dir(dir)?;
            }
            self.file = Some(f);
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(&rec).map_err(|e| Error::io(&self.path, e))?;
        }
        self.count += 1;
        self.len += rec.len() as u64;
        self.last_record_len = rec.len() as u64;
        Ok(())
    }

    /// Make the records written so far durable (before an fsync'd write).
    pub fn sync(&self) -> Result<()> {
        match &self.file {
            Some(f) => f.sync_data().map_err(|e| Error::io(&self.path, e)),
            None => Ok(()),
        }
    }

    /// HEAD is now `head` and the work tree matches it: forget every record.
    pub fn reset(&mut self, head: Option<Oid>) -> Result<()> {
        self.file = None;
        if self.count > 0 {
            match fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        self.head = head_bytes(head);
        self.count = 0;
        self.changes = Changes::default();
        self.checkout = None;
        self.command = None;
        self.len = 0;
        Ok(())
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SymKey {
        SymKey::from_bytes([7u8; 32])
    }

    #[test]
    fn an_unfinished_command_is_listed_and_can_be_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let h = Oid::from_bytes(&[1u8; 20]).unwrap();
        let mut j = Journal::load(dir.path(), &key(), Some(h)).unwrap();
        assert_eq!(j.command_paths(), None);
        j.mark("contents/before").unwrap();
        j.begin_command().unwrap();
        j.mark("contents/x").unwrap();
        j.mark_move("contents/a", "contents/b", MoveKind::Rename)
            .unwrap();
        let want = ["contents/a", "contents/b", "contents/x"];
        assert_eq!(j.command_paths().unwrap(), want);
        // What a process killed now leaves: the next one reads the same.
        drop(j);
        let mut j = Journal::load(dir.path(), &key(), Some(h)).unwrap();
        assert_eq!(j.command_paths().unwrap(), want);
        j.drop_command().unwrap();
        assert_eq!(j.command_paths(), None);
        assert!(j.covers("contents/before") && !j.covers("contents/x"));
        // Records appended afterwards follow the kept ones and read back.
        j.mark("contents/after").unwrap();
        drop(j);
        let j = Journal::load(dir.path(), &key(), Some(h)).unwrap();
        assert_eq!(j.command_paths(), None);
        assert!(j.covers("contents/before") && j.covers("contents/after"));
        assert!(!j.covers("contents/a") && !j.covers("contents/x"));
        // A command with nothing before it leaves no file at all.
        let mut j = Journal::load(dir.path(), &key(), None).unwrap();
        j.reset(None).unwrap();
        j.begin_command().unwrap();
        j.mark("contents/y").unwrap();
        j.drop_command().unwrap();
        assert!(!dir.path().join(JOURNAL_FILE).exists());
    }

    #[test]
    fn records_survive_reload_and_bind_to_head() {
        let dir = tempfile::tempdir().unwrap();
        let h1 = Oid::from_bytes(&[1u8; 20]).unwrap();
        let h2 = Oid::from_bytes(&[2u8; 20]).unwrap();
        let mut j = Journal::load(dir.path(), &key(), Some(h1)).unwrap();
        j.mark("contents/a").unwrap();
        j.mark("contents/a/b").unwrap(); // covered: not written again
        j.mark("contents/c").unwrap();
        assert_eq!(j.count, 2);
        let again = Journal::load(dir.path(), &key(), Some(h1)).unwrap();
        assert!(again.covers("contents/a"));
        assert!(again.covers("contents/a/x/y"));
        assert!(!again.covers("contents/ab"));
        assert!(again.covers("contents/c"));
        // Bound to HEAD: stale once HEAD moves.
        let stale = Journal::load(dir.path(), &key(), Some(h2)).unwrap();
        assert!(!stale.covers("contents/a") && stale.is_empty());
    }

    #[test]
    fn a_tampered_or_torn_record_ends_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::load(dir.path(), &key(), None).unwrap();
        j.mark("contents/a").unwrap();
        j.mark("contents/b").unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let bytes = fs::read(&path).unwrap();
        // Flip a byte of the second record: only the first survives.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        fs::write(&path, &bad).unwrap();
        let j2 = Journal::load(dir.path(), &key(), None).unwrap();
        assert!(j2.covers("contents/a") && !j2.covers("contents/b"));
        // A torn tail is ignored the same way.
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let j3 = Journal::load(dir.path(), &key(), None).unwrap();
        assert!(j3.covers("contents/a") && !j3.covers("contents/b"));
        // Another key reads nothing.
        let other = Journal::load(dir.path(), &SymKey::from_bytes([8u8; 32]), None).unwrap();
        assert!(other.is_empty());
    }

    #[test]
    fn checkout_intent_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let target = Oid::from_bytes(&[9u8; 20]).unwrap();
        let mut j = Journal::load(dir.path(), &key(), None).unwrap();
        j.begin_checkout(target).unwrap();
        let j2 = Journal::load(dir.path(), &key(), None).unwrap();
        assert_eq!(j2.interrupted_checkout(), Some(target));
        j.reset(Some(target)).unwrap();
        assert!(!dir.path().join(JOURNAL_FILE).exists());
    }

    #[test]
    fn move_records_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::load(dir.path(), &key(), None).unwrap();
        j.mark_move("contents/a", "contents/b", MoveKind::Rename)
            .unwrap();
        j.mark_move("contents/c", "contents/d", MoveKind::Swap)
            .unwrap();
        j.mark_move("contents/f", "contents/f", MoveKind::Rename)
            .unwrap();
        j.mark_move("contents/f", "contents/f", MoveKind::Rename)
            .unwrap(); // nothing new
        assert_eq!(j.count, 3);
        // A move out of a changed entry is a plain change of the target.
        j.mark("contents/new").unwrap();
        j.mark_move("contents/new", "contents/g", MoveKind::Rename)
            .unwrap();
        assert_eq!(j.count, 5);
        let again = Journal::load(dir.path(), &key(), None).unwrap();
        let head = |p: &str| Origin::Head(p.to_string());
        assert_eq!(again.origin("contents/b/x"), head("contents/a/x"));
        assert_eq!(again.origin("contents/c"), head("contents/d"));
        assert_eq!(again.origin("contents/d"), head("contents/c"));
        assert_eq!(again.origin("contents/f"), head("contents/f"));
        assert!(again.covers("contents/f") && again.covers("contents/a"));
        assert_eq!(again.origin("contents/a"), Origin::Changed);
        assert_eq!(again.origin("contents/g"), Origin::Changed);
        // A write after a move is journaled although the path is covered.
        let mut j = again;
        j.mark("contents/b/x").unwrap();
        assert_eq!(j.origin("contents/b/x"), Origin::Changed);
        assert_eq!(j.count, 6);
    }

    #[test]
    fn records_after_a_torn_tail_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::load(dir.path(), &key(), None).unwrap();
        j.mark("contents/a").unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 0, 0, 99, 1, 2, 3]).unwrap();
        drop(f);
        let mut j = Journal::load(dir.path(), &key(), None).unwrap();
        j.mark("contents/b").unwrap();
        let again = Journal::load(dir.path(), &key(), None).unwrap();
        assert!(again.covers("contents/a") && again.covers("contents/b"));
    }
}
