//! Experiment behind the sentence-vector feature (docs/decisions.md): does the best cosine
//! between the query and a candidate's individual sentences ("title. sentence", embedded
//! with the same model) add to BM25 + chunk cosine? Measured on a BEIR train split with the
//! fusion weights chosen by k-fold cross-validation, like `pinpoint tune`.
//!
//! `cargo run --release --example sentence_feature -- INDEX_DIR BEIR_DIR [SPLIT [FINE_INDEX]]`
//! where INDEX_DIR is the cached eval index of that collection (index-data/eval/...). With
//! FINE_INDEX (an eval index of the same collection built with smaller chunks), the third
//! feature is the best cosine over that index's chunks of the document instead of sentences.
use std::collections::HashMap;
use std::path::Path;

use pinpoint::eval::{metrics, Dataset};
use pinpoint::{
    BertEmbedder, DeviceChoice, Embedder, Engine, EngineConfig, Granularity, Mode, Pipeline,
    SearchRequest,
};
use unicode_segmentation::UnicodeSegmentation;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Q {
    rels: HashMap<String, i32>,
    qid: String,
    /// (doc, bm25, chunk cosine, best sentence cosine)
    cands: Vec<(String, [f32; 3])>,
}

fn zscore(v: &mut [f32]) {
    let n = v.len().max(1) as f32;
    let mean = v.iter().sum::<f32>() / n;
    let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n).sqrt();
    for x in v.iter_mut() {
        *x = if sd > 0.0 { (*x - mean) / sd } else { 0.0 };
    }
}

fn score(qs: &[&Q], w: [f32; 3]) -> f64 {
    let mut sum = 0.0;
    for q in qs {
        let mut cols: Vec<Vec<f32>> = (0..3)
            .map(|j| q.cands.iter().map(|c| c.1[j]).collect())
            .collect();
        cols.iter_mut().for_each(|c| zscore(c));
        let mut scored: Vec<(usize, f32)> = (0..q.cands.len())
            .map(|i| (i, (0..3).map(|j| w[j] * cols[j][i]).sum()))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let ranked: Vec<String> = scored
            .iter()
            .map(|&(i, _)| q.cands[i].0.clone())
            .filter(|d| *d != q.qid)
            .collect();
        sum += metrics::ndcg(&ranked, &q.rels, 10);
    }
    sum / qs.len().max(1) as f64
}

fn grid() -> Vec<[f32; 3]> {
    let mut g = Vec::new();
    for a in 0..=20 {
        for b in 0..=(20 - a) {
            let (l, c) = (a as f32 / 20.0, b as f32 / 20.0);
            g.push([l, c, 1.0 - l - c]);
        }
    }
    g
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let index = Path::new(&args[1]);
    let beir = Path::new(&args[2]);
    let split = args.get(3).map(|s| s.as_str()).unwrap_or("train");
    let ds = Dataset::load_beir(beir, split).expect("dataset");
    let engine = Engine::open_read_only(index, EngineConfig::default()).expect("index");
    let embedder = BertEmbedder::load("models/all-MiniLM-L6-v2", DeviceChoice::Cpu).unwrap();

    if let Some(fine) = args.get(4) {
        if let Some(g) = fine.strip_prefix("adaptive:") {
            return adaptive(&ds, &engine, split, g.parse().unwrap_or(1.0));
        }
        if fine == "title" {
            return title_feature(&ds, &engine, &embedder, split);
        }
        if let Some(spec) = fine.strip_prefix("prf:") {
            // prf:K:BETA — Rocchio on the query vector from the top K fused documents.
            let mut it = spec.split(':');
            let k: usize = it.next().and_then(|x| x.parse().ok()).unwrap_or(3);
            let beta: f32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0.5);
            return prf_feature(&ds, &engine, &embedder, split, k, beta);
        }
        return fine_feature(&ds, &engine, Path::new(fine), &embedder, split);
    }
    // Sentence vectors of every document.
    let t = std::time::Instant::now();
    let mut sent_texts = Vec::new();
    let mut sent_doc = Vec::new();
    let mut doc_sents: HashMap<String, (usize, usize)> = HashMap::new();
    for (id, title, text) in &ds.corpus {
        let start = sent_texts.len();
        for s in text.unicode_sentences() {
            let s = s.trim();
            if !s.is_empty() {
                sent_texts.push(format!("{title}. {s}"));
                sent_doc.push(id.clone());
            }
        }
        doc_sents.insert(id.clone(), (start, sent_texts.len()));
    }
    let refs: Vec<&str> = sent_texts.iter().map(|s| s.as_str()).collect();
    let sv = embedder.embed_passages(&refs).unwrap();
    let d = embedder.dim();
    eprintln!(
        "{} sentences embedded in {:.0} s",
        sent_texts.len(),
        t.elapsed().as_secs_f64()
    );

    let pipeline = Pipeline {
        select: None,
        multi_query: false,
        ..Pipeline::default()
    };
    let mut qs = Vec::new();
    let mut ids: Vec<&String> = ds.qrels.keys().collect();
    ids.sort();
    for qid in ids {
        let Some(text) = ds.queries.get(qid) else {
            continue;
        };
        let req = SearchRequest {
            depth: 100,
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: pipeline.clone(),
            ..SearchRequest::new(text.as_str(), 10)
        };
        let o = engine.search_detailed(&req).unwrap();
        let qv = embedder.embed_query(text).unwrap();
        let cands = o
            .candidates
            .iter()
            .map(|(doc, l, c)| {
                let (a, b) = doc_sents.get(doc).copied().unwrap_or((0, 0));
                let best = (a..b)
                    .map(|i| pinpoint::embed::dot(&sv[i * d..(i + 1) * d], &qv))
                    .fold(None, |m: Option<f32>, x| Some(m.map_or(x, |m| m.max(x))))
                    .unwrap_or(*c);
                (doc.clone(), [*l, *c, best])
            })
            .collect();
        qs.push(Q {
            rels: ds.qrels[qid].clone(),
            qid: qid.clone(),
            cands,
        });
    }
    report(&qs, split);
}

