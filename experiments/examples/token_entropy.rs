//! Experiment behind the "Token codes: entropy coded" entry of docs/decisions.md: how many
//! bits does a stored token sign code carry once its context is known, and could a lossless
//! code bring the default index's token codes within the README's budget?
//! `cargo run --release -p pinpoint-experiments --example token_entropy -- INDEX_DIR`
//!
//! Reads every chunk's stored codes, re-tokenizes its text to learn which kept piece each
//! code belongs to, and prints the cost a code would have (bits per code, KB per chunk)
//! under adaptive count models (Krichevsky-Trofimov) of each bit given: the piece; the bit
//! alone; the piece and the sign of the chunk's own dense vector at that dimension; and all
//! of these mixed online with the chunk's previous code and the piece's previous code in
//! the chunk (logistic mixing, as in PAQ). Adaptive models cannot be read at random (a
//! chunk's code depends on every chunk before it), so a static model learned on the first
//! half is applied to the second. `PP_STATIC=1` adds the mixed model made readable at
//! random (every table counted over the whole index and frozen, quantised to 16 levels;
//! the mixer trained once and frozen), its size, and the time its probabilities take a
//! chunk; `PP_MIN_USES=n` models only pieces used n times or more (4 by default).
use std::collections::HashMap;
use std::path::Path;

use pinpoint::late::keep_token;
use pinpoint::{Engine, EngineConfig};
use pinpoint_experiments::support;

fn bit(code: &[u8], j: usize) -> bool {
    code[j / 8] >> (j % 8) & 1 == 1
}

