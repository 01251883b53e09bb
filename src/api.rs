//! The shapes of a question and its answer, shared by `pinpoint query --json` and
//! `pinpoint serve`, so that a script can move from one to the other without a change.
//!
//! [`QueryOptions`] holds what a user may ask for beyond the question (the CLI's flags, a
//! server request's fields) and turns it into a [`SearchRequest`] on the index's own
//! defaults: what `pinpoint tune` stored stays in force unless an option overrides it.
//! [`Answer`] is the JSON object both print.
//!
//! Not for: running the search ([`crate::engine`]) or serving it ([`crate::serve`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Explain, Mode, RerankConfig, RerankKind, SearchOutput, SearchRequest};
use crate::error::{Error, Result};
use crate::fuse::{Fusion, Norm};
use crate::ingest::DocKind;
use crate::rerank::Rules;

/// Hits handed over when a request names no `k`.
pub const DEFAULT_K: usize = 5;

pub use crate::engine::EMPTY_INDEX_NOTE;

/// Everything about a question except its text. Every field is optional; missing ones
/// keep the index's defaults. Unknown fields are an error, so that a misspelt option is
/// not silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryOptions {
    /// Hits at most ([`DEFAULT_K`] when absent): the adaptive cut-off hands over fewer when
    /// the best ones stand clear of the rest.
    pub k: Option<usize>,
    /// `hybrid` (the default), `dense` or `lexical`.
    pub mode: Option<String>,
    /// `rrf`, `zscore` or `minmax` instead of the index's fusion.
    pub fusion: Option<String>,
    /// Rerank the head, with the index's reranker or token MaxSim.
    pub rerank: bool,
    /// Do not rerank, even when the index's defaults do.
    pub no_rerank: bool,
    /// Bi-encoder reranker by name (`tokens`, `sentence`); implies `rerank`.
    pub reranker: Option<String>,
    /// Cross-encoder folder; implies `rerank`.
    pub cross_encoder: Option<PathBuf>,
    /// Candidates reranked.
    pub rerank_depth: Option<usize>,
    /// Candidates taken from each leg instead of the index's ([`crate::Pipeline::depth`]).
    pub depth: Option<usize>,
    /// Token budget of all passages together.
    pub max_tokens: Option<usize>,
    /// Hand over all `k` hits: no adaptive cut-off.
    pub no_cutoff: bool,
    /// Hand over the closest passages even for a question that shares no word with the
    /// index and is not close in meaning to any passage (no abstention).
    pub no_abstain: bool,
    /// Per hit: each stage's ranks and scores, and why it was kept.
    pub explain: bool,
    /// Path boosts, `GLOB=FACTOR`.
    pub boost: Vec<String>,
    /// Halve a file's score every this many days of age.
    pub recency_days: Option<f32>,
    /// Command that prints extra queries (reads the query on stdin).
    pub expand_cmd: Option<String>,
    /// Weight of the dense neighbours' words in the lexical leg (document expansion;
    /// 0 turns it off) instead of the index's.
    pub expansion: Option<f32>,
    /// Only these collections (by name; empty: all).
    pub collections: Vec<String>,
    /// A metadata filter in the `--where` grammar ([`crate::filter::parse`]).
    #[serde(rename = "where")]
    pub where_: Option<String>,
    /// A metadata filter tree ([`crate::filter::Filter`]); with `where` and
    /// `collections`, all must hold.
    pub filter: Option<crate::filter::Filter>,
    /// `auto` routes the question to the collection that can answer it ([`crate::route`]);
    /// `off` (the default) searches what is asked.
    pub route: Option<String>,
}

