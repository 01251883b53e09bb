//! Embedding throughput on the first N SciFact abstracts: `cargo run --release -p pinpoint-experiments --example
//! embed_speed -- [N] [BATCH]`. A quick probe; `pinpoint bench` is the full benchmark.
use pinpoint::{BertEmbedder, DeviceChoice, Embedder};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    // A BEIR folder named by $SCIFACT, else the subset bundled for the tests.
    let dir = std::env::var("SCIFACT").unwrap_or_else(|_| "tests/data/scifact-subset".into());
    let corpus = std::fs::read_to_string(format!("{dir}/corpus.jsonl")).expect("scifact");
    let texts: Vec<String> = corpus
        .lines()
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}\n{}",
                v["title"].as_str().unwrap_or(""),
                v["text"].as_str().unwrap_or("")
            )
        })
        .collect();
    let mut e = BertEmbedder::load("models/all-MiniLM-L6-v2", DeviceChoice::Cpu).unwrap();
    e.batch_size = batch;
    // PINPOINT_CANDLE=1 runs candle's BertModel instead of the fused CPU encoder.
    e.set_candle_reference(std::env::var_os("PINPOINT_CANDLE").is_some());
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let t = Instant::now();
    let v = e.embed_passages(&refs).unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        "{n} texts batch {batch}: {:.1} texts/s ({} floats)",
        n as f64 / s,
        v.len()
    );
}
