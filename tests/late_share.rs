//! Shared piece codes (`pinpoint::late::share`) in an index: a large commit votes each
//! repeated piece's code, later commits refer to it, a chunk borrows what the chunk before
//! it in its document holds, merges keep the references and the borrows, and what the
//! reranker reads is each chunk's own tokens, every distinct one once.
//!
//! The hashing embedder gives every word one vector wherever it occurs, so a word's shared
//! code is its own code exactly: a chunk's stored codes must be the codes of its distinct
//! kept words, no more and no fewer.

use std::collections::BTreeSet;
use std::sync::Arc;

use pinpoint::embed::TokenMatrix;
use pinpoint::late::Sharing;
use pinpoint::{Embedder, Engine, EngineConfig, HashEmbedder, SearchRequest};

/// The dimension sharing was measured at: an index of any other keeps its own codes.
const DIM: usize = 384;

/// The hashing embedder with dense token vectors: every word a fixed vector of random
/// signs, so two words' codes lie about half their bits apart (the hashing embedder's
/// sparse vectors code most words alike) and a word's code is the same wherever it occurs.
struct WordSigns(HashEmbedder);

impl Embedder for WordSigns {
    fn spec(&self) -> &pinpoint::models::ModelSpec {
        self.0.spec()
    }
    fn embed_passages(&self, texts: &[&str]) -> pinpoint::Result<Vec<f32>> {
        self.0.embed_passages(texts)
    }
    fn embed_raw(&self, texts: &[&str]) -> pinpoint::Result<Vec<f32>> {
        self.0.embed_raw(texts)
    }
    fn token_spans(&self, text: &str) -> Vec<(usize, usize)> {
        self.0.token_spans(text)
    }
    fn embed_tokens(&self, texts: &[&str]) -> pinpoint::Result<Vec<TokenMatrix>> {
        let unit = 1.0 / (DIM as f32).sqrt();
        Ok(texts
            .iter()
            .map(|t| {
                let mut data = Vec::new();
                for &(a, b) in &self.0.token_spans(t) {
                    let mut x = pinpoint::late::share::piece_key(&t[a..b]) as u64 | 1;
                    data.extend((0..DIM).map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if x & 1 == 1 {
                            unit
                        } else {
                            -unit
                        }
                    }));
                }
                TokenMatrix { dim: DIM, data }
            })
            .collect())
    }
}

/// [`WordSigns`]' vectors of the kept words of `text`.
fn sign_rows(dim: usize, text: &str) -> Vec<Vec<f32>> {
    let e = WordSigns(HashEmbedder::new(dim));
    let m = e.embed_tokens(&[text]).unwrap().pop().unwrap();
    e.token_spans(text)
        .iter()
        .zip(m.rows())
        .filter(|(&(a, b), _)| pinpoint::late::keep_token(&text[a..b]))
        .map(|(_, r)| r.to_vec())
        .collect()
}

fn config(sharing: Option<bool>) -> EngineConfig {
    EngineConfig {
        embedder: Some(Arc::new(HashEmbedder::new(DIM))),
        token_sharing: sharing,
        ..Default::default()
    }
}

/// A document of words drawn from a small vocabulary (so that pieces repeat across
/// documents), with one word of its own (`unique<i>`).
fn document(i: usize) -> String {
    const WORDS: &[&str] = &[
        "protein", "kinase", "receptor", "signal", "membrane", "neuron", "cortex", "enzyme",
        "binding", "mutation", "tumour", "insulin", "glucose", "ligand", "channel", "vesicle",
    ];
    let mut x = i as u64 * 2_654_435_761 + 7;
    let mut words: Vec<String> = (0..24)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            WORDS[(x >> 33) as usize % WORDS.len()].to_string()
        })
        .collect();
    words.push(format!("unique{i}"));
    words.join(" ")
}

/// Every chunk's stored codes are codes of its own kept words, and each of its words not
/// stored is within the copy distance of one that is (a near-copy kept once).
fn assert_tokens_kept(e: &Engine, when: &str) {
    assert_kept_of(e, when, crate::late::kept_rows)
}

/// [`assert_tokens_kept`] for token vectors made by `rows`.
fn assert_kept_of(e: &Engine, when: &str, rows: fn(usize, &str) -> Vec<Vec<f32>>) {
    let copy = Sharing::MEASURED.copy_bits;
    for (p, (got, want)) in stored(e).iter().zip(expected_of(e, rows)).enumerate() {
        assert!(
            got.is_subset(&want),
            "{when}: chunk {p} stores a code of no word"
        );
        for w in want.difference(got) {
            let near = got
                .iter()
                .any(|g| pinpoint::late::share::hamming(g, w) <= copy);
            assert!(near, "{when}: chunk {p} lost a word with no near copy");
        }
    }
}

