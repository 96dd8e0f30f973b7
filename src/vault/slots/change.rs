//! Slot changes: each reads `root.key`, changes its list of slots and writes
//! the whole file back atomically (temporary file, fsync, rename, fsync of the
//! home). A crash at any point leaves either the old file or the new one,
//! each whole, so the node opens with the slots it had before the change (and
//! after it, with the new ones). Nothing but `root.key` is touched: the vault
//! data and the metadata never change.

use std::path::{Path, PathBuf};

use super::{describe, slot_id, SlotInfo};
use crate::error::{Error, Result};
use crate::store::atomic::{crash_point, write_atomic_at};
use crate::vault::protector::{encode_key_file, parse_key_file, Slot, MAX_SLOTS};

fn key_path(home: &Path) -> PathBuf {
    home.join("root.key")
}

/// The slots of the node at `home`.
pub fn read(home: &Path) -> Result<Vec<Slot>> {
    let path = key_path(home);
    let file = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotInitialized {
            home: home.to_path_buf(),
        },
        _ => Error::io(&path, e),
    })?;
    Ok(parse_key_file(&file)?.1)
}

fn write(home: &Path, slots: &[Slot], point: &str) -> Result<()> {
    if slots.is_empty() {
        return Err(Error::Usage(
            "refusing to remove the last slot: the node could never be opened again".into(),
        ));
    }
    if slots.len() > MAX_SLOTS {
        return Err(Error::Usage(format!(
            "root.key holds at most {MAX_SLOTS} slots"
        )));
    }
    crash_point(&format!("{point}-before-write"));
    write_atomic_at(&key_path(home), &encode_key_file(slots), Some(point))?;
    crash_point(&format!("{point}-after-rename"));
    Ok(())
}

/// Listing of every slot.
pub fn list(home: &Path) -> Result<Vec<SlotInfo>> {
    Ok(read(home)?.iter().map(describe).collect())
}

/// Append `slot`. Crash points `slot-add-before-write`, `slot-add` (the new
/// file durable, not renamed) and `slot-add-after-rename`.
pub fn add(home: &Path, slot: Slot) -> Result<SlotInfo> {
    let mut slots = read(home)?;
    let info = describe(&slot);
    slots.push(slot);
    write(home, &slots, "slot-add")?;
    Ok(info)
}

/// Remove the slot whose id is `id` (8 hex digits, or a unique prefix).
/// The last slot is refused. Crash point `slot-remove`.
pub fn remove(home: &Path, id: &str) -> Result<SlotInfo> {
    let mut slots = read(home)?;
    let want = id.trim().to_ascii_lowercase();
    if want.is_empty() || !want.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Usage(format!(
            "{id:?} is not a slot id (see `pkfs key list`)"
        )));
    }
    let hits: Vec<usize> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| super::hex(&slot_id(s)).starts_with(&want))
        .map(|(i, _)| i)
        .collect();
    let i = match hits.as_slice() {
        [i] => *i,
        [] => return Err(Error::NotFound(format!("slot {id}"))),
        _ => return Err(Error::Usage(format!("{id:?} names more than one slot"))),
    };
    if slots.len() == 1 {
        return Err(Error::Usage(
            "refusing to remove the last slot: the node could never be opened again".into(),
        ));
    }
    let gone = slots.remove(i);
    write(home, &slots, "slot-remove")?;
    Ok(describe(&gone))
}

/// Replace every slot `drop` selects by `new` (one atomic write): `passwd`
/// (passphrase slots) and `key rekey` (one shares slot). Crash point
/// `slot-replace`.
pub fn replace(home: &Path, drop: impl Fn(&Slot) -> bool, new: Slot) -> Result<SlotInfo> {
    let mut slots = read(home)?;
    slots.retain(|s| !drop(s));
    let info = describe(&new);
    slots.push(new);
    write(home, &slots, "slot-replace")?;
    Ok(info)
}
