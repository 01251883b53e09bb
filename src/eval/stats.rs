//! How far a mean over queries can be trusted: bootstrap intervals and paired tests.
//!
//! A collection's score is a mean over a few hundred queries, and most retrieval changes move
//! it by less than one query's swing. Before a figure decides anything, a reader needs to
//! know what the same system would score on another sample of such queries (the interval),
//! and whether two systems differ on *these* queries by more than chance ordering would
//! give (the paired test). The methods are the ones IR evaluation settled on (Smucker, Allan
//! and Carterette, CIKM 2007): the paired randomisation test, which assumes nothing of the
//! metric's distribution, and the percentile bootstrap for intervals.
//!
//! Both resample with a fixed seed, so one report always prints the same figures.
//!
//! Not for: the metrics themselves (`metrics.rs`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Resamples per interval and per test. With 10,000, a p-value of 0.05 is known to about
/// ±0.004 and an interval's ends to the third decimal.
pub const RESAMPLES: usize = 10_000;

/// The seed every resampling starts from.
const SEED: u64 = 0x5eed_1dea;

/// A mean with its 95% interval.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Interval {
    /// The mean over all queries.
    pub mean: f64,
    /// 2.5th percentile of the resampled means.
    pub low: f64,
    /// 97.5th percentile of the resampled means.
    pub high: f64,
}

