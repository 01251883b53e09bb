//! Segments: a commit writes only new files, a segmented index answers as its compacted
//! self, readers keep their generation while merges run, and an index from before
//! segments keeps working.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use pinpoint::sq8::VectorPrecision;
use pinpoint::{Engine, EngineConfig, Mode, SearchRequest};

use crate::util::*;

/// Deterministic text of document `i`.
fn text(i: usize) -> String {
    const WORDS: [&str; 16] = [
        "river", "stone", "cloud", "ember", "violet", "harbor", "meadow", "signal", "copper",
        "lantern", "orbit", "thistle", "granite", "willow", "falcon", "ripple",
    ];
    let mut x = i as u64 * 2_654_435_761 + 7;
    let mut s = format!("note {i}");
    for _ in 0..30 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(' ');
        s.push_str(WORDS[(x % 16) as usize]);
    }
    s
}

fn cfg(min_points: usize) -> EngineConfig {
    let mut c = fake_config();
    c.hnsw.min_points = min_points;
    c
}

/// An index built by `commits` commits of `per` documents each.
fn build(dir: &Path, c: EngineConfig, commits: usize, per: usize) -> Engine {
    build_sized(dir, c, &vec![per; commits])
}

/// An index built by one commit of `n` documents for each `n` of `sizes`.
fn build_sized(dir: &Path, c: EngineConfig, sizes: &[usize]) -> Engine {
    let mut e = Engine::create(dir, c).unwrap();
    let mut i = 0;
    for &n in sizes {
        add_range(&mut e, i..i + n);
        e.commit().unwrap();
        i += n;
    }
    e
}

/// Stages documents `d{i}` for each `i` of `range`.
fn add_range(e: &mut Engine, range: std::ops::Range<usize>) {
    for i in range {
        e.add_document(&format!("d{i}"), &format!("t{i}"), &text(i))
            .unwrap();
    }
}

/// Whether each segment has a graph file, in segment order.
fn graph_flags(e: &Engine) -> Vec<bool> {
    e.manifest()
        .segments
        .iter()
        .map(|s| s.graph_file.is_some())
        .collect()
}

/// (inode, bytes) of every file under the segment folders.
fn files(dir: &Path) -> BTreeMap<String, (u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for sub in ["chunks", "dense", "late", "del", "docs", "meta", "near"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let md = e.metadata().unwrap();
            out.insert(
                format!("{sub}/{}", e.file_name().to_string_lossy()),
                (md.ino(), std::fs::read(e.path()).unwrap()),
            );
        }
    }
    out
}

fn hits(e: &Engine, q: &str, mode: Mode) -> Vec<(String, i64)> {
    e.search(&SearchRequest::new(q, 10).mode(mode))
        .unwrap()
        .into_iter()
        .map(|h| (h.path, (h.score * 1e4).round() as i64))
        .collect()
}

