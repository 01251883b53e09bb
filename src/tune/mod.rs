//! Automatic choice of pipeline settings from labelled queries (`pinpoint tune`), each
//! searched on a grid with grouped folds held out, so that the reported score is an honest
//! estimate of what the chosen setting does on queries it was not chosen on:
//! - the fusion on the fused list alone ([`tune_fusion`], a first look);
//! - then the document-expansion weight, the candidate depth, the fusion (the index's and
//!   the first stage's best five) and the rerank depth and weight searched together
//!   ([`tune_joint`]), replayed from one engine pass per expansion weight
//!   ([`collect_joint`], [`replay`]). Jointly, because the expansion weight and a deeper
//!   pool pay off only under the reranker, and the fusion that orders the whole list best
//!   is not the one that hands the reranker its best head (on SciFact train, the fused
//!   list's best fusion reranked scores 0.7480, the index's 0.7497);
//! - the adaptive cut-off, over what that pipeline hands over ([`tune_cutoff`]).
//!
//! [`run`] is the whole sequence and its [`TuneReport`]; `pinpoint tune` prints it and
//! stores its settings.

use std::collections::HashMap;

mod render;
mod run;
pub use run::{run, CutoffStage, JointStage, PrfCheck, TuneOptions, TuneReport, MIN_GAIN};

use crate::engine::{Engine, Granularity, Mode, Pipeline, SearchRequest};
use crate::error::Result;
use crate::eval::{metrics, Labelled};
use crate::fuse::{fuse, Fusion, Norm};

/// The metric to maximise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// nDCG@10.
    Ndcg10,
    /// RAGAS context precision@5.
    ContextPrecision5,
}

impl std::str::FromStr for Target {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ndcg@10" => Ok(Target::Ndcg10),
            "context_precision@5" => Ok(Target::ContextPrecision5),
            _ => Err(crate::error::Error::invalid(
                "metric",
                format!("{s:?} (use ndcg@10 or context_precision@5)"),
            )),
        }
    }
}

fn score(target: Target, ranked: &[String], rels: &HashMap<String, i32>) -> f64 {
    match target {
        Target::Ndcg10 => metrics::ndcg(ranked, rels, 10),
        Target::ContextPrecision5 => metrics::context_precision(ranked, rels, 5),
    }
}

/// `target` of an order over candidate indices: each index named by `docs`, the query's
/// own id left out (BEIR convention).
fn score_order<'a>(
    target: Target,
    order: Vec<(u64, f32)>,
    doc: impl Fn(usize) -> &'a str,
    qid: &str,
    rels: &HashMap<String, i32>,
) -> f64 {
    let ranked: Vec<String> = order
        .into_iter()
        .map(|(i, _)| doc(i as usize))
        .filter(|d| *d != qid)
        .map(str::to_string)
        .collect();
    score(target, &ranked, rels)
}

/// One query's candidates with both features.
pub struct QueryFeatures {
    /// Judgements.
    pub rels: HashMap<String, i32>,
    /// (doc, BM25, cosine).
    pub cands: Vec<(String, f32, f32)>,
    /// Query id (excluded from rankings, BEIR convention).
    pub qid: String,
}

/// Collects features of every train query (one engine pass).
pub fn collect(engine: &Engine, queries: &Labelled, depth: usize) -> Result<Vec<QueryFeatures>> {
    let p = Pipeline {
        select: None,
        multi_query: false,
        prf: None,
        rerank: None,
        ..Pipeline::default()
    };
    let mut out = Vec::with_capacity(queries.len());
    for (qid, text, rels) in queries {
        let req = SearchRequest {
            depth,
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: p.clone(),
            ..SearchRequest::new(text.as_str(), 10)
        };
        let o = engine.search_detailed(&req)?;
        out.push(QueryFeatures {
            rels: rels.clone(),
            cands: o.candidates,
            qid: qid.clone(),
        });
    }
    Ok(out)
}

