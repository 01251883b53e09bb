//! `pinpoint bench --scale N`: an index of `N` chunks built without hours in the model,
//! and what it costs to build, change, open and search.
//!
//! Real MiniLM vectors of up to [`ScaleConfig::base`] sentences of a BEIR corpus (the
//! `--real-vectors` texts) are embedded once; the index holds them and perturbed copies
//! up to `N` (each copy `normalize(v + σ·g)`, `g` standard normal, seeded by the copy), each
//! chunk with its sentence's text and a tag naming its vector. An embedder that reads the
//! tag ([`ScaleEmbedder`], `scale_embed.rs`) hands the engine those vectors and, as a
//! default index keeps them, their sentences' token codes, so the build runs the whole
//! commit path (chunking, segments, graphs, merges, BM25, neighbours) at scale while only
//! the base sentences and the probes' new texts meet the model. The report says how close
//! a copy stays to its original (mean cosine), so that a reader can judge that copies are
//! not near-duplicates.
//!
//! Not for: quality (`eval`), or the small-index figures of [`super::run`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::scale_embed::{tagged, ScaleEmbedder};
use super::{sentence_texts, CurvePoint, Percentiles};
use crate::embed::{dot, Embedder};
use crate::engine::{dir_size, Engine, EngineConfig, Pipeline, SearchRequest};
use crate::error::{Error, Result};
use crate::eval::Dataset;

/// What to build and measure.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    /// Chunks in the index.
    pub chunks: usize,
    /// Real sentences embedded (the rest are copies of them).
    pub base: usize,
    /// Documents per commit while building (each commit is one segment, merged by policy).
    pub batch: usize,
    /// Queries timed and checked for recall.
    pub queries: usize,
    /// Spread of a copy around its sentence's vector, per dimension.
    pub sigma: f32,
    /// BEIR folder supplying sentences and queries.
    pub beir: PathBuf,
    /// The `pinpoint` executable for the cold query (none: skipped).
    pub exe: Option<PathBuf>,
    /// Where to write the index's vectors (`.f32`, raw little-endian, position order),
    /// the queries' (`.queries`) and their exact top 10 (`.exact`, `u32` positions), for
    /// `benches/reference/hnswlib_scale.py` to build and search hnswlib on the very same
    /// vectors.
    pub export: Option<PathBuf>,
    /// Whether the index keeps token codes, as a default index does (each copy gets its
    /// sentence's real codes, [`ScaleEmbedder`]); without them the default query skips
    /// its token reranking and the index is smaller.
    pub token_codes: bool,
}

/// Spread of a copy around its sentence's vector, per dimension: a copy keeps a cosine of
/// about 0.86 to its original and about 0.74 to another copy (MiniLM's nearest distinct
/// chunks sit at 0.46 to 0.64 in the collections measured, `near::MIN_COSINE`), close
/// enough to be found together, far from near-duplicates (0.99).
pub const DEFAULT_SIGMA: f32 = 0.03;

/// The cost of one kind of one-file commit (add, edit or delete): its median round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommitCost {
    /// Wall time of the commit (merges it triggers included): the median of
    /// [`COMMIT_ROUNDS`] rounds, each on a file of its own. A single commit of a few
    /// milliseconds moves by half between runs here (an fsync, the page cache), which a
    /// ratio of two such figures doubles.
    pub seconds: f64,
    /// The first round's wall time (right after the build).
    pub first_seconds: f64,
    /// Every round's wall time, in order.
    pub rounds: Vec<f64>,
    /// Bytes the process wrote meanwhile (Linux `/proc/self/io` `wchar`).
    pub bytes_written: u64,
    /// Seconds by commit stage (what the engine reports to its progress observer), of the
    /// median round.
    pub stages: BTreeMap<String, f64>,
}

/// Rounds of one-file commits the benchmark times (add, edit, delete a file each round).
pub const COMMIT_ROUNDS: usize = 5;

