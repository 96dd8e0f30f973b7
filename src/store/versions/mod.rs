//! Old versions read in place: resolve a version spec, describe a commit,
//! look up, list and read a path as it was, and compare two versions (see
//! `diff.rs`). Everything comes from git's objects, which hold ciphertext
//! only, and is decrypted here; the work tree, HEAD and the journal are not
//! touched, so none of this moves the vault.
//!
//! A version is used only once its commit message authenticates (the message
//! is a MAC over the commit's tree and parents, see `history.rs`), so every
//! tree and blob read below it is the one the vault committed. Blob pages are
//! authenticated again as they are decrypted; a failure is an error, never
//! wrong bytes.

use std::io::Write;

use git2::{ObjectType, Oid, Repository};
use zeroize::Zeroizing;

use super::{main_tip, open_message_with, open_repo, resolve_spec, Ctx, History, MSG_DOMAIN};
use crate::crypto::aead::Gcm;
use crate::crypto::kdf::hkdf32;
use crate::crypto::Keychain;
use crate::error::{Error, Result};
use crate::format::blob::{FileCipher, Header, VERSION_HOLES};
use crate::format::holes::is_hole;
use crate::format::links::LinkCipher;
use crate::format::modes::ModeCipher;
use crate::format::names::{self, DirIv, DiskName, EntryKind, NameCipher, DIRIV_FILE, DIRIV_LEN};
use crate::format::offsets;
use crate::store::{Change, Kind, VPath};

mod browse;
mod diff;
pub use browse::{VBlob, VChild, VDir};
pub use diff::{Delta, DeltaKind};

/// Length of the short commit ids shown (`pkfs version log`, the mount's
/// `.versions` directory).
pub const SHORT_ID: usize = 8;

/// The tracked directory of the work tree (as in `history.rs`).
const CONTENTS: &str = "contents";

/// One commit, described.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    /// Full hex id.
    pub id: String,
    /// Commit time, Unix seconds.
    pub time: i64,
    /// Parent ids (none for the first version).
    pub parents: Vec<String>,
    /// The decrypted change list.
    pub changes: Vec<Change>,
}

/// One entry of a version's tree, its name decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VEntry {
    pub name: Vec<u8>,
    pub kind: Kind,
    /// The git object: the blob of a file or symlink, the tree of a directory.
    pub id: Oid,
    /// Executable (files only).
    pub exec: bool,
}

/// The versions of one vault, read through a repository handle of their own.
pub struct Versions {
    repo: Repository,
    gcm: Gcm,
    names: NameCipher,
    links: LinkCipher,
    modes: ModeCipher,
    keys: Keychain,
}

impl History {
    /// Read the vault's versions with `keys` (the vault's keychain).
    pub fn versions(&self, keys: &Keychain) -> Result<Versions> {
        let first = keys.first();
        Ok(Versions {
            repo: open_repo(&self.vault_dir)?,
            gcm: Gcm::new(&hkdf32(first, None, MSG_DOMAIN)),
            names: NameCipher::new(first),
            links: LinkCipher::new(first),
            modes: ModeCipher::new(first),
            keys: keys.clone(),
        })
    }
}

impl Versions {
    /// The commit `spec` names (`latest`, `HEAD`, `HEAD~N`, an id prefix of
    /// at least 4 hex digits; discarded versions too), once its message
    /// authenticates.
    pub fn resolve(&self, spec: &str) -> Result<Oid> {
        let main = main_tip(&self.repo)?
            .ok_or_else(|| Error::Usage("the vault has no versions yet".into()))?;
        let id = resolve_spec(&self.repo, spec, main)?;
        self.info(id)?;
        Ok(id)
    }

