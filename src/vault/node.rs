//! The node: an unlocked home with its root keypair and vault table
//! (Polykey's VaultManager).

use std::fs;
use std::path::{Path, PathBuf};

use super::handle::Vault;
use super::home::{Home, UNLISTED_OK};
use super::metadata::{self, Table, VaultRecord, WrappedKey};
use super::protector::{
    encode_key_file, open_key_file, open_key_file_versioned, parse_key_file, seal_key_file,
    seal_slot, Protector, Slot, VERSION as KEY_FILE_VERSION,
};
use crate::crypto::rsa::{RootKeypair, RootPublic};
use crate::crypto::{random_array, Keychain, SymKey};
use crate::error::{Error, Result};
use crate::format::names;
use crate::store::atomic::{
    crash_point, create_dir_durable, fsync_dir, fsync_tree, write_atomic, write_atomic_at,
};
use crate::store::history::History;
use crate::store::quarantine::{self, Quarantined};
use crate::store::Tree;
use crate::store::{Change, ChangeKind};

const JOURNAL_FILES: [&str; 3] = ["metadata", "root.pub", "root.key"];
const JOURNAL_COMMIT: &str = "COMMIT";
/// The node setting that keeps the mount root's mode (octal).
const MOUNT_ROOT_MODE: &str = "mount-root-mode";
/// The node setting that keeps the key service's keystore key, Base64 of its
/// RSA-OAEP wrap under the root public key (see `keys/file.rs`).
const KEYSTORE_KEY: &str = "keystore-key";
/// The keystore key that replaces it, while a `keys delete-owner` re-encrypts
/// the `keys` file (same form).
const KEYSTORE_KEY_NEXT: &str = "keystore-key-next";

/// One entry of a `pkfs quarantine restore`.
pub struct Restored {
    pub entry: Quarantined,
    /// Its plaintext path, where the names on the way decrypt.
    pub shown: Option<String>,
    /// `Err`: why it stayed in quarantine.
    pub outcome: std::result::Result<(), &'static str>,
}

pub struct Node {
    home: Home,
    root: RootKeypair,
    table: Table,
    /// What `root.key` is sealed with; `None` once forgotten (see
    /// [`Node::forget_protector`]).
    protector: Option<Box<dyn Protector>>,
}

