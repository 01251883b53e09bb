//! The whole tuning run (`pinpoint tune`, or [`run`] from a program): each stage's search
//! in order, each adopted only when it holds out, gathered in a [`TuneReport`] whose
//! `settings` are what to store ([`crate::Engine::set_default_pipeline`]).
//!
//! Not for: printing the report (`render.rs`).

use crate::engine::{Engine, Granularity, Pipeline, RerankConfig, RerankKind, SearchRequest};
use crate::error::Result;
use crate::eval::{Labelled, Paired};
use crate::fuse::Fusion;

use super::{
    collect, collect_cutoff, collect_joint, score, tune_cutoff, tune_fusion, tune_joint, Cutoff,
    Joint, Target, Tuned, TunedCutoff, TunedJoint, CANDIDATE_DEPTHS, EXPANSION_WEIGHTS,
    RERANK_DEPTHS,
};

/// A held-out gain smaller than this is taken for noise, and the setting is not changed.
pub const MIN_GAIN: f64 = 0.002;

/// Passages the cut-off stage replays: what `query` hands over by default.
const HANDED: usize = crate::api::DEFAULT_K;

/// What [`run`] optimises, and how.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// The metric to maximise.
    pub target: Target,
    /// Cross-validation folds (grouped: [`super::fold_split`]).
    pub folds: usize,
    /// The rerankers to compare, each searched with the rest of the pipeline; the one
    /// that holds out best is adopted (the index's own, when it is among them, gives way
    /// only to a gain above [`MIN_GAIN`]). Empty: the index's own reranker.
    pub rerank: Vec<RerankKind>,
    /// The most handed recall the adaptive cut-off may give up for precision.
    pub max_recall_loss: f64,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            target: Target::Ndcg10,
            folds: 5,
            rerank: Vec::new(),
            max_recall_loss: 0.01,
        }
    }
}

/// The pseudo-relevance-feedback check: the index's pipeline without and with it.
#[derive(Debug, Clone)]
pub struct PrfCheck {
    /// Mean target without feedback.
    pub off: f64,
    /// With RM3-style feedback.
    pub on: f64,
    /// Whether it won by more than [`MIN_GAIN`].
    pub adopted: bool,
}

/// The joint stage: expansion weight, candidate depth, fusion and reranking.
#[derive(Debug, Clone)]
pub struct JointStage {
    /// Expansion weights searched (one engine pass each).
    pub weights: Vec<f32>,
    /// Candidate depths searched.
    pub depths: Vec<usize>,
    /// Fusions searched: the index's, then the fused-list stage's best.
    pub fusions: Vec<Fusion>,
    /// The reranker searched, if any.
    pub rerank: Option<RerankKind>,
    /// Whether every candidate was reranked (a reranker over stored codes, or none), so
    /// that more than the rerank stage could be searched.
    pub every_candidate: bool,
    /// The index's retrieval settings.
    pub current: Joint,
    /// What the search found.
    pub tuned: TunedJoint,
    /// Whether the joint choice replaced the index's retrieval settings.
    pub retrieval_changed: bool,
    /// Whether a reranker is in the settings.
    pub rerank_adopted: bool,
    /// The held-out target of what the stage settled on: the reranked choice when the
    /// reranker is adopted, else the retrieval kept without it.
    pub held_out: f64,
    /// The reranked choice against the best retrieval without reranking, query by query
    /// held out: what the reranker itself is worth (none without a reranker).
    pub rerank_worth: Option<Paired>,
}

/// The cut-off stage.
#[derive(Debug, Clone)]
pub struct CutoffStage {
    /// Passages replayed per query.
    pub k: usize,
    /// The similarity guard the passages went through ([`crate::select::SelectConfig::min_similarity_share`]).
    pub guard: f32,
    /// The most handed recall it could give up.
    pub max_recall_loss: f64,
    /// What the search found.
    pub tuned: TunedCutoff,
    /// Whether the cut-off is in the settings (else it is off).
    pub adopted: bool,
}

