//! Named collections in one index: each synced on its own, keys that cannot collide, stats
//! per collection, and an index from before collections that keeps working.

use pinpoint::{Engine, SearchRequest};

use crate::util::*;

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

fn keys(e: &Engine) -> Vec<String> {
    let mut k: Vec<String> = e
        .documents()
        .unwrap()
        .iter()
        .map(|d| d.key.clone())
        .collect();
    k.sort();
    k
}

#[test]
fn each_collection_syncs_on_its_own() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    write(&a, "readme.md", "# Alpha\nThe alpha project sorts tiles.\n");
    write(&a, "notes.md", "# Notes\nTiles are sorted by colour.\n");
    write(&b, "readme.md", "# Beta\nThe beta project paints fences.\n");
    let idx = work.path().join("idx");
    let mut e = Engine::create(&idx, fake_config()).unwrap();
    e.add_collection("alpha", &a, "the alpha repo").unwrap();
    e.add_collection("beta", &b, "").unwrap();
    // The same file name in two collections: two documents.
    assert_eq!(
        keys(&e),
        ["alpha/notes.md", "alpha/readme.md", "beta/readme.md"]
    );

    // A file gone from one collection leaves only that collection.
    std::fs::remove_file(a.join("notes.md")).unwrap();
    let r = e.add_collection("alpha", &a, "").unwrap();
    assert_eq!(r.removed, 1);
    assert_eq!(keys(&e), ["alpha/readme.md", "beta/readme.md"]);
    // Syncing beta from an empty folder empties beta and nothing else.
    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    e.add_collection("beta", &empty, "").unwrap();
    assert_eq!(keys(&e), ["alpha/readme.md"]);
    e.add_collection("beta", &b, "").unwrap();

    let stats = e.collections().unwrap();
    let by: Vec<(&str, u64, &str)> = stats
        .iter()
        .map(|c| (c.name.as_str(), c.documents, c.description.as_str()))
        .collect();
    // The description given first is kept when a later sync gives none.
    assert_eq!(by, [("alpha", 1, "the alpha repo"), ("beta", 1, "")]);

    // Collections survive reopening, and a search restricted to one stays in it.
    drop(e);
    let e = Engine::open(&idx, fake_config()).unwrap();
    let opts = pinpoint::api::QueryOptions {
        collections: vec!["beta".into()],
        no_cutoff: true,
        ..Default::default()
    };
    let hits = e.search(&opts.request(&e, "project").unwrap()).unwrap();
    assert!(!hits.is_empty() && hits.iter().all(|h| h.path.starts_with("beta/")));
    let err = pinpoint::api::QueryOptions {
        collections: vec!["gamma".into()],
        ..Default::default()
    }
    .request(&e, "project")
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gamma") && err.contains("alpha, beta"),
        "{err}"
    );
    // Names that would break keys are refused.
    let mut e = e;
    assert!(e.add_collection("a/b", &a, "").is_err());
    // Removing a collection takes its documents with it.
    assert_eq!(e.remove_collection("beta").unwrap(), 1);
    e.commit().unwrap();
    assert_eq!(keys(&e), ["alpha/readme.md"]);
    assert_eq!(e.collections().unwrap().len(), 1);
}

/// The unnamed collection (`pinpoint index FOLDER`) and a named one cannot claim the same
/// keys, either way round.
#[test]
fn unnamed_and_named_collections_cannot_collide() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    write(&root.join("docs"), "a.md", "# A\nalpha\n");
    write(&root, "top.md", "# Top\ntop level\n");
    let other = work.path().join("other");
    write(&other, "b.md", "# B\nbeta\n");
    let mut e = Engine::create(work.path().join("idx"), fake_config()).unwrap();
    e.add_folder(&root).unwrap();
    let err = e
        .add_collection("docs", &other, "")
        .unwrap_err()
        .to_string();
    assert!(err.contains("docs/"), "{err}");
    e.add_collection("notes", &other, "").unwrap();
    write(&root.join("notes"), "c.md", "# C\ngamma\n");
    let err = e.add_folder(&root).unwrap_err().to_string();
    assert!(
        err.contains("notes/c.md") && err.contains("\"notes\""),
        "{err}"
    );
    assert_eq!(keys(&e), ["docs/a.md", "notes/b.md", "top.md"]);
}

