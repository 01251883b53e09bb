//! What a user hits first must never lose their index or kill the server: a rebuild that
//! fails half-way, requests of absurd size, `-k` above the cut-off's floor rank, boosts on
//! negative scores, a long-lived reader, a graph dump into an unwritable folder.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pinpoint::embed::TokenMatrix;
use pinpoint::{
    Embedder, Engine, EngineConfig, Error, HashEmbedder, Mode, NoProgress, Pipeline, SearchRequest,
};
use serde_json::Value;

use crate::util::*;

fn paths(hits: &[pinpoint::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.path.clone()).collect()
}

/// Three hundred short documents on distinct topics, so that the candidate lists are long.
fn write_corpus(dir: &Path, n: usize) {
    let words = [
        "tide", "moon", "volcano", "magma", "bread", "yeast", "bee", "hive", "jazz", "chord",
        "paper", "fold", "orbit", "comet", "river", "delta", "glacier", "ice", "forest", "fern",
    ];
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let a = words[i % words.len()];
        let b = words[(i / words.len()) % words.len()];
        let text = format!(
            "Note {i} about the {a} and the {b}.\n\nThe {a} meets the {b} in story {i}; \
             a {a} is not a {b}, yet both appear in note number {i}."
        );
        std::fs::write(dir.join(format!("note{i:03}.txt")), text).unwrap();
    }
}

// ---- 1. `index --rebuild` ------------------------------------------------------------

#[test]
fn rebuild_of_a_default_index_builds_it_again() {
    let work = tempfile::tempdir().unwrap();
    let model = real_model();
    let m = model.to_str().unwrap();
    let s = samples();
    let s = s.to_str().unwrap();
    let first = pinpoint(work.path(), &["index", s, "--index", "i", "--model", m]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        work.path().join("i/near").is_dir(),
        "a default index has near/"
    );
    // This is the command every corrupt-index error names; it used to delete the index
    // and then refuse to build one ("folder is not empty").
    let again = pinpoint(
        work.path(),
        &["index", s, "--index", "i", "--model", m, "--rebuild"],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    let q = pinpoint(
        work.path(),
        &["query", "how do tides work", "--index", "i", "-k", "1"],
    );
    assert!(q.status.success(), "{}", stderr(&q));
    assert!(stdout(&q).starts_with("tides.txt"), "{}", stdout(&q));
    let v = pinpoint(work.path(), &["verify", "--index", "i"]);
    assert!(v.status.success(), "{}", stdout(&v));
    for scratch in ["rebuild.tmp", "old.tmp", "REBUILD"] {
        assert!(!work.path().join("i").join(scratch).exists(), "{scratch}");
    }
}

/// An embedder that fails after a number of calls: a build interrupted half-way.
struct Failing {
    inner: HashEmbedder,
    calls_left: AtomicUsize,
}

impl Failing {
    fn check(&self) -> pinpoint::Result<()> {
        if self
            .calls_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(Error::invalid("embedder", "interrupted for the test"));
        }
        Ok(())
    }
}

impl Embedder for Failing {
    fn spec(&self) -> &pinpoint::models::ModelSpec {
        self.inner.spec()
    }
    fn embed_passages(&self, texts: &[&str]) -> pinpoint::Result<Vec<f32>> {
        self.check()?;
        self.inner.embed_passages(texts)
    }
    fn embed_raw(&self, texts: &[&str]) -> pinpoint::Result<Vec<f32>> {
        self.check()?;
        self.inner.embed_raw(texts)
    }
    fn token_spans(&self, text: &str) -> Vec<(usize, usize)> {
        self.inner.token_spans(text)
    }
    fn embed_with_tokens(&self, texts: &[&str]) -> pinpoint::Result<(Vec<f32>, Vec<TokenMatrix>)> {
        self.check()?;
        self.inner.embed_with_tokens(texts)
    }
}

