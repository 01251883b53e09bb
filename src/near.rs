//! Document expansion from dense neighbours: each chunk's BM25 entry also holds, in a field
//! of its own, the words of its nearest chunks of *other* documents (by the chunk vectors
//! the dense leg already has), and the lexical leg adds that field's BM25 with a small
//! weight ([`DEFAULT_WEIGHT`]). Only a chunk at cosine [`MIN_COSINE`] or more counts as a
//! neighbour: in a folder of unrelated files the nearest file is just another topic.
//!
//! Why: the relevant passages that neither leg ranks in its top 100 are vocabulary
//! mismatches: the question says what the passage means in other words. A passage's close
//! neighbours in meaning often use those words. This is cluster-based document expansion,
//! label-free and built from the index alone. With the shipped settings it raised the
//! default's nDCG@10 on all five train splits measured (SciFact and four code-search
//! collections) and recall@100 on four; on their test splits it moved nDCG@10 by −0.002 to
//! +0.004 and took SciFact's recall@100 from 0.9593 to 0.9660 (`docs/decisions.md`).
//!
//! The table is kept per generation (`near/{gen}.bin`, rows aligned with the chunk store)
//! so that a commit recomputes only what changed: the lists of new chunks, of chunks whose
//! neighbour left the index, and of chunks that a new chunk comes closer to than their
//! current last neighbour ([`update`]). Everything else, and its lexical entry, is kept.
//!
//! Not for: query-time expansion ([`crate::expand`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Neighbours per chunk written at index time. Chosen with [`DEFAULT_WEIGHT`] on the train
/// splits of five collections (1, 3 and 5 neighbours at weights 0.1 to 0.3): one
/// neighbour at 0.2 is the only setting that raised the default's nDCG@10 on all five
/// (+0.0009 to +0.0073, mean +0.0034; three neighbours: −0.0015 to +0.0052), with
/// recall@100 up on four (docs/decisions.md). The nearest neighbour is also the surest: a
/// second or third lends more words of a less related text.
pub const DEFAULT_NEIGHBOURS: usize = 1;

/// Beam width of the graph search for a chunk's neighbours (segments with a graph; smaller
/// ones are scanned exactly). A list keeps the one nearest chunk of another document out of
/// `max(4k, k + 8)` asked for; at 100,000 chunks `ef` 64 finds 98 % of the exact top 10
/// (`bench --scale`), and the query path's 128 doubled the build's largest stage: the
/// neighbours of each new segment are searched in every segment.
pub const SEARCH_EF: usize = 64;

/// Weight of the neighbour field's BM25 against the chunk's own, at query time.
///
/// Chosen on the train splits of five collections (SciFact, and Rust and Python code search
/// with one-sentence and whole-docstring queries; `examples/expansion_weight`, grid 0 to
/// 0.3, with [`DEFAULT_NEIGHBOURS`]): the setting whose worst change in the default's
/// nDCG@10 on any of them is best (docs/decisions.md).
pub const DEFAULT_WEIGHT: f32 = 0.2;

/// The lowest cosine at which a chunk of another document counts as a neighbour and lends
/// its words.
///
/// Why: a small folder of unrelated files has no neighbours in meaning, only a nearest
/// file, and lending its words makes a chunk match questions about another topic. On
/// MiniLM's scale, the 32 chunks of the 22 bundled sample files (one topic each) have their
/// nearest other-file chunk at 0.12 to 0.35, and off-topic questions reach 0.39 on
/// SciFact ("Abstention" in docs/decisions.md); on the collections measured, 99% of chunks
/// have their nearest at 0.46 (SciFact), 0.58 (Python) and 0.64 (Rust) or more
/// (`examples/near_cosines`). 0.4 lies between the two.
pub const MIN_COSINE: f32 = 0.4;

const MAGIC: &[u8; 8] = b"PPNEAR01";

/// Extra results asked of a search, so that a list still has `k` entries once the chunk
/// itself and its own document's chunks are left out.
const SLACK: usize = 8;

/// Neighbour lists of one generation, aligned with the chunk store's positions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NeighbourTable {
    /// Neighbours per chunk this table was built for.
    pub k: u32,
    /// Chunk id of each row (the store's order), to check alignment on read.
    pub ids: Vec<u64>,
    /// Each row's neighbours: `(chunk id, cosine)`, best first, at most `k`, none below
    /// [`MIN_COSINE`].
    pub lists: Vec<Vec<(u64, f32)>>,
}