impl CommitCost {
    /// The median round of `rounds` (in order), with the first and every round's time.
    fn median_of(mut rounds: Vec<CommitCost>) -> CommitCost {
        let times: Vec<f64> = rounds.iter().map(|r| r.seconds).collect();
        let first = times.first().copied().unwrap_or(0.0);
        rounds.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        let mid = rounds.len() / 2;
        let mut m = rounds.into_iter().nth(mid).unwrap_or_default();
        m.first_seconds = first;
        m.rounds = times;
        m
    }
}

/// Commits of one file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommitCosts {
    /// A new file.
    pub add: CommitCost,
    /// The same file changed.
    pub edit: CommitCost,
    /// The file removed.
    pub delete: CommitCost,
}

/// A fresh process's open and first query.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cold {
    /// Wall time of `pinpoint query` from start to exit: the median of three fresh
    /// processes (the index's files in the page cache, as after any recent use).
    pub query_s: f64,
    /// The first of them, right after the build (files the build did not leave in the
    /// page cache are read from disk).
    pub first_query_s: f64,
    /// The largest peak resident memory of the three.
    pub peak_rss_bytes: u64,
}

/// Warm latency of two pipelines.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Warm {
    /// What `pinpoint query` runs.
    pub default: Percentiles,
    /// Plain reciprocal-rank fusion of the two legs.
    pub hybrid: Percentiles,
    /// Median milliseconds of each stage of `default` (embed, dense, lexical, fuse,
    /// rerank, select, ...).
    pub default_stages_p50_ms: BTreeMap<String, f64>,
}

/// The dense search of the same index after `pinpoint compact`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Compacted {
    /// Segments after `compact`.
    pub segments: usize,
    /// Its wall time.
    pub compact_s: f64,
    /// Dense recall@10 against the exact scan, at the index's `ef`.
    pub recall_at_10: f64,
    /// Recall and queries/s per `ef`.
    pub curve: Vec<CurvePoint>,
    /// Single-thread dense queries/s at recall@10 0.98, interpolated ([`qps_at`]).
    pub qps_at_recall_0_98: Option<f64>,
}

/// The `--scale` report (`--json`: one object with a `scale` key).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScaleReport {
    /// Live chunks in the index.
    pub chunks: usize,
    /// The vectors its graph searches walk ([`crate::sq8`]).
    pub vector_precision: crate::sq8::VectorPrecision,
    /// Segments after the build (merged by policy).
    pub segments: usize,
    /// Real sentences embedded.
    pub base_vectors: usize,
    /// Whether the index keeps token codes ([`ScaleConfig::token_codes`]).
    pub token_codes: bool,
    /// Token codes stored per live chunk (0 without them), own codes and references.
    pub tokens_per_chunk: f64,
    /// Of those, references to a shared piece code ([`crate::late::share`]).
    pub token_references_per_chunk: f64,
    /// Mean cosine between a copy and its original vector (none: no copies at this size).
    pub copy_cosine_mean: Option<f64>,
    /// Build wall time.
    pub build_s: f64,
    /// Build time by stage (summed over commits and merges).
    pub build_stages: BTreeMap<String, f64>,
    /// Peak resident memory of this process by the end of the build.
    pub build_peak_rss_bytes: u64,
    /// Bytes on disk by folder.
    pub disk_bytes: BTreeMap<String, u64>,
    /// One-file commits.
    pub commit: CommitCosts,
    /// A fresh process's open + first query.
    pub cold: Cold,
    /// Warm latency.
    pub warm: Warm,
    /// Dense recall@10 against the exact scan, at the index's `ef`.
    pub recall_at_10: f64,
    /// That `ef`.
    pub ef: usize,
    /// Graph points inserted per second during the build.
    pub graph_inserts_per_s: f64,
    /// What the graph build compared rows with, and the kernel that ran
    /// ([`crate::graph_build::BuildDistances`]).
    pub graph_distances: String,
    /// Single-thread dense queries/s at recall@10 0.98, interpolated on the curve
    /// ([`qps_at`]; none: no `ef` reached it).
    pub qps_at_recall_0_98: Option<f64>,
    /// Recall and queries/s per `ef`.
    pub curve: Vec<CurvePoint>,
    /// Encoder path of the base sentences and the queries.
    pub encoder: String,
    /// The dense search after `pinpoint compact` (none: the build left one segment).
    pub compacted: Option<Compacted>,
    /// The build's largest anonymous (heap) and file-backed (mapped index files) resident
    /// memory, sampled every 100 ms, with the stage each was seen in: the peak RSS is
    /// their sum at some moment, and only the heap is memory the kernel cannot take back
    /// without swapping.
    pub build_memory: MemoryPeaks,
    /// Of the build's peak heap, what the benchmark itself holds: the base sentences'
    /// vectors and token codes ([`ScaleEmbedder::held_bytes`]), which a real build has not.
    pub harness_bytes: u64,
}

