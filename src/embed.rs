//! Text embeddings: the [`Embedder`] trait, the candle BERT implementation and a
//! deterministic hashing embedder for tests and examples.
//!
//! Why the tokenizer is driven by hand: the `tokenizer.json` shipped with all-MiniLM-L6-v2
//! pads every input to 128 tokens and truncates at 128 (see docs/dependencies.md), which both cuts
//! passages short and makes the forward pass ~4x slower. We disable its padding and
//! truncation, truncate to the model's own limit (`sentence_bert_config.json`), and pad each
//! batch only to its longest member after sorting texts by length.
//!
//! On the CPU the network runs in `cpu_bert` (padding-free and fused, ~4x candle's
//! throughput here); candle's `BertModel` runs it on GPUs and serves as the reference.
//!
//! Not for: chunking or storing vectors; which model folder to use ([`crate::models`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use rayon::prelude::*;
use tokenizers::Tokenizer;

use crate::cpu_bert::CpuBert;
use crate::error::{Error, Result};
use crate::models::{ModelDir, ModelSpec, Pooling};
use crate::quant::Precision;

/// Which compute device runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA or Metal when compiled in and present, else CPU.
    #[default]
    Auto,
    /// Always the CPU.
    Cpu,
    /// The first CUDA GPU (needs the `cuda` feature).
    Cuda,
    /// The Apple GPU (needs the `metal` feature).
    Metal,
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "metal" => Ok(Self::Metal),
            _ => Err(Error::invalid(
                "device",
                format!("{s:?} (use auto, cpu, cuda or metal)"),
            )),
        }
    }
}

impl DeviceChoice {
    /// Resolves the choice to a candle device, with a clear error when the back end was
    /// not compiled in.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => {
                if cfg!(feature = "cuda") {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                if cfg!(feature = "metal") {
                    if let Ok(d) = Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
            DeviceChoice::Cuda => {
                if !cfg!(feature = "cuda") {
                    return Err(Error::invalid(
                        "device",
                        "cuda: this build has no CUDA support; rebuild with `--features cuda`",
                    ));
                }
                Ok(Device::new_cuda(0)?)
            }
            DeviceChoice::Metal => {
                if !cfg!(feature = "metal") {
                    return Err(Error::invalid(
                        "device",
                        "metal: this build has no Metal support; rebuild with `--features metal`",
                    ));
                }
                Ok(Device::new_metal(0)?)
            }
        }
    }
}

/// Turns texts into L2-normalised vectors, so that cosine similarity is a dot product.
///
/// Implementations also expose their tokenizer's view of a text ([`Embedder::token_spans`])
/// because the chunker measures chunk sizes in the model's own tokens.
pub trait Embedder: Send + Sync {
    /// Model facts (identity, dimension, limits, prefixes).
    fn spec(&self) -> &ModelSpec;

    /// Embeds passages; returns `texts.len() * dim` floats, row-major.
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<f32>>;

    /// Embeds one query.
    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        let t = format!("{}{}", self.spec().query_prefix, text);
        self.embed_raw(&[t.as_str()])
    }

    /// Embeds texts exactly as given (no prefix).
    fn embed_raw(&self, texts: &[&str]) -> Result<Vec<f32>>;

    /// Byte spans of the tokens of `text` (no special tokens), used to size chunks.
    fn token_spans(&self, text: &str) -> Vec<(usize, usize)>;

    /// Output dimension.
    fn dim(&self) -> usize {
        self.spec().dim
    }

    /// The arithmetic of the encoder (recorded in an index's manifest).
    fn precision(&self) -> Precision {
        Precision::F32
    }

    /// Which code path embeds, for reports (`bench`, `stats`): e.g. `int8 avx512-vnni`.
    fn encoder_path(&self) -> String {
        "custom".into()
    }

    /// The contextual vector of every token of each text (special tokens left out), each
    /// L2-normalised: what token-level late interaction
    /// ([`crate::rerank::TokenReranker`]) compares. Texts are taken as given (no prefix).
    /// Embedders without token-level output say so.
    fn embed_tokens(&self, texts: &[&str]) -> Result<Vec<TokenMatrix>> {
        let _ = texts;
        Err(Error::invalid(
            "reranker",
            format!("embedder {} has no token vectors", self.spec().id),
        ))
    }

    /// Pooled vectors (as [`Embedder::embed_raw`]) and token vectors (as
    /// [`Embedder::embed_tokens`]) of the same texts. Indexing stores both and a query
    /// with token reranking needs both; an encoder gets them from one forward pass.
    fn embed_with_tokens(&self, texts: &[&str]) -> Result<(Vec<f32>, Vec<TokenMatrix>)> {
        Ok((self.embed_raw(texts)?, self.embed_tokens(texts)?))
    }

    /// A query's vector (as [`Embedder::embed_query`]) and its token vectors, prefix
    /// included, from one pass.
    fn embed_query_with_tokens(&self, text: &str) -> Result<(Vec<f32>, TokenMatrix)> {
        let t = format!("{}{}", self.spec().query_prefix, text);
        let (v, mut toks) = self.embed_with_tokens(&[t.as_str()])?;
        Ok((v, toks.pop().unwrap_or_default()))
    }
}

