//! The query path: legs, expansion, fusion, reranking, rules and selection.
//!
//! `Query -> (lexical, dense) candidates -> [PRF second pass] -> fused -> reranked ->
//! rules -> selected context`. Every stage records what it saw, so a hit can explain itself
//! (`--explain`) and the evaluator can show where a relevant passage was lost.
//!
//! Not for: the request and answer types (`request.rs`) or the limits a request must keep (`limits.rs`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::collections::Allowed;
use super::request::{
    Explain, Granularity, Hit, Pipeline, RerankConfig, RerankKind, SearchOutput, SearchRequest,
};
use super::{limits, Engine, Mode};
use crate::chunk::contextual_text;
use crate::embed::{dot, TokenMatrix};
use crate::error::{Error, Result};
use crate::expand;
use crate::fuse::{fuse, normalize, Fusion, Norm};
use crate::late::QueryCodes;
use crate::lexical::LexicalIndex;
use crate::rerank::{best_part, CrossEncoder, Reranker, SentenceReranker, TokenReranker};
use crate::select::{select_with_floor, FloorScan, Passage, SelectConfig, Stop, FLOOR_RANK};
use rayon::prelude::*;

mod docs;
mod evidence;
mod legs;
pub(crate) use docs::DocIndex;
use legs::Legs;

/// What an entry of a ranking stands for: a chunk, by id, in a chunk search; a document,
/// by its index in the document table, in a document search. The two were both `u64`,
/// told apart only by the request's granularity, so a document index could be looked up
/// as a chunk id (or the reverse) without a type error; now every map and list of a
/// [`Ranking`] says which it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    /// A chunk id.
    Chunk(u64),
    /// A document's index in the document table.
    Doc(usize),
}

/// One query's ranking and what each stage saw, by [`Key`].
struct Ranking {
    lex: Vec<(Key, f32)>,
    den: Vec<(Key, f32)>,
    fused: Vec<(Key, f32)>,
    final_: Vec<(Key, f32)>,
    bm25: HashMap<Key, f32>,
    cos: HashMap<Key, f32>,
    rerank: HashMap<Key, f32>,
    /// The weight the reranked head was blended with.
    rerank_weight: f32,
    rule: HashMap<Key, f32>,
    /// Document evidence added ([`crate::evidence`]).
    evidence: HashMap<Key, f32>,
    /// Documents: position of the chunk that stands for them (best cosine, else BM25).
    best_pos: HashMap<Key, usize>,
    /// Full-feature candidates: (key, BM25, cosine).
    cands: Vec<(Key, f32, f32)>,
}

/// A lexical leg's chunks: `(chunk id, BM25)`, best first.
type LexicalList = Vec<(u64, f32)>;

impl Engine {
    /// The pipeline `pinpoint query` runs without flags: the one stored by `pinpoint tune`
    /// in this index, else [`Pipeline::default`].
    /// An index without token codes answers without token reranking unless told to (it
    /// would have to encode every candidate at query time).
    pub fn default_pipeline(&self) -> Pipeline {
        let stored = self
            .manifest
            .search_defaults
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        match stored {
            Some(p) => p,
            None => {
                let mut p = Pipeline::default();
                if !self.manifest.token_codes {
                    p.rerank = None;
                }
                p
            }
        }
    }

    /// Whether this index keeps token codes (see [`crate::late`]).
    pub fn has_token_codes(&self) -> bool {
        self.manifest.token_codes
    }

    /// Stores `p` as this index's default pipeline (a new manifest, written atomically).
    pub fn set_default_pipeline(&mut self, p: &Pipeline) -> Result<()> {
        self.require_writer()?;
        let v = serde_json::to_value(p).map_err(|e| Error::invalid("pipeline", e.to_string()))?;
        self.manifest.search_defaults = Some(v);
        self.manifest.write_atomic(&self.dir.join(super::MANIFEST))
    }

