//! Index a folder and search it from your own program, with the default pipeline and with
//! one stage changed.
//!
//! `cargo run --release --example search_library -- samples "how do tides work"`
//! (needs the model: `scripts/fetch-models.sh`).

use pinpoint::{Engine, EngineConfig, Pipeline, SearchRequest};

fn main() -> pinpoint::Result<()> {
    let mut args = std::env::args().skip(1);
    let folder = args.next().unwrap_or_else(|| "samples".into());
    let question = args
        .next()
        .unwrap_or_else(|| "why does the sea rise and fall twice a day".into());

    // An index of its own beside the default one; `open_or_create` syncs it incrementally
    // on later runs (only changed files are read and embedded again).
    let dir = std::env::temp_dir().join("pinpoint-example-index");
    let mut engine = Engine::open_or_create(&dir, EngineConfig::default())?;
    let report = engine.add_folder(&folder)?;
    println!(
        "{} documents, {} chunks ({} embedded now)",
        report.documents_total, report.chunks_total, report.chunks_embedded
    );

    // What `pinpoint query` runs.
    for hit in engine.search(&SearchRequest::new(question.as_str(), 3))? {
        println!(
            "{:.3}  {}:{}-{}",
            hit.score, hit.path, hit.line_start, hit.line_end
        );
    }

    // The same question without the reranker: stages are plain data.
    let fast = Pipeline {
        rerank: None,
        ..engine.default_pipeline()
    };
    let out = engine.search_detailed(&SearchRequest::new(question.as_str(), 3).pipeline(fast))?;
    println!("without reranking:");
    for hit in &out.hits {
        println!("{:.3}  {}", hit.score, hit.path);
    }
    if let Some(note) = &out.note {
        println!("note: {note}");
    }
    Ok(())
}
