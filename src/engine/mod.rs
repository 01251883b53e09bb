//! The engine: the only place that coordinates the stores.
//!
//! An index folder holds one *generation* at a time. A commit writes every file of the next
//! generation (chunk store, vectors, HNSW dump, doc table, token codes, neighbour table,
//! pending manifest) and fsyncs
//! them; then commits tantivy with the generation number as payload: **that is the commit
//! point**; then atomically renames the pending manifest over `manifest.json`. On open, a
//! tantivy payload one ahead of the manifest means the crash came after the commit point:
//! the pending manifest is complete and is rolled forward. Files of a generation that
//! tantivy never committed are deleted. A crash at any instant therefore leaves the previous
//! or the next generation, never a mix.
//!
//! Not for: what each store holds (their own modules) or the ranking's arithmetic (`fuse`, `rerank`, `select`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::chunk::ChunkConfig;
use crate::dense::HnswParams;
use crate::embed::{BertEmbedder, DeviceChoice, Embedder};
use crate::error::{Error, IoContext, Result};
use crate::ingest::{Document, IngestConfig, Skipped};
use crate::lexical::LexicalIndex;
use crate::models::{ModelDir, ModelSpec, DEFAULT_MODEL_DIR};
use crate::quant::Precision;
use crate::segment::Segments;
use crate::store::{sync_dir, Counts, DocRecord, Manifest, FORMAT_VERSION};

mod artifacts;
mod cleanup;
mod collections;
mod commit;
mod inspect;
pub mod limits;
mod lock;
mod merge;
mod rebuild;
mod request;
mod routing;
mod search;
mod segment_write;
mod sync;
mod tables;

pub(crate) use artifacts::MANIFEST;
use artifacts::{docs_file, meta_file, near_file, pending_manifest};

pub use collections::CollectionStats;
use commit::Generation;
pub(crate) use inspect::dir_size;
pub use inspect::Stats;
use lock::WriterLock;
pub use request::{
    Explain, Granularity, Hit, LengthFade, Pipeline, RerankConfig, RerankKind, SearchOutput,
    SearchRequest, DEFAULT_DEPTH,
};
pub use search::{blend_rerank, EMPTY_INDEX_NOTE};
pub use sync::RunStatus;

/// Progress of long operations, reported by stage. The CLI draws bars from it.
pub trait Progress: Send + Sync {
    /// A stage begins with `total` units of work.
    fn start(&self, _stage: &str, _total: u64) {}
    /// `n` more units are done.
    fn inc(&self, _n: u64) {}
    /// The current stage is over.
    fn finish(&self) {}
    /// Where the whole folder sync stands, across its checkpoints (stages restart at each
    /// checkpoint; this does not). Sent as chunks are embedded.
    fn run(&self, _status: &RunStatus) {}
}

/// Progress that reports nothing (the default).
pub struct NoProgress;
impl Progress for NoProgress {}

/// How an engine is set up.
#[derive(Clone, Default)]
pub struct EngineConfig {
    /// Model folder; `None` uses the one recorded in the index, else the default.
    pub model_dir: Option<PathBuf>,
    /// Compute device.
    pub device: DeviceChoice,
    /// Chunk sizing for new indexes (an existing index keeps its own).
    pub chunking: ChunkConfig,
    /// Walk and extraction settings.
    pub ingest: IngestConfig,
    /// HNSW settings.
    pub hnsw: HnswParams,
    /// An embedder to use instead of loading one from `model_dir` (tests, custom models).
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Create new indexes without token codes (see [`crate::late`]): about 48 bytes per
    /// stored token less on disk (≈ 6x the text), but the default pipeline then has no
    /// token reranking. An existing index keeps its own choice.
    pub without_token_codes: bool,
    /// Dense neighbours whose words each chunk's lexical entry holds in new indexes
    /// (document expansion, see [`crate::near`]): `None` for
    /// [`crate::near::DEFAULT_NEIGHBOURS`], `Some(0)` for none (no neighbour field, so the
    /// default pipeline's lexical leg is plain BM25). An existing index keeps its own.
    pub neighbours: Option<usize>,
    /// Arithmetic of the encoder for new indexes (`None` for
    /// [`Precision::new_index_default`]). An existing index keeps its own; naming another
    /// one for it is an error, since its queries must be embedded as its passages were.
    pub precision: Option<Precision>,
    /// The vectors graph searches walk in new indexes ([`crate::sq8`]): f32, or an int8
    /// copy with the candidates rescored at f32. An existing index keeps its own.
    pub vector_precision: crate::sq8::VectorPrecision,
    /// Bits of a new index's token codes through a fixed projection
    /// ([`crate::late::TokenProjection`]; a multiple of 8 below the model's dimension):
    /// `None` keeps the signs of every dimension. An existing index keeps its own.
    pub token_bits: Option<usize>,
    /// What a new index's token codes stand for (`None`:
    /// [`crate::late::TokenUnits::NEW_INDEX_DEFAULT`]). An existing index keeps its own.
    pub token_units: Option<crate::late::TokenUnits>,
    /// Whether a new index stores each token near its piece's shared code as a reference
    /// to it ([`crate::late::share`]): `None` shares where it was measured (codes of every
    /// dimension, word pieces), `Some(false)` never. An existing index keeps its own.
    pub token_sharing: Option<bool>,
}

