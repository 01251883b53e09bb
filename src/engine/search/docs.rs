//! The document index of a generation: each document's key, title and chunk positions, and
//! each chunk position's document, built once per open from the document table.
//!
//! It is read straight from the table's mapped bytes ([`tables::visit_docs`]) into a few
//! flat arrays, not from the decoded table: a cold query of a million-document index
//! spent a third of a second and 280 MB decoding a record per document (with its hash and
//! four allocations) and another 160 MB copying keys and titles out of them.
//!
//! Not for: the table itself ([`crate::engine::Engine::documents`]).

use super::Key;
use crate::engine::tables::{self, DocView};
use crate::engine::Engine;
use crate::error::Result;
use crate::segment::Segments;

/// Strings one after another in one buffer: a million keys are two allocations, not a
/// million.
#[derive(Default)]
struct Strings {
    text: String,
    ends: Vec<usize>,
}

impl Strings {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Maps between documents (their rank in the key-ordered table) and chunk positions.
pub(crate) struct DocIndex {
    keys: Strings,
    titles: Strings,
    mtimes: Vec<i64>,
    /// Document `d`'s chunk positions are `chunk_pos[chunk_start[d]..chunk_start[d + 1]]`.
    chunk_start: Vec<usize>,
    chunk_pos: Vec<u32>,
    /// Each store position's document (`u32::MAX`: none claims it, a damaged table).
    chunk_doc: Vec<u32>,
}

impl DocIndex {
    fn new(chunks: usize) -> DocIndex {
        DocIndex {
            keys: Strings::default(),
            titles: Strings::default(),
            mtimes: Vec::new(),
            chunk_start: vec![0],
            chunk_pos: Vec::with_capacity(chunks),
            chunk_doc: vec![u32::MAX; chunks],
        }
    }

    /// Appends the next document of the table (its chunks that `segs` holds).
    fn push(&mut self, d: DocView<'_>, segs: &Segments) {
        let i = self.mtimes.len() as u32;
        for &c in d.chunks {
            if let Some(p) = segs.position(c) {
                self.chunk_doc[p] = i;
                self.chunk_pos.push(p as u32);
            }
        }
        self.chunk_start.push(self.chunk_pos.len());
        self.keys.push(d.key);
        self.titles.push(d.title);
        self.mtimes.push(d.mtime);
    }

    /// The number of documents.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Document `d`'s key (path or external id).
    pub(super) fn key(&self, d: usize) -> Option<&str> {
        self.keys.get(d)
    }

    /// The document whose key is `key` (the table is ordered by key).
    pub(super) fn find(&self, key: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid)?.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Document `d`'s title.
    pub(super) fn title(&self, d: usize) -> Option<&str> {
        self.titles.get(d)
    }

    /// Document `d`'s modification time (ns since the epoch).
    pub(super) fn mtime(&self, d: usize) -> Option<i64> {
        self.mtimes.get(d).copied()
    }

    /// The store positions of document `d`'s chunks, in chunk-id order (empty for an
    /// unknown document).
    pub(super) fn chunks(&self, d: usize) -> &[u32] {
        match (self.chunk_start.get(d), self.chunk_start.get(d + 1)) {
            (Some(&a), Some(&b)) => &self.chunk_pos[a..b],
            _ => &[],
        }
    }

    /// The document of the chunk at store position `pos`.
    pub(super) fn doc_at(&self, pos: usize) -> Option<usize> {
        self.chunk_doc
            .get(pos)
            .filter(|&&d| d != u32::MAX)
            .map(|&d| d as usize)
    }

    /// The number of chunks of the document the chunk at store position `pos` belongs to
    /// (0 when no document holds it).
    pub(super) fn doc_len_at(&self, pos: usize) -> usize {
        self.doc_at(pos).map_or(0, |d| self.chunks(d).len())
    }
}

impl Engine {
    /// The key (path or external id) of the document chunk `id` belongs to, if the open
    /// generation holds that chunk.
    pub fn document_of_chunk(&self, id: u64) -> Result<Option<&str>> {
        let di = self.doc_index()?;
        Ok(self.doc_of(Key::Chunk(id), di).and_then(|d| di.key(d)))
    }

    pub(crate) fn doc_index(&self) -> Result<&DocIndex> {
        if let Some(d) = self.doc_index.get() {
            return Ok(d);
        }
        let mut di = DocIndex::new(self.segs.len());
        // A writer (or a sync) that decoded the table already builds from it; a reader
        // streams the mapped table.
        let streamed = match (self.docs.get(), &self.docs_file) {
            (None, Some(chain)) => tables::visit_docs(chain, &mut |d| di.push(d, &self.segs))?,
            _ => false,
        };
        if !streamed {
            di = DocIndex::new(self.segs.len());
            for d in self.documents()? {
                di.push(DocView::of(d), &self.segs);
            }
        }
        Ok(self.doc_index.get_or_init(|| di))
    }

    /// Each document's key with the store positions of its chunks (their rows in the
    /// vector file and the token codes), in document-table order: the map search itself
    /// uses, built once per open.
    pub fn document_positions(&self) -> Result<impl Iterator<Item = (&str, &[u32])>> {
        let di = self.doc_index()?;
        Ok((0..di.len()).map(move |d| (di.key(d).unwrap_or_default(), di.chunks(d))))
    }
}
