//! Retrieval evaluation: BEIR loader, metrics, per-query funnel, failure analysis.
//!
//! The evaluator drives the public [`Engine`] API like any user: it indexes a BEIR corpus
//! through `add_document` (cached under the index root, keyed by corpus, model and chunking)
//! and ranks *documents* by their best chunk (max-pool), as BEIR's document qrels require.
//! Metrics follow trec_eval/pytrec_eval (linear gain nDCG) and RAGAS (context precision).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::{
    Engine, EngineConfig, Granularity, Mode, Pipeline, RerankConfig, RerankKind, SearchOutput,
    SearchRequest,
};
use crate::error::{Error, IoContext, Result};
use crate::models::hex;

mod render;
pub mod stats;

pub use render::RenderOptions;
pub use stats::{Interval, Paired};

/// Graded relevance judgements: query id -> document id -> grade (> 0 is relevant).
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// A BEIR-format collection.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Name (the folder name).
    pub name: String,
    /// Documents: (id, title, text), in file order.
    pub corpus: Vec<(String, String, String)>,
    /// Queries by id.
    pub queries: HashMap<String, String>,
    /// Judgements of the loaded split.
    pub qrels: Qrels,
    /// The split name.
    pub split: String,
    /// sha256 of the corpus file, for the index cache key.
    pub corpus_hash: String,
}

#[derive(Deserialize)]
struct CorpusLine {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct QueryLine {
    #[serde(rename = "_id")]
    id: serde_json::Value,
    text: String,
}

fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Line `n` of a BEIR JSON-lines file and its `_id` as a string; errors name the file and line.
fn parse_line<T: serde::de::DeserializeOwned>(
    path: &Path,
    n: usize,
    line: &str,
    id: impl Fn(&T) -> &serde_json::Value,
) -> Result<(String, T)> {
    let parse_error = |what: String| Error::Parse {
        path: path.to_path_buf(),
        line: n,
        what,
    };
    let value: T = serde_json::from_str(line).map_err(|e| parse_error(e.to_string()))?;
    let id =
        id_string(id(&value)).ok_or_else(|| parse_error("_id is not a string or number".into()))?;
    Ok((id, value))
}

fn lines(path: &Path) -> Result<impl Iterator<Item = (usize, Result<String>)>> {
    let f = std::fs::File::open(path).at(path)?;
    let p = path.to_path_buf();
    Ok(BufReader::new(f)
        .lines()
        .enumerate()
        .map(move |(i, l)| (i + 1, l.map_err(|e| Error::io(&p, e)))))
}

impl Dataset {
    /// Loads `dir/corpus.jsonl`, `dir/queries.jsonl` and `dir/qrels/<split>.tsv`.
    pub fn load_beir(dir: &Path, split: &str) -> Result<Dataset> {
        let corpus_path = dir.join("corpus.jsonl");
        let queries_path = dir.join("queries.jsonl");
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        let mut ds = Dataset {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| "dataset".into()),
            split: split.to_string(),
            ..Default::default()
        };
        let mut h = Sha256::new();
        for (n, line) in lines(&corpus_path)? {
            let line = line?;
            h.update(line.as_bytes());
            h.update(b"\n");
            if line.trim().is_empty() {
                continue;
            }
            let (id, c) = parse_line(&corpus_path, n, &line, |c: &CorpusLine| &c.id)?;
            ds.corpus
                .push((id, c.title.unwrap_or_default(), c.text.unwrap_or_default()));
        }
        ds.corpus_hash = hex(&h.finalize());
        for (n, line) in lines(&queries_path)? {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let (id, q) = parse_line(&queries_path, n, &line, |q: &QueryLine| &q.id)?;
            ds.queries.insert(id, q.text);
        }
        ds.qrels = load_qrels(&qrels_path)?;
        Ok(ds)
    }

    /// Query ids that have judgements and text, sorted (numerically where possible).
    pub fn judged_queries(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .qrels
            .iter()
            .filter(|(q, r)| self.queries.contains_key(*q) && r.values().any(|&g| g > 0))
            .map(|(q, _)| q.clone())
            .collect();
        ids.sort_by(|a, b| match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        });
        ids
    }
}