impl Interval {
    /// Whether `x` lies inside the interval (ends included).
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// One mode against the baseline on one metric, query by query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Paired {
    /// Mean of (mode − baseline), with its bootstrap interval.
    pub delta: Interval,
    /// Two-sided p-value of the paired randomisation test: the chance that swapping each
    /// query's two scores at random gives a mean difference at least this large.
    pub p_value: f64,
    /// Queries on which the mode scores higher.
    pub wins: usize,
    /// Queries on which the baseline scores higher.
    pub losses: usize,
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The value below which a share `q` of the sorted `xs` lies (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The percentile bootstrap interval of the mean of `values` (one value per query).
pub fn bootstrap(values: &[f64]) -> Interval {
    let m = mean(values);
    if values.len() < 2 {
        return Interval {
            mean: m,
            low: m,
            high: m,
        };
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    let n = values.len();
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Interval {
        mean: m,
        low: percentile(&means, 0.025),
        high: percentile(&means, 0.975),
    }
}

/// Compares `mode` with `baseline`, both scored on the same queries in the same order.
///
/// Returns `None` when the two lists differ in length (they were not scored on the same
/// queries, so no pairing exists).
pub fn paired(mode: &[f64], baseline: &[f64]) -> Option<Paired> {
    if mode.len() != baseline.len() {
        return None;
    }
    let d: Vec<f64> = mode.iter().zip(baseline).map(|(a, b)| a - b).collect();
    let observed = mean(&d).abs();
    // Differences this small are float noise of equal scores, not a win or a loss.
    const TIE: f64 = 1e-12;
    let wins = d.iter().filter(|&&x| x > TIE).count();
    let losses = d.iter().filter(|&&x| x < -TIE).count();
    let mut rng = StdRng::seed_from_u64(SEED ^ 1);
    let n = d.len().max(1) as f64;
    // Under the null hypothesis each query's two scores are exchangeable, so each
    // difference's sign is a coin flip. Ties (d = 0) flip to themselves and count as such.
    let at_least = (0..RESAMPLES)
        .filter(|_| {
            let s: f64 = d
                .iter()
                .map(|&x| if rng.random::<bool>() { x } else { -x })
                .sum();
            (s / n).abs() >= observed - TIE
        })
        .count();
    Some(Paired {
        delta: bootstrap(&d),
        // The observed assignment is one of the possible ones: (count + 1) / (R + 1) keeps the
        // p-value from reading 0 (Phipson and Smyth, 2010).
        p_value: (at_least + 1) as f64 / (RESAMPLES + 1) as f64,
        wins,
        losses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_holds_the_mean_and_narrows_with_more_queries() {
        // Alternating 0/1 scores: mean 0.5, per-query standard deviation 0.5, so the 95%
        // interval of the mean is about ±1.96·0.5/√n.
        let few: Vec<f64> = (0..40).map(|i| (i % 2) as f64).collect();
        let many: Vec<f64> = (0..1000).map(|i| (i % 2) as f64).collect();
        let a = bootstrap(&few);
        let b = bootstrap(&many);
        assert!((a.mean - 0.5).abs() < 1e-12 && a.contains(0.5) && b.contains(0.5));
        let (wa, wb) = (a.high - a.low, b.high - b.low);
        let expect = |n: f64| 2.0 * 1.96 * 0.5 / n.sqrt();
        assert!((wa - expect(40.0)).abs() < 0.06, "width {wa}");
        assert!((wb - expect(1000.0)).abs() < 0.01, "width {wb}");
        assert!(wb < wa / 3.0);
    }

    #[test]
    fn bootstrap_of_constant_or_single_values_is_a_point() {
        let c = bootstrap(&[0.7; 50]);
        assert!(
            (c.low - 0.7).abs() < 1e-12 && (c.high - 0.7).abs() < 1e-12,
            "{c:?}"
        );
        let one = bootstrap(&[0.3]);
        assert_eq!((one.mean, one.low, one.high), (0.3, 0.3, 0.3));
        assert_eq!(bootstrap(&[]), Interval::default());
    }

    #[test]
    fn a_consistent_gain_is_significant_and_a_symmetric_one_is_not() {
        // Mode beats the baseline by 0.1 on 30 of 40 queries and ties on the rest.
        let base: Vec<f64> = (0..40).map(|i| (i as f64 * 0.37) % 0.8).collect();
        let better: Vec<f64> = base
            .iter()
            .enumerate()
            .map(|(i, b)| if i < 30 { b + 0.1 } else { *b })
            .collect();
        let p = paired(&better, &base).unwrap();
        assert!((p.delta.mean - 0.075).abs() < 1e-12);
        assert_eq!((p.wins, p.losses), (30, 0));
        // All 30 non-zero differences have the same sign: a random sign assignment matches
        // that only with probability 2·2⁻³⁰, so only the observed one counts.
        assert!(p.p_value < 0.001, "p {}", p.p_value);
        assert!(p.delta.low > 0.0);
        // Half the queries gain 0.1 and half lose 0.1: no difference at all.
        let mixed: Vec<f64> = base
            .iter()
            .enumerate()
            .map(|(i, b)| if i % 2 == 0 { b + 0.1 } else { b - 0.1 })
            .collect();
        let q = paired(&mixed, &base).unwrap();
        assert_eq!((q.wins, q.losses), (20, 20));
        assert!(q.p_value > 0.9, "p {}", q.p_value);
        assert!(q.delta.contains(0.0));
    }

    #[test]
    fn the_randomisation_p_value_matches_the_exact_one_on_a_small_case() {
        // Differences 1, 1, 1, -1, 0: |mean| = 0.4. Of the 16 sign assignments of the four
        // non-zero differences, those with |sum| >= 2 are the ones with three or four equal
        // signs: 2·(4 + 1) = 10, so the exact two-sided p-value is 10/16 = 0.625.
        let base = [0.0; 5];
        let mode = [1.0, 1.0, 1.0, -1.0, 0.0];
        let p = paired(&mode, &base).unwrap();
        assert!((p.p_value - 0.625).abs() < 0.015, "p {}", p.p_value);
    }

    #[test]
    fn lists_of_different_lengths_are_not_paired() {
        assert!(paired(&[0.1, 0.2], &[0.1]).is_none());
    }

    #[test]
    fn the_same_input_gives_the_same_figures() {
        let v: Vec<f64> = (0..77).map(|i| ((i * 7919) % 101) as f64 / 100.0).collect();
        assert_eq!(bootstrap(&v), bootstrap(&v));
        let w: Vec<f64> = v.iter().rev().cloned().collect();
        assert_eq!(paired(&v, &w), paired(&v, &w));
    }
}