impl EngineConfig {
    /// The precision a new index created with this config gets: the supplied embedder's,
    /// else the one named, else the default.
    pub fn new_index_precision(&self) -> Precision {
        self.asked_precision()
            .unwrap_or_else(Precision::new_index_default)
    }

    /// The precision this config names, if any: the supplied embedder's, else `precision`.
    fn asked_precision(&self) -> Option<Precision> {
        match &self.embedder {
            Some(e) => Some(e.precision()),
            None => self.precision,
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("model_dir", &self.model_dir)
            .field("device", &self.device)
            .field("chunking", &self.chunking)
            .field("ingest", &self.ingest)
            .field("hnsw", &self.hnsw)
            .field("without_token_codes", &self.without_token_codes)
            .field("neighbours", &self.neighbours)
            .field("precision", &self.precision)
            .field("vector_precision", &self.vector_precision)
            .field("token_bits", &self.token_bits)
            .field("token_units", &self.token_units)
            .field("token_sharing", &self.token_sharing)
            .field(
                "embedder",
                &self.embedder.as_ref().map(|e| e.spec().id.clone()),
            )
            .finish()
    }
}

/// Retrieval mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Embedding similarity only.
    Dense,
    /// BM25 only.
    Lexical,
    /// Both, fused.
    #[default]
    Hybrid,
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dense" => Ok(Mode::Dense),
            "lexical" => Ok(Mode::Lexical),
            "hybrid" => Ok(Mode::Hybrid),
            _ => Err(Error::invalid(
                "mode",
                format!("{s:?} (use hybrid, dense or lexical)"),
            )),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Dense => "dense",
            Mode::Lexical => "lexical",
            Mode::Hybrid => "hybrid",
        })
    }
}

/// What a folder sync or commit did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexReport {
    /// New documents.
    pub added: usize,
    /// Documents whose content changed.
    pub updated: usize,
    /// Documents gone from the folder.
    pub removed: usize,
    /// Documents left as they were.
    pub unchanged: usize,
    /// Documents moved (same content, new path): not re-embedded.
    pub renamed: usize,
    /// Files skipped, with reasons.
    pub skipped: Vec<Skipped>,
    /// Files of a type that is not indexed.
    pub unsupported: usize,
    /// Chunks embedded in this commit.
    pub chunks_embedded: usize,
    /// New chunks whose text the index (or this commit) already held: their vectors and
    /// token codes were reused, not computed again.
    pub chunks_reused: usize,
    /// Live chunks after the commit.
    pub chunks_total: usize,
    /// Documents after the commit.
    pub documents_total: usize,
    /// Seconds per stage.
    pub timings: Vec<(String, f64)>,
}

// Servers and parallel evaluators share one engine across threads (`search` takes `&self`):
// keep it `Send + Sync`, checked at compile time.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Engine>();
};