/// One text's token vectors: `len()` rows of `dim` floats, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenMatrix {
    /// Floats per row.
    pub dim: usize,
    /// `len() * dim` floats.
    pub data: Vec<f32>,
}

impl TokenMatrix {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// True when the text had no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The token rows.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// Builds a matrix from unnormalised rows (`len × dim`), L2-normalising each row.
    pub fn normalized(dim: usize, mut data: Vec<f32>) -> TokenMatrix {
        data.chunks_exact_mut(dim.max(1)).for_each(normalize);
        TokenMatrix { dim, data }
    }
}

/// A BERT model and its tokenizer on one device; shared by the bi-encoder and the
/// cross-encoder so that tokenization, truncation and batching are written once.
pub(crate) struct BertCore {
    /// candle's encoder. Loaded at once where it is the path (GPUs, and checkpoints the fused
    /// encoder cannot read); on the CPU only when the reference is asked for, since it holds
    /// its own ~90 MB copy of the weights.
    model: OnceLock<BertModel>,
    enc_vb: VarBuilder<'static>,
    cfg: BertConfig,
    dir: PathBuf,
    /// The fused CPU encoder; `None` on GPU devices.
    pub(crate) fast: Option<CpuBert>,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) device: Device,
    pub(crate) cls_id: u32,
    pub(crate) sep_id: u32,
    pub(crate) pad_id: u32,
    pub(crate) max_tokens: usize,
}

/// Token ids of one model input.
pub(crate) struct Encoded {
    pub(crate) ids: Vec<u32>,
    pub(crate) type_ids: Vec<u32>,
}

