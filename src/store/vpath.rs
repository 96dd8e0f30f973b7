//! Validated vault-internal paths, and their text form.
//!
//! **Path text.** Names are byte strings; wherever pkfs shows a name or path
//! as text (every `--json` output, change lists and `version log`, listings,
//! messages) and wherever it reads one (`VAULT:PATH` arguments), it uses one
//! lossless form: the bytes as UTF-8, except that a backslash is written `\\`
//! and each byte that is not part of valid UTF-8 is written `\xHH` (two
//! lowercase hex digits). Valid UTF-8 without a backslash is therefore shown
//! as it is. Reading, `\\` and `\xHH` (either case) are decoded and any other
//! backslash is taken literally, so `escape_name` then `unescape_name` gives
//! back the same bytes, and two different names never show alike.

use crate::error::{Error, Result};
use crate::format::names;

/// A path inside a vault: zero or more valid components, never `..`.
/// (`.versions` at the top may be read but not made: [`VPath::check_new`].)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct VPath {
    comps: Vec<Vec<u8>>,
}

impl VPath {
    pub fn root() -> Self {
        VPath::default()
    }

    /// Parse a user-supplied path (path text: `\\xHH` is a byte, `\\\\` a
    /// backslash). Leading, trailing and doubled '/' and '.' components are
    /// ignored; `..` anywhere is refused.
    pub fn parse(s: &str) -> Result<VPath> {
        let mut comps = Vec::new();
        for c in s.split('/') {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                return Err(Error::InvalidName {
                    name: s.to_string(),
                    reason: "'..' is not allowed in a vault path",
                });
            }
            comps.push(unescape_name(c));
        }
        let p = VPath { comps };
        for c in &p.comps {
            check_component(c)?;
        }
        Ok(p)
    }

    pub fn is_root(&self) -> bool {
        self.comps.is_empty()
    }

    pub fn components(&self) -> &[Vec<u8>] {
        &self.comps
    }

    /// The last component, `None` for the root.
    pub fn name(&self) -> Option<&[u8]> {
        self.comps.last().map(|v| v.as_slice())
    }

    pub fn parent(&self) -> Option<VPath> {
        if self.comps.is_empty() {
            return None;
        }
        Some(VPath {
            comps: self.comps[..self.comps.len() - 1].to_vec(),
        })
    }

    pub fn join(&self, name: &[u8]) -> Result<VPath> {
        check_component(name)?;
        let mut comps = self.comps.clone();
        comps.push(name.to_vec());
        Ok(VPath { comps })
    }

    /// Refuse a path to be made (written, created, moved to) when its first
    /// component is `.versions` (see [`check_new_top_name`]).
    pub fn check_new(&self) -> Result<()> {
        match self.comps.first() {
            Some(first) => check_new_top_name(first),
            None => Ok(()),
        }
    }

    /// True when `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &VPath) -> bool {
        self.comps.len() >= other.comps.len() && self.comps[..other.comps.len()] == other.comps[..]
    }
}

/// Validate one component: a valid file name. Inside a vault `.git` is a
/// name like any other (a git checkout kept in a vault works through the
/// mount and the CLI alike); only a vault may not be named so
/// ([`check_new_name`]).
pub fn check_component(name: &[u8]) -> Result<()> {
    names::validate(name).map_err(|reason| Error::InvalidName {
        name: String::from_utf8_lossy(name).into_owned(),
        reason,
    })
}

/// The name no vault may be given.
pub const RESERVED_NAME: &[u8] = b".git";

/// Refuse to make a vault named `.git`: the mount's root would look like a
/// git checkout to every tool that walks up from a vault (`git status` in a
/// vault would find the root). Entries inside a vault may have the name.
pub fn check_new_name(name: &[u8]) -> Result<()> {
    if name == RESERVED_NAME {
        return Err(Error::InvalidName {
            name: ".git".into(),
            reason: "'.git' is reserved: no vault may be named so",
        });
    }
    Ok(())
}

/// The name no entry at a vault's top level may be given: the mount serves
/// the vault's versions there (`fs/versions`).
pub const RESERVED_TOP_NAME: &[u8] = b".versions";

