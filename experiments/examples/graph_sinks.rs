//! Study behind "A graph walk can leave wherever it starts" (docs/decisions.md): builds the
//! graph of `tests/filters.rs`'s 20,000 clustered documents (hashed 64-dimension vectors)
//! again and again and counts, on layer 0, the rows the entry cannot reach and the rows that
//! cannot reach the entry. Run before `repair_return_paths` existed, it counted none of
//! either in 20 builds; since, the repairs guarantee none.
//! `cargo run --release -p pinpoint-experiments --example graph_sinks -- [BUILDS]`
use pinpoint::bench::topic_document;
use pinpoint::dense::HnswParams;
use pinpoint::store::VectorFile;
use pinpoint::{Embedder, HashEmbedder};

fn main() {
    let builds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let dim = 64;
    let emb = HashEmbedder::new(dim);
    let texts: Vec<String> = (0..20_000).map(topic_document).collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let vf = VectorFile::from_vec(dim, emb.embed_passages(&refs).expect("hashed vectors"));
    let p = HnswParams::default();
    let (mut worst_from, mut worst_to) = (0, 0);
    for b in 0..builds {
        let g = pinpoint::graph_build::build(&p, &vf, &|_| {});
        let (from, to) = (g.unreached(false), g.unreached(true));
        println!("build {b}: {from} rows the entry cannot reach, {to} that cannot reach it");
        worst_from = worst_from.max(from);
        worst_to = worst_to.max(to);
    }
    println!("{builds} builds: at most {worst_from} / {worst_to}");
}
