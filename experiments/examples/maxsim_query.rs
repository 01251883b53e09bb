//! Experiment: which query tokens should the token reranker average over?
//! `cargo run --release -p pinpoint-experiments --example maxsim_query -- INDEX BEIR_DIR SPLIT`
//!
//! The shipped reranker scores a document by its best chunk's MaxSim: the mean over *all*
//! query tokens of each one's best cosine with a chunk token (stored 1-bit codes). On long
//! queries (`benches/collections/rust_code.py --long`) it lowered nDCG@10 by 0.02-0.03. This
//! collects, per query and head document, every query token's best score per chunk, then
//! compares query-token weightings: uniform (shipped), content tokens only (stopwords and
//! punctuation out, as passages already are), word-piece IDF over the chunks, and both.
//! Each is scored at the shipped depth and weight and by `tune_rerank` (train, 5 grouped
//! folds held out). Then blends, and the gain by query length with the weight fading over
//! several ranges (what `LengthFade::TOKENS` was chosen from). "Shipped" here is the blend
//! without the fade, for every query: the reranker as it was before this experiment.
use pinpoint_experiments::support;

use std::collections::HashMap;

use pinpoint::eval::{beir_labelled, metrics};
use pinpoint::fuse::normalize;
use pinpoint::late::{keep_token, QueryCodes};
use pinpoint::tune::{fold_split, Target};
use pinpoint::{LengthFade, Norm, Pipeline, RerankConfig, RerankKind};
use pinpoint_experiments::rerank_tune::{
    collect_rerank, evaluate_rerank, tune_rerank, RerankFeatures,
};