fn cost(p1: f64, b: bool) -> f64 {
    -(if b { p1 } else { 1.0 - p1 }).log2()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine =
        Engine::open_read_only(Path::new(&args[1]), EngineConfig::default()).expect("index");
    let segs = engine.segments();
    let texts = support::chunk_texts(&engine);
    let e = engine.embedder().expect("model");
    let dim = segs.dim();
    let nb = dim.div_ceil(8);
    // (piece, code) in store order.
    let mut seq: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let (mut skipped, mut chunks) = (0usize, 0usize);
    for (p, text) in texts.iter().enumerate() {
        let codes = segs.codes(p).gather();
        let n = codes.len() / nb;
        let kept: Vec<String> = e
            .token_spans(text)
            .iter()
            .filter_map(|&(a, b)| text.get(a..b))
            .filter(|s| keep_token(s))
            .map(str::to_lowercase)
            .collect();
        if kept.len() < n {
            skipped += 1;
            continue;
        }
        chunks += 1;
        for (k, code) in kept.iter().zip(codes.chunks(nb)) {
            let len = ids.len() as u32;
            let id = *ids.entry(k.clone()).or_insert(len);
            seq.push((id, code.to_vec()));
            owner.push(p);
        }
    }
    let codes = seq.len();
    eprintln!(
        "{chunks} chunks ({skipped} skipped), {codes} codes, {} distinct pieces, {:.2} KB a chunk raw",
        ids.len(),
        (codes * nb) as f64 / chunks as f64 / 1000.0
    );
    let per_chunk = |bits: f64| bits * codes as f64 / 8.0 / chunks as f64 / 1000.0;
    // Adaptive KT per (piece, bit), and per bit alone.
    let mut cnt: Vec<[u32; 2]> = vec![[0, 0]; ids.len() * dim];
    let mut glob: Vec<[u32; 2]> = vec![[0, 0]; dim];
    let (mut kt, mut kt_glob) = (0.0f64, 0.0f64);
    for (id, code) in &seq {
        for j in 0..dim {
            let b = bit(code, j);
            let c = &mut cnt[*id as usize * dim + j];
            kt += cost((c[1] as f64 + 0.5) / (c[0] + c[1] + 1) as f64, b);
            c[b as usize] += 1;
            let g = &mut glob[j];
            kt_glob += cost((g[1] as f64 + 0.5) / (g[0] + g[1] + 1) as f64, b);
            g[b as usize] += 1;
        }
    }
    let bpc = kt / codes as f64;
    println!(
        "adaptive per piece: {bpc:.1} bits a code ({:.2} KB a chunk); per bit only: {:.1} bits",
        per_chunk(bpc),
        kt_glob / codes as f64
    );

    if std::env::var("PP_STATIC").is_ok() {
        static_model(&seq, &owner, segs, dim, ids.len(), &per_chunk);
    }
    // Context models mixed online (logistic mixing, as in PAQ): the piece's counts, the
    // piece's counts split by the sign of the chunk's own dense vector at that dimension,
    // the previous code of the chunk at that bit, and the global counts split both ways.
    let st = |p: f64| (p / (1.0 - p)).ln();
    let sq = |x: f64| 1.0 / (1.0 + (-x).exp());
    let mut c_piece: Vec<[u32; 2]> = vec![[0, 0]; ids.len() * dim];
    let mut c_pc: Vec<[u32; 2]> = vec![[0, 0]; ids.len() * dim * 2];
    let mut c_gc: Vec<[u32; 2]> = vec![[0, 0]; dim * 4];
    let nin = 6;
    let mut c_occ: Vec<[u32; 2]> = vec![[0, 0]; dim * 2];
    let mut last_occ: HashMap<u32, usize> = HashMap::new();
    let mut chunk_now = usize::MAX;
    let mut w: Vec<f64> = vec![0.3; dim * nin];
    let lr = 0.002;
    let (mut total, mut t_piece_chunk, mut t_gc) = (0.0f64, 0.0f64, 0.0f64);
    let kt2 = |c: [u32; 2]| (c[1] as f64 + 0.4) / (c[0] + c[1] + 1) as f64 * 0.999 + 0.0005;
    let mut prev: Option<(usize, &[u8])> = None;
    for (k, (id, code)) in seq.iter().enumerate() {
        let p = owner[k];
        let row = segs.row(p);
        if p != chunk_now {
            last_occ.clear();
            chunk_now = p;
        }
        let occ: Option<&[u8]> = last_occ.get(id).map(|&k| seq[k].1.as_slice());
        let pc = match prev {
            Some((q, c)) if q == p => Some(c),
            _ => None,
        };
        for j in 0..dim {
            let b = bit(code, j);
            let cs = (row[j] > 0.0) as usize;
            let pb = pc.map_or(2, |c| bit(c, j) as usize);
            let i_piece = *id as usize * dim + j;
            let i_pc = i_piece * 2 + cs;
            let i_gc = j * 4 + cs * 2 + pb.min(1) * (pb < 2) as usize;
            let ps = [
                kt2(c_piece[i_piece]),
                kt2(c_pc[i_pc]),
                kt2(c_gc[i_gc]),
                if pb == 2 { 0.5 } else { 0.25 + 0.5 * pb as f64 },
                sq(row[j] as f64 * 20.0),
                occ.map_or(0.5, |c| {
                    let ob = bit(c, j) as usize;
                    kt2(c_occ[j * 2 + ob])
                }),
            ];
            let x: Vec<f64> = ps.iter().map(|&q| st(q)).collect();
            let ww = &mut w[j * nin..(j + 1) * nin];
            let dot: f64 = x.iter().zip(ww.iter()).map(|(a, b)| a * b).sum();
            let pm = sq(dot).clamp(1e-4, 1.0 - 1e-4);
            total += cost(pm, b);
            t_piece_chunk += cost(ps[1], b);
            t_gc += cost(ps[2], b);
            let err = b as u8 as f64 - pm;
            for (wi, xi) in ww.iter_mut().zip(&x) {
                *wi += lr * err * xi;
            }
            c_piece[i_piece][b as usize] += 1;
            c_pc[i_pc][b as usize] += 1;
            c_gc[i_gc][b as usize] += 1;
            if let Some(c) = occ {
                c_occ[j * 2 + bit(c, j) as usize][b as usize] += 1;
            }
        }
        prev = Some((owner[k], code));
        last_occ.insert(*id, k);
    }
    for (name, t) in [
        ("piece x chunk sign", t_piece_chunk),
        ("global x chunk sign x previous", t_gc),
        ("mixed", total),
    ] {
        let b = t / codes as f64;
        println!(
            "{name}: {b:.1} bits a code ({:.2} KB a chunk)",
            per_chunk(b)
        );
    }
    println!("mixer weights at bit 0: {:?}", &w[..nin]);
    // Static model from the first half, quantised to 16 levels, on the second half.
    let half = codes / 2;
    let mut tr: Vec<[u32; 2]> = vec![[0, 0]; ids.len() * dim];
    let mut seen = vec![0u32; ids.len()];
    for (id, code) in &seq[..half] {
        seen[*id as usize] += 1;
        for j in 0..dim {
            tr[*id as usize * dim + j][bit(code, j) as usize] += 1;
        }
    }
    for min_seen in [1u32, 2, 4, 8] {
        let q = |p: f64| ((p * 16.0).floor().clamp(0.0, 15.0) + 0.5) / 16.0;
        let mut c_static = 0.0;
        for (id, code) in &seq[half..] {
            let s = seen[*id as usize] >= min_seen;
            for j in 0..dim {
                let b = bit(code, j);
                let p = if s {
                    let c = tr[*id as usize * dim + j];
                    q((c[1] as f64 + 0.5) / (c[0] + c[1] + 1) as f64)
                } else {
                    0.5
                };
                c_static += cost(p, b);
            }
        }
        let modelled = seen.iter().filter(|&&s| s >= min_seen).count();
        let b2 = c_static / (codes - half) as f64;
        println!(
            "static (first half, seen >= {min_seen}: {modelled} pieces, model {:.1} MB): {b2:.1} bits a code ({:.2} KB a chunk)",
            modelled as f64 * dim as f64 / 2.0 / 1e6,
            per_chunk(b2)
        );
    }
}

