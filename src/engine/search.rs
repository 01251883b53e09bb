//! The query path: legs, expansion, fusion, reranking, rules and selection.
//!
//! `Query -> (lexical, dense) candidates -> [PRF second pass] -> fused -> reranked ->
//! rules -> selected context`. Every stage records what it saw, so a hit can explain itself
//! (`--explain`) and the evaluator can show where a relevant passage was lost.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::{limits, Engine, Mode};
use crate::chunk::contextual_text;
use crate::embed::{dot, TokenMatrix};
use crate::error::{Error, Result};
use crate::expand::{self, PrfConfig};
use crate::fuse::{fuse, normalize, Fusion, Norm};
use crate::late::QueryCodes;
use crate::lexical::LexicalIndex;
use crate::rerank::{best_part, CrossEncoder, Reranker, Rules, SentenceReranker, TokenReranker};
use crate::select::{select_with_stop, Passage, SelectConfig, Stop};
use rayon::prelude::*;

/// What a hit stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Granularity {
    /// One hit per chunk.
    #[default]
    Chunk,
    /// One hit per document, scored by its best chunk (max-pool).
    Document,
}

/// Which reranker runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RerankKind {
    /// Sentence-level late interaction with the bi-encoder.
    Sentence,
    /// Token-level late interaction (MaxSim) with the bi-encoder's token vectors: over the
    /// index's token codes when it keeps them ([`crate::late`], ~0.5 ms for 20 documents),
    /// else encoding the candidates at query time (float vectors, ~0.4 s on 2 cores).
    Tokens,
    /// A cross-encoder folder.
    CrossEncoder {
        /// The model folder.
        model: PathBuf,
    },
}

impl RerankConfig {
    /// `kind` with the settings `pinpoint tune` chose on SciFact's train split for token
    /// MaxSim over stored codes: depth 20, weight 0.6 against the fused score (train 0.7477,
    /// 5-fold held-out 0.7470 vs 0.7383 without; four folds chose 0.6, one 0.5), fading on
    /// long queries ([`LengthFade::TOKENS`]). The sentence reranker shares depth and weight.
    /// A cross-encoder is trusted alone (weight 1): it reads query and passage together,
    /// which no fused score does.
    pub fn new(kind: RerankKind) -> RerankConfig {
        let weight = match kind {
            RerankKind::CrossEncoder { .. } => 1.0,
            _ => 0.6,
        };
        RerankConfig {
            kind,
            depth: 20,
            weight,
        }
    }
}

impl std::str::FromStr for RerankKind {
    type Err = Error;

    /// `tokens`, `sentence`, or a cross-encoder folder (any other value that is a folder).
    fn from_str(s: &str) -> Result<RerankKind> {
        match s {
            "tokens" => Ok(RerankKind::Tokens),
            "sentence" => Ok(RerankKind::Sentence),
            dir if std::path::Path::new(dir).is_dir() => Ok(RerankKind::CrossEncoder {
                model: PathBuf::from(dir),
            }),
            other => Err(Error::invalid(
                "reranker",
                format!("{other:?} (use tokens, sentence or a cross-encoder folder)"),
            )),
        }
    }
}

/// Reranking settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RerankConfig {
    /// The reranker.
    pub kind: RerankKind,
    /// How many of the fused candidates are reranked.
    pub depth: usize,
    /// Weight of the (normalised) rerank score against the (normalised) fused score, for
    /// a query short enough to get all of it ([`RerankKind::fade`]).
    pub weight: f32,
}

impl RerankConfig {
    /// The weight a query of `query_tokens` model tokens gets: [`RerankConfig::weight`]
    /// times the reranker's fade factor.
    pub fn weight_for(&self, query_tokens: usize) -> f32 {
        self.weight * self.kind.fade().map_or(1.0, |f| f.factor(query_tokens))
    }
}

impl RerankKind {
    /// How this reranker's weight fades as the query grows long; none for a reranker
    /// that reads any query as well as a short one (as far as measured).
    ///
    /// A property of the reranker, not a stored setting: `pinpoint tune` tunes the weight
    /// under it, and defaults stored before it existed get it too.
    pub fn fade(&self) -> Option<LengthFade> {
        match self {
            RerankKind::Tokens => Some(LengthFade::TOKENS),
            _ => None,
        }
    }
}

