//! Tests with the real all-MiniLM-L6-v2 (CI fetches it with scripts/fetch-models.sh).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pinpoint::api::QueryOptions;
use pinpoint::{BertEmbedder, DeviceChoice, Embedder, Engine, EngineConfig, Mode, SearchRequest};

use crate::util::*;

fn embedder() -> &'static BertEmbedder {
    static E: OnceLock<BertEmbedder> = OnceLock::new();
    E.get_or_init(|| BertEmbedder::load(real_model(), DeviceChoice::Cpu).unwrap())
}

fn cos(a: &str, b: &str) -> f32 {
    let v = embedder().embed_passages(&[a, b]).unwrap();
    let d = embedder().dim();
    v[..d].iter().zip(&v[d..]).map(|(x, y)| x * y).sum()
}

#[test]
fn sentence_pairs_are_ordered_sensibly() {
    // Orderings from the model card (docs/models.md), not numbers this code produced.
    let food = cos("A man is eating food.", "A man is eating a piece of bread.");
    let horse = cos("A man is eating food.", "A man is riding a horse.");
    assert!(food > 0.6, "{food}");
    assert!(food > horse + 0.3, "{food} vs {horse}");
    let para = cos(
        "How do I reset my password?",
        "I forgot my login credentials, how can I change them?",
    );
    let off = cos(
        "How do I reset my password?",
        "The recipe needs two cups of flour.",
    );
    assert!(para > off + 0.2, "{para} vs {off}");
}

#[test]
fn batched_embeddings_equal_one_by_one() {
    let texts = [
        "short",
        "A considerably longer sentence that forces the shorter ones in its batch to be padded.",
        "Medium length text about tides and the moon.",
    ];
    let d = embedder().dim();
    let batched = embedder().embed_passages(&texts).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let one = embedder().embed_passages(&[t]).unwrap();
        for (a, b) in one.iter().zip(&batched[i * d..(i + 1) * d]) {
            assert!((a - b).abs() < 1e-5, "{t}: {a} vs {b}");
        }
    }
}

/// The fused CPU encoder against candle's `BertModel` on the real model, over texts from
/// one token to past the 256-token limit (truncated the same way on both paths).
#[test]
fn fused_cpu_encoder_equals_candle_on_the_real_model() {
    let long = "Tidal forces stretch the oceans toward and away from the moon. ".repeat(40);
    let texts = [
        "a",
        "What causes the tides?",
        "Mean pooling over token vectors followed by L2 normalisation.",
        long.as_str(),
    ];
    let mut e = BertEmbedder::load(real_model(), DeviceChoice::Cpu).unwrap();
    let fused = e.embed_passages(&texts).unwrap();
    e.set_candle_reference(true);
    let reference = e.embed_passages(&texts).unwrap();
    let worst = max_abs_diff(&fused, &reference);
    assert!(worst < 1e-4, "fused and candle differ by {worst}");
}

/// The samples indexed once per test run. A static is never dropped, so a `TempDir` held
/// here would leave an index in the system temp folder after every run; it lives in cargo's
/// scratch folder for integration tests instead, replaced at the start of each run.
fn sample_engine() -> &'static (PathBuf, Engine) {
    static E: OnceLock<(PathBuf, Engine)> = OnceLock::new();
    E.get_or_init(|| {
        let idx = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real_model_samples_index");
        if idx.exists() {
            std::fs::remove_dir_all(&idx).unwrap();
        }
        let cfg = EngineConfig {
            model_dir: Some(real_model()),
            device: DeviceChoice::Cpu,
            ..Default::default()
        };
        let mut e = Engine::create(&idx, cfg).unwrap();
        e.add_folder(samples()).unwrap();
        (idx, e)
    })
}

