//! Warm `default` and `hybrid` latency, stage by stage, on an existing index: how a change
//! to a query stage moves the scale bench's warm figures without rebuilding its index.
//!
//! `cargo run --release --example query_probe -- <index> <queries.txt> [repeat]`
//! (one question a line).

use std::collections::BTreeMap;
use std::time::Instant;

use pinpoint::engine::{Engine, EngineConfig, SearchRequest};
use pinpoint::Pipeline;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(index), Some(file)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: query_probe <index> <queries.txt> [repeat]");
    };
    let repeat: usize = args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(1);
    let queries: Vec<String> = std::fs::read_to_string(file)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let e = Engine::open_read_only(index, EngineConfig::default())?;
    for (name, p) in [
        ("default", e.default_pipeline()),
        ("hybrid", Pipeline::rrf()),
    ] {
        let mut secs = Vec::new();
        let mut stages: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for _ in 0..repeat {
            for q in &queries {
                let t = Instant::now();
                let out =
                    e.search_detailed(&SearchRequest::new(q.as_str(), 5).pipeline(p.clone()))?;
                secs.push(t.elapsed().as_secs_f64());
                for (s, v) in out.timings {
                    stages.entry(s).or_default().push(v);
                }
            }
        }
        let p50 = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2] * 1e3
        };
        let line: Vec<String> = stages
            .into_iter()
            .map(|(s, v)| format!("{s} {:.2}", p50(v)))
            .collect();
        println!("{name}: p50 {:.2} ms  [{}]", p50(secs), line.join(", "));
    }
    Ok(())
}
