//! Writer used by the crash test (tests/crash.rs): round `r` adds 150 documents and removes
//! those of round `r - 2`, then commits, so generation `g` holds rounds `g-2` and `g-1`.
//! Prints each commit phase (`write`, `commit`, `publish`) and `committed <gen>` to stdout so
//! the test knows where its kill landed. Uses the hashing embedder: the test exercises the
//! storage protocol, not the model.
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
    let cfg = EngineConfig {
        embedder: Some(Arc::new(HashEmbedder::new(64))),
        ..Default::default()
    };
    let mut e = Engine::open_or_create(index, cfg).expect("open");
    e.set_progress(Arc::new(Phases));
    loop {
        let r = e.manifest().generation;
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
    }
}