/// Loads a BEIR qrels TSV (`query-id corpus-id score` header, CRLF tolerated).
pub fn load_qrels(path: &Path) -> Result<Qrels> {
    let mut q: Qrels = HashMap::new();
    for (n, line) in lines(path)? {
        let line = line?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if n == 1 && cols.first().is_some_and(|c| c.trim() == "query-id") {
            continue;
        }
        if cols.len() < 3 {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: n,
                what: format!("expected 3 tab-separated columns, found {}", cols.len()),
            });
        }
        let grade: i32 = cols[2].trim().parse().map_err(|_| Error::Parse {
            path: path.to_path_buf(),
            line: n,
            what: format!("score {:?} is not an integer", cols[2]),
        })?;
        q.entry(cols[0].trim().to_string())
            .or_default()
            .insert(cols[1].trim().to_string(), grade);
    }
    Ok(q)
}

/// Metric functions over one ranked list (best first) and its judgements.
pub mod metrics {
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
}

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

    fn add(&mut self, ranked: &[String], selected: &[String], rels: &HashMap<String, i32>) {
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

    fn merge(&mut self, one: &ModeMetrics) {
        let mut one = one.clone();
        for (x, y) in self.averaged_mut().into_iter().zip(one.averaged_mut()) {
            *x += *y;
        }
    }

    fn scale(&mut self, n: usize) {
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

/// A named retrieval configuration to evaluate.
#[derive(Debug, Clone)]
pub struct EvalMode {
    /// Name shown in reports.
    pub name: String,
    /// Legs.
    pub mode: Mode,
    /// Stages after retrieval.
    pub pipeline: Pipeline,
}

/// Names accepted by [`EvalMode::named`].
pub const MODE_NAMES: [&str; 8] = [
    "lexical", "dense", "hybrid", "fused", "prf", "rerank", "tokens", "default",
];

impl EvalMode {
    /// The configuration called `name`:
    /// - `lexical`, `dense`: one leg;
    /// - `hybrid`: plain RRF (k = 60) of both legs' top 100, the published baseline;
    /// - `fused`: the default fusion (normalised scores, every candidate scored on both legs);
    /// - `prf`: `fused` plus pseudo-relevance feedback on the lexical leg;
    /// - `rerank`: `fused` plus the sentence-level bi-encoder reranker on the top 20;
    /// - `tokens`: `fused` plus the token-level (MaxSim) bi-encoder reranker on the top 20;
    /// - `default`: exactly what `pinpoint query` runs without flags on this index.
    pub fn named(name: &str, engine: &Engine) -> Result<EvalMode> {
        let fused = Pipeline {
            select: None,
            multi_query: false,
            rerank: None,
            ..Pipeline::default()
        };
        let (mode, pipeline) = match name {
            "lexical" => (Mode::Lexical, Pipeline::rrf()),
            "dense" => (Mode::Dense, Pipeline::rrf()),
            "hybrid" => (Mode::Hybrid, Pipeline::rrf()),
            "fused" => (Mode::Hybrid, fused),
            "prf" => (
                Mode::Hybrid,
                Pipeline {
                    prf: Some(crate::expand::PrfConfig::default()),
                    ..fused
                },
            ),
            "rerank" => (
                Mode::Hybrid,
                Pipeline {
                    rerank: Some(RerankConfig {
                        kind: RerankKind::Sentence,
                        depth: 20,
                        weight: 0.5,
                    }),
                    ..fused
                },
            ),
            "tokens" => (
                Mode::Hybrid,
                Pipeline {
                    rerank: Some(RerankConfig::new(RerankKind::Tokens)),
                    ..fused
                },
            ),
            "default" => (Mode::Hybrid, engine.default_pipeline()),
            other => {
                return Err(Error::invalid(
                    "mode",
                    format!("{other:?} (use {})", MODE_NAMES.join(", ")),
                ))
            }
        };
        Ok(EvalMode {
            name: name.to_string(),
            mode,
            pipeline,
        })
    }
}

/// Evaluation settings.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Mode names to evaluate (see [`EvalMode::named`]).
    pub modes: Vec<String>,
    /// Only the first N judged queries (0: all).
    pub limit: usize,
    /// Documents ranked per query.
    pub depth: usize,
    /// Weight of document expansion ([`crate::near`]) in every mode that has it (all but
    /// `lexical`, `dense` and `hybrid`), instead of the mode's own.
    pub expansion: Option<f32>,
    /// The mode the others are compared with query by query (`None`: the first mode). A
    /// baseline not among `modes` is evaluated too.
    pub baseline: Option<String>,
    /// A folder to write each mode's ranking to as a TREC run file (`<mode>.trec`), for
    /// trec_eval, ranx or a comparison with another system's runs.
    pub runs: Option<PathBuf>,
    /// What is ranked. BEIR's judgements are per document and its documents short, so a
    /// BEIR run ranks documents (each scored by its best chunk); a user's own labelled
    /// questions run exactly what `query` runs, chunks, and the passages handed over are
    /// judged by their file's path (a file's first passage stands for it in the ranking).
    pub granularity: Granularity,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            modes: vec!["lexical".into(), "dense".into(), "hybrid".into()],
            limit: 0,
            depth: 100,
            expansion: None,
            baseline: None,
            runs: None,
            granularity: Granularity::Document,
        }
    }
}