#[test]
fn a_one_file_commit_writes_only_new_files() {
    let idx = tempfile::tempdir().unwrap();
    // Three segments, two with a graph (the second commit is too small a share of the
    // first to fold into it, `merge::FOLD_RATIO`) and one too small for a graph.
    let mut e = build_sized(idx.path(), cfg(20), &[300, 25, 3]);
    let graphs = graph_flags(&e);
    assert_eq!(graphs, [true, true, false]);
    // Files a commit replaced are unlinked on a thread of their own: list the folders
    // only once it is done, or a file may vanish between the listing and its read.
    e.wait_for_cleanup();
    let before = files(idx.path());
    let seg_files: Vec<String> = e
        .manifest()
        .segments
        .iter()
        .flat_map(|s| s.files())
        .collect();

    // Edit one document: its old chunks are deleted from segment 1, the new ones form a
    // new segment.
    e.add_document("d5", "t5", "an edited note about the tide and the moon")
        .unwrap();
    let r = e.commit().unwrap();
    assert_eq!(r.updated, 1);
    e.wait_for_cleanup();
    let after = files(idx.path());
    for f in &seg_files {
        assert_eq!(
            before.get(f).map(|x| x.0),
            after.get(f).map(|x| x.0),
            "{f} was replaced"
        );
        assert!(
            before.get(f).map(|x| &x.1) == after.get(f).map(|x| &x.1),
            "{f} was rewritten"
        );
    }
    let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let gen = e.manifest().generation;
    let newest = e.manifest().segments.last().unwrap().id;
    for f in &new {
        let ok = f.contains(&format!("s{newest}."))
            || *f == &format!("del/s1.{gen}.bin")
            || f.ends_with(&format!("/{gen}.delta"));
        assert!(ok, "unexpected new file {f} (new files: {new:?})");
    }
    assert!(new.contains(&&format!("del/s1.{gen}.bin")), "{new:?}");
    // The document, metadata and neighbour tables take a delta, not a rewrite.
    for t in ["docs", "meta", "near"] {
        assert!(new.contains(&&format!("{t}/{gen}.delta")), "{t}: {new:?}");
    }
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    assert_eq!(
        hits(&e, "tide and the moon", Mode::Lexical)[0].0,
        "d5",
        "the edit is searchable"
    );
}

#[test]
fn a_segmented_index_answers_as_its_compacted_self() {
    let idx = tempfile::tempdir().unwrap();
    // Exact scans (no graph), so that dense scores compare exactly.
    let mut e = build(idx.path(), cfg(1_000_000), 5, 30);
    for i in [3, 31, 64, 100] {
        e.remove_document(&format!("d{i}")).unwrap();
    }
    e.add_document("d70", "t70", "a replaced note about copper lanterns")
        .unwrap();
    e.commit().unwrap();
    assert!(
        e.manifest().segments.len() >= 5,
        "{:?}",
        e.manifest().segments
    );
    let queries = ["copper lantern", "granite willow falcon", "river stone"];
    let modes = [Mode::Dense, Mode::Lexical, Mode::Hybrid];
    let segmented: Vec<_> = queries
        .iter()
        .flat_map(|q| modes.iter().map(|m| hits(&e, q, *m)))
        .collect();
    e.compact().unwrap();
    assert_eq!(e.manifest().segments.len(), 1);
    assert_eq!(e.manifest().segments[0].deleted, 0);
    let compacted: Vec<_> = queries
        .iter()
        .flat_map(|q| modes.iter().map(|m| hits(&e, q, *m)))
        .collect();
    assert_eq!(segmented, compacted);
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    // Removed documents are nowhere.
    let all: Vec<String> = e
        .search(&SearchRequest::new("note", 1000).mode(Mode::Lexical))
        .unwrap()
        .into_iter()
        .map(|h| h.path)
        .collect();
    assert!(!all
        .iter()
        .any(|p| ["d3", "d31", "d64", "d100"].contains(&p.as_str())));
}

#[test]
fn segments_with_graphs_find_what_an_exact_scan_finds() {
    graphs_find_what_an_exact_scan_finds(VectorPrecision::F32);
}

#[test]
fn int8_vectors_walked_and_rescored_find_what_an_exact_scan_finds() {
    graphs_find_what_an_exact_scan_finds(VectorPrecision::Int8);
}

