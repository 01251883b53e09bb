//! Experiment: how the reranked head is blended with the fused list. The engine min-max
//! normalises both scores within the head and mixes them (`engine::blend_rerank`); a
//! rank-based blend (weighted reciprocal ranks within the head, as RRF) ignores the score
//! distributions altogether. `cargo run --release -p pinpoint-experiments --example blend_rule -- INDEX BEIR_DIR
//! SPLIT`
//!
//! One engine pass with every candidate reranked (`tune::collect_joint`, the index's
//! retrieval settings), then both rules over a grid of depth and weight (and k for the rank
//! rule), each scored on all queries and with grouped 5-fold cross-validation.
use pinpoint_experiments::support;

use pinpoint::engine::blend_rerank;
use pinpoint::eval::{beir_labelled, metrics};
use pinpoint::tune::{collect_joint, cross_validate, replay, JointFeatures};
use pinpoint::{Pipeline, RerankConfig, RerankKind};
use rayon::prelude::*;

/// The head's order under the rank rule: each of the first `depth` fused documents scores
/// (1 − w)/(k + fused rank) + w/(k + rerank rank); the rest keep their places below.
fn rank_blend(fused: &[(u64, f32)], scores: &[f32], w: f32, k: f32) -> Vec<(u64, f32)> {
    let n = scores.len();
    let mut by_rr: Vec<usize> = (0..n).collect();
    by_rr.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut rr = vec![0usize; n];
    for (r, &i) in by_rr.iter().enumerate() {
        rr[i] = r;
    }
    let mut head: Vec<(usize, f32)> = (0..n)
        .map(|i| (i, (1.0 - w) / (k + i as f32) + w / (k + rr[i] as f32)))
        .collect();
    head.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out: Vec<(u64, f32)> = head.iter().map(|&(i, _)| (fused[i].0, 0.0)).collect();
    out.extend(fused[n..].iter().copied());
    out
}

fn main() {
    let (engine, ds) = support::open_eval();
    let labelled = beir_labelled(&ds);
    let p = Pipeline {
        rerank: Some(RerankConfig {
            kind: RerankKind::Tokens,
            depth: usize::MAX,
            weight: 1.0,
        }),
        ..engine.default_pipeline()
    };
    let qs: Vec<JointFeatures> = collect_joint(&engine, &labelled, &p, p.depth).expect("pass");
    let fusion = engine.default_pipeline().fusion;
    // (rule, depth, weight, k): rule 0 min-max (k unused), 1 ranks.
    let mut grid = vec![(0u8, 0usize, 0.0f32, 0.0f32)];
    for d in [10usize, 20, 30] {
        for w in 1..=9 {
            let w = w as f32 / 10.0;
            grid.push((0, d, w, 0.0));
            for k in [1.0, 5.0, 20.0, 60.0] {
                grid.push((1, d, w, k));
            }
        }
    }
    let scores: Vec<Vec<f64>> = qs
        .par_iter()
        .map(|q| {
            let fused = replay(q, p.depth, &fusion);
            let head = q.head_scores(&fused, 30);
            grid.iter()
                .map(|&(rule, d, w, k)| {
                    let order = match &head {
                        Some(head) if d > 0 => {
                            let h = &head[..d.min(head.len())];
                            if rule == 0 {
                                blend_rerank(&fused, h, w * q.fade)
                            } else {
                                rank_blend(&fused, h, w * q.fade, k)
                            }
                        }
                        _ => fused.clone(),
                    };
                    let ranked: Vec<String> = order
                        .into_iter()
                        .map(|(i, _)| q.cands[i as usize].0.clone())
                        .filter(|d| *d != q.qid)
                        .collect();
                    metrics::ndcg(&ranked, &q.rels, 10)
                })
                .collect()
        })
        .collect();
    let rels: Vec<_> = qs.iter().map(|q| &q.rels).collect();
    let mean =
        |idx: &[usize], g: usize| idx.iter().map(|&q| scores[q][g]).sum::<f64>() / idx.len() as f64;
    let all: Vec<usize> = (0..qs.len()).collect();
    for rule in [0u8, 1] {
        let points: Vec<usize> = (0..grid.len())
            .filter(|&g| g == 0 || grid[g].0 == rule)
            .collect();
        let best = points
            .iter()
            .copied()
            .max_by(|&a, &b| mean(&all, a).total_cmp(&mean(&all, b)))
            .unwrap_or(0);
        let (cv, picks) = cross_validate(&rels, 5, &points, |idx, &g| mean(idx, g));
        println!(
            "{}: best {:?} train {:.4}; grouped 5-fold held-out {:.4}; folds chose {:?}",
            if rule == 0 {
                "min-max blend (shipped)"
            } else {
                "rank blend"
            },
            grid[best],
            mean(&all, best),
            cv,
            picks.iter().map(|&g| grid[g]).collect::<Vec<_>>()
        );
    }
    println!("no reranking: {:.4}", mean(&all, 0));
}