fn main() {
    let (engine, ds) = support::open_eval();
    let labelled = beir_labelled(&ds);
    let e = engine.embedder().expect("model");
    let codes = engine.segments();
    let idf = support::piece_idf(&engine);

    let doc_chunks: HashMap<&str, Vec<usize>> = engine
        .document_positions()
        .expect("documents")
        .map(|(k, ps)| (k, ps.iter().map(|&p| p as usize).collect()))
        .collect();
    let no_rerank = Pipeline {
        rerank: None,
        ..Pipeline::default()
    };
    let base = collect_rerank(&engine, &labelled, &no_rerank, 100).expect("search");
    let depth = RerankConfig::new(RerankKind::Tokens).depth;
    let weight = RerankConfig::new(RerankKind::Tokens).weight;

    // Per query: token weights of each variant; per head doc and chunk, each token's best.
    type Weights = Vec<Vec<f32>>;
    let mut per_q: Vec<(Weights, Vec<Vec<Vec<f32>>>)> = Vec::new();
    let mut lens = Vec::new();
    for (q, (_, text, _)) in base.iter().zip(&labelled) {
        // PP_MASK=k: ColBERT's query augmentation, k [MASK] tokens appended to the query so
        // that their contextual vectors act as soft expansion terms.
        let masks: usize = std::env::var("PP_MASK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let augmented = format!("{text}{}", " [MASK]".repeat(masks));
        let (_, mut qt) = e.embed_query_with_tokens(&augmented).expect("query");
        // PP_QSENT=1: each sentence of the query encoded on its own (shorter contexts).
        if std::env::var("PP_QSENT").is_ok() {
            let sents = pinpoint::rerank::sentences(text);
            if sents.len() > 1 {
                let ms = e.embed_tokens(&sents).expect("sentences");
                qt = pinpoint::embed::TokenMatrix {
                    dim: qt.dim,
                    data: ms.into_iter().flat_map(|m| m.data).collect(),
                };
            }
        }
        let spans = e.token_spans(text);
        let pieces: Vec<&str> = if spans.len() == qt.len() && std::env::var("PP_QSENT").is_err() {
            spans.iter().map(|&(a, b)| &text[a..b]).collect()
        } else {
            vec![""; qt.len()]
        };
        lens.push(qt.len());
        let content: Vec<f32> = pieces
            .iter()
            .map(|p| {
                if p.is_empty() || keep_token(p) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let idfs: Vec<f32> = pieces.iter().map(|p| idf(p)).collect();
        let both: Vec<f32> = idfs.iter().zip(&content).map(|(a, b)| a * b).collect();
        let uniform = vec![1.0; qt.len()];
        let qc = QueryCodes::new(&qt);
        let heads: Vec<Vec<Vec<f32>>> = q
            .fused
            .iter()
            .take(depth)
            .map(|(d, _)| {
                doc_chunks
                    .get(d.as_str())
                    .map(|ps| {
                        ps.iter()
                            .map(|&p| qc.token_bests(&[&codes.codes(p).gather()]))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        per_q.push((vec![uniform, content, idfs, both], heads));
    }
    let qlens = lens.clone();
    lens.sort_unstable();
    println!(
        "{} queries, query tokens median {} max {}",
        base.len(),
        lens.get(lens.len() / 2).copied().unwrap_or(0),
        lens.last().copied().unwrap_or(0)
    );
    let mut uniform_qs = Vec::new();
    for (vi, name) in [
        "uniform (shipped)",
        "content tokens",
        "idf",
        "idf x content",
    ]
    .iter()
    .enumerate()
    {
        let qs: Vec<RerankFeatures> = base
            .iter()
            .zip(&per_q)
            .map(|(q, (ws, heads))| {
                let w = &ws[vi];
                let wsum: f32 = w.iter().sum::<f32>().max(1e-6);
                let scores = heads
                    .iter()
                    .map(|chunks| {
                        chunks
                            .iter()
                            .filter(|b| b.len() == w.len())
                            .map(|b| b.iter().zip(w).map(|(x, y)| x * y).sum::<f32>() / wsum)
                            .fold(0.0f32, f32::max)
                    })
                    .collect();
                RerankFeatures {
                    rels: q.rels.clone(),
                    qid: q.qid.clone(),
                    fused: q.fused.clone(),
                    scores,
                    fade: 1.0,
                }
            })
            .collect();
        let all: Vec<&RerankFeatures> = qs.iter().collect();
        let shipped = evaluate_rerank(&all, depth, weight, Target::Ndcg10);
        let t = tune_rerank(&qs, Target::Ndcg10, 5);
        println!(
            "{name:20} none {:.4}  shipped (depth {depth}, weight {weight}) {shipped:.4}  best depth {} weight {} train {:.4} held-out {:.4}",
            t.none_score, t.depth, t.weight, t.train_score, t.cv_score
        );
        if vi == 0 {
            uniform_qs = qs;
        }
    }
    blends(&uniform_qs, depth);
    by_length(&uniform_qs, &qlens, depth, weight);
}

/// The shipped blend's gain over no reranking, by query length (tokens), and the weight
/// made to fall with query length: full up to `lo` tokens, none from `hi`, linear between.
fn by_length(qs: &[RerankFeatures], lens: &[usize], depth: usize, weight: f32) {
    for (lo, hi) in [
        (32usize, 33usize),
        (48, 49),
        (64, 65),
        (96, 97),
        (32, 64),
        (48, 96),
        (32, 96),
        (24, 72),
    ] {
        let mut sum = 0.0;
        for (q, &l) in qs.iter().zip(lens) {
            let f = LengthFade {
                full_until: lo,
                off_from: hi,
            }
            .factor(l);
            sum += evaluate_rerank(&[q], depth, weight * f, Target::Ndcg10);
        }
        println!(
            "  weight falls from {lo} to {hi} tokens: {:.4}",
            sum / qs.len() as f64
        );
    }
    let edges = [0usize, 8, 12, 16, 20, 24, 32, 48, 64, 96, 1000];
    for w in edges.windows(2) {
        let idx: Vec<usize> = (0..qs.len())
            .filter(|&i| lens[i] >= w[0] && lens[i] < w[1])
            .collect();
        if idx.is_empty() {
            continue;
        }
        let sel: Vec<&RerankFeatures> = idx.iter().map(|&i| &qs[i]).collect();
        let none = evaluate_rerank(&sel, 0, 0.0, Target::Ndcg10);
        let with = evaluate_rerank(&sel, depth, weight, Target::Ndcg10);
        println!(
            "  tokens {:>3}-{:<4} queries {:4}  none {none:.4}  reranked {with:.4}  gain {:+.4}",
            w[0],
            w[1],
            idx.len(),
            with - none
        );
    }
}

/// nDCG@10 of `q` with its head (as many as it has scores) reordered by `score(fused, rerank)`.
fn ndcg_with(q: &RerankFeatures, head: &[f32]) -> f64 {
    let n = head.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| head[b].total_cmp(&head[a]).then(a.cmp(&b)));
    let ranked: Vec<String> = idx
        .into_iter()
        .chain(n..q.fused.len())
        .map(|i| q.fused[i].0.clone())
        .filter(|d| *d != q.qid)
        .collect();
    metrics::ndcg(&ranked, &q.rels, 10)
}

/// `v` normalised as the engine normalises a leg ([`normalize`]).
fn norm(v: &[f32], how: Norm) -> Vec<f32> {
    let leg: Vec<(u64, f32)> = v.iter().enumerate().map(|(i, &s)| (i as u64, s)).collect();
    normalize(&leg, how).into_iter().map(|x| x.1).collect()
}

/// Blends of the fused score with MaxSim over the head: the shipped min-max blend, and the
/// fused score kept on its own (z) scale plus lambda times MaxSim z-scored over the head, so
/// that a head the fusion already separates widely is reordered less.
fn blends(qs: &[RerankFeatures], depth: usize) {
    type Rule = Box<dyn Fn(&[f32], &[f32]) -> Vec<f32>>;
    let mut grid: Vec<(String, Rule)> = vec![("none".into(), Box::new(|f, _| f.to_vec()))];
    for w in [0.2f32, 0.4, 0.6, 0.8] {
        grid.push((
            format!("minmax w {w}"),
            Box::new(move |f, r| {
                let (a, b) = (norm(f, Norm::MinMax), norm(r, Norm::MinMax));
                a.iter()
                    .zip(&b)
                    .map(|(x, y)| (1.0 - w) * x + w * y)
                    .collect()
            }),
        ));
    }
    for l in [0.1f32, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5] {
        grid.push((
            format!("z-head lambda {l}"),
            Box::new(move |f, r| {
                let b = norm(r, Norm::ZScore);
                f.iter().zip(&b).map(|(x, y)| x + l * y).collect()
            }),
        ));
    }
    // Per query and rule: nDCG@10.
    let table: Vec<Vec<f64>> = qs
        .iter()
        .map(|q| {
            let n = depth.min(q.scores.len());
            let f: Vec<f32> = q.fused[..n].iter().map(|x| x.1).collect();
            grid.iter()
                .map(|(_, rule)| ndcg_with(q, &rule(&f, &q.scores[..n])))
                .collect()
        })
        .collect();
    let mean = |idx: &[usize], g: usize| {
        idx.iter().map(|&i| table[i][g]).sum::<f64>() / idx.len().max(1) as f64
    };
    let all: Vec<usize> = (0..qs.len()).collect();
    for (g, (name, _)) in grid.iter().enumerate() {
        println!("  {name:18} {:.4}", mean(&all, g));
    }
    // Held out: each family chooses its setting on the other folds.
    let rels: Vec<_> = qs.iter().map(|q| &q.rels).collect();
    let folds = fold_split(&rels, 5);
    for fam in ["minmax", "z-head"] {
        let members: Vec<usize> = (0..grid.len())
            .filter(|&g| g == 0 || grid[g].0.starts_with(fam))
            .collect();
        let mut held = 0.0;
        let mut picks = Vec::new();
        for (test, train) in &folds {
            let best = members
                .iter()
                .copied()
                .max_by(|&a, &b| mean(train, a).total_cmp(&mean(train, b)))
                .unwrap_or(0);
            picks.push(grid[best].0.clone());
            held += mean(test, best) * test.len() as f64;
        }
        println!(
            "  {fam}: held-out {:.4}  picks {:?}",
            held / qs.len() as f64,
            picks
        );
    }
}
