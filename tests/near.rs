//! Document expansion ([`pinpoint::near`]): each chunk's lexical entry holds its dense
//! neighbours' words, kept right as documents come and go.

use pinpoint::lexical::LexicalIndex;
use pinpoint::near::NeighbourTable;
use pinpoint::{Engine, EngineConfig};

use crate::util::fake_config;

/// Documents whose chunks hold `word` by their own text, and those that reach it only
/// through the neighbour field (with the weight at 0.1).
fn reached(e: &Engine, word: &str) -> (Vec<String>, Vec<String>) {
    let q = LexicalIndex::weighted_terms(word);
    let docs = |w: f32| -> Vec<String> {
        let mut d: Vec<String> = e
            .lexical()
            .search_expanded(&q, 50, w)
            .unwrap()
            .into_iter()
            .map(|(id, _)| e.segments().get_id(id).unwrap().unwrap().doc)
            .collect();
        d.sort();
        d
    };
    let own = docs(0.0);
    let near = docs(0.1).into_iter().filter(|d| !own.contains(d)).collect();
    (own, near)
}

/// The hashing embedder with three neighbours per chunk (more to check than the default's).
fn three_neighbours() -> EngineConfig {
    EngineConfig {
        neighbours: Some(3),
        ..fake_config()
    }
}

const TIDES: &str = "Tides rise and fall as the moon pulls the ocean water along the coast";
/// Shares no word with [`TIDES`], so that the hashing embedder puts the two kinds far
/// apart, as the real model puts texts on unrelated topics.
const BREAD: &str =
    "Sourdough loaves prove slowly while wild yeast ferments flour in warm kitchens";

#[test]
fn neighbours_lend_their_words_and_take_them_back_when_they_go() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), three_neighbours()).unwrap();
    assert_eq!(e.manifest().neighbours, 3);
    e.add_document("tides-1", "", TIDES).unwrap();
    e.add_document("tides-2", "", &format!("{TIDES} at perigee"))
        .unwrap();
    e.add_document("bread-1", "", BREAD).unwrap();
    e.add_document("bread-2", "", &format!("{BREAD} with levain"))
        .unwrap();
    e.commit().unwrap();
    assert!(e.verify().unwrap().is_empty());
    // The other tide document reaches "perigee" through its field. The bread documents
    // do not: a tide text is too far from them to be a neighbour (under
    // `near::MIN_COSINE`), though their lists (k = 3) have room.
    let (own, near) = reached(&e, "perigee");
    assert_eq!(own, ["tides-2"]);
    assert_eq!(near, ["tides-1"]);

    // The document that held the word goes: nobody reaches it any more.
    e.remove_document("tides-2").unwrap();
    e.commit().unwrap();
    assert_eq!(reached(&e, "perigee"), (vec![], vec![]));
    assert!(e.verify().unwrap().is_empty());

    // A new document lends its words to the kept ones of its kind, whose lists had room.
    e.add_document("tides-3", "", &format!("{TIDES} during a syzygy"))
        .unwrap();
    e.commit().unwrap();
    let (own, near) = reached(&e, "syzygy");
    assert_eq!(own, ["tides-3"]);
    assert_eq!(near, ["tides-1"]);
    assert!(e.verify().unwrap().is_empty());

    // The table and the field survive a reopen; compaction keeps them.
    drop(e);
    let mut e = Engine::open(idx.path(), three_neighbours()).unwrap();
    assert_eq!(reached(&e, "syzygy").1, ["tides-1"]);
    e.compact().unwrap();
    assert_eq!(reached(&e, "syzygy").1, ["tides-1"]);
    assert_eq!(reached(&e, "levain").1, ["bread-1"]);
    assert!(e.verify().unwrap().is_empty());
}

#[test]
fn a_document_takes_neighbours_from_other_documents_of_its_kind() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), three_neighbours()).unwrap();
    // Five tide documents and five bread documents: each one's three neighbours are of
    // its own kind (the hashing embedder scores shared words), never itself.
    let notes = ["alpha", "bravo", "charlie", "delta", "echo"];
    for n in notes {
        e.add_document(&format!("tides-{n}"), "", &format!("{TIDES} {n}"))
            .unwrap();
        e.add_document(&format!("bread-{n}"), "", &format!("{BREAD} {n}"))
            .unwrap();
    }
    e.commit().unwrap();
    let gen = e.manifest().generation;
    let t = NeighbourTable::read(&idx.path().join(format!("near/{gen}.bin"))).unwrap();
    let doc = |id: u64| e.segments().get_id(id).unwrap().unwrap().doc;
    assert_eq!(t.lists.len(), 10);
    for (&id, list) in t.ids.iter().zip(&t.lists) {
        let me = doc(id);
        assert_eq!(list.len(), 3, "{me}: {list:?}");
        let kind = &me[..5];
        for &(nb, s) in list {
            let other = doc(nb);
            assert!(other != me && other.starts_with(kind), "{me} has {other}");
            assert!(s > 0.5, "{me} has {other} at {s}");
        }
        assert!(list.windows(2).all(|w| w[0].1 >= w[1].1), "{list:?}");
    }
    // The words of a neighbour reach a document: bread-alpha's three neighbours lend it
    // theirs, so a query word of one of them finds it.
    let alpha = t
        .ids
        .iter()
        .position(|&id| doc(id) == "bread-alpha")
        .unwrap();
    let lent = doc(t.lists[alpha][0].0);
    let word = lent.trim_start_matches("bread-");
    let (own, near) = reached(&e, word);
    assert_eq!(own, [lent.clone(), format!("tides-{word}")]);
    assert!(near.contains(&"bread-alpha".to_string()), "{near:?}");
}

