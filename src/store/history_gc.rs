//! `History::gc`: drop discarded versions and repack what is still reachable.

use super::*;

impl History {
    fn gc_in(&self, repo: &Repository) -> Result<GcReport> {
        let discarded = discarded_refs(repo)?;
        for (name, _) in &discarded {
            let mut r = repo.find_reference(name).ctx("reading a discarded ref")?;
            r.delete().ctx("deleting a discarded ref")?;
        }
        let before = count_objects(repo)?;
        let pack_dir = repo.path().join("objects").join("pack");
        let old_packs = list_dir(&pack_dir)?;

        let mut tips = Vec::new();
        for r in repo.references().ctx("listing refs")? {
            let r = r.ctx("reading a ref")?;
            let commit = r.peel_to_commit().ctx("resolving a ref")?;
            tips.push(commit.id());
        }
        tips.extend(head_target(repo)?);
        let mut pb = repo.packbuilder().ctx("starting a pack")?;
        pb.set_threads(1);
        let mut walk = new_walk(repo, &tips)?;
        pb.insert_walk(&mut walk)
            .ctx("collecting reachable objects")?;

        let new_stem = if pb.object_count() > 0 {
            fs::create_dir_all(&pack_dir).map_err(|e| Error::io(&pack_dir, e))?;
            pb.write(&pack_dir, 0).ctx("writing the new pack")?;
            let name = pb
                .name()
                .ctx("naming the new pack")?
                .ok_or_else(|| Error::History("the new pack has no name".into()))?;
            let stem = format!("pack-{name}");
            for ext in ["pack", "idx"] {
                fsync(&pack_dir.join(format!("{stem}.{ext}")))?;
            }
            fsync(&pack_dir)?;
            Some(stem)
        } else {
            None
        };

        // Everything reachable is now in the new pack: drop the rest.
        remove_loose(&repo.path().join("objects"), &before)?;
        let ours = |n: &str| {
            new_stem
                .as_ref()
                .is_some_and(|s| n.starts_with(&format!("{s}.")))
        };
        let mut stale: Vec<&String> = old_packs
            .iter()
            .filter(|n| !ours(n) && (n.starts_with("pack-") || *n == "multi-pack-index"))
            .collect();
        // Indexes first, so no reader ever sees an index without its pack.
        stale.sort_by_key(|n| !n.ends_with(".idx"));
        for n in stale {
            remove_file(&pack_dir.join(n))?;
        }
        // pkfs writes neither, and both could name deleted objects.
        for n in ["commit-graph", "packs"] {
            remove_file(&repo.path().join("objects/info").join(n))?;
        }
        Ok(GcReport {
            discarded_refs_removed: discarded.len(),
            objects_before: before.len(),
            objects_after: 0,
        })
    }

    /// Delete every discarded ref, then repack all objects reachable from the
    /// remaining refs and HEAD into one new pack (pkfs keeps no index, see
    /// `stage.rs`), and delete the loose
    /// objects and old packs (only after the new pack is on disk and synced).
    pub fn gc(&self) -> Result<GcReport> {
        let report = {
            let repo = self.repo.borrow();
            self.gc_in(&repo)?
        };
        // The old handle's object database still lists the deleted packs.
        *self.repo.borrow_mut() = open_repo(&self.vault_dir)?;
        let objects = count_objects(&self.repo.borrow())?;
        self.tags.prune(|id| objects.contains(&id));
        let objects_after = objects.len();
        Ok(GcReport {
            objects_after,
            ..report
        })
    }
}

/// Every object id in the object database (loose and packed, deduplicated).
fn count_objects(repo: &Repository) -> Result<HashSet<Oid>> {
    let odb = repo.odb().ctx("opening the object database")?;
    let mut ids = HashSet::new();
    odb.foreach(|id| {
        ids.insert(*id);
        true
    })
    .ctx("listing objects")?;
    Ok(ids)
}

/// Names in `dir`, empty when it does not exist.
pub(super) fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(dir, e))?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Delete the loose objects among `known` (objects created since are kept).
fn remove_loose(objects: &Path, known: &HashSet<Oid>) -> Result<()> {
    let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    for fan in list_dir(objects)? {
        let dir = objects.join(&fan);
        if fan.len() != 2 || !is_hex(&fan) || !dir.is_dir() {
            continue;
        }
        for name in list_dir(&dir)? {
            let ours = Oid::from_str(&format!("{fan}{name}"))
                .is_ok_and(|id| name.len() == 38 && is_hex(&name) && known.contains(&id));
            if ours {
                remove_file(&dir.join(&name))?;
            }
        }
        // Fails harmlessly when something newer is still in there.
        let _ = fs::remove_dir(&dir);
    }
    Ok(())
}

/// Delete a file; one that is already gone is fine.
fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

fn fsync(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}
