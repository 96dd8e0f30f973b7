//! `pkfs version diff|show|restore`: old versions read in place
//! (`pkfs::store::history::versions`), and paths brought back from them
//! (`pkfs::vault::restore`).

use std::io::Write;

use pkfs::store::history::versions::{Delta, DeltaKind, VEntry, Versions};
use pkfs::store::{ChangeKind, Kind, VPath};
use pkfs::vault::Vault;
use pkfs::Error;
use serde_json::json;

use super::cmd_version_log::{escape_bytes, escape_str, letter, short, Counts};
use super::{fmt_time, write_out, Out};

/// `version diff VAULT [REF1 [REF2]]`.
pub(super) fn diff(
    out: &Out,
    v: &Vault,
    refs: (Option<String>, Option<String>),
    name_status: bool,
    stat: bool,
) -> anyhow::Result<()> {
    let versions = v.history().versions(v.tree().keys())?;
    let (from, to) = match refs {
        (None, _) => ("HEAD~1".to_string(), "HEAD".to_string()),
        (Some(a), None) => (a, "HEAD".to_string()),
        (Some(a), Some(b)) => (a, b),
    };
    let a = versions.resolve(&from)?;
    let b = versions.resolve(&to)?;
    let deltas = versions.diff(&versions.root(a)?, &versions.root(b)?)?;
    let (counts, renamed) = count(&deltas);
    if out.json() {
        let list = deltas
            .iter()
            .map(|d| {
                Ok(json!({"kind": word(d.kind),
                       "path": String::from_utf8_lossy(&d.path),
                       "from": d.from.as_ref().map(|f| String::from_utf8_lossy(f)),
                       "old_size": size_of(&versions, d.old.as_ref())?,
                       "new_size": size_of(&versions, d.new.as_ref())?}))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let mut c = counts.json();
        c["renamed"] = json!(renamed);
        return out.emit(&json!({"from": a.to_string(), "to": b.to_string(),
                                "changes": list, "counts": c}));
    }
    if stat {
        out.data(format!(
            "{} added, {} modified, {} removed, {renamed} renamed",
            counts.added, counts.modified, counts.removed
        ));
        return Ok(());
    }
    for d in &deltas {
        let path = escape_bytes(&d.path);
        let from = d.from.as_deref().map(escape_bytes).unwrap_or_default();
        if name_status {
            match d.kind {
                DeltaKind::Renamed => out.data(format!("R\t{from}\t{path}")),
                k => out.data(format!("{}\t{path}", letter(change_kind(k)))),
            }
            continue;
        }
        let old = size_of(&versions, d.old.as_ref())?;
        let new = size_of(&versions, d.new.as_ref())?;
        let sizes = match (d.kind, old, new) {
            (DeltaKind::Added, _, Some(n)) => format!("  ({n} bytes)"),
            (DeltaKind::Modified, Some(o), Some(n)) => format!("  ({o} -> {n} bytes)"),
            (DeltaKind::Removed, Some(o), _) => format!("  (was {o} bytes)"),
            _ => String::new(),
        };
        match d.kind {
            DeltaKind::Renamed => out.data(format!("{:<9}{from} -> {path}", word(d.kind))),
            k => out.data(format!("{:<9}{path}{sizes}", word(k))),
        }
    }
    Ok(())
}

/// The plaintext size of a file entry; `None` for anything else.
fn size_of(v: &Versions, e: Option<&VEntry>) -> Result<Option<u64>, Error> {
    match e {
        Some(e) if e.kind == Kind::File => v.size(e).map(Some),
        _ => Ok(None),
    }
}

/// The counts of added, modified and removed paths, and of renames.
fn count(deltas: &[Delta]) -> (Counts, usize) {
    let mut c = Counts::default();
    let mut renamed = 0;
    for d in deltas {
        match d.kind {
            DeltaKind::Added => c.added += 1,
            DeltaKind::Modified => c.modified += 1,
            DeltaKind::Removed => c.removed += 1,
            DeltaKind::Renamed => renamed += 1,
        }
    }
    (c, renamed)
}

/// The change kind of a delta other than a rename.
fn change_kind(k: DeltaKind) -> ChangeKind {
    match k {
        DeltaKind::Added => ChangeKind::Added,
        DeltaKind::Removed => ChangeKind::Removed,
        DeltaKind::Modified | DeltaKind::Renamed => ChangeKind::Modified,
    }
}

fn word(k: DeltaKind) -> &'static str {
    match k {
        DeltaKind::Added => "added",
        DeltaKind::Modified => "modified",
        DeltaKind::Removed => "removed",
        DeltaKind::Renamed => "renamed",
    }
}

/// Standard output (or the daemon's capture) as a writer.
struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_out(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `version show VAULT REF[:PATH]`.
pub(super) fn show(out: &Out, v: &Vault, vault: &str, target: &str) -> anyhow::Result<()> {
    let versions = v.history().versions(v.tree().keys())?;
    let (spec, path) = match target.split_once(':') {
        Some((r, p)) => (r, Some(VPath::parse(p)?)),
        None => (target, None),
    };
    let id = versions.resolve(spec)?;
    let Some(path) = path else {
        let info = versions.info(id)?;
        let head = v.history().head()?.id == info.id;
        let counts = Counts::of(&info.changes);
        if out.json() {
            return out.emit(&json!({"id": info.id, "time": info.time, "head": head,
                                    "parents": info.parents, "changes": info.changes,
                                    "counts": counts.json()}));
        }
        let tag = if head { " (HEAD)" } else { "" };
        out.data(format!("commit {}{tag}", info.id));
        out.data(format!("Date:    {}", fmt_time(info.time)));
        if !info.parents.is_empty() {
            out.data(format!("Parents: {}", info.parents.join(" ")));
        }
        if info.changes.is_empty() {
            out.data("(vault created)");
        } else {
            out.data(format!("Changes: {}", counts.text()));
        }
        for c in &info.changes {
            out.data(format!("{}\t{}", letter(c.kind), escape_str(&c.path)));
        }
        return Ok(());
    };
    let shown = format!("{vault}:{path}");
    let Some(e) = versions.lookup(id, &path)? else {
        return Err(
            Error::NotFound(format!("{shown} (at version {})", short(&id.to_string()))).into(),
        );
    };
    match e.kind {
        Kind::File => {
            versions.read_to(&e, &shown, &mut Stdout)?;
        }
        Kind::Symlink => {
            let target = versions.link_target(&e, &shown)?;
            if out.json() {
                out.emit(&json!({"kind": "symlink",
                                 "target": String::from_utf8_lossy(&target)}))?;
            } else {
                out.data(escape_bytes(&target));
            }
        }
        Kind::Dir | Kind::Special => {
            let list = versions.list(&e)?;
            if out.json() {
                let items = list
                    .iter()
                    .map(|c| {
                        Ok(
                            json!({"name": String::from_utf8_lossy(&c.name), "kind": c.kind,
                                  "size": versions.size(c)?}),
                        )
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                return out.emit(&items);
            }
            for c in &list {
                let slash = if c.kind == Kind::Dir { "/" } else { "" };
                out.data(format!("{}{slash}", escape_bytes(&c.name)));
            }
        }
    }
    Ok(())
}

/// `version restore VAULT REF PATH...`.
pub(super) fn restore(
    out: &Out,
    v: &Vault,
    vault: &str,
    spec: &str,
    paths: &[String],
) -> anyhow::Result<()> {
    let parsed = paths
        .iter()
        .map(|p| VPath::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let r = v.restore(spec, &parsed)?;
    for s in &r.skipped {
        super::remote::write_err(
            format!("pkfs: {vault}:{s}: a symlink; not restored\n").as_bytes(),
        );
    }
    if out.json() {
        return out.emit(&json!({"vault": vault, "from": r.from, "commit": r.commit,
                                "changes": r.changes, "skipped": r.skipped,
                                "counts": Counts::of(&r.changes).json()}));
    }
    match &r.commit {
        Some(id) => out.say(format!(
            "{vault}: restored {} from {} in commit {} ({})",
            paths.join(", "),
            short(&r.from),
            short(id),
            Counts::of(&r.changes).text()
        )),
        None => out.say(format!(
            "{vault}: {} already as at {}; nothing to commit",
            paths.join(", "),
            short(&r.from)
        )),
    }
    Ok(())
}