impl BertCore {
    /// Loads tokenizer and weights (memory-mapped) from a validated folder.
    /// `prefix` selects a weight sub-tree (e.g. `bert` for classification checkpoints).
    pub(crate) fn load(
        model: &ModelDir,
        device: &Device,
        precision: Precision,
    ) -> Result<(BertCore, BertConfig, VarBuilder<'static>)> {
        let cfg: BertConfig =
            serde_json::from_str(&model.config_json).map_err(|e| Error::Model {
                dir: model.dir.clone(),
                what: format!("config.json is not a BERT config: {e}"),
            })?;
        let mut tokenizer =
            Tokenizer::from_file(&model.tokenizer_path).map_err(|e| Error::Model {
                dir: model.dir.clone(),
                what: format!("malformed tokenizer.json: {e}"),
            })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let special = |name: &str| {
            tokenizer.token_to_id(name).ok_or_else(|| Error::Model {
                dir: model.dir.clone(),
                what: format!("tokenizer.json has no {name} token"),
            })
        };
        let cls_id = special("[CLS]")?;
        let sep_id = special("[SEP]")?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        // SAFETY: the safetensors file is memory-mapped read-only; pinpoint never writes to
        // model folders, and a concurrent external modification is outside our contract (the
        // same contract as candle's own examples).
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[&model.weights_path], DType::F32, device)
        }
        .map_err(|e| Error::Model {
            dir: model.dir.clone(),
            what: format!("cannot load model.safetensors: {e}"),
        })?;
        // Classification checkpoints nest the encoder under `bert.`.
        let prefix = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let enc_vb = if prefix.is_empty() {
            vb.clone()
        } else {
            vb.pp("bert")
        };
        // The fused encoder reads every weight with its expected shape, so loading it
        // validates the checkpoint against the config. A checkpoint whose layout it does not
        // know (candle also accepts encoders nested under `<model_type>.`) runs on candle,
        // which then validates it: slower, never wrong.
        let fast = if device.is_cpu() {
            CpuBert::load(&enc_vb, &cfg, &model.weights_path, prefix, precision).ok()
        } else {
            None
        };
        // Only the fused encoder quantises: an int8 index must not silently be embedded in
        // f32 (its vectors would not match the ones it stores).
        if precision != Precision::F32 && fast.is_none() {
            return Err(Error::Model {
                dir: model.dir.clone(),
                what: format!(
                    "{precision} embedding runs on the CPU's fused encoder, which this device or checkpoint cannot use; create the index with --precision f32"
                ),
            });
        }
        let core_model = OnceLock::new();
        if fast.is_none() {
            let bert = load_candle(&enc_vb, &cfg, &model.dir)?;
            let _ = core_model.set(bert);
        }
        Ok((
            BertCore {
                model: core_model,
                enc_vb: enc_vb.clone(),
                cfg: cfg.clone(),
                dir: model.dir.clone(),
                fast,
                tokenizer,
                device: device.clone(),
                cls_id,
                sep_id,
                pad_id,
                max_tokens: model.spec.max_tokens.max(4),
            },
            cfg,
            vb,
        ))
    }

    /// Token ids of `text` without special tokens.
    pub(crate) fn raw_ids(&self, text: &str) -> Vec<u32> {
        match self.tokenizer.encode(text, false) {
            Ok(enc) => enc.get_ids().to_vec(),
            Err(_) => Vec::new(),
        }
    }

    /// `[CLS] text [SEP]`, truncated to the model limit.
    pub(crate) fn encode_single(&self, text: &str) -> Encoded {
        let mut body = self.raw_ids(text);
        body.truncate(self.max_tokens - 2);
        let mut ids = Vec::with_capacity(body.len() + 2);
        ids.push(self.cls_id);
        ids.extend_from_slice(&body);
        ids.push(self.sep_id);
        let type_ids = vec![0; ids.len()];
        Encoded { ids, type_ids }
    }

    /// `[CLS] a [SEP] b [SEP]`, truncating `b` first (the passage), then `a`.
    pub(crate) fn encode_pair(&self, a: &str, b: &str) -> Encoded {
        let mut qa = self.raw_ids(a);
        let mut pb = self.raw_ids(b);
        let budget = self.max_tokens - 3;
        qa.truncate(budget / 2);
        pb.truncate(budget - qa.len());
        let mut ids = Vec::with_capacity(qa.len() + pb.len() + 3);
        ids.push(self.cls_id);
        ids.extend_from_slice(&qa);
        ids.push(self.sep_id);
        let first = ids.len();
        ids.extend_from_slice(&pb);
        ids.push(self.sep_id);
        let mut type_ids = vec![0; ids.len()];
        for t in &mut type_ids[first..] {
            *t = 1;
        }
        Encoded { ids, type_ids }
    }

    /// Runs the encoder on a batch padded to its longest member.
    /// Returns hidden states `(batch, len, hidden)` and the mask `(batch, len)` as f32.
    pub(crate) fn forward(&self, batch: &[&Encoded]) -> Result<(Tensor, Tensor)> {
        if let Some(fast) = &self.fast {
            let len = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1);
            let n = batch.len();
            let h = fast.hidden();
            let mut padded = vec![0f32; n * len * h];
            let mut mask = vec![0f32; n * len];
            self.forward_packed(fast, batch, |packed| {
                let mut at = 0;
                for (i, e) in batch.iter().enumerate() {
                    let l = e.ids.len();
                    padded[i * len * h..(i * len + l) * h].copy_from_slice(&packed[at..at + l * h]);
                    mask[i * len..i * len + l].fill(1.0);
                    at += l * h;
                }
            });
            let hidden = Tensor::from_vec(padded, (n, len, h), &self.device)?;
            let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
            return Ok((hidden, mask));
        }
        self.forward_candle(batch)
    }

    /// [`BertCore::forward`] through candle's `BertModel`, whatever the device.
    pub(crate) fn forward_candle(&self, batch: &[&Encoded]) -> Result<(Tensor, Tensor)> {
        let len = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1);
        let n = batch.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in batch {
            ids.extend_from_slice(&e.ids);
            types.extend_from_slice(&e.type_ids);
            mask.extend(std::iter::repeat_n(1u32, e.ids.len()));
            let pad = len - e.ids.len();
            ids.extend(std::iter::repeat_n(self.pad_id, pad));
            types.extend(std::iter::repeat_n(0u32, pad));
            mask.extend(std::iter::repeat_n(0u32, pad));
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let types = Tensor::from_vec(types, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let hidden = self.candle()?.forward(&ids, &types, Some(&mask))?;
        Ok((hidden, mask.to_dtype(DType::F32)?))
    }
}

