//! Graph build speed alone: inserts/s of the builder on the first `n` vectors of an export
//! `pinpoint bench --scale N --export-vectors P` wrote (the file hnswlib's reference run
//! reads), without building an index around them.
//!
//! `cargo run --release --example graph_probe -- <export prefix> <n> [offset]`: rows
//! `offset..offset + n` (one checkpoint's rows, beside `benches/reference/hnswlib_build.py`
//! on the same ones).

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
    let g = pinpoint::graph_build::build(&params, &v, &|_| {});
    let s = t.elapsed().as_secs_f64();
    println!(
        "{n} rows: {s:.1} s, {:.0} inserts/s (M {}, ef_construction {}, {} threads)",
        n as f64 / s,
        params.m,
        params.ef_construction,
        rayon::current_num_threads()
    );
    drop(g);
    Ok(())
}
