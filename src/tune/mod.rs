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
//!
//! Not for: measuring a fixed pipeline ([`crate::eval`]).

use std::collections::HashMap;

mod cutoff;
mod folds;
mod fusion;
mod joint;
mod render;
mod run;

pub use cutoff::{
    collect_cutoff, cutoff_grid, evaluate_cutoff, tune_cutoff, Cutoff, CutoffFeatures, Handed,
    TunedCutoff,
};
pub use folds::{cross_validate, cross_validate_on, fold_split};
pub use fusion::{collect, evaluate, grid, tune_fusion, QueryFeatures, Tuned};
pub use joint::{
    collect_joint, replay, tune_joint, Joint, JointChoice, JointFeatures, TunedJoint,
    CANDIDATE_DEPTHS, EXPANSION_WEIGHTS, RERANK_DEPTHS,
};
pub use run::{run, CutoffStage, JointStage, PrfCheck, TuneOptions, TuneReport, MIN_GAIN};

use crate::error::Result;
use crate::eval::metrics;

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
/// own id left out (BEIR convention). Public for the studies in `experiments/` that replay
/// other stages the same way.
pub fn score_order<'a>(
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
