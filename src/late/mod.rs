//! Late interaction at index time: every chunk's contextual token vectors, kept as 1-bit
//! sign codes, so that token-level MaxSim ([`crate::rerank::maxsim`]) can rerank without
//! encoding passages at query time.
//!
//! Why this shape (measured in docs/decisions.md, `experiments/examples/token_store.rs`):
//! - the reranker's gain needs *contextual* token vectors (one static vector per word piece
//!   lost most of it), and encoding the candidates at query time costs ~0.4 s;
//! - stored as f32 they would take 1.5 KB per token (2.9 GB for SciFact); the sign of each
//!   dimension (48 bytes at 384 dims) scored the same as f32 on SciFact train (held-out
//!   nDCG@10 0.7482 vs 0.7461), as did 2- and 4-bit codes, so the smallest was kept;
//! - stopword and punctuation tokens are left out of the passages (36% fewer tokens, same
//!   score); the query keeps all its tokens, in float;
//! - `--token-units distinct` keeps one code per distinct piece of a chunk
//!   ([`TokenUnits::Distinct`]; 67% of the codes on SciFact, 53-57% on code search), for
//!   nDCG@10 0.0050 lower on SciFact (p 0.02) and slightly higher on code search, so it is
//!   an option for size, not the default; averaging a word's pieces into one code
//!   (ColBERTer's whole words) lost as much on SciFact;
//! - an index created with `--token-bits 128` takes the signs of each code's projection on
//!   128 fixed directions ([`TokenProjection`], [`COMPACT_BITS`]) instead of its 384
//!   dimensions: 16 bytes a code, for an index that must be smaller still; fewer bits
//!   lowered nDCG@10 on every set measured (whole words at 192 bits: Python code search
//!   -0.0109, p 0.0005), so it is not the default;
//! - a new index stores a token near its word piece's shared code as a reference to it,
//!   near-copies within a chunk once, and a token near a code the chunk before it in its
//!   document holds as a borrow of that code ([`share`]; the store is [`TokenCodes`]):
//!   2.94 KB a chunk on SciFact instead of 5.67, 1.2-1.4 KB on code search and on the
//!   toolchain's books, nDCG@10 within noise.
//!
//! Scoring is asymmetric: the query's float vectors against the passage's sign codes,
//! `q · sign(d) / √dim` (the cosine with the code's unit vector). Per query, a table holds
//! for every nibble position and value the partial dot product of each query token, so a
//! passage token costs `dim / 4` table additions per query token, done for all query tokens
//! at once.
//!
//! Not for: ranking with the codes (the token reranker in [`crate::rerank`]).
mod file;
mod place;
pub mod share;

use crate::embed::TokenMatrix;
use crate::error::{Error, Result};

pub use file::{ChunkCodes, TokenCodes};
pub use share::{PassageCodes, PieceBook, SharedCodes, Sharing};

/// Bytes of one token's code at dimension `dim`.
pub fn code_bytes(dim: usize) -> usize {
    dim.div_ceil(8)
}

/// English function words that carry no term of their own. Passage tokens that are one of
/// these (or have no letter or digit) are not stored: MaxSim lets each *query* token pick its
/// best passage token, and a query's own function words then match content words at a
/// slightly lower similarity instead, which moved no ranking measurably.
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been",
    "before", "being", "between", "both", "but", "by", "can", "did", "do", "does", "during",
    "each", "for", "from", "had", "has", "have", "he", "her", "his", "i", "if", "in", "into", "is",
    "it", "its", "may", "no", "not", "of", "on", "or", "our", "over", "s", "she", "so", "such",
    "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "to", "under", "via", "was", "we", "were", "what", "which", "who", "whom", "with",
];

/// Whether a passage token (its text as it appears in the passage) is worth storing.
pub fn keep_token(piece: &str) -> bool {
    if !piece.chars().any(char::is_alphanumeric) {
        return false;
    }
    let lower = piece.to_lowercase();
    STOPWORDS.binary_search(&lower.as_str()).is_err()
}