/// A reranker's weight as a function of the query's length in model tokens: full up to
/// `full_until`, none from `off_from`, linear between (no cliff: one more word never flips a
/// ranking).
///
/// Why token MaxSim has one: it averages every query token's best match, and once a query
/// is a paragraph rather than a question that average rewards passages that echo its
/// incidental words. On four collections' train splits its gain held up to ~24 tokens and
/// turned into a loss past ~32-48 (SciFact, Rust and Python code search with one-sentence
/// and whole-docstring queries; docs/decisions.md, "Token reranking fades on long
/// queries"), as ColBERT's did on BEIR's argument collections.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LengthFade {
    /// Query tokens up to which the weight holds in full.
    pub full_until: usize,
    /// Query tokens from which the weight is 0.
    pub off_from: usize,
}

impl LengthFade {
    /// Token MaxSim's fade, chosen on the long-query Rust collection's train split (32 to
    /// 64: 0.5361 -> 0.5668 nDCG@10 against 0.5653 without reranking) and checked on the
    /// other train splits (SciFact 0.7491 -> 0.7488, Python whole docstrings 0.6974 ->
    /// 0.7088).
    pub const TOKENS: LengthFade = LengthFade {
        full_until: 32,
        off_from: 64,
    };

    /// The share of the weight a query of `query_tokens` tokens keeps, in [0, 1].
    pub fn factor(&self, query_tokens: usize) -> f32 {
        if query_tokens <= self.full_until {
            1.0
        } else if query_tokens >= self.off_from {
            0.0
        } else {
            (self.off_from - query_tokens) as f32 / (self.off_from - self.full_until) as f32
        }
    }
}

/// The stages after candidate retrieval, with their settings. `Pipeline::default()` is
/// what `pinpoint query` runs without flags (unless `pinpoint tune` stored other defaults
/// in the index).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Pipeline {
    /// Fusion of the two legs (hybrid mode).
    pub fusion: Fusion,
    /// Candidates taken from each leg (documents at document granularity, chunks at chunk
    /// granularity): what [`SearchRequest::depth`] is set to by the front ends that run a
    /// stored pipeline (`query`, `serve`, `eval`'s `default`). 100, or what `pinpoint tune`
    /// chose ([`crate::tune::CANDIDATE_DEPTHS`]).
    pub depth: usize,
    /// Score every candidate on both legs (exact cosine, deep BM25) before fusing, instead
    /// of treating a candidate missing from one leg's top list as absent from it.
    pub full_features: bool,
    /// Pseudo-relevance feedback for the lexical leg.
    pub prf: Option<PrfConfig>,
    /// Weight of the neighbour field's BM25 in the hybrid's lexical leg (document
    /// expansion, [`crate::near`]); 0 is plain BM25, as is an index without the field.
    /// Lexical mode is always plain BM25: it is the single-leg baseline.
    pub expansion: f32,
    /// Split a query holding several questions and merge their results.
    pub multi_query: bool,
    /// External expansion command (off by default).
    pub expand_cmd: Option<String>,
    /// Reranking.
    pub rerank: Option<RerankConfig>,
    /// Context selection.
    pub select: Option<SelectConfig>,
    /// User rules.
    pub rules: Rules,
}

impl Pipeline {
    /// Plain reciprocal rank fusion (k = 60) of the two legs' top lists: the baseline.
    pub fn rrf() -> Pipeline {
        Pipeline {
            fusion: Fusion::default(),
            depth: DEFAULT_DEPTH,
            full_features: false,
            prf: None,
            expansion: 0.0,
            multi_query: false,
            expand_cmd: None,
            rerank: None,
            select: None,
            rules: Rules::default(),
        }
    }
}

