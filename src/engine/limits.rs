//! The largest request the engine serves.
//!
//! `k`, the candidate depth and the rerank depth reach allocations sized by them (a
//! bounded heap in the exact scan, tantivy's top-docs collector, the selection pool), and a
//! query's text is embedded, analysed and split into questions, each ranked once. A
//! request past these limits is refused with an error naming the option and its maximum
//! (exit 1 on the command line, 400 from `serve`), never an attempt to allocate for it.
//!
//! The limits are far above any useful setting: a few passages are the point of the engine,
//! the shipped depth is 100 per leg, and the model reads at most 256 tokens of a query.

use super::request::SearchRequest;
use crate::error::{Error, Result};

/// Most passages one request may ask for (`k`).
pub const MAX_K: usize = 1_000;

/// Most candidates one request may take from each leg (`depth`).
pub const MAX_DEPTH: usize = 10_000;

/// Most candidates one request may ask to rerank (`rerank_depth`; checked where a user's
/// options become a request, [`crate::api::QueryOptions::request`]: the engine itself
/// reranks at most the fused list, which `depth` bounds, and `tune` asks for all of it).
pub const MAX_RERANK_DEPTH: usize = 1_000;

/// Longest question text, in bytes (the model reads 256 tokens of it; BM25 all of it).
pub const MAX_QUERY_BYTES: usize = 32 * 1024;

/// Most questions a multi-question query is split into (each is ranked once); the rest of
/// the text still counts through the whole query's own ranking.
pub const MAX_QUESTIONS: usize = 16;

/// Checks a request against the limits, before anything is allocated for it.
pub(crate) fn check(req: &SearchRequest) -> Result<()> {
    let query = req.query.trim();
    if query.is_empty() {
        return Err(Error::invalid("query", "is empty"));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(Error::invalid(
            "query",
            format!(
                "is {} bytes; at most {MAX_QUERY_BYTES} are accepted",
                query.len()
            ),
        ));
    }
    bounded("k", req.k, MAX_K)?;
    bounded("depth", req.depth, MAX_DEPTH)?;
    if req.pipeline.select.as_ref().and_then(|s| s.max_tokens) == Some(0) {
        return Err(Error::invalid("max_tokens", "must be at least 1"));
    }
    Ok(())
}

pub(crate) fn bounded(name: &str, v: usize, max: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::invalid(name, "must be at least 1"));
    }
    if v > max {
        return Err(Error::invalid(
            name,
            format!("{v} is over the maximum of {max}"),
        ));
    }
    Ok(())
}
