//! Segments: the chunks of an index as a list of immutable parts, the way tantivy, Lucene
//! and Qdrant store an index that changes.
//!
//! A commit writes one new segment for the chunks it adds (their store, vectors, token
//! codes and, once the segment is big enough, its own HNSW graph) and, for each older
//! segment it deletes chunks from, a new deletion bitset; it never rewrites an older
//! segment's files. A merge ([`crate::engine`]'s merge policy, `pinpoint compact`) writes
//! the live chunks of several adjacent segments as one new segment. The manifest lists the
//! segments of its generation ([`SegmentMeta`]), so the one commit point stays the rename
//! of the manifest.
//!
//! The rest of the engine sees one chunk space: [`Segments`] numbers the *live* chunks of
//! all segments `0..len()` in chunk-id order (segments hold disjoint, increasing id ranges
//! because new chunks get new ids and merges join neighbours only), so the document table,
//! the neighbour table, the rerankers and selection address a chunk by one position, as
//! they did when a generation was one file of each kind.
//!
//! Not for: what a file of a segment holds (each file's own module: [`crate::store`],
//! [`crate::late`], [`crate::dense`]) or when segments merge (`engine/merge.rs`).

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dense::{exact_search_rows, search_graph_where, DenseIndex};
use crate::error::{Error, Result};
use crate::graph_file::GraphFile;
use crate::late::{ChunkCodes, PieceBook, TokenCodes};
use crate::sq8::{QueryCode, Sq8Vectors};
use crate::store::{ChunkRecord, ChunkStore, VectorFile};

mod row_files;
pub use row_files::{DeadRows, TextKeys};

/// One segment as the manifest records it: its files (relative to the index folder) and
/// its counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Its number, unique within the index (file names carry it).
    pub id: u64,
    /// Chunks written into it (live and deleted).
    pub rows: u64,
    /// Of those, deleted since.
    #[serde(default)]
    pub deleted: u64,
    /// The chunk store.
    pub chunks: String,
    /// The vectors.
    pub vectors: String,
    /// The token codes, when the index keeps them.
    #[serde(default)]
    pub codes: Option<String>,
    /// An hnsw_rs dump's basename in `dense/`: the graph of an index written before graph
    /// files (searched through hnsw_rs, loaded on first use).
    #[serde(default)]
    pub graph: Option<String>,
    /// The segment's graph file ([`crate::graph_file`]), when it is big enough for a
    /// graph (exact scan otherwise).
    #[serde(default)]
    pub graph_file: Option<String>,
    /// The deletion bitset of this generation, when chunks were deleted.
    #[serde(default)]
    pub deletes: Option<String>,
    /// The key of the text each chunk's vector was computed from ([`TextKeys`]), so that
    /// a commit finds a chunk it can reuse without reading every chunk (none: a segment
    /// from before they were kept).
    #[serde(default)]
    pub keys: Option<String>,
    /// The int8 copy of the vectors that its graph searches walk ([`crate::sq8`]), in an
    /// index created with that precision.
    #[serde(default)]
    pub sq8: Option<String>,
}

impl SegmentMeta {
    /// Live chunks.
    pub fn live(&self) -> u64 {
        self.rows.saturating_sub(self.deleted)
    }

    /// Every file of the segment, relative to the index folder.
    pub fn files(&self) -> Vec<String> {
        let mut v = vec![self.chunks.clone(), self.vectors.clone()];
        v.extend(self.codes.clone());
        if let Some(g) = &self.graph {
            v.push(format!("dense/{g}.hnsw.graph"));
            v.push(format!("dense/{g}.hnsw.data"));
        }
        v.extend(self.graph_file.clone());
        v.extend(self.deletes.clone());
        v.extend(self.keys.clone());
        v.extend(self.sq8.clone());
        v
    }

    /// Whether it has a graph of either kind.
    pub fn has_graph(&self) -> bool {
        self.graph.is_some() || self.graph_file.is_some()
    }
}

