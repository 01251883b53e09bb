//! Builds a segment's HNSW graph straight into the flat layers of a [`crate::graph_file`],
//! inserting on every core.
//!
//! Why not hnsw_rs, which built the graphs before: at 100,000 vectors it inserted 4,763
//! points a second against hnswlib's 9,521 on the same vectors and this 2-core machine,
//! and it holds about 4.5 KB of objects per point while it builds, so a million-chunk
//! build peaked at 5.4 GB and merges had to stop at 250,000 chunks a segment. This builder
//! is hnswlib's algorithm over the segment's own mapped vector file: layer 0 in one flat
//! array as hnswlib lays it out (each row's lock in its list's length word, up to `2m`
//! neighbours beside it; upper layers keep `m` behind a lock per row), the neighbour
//! selection heuristic of [Malkov & Yashunin 2018, alg. 4] (a candidate is kept only when
//! it is closer to the new point than to every neighbour already kept), levels drawn with
//! `1/ln(m)`, and a visited list per thread that is cleared by bumping an epoch. It holds
//! about 164 bytes a point beside the vectors, which are read through the page cache.
//!
//! A merge can start from an existing graph ([`GraphBuilder::seeded`]): the rows of the
//! largest segment keep their levels and links (links to deleted rows dropped) and only
//! the other rows are inserted, as the scale issue asks of merges.
//!
//! Not for: reading or searching a graph ([`crate::graph_file`]).

use std::cell::RefCell;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::dense::{HnswParams, OrdF32};
use crate::embed::dot;
use crate::graph_file::prefetch_bytes;
use crate::sq8::Codes;
use crate::store::VectorFile;

/// Highest level a point may draw (a level above 16 has probability `m^-16`).
const MAX_LEVEL: usize = 16;

/// A built graph: each row's level, the entry row, and per layer the neighbour rows of
/// each member (layer 0: every row; layer `l`: rows whose level is `l` or more, ascending).
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// Level of each row.
    pub levels: Vec<u8>,
    /// Row the search starts from (one of the top layer's).
    pub entry: u32,
    /// `layers[l]`: `(row, neighbour rows)` for each member of layer `l`, rows ascending.
    pub layers: Vec<Vec<(u32, Vec<u32>)>>,
}

impl Layers {
    /// Rows of layer 0 that the entry cannot reach (`towards_entry` false), or that cannot
    /// reach the entry (true), following links; 0 either way once [`GraphBuilder::finish`]
    /// has repaired the graph. A check, by a search over the links (reversed for
    /// `towards_entry`), for tests and studies.
    pub fn unreached(&self, towards_entry: bool) -> usize {
        let Some(layer) = self.layers.first() else {
            return 0;
        };
        let n = layer.len();
        if self.entry as usize >= n {
            return n;
        }
        let mut adj: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (r, nbs) in layer {
            for &x in nbs.iter().filter(|&&x| (x as usize) < n) {
                if towards_entry {
                    adj[x as usize].push(*r);
                } else if let Some(a) = adj.get_mut(*r as usize) {
                    a.push(x);
                }
            }
        }
        let mut seen = vec![false; n];
        let mut stack = vec![self.entry as usize];
        seen[self.entry as usize] = true;
        while let Some(r) = stack.pop() {
            for &x in &adj[r] {
                if !seen[x as usize] {
                    seen[x as usize] = true;
                    stack.push(x as usize);
                }
            }
        }
        seen.iter().filter(|&&s| !s).count()
    }
}

/// A row's neighbour lists on the layers above 0 (`[l - 1]` for layer `l`; none for most
/// rows).
type Upper = Mutex<Vec<Vec<u32>>>;

/// Set in a row's layer-0 length word while a thread holds the row's list.
const LOCKED: u32 = 1 << 31;

/// A row's layer-0 list, held: its slots are this thread's until the guard drops.
struct Held<'b> {
    word: &'b AtomicU32,
    slots: &'b [AtomicU32],
    len: u32,
}

