//! A padding-free, fused BERT encoder for the CPU.
//!
//! Why it exists: candle's CPU BERT spends most of its time outside the matrix products.
//! Profiled with `perf` on all-MiniLM-L6-v2 (batch 16, SciFact abstracts up to 256 tokens):
//! GEMM 30 %, page zeroing for the fresh tensor each op allocates 10 %, scalar `erf` (GELU)
//! 11 %, scalar `exp` (softmax) 10 %, broadcasting adds and copies most of the rest.
//! This encoder runs the same network differently:
//! - the tokens of every sequence in a batch are packed into one matrix, so the linear
//!   layers (95 % of the FLOPs) see no padding at all, and attention runs per sequence;
//! - biases are folded into the GEMM (the output is pre-filled with them), Q/K/V are one
//!   GEMM, and attention reads Q, K and V as strided views of that output (no transposes);
//! - exp and erf are branch-free polynomial approximations that the compiler vectorises,
//!   accurate to a few ulp (tested against `f32::exp` / libm `erf` below);
//! - a handful of buffers are allocated per batch, not one per op.
//!
//! candle's `BertModel` stays the reference: tests compare the two on a random tiny BERT and
//! on the real model, and GPU devices keep using candle.
//!
//! Not for: loading or locating models ([`crate::models`]), GPUs (candle, in [`crate::embed`]).
use candle_core::Tensor;
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config as BertConfig, HiddenAct};
use std::path::Path;
use std::sync::Mutex;

use memmap2::Mmap;

use crate::quant::{Kernel, Precision, QActs, QLinear};
use gemm::Parallelism;
use rayon::prelude::*;

/// A dense layer stored for `x · W + b` with `W` row-major `(n_in, n_out)`, or quantised
/// (`q`, in which case `w` is empty: the f32 copy is not kept).
struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
    n_in: usize,
    n_out: usize,
    q: Option<QLinear>,
}

/// LayerNorm parameters.
struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    /// Query, key and value projections side by side: `(hidden, 3 * hidden)`.
    qkv: Linear,
    attn_out: Linear,
    ln_attn: Norm,
    inter: Linear,
    out: Linear,
    ln_out: Norm,
}

/// The BERT encoder (embeddings + layers, no pooler) with weights copied out of candle.
pub(crate) struct CpuBert {
    /// The largest tensor (vocab × hidden, 47 MB for MiniLM), of which a batch reads a few
    /// rows: borrowed from the memory-mapped checkpoint, so only touched pages are read.
    word: Table,
    position: Vec<f32>,
    token_type: Vec<f32>,
    n_positions: usize,
    n_types: usize,
    vocab: usize,
    ln_emb: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    act: HiddenAct,
    eps: f32,
    /// The arithmetic of the linear layers, and the int8 kernel this CPU runs.
    precision: Precision,
    kernel: Kernel,
    /// Activation buffers reused across calls: a batch of 16 abstracts needs ~40 MB, and
    /// fresh allocations that size come straight from the OS, zeroed page by page
    /// (`clear_page_erms` was 6 % of the profile before this).
    scratch: Mutex<Scratch>,
}

#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    /// The quantised input of the current linear layer (int8 only).
    qa: QActs,
}

/// A read-only f32 table, borrowed from a memory-mapped safetensors file or owned.
enum Table {
    Mapped { map: Mmap, start: usize, len: usize },
    Owned(Vec<f32>),
}

