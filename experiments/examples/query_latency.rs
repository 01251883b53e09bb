//! Single-query embedding latency with the default thread pool and with one thread:
//! `cargo run --release -p pinpoint-experiments --example query_latency`.
use pinpoint::{BertEmbedder, DeviceChoice, Embedder};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn p50(e: &BertEmbedder, qs: &[&str]) -> f64 {
    let mut v: Vec<f64> = qs
        .iter()
        .map(|q| {
            let t = Instant::now();
            e.embed_query(q).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let e = BertEmbedder::load("models/all-MiniLM-L6-v2", DeviceChoice::Cpu).unwrap();
    let qs = [
        "0-dimensional biomaterials show inductive properties.",
        "ALDH1 expression is associated with better breast cancer outcomes.",
        "Aspirin inhibits the production of PGE2.",
        "how do bees find flowers",
        "Ribosomopathies have a low degree of cell and tissue specific pathology.",
    ];
    let many: Vec<&str> = qs.iter().cycle().take(100).copied().collect();
    p50(&e, &many[..10]);
    println!("default pool: p50 {:.2} ms", p50(&e, &many));
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    one.install(|| println!("1-thread pool: p50 {:.2} ms", p50(&e, &many)));
}