impl ScaleReport {
    /// The report as text.
    pub fn render(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mb = |b: u64| b as f64 / 1e6;
        let copies = match self.copy_cosine_mean {
            Some(c) => format!("copies at mean cosine {c:.3} to their sentence"),
            None => "no copies".into(),
        };
        writeln!(
            out,
            "scale: {} chunks in {} segments ({} real sentences, {copies}); encoder {}; vectors {:?}",
            self.chunks, self.segments, self.base_vectors, self.encoder, self.vector_precision
        )?;
        if self.token_codes {
            writeln!(
                out,
                "token codes: {:.1} a chunk, {:.1} of them a shared piece code (each copy has its sentence's)",
                self.tokens_per_chunk, self.token_references_per_chunk
            )?;
        } else {
            writeln!(
                out,
                "token codes: none (the default query skips token reranking)"
            )?;
        }
        writeln!(
            out,
            "build: {:.1} s, peak RSS {:.0} MB (sampled peaks: heap {:.0} MB, of it the benchmark's own base material {:.0} MB; mapped files {:.0} MB)",
            self.build_s,
            mb(self.build_peak_rss_bytes),
            mb(self.build_memory.heap_bytes),
            mb(self.harness_bytes),
            mb(self.build_memory.mapped_bytes)
        )?;
        let m = &self.build_memory;
        writeln!(
            out,
            "  sampled peaks by stage: heap in {}, mapped in {}, their largest sum {:.0} MB in {}",
            m.heap_stage,
            m.mapped_stage,
            mb(m.total_bytes),
            m.total_stage
        )?;
        for (s, t) in &self.build_stages {
            writeln!(out, "  {s:<12} {t:>9.1} s")?;
        }
        let total: u64 = self.disk_bytes.values().sum();
        writeln!(out, "disk: {:.0} MB", mb(total))?;
        for (s, b) in &self.disk_bytes {
            writeln!(out, "  {s:<12} {:>9.1} MB", mb(*b))?;
        }
        for (what, c) in [
            ("add", &self.commit.add),
            ("edit", &self.commit.edit),
            ("delete", &self.commit.delete),
        ] {
            let stages: Vec<String> = c
                .stages
                .iter()
                .filter(|x| *x.1 >= 0.0005)
                .map(|(s, v)| format!("{s} {:.0}", v * 1000.0))
                .collect();
            writeln!(
                out,
                "one-file {what:<6}: {:.3} s (median of {}; first {:.3} s), {:.2} MB written (ms: {})",
                c.seconds,
                c.rounds.len(),
                c.first_seconds,
                mb(c.bytes_written),
                stages.join(", ")
            )?;
        }
        writeln!(
            out,
            "cold query: {:.2} s (median of 3 fresh processes; the first {:.2} s), peak RSS {:.0} MB",
            self.cold.query_s,
            self.cold.first_query_s,
            mb(self.cold.peak_rss_bytes)
        )?;
        writeln!(
            out,
            "warm default: p50 {:.1} ms, p95 {:.1} ms",
            self.warm.default.p50_ms, self.warm.default.p95_ms
        )?;
        let stages: Vec<String> = self
            .warm
            .default_stages_p50_ms
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        writeln!(out, "  default stages, p50 ms: {}", stages.join(", "))?;
        writeln!(
            out,
            "warm hybrid:  p50 {:.1} ms, p95 {:.1} ms",
            self.warm.hybrid.p50_ms, self.warm.hybrid.p95_ms
        )?;
        writeln!(
            out,
            "dense recall@10 at ef {}: {:.4}; graph inserts/s {:.0} on {} distances",
            self.ef, self.recall_at_10, self.graph_inserts_per_s, self.graph_distances
        )?;
        render_curve(out, &self.curve, self.qps_at_recall_0_98)?;
        if let Some(c) = &self.compacted {
            writeln!(
                out,
                "after compact ({:.1} s, {} segments): recall@10 at ef {} {:.4}",
                c.compact_s, c.segments, self.ef, c.recall_at_10
            )?;
            render_curve(out, &c.curve, c.qps_at_recall_0_98)?;
        }
        Ok(())
    }
}

