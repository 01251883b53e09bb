//! Where each candidate of a ranking sits for the document-evidence stage
//! ([`crate::evidence`]): its document and section, as selection will hand it over.
//!
//! Not for: the stage's scoring (`crate::evidence`), or selection's own copy handling.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::Key;
use crate::engine::Engine;
use crate::error::Result;
use crate::evidence::{Applied, DocEvidence, Place};

impl Engine {
    /// Applies `ev` to a chunk ranking. `collapse` (selection hands over one copy of a text
    /// several files hold) places a chunk of an aggregate page whose text a chapter holds
    /// in the chapter, as selection will: the aggregate page's many chunks must not vouch
    /// for each other.
    pub(super) fn document_evidence(
        &self,
        ev: &DocEvidence,
        ranked: &[(Key, f32)],
        cosines: &HashMap<Key, f32>,
        collapse: bool,
    ) -> Result<Applied<Key>> {
        let di = self.doc_index()?;
        let doc_chunks = |pos: usize| di.doc_len_at(pos);
        let place = |k: Key| -> Result<Option<Place<usize>>> {
            let Key::Chunk(id) = k else { return Ok(None) };
            let Some(mut pos) = self.segs.position(id) else {
                return Ok(None);
            };
            let mut rec = self.segs.get(pos)?;
            if collapse {
                if let Some((copy, copy_pos)) = self.specific_copy(&rec, pos, &doc_chunks)? {
                    (rec, pos) = (copy, copy_pos);
                }
            }
            let (Some(d), Some(heading)) = (di.doc_at(pos), rec.heading.as_deref()) else {
                return Ok(None);
            };
            // Sections are only compared for equality within one query.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            heading.hash(&mut h);
            Ok(Some(Place {
                doc: d,
                section: h.finish(),
                similarity: cosines.get(&k).copied(),
            }))
        };
        let places: HashMap<Key, Place<usize>> = ranked
            .iter()
            .take(ev.depth)
            .filter_map(|&(k, _)| place(k).transpose().map(|p| p.map(|p| (k, p))))
            .collect::<Result<_>>()?;
        Ok(ev.apply(ranked, |k| places.get(&k).copied()))
    }
}