impl QueryOptions {
    /// The search `engine` runs for `text` with these options, on the index's defaults.
    pub fn request(&self, engine: &Engine, text: &str) -> Result<SearchRequest> {
        let mode: Mode = self.mode.as_deref().unwrap_or("hybrid").parse()?;
        if self.no_rerank
            && (self.rerank
                || self.reranker.is_some()
                || self.cross_encoder.is_some()
                || self.rerank_depth.is_some())
        {
            return Err(Error::invalid(
                "no_rerank",
                "cannot be combined with rerank, reranker, cross_encoder or rerank_depth",
            ));
        }
        if self.reranker.is_some() && self.cross_encoder.is_some() {
            return Err(Error::invalid(
                "reranker",
                "cannot be combined with cross_encoder (the cross-encoder is a reranker)",
            ));
        }
        let mut pipeline = engine.default_pipeline();
        match self.fusion.as_deref() {
            None => {}
            Some("rrf") => {
                pipeline.fusion = Fusion::default();
                pipeline.full_features = false;
            }
            Some(n @ ("zscore" | "minmax")) => {
                pipeline.fusion = Fusion::Weighted {
                    norm: if n == "zscore" {
                        Norm::ZScore
                    } else {
                        Norm::MinMax
                    },
                    weights: vec![0.5, 0.5],
                };
                pipeline.full_features = true;
            }
            Some(other) => {
                return Err(Error::invalid(
                    "fusion",
                    format!("{other:?} (use rrf, zscore or minmax)"),
                ))
            }
        }
        // Naming a reranker asks for reranking: ignoring a cross-encoder because `rerank`
        // was not also set would silently answer with another ranking.
        let kind = match (&self.cross_encoder, &self.reranker) {
            (Some(m), _) => Some(RerankKind::CrossEncoder { model: m.clone() }),
            (None, Some(r)) => Some(r.parse()?),
            (None, None) if self.rerank => Some(RerankKind::Tokens),
            (None, None) => None,
        };
        if let Some(kind) = kind {
            // The index's own reranker keeps the depth and weight `pinpoint tune` chose.
            if pipeline.rerank.as_ref().map(|r| &r.kind) != Some(&kind) {
                pipeline.rerank = Some(RerankConfig::new(kind));
            }
        }
        if let Some(depth) = self.rerank_depth {
            crate::engine::limits::bounded(
                "rerank_depth",
                depth,
                crate::engine::limits::MAX_RERANK_DEPTH,
            )?;
            pipeline
                .rerank
                .get_or_insert_with(|| RerankConfig::new(RerankKind::Tokens))
                .depth = depth;
        }
        if self.no_rerank {
            pipeline.rerank = None;
        }
        if let Some(t) = self.max_tokens {
            pipeline
                .select
                .get_or_insert_with(Default::default)
                .max_tokens = Some(t);
        }
        if let Some(sel) = pipeline.select.as_mut() {
            if self.no_cutoff {
                sel.disable_cutoff();
            }
            if self.no_abstain {
                sel.min_similarity = 0.0;
            }
        }
        for b in &self.boost {
            pipeline.rules.boosts.push(Rules::parse_boost(b)?);
        }
        if let Some(d) = self.recency_days {
            if !(d.is_finite() && d > 0.0) {
                return Err(Error::invalid(
                    "recency_days",
                    format!("{d} (use a half-life of more than 0 days)"),
                ));
            }
            pipeline.rules.recency_half_life_days = self.recency_days;
        }
        if self.expand_cmd.is_some() {
            pipeline.expand_cmd = self.expand_cmd.clone();
        }
        if let Some(d) = self.depth {
            if d == 0 {
                return Err(Error::invalid("depth", "must be at least 1"));
            }
            pipeline.depth = d;
        }
        if let Some(w) = self.expansion {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::invalid(
                    "expansion",
                    format!("{w} (use a weight of 0 or more)"),
                ));
            }
            pipeline.expansion = w;
        }
        let filter = self.filter_for(engine)?;
        Ok(SearchRequest {
            mode,
            explain: self.explain,
            depth: pipeline.depth,
            pipeline,
            filter,
            route: self.route.as_deref().unwrap_or("off").parse()?,
            ..SearchRequest::new(text, self.k.unwrap_or(DEFAULT_K))
        })
    }

    /// The metadata filter of these options: `collections`, `where` and `filter`
    /// together. A collection the index does not have is an error naming those it has.
    pub fn filter_for(&self, engine: &Engine) -> Result<Option<crate::filter::Filter>> {
        use crate::filter::{Filter, Scalar};
        let mut parts = Vec::new();
        if !self.collections.is_empty() {
            let known: Vec<String> = engine.collections()?.into_iter().map(|c| c.name).collect();
            for c in &self.collections {
                if !known.contains(c) {
                    let names: Vec<String> = known
                        .iter()
                        .map(|n| {
                            if n.is_empty() {
                                "(unnamed)".into()
                            } else {
                                n.clone()
                            }
                        })
                        .collect();
                    return Err(Error::invalid(
                        "collections",
                        format!(
                            "{c:?} is not a collection of this index (it has: {})",
                            names.join(", ")
                        ),
                    ));
                }
            }
            parts.push(Filter::In {
                field: "collection".into(),
                values: self
                    .collections
                    .iter()
                    .map(|c| Scalar::Text(c.clone()))
                    .collect(),
            });
        }
        if let Some(w) = &self.where_ {
            parts.push(crate::filter::parse::parse_where(w)?);
        }
        if let Some(f) = &self.filter {
            f.compile()?;
            parts.push(f.clone());
        }
        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Filter::And(parts)),
        })
    }
}

