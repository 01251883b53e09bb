//! Experiment behind the "stored token vectors" entry of docs/decisions.md: how much of the
//! token reranker's gain survives when passage token vectors are stored at index time in a
//! compressed form, so that the query no longer re-encodes passages?
//! `cargo run --release -p pinpoint-experiments --example token_store -- INDEX_DIR BEIR_DIR SPLIT [CACHE_FILE]`
//!
//! Encodes every chunk's token vectors once (cached as raw f32 in CACHE_FILE), collects the
//! fused top 20 of every query, then scores each compression by the train score and the
//! 5-fold held-out score of `tune_rerank`. Switches: `PP_PRUNE=1` drops stopword and
//! punctuation passage tokens; `PP_CODECS=small` compares sign codes of fewer dimensions;
//! `PP_CODECS=centred` compares 1-bit codes split at each dimension's mean and decoded to
//! its conditional means, with the share of head pairs each codec orders as f32 does;
//! `PP_RECALL=N` blends MaxSim over the fused top N and prints recall@100; `PP_IDF=1`
//! compares query-token weightings and a passage-to-query MaxSim term; `PP_PROX=1` scores
//! term proximity (ordered bigrams, 8-term windows) alone and added to MaxSim; `PP_MAXP=1`
//! scores a document by its best chunk's MaxSim instead of over all its tokens; `PP_QMASK=N`
//! appends N `[MASK]` tokens to each query (ColBERT's query augmentation). For the token
//! budget ("Token codes: one per distinct word"): `PP_WORDS=1` codes one vector per whole
//! word (its pieces averaged) and with `PP_UNIQ=1` one per distinct word of a chunk;
//! `PP_DEDUP=t` drops pieces within Hamming `t` of a kept one; `PP_CENTROID=t` replaces a
//! piece within Hamming `t` of its piece's corpus-wide majority code by that code
//! (`PP_CENTROID_FROM=f`: voted by the first share `f` of the chunks only); `PP_KCENTER=K` keeps at most
//! K a chunk by farthest-point selection on the sign codes; `PP_CONT=1` drops
//! continuation pieces; `PP_UNIQP=1` keeps one row per distinct piece of a chunk, and
//! `PP_UNIQP_BELOW=t` does so only in chunks whose distinct share of kept pieces is under t;
//! `PP_CAP=K` keeps at most K pieces a chunk, the rarest by vocabulary rank
//! (`PP_CAP_ORDER=common|first` for the controls), with `PP_CAP_BELOW=t` only in chunks whose
//! distinct share of kept pieces is under t;
//! `PP_CODECS=proj` the signs of 192 and 256 random projections beside the 384 signs;
//! `PP_CODECS=budget` compares random and principal-direction
//! projections to 128 and 192 bits, `PP_CODECS=sign` the 384-bit signs alone, and
//! `PP_CODECS=pq` product quantisers of 16-48 bytes against f32 and the signs.
use pinpoint_experiments::{sign_codes, support};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use pinpoint::chunk::contextual_text;
use pinpoint::embed::TokenMatrix;
use pinpoint::eval::{beir_labelled, Dataset};
use pinpoint::tune::Target;
use pinpoint::{Engine, EngineConfig, Pipeline};
use pinpoint_experiments::rerank_tune::{collect_rerank, tune_rerank, RerankFeatures};

fn load_or_encode(engine: &Engine, cache: &Path) -> Vec<TokenMatrix> {
    let store = engine.segments();
    let n = store.len();
    if let Ok(mut f) = std::fs::File::open(cache) {
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).expect("read cache");
        let mut out = Vec::with_capacity(n);
        let mut at = 0usize;
        let rd = |at: &mut usize| {
            let v = u32::from_le_bytes(buf[*at..*at + 4].try_into().expect("4"));
            *at += 4;
            v as usize
        };
        for _ in 0..n {
            let rows = rd(&mut at);
            let dim = rd(&mut at);
            let data: Vec<f32> = buf[at..at + rows * dim * 4]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4")))
                .collect();
            at += rows * dim * 4;
            out.push(TokenMatrix { dim, data });
        }
        return out;
    }
    let docs = engine.documents().expect("docs");
    let titles: HashMap<&str, &str> = docs
        .iter()
        .map(|d| (d.key.as_str(), d.title.as_str()))
        .collect();
    let e = engine.embedder().expect("model");
    let t0 = Instant::now();
    let mut out = Vec::with_capacity(n);
    let texts: Vec<String> = (0..n)
        .map(|p| {
            let c = store.get(p).expect("chunk");
            let t = titles.get(c.doc.as_str()).copied().unwrap_or("");
            contextual_text(t, c.heading.as_deref(), &c.text)
        })
        .collect();
    for (i, b) in texts.chunks(512).enumerate() {
        let refs: Vec<&str> = b.iter().map(|s| s.as_str()).collect();
        out.extend(e.embed_tokens(&refs).expect("embed"));
        eprintln!(
            "{} / {n} chunks, {:.0} s",
            (i + 1) * 512,
            t0.elapsed().as_secs_f64()
        );
    }
    let tokens: usize = out.iter().map(|m| m.len()).sum();
    eprintln!(
        "encoded {n} chunks, {tokens} tokens in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let mut f = std::io::BufWriter::new(std::fs::File::create(cache).expect("cache"));
    for m in &out {
        f.write_all(&(m.len() as u32).to_le_bytes()).expect("w");
        f.write_all(&(m.dim as u32).to_le_bytes()).expect("w");
        for x in &m.data {
            f.write_all(&x.to_le_bytes()).expect("w");
        }
    }
    out
}

