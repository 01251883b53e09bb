//! Experiment behind "Codes borrowed from the chunk before" in docs/decisions.md: how many
//! of a chunk's own token codes lie near a code of an earlier chunk of the same document?
//! Chunks of one document repeat its title (and heading trail) in front and the previous
//! chunk's trailing sentences as overlap, so their codes may be near-copies of codes
//! already stored. Prints, per Hamming distance, the share of own codes within it of a code
//! the previous chunk holds, and of any earlier chunk of the document.
//! `cargo run --release -p pinpoint-experiments --example token_overlap -- INDEX_DIR`
use std::path::Path;

use pinpoint::late::share::hamming;
use pinpoint::{Engine, EngineConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine =
        Engine::open_read_only(Path::new(&args[1]), EngineConfig::default()).expect("index");
    let segs = engine.segments();
    let nb = segs.dim().div_ceil(8);
    let ths = [0u32, 48, 64, 72, 80];
    let mut near_prev = [0usize; 5];
    let mut near_any = [0usize; 5];
    let (mut own, mut refs, mut later_chunks, mut own_later) = (0usize, 0usize, 0usize, 0usize);
    let mut doc_codes: Vec<Vec<u8>> = Vec::new();
    let mut prev_codes: Vec<u8> = Vec::new();
    let mut doc_now = String::new();
    for p in 0..segs.len() {
        let c = segs.get(p).expect("chunk");
        let codes = segs.codes(p);
        let mine = codes.own();
        own += mine.len() / nb;
        refs += codes.tokens() - mine.len() / nb;
        if c.doc != doc_now {
            doc_now = c.doc.clone();
            doc_codes.clear();
            prev_codes.clear();
        } else {
            later_chunks += 1;
            own_later += mine.len() / nb;
            for code in mine.chunks(nb) {
                let dp = prev_codes
                    .chunks(nb)
                    .map(|o| hamming(code, o))
                    .min()
                    .unwrap_or(u32::MAX);
                let da = doc_codes
                    .iter()
                    .flat_map(|d| d.chunks(nb))
                    .map(|o| hamming(code, o))
                    .min()
                    .unwrap_or(u32::MAX);
                for (i, t) in ths.iter().enumerate() {
                    near_prev[i] += (dp <= *t) as usize;
                    near_any[i] += (da <= *t) as usize;
                }
            }
        }
        let g = codes.gather().into_owned();
        prev_codes = g.clone();
        doc_codes.push(g);
    }
    let n = segs.len();
    println!(
        "{n} chunks, {later_chunks} not first of their document; {own} own codes ({:.1} a chunk), {refs} references; {own_later} own codes in later chunks",
        own as f64 / n as f64
    );
    for (i, t) in ths.iter().enumerate() {
        println!(
            "within {t:>2} bits: of the previous chunk {} ({:.1}% of own), of any earlier chunk {} ({:.1}%); own a chunk left {:.1}",
            near_prev[i],
            100.0 * near_prev[i] as f64 / own as f64,
            near_any[i],
            100.0 * near_any[i] as f64 / own as f64,
            (own - near_prev[i]) as f64 / n as f64
        );
    }
}
