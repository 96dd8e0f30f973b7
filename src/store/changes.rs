//! What the change journal says about one backing path: changed since HEAD
//! (its content is not checked), or HEAD's content of some path (possibly
//! another one, when the entry was moved there since HEAD).
//!
//! The journal is a list of records in the order they were written:
//!
//! * **path** `p`: `p`, everything below it and its long-name sidecar may
//!   hold anything from now on (written, created, removed, truncated).
//! * **move** `from → to`: the entry at `from` (and its subtree) was renamed
//!   to `to`, unchanged. `from` and both sidecars are changed; `to` and its
//!   subtree hold what `from` held. A chmod is a move of a path onto itself:
//!   the entry is re-staged, its content must stay what it was.
//! * **swap** `a ↔ b`: `RENAME_EXCHANGE`, a move each way at once.
//! * **link** `from → to`: a hard link; `to` holds what `from` held, and
//!   `from` itself is untouched.
//!
//! [`Changes::origin`] walks the records from the newest to the oldest,
//! rewriting the path at each move that covers it, until a path record covers
//! it ([`Origin::Changed`]) or none is left ([`Origin::Head`]: the path whose
//! HEAD entry the content must equal). Every rule is by prefix, so an entry
//! that is changed has a changed subtree. Without a move record this is the
//! old answer: covered by a path record or not.
//!
//! [`Changes::covers`] is coarser: every path any record touches, which is
//! what a commit has to look at again.

use std::collections::HashMap;

use crate::format::names::LONG_SUFFIX;

/// Where the content of a backing path must come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Changed through pkfs since HEAD: not checked.
    Changed,
    /// Exactly HEAD's entry at this path (the path itself unless it moved).
    Head(String),
}

/// How an entry got to a new path without its content changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveKind {
    /// `rename(2)` (onto itself: a chmod).
    Rename,
    /// `RENAME_EXCHANGE`: both entries moved.
    Swap,
    /// A hard link: the source stays where it is.
    Link,
}

#[derive(Debug, Clone)]
struct Move {
    at: u64,
    from: String,
    to: String,
    kind: MoveKind,
}

/// The journal's records, indexed for [`Changes::origin`].
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Every path touched by any record (path, move ends), by component,
    /// with the indices of the path records written for it: a lookup costs
    /// the length of the path looked up, however deep it is and however
    /// many records there are.
    trie: Node,
    /// The path records: path, index.
    paths: Vec<(String, u64)>,
    moves: Vec<Move>,
    /// Every touched path, once.
    touched: Vec<String>,
    count: u64,
}

/// One path component of [`Changes::trie`].
#[derive(Debug, Clone, Default)]
struct Node {
    children: HashMap<String, Node>,
    /// A record touches this path.
    touched: bool,
    /// The indices of the path records of this path.
    at: Vec<u64>,
}

/// Is `rel` the entry `p` or below it?
fn under(rel: &str, p: &str) -> bool {
    rel.strip_prefix(p)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Is `rel` the long-name sidecar of entry `p`?
fn sidecar_of(rel: &str, p: &str) -> bool {
    rel.strip_prefix(p) == Some(LONG_SUFFIX)
}

impl Changes {
    /// The node of `rel`, made if missing, marked touched.
    fn touch(&mut self, rel: &str) -> &mut Node {
        let mut node = &mut self.trie;
        for part in rel.split('/') {
            node = node.children.entry(part.to_string()).or_default();
        }
        if !node.touched {
            node.touched = true;
            self.touched.push(rel.to_string());
        }
        node
    }

    /// The nodes of `rel` and of every directory above it, then of the
    /// entry of a sidecar: the paths whose records cover `rel`.
    fn levels(&self, rel: &str) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut node = &self.trie;
        let mut parts = rel.split('/').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                // The entry of a sidecar sits beside it.
                if let Some(own) = part.strip_suffix(LONG_SUFFIX) {
                    out.extend(node.children.get(own));
                }
            }
            match node.children.get(part) {
                Some(n) => {
                    out.push(n);
                    node = n;
                }
                None => break,
            }
        }
        out
    }

    /// Add a path record (the next record of the journal).
    pub fn path(&mut self, rel: &str) {
        let at = self.count;
        self.touch(rel).at.push(at);
        self.paths.push((rel.to_string(), at));
        self.count += 1;
    }

    /// Add a move record `from → to`.
    pub fn moved(&mut self, from: &str, to: &str, kind: MoveKind) {
        self.moves.push(Move {
            at: self.count,
            from: from.to_string(),
            to: to.to_string(),
            kind,
        });
        if kind != MoveKind::Link {
            self.touch(from);
        }
        self.touch(to);
        self.count += 1;
    }

    /// Does any record touch `rel` (itself, an entry above it, or its entry
    /// when it is a sidecar)? A commit re-stages exactly these paths.
    pub fn covers(&self, rel: &str) -> bool {
        !self.touched.is_empty() && self.levels(rel).iter().any(|n| n.touched)
    }

    /// Every path any record touches (see [`Changes::covers`]).
    pub fn touched(&self) -> impl Iterator<Item = &str> {
        self.touched.iter().map(String::as_str)
    }

    /// How many records there are (the position of the next one).
    pub fn records(&self) -> u64 {
        self.count
    }

    /// Every path that a record at position `at` or later touches: written
    /// (a path record) or either end of a move (the source of a link stays
    /// untouched). Sorted, without repeats.
    pub fn touched_since(&self, at: u64) -> Vec<String> {
        let mut out: Vec<String> = self
            .paths
            .iter()
            .filter(|(_, i)| *i >= at)
            .map(|(p, _)| p.clone())
            .collect();
        for m in self.moves.iter().filter(|m| m.at >= at) {
            if m.kind != MoveKind::Link {
                out.push(m.from.clone());
            }
            out.push(m.to.clone());
        }
        out.sort();
        out.dedup();
        out
    }

    /// Where the content at `rel` must come from (see the module comment).
    pub fn origin(&self, rel: &str) -> Origin {
        if !self.covers(rel) {
            return Origin::Head(rel.to_string());
        }
        let mut cur = rel.to_string();
        let mut bound = u64::MAX;
        loop {
            match self.newest(&cur, bound) {
                (Some(m), _) => match m.rewrite(&cur) {
                    Some(next) => {
                        cur = next;
                        bound = m.at;
                    }
                    None => return Origin::Changed,
                },
                (None, Some(_)) => return Origin::Changed,
                (None, None) => return Origin::Head(cur),
            }
        }
    }
}

