//! # pinpoint
//!
//! A local retrieval engine: index a folder, ask a question, get back *few, precise*
//! passages. Two indexes share one on-disk store: an HNSW dense index over BERT-family
//! embeddings computed with candle, and a BM25 index (tantivy). Queries run both legs and
//! fuse them.
//!
//! ```
//! use std::sync::Arc;
//! use pinpoint::{Engine, EngineConfig, HashEmbedder, SearchRequest};
//!
//! let dir = tempfile::tempdir().unwrap();
//! // A real setup leaves `embedder` empty and loads `models/all-MiniLM-L6-v2`.
//! let cfg = EngineConfig { embedder: Some(Arc::new(HashEmbedder::new(64))), ..Default::default() };
//! let mut engine = Engine::create(dir.path(), cfg).unwrap();
//! engine.add_document("a", "Volcanoes", "Lava flows from an erupting volcano.").unwrap();
//! engine.add_document("b", "Bread", "Knead the dough and let it rise.").unwrap();
//! engine.commit().unwrap();
//! let hits = engine.search(&SearchRequest::new("erupting lava", 1)).unwrap();
//! assert_eq!(hits[0].path, "a");
//! ```
//!
//! ## A tour, in the order data flows
//!
//! **Indexing** (`Document -> Chunk -> (embedding, terms) -> stores`):
//! 1. [`ingest`] walks a folder (`.gitignore` honoured, links and binaries skipped with a
//!    reason) and turns each file into a [`ingest::Document`]: text decoded, packaged formats
//!    (HTML, PDF, Word, PowerPoint, notebooks) extracted, one file per format.
//! 2. [`chunk`] splits a document into token-bounded chunks on sentence, heading and code
//!    boundaries, each with its heading trail.
//! 3. [`embed`] turns chunks into vectors ([`models`] finds and checks the model folder; the
//!    CPU encoder is our own, candle runs on GPUs); [`late`] keeps each chunk's token
//!    vectors as 1-bit codes for the reranker; [`near`] finds each chunk's dense neighbours
//!    in other documents (document expansion).
//! 4. The stores: [`dense`] (exact scan, or an HNSW graph once the index is large),
//!    [`lexical`] (BM25 in tantivy), [`store`] (chunk store, vectors, document table,
//!    manifest). [`engine`] is the only module that coordinates them: it commits a new
//!    *generation* at one commit point, rebuilds beside the old index, and keeps the one
//!    table of an index's files.
//!
//! **Searching** (`Query -> candidates -> fused -> reranked -> selected`):
//! 5. [`engine::SearchRequest`] says what is asked (the [`Pipeline`] of stages and their
//!    settings); [`expand`] splits a multi-question query and runs pseudo-relevance feedback.
//! 6. Both legs give candidates; [`fuse`] combines them (z-score or min-max weighted, RRF).
//! 7. [`rerank`] re-scores the head (token MaxSim over the stored codes by default;
//!    sentence or cross-encoder rerankers on request) and applies path and recency rules.
//! 8. [`select`] merges overlapping chunks, drops near-duplicates and copies of one text in
//!    several files ([`copies`]), cuts where scores fall away and abstains when nothing is
//!    close: few, precise passages.
//!
//! **Around it**: [`api`] (a question's options and the answer's JSON, shared by `query
//! --json`, [`serve`], the local HTTP server, and [`mcp`], the MCP server for agents, both
//! following the index through [`follow`]), [`multi`] (one question over several indexes),
//! [`eval`] (BEIR and user labels, metrics,
//! intervals and paired tests), [`tune`] (settings chosen on labels with folds held out),
//! [`bench`](mod@bench) (speed). The research that chose the settings lives in the `experiments/`
//! workspace member, not here; `docs/decisions.md` records each choice.
#![warn(missing_docs)]

/// Defines `fn $name` that runs its body compiled for AVX-512 or AVX2+FMA when the CPU has
/// them (checked at run time, cached by std), else for the baseline target. The element-wise
/// kernels are plain loops; this is what lets the compiler use the wide registers for them.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),*) $body:block) => {
        $(#[$m])*
        fn $name($($a: $t),*) {
            #[inline(always)]
            fn body($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn v4($($a: $t),*) {
                    body($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($a: $t),*) {
                    body($($a),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, the only feature v4 was compiled for.
                    return unsafe { v4($($a),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA, the features v3 was compiled for.
                    return unsafe { v3($($a),*) };
                }
            }
            body($($a),*)
        }
    };
}

pub mod allocator;
pub mod api;
pub mod bench;
pub mod chunk;
pub mod collection;
pub mod copies;
mod cpu_bert;
pub mod delta;
pub mod dense;
pub mod embed;
pub mod engine;
pub mod error;
pub mod eval;
pub mod evidence;
pub mod expand;
pub mod filter;
pub mod follow;
pub mod fuse;
pub mod graph_build;
pub mod graph_file;
pub mod ingest;
pub mod late;
pub mod lexical;
pub mod mcp;
mod mix;
pub mod models;
pub mod multi;
pub mod near;
pub mod quant;
pub mod rerank;
pub mod route;
pub mod segment;
pub mod select;
pub mod serve;
pub mod shard;
pub mod sq8;
pub mod store;
pub mod tune;

pub use chunk::ChunkConfig;
pub use embed::{BertEmbedder, DeviceChoice, Embedder, HashEmbedder};
pub use engine::{
    Engine, EngineConfig, Explain, Granularity, Hit, IndexReport, LengthFade, Mode, NoProgress,
    Pipeline, Progress, RerankConfig, RerankKind, RunStatus, SearchOutput, SearchRequest,
};
pub use error::{Error, Result};
pub use fuse::{Fusion, Norm};
