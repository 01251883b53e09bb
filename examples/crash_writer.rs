//! Writer used by the crash test (tests/crash.rs): round `r` adds 150 documents and removes
//! those of round `r - 2`, then commits, so after round `r` the index holds rounds `r-1`
//! and `r`. Every third round it then compacts, so that the next rounds delete half of a
//! merged segment and the merge policy rewrites it: kills land in commits, merges and
//! compactions. Graphs are built from 100 chunks, so every segment has one; a round whose
//! deletions spare the last segment folds its chunks into that segment's graph (rounds 1,
//! 4, 7, ...: `merge::fold_target`), so kills also land in folds.
//! Prints each phase (`write`, `hnsw`, `merge`, `commit`, `publish`) and `committed <gen>`
//! to stdout so the test knows where its kill landed. Uses the hashing embedder: the test
//! exercises the storage protocol, not the model.
//!
//! `cargo run --release --example crash_writer -- <index> <rounds>`

use std::io::Write;
use std::sync::Arc;

use pinpoint::{Engine, EngineConfig, HashEmbedder, Progress};

struct Phases;
impl Progress for Phases {
    fn start(&self, stage: &str, _total: u64) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "phase {stage}");
        let _ = o.flush();
    }
}

/// Deterministic text of document `i` of round `r`.
pub fn doc_text(r: u64, i: u64) -> String {
    const WORDS: [&str; 24] = [
        "river", "stone", "cloud", "ember", "violet", "harbor", "meadow", "signal", "copper",
        "lantern", "orbit", "thistle", "granite", "willow", "falcon", "ripple", "cobalt", "summit",
        "canyon", "pepper", "quartz", "saddle", "tundra", "marble",
    ];
    let mut s = format!("r{r}d{i}");
    let mut x = r * 7919 + i * 104729 + 1;
    for _ in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(' ');
        s.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let index = args.get(1).expect("index folder");
    let rounds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mut e = Engine::open_or_create(index, config()).expect("open");
    e.set_progress(Arc::new(Phases));
    loop {
        let r = next_round(&e);
        if r >= rounds {
            break;
        }
        for i in 0..150 {
            e.add_document(
                &format!("r{r}-{i}"),
                &format!("doc {r} {i}"),
                &doc_text(r, i),
            )
            .expect("add");
        }
        if r >= 2 {
            for i in 0..150 {
                e.remove_document(&format!("r{}-{i}", r - 2))
                    .expect("remove");
            }
        }
        e.commit().expect("commit");
        println!("committed {}", e.manifest().generation);
        let _ = std::io::stdout().flush();
        if r % 3 == 2 {
            e.compact().expect("compact");
            println!("committed {}", e.manifest().generation);
            let _ = std::io::stdout().flush();
        }
    }
}

/// The writer's configuration: the hashing embedder, graphs from 100 chunks.
pub fn config() -> EngineConfig {
    let mut cfg = EngineConfig {
        embedder: Some(Arc::new(HashEmbedder::new(64))),
        ..Default::default()
    };
    cfg.hnsw.min_points = 100;
    cfg
}

/// The round after the newest one the index holds (0 for an empty index).
pub fn next_round(e: &Engine) -> u64 {
    e.documents()
        .expect("documents")
        .iter()
        .filter_map(|d| round_of(&d.key))
        .max()
        .map_or(0, |r| r + 1)
}

/// The round a document key `r<round>-<i>` belongs to.
pub fn round_of(key: &str) -> Option<u64> {
    key.strip_prefix('r')?.split_once('-')?.0.parse().ok()
}