impl Table {
    /// Borrows tensor `name` (of `len` f32 values) from the safetensors file at `path`, when
    /// it is stored as little-endian f32 at a 4-byte-aligned offset on a little-endian
    /// machine (as Hugging Face writes f32 checkpoints). Anything else: `None`, and the
    /// caller copies it through candle.
    fn map(path: &Path, name: &str, len: usize) -> Option<Table> {
        if cfg!(target_endian = "big") {
            return None;
        }
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: the file is mapped read-only and never written by pinpoint; a concurrent
        // external modification of a model folder is outside our contract (candle maps the
        // same file under the same assumption).
        let map = unsafe { Mmap::map(&file) }.ok()?;
        let start = {
            let st = safetensors::SafeTensors::deserialize(&map).ok()?;
            let view = st.tensor(name).ok()?;
            if view.dtype() != safetensors::Dtype::F32 || view.data().len() != len * 4 {
                return None;
            }
            view.data().as_ptr() as usize - map.as_ptr() as usize
        };
        let t = Table::Mapped { map, start, len };
        // Alignment is checked once here; `as_slice` relies on it.
        let (pre, _, post) = t.bytes().map(|b| {
            // SAFETY: every bit pattern is a valid f32; `align_to` only reinterprets the
            // aligned middle part, and we check that nothing falls outside it.
            unsafe { b.align_to::<f32>() }
        })?;
        (pre.is_empty() && post.is_empty()).then_some(t)
    }

    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Table::Mapped { map, start, len } => map.get(*start..*start + *len * 4),
            Table::Owned(_) => None,
        }
    }

    fn as_slice(&self) -> &[f32] {
        match self {
            Table::Owned(v) => v,
            Table::Mapped { .. } => {
                let b = self.bytes().unwrap_or(&[]);
                // SAFETY: as in `Table::map`, which only builds a `Mapped` table whose bytes
                // are 4-byte aligned and a whole number of f32s (checked there).
                let (_, mid, _) = unsafe { b.align_to::<f32>() };
                mid
            }
        }
    }
}

/// Resizes `v` to `n` elements; contents are overwritten by the caller.
fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

fn to_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

fn linear(
    vb: &VarBuilder,
    names: &[&str],
    n_in: usize,
    n_out: usize,
    precision: Precision,
) -> candle_core::Result<Linear> {
    let mut ws = Vec::with_capacity(names.len());
    let mut bs = Vec::with_capacity(names.len());
    for name in names {
        let p = vb.pp(*name);
        ws.push(p.get((n_out, n_in), "weight")?);
        bs.push(p.get(n_out, "bias")?);
    }
    // (n_out_total, n_in) -> (n_in, n_out_total), so that `x · W` is a plain row-major GEMM.
    let w = Tensor::cat(&ws, 0)?.t()?.contiguous()?;
    let b = Tensor::cat(&bs, 0)?;
    let (w, b, n_out) = (to_vec(&w)?, to_vec(&b)?, n_out * names.len());
    Ok(match precision {
        Precision::F32 => Linear {
            w,
            b,
            n_in,
            n_out,
            q: None,
        },
        Precision::Int8 => Linear {
            q: Some(QLinear::new(&w, &b, n_in, n_out)),
            w: Vec::new(),
            b,
            n_in,
            n_out,
        },
    })
}

fn norm(vb: &VarBuilder, hidden: usize) -> candle_core::Result<Norm> {
    // Old TF-converted checkpoints name the parameters gamma/beta.
    let (w, b) = match vb.get(hidden, "weight") {
        Ok(w) => (w, vb.get(hidden, "bias")?),
        Err(_) => (vb.get(hidden, "gamma")?, vb.get(hidden, "beta")?),
    };
    Ok(Norm {
        w: to_vec(&w)?,
        b: to_vec(&b)?,
    })
}

