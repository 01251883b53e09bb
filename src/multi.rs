//! One question over several index folders: separate indexes (notes, a codebase, papers
//! built apart), or the shards of one index built in parallel.
//!
//! Each index answers the question as `query` would on it alone (its own defaults, its own
//! cut-off). Separate indexes' answers are then fused by reciprocal rank (k = 60), never
//! by score: BM25 and fused scores are only comparable inside one index (each has its own
//! term statistics and score distribution), while a passage's rank in its own index means
//! the same thing everywhere. The shards of one folder ([`MultiIndex::plain_paths`]) are
//! the exception: a random split of one corpus gives each shard the same score scales, so
//! their hits are merged by the engine's own blend of fused and reranker scores over their
//! union ([`merge_shards`]); ranks would give every shard's first hit a first place. Passages of equal rank (every index's first, say) are ordered by their
//! cosine with the question, the one score the indexes share: the same model embedded
//! them all. Indexes built with different embedding models are refused: their dense legs
//! answer in different spaces. Paths are prefixed with the index folder's name (two indexes
//! may both hold a `README.md`), unless [`MultiIndex::plain_paths`] says they cannot clash
//! (the shards of one folder).
//!
//! Not for: fusing inside one index ([`crate::fuse`]), or searching named collections of
//! one index.

use std::path::{Path, PathBuf};

use crate::api::QueryOptions;
use crate::engine::{Engine, EngineConfig, Hit, Mode, SearchOutput};
use crate::error::{Error, Result};
use crate::fuse::{fuse, Fusion};

/// Several index folders searched as one.
pub struct MultiIndex {
    parts: Vec<(String, Engine)>,
    plain: bool,
}

