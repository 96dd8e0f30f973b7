//! `pkfs version log`: one line per commit (short id, time, counts, the first
//! few paths), `--name-status` for every path, `--json` for every field.

use pkfs::store::history::LogEntry;
use pkfs::store::{Change, ChangeKind};
use serde_json::json;

use super::{fmt_time, Out};

/// How many paths the one-line summary of a commit names.
pub(super) const SUMMARY_PATHS: usize = 3;

/// Length of the short commit ids shown.
pub(super) const SHORT_ID: usize = pkfs::store::history::versions::SHORT_ID;

/// A name or path for text output, unambiguous: bytes that are not UTF-8 (and
/// control characters) become `\xFF` escapes, and a backslash is doubled, so
/// two different names never print the same.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        escape_str_into(chunk.valid(), &mut out);
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// [`escape_bytes`] of a string.
pub(crate) fn escape_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_str_into(s, &mut out);
    out
}

fn escape_str_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02X}", c as u32))
            }
            c => out.push(c),
        }
    }
}

/// The first [`SHORT_ID`] hex digits of a commit id.
pub(super) fn short(id: &str) -> &str {
    id.get(..SHORT_ID).unwrap_or(id)
}

/// How many paths a change list adds, modifies and removes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    pub added: usize,
    pub modified: usize,
    pub removed: usize,
}

impl Counts {
    pub fn of(changes: &[Change]) -> Counts {
        let mut c = Counts::default();
        for ch in changes {
            match ch.kind {
                ChangeKind::Added => c.added += 1,
                ChangeKind::Modified => c.modified += 1,
                ChangeKind::Removed => c.removed += 1,
            }
        }
        c
    }

    /// `+12 ~3 -1`.
    pub fn text(&self) -> String {
        format!("+{} ~{} -{}", self.added, self.modified, self.removed)
    }

    pub fn json(&self) -> serde_json::Value {
        json!({"added": self.added, "modified": self.modified, "removed": self.removed})
    }
}

/// The letter of `--name-status` lines.
pub(super) fn letter(kind: ChangeKind) -> char {
    match kind {
        ChangeKind::Added => 'A',
        ChangeKind::Modified => 'M',
        ChangeKind::Removed => 'D',
    }
}

/// The one-line summary of a commit.
pub(super) fn summary_line(e: &LogEntry) -> String {
    let mut line = format!("{} {}", short(&e.id), fmt_time(e.time));
    if e.head {
        line.push_str(" (HEAD)");
    }
    if e.discarded {
        line.push_str(" (discarded)");
    }
    if e.changes.is_empty() {
        line.push_str("  (vault created)");
        return line;
    }
    line.push_str("  ");
    line.push_str(&Counts::of(&e.changes).text());
    line.push_str("  ");
    line.push_str(&paths_summary(&e.changes));
    line
}

/// The first [`SUMMARY_PATHS`] paths, then `… and N more`.
pub(super) fn paths_summary(changes: &[Change]) -> String {
    let shown: Vec<String> = changes
        .iter()
        .take(SUMMARY_PATHS)
        .map(|c| escape_str(&c.path))
        .collect();
    let mut text = shown.join(", ");
    if changes.len() > SUMMARY_PATHS {
        text.push_str(&format!(" … and {} more", changes.len() - SUMMARY_PATHS));
    }
    text
}

/// Print `log` as asked: JSON, every path, or one line per commit.
/// `lost` gives the dropped key generations that files of a version are under.
pub(super) fn print(
    out: &Out,
    log: &[LogEntry],
    name_status: bool,
    lost: &dyn Fn(&str) -> Vec<u32>,
) -> anyhow::Result<()> {
    if out.json() {
        let list: Vec<_> = log
            .iter()
            .map(|e| {
                json!({"id": e.id, "time": e.time, "head": e.head,
                       "discarded": e.discarded, "changes": e.changes,
                       "counts": Counts::of(&e.changes).json(),
                       "unreadable_generations": lost(&e.id)})
            })
            .collect();
        return out.emit(&list);
    }
    for (i, e) in log.iter().enumerate() {
        let gone = lost(&e.id);
        let unreadable = (!gone.is_empty()).then(|| {
            let gens: Vec<String> = gone.iter().map(u32::to_string).collect();
            format!(
                "    Unreadable: files of this version are under dropped key generation(s) {}, \
                 and can no longer be read",
                gens.join(", ")
            )
        });
        if !name_status {
            out.data(summary_line(e));
            if let Some(u) = unreadable {
                out.data(u);
            }
            continue;
        }
        if i > 0 {
            out.data("");
        }
        out.data(summary_line_full(e));
        if let Some(u) = unreadable {
            out.data(u);
        }
        for c in &e.changes {
            out.data(format!("{}\t{}", letter(c.kind), escape_str(&c.path)));
        }
    }
    Ok(())
}

/// The heading of a commit under `--name-status`: its full id, time, counts.
fn summary_line_full(e: &LogEntry) -> String {
    let mut line = format!("commit {}", e.id);
    if e.head {
        line.push_str(" (HEAD)");
    }
    if e.discarded {
        line.push_str(" (discarded)");
    }
    line.push_str(&format!("  {}", fmt_time(e.time)));
    if e.changes.is_empty() {
        line.push_str("  (vault created)");
    } else {
        line.push_str(&format!("  {}", Counts::of(&e.changes).text()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_utf8_are_escaped_unambiguously() {
        assert_eq!(escape_bytes(b"a\xffb"), "a\\xFFb");
        assert_eq!(escape_bytes(b"a\\xFFb"), "a\\\\xFFb");
        assert_ne!(escape_bytes(b"a\xffb"), escape_bytes(b"a\\xFFb"));
        assert_eq!(escape_bytes(b"tab\there"), "tab\\x09here");
        assert_eq!(escape_bytes("é/ü".as_bytes()), "é/ü");
    }

    #[test]
    fn the_summary_names_three_paths_then_how_many_more() {
        let ch: Vec<Change> = (0..5)
            .map(|i| Change::new(ChangeKind::Added, format!("f{i}")))
            .collect();
        assert_eq!(paths_summary(&ch), "f0, f1, f2 … and 2 more");
        assert_eq!(paths_summary(&ch[..3]), "f0, f1, f2");
        let c = Counts::of(&[
            Change::new(ChangeKind::Added, "a"),
            Change::new(ChangeKind::Removed, "b"),
            Change::new(ChangeKind::Modified, "c"),
            Change::new(ChangeKind::Modified, "d"),
        ]);
        assert_eq!(c.text(), "+1 ~2 -1");
    }
}
