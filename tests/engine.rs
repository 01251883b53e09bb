//! Engine behaviour with the deterministic hashing embedder (no model needed): commit and
//! reopen, incremental sync, deletes, renames, read-only access, and bad index folders.

use pinpoint::{Engine, Error, Granularity, HashEmbedder, Mode, SearchRequest};

use crate::util::*;

fn paths(hits: &[pinpoint::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.path.clone()).collect()
}

#[test]
fn reopen_returns_identical_results() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    let r = e.add_folder(samples()).unwrap();
    assert!(r.added >= 20, "{r:?}");
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let queries = ["volcano magma", "sourdough starter", "waggle dance of bees"];
    let before: Vec<_> = queries
        .iter()
        .map(|q| e.search(&SearchRequest::new(*q, 5)).unwrap())
        .collect();
    drop(e);
    let e = Engine::open_read_only(idx.path(), fake_config()).unwrap();
    for (q, b) in queries.iter().zip(&before) {
        assert_eq!(&e.search(&SearchRequest::new(*q, 5)).unwrap(), b);
    }
    assert_eq!(before[2][0].path, "honeybees.txt");
}

#[test]
fn incremental_sync_adds_updates_renames_and_removes() {
    let src = tempfile::tempdir().unwrap();
    let idx = tempfile::tempdir().unwrap();
    copy_dir(&samples(), src.path());
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    let first = e.add_folder(src.path()).unwrap();
    let n = first.added;

    // Nothing changed: nothing embedded.
    let again = e.add_folder(src.path()).unwrap();
    assert_eq!(
        (
            again.added,
            again.updated,
            again.removed,
            again.chunks_embedded
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(again.unchanged, n);

    // Update one file, add one, delete one, rename one.
    std::fs::write(
        src.path().join("tides.txt"),
        "Tides now talk about zeppelins and airships only.",
    )
    .unwrap();
    std::fs::write(
        src.path().join("new.md"),
        "# Quokkas\nQuokkas are small marsupials from Rottnest Island.",
    )
    .unwrap();
    std::fs::remove_file(src.path().join("origami.txt")).unwrap();
    std::fs::rename(
        src.path().join("jazz_improvisation.md"),
        src.path().join("music.md"),
    )
    .unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert_eq!(
        (r.added, r.updated, r.removed, r.renamed),
        (1, 1, 1, 1),
        "{r:?}"
    );
    assert_eq!(r.documents_total, n);
    // Only the new and the updated file were embedded; the rename reused its vectors.
    let docs = e.documents().unwrap();
    let new_chunks: usize = docs
        .iter()
        .filter(|d| d.key == "new.md" || d.key == "tides.txt")
        .map(|d| d.chunks.len())
        .sum();
    assert_eq!(r.chunks_embedded, new_chunks);

    for mode in [Mode::Lexical, Mode::Dense, Mode::Hybrid] {
        let hits = e
            .search(&SearchRequest::new("paper crane origami folding", 50).mode(mode))
            .unwrap();
        assert!(
            !paths(&hits).contains(&"origami.txt".to_string()),
            "{mode}: deleted file returned"
        );
        let hits = e
            .search(&SearchRequest::new("Dorian Mixolydian swing", 50).mode(mode))
            .unwrap();
        assert!(
            !paths(&hits).contains(&"jazz_improvisation.md".to_string()),
            "{mode}: old name returned"
        );
        assert_eq!(hits[0].path, "music.md", "{mode}");
        let hits = e
            .search(&SearchRequest::new("zeppelins airships", 3).mode(mode))
            .unwrap();
        assert_eq!(hits[0].path, "tides.txt", "{mode}");
    }
    // Store, lexical and dense agree on the live chunk set.
    let mut store_ids: Vec<u64> = (0..e.segments().len())
        .map(|i| e.segments().id_at(i))
        .collect();
    store_ids.sort_unstable();
    assert_eq!(e.lexical().all_chunk_ids().unwrap(), store_ids);
    assert_eq!(e.segments().len(), store_ids.len());
}

/// Names that are not UTF-8 (Unix allows any bytes) keep distinct documents, and a name
/// whose key another file already gives is reported, not merged with it.
#[cfg(unix)]
#[test]
fn file_names_that_are_not_utf8_stay_distinct() {
    use std::os::unix::ffi::OsStrExt;
    let src = tempfile::tempdir().unwrap();
    let idx = tempfile::tempdir().unwrap();
    let name = |b: &[u8]| src.path().join(std::ffi::OsStr::from_bytes(b));
    std::fs::write(name(b"a\xff.txt"), "otters hold hands while sleeping").unwrap();
    std::fs::write(name(b"a\xfe.txt"), "beavers build dams of branches").unwrap();
    // A UTF-8 name spelling the first one's key literally.
    std::fs::write(name(b"a\\xFF.txt"), "a literal backslash name").unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert_eq!(r.added, 2, "{r:?}");
    assert_eq!(r.skipped.len(), 1, "{r:?}");
    assert_eq!(
        r.skipped[0].reason,
        pinpoint::ingest::SkipReason::SameKey {
            key: "a\\xFF.txt".into()
        }
    );
    let mut keys: Vec<String> = e
        .documents()
        .unwrap()
        .iter()
        .map(|d| d.key.clone())
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["a\\xFE.txt", "a\\xFF.txt"]);
    // Stable: a second sync changes nothing (a shared key made the two files swap).
    let again = e.add_folder(src.path()).unwrap();
    assert_eq!(
        (again.added, again.updated, again.unchanged),
        (0, 0, 2),
        "{again:?}"
    );
    let hits = e
        .search(&SearchRequest::new("beavers dams", 1).mode(Mode::Lexical))
        .unwrap();
    assert_eq!(hits[0].path, "a\\xFE.txt");
}

#[test]
fn programmatic_documents_survive_folder_sync_and_can_be_removed() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_document("ext-1", "Zebras", "Zebra stripes confuse biting flies.")
        .unwrap();
    e.commit().unwrap();
    e.add_folder(samples()).unwrap();
    let hits = e
        .search(&SearchRequest::new("zebra stripes", 1).mode(Mode::Lexical))
        .unwrap();
    assert_eq!(hits[0].path, "ext-1");
    e.remove_document("ext-1").unwrap();
    e.commit().unwrap();
    let hits = e
        .search(&SearchRequest::new("zebra stripes", 5).mode(Mode::Lexical))
        .unwrap();
    assert!(hits.iter().all(|h| h.path != "ext-1"));
}