fn graphs_find_what_an_exact_scan_finds(precision: VectorPrecision) {
    let idx = tempfile::tempdir().unwrap();
    let mut c = cfg(20);
    c.vector_precision = precision;
    // Four graphs: each commit of ten (too few for a graph of its own) keeps the next sixty
    // from folding into the graph before, and joins their new graph instead; the last
    // commit folds into the fourth graph.
    let mut e = build_sized(idx.path(), c, &[60, 10, 60, 10, 60, 10, 60, 30]);
    assert_eq!(graph_flags(&e), [true; 4], "{:?}", e.manifest().segments);
    for i in (0..300).step_by(7) {
        e.remove_document(&format!("d{i}")).unwrap();
    }
    e.commit().unwrap();
    let exact_dir = tempfile::tempdir().unwrap();
    let mut exact = Engine::create(exact_dir.path(), cfg(1_000_000)).unwrap();
    for i in (0..300).filter(|i| i % 7 != 0) {
        exact
            .add_document(&format!("d{i}"), &format!("t{i}"), &text(i))
            .unwrap();
    }
    exact.commit().unwrap();
    // The dense leg's own top 10, by document (chunk ids differ between the two indexes).
    let leg = |x: &Engine, q: &str| -> Vec<String> {
        let out = x
            .search_detailed(&SearchRequest::new(q, 10).mode(Mode::Dense))
            .unwrap();
        out.dense
            .iter()
            .take(10)
            .map(|(id, _)| {
                x.document_of_chunk(id.parse().unwrap())
                    .unwrap()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let (mut found, mut total) = (0, 0);
    for q in [
        "copper lantern",
        "granite willow",
        "river stone cloud",
        "orbit ripple",
    ] {
        let want = leg(&exact, q);
        let got = leg(&e, q);
        assert_eq!(got.len(), 10, "k live hits come back");
        total += want.len();
        found += want.iter().filter(|w| got.contains(w)).count();
    }
    assert!(found * 100 >= total * 95, "recall {found}/{total}");
    // Each segment with a graph has its int8 copy exactly when the index asked for one.
    for m in &e.manifest().segments {
        let has = m.sq8.as_ref().is_some_and(|f| idx.path().join(f).is_file());
        assert_eq!(
            has,
            m.graph_file.is_some() && precision == VectorPrecision::Int8,
            "segment {}",
            m.id
        );
    }
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
}

#[test]
fn a_reader_keeps_answering_while_merges_run() {
    let idx = tempfile::tempdir().unwrap();
    let mut w = build_sized(idx.path(), cfg(20), &[40, 10]);
    let reader = Engine::open_read_only(idx.path(), cfg(20)).unwrap();
    let gen = reader.manifest().generation;
    let q = "granite willow falcon";
    let before: Vec<String> = hits(&reader, q, Mode::Dense)
        .into_iter()
        .map(|h| h.0)
        .collect();
    // Eight small segments merge after the commit that makes them eight; then everything
    // is compacted: the reader's segment files are removed along the way.
    for b in 0..7 {
        add_range(&mut w, 50 + b * 10..60 + b * 10);
        w.commit().unwrap();
    }
    w.compact().unwrap();
    assert!(w.manifest().generation > gen + 3);
    assert_eq!(w.manifest().segments.len(), 1);
    let after: Vec<String> = hits(&reader, q, Mode::Dense)
        .into_iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(before, after, "the reader answers from its generation");
    assert_eq!(reader.manifest().generation, gen);
    assert!(!hits(&reader, q, Mode::Hybrid).is_empty());
}

#[test]
fn eight_commits_merge_into_one_segment() {
    let idx = tempfile::tempdir().unwrap();
    // A segment with a graph, then seven too small for one: the eighth segment of the
    // lowest tier triggers the merge, which starts from the first one's graph.
    let e = build_sized(idx.path(), cfg(20), &[30, 10, 10, 10, 10, 10, 10, 10]);
    let segs = &e.manifest().segments;
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert_eq!(segs[0].rows as usize, e.segments().len());
    assert!(segs[0].graph_file.is_some());
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    // The merged segment's graph covers every chunk once.
    assert_eq!(graph_points(&e), e.segments().len());
    // One commit later the merged-away segments' files are gone (only the current and the
    // previous generation's files are kept).
    let mut e = e;
    e.remove_document("d0").unwrap();
    e.commit().unwrap();
    e.wait_for_cleanup();
    let graphs = std::fs::read_dir(idx.path().join("dense"))
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".graph"))
        .count();
    assert_eq!(graphs, 1, "stale graph files are removed");
    let stores = std::fs::read_dir(idx.path().join("chunks"))
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".bin"))
        .count();
    assert_eq!(stores, 1, "stale chunk stores are removed");
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
}

