//! The version record at work: refs repaired at open, vaults refused when
//! they cannot be, checkouts that keep pending changes.

use std::fs;
use std::path::Path;

use super::super::History;
use crate::crypto::SymKey;
use crate::error::Error;
use crate::store::{Change, ChangeKind};

fn key() -> SymKey {
    SymKey::from_bytes([9; 32])
}

fn put(v: &Path, rel: &str, data: &[u8]) {
    let p = v.join("contents").join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn get(v: &Path, rel: &str) -> Vec<u8> {
    fs::read(v.join("contents").join(rel)).unwrap()
}

/// A vault with three versions of `a` ("a1", "a2", "a3"); returns their ids.
fn three_versions() -> (tempfile::TempDir, Vec<String>) {
    let d = tempfile::tempdir().unwrap();
    let v = d.path();
    put(v, ".diriv", b"iv-root");
    put(v, "a", b"a1");
    let h = History::init(v, &key(), &[Change::new(ChangeKind::Added, "a")]).unwrap();
    let mut ids = vec![h.head().unwrap().id];
    for n in 2..=3 {
        h.mark("contents/a").unwrap();
        put(v, "a", format!("a{n}").as_bytes());
        ids.push(h.commit(&[Change::new(ChangeKind::Modified, "a")]).unwrap());
    }
    (d, ids)
}

fn git(v: &Path, rel: &str) -> std::path::PathBuf {
    v.join(".git").join(rel)
}

#[test]
fn a_deleted_emptied_or_rewound_main_is_repaired_from_the_record() {
    let (d, ids) = three_versions();
    let v = d.path();
    let damage: [&dyn Fn(); 3] = [
        &|| fs::remove_file(git(v, "refs/heads/main")).unwrap(),
        &|| fs::write(git(v, "refs/heads/main"), b"").unwrap(),
        &|| fs::write(git(v, "refs/heads/main"), format!("{}\n", ids[0])).unwrap(),
    ];
    let mut latest = ids[2].clone();
    for (i, hurt) in damage.iter().enumerate() {
        hurt();
        let h = History::open(v, &key()).unwrap();
        let repairs = h.ref_repairs();
        assert!(
            repairs.len() == 1 && repairs[0].starts_with("main "),
            "{i}: {repairs:?}"
        );
        let head = h.head().unwrap();
        assert!(
            head.id == latest && head.at_latest && head.commits == 3 + i,
            "{i}"
        );
        // The next commit continues the whole history.
        h.mark("contents/b").unwrap();
        put(v, "b", format!("b{i}").as_bytes());
        latest = h.commit(&[Change::new(ChangeKind::Added, "b")]).unwrap();
        assert_eq!(h.head().unwrap().commits, 4 + i);
        drop(h);
        assert!(History::open(v, &key()).unwrap().ref_repairs().is_empty());
    }
}

#[test]
fn an_empty_or_garbled_head_is_repaired_attached_or_detached() {
    let (d, ids) = three_versions();
    let v = d.path();
    fs::write(git(v, "HEAD"), b"").unwrap();
    let h = History::open(v, &key()).unwrap();
    assert_eq!(h.ref_repairs().len(), 1, "{:?}", h.ref_repairs());
    assert!(h.head().unwrap().at_latest);
    h.checkout("HEAD~2").unwrap();
    drop(h);
    for bad in [&b""[..], b"ref: refs/heads/nope\n", b"garbage"] {
        fs::write(git(v, "HEAD"), bad).unwrap();
        let h = History::open(v, &key()).unwrap();
        let head = h.head().unwrap();
        assert!(head.id == ids[0] && !head.at_latest, "{bad:?}");
        assert_eq!(get(v, "a"), b"a1");
    }
}

#[test]
fn without_a_record_unreadable_refs_refuse_the_vault_and_readable_ones_are_recorded() {
    let (d, ids) = three_versions();
    let v = d.path();
    // A vault made before the record: its refs become the record.
    fs::remove_file(v.join("version")).unwrap();
    let h = History::open(v, &key()).unwrap();
    assert!(h.ref_repairs().is_empty());
    drop(h);
    assert!(v.join("version").is_file());
    // No record and no main: refused, never restarted from a new root.
    fs::remove_file(v.join("version")).unwrap();
    fs::remove_file(git(v, "refs/heads/main")).unwrap();
    let err = History::open(v, &key()).err().unwrap();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("main is missing"), "{err}");
    fs::write(git(v, "refs/heads/main"), format!("{}\n", ids[2])).unwrap();
    assert_eq!(History::open(v, &key()).unwrap().head().unwrap().commits, 3);
}