/// A dense curve, one line per `ef`, then its QPS at recall 0.98.
fn render_curve(
    out: &mut dyn std::io::Write,
    curve: &[CurvePoint],
    qps98: Option<f64>,
) -> std::io::Result<()> {
    for p in curve {
        writeln!(
            out,
            "  ef {:>4}: recall@10 {:.4}, {:.0} QPS (1 thread)",
            p.ef, p.recall10, p.qps
        )?;
    }
    match qps98 {
        Some(q) => writeln!(out, "QPS at recall 0.98: {q:.0}"),
        None => writeln!(out, "QPS at recall 0.98: no ef of the curve reached it"),
    }
}

/// Times each stage the engine reports, between one stage's start and the next.
#[derive(Default)]
struct StageClock {
    cur: Mutex<Option<(String, Instant)>>,
    total: Mutex<BTreeMap<String, f64>>,
    /// Units of work announced per stage (for `hnsw`: the points inserted).
    units: Mutex<BTreeMap<String, u64>>,
    /// The benchmark's base material, whose pages are handed back whenever a stage starts
    /// that makes no copies: a real build holds its model there, not the sentences, so the
    /// peak the report gives is the engine's.
    harness: Option<Arc<ScaleEmbedder>>,
}

impl StageClock {
    fn close(&self) {
        if let (Ok(mut cur), Ok(mut total)) = (self.cur.lock(), self.total.lock()) {
            if let Some((s, t)) = cur.take() {
                *total.entry(s).or_default() += t.elapsed().as_secs_f64();
            }
        }
    }
}

impl crate::engine::Progress for StageClock {
    fn start(&self, stage: &str, total: u64) {
        self.close();
        if stage != "embedding" {
            if let Some(h) = &self.harness {
                h.release_pages();
            }
        }
        if let Ok(mut u) = self.units.lock() {
            *u.entry(stage.to_string()).or_default() += total;
        }
        if let Ok(mut cur) = self.cur.lock() {
            *cur = Some((stage.to_string(), Instant::now()));
        }
    }
    fn finish(&self) {
        self.close();
    }
}

/// Samples the process's anonymous and file-backed resident memory every 100 ms (Linux;
/// zeros elsewhere) and keeps the largest of each, with the build stage running when it
/// was seen (so that a reader knows which stage to shrink).
struct MemorySampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<MemoryPeaks>>,
}

/// The largest resident memory sampled every 100 ms during a build, and the stage each
/// was seen in.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryPeaks {
    /// The largest anonymous (heap) resident memory.
    pub heap_bytes: u64,
    /// The stage running when it was seen.
    pub heap_stage: String,
    /// The largest file-backed resident memory (mapped index files, the executable).
    pub mapped_bytes: u64,
    /// The stage running when it was seen.
    pub mapped_stage: String,
    /// The largest sum of the two in one sample.
    pub total_bytes: u64,
    /// The stage running when it was seen.
    pub total_stage: String,
}

