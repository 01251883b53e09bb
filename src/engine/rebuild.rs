//! Rebuilding an index from scratch without ever leaving the user without one.
//!
//! `pinpoint index FOLDER --rebuild` (what every corrupt-index and model-mismatch error
//! tells a user to run) used to delete the old index first and then build; a crash, a
//! Ctrl-C or a refusal in between left nothing. Now:
//!
//! 1. the writer lock of the index folder is taken (so `watch` cannot write beside it);
//! 2. the new index is built in `<index>/rebuild.tmp/`, an ordinary index folder, with
//!    its own commits and checkpoints; the old index keeps answering queries;
//! 3. the mark `<index>/REBUILD` is written and fsynced: **the rebuild's commit point**;
//! 4. each of the index's top-level entries ([`super::artifacts::replaced_by_rebuild`],
//!    the manifest last) is moved from `rebuild.tmp/` into place, the old one set aside in
//!    `old.tmp/`; then the mark and the two scratch folders go.
//!
//! A crash before the mark leaves the old index as it was (the next rebuild or writer
//! open discards `rebuild.tmp/`); a crash after it is rolled forward by the next writer
//! open, entry by entry (each step is idempotent). Readers that meet the mark wait for the
//! move to finish.
//!
//! Not for: building itself (the engine's `add_folder` and commit).

use std::path::Path;
use std::sync::Arc;

use super::artifacts::{self, MANIFEST, REBUILD_DIR, REBUILD_MARK};
use super::lock::WriterLock;
use super::{Engine, EngineConfig, IndexReport, Progress};
use crate::collection::CollectionInfo;
use crate::error::{Error, IoContext, Result};
use crate::store::{sync_dir, Manifest};

/// Where the old index's entries are set aside while the new ones move in.
const OLD_DIR: &str = "old.tmp";

impl Engine {
    /// Builds a new index of `root` in `dir`, replacing the index there (if any) only once
    /// the new one is complete: whatever happens before that, the old index stays usable.
    /// The new index takes `cfg`'s model, chunking and options, not the old index's.
    pub fn rebuild(
        dir: impl AsRef<Path>,
        cfg: EngineConfig,
        root: impl AsRef<Path>,
        progress: Arc<dyn Progress>,
    ) -> Result<(Engine, IndexReport)> {
        let dir = dir.as_ref();
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(Error::invalid(
                "folder",
                format!("{} is not a folder", root.display()),
            ));
        }
        if !dir.join(MANIFEST).exists() && !dir.join(REBUILD_MARK).exists() {
            // Nothing to protect: an ordinary build.
            let mut e = Engine::open_or_create(dir, cfg)?;
            e.set_progress(progress);
            let r = e.add_folder(root)?;
            return Ok((e, r));
        }
        let lock = WriterLock::acquire(dir)?;
        // An earlier rebuild that reached its mark is finished first; one that did not is
        // discarded (it never replaced anything).
        finish_install(dir)?;
        let staging = dir.join(REBUILD_DIR);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).at(&staging)?;
        }
        let plan = rebuild_plan(dir, root)?;
        let report = {
            let mut fresh = Engine::create(&staging, cfg.clone())?;
            fresh.set_progress(progress.clone());
            let mut report = IndexReport::default();
            for c in &plan {
                let r = if c.name.is_empty() {
                    fresh.add_folder(&c.root)?
                } else {
                    fresh.add_collection(&c.name, &c.root, &c.description)?
                };
                report.absorb(r);
            }
            report
            // Dropped here: its lock inside `rebuild.tmp/` is released before the move.
        };
        // The commit point.
        let mark = dir.join(REBUILD_MARK);
        {
            let f = std::fs::File::create(&mark).at(&mark)?;
            f.sync_all().at(&mark)?;
        }
        sync_dir(dir)?;
        finish_install(dir)?;
        drop(lock);
        let mut e = Engine::open(dir, cfg)?;
        e.set_progress(progress);
        Ok((e, report))
    }
}

