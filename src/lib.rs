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
//! ## Pipeline
//! `Document -> Chunk -> (embedding, terms) -> stores`, and
//! `Query -> candidates -> fused -> hits`. Each stage is one module:
//! [`ingest`] (walk, extract), [`chunk`] (token-aware splitting), [`embed`] (BERT: a fused,
//! padding-free encoder on the CPU, `cpu_bert`; candle on GPUs and as the reference),
//! [`dense`] (HNSW / exact scan), [`lexical`] (BM25), [`store`] (chunk store, manifest),
//! [`late`] (token codes for late interaction), [`fuse`] (RRF, weighted), [`expand`] (PRF,
//! multi-query), [`rerank`] (cross-encoder, sentence- and token-level), [`select`] (context selection), [`eval`] (BEIR metrics and the per-query funnel), [`tune`] (settings chosen on labels with folds held out), and
//! [`engine`], the only place that coordinates the stores. Around it: [`api`] (a question's
//! options and the answer's JSON, shared by the CLI and the server) and [`serve`] (local
//! HTTP).
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

pub mod api;
pub mod bench;
pub mod chunk;
mod cpu_bert;
pub mod dense;
pub mod embed;
pub mod engine;
pub mod error;
pub mod eval;
pub mod expand;
pub mod fuse;
pub mod ingest;
pub mod late;
pub mod lexical;
pub mod models;
pub mod near;
pub mod rerank;
pub mod select;
pub mod serve;
pub mod store;
pub mod tune;

pub use chunk::ChunkConfig;
pub use embed::{BertEmbedder, DeviceChoice, Embedder, HashEmbedder};
pub use engine::{
    Engine, EngineConfig, Explain, Granularity, Hit, IndexReport, LengthFade, Mode, NoProgress,
    Pipeline, Progress, RerankConfig, RerankKind, SearchOutput, SearchRequest,
};
pub use error::{Error, Result};
pub use fuse::{Fusion, Norm};
