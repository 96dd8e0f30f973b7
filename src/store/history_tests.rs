use super::*;
use crate::store::ChangeKind;

fn key() -> SymKey {
    SymKey::from_bytes([9; 32])
}

fn put(v: &Path, rel: &str, data: &[u8]) {
    let p = v.join("contents").join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn get(v: &Path, rel: &str) -> Option<Vec<u8>> {
    fs::read(v.join("contents").join(rel)).ok()
}

fn rm(v: &Path, rel: &str) {
    fs::remove_file(v.join("contents").join(rel)).unwrap();
}

fn ch(kind: ChangeKind, p: &str) -> Change {
    Change::new(kind, p)
}

/// A vault with `a` = "a1" and `sub/b` = "b1", committed once.
fn setup() -> (tempfile::TempDir, History) {
    let d = tempfile::tempdir().unwrap();
    let v = d.path();
    put(v, ".diriv", b"iv-root");
    put(v, "a", b"a1");
    put(v, "sub/.diriv", b"iv-sub");
    put(v, "sub/b", b"b1");
    let changes = [ch(ChangeKind::Added, "a"), ch(ChangeKind::Added, "sub/b")];
    let h = History::init(v, &key(), &changes).unwrap();
    (d, h)
}

fn usage_msg(r: Result<String>) -> String {
    match r {
        Err(Error::Usage(m)) => m,
        other => panic!("expected a usage error, got {other:?}"),
    }
}

/// Read every tree and blob reachable from `id`.
fn read_all(repo: &Repository, id: &str) {
    let commit = repo.find_commit(Oid::from_str(id).unwrap()).unwrap();
    let tree = commit.tree().unwrap();
    tree.walk(git2::TreeWalkMode::PreOrder, |_, e| {
        let obj = e.to_object(repo).unwrap();
        if let Some(b) = obj.as_blob() {
            let _ = b.content();
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
}

#[test]
fn init_commit_log_round_trip() {
    let (d, h) = setup();
    let v = d.path();
    put(v, "a", b"a2");
    put(v, "c", b"c1");
    let changes = vec![ch(ChangeKind::Modified, "a"), ch(ChangeKind::Added, "c")];
    let id = marked(&h).commit(&changes).unwrap();
    let log = h.log(None, false).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].id, id);
    assert_eq!(log[0].changes, changes);
    assert_eq!(log[1].changes[1], ch(ChangeKind::Added, "sub/b"));
    assert!(log[0].head && !log[1].head);
    assert!(log.iter().all(|e| !e.discarded && e.time > 0));
    assert_eq!(h.log(Some(1), false).unwrap().len(), 1);
    let info = h.head().unwrap();
    assert_eq!(
        (info.id.as_str(), info.at_latest, info.commits),
        (id.as_str(), true, 2)
    );

    // Fixed, anonymous identity; only contents/ tracked; no reflogs.
    {
        let repo = h.repo.borrow();
        let c = repo.find_commit(Oid::from_str(&id).unwrap()).unwrap();
        assert_eq!(c.author().name().unwrap(), "pkfs");
        assert_eq!(c.committer().email().unwrap(), "pkfs@localhost");
        let names: Vec<_> = c
            .tree()
            .unwrap()
            .iter()
            .map(|e| e.name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["contents"]);
        assert!(!v.join(".git/logs").exists());
    }

    // Reopen: same log; another key cannot read it.
    drop(h);
    let h = History::open(v, &key()).unwrap();
    assert_eq!(h.log(None, false).unwrap(), log);
    // The version record does not authenticate under another key.
    assert!(matches!(
        History::open(v, &SymKey::from_bytes([1; 32])),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        History::init(v, &key(), &[]),
        Err(Error::History(_))
    ));
    assert!(
        v.join(".git").is_dir(),
        "a refused init must not remove the repo"
    );
}

#[test]
fn open_without_repo_fails() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(
        History::open(d.path(), &key()),
        Err(Error::History(_))
    ));
}

