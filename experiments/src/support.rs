//! What the experiment examples share: opening an eval index with its BEIR split, and the
//! word-piece document frequencies of an index's chunks.

use std::collections::HashMap;
use std::path::Path;

use pinpoint::chunk::contextual_text;
use pinpoint::eval::Dataset;
use pinpoint::{Engine, EngineConfig, Granularity, Mode, Pipeline, SearchRequest};

/// `INDEX BEIR_DIR SPLIT` from the command line: the eval index, read-only, and the split.
pub fn open_eval() -> (Engine, Dataset) {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: {} INDEX_DIR BEIR_DIR SPLIT [...]", args[0]);
        std::process::exit(2);
    }
    let engine =
        Engine::open_read_only(Path::new(&args[1]), EngineConfig::default()).expect("index");
    let ds = Dataset::load_beir(Path::new(&args[2]), &args[3]).expect("dataset");
    (engine, ds)
}

/// Every chunk's text as it was embedded (title and heading trail first), in store order.
pub fn chunk_texts(engine: &Engine) -> Vec<String> {
    let store = engine.segments();
    let docs = engine.documents().expect("docs");
    let titles: HashMap<&str, &str> = docs
        .iter()
        .map(|d| (d.key.as_str(), d.title.as_str()))
        .collect();
    (0..store.len())
        .map(|p| {
            let c = store.get(p).expect("chunk");
            let t = titles.get(c.doc.as_str()).copied().unwrap_or("");
            contextual_text(t, c.heading.as_deref(), &c.text)
        })
        .collect()
}

/// The BM25-style IDF of each word piece (lowercased) over the index's chunks, each taken
/// as it was embedded (title and heading trail first); an unseen piece gets the largest.
pub fn piece_idf(engine: &Engine) -> impl Fn(&str) -> f32 {
    let e = engine.embedder().expect("model");
    let mut df: HashMap<String, f32> = HashMap::new();
    for text in chunk_texts(engine) {
        let mut seen: Vec<String> = e
            .token_spans(&text)
            .iter()
            .map(|&(a, b)| text[a..b].to_lowercase())
            .collect();
        seen.sort();
        seen.dedup();
        for w in seen {
            *df.entry(w).or_default() += 1.0;
        }
    }
    let n = engine.segments().len() as f32;
    move |w: &str| {
        let d = df.get(&w.to_lowercase()).copied().unwrap_or(0.0);
        (1.0 + (n - d + 0.5) / (d + 0.5)).ln()
    }
}

/// A document-level hybrid search of `text` as `pinpoint eval` runs it, over each leg's top
/// `PP_DEPTH` documents (100 unless the environment says otherwise).
pub fn document_request(text: &str, pipeline: &Pipeline) -> SearchRequest {
    SearchRequest {
        depth: std::env::var("PP_DEPTH")
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(100),
        granularity: Granularity::Document,
        mode: Mode::Hybrid,
        pipeline: pipeline.clone(),
        ..SearchRequest::new(text, 10)
    }
}
