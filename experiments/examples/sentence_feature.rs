//! Experiments behind the "finer-grained dense features" entries of docs/decisions.md: does
//! a third signal add to BM25 + chunk cosine? Each run collects, for every judged query of a
//! BEIR split, the shipped pipeline's candidates (union of both legs' top 100 documents) with
//! both features, adds the third, and grid-searches z-score fusion weights with 5-fold
//! cross-validation, like `pinpoint tune`.
//!
//! `cargo run --release -p pinpoint-experiments --example sentence_feature -- INDEX_DIR BEIR_DIR SPLIT [FEATURE]`
//! where INDEX_DIR is the cached eval index of that collection (index-data/eval/...) and
//! FEATURE is one of:
//! - (none): best cosine over the document's sentences ("title. sentence");
//! - `title`: cosine with the embedded title;
//! - `prf:K:BETA`: chunk cosine with a Rocchio query vector (q + BETA · mean of the best chunk
//!   vectors of the top K fused documents);
//! - `adaptive:GAMMA`: no third feature; per-query leg weights from each leg's top z-score;
//! - a path: best cosine over the chunks of another eval index of the collection (built
//!   with smaller chunks).
//!
//! `PP_DEPTH=N` takes N candidates per leg instead of 100.
use pinpoint_experiments::support;

use std::collections::HashMap;
use std::path::Path;

use pinpoint::embed::{dot, normalize};
use pinpoint::eval::{metrics, Dataset};
use pinpoint::{
    BertEmbedder, DeviceChoice, Embedder, Engine, EngineConfig, Pipeline, SearchOutput,
};
use unicode_segmentation::UnicodeSegmentation;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Q {
    rels: HashMap<String, i32>,
    qid: String,
    /// (doc, [bm25, chunk cosine, third feature])
    cands: Vec<(String, [f32; 3])>,
}

/// One query's search output and vector, handed to a feature.
struct Ctx<'a> {
    qid: &'a str,
    out: &'a SearchOutput,
    qv: &'a [f32],
}

fn zscore(v: &mut [f32]) {
    let n = v.len().max(1) as f32;
    let mean = v.iter().sum::<f32>() / n;
    let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n).sqrt();
    for x in v.iter_mut() {
        *x = if sd > 0.0 { (*x - mean) / sd } else { 0.0 };
    }
}

/// `q`'s candidate documents ranked by `score(i)`, best first, the query's own id left out
/// (BEIR convention).
fn ranked_by(q: &Q, score: impl Fn(usize) -> f32) -> Vec<String> {
    let mut scored: Vec<(usize, f32)> = (0..q.cands.len()).map(|i| (i, score(i))).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
        .iter()
        .map(|&(i, _)| q.cands[i].0.clone())
        .filter(|d| *d != q.qid)
        .collect()
}

/// nDCG@10 of ranking `q`'s candidates by `score(i)`.
fn ndcg_by(q: &Q, score: impl Fn(usize) -> f32) -> f64 {
    metrics::ndcg(&ranked_by(q, score), &q.rels, 10)
}

fn zcols(q: &Q) -> Vec<Vec<f32>> {
    (0..3)
        .map(|j| {
            let mut c: Vec<f32> = q.cands.iter().map(|c| c.1[j]).collect();
            zscore(&mut c);
            c
        })
        .collect()
}

fn score(qs: &[&Q], w: [f32; 3]) -> f64 {
    let sum: f64 = qs
        .iter()
        .map(|q| {
            let cols = zcols(q);
            ndcg_by(q, |i| (0..3).map(|j| w[j] * cols[j][i]).sum())
        })
        .sum();
    sum / qs.len().max(1) as f64
}

fn best(set: &[&Q], grid: &[[f32; 3]]) -> ([f32; 3], f64) {
    grid.iter()
        .map(|w| (*w, score(set, *w)))
        .fold(
            ([0.0; 3], f64::MIN),
            |b, x| if x.1 > b.1 + 1e-12 { x } else { b },
        )
}

