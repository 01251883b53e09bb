//! Experiment: the weight of document expansion (`Pipeline::expansion`, [`pinpoint::near`]).
//! `cargo run --release -p pinpoint-experiments --example expansion_weight -- INDEX BEIR_DIR SPLIT [W ...]`
//!
//! For each weight, every judged query of the split is searched with the fused pipeline
//! (no reranking, no selection) and with the index's default pipeline; prints nDCG@10 and
//! recall@100 of both, then the default's grouped 5-fold held-out figures for two ways to
//! choose the weight on the other folds: the best nDCG@10, and the best recall@100 among
//! the weights that keep nDCG@10 within 0.001 of no expansion.
use pinpoint_experiments::support;

use pinpoint::eval::{beir_labelled, metrics};
use pinpoint::tune::cross_validate;
use pinpoint::Pipeline;
use rayon::prelude::*;

fn main() {
    let (engine, ds) = support::open_eval();
    let labelled = beir_labelled(&ds);
    let args: Vec<f32> = std::env::args()
        .skip(4)
        .map(|a| a.parse().expect("weight"))
        .collect();
    let grid = if args.is_empty() {
        vec![0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4]
    } else {
        args
    };
    let fused = Pipeline {
        select: None,
        multi_query: false,
        rerank: None,
        ..engine.default_pipeline()
    };
    // scores[g][q] = (fused nDCG@10, fused R@100, default nDCG@10, default R@100)
    let mut scores: Vec<Vec<[f64; 4]>> = Vec::new();
    for &w in &grid {
        let run = |base: &Pipeline| -> Vec<(f64, f64)> {
            let p = Pipeline {
                expansion: w,
                ..base.clone()
            };
            labelled
                .par_iter()
                .map(|(qid, text, rels)| {
                    let req = support::document_request(text, &p).exclude([qid.clone()]);
                    let out = engine.search_detailed(&req).expect("search");
                    let ranked: Vec<String> = out.ranked.iter().map(|h| h.0.clone()).collect();
                    (
                        metrics::ndcg(&ranked, rels, 10),
                        metrics::recall(&ranked, rels, 100),
                    )
                })
                .collect()
        };
        let f = run(&fused);
        let d = run(&engine.default_pipeline());
        let row: Vec<[f64; 4]> = f
            .iter()
            .zip(&d)
            .map(|(a, b)| [a.0, a.1, b.0, b.1])
            .collect();
        let mean = |i: usize| row.iter().map(|r| r[i]).sum::<f64>() / row.len().max(1) as f64;
        println!(
            "weight {w:<5} fused nDCG@10 {:.4} R@100 {:.4} | default nDCG@10 {:.4} R@100 {:.4}",
            mean(0),
            mean(1),
            mean(2),
            mean(3)
        );
        scores.push(row);
    }
    let rels: Vec<_> = labelled.iter().map(|q| &q.2).collect();
    let idx: Vec<usize> = (0..grid.len()).collect();
    let mean = |qs: &[usize], g: usize, m: usize| {
        qs.iter().map(|&q| scores[g][q][m]).sum::<f64>() / qs.len().max(1) as f64
    };
    let (cv, choices) = cross_validate(&rels, 5, &idx, |qs, &g| mean(qs, g, 2));
    let held = |choices: &[usize], m: usize| -> f64 {
        // The held-out mean of metric `m` under each fold's choice, as cross_validate
        // computes it for the chosen metric.
        let folds = pinpoint::tune::fold_split(&rels, 5);
        let (mut s, mut n) = (0.0, 0);
        for ((h, _), &g) in folds.iter().zip(choices) {
            s += mean(h, g, m) * h.len() as f64;
            n += h.len();
        }
        s / n.max(1) as f64
    };
    println!(
        "best nDCG@10 on the other folds: held-out nDCG@10 {cv:.4} R@100 {:.4}, weights {:?}",
        held(&choices, 3),
        choices.iter().map(|&g| grid[g]).collect::<Vec<_>>()
    );
    // Recall within an nDCG allowance (0.001 below no expansion, the first weight).
    let (_, choices) = cross_validate(&rels, 5, &idx, |qs, &g| {
        if mean(qs, g, 2) + 0.001 >= mean(qs, 0, 2) {
            mean(qs, g, 3)
        } else {
            f64::NEG_INFINITY
        }
    });
    println!(
        "best R@100 within 0.001 nDCG@10: held-out nDCG@10 {:.4} R@100 {:.4}, weights {:?}",
        held(&choices, 2),
        held(&choices, 3),
        choices.iter().map(|&g| grid[g]).collect::<Vec<_>>()
    );
}
