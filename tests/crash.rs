//! Crash safety: the writer is killed with SIGKILL at many moments (inside commits, graph
//! builds, merges and compactions among them), and after every kill the index must open,
//! hold exactly the documents after some round, keep its stores in agreement, and answer
//! like a clean build of those documents.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pinpoint::{Engine, EngineConfig, Mode, SearchRequest};

#[path = "../examples/crash_writer.rs"]
#[allow(dead_code)]
mod writer;

fn example_bin() -> PathBuf {
    // tests run from target/<profile>/deps; examples live in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join("crash_writer")
}

fn cfg() -> EngineConfig {
    writer::config()
}

/// The documents the index holds after round `r` (rounds `r-1` and `r`).
fn expected_docs(r: u64) -> Vec<String> {
    let mut v = Vec::new();
    for r in [r.checked_sub(1), Some(r)].into_iter().flatten() {
        for i in 0..150 {
            v.push(format!("r{r}-{i}"));
        }
    }
    v.sort();
    v
}

/// Opens the index after a kill and checks it: a generation at or after `g_before` (the
/// last one known committed: a commit and the merges after it are several), holding
/// exactly the documents after some round, sound, and answering like a clean build of
/// those documents. Returns its generation.
fn check(index: &Path, g_before: u64) -> u64 {
    let e = Engine::open_read_only(index, cfg())
        .unwrap_or_else(|err| panic!("index does not open after a kill: {err}"));
    let g = e.manifest().generation;
    assert!(g >= g_before, "generation {g} after {g_before}");
    let docs: Vec<String> = e
        .documents()
        .unwrap()
        .iter()
        .map(|d| d.key.clone())
        .collect();
    let r = writer::next_round(&e).saturating_sub(1);
    assert_eq!(docs, expected_docs(r), "documents of generation {g}");
    let problems = e.verify().unwrap();
    assert!(problems.is_empty(), "generation {g}: {problems:?}");

    // Same answers as a clean rebuild of that generation. Dense scores must match exactly;
    // BM25 statistics of an incrementally updated tantivy index still count deleted
    // documents until segments merge, so the lexical check compares the matching set.
    let clean_dir = tempfile::tempdir().unwrap();
    let mut clean = Engine::create(clean_dir.path(), cfg()).unwrap();
    for r in [r.checked_sub(1), Some(r)].into_iter().flatten() {
        for i in 0..150 {
            clean
                .add_document(
                    &format!("r{r}-{i}"),
                    &format!("doc {r} {i}"),
                    &writer::doc_text(r, i),
                )
                .unwrap();
        }
    }
    clean.commit().unwrap();
    let q = "copper lantern over the granite canyon";
    // The stored vectors of the live chunks, exactly: an exact scan over every segment.
    let exact = |x: &Engine| -> Vec<(String, i64)> {
        let qv = x.embedder().unwrap().embed_query(q).unwrap();
        x.segments()
            .exact(&qv, 10)
            .into_iter()
            .map(|(id, s)| {
                let doc = x.document_of_chunk(id).unwrap().unwrap().to_string();
                (doc, (s * 1e5).round() as i64)
            })
            .collect()
    };
    let want = exact(&clean);
    assert_eq!(exact(&e), want, "exact dense hits of generation {g}");
    // The graphs (several segments here, one in the clean build: approximate searches of
    // different graphs, so not compared score for score) find live chunks only, and
    // nearly all of the exact top 10.
    let out = e
        .search_detailed(&SearchRequest::new(q, 10).mode(Mode::Dense))
        .unwrap();
    let found: Vec<String> = out
        .dense
        .iter()
        .take(10)
        .map(|(id, _)| {
            let id: u64 = id.parse().unwrap();
            e.document_of_chunk(id).unwrap().unwrap().to_string()
        })
        .collect();
    assert_eq!(found.len(), 10, "generation {g}: k live hits");
    assert!(
        found.iter().all(|d| docs.contains(d)),
        "generation {g}: {found:?}"
    );
    let overlap = want.iter().filter(|(d, _)| found.contains(d)).count();
    assert!(
        overlap >= 9,
        "generation {g}: graph found {overlap} of the exact top 10"
    );
    let lex_set = |x: &Engine| -> Vec<String> {
        let mut v: Vec<String> = x
            .search(&SearchRequest::new("quartz", 1000).mode(Mode::Lexical))
            .unwrap()
            .into_iter()
            .map(|h| h.path)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        lex_set(&e),
        lex_set(&clean),
        "lexical matches of generation {g}"
    );
    g
}