fn report(qs: &[Q], split: &str) {
    let mut grid = Vec::new();
    for a in 0..=20 {
        for b in 0..=(20 - a) {
            let (l, c) = (a as f32 / 20.0, b as f32 / 20.0);
            grid.push([l, c, 1.0 - l - c]);
        }
    }
    let all: Vec<&Q> = qs.iter().collect();
    println!("{} queries ({split})", qs.len());
    println!("bm25+chunk z 0.5/0.5: {:.4}", score(&all, [0.5, 0.5, 0.0]));
    let r100: f64 = all
        .iter()
        .map(|q| {
            let cols = zcols(q);
            let ranked = ranked_by(q, |i| 0.5 * cols[0][i] + 0.5 * cols[1][i]);
            metrics::recall(&ranked, &q.rels, 100)
        })
        .sum::<f64>()
        / all.len().max(1) as f64;
    println!("bm25+chunk z 0.5/0.5 recall@100: {r100:.4}");
    let two: Vec<[f32; 3]> = grid.iter().copied().filter(|w| w[2] == 0.0).collect();
    let (w, s) = best(&all, &two);
    println!("best two-feature: {w:?} {s:.4}");
    let (w, s) = best(&all, &grid);
    println!("best three-feature: {w:?} {s:.4}");
    let folds = 5;
    let mut cv = 0.0;
    for f in 0..folds {
        let part = |held: bool| -> Vec<&Q> {
            all.iter()
                .enumerate()
                .filter(|(i, _)| (i % folds == f) == held)
                .map(|x| *x.1)
                .collect()
        };
        let (w, _) = best(&part(false), &grid);
        let held = part(true);
        let s = score(&held, w);
        println!("fold {f}: chose {w:?}, held-out {s:.4}");
        cv += s * held.len() as f64;
    }
    println!("5-fold held-out: {:.4}", cv / all.len() as f64);
}

