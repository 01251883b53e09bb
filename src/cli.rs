//! Command-line interface: clap definitions and one function per subcommand. No retrieval
//! logic lives here.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pinpoint::api::{kind_of, Answer, QueryOptions};
use pinpoint::{
    ChunkConfig, DeviceChoice, Engine, EngineConfig, Progress, RerankConfig, RerankKind,
};

/// Local hybrid retrieval: index a folder, ask a question, get few precise passages.
#[derive(Parser, Debug)]
#[command(name = "pinpoint", version, about)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Index a folder (incrementally when the index exists).
    Index(IndexArgs),
    /// Ask the index a question.
    Query(QueryArgs),
    /// Show what an index holds.
    Stats(StatsArgs),
    /// Measure retrieval quality on a BEIR collection or on your own labelled queries.
    Eval(EvalArgs),
    /// Keep the index in sync with a folder as files change (Ctrl-C stops cleanly).
    Watch(WatchArgs),
    /// Check every file's checksum and the agreement of the stores.
    Verify(StatsArgs),
    /// Rewrite the index without tombstones (rebuilds the HNSW graph).
    Compact(StatsArgs),
    /// Measure speed: embedding, index build, query latency per stage, cold query, dense
    /// and lexical throughput.
    Bench(BenchArgs),
    /// Choose fusion and expansion settings on labelled queries (cross-validated) and store
    /// them as the index's defaults.
    Tune(TuneArgs),
    /// Answer questions over local HTTP (POST /query with JSON, GET /query?q=...), following
    /// the index as it is re-indexed.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Address to listen on. The default answers this machine only; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:7700")]
    addr: String,
    /// Requests answered at once (default: the number of CPU cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Do not print a line per request.
    #[arg(long)]
    quiet: bool,
    /// Expansion command run for every question (requests may not name one: it runs a
    /// program on this machine).
    #[arg(long)]
    expand_cmd: Option<String>,
    /// Cross-encoder folder every question is reranked with (requests may not name one).
    #[arg(long)]
    cross_encoder: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// BEIR folder supplying texts and queries (default: the SciFact subset bundled for the
    /// tests, 501 abstracts; name the whole collection, or your own, for larger runs).
    #[arg(long, default_value = "tests/data/scifact-subset")]
    beir: PathBuf,
    /// Documents embedded and indexed.
    #[arg(long, default_value_t = 300)]
    docs: usize,
    /// Queries timed (0: all judged test queries).
    #[arg(long, default_value_t = 0)]
    queries: usize,
    /// Vectors of the dense recall/throughput curve.
    #[arg(long, default_value_t = 100_000)]
    dense_vectors: usize,
    /// Also measure the dense curve on this many real embeddings (sentences of the BEIR
    /// corpus; 0: skipped, as embedding them takes minutes on a CPU).
    #[arg(long, default_value_t = 0)]
    real_vectors: usize,
    /// Time queries on this index instead of the one built from --docs documents.
    #[arg(long)]
    query_index: Option<PathBuf>,
    /// Write the dense benchmark vectors here (raw f32; queries beside it) for the reference run.
    #[arg(long)]
    export_vectors: Option<PathBuf>,
    /// Folder for the benchmark's scratch index.
    #[arg(long, default_value = "index-data/bench")]
    work: PathBuf,
    /// Time queries with a reranker on the top 20 (`tokens`, `sentence` or a cross-encoder
    /// folder) added to the default pipeline.
    #[arg(long)]
    rerank: Option<String>,
    /// Time queries with this document-expansion weight instead of the index's (0: none).
    #[arg(long)]
    expansion: Option<f32>,
    /// Print exactly one JSON object.
    #[arg(long)]
    json: bool,
    /// Model folder.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute device.
    #[arg(long, default_value = "auto")]
    device: String,
}

#[derive(Args, Debug)]
struct WatchArgs {
    /// Folder to watch.
    folder: PathBuf,
    #[command(flatten)]
    common: Common,
    /// Quiet time before a batch of changes is indexed, in milliseconds.
    #[arg(long, default_value_t = 500)]
    debounce_ms: u64,
}