#[test]
fn deletions_are_committed() {
    let (d, h) = setup();
    let v = d.path();
    rm(v, "sub/b");
    let id = marked(&h)
        .commit(&[ch(ChangeKind::Removed, "sub/b")])
        .unwrap();
    let repo = h.repo.borrow();
    let tree = repo
        .find_commit(Oid::from_str(&id).unwrap())
        .unwrap()
        .tree()
        .unwrap();
    assert!(tree.get_path(Path::new("contents/sub/b")).is_err());
    assert!(tree.get_path(Path::new("contents/sub/.diriv")).is_ok());
    assert!(tree.get_path(Path::new("contents/a")).is_ok());
}

#[test]
fn checkout_moves_the_working_tree() {
    let (d, h) = setup();
    let v = d.path();
    fs::write(v.join("outside"), b"untracked, outside contents").unwrap();
    let first = h.log(None, false).unwrap()[0].id.clone();
    put(v, "a", b"a2");
    put(v, "c", b"c1");
    put(v, "newdir/.diriv", b"iv-new");
    put(v, "newdir/x", b"x1");
    rm(v, "sub/b");
    let second = marked(&h).commit(&[]).unwrap();

    assert_eq!(h.checkout("HEAD~1").unwrap(), first);
    assert_eq!(get(v, "a").unwrap(), b"a1");
    assert_eq!(get(v, "sub/b").unwrap(), b"b1");
    assert_eq!(get(v, "c"), None);
    assert!(
        !v.join("contents/newdir").exists(),
        "added directory must vanish"
    );
    assert!(v.join("outside").exists());
    let info = h.head().unwrap();
    assert_eq!(
        (info.id.as_str(), info.at_latest, info.commits),
        (first.as_str(), false, 1)
    );
    assert!(h.repo.borrow().head_detached().unwrap());
    // log still shows main's history, marking where HEAD is.
    let log = h.log(None, false).unwrap();
    assert_eq!((log.len(), log[1].head, log[0].head), (2, true, false));

    assert_eq!(h.checkout("latest").unwrap(), second);
    assert_eq!(get(v, "a").unwrap(), b"a2");
    assert_eq!(get(v, "newdir/x").unwrap(), b"x1");
    assert_eq!(get(v, "sub/b"), None);
    assert!(!h.repo.borrow().head_detached().unwrap());
    assert!(h.head().unwrap().at_latest);

    assert_eq!(h.checkout(&first[..7]).unwrap(), first);
    assert_eq!(h.checkout(&first.to_uppercase()).unwrap(), first);
    assert_eq!(h.checkout("HEAD").unwrap(), first);
    assert_eq!(h.checkout(&second[..4]).unwrap(), second);
    assert!(
        h.head().unwrap().at_latest,
        "checking out main's tip attaches HEAD"
    );
    assert_eq!(h.checkout("HEAD~").unwrap(), first);
    assert_eq!(h.checkout("HEAD~0").unwrap(), first);

    // The work tree follows the checkout: an immediate commit records the same tree.
    let e = marked(&h).commit(&[]).unwrap();
    let repo = h.repo.borrow();
    let tree_of = |id: &str| {
        repo.find_commit(Oid::from_str(id).unwrap())
            .unwrap()
            .tree_id()
    };
    assert_eq!(tree_of(&e), tree_of(&first));
}

#[test]
fn bad_specs_are_usage_errors() {
    let (_d, h) = setup();
    for spec in [
        "bogus",
        "HEAD~1",
        "HEAD~99999999999999999999999",
        "abc",
        "zzzz",
        "0000000",
        "HEAD~-1",
        "HEAD^",
        "",
    ] {
        let m = usage_msg(h.checkout(spec));
        assert!(!m.is_empty(), "{spec}");
    }
    assert!(usage_msg(h.checkout("HEAD~3")).contains("only 0 older"));
    // A tree id is not a version.
    let tree = h
        .repo
        .borrow()
        .head()
        .unwrap()
        .peel_to_tree()
        .unwrap()
        .id()
        .to_string();
    usage_msg(h.checkout(&tree));
}

