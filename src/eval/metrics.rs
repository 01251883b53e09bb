//! Metric functions over one ranked list (best first) and its judgements: the trec_eval /
//! pytrec_eval definitions (linear-gain nDCG) and RAGAS's context precision.

use std::collections::HashMap;

fn grade(rels: &HashMap<String, i32>, id: &str) -> i32 {
    rels.get(id).copied().unwrap_or(0).max(0)
}

/// How many of the first `k` of `ranked` are relevant.
pub fn relevant_in(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> usize {
    ranked.iter().take(k).filter(|d| grade(rels, d) > 0).count()
}

/// Number of documents judged relevant (grade above 0).
pub fn n_relevant(rels: &HashMap<String, i32>) -> usize {
    rels.values().filter(|&&g| g > 0).count()
}

/// nDCG@k with linear gain (trec_eval): `sum rel_i / log2(i + 1)` over the ideal.
pub fn ndcg(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| grade(rels, d) as f64 / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<i32> = rels.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &g)| g as f64 / ((i + 2) as f64).log2())
        .sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

/// Share of the relevant documents found in the top `k`.
pub fn recall(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> f64 {
    let n = n_relevant(rels);
    if n == 0 {
        return 0.0;
    }
    relevant_in(ranked, rels, k) as f64 / n as f64
}

/// Reciprocal rank of the first relevant document within the top `k`.
pub fn mrr(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| grade(rels, d) > 0)
        .map(|i| 1.0 / (i + 1) as f64)
        .unwrap_or(0.0)
}

/// Average precision over the top `k`, divided by all relevant documents.
pub fn average_precision(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> f64 {
    let n = n_relevant(rels);
    if n == 0 {
        return 0.0;
    }
    precision_at_hits(ranked, rels, k).1 / n as f64
}

/// Relevant items in the top `k`, and the sum of precision@i over the positions i that
/// hold one: AP and context precision differ only in what they divide it by.
fn precision_at_hits(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> (usize, f64) {
    let mut hits = 0;
    let mut sum = 0.0;
    for (i, d) in ranked.iter().take(k).enumerate() {
        if grade(rels, d) > 0 {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    (hits, sum)
}

/// Precision at `k` (divides by `k` even when fewer results exist).
pub fn precision(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> f64 {
    relevant_in(ranked, rels, k) as f64 / k as f64
}

/// Context precision@k as RAGAS defines it: the mean of precision@i over the positions
/// i <= k that hold a relevant item (sum of P@i * rel_i, divided by the number of relevant
/// items in the top k); 0 when there is none. Rewards putting the relevant passages first.
pub fn context_precision(ranked: &[String], rels: &HashMap<String, i32>, k: usize) -> f64 {
    let (hits, sum) = precision_at_hits(ranked, rels, k);
    if hits == 0 {
        0.0
    } else {
        sum / hits as f64
    }
}

/// Orders `(id, score)` best first, ties broken by id (ascending), for a deterministic
/// ranking when scores tie.
pub fn rank_with_ties(mut scored: Vec<(String, f32)>) -> Vec<String> {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.into_iter().map(|x| x.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(v: &[(&str, i32)]) -> HashMap<String, i32> {
        v.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }
    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ndcg_by_hand_binary_and_graded() {
        // relevant at ranks 1 and 3, two relevant: (1 + 1/log2 4) / (1 + 1/log2 3)
        let r = rels(&[("a", 1), ("c", 1)]);
        let got = ndcg(&list(&["a", "b", "c"]), &r, 10);
        let want = (1.0 + 0.5) / (1.0 + 1.0 / 3f64.log2());
        assert!((got - want).abs() < 1e-12, "{got} {want}");
        // graded: b=2 at rank 1, a=1 at rank 2 is ideal -> 1.0; swapped is less.
        let g = rels(&[("a", 1), ("b", 2)]);
        assert!((ndcg(&list(&["b", "a"]), &g, 10) - 1.0).abs() < 1e-12);
        let swapped = ndcg(&list(&["a", "b"]), &g, 10);
        let want = (1.0 + 2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!((swapped - want).abs() < 1e-12);
        // cut at k: a relevant doc at rank 11 adds nothing
        let mut l: Vec<String> = (0..10).map(|i| format!("x{i}")).collect();
        l.push("a".into());
        assert_eq!(ndcg(&l, &rels(&[("a", 1)]), 10), 0.0);
        // grade 0 and negative grades count as not relevant
        assert_eq!(ndcg(&list(&["z"]), &rels(&[("z", 0), ("y", -1)]), 10), 0.0);
    }

    #[test]
    fn recall_mrr_map_precision_by_hand() {
        let r = rels(&[("a", 1), ("c", 1), ("e", 1), ("n", 0)]);
        let l = list(&["b", "a", "n", "c", "d"]);
        assert!((recall(&l, &r, 10) - 2.0 / 3.0).abs() < 1e-12);
        assert!((recall(&l, &r, 2) - 1.0 / 3.0).abs() < 1e-12);
        assert!((mrr(&l, &r, 10) - 0.5).abs() < 1e-12);
        assert_eq!(mrr(&l, &r, 1), 0.0);
        // AP: hits at 2 and 4 -> (1/2 + 2/4) / 3
        assert!((average_precision(&l, &r, 100) - (0.5 + 0.5) / 3.0).abs() < 1e-12);
        assert!((precision(&l, &r, 5) - 2.0 / 5.0).abs() < 1e-12);
        // precision divides by k even when the list is short
        assert!((precision(&list(&["a"]), &r, 5) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn context_precision_by_hand() {
        let r = rels(&[("a", 1), ("c", 1)]);
        // relevant at 1 and 3: (1/1 + 2/3) / 2
        let got = context_precision(&list(&["a", "b", "c", "d", "e"]), &r, 5);
        assert!((got - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // relevant only at 5: (1/5) / 1
        let got = context_precision(&list(&["b", "d", "e", "f", "a"]), &r, 5);
        assert!((got - 0.2).abs() < 1e-12);
        // none in top 5
        assert_eq!(
            context_precision(&list(&["b", "d", "e", "f", "g", "a"]), &r, 5),
            0.0
        );
        // all relevant first: 1
        assert_eq!(context_precision(&list(&["a", "c", "x"]), &r, 5), 1.0);
    }

    #[test]
    fn ties_break_by_id() {
        let ranked = rank_with_ties(vec![
            ("b".into(), 1.0),
            ("a".into(), 1.0),
            ("c".into(), 2.0),
        ]);
        assert_eq!(ranked, list(&["c", "a", "b"]));
        let r = rels(&[("b", 1)]);
        assert!((mrr(&ranked, &r, 10) - 1.0 / 3.0).abs() < 1e-12);
    }
}