/// The set of codes stored for each chunk, as the reranker reads them.
fn stored(e: &Engine) -> Vec<BTreeSet<Vec<u8>>> {
    let segs = e.segments();
    (0..segs.len())
        .map(|p| {
            let g = segs.codes(p).gather();
            g.chunks_exact(DIM / 8).map(<[u8]>::to_vec).collect()
        })
        .collect()
}

/// The codes of each chunk's kept words, computed here from the embedder (as
/// `tests/late.rs` computes an unshared index's), as a set.
fn expected(e: &Engine) -> Vec<BTreeSet<Vec<u8>>> {
    expected_of(e, crate::late::kept_rows)
}

fn expected_of(e: &Engine, rows: fn(usize, &str) -> Vec<Vec<f32>>) -> Vec<BTreeSet<Vec<u8>>> {
    crate::late::expected_codes_by(e, DIM, DIM, &|row, k| row[k], rows)
        .into_iter()
        .map(|c| c.chunks_exact(DIM / 8).map(<[u8]>::to_vec).collect())
        .collect()
}

/// Borrowed codes over the live chunks (`stats` counts deleted rows until a merge).
fn borrowed(e: &Engine) -> usize {
    let segs = e.segments();
    (0..segs.len())
        .map(|p| segs.codes(p).borrowed().count())
        .sum()
}

fn add(e: &mut Engine, range: std::ops::Range<usize>) {
    for i in range {
        e.add_document(&format!("d{i}.txt"), &format!("Doc {i}"), &document(i))
            .unwrap();
    }
    e.commit().unwrap();
}

fn hits(e: &Engine, q: &str) -> Vec<(String, u32)> {
    e.search(&SearchRequest::new(q, 5))
        .unwrap()
        .into_iter()
        .map(|h| (h.path, (h.score * 1e4).round() as u32))
        .collect()
}

#[test]
fn shared_codes_keep_every_distinct_token_and_follow_merges() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Engine::create(dir.path(), config(None)).unwrap();
    assert_eq!(e.manifest().token_sharing, Some(Sharing::MEASURED));
    // A first commit of 150 documents votes the codebook.
    add(&mut e, 0..150);
    let s = e.stats().unwrap();
    let (tokens, refs) = (s.token_codes.unwrap(), s.token_references.unwrap());
    // Every vocabulary word repeats, so all but the `unique` words (and title words seen
    // once) are references.
    assert!(
        refs > 0 && refs * 2 > tokens,
        "{refs} references of {tokens} tokens"
    );
    assert_tokens_kept(&e, "after the voting commit");
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());

    // A one-document commit votes nothing: its known words refer to the codebook, its new
    // word keeps its own code.
    add(&mut e, 150..151);
    let s2 = e.stats().unwrap();
    assert!(s2.token_references.unwrap() > refs);
    assert_tokens_kept(&e, "after a small commit");
    let before = hits(&e, "kinase receptor unique150");
    assert_eq!(before[0].0, "d150.txt");

    // Compaction copies references as they are: same codes, same hits, same counts.
    e.compact().unwrap();
    assert_eq!(e.manifest().segments.len(), 1);
    assert_tokens_kept(&e, "after compaction");
    assert_eq!(hits(&e, "kinase receptor unique150"), before);
    assert_eq!(e.stats().unwrap().token_references, s2.token_references);
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    drop(e);
    let e = Engine::open(dir.path(), config(None)).unwrap();
    assert_tokens_kept(&e, "after reopening");

    // A reference damaged on disk is named by `verify` (beside the checksum it breaks).
    let file = dir
        .path()
        .join(e.manifest().segments[0].codes.clone().unwrap());
    drop(e);
    let mut bytes = std::fs::read(&file).unwrap();
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (n, m) = (word(&bytes, 16) as usize, word(&bytes, 24) as usize);
    // Header, piece keys and codes, the three offset tables, then the references.
    let first_ref = 56 + m * (4 + DIM / 8) + 3 * 8 * (n + 1);
    bytes[first_ref..first_ref + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let e = Engine::open(dir.path(), config(None)).unwrap();
    let found = e.verify().unwrap();
    assert!(
        found.iter().any(|f| f.contains("names no shared code")),
        "{found:?}"
    );
}

