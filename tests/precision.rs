//! The int8 encoder (src/quant.rs): agreement with f32 on real text, the precision recorded
//! per index and enforced on queries, and the whole-run progress of `index --progress json`.

use pinpoint::models::ModelDir;
use pinpoint::quant::{Kernel, Precision};
use pinpoint::{BertEmbedder, DeviceChoice, Embedder};

use crate::util::*;

fn abstracts(n: usize) -> Vec<String> {
    let corpus =
        std::fs::read_to_string(root().join("tests/data/scifact-subset/corpus.jsonl")).unwrap();
    corpus
        .lines()
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}\n{}",
                v["title"].as_str().unwrap(),
                v["text"].as_str().unwrap()
            )
        })
        .collect()
}

/// Every int8 vector stays within cosine 0.99 of its f32 vector on real abstracts, and
/// every kernel this CPU runs gives the very same vectors (integer products are exact), so
/// an int8 index answers the same on a machine without VNNI.
#[test]
fn int8_embeddings_match_f32_and_every_kernel_agrees() {
    let md = ModelDir::open(real_model()).unwrap();
    let texts = abstracts(60);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let f32_vecs = BertEmbedder::with_precision(&md, DeviceChoice::Cpu, Precision::F32)
        .unwrap()
        .embed_passages(&refs)
        .unwrap();
    let mut first: Option<Vec<f32>> = None;
    for k in Kernel::supported()
        .into_iter()
        .filter(|&k| k != Kernel::Portable)
    {
        let mut e = BertEmbedder::with_precision(&md, DeviceChoice::Cpu, Precision::Int8).unwrap();
        assert!(e.use_kernel(k));
        assert_eq!(e.precision(), Precision::Int8);
        assert!(e.encoder_path().contains(k.name()), "{}", e.encoder_path());
        let v = e.embed_passages(&refs).unwrap();
        let d = e.dim();
        for (i, (a, b)) in v.chunks(d).zip(f32_vecs.chunks(d)).enumerate() {
            let c = pinpoint::embed::dot(a, b);
            assert!(c >= 0.99, "text {i}: cosine {c} to f32 with {}", k.name());
        }
        match &first {
            None => first = Some(v),
            Some(f) => assert_eq!(f, &v, "{} differs from the first kernel", k.name()),
        }
    }
    // The portable kernel is slow: one text is enough to show it gives the same integers.
    let mut e = BertEmbedder::with_precision(&md, DeviceChoice::Cpu, Precision::Int8).unwrap();
    assert!(e.use_kernel(Kernel::Portable));
    let v = e.embed_passages(&refs[..1]).unwrap();
    assert_eq!(&v[..], &first.unwrap()[..e.dim()]);
}

/// The precision is chosen at creation, recorded, reported, and a query that names another
/// is refused with the fix; an index that names none keeps its own.
#[test]
fn precision_is_recorded_per_index_and_enforced() {
    let work = tempfile::tempdir().unwrap();
    let model = real_model();
    let model = model.to_str().unwrap();
    for p in ["int8", "f32"] {
        let idx = format!("idx-{p}");
        let o = pinpoint(
            work.path(),
            &[
                "index",
                samples().to_str().unwrap(),
                "--index",
                &idx,
                "--model",
                model,
                "--precision",
                p,
                "--progress",
                "none",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let o = pinpoint(work.path(), &["stats", "--index", &idx, "--json"]);
        let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(s["precision"], p);
        assert!(s["encoder"].as_str().unwrap().starts_with(p), "{s}");
        // Queries embed in the index's precision without being told.
        let o = pinpoint(
            work.path(),
            &[
                "query",
                "why does the sea level rise",
                "--index",
                &idx,
                "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let other = if p == "int8" { "f32" } else { "int8" };
        let e = user_error(
            work.path(),
            &["query", "tides", "--index", &idx, "--precision", other],
            "encoder runs in",
        );
        assert!(e.contains("--rebuild --precision"), "{e}");
    }
    user_error(
        work.path(),
        &["index", "x", "--index", "y", "--precision", "fp16"],
        "unknown precision \"fp16\"",
    );
}

/// `--progress json`: one JSON object per stderr line; the run events cover the whole run
/// and end at the report's figures.
#[test]
fn progress_json_lines_follow_the_whole_run() {
    let work = tempfile::tempdir().unwrap();
    let o = pinpoint(
        work.path(),
        &[
            "index",
            samples().to_str().unwrap(),
            "--index",
            "idx",
            "--model",
            real_model().to_str().unwrap(),
            "--progress",
            "json",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let events: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let stages: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "stage")
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert!(
        stages.contains(&"embedding") && stages.contains(&"reading"),
        "{stages:?}"
    );
    let runs: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "run").collect();
    let last = runs.last().expect("no run event");
    assert_eq!(last["chunks_embedded"], report["chunks_embedded"]);
    assert_eq!(last["chunks_estimated"], report["chunks_embedded"]);
    assert_eq!(last["bytes_read"], last["bytes_total"]);
}