impl Changes {
    /// Walking `cur` back towards HEAD, one step: the newest path record
    /// older than `bound` that covers `cur`, and the newest move newer than
    /// that record (and older than `bound`) that touches `cur`.
    fn newest(&self, cur: &str, bound: u64) -> (Option<&Move>, Option<u64>) {
        let path_at = self
            .levels(cur)
            .into_iter()
            .flat_map(|n| n.at.iter().copied().filter(|&i| i < bound))
            .max();
        let mv = self
            .moves
            .iter()
            .rev()
            .filter(|m| m.at < bound && path_at.is_none_or(|p| m.at > p))
            .find(|m| m.touches(cur));
        (mv, path_at)
    }

    /// Was the mode of the entry at `rel` set through pkfs since HEAD: it is
    /// new or changed (a path record covers it), or a chmod (a move onto
    /// itself) was recorded for it on its way back to its HEAD path? A chmod
    /// of a directory sets that directory's mode only, not its entries'.
    pub fn mode_changed(&self, rel: &str) -> bool {
        if !self.covers(rel) {
            return false;
        }
        let mut cur = rel.to_string();
        let mut bound = u64::MAX;
        loop {
            match self.newest(&cur, bound) {
                (Some(m), _) if m.from == m.to && m.to == cur => return true,
                (Some(m), _) => match m.rewrite(&cur) {
                    Some(next) => {
                        cur = next;
                        bound = m.at;
                    }
                    None => return true,
                },
                (None, Some(_)) => return true,
                (None, None) => return false,
            }
        }
    }
}

impl Move {
    fn touches(&self, rel: &str) -> bool {
        if self.from == self.to {
            return under(rel, &self.to);
        }
        let from =
            self.kind != MoveKind::Link && (under(rel, &self.from) || sidecar_of(rel, &self.from));
        from || under(rel, &self.to) || sidecar_of(rel, &self.to)
    }

