//! Experiment: what the similarity guard (`SelectConfig::min_similarity_share`) costs and buys
//! on a BEIR collection. `cargo run --release -p pinpoint-experiments --example cutoff_share -- INDEX BEIR_DIR SPLIT`
//!
//! For each share, the default pipeline's handed passages (top 5) are collected with the
//! guard at that share and the relative cut-off off, then the cut-off is replayed off and
//! at the shipped `min_relative`: share relevant, handed recall and passages on all queries,
//! and precision/recall per grouped fold (their spread is the noise).
use pinpoint_experiments::support;

use pinpoint::eval::beir_labelled;
use pinpoint::select::SelectConfig;
use pinpoint::tune::{collect_cutoff, evaluate_cutoff, fold_split, Cutoff};
use pinpoint::Pipeline;

fn main() {
    let (engine, ds) = support::open_eval();
    let labelled = beir_labelled(&ds);
    let shipped = SelectConfig::default();
    for share in [0.0f32, 0.4, 0.5, 0.6, 0.7] {
        let mut pipeline = Pipeline::default();
        if let Some(s) = pipeline.select.as_mut() {
            s.min_similarity_share = share;
        }
        let qs = collect_cutoff(&engine, &labelled, &pipeline, 5).expect("search");
        let rels: Vec<_> = qs.iter().map(|q| &q.rels).collect();
        let folds = fold_split(&rels, 5);
        let relative = Cutoff {
            min_relative: shipped.min_relative,
            max_gap: shipped.max_gap,
        };
        for (name, c) in [("no cut-off", Cutoff::OFF), ("shipped cut-off", relative)] {
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
                "share {share} {name}: precision {:.4} recall {:.4} passages {:.2} | folds {}",
                h.precision,
                h.recall,
                h.passages,
                per_fold.join(" ")
            );
        }
    }
}
