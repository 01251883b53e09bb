//! Rerankers: re-score the top candidates of a query with a more expensive model.
//!
//! Four kinds behind one trait:
//! - [`CrossEncoder`]: a Hugging Face `BertForSequenceClassification` folder scoring
//!   `(query, passage)` pairs jointly (the strongest, when the user has one: none is
//!   obtainable on these machines, see docs/models.md);
//! - [`SentenceReranker`]: late interaction at sentence level with the bi-encoder we have:
//!   a passage scores as its best-matching sentence, which finds the one sentence that
//!   answers the question inside a long chunk;
//! - [`TokenReranker`]: token-level late interaction (MaxSim) with the same bi-encoder's
//!   contextual token vectors;
//! - [`Rules`]: user boosts by path glob and recency, applied to final scores.
//!
//! Not for: first-stage retrieval or selection ([`crate::select`]).

use std::path::Path;

use candle_core::{Device, Module};
use candle_nn::{linear, Linear};
use unicode_segmentation::UnicodeSegmentation;

use crate::embed::{dot, length_batches, BertCore, DeviceChoice, Embedder, Encoded, TokenMatrix};
use crate::error::{Error, Result};
use crate::models::ModelDir;

/// Re-scores passages for a query; higher is better.
pub trait Reranker: Send + Sync {
    /// Short name for explanations.
    fn name(&self) -> &str;
    /// One score per passage.
    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>>;
}

/// A BERT cross-encoder (`BertForSequenceClassification`): `[CLS] query [SEP] passage [SEP]`
/// through the encoder, the pooler (dense + tanh on `[CLS]`) when the checkpoint has one,
/// then the classifier. The score is the logit of the single label, or, for two labels, the
/// positive label's logit minus the negative one's (the log-odds).
pub struct CrossEncoder {
    core: BertCore,
    pooler: Option<Linear>,
    classifier: Linear,
    labels: usize,
    /// Pairs per forward pass.
    pub batch_size: usize,
}

#[derive(serde::Deserialize)]
struct ClsConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    num_labels: Option<usize>,
    #[serde(default)]
    id2label: Option<std::collections::HashMap<String, String>>,
    hidden_size: usize,
}

impl CrossEncoder {
    /// Loads a cross-encoder folder.
    pub fn load(dir: impl AsRef<Path>, device: DeviceChoice) -> Result<CrossEncoder> {
        let model = ModelDir::open(dir)?;
        let cfg: ClsConfig =
            serde_json::from_str(&model.config_json).map_err(|e| Error::Model {
                dir: model.dir.clone(),
                what: format!("config.json: {e}"),
            })?;
        if !cfg
            .architectures
            .iter()
            .any(|a| a.ends_with("ForSequenceClassification"))
        {
            return Err(Error::Model {
                dir: model.dir.clone(),
                what: format!(
                    "config.json architectures {:?} is not a cross-encoder (expected BertForSequenceClassification)",
                    cfg.architectures
                ),
            });
        }
        let labels = cfg
            .num_labels
            .or_else(|| cfg.id2label.as_ref().map(|m| m.len()))
            .unwrap_or(1)
            .max(1);
        let device = device.device()?;
        let (core, _bert_cfg, vb) = BertCore::load(&model, &device, crate::quant::Precision::F32)?;
        let h = cfg.hidden_size;
        let missing = |what: &str, e: candle_core::Error| Error::Model {
            dir: model.dir.clone(),
            what: format!("model.safetensors lacks the {what}: {e}"),
        };
        let pooler = if vb.contains_tensor("bert.pooler.dense.weight") {
            Some(linear(h, h, vb.pp("bert.pooler.dense")).map_err(|e| missing("pooler", e))?)
        } else {
            None
        };
        let classifier =
            linear(h, labels, vb.pp("classifier")).map_err(|e| missing("classifier head", e))?;
        Ok(CrossEncoder {
            core,
            pooler,
            classifier,
            labels,
            batch_size: 16,
        })
    }
}

impl Reranker for CrossEncoder {
    fn name(&self) -> &str {
        "cross-encoder"
    }

    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>> {
        let enc: Vec<Encoded> = passages
            .iter()
            .map(|p| self.core.encode_pair(query, p))
            .collect();
        let lens: Vec<usize> = enc.iter().map(|e| e.ids.len()).collect();
        let mut out = vec![0f32; passages.len()];
        for batch in length_batches(&lens, self.batch_size, self.batch_size * 256) {
            let refs: Vec<&Encoded> = batch.iter().map(|&i| &enc[i]).collect();
            let (hidden, _mask) = self.core.forward(&refs)?;
            let cls = hidden.narrow(1, 0, 1)?.squeeze(1)?;
            let pooled = match &self.pooler {
                Some(p) => p.forward(&cls)?.tanh()?,
                None => cls,
            };
            let logits: Vec<Vec<f32>> = self
                .classifier
                .forward(&pooled)?
                .to_device(&Device::Cpu)?
                .to_vec2()?;
            for (&i, l) in batch.iter().zip(logits) {
                out[i] = if self.labels >= 2 { l[1] - l[0] } else { l[0] };
            }
        }
        Ok(out)
    }
}

