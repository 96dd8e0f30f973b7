//! Unit tests of the blob checks of `pkfs fsck`.

use super::*;
use crate::crypto::SymKey;
use crate::format::blob;

fn keys() -> Keychain {
    Keychain::new(vec![(0, SymKey::from_bytes([3; 32]))]).unwrap()
}

fn sealed(n: usize) -> (Vec<u8>, Header) {
    let k = keys();
    let h = Header::new(0);
    let plain: Vec<u8> = (0..n).map(|i| i as u8).collect();
    (blob::seal(k.get(0).unwrap(), &h, &plain), h)
}

#[test]
fn a_valid_blob_gives_its_file_id() {
    let (b, h) = sealed(9000);
    assert_eq!(verify_blob(&keys(), &b), Ok(Some(h.file_id)));
    assert_eq!(verify_blob(&keys(), &[]), Ok(None));
}

#[test]
fn each_kind_of_damage_has_its_kind_and_page() {
    let (b, _) = sealed(9000);
    let kind = |b: &[u8]| verify_blob(&keys(), b).map(|_| ()).unwrap_err();
    let mut x = b.clone();
    x[4] ^= 1;
    assert_eq!(kind(&x).0, "bad-header");
    let mut x = b.clone();
    x[6] ^= 1;
    assert_eq!(kind(&x).0, "bad-header", "unknown generation");
    let mut x = b.clone();
    x[58 + 4124 + 40] ^= 1;
    assert_eq!((kind(&x).0, kind(&x).1), ("tag-mismatch", Some(1)));
    assert_eq!(kind(&b[..30]).0, "truncated");
    assert_eq!(kind(&b[..58 + 4124 + 10]).0, "truncated");
    // Cut at a page boundary: the new last page was sealed as not final.
    assert_eq!(kind(&b[..58 + 4124]).1, Some(0));
    let mut x = b.clone();
    x[20] ^= 1;
    let (k, page, detail) = kind(&x);
    assert_eq!((k, page), ("tag-mismatch", Some(0)));
    assert!(detail.starts_with("3 of 3 page(s)"), "{detail}");
}

#[test]
fn names_join_under_the_root() {
    assert_eq!(join("", "a"), "a");
    assert_eq!(join("a/b", "c"), "a/b/c");
    assert_eq!(or_root(""), "/");
}
