//! One integration-test binary (as ripgrep does): modules share `util`.

mod cli;
mod collections;
mod crash;
mod cross_encoder;
mod docx;
mod engine;
mod eval;
mod evidence;
mod filters;
mod generated;
mod hardening;
mod late;
mod late_share;
mod living;
mod mcp;
mod multi;
mod near;
mod pdf;
mod precision;
mod real_model;
mod scale_bench;
mod segments;
mod serve;
mod tiny_bert;
mod util;