/// What a rebuild of the index in `dir` builds: every named collection again from the
/// folder it records, and the unnamed one from `root`. A rebuild must not drop a collection
/// silently, so one that cannot be rebuilt is an error: fed by a program (no folder) or
/// its folder gone. `root` for an index of named collections only must be one of their
/// folders (the command names a folder; any other would become an unnamed collection
/// beside them).
fn rebuild_plan(dir: &Path, root: &Path) -> Result<Vec<CollectionInfo>> {
    let unnamed = || CollectionInfo {
        name: String::new(),
        root: root.to_string_lossy().to_string(),
        description: String::new(),
    };
    // A manifest that cannot be read (another format, damage) is what a rebuild is for:
    // nothing of it can be kept, the folder named is built.
    let Ok(m) = Manifest::read(&dir.join(MANIFEST)) else {
        return Ok(vec![unnamed()]);
    };
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let named: Vec<&CollectionInfo> = m
        .collections
        .iter()
        .filter(|c| !c.name.is_empty())
        .collect();
    let mut plan = Vec::new();
    for c in &named {
        if c.root.is_empty() || !Path::new(&c.root).is_dir() {
            return Err(Error::invalid(
                "rebuild",
                format!(
                    "the collection {:?} cannot be rebuilt ({}); rebuilding would drop it: `pinpoint forget {}` first, or rebuild into a new index",
                    c.name,
                    if c.root.is_empty() { "its documents were added by a program".to_string() } else { format!("its folder {} is gone", c.root) },
                    c.name
                ),
            ));
        }
        plan.push((*c).clone());
    }
    let has_unnamed = named.is_empty() || m.collections.iter().any(|c| c.name.is_empty());
    if has_unnamed {
        plan.push(unnamed());
    } else if !named
        .iter()
        .any(|c| canon(Path::new(&c.root)) == canon(root))
    {
        let list: Vec<String> = named
            .iter()
            .map(|c| format!("{} ({})", c.name, c.root))
            .collect();
        return Err(Error::invalid(
            "rebuild",
            format!(
                "this index holds named collections only: {}; a rebuild builds each again from its folder: name one of them",
                list.join(", ")
            ),
        ));
    }
    Ok(plan)
}

/// Completes (or discards) a rebuild left in `dir`; the caller holds the writer lock.
///
/// With the mark present, every entry still in `rebuild.tmp/` moves into place (the old
/// one aside first), the manifest last; without it, `rebuild.tmp/` is an unfinished build
/// and is removed. Safe to run again after a crash at any step.
pub(super) fn finish_install(dir: &Path) -> Result<()> {
    let staging = dir.join(REBUILD_DIR);
    let mark = dir.join(REBUILD_MARK);
    let old = dir.join(OLD_DIR);
    if !mark.exists() {
        if staging.exists() {
            std::fs::remove_dir_all(&staging).at(&staging)?;
        }
        if old.exists() {
            std::fs::remove_dir_all(&old).at(&old)?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(&old).at(&old)?;
    for entry in artifacts::replaced_by_rebuild() {
        let new = staging.join(entry);
        if !new.exists() {
            continue; // moved before a crash
        }
        let target = dir.join(entry);
        if entry != MANIFEST && target.exists() {
            let aside = old.join(entry);
            if aside.exists() {
                std::fs::remove_dir_all(&aside).at(&aside)?;
            }
            std::fs::rename(&target, &aside).at(&target)?;
        }
        // The manifest replaces the old one in one rename: the switch to the new index.
        std::fs::rename(&new, &target).at(&target)?;
    }
    // Pending manifests of the old index's generations would be taken for roll-forwards.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name != MANIFEST && name.starts_with("manifest.") && artifacts::is_index_entry(&name)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    sync_dir(dir)?;
    std::fs::remove_file(&mark).at(&mark)?;
    sync_dir(dir)?;
    for scratch in [&staging, &old] {
        if scratch.exists() {
            std::fs::remove_dir_all(scratch).at(scratch)?;
        }
    }
    Ok(())
}

/// Whether a rebuild is being moved into `dir` right now (readers wait for it).
pub(super) fn installing(dir: &Path) -> bool {
    dir.join(REBUILD_MARK).exists()
}