/// The chunk store of segment `id`.
pub fn chunks_file(id: u64) -> String {
    format!("chunks/s{id}.bin")
}
/// The vector file of segment `id`.
pub fn vectors_file(id: u64) -> String {
    format!("dense/s{id}.vec")
}
/// The token codes of segment `id`.
pub fn codes_file(id: u64) -> String {
    format!("late/s{id}.tok")
}
/// The text keys of segment `id`.
pub fn keys_file(id: u64) -> String {
    format!("chunks/s{id}.keys")
}
/// The graph file of segment `id`.
pub fn sq8_file(id: u64) -> String {
    format!("dense/s{id}.sq8")
}

/// The graph file of segment `id`.
pub fn graph_file(id: u64) -> String {
    format!("dense/s{id}.graph")
}
/// The deletion bitset of segment `id` as of generation `gen`.
pub fn deletes_file(id: u64, gen: u64) -> String {
    format!("del/s{id}.{gen}.bin")
}

/// One opened segment.
pub struct Segment {
    meta: SegmentMeta,
    store: ChunkStore,
    dense: DenseIndex,
    /// Where its graph file is; mapped by the first search that needs it.
    flat_path: Option<std::path::PathBuf>,
    flat: std::sync::OnceLock<Option<GraphFile>>,
    /// The int8 vectors its graph walks, when the index keeps them.
    sq8: Option<Sq8Vectors>,
    codes: TokenCodes,
    dead: Option<DeadRows>,
    /// The local row of each live chunk, when some are deleted (else row = live index).
    live_rows: Option<Vec<u32>>,
}

/// The widths of a segment's rows: its vectors' dimension, and its token codes' (the
/// model's dimension for an index whose codes are signs of every dimension, the bits of its
/// projection otherwise, [`crate::late::TokenProjection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Floats per vector.
    pub vectors: usize,
    /// Dimensions a token code encodes (one bit each).
    pub codes: usize,
}

impl Segment {
    /// Opens the segment `meta` describes in `dir`; `mapped`: a reader's graph keeps its
    /// vectors in the page cache.
    pub fn open(dir: &Path, meta: &SegmentMeta, dims: Dims, mapped: bool) -> Result<Segment> {
        let dim = dims.vectors;
        let store = ChunkStore::open(&dir.join(&meta.chunks))?;
        let vectors = VectorFile::open(&dir.join(&meta.vectors), dim)?;
        if vectors.len() != store.len() || store.len() as u64 != meta.rows {
            return Err(Error::corrupt(
                dir.join(&meta.vectors),
                format!(
                    "{} vectors and {} chunks in a segment of {} rows",
                    vectors.len(),
                    store.len(),
                    meta.rows
                ),
            ));
        }
        let codes = match &meta.codes {
            Some(c) => {
                let t = TokenCodes::open(&dir.join(c), dims.codes)?;
                if t.len() != store.len() {
                    return Err(Error::corrupt(
                        dir.join(c),
                        format!(
                            "token codes of {} chunks for {} chunks",
                            t.len(),
                            store.len()
                        ),
                    ));
                }
                t
            }
            None => TokenCodes::empty(dims.codes),
        };
        let dense = match &meta.graph {
            Some(g) => DenseIndex::with_dump(vectors, &dir.join("dense"), g, mapped),
            None => DenseIndex::new(vectors, None),
        };
        let dead = match &meta.deletes {
            Some(d) => Some(DeadRows::read(&dir.join(d), store.len())?),
            None => None,
        };
        let rows = store.len();
        let mut seg = Segment::assemble(meta.clone(), store, dense, codes, dead);
        seg.flat_path = meta.graph_file.as_ref().map(|f| dir.join(f));
        if let Some(f) = &meta.sq8 {
            seg.sq8 = Some(Sq8Vectors::open(&dir.join(f), rows, dim)?);
        }
        Ok(seg)
    }

    /// A segment over opened parts (a commit that has just written them).
    pub fn assemble(
        mut meta: SegmentMeta,
        store: ChunkStore,
        dense: DenseIndex,
        codes: TokenCodes,
        dead: Option<DeadRows>,
    ) -> Segment {
        let live_rows = dead.as_ref().map(|d| {
            (0..store.len() as u32)
                .filter(|&r| !d.contains(r as usize))
                .collect::<Vec<u32>>()
        });
        meta.deleted = dead.as_ref().map_or(0, |d| d.count() as u64);
        Segment {
            meta,
            store,
            dense,
            flat_path: None,
            flat: std::sync::OnceLock::new(),
            sq8: None,
            codes,
            dead,
            live_rows,
        }
    }