impl Default for Pipeline {
    /// Chosen on SciFact's train split with 5 folds held out (docs/decisions.md): every
    /// candidate of either leg is scored on both (exact cosine, deep BM25), each score is
    /// standardised per query (z-score, so the weights need no calibration between BM25
    /// and cosine scales), and the two are averaged with equal weights; no PRF (it lowered
    /// train nDCG@10 from 0.738 to 0.722). The top 20 are reranked by token-level MaxSim
    /// over the index's token codes ([`crate::late`]); [`Engine::default_pipeline`] leaves
    /// that out for an index that keeps none.
    fn default() -> Self {
        Pipeline {
            fusion: Fusion::Weighted {
                norm: Norm::ZScore,
                weights: vec![0.5, 0.5],
            },
            depth: DEFAULT_DEPTH,
            full_features: true,
            prf: None,
            expansion: crate::near::DEFAULT_WEIGHT,
            multi_query: true,
            expand_cmd: None,
            rerank: Some(RerankConfig::new(RerankKind::Tokens)),
            select: Some(SelectConfig::default()),
            rules: Rules::default(),
        }
    }
}

/// Candidates per leg unless a pipeline or request says otherwise: deep enough for
/// recall@100 and for the cut-off's floor rank, shallow enough that fusing and reranking
/// stay within a warm query's few milliseconds.
pub const DEFAULT_DEPTH: usize = 100;

/// A search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The question.
    pub query: String,
    /// Hits to return.
    pub k: usize,
    /// Retrieval mode.
    pub mode: Mode,
    /// Candidates taken from each leg (documents, at document granularity).
    pub depth: usize,
    /// Chunks or documents.
    pub granularity: Granularity,
    /// Stages after retrieval.
    pub pipeline: Pipeline,
    /// Attach an [`Explain`] to each hit.
    pub explain: bool,
    /// Document keys left out of the results (the ranking and the hits), e.g. the document
    /// a "more like this" query was taken from. They are removed after fusion and
    /// reranking, so that the other documents keep their scores, and before selection, so
    /// that an excluded document can neither take a hit's place nor set the cut-off.
    pub exclude: Vec<String>,
}

impl SearchRequest {
    /// A hybrid chunk search for `query` returning `k` hits with the default pipeline and
    /// depth [`DEFAULT_DEPTH`].
    pub fn new(query: impl Into<String>, k: usize) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            k,
            mode: Mode::Hybrid,
            depth: DEFAULT_DEPTH,
            granularity: Granularity::Chunk,
            pipeline: Pipeline::default(),
            explain: false,
            exclude: Vec::new(),
        }
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> SearchRequest {
        self.mode = mode;
        self
    }

    /// Sets the granularity.
    pub fn granularity(mut self, g: Granularity) -> SearchRequest {
        self.granularity = g;
        self
    }

    /// Sets the pipeline, and the candidate depth to the pipeline's own
    /// ([`Pipeline::depth`]).
    pub fn pipeline(mut self, p: Pipeline) -> SearchRequest {
        self.depth = p.depth;
        self.pipeline = p;
        self
    }

    /// Leaves these document keys out of the results.
    pub fn exclude<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> SearchRequest {
        self.exclude = keys.into_iter().map(Into::into).collect();
        self
    }
}

/// Why a hit is where it is.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explain {
    /// Rank in the lexical leg (1-based), if present.
    pub lexical_rank: Option<usize>,
    /// BM25 score (of the best chunk for documents), if any term matched; in hybrid mode
    /// it includes the weighted BM25 of the chunk's neighbour words ([`crate::near`]).
    pub lexical_score: Option<f32>,
    /// Rank in the dense leg, if present.
    pub dense_rank: Option<usize>,
    /// Cosine with the query.
    pub dense_score: Option<f32>,
    /// Fused score.
    pub fused_score: f32,
    /// Rank after fusion.
    pub fused_rank: usize,
    /// Rerank score, when reranked.
    pub rerank_score: Option<f32>,
    /// The weight the query's reranked head was blended with (0 when nothing was
    /// reranked; below the configured weight for a long query, [`LengthFade`]).
    pub rerank_weight: f32,
    /// Product of the rule factors.
    pub rule_factor: f32,
    /// Final score.
    pub final_score: f32,
    /// Why it was kept by selection.
    pub kept: String,
}

/// One result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    /// 1-based rank.
    pub rank: usize,
    /// Chunk id (for documents: their best chunk).
    pub chunk_id: u64,
    /// Document key: path relative to the indexed folder, or external id.
    pub path: String,
    /// First source line.
    pub line_start: u32,
    /// Last source line.
    pub line_end: u32,
    /// Heading trail.
    pub heading: Option<String>,
    /// Final score.
    pub score: f32,
    /// Passage text (merged chunks when adjacent chunks were selected together).
    pub text: String,
    /// Stage-by-stage explanation, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<Explain>,
}

