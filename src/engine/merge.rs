//! Merging segments: the size-tiered policy that runs after each commit, and `pinpoint
//! compact`, which merges everything.
//!
//! A merge writes the live chunks of a run of adjacent segments as one new segment and
//! commits a generation that lists it in their place; chunk ids, and so the lexical index,
//! the document table and the neighbour table, do not change (the new generation lists the
//! same table files, [`super::tables`]). It is crash-safe the
//! way a commit is: the manifest's rename is the commit point, and files written before a
//! crash are unreferenced and removed by the next writer.
//!
//! The merged segment's graph starts from its largest member's graph when that one has lost
//! at most [`MAX_SEEDED_DELETED_SHARE`] of its rows: its levels and links are kept (links
//! to deleted rows dropped) and only the other members' rows are inserted
//! ([`crate::graph_build::GraphBuilder::seeded`]). Otherwise it is built afresh.
//!
//! A commit big enough for a graph of its own may instead **fold** its chunks into the last
//! segment ([`fold_target`], [`Engine::write_fold`]): the same seeded build, with the
//! commit's chunks as the rows inserted, so that a bulk load inserts each chunk into a
//! graph once.
//!
//! Not for: what a segment holds (`crate::segment`) or a commit's own writes
//! (`commit.rs`).

use std::ops::Range;

use super::artifacts::{self, MANIFEST};
use super::segment_write::Codes;
use super::segment_write::{GraphSeed, SegmentVectors};
use super::Engine;
use crate::error::{IoContext, Result};
use crate::segment::{Segment, SegmentMeta, Segments};
use crate::store::{sync_dir, ChunkEntry, ChunkRecord, DocRecord};

/// The live chunks a merge or a fold writes again, in order ([`Engine::carried`]): each
/// one's record as its store holds it, its text key and where its token codes are read from.
struct Carried<'a> {
    chunks: Vec<ChunkEntry<'a>>,
    keys: Vec<u64>,
    codes: Vec<Codes>,
}

/// A commit's new chunks that would get a graph of their own join the newest segment's
/// graph instead when it holds at most this many times as many live chunks
/// ([`fold_target`]).
///
/// Why: a bulk load commits a checkpoint at a time, and each checkpoint's graph was merged
/// into the others' later: 1.9M graph inserts for a million chunks, each checkpoint's graph
/// built without its rows' neighbours in the other checkpoints (the harder graph), and every
/// checkpoint's document-expansion search walking one graph per segment. Folded, each chunk
/// is inserted once, into one graph, as a single build would. The price is rewriting the
/// newest segment's other files (vectors, chunk store) with each fold; ten, the merge
/// factor of Lucene's and tantivy's policies, bounds a fold's rewrite to ten times what it
/// adds (docs/decisions.md, "A checkpoint folds into the last segment's graph").
pub const FOLD_RATIO: u64 = 10;

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
/// At the graph builder's ~10,000 inserts a second on this 2-core machine (a merge starts
/// from its largest member's graph, so it inserts only the others), a commit that
/// triggers the largest merge pauses about a minute and a half; with 250,000 (the limit
/// under hnsw_rs, whose build held ~4.5 KB a point) a million chunks committed 100,000 at
/// a time never merged and a query searched ten graphs.
pub const MERGE_BUDGET: u64 = 1_000_000;

/// The largest segment `compact` makes: building its graph holds ~200 bytes a point beside
/// the mapped vectors (1.5 KB a point at 384 dimensions, in the page cache), ~3.4 GB at
/// this size, inside the 4 GiB a million-chunk build may peak at twice over.
pub const MAX_SEGMENT: u64 = 2_000_000;

/// A folder sync that wrote at least this share of the index's live chunks (a first build,
/// a mass change) closes with [`Engine::settle`].
pub const SETTLE_SHARE: f64 = 0.5;

/// A member graph that lost more than this share of its rows is not a merge's seed.
pub const MAX_SEEDED_DELETED_SHARE: f64 = 0.1;

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