#[test]
fn document_granularity_max_pools_chunks() {
    let idx = tempfile::tempdir().unwrap();
    let mut cfg = fake_config();
    cfg.chunking.max_tokens = 24;
    cfg.chunking.overlap = 4;
    let mut e = Engine::create(idx.path(), cfg).unwrap();
    e.add_folder(samples()).unwrap();
    let req = SearchRequest::new("magma chamber gases", 10).granularity(Granularity::Document);
    let out = e.search_detailed(&req).unwrap();
    let p = paths(&out.hits);
    let mut dedup = p.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(p.len(), dedup.len(), "one hit per document");
    assert_eq!(p[0], "volcanoes.md");
    assert!(e.segments().len() > 60, "small chunks expected");
    // Every chunk belongs to exactly one document, the one its record names.
    let mut seen = vec![false; e.segments().len()];
    for (key, positions) in e.document_positions().unwrap() {
        assert!(!positions.is_empty(), "{key}");
        for &pos in positions {
            assert_eq!(e.segments().get(pos as usize).unwrap().doc, key);
            assert!(!std::mem::replace(&mut seen[pos as usize], true));
        }
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn read_only_open_works_while_a_writer_holds_the_lock() {
    let idx = tempfile::tempdir().unwrap();
    let mut w = Engine::create(idx.path(), fake_config()).unwrap();
    w.add_folder(samples()).unwrap();
    let r = Engine::open_read_only(idx.path(), fake_config()).unwrap();
    assert!(!r
        .search(&SearchRequest::new("chess opening", 3))
        .unwrap()
        .is_empty());
    // A second writer is refused while the first is alive.
    match Engine::open(idx.path(), fake_config()) {
        Err(Error::Locked { .. }) => {}
        other => panic!("expected Locked, got {:?}", other.err()),
    }
    drop(w);
    assert!(Engine::open(idx.path(), fake_config()).is_ok());
}

#[test]
fn bad_folders_and_model_mismatch_are_clear_errors() {
    // Not an index.
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("notes.txt"), "hello").unwrap();
    let e = Engine::open(foreign.path(), fake_config()).err().unwrap();
    assert!(matches!(e, Error::IncompatibleIndex { .. }), "{e}");
    let e = Engine::create(foreign.path(), fake_config()).err().unwrap();
    assert!(matches!(e, Error::IncompatibleIndex { .. }), "{e}");

    // Another model.
    let idx = tempfile::tempdir().unwrap();
    let mut w = Engine::create(idx.path(), fake_config()).unwrap();
    w.add_folder(samples()).unwrap();
    drop(w);
    let mut other = fake_config();
    other.embedder = Some(std::sync::Arc::new(HashEmbedder::new(32)));
    let e = Engine::open(idx.path(), other).err().unwrap();
    assert!(
        matches!(
            e,
            Error::ModelMismatch {
                found_dim: 128,
                expected_dim: 32,
                ..
            }
        ),
        "{e}"
    );

    // A truncated chunk store names the file.
    let m = pinpoint::store::Manifest::read(&idx.path().join("manifest.json")).unwrap();
    let chunks = idx.path().join(&m.segments[0].chunks);
    let bytes = std::fs::read(&chunks).unwrap();
    std::fs::write(&chunks, &bytes[..bytes.len() / 2]).unwrap();
    let e = Engine::open_read_only(idx.path(), fake_config())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&m.segments[0].chunks) && e.contains("rebuild"),
        "{e}"
    );
}