impl NeighbourTable {
    /// Writes the table (fsynced).
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let mut bytes = MAGIC.to_vec();
        bincode::serde::encode_into_std_write(self, &mut bytes, bincode::config::standard())
            .map_err(|e| Error::invalid("neighbour table", e.to_string()))?;
        crate::store::write_synced(path, &bytes)
    }

    /// Reads a table written by [`NeighbourTable::write`].
    pub fn read(path: &Path) -> Result<NeighbourTable> {
        Self::decode(&std::fs::read(path).at(path)?, path)
    }

    /// Decodes a table's bytes (`path` names it in errors).
    pub fn decode(bytes: &[u8], path: &Path) -> Result<NeighbourTable> {
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(Error::corrupt(
                path,
                "not a pinpoint neighbour table (bad magic)",
            ));
        }
        let (t, _): (NeighbourTable, usize) =
            bincode::serde::decode_from_slice(&bytes[8..], bincode::config::standard()).map_err(
                |e| Error::Decode {
                    path: path.to_path_buf(),
                    what: e.to_string(),
                },
            )?;
        if t.ids.len() != t.lists.len() {
            return Err(Error::corrupt(
                path,
                format!("{} ids for {} neighbour lists", t.ids.len(), t.lists.len()),
            ));
        }
        Ok(t)
    }

    /// The list of chunk `id`, if the table has one.
    pub fn list_of(&self, id: u64) -> Option<&[(u64, f32)]> {
        self.ids
            .binary_search(&id)
            .ok()
            .map(|i| self.lists[i].as_slice())
    }
}

/// A commit's new table and the rows whose neighbour text differs from the previous
/// generation's (new rows included).
#[derive(Debug)]
pub struct Update {
    /// The new table, aligned with the new generation's rows.
    pub table: NeighbourTable,
    /// Rows (positions) whose list is new or changed, ascending.
    pub changed: Vec<usize>,
}

/// Top `m` rows for each of a batch of rows, `(row, cosine)`, best first; may include the
/// row itself.
pub type Search<'a> = dyn Fn(&[usize], usize) -> Vec<Vec<(usize, f32)>> + Sync + 'a;

/// The next generation's neighbour table.
///
/// - `ids`: chunk id per row, ascending (the store's order); `docs`: each row's document,
///   whose other chunks are never its neighbours (they hold its words already);
/// - `old`: the previous generation's table (empty for a new index). A row whose id is in
///   it keeps its list unless a neighbour left the index or a new row comes closer than
///   its last neighbour (or, in a list shorter than `k`, above [`MIN_COSINE`]). That second test looks from the new row: it asks for the new row's
///   `max(4k, k + 8)` nearest and updates those whose last neighbour is farther. A row that
///   is not among them keeps its list (an approximation of the exact table, which a rebuild
///   restores; on the bundled samples a sync gives exactly a fresh build's table, as
///   `tests/near.rs` checks).
///
/// The walk over the rows is linear and moves the old lists rather than copying them: at a
/// million chunks a lookup per row and a copy per list were most of a one-file commit.
pub fn update(
    k: usize,
    ids: &[u64],
    docs: &dyn Fn(usize) -> u32,
    old: NeighbourTable,
    search: &Search,
) -> Update {
    let n = ids.len();
    let NeighbourTable {
        k: old_k,
        ids: mut old_ids,
        lists: mut old_lists,
    } = old;
    if !old_ids.is_sorted() {
        let mut rows: Vec<(u64, Vec<(u64, f32)>)> = old_ids.into_iter().zip(old_lists).collect();
        rows.sort_by_key(|r| r.0);
        (old_ids, old_lists) = rows.into_iter().unzip();
    }
    // The old table's chunks that left (both id lists ascending), and the range they span:
    // a one-file delete removes a few neighbouring ids, so nearly every list entry is
    // cleared by two comparisons instead of a hash lookup (a million of those were most of
    // the delete's commit at a million chunks).
    let mut gone: Vec<u64> = Vec::new();
    let mut p = 0;
    for &id in &old_ids {
        while p < n && ids[p] < id {
            p += 1;
        }
        if p >= n || ids[p] != id {
            gone.push(id);
        }
    }
    let left = Gone::new(&gone);
    let mut draft = Draft {
        lists: Vec::with_capacity(n),
        ..Draft::default()
    };
    let mut j = 0;
    for (p, &id) in ids.iter().enumerate() {
        while j < old_ids.len() && old_ids[j] < id {
            j += 1;
        }
        if j < old_ids.len() && old_ids[j] == id {
            let l = std::mem::take(&mut old_lists[j]);
            // A list with an entry under the floor was written before the floor existed.
            if old_k as usize == k && left.keeps(&l) {
                draft.lists.push(l);
            } else {
                draft.lists.push(Vec::new());
                draft.previous.insert(p, l);
            }
        } else {
            draft.lists.push(Vec::new());
            draft.fresh.push(p);
        }
    }
    complete(k, ids.to_vec(), docs, draft, search)
}

