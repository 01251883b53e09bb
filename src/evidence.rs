//! Document evidence: a passage whose document holds other strong candidates ranks above
//! an equally scored passage that stands alone.
//!
//! Why: on documentation as it sits on disk the page that answers a question matches it
//! in several sections (the Cargo book's `cargo-vendor.html` in its name, description and
//! examples), while a page that mentions the topic once (a FAQ entry, a glossary line, a
//! command's list of files) can hold the single best-scoring chunk. Passage scores alone
//! cannot tell the two apart; the other candidates of the same document can. This is the
//! passage/document interpolation of passage-based document retrieval (Bendersky and
//! Kurland, 2008), turned around: the document's evidence adjusts the passage.
//!
//! The score is `own + weight · other`, where `own` is the passage's final score and `other`
//! the best score of another passage of its document, both min-max normalised over the
//! `depth` best entries, so the weight needs no calibration between score scales and a
//! document with no second candidate among them adds nothing. Only the head is re-ordered;
//! it stays above the rest, whose order is untouched. Chosen on the toolchain's three books
//! and checked with `eval`'s paired test on SciFact and the code collections
//! (docs/decisions.md, "Document evidence").
//!
//! Not for: documents as the unit of a search (a document search already pools its chunks),
//! or copies of one text in several documents ([`crate::copies`]).

use std::collections::HashMap;
use std::hash::Hash;

/// The settings of the document-evidence stage.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DocEvidence {
    /// Weight of the best other passage of the document, on the head's min-max scale
    /// (0 turns the stage off).
    pub weight: f32,
    /// Entries of the ranking the stage reads and re-orders.
    pub depth: usize,
    /// A section vouches only when its cosine with the question is at least this share of
    /// the best cosine among the entries read: on a small folder those entries are nearly
    /// every section, and an unrelated page's other sections must not lift it. The share
    /// of selection's guard against off-topic passages (`SelectConfig::min_similarity_share`).
    pub min_similarity_share: f32,
}

impl Default for DocEvidence {
    /// Weight 0.4 over the best 40: chosen on the toolchain's Cargo book, Reference and
    /// Rust book questions (docs/decisions.md, "Document evidence").
    fn default() -> Self {
        DocEvidence {
            weight: 0.4,
            depth: 40,
            min_similarity_share: 0.5,
        }
    }
}

/// What the stage did to one ranking: the re-ordered ranking, and for each entry of the
/// head whose document has another candidate there, the evidence it added (the weighted
/// normalised score of that other passage).
pub struct Applied<K> {
    /// The ranking, head re-ordered, scores of the head in [1, 2] and of the tail below 1.
    pub ranked: Vec<(K, f32)>,
    /// Evidence added per key.
    pub added: HashMap<K, f32>,
}

/// Where a passage sits: its document and the section of it (its heading trail), and how
/// close it is to the question.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place<D> {
    /// The document.
    pub doc: D,
    /// The section: a hash of the chunk's heading trail.
    pub section: u64,
    /// Its cosine with the question (`None`: not known, as in a lexical search; such a
    /// passage vouches for nothing).
    pub similarity: Option<f32>,
}