/// The fusion grid searched.
pub fn grid() -> Vec<Fusion> {
    let mut g = Vec::new();
    for i in 0..=20 {
        let w = i as f32 / 20.0;
        g.push(Fusion::Weighted {
            norm: Norm::MinMax,
            weights: vec![1.0 - w, w],
        });
        g.push(Fusion::Weighted {
            norm: Norm::ZScore,
            weights: vec![1.0 - w, w],
        });
    }
    for k in [5.0, 10.0, 20.0, 40.0, 60.0, 100.0] {
        for i in 2..=8 {
            let w = i as f32 / 10.0;
            g.push(Fusion::Rrf {
                k,
                weights: vec![2.0 * (1.0 - w), 2.0 * w],
            });
        }
    }
    g
}

/// Scores keyed by their candidate's position: the id space in which tuning replays
/// [`fuse`] and [`crate::engine::blend_rerank`] over stored features.
fn by_position(scores: impl Iterator<Item = f32>) -> Vec<(u64, f32)> {
    scores.enumerate().map(|(i, s)| (i as u64, s)).collect()
}

/// Mean target of `fusion` over `queries`.
pub fn evaluate(features: &[&QueryFeatures], fusion: &Fusion, target: Target) -> f64 {
    let mut sum = 0.0;
    for q in features {
        let all = q
            .cands
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u64, c.1, c.2));
        let order = fuse_features(all, fusion);
        sum += score_order(target, order, |i| &q.cands[i].0, &q.qid, &q.rels);
    }
    sum / features.len().max(1) as f64
}

/// Result of a tuning run.
#[derive(Debug, Clone)]
pub struct Tuned {
    /// Best fusion on all queries.
    pub fusion: Fusion,
    /// Its mean target on all queries (optimistic: chosen on them).
    pub train_score: f64,
    /// Mean held-out target of the fusion chosen on the other folds (honest estimate).
    pub cv_score: f64,
    /// The fusion each fold chose.
    pub fold_choices: Vec<Fusion>,
    /// The five best settings on all queries.
    pub top: Vec<(Fusion, f64)>,
}

/// `(held-out, train)` query indices of each fold with both non-empty (at least 2 folds),
/// in the order [`cross_validate`] reports its choices.
///
/// Queries that share a relevant document are kept in one fold. Collections often hold
/// several questions about one document (SciFact: 538 of 809 training queries share one),
/// and a fold split by query order then scores a setting on documents it was chosen on.
/// That leak is small for a handful of fusion weights, but it is what let a learned query
/// adapter look +0.15 nDCG@10 better held out while it lost 0.05 on unseen documents
/// (docs/decisions.md). Groups go, largest first, to the smallest fold: deterministic and
/// balanced.
pub fn fold_split(rels: &[&HashMap<String, i32>], folds: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    let n = rels.len();
    let folds = folds.max(2);
    // Union-find over queries linked by a shared relevant document.
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, r) in rels.iter().enumerate() {
        let mut docs: Vec<&str> = r
            .iter()
            .filter(|(_, &g)| g > 0)
            .map(|(d, _)| d.as_str())
            .collect();
        docs.sort_unstable();
        for d in docs {
            match first.get(d) {
                Some(&j) => {
                    let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                    parent[a.max(b)] = a.min(b);
                }
                None => {
                    first.insert(d, i);
                }
            }
        }
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    // Largest first, ties by first query: the same split on every run.
    groups.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    let mut fold_of = vec![0usize; n];
    let mut sizes = vec![0usize; folds];
    for g in groups {
        let f = (0..folds).min_by_key(|&f| (sizes[f], f)).unwrap_or(0);
        sizes[f] += g.len();
        for i in g {
            fold_of[i] = f;
        }
    }
    (0..folds)
        .map(|f| (0..n).partition::<Vec<usize>, _>(|&i| fold_of[i] == f))
        .filter(|(held, train)| !held.is_empty() && !train.is_empty())
        .collect()
}

/// Cross-validation over a grid: for each fold of [`fold_split`], the grid point scoring
/// best on the other folds is scored on the held-out one. `eval(queries, point)` is the
/// mean target of a grid point on those queries. Returns the query-weighted mean held-out
/// score and each fold's choice.
pub fn cross_validate<T: Clone>(
    rels: &[&HashMap<String, i32>],
    folds: usize,
    grid: &[T],
    eval: impl Fn(&[usize], &T) -> f64,
) -> (f64, Vec<T>) {
    cross_validate_on(&fold_split(rels, folds), grid, eval)
}