#[test]
fn an_index_made_without_sharing_stores_every_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Engine::create(dir.path(), config(Some(false))).unwrap();
    assert_eq!(e.manifest().token_sharing, None);
    add(&mut e, 0..150);
    let s = e.stats().unwrap();
    assert_eq!(s.token_references, Some(0));
    // Every kept occurrence is stored, repeats included.
    let occurrences: usize = (0..e.segments().len())
        .map(|p| e.segments().codes(p).own().len() / (DIM / 8))
        .sum();
    assert_eq!(s.token_codes, Some(occurrences as u64));
    let distinct: usize = expected(&e).iter().map(BTreeSet::len).sum();
    assert!(occurrences > distinct, "{occurrences} vs {distinct}");
    assert_eq!(stored(&e), expected(&e));
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
}

/// A document long enough for several chunks: sentences of words no other document uses,
/// each chunk repeating the title in front and the end of the chunk before as overlap.
fn long_document(i: usize, first: &str) -> String {
    const WORDS: &[&str] = &[
        "xylem",
        "phloem",
        "stomata",
        "cambium",
        "auxin",
        "gibberellin",
        "cytokinin",
        "lignin",
        "cellulose",
        "chloroplast",
        "thylakoid",
        "rubisco",
    ];
    let mut x = i as u64 * 40_503 + 11;
    let mut text = format!("{first} opens the record of long{i}. ");
    for _ in 0..60 {
        let words: Vec<&str> = (0..12)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                WORDS[(x >> 33) as usize % WORDS.len()]
            })
            .collect();
        text.push_str(&words.join(" "));
        text.push_str(". ");
    }
    text
}

#[test]
fn a_chunk_borrows_from_the_chunk_before_through_merges_and_edits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || EngineConfig {
        embedder: Some(Arc::new(WordSigns(HashEmbedder::new(DIM)))),
        ..Default::default()
    };
    let mut e = Engine::create(dir.path(), cfg()).unwrap();
    assert!(e.manifest().token_sharing.is_some_and(|s| s.borrow));
    // A first commit votes the codebook; the long documents come in a commit too small to
    // vote, so their words keep their own codes, which the chunk after can borrow.
    add(&mut e, 0..120);
    for i in 0..4 {
        let text = long_document(i, "Alpha");
        e.add_document(&format!("long{i}.txt"), &format!("Long {i}"), &text)
            .unwrap();
    }
    e.commit().unwrap();
    let long_chunks = (0..e.segments().len())
        .filter(|&p| e.segments().get(p).unwrap().doc.starts_with("long"))
        .count();
    assert!(long_chunks >= 8, "{long_chunks} chunks of long documents");
    let s = e.stats().unwrap();
    let borrows = s.token_borrows.unwrap();
    // A long document's later chunk uses the words its chunk before has (the hashing
    // embedder codes a word the same everywhere): they are borrowed, not stored again.
    assert!(
        borrows as usize > 10 * long_chunks,
        "{borrows} borrowed tokens over {long_chunks} chunks"
    );
    assert_kept_of(&e, "after the first commit", sign_rows);
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
    let query = "xylem auxin long2";
    let before = hits(&e, query);
    assert!(before.iter().any(|h| h.0 == "long2.txt"), "{before:?}");

    // An edit of a long document's first sentence: its later chunks keep their text and
    // are reused, now written after a new first chunk.
    let text = long_document(1, "Omega");
    e.add_document("long1.txt", "Long 1", &text).unwrap();
    let report = e.commit().unwrap();
    assert!(report.chunks_reused > 0, "{report:?}");
    assert_kept_of(&e, "after the edit", sign_rows);
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());

    // Compaction writes each chunk after the same chunk as before: the same codes, the
    // same borrows, the same hits.
    let (codes, borrows, hits_before) = (stored(&e), borrowed(&e), hits(&e, query));
    assert!(borrows > 0);
    e.compact().unwrap();
    assert_eq!(e.manifest().segments.len(), 1);
    assert_eq!(stored(&e), codes);
    assert_eq!(borrowed(&e), borrows);
    assert_eq!(e.stats().unwrap().token_borrows, Some(borrows as u64));
    assert_eq!(hits(&e, query), hits_before);
    assert!(e.verify().unwrap().is_empty(), "{:?}", e.verify());
}
