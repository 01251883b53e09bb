//! One question over several index folders: answers fused by rank, paths kept apart,
//! indexes of another model refused.

use std::sync::Arc;

use pinpoint::api::QueryOptions;
use pinpoint::multi::MultiIndex;
use pinpoint::{Engine, EngineConfig, HashEmbedder};
use serde_json::Value;

use crate::util::*;

/// The bundled samples split in two folders, odd and even files.
fn halves(root: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(samples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (i, f) in files.iter().enumerate() {
        let to = if i % 2 == 0 { &a } else { &b };
        std::fs::copy(f, to.join(f.file_name().unwrap())).unwrap();
    }
    (a, b)
}

#[test]
fn several_indexes_answer_as_one_with_their_paths_kept_apart() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = halves(work.path());
    let m = real_model();
    let m = m.to_str().unwrap();
    for (src, idx) in [(&a, "ia"), (&b, "ib")] {
        let o = pinpoint(
            work.path(),
            &["index", src.to_str().unwrap(), "--index", idx, "--model", m],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // The whole folder in one index, to compare with.
    let o = pinpoint(
        work.path(),
        &[
            "index",
            samples().to_str().unwrap(),
            "--index",
            "all",
            "--model",
            m,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (q, file) in [
        ("how do tides work", "tides.txt"),
        ("wild yeast culture for baking", "sourdough.txt"),
        (
            "how do bees tell each other where flowers are",
            "honeybees.txt",
        ),
    ] {
        let o = pinpoint(
            work.path(),
            &[
                "query", q, "--index", "ia", "--index", "ib", "-k", "3", "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let hits = v["hits"].as_array().unwrap();
        assert!(!hits.is_empty() && hits.len() <= 3, "{v}");
        // The answering file comes first whichever half holds it, under its index's name.
        let first = hits[0]["path"].as_str().unwrap();
        assert!(
            first == format!("ia/{file}") || first == format!("ib/{file}"),
            "{q}: {v}"
        );
        let o = pinpoint(
            work.path(),
            &["query", q, "--index", "all", "-k", "1", "--json"],
        );
        let one: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(one["hits"][0]["path"], file, "{q}");
    }
    // Commands that work on one index say so.
    user_error(
        work.path(),
        &["stats", "--index", "ia", "--index", "ib"],
        "only `query` searches several",
    );
}

#[test]
fn indexes_of_another_model_or_named_twice_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let cfg = |dim| EngineConfig {
        embedder: Some(Arc::new(HashEmbedder::new(dim))),
        ..Default::default()
    };
    drop(Engine::create(work.path().join("x64"), cfg(64)).unwrap());
    drop(Engine::create(work.path().join("x128"), cfg(128)).unwrap());
    let dirs = [work.path().join("x64"), work.path().join("x128")];
    let err = MultiIndex::open_read_only(&dirs, EngineConfig::default())
        .err()
        .expect("different models");
    assert!(err.to_string().contains("must share their model"), "{err}");
    let twice = [work.path().join("x64"), work.path().join("x64")];
    let err = MultiIndex::open_read_only(&twice, EngineConfig::default())
        .err()
        .expect("twice");
    assert!(err.to_string().contains("named twice"), "{err}");

    // Fused by rank: every index's first passage before any second one; with plain paths
    // the shards of one folder keep their own.
    let (a, b) = halves(work.path());
    for (src, idx) in [(&a, "ha"), (&b, "hb")] {
        let mut e = Engine::create(work.path().join(idx), cfg(128)).unwrap();
        e.add_folder(src).unwrap();
    }
    let dirs = [work.path().join("ha"), work.path().join("hb")];
    let multi = MultiIndex::open_read_only(&dirs, cfg(128)).unwrap();
    let opts = QueryOptions {
        k: Some(6),
        no_cutoff: true,
        ..Default::default()
    };
    let (_, out) = multi.search("water and the sea", &opts).unwrap();
    assert_eq!(out.hits.len(), 6);
    let from: Vec<&str> = out.hits.iter().map(|h| &h.path[..2]).collect();
    assert_ne!(from[0], from[1], "{from:?}");
    assert!(out.hits.windows(2).all(|w| w[0].score >= w[1].score));
    let plain = MultiIndex::open_read_only(&dirs, cfg(128))
        .unwrap()
        .plain_paths(true);
    let (_, out) = plain.search("water and the sea", &opts).unwrap();
    assert!(out
        .hits
        .iter()
        .all(|h| !h.path.starts_with("ha/") && !h.path.starts_with("hb/")));
}

/// `query --shards` over the shards of one folder: paths as stored, hits merged by score,
/// every document in exactly one shard, and the best hit that of the whole folder.
#[test]
fn shards_of_one_folder_merge_by_score_with_their_own_paths() {
    let work = tempfile::tempdir().unwrap();
    let model = real_model();
    let mut shard_docs = 0;
    for i in 0..3u32 {
        let mut cfg = pinpoint::EngineConfig {
            model_dir: Some(model.clone()),
            ..Default::default()
        };
        cfg.ingest.shard = Some(pinpoint::shard::Shard::new(i, 3).unwrap());
        let mut e = pinpoint::Engine::create(work.path().join(format!("shard-{i}")), cfg).unwrap();
        e.add_folder(samples()).unwrap();
        shard_docs += e.manifest().counts.documents;
    }
    let files = std::fs::read_dir(samples()).unwrap().count() as u64;
    assert_eq!(shard_docs, files);
    let o = pinpoint(
        work.path(),
        &[
            "query",
            "how do tides work",
            "--shards",
            "--json",
            "-k",
            "3",
            "--index",
            "shard-0",
            "--index",
            "shard-1",
            "--index",
            "shard-2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits[0]["path"], "tides.txt", "{v}");
    assert!(hits
        .iter()
        .all(|h| !h["path"].as_str().unwrap().starts_with("shard-")));
    assert!(
        hits.iter().all(|h| h.get("explain").is_none()),
        "explain was not asked for"
    );
}

/// Indexes embedded in different precisions answer one query together: each index's
/// questions are embedded its own way (one encoder per precision), not refused.
#[test]
fn indexes_of_two_precisions_answer_together() {
    let work = tempfile::tempdir().unwrap();
    let model = real_model();
    for p in ["int8", "f32"] {
        let o = pinpoint(
            work.path(),
            &[
                "index",
                samples().to_str().unwrap(),
                "--index",
                p,
                "--model",
                model.to_str().unwrap(),
                "--precision",
                p,
                "--progress",
                "none",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = pinpoint(
        work.path(),
        &[
            "query",
            "how do tides work",
            "--index",
            "int8",
            "--index",
            "f32",
            "--json",
            "-k",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let paths: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    assert!(paths.iter().all(|p| p.ends_with("tides.txt")), "{paths:?}");
}
