//! Speed benchmarks behind `pinpoint bench`: embedding throughput, index build by stage,
//! warm query latency per stage, cold CLI query, dense recall/throughput curve, lexical
//! throughput. Figures are meant to be compared as ratios within one run (these machines
//! are noisy); `benches/reference/` runs the Python reference stack on the same workloads.
//!
//! Not for: quality (that is [`crate::eval`]); timed assertions (benchmarks report, tests assert behaviour).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

pub mod scale;
pub mod scale_embed;

use crate::dense::{build_graph, exact_search, search_graph, HnswParams};
use crate::engine::{Engine, EngineConfig, SearchRequest};
use crate::error::Result;
use crate::eval::Dataset;
use crate::store::VectorFile;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

impl Percentiles {
    /// From samples in seconds.
    pub fn of(mut secs: Vec<f64>) -> Percentiles {
        if secs.is_empty() {
            return Percentiles::default();
        }
        secs.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| secs[((secs.len() - 1) as f64 * q).round() as usize] * 1e3;
        Percentiles {
            p50_ms: at(0.5),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
        }
    }
}

/// Embedding throughput.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EmbedSpeed {
    /// Texts per second.
    pub texts_per_s: f64,
    /// Tokens (after truncation, special tokens included) per second.
    pub tokens_per_s: f64,
    /// The code path that ran (the index's precision on this CPU).
    pub path: String,
}

/// One encoder path on the same texts: speed, and agreement with f32.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EncoderPath {
    /// e.g. `int8 fused (avx512-vnni)`.
    pub path: String,
    /// Texts per second.
    pub texts_per_s: f64,
    /// Tokens per second.
    pub tokens_per_s: f64,
    /// Median time to embed one query, in ms.
    pub query_p50_ms: f64,
    /// Lowest and mean cosine of a text's vector to its f32 vector.
    pub cosine_to_f32_min: f64,
    /// See `cosine_to_f32_min`.
    pub cosine_to_f32_mean: f64,
}

/// One point of the dense recall/throughput curve.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// Search beam width.
    pub ef: usize,
    /// Recall@10 against the exact scan.
    #[serde(rename = "recall@10")]
    pub recall10: f64,
    /// Queries per second (single thread).
    pub qps: f64,
}

/// Dense index speed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DenseSpeed {
    /// Vectors in the benchmark set.
    pub vectors: usize,
    /// What the vectors are.
    pub source: String,
    /// Exact scan queries per second (single thread).
    pub exact_qps: f64,
    /// Graph build seconds.
    pub build_s: f64,
    /// Recall/throughput per ef.
    pub curve: Vec<CurvePoint>,
}

/// Lexical speed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LexicalSpeed {
    /// Queries per second, single thread, top 100.
    pub qps: f64,
}

/// Index build.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexSpeed {
    /// Documents indexed.
    pub documents: usize,
    /// Total seconds.
    pub seconds: f64,
    /// Share of the time spent embedding (tokenizer + model forward).
    pub forward_share: f64,
    /// Seconds per stage.
    pub stages: BTreeMap<String, f64>,
}

/// The whole report; `pinpoint bench --json` prints it (its keys are a contract).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchReport {
    /// Embedding throughput of the index's encoder.
    pub embed: EmbedSpeed,
    /// Every encoder path this CPU can run, on the same texts (empty with a custom embedder).
    pub encoder_paths: Vec<EncoderPath>,
    /// Warm `default` query latency: `total` and one entry per stage.
    pub query: BTreeMap<String, Percentiles>,
    /// Cold CLI query, process start to exit, model load included (median of 3).
    pub cold_query_s: f64,
    /// Dense index.
    pub dense: DenseSpeed,
    /// Dense index on real embeddings (`--real-vectors`), when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense_real: Option<DenseSpeed>,
    /// Lexical index.
    pub lexical: LexicalSpeed,
    /// Index build.
    pub index: IndexSpeed,
}

