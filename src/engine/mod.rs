//! The engine: the only place that coordinates the stores.
//!
//! An index folder holds one *generation* at a time. A commit writes every file of the next
//! generation (chunk store, vectors, HNSW dump, doc table, pending manifest) and fsyncs
//! them; then commits tantivy with the generation number as payload: **that is the commit
//! point**; then atomically renames the pending manifest over `manifest.json`. On open, a
//! tantivy payload one ahead of the manifest means the crash came after the commit point:
//! the pending manifest is complete and is rolled forward. Files of a generation that
//! tantivy never committed are deleted. A crash at any instant therefore leaves the previous
//! or the next generation, never a mix.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rayon::prelude::*;

use crate::chunk::{chunk_document, contextual_text, ChunkConfig};
use crate::dense::{build_graph, dump_graph, extend_graph, load_graph, DenseIndex, HnswParams};
use crate::embed::{BertEmbedder, DeviceChoice, Embedder};
use crate::error::{Error, IoContext, Result};
use crate::ingest::{self, Document, IngestConfig, Skipped};
use crate::late::TokenCodes;
use crate::lexical::LexicalIndex;
use crate::models::{ModelDir, ModelSpec, DEFAULT_MODEL_DIR};
mod search;

pub use search::{
    blend_rerank, Explain, Granularity, Hit, Pipeline, RerankConfig, RerankKind, SearchOutput,
    SearchRequest,
};

use crate::store::{
    file_sum, read_docs, sync_dir, write_chunks, write_docs, write_vectors, ChunkRecord,
    ChunkStore, Counts, DocRecord, Manifest, VectorFile, FORMAT_VERSION,
};

/// Progress of long operations, reported by stage. The CLI draws bars from it.
pub trait Progress: Send + Sync {
    /// A stage begins with `total` units of work.
    fn start(&self, _stage: &str, _total: u64) {}
    /// `n` more units are done.
    fn inc(&self, _n: u64) {}
    /// The current stage is over.
    fn finish(&self) {}
}

struct NoProgress;
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
    /// Live chunks after the commit.
    pub chunks_total: usize,
    /// Documents after the commit.
    pub documents_total: usize,
    /// Seconds per stage.
    pub timings: Vec<(String, f64)>,
}

struct WriterLock {
    path: PathBuf,
}

/// Lock files held by this process: a LOCK naming our own pid is only stale when this
/// process does not hold it (pid reuse after a crash).
fn held_locks() -> &'static std::sync::Mutex<HashSet<PathBuf>> {
    static HELD: OnceLock<std::sync::Mutex<HashSet<PathBuf>>> = OnceLock::new();
    HELD.get_or_init(|| std::sync::Mutex::new(HashSet::new()))
}

