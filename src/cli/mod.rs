//! Command-line interface: the clap definitions here, one function per subcommand in the
//! files beside (`build`: index, watch, verify, compact; `ask`: query, serve, stats;
//! `measure`: eval, tune, bench). No retrieval logic lives here: each command parses, calls
//! the library and prints.

mod ask;
mod build;
mod measure;
mod progress;

use ask::{mcp, query, serve, stats};
use build::{compact, forget, index, verify, watch};
use measure::{bench, eval, tune};

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use pinpoint::api::{kind_of, Answer, QueryOptions};
use pinpoint::{ChunkConfig, DeviceChoice, Engine, EngineConfig, RerankConfig, RerankKind};

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
    /// Serve the index to an AI agent over MCP (stdio: one JSON-RPC message per line on
    /// stdout, logs on stderr; stops when stdin closes). Tools: search, get,
    /// list_collections, status.
    Mcp(StatsArgs),
    /// Remove a named collection and its documents from the index.
    Forget(ForgetArgs),
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
    /// Build an index of this many chunks from real vectors of the --beir corpus's
    /// sentences and perturbed copies of them, and measure build, one-file commits, cold and
    /// warm queries and dense recall at that size (instead of the small-index figures).
    #[arg(long)]
    scale: Option<usize>,
    /// With --scale: real sentences embedded (the rest of the chunks are copies of them).
    #[arg(long, default_value_t = 100_000)]
    scale_base: usize,
    /// With --scale: documents per commit while building (each commit makes a segment).
    #[arg(long, default_value_t = 100_000)]
    scale_batch: usize,
    /// With --scale: the vectors graph searches walk, `f32` or `int8` (see `index --vectors`).
    #[arg(long, default_value = "f32")]
    vectors: String,
    /// With --scale: build without token codes (see `index --no-token-codes`); by default
    /// the index keeps them, as a default index does, and the default query reranks by them.
    #[arg(long)]
    no_token_codes: bool,
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
    /// Also index generated, minified and lock files (see `index --include-generated`).
    #[arg(long)]
    include_generated: bool,
    /// Keep this named collection in sync with the folder (see `index --collection`).
    #[arg(long)]
    collection: Option<String>,
}

#[derive(Args, Debug)]
struct ForgetArgs {
    /// The collection to remove, with all its documents.
    collection: String,
    #[command(flatten)]
    common: Common,
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
    /// Index folder (`query` takes several: the answers are fused by rank).
    #[arg(long = "index", default_value = "index-data")]
    indexes: Vec<PathBuf>,
    /// Model folder (config.json, tokenizer.json, model.safetensors). Default: the one the
    /// index was built with, else models/all-MiniLM-L6-v2.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute device: auto, cpu, cuda or metal.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Arithmetic of the encoder of a new index: `int8` (about 2x faster with AVX-512
    /// VNNI, cosine ≥ 0.99 to f32; the default on such CPUs) or `f32` (the default on
    /// others). An existing index keeps its own; naming another is an error.
    #[arg(long)]
    precision: Option<pinpoint::quant::Precision>,
}

impl Common {
    /// The one index folder of a command that works on one.
    fn index(&self) -> Result<&PathBuf> {
        match self.indexes.as_slice() {
            [one] => Ok(one),
            many => anyhow::bail!(pinpoint::Error::invalid(
                "index",
                format!(
                    "given {} times; only `query` searches several indexes at once",
                    many.len()
                )
            )),
        }
    }

