//! Experiment: the similarity share of the cut-off on fixed settings, next to what
//! `pinpoint tune` chooses. `cargo run --release --example cutoff_share -- INDEX BEIR_DIR SPLIT`
//!
//! Replays the default pipeline's handed passages (top 5, cut-off off) under each
//! `(min_relative, min_similarity_share)` and prints share relevant, handed recall and
//! passages on all queries, and the same per grouped fold (the spread is the noise).
use std::path::Path;

use pinpoint::eval::{beir_labelled, Dataset};
use pinpoint::tune::{collect_cutoff, evaluate_cutoff, fold_split, Cutoff};
use pinpoint::{Engine, EngineConfig, Pipeline};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine =
        Engine::open_read_only(Path::new(&args[1]), EngineConfig::default()).expect("index");
    let ds = Dataset::load_beir(Path::new(&args[2]), &args[3]).expect("dataset");
    let labelled = beir_labelled(&ds);
    let qs = collect_cutoff(&engine, &labelled, &Pipeline::default(), 5).expect("search");
    let rels: Vec<_> = qs.iter().map(|q| &q.rels).collect();
    let folds = fold_split(&rels, 5);
    for min_relative in [0.0f32, 0.4, 0.5] {
        for min_similarity_share in [0.0f32, 0.3, 0.4, 0.5, 0.6, 0.7] {
            let c = Cutoff {
                min_relative,
                max_gap: 1.0,
                min_similarity_share,
            };
            let all: Vec<_> = qs.iter().collect();
            let h = evaluate_cutoff(&all, c, 5);
            let per_fold: Vec<String> = folds
                .iter()
                .map(|(held, _)| {
                    let f: Vec<_> = held.iter().map(|&i| &qs[i]).collect();
                    let h = evaluate_cutoff(&f, c, 5);
                    format!("{:.3}/{:.3}", h.precision, h.recall)
                })
                .collect();
            println!(
                "rel {min_relative} share {min_similarity_share}: precision {:.4} recall {:.4} \
                 passages {:.2} | folds {}",
                h.precision,
                h.recall,
                h.passages,
                per_fold.join(" ")
            );
        }
    }
}