/// `doc`'s chunks' token matrices with every row passed through `codec`.
fn coded_parts(
    doc_chunks: &HashMap<&str, Vec<usize>>,
    toks: &[TokenMatrix],
    doc: &str,
    codec: &dyn Fn(&[f32]) -> Vec<f32>,
) -> Vec<TokenMatrix> {
    doc_chunks
        .get(doc)
        .map(|ps| {
            ps.iter()
                .map(|&p| TokenMatrix {
                    dim: toks[p].dim,
                    data: toks[p].rows().flat_map(codec).collect(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A product quantiser trained on the corpus's own tokens: `m` subspaces of `dim / m`
/// dimensions, 256 centroids each (one byte a subspace), by Lloyd's k-means on a sample
/// of every `stride`-th token. Decodes a token to its centroids' concatenation, normalised.
fn pq_codec(toks: &[TokenMatrix], dim: usize, m: usize, sample: usize) -> Codec {
    use rayon::prelude::*;
    let sub = dim / m;
    let total: usize = toks.iter().map(|t| t.len()).sum();
    let stride = (total / sample).max(1);
    let rows: Vec<&[f32]> = toks.iter().flat_map(|t| t.rows()).step_by(stride).collect();
    let books: Vec<Vec<f32>> = (0..m)
        .into_par_iter()
        .map(|s| {
            let lo = s * sub;
            let k = 256.min(rows.len());
            // Seeds: evenly spaced sample rows.
            let mut c: Vec<f32> = (0..k)
                .flat_map(|i| rows[i * rows.len() / k][lo..lo + sub].to_vec())
                .collect();
            for _ in 0..12 {
                let mut sum = vec![0f64; k * sub];
                let mut cnt = vec![0usize; k];
                for r in &rows {
                    let x = &r[lo..lo + sub];
                    let j = nearest(&c, sub, x);
                    cnt[j] += 1;
                    for (d, v) in x.iter().enumerate() {
                        sum[j * sub + d] += *v as f64;
                    }
                }
                for j in 0..k {
                    if cnt[j] > 0 {
                        for d in 0..sub {
                            c[j * sub + d] = (sum[j * sub + d] / cnt[j] as f64) as f32;
                        }
                    }
                }
            }
            c
        })
        .collect();
    Box::new(move |v: &[f32]| {
        let mut out = Vec::with_capacity(v.len());
        for (s, c) in books.iter().enumerate() {
            let x = &v[s * sub..(s + 1) * sub];
            let j = nearest(c, sub, x);
            out.extend_from_slice(&c[j * sub..(j + 1) * sub]);
        }
        unit(out)
    })
}

/// The centroid of `c` (rows of `sub`) nearest to `x` in squared distance.
fn nearest(c: &[f32], sub: usize, x: &[f32]) -> usize {
    let mut best = (f32::MAX, 0);
    for (j, row) in c.chunks_exact(sub).enumerate() {
        let d: f32 = row.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum();
        if d < best.0 {
            best = (d, j);
        }
    }
    best.1
}

/// `tune_rerank` over `base`'s fused lists with `scores` (one list per query) as the
/// reranker's scores of each head.
fn tuned(
    base: &[RerankFeatures],
    scores: impl Iterator<Item = Vec<f32>>,
) -> pinpoint_experiments::rerank_tune::TunedRerank {
    let qs: Vec<RerankFeatures> = base
        .iter()
        .zip(scores)
        .map(|(q, scores)| RerankFeatures {
            rels: q.rels.clone(),
            qid: q.qid.clone(),
            fused: q.fused.clone(),
            scores,
            fade: q.fade,
        })
        .collect();
    tune_rerank(&qs, Target::Ndcg10, 5)
}

type Codec = Box<dyn Fn(&[f32]) -> Vec<f32> + Sync>;

/// Chunks `PP_UNIQP_BELOW` coded by distinct pieces.
static UNIQ_CHUNKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

/// Symmetric uniform quantiser with `levels` levels on [-c, c], reconstructing each value.
fn uniform(v: &[f32], bits: u32, clip: f32) -> Vec<f32> {
    let levels = (1u32 << bits) as f32;
    let step = 2.0 * clip / levels;
    v.iter()
        .map(|&x| {
            let q = ((x.clamp(-clip, clip - 1e-6) + clip) / step).floor();
            -clip + (q + 0.5) * step
        })
        .collect()
}

const STOP: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "by", "for", "with", "from", "as",
    "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these",
    "those", "which", "who", "whom", "what", "there", "their", "than", "then", "but", "not", "no",
    "into", "we", "our", "has", "have", "had", "do", "does", "did", "can", "may", "also", "such",
    "both", "between", "during", "after", "before", "over", "under", "via", "s", "i", "he", "she",
    "they", "them", "his", "her", "if", "so", "all", "any", "each",
];

/// The WordPiece vocabulary's id of `piece` (`##` marks a continuation), which orders
/// pieces by their frequency in the model's pre-training text; unknown pieces rank last.
fn vocab_rank(piece: &str) -> u32 {
    static VOCAB: std::sync::OnceLock<HashMap<String, u32>> = std::sync::OnceLock::new();
    let v = VOCAB.get_or_init(|| {
        let text = std::fs::read_to_string("models/all-MiniLM-L6-v2/vocab.txt").unwrap_or_default();
        text.lines()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32))
            .collect()
    });
    v.get(piece).copied().unwrap_or(u32::MAX)
}

/// Drops stopword and punctuation rows of each chunk's token matrix.
/// The kept tokens of each chunk, and each kept row's piece (case folded, `##` marking a
/// continuation) where rows are pieces one to one (empty where they are not).
fn prune(engine: &Engine, toks: Vec<TokenMatrix>) -> (Vec<TokenMatrix>, Vec<Vec<String>>) {
    let e = engine.embedder().expect("model");
    let (mut before, mut after, mut mismatched) = (0usize, 0usize, 0usize);
    let out: (Vec<TokenMatrix>, Vec<Vec<String>>) = toks
        .into_iter()
        .zip(support::chunk_texts(engine))
        .map(|(m, text)| {
            let spans = e.token_spans(&text);
            before += m.len();
            if spans.len() != m.len() {
                mismatched += 1;
                after += m.len();
                return (m, Vec::new());
            }
            // PP_WORDS=1: one vector per whole word (the mean of its pieces); PP_UNIQ=1 also
            // one per distinct word of the chunk (the mean over its occurrences), as
            // ColBERTer's bag of unique whole words.
            if std::env::var("PP_WORDS").is_ok() {
                let uniq = std::env::var("PP_UNIQ").is_ok();
                let mut words: Vec<(String, Vec<f32>, usize)> = Vec::new();
                let mut index: HashMap<String, usize> = HashMap::new();
                let mut prev_end = usize::MAX;
                let mut cur: Option<usize> = None;
                for ((a, b), r) in spans.iter().zip(m.rows()) {
                    let piece = &text[*a..*b];
                    let alnum = piece.chars().next().is_some_and(|c| c.is_alphanumeric());
                    let joins = *a == prev_end
                        && alnum
                        && text[..*a]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric());
                    prev_end = *b;
                    if joins {
                        if let Some(w) = cur {
                            words[w].0.push_str(&piece.to_lowercase());
                            words[w].1.iter_mut().zip(r).for_each(|(x, y)| *x += y);
                            words[w].2 += 1;
                            continue;
                        }
                    }
                    words.push((piece.to_lowercase(), r.to_vec(), 1));
                    cur = Some(words.len() - 1);
                }
                let mut data = Vec::new();
                let mut merged: Vec<(String, Vec<f32>)> = Vec::new();
                for (w, v, _) in words {
                    let keep =
                        w.chars().any(|c| c.is_alphanumeric()) && !STOP.contains(&w.as_str());
                    if !keep {
                        continue;
                    }
                    let v = unit(v);
                    match index.get(&w) {
                        Some(&i) if uniq => {
                            merged[i].1.iter_mut().zip(&v).for_each(|(x, y)| *x += y)
                        }
                        _ => {
                            index.insert(w.clone(), merged.len());
                            merged.push((w, v));
                        }
                    }
                }
                for (_, v) in merged {
                    data.extend(unit(v));
                }
                let m = TokenMatrix { dim: m.dim, data };
                after += m.len();
                return (m, Vec::new());
            }
            let mut data = Vec::new();
            // PP_CONT=1 also drops word pieces that continue the previous piece's word.
            let cont = std::env::var("PP_CONT").is_ok();
            let mut prev_end = usize::MAX;
            // PP_UNIQP_BELOW=t: one row per distinct piece only in a chunk whose distinct
            // share of kept pieces is under `t` (code repeats its identifiers; prose less).
            let below: Option<f64> = std::env::var("PP_UNIQP_BELOW")
                .ok()
                .and_then(|t| t.parse().ok());
            // PP_CAP_BELOW=t: the cap (PP_CAP) applies only to chunks whose distinct share
            // of kept pieces is under t (code); the others keep every piece.
            let cap_below: Option<f64> = std::env::var("PP_CAP_BELOW")
                .ok()
                .and_then(|t| t.parse().ok());
            let share_under = |t: f64| {
                let words: Vec<String> = spans
                    .iter()
                    .map(|(a, b)| text[*a..*b].to_lowercase())
                    .filter(|w| {
                        w.chars().any(|c| c.is_alphanumeric()) && !STOP.contains(&w.as_str())
                    })
                    .collect();
                let distinct: std::collections::HashSet<&String> = words.iter().collect();
                !words.is_empty() && (distinct.len() as f64) < t * words.len() as f64
            };
            let capped = cap_below.is_none_or(share_under);
            let repeats = below.is_some_and(share_under);
            if repeats {
                UNIQ_CHUNKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let uniq_pieces = std::env::var("PP_UNIQP").is_ok() || repeats;
            let mut seen: HashMap<String, usize> = HashMap::new();
            // PP_CAP=K: the vocabulary rank of each kept row (for the cap below).
            let mut ranks: Vec<u32> = Vec::new();
            let mut keys: Vec<String> = Vec::new();
            for ((a, b), r) in spans.iter().zip(m.rows()) {
                let w = text[*a..*b].to_lowercase();
                let joined = *a == prev_end
                    && w.chars().next().is_some_and(|c| c.is_alphanumeric())
                    && text[..*a]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric());
                let continues = cont && joined;
                prev_end = *b;
                let keep = w.chars().any(|c| c.is_alphanumeric())
                    && !STOP.contains(&w.as_str())
                    && !continues;
                if keep {
                    let key = if joined { format!("##{w}") } else { w.clone() };
                    ranks.push(vocab_rank(&key));
                    keys.push(key);
                    // PP_UNIQP=1: a piece repeated in the chunk (case folded) is one row,
                    // the unit mean of its occurrences.
                    if uniq_pieces {
                        if let Some(&i) = seen.get(&w) {
                            let at: &mut [f32] = &mut data[i * m.dim..(i + 1) * m.dim];
                            at.iter_mut().zip(r).for_each(|(x, y)| *x += y);
                            continue;
                        }
                        seen.insert(w.clone(), data.len() / m.dim);
                    }
                    data.extend_from_slice(r);
                }
            }
            if uniq_pieces {
                data = data
                    .chunks(m.dim)
                    .flat_map(|row| unit(row.to_vec()))
                    .collect();
            }
            // PP_CAP=K: at most K rows a chunk; PP_CAP_ORDER=rare (default) keeps the pieces
            // of highest vocabulary rank (the WordPiece vocabulary is in order of frequency,
            // so the rarest), `common` the lowest, `first` the first K; order kept.
            if let Some(cap) = std::env::var("PP_CAP")
                .ok()
                .and_then(|k| k.parse::<usize>().ok())
            {
                let rows = data.len() / m.dim.max(1);
                if rows > cap && capped && !uniq_pieces && ranks.len() == rows {
                    let mut order: Vec<usize> = (0..rows).collect();
                    match std::env::var("PP_CAP_ORDER").as_deref() {
                        Ok("first") => {}
                        Ok("common") => order.sort_by_key(|&i| ranks[i]),
                        _ => order.sort_by_key(|&i| std::cmp::Reverse(ranks[i])),
                    }
                    let mut keep: Vec<usize> = order[..cap].to_vec();
                    keep.sort_unstable();
                    data = keep
                        .iter()
                        .flat_map(|&i| data[i * m.dim..(i + 1) * m.dim].to_vec())
                        .collect();
                    keys.clear();
                }
            }
            if uniq_pieces {
                keys.clear();
            }
            let m = TokenMatrix { dim: m.dim, data };
            after += m.len();
            (m, keys)
        })
        .unzip();
    eprintln!(
        "pruned {before} -> {after} tokens ({mismatched} chunks not aligned; {} chunks by distinct pieces)",
        UNIQ_CHUNKS.load(std::sync::atomic::Ordering::Relaxed)
    );
    out
}

/// The top `k` eigenvectors of the tokens' uncentred second moment (every 7th token), by
/// orthogonal iteration; centring hurt the sign codes (docs/decisions.md).
fn top_eigvecs(toks: &[TokenMatrix], dim: usize, k: usize) -> Vec<Vec<f32>> {
    let mut c = vec![0f64; dim * dim];
    let mut n = 0usize;
    for (i, r) in toks.iter().flat_map(|m| m.rows()).enumerate() {
        if i % 7 != 0 {
            continue;
        }
        n += 1;
        for a in 0..dim {
            let ra = r[a] as f64;
            for b in 0..dim {
                c[a * dim + b] += ra * r[b] as f64;
            }
        }
    }
    c.iter_mut().for_each(|x| *x /= n.max(1) as f64);
    let p = pinpoint::late::TokenProjection::new(dim, k);
    let mut q: Vec<Vec<f64>> = (0..k)
        .map(|i| p.direction(i).iter().map(|&x| x as f64).collect())
        .collect();
    for _ in 0..60 {
        let mut z: Vec<Vec<f64>> = q
            .iter()
            .map(|v| {
                (0..dim)
                    .map(|a| (0..dim).map(|b| c[a * dim + b] * v[b]).sum())
                    .collect()
            })
            .collect();
        for i in 0..k {
            for j in 0..i {
                let d: f64 = z[i].iter().zip(&z[j]).map(|(a, b)| a * b).sum();
                let zj = z[j].clone();
                z[i].iter_mut().zip(&zj).for_each(|(a, b)| *a -= d * b);
            }
            let nn = z[i].iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            z[i].iter_mut().for_each(|a| *a /= nn);
        }
        q = z;
    }
    q.into_iter()
        .map(|v| v.into_iter().map(|x| x as f32).collect())
        .collect()
}

/// Query tokens weighted by the inverse document frequency of their word piece (chunk
/// level) instead of equally, over the stored (1-bit, pruned) passage codes.
fn idf_weighting(
    engine: &Engine,
    ds: &Dataset,
    base: &[RerankFeatures],
    qtoks: &[TokenMatrix],
    toks: &[TokenMatrix],
    doc_chunks: &HashMap<&str, Vec<usize>>,
) {
    let e = engine.embedder().expect("model");
    let idf = support::piece_idf(engine);
    let signed: Vec<Vec<f32>> = toks
        .iter()
        .map(|m| {
            m.rows()
                .flat_map(|r| unit(r.iter().map(|x| x.signum()).collect()))
                .collect()
        })
        .collect();
    let labelled = beir_labelled(ds);
    // Per query: idf of each query token, and per fused doc the best cosine of each token.
    let mut per_q: Vec<(Vec<f32>, Vec<Vec<f32>>)> = Vec::new();
    for ((q, qt), (_, text, _)) in base.iter().zip(qtoks).zip(&labelled) {
        let spans = e.token_spans(text);
        let w: Vec<f32> = if spans.len() == qt.len() {
            spans.iter().map(|&(a, b)| idf(&text[a..b])).collect()
        } else {
            vec![1.0; qt.len()]
        };
        let bests = q
            .fused
            .iter()
            .take(20)
            .map(|(d, _)| {
                let rows: Vec<&[f32]> = doc_chunks
                    .get(d.as_str())
                    .map(|ps| {
                        ps.iter()
                            .flat_map(|&p| signed[p].chunks_exact(qt.dim.max(1)))
                            .collect()
                    })
                    .unwrap_or_default();
                let sims: Vec<Vec<f32>> = qt
                    .rows()
                    .map(|qr| {
                        rows.iter()
                            .map(|r| qr.iter().zip(*r).map(|(a, b)| a * b).sum::<f32>())
                            .collect()
                    })
                    .collect();
                let mut b: Vec<f32> = sims
                    .iter()
                    .map(|s| s.iter().copied().fold(f32::MIN, f32::max))
                    .collect();
                // Last entry: the passage side, each passage token's best query token, mean.
                let dq = (0..rows.len())
                    .map(|j| sims.iter().map(|s| s[j]).fold(f32::MIN, f32::max))
                    .sum::<f32>()
                    / rows.len().max(1) as f32;
                b.push(dq);
                b
            })
            .collect();
        per_q.push((w, bests));
    }
    for lam in [0.0f32, 0.25, 0.5, 1.0] {
        let r = tuned(
            base,
            per_q.iter().map(|(_, bests)| {
                bests
                    .iter()
                    .map(|b| {
                        let (qd, dq) = b.split_at(b.len() - 1);
                        qd.iter().sum::<f32>() / qd.len().max(1) as f32 + lam * dq[0]
                    })
                    .collect()
            }),
        );
        println!(
            "query->passage + {lam:.2} passage->query: best depth {} weight {:.1}: train {:.4}, 5-fold held-out {:.4}",
            r.depth, r.weight, r.train_score, r.cv_score
        );
    }
    // Blend normalisation: z-score within the head instead of min-max, weights 0.1..1.
    for norm in [pinpoint::Norm::MinMax, pinpoint::Norm::ZScore] {
        let mut best = (0.0f64, 0.0f32);
        for wi in 1..=10 {
            let w = wi as f32 / 10.0;
            let mut sum = 0.0;
            for (q, (_, bests)) in base.iter().zip(&per_q) {
                let n = bests.len().min(q.fused.len());
                let head: Vec<(u64, f32)> = q.fused[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, x)| (i as u64, x.1))
                    .collect();
                let ms: Vec<(u64, f32)> = bests
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let qd = &b[..b.len() - 1];
                        (i as u64, qd.iter().sum::<f32>() / qd.len().max(1) as f32)
                    })
                    .collect();
                let fz = pinpoint::fuse::normalize(&head, norm);
                let rz = pinpoint::fuse::normalize(&ms, norm);
                let mut order: Vec<(usize, f32)> = fz
                    .iter()
                    .zip(&rz)
                    .map(|(f, r)| (f.0 as usize, w * r.1 + (1.0 - w) * f.1))
                    .collect();
                order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let mut ranked: Vec<String> =
                    order.iter().map(|(i, _)| q.fused[*i].0.clone()).collect();
                ranked.extend(q.fused[n..].iter().map(|x| x.0.clone()));
                ranked.retain(|d| *d != q.qid);
                sum += pinpoint::eval::metrics::ndcg(&ranked, &q.rels, 10);
            }
            let m = sum / base.len() as f64;
            if m > best.0 {
                best = (m, w);
            }
        }
        println!(
            "blend {norm:?}: best weight {:.1}: train {:.4}",
            best.1, best.0
        );
    }
    let per_q: Vec<(Vec<f32>, Vec<Vec<f32>>)> = per_q
        .into_iter()
        .map(|(w, bs)| {
            let bs = bs
                .into_iter()
                .map(|mut b| {
                    b.pop();
                    b
                })
                .collect();
            (w, bs)
        })
        .collect();
    for (name, pw) in [
        ("uniform", 0.0f32),
        ("idf^0.5", 0.5),
        ("idf", 1.0),
        ("idf^2", 2.0),
    ] {
        let r = tuned(
            base,
            per_q.iter().map(|(w, bests)| {
                let ws: Vec<f32> = w.iter().map(|x| x.max(1e-6).powf(pw)).collect();
                let tot: f32 = ws.iter().sum::<f32>().max(1e-9);
                bests
                    .iter()
                    .map(|b| b.iter().zip(&ws).map(|(s, w)| s * w).sum::<f32>() / tot)
                    .collect()
            }),
        );
        println!(
            "query tokens weighted {name:<8} best depth {} weight {:.1}: train {:.4}, 5-fold held-out {:.4}, none {:.4}",
            r.depth, r.weight, r.train_score, r.cv_score, r.none_score
        );
    }
}

