//! `pkfs fsck`: the working tree against HEAD's tree, plaintext paths of
//! committed files, and blobs that share a file id.

use super::*;

impl Fsck<'_> {
    /// The working tree against HEAD's tree.
    pub(super) fn compare(
        &self,
        head: &HeadFiles,
        seen: &BTreeMap<String, Seen>,
        report: &mut Report,
    ) {
        let under_unreadable = |rel: &str| {
            head.unreadable
                .iter()
                .any(|u| rel == u || rel.starts_with(&format!("{u}/")))
        };
        let short = &head.commit[..head.commit.len().min(8)];
        for (rel, s) in seen {
            // A `.tmp-*` leftover of a cut atomic write is ignored, as
            // everywhere (FORMAT.md, "Home layout").
            let temp = rel
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(".tmp-"));
            if s.role == Role::Dir || under_unreadable(rel) || temp {
                continue;
            }
            let what = meta_note(s.role);
            let moved = match self.history.origin(rel) {
                Origin::Head(from) if from != *rel && self.history.covers(rel) => Some(from),
                _ => None,
            };
            let uncommitted = self.uncommitted(rel, seen, head);
            let (kind, detail) = match (head.files.get(rel), moved) {
                (Some((id, _)), _) if Some(*id) == s.hash => continue,
                (_, Some(from)) if !uncommitted => (
                    "modified-since-commit",
                    format!(
                        "{what}was moved here through pkfs, but is not the committed file \
                         it was moved from ({})",
                        self.head_path(head, &from)
                    ),
                ),
                (Some(_), _) => (
                    "modified-since-commit",
                    format!("{what}differs from the committed version ({short})"),
                ),
                (None, _) => (
                    "untracked",
                    format!("{what}not in the committed version ({short}); not made by pkfs"),
                ),
            };
            if uncommitted {
                report.uncommitted.push(s.shown.clone());
            } else {
                report
                    .findings
                    .push(Finding::new(&s.shown, kind, detail).at(rel));
            }
        }
        for rel in head.files.keys() {
            if seen.contains_key(rel) {
                continue;
            }
            let shown = self.head_path(head, rel);
            if self.uncommitted(rel, seen, head) {
                report.uncommitted.push(shown);
            } else {
                let detail = format!("in the committed version ({short}) but not on disk");
                report
                    .findings
                    .push(Finding::new(shown, "missing", detail).at(rel));
            }
        }
    }

    /// The plaintext path of a file HEAD tracks, decrypted with HEAD's own
    /// directory IVs and sidecars; undecryptable components stay encrypted.
    pub(crate) fn head_path(&self, head: &HeadFiles, rel: &str) -> String {
        let parts: Vec<&str> = rel.split('/').skip(1).collect();
        let mut shown = String::new();
        let mut dir = CONTENTS.to_string();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let plain = match names::classify(part) {
                EntryKind::DirIv | EntryKind::Sidecar if last => None,
                _ => self.head_name(head, &dir, part),
            };
            match plain {
                Some(n) => shown = join(&shown, &n),
                None if last && *part == DIRIV_FILE => {}
                None => shown = join(&shown, part),
            }
            dir = format!("{dir}/{part}");
        }
        or_root(&shown)
    }

    fn head_name(&self, head: &HeadFiles, dir: &str, part: &str) -> Option<String> {
        let blob = |rel: String| {
            let (id, _) = head.files.get(&rel)?;
            self.history.read_blob(*id)
        };
        let iv: DirIv = blob(format!("{dir}/{DIRIV_FILE}"))?
            .as_slice()
            .try_into()
            .ok()?;
        let encoded = match names::classify(part) {
            EntryKind::Long => {
                let enc =
                    String::from_utf8(blob(format!("{dir}/{}", names::sidecar_of(part)))?).ok()?;
                (names::long_entry(&enc) == part).then_some(enc)?
            }
            _ => part.to_string(),
        };
        self.decrypt(&iv, &encoded)
    }
}

/// Blobs sharing a file id (other than hard links of one inode): a copy or swap.
pub(super) fn duplicate_ids(ids: FileIds, out: &mut Vec<Finding>) {
    let mut groups: Vec<_> = ids.into_values().collect();
    groups.sort();
    for mut group in groups {
        group.dedup_by(|a, b| a.2 == b.2);
        if group.len() < 2 {
            continue;
        }
        for (shown, rel, _) in &group {
            let others: Vec<&str> = group
                .iter()
                .filter(|(_, r, _)| r != rel)
                .map(|(s, _, _)| s.as_str())
                .collect();
            let detail = format!(
                "same file id as {:?}: one blob was copied over another",
                others.join(", ")
            );
            out.push(Finding::new(shown, "duplicate-file-id", detail).at(rel));
        }
    }
}