/// A search result with what each stage saw. Lists are keyed by chunk id (as a string) or
/// document key, best first.
#[derive(Debug, Clone, Default)]
pub struct SearchOutput {
    /// Selected hits.
    pub hits: Vec<Hit>,
    /// The final ranking before selection (up to `depth`).
    pub ranked: Vec<(String, f32)>,
    /// Lexical leg.
    pub lexical: Vec<(String, f32)>,
    /// Dense leg.
    pub dense: Vec<(String, f32)>,
    /// After fusion (hybrid only).
    pub fused: Vec<(String, f32)>,
    /// Every candidate scored on both legs (hybrid with full features): (key, BM25, cosine),
    /// BM25 0 when no query term matched. What `pinpoint tune` learns fusion from.
    pub candidates: Vec<(String, f32, f32)>,
    /// Raw reranker scores of the reranked head, in fused order (empty without a
    /// reranker, or when the query is too long for it to weigh anything). What `pinpoint
    /// tune --rerank` learns the rerank depth and weight from.
    pub reranked: Vec<(String, f32)>,
    /// The weight the head was blended with ([`RerankConfig::weight_for`] this query; 0
    /// without a reranker).
    pub rerank_weight: f32,
    /// Seconds per stage.
    pub timings: Vec<(&'static str, f64)>,
    /// Why fewer hits than asked were handed over, when the reason is not the ranking
    /// itself: an empty index, or an abstention ([`SelectConfig::min_similarity`]).
    pub note: Option<String>,
}

/// Lazily built maps between documents and chunk positions.
pub(crate) struct DocIndex {
    keys: Vec<String>,
    titles: Vec<String>,
    mtimes: Vec<i64>,
    chunk_pos: Vec<Vec<u32>>,
    chunk_doc: Vec<u32>,
}

/// One query's ranking and what each stage saw, keyed by chunk id or document index.
struct Ranking {
    lex: Vec<(u64, f32)>,
    den: Vec<(u64, f32)>,
    fused: Vec<(u64, f32)>,
    final_: Vec<(u64, f32)>,
    bm25: HashMap<u64, f32>,
    cos: HashMap<u64, f32>,
    rerank: HashMap<u64, f32>,
    /// The weight the reranked head was blended with.
    rerank_weight: f32,
    rule: HashMap<u64, f32>,
    /// Documents: position of the chunk that stands for them (best cosine, else BM25).
    best_pos: HashMap<u64, usize>,
    /// Full-feature candidates: (key, BM25, cosine).
    cands: Vec<(u64, f32, f32)>,
}

impl Engine {
    /// The key (path or external id) of the document chunk `id` belongs to, if the open
    /// generation holds that chunk.
    pub fn document_of_chunk(&self, id: u64) -> Result<Option<&str>> {
        let di = self.doc_index()?;
        Ok(self
            .store
            .position(id)
            .and_then(|p| di.chunk_doc.get(p))
            .and_then(|&d| di.keys.get(d as usize))
            .map(|k| k.as_str()))
    }

