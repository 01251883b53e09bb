//! Experiment: how similar each chunk's nearest chunk of another document is, per index:
//! where [`pinpoint::near::MIN_COSINE`] cuts. `cargo run --release -p pinpoint-experiments --example near_cosines
//! -- INDEX...`
//!
//! Computed from the vectors by an exact scan (not from the stored table, which leaves out
//! what is under the floor), and printed as quantiles with the share under a few floors.
use std::path::Path;

use pinpoint::dense::exact_neighbours;
use pinpoint::near::NeighbourTable;
use pinpoint::{Engine, EngineConfig};

fn main() {
    for dir in std::env::args().skip(1) {
        let engine =
            Engine::open_read_only(Path::new(&dir), EngineConfig::default()).expect("index");
        let store = engine.segments();
        let docs: Vec<String> = (0..store.len())
            .map(|p| store.get(p).expect("chunk").doc)
            .collect();
        let rows: Vec<usize> = (0..docs.len()).collect();
        let found = exact_neighbours(&engine.segments().live_vectors(), &rows, 64);
        let mut c: Vec<f32> = rows
            .iter()
            .zip(&found)
            .filter_map(|(&p, f)| f.iter().find(|&&(q, _)| docs[q] != docs[p]).map(|x| x.1))
            .collect();
        if c.is_empty() {
            println!("{dir}: no chunk has a chunk of another document among its 64 nearest");
            continue;
        }
        c.sort_by(f32::total_cmp);
        let gen = engine.manifest().generation;
        if let Ok(t) = NeighbourTable::read(&Path::new(&dir).join(format!("near/{gen}.bin"))) {
            let empty = t.lists.iter().filter(|l| l.is_empty()).count();
            println!(
                "{dir}: the stored table has {empty} of {} lists empty",
                t.lists.len()
            );
        }
        let q = |f: f64| c[((c.len() - 1) as f64 * f) as usize];
        let below = |x: f32| c.iter().filter(|&&v| v < x).count() as f64 / c.len() as f64;
        println!(
            "{dir}: {} of {} chunks; nearest other document's chunk: min {:.3} p1 {:.3} p5 {:.3} \
             p50 {:.3} p95 {:.3} max {:.3}; share under 0.3 {:.3}, 0.4 {:.3}, 0.5 {:.3}",
            c.len(),
            rows.len(),
            q(0.0),
            q(0.01),
            q(0.05),
            q(0.5),
            q(0.95),
            q(1.0),
            below(0.3),
            below(0.4),
            below(0.5)
        );
    }
}
