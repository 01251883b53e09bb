//! A segment's HNSW graph as flat arrays in one memory-mapped file, searched in place.
//!
//! hnsw_rs builds the graph (parallel insertion); its reload, though, rebuilds every point
//! and neighbour list as owned objects: 4.5 KB of memory and about 10 µs per point, so a
//! cold query on a 100,000-chunk segment spent 1 s and 450 MB loading the graph before it
//! answered, and a million chunks would not open on this machine's memory. Here each layer
//! is a CSR table of local row numbers (offsets, then neighbours, `u32`), the vectors are
//! the segment's own vector file, and the search (greedy descent through the upper layers,
//! then a beam of width `ef` on layer 0, [Malkov & Yashunin 2018]) reads both through the
//! page cache: opening costs a header read, a search touches only the pages it visits.
//!
//! Layout (little endian, every section 8-byte aligned): `PPGRAPH1`, rows `u64`, top layer
//! `u32`, entry row `u32`; each row's level (`u8`, padded); layer 0's offsets (`rows + 1`
//! `u32`) and neighbours; then for each upper layer its member rows (sorted), offsets and
//! neighbours, each preceded by its length.
//!
//! Not for: building a graph ([`crate::graph_build`]) or choosing between a graph
//! and an exact scan ([`crate::segment`]).

use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use crate::dense::{Graph, OrdF32};
use crate::embed::dot;
use crate::error::{Error, Result};
use crate::graph_build::Layers;
use crate::store::{ChunkStore, VectorFile};

const MAGIC: &[u8; 8] = b"PPGRAPH1";

/// One layer: `(members, offsets, neighbours)` as byte ranges of the file (`members`
/// empty for layer 0, where every row is a member).
#[derive(Debug, Clone, Copy)]
struct Layer {
    members: (usize, usize),
    offsets: (usize, usize),
    neighbours: (usize, usize),
}

/// A graph file, memory-mapped.
pub struct GraphFile {
    path: PathBuf,
    map: memmap2::Mmap,
    rows: usize,
    entry: u32,
    layers: Vec<Layer>,
}