/// Whether a commit of `new_rows` chunks folds them into the last segment, and its index in
/// `after` (the segments after the commit's deletions; `current`: before them).
///
/// It does when the new chunks would get a graph of their own (`min_points`), the last
/// segment loses none of its rows in this commit, holds at most [`FOLD_RATIO`] times the new
/// chunks, the two together stay within [`MAX_SEGMENT`], and the last segment either has a
/// graph file that has lost at most [`MAX_SEEDED_DELETED_SHARE`] of its rows (the fold
/// starts from it) or is too small for a graph (its rows join the new graph: a folder
/// sync's first checkpoints are smaller than `min_points`). Chunk ids grow with each
/// commit, so the new chunks follow the last segment's in id order.
pub fn fold_target(
    current: &[SegmentMeta],
    after: &[SegmentMeta],
    new_rows: u64,
    min_points: usize,
) -> Option<usize> {
    let last = current.last()?;
    let same = after.last()?;
    let share = last.deleted as f64 / last.rows.max(1) as f64;
    let seed = last.graph_file.is_some() && share <= MAX_SEEDED_DELETED_SHARE;
    let small =
        last.graph_file.is_none() && last.graph.is_none() && last.live() < min_points as u64;
    let fits = new_rows >= min_points.max(1) as u64
        && same.id == last.id
        && same.deleted == last.deleted
        && (seed || small)
        && last.live() <= new_rows.saturating_mul(FOLD_RATIO)
        && last.live() + new_rows <= MAX_SEGMENT;
    fits.then(|| after.len() - 1)
}

impl Engine {
    /// Merges every segment into one with a freshly built graph (no filtered points).
    /// The lexical index is left to tantivy's own merging.
    pub fn compact(&mut self) -> Result<()> {
        self.require_writer()?;
        // Left to right: each run of adjacent segments that fits in MAX_SEGMENT becomes one
        // (a single segment only when it has deleted chunks or an old-format graph).
        let mut i = 0;
        while i < self.manifest.segments.len() {
            let segs = &self.manifest.segments;
            let mut j = i;
            let mut size = 0;
            while j < segs.len() && (j == i || size + segs[j].live() <= MAX_SEGMENT) {
                size += segs[j].live();
                j += 1;
            }
            let alone = &segs[i];
            if j - i > 1 || alone.deleted > 0 || alone.graph.is_some() || !self.manifest.segmented {
                self.merge(i..j)?;
            }
            i += 1;
        }
        // The merged segments' text indexes are built now, from the keys the merges just
        // wrote, as after a policy merge, rather than by the next one-file commit (the
        // first add after a million-chunk settle took 0.20 s with it, 0.05-0.07 s without).
        self.warm_text_indexes()?;
        Ok(())
    }