impl IndexReport {
    /// Adds a later commit's counts to this one (a sync made of several checkpoints).
    fn absorb(&mut self, r: IndexReport) {
        self.added += r.added;
        self.updated += r.updated;
        self.removed += r.removed;
        self.unchanged += r.unchanged;
        self.renamed += r.renamed;
        self.skipped.extend(r.skipped);
        self.unsupported += r.unsupported;
        self.chunks_embedded += r.chunks_embedded;
        self.chunks_reused += r.chunks_reused;
        self.chunks_total = r.chunks_total;
        self.documents_total = r.documents_total;
        for (stage, secs) in r.timings {
            match self.timings.iter_mut().find(|t| t.0 == stage) {
                Some(t) => t.1 += secs,
                None => self.timings.push((stage, secs)),
            }
        }
    }
}

#[derive(Default)]
struct Staged {
    upserts: Vec<Document>,
    external: HashSet<String>,
    removes: HashSet<String>,
}

/// An index folder opened for searching and (unless read-only) writing.
///
/// ```
/// use std::sync::Arc;
/// use pinpoint::{Engine, EngineConfig, SearchRequest, Mode, HashEmbedder};
///
/// let dir = tempfile::tempdir().unwrap();
/// let cfg = EngineConfig { embedder: Some(Arc::new(HashEmbedder::new(64))), ..Default::default() };
/// let mut engine = Engine::create(dir.path(), cfg).unwrap();
/// engine.add_document("rust", "Rust", "Rust is a systems programming language.").unwrap();
/// engine.add_document("tea", "Tea", "Green tea is brewed at a low temperature.").unwrap();
/// engine.commit().unwrap();
///
/// let hits = engine.search(&SearchRequest::new("how hot should tea water be", 1)).unwrap();
/// assert_eq!(hits[0].path, "tea");
/// let hits = engine.search(&SearchRequest::new("systems language", 1).mode(Mode::Lexical)).unwrap();
/// assert_eq!(hits[0].path, "rust");
/// ```
pub struct Engine {
    dir: PathBuf,
    cfg: EngineConfig,
    manifest: Manifest,
    spec: ModelSpec,
    model_dir: Option<ModelDir>,
    /// The chunks, their vectors, graphs and token codes, in segments.
    segs: Segments,
    lexical: LexicalIndex,
    docs: OnceLock<Vec<DocRecord>>,
    /// The open generation's document table, pinned at open (see [`tables::Chain`]) until
    /// `docs` is filled.
    docs_file: Option<tables::Chain>,
    /// The open generation's neighbour table, pinned at open and decoded on first use
    /// (copies of a passage in a more specific file, [`crate::copies`]).
    near_file: Option<tables::Chain>,
    near: OnceLock<Option<crate::near::NeighbourTable>>,
    /// The open generation's document metadata (collection, front matter), pinned at open
    /// and decoded on first use (a filter or a sync needs it; a plain query does not).
    meta_file: Option<tables::Chain>,
    meta: OnceLock<HashMap<String, crate::collection::DocMeta>>,
    /// Each collection's centroid (routing), computed on first use.
    centroids: OnceLock<Vec<(String, Vec<f32>)>>,
    doc_index: OnceLock<search::DocIndex>,
    /// The projection token codes are taken through (fixed at creation), built on first use.
    token_projection: OnceLock<Option<Arc<crate::late::TokenProjection>>>,
    /// Per segment id, its chunks' text keys ordered by key (a writer's cache, see
    /// `commit.rs`).
    text_index: std::sync::Mutex<HashMap<u64, Arc<commit::TextIndex>>>,
    /// The thread unlinking the files the last commit left ([`Engine::remove_stray_files`]).
    cleanup: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    cross_encoder: std::sync::Mutex<Option<(PathBuf, Arc<crate::rerank::CrossEncoder>)>>,
    embedder: OnceLock<Arc<dyn Embedder>>,
    staged: Staged,
    lock: Option<WriterLock>,
    progress: Arc<dyn Progress>,
    /// The folder sync in progress (`None` outside [`Engine::add_folder`]): its status, when
    /// it began, and the chunks its earlier checkpoints embedded.
    run: Option<(RunStatus, Instant, u64)>,
}

/// Times a read-only open starts over because a writer committed meanwhile (each retry
/// needs another commit inside the open's few milliseconds, so a handful is plenty).
const READ_ONLY_RETRIES: usize = 8;

/// Times (25 ms apart) a read-only open waits for a rebuild being moved into place.
const REBUILD_WAITS: usize = 200;