/// [`update`] for a commit whose rows are the old table's without the `dead` ids, then the
/// `added` ids (ascending, above every old id) at the end: the same table, without the walk
/// that aligns every row of the two (7-9 ms of a one-file delete's 19-22 ms at a million
/// chunks). Only the rows that leave move the others, and one pass over the lists finds
/// those that named a chunk that left.
///
/// A sample of `change`'s rows is checked against the result before the old table is
/// touched. `Err(old)` (unchanged) when the commit is not of that shape (a table built for
/// another `k`, ids out of order, an added id not above the old ones, rows that do not
/// match): the caller then calls [`update`].
pub fn update_delta(
    k: usize,
    change: &Change,
    docs: &dyn Fn(usize) -> u32,
    old: NeighbourTable,
    search: &Search,
) -> std::result::Result<Update, NeighbourTable> {
    let Change {
        dead,
        added,
        rows,
        id_at,
    } = *change;
    let fits = old.k as usize == k
        && old.ids.is_sorted()
        && added.is_sorted()
        && match (old.ids.last(), added.first()) {
            (Some(&last), Some(&first)) => first > last,
            _ => true,
        };
    if !fits {
        return Err(old);
    }
    // Rows of the old table that leave, ascending.
    let mut leave: Vec<usize> = dead
        .iter()
        .filter_map(|d| old.ids.binary_search(d).ok())
        .collect();
    leave.sort_unstable();
    leave.dedup();
    let kept = old.ids.len() - leave.len();
    // The id the result holds at `p`, computed from the old table before changing it.
    let expected = |p: usize| -> Option<u64> {
        if p >= kept {
            return added.get(p - kept).copied();
        }
        let mut j = p;
        for &r in &leave {
            if r <= j {
                j += 1;
            } else {
                break;
            }
        }
        old.ids.get(j).copied()
    };
    let mut samples = (0..16)
        .map(|i| i * rows / 16)
        .chain(rows.checked_sub(1))
        .filter(|&p| p < rows);
    let matches = kept + added.len() == rows && samples.all(|p| expected(p) == Some(id_at(p)));
    if !matches {
        return Err(old);
    }
    let NeighbourTable {
        ids: mut next_ids,
        mut lists,
        ..
    } = old;
    let gone: Vec<u64> = leave.iter().map(|&r| next_ids[r]).collect();
    // Close the gaps the leaving rows make, from the first of them on.
    if let Some(&first) = leave.first() {
        let mut w = first;
        let mut l = 0;
        for r in first..next_ids.len() {
            if l < leave.len() && leave[l] == r {
                l += 1;
                continue;
            }
            next_ids[w] = next_ids[r];
            lists.swap(w, r);
            w += 1;
        }
        next_ids.truncate(w);
        lists.truncate(w);
    }
    let left = Gone::new(&gone);
    let mut draft = Draft::default();
    for (p, l) in lists.iter_mut().enumerate() {
        if !left.keeps(l) {
            draft.previous.insert(p, std::mem::take(l));
        }
    }
    draft.fresh = (kept..kept + added.len()).collect();
    next_ids.extend_from_slice(added);
    lists.resize_with(next_ids.len(), Vec::new);
    draft.lists = lists;
    Ok(complete(k, next_ids, docs, draft, search))
}