/// An index written before segments (one file of each kind per generation, no segment
/// list in its manifest) opens, answers, and takes commits.
#[test]
fn an_index_from_before_segments_keeps_working() {
    let idx = tempfile::tempdir().unwrap();
    let e = build(idx.path(), cfg(1_000_000), 1, 50);
    let q = "copper lantern";
    let want = hits(&e, q, Mode::Hybrid);
    let gen = e.manifest().generation;
    let seg = e.manifest().segments[0].clone();
    drop(e);
    // Rewrite the folder into the old layout: the same files under generation names.
    let d = idx.path();
    std::fs::rename(d.join(&seg.chunks), d.join(format!("chunks/{gen}.bin"))).unwrap();
    std::fs::rename(d.join(&seg.vectors), d.join(format!("dense/{gen}.vec"))).unwrap();
    std::fs::rename(
        d.join(seg.codes.as_ref().unwrap()),
        d.join(format!("late/{gen}.tok")),
    )
    .unwrap();
    // Text keys came with segments.
    std::fs::remove_file(d.join(seg.keys.as_ref().unwrap())).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap();
    let o = m.as_object_mut().unwrap();
    for k in ["segmented", "segments", "next_segment", "previous_files"] {
        o.remove(k);
    }
    let keys = seg.keys.clone().unwrap();
    o["files"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["path"].as_str() != Some(keys.as_str()));
    for f in o["files"].as_array_mut().unwrap() {
        let p = f["path"].as_str().unwrap().to_string();
        let renamed = p
            .replace(&seg.chunks, &format!("chunks/{gen}.bin"))
            .replace(&seg.vectors, &format!("dense/{gen}.vec"))
            .replace(seg.codes.as_ref().unwrap(), &format!("late/{gen}.tok"));
        f["path"] = serde_json::Value::String(renamed);
    }
    std::fs::write(d.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();

    let e = Engine::open_read_only(d, cfg(1_000_000)).unwrap();
    assert!(!e.manifest().segmented);
    assert_eq!(hits(&e, q, Mode::Hybrid), want);
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    drop(e);
    let mut e = Engine::open(d, cfg(1_000_000)).unwrap();
    e.add_document("d7", "t7", "an edited note about the tide and the moon")
        .unwrap();
    e.commit().unwrap();
    assert!(e.manifest().segmented);
    // The old files are now segment 0, kept in place; the edit is a new segment.
    assert_eq!(e.manifest().segments[0].chunks, format!("chunks/{gen}.bin"));
    assert_eq!(e.manifest().segments.len(), 2);
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    assert_eq!(hits(&e, "tide and the moon", Mode::Lexical)[0].0, "d7");
}

#[test]
fn a_sync_that_writes_most_of_the_index_closes_with_one_graph() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..600 {
        std::fs::write(src.path().join(format!("n{i:03}.txt")), text(i)).unwrap();
    }
    let idx = tempfile::tempdir().unwrap();
    let mut c = cfg(5);
    // About ten files a checkpoint: each folds into the last segment's graph until that
    // holds more than ten checkpoints' worth (`merge::FOLD_RATIO`), then a second graph
    // starts; the sync's close merges the two.
    c.ingest.checkpoint_bytes = 2_000;
    let mut e = Engine::create(idx.path(), c).unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert_eq!(r.added, 600);
    assert!(
        r.timings.iter().any(|(s, _)| s == "settle"),
        "the first build wrote the whole index: {:?} {:?}",
        r.timings,
        e.manifest().segments
    );
    let segs = &e.manifest().segments;
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert!(segs[0].graph_file.is_some());
    assert_eq!(graph_points(&e), e.segments().len());
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    // Later syncs that add a few files leave the merge policy's segments: two files (too
    // few for a graph), then ten (a graph of their own, which the two join).
    for (from, to) in [(600, 602), (602, 612)] {
        for i in from..to {
            std::fs::write(src.path().join(format!("n{i:03}.txt")), text(i)).unwrap();
        }
        let r = e.add_folder(src.path()).unwrap();
        assert_eq!(r.added, to - from);
        assert!(
            !r.timings.iter().any(|(s, _)| s == "settle"),
            "{:?}",
            r.timings
        );
    }
    let graphs = graph_flags(&e);
    assert_eq!(graphs, [true, true]);
    assert_eq!(e.manifest().segments[1].rows, 12);
    // Settling answers as the index did before it, and removes the segments it replaced
    // at once; a reader of the generation before keeps answering from it.
    let q = "copper lantern orbit";
    let before = hits(&e, q, Mode::Dense);
    let reader = Engine::open_read_only(idx.path(), cfg(5)).unwrap();
    let old = files(idx.path());
    assert!(e.settle().unwrap());
    assert_eq!(e.manifest().segments.len(), 1);
    assert_eq!(hits(&e, q, Mode::Dense), before);
    let now = files(idx.path());
    assert!(
        old.keys()
            .filter(|f| f.starts_with("dense/"))
            .all(|f| !now.contains_key(f)),
        "the replaced segments' files are gone: {:?}",
        now.keys().collect::<Vec<_>>()
    );
    assert_eq!(hits(&reader, q, Mode::Dense), before);
    assert!(!e.settle().unwrap(), "one graph: nothing to settle");
}