#[test]
fn commit_while_detached_discards_later_versions() {
    let (d, h) = setup();
    let v = d.path();
    let a = h.log(None, false).unwrap()[0].id.clone();
    put(v, "a", b"a2");
    let b = marked(&h).commit(&[ch(ChangeKind::Modified, "a")]).unwrap();
    put(v, "a", b"a3");
    let dd = marked(&h).commit(&[ch(ChangeKind::Modified, "a")]).unwrap();
    h.checkout(&b).unwrap();
    put(v, "e", b"e1");
    let e = marked(&h).commit(&[ch(ChangeKind::Added, "e")]).unwrap();

    let ids = |all| {
        h.log(None, all)
            .unwrap()
            .into_iter()
            .map(|x| (x.id, x.discarded))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(false),
        [(e.clone(), false), (b.clone(), false), (a.clone(), false)]
    );
    let all = ids(true);
    assert_eq!(all.len(), 4);
    assert!(all.contains(&(dd.clone(), true)));
    assert_eq!(all.iter().filter(|x| x.1).count(), 1);
    {
        let repo = h.repo.borrow();
        let refs = discarded_refs(&repo).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].1.to_string(), dd);
        let ec = repo.find_commit(Oid::from_str(&e).unwrap()).unwrap();
        assert_eq!(ec.parent_id(0).unwrap().to_string(), b);
        assert_eq!(main_tip(&repo).unwrap().unwrap().to_string(), e);
    }
    assert!(h.head().unwrap().at_latest);
    assert_eq!(get(v, "a").unwrap(), b"a2");
    let m = usage_msg(h.checkout(&dd));
    assert!(m.contains("not in the vault's current history"), "{m}");
    assert!(usage_msg(h.checkout(&dd[..8])).contains("not in the vault's current history"));

    // A second discard gets its own ref.
    h.checkout(&a).unwrap();
    put(v, "z", b"another change");
    marked(&h).commit(&[ch(ChangeKind::Added, "z")]).unwrap();
    assert_eq!(discarded_refs(&h.repo.borrow()).unwrap().len(), 2);
}

#[test]
fn a_commit_that_changes_nothing_is_skipped_and_discards_nothing() {
    let (d, h) = setup();
    let v = d.path();
    put(v, "a", b"1");
    let first = marked(&h).commit(&[ch(ChangeKind::Added, "a")]).unwrap();
    put(v, "a", b"2");
    let second = marked(&h).commit(&[ch(ChangeKind::Modified, "a")]).unwrap();
    let before = h.log(None, true).unwrap().len();
    assert_eq!(
        marked(&h).commit(&[ch(ChangeKind::Modified, "a")]).unwrap(),
        second
    );
    assert_eq!(h.log(None, true).unwrap().len(), before);
    h.checkout(&first).unwrap();
    assert_eq!(marked(&h).commit(&[]).unwrap(), first);
    assert!(discarded_refs(&h.repo.borrow()).unwrap().is_empty());
    assert!(!h.head().unwrap().at_latest, "still at the older version");
}

#[test]
fn gc_drops_discarded_and_keeps_everything_reachable() {
    let (d, h) = setup();
    let v = d.path();
    for i in 0..5 {
        put(
            v,
            "a",
            format!(
                "version {i} of a, padded to make deltas worth it {}",
                "x".repeat(200)
            )
            .as_bytes(),
        );
        put(v, &format!("f{i}"), &[i as u8; 300]);
        marked(&h).commit(&[ch(ChangeKind::Modified, "a")]).unwrap();
    }
    let doomed = h.log(None, false).unwrap()[0].id.clone();
    h.checkout("HEAD~2").unwrap();
    put(v, "g", b"new");
    marked(&h).commit(&[ch(ChangeKind::Added, "g")]).unwrap();
    let keep: Vec<String> = h
        .log(None, false)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();

    let r = h.gc().unwrap();
    assert_eq!(r.discarded_refs_removed, 1);
    assert!(r.objects_after < r.objects_before, "{r:?}");
    assert!(discarded_refs(&h.repo.borrow()).unwrap().is_empty());
    {
        let repo = h.repo.borrow();
        for id in &keep {
            read_all(&repo, id);
        }
        assert!(repo.find_commit(Oid::from_str(&doomed).unwrap()).is_err());
    }
    let h2 = History::open(v, &key()).unwrap();
    let ids: Vec<String> = h2
        .log(None, true)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, keep);
    usage_msg(h.checkout(&doomed));

    // Exactly one pack, no loose objects.
    let objects = v.join(".git/objects");
    let loose = list_dir(&objects)
        .unwrap()
        .into_iter()
        .filter(|n| n.len() == 2)
        .count();
    assert_eq!(loose, 0);
    let packs = list_dir(&objects.join("pack")).unwrap();
    assert_eq!(
        packs.iter().filter(|n| n.ends_with(".pack")).count(),
        1,
        "{packs:?}"
    );

    // gc while at an older version keeps HEAD and main.
    h.checkout("HEAD~1").unwrap();
    let at = h.head().unwrap();
    h.gc().unwrap();
    assert_eq!(h.head().unwrap(), at);
    assert_eq!(h.checkout("latest").unwrap(), keep[0]);

    // Still fully usable: navigate, commit, gc again.
    h.checkout("HEAD~2").unwrap();
    assert_eq!(&get(v, "a").unwrap()[..9], b"version 1");
    h.checkout("latest").unwrap();
    assert_eq!(get(v, "g").unwrap(), b"new");
    put(v, "h", b"h1");
    let last = marked(&h).commit(&[ch(ChangeKind::Added, "h")]).unwrap();
    let r2 = h.gc().unwrap();
    assert_eq!(r2.discarded_refs_removed, 0);
    assert_eq!(r2.objects_after, r2.objects_before);
    read_all(&h.repo.borrow(), &last);
    assert_eq!(h.gc().unwrap().objects_after, r2.objects_after);
    assert_eq!(h.log(None, false).unwrap().len(), keep.len() + 1);
}

