//! Expansion weight, candidate depth, fusion and rerank depth and weight searched
//! together ([`tune_joint`]), replayed from one engine pass per expansion weight.

use std::collections::HashMap;

use super::fusion::fuse_features;
use super::*;
use crate::engine::{Engine, Granularity, Mode, Pipeline, SearchRequest};
use crate::error::Result;
use crate::eval::Labelled;
use crate::fuse::Fusion;

/// Depths searched for a reranker (0: no reranking).
pub const RERANK_DEPTHS: [usize; 4] = [0, 5, 10, 20];

/// Document-expansion weights searched together with the rest ([`tune_joint`]): the range
/// the shipped weight was chosen from (docs/decisions.md), and none.
pub const EXPANSION_WEIGHTS: [f32; 4] = [0.0, 0.1, 0.2, 0.3];

/// Candidate depths (documents per leg) searched: the shipped one and twice it. Never fewer
/// than 100: the ranking must cover recall@100 and the cut-off's floor rank.
pub const CANDIDATE_DEPTHS: [usize; 2] = [100, 200];

/// One query collected once at the deepest candidate depth, every fused candidate
/// reranked: enough to replay any shallower depth, fusion, rerank depth and rerank weight
/// as the engine runs them ([`replay`]), without another engine pass.
pub struct JointFeatures {
    /// Judgements.
    pub rels: HashMap<String, i32>,
    /// Query id (excluded from rankings, BEIR convention).
    pub qid: String,
    /// Every candidate: (doc, BM25, cosine), in the engine's key order (so that ties
    /// break as they do there).
    pub cands: Vec<(String, f32, f32)>,
    /// Each candidate's rank in the lexical and the dense leg (`u32::MAX` outside both
    /// legs' collected depth): the pool at depth `d` is the candidates ranked below `d` in
    /// either.
    pub lex_rank: Vec<u32>,
    /// See `lex_rank`.
    pub den_rank: Vec<u32>,
    /// The reranker's raw score of each candidate, where the probe scored it.
    pub rerank: Vec<Option<f32>>,
    /// The share of the reranker's weight this query gets (1 when the weight does not fade, 0 for a query too long to rerank: [`crate::LengthFade`]).
    pub fade: f32,
}

impl JointFeatures {
    /// The reranker's scores of the first `n` documents of `fused` (an order from
    /// [`replay`]), or `None` for a query the reranker did not weigh (too long: no score at
    /// all). A candidate the probe did not score (none, when it reranked all) takes the
    /// lowest score seen, so that it never gains from reranking.
    pub fn head_scores(&self, fused: &[(u64, f32)], n: usize) -> Option<Vec<f32>> {
        let low = self
            .rerank
            .iter()
            .flatten()
            .copied()
            .fold(f32::INFINITY, f32::min);
        low.is_finite().then(|| {
            fused
                .iter()
                .take(n)
                .map(|&(i, _)| self.rerank[i as usize].unwrap_or(low))
                .collect()
        })
    }
}

/// Runs every query through `pipeline` at candidate depth `depth`, reranking the fused
/// head's first `pipeline.rerank.depth` candidates (all of them, for a cheap reranker), and
/// keeps what [`replay`] needs.
pub fn collect_joint(
    engine: &Engine,
    queries: &Labelled,
    pipeline: &Pipeline,
    depth: usize,
) -> Result<Vec<JointFeatures>> {
    let p = Pipeline {
        select: None,
        multi_query: false,
        full_features: true,
        depth,
        ..pipeline.clone()
    };
    let full = p.rerank.as_ref().map_or(0.0, |r| r.weight);
    let mut out = Vec::with_capacity(queries.len());
    for (qid, text, rels) in queries {
        let req = SearchRequest {
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            ..SearchRequest::new(text.as_str(), 10).pipeline(p.clone())
        };
        let o = engine.search_detailed(&req)?;
        fn rank_of(leg: &[(String, f32)]) -> HashMap<&str, u32> {
            leg.iter()
                .enumerate()
                .map(|(i, (d, _))| (d.as_str(), i as u32))
                .collect()
        }
        let (lex, den) = (rank_of(&o.lexical), rank_of(&o.dense));
        let scored: HashMap<&str, f32> = o.reranked.iter().map(|(d, s)| (d.as_str(), *s)).collect();
        let at = |m: &HashMap<&str, u32>, d: &str| m.get(d).copied().unwrap_or(u32::MAX);
        out.push(JointFeatures {
            rels: rels.clone(),
            qid: qid.clone(),
            lex_rank: o.candidates.iter().map(|c| at(&lex, &c.0)).collect(),
            den_rank: o.candidates.iter().map(|c| at(&den, &c.0)).collect(),
            rerank: o
                .candidates
                .iter()
                .map(|c| scored.get(c.0.as_str()).copied())
                .collect(),
            cands: o.candidates,
            fade: if full > 0.0 {
                o.rerank_weight / full
            } else {
                1.0
            },
        });
    }
    Ok(out)
}