/// Sign codes of the rows of `m` for which `keep(row)` holds, concatenated: bit `k` of byte
/// `i` is set when dimension `8i + k` is positive.
pub fn encode(m: &TokenMatrix, keep: impl Fn(usize) -> bool) -> Vec<u8> {
    let nb = code_bytes(m.dim);
    let mut out = Vec::with_capacity(m.len() * nb);
    for (r, row) in m.rows().enumerate() {
        if !keep(r) {
            continue;
        }
        for byte in row.chunks(8) {
            let mut b = 0u8;
            for (k, x) in byte.iter().enumerate() {
                if *x > 0.0 {
                    b |= 1 << k;
                }
            }
            out.push(b);
        }
    }
    out
}

/// The stored codes of `text`'s token vectors `m`: stopword and punctuation tokens left out
/// when `spans` (the tokens' byte ranges in `text`, as the embedder's
/// [`crate::Embedder::token_spans`] gives them) line up with the rows; every row otherwise.
pub fn encode_passage(text: &str, spans: &[(usize, usize)], m: &TokenMatrix) -> Vec<u8> {
    let pieces = kept_pieces(text, spans, m.len());
    encode(m, |r| pieces.get(r).is_some_and(Option::is_some))
}

/// For each row of a passage's token vectors, its piece ([`share::piece_key`]) when the row
/// is stored, `None` when it is a stopword or punctuation. A truncated text has fewer rows
/// than spans (its rows are the first spans); spans that do not line up at all keep every
/// row, with no piece ([`share::NO_PIECE`]).
fn kept_pieces(text: &str, spans: &[(usize, usize)], rows: usize) -> Vec<Option<u32>> {
    if spans.len() < rows {
        return vec![Some(share::NO_PIECE); rows];
    }
    (0..rows)
        .map(|r| match spans.get(r).and_then(|&(a, b)| text.get(a..b)) {
            None => Some(share::NO_PIECE),
            Some(p) if keep_token(p) => Some(share::piece_key(p)),
            Some(_) => None,
        })
        .collect()
}

/// What one stored token code of a passage stands for; chosen when an index is created and
/// kept in its manifest.
///
/// Measured in docs/decisions.md ("Token codes: fewer per chunk"): one code per distinct
/// piece of a chunk keeps 67% of the codes on SciFact and 53-57% on two code-search
/// collections; it gained on code search (+0.0026, +0.0001 nDCG@10) but lost 0.0050 on
/// SciFact (p 0.02), so a new index keeps every piece unless asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUnits {
    /// One code per kept word piece occurrence: the default, and every index written
    /// before units were a choice.
    #[default]
    Pieces,
    /// One code per distinct kept piece of the chunk (case folded): the unit mean of its
    /// occurrences' vectors. MaxSim takes each query token's best passage token, and a
    /// piece repeated in one chunk offers nearly the same contextual vector each time, so
    /// one of them does the work of all.
    Distinct,
}

impl TokenUnits {
    /// What a new index gets unless asked otherwise.
    pub const NEW_INDEX_DEFAULT: TokenUnits = TokenUnits::Pieces;
}

impl std::str::FromStr for TokenUnits {
    type Err = Error;

    fn from_str(s: &str) -> Result<TokenUnits> {
        match s {
            "pieces" => Ok(TokenUnits::Pieces),
            "distinct" => Ok(TokenUnits::Distinct),
            other => Err(Error::invalid(
                "token units",
                format!("{other:?}: expected `distinct` or `pieces`"),
            )),
        }
    }
}

impl std::fmt::Display for TokenUnits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenUnits::Pieces => "pieces",
            TokenUnits::Distinct => "distinct",
        })
    }
}

/// How an index turns a passage's contextual token vectors into its stored codes: which
/// units ([`TokenUnits`]) and, for a projected index, which directions
/// ([`TokenProjection`]).
pub struct PassageCoder {
    units: TokenUnits,
    projection: Option<std::sync::Arc<TokenProjection>>,
}