/// candle's `BertModel` over `vb`, with the error naming the model folder.
fn load_candle(vb: &VarBuilder<'static>, cfg: &BertConfig, dir: &Path) -> Result<BertModel> {
    BertModel::load(vb.clone(), cfg).map_err(|e| Error::Model {
        dir: dir.to_path_buf(),
        what: format!("model.safetensors does not match config.json: {e}"),
    })
}

impl BertCore {
    /// candle's encoder, loaded on first use.
    fn candle(&self) -> Result<&BertModel> {
        if let Some(m) = self.model.get() {
            return Ok(m);
        }
        // Two threads racing here both load; one copy is kept. Rare and harmless.
        let m = load_candle(&self.enc_vb, &self.cfg, &self.dir)?;
        Ok(self.model.get_or_init(|| m))
    }

    /// Runs the fused encoder on `batch` and hands `f` the hidden states, sequences packed
    /// back to back (`(sum of lengths, hidden)`).
    pub(crate) fn forward_packed<R>(
        &self,
        fast: &CpuBert,
        batch: &[&Encoded],
        f: impl FnOnce(&[f32]) -> R,
    ) -> R {
        let seqs: Vec<(&[u32], &[u32])> = batch
            .iter()
            .map(|e| (e.ids.as_slice(), e.type_ids.as_slice()))
            .collect();
        fast.forward(&seqs, f)
    }

    /// Runs the fused encoder on the texts `batch` (indices into `encoded`) and hands `f`
    /// each one's index and hidden rows (`len × hidden`, special tokens included).
    pub(crate) fn for_each_sequence(
        &self,
        fast: &CpuBert,
        batch: &[usize],
        encoded: &[Encoded],
        mut f: impl FnMut(usize, &[f32]),
    ) {
        let refs: Vec<&Encoded> = batch.iter().map(|&i| &encoded[i]).collect();
        let h = fast.hidden();
        self.forward_packed(fast, &refs, |hidden| {
            let mut at = 0;
            for (&i, e) in batch.iter().zip(&refs) {
                f(i, &hidden[at * h..(at + e.ids.len()) * h]);
                at += e.ids.len();
            }
        });
    }
}