#[test]
fn a_rebuild_that_fails_half_way_leaves_the_old_index_answering() {
    let idx = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    write_corpus(src.path(), 200);
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(samples()).unwrap();
    let before = e.search(&SearchRequest::new("volcano magma", 3)).unwrap();
    drop(e);

    let failing = EngineConfig {
        embedder: Some(Arc::new(Failing {
            inner: HashEmbedder::new(128),
            calls_left: AtomicUsize::new(1),
        })),
        ..Default::default()
    };
    let err = Engine::rebuild(idx.path(), failing, src.path(), Arc::new(NoProgress))
        .err()
        .expect("the build fails");
    assert!(err.to_string().contains("interrupted"), "{err}");
    let e = Engine::open(idx.path(), fake_config()).unwrap();
    assert_eq!(
        e.search(&SearchRequest::new("volcano magma", 3)).unwrap(),
        before
    );
    assert!(e.verify().unwrap().is_empty());
    // The unfinished build is gone once a writer opened the folder.
    assert!(!idx.path().join("rebuild.tmp").exists());
    drop(e);

    // A rebuild beside a writer (e.g. `watch`) is refused, and changes nothing.
    let writer = Engine::open(idx.path(), fake_config()).unwrap();
    let err = Engine::rebuild(idx.path(), fake_config(), src.path(), Arc::new(NoProgress))
        .err()
        .expect("locked");
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(writer);

    let (e, r) =
        Engine::rebuild(idx.path(), fake_config(), src.path(), Arc::new(NoProgress)).unwrap();
    assert_eq!(r.documents_total, 200);
    assert_eq!(e.documents().unwrap().len(), 200);
    assert!(e.verify().unwrap().is_empty());
}

#[test]
fn a_rebuild_past_its_commit_point_is_rolled_forward() {
    let idx = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    write_corpus(src.path(), 30);
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(samples()).unwrap();
    drop(e);
    // The state a crash right after the mark leaves: a complete index in rebuild.tmp/.
    let mut fresh = Engine::create(idx.path().join("rebuild.tmp"), fake_config()).unwrap();
    fresh.add_folder(src.path()).unwrap();
    drop(fresh);
    std::fs::write(idx.path().join("REBUILD"), "").unwrap();
    // A reader opened now waits for nobody and sees an index (the old one).
    let e = Engine::open(idx.path(), fake_config()).unwrap();
    assert_eq!(e.documents().unwrap().len(), 30);
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    assert!(!idx.path().join("REBUILD").exists());
    assert!(!idx.path().join("rebuild.tmp").exists());
    let hits = e
        .search(&SearchRequest::new("glacier", 1).mode(Mode::Lexical))
        .unwrap();
    assert!(hits[0].path.starts_with("note"), "{hits:?}");
}

// ---- 2-3. request sizes and `-k` above the floor rank ------------------------------

/// An index of 300 notes with the real model and a graph (min_points 50), for the CLI.
fn graph_index(work: &Path) -> std::path::PathBuf {
    let src = work.join("notes");
    write_corpus(&src, 300);
    let idx = work.join("idx");
    let mut cfg = EngineConfig {
        model_dir: Some(real_model()),
        ..Default::default()
    };
    cfg.hnsw.min_points = 50;
    let mut e = Engine::create(&idx, cfg).unwrap();
    e.add_folder(&src).unwrap();
    assert!(graph_base(&e).is_some(), "the index must use the graph");
    idx
}

