//! Dense recall@10 and single-thread QPS per `ef` on an existing index, against the exact
//! neighbours `pinpoint bench --scale --export-vectors P` wrote: how a change to the graph
//! walk moves the curve without rebuilding a million-chunk index.
//!
//! `cargo run --release --example dense_probe -- <index> <export prefix> [ef ...]`

use std::time::Instant;

use pinpoint::engine::{Engine, EngineConfig};

fn read_f32s(path: &str) -> anyhow::Result<Vec<f32>> {
    let b = std::fs::read(path)?;
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(index), Some(prefix)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: dense_probe <index> <export prefix> [ef ...]");
    };
    let efs: Vec<usize> = if args.len() > 3 {
        args[3..]
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![64, 128, 256, 512]
    };
    let e = Engine::open_read_only(index, EngineConfig::default())?;
    let segs = e.segments();
    let dim = 384;
    let queries = read_f32s(&format!("{prefix}.queries"))?;
    let exact: Vec<u32> = std::fs::read(format!("{prefix}.exact"))?
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let n = queries.len() / dim;
    println!(
        "{} rows, {} segments, {n} queries",
        segs.len(),
        e.manifest().segments.len()
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    // Warm the page cache once, as the scale bench's earlier stages do.
    for q in queries.chunks_exact(dim) {
        segs.search(q, 10, 64)?;
    }
    for ef in efs {
        let (hits, secs) = pool.install(|| -> anyhow::Result<(usize, f64)> {
            let t = Instant::now();
            let mut hits = 0;
            for (q, ex) in queries.chunks_exact(dim).zip(exact.chunks_exact(10)) {
                for (id, _) in segs.search(q, 10, ef)? {
                    if segs.position(id).is_some_and(|p| ex.contains(&(p as u32))) {
                        hits += 1;
                    }
                }
            }
            Ok((hits, t.elapsed().as_secs_f64()))
        })?;
        println!(
            "ef {ef:4}  recall@10 {:.4}  qps {:.0}",
            hits as f64 / (n * 10) as f64,
            n as f64 / secs
        );
    }
    Ok(())
}