impl EvalConfig {
    /// The modes [`evaluate`] runs, in order: `modes`, then the baseline when it is not
    /// among them (each once).
    pub fn evaluated_modes(&self) -> Vec<String> {
        let mut names = Vec::new();
        for m in self.modes.iter().chain(&self.baseline) {
            if !names.contains(m) {
                names.push(m.clone());
            }
        }
        names
    }
}

/// What `evaluate` returns besides the report.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Aggregate metrics.
    pub report: Report,
    /// Per-query funnel of the last hybrid-family mode evaluated (or the last mode).
    pub funnel: Vec<QueryFunnel>,
    /// Funnel mode.
    pub funnel_mode: String,
    /// Each mode's metrics query by query, in the order of the queries evaluated (`qps` is
    /// left at 0): what the report's intervals and paired tests are computed from.
    pub per_query: BTreeMap<String, Vec<ModeMetrics>>,
    /// The modes in the order they were evaluated ([`EvalConfig::evaluated_modes`]): the
    /// order the text report lists them in.
    pub modes: Vec<String>,
}

/// Labelled queries: (id, text, judgements).
pub type Labelled = Vec<(String, String, HashMap<String, i32>)>;

/// Folder of the cached index for `ds` under `root`: keyed by corpus, model and chunking,
/// so a changed setting builds a new index and an unchanged one is reused.
pub fn cache_dir(root: &Path, ds: &Dataset, cfg: &EngineConfig) -> Result<PathBuf> {
    let model_id = model_id(cfg)?;
    let mut h = Sha256::new();
    h.update(ds.corpus_hash.as_bytes());
    h.update(model_id.as_bytes());
    h.update(
        serde_json::to_string(&cfg.chunking)
            .unwrap_or_default()
            .as_bytes(),
    );
    // An index with token codes is a different index (more files, another default).
    if !cfg.without_token_codes {
        h.update(b"token-codes-v1");
    }
    // So is one with the neighbour field (document expansion), per neighbour count.
    let k = cfg.neighbours.unwrap_or(crate::near::DEFAULT_NEIGHBOURS);
    if k > 0 {
        h.update(format!("neighbours-{k}").as_bytes());
    }
    let key = hex(&h.finalize()[..6]);
    Ok(root.join("eval").join(format!("{}-{key}", ds.name)))
}

/// Identity of the model `cfg` selects (the default folder when none is named).
fn model_id(cfg: &EngineConfig) -> Result<String> {
    match (&cfg.embedder, &cfg.model_dir) {
        (Some(e), _) => Ok(e.spec().id.clone()),
        (None, Some(d)) => Ok(crate::models::ModelDir::open(d)?.spec.id),
        (None, None) => Ok(
            crate::models::ModelDir::open(crate::models::DEFAULT_MODEL_DIR)?
                .spec
                .id,
        ),
    }
}

/// Opens the cached index of `ds` under `root`, building it first when absent.
/// Returns the engine and the seconds spent building (0 when cached).
pub fn open_or_build(root: &Path, ds: &Dataset, cfg: EngineConfig) -> Result<(Engine, f64)> {
    open_or_build_with_progress(root, ds, cfg, std::sync::Arc::new(NoBars))
}

