//! Validated vault-internal paths.

use crate::error::{Error, Result};
use crate::format::names;

/// A path inside a vault: zero or more valid components, never `..`. (`.git`
/// may be read but not made: [`VPath::check_new`].)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct VPath {
    comps: Vec<Vec<u8>>,
}

impl VPath {
    pub fn root() -> Self {
        VPath::default()
    }

    /// Parse a user-supplied path. Leading, trailing and doubled '/' and '.'
    /// components are ignored; `..` anywhere is refused.
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
            comps.push(c.as_bytes().to_vec());
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

    /// Refuse a path to be made (written, created, moved to) when any of its
    /// components is `.git` (see [`check_new_name`]).
    pub fn check_new(&self) -> Result<()> {
        self.comps.iter().try_for_each(|c| check_new_name(c))
    }

    /// True when `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &VPath) -> bool {
        self.comps.len() >= other.comps.len() && self.comps[..other.comps.len()] == other.comps[..]
    }
}

/// Validate one component: a valid file name. `.git` passes here, so that
/// an entry of that name made before the rule (through an older mount) can be
/// read, listed, moved away and removed; making one is refused by
/// [`check_new_name`].
pub fn check_component(name: &[u8]) -> Result<()> {
    names::validate(name).map_err(|reason| Error::InvalidName {
        name: String::from_utf8_lossy(name).into_owned(),
        reason,
    })
}

/// The name no vault and no entry anywhere in a vault may be given.
pub const RESERVED_NAME: &[u8] = b".git";

/// Refuse to make an entry (or vault) named `.git`: the name is reserved
/// everywhere, so that a vault's tree never looks like a git checkout to a
/// tool that walks the mount, and so that every pkfs command treats it alike.
pub fn check_new_name(name: &[u8]) -> Result<()> {
    if name == RESERVED_NAME {
        return Err(Error::InvalidName {
            name: ".git".into(),
            reason: "'.git' is reserved: no vault or entry may be named so",
        });
    }
    Ok(())
}

impl std::fmt::Display for VPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .comps
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
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
        // `.git` can be named (to read what an older mount made) but not made.
        assert!(VPath::parse(".git").unwrap().check_new().is_err());
        assert!(VPath::parse("x/.git/config").unwrap().check_new().is_err());
        assert!(VPath::parse("x/.gitx/config").unwrap().check_new().is_ok());
        assert!(VPath::parse(&"x".repeat(256)).is_err());
        assert!(VPath::parse("a\0b").is_err());
        assert!(VPath::parse(".gitignore").is_ok());
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