    /// The path `rel` held before this record, or `None` when the record
    /// changed it (a sidecar, or what was left behind at `from`).
    fn rewrite(&self, rel: &str) -> Option<String> {
        if under(rel, &self.to) {
            return Some(format!("{}{}", self.from, &rel[self.to.len()..]));
        }
        if self.kind == MoveKind::Swap && under(rel, &self.from) {
            return Some(format!("{}{}", self.to, &rel[self.from.len()..]));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(p: &str) -> Origin {
        Origin::Head(p.to_string())
    }

    #[test]
    fn without_moves_a_path_record_covers_its_subtree_and_sidecar() {
        let mut c = Changes::default();
        assert_eq!(c.origin("contents/a"), head("contents/a"));
        c.path("contents/a");
        for p in ["contents/a", "contents/a/b/c", "contents/a.name"] {
            assert!(c.covers(p));
            assert_eq!(c.origin(p), Origin::Changed, "{p}");
        }
        assert!(!c.covers("contents/ab") && !c.covers("contents"));
        assert_eq!(c.origin("contents/ab"), head("contents/ab"));
    }

    #[test]
    fn a_moved_entry_holds_what_its_old_path_held() {
        let mut c = Changes::default();
        c.moved("contents/a", "contents/b", MoveKind::Rename);
        assert_eq!(c.origin("contents/b"), head("contents/a"));
        assert_eq!(c.origin("contents/b/x/y"), head("contents/a/x/y"));
        // The old path and both sidecars changed.
        for p in [
            "contents/a",
            "contents/a/x",
            "contents/a.name",
            "contents/b.name",
        ] {
            assert_eq!(c.origin(p), Origin::Changed, "{p}");
        }
        assert!(c.covers("contents/a/x") && c.covers("contents/b/x"));
        // A write after the move changes the new path.
        c.path("contents/b/x");
        assert_eq!(c.origin("contents/b/x"), Origin::Changed);
        assert_eq!(c.origin("contents/b/y"), head("contents/a/y"));
    }

    #[test]
    fn a_write_before_the_move_follows_the_entry() {
        let mut c = Changes::default();
        c.path("contents/a/x");
        c.moved("contents/a", "contents/b", MoveKind::Rename);
        assert_eq!(c.origin("contents/b/x"), Origin::Changed);
        assert_eq!(c.origin("contents/b/y"), head("contents/a/y"));
        // Something created at the old path afterwards is new.
        c.path("contents/a");
        assert_eq!(c.origin("contents/a/x"), Origin::Changed);
    }

    #[test]
    fn chains_of_moves_resolve_newest_first() {
        let mut c = Changes::default();
        c.moved("contents/a", "contents/b", MoveKind::Rename); // b holds HEAD's a
        c.moved("contents/c", "contents/a", MoveKind::Rename); // a holds HEAD's c
        assert_eq!(c.origin("contents/b/x"), head("contents/a/x"));
        assert_eq!(c.origin("contents/a/x"), head("contents/c/x"));
        c.moved("contents/b/x", "contents/d", MoveKind::Rename); // d holds HEAD's a/x
        assert_eq!(c.origin("contents/d"), head("contents/a/x"));
        assert_eq!(c.origin("contents/b/x"), Origin::Changed);
    }

    #[test]
    fn a_swap_moves_both_ways_and_a_chmod_keeps_the_content() {
        let mut c = Changes::default();
        c.moved("contents/a", "contents/b", MoveKind::Swap);
        assert_eq!(c.origin("contents/a/x"), head("contents/b/x"));
        assert_eq!(c.origin("contents/b/x"), head("contents/a/x"));
        assert_eq!(c.origin("contents/a.name"), Origin::Changed);
        let mut k = Changes::default();
        k.moved("contents/f", "contents/f", MoveKind::Rename);
        assert!(k.covers("contents/f"));
        assert_eq!(k.origin("contents/f"), head("contents/f"));
        assert_eq!(k.origin("contents/f.name"), head("contents/f.name"));
        k.path("contents/f");
        assert_eq!(k.origin("contents/f"), Origin::Changed);
    }

    #[test]
    fn touched_since_lists_the_later_records_only() {
        let mut c = Changes::default();
        c.path("contents/old");
        let at = c.records();
        c.path("contents/n");
        c.moved("contents/a", "contents/b", MoveKind::Rename);
        c.moved("contents/s", "contents/t", MoveKind::Link);
        c.path("contents/n");
        assert_eq!(
            c.touched_since(at),
            ["contents/a", "contents/b", "contents/n", "contents/t"]
        );
        assert_eq!(c.touched_since(c.records()), Vec::<String>::new());
    }

    #[test]
    fn a_link_leaves_its_source_alone() {
        let mut c = Changes::default();
        c.moved("contents/a", "contents/b", MoveKind::Link);
        assert_eq!(c.origin("contents/b"), head("contents/a"));
        assert_eq!(c.origin("contents/a"), head("contents/a"));
        assert!(!c.covers("contents/a") && c.covers("contents/b"));
        assert_eq!(c.origin("contents/b.name"), Origin::Changed);
    }

    #[test]
    fn a_path_record_older_than_a_move_into_it_does_not_cover_the_moved_entry() {
        let mut c = Changes::default();
        c.path("contents/b"); // b deleted (or written) first
        c.moved("contents/a", "contents/b", MoveKind::Rename); // then a renamed over it
        assert_eq!(c.origin("contents/b"), head("contents/a"));
        assert_eq!(c.origin("contents/b/x"), head("contents/a/x"));
    }

    #[test]
    fn a_mode_counts_as_changed_when_set_or_made_since_head() {
        let mut c = Changes::default();
        assert!(!c.mode_changed("contents/a"));
        c.moved("contents/a", "contents/a", MoveKind::Rename); // chmod a
        c.moved("contents/a", "contents/b", MoveKind::Rename); // mv a b
        c.moved("contents/d", "contents/e", MoveKind::Rename); // mv d e
        c.path("contents/n"); // a new entry
        assert!(c.mode_changed("contents/b"), "chmodded, then moved");
        assert!(!c.mode_changed("contents/e"), "only moved");
        assert!(
            !c.mode_changed("contents/b/x"),
            "a chmod of a directory is its own"
        );
        assert!(c.mode_changed("contents/n") && c.mode_changed("contents/n/x"));
        assert!(!c.mode_changed("contents/z"));
        assert_eq!(c.origin("contents/b"), head("contents/a"));
    }
}
