//! `pinpoint bench --scale`: the report's contract on a small build (the bundled SciFact
//! subset's sentences as base vectors, the real model), and an index a user can query.

use crate::util::*;

#[test]
fn a_scale_bench_reports_its_contract_and_leaves_a_queryable_index() {
    let work = tempfile::tempdir().unwrap();
    let root = root();
    let data = root.join("tests/data/scifact-subset");
    let (w, d) = (
        work.path().to_string_lossy().to_string(),
        data.to_string_lossy().to_string(),
    );
    let o = pinpoint(
        &root,
        &[
            "bench", "--scale", "3000", "--beir", &d, "--work", &w, "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v["scale"];
    assert_eq!(s["chunks"], 3000);
    for what in ["add", "edit", "delete"] {
        let c = &s["commit"][what];
        let mut rounds: Vec<f64> = c["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(rounds.len(), 5, "{what}");
        assert_eq!(c["first_seconds"].as_f64(), Some(rounds[0]), "{what}");
        rounds.sort_by(f64::total_cmp);
        assert_eq!(c["seconds"].as_f64(), Some(rounds[2]), "{what}: the median");
        assert!(c["bytes_written"].as_u64().unwrap() > 0, "{what}");
    }
    // Under the graph threshold the dense leg is an exact scan: recall 1 by construction.
    assert_eq!(s["recall_at_10"].as_f64(), Some(1.0));
    for part in ["chunks", "dense", "lexical", "docs", "late"] {
        assert!(s["disk_bytes"][part].as_u64().unwrap() > 0, "{part}");
    }
    // As a default index, it keeps token codes: each copy its sentence's real ones.
    assert_eq!(s["token_codes"], true);
    let per_chunk = s["tokens_per_chunk"].as_f64().unwrap();
    assert!(per_chunk > 1.0, "{per_chunk}");
    // A token is its own 48-byte code or a 2-byte reference to its piece's shared code
    // (a copy's tokens are its sentence's, near their pieces' codes).
    let refs = s["token_references_per_chunk"].as_f64().unwrap();
    assert!(refs > 0.0 && refs <= per_chunk, "{refs} of {per_chunk}");
    let late = s["disk_bytes"]["late"].as_f64().unwrap();
    assert!(
        late >= ((per_chunk - refs) * 48.0 + refs * 2.0) * 3000.0,
        "{late} bytes for {per_chunk} codes a chunk, {refs} references"
    );
    // Each sampled memory peak names the build stage it was seen in.
    let m = &s["build_memory"];
    assert!(m["total_bytes"].as_u64().unwrap() >= m["heap_bytes"].as_u64().unwrap());
    for stage in ["heap_stage", "mapped_stage", "total_stage"] {
        assert!(!m[stage].as_str().unwrap().is_empty(), "{stage}: {m}");
    }
    assert!(s["cold"]["query_s"].as_f64().unwrap() > 0.0);
    assert!(s["warm"]["default"]["p50_ms"].as_f64().unwrap() > 0.0);
    // The index it leaves answers a question about one of its sentences; the probes
    // the one-file commits added were removed again.
    let index = work.path().join("scale-index");
    let o = pinpoint(
        &root,
        &["stats", "--index", &index.to_string_lossy(), "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stats["chunks"], 3000, "{stats}");
    // Chunk `j` of the build is the subset sentence `j` with the marker `zq0x{j}`.
    let o = pinpoint(
        &root,
        &[
            "query",
            "zq0x7",
            "--index",
            &index.to_string_lossy(),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let hits: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(hits["hits"][0]["path"], "c0/s7", "{hits}");
}
