//! The dense (vector) index: an exact scan over the memory-mapped vectors, and an HNSW
//! graph (`hnsw_rs`) once the collection is large enough for the graph to pay off.
//!
//! Why both: on this hardware an exact, vectorised scan is as fast as HNSW up to tens of
//! thousands of vectors (docs/dependencies.md) and has perfect recall, while building the graph costs
//! minutes. The exact scan is also the oracle that HNSW recall is measured against.
//!
//! HNSW points are keyed by chunk id. There is no delete in `hnsw_rs`: a chunk that is gone
//! from the store is a tombstone, filtered out at search time; the graph is rebuilt when
//! tombstones pile up.
//!
//! Not for: the vectors' file format ([`crate::store`]) or deciding when a commit extends or rebuilds the graph ([`crate::engine`]).

use std::path::Path;

use hnsw_rs::prelude::*;

use crate::embed::dot;
use crate::error::{Error, Result};
use crate::store::{ChunkStore, VectorFile};

/// Cosine distance on L2-normalised vectors, clamped at zero.
///
/// `hnsw_rs`'s `DistDot` asserts (and panics) when rounding makes a normalised vector's dot
/// with itself exceed 1; clamping makes that harmless.
#[derive(Debug, Default, Clone, Copy)]
pub struct DotDistance;

impl Distance<f32> for DotDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// HNSW settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HnswParams {
    /// Neighbours per node.
    pub m: usize,
    /// Beam width while building.
    pub ef_construction: usize,
    /// Beam width while searching (raised to `k` when smaller), for a graph of up to
    /// [`EF_BASE_ROWS`] rows; a query widens it for larger graphs ([`Ef::Scaled`]).
    pub ef_search: usize,
    /// Below this many vectors no graph is built: the exact scan is as fast and exact.
    pub min_points: usize,
    /// Rebuild the graph instead of extending it when this share of its points are dead.
    pub max_tombstone_ratio: f32,
}

/// The beam width of a graph search.
///
/// Why scaled: at a fixed width a graph's recall falls as it grows. Measured on the scale
/// bench's vectors (`examples/dense_probe.rs`), recall@10 at width 128 was 0.991 at 100k
/// rows and 0.97 at 1M, where width 256 reached 0.99: the width that holds a recall
/// doubles for about every tenfold of rows, as the graph's diameter grows with the log of
/// its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ef {
    /// This width for every graph.
    Fixed(usize),
    /// This width for a graph of up to [`EF_BASE_ROWS`] rows; a larger graph's is this
    /// times `(rows / EF_BASE_ROWS)^log10(2)`: doubled at ten times the rows.
    Scaled(usize),
}

/// The graph size up to which [`Ef::Scaled`] is the index's width as set.
pub const EF_BASE_ROWS: usize = 100_000;

impl Ef {
    /// The width for a graph of `rows` rows.
    pub fn at(self, rows: usize) -> usize {
        match self {
            Ef::Fixed(ef) => ef,
            Ef::Scaled(ef) if rows <= EF_BASE_ROWS => ef,
            Ef::Scaled(ef) => {
                let f = (rows as f64 / EF_BASE_ROWS as f64).powf(std::f64::consts::LOG10_2);
                (ef as f64 * f).ceil() as usize
            }
        }
    }
}

impl From<usize> for Ef {
    fn from(ef: usize) -> Ef {
        Ef::Fixed(ef)
    }
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 128,
            min_points: 20_000,
            max_tombstone_ratio: 0.1,
        }
    }
}

/// The HNSW graph type used throughout.
pub type Graph = Hnsw<'static, f32, DotDistance>;

/// A dense index of one generation.
///
/// The graph of an opened generation is loaded on first use, not at open: a lexical query,
/// `stats`, or a filtered search that scans a few chunks exactly never pays for reading
/// and linking every vector of a large graph (hnsw_rs loads it into owned memory).
pub struct DenseIndex {
    vectors: VectorFile,
    graph: std::sync::OnceLock<Option<Graph>>,
    /// Where the graph's dump is, while it is not loaded: `(folder, basename)`.
    dump: Option<(std::path::PathBuf, String)>,
    /// Load the graph's vectors memory-mapped (readers) rather than copied (a writer,
    /// which extends the graph).
    mapped: bool,
}