#[derive(Args, Debug)]
struct TuneArgs {
    /// BEIR folder.
    #[arg(long, conflicts_with = "queries", required_unless_present = "queries")]
    beir: Option<PathBuf>,
    /// Your labelled queries (JSON lines), against the index given by --index.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// qrels split to tune on (never the split you report).
    #[arg(long, default_value = "train")]
    split: String,
    /// Metric to maximise: ndcg@10 or context_precision@5.
    #[arg(long, default_value = "ndcg@10")]
    metric: String,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Tune this reranker's depth and weight (`tokens`, `sentence` or a cross-encoder
    /// folder) instead of the default pipeline's own (token MaxSim when the index keeps
    /// token codes). Each query is reranked once at the deepest depth searched; a reranker
    /// that encodes passages at query time is slow (about a second per query on 2 cores).
    /// Adopted only when it wins held out. Several, comma-separated (`tokens,sentence`),
    /// are each searched with the rest of the pipeline, and the one that holds out best is
    /// adopted (the index's own, if listed, gives way only to a gain above noise).
    #[arg(long, value_delimiter = ',')]
    rerank: Vec<String>,
    /// Cut-off stage: the most handed recall (of the 5 passages `query` hands over by
    /// default) the adaptive cut-off may give up for precision.
    #[arg(long, default_value_t = 0.01)]
    max_recall_loss: f64,
    /// Print the chosen settings without storing them in the index.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Index folder.
    #[arg(long, default_value = "index-data")]
    index: PathBuf,
    /// Model folder (config.json, tokenizer.json, model.safetensors). Default: the one the
    /// index was built with, else models/all-MiniLM-L6-v2.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute device: auto, cpu, cuda or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

impl Common {
    fn config(&self) -> Result<EngineConfig> {
        Ok(EngineConfig {
            model_dir: self.model.clone(),
            device: self.device.parse::<DeviceChoice>()?,
            ..Default::default()
        })
    }
}

#[derive(Args, Debug)]
struct IndexArgs {
    /// Folder to index.
    folder: PathBuf,
    #[command(flatten)]
    common: Common,
    /// Delete the existing index first and build from scratch.
    #[arg(long)]
    rebuild: bool,
    /// Chunk size in model tokens (new indexes only).
    #[arg(long, default_value_t = 256)]
    chunk_tokens: usize,
    /// Overlap between chunks in tokens (new indexes only).
    #[arg(long, default_value_t = 32)]
    overlap: usize,
    /// Keep no token codes (new indexes only): about 48 bytes less per stored token, but
    /// queries are then not reranked by token MaxSim unless asked (and then slowly).
    #[arg(long)]
    no_token_codes: bool,
    /// No document expansion (new indexes only): the lexical index then holds no words of
    /// each chunk's dense neighbours, and the hybrid's lexical leg is plain BM25.
    #[arg(long)]
    no_expansion: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct QueryArgs {
    /// The question.
    text: String,
    #[command(flatten)]
    common: Common,
    /// Number of hits at most: the adaptive cut-off hands over fewer when the best ones
    /// stand clear of the rest (see --no-cutoff).
    #[arg(short, default_value_t = 5)]
    k: usize,
    /// Hand over all k hits: no adaptive cut-off.
    #[arg(long)]
    no_cutoff: bool,
    /// Hand over the closest passages even when the question shares no word with the
    /// index and no passage is close to it in meaning.
    #[arg(long)]
    no_abstain: bool,
    /// Retrieval mode: hybrid, dense or lexical.
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Fusion of the two legs in hybrid mode: the index default (z-score of both scores for
    /// every candidate), `rrf` (reciprocal rank fusion, k = 60, top 100 of each leg),
    /// `zscore` or `minmax` (equal weights).
    #[arg(long)]
    fusion: Option<String>,
    /// Rerank the top candidates: with --cross-encoder DIR when given, else with the
    /// bi-encoder reranker named by --reranker (token-level MaxSim unless named).
    #[arg(long, conflicts_with = "no_rerank")]
    rerank: bool,
    /// Bi-encoder reranker: `tokens` (token-level late interaction, MaxSim) or `sentence`
    /// (best sentence's cosine). Implies --rerank.
    #[arg(long, conflicts_with_all = ["no_rerank", "cross_encoder"])]
    reranker: Option<String>,
    /// Do not rerank, even when the index's defaults do.
    #[arg(long)]
    no_rerank: bool,
    /// Cross-encoder folder (BertForSequenceClassification) to rerank with. Implies --rerank.
    #[arg(long, conflicts_with = "no_rerank")]
    cross_encoder: Option<PathBuf>,
    /// Candidates reranked (default 20, or what `pinpoint tune` stored in the index).
    #[arg(long, conflicts_with = "no_rerank")]
    rerank_depth: Option<usize>,
    /// Candidates taken from each leg before fusion (default 100, or what `pinpoint tune`
    /// stored in the index).
    #[arg(long)]
    depth: Option<usize>,
    /// Token budget for all returned passages together (approximate tokens). Passages are
    /// never cut: the best one is returned whole even when it alone is over the budget.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Show each hit's leg ranks and scores, fused and rerank scores, and why it was kept.
    #[arg(long)]
    explain: bool,
    /// Boost paths matching a glob: GLOB=FACTOR (repeatable), e.g. 'docs/**=1.5'.
    #[arg(long)]
    boost: Vec<String>,
    /// Prefer recent files: halve a file's score every N days of age.
    #[arg(long)]
    recency_days: Option<f32>,
    /// Expansion command: reads the query on stdin, prints extra queries one per line
    /// (e.g. a local LLM writing a hypothetical answer). Killed after 60 s.
    #[arg(long)]
    expand_cmd: Option<String>,
    /// Weight of each chunk's dense neighbours' words in the lexical leg (document
    /// expansion; 0 turns it off). Default: the index's (0.2).
    #[arg(long)]
    expansion: Option<f32>,
}

impl QueryArgs {
    /// The flags as the library's options (the same a `pinpoint serve` request carries).
    fn options(&self) -> QueryOptions {
        QueryOptions {
            k: Some(self.k),
            mode: Some(self.mode.clone()),
            fusion: self.fusion.clone(),
            rerank: self.rerank,
            no_rerank: self.no_rerank,
            reranker: self.reranker.clone(),
            cross_encoder: self.cross_encoder.clone(),
            rerank_depth: self.rerank_depth,
            depth: self.depth,
            max_tokens: self.max_tokens,
            no_cutoff: self.no_cutoff,
            no_abstain: self.no_abstain,
            explain: self.explain,
            boost: self.boost.clone(),
            recency_days: self.recency_days,
            expand_cmd: self.expand_cmd.clone(),
            expansion: self.expansion,
        }
    }
}

#[derive(Args, Debug)]
struct StatsArgs {
    #[command(flatten)]
    common: Common,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
    #[arg(long, conflicts_with = "queries", required_unless_present = "queries")]
    beir: Option<PathBuf>,
    /// Your labelled queries (JSON lines of {"query": str, "relevant": [path or id, ...]}),
    /// evaluated against the existing index given by --index.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// qrels split.
    #[arg(long, default_value = "test")]
    split: String,
    /// What is ranked: `document` (each by its best chunk; the default with --beir, whose
    /// judgements are per document) or `chunk` (what `query` runs; the default with
    /// --queries). Files are judged by path either way.
    #[arg(long, value_parser = ["document", "chunk"])]
    granularity: Option<String>,
    /// Comma-separated modes: lexical, dense, hybrid (plain RRF), fused, prf, rerank
    /// (sentence reranker), tokens (token-level reranker, what `query --rerank` runs),
    /// default (what `query` runs).
    #[arg(
        long,
        default_value = "lexical,dense,hybrid,default",
        value_delimiter = ','
    )]
    modes: Vec<String>,
    /// Print exactly one JSON object.
    #[arg(long)]
    json: bool,
    /// Show the N worst queries with their funnel.
    #[arg(long, default_value_t = 0)]
    failures: usize,
    /// Evaluate only the first N judged queries.
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Chunk size in model tokens (BEIR index builds).
    #[arg(long, default_value_t = 256)]
    chunk_tokens: usize,
    /// Overlap in tokens (BEIR index builds).
    #[arg(long, default_value_t = 32)]
    overlap: usize,
    /// Weight of document expansion in the modes that have it (fused, prf, rerank,
    /// tokens, default) instead of the index's; 0 turns it off.
    #[arg(long)]
    expansion: Option<f32>,
    /// The mode every other one is compared with, query by query (paired randomisation
    /// test and the bootstrap interval of the difference). Default: the first of --modes;
    /// a baseline not among them is evaluated too.
    #[arg(long)]
    baseline: Option<String>,
    /// Write each mode's ranking (top 100 per query) to DIR/<mode>.trec as a TREC run file,
    /// for trec_eval, ranx or a comparison with another system's runs.
    #[arg(long, value_name = "DIR")]
    runs: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// An error and its causes on one line, each told once. Several errors (I/O errors with
/// their path, ours wrapping tantivy's) already print their cause in their own message, and
/// `{:#}` would print it again after them.
pub fn error_message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if msg.contains(&s) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&s);
    }
    msg
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Index(a) => index(a),
        Command::Query(a) => query(a),
        Command::Stats(a) => stats(a),
        Command::Eval(a) => eval(a),
        Command::Tune(a) => tune(a),
        Command::Watch(a) => watch(a),
        Command::Serve(a) => serve(a),
        Command::Bench(a) => bench(a),
        Command::Verify(a) => verify(a),
        Command::Compact(a) => compact(a),
    }
}