#[test]
fn bad_queries_and_empty_index() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    // Empty index: no hits, no error, and a note that says why.
    let out = e
        .search_detailed(&SearchRequest::new("anything", 5))
        .unwrap();
    assert!(out.hits.is_empty());
    assert_eq!(out.note.as_deref(), Some(pinpoint::api::EMPTY_INDEX_NOTE));
    e.add_folder(samples()).unwrap();
    let out = e
        .search_detailed(&SearchRequest::new("tides moon", 5))
        .unwrap();
    assert!(!out.hits.is_empty() && out.note.is_none());
    assert!(matches!(
        e.search(&SearchRequest::new("   ", 5)),
        Err(Error::Invalid { .. })
    ));
    for q in ["the of and", "?!.,;:", &"word ".repeat(6_000)] {
        for mode in [Mode::Lexical, Mode::Dense, Mode::Hybrid] {
            assert!(
                e.search(&SearchRequest::new(q, 5).mode(mode)).is_ok(),
                "{mode} {}",
                q.len()
            );
        }
    }
    // Past the documented maximum: an error naming it, in every mode.
    let huge = "word ".repeat(20_000);
    for mode in [Mode::Lexical, Mode::Dense, Mode::Hybrid] {
        let err = e
            .search(&SearchRequest::new(&huge, 5).mode(mode))
            .unwrap_err();
        assert!(err.to_string().contains("at most 32768"), "{err}");
    }
}

