//! Experiment: would token MaxSim over the stored codes, run over *every* document as a
//! third candidate leg, find the relevant documents both legs miss (recall@100)?
//! `cargo run --release -p pinpoint-experiments --example maxsim_leg -- INDEX_WITH_CODES BEIR_DIR SPLIT`
//!
//! Scores every document of the index by 1-bit MaxSim (all its chunks' codes) for each query,
//! then merges the MaxSim top 100 with the fused list (z-scores of the fused score and of
//! MaxSim over the union, MaxSim weight w) and prints recall@100 and nDCG@10 per w.
use pinpoint_experiments::support;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use pinpoint::eval::beir_labelled;
use pinpoint::eval::metrics::{ndcg, recall};
use pinpoint::late::QueryCodes;
use pinpoint::{Engine, Pipeline};
use pinpoint_experiments::rerank_tune::collect_rerank;
use rayon::prelude::*;

fn zscore(v: &[f32]) -> Vec<f32> {
    let n = v.len().max(1) as f32;
    let m = v.iter().sum::<f32>() / n;
    let sd = (v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / n).sqrt();
    v.iter()
        .map(|x| if sd > 0.0 { (x - m) / sd } else { 0.0 })
        .collect()
}

/// MaxSim as a fusion feature of every fused candidate (no third leg), with the head
/// reranked afterwards as the default does: grid over the feature weight `w` and the head
/// blend weight `h`, train score and 5-fold held-out score (folds by query order).
fn feature_cv(
    engine: &Engine,
    base: &[pinpoint_experiments::rerank_tune::RerankFeatures],
    labelled: &pinpoint::eval::Labelled,
    doc_parts: &[(&str, Vec<usize>)],
) {
    let e = engine.embedder().expect("model");
    let codes = engine.segments();
    let parts: HashMap<&str, &Vec<usize>> = doc_parts.iter().map(|(k, v)| (*k, v)).collect();
    let ws = [0.0f32, 0.1, 0.2, 0.3, 0.4, 0.5];
    let hs = [0.0f32, 0.2, 0.4, 0.5, 0.6, 0.7];
    // Per query, per (w, h): (nDCG@10, R@100).
    let grid: Vec<Vec<(f64, f64)>> = base
        .iter()
        .zip(labelled)
        .map(|(q, (_, text, _))| {
            let (_, qt) = e.embed_query_with_tokens(text).expect("query");
            let qc = QueryCodes::new(&qt);
            let ms: Vec<f32> = q
                .fused
                .par_iter()
                .map(|(d, _)| {
                    let held: Vec<_> = parts
                        .get(d.as_str())
                        .map(|v| v.iter().map(|&p| codes.codes(p).gather()).collect())
                        .unwrap_or_default();
                    let ps: Vec<&[u8]> = held.iter().map(|c| c.as_ref()).collect();
                    qc.maxsim(&ps)
                })
                .collect();
            let fz = zscore(&q.fused.iter().map(|x| x.1).collect::<Vec<_>>());
            let mz = zscore(&ms);
            let mut out = Vec::new();
            for w in ws {
                let mut o: Vec<(u64, f32)> = (0..ms.len())
                    .map(|i| (i as u64, (1.0 - w) * fz[i] + w * mz[i]))
                    .collect();
                o.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let head: Vec<f32> = o.iter().take(20).map(|(i, _)| ms[*i as usize]).collect();
                for h in hs {
                    let order = pinpoint::engine::blend_rerank(&o, &head, h);
                    let ranked: Vec<String> = order
                        .iter()
                        .map(|(i, _)| q.fused[*i as usize].0.clone())
                        .filter(|d| *d != q.qid)
                        .collect();
                    out.push((ndcg(&ranked, &q.rels, 10), recall(&ranked, &q.rels, 100)));
                }
            }
            out
        })
        .collect();
    let n = grid.len();
    let mean = |idx: &dyn Fn(usize) -> bool, c: usize| -> (f64, f64) {
        let (mut a, mut b, mut m) = (0.0, 0.0, 0.0);
        for (i, g) in grid.iter().enumerate() {
            if idx(i) {
                a += g[c].0;
                b += g[c].1;
                m += 1.0;
            }
        }
        (a / m, b / m)
    };
    for (wi, w) in ws.iter().enumerate() {
        let row: Vec<String> = hs
            .iter()
            .enumerate()
            .map(|(hi, h)| {
                let (g, r) = mean(&|_| true, wi * hs.len() + hi);
                format!("h {h:.1}: {g:.4}/{r:.4}")
            })
            .collect();
        println!("w {w:.1}  {}", row.join("  "));
    }
    let (mut cv_g, mut cv_r) = (0.0, 0.0);
    for f in 0..5 {
        let best = (0..ws.len() * hs.len())
            .max_by(|&a, &b| {
                mean(&|i| i % 5 != f, a)
                    .0
                    .total_cmp(&mean(&|i| i % 5 != f, b).0)
            })
            .unwrap_or(0);
        let (g, r) = mean(&|i| i % 5 == f, best);
        let cnt = (0..n).filter(|i| i % 5 == f).count() as f64;
        cv_g += g * cnt;
        cv_r += r * cnt;
        println!(
            "fold {f}: chose w {:.1} h {:.1}, held-out nDCG@10 {g:.4} R@100 {r:.4}",
            ws[best / hs.len()],
            hs[best % hs.len()]
        );
    }
    println!(
        "5-fold held-out: nDCG@10 {:.4} R@100 {:.4}",
        cv_g / n as f64,
        cv_r / n as f64
    );
}

