//! Merging segments: the size-tiered policy that runs after each commit, and `pinpoint
//! compact`, which merges everything.
//!
//! A merge writes the live chunks of a run of adjacent segments as one new segment and
//! commits a generation that lists it in their place; chunk ids, and so the lexical index,
//! the document table and the neighbour table, do not change (the per-generation tables
//! are hard-linked to the new generation's names, not rewritten). It is crash-safe the
//! way a commit is: the manifest's rename is the commit point, and files written before a
//! crash are unreferenced and removed by the next writer.
//!
//! The merged segment's graph starts from its largest member's graph and inserts the
//! others' chunks (hnsw_rs inserts into a loaded graph), rather than building from
//! nothing; that member's deleted chunks stay in it as filtered points until they pass
//! [`crate::dense::HnswParams::max_tombstone_ratio`] of it, when it is built afresh.
//!
//! Not for: what a segment holds (`crate::segment`) or a commit's own writes
//! (`commit.rs`).

use std::ops::Range;

use super::artifacts::{self, docs_file, meta_file, near_file, pending_manifest, MANIFEST};
use super::commit::Codes;
use super::Engine;
use crate::dense::{dump_graph, load_graph, Graph};
use crate::error::{IoContext, Result};
use crate::segment::{SegmentMeta, Segments};
use crate::store::sync_dir;

/// Segments merge when this many adjacent ones fall in one size tier (tiers are powers
/// of this factor above [`TIER_FLOOR`] live chunks): each chunk is rewritten about once
/// per tier, so a million chunks committed a file at a time are rewritten ~4 times, not
/// once per commit. Lucene's and tantivy's default is 10; 8 keeps the search of a small
/// index to fewer segments.
pub const MERGE_FACTOR: usize = 8;

/// Segments under this many live chunks share the lowest tier.
pub const TIER_FLOOR: u64 = 1_000;

/// A segment with more than this share of its chunks deleted is rewritten alone.
pub const MAX_DELETED_SHARE: f64 = 0.3;

/// Live chunks the policy may rewrite after one commit: a bounded pause for the commit
/// that triggers it. Bigger merges wait for `pinpoint compact`.
pub const MERGE_BUDGET: u64 = 250_000;

/// How a merged segment gets its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GraphPlan {
    /// Start from the largest member's graph and insert the rest.
    Extend,
    /// Build one from nothing (compaction: no filtered points left).
    Rebuild,
}

/// The size tier of a segment of `live` chunks.
fn tier(live: u64) -> u32 {
    let mut t = 0;
    let mut n = live.max(TIER_FLOOR) / TIER_FLOOR;
    while n >= MERGE_FACTOR as u64 {
        n /= MERGE_FACTOR as u64;
        t += 1;
    }
    t
}

/// The next merge the policy wants among `segs` (in id order), within `budget` live
/// chunks: the first run of [`MERGE_FACTOR`] adjacent segments of one tier, else the first
/// segment whose deleted share passes [`MAX_DELETED_SHARE`].
pub fn plan(segs: &[SegmentMeta], budget: u64) -> Option<Range<usize>> {
    let mut start = 0;
    for i in 0..=segs.len() {
        if i == segs.len() || tier(segs[i].live()) != tier(segs[start].live()) {
            if i - start >= MERGE_FACTOR {
                let run = start..start + MERGE_FACTOR;
                let size: u64 = segs[run.clone()].iter().map(SegmentMeta::live).sum();
                if size <= budget {
                    return Some(run);
                }
            }
            start = i;
        }
    }
    segs.iter()
        .position(|s| {
            s.rows > 0 && s.deleted as f64 / s.rows as f64 > MAX_DELETED_SHARE && s.live() <= budget
        })
        .map(|i| i..i + 1)
}

impl Engine {
    /// Merges every segment into one with a freshly built graph (no filtered points).
    /// The lexical index is left to tantivy's own merging.
    pub fn compact(&mut self) -> Result<()> {
        self.require_writer()?;
        let n = self.segs.segments().len();
        if n == 0 {
            return Ok(());
        }
        self.merge(0..n, GraphPlan::Rebuild)
    }