#[test]
fn absurd_sizes_are_refused_and_k_above_twenty_is_honoured() {
    let work = tempfile::tempdir().unwrap();
    let idx = graph_index(work.path());
    let i = idx.to_str().unwrap();
    for (flag, value, name) in [
        ("-k", "100000000000", "k"),
        ("--depth", "100000000000", "depth"),
        ("--rerank-depth", "100000000000", "rerank_depth"),
        ("-k", "1001", "k"),
    ] {
        for mode in ["hybrid", "dense", "lexical"] {
            let err = user_error(
                work.path(),
                &[
                    "query",
                    "glacier ice",
                    "--index",
                    i,
                    flag,
                    value,
                    "--mode",
                    mode,
                ],
                "maximum",
            );
            assert!(err.contains(name), "{err}");
        }
    }
    let long = "glacier ".repeat(5000);
    user_error(
        work.path(),
        &["query", &long, "--index", i],
        "at most 32768 are accepted",
    );

    // `--no-cutoff` hands over all k: 100 of 300 notes, in every mode that can find them.
    for mode in ["hybrid", "dense"] {
        let o = pinpoint(
            work.path(),
            &[
                "query",
                "a note about the glacier and the ice",
                "--index",
                i,
                "-k",
                "100",
                "--no-cutoff",
                "--max-tokens",
                "1000000",
                "--mode",
                mode,
                "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["hits"].as_array().unwrap().len(), 100, "{mode}");
        assert!(v.get("note").is_none(), "{mode}: {v}");
    }
    // Lexical mode finds only the notes that share a word: fewer, and a note says why.
    let o = pinpoint(
        work.path(),
        &[
            "query",
            "glacier",
            "--index",
            i,
            "-k",
            "100",
            "--no-cutoff",
            "--mode",
            "lexical",
            "--json",
        ],
    );
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let n = v["hits"].as_array().unwrap().len();
    assert!((15..100).contains(&n), "{n}");
    assert!(
        v["note"].as_str().unwrap().contains(&format!("{n} of 100")),
        "{v}"
    );
}

#[test]
fn serve_refuses_absurd_sizes_with_400() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("notes");
    write_corpus(&src, 300);
    let mut cfg = fake_config();
    cfg.hnsw.min_points = 50;
    let mut e = Engine::create(work.path().join("idx"), cfg).unwrap();
    e.add_folder(&src).unwrap();
    assert!(graph_base(&e).is_some());
    drop(e);
    let (server, _t) = crate::serve::start(&work.path().join("idx"));
    let addr = server.addr().unwrap();
    for body in [
        r#"{"query": "glacier", "k": 100000000000}"#,
        r#"{"query": "glacier", "depth": 100000000000}"#,
        r#"{"query": "glacier", "rerank_depth": 100000000000}"#,
        r#"{"query": "glacier", "k": 100000000000, "mode": "dense"}"#,
        r#"{"query": "glacier", "k": 100000000000, "mode": "lexical"}"#,
    ] {
        let (status, text) = crate::serve::post(addr, body);
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains("maximum"), "{text}");
    }
    // Many questions in one body: split into at most 16, answered, not ranked 10,000 times.
    let many = "why is ice blue? ".repeat(3000);
    let (status, text) = crate::serve::post(
        addr,
        &serde_json::json!({ "query": many.trim() }).to_string(),
    );
    assert_eq!(status, 400, "{text}");
    let many = "why is ice blue? what is a glacier? ".repeat(900);
    let many = &many[..30_000];
    let (status, text) =
        crate::serve::post(addr, &serde_json::json!({ "query": many }).to_string());
    assert_eq!(status, 200, "{text}");
    let (status, _) = crate::serve::http(addr, "GET", "/query?q=glacier&k=100000000000", "", "");
    assert_eq!(status, 400);
    server.stop();
}

// ---- 4. boosts and recency whatever the score's sign --------------------------------

#[test]
fn a_boost_raises_a_file_on_every_pipeline_path() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(samples()).unwrap();
    let q = "water and the sea";
    let default = e.default_pipeline();
    let no_rerank = Pipeline {
        rerank: None,
        ..default.clone()
    };
    let cases = [
        ("default", Mode::Hybrid, default.clone()),
        ("no rerank", Mode::Hybrid, no_rerank.clone()),
        ("dense", Mode::Dense, no_rerank.clone()),
        ("lexical", Mode::Lexical, no_rerank),
    ];
    for (name, mode, p) in cases {
        let mut req = SearchRequest::new(q, 8).mode(mode).pipeline(p.clone());
        if let Some(sel) = req.pipeline.select.as_mut() {
            sel.disable_cutoff();
        }
        let plain = paths(&e.search(&req).unwrap());
        assert!(plain.len() >= 4, "{name}: {plain:?}");
        // The fourth file, boosted tenfold, comes first; the first, divided by ten, leaves
        // the top. On main, fused scores below zero moved both the other way.
        let low = plain[3].clone();
        let mut boosted = req.clone();
        boosted.pipeline.rules.boosts.push((low.clone(), 10.0));
        let got = paths(&e.search(&boosted).unwrap());
        assert_eq!(got[0], low, "{name}: {plain:?} -> {got:?}");
        let top = plain[0].clone();
        let mut sunk = req.clone();
        sunk.pipeline.rules.boosts.push((top.clone(), 0.1));
        let got = paths(&e.search(&sunk).unwrap());
        assert_ne!(got[0], top, "{name}: {plain:?} -> {got:?}");
        // A factor of 1 changes nothing.
        let mut same = req.clone();
        same.pipeline.rules.boosts.push(("**".into(), 1.0));
        assert_eq!(paths(&e.search(&same).unwrap()), plain, "{name}");
    }
    // A factor that would reverse a ranking is refused.
    assert!(pinpoint::rerank::Rules::parse_boost("x=-2").is_err());
    assert!(pinpoint::rerank::Rules::parse_boost("x=0").is_err());
}