/// Paraphrased questions: few or none of their words appear in the right file.
const PARAPHRASES: [(&str, &str); 10] = [
    (
        "why does the sea level go up and down each day",
        "tides.txt",
    ),
    ("colourful light shows in arctic skies", "aurora.md"),
    (
        "how plants use sunlight to make sugar",
        "photosynthesis.html",
    ),
    (
        "getting ready to run a long road race",
        "marathon_training.md",
    ),
    (
        "keeping user credentials secure in a database",
        "password_hashing.md",
    ),
    (
        "insects telling each other where flowers are",
        "honeybees.txt",
    ),
    ("turning food scraps into fertiliser", "composting.txt"),
    (
        "why python threads do not make number crunching faster",
        "python_gil.py",
    ),
    (
        "uprising that overthrew the French king",
        "french_revolution.txt",
    ),
    ("tropical storms spinning over warm seas", "hurricanes.html"),
];

#[test]
fn paraphrased_questions_find_the_right_file_in_dense_and_hybrid() {
    let (_d, e) = sample_engine();
    for mode in [Mode::Dense, Mode::Hybrid] {
        for (q, want) in PARAPHRASES {
            let hits = e.search(&SearchRequest::new(q, 3).mode(mode)).unwrap();
            assert_eq!(
                hits[0].path,
                want,
                "{mode}: {q:?} -> {:?}",
                hits.iter().map(|h| &h.path).collect::<Vec<_>>()
            );
        }
    }
}

/// Abstention: a question that shares no word with the index and is not close in meaning
/// to any passage gets no passages and a note, in the default pipeline only; a paraphrase
/// that shares no word but is close in meaning is answered.
#[test]
fn questions_the_samples_cannot_answer_get_nothing_and_a_note() {
    let (_d, e) = sample_engine();
    let ask =
        |q: &str, opts: &QueryOptions| e.search_detailed(&opts.request(e, q).unwrap()).unwrap();
    let plain = QueryOptions::default();
    for q in [
        "ok",
        "the of and",
        "潮汐是如何形成的",
        "what is the capital of australia",
    ] {
        let out = ask(q, &plain);
        assert!(
            out.hits.is_empty(),
            "{q}: {:?}",
            out.hits.first().map(|h| &h.path)
        );
        assert!(
            out.note
                .as_deref()
                .is_some_and(|n| n.contains("no word of the question")),
            "{q}: {:?}",
            out.note
        );
        // Every stage still ranked: only the handing over is withheld.
        assert!(!out.ranked.is_empty(), "{q}");
        let forced = QueryOptions {
            no_abstain: true,
            ..QueryOptions::default()
        };
        let dense = QueryOptions {
            mode: Some("dense".into()),
            ..QueryOptions::default()
        };
        for o in [forced, dense] {
            let out = ask(q, &o);
            assert!(!out.hits.is_empty() && out.note.is_none(), "{q} {o:?}");
        }
    }
    // No word in common with any file, but close in meaning: answered.
    let out = ask("immunisation", &plain);
    assert!(out.lexical.is_empty(), "{:?}", out.lexical);
    assert_eq!(
        out.hits.first().map(|h| h.path.as_str()),
        Some("vaccines.md")
    );
    assert!(out.note.is_none());
}

