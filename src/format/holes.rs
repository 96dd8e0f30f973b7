//! Holes of a version 2 blob (`format::blob`): a page slot whose every byte is
//! zero, costing no space on a backing file system with sparse files. Pure
//! functions and a run map, no I/O.
//!
//! [`RunMap`] holds runs of page indexes (`start..end`), merged when they touch;
//! a file keeps the runs of hole slots of its blob in one. The sealed page
//! right after a run of `h` holes carries `h` in its AAD ([`RunMap::before`]).

use std::collections::BTreeMap;

/// Is this page slot a hole (every byte zero; a sealed page never is: its IV
/// and tag are random)?
pub fn is_hole(slot: &[u8]) -> bool {
    !slot.is_empty() && slot.iter().all(|b| *b == 0)
}

/// Disjoint, non-touching runs of page indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunMap(BTreeMap<u64, u64>);

impl RunMap {
    pub fn new() -> RunMap {
        RunMap::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The run holding page `i`, if any.
    pub fn run_at(&self, i: u64) -> Option<(u64, u64)> {
        let (&s, &e) = self.0.range(..=i).next_back()?;
        (i < e).then_some((s, e))
    }

    pub fn contains(&self, i: u64) -> bool {
        self.run_at(i).is_some()
    }

    /// Length of the run that ends right before page `i` (0 if none).
    pub fn before(&self, i: u64) -> u64 {
        match i.checked_sub(1).and_then(|p| self.run_at(p)) {
            Some((s, _)) => i - s,
            None => 0,
        }
    }

    /// Add `start..end`, merging with the runs it touches.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        if let Some((ps, pe)) = start.checked_sub(1).and_then(|p| self.run_at(p)) {
            s = s.min(ps);
            e = e.max(pe);
        }
        let inside: Vec<u64> = self.0.range(s..=e).map(|(k, _)| *k).collect();
        for k in inside {
            if let Some(ke) = self.0.remove(&k) {
                e = e.max(ke);
            }
        }
        self.0.insert(s, e);
    }

    /// Remove `start..end`, splitting runs it cuts.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut hit: Vec<(u64, u64)> = self.0.range(start..end).map(|(s, e)| (*s, *e)).collect();
        if let Some(r) = self.run_at(start) {
            hit.push(r);
        }
        for (s, e) in hit {
            self.0.remove(&s);
            if s < start {
                self.0.insert(s, start);
            }
            if e > end {
                self.0.insert(end, e);
            }
        }
    }

    /// The runs, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(s, e)| (*s, *e))
    }

    /// The runs that overlap `start..end`, cut to it.
    pub fn within(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        if start >= end {
            return out;
        }
        if let Some((s, e)) = self.run_at(start) {
            out.push((s.max(start), e.min(end)));
        }
        for (s, e) in self.0.range(start..end) {
            if *s != start || out.is_empty() {
                out.push((*s, (*e).min(end)));
            }
        }
        out.retain(|(s, e)| s < e);
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_split_and_count() {
        let mut m = RunMap::new();
        m.insert(5, 10);
        m.insert(10, 12);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(5, 12)]);
        assert_eq!(m.before(12), 7);
        assert_eq!(m.before(13), 0);
        assert_eq!(m.before(5), 0);
        m.insert(2, 3);
        m.insert(3, 5);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(2, 12)]);
        m.remove(4, 6);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(2, 4), (6, 12)]);
        assert_eq!(m.within(3, 7), vec![(3, 4), (6, 7)]);
        assert_eq!(m.within(6, 7), vec![(6, 7)]);
        m.remove(0, 100);
        assert!(m.is_empty());
        m.insert(0, 1);
        assert_eq!(m.before(1), 1);
        assert!(m.contains(0) && !m.contains(1));
        assert!(is_hole(&[0; 30]) && !is_hole(&[0, 1]) && !is_hole(&[]));
    }
}