/// indicatif bars, one per stage.
struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, stage: &str, total: u64) {
        self.finish();
        if total == 0 {
            return;
        }
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(stage.to_string());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(pb);
        }
    }
    fn inc(&self, n: u64) {
        if let Ok(b) = self.bar.lock() {
            if let Some(pb) = b.as_ref() {
                pb.inc(n);
            }
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(pb) = b.take() {
                pb.finish_and_clear();
            }
        }
    }
}

fn index(a: IndexArgs) -> Result<()> {
    let t0 = Instant::now();
    let mut cfg = a.common.config()?;
    cfg.chunking = ChunkConfig {
        max_tokens: a.chunk_tokens,
        overlap: a.overlap,
    };
    cfg.without_token_codes = a.no_token_codes;
    if a.no_expansion {
        cfg.neighbours = Some(0);
    }
    let bars = Arc::new(Bars {
        bar: Mutex::new(None),
    });
    let r = if a.rebuild {
        // Built beside the old index, which is replaced only once the new one is committed.
        Engine::rebuild(&a.common.index, cfg, &a.folder, bars)?.1
    } else {
        let mut engine = Engine::open_or_create(&a.common.index, cfg)?;
        engine.set_progress(bars);
        engine.add_folder(&a.folder)?
    };
    let secs = t0.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["peak_rss_bytes"] = serde_json::json!(peak_rss_bytes());
        serde_json::to_writer(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    print_summary(&mut out, &r, secs)?;
    Ok(())
}

fn print_summary(out: &mut impl Write, r: &pinpoint::IndexReport, secs: f64) -> Result<()> {
    let indexed = r.added + r.updated + r.unchanged + r.renamed;
    let rss = peak_rss_bytes()
        .map(|b| format!(", peak memory {}", human_bytes(b)))
        .unwrap_or_default();
    // Files of other types are not errors, but saying how many tells a user why a `.docx`
    // they expected is not found.
    let other = match r.unsupported {
        0 => String::new(),
        1 => ", 1 file of an unsupported type left out".to_string(),
        n => format!(", {n} files of unsupported types left out"),
    };
    let count = |n: usize, noun: &str| format!("{n} {noun}{}", if n == 1 { "" } else { "s" });
    writeln!(
        out,
        "indexed {} (added {}, updated {}, renamed {}, removed {}, unchanged {}), skipped {}{other}, {} ({} embedded) in {secs:.1} s{rss}",
        count(indexed, "file"),
        r.added,
        r.updated,
        r.renamed,
        r.removed,
        r.unchanged,
        r.skipped.len(),
        count(r.chunks_total, "chunk"),
        r.chunks_embedded
    )?;
    for s in r.skipped.iter().take(5) {
        writeln!(out, "  skipped {}: {}", s.path.display(), s.reason)?;
    }
    if r.skipped.len() > 5 {
        writeln!(out, "  ... and {} more skipped", r.skipped.len() - 5)?;
    }
    Ok(())
}

fn query(a: QueryArgs) -> Result<()> {
    let engine = Engine::open_read_only(&a.common.index, a.common.config()?)?;
    let req = a.options().request(&engine, &a.text)?;
    let mode = req.mode;
    let found = engine.search_detailed(&req)?;
    if let Some(note) = &found.note {
        eprintln!("note: {note}");
    }
    let hits = &found.hits;
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = Answer::new(&a.text, mode, &found);
        serde_json::to_writer(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    for h in hits {
        let heading = h
            .heading
            .as_deref()
            .map(|x| format!("  [{x}]"))
            .unwrap_or_default();
        let page = kind_of(&h.path).location_prefix();
        writeln!(
            out,
            "{}:{page}{}-{}  {:.4}{heading}",
            h.path, h.line_start, h.line_end, h.score
        )?;
        if let Some(e) = &h.explain {
            let r = |x: Option<usize>| x.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            let f = |x: Option<f32>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
            writeln!(
                out,
                "    [lexical rank {} bm25 {} | dense rank {} cos {} | fused {:.4} (rank {}) | rerank {} (weight {:.2}) | rules x{:.2} | final {:.4} | {}]",
                r(e.lexical_rank),
                f(e.lexical_score),
                r(e.dense_rank),
                f(e.dense_score),
                e.fused_score,
                e.fused_rank,
                f(e.rerank_score),
                e.rerank_weight,
                e.rule_factor,
                e.final_score,
                e.kept
            )?;
        }
        for line in snippet(&h.text, 4, 300) {
            writeln!(out, "    {line}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The first `lines` non-empty lines of `text`, cut at `chars` characters in all.
fn snippet(text: &str, lines: usize, chars: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut left = chars;
    for l in text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .take(lines)
    {
        if left == 0 {
            break;
        }
        let cut: String = l.chars().take(left).collect();
        left -= cut.chars().count();
        let more = cut.len() < l.len();
        out.push(if more { format!("{cut}…") } else { cut });
    }
    out
}

fn serve(a: ServeArgs) -> Result<()> {
    let mut server = pinpoint::serve::Server::bind(&a.addr, &a.common.index, a.common.config()?)?;
    server.set_log(!a.quiet);
    server.set_defaults(&QueryOptions {
        expand_cmd: a.expand_cmd.clone(),
        cross_encoder: a.cross_encoder.clone(),
        ..Default::default()
    })?;
    let server = Arc::new(server);
    let s2 = server.clone();
    ctrlc::set_handler(move || s2.stop()).context("installing the Ctrl-C handler")?;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let addr = server
        .addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| a.addr.clone());
    // One line a script can wait for (and read the port from, with --addr 127.0.0.1:0).
    eprintln!(
        "listening on http://{addr} (index {}, generation {}, {threads} threads); Ctrl-C stops",
        a.common.index.display(),
        server.generation()
    );
    server.run(threads);
    eprintln!("stopped");
    Ok(())
}

fn stats(a: StatsArgs) -> Result<()> {
    let engine = Engine::open_read_only(&a.common.index, a.common.config()?)?;
    let s = engine.stats()?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &s)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "index       {}", s.index)?;
    writeln!(out, "generation  {}", s.generation)?;
    writeln!(out, "documents   {}", s.documents)?;
    writeln!(out, "chunks      {}", s.chunks)?;
    writeln!(out, "model       {} ({})", s.model, s.model_dir)?;
    writeln!(out, "dimension   {}", s.dimension)?;
    writeln!(
        out,
        "chunking    {} tokens, overlap {}",
        s.chunk_tokens, s.chunk_overlap
    )?;
    writeln!(
        out,
        "dense       {}",
        if s.hnsw { "HNSW graph" } else { "exact scan" }
    )?;
    match s.token_codes {
        Some(n) => writeln!(out, "token codes {n} tokens (reranking by MaxSim)")?,
        None => writeln!(out, "token codes none (built with --no-token-codes)")?,
    }
    match s.neighbours {
        0 => writeln!(
            out,
            "expansion   none (built with --no-expansion, or before it existed: `index --rebuild` adds it)"
        )?,
        1 => writeln!(
            out,
            "expansion   each chunk holds its nearest chunk's words (another file's, at cosine {} or more)",
            pinpoint::near::MIN_COSINE
        )?,
        n => writeln!(
            out,
            "expansion   each chunk holds its {n} nearest chunks' words (other files', at cosine {} or more)",
            pinpoint::near::MIN_COSINE
        )?,
    }
    let total: u64 = s.bytes_on_disk.iter().map(|x| x.1).sum();
    writeln!(out, "on disk     {} total", human_bytes(total))?;
    for (part, b) in &s.bytes_on_disk {
        writeln!(out, "  {part:<9} {}", human_bytes(*b))?;
    }
    Ok(())
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

fn eval(a: EvalArgs) -> Result<()> {
    use pinpoint::eval::{self, EvalConfig};
    for m in a.modes.iter().chain(&a.baseline) {
        if !eval::MODE_NAMES.contains(&m.trim()) {
            anyhow::bail!(pinpoint::Error::invalid(
                "mode",
                format!("{m:?} (use {})", eval::MODE_NAMES.join(", "))
            ));
        }
    }
    let mut ecfg = EvalConfig {
        modes: a.modes.iter().map(|m| m.trim().to_string()).collect(),
        limit: a.limit,
        expansion: a.expansion,
        baseline: a.baseline.as_ref().map(|b| b.trim().to_string()),
        runs: a.runs.clone(),
        ..Default::default()
    };
    let mut cfg = a.common.config()?;
    if a.granularity.as_deref() == Some("chunk") {
        ecfg.granularity = pinpoint::Granularity::Chunk;
    }
    let (engine, build_secs, name, split, labelled) = if let Some(dir) = &a.beir {
        let ds = eval::Dataset::load_beir(dir, &a.split)?;
        cfg.chunking = ChunkConfig {
            max_tokens: a.chunk_tokens,
            overlap: a.overlap,
        };
        if !a.json {
            eprintln!(
                "{}: {} documents, {} judged queries in split {}",
                ds.name,
                ds.corpus.len(),
                ds.judged_queries().len(),
                ds.split
            );
        }
        let progress = Arc::new(Bars {
            bar: Mutex::new(None),
        });
        let (mut engine, secs) = {
            let dir = eval::cache_dir(&a.common.index, &ds, &cfg)?;
            if !dir.join("manifest.json").exists() && !a.json {
                eprintln!(
                    "building index in {} (cached for later runs)",
                    dir.display()
                );
            }
            eval::open_or_build_with_progress(&a.common.index, &ds, cfg, progress.clone())?
        };
        engine.set_progress(progress);
        let labelled = eval::beir_labelled(&ds);
        (engine, secs, ds.name.clone(), ds.split.clone(), labelled)
    } else {
        let path = a.queries.clone().unwrap_or_default();
        let labelled = eval::load_user_queries(&path)?;
        let engine = Engine::open_read_only(&a.common.index, cfg)?;
        let unknown = eval::unknown_labels(&engine, &labelled)?;
        if !unknown.is_empty() {
            eprintln!(
                "warning: {} labelled documents are not in the index (first: {})",
                unknown.len(),
                unknown[0]
            );
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        // The user's own questions run what `query` runs: chunks, judged by path.
        ecfg.granularity = pinpoint::Granularity::Chunk;
        if a.granularity.as_deref() == Some("document") {
            ecfg.granularity = pinpoint::Granularity::Document;
        }
        (engine, 0.0, name, "user".to_string(), labelled)
    };
    let ev = eval::evaluate(&engine, &name, &split, &labelled, &ecfg)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &ev.report)?;
        writeln!(out)?;
        return Ok(());
    }
    let r = &ev.report;
    writeln!(
        out,
        "dataset {}  split {}  queries {}  ranking {}",
        r.dataset,
        r.split,
        r.queries,
        match r.granularity.as_str() {
            "chunk" => "chunks, as query does (files judged by path)",
            _ => "documents (each by its best chunk)",
        }
    )?;
    if build_secs > 0.0 {
        writeln!(out, "index built in {build_secs:.1} s")?;
    } else {
        writeln!(out, "index: cached")?;
    }
    writeln!(
        out,
        "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "mode",
        "nDCG@10",
        "R@10",
        "R@100",
        "MRR@10",
        "MAP@100",
        "P@5",
        "CP@5",
        "PP@5",
        "#P@5",
        "q/s"
    )?;
    let names = ecfg.evaluated_modes();
    let shown: Vec<&str> = names.iter().map(String::as_str).collect();
    for mode in &shown {
        if let Some(m) = r.modes.get(*mode) {
            writeln!(
                out,
                "{:<12} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.2} {:>8.1}",
                mode.trim(),
                m.ndcg10,
                m.recall10,
                m.recall100,
                m.mrr10,
                m.map100,
                m.p5,
                m.context_precision5,
                m.passage_precision5,
                m.passages5,
                m.qps
            )?;
        }
    }
    print_significance(&mut out, r, &shown)?;
    for mode in &shown {
        match r.modes.get(*mode) {
            Some(m) if m.abstained > 0.0 => writeln!(
                out,
                "{}: abstained on {:.0} of {} queries (no word in the index, no close passage)",
                mode.trim(),
                m.abstained * r.queries as f64,
                r.queries
            )?,
            _ => {}
        }
    }
    writeln!(
        out,
        "\nwhere relevant documents ended up ({}):",
        ev.funnel_mode
    )?;
    for (class, n) in eval::loss_counts(&ev.funnel) {
        writeln!(out, "  {:<36} {n}", class.to_string())?;
    }
    if a.failures > 0 {
        let mut worst: Vec<&eval::QueryFunnel> = ev.funnel.iter().collect();
        worst.sort_by(|x, y| x.ndcg10.total_cmp(&y.ndcg10).then(x.id.cmp(&y.id)));
        writeln!(out, "\n{} worst queries ({}):", a.failures, ev.funnel_mode)?;
        let rank = |r: Option<usize>| r.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        for q in worst.into_iter().take(a.failures) {
            writeln!(out, "\n[{}] nDCG@10 {:.3}  {}", q.id, q.ndcg10, q.text)?;
            for e in &q.relevant {
                writeln!(
                    out,
                    "    relevant {:<12} lexical {:>3}  dense {:>3}  fused {:>3}  final {:>3}  ({})",
                    e.doc,
                    rank(e.lexical),
                    rank(e.dense),
                    rank(e.fused),
                    rank(e.final_rank),
                    e.class()
                )?;
            }
            for (i, (d, t)) in q.top.iter().enumerate() {
                let t: String = t.chars().take(90).collect();
                writeln!(out, "    top {} {:<12} {}", i + 1, d, t)?;
            }
        }
    }
    Ok(())
}

/// Per tested metric: each mode's 95% interval, and its paired comparison with the
/// baseline, so a reader sees which differences the queries can tell apart.
fn print_significance(
    out: &mut impl Write,
    r: &pinpoint::eval::Report,
    shown: &[&str],
) -> Result<()> {
    use pinpoint::eval::{stats::RESAMPLES, TESTED_METRICS};
    if r.queries < 2 {
        return Ok(());
    }
    let base = r.baseline.as_deref().unwrap_or("");
    let label = |key: &str| {
        match key {
            "ndcg@10" => "nDCG@10",
            "recall@100" => "R@100",
            "context_precision@5" => "CP@5",
            other => other,
        }
        .to_string()
    };
    writeln!(
        out,
        "\n95% intervals over the {} queries (bootstrap, {RESAMPLES} resamples); each mode \
         against {base} query by query (paired randomisation test, two-sided p):",
        r.queries
    )?;
    for key in TESTED_METRICS {
        writeln!(
            out,
            "  {:<12} {:>8} {:>17} {:>9} {:>19} {:>8} {:>13}",
            label(key),
            "mean",
            "interval",
            "diff",
            "interval",
            "p",
            "better/worse"
        )?;
        for mode in shown {
            let Some(iv) = r.intervals.get(*mode).and_then(|m| m.get(key)) else {
                continue;
            };
            let span = format!("{:.4}-{:.4}", iv.low, iv.high);
            write!(out, "  {:<12} {:>8.4} {:>17}", mode, iv.mean, span)?;
            if let Some(p) = r.paired.get(*mode).and_then(|m| m.get(key)) {
                let d = &p.delta;
                let dspan = format!("{:+.4}/{:+.4}", d.low, d.high);
                let wl = format!("{}/{}", p.wins, p.losses);
                write!(
                    out,
                    " {:>+9.4} {:>19} {:>8.4} {:>13}",
                    d.mean, dspan, p.p_value, wl
                )?;
            } else if *mode == base {
                write!(out, " {:>9}", "baseline")?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}

fn tune(a: TuneArgs) -> Result<()> {
    use pinpoint::{eval, tune};
    let target: tune::Target = a.metric.parse()?;
    // Checked before minutes of work.
    let named_kinds: Vec<RerankKind> = a
        .rerank
        .iter()
        .map(|r| r.trim().parse())
        .collect::<pinpoint::Result<_>>()?;
    let cfg = a.common.config()?;
    let (mut engine, labelled) = if let Some(dir) = &a.beir {
        let ds = eval::Dataset::load_beir(dir, &a.split)?;
        let progress = Arc::new(Bars {
            bar: Mutex::new(None),
        });
        let (engine, _) = eval::open_or_build_with_progress(&a.common.index, &ds, cfg, progress)?;
        (engine, eval::beir_labelled(&ds))
    } else {
        let path = a.queries.clone().unwrap_or_default();
        let labelled = eval::load_user_queries(&path)?;
        (Engine::open(&a.common.index, cfg)?, labelled)
    };
    let opts = tune::TuneOptions {
        target,
        folds: a.folds,
        rerank: named_kinds,
        max_recall_loss: a.max_recall_loss,
    };
    let r = tune::run(&engine, &labelled, &opts, &|what| eprintln!("{what} ..."))?;
    let mut out = std::io::stdout().lock();
    print_tune_report(&mut out, &r, &a.metric)?;
    let chosen = r.settings;
    writeln!(out, "settings: {}", serde_json::to_string(&chosen)?)?;
    if a.dry_run {
        writeln!(out, "(dry run: nothing stored)")?;
    } else {
        engine.set_default_pipeline(&chosen)?;
        writeln!(out, "stored as the defaults of {}", engine.dir().display())?;
    }
    Ok(())
}

/// One reranker's joint search in `pinpoint tune`'s report.
fn print_joint_stage(
    out: &mut impl Write,
    j: &pinpoint::tune::JointStage,
    folds: usize,
) -> Result<()> {
    use pinpoint::tune;
    let show = |s: &tune::Joint| -> Result<String> {
        Ok(format!(
            "expansion {} depth {} fusion {} rerank depth {} weight {:.1}",
            s.expansion,
            s.depth,
            serde_json::to_string(&s.fusion)?,
            s.rerank_depth,
            s.rerank_weight
        ))
    };
    let mut per = |what: &str, v: Vec<String>| -> std::io::Result<()> {
        if v.len() > 1 {
            writeln!(out, "best train score at each {what}: {}", v.join(", "))?;
        }
        Ok(())
    };
    per(
        "expansion weight",
        j.tuned
            .per_expansion
            .iter()
            .map(|(w, s)| format!("{w} {s:.4}"))
            .collect(),
    )?;
    per(
        "candidate depth",
        j.tuned
            .per_depth
            .iter()
            .map(|(d, s)| format!("{d} {s:.4}"))
            .collect(),
    )?;
    if !j.every_candidate {
        writeln!(
            out,
            "(this reranker encodes passages at query time: only its depth and weight are searched)"
        )?;
    }
    writeln!(
        out,
        "index's retrieval ({}), no reranking: {:.4}",
        show(&j.current)?,
        j.tuned.none_score
    )?;
    for (what, c) in [
        ("rerank stage alone", &j.tuned.fixed),
        ("all searched together", &j.tuned.joint),
    ] {
        writeln!(
            out,
            "{what}: {}  train {:.4}, {folds}-fold held-out {:.4}",
            show(&c.setting)?,
            c.train_score,
            c.cv_score
        )?;
        for (i, f) in c.fold_choices.iter().enumerate() {
            writeln!(out, "  fold {i} chose {}", show(f)?)?;
        }
    }
    let mut paired = |what: &str, p: Option<pinpoint::eval::Paired>| -> Result<()> {
        if let Some(p) = p {
            writeln!(
                out,
                "  held out, {what}: {:+.4} ({:+.4}/{:+.4}), paired p {:.4}, better/worse {}/{}",
                p.delta.mean, p.delta.low, p.delta.high, p.p_value, p.wins, p.losses
            )?;
        }
        Ok(())
    };
    paired(
        "all searched together against the rerank stage alone",
        j.tuned.joint_against_fixed(),
    )?;
    if j.rerank.is_some() {
        paired(
            "the rerank stage alone against no reranking",
            j.tuned.against_none(&j.tuned.fixed),
        )?;
        if j.every_candidate {
            paired(
                "the reranked choice against the best without reranking",
                j.rerank_worth.clone(),
            )?;
        }
    }
    if !j.retrieval_changed && !j.tuned.joint.setting.same_retrieval(&j.current) {
        writeln!(
            out,
            "  kept the index's expansion, depth and fusion: no held-out gain from changing them"
        )?;
    }
    if j.rerank.is_some() && !j.rerank_adopted {
        let u = &j.tuned.unreranked;
        writeln!(
            out,
            "  reranking not adopted: no held-out gain over not reranking; searched without \
             it: {}  train {:.4}, {folds}-fold held-out {:.4}{}",
            show(&u.setting)?,
            u.train_score,
            u.cv_score,
            if j.retrieval_changed {
                " (adopted)"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

fn rerank_name(k: &RerankKind) -> String {
    match k {
        RerankKind::Tokens => "tokens".into(),
        RerankKind::Sentence => "sentence".into(),
        RerankKind::CrossEncoder { model } => format!("cross-encoder {}", model.display()),
    }
}

/// `pinpoint tune`'s report: each stage's search, its held-out figures and what it chose.
fn print_tune_report(
    out: &mut impl Write,
    r: &pinpoint::tune::TuneReport,
    metric: &str,
) -> Result<()> {
    use pinpoint::tune;
    let folds = r.folds;
    let t = &r.fusion;
    writeln!(
        out,
        "fusion, best five on all {} queries ({metric}):",
        r.queries
    )?;
    for (f, s) in &t.top {
        writeln!(out, "  {:.4}  {}", s, serde_json::to_string(f)?)?;
    }
    writeln!(
        out,
        "best on the fused list alone: {}  train {:.4}  {folds}-fold held-out {:.4} (searched \
         again below, with the rest)",
        serde_json::to_string(&t.fusion)?,
        t.train_score,
        t.cv_score
    )?;
    for (i, f) in t.fold_choices.iter().enumerate() {
        writeln!(out, "  fold {i} chose {}", serde_json::to_string(f)?)?;
    }
    writeln!(
        out,
        "pseudo-relevance feedback: off {:.4}, on {:.4}",
        r.prf.off, r.prf.on
    )?;
    for (i, j) in std::iter::once(&r.joint).chain(&r.others).enumerate() {
        if !r.others.is_empty() {
            writeln!(
                out,
                "reranker {}: held-out {:.4}{}",
                j.rerank
                    .as_ref()
                    .map_or_else(|| "none".to_string(), rerank_name),
                j.held_out,
                match (i, j.rerank_adopted) {
                    (0, true) => " (adopted)",
                    (0, false) => " (best, but not better than no reranking)",
                    _ => "",
                }
            )?;
        }
        print_joint_stage(out, j, folds)?;
    }
    if let Some(c) = &r.cutoff {
        let show = |h: &tune::Handed| {
            format!(
                "precision {:.4} recall {:.4} passages {:.2}",
                h.precision, h.recall, h.passages
            )
        };
        let ct = &c.tuned;
        writeln!(
            out,
            "cut-off (top {}, recall loss at most {}, after the similarity guard at {}): no \
             cut-off, no guard: {}",
            c.k,
            c.max_recall_loss,
            c.guard,
            show(&ct.off)
        )?;
        writeln!(out, "  best {}: train {}", ct.setting, show(&ct.train))?;
        writeln!(out, "  {folds}-fold held-out: {}", show(&ct.held_out))?;
        for (i, choice) in ct.fold_choices.iter().enumerate() {
            writeln!(out, "  fold {i} chose {choice}")?;
        }
        if !c.adopted {
            writeln!(
                out,
                "  not adopted: no held-out precision gain within the recall allowance"
            )?;
        }
    }
    Ok(())
}

/// Peak resident memory of this process (Linux: VmHWM), for the index report.
fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn watch(a: WatchArgs) -> Result<()> {
    use notify::{RecursiveMode, Watcher};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    let mut engine = Engine::open_or_create(&a.common.index, a.common.config()?)?;
    let t = Instant::now();
    let r = engine.add_folder(&a.folder)?;
    let mut out = std::io::stdout();
    print_summary(&mut out, &r, t.elapsed().as_secs_f64())?;
    out.flush()?;

    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    ctrlc::set_handler(move || s2.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    // Events under the index folder (when it lives inside the watched one) are our own writes.
    let index_dir =
        std::fs::canonicalize(&a.common.index).unwrap_or_else(|_| a.common.index.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.paths.iter().any(|p| !p.starts_with(&index_dir)) {
                let _ = tx.send(());
            }
        }
    })
    .context("starting the file watcher")?;
    watcher
        .watch(&a.folder, RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", a.folder.display()))?;
    eprintln!("watching {} (Ctrl-C to stop)", a.folder.display());
    let debounce = Duration::from_millis(a.debounce_ms);
    let mut pending: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => pending = Some(Instant::now()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(last) = pending {
            // Let a burst of changes settle, then sync them in one commit.
            if last.elapsed() >= debounce {
                while rx.try_recv().is_ok() {}
                pending = None;
                let t = Instant::now();
                let r = engine.add_folder(&a.folder)?;
                if r.added + r.updated + r.removed + r.renamed > 0 {
                    print_summary(&mut out, &r, t.elapsed().as_secs_f64())?;
                    out.flush()?;
                }
            }
        }
    }
    eprintln!(
        "stopped; index consistent at generation {}",
        engine.manifest().generation
    );
    Ok(())
}

fn verify(a: StatsArgs) -> Result<()> {
    let engine = Engine::open_read_only(&a.common.index, a.common.config()?)?;
    let problems = engine.verify()?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({"ok": problems.is_empty(), "problems": problems}),
        )?;
        writeln!(out)?;
    } else if problems.is_empty() {
        writeln!(
            out,
            "ok: generation {}, {} files checked, stores agree on {} chunks",
            engine.manifest().generation,
            engine.manifest().files.len(),
            engine.store().len()
        )?;
    } else {
        for p in &problems {
            writeln!(out, "problem: {p}")?;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(pinpoint::Error::corrupt(
            &a.common.index,
            format!("{} problem(s) found", problems.len()),
        )
        .into())
    }
}

fn compact(a: StatsArgs) -> Result<()> {
    let mut engine = Engine::open(&a.common.index, a.common.config()?)?;
    let t = Instant::now();
    engine.compact()?;
    println!(
        "compacted to generation {} in {:.1} s",
        engine.manifest().generation,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    let cfg = pinpoint::bench::BenchConfig {
        beir: a.beir.clone(),
        docs: a.docs,
        queries: a.queries,
        dense_vectors: a.dense_vectors,
        real_vectors: a.real_vectors,
        efs: vec![16, 32, 64, 128, 256],
        query_index: a.query_index.clone(),
        exe: std::env::current_exe().ok(),
        export_vectors: a.export_vectors.clone(),
        rerank: match &a.rerank {
            Some(kind) => Some(RerankConfig::new(kind.parse()?)),
            None => None,
        },
        expansion: a.expansion,
    };
    let ecfg = EngineConfig {
        model_dir: Some(
            a.model
                .clone()
                .unwrap_or_else(|| PathBuf::from(pinpoint::models::DEFAULT_MODEL_DIR)),
        ),
        device: a.device.parse::<DeviceChoice>()?,
        ..Default::default()
    };
    std::fs::create_dir_all(&a.work)?;
    let quiet = a.json;
    let r = pinpoint::bench::run(&cfg, ecfg, &a.work, &|m| {
        if !quiet {
            eprintln!("{m}");
        }
    })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &r)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "embedding      {:.1} texts/s, {:.0} tokens/s",
        r.embed.texts_per_s, r.embed.tokens_per_s
    )?;
    writeln!(
        out,
        "index build    {} docs in {:.1} s, {:.0}% embedding  ({})",
        r.index.documents,
        r.index.seconds,
        r.index.forward_share * 100.0,
        r.index
            .stages
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}s"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        out,
        "warm query     p50 / p95 / p99 ms (default pipeline{})",
        a.rerank
            .as_ref()
            .map(|k| format!(" + {k} reranker on the top 20"))
            .unwrap_or_default()
    )?;
    for (stage, p) in &r.query {
        writeln!(
            out,
            "  {stage:<10} {:>8.2} {:>8.2} {:>8.2}",
            p.p50_ms, p.p95_ms, p.p99_ms
        )?;
    }
    writeln!(
        out,
        "cold query     {:.3} s (process start to exit)",
        r.cold_query_s
    )?;
    writeln!(
        out,
        "lexical        {:.0} queries/s (single thread, top 100)",
        r.lexical.qps
    )?;
    for d in std::iter::once(&r.dense).chain(r.dense_real.as_ref()) {
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

#[cfg(test)]
mod tests {
    use super::error_message;

    #[test]
    fn causes_already_in_a_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(pinpoint::Error::io("/x/q.jsonl", io));
        assert_eq!(error_message(&e), "/x/q.jsonl: No such file");
        // A context whose cause is not in its text keeps the cause.
        let e = anyhow::Error::new(std::io::Error::other("disk full")).context("writing out.json");
        assert_eq!(error_message(&e), "writing out.json: disk full");
    }
}