impl PassageCoder {
    /// A coder for `units`, projecting through `projection` when the index has one.
    pub fn new(
        units: TokenUnits,
        projection: Option<std::sync::Arc<TokenProjection>>,
    ) -> PassageCoder {
        PassageCoder { units, projection }
    }

    /// The stored codes of `text` (as embedded, prefix included) whose token vectors are
    /// `m` and whose tokens span `spans` ([`crate::Embedder::token_spans`]), each with its
    /// piece, for an index that shares codes ([`share`]).
    pub fn code(&self, text: &str, spans: &[(usize, usize)], m: &TokenMatrix) -> PassageCodes {
        let project = |x: &TokenMatrix, keep: &dyn Fn(usize) -> bool| match &self.projection {
            Some(p) => encode(&p.project(x), keep),
            None => encode(x, keep),
        };
        if self.units == TokenUnits::Distinct {
            if let Some((d, pieces)) = distinct_pieces(text, spans, m) {
                return PassageCodes {
                    codes: project(&d, &|_| true),
                    pieces,
                };
            }
        }
        let pieces = kept_pieces(text, spans, m.len());
        PassageCodes {
            codes: project(m, &|r| pieces.get(r).is_some_and(Option::is_some)),
            pieces: pieces.into_iter().flatten().collect(),
        }
    }
}

/// One unit vector per distinct kept piece of `text` ([`TokenUnits::Distinct`]), in order
/// of first occurrence, with its piece; `None` when `spans` do not line up with the rows
/// of `m`.
fn distinct_pieces(
    text: &str,
    spans: &[(usize, usize)],
    m: &TokenMatrix,
) -> Option<(TokenMatrix, Vec<u32>)> {
    // A truncated text has fewer rows than spans: its rows are the first spans.
    if spans.len() < m.len() || m.dim == 0 {
        return None;
    }
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut kept: Vec<Vec<f32>> = Vec::new();
    let mut keys = Vec::new();
    for (&(a, b), row) in spans.iter().zip(m.rows()) {
        let piece = text.get(a..b)?;
        if !keep_token(piece) {
            continue;
        }
        let piece = piece.to_lowercase();
        match at.get(&piece) {
            Some(&i) => kept[i].iter_mut().zip(row).for_each(|(x, y)| *x += y),
            None => {
                keys.push(share::piece_key(&piece));
                at.insert(piece, kept.len());
                kept.push(row.to_vec());
            }
        }
    }
    for v in &mut kept {
        crate::embed::normalize(v);
    }
    Some((
        TokenMatrix {
            dim: m.dim,
            data: kept.concat(),
        },
        keys,
    ))
}

/// A query's token vectors, prepared to score sign codes.
pub struct QueryCodes {
    /// Query tokens.
    nq: usize,
    /// `lut[(g * nibbles + j) * 16 + v][t]`: for nibble `j` of a code with value `v`, the
    /// partial dot product `Σ_k ±q[4j + k]` (plus where bit `k` of `v` is set) of query token
    /// `g * LANES + t`. Fixed-width rows let the compiler add a whole group of query tokens
    /// in one or two vector instructions.
    lut: Vec<[f32; LANES]>,
    groups: usize,
    nibbles: usize,
    scale: f32,
}

/// Query tokens scored together: one 512-bit register, or two 256-bit ones.
const LANES: usize = 16;

impl QueryCodes {
    /// Prepares `q` (L2-normalised query token vectors).
    pub fn new(q: &TokenMatrix) -> QueryCodes {
        let nq = q.len();
        let groups = nq.div_ceil(LANES);
        let nibbles = code_bytes(q.dim) * 2;
        let mut lut = vec![[0f32; LANES]; groups * nibbles * 16];
        for (t, row) in q.rows().enumerate() {
            let (g, lane) = (t / LANES, t % LANES);
            for j in 0..nibbles {
                let x: [f32; 4] =
                    std::array::from_fn(|k| row.get(4 * j + k).copied().unwrap_or(0.0));
                for v in 0..16usize {
                    let s: f32 = (0..4)
                        .map(|k| if v >> k & 1 == 1 { x[k] } else { -x[k] })
                        .sum();
                    lut[(g * nibbles + j) * 16 + v][lane] = s;
                }
            }
        }
        QueryCodes {
            nq,
            lut,
            groups,
            nibbles,
            scale: 1.0 / (q.dim.max(1) as f32).sqrt(),
        }
    }

