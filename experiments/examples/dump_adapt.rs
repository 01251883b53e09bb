//! Experiment input for experiments/python/query_adapter.py ("Learned query adapter" in
//! docs/decisions.md): dumps chunk vectors, chunk → document, query vectors, judgements and
//! each query's lexical top 100 (document level) for the train and test splits.
//! `cargo run --release -p pinpoint-experiments --example dump_adapt -- INDEX BEIR_DIR OUT_DIR`
//!
//! `PP_MAXSIM=1` (an index with token codes) also writes, per split, every query's token
//! MaxSim with every document (`{split}.maxsim`, f32 rows over the documents in sorted key
//! order, as `adapt_dump.py` numbers them) and its length in model tokens (`{split}.qtok`),
//! so that experiments/python/doc_expansion.py can rerank a head as the engine's default does.
use std::io::Write;
use std::path::Path;

use pinpoint::eval::{beir_labelled, Dataset};
use pinpoint::late::QueryCodes;
use pinpoint::{Engine, EngineConfig, Granularity, Mode, Pipeline, SearchRequest};
use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = Path::new(&args[3]);
    let engine =
        Engine::open_read_only(Path::new(&args[1]), EngineConfig::default()).expect("index");
    let v = &engine.segments().live_vectors();
    let bytes: Vec<u8> = v.as_slice().iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(out.join("chunks.f32"), bytes).unwrap();
    let mut f = std::fs::File::create(out.join("chunk_doc.txt")).unwrap();
    for p in 0..engine.segments().len() {
        writeln!(f, "{}", engine.segments().get(p).unwrap().doc).unwrap();
    }
    let e = engine.embedder().unwrap();
    for split in ["train", "test"] {
        let ds = Dataset::load_beir(Path::new(&args[2]), split).expect("dataset");
        let lab = beir_labelled(&ds);
        let mut qv = Vec::new();
        let mut meta = std::fs::File::create(out.join(format!("{split}.tsv"))).unwrap();
        let mut lex = std::fs::File::create(out.join(format!("{split}.lex"))).unwrap();
        for (qid, text, rels) in &lab {
            qv.extend(e.embed_query(text).unwrap());
            let r: Vec<String> = rels.iter().map(|(d, g)| format!("{d}:{g}")).collect();
            writeln!(meta, "{qid}\t{}", r.join(",")).unwrap();
            let req = SearchRequest {
                depth: 100,
                granularity: Granularity::Document,
                mode: Mode::Lexical,
                pipeline: Pipeline {
                    select: None,
                    multi_query: false,
                    rerank: None,
                    ..Pipeline::default()
                },
                ..SearchRequest::new(text.as_str(), 10)
            };
            let o = engine.search_detailed(&req).unwrap();
            let l: Vec<String> = o.lexical.iter().map(|(d, s)| format!("{d}:{s}")).collect();
            writeln!(lex, "{}", l.join(" ")).unwrap();
        }
        let bytes: Vec<u8> = qv.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(out.join(format!("{split}.f32")), bytes).unwrap();
        if std::env::var("PP_MAXSIM").is_ok() {
            let codes = engine.segments();
            let mut docs: Vec<(&str, Vec<usize>)> = engine
                .document_positions()
                .expect("documents")
                .map(|(k, ps)| (k, ps.iter().map(|&p| p as usize).collect()))
                .collect();
            docs.sort_by(|a, b| a.0.cmp(b.0));
            let mut ms = Vec::new();
            let mut lens = String::new();
            for (_, text, _) in &lab {
                let (_, qt) = e.embed_query_with_tokens(text).unwrap();
                lens.push_str(&format!("{}\n", e.token_spans(text).len()));
                let qc = QueryCodes::new(&qt);
                let row: Vec<f32> = docs
                    .par_iter()
                    .map(|(_, ps)| {
                        let held: Vec<_> = ps.iter().map(|&p| codes.codes(p).gather()).collect();
                        let parts: Vec<&[u8]> = held.iter().map(|c| c.as_ref()).collect();
                        qc.maxsim(&parts)
                    })
                    .collect();
                ms.extend(row);
            }
            let bytes: Vec<u8> = ms.iter().flat_map(|x| x.to_le_bytes()).collect();
            std::fs::write(out.join(format!("{split}.maxsim")), bytes).unwrap();
            std::fs::write(out.join(format!("{split}.qtok")), lens).unwrap();
        }
    }
}
