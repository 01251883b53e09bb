//! Folder sync: walk a folder, decide what changed, and commit it in checkpoints, with
//! progress for the whole run ([`RunStatus`]).
//!
//! Not for: what a commit does with the staged documents ([`super::commit`]), reading a
//! file into a document ([`crate::ingest`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::{Engine, IndexReport};
use crate::error::{Error, Result};
use crate::ingest::{self, Document, Skipped};

/// Where a whole [`Engine::add_folder`] run stands. The run commits a checkpoint every
/// few hundred MB of source, and the chunks of files not yet read are not known, so the
/// run's total is estimated from the chunks per source byte seen so far; the estimate (and
/// the time left) converge as the run reads more.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RunStatus {
    /// Source bytes the run reads (changed and new files).
    pub bytes_total: u64,
    /// Source bytes read so far (the current checkpoint's included).
    pub bytes_read: u64,
    /// The checkpoint being committed, from 1.
    pub checkpoint: usize,
    /// Chunks embedded so far in the whole run.
    pub chunks_embedded: u64,
    /// The run's estimated total of chunks to embed (exact once every file is read).
    pub chunks_estimated: u64,
    /// Seconds since the run began.
    pub elapsed_s: f64,
    /// Seconds left at the rate so far (`None` before the first chunk is embedded).
    pub eta_s: Option<f64>,
}

impl RunStatus {
    /// Re-estimates the total and the time left; `in_checkpoint` is the number of chunks
    /// the current checkpoint embeds in all, `done` how many of them are embedded.
    fn update(&mut self, started: Instant, done_before: u64, in_checkpoint: u64, done: u64) {
        self.chunks_embedded = done_before + done;
        let known = done_before + in_checkpoint;
        let share = self.bytes_read as f64 / self.bytes_total.max(1) as f64;
        self.chunks_estimated = if share > 0.0 {
            ((known as f64 / share.min(1.0)).round() as u64).max(known)
        } else {
            known
        };
        self.elapsed_s = started.elapsed().as_secs_f64();
        self.eta_s = (self.chunks_embedded > 0).then(|| {
            let left = self.chunks_estimated.saturating_sub(self.chunks_embedded) as f64;
            self.elapsed_s * left / self.chunks_embedded as f64
        });
    }
}

impl Engine {
    /// Syncs the index's unnamed collection with `root`: stages new and changed files
    /// (content hash decides what is re-embedded) and the removal of files that are gone,
    /// then commits. Named collections ([`Engine::add_collection`]) are left as they are.
    pub fn add_folder(&mut self, root: impl AsRef<Path>) -> Result<IndexReport> {
        self.require_writer()?;
        let root = root.as_ref();
        self.record_collection("", root, "");
        self.sync_folder(root, "")
    }

    /// Syncs `collection` (`""`: the unnamed one) with the folder `root`.
    pub(super) fn sync_folder(&mut self, root: &Path, collection: &str) -> Result<IndexReport> {
        if !root.is_dir() {
            return Err(Error::invalid(
                "folder",
                format!("{} is not a folder", root.display()),
            ));
        }
        let t0 = Instant::now();
        let walked = ingest::walk(root, &self.cfg.ingest);
        let mut report = IndexReport {
            skipped: walked.skipped,
            unsupported: walked.unsupported,
            ..Default::default()
        };
        // This collection's documents: the only ones this sync may change or remove.
        let meta = self.doc_meta()?;
        let known: HashMap<String, (u64, i64, bool)> = self
            .documents()?
            .iter()
            .filter(|d| meta.get(&d.key).map_or("", |m| m.collection.as_str()) == collection)
            .map(|d| (d.key.clone(), (d.size, d.mtime, d.external)))
            .collect();
        // A file of the unnamed collection whose key would be a named collection's.
        let named: HashSet<&str> = self
            .manifest
            .collections
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        // Cheap check first: size and mtime unchanged means the file is unchanged, unless
        // the generated-files setting changed since the last sync (then every file is read
        // again; content that did not change keeps its vectors).
        let reread = self.manifest.include_generated != self.cfg.ingest.include_generated;
        self.manifest.include_generated = self.cfg.ingest.include_generated;
        let mut to_read: Vec<(PathBuf, u64)> = Vec::new();
        let mut seen = HashSet::new();
        let shard = self.cfg.ingest.shard;
        for p in &walked.files {
            let rel = ingest::key_for(root, p);
            // A shard's sync sees only its files: the others are not read, and a file of
            // another shard that this index held (the shard count changed) is gone here.
            if shard.is_some_and(|s| !s.holds(&rel)) {
                continue;
            }
            if collection.is_empty() {
                if let Some(first) = rel.split('/').next().filter(|f| named.contains(f)) {
                    if rel.contains('/') {
                        return Err(Error::invalid(
                            "folder",
                            format!(
                                "{rel} would be read as a document of the collection {first:?}; sync this folder as a named collection (--collection) too, or rename the folder"
                            ),
                        ));
                    }
                }
            }
            let key = crate::collection::key_for(collection, &rel);
            if !seen.insert(key.clone()) {
                // Never two files as one document, each overwriting the other in turn.
                report.skipped.push(Skipped {
                    path: p.clone(),
                    reason: ingest::SkipReason::SameKey { key },
                });
                continue;
            }
            match (known.get(&key), ingest::stat(p)) {
                (Some(&(size, mtime, _)), Ok((s, m))) if !reread && size == s && mtime == m => {
                    report.unchanged += 1
                }
                (_, Ok((s, _))) => to_read.push((p.clone(), s)),
                (_, Err(_)) => to_read.push((p.clone(), 0)),
            }
        }
        let gone: Vec<String> = known
            .iter()
            .filter(|(key, &(_, _, external))| !external && !seen.contains(*key))
            .map(|(key, _)| key.clone())
            .collect();
        // Files that may be renames of a document that is gone (same size) go first, into
        // the commit that removes it, so that its vectors can be reused.
        let gone_sizes: HashSet<u64> = gone.iter().map(|k| known[k].0).collect();
        to_read.sort_by_key(|(_, size)| !gone_sizes.contains(size));

        // Checkpoints: a large sync commits every `checkpoint_bytes` of source (at least a
        // quarter of what the index already holds, so that rewriting the generation's files
        // stays a small multiple of their size), so an interrupted run keeps what it
        // embedded and the next run resumes where it stopped.
        let index_bytes: u64 = known.values().map(|v| v.0).sum();
        let walk_secs = t0.elapsed().as_secs_f64();
        let status = RunStatus {
            bytes_total: to_read.iter().map(|(_, b)| b).sum(),
            ..RunStatus::default()
        };
        self.run = Some((status, t0, 0));
        let r = self.sync_checkpoints(
            (root, collection),
            &to_read,
            &known,
            gone,
            index_bytes,
            &mut report,
        );
        self.run = None;
        let mut total = r?;
        // A sync that wrote most of the index closes with one graph, not the merge policy's
        // tiers (`Engine::settle`).
        let written = (total.chunks_embedded + total.chunks_reused) as f64;
        if written > 0.0 && written >= super::merge::SETTLE_SHARE * total.chunks_total as f64 {
            let t = Instant::now();
            if self.settle()? {
                total
                    .timings
                    .push(("settle".into(), t.elapsed().as_secs_f64()));
            }
        }
        // The walk (with the size and mtime checks) and the reading of files, apart from the
        // commits' own stages.
        total.timings.insert(0, ("walk".into(), walk_secs));
        total.skipped = report.skipped;
        total.unsupported = report.unsupported;
        total.unchanged += report.unchanged;
        Ok(total)
    }