impl DenseIndex {
    /// A dense index over `vectors`, with an optional graph in memory.
    pub fn new(vectors: VectorFile, graph: Option<Graph>) -> DenseIndex {
        DenseIndex {
            vectors,
            graph: std::sync::OnceLock::from(graph),
            dump: None,
            mapped: false,
        }
    }

    /// A dense index over `vectors` whose graph is the dump `basename` in `dir`, loaded
    /// when a search first needs it; with `mapped`, its vectors stay in the page cache
    /// (memory-mapped) instead of being copied: a reader's resident memory then grows with
    /// the parts of the graph its searches visit, not with the index.
    pub fn with_dump(vectors: VectorFile, dir: &Path, basename: &str, mapped: bool) -> DenseIndex {
        DenseIndex {
            vectors,
            graph: std::sync::OnceLock::new(),
            dump: Some((dir.to_path_buf(), basename.to_string())),
            mapped,
        }
    }

    /// The vectors, giving up the graph.
    pub fn into_vectors(self) -> VectorFile {
        self.vectors
    }

    /// The vectors.
    pub fn vectors(&self) -> &VectorFile {
        &self.vectors
    }

    /// Whether the generation has a graph (loaded or not).
    pub fn has_graph(&self) -> bool {
        self.dump.is_some() || self.graph.get().is_some_and(|g| g.is_some())
    }

    /// Whether the graph is in memory (a test of the lazy load).
    pub fn graph_loaded(&self) -> bool {
        self.graph.get().is_some_and(|g| g.is_some())
    }

    /// The graph, when one is built, loaded on first use.
    pub fn graph(&self) -> Result<Option<&Graph>> {
        if let Some(g) = self.graph.get() {
            return Ok(g.as_ref());
        }
        let loaded = match &self.dump {
            // A reader that kept an old generation open while the writer moved on two
            // generations finds its graph's files removed (its other files are mapped and
            // stay readable): it scans that segment exactly instead, slower but right.
            // `verify` still names a missing graph of the current generation.
            Some((dir, base)) if !self.mapped || dump_exists(dir, base) => {
                Some(load_graph_with(dir, base, self.mapped)?)
            }
            _ => None,
        };
        // Two threads may both load; one result is kept, the other dropped.
        Ok(self.graph.get_or_init(|| loaded).as_ref())
    }
}

/// Below this share of the live chunks a filtered search scans the passing chunks exactly
/// instead of walking the graph: a graph walk that may keep only one node in twenty loses
/// neighbours (and an exact scan of a twentieth of the index is cheap).
pub const EXACT_FILTER_SHARE: f64 = 0.1;

/// Above this many passing chunks the graph is walked whatever their share.
pub const EXACT_FILTER_MAX: usize = 200_000;

/// Exact top `m` rows by dot product for each of `rows` (the set's own rows as queries):
/// `(row, score)` lists, best first, each including the row itself.
///
/// Why a GEMM: a neighbour table of the whole set is n queries, and n memory-bound scans
/// read the vectors n times; blocks of rows scored against all rows in one matrix product
/// read them once per block (SciFact's 10,417 chunks: 2.9 s for all of them on 2 cores).
pub fn exact_neighbours(vectors: &VectorFile, rows: &[usize], m: usize) -> Vec<Vec<(usize, f32)>> {
    // The query rows are gathered a part at a time, not all at once (a copy of the set).
    let mut out = Vec::with_capacity(rows.len());
    let mut queries = Vec::new();
    for part in rows.chunks(4096) {
        queries.clear();
        for &r in part {
            queries.extend_from_slice(vectors.row(r));
        }
        out.extend(exact_neighbours_of(&queries, vectors, m));
    }
    out
}