    /// MaxSim of the query against a passage made of `parts` (each a chunk's codes): the mean
    /// over query tokens of the best cosine with any passage token; 0 when either is empty.
    pub fn maxsim(&self, parts: &[&[u8]]) -> f32 {
        let mut total = 0f32;
        if !self.each_group(parts, |best| total += best.iter().sum::<f32>()) {
            return 0.0;
        }
        total * self.scale / self.nq as f32
    }

    /// Each query token's best cosine with any token of `parts` (what [`QueryCodes::maxsim`]
    /// averages), for weighting query tokens unevenly; empty when either side is empty.
    pub fn token_bests(&self, parts: &[&[u8]]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.nq);
        self.each_group(parts, |best| {
            out.extend(best.iter().map(|b| b * self.scale))
        });
        out
    }

    /// Calls `f` with the unscaled best scores of each group of query tokens over every
    /// token of `parts`, in query order; false (and no call) when either side is empty.
    fn each_group(&self, parts: &[&[u8]], mut f: impl FnMut(&[f32])) -> bool {
        let nb = self.nibbles / 2;
        if self.nq == 0 || nb == 0 || parts.iter().all(|p| p.len() < nb) {
            return false;
        }
        for g in 0..self.groups {
            let lut = &self.lut[g * self.nibbles * 16..(g + 1) * self.nibbles * 16];
            let mut best = [f32::MIN; LANES];
            best_of_group(lut, parts, nb, &mut best);
            let used = (self.nq - g * LANES).min(LANES);
            f(&best[..used]);
        }
        true
    }
}

multiversion! {
    /// For one group of query tokens (`lut`, as in [`QueryCodes`]), the best score of each
    /// over every `nb`-byte code of `parts`, folded into `best`.
    fn best_of_group(lut: &[[f32; LANES]], parts: &[&[u8]], nb: usize, best: &mut [f32; LANES]) {
        for code in parts.iter().flat_map(|p| p.chunks_exact(nb)) {
            let mut acc = [0f32; LANES];
            for (i, &byte) in code.iter().enumerate() {
                let lo = &lut[(2 * i) * 16 + (byte & 15) as usize];
                let hi = &lut[(2 * i + 1) * 16 + (byte >> 4) as usize];
                for k in 0..LANES {
                    acc[k] += lo[k] + hi[k];
                }
            }
            for k in 0..LANES {
                best[k] = best[k].max(acc[k]);
            }
        }
    }
}

/// The projected width measured for large indexes (`index --token-bits 128`): 16 bytes a
/// token where the signs of all 384 dimensions take 48.
///
/// Measured with `eval`'s paired test against 384-bit codes (docs/decisions.md, "Token
/// codes through a fixed projection"): SciFact nDCG@10 0.7465 -> 0.7460 (p 0.91), Python
/// code search 0.6920 -> 0.6893 (p 0.22), the 100-query SciFact subset 0.9002 -> 0.8935 (p
/// 0.09); 64 projected bits lost 0.0036 on SciFact (p 0.51), and the first 128 raw
/// dimensions' signs 0.0050 (p 0.14). Every set moved the same way, so it is an option
/// for an index whose codes would not fit, not the default.
pub const COMPACT_BITS: usize = 128;