#[test]
fn message_holds_no_plaintext() {
    let (d, h) = setup();
    let v = d.path();
    put(v, "z", b"z");
    let secret = "very-secret-dir/plain-name.txt";
    let id = marked(&h).commit(&[ch(ChangeKind::Added, secret)]).unwrap();
    let repo = h.repo.borrow();
    let odb = repo.odb().unwrap();
    let raw = odb.read(Oid::from_str(&id).unwrap()).unwrap();
    let data = raw.data();
    let text = String::from_utf8_lossy(data);
    for needle in ["plain-name", "very-secret", "added", "sub/b"] {
        assert!(!text.contains(needle), "{needle} leaked into {text}");
    }
    let msg = repo
        .find_commit(Oid::from_str(&id).unwrap())
        .unwrap()
        .message_raw()
        .unwrap()
        .to_owned();
    assert!(msg.starts_with("pkfs\n\n"));
}

#[test]
fn tampered_message_is_corrupt() {
    let (_d, h) = setup();
    let tamper = |edit: &dyn Fn(&str) -> String| {
        let repo = h.repo.borrow();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        let msg = edit(head.message_raw().unwrap());
        let sig = signature().unwrap();
        let parents: Vec<_> = head.parents().collect();
        let parents: Vec<&Commit<'_>> = parents.iter().collect();
        let id = repo
            .commit(None, &sig, &sig, &msg, &head.tree().unwrap(), &parents)
            .unwrap();
        repo.reference(MAIN_REF, id, true, "test").unwrap();
    };
    let orig = h
        .repo
        .borrow()
        .head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .message_raw()
        .unwrap()
        .to_owned();
    let flipped = |m: &str| {
        let mut b = m.as_bytes().to_vec();
        let i = MSG_HEADER.len() + 20;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    for edit in [
        &flipped as &dyn Fn(&str) -> String,
        &|_: &str| "added a\n".to_string(),
        &|m: &str| m.replace("pkfs\n\n", "pkfs\n\n!"),
    ] {
        tamper(edit);
        match h.log(None, false) {
            Err(Error::Corrupt { path, what }) => {
                assert!(path.starts_with("commit "), "{path}");
                assert!(what.contains("does not authenticate"));
            }
            other => panic!("expected corrupt, got {other:?}"),
        }
    }
    // Restoring an authentic message heals the log.
    tamper(&|_: &str| orig.clone());
    assert_eq!(h.log(None, false).unwrap().len(), 1);
}

#[test]
fn many_files_and_binary_content_survive() {
    let (d, h) = setup();
    let v = d.path();
    for i in 0..2000 {
        put(
            v,
            &format!("d{}/f{i}", i % 20),
            format!("line\r\nfile {i}\r\n").as_bytes(),
        );
    }
    for i in 0..20 {
        put(v, &format!("d{i}/.diriv"), b"iv");
    }
    let t = std::time::Instant::now();
    marked(&h).commit(&[]).unwrap();
    assert!(t.elapsed().as_secs() < 30);
    // CRLF bytes are stored verbatim (no text conversion).
    {
        let repo = h.repo.borrow();
        let tree = repo.head().unwrap().peel_to_tree().unwrap();
        let blob = tree
            .get_path(Path::new("contents/d7/f7"))
            .unwrap()
            .to_object(&repo)
            .unwrap();
        assert_eq!(blob.as_blob().unwrap().content(), b"line\r\nfile 7\r\n");
    }
    h.checkout("HEAD~1").unwrap();
    assert!(!v.join("contents/d3").exists());
    h.checkout("latest").unwrap();
    assert_eq!(get(v, "d3/f1983").unwrap(), b"line\r\nfile 1983\r\n");
}

/// The tests change the work tree directly: journal all of it, as a writer would.
fn marked(h: &History) -> &History {
    h.mark("contents").unwrap();
    h
}

#[test]
fn an_unjournaled_change_is_not_adopted_by_a_commit() {
    let (d, h) = setup();
    let v = d.path();
    let first = h.log(None, false).unwrap()[0].id.clone();
    // Tampering at rest: `sub/b` replaced, never journaled.
    put(v, "sub/b", b"evil");
    put(v, "a", b"a2");
    h.mark("contents/a").unwrap();
    let second = h.commit(&[ch(ChangeKind::Modified, "a")]).unwrap();
    assert_ne!(first, second);
    let repo = h.repo.borrow();
    let tree = repo
        .find_commit(Oid::from_str(&second).unwrap())
        .unwrap()
        .tree()
        .unwrap();
    let blob = |p: &str| tree.get_path(Path::new(p)).unwrap().id();
    assert_eq!(
        blob("contents/a"),
        Oid::hash_object(git2::ObjectType::Blob, b"a2").unwrap()
    );
    assert_eq!(
        blob("contents/sub/b"),
        Oid::hash_object(git2::ObjectType::Blob, b"b1").unwrap()
    );
    drop(tree);
    drop(repo);
    // The seal of the new HEAD still refuses the tampered file.
    let seal = h.seal().unwrap();
    let b = v.join("contents/sub/b");
    assert!(seal.verify_bytes(&b, b"evil").is_err());
    assert!(seal.verify_bytes(&b, b"b1").is_ok());
    // The journal was emptied by the commit.
    assert!(!h.covers("contents/a"));
}

#[test]
fn a_message_moved_to_another_commit_does_not_authenticate() {
    let (d, h) = setup();
    let v = d.path();
    put(v, "a", b"a2");
    let second = marked(&h).commit(&[ch(ChangeKind::Modified, "a")]).unwrap();
    let repo = h.repo.borrow();
    let c2 = repo.find_commit(Oid::from_str(&second).unwrap()).unwrap();
    let first = c2.parent(0).unwrap();
    // Forge: the first commit's tree with the second commit's (valid) message.
    let sig = signature().unwrap();
    let forged = repo
        .commit(
            None,
            &sig,
            &sig,
            c2.message_raw().unwrap(),
            &first.tree().unwrap(),
            &[&first],
        )
        .unwrap();
    let forged = repo.find_commit(forged).unwrap();
    assert!(matches!(
        h.open_message(&forged),
        Err(Error::Corrupt { .. })
    ));
    assert!(h.open_message(&c2).is_ok());
}

#[test]
fn an_interrupted_checkout_is_finished_on_the_next_open() {
    let (d, h) = setup();
    let v = d.path();
    let first = h.log(None, false).unwrap()[0].id.clone();
    put(v, "a", b"a2");
    put(v, "c", b"c1");
    marked(&h).commit(&[]).unwrap();
    // A checkout of the first version killed after its journal record and part
    // of the work tree: `c` already gone, `a` not yet rewritten, HEAD not moved.
    h.journal
        .borrow_mut()
        .begin_checkout(Oid::from_str(&first).unwrap())
        .unwrap();
    rm(v, "c");
    drop(h);
    let h = History::open(v, &key()).unwrap();
    assert_eq!(h.head().unwrap().id, first);
    assert_eq!(get(v, "a").unwrap(), b"a1");
    assert_eq!(get(v, "c"), None);
    assert!(!v.join(super::super::journal::JOURNAL_FILE).exists());
    h.seal()
        .unwrap()
        .verify_bytes(&v.join("contents/a"), b"a1")
        .unwrap();
}