    /// The commit `spec` names, as [`Versions::resolve`], but not yet
    /// authenticated: the caller checks it with [`Versions::info`] (once)
    /// before it reads anything of it.
    pub fn locate(&self, spec: &str) -> Result<Oid> {
        let main = main_tip(&self.repo)?
            .ok_or_else(|| Error::Usage("the vault has no versions yet".into()))?;
        resolve_spec(&self.repo, spec, main)
    }

    /// Describe commit `id` (its message must authenticate).
    pub fn info(&self, id: Oid) -> Result<VersionInfo> {
        let commit = self.repo.find_commit(id).ctx("reading a version")?;
        let changes = open_message_with(&self.gcm, &commit)?;
        Ok(VersionInfo {
            id: id.to_string(),
            time: commit.time().seconds(),
            parents: commit.parent_ids().map(|p| p.to_string()).collect(),
            changes,
        })
    }

    /// The vault root of commit `id`, as a directory entry.
    pub fn root(&self, id: Oid) -> Result<VEntry> {
        let commit = self.repo.find_commit(id).ctx("reading a version")?;
        let tree = commit.tree().ctx("reading a version's tree")?;
        let entry = tree
            .get_name(CONTENTS)
            .filter(|e| e.kind() == Some(ObjectType::Tree))
            .ok_or_else(|| Error::corrupt(format!("version {id}"), "it holds no contents/"))?;
        Ok(VEntry {
            name: Vec::new(),
            kind: Kind::Dir,
            id: entry.id(),
            exec: false,
        })
    }

    /// The entry at `path` in commit `id`, `None` when it was absent.
    pub fn lookup(&self, id: Oid, path: &VPath) -> Result<Option<VEntry>> {
        let mut cur = self.root(id)?;
        for name in path.components() {
            if cur.kind != Kind::Dir {
                return Ok(None);
            }
            let tree = self.repo.find_tree(cur.id).ctx("reading a tree")?;
            let iv = self.diriv(&tree, path)?;
            let Some((_, e)) = self.entry_named(&tree, &iv, name) else {
                return Ok(None);
            };
            cur = e;
        }
        Ok(Some(cur))
    }

    /// The entry `name` of `tree` (IV `iv`) as (backing name, entry), `None`
    /// when the tree has none (or one of a kind pkfs never commits).
    fn entry_named(
        &self,
        tree: &git2::Tree<'_>,
        iv: &DirIv,
        name: &[u8],
    ) -> Option<(String, VEntry)> {
        let disk = DiskName::from_encoded(self.names.encrypt(iv, name));
        let e = tree.get_name(disk.entry())?;
        let kind = kind_of(e.filemode())?;
        let entry = VEntry {
            name: name.to_vec(),
            kind,
            id: e.id(),
            exec: e.filemode() == 0o100755,
        };
        Some((disk.entry().to_string(), entry))
    }