    /// Runs a search and returns the hits. No hits can mean an empty index or an
    /// abstention ([`SelectConfig::min_similarity`]) as well as no match:
    /// [`Engine::search_detailed`]'s `note` tells which.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>> {
        Ok(self.search_detailed(req)?.hits)
    }

    /// Runs a search and returns the hits with what each stage saw.
    ///
    /// When selection runs out of candidates before `k` passages (overlapping chunks of
    /// one file merge into one passage) and the index holds more, the search is run again
    /// deeper, so that a request for many passages gets them; when it still hands over
    /// fewer than `k` without the adaptive cut-off, `note` says why.
    pub fn search_detailed(&self, req: &SearchRequest) -> Result<SearchOutput> {
        limits::check(req)?;
        if req.route == crate::route::RouteMode::Auto {
            let mut inner = req.clone();
            inner.route = crate::route::RouteMode::Off;
            let (mut out, route) =
                self.search_routed(&inner, &crate::route::RouteConfig::default())?;
            out.route = Some(route);
            return Ok(out);
        }
        // The chunks a filter lets through: computed once, for every deeper pass.
        let allowed = self.allowed(req.filter.as_ref())?;
        let (mut out, mut stop) = self.search_once(req, allowed.as_ref())?;
        let mut depth = req.depth.max(req.k);
        let ceiling = self.segs.len().min(limits::MAX_DEPTH);
        let mut deeper = req.clone();
        while stop == Stop::Exhausted
            && out.hits.len() < req.k
            && out.note.is_none()
            && out.ranked.len() >= depth
            && depth < ceiling
        {
            depth = (depth * 4).min(ceiling);
            deeper.depth = depth;
            (out, stop) = self.search_once(&deeper, allowed.as_ref())?;
        }
        let cuts = req.pipeline.select.as_ref().is_some_and(|s| s.cuts());
        if out.note.is_none() && !out.hits.is_empty() && out.hits.len() < req.k {
            let n = out.hits.len();
            out.note = match stop {
                Stop::Budget => Some(format!(
                    "{n} of {} passages handed over: the next would pass the token budget (max_tokens)",
                    req.k
                )),
                Stop::Exhausted if !cuts => Some(format!(
                    "{n} of {} passages handed over: the index has no more candidates for this question (only passages that share a word with it, in lexical mode; overlapping chunks of a file are merged into one passage, near-duplicates dropped)",
                    req.k
                )),
                _ => None,
            };
        }
        Ok(out)
    }

    /// One pass of [`Engine::search_detailed`] at the request's depth, within the chunks
    /// `allowed` by its filter, and why selection stopped.
    fn search_once(
        &self,
        req: &SearchRequest,
        allowed: Option<&Allowed>,
    ) -> Result<(SearchOutput, Stop)> {
        let query = req.query.trim();
        let mut out = SearchOutput::default();
        if self.segs.is_empty() {
            out.note = Some(EMPTY_INDEX_NOTE.to_string());
            return Ok((out, Stop::Full));
        }
        if allowed.is_some_and(|a| a.documents == 0) {
            out.note = Some(NO_MATCH_NOTE.to_string());
            return Ok((out, Stop::Full));
        }
        let p = &req.pipeline;
        // The original query, then its questions, then external expansions; each with its
        // weight in the rank fusion of their lists.
        let mut texts = vec![query.to_string()];
        let mut weights = vec![1.0f32];
        let mut split = false;
        if p.multi_query {
            let mut qs = expand::split_questions(query);
            split = !qs.is_empty();
            qs.truncate(limits::MAX_QUESTIONS);
            // The questions together weigh as much as the whole query: they add what one
            // question alone finds, and never outvote the query (a long text that happens
            // to hold two questions stays one query in effect).
            let w = 1.0 / qs.len().max(1) as f32;
            weights.extend(qs.iter().map(|_| w));
            texts.extend(qs);
        }
        if let Some(cmd) = &p.expand_cmd {
            let t = Instant::now();
            let extra = expand::external(cmd, query)?;
            weights.extend(extra.iter().map(|_| 1.0));
            texts.extend(extra);
            out.timings.push(("expand", t.elapsed().as_secs_f64()));
        }
        let mut rankings = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            // Document evidence asks whether a page matches *the question* in several
            // sections: each question's ranking has it, a text holding several questions
            // (whose sections would vouch across topics) does not.
            let evidence = i > 0 || !split;
            rankings.push(self.rank(t, req, allowed, evidence, &mut out.timings)?);
        }
        let abstain = abstention(p.select.as_ref(), req.mode, &rankings);
        let first = rankings.remove(0);
        let mut final_list = if rankings.is_empty() {
            first.final_.clone()
        } else {
            // Several queries: fuse their final lists by weighted rank, the original first.
            let mut lists: Vec<&[(Key, f32)]> = vec![&first.final_];
            lists.extend(rankings.iter().map(|r| r.final_.as_slice()));
            let mut f = fuse(&lists, &Fusion::Rrf { k: 60.0, weights });
            f.truncate(req.depth.max(req.k));
            f
        };
        if let Some(a) = allowed {
            // The legs searched only passing chunks; this keeps any other stage honest.
            let pass = |k: Key| match k {
                Key::Chunk(id) => a.ids.contains(&id),
                Key::Doc(_) => true,
            };
            final_list.retain(|&(k, _)| pass(k));
        }
        if !req.exclude.is_empty() {
            let di = self.doc_index()?;
            let excluded: HashSet<usize> = req.exclude.iter().filter_map(|k| di.find(k)).collect();
            final_list.retain(|&(k, _)| self.doc_of(k, di).is_none_or(|d| !excluded.contains(&d)));
        }

        let names = |v: &[(Key, f32)]| -> Result<Vec<(String, f32)>> {
            v.iter().map(|&(k, s)| Ok((self.key_name(k)?, s))).collect()
        };
        out.lexical = names(&first.lex)?;
        out.dense = names(&first.den)?;
        if req.mode == Mode::Hybrid {
            out.fused = names(&first.fused)?;
        }
        out.ranked = names(&final_list)?;
        out.rerank_weight = first.rerank_weight;
        out.reranked = first
            .fused
            .iter()
            .filter_map(|&(k, _)| first.rerank.get(&k).map(|&s| (k, s)))
            .map(|(k, s)| Ok((self.key_name(k)?, s)))
            .collect::<Result<_>>()?;
        out.candidates = first
            .cands
            .iter()
            .map(|&(k, l, d)| Ok((self.key_name(k)?, l, d)))
            .collect::<Result<_>>()?;

        // Selection over passages (a document is represented by its best chunk).
        let t = Instant::now();
        let want = match (&p.select, &abstain) {
            (_, Some(_)) => 0,
            (Some(_), None) => select_pool(req.k),
            (None, None) => req.k,
        };
        let abstained = abstain.is_some();
        out.note = abstain;
        // A passage's similarity is its best with any of the queries (the whole query, its
        // questions, expansions): a passage that answers one question of several is on topic.
        let similarity = |key: Key| -> Option<f32> {
            std::iter::once(&first)
                .chain(&rankings)
                .filter_map(|r| r.cos.get(&key).copied())
                .reduce(f32::max)
        };
        // Chunks of the passage's document: copies are told apart by it (`select`).
        let di = match &p.select {
            Some(s) if s.collapse_copies => Some(self.doc_index()?),
            _ => None,
        };
        let doc_chunks = |pos: usize| di.map_or(0, |di| di.doc_len_at(pos));
        // Selection reads `want` entries of the final list; when it runs out before `k`
        // passages (copies and overlapping chunks it merged) and the list holds more, it
        // reads four times as many: 25 copies of one section must not hide the 26th entry.
        let mut want = want;
        let (selected, stop, key_of) = loop {
            let mut passages = Vec::new();
            for &(key, score) in final_list.iter().take(want) {
                let mut pos = self.best_position(key, &first)?;
                let mut r = self.segs.get(pos)?;
                // A chunk whose text a more specific file holds (a chapter inside `print.html`)
                // hands over that file's chunk instead, at its own rank.
                let mut reason = String::new();
                if di.is_some() && req.granularity == Granularity::Chunk {
                    if let Some((copy, copy_pos)) = self
                        .specific_copy(&r, pos, &doc_chunks)?
                        .filter(|(c, _)| allowed.is_none_or(|a| a.ids.contains(&c.id)))
                    {
                        reason = format!("kept over its copy in {}", r.doc);
                        r = copy;
                        pos = copy_pos;
                    }
                }
                let doc = match req.granularity {
                    Granularity::Chunk => r.doc.clone(),
                    Granularity::Document => self.key_name(key)?,
                };
                passages.push((
                    key,
                    Passage {
                        chunk_id: r.id,
                        scored_chunk: r.id,
                        doc,
                        byte_range: r.byte_range,
                        line_range: r.line_range,
                        heading: r.heading,
                        text: r.text,
                        score,
                        vector: p.select.as_ref().map(|_| self.segs.row(pos).to_vec()),
                        doc_chunks: doc_chunks(pos),
                        similarity: similarity(key),
                        reason,
                    },
                ));
            }
            // The relative cut-off's floor is the score of the FLOOR_RANK-th distinct text
            // of the final list: where copies fill the entries read, it lies deeper, and
            // only its text is read there.
            let floor = match &p.select {
                Some(cfg) => {
                    let mut scan = FloorScan::new(cfg.collapse_copies);
                    let mut done = passages.iter().any(|(_, p)| scan.push(p.score, &p.text));
                    // `want` 0: abstained, nothing is read.
                    let deep = if want == 0 {
                        0
                    } else {
                        final_list.len().min(FLOOR_RANK * COPY_SCAN)
                    };
                    for &(key, score) in final_list.iter().take(deep).skip(passages.len()) {
                        if done {
                            break;
                        }
                        let text = self.segs.get(self.best_position(key, &first)?)?.text;
                        done = scan.push(score, &text);
                    }
                    scan.floor()
                }
                None => f32::INFINITY,
            };
            let key_of: HashMap<u64, Key> =
                passages.iter().map(|(k, p)| (p.chunk_id, *k)).collect();
            let (selected, stop) = match &p.select {
                Some(cfg) => select_with_floor(
                    passages.into_iter().map(|x| x.1).collect(),
                    req.k,
                    cfg,
                    floor,
                ),
                None => {
                    let v: Vec<Passage> = passages.into_iter().map(|x| x.1).take(req.k).collect();
                    let stop = if v.len() >= req.k {
                        Stop::Full
                    } else {
                        Stop::Exhausted
                    };
                    (v, stop)
                }
            };
            if stop == Stop::Exhausted
                && selected.len() < req.k
                && want > 0
                && want < final_list.len()
            {
                want = want.saturating_mul(4).min(final_list.len());
                continue;
            }
            break (selected, stop, key_of);
        };
        out.timings.push(("select", t.elapsed().as_secs_f64()));
        let rank_in = |v: &[(Key, f32)], k: Key| v.iter().position(|x| x.0 == k).map(|i| i + 1);
        for (i, s) in selected.into_iter().enumerate() {
            let key = key_of
                .get(&s.scored_chunk)
                .copied()
                .unwrap_or(Key::Chunk(s.scored_chunk));
            let explain = req.explain.then(|| Explain {
                lexical_rank: rank_in(&first.lex, key),
                lexical_score: first.bm25.get(&key).copied(),
                dense_rank: rank_in(&first.den, key),
                dense_score: first.cos.get(&key).copied(),
                fused_score: first
                    .fused
                    .iter()
                    .find(|x| x.0 == key)
                    .map(|x| x.1)
                    .unwrap_or(0.0),
                fused_rank: rank_in(&first.fused, key).unwrap_or(0),
                rerank_score: first.rerank.get(&key).copied(),
                rerank_weight: first.rerank_weight,
                doc_evidence: first.evidence.get(&key).copied(),
                rule_factor: first.rule.get(&key).copied().unwrap_or(1.0),
                final_score: s.score,
                kept: if s.reason.is_empty() {
                    "within k".into()
                } else {
                    s.reason.clone()
                },
            });
            out.hits.push(Hit {
                rank: i + 1,
                chunk_id: s.chunk_id,
                path: s.doc,
                line_start: s.line_range.0,
                line_end: s.line_range.1,
                heading: s.heading,
                score: s.score,
                text: s.text,
                explain,
            });
        }
        let stop = if abstained { Stop::Full } else { stop };
        Ok((out, stop))
    }

    /// The chunk of a more specific file that holds the same text as `r` (at store
    /// position `pos`): `r`'s nearest chunk in another document, when the index keeps
    /// neighbours ([`crate::near`]), its cosine at least [`crate::copies::MIN_COSINE`], its
    /// file more specific ([`crate::copies::specificity`]), and the two texts copies by the
    /// shingle test. The copy need not be a candidate itself: an aggregate page's chunk
    /// often ranks where the chapter's does not.
    fn specific_copy(
        &self,
        r: &crate::store::ChunkRecord,
        pos: usize,
        doc_chunks: &dyn Fn(usize) -> usize,
    ) -> Result<Option<(crate::store::ChunkRecord, usize)>> {
        let Some(table) = self.neighbour_table()? else {
            return Ok(None);
        };
        let Some(&(nid, cos)) = table.list_of(r.id).and_then(|l| l.first()) else {
            return Ok(None);
        };
        if cos < crate::copies::MIN_COSINE {
            return Ok(None);
        }
        let Some(npos) = self.segs.position(nid) else {
            return Ok(None);
        };
        let n = self.segs.get(npos)?;
        let specific = crate::copies::specificity(doc_chunks(npos), &n.doc)
            < crate::copies::specificity(doc_chunks(pos), &r.doc);
        if n.doc == r.doc || !specific {
            return Ok(None);
        }
        let copies =
            crate::copies::Shingles::of(&r.text).is_copy_of(&crate::copies::Shingles::of(&n.text));
        Ok(copies.then_some((n, npos)))
    }

    /// How a key is named in [`SearchOutput`]'s lists: a chunk id as a string, a
    /// document by its key.
    fn key_name(&self, key: Key) -> Result<String> {
        match key {
            Key::Chunk(id) => Ok(id.to_string()),
            Key::Doc(d) => Ok(self.doc_index()?.key(d).unwrap_or_default().to_string()),
        }
    }

    /// The document-table index of the document `key` is or belongs to.
    fn doc_of(&self, key: Key, di: &DocIndex) -> Option<usize> {
        match key {
            Key::Doc(d) => Some(d),
            Key::Chunk(id) => self.segs.position(id).and_then(|p| di.doc_at(p)),
        }
    }

    /// Store position of the chunk standing for `key`: the chunk itself, or the document's
    /// chunk with the best cosine (else best BM25, else its first).
    fn best_position(&self, key: Key, r: &Ranking) -> Result<usize> {
        match key {
            Key::Chunk(id) => self.segs.position(id).ok_or_else(|| {
                Error::corrupt(self.dir.join("chunks"), format!("chunk {id} missing"))
            }),
            Key::Doc(d) => {
                if let Some(&p) = r.best_pos.get(&key) {
                    return Ok(p);
                }
                let di = self.doc_index()?;
                di.chunks(d)
                    .first()
                    .map(|&p| p as usize)
                    .ok_or_else(|| Error::corrupt(self.dir.join("docs"), "document without chunks"))
            }
        }
    }

    /// Maps chunk-level (id, score) lists to keys: identity, or documents by max-pool
    /// (the first occurrence in a best-first list is the document's best chunk).
    /// Also records, for documents, the position of the chunk that gave the score.
    fn pool(
        &self,
        leg: &[(u64, f32)],
        g: Granularity,
        depth: usize,
        best: &mut HashMap<Key, usize>,
    ) -> Result<Vec<(Key, f32)>> {
        match g {
            Granularity::Chunk => Ok(leg
                .iter()
                .take(depth)
                .map(|&(id, s)| (Key::Chunk(id), s))
                .collect()),
            Granularity::Document => {
                let di = self.doc_index()?;
                let mut seen = HashSet::new();
                let mut v = Vec::new();
                for &(cid, s) in leg {
                    let Some(pos) = self.segs.position(cid) else {
                        continue;
                    };
                    // A chunk no document claims (a damaged doc table) is skipped, not a panic.
                    let Some(d) = di.doc_at(pos).map(Key::Doc) else {
                        continue;
                    };
                    if seen.insert(d) {
                        best.entry(d).or_insert(pos);
                        v.push((d, s));
                        if v.len() >= depth {
                            break;
                        }
                    }
                }
                Ok(v)
            }
        }
    }

    /// Ranks for one query text.
    fn rank(
        &self,
        text: &str,
        req: &SearchRequest,
        allowed: Option<&Allowed>,
        evidence: bool,
        timings: &mut Vec<(&'static str, f64)>,
    ) -> Result<Ranking> {
        let p = &req.pipeline;
        let depth = req.depth.max(req.k);
        let chunk_depth = match req.granularity {
            Granularity::Chunk => depth,
            Granularity::Document => depth * 3,
        };
        let use_lex = matches!(req.mode, Mode::Lexical | Mode::Hybrid);
        let use_den = matches!(req.mode, Mode::Dense | Mode::Hybrid);
        let full = p.full_features && req.mode == Mode::Hybrid;
        let need_qvec = use_den
            || full
            || matches!(
                p.rerank.as_ref().map(|r| &r.kind),
                Some(RerankKind::Sentence)
            );
        // Token reranking over stored codes needs the query's token vectors: they come from
        // the same forward pass as its pooled vector.
        let stored_tokens = self.manifest.token_codes
            && matches!(p.rerank.as_ref().map(|r| &r.kind), Some(RerankKind::Tokens));
        let mut terms = LexicalIndex::weighted_terms(text);
        // The lexical leg needs no embedding: it runs beside the embedding and the dense
        // leg (at a million chunks it is most of a default query's time).
        let (embedded, lexical) = rayon::join(
            || -> Result<_> {
                let mut tm = Vec::new();
                let (qvec, qtok) = if need_qvec || stored_tokens {
                    let t = Instant::now();
                    let e = self.embedder()?;
                    let r = if stored_tokens {
                        let (v, toks) = e.embed_query_with_tokens(text)?;
                        (Some(v), Some(toks))
                    } else {
                        (Some(e.embed_query(text)?), None)
                    };
                    tm.push(("embed", t.elapsed().as_secs_f64()));
                    r
                } else {
                    (None, None)
                };
                let mut den_chunks = Vec::new();
                if use_den {
                    let t = Instant::now();
                    let q = qvec.as_deref().unwrap_or(&[]);
                    let ef = crate::dense::Ef::Scaled(self.cfg.hnsw.ef_search);
                    den_chunks = match allowed {
                        None => self.segs.search(q, chunk_depth, ef)?,
                        Some(a) => self.segs.search_within(q, chunk_depth, ef, &a.ids)?,
                    };
                    tm.push(("dense", t.elapsed().as_secs_f64()));
                }
                Ok(((qvec, qtok, tm), den_chunks))
            },
            || -> Option<(Result<LexicalList>, f64)> {
                if !use_lex {
                    return None;
                }
                let t = Instant::now();
                let l = self.lexical_leg(&terms, req, allowed, full, chunk_depth);
                Some((l, t.elapsed().as_secs_f64()))
            },
        );
        let ((qvec, qtok, tm), den_chunks) = embedded?;
        timings.extend(tm);
        let pre = match lexical {
            Some((l, secs)) => {
                timings.push(("lexical", secs));
                Some(l?)
            }
            None => None,
        };
        let mut den_best = HashMap::new();
        let den = self.pool(&den_chunks, req.granularity, depth, &mut den_best)?;

        let legs = Legs {
            allowed,
            qvec: qvec.as_deref(),
            den: &den,
            den_best: &den_best,
            use_lex,
            full,
            chunk_depth,
            depth,
        };
        let mut r = self.fuse_pass(&terms, &legs, req, pre, timings)?;
        if let (Some(prf), true) = (&p.prf, use_lex) {
            let t = Instant::now();
            let feedback: Vec<String> = r
                .fused
                .iter()
                .take(prf.docs)
                .map(|&(k, _)| {
                    let pos = self.best_position(k, &r)?;
                    Ok(self.segs.get(pos)?.text)
                })
                .collect::<Result<_>>()?;
            terms = expand::rm3_terms(&self.lexical, text, &feedback, prf)?;
            timings.push(("prf", t.elapsed().as_secs_f64()));
            r = self.fuse_pass(&terms, &legs, req, None, timings)?;
        }

        // Rerank the head of the fused list, with the weight this query's length leaves it.
        let mut final_ = r.fused.clone();
        if let Some(rc) = &p.rerank {
            let t = Instant::now();
            let weight = match rc.kind.fade() {
                Some(_) => rc.weight_for(self.embedder()?.token_spans(text).len()),
                None => rc.weight,
            };
            let n = rc.depth.min(final_.len());
            if n > 0 && weight > 0.0 {
                // The head holds `n` distinct texts: a copy of a member (the same section
                // in 25 command pages) is not reranked again, it takes its member's score,
                // and does not use up the depth the next distinct passage needs.
                let collapse = p.select.as_ref().is_some_and(|s| s.collapse_copies);
                let rep = if collapse {
                    self.distinct_head(&final_, n, &r)?
                } else {
                    (0..n).collect()
                };
                let members: Vec<(Key, f32)> = rep
                    .iter()
                    .enumerate()
                    .filter(|&(i, &m)| i == m)
                    .map(|(i, _)| final_[i])
                    .collect();
                let q = QueryVectors {
                    text,
                    pooled: qvec.as_deref(),
                    tokens: qtok.as_ref(),
                };
                let member_scores = self.rerank_scores(&q, &members, rc, &r)?;
                let mut by_member = HashMap::with_capacity(members.len());
                for (m, s) in members.iter().zip(&member_scores) {
                    by_member.insert(m.0, *s);
                }
                let head = &final_[..rep.len()];
                let scores: Vec<f32> = rep
                    .iter()
                    .map(|&m| by_member.get(&final_[m].0).copied().unwrap_or(0.0))
                    .collect();
                for (h, s) in head.iter().zip(&scores) {
                    r.rerank.insert(h.0, *s);
                }
                final_ = blend_rerank(&final_, &scores, weight);
                r.rerank_weight = weight;
            }
            timings.push(("rerank", t.elapsed().as_secs_f64()));
        }

        // Document evidence: a passage whose document holds other strong candidates.
        if let (Some(ev), Granularity::Chunk, Mode::Hybrid, true) =
            (&p.doc_evidence, req.granularity, req.mode, evidence)
        {
            let collapse = p.select.as_ref().is_some_and(|s| s.collapse_copies);
            let applied = self.document_evidence(ev, &final_, &r.cos, collapse)?;
            final_ = applied.ranked;
            r.evidence = applied.added;
        }

        // User rules.
        if !p.rules.is_empty() {
            let di = self.doc_index()?;
            let lo = final_.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
            let hi = final_.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
            let share = |s: f32| if hi > lo { (s - lo) / (hi - lo) } else { 1.0 };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
            for (k, s) in final_.iter_mut() {
                let d = self.doc_of(*k, di).unwrap_or(usize::MAX);
                let (Some(key), Some(mtime)) = (di.key(d), di.mtime(d)) else {
                    continue;
                };
                let f = p.rules.factor(key, mtime, now);
                r.rule.insert(*k, f);
                // On the list's min-max share, not the raw score: fused z-scores are
                // negative for about half the candidates, where a factor of 2 would push a
                // boosted file down and recency decay would pull an old one up. The share
                // is an affine map of the score, so without a factor the order and the
                // cut-off's shares of the top's margin are what they were.
                *s = share(*s) * f;
            }
            final_.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        }
        r.final_ = final_;
        Ok(r)
    }

    /// The head of `fused` to rerank: entries in fused order up to the `n`-th distinct
    /// text, each mapped to the index of the first entry whose text it copies
    /// ([`crate::copies::Shingles::is_copy_of`]; itself when it is the first). Chunk
    /// searches only (a document is not one text), and at most [`COPY_SCAN`] times `n`
    /// entries are read.
    ///
    /// Why: aggregate pages and generated reference pages repeat a section word for word
    /// (the Cargo book's "Feature Selection" is in 25 command pages); their copies filled the
    /// reranked head, so the page that answers the question, at fused rank 27, was never
    /// reranked, and selection then left all but one copy out (docs/decisions.md, "Copies
    /// in the reranked head").
    fn distinct_head(&self, fused: &[(Key, f32)], n: usize, r: &Ranking) -> Result<Vec<usize>> {
        let mut rep: Vec<usize> = Vec::with_capacity(n);
        let mut members: Vec<(usize, crate::copies::Shingles)> = Vec::with_capacity(n);
        let limit = fused.len().min(n.saturating_mul(COPY_SCAN));
        for (i, &(k, _)) in fused.iter().enumerate().take(limit) {
            if members.len() >= n {
                break;
            }
            if !matches!(k, Key::Chunk(_)) {
                members.push((i, crate::copies::Shingles::default()));
                rep.push(i);
                continue;
            }
            let sh = crate::copies::Shingles::of(&self.segs.get(self.best_position(k, r)?)?.text);
            match members
                .iter()
                .find(|(_, m)| !sh.is_empty() && m.is_copy_of(&sh))
            {
                Some(&(m, _)) => rep.push(m),
                None => {
                    members.push((i, sh));
                    rep.push(i);
                }
            }
        }
        Ok(rep)
    }

    /// Exact cosine of a chunk, or the best of a document's chunks with that chunk's
    /// position.
    fn key_cosine(&self, key: Key, q: &[f32]) -> Result<(f32, Option<usize>)> {
        Ok(match key {
            Key::Chunk(id) => (
                self.segs
                    .position(id)
                    .map(|p| dot(self.segs.row(p), q))
                    .unwrap_or(0.0),
                None,
            ),
            Key::Doc(d) => {
                let mut best = (-1.0f32, None);
                let di = self.doc_index()?;
                for &p in di.chunks(d) {
                    let s = dot(self.segs.row(p as usize), q);
                    if best.1.is_none() || s > best.0 {
                        best = (s, Some(p as usize));
                    }
                }
                best
            }
        })
    }

    fn rerank_scores(
        &self,
        q: &QueryVectors<'_>,
        head: &[(Key, f32)],
        rc: &RerankConfig,
        r: &Ranking,
    ) -> Result<Vec<f32>> {
        let (text, qvec) = (q.text, q.pooled);
        let di = self.doc_index()?;
        // (document, chunk positions) per candidate: a document contributes all its chunks.
        let mut cands: Vec<(usize, Vec<usize>)> = Vec::with_capacity(head.len());
        for &(k, _) in head {
            let (doc, positions): (usize, Vec<usize>) = match k {
                Key::Chunk(_) => {
                    let pos = self.best_position(k, r)?;
                    let d = di.doc_at(pos).unwrap_or(usize::MAX);
                    (d, vec![pos])
                }
                Key::Doc(d) => (d, di.chunks(d).iter().map(|&p| p as usize).collect()),
            };
            cands.push((doc, positions));
        }
        // Token MaxSim over the stored codes: no passage is read or encoded.
        if let (RerankKind::Tokens, Some(qt), true) =
            (&rc.kind, q.tokens, self.manifest.token_codes)
        {
            let qc = match self.token_projection() {
                Some(p) => QueryCodes::new(&p.project(qt)),
                None => QueryCodes::new(qt),
            };
            return Ok(cands
                .par_iter()
                .map(|(_, ps)| best_part(ps, |&p| qc.maxsim(&[&self.segs.codes(p).gather()])))
                .collect());
        }
        // (title, chunks) per candidate.
        let mut items: Vec<(String, Vec<crate::store::ChunkRecord>)> =
            Vec::with_capacity(cands.len());
        for (doc, positions) in cands {
            let chunks = positions
                .into_iter()
                .map(|p| self.segs.get(p))
                .collect::<Result<Vec<_>>>()?;
            items.push((di.title(doc).unwrap_or_default().to_string(), chunks));
        }
        let bodies: Vec<String> = items
            .iter()
            .map(|(_, chunks)| {
                let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
                texts.join("\n")
            })
            .collect();
        match &rc.kind {
            RerankKind::Tokens => {
                let e = self.embedder()?;
                // Each chunk as it was embedded at index time (title and heading trail first).
                let parts: Vec<Vec<String>> = items
                    .iter()
                    .map(|(title, chunks)| {
                        chunks
                            .iter()
                            .map(|c| contextual_text(title, c.heading.as_deref(), &c.text))
                            .collect()
                    })
                    .collect();
                TokenReranker::new(e.as_ref()).score_parts(text, &parts)
            }
            RerankKind::Sentence => {
                let e = self.embedder()?;
                let q = match qvec {
                    Some(q) => q.to_vec(),
                    None => e.embed_query(text)?,
                };
                let refs: Vec<(&str, &str)> = items
                    .iter()
                    .zip(&bodies)
                    .map(|((a, _), b)| (a.as_str(), b.as_str()))
                    .collect();
                SentenceReranker::new(e.as_ref()).score_with_titles(&q, &refs)
            }
            RerankKind::CrossEncoder { model } => {
                let ce = self.cross_encoder(model)?;
                let passages: Vec<String> = items
                    .iter()
                    .zip(&bodies)
                    .map(|((t, _), b)| contextual_text(t, None, b))
                    .collect();
                let refs: Vec<&str> = passages.iter().map(|s| s.as_str()).collect();
                ce.score(text, &refs)
            }
        }
    }

    fn cross_encoder(&self, model: &PathBuf) -> Result<Arc<CrossEncoder>> {
        let mut guard = self
            .cross_encoder
            .lock()
            .map_err(|_| Error::invalid("cross-encoder", "poisoned lock"))?;
        if let Some((p, ce)) = guard.as_ref() {
            if p == model {
                return Ok(ce.clone());
            }
        }
        let ce = Arc::new(CrossEncoder::load(model, self.cfg.device)?);
        *guard = Some((model.clone(), ce.clone()));
        Ok(ce)
    }
}