/// How a commit changed the rows of the table ([`update_delta`]).
#[derive(Clone, Copy)]
pub struct Change<'a> {
    /// Chunk ids that left the index (any order; ids the old table lacks are ignored).
    pub dead: &'a [u64],
    /// Chunk ids added, ascending, each above every id of the old table.
    pub added: &'a [u64],
    /// Rows of the next generation.
    pub rows: usize,
    /// The chunk id of the next generation's row.
    pub id_at: &'a dyn Fn(usize) -> u64,
}

/// The chunks that left the index (ascending), and the range they span.
struct Gone<'a> {
    ids: &'a [u64],
    lo: u64,
    hi: u64,
}

impl<'a> Gone<'a> {
    fn new(ids: &'a [u64]) -> Gone<'a> {
        Gone {
            ids,
            lo: ids.first().copied().unwrap_or(u64::MAX),
            hi: ids.last().copied().unwrap_or(0),
        }
    }

    /// Whether a kept row keeps `list`: none of its neighbours left and none is under the
    /// floor (a list written before the floor existed).
    fn keeps(&self, list: &[(u64, f32)]) -> bool {
        list.iter().all(|&(nb, s)| {
            s >= MIN_COSINE
                && !(nb >= self.lo && nb <= self.hi && self.ids.binary_search(&nb).is_ok())
        })
    }
}

/// A table under update: each row's list, empty for the rows to compute (`fresh`: new
/// rows, ascending; the keys of `previous`: kept rows whose old list is stale).
#[derive(Default)]
struct Draft {
    lists: Vec<Vec<(u64, f32)>>,
    fresh: Vec<usize>,
    previous: HashMap<usize, Vec<(u64, f32)>>,
}

/// Computes a draft's missing lists, and the kept rows a new row comes closer to than
/// their last neighbour, by `search`.
fn complete(
    k: usize,
    ids: Vec<u64>,
    docs: &dyn Fn(usize) -> u32,
    draft: Draft,
    search: &Search,
) -> Update {
    let n = ids.len();
    let Draft {
        mut lists,
        fresh,
        previous,
    } = draft;
    let mut stale: HashSet<usize> = previous.keys().copied().collect();
    // Whether row `q` has its list (neither new nor stale).
    let listed =
        |q: usize, stale: &HashSet<usize>| !stale.contains(&q) && fresh.binary_search(&q).is_err();
    let pick = |p: usize, found: &[(usize, f32)], take: usize| -> Vec<(u64, f32)> {
        found
            .iter()
            .filter(|&&(q, s)| q != p && docs(q) != docs(p) && s >= MIN_COSINE)
            .take(take)
            .map(|&(q, s)| (ids[q], s))
            .collect()
    };
    // New rows: their own lists, and the kept rows they come closer to.
    let wide = (4 * k).max(k + SLACK);
    let found = search(&fresh, wide);
    let mut new_lists: Vec<(usize, Vec<(u64, f32)>)> = Vec::with_capacity(fresh.len());
    // Rows whose search was filled by their own document's chunks (a long file): they ask
    // again, wider.
    let mut crowded = Vec::new();
    for (&p, f) in fresh.iter().zip(&found) {
        for &(q, s) in f {
            if q == p || q >= n || docs(q) == docs(p) || !listed(q, &stale) {
                continue;
            }
            let l = &lists[q];
            if s >= MIN_COSINE && (l.len() < k || s > l[k - 1].1) {
                stale.insert(q);
            }
        }
        let l = pick(p, f, k);
        if l.len() < k && f.len() >= wide && room_beyond(f) {
            crowded.push(p);
        }
        new_lists.push((p, l));
    }
    // Kept rows to recompute in full.
    let mut stale: Vec<usize> = stale.into_iter().collect();
    stale.sort_unstable();
    let found = search(&stale, k + SLACK);
    for (&p, f) in stale.iter().zip(&found) {
        let l = pick(p, f, k);
        if l.len() < k && f.len() >= k + SLACK && room_beyond(f) {
            crowded.push(p);
        }
        new_lists.push((p, l));
    }
    // One wider try; a row still short keeps what it found (its document's chunks are all
    // closer to it than any other document's).
    crowded.sort_unstable();
    let mut wider = HashMap::new();
    if !crowded.is_empty() {
        let found = search(&crowded, (wide * 8).min(n));
        for (&p, f) in crowded.iter().zip(&found) {
            wider.insert(p, pick(p, f, k));
        }
    }
    let mut changed = Vec::new();
    for (p, l) in new_lists {
        let l = wider.remove(&p).unwrap_or(l);
        // A new row had no list; a stale row's old one is in `previous`, or (a row a new
        // row came closer to) still in place.
        let before = match previous.get(&p) {
            Some(b) => Some(b),
            None => fresh.binary_search(&p).is_err().then_some(&lists[p]),
        };
        if before.is_none_or(|b| !same_ids(b, &l)) {
            changed.push(p);
        }
        lists[p] = l;
    }
    changed.sort_unstable();
    Update {
        table: NeighbourTable {
            k: k as u32,
            ids,
            lists,
        },
        changed,
    }
}

/// Whether a search's results, best first, may go on above the floor beyond the last one:
/// a list left short by its own document's chunks, not by the floor.
fn room_beyond(found: &[(usize, f32)]) -> bool {
    found.last().is_some_and(|x| x.1 >= MIN_COSINE)
}

fn same_ids(a: &[(u64, f32)], b: &[(u64, f32)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on the unit circle at these angles (degrees): cosine is a plain function of
    /// the angle between two rows, so the expected neighbours are easy to state.
    fn circle(angles: &[f32]) -> Vec<[f32; 2]> {
        angles
            .iter()
            .map(|a| {
                let r = a.to_radians();
                [r.cos(), r.sin()]
            })
            .collect()
    }

    /// Brute-force search over `v`, written apart from the code under test.
    fn brute(v: &[[f32; 2]]) -> impl Fn(&[usize], usize) -> Vec<Vec<(usize, f32)>> + Sync + '_ {
        move |rows: &[usize], m: usize| {
            rows.iter()
                .map(|&p| {
                    let mut all: Vec<(usize, f32)> = (0..v.len())
                        .map(|q| (q, v[p][0] * v[q][0] + v[p][1] * v[q][1]))
                        .collect();
                    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    all.truncate(m);
                    all
                })
                .collect()
        }
    }

    fn ids_of(t: &NeighbourTable, row: usize) -> Vec<u64> {
        t.lists[row].iter().map(|x| x.0).collect()
    }

    #[test]
    fn a_new_table_lists_the_nearest_chunks_of_other_documents() {
        // Rows 0 and 1 are one document; the rest one document each.
        let v = circle(&[0.0, 1.0, 10.0, 30.0, 60.0, 100.0]);
        let ids: Vec<u64> = (10..16).collect();
        let docs = [0, 0, 1, 2, 3, 4];
        let up = update(2, &ids, &|p| docs[p], NeighbourTable::default(), &brute(&v));
        assert_eq!(up.changed, vec![0, 1, 2, 3, 4, 5]);
        // Row 0's nearest is row 1 (1°), its own document: left out.
        assert_eq!(ids_of(&up.table, 0), vec![12, 13]);
        assert_eq!(ids_of(&up.table, 2), vec![11, 10]);
        // Row 5 (100°): row 4 is 40° away; row 3, 70° away (cosine 0.34), is under the
        // floor and lends nothing.
        assert_eq!(ids_of(&up.table, 5), vec![14]);
        let s = up.table.lists[2][0].1;
        assert!((s - 9f32.to_radians().cos()).abs() < 1e-6);
    }

    #[test]
    fn a_commit_recomputes_only_rows_whose_neighbours_changed() {
        let v = circle(&[0.0, 20.0, 45.0, 90.0, 180.0]);
        let ids: Vec<u64> = vec![1, 2, 3, 4, 5];
        let docs = [0, 1, 2, 3, 4];
        let first = update(1, &ids, &|p| docs[p], NeighbourTable::default(), &brute(&v)).table;
        assert_eq!(ids_of(&first, 3), vec![3]);
        // Next generation: chunk 3 (45°) left, chunk 6 (85°) came; rows shift.
        let v2 = circle(&[0.0, 20.0, 90.0, 180.0, 85.0]);
        let ids2: Vec<u64> = vec![1, 2, 4, 5, 6];
        let docs2 = [0, 1, 3, 4, 5];
        let up = update(1, &ids2, &|p| docs2[p], first.clone(), &brute(&v2));
        let t = &up.table;
        assert_eq!(t.ids, ids2);
        // Chunk 4 (90°) had chunk 3 (gone) and now has the new chunk 6 (85°), which has
        // chunk 4. Chunks 1 and 2 keep each other (the new chunk is farther than their
        // neighbour); chunk 5 (180°) has nothing within the floor, before and after.
        assert_eq!(ids_of(t, 0), vec![2]);
        assert_eq!(ids_of(t, 1), vec![1]);
        assert_eq!(ids_of(t, 2), vec![6]);
        assert!(t.lists[3].is_empty());
        assert_eq!(ids_of(t, 4), vec![4]);
        assert_eq!(up.changed, vec![2, 4]);
        // Nothing changes: nothing is searched, and the table is the same.
        let again = update(
            1,
            &ids2,
            &|p| docs2[p],
            t.clone(),
            &|rows: &[usize], _: usize| {
                assert!(rows.is_empty(), "no search expected, got {rows:?}");
                Vec::new()
            },
        );
        assert!(again.changed.is_empty());
        assert_eq!(&again.table, t);
    }

    #[test]
    fn a_new_chunk_closer_than_a_kept_rows_last_neighbour_replaces_it() {
        let v = circle(&[0.0, 50.0, 120.0]);
        let first = update(
            1,
            &[1, 2, 3],
            &|p| p as u32,
            NeighbourTable::default(),
            &brute(&v),
        );
        assert_eq!(ids_of(&first.table, 0), vec![2]);
        let v2 = circle(&[0.0, 50.0, 120.0, 5.0]);
        let up = update(
            1,
            &[1, 2, 3, 4],
            &|p| p as u32,
            first.table.clone(),
            &brute(&v2),
        );
        assert_eq!(ids_of(&up.table, 0), vec![4]);
        assert_eq!(ids_of(&up.table, 3), vec![1]);
        // Chunk 2 (50°) had chunk 1 (50° away); the new one is 45° away, so it changes
        // too. Chunk 3 (120°) has no neighbour: chunk 2 is 70° away (cosine 0.34, under
        // the floor), the new one 115°.
        assert_eq!(ids_of(&up.table, 1), vec![4]);
        assert!(up.table.lists[2].is_empty());
        assert_eq!(up.changed, vec![0, 1, 3]);
    }

    #[test]
    fn only_chunks_above_the_floor_are_neighbours_and_old_lists_under_it_are_redone() {
        // Two documents 80° apart (cosine 0.17): unrelated, so neither lends to the other.
        let v = circle(&[0.0, 80.0]);
        let up = update(
            1,
            &[1, 2],
            &|p| p as u32,
            NeighbourTable::default(),
            &brute(&v),
        );
        assert!(up.table.lists.iter().all(Vec::is_empty), "{:?}", up.table);
        assert!(
            (80f32.to_radians().cos() < MIN_COSINE) && (60f32.to_radians().cos() >= MIN_COSINE)
        );
        // A third comes 60° from the second (cosine 0.5): the second's empty list had room.
        let v2 = circle(&[0.0, 80.0, 140.0]);
        let next = update(1, &[1, 2, 3], &|p| p as u32, up.table.clone(), &brute(&v2));
        assert!(next.table.lists[0].is_empty());
        assert_eq!(ids_of(&next.table, 1), vec![3]);
        assert_eq!(ids_of(&next.table, 2), vec![2]);
        assert_eq!(next.changed, vec![1, 2]);
        // A table written before the floor lists the unrelated chunk: the next commit
        // redoes that list, and only it.
        let old = NeighbourTable {
            k: 1,
            ids: vec![1, 2, 3],
            lists: vec![
                vec![(2, 80f32.to_radians().cos())],
                vec![(3, 0.5)],
                vec![(2, 0.5)],
            ],
        };
        let redone = update(1, &[1, 2, 3], &|p| p as u32, old.clone(), &brute(&v2));
        assert_eq!(redone.changed, vec![0]);
        assert_eq!(redone.table, next.table);
    }

    #[test]
    fn a_table_round_trips_and_a_foreign_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("near/3.bin");
        let t = NeighbourTable {
            k: 2,
            ids: vec![4, 9],
            lists: vec![vec![(9, 0.5)], vec![(4, 0.5)]],
        };
        t.write(&p).unwrap();
        assert_eq!(NeighbourTable::read(&p).unwrap(), t);
        std::fs::write(&p, b"PPDOCS01xxxx").unwrap();
        let e = NeighbourTable::read(&p).unwrap_err().to_string();
        assert!(e.contains("3.bin") && e.contains("neighbour table"), "{e}");
    }