#[test]
fn kill_minus_nine_at_any_moment_leaves_a_consistent_index() {
    let bin = example_bin();
    assert!(
        bin.exists(),
        "build the example first (cargo test builds examples): {}",
        bin.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("idx");
    // Generation 0 (empty) before the first kill, then a timed uninterrupted run of two
    // rounds: kill moments are drawn relative to it, so they land inside rounds however
    // loaded the machine is (CI runs other tests beside this one).
    let st = Command::new(&bin).arg(&index).arg("0").status().unwrap();
    assert!(st.success());
    let t = Instant::now();
    let st = Command::new(&bin)
        .arg(&index)
        .arg("2")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let window_us = (t.elapsed().as_micros() as u64).max(20_000);

    let kills = 40;
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    let mut g = check(&index, 2);
    let started = Instant::now();
    for _ in 0..kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(window_us / 10 + seed % (window_us * 2));
        let mut child = Command::new(&bin)
            .arg(&index)
            .arg("100000")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = String::from("opening");
            let mut committed = None;
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Some(n) = line.strip_prefix("committed ") {
                    committed = n.trim().parse::<u64>().ok();
                }
                last = line;
            }
            (last, committed)
        });
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let (last, committed) = reader.join().unwrap();
        // The last generation the writer reported; the kill may have landed after its next
        // commit point but before it could say so.
        let g_before = committed.unwrap_or(g).max(g);
        let phase = if last.starts_with("committed") {
            "between commits".to_string()
        } else {
            last
        };
        *phases.entry(phase).or_default() += 1;
        g = check(&index, g_before);
    }
    // Kills aimed at the phases a random moment rarely meets: just after a graph build or
    // a merge starts (merges run in the rounds that compact, and after them).
    for target in ["phase hnsw", "phase merge"] {
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut child = Command::new(&bin)
                .arg(&index)
                .arg("100000")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut committed = None;
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            for line in lines.by_ref().map_while(|l| l.ok()) {
                if let Some(n) = line.strip_prefix("committed ") {
                    committed = n.trim().parse::<u64>().ok();
                }
                if line == target {
                    break;
                }
            }
            std::thread::sleep(Duration::from_micros(seed % 4000));
            child.kill().unwrap();
            child.wait().unwrap();
            // Whatever it printed after the target, up to the kill.
            for line in lines.map_while(|l| l.ok()) {
                if let Some(n) = line.strip_prefix("committed ") {
                    committed = n.trim().parse::<u64>().ok();
                }
            }
            *phases.entry(format!("aimed at {target}")).or_default() += 1;
            g = check(&index, committed.unwrap_or(g).max(g));
        }
    }
    let during_commit: usize = phases
        .iter()
        .filter(|(p, _)| {
            p.contains("write")
                || p.contains("commit") && !p.contains("between")
                || p.contains("publish")
                || p.contains("merge")
                || p.contains("hnsw")
        })
        .map(|(_, n)| n)
        .sum();
    println!(
        "{kills} kills survived in {:.1} s, final generation {g}; last phase seen before each kill: {phases:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        g >= 3,
        "the writer made too little progress to test much (generation {g})"
    );
    assert!(
        during_commit >= 5,
        "too few kills inside a commit: {phases:?}"
    );
}
