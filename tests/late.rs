//! Token codes kept at index time (`pinpoint::late`), with the hashing embedder: they follow
//! every generation (add, update, delete, rename, compact, reopen), the default pipeline
//! reranks with them, and the rerank scores equal MaxSim computed here from scratch.

use std::collections::HashMap;

use pinpoint::chunk::contextual_text;
use pinpoint::embed::TokenMatrix;
use pinpoint::late::keep_token;
use pinpoint::store::DocRecord;
use pinpoint::{Embedder, Engine, EngineConfig, Granularity, HashEmbedder, SearchRequest};

use crate::util::*;

const DIM: usize = 128;

/// The hashing embedder's vector of every word of `text` worth storing (not a stopword or
/// punctuation), in order, with the word.
fn kept_words(dim: usize, text: &str) -> Vec<(String, Vec<f32>)> {
    let m = HashEmbedder::new(dim)
        .embed_tokens(&[text])
        .unwrap()
        .pop()
        .unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.len(), m.len());
    words
        .iter()
        .zip(m.rows())
        .filter(|(w, _)| keep_token(w))
        .map(|(w, r)| (w.to_string(), r.to_vec()))
        .collect()
}

/// What a new index stores by default (`TokenUnits::Pieces`): every kept word's vector.
pub(crate) fn kept_rows(dim: usize, text: &str) -> Vec<Vec<f32>> {
    kept_words(dim, text).into_iter().map(|(_, r)| r).collect()
}

/// What an index created with `TokenUnits::Distinct` stores: one vector per distinct kept
/// piece of `text`, case folded, in order of first occurrence, the unit sum of its
/// occurrences' (the hashing embedder's pieces are words).
fn kept_distinct_rows(dim: usize, text: &str) -> Vec<Vec<f32>> {
    let mut order: Vec<String> = Vec::new();
    let mut sums: HashMap<String, Vec<f32>> = HashMap::new();
    for (w, r) in kept_words(dim, text) {
        let w = w.to_lowercase();
        match sums.get_mut(&w) {
            Some(s) => s.iter_mut().zip(&r).for_each(|(a, b)| *a += b),
            None => {
                order.push(w.clone());
                sums.insert(w, r);
            }
        }
    }
    order
        .into_iter()
        .map(|w| {
            let mut v = sums[&w].clone();
            pinpoint::embed::normalize(&mut v);
            v
        })
        .collect()
}

/// Each chunk's expected codes, by hand: the hashing embedder's vector of every kept word,
/// one bit per dimension (set when positive).
fn expected_codes(e: &Engine) -> Vec<Vec<u8>> {
    expected_codes_by(e, DIM, DIM, &|row, k| row[k], kept_rows)
}

/// Each chunk's expected codes of `bits` bits for the hashing embedder of dimension `dim`:
/// for every kept word, bit `k` set when `side(row, k)` is positive.
pub(crate) fn expected_codes_by(
    e: &Engine,
    dim: usize,
    bits: usize,
    side: &dyn Fn(&[f32], usize) -> f32,
    rows: fn(usize, &str) -> Vec<Vec<f32>>,
) -> Vec<Vec<u8>> {
    let titles: HashMap<String, String> = e
        .documents()
        .unwrap()
        .iter()
        .map(|d| (d.key.clone(), d.title.clone()))
        .collect();
    (0..e.segments().len())
        .map(|pos| {
            let c = e.segments().get(pos).unwrap();
            let text = contextual_text(&titles[&c.doc], c.heading.as_deref(), &c.text);
            let mut out = Vec::new();
            for row in rows(dim, &text) {
                for byte in 0..bits / 8 {
                    let mut b = 0u8;
                    for k in 0..8 {
                        if side(&row, byte * 8 + k) > 0.0 {
                            b |= 1 << k;
                        }
                    }
                    out.push(b);
                }
            }
            out
        })
        .collect()
}

/// The document record of `key`.
fn doc_record(e: &Engine, key: &str) -> DocRecord {
    e.documents()
        .unwrap()
        .iter()
        .find(|d| d.key == key)
        .unwrap()
        .clone()
}

/// The codes of `doc`'s chunks, in order.
fn doc_codes(e: &Engine, doc: &str) -> Vec<Vec<u8>> {
    let d = doc_record(e, doc);
    d.chunks
        .iter()
        .map(|id| {
            e.segments()
                .codes(e.segments().position(*id).unwrap())
                .gather()
                .to_vec()
        })
        .collect()
}