/// [`cross_validate`] over folds already split ((held-out, training) query indices), so
/// a caller that needs each fold's queries too cuts them once. One choice per fold, in
/// order, whenever `grid` is not empty.
pub fn cross_validate_on<T: Clone>(
    splits: &[(Vec<usize>, Vec<usize>)],
    grid: &[T],
    eval: impl Fn(&[usize], &T) -> f64,
) -> (f64, Vec<T>) {
    let (mut sum, mut count, mut choices) = (0.0, 0usize, Vec::new());
    for (held, train) in splits {
        let (held, train) = (held.as_slice(), train.as_slice());
        let mut best: Option<(&T, f64)> = None;
        for g in grid {
            let s = eval(train, g);
            if best.is_none_or(|b| s > b.1 + 1e-12) {
                best = Some((g, s));
            }
        }
        if let Some((choice, _)) = best {
            sum += eval(held, choice) * held.len() as f64;
            count += held.len();
            choices.push(choice.clone());
        }
    }
    (sum / count.max(1) as f64, choices)
}

/// Grid search with `folds`-fold cross-validation.
pub fn tune_fusion(features: &[QueryFeatures], target: Target, folds: usize) -> Tuned {
    let grid = grid();
    let pick =
        |idx: &[usize]| -> Vec<&QueryFeatures> { idx.iter().map(|&i| &features[i]).collect() };
    let rels: Vec<&HashMap<String, i32>> = features.iter().map(|q| &q.rels).collect();
    let (cv_score, fold_choices) = cross_validate(&rels, folds, &grid, |idx, f| {
        evaluate(&pick(idx), f, target)
    });
    let all: Vec<&QueryFeatures> = features.iter().collect();
    let mut scored: Vec<(Fusion, f64)> = grid
        .iter()
        .map(|f| (f.clone(), evaluate(&all, f, target)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (fusion, train_score) = scored[0].clone();
    Tuned {
        fusion,
        train_score,
        cv_score,
        fold_choices,
        top: scored.into_iter().take(5).collect(),
    }
}

/// One query's fused ranking and the reranker's raw scores for its head.
pub struct RerankFeatures {
    /// Judgements.
    pub rels: HashMap<String, i32>,
    /// Query id (excluded from rankings, BEIR convention).
    pub qid: String,
    /// Fused ranking, best first: (doc, score).
    pub fused: Vec<(String, f32)>,
    /// Reranker scores of the first `scores.len()` fused documents.
    pub scores: Vec<f32>,
    /// The share of the reranker's weight this query gets ([`crate::LengthFade`]; 1 when
    /// the weight does not fade, 0 for a query too long to rerank).
    pub fade: f32,
}

/// Depths searched for a reranker (0: no reranking).
pub const RERANK_DEPTHS: [usize; 4] = [0, 5, 10, 20];

/// Runs every query through `pipeline` (whose reranker must reach the deepest of
/// [`RERANK_DEPTHS`]) and keeps the fused list of `depth` documents per leg with the
/// head's rerank scores (none when the pipeline has no reranker).
pub fn collect_rerank(
    engine: &Engine,
    queries: &Labelled,
    pipeline: &Pipeline,
    depth: usize,
) -> Result<Vec<RerankFeatures>> {
    let mut out = Vec::with_capacity(queries.len());
    for (qid, text, rels) in queries {
        let req = SearchRequest {
            depth,
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: Pipeline {
                select: None,
                multi_query: false,
                ..pipeline.clone()
            },
            ..SearchRequest::new(text.as_str(), 10)
        };
        let o = engine.search_detailed(&req)?;
        let scores = o.reranked.iter().map(|x| x.1).collect();
        let full = pipeline.rerank.as_ref().map_or(0.0, |r| r.weight);
        out.push(RerankFeatures {
            rels: rels.clone(),
            qid: qid.clone(),
            fused: o.fused,
            scores,
            fade: if full > 0.0 {
                o.rerank_weight / full
            } else {
                1.0
            },
        });
    }
    Ok(out)
}

/// Mean target when the top `depth` fused documents are reranked with `weight`, exactly
/// as the engine blends them ([`crate::engine::blend_rerank`]).
pub fn evaluate_rerank(qs: &[&RerankFeatures], depth: usize, weight: f32, target: Target) -> f64 {
    let mut sum = 0.0;
    for q in qs {
        let fused = by_position(q.fused.iter().map(|x| x.1));
        let n = depth.min(q.scores.len());
        let order = crate::engine::blend_rerank(&fused, &q.scores[..n], weight * q.fade);
        sum += score_order(target, order, |i| &q.fused[i].0, &q.qid, &q.rels);
    }
    sum / qs.len().max(1) as f64
}

/// Result of tuning a reranker's depth and weight.
#[derive(Debug, Clone)]
pub struct TunedRerank {
    /// Best (depth, weight) on all queries; depth 0 means no reranking wins.
    pub depth: usize,
    /// Its weight.
    pub weight: f32,
    /// Its mean target on all queries (optimistic).
    pub train_score: f64,
    /// Mean held-out target of the setting chosen on the other folds.
    pub cv_score: f64,
    /// Mean target without reranking.
    pub none_score: f64,
    /// Each fold's choice.
    pub fold_choices: Vec<(usize, f32)>,
}

/// Grid search of rerank depth ([`RERANK_DEPTHS`]) and weight (0.1 to 1 by 0.1) with
/// `folds`-fold cross-validation.
pub fn tune_rerank(qs: &[RerankFeatures], target: Target, folds: usize) -> TunedRerank {
    let mut grid = vec![(0usize, 0.0f32)];
    for &d in RERANK_DEPTHS.iter().filter(|&&d| d > 0) {
        for w in 1..=10 {
            grid.push((d, w as f32 / 10.0));
        }
    }
    let pick = |idx: &[usize]| -> Vec<&RerankFeatures> { idx.iter().map(|&i| &qs[i]).collect() };
    let eval = |idx: &[usize], g: &(usize, f32)| evaluate_rerank(&pick(idx), g.0, g.1, target);
    let rels: Vec<&HashMap<String, i32>> = qs.iter().map(|q| &q.rels).collect();
    let (cv_score, fold_choices) = cross_validate(&rels, folds, &grid, eval);
    let all: Vec<usize> = (0..qs.len()).collect();
    let mut best = (grid[0], eval(&all, &grid[0]));
    let none_score = best.1;
    for g in &grid[1..] {
        let s = eval(&all, g);
        if s > best.1 + 1e-12 {
            best = (*g, s);
        }
    }
    TunedRerank {
        depth: best.0 .0,
        weight: best.0 .1,
        train_score: best.1,
        cv_score,
        none_score,
        fold_choices,
    }
}

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
    /// The share of the reranker's weight this query gets ([`RerankFeatures::fade`]).
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

/// Fuses candidates scored on both legs, `(key, BM25, cosine)`, as the engine does with
/// full features: each leg ordered best first (ties by key), then [`fuse`].
fn fuse_features(cands: impl Iterator<Item = (u64, f32, f32)>, fusion: &Fusion) -> Vec<(u64, f32)> {
    let (mut by_lex, mut by_den) = (Vec::new(), Vec::new());
    for (k, l, d) in cands {
        by_lex.push((k, l));
        by_den.push((k, d));
    }
    for leg in [&mut by_lex, &mut by_den] {
        leg.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    fuse(&[&by_lex, &by_den], fusion)
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

/// Passages handed over per query by the pipeline tuned so far, with the cut-off off:
/// what the cut-off stage replays.
#[derive(Debug, Clone)]
pub struct CutoffFeatures {
    /// Judgements.
    pub rels: HashMap<String, i32>,
    /// The documents handed over (at most `k`), best first, the query's own id left out.
    pub docs: Vec<String>,
    /// Their scores.
    pub scores: Vec<f32>,
    /// The top score of the final ranking.
    pub top: f32,
    /// The score the relative cut-off measures against: the lowest of the final
    /// ranking's first [`crate::select::FLOOR_RANK`].
    pub floor: f32,
}

/// The settings the cut-off stage searches, as [`crate::select::SelectConfig`] holds
/// them. The similarity guard ([`crate::select::SelectConfig::min_similarity_share`]) is
/// not among them: it is a filter the replayed passages have been through already, and a
/// collection whose first candidates are all on its topic cannot say where a guard
/// against off-topic passages belongs (docs/decisions.md, "Similarity guard").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cutoff {
    /// [`crate::select::SelectConfig::min_relative`].
    pub min_relative: f32,
    /// [`crate::select::SelectConfig::max_gap`].
    pub max_gap: f32,
}

impl Cutoff {
    /// No cut-off.
    pub const OFF: Cutoff = Cutoff {
        min_relative: 0.0,
        max_gap: 1.0,
    };

    /// Writes the settings into `cfg`.
    pub fn apply(&self, cfg: &mut crate::select::SelectConfig) {
        cfg.min_relative = self.min_relative;
        cfg.max_gap = self.max_gap;
    }
}

impl std::fmt::Display for Cutoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min_relative {} max_gap {}",
            self.min_relative, self.max_gap
        )
    }
}

