//! The document index of a generation: each document's key, title and chunk positions, and
//! each chunk position's document, built once per open from the document table.
//!
//! Not for: the table itself ([`crate::engine::Engine::documents`]).

use super::Key;
use crate::engine::Engine;
use crate::error::Result;

/// Lazily built maps between documents and chunk positions.
pub(crate) struct DocIndex {
    pub(super) keys: Vec<String>,
    pub(super) titles: Vec<String>,
    pub(super) mtimes: Vec<i64>,
    pub(super) chunk_pos: Vec<Vec<u32>>,
    pub(super) chunk_doc: Vec<u32>,
}

impl DocIndex {
    /// The number of chunks of the document the chunk at store position `pos` belongs to
    /// (0 when no document holds it).
    pub(super) fn doc_len_at(&self, pos: usize) -> usize {
        self.chunk_doc
            .get(pos)
            .and_then(|&d| self.chunk_pos.get(d as usize))
            .map_or(0, Vec::len)
    }
}

impl Engine {
    /// The key (path or external id) of the document chunk `id` belongs to, if the open
    /// generation holds that chunk.
    pub fn document_of_chunk(&self, id: u64) -> Result<Option<&str>> {
        let di = self.doc_index()?;
        Ok(self
            .doc_of(Key::Chunk(id), di)
            .and_then(|d| di.keys.get(d))
            .map(|k| k.as_str()))
    }

    pub(crate) fn doc_index(&self) -> Result<&DocIndex> {
        if let Some(d) = self.doc_index.get() {
            return Ok(d);
        }
        let docs = self.documents()?;
        let mut chunk_doc = vec![u32::MAX; self.segs.len()];
        let mut chunk_pos = Vec::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            let mut ps = Vec::with_capacity(d.chunks.len());
            for c in &d.chunks {
                if let Some(p) = self.segs.position(*c) {
                    chunk_doc[p] = i as u32;
                    ps.push(p as u32);
                }
            }
            chunk_pos.push(ps);
        }
        let di = DocIndex {
            keys: docs.iter().map(|d| d.key.clone()).collect(),
            titles: docs.iter().map(|d| d.title.clone()).collect(),
            mtimes: docs.iter().map(|d| d.mtime).collect(),
            chunk_pos,
            chunk_doc,
        };
        Ok(self.doc_index.get_or_init(|| di))
    }

    /// Each document's key with the store positions of its chunks (their rows in the
    /// vector file and the token codes), in document-table order: the map search itself
    /// uses, built once per open.
    pub fn document_positions(&self) -> Result<impl Iterator<Item = (&str, &[u32])>> {
        let di = self.doc_index()?;
        Ok(di
            .keys
            .iter()
            .map(String::as_str)
            .zip(di.chunk_pos.iter().map(Vec::as_slice)))
    }
}