impl MemorySampler {
    fn start(clock: Arc<StageClock>) -> MemorySampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut p = MemoryPeaks::default();
            loop {
                if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
                    let kb = |key: &str| -> u64 {
                        s.lines()
                            .find_map(|l| l.strip_prefix(key))
                            .and_then(|v| v.split_whitespace().next()?.parse().ok())
                            .unwrap_or(0)
                            * 1024
                    };
                    let (anon, file) = (kb("RssAnon:"), kb("RssFile:") + kb("RssShmem:"));
                    let stage = || {
                        clock
                            .cur
                            .lock()
                            .ok()
                            .and_then(|c| c.as_ref().map(|(s, _)| s.clone()))
                            .unwrap_or_else(|| "between stages".into())
                    };
                    if anon > p.heap_bytes {
                        (p.heap_bytes, p.heap_stage) = (anon, stage());
                    }
                    if file > p.mapped_bytes {
                        (p.mapped_bytes, p.mapped_stage) = (file, stage());
                    }
                    if anon + file > p.total_bytes {
                        (p.total_bytes, p.total_stage) = (anon + file, stage());
                    }
                }
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return p;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        MemorySampler {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> MemoryPeaks {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

/// Bytes this process has written (`wchar`), 0 where unknown.
fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident memory of this process (`VmHWM`), 0 where unknown.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs `exe args`, returning its wall time and peak resident memory.
///
/// The peak is the child's own `VmHWM`, read every 2 ms while it runs: `wait4`'s
/// `ru_maxrss` would also count the parent's memory, which a spawned child shares until
/// it executes the program (Linux folds that into the child's figure).
fn run_measured(exe: &Path, args: &[&str]) -> Result<Cold> {
    let t = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Error::io(exe, e))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_file) {
            let hwm = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
            if let Some(kb) = hwm {
                peak = peak.max(kb * 1024);
            }
        }
        match child.try_wait().map_err(|e| Error::io(exe, e))? {
            Some(st) => break st,
            None => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    };
    if !status.success() {
        return Err(Error::invalid(
            "bench",
            format!("the cold query ({}) failed: {status}", exe.display()),
        ));
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(Cold {
        query_s: secs,
        first_query_s: secs,
        peak_rss_bytes: peak,
    })
}

/// Writes the vectors, queries and exact answers for the reference run (see
/// [`ScaleConfig::export`]).
fn export(
    segs: &crate::segment::Segments,
    queries: &[Vec<f32>],
    exact: &[Vec<u64>],
    prefix: &Path,
) -> Result<()> {
    use std::io::Write;
    let file = |ext: &str| -> Result<std::io::BufWriter<std::fs::File>> {
        let p = prefix.with_extension(ext);
        Ok(std::io::BufWriter::new(
            std::fs::File::create(&p).map_err(|e| Error::io(&p, e))?,
        ))
    };
    let io = |e: std::io::Error| Error::io(prefix, e);
    let mut v = file("f32")?;
    for p in 0..segs.len() {
        for x in segs.row(p) {
            v.write_all(&x.to_le_bytes()).map_err(io)?;
        }
    }
    v.flush().map_err(io)?;
    let mut q = file("queries")?;
    for x in queries.iter().flatten() {
        q.write_all(&x.to_le_bytes()).map_err(io)?;
    }
    q.flush().map_err(io)?;
    let mut x = file("exact")?;
    for ids in exact {
        for id in ids {
            let pos = segs.position(*id).unwrap_or(u32::MAX as usize) as u32;
            x.write_all(&pos.to_le_bytes()).map_err(io)?;
        }
    }
    x.flush().map_err(io)
}

/// Builds the index in `work/scale-index` and measures it.
pub fn run(
    cfg: &ScaleConfig,
    engine_cfg: EngineConfig,
    work: &Path,
    log: &dyn Fn(&str),
) -> Result<ScaleReport> {
    let mut report = ScaleReport::default();
    let ds = Dataset::load_beir(&cfg.beir, "test")?;
    let texts = sentence_texts(&ds.corpus, cfg.base.min(cfg.chunks));
    if texts.is_empty() {
        return Err(Error::invalid("bench", "the BEIR corpus has no sentences"));
    }
    let md = crate::models::ModelDir::open(
        engine_cfg
            .model_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::models::DEFAULT_MODEL_DIR)),
    )?;
    let real: Arc<dyn Embedder> = Arc::new(crate::embed::BertEmbedder::with_precision(
        &md,
        engine_cfg.device,
        engine_cfg.new_index_precision(),
    )?);
    report.encoder = real.encoder_path();
    // The sentences' vectors (and token codes) are kept beside the scratch index, keyed
    // by corpus, model, precision and count: a second run at another size does not embed
    // them again.
    let key = format!(
        "{}-{}-{}-{}",
        &ds.corpus_hash[..ds.corpus_hash.len().min(16)],
        real.spec().id.replace(['/', '@'], "_"),
        real.precision(),
        texts.len()
    );
    let scale = Arc::new(ScaleEmbedder::prepare(
        real.clone(),
        &texts,
        cfg.token_codes,
        cfg.sigma,
        work,
        &key,
        log,
    )?);
    report.token_codes = cfg.token_codes;
    report.harness_bytes = scale.held_bytes();
    let nb = texts.len();
    // How close copies stay: mean cosine of 1,000 copies to their originals.
    let probes = 1000.min(cfg.chunks.saturating_sub(nb));
    let mut cos = 0.0;
    for i in 0..probes {
        let (b, c) = (i % nb, 1 + (i / nb) as u64);
        cos += dot(&scale.vector(b, 0), &scale.vector(b, c)) as f64;
    }
    report.copy_cosine_mean = (probes > 0).then(|| cos / probes as f64);
    report.base_vectors = nb;

