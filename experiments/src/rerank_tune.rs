//! Reranker depth-and-weight search over recorded fused lists: what `pinpoint tune` did
//! before it searched reranking jointly with expansion, depth and fusion
//! ([`pinpoint::tune::tune_joint`]). The studies behind docs/decisions.md's token-reranker
//! entries (`token_store`, `maxsim_query`, `maxsim_leg`, `score_smooth`) still replay it.

use std::collections::HashMap;

use pinpoint::engine::blend_rerank;
use pinpoint::eval::Labelled;
use pinpoint::tune::{cross_validate, score_order, Target, RERANK_DEPTHS};
use pinpoint::{Engine, Granularity, Mode, Pipeline, Result, SearchRequest};

/// Scores keyed by their candidate's position (the id space tune replays in).
fn by_position(scores: impl Iterator<Item = f32>) -> Vec<(u64, f32)> {
    scores.enumerate().map(|(i, s)| (i as u64, s)).collect()
}

/// One query's fused ranking and the reranker's raw scores for its head.
pub struct RerankFeatures {
    /// Judgements.
    pub rels: HashMap<String, i32>,
    /// Query id (excluded from rankings, BEIR convention).
    pub qid: String,
    /// Fused ranking, best first: (doc, score).
    pub fused: Vec<(String, f32)>,
    /// Reranker scores of the first `scores.len()` fused documents.
    pub scores: Vec<f32>,
    /// The share of the reranker's weight this query gets ([`pinpoint::LengthFade`]; 1 when
    /// the weight does not fade, 0 for a query too long to rerank).
    pub fade: f32,
}

/// Runs every query through `pipeline` (whose reranker must reach the deepest of
/// [`RERANK_DEPTHS`]) and keeps the fused list of `depth` documents per leg with the
/// head's rerank scores (none when the pipeline has no reranker).
pub fn collect_rerank(
    engine: &Engine,
    queries: &Labelled,
    pipeline: &Pipeline,
    depth: usize,
) -> Result<Vec<RerankFeatures>> {
    let mut out = Vec::with_capacity(queries.len());
    for (qid, text, rels) in queries {
        let req = SearchRequest {
            depth,
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: Pipeline {
                select: None,
                multi_query: false,
                ..pipeline.clone()
            },
            ..SearchRequest::new(text.as_str(), 10)
        };
        let o = engine.search_detailed(&req)?;
        let scores = o.reranked.iter().map(|x| x.1).collect();
        let full = pipeline.rerank.as_ref().map_or(0.0, |r| r.weight);
        out.push(RerankFeatures {
            rels: rels.clone(),
            qid: qid.clone(),
            fused: o.fused,
            scores,
            fade: if full > 0.0 {
                o.rerank_weight / full
            } else {
                1.0
            },
        });
    }
    Ok(out)
}

/// Mean target when the top `depth` fused documents are reranked with `weight`, exactly
/// as the engine blends them ([`pinpoint::engine::blend_rerank`]).
pub fn evaluate_rerank(qs: &[&RerankFeatures], depth: usize, weight: f32, target: Target) -> f64 {
    let mut sum = 0.0;
    for q in qs {
        let fused = by_position(q.fused.iter().map(|x| x.1));
        let n = depth.min(q.scores.len());
        let order = blend_rerank(&fused, &q.scores[..n], weight * q.fade);
        sum += score_order(target, order, |i| &q.fused[i].0, &q.qid, &q.rels);
    }
    sum / qs.len().max(1) as f64
}

/// Result of tuning a reranker's depth and weight.
#[derive(Debug, Clone)]
pub struct TunedRerank {
    /// Best (depth, weight) on all queries; depth 0 means no reranking wins.
    pub depth: usize,
    /// Its weight.
    pub weight: f32,
    /// Its mean target on all queries (optimistic).
    pub train_score: f64,
    /// Mean held-out target of the setting chosen on the other folds.
    pub cv_score: f64,
    /// Mean target without reranking.
    pub none_score: f64,
    /// Each fold's choice.
    pub fold_choices: Vec<(usize, f32)>,
}