#[test]
fn recency_lowers_old_files_whatever_the_score_sign() {
    let src = tempfile::tempdir().unwrap();
    copy_dir(&samples(), src.path());
    // Every file ten years old except one.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3650 * 86_400);
    for e in std::fs::read_dir(src.path()).unwrap() {
        let f = std::fs::File::options()
            .write(true)
            .open(e.unwrap().path())
            .unwrap();
        f.set_modified(old).unwrap();
    }
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    let q = "water and the sea";
    e.add_folder(src.path()).unwrap();
    let mut req = SearchRequest::new(q, 8).pipeline(Pipeline {
        rerank: None,
        ..e.default_pipeline()
    });
    req.pipeline.select.as_mut().unwrap().disable_cutoff();
    let plain = paths(&e.search(&req).unwrap());
    let fresh = plain[3].clone();
    let f = std::fs::File::options()
        .write(true)
        .open(src.path().join(&fresh))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    e.add_folder(src.path()).unwrap();
    req.pipeline.rules.recency_half_life_days = Some(30.0);
    let got = paths(&e.search(&req).unwrap());
    assert_eq!(got[0], fresh, "{plain:?} -> {got:?}");
}

// ---- 5. a long-lived reader -----------------------------------------------------------

#[test]
fn a_reader_keeps_its_generation_through_three_commits() {
    let idx = tempfile::tempdir().unwrap();
    let mut w = Engine::create(idx.path(), fake_config()).unwrap();
    w.add_folder(samples()).unwrap();
    let reader = Engine::open_read_only(idx.path(), fake_config()).unwrap();
    let base = reader.manifest().table_chain().0;
    // Commits take deltas of the tables until they outgrow the base, which is then written
    // again; two commits later the writer's cleanup removes the reader's base.
    let mut i = 0;
    while w.manifest().table_chain().0 == base && i < 200 {
        w.add_document(&format!("extra{i}"), "Extra", &format!("quokka number {i}"))
            .unwrap();
        w.commit().unwrap();
        i += 1;
    }
    assert!(i > 1, "the first commit after the reader took a delta");
    for k in 0..2 {
        w.add_document(&format!("more{k}"), "More", "a wombat")
            .unwrap();
        w.commit().unwrap();
    }
    // Files a commit leaves are unlinked in the background; the writer's drop waits.
    drop(w);
    assert!(!idx.path().join(format!("docs/{base}.bin")).exists());
    // The reader first needs its document table now (the default reranker and rules do).
    let docs = reader.documents().unwrap();
    assert!(docs.iter().all(|d| !d.key.starts_with("extra")));
    let mut req = SearchRequest::new("volcano magma", 3);
    req.pipeline.rules.boosts.push(("*.txt".into(), 2.0));
    let hits = reader.search(&req).unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| !h.path.starts_with("extra")));
}

// ---- 6. graph dumps -------------------------------------------------------------------

#[test]
fn a_graph_file_into_an_unwritable_place_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("notes");
    write_corpus(&src, 60);
    let mut cfg = fake_config();
    cfg.hnsw.min_points = 10;
    let mut e = Engine::create(work.path().join("idx"), cfg.clone()).unwrap();
    e.add_folder(&src).unwrap();
    let seg = &e.segments().segments()[0];
    let ids: Vec<u64> = (0..seg.store().len())
        .map(|r| seg.store().id_at(r))
        .collect();
    let g = pinpoint::dense::build_graph(&cfg.hnsw, seg.dense().vectors(), &ids);
    // A file where the folder should be: not writable even for root.
    let file = work.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let err =
        pinpoint::graph_file::GraphFile::write(&g, seg.store(), &file.join("sub/g")).unwrap_err();
    assert!(err.to_string().contains("plain-file"), "{err}");
    // The graph file the commit wrote is on disk and answers.
    let rel = graph_base(&e).unwrap();
    assert!(work.path().join("idx").join(&rel).is_file());
    assert!(seg.graph_file().unwrap().is_some());
}

// ---- error messages name fixes that work -------------------------------------------------

/// The command between the first pair of backticks of `message`, with its placeholders
/// filled in.
fn suggested(message: &str, folder: &str, index: &str, model: &str) -> Vec<String> {
    let cmd = message
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {message}"));
    cmd.split_whitespace()
        .skip(1) // "pinpoint"
        .map(|w| match w {
            "<FOLDER>" => folder.to_string(),
            "<INDEX>" | "<NEW_INDEX>" => index.to_string(),
            "DIR" => model.to_string(),
            w => w.to_string(),
        })
        .collect()
}