/// Dropping a writer waits for the files its last commit left to unlink: a process that
/// exits (or a test that looks) finds them gone.
impl Drop for Engine {
    fn drop(&mut self) {
        self.wait_for_cleanup();
    }
}

impl Engine {
    /// Creates a new index in `dir` (which must not hold one already).
    pub fn create(dir: impl AsRef<Path>, cfg: EngineConfig) -> Result<Engine> {
        let dir = dir.as_ref().to_path_buf();
        if dir.join(MANIFEST).exists() {
            return Err(Error::invalid(
                "index folder",
                format!("{} already holds an index", dir.display()),
            ));
        }
        if dir.exists() {
            let foreign = std::fs::read_dir(&dir)
                .at(&dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .find(|n| !artifacts::may_precede_index(n));
            if let Some(name) = foreign {
                return Err(Error::IncompatibleIndex {
                    path: dir.clone(),
                    what: format!(
                        "folder is not empty ({name:?} is not part of an index) and holds no pinpoint manifest; refusing to write into it"
                    ),
                });
            }
        }
        let (spec, model_dir) = resolve_model(&cfg, None)?;
        // Checked before anything is written.
        let token_bits = crate::late::check_bits(cfg.token_bits, spec.dim)?;
        let token_units = cfg
            .token_units
            .unwrap_or(crate::late::TokenUnits::NEW_INDEX_DEFAULT);
        let code_bits = if token_bits > 0 { token_bits } else { spec.dim };
        let token_sharing = match cfg.token_sharing {
            Some(false) => None,
            _ if cfg.without_token_codes => None,
            _ => crate::late::Sharing::for_new_index(code_bits, token_units),
        };
        std::fs::create_dir_all(dir.join("lexical")).at(dir.join("lexical"))?;
        let lock = WriterLock::acquire(&dir)?;
        let lexical = LexicalIndex::open_or_create(&dir.join("lexical"))?;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            generation: 0,
            model: spec.clone(),
            // Absolute, so queries from any working directory find the model.
            model_dir: model_dir
                .as_ref()
                .map(|m| {
                    std::fs::canonicalize(&m.dir)
                        .unwrap_or_else(|_| m.dir.clone())
                        .to_string_lossy()
                        .to_string()
                })
                .unwrap_or_default(),
            chunking: cfg.chunking.clone(),
            counts: Counts::default(),
            next_chunk_id: 0,
            hnsw: None,
            files: Vec::new(),
            search_defaults: None,
            token_codes: !cfg.without_token_codes,
            neighbours: cfg.neighbours.unwrap_or(crate::near::DEFAULT_NEIGHBOURS),
            include_generated: cfg.ingest.include_generated,
            collections: Vec::new(),
            doc_meta: true,
            segmented: true,
            segments: Vec::new(),
            next_segment: 0,
            previous_files: Vec::new(),
            table_base: None,
            table_deltas: Vec::new(),
            vector_precision: cfg.vector_precision,
            precision: cfg.new_index_precision(),
            token_bits,
            token_units,
            token_sharing,
        };
        // The folders of what this index keeps (no `near/` without expansion).
        for sub in artifacts::folders_of(&manifest) {
            std::fs::create_dir_all(dir.join(sub)).at(dir.join(sub))?;
        }
        let segs = Segments::empty(spec.dim);
        let mut engine = Engine::assemble(
            dir,
            cfg,
            manifest,
            (spec, model_dir),
            segs,
            lexical,
            Some(lock),
        );
        // Generation 0: an empty but complete index.
        engine.write_generation(0, Generation::default())?;
        Ok(engine)
    }

    /// Opens an existing index for reading and writing (takes the writer lock).
    pub fn open(dir: impl AsRef<Path>, cfg: EngineConfig) -> Result<Engine> {
        Self::open_inner(dir.as_ref(), cfg, true)
    }