impl CpuBert {
    /// Loads the encoder from `vb` (already pointing at the encoder root, i.e. the folder that
    /// holds `embeddings.` and `encoder.`, which is `prefix` in the checkpoint file `weights`).
    /// Dense layers are copied, transposed for `x · W` (with the checkpoint's `(out, in)`
    /// layout read through a transposed view, a query's embedding measured 9.0 ms instead of
    /// 3.7: gemm does not pack the right-hand side of skinny products); the word table is
    /// borrowed from the file when its bytes allow it. With [`Precision::Int8`] the dense
    /// layers are quantised here ([`crate::quant`]).
    pub(crate) fn load(
        vb: &VarBuilder,
        cfg: &BertConfig,
        weights: &Path,
        prefix: &str,
        precision: Precision,
    ) -> candle_core::Result<CpuBert> {
        let h = cfg.hidden_size;
        // Empty tables would make the id clamps in `forward` underflow.
        if cfg.vocab_size == 0 || cfg.max_position_embeddings == 0 || cfg.type_vocab_size == 0 {
            candle_core::bail!("config has an empty embedding table");
        }
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!(
                "hidden size {h} is not a multiple of {} heads",
                cfg.num_attention_heads
            );
        }
        let emb = vb.pp("embeddings");
        let word_name = "embeddings.word_embeddings.weight";
        let word = match Table::map(weights, &format!("{prefix}{word_name}"), cfg.vocab_size * h) {
            Some(t) => t,
            None => Table::Owned(to_vec(&vb.get((cfg.vocab_size, h), word_name)?)?),
        };
        let position = emb.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let token_type = emb.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            layers.push(Layer {
                qkv: linear(
                    &l.pp("attention.self"),
                    &["query", "key", "value"],
                    h,
                    h,
                    precision,
                )?,
                attn_out: linear(&l.pp("attention.output"), &["dense"], h, h, precision)?,
                ln_attn: norm(&l.pp("attention.output.LayerNorm"), h)?,
                inter: linear(
                    &l.pp("intermediate"),
                    &["dense"],
                    h,
                    cfg.intermediate_size,
                    precision,
                )?,
                out: linear(
                    &l.pp("output"),
                    &["dense"],
                    cfg.intermediate_size,
                    h,
                    precision,
                )?,
                ln_out: norm(&l.pp("output.LayerNorm"), h)?,
            });
        }
        Ok(CpuBert {
            word,
            position: to_vec(&position)?,
            token_type: to_vec(&token_type)?,
            n_positions: cfg.max_position_embeddings,
            n_types: cfg.type_vocab_size,
            vocab: cfg.vocab_size,
            ln_emb: norm(&emb.pp("LayerNorm"), h)?,
            layers,
            hidden: h,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
            eps: cfg.layer_norm_eps as f32,
            precision,
            kernel: Kernel::detect(),
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// The arithmetic of the linear layers.
    pub(crate) fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs `kernel` for int8 products instead of the best one, if this CPU supports it
    /// (same results; for benchmarks). Returns whether it does.
    pub(crate) fn use_kernel(&mut self, kernel: Kernel) -> bool {
        let ok = Kernel::supported().contains(&kernel);
        if ok {
            self.kernel = kernel;
        }
        ok
    }

    /// The int8 kernel in use (meaningful with [`Precision::Int8`]).
    pub(crate) fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Hidden size (width of each output row).
    pub(crate) fn hidden(&self) -> usize {
        self.hidden
    }

    /// Runs the encoder on `seqs` (token ids and type ids per sequence) and hands the last
    /// hidden states of all tokens, sequence after sequence (`(sum of lengths, hidden)`), to
    /// `f`. Ids beyond the vocabulary or positions beyond the table are clamped rather than
    /// panicking (callers truncate to the model limit; the clamp is a guard, not a feature).
    pub(crate) fn forward<R>(&self, seqs: &[(&[u32], &[u32])], f: impl FnOnce(&[f32]) -> R) -> R {
        // A poisoned lock only means another call panicked mid-batch; the buffers are
        // overwritten before use, so they are still fine to reuse.
        let mut guard = match self.scratch.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            // Another thread is encoding: use private buffers rather than wait.
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let mut own = Scratch::default();
        let sc: &mut Scratch = match guard.as_deref_mut() {
            Some(s) => s,
            None => &mut own,
        };
        let h = self.hidden;
        let lens: Vec<usize> = seqs.iter().map(|(ids, _)| ids.len()).collect();
        let total: usize = lens.iter().sum();
        let inter_n = self.layers.first().map_or(0, |l| l.inter.n_out);
        let x = sized(&mut sc.x, total * h);
        let qkv = sized(&mut sc.qkv, total * 3 * h);
        let ctx = sized(&mut sc.ctx, total * h);
        let tmp = sized(&mut sc.tmp, total * h);
        let inter = sized(&mut sc.inter, total * inter_n);
        // Embeddings: word + position + token type, then LayerNorm.
        {
            let mut rows = x.chunks_mut(h);
            for (ids, types) in seqs {
                for (pos, (&id, row)) in ids.iter().zip(rows.by_ref()).enumerate() {
                    let id = (id as usize).min(self.vocab - 1);
                    let ty = types
                        .get(pos)
                        .map_or(0, |&t| t as usize)
                        .min(self.n_types - 1);
                    let p = pos.min(self.n_positions - 1);
                    let (w, pe, te) = (
                        &self.word.as_slice()[id * h..(id + 1) * h],
                        &self.position[p * h..(p + 1) * h],
                        &self.token_type[ty * h..(ty + 1) * h],
                    );
                    for j in 0..h {
                        row[j] = w[j] + pe[j] + te[j];
                    }
                }
            }
        }
        layer_norm_rows(x, None, &self.ln_emb, h, self.eps);
        let qa = &mut sc.qa;
        let k = self.kernel;
        for layer in &self.layers {
            affine(qkv, x, &layer.qkv, total, qa, k);
            self.attention(qkv, ctx, &lens);
            affine(tmp, ctx, &layer.attn_out, total, qa, k);
            // x = LN(attn + x)
            layer_norm_rows(x, Some(tmp), &layer.ln_attn, h, self.eps);
            affine(inter, x, &layer.inter, total, qa, k);
            activate(inter, self.act);
            affine(tmp, inter, &layer.out, total, qa, k);
            layer_norm_rows(x, Some(tmp), &layer.ln_out, h, self.eps);
        }
        f(x)
    }

    /// Multi-head self-attention of each sequence over itself; writes `ctx` (rows aligned
    /// with `qkv`'s rows, heads side by side).
    fn attention(&self, qkv: &[f32], ctx: &mut [f32], lens: &[usize]) {
        let h = self.hidden;
        let dh = h / self.heads;
        let scale = 1.0 / (dh as f32).sqrt();
        // Split ctx into one row block per sequence so that sequences run in parallel
        // without sharing output memory.
        let mut blocks: Vec<(usize, &mut [f32])> = Vec::with_capacity(lens.len());
        let mut rest = ctx;
        let mut offset = 0;
        for &len in lens {
            let (block, tail) = rest.split_at_mut(len * h);
            blocks.push((offset, block));
            rest = tail;
            offset += len;
        }
        let run = |(off, block): (usize, &mut [f32])| {
            let len = block.len() / h;
            if len == 0 {
                return;
            }
            let mut scores = vec![0f32; len * len];
            let rows = &qkv[off * 3 * h..(off + len) * 3 * h];
            for head in 0..self.heads {
                let q = &rows[head * dh..];
                let k = &rows[h + head * dh..];
                let v = &rows[2 * h + head * dh..];
                // scores (len × len) = scale · Q (len × dh) · Kᵀ (dh × len)
                gemm_strided(
                    Mat::new(&mut scores, len, len, len as isize, 1),
                    Mat::new(q, len, dh, 3 * h as isize, 1),
                    Mat::new(k, dh, len, 1, 3 * h as isize),
                    scale,
                    false,
                    Parallelism::None,
                );
                softmax_rows(&mut scores, len);
                // ctx[:, head] (len × dh) = P (len × len) · V (len × dh)
                gemm_strided(
                    Mat::new(&mut block[head * dh..], len, dh, h as isize, 1),
                    Mat::new(&scores, len, len, len as isize, 1),
                    Mat::new(v, len, dh, 3 * h as isize, 1),
                    1.0,
                    false,
                    Parallelism::None,
                );
            }
        };
        if blocks.len() > 1 {
            blocks.into_par_iter().for_each(run);
        } else {
            blocks.into_iter().for_each(run);
        }
    }
}

/// A strided matrix view over a slice, checked to stay inside it.
struct Mat<S> {
    data: S,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl<S: AsRef<[f32]>> Mat<S> {
    /// A view of `rows × cols` elements at strides `rs` (between rows) and `cs` (between
    /// columns); panics if it would address past the end of `data`.
    fn new(data: S, rows: usize, cols: usize, rs: isize, cs: isize) -> Self {
        let m = Mat {
            data,
            rows,
            cols,
            rs,
            cs,
        };
        m.check(m.data.as_ref().len());
        m
    }
}

impl<S> Mat<S> {
    /// Panics unless every element the view addresses lies inside a slice of `len`
    /// elements. Strides are non-negative here, so the last element is the farthest.
    fn check(&self, len: usize) {
        assert!(self.rs >= 0 && self.cs >= 0, "negative stride");
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs as usize + (self.cols - 1) * self.cs as usize;
            assert!(last < len, "matrix view out of bounds");
        }
    }
}

/// `dst = alpha · a · b` (or `dst += alpha · a · b` with `accumulate`).
fn gemm_strided(
    dst: Mat<&mut [f32]>,
    a: Mat<&[f32]>,
    b: Mat<&[f32]>,
    alpha: f32,
    accumulate: bool,
    par: Parallelism,
) {
    assert!(
        dst.rows == a.rows && dst.cols == b.cols && a.cols == b.rows,
        "shape mismatch"
    );
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    // SAFETY: the three views were bounds-checked by `Mat::new` against their
    // slices (every addressed element is in range, strides non-negative); `dst` is a unique
    // borrow, so it cannot alias `a` or `b`. gemm computes dst := 1·dst + alpha·a·b when
    // `read_dst`, else dst := alpha·a·b, touching only the addressed elements.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            a.cols,
            dst.data.as_mut_ptr(),
            dst.cs,
            dst.rs,
            accumulate,
            a.data.as_ptr(),
            a.cs,
            a.rs,
            b.data.as_ptr(),
            b.cs,
            b.rs,
            1.0,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// `dst (m × n) = a (m × d) · bᵀ` for row-major `a` and `b (n × d)`: every row of `a`
/// dotted with every row of `b` in one GEMM (the exact neighbour search of
/// [`crate::dense::exact_neighbours`] scores a block of rows against the whole set this way,
/// instead of one memory-bound scan per row).
pub(crate) fn dot_all(dst: &mut [f32], a: &[f32], b: &[f32], d: usize) {
    if d == 0 {
        return;
    }
    let (m, n) = (a.len() / d, b.len() / d);
    gemm_strided(
        Mat::new(&mut dst[..m * n], m, n, n as isize, 1),
        Mat::new(a, m, d, d as isize, 1),
        Mat::new(b, d, n, 1, d as isize),
        1.0,
        false,
        Parallelism::Rayon(0),
    );
}

/// Below this many tokens a GEMM runs on the calling thread.
const SERIAL_ROWS: usize = 64;

/// `out (rows × n_out) = x (rows × n_in) · W + b`, in int8 when the layer is quantised
/// (`qa` is its activation buffer, `kernel` the int8 kernel).
fn affine(out: &mut [f32], x: &[f32], lin: &Linear, rows: usize, qa: &mut QActs, kernel: Kernel) {
    if let Some(q) = &lin.q {
        q.quantize(x, rows, qa);
        q.forward(qa, out, rows, kernel);
        return;
    }
    let out = &mut out[..rows * lin.n_out];
    for row in out.chunks_mut(lin.n_out) {
        row.copy_from_slice(&lin.b);
    }
    gemm_strided(
        Mat::new(out, rows, lin.n_out, lin.n_out as isize, 1),
        Mat::new(x, rows, lin.n_in, lin.n_in as isize, 1),
        Mat::new(&lin.w, lin.n_in, lin.n_out, lin.n_out as isize, 1),
        1.0,
        true,
        // Waking the pool costs more than it saves on a query-sized input: measured with
        // `examples/query_latency` (one ~15-token query), p50 5.9 ms on the pool vs 3.8 ms
        // on one thread.
        if rows < SERIAL_ROWS {
            Parallelism::None
        } else {
            Parallelism::Rayon(0)
        },
    );
}

/// `x = LayerNorm(x + add)` row by row (`add` is the sub-layer output; None for embeddings).
fn layer_norm_rows(x: &mut [f32], add: Option<&[f32]>, p: &Norm, h: usize, eps: f32) {
    let body = |(i, row): (usize, &mut [f32])| {
        let add = add.map(|a| &a[i * h..(i + 1) * h]);
        norm_row(row, add, &p.w, &p.b, eps);
    };
    if x.len() >= 64 * h {
        x.par_chunks_mut(h).enumerate().for_each(body);
    } else {
        x.chunks_mut(h).enumerate().for_each(body);
    }
}

multiversion! {
    /// One LayerNorm row, with the residual added first.
    fn norm_row(row: &mut [f32], add: Option<&[f32]>, w: &[f32], b: &[f32], eps: f32) {
        if let Some(a) = add {
            for (r, v) in row.iter_mut().zip(a) {
                *r += v;
            }
        }
        let n = row.len() as f32;
        let mean = sum_lanes(row) / n;
        let mut acc = [0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
        for c in chunks {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += (v - mean) * (v - mean);
            }
        }
        let var = (acc.iter().sum::<f32>() + tail) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((r, w), b) in row.iter_mut().zip(w).zip(b) {
            *r = (*r - mean) * inv * w + b;
        }
    }
}

fn activate(x: &mut [f32], act: HiddenAct) {
    const PART: usize = 1 << 14;
    let f = |part: &mut [f32]| match act {
        HiddenAct::Gelu => gelu_erf(part),
        HiddenAct::GeluApproximate => gelu_tanh(part),
        HiddenAct::Relu => part.iter_mut().for_each(|v| *v = v.max(0.0)),
    };
    // Same reasoning as SERIAL_ROWS: a query's few thousand values stay on this thread.
    if x.len() > 8 * PART {
        x.par_chunks_mut(PART).for_each(f);
    } else {
        f(x);
    }
}

multiversion! {
    /// Exact GELU: 0.5·x·(1 + erf(x/√2)).
    fn gelu_erf(part: &mut [f32]) {
        for v in part.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    /// Tanh GELU: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), tanh(u) = 1 − 2/(e^{2u}+1).
    fn gelu_tanh(part: &mut [f32]) {
        for v in part.iter_mut() {
            let u = 0.797_884_6 * (*v + 0.044_715 * *v * *v * *v);
            let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
            *v = 0.5 * *v * (1.0 + t);
        }
    }
}

/// Independent accumulators for reductions: a float sum in one accumulator is a serial
/// dependency chain the compiler may not reorder; LANES of them vectorise.
const LANES: usize = 16;

#[inline(always)]
fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn max_lanes(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

multiversion! {
    /// In-place softmax of each `len`-wide row of `m`.
    fn softmax_rows(m: &mut [f32], len: usize) {
        for row in m.chunks_mut(len) {
            softmax(row);
        }
    }
}

/// In-place softmax of one row.
#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = max_lanes(row);
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum_lanes(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// e^x for f32 without branches (Cephes `expf` reduction and polynomial): |rel err| < 2e-7
/// on [-87, 88]; inputs are clamped to that range (softmax only feeds x ≤ 0).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // n = round(x / ln 2); r = x − n·ln 2 in two parts for precision.
    // Round to nearest by the 1.5·2²³ trick: `f32::round` is a libm call on baseline x86-64
    // and would keep this loop from vectorising.
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let r2 = r * r;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let y = p * r2 + r + 1.0;
    // Scale by 2^n through the exponent bits (n + 127 ∈ [1, 254] after the clamp). The
    // integer is read from the mantissa of `n + 127 + MAGIC` rather than by `as i32`, whose
    // saturating semantics compile to scalar code; the shift drops MAGIC's exponent bits.
    let bits = (n + (127.0 + MAGIC)).to_bits() << 23;
    y * f32::from_bits(bits)
}

/// erf(x) for f32 without branches: Eigen's rational approximation on [-4, 4] (|err| <
/// 2e-7; beyond ±4, erf is ±1 in single precision).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_across_the_softmax_range() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert!((0.0..1e-37).contains(&exp(-1000.0)));
    }

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f64;
        let mut x = -6.0f64;
        while x < 6.0 {
            let a = erf(x as f32) as f64;
            let b = libm_erf(x);
            worst = worst.max((a - b).abs());
            x += 0.001;
        }
        assert!(worst < 1e-6, "worst absolute error {worst}");
        assert_eq!(erf(0.0), 0.0);
    }

    /// erf in f64 by its Taylor series (|x| ≤ 3) or the continued fraction of erfc: an
    /// independent reference, accurate far beyond f32.
    fn libm_erf(x: f64) -> f64 {
        let ax = x.abs();
        let v = if ax <= 3.0 {
            let mut term = ax;
            let mut sum = ax;
            let mut n = 0.0;
            loop {
                n += 1.0;
                term *= -ax * ax / n;
                let add = term / (2.0 * n + 1.0);
                sum += add;
                if add.abs() < 1e-17 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // Lentz-free backward evaluation of the erfc continued fraction.
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (ax + f);
            }
            1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f)
        };
        v.copysign(x)
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut row = vec![1.0, 3.0, 2.0, -50.0];
        softmax(&mut row);
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert!(row[1] > row[2] && row[2] > row[0] && row[0] > row[3]);
    }

    #[test]
    fn strided_gemm_matches_naive_product() {
        // a: 3×2 read through a transposed view of a 2×3 buffer.
        let buf = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let a = Mat::new(&buf[..], 3, 2, 1, 3); // a[i][j] = buf[j*3 + i]
        let bm = [1.0, 0.5, -1.0, 2.0];
        let b = Mat::new(&bm[..], 2, 2, 2, 1);
        let mut out = vec![10.0; 6];
        gemm_strided(
            Mat::new(&mut out, 3, 2, 2, 1),
            a,
            b,
            2.0,
            true,
            Parallelism::None,
        );
        // naive: a = [[1,4],[2,5],[3,6]]; a·b = [[-3,8.5],[-3,11],[-3,13.5]]
        let want = [4.0, 27.0, 4.0, 32.0, 4.0, 37.0];
        assert_eq!(out, want);
    }

    #[test]
    fn tables_are_borrowed_from_the_checkpoint_when_f32() {
        let dir = std::env::temp_dir().join(format!("pinpoint-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
        let t = Tensor::from_vec(values.clone(), (3, 4), &candle_core::Device::Cpu).unwrap();
        let half = t.to_dtype(candle_core::DType::F16).unwrap();
        let tensors: std::collections::HashMap<String, Tensor> =
            [("a.weight".to_string(), t), ("h.weight".to_string(), half)].into();
        candle_core::safetensors::save(&tensors, &path).unwrap();

        let table = Table::map(&path, "a.weight", 12).expect("f32 tensor is mapped");
        assert!(matches!(table, Table::Mapped { .. }));
        assert_eq!(table.as_slice(), &values[..]);
        // Wrong size, wrong dtype, unknown name, missing file: not mapped (the caller copies).
        assert!(Table::map(&path, "a.weight", 11).is_none());
        assert!(Table::map(&path, "h.weight", 12).is_none());
        assert!(Table::map(&path, "b.weight", 12).is_none());
        assert!(Table::map(&dir.join("none"), "a.weight", 12).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The shipped model's word table is borrowed, not copied (CI fetches the model before
    /// the tests; without it there is nothing to check).
    #[test]
    fn the_real_word_table_is_borrowed() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2/model.safetensors");
        if !path.exists() {
            return;
        }
        let t = Table::map(&path, "embeddings.word_embeddings.weight", 30522 * 384);
        assert!(matches!(t, Some(Table::Mapped { .. })));
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn views_past_the_slice_are_refused() {
        let buf = [0.0; 5];
        let _ = Mat::new(&buf[..], 2, 3, 3, 1);
    }
}