fn main() {
    let (engine, ds) = support::open_eval();
    let labelled = beir_labelled(&ds);
    // PP_NO_LEG=1: MaxSim only as a feature of the fused list's candidates.
    let with_leg = std::env::var("PP_NO_LEG").is_err();
    let no_rerank = Pipeline {
        rerank: None,
        ..Pipeline::default()
    };
    let base = collect_rerank(&engine, &labelled, &no_rerank, 100).expect("search");
    let codes = engine.segments();
    assert!(!codes.is_empty(), "this index keeps no token codes");
    let doc_parts: Vec<(&str, Vec<usize>)> = engine
        .document_positions()
        .expect("documents")
        .map(|(k, ps)| (k, ps.iter().map(|&p| p as usize).collect()))
        .collect();
    let e = engine.embedder().expect("model");
    if std::env::var("PP_FEATURE").is_ok() {
        feature_cv(&engine, &base, &labelled, &doc_parts);
        return;
    }
    let t0 = Instant::now();
    // Per query: MaxSim of every document.
    let all: Vec<HashMap<&str, f32>> = labelled
        .iter()
        .map(|(_, text, _)| {
            let (_, qt) = e.embed_query_with_tokens(text).expect("query");
            let qc = QueryCodes::new(&qt);
            doc_parts
                .par_iter()
                .map(|(k, ps)| {
                    let held: Vec<_> = ps.iter().map(|&p| codes.codes(p).gather()).collect();
                    let parts: Vec<&[u8]> = held.iter().map(|c| c.as_ref()).collect();
                    (*k, qc.maxsim(&parts))
                })
                .collect()
        })
        .collect();
    eprintln!(
        "{} queries x {} documents scored in {:.0} s",
        all.len(),
        doc_parts.len(),
        t0.elapsed().as_secs_f64()
    );
    let n = base.len() as f64;
    let (mut r_leg, mut n_leg, mut r_fused, mut r_union, mut missed, mut found) =
        (0.0, 0.0, 0.0, 0.0, 0usize, 0usize);
    let mut merged: Vec<Vec<Vec<String>>> = Vec::new();
    let weights = [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7];
    for (q, ms) in base.iter().zip(&all) {
        let mut leg: Vec<(&str, f32)> = ms
            .iter()
            .filter(|(k, _)| **k != q.qid)
            .map(|(k, s)| (*k, *s))
            .collect();
        leg.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        leg.truncate(100);
        let leg_ids: Vec<String> = leg.iter().map(|x| x.0.to_string()).collect();
        let fused_ids: Vec<String> = q
            .fused
            .iter()
            .map(|x| x.0.clone())
            .filter(|d| *d != q.qid)
            .collect();
        r_leg += recall(&leg_ids, &q.rels, 100);
        n_leg += ndcg(&leg_ids, &q.rels, 10);
        r_fused += recall(&fused_ids, &q.rels, 100);
        let in_fused: HashSet<&str> = fused_ids.iter().map(|s| s.as_str()).collect();
        let mut union: Vec<String> = fused_ids.clone();
        if with_leg {
            union.extend(
                leg_ids
                    .iter()
                    .filter(|d| !in_fused.contains(d.as_str()))
                    .cloned(),
            );
        }
        r_union += recall(&union, &q.rels, usize::MAX);
        for (d, g) in &q.rels {
            if *g > 0 && !in_fused.contains(d.as_str()) {
                missed += 1;
                if leg_ids.contains(d) {
                    found += 1;
                }
            }
        }
        // Merge: fused score (the fused list's minimum for documents it lacks) and MaxSim.
        let fmin = q.fused.iter().map(|x| x.1).fold(f32::MAX, f32::min);
        let fmap: HashMap<&str, f32> = q.fused.iter().map(|x| (x.0.as_str(), x.1)).collect();
        let fz = zscore(
            &union
                .iter()
                .map(|d| fmap.get(d.as_str()).copied().unwrap_or(fmin))
                .collect::<Vec<_>>(),
        );
        let mz = zscore(
            &union
                .iter()
                .map(|d| ms.get(d.as_str()).copied().unwrap_or(0.0))
                .collect::<Vec<_>>(),
        );
        merged.push(
            weights
                .iter()
                .map(|w| {
                    let mut o: Vec<(usize, f32)> = (0..union.len())
                        .map(|i| (i, (1.0 - w) * fz[i] + w * mz[i]))
                        .collect();
                    o.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    o.iter().map(|(i, _)| union[*i].clone()).collect()
                })
                .collect(),
        );
    }
    println!(
        "fused R@100 {:.4}; MaxSim leg alone R@100 {:.4} nDCG@10 {:.4}; union recall {:.4}; \
         relevant outside the fused list {missed}, of them in the MaxSim top 100 {found}",
        r_fused / n,
        r_leg / n,
        n_leg / n,
        r_union / n
    );
    for (i, w) in weights.iter().enumerate() {
        let (mut r, mut g) = (0.0, 0.0);
        for (q, m) in base.iter().zip(&merged) {
            r += recall(&m[i], &q.rels, 100);
            g += ndcg(&m[i], &q.rels, 10);
        }
        println!(
            "fused + {w:.1} x MaxSim over the union: R@100 {:.4} nDCG@10 {:.4}",
            r / n,
            g / n
        );
    }
}