/// The abstention rule ([`SelectConfig::min_similarity`]): in hybrid mode, when no
/// ranking's lexical leg matched a term (the question shares no word with the index) and
/// no passage's cosine reaches the floor, the note that says so; `None` otherwise.
fn abstention(select: Option<&SelectConfig>, mode: Mode, rankings: &[Ranking]) -> Option<String> {
    let floor = select.map_or(0.0, |s| s.min_similarity);
    if floor <= 0.0 || mode != Mode::Hybrid || rankings.iter().any(|r| !r.lex.is_empty()) {
        return None;
    }
    let best = rankings
        .iter()
        .flat_map(|r| r.den.iter().map(|x| x.1))
        .fold(f32::NEG_INFINITY, f32::max);
    (best < floor).then(|| {
        format!(
            "nothing handed over: no word of the question occurs in the index, and the \
             closest passage's similarity ({best:.2}) is below {floor:.2}; ask with \
             `--no-abstain` (`no_abstain`) to see it anyway"
        )
    })
}

/// Why an answer has no hits when the index holds nothing: an empty list alone would read
/// as "nothing relevant".
pub const EMPTY_INDEX_NOTE: &str =
    "the index is empty; add documents with `pinpoint index <FOLDER>`";

/// The note of a search whose metadata filter no document passes.
pub const NO_MATCH_NOTE: &str =
    "no document matches the filter (collections and --where / filter); nothing was searched";

