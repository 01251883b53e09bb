//! Dense recall benchmark: recall@10 of the HNSW graph against exact brute-force search on
//! the same vectors, and queries/s of both, for several `ef`.
//!
//! `cargo bench --bench dense_recall` uses clustered synthetic vectors (384-d, N from
//! `PINPOINT_BENCH_N`, default 20000). `PINPOINT_BENCH_INDEX=<index folder>` uses the real
//! embeddings of an index instead (queries: 200 of its own vectors, slightly perturbed).

use std::time::Instant;

use pinpoint::bench::clustered_vectors;
use pinpoint::dense::{build_graph, exact_search, search_graph, HnswParams};
use pinpoint::store::{Manifest, VectorFile};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.max(1);
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64) as f32 - 0.5
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n.max(1e-12));
}

fn main() {
    let dim;
    let data: Vec<f32>;
    let queries: Vec<f32>;
    let source;
    if let Some(dir) = std::env::var_os("PINPOINT_BENCH_INDEX") {
        let dir = std::path::PathBuf::from(dir);
        let m = Manifest::read(&dir.join("manifest.json")).expect("manifest");
        dim = m.model.dim;
        let v = VectorFile::open(&dir.join(format!("dense/{}.vec", m.generation)), dim)
            .expect("vectors");
        data = v.as_slice().to_vec();
        let mut r = rng(42);
        let n = v.len();
        let mut q = Vec::new();
        for i in 0..200.min(n) {
            let mut row: Vec<f32> = v
                .row((i * 7919) % n)
                .iter()
                .map(|x| x + 0.02 * r())
                .collect();
            normalize(&mut row);
            q.extend(row);
        }
        queries = q;
        source = format!("real embeddings from {}", dir.display());
    } else {
        let n: usize = std::env::var("PINPOINT_BENCH_N")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000);
        dim = 384;
        data = clustered_vectors(n, dim, 200, 0.6, 7);
        queries = clustered_vectors(200, dim, 200, 0.6, 99);
        source = "clustered synthetic vectors".to_string();
    }
    let n = data.len() / dim;
    let vectors = VectorFile::from_vec(dim, data);
    let ids: Vec<u64> = (0..n as u64).collect();
    println!("{n} x {dim} ({source}), {} queries", queries.len() / dim);

    let t = Instant::now();
    let exact: Vec<Vec<u64>> = queries
        .chunks(dim)
        .map(|q| {
            exact_search(&vectors, q, 10)
                .into_iter()
                .map(|(p, _)| p as u64)
                .collect()
        })
        .collect();
    let exact_qps = exact.len() as f64 / t.elapsed().as_secs_f64();
    println!("exact scan: {exact_qps:.0} queries/s (single thread)");

    let params = HnswParams::default();
    let t = Instant::now();
    let g = build_graph(&params, &vectors, &ids);
    println!(
        "hnsw build (M={}, ef_c={}): {:.1} s",
        params.m,
        params.ef_construction,
        t.elapsed().as_secs_f64()
    );
    println!(
        "{:>6} {:>10} {:>12} {:>10}",
        "ef", "recall@10", "queries/s", "vs exact"
    );
    for ef in [16, 32, 64, 128, 256, 512] {
        let t = Instant::now();
        let mut hits = 0;
        for (q, ex) in queries.chunks(dim).zip(&exact) {
            let got = search_graph(&g, q, 10, ef, None);
            hits += got.iter().filter(|(id, _)| ex.contains(id)).count();
        }
        let qps = exact.len() as f64 / t.elapsed().as_secs_f64();
        let recall = hits as f64 / (exact.len() * 10) as f64;
        println!(
            "{ef:>6} {recall:>10.4} {qps:>12.0} {:>9.1}x",
            qps / exact_qps
        );
    }
}