/// The `token_bits` a new index records for a requested width: 0 (signs of every
/// dimension) for none; an error naming the cause for a width that is not a multiple of 8
/// in `8..dim`.
pub fn check_bits(bits: Option<usize>, dim: usize) -> Result<usize> {
    match bits {
        None => Ok(0),
        Some(b) if b >= 8 && b < dim && b % 8 == 0 => Ok(b),
        Some(b) => Err(Error::invalid(
            "token bits",
            format!(
                "{b}: a multiple of 8 from 8 to {} (the model has {dim} dimensions)",
                dim.saturating_sub(8)
            ),
        )),
    }
}

/// A fixed set of orthonormal directions token vectors are projected on before their signs
/// are taken: each bit of a code is then the side of a random hyperplane (SimHash), so that
/// fewer bits than dimensions keep an unbiased share of every dimension's information, where
/// a prefix of the raw dimensions would keep only those dimensions.
pub struct TokenProjection {
    dim: usize,
    bits: usize,
    /// `bits` rows of `dim` floats, orthonormal.
    rows: Vec<f32>,
}

impl TokenProjection {
    /// `bits` (at most `dim`) orthonormal directions in `dim` dimensions, the same on every
    /// machine: Gaussian rows from a fixed seed (SplitMix64, Box-Muller), orthonormalised
    /// by Gram-Schmidt in f64.
    pub fn new(dim: usize, bits: usize) -> TokenProjection {
        let bits = bits.min(dim);
        let mut state = 0x5EED_70C5_u64;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let z = crate::mix::mix64(state);
            ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut rows: Vec<Vec<f64>> = Vec::with_capacity(bits);
        while rows.len() < bits {
            let mut v: Vec<f64> = (0..dim)
                .map(|_| {
                    let (u1, u2) = (next(), next());
                    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
                })
                .collect();
            for r in &rows {
                let d: f64 = v.iter().zip(r).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(r).for_each(|(a, b)| *a -= d * b);
            }
            let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if n > 1e-6 {
                v.iter_mut().for_each(|a| *a /= n);
                rows.push(v);
            }
        }
        TokenProjection {
            dim,
            bits,
            rows: rows.into_iter().flatten().map(|x| x as f32).collect(),
        }
    }

    /// Bits of a code (dimensions after projection).
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Direction `i` (a unit vector of the input dimension; empty past the last).
    pub fn direction(&self, i: usize) -> &[f32] {
        self.rows
            .get(i * self.dim..(i + 1) * self.dim)
            .unwrap_or(&[])
    }