    /// Opens an existing index for searching only: no lock, sees the last committed
    /// generation.
    ///
    /// A writer may commit while this opens (a query beside `pinpoint watch`, `pinpoint
    /// serve` following an index): the manifest read first can then be one or two
    /// generations behind the BM25 index, or its files already cleaned up. When opening fails
    /// and the manifest has changed meanwhile, it is opened again, on the new generation.
    pub fn open_read_only(dir: impl AsRef<Path>, cfg: EngineConfig) -> Result<Engine> {
        let dir = dir.as_ref();
        let manifest = || std::fs::read(dir.join(MANIFEST)).ok();
        let mut left = READ_ONLY_RETRIES;
        let mut waits = REBUILD_WAITS;
        loop {
            let before = manifest();
            match Self::open_inner(dir, cfg.clone(), false) {
                Err(_) if left > 0 && before.is_some() && manifest() != before => left -= 1,
                // A rebuild is moving its folders into place: a matter of renames.
                Err(_) if waits > 0 && rebuild::installing(dir) => {
                    waits -= 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                result => return result,
            }
        }
    }

    /// Opens the index in `dir`, creating it when there is none.
    pub fn open_or_create(dir: impl AsRef<Path>, cfg: EngineConfig) -> Result<Engine> {
        if dir.as_ref().join(MANIFEST).exists() {
            Self::open(dir, cfg)
        } else {
            Self::create(dir, cfg)
        }
    }

    fn open_inner(dir: &Path, cfg: EngineConfig, write: bool) -> Result<Engine> {
        let mpath = dir.join(MANIFEST);
        if !mpath.exists() {
            if !dir.exists() {
                return Err(Error::invalid(
                    "index",
                    format!(
                        "{} does not exist; build one with `pinpoint index <FOLDER> --index <INDEX>`",
                        dir.display()
                    ),
                ));
            }
            return Err(Error::IncompatibleIndex {
                path: dir.to_path_buf(),
                what: "no manifest.json: not a pinpoint index (build one in a new folder with `pinpoint index <FOLDER> --index <NEW_INDEX>`)".into(),
            });
        }
        let lock = if write {
            let lock = WriterLock::acquire(dir)?;
            // A rebuild that crashed after its commit point is moved into place now; one
            // that crashed before it is discarded (see `rebuild.rs`).
            rebuild::finish_install(dir)?;
            Some(lock)
        } else {
            None
        };
        let mut manifest = Manifest::read(&mpath)?;
        let lexical = LexicalIndex::open_or_create(&dir.join("lexical"))?;
        let committed = lexical.committed_generation()?;
        match committed {
            Some(g) if g == manifest.generation => {}
            Some(g) if g == manifest.generation + 1 => {
                // Crash after the commit point: roll forward.
                let pending = dir.join(pending_manifest(g));
                let next = Manifest::read(&pending).map_err(|_| {
                    Error::corrupt(
                        &pending,
                        "lexical index is at the next generation but its manifest is missing",
                    )
                })?;
                if write {
                    std::fs::rename(&pending, &mpath).at(&mpath)?;
                    sync_dir(dir)?;
                }
                manifest = next;
            }
            other => {
                return Err(Error::corrupt(
                    dir.join("lexical"),
                    format!(
                        "lexical index is at generation {} but the manifest at {}",
                        other
                            .map(|g| g.to_string())
                            .unwrap_or_else(|| "none".into()),
                        manifest.generation
                    ),
                ))
            }
        }
        // Without an explicit model, trust the manifest and load (and check) the model only
        // when something needs embeddings: stats, verify and lexical queries need none.
        let (spec, model_dir) = if cfg.model_dir.is_none() && cfg.embedder.is_none() {
            (manifest.model.clone(), None)
        } else {
            resolve_model(&cfg, Some(&manifest))?
        };
        if spec.id != manifest.model.id || spec.dim != manifest.model.dim {
            if manifest.counts.chunks > 0 {
                return Err(Error::ModelMismatch {
                    found: manifest.model.id.clone(),
                    found_dim: manifest.model.dim,
                    expected: spec.id.clone(),
                    expected_dim: spec.dim,
                });
            }
            manifest.model = spec.clone();
        }
        // The index's passages were embedded in its precision; a query embedded in another
        // would not match them.
        let asked = cfg.asked_precision();
        if let Some(p) = asked {
            if p != manifest.precision && manifest.counts.chunks > 0 {
                return Err(Error::IncompatibleIndex {
                    path: dir.to_path_buf(),
                    what: format!(
                        "its encoder runs in {} but {p} was asked for; leave the precision out to use the index's own, or rebuild with `pinpoint index <FOLDER> --index <INDEX> --rebuild --precision {p}`",
                        manifest.precision
                    ),
                });
            }
        }
        if let (Some(p), 0) = (asked, manifest.counts.chunks) {
            manifest.precision = p;
        }
        // Check every file of the generation against its recorded size before mapping it.
        for f in &manifest.files {
            let p = dir.join(&f.path);
            let len = std::fs::metadata(&p)
                .map_err(|_| Error::corrupt(&p, "file of the current generation is missing"))?
                .len();
            if len != f.size {
                return Err(Error::corrupt(
                    &p,
                    format!("{len} bytes, manifest says {}", f.size),
                ));
            }
        }
        // Graphs are loaded by the first search that needs them (a lexical query never
        // does); their files are checked against the manifest's sizes above. Readers map a
        // graph's vectors; a writer copies them, as a merge extends the graph.
        let segs = Segments::open(
            dir,
            &artifacts::segments_of(&manifest),
            manifest.dims(),
            !write,
        )?;
        let mut engine = Engine::assemble(
            dir.to_path_buf(),
            cfg,
            manifest,
            (spec, model_dir),
            segs,
            lexical,
            lock,
        );
        engine.pin_tables()?;
        if write {
            // Before anything is written: a file a crashed commit left must not be unlinked
            // after a new one took its name.
            engine.remove_stray_files(false)?;
        }
        Ok(engine)
    }

    /// An engine over opened parts, with empty lazy caches and the injected embedder (if
    /// any) in place.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        dir: PathBuf,
        cfg: EngineConfig,
        manifest: Manifest,
        (spec, model_dir): (ModelSpec, Option<ModelDir>),
        segs: Segments,
        lexical: LexicalIndex,
        lock: Option<WriterLock>,
    ) -> Engine {
        let embedder = OnceLock::new();
        if let Some(e) = cfg.embedder.clone() {
            let _ = embedder.set(e);
        }
        Engine {
            dir,
            cfg,
            manifest,
            spec,
            model_dir,
            segs,
            lexical,
            docs: OnceLock::new(),
            docs_file: None,
            near_file: None,
            near: OnceLock::new(),
            meta_file: None,
            meta: OnceLock::new(),
            centroids: OnceLock::new(),
            doc_index: OnceLock::new(),
            token_projection: OnceLock::new(),
            text_index: Default::default(),
            cleanup: Default::default(),
            cross_encoder: std::sync::Mutex::new(None),
            embedder,
            staged: Staged::default(),
            lock,
            progress: Arc::new(NoProgress),
            run: None,
        }
    }