/// Splits text into sentences (UAX#29), dropping fragments without letters or digits.
pub fn sentences(text: &str) -> Vec<&str> {
    text.split_sentence_bounds()
        .map(str::trim)
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .collect()
}

/// Late interaction at sentence level with the bi-encoder: each passage is split into
/// sentences, each embedded as `title. sentence`, and the passage scores as its best
/// sentence's cosine with the query.
pub struct SentenceReranker<'a> {
    embedder: &'a dyn Embedder,
}

impl<'a> SentenceReranker<'a> {
    /// A sentence reranker over `embedder`.
    pub fn new(embedder: &'a dyn Embedder) -> Self {
        SentenceReranker { embedder }
    }

    /// Scores `(title, text)` passages against an embedded query.
    pub fn score_with_titles(
        &self,
        query_vec: &[f32],
        passages: &[(&str, &str)],
    ) -> Result<Vec<f32>> {
        let mut texts = Vec::new();
        let mut owner = Vec::new();
        for (i, (title, text)) in passages.iter().enumerate() {
            for s in sentences(text) {
                texts.push(if title.is_empty() {
                    s.to_string()
                } else {
                    format!("{title}. {s}")
                });
                owner.push(i);
            }
        }
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let vecs = self.embedder.embed_passages(&refs)?;
        let dim = self.embedder.dim();
        let mut best = vec![f32::MIN; passages.len()];
        for (j, &i) in owner.iter().enumerate() {
            best[i] = best[i].max(dot(&vecs[j * dim..(j + 1) * dim], query_vec));
        }
        Ok(best
            .into_iter()
            .map(|b| if b == f32::MIN { 0.0 } else { b })
            .collect())
    }
}

impl Reranker for SentenceReranker<'_> {
    fn name(&self) -> &str {
        "sentence"
    }
    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>> {
        let q = self.embedder.embed_query(query)?;
        let p: Vec<(&str, &str)> = passages.iter().map(|p| ("", *p)).collect();
        self.score_with_titles(&q, &p)
    }
}

/// Token-level late interaction (MaxSim, as in ColBERT) with the bi-encoder's contextual
/// token vectors: each query token finds its most similar passage token, and the passage
/// scores as the mean of those best similarities. A chunk vector averages a whole passage
/// into one point; MaxSim instead asks whether each part of the question is matched
/// somewhere, in context, which recovers passages whose pooled vector is diluted by other
/// content. all-MiniLM-L6-v2 was not trained for it; what it is still worth as a rerank
/// feature is measured in docs/decisions.md. This type encodes passages at query time (float
/// vectors, for any text); the engine scores indexed chunks from their stored codes instead
/// ([`crate::late::QueryCodes`]).
pub struct TokenReranker<'a> {
    embedder: &'a dyn Embedder,
}

impl<'a> TokenReranker<'a> {
    /// A token-level reranker over `embedder`.
    pub fn new(embedder: &'a dyn Embedder) -> Self {
        TokenReranker { embedder }
    }

    /// Scores passages made of parts (a document's chunks, each encoded on its own since
    /// the model reads at most `max_tokens`): a passage scores as its best part
    /// ([`best_part`]).
    pub fn score_parts(&self, query: &str, passages: &[Vec<String>]) -> Result<Vec<f32>> {
        let spec = self.embedder.spec();
        let (_, q) = self.embedder.embed_query_with_tokens(query)?;
        let texts: Vec<String> = passages
            .iter()
            .flatten()
            .map(|p| format!("{}{p}", spec.passage_prefix))
            .collect();
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let mut parts = self.embedder.embed_tokens(&refs)?.into_iter();
        Ok(passages
            .iter()
            .map(|p| {
                let mine: Vec<TokenMatrix> = parts.by_ref().take(p.len()).collect();
                best_part(&mine, |m| maxsim(&q, std::slice::from_ref(m)))
            })
            .collect())
    }
}

impl Reranker for TokenReranker<'_> {
    fn name(&self) -> &str {
        "tokens"
    }
    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>> {
        let p: Vec<Vec<String>> = passages.iter().map(|p| vec![p.to_string()]).collect();
        self.score_parts(query, &p)
    }
}

/// A document's score from its chunks' scores: its best chunk's (MaxP), as the dense leg
/// scores a document by its best chunk; 0 for a document without chunks. Pooling the
/// tokens of all chunks instead lets a long document find a match for every query token
/// somewhere, which favours length (SciFact train, 5 folds held out: 0.7482 pooled, 0.7499
/// best chunk; docs/decisions.md).
pub fn best_part<T>(parts: &[T], score: impl Fn(&T) -> f32) -> f32 {
    parts
        .iter()
        .map(score)
        .fold(None, |best: Option<f32>, s| {
            Some(best.map_or(s, |b| b.max(s)))
        })
        .unwrap_or(0.0)
}