    /// `m`'s rows projected: `bits` floats each.
    pub fn project(&self, m: &TokenMatrix) -> TokenMatrix {
        let mut data = Vec::with_capacity(m.len() * self.bits);
        for row in m.rows() {
            for p in self.rows.chunks_exact(self.dim.max(1)) {
                data.push(crate::embed::dot(row, p));
            }
        }
        TokenMatrix {
            dim: self.bits,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    /// The cosine of `q` with the unit vector of `d`'s signs, by plain arithmetic.
    fn sign_cos(q: &[f32], d: &[f32]) -> f32 {
        let s: f32 = q
            .iter()
            .zip(d)
            .map(|(a, b)| if *b > 0.0 { *a } else { -*a })
            .sum();
        s / (q.len() as f32).sqrt()
    }

    fn pseudo(seed: u64, n: usize) -> Vec<f32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn maxsim_of_codes_matches_plain_arithmetic() {
        // 20 dims: not a multiple of 8, so the padding bits are exercised; 17 query tokens:
        // more than one accumulator group.
        let dim = 20;
        let q: Vec<Vec<f32>> = (0..17).map(|i| unit(pseudo(i, dim))).collect();
        let d1: Vec<Vec<f32>> = (0..5).map(|i| unit(pseudo(100 + i, dim))).collect();
        let d2: Vec<Vec<f32>> = (0..3).map(|i| unit(pseudo(200 + i, dim))).collect();
        let qm = TokenMatrix {
            dim,
            data: q.concat(),
        };
        let c1 = encode(
            &TokenMatrix {
                dim,
                data: d1.concat(),
            },
            |_| true,
        );
        let c2 = encode(
            &TokenMatrix {
                dim,
                data: d2.concat(),
            },
            |_| true,
        );
        assert_eq!(c1.len(), 5 * 3);
        let qc = QueryCodes::new(&qm);
        let bests: Vec<f32> = q
            .iter()
            .map(|qt| {
                d1.iter()
                    .chain(&d2)
                    .map(|dt| sign_cos(qt, dt))
                    .fold(f32::MIN, f32::max)
            })
            .collect();
        let expect = bests.iter().sum::<f32>() / q.len() as f32;
        let got = qc.maxsim(&[&c1, &c2]);
        assert!((got - expect).abs() < 1e-5, "{got} vs {expect}");
        // Each query token's best, in query order, across both groups.
        let per_token = qc.token_bests(&[&c1, &c2]);
        assert_eq!(per_token.len(), q.len());
        for (g, w) in per_token.iter().zip(&bests) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        assert!(qc.token_bests(&[]).is_empty());
        // One part alone can only score lower or equal.
        assert!(qc.maxsim(&[&c1]) <= got + 1e-6);
    }

    #[test]
    fn identical_signs_score_near_the_sign_cosine_and_empty_sides_score_zero() {
        let dim = 16;
        let q = unit(vec![1.0; dim]);
        let qm = TokenMatrix {
            dim,
            data: q.clone(),
        };
        let qc = QueryCodes::new(&qm);
        let same = encode(&qm, |_| true);
        // All dims positive: the code's unit vector equals q.
        assert!((qc.maxsim(&[&same]) - 1.0).abs() < 1e-5);
        let neg = encode(
            &TokenMatrix {
                dim,
                data: q.iter().map(|x| -x).collect(),
            },
            |_| true,
        );
        assert!((qc.maxsim(&[&neg]) + 1.0).abs() < 1e-5);
        assert_eq!(qc.maxsim(&[]), 0.0);
        assert_eq!(qc.maxsim(&[&[]]), 0.0);
        let empty = QueryCodes::new(&TokenMatrix {
            dim,
            data: Vec::new(),
        });
        assert_eq!(empty.maxsim(&[&same]), 0.0);
    }

    #[test]
    fn passages_drop_stopwords_and_punctuation_only_when_spans_line_up() {
        let text = "The cell, of mice";
        let spans = vec![(0, 3), (4, 8), (8, 9), (10, 12), (13, 17)];
        let m = TokenMatrix {
            dim: 8,
            data: (0..40).map(|i| i as f32 - 20.0).collect(),
        };
        // "The", ",", "of" dropped: "cell" and "mice" stay.
        assert_eq!(encode_passage(text, &spans, &m).len(), 2);
        // Fewer spans than rows: nothing can be matched, everything is kept.
        assert_eq!(encode_passage(text, &spans[..2], &m).len(), 5);
        assert!(keep_token("Cell") && !keep_token("THE") && !keep_token("—") && keep_token("2"));
        let mut sorted = STOPWORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, STOPWORDS, "binary search needs a sorted list");
    }

    #[test]
    fn the_projection_is_orthonormal_and_the_same_on_every_build() {
        let p = TokenProjection::new(384, 128);
        assert_eq!(p.bits(), 128);
        let rows: Vec<&[f32]> = p.rows.chunks_exact(384).collect();
        assert_eq!(rows.len(), 128);
        for (i, a) in rows.iter().enumerate() {
            for (j, b) in rows.iter().enumerate().take(i + 1) {
                let d: f32 = a.iter().zip(*b).map(|(x, y)| x * y).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-4, "rows {i}, {j}: {d}");
            }
        }
        assert_eq!(TokenProjection::new(384, 128).rows, p.rows);
        // More bits than dimensions: one per dimension.
        assert_eq!(TokenProjection::new(8, 16).bits(), 8);
    }

