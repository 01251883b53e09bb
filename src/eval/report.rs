//! What an evaluation reports per mode: the metrics ([`ModeMetrics`]) and the report
//! with its intervals and paired tests ([`Report`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::metrics;
use super::stats::{Interval, Paired};

/// The metrics of one mode, averaged over queries. Key names are a contract.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ModeMetrics {
    /// nDCG@10.
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
    /// Recall@10.
    #[serde(rename = "recall@10")]
    pub recall10: f64,
    /// Recall@100.
    #[serde(rename = "recall@100")]
    pub recall100: f64,
    /// MRR@10.
    #[serde(rename = "mrr@10")]
    pub mrr10: f64,
    /// MAP@100.
    #[serde(rename = "map@100")]
    pub map100: f64,
    /// Precision@5.
    #[serde(rename = "p@5")]
    pub p5: f64,
    /// RAGAS context precision@5.
    #[serde(rename = "context_precision@5")]
    pub context_precision5: f64,
    /// Share of the (at most 5) passages handed over that are relevant: what the adaptive
    /// cut-off buys, which RAGAS context precision does not see (it ignores trailing noise).
    #[serde(rename = "passage_precision@5", default)]
    pub passage_precision5: f64,
    /// Passages handed over, of at most 5.
    #[serde(rename = "passages@5", default)]
    pub passages5: f64,
    /// Share of queries given no passage because the engine abstained (the question shares
    /// no word with the index and is close to no passage). On a collection whose every
    /// query has an answer, each abstention is a loss.
    #[serde(default)]
    pub abstained: f64,
    /// Queries per second (single thread, end to end through the engine).
    pub qps: f64,
}

/// The metrics `pinpoint eval` gives intervals and paired tests for: the ranking's quality,
/// its recall, and the precision of what is handed over.
pub const TESTED_METRICS: [&str; 3] = ["ndcg@10", "recall@100", "context_precision@5"];

impl ModeMetrics {
    /// The metric of the given report key (`"ndcg@10"`, `"recall@100"`, ...).
    pub fn get(&self, key: &str) -> Option<f64> {
        Some(match key {
            "ndcg@10" => self.ndcg10,
            "recall@10" => self.recall10,
            "recall@100" => self.recall100,
            "mrr@10" => self.mrr10,
            "map@100" => self.map100,
            "p@5" => self.p5,
            "context_precision@5" => self.context_precision5,
            "passage_precision@5" => self.passage_precision5,
            "passages@5" => self.passages5,
            "abstained" => self.abstained,
            "qps" => self.qps,
            _ => return None,
        })
    }

    pub(super) fn add(
        &mut self,
        ranked: &[String],
        selected: &[String],
        rels: &HashMap<String, i32>,
    ) {
        use metrics::*;
        self.ndcg10 += ndcg(ranked, rels, 10);
        self.recall10 += recall(ranked, rels, 10);
        self.recall100 += recall(ranked, rels, 100);
        self.mrr10 += mrr(ranked, rels, 10);
        self.map100 += average_precision(ranked, rels, 100);
        self.p5 += precision(ranked, rels, 5);
        self.context_precision5 += context_precision(selected, rels, 5);
        let handed = &selected[..selected.len().min(5)];
        if !handed.is_empty() {
            self.passage_precision5 += precision(handed, rels, handed.len());
        }
        self.passages5 += handed.len() as f64;
    }

    /// Every averaged metric (all but `qps`), for summing and scaling in one place.
    fn averaged_mut(&mut self) -> [&mut f64; 10] {
        [
            &mut self.ndcg10,
            &mut self.recall10,
            &mut self.recall100,
            &mut self.mrr10,
            &mut self.map100,
            &mut self.p5,
            &mut self.context_precision5,
            &mut self.passage_precision5,
            &mut self.passages5,
            &mut self.abstained,
        ]
    }

    pub(super) fn merge(&mut self, one: &ModeMetrics) {
        let mut one = one.clone();
        for (x, y) in self.averaged_mut().into_iter().zip(one.averaged_mut()) {
            *x += *y;
        }
    }

    pub(super) fn scale(&mut self, n: usize) {
        let n = n.max(1) as f64;
        for x in self.averaged_mut() {
            *x /= n;
        }
    }
}

/// The evaluation report; `--json` prints exactly this object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Dataset name.
    pub dataset: String,
    /// Split.
    pub split: String,
    /// Number of evaluated queries.
    pub queries: usize,
    /// Metrics per mode, in the order asked.
    pub modes: BTreeMap<String, ModeMetrics>,
    /// 95% bootstrap interval of each mode's mean, per metric of [`TESTED_METRICS`]: the
    /// range another sample of such queries would likely give.
    #[serde(default)]
    pub intervals: BTreeMap<String, BTreeMap<String, Interval>>,
    /// The mode every other one is compared with, query by query.
    #[serde(default)]
    pub baseline: Option<String>,
    /// Each other mode against the baseline, per metric of [`TESTED_METRICS`].
    #[serde(default)]
    pub paired: BTreeMap<String, BTreeMap<String, Paired>>,
    /// What was ranked: `document` (BEIR: each document by its best chunk) or `chunk`
    /// (what `query` runs; files judged by path).
    #[serde(default)]
    pub granularity: String,
}