impl BenchReport {
    /// The text `pinpoint bench` prints; `reranker` names a reranker added to the default
    /// pipeline for the query timings.
    pub fn render(
        &self,
        out: &mut dyn std::io::Write,
        reranker: Option<&str>,
    ) -> std::io::Result<()> {
        writeln!(
            out,
            "embedding      {:.1} texts/s, {:.0} tokens/s  ({})",
            self.embed.texts_per_s, self.embed.tokens_per_s, self.embed.path
        )?;
        for p in &self.encoder_paths {
            writeln!(
                out,
                "  {:<26} {:>6.1} texts/s {:>7.0} tokens/s, query p50 {:.2} ms, cosine to f32 min {:.4} mean {:.4}",
                p.path, p.texts_per_s, p.tokens_per_s, p.query_p50_ms, p.cosine_to_f32_min, p.cosine_to_f32_mean
            )?;
        }
        writeln!(
            out,
            "index build    {} docs in {:.1} s, {:.0}% embedding  ({})",
            self.index.documents,
            self.index.seconds,
            self.index.forward_share * 100.0,
            self.index
                .stages
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}s"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(
            out,
            "warm query     p50 / p95 / p99 ms (default pipeline{})",
            reranker
                .map(|k| format!(" + {k} reranker on the top 20"))
                .unwrap_or_default()
        )?;
        for (stage, p) in &self.query {
            writeln!(
                out,
                "  {stage:<10} {:>8.2} {:>8.2} {:>8.2}",
                p.p50_ms, p.p95_ms, p.p99_ms
            )?;
        }
        writeln!(
            out,
            "cold query     {:.3} s (process start to exit)",
            self.cold_query_s
        )?;
        writeln!(
            out,
            "lexical        {:.0} queries/s (single thread, top 100)",
            self.lexical.qps
        )?;
        for d in std::iter::once(&self.dense).chain(self.dense_real.as_ref()) {
            writeln!(
                out,
                "dense          {} vectors ({}), exact scan {:.0} q/s, HNSW build {:.1} s",
                d.vectors, d.source, d.exact_qps, d.build_s
            )?;
            for c in &d.curve {
                writeln!(
                    out,
                    "  ef {:>4}  recall@10 {:.4}  {:>8.0} q/s  {:>5.1}x exact",
                    c.ef,
                    c.recall10,
                    c.qps,
                    c.qps / d.exact_qps.max(1e-9)
                )?;
            }
        }
        Ok(())
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// BEIR folder supplying texts and queries.
    pub beir: PathBuf,
    /// Documents embedded and indexed.
    pub docs: usize,
    /// Queries timed (0: all judged test queries).
    pub queries: usize,
    /// Synthetic vectors for the dense curve (when no real index is large enough).
    pub dense_vectors: usize,
    /// Real embeddings for a second dense curve: this many sentence-level texts of the BEIR
    /// corpus, embedded with the model (0: skipped; it costs minutes on a CPU).
    pub real_vectors: usize,
    /// `ef` values of the curve.
    pub efs: Vec<usize>,
    /// Index to time queries on (default: one built from `docs` documents).
    pub query_index: Option<PathBuf>,
    /// The `pinpoint` executable for the cold query (none: skipped).
    pub exe: Option<PathBuf>,
    /// Where to write the dense benchmark vectors (raw little-endian f32) and queries, for
    /// the reference run to load the very same set.
    pub export_vectors: Option<PathBuf>,
    /// Time queries with this reranker added to the index's default pipeline (none: the
    /// default pipeline as it is).
    pub rerank: Option<crate::engine::RerankConfig>,
    /// Time queries with this document-expansion weight instead of the index's (0: none).
    pub expansion: Option<f32>,
}