    /// Runs the merge policy ([`plan`]) until it wants nothing more or the commit's budget
    /// ([`MERGE_BUDGET`]) is spent; returns the merges made.
    pub(super) fn merge_by_policy(&mut self) -> Result<usize> {
        let mut budget = MERGE_BUDGET;
        let mut merges = 0;
        while let Some(run) = plan(&self.manifest.segments, budget) {
            let size: u64 = self.manifest.segments[run.clone()]
                .iter()
                .map(SegmentMeta::live)
                .sum();
            self.merge(run, GraphPlan::Extend)?;
            budget = budget.saturating_sub(size.max(1));
            merges += 1;
        }
        Ok(merges)
    }

    /// Merges the segments `run` (adjacent, in id order) into one and commits the
    /// generation that lists it in their place.
    fn merge(&mut self, run: Range<usize>, plan: GraphPlan) -> Result<()> {
        let dir = self.dir.clone();
        let dim = self.spec.dim;
        let gen = self.manifest.generation + 1;
        self.progress.start("merge", 0);
        let members = &self.segs.segments()[run.clone()];
        let base = self.segs.base_of(run.start);
        let live: usize = members.iter().map(|s| s.live()).sum();
        let mut records = Vec::with_capacity(live);
        let mut vecs = Vec::with_capacity(live * dim);
        let mut codes = Vec::new();
        let mut pos = base;
        for seg in members {
            for i in 0..seg.live() {
                let row = seg.live_row(i);
                records.push(seg.store().get(row)?);
                vecs.extend_from_slice(seg.dense().vectors().row(row));
                if self.manifest.token_codes {
                    codes.push(Codes::Old(pos));
                }
                pos += 1;
            }
        }
        // The graph to start from: the largest member's, unless too much of it is dead.
        let start = match plan {
            GraphPlan::Rebuild => None,
            GraphPlan::Extend => {
                let largest = members
                    .iter()
                    .filter(|s| s.meta().graph.is_some())
                    .max_by_key(|s| s.live());
                match largest {
                    Some(s) => {
                        let g: Graph = load_graph(
                            &dir.join("dense"),
                            s.meta().graph.as_deref().unwrap_or_default(),
                        )?;
                        let points = g.get_nb_point();
                        let dead = points.saturating_sub(s.live());
                        let total = points + live - s.live();
                        if (dead as f32) <= self.cfg.hnsw.max_tombstone_ratio * total as f32 {
                            let first = s.store().id_at(0);
                            let last = s.store().id_at(s.store().len().saturating_sub(1));
                            Some((g, first..=last))
                        } else {
                            None
                        }
                    }
                    None => None,
                }
            }
        };
        let id = self.manifest.next_segment.max(1);
        let (meta, _) = self.write_segment_from(id, &records, vecs, &codes, start)?;
        drop(records);

        let mut metas = self.manifest.segments.clone();
        if !self.manifest.segmented {
            metas = artifacts::segments_of(&self.manifest);
        }
        metas.splice(run, std::iter::once(meta));
        // The per-generation tables do not change: the new generation's names are links.
        for f in [docs_file, meta_file, near_file] {
            let (from, to) = (dir.join(f(gen - 1)), dir.join(f(gen)));
            if from.is_file() {
                if to.exists() {
                    std::fs::remove_file(&to).at(&to)?;
                }
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).at(&to)?;
                }
            }
        }
        for sub in ["docs", "meta", "near"] {
            if dir.join(sub).is_dir() {
                sync_dir(&dir.join(sub))?;
            }
        }
        let mut next = self.manifest.clone();
        next.generation = gen;
        next.segmented = true;
        next.hnsw = None;
        next.segments = metas;
        next.next_segment = id + 1;
        next.previous_files = artifacts::generation_files(&self.manifest, self.lexical.has_near());
        next.files =
            self.checksums(&artifacts::generation_files(&next, self.lexical.has_near()))?;
        let pending = dir.join(pending_manifest(gen));
        next.write_to(&pending)?;
        sync_dir(&dir)?;
        // The commit point: the lexical index records the generation (nothing else of it
        // changes), then the manifest is renamed into place.
        self.lexical.writer()?.commit(gen)?;
        std::fs::rename(&pending, dir.join(MANIFEST)).at(dir.join(MANIFEST))?;
        sync_dir(&dir)?;
        self.lexical.reload()?;
        self.segs = Segments::open(&dir, &next.segments, dim, false)?;
        self.manifest = next;
        // The tables are the same; their pinned files are the old generation's names.
        self.docs_file = None;
        self.near_file = None;
        if self.manifest.neighbours > 0 && dir.join(near_file(gen)).is_file() {
            self.near_file = Some(crate::store::PinnedFile::open(&dir.join(near_file(gen)))?);
        }
        self.meta_file = None;
        self.remove_stray_files()?;
        self.progress.finish();
        Ok(())
    }

    /// Writes `graph` (when given) extended with the rows of `records` outside its id range,
    /// else what [`Engine::write_segment`] builds.
    fn write_segment_from(
        &self,
        id: u64,
        records: &[crate::store::ChunkRecord],
        vecs: Vec<f32>,
        codes: &[Codes],
        start: Option<(Graph, std::ops::RangeInclusive<u64>)>,
    ) -> Result<(SegmentMeta, crate::segment::Segment)> {
        let Some((g, have)) = start else {
            return self.write_segment(id, records, vecs, codes);
        };
        let dim = self.spec.dim;
        let data: Vec<(&[f32], usize)> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| !have.contains(&r.id))
            .map(|(i, r)| (&vecs[i * dim..(i + 1) * dim], r.id as usize))
            .collect();
        self.progress.start("hnsw", data.len() as u64);
        if !data.is_empty() {
            g.parallel_insert_slice(&data);
        }
        drop(data);
        let name = dump_graph(&g, &self.dir.join("dense"), &crate::segment::graph_base(id))?;
        drop(g);
        self.progress.finish();
        // The segment's other files, without a graph of its own; then the extended one.
        let (mut meta, _) = self.write_segment_without_graph(id, records, vecs, codes)?;
        meta.graph = Some(name);
        let seg = crate::segment::Segment::open(&self.dir, &meta, dim, false)?;
        Ok((meta, seg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, rows: u64, deleted: u64) -> SegmentMeta {
        SegmentMeta {
            id,
            rows,
            deleted,
            chunks: String::new(),
            vectors: String::new(),
            codes: None,
            graph: None,
            deletes: None,
        }
    }

    #[test]
    fn eight_small_segments_merge_and_seven_wait() {
        let seven: Vec<SegmentMeta> = (0..7).map(|i| seg(i, 10, 0)).collect();
        assert_eq!(plan(&seven, MERGE_BUDGET), None);
        let mut eight = seven.clone();
        eight.push(seg(7, 900, 0));
        assert_eq!(plan(&eight, MERGE_BUDGET), Some(0..8));
        // A big segment in front does not join the small ones' tier.
        let mut mixed = vec![seg(0, 100_000, 0)];
        mixed.extend((1..9).map(|i| seg(i, 10, 0)));
        assert_eq!(plan(&mixed, MERGE_BUDGET), Some(1..9));
    }

    #[test]
    fn a_mostly_deleted_segment_is_rewritten_and_the_budget_holds() {
        let segs = vec![seg(0, 1000, 100), seg(1, 1000, 400)];
        assert_eq!(plan(&segs, MERGE_BUDGET), Some(1..2));
        assert_eq!(plan(&segs, 500), None);
        let big: Vec<SegmentMeta> = (0..8).map(|i| seg(i, 100_000, 0)).collect();
        assert_eq!(
            plan(&big, MERGE_BUDGET),
            None,
            "800k chunks wait for compact"
        );
    }
}