/// What a cut-off hands over, averaged over queries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Handed {
    /// Share of handed passages that are relevant (0 for a query handed nothing relevant).
    pub precision: f64,
    /// Relevant handed over the relevant that fit (`min(relevant, k)`).
    pub recall: f64,
    /// Passages handed.
    pub passages: f64,
}

/// The tuned adaptive cut-off.
#[derive(Debug, Clone)]
pub struct TunedCutoff {
    /// Chosen on all queries; [`Cutoff::OFF`] is off.
    pub setting: Cutoff,
    /// Its figures on all queries (optimistic).
    pub train: Handed,
    /// Held-out figures of the settings chosen on the other folds.
    pub held_out: Handed,
    /// Without a cut-off.
    pub off: Handed,
    /// Each fold's choice.
    pub fold_choices: Vec<Cutoff>,
}

/// Replays the cut-off `setting` over each query's handed passages.
pub fn evaluate_cutoff(qs: &[&CutoffFeatures], setting: Cutoff, k: usize) -> Handed {
    let mut cfg = crate::select::SelectConfig::default();
    setting.apply(&mut cfg);
    let mut h = Handed::default();
    for q in qs {
        let mut n = 0;
        let mut prev = q.top;
        for &score in q.scores.iter().take(k) {
            let rel = crate::select::relative(score, q.top, q.floor);
            if n > 0 && cfg.stops_before(rel, prev, score) {
                break;
            }
            n += 1;
            prev = score;
        }
        let hits = metrics::relevant_in(&q.docs, &q.rels, n);
        let fit = metrics::n_relevant(&q.rels).min(k);
        if n > 0 {
            h.precision += hits as f64 / n as f64;
        }
        if fit > 0 {
            h.recall += hits as f64 / fit as f64;
        }
        h.passages += n as f64;
    }
    let c = qs.len().max(1) as f64;
    Handed {
        precision: h.precision / c,
        recall: h.recall / c,
        passages: h.passages / c,
    }
}

