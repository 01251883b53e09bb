//! Python bindings of pinpoint: the thin layer `pip install ./python` builds.
//!
//! Options go in and answers come out as the JSON `pinpoint query --json` and `serve`
//! speak (the Python side, `pysrc/pinpoint/__init__.py`, turns keyword arguments into it
//! and parses the answers), so the binding adds no second schema. Every call that works
//! (indexing, searching) releases the GIL, so Python threads and Ray actors run searches
//! in parallel.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use pinpoint::api::{Answer, QueryOptions};
use pinpoint::engine::CollectionStats;
use pinpoint::shard::Shard;
use pinpoint::{Engine, EngineConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

create_exception!(
    _pinpoint,
    PinpointError,
    PyException,
    "An error pinpoint reports: its message names the cause."
);

fn err(e: impl std::fmt::Display) -> PyErr {
    PinpointError::new_err(e.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(err)
}

fn config(
    model: Option<PathBuf>,
    precision: Option<&str>,
    shard: Option<(u32, u32)>,
) -> PyResult<EngineConfig> {
    let mut cfg = EngineConfig {
        model_dir: model,
        ..Default::default()
    };
    if let Some(p) = precision {
        cfg.precision = Some(p.parse().map_err(err)?);
    }
    if let Some((i, n)) = shard {
        cfg.ingest.shard = Some(Shard::new(i, n).map_err(err)?);
    }
    Ok(cfg)
}

/// One index folder: open (or created), synced, searched.
#[pyclass(module = "pinpoint._pinpoint")]
struct Index {
    engine: Mutex<Engine>,
}

impl Index {
    fn with<R>(&self, f: impl FnOnce(&mut Engine) -> pinpoint::Result<R>) -> PyResult<R> {
        let mut e = self
            .engine
            .lock()
            .map_err(|_| err("the index is poisoned by an earlier panic"))?;
        f(&mut e).map_err(err)
    }
}

#[pymethods]
impl Index {
    /// Opens the index at `path` for writing, creating it when absent (`read_only`: open an
    /// existing one without the writer lock). `shard=(i, n)` makes folder syncs index only
    /// the files of shard `i` of `n` (a sharded build).
    #[new]
    #[pyo3(signature = (path, model=None, precision=None, read_only=false, shard=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        model: Option<PathBuf>,
        precision: Option<String>,
        read_only: bool,
        shard: Option<(u32, u32)>,
    ) -> PyResult<Index> {
        let cfg = config(model, precision.as_deref(), shard)?;
        let engine = py
            .detach(|| {
                if read_only {
                    Engine::open_read_only(&path, cfg)
                } else {
                    Engine::open_or_create(&path, cfg)
                }
            })
            .map_err(err)?;
        Ok(Index {
            engine: Mutex::new(engine),
        })
    }

    /// Syncs the folder (as `pinpoint index`), as `collection` when named; returns the
    /// report as JSON.
    #[pyo3(signature = (folder, collection=None, description=None))]
    fn add_folder(
        &self,
        py: Python<'_>,
        folder: PathBuf,
        collection: Option<String>,
        description: Option<String>,
    ) -> PyResult<String> {
        let r = py.detach(|| {
            self.with(|e| match &collection {
                Some(c) => e.add_collection(c, &folder, description.as_deref().unwrap_or("")),
                None => e.add_folder(&folder),
            })
        })?;
        json(&r)
    }

    /// Stages a document given by the program (in `collection` when named).
    #[pyo3(signature = (id, title, text, collection=None))]
    fn add_document(
        &self,
        id: &str,
        title: &str,
        text: &str,
        collection: Option<&str>,
    ) -> PyResult<()> {
        self.with(|e| match collection {
            Some(c) => e.add_document_in(c, id, title, text),
            None => e.add_document(id, title, text),
        })
    }

    /// Stages the removal of a document by key.
    fn remove_document(&self, key: &str) -> PyResult<()> {
        self.with(|e| e.remove_document(key))
    }

    /// Commits what is staged; returns the report as JSON.
    fn commit(&self, py: Python<'_>) -> PyResult<String> {
        let r = py.detach(|| self.with(|e| e.commit()))?;
        json(&r)
    }

    /// Answers `query` with options given as JSON (the `query --json` / `serve` options);
    /// returns the answer as JSON, each hit with its cosine to the question (what a router
    /// breaks rank ties with when it fuses the answers of several shards).
    fn search(&self, py: Python<'_>, query: &str, options: &str) -> PyResult<String> {
        let opts: QueryOptions =
            serde_json::from_str(options).map_err(|e| err(format!("bad option: {e}")))?;
        py.detach(|| {
            self.with(|e| {
                let mut req = opts.request(e, query)?;
                // A router merging shards reads each hit's fused and reranker scores.
                req.explain = true;
                let out = e.search_detailed(&req)?;
                let mut v = serde_json::to_value(Answer::new(query, req.mode, &out))
                    .map_err(|x| pinpoint::Error::invalid("answer", x.to_string()))?;
                let q = if out.hits.is_empty() {
                    Vec::new()
                } else {
                    e.embedder()?.embed_query(query)?
                };
                if let Some(hits) = v.get_mut("hits").and_then(|h| h.as_array_mut()) {
                    for (h, hit) in hits.iter_mut().zip(&out.hits) {
                        let cos = e
                            .segments()
                            .position(hit.chunk_id)
                            .map(|p| pinpoint::embed::dot(e.segments().row(p), &q));
                        if let Some(o) = h.as_object_mut() {
                            o.insert("cosine".into(), serde_json::json!(cos));
                            if let Some(x) = &hit.explain {
                                o.insert("fused".into(), serde_json::json!(x.fused_score));
                                o.insert("rerank".into(), serde_json::json!(x.rerank_score));
                                o.insert(
                                    "rerank_weight".into(),
                                    serde_json::json!(x.rerank_weight),
                                );
                            }
                            if !opts.explain {
                                o.remove("explain");
                            }
                        }
                    }
                }
                Ok(v.to_string())
            })
        })
    }

    /// What the index holds (`pinpoint stats --json`).
    fn stats(&self) -> PyResult<String> {
        let s = self.with(|e| e.stats())?;
        json(&s)
    }

    /// The collections with their figures.
    fn collections(&self) -> PyResult<String> {
        let c: Vec<CollectionStats> = self.with(|e| e.collections())?;
        json(&c)
    }
}

/// Fuses answers to one question (JSON list of answers as `Index.search` gives them).
/// `shards`: the shards of one folder, merged by the engine's own head blend over their
/// union (`pinpoint::multi::merge_shards`); otherwise separate indexes, fused by rank, ties
/// by cosine (`query --index A --index B`). Returns `{"hits": [...]}` with at most `k`
/// hits, ranks renumbered and scores the merged ones.
#[pyfunction]
#[pyo3(signature = (answers, k, shards=true))]
fn fuse(answers: &str, k: usize, shards: bool) -> PyResult<String> {
    let answers: Vec<serde_json::Value> =
        serde_json::from_str(answers).map_err(|e| err(format!("bad answers: {e}")))?;
    let hits: Vec<Vec<serde_json::Value>> = answers
        .iter()
        .map(|a| a["hits"].as_array().cloned().unwrap_or_default())
        .collect();
    let cosines: Vec<Vec<f32>> = hits
        .iter()
        .map(|h| {
            h.iter()
                .map(|x| x["cosine"].as_f64().unwrap_or(f64::MIN) as f32)
                .collect()
        })
        .collect();
    let order = if shards {
        let merged: Vec<Vec<pinpoint::multi::ShardHit>> = hits
            .iter()
            .zip(&cosines)
            .map(|(h, c)| {
                h.iter()
                    .zip(c)
                    .map(|(x, &cosine)| pinpoint::multi::ShardHit {
                        fused: x["fused"].as_f64().or(x["score"].as_f64()).unwrap_or(0.0) as f32,
                        rerank: x["rerank"].as_f64().map(|v| v as f32),
                        cosine,
                        weight: x["rerank_weight"].as_f64().unwrap_or(0.0) as f32,
                    })
                    .collect()
            })
            .collect();
        pinpoint::multi::merge_shards(&merged, k)
    } else {
        pinpoint::multi::fuse_by_rank(&cosines, k)
    };
    let mut out = Vec::new();
    for (i, r, score) in order {
        let mut h = hits[i][r].clone();
        if let Some(o) = h.as_object_mut() {
            o.insert("rank".into(), serde_json::json!(out.len() + 1));
            o.insert("score".into(), serde_json::json!(score));
        }
        out.push(h);
    }
    let note = if out.is_empty() {
        answers.iter().find_map(|a| a.get("note").cloned())
    } else {
        None
    };
    let mut v = serde_json::json!({ "hits": out });
    if let Some(n) = note {
        v["note"] = n;
    }
    Ok(v.to_string())
}

/// The shard (of `count`) a document key belongs to: the engine's own rule.
#[pyfunction]
fn shard_of(key: &str, count: u32) -> u32 {
    Shard::of(key, count)
}

#[pymodule]
fn _pinpoint(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Index>()?;
    m.add_function(wrap_pyfunction!(fuse, m)?)?;
    m.add_function(wrap_pyfunction!(shard_of, m)?)?;
    m.add("PinpointError", m.py().get_type::<PinpointError>())?;
    Ok(())
}