struct NoBars;
impl crate::engine::Progress for NoBars {}

/// [`open_or_build`] reporting build progress.
pub fn open_or_build_with_progress(
    root: &Path,
    ds: &Dataset,
    cfg: EngineConfig,
    progress: std::sync::Arc<dyn crate::engine::Progress>,
) -> Result<(Engine, f64)> {
    let dir = cache_dir(root, ds, &cfg)?;
    if dir.join("manifest.json").exists() {
        if let Ok(e) = Engine::open(&dir, cfg.clone()) {
            if e.manifest().counts.documents as usize == ds.corpus.len() {
                return Ok((e, 0.0));
            }
        }
        // Incomplete (interrupted) build: start over.
        std::fs::remove_dir_all(&dir).at(&dir)?;
    }
    let t = Instant::now();
    let mut e = Engine::create(&dir, cfg)?;
    e.set_progress(progress);
    for (id, title, text) in &ds.corpus {
        // Empty documents still count, with their title as text.
        let body = if text.trim().is_empty() {
            title.as_str()
        } else {
            text.as_str()
        };
        e.add_document(id, title, body)?;
    }
    e.commit()?;
    Ok((e, t.elapsed().as_secs_f64()))
}

/// Turns a chunk-level output's lists (keyed by chunk id) into document lists: each
/// document at the place of its first chunk, the order `query`'s hits have. Hits already
/// carry their file's path.
fn by_document(engine: &Engine, out: &mut SearchOutput) -> Result<()> {
    engine.doc_index()?;
    let doc_of = |id: &str| -> Option<String> {
        let id: u64 = id.parse().ok()?;
        engine
            .document_of_chunk(id)
            .ok()
            .flatten()
            .map(String::from)
    };
    let docs = |v: &mut Vec<(String, f32)>| {
        let mut seen = std::collections::HashSet::new();
        *v = v
            .iter()
            .filter_map(|(id, s)| doc_of(id).map(|d| (d, *s)))
            .filter(|(d, _)| seen.insert(d.clone()))
            .collect();
    };
    docs(&mut out.ranked);
    docs(&mut out.lexical);
    docs(&mut out.dense);
    docs(&mut out.fused);
    docs(&mut out.reranked);
    let mut seen = std::collections::HashSet::new();
    out.candidates = out
        .candidates
        .iter()
        .filter_map(|(id, l, d)| doc_of(id).map(|k| (k, *l, *d)))
        .filter(|(k, _, _)| seen.insert(k.clone()))
        .collect();
    Ok(())
}