/// One head document's (MaxSim, ordered-pair, window-pair) scores.
type HeadFeatures = (f32, f32, f32);

/// Term proximity (the ordered and unordered windows of the sequential dependence model):
/// for each adjacent pair of analysed query terms, how often they occur as a bigram and
/// within 8 positions in the document, BM25-saturated and weighted by the rarer term's IDF.
/// Scored alone and added to the token MaxSim on the fused head.
fn proximity(
    engine: &Engine,
    ds: &Dataset,
    base: &[RerankFeatures],
    qtoks: &[TokenMatrix],
    toks: &[TokenMatrix],
    doc_chunks: &HashMap<&str, Vec<usize>>,
) {
    use pinpoint::lexical::LexicalIndex;
    let store = engine.segments();
    let n = store.len();
    let chunk_terms: Vec<Vec<String>> = (0..n)
        .map(|p| LexicalIndex::terms(&store.get(p).expect("chunk").text))
        .collect();
    let mut df: HashMap<&str, f32> = HashMap::new();
    for t in &chunk_terms {
        let mut u: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
        u.sort_unstable();
        u.dedup();
        for w in u {
            *df.entry(w).or_default() += 1.0;
        }
    }
    let idf = |w: &str| {
        let d = df.get(w).copied().unwrap_or(0.0);
        (1.0 + (n as f32 - d + 0.5) / (d + 0.5)).ln()
    };
    let labelled = beir_labelled(ds);
    let dim = qtoks
        .iter()
        .find(|m| m.dim > 0)
        .map(|m| m.dim)
        .unwrap_or(384);
    let signed = |p: usize| TokenMatrix {
        dim,
        data: toks[p]
            .rows()
            .flat_map(|r| unit(r.iter().map(|x| x.signum()).collect()))
            .collect(),
    };
    // Per query, per head document: (MaxSim, ordered, unordered).
    let feats: Vec<Vec<HeadFeatures>> = base
        .iter()
        .zip(qtoks)
        .zip(&labelled)
        .map(|((q, qt), (_, text, _))| {
            let qterms = LexicalIndex::terms(text);
            let pairs: Vec<(&str, &str, f32)> = qterms
                .windows(2)
                .filter(|w| w[0] != w[1])
                .map(|w| (w[0].as_str(), w[1].as_str(), idf(&w[0]).min(idf(&w[1]))))
                .collect();
            q.fused
                .iter()
                .take(20)
                .map(|(d, _)| {
                    let ps = doc_chunks.get(d.as_str()).cloned().unwrap_or_default();
                    let parts: Vec<TokenMatrix> = ps.iter().map(|&p| signed(p)).collect();
                    let ms = pinpoint::rerank::maxsim(qt, &parts);
                    let (mut od, mut uw) = (0.0f32, 0.0f32);
                    for (a, b, w) in &pairs {
                        let (mut o, mut u) = (0.0f32, 0.0f32);
                        for &p in &ps {
                            let t = &chunk_terms[p];
                            for (i, x) in t.iter().enumerate() {
                                if x == a {
                                    if t.get(i + 1).map(|y| y == b).unwrap_or(false) {
                                        o += 1.0;
                                    }
                                    let lo = i.saturating_sub(7);
                                    let hi = (i + 8).min(t.len());
                                    if t[lo..hi].iter().any(|y| y == b) {
                                        u += 1.0;
                                    }
                                }
                            }
                        }
                        od += w * o / (o + 1.2);
                        uw += w * u / (u + 1.2);
                    }
                    (ms, od, uw)
                })
                .collect()
        })
        .collect();
    let mm = |v: Vec<f32>| -> Vec<f32> {
        let lo = v.iter().copied().fold(f32::MAX, f32::min);
        let hi = v.iter().copied().fold(f32::MIN, f32::max);
        v.iter()
            .map(|x| if hi > lo { (x - lo) / (hi - lo) } else { 0.0 })
            .collect()
    };
    let report = |name: &str, f: &dyn Fn(&[HeadFeatures]) -> Vec<f32>| {
        let r = tuned(base, feats.iter().map(|h| f(h)));
        println!(
            "{name:<40} best depth {} weight {:.1}: train {:.4}, 5-fold held-out {:.4}, none {:.4}",
            r.depth, r.weight, r.train_score, r.cv_score, r.none_score
        );
    };
    report("MaxSim (shipped)", &|h| h.iter().map(|x| x.0).collect());
    report("ordered pairs alone", &|h| h.iter().map(|x| x.1).collect());
    report("unordered window 8 alone", &|h| {
        h.iter().map(|x| x.2).collect()
    });
    for lam in [0.1f32, 0.2, 0.3, 0.5] {
        for (name, which) in [("ordered", 1usize), ("window", 2)] {
            report(&format!("MaxSim + {lam:.1} x {name}"), &|h| {
                let a = mm(h.iter().map(|x| x.0).collect());
                let b = mm(h
                    .iter()
                    .map(|x| if which == 1 { x.1 } else { x.2 })
                    .collect());
                a.iter().zip(&b).map(|(a, b)| a + lam * b).collect()
            });
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine =
        Engine::open_read_only(Path::new(&args[1]), EngineConfig::default()).expect("index");
    let ds = Dataset::load_beir(Path::new(&args[2]), &args[3]).expect("dataset");
    let cache = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| "/tmp/pinpoint-tokens.f32".into());
    let toks = load_or_encode(&engine, Path::new(&cache));
    let dim = toks
        .iter()
        .find(|m| m.dim > 0)
        .map(|m| m.dim)
        .unwrap_or(384);
    let (toks, pieces) = if std::env::var("PP_PRUNE").is_ok() {
        prune(&engine, toks)
    } else {
        (toks, Vec::new())
    };
    // PP_CENTROID=t: a token within Hamming t of its piece's majority code is that code
    // (PP_CENTROID_MIN=n: pieces seen n times or more; 2 by default).
    let toks = match std::env::var("PP_CENTROID")
        .ok()
        .and_then(|t| t.parse().ok())
    {
        Some(t) => {
            let min = std::env::var("PP_CENTROID_MIN")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(2);
            let chunks = toks.len().max(1) as f64;
            // PP_CENTROID_FROM=f: the codebook voted by the first share f of the chunks.
            let from: f64 = std::env::var("PP_CENTROID_FROM")
                .ok()
                .and_then(|f| f.parse().ok())
                .unwrap_or(1.0);
            let voters = (toks.len() as f64 * from).ceil() as usize;
            let (toks, st) = sign_codes::substitute(toks, &pieces, t, min, voters);
            let kept = st.tokens - st.replaced;
            // 48 bytes a kept code, a flag bit a token, 48 bytes a codebook entry.
            let bytes = kept as f64 * 48.0 + st.tokens as f64 / 8.0 + st.codebook as f64 * 48.0;
            eprintln!(
                "centroid at Hamming {t} (pieces used {min}+ times): {} of {} tokens replaced ({:.1}%), codebook {} pieces; {:.2} KB a chunk (codebook {:.2})",
                st.replaced,
                st.tokens,
                100.0 * st.replaced as f64 / st.tokens.max(1) as f64,
                st.codebook,
                bytes / chunks / 1000.0,
                st.codebook as f64 * 48.0 / chunks / 1000.0
            );
            toks
        }
        None => toks,
    };
    let toks = match std::env::var("PP_DEDUP").ok().and_then(|t| t.parse().ok()) {
        Some(t) => sign_codes::dedup(toks, t),
        None => toks,
    };
    if std::env::var("PP_CENTROID").is_ok() {
        // What is stored after every reduction: a row that is a piece's code (every entry
        // +-1/sqrt(dim)) costs a flag, any other its 48 bytes.
        let (mut own, mut all) = (0usize, 0usize);
        for m in &toks {
            for r in m.rows() {
                all += 1;
                let s = 1.0 / (r.len() as f32).sqrt();
                if r.iter().any(|x| (x.abs() - s).abs() > 1e-6) {
                    own += 1;
                }
            }
        }
        eprintln!(
            "stored: {own} own codes of {all} rows; {:.2} KB a chunk before the codebook",
            (own as f64 * 48.0 + all as f64 / 8.0) / toks.len().max(1) as f64 / 1000.0
        );
    }
    let toks = match std::env::var("PP_KCENTER")
        .ok()
        .and_then(|k| k.parse().ok())
    {
        Some(k) => sign_codes::kcenter(toks, k),
        None => toks,
    };
    let total: usize = toks.iter().map(|m| m.len()).sum();
    eprintln!("{} chunks, {total} tokens, dim {dim}", toks.len());

    // Per-dimension spread, for the clipping range of the scalar quantisers.
    let mut sq = vec![0f64; dim];
    for m in &toks {
        for r in m.rows() {
            for (s, x) in sq.iter_mut().zip(r) {
                *s += (*x as f64) * (*x as f64);
            }
        }
    }
    let rms = (sq.iter().sum::<f64>() / (dim as f64 * total as f64)).sqrt() as f32;
    eprintln!("rms per dim {rms:.4}");

    let doc_chunks: HashMap<&str, Vec<usize>> = engine
        .document_positions()
        .expect("documents")
        .map(|(k, ps)| (k, ps.iter().map(|&p| p as usize).collect()))
        .collect();

    let t0 = Instant::now();
    let recall_depth: Option<usize> = std::env::var("PP_RECALL").ok().and_then(|d| d.parse().ok());
    let no_rerank = Pipeline {
        rerank: None,
        ..Pipeline::default()
    };
    let base = collect_rerank(
        &engine,
        &beir_labelled(&ds),
        &no_rerank,
        recall_depth.unwrap_or(100),
    )
    .expect("search");
    eprintln!(
        "{} queries searched in {:.0} s",
        base.len(),
        t0.elapsed().as_secs_f64()
    );
    let e = engine.embedder().expect("model");
    let qtoks: Vec<TokenMatrix> = beir_labelled(&ds)
        .iter()
        .map(|(_, text, _)| {
            // PP_QMASK=N: ColBERT-style query augmentation with N [MASK] tokens.
            let masks: usize = std::env::var("PP_QMASK")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let text = format!("{text}{}", " [MASK]".repeat(masks));
            e.embed_tokens(&[text.as_str()])
                .expect("q")
                .pop()
                .unwrap_or_default()
        })
        .collect();

    if std::env::var("PP_PROX").is_ok() {
        proximity(&engine, &ds, &base, &qtoks, &toks, &doc_chunks);
        return;
    }
    if std::env::var("PP_IDF").is_ok() {
        idf_weighting(&engine, &ds, &base, &qtoks, &toks, &doc_chunks);
        return;
    }
    let sign = |v: &[f32], k: usize| -> Vec<f32> {
        let mut o: Vec<f32> = v.iter().take(k).map(|x| x.signum()).collect();
        o.resize(v.len(), 0.0);
        unit(o)
    };
    // Per-dimension threshold and the two reconstruction levels (the conditional means on
    // each side), for the asymmetric 1-bit codecs: a dimension whose values sit off zero
    // keeps its information when split at its own mean rather than at zero.
    let stats = |centre: bool| -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut mean = vec![0f64; dim];
        for m in &toks {
            for r in m.rows() {
                for (s, x) in mean.iter_mut().zip(r) {
                    *s += *x as f64;
                }
            }
        }
        let t: Vec<f32> = mean
            .iter()
            .map(|s| {
                if centre {
                    (s / total as f64) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let (mut hs, mut hn, mut ls, mut ln) = (
            vec![0f64; dim],
            vec![0f64; dim],
            vec![0f64; dim],
            vec![0f64; dim],
        );
        for m in &toks {
            for r in m.rows() {
                for (i, x) in r.iter().enumerate() {
                    if *x >= t[i] {
                        hs[i] += *x as f64;
                        hn[i] += 1.0;
                    } else {
                        ls[i] += *x as f64;
                        ln[i] += 1.0;
                    }
                }
            }
        }
        let hi = (0..dim).map(|i| (hs[i] / hn[i].max(1.0)) as f32).collect();
        let lo = (0..dim).map(|i| (ls[i] / ln[i].max(1.0)) as f32).collect();
        (t, hi, lo)
    };
    let two_level = |(t, hi, lo): (Vec<f32>, Vec<f32>, Vec<f32>)| -> Codec {
        Box::new(move |v: &[f32]| {
            v.iter()
                .enumerate()
                .map(|(i, x)| if *x >= t[i] { hi[i] } else { lo[i] })
                .collect()
        })
    };
    let centred_sign = |(t, _, _): (Vec<f32>, Vec<f32>, Vec<f32>)| -> Codec {
        Box::new(move |v: &[f32]| {
            unit(
                v.iter()
                    .zip(&t)
                    .map(|(x, t)| if x >= t { 1.0 } else { -1.0 })
                    .collect(),
            )
        })
    };
    // PP_CODECS=budget: codes of 128-192 bits. A projection's code is the signs of a token's
    // dot products with orthonormal rows `r_i`, decoded as `sum_i s_i r_i` so that the float
    // query scores it as it would score the projected query against the signs.
    let project = |rows: Vec<Vec<f32>>| -> Codec {
        Box::new(move |v: &[f32]| {
            let mut out = vec![0f32; v.len()];
            for r in &rows {
                let d: f32 = v.iter().zip(r).map(|(a, b)| a * b).sum();
                let s = if d > 0.0 { 1.0 } else { -1.0 };
                out.iter_mut().zip(r).for_each(|(o, x)| *o += s * x);
            }
            unit(out)
        })
    };
    let random_rows = |k: usize| -> Vec<Vec<f32>> {
        let p = pinpoint::late::TokenProjection::new(dim, k);
        (0..k).map(|i| p.direction(i).to_vec()).collect()
    };
    let pca = |k: usize| -> Vec<Vec<f32>> { top_eigvecs(&toks, dim, k) };
    // The top-k principal directions rotated by a fixed random rotation of their span, so
    // that each bit carries a similar share of the variance (the PCA-RR of ITQ's paper).
    let pca_rotated = |k: usize| -> Vec<Vec<f32>> {
        let u = pca(k);
        let r = pinpoint::late::TokenProjection::new(k, k);
        (0..k)
            .map(|i| {
                let ri = r.direction(i);
                (0..dim)
                    .map(|c| (0..k).map(|j| ri[j] * u[j][c]).sum())
                    .collect()
            })
            .collect()
    };
    let codecs: Vec<(&str, Codec)> = match std::env::var("PP_CODECS").as_deref() {
        Ok("pq") => vec![
            ("f32", Box::new(|v: &[f32]| v.to_vec())),
            ("1-bit sign, 384", Box::new(move |v: &[f32]| sign(v, 384))),
            ("pq 48 x 8 bits (48 B)", pq_codec(&toks, dim, 48, 200_000)),
            ("pq 32 x 8 bits (32 B)", pq_codec(&toks, dim, 32, 200_000)),
            ("pq 24 x 8 bits (24 B)", pq_codec(&toks, dim, 24, 200_000)),
            ("pq 16 x 8 bits (16 B)", pq_codec(&toks, dim, 16, 200_000)),
        ],
        Ok("sign") => vec![("1-bit sign, 384", Box::new(move |v: &[f32]| sign(v, 384)))],
        Ok("proj") => vec![
            ("1-bit sign, 384", Box::new(move |v: &[f32]| sign(v, 384))),
            ("random proj 192", project(random_rows(192))),
            ("random proj 256", project(random_rows(256))),
        ],
        Ok("budget") => vec![
            ("1-bit sign, 384", Box::new(move |v: &[f32]| sign(v, 384))),
            ("random proj 128", project(random_rows(128))),
            ("pca 128", project(pca(128))),
            ("pca 128 rotated", project(pca_rotated(128))),
            ("random proj 192", project(random_rows(192))),
            ("pca 192 rotated", project(pca_rotated(192))),
        ],
        Ok("centred") => vec![
            ("f32", Box::new(|v: &[f32]| v.to_vec())),
            ("1-bit sign", Box::new(move |v: &[f32]| sign(v, 384))),
            ("1-bit, split at mean, +-1", centred_sign(stats(true))),
            ("1-bit, split at 0, cond. means", two_level(stats(false))),
            ("1-bit, split at mean, cond. means", two_level(stats(true))),
            (
                "2-bit uniform, clip 2 rms",
                Box::new(move |v: &[f32]| unit(uniform(v, 2, 2.0 * rms))),
            ),
        ],
        Ok("small") => vec![
            (
                "1-bit sign, all 384 dims",
                Box::new(move |v: &[f32]| sign(v, 384)),
            ),
            (
                "1-bit sign, first 256 dims",
                Box::new(move |v: &[f32]| sign(v, 256)),
            ),
            (
                "1-bit sign, first 192 dims",
                Box::new(move |v: &[f32]| sign(v, 192)),
            ),
            (
                "1-bit sign, first 128 dims",
                Box::new(move |v: &[f32]| sign(v, 128)),
            ),
        ],
        _ => vec![
            ("f32", Box::new(|v: &[f32]| v.to_vec())),
            (
                "int8 (per-token max scale)",
                Box::new(|v: &[f32]| {
                    let m = v.iter().fold(0f32, |a, x| a.max(x.abs())).max(1e-9);
                    unit(
                        v.iter()
                            .map(|x| (x / m * 127.0).round() / 127.0 * m)
                            .collect(),
                    )
                }),
            ),
            (
                "4-bit uniform, clip 3 rms",
                Box::new(move |v: &[f32]| unit(uniform(v, 4, 3.0 * rms))),
            ),
            (
                "2-bit uniform, clip 2 rms",
                Box::new(move |v: &[f32]| unit(uniform(v, 2, 2.0 * rms))),
            ),
            ("1-bit sign", Box::new(move |v: &[f32]| sign(v, 384))),
        ],
    };
    if let Some(rd) = recall_depth {
        let codec = |v: &[f32]| sign(v, 384);
        let ms = |qt: &TokenMatrix, d: &str| {
            pinpoint::rerank::maxsim(qt, &coded_parts(&doc_chunks, &toks, d, &codec))
        };
        let all: Vec<Vec<f32>> = base
            .iter()
            .zip(&qtoks)
            .map(|(q, qt)| q.fused.iter().map(|(d, _)| ms(qt, d)).collect())
            .collect();
        for depth in [20usize, 50, 100, 150, rd] {
            for w in [0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6] {
                let (mut r, mut n) = (0.0, 0.0);
                for (q, sc) in base.iter().zip(&all) {
                    let fused: Vec<(u64, f32)> = q
                        .fused
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (i as u64, x.1))
                        .collect();
                    let k = depth.min(sc.len());
                    let order = pinpoint::engine::blend_rerank(&fused, &sc[..k], w);
                    let ranked: Vec<String> = order
                        .iter()
                        .map(|(i, _)| q.fused[*i as usize].0.clone())
                        .filter(|d| *d != q.qid)
                        .collect();
                    r += pinpoint::eval::metrics::recall(&ranked, &q.rels, 100);
                    n += pinpoint::eval::metrics::ndcg(&ranked, &q.rels, 10);
                }
                let c = base.len() as f64;
                println!(
                    "blend depth {depth:>3} weight {w:.1}: R@100 {:.4} nDCG@10 {:.4}",
                    r / c,
                    n / c
                );
            }
        }
        return;
    }
    let mut reference: Option<Vec<Vec<f32>>> = None;
    // PP_MAXP=1: a document's MaxSim is its best chunk's, not that of all its tokens.
    let maxp = std::env::var("PP_MAXP").is_ok();
    let same: Codec = Box::new(|v: &[f32]| v.to_vec());
    for (name, codec) in &codecs {
        let t = Instant::now();
        // Every token coded once, not once per query that ranks its document.
        use rayon::prelude::*;
        let coded: Vec<TokenMatrix> = toks
            .par_iter()
            .map(|m| TokenMatrix {
                dim: m.dim,
                data: m.rows().flat_map(codec).collect(),
            })
            .collect();
        let codec = &same;
        let toks = &coded;
        let scores: Vec<Vec<f32>> = base
            .iter()
            .zip(&qtoks)
            .map(|(q, qt)| {
                q.fused
                    .iter()
                    .take(20)
                    .map(|(d, _)| {
                        let parts = coded_parts(&doc_chunks, toks, d, codec);
                        if maxp {
                            // The document scores as its best chunk (MaxP).
                            pinpoint::rerank::best_part(&parts, |c| {
                                pinpoint::rerank::maxsim(qt, std::slice::from_ref(c))
                            })
                        } else {
                            pinpoint::rerank::maxsim(qt, &parts)
                        }
                    })
                    .collect()
            })
            .collect();
        // Label-free fidelity: the share of head pairs ordered as the first codec (f32)
        // orders them.
        let reference = reference.get_or_insert_with(|| scores.clone());
        let (mut same, mut pairs) = (0usize, 0usize);
        for (a, b) in reference.iter().zip(&scores) {
            for i in 0..a.len() {
                for j in i + 1..a.len() {
                    pairs += 1;
                    if (a[i] - a[j]) * (b[i] - b[j]) > 0.0 {
                        same += 1;
                    }
                }
            }
        }
        let r = tuned(&base, scores.into_iter());
        println!(
            "{name:<34} pairs as f32 {:.4}; best depth {} weight {:.1}: {} {:.4}, 5-fold held-out {:.4}, none {:.4} ({:.0} s)",
            same as f64 / pairs.max(1) as f64,
            r.depth,
            r.weight,
            args[3],
            r.train_score,
            r.cv_score,
            r.none_score,
            t.elapsed().as_secs_f64()
        );
    }
}