    /// This segment with its int8 vectors `rel` (relative to `dir`), written.
    pub fn with_sq8(mut self, dir: &Path, rel: String) -> Result<Segment> {
        self.sq8 = Some(Sq8Vectors::open(
            &dir.join(&rel),
            self.store.len(),
            self.dense.vectors().dim(),
        )?);
        self.meta.sq8 = Some(rel);
        Ok(self)
    }

    /// This segment with its graph file `rel` (relative to `dir`), written.
    pub fn with_graph_file(mut self, dir: &Path, rel: String) -> Segment {
        self.flat_path = Some(dir.join(&rel));
        self.meta.graph_file = Some(rel);
        self
    }

    /// Its graph file, mapped on first use. `None`: no graph, or (a reader that kept an old
    /// generation while the writer moved on) its file was removed, and the segment is
    /// scanned exactly instead.
    pub fn graph_file(&self) -> Result<Option<&GraphFile>> {
        if let Some(g) = self.flat.get() {
            return Ok(g.as_ref());
        }
        let g = match &self.flat_path {
            Some(p) if p.is_file() => Some(GraphFile::open(p, self.store.len())?),
            _ => None,
        };
        Ok(self.flat.get_or_init(|| g).as_ref())
    }

    /// What the manifest records of it.
    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// Its chunk store (all rows, deleted ones included).
    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    /// Its dense index (vectors of all rows, graph when built).
    pub fn dense(&self) -> &DenseIndex {
        &self.dense
    }

    /// Its dense index, to take the graph out (a merge extends it).
    pub fn dense_mut(&mut self) -> &mut DenseIndex {
        &mut self.dense
    }

    /// Its token codes (all rows).
    pub fn codes(&self) -> &TokenCodes {
        &self.codes
    }

    /// Its text keys, in row order, when it keeps them (read from disk on each call: only
    /// a commit or a merge asks).
    pub fn text_keys(&self, dir: &Path) -> Result<Option<Vec<u64>>> {
        match &self.meta.keys {
            Some(k) => Ok(Some(TextKeys::read(&dir.join(k), self.store.len())?)),
            None => Ok(None),
        }
    }

    /// Its deleted rows.
    pub fn dead(&self) -> Option<&DeadRows> {
        self.dead.as_ref()
    }

    /// Live chunks.
    pub fn live(&self) -> usize {
        self.live_rows.as_ref().map_or(self.store.len(), Vec::len)
    }

    /// The local row of its `i`-th live chunk.
    pub fn live_row(&self, i: usize) -> usize {
        self.live_rows.as_ref().map_or(i, |v| v[i] as usize)
    }

    /// The live index of local row `row` (`None` when deleted).
    pub fn live_index(&self, row: usize) -> Option<usize> {
        match &self.live_rows {
            None => Some(row),
            Some(v) => v.binary_search(&(row as u32)).ok(),
        }
    }

    /// Whether the graph holds points that are not live chunks of this segment: deleted
    /// rows, or points a merge kept from the graph it started from.
    fn has_tombstones(&self, g: &crate::dense::Graph) -> bool {
        self.dead.is_some() || g.get_nb_point() > self.store.len()
    }

    /// Whether chunk `id` is a live chunk of this segment.
    pub fn holds(&self, id: u64) -> bool {
        self.store
            .position(id)
            .is_some_and(|r| self.dead.as_ref().is_none_or(|d| !d.contains(r)))
    }

