//! Metadata filters inside both legs: the dense leg against an exact filtered scan at
//! three selectivities on an index with a graph, BM25 scores untouched by a filter, and
//! `k` hits whenever `k` documents match.

use std::collections::HashSet;

use pinpoint::bench::topic_document;
use pinpoint::filter::parse::parse_where;
use pinpoint::{Embedder, Engine, Granularity, HashEmbedder, Mode, SearchRequest};

use crate::util::*;

const DOCS: usize = 20_000;
const BUCKETS: usize = 1_000;

fn key(i: usize) -> String {
    format!("b{:03}/d{i:05}", i % BUCKETS)
}

fn build() -> (tempfile::TempDir, Engine, Vec<Vec<f32>>) {
    let dim = 64;
    let mut cfg = fake_config();
    cfg.embedder = Some(std::sync::Arc::new(HashEmbedder::new(dim)));
    cfg.hnsw.min_points = 1_000;
    cfg.neighbours = Some(0);
    let dir = tempfile::tempdir().unwrap();
    let mut e = Engine::create(dir.path(), cfg).unwrap();
    let texts: Vec<String> = (0..DOCS).map(topic_document).collect();
    for (i, t) in texts.iter().enumerate() {
        e.add_document(&key(i), "", t).unwrap();
    }
    e.commit().unwrap();
    assert!(e.stats().unwrap().hnsw, "the index must use its graph");
    let emb = HashEmbedder::new(dim);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let flat = emb.embed_passages(&refs).unwrap();
    let vecs = flat.chunks(dim).map(|c| c.to_vec()).collect();
    (dir, e, vecs)
}

/// Dense recall@10 of the filtered search against an exact scan of the passing
/// documents, at 50 %, 5 % and 0.1 % of the index; ties at the tenth score count as found.
#[test]
fn filtered_dense_recall_and_k_hits_at_three_selectivities() {
    let (_dir, e, vecs) = build();
    let emb = HashEmbedder::new(64);
    for (filter, passes, share) in [
        (
            "path < b500",
            (|b: usize| b < 500) as fn(usize) -> bool,
            0.5,
        ),
        ("path < b050", |b: usize| b < 50, 0.05),
        ("path:b007/**", |b: usize| b == 7, 0.001),
    ] {
        let f = parse_where(filter).unwrap();
        let passing: Vec<usize> = (0..DOCS).filter(|&i| passes(i % BUCKETS)).collect();
        assert_eq!(passing.len() as f64, DOCS as f64 * share, "{filter}");
        let mut found = 0usize;
        let queries = 40;
        for q in 0..queries {
            let query = format!(
                "t{}w{} t{}w{} common{}",
                q * 5 % 200,
                q % 12,
                q * 5 % 200,
                (q + 3) % 12,
                q % 40
            );
            let qv = emb.embed_query(&query).unwrap();
            let mut exact: Vec<f32> = passing
                .iter()
                .map(|&i| pinpoint::embed::dot(&qv, &vecs[i]))
                .collect();
            exact.sort_by(|a, b| b.total_cmp(a));
            let tenth = exact[9];
            let mut req = SearchRequest::new(query.as_str(), 10)
                .mode(Mode::Dense)
                .granularity(Granularity::Document)
                .filter(f.clone());
            req.depth = 10;
            let out = e.search_detailed(&req).unwrap();
            assert!(
                out.dense.len() >= 10,
                "{filter}: {} dense results for {query:?} ({} segments, stats {:?})",
                out.dense.len(),
                e.manifest().segments.len(),
                e.stats().ok()
            );
            for (k, s) in out.dense.iter().take(10) {
                let i: usize = k[k.len() - 5..].parse().unwrap();
                assert!(passes(i % BUCKETS), "{filter}: {k} does not pass");
                if *s >= tenth - 1e-5 {
                    found += 1;
                }
            }
            // k hits come back whenever k documents match (no cut-off to hand over fewer).
            let mut opts = pinpoint::api::QueryOptions {
                k: Some(10),
                no_cutoff: true,
                no_abstain: true,
                ..Default::default()
            };
            opts.filter = Some(f.clone());
            let req = opts.request(&e, &query).unwrap();
            let hits = e.search(&req).unwrap();
            assert_eq!(hits.len(), 10, "{filter}: {query}");
        }
        let recall = found as f64 / (10 * queries) as f64;
        eprintln!(
            "{filter}: {} of {DOCS} documents pass, filtered recall@10 {recall:.4}",
            passing.len()
        );
        assert!(recall >= 0.99, "{filter}: filtered recall@10 {recall}");
    }
    // Three documents match: three hits, not ten padded with others.
    let f = parse_where("path IN (b001/d00001, b002/d00002, b003/d00003)").unwrap();
    let mut req = SearchRequest::new("t1w1 common3", 10).filter(f);
    req.pipeline.select = None;
    let hits = e.search(&req).unwrap();
    let got: HashSet<String> = hits.iter().map(|h| h.path.clone()).collect();
    assert!(got.len() <= 3 && !got.is_empty(), "{got:?}");
    assert!(got
        .iter()
        .all(|p| ["b001/d00001", "b002/d00002", "b003/d00003"].contains(&p.as_str())));
}

/// A filter in the lexical leg leaves BM25 scores as they were and returns only passing
/// documents, deeper than the unfiltered top list reaches.
#[test]
fn lexical_filter_keeps_scores_and_reaches_past_the_unfiltered_top() {
    let (_dir, e, _) = build();
    let q = "t3w1 t3w2";
    let plain = |r: SearchRequest| {
        let mut r = r.mode(Mode::Lexical).granularity(Granularity::Document);
        r.depth = 50;
        e.search_detailed(&r).unwrap().lexical
    };
    let all = plain(SearchRequest::new(q, 10));
    let f = parse_where("path:b203/**").unwrap();
    let some = plain(SearchRequest::new(q, 10).filter(f));
    assert!(!some.is_empty());
    for (k, s) in &some {
        assert!(k.starts_with("b203/"), "{k}");
        if let Some((_, s0)) = all.iter().find(|(k0, _)| k0 == k) {
            assert!((s - s0).abs() < 1e-4, "{k}: {s} filtered, {s0} unfiltered");
        }
    }
    // The passing documents of topic 3 rank below the unfiltered top 50.
    assert!(some.iter().any(|(k, _)| !all.iter().any(|(k0, _)| k0 == k)));
}
