//! Graph build speed alone: inserts/s of the builder on the first `n` vectors of an export
//! `pinpoint bench --scale N --export-vectors P` wrote (the file hnswlib's reference run
//! reads), without building an index around them.
//!
//! `cargo run --release --example graph_probe -- <export prefix> <n> [offset]`: rows
//! `offset..offset + n` (one checkpoint's rows, beside `benches/reference/hnswlib_build.py`
//! on the same ones). With offset 0 it also reports the finished graph's recall@10 and
//! queries/s at a few `ef` against the export's exact answers. `PP_BUILD=f32` or
//! `PP_BUILD=int8` builds on those distances instead of the default
//! ([`pinpoint::graph_build::BuildDistances`]); `PP_KERNEL=avx2` compares int8 codes on
//! the widening loop of CPUs without AVX-512 VNNI.

use std::io::Write;
use std::time::Instant;

use pinpoint::dense::HnswParams;
use pinpoint::store::VectorFile;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(prefix), Some(n)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: graph_probe <export prefix> <n> [offset]");
    };
    let n: usize = n.parse()?;
    let offset: usize = match args.get(3) {
        Some(o) => o.parse()?,
        None => 0,
    };
    let dim = 384;
    let raw = std::fs::read(format!("{prefix}.f32"))?;
    let raw = raw.get(offset * 4 * dim..).unwrap_or(&[]);
    let n = n.min(raw.len() / (4 * dim));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v.vec");
    // The vector file's layout: a 32-byte header (magic, dimension, count), then the rows.
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut header = [0u8; 32];
    header[..8].copy_from_slice(b"PPVECT01");
    header[8..12].copy_from_slice(&(dim as u32).to_le_bytes());
    header[16..24].copy_from_slice(&(n as u64).to_le_bytes());
    f.write_all(&header)?;
    f.write_all(&raw[..n * dim * 4])?;
    f.flush()?;
    drop(f);
    let v = VectorFile::open(&path, dim)?;
    let params = HnswParams::default();
    let t = Instant::now();
    // `PP_BUILD=f32|int8` builds on those distances instead of the default (the walk on
    // int8, links on f32).
    let distances = match std::env::var("PP_BUILD").as_deref() {
        Ok("f32") => pinpoint::graph_build::BuildDistances::F32,
        Ok("int8") => pinpoint::graph_build::BuildDistances::Int8,
        _ => pinpoint::graph_build::BuildDistances::Int8Walk,
    };
    // `PP_KERNEL=avx2` compares the codes on the widening loop other CPUs run.
    let kernel = match std::env::var("PP_KERNEL").as_deref() {
        Ok("avx2") => pinpoint::quant::Kernel::Avx2,
        _ => pinpoint::sq8::code_kernel(),
    };
    let g = pinpoint::graph_build::build_with(&params, &v, distances, kernel, &|_| {});
    let s = t.elapsed().as_secs_f64();
    println!(
        "{n} rows: {s:.1} s, {:.0} inserts/s on {distances:?} distances, {} kernel (M {}, ef_construction {}, {} threads)",
        n as f64 / s,
        kernel.name(),
        params.m,
        params.ef_construction,
        rayon::current_num_threads()
    );
    // Recall@10 of the f32 walk against the export's exact answers (only meaningful for
    // the whole export: offset 0 and every row).
    if offset == 0 {
        if let (Ok(q), Ok(ex)) = (
            std::fs::read(format!("{prefix}.queries")),
            std::fs::read(format!("{prefix}.exact")),
        ) {
            let gpath = dir.path().join("g");
            pinpoint::graph_file::GraphFile::write_layers(&g, n, &gpath)?;
            let gf = pinpoint::graph_file::GraphFile::open(&gpath, n)?;
            let qs: Vec<f32> = q
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let exact: Vec<u32> = ex
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            for ef in [64, 128, 256] {
                let mut hits = 0;
                let t = Instant::now();
                for (qv, want) in qs.chunks(dim).zip(exact.chunks(10)) {
                    let got = gf.search(&v, qv, 10, ef, None);
                    hits += got.iter().filter(|x| want.contains(&x.0)).count();
                }
                let nq = exact.len() / 10;
                println!(
                    "ef {ef}: recall@10 {:.4}, {:.0} qps",
                    hits as f64 / exact.len() as f64,
                    nq as f64 / t.elapsed().as_secs_f64()
                );
            }
        }
    }
    drop(g);
    Ok(())
}