/// Everything a tuning run measured and chose.
#[derive(Debug, Clone)]
pub struct TuneReport {
    /// Labelled queries tuned on.
    pub queries: usize,
    /// Cross-validation folds asked for.
    pub folds: usize,
    /// The fusion on the fused list alone (a first look; the joint stage decides).
    pub fusion: Tuned,
    /// Pseudo-relevance feedback.
    pub prf: PrfCheck,
    /// Expansion, depth, fusion and reranking together, for the reranker adopted (or,
    /// when none is, the first one asked).
    pub joint: JointStage,
    /// The same search for each other reranker asked for, in the order asked.
    pub others: Vec<JointStage>,
    /// The cut-off, when the pipeline selects passages.
    pub cutoff: Option<CutoffStage>,
    /// The chosen pipeline.
    pub settings: Pipeline,
}

/// Tunes `engine`'s default pipeline on `labelled`: every stage searched on a grid with
/// grouped folds held out, and changed only when it holds out better by [`MIN_GAIN`].
/// `progress` hears what each engine pass is about to do (they take minutes on a large
/// collection). Stores nothing.
pub fn run(
    engine: &Engine,
    labelled: &Labelled,
    opts: &TuneOptions,
    progress: &dyn Fn(&str),
) -> Result<TuneReport> {
    let target = opts.target;
    progress(&format!(
        "collecting features of {} queries",
        labelled.len()
    ));
    let feats = collect(engine, labelled, 100)?;
    let fusion = tune_fusion(&feats, target, opts.folds);

    // Pseudo-relevance feedback, on the index's pipeline.
    let base = engine.default_pipeline();
    let with_prf = Pipeline {
        prf: Some(crate::expand::PrfConfig::default()),
        ..base.clone()
    };
    let mut means = [0.0; 2];
    for (mean, p) in means.iter_mut().zip([&base, &with_prf]) {
        let mut sum = 0.0;
        for (qid, text, rels) in labelled {
            let req = SearchRequest {
                granularity: Granularity::Document,
                ..SearchRequest::new(text.as_str(), 10).pipeline(Pipeline {
                    select: None,
                    ..p.clone()
                })
            };
            let ranked: Vec<String> = engine
                .search_detailed(&req)?
                .ranked
                .into_iter()
                .map(|x| x.0)
                .filter(|d| d != qid)
                .collect();
            sum += score(target, &ranked, rels);
        }
        *mean = sum / labelled.len().max(1) as f64;
    }
    let prf = PrfCheck {
        off: means[0],
        on: means[1],
        adopted: means[1] > means[0] + MIN_GAIN,
    };
    let mut chosen = if prf.adopted { with_prf } else { base };

    let (joint, others) = joint_stages(engine, labelled, opts, &fusion, &mut chosen, progress)?;

    let cutoff = if chosen.select.is_some() {
        progress(&format!(
            "replaying the cut-off over {} queries",
            labelled.len()
        ));
        let cf = collect_cutoff(engine, labelled, &chosen, HANDED)?;
        let guard = chosen
            .select
            .as_ref()
            .map_or(0.0, |s| s.min_similarity_share);
        // The allowance is measured from no cut-off and no guard.
        let unguarded = if guard > 0.0 {
            let mut p = chosen.clone();
            if let Some(s) = p.select.as_mut() {
                s.min_similarity_share = 0.0;
            }
            collect_cutoff(engine, labelled, &p, HANDED)?
        } else {
            cf.clone()
        };
        let c = tune_cutoff(&cf, &unguarded, HANDED, opts.max_recall_loss, opts.folds);
        // Adopted when it holds out: more precise, within the recall allowance.
        let adopted = c.setting != Cutoff::OFF
            && c.held_out.precision > c.off.precision + MIN_GAIN
            && c.held_out.recall >= c.off.recall - opts.max_recall_loss;
        if let Some(sel) = chosen.select.as_mut() {
            if adopted { c.setting } else { Cutoff::OFF }.apply(sel);
        }
        Some(CutoffStage {
            k: HANDED,
            guard,
            max_recall_loss: opts.max_recall_loss,
            tuned: c,
            adopted,
        })
    } else {
        None
    };
    Ok(TuneReport {
        queries: labelled.len(),
        folds: opts.folds,
        fusion,
        prf,
        joint,
        others,
        cutoff,
        settings: chosen,
    })
}