    /// The entries of directory `dir`, sorted by name. A name that does not
    /// decrypt is an error: a committed tree holds none.
    pub fn list(&self, dir: &VEntry) -> Result<Vec<VEntry>> {
        let shown = String::from_utf8_lossy(&dir.name).into_owned();
        let tree = self.repo.find_tree(dir.id).ctx("reading a tree")?;
        let iv = self.diriv(&tree, &shown)?;
        let mut out: Vec<VEntry> = self
            .entries(&tree, &iv, &shown)?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The entries of `tree` (IV `iv`) as (backing name, entry), unsorted.
    fn entries(
        &self,
        tree: &git2::Tree<'_>,
        iv: &DirIv,
        shown: &str,
    ) -> Result<Vec<(String, VEntry)>> {
        let mut out = Vec::new();
        for e in tree.iter() {
            let Ok(raw) = std::str::from_utf8(e.name_bytes()) else {
                return Err(Error::corrupt(shown, "a committed entry name is not ASCII"));
            };
            let encoded = match names::classify(raw) {
                EntryKind::DirIv | EntryKind::Sidecar | EntryKind::Modes => continue,
                EntryKind::Direct => raw.to_string(),
                EntryKind::Long => self.sidecar(tree, raw).ok_or_else(|| {
                    Error::corrupt(shown, format!("long entry {raw} has no matching sidecar"))
                })?,
                EntryKind::Foreign if raw.starts_with(".tmp-") => continue,
                EntryKind::Foreign => {
                    return Err(Error::corrupt(shown, format!("foreign entry {raw}")))
                }
            };
            let name = self
                .names
                .decrypt(iv, &encoded)
                .ok()
                .filter(|n| names::validate(n).is_ok())
                .ok_or_else(|| Error::corrupt(shown, format!("entry {raw} does not decrypt")))?;
            let Some(kind) = kind_of(e.filemode()) else {
                continue;
            };
            out.push((
                raw.to_string(),
                VEntry {
                    name,
                    kind,
                    id: e.id(),
                    exec: e.filemode() == 0o100755,
                },
            ));
        }
        Ok(out)
    }

    /// The plaintext size of file `e`, from its blob's size.
    pub fn size(&self, e: &VEntry) -> Result<u64> {
        if e.kind != Kind::File {
            return Ok(0);
        }
        let odb = self.repo.odb().ctx("opening the object database")?;
        let (len, _) = odb.read_header(e.id).ctx("reading a blob's size")?;
        Ok(offsets::plain_len(len as u64).unwrap_or(0))
    }

    /// Decrypt file `e` into `out` one page at a time (the plaintext is
    /// never held whole). Returns the bytes written.
    pub fn read_to(&self, e: &VEntry, what: &str, out: &mut dyn Write) -> Result<u64> {
        let mut done = 0;
        self.pages(e, what, &mut |page| {
            out.write_all(page)
                .map_err(|err| Error::io("stdout", err))?;
            done += page.len() as u64;
            Ok(())
        })?;
        Ok(done)
    }

    /// Decrypt file `e` whole.
    pub fn read(&self, e: &VEntry, what: &str) -> Result<Zeroizing<Vec<u8>>> {
        let mut all = Zeroizing::new(Vec::new());
        self.pages(e, what, &mut |page| {
            all.extend_from_slice(page);
            Ok(())
        })?;
        Ok(all)
    }

    /// Call `f` with each decrypted page of file `e` in order. A loose blob
    /// is streamed, never held whole (a sparse file's may be far bigger than
    /// memory): hashed to its id first, then read again and decrypted
    /// (`store/odb_stream.rs`); a packed one is read whole.
    fn pages(&self, e: &VEntry, what: &str, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        use crate::store::odb_stream::{blob_hashes_to_id, fill};
        if e.kind != Kind::File {
            return Err(Error::NotAFile(what.to_string()));
        }
        let bad = |m: String| Error::corrupt(what, m);
        let odb = self.repo.odb().ctx("opening the object database")?;
        let whole;
        let (mut r, size): (Box<dyn std::io::Read + '_>, u64) = match blob_hashes_to_id(&odb, e.id)
        {
            Some(Ok(true)) => {
                let (r, size, _) = odb.reader(e.id).ctx("reading a blob")?;
                (Box::new(r), size as u64)
            }
            Some(Ok(false)) => return Err(bad("its object does not match its id".into())),
            Some(Err(m)) => return Err(bad(format!("its object {m}"))),
            None => {
                whole = self.repo.find_blob(e.id).ctx("reading a blob")?;
                let bytes = whole.content();
                (Box::new(bytes), bytes.len() as u64)
            }
        };
        if size == 0 {
            return Ok(());
        }
        let plain = offsets::plain_len(size)
            .ok_or_else(|| bad(format!("blob of {size} bytes has no valid length")))?;
        let mut head = [0u8; offsets::HEADER_LEN as usize];
        let short = || bad("blob is shorter than its pages".into());
        let io = |x: std::io::Error| bad(format!("reading its object: {x}"));
        if fill(&mut r, &mut head).map_err(io)? != head.len() {
            return Err(short());
        }
        let header = Header::decode(&head).map_err(|x| bad(x.to_string()))?;
        let key = self
            .keys
            .get(header.generation)
            .ok_or_else(|| bad(format!("unknown key generation {}", header.generation)))?;
        let fc = FileCipher::new(key, &header);
        let count = offsets::page_count(plain);
        // A version 2 blob's hole slots (`format::holes`) read as zeros once
        // the sealed page that ends their run opens with the run's length.
        let may_hold_holes = head[4] == VERSION_HOLES;
        let mut run_start = None;
        let zeros = vec![0u8; offsets::PAGE_SIZE as usize];
        let mut slot = vec![0u8; offsets::CIPHER_PAGE as usize];
        for i in 0..count {
            let len = (offsets::page_plain_len(plain, i) + offsets::PAGE_OVERHEAD) as usize;
            let cipher = &mut slot[..len];
            if fill(&mut r, cipher).map_err(io)? != len {
                return Err(short());
            }
            let last = i + 1 == count;
            if may_hold_holes && !last && is_hole(cipher) {
                run_start.get_or_insert(i);
                continue;
            }
            let from = run_start.take().unwrap_or(i);
            let page = fc
                .open_page_after(i, last, i - from, cipher)
                .map_err(|x| bad(x.to_string()))?;
            for _ in from..i {
                f(&zeros)?;
            }
            f(&page)?;
        }
        Ok(())
    }

    /// The target of symlink `e`.
    pub fn link_target(&self, e: &VEntry, what: &str) -> Result<Zeroizing<Vec<u8>>> {
        let blob = self.repo.find_blob(e.id).ctx("reading a symlink")?;
        self.links
            .open_target(blob.content())
            .ok_or_else(|| Error::corrupt(what, "symlink target does not authenticate"))
    }

    /// Are the blobs of `a` and `b` the same plaintext? Equal ids are; else
    /// both are decrypted and compared.
    pub fn same_content(&self, a: &VEntry, b: &VEntry, what: &str) -> Result<bool> {
        if a.id == b.id {
            return Ok(true);
        }
        match (a.kind, b.kind) {
            (Kind::File, Kind::File) => {
                if self.size(a)? != self.size(b)? {
                    return Ok(false);
                }
                Ok(*self.read(a, what)? == *self.read(b, what)?)
            }
            (Kind::Symlink, Kind::Symlink) => {
                Ok(*self.link_target(a, what)? == *self.link_target(b, what)?)
            }
            _ => Ok(false),
        }
    }

    fn diriv(&self, tree: &git2::Tree<'_>, what: impl std::fmt::Display) -> Result<DirIv> {
        let bad = || Error::corrupt(&what, "a committed directory has no valid .diriv");
        let e = tree.get_name(DIRIV_FILE).ok_or_else(bad)?;
        let blob = self.repo.find_blob(e.id()).map_err(|_| bad())?;
        let bytes: [u8; DIRIV_LEN] = blob.content().try_into().map_err(|_| bad())?;
        Ok(bytes)
    }

    /// The encoded name in the sidecar of long entry `entry` of `tree`.
    fn sidecar(&self, tree: &git2::Tree<'_>, entry: &str) -> Option<String> {
        let side = tree.get_name(&names::sidecar_of(entry))?;
        let blob = self.repo.find_blob(side.id()).ok()?;
        let enc = std::str::from_utf8(blob.content()).ok()?.to_string();
        (names::long_entry(&enc) == entry).then_some(enc)
    }
}

/// The kind of a git tree entry's mode; `None` for what pkfs never commits.
fn kind_of(mode: i32) -> Option<Kind> {
    match mode {
        0o040000 => Some(Kind::Dir),
        0o120000 => Some(Kind::Symlink),
        0o100644 | 0o100755 => Some(Kind::File),
        _ => None,
    }
}