/// Grid search of rerank depth ([`RERANK_DEPTHS`]) and weight (0.1 to 1 by 0.1) with
/// `folds`-fold cross-validation.
pub fn tune_rerank(qs: &[RerankFeatures], target: Target, folds: usize) -> TunedRerank {
    let mut grid = vec![(0usize, 0.0f32)];
    for &d in RERANK_DEPTHS.iter().filter(|&&d| d > 0) {
        for w in 1..=10 {
            grid.push((d, w as f32 / 10.0));
        }
    }
    let pick = |idx: &[usize]| -> Vec<&RerankFeatures> { idx.iter().map(|&i| &qs[i]).collect() };
    let eval = |idx: &[usize], g: &(usize, f32)| evaluate_rerank(&pick(idx), g.0, g.1, target);
    let rels: Vec<&HashMap<String, i32>> = qs.iter().map(|q| &q.rels).collect();
    let (cv_score, fold_choices) = cross_validate(&rels, folds, &grid, eval);
    let all: Vec<usize> = (0..qs.len()).collect();
    let mut best = (grid[0], eval(&all, &grid[0]));
    let none_score = best.1;
    for g in &grid[1..] {
        let s = eval(&all, g);
        if s > best.1 + 1e-12 {
            best = (*g, s);
        }
    }
    TunedRerank {
        depth: best.0 .0,
        weight: best.0 .1,
        train_score: best.1,
        cv_score,
        none_score,
        fold_choices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 30 queries whose one relevant document is fused third (of 25); the reranker
    /// scores it `signal` and every other document by a fixed pattern.
    fn synthetic(signal: f32) -> Vec<RerankFeatures> {
        (0..30)
            .map(|q| {
                let fused: Vec<(String, f32)> = (0..25)
                    .map(|i| (format!("d{q}-{i}"), 1.0 - i as f32 / 25.0))
                    .collect();
                let scores = (0..20)
                    .map(|i| {
                        if i == 2 {
                            signal
                        } else {
                            0.5 + 0.01 * ((q + i) % 7) as f32
                        }
                    })
                    .collect();
                RerankFeatures {
                    rels: HashMap::from([(format!("d{q}-2"), 1)]),
                    qid: format!("q{q}"),
                    fused,
                    scores,
                    fade: 1.0,
                }
            })
            .collect()
    }

    #[test]
    fn tune_rerank_adopts_a_helpful_reranker_and_rejects_a_harmful_one() {
        let good = tune_rerank(&synthetic(2.0), Target::Ndcg10, 5);
        assert!(good.depth >= 5 && good.weight > 0.0, "{good:?}");
        assert!((good.train_score - 1.0).abs() < 1e-9, "{good:?}");
        assert!(good.cv_score > good.none_score + 0.1, "{good:?}");
        assert_eq!(good.fold_choices.len(), 5);
        // nDCG@10 with the relevant document third: 1 / log2(4) = 0.5.
        assert!((good.none_score - 0.5).abs() < 1e-9, "{good:?}");
        // Queries whose length fades the reranker out are scored as the engine ranks them:
        // not reranked, whatever the weight.
        let faded: Vec<RerankFeatures> = synthetic(2.0)
            .into_iter()
            .map(|q| RerankFeatures { fade: 0.0, ..q })
            .collect();
        let all: Vec<&RerankFeatures> = faded.iter().collect();
        assert!((evaluate_rerank(&all, 20, 1.0, Target::Ndcg10) - 0.5).abs() < 1e-9);

        let bad = tune_rerank(&synthetic(-2.0), Target::Ndcg10, 5);
        assert_eq!(bad.depth, 0, "{bad:?}");
        assert!((bad.cv_score - bad.none_score).abs() < 1e-9, "{bad:?}");
    }
}