/// Puts a reranked head back into a fused list: the first `scores.len()` entries of `fused`
/// are re-ordered by `weight · reranker + (1 − weight) · fused`, both min-max normalised
/// within the head, and stay above the rest (the tail keeps its order, scores rescaled
/// below 1). Shared by the engine and `pinpoint tune`, so that what tuning measures is what
/// the engine does.
pub fn blend_rerank<K: Copy + Ord>(
    fused: &[(K, f32)],
    scores: &[f32],
    weight: f32,
) -> Vec<(K, f32)> {
    let n = scores.len().min(fused.len());
    let head = &fused[..n];
    let fn_ = normalize(head, Norm::MinMax);
    let rs: Vec<(K, f32)> = head.iter().zip(scores).map(|(h, s)| (h.0, *s)).collect();
    let rn = normalize(&rs, Norm::MinMax);
    let mut out: Vec<(K, f32)> = fn_
        .iter()
        .zip(&rn)
        .map(|(f, s)| (f.0, 1.0 + weight * s.1 + (1.0 - weight) * f.1))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.extend(normalize(&fused[n..], Norm::MinMax));
    out
}

/// How far past the rerank depth the reranked head may reach to find that many distinct
/// texts (see `Engine::distinct_head`), and past the cut-off's floor rank selection may
/// read to find that many.
const COPY_SCAN: usize = 4;

/// How many of the final ranking selection chooses `k` passages from at first: enough to
/// replace merged and duplicate passages, and at least the [`crate::select::FLOOR_RANK`]
/// its relative cut-off is measured against. Where copies hide that many distinct texts,
/// the floor is looked for further down ([`crate::select::FloorScan`]).
fn select_pool(k: usize) -> usize {
    (k * 4).max(20)
}

/// A query as the rerankers see it.
struct QueryVectors<'a> {
    text: &'a str,
    /// Its pooled vector, when computed.
    pooled: Option<&'a [f32]>,
    /// Its token vectors, when the index keeps token codes and they rerank.
    tokens: Option<&'a TokenMatrix>,
}