    let dir = work.join("scale-index");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let build_cfg = EngineConfig {
        embedder: Some(scale.clone()),
        without_token_codes: !cfg.token_codes,
        ..engine_cfg.clone()
    };
    let clock = Arc::new(StageClock {
        harness: Some(scale.clone()),
        ..StageClock::default()
    });
    let sampler = MemorySampler::start(clock.clone());
    let t = Instant::now();
    let mut e = Engine::create(&dir, build_cfg.clone())?;
    e.set_progress(clock.clone());
    let mut i = 0;
    while i < cfg.chunks {
        let end = (i + cfg.batch.max(1)).min(cfg.chunks);
        for j in i..end {
            let (b, c) = (j % nb, (j / nb) as u64);
            e.add_document(&format!("c{c}/s{b}"), "", &tagged(&texts[b], c, b))?;
        }
        e.commit()?;
        log(&format!(
            "{end} chunks, {} segments, {:.0} s",
            e.manifest().segments.len(),
            t.elapsed().as_secs_f64()
        ));
        i = end;
    }
    // The batches are a folder sync's checkpoints; a sync that wrote most of the index
    // closes with one graph (`Engine::settle`), and so does this build.
    log("settling ...");
    e.settle()?;
    clock.close();
    report.build_s = t.elapsed().as_secs_f64();
    // Sizes below count only the index's files, not those still being unlinked.
    e.wait_for_cleanup();
    report.build_stages = clock.total.lock().map(|m| m.clone()).unwrap_or_default();
    report.build_peak_rss_bytes = peak_rss();
    report.build_memory = sampler.stop();
    report.chunks = e.segments().len();
    report.vector_precision = e.manifest().vector_precision;
    report.segments = e.manifest().segments.len();
    report.tokens_per_chunk = e.segments().tokens() as f64 / report.chunks.max(1) as f64;
    report.token_references_per_chunk =
        e.segments().token_references() as f64 / report.chunks.max(1) as f64;
    let hnsw_s = report.build_stages.get("hnsw").copied().unwrap_or(0.0);
    // Every point inserted into a graph, merges' included (a merge inserts the rows its
    // seed graph lacks), over the time the graph stage took.
    let graphed: u64 = clock
        .units
        .lock()
        .ok()
        .and_then(|u| u.get("hnsw").copied())
        .unwrap_or(0);
    report.graph_inserts_per_s = if hnsw_s > 0.0 {
        graphed as f64 / hnsw_s
    } else {
        0.0
    };
    report.graph_distances = format!(
        "{:?} ({})",
        crate::graph_build::BuildDistances::default(),
        crate::sq8::code_kernel().name()
    );
    for sub in [
        "chunks", "dense", "late", "lexical", "near", "docs", "meta", "del",
    ] {
        report
            .disk_bytes
            .insert(sub.to_string(), dir_size(&dir.join(sub)));
    }

