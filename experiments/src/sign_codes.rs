//! Reductions of a chunk's token vectors judged through their 1-bit sign codes (what the
//! index stores): k-center selection, near-copy removal within a chunk, and substitution
//! by the piece's corpus-wide majority code. Used by `examples/token_store.rs`
//! (docs/decisions.md, "Token codes: fewer per chunk").

use std::collections::HashMap;

use pinpoint::embed::TokenMatrix;

/// The signs of `row` as bits, 64 dimensions a word (bit set: positive).
pub fn sign_code(row: &[f32]) -> Vec<u64> {
    row.chunks(64)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u64, |a, (i, x)| if *x > 0.0 { a | 1 << i } else { a })
        })
        .collect()
}

/// Hamming distance between two sign codes.
pub fn ham(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// What [`substitute`] did: tokens seen, tokens replaced by their piece's code, and the
/// distinct pieces whose code a store would keep once (the shared codebook).
#[derive(Debug, Default, Clone, Copy)]
pub struct Substituted {
    pub tokens: usize,
    pub replaced: usize,
    pub codebook: usize,
}

/// Replaces each token whose sign code lies within Hamming `t` of its piece's majority
/// code (each dimension's sign by vote over every occurrence of the piece in the corpus)
/// with that code, for pieces seen at least `min_uses` times: a store would keep one code
/// per such piece and a flag per token instead of the token's own 48 bytes. `pieces[c][i]`
/// is the piece of row `i` of chunk `c` (a chunk without them is left alone). The votes
/// are taken over the first `voters` chunks only (a codebook frozen at an index's first
/// commit).
pub fn substitute(
    toks: Vec<TokenMatrix>,
    pieces: &[Vec<String>],
    t: u32,
    min_uses: usize,
    voters: usize,
) -> (Vec<TokenMatrix>, Substituted) {
    let dim = toks.iter().find(|m| m.dim > 0).map_or(384, |m| m.dim);
    let mut votes: HashMap<&str, (Vec<i32>, usize)> = HashMap::new();
    for (m, ps) in toks.iter().zip(pieces).take(voters) {
        if ps.len() != m.len() {
            continue;
        }
        for (r, p) in m.rows().zip(ps) {
            let e = votes.entry(p.as_str()).or_insert_with(|| (vec![0; dim], 0));
            e.1 += 1;
            for (v, x) in e.0.iter_mut().zip(r) {
                *v += if *x > 0.0 { 1 } else { -1 };
            }
        }
    }
    let majority: HashMap<&str, Vec<f32>> = votes
        .into_iter()
        .filter(|(_, (_, n))| *n >= min_uses)
        .map(|(p, (v, _))| {
            let s = 1.0 / (dim as f32).sqrt();
            (p, v.iter().map(|&x| if x >= 0 { s } else { -s }).collect())
        })
        .collect();
    let mut stats = Substituted::default();
    let mut used: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let out = toks
        .iter()
        .zip(pieces)
        .map(|(m, ps)| {
            stats.tokens += m.len();
            if ps.len() != m.len() {
                return m.clone();
            }
            let mut data = Vec::with_capacity(m.data.len());
            for (r, p) in m.rows().zip(ps) {
                match majority.get(p.as_str()) {
                    Some(c) if ham(&sign_code(r), &sign_code(c)) <= t => {
                        data.extend_from_slice(c);
                        stats.replaced += 1;
                        used.insert(p.as_str());
                    }
                    _ => data.extend_from_slice(r),
                }
            }
            TokenMatrix { dim: m.dim, data }
        })
        .collect();
    stats.codebook = used.len();
    (out, stats)
}

/// Keeps at most `k` tokens a chunk: greedy farthest-point selection on the 1-bit sign codes
/// (the first token, then repeatedly the token farthest in Hamming distance from every
/// kept one), so every dropped token is near a kept one and MaxSim's max moves little.
pub fn kcenter(toks: Vec<TokenMatrix>, k: usize) -> Vec<TokenMatrix> {
    let (mut before, mut after, mut worst) = (0usize, 0usize, 0u32);
    let out = toks
        .into_iter()
        .map(|m| {
            before += m.len();
            if m.len() <= k || k == 0 {
                after += m.len();
                return m;
            }
            let codes: Vec<Vec<u64>> = m.rows().map(sign_code).collect();
            let n = codes.len();
            let mut near = vec![u32::MAX; n];
            let mut kept = vec![false; n];
            let mut next = 0;
            for _ in 0..k {
                kept[next] = true;
                for i in 0..n {
                    near[i] = near[i].min(ham(&codes[i], &codes[next]));
                }
                next = (0..n)
                    .filter(|&i| !kept[i])
                    .max_by_key(|&i| (near[i], std::cmp::Reverse(i)))
                    .unwrap_or(0);
            }
            worst = worst.max(
                (0..n)
                    .filter(|&i| !kept[i])
                    .map(|i| near[i])
                    .max()
                    .unwrap_or(0),
            );
            let mut data = Vec::with_capacity(k * m.dim);
            for (i, r) in m.rows().enumerate() {
                if kept[i] {
                    data.extend_from_slice(r);
                }
            }
            after += k;
            TokenMatrix { dim: m.dim, data }
        })
        .collect();
    eprintln!("k-center {k}: {before} -> {after} tokens (largest radius {worst} bits)");
    out
}

/// Drops each token whose 1-bit sign code is within Hamming distance `t` of a token kept
/// earlier in the same chunk (a repeated word in a similar context).
pub fn dedup(toks: Vec<TokenMatrix>, t: u32) -> Vec<TokenMatrix> {
    let (mut before, mut after) = (0usize, 0usize);
    let out = toks
        .into_iter()
        .map(|m| {
            let mut kept: Vec<Vec<u64>> = Vec::new();
            let mut data = Vec::new();
            for r in m.rows() {
                let code = sign_code(r);
                before += 1;
                let near = kept.iter().any(|k| ham(k, &code) <= t);
                if !near {
                    data.extend_from_slice(r);
                    kept.push(code);
                }
            }
            after += kept.len();
            TokenMatrix { dim: m.dim, data }
        })
        .collect();
    eprintln!("dedup at Hamming {t}: {before} -> {after} tokens");
    out
}