    /// Top `k` live chunks of this segment: `(chunk id, cosine)`, best first; `pass`
    /// narrows them further (a metadata filter).
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        pass: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<(u64, f32)>> {
        let live = |id: u64| self.holds(id) && pass.is_none_or(|p| p(id));
        if let Some(f) = self.graph_file()? {
            let row_ok = |r: u32| {
                self.dead.as_ref().is_none_or(|d| !d.contains(r as usize))
                    && pass.is_none_or(|p| p(self.store.id_at(r as usize)))
            };
            let filtered = pass.is_some() || self.dead.is_some();
            let filter = filtered.then_some(&row_ok as &dyn Fn(u32) -> bool);
            let vectors = self.dense.vectors();
            let rows = match &self.sq8 {
                // The walk on int8 scores; its `ef` candidates rescored exactly.
                Some(q8) => {
                    let scorer = crate::sq8::Sq8Rows {
                        codes: q8,
                        query: QueryCode::new(query),
                    };
                    let mut c = f.search_by(&scorer, ef.max(k), ef, filter);
                    for x in &mut c {
                        x.1 = crate::embed::dot(query, vectors.row(x.0 as usize));
                    }
                    c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    c.truncate(k);
                    c
                }
                None => f.search(vectors, query, k, ef, filter),
            };
            if rows.len() < k && rows.len() < self.live() {
                // The walk came back short: fewer than `k` of this segment's rows pass a
                // filter, or the walk missed some (a graph is approximate). An exact scan
                // of the passing rows answers both, so `k` hits come back whenever `k`
                // pass. It costs one pass over the segment's rows, paid only by a filter
                // that passes under `k` of them (one under
                // [`crate::dense::EXACT_FILTER_SHARE`] of the index is scanned anyway).
                return Ok(self.exact_where(query, k, pass));
            }
            return Ok(rows
                .into_iter()
                .map(|(r, s)| (self.store.id_at(r as usize), s))
                .collect());
        }
        match self.dense.graph()? {
            Some(g) => {
                let filtered = pass.is_some() || self.has_tombstones(g);
                Ok(search_graph_where(
                    g,
                    query,
                    k,
                    ef,
                    filtered.then_some(&live),
                ))
            }
            None => Ok(self.exact_where(query, k, pass)),
        }
    }

    /// Exact top `k` live chunks that `pass` lets through: `(chunk id, cosine)`, best first.
    fn exact_where(
        &self,
        query: &[f32],
        k: usize,
        pass: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<(u64, f32)> {
        let v = self.dense.vectors();
        let rows: Vec<usize> = (0..self.live())
            .map(|i| self.live_row(i))
            .filter(|&r| pass.is_none_or(|p| p(self.store.id_at(r))))
            .collect();
        exact_search_rows(v, &rows, query, k)
            .into_iter()
            .map(|(r, s)| (self.store.id_at(r), s))
            .collect()
    }
}

/// The segments of one generation, seen as one space of live chunk positions.
pub struct Segments {
    segs: Vec<Segment>,
    /// The first position of each segment.
    bases: Vec<usize>,
    /// The first chunk id of each segment (0 for an empty one).
    first_ids: Vec<u64>,
    len: usize,
    dim: usize,
}

impl Segments {
    /// No segments.
    pub fn empty(dim: usize) -> Segments {
        Segments::new(Vec::new(), dim)
    }

    /// Opens the segments `metas` describe, in order.
    pub fn open(dir: &Path, metas: &[SegmentMeta], dims: Dims, mapped: bool) -> Result<Segments> {
        let segs = metas
            .iter()
            .map(|m| Segment::open(dir, m, dims, mapped))
            .collect::<Result<Vec<_>>>()?;
        let s = Segments::new(segs, dims.vectors);
        s.check_order(dir)?;
        Ok(s)
    }

    /// Segments over opened parts, in id order.
    pub fn new(segs: Vec<Segment>, dim: usize) -> Segments {
        let mut bases = Vec::with_capacity(segs.len());
        let mut first_ids = Vec::with_capacity(segs.len());
        let mut len = 0;
        for s in &segs {
            bases.push(len);
            first_ids.push(if s.store.is_empty() {
                0
            } else {
                s.store.id_at(0)
            });
            len += s.live();
        }
        Segments {
            segs,
            bases,
            first_ids,
            len,
            dim,
        }
    }

    /// Segments must hold disjoint, increasing id ranges (a damaged manifest that lists
    /// them out of order would map positions to the wrong chunks).
    fn check_order(&self, dir: &Path) -> Result<()> {
        let mut last: Option<u64> = None;
        for s in &self.segs {
            if s.store.is_empty() {
                continue;
            }
            let (first, end) = (s.store.id_at(0), s.store.id_at(s.store.len() - 1));
            if last.is_some_and(|l| first <= l) {
                return Err(Error::corrupt(
                    dir.join(&s.meta.chunks),
                    "segments overlap in chunk ids (the manifest lists them out of order)",
                ));
            }
            last = Some(end);
        }
        Ok(())
    }

