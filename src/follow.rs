//! Following an index as writers commit: the engine of the newest committed generation,
//! opened when the manifest changes, shared by the readers that ask (the HTTP server, the
//! MCP server).
//!
//! Not for: writing; a follower opens read-only and never takes the writer lock.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::engine::{Engine, EngineConfig, MANIFEST};
use crate::error::{Error, Result};
use crate::store::Manifest;

/// An index folder followed from one generation to the next.
pub struct Follower {
    dir: PathBuf,
    cfg: EngineConfig,
    engine: RwLock<Arc<Engine>>,
    /// Held while a newer generation is opened, so that concurrent requests open it once.
    reopening: Mutex<()>,
    /// Say on stderr when a newer generation is taken up.
    log: std::sync::atomic::AtomicBool,
}

impl Follower {
    /// Follows `dir` from `engine`, its open generation; `cfg` opens the later ones (give
    /// it the loaded embedder, so that a new generation does not load the model again).
    pub fn new(dir: PathBuf, cfg: EngineConfig, engine: Engine) -> Follower {
        Follower {
            dir,
            cfg,
            engine: RwLock::new(Arc::new(engine)),
            reopening: Mutex::new(()),
            log: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Opens `dir` read-only and follows it; the model is loaded now when the index holds
    /// anything, so that a bad model fails here and the first question pays nothing.
    pub fn open(dir: impl Into<PathBuf>, cfg: EngineConfig) -> Result<Follower> {
        let dir = dir.into();
        let engine = Engine::open_read_only(&dir, cfg.clone())?;
        let mut cfg = cfg;
        if !engine.segments().is_empty() {
            cfg.embedder = Some(engine.embedder()?.clone());
        }
        Ok(Follower::new(dir, cfg, engine))
    }

    /// Whether a newer generation taken up is said on stderr (on by default).
    pub fn set_log(&self, on: bool) {
        self.log.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The index folder.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The engine held now.
    pub fn current(&self) -> Arc<Engine> {
        match self.engine.read() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The engine of the newest committed generation: the one held, or a newer one opened
    /// now. When the newer one cannot be opened, the held one keeps answering (its files are
    /// mapped, so a writer's cleanup cannot pull them away) and the reason is logged.
    pub fn engine(&self) -> Arc<Engine> {
        let held = self.current();
        let Ok(latest) = Manifest::read(&self.dir.join(MANIFEST)) else {
            return held;
        };
        if same_state(&latest, held.manifest()) {
            return held;
        }
        let _one = self.reopening.lock();
        let held = self.current();
        if same_state(&latest, held.manifest()) {
            return held;
        }
        let opened = Engine::open_read_only(&self.dir, self.cfg.clone()).or_else(|e| match e {
            // Rebuilt with another model: load that one.
            Error::ModelMismatch { .. } => Engine::open_read_only(
                &self.dir,
                EngineConfig {
                    embedder: None,
                    ..self.cfg.clone()
                },
            ),
            e => Err(e),
        });
        match opened {
            Ok(e) => {
                let e = Arc::new(e);
                if self.log.load(std::sync::atomic::Ordering::Relaxed) {
                    eprintln!(
                        "now serving generation {} ({} chunks)",
                        e.manifest().generation,
                        e.segments().len()
                    );
                }
                match self.engine.write() {
                    Ok(mut w) => *w = e.clone(),
                    Err(poisoned) => *poisoned.into_inner() = e.clone(),
                }
                e
            }
            Err(err) => {
                eprintln!(
                    "generation {} cannot be opened, still serving {}: {err}",
                    latest.generation,
                    held.manifest().generation
                );
                held
            }
        }
    }
}

/// Whether two manifests describe the same index state. The generation alone is not
/// enough: an index deleted and built again starts over at generation 1, and `pinpoint
/// tune` stores new defaults without a new generation.
fn same_state(a: &Manifest, b: &Manifest) -> bool {
    a.generation == b.generation && a.files == b.files && a.search_defaults == b.search_defaults
}