impl DocEvidence {
    /// Applies the stage to `ranked` (best first); `place` gives an entry's document and
    /// section. An entry without one (a chunk under no heading) takes no evidence and gives
    /// none.
    ///
    /// Evidence comes only from another section of the document. Chunks of one section
    /// continue the same passage, so a section split in two would otherwise vouch for
    /// itself; and a text without headings (an abstract, a function) gives no way to tell
    /// a second match from a continuation: measured on SciFact and the code collections,
    /// where no chunk has a heading, evidence between chunks two or more apart lowered
    /// nDCG@10 by 0.007-0.013 (p < 0.02; docs/decisions.md, "Document evidence"). Both
    /// sections must be on topic ([`DocEvidence::min_similarity_share`]).
    pub fn apply<K, D>(
        &self,
        ranked: &[(K, f32)],
        place: impl Fn(K) -> Option<Place<D>>,
    ) -> Applied<K>
    where
        K: Copy + Eq + Hash + Ord,
        D: Copy + Eq,
    {
        let n = self.depth.min(ranked.len());
        if n < 2 || self.weight <= 0.0 {
            return Applied {
                ranked: ranked.to_vec(),
                added: HashMap::new(),
            };
        }
        let head = &ranked[..n];
        let lo = head.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
        let hi = head.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
        let norm = |s: f32| if hi > lo { (s - lo) / (hi - lo) } else { 1.0 };
        let places: Vec<Option<Place<D>>> = head.iter().map(|x| place(x.0)).collect();
        let best_similarity = places
            .iter()
            .filter_map(|p| p.and_then(|p| p.similarity))
            .fold(f32::NEG_INFINITY, f32::max);
        let on_topic = |p: &Place<D>| {
            p.similarity
                .is_some_and(|s| s >= self.min_similarity_share * best_similarity)
        };
        let mut added = HashMap::new();
        // `depth` is tens of entries: comparing every pair costs less than indexing them.
        let mut out: Vec<(K, f32)> = head
            .iter()
            .zip(&places)
            .map(|(e, p)| {
                let other = p.filter(|p| on_topic(p)).map_or(0.0, |p| {
                    head.iter()
                        .zip(&places)
                        .filter_map(|(o, q)| {
                            let q = (*q)?;
                            (q.doc == p.doc && q.section != p.section && on_topic(&q))
                                .then(|| norm(o.1))
                        })
                        .fold(0.0, f32::max)
                        .max(0.0)
                });
                let plus = self.weight * other;
                if plus > 0.0 {
                    added.insert(e.0, plus);
                }
                (e.0, 1.0 + (norm(e.1) + plus) / (1.0 + self.weight))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.extend(crate::fuse::normalize(
            &ranked[n..],
            crate::fuse::Norm::MinMax,
        ));
        Applied { ranked: out, added }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documents: chunk / 10; sections: chunk % 10 / 2 (chunks 0 and 1 share one); every
    /// chunk on topic.
    fn doc(k: u32) -> Option<Place<u32>> {
        Some(Place {
            doc: k / 10,
            section: u64::from(k % 10 / 2),
            similarity: Some(0.6),
        })
    }

    #[test]
    fn a_passage_with_a_second_candidate_in_its_document_overtakes_a_lone_one() {
        // 1 (doc 0) stands alone just above 21 (doc 2), whose document also holds 25.
        let ranked = [(1, 1.0), (21, 0.95), (25, 0.7), (33, 0.5), (44, 0.0)];
        let a = DocEvidence::default().apply(&ranked, doc);
        let order: Vec<u32> = a.ranked.iter().map(|x| x.0).collect();
        assert_eq!(order, vec![21, 25, 1, 33, 44]);
        // 21's evidence is 25's normalised score (0.7) times the weight, and the reverse.
        assert!((a.added[&21] - 0.28).abs() < 1e-6);
        assert!((a.added[&25] - 0.38).abs() < 1e-6);
        assert!(!a.added.contains_key(&1));
    }

    #[test]
    fn the_tail_keeps_its_order_below_the_head_and_weight_zero_changes_nothing() {
        let ranked = [(1, 3.0), (3, 2.0), (11, 1.5), (4, 1.0), (13, 0.5)];
        let cfg = DocEvidence {
            weight: 0.5,
            depth: 3,
            ..DocEvidence::default()
        };
        let a = cfg.apply(&ranked, doc);
        let min_head = a.ranked[..3]
            .iter()
            .map(|x| x.1)
            .fold(f32::INFINITY, f32::min);
        assert!(min_head >= 1.0);
        assert_eq!(a.ranked[3].0, 4);
        assert_eq!(a.ranked[4].0, 13);
        assert!(a.ranked[3].1 <= 1.0 && a.ranked[3].1 > a.ranked[4].1);
        // 13 is past the depth: it gives 11, of the same document, no evidence.
        assert!(!a.added.contains_key(&11));
        let off = DocEvidence {
            weight: 0.0,
            depth: 3,
            ..DocEvidence::default()
        }
        .apply(&ranked, doc);
        assert_eq!(off.ranked, ranked.to_vec());
    }

    #[test]
    fn entries_without_a_document_neither_take_nor_give_evidence() {
        let ranked = [(1, 1.0), (2, 0.9), (3, 0.1)];
        let a = DocEvidence::default().apply(&ranked, |_| None::<Place<u32>>);
        let order: Vec<u32> = a.ranked.iter().map(|x| x.0).collect();
        assert_eq!(order, vec![1, 2, 3]);
        assert!(a.added.is_empty());
    }

    #[test]
    fn a_chunk_of_the_same_section_vouches_for_nothing() {
        // 22 and 23 continue one section; 1 stands alone above them.
        let ranked = [(1, 1.0), (22, 0.95), (23, 0.9), (33, 0.0)];
        let a = DocEvidence::default().apply(&ranked, doc);
        let order: Vec<u32> = a.ranked.iter().map(|x| x.0).collect();
        assert_eq!(order, vec![1, 22, 23, 33]);
        assert!(a.added.is_empty());
    }

    #[test]
    fn an_off_topic_section_neither_vouches_nor_is_vouched_for() {
        // 25 is far less similar to the question than the best (0.2 against 0.6): on a small
        // folder it is in the head only because nearly everything is.
        let ranked = [(1, 1.0), (21, 0.95), (25, 0.7), (33, 0.0)];
        let place = |k: u32| {
            doc(k).map(|p| Place {
                similarity: Some(if k == 25 { 0.2 } else { 0.6 }),
                ..p
            })
        };
        let a = DocEvidence::default().apply(&ranked, place);
        let order: Vec<u32> = a.ranked.iter().map(|x| x.0).collect();
        assert_eq!(order, vec![1, 21, 25, 33]);
        assert!(!a.added.contains_key(&21));
        // Nor does it take any: it would not be handed over (selection's guard).
        assert!(a.added.is_empty());
    }
}