impl MultiIndex {
    /// Opens each folder read-only. The model is loaded once and shared; an index built
    /// with another model, or a folder named twice, is an error naming it.
    pub fn open_read_only(dirs: &[PathBuf], cfg: EngineConfig) -> Result<MultiIndex> {
        if dirs.is_empty() {
            return Err(Error::invalid("index", "no index folder given"));
        }
        let mut parts: Vec<(String, Engine)> = Vec::new();
        // One loaded encoder per precision: indexes built in int8 and in f32 share the
        // model but not the arithmetic their queries must be embedded in.
        let mut shared: std::collections::HashMap<
            crate::quant::Precision,
            std::sync::Arc<dyn crate::embed::Embedder>,
        > = std::collections::HashMap::new();
        let given = cfg.embedder.clone();
        let mut seen: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            if seen.contains(&canonical) {
                return Err(Error::invalid(
                    "index",
                    format!("{} is named twice", dir.display()),
                ));
            }
            seen.push(canonical);
            let precision = crate::store::Manifest::read(&dir.join("manifest.json"))
                .map(|m| m.precision)
                .ok();
            let mut cfg = cfg.clone();
            if given.is_none() {
                cfg.embedder = precision.and_then(|p| shared.get(&p).cloned());
            }
            let e = Engine::open_read_only(dir, cfg)?;
            if let Some((first_dir, first)) = parts.first() {
                let (a, b) = (&first.manifest().model, &e.manifest().model);
                if a.id != b.id || a.dim != b.dim {
                    return Err(Error::invalid(
                        "index",
                        format!(
                            "{} was built with model {} ({} dimensions), {} with {} ({}): \
                             indexes searched together must share their model",
                            first_dir,
                            a.id,
                            a.dim,
                            dir.display(),
                            b.id,
                            b.dim
                        ),
                    ));
                }
            }
            if given.is_none() && !e.segments().is_empty() {
                // One model per precision: loaded by the first index that holds anything.
                let p = e.manifest().precision;
                if let std::collections::hash_map::Entry::Vacant(slot) = shared.entry(p) {
                    slot.insert(e.embedder()?.clone());
                }
            }
            parts.push((label(dir), e));
        }
        let mut labels: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
        labels.sort_unstable();
        if labels.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::invalid(
                "index",
                "two index folders have the same name; paths would be ambiguous (rename one)",
            ));
        }
        Ok(MultiIndex {
            parts,
            plain: false,
        })
    }

    /// Hand paths over as each index stores them, without the index's name in front: for
    /// the shards of one folder, whose paths cannot clash.
    pub fn plain_paths(mut self, on: bool) -> MultiIndex {
        self.plain = on;
        self
    }

    /// The indexes, with the names their paths are prefixed with.
    pub fn parts(&self) -> impl Iterator<Item = (&str, &Engine)> {
        self.parts.iter().map(|(l, e)| (l.as_str(), e))
    }

    /// Answers `text` with `opts` on every index and fuses the answers by rank. The answer
    /// holds at most `k` passages; each hit's score is its fused reciprocal-rank score.
    pub fn search(&self, text: &str, opts: &QueryOptions) -> Result<(Mode, SearchOutput)> {
        let mut mode = Mode::Hybrid;
        let mut k = crate::api::DEFAULT_K;
        let mut answers: Vec<SearchOutput> = Vec::with_capacity(self.parts.len());
        let asked_explain = opts.explain;
        for (_, e) in &self.parts {
            let mut req = opts.request(e, text)?;
            // The shard merge reads each hit's fused and reranker scores.
            req.explain |= self.plain;
            mode = req.mode;
            k = req.k;
            answers.push(e.search_detailed(&req)?);
        }
        // The question's vector, once: every index embeds with the same model.
        let qvec = match self.parts.iter().find(|(_, e)| !e.segments().is_empty()) {
            Some((_, e)) => Some(e.embedder()?.embed_query(text)?),
            None => None,
        };
        let cosine = |i: usize, h: &Hit| -> f32 {
            let e = &self.parts[i].1;
            match (&qvec, e.segments().position(h.chunk_id)) {
                (Some(q), Some(pos)) => crate::embed::dot(e.segments().row(pos), q),
                _ => f32::MIN,
            }
        };
        let cosines: Vec<Vec<f32>> = answers
            .iter()
            .enumerate()
            .map(|(i, a)| a.hits.iter().map(|h| cosine(i, h)).collect())
            .collect();
        let fused = if self.plain {
            let hits: Vec<Vec<ShardHit>> = answers
                .iter()
                .zip(&cosines)
                .map(|(a, c)| {
                    a.hits
                        .iter()
                        .zip(c)
                        .map(|(h, &cosine)| shard_hit(h, cosine))
                        .collect()
                })
                .collect();
            merge_shards(&hits, k)
        } else {
            fuse_by_rank(&cosines, k)
        };
        let mut out = SearchOutput::default();
        for (i, r, score) in fused {
            let Some(h) = answers.get(i).and_then(|a| a.hits.get(r)) else {
                continue;
            };
            let path = if self.plain {
                h.path.clone()
            } else {
                format!("{}/{}", self.parts[i].0, h.path)
            };
            out.hits.push(Hit {
                rank: out.hits.len() + 1,
                path,
                score,
                explain: if asked_explain {
                    h.explain.clone()
                } else {
                    None
                },
                ..h.clone()
            });
        }
        // A note stands when every index gave one and nothing came back (all empty or all
        // abstaining); otherwise the passages speak.
        if out.hits.is_empty() {
            out.note = answers.iter().find_map(|a| a.note.clone());
        }
        Ok((mode, out))
    }
}

/// What [`merge_shards`] reads of a hit (its explanation's scores).
fn shard_hit(h: &Hit, cosine: f32) -> ShardHit {
    match &h.explain {
        Some(x) => ShardHit {
            fused: x.fused_score,
            rerank: x.rerank_score,
            cosine,
            weight: x.rerank_weight,
        },
        None => ShardHit {
            fused: h.score,
            rerank: None,
            cosine,
            weight: 0.0,
        },
    }
}