    // One file added, edited, removed.
    log("one-file commits ...");
    let probe =
        |e: &mut Engine, f: &mut dyn FnMut(&mut Engine) -> Result<()>| -> Result<CommitCost> {
            let before = clock.total.lock().map(|m| m.clone()).unwrap_or_default();
            let (w, t) = (bytes_written(), Instant::now());
            f(e)?;
            e.commit()?;
            let seconds = t.elapsed().as_secs_f64();
            clock.close();
            let after = clock.total.lock().map(|m| m.clone()).unwrap_or_default();
            let stages = after
                .into_iter()
                .map(|(s, v)| {
                    let d = v - before.get(&s).copied().unwrap_or(0.0);
                    (s, d)
                })
                .filter(|x| x.1 > 0.0)
                .collect();
            Ok(CommitCost {
                seconds,
                bytes_written: bytes_written().saturating_sub(w),
                stages,
                ..CommitCost::default()
            })
        };
    let note = "Tidal range depends on the alignment of the sun and the moon.";
    let (mut adds, mut edits, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..COMMIT_ROUNDS {
        let file = format!("probe-{i}.txt");
        adds.push(probe(&mut e, &mut |e| {
            e.add_document(&file, "probe", note)
        })?);
        edits.push(probe(&mut e, &mut |e| {
            e.add_document(
                &file,
                "probe",
                "Spring tides follow the full and the new moon.",
            )
        })?);
        deletes.push(probe(&mut e, &mut |e| e.remove_document(&file))?);
    }
    report.commit.add = CommitCost::median_of(adds);
    report.commit.edit = CommitCost::median_of(edits);
    report.commit.delete = CommitCost::median_of(deletes);
    drop(e);

    let mut queries: Vec<String> = crate::eval::beir_labelled(&ds)
        .into_iter()
        .map(|q| q.1)
        .collect();
    queries.truncate(cfg.queries.max(1));
    if let (Some(exe), Some(q)) = (&cfg.exe, queries.first()) {
        log("cold query ...");
        let d = dir.to_string_lossy().to_string();
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(run_measured(exe, &["query", q, "--index", &d, "--json"])?);
        }
        let mut secs: Vec<f64> = runs.iter().map(|r| r.query_s).collect();
        secs.sort_by(f64::total_cmp);
        report.cold = Cold {
            query_s: secs[1],
            first_query_s: runs[0].query_s,
            peak_rss_bytes: runs.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0),
        };
    }

    log(&format!("warm queries ({}) ...", queries.len()));
    let r = Engine::open_read_only(&dir, engine_cfg.clone())?;
    let time = |p: &Pipeline| -> Result<(Percentiles, BTreeMap<String, f64>)> {
        let mut secs = Vec::with_capacity(queries.len());
        let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for q in &queries {
            let t = Instant::now();
            let out = r.search_detailed(&SearchRequest::new(q.as_str(), 5).pipeline(p.clone()))?;
            secs.push(t.elapsed().as_secs_f64());
            for (stage, s) in out.timings {
                stages.entry(stage.to_string()).or_default().push(s);
            }
        }
        let p50 = stages
            .into_iter()
            .map(|(k, v)| (k, Percentiles::of(v).p50_ms))
            .collect();
        Ok((Percentiles::of(secs), p50))
    };
    (report.warm.default, report.warm.default_stages_p50_ms) = time(&r.default_pipeline())?;
    report.warm.hybrid = time(&Pipeline::rrf())?.0;

    log("dense recall ...");
    let segs = r.segments();
    let qv: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| real.embed_query(q))
        .collect::<Result<_>>()?;
    let exact: Vec<Vec<u64>> = qv
        .iter()
        .map(|q| segs.exact(q, 10).into_iter().map(|x| x.0).collect())
        .collect();
    if let Some(prefix) = &cfg.export {
        log(&format!("exporting vectors to {} ...", prefix.display()));
        export(segs, &qv, &exact, prefix)?;
    }
    report.ef = engine_cfg.hnsw.ef_search;
    let d = dense_curve(segs, &qv, &exact, report.ef)?;
    (report.recall_at_10, report.curve, report.qps_at_recall_0_98) = (d.0, d.1, d.2);
    drop(r);

    // The same index after `pinpoint compact`: one graph per 2M chunks instead of the
    // segments the merge policy left.
    if report.segments > 1 {
        log("compacting ...");
        let t = Instant::now();
        let mut w = Engine::open(&dir, build_cfg)?;
        w.compact()?;
        let compact_s = t.elapsed().as_secs_f64();
        let segments = w.manifest().segments.len();
        drop(w);
        let r = Engine::open_read_only(&dir, engine_cfg.clone())?;
        let (recall_at_10, curve, qps_at_recall_0_98) =
            dense_curve(r.segments(), &qv, &exact, report.ef)?;
        report.compacted = Some(Compacted {
            segments,
            compact_s,
            recall_at_10,
            curve,
            qps_at_recall_0_98,
        });
    }
    Ok(report)
}