    /// Sets the progress reporter.
    pub fn set_progress(&mut self, p: Arc<dyn Progress>) {
        self.progress = p;
    }

    /// The index folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The projection this index's token codes are taken through (`None`: signs of every
    /// dimension, or no codes).
    pub(crate) fn token_projection(&self) -> Option<Arc<crate::late::TokenProjection>> {
        self.token_projection
            .get_or_init(|| self.manifest.token_projection().map(Arc::new))
            .clone()
    }

    /// How this index codes a passage's token vectors: its units and projection.
    pub(crate) fn passage_coder(&self) -> crate::late::PassageCoder {
        crate::late::PassageCoder::new(self.manifest.token_units, self.token_projection())
    }

    /// The manifest of the open generation.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The chunks of the open generation, across its segments: live chunks at positions
    /// `0..len()` in chunk-id order, with their vectors, token codes and graphs.
    pub fn segments(&self) -> &Segments {
        &self.segs
    }

    /// The lexical index.
    pub fn lexical(&self) -> &LexicalIndex {
        &self.lexical
    }

    /// Maps the open generation's tables (documents, metadata, neighbours), to be decoded
    /// when first needed.
    fn pin_tables(&mut self) -> Result<()> {
        let (dir, m) = (&self.dir, &self.manifest);
        self.docs_file = Some(tables::Chain::open(dir, m, "docs", docs_file)?);
        let (base, _) = m.table_chain();
        self.near_file = if m.neighbours > 0 && dir.join(near_file(base)).is_file() {
            Some(tables::Chain::open(dir, m, "near", near_file)?)
        } else {
            None
        };
        self.meta_file = if m.doc_meta {
            Some(tables::Chain::open(dir, m, "meta", meta_file)?)
        } else {
            None
        };
        Ok(())
    }

