use super::*;
use crate::crypto::SymKey;

fn tree(d: &tempfile::TempDir) -> Tree {
    let keys = Keychain::new(vec![(0, SymKey::from_bytes([4; 32]))]).unwrap();
    Tree::create(&d.path().join("contents"), keys).unwrap()
}

fn vp(s: &str) -> VPath {
    VPath::parse(s).unwrap()
}

fn names(t: &Tree, p: &str) -> Vec<String> {
    t.list(&vp(p))
        .unwrap()
        .entries
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect()
}

fn all_backing_names(dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            all_backing_names(&e.path(), out);
        }
    }
}

#[test]
fn write_read_list_and_sizes() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(&d);
    assert_eq!(
        t.write(&vp("a.txt"), b"hello").unwrap().kind,
        ChangeKind::Added
    );
    assert_eq!(
        t.write(&vp("a.txt"), b"hello2").unwrap().kind,
        ChangeKind::Modified
    );
    t.write(&vp("empty"), b"").unwrap();
    assert_eq!(&t.read(&vp("a.txt")).unwrap()[..], b"hello2");
    assert_eq!(&t.read(&vp("empty")).unwrap()[..], b"");
    assert_eq!(names(&t, "/"), vec!["a.txt", "empty"]);
    assert_eq!(t.stat(&vp("a.txt")).unwrap().size, 6);
    assert!(matches!(t.read(&vp("nope")), Err(Error::NotFound(_))));
    assert!(matches!(
        t.write(&vp("nodir/x"), b"x"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn directories_and_removal() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(&d);
    assert_eq!(t.mkdir(&vp("a/b/c"), true).unwrap().len(), 3);
    assert!(t.mkdir(&vp("a/b/c"), true).unwrap().is_empty());
    assert!(matches!(t.mkdir(&vp("a"), false), Err(Error::Exists(_))));
    t.write(&vp("a/b/c/f"), b"deep").unwrap();
    assert!(matches!(
        t.write(&vp("a/b"), b"x"),
        Err(Error::IsADirectory(_))
    ));
    assert!(matches!(t.remove(&vp("a"), false), Err(Error::NotEmpty(_))));
    let ch = t.remove(&vp("a"), true).unwrap();
    assert!(ch
        .iter()
        .any(|c| c.path == "a/b/c/f" && c.kind == ChangeKind::Removed));
    assert!(names(&t, "/").is_empty());
    t.write(&vp("f"), b"x").unwrap();
    assert!(matches!(
        t.mkdir(&vp("f/g"), true),
        Err(Error::NotADirectory(_))
    ));
    assert!(matches!(t.list(&vp("f")), Err(Error::NotADirectory(_))));
}

#[test]
fn rename_file_dir_and_into_dir() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(&d);
    t.mkdir(&vp("d1"), false).unwrap();
    t.write(&vp("d1/x"), b"1").unwrap();
    t.rename(&vp("d1"), &vp("d2")).unwrap();
    assert_eq!(&t.read(&vp("d2/x")).unwrap()[..], b"1");
    t.write(&vp("y"), b"2").unwrap();
    t.rename(&vp("y"), &vp("d2")).unwrap();
    assert_eq!(names(&t, "d2"), vec!["x", "y"]);
    t.rename(&vp("d2/y"), &vp("d2/x")).unwrap();
    assert_eq!(&t.read(&vp("d2/x")).unwrap()[..], b"2");
    assert!(matches!(
        t.rename(&vp("d2"), &vp("d2/sub")),
        Err(Error::Usage(_))
    ));
}

#[test]
fn long_names_and_no_plaintext_names_on_disk() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(&d);
    let long = "L".repeat(255);
    t.mkdir(&vp("MARKERDIR"), false).unwrap();
    t.write(&vp(&format!("MARKERDIR/{long}")), b"long one")
        .unwrap();
    assert_eq!(names(&t, "MARKERDIR"), vec![long.clone()]);
    let mut all = Vec::new();
    all_backing_names(&d.path().join("contents"), &mut all);
    assert!(all
        .iter()
        .all(|n| !n.contains("MARKER") && !n.contains("LLLL")));
    assert!(all.iter().any(|n| n.ends_with(".name")));
    t.rename(&vp(&format!("MARKERDIR/{long}")), &vp("short"))
        .unwrap();
    let mut all = Vec::new();
    all_backing_names(&d.path().join("contents"), &mut all);
    assert!(
        !all.iter().any(|n| n.ends_with(".name")),
        "sidecar removed: {all:?}"
    );
}

#[test]
fn tampering_is_an_error_not_plaintext() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(&d);
    t.write(&vp("s"), b"secret").unwrap();
    t.write(&vp("ok"), b"fine").unwrap();
    let loc = t.locate(&vp("s")).unwrap();
    let mut b = fs::read(&loc.path).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    fs::write(&loc.path, &b).unwrap();
    assert!(matches!(t.read(&vp("s")), Err(Error::Corrupt { .. })));
    assert_eq!(&t.read(&vp("ok")).unwrap()[..], b"fine");
    // An altered name is reported, not shown.
    let bad = loc.dir.join("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    fs::rename(&loc.path, &bad).unwrap();
    let l = t.list(&VPath::root()).unwrap();
    assert_eq!(l.entries.len(), 1);
    assert_eq!(l.undecryptable.len(), 1);
}

