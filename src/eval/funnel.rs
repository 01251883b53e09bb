//! Where each relevant document was lost: its rank in each stage, the class of the loss,
//! and the counts `eval` prints.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::metrics;
use crate::engine::SearchOutput;

/// Where one relevant document stood in each stage (1-based ranks; `None`: not in the
/// stage's top 100).
#[derive(Debug, Clone, Serialize)]
pub struct FunnelEntry {
    /// Document id.
    pub doc: String,
    /// Rank in the lexical leg.
    pub lexical: Option<usize>,
    /// Rank in the dense leg.
    pub dense: Option<usize>,
    /// Rank after fusion.
    pub fused: Option<usize>,
    /// Rank in the final list (of the funnel's mode).
    pub final_rank: Option<usize>,
}

impl FunnelEntry {
    /// The loss class of this document.
    pub fn class(&self) -> LossClass {
        match self.final_rank {
            Some(1) => LossClass::First,
            Some(r) if r <= 10 => LossClass::Ranked2To10,
            _ if self.lexical.is_none() && self.dense.is_none() => LossClass::MissedByBothLegs,
            _ => LossClass::FusedBelow10,
        }
    }
}

/// Where a relevant document was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossClass {
    /// Not lost: ranked first.
    First,
    /// In the top 10 but not first.
    Ranked2To10,
    /// Found by at least one leg, but ranked below 10 after fusion and reranking.
    FusedBelow10,
    /// In neither leg's top 100.
    MissedByBothLegs,
}

impl std::fmt::Display for LossClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossClass::First => "ranked 1",
            LossClass::Ranked2To10 => "ranked 2-10",
            LossClass::FusedBelow10 => "found by a leg but fused below 10",
            LossClass::MissedByBothLegs => "missed by both legs",
        })
    }
}

/// One query's funnel.
#[derive(Debug, Clone, Serialize)]
pub struct QueryFunnel {
    /// Query id.
    pub id: String,
    /// Query text.
    pub text: String,
    /// nDCG@10 of the final list.
    pub ndcg10: f64,
    /// Each relevant document's ranks.
    pub relevant: Vec<FunnelEntry>,
    /// Top 3 final documents: (id, title).
    pub top: Vec<(String, String)>,
}

pub(super) fn rank_of(list: &[(String, f32)], id: &str) -> Option<usize> {
    list.iter().position(|(d, _)| d == id).map(|i| i + 1)
}

pub(super) fn query_funnel(
    qid: &str,
    text: &str,
    rels: &HashMap<String, i32>,
    out: &SearchOutput,
    ranked: &[String],
    titles: &HashMap<String, String>,
) -> QueryFunnel {
    let mut relevant: Vec<FunnelEntry> = rels
        .iter()
        .filter(|(_, &g)| g > 0)
        .map(|(d, _)| FunnelEntry {
            doc: d.clone(),
            lexical: rank_of(&out.lexical, d),
            dense: rank_of(&out.dense, d),
            fused: rank_of(&out.fused, d),
            final_rank: ranked.iter().position(|x| x == d).map(|i| i + 1),
        })
        .collect();
    relevant.sort_by(|a, b| a.doc.cmp(&b.doc));
    QueryFunnel {
        id: qid.to_string(),
        text: text.to_string(),
        ndcg10: metrics::ndcg(ranked, rels, 10),
        relevant,
        top: ranked
            .iter()
            .take(3)
            .map(|d| (d.clone(), titles.get(d).cloned().unwrap_or_default()))
            .collect(),
    }
}

/// Counts of loss classes over all relevant documents of a funnel.
pub fn loss_counts(funnel: &[QueryFunnel]) -> BTreeMap<LossClass, usize> {
    let mut c = BTreeMap::new();
    for q in funnel {
        for r in &q.relevant {
            *c.entry(r.class()).or_insert(0) += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_classes() {
        let e = |l, d, fu, fi| FunnelEntry {
            doc: "x".into(),
            lexical: l,
            dense: d,
            fused: fu,
            final_rank: fi,
        };
        assert_eq!(e(Some(1), None, Some(1), Some(1)).class(), LossClass::First);
        assert_eq!(
            e(Some(5), Some(2), Some(3), Some(3)).class(),
            LossClass::Ranked2To10
        );
        assert_eq!(
            e(None, Some(40), Some(60), Some(60)).class(),
            LossClass::FusedBelow10
        );
        assert_eq!(
            e(None, None, None, None).class(),
            LossClass::MissedByBothLegs
        );
    }
}