#[test]
fn a_damaged_record_or_one_naming_a_missing_commit_refuses_the_vault() {
    let (d, ids) = three_versions();
    let v = d.path();
    let rec = fs::read(v.join("version")).unwrap();
    let mut bad = rec.clone();
    bad[20] ^= 1;
    fs::write(v.join("version"), &bad).unwrap();
    let err = History::open(v, &key()).err().unwrap();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    fs::write(v.join("version"), &rec).unwrap();
    // Main rewound, and the newest commit's object gone (as a cut could
    // never leave it): nothing to repair main to.
    fs::write(git(v, "refs/heads/main"), format!("{}\n", ids[1])).unwrap();
    let hex = &ids[2];
    fs::remove_file(git(v, &format!("objects/{}/{}", &hex[..2], &hex[2..]))).unwrap();
    let err = History::open(v, &key()).err().unwrap();
    assert!(
        matches!(err, Error::Corrupt { .. }) && err.to_string().contains(hex),
        "{err}"
    );
}

#[test]
fn the_counter_grows_with_every_move() {
    let (d, _) = three_versions();
    let v = d.path();
    let file = crate::store::version::VersionFile::new(v, &key());
    let c0 = file.load().unwrap().unwrap().counter;
    assert_eq!(c0, 3);
    let h = History::open(v, &key()).unwrap();
    h.checkout("HEAD~1").unwrap();
    let r = file.load().unwrap().unwrap();
    assert!(r.counter == 4 && !r.attached && r.main != r.head);
    h.checkout("latest").unwrap();
    let r = file.load().unwrap().unwrap();
    assert!(r.counter == 5 && r.attached && r.main == r.head);
}

#[test]
fn a_checkout_whose_commit_of_pending_changes_fails_moves_nothing() {
    let (d, ids) = three_versions();
    let v = d.path();
    let h = History::open(v, &key()).unwrap();
    // A change journaled (and acknowledged) but not committed yet.
    h.mark("contents/a").unwrap();
    put(v, "a", b"pending");
    // Any failing step of the commit: here the version record cannot be
    // replaced (a non-empty directory stands where it goes).
    let rec = v.join("version");
    let saved = fs::read(&rec).unwrap();
    fs::remove_file(&rec).unwrap();
    fs::create_dir(&rec).unwrap();
    fs::write(rec.join("x"), b"").unwrap();
    let err = h.checkout("HEAD~2").err().unwrap();
    assert!(err.to_string().contains("pending changes"), "{err}");
    assert_eq!(get(v, "a"), b"pending");
    assert_eq!(h.head().unwrap().id, ids[2]);
    // Once the commit can be made, the checkout commits first, then moves.
    fs::remove_dir_all(&rec).unwrap();
    fs::write(&rec, saved).unwrap();
    h.checkout("HEAD~1").unwrap();
    assert_eq!(get(v, "a"), b"a3");
    h.checkout("latest").unwrap();
    assert_eq!(get(v, "a"), b"pending");
}

#[test]
fn the_objects_a_commit_fsyncs_are_its_new_trees_and_itself() {
    let d = tempfile::tempdir().unwrap();
    let v = d.path();
    put(v, ".diriv", b"iv-root");
    for dir in ["d1", "d2"] {
        put(v, &format!("{dir}/.diriv"), b"iv");
        put(v, &format!("{dir}/f"), b"one");
    }
    let h = History::init(v, &key(), &[]).unwrap();
    let old = h.head().unwrap().id;
    h.mark("contents/d1/f").unwrap();
    put(v, "d1/f", b"two");
    let new = h.commit(&[]).unwrap();
    let repo = h.repo.borrow();
    let tree = |id: &str| {
        repo.find_commit(git2::Oid::from_str(id).unwrap())
            .unwrap()
            .tree()
            .unwrap()
    };
    let (new_tree, old_tree) = (tree(&new), tree(&old));
    let mut ids = Vec::new();
    super::new_trees(&repo, &new_tree, Some(&old_tree), &mut ids).unwrap();
    let at = |p: &str| new_tree.get_path(Path::new(p)).unwrap().id();
    assert_eq!(ids, [new_tree.id(), at("contents"), at("contents/d1")]);
    // Without an old tree (the first commit), every tree is new.
    ids.clear();
    super::new_trees(&repo, &new_tree, None, &mut ids).unwrap();
    assert_eq!(ids.len(), 4);
}