    /// `update_delta` from `first` (over `ids`) to the rows `ids2`, with its change.
    fn delta(
        first: &NeighbourTable,
        ids2: &[u64],
        dead: &[u64],
        added: &[u64],
        docs2: &[u32],
        v2: &[[f32; 2]],
    ) -> std::result::Result<Update, NeighbourTable> {
        let id_at = |p: usize| ids2[p];
        let change = Change {
            dead,
            added,
            rows: ids2.len(),
            id_at: &id_at,
        };
        update_delta(1, &change, &|p| docs2[p], first.clone(), &brute(v2))
    }

    #[test]
    fn a_delta_update_gives_the_full_updates_table() {
        // The commit of `a_commit_recomputes_only_rows_whose_neighbours_changed`: chunk 3
        // (45°) left, chunk 6 (85°) came.
        let v = circle(&[0.0, 20.0, 45.0, 90.0, 180.0]);
        let first = update(
            1,
            &[1, 2, 3, 4, 5],
            &|p| p as u32,
            Default::default(),
            &brute(&v),
        )
        .table;
        let v2 = circle(&[0.0, 20.0, 90.0, 180.0, 85.0]);
        let (ids2, docs2) = ([1, 2, 4, 5, 6], [0, 1, 3, 4, 5]);
        let up = delta(&first, &ids2, &[3], &[6], &docs2, &v2).expect("a delta");
        let t = &up.table;
        assert_eq!(t.ids, ids2);
        let lists: Vec<Vec<u64>> = (0..5).map(|r| ids_of(t, r)).collect();
        assert_eq!(lists, [vec![2], vec![1], vec![6], vec![], vec![4]]);
        assert_eq!(up.changed, vec![2, 4]);

        // Forty chunks in documents of three, around the circle: a file of three chunks in
        // the middle leaves, one of the first leaves, and four chunks arrive.
        let angles: Vec<f32> = (0..40).map(|i| (i * 37 % 360) as f32).collect();
        let ids: Vec<u64> = (100..140).collect();
        let docs: Vec<u32> = (0..40).map(|i| i / 3).collect();
        let first = update(
            1,
            &ids,
            &|p| docs[p],
            Default::default(),
            &brute(&circle(&angles)),
        )
        .table;
        let dead = [118, 119, 120, 100];
        let added = [140, 141, 142, 143];
        let (mut ids2, mut angles2, mut docs2) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &id) in ids.iter().enumerate() {
            if !dead.contains(&id) {
                ids2.push(id);
                angles2.push(angles[i]);
                docs2.push(docs[i]);
            }
        }
        for (j, &id) in added.iter().enumerate() {
            ids2.push(id);
            angles2.push(5.0 + 90.0 * j as f32);
            docs2.push(100 + j as u32);
        }
        let v2 = circle(&angles2);
        let full = update(1, &ids2, &|p| docs2[p], first.clone(), &brute(&v2));
        let fast = delta(&first, &ids2, &dead, &added, &docs2, &v2).expect("a delta");
        assert_eq!(fast.table, full.table);
        assert_eq!(fast.changed, full.changed);
        assert!(!full.changed.is_empty());
        // No row names a chunk that left.
        assert!(fast
            .table
            .lists
            .iter()
            .flatten()
            .all(|(id, _)| !dead.contains(id)));

        // Not a delta: rows that do not match, an added id below an old one, another k.
        let shifted: Vec<u64> = ids2.iter().map(|i| i + 1).collect();
        let back = delta(&first, &shifted, &dead, &added, &docs2, &v2).err();
        assert_eq!(back.as_ref(), Some(&first), "handed back unchanged");
        let low = delta(&first, &ids2, &dead, &[99], &docs2, &v2);
        assert!(low.is_err());
        let mut other_k = first.clone();
        other_k.k = 3;
        assert!(delta(&other_k, &ids2, &dead, &added, &docs2, &v2).is_err());

        // Every chunk left: an empty table, nothing searched.
        let all: Vec<u64> = first.ids.clone();
        let empty = delta(&first, &[], &all, &[], &[], &[]).expect("a delta");
        assert!(empty.table.ids.is_empty() && empty.table.lists.is_empty());
        assert!(empty.changed.is_empty());
    }
}