/// The answer to one question: one JSON object, keys in this order (tools rely on them).
#[derive(Debug, Clone, Serialize)]
pub struct Answer<'a> {
    /// The question as asked.
    pub query: &'a str,
    /// The retrieval mode that answered.
    pub mode: String,
    /// Hits, best first.
    pub hits: Vec<AnswerHit<'a>>,
    /// Said when the answer has fewer hits than asked for a reason other than the ranking:
    /// the index is empty ([`EMPTY_INDEX_NOTE`]), or the engine abstained
    /// ([`crate::select::SelectConfig::min_similarity`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'a str>,
    /// Where a routed question (`route: auto`) was sent and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a crate::route::Route>,
}

/// One hit of an [`Answer`].
#[derive(Debug, Clone, Serialize)]
pub struct AnswerHit<'a> {
    /// 1-based rank.
    pub rank: usize,
    /// Document key: path relative to the indexed folder, or external id.
    pub path: &'a str,
    /// First location (see `unit`).
    pub line_start: u32,
    /// Last location.
    pub line_end: u32,
    /// What `line_start`/`line_end` count: "line", or "page", "paragraph", "slide",
    /// "cell" for packaged formats.
    pub unit: &'static str,
    /// Heading trail.
    pub heading: Option<&'a str>,
    /// Final score.
    pub score: f32,
    /// Passage text.
    pub text: &'a str,
    /// Stage-by-stage explanation, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<&'a Explain>,
}

impl<'a> Answer<'a> {
    /// The answer to `query`, answered in `mode` with `out`'s hits and note.
    pub fn new(query: &'a str, mode: Mode, out: &'a SearchOutput) -> Answer<'a> {
        Answer {
            query,
            mode: mode.to_string(),
            hits: out
                .hits
                .iter()
                .map(|h| AnswerHit {
                    rank: h.rank,
                    path: &h.path,
                    line_start: h.line_start,
                    line_end: h.line_end,
                    unit: kind_of(&h.path).location_unit(),
                    heading: h.heading.as_deref(),
                    score: h.score,
                    text: &h.text,
                    explain: h.explain.as_ref(),
                })
                .collect(),
            note: out.note.as_deref(),
            route: out.route.as_ref(),
        }
    }
}

/// The kind of file a hit comes from, for its location unit (lines, pages, paragraphs).
pub fn kind_of(key: &str) -> DocKind {
    DocKind::from_path(Path::new(key)).unwrap_or(DocKind::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_from_json_reject_unknown_fields() {
        let o: QueryOptions =
            serde_json::from_str(r#"{"k": 3, "max_tokens": 200, "no_cutoff": true}"#).unwrap();
        assert_eq!(o.k, Some(3));
        assert_eq!(o.max_tokens, Some(200));
        assert!(o.no_cutoff && !o.rerank);
        let e = serde_json::from_str::<QueryOptions>(r#"{"max_token": 200}"#).unwrap_err();
        assert!(e.to_string().contains("max_token"), "{e}");
    }

    #[test]
    fn hits_carry_their_location_unit() {
        assert_eq!(kind_of("a/b.pdf").location_unit(), "page");
        assert_eq!(kind_of("notes.md").location_unit(), "line");
        assert_eq!(kind_of("no-extension").location_unit(), "line");
    }
}
