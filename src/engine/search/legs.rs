//! The two legs of a search and their fusion: BM25 (with document expansion) beside the
//! dense leg's list, fused by the request's rule; inside a metadata filter when there is
//! one (the legs search only the chunks it lets through).
//!
//! Not for: what runs before (query embedding, the dense search itself) or after
//! (reranking, selection), which stay in the parent module.

use std::collections::HashMap;
use std::time::Instant;

use super::{Key, Ranking};
use crate::engine::collections::Allowed;
use crate::engine::request::SearchRequest;
use crate::engine::{Engine, Mode};
use crate::error::Result;
use crate::fuse::fuse;

/// What the dense leg found, shared by both lexical passes.
#[derive(Clone, Copy)]
pub(super) struct Legs<'a> {
    /// The chunks a metadata filter lets through (`None`: no filter).
    pub(super) allowed: Option<&'a Allowed>,
    pub(super) qvec: Option<&'a [f32]>,
    pub(super) den: &'a [(Key, f32)],
    pub(super) den_best: &'a HashMap<Key, usize>,
    pub(super) use_lex: bool,
    pub(super) full: bool,
    pub(super) chunk_depth: usize,
    pub(super) depth: usize,
}

impl Engine {
    /// The lexical leg's chunks for `terms`: `chunk_depth` deep, 1,000 for full features
    /// (the BM25 of candidates found only by the dense leg).
    pub(super) fn lexical_leg(
        &self,
        terms: &[(String, f32)],
        req: &SearchRequest,
        allowed: Option<&Allowed>,
        full: bool,
        chunk_depth: usize,
    ) -> Result<Vec<(u64, f32)>> {
        let deep = if full {
            chunk_depth.max(1000)
        } else {
            chunk_depth
        };
        let near = match req.mode {
            Mode::Hybrid => req.pipeline.expansion,
            _ => 0.0,
        };
        let mut l = self
            .lexical
            .search_within(terms, deep, near, allowed.map(|a| &a.ids))?;
        // A reader may see a newer lexical commit than its store: drop unknown ids.
        l.retain(|(id, _)| self.segs.position(*id).is_some());
        Ok(l)
    }

    /// Lexical leg (with `terms`), then fusion with the dense leg.
    /// `pre`: the lexical leg's list, when the caller ran it already (beside the
    /// embedding and the dense leg, [`Engine::lexical_leg`]).
    pub(super) fn fuse_pass(
        &self,
        terms: &[(String, f32)],
        legs: &Legs<'_>,
        req: &SearchRequest,
        pre: Option<Vec<(u64, f32)>>,
        timings: &mut Vec<(&'static str, f64)>,
    ) -> Result<Ranking> {
        let Legs {
            allowed,
            qvec,
            den,
            den_best,
            use_lex,
            full,
            chunk_depth,
            depth,
        } = *legs;
        let mut best_pos = den_best.clone();
        let mut lex_chunks = Vec::new();
        if use_lex {
            lex_chunks = match pre {
                Some(l) => l,
                None => {
                    let t = Instant::now();
                    let l = self.lexical_leg(terms, req, allowed, full, chunk_depth)?;
                    timings.push(("lexical", t.elapsed().as_secs_f64()));
                    l
                }
            };
        }
        let t = Instant::now();
        let mut lex_best = HashMap::new();
        let lex = self.pool(
            &lex_chunks[..lex_chunks.len().min(chunk_depth)],
            req.granularity,
            depth,
            &mut lex_best,
        )?;
        let mut bm25: HashMap<Key, f32> = HashMap::new();
        for (k, s) in self.pool(&lex_chunks, req.granularity, usize::MAX, &mut lex_best)? {
            bm25.insert(k, s);
        }
        let mut cos: HashMap<Key, f32> = den.iter().copied().collect();
        let mut cand_feats = Vec::new();
        let fused = match req.mode {
            Mode::Lexical => lex.clone(),
            Mode::Dense => den.to_vec(),
            Mode::Hybrid if full => {
                let mut cands: Vec<Key> = lex.iter().chain(den.iter()).map(|x| x.0).collect();
                cands.sort_unstable();
                cands.dedup();
                let q = qvec.unwrap_or(&[]);
                for &c in &cands {
                    if let std::collections::hash_map::Entry::Vacant(e) = cos.entry(c) {
                        let (s, pos) = self.key_cosine(c, q)?;
                        e.insert(s);
                        if let Some(pos) = pos {
                            best_pos.entry(c).or_insert(pos);
                        }
                    }
                }
                let mut by_lex: Vec<(Key, f32)> = cands
                    .iter()
                    .map(|c| (*c, bm25.get(c).copied().unwrap_or(0.0)))
                    .collect();
                let mut by_den: Vec<(Key, f32)> = cands.iter().map(|c| (*c, cos[c])).collect();
                cand_feats = by_lex
                    .iter()
                    .zip(&by_den)
                    .map(|(l, d)| (l.0, l.1, d.1))
                    .collect();
                by_lex.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                by_den.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                fuse(&[&by_lex, &by_den], &req.pipeline.fusion)
            }
            Mode::Hybrid => {
                let mut f = fuse(&[&lex, den], &req.pipeline.fusion);
                f.truncate(depth);
                f
            }
        };
        timings.push(("fuse", t.elapsed().as_secs_f64()));
        for (k, p) in lex_best {
            best_pos.entry(k).or_insert(p);
        }
        Ok(Ranking {
            cands: cand_feats,
            best_pos,
            lex,
            den: den.to_vec(),
            fused,
            final_: Vec::new(),
            bm25,
            cos,
            rerank: HashMap::new(),
            rerank_weight: 0.0,
            rule: HashMap::new(),
            evidence: HashMap::new(),
        })
    }
}