/// `SearchRequest::exclude` (BEIR's rule that a query's own document does not count) takes
/// a document out of the ranking and the hits, and leaves the others' order as it was.
#[test]
fn excluded_documents_leave_the_ranking_and_the_hits() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(samples()).unwrap();
    let query = "why does the sea level go up and down each day";
    for g in [Granularity::Chunk, Granularity::Document] {
        let base = SearchRequest::new(query, 5).granularity(g);
        let all = e.search_detailed(&base).unwrap();
        assert_eq!(all.hits[0].path, "tides.txt", "{g:?}");
        let without = e
            .search_detailed(&base.clone().exclude(["tides.txt"]))
            .unwrap();
        assert!(!without.hits.is_empty(), "{g:?}");
        assert!(
            without.hits.iter().all(|h| h.path != "tides.txt"),
            "{g:?}: {:?}",
            paths(&without.hits)
        );
        if g == Granularity::Document {
            let rest: Vec<&String> = all
                .ranked
                .iter()
                .map(|r| &r.0)
                .filter(|d| *d != "tides.txt")
                .collect();
            let got: Vec<&String> = without.ranked.iter().map(|r| &r.0).collect();
            assert_eq!(got, rest);
        }
    }
}

/// Stops a sync by panicking when the `n`th commit starts writing, as an interruption
/// would (the process dies between two checkpoints).
struct StopAtCommit {
    n: usize,
    seen: std::sync::atomic::AtomicUsize,
}

impl pinpoint::Progress for StopAtCommit {
    fn start(&self, stage: &str, _total: u64) {
        if stage == "write" {
            let i = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if i == self.n {
                panic!("interrupted at commit {i}");
            }
        }
    }
}

/// A large sync commits in checkpoints: the result is the same as one commit, and a run
/// interrupted between checkpoints keeps what it committed, so the next run embeds only
/// the rest.
#[test]
fn a_large_sync_commits_in_checkpoints_and_resumes_after_an_interruption() {
    let src = tempfile::tempdir().unwrap();
    copy_dir(&samples(), src.path());
    let whole_dir = tempfile::tempdir().unwrap();
    let mut whole = Engine::create(whole_dir.path(), fake_config()).unwrap();
    let one = whole.add_folder(src.path()).unwrap();
    let one_gen = whole.manifest().generation;

    let mut cfg = fake_config();
    cfg.ingest.checkpoint_bytes = 2048; // the samples are ~0.7 KB: a few per checkpoint
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), cfg.clone()).unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert!(
        e.manifest().generation >= one_gen + 3,
        "{} commits",
        e.manifest().generation
    );
    assert_eq!(
        (
            r.added,
            r.chunks_embedded,
            r.chunks_total,
            r.documents_total
        ),
        (
            one.added,
            one.chunks_embedded,
            one.chunks_total,
            one.documents_total
        )
    );
    for q in [
        "why does the sea level go up and down",
        "paper crane origami",
    ] {
        let a = whole.search(&SearchRequest::new(q, 5)).unwrap();
        let b = e.search(&SearchRequest::new(q, 5)).unwrap();
        assert_eq!(paths(&a), paths(&b), "{q}");
    }
    drop(e);

    // Interrupted while writing its third commit: two checkpoints are kept.
    let idx = tempfile::tempdir().unwrap();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut e = Engine::create(idx.path(), cfg.clone()).unwrap();
        e.set_progress(std::sync::Arc::new(StopAtCommit {
            n: 3,
            seen: Default::default(),
        }));
        e.add_folder(src.path())
    }));
    assert!(run.is_err(), "the sync was not interrupted");
    let mut e = Engine::open_or_create(idx.path(), cfg).unwrap();
    let kept = e.documents().unwrap().len();
    assert!(kept > 0 && kept < one.added, "{kept} documents kept");
    assert!(e.verify().unwrap().is_empty());
    let rest = e.add_folder(src.path()).unwrap();
    assert_eq!((rest.added, rest.unchanged), (one.added - kept, kept));
    assert!(rest.chunks_embedded < one.chunks_embedded);
    assert_eq!(rest.documents_total, one.documents_total);

    // A rename among many new files still reuses its vectors: the file whose size matches
    // a vanished document's goes into the checkpoint that removes the old name.
    std::fs::rename(
        src.path().join("origami.txt"),
        src.path().join("zz_paper.txt"),
    )
    .unwrap();
    for i in 0..10 {
        let text = format!("New note {i} about lighthouses and fog horns. ").repeat(20);
        std::fs::write(src.path().join(format!("new{i}.txt")), text).unwrap();
    }
    let r = e.add_folder(src.path()).unwrap();
    assert_eq!((r.renamed, r.added, r.removed), (1, 10, 0), "{r:?}");
}