/// The fused order of one query at candidate depth `depth` with `fusion`, as positions in
/// `q.cands`: the pool is what the engine's legs would have taken at that depth, each
/// scored on both legs and fused as [`crate::engine`] does with full features.
pub fn replay(q: &JointFeatures, depth: usize, fusion: &Fusion) -> Vec<(u64, f32)> {
    let d = depth.min(u32::MAX as usize) as u32;
    let pool: Vec<usize> = (0..q.cands.len())
        .filter(|&i| q.lex_rank[i] < d || q.den_rank[i] < d)
        .collect();
    let feats = pool.iter().map(|&i| (i as u64, q.cands[i].1, q.cands[i].2));
    fuse_features(feats, fusion)
}

/// One point of the joint search.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Joint {
    /// Document-expansion weight ([`Pipeline::expansion`]).
    pub expansion: f32,
    /// Candidates per leg ([`Pipeline::depth`]).
    pub depth: usize,
    /// Fusion of the legs.
    pub fusion: Fusion,
    /// Fused candidates reranked (0: none).
    pub rerank_depth: usize,
    /// The reranker's weight in the blend.
    pub rerank_weight: f32,
}

impl Joint {
    /// Whether `other` differs from this one only in its rerank depth and weight.
    pub fn same_retrieval(&self, other: &Joint) -> bool {
        self.expansion == other.expansion
            && self.depth == other.depth
            && self.fusion == other.fusion
    }
}

/// A choice of the joint search and how it scored.
#[derive(Debug, Clone)]
pub struct JointChoice {
    /// Best on all queries.
    pub setting: Joint,
    /// Its mean target on all queries (optimistic).
    pub train_score: f64,
    /// Mean held-out target of the choice made on the other folds.
    pub cv_score: f64,
    /// Each fold's choice.
    pub fold_choices: Vec<Joint>,
    /// Each query's target under the choice of the folds it was held out of, in the
    /// queries' order (its mean is `cv_score`): what paired tests compare.
    pub held_out: Vec<f64>,
}

/// Result of [`tune_joint`].
#[derive(Debug, Clone)]
pub struct TunedJoint {
    /// Expansion, depth, fusion and reranking searched together.
    pub joint: JointChoice,
    /// Only the rerank depth and weight searched, the rest as the index has it: what the
    /// joint choice must beat held out to be worth changing more.
    pub fixed: JointChoice,
    /// Expansion, depth and fusion searched without reranking: the retrieval to keep when
    /// the reranker is not adopted (one chosen for a reranked head may not suit the
    /// fused list alone).
    pub unreranked: JointChoice,
    /// The index's retrieval without reranking (the same on every fold partition).
    pub none_score: f64,
    /// Each query's target under it, in the queries' order.
    pub none_per_query: Vec<f64>,
    /// Best train score at each expansion weight.
    pub per_expansion: Vec<(f32, f64)>,
    /// Best train score at each candidate depth.
    pub per_depth: Vec<(usize, f64)>,
}

impl TunedJoint {
    /// The joint choice against the rerank stage alone, query by query, both held out.
    pub fn joint_against_fixed(&self) -> Option<crate::eval::Paired> {
        crate::eval::stats::paired(&self.joint.held_out, &self.fixed.held_out)
    }

    /// `choice` (held out) against the index's retrieval without reranking.
    pub fn against_none(&self, choice: &JointChoice) -> Option<crate::eval::Paired> {
        crate::eval::stats::paired(&choice.held_out, &self.none_per_query)
    }
}