#[test]
fn every_suggested_fix_runs() {
    let work = tempfile::tempdir().unwrap();
    let model = real_model();
    let m = model.to_str().unwrap();
    let s = samples();
    let s = s.to_str().unwrap();
    let run_fix = |err: &str, index: &str| {
        let mut args = suggested(err, s, index, m);
        // The tests run in a scratch folder, away from the default model folder.
        if !args.iter().any(|a| a == "--model") {
            args.extend(["--model".to_string(), m.to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        let o = pinpoint(work.path(), &refs);
        assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
        let q = pinpoint(
            work.path(),
            &["query", "how do tides work", "--index", index],
        );
        assert!(q.status.success(), "{}", stderr(&q));
        assert!(stdout(&q).starts_with("tides.txt"), "{}", stdout(&q));
    };

    // No index there.
    let err = user_error(
        work.path(),
        &["query", "tides", "--index", "missing"],
        "pinpoint index",
    );
    run_fix(&err, "missing");

    // A folder that is not an index: the fix names a new folder.
    std::fs::create_dir_all(work.path().join("notes")).unwrap();
    std::fs::write(work.path().join("notes/a.txt"), "hello").unwrap();
    let err = pinpoint(work.path(), &["query", "tides", "--index", "notes"]);
    let err = stderr(&err);
    assert!(err.contains("pinpoint index"), "{err}");
    run_fix(&err, "fresh");

    // A damaged file.
    let o = pinpoint(work.path(), &["index", s, "--index", "i", "--model", m]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("i/manifest.json")).unwrap(),
    )
    .unwrap();
    let chunks = work
        .path()
        .join("i")
        .join(manifest["files"][0]["path"].as_str().unwrap());
    let len = std::fs::metadata(&chunks).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&chunks)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let o = pinpoint(work.path(), &["query", "tides", "--index", "i"]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(err.contains("--rebuild"), "{err}");
    run_fix(&err, "i");

    // An index of another format version.
    let path = work.path().join("i/manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["format_version"] = 99.into();
    std::fs::write(&path, v.to_string()).unwrap();
    let o = pinpoint(work.path(), &["query", "tides", "--index", "i"]);
    let err = stderr(&o);
    assert!(err.contains("--rebuild"), "{err}");
    run_fix(&err, "i");
}

// ---- serve under hostile input ---------------------------------------------------------

/// One raw HTTP exchange; the status code.
fn raw_status(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut req = head.as_bytes().to_vec();
    req.extend_from_slice(body);
    let _ = s.write_all(&req);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no status for {:?}: {text:?}",
                String::from_utf8_lossy(&req)
            )
        })
}