/// An index written before collections (no metadata table, no collections in its
/// manifest) opens, answers and lists one unnamed collection; its next sync writes the
/// table, with the front matter of the files it reads.
#[test]
fn an_index_from_before_collections_keeps_working() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    copy_dir(&samples(), &src);
    let idx = work.path().join("idx");
    let mut e = Engine::create(&idx, fake_config()).unwrap();
    e.add_folder(&src).unwrap();
    let before = e
        .search(&SearchRequest::new("tides and the moon", 3))
        .unwrap();
    let gen = e.manifest().generation;
    drop(e);
    // Make it what an older pinpoint wrote.
    let mpath = idx.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    let o = m.as_object_mut().unwrap();
    o.remove("collections");
    o.remove("doc_meta");
    o.remove("precision");
    let files = o["files"].as_array_mut().unwrap();
    files.retain(|f| !f["path"].as_str().unwrap().starts_with("meta/"));
    std::fs::write(&mpath, m.to_string()).unwrap();
    std::fs::remove_dir_all(idx.join("meta")).unwrap();

    let e = Engine::open_read_only(&idx, fake_config()).unwrap();
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify().unwrap());
    let after = e
        .search(&SearchRequest::new("tides and the moon", 3))
        .unwrap();
    assert_eq!(
        before.iter().map(|h| &h.path).collect::<Vec<_>>(),
        after.iter().map(|h| &h.path).collect::<Vec<_>>()
    );
    let c = e.collections().unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].name.as_str(), c[0].documents),
        ("", e.manifest().counts.documents)
    );
    drop(e);

    let mut e = Engine::open(&idx, fake_config()).unwrap();
    write(
        &src,
        "new.md",
        "---\ntags: [fresh]\n---\n# New\nA new note about kelp forests.\n",
    );
    e.add_folder(&src).unwrap();
    assert!(e.manifest().generation > gen && e.manifest().doc_meta);
    let f = pinpoint::filter::parse::parse_where("tag:fresh").unwrap();
    let hits = e.search(&SearchRequest::new("kelp", 5).filter(f)).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.path.as_str()).collect::<Vec<_>>(),
        ["new.md"]
    );
    assert!(e.verify().unwrap().is_empty());
}

/// The CLI: `index --collection`, `stats` per collection, `query --collection/--where`,
/// `forget`.
#[test]
fn cli_collections_walk_through() {
    let work = tempfile::tempdir().unwrap();
    write(
        &work.path().join("notes"),
        "kelp.md",
        "---\ntags: [sea]\n---\n# Kelp\nKelp forests grow in cold coastal water.\n",
    );
    write(
        &work.path().join("papers"),
        "kelp.txt",
        "Kelp growth rates in cold water.\n",
    );
    let model = real_model();
    for c in ["notes", "papers"] {
        let o = pinpoint(
            work.path(),
            &[
                "index",
                c,
                "--index",
                "idx",
                "--model",
                model.to_str().unwrap(),
                "--collection",
                c,
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = pinpoint(work.path(), &["stats", "--index", "idx"]);
    let s = stdout(&o);
    assert!(
        s.contains("collection  notes: 1 documents")
            && s.contains("collection  papers: 1 documents"),
        "{s}"
    );
    let hits = |args: &[&str]| -> Vec<String> {
        let mut all = vec![
            "query",
            "kelp in cold water",
            "--index",
            "idx",
            "--json",
            "--no-cutoff",
        ];
        all.extend_from_slice(args);
        let o = pinpoint(work.path(), &all);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(hits(&["--collection", "papers"]), ["papers/kelp.txt"]);
    assert_eq!(hits(&["--where", "tag:sea"]), ["notes/kelp.md"]);
    assert_eq!(hits(&["--where", "ext:txt OR collection:notes"]).len(), 2);
    user_error(
        work.path(),
        &["query", "kelp", "--index", "idx", "--where", "tag:"],
        "expected a value",
    );
    let o = pinpoint(work.path(), &["forget", "papers", "--index", "idx"]);
    assert!(stdout(&o).contains("(1 documents)"), "{}", stderr(&o));
    assert_eq!(hits(&[]), ["notes/kelp.md"]);
    user_error(
        work.path(),
        &["forget", "papers", "--index", "idx"],
        "not a collection",
    );
}

/// `index --rebuild` of an index with named collections builds each again from its folder,
/// and refuses (keeping the old index) when one cannot be rebuilt.
#[test]
fn a_rebuild_keeps_every_collection_or_refuses() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    write(&a, "one.md", "# One\nthe first note\n");
    write(&b, "two.md", "# Two\nthe second note\n");
    let idx = work.path().join("idx");
    let mut e = Engine::create(&idx, fake_config()).unwrap();
    e.add_collection("alpha", &a, "first").unwrap();
    e.add_collection("beta", &b, "").unwrap();
    drop(e);
    let no = std::sync::Arc::new(pinpoint::NoProgress);
    // Named collections only: the folder named must be one of theirs.
    let err = Engine::rebuild(&idx, fake_config(), work.path(), no.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("named collections only") && err.contains("alpha"),
        "{err}"
    );
    let (e, _) = Engine::rebuild(&idx, fake_config(), &a, no.clone()).unwrap();
    assert_eq!(keys(&e), ["alpha/one.md", "beta/two.md"]);
    assert_eq!(e.collections().unwrap()[0].description, "first");
    drop(e);
    // A collection fed by a program cannot be read again from a folder: refused.
    let mut e = Engine::open(&idx, fake_config()).unwrap();
    e.add_document_in("records", "r1", "R", "a record").unwrap();
    e.commit().unwrap();
    drop(e);
    let err = Engine::rebuild(&idx, fake_config(), &a, no)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("\"records\"") && err.contains("forget"),
        "{err}"
    );
    let e = Engine::open_read_only(&idx, fake_config()).unwrap();
    assert_eq!(keys(&e), ["alpha/one.md", "beta/two.md", "records/r1"]);
}