fn report(qs: &[Q], split: &str) {
    let all: Vec<&Q> = qs.iter().collect();
    let g = grid();
    let best_on = |set: &[&Q]| {
        g.iter()
            .map(|w| (*w, score(set, *w)))
            .fold(
                ([0.0; 3], f64::MIN),
                |b, x| if x.1 > b.1 + 1e-12 { x } else { b },
            )
    };
    println!("{} queries ({split})", qs.len());
    println!("bm25+chunk z 0.5/0.5: {:.4}", score(&all, [0.5, 0.5, 0.0]));
    let two = g
        .iter()
        .filter(|w| w[2] == 0.0)
        .map(|w| (*w, score(&all, *w)))
        .fold(
            ([0.0; 3], f64::MIN),
            |b, x| if x.1 > b.1 + 1e-12 { x } else { b },
        );
    println!("best two-feature: {:?} {:.4}", two.0, two.1);
    let (w, s) = best_on(&all);
    println!("best three-feature: {w:?} {s:.4}");
    let folds = 5;
    let mut cv = 0.0;
    for f in 0..folds {
        let tr: Vec<&Q> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds != f)
            .map(|x| *x.1)
            .collect();
        let he: Vec<&Q> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds == f)
            .map(|x| *x.1)
            .collect();
        let (w, _) = best_on(&tr);
        let s = score(&he, w);
        println!("fold {f}: chose {w:?}, held-out {s:.4}");
        cv += s * he.len() as f64;
    }
    println!("5-fold held-out: {:.4}", cv / all.len() as f64);
}

/// Per-query leg weights from the score distributions: a leg whose best candidate stands
/// far above its own mean (high top z-score) is more confident.
fn adaptive(ds: &Dataset, engine: &Engine, split: &str, gamma: f32) {
    let pipeline = Pipeline {
        select: None,
        multi_query: false,
        ..Pipeline::default()
    };
    let mut ids: Vec<&String> = ds.qrels.keys().collect();
    ids.sort();
    let (mut base, mut adapt, mut n) = (0.0, 0.0, 0.0);
    for qid in ids {
        let Some(text) = ds.queries.get(qid) else {
            continue;
        };
        let req = SearchRequest {
            depth: 100,
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: pipeline.clone(),
            ..SearchRequest::new(text.as_str(), 10)
        };
        let o = engine.search_detailed(&req).unwrap();
        let mut l: Vec<f32> = o.candidates.iter().map(|c| c.1).collect();
        let mut c: Vec<f32> = o.candidates.iter().map(|c| c.2).collect();
        zscore(&mut l);
        zscore(&mut c);
        let top = |v: &[f32]| v.iter().fold(f32::MIN, |m, &x| m.max(x)).max(1e-3);
        let (cl, cd) = (top(&l).powf(gamma), top(&c).powf(gamma));
        let wl = cl / (cl + cd);
        for (w, acc) in [(0.5f32, &mut base), (wl, &mut adapt)] {
            let mut s: Vec<(usize, f32)> = (0..l.len())
                .map(|i| (i, w * l[i] + (1.0 - w) * c[i]))
                .collect();
            s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let ranked: Vec<String> = s
                .iter()
                .map(|&(i, _)| o.candidates[i].0.clone())
                .filter(|d| d != qid)
                .collect();
            *acc += metrics::ndcg(&ranked, &ds.qrels[qid], 10);
        }
        n += 1.0;
    }
    println!(
        "{split}: fixed 0.5/0.5 {:.4}, adaptive gamma {gamma} {:.4}",
        base / n,
        adapt / n
    );
}