    pub(crate) fn doc_index(&self) -> Result<&DocIndex> {
        if let Some(d) = self.doc_index.get() {
            return Ok(d);
        }
        let docs = self.documents()?;
        let mut chunk_doc = vec![u32::MAX; self.store.len()];
        let mut chunk_pos = Vec::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            let mut ps = Vec::with_capacity(d.chunks.len());
            for c in &d.chunks {
                if let Some(p) = self.store.position(*c) {
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
        let (mut out, mut stop) = self.search_once(req)?;
        let mut depth = req.depth.max(req.k);
        let ceiling = self.store.len().min(limits::MAX_DEPTH);
        let mut deeper = req.clone();
        while stop == Stop::Exhausted
            && out.hits.len() < req.k
            && out.note.is_none()
            && out.ranked.len() >= depth
            && depth < ceiling
        {
            depth = (depth * 4).min(ceiling);
            deeper.depth = depth;
            (out, stop) = self.search_once(&deeper)?;
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

    /// One pass of [`Engine::search_detailed`] at the request's depth, and why selection
    /// stopped.
    fn search_once(&self, req: &SearchRequest) -> Result<(SearchOutput, Stop)> {
        let query = req.query.trim();
        let mut out = SearchOutput::default();
        if self.store.is_empty() {
            out.note = Some(EMPTY_INDEX_NOTE.to_string());
            return Ok((out, Stop::Full));
        }
        let p = &req.pipeline;
        // The original query, then its questions, then external expansions; each with its
        // weight in the rank fusion of their lists.
        let mut texts = vec![query.to_string()];
        let mut weights = vec![1.0f32];
        if p.multi_query {
            let mut qs = expand::split_questions(query);
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
        for t in &texts {
            rankings.push(self.rank(t, req, &mut out.timings)?);
        }
        let abstain = abstention(p.select.as_ref(), req.mode, &rankings);
        let first = rankings.remove(0);
        let mut final_list = if rankings.is_empty() {
            first.final_.clone()
        } else {
            // Several queries: fuse their final lists by weighted rank, the original first.
            let mut lists: Vec<&[(u64, f32)]> = vec![&first.final_];
            lists.extend(rankings.iter().map(|r| r.final_.as_slice()));
            let mut f = fuse(&lists, &Fusion::Rrf { k: 60.0, weights });
            f.truncate(req.depth.max(req.k));
            f
        };
        if !req.exclude.is_empty() {
            let di = self.doc_index()?;
            let excluded: HashSet<usize> = di
                .keys
                .iter()
                .enumerate()
                .filter(|(_, k)| req.exclude.contains(k))
                .map(|(i, _)| i)
                .collect();
            let doc_of = |key: u64| -> Option<usize> {
                match req.granularity {
                    Granularity::Document => Some(key as usize),
                    Granularity::Chunk => self
                        .store
                        .position(key)
                        .and_then(|p| di.chunk_doc.get(p))
                        .map(|&d| d as usize),
                }
            };
            final_list.retain(|&(k, _)| doc_of(k).is_none_or(|d| !excluded.contains(&d)));
        }

        let names = |v: &[(u64, f32)]| -> Result<Vec<(String, f32)>> {
            v.iter()
                .map(|&(k, s)| Ok((self.key_name(k, req.granularity)?, s)))
                .collect()
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
            .map(|(k, s)| Ok((self.key_name(k, req.granularity)?, s)))
            .collect::<Result<_>>()?;
        out.candidates = first
            .cands
            .iter()
            .map(|&(k, l, d)| Ok((self.key_name(k, req.granularity)?, l, d)))
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
        let similarity = |key: u64| -> Option<f32> {
            std::iter::once(&first)
                .chain(&rankings)
                .filter_map(|r| r.cos.get(&key).copied())
                .reduce(f32::max)
        };
        let mut passages = Vec::new();
        for &(key, score) in final_list.iter().take(want) {
            let pos = self.best_position(key, req.granularity, &first)?;
            let r = self.store.get(pos)?;
            let doc = match req.granularity {
                Granularity::Chunk => r.doc.clone(),
                Granularity::Document => self.key_name(key, req.granularity)?,
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
                    vector: p
                        .select
                        .as_ref()
                        .map(|_| self.dense.vectors().row(pos).to_vec()),
                    similarity: similarity(key),
                    reason: String::new(),
                },
            ));
        }
        let key_of: HashMap<u64, u64> = passages.iter().map(|(k, p)| (p.chunk_id, *k)).collect();
        let (selected, stop) = match &p.select {
            Some(cfg) => select_with_stop(passages.into_iter().map(|x| x.1).collect(), req.k, cfg),
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
        out.timings.push(("select", t.elapsed().as_secs_f64()));
        let rank_in = |v: &[(u64, f32)], k: u64| v.iter().position(|x| x.0 == k).map(|i| i + 1);
        for (i, s) in selected.into_iter().enumerate() {
            let key = key_of
                .get(&s.scored_chunk)
                .copied()
                .unwrap_or(s.scored_chunk);
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

    fn key_name(&self, key: u64, g: Granularity) -> Result<String> {
        match g {
            Granularity::Chunk => Ok(key.to_string()),
            Granularity::Document => Ok(self
                .doc_index()?
                .keys
                .get(key as usize)
                .cloned()
                .unwrap_or_default()),
        }
    }

    /// Store position of the chunk standing for `key`: the chunk itself, or the document's
    /// chunk with the best cosine (else best BM25, else its first).
    fn best_position(&self, key: u64, g: Granularity, r: &Ranking) -> Result<usize> {
        match g {
            Granularity::Chunk => self.store.position(key).ok_or_else(|| {
                Error::corrupt(self.dir.join("chunks"), format!("chunk {key} missing"))
            }),
            Granularity::Document => {
                if let Some(&p) = r.best_pos.get(&key) {
                    return Ok(p);
                }
                let di = self.doc_index()?;
                di.chunk_pos
                    .get(key as usize)
                    .and_then(|v| v.first())
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
        best: &mut HashMap<u64, usize>,
    ) -> Result<Vec<(u64, f32)>> {
        match g {
            Granularity::Chunk => Ok(leg.iter().take(depth).copied().collect()),
            Granularity::Document => {
                let di = self.doc_index()?;
                let mut seen = HashSet::new();
                let mut v = Vec::new();
                for &(cid, s) in leg {
                    let Some(pos) = self.store.position(cid) else {
                        continue;
                    };
                    // A chunk no document claims (a damaged doc table) is skipped, not a panic.
                    let d = match di.chunk_doc.get(pos) {
                        Some(&d) if d != u32::MAX => d as u64,
                        _ => continue,
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
        let (qvec, qtok) = if need_qvec || stored_tokens {
            let t = Instant::now();
            let e = self.embedder()?;
            let r = if stored_tokens {
                let (v, toks) = e.embed_query_with_tokens(text)?;
                (Some(v), Some(toks))
            } else {
                (Some(e.embed_query(text)?), None)
            };
            timings.push(("embed", t.elapsed().as_secs_f64()));
            r
        } else {
            (None, None)
        };

        let mut den_chunks = Vec::new();
        if use_den {
            let t = Instant::now();
            let q = qvec.as_deref().unwrap_or(&[]);
            den_chunks = self
                .dense
                .search(q, chunk_depth, self.cfg.hnsw.ef_search, &self.store)?;
            timings.push(("dense", t.elapsed().as_secs_f64()));
        }
        let mut den_best = HashMap::new();
        let den = self.pool(&den_chunks, req.granularity, depth, &mut den_best)?;

        let mut terms = LexicalIndex::weighted_terms(text);
        let legs = Legs {
            qvec: qvec.as_deref(),
            den: &den,
            den_best: &den_best,
            use_lex,
            full,
            chunk_depth,
            depth,
        };
        let mut r = self.fuse_pass(&terms, &legs, req, timings)?;
        if let (Some(prf), true) = (&p.prf, use_lex) {
            let t = Instant::now();
            let feedback: Vec<String> = r
                .fused
                .iter()
                .take(prf.docs)
                .map(|&(k, _)| {
                    let pos = self.best_position(k, req.granularity, &r)?;
                    Ok(self.store.get(pos)?.text)
                })
                .collect::<Result<_>>()?;
            terms = expand::rm3_terms(&self.lexical, text, &feedback, prf)?;
            timings.push(("prf", t.elapsed().as_secs_f64()));
            r = self.fuse_pass(&terms, &legs, req, timings)?;
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
                let head: Vec<(u64, f32)> = final_[..n].to_vec();
                let q = QueryVectors {
                    text,
                    pooled: qvec.as_deref(),
                    tokens: qtok.as_ref(),
                };
                let scores = self.rerank_scores(&q, &head, rc, req.granularity, &r)?;
                for (h, s) in head.iter().zip(&scores) {
                    r.rerank.insert(h.0, *s);
                }
                final_ = blend_rerank(&final_, &scores, weight);
                r.rerank_weight = weight;
            }
            timings.push(("rerank", t.elapsed().as_secs_f64()));
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
                let d = match req.granularity {
                    Granularity::Document => *k as usize,
                    Granularity::Chunk => self
                        .store
                        .position(*k)
                        .and_then(|pp| di.chunk_doc.get(pp))
                        .map(|&d| d as usize)
                        .unwrap_or(usize::MAX),
                };
                let (Some(key), Some(&mtime)) = (di.keys.get(d), di.mtimes.get(d)) else {
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

    /// Lexical leg (with `terms`), then fusion with the dense leg.
    fn fuse_pass(
        &self,
        terms: &[(String, f32)],
        legs: &Legs<'_>,
        req: &SearchRequest,
        timings: &mut Vec<(&'static str, f64)>,
    ) -> Result<Ranking> {
        let Legs {
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
            let t = Instant::now();
            // Deeper for full features: BM25 of candidates found only by the dense leg.
            let deep = if full {
                chunk_depth.max(1000)
            } else {
                chunk_depth
            };
            let near = match req.mode {
                Mode::Hybrid => req.pipeline.expansion,
                _ => 0.0,
            };
            lex_chunks = self.lexical.search_expanded(terms, deep, near)?;
            // A reader may see a newer lexical commit than its store: drop unknown ids.
            lex_chunks.retain(|(id, _)| self.store.position(*id).is_some());
            timings.push(("lexical", t.elapsed().as_secs_f64()));
        }
        let t = Instant::now();
        let mut lex_best = HashMap::new();
        let lex = self.pool(
            &lex_chunks[..lex_chunks.len().min(chunk_depth)],
            req.granularity,
            depth,
            &mut lex_best,
        )?;
        let mut bm25: HashMap<u64, f32> = HashMap::new();
        for (k, s) in self.pool(&lex_chunks, req.granularity, usize::MAX, &mut lex_best)? {
            bm25.insert(k, s);
        }
        let mut cos: HashMap<u64, f32> = den.iter().copied().collect();
        let mut cand_feats = Vec::new();
        let fused = match req.mode {
            Mode::Lexical => lex.clone(),
            Mode::Dense => den.to_vec(),
            Mode::Hybrid if full => {
                let mut cands: Vec<u64> = lex.iter().chain(den.iter()).map(|x| x.0).collect();
                cands.sort_unstable();
                cands.dedup();
                let q = qvec.unwrap_or(&[]);
                for &c in &cands {
                    if let std::collections::hash_map::Entry::Vacant(e) = cos.entry(c) {
                        let (s, pos) = self.key_cosine(c, q, req.granularity)?;
                        e.insert(s);
                        if let Some(pos) = pos {
                            best_pos.entry(c).or_insert(pos);
                        }
                    }
                }
                let mut by_lex: Vec<(u64, f32)> = cands
                    .iter()
                    .map(|c| (*c, bm25.get(c).copied().unwrap_or(0.0)))
                    .collect();
                let mut by_den: Vec<(u64, f32)> = cands.iter().map(|c| (*c, cos[c])).collect();
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
        })
    }

    /// Exact cosine of a chunk, or the best of a document's chunks with that chunk's
    /// position.
    fn key_cosine(&self, key: u64, q: &[f32], g: Granularity) -> Result<(f32, Option<usize>)> {
        let v = self.dense.vectors();
        Ok(match g {
            Granularity::Chunk => (
                self.store
                    .position(key)
                    .map(|p| dot(v.row(p), q))
                    .unwrap_or(0.0),
                None,
            ),
            Granularity::Document => {
                let mut best = (-1.0f32, None);
                let di = self.doc_index()?;
                for &p in di
                    .chunk_pos
                    .get(key as usize)
                    .map(|v| v.as_slice())
                    .unwrap_or(&[])
                {
                    let s = dot(v.row(p as usize), q);
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
        head: &[(u64, f32)],
        rc: &RerankConfig,
        g: Granularity,
        r: &Ranking,
    ) -> Result<Vec<f32>> {
        let (text, qvec) = (q.text, q.pooled);
        let di = self.doc_index()?;
        // (document, chunk positions) per candidate: a document contributes all its chunks.
        let mut cands: Vec<(usize, Vec<usize>)> = Vec::with_capacity(head.len());
        for &(k, _) in head {
            let (doc, positions): (usize, Vec<usize>) = match g {
                Granularity::Chunk => {
                    let pos = self.best_position(k, g, r)?;
                    let d = di
                        .chunk_doc
                        .get(pos)
                        .map(|&d| d as usize)
                        .unwrap_or(usize::MAX);
                    (d, vec![pos])
                }
                Granularity::Document => (
                    k as usize,
                    di.chunk_pos
                        .get(k as usize)
                        .map(|v| v.iter().map(|&p| p as usize).collect())
                        .unwrap_or_default(),
                ),
            };
            cands.push((doc, positions));
        }
        // Token MaxSim over the stored codes: no passage is read or encoded.
        if let (RerankKind::Tokens, Some(qt), true) =
            (&rc.kind, q.tokens, self.manifest.token_codes)
        {
            let qc = QueryCodes::new(qt);
            return Ok(cands
                .par_iter()
                .map(|(_, ps)| best_part(ps, |&p| qc.maxsim(&[self.late.codes(p)])))
                .collect());
        }
        // (title, chunks) per candidate.
        let mut items: Vec<(String, Vec<crate::store::ChunkRecord>)> =
            Vec::with_capacity(cands.len());
        for (doc, positions) in cands {
            let chunks = positions
                .into_iter()
                .map(|p| self.store.get(p))
                .collect::<Result<Vec<_>>>()?;
            items.push((di.titles.get(doc).cloned().unwrap_or_default(), chunks));
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

/// Puts a reranked head back into a fused list: the first `scores.len()` entries of `fused`
/// are re-ordered by `weight · reranker + (1 − weight) · fused`, both min-max normalised
/// within the head, and stay above the rest (the tail keeps its order, scores rescaled
/// below 1). Shared by the engine and `pinpoint tune`, so that what tuning measures is what
/// the engine does.
pub fn blend_rerank(fused: &[(u64, f32)], scores: &[f32], weight: f32) -> Vec<(u64, f32)> {
    let n = scores.len().min(fused.len());
    let head = &fused[..n];
    let fn_ = normalize(head, Norm::MinMax);
    let rs: Vec<(u64, f32)> = head.iter().zip(scores).map(|(h, s)| (h.0, *s)).collect();
    let rn = normalize(&rs, Norm::MinMax);
    let mut out: Vec<(u64, f32)> = fn_
        .iter()
        .zip(&rn)
        .map(|(f, s)| (f.0, 1.0 + weight * s.1 + (1.0 - weight) * f.1))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.extend(normalize(&fused[n..], Norm::MinMax));
    out
}

/// How many of the final ranking selection chooses `k` passages from: enough to replace
/// merged and duplicate passages, and at least the [`crate::select::FLOOR_RANK`] its
/// relative cut-off is measured against.
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

/// What the dense leg found, shared by both lexical passes.
#[derive(Clone, Copy)]
struct Legs<'a> {
    qvec: Option<&'a [f32]>,
    den: &'a [(u64, f32)],
    den_best: &'a HashMap<u64, usize>,
    use_lex: bool,
    full: bool,
    chunk_depth: usize,
    depth: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_reranker_fades_linearly_on_long_queries_and_others_do_not() {
        let f = LengthFade {
            full_until: 32,
            off_from: 64,
        };
        assert_eq!(f.factor(0), 1.0);
        assert_eq!(f.factor(32), 1.0);
        assert_eq!(f.factor(48), 0.5);
        assert_eq!(f.factor(64), 0.0);
        assert_eq!(f.factor(1000), 0.0);
        // No cliff: one more token never moves the weight by more than one step.
        for n in 0..100 {
            let step = f.factor(n) - f.factor(n + 1);
            assert!((0.0..=1.0 / 32.0 + 1e-6).contains(&step), "{n}: {step}");
        }
        let tokens = RerankConfig::new(RerankKind::Tokens);
        assert_eq!(tokens.kind.fade(), Some(LengthFade::TOKENS));
        assert_eq!(tokens.weight_for(10), tokens.weight);
        assert_eq!(tokens.weight_for(48), tokens.weight * 0.5);
        let cross = RerankConfig::new(RerankKind::CrossEncoder {
            model: PathBuf::from("m"),
        });
        assert_eq!(cross.weight_for(500), 1.0);
        assert_eq!(RerankKind::Sentence.fade(), None);
    }
}
