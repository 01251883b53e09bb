//! Experiment: what building a whole neighbour table costs (`pinpoint::near`), as a new
//! index's first commit does. `cargo run --release -p pinpoint-experiments --example near_table -- INDEX`
//!
//! Times the exact GEMM search alone and the full `near::update` from an empty table over
//! the index's vectors, and compares the table with the one the index stored.
use std::path::Path;
use std::time::Instant;

use pinpoint::dense::exact_neighbours;
use pinpoint::near::{update, NeighbourTable, DEFAULT_NEIGHBOURS};
use pinpoint::{Engine, EngineConfig};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: near_table INDEX");
    let engine = Engine::open_read_only(Path::new(&dir), EngineConfig::default()).expect("index");
    let store = engine.segments();
    let vectors = &engine.segments().live_vectors();
    let ids: Vec<u64> = (0..store.len()).map(|p| store.id_at(p)).collect();
    let keys: Vec<String> = (0..store.len())
        .map(|p| store.get(p).expect("chunk").doc)
        .collect();
    let mut uniq = keys.clone();
    uniq.sort();
    uniq.dedup();
    let docs: Vec<u32> = keys
        .iter()
        .map(|k| uniq.binary_search(k).expect("key") as u32)
        .collect();
    let rows: Vec<usize> = (0..ids.len()).collect();
    let t = Instant::now();
    let found = exact_neighbours(vectors, &rows, 12);
    println!(
        "{} rows: exact top 12 of every row in {:.2} s ({} results)",
        rows.len(),
        t.elapsed().as_secs_f64(),
        found.iter().map(|f| f.len()).sum::<usize>()
    );
    let search = |r: &[usize], m: usize| exact_neighbours(vectors, r, m);
    let t = Instant::now();
    let up = update(
        DEFAULT_NEIGHBOURS,
        &ids,
        &|p| docs[p],
        NeighbourTable::default(),
        &search,
    );
    println!(
        "full table from empty in {:.2} s, {} rows changed",
        t.elapsed().as_secs_f64(),
        up.changed.len()
    );
    let gen = engine.manifest().generation;
    if let Ok(stored) = NeighbourTable::read(&Path::new(&dir).join(format!("near/{gen}.bin"))) {
        let same = stored
            .lists
            .iter()
            .zip(&up.table.lists)
            .filter(|(a, b)| a.iter().map(|x| x.0).eq(b.iter().map(|x| x.0)))
            .count();
        println!(
            "same lists as the stored table: {same} of {}",
            stored.lists.len()
        );
    }
}
