//! What an index holds and whether it is sound: `pinpoint verify` (every file against its
//! checksum, the stores against each other) and `pinpoint stats`.
//!
//! Not for: repairing anything (a rebuild does, `rebuild.rs`).

use std::collections::HashSet;
use std::path::Path;

use super::artifacts;
use super::Engine;
use crate::error::Result;
use crate::store::file_sum;

impl Engine {
    /// Checks every file of the current generation against the checksums in the manifest
    /// and the cross-index invariants (the same chunks in the store, the vectors, the lexical
    /// index, the document table and the graph). Returns the problems found (empty: sound).
    pub fn verify(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for f in artifacts::generation_files(&self.manifest, self.lexical.has_near()) {
            if !self.manifest.files.iter().any(|x| x.path == f) {
                problems.push(format!(
                    "{f}: a file of this generation that the manifest does not record"
                ));
            }
        }
        for f in &self.manifest.files {
            let name = artifacts::artifact_of(&f.path)
                .map_or_else(|| f.path.clone(), |a| a.describe(&f.path));
            match file_sum(&self.dir, &f.path) {
                Ok(got) if got.size != f.size => problems.push(format!(
                    "{name}: {} bytes, manifest says {}",
                    got.size, f.size
                )),
                Ok(got) if got.crc32 != f.crc32 => problems.push(format!(
                    "{name}: checksum {:08x}, manifest says {:08x} (file damaged)",
                    got.crc32, f.crc32
                )),
                Ok(_) => {}
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        let store_ids: Vec<u64> = (0..self.segs.len()).map(|i| self.segs.id_at(i)).collect();
        if store_ids.windows(2).any(|w| w[0] >= w[1]) {
            problems.push("chunk store ids are not strictly ascending".into());
        }
        let lex_ids = self.lexical.all_chunk_ids()?;
        if lex_ids != store_ids {
            let ls: HashSet<u64> = lex_ids.iter().copied().collect();
            let ss: HashSet<u64> = store_ids.iter().copied().collect();
            problems.push(format!(
                "lexical index and chunk store disagree: {} chunks only in lexical, {} only in the store",
                ls.difference(&ss).count(),
                ss.difference(&ls).count()
            ));
        }
        for seg in self.segs.segments() {
            let m = seg.meta();
            if seg.dense().vectors().len() != seg.store().len() {
                problems.push(format!(
                    "segment {}: {} vectors for {} chunks",
                    m.id,
                    seg.dense().vectors().len(),
                    seg.store().len()
                ));
            }
            if self.manifest.token_codes && seg.codes().len() != seg.store().len() {
                problems.push(format!(
                    "segment {}: token codes of {} chunks for {} chunks",
                    m.id,
                    seg.codes().len(),
                    seg.store().len()
                ));
            }
            if let Some(f) = &m.codes {
                if let Err(e) = seg.codes().check(&self.dir.join(f)) {
                    problems.push(format!("segment {}: {e}", m.id));
                }
            }
            if let Err(e) = seg.graph_file() {
                problems.push(format!("segment {}: {e}", m.id));
            }
            match seg.dense().graph() {
                Ok(Some(g)) if g.get_nb_point() < seg.live() => problems.push(format!(
                    "segment {}: HNSW graph has {} points for {} chunks",
                    m.id,
                    g.get_nb_point(),
                    seg.live()
                )),
                Ok(_) => {}
                Err(e) => problems.push(format!("segment {}: {e}", m.id)),
            }
        }
        let mut doc_ids: Vec<u64> = self
            .documents()?
            .iter()
            .flat_map(|d| d.chunks.iter().copied())
            .collect();
        doc_ids.sort_unstable();
        if doc_ids != store_ids {
            problems.push("document table and chunk store disagree on the chunk set".into());
        }
        if self.manifest.counts.chunks as usize != store_ids.len() {
            problems.push(format!(
                "manifest counts {} chunks, store holds {}",
                self.manifest.counts.chunks,
                store_ids.len()
            ));
        }
        if let (Some(near), true) = (&self.near_file, self.lexical.has_near()) {
            match super::tables::read_near(near) {
                Ok(t) if t.ids != store_ids => problems.push(format!(
                    "neighbour table lists {} chunks, the store holds {} (or other ids)",
                    t.ids.len(),
                    store_ids.len()
                )),
                Ok(t) => {
                    let dangling = t
                        .lists
                        .iter()
                        .flatten()
                        .filter(|(id, _)| store_ids.binary_search(id).is_err())
                        .count();
                    if dangling > 0 {
                        problems.push(format!(
                            "neighbour table names {dangling} chunks that are not in the store"
                        ));
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        Ok(problems)
    }

    /// Facts for `pinpoint stats`.
    pub fn stats(&self) -> Result<Stats> {
        let mut bytes = Vec::new();
        for sub in artifacts::folders() {
            bytes.push((sub.to_string(), dir_size(&self.dir.join(sub))));
        }
        Ok(Stats {
            index: self.dir.display().to_string(),
            generation: self.manifest.generation,
            documents: self.manifest.counts.documents,
            chunks: self.manifest.counts.chunks,
            model: self.manifest.model.id.clone(),
            model_dir: self.manifest.model_dir.clone(),
            dimension: self.manifest.model.dim,
            precision: self.manifest.precision,
            encoder: encoder_path(self.manifest.precision),
            chunk_tokens: self.manifest.chunking.max_tokens,
            chunk_overlap: self.manifest.chunking.overlap,
            hnsw: self.segs.has_graph(),
            segments: self
                .segs
                .segments()
                .iter()
                .map(|s| s.meta().clone())
                .collect(),
            token_codes: self.manifest.token_codes.then(|| self.segs.tokens()),
            token_code_bits: self
                .manifest
                .token_codes
                .then(|| self.manifest.dims().codes),
            token_codes_projected: self.manifest.token_bits > 0,
            token_references: self
                .manifest
                .token_codes
                .then(|| self.segs.token_references()),
            token_borrows: self.manifest.token_codes.then(|| self.segs.token_borrows()),
            token_sharing: self.manifest.token_sharing,
            token_units: self
                .manifest
                .token_codes
                .then_some(self.manifest.token_units),
            neighbours: if self.lexical.has_near() {
                self.manifest.neighbours
            } else {
                0
            },
            bytes_on_disk: bytes,
            collections: self.collections()?,
        })
    }
}

/// Facts about an index.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// Index folder.
    pub index: String,
    /// Current generation.
    pub generation: u64,
    /// Documents.
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
    /// Model identity.
    pub model: String,
    /// Model folder.
    pub model_dir: String,
    /// Vector dimension.
    pub dimension: usize,
    /// Arithmetic of the encoder the index was built with (its queries use the same).
    pub precision: crate::quant::Precision,
    /// The code path that embeds this index's queries on this machine, e.g.
    /// `int8 avx512-vnni` (the CPU's features are detected at run time).
    pub encoder: String,
    /// Chunk size in tokens.
    pub chunk_tokens: usize,
    /// Chunk overlap in tokens.
    pub chunk_overlap: usize,
    /// Whether an HNSW graph is built in any segment (else exact scan).
    pub hnsw: bool,
    /// The segments: each one's chunks (written and deleted) and whether it has a graph.
    pub segments: Vec<crate::segment::SegmentMeta>,
    /// Passage tokens kept as token codes (`None`: the index keeps none).
    pub token_codes: Option<u64>,
    /// Bits of one token's code (`None`: no codes).
    pub token_code_bits: Option<usize>,
    /// Whether the codes are signs of a projection ([`crate::late::TokenProjection`]) rather
    /// than of every dimension (indexes written before projections).
    pub token_codes_projected: bool,
    /// Of `token_codes`, the tokens stored as a reference to their piece's shared code
    /// (`None`: no codes).
    pub token_references: Option<u64>,
    /// Of `token_codes`, the tokens stored as a borrow of a code the chunk before stores
    /// (`None`: no codes).
    pub token_borrows: Option<u64>,
    /// How the index shares token codes ([`crate::late::share`]; `None`: it does not).
    pub token_sharing: Option<crate::late::Sharing>,
    /// What each token code stands for (`None`: no codes).
    pub token_units: Option<crate::late::TokenUnits>,
    /// Dense neighbours per chunk in the lexical index (document expansion; 0: none).
    pub neighbours: usize,
    /// Bytes on disk per part.
    pub bytes_on_disk: Vec<(String, u64)>,
    /// Each collection's documents and chunks (one unnamed collection for an index that
    /// mirrors one folder).
    pub collections: Vec<super::CollectionStats>,
}

/// What embeds in `precision` on this CPU (the fused encoder; GPUs run candle in f32).
fn encoder_path(precision: crate::quant::Precision) -> String {
    match precision {
        crate::quant::Precision::F32 => "f32 (gemm, AVX-512/AVX2 detected at run time)".into(),
        crate::quant::Precision::Int8 => {
            format!("int8 ({})", crate::quant::Kernel::detect().name())
        }
    }
}

/// Bytes of the files below `p` (0 where unreadable).
pub(crate) fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
