//! Fusing ranked lists from several retrievers into one.
//!
//! Pure functions over `(id, score)` lists, best first. Two families:
//! - reciprocal rank fusion (RRF): uses only ranks, so it needs no calibration between
//!   BM25 and cosine scores; `k` damps the head and per-leg weights tilt it;
//! - a weighted convex combination of *normalised* scores (min-max, or z-score as in
//!   distribution-based score fusion), which keeps the score gaps that RRF throws away.
//!
//! A candidate missing from a leg gets that leg's floor: rank contribution zero for RRF,
//! and the normalised minimum for score fusion.
//!
//! Not for: retrieving candidates or reranking them; it knows nothing of files or indexes.

use std::collections::HashMap;
use std::hash::Hash;

/// How scores are normalised before a weighted sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// `(s - min) / (max - min)` over the leg's list.
    MinMax,
    /// `(s - mean) / std` over the leg's list (distribution-based score fusion).
    ZScore,
}

/// A fusion method.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Fusion {
    /// Reciprocal rank fusion: `sum_i w_i / (k + rank_i)`, rank from 1.
    Rrf {
        /// Damping constant (60 in the original paper).
        k: f32,
        /// Weight per leg (missing weights count as 1).
        weights: Vec<f32>,
    },
    /// `sum_i w_i * norm_i(score)`.
    Weighted {
        /// Normalisation.
        norm: Norm,
        /// Weight per leg (missing weights count as 1).
        weights: Vec<f32>,
    },
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Rrf {
            k: 60.0,
            weights: Vec::new(),
        }
    }
}

/// Fuses `legs` into one list, best first. Ties are broken by the best rank in any leg,
/// then by id, so the result is deterministic.
///
/// Generic over the key: the engine fuses chunks or documents ([`crate::engine`]'s rankings
/// key them apart), `tune` and the tests plain ids.
pub fn fuse<K: Copy + Eq + Hash + Ord>(legs: &[&[(K, f32)]], method: &Fusion) -> Vec<(K, f32)> {
    let mut score: HashMap<K, f32> = HashMap::new();
    let mut best_rank: HashMap<K, usize> = HashMap::new();
    for leg in legs {
        for (r, (id, _)) in leg.iter().enumerate() {
            let e = best_rank.entry(*id).or_insert(r);
            *e = (*e).min(r);
            score.entry(*id).or_insert(0.0);
        }
    }
    let weight = |ws: &Vec<f32>, i: usize| ws.get(i).copied().unwrap_or(1.0);
    match method {
        Fusion::Rrf { k, weights } => {
            for (i, leg) in legs.iter().enumerate() {
                let w = weight(weights, i);
                for (r, (id, _)) in leg.iter().enumerate() {
                    *score.entry(*id).or_insert(0.0) += w / (k + (r + 1) as f32);
                }
            }
        }
        Fusion::Weighted { norm, weights } => {
            for (i, leg) in legs.iter().enumerate() {
                let w = weight(weights, i);
                let normed = normalize(leg, *norm);
                let floor = normed.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
                let floor = if floor.is_finite() { floor } else { 0.0 };
                let present: HashMap<K, f32> = normed.into_iter().collect();
                for (id, s) in score.iter_mut() {
                    *s += w * present.get(id).copied().unwrap_or(floor);
                }
            }
        }
    }
    let mut out: Vec<(K, f32)> = score.into_iter().collect();
    out.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(best_rank[&a.0].cmp(&best_rank[&b.0]))
            .then(a.0.cmp(&b.0))
    });
    out
}

/// Normalises one leg's scores.
pub fn normalize<K: Copy>(leg: &[(K, f32)], norm: Norm) -> Vec<(K, f32)> {
    if leg.is_empty() {
        return Vec::new();
    }
    match norm {
        Norm::MinMax => {
            let (lo, hi) = leg
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
                    (lo.min(x.1), hi.max(x.1))
                });
            let span = hi - lo;
            leg.iter()
                .map(|&(id, s)| (id, if span > 0.0 { (s - lo) / span } else { 1.0 }))
                .collect()
        }
        Norm::ZScore => {
            let n = leg.len() as f32;
            let mean = leg.iter().map(|x| x.1).sum::<f32>() / n;
            let var = leg.iter().map(|x| (x.1 - mean).powi(2)).sum::<f32>() / n;
            let sd = var.sqrt();
            leg.iter()
                .map(|&(id, s)| (id, if sd > 0.0 { (s - mean) / sd } else { 0.0 }))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[(u64, f32)]) -> Vec<u64> {
        v.iter().map(|x| x.0).collect()
    }

    #[test]
    fn rrf_on_hand_made_lists() {
        let a = [(1, 9.0), (2, 8.0), (3, 7.0)];
        let b = [(3, 0.9), (1, 0.8), (4, 0.7)];
        let f = fuse(&[&a, &b], &Fusion::default());
        // 1: 1/61 + 1/62 ; 3: 1/63 + 1/61 ; 2: 1/62 ; 4: 1/63
        assert_eq!(ids(&f), vec![1, 3, 2, 4]);
        assert!((f[0].1 - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-7);
        assert!((f[3].1 - 1.0 / 63.0).abs() < 1e-7);
    }

    #[test]
    fn rrf_ties_break_by_best_rank_then_id() {
        let a = [(5, 1.0), (6, 0.5)];
        let b = [(6, 1.0), (5, 0.5)];
        let f = fuse(&[&a, &b], &Fusion::default());
        assert_eq!(ids(&f), vec![5, 6]);
        assert_eq!(f[0].1, f[1].1);
    }

    #[test]
    fn empty_and_one_sided_legs() {
        let a: [(u64, f32); 0] = [];
        let b = [(7, 2.0), (8, 1.0)];
        assert!(fuse(&[&a, &a], &Fusion::default()).is_empty());
        assert_eq!(ids(&fuse(&[&a, &b], &Fusion::default())), vec![7, 8]);
        let w = Fusion::Weighted {
            norm: Norm::MinMax,
            weights: vec![0.5, 0.5],
        };
        assert_eq!(ids(&fuse(&[&a, &b], &w)), vec![7, 8]);
    }

    #[test]
    fn weighted_minmax_by_hand() {
        let a = [(1, 10.0), (2, 5.0), (3, 0.0)]; // -> 1, 0.5, 0
        let b = [(3, 0.9), (2, 0.5), (4, 0.1)]; // -> 1, 0.5, 0
        let f = fuse(
            &[&a, &b],
            &Fusion::Weighted {
                norm: Norm::MinMax,
                weights: vec![0.3, 0.7],
            },
        );
        let m: HashMap<u64, f32> = f.iter().copied().collect();
        assert!((m[&1] - (0.3 * 1.0 + 0.7 * 0.0)).abs() < 1e-6);
        assert!((m[&2] - 0.5).abs() < 1e-6);
        assert!((m[&3] - 0.7).abs() < 1e-6);
        assert!((m[&4] - 0.0).abs() < 1e-6);
        assert_eq!(ids(&f), vec![3, 2, 1, 4]);
    }

    #[test]
    fn zscore_by_hand() {
        let n = normalize(&[(1, 1.0), (2, 3.0)], Norm::ZScore);
        assert!((n[0].1 + 1.0).abs() < 1e-6 && (n[1].1 - 1.0).abs() < 1e-6);
        let flat = normalize(&[(1, 2.0), (2, 2.0)], Norm::MinMax);
        assert_eq!(flat[0].1, 1.0);
    }
}