/// Every chunk's codes equal those computed from scratch, except `renamed` documents' (which
/// keep the codes, like the vectors, computed under their old title).
fn assert_codes_match(e: &Engine, when: &str, renamed: &[&str]) {
    let want = expected_codes(e);
    let t = e.segments();
    assert_eq!(t.len(), e.segments().len(), "{when}");
    for (pos, w) in want.iter().enumerate() {
        if renamed.contains(&e.segments().get(pos).unwrap().doc.as_str()) {
            continue;
        }
        assert_eq!(
            t.codes(pos).gather().as_ref(),
            w.as_slice(),
            "{when}: chunk at {pos}"
        );
    }
    assert!(e.verify().unwrap().is_empty(), "{when}: {:?}", e.verify());
}

/// MaxSim of a query against a document, by plain arithmetic over the words' vectors: each
/// query word's best `token_score` with a kept word of one chunk, averaged; the document
/// scores as its best chunk. Also returns how many chunks it has.
fn doc_maxsim(
    e: &Engine,
    dim: usize,
    query: &str,
    doc: &str,
    token_score: &dyn Fn(&[f32], &[f32]) -> f32,
) -> (f32, usize) {
    let q: TokenMatrix = HashEmbedder::new(dim)
        .embed_tokens(&[query])
        .unwrap()
        .pop()
        .unwrap();
    let d = doc_record(e, doc);
    let mut best = f32::MIN;
    for id in &d.chunks {
        let c = e.segments().get_id(*id).unwrap().unwrap();
        let text = contextual_text(&d.title, c.heading.as_deref(), &c.text);
        let rows = kept_rows(dim, &text);
        let total: f32 = q
            .rows()
            .map(|qt| {
                rows.iter()
                    .map(|r| token_score(qt, r))
                    .fold(f32::MIN, f32::max)
            })
            .sum();
        best = best.max(total / q.len() as f32);
    }
    (best, d.chunks.len())
}

/// [`doc_maxsim`] with the cosine of the query word and the sign vector of a passage word.
fn plain_maxsim(e: &Engine, query: &str, doc: &str) -> (f32, usize) {
    let scale = 1.0 / (DIM as f32).sqrt();
    doc_maxsim(e, DIM, query, doc, &|qt, r| {
        qt.iter()
            .zip(r)
            .map(|(a, b)| if *b > 0.0 { *a } else { -*a })
            .sum::<f32>()
            * scale
    })
}

#[test]
fn token_codes_follow_every_generation() {
    let src = tempfile::tempdir().unwrap();
    let idx = tempfile::tempdir().unwrap();
    copy_dir(&samples(), src.path());
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(src.path()).unwrap();
    assert!(e.has_token_codes());
    let file = e.manifest().segments[0].codes.clone().unwrap();
    assert!(idx.path().join(&file).exists());
    assert!(e.manifest().files.iter().any(|f| f.path == file));
    assert!(e.segments().tokens() > 0);
    assert_codes_match(&e, "first build", &[]);
    let jazz = doc_codes(&e, "jazz_improvisation.md");

    // Update, add, delete and rename: kept chunks keep their codes, new ones get theirs.
    std::fs::write(
        src.path().join("tides.txt"),
        "Tides now talk about zeppelins and airships only.",
    )
    .unwrap();
    std::fs::write(src.path().join("new.md"), "# Kites\nKites fly on the wind.").unwrap();
    std::fs::remove_file(src.path().join("honeybees.txt")).unwrap();
    std::fs::rename(
        src.path().join("jazz_improvisation.md"),
        src.path().join("music.md"),
    )
    .unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert!(r.updated == 1 && r.added == 1 && r.renamed == 1, "{r:?}");
    assert_codes_match(&e, "after sync", &["music.md"]);
    // A rename moves the codes with the chunks.
    assert_eq!(doc_codes(&e, "music.md"), jazz);

    e.compact().unwrap();
    assert_codes_match(&e, "after compact", &["music.md"]);
    drop(e);
    let e = Engine::open_read_only(idx.path(), fake_config()).unwrap();
    assert_codes_match(&e, "after reopen", &["music.md"]);
    assert_eq!(doc_codes(&e, "music.md"), jazz);
}

