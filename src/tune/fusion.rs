//! The first look: the fusion of the two legs on the fused list alone ([`tune_fusion`]).

use std::collections::HashMap;

use super::*;
use crate::engine::{Engine, Granularity, Mode, Pipeline, SearchRequest};
use crate::error::Result;
use crate::eval::Labelled;
use crate::fuse::{fuse, Fusion, Norm};

/// One query's candidates with both features.
pub struct QueryFeatures {
    /// Judgements.
    pub rels: HashMap<String, i32>,
    /// (doc, BM25, cosine).
    pub cands: Vec<(String, f32, f32)>,
    /// Query id (excluded from rankings, BEIR convention).
    pub qid: String,
}

/// Collects features of every train query (one engine pass).
pub fn collect(engine: &Engine, queries: &Labelled, depth: usize) -> Result<Vec<QueryFeatures>> {
    let p = Pipeline {
        select: None,
        multi_query: false,
        prf: None,
        rerank: None,
        ..Pipeline::default()
    };
    let mut out = Vec::with_capacity(queries.len());
    for (qid, text, rels) in queries {
        let req = SearchRequest {
            depth,
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: p.clone(),
            ..SearchRequest::new(text.as_str(), 10)
        };
        let o = engine.search_detailed(&req)?;
        out.push(QueryFeatures {
            rels: rels.clone(),
            cands: o.candidates,
            qid: qid.clone(),
        });
    }
    Ok(out)
}

/// The fusion grid searched.
pub fn grid() -> Vec<Fusion> {
    let mut g = Vec::new();
    for i in 0..=20 {
        let w = i as f32 / 20.0;
        g.push(Fusion::Weighted {
            norm: Norm::MinMax,
            weights: vec![1.0 - w, w],
        });
        g.push(Fusion::Weighted {
            norm: Norm::ZScore,
            weights: vec![1.0 - w, w],
        });
    }
    for k in [5.0, 10.0, 20.0, 40.0, 60.0, 100.0] {
        for i in 2..=8 {
            let w = i as f32 / 10.0;
            g.push(Fusion::Rrf {
                k,
                weights: vec![2.0 * (1.0 - w), 2.0 * w],
            });
        }
    }
    g
}

/// Mean target of `fusion` over `queries`.
pub fn evaluate(features: &[&QueryFeatures], fusion: &Fusion, target: Target) -> f64 {
    let mut sum = 0.0;
    for q in features {
        let all = q
            .cands
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u64, c.1, c.2));
        let order = fuse_features(all, fusion);
        sum += score_order(target, order, |i| &q.cands[i].0, &q.qid, &q.rels);
    }
    sum / features.len().max(1) as f64
}

/// Result of a tuning run.
#[derive(Debug, Clone)]
pub struct Tuned {
    /// Best fusion on all queries.
    pub fusion: Fusion,
    /// Its mean target on all queries (optimistic: chosen on them).
    pub train_score: f64,
    /// Mean held-out target of the fusion chosen on the other folds (honest estimate).
    pub cv_score: f64,
    /// The fusion each fold chose.
    pub fold_choices: Vec<Fusion>,
    /// The five best settings on all queries.
    pub top: Vec<(Fusion, f64)>,
}

/// Grid search with `folds`-fold cross-validation.
pub fn tune_fusion(features: &[QueryFeatures], target: Target, folds: usize) -> Tuned {
    let grid = grid();
    let pick =
        |idx: &[usize]| -> Vec<&QueryFeatures> { idx.iter().map(|&i| &features[i]).collect() };
    let rels: Vec<&HashMap<String, i32>> = features.iter().map(|q| &q.rels).collect();
    let (cv_score, fold_choices) = cross_validate(&rels, folds, &grid, |idx, f| {
        evaluate(&pick(idx), f, target)
    });
    let all: Vec<&QueryFeatures> = features.iter().collect();
    let mut scored: Vec<(Fusion, f64)> = grid
        .iter()
        .map(|f| (f.clone(), evaluate(&all, f, target)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (fusion, train_score) = scored[0].clone();
    Tuned {
        fusion,
        train_score,
        cv_score,
        fold_choices,
        top: scored.into_iter().take(5).collect(),
    }
}

/// Fuses candidates scored on both legs, `(key, BM25, cosine)`, as the engine does with
/// full features: each leg ordered best first (ties by key), then [`fuse`].
pub(super) fn fuse_features(
    cands: impl Iterator<Item = (u64, f32, f32)>,
    fusion: &Fusion,
) -> Vec<(u64, f32)> {
    let (mut by_lex, mut by_den) = (Vec::new(), Vec::new());
    for (k, l, d) in cands {
        by_lex.push((k, l));
        by_den.push((k, d));
    }
    for leg in [&mut by_lex, &mut by_den] {
        leg.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    fuse(&[&by_lex, &by_den], fusion)
}
