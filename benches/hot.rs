//! Criterion benchmarks of the query path's hot functions: the dot product, the exact scan,
//! fusion, context selection, MaxSim, and (when the model has been fetched) one query
//! embedding and the token reranker's encoding of its head.
//! `cargo bench --bench hot`. Whole-pipeline figures come from `pinpoint bench`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pinpoint::bench::clustered_vectors;
use pinpoint::dense::exact_search;
use pinpoint::fuse::fuse;
use pinpoint::select::{select, Passage, SelectConfig};
use pinpoint::store::VectorFile;
use pinpoint::{BertEmbedder, DeviceChoice, Embedder, Fusion, Norm};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DIM: usize = 384;

fn dense(c: &mut Criterion) {
    let v = clustered_vectors(20_000, DIM, 200, 0.6, 7);
    let q = clustered_vectors(1, DIM, 200, 0.6, 99);
    c.bench_function("dot 384", |b| {
        b.iter(|| pinpoint::embed::dot(black_box(&v[..DIM]), black_box(&q)))
    });
    let file = VectorFile::from_vec(DIM, v);
    c.bench_function("exact scan 20k x 384, top 100", |b| {
        b.iter(|| exact_search(black_box(&file), black_box(&q), 100))
    });
}

/// One leg's ranked (id, score) list.
type Leg = Vec<(u64, f32)>;

/// Two legs of 200 candidates with partly shared ids, as the default pipeline fuses them.
fn legs() -> (Leg, Leg) {
    let lex: Vec<(u64, f32)> = (0..200).map(|i| (i, 30.0 - i as f32 * 0.1)).collect();
    let den: Vec<(u64, f32)> = (0..200)
        .map(|i| (i * 3 % 400, 0.8 - i as f32 * 0.002))
        .collect();
    (lex, den)
}

fn fusion(c: &mut Criterion) {
    let (lex, den) = legs();
    let z = Fusion::Weighted {
        norm: Norm::ZScore,
        weights: vec![0.5, 0.5],
    };
    c.bench_function("fuse z-score 2 x 200", |b| {
        b.iter(|| fuse(black_box(&[&lex, &den]), &z))
    });
    let rrf = Fusion::default();
    c.bench_function("fuse rrf 2 x 200", |b| {
        b.iter(|| fuse(black_box(&[&lex, &den]), &rrf))
    });
}

fn selection(c: &mut Criterion) {
    let vecs = clustered_vectors(40, DIM, 8, 0.6, 3);
    let passages: Vec<Passage> = (0..40)
        .map(|i| Passage {
            chunk_id: i,
            scored_chunk: i,
            doc: format!("doc{}", i % 13),
            byte_range: (i * 100, i * 100 + 120),
            line_range: (i as u32 * 3 + 1, i as u32 * 3 + 4),
            heading: None,
            // Distinct texts: identical ones would be collapsed as copies of each other.
            text: (0..150)
                .map(|w| format!("w{} ", (w * 7 + i * 13) % 211))
                .collect(),
            score: 1.0 - i as f32 * 0.02,
            vector: Some(vecs[i as usize * DIM..(i as usize + 1) * DIM].to_vec()),
            doc_chunks: 1,
            similarity: None,
            reason: String::new(),
        })
        .collect();
    let cfg = SelectConfig::default();
    c.bench_function("select 40 -> 10 (default)", |b| {
        b.iter(|| select(black_box(passages.clone()), 10, &cfg))
    });
}

fn query_embedding(c: &mut Criterion) {
    // Only with the real model present (scripts/fetch-models.sh); skipped otherwise.
    let Ok(e) = BertEmbedder::load("models/all-MiniLM-L6-v2", DeviceChoice::Cpu) else {
        eprintln!("models/all-MiniLM-L6-v2 missing: query embedding benchmark skipped");
        return;
    };
    c.bench_function("embed one query (all-MiniLM-L6-v2, CPU)", |b| {
        b.iter(|| e.embed_query(black_box("Aspirin inhibits the production of PGE2.")))
    });
}

/// The token reranker's arithmetic against its encoding: MaxSim of a 20-token query over a
/// 2-chunk document (500 tokens) takes about a quarter of a millisecond (228 µs here), while
/// encoding passages takes tens of milliseconds each, so the encoding is what it costs.
fn token_rerank(c: &mut Criterion) {
    use pinpoint::embed::TokenMatrix;
    use pinpoint::rerank::{maxsim, TokenReranker};
    let q = TokenMatrix::normalized(DIM, clustered_vectors(20, DIM, 5, 0.6, 3));
    let parts: Vec<TokenMatrix> = (0..2)
        .map(|i| TokenMatrix::normalized(DIM, clustered_vectors(250, DIM, 50, 0.6, 10 + i)))
        .collect();
    c.bench_function("maxsim 20 x 500 tokens", |b| {
        b.iter(|| maxsim(black_box(&q), black_box(&parts)))
    });
    // The same document as stored sign codes (what the default pipeline scores), against
    // the f32 arithmetic above; the table is built once per query.
    let codes: Vec<Vec<u8>> = parts
        .iter()
        .map(|m| pinpoint::late::encode(m, |_| true))
        .collect();
    let refs: Vec<&[u8]> = codes.iter().map(|c| c.as_slice()).collect();
    c.bench_function("maxsim codes 20 x 500 tokens", |b| {
        let qc = pinpoint::late::QueryCodes::new(&q);
        b.iter(|| qc.maxsim(black_box(&refs)))
    });
    c.bench_function("query code table, 20 tokens", |b| {
        b.iter(|| pinpoint::late::QueryCodes::new(black_box(&q)))
    });
    let Ok(e) = BertEmbedder::load("models/all-MiniLM-L6-v2", DeviceChoice::Cpu) else {
        return;
    };
    let passage = "Aspirin irreversibly inhibits cyclooxygenase, which lowers the production of \
                   prostaglandins such as PGE2 in platelets and inflamed tissue. "
        .repeat(6);
    let passages: Vec<&str> = vec![passage.as_str(); 5];
    let r = TokenReranker::new(&e);
    let mut g = c.benchmark_group("token reranker");
    g.sample_size(10);
    g.bench_function("score 5 passages of ~130 tokens", |b| {
        b.iter(|| {
            pinpoint::rerank::Reranker::score(&r, black_box("Aspirin inhibits PGE2."), &passages)
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    dense,
    fusion,
    selection,
    query_embedding,
    token_rerank
);
criterion_main!(benches);
