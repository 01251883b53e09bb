//! Experiment behind the "recall guard" entry of docs/decisions.md: does guaranteeing each
//! leg's top G documents a place in the final top 100 raise recall@100 without touching the
//! head? `cargo run --release -p pinpoint-experiments --example recall_guard -- INDEX_DIR BEIR_DIR SPLIT`
//! (`PP_DEPTH=N`: candidates per leg, 100 by default).
use pinpoint_experiments::support;

use std::collections::HashSet;

use pinpoint::eval::metrics;
use pinpoint::Pipeline;

fn guarded(fused: &[String], legs: [&[String]; 2], g: usize, keep: usize) -> Vec<String> {
    let mut must: Vec<&String> = Vec::new();
    let head: HashSet<&String> = fused.iter().take(keep).collect();
    for leg in legs {
        for d in leg.iter().take(g) {
            if !head.contains(d) && !must.contains(&d) {
                must.push(d);
            }
        }
    }
    // Fill the top `keep` with the fused order, making room at the bottom for the
    // guaranteed documents that fusion ranked lower.
    let mut out: Vec<String> = Vec::new();
    let room = keep.saturating_sub(must.len());
    let mut seen = HashSet::new();
    for d in fused.iter().take(room) {
        out.push(d.clone());
        seen.insert(d.clone());
    }
    let mut rest: Vec<&String> = fused.iter().skip(room).collect();
    rest.retain(|d| !seen.contains(*d));
    // Guaranteed ones in fused order first, then the rest.
    let musts: HashSet<&String> = must.iter().copied().collect();
    for d in rest.iter().filter(|d| musts.contains(*d)) {
        out.push((*d).clone());
        seen.insert((*d).clone());
    }
    for d in &must {
        if !seen.contains(*d) {
            out.push((*d).clone());
            seen.insert((*d).clone());
        }
    }
    for d in rest {
        if !seen.contains(d) {
            out.push(d.clone());
            seen.insert(d.clone());
        }
    }
    out
}

fn main() {
    let (engine, ds) = support::open_eval();
    let p = Pipeline {
        select: None,
        multi_query: false,
        rerank: None,
        ..Pipeline::default()
    };
    let gs = [0usize, 10, 20, 30, 40, 50, 60];
    let mut r100 = vec![0.0; gs.len()];
    let mut nd = vec![0.0; gs.len()];
    let mut n = 0.0;
    let mut ids: Vec<&String> = ds.qrels.keys().collect();
    ids.sort();
    for qid in ids {
        let Some(text) = ds.queries.get(qid) else {
            continue;
        };
        let req = support::document_request(text, &p);
        let o = engine.search_detailed(&req).expect("search");
        let clean = |v: &[(String, f32)]| -> Vec<String> {
            v.iter().map(|x| x.0.clone()).filter(|d| d != qid).collect()
        };
        let (f, l, d) = (clean(&o.ranked), clean(&o.lexical), clean(&o.dense));
        for (i, &g) in gs.iter().enumerate() {
            let r = guarded(&f, [&l, &d], g, 100);
            r100[i] += metrics::recall(&r, &ds.qrels[qid], 100);
            nd[i] += metrics::ndcg(&r, &ds.qrels[qid], 10);
        }
        n += 1.0;
    }
    for (i, g) in gs.iter().enumerate() {
        println!(
            "guarantee top {g:>2} of each leg: R@100 {:.4}  nDCG@10 {:.4}",
            r100[i] / n,
            nd[i] / n
        );
    }
}
