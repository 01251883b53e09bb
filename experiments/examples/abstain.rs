//! Experiment: can the absolute similarity of the best candidate tell an answerable question
//! from one the index cannot answer? Prints, per query: the best dense cosine, the best
//! MaxSim rerank score, the best BM25 score (0: no term of the query is in the index), and
//! (BEIR) whether a relevant document is in the top 10.
//! `cargo run --release -p pinpoint-experiments --example abstain -- INDEX beir BEIR_DIR SPLIT`
//! `cargo run --release -p pinpoint-experiments --example abstain -- INDEX file benches/abstain/offtopic.txt`
use std::path::Path;

use pinpoint::eval::{beir_labelled, Dataset};
use pinpoint::{Engine, EngineConfig, Granularity, SearchRequest};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine =
        Engine::open_read_only(Path::new(&args[1]), EngineConfig::default()).expect("index");
    let queries: Vec<(String, Vec<String>)> = if args[2] == "beir" {
        let ds = Dataset::load_beir(Path::new(&args[3]), &args[4]).expect("dataset");
        beir_labelled(&ds)
            .into_iter()
            .map(|(_, t, r)| (t, r.into_iter().filter(|x| x.1 > 0).map(|x| x.0).collect()))
            .collect()
    } else {
        std::fs::read_to_string(&args[3])
            .expect("queries")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| (l.to_string(), Vec::new()))
            .collect()
    };
    for (text, rels) in &queries {
        let req = SearchRequest {
            granularity: Granularity::Document,
            pipeline: engine.default_pipeline(),
            ..SearchRequest::new(text.as_str(), 10)
        };
        let o = engine.search_detailed(&req).expect("search");
        let dense = o.dense.first().map(|x| x.1).unwrap_or(f32::NAN);
        let lex = o.lexical.first().map(|x| x.1).unwrap_or(0.0);
        let rr = o.reranked.iter().map(|x| x.1).fold(f32::NAN, f32::max);
        let hit = if rels.is_empty() {
            "-".to_string()
        } else {
            o.ranked
                .iter()
                .take(10)
                .any(|(d, _)| rels.contains(d))
                .to_string()
        };
        println!("{dense:.4}\t{rr:.4}\t{lex:.3}\t{hit}\t{text}");
    }
}