/// Settings searched for the cut-off: relative thresholds and relative gaps.
pub fn cutoff_grid() -> Vec<Cutoff> {
    let mut g = Vec::new();
    for min_relative in [0.0f32, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] {
        for max_gap in [1.0f32, 0.3, 0.2, 0.15, 0.1, 0.05] {
            g.push(Cutoff {
                min_relative,
                max_gap,
            });
        }
    }
    g
}

/// The cut-off that hands over the most precise context while losing at most
/// `max_recall_loss` of the handed recall that no cut-off keeps (the mission: precision
/// without losing recall), chosen with `folds`-fold cross-validation; `k` passages.
///
/// `qs` are the passages the pipeline's similarity guard lets through, `unguarded` the same
/// queries' passages without it (the same slice when there is no guard): the allowance is
/// measured from no cut-off at all, so what the guard loses counts against it.
pub fn tune_cutoff(
    qs: &[CutoffFeatures],
    unguarded: &[CutoffFeatures],
    k: usize,
    max_recall_loss: f64,
    folds: usize,
) -> TunedCutoff {
    let grid = cutoff_grid();
    let pick = |idx: &[usize]| -> Vec<&CutoffFeatures> { idx.iter().map(|&i| &qs[i]).collect() };
    let pick_off =
        |idx: &[usize]| -> Vec<&CutoffFeatures> { idx.iter().map(|&i| &unguarded[i]).collect() };
    // Precision where the recall bound holds; an infeasible setting ranks below "off".
    let objective = |idx: &[usize], g: &Cutoff| {
        let off = evaluate_cutoff(&pick_off(idx), Cutoff::OFF, k);
        let h = evaluate_cutoff(&pick(idx), *g, k);
        if h.recall + 1e-12 >= off.recall - max_recall_loss {
            h.precision
        } else {
            h.precision - 10.0
        }
    };
    let rels: Vec<&HashMap<String, i32>> = qs.iter().map(|q| &q.rels).collect();
    let splits = fold_split(&rels, folds);
    let (_, fold_choices) = cross_validate_on(&splits, &grid, objective);
    // Held-out figures of each fold's choice.
    let mut held_out = Handed::default();
    for ((held, _), choice) in splits.iter().zip(&fold_choices) {
        let h = evaluate_cutoff(&pick(held), *choice, k);
        let w = held.len() as f64 / qs.len() as f64;
        held_out.precision += h.precision * w;
        held_out.recall += h.recall * w;
        held_out.passages += h.passages * w;
    }
    let all: Vec<usize> = (0..qs.len()).collect();
    let mut best = (grid[0], objective(&all, &grid[0]));
    for g in &grid[1..] {
        let s = objective(&all, g);
        if s > best.1 + 1e-12 {
            best = (*g, s);
        }
    }
    TunedCutoff {
        setting: best.0,
        train: evaluate_cutoff(&pick(&all), best.0, k),
        held_out,
        off: evaluate_cutoff(&pick_off(&all), Cutoff::OFF, k),
        fold_choices,
    }
}