    #[test]
    fn projected_codes_rank_a_passage_holding_the_query_tokens_first() {
        // 40 passages of 12 random tokens; passage 7 also holds noisy copies of the query's
        // 6 tokens. Its MaxSim through 32 projected bits of 96 dimensions must lead.
        let dim = 96;
        let p = TokenProjection::new(dim, 32);
        let q: Vec<Vec<f32>> = (0..6).map(|i| unit(pseudo(90_000 + i, dim))).collect();
        let qm = TokenMatrix {
            dim,
            data: q.concat(),
        };
        let qc = QueryCodes::new(&p.project(&qm));
        let scores: Vec<f32> = (0..40u64)
            .map(|d| {
                let mut toks: Vec<Vec<f32>> =
                    (0..12).map(|t| unit(pseudo(d * 100 + t, dim))).collect();
                if d == 7 {
                    for (i, qt) in q.iter().enumerate() {
                        let noise = pseudo(95_000 + i as u64, dim);
                        toks.push(unit(
                            qt.iter().zip(&noise).map(|(a, n)| a + 0.05 * n).collect(),
                        ));
                    }
                }
                let m = TokenMatrix {
                    dim,
                    data: toks.concat(),
                };
                let codes = encode(&p.project(&m), |_| true);
                assert_eq!(codes.len(), m.len() * code_bytes(32));
                qc.maxsim(&[&codes])
            })
            .collect();
        let best = (0..40).max_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        assert_eq!(best, Some(7), "{scores:?}");
    }

    /// A piece repeated in the chunk (case folded) is one unit, the unit mean of its
    /// occurrences; stopwords and punctuation are left out; spans that do not line up with
    /// the rows fall back to every piece.
    #[test]
    fn a_repeated_piece_is_one_unit() {
        let dim = 16;
        // "Token" + "ization" twice (once capitalised), "of" a stopword, "," punctuation.
        let text = "Tokenization of tokenization, cells";
        let spans = [
            (0, 5),
            (5, 12),
            (13, 15),
            (16, 21),
            (21, 28),
            (28, 29),
            (30, 35),
        ];
        let rows: Vec<Vec<f32>> = (0..spans.len() as u64)
            .map(|i| unit(pseudo(i + 1, dim)))
            .collect();
        let m = TokenMatrix {
            dim,
            data: rows.concat(),
        };
        let (d, keys) = distinct_pieces(text, &spans, &m).expect("spans line up");
        assert_eq!(
            keys,
            [
                share::piece_key("token"),
                share::piece_key("ization"),
                share::piece_key("cells")
            ]
        );
        let add =
            |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(x, y)| x + y).collect() };
        let want = [
            unit(add(&rows[0], &rows[3])),
            unit(add(&rows[1], &rows[4])),
            unit(rows[6].clone()),
        ];
        assert_eq!(d.len(), want.len(), "token, ization, cells");
        for (got, want) in d.rows().zip(&want) {
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        }
        let coder = PassageCoder::new(TokenUnits::Distinct, None);
        assert_eq!(coder.code(text, &spans, &m).codes, encode(&d, |_| true));
        assert_eq!(coder.code(text, &spans, &m).pieces, keys);
        // Through a projection, each unit takes bits / 8 bytes.
        let p = std::sync::Arc::new(TokenProjection::new(dim, 8));
        let projected = PassageCoder::new(TokenUnits::Distinct, Some(p.clone()));
        assert_eq!(
            projected.code(text, &spans, &m).codes,
            encode(&p.project(&d), |_| true)
        );
        // Fewer spans than rows: the rows are coded as pieces are.
        assert_eq!(
            coder.code(text, &spans[..4], &m).codes,
            encode_passage(text, &spans[..4], &m)
        );
        let pieces = PassageCoder::new(TokenUnits::Pieces, None);
        let coded = pieces.code(text, &spans, &m);
        assert_eq!(coded.codes, encode_passage(text, &spans, &m));
        // One piece per stored code; a truncated text's rows have none.
        assert_eq!(coded.pieces.len() * code_bytes(dim), coded.codes.len());
        assert!(coder
            .code(text, &spans[..4], &m)
            .pieces
            .iter()
            .all(|&p| p == share::NO_PIECE));
    }
}