/// Evaluates `engine` on labelled queries.
pub fn evaluate(
    engine: &Engine,
    name: &str,
    split: &str,
    queries: &Labelled,
    cfg: &EvalConfig,
) -> Result<Evaluation> {
    let queries: Vec<_> = if cfg.limit > 0 {
        queries.iter().take(cfg.limit).collect()
    } else {
        queries.iter().collect()
    };
    let titles: HashMap<String, String> = engine
        .documents()?
        .iter()
        .map(|d| (d.key.clone(), d.title.clone()))
        .collect();
    let names = cfg.evaluated_modes();
    let baseline = cfg.baseline.clone().or_else(|| names.first().cloned());
    let mut modes = BTreeMap::new();
    let mut by_query = BTreeMap::new();
    let mut funnel = Vec::new();
    let mut funnel_mode = String::new();
    for name in &names {
        let mut em = EvalMode::named(name, engine)?;
        if let (Some(w), true) = (cfg.expansion, em.pipeline.expansion > 0.0) {
            em.pipeline.expansion = w;
        }
        let mut m = ModeMetrics::default();
        let mut per_query = Vec::new();
        let t = Instant::now();
        for (qid, text, _) in &queries {
            // BEIR: a document whose id equals the query id is not counted (in argument
            // and duplicate-question collections the query is itself in the corpus). It is
            // left out before selection, so it cannot set the cut-off or take a hit's place.
            let req = SearchRequest {
                // A pipeline's own candidate depth ([`Pipeline::depth`]) is what `query`
                // uses; the ranking still covers `cfg.depth` documents.
                depth: cfg.depth.max(em.pipeline.depth),
                granularity: cfg.granularity,
                mode: em.mode,
                pipeline: em.pipeline.clone(),
                exclude: vec![qid.clone()],
                ..SearchRequest::new(text.as_str(), 10)
            };
            let mut out = engine.search_detailed(&req)?;
            if cfg.granularity == Granularity::Chunk {
                by_document(engine, &mut out)?;
            }
            per_query.push(out);
        }
        let secs = t.elapsed().as_secs_f64();
        m.qps = queries.len() as f64 / secs.max(1e-9);
        if let Some(dir) = &cfg.runs {
            let ids = queries.iter().map(|(qid, _, _)| qid.as_str());
            write_run(dir, name, ids.zip(per_query.iter().map(|o| &o.ranked[..])))?;
        }
        let mut f = Vec::new();
        let mut scores = Vec::with_capacity(queries.len());
        for ((qid, text, rels), out) in queries.iter().zip(&per_query) {
            // Ranking metrics use the whole ranking; context precision uses the passages
            // that selection actually hands over (the same list when the mode does not
            // select).
            let ranked: Vec<String> = out.ranked.iter().map(|h| h.0.clone()).collect();
            let selected: Vec<String> = out.hits.iter().map(|h| h.path.clone()).collect();
            let mut one = ModeMetrics::default();
            one.add(&ranked, &selected, rels);
            if out.hits.is_empty() && out.note.is_some() {
                one.abstained = 1.0;
            }
            m.merge(&one);
            scores.push(one);
            f.push(query_funnel(qid, text, rels, out, &ranked, &titles));
        }
        m.scale(queries.len());
        modes.insert(name.clone(), m);
        by_query.insert(name.clone(), scores);
        if name == "default" || (name == "hybrid" && funnel_mode != "default") || funnel.is_empty()
        {
            funnel = f;
            funnel_mode = name.clone();
        }
    }
    let (intervals, paired) = significance(&by_query, baseline.as_deref());
    Ok(Evaluation {
        report: Report {
            dataset: name.to_string(),
            split: split.to_string(),
            queries: queries.len(),
            modes,
            intervals,
            baseline,
            paired,
            granularity: match cfg.granularity {
                Granularity::Document => "document".into(),
                Granularity::Chunk => "chunk".into(),
            },
        },
        funnel,
        funnel_mode,
        per_query: by_query,
        modes: names,
    })
}

type Intervals = BTreeMap<String, BTreeMap<String, Interval>>;
type PairedTests = BTreeMap<String, BTreeMap<String, Paired>>;

/// Intervals of every mode and paired tests of every mode against `baseline`, on each metric
/// of [`TESTED_METRICS`], from per-query metrics.
pub fn significance(
    per_query: &BTreeMap<String, Vec<ModeMetrics>>,
    baseline: Option<&str>,
) -> (Intervals, PairedTests) {
    let column = |scores: &[ModeMetrics], key: &str| -> Vec<f64> {
        scores.iter().filter_map(|m| m.get(key)).collect()
    };
    let mut intervals = BTreeMap::new();
    let mut paired = BTreeMap::new();
    let base = baseline.and_then(|b| per_query.get(b));
    for (name, scores) in per_query {
        let mut iv = BTreeMap::new();
        let mut pt = BTreeMap::new();
        for key in TESTED_METRICS {
            let x = column(scores, key);
            iv.insert(key.to_string(), stats::bootstrap(&x));
            if let (Some(b), false) = (base, Some(name.as_str()) == baseline) {
                if let Some(p) = stats::paired(&x, &column(b, key)) {
                    pt.insert(key.to_string(), p);
                }
            }
        }
        intervals.insert(name.clone(), iv);
        if !pt.is_empty() {
            paired.insert(name.clone(), pt);
        }
    }
    (intervals, paired)
}