/// A visit of one code: its index, piece, chunk vector, the chunk's previous code and the
/// piece's previous code in the chunk.
type Visit<'a> = dyn FnMut(usize, u32, &[f32], Option<&[u8]>, Option<&[u8]>) + 'a;

/// The mixed model made usable for random access: every table counted over the whole
/// index first and frozen (its probabilities quantised to 16 levels in the logistic
/// domain), the mixer's weights trained in a second pass and frozen, the cost measured in a
/// third. Prints the model's size beside the codes'.
fn static_model(
    seq: &[(u32, Vec<u8>)],
    owner: &[usize],
    segs: &pinpoint::segment::Segments,
    dim: usize,
    pieces: usize,
    per_chunk: &dyn Fn(f64) -> f64,
) {
    let st = |p: f64| (p / (1.0 - p)).ln();
    let sq = |x: f64| 1.0 / (1.0 + (-x).exp());
    let mut c_piece: Vec<[u32; 2]> = vec![[0, 0]; pieces * dim];
    let mut c_pc: Vec<[u32; 2]> = vec![[0, 0]; pieces * dim * 2];
    let mut c_gc: Vec<[u32; 2]> = vec![[0, 0]; dim * 6];
    let mut c_occ: Vec<[u32; 2]> = vec![[0, 0]; dim * 2];
    let mut uses = vec![0u32; pieces];
    // Walks the codes with each one's contexts: (code index, piece, chunk sign bits, previous
    // code of the chunk, the piece's previous code in the chunk).
    let walk = |f: &mut Visit| {
        let mut last: HashMap<u32, usize> = HashMap::new();
        let mut now = usize::MAX;
        for (k, (id, _)) in seq.iter().enumerate() {
            let p = owner[k];
            if p != now {
                last.clear();
                now = p;
            }
            let prev = (k > 0 && owner[k - 1] == p).then(|| seq[k - 1].1.as_slice());
            let occ = last.get(id).map(|&i| seq[i].1.as_slice());
            f(k, *id, segs.row(p), prev, occ);
            last.insert(*id, k);
        }
    };
    walk(&mut |k, id, row, prev, occ| {
        let code = &seq[k].1;
        uses[id as usize] += 1;
        for j in 0..dim {
            let b = bit(code, j) as usize;
            let cs = (row[j] > 0.0) as usize;
            c_piece[id as usize * dim + j][b] += 1;
            c_pc[(id as usize * dim + j) * 2 + cs][b] += 1;
            let pb = prev.map_or(2, |c| bit(c, j) as usize);
            c_gc[j * 6 + cs * 3 + pb][b] += 1;
            if let Some(c) = occ {
                c_occ[j * 2 + bit(c, j) as usize][b] += 1;
            }
        }
    });
    let min_uses = std::env::var("PP_MIN_USES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4u32);
    // 16 levels over logits -6..6.
    let qz = |c: [u32; 2]| -> f64 {
        let l = st((c[1] as f64 + 0.4) / (c[0] + c[1] + 1) as f64 * 0.998 + 0.001);
        let lv = ((l + 6.0) / 12.0 * 15.0).round().clamp(0.0, 15.0);
        lv / 15.0 * 12.0 - 6.0
    };
    let nin = 5;
    let mut w: Vec<f64> = vec![0.3; dim * nin];
    let mut total = 0.0;
    let mut frozen_s = 0.0;
    for pass in 0..2 {
        total = 0.0;
        let t0 = std::time::Instant::now();
        walk(&mut |k, id, row, prev, occ| {
            let code = &seq[k].1;
            let modelled = uses[id as usize] >= min_uses;
            for j in 0..dim {
                let b = bit(code, j);
                let cs = (row[j] > 0.0) as usize;
                let pb = prev.map_or(2, |c| bit(c, j) as usize);
                let x = [
                    if modelled {
                        qz(c_piece[id as usize * dim + j])
                    } else {
                        0.0
                    },
                    if modelled {
                        qz(c_pc[(id as usize * dim + j) * 2 + cs])
                    } else {
                        0.0
                    },
                    st((c_gc[j * 6 + cs * 3 + pb][1] as f64 + 0.4)
                        / (c_gc[j * 6 + cs * 3 + pb].iter().sum::<u32>() as f64 + 1.0)),
                    row[j] as f64 * 20.0,
                    occ.map_or(0.0, |c| {
                        let o = c_occ[j * 2 + bit(c, j) as usize];
                        st((o[1] as f64 + 0.4) / (o[0] + o[1] + 1) as f64)
                    }),
                ];
                let ww = &mut w[j * nin..(j + 1) * nin];
                let dot: f64 = x.iter().zip(ww.iter()).map(|(a, b)| a * b).sum();
                let pm = sq(dot).clamp(1e-4, 1.0 - 1e-4);
                total += cost(pm, b);
                if pass == 0 {
                    let err = b as u8 as f64 - pm;
                    for (wi, xi) in ww.iter_mut().zip(&x) {
                        *wi += 0.002 * err * xi;
                    }
                }
            }
        });
        frozen_s = t0.elapsed().as_secs_f64();
    }
    let codes = seq.len();
    let bpc = total / codes as f64;
    let modelled = uses.iter().filter(|&&u| u >= min_uses).count();
    let model_bytes = modelled * dim * 3 / 2 + dim * nin * 4;
    let chunks = owner.last().map_or(0, |&p| p + 1) as f64;
    println!(
        "static mixed (pieces used >= {min_uses}: {modelled}): {bpc:.1} bits a code ({:.2} KB a chunk) + model {:.1} MB ({:.2} KB a chunk)",
        per_chunk(bpc),
        model_bytes as f64 / 1e6,
        model_bytes as f64 / chunks / 1000.0
    );
    println!(
        "the frozen model's probabilities alone (no arithmetic decoding, one thread): {:.0} us a chunk",
        frozen_s / chunks * 1e6
    );
}