fn post_raw(addr: std::net::SocketAddr, body: &[u8]) -> u16 {
    raw_status(
        addr,
        &format!(
            "POST /query HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ),
        body,
    )
}

/// Seeded random requests (mutated option objects, odd types and sizes, broken JSON and
/// UTF-8, random query strings) against a live server: every one gets a status that names a
/// fault or an answer, and the server keeps answering. The inputs that once got through
/// (`tests/data/serve-corpus/`) are replayed first.
#[test]
fn serve_survives_random_and_recorded_hostile_requests() {
    use rand::{Rng, SeedableRng};
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("notes");
    write_corpus(&src, 120);
    let mut cfg = fake_config();
    cfg.hnsw.min_points = 50;
    let mut e = Engine::create(work.path().join("idx"), cfg).unwrap();
    e.add_folder(&src).unwrap();
    drop(e);
    let (server, _t) = crate::serve::start(&work.path().join("idx"));
    let addr = server.addr().unwrap();
    let allowed = [200u16, 400, 403, 404, 405, 413, 415];

    let corpus = root().join("tests/data/serve-corpus");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    for f in files {
        let body = std::fs::read(&f).unwrap();
        let status = post_raw(addr, &body);
        assert_eq!(status, 400, "{}", f.display());
    }

    let keys = [
        "query",
        "k",
        "mode",
        "fusion",
        "rerank",
        "no_rerank",
        "reranker",
        "cross_encoder",
        "rerank_depth",
        "depth",
        "max_tokens",
        "no_cutoff",
        "no_abstain",
        "explain",
        "boost",
        "recency_days",
        "expand_cmd",
        "expansion",
        "kk",
        "",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let value = |rng: &mut rand::rngs::StdRng| -> Value {
        match rng.random_range(0..12) {
            0 => Value::Null,
            1 => Value::Bool(rng.random()),
            2 => rng.random_range(-5i64..50).into(),
            3 => Value::from(u64::MAX >> rng.random_range(0..64)),
            4 => Value::from(rng.random::<f64>() * 1e6 - 5e5),
            5 => "glacier ice".into(),
            6 => "?".repeat(rng.random_range(0..300)).into(),
            7 => serde_json::json!(["*.txt=2", "x"]),
            8 => serde_json::json!({"a": 1}),
            9 => "hybrid".into(),
            10 => "zscore".into(),
            _ => "note 7 about the moon? and the tide?".into(),
        }
    };
    let start = std::time::Instant::now();
    let mut answered = 0;
    for i in 0..600 {
        if start.elapsed().as_secs() > 60 {
            break;
        }
        let mut m = serde_json::Map::new();
        if rng.random_bool(0.9) {
            m.insert("query".into(), value(&mut rng));
        }
        for _ in 0..rng.random_range(0..4) {
            let k = keys[rng.random_range(0..keys.len())];
            m.insert(k.into(), value(&mut rng));
        }
        let mut body = Value::Object(m).to_string().into_bytes();
        match rng.random_range(0..10) {
            0 => body.truncate(rng.random_range(0..body.len().max(1))),
            1 => {
                let at = rng.random_range(0..body.len().max(1));
                body.insert(at, 0xff);
            }
            _ => {}
        }
        let status = post_raw(addr, &body);
        assert!(
            allowed.contains(&status),
            "#{i}: {status} for {:?}",
            String::from_utf8_lossy(&body)
        );
        answered += (status == 200) as usize;
        // A GET with random parameters.
        let q: String = (0..rng.random_range(0..40))
            .map(|_| b"abck=&%?+9x"[rng.random_range(0..11)] as char)
            .collect();
        let status = raw_status(
            addr,
            &format!("GET /query?{q} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
            b"",
        );
        assert!(allowed.contains(&status), "GET ?{q}: {status}");
    }
    assert!(
        answered > 10,
        "only {answered} valid requests were generated"
    );
    // Still alive and answering.
    let (status, _) = crate::serve::post(addr, r#"{"query": "glacier"}"#);
    assert_eq!(status, 200);
    server.stop();
}

/// The graph of an opened generation is read by the first search that needs it: a
/// lexical query never loads it, a dense one does; a damaged graph is then an error that
/// names its file (and `verify` reports it), not a crash, and lexical queries still answer.
#[test]
fn the_graph_is_loaded_by_the_first_search_that_needs_it() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("notes");
    write_corpus(&src, 80);
    let mut cfg = fake_config();
    cfg.hnsw.min_points = 10;
    let idx = work.path().join("idx");
    let mut e = Engine::create(&idx, cfg.clone()).unwrap();
    e.add_folder(&src).unwrap();
    drop(e);
    let e = Engine::open_read_only(&idx, cfg.clone()).unwrap();
    assert!(e.segments().has_graph() && !e.segments().graph_loaded());
    let q = |m: pinpoint::Mode| {
        e.search(&pinpoint::SearchRequest::new("the tide and the moon", 5).mode(m))
    };
    assert!(!q(pinpoint::Mode::Lexical).unwrap().is_empty());
    assert!(
        !e.segments().graph_loaded(),
        "a lexical query loaded the graph"
    );
    assert!(!q(pinpoint::Mode::Dense).unwrap().is_empty());
    assert!(e.segments().graph_loaded());
    drop(e);

    // Damage the graph's data file, keeping its size (the manifest's size check passes).
    let base = graph_base(&Engine::open_read_only(&idx, cfg.clone()).unwrap()).unwrap();
    let data = idx.join(&base);
    let mut bytes = std::fs::read(&data).unwrap();
    for b in bytes.iter_mut().skip(8).take(16) {
        *b = 0xAB;
    }
    std::fs::write(&data, bytes).unwrap();
    let e = Engine::open_read_only(&idx, cfg).unwrap();
    assert!(!e
        .search(
            &pinpoint::SearchRequest::new("the tide and the moon", 5).mode(pinpoint::Mode::Lexical)
        )
        .unwrap()
        .is_empty());
    let err = e
        .search(
            &pinpoint::SearchRequest::new("the tide and the moon", 5).mode(pinpoint::Mode::Dense),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains(&base), "{err}");
    let problems = e.verify().unwrap();
    assert!(!problems.is_empty(), "verify must see the damaged graph");
}