#[test]
fn a_checkpoint_folds_into_the_last_graph() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = build_sized(idx.path(), cfg(20), &[40]);
    let first = e.manifest().segments[0].clone();
    assert!(first.graph_file.is_some());
    // Thirty new documents, enough for a graph of their own: they join the first graph in
    // one new segment that replaces the first.
    add_range(&mut e, 40..70);
    e.commit().unwrap();
    let segs = e.manifest().segments.clone();
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert!(segs[0].id > first.id);
    assert_eq!(segs[0].rows, 70);
    assert_eq!(graph_points(&e), 70, "the graph holds every chunk once");
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    // The folded segment answers as an index built in one commit: every document is found
    // by its own text in each leg.
    for i in [0, 39, 40, 69] {
        for mode in [Mode::Dense, Mode::Lexical] {
            assert_eq!(hits(&e, &text(i), mode)[0].0, format!("d{i}"), "{mode:?}");
        }
    }
    // Too few new chunks for a graph: a segment of their own, the graph's files untouched.
    e.wait_for_cleanup();
    let before = files(idx.path());
    add_range(&mut e, 70..75);
    e.commit().unwrap();
    e.wait_for_cleanup();
    assert_eq!(e.manifest().segments.len(), 2);
    let after = files(idx.path());
    for f in segs[0].files() {
        assert!(before.contains_key(&f), "{f}");
        assert_eq!(before.get(&f), after.get(&f), "{f}");
    }
    // The next checkpoint big enough for a graph takes those five into its graph.
    add_range(&mut e, 75..100);
    e.commit().unwrap();
    let now: Vec<(u64, bool)> = e
        .manifest()
        .segments
        .iter()
        .map(|s| (s.rows, s.graph_file.is_some()))
        .collect();
    assert_eq!(now, [(70, true), (30, true)]);
    assert_eq!(graph_points(&e), 100);
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    // A commit that also deletes from the last graph segment does not fold into it (its
    // rows would be carried with this commit's deletions): the edit and the twenty new
    // documents form a segment of their own.
    let idx = tempfile::tempdir().unwrap();
    let mut e = build_sized(idx.path(), cfg(20), &[40]);
    e.add_document("d3", "t3", "an edited note about the tide")
        .unwrap();
    add_range(&mut e, 40..65);
    e.commit().unwrap();
    let segs = &e.manifest().segments;
    assert_eq!(segs.len(), 2, "{segs:?}");
    assert_eq!(segs[0].deleted, 1);
    assert!(segs.iter().all(|s| s.graph_file.is_some()));
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
}