#[test]
fn default_pipeline_reranks_with_the_codes_as_plain_maxsim_says() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(samples()).unwrap();
    let p = e.default_pipeline();
    let rc = p
        .rerank
        .clone()
        .expect("the default reranks when codes are kept");
    let query = "how do bees tell each other where flowers are";
    let req = SearchRequest {
        granularity: Granularity::Document,
        pipeline: p,
        ..SearchRequest::new(query, 5)
    };
    let o = e.search_detailed(&req).unwrap();
    assert_eq!(o.reranked.len(), rc.depth.min(o.fused.len()));
    let mut several_chunks = 0;
    for (doc, s) in &o.reranked {
        let (want, chunks) = plain_maxsim(&e, query, doc);
        assert!((s - want).abs() < 1e-4, "{doc}: {s} vs {want}");
        several_chunks += usize::from(chunks > 1);
    }
    // The best-chunk rule is exercised: some reranked documents have several chunks.
    assert!(several_chunks > 0, "no reranked document has two chunks");
    // The final order is the blend the engine documents.
    let fused: Vec<(u64, f32)> = o
        .fused
        .iter()
        .enumerate()
        .map(|(i, x)| (i as u64, x.1))
        .collect();
    let scores: Vec<f32> = o.reranked.iter().map(|x| x.1).collect();
    assert_eq!(
        o.rerank_weight, rc.weight,
        "a short query keeps the full weight"
    );
    let blended = pinpoint::engine::blend_rerank(&fused, &scores, o.rerank_weight);
    let want: Vec<&str> = blended
        .iter()
        .take(5)
        .map(|(i, _)| o.fused[*i as usize].0.as_str())
        .collect();
    let got: Vec<&str> = o.ranked.iter().take(5).map(|x| x.0.as_str()).collect();
    assert_eq!(got, want);
}

#[test]
fn an_index_without_codes_is_smaller_and_not_reranked_by_default() {
    let idx = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        without_token_codes: true,
        ..fake_config()
    };
    let mut e = Engine::create(idx.path(), cfg.clone()).unwrap();
    e.add_folder(samples()).unwrap();
    assert!(!e.has_token_codes());
    assert_eq!(e.segments().tokens(), 0);
    assert!(e.manifest().segments.iter().all(|s| s.codes.is_none()));
    assert!(e.default_pipeline().rerank.is_none());
    assert!(!e
        .manifest()
        .files
        .iter()
        .any(|f| f.path.starts_with("late/")));
    assert!(e.verify().unwrap().is_empty());
    // Asked for, token reranking still works (encoding the candidates).
    let mut p = e.default_pipeline();
    p.rerank = Some(pinpoint::RerankConfig::new(pinpoint::RerankKind::Tokens));
    let o = e
        .search_detailed(&SearchRequest::new("bees dance", 3).pipeline(p))
        .unwrap();
    assert!(!o.reranked.is_empty());
    // Reopened with the default config, it keeps its own choice.
    drop(e);
    let e = Engine::open(idx.path(), fake_config()).unwrap();
    assert!(!e.has_token_codes());
}

#[test]
fn a_damaged_code_file_is_named() {
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    e.add_folder(samples()).unwrap();
    let file = idx
        .path()
        .join(e.manifest().segments[0].codes.clone().unwrap());
    drop(e);
    // Same size, flipped bits: only the checksum can tell.
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let e = Engine::open_read_only(idx.path(), fake_config()).unwrap();
    let problems = e.verify().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("late/") && p.contains("checksum")),
        "{problems:?}"
    );
    drop(e);
    // Truncated: opening fails and names the file.
    std::fs::write(&file, &bytes[..n - 3]).unwrap();
    let err = Engine::open_read_only(idx.path(), fake_config())
        .err()
        .expect("a truncated code file must not open")
        .to_string();
    assert!(err.contains(".tok"), "{err}");
}

