//! Mode records through `History`: commit, checkout, drift.

use std::path::Path;

use crate::crypto::SymKey;
use crate::format::modes::MODES_FILE;
use crate::store::changes::MoveKind;
use crate::store::history::History;

use super::live_mode;

fn key() -> SymKey {
    SymKey::from_bytes([4; 32])
}

fn mode(v: &Path, rel: &str) -> u32 {
    live_mode(&v.join(rel)).unwrap().0
}

/// chmod through pkfs: journaled as a move onto itself, then set.
fn chmod(h: &History, v: &Path, rel: &str, m: u32) {
    h.mark_move(rel, rel, MoveKind::Rename).unwrap();
    let abs = v.join(rel);
    let is_dir = abs.is_dir();
    super::chmod_keeping_access(&abs, m, is_dir, false).unwrap();
}

/// A vault with file `contents/Zm9v` and directory `contents/ZGly` holding
/// file `YmFy`, committed.
fn setup() -> (tempfile::TempDir, History) {
    let d = tempfile::tempdir().unwrap();
    let v = d.path();
    let c = v.join("contents");
    std::fs::create_dir_all(c.join("ZGly")).unwrap();
    std::fs::write(c.join(".diriv"), [1u8; 16]).unwrap();
    std::fs::write(c.join("ZGly/.diriv"), [2u8; 16]).unwrap();
    std::fs::write(c.join("Zm9v"), b"foo").unwrap();
    std::fs::write(c.join("ZGly/YmFy"), b"bar").unwrap();
    let h = History::init(v, &key(), &[]).unwrap();
    for p in ["contents/Zm9v", "contents/ZGly", "contents/ZGly/YmFy"] {
        chmod(&h, v, p, if p.ends_with("ly") { 0o700 } else { 0o600 });
    }
    h.commit(&[]).unwrap();
    (d, h)
}

#[test]
fn modes_are_committed_and_come_back_with_their_version() {
    let (d, h) = setup();
    let v = d.path();
    assert!(
        v.join("contents").join(MODES_FILE).is_file(),
        "the top record"
    );
    assert!(
        !v.join("contents/ZGly").join(MODES_FILE).exists(),
        "all default"
    );
    chmod(&h, v, "contents/Zm9v", 0o640);
    chmod(&h, v, "contents/ZGly", 0o711);
    chmod(&h, v, "contents/ZGly/YmFy", 0o000);
    h.commit(&[]).unwrap();
    assert!(h.journal_is_empty());
    h.checkout("HEAD~1").unwrap();
    assert_eq!(mode(v, "contents/Zm9v"), 0o600);
    assert_eq!(mode(v, "contents/ZGly"), 0o700);
    assert_eq!(mode(v, "contents/ZGly/YmFy"), 0o600);
    h.checkout("latest").unwrap();
    assert_eq!(mode(v, "contents/Zm9v"), 0o640);
    assert_eq!(mode(v, "contents/ZGly"), 0o711);
    assert_eq!(mode(v, "contents/ZGly/YmFy"), 0o000);
    assert!(h.mode_drift().is_empty(), "{:?}", h.mode_drift());
    // A rename keeps the mode; a reopen reads the same records.
    h.mark_move("contents/Zm9v", "contents/cXV4", MoveKind::Rename)
        .unwrap();
    std::fs::rename(v.join("contents/Zm9v"), v.join("contents/cXV4")).unwrap();
    h.commit(&[]).unwrap();
    drop(h);
    let h = History::open(v, &key()).unwrap();
    h.checkout("HEAD~1").unwrap();
    h.checkout("latest").unwrap();
    assert_eq!(mode(v, "contents/cXV4"), 0o640);
}

#[test]
fn a_mode_changed_at_rest_is_reported_and_never_committed() {
    let (d, h) = setup();
    let v = d.path();
    chmod(&h, v, "contents/ZGly/YmFy", 0o640);
    h.commit(&[]).unwrap();
    // Behind pkfs's back.
    super::chmod_keeping_access(&v.join("contents/ZGly/YmFy"), 0o666, false, false).unwrap();
    let drift = h.mode_drift();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0].0, "contents/ZGly/YmFy");
    // A change next to it commits the directory's record again, with the
    // committed mode, not the one set at rest.
    h.mark("contents/ZGly/bmV3").unwrap();
    std::fs::write(v.join("contents/ZGly/bmV3"), b"new").unwrap();
    h.commit(&[]).unwrap();
    h.checkout("HEAD~1").unwrap();
    h.checkout("latest").unwrap();
    assert_eq!(mode(v, "contents/ZGly/YmFy"), 0o640);
    assert!(h.mode_drift().is_empty());
}

#[test]
fn a_record_tampered_in_the_work_tree_is_not_applied() {
    let (d, h) = setup();
    let v = d.path();
    chmod(&h, v, "contents/Zm9v", 0o604);
    h.commit(&[]).unwrap();
    let rec = v.join("contents").join(MODES_FILE);
    let mut bytes = std::fs::read(&rec).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&rec, &bytes).unwrap();
    // The checkout writes HEAD's record back and applies the committed one.
    h.checkout("HEAD~1").unwrap();
    h.checkout("latest").unwrap();
    assert_eq!(mode(v, "contents/Zm9v"), 0o604);
    assert_ne!(std::fs::read(&rec).unwrap(), bytes);
}

#[test]
fn a_vault_without_records_keeps_its_live_modes_at_its_next_commit() {
    let d = tempfile::tempdir().unwrap();
    let v = d.path();
    let c = v.join("contents");
    std::fs::create_dir_all(&c).unwrap();
    // No record can be written under an IV that is not one: HEAD has none,
    // as a vault made before records.
    std::fs::write(c.join(".diriv"), b"short").unwrap();
    std::fs::write(c.join("Zm9v"), b"foo").unwrap();
    let h = History::init(v, &key(), &[]).unwrap();
    assert!(!c.join(MODES_FILE).exists());
    super::chmod_keeping_access(&c.join("Zm9v"), 0o644, false, false).unwrap();
    h.mark("contents/.diriv").unwrap();
    std::fs::write(c.join(".diriv"), [1u8; 16]).unwrap();
    h.commit(&[]).unwrap();
    assert!(c.join(MODES_FILE).is_file());
    h.checkout("HEAD~1").unwrap();
    h.checkout("latest").unwrap();
    assert_eq!(mode(v, "contents/Zm9v"), 0o644);
}
