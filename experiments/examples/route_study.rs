//! Routing study (docs/decisions.md "Routing"): several labelled BEIR collections as named
//! collections of one index; each query's source is its label.
//!
//! `cargo run --release -p pinpoint-experiments --example route_study -- WORK SPLIT NAME=DIR...`
//!
//! Builds (once, cached in WORK) an index with one collection per BEIR folder, then runs
//! every judged query of SPLIT with routing off and `auto`, and prints per collection and
//! overall: routing accuracy (the top collection is the query's source), how often it
//! restricts / boosts, and nDCG@10 and recall@100 routed against searching everything,
//! with the paired randomisation test of the differences.
use std::collections::HashMap;
use std::path::PathBuf;

use pinpoint::eval::metrics::{ndcg, recall};
use pinpoint::eval::stats::paired;
use pinpoint::eval::Dataset;
use pinpoint::route::RouteMode;
use pinpoint::{Engine, EngineConfig, Granularity, SearchRequest};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let work = PathBuf::from(&args[0]);
    let split = args[1].clone();
    let sets: Vec<(String, Dataset)> = args[2..]
        .iter()
        .map(|a| {
            let (name, dir) = a.split_once('=').expect("NAME=DIR");
            (
                name.to_string(),
                Dataset::load_beir(PathBuf::from(dir).as_path(), &split).unwrap(),
            )
        })
        .collect();
    let idx = work.join("route-index");
    let engine = if idx.join("manifest.json").exists() {
        Engine::open_read_only(&idx, EngineConfig::default()).unwrap()
    } else {
        let mut e = Engine::create(&idx, EngineConfig::default()).unwrap();
        for (name, ds) in &sets {
            eprintln!("adding {} documents of {name}", ds.corpus.len());
            for (id, title, text) in &ds.corpus {
                let body = if text.trim().is_empty() { title } else { text };
                e.add_document_in(name, id, title, body).unwrap();
            }
        }
        e.commit().unwrap();
        e
    };
    let mut rows: Vec<(String, f64, f64, f64, f64, bool, String)> = Vec::new();
    for (name, ds) in &sets {
        let labelled = pinpoint::eval::beir_labelled(ds);
        eprintln!("{name}: {} queries", labelled.len());
        for (_, text, rels) in labelled {
            let rels: HashMap<String, i32> = rels
                .iter()
                .map(|(d, r)| (format!("{name}/{d}"), *r))
                .collect();
            let run = |mode: RouteMode| {
                let mut req = SearchRequest::new(text.as_str(), 10)
                    .granularity(Granularity::Document)
                    .pipeline(engine.default_pipeline());
                req.depth = 100;
                req.route = mode;
                engine.search_detailed(&req).unwrap()
            };
            let off = run(RouteMode::Off);
            let auto = run(RouteMode::Auto);
            let ranked = |o: &pinpoint::SearchOutput| -> Vec<String> {
                o.ranked.iter().map(|(k, _)| k.clone()).collect()
            };
            let (ro, ra) = (ranked(&off), ranked(&auto));
            let route = auto.route.clone().unwrap();
            rows.push((
                name.clone(),
                ndcg(&ro, &rels, 10),
                ndcg(&ra, &rels, 10),
                recall(&ro, &rels, 100),
                recall(&ra, &rels, 100),
                route.top.as_deref() == Some(name.as_str()),
                route.action.clone(),
            ));
        }
    }
    println!("| collection | queries | routing accuracy | restricted | boosted | nDCG@10 all | nDCG@10 routed (p) | R@100 all | R@100 routed (p) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut names: Vec<String> = sets.iter().map(|(n, _)| n.clone()).collect();
    names.push("all".into());
    for n in names {
        let r: Vec<_> = rows.iter().filter(|r| n == "all" || r.0 == n).collect();
        let len = r.len() as f64;
        let col = |i: usize| -> Vec<f64> {
            r.iter()
                .map(|x| match i {
                    1 => x.1,
                    2 => x.2,
                    3 => x.3,
                    _ => x.4,
                })
                .collect()
        };
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let p = |a: &[f64], b: &[f64]| paired(b, a).map_or(f64::NAN, |p| p.p_value);
        println!(
            "| {n} | {} | {:.1}% | {:.1}% | {:.1}% | {:.4} | {:.4} ({:.3}) | {:.4} | {:.4} ({:.3}) |",
            r.len(),
            100.0 * r.iter().filter(|x| x.5).count() as f64 / len,
            100.0 * r.iter().filter(|x| x.6 == "restrict").count() as f64 / len,
            100.0 * r.iter().filter(|x| x.6 == "boost").count() as f64 / len,
            mean(&col(1)),
            mean(&col(2)),
            p(&col(1), &col(2)),
            mean(&col(3)),
            mean(&col(4)),
            p(&col(3), &col(4)),
        );
    }
}