impl Held<'_> {
    fn list(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots[..self.len as usize]
            .iter()
            .map(|x| x.load(Ordering::Relaxed))
    }

    /// Replaces the list (cut at the row's capacity, `2m`).
    fn set(&mut self, rows: &[u32]) {
        let n = rows.len().min(self.slots.len());
        for (slot, &r) in self.slots.iter().zip(&rows[..n]) {
            slot.store(r, Ordering::Relaxed);
        }
        self.len = n as u32;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Publishes the slots written while held and frees the row.
        self.word.store(self.len, Ordering::Release);
    }
}

/// Builds one graph over a vector file.
pub struct GraphBuilder<'a> {
    vectors: &'a VectorFile,
    m: usize,
    ef_construction: usize,
    levels: Vec<u8>,
    /// Layer 0, flat as in hnswlib: row `r` owns the `stride = 2m + 1` words from
    /// `r * stride`, its list's length (with [`LOCKED`] set while a thread holds the row)
    /// then up to `2m` neighbour rows. A search step reads the row's lock, length and
    /// list from one place, where a list per row behind a lock per row cost two more
    /// dependent reads from memory for every row visited.
    base: Vec<AtomicU32>,
    stride: usize,
    upper: Vec<Upper>,
    /// `(entry row, its level)`; `usize::MAX` entry before the first insert.
    entry: Mutex<(usize, usize)>,
    inserted: AtomicUsize,
    /// Int8 codes of every row, compared instead of the f32 rows where [`BuildDistances`]
    /// says so.
    codes: Option<Codes>,
    /// Links chosen on f32 similarities even when the walk runs on `codes`.
    exact_links: bool,
}

/// What the build compares rows with. The finished graph is searched with the f32 vectors
/// (or the index's int8 file) either way; this only decides how its links are found and
/// chosen.
///
/// Why the walk on int8 by default: a build at a million rows waits on memory, not
/// arithmetic. Each insert walks the graph scoring a few thousand rows scattered over the
/// vector file, and an int8 row is 384 bytes where an f32 row is 1,536, so four times as
/// many stay in cache (and AVX-512 VNNI multiplies 64 codes an instruction). The links
/// are then chosen on f32 similarities among the `ef_construction` candidates the walk
/// found, as Qdrant rescores quantised candidates with the original vectors: a code's
/// rounding can reorder near-equal candidates and change which links the heuristic keeps.
/// Measured with `examples/graph_probe.rs` on the scale bench's 1M vectors
/// (docs/decisions.md, "Graph build on int8 distances"): f32 11,624 inserts/s, the walk on
/// int8 15,779, everything on int8 18,710. The codes cost `dim + 4` bytes a row of memory
/// while the build runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuildDistances {
    /// The walk on symmetric per-row int8 codes ([`crate::sq8`]'s scheme, held in memory),
    /// the links chosen on the f32 rows.
    #[default]
    Int8Walk,
    /// Every comparison on the int8 codes, links included (the fastest; measured with a
    /// lower recall at 1M, so not the default).
    Int8,
    /// Every comparison on the f32 rows, read through the page cache.
    F32,
}

thread_local! {
    /// Per-thread visited marks: `(epoch, mark per row)`.
    static VISITED: RefCell<(u32, Vec<u32>)> = const { RefCell::new((0, Vec::new())) };
}

/// A deterministic level for `row`: `floor(-ln(u) / ln(m))` with `u` from a hash of the row,
/// so that a rebuild of the same rows draws the same levels.
fn level_of(row: usize, m: usize) -> usize {
    let z = crate::mix::mix64((row as u64).wrapping_add(0x9E37_79B9_7F4A_7C15));
    // A uniform in (0, 1].
    let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let ml = 1.0 / (m.max(2) as f64).ln();
    ((-u.ln() * ml) as usize).min(MAX_LEVEL)
}