    /// After a bulk load, when more than one segment holds a graph: merges as
    /// [`Engine::compact`] does, so that a query walks one graph (per `MAX_SEGMENT`
    /// chunks) instead of the tiers the merge policy left. The size-tiered policy keeps a
    /// commit's merge bounded, which a load of a million chunks pays for at every query: as
    /// built, 800k + 100k + 100k, three graphs, 0.24x hnswlib's queries/s at recall 0.98;
    /// one graph, 0.72x, for a merge of 26 s (5% of the build), which inserts only what the
    /// largest graph lacks. Either way the files of the generations it replaced are removed
    /// at once (see below). Returns whether it merged.
    pub fn settle(&mut self) -> Result<bool> {
        self.require_writer()?;
        let graphs = self
            .manifest
            .segments
            .iter()
            .filter(|s| s.graph_file.is_some() || s.graph.is_some())
            .count();
        if graphs <= 1 {
            // A load whose checkpoints folded into one graph has nothing to merge, but
            // the generations it replaced hold a copy of most of the index, and its last
            // segment's text index is built here as after a merge (`compact`), not by the
            // next one-file commit.
            self.remove_superseded_files()?;
            self.warm_text_indexes()?;
            return Ok(false);
        }
        self.compact()?;
        // The generation before the merge is not kept for its readers as a commit's is:
        // at a million chunks it is 2 GB that doubled the index on disk until the next
        // commit, and unlinking it in the background then slowed the two commits after
        // the build (an edit 0.13 s).
        self.remove_superseded_files()?;
        Ok(true)
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
            self.merge(run)?;
            budget = budget.saturating_sub(size.max(1));
            merges += 1;
        }
        Ok(merges)
    }

    /// The graph the merge of `run` starts from: the member with the most live chunks whose
    /// graph is a graph file, its live rows mapped to their rows in the merged segment.
    /// Only a graph that keeps most of its rows qualifies: one that lost more than
    /// [`MAX_SEEDED_DELETED_SHARE`] would leave holes its neighbours routed through.
    fn graph_seed(&self, run: Range<usize>) -> Result<Option<GraphSeed>> {
        let members = &self.segs.segments()[run];
        let mut best: Option<(usize, usize)> = None;
        for (j, seg) in members.iter().enumerate() {
            let m = seg.meta();
            let share = m.deleted as f64 / m.rows.max(1) as f64;
            if m.graph_file.is_none() || share > MAX_SEEDED_DELETED_SHARE {
                continue;
            }
            if best.is_none_or(|(_, live)| seg.live() > live) {
                best = Some((j, seg.live()));
            }
        }
        let Some((j, _)) = best else {
            return Ok(None);
        };
        let seg = &members[j];
        let Some(file) = seg.graph_file()? else {
            return Ok(None);
        };
        let offset: usize = members[..j].iter().map(|s| s.live()).sum();
        let rows = (0..seg.store().len())
            .map(|r| seg.live_index(r).map(|i| (offset + i) as u32))
            .collect();
        Ok(Some(GraphSeed {
            layers: file.layers(),
            rows,
        }))
    }

    /// The live chunks of `members` (adjacent segments, the first at position `base`), in
    /// order: their records as their stores hold them, text keys and where their token
    /// codes are read from. What a merge and a fold write again. `docs` (ordered by key)
    /// gives the titles a segment written before text keys needs to compute its keys.
    fn carried<'a>(
        &self,
        members: &'a [Segment],
        base: usize,
        docs: &[DocRecord],
    ) -> Result<Carried<'a>> {
        let dir = &self.dir;
        let live: usize = members.iter().map(|s| s.live()).sum();
        let mut out = Carried {
            chunks: Vec::with_capacity(live),
            keys: Vec::with_capacity(live),
            codes: Vec::new(),
        };
        let title = |key: &str| {
            docs.binary_search_by(|d| d.key.as_str().cmp(key))
                .map_or("", |i| docs[i].title.as_str())
        };
        let mut pos = base;
        for seg in members {
            let seg_keys = seg.text_keys(dir)?;
            let store = seg.store();
            for i in 0..seg.live() {
                let row = seg.live_row(i);
                out.keys.push(match &seg_keys {
                    Some(k) => k.get(row).copied().unwrap_or_default(),
                    // A segment written before text keys: its records give them.
                    None => {
                        let r = store.get(row)?;
                        super::commit::text_key(&crate::chunk::contextual_text(
                            title(&r.doc),
                            r.heading.as_deref(),
                            &r.text,
                        ))
                    }
                });
                out.chunks
                    .push(ChunkEntry::Encoded(store.id_at(row), store.encoded(row)?));
                if self.manifest.token_codes {
                    out.codes.push(Codes::Old(pos));
                }
                pos += 1;
            }
        }
        Ok(out)
    }

    /// Writes segment `id`: the live chunks of the current last segment, then a commit's new
    /// chunks (`records`, ids above every existing one, with their `vecs`, `codes` and text
    /// `keys`), its graph started from the last segment's so that only the new chunks are
    /// inserted (built from nothing when the last segment had none). The caller lists it in
    /// the last segment's place ([`fold_target`]).
    pub(super) fn write_fold(
        &self,
        id: u64,
        docs: &[DocRecord],
        new: (Vec<ChunkRecord>, Vec<f32>, Vec<Codes>, Vec<u64>),
    ) -> Result<(SegmentMeta, Segment)> {
        let (new_records, vecs, new_codes, new_keys) = new;
        let last = self.segs.segments().len().saturating_sub(1);
        let members = &self.segs.segments()[last..];
        let keys_complete = new_keys.len() == new_records.len();
        let Carried {
            mut chunks,
            mut keys,
            mut codes,
        } = self.carried(members, self.segs.base_of(last), docs)?;
        chunks.extend(new_records.iter().map(ChunkEntry::Record));
        codes.extend(new_codes);
        if keys_complete {
            keys.extend(new_keys);
        } else {
            keys.clear();
        }
        let (_, seg) = self.write_segment_without_graph(
            id,
            &chunks,
            SegmentVectors::Appended(members, vecs),
            &codes,
            &keys,
        )?;
        // The chunks are written: the graph is built without their records in memory, and
        // the seed's links are read only now, not held through the write (at a million
        // rows they are a few hundred megabytes at the build's memory peak).
        drop((chunks, codes, keys));
        drop(new_records);
        let seed = self.graph_seed(last..last + 1)?;
        self.add_graph(seg, seed)
    }

    /// Merges the segments `run` (adjacent, in id order) into one and commits the
    /// generation that lists it in their place.
    fn merge(&mut self, run: Range<usize>) -> Result<()> {
        let dir = self.dir.clone();
        let gen = self.manifest.generation + 1;
        self.progress.start("merge", 0);
        let members = &self.segs.segments()[run.clone()];
        let base = self.segs.base_of(run.start);
        let Carried {
            chunks,
            keys,
            codes,
        } = self.carried(members, base, self.documents()?)?;
        let id = self.manifest.next_segment.max(1);
        let (_, seg) = self.write_segment_without_graph(
            id,
            &chunks,
            SegmentVectors::LiveRowsOf(members),
            &codes,
            &keys,
        )?;
        drop((chunks, codes, keys));
        // Read after the write, as a fold does.
        let seed = self.graph_seed(run.clone())?;
        let (meta, _) = self.add_graph(seg, seed)?;

        let mut metas = self.manifest.segments.clone();
        if !self.manifest.segmented {
            metas = artifacts::segments_of(&self.manifest);
        }
        metas.splice(run, std::iter::once(meta));
        let mut next = self.manifest.clone();
        next.generation = gen;
        next.segments = metas;
        next.next_segment = id + 1;
        // The tables do not change: the new generation lists the same base and deltas.
        next.table_base = Some(self.manifest.table_chain().0);
        let pending = self.write_pending(&mut next)?;
        // The commit point: the lexical index records the generation (nothing else of it
        // changes), then the manifest is renamed into place.
        self.lexical.writer()?.commit(gen)?;
        std::fs::rename(&pending, dir.join(MANIFEST)).at(dir.join(MANIFEST))?;
        sync_dir(&dir)?;
        self.lexical.reload()?;
        self.segs = Segments::open(&dir, &next.segments, next.dims(), false)?;
        self.manifest = next;
        // The tables, and so their pinned files, are the same.
        self.remove_stray_files(true)?;
        self.progress.finish();
        Ok(())
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
            graph_file: None,
            deletes: None,
            keys: None,
            sq8: None,
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
        assert_eq!(plan(&big, MERGE_BUDGET), Some(0..8));
        let bigger: Vec<SegmentMeta> = (0..8).map(|i| seg(i, 200_000, 0)).collect();
        assert_eq!(
            plan(&bigger, MERGE_BUDGET),
            None,
            "1.6M chunks wait for compact"
        );
    }

    fn graphed(id: u64, rows: u64, deleted: u64) -> SegmentMeta {
        SegmentMeta {
            graph_file: Some(format!("dense/s{id}.graph")),
            ..seg(id, rows, deleted)
        }
    }

    #[test]
    fn a_checkpoint_folds_into_a_last_segment_at_most_ten_times_its_size() {
        let segs = vec![seg(1, 50, 0), graphed(2, 100_000, 0)];
        let fold = |new| fold_target(&segs, &segs, new, 5_000);
        assert_eq!(fold(4_999), None, "too few for a graph of their own");
        assert_eq!(fold(9_999), None, "more than ten times the new chunks");
        assert_eq!(fold(10_000), Some(1), "ten times");
        // A last segment too small for a graph joins the new one's graph; one without a
        // graph that is not small (an index from before graph files), too many deleted
        // rows, deletions in this commit, or the result past MAX_SEGMENT: no fold.
        let small = vec![graphed(1, 100_000, 0), seg(2, 19_999, 0)];
        assert_eq!(fold_target(&small, &small, 20_000, 20_000), Some(1));
        let exact = vec![graphed(1, 100_000, 0), seg(2, 100_000, 0)];
        assert_eq!(fold_target(&exact, &exact, 50_000, 20_000), None);
        let holed = vec![graphed(2, 100_000, 10_001)];
        assert_eq!(fold_target(&holed, &holed, 50_000, 20_000), None);
        let after = vec![graphed(2, 100_000, 5)];
        let before = vec![graphed(2, 100_000, 0)];
        assert_eq!(fold_target(&before, &after, 50_000, 20_000), None);
        let big = vec![graphed(2, 1_900_000, 0)];
        assert_eq!(fold_target(&big, &big, 200_000, 20_000), None);
        assert_eq!(
            fold_target(&big, &big, 100_000, 20_000),
            None,
            "2M is the cap"
        );
        assert_eq!(
            fold_target(&big, &big, 99_999, 20_000),
            None,
            "over ten times"
        );
        // A last segment wholly deleted in this commit leaves `after` without it.
        let gone = vec![graphed(1, 100_000, 0)];
        assert_eq!(fold_target(&gone, &[], 50_000, 20_000), None);
    }
}