/// A synthetic document of topic `i % 200`: ten words of its topic, three of the next
/// topic's and three shared ones, so that hashed or embedded vectors of many such documents
/// cluster as real ones do (the filter test's index, `experiments/examples/graph_sinks.rs`).
pub fn topic_document(i: usize) -> String {
    let topic = i % 200;
    let mut h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        h
    };
    let mut words = Vec::new();
    for _ in 0..10 {
        words.push(format!("t{topic}w{}", next() % 12));
    }
    for _ in 0..3 {
        words.push(format!("t{}w{}", (topic + 1) % 200, next() % 12));
    }
    for _ in 0..3 {
        words.push(format!("common{}", next() % 40));
    }
    words.join(" ")
}

/// Clustered unit vectors: `clusters` random centres, points spread around them. Real
/// embeddings are clustered; uniform random vectors are the worst case for any ANN graph
/// and say little about real data (docs/dependencies.md).
pub fn clustered_vectors(
    n: usize,
    dim: usize,
    clusters: usize,
    spread: f32,
    seed: u64,
) -> Vec<f32> {
    let mut rnd = xorshift(seed);
    let centers: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| rnd()).collect())
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = &centers[(i * 7919) % clusters];
        let mut v: Vec<f32> = c.iter().map(|x| x + spread * rnd()).collect();
        crate::embed::normalize(&mut v);
        out.extend(v);
    }
    out
}

/// Unit vectors of low intrinsic dimension, as sentence embeddings are: a random linear map
/// of `rank`-dimensional Gaussian-ish codes into `dim` dimensions, plus a little isotropic
/// noise. The same `seed` gives the same map, so queries drawn with another seed come from
/// the same distribution.
pub fn low_rank_vectors(
    n: usize,
    dim: usize,
    rank: usize,
    noise: f32,
    seed: u64,
    code_seed: u64,
) -> Vec<f32> {
    let mut rnd = xorshift(seed);
    let map: Vec<f32> = (0..dim * rank).map(|_| rnd()).collect();
    let mut crnd = xorshift(code_seed);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        // Sum of 3 uniforms: close enough to Gaussian codes.
        let z: Vec<f32> = (0..rank).map(|_| crnd() + crnd() + crnd()).collect();
        let mut v: Vec<f32> = (0..dim)
            .map(|d| {
                let row = &map[d * rank..(d + 1) * rank];
                row.iter().zip(&z).map(|(a, b)| a * b).sum::<f32>() + noise * crnd()
            })
            .collect();
        crate::embed::normalize(&mut v);
        out.extend(v);
    }
    out
}

/// Texts for the real-embedding dense benchmark, up to `n`: every sentence of every
/// document ("title. sentence"), the titles, then windows of 2, 3 and 4 adjacent sentences.
/// Overlapping texts like the windows are what chunk overlap puts in a real index; they make
/// near-duplicate vectors, which are harder for a graph than distinct ones.
pub fn sentence_texts(corpus: &[(String, String, String)], n: usize) -> Vec<String> {
    use unicode_segmentation::UnicodeSegmentation;
    let sents: Vec<(usize, Vec<&str>)> = corpus
        .iter()
        .enumerate()
        .map(|(i, (_, _, text))| {
            let v = text
                .unicode_sentences()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            (i, v)
        })
        .collect();
    let mut out = Vec::new();
    for (i, v) in &sents {
        for s in v {
            out.push(format!("{}. {s}", corpus[*i].1));
        }
    }
    out.extend(corpus.iter().map(|d| d.1.clone()));
    for width in 2..=4 {
        for (i, v) in &sents {
            for w in v.windows(width) {
                if out.len() >= n {
                    break;
                }
                out.push(format!("{}. {}", corpus[*i].1, w.join(" ")));
            }
        }
    }
    out.truncate(n);
    out
}

/// A small deterministic generator of uniform values in [-0.5, 0.5) (xorshift64), so that
/// benchmark sets are identical across runs and platforms.
pub fn xorshift(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.max(1);
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64) as f32 - 0.5
    }
}