/// The fusion rule of several answers to one question, as `(answer, rank in it, fused
/// score)` for the best `k`: reciprocal rank (k = 60) over each answer's order, ties (the
/// same rank in two answers) ordered by the passage's cosine with the question
/// (`cosines[answer][rank]`), then by answer. Shared by [`MultiIndex::search`] and by
/// front ends that gather answers from shards elsewhere (the Python package's router).
pub fn fuse_by_rank(cosines: &[Vec<f32>], k: usize) -> Vec<(usize, usize, f32)> {
    // Keys: (answer, rank within it).
    let lists: Vec<Vec<(u64, f32)>> = cosines
        .iter()
        .enumerate()
        .map(|(i, a)| {
            (0..a.len())
                .map(|r| (((i as u64) << 32) | r as u64, 0.0))
                .collect()
        })
        .collect();
    let refs: Vec<&[(u64, f32)]> = lists.iter().map(|l| l.as_slice()).collect();
    let mut fused: Vec<(u64, f32, f32)> = fuse(&refs, &Fusion::default())
        .into_iter()
        .map(|(key, score)| {
            let (i, r) = ((key >> 32) as usize, (key & 0xffff_ffff) as usize);
            let cos = cosines
                .get(i)
                .and_then(|c| c.get(r))
                .copied()
                .unwrap_or(f32::MIN);
            (key, score, cos)
        })
        .collect();
    fused.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(b.2.total_cmp(&a.2))
            .then(a.0.cmp(&b.0))
    });
    fused
        .into_iter()
        .take(k)
        .map(|(key, score, _)| ((key >> 32) as usize, (key & 0xffff_ffff) as usize, score))
        .collect()
}

/// What the shard merge needs of one hit: its fused score (the z-score fusion of BM25 and
/// cosine, whose scale a random shard of a folder shares with its siblings), its reranker
/// score (token MaxSim, an absolute measure) when it was in the reranked head, its cosine
/// with the question, and the weight its shard blended the reranker with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardHit {
    /// Fused score.
    pub fused: f32,
    /// Reranker score, when reranked.
    pub rerank: Option<f32>,
    /// Cosine with the question.
    pub cosine: f32,
    /// The blend weight of the reranker in its shard (0 without one).
    pub weight: f32,
}

/// The merge rule of the shards of one folder, as `(answer, rank in it, score)` for the
/// best `k`: the engine's own head blend ([`crate::engine::blend_rerank`]) applied to the
/// union of the shards' hits: min-max of the fused scores and of the reranker scores over
/// all of them, blended by the reranker's weight; hits without a reranker score follow,
/// by fused score. Why not ranks: every shard's first hit would share the first places
/// whatever its score, which cost 0.069 nDCG@10 on SciFact in 4 shards; this rule is
/// within noise of one index (docs/decisions.md, "Merging shards").
pub fn merge_shards(hits: &[Vec<ShardHit>], k: usize) -> Vec<(usize, usize, f32)> {
    let all: Vec<(usize, usize, ShardHit)> = hits
        .iter()
        .enumerate()
        .flat_map(|(i, h)| h.iter().enumerate().map(move |(r, x)| (i, r, *x)))
        .collect();
    let minmax = |v: &[f32]| -> Vec<f32> {
        let (lo, hi) = v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        v.iter()
            .map(|&x| if hi > lo { (x - lo) / (hi - lo) } else { 1.0 })
            .collect()
    };
    let (head, tail): (Vec<_>, Vec<_>) = all.into_iter().partition(|h| h.2.rerank.is_some());
    let weight = head
        .iter()
        .map(|h| h.2.weight)
        .fold(0.0f32, f32::max)
        .clamp(0.0, 1.0);
    let f = minmax(&head.iter().map(|h| h.2.fused).collect::<Vec<_>>());
    let r = minmax(
        &head
            .iter()
            .map(|h| h.2.rerank.unwrap_or(0.0))
            .collect::<Vec<_>>(),
    );
    let mut scored: Vec<(usize, usize, f32, f32)> = head
        .iter()
        .zip(f.iter().zip(&r))
        .map(|(h, (f, r))| (h.0, h.1, 1.0 + weight * r + (1.0 - weight) * f, h.2.cosine))
        .collect();
    let tf = minmax(&tail.iter().map(|h| h.2.fused).collect::<Vec<_>>());
    scored.extend(tail.iter().zip(tf).map(|(h, f)| (h.0, h.1, f, h.2.cosine)));
    scored.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then(b.3.total_cmp(&a.3))
            .then((a.0, a.1).cmp(&(b.0, b.1)))
    });
    scored
        .into_iter()
        .take(k)
        .map(|(i, r, s, _)| (i, r, s))
        .collect()
}

/// The name a folder's paths are prefixed with: its last component.
fn label(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .as_deref()
        .unwrap_or(dir)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string())
}