    /// The first position of segment `i` (the live chunks before it).
    pub fn base_of(&self, i: usize) -> usize {
        self.bases.get(i).copied().unwrap_or(self.len)
    }

    /// The segments, in id order.
    pub fn segments(&self) -> &[Segment] {
        &self.segs
    }

    /// Takes the segments out (a commit re-assembles the next generation's).
    pub fn into_segments(self) -> Vec<Segment> {
        self.segs
    }

    /// What the manifest records of each.
    pub fn metas(&self) -> Vec<SegmentMeta> {
        self.segs.iter().map(|s| s.meta.clone()).collect()
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Live chunks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no chunk is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment and local row of position `pos`.
    pub fn locate(&self, pos: usize) -> Option<(usize, usize)> {
        if pos >= self.len {
            return None;
        }
        let s = self.bases.partition_point(|&b| b <= pos).checked_sub(1)?;
        // Skip empty segments that share the base of the next one.
        let mut s = s;
        while s > 0 && self.bases[s] > pos {
            s -= 1;
        }
        let seg = &self.segs[s];
        Some((s, seg.live_row(pos - self.bases[s])))
    }

    /// The position of live chunk `id`.
    pub fn position(&self, id: u64) -> Option<usize> {
        let s = self
            .first_ids
            .partition_point(|&f| f <= id)
            .checked_sub(1)?;
        let seg = &self.segs[s];
        let row = seg.store.position(id)?;
        if seg.dead.as_ref().is_some_and(|d| d.contains(row)) {
            return None;
        }
        Some(self.bases[s] + seg.live_index(row)?)
    }

    /// The chunk id at position `pos` (0 out of range).
    pub fn id_at(&self, pos: usize) -> u64 {
        self.locate(pos)
            .map_or(0, |(s, r)| self.segs[s].store.id_at(r))
    }

    /// The chunk at position `pos`.
    pub fn get(&self, pos: usize) -> Result<ChunkRecord> {
        match self.locate(pos) {
            Some((s, r)) => self.segs[s].store.get(r),
            None => Err(Error::invalid(
                "chunk position",
                format!("{pos} is past the {} live chunks", self.len),
            )),
        }
    }

    /// The live chunk `id`.
    pub fn get_id(&self, id: u64) -> Result<Option<ChunkRecord>> {
        match self.position(id) {
            Some(p) => Ok(Some(self.get(p)?)),
            None => Ok(None),
        }
    }

    /// The vector of the chunk at `pos` (empty out of range).
    pub fn row(&self, pos: usize) -> &[f32] {
        self.locate(pos)
            .map_or(&[], |(s, r)| self.segs[s].dense.vectors().row(r))
    }

    /// The vectors of every live chunk, in position order, as one in-memory file: for
    /// tools and experiments that scan them all (a search reads each segment in place).
    pub fn live_vectors(&self) -> VectorFile {
        let mut v = Vec::with_capacity(self.len * self.dim);
        for p in 0..self.len {
            v.extend_from_slice(self.row(p));
        }
        VectorFile::from_vec(self.dim, v)
    }

    /// The token codes of the chunk at `pos` (empty when the index keeps none).
    pub fn codes(&self, pos: usize) -> ChunkCodes<'_> {
        match self.locate(pos) {
            Some((s, r)) if !self.segs[s].codes.is_empty() => self.segs[s].codes.codes(r),
            _ => ChunkCodes::own_only(1, &[]),
        }
    }

    /// The index's shared token codes ([`crate::late::share`]) for `pieces`: each piece's
    /// code from the first segment that holds one. A commit asks only for its own pieces,
    /// so a one-file commit reads a few hundred keys, not every segment's codebook. Any
    /// segment's code will do: a segment stores the codes its references name.
    pub fn piece_book(&self, code_dim: usize, pieces: impl Iterator<Item = u32>) -> PieceBook {
        let mut book = PieceBook::new(crate::late::code_bytes(code_dim));
        let mut seen = std::collections::HashSet::new();
        for p in pieces {
            if !seen.insert(p) {
                continue;
            }
            if let Some(code) = self.segs.iter().find_map(|s| s.codes.shared_code(p)) {
                book.insert(p, code);
            }
        }
        book
    }