    fn config(&self) -> Result<EngineConfig> {
        Ok(EngineConfig {
            model_dir: self.model.clone(),
            device: self.device.parse::<DeviceChoice>()?,
            precision: self.precision,
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
    /// Build the index again from scratch, beside the old one, which it replaces once the
    /// new one is committed (the old one keeps answering until then). Named collections
    /// are built again from their recorded folders.
    #[arg(long, conflicts_with = "collection")]
    rebuild: bool,
    /// Sync the folder as this named collection of the index (its documents are keyed
    /// NAME/path; other collections are left as they are). Without it the folder is the
    /// index's unnamed collection.
    #[arg(long)]
    collection: Option<String>,
    /// What the collection holds, in a sentence (shown to agents; used by routing).
    #[arg(long, requires = "collection")]
    description: Option<String>,
    /// Also index generated, minified and lock files (search indexes, `*.min.js`, files
    /// marked `@generated`...), which are skipped with a reason by default.
    #[arg(long)]
    include_generated: bool,
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
    #[command(flatten)]
    token_codes: TokenCodeArgs,
    /// No document expansion (new indexes only): the lexical index then holds no words of
    /// each chunk's dense neighbours, and the hybrid's lexical leg is plain BM25.
    #[arg(long)]
    no_expansion: bool,
    /// The vectors graph searches walk (new indexes only): `f32`, or `int8` (a quarter of
    /// the bytes a search reads, an int8 copy beside the f32 vectors, the candidates
    /// rescored at f32).
    #[arg(long, default_value = "f32")]
    vectors: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Progress on stderr: `bar` (one bar for the whole run's chunks with its time left,
    /// one per stage), `json` (the same as JSON lines, for a program) or `none`.
    #[arg(long, value_enum, default_value = "bar")]
    progress: progress::ProgressFormat,
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
    /// Search only this collection (repeat for several; default: all).
    #[arg(long)]
    collection: Vec<String>,
    /// The --index folders are the shards of one folder (`pinpoint-ray build`): their hits
    /// are merged by score and keep their paths, instead of being fused by rank with each
    /// index's name in front.
    #[arg(long)]
    shards: bool,
    /// Only documents that pass this filter, e.g.
    /// `ext IN (md,rs) AND modified >= 2025-01-01 AND tag:rust AND NOT path:drafts/**`
    /// (fields: collection, path, ext, kind, modified, size, title, or a front-matter key;
    /// tests `:` `=` `!=` `<` `<=` `>` `>=` `IN (..)` `EXISTS`; AND, OR, NOT, parentheses).
    #[arg(long = "where")]
    where_: Option<String>,
    /// `auto`: send the question to the collection its hybrid head and the collections'
    /// centroids agree on (restrict when confident, boost when fairly sure); `off` (the
    /// default: routing was not adopted, see the README's routing table).
    #[arg(long)]
    route: Option<String>,
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
            collections: self.collection.clone(),
            where_: self.where_.clone(),
            filter: None,
            route: self.route.clone(),
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
    /// default (what `query` runs), copies (default handing over copies of one text as they
    /// come), alone (default without document evidence).
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
    token_codes: TokenCodeArgs,
    #[command(flatten)]
    common: Common,
}

/// How a new index codes its passages' token vectors (`index`, and `eval`'s BEIR builds).
#[derive(clap::Args, Debug)]
struct TokenCodeArgs {
    /// Token codes of this many bits (new indexes only; a multiple of 8 below the model's
    /// dimension): each token's signs on fixed projected directions, e.g. 128 for a third
    /// of the default's size, with nDCG@10 slightly lower (see the README's "Token codes
    /// at scale"). Default: every dimension.
    #[arg(long)]
    token_bits: Option<usize>,
    /// What a token code stands for (new indexes only): `pieces`, one code per kept word
    /// piece (the default), or `distinct`, one per distinct piece of a chunk: a third
    /// fewer codes on prose and half on code, for nDCG@10 0.005 lower on SciFact (see the
    /// README's "Token codes at scale").
    #[arg(long, value_name = "pieces|distinct")]
    token_units: Option<String>,
    /// Every token keeps its own code (new indexes only). By default a token within 48 bits
    /// of its word piece's shared code is stored as a reference to it and near-copies in
    /// a chunk (within 80 bits) are kept once: 3.6 KB a chunk on SciFact instead of 5.7,
    /// half the size on code, nDCG@10 within noise (see the README's "Token codes at
    /// scale").
    #[arg(long)]
    no_token_sharing: bool,
}

impl TokenCodeArgs {
    /// Sets what these options name on `cfg`; an unknown unit is an error naming it.
    fn apply(&self, cfg: &mut pinpoint::EngineConfig) -> Result<()> {
        cfg.token_bits = self.token_bits;
        cfg.token_units = self.token_units.as_deref().map(str::parse).transpose()?;
        cfg.token_sharing = self.no_token_sharing.then_some(false);
        Ok(())
    }
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
        Command::Mcp(a) => mcp(a),
        Command::Bench(a) => bench(a),
        Command::Verify(a) => verify(a),
        Command::Compact(a) => compact(a),
        Command::Forget(a) => forget(a),
    }
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