/// A 384-dimension index created with 128 token bits codes each kept token as the signs of
/// its projection on 128 fixed directions: 16 bytes a token instead of 48, each bit the side of one direction, and the
/// default pipeline's rerank scores are MaxSim over those codes.
#[test]
fn wide_vectors_are_coded_through_the_projection() {
    let dim = 384;
    let idx = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        embedder: Some(std::sync::Arc::new(HashEmbedder::new(dim))),
        token_bits: Some(pinpoint::late::COMPACT_BITS),
        ..Default::default()
    };
    // A width the codes cannot have is refused by name.
    for bad in [0, 12, 384, 400] {
        let cfg = EngineConfig {
            token_bits: Some(bad),
            ..cfg.clone()
        };
        let dir = tempfile::tempdir().unwrap();
        let err = Engine::create(dir.path(), cfg).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("token bits")),
            "{bad}: {err:?}"
        );
    }
    let mut e = Engine::create(idx.path(), cfg).unwrap();
    e.add_folder(samples()).unwrap();
    assert_eq!(e.manifest().token_bits, pinpoint::late::COMPACT_BITS);
    let bits = e.manifest().token_bits;
    let proj = pinpoint::late::TokenProjection::new(dim, bits);
    // Every chunk's codes, by plain arithmetic: for each kept word, bit k set when its vector
    // lies on the positive side of direction k.
    let side = |row: &[f32], k: usize| -> f32 {
        row.iter().zip(proj.direction(k)).map(|(a, b)| a * b).sum()
    };
    let mut tokens = 0;
    for (pos, want) in expected_codes_by(&e, dim, bits, &side, kept_rows)
        .iter()
        .enumerate()
    {
        tokens += want.len() / (bits / 8);
        assert_eq!(
            e.segments().codes(pos).gather().as_ref(),
            want.as_slice(),
            "chunk at {pos}"
        );
    }
    assert_eq!(e.segments().tokens(), tokens as u64);
    let late: u64 = e
        .manifest()
        .files
        .iter()
        .filter(|f| f.path.starts_with("late/"))
        .map(|f| f.size)
        .sum();
    assert!(
        late >= tokens as u64 * 16 && late < tokens as u64 * 17,
        "{late} bytes, {tokens} tokens"
    );

    // The rerank score of a document is its best chunk's MaxSim through the projection.
    let query = "how do bees tell each other where flowers are";
    let req = SearchRequest {
        granularity: Granularity::Document,
        pipeline: e.default_pipeline(),
        ..SearchRequest::new(query, 5)
    };
    let o = e.search_detailed(&req).unwrap();
    assert!(!o.reranked.is_empty());
    let scale = 1.0 / (bits as f32).sqrt();
    for (doc, s) in &o.reranked {
        let (want, _) = doc_maxsim(&e, dim, query, doc, &|qt, r| {
            (0..bits)
                .map(|k| {
                    if side(r, k) > 0.0 {
                        side(qt, k)
                    } else {
                        -side(qt, k)
                    }
                })
                .sum::<f32>()
                * scale
        });
        assert!((s - want).abs() < 1e-3, "{doc}: {s} vs {want}");
    }
}

/// A new index keeps one code per kept piece occurrence (`pieces`, the default); one
/// created with `distinct` keeps one per distinct piece of a chunk, fewer on the same
/// folder; each reopens with its own units whatever the config asks.
#[test]
fn distinct_keeps_one_code_per_distinct_piece_and_pieces_every_occurrence() {
    use pinpoint::late::TokenUnits;
    let pieces_idx = tempfile::tempdir().unwrap();
    let mut pieces = Engine::create(pieces_idx.path(), fake_config()).unwrap();
    pieces.add_folder(samples()).unwrap();
    assert_eq!(pieces.manifest().token_units, TokenUnits::Pieces);
    assert_codes_match(&pieces, "pieces", &[]);

    let distinct_idx = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        token_units: Some(TokenUnits::Distinct),
        ..fake_config()
    };
    let mut distinct = Engine::create(distinct_idx.path(), cfg).unwrap();
    distinct.add_folder(samples()).unwrap();
    assert_eq!(distinct.manifest().token_units, TokenUnits::Distinct);
    let want = expected_codes_by(&distinct, DIM, DIM, &|row, k| row[k], kept_distinct_rows);
    for (pos, w) in want.iter().enumerate() {
        assert_eq!(
            distinct.segments().codes(pos).gather().as_ref(),
            w.as_slice(),
            "chunk at {pos}"
        );
    }
    assert!(distinct.verify().unwrap().is_empty());
    let (d, p) = (distinct.segments().tokens(), pieces.segments().tokens());
    assert!(d > 0 && d < p, "distinct {d} tokens, pieces {p}");

    // Reopened under a config that asks for the default, it keeps its own units.
    drop(distinct);
    let reopened = Engine::open(distinct_idx.path(), fake_config()).unwrap();
    assert_eq!(reopened.manifest().token_units, TokenUnits::Distinct);
    // An unknown unit is refused by name.
    let err = "syllables".parse::<TokenUnits>().unwrap_err().to_string();
    assert!(
        err.contains("token units") && err.contains("syllables"),
        "{err}"
    );
}