    /// Token vectors kept, over the live and deleted chunks of every segment.
    pub fn tokens(&self) -> u64 {
        self.segs.iter().map(|s| s.codes.tokens()).sum()
    }

    /// Of [`Segments::tokens`], those stored as a reference to a shared code.
    pub fn token_references(&self) -> u64 {
        self.segs.iter().map(|s| s.codes.references()).sum()
    }

    /// Of [`Segments::tokens`], those stored as a borrow of a code the chunk before stores.
    pub fn token_borrows(&self) -> u64 {
        self.segs.iter().map(|s| s.codes.borrowed()).sum()
    }

    /// Lets the kernel drop the pages of every segment's vectors and token codes from this
    /// process's memory ([`VectorFile::release_pages`]): a commit calls it after the stages
    /// that read all of them, so that a long build does not hold the whole index resident.
    pub fn release_pages(&self) {
        for s in &self.segs {
            s.dense.vectors().release_pages();
            s.codes.release_pages();
        }
    }

    /// Loads every segment's graph now (a commit's neighbour search must not fail
    /// half-way).
    pub fn load_graphs(&self) -> Result<()> {
        for s in &self.segs {
            s.graph_file()?;
            s.dense.graph()?;
        }
        Ok(())
    }

    /// Whether any segment has a graph.
    pub fn has_graph(&self) -> bool {
        self.segs
            .iter()
            .any(|s| s.flat_path.is_some() || s.dense.has_graph())
    }

    /// Whether any segment's graph is mapped or in memory (a test of the lazy load).
    pub fn graph_loaded(&self) -> bool {
        self.segs
            .iter()
            .any(|s| s.flat.get().is_some_and(|g| g.is_some()) || s.dense.graph_loaded())
    }

    /// Top `k` live chunks for a normalised query: `(chunk id, cosine)`, best first. Each
    /// segment answers with its own top `k` (graph or exact scan, deleted chunks filtered
    /// inside the search so that `k` live ones come back), in parallel, and the lists merge.
    /// `ef` is a width for every graph, or the index's setting scaled to each graph's size
    /// ([`crate::dense::Ef`]).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<crate::dense::Ef>,
    ) -> Result<Vec<(u64, f32)>> {
        self.search_where(query, k, ef.into(), 1.0, None)
    }

    /// [`Segments::search`] among the chunks in `allowed` (a metadata filter): an exact
    /// scan of them when they are few (under [`crate::dense::EXACT_FILTER_SHARE`] of the
    /// live chunks), else a filtered graph search with `ef` widened by the inverse of their
    /// share.
    pub fn search_within(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<crate::dense::Ef>,
        allowed: &HashSet<u64>,
    ) -> Result<Vec<(u64, f32)>> {
        self.check_dim(query)?;
        let live = self.len.max(1);
        let share = allowed.len() as f64 / live as f64;
        if share < crate::dense::EXACT_FILTER_SHARE
            && allowed.len() <= crate::dense::EXACT_FILTER_MAX
        {
            let scored: Vec<(u64, f32)> = allowed
                .iter()
                .filter_map(|&id| {
                    let pos = self.position(id)?;
                    Some((id, crate::embed::dot(query, self.row(pos))))
                })
                .collect();
            return Ok(top(scored, k));
        }
        let pass = |id: u64| allowed.contains(&id);
        self.search_where(query, k, ef.into(), 1.0 / share.min(1.0), Some(&pass))
    }