/// Writes `rankings` as the TREC run file `dir/<mode>.trec`: one line per ranked document,
/// `qid Q0 docid rank score tag`, ranks from 1, the tag `pinpoint-<mode>`.
///
/// - trec_eval orders a query's documents by score and breaks ties by document id, not by
///   the rank column, so tied scores are nudged apart (by a millionth) to keep pinpoint's
///   own order.
/// - The format is split on whitespace, so whitespace and `%` in an id (a path with a
///   space, in an evaluation of your own folder) are percent-encoded: `%20`, `%25`.
pub fn write_run<'a>(
    dir: &Path,
    mode: &str,
    rankings: impl Iterator<Item = (&'a str, &'a [(String, f32)])>,
) -> Result<PathBuf> {
    use std::fmt::Write as _;
    fn field(id: &str) -> std::borrow::Cow<'_, str> {
        if !id.contains(|c: char| c == '%' || c.is_whitespace()) {
            return id.into();
        }
        let mut out = String::with_capacity(id.len() + 8);
        for c in id.chars() {
            if c == '%' || c.is_whitespace() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            } else {
                out.push(c);
            }
        }
        out.into()
    }
    std::fs::create_dir_all(dir).at(dir)?;
    let path = dir.join(format!("{mode}.trec"));
    let mut text = String::new();
    for (qid, ranked) in rankings {
        let qid = field(qid);
        let mut last = f64::INFINITY;
        for (i, (doc, score)) in ranked.iter().enumerate() {
            // Strictly decreasing, so the file's scores order the documents as pinpoint did.
            let mut s = f64::from(*score);
            if s >= last - last.abs().max(1.0) * 1e-7 {
                s = last - last.abs().max(1.0) * 1e-6;
            }
            last = s;
            let doc = field(doc);
            let _ = writeln!(text, "{qid} Q0 {doc} {} {s:.8} pinpoint-{mode}", i + 1);
        }
    }
    std::fs::write(&path, text).at(&path)?;
    Ok(path)
}

fn rank_of(list: &[(String, f32)], id: &str) -> Option<usize> {
    list.iter().position(|(d, _)| d == id).map(|i| i + 1)
}

fn query_funnel(
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

/// The BEIR queries of `ds` with judgements, as labelled queries.
pub fn beir_labelled(ds: &Dataset) -> Labelled {
    ds.judged_queries()
        .into_iter()
        .map(|q| {
            let text = ds.queries[&q].clone();
            let rels = ds.qrels[&q].clone();
            (q, text, rels)
        })
        .collect()
}

#[derive(Deserialize)]
struct UserQuery {
    query: String,
    relevant: Vec<String>,
    #[serde(default)]
    id: Option<String>,
}

/// Loads a user's labelled queries: JSON lines of `{"query": str, "relevant": [path or doc
/// id, ...]}`.
pub fn load_user_queries(path: &Path) -> Result<Labelled> {
    let mut out = Vec::new();
    for (n, line) in lines(path)? {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let q: UserQuery = serde_json::from_str(&line).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: n,
            what: e.to_string(),
        })?;
        if q.relevant.is_empty() {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                line: n,
                what: "\"relevant\" is empty".into(),
            });
        }
        let rels = q.relevant.into_iter().map(|r| (r, 1)).collect();
        out.push((q.id.unwrap_or_else(|| format!("q{n}")), q.query, rels));
    }
    Ok(out)
}

/// Keeps only judgements on documents the index knows, and reports the unknown ones
/// (a typo in a user's label file should not silently lower the scores).
pub fn unknown_labels(engine: &Engine, queries: &Labelled) -> Result<Vec<String>> {
    let known: HashSet<&str> = engine.documents()?.iter().map(|d| d.key.as_str()).collect();
    let mut unknown: Vec<String> = queries
        .iter()
        .flat_map(|(_, _, r)| r.keys())
        .filter(|k| !known.contains(k.as_str()))
        .cloned()
        .collect();
    unknown.sort();
    unknown.dedup();
    Ok(unknown)
}

#[cfg(test)]
mod tests {
    use super::metrics::*;
    use super::*;