/// HNSW (default parameters) against the exact scan on the same vectors: exact queries/s,
/// graph build time, and recall@10 and queries/s (single thread) for each `ef`.
pub fn dense_curve(
    vectors: &VectorFile,
    queries: &[f32],
    efs: &[usize],
    source: &str,
) -> DenseSpeed {
    let dim = vectors.dim();
    let t = Instant::now();
    let exact: Vec<Vec<u64>> = queries
        .chunks(dim)
        .map(|q| {
            exact_search(vectors, q, 10)
                .into_iter()
                .map(|(p, _)| p as u64)
                .collect()
        })
        .collect();
    let exact_qps = exact.len() as f64 / t.elapsed().as_secs_f64();
    let ids: Vec<u64> = (0..vectors.len() as u64).collect();
    let t = Instant::now();
    let g = build_graph(&HnswParams::default(), vectors, &ids);
    let build_s = t.elapsed().as_secs_f64();
    let curve = efs
        .iter()
        .map(|&ef| {
            let t = Instant::now();
            let mut hits = 0;
            for (q, ex) in queries.chunks(dim).zip(&exact) {
                hits += search_graph(&g, q, 10, ef, None)
                    .iter()
                    .filter(|(id, _)| ex.contains(id))
                    .count();
            }
            CurvePoint {
                ef,
                recall10: hits as f64 / (exact.len() * 10).max(1) as f64,
                qps: exact.len() as f64 / t.elapsed().as_secs_f64(),
            }
        })
        .collect();
    DenseSpeed {
        vectors: vectors.len(),
        source: source.to_string(),
        exact_qps,
        build_s,
        curve,
    }
}

/// Tokens the model reads of `texts` (after truncation, special tokens included): what
/// tokens/s counts.
fn model_tokens(e: &dyn crate::embed::Embedder, texts: &[&str]) -> usize {
    texts
        .iter()
        .map(|t| (e.token_spans(t).len() + 2).min(e.spec().max_tokens))
        .sum()
}

/// Times every encoder path this CPU can run on `texts` (`tokens` tokens in all) and on
/// single `queries`, and compares each text's vector with the f32 one.
fn encoder_paths(
    md: &crate::models::ModelDir,
    texts: &[&str],
    tokens: usize,
    queries: &[String],
) -> Result<Vec<EncoderPath>> {
    use crate::embed::{BertEmbedder, Embedder};
    use crate::quant::{Kernel, Precision};
    let mut runs = vec![(Precision::F32, None)];
    runs.extend(
        Kernel::supported()
            .into_iter()
            .map(|k| (Precision::Int8, Some(k))),
    );
    let mut out = Vec::new();
    let mut f32_vectors: Vec<f32> = Vec::new();
    for (p, kernel) in runs {
        let mut e = BertEmbedder::with_precision(md, crate::embed::DeviceChoice::Cpu, p)?;
        if let Some(k) = kernel {
            e.use_kernel(k);
        }
        e.embed_passages(&texts[..texts.len().min(8)])?; // warm-up
                                                         // The portable kernel is ~50x slower: a slice of the texts gives its rate.
        let (texts, tokens) = if kernel == Some(Kernel::Portable) {
            let n = texts.len().min(16);
            (&texts[..n], model_tokens(&e, &texts[..n]))
        } else {
            (texts, tokens)
        };
        let t = Instant::now();
        let v = e.embed_passages(texts)?;
        let s = t.elapsed().as_secs_f64().max(1e-9);
        let mut q = Vec::with_capacity(queries.len());
        let queries = if kernel == Some(Kernel::Portable) {
            &queries[..queries.len().min(5)]
        } else {
            queries
        };
        for text in queries {
            let t = Instant::now();
            e.embed_query(text)?;
            q.push(t.elapsed().as_secs_f64());
        }
        if p == Precision::F32 {
            f32_vectors = v.clone();
        }
        let d = e.dim().max(1);
        let cos: Vec<f64> = v
            .chunks(d)
            .zip(f32_vectors.chunks(d))
            .map(|(a, b)| crate::embed::dot(a, b) as f64)
            .collect();
        out.push(EncoderPath {
            path: e.encoder_path(),
            texts_per_s: texts.len() as f64 / s,
            tokens_per_s: tokens as f64 / s,
            query_p50_ms: Percentiles::of(q).p50_ms,
            cosine_to_f32_min: cos.iter().cloned().fold(f64::INFINITY, f64::min),
            cosine_to_f32_mean: cos.iter().sum::<f64>() / cos.len().max(1) as f64,
        });
    }
    Ok(out)
}