/// Grid search of the document-expansion weight (one collected set per weight), the
/// candidate depth (`depths`, each at most the depth the sets were collected at), the
/// fusion (`fusions`) and the rerank depth and weight ([`RERANK_DEPTHS`], 0.1 to 1; none
/// when `rerank` is false), cross-validated as one search over grouped folds.
/// `current` names the index's own expansion, depth and fusion (it must be on the grid).
///
/// Why jointly: the stages interact. The expansion weight and a deeper pool lift relevant
/// documents from below the top 100 into the fused list's middle, which the fused ranking
/// alone scores as noise (on SciFact train the fused nDCG@10 falls with the expansion
/// weight) while the reranked head gains from them; and the fusion that orders the whole
/// list best is not the one that hands the reranker the best head. Each query's score at
/// every grid point is computed once (in parallel), so that the folds only sum.
pub fn tune_joint(
    sets: &[(f32, Vec<JointFeatures>)],
    depths: &[usize],
    fusions: &[Fusion],
    rerank: bool,
    current: &Joint,
    target: Target,
    folds: usize,
) -> TunedJoint {
    use rayon::prelude::*;
    let mut rerank_grid = vec![(0usize, 0.0f32)];
    if rerank {
        for &d in RERANK_DEPTHS.iter().filter(|&&d| d > 0) {
            for w in 1..=10 {
                rerank_grid.push((d, w as f32 / 10.0));
            }
        }
    }
    let mut grid: Vec<Joint> = Vec::new();
    for (w, _) in sets {
        for &depth in depths {
            for fusion in fusions {
                for &(rerank_depth, rerank_weight) in &rerank_grid {
                    grid.push(Joint {
                        expansion: *w,
                        depth,
                        fusion: fusion.clone(),
                        rerank_depth,
                        rerank_weight,
                    });
                }
            }
        }
    }
    let n = sets.first().map_or(0, |s| s.1.len());
    let deepest = RERANK_DEPTHS.iter().copied().max().unwrap_or(0);
    // scores[q][g]: query q's target at grid point g.
    let scores: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|qi| {
            let mut row = Vec::with_capacity(grid.len());
            for (_, qs) in sets {
                let q = &qs[qi];
                for &depth in depths {
                    for fusion in fusions {
                        let fused = replay(q, depth, fusion);
                        let doc = |i: usize| q.cands[i].0.as_str();
                        let plain = score_order(target, fused.clone(), doc, &q.qid, &q.rels);
                        let head = q.head_scores(&fused, deepest);
                        for &(rd, rw) in &rerank_grid {
                            row.push(match &head {
                                Some(head) if rd > 0 => {
                                    let m = rd.min(head.len());
                                    let order = crate::engine::blend_rerank(
                                        &fused,
                                        &head[..m],
                                        rw * q.fade,
                                    );
                                    score_order(target, order, doc, &q.qid, &q.rels)
                                }
                                _ => plain,
                            });
                        }
                    }
                }
            }
            row
        })
        .collect();
    let mean = |idx: &[usize], g: usize| -> f64 {
        idx.iter().map(|&q| scores[q][g]).sum::<f64>() / idx.len().max(1) as f64
    };
    let rels: Vec<&HashMap<String, i32>> = sets
        .first()
        .map(|s| s.1.iter().map(|q| &q.rels).collect())
        .unwrap_or_default();
    let all: Vec<usize> = (0..n).collect();
    let splits = fold_split(&rels, folds);
    let choose = |points: &[usize]| -> JointChoice {
        let (cv_score, picks) = cross_validate_on(&splits, points, |idx, &g| mean(idx, g));
        let mut held_out = vec![0.0; n];
        if picks.len() == splits.len() {
            for ((held, _), &g) in splits.iter().zip(&picks) {
                for &q in held {
                    held_out[q] = scores[q][g];
                }
            }
        }
        let mut best: Option<(usize, f64)> = None;
        for &g in points {
            let s = mean(&all, g);
            if best.is_none_or(|b| s > b.1 + 1e-12) {
                best = Some((g, s));
            }
        }
        let (g, train_score) = best.unwrap_or((0, 0.0));
        JointChoice {
            setting: grid.get(g).cloned().unwrap_or_else(|| current.clone()),
            train_score,
            cv_score,
            fold_choices: picks.into_iter().map(|g| grid[g].clone()).collect(),
            held_out,
        }
    };
    let every: Vec<usize> = (0..grid.len()).collect();
    let at_current: Vec<usize> = every
        .iter()
        .copied()
        .filter(|&g| grid[g].same_retrieval(current))
        .collect();
    let none_at = at_current
        .iter()
        .copied()
        .find(|&g| grid[g].rerank_depth == 0);
    let none_score = none_at.map_or(0.0, |g| mean(&all, g));
    let none_per_query = none_at.map_or_else(Vec::new, |g| scores.iter().map(|r| r[g]).collect());
    let best_where = |keep: &dyn Fn(&Joint) -> bool| {
        every
            .iter()
            .filter(|&&g| keep(&grid[g]))
            .map(|&g| mean(&all, g))
            .fold(f64::NEG_INFINITY, f64::max)
    };
    TunedJoint {
        joint: choose(&every),
        fixed: choose(&at_current),
        unreranked: choose(
            &every
                .iter()
                .copied()
                .filter(|&g| grid[g].rerank_depth == 0)
                .collect::<Vec<_>>(),
        ),
        none_score,
        none_per_query,
        per_expansion: sets
            .iter()
            .map(|(w, _)| (*w, best_where(&|j: &Joint| j.expansion == *w)))
            .collect(),
        per_depth: depths
            .iter()
            .map(|&d| (d, best_where(&|j: &Joint| j.depth == d)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::Norm;

    #[test]
    fn blend_rerank_reorders_only_the_head() {
        let fused = [(1u64, 0.9f32), (2, 0.8), (3, 0.5), (4, 0.1)];
        let order = |v: Vec<(u64, f32)>| v.into_iter().map(|x| x.0).collect::<Vec<_>>();
        // Weight 1: the head follows the reranker; the tail keeps its place below.
        let b = crate::engine::blend_rerank(&fused, &[0.0, 1.0], 1.0);
        assert_eq!(order(b.clone()), vec![2, 1, 3, 4]);
        assert!(b[1].1 >= b[2].1, "head stays above the tail: {b:?}");
        // Weight 0: the fused order.
        assert_eq!(
            order(crate::engine::blend_rerank(&fused, &[0.0, 1.0], 0.0)),
            vec![1, 2, 3, 4]
        );
        // Equal weights: 1 gets 0.5·0 + 0.5·1, 2 gets 0.5·1 + 0.5·0, a tie broken by key.
        assert_eq!(
            order(crate::engine::blend_rerank(&fused, &[0.0, 1.0], 0.5)),
            vec![1, 2, 3, 4]
        );
        // No scores, or no candidates: nothing moves, nothing breaks.
        assert_eq!(
            order(crate::engine::blend_rerank(&fused, &[], 1.0)),
            vec![1, 2, 3, 4]
        );
        assert!(crate::engine::blend_rerank::<u64>(&[], &[1.0], 1.0).is_empty());
    }

    /// Query `n` with 12 candidates scored 12, 11, ... on both legs and ranked so (so any
    /// fusion keeps that order), the relevant document at position `at`, which the
    /// reranker scores `rel_score` and every other 0.5. `deep`: the relevant document is
    /// ranked 150th by both legs instead, inside the pool only from depth 151.
    fn joint_query(n: usize, at: usize, rel_score: f32, deep: bool) -> JointFeatures {
        let rel = format!("rel-{n}");
        let cands: Vec<(String, f32, f32)> = (0..12)
            .map(|i| {
                let d = if i == at {
                    rel.clone()
                } else {
                    format!("q{n}-other-{i}")
                };
                let s = 12.0 - i as f32;
                (d, s, s / 12.0)
            })
            .collect();
        let rank = |i: usize| if deep && i == at { 150 } else { i as u32 };
        JointFeatures {
            rels: HashMap::from([(rel.clone(), 1)]),
            qid: format!("q{n}"),
            lex_rank: (0..12).map(rank).collect(),
            den_rank: (0..12).map(rank).collect(),
            rerank: cands
                .iter()
                .map(|c| Some(if c.0 == rel { rel_score } else { 0.5 }))
                .collect(),
            cands,
            fade: 1.0,
        }
    }

    fn zscore() -> Fusion {
        Fusion::Weighted {
            norm: Norm::ZScore,
            weights: vec![0.5, 0.5],
        }
    }

    fn at_index(expansion: f32, depth: usize) -> Joint {
        Joint {
            expansion,
            depth,
            fusion: zscore(),
            rerank_depth: 0,
            rerank_weight: 0.0,
        }
    }

    #[test]
    fn replay_fuses_the_pool_a_depth_takes() {
        let q = joint_query(0, 3, 1.0, true);
        let names = |v: Vec<(u64, f32)>| -> Vec<String> {
            v.into_iter()
                .map(|(i, _)| q.cands[i as usize].0.clone())
                .collect()
        };
        let shallow = names(replay(&q, 100, &zscore()));
        assert_eq!(shallow.len(), 11);
        assert!(!shallow.contains(&"rel-0".to_string()));
        assert_eq!(shallow[0], "q0-other-0");
        let deep = names(replay(&q, 200, &zscore()));
        assert_eq!(deep.len(), 12);
        assert_eq!(deep[3], "rel-0");
        // Depth 2: the two best of each leg (the same two here).
        assert_eq!(
            names(replay(&q, 2, &zscore())),
            ["q0-other-0", "q0-other-1"]
        );
    }

    #[test]
    fn expansion_is_chosen_for_the_reranked_head_not_the_fused_list() {
        // Without expansion the relevant document is second and the reranker would push
        // it down; with weight 0.2 it is fourth, and the reranker lifts it to the top.
        let sets = vec![
            (
                0.0,
                (0..10).map(|n| joint_query(n, 1, 0.0, false)).collect(),
            ),
            (
                0.2,
                (0..10).map(|n| joint_query(n, 3, 1.0, false)).collect(),
            ),
        ];
        let current = at_index(0.0, 100);
        let t = tune_joint(
            &sets,
            &[100],
            &[zscore()],
            true,
            &current,
            Target::Ndcg10,
            5,
        );
        let j = &t.joint;
        assert_eq!(j.setting.expansion, 0.2);
        assert!(
            j.setting.rerank_depth >= 5 && j.setting.rerank_weight > 0.0,
            "{t:?}"
        );
        assert!((j.cv_score - 1.0).abs() < 1e-9, "{t:?}");
        assert_eq!(j.fold_choices.len(), 5);
        assert!(j.fold_choices.iter().all(|c| c.expansion == 0.2));
        // Second place is 1/log2(3) of first: the index's weight, reranked or not.
        let second = 1.0 / 3f64.log2();
        assert!((t.none_score - second).abs() < 1e-9, "{t:?}");
        assert!((t.fixed.cv_score - second).abs() < 1e-9, "{t:?}");
        assert!(t.fixed.setting.same_retrieval(&current));
        assert!((t.per_expansion[0].1 - second).abs() < 1e-9, "{t:?}");
        assert!((t.per_expansion[1].1 - 1.0).abs() < 1e-9);
        // Query by query, held out: every query is first under the joint choice and second
        // under the index's retrieval, so all ten are wins, and ten same-sign differences
        // leave the randomisation test only two assignments of 1,024 as extreme.
        assert_eq!(j.held_out, vec![1.0; 10]);
        assert!(t.fixed.held_out.iter().all(|x| (x - second).abs() < 1e-9));
        assert!(t.none_per_query.iter().all(|x| (x - second).abs() < 1e-9));
        let p = t.joint_against_fixed().unwrap();
        assert_eq!((p.wins, p.losses), (10, 0));
        assert!((p.delta.mean - (1.0 - second)).abs() < 1e-9);
        assert!(p.p_value < 0.01, "{p:?}");
        let none = t.against_none(&t.fixed).unwrap();
        assert_eq!((none.wins, none.losses), (0, 0));
        assert!(none.p_value > 0.99);
        // The fused list alone (no reranker) prefers no expansion.
        let f = tune_joint(
            &sets,
            &[100],
            &[zscore()],
            false,
            &current,
            Target::Ndcg10,
            5,
        );
        assert_eq!(f.joint.setting.expansion, 0.0);
        assert_eq!(f.joint.setting.rerank_depth, 0);
        assert!((f.joint.cv_score - second).abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn a_deeper_pool_is_chosen_when_it_brings_what_the_reranker_lifts() {
        // The relevant document is 150th in both legs: in the pool from depth 200 only,
        // then fourth of the fused list, and first once reranked.
        let sets = vec![(0.2, (0..10).map(|n| joint_query(n, 3, 1.0, true)).collect())];
        let current = at_index(0.2, 100);
        let t = tune_joint(
            &sets,
            &[100, 200],
            &[zscore()],
            true,
            &current,
            Target::Ndcg10,
            5,
        );
        assert_eq!(t.joint.setting.depth, 200, "{t:?}");
        assert!((t.joint.cv_score - 1.0).abs() < 1e-9);
        assert_eq!(t.per_depth, vec![(100, 0.0), (200, 1.0)]);
        assert_eq!(t.fixed.cv_score, 0.0);
        assert_eq!(t.none_score, 0.0);
    }
}
