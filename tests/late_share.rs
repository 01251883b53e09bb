//! Shared piece codes (`pinpoint::late::share`) in an index: a large commit votes each
//! repeated piece's code, later commits refer to it, merges keep the references, and what
//! the reranker reads is each chunk's own tokens, every distinct one once.
//!
//! The hashing embedder gives every word one vector wherever it occurs, so a word's shared
//! code is its own code exactly: a chunk's stored codes must be the codes of its distinct
//! kept words, no more and no fewer.

use std::collections::BTreeSet;
use std::sync::Arc;

use pinpoint::late::Sharing;
use pinpoint::{Engine, EngineConfig, HashEmbedder, SearchRequest};

/// The dimension sharing was measured at: an index of any other keeps its own codes.
const DIM: usize = 384;

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
    let copy = Sharing::MEASURED.copy_bits;
    for (p, (got, want)) in stored(e).iter().zip(expected(e)).enumerate() {
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
    crate::late::expected_codes_by(e, DIM, DIM, &|row, k| row[k], crate::late::kept_rows)
        .into_iter()
        .map(|c| c.chunks_exact(DIM / 8).map(<[u8]>::to_vec).collect())
        .collect()
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
    // Header, piece keys and codes, the two offset tables, then the references.
    let first_ref = 48 + m * (4 + DIM / 8) + 2 * 8 * (n + 1);
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