/// Splits `lens` (token counts) into batches of similar length: indices sorted by length,
/// cut so that no batch exceeds `max_batch` texts or `max_batch_tokens` padded tokens.
pub(crate) fn length_batches(
    lens: &[usize],
    max_batch: usize,
    max_batch_tokens: usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
    let mut out = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    for i in order {
        // Sorted descending: the first member of a batch is its longest.
        let longest = cur.first().map(|&j| lens[j]).unwrap_or(lens[i]).max(1);
        if !cur.is_empty()
            && (cur.len() >= max_batch || (cur.len() + 1) * longest > max_batch_tokens)
        {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Sentence embedder over a BERT-family model (all-MiniLM-L6-v2 by default).
pub struct BertEmbedder {
    core: BertCore,
    spec: ModelSpec,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Run candle's `BertModel` even on the CPU (see [`BertEmbedder::set_candle_reference`]).
    reference: bool,
}

impl BertEmbedder {
    /// Loads the model in `dir` on `device`.
    pub fn load(dir: impl AsRef<Path>, device: DeviceChoice) -> Result<BertEmbedder> {
        let model = ModelDir::open(dir)?;
        Self::from_model_dir(&model, device)
    }

    /// Loads an already validated model folder (f32 arithmetic, the reference).
    pub fn from_model_dir(model: &ModelDir, device: DeviceChoice) -> Result<BertEmbedder> {
        Self::with_precision(model, device, Precision::F32)
    }

    /// Loads an already validated model folder whose linear layers run in `precision`
    /// ([`crate::quant`]); int8 needs the CPU.
    pub fn with_precision(
        model: &ModelDir,
        device: DeviceChoice,
        precision: Precision,
    ) -> Result<BertEmbedder> {
        let device = device.device()?;
        let (core, _cfg, _vb) = BertCore::load(model, &device, precision)?;
        Ok(BertEmbedder {
            core,
            spec: model.spec.clone(),
            batch_size: 16,
            reference: false,
        })
    }

    /// Runs `kernel` for the int8 products instead of the best one this CPU has: the same
    /// integers, at another speed; `bench` times each. Returns false (and changes nothing)
    /// when the CPU lacks it or no fused encoder runs.
    pub fn use_kernel(&mut self, kernel: crate::quant::Kernel) -> bool {
        self.core
            .fast
            .as_mut()
            .is_some_and(|f| f.use_kernel(kernel))
    }

    /// Runs candle's `BertModel` instead of the fused CPU encoder: the same network, kept
    /// for comparisons and benchmarks. GPUs always use candle.
    pub fn set_candle_reference(&mut self, on: bool) {
        self.reference = on;
    }

    /// Tokenizes `texts`; several in parallel (for one text, a query, handing it to the
    /// pool would only add a thread wake-up).
    fn encode_all(&self, texts: &[&str]) -> Vec<Encoded> {
        if texts.len() > 1 {
            texts
                .par_iter()
                .map(|t| self.core.encode_single(t))
                .collect()
        } else {
            texts.iter().map(|t| self.core.encode_single(t)).collect()
        }
    }

    /// Length-sorted batches of `encoded` (indices) for one forward pass each.
    fn batches(&self, encoded: &[Encoded]) -> Vec<Vec<usize>> {
        let lens: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
        length_batches(&lens, self.batch_size, self.batch_size * 128)
    }

    /// One forward pass over `texts` (as given): the pooled vectors (`texts.len() * dim`
    /// floats) when `pooled`, each text's token vectors when `tokens` (else empty).
    fn forward(
        &self,
        texts: &[&str],
        pooled: bool,
        tokens: bool,
    ) -> Result<(Vec<f32>, Vec<TokenMatrix>)> {
        let dim = self.spec.dim;
        let encoded = self.encode_all(texts);
        let mut out = vec![0f32; if pooled { texts.len() * dim } else { 0 }];
        let mut toks = vec![TokenMatrix::default(); if tokens { texts.len() } else { 0 }];
        // `[CLS]` and `[SEP]` carry no term of their own: leave out the first and last rows.
        let inner = |rows: &[f32], h: usize| -> TokenMatrix {
            let n = rows.len() / h;
            let body = if n >= 2 {
                &rows[h..(n - 1) * h]
            } else {
                &[][..]
            };
            TokenMatrix::normalized(h, body.to_vec())
        };
        for batch in self.batches(&encoded) {
            if let (Some(fast), false) = (&self.core.fast, self.reference) {
                let h = fast.hidden();
                self.core
                    .for_each_sequence(fast, &batch, &encoded, |i, rows| {
                        if pooled {
                            pool_rows(rows, h, self.spec.pooling, &mut out[i * dim..(i + 1) * dim]);
                        }
                        if tokens {
                            toks[i] = inner(rows, h);
                        }
                    });
                continue;
            }
            let refs: Vec<&Encoded> = batch.iter().map(|&i| &encoded[i]).collect();
            let (hidden, mask) = self.core.forward_candle(&refs)?;
            if pooled {
                let p = self.pool(&hidden, &mask)?.to_device(&Device::Cpu)?;
                let rows: Vec<Vec<f32>> = p.to_vec2()?;
                for (&i, row) in batch.iter().zip(rows) {
                    out[i * dim..(i + 1) * dim].copy_from_slice(&row);
                }
            }
            if tokens {
                let hidden: Vec<Vec<Vec<f32>>> = hidden.to_device(&Device::Cpu)?.to_vec3()?;
                for ((&i, e), rows) in batch.iter().zip(&refs).zip(hidden) {
                    let h = rows.first().map_or(0, Vec::len);
                    let flat: Vec<f32> = rows.into_iter().take(e.ids.len()).flatten().collect();
                    toks[i] = inner(&flat, h.max(1));
                }
            }
        }
        Ok((out, toks))
    }

    fn pool(&self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let pooled = match self.spec.pooling {
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9f64, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
        };
        let norm = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f64, f64::MAX)?;
        Ok(pooled.broadcast_div(&norm)?)
    }
}

impl Embedder for BertEmbedder {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn precision(&self) -> Precision {
        self.core
            .fast
            .as_ref()
            .map_or(Precision::F32, |f| f.precision())
    }

    fn encoder_path(&self) -> String {
        match (&self.core.fast, self.reference) {
            (Some(f), false) => match f.precision() {
                Precision::F32 => "f32 fused (gemm)".into(),
                Precision::Int8 => format!("int8 fused ({})", f.kernel().name()),
            },
            _ => format!(
                "f32 candle ({})",
                if self.core.device.is_cpu() {
                    "cpu"
                } else {
                    "gpu"
                }
            ),
        }
    }

    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<f32>> {
        if self.spec.passage_prefix.is_empty() {
            return self.embed_raw(texts);
        }
        let owned: Vec<String> = texts
            .iter()
            .map(|t| format!("{}{}", self.spec.passage_prefix, t))
            .collect();
        let refs: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
        self.embed_raw(&refs)
    }

    fn embed_raw(&self, texts: &[&str]) -> Result<Vec<f32>> {
        Ok(self.forward(texts, true, false)?.0)
    }

    fn embed_tokens(&self, texts: &[&str]) -> Result<Vec<TokenMatrix>> {
        Ok(self.forward(texts, false, true)?.1)
    }

    fn embed_with_tokens(&self, texts: &[&str]) -> Result<(Vec<f32>, Vec<TokenMatrix>)> {
        self.forward(texts, true, true)
    }

    fn token_spans(&self, text: &str) -> Vec<(usize, usize)> {
        match self.core.tokenizer.encode(text, false) {
            Ok(enc) => enc.get_offsets().to_vec(),
            Err(_) => whitespace_spans(text),
        }
    }
}

/// Pools one sequence's hidden rows (`len × h`) into `out` and L2-normalises it, as the
/// sentence-transformers pipeline does (mean over tokens, or the CLS row).
fn pool_rows(rows: &[f32], h: usize, pooling: Pooling, out: &mut [f32]) {
    out.fill(0.0);
    let n = rows.len() / h;
    match pooling {
        Pooling::Mean => {
            for row in rows.chunks(h) {
                for (o, v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
            let inv = 1.0 / n.max(1) as f32;
            out.iter_mut().for_each(|o| *o *= inv);
        }
        Pooling::Cls => {
            if n > 0 {
                out.copy_from_slice(&rows[..h]);
            }
        }
    }
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    out.iter_mut().for_each(|o| *o /= norm);
}

/// Byte spans of whitespace-separated words.
pub(crate) fn whitespace_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s, i));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// A deterministic embedder without a model: hashed bag of lower-cased words and their
/// character trigrams, L2-normalised. It knows nothing of meaning, but it is fast, needs no
/// weights, and gives stable vectors, which is what examples and engine tests need.
pub struct HashEmbedder {
    spec: ModelSpec,
}

impl HashEmbedder {
    /// A hashing embedder of dimension `dim`.
    pub fn new(dim: usize) -> HashEmbedder {
        HashEmbedder {
            spec: ModelSpec {
                id: format!("hash-{dim}"),
                dim,
                pooling: Pooling::Mean,
                max_tokens: 256,
                query_prefix: String::new(),
                passage_prefix: String::new(),
            },
        }
    }

    fn bucket(&self, s: &str) -> usize {
        // FNV-1a: stable across runs and platforms, unlike std's RandomState.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in s.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        (h % self.spec.dim as u64) as usize
    }
}

impl Embedder for HashEmbedder {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<f32>> {
        self.embed_raw(texts)
    }
    fn embed_raw(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let dim = self.spec.dim;
        let mut out = vec![0f32; texts.len() * dim];
        for (i, t) in texts.iter().enumerate() {
            let row = &mut out[i * dim..(i + 1) * dim];
            for w in t
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
            {
                let w = w.to_lowercase();
                row[self.bucket(&w)] += 1.0;
                let chars: Vec<char> = format!("#{w}#").chars().collect();
                for g in chars.windows(3) {
                    let g: String = g.iter().collect();
                    row[self.bucket(&g)] += 0.3;
                }
            }
            normalize(row);
        }
        Ok(out)
    }
    fn token_spans(&self, text: &str) -> Vec<(usize, usize)> {
        whitespace_spans(text)
    }
    /// One vector per word, hashed like a one-word text.
    fn embed_tokens(&self, texts: &[&str]) -> Result<Vec<TokenMatrix>> {
        texts
            .iter()
            .map(|t| {
                let words: Vec<&str> = whitespace_spans(t).iter().map(|&(a, b)| &t[a..b]).collect();
                Ok(TokenMatrix {
                    dim: self.spec.dim,
                    data: self.embed_raw(&words)?,
                })
            })
            .collect()
    }
}

/// L2-normalises `v` in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Dot product: AVX2+FMA when the CPU has them (detected at run time, so the binary stays
/// portable), else a portable loop the compiler vectorises for the baseline target.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

#[inline]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    // Eight accumulators let the compiler vectorise without fast-math.
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut acc2 = _mm256_setzero_ps();
    let mut acc3 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY (all loads): every offset read is below `n`, the shorter slice's length;
    // unaligned loads need no alignment.
    while i + 32 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        acc1 = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i + 8)),
            _mm256_loadu_ps(pb.add(i + 8)),
            acc1,
        );
        acc2 = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i + 16)),
            _mm256_loadu_ps(pb.add(i + 16)),
            acc2,
        );
        acc3 = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i + 24)),
            _mm256_loadu_ps(pb.add(i + 24)),
            acc3,
        );
        i += 32;
    }
    while i + 8 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        i += 8;
    }
    let acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
    let mut s: f32 = lanes.iter().sum();
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_group_similar_lengths_and_respect_caps() {
        let lens = [5, 100, 6, 98, 7, 99];
        let b = length_batches(&lens, 2, 10_000);
        assert_eq!(b, vec![vec![1, 5], vec![3, 4], vec![2, 0]]);
        // token cap: 3 texts of 100 tokens exceed 250 padded tokens
        let b = length_batches(&[100, 100, 100], 10, 250);
        assert_eq!(b.len(), 2);
        assert!(length_batches(&[], 4, 100).is_empty());
    }

    #[test]
    fn hash_embedder_is_normalised_and_deterministic() {
        let e = HashEmbedder::new(64);
        let a = e.embed_raw(&["hello world", "hello world", ""]).unwrap();
        let n: f32 = a[..64].iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
        assert_eq!(&a[..64], &a[64..128]);
        assert!(a[128..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn dot_matches_naive_for_every_length() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 100, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "n={n}");
            assert!((dot_portable(&a, &b) as f64 - naive).abs() < 1e-4, "n={n}");
        }
    }
}