/// Dense recall@10 against `exact` at `ef`, the recall/QPS curve (one thread) and the QPS
/// at the first `ef` reaching recall 0.98.
fn dense_curve(
    segs: &crate::segment::Segments,
    qv: &[Vec<f32>],
    exact: &[Vec<u64>],
    ef: usize,
) -> Result<(f64, Vec<CurvePoint>, Option<f64>)> {
    let recall = |ef: crate::dense::Ef| -> Result<(f64, f64)> {
        let t = Instant::now();
        let mut hits = 0;
        for (q, ex) in qv.iter().zip(exact) {
            hits += segs
                .search(q, 10, ef)?
                .iter()
                .filter(|(id, _)| ex.contains(id))
                .count();
        }
        let qps = qv.len() as f64 / t.elapsed().as_secs_f64();
        Ok((hits as f64 / (qv.len() * 10).max(1) as f64, qps))
    };
    // At the default width as a query uses it: scaled to each graph's size.
    let at_ef = recall(crate::dense::Ef::Scaled(ef))?.0;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::invalid("bench", e.to_string()))?;
    let mut curve = Vec::new();
    for ef in [16, 32, 64, 128, 256, 512] {
        let (recall10, qps) = pool.install(|| recall(ef.into()))?;
        curve.push(CurvePoint { ef, recall10, qps });
    }
    let qps98 = qps_at(&curve, 0.98);
    Ok((at_ef, curve, qps98))
}

/// Queries/s at `target` recall, interpolated linearly between the two points of `curve`
/// around it: the grid doubles `ef`, so the first point past the target can run at half
/// the speed of one just short of it, and a comparison of two systems at their first
/// point past it compares the grid more than the systems.
/// `benches/reference/hnswlib_scale.py` applies the same rule.
pub fn qps_at(curve: &[CurvePoint], target: f64) -> Option<f64> {
    let mut prev: Option<&CurvePoint> = None;
    for p in curve {
        if p.recall10 >= target {
            return Some(match prev {
                Some(a) if a.recall10 < p.recall10 => {
                    let f = (target - a.recall10) / (p.recall10 - a.recall10);
                    a.qps + f * (p.qps - a.qps)
                }
                _ => p.qps,
            });
        }
        prev = Some(p);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qps_at_a_recall_is_interpolated_between_the_points_around_it() {
        let p = |ef, recall10, qps| CurvePoint { ef, recall10, qps };
        let curve = [
            p(32, 0.95, 11_000.0),
            p(64, 0.978, 7_105.0),
            p(128, 0.991, 3_487.0),
        ];
        // 0.98 is 2/13 of the way from 0.978 to 0.991: 7105 - 2/13 * 3618.
        let q = qps_at(&curve, 0.98).unwrap();
        assert!((q - 6_548.4).abs() < 0.1, "{q}");
        // A first point already past the target is taken as it is; none reached: none.
        assert_eq!(qps_at(&curve, 0.9), Some(11_000.0));
        assert_eq!(qps_at(&curve, 0.999), None);
    }
}