/// Refuse to make an entry named `.versions` at a vault's top level. An entry
/// of that name made before the rule stays readable, movable and removable
/// through the CLI (the mount shows its versions directory instead).
pub fn check_new_top_name(name: &[u8]) -> Result<()> {
    if name == RESERVED_TOP_NAME {
        return Err(Error::InvalidName {
            name: ".versions".into(),
            reason: "'.versions' is reserved at a vault's top level: the mount shows the vault's versions there",
        });
    }
    Ok(())
}

/// A name (or any byte string) as path text (see the module comment).
pub fn escape_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The bytes path text stands for (see the module comment).
pub fn unescape_name(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if b.get(i + 1) == Some(&b'x') {
                let hex = b
                    .get(i + 2..i + 4)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok());
                if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

impl std::fmt::Display for VPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.comps.iter().map(|c| escape_name(c)).collect();
        if parts.is_empty() {
            f.write_str("/")
        } else {
            f.write_str(&parts.join("/"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises_and_refuses() {
        assert_eq!(VPath::parse("/a//b/./c/").unwrap().to_string(), "a/b/c");
        assert!(VPath::parse("").unwrap().is_root());
        assert!(VPath::parse("/").unwrap().is_root());
        assert!(VPath::parse("a/../b").is_err());
        assert!(VPath::parse("..").is_err());
        // `.git` is an ordinary name inside a vault, and no vault name.
        assert!(VPath::parse("x/.git/config").is_ok());
        assert!(check_new_name(b".git").is_err());
        assert!(check_new_name(b".gitx").is_ok());
        assert!(VPath::parse(&"x".repeat(256)).is_err());
        assert!(VPath::parse("a\0b").is_err());
        assert!(VPath::parse(".gitignore").is_ok());
        // `.versions` is reserved at the top of a vault only.
        assert!(VPath::parse(".versions").unwrap().check_new().is_err());
        assert!(VPath::parse(".versions/x").unwrap().check_new().is_err());
        assert!(VPath::parse("x/.versions").unwrap().check_new().is_ok());
    }

    #[test]
    fn path_text_round_trips_every_name() {
        let names: [&[u8]; 8] = [
            b"plain",
            b"\xff",
            b"\xfe",
            "\u{fffd}".as_bytes(),
            b"a\\b",
            b"\\xff",
            b"caf\xc3\xa9 \xc3",
            b"\\\\x4",
        ];
        let mut shown = std::collections::HashSet::new();
        for n in names {
            let t = escape_name(n);
            assert_eq!(unescape_name(&t), n, "{t}");
            assert!(shown.insert(t), "two names show alike");
        }
        assert_eq!(escape_name(b"\xff"), "\\xff");
        assert_eq!(escape_name(b"a\\b"), "a\\\\b");
        assert_eq!(escape_name("café".as_bytes()), "café");
        // Reading is lenient: a lone backslash is itself.
        assert_eq!(unescape_name("a\\qb\\x4"), b"a\\qb\\x4");
        assert_eq!(unescape_name("\\xFF"), b"\xff");
        assert_eq!(unescape_name("\\x+f"), b"\\x+f");
        let p = VPath::parse("d/\\xff/x\\\\y").unwrap();
        assert_eq!(p.components()[1], b"\xff");
        assert_eq!(p.components()[2], b"x\\y");
        assert_eq!(p.to_string(), "d/\\xff/x\\\\y");
        assert!(VPath::parse("a\\x2fb").is_err(), "no '/' inside a name");
        assert!(VPath::parse("a\\x00").is_err());
    }

    #[test]
    fn relations() {
        let a = VPath::parse("a/b").unwrap();
        assert!(a.starts_with(&VPath::parse("a").unwrap()));
        assert!(!VPath::parse("ab")
            .unwrap()
            .starts_with(&VPath::parse("a").unwrap()));
        assert_eq!(a.parent().unwrap().to_string(), "a");
        assert_eq!(a.name().unwrap(), b"b");
    }
}
