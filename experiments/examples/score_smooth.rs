//! Experiment: cluster-hypothesis score smoothing of the default ranking's head.
//! `cargo run --release -p pinpoint-experiments --example score_smooth -- INDEX_WITH_CODES BEIR_DIR SPLIT`
//!
//! Each of the default ranking's top `m` documents takes, besides its own (blended, min-max)
//! score, the similarity-weighted mean score of its `k` nearest head neighbours (document
//! similarity: best cosine between any two of their chunks):
//! `s'_i = (1 - a) s_i + a * sum_j S_ij s_j / sum_j S_ij`. Label-free, no extra model call.
//! Grid over (m, k, a) with train scores and grouped 5-fold held-out scores.
use pinpoint_experiments::support;

use std::collections::HashMap;

use pinpoint::engine::blend_rerank;
use pinpoint::eval::beir_labelled;
use pinpoint::eval::metrics::ndcg;
use pinpoint::tune::cross_validate;
use pinpoint::Pipeline;
use pinpoint_experiments::rerank_tune::collect_rerank;
use rayon::prelude::*;

fn main() {
    let (engine, ds) = support::open_eval();
    let labelled = beir_labelled(&ds);
    let pipeline = Pipeline::default();
    let rc = pipeline.rerank.clone().expect("default reranks");
    let base = collect_rerank(&engine, &labelled, &pipeline, 100).expect("search");
    let vecs = &engine.segments().live_vectors();
    let parts: HashMap<&str, Vec<usize>> = engine
        .document_positions()
        .expect("documents")
        .map(|(k, ps)| (k, ps.iter().map(|&p| p as usize).collect()))
        .collect();
    let sim = |a: &str, b: &str| -> f32 {
        let mut best = f32::MIN;
        for &x in &parts[a] {
            for &y in &parts[b] {
                let s: f32 = vecs
                    .row(x)
                    .iter()
                    .zip(vecs.row(y))
                    .map(|(p, q)| p * q)
                    .sum();
                best = best.max(s);
            }
        }
        best
    };
    let ms = [10usize, 20];
    let ks = [1usize, 3, 5, 9];
    let alphas = [0.0f32, 0.05, 0.1, 0.2, 0.3, 0.4];
    let mut grid: Vec<(usize, usize, f32)> = Vec::new();
    for m in ms {
        for k in ks.iter().filter(|&&k| k < m) {
            for a in alphas {
                grid.push((m, *k, a));
            }
        }
    }
    // Per query, per grid point: nDCG@10.
    let table: Vec<Vec<f64>> = base
        .par_iter()
        .map(|q| {
            let fused: Vec<(u64, f32)> = q
                .fused
                .iter()
                .enumerate()
                .map(|(i, x)| (i as u64, x.1))
                .collect();
            let n = rc.depth.min(q.scores.len());
            let order = blend_rerank(&fused, &q.scores[..n], rc.weight);
            let key = |i: u64| q.fused[i as usize].0.as_str();
            grid.iter()
                .map(|&(m, k, a)| {
                    let m = m.min(order.len());
                    let head = &order[..m];
                    let lo = head.iter().map(|x| x.1).fold(f32::MAX, f32::min);
                    let hi = head.iter().map(|x| x.1).fold(f32::MIN, f32::max);
                    let s: Vec<f32> = head
                        .iter()
                        .map(|x| if hi > lo { (x.1 - lo) / (hi - lo) } else { 0.0 })
                        .collect();
                    let mut smoothed: Vec<(u64, f32)> = (0..m)
                        .map(|i| {
                            let mut nb: Vec<(f32, f32)> = (0..m)
                                .filter(|&j| j != i)
                                .map(|j| (sim(key(head[i].0), key(head[j].0)).max(0.0), s[j]))
                                .collect();
                            nb.sort_by(|x, y| y.0.total_cmp(&x.0));
                            nb.truncate(k);
                            let w: f32 = nb.iter().map(|x| x.0).sum();
                            let avg = if w > 0.0 {
                                nb.iter().map(|x| x.0 * x.1).sum::<f32>() / w
                            } else {
                                0.0
                            };
                            (head[i].0, (1.0 - a) * s[i] + a * avg)
                        })
                        .collect();
                    smoothed.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                    let ranked: Vec<String> = smoothed
                        .iter()
                        .chain(&order[m..])
                        .map(|x| key(x.0).to_string())
                        .filter(|d| *d != q.qid)
                        .collect();
                    ndcg(&ranked, &q.rels, 10)
                })
                .collect()
        })
        .collect();
    let mean = |idx: &[usize], g: usize| {
        idx.iter().map(|&i| table[i][g]).sum::<f64>() / idx.len().max(1) as f64
    };
    let all: Vec<usize> = (0..table.len()).collect();
    for (g, p) in grid.iter().enumerate() {
        println!("m {:2} k {} a {:.2}: {:.4}", p.0, p.1, p.2, mean(&all, g));
    }
    let rels: Vec<&HashMap<String, i32>> = base.iter().map(|q| &q.rels).collect();
    let idx: Vec<usize> = (0..grid.len()).collect();
    let (cv, choices) = cross_validate(&rels, 5, &idx, |qs, &g| mean(qs, g));
    let chosen: Vec<String> = choices
        .iter()
        .map(|&g| format!("m{} k{} a{:.2}", grid[g].0, grid[g].1, grid[g].2))
        .collect();
    println!("5-fold held-out {cv:.4}; folds chose {}", chosen.join(", "));
}
