//! Writing one segment's files: its chunk store, text keys, vectors, token codes, and once
//! it is big enough its graph (built from nothing, or for a merge from its largest
//! member's graph) with the int8 copy of an index that asked for one. Commits and merges
//! both write segments this way.
//!
//! Not for: what a generation lists (`commit.rs`) or when segments merge (`merge.rs`).

use super::Engine;
use crate::dense::DenseIndex;
use crate::error::{Error, IoContext, Result};
use crate::graph_build::{GraphBuilder, Layers};
use crate::graph_file::GraphFile;
use crate::late::{share, ChunkCodes, PassageCodes, PieceBook, SharedCodes, TokenCodes};
use crate::segment::{Segment, SegmentMeta};
use crate::sq8::{Sq8Vectors, VectorPrecision};
use crate::store::{
    sync_dir, write_chunk_entries, write_vectors, ChunkEntry, ChunkRecord, ChunkStore, VectorFile,
};
use std::sync::Arc;

/// Where a new segment's vectors come from.
pub(super) enum SegmentVectors<'a> {
    /// In memory, row-major (a commit's new chunks).
    Owned(Vec<f32>),
    /// The live rows of these segments, in order (a merge): copied from their files.
    LiveRowsOf(&'a [Segment]),
    /// The live rows of these segments, then these rows (a commit folded into the last
    /// segment, `super::merge::fold_target`).
    Appended(&'a [Segment], Vec<f32>),
}

/// Chunks whose carried token codes are copied between two releases of their pages
/// ([`crate::segment::Segments::release_pages`]).
const RELEASE_EVERY: usize = 8192;

/// An existing graph a merged segment's graph starts from: the graph's layers, and for
/// each of its rows the row it became in the merged segment (`None`: deleted).
pub(super) struct GraphSeed {
    pub(super) layers: Layers,
    pub(super) rows: Vec<Option<u32>>,
}

/// Where a chunk's token codes for the next generation come from.
pub(super) enum Codes {
    /// The chunk at this position of the current generation.
    Old(usize),
    /// Computed in this commit, its references read through the index's codebook.
    New {
        /// The chunk's codes.
        codes: SharedCodes,
        /// The codebook the references name.
        book: Arc<PieceBook>,
    },
}

impl Engine {
    /// The stored form of a commit's new codes and the codebook their references name: for
    /// an index that shares codes ([`crate::late::share`]), the index's codebook, with
    /// codes voted for the pieces it lacks when the commit brings
    /// [`share::VOTE_MIN_CHUNKS`] new chunks; every code its own otherwise.
    pub(super) fn share_codes(
        &self,
        codes: Vec<PassageCodes>,
    ) -> (Vec<SharedCodes>, Arc<PieceBook>) {
        use rayon::prelude::*;
        let code_dim = self.manifest.dims().codes;
        let Some(sharing) = self.manifest.token_sharing.filter(|_| !codes.is_empty()) else {
            let own = codes
                .into_iter()
                .map(|c| SharedCodes::own(c.codes))
                .collect();
            return (
                own,
                Arc::new(PieceBook::new(crate::late::code_bytes(code_dim))),
            );
        };
        let pieces = codes.iter().flat_map(|c| c.pieces.iter().copied());
        let mut book = self.segs.piece_book(code_dim, pieces);
        if codes.len() >= share::VOTE_MIN_CHUNKS {
            book.vote(&codes);
        }
        let shared = codes
            .into_par_iter()
            .map(|c| book.reduce(&c, sharing))
            .collect();
        (shared, Arc::new(book))
    }

    /// For an index that borrows ([`share::Sharing::borrow`]): each new chunk whose text
    /// this commit embedded for it alone borrows from the new chunk recorded just before it
    /// in the same document ([`SharedCodes::borrow_from`]), which the segment writes just
    /// before it. `codes` are indexed as `embed_of` names them.
    pub(super) fn borrow_codes(
        &self,
        records: &[ChunkRecord],
        embed_of: &[Option<usize>],
        uses: &[usize],
        codes: &mut [SharedCodes],
        book: &PieceBook,
    ) {
        let Some(sharing) = self.manifest.token_sharing.filter(|s| s.borrow) else {
            return;
        };
        let nb = crate::late::code_bytes(self.manifest.dims().codes);
        for slot in 1..records.len().min(embed_of.len()) {
            let (Some(lender), Some(k)) = (embed_of[slot - 1], embed_of[slot]) else {
                continue;
            };
            if records[slot - 1].doc != records[slot].doc || uses.get(k) != Some(&1) || lender == k
            {
                continue;
            }
            // The lender's codes: own, shared and borrowed (the writer bounds how far back a
            // borrowed code may be stored, `late::file::MAX_LEND_DEPTH`).
            let Some(l) = codes.get(lender) else { continue };
            let stored: Vec<u8> = l
                .own
                .iter()
                .copied()
                .chain(
                    l.refs
                        .iter()
                        .filter_map(|&p| book.get(p))
                        .flatten()
                        .copied(),
                )
                .chain(l.borrowed.iter().copied())
                .collect();
            let lent: Vec<&[u8]> = stored.chunks_exact(nb.max(1)).collect();
            if let Some(c) = codes.get_mut(k) {
                c.borrow_from(&lent, nb, sharing.copy_bits);
            }
        }
    }
}

impl Engine {
    /// Writes segment `id` from `records` (ids ascending), their vectors and token codes,
    /// with a graph when it is big enough ([`crate::dense::HnswParams::min_points`]),
    /// started from `seed` when a merge has one.
    pub(super) fn write_segment(
        &self,
        id: u64,
        records: &[ChunkRecord],
        vecs: SegmentVectors<'_>,
        codes: &[Codes],
        keys: &[u64],
        seed: Option<GraphSeed>,
    ) -> Result<(SegmentMeta, Segment)> {
        let chunks: Vec<ChunkEntry> = records.iter().map(ChunkEntry::Record).collect();
        let (_, seg) = self.write_segment_without_graph(id, &chunks, vecs, codes, keys)?;
        self.add_graph(seg, seed)
    }

    /// `seg` with a graph built and written when it is big enough
    /// ([`crate::dense::HnswParams::min_points`]), started from `seed` when a merge has one.
    pub(super) fn add_graph(
        &self,
        seg: Segment,
        seed: Option<GraphSeed>,
    ) -> Result<(SegmentMeta, Segment)> {
        let params = &self.cfg.hnsw;
        let rows = seg.store().len();
        let id = seg.meta().id;
        if rows < params.min_points.max(1) {
            return Ok((seg.meta().clone(), seg));
        }
        // What the stages before freed is handed back before the graph's own memory
        // grows on top of it (the build's peak, [`crate::allocator`]).
        crate::allocator::purge();
        let vectors = seg.dense().vectors();
        let progress = self.progress.clone();
        let tick = move |n: u64| progress.inc(n);
        let layers = match seed {
            Some(seed) => {
                let mut seeded = vec![false; rows];
                for &r in seed.rows.iter().flatten() {
                    if let Some(x) = seeded.get_mut(r as usize) {
                        *x = true;
                    }
                }
                let rest: Vec<usize> = (0..rows).filter(|&r| !seeded[r]).collect();
                // Seeding (copying the seed's links) counts as graph build time.
                self.progress.start("hnsw", rest.len() as u64);
                let b = GraphBuilder::seeded(params, vectors, &seed.layers, &seed.rows);
                // The builder holds the seed's links now; its copy need not stay through
                // the inserts.
                drop(seed);
                b.insert(&rest, &tick);
                b.finish()
            }
            None => {
                self.progress.start("hnsw", rows as u64);
                crate::graph_build::build(params, vectors, &tick)
            }
        };
        let rel = crate::segment::graph_file(id);
        GraphFile::write_layers(&layers, rows, &self.dir.join(&rel))?;
        drop(layers);
        seg.dense().vectors().release_pages();
        // The int8 copy the graph walks, in an index that asked for it ([`crate::sq8`]).
        let sq8 = if self.manifest.vector_precision == VectorPrecision::Int8 {
            let f = crate::segment::sq8_file(id);
            Sq8Vectors::write(&self.dir.join(&f), seg.dense().vectors())?;
            Some(f)
        } else {
            None
        };
        sync_dir(&self.dir.join("dense"))?;
        self.progress.finish();
        let mut seg = seg.with_graph_file(&self.dir, rel);
        if let Some(f) = sq8 {
            seg = seg.with_sq8(&self.dir, f)?;
        }
        Ok((seg.meta().clone(), seg))
    }

    /// The files of segment `id` other than its graph.
    pub(super) fn write_segment_without_graph(
        &self,
        id: u64,
        chunks: &[ChunkEntry<'_>],
        vecs: SegmentVectors<'_>,
        codes: &[Codes],
        keys: &[u64],
    ) -> Result<(SegmentMeta, Segment)> {
        let dim = self.spec.dim;
        let dir = &self.dir;
        let chunks_file = crate::segment::chunks_file(id);
        let vectors = crate::segment::vectors_file(id);
        write_chunk_entries(&dir.join(&chunks_file), chunks)?;
        let keys_path = if keys.len() == chunks.len() {
            let f = crate::segment::keys_file(id);
            crate::segment::TextKeys::write(&dir.join(&f), keys)?;
            Some(f)
        } else {
            None
        };
        match &vecs {
            SegmentVectors::Owned(v) => write_vectors(&dir.join(&vectors), dim, v)?,
            SegmentVectors::LiveRowsOf(members) => {
                copy_vector_rows(&dir.join(&vectors), dim, members, &[])?
            }
            SegmentVectors::Appended(members, tail) => {
                copy_vector_rows(&dir.join(&vectors), dim, members, tail)?
            }
        }
        let store = ChunkStore::open(&dir.join(&chunks_file))?;
        let vfile = VectorFile::open(&dir.join(&vectors), dim)?;
        let (codes_path, late) = if self.manifest.token_codes {
            if codes.len() != chunks.len() {
                return Err(Error::invalid(
                    "token codes",
                    format!("{} entries for {} chunks", codes.len(), chunks.len()),
                ));
            }
            let f = crate::segment::codes_file(id);
            std::fs::create_dir_all(dir.join("late")).at(dir.join("late"))?;
            // Codes of chunks carried over are read from their mapped segment as the new
            // one is written: a commit holds only the new chunks' codes in memory. Their
            // pages are let go as they are copied, a few thousand chunks at a time: a fold
            // of a million chunks reads 2.5 GB of them (`bench --scale`), which would
            // otherwise stay resident until the old segment is dropped.
            let code_dim = self.manifest.dims().codes;
            let nb = crate::late::code_bytes(code_dim);
            let segs = &self.segs;
            let parts = codes.iter().enumerate().map(|(i, c)| {
                if i % RELEASE_EVERY == RELEASE_EVERY - 1 {
                    segs.release_pages();
                }
                match c {
                    Codes::Old(pos) => segs.codes(*pos),
                    Codes::New { codes, book } => ChunkCodes::shared(nb, codes, book),
                }
            });
            TokenCodes::write(&dir.join(&f), code_dim, parts)?;
            self.segs.release_pages();
            sync_dir(&dir.join("late"))?;
            let t = TokenCodes::open(&dir.join(&f), code_dim)?;
            (Some(f), t)
        } else {
            (None, TokenCodes::empty(self.manifest.dims().codes))
        };
        let meta = SegmentMeta {
            id,
            rows: chunks.len() as u64,
            deleted: 0,
            chunks: chunks_file,
            vectors,
            codes: codes_path,
            graph: None,
            graph_file: None,
            deletes: None,
            keys: keys_path,
            sq8: None,
        };
        let seg = Segment::assemble(
            meta.clone(),
            store,
            DenseIndex::new(vfile, None),
            late,
            None,
        );
        Ok((meta, seg))
    }
}

/// Writes the live rows of `members`, then the rows of `tail`, as one vector file.
fn copy_vector_rows(
    path: &std::path::Path,
    dim: usize,
    members: &[Segment],
    tail: &[f32],
) -> Result<()> {
    let rows = members
        .iter()
        .flat_map(|seg| (0..seg.live()).map(|i| seg.dense().vectors().row(seg.live_row(i))))
        .chain(tail.chunks_exact(dim.max(1)));
    let count = members.iter().map(Segment::live).sum::<usize>() + tail.len() / dim.max(1);
    crate::store::write_vector_rows(path, dim, count, rows)?;
    // Their rows are copied: their pages need not stay in memory while the new segment's
    // graph is built over its own file.
    for seg in members {
        seg.dense().vectors().release_pages();
    }
    Ok(())
}