    /// A BEIR folder whose corpus is `corpus`; queries and qrels are well-formed.
    fn beir_dir(corpus: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("corpus.jsonl"), corpus).expect("corpus");
        std::fs::write(
            dir.path().join("queries.jsonl"),
            "{\"_id\": 1, \"text\": \"what\"}\n",
        )
        .expect("queries");
        std::fs::create_dir(dir.path().join("qrels")).expect("qrels dir");
        std::fs::write(dir.path().join("qrels/test.tsv"), "1\td1\t1\n").expect("qrels");
        dir
    }

    #[test]
    fn a_run_file_keeps_tied_documents_in_order_and_encodes_whitespace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ranked: Vec<(String, f32)> = vec![
            ("b".into(), 0.5),
            ("a".into(), 0.5),
            ("notes/my file.md".into(), 0.5),
            ("100%.txt".into(), 0.25),
            ("z".into(), 0.2500001),
        ];
        let path = write_run(dir.path(), "hybrid", [("q 1", &ranked[..])].into_iter())
            .expect("run written");
        assert_eq!(path, dir.path().join("hybrid.trec"));
        let text = std::fs::read_to_string(&path).expect("run");
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
        let docs: Vec<&str> = rows.iter().map(|r| r[2]).collect();
        assert_eq!(docs, ["b", "a", "notes/my%20file.md", "100%25.txt", "z"]);
        assert!(rows.iter().all(|r| r.len() == 6 && r[0] == "q%201"));
        assert_eq!(rows[0][5], "pinpoint-hybrid");
        // By score alone (trec_eval's order) the documents come out as ranked: ties and a
        // later score above its predecessor's are pushed just below it.
        let scores: Vec<f64> = rows.iter().map(|r| r[4].parse().expect("score")).collect();
        assert!(scores.windows(2).all(|w| w[0] > w[1]), "{scores:?}");
        assert!((scores[0] - 0.5).abs() < 1e-9 && (scores[3] - 0.25).abs() < 1e-9);
        assert!(
            scores[4] < scores[3] && scores[3] - scores[4] < 1e-5,
            "{scores:?}"
        );
        let ranks: Vec<&str> = rows.iter().map(|r| r[3]).collect();
        assert_eq!(ranks, ["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn beir_lines_that_do_not_parse_are_named_by_file_and_line() {
        let ok = beir_dir("{\"_id\": \"d1\", \"title\": \"T\", \"text\": \"x\"}\n\n{\"_id\": 7}\n");
        let ds = Dataset::load_beir(ok.path(), "test").expect("well-formed");
        // A numeric id is kept as its decimal text; missing title and text are empty.
        assert_eq!(
            ds.corpus[1],
            ("7".to_string(), String::new(), String::new())
        );
        assert_eq!(ds.queries.get("1").map(String::as_str), Some("what"));

        for (corpus, line, what) in [
            (
                "{\"_id\": \"d1\"}\n{\"_id\": [1]}\n",
                2,
                "_id is not a string",
            ),
            (
                "{\"_id\": \"d1\"}\n\n{not json\n",
                3,
                "key must be a string",
            ),
        ] {
            let dir = beir_dir(corpus);
            match Dataset::load_beir(dir.path(), "test") {
                Err(Error::Parse {
                    path,
                    line: n,
                    what: w,
                }) => {
                    assert!(path.ends_with("corpus.jsonl"), "{path:?}");
                    assert_eq!(n, line);
                    assert!(w.contains(what), "{w}");
                }
                other => panic!("expected a parse error, got {other:?}"),
            }
        }
    }

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

    #[test]
    fn qrels_tolerate_crlf_and_name_bad_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("q.tsv");
        std::fs::write(
            &p,
            "query-id\tcorpus-id\tscore\r\n1\td1\t1\r\n1\td2\t2\r\n2\td3\t0\r\n",
        )
        .unwrap();
        let q = load_qrels(&p).unwrap();
        assert_eq!(q["1"]["d2"], 2);
        assert_eq!(q["2"]["d3"], 0);
        std::fs::write(&p, "query-id\tcorpus-id\tscore\n1\td1\n").unwrap();
        let e = load_qrels(&p).unwrap_err().to_string();
        assert!(e.contains("q.tsv:2"), "{e}");
        std::fs::write(&p, "1\td1\tx\n").unwrap();
        let e = load_qrels(&p).unwrap_err().to_string();
        assert!(e.contains("q.tsv:1") && e.contains("not an integer"), "{e}");
    }

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