/// Readers opening the index while a writer commits again and again always see a whole
/// generation: never an error, never a mix (what `serve` and a `query` beside `watch` do).
#[test]
fn readers_open_cleanly_while_a_writer_commits() {
    let idx = tempfile::tempdir().unwrap();
    let mut w = Engine::create(idx.path(), fake_config()).unwrap();
    w.add_document("seed", "Seed", "the first document")
        .unwrap();
    w.commit().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let dir = idx.path().to_path_buf();
    let (opened, commits) = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let e = Engine::open_read_only(&dir, fake_config())
                            .unwrap_or_else(|e| panic!("open during a commit: {e}"));
                        // A whole generation: its counts agree with its stores.
                        assert_eq!(e.manifest().counts.chunks as usize, e.segments().len());
                        let req = SearchRequest {
                            mode: Mode::Lexical,
                            ..SearchRequest::new("document", 3)
                        };
                        assert!(!e.search(&req).unwrap().is_empty());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for i in 0..40 {
            w.add_document(&format!("d{i}"), "Doc", &format!("document number {i}"))
                .unwrap();
            w.commit().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let opened: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
        (opened, 40)
    });
    assert!(opened > commits, "readers opened {opened} times");
}

/// The candidate depth `pinpoint tune` stores is what a question runs with, and the legs
/// take that many candidates; an index without stored defaults uses 100.
#[test]
fn a_stored_candidate_depth_is_what_questions_run_with() {
    use pinpoint::api::QueryOptions;
    use pinpoint::Pipeline;
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(crate::util::samples()).unwrap();
    let opts = QueryOptions::default();
    assert_eq!(opts.request(&e, "tides").unwrap().depth, 100);
    let p = Pipeline {
        depth: 3,
        ..e.default_pipeline()
    };
    e.set_default_pipeline(&p).unwrap();
    let req = opts.request(&e, "tides and the moon").unwrap();
    assert_eq!(req.depth, 3);
    let o = e
        .search_detailed(&SearchRequest {
            k: 1,
            granularity: Granularity::Document,
            ..req
        })
        .unwrap();
    assert_eq!(o.dense.len(), 3, "{:?}", o.dense);
    assert!(o.lexical.len() <= 3, "{:?}", o.lexical);
    // A question's own depth (`query --depth`, `"depth"` in a served request) wins; 0 is
    // refused by name.
    let own: QueryOptions = serde_json::from_str(r#"{"depth": 7}"#).unwrap();
    assert_eq!(own.request(&e, "tides").unwrap().depth, 7);
    let zero: QueryOptions = serde_json::from_str(r#"{"depth": 0}"#).unwrap();
    let err = zero.request(&e, "tides").unwrap_err().to_string();
    assert!(err.contains("depth"), "{err}");
}

#[test]
fn each_distinct_chunk_is_embedded_once() {
    let src = tempfile::tempdir().unwrap();
    copy_dir(&samples(), src.path());
    // The same text twice in one sync: embedded once.
    std::fs::copy(
        src.path().join("tides.txt"),
        src.path().join("copy-of-tides.txt"),
    )
    .unwrap();
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert!(
        r.chunks_reused == 0,
        "titles differ, so the texts the model reads differ: {r:?}"
    );
    // Same file name in another folder: same title, same text.
    std::fs::create_dir_all(src.path().join("mirror")).unwrap();
    std::fs::copy(
        src.path().join("tides.txt"),
        src.path().join("mirror/tides.txt"),
    )
    .unwrap();
    std::fs::copy(
        src.path().join("origami.txt"),
        src.path().join("mirror/origami.txt"),
    )
    .unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert_eq!(r.added, 2, "{r:?}");
    assert_eq!(r.chunks_embedded, 0, "{r:?}");
    let copied: usize = e
        .documents()
        .unwrap()
        .iter()
        .filter(|d| d.key.starts_with("mirror/"))
        .map(|d| d.chunks.len())
        .sum();
    assert_eq!(r.chunks_reused, copied, "{r:?}");
    // The copies rank like their originals (selection would hand over one of the two: it
    // drops copies), and the index is sound.
    let ranked = |e: &Engine, q: &str| {
        let mut req = SearchRequest::new(q, 10).mode(Mode::Dense);
        req.pipeline.select = None;
        e.search(&req).unwrap()
    };
    let hits = ranked(&e, "tides moon");
    let p = paths(&hits);
    assert!(
        p.contains(&"tides.txt".to_string()) && p.contains(&"mirror/tides.txt".to_string()),
        "{p:?}"
    );
    assert!(e.verify().unwrap().is_empty());
    // Two new files with the same name and text in one sync: one embedding for both.
    std::fs::create_dir_all(src.path().join("x")).unwrap();
    std::fs::create_dir_all(src.path().join("y")).unwrap();
    std::fs::write(
        src.path().join("x/note.md"),
        "# Kelp\nKelp forests grow in cold water.",
    )
    .unwrap();
    std::fs::write(
        src.path().join("y/note.md"),
        "# Kelp\nKelp forests grow in cold water.",
    )
    .unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert_eq!(r.added, 2, "{r:?}");
    assert!(
        r.chunks_embedded >= 1 && r.chunks_reused == r.chunks_embedded,
        "{r:?}"
    );
    let a = paths(&ranked(&e, "kelp forests"));
    assert!(
        a.contains(&"x/note.md".to_string()) && a.contains(&"y/note.md".to_string()),
        "{a:?}"
    );
    assert!(e.verify().unwrap().is_empty());
}

/// Records every whole-run status.
#[derive(Default)]
struct RunLog(std::sync::Mutex<Vec<pinpoint::RunStatus>>);

impl pinpoint::Progress for RunLog {
    fn run(&self, s: &pinpoint::RunStatus) {
        self.0.lock().unwrap().push(s.clone());
    }
}

/// A checkpointed sync reports progress over the whole run, not per checkpoint: chunks
/// embedded only grow, the estimated total is exact by the last checkpoint (every file is
/// read), and the time left ends at zero.
#[test]
fn progress_covers_the_whole_run_across_checkpoints() {
    let src = tempfile::tempdir().unwrap();
    copy_dir(&samples(), src.path());
    let mut cfg = fake_config();
    cfg.ingest.checkpoint_bytes = 2048;
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), cfg).unwrap();
    let log = std::sync::Arc::new(RunLog::default());
    e.set_progress(log.clone());
    let r = e.add_folder(src.path()).unwrap();
    let seen = log.0.lock().unwrap().clone();
    let checkpoints = seen.iter().map(|s| s.checkpoint).max().unwrap();
    assert!(checkpoints >= 3, "{checkpoints} checkpoints");
    assert!(seen.windows(2).all(
        |w| w[1].chunks_embedded >= w[0].chunks_embedded && w[1].bytes_read >= w[0].bytes_read
    ));
    let last = seen.last().unwrap();
    assert_eq!(last.chunks_embedded, r.chunks_embedded as u64);
    assert_eq!(last.chunks_estimated, r.chunks_embedded as u64);
    assert_eq!(last.bytes_read, last.bytes_total);
    assert_eq!(last.eta_s, Some(0.0));
    // Before the last checkpoint the total is an estimate, never below what is known.
    assert!(seen.iter().all(|s| s.chunks_estimated >= s.chunks_embedded));
    let first = &seen[0];
    assert!(first.bytes_read < first.bytes_total, "{first:?}");
    // A sync outside `add_folder` (a program's own documents) sends no run status.
    log.0.lock().unwrap().clear();
    e.add_document("note-1", "Note", "a few words about tea")
        .unwrap();
    e.commit().unwrap();
    assert!(log.0.lock().unwrap().is_empty());
}