/// Runs every judged query through the shipped pipeline (document level, hybrid, no
/// selection) and builds its candidates with `third` as the third feature.
fn collect(
    ds: &Dataset,
    engine: &Engine,
    embedder: &BertEmbedder,
    third: impl Fn(&Ctx<'_>, &str, f32) -> f32,
) -> Vec<Q> {
    let pipeline = Pipeline {
        select: None,
        multi_query: false,
        rerank: None,
        ..Pipeline::default()
    };
    let mut ids: Vec<&String> = ds.qrels.keys().collect();
    ids.sort();
    let mut qs = Vec::new();
    for qid in ids {
        let Some(text) = ds.queries.get(qid) else {
            continue;
        };
        let req = support::document_request(text, &pipeline);
        let out = engine.search_detailed(&req).expect("search");
        let qv = embedder.embed_query(text).expect("embed");
        let ctx = Ctx {
            qid,
            out: &out,
            qv: &qv,
        };
        let cands = out
            .candidates
            .iter()
            .map(|(doc, l, c)| (doc.clone(), [*l, *c, third(&ctx, doc, *c)]))
            .collect();
        qs.push(Q {
            rels: ds.qrels[qid].clone(),
            qid: qid.clone(),
            cands,
        });
    }
    qs
}

/// Store rows of each document's chunks in `engine`.
fn doc_rows(engine: &Engine) -> HashMap<String, Vec<usize>> {
    engine
        .documents()
        .expect("doc table")
        .iter()
        .map(|d| {
            let rows = d
                .chunks
                .iter()
                .filter_map(|id| engine.segments().position(*id))
                .collect();
            (d.key.clone(), rows)
        })
        .collect()
}

/// The best dot product of `q` with `rows` of `vectors` (with its row), if any.
fn best_row(vectors: &[f32], dim: usize, rows: &[usize], q: &[f32]) -> Option<(f32, usize)> {
    rows.iter()
        .map(|&r| (dot(&vectors[r * dim..(r + 1) * dim], q), r))
        .fold(None, |m, x| match m {
            Some(m) if m.0 >= x.0 => Some(m),
            _ => Some(x),
        })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let index = Path::new(&args[1]);
    let beir = Path::new(&args[2]);
    let split = args.get(3).map(|s| s.as_str()).unwrap_or("train");
    let ds = Dataset::load_beir(beir, split).expect("dataset");
    let engine = Engine::open_read_only(index, EngineConfig::default()).expect("index");
    let embedder = BertEmbedder::load("models/all-MiniLM-L6-v2", DeviceChoice::Cpu).expect("model");
    let d = embedder.dim();
    let feature = args.get(4).map(|s| s.as_str()).unwrap_or("");

    if let Some(g) = feature.strip_prefix("adaptive:") {
        let gamma: f32 = g.parse().unwrap_or(1.0);
        let qs = collect(&ds, &engine, &embedder, |_, _, _| 0.0);
        let (mut fixed, mut adaptive) = (0.0, 0.0);
        for q in &qs {
            let cols = zcols(q);
            let top = |v: &[f32]| v.iter().fold(f32::MIN, |m, &x| m.max(x)).max(1e-3);
            let (cl, cd) = (top(&cols[0]).powf(gamma), top(&cols[1]).powf(gamma));
            let wl = cl / (cl + cd);
            fixed += ndcg_by(q, |i| 0.5 * cols[0][i] + 0.5 * cols[1][i]);
            adaptive += ndcg_by(q, |i| wl * cols[0][i] + (1.0 - wl) * cols[1][i]);
        }
        let n = qs.len().max(1) as f64;
        println!(
            "{split}: fixed 0.5/0.5 {:.4}, adaptive gamma {gamma} {:.4}",
            fixed / n,
            adaptive / n
        );
        return;
    }

    let qs = if feature == "title" {
        let titles: Vec<&str> = ds.corpus.iter().map(|x| x.1.as_str()).collect();
        let tv = embedder.embed_passages(&titles).expect("embed");
        let row: HashMap<&str, usize> = ds
            .corpus
            .iter()
            .enumerate()
            .map(|(i, x)| (x.0.as_str(), i))
            .collect();
        collect(&ds, &engine, &embedder, |cx, doc, c| {
            row.get(doc)
                .and_then(|&r| best_row(&tv, d, &[r], cx.qv))
                .map_or(c, |b| b.0)
        })
    } else if let Some(spec) = feature.strip_prefix("prf:") {
        let mut it = spec.split(':');
        let k: usize = it.next().and_then(|x| x.parse().ok()).unwrap_or(3);
        let beta: f32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0.5);
        let rows = doc_rows(&engine);
        let vf_file = engine.segments().live_vectors();
        let vf = vf_file.as_slice();
        // The Rocchio vector depends on the query only: cache it per query id.
        let cache = std::cell::RefCell::new(HashMap::<String, Vec<f32>>::new());
        collect(&ds, &engine, &embedder, |cx, doc, c| {
            let mut cache = cache.borrow_mut();
            let q2 = cache.entry(cx.qid.to_string()).or_insert_with(|| {
                let mut q2 = cx.qv.to_vec();
                for (top, _) in cx.out.ranked.iter().filter(|x| x.0 != cx.qid).take(k) {
                    let r = rows.get(top).and_then(|r| best_row(vf, d, r, cx.qv));
                    if let Some((_, r)) = r {
                        for (a, b) in q2.iter_mut().zip(&vf[r * d..(r + 1) * d]) {
                            *a += beta / k as f32 * b;
                        }
                    }
                }
                normalize(&mut q2);
                q2
            });
            rows.get(doc)
                .and_then(|r| best_row(vf, d, r, q2))
                .map_or(c, |b| b.0)
        })
    } else if !feature.is_empty() {
        let fine = Engine::open_read_only(Path::new(feature), EngineConfig::default())
            .expect("fine index");
        let rows = doc_rows(&fine);
        let vf_file = fine.segments().live_vectors();
        let vf = vf_file.as_slice();
        collect(&ds, &engine, &embedder, |cx, doc, c| {
            rows.get(doc)
                .and_then(|r| best_row(vf, d, r, cx.qv))
                .map_or(c, |b| b.0)
        })
    } else {
        let t = std::time::Instant::now();
        let mut texts = Vec::new();
        let mut rows: HashMap<String, Vec<usize>> = HashMap::new();
        for (id, title, text) in &ds.corpus {
            let start = texts.len();
            for s in text
                .unicode_sentences()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                texts.push(format!("{title}. {s}"));
            }
            rows.insert(id.clone(), (start..texts.len()).collect());
        }
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let sv = embedder.embed_passages(&refs).expect("embed");
        eprintln!(
            "{} sentences embedded in {:.0} s",
            texts.len(),
            t.elapsed().as_secs_f64()
        );
        collect(&ds, &engine, &embedder, |cx, doc, c| {
            rows.get(doc)
                .and_then(|r| best_row(&sv, d, r, cx.qv))
                .map_or(c, |b| b.0)
        })
    };
    report(&qs, split);
}