impl<'a> GraphBuilder<'a> {
    /// An empty graph over every row of `vectors`, built on the default distances.
    pub fn new(params: &HnswParams, vectors: &'a VectorFile) -> GraphBuilder<'a> {
        GraphBuilder::with_distances(
            params,
            vectors,
            BuildDistances::default(),
            crate::sq8::code_kernel(),
        )
    }

    /// An empty graph over every row of `vectors`, built on `distances`, the int8 codes
    /// compared on `kernel` where the CPU has it ([`Codes::with_kernel`]).
    pub fn with_distances(
        params: &HnswParams,
        vectors: &'a VectorFile,
        distances: BuildDistances,
        kernel: crate::quant::Kernel,
    ) -> GraphBuilder<'a> {
        let m = params.m.max(2);
        let n = vectors.len();
        let levels: Vec<u8> = (0..n).map(|r| level_of(r, m) as u8).collect();
        let stride = 2 * m + 1;
        let base = (0..n * stride).map(|_| AtomicU32::new(0)).collect();
        let upper = levels
            .iter()
            .map(|&l| Mutex::new(vec![Vec::with_capacity(m + 1); l as usize]))
            .collect();
        GraphBuilder {
            vectors,
            m,
            ef_construction: params.ef_construction.max(m),
            levels,
            base,
            stride,
            upper,
            entry: Mutex::new((usize::MAX, 0)),
            inserted: AtomicUsize::new(0),
            codes: match distances {
                BuildDistances::Int8 | BuildDistances::Int8Walk => {
                    Some(Codes::with_kernel(vectors, kernel))
                }
                BuildDistances::F32 => None,
            },
            exact_links: distances == BuildDistances::Int8Walk,
        }
    }