impl WriterLock {
    fn acquire(dir: &Path) -> Result<WriterLock> {
        let path = dir.join("LOCK");
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    writeln!(f, "{}", std::process::id()).at(&path)?;
                    f.sync_all().at(&path)?;
                    if let Ok(mut h) = held_locks().lock() {
                        h.insert(path.clone());
                    }
                    return Ok(WriterLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid: u32 = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0);
                    let ours = pid == std::process::id();
                    let held_here = held_locks()
                        .lock()
                        .map(|h| h.contains(&path))
                        .unwrap_or(true);
                    if pid != 0 && ((ours && held_here) || (!ours && process_alive(pid))) {
                        return Err(Error::Locked { path, pid });
                    }
                    // Stale lock of a dead process (or unreadable): take it over.
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::Locked { path, pid: 0 })
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if let Ok(mut h) = held_locks().lock() {
            h.remove(&self.path);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
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
    store: ChunkStore,
    dense: DenseIndex,
    /// Token codes of the chunks (empty when the index keeps none).
    late: TokenCodes,
    lexical: LexicalIndex,
    docs: OnceLock<Vec<DocRecord>>,
    doc_index: OnceLock<search::DocIndex>,
    cross_encoder: std::sync::Mutex<Option<(PathBuf, Arc<crate::rerank::CrossEncoder>)>>,
    embedder: OnceLock<Arc<dyn Embedder>>,
    staged: Staged,
    lock: Option<WriterLock>,
    progress: Arc<dyn Progress>,
}

const MANIFEST: &str = "manifest.json";

fn pending_manifest(gen: u64) -> String {
    format!("manifest.{gen}.json")
}
fn chunks_file(gen: u64) -> String {
    format!("chunks/{gen}.bin")
}
fn vec_file(gen: u64) -> String {
    format!("dense/{gen}.vec")
}
fn docs_file(gen: u64) -> String {
    format!("docs/{gen}.bin")
}
fn late_file(gen: u64) -> String {
    format!("late/{gen}.tok")
}
fn hnsw_base(gen: u64) -> String {
    format!("g{gen}")
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
                .any(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    !matches!(
                        n.as_str(),
                        "lexical"
                            | "dense"
                            | "chunks"
                            | "docs"
                            | "late"
                            | "LOCK"
                            | "README.md"
                            | ".gitignore"
                    ) && !n.starts_with("manifest.")
                });
            if foreign {
                return Err(Error::IncompatibleIndex {
                    path: dir.clone(),
                    what: "folder is not empty and holds no pinpoint manifest; refusing to write into it".into(),
                });
            }
        }
        let (spec, model_dir) = resolve_model(&cfg, None)?;
        for sub in ["lexical", "dense", "chunks", "docs", "late"] {
            std::fs::create_dir_all(dir.join(sub)).at(dir.join(sub))?;
        }
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
        };
        let dense = DenseIndex::new(VectorFile::from_vec(spec.dim, Vec::new()), None);
        let mut engine = Engine::assemble(
            dir,
            cfg,
            manifest,
            (spec, model_dir),
            ChunkStore::empty(),
            dense,
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
    pub fn open_read_only(dir: impl AsRef<Path>, cfg: EngineConfig) -> Result<Engine> {
        Self::open_inner(dir.as_ref(), cfg, false)
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
                        "{} does not exist; build one with `pinpoint index <FOLDER>`",
                        dir.display()
                    ),
                ));
            }
            return Err(Error::IncompatibleIndex {
                path: dir.to_path_buf(),
                what: "no manifest.json: not a pinpoint index (build one with `pinpoint index <FOLDER>`)".into(),
            });
        }
        let lock = if write {
            Some(WriterLock::acquire(dir)?)
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
        let gen = manifest.generation;
        let store = ChunkStore::open(&dir.join(chunks_file(gen)))?;
        let vectors = VectorFile::open(&dir.join(vec_file(gen)), manifest.model.dim)?;
        if vectors.len() != store.len() {
            return Err(Error::corrupt(
                dir.join(vec_file(gen)),
                format!("{} vectors for {} chunks", vectors.len(), store.len()),
            ));
        }
        let graph = match &manifest.hnsw {
            Some(base) => Some(load_graph(&dir.join("dense"), base)?),
            None => None,
        };
        let late = if manifest.token_codes {
            let path = dir.join(late_file(gen));
            let t = TokenCodes::open(&path, manifest.model.dim)?;
            if t.len() != store.len() {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "token codes of {} chunks for {} chunks",
                        t.len(),
                        store.len()
                    ),
                ));
            }
            t
        } else {
            TokenCodes::empty(manifest.model.dim)
        };
        let mut engine = Engine::assemble(
            dir.to_path_buf(),
            cfg,
            manifest,
            (spec, model_dir),
            store,
            DenseIndex::new(vectors, graph),
            lexical,
            lock,
        );
        engine.late = late;
        if write {
            engine.remove_stray_files()?;
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
        store: ChunkStore,
        dense: DenseIndex,
        lexical: LexicalIndex,
        lock: Option<WriterLock>,
    ) -> Engine {
        let embedder = OnceLock::new();
        if let Some(e) = cfg.embedder.clone() {
            let _ = embedder.set(e);
        }
        let late = TokenCodes::empty(spec.dim);
        Engine {
            dir,
            cfg,
            manifest,
            spec,
            model_dir,
            late,
            store,
            dense,
            lexical,
            docs: OnceLock::new(),
            doc_index: OnceLock::new(),
            cross_encoder: std::sync::Mutex::new(None),
            embedder,
            staged: Staged::default(),
            lock,
            progress: Arc::new(NoProgress),
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

    /// The manifest of the open generation.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The chunk store of the open generation.
    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    /// The lexical index.
    pub fn lexical(&self) -> &LexicalIndex {
        &self.lexical
    }

    /// The dense index.
    pub fn dense(&self) -> &DenseIndex {
        &self.dense
    }

    /// The token codes of the chunks, at the chunk store's positions (empty when the index
    /// keeps none: see [`Engine::has_token_codes`]).
    pub fn token_codes(&self) -> &TokenCodes {
        &self.late
    }

    /// The document table (read lazily: queries do not need it).
    pub fn documents(&self) -> Result<&[DocRecord]> {
        if let Some(d) = self.docs.get() {
            return Ok(d);
        }
        let d = read_docs(&self.dir.join(docs_file(self.manifest.generation)))?;
        Ok(self.docs.get_or_init(|| d))
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
        let e: Arc<dyn Embedder> = Arc::new(BertEmbedder::from_model_dir(&md, self.cfg.device)?);
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

    /// Syncs the index with `root`: stages new and changed files (content hash decides what
    /// is re-embedded) and the removal of files that are gone, then commits.
    pub fn add_folder(&mut self, root: impl AsRef<Path>) -> Result<IndexReport> {
        self.require_writer()?;
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(Error::invalid(
                "folder",
                format!("{} is not a folder", root.display()),
            ));
        }
        let t0 = Instant::now();
        let walked = ingest::walk(root, &self.cfg.ingest);
        let mut report = IndexReport {
            skipped: walked.skipped,
            unsupported: walked.unsupported,
            ..Default::default()
        };
        let known: HashMap<String, (u64, i64, bool)> = self
            .documents()?
            .iter()
            .map(|d| (d.key.clone(), (d.size, d.mtime, d.external)))
            .collect();
        // Cheap check first: size and mtime unchanged means the file is unchanged.
        let mut to_read = Vec::new();
        let mut seen = HashSet::new();
        for p in &walked.files {
            let key = ingest::key_for(root, p);
            seen.insert(key.clone());
            match (known.get(&key), ingest::stat(p)) {
                (Some(&(size, mtime, _)), Ok((s, m))) if size == s && mtime == m => {
                    report.unchanged += 1
                }
                _ => to_read.push(p.clone()),
            }
        }
        self.progress.start("reading", to_read.len() as u64);
        let cfg = self.cfg.ingest.clone();
        let progress = self.progress.clone();
        let read: Vec<(PathBuf, std::result::Result<Document, ingest::SkipReason>)> = to_read
            .par_iter()
            .map(|p| {
                let r = ingest::read_document(root, p, &cfg);
                progress.inc(1);
                (p.clone(), r)
            })
            .collect();
        self.progress.finish();
        for (path, r) in read {
            match r {
                Ok(doc) => self.staged.upserts.push(doc),
                Err(reason) => {
                    // A file that became unreadable or binary leaves the index.
                    let key = ingest::key_for(root, &path);
                    if known.contains_key(&key) {
                        self.staged.removes.insert(key);
                    }
                    report.skipped.push(Skipped { path, reason });
                }
            }
        }
        for (key, &(_, _, external)) in &known {
            if !external && !seen.contains(key) {
                self.staged.removes.insert(key.clone());
            }
        }
        let mut commit = self.commit()?;
        commit
            .timings
            .insert(0, ("walk+read".into(), t0.elapsed().as_secs_f64()));
        commit.skipped = report.skipped;
        commit.unsupported = report.unsupported;
        commit.unchanged += report.unchanged;
        Ok(commit)
    }

    /// Applies staged changes as a new generation (see the module docs for the protocol).
    pub fn commit(&mut self) -> Result<IndexReport> {
        self.require_writer()?;
        let mut report = IndexReport::default();
        let staged = std::mem::take(&mut self.staged);
        let old_docs: Vec<DocRecord> = self.documents()?.to_vec();
        let old_by_key: HashMap<&str, &DocRecord> =
            old_docs.iter().map(|d| (d.key.as_str(), d)).collect();

        // Last staged version of each key wins.
        let mut upserts: Vec<Document> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        for d in staged.upserts {
            match index_of.get(&d.key) {
                Some(&i) => upserts[i] = d,
                None => {
                    index_of.insert(d.key.clone(), upserts.len());
                    upserts.push(d);
                }
            }
        }
        let upsert_keys: HashSet<String> = upserts.iter().map(|d| d.key.clone()).collect();
        let removed: HashSet<String> = staged
            .removes
            .into_iter()
            .filter(|k| old_by_key.contains_key(k.as_str()) && !upsert_keys.contains(k))
            .collect();
        if upserts.is_empty() && removed.is_empty() && self.manifest.generation > 0 {
            report.documents_total = old_docs.len();
            report.chunks_total = self.store.len();
            return Ok(report);
        }

        // Documents that leave (removed or replaced) can donate their chunks to a new
        // document with the same content (a rename).
        let mut donors: HashMap<&str, &DocRecord> = HashMap::new();
        for k in &removed {
            let d = old_by_key[k.as_str()];
            donors.entry(d.hash.as_str()).or_insert(d);
        }

        enum Plan {
            Keep(DocRecord),
            Fresh(Document),
            Renamed(Document, DocRecord),
        }
        let mut plans: Vec<Plan> = Vec::new();
        for d in &old_docs {
            if !removed.contains(&d.key) && !upsert_keys.contains(&d.key) {
                plans.push(Plan::Keep(d.clone()));
            }
        }
        let mut lex_deletes: Vec<String> = removed.iter().cloned().collect();
        for doc in upserts {
            match old_by_key.get(doc.key.as_str()) {
                Some(old) if old.hash == doc.hash => {
                    let mut rec = (*old).clone();
                    rec.mtime = doc.mtime;
                    rec.size = doc.size;
                    rec.title = doc.title.clone();
                    report.unchanged += 1;
                    plans.push(Plan::Keep(rec));
                }
                Some(_) => {
                    report.updated += 1;
                    lex_deletes.push(doc.key.clone());
                    plans.push(Plan::Fresh(doc));
                }
                None => match donors.remove(doc.hash.as_str()) {
                    Some(old) => {
                        report.renamed += 1;
                        plans.push(Plan::Renamed(doc, old.clone()));
                    }
                    None => {
                        report.added += 1;
                        plans.push(Plan::Fresh(doc));
                    }
                },
            }
        }
        report.removed = removed.len() - report.renamed.min(removed.len());

        // Chunk fresh documents in parallel.
        let t_chunk = Instant::now();
        let fresh: Vec<&Document> = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Fresh(d) => Some(d),
                _ => None,
            })
            .collect();
        let chunking = self.manifest.chunking.clone();
        let need_embed = !fresh.is_empty();
        let embedder = if need_embed {
            Some(self.embedder()?.clone())
        } else {
            None
        };
        self.progress.start("chunking", fresh.len() as u64);
        let drafts: Vec<Vec<crate::chunk::ChunkDraft>> = fresh
            .par_iter()
            .map(|d| {
                let spans = |t: &str| match &embedder {
                    Some(e) => e.token_spans(t),
                    None => crate::embed::whitespace_spans(t),
                };
                let r = chunk_document(d, &spans, &chunking);
                self.progress.inc(1);
                r
            })
            .collect();
        self.progress.finish();
        let chunk_secs = t_chunk.elapsed().as_secs_f64();

        // Assign ids and build records; old chunks keep their ids (and rows).
        let mut next_id = self.manifest.next_chunk_id;
        let mut records: Vec<ChunkRecord> = Vec::new();
        let mut rows_from_old: Vec<Option<usize>> = Vec::new();
        let mut embed_texts: Vec<String> = Vec::new();
        let mut embed_slots: Vec<usize> = Vec::new();
        let mut new_docs: Vec<DocRecord> = Vec::new();
        let mut lex_adds: Vec<usize> = Vec::new();
        let mut drafts_iter = drafts.into_iter();
        let mut kept_old: Vec<(u64, usize)> = Vec::new();
        for plan in plans {
            match plan {
                Plan::Keep(rec) => {
                    for id in &rec.chunks {
                        if let Some(pos) = self.store.position(*id) {
                            kept_old.push((*id, pos));
                        }
                    }
                    new_docs.push(rec);
                }
                Plan::Fresh(doc) => {
                    let ds = drafts_iter.next().unwrap_or_default();
                    let mut ids = Vec::with_capacity(ds.len());
                    for dr in ds {
                        let id = next_id;
                        next_id += 1;
                        ids.push(id);
                        embed_texts.push(contextual_text(
                            &doc.title,
                            dr.heading.as_deref(),
                            &dr.text,
                        ));
                        embed_slots.push(records.len());
                        lex_adds.push(records.len());
                        records.push(ChunkRecord {
                            id,
                            doc: doc.key.clone(),
                            byte_range: (dr.byte_range.0 as u64, dr.byte_range.1 as u64),
                            line_range: dr.line_range,
                            heading: dr.heading,
                            text: dr.text,
                        });
                        rows_from_old.push(None);
                    }
                    new_docs.push(doc_record(doc, ids, &staged.external));
                }
                Plan::Renamed(doc, old) => {
                    let mut ids = Vec::new();
                    for oid in &old.chunks {
                        if let Some(pos) = self.store.position(*oid) {
                            let mut r = self.store.get(pos)?;
                            let id = next_id;
                            next_id += 1;
                            ids.push(id);
                            r.id = id;
                            r.doc = doc.key.clone();
                            lex_adds.push(records.len());
                            records.push(r);
                            rows_from_old.push(Some(pos));
                        }
                    }
                    new_docs.push(doc_record(doc, ids, &staged.external));
                }
            }
        }
        // Embed new chunks.
        let t_embed = Instant::now();
        let dim = self.spec.dim;
        let mut new_vecs = vec![0f32; embed_texts.len() * dim];
        let want_codes = self.manifest.token_codes;
        let mut new_codes: Vec<Vec<u8>> = vec![Vec::new(); embed_texts.len()];
        if let Some(e) = &embedder {
            self.progress.start("embedding", embed_texts.len() as u64);
            // Small parts keep the progress bar moving; forward batches inside are smaller still.
            let batch = 64;
            // Sort by length globally so each slice of the work is length-homogeneous.
            let mut order: Vec<usize> = (0..embed_texts.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(embed_texts[i].len()));
            for part in order.chunks(batch) {
                let texts: Vec<&str> = part.iter().map(|&i| embed_texts[i].as_str()).collect();
                let v = if want_codes {
                    // Vectors and token codes from one forward pass over the passage text.
                    let prefix = &e.spec().passage_prefix;
                    let full: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
                    let refs: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
                    let (v, toks) = e.embed_with_tokens(&refs)?;
                    let codes: Vec<Vec<u8>> = full
                        .par_iter()
                        .zip(&toks)
                        .map(|(t, m)| crate::late::encode_passage(t, &e.token_spans(t), m))
                        .collect();
                    for (&i, c) in part.iter().zip(codes) {
                        new_codes[i] = c;
                    }
                    v
                } else {
                    e.embed_passages(&texts)?
                };
                for (j, &i) in part.iter().enumerate() {
                    new_vecs[i * dim..(i + 1) * dim].copy_from_slice(&v[j * dim..(j + 1) * dim]);
                }
                self.progress.inc(part.len() as u64);
            }
            self.progress.finish();
        }
        report.chunks_embedded = embed_texts.len();
        let embed_secs = t_embed.elapsed().as_secs_f64();

        // Assemble the generation: old kept chunks (already sorted by id) then new ones.
        kept_old.sort_unstable();
        let mut all_records = Vec::with_capacity(kept_old.len() + records.len());
        let mut all_vecs = Vec::with_capacity((kept_old.len() + records.len()) * dim);
        let mut all_codes: Vec<Codes> = Vec::new();
        for &(_, pos) in &kept_old {
            all_records.push(self.store.get(pos)?);
            all_vecs.extend_from_slice(self.dense.vectors().row(pos));
            if want_codes {
                all_codes.push(Codes::Old(pos));
            }
        }
        let mut slot_to_embed: HashMap<usize, usize> = HashMap::new();
        for (k, &slot) in embed_slots.iter().enumerate() {
            slot_to_embed.insert(slot, k);
        }
        for (slot, rec) in records.iter().enumerate() {
            match rows_from_old[slot] {
                Some(pos) => {
                    all_vecs.extend_from_slice(self.dense.vectors().row(pos));
                    if want_codes {
                        all_codes.push(Codes::Old(pos));
                    }
                }
                None => {
                    let k = slot_to_embed[&slot];
                    all_vecs.extend_from_slice(&new_vecs[k * dim..(k + 1) * dim]);
                    if want_codes {
                        all_codes.push(Codes::New(std::mem::take(&mut new_codes[k])));
                    }
                }
            }
            all_records.push(rec.clone());
        }
        let lex_texts: Vec<(u64, String, String)> = lex_adds
            .iter()
            .map(|&slot| {
                let r = &records[slot];
                let title = new_docs
                    .iter()
                    .find(|d| d.key == r.doc)
                    .map(|d| d.title.as_str())
                    .unwrap_or("");
                (
                    r.id,
                    r.doc.clone(),
                    contextual_text(title, r.heading.as_deref(), &r.text),
                )
            })
            .collect();
        new_docs.sort_by(|a, b| a.key.cmp(&b.key));
        report.documents_total = new_docs.len();
        report.chunks_total = all_records.len();
        let t_write = Instant::now();
        let gen = self.manifest.generation + 1;
        self.write_generation(
            gen,
            Generation {
                records: all_records,
                vecs: all_vecs,
                codes: all_codes,
                docs: new_docs,
                lex_deletes,
                lex_adds: lex_texts,
                next_chunk_id: next_id,
            },
        )?;
        report.timings = vec![
            ("chunk".into(), chunk_secs),
            ("embed".into(), embed_secs),
            ("write+commit".into(), t_write.elapsed().as_secs_f64()),
        ];
        Ok(report)
    }

    /// Writes generation `gen` and commits it.
    fn write_generation(&mut self, gen: u64, data: Generation) -> Result<()> {
        let Generation {
            records,
            vecs,
            codes,
            docs,
            lex_deletes,
            lex_adds,
            next_chunk_id,
        } = data;
        // Ids below this existed in the previous generation; the rest are new.
        let first_new_id = self.manifest.next_chunk_id;
        let dim = self.spec.dim;
        let dir = self.dir.clone();
        let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
        self.progress.start("write", 0);
        write_chunks(&dir.join(chunks_file(gen)), &records)?;
        write_vectors(&dir.join(vec_file(gen)), dim, &vecs)?;
        write_docs(&dir.join(docs_file(gen)), &docs)?;
        let vectors = VectorFile::open(&dir.join(vec_file(gen)), dim)?;
        let late = if self.manifest.token_codes {
            if codes.len() != records.len() {
                return Err(Error::invalid(
                    "token codes",
                    format!("{} entries for {} chunks", codes.len(), records.len()),
                ));
            }
            let path = dir.join(late_file(gen));
            std::fs::create_dir_all(dir.join("late")).at(dir.join("late"))?;
            // Kept chunks' codes are read from the current generation's mapped file as the
            // new one is written, so a commit holds only the new chunks' codes in memory.
            let parts: Vec<&[u8]> = codes
                .iter()
                .map(|c| match c {
                    Codes::Old(pos) => self.late.codes(*pos),
                    Codes::New(v) => v.as_slice(),
                })
                .collect();
            TokenCodes::write(&path, dim, parts.iter().copied())?;
            sync_dir(&dir.join("late"))?;
            TokenCodes::open(&path, dim)?
        } else {
            TokenCodes::empty(dim)
        };

        // Dense graph: extend the previous one while few of its points are dead, else
        // rebuild; none for small collections.
        let params = &self.cfg.hnsw;
        let mut hnsw_name = None;
        let mut graph = None;
        if vectors.len() >= params.min_points.max(1) {
            self.progress.start("hnsw", vectors.len() as u64);
            let old = self.dense.take_graph();
            let g = match old {
                Some(g) => {
                    let old_points = g.get_nb_point();
                    let first_new = ids.partition_point(|&id| id < first_new_id);
                    let dead = old_points.saturating_sub(first_new);
                    let total = old_points + (ids.len() - first_new);
                    if (dead as f32) <= params.max_tombstone_ratio * total as f32 {
                        extend_graph(&g, &vectors, &ids, first_new..ids.len());
                        g
                    } else {
                        build_graph(params, &vectors, &ids)
                    }
                }
                None => build_graph(params, &vectors, &ids),
            };
            let name = dump_graph(&g, &dir.join("dense"), &hnsw_base(gen))?;
            self.progress.finish();
            hnsw_name = Some(name);
            graph = Some(g);
        }
        for sub in ["chunks", "dense", "docs"] {
            sync_dir(&dir.join(sub))?;
        }

        let mut next = self.manifest.clone();
        next.generation = gen;
        next.model = self.spec.clone();
        next.counts = Counts {
            documents: docs.len() as u64,
            chunks: records.len() as u64,
        };
        next.hnsw = hnsw_name.clone();
        next.next_chunk_id = next_chunk_id.max(first_new_id);
        let mut files = vec![chunks_file(gen), vec_file(gen), docs_file(gen)];
        if next.token_codes {
            files.push(late_file(gen));
        }
        if let Some(h) = &hnsw_name {
            files.push(format!("dense/{h}.hnsw.graph"));
            files.push(format!("dense/{h}.hnsw.data"));
        }
        next.files = files
            .iter()
            .map(|f| file_sum(&dir, f))
            .collect::<Result<Vec<_>>>()?;
        let pending = dir.join(pending_manifest(gen));
        next.write_to(&pending)?;
        sync_dir(&dir)?;

        // The commit point.
        self.progress.start("commit", 0);
        let mut w = self.lexical.writer()?;
        for k in &lex_deletes {
            w.delete_doc(k);
        }
        for (id, doc, text) in &lex_adds {
            w.add_chunk(*id, doc, text)?;
        }
        w.commit(gen)?;

        self.progress.start("publish", 0);
        std::fs::rename(&pending, dir.join(MANIFEST)).at(dir.join(MANIFEST))?;
        sync_dir(&dir)?;
        self.lexical.reload()?;
        self.store = ChunkStore::open(&dir.join(chunks_file(gen)))?;
        self.dense = DenseIndex::new(vectors, graph);
        self.late = late;
        self.manifest = next;
        self.docs = OnceLock::new();
        self.doc_index = OnceLock::new();
        let _ = self.docs.set(docs);
        self.remove_stray_files()?;
        self.progress.finish();
        Ok(())
    }

    /// Writes the current content as a new generation with a freshly built HNSW graph
    /// (dropping its tombstones). The lexical index is left to tantivy's own merging.
    pub fn compact(&mut self) -> Result<()> {
        self.require_writer()?;
        let _ = self.dense.take_graph();
        let n = self.store.len();
        let mut records = Vec::with_capacity(n);
        for i in 0..n {
            records.push(self.store.get(i)?);
        }
        let vecs = self.dense.vectors().as_slice().to_vec();
        let codes = if self.manifest.token_codes {
            (0..n).map(Codes::Old).collect()
        } else {
            Vec::new()
        };
        let docs = self.documents()?.to_vec();
        let gen = self.manifest.generation + 1;
        let next_chunk_id = self.manifest.next_chunk_id;
        self.write_generation(
            gen,
            Generation {
                records,
                vecs,
                codes,
                docs,
                lex_deletes: Vec::new(),
                lex_adds: Vec::new(),
                next_chunk_id,
            },
        )
    }

    /// Checks every file of the current generation against the checksums in the manifest
    /// and the cross-index invariants (the same chunks in the store, the vectors, the lexical
    /// index, the document table and the graph). Returns the problems found (empty: sound).
    pub fn verify(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for f in &self.manifest.files {
            match file_sum(&self.dir, &f.path) {
                Ok(got) if got.size != f.size => problems.push(format!(
                    "{}: {} bytes, manifest says {}",
                    f.path, got.size, f.size
                )),
                Ok(got) if got.crc32 != f.crc32 => problems.push(format!(
                    "{}: checksum {:08x}, manifest says {:08x} (file damaged)",
                    f.path, got.crc32, f.crc32
                )),
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e}", f.path)),
            }
        }
        let store_ids: Vec<u64> = (0..self.store.len()).map(|i| self.store.id_at(i)).collect();
        if store_ids.windows(2).any(|w| w[0] >= w[1]) {
            problems.push("chunk store ids are not strictly ascending".into());
        }
        let lex_ids = self.lexical.all_chunk_ids()?;
        if lex_ids != store_ids {
            let ls: HashSet<u64> = lex_ids.iter().copied().collect();
            let ss: HashSet<u64> = store_ids.iter().copied().collect();
            problems.push(format!(
                "lexical index and chunk store disagree: {} chunks only in lexical, {} only in the store",
                ls.difference(&ss).count(),
                ss.difference(&ls).count()
            ));
        }
        if self.dense.vectors().len() != store_ids.len() {
            problems.push(format!(
                "{} vectors for {} chunks",
                self.dense.vectors().len(),
                store_ids.len()
            ));
        }
        let mut doc_ids: Vec<u64> = self
            .documents()?
            .iter()
            .flat_map(|d| d.chunks.iter().copied())
            .collect();
        doc_ids.sort_unstable();
        if doc_ids != store_ids {
            problems.push("document table and chunk store disagree on the chunk set".into());
        }
        if self.manifest.counts.chunks as usize != store_ids.len() {
            problems.push(format!(
                "manifest counts {} chunks, store holds {}",
                self.manifest.counts.chunks,
                store_ids.len()
            ));
        }
        if self.manifest.token_codes && self.late.len() != store_ids.len() {
            problems.push(format!(
                "token codes of {} chunks for {} chunks",
                self.late.len(),
                store_ids.len()
            ));
        }
        if let Some(g) = self.dense.graph() {
            if g.get_nb_point() < store_ids.len() {
                problems.push(format!(
                    "HNSW graph has {} points for {} chunks",
                    g.get_nb_point(),
                    store_ids.len()
                ));
            }
        }
        Ok(problems)
    }

    /// Deletes files of generations other than the current and the previous one (readers
    /// that opened the previous generation keep working).
    fn remove_stray_files(&self) -> Result<()> {
        let gen = self.manifest.generation;
        let keep = |g: u64| g == gen || g + 1 == gen;
        for sub in ["chunks", "dense", "docs", "late"] {
            let d = self.dir.join(sub);
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let num: String = name
                    .trim_start_matches('g')
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                if let Ok(g) = num.parse::<u64>() {
                    if !keep(g) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(rest) = name
                    .strip_prefix("manifest.")
                    .and_then(|r| r.strip_suffix(".json"))
                {
                    if rest.parse::<u64>().is_ok() {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        Ok(())
    }

    /// Facts for `pinpoint stats`.
    pub fn stats(&self) -> Result<Stats> {
        let mut bytes = Vec::new();
        for sub in ["lexical", "dense", "late", "chunks", "docs"] {
            bytes.push((sub.to_string(), dir_size(&self.dir.join(sub))));
        }
        Ok(Stats {
            index: self.dir.display().to_string(),
            generation: self.manifest.generation,
            documents: self.manifest.counts.documents,
            chunks: self.manifest.counts.chunks,
            model: self.manifest.model.id.clone(),
            model_dir: self.manifest.model_dir.clone(),
            dimension: self.manifest.model.dim,
            chunk_tokens: self.manifest.chunking.max_tokens,
            chunk_overlap: self.manifest.chunking.overlap,
            hnsw: self.manifest.hnsw.is_some(),
            token_codes: self.manifest.token_codes.then(|| self.late.tokens()),
            bytes_on_disk: bytes,
        })
    }
}

/// Facts about an index.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// Index folder.
    pub index: String,
    /// Current generation.
    pub generation: u64,
    /// Documents.
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
    /// Model identity.
    pub model: String,
    /// Model folder.
    pub model_dir: String,
    /// Vector dimension.
    pub dimension: usize,
    /// Chunk size in tokens.
    pub chunk_tokens: usize,
    /// Chunk overlap in tokens.
    pub chunk_overlap: usize,
    /// Whether an HNSW graph is built (else exact scan).
    pub hnsw: bool,
    /// Passage tokens kept as token codes (`None`: the index keeps none).
    pub token_codes: Option<u64>,
    /// Bytes on disk per part.
    pub bytes_on_disk: Vec<(String, u64)>,
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
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

/// The document-table entry of a staged document with its chunk ids.
fn doc_record(doc: Document, chunks: Vec<u64>, external: &HashSet<String>) -> DocRecord {
    DocRecord {
        external: external.contains(&doc.key),
        key: doc.key,
        title: doc.title,
        hash: doc.hash,
        size: doc.size,
        mtime: doc.mtime,
        chunks,
    }
}

/// Everything a new generation consists of.
/// Where a chunk's token codes for the next generation come from.
enum Codes {
    /// The chunk at this position of the current generation.
    Old(usize),
    /// Computed in this commit.
    New(Vec<u8>),
}

#[derive(Default)]
struct Generation {
    /// All live chunks, sorted by id.
    records: Vec<ChunkRecord>,
    /// Their vectors, same order.
    vecs: Vec<f32>,
    /// Their token codes, same order (empty when the index keeps none).
    codes: Vec<Codes>,
    /// The document table.
    docs: Vec<DocRecord>,
    /// Document keys whose lexical entries go.
    lex_deletes: Vec<String>,
    /// Lexical entries to add: (chunk id, document key, indexed text).
    lex_adds: Vec<(u64, String, String)>,
    /// Next free chunk id after this generation.
    next_chunk_id: u64,
}
