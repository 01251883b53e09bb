//! Embedding throughput and agreement of the encoder's precisions on the first N SciFact
//! abstracts: `cargo run --release -p pinpoint-experiments --example embed_speed -- [N] [BATCH]`.
//! Prints texts/s for f32 and int8 (each timed twice, the second run reported) and the
//! cosine of each int8 vector against its f32 vector (min, mean). The study behind the
//! "Int8 encoder" entry of docs/decisions.md; `pinpoint bench` is the full benchmark.
use pinpoint::models::ModelDir;
use pinpoint::quant::Precision;
use pinpoint::{BertEmbedder, DeviceChoice, Embedder};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
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
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let md = ModelDir::open("models/all-MiniLM-L6-v2").unwrap();
    let mut out = Vec::new();
    for p in [Precision::F32, Precision::Int8] {
        let mut e = BertEmbedder::with_precision(&md, DeviceChoice::Cpu, p).unwrap();
        e.batch_size = batch;
        let tokens: usize = refs
            .iter()
            .map(|t| (e.token_spans(t).len() + 2).min(e.spec().max_tokens))
            .sum();
        let mut v = Vec::new();
        let mut s = 0.0;
        for _ in 0..2 {
            let t = Instant::now();
            v = e.embed_passages(&refs).unwrap();
            s = t.elapsed().as_secs_f64();
        }
        let qt: Vec<f64> = (0..50)
            .map(|i| {
                let t = Instant::now();
                e.embed_query(&format!("what causes disease number {i} in cells"))
                    .unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let mut qs = qt.clone();
        qs.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{:<26} {:.1} texts/s, {:.0} tokens/s, query p50 {:.2} ms",
            e.encoder_path(),
            n as f64 / s,
            tokens as f64 / s,
            qs[qs.len() / 2]
        );
        out.push(v);
    }
    let d = out[0].len() / n;
    let cos: Vec<f32> = (0..n)
        .map(|i| pinpoint::embed::dot(&out[0][i * d..(i + 1) * d], &out[1][i * d..(i + 1) * d]))
        .collect();
    let min = cos.iter().cloned().fold(f32::MAX, f32::min);
    let mean = cos.iter().sum::<f32>() / n as f32;
    println!("int8 vs f32 cosine over {n} texts: min {min:.4}, mean {mean:.4}");
}