    /// A graph over `vectors` that starts from `seed`: `seed.rows[i]` is the row of
    /// `vectors` that the seed graph's row `i` became (`None`: deleted). Seeded rows keep
    /// their level and their links among seeded rows; call [`GraphBuilder::insert`] with the
    /// others. Falls back to an empty graph when the seed's entry row is gone.
    pub fn seeded(
        params: &HnswParams,
        vectors: &'a VectorFile,
        seed: &Layers,
        rows: &[Option<u32>],
    ) -> GraphBuilder<'a> {
        let mut b = GraphBuilder::new(params, vectors);
        let Some(Some(entry)) = rows.get(seed.entry as usize).copied() else {
            return b;
        };
        for (l, layer) in seed.layers.iter().enumerate() {
            for (row, nbs) in layer {
                let Some(Some(r)) = rows.get(*row as usize).copied() else {
                    continue;
                };
                let r = r as usize;
                let Some(&level) = seed.levels.get(*row as usize) else {
                    continue;
                };
                if r >= b.levels.len() {
                    continue;
                }
                if l == 0 {
                    let level = level.min(MAX_LEVEL as u8);
                    b.levels[r] = level;
                    b.upper[r] = Mutex::new(vec![Vec::with_capacity(b.m + 1); level as usize]);
                }
                let mapped: Vec<u32> = nbs
                    .iter()
                    .filter_map(|&n| rows.get(n as usize).copied().flatten())
                    .filter(|&n| (n as usize) < b.levels.len())
                    .collect();
                // A layer-0 list the seed's repair lengthened past `2m` is cut; the finished
                // graph's repair links whatever that leaves unreachable.
                b.update_links(r, l, |list| *list = mapped);
            }
        }
        let top = seed.levels.get(seed.entry as usize).copied().unwrap_or(0) as usize;
        b.entry = Mutex::new((entry as usize, top));
        b.inserted.store(
            rows.iter().filter(|r| r.is_some()).count(),
            Ordering::Relaxed,
        );
        b
    }

    /// Inserts `rows` on every core (`progress` is told each thousand).
    pub fn insert(&self, rows: &[usize], progress: &(dyn Fn(u64) + Sync)) {
        let mut rest = rows;
        // The first point of an empty graph becomes its entry alone.
        if self.entry_point().0 == usize::MAX {
            if let Some((&first, tail)) = rows.split_first() {
                self.insert_one(first);
                rest = tail;
            }
        }
        rest.par_iter().for_each(|&r| {
            self.insert_one(r);
            let done = self.inserted.fetch_add(1, Ordering::Relaxed) + 1;
            if done.is_multiple_of(1000) {
                progress(1000);
            }
        });
    }

    fn entry_point(&self) -> (usize, usize) {
        self.entry.lock().map(|e| *e).unwrap_or((usize::MAX, 0))
    }

    #[inline]
    fn sim(&self, a: usize, b: usize) -> f32 {
        match &self.codes {
            Some(c) => c.sim(a, b),
            None => dot(self.vectors.row(a), self.vectors.row(b)),
        }
    }

    /// The similarity links are chosen on: f32 when `exact_links`, else [`Self::sim`].
    #[inline]
    fn link_sim(&self, a: usize, b: usize) -> f32 {
        if self.exact_links {
            dot(self.vectors.row(a), self.vectors.row(b))
        } else {
            self.sim(a, b)
        }
    }

    #[inline]
    fn row_bytes(&self, r: usize) -> &[u8] {
        match &self.codes {
            Some(c) => c.row_bytes(r),
            None => self.vectors.row_bytes(r),
        }
    }

    /// `row`'s layer-0 list, held until the guard drops (other threads spin on it).
    fn hold(&self, row: usize) -> Held<'_> {
        let at = row * self.stride;
        let word = &self.base[at];
        let mut spins = 0u32;
        loop {
            let cur = word.load(Ordering::Relaxed);
            if cur & LOCKED == 0
                && word
                    .compare_exchange_weak(cur, cur | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Held {
                    word,
                    slots: &self.base[at + 1..at + self.stride],
                    len: cur,
                };
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// A copy of `row`'s neighbours on layer `l`, into `out`.
    fn read_links(&self, row: usize, l: usize, out: &mut Vec<u32>) {
        out.clear();
        if l == 0 {
            out.extend(self.hold(row).list());
        } else if let Ok(links) = self.upper[row].lock() {
            if let Some(list) = links.get(l - 1) {
                out.extend_from_slice(list);
            }
        }
    }

    /// Calls `f` on `row`'s list on layer `l` while holding it.
    fn update_links(&self, row: usize, l: usize, f: impl FnOnce(&mut Vec<u32>)) {
        if l == 0 {
            let mut held = self.hold(row);
            let mut list: Vec<u32> = held.list().collect();
            f(&mut list);
            held.set(&list);
        } else if let Ok(mut links) = self.upper[row].lock() {
            if let Some(list) = links.get_mut(l - 1) {
                f(list);
            }
        }
    }

    fn insert_one(&self, q: usize) {
        let level = self.levels[q] as usize;
        let (ep, top) = self.entry_point();
        if ep == usize::MAX {
            if let Ok(mut e) = self.entry.lock() {
                if e.0 == usize::MAX {
                    *e = (q, level);
                    return;
                }
            }
            return self.insert_one(q);
        }
        if ep == q {
            return;
        }
        let mut buf = Vec::with_capacity(2 * self.m + 1);
        // Greedy descent through the layers above the point's own.
        let mut cur = ep;
        let mut best = self.sim(q, cur);
        for l in (level + 1..=top).rev() {
            loop {
                let mut moved = false;
                self.read_links(cur, l, &mut buf);
                for &n in &buf {
                    let s = self.sim(q, n as usize);
                    if s > best {
                        (best, cur, moved) = (s, n as usize, true);
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        let mut entry_points = vec![(best, cur as u32)];
        for l in (0..=level.min(top)).rev() {
            let mut found = self.search_layer(q, &entry_points, self.ef_construction, l);
            if self.exact_links {
                for f in &mut found {
                    f.0 = self.link_sim(q, f.1 as usize);
                }
                found.sort_by(|a, b| b.0.total_cmp(&a.0));
            }
            let max = if l == 0 { 2 * self.m } else { self.m };
            let chosen = self.select(&found, self.m);
            self.update_links(q, l, |list| {
                list.clear();
                list.extend(chosen.iter().map(|x| x.1));
            });
            for &(s, n) in &chosen {
                self.connect(n as usize, q as u32, s, l, max);
            }
            entry_points = found;
        }
        if level > top {
            if let Ok(mut e) = self.entry.lock() {
                if level > e.1 {
                    *e = (q, level);
                }
            }
        }
    }

    /// Adds `q` (at similarity `s`) to `n`'s list on layer `l`, pruning it to `max` with the
    /// heuristic when full.
    fn connect(&self, n: usize, q: u32, s: f32, l: usize, max: usize) {
        self.update_links(n, l, |list| {
            if list.contains(&q) {
                return;
            }
            if list.len() < max {
                list.push(q);
                return;
            }
            let mut cands: Vec<(f32, u32)> = list
                .iter()
                .map(|&x| (self.link_sim(n, x as usize), x))
                .collect();
            cands.push((s, q));
            cands.sort_by(|a, b| b.0.total_cmp(&a.0));
            let kept = self.select(&cands, max);
            list.clear();
            list.extend(kept.iter().map(|x| x.1));
        });
    }

    /// The heuristic: candidates best first; one is kept when it is more similar to the base
    /// point than to every one kept before it.
    fn select(&self, cands: &[(f32, u32)], m: usize) -> Vec<(f32, u32)> {
        let mut kept: Vec<(f32, u32)> = Vec::with_capacity(m);
        for &(s, c) in cands {
            if kept.len() >= m {
                break;
            }
            if kept
                .iter()
                .all(|&(_, k)| self.link_sim(c as usize, k as usize) < s)
            {
                kept.push((s, c));
            }
        }
        kept
    }

    /// The `ef` rows most similar to row `q` on layer `l`, best first, from `entry`.
    fn search_layer(&self, q: usize, entry: &[(f32, u32)], ef: usize, l: usize) -> Vec<(f32, u32)> {
        VISITED.with(|v| {
            let mut v = v.borrow_mut();
            let n = self.levels.len();
            if v.1.len() < n {
                v.1 = vec![0; n];
                v.0 = 0;
            }
            v.0 = v.0.wrapping_add(1);
            if v.0 == 0 {
                v.1.iter_mut().for_each(|x| *x = 0);
                v.0 = 1;
            }
            let (epoch, marks) = &mut *v;
            let epoch = *epoch;
            let mut cands: BinaryHeap<(OrdF32, u32)> = BinaryHeap::new();
            let mut results: BinaryHeap<std::cmp::Reverse<(OrdF32, u32)>> = BinaryHeap::new();
            for &(s, r) in entry {
                marks[r as usize] = epoch;
                cands.push((OrdF32(s), r));
                results.push(std::cmp::Reverse((OrdF32(s), r)));
            }
            while results.len() > ef {
                results.pop();
            }
            let mut buf = Vec::with_capacity(2 * self.m + 1);
            while let Some((OrdF32(s), r)) = cands.pop() {
                let floor = results.peek().map_or(f32::NEG_INFINITY, |x| x.0 .0 .0);
                if results.len() >= ef && s < floor {
                    break;
                }
                self.read_links(r as usize, l, &mut buf);
                // Unvisited neighbours first, then each scored while the next one's row
                // is requested from memory (as the search does, `graph_file`).
                buf.retain(|&nb| {
                    let slot = &mut marks[nb as usize];
                    let fresh = *slot != epoch;
                    *slot = epoch;
                    fresh
                });
                if let Some(&first) = buf.first() {
                    prefetch_bytes(self.row_bytes(first as usize));
                }
                for (i, &nb) in buf.iter().enumerate() {
                    if let Some(&next) = buf.get(i + 1) {
                        prefetch_bytes(self.row_bytes(next as usize));
                    }
                    let s = self.sim(q, nb as usize);
                    let floor = results.peek().map_or(f32::NEG_INFINITY, |x| x.0 .0 .0);
                    if results.len() < ef || s > floor {
                        cands.push((OrdF32(s), nb));
                        results.push(std::cmp::Reverse((OrdF32(s), nb)));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
            let mut out: Vec<(f32, u32)> =
                results.into_iter().map(|x| (x.0 .0 .0, x.0 .1)).collect();
            out.sort_by(|a, b| b.0.total_cmp(&a.0));
            out
        })
    }

    /// The finished graph. Rows never inserted have empty lists.
    pub fn finish(self) -> Layers {
        let (entry, top) = self.entry_point();
        let entry = if entry == usize::MAX { 0 } else { entry as u32 };
        let top = if self.levels.is_empty() { 0 } else { top };
        let mut layers: Vec<Vec<(u32, Vec<u32>)>> = vec![Vec::new(); top + 1];
        for r in 0..self.levels.len() {
            let list = self.hold(r).list().collect();
            layers[0].push((r as u32, list));
        }
        for (r, upper) in self.upper.into_iter().enumerate() {
            let lists = upper.into_inner().unwrap_or_default();
            for (l, list) in lists.into_iter().enumerate().take(top) {
                layers[l + 1].push((r as u32, list));
            }
        }
        let levels = self.levels.iter().map(|&l| l.min(top as u8)).collect();
        repair_reachability(&mut layers[0], entry);
        repair_return_paths(&mut layers[0], entry);
        Layers {
            levels,
            entry,
            layers,
        }
    }
}

/// Makes every row of layer 0 reachable from the entry: a row the walk cannot reach gets a
/// link from its nearest reached neighbour (from the entry when none of its neighbours is
/// reached), until none is left.
///
/// Why: when a full list is pruned by the heuristic, the row just added can lose its only
/// in-link (hnswlib has the same property: 9 rows of 4,000 in a test), and parallel
/// insertion can leave a small group linked only among itself. No `ef` finds such rows: a
/// recall loss in a large graph, and in a small one (a test with a graph over 50 chunks) a
/// different answer than the exact scan. A list may then hold more than `2m` rows; the
/// graph file's lists have no fixed length.
fn repair_reachability(layer: &mut [(u32, Vec<u32>)], entry: u32) {
    let n = layer.len();
    if n == 0 || entry as usize >= n {
        return;
    }
    let mut reached = vec![false; n];
    let mut stack = vec![entry as usize];
    reached[entry as usize] = true;
    // Rows before `next` are all reached (`reached` only grows).
    let mut next = 0;
    loop {
        // Rows are their own index on layer 0 (`finish` pushes every row in order).
        while let Some(r) = stack.pop() {
            for &x in &layer[r].1 {
                if let Some(seen) = reached.get_mut(x as usize) {
                    if !*seen {
                        *seen = true;
                        stack.push(x as usize);
                    }
                }
            }
        }
        while next < n && reached[next] {
            next += 1;
        }
        if next == n {
            return;
        }
        let r = next;
        let from = layer[r]
            .1
            .iter()
            .map(|&x| x as usize)
            .find(|&x| reached.get(x).copied().unwrap_or(false))
            .unwrap_or(entry as usize);
        layer[from].1.push(r as u32);
        reached[r] = true;
        stack.push(r);
    }
}

/// Makes the entry reachable from every row of layer 0, so that with
/// [`repair_reachability`] every row reaches every other: a row that cannot reach the
/// entry gets a link to it, until none is left.
///
/// Why: a search does not start layer 0 at the entry but where the greedy descent through
/// the upper layers stopped. A group of rows whose links all stay inside it (reachable
/// from the entry, with no way out) traps a walk that starts there: it returns the group
/// and nothing else, fewer than `k` when a filter passes few of them. A full-suite run
/// once got 1 hit of 10 from a filtered search passing half the index.
///
/// It needs no reverse lists (128 MB at a million rows, at the build's memory peak): a row
/// reaches the entry when one of its neighbours does, so passes over the rows in order
/// spread that until a pass changes nothing (as many passes as the longest way back,
/// tens on a graph of a million rows).
fn repair_return_paths(layer: &mut [(u32, Vec<u32>)], entry: u32) {
    let n = layer.len();
    if n == 0 || entry as usize >= n {
        return;
    }
    let mut back = vec![false; n];
    back[entry as usize] = true;
    // Each added link costs passes; past this many, every row left gets its link at once.
    const ONE_AT_A_TIME: usize = 64;
    let mut added = 0;
    loop {
        let mut changed = true;
        while changed {
            changed = false;
            for r in 0..n {
                if !back[r]
                    && layer[r]
                        .1
                        .iter()
                        .any(|&x| back.get(x as usize) == Some(&true))
                {
                    back[r] = true;
                    changed = true;
                }
            }
        }
        let mut stuck = (0..n).filter(|&r| !back[r]);
        if added < ONE_AT_A_TIME {
            let Some(r) = stuck.next() else { return };
            layer[r].1.push(entry);
            back[r] = true;
            added += 1;
        } else {
            let rest: Vec<usize> = stuck.collect();
            for r in rest {
                layer[r].1.push(entry);
            }
            return;
        }
    }
}

/// Builds the graph of every row of `vectors` (on the default distances).
pub fn build(params: &HnswParams, vectors: &VectorFile, progress: &(dyn Fn(u64) + Sync)) -> Layers {
    let b = GraphBuilder::new(params, vectors);
    let rows: Vec<usize> = (0..vectors.len()).collect();
    b.insert(&rows, progress);
    b.finish()
}

/// Builds the graph of every row of `vectors` on `distances` and `kernel`
/// ([`GraphBuilder::with_distances`]; for measuring the alternatives).
pub fn build_with(
    params: &HnswParams,
    vectors: &VectorFile,
    distances: BuildDistances,
    kernel: crate::quant::Kernel,
    progress: &(dyn Fn(u64) + Sync),
) -> Layers {
    let b = GraphBuilder::with_distances(params, vectors, distances, kernel);
    let rows: Vec<usize> = (0..vectors.len()).collect();
    b.insert(&rows, progress);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::exact_search;

    /// A walk that the upper layer drops into a group with no way out: before the repair
    /// it returns the group alone, after it `k` rows.
    #[test]
    fn a_walk_started_in_a_closed_group_still_finds_k_rows() {
        // Rows on a half circle: 0 (the entry) at 0 degrees, 1-6 towards 150, and 7, 8 (the
        // closed group) at 175 and 180, where the query points.
        let angles = [0.0f32, 25.0, 50.0, 75.0, 100.0, 125.0, 150.0, 175.0, 180.0];
        let data: Vec<f32> = angles
            .iter()
            .flat_map(|a| [a.to_radians().cos(), a.to_radians().sin()])
            .collect();
        let vf = VectorFile::from_vec(2, data);
        let mut levels = vec![0u8; 9];
        levels[0] = 1;
        levels[7] = 1;
        let mut layer0: Vec<(u32, Vec<u32>)> = (0..9u32)
            .map(|r| {
                let nbs = match r {
                    6 => vec![5, 7],
                    7 => vec![8],
                    8 => vec![7],
                    r => vec![r + 1],
                };
                (r, nbs)
            })
            .collect();
        let layer1 = vec![(0u32, vec![7u32]), (7, vec![0])];
        let search = |layer0: &Vec<(u32, Vec<u32>)>| {
            let g = Layers {
                levels: levels.clone(),
                entry: 0,
                layers: vec![layer0.clone(), layer1.clone()],
            };
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("g");
            crate::graph_file::GraphFile::write_layers(&g, 9, &path).unwrap();
            let f = crate::graph_file::GraphFile::open(&path, 9).unwrap();
            f.search(&vf, &[-1.0, 0.0], 5, 16, None)
        };
        // Every row is reachable from the entry, so the first repair adds nothing.
        let before = layer0.clone();
        repair_reachability(&mut layer0, 0);
        assert_eq!(layer0, before);
        let trapped = search(&layer0);
        assert_eq!(
            trapped.len(),
            2,
            "the walk left the closed group: {trapped:?}"
        );
        repair_return_paths(&mut layer0, 0);
        // One link out of the group, from its first row, to the entry.
        assert_eq!(layer0[7].1, vec![8, 0]);
        assert_eq!(layer0[8].1, vec![7]);
        let found: Vec<u32> = search(&layer0).iter().map(|x| x.0).collect();
        assert_eq!(found, vec![8, 7, 6, 5, 4]);
    }

    /// After both repairs every row of a built graph reaches the entry along layer 0.
    #[test]
    fn every_row_of_a_built_graph_reaches_the_entry() {
        let dim = 16;
        // Many rows in few tight clusters: where closed groups form.
        let vf = VectorFile::from_vec(dim, crate::bench::clustered_vectors(6000, dim, 30, 0.05, 5));
        let g = build(&HnswParams::default(), &vf, &|_| {});
        let stuck = g.unreached(true);
        assert_eq!(stuck, 0, "{stuck} of 6000 rows cannot reach the entry");
        assert_eq!(g.unreached(false), 0);
    }

    #[test]
    fn levels_follow_the_geometric_law_and_are_reproducible() {
        let n = 100_000;
        let above: usize = (0..n).filter(|&r| level_of(r, 16) >= 1).count();
        // P(level >= 1) = 1/16.
        assert!((5_500..7_000).contains(&above), "{above}");
        assert_eq!(level_of(12345, 16), level_of(12345, 16));
    }

    #[test]
    fn a_built_graph_keeps_its_degree_bounds_and_a_seeded_one_reaches_new_rows() {
        let dim = 32;
        let n = 4000;
        let vf = VectorFile::from_vec(dim, crate::bench::clustered_vectors(n, dim, 40, 0.3, 3));
        let p = HnswParams::default();
        let g = build(&p, &vf, &|_| {});
        assert_eq!(g.layers[0].len(), n);
        let mut over = 0;
        for (l, layer) in g.layers.iter().enumerate() {
            let max = if l == 0 { 2 * p.m } else { p.m };
            for (r, nbs) in layer {
                // Layer 0 lists take a link more where an unreachable row was linked.
                if nbs.len() > max {
                    assert_eq!(l, 0);
                    over += 1;
                }
                assert!(!nbs.contains(r), "a row links to itself");
                assert!(g.levels[*r as usize] as usize >= l);
            }
        }
        assert!(over * 100 <= n, "{over} lists over the bound");
        // Every row is reachable: someone links to it on layer 0 (pruning by the heuristic
        // can drop a row's last in-link, as in hnswlib; `repair_reachability` gives it one).
        let mut linked = vec![false; n];
        for (_, nbs) in &g.layers[0] {
            for &x in nbs {
                linked[x as usize] = true;
            }
        }
        let unlinked = (0..n)
            .filter(|&r| !linked[r] && r != g.entry as usize)
            .count();
        assert_eq!(unlinked, 0, "{unlinked} of {n} rows unlinked");
        // And reachable from the entry along layer 0.
        assert_eq!(g.unreached(false), 0, "rows the walk cannot reach");

        // Seed with the first half's graph (every third row of it deleted), insert the rest.
        let half = VectorFile::from_vec(dim, vf.as_slice()[..n / 2 * dim].to_vec());
        let seed = build(&p, &half, &|_| {});
        let mut rows: Vec<Option<u32>> = Vec::new();
        let mut kept = Vec::new();
        for r in 0..n / 2 {
            if r % 3 == 0 && r as u32 != seed.entry {
                rows.push(None);
            } else {
                rows.push(Some(kept.len() as u32));
                kept.push(r);
            }
        }
        let seeded_rows = kept.len();
        kept.extend(n / 2..n);
        let mut data = Vec::new();
        for &r in &kept {
            data.extend_from_slice(vf.row(r));
        }
        let merged = VectorFile::from_vec(dim, data);
        let b = GraphBuilder::seeded(&p, &merged, &seed, &rows);
        let rest: Vec<usize> = (seeded_rows..kept.len()).collect();
        b.insert(&rest, &|_| {});
        let g = b.finish();
        let file = tempfile::tempdir().unwrap();
        let path = file.path().join("g");
        crate::graph_file::GraphFile::write_layers(&g, merged.len(), &path).unwrap();
        let f = crate::graph_file::GraphFile::open(&path, merged.len()).unwrap();
        let queries = crate::bench::clustered_vectors(50, dim, 40, 0.3, 17);
        let (mut hit, mut total) = (0, 0);
        for q in queries.chunks(dim) {
            let exact: Vec<u32> = exact_search(&merged, q, 10)
                .iter()
                .map(|x| x.0 as u32)
                .collect();
            let got = f.search(&merged, q, 10, 128, None);
            hit += got.iter().filter(|x| exact.contains(&x.0)).count();
            total += 10;
        }
        assert!(hit * 100 >= total * 97, "recall {hit}/{total}");
    }
}