/// Each reranker asked for (else the pipeline's own) searched with the rest
/// ([`joint_stage`]); the one that holds out best is written into `chosen` and returned
/// first, the others after it in the order asked.
fn joint_stages(
    engine: &Engine,
    labelled: &Labelled,
    opts: &TuneOptions,
    fusion: &Tuned,
    chosen: &mut Pipeline,
    progress: &dyn Fn(&str),
) -> Result<(JointStage, Vec<JointStage>)> {
    let own = chosen.rerank.as_ref().map(|r| r.kind.clone());
    let kinds: Vec<Option<RerankKind>> = if opts.rerank.is_empty() {
        vec![own.clone()]
    } else {
        // Each once, in the order first asked.
        let mut kinds = Vec::new();
        for k in &opts.rerank {
            if !kinds.contains(&Some(k.clone())) {
                kinds.push(Some(k.clone()));
            }
        }
        kinds
    };
    let mut stages = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let mut p = chosen.clone();
        let stage = joint_stage(engine, labelled, kind, opts, fusion, &mut p, progress)?;
        stages.push((stage, p));
    }
    let held_out: Vec<f64> = stages.iter().map(|(s, _)| s.held_out).collect();
    let best = pick_stage(&held_out, stages.iter().position(|(s, _)| s.rerank == own));
    let (stage, p) = stages.remove(best);
    *chosen = p;
    Ok((stage, stages.into_iter().map(|(s, _)| s).collect()))
}

/// What one reranker's search settles on: the setting, its held-out score, and whether the
/// reranker is in it. Each change must hold out better than what it replaces by more than
/// [`MIN_GAIN`]:
/// - without reranking, the retrieval searched alone replaces the index's;
/// - with it, the joint choice replaces the rerank stage alone (the index's retrieval);
/// - and the reranker must beat the best without it, so that its cost at query time buys
///   something a retrieval change alone would not.
///
/// Also returns the reranked choice against the best without reranking, query by query
/// held out: what the reranker itself is worth.
fn settle(
    tuned: &TunedJoint,
    current: &Joint,
    reranker: bool,
) -> (Joint, f64, bool, Option<Paired>) {
    let (plain, plain_score, plain_queries) = if tuned.unreranked.cv_score
        > tuned.none_score + MIN_GAIN
        && !tuned.unreranked.setting.same_retrieval(current)
    {
        (
            &tuned.unreranked.setting,
            tuned.unreranked.cv_score,
            &tuned.unreranked.held_out,
        )
    } else {
        (current, tuned.none_score, &tuned.none_per_query)
    };
    let reranked = if tuned.joint.cv_score > tuned.fixed.cv_score + MIN_GAIN
        && !tuned.joint.setting.same_retrieval(current)
    {
        &tuned.joint
    } else {
        &tuned.fixed
    };
    let worth = reranker
        .then(|| crate::eval::stats::paired(&reranked.held_out, plain_queries))
        .flatten();
    if reranker && reranked.setting.rerank_depth > 0 && reranked.cv_score > plain_score + MIN_GAIN {
        (reranked.setting.clone(), reranked.cv_score, true, worth)
    } else {
        (plain.clone(), plain_score, false, worth)
    }
}

/// Which of several rerankers' searches to adopt, from their held-out scores: the best
/// (the first of equals), except that the index's own (`own`) stays unless another holds
/// out better by more than [`MIN_GAIN`]: switching rerankers is a change like any other.
fn pick_stage(held_out: &[f64], own: Option<usize>) -> usize {
    let mut best = 0;
    for (i, &x) in held_out.iter().enumerate() {
        if x > held_out[best] + 1e-12 {
            best = i;
        }
    }
    match own {
        Some(o) if o < held_out.len() && held_out[best] <= held_out[o] + MIN_GAIN => o,
        _ => best,
    }
}

