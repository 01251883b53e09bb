//! What a caller asks of a search and what it gets back: [`SearchRequest`] (the question,
//! `k`, mode, granularity and the [`Pipeline`] of stages with their settings) and
//! [`SearchOutput`] / [`Hit`] / [`Explain`] (the answer and what each stage saw).
//!
//! Plain data, shared by the library, `query --json`, `serve`, `eval` and `tune`. Not for:
//! running the search (`search.rs`).

use std::path::PathBuf;

use super::Mode;
use crate::error::{Error, Result};
use crate::expand::PrfConfig;
use crate::fuse::{Fusion, Norm};
use crate::rerank::Rules;
use crate::select::SelectConfig;

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
    /// Document evidence after reranking, chunk searches only ([`crate::evidence`]).
    pub doc_evidence: Option<crate::evidence::DocEvidence>,
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
            doc_evidence: None,
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
    /// over the index's token codes ([`crate::late`]); [`crate::Engine::default_pipeline`] leaves
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
            doc_evidence: Some(crate::evidence::DocEvidence::default()),
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
    /// Only documents that pass this metadata filter ([`crate::filter`]; collections are
    /// a filter on `collection`). Applied inside both legs, so `k` hits come back whenever
    /// `k` documents match.
    pub filter: Option<crate::filter::Filter>,
    /// Route the question to a collection first ([`crate::route`]; off by default).
    pub route: crate::route::RouteMode,
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
            filter: None,
            route: Default::default(),
        }
    }

    /// Sets the metadata filter.
    pub fn filter(mut self, f: crate::filter::Filter) -> SearchRequest {
        self.filter = Some(f);
        self
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
    /// What the document's other candidates added ([`crate::evidence`]), when they did.
    pub doc_evidence: Option<f32>,
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
    /// Where a routed search ([`crate::route::RouteMode::Auto`]) was sent, and why.
    pub route: Option<crate::route::Route>,
    /// Why fewer hits than asked were handed over, when the reason is not the ranking
    /// itself: an empty index, or an abstention ([`SelectConfig::min_similarity`]).
    pub note: Option<String>,
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
