//! Dense recall benchmark: recall@10 of the HNSW graph against exact brute-force search on
//! the same vectors, and queries/s of both, for several `ef`.
//!
//! `cargo bench --bench dense_recall` uses clustered synthetic vectors (384-d, N from
//! `PINPOINT_BENCH_N`, default 20000). `PINPOINT_BENCH_INDEX=<index folder>` uses the real
//! embeddings of an index instead (queries: 200 of its own vectors, slightly perturbed).

use pinpoint::bench::{clustered_vectors, dense_curve, xorshift};
use pinpoint::embed::normalize;
use pinpoint::store::{Manifest, VectorFile};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        let mut r = xorshift(42);
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
    println!("{n} x {dim} ({source}), {} queries", queries.len() / dim);
    let d = dense_curve(&vectors, &queries, &[16, 32, 64, 128, 256, 512], &source);
    println!(
        "exact scan: {:.0} queries/s; hnsw build (M=16, ef_c=200): {:.1} s",
        d.exact_qps, d.build_s
    );
    println!(
        "{:>6} {:>10} {:>12} {:>10}",
        "ef", "recall@10", "queries/s", "vs exact"
    );
    for c in &d.curve {
        println!(
            "{:>6} {:>10.4} {:>12.0} {:>9.1}x",
            c.ef,
            c.recall10,
            c.qps,
            c.qps / d.exact_qps
        );
    }
}