/// Runs every query through `pipeline` with its cut-off off and records the `k`
/// passages handed over with the scores the cut-off sees.
pub fn collect_cutoff(
    engine: &Engine,
    queries: &Labelled,
    pipeline: &Pipeline,
    k: usize,
) -> Result<Vec<CutoffFeatures>> {
    let mut p = pipeline.clone();
    let Some(sel) = p.select.as_mut() else {
        return Ok(Vec::new());
    };
    // The similarity guard stays as the pipeline has it: the replay is of what the
    // relative threshold and gap would cut from what the guard lets through.
    Cutoff::OFF.apply(sel);
    sel.max_tokens = None;
    let mut out = Vec::with_capacity(queries.len());
    for (qid, text, rels) in queries {
        let req = SearchRequest {
            // As `eval` does: the ranking covers 100 documents at least.
            depth: p.depth.max(100),
            granularity: Granularity::Document,
            mode: Mode::Hybrid,
            pipeline: p.clone(),
            // As in `eval`: the query's own document (BEIR) is left out before selection.
            exclude: vec![qid.clone()],
            ..SearchRequest::new(text.as_str(), k)
        };
        let o = engine.search_detailed(&req)?;
        // The cut-off measures scores against the final ranking's first `FLOOR_RANK`.
        let seen = &o.ranked[..o.ranked.len().min(crate::select::FLOOR_RANK)];
        let top = seen.first().map(|x| x.1).unwrap_or(0.0);
        let floor = seen.iter().map(|x| x.1).fold(top, f32::min);
        let (docs, scores): (Vec<String>, Vec<f32>) =
            o.hits.iter().map(|h| (h.path.clone(), h.score)).unzip();
        out.push(CutoffFeatures {
            rels: rels.clone(),
            docs,
            scores,
            top,
            floor,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Query `q`, whose first passage is relevant with score `top`, then passages scored
    /// `rest` (relevant where `rel`), the floor at 0. Documents are the query's own.
    fn handed(q: usize, top: f32, rest: &[(f32, bool)]) -> CutoffFeatures {
        let mut docs = vec![format!("q{q}-r0")];
        let mut scores = vec![top];
        let mut rels = HashMap::from([(docs[0].clone(), 1)]);
        for (i, (s, r)) in rest.iter().enumerate() {
            let d = format!("q{q}-d{i}");
            if *r {
                rels.insert(d.clone(), 1);
            }
            docs.push(d);
            scores.push(*s);
        }
        CutoffFeatures {
            rels,
            docs,
            scores,
            top,
            floor: 0.0,
        }
    }

    fn setting(min_relative: f32, max_gap: f32) -> Cutoff {
        Cutoff {
            min_relative,
            max_gap,
        }
    }

    #[test]
    fn cutoff_replay_counts_what_is_handed_over() {
        // Relative shares 1, 0.9, 0.4, 0.3; the second passage is relevant.
        let q = handed(0, 1.0, &[(0.9, true), (0.4, false), (0.3, false)]);
        let off = evaluate_cutoff(&[&q], Cutoff::OFF, 5);
        assert_eq!(off.passages, 4.0);
        assert!((off.precision - 0.5).abs() < 1e-12);
        assert_eq!(off.recall, 1.0);
        // Keep shares of at least 0.5: two passages, both relevant.
        let cut = evaluate_cutoff(&[&q], setting(0.5, 1.0), 5);
        assert_eq!((cut.passages, cut.precision, cut.recall), (2.0, 1.0, 1.0));
        // A relative drop above 0.5 stops at 0.9 -> 0.4 as well.
        assert_eq!(evaluate_cutoff(&[&q], setting(0.0, 0.5), 5).passages, 2.0);
        // The first passage is always handed over, and k bounds the rest.
        assert_eq!(evaluate_cutoff(&[&q], setting(0.99, 1.0), 5).passages, 1.0);
        assert_eq!(evaluate_cutoff(&[&q], Cutoff::OFF, 3).passages, 3.0);
    }

    #[test]
    fn cutoff_tuning_buys_precision_only_within_the_recall_allowance() {
        // Clear gaps after the relevant passages: cutting at them loses nothing.
        let clean: Vec<CutoffFeatures> = (0..20)
            .map(|q| {
                handed(
                    q,
                    1.0,
                    &[(0.95, true), (0.3, false), (0.2, false), (0.1, false)],
                )
            })
            .collect();
        let t = tune_cutoff(&clean, &clean, 5, 0.01, 5);
        assert_ne!(t.setting, Cutoff::OFF);
        assert_eq!(t.train.recall, t.off.recall);
        assert!(t.train.precision > t.off.precision);
        assert!(t.held_out.precision > t.off.precision);
        // A relevant passage hides behind every gap: any cut loses recall, so none wins.
        let hidden: Vec<CutoffFeatures> = (0..20)
            .map(|q| {
                handed(
                    q,
                    1.0,
                    &[(0.3, false), (0.25, true), (0.2, false), (0.1, true)],
                )
            })
            .collect();
        let t = tune_cutoff(&hidden, &hidden, 5, 0.01, 5);
        assert_eq!(t.setting, Cutoff::OFF);
        assert_eq!(t.train, t.off);
        // What a guard before the cut-off lost counts against the allowance: with the
        // second relevant passage of one query in ten filtered out (recall 0.95 against 1),
        // no setting stays within 0.01 of no cut-off, not even the guard alone.
        let guarded: Vec<CutoffFeatures> = clean
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let mut q = q.clone();
                if i % 10 == 0 {
                    q.docs.remove(1);
                    q.scores.remove(1);
                }
                q
            })
            .collect();
        let t = tune_cutoff(&guarded, &clean, 5, 0.01, 5);
        assert_eq!(t.off.recall, 1.0);
        assert!(t.train.recall < t.off.recall - 0.01, "{t:?}");
        assert!(t.held_out.recall < t.off.recall - 0.01, "{t:?}");
    }

    #[test]
    fn folds_keep_queries_that_share_a_relevant_document_together() {
        // Queries 0, 3 and 7 share "a" (7 through "b" with 3); 5 has "c" judged 0, which
        // links nothing; the rest are alone.
        let judged: Vec<HashMap<String, i32>> = (0..10)
            .map(|i| {
                let mut r = HashMap::from([(format!("own{i}"), 1)]);
                match i {
                    0 => r.extend([("a".to_string(), 1)]),
                    3 => r.extend([("a".to_string(), 2), ("b".to_string(), 1)]),
                    7 => r.extend([("b".to_string(), 1)]),
                    5 | 6 => r.extend([("c".to_string(), 0)]),
                    _ => {}
                }
                r
            })
            .collect();
        let rels: Vec<&HashMap<String, i32>> = judged.iter().collect();
        let split = fold_split(&rels, 3);
        assert_eq!(split.len(), 3);
        let fold_of = |q: usize| split.iter().position(|(held, _)| held.contains(&q));
        // Every query is held out exactly once, and trained on in the other folds.
        for q in 0..10 {
            assert_eq!(split.iter().filter(|(h, _)| h.contains(&q)).count(), 1);
            assert_eq!(split.iter().filter(|(_, t)| t.contains(&q)).count(), 2);
        }
        assert_eq!(fold_of(0), fold_of(3));
        assert_eq!(fold_of(3), fold_of(7));
        assert_ne!(fold_of(5), fold_of(6), "a judgement of 0 links nothing");
        // Balanced: the group of 3 and seven singletons over 3 folds.
        let mut sizes: Vec<usize> = split.iter().map(|(h, _)| h.len()).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![3, 3, 4]);
        // The same split every time.
        assert_eq!(fold_split(&rels, 3), split);
    }

    /// 30 queries whose one relevant document is fused third (of 25); the reranker
    /// scores it `signal` and every other document by a fixed pattern.
    fn synthetic(signal: f32) -> Vec<RerankFeatures> {
        (0..30)
            .map(|q| {
                let fused: Vec<(String, f32)> = (0..25)
                    .map(|i| (format!("d{q}-{i}"), 1.0 - i as f32 / 25.0))
                    .collect();
                let scores = (0..20)
                    .map(|i| {
                        if i == 2 {
                            signal
                        } else {
                            0.5 + 0.01 * ((q + i) % 7) as f32
                        }
                    })
                    .collect();
                RerankFeatures {
                    rels: HashMap::from([(format!("d{q}-2"), 1)]),
                    qid: format!("q{q}"),
                    fused,
                    scores,
                    fade: 1.0,
                }
            })
            .collect()
    }

    #[test]
    fn tune_rerank_adopts_a_helpful_reranker_and_rejects_a_harmful_one() {
        let good = tune_rerank(&synthetic(2.0), Target::Ndcg10, 5);
        assert!(good.depth >= 5 && good.weight > 0.0, "{good:?}");
        assert!((good.train_score - 1.0).abs() < 1e-9, "{good:?}");
        assert!(good.cv_score > good.none_score + 0.1, "{good:?}");
        assert_eq!(good.fold_choices.len(), 5);
        // nDCG@10 with the relevant document third: 1 / log2(4) = 0.5.
        assert!((good.none_score - 0.5).abs() < 1e-9, "{good:?}");
        // Queries whose length fades the reranker out are scored as the engine ranks them:
        // not reranked, whatever the weight.
        let faded: Vec<RerankFeatures> = synthetic(2.0)
            .into_iter()
            .map(|q| RerankFeatures { fade: 0.0, ..q })
            .collect();
        let all: Vec<&RerankFeatures> = faded.iter().collect();
        assert!((evaluate_rerank(&all, 20, 1.0, Target::Ndcg10) - 0.5).abs() < 1e-9);

        let bad = tune_rerank(&synthetic(-2.0), Target::Ndcg10, 5);
        assert_eq!(bad.depth, 0, "{bad:?}");
        assert!((bad.cv_score - bad.none_score).abs() < 1e-9, "{bad:?}");
    }
}