/// Write `data` at `p` through the streaming writer.
fn stream_in(t: &Tree, p: &str, data: &[u8]) -> Change {
    t.write_streaming(&vp(p), &mut &data[..], u64::MAX, &|_| Ok(()))
        .unwrap()
}

#[test]
fn a_streamed_rewrite_keeps_the_ciphertext_of_unchanged_pages() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(&d);
    let page = offsets::PAGE_SIZE as usize;
    let mut data: Vec<u8> = (0..3 * page + 100).map(|i| (i % 251) as u8).collect();
    stream_in(&t, "f", &data);
    let path = t.locate(&vp("f")).unwrap().path;
    let first = fs::read(&path).unwrap();
    // The same content: the very same blob.
    stream_in(&t, "f", &data);
    assert_eq!(fs::read(&path).unwrap(), first);
    // One page changed: only that page's ciphertext differs.
    data[page + 7] ^= 0xff;
    stream_in(&t, "f", &data);
    let second = fs::read(&path).unwrap();
    assert_eq!(second.len(), first.len());
    let cut = |b: &[u8], i: u64| {
        let at = offsets::page_blob_offset(i) as usize;
        let len = (offsets::page_plain_len(data.len() as u64, i) + offsets::PAGE_OVERHEAD) as usize;
        b[at..at + len].to_vec()
    };
    assert_eq!(first[..HEADER], second[..HEADER], "the header is kept");
    assert_eq!(cut(&first, 0), cut(&second, 0));
    assert_ne!(cut(&first, 1), cut(&second, 1));
    assert_eq!(cut(&first, 2), cut(&second, 2));
    assert_eq!(cut(&first, 3), cut(&second, 3));
    assert_eq!(&t.read(&vp("f")).unwrap()[..], &data[..]);
    // Shorter: the new last page is sealed again (its final flag changed).
    stream_in(&t, "f", &data[..2 * page]);
    let third = fs::read(&path).unwrap();
    assert_eq!(cut(&first, 0), cut(&third, 0));
    assert_ne!(cut(&second, 1), cut(&third, 1));
    assert_eq!(&t.read(&vp("f")).unwrap()[..], &data[..2 * page]);
    // A damaged old page is sealed afresh, never copied.
    let mut bad = fs::read(&path).unwrap();
    let at = offsets::page_blob_offset(1) as usize + 40;
    bad[at] ^= 1;
    fs::write(&path, &bad).unwrap();
    stream_in(&t, "f", &data[..2 * page]);
    assert_eq!(&t.read(&vp("f")).unwrap()[..], &data[..2 * page]);
    // The same content written whole (`Tree::write`) agrees.
    let before = fs::read(&path).unwrap();
    t.write(&vp("f"), &data[..2 * page]).unwrap();
    assert_eq!(fs::read(&path).unwrap(), before);
}

const HEADER: usize = offsets::HEADER_LEN as usize;

#[test]
fn every_operation_reaches_a_tree_deeper_than_path_max() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(&d);
    // Short names, deeper until the backing path passes PATH_MAX (4096).
    let name = |i: usize| format!("d{i}");
    let mut deep = String::new();
    for i in 0.. {
        deep.push_str(&name(i));
        t.mkdir(&vp(&deep), false).unwrap();
        deep.push('/');
        let dir = t.backing_dir(&vp(deep.trim_end_matches('/'))).unwrap();
        if dir.as_os_str().len() > 4200 {
            break;
        }
        assert!(i < 1000);
    }
    let f = format!("{deep}f");
    t.write(&vp(&f), b"whole").unwrap();
    assert_eq!(&t.read(&vp(&f)).unwrap()[..], b"whole");
    stream_in(&t, &f, b"streamed");
    let mut got = Vec::new();
    t.read_streaming(&vp(&f), &mut |p| {
        got.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    assert_eq!(got, b"streamed");
    // A big one goes through the batched reader.
    let big = vec![7u8; STREAM_MIN as usize + 5];
    let g = format!("{deep}big");
    stream_in(&t, &g, &big);
    let mut n = 0;
    t.read_streaming(&vp(&g), &mut |p| {
        assert!(p.iter().all(|&b| b == 7));
        n += p.len();
        Ok(())
    })
    .unwrap();
    assert_eq!(n, big.len());
    assert_eq!(t.stat(&vp(&f)).unwrap().size, 8);
    assert_eq!(names(&t, deep.trim_end_matches('/')), vec!["big", "f"]);
    t.mkdir(&vp(&format!("{deep}sub/more")), true).unwrap();
    t.rename(&vp(&f), &vp(&format!("{deep}sub/g"))).unwrap();
    assert_eq!(
        &t.read(&vp(&format!("{deep}sub/g"))).unwrap()[..],
        b"streamed"
    );
    t.remove(&vp(&g), false).unwrap();
    t.remove(&vp(&format!("{deep}sub")), true).unwrap();
    assert!(names(&t, deep.trim_end_matches('/')).is_empty());
    // The whole deep tree goes at once.
    t.remove(&vp(&name(0)), true).unwrap();
    assert!(names(&t, "").is_empty());
}