/// Check a vault name: the rules of a file name, no ':' (which separates the
/// vault from the path in `VAULT:PATH`), and not the reserved `.git`.
pub fn check_vault_name(name: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidName {
        name: name.to_string(),
        reason,
    };
    names::validate(name.as_bytes()).map_err(invalid)?;
    if name.contains(':') {
        return Err(invalid("contains ':' (VAULT:PATH separator)"));
    }
    crate::store::vpath::check_new_name(name.as_bytes())
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Node {
    /// Create a node at `path` around `root`, protected by `protector`.
    pub fn init(path: &Path, protector: Box<dyn Protector>, root: RootKeypair) -> Result<Node> {
        let home = Home::create(path)?;
        let vaults = home.vaults_dir();
        if !vaults.exists() {
            create_dir_durable(&vaults)?;
        }
        let table = Table {
            version: 1,
            vaults: vec![],
            settings: Default::default(),
        };
        write_atomic(&home.metadata(), &metadata::seal(&root, &table))?;
        write_atomic(&home.root_pub(), root.public().to_pem().as_bytes())?;
        // root.key last: its presence is what makes the home a node.
        write_atomic(
            &home.root_key(),
            &seal_key_file(protector.as_ref(), &root.to_pkcs8_der()),
        )?;
        Ok(Node {
            home,
            root,
            table,
            protector: Some(protector),
        })
    }

    /// Open and unlock the node at `path`.
    pub fn unlock(path: &Path, protector: Box<dyn Protector>) -> Result<Node> {
        let home = Home::open(path)?;
        home.remove_stale_git_locks();
        recover_rotation(&home, protector.as_ref())?;
        home.remove_stale_temps();
        let sealed = read(&home.root_key())?;
        let (der, version) = open_key_file_versioned(protector.as_ref(), &sealed)?;
        if version != KEY_FILE_VERSION {
            upgrade_key_file(&home, &sealed);
        }
        let root = RootKeypair::from_pkcs8_der(&der)
            .map_err(|_| Error::corrupt("root.key", "the decrypted key is not an RSA-4096 key"))?;
        let pem = String::from_utf8(read_state(&home.root_pub(), "root.pub")?)
            .map_err(|_| Error::corrupt("root.pub", "not PEM"))?;
        match RootPublic::from_pem(&pem) {
            Ok(p) if &p == root.public() => {}
            _ => return Err(Error::corrupt("root.pub", "does not match root.key")),
        }
        let table = metadata::open(&root, &read_state(&home.metadata(), "metadata")?)?;
        home.remove_unlisted_vaults(|id| table.vaults.iter().any(|v| v.id == id));
        Ok(Node {
            home,
            root,
            table,
            protector: Some(protector),
        })
    }

    /// Wipe the protector (the passphrase) now that the root key is open: a
    /// command that will not re-seal `root.key` keeps no passphrase in memory.
    /// [`Node::rotate_root`] then fails; [`Node::change_protector`] still works.
    pub fn forget_protector(&mut self) {
        self.protector = None;
    }

    pub fn home(&self) -> &Path {
        self.home.root()
    }

    pub fn node_id(&self) -> String {
        self.root.public().node_id()
    }

    /// `names`, or every vault's name when `names` is empty.
    pub fn names_or_all(&self, names: &[String]) -> Vec<String> {
        if names.is_empty() {
            self.vaults().iter().map(|v| v.name.clone()).collect()
        } else {
            names.to_vec()
        }
    }

    pub fn vaults(&self) -> &[VaultRecord] {
        &self.table.vaults
    }

    /// The root keypair (wraps and unwraps the vault keys).
    pub(super) fn root(&self) -> &RootKeypair {
        &self.root
    }

    /// The vault table, to change (then [`Node::save_table`]).
    pub(super) fn table_mut(&mut self) -> &mut Table {
        &mut self.table
    }

    pub(super) fn save_table(&self) -> Result<()> {
        write_atomic_at(
            &self.home.metadata(),
            &metadata::seal(&self.root, &self.table),
            Some("metadata-before-rename"),
        )
    }

    /// Seal the root key into a new slot under `protector` (`pkfs key add`,
    /// `passwd`, `key rekey`); the caller writes it (see `vault::slots::change`).
    pub fn seal_slot(&self, protector: &dyn Protector) -> Slot {
        seal_slot(protector, &self.root.to_pkcs8_der())
    }

    /// `pkfs passwd`: re-seal the root key under a new protector.
    pub fn change_protector(&mut self, protector: Box<dyn Protector>) -> Result<()> {
        let sealed = seal_key_file(protector.as_ref(), &self.root.to_pkcs8_der());
        write_atomic(&self.home.root_key(), &sealed)?;
        self.protector = Some(protector);
        Ok(())
    }

    /// Replace the root keypair: re-wrap every key and swap `metadata`, `root.pub`
    /// and `root.key` together through the `rotate/` journal. No vault data changes.
    pub fn rotate_root(&mut self, new_root: RootKeypair) -> Result<()> {
        let Some(protector) = self.protector.as_deref() else {
            return Err(Error::Usage(
                "the passphrase was already wiped; unlock again to rotate the root key".into(),
            ));
        };
        let mut table = self.table.clone();
        for v in &mut table.vaults {
            v.rewrap(&self.root, new_root.public())?;
        }
        for name in [KEYSTORE_KEY, KEYSTORE_KEY_NEXT] {
            if let Some(key) = self.stored_setting_key(name)? {
                table
                    .settings
                    .insert(name.into(), metadata::wrap(new_root.public(), &key));
            }
        }
        let journal = self.home.rotate_dir();
        if journal.exists() {
            fs::remove_dir_all(&journal).map_err(|e| Error::io(&journal, e))?;
        }
        create_dir_durable(&journal)?;
        write_atomic(
            &journal.join("metadata"),
            &metadata::seal(&new_root, &table),
        )?;
        write_atomic(
            &journal.join("root.pub"),
            new_root.public().to_pem().as_bytes(),
        )?;
        let sealed = seal_key_file(protector, &new_root.to_pkcs8_der());
        write_atomic(&journal.join("root.key"), &sealed)?;
        crash_point("rotate-journal-written");
        // Every journal file and the journal's entries are durable (write_atomic
        // fsyncs file and directory), so COMMIT never names an incomplete set.
        write_atomic(&journal.join(JOURNAL_COMMIT), b"")?;
        crash_point("rotate-committed");
        roll_forward(&self.home)?;
        self.root = new_root;
        self.table = table;
        Ok(())
    }

    /// The mode of the mount root: the owner's choice (`chmod` on the mount
    /// root, kept in the vault table), else the home's own mode (0700), so
    /// that an `--allow-other` mount does not show other users the vault
    /// names unless the owner opens it.
    pub fn mount_root_mode(&self) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        self.table
            .settings
            .get(MOUNT_ROOT_MODE)
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .filter(|m| *m <= 0o7777)
            .unwrap_or_else(|| {
                fs::metadata(self.home.root())
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or(0o700)
            })
    }

    /// Keep `mode` (the permission bits) as the mount root's mode.
    pub fn set_mount_root_mode(&mut self, mode: u32) -> Result<()> {
        let before = self.table.clone();
        self.table
            .settings
            .insert(MOUNT_ROOT_MODE.into(), format!("{:o}", mode & 0o7777));
        self.save_table().inspect_err(|_| self.table = before)
    }

    /// The key service's keystore key, unwrapped; with `create`, one is made
    /// (and the table saved) when the node has none yet.
    pub fn keystore_key(&mut self, create: bool) -> Result<Option<SymKey>> {
        if let Some(key) = self.stored_setting_key(KEYSTORE_KEY)? {
            return Ok(Some(key));
        }
        if !create {
            return Ok(None);
        }
        let key = SymKey::generate();
        let before = self.table.clone();
        self.table.settings.insert(
            KEYSTORE_KEY.into(),
            metadata::wrap(self.root.public(), &key),
        );
        self.save_table().inspect_err(|_| self.table = before)?;
        Ok(Some(key))
    }

    /// The keystore key staged by [`Node::stage_keystore_key`], if any: the
    /// `keys` file may be under it when a re-keying was cut short.
    pub fn next_keystore_key(&self) -> Result<Option<SymKey>> {
        self.stored_setting_key(KEYSTORE_KEY_NEXT)
    }

    /// Keep `next` beside the keystore key, durably, before the `keys` file
    /// is re-encrypted under it.
    pub fn stage_keystore_key(&mut self, next: &SymKey) -> Result<()> {
        let before = self.table.clone();
        self.table.settings.insert(
            KEYSTORE_KEY_NEXT.into(),
            metadata::wrap(self.root.public(), next),
        );
        self.save_table().inspect_err(|_| self.table = before)
    }

    /// The `keys` file is under the staged key now: make it the keystore
    /// key, and forget the old one.
    pub fn commit_keystore_key(&mut self) -> Result<()> {
        let before = self.table.clone();
        let Some(next) = self.table.settings.remove(KEYSTORE_KEY_NEXT) else {
            return Ok(());
        };
        self.table.settings.insert(KEYSTORE_KEY.into(), next);
        self.save_table().inspect_err(|_| self.table = before)
    }

    fn stored_setting_key(&self, name: &str) -> Result<Option<SymKey>> {
        use base64::Engine;
        let Some(w) = self.table.settings.get(name) else {
            return Ok(None);
        };
        let bad = || Error::corrupt("metadata", "the keystore key does not unwrap");
        let wrapped = base64::engine::general_purpose::STANDARD
            .decode(w)
            .map_err(|_| bad())?;
        self.root.unwrap_key(&wrapped).map(Some).map_err(|_| bad())
    }

    pub fn create_vault(&mut self, name: &str) -> Result<VaultRecord> {
        self.create_vault_with(name, Default::default())
    }

    /// [`Node::create_vault`] with its settings (say `rotate-after`) in the
    /// same write of the table.
    pub fn create_vault_with(
        &mut self,
        name: &str,
        settings: std::collections::BTreeMap<String, String>,
    ) -> Result<VaultRecord> {
        check_vault_name(name)?;
        if self.table.find(name).is_ok() {
            return Err(Error::VaultDefined(name.to_string()));
        }
        let id = bs58::encode(random_array::<16>()).into_string();
        let key = SymKey::generate();
        let dir = self.home.vault_dir(&id);
        create_dir_durable(&dir)?;
        // Until the table lists it, a crash leaves a directory that the next
        // unlock may remove.
        write_atomic(&dir.join(UNLISTED_OK), b"")?;
        let keys = Keychain::new(vec![(0, key.clone())]).ok_or(Error::Crypto("empty keychain"))?;
        Tree::create(&dir.join("contents"), keys)?;
        History::init(&dir, &key, &[])?;
        // The vault is complete on disk before the table names it.
        fsync_tree(&dir)?;
        crash_point("vault-create-before-metadata");
        let now = now_unix();
        let record = VaultRecord {
            id,
            name: name.to_string(),
            created: now,
            keys: vec![WrappedKey {
                generation: 0,
                wrapped: metadata::wrap(self.root.public(), &key),
                created: Some(now),
            }],
            dropped: Vec::new(),
            settings,
        };
        self.table.vaults.push(record.clone());
        if let Err(e) = self.save_table() {
            self.table.vaults.pop();
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        let mark = dir.join(UNLISTED_OK);
        fs::remove_file(&mark).map_err(|e| Error::io(&mark, e))?;
        Ok(record)
    }

    pub fn rename_vault(&mut self, old: &str, new: &str) -> Result<()> {
        check_vault_name(new)?;
        self.table.find(old)?;
        if old == new {
            return Ok(());
        }
        if self.table.find(new).is_ok() {
            return Err(Error::VaultDefined(new.to_string()));
        }
        let before = self.table.clone();
        self.table.find_mut(old)?.name = new.to_string();
        self.save_table().inspect_err(|_| self.table = before)
    }

    /// Forget the vault, then remove its directory.
    pub fn delete_vault(&mut self, name: &str) -> Result<()> {
        let id = self.table.find(name)?.id.clone();
        let dir = self.home.vault_dir(&id);
        // Once the table no longer lists it, a crash leaves a directory that
        // the next unlock removes.
        write_atomic(&dir.join(UNLISTED_OK), b"")?;
        let before = self.table.clone();
        self.table.vaults.retain(|v| v.name != name);
        self.save_table().inspect_err(|_| self.table = before)?;
        crash_point("vault-delete-before-remove");
        // A background removal may still be emptying the vault's trash.
        crate::store::reaper::drain();
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&dir, e)),
            _ => {}
        }
        fsync_dir(&self.home.vaults_dir())
    }

    pub fn open_vault(&self, name: &str) -> Result<Vault> {
        let record = self.table.find(name)?.clone();
        let keys = record.keychain(&self.root)?;
        Vault::open(record, self.vault_dir_of(name)?, keys)
    }

    /// What pkfs moved to the vault's quarantine, oldest batch first.
    pub fn quarantined(&self, name: &str) -> Result<Vec<Quarantined>> {
        quarantine::list(&self.vault_dir_of(name)?)
    }

    /// Put every entry of quarantine `batch` back where it came from, and
    /// commit them. Each entry's backing path is journaled before it moves, so
    /// the commit adopts exactly what comes back. Returns each entry with its
    /// plaintext path and what became of it (`Err`: why it stayed).
    pub fn restore_quarantined(&self, name: &str, batch: &str) -> Result<Vec<Restored>> {
        let dir = self.vault_dir_of(name)?;
        let entries: Vec<Quarantined> = quarantine::list(&dir)?
            .into_iter()
            .filter(|q| q.batch == batch)
            .collect();
        if entries.is_empty() {
            return Err(Error::NotFound(format!("{name}:quarantine/{batch}")));
        }
        let vault = self.open_vault(name)?;
        let batch_dir = dir.join("quarantine").join(batch);
        let mut out = Vec::new();
        vault.mutate(|tree, changes| {
            for q in entries {
                let path = quarantine::plain_path(tree, &batch_dir, &q.rel);
                let shown = path.as_ref().map(|p| p.to_string());
                let why = quarantine::blocked(&dir, &q).or(match &path {
                    None => Some("its name does not decrypt"),
                    Some(p) if tree.backing_rel(p).ok().as_deref() != Some(q.rel.as_str()) => {
                        Some("its name does not decrypt to where it came from")
                    }
                    Some(_) => None,
                });
                if let (None, Some(p)) = (why, &path) {
                    vault.history().mark(&q.rel)?;
                    vault.history().sync_journal()?;
                    quarantine::put_back(&dir, &q.batch, &q.rel)?;
                    let shown = p.to_string();
                    let kind = ChangeKind::Added;
                    changes.push(match q.is_dir {
                        true => Change::new(kind, format!("{shown}/")),
                        false => Change::new(kind, shown),
                    });
                }
                out.push(Restored {
                    entry: q,
                    shown,
                    outcome: why.map_or(Ok(()), Err),
                });
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn vault_dir_of(&self, name: &str) -> Result<PathBuf> {
        let id = &self.table.find(name)?.id;
        let dir = self.home.vault_dir(id);
        if !dir.join("contents").is_dir() || !dir.join(".git").is_dir() {
            return Err(Error::corrupt(
                format!("vault '{name}'"),
                format!("its directory vaults/{id} is missing or incomplete"),
            ));
        }
        make_private(&dir.join(".git"));
        Ok(dir)
    }
}

/// Rewrite a version-1 `root.key` (just opened, so genuine) as version 2, the
/// same slot with a checksum, so later damage is told from a wrong passphrase.
/// Best effort: a home that cannot be written keeps opening as version 1.
fn upgrade_key_file(home: &Home, sealed: &[u8]) {
    let Ok((_, slots)) = parse_key_file(sealed) else {
        return;
    };
    match write_atomic(&home.root_key(), &encode_key_file(&slots)) {
        Ok(()) => tracing::info!("root.key rewritten in format version {KEY_FILE_VERSION}"),
        Err(e) => tracing::warn!("root.key kept in format version 1: {e}"),
    }
}

/// Close a directory pkfs made to group and others, if an older pkfs (or
/// libgit2 under the user's umask) left it open. Everything below it is then
/// out of their reach too. Best effort: the home itself is 0700 anyway.
fn make_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && m.permissions().mode() & 0o077 != 0 => {
            let mode = m.permissions().mode() & 0o700;
            if let Err(e) = fs::set_permissions(dir, fs::Permissions::from_mode(mode)) {
                tracing::warn!("cannot make {} private: {e}", dir.display());
            }
        }
        _ => {}
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(path, e))
}

/// A state file of a node whose `root.key` exists: missing, the node is
/// damaged (corrupt), not uninitialised.
fn read_state(path: &Path, name: &str) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::corrupt(
            name,
            "missing (the node is damaged; restore the home from a backup)",
        ),
        _ => Error::io(path, e),
    })
}