/// One reranker (or none) searched together with the expansion weight, the candidate depth
/// and the fusion ([`tune_joint`]); the choice is written into `chosen`.
fn joint_stage(
    engine: &Engine,
    labelled: &Labelled,
    rerank: Option<RerankKind>,
    opts: &TuneOptions,
    fusion: &Tuned,
    chosen: &mut Pipeline,
    progress: &dyn Fn(&str),
) -> Result<JointStage> {
    let expands = engine.manifest().neighbours > 0 && engine.lexical().has_near();
    // A reranker over stored codes scores every candidate in milliseconds, so one pass per
    // expansion weight replays everything else; one that encodes passages at query time
    // is run once, on the head of the index's own retrieval.
    let every_candidate = match &rerank {
        None => true,
        Some(RerankKind::Tokens) => engine.manifest().token_codes,
        Some(_) => false,
    };
    let current = Joint {
        expansion: chosen.expansion,
        depth: chosen.depth,
        fusion: chosen.fusion.clone(),
        rerank_depth: 0,
        rerank_weight: 0.0,
    };
    let mut weights = vec![current.expansion];
    let mut depths = vec![current.depth];
    let mut fusions = vec![current.fusion.clone()];
    if every_candidate {
        if expands {
            weights.extend(EXPANSION_WEIGHTS);
        }
        depths.extend(CANDIDATE_DEPTHS);
        for (f, _) in &fusion.top {
            if !fusions.contains(f) {
                fusions.push(f.clone());
            }
        }
    }
    weights.sort_by(f32::total_cmp);
    weights.dedup();
    depths.sort_unstable();
    depths.dedup();
    let deepest = RERANK_DEPTHS.iter().copied().max().unwrap_or(20);
    let probe = Pipeline {
        rerank: rerank.clone().map(|kind| RerankConfig {
            kind,
            depth: if every_candidate { usize::MAX } else { deepest },
            weight: 1.0,
        }),
        ..chosen.clone()
    };
    let collect_depth = depths.iter().copied().max().unwrap_or(current.depth);
    let mut sets = Vec::with_capacity(weights.len());
    for &w in &weights {
        progress(&format!(
            "ranking {} queries at depth {collect_depth}, expansion weight {w}{}",
            labelled.len(),
            match (&rerank, every_candidate) {
                (None, _) => "",
                (Some(_), true) => ", every candidate reranked",
                (Some(_), false) => ", the head reranked",
            }
        ));
        let p = Pipeline {
            expansion: w,
            ..probe.clone()
        };
        sets.push((w, collect_joint(engine, labelled, &p, collect_depth)?));
    }
    let tuned = tune_joint(
        &sets,
        &depths,
        &fusions,
        rerank.is_some(),
        &current,
        opts.target,
        opts.folds,
    );
    let (pick, held_out, rerank_adopted, rerank_worth) = settle(&tuned, &current, rerank.is_some());
    let pick = &pick;
    chosen.expansion = pick.expansion;
    chosen.depth = pick.depth;
    chosen.fusion = pick.fusion.clone();
    chosen.rerank = match (&rerank, rerank_adopted) {
        (Some(kind), true) => Some(RerankConfig {
            kind: kind.clone(),
            depth: pick.rerank_depth,
            weight: pick.rerank_weight,
        }),
        _ => None,
    };
    let retrieval_changed = !pick.same_retrieval(&current);
    Ok(JointStage {
        weights,
        depths,
        fusions,
        rerank,
        every_candidate,
        current,
        tuned,
        retrieval_changed,
        rerank_adopted,
        held_out,
        rerank_worth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::Norm;
    use crate::tune::JointChoice;

    fn joint(expansion: f32, rerank_depth: usize) -> Joint {
        Joint {
            expansion,
            depth: 100,
            fusion: Fusion::Weighted {
                norm: Norm::ZScore,
                weights: vec![0.5, 0.5],
            },
            rerank_depth,
            rerank_weight: if rerank_depth > 0 { 0.5 } else { 0.0 },
        }
    }

    /// Four queries held out, each scoring `cv_score`.
    fn choice(setting: Joint, cv_score: f64) -> JointChoice {
        JointChoice {
            setting,
            train_score: cv_score,
            cv_score,
            fold_choices: Vec::new(),
            held_out: vec![cv_score; 4],
        }
    }

    /// The index's retrieval at expansion 0.2 scores `none` without reranking and `fixed`
    /// with it; retrieval at expansion 0.1 scores `unreranked` alone and `joint` reranked.
    fn tuned(none: f64, fixed: f64, unreranked: f64, joint: f64) -> TunedJoint {
        TunedJoint {
            joint: choice(self::joint(0.1, 20), joint),
            fixed: choice(self::joint(0.2, 20), fixed),
            unreranked: choice(self::joint(0.1, 0), unreranked),
            none_score: none,
            none_per_query: vec![none; 4],
            per_expansion: Vec::new(),
            per_depth: Vec::new(),
        }
    }

    #[test]
    fn a_reranker_must_beat_the_best_retrieval_without_it() {
        let current = joint(0.2, 0);
        // The joint choice gains 0.010, but the same retrieval change alone gains 0.009:
        // the reranker adds 0.001, noise, so the retrieval changes and reranking is off.
        let (pick, held, adopted, worth) =
            settle(&tuned(0.700, 0.701, 0.709, 0.710), &current, true);
        assert!(!adopted);
        // Worth is measured against the retrieval change alone, not the index's retrieval.
        let worth = worth.expect("a reranker was searched");
        assert!((worth.delta.mean - 0.001).abs() < 1e-9, "{worth:?}");
        assert_eq!((worth.wins, worth.losses), (4, 0));
        assert_eq!((pick.expansion, pick.rerank_depth), (0.1, 0));
        assert!((held - 0.709).abs() < 1e-12);
        // It adds 0.005 over the best without it: adopted, with the joint retrieval.
        let (pick, held, adopted, _) = settle(&tuned(0.700, 0.701, 0.709, 0.714), &current, true);
        assert!(adopted);
        assert_eq!((pick.expansion, pick.rerank_depth), (0.1, 20));
        assert!((held - 0.714).abs() < 1e-12);
        // Nothing beats the index's retrieval without reranking: the rerank stage alone
        // must beat that, and here does, on the index's own retrieval.
        let (pick, _, adopted, _) = settle(&tuned(0.700, 0.705, 0.701, 0.706), &current, true);
        assert!(adopted);
        assert_eq!((pick.expansion, pick.rerank_depth), (0.2, 20));
        // No reranker: only the retrieval search counts.
        let (pick, held, adopted, worth) = settle(&tuned(0.700, 0.0, 0.701, 0.0), &current, false);
        assert!(!adopted && worth.is_none());
        assert_eq!(pick, current);
        assert!((held - 0.700).abs() < 1e-12);
    }

    #[test]
    fn the_best_reranker_wins_but_the_index_own_keeps_its_place_within_noise() {
        // No own reranker among them: the best, the first of equals.
        assert_eq!(pick_stage(&[0.70, 0.72, 0.71], None), 1);
        assert_eq!(pick_stage(&[0.72, 0.72], None), 0);
        // The own (index 0) within MIN_GAIN of the best stays.
        assert_eq!(pick_stage(&[0.700, 0.7015], Some(0)), 0);
        // Beaten by more than MIN_GAIN, it gives way.
        assert_eq!(pick_stage(&[0.700, 0.703], Some(0)), 1);
        // The own that is itself best stays, wherever it was listed.
        assert_eq!(pick_stage(&[0.69, 0.71, 0.70], Some(1)), 1);
        assert_eq!(pick_stage(&[0.5], Some(0)), 0);
    }
}
