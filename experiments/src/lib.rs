//! The research behind `docs/decisions.md`, apart from the product.
//!
//! Each program in `examples/` is a study that chose (or rejected) a setting the engine
//! ships, and is named in the decisions entry it supports, with the command that ran it;
//! `python/` holds the Python prototypes of the same kind. None of this is part of the
//! `pinpoint` crate: `cargo test` at the repository root does not build it, CI checks that it
//! still compiles (`cargo clippy -p pinpoint-experiments --all-targets`). Run one with
//! `cargo run --release -p pinpoint-experiments --example NAME -- ARGS`.

pub mod rerank_tune;
pub mod sign_codes;
pub mod support;
