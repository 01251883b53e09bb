//! Retrieval evaluation: BEIR loader, metrics, per-query funnel, failure analysis.
//!
//! The evaluator drives the public [`Engine`] API like any user: it indexes a BEIR corpus
//! through `add_document` (cached under the index root, keyed by corpus, model and chunking)
//! and ranks *documents* by their best chunk (max-pool), as BEIR's document qrels require.
//! Metrics follow trec_eval/pytrec_eval (linear gain nDCG) and RAGAS (context precision).
//!
//! Not for: choosing settings ([`crate::tune`]) or timing ([`crate::bench`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::engine::{
    Engine, EngineConfig, Granularity, Mode, Pipeline, RerankConfig, RerankKind, SearchOutput,
    SearchRequest,
};
use crate::error::{Error, IoContext, Result};
use crate::models::hex;

mod dataset;
mod funnel;
pub mod metrics;
mod render;
mod report;
pub mod stats;

pub use dataset::{
    beir_labelled, load_qrels, load_user_queries, unknown_labels, Dataset, Labelled, Qrels,
};
use funnel::query_funnel;
pub use funnel::{loss_counts, FunnelEntry, LossClass, QueryFunnel};
pub use render::RenderOptions;
pub use report::{ModeMetrics, Report, TESTED_METRICS};
pub use stats::{Interval, Paired};

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
pub const MODE_NAMES: [&str; 10] = [
    "lexical", "dense", "hybrid", "fused", "prf", "rerank", "tokens", "default", "copies", "alone",
];

impl EvalMode {
    /// The configuration called `name`:
    /// - `lexical`, `dense`: one leg;
    /// - `hybrid`: plain RRF (k = 60) of both legs' top 100, the published baseline;
    /// - `fused`: the default fusion (normalised scores, every candidate scored on both legs);
    /// - `prf`: `fused` plus pseudo-relevance feedback on the lexical leg;
    /// - `rerank`: `fused` plus the sentence-level bi-encoder reranker on the top 20;
    /// - `tokens`: `fused` plus the token-level (MaxSim) bi-encoder reranker on the top 20;
    /// - `default`: exactly what `pinpoint query` runs without flags on this index;
    /// - `copies`: `default` handing over copies of one text in several files
    ///   ([`crate::copies`]) as they come: what collapsing them costs or buys;
    /// - `alone`: `default` scoring each passage alone, without its document's other
    ///   candidates ([`crate::evidence`]): what document evidence costs or buys.
    pub fn named(name: &str, engine: &Engine) -> Result<EvalMode> {
        let fused = Pipeline {
            select: None,
            multi_query: false,
            rerank: None,
            doc_evidence: None,
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
            "copies" => {
                let mut p = engine.default_pipeline();
                if let Some(sel) = p.select.as_mut() {
                    sel.collapse_copies = false;
                }
                (Mode::Hybrid, p)
            }
            "alone" => (
                Mode::Hybrid,
                Pipeline {
                    doc_evidence: None,
                    ..engine.default_pipeline()
                },
            ),
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
        // Codes of other units or widths (pieces at every dimension keep the key they had).
        let units = cfg
            .token_units
            .unwrap_or(crate::late::TokenUnits::NEW_INDEX_DEFAULT);
        if units != crate::late::TokenUnits::Pieces {
            h.update(format!("token-units-{units}").as_bytes());
        }
        if let Some(bits) = cfg.token_bits {
            h.update(format!("token-bits-{bits}").as_bytes());
        }
        // Shared codes (the default where measured), keyed by their setting; an index
        // without keeps its old key.
        if cfg.token_sharing != Some(false)
            && cfg.token_bits.is_none()
            && units == crate::late::TokenUnits::Pieces
        {
            let s = crate::late::Sharing::MEASURED;
            let borrow = if s.borrow { "-borrow" } else { "" };
            h.update(
                format!(
                    "token-sharing-{}-{}-occurrence{borrow}",
                    s.near_bits, s.copy_bits
                )
                .as_bytes(),
            );
        }
    }
    // So is one with the neighbour field (document expansion), per neighbour count.
    let k = cfg.neighbours.unwrap_or(crate::near::DEFAULT_NEIGHBOURS);
    if k > 0 {
        h.update(format!("neighbours-{k}").as_bytes());
    }
    // And one embedded in another precision (f32 keeps the key it had before precisions).
    let p = cfg.new_index_precision();
    if p != crate::quant::Precision::F32 {
        h.update(format!("precision-{p}").as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