/// The labelled sample questions (`benches/abstain/samples_labelled.jsonl`: 30 asked with
/// the files' words, 20 paraphrases avoiding them), each with the one file that answers it.
fn sample_questions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/abstain/samples_labelled.jsonl"),
    )
    .unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["query"].as_str().unwrap().to_string(),
                v["relevant"][0].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_small_folder_hands_over_the_answer_without_unrelated_files() {
    // On 22 files the first 20 candidates are nearly every file, so the relative cut-off
    // keeps unrelated passages that share a word with the question ("rise" in the tides
    // question finds hurricanes and bread); the similarity share stops at them.
    let (_d, e) = sample_engine();
    let qs = sample_questions();
    assert_eq!(qs.len(), 50);
    let handed = |share: f32| -> (f64, f64) {
        let (mut precise, mut passages) = (0.0, 0.0);
        for (q, want) in &qs {
            let mut req = QueryOptions::default().request(e, q).unwrap();
            req.pipeline.select.as_mut().unwrap().min_similarity_share = share;
            let hits = e.search(&req).unwrap();
            assert_eq!(
                hits.first().map(|h| h.path.as_str()),
                Some(want.as_str()),
                "{q}"
            );
            let right = hits.iter().filter(|h| &h.path == want).count();
            precise += right as f64 / hits.len() as f64;
            passages += hits.len() as f64;
        }
        (precise / qs.len() as f64, passages / qs.len() as f64)
    };
    let default = QueryOptions::default().request(e, "x").unwrap();
    let share = default
        .pipeline
        .select
        .as_ref()
        .unwrap()
        .min_similarity_share;
    let (guarded, n_guarded) = handed(share);
    let (unguarded, n_unguarded) = handed(0.0);
    assert!(
        guarded >= 0.9,
        "share relevant {guarded} ({n_guarded} passages)"
    );
    assert!(
        guarded > unguarded + 0.1 && n_guarded < n_unguarded,
        "{guarded} ({n_guarded}) vs {unguarded} ({n_unguarded}) without the guard"
    );
    // A query asking several questions: a passage that answers one of them is on topic even
    // where it is far from the query as a whole (the chess passage's cosine with the whole
    // query is under half the sourdough passage's), and an off-topic passage ranked between
    // two answers does not stop the list before the second.
    for (q, want) in [
        (
            "What is bcrypt? Why are there two high tides a day?",
            &["password_hashing.md", "tides.txt"][..],
        ),
        (
            "How do I feed a sourdough starter? What is the sicilian defence? Why do volcanoes erupt?",
            &["sourdough.txt", "chess_openings.md", "volcanoes.md"][..],
        ),
    ] {
        let hits = e.search(&QueryOptions::default().request(e, q).unwrap()).unwrap();
        let paths: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
        for w in want {
            assert!(paths.contains(w), "{q}: {paths:?}");
        }
    }
}

#[test]
fn rare_words_find_the_right_file_in_lexical_mode() {
    let (_d, e) = sample_engine();
    for (q, want) in [
        ("Brumaire", "french_revolution.txt"),
        ("RuBisCO stroma", "photosynthesis.html"),
        ("banneton", "sourdough.txt"),
        ("Sagittarius", "black_holes.md"),
    ] {
        let hits = e
            .search(&SearchRequest::new(q, 3).mode(Mode::Lexical))
            .unwrap();
        assert_eq!(hits[0].path, want, "{q}");
    }
    // Script text in HTML is not indexed.
    let hits = e
        .search(&SearchRequest::new("console log script", 3).mode(Mode::Lexical))
        .unwrap();
    assert!(hits.iter().all(|h| !h.text.contains("console.log")));
}

#[test]
fn reopened_real_index_gives_identical_results() {
    let (d, e) = sample_engine();
    let cfg = EngineConfig {
        model_dir: Some(real_model()),
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let r = Engine::open_read_only(d, cfg).unwrap();
    for (q, _) in PARAPHRASES.iter().take(4) {
        for mode in [Mode::Dense, Mode::Lexical, Mode::Hybrid] {
            let req = SearchRequest::new(*q, 5).mode(mode);
            assert_eq!(
                e.search(&req).unwrap(),
                r.search(&req).unwrap(),
                "{mode} {q}"
            );
        }
    }
}

/// Token-level late interaction with the real model: a text matches itself perfectly (every
/// query token finds itself), and the model card's ordering holds as it does for sentence
/// vectors.
#[test]
fn token_reranker_orders_pairs_and_matches_itself() {
    use pinpoint::rerank::{Reranker, TokenReranker};
    let r = TokenReranker::new(embedder());
    let q = "A man is eating food.";
    let s = r
        .score(
            q,
            &[
                "A man is riding a horse.",
                "A man is eating a piece of bread.",
                q,
            ],
        )
        .unwrap();
    assert!((s[2] - 1.0).abs() < 1e-4, "self match {}", s[2]);
    assert!(s[1] > s[0] + 0.05, "bread {} vs horse {}", s[1], s[0]);
    // A document made of parts: a query token may match in any part, so the whole scores
    // at least as well as its best part.
    let parts = vec![vec![
        "A man is riding a horse.".to_string(),
        "Someone is eating food.".to_string(),
    ]];
    let whole = r.score_parts(q, &parts).unwrap()[0];
    let single = r
        .score(q, &["A man is riding a horse.", "Someone is eating food."])
        .unwrap();
    assert!(
        whole >= single[0].max(single[1]) - 1e-6,
        "{whole} vs {single:?}"
    );
}