#[test]
fn an_index_without_expansion_has_plain_bm25() {
    let idx = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        neighbours: Some(0),
        ..fake_config()
    };
    let mut e = Engine::create(idx.path(), cfg).unwrap();
    e.add_document("tides-1", "", TIDES).unwrap();
    e.add_document("tides-2", "", &format!("{TIDES} at perigee"))
        .unwrap();
    e.commit().unwrap();
    assert_eq!(e.manifest().neighbours, 0);
    assert!(!idx.path().join("near").exists());
    assert_eq!(
        reached(&e, "perigee"),
        (vec!["tides-2".to_string()], vec![])
    );
    assert!(e.verify().unwrap().is_empty());
}

/// The table of generation `gen` with each chunk named by its document and byte range, so
/// that two indexes of the same content compare whatever ids they gave their chunks.
fn named_table(e: &Engine, dir: &std::path::Path) -> Vec<(String, Vec<String>)> {
    let _ = dir;
    let t: NeighbourTable = e.neighbour_table().unwrap().unwrap().clone();
    let name = |id: u64| {
        let c = e.segments().get_id(id).unwrap().unwrap();
        format!("{}@{}", c.doc, c.byte_range.0)
    };
    let mut out: Vec<(String, Vec<String>)> = t
        .ids
        .iter()
        .zip(&t.lists)
        .map(|(&id, l)| (name(id), l.iter().map(|x| name(x.0)).collect()))
        .collect();
    out.sort();
    out
}

#[test]
fn the_graph_search_builds_and_keeps_the_same_table_as_the_exact_scan() {
    let src = tempfile::tempdir().unwrap();
    crate::util::copy_dir(&crate::util::samples(), src.path());
    let (exact_dir, graph_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut graph_cfg = fake_config();
    graph_cfg.hnsw.min_points = 2;
    let mut exact = Engine::create(exact_dir.path(), fake_config()).unwrap();
    let mut graph = Engine::create(graph_dir.path(), graph_cfg).unwrap();
    exact.add_folder(src.path()).unwrap();
    graph.add_folder(src.path()).unwrap();
    assert!(graph.segments().has_graph() && !exact.segments().has_graph());
    let a = named_table(&exact, exact_dir.path());
    assert!(a.len() > 20, "{} chunks", a.len());
    let listed = a.iter().filter(|x| !x.1.is_empty()).count();
    // The hashing embedder's cosines over shared words mostly clear the floor, so the
    // comparison below is of real lists.
    assert!(
        listed * 2 > a.len(),
        "{listed} of {} chunks have neighbours",
        a.len()
    );
    assert_eq!(a, named_table(&graph, graph_dir.path()));
    // A sync that removes one file and changes another keeps them equal.
    let files: Vec<_> = std::fs::read_dir(src.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md" || x == "txt"))
        .collect();
    std::fs::remove_file(&files[0]).unwrap();
    let text = std::fs::read_to_string(&files[1]).unwrap();
    std::fs::write(
        &files[1],
        format!("{text}\n\nA new closing paragraph about tides.\n"),
    )
    .unwrap();
    exact.add_folder(src.path()).unwrap();
    graph.add_folder(src.path()).unwrap();
    let b = named_table(&exact, exact_dir.path());
    assert_ne!(a, b);
    assert_eq!(b, named_table(&graph, graph_dir.path()));
    // And both equal a table built from scratch over the changed folder: on a folder this
    // small every chunk that a new one comes closer to is among its 12 nearest.
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut fresh = Engine::create(fresh_dir.path(), fake_config()).unwrap();
    fresh.add_folder(src.path()).unwrap();
    assert_eq!(b, named_table(&fresh, fresh_dir.path()));
    assert!(exact.verify().unwrap().is_empty());
    assert!(graph.verify().unwrap().is_empty());
}

#[test]
fn the_expansion_weight_is_an_option_of_the_question() {
    use pinpoint::api::QueryOptions;
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    assert_eq!(e.manifest().neighbours, pinpoint::near::DEFAULT_NEIGHBOURS);
    e.add_document("tides-1", "", TIDES).unwrap();
    e.commit().unwrap();
    let weight = |o: &QueryOptions| o.request(&e, "tides").map(|r| r.pipeline.expansion);
    assert_eq!(
        weight(&QueryOptions::default()).unwrap(),
        pinpoint::near::DEFAULT_WEIGHT
    );
    let off: QueryOptions = serde_json::from_str(r#"{"expansion": 0}"#).unwrap();
    assert_eq!(weight(&off).unwrap(), 0.0);
    for bad in [-0.5, f32::NAN] {
        let o = QueryOptions {
            expansion: Some(bad),
            ..QueryOptions::default()
        };
        let err = weight(&o).unwrap_err().to_string();
        assert!(err.contains("expansion"), "{err}");
    }
}