fn push_u32s(out: &mut Vec<u8>, v: &[u32]) {
    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

impl GraphFile {
    /// Writes `g`, an hnsw_rs graph keyed by chunk id, as the graph of the segment whose
    /// chunk store is `store` (rows are its positions), fsynced. Kept for graphs built before
    /// [`crate::graph_build`] and for the `bench` comparison.
    pub fn write(g: &Graph, store: &ChunkStore, path: &Path) -> Result<()> {
        let rows = store.len();
        let pi = g.get_point_indexation();
        let top = g.get_max_level_observed() as usize;
        let mut levels = vec![0u8; rows];
        let mut layers: Vec<Vec<(u32, Vec<u32>)>> = vec![Vec::new(); top + 1];
        let row_of = |id: usize| store.position(id as u64).map(|r| r as u32);
        for p in pi {
            let Some(row) = row_of(p.get_origin_id()) else {
                continue;
            };
            levels[row as usize] = p.get_point_id().0;
            for (layer, nbs) in p
                .get_neighborhood_id()
                .into_iter()
                .enumerate()
                .take(top + 1)
            {
                let list: Vec<u32> = nbs.iter().filter_map(|n| row_of(n.d_id)).collect();
                layers[layer].push((row, list));
            }
        }
        let entry = pi
            .get_layer_iterator(top)
            .next()
            .and_then(|p| row_of(p.get_origin_id()))
            .unwrap_or(0);
        let built = Layers {
            levels,
            entry,
            layers,
        };
        GraphFile::write_layers(&built, rows, path)
    }

    /// Writes `g` as the graph of a segment of `rows` rows, fsynced.
    pub fn write_layers(g: &Layers, rows: usize, path: &Path) -> Result<()> {
        let top = g.layers.len().saturating_sub(1);
        let mut level = g.levels.clone();
        level.resize(rows, 0);
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(rows as u64).to_le_bytes());
        out.extend_from_slice(&(top as u32).to_le_bytes());
        out.extend_from_slice(&g.entry.to_le_bytes());
        out.extend_from_slice(&level);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        for (l, layer) in g.layers.iter().enumerate() {
            let mut list: Vec<&(u32, Vec<u32>)> = layer.iter().collect();
            list.sort_by_key(|x| x.0);
            let mut offsets = Vec::with_capacity(list.len() + 1);
            let mut nbs = Vec::new();
            if l == 0 {
                // Every row has an entry on layer 0 (an empty list for a row the graph
                // lacks), so that a row is its own index.
                let mut it = list.into_iter().peekable();
                for r in 0..rows as u32 {
                    offsets.push(nbs.len() as u32);
                    if it.peek().is_some_and(|x| x.0 == r) {
                        if let Some((_, l)) = it.next() {
                            nbs.extend_from_slice(l);
                        }
                    }
                }
                offsets.push(nbs.len() as u32);
            } else {
                let members: Vec<u32> = list.iter().map(|x| x.0).collect();
                for (_, l) in list {
                    offsets.push(nbs.len() as u32);
                    nbs.extend_from_slice(l);
                }
                offsets.push(nbs.len() as u32);
                push_u32s(&mut out, &members);
            }
            push_u32s(&mut out, &offsets);
            push_u32s(&mut out, &nbs);
        }
        crate::store::write_synced(path, &out)
    }

    /// The graph as [`Layers`], to seed a merge's graph ([`crate::graph_build`]).
    pub fn layers(&self) -> Layers {
        let levels = self.map[24..24 + self.rows].to_vec();
        let mut layers = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            let members: Vec<u32> = if l == 0 {
                (0..self.rows as u32).collect()
            } else {
                self.u32s(layer.members).to_vec()
            };
            layers.push(
                members
                    .into_iter()
                    .map(|r| (r, self.neighbours(l, r).to_vec()))
                    .collect(),
            );
        }
        Layers {
            levels,
            entry: self.entry,
            layers,
        }
    }

    /// Maps and checks a graph file written by [`GraphFile::write`] for a segment of `rows`
    /// rows.
    pub fn open(path: &Path, rows: usize) -> Result<GraphFile> {
        let map = crate::store::map_file(path)?;
        let bad = |what: &str| Error::corrupt(path, format!("graph file {what}"));
        if map.len() < 24 || &map[..8] != MAGIC {
            return Err(bad("has a bad magic number"));
        }
        let u64_at = |o: usize| -> Result<u64> {
            map.get(o..o + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| bad("is truncated"))
        };
        let n = u64_at(8)? as usize;
        let top = u32::from_le_bytes([map[16], map[17], map[18], map[19]]) as usize;
        let entry = u32::from_le_bytes([map[20], map[21], map[22], map[23]]);
        if n != rows || (entry as usize) >= rows.max(1) || top > 64 {
            return Err(bad(&format!(
                "describes {n} rows (entry {entry}, {top} layers) for a segment of {rows}"
            )));
        }
        let mut pos = (24 + n).div_ceil(8) * 8;
        let section = |pos: &mut usize| -> Result<(usize, usize)> {
            let len = u64_at(*pos)? as usize;
            let start = *pos + 8;
            let end = start
                .checked_add(len.checked_mul(4).ok_or_else(|| bad("is damaged"))?)
                .filter(|&e| e <= map.len())
                .ok_or_else(|| bad("is truncated"))?;
            *pos = end.div_ceil(8) * 8;
            Ok((start, end))
        };
        let mut layers = Vec::with_capacity(top + 1);
        for l in 0..=top {
            let members = if l == 0 { (0, 0) } else { section(&mut pos)? };
            let offsets = section(&mut pos)?;
            let neighbours = section(&mut pos)?;
            layers.push(Layer {
                members,
                offsets,
                neighbours,
            });
        }
        let g = GraphFile {
            path: path.to_path_buf(),
            map,
            rows,
            entry,
            layers,
        };
        g.check()?;
        Ok(g)
    }

    /// Offsets ascend within their neighbour list and name rows of the segment.
    fn check(&self) -> Result<()> {
        for (l, layer) in self.layers.iter().enumerate() {
            let offs = self.u32s(layer.offsets);
            let nbs = self.u32s(layer.neighbours);
            let members = if l == 0 {
                self.rows
            } else {
                self.u32s(layer.members).len()
            };
            if offs.len() != members + 1
                || offs.windows(2).any(|w| w[0] > w[1])
                || offs.last().is_some_and(|&e| e as usize != nbs.len())
            {
                return Err(Error::corrupt(
                    &self.path,
                    format!("graph file layer {l} is damaged"),
                ));
            }
        }
        Ok(())
    }

    /// The `u32` values of a section.
    fn u32s(&self, (start, end): (usize, usize)) -> &[u32] {
        let bytes = &self.map[start..end];
        // SAFETY: the map is page-aligned and every section starts at a multiple of 8, so
        // `bytes` is 4-byte aligned; any bit pattern is a valid u32; the file is little
        // endian, as this crate only maps it on little-endian targets (checked at compile
        // time below).
        unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const u32, bytes.len() / 4) }
    }

    /// The neighbours of `row` on layer `l` (none when it is not on that layer).
    fn neighbours(&self, l: usize, row: u32) -> &[u32] {
        let Some(layer) = self.layers.get(l) else {
            return &[];
        };
        let idx = if l == 0 {
            row as usize
        } else {
            match self.u32s(layer.members).binary_search(&row) {
                Ok(i) => i,
                Err(_) => return &[],
            }
        };
        let offs = self.u32s(layer.offsets);
        let nbs = self.u32s(layer.neighbours);
        match (offs.get(idx), offs.get(idx + 1)) {
            (Some(&s), Some(&e)) => nbs.get(s as usize..e as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// A neighbour row that names a row of the segment (a damaged file's others are
    /// skipped rather than read past the vectors).
    fn valid(&self, r: u32) -> bool {
        (r as usize) < self.rows
    }

    /// Rows of the segment it was written for.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The best `k` rows for `query` among those `pass` lets through (all without it):
    /// `(row, cosine)`, best first. Rows that do not pass are still walked through, so a
    /// filter that keeps few rows needs a wider `ef` (the caller widens it).
    pub fn search(
        &self,
        vectors: &VectorFile,
        query: &[f32],
        k: usize,
        ef: usize,
        pass: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, f32)> {
        self.search_by(&F32Rows { vectors, query }, k, ef, pass)
    }

    /// [`GraphFile::search`] with the similarity of the query to a row given by `scorer`
    /// (an approximate one, [`crate::sq8`], whose candidates the caller rescores).
    pub fn search_by<S: RowScorer>(
        &self,
        scorer: &S,
        k: usize,
        ef: usize,
        pass: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, f32)> {
        if self.rows == 0 || k == 0 {
            return Vec::new();
        }
        let sim = |r: u32| scorer.score(r);
        let ef = ef.max(k);
        let ok = |r: u32| pass.is_none_or(|p| p(r));
        let (mut cur, mut best) = (self.entry, sim(self.entry));
        for l in (1..self.layers.len()).rev() {
            loop {
                let mut moved = false;
                for &nb in self.neighbours(l, cur) {
                    if !self.valid(nb) {
                        continue;
                    }
                    let s = sim(nb);
                    if s > best {
                        (cur, best, moved) = (nb, s, true);
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        VisitedRows::with(self.rows, |visited| {
            self.beam(scorer, visited, cur, best, ef, k, &ok)
        })
    }

    /// Layer 0's beam search of width `ef` from `cur` (similarity `best`).
    #[allow(clippy::too_many_arguments)]
    fn beam<S: RowScorer>(
        &self,
        scorer: &S,
        visited: &mut VisitedRows,
        cur: u32,
        best: f32,
        ef: usize,
        k: usize,
        ok: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let sim = |r: u32| scorer.score(r);
        let mut seen = |r: u32| visited.insert(r);
        seen(cur);
        // Candidates best first; results worst first (a bounded min-heap of `ef`).
        let mut cands: BinaryHeap<(OrdF32, u32)> = BinaryHeap::new();
        let mut results: BinaryHeap<std::cmp::Reverse<(OrdF32, u32)>> = BinaryHeap::new();
        cands.push((OrdF32(best), cur));
        if ok(cur) {
            results.push(std::cmp::Reverse((OrdF32(best), cur)));
        }
        let mut fresh: Vec<u32> = Vec::with_capacity(64);
        while let Some((OrdF32(s), r)) = cands.pop() {
            let floor = results.peek().map_or(f32::NEG_INFINITY, |x| x.0 .0 .0);
            if results.len() >= ef && s < floor {
                break;
            }
            // The unvisited neighbours first, so that each one's row is requested from
            // memory while the previous one is scored (hnswlib does the same).
            fresh.clear();
            fresh.extend(
                self.neighbours(0, r)
                    .iter()
                    .copied()
                    .filter(|&nb| self.valid(nb) && !seen(nb)),
            );
            if let Some(&first) = fresh.first() {
                scorer.prefetch(first);
            }
            for (i, &nb) in fresh.iter().enumerate() {
                if let Some(&next) = fresh.get(i + 1) {
                    scorer.prefetch(next);
                }
                let s = sim(nb);
                let floor = results.peek().map_or(f32::NEG_INFINITY, |x| x.0 .0 .0);
                if results.len() < ef || s > floor {
                    cands.push((OrdF32(s), nb));
                    if ok(nb) {
                        results.push(std::cmp::Reverse((OrdF32(s), nb)));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<(u32, f32)> = results.into_iter().map(|x| (x.0 .1, x.0 .0 .0)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(k);
        out
    }
}

/// The rows a walk has visited: a bitset kept per thread and cleared word by word after
/// each search, so that a query on a million-row segment does not allocate and zero 125 KB.
struct VisitedRows {
    bits: Vec<u64>,
    touched: Vec<u32>,
}

thread_local! {
    static VISITED: std::cell::RefCell<VisitedRows> = const {
        std::cell::RefCell::new(VisitedRows { bits: Vec::new(), touched: Vec::new() })
    };
}

impl VisitedRows {
    /// Runs `f` with this thread's visited set sized for `rows` and empty (a fresh one when
    /// the thread's is in use).
    fn with<R>(rows: usize, f: impl FnOnce(&mut VisitedRows) -> R) -> R {
        VISITED.with(|cell| match cell.try_borrow_mut() {
            Ok(mut v) => {
                if v.bits.len() < rows.div_ceil(64) {
                    v.bits.resize(rows.div_ceil(64), 0);
                }
                let out = f(&mut v);
                let VisitedRows { bits, touched } = &mut *v;
                for &w in touched.iter() {
                    bits[w as usize] = 0;
                }
                touched.clear();
                out
            }
            Err(_) => f(&mut VisitedRows {
                bits: vec![0; rows.div_ceil(64)],
                touched: Vec::new(),
            }),
        })
    }

    /// Marks `r`; true when it was marked already (or lies outside the set).
    #[inline]
    fn insert(&mut self, r: u32) -> bool {
        let (w, b) = (r as usize / 64, 1u64 << (r % 64));
        match self.bits.get_mut(w) {
            Some(x) if *x & b == 0 => {
                if *x == 0 {
                    self.touched.push(w as u32);
                }
                *x |= b;
                false
            }
            _ => true,
        }
    }
}

/// How a graph walk scores a row against its query, and asks for a row's memory ahead of
/// scoring it.
pub trait RowScorer {
    /// The similarity of the query to `row`.
    fn score(&self, row: u32) -> f32;
    /// Hints the CPU to load what [`RowScorer::score`] will read for `row`; the walk calls
    /// it one neighbour ahead. Nothing by default.
    fn prefetch(&self, _row: u32) {}
}

/// Exact cosine against a segment's f32 vectors.
pub struct F32Rows<'a> {
    /// The segment's vectors.
    pub vectors: &'a VectorFile,
    /// The query (normalised).
    pub query: &'a [f32],
}

impl RowScorer for F32Rows<'_> {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        dot(self.query, self.vectors.row(row as usize))
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        prefetch_bytes(self.vectors.row_bytes(row as usize));
    }
}

/// Asks the CPU to load the first cache lines of `bytes` (a hint: it never faults, and the
/// hardware prefetcher follows a sequential read from there).
#[inline]
pub fn prefetch_bytes(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // Four lines: a 384-dimension f32 row is 24, and the first few are what the dot
        // product waits for before the hardware prefetcher takes over.
        for off in (0..bytes.len().min(256)).step_by(64) {
            // SAFETY: SSE is part of the x86_64 baseline; a prefetch of an address inside
            // a live slice reads nothing and cannot fault.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().add(off) as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

// The file is read in place as little-endian `u32`s.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "graph files are read as little-endian u32"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::{build_graph, exact_search, HnswParams};

    #[test]
    fn the_flat_graph_finds_what_the_exact_scan_finds_and_filters_inside() {
        let dir = tempfile::tempdir().unwrap();
        let dim = 32;
        let n = 3000;
        let vecs = crate::bench::clustered_vectors(n, dim, 30, 0.3, 7);
        let records: Vec<crate::store::ChunkRecord> = (0..n as u64)
            .map(|i| crate::store::ChunkRecord {
                id: 100 + i * 3,
                doc: format!("d{i}"),
                byte_range: (0, 1),
                line_range: (1, 1),
                heading: None,
                text: "x".into(),
            })
            .collect();
        crate::store::write_chunks(&dir.path().join("c.bin"), &records).unwrap();
        let store = ChunkStore::open(&dir.path().join("c.bin")).unwrap();
        let vf = VectorFile::from_vec(dim, vecs);
        let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
        let g = build_graph(&HnswParams::default(), &vf, &ids);
        GraphFile::write(&g, &store, &dir.path().join("g")).unwrap();
        let f = GraphFile::open(&dir.path().join("g"), n).unwrap();
        let queries = crate::bench::clustered_vectors(50, dim, 30, 0.3, 99);
        let (mut hit, mut hit_f, mut total) = (0, 0, 0);
        for q in queries.chunks(dim) {
            let exact: Vec<u32> = exact_search(&vf, q, 10)
                .iter()
                .map(|x| x.0 as u32)
                .collect();
            let got = f.search(&vf, q, 10, 128, None);
            assert_eq!(got.len(), 10);
            hit += got.iter().filter(|x| exact.contains(&x.0)).count();
            // Even rows only: the exact answer among them, and nothing else.
            let even = |r: u32| r.is_multiple_of(2);
            let rows: Vec<usize> = (0..n).filter(|r| r % 2 == 0).collect();
            let exact_f: Vec<u32> = crate::dense::exact_search_rows(&vf, &rows, q, 10)
                .iter()
                .map(|x| x.0 as u32)
                .collect();
            let got_f = f.search(&vf, q, 10, 256, Some(&even));
            assert!(got_f.iter().all(|x| x.0 % 2 == 0));
            hit_f += got_f.iter().filter(|x| exact_f.contains(&x.0)).count();
            total += 10;
        }
        assert!(hit * 100 >= total * 97, "recall {hit}/{total}");
        assert!(hit_f * 100 >= total * 95, "filtered recall {hit_f}/{total}");
        // Damage is an error naming the file, not a panic.
        let p = dir.path().join("g");
        let mut b = std::fs::read(&p).unwrap();
        b.truncate(b.len() / 2);
        std::fs::write(&p, &b).unwrap();
        assert!(GraphFile::open(&p, n).is_err());
        assert!(GraphFile::open(&dir.path().join("g-missing"), n).is_err());
    }
}