/// MaxSim: the mean over the query's tokens of the best dot product with any token of any
/// of `parts` (one passage cut in pieces); 0 when either side has no tokens.
pub fn maxsim(query: &TokenMatrix, parts: &[TokenMatrix]) -> f32 {
    if query.is_empty() || parts.iter().all(TokenMatrix::is_empty) {
        return 0.0;
    }
    let total: f32 = query
        .rows()
        .map(|q| {
            parts
                .iter()
                .flat_map(TokenMatrix::rows)
                .map(|p| dot(q, p))
                .fold(f32::MIN, f32::max)
        })
        .sum();
    total / query.len() as f32
}

/// User rules applied to final scores: multiply by a factor when the path matches a glob,
/// and by a recency factor `2^(-age / half_life)` when a half-life is set. The engine
/// applies the factor to each candidate's min-max share of the final list (0 for the
/// lowest, 1 for the top), so that a boost raises a file and decay lowers it whatever the
/// sign of the fused score.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Rules {
    /// `(glob, factor)` pairs, e.g. `("docs/**", 1.5)`, `("**/*.test.js", 0.5)`.
    pub boosts: Vec<(String, f32)>,
    /// Half-life in days of the recency factor (none: off).
    pub recency_half_life_days: Option<f32>,
}

impl Rules {
    /// Parses `GLOB=FACTOR`.
    pub fn parse_boost(s: &str) -> Result<(String, f32)> {
        let (g, f) = s
            .rsplit_once('=')
            .ok_or_else(|| Error::invalid("boost", format!("{s:?} (expected GLOB=FACTOR)")))?;
        let f: f32 = f
            .parse()
            .map_err(|_| Error::invalid("boost", format!("{f:?} is not a number")))?;
        // A factor of 0 or below would reverse or erase the ranking it is applied to.
        if !(f.is_finite() && f > 0.0) {
            return Err(Error::invalid(
                "boost",
                format!("{f} (use a factor above 0: 2 doubles, 0.5 halves)"),
            ));
        }
        globset::Glob::new(g).map_err(|e| Error::invalid("boost glob", e.to_string()))?;
        Ok((g.to_string(), f))
    }

    /// True when no rule is set.
    pub fn is_empty(&self) -> bool {
        self.boosts.is_empty() && self.recency_half_life_days.is_none()
    }

    /// The factor for a document at `path` modified at `mtime_ns` (0: unknown) when it is
    /// now `now_ns`.
    pub fn factor(&self, path: &str, mtime_ns: i64, now_ns: i64) -> f32 {
        let mut f = 1.0;
        for (g, b) in &self.boosts {
            if let Ok(glob) = globset::Glob::new(g) {
                if glob.compile_matcher().is_match(path) {
                    f *= b;
                }
            }
        }
        if let (Some(h), true) = (self.recency_half_life_days, mtime_ns > 0) {
            let age_days = ((now_ns - mtime_ns).max(0) as f64 / 86_400e9) as f32;
            f *= 0.5f32.powf(age_days / h.max(1e-3));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_split_drops_noise() {
        assert_eq!(
            sentences("First one. Second one!\n...\nThird?"),
            vec!["First one.", "Second one!", "Third?"]
        );
    }

    #[test]
    fn maxsim_by_hand() {
        let m = |rows: &[[f32; 2]]| TokenMatrix {
            dim: 2,
            data: rows.iter().flatten().copied().collect(),
        };
        let q = m(&[[1.0, 0.0], [0.0, 1.0]]);
        // Best match per query token, over both parts: 1.0 (part a) and 0.6 (part b).
        let a = m(&[[1.0, 0.0], [0.6, -0.8]]);
        let b = m(&[[0.8, 0.6]]);
        assert!((maxsim(&q, &[a.clone(), b]) - 0.8).abs() < 1e-6);
        // Part a alone: 1.0 for the first query token, max(0.0, -0.8) = 0.0 for the second.
        assert!((maxsim(&q, std::slice::from_ref(&a)) - 0.5).abs() < 1e-6);
        // Empty sides score 0, whatever the other side holds.
        assert_eq!(maxsim(&TokenMatrix::default(), &[a]), 0.0);
        assert_eq!(maxsim(&q, &[]), 0.0);
        assert_eq!(maxsim(&q, &[TokenMatrix::default()]), 0.0);
    }

    #[test]
    fn rules_by_hand() {
        let r = Rules {
            boosts: vec![("docs/**".into(), 2.0), ("**/*.md".into(), 0.5)],
            recency_half_life_days: Some(10.0),
        };
        let day = 86_400_000_000_000i64;
        assert!((r.factor("docs/a.md", 100 * day, 110 * day) - 2.0 * 0.5 * 0.5).abs() < 1e-6);
        assert!((r.factor("src/a.rs", 0, 110 * day) - 1.0).abs() < 1e-6);
        assert!(Rules::parse_boost("docs/**=1.5").is_ok());
        assert!(Rules::parse_boost("docs/**").is_err());
        assert!(Rules::parse_boost("docs/**=x").is_err());
    }
}