    /// The document table (read lazily: queries do not need it).
    pub fn documents(&self) -> Result<&[DocRecord]> {
        if let Some(d) = self.docs.get() {
            return Ok(d);
        }
        let d = match &self.docs_file {
            Some(f) => tables::read_docs(f)?,
            None => tables::read_docs(&tables::Chain::open(
                &self.dir,
                &self.manifest,
                "docs",
                docs_file,
            )?)?,
        };
        Ok(self.docs.get_or_init(|| d))
    }

    /// The neighbour table of the open generation (`None` without document expansion), read
    /// on first use.
    pub fn neighbour_table(&self) -> Result<Option<&crate::near::NeighbourTable>> {
        if let Some(t) = self.near.get() {
            return Ok(t.as_ref());
        }
        let t = match &self.near_file {
            Some(f) => Some(tables::read_near(f)?),
            None => None,
        };
        Ok(self.near.get_or_init(|| t).as_ref())
    }

    /// The embedder, loaded on first use.
    pub fn embedder(&self) -> Result<&Arc<dyn Embedder>> {
        if let Some(e) = self.embedder.get() {
            return Ok(e);
        }
        let md = match &self.model_dir {
            Some(m) => m.clone(),
            None => {
                // The recorded folder, else the default one (the repository moved); the id
                // check below makes sure it is the same model either way.
                let recorded = PathBuf::from(&self.manifest.model_dir);
                let dir = if !self.manifest.model_dir.is_empty() && recorded.is_dir() {
                    recorded
                } else {
                    PathBuf::from(DEFAULT_MODEL_DIR)
                };
                let md = ModelDir::open(dir)?;
                if md.spec.id != self.spec.id || md.spec.dim != self.spec.dim {
                    return Err(Error::ModelMismatch {
                        found: self.spec.id.clone(),
                        found_dim: self.spec.dim,
                        expected: md.spec.id,
                        expected_dim: md.spec.dim,
                    });
                }
                md
            }
        };
        let e: Arc<dyn Embedder> = Arc::new(BertEmbedder::with_precision(
            &md,
            self.cfg.device,
            self.manifest.precision,
        )?);
        Ok(self.embedder.get_or_init(|| e))
    }

    /// Stages a document given by a program. `external_id` is its key; re-adding the same
    /// id replaces it at the next commit.
    pub fn add_document(&mut self, external_id: &str, title: &str, text: &str) -> Result<()> {
        self.require_writer()?;
        if external_id.is_empty() {
            return Err(Error::invalid("document id", "is empty"));
        }
        self.staged.removes.remove(external_id);
        self.staged.external.insert(external_id.to_string());
        self.staged
            .upserts
            .push(Document::from_text(external_id, title, text));
        Ok(())
    }

    /// Stages the removal of a document by key.
    pub fn remove_document(&mut self, key: &str) -> Result<()> {
        self.require_writer()?;
        self.staged.upserts.retain(|d| d.key != key);
        self.staged.removes.insert(key.to_string());
        Ok(())
    }

    fn require_writer(&self) -> Result<()> {
        if self.lock.is_none() {
            return Err(Error::invalid(
                "operation",
                "the index was opened read-only",
            ));
        }
        Ok(())
    }
}

/// Model spec and folder for a config and (optionally) an existing manifest.
fn resolve_model(
    cfg: &EngineConfig,
    manifest: Option<&Manifest>,
) -> Result<(ModelSpec, Option<ModelDir>)> {
    if let Some(e) = &cfg.embedder {
        return Ok((e.spec().clone(), None));
    }
    let dir = match (&cfg.model_dir, manifest) {
        (Some(d), _) => d.clone(),
        (None, Some(m)) if !m.model_dir.is_empty() => PathBuf::from(&m.model_dir),
        _ => PathBuf::from(DEFAULT_MODEL_DIR),
    };
    let md = ModelDir::open(&dir)?;
    Ok((md.spec.clone(), Some(md)))
}