    /// Reads `files` in parallel and stages them; a known file that can no longer be read
    /// leaves the index.
    fn stage_files(
        &mut self,
        (root, collection): (&Path, &str),
        files: &[(PathBuf, u64)],
        known: &HashMap<String, (u64, i64, bool)>,
        report: &mut IndexReport,
    ) -> Result<()> {
        self.progress.start("reading", files.len() as u64);
        let cfg = self.cfg.ingest.clone();
        let progress = self.progress.clone();
        let read: Vec<(PathBuf, std::result::Result<Document, ingest::SkipReason>)> = files
            .par_iter()
            .map(|(p, _)| {
                let r = ingest::read_document(root, p, &cfg).map(|mut d| {
                    d.key = crate::collection::key_for(collection, &d.key);
                    d.collection = collection.to_string();
                    d
                });
                progress.inc(1);
                (p.clone(), r)
            })
            .collect();
        self.progress.finish();
        for (path, r) in read {
            match r {
                Ok(doc) => self.staged.upserts.push(doc),
                Err(reason) => {
                    // A file that became unreadable or binary leaves the index.
                    let key = crate::collection::key_for(collection, &ingest::key_for(root, &path));
                    if known.contains_key(&key) {
                        self.staged.removes.insert(key);
                    }
                    report.skipped.push(Skipped { path, reason });
                }
            }
        }
        Ok(())
    }

    /// The checkpoints of a folder sync: a large sync commits every `checkpoint_bytes` of
    /// source (at least a quarter of what the index already holds, so that rewriting the
    /// generation's files stays a small multiple of their size), so an interrupted run keeps
    /// what it embedded and the next run resumes where it stopped.
    fn sync_checkpoints(
        &mut self,
        root: (&Path, &str),
        to_read: &[(PathBuf, u64)],
        known: &HashMap<String, (u64, i64, bool)>,
        gone: Vec<String>,
        mut index_bytes: u64,
        report: &mut IndexReport,
    ) -> Result<IndexReport> {
        let mut total = IndexReport::default();
        let mut read_secs = 0.0;
        let mut rest = to_read;
        let mut first = true;
        while first || !rest.is_empty() {
            let threshold = self.cfg.ingest.checkpoint_bytes.max(index_bytes / 4);
            let mut n = 0;
            let mut bytes = 0u64;
            while n < rest.len() && (n == 0 || bytes < threshold) {
                bytes += rest[n].1;
                n += 1;
            }
            let (batch, later) = rest.split_at(n);
            rest = later;
            let t = Instant::now();
            self.stage_files(root, batch, known, report)?;
            read_secs += t.elapsed().as_secs_f64();
            if let Some((st, _, _)) = self.run.as_mut() {
                st.bytes_read += bytes;
                st.checkpoint += 1;
            }
            if first {
                self.staged.removes.extend(gone.iter().cloned());
                first = false;
            }
            index_bytes += bytes;
            let r = self.commit()?;
            if let Some((_, _, before)) = self.run.as_mut() {
                *before += r.chunks_embedded as u64;
            }
            total.absorb(r);
        }
        total.timings.insert(0, ("read".into(), read_secs));
        Ok(total)
    }

    /// Tells the progress sink where the whole run stands: `done` of the `in_checkpoint`
    /// chunks the current checkpoint embeds are embedded. Outside a folder sync, nothing.
    pub(super) fn report_run(&mut self, in_checkpoint: u64, done: u64) {
        if let Some((st, started, before)) = self.run.as_mut() {
            st.update(*started, *before, in_checkpoint, done);
            self.progress.run(st);
        }
    }
}