    fn check_dim(&self, query: &[f32]) -> Result<()> {
        if query.len() != self.dim {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                got: query.len(),
            });
        }
        Ok(())
    }

    /// Each segment's graph is searched with `ef` at its size, times `widen` (a filter's
    /// inverse share), at most the live chunks.
    fn search_where(
        &self,
        query: &[f32],
        k: usize,
        ef: crate::dense::Ef,
        widen: f64,
        pass: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<(u64, f32)>> {
        use rayon::prelude::*;
        self.check_dim(query)?;
        let live = self.len.max(1);
        let lists = self
            .segs
            .par_iter()
            .filter(|s| s.live() > 0)
            .map(|s| {
                let ef = ((ef.at(s.store.len()).max(k) as f64 * widen).ceil() as usize).min(live);
                s.search(query, k, ef, pass)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(top(lists.into_iter().flatten().collect(), k))
    }

    /// Exact top `k` live chunks for a query: `(chunk id, cosine)`, best first (what a
    /// graph search's recall is measured against).
    pub fn exact(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        use rayon::prelude::*;
        let lists: Vec<Vec<(u64, f32)>> = self
            .segs
            .par_iter()
            .map(|s| {
                let rows: Vec<usize> = (0..s.live()).map(|i| s.live_row(i)).collect();
                exact_search_rows(s.dense.vectors(), &rows, query, k)
                    .into_iter()
                    .map(|(r, sc)| (s.store.id_at(r), sc))
                    .collect()
            })
            .collect();
        top(lists.into_iter().flatten().collect(), k)
    }

    /// Neighbours of the chunks at `rows` among all live chunks: `(position, cosine)`
    /// lists, best first, at most `m` each, the row itself among them when found (what
    /// [`crate::near::update`] expects). A segment with a graph is searched per row; one
    /// without is scored with one matrix product per block of rows.
    pub fn neighbours(
        &self,
        rows: &[usize],
        m: usize,
        ef: usize,
    ) -> Result<Vec<Vec<(usize, f32)>>> {
        use rayon::prelude::*;
        let mut queries = Vec::with_capacity(rows.len() * self.dim);
        for &p in rows {
            queries.extend_from_slice(self.row(p));
        }
        let mut out: Vec<Vec<(usize, f32)>> = vec![Vec::new(); rows.len()];
        for (si, seg) in self.segs.iter().enumerate() {
            if seg.live() == 0 {
                continue;
            }
            let flat = seg.graph_file()?;
            let lists: Vec<Vec<(usize, f32)>> = match (flat, seg.dense.graph()?) {
                (Some(f), _) => {
                    let row_ok = |r: u32| seg.dead.as_ref().is_none_or(|d| !d.contains(r as usize));
                    let filtered = seg.dead.is_some();
                    queries
                        .par_chunks(self.dim.max(1))
                        .map(|q| {
                            f.search(
                                seg.dense.vectors(),
                                q,
                                m,
                                ef.max(m),
                                filtered.then_some(&row_ok as &dyn Fn(u32) -> bool),
                            )
                            .into_iter()
                            .filter_map(|(r, s)| {
                                Some((self.bases[si] + seg.live_index(r as usize)?, s))
                            })
                            .collect()
                        })
                        .collect()
                }
                (None, Some(g)) => {
                    let live = |id: u64| seg.holds(id);
                    let filtered = seg.has_tombstones(g);
                    queries
                        .par_chunks(self.dim.max(1))
                        .map(|q| {
                            search_graph_where(g, q, m, ef.max(m), filtered.then_some(&live))
                                .into_iter()
                                .filter_map(|(id, s)| Some((self.position(id)?, s)))
                                .collect()
                        })
                        .collect()
                }
                (None, None) => {
                    // Deleted rows are scored too and dropped after: ask for that many more.
                    let extra = seg.dead.as_ref().map_or(0, DeadRows::count);
                    crate::dense::exact_neighbours_of(&queries, seg.dense.vectors(), m + extra)
                        .into_iter()
                        .map(|l| {
                            l.into_iter()
                                .filter_map(|(r, s)| Some((self.bases[si] + seg.live_index(r)?, s)))
                                .take(m)
                                .collect()
                        })
                        .collect()
                }
            };
            for (o, l) in out.iter_mut().zip(lists) {
                o.extend(l);
            }
        }
        for l in &mut out {
            l.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            l.truncate(m);
        }
        Ok(out)
    }
}

/// The best `k` of `v`, best first (ties by id).
fn top(mut v: Vec<(u64, f32)>, k: usize) -> Vec<(u64, f32)> {
    let by = |a: &(u64, f32), b: &(u64, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if v.len() > k {
        v.select_nth_unstable_by(k, by);
        v.truncate(k);
    }
    v.sort_by(by);
    v
}