/// Runs every benchmark.
pub fn run(
    cfg: &BenchConfig,
    engine_cfg: EngineConfig,
    work: &Path,
    log: &dyn Fn(&str),
) -> Result<BenchReport> {
    let mut report = BenchReport::default();
    let ds = Dataset::load_beir(&cfg.beir, "test")?;
    let docs: Vec<&(String, String, String)> = ds.corpus.iter().take(cfg.docs).collect();

    // Index build (also loads the model once, so the embedding timing below is warm).
    log(&format!("indexing {} documents ...", docs.len()));
    let idx_dir = work.join("bench-index");
    if idx_dir.exists() {
        std::fs::remove_dir_all(&idx_dir).map_err(|e| crate::error::Error::io(&idx_dir, e))?;
    }
    let t = Instant::now();
    let mut engine = Engine::create(&idx_dir, engine_cfg.clone())?;
    for (id, title, text) in &docs {
        engine.add_document(id, title, text)?;
    }
    let r = engine.commit()?;
    let total = t.elapsed().as_secs_f64();
    let stages: BTreeMap<String, f64> = r.timings.iter().cloned().collect();
    report.index = IndexSpeed {
        documents: docs.len(),
        seconds: total,
        forward_share: stages.get("embed").copied().unwrap_or(0.0) / total.max(1e-9),
        stages,
    };

    // Embedding throughput on the same texts as the reference: title + text, 256 tokens.
    log("embedding ...");
    let e = engine.embedder()?.clone();
    let texts: Vec<String> = docs.iter().map(|(_, t, x)| format!("{t} {x}")).collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let tokens = model_tokens(e.as_ref(), &refs);
    let t = Instant::now();
    e.embed_passages(&refs)?;
    let s = t.elapsed().as_secs_f64();
    report.embed = EmbedSpeed {
        texts_per_s: refs.len() as f64 / s,
        tokens_per_s: tokens as f64 / s,
        path: e.encoder_path(),
    };
    if engine_cfg.embedder.is_none() {
        log("encoder paths ...");
        let md = crate::models::ModelDir::open(&engine.manifest().model_dir)?;
        let qs: Vec<String> = crate::eval::beir_labelled(&ds)
            .into_iter()
            .map(|q| q.1)
            .take(50)
            .collect();
        report.encoder_paths = encoder_paths(&md, &refs, tokens, &qs)?;
    }

    // Warm query latency per stage, default pipeline, as `pinpoint query` runs it.
    let qengine = match &cfg.query_index {
        Some(p) => Engine::open_read_only(p, engine_cfg.clone())?,
        None => Engine::open_read_only(&idx_dir, engine_cfg.clone())?,
    };
    let mut queries: Vec<String> = crate::eval::beir_labelled(&ds)
        .into_iter()
        .map(|q| q.1)
        .collect();
    if cfg.queries > 0 {
        queries.truncate(cfg.queries);
    }
    log(&format!("timing {} queries ...", queries.len()));
    let mut pipeline = qengine.default_pipeline();
    if let Some(w) = cfg.expansion {
        pipeline.expansion = w;
    }
    if let Some(rc) = &cfg.rerank {
        pipeline.rerank = Some(rc.clone());
    }
    // Warm-up: model, caches, page cache.
    for q in queries.iter().take(5) {
        qengine.search(&SearchRequest::new(q.as_str(), 5).pipeline(pipeline.clone()))?;
    }
    let mut per_stage: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for q in &queries {
        let t = Instant::now();
        let out = qengine
            .search_detailed(&SearchRequest::new(q.as_str(), 5).pipeline(pipeline.clone()))?;
        per_stage
            .entry("total".into())
            .or_default()
            .push(t.elapsed().as_secs_f64());
        let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
        for (stage, secs) in out.timings {
            *sums.entry(stage).or_default() += secs;
        }
        for (stage, secs) in sums {
            per_stage.entry(stage.to_string()).or_default().push(secs);
        }
    }
    report.query = per_stage
        .into_iter()
        .map(|(k, v)| (k, Percentiles::of(v)))
        .collect();

    // Lexical throughput, single thread, top 100.
    let t = Instant::now();
    for q in &queries {
        qengine.lexical().search(q, 100)?;
    }
    report.lexical.qps = queries.len() as f64 / t.elapsed().as_secs_f64().max(1e-9);

    // Cold CLI query.
    if let Some(exe) = &cfg.exe {
        let idx = cfg.query_index.clone().unwrap_or(idx_dir.clone());
        let mut samples = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let st = std::process::Command::new(exe)
                .args([
                    "query",
                    queries.first().map(|s| s.as_str()).unwrap_or("test"),
                    "--index",
                ])
                .arg(&idx)
                .stdout(std::process::Stdio::null())
                .status()
                .map_err(|e| crate::error::Error::io(exe, e))?;
            if st.success() {
                samples.push(t.elapsed().as_secs_f64());
            }
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        report.cold_query_s = samples.get(samples.len() / 2).copied().unwrap_or(0.0);
    }

    // Dense: HNSW against the exact scan on the same vectors.
    let dim = e.dim();
    log(&format!(
        "dense: {} clustered vectors ...",
        cfg.dense_vectors
    ));
    let data = clustered_vectors(cfg.dense_vectors, dim, 1000, 0.6, 7);
    let qv = clustered_vectors(200, dim, 1000, 0.6, 99);
    if let Some(p) = &cfg.export_vectors {
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(p, bytes).map_err(|e| crate::error::Error::io(p, e))?;
        let qp = p.with_extension("queries");
        let bytes: Vec<u8> = qv.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&qp, bytes).map_err(|e| crate::error::Error::io(&qp, e))?;
    }
    let vectors = VectorFile::from_vec(dim, data);
    report.dense = dense_curve(&vectors, &qv, &cfg.efs, "synthetic, 1000 clusters");

    if cfg.real_vectors > 0 {
        let texts = sentence_texts(&ds.corpus, cfg.real_vectors);
        log(&format!("dense: embedding {} real texts ...", texts.len()));
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let data = e.embed_passages(&refs)?;
        // Queries: every query of the collection (all splits share queries.jsonl).
        let mut qids: Vec<&String> = ds.queries.keys().collect();
        qids.sort();
        let qtexts: Vec<&str> = qids
            .iter()
            .take(500)
            .map(|q| ds.queries[*q].as_str())
            .collect();
        let mut qv = Vec::with_capacity(qtexts.len() * dim);
        for q in &qtexts {
            qv.extend(e.embed_query(q)?);
        }
        let vectors = VectorFile::from_vec(dim, data);
        report.dense_real = Some(dense_curve(
            &vectors,
            &qv,
            &cfg.efs,
            &format!("{} sentence-level embeddings of {}", texts.len(), ds.name),
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_texts_cover_sentences_titles_then_windows_up_to_n() {
        let corpus = vec![
            ("1".into(), "T1".into(), "A one. B two. C three.".into()),
            ("2".into(), "T2".into(), "D four.".into()),
        ];
        let all = sentence_texts(&corpus, 100);
        assert_eq!(
            all,
            [
                "T1. A one.",
                "T1. B two.",
                "T1. C three.",
                "T2. D four.",
                "T1",
                "T2",
                "T1. A one. B two.",
                "T1. B two. C three.",
                "T1. A one. B two. C three.",
            ]
        );
        assert_eq!(sentence_texts(&corpus, 5), all[..5]);
    }
}