/// Exact top `k` by dot product: `(row, score)`, best first.
///
/// A scan of a large set is bound by memory bandwidth, not arithmetic, so above 32k rows it
/// is split across the rayon pool (each part keeps its own top `k`, then they merge).
pub fn exact_search(vectors: &VectorFile, query: &[f32], k: usize) -> Vec<(usize, f32)> {
    use rayon::prelude::*;
    let dim = vectors.dim();
    if k == 0 || vectors.is_empty() || dim == 0 {
        return Vec::new();
    }
    let all = vectors.as_slice();
    const PART: usize = 32 * 1024;
    let mut out: Vec<(usize, f32)> = if vectors.len() > PART {
        all.par_chunks(PART * dim)
            .enumerate()
            .flat_map_iter(|(p, rows)| top_k(rows, dim, query, k, p * PART))
            .collect()
    } else {
        top_k(all, dim, query, k, 0)
    };
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

/// Top `k` rows of `rows` (row-major, `dim` wide), numbered from `first`.
fn top_k(rows: &[f32], dim: usize, query: &[f32], k: usize, first: usize) -> Vec<(usize, f32)> {
    // A bounded min-heap keeps the scan O(n log k) with no per-row allocation.
    // Never more room than there are rows: `k` comes from the request.
    let rows_n = rows.len() / dim.max(1);
    let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(OrdF32, usize)>> =
        std::collections::BinaryHeap::with_capacity(k.min(rows_n) + 1);
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        let s = dot(row, query);
        if heap.len() < k {
            heap.push(std::cmp::Reverse((OrdF32(s), first + i)));
        } else if let Some(top) = heap.peek() {
            if s > top.0 .0 .0 {
                heap.pop();
                heap.push(std::cmp::Reverse((OrdF32(s), first + i)));
            }
        }
    }
    heap.into_iter().map(|r| (r.0 .1, r.0 .0 .0)).collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OrdF32(pub(crate) f32);
impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// Top `k` from the graph: `(id, cosine)`, best first. With a store, ids that are not
/// live in it (tombstones) are filtered during the search, so `k` live results still come
/// back.
pub fn search_graph(
    g: &Graph,
    query: &[f32],
    k: usize,
    ef: usize,
    store: Option<&ChunkStore>,
) -> Vec<(u64, f32)> {
    let live = |id: u64| store.is_none_or(|s| s.position(id).is_some());
    let filtered = store.is_some_and(|s| g.get_nb_point() > s.len());
    search_graph_where(g, query, k, ef, filtered.then_some(&live))
}

/// Top `k` from the graph: `(id, cosine)`, best first; with `live`, only ids it passes,
/// filtered during the search so that `k` of them still come back.
pub fn search_graph_where(
    g: &Graph,
    query: &[f32],
    k: usize,
    ef: usize,
    live: Option<&(dyn Fn(u64) -> bool + Sync)>,
) -> Vec<(u64, f32)> {
    let ef = ef.max(k);
    let found = match live {
        Some(f) => {
            let pass = |id: &usize| f(*id as u64);
            g.search_filter(query, k, ef, Some(&pass))
        }
        None => g.search(query, k, ef),
    };
    found
        .into_iter()
        .filter(|n| live.is_none_or(|f| f(n.d_id as u64)))
        .map(|n| (n.d_id as u64, 1.0 - n.distance))
        .collect()
}

/// Exact top `k` among `rows` of `vectors`: `(row, score)`, best first.
pub fn exact_search_rows(
    vectors: &VectorFile,
    rows: &[usize],
    query: &[f32],
    k: usize,
) -> Vec<(usize, f32)> {
    if rows.len() == vectors.len() {
        return exact_search(vectors, query, k);
    }
    let mut v: Vec<(usize, f32)> = rows
        .iter()
        .map(|&r| (r, dot(vectors.row(r), query)))
        .collect();
    let by = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if v.len() > k {
        v.select_nth_unstable_by(k, by);
        v.truncate(k);
    }
    v.sort_by(by);
    v
}

/// Exact top `m` rows of `target` by dot product for each query of `queries` (row-major,
/// `target.dim()` wide): `(row, score)` lists, best first. One matrix product per block of
/// queries, as [`exact_neighbours`] does for a set against itself.
pub fn exact_neighbours_of(
    queries: &[f32],
    target: &VectorFile,
    m: usize,
) -> Vec<Vec<(usize, f32)>> {
    use rayon::prelude::*;
    let (dim, n) = (target.dim(), target.len());
    let nq = queries.len().checked_div(dim).unwrap_or(0);
    if m == 0 || n == 0 || dim == 0 {
        return vec![Vec::new(); nq];
    }
    const BLOCK: usize = 256;
    let all = target.as_slice();
    let mut out = Vec::with_capacity(nq);
    let mut scores = vec![0f32; BLOCK.min(nq) * n];
    for block in queries.chunks(BLOCK * dim) {
        let b = block.len() / dim;
        crate::cpu_bert::dot_all(&mut scores[..b * n], block, all, dim);
        let lists: Vec<Vec<(usize, f32)>> = scores[..b * n]
            .par_chunks(n)
            .map(|row| {
                let mut idx: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
                let keep = m.min(idx.len());
                if keep < idx.len() {
                    idx.select_nth_unstable_by(keep, |a, b| {
                        b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
                    });
                    idx.truncate(keep);
                    idx.shrink_to_fit();
                }
                idx.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                idx
            })
            .collect();
        out.extend(lists);
    }
    out
}

/// Builds a graph over `vectors` keyed by `ids`.
pub fn build_graph(params: &HnswParams, vectors: &VectorFile, ids: &[u64]) -> Graph {
    let g = Graph::new(
        params.m,
        vectors.len().max(1),
        16,
        params.ef_construction,
        DotDistance,
    );
    extend_graph(&g, vectors, ids, 0..vectors.len());
    g
}

/// Inserts rows `rows` of `vectors` (keyed by `ids`) into `g`.
pub fn extend_graph(g: &Graph, vectors: &VectorFile, ids: &[u64], rows: std::ops::Range<usize>) {
    let data: Vec<(&[f32], usize)> = rows.map(|i| (vectors.row(i), ids[i] as usize)).collect();
    if !data.is_empty() {
        g.parallel_insert_slice(&data);
    }
}

/// Dumps `g` as `<dir>/<basename>.hnsw.{graph,data}`; returns the basename used.
pub fn dump_graph(g: &Graph, dir: &Path, basename: &str) -> Result<String> {
    for ext in ["hnsw.graph", "hnsw.data"] {
        let p = dir.join(format!("{basename}.{ext}"));
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    // hnsw_rs panics (rather than erring) when it cannot create a dump file, e.g. in a
    // read-only or full folder: a commit must fail with the path, not abort the process.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        g.file_dump(dir, basename).map_err(|e| e.to_string())
    }));
    let name = match res {
        Ok(Ok(name)) => name,
        Ok(Err(e)) => {
            return Err(Error::Dense {
                path: dir.join(basename),
                what: format!("dump failed: {e}"),
            })
        }
        Err(_) => {
            return Err(Error::Dense {
                path: dir.join(basename),
                what: "dump failed: cannot write the HNSW files (is the folder writable?)".into(),
            })
        }
    };
    // hnsw_rs only flushes its writers: without an fsync a power loss after the commit
    // point could leave a generation whose graph does not load.
    for ext in ["hnsw.graph", "hnsw.data"] {
        let p = dir.join(format!("{name}.{ext}"));
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&p, e))?;
    }
    crate::store::sync_dir(dir)?;
    Ok(name)
}