/// Finish (after COMMIT) or discard (before it) an interrupted rotation.
///
/// Rolling forward replaces the old root key, so it happens only once the new
/// state has been checked whole: the new `root.key` opens with `protector`,
/// the new `root.pub` matches it and the new `metadata` opens under it. A wrong
/// passphrase or a damaged journal changes nothing on disk.
fn recover_rotation(home: &Home, protector: &dyn Protector) -> Result<()> {
    let journal = home.rotate_dir();
    if !journal.exists() {
        return Ok(());
    }
    if journal.join(JOURNAL_COMMIT).exists() {
        check_new_state(home, protector)?;
        tracing::info!("finishing an interrupted root-key rotation");
        roll_forward(home)
    } else {
        tracing::info!("discarding an unfinished root-key rotation");
        fs::remove_dir_all(&journal).map_err(|e| Error::io(&journal, e))?;
        fsync_dir(home.root())
    }
}

/// The state a roll-forward would leave, file by file: the journal's copy if it
/// is still there, else the one already renamed into the home.
fn check_new_state(home: &Home, protector: &dyn Protector) -> Result<()> {
    let journal = home.rotate_dir();
    let pick = |f: &str| {
        let j = journal.join(f);
        if j.exists() {
            j
        } else {
            home.root().join(f)
        }
    };
    let der = open_key_file(protector, &read(&pick("root.key"))?)?;
    let root = RootKeypair::from_pkcs8_der(&der).map_err(|_| {
        Error::corrupt(
            "rotate/root.key",
            "the decrypted key is not an RSA-4096 key",
        )
    })?;
    let pem = String::from_utf8(read(&pick("root.pub"))?)
        .map_err(|_| Error::corrupt("rotate/root.pub", "not PEM"))?;
    match RootPublic::from_pem(&pem) {
        Ok(p) if &p == root.public() => {}
        _ => return Err(Error::corrupt("rotate/root.pub", "does not match root.key")),
    }
    metadata::open(&root, &read(&pick("metadata"))?)?;
    Ok(())
}

fn roll_forward(home: &Home) -> Result<()> {
    let journal = home.rotate_dir();
    for (i, f) in JOURNAL_FILES.iter().enumerate() {
        let src = journal.join(f);
        if src.exists() {
            let dst = home.root().join(f);
            fs::rename(&src, &dst).map_err(|e| Error::io(&dst, e))?;
        }
        if i == 0 {
            crash_point("rotate-midway");
        }
    }
    fsync_dir(home.root())?;
    fs::remove_dir_all(&journal).map_err(|e| Error::io(&journal, e))?;
    fsync_dir(home.root())
}