fn title_feature(ds: &Dataset, engine: &Engine, embedder: &BertEmbedder, split: &str) {
    let titles: Vec<&str> = ds.corpus.iter().map(|d| d.1.as_str()).collect();
    let tv = embedder.embed_passages(&titles).unwrap();
    let d = embedder.dim();
    let row: HashMap<&str, usize> = ds
        .corpus
        .iter()
        .enumerate()
        .map(|(i, x)| (x.0.as_str(), i))
        .collect();
    let pipeline = Pipeline {
        select: None,
        multi_query: false,
        ..Pipeline::default()
    };
    let mut ids: Vec<&String> = ds.qrels.keys().collect();
    ids.sort();
    let mut qs = Vec::new();
    for qid in ids {
        let Some(text) = ds.queries.get(qid) else {
            continue;
        };
        let req = SearchRequest {
            depth: 100,
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: pipeline.clone(),
            ..SearchRequest::new(text.as_str(), 10)
        };
        let o = engine.search_detailed(&req).unwrap();
        let qv = embedder.embed_query(text).unwrap();
        let cands = o
            .candidates
            .iter()
            .map(|(doc, l, c)| {
                let t = row
                    .get(doc.as_str())
                    .map(|&i| pinpoint::embed::dot(&tv[i * d..(i + 1) * d], &qv))
                    .unwrap_or(*c);
                (doc.clone(), [*l, *c, t])
            })
            .collect();
        qs.push(Q {
            rels: ds.qrels[qid].clone(),
            qid: qid.clone(),
            cands,
        });
    }
    report(&qs, split);
}

fn prf_feature(
    ds: &Dataset,
    engine: &Engine,
    embedder: &BertEmbedder,
    split: &str,
    k: usize,
    beta: f32,
) {
    let mut rows: HashMap<String, Vec<usize>> = HashMap::new();
    for d in engine.documents().unwrap() {
        let v = d
            .chunks
            .iter()
            .filter_map(|id| engine.store().position(*id))
            .collect();
        rows.insert(d.key.clone(), v);
    }
    let vf = engine.dense().vectors();
    let best = |doc: &str, q: &[f32]| -> (f32, Option<usize>) {
        rows.get(doc)
            .into_iter()
            .flatten()
            .map(|&p| (pinpoint::embed::dot(vf.row(p), q), Some(p)))
            .fold((f32::MIN, None), |m, x| if x.0 > m.0 { x } else { m })
    };
    let pipeline = Pipeline {
        select: None,
        multi_query: false,
        ..Pipeline::default()
    };
    let mut ids: Vec<&String> = ds.qrels.keys().collect();
    ids.sort();
    let mut qs = Vec::new();
    for qid in ids {
        let Some(text) = ds.queries.get(qid) else {
            continue;
        };
        let req = SearchRequest {
            depth: 100,
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: pipeline.clone(),
            ..SearchRequest::new(text.as_str(), 10)
        };
        let o = engine.search_detailed(&req).unwrap();
        let qv = embedder.embed_query(text).unwrap();
        // Top k of the shipped fusion (o.ranked is the final list, doc ids).
        let mut q2 = qv.clone();
        let mut n = 0;
        for (doc, _) in o.ranked.iter().filter(|d| d.0 != *qid).take(k) {
            if let (_, Some(p)) = best(doc, &qv) {
                for (a, b) in q2.iter_mut().zip(vf.row(p)) {
                    *a += beta / k as f32 * b;
                }
                n += 1;
            }
        }
        let _ = n;
        pinpoint::embed::normalize(&mut q2);
        let cands = o
            .candidates
            .iter()
            .map(|(doc, l, c)| (doc.clone(), [*l, *c, best(doc, &q2).0]))
            .collect();
        qs.push(Q {
            rels: ds.qrels[qid].clone(),
            qid: qid.clone(),
            cands,
        });
    }
    report(&qs, split);
}

fn fine_feature(ds: &Dataset, engine: &Engine, fine: &Path, embedder: &BertEmbedder, split: &str) {
    let fe = Engine::open_read_only(fine, EngineConfig::default()).expect("fine index");
    let mut rows: HashMap<String, Vec<usize>> = HashMap::new();
    for d in fe.documents().unwrap() {
        let v = d
            .chunks
            .iter()
            .filter_map(|id| fe.store().position(*id))
            .collect();
        rows.insert(d.key.clone(), v);
    }
    let vf = fe.dense().vectors();
    let pipeline = Pipeline {
        select: None,
        multi_query: false,
        ..Pipeline::default()
    };
    let mut ids: Vec<&String> = ds.qrels.keys().collect();
    ids.sort();
    let mut qs = Vec::new();
    for qid in ids {
        let Some(text) = ds.queries.get(qid) else {
            continue;
        };
        let req = SearchRequest {
            depth: 100,
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: pipeline.clone(),
            ..SearchRequest::new(text.as_str(), 10)
        };
        let o = engine.search_detailed(&req).unwrap();
        let qv = embedder.embed_query(text).unwrap();
        let cands = o
            .candidates
            .iter()
            .map(|(doc, l, c)| {
                let best = rows
                    .get(doc)
                    .into_iter()
                    .flatten()
                    .map(|&p| pinpoint::embed::dot(vf.row(p), &qv))
                    .fold(None, |m: Option<f32>, x| Some(m.map_or(x, |m| m.max(x))))
                    .unwrap_or(*c);
                (doc.clone(), [*l, *c, best])
            })
            .collect();
        qs.push(Q {
            rels: ds.qrels[qid].clone(),
            qid: qid.clone(),
            cands,
        });
    }
    report(&qs, split);
}