/// Whether both files of the dump `basename` in `dir` are there.
fn dump_exists(dir: &Path, basename: &str) -> bool {
    ["hnsw.graph", "hnsw.data"]
        .iter()
        .all(|ext| dir.join(format!("{basename}.{ext}")).is_file())
}

/// Loads a graph dumped by [`dump_graph`].
///
/// `hnsw_rs` exits the process on a missing file and asserts on bad magic numbers, so the
/// files are checked first and the load runs under `catch_unwind`. The loader struct is
/// leaked on purpose: a loaded graph borrows it for its whole life (a self-referential
/// pair), and one small leak per opened generation is the simplest sound ownership.
pub fn load_graph(dir: &Path, basename: &str) -> Result<Graph> {
    load_graph_with(dir, basename, false)
}

/// [`load_graph`], with the vectors memory-mapped from the dump's data file when `mapped`
/// (hnsw_rs's `ReloadOptions::set_mmap`): for readers only, since a graph whose points live
/// in a mapping is not extended.
pub fn load_graph_with(dir: &Path, basename: &str, mapped: bool) -> Result<Graph> {
    for ext in ["hnsw.graph", "hnsw.data"] {
        let p = dir.join(format!("{basename}.{ext}"));
        if !p.is_file() {
            return Err(Error::corrupt(p, "missing HNSW file"));
        }
    }
    let dir_owned = dir.to_path_buf();
    let name = basename.to_string();
    let res = std::panic::catch_unwind(move || {
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&dir_owned, &name)));
        if mapped {
            io.set_options(hnsw_rs::hnswio::ReloadOptions::default().set_mmap(true));
        }
        io.load_hnsw::<f32, DotDistance>()
            .map_err(|e| e.to_string())
    });
    match res {
        Ok(Ok(g)) => Ok(g),
        Ok(Err(e)) => Err(Error::corrupt(
            dir.join(basename),
            format!("cannot load HNSW: {e}"),
        )),
        Err(_) => Err(Error::corrupt(dir.join(basename), "HNSW files are damaged")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_width_doubles_for_each_tenfold_of_rows_past_the_base() {
        assert_eq!(Ef::Scaled(128).at(5_000), 128);
        assert_eq!(Ef::Scaled(128).at(EF_BASE_ROWS), 128);
        assert_eq!(Ef::Scaled(128).at(10 * EF_BASE_ROWS), 256);
        assert_eq!(Ef::Scaled(128).at(100 * EF_BASE_ROWS), 512);
        let mid = Ef::Scaled(128).at(3 * EF_BASE_ROWS);
        assert!(mid > 128 && mid < 256, "{mid}");
        assert_eq!(Ef::Fixed(64).at(10 * EF_BASE_ROWS), 64);
    }
    use crate::embed::normalize;
    use crate::store::{write_chunks, ChunkRecord};

    #[test]
    fn neighbours_by_blocks_equal_one_scan_per_row() {
        // 600 rows: three blocks of the GEMM, the last one partial.
        let v = VectorFile::from_vec(16, clustered(600, 16, 7));
        let rows: Vec<usize> = (0..600).step_by(7).chain([599]).collect();
        let got = exact_neighbours(&v, &rows, 6);
        assert_eq!(got.len(), rows.len());
        for (&r, g) in rows.iter().zip(&got) {
            let want = exact_search(&v, v.row(r), 6);
            let ids = |l: &[(usize, f32)]| l.iter().map(|x| x.0).collect::<Vec<_>>();
            assert_eq!(ids(g), ids(&want), "row {r}");
            for (a, b) in g.iter().zip(&want) {
                assert!((a.1 - b.1).abs() < 1e-5, "row {r}: {a:?} vs {b:?}");
            }
            assert_eq!(g[0].0, r, "a row is its own nearest");
            // Each list holds its m entries, not the scan of all 600 rows it came from:
            // kept for every row of a commit, the rows' full scans were n x n entries.
            assert!(g.capacity() < 60, "row {r}: capacity {}", g.capacity());
        }
        assert!(exact_neighbours(&v, &[], 6).is_empty());
        assert!(exact_neighbours(&v, &[3], 0)[0].is_empty());
    }

    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 10_000) as f32 / 10_000.0 - 0.5
        };
        let centers: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| rnd()).collect()).collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centers[i % centers.len()];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.3 * rnd()).collect();
            normalize(&mut v);
            out.extend(v);
        }
        out
    }

    fn store_with(n: usize) -> (tempfile::TempDir, ChunkStore) {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.bin");
        let recs: Vec<ChunkRecord> = (0..n as u64)
            .map(|id| ChunkRecord {
                id,
                doc: String::new(),
                byte_range: (0, 0),
                line_range: (1, 1),
                heading: None,
                text: String::new(),
            })
            .collect();
        write_chunks(&p, &recs).unwrap();
        let s = ChunkStore::open(&p).unwrap();
        (tmp, s)
    }

    #[test]
    fn hnsw_agrees_with_exact_scan_and_survives_dump() {
        let (n, dim) = (2000, 32);
        let data = clustered(n, dim, 7);
        let v = VectorFile::from_vec(dim, data.clone());
        let ids: Vec<u64> = (0..n as u64).collect();
        let (tmp, store) = store_with(n);
        let g = build_graph(&HnswParams::default(), &v, &ids);
        let queries = clustered(50, dim, 99);
        let mut hits = 0;
        for q in queries.chunks(dim) {
            let exact: Vec<u64> = exact_search(&v, q, 10)
                .into_iter()
                .map(|(p, _)| p as u64)
                .collect();
            let approx: Vec<u64> = search_graph(&g, q, 10, 256, Some(&store))
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            hits += approx.iter().filter(|a| exact.contains(a)).count();
        }
        let recall = hits as f32 / 500.0;
        assert!(recall >= 0.95, "recall@10 {recall}");
        // Dump and reload give identical answers.
        let name = dump_graph(&g, tmp.path(), "g1").unwrap();
        let g2 = load_graph(tmp.path(), &name).unwrap();
        // A reader's graph, its vectors mapped from the data file: the same answers too.
        let g3 = load_graph_with(tmp.path(), &name, true).unwrap();
        for q in queries.chunks(dim).take(10) {
            let want = search_graph(&g, q, 10, 128, Some(&store));
            assert_eq!(want, search_graph(&g2, q, 10, 128, Some(&store)));
            assert_eq!(want, search_graph(&g3, q, 10, 128, Some(&store)));
        }
        // Missing or damaged files are errors, not exits or panics, mapped or not.
        assert!(load_graph(tmp.path(), "nope").is_err());
        std::fs::write(tmp.path().join("bad.hnsw.graph"), b"xx").unwrap();
        std::fs::write(tmp.path().join("bad.hnsw.data"), b"yy").unwrap();
        assert!(load_graph(tmp.path(), "bad").is_err());
        assert!(load_graph_with(tmp.path(), "bad", true).is_err());
    }

    #[test]
    fn tombstones_are_filtered_and_k_is_still_returned() {
        let (n, dim) = (600, 16);
        let v = VectorFile::from_vec(dim, clustered(n, dim, 3));
        let ids: Vec<u64> = (0..n as u64).collect();
        let g = build_graph(&HnswParams::default(), &v, &ids);
        // The store only keeps the first half: the rest are tombstones.
        let (_tmp, store) = store_with(n / 2);
        for q in clustered(20, dim, 5).chunks(dim) {
            let r = search_graph(&g, q, 10, 128, Some(&store));
            assert_eq!(r.len(), 10);
            assert!(r.iter().all(|(id, _)| (*id as usize) < n / 2));
        }
    }

    #[test]
    fn exact_search_orders_and_handles_edges() {
        let v = VectorFile::from_vec(2, vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8]);
        let r = exact_search(&v, &[0.0, 1.0], 2);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(exact_search(&v, &[0.0, 1.0], 0).is_empty());
        assert_eq!(exact_search(&v, &[1.0, 0.0], 10).len(), 3);
    }
}
