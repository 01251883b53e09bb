//! Int8 linear layers for the fused CPU encoder (`cpu_bert`).
//!
//! Why: the encoder's linear layers are ~90 % of its arithmetic, and an f32 GEMM on two
//! cores is already near what f32 allows. Scalar-quantised products do four times the
//! multiply-adds per instruction (`vpdpbusd`, AVX-512 VNNI: 64 u8·i8 products per lane
//! group) and read a quarter of the weight bytes.
//!
//! The scheme is dynamic quantisation, as ONNX Runtime and PyTorch apply it to BERT:
//! - weights: symmetric int8 per output column (`w ≈ q · scale[c]`), quantised once at load;
//! - activations: symmetric per row (per token) at run time, stored as `u8 = q + 128` so
//!   that `vpdpbusd` (unsigned × signed) applies; the offset is taken back out with each
//!   column's weight sum (`Σ (q+128)·w = Σ q·w + 128·Σ w`);
//! - accumulation in i32 (at most 1536 · 255 · 127 ≈ 5·10⁷ in MiniLM, far from overflow),
//!   scaled back to f32 with the bias added.
//!
//! Integer products are exact, so the VNNI kernel and the portable one give identical
//! results: an index built on a machine with VNNI answers queries embedded on one without it
//! bit for bit in the linear layers (tested below). Attention, softmax, GELU and LayerNorm
//! stay in f32.
//!
//! Not for: choosing the precision of an index (the manifest records it; see
//! [`Precision`]), or the GPU path (candle, f32).
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The arithmetic an index's encoder runs in. Recorded in the manifest at creation: a query
/// must be embedded the way the index's passages were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Full-precision linear layers (the reference).
    F32,
    /// Dynamically quantised int8 linear layers (this module).
    Int8,
}

impl Precision {
    /// What an index created on this machine without naming a precision gets: the fastest
    /// path that passes the quality check (docs/decisions.md, "Int8 encoder"). With AVX-512
    /// VNNI that is int8 (2.1x the f32 encoder's tokens/s, cosine to f32 ≥ 0.995, no
    /// significant loss in `eval`'s paired test); without it the int8 kernels are slower
    /// than f32 (AVX2: 0.7x), so f32.
    pub fn new_index_default() -> Precision {
        if Kernel::detect() == Kernel::Avx512Vnni {
            Precision::Int8
        } else {
            Precision::F32
        }
    }

    /// What a manifest written before precisions existed meant.
    pub fn legacy() -> Precision {
        Precision::F32
    }

    /// The name used on the command line and in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            other => Err(format!(
                "unknown precision {other:?} (expected f32 or int8)"
            )),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The int8 product kernel this CPU runs, detected at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 VNNI (`vpdpbusd` on 512-bit registers).
    Avx512Vnni,
    /// AVX2: bytes widened to i16 and multiplied pairwise into i32 (`vpmaddwd`; exact,
    /// unlike `vpmaddubsw`, whose i16 sums saturate). About the f32 path's speed.
    Avx2,
    /// Plain Rust; same results, slow (a guard for CPUs without AVX2).
    Portable,
}

impl Kernel {
    /// The best kernel this CPU supports.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                return Kernel::Avx512Vnni;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// Every kernel this CPU can run, fastest first.
    pub fn supported() -> Vec<Kernel> {
        let mut all = vec![Kernel::detect()];
        if all[0] == Kernel::Avx512Vnni {
            all.push(Kernel::Avx2);
        }
        if all[0] != Kernel::Portable {
            all.push(Kernel::Portable);
        }
        all
    }

    /// A short name for reports (`bench`, `stats`).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512Vnni => "avx512-vnni",
            Kernel::Avx2 => "avx2",
            Kernel::Portable => "portable",
        }
    }
}

/// Columns per packed panel: two 16-lane i32 registers.
const NR: usize = 32;
/// Rows per micro-tile: 2·MR accumulators + 2 weight registers + 1 broadcast fit in the 32
/// AVX-512 registers.
const MR: usize = 8;
/// Rows per parallel task: enough for the packed panel to be reused from cache.
const ROWS_PER_TASK: usize = 32;

/// A dense layer `x · W + b` with `W` quantised per output column.
pub(crate) struct QLinear {
    /// `W` in panels of [`NR`] columns; inside a panel, groups of 4 input rows, and inside a
    /// group each column's 4 weights side by side (the operand layout of `vpdpbusd`).
    packed: Vec<i8>,
    /// Per column: `Σ_k q[k][c]` (to take the activation offset out).
    col_sum: Vec<i32>,
    /// Per column: the weight scale.
    scale: Vec<f32>,
    bias: Vec<f32>,
    n_in: usize,
    /// `n_in` rounded up to a multiple of 4 (padding weights are 0).
    k_pad: usize,
    n_out: usize,
    /// `n_out` rounded up to a multiple of [`NR`].
    n_pad: usize,
}

/// Activations of a batch quantised per row.
#[derive(Default)]
pub(crate) struct QActs {
    /// `rows × k_pad` bytes, `q + 128`.
    data: Vec<u8>,
    /// Per row: the activation scale.
    scale: Vec<f32>,
}

impl QLinear {
    /// Quantises `w` (row-major `(n_in, n_out)`) and keeps `b` (`n_out`).
    pub(crate) fn new(w: &[f32], b: &[f32], n_in: usize, n_out: usize) -> QLinear {
        assert_eq!(w.len(), n_in * n_out, "weight shape");
        assert_eq!(b.len(), n_out, "bias shape");
        let k_pad = n_in.div_ceil(4) * 4;
        let n_pad = n_out.div_ceil(NR) * NR;
        let mut scale = vec![1f32; n_pad];
        for (c, s) in scale.iter_mut().enumerate().take(n_out) {
            let amax = (0..n_in)
                .map(|k| w[k * n_out + c].abs())
                .fold(0f32, f32::max);
            if amax > 0.0 {
                *s = amax / 127.0;
            }
        }
        let q = |k: usize, c: usize| -> i8 {
            if k >= n_in || c >= n_out {
                return 0;
            }
            (w[k * n_out + c] / scale[c]).round().clamp(-127.0, 127.0) as i8
        };
        let groups = k_pad / 4;
        let mut packed = vec![0i8; k_pad * n_pad];
        let mut col_sum = vec![0i32; n_pad];
        for p in 0..n_pad / NR {
            for g in 0..groups {
                for j in 0..NR {
                    let c = p * NR + j;
                    for kk in 0..4 {
                        let v = q(g * 4 + kk, c);
                        packed[((p * groups + g) * NR + j) * 4 + kk] = v;
                        col_sum[c] += v as i32;
                    }
                }
            }
        }
        QLinear {
            packed,
            col_sum,
            scale,
            bias: b.to_vec(),
            n_in,
            k_pad,
            n_out,
            n_pad,
        }
    }

    /// Quantises `x` (`rows × n_in`) into `acts`, one scale per row.
    pub(crate) fn quantize(&self, x: &[f32], rows: usize, acts: &mut QActs) {
        let (n, kp) = (self.n_in, self.k_pad);
        acts.data.resize(rows * kp, 128);
        acts.scale.resize(rows, 1.0);
        let body = |((row, dst), s): ((&[f32], &mut [u8]), &mut f32)| {
            let amax = abs_max(row);
            *s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
            let inv = 1.0 / *s;
            for (d, v) in dst.iter_mut().zip(row) {
                // v·inv ∈ [-127, 127], so v·inv + 128.5 ∈ [1.5, 255.5] and the truncating
                // (saturating) cast rounds half up: a branch-free, vectorisable round.
                *d = (v * inv + 128.5) as u8;
            }
            dst[n..].fill(128);
        };
        let x = &x[..rows * n];
        if rows >= 64 {
            x.par_chunks(n)
                .zip(acts.data.par_chunks_mut(kp))
                .zip(acts.scale.par_iter_mut())
                .for_each(body);
        } else {
            x.chunks(n)
                .zip(acts.data.chunks_mut(kp))
                .zip(acts.scale.iter_mut())
                .for_each(body);
        }
    }

    /// `out (rows × n_out) = x · W + b` from activations quantised by [`QLinear::quantize`].
    pub(crate) fn forward(&self, acts: &QActs, out: &mut [f32], rows: usize, kernel: Kernel) {
        let out = &mut out[..rows * self.n_out];
        let task = |(t, block): (usize, &mut [f32])| {
            let r0 = t * ROWS_PER_TASK;
            let m = block.len() / self.n_out;
            self.rows(acts, r0, m, block, kernel);
        };
        let per_task = ROWS_PER_TASK * self.n_out;
        if rows >= 64 {
            out.par_chunks_mut(per_task).enumerate().for_each(task);
        } else {
            out.chunks_mut(per_task).enumerate().for_each(task);
        }
    }

    /// Rows `r0 .. r0 + m` into `out` (`m × n_out`).
    fn rows(&self, acts: &QActs, r0: usize, m: usize, out: &mut [f32], kernel: Kernel) {
        let kp = self.k_pad;
        let groups = kp / 4;
        let mut acc = [[0i32; NR]; MR];
        for p in 0..self.n_pad / NR {
            let panel = &self.packed[p * groups * NR * 4..(p + 1) * groups * NR * 4];
            let mut r = 0;
            while r < m {
                let mr = (m - r).min(MR);
                let a = &acts.data[(r0 + r) * kp..(r0 + r + mr) * kp];
                tile(kernel, a, kp, panel, mr, &mut acc);
                for (i, acc_row) in acc.iter().enumerate().take(mr) {
                    let s = acts.scale[r0 + r + i];
                    let row = &mut out[(r + i) * self.n_out..(r + i + 1) * self.n_out];
                    let (c0, c1) = (p * NR, (p * NR + NR).min(self.n_out));
                    let cols = c0..c1;
                    for ((((o, &v), &cs), &sc), &b) in row[cols.clone()]
                        .iter_mut()
                        .zip(acc_row)
                        .zip(&self.col_sum[cols.clone()])
                        .zip(&self.scale[cols.clone()])
                        .zip(&self.bias[cols])
                    {
                        *o = (v - 128 * cs) as f32 * s * sc + b;
                    }
                }
                r += mr;
            }
        }
    }
}

/// The largest |v| of `x`, in independent lanes so that it vectorises.
fn abs_max(x: &[f32]) -> f32 {
    let mut m = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder().iter().fold(0f32, |a, v| a.max(v.abs()));
    for c in chunks {
        for (a, v) in m.iter_mut().zip(c) {
            *a = a.max(v.abs());
        }
    }
    m.iter().fold(tail, |a, &v| a.max(v))
}

/// `acc[i][j] = Σ_k a[i][k] · panel[k][j]` for `mr ≤ MR` rows of `a` (stride `kp`).
fn tile(kernel: Kernel, a: &[u8], kp: usize, panel: &[i8], mr: usize, acc: &mut [[i32; NR]; MR]) {
    debug_assert!(a.len() >= mr * kp && panel.len() >= kp * NR);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni => {
            // SAFETY: `Kernel::Avx512Vnni` is only produced by `Kernel::detect` after
            // checking avx512f and avx512vnni at run time (and by tests that check the same).
            // The slices' lengths were checked above: `a` holds `mr` rows of `kp` bytes and
            // `panel` holds `kp / 4` groups of `NR · 4` bytes, all the kernel reads.
            unsafe { vnni::tile(a, kp, panel, mr, acc) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => {
            // SAFETY: `Kernel::Avx2` is only produced by `Kernel::detect`/`supported` after
            // checking avx2 at run time; lengths as for the VNNI arm.
            unsafe { avx2::tile(a, kp, panel, mr, acc) }
        }
        _ => portable_tile(a, kp, panel, mr, acc),
    }
}

fn portable_tile(a: &[u8], kp: usize, panel: &[i8], mr: usize, acc: &mut [[i32; NR]; MR]) {
    for (i, acc_row) in acc.iter_mut().enumerate().take(mr) {
        *acc_row = [0; NR];
        let row = &a[i * kp..(i + 1) * kp];
        for (g, quad) in row.chunks_exact(4).enumerate() {
            let w = &panel[g * NR * 4..(g + 1) * NR * 4];
            for (j, acc_v) in acc_row.iter_mut().enumerate() {
                let wj = &w[j * 4..j * 4 + 4];
                *acc_v += quad[0] as i32 * wj[0] as i32
                    + quad[1] as i32 * wj[1] as i32
                    + quad[2] as i32 * wj[2] as i32
                    + quad[3] as i32 * wj[3] as i32;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// See [`super::tile`]; dispatches on `mr` so each tile height is its own loop with
    /// its accumulators in registers.
    ///
    /// # Safety
    /// The CPU must support avx512f and avx512vnni; `a` must hold `mr` rows of `kp` bytes and
    /// `panel` `kp · NR` bytes.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn tile(
        a: &[u8],
        kp: usize,
        panel: &[i8],
        mr: usize,
        acc: &mut [[i32; NR]; MR],
    ) {
        // SAFETY (all arms): forwarded from this function's contract.
        unsafe {
            match mr {
                8 => rows::<8>(a, kp, panel, acc),
                7 => rows::<7>(a, kp, panel, acc),
                6 => rows::<6>(a, kp, panel, acc),
                5 => rows::<5>(a, kp, panel, acc),
                4 => rows::<4>(a, kp, panel, acc),
                3 => rows::<3>(a, kp, panel, acc),
                2 => rows::<2>(a, kp, panel, acc),
                _ => rows::<1>(a, kp, panel, acc),
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512vnni")]
    #[inline]
    unsafe fn rows<const M: usize>(a: &[u8], kp: usize, panel: &[i8], acc: &mut [[i32; NR]; MR]) {
        let mut c = [[_mm512_setzero_si512(); 2]; M];
        let (ap, bp) = (a.as_ptr(), panel.as_ptr());
        for g in 0..kp / 4 {
            // SAFETY: g < kp/4, so the two 64-byte loads end at (g+1)·NR·4 ≤ panel.len(),
            // and each 4-byte read of row i ends at i·kp + 4g + 4 ≤ M·kp ≤ a.len().
            unsafe {
                let b0 = _mm512_loadu_si512(bp.add(g * NR * 4) as *const _);
                let b1 = _mm512_loadu_si512(bp.add(g * NR * 4 + 64) as *const _);
                for (i, ci) in c.iter_mut().enumerate() {
                    let q = (ap.add(i * kp + g * 4) as *const i32).read_unaligned();
                    let av = _mm512_set1_epi32(q);
                    ci[0] = _mm512_dpbusd_epi32(ci[0], av, b0);
                    ci[1] = _mm512_dpbusd_epi32(ci[1], av, b1);
                }
            }
        }
        for (ci, out) in c.iter().zip(acc.iter_mut()) {
            // SAFETY: each row of `acc` is NR = 32 i32s: two 64-byte stores fit exactly.
            unsafe {
                _mm512_storeu_si512(out.as_mut_ptr() as *mut _, ci[0]);
                _mm512_storeu_si512(out.as_mut_ptr().add(16) as *mut _, ci[1]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// See [`super::tile`]. Each 16 weight bytes (4 columns × 4 inputs) are widened to 16
    /// i16 and multiplied by the row's 4 activations (widened, repeated) with `vpmaddwd`,
    /// which leaves each column as two partial sums; they are added once per tile.
    ///
    /// # Safety
    /// The CPU must support avx2; `a` must hold `mr` rows of `kp` bytes and `panel`
    /// `kp · NR` bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tile(
        a: &[u8],
        kp: usize,
        panel: &[i8],
        mr: usize,
        acc: &mut [[i32; NR]; MR],
    ) {
        let bp = panel.as_ptr();
        for (i, out) in acc.iter_mut().enumerate().take(mr) {
            let row = &a[i * kp..(i + 1) * kp];
            // 8 registers of 4 columns × 2 partial sums each: the panel's 32 columns.
            let mut c = [_mm256_setzero_si256(); 8];
            for (g, quad) in row.chunks_exact(4).enumerate() {
                let pattern = u16::from(quad[0]) as u64
                    | (u16::from(quad[1]) as u64) << 16
                    | (u16::from(quad[2]) as u64) << 32
                    | (u16::from(quad[3]) as u64) << 48;
                let av = _mm256_set1_epi64x(pattern as i64);
                for (j, cj) in c.iter_mut().enumerate() {
                    // SAFETY: g < kp/4 and j < 8, so the 16-byte load ends at
                    // g·NR·4 + 16·(j+1) ≤ (g+1)·NR·4 ≤ panel.len().
                    let w = unsafe {
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(
                            bp.add(g * NR * 4 + 16 * j) as *const _
                        ))
                    };
                    *cj = _mm256_add_epi32(*cj, _mm256_madd_epi16(w, av));
                }
            }
            for (j, cj) in c.iter().enumerate() {
                let mut lanes = [0i32; 8];
                // SAFETY: `lanes` is 8 i32 = 32 bytes, one unaligned 256-bit store.
                unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, *cj) };
                for q in 0..4 {
                    out[j * 4 + q] = lanes[2 * q] + lanes[2 * q + 1];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random f32 in [-1, 1).
    fn rnd(i: usize) -> f32 {
        let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        (x as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn reference(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        rows: usize,
        n_in: usize,
        n_out: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; rows * n_out];
        for r in 0..rows {
            for c in 0..n_out {
                let mut s = b[c] as f64;
                for k in 0..n_in {
                    s += x[r * n_in + k] as f64 * w[k * n_out + c] as f64;
                }
                out[r * n_out + c] = s as f32;
            }
        }
        out
    }

    /// Odd shapes (padding on both axes, a tail tile) and a real one.
    #[test]
    fn quantised_product_tracks_f32_and_kernels_agree_exactly() {
        for &(rows, n_in, n_out) in &[(5usize, 13usize, 37usize), (70, 384, 96), (9, 64, 32)] {
            let x: Vec<f32> = (0..rows * n_in).map(|i| rnd(i) * 3.0).collect();
            let w: Vec<f32> = (0..n_in * n_out).map(|i| rnd(i + 7_777) * 0.2).collect();
            let b: Vec<f32> = (0..n_out).map(|i| rnd(i + 99) * 0.1).collect();
            let q = QLinear::new(&w, &b, n_in, n_out);
            let mut acts = QActs::default();
            q.quantize(&x, rows, &mut acts);
            let want = reference(&x, &w, &b, rows, n_in, n_out);
            let mut portable = vec![0f32; rows * n_out];
            q.forward(&acts, &mut portable, rows, Kernel::Portable);
            // Error of a dot product of two 8-bit quantised vectors: a small share of the
            // product of their norms.
            for r in 0..rows {
                let xr = &x[r * n_in..(r + 1) * n_in];
                let xn = xr.iter().map(|v| v * v).sum::<f32>().sqrt();
                for c in 0..n_out {
                    let wn = (0..n_in)
                        .map(|k| w[k * n_out + c].powi(2))
                        .sum::<f32>()
                        .sqrt();
                    let err = (portable[r * n_out + c] - want[r * n_out + c]).abs();
                    assert!(err <= 0.02 * xn * wn + 1e-6, "row {r} col {c}: error {err}");
                }
            }
            for k in Kernel::supported() {
                let mut fast = vec![0f32; rows * n_out];
                q.forward(&acts, &mut fast, rows, k);
                assert_eq!(
                    fast,
                    portable,
                    "{} and portable kernels must agree bit for bit",
                    k.name()
                );
            }
        }
    }

    #[test]
    fn zero_rows_and_zero_weights_are_exact() {
        let (rows, n_in, n_out) = (3, 8, 4);
        let x = vec![0f32; rows * n_in];
        let w = vec![0f32; n_in * n_out];
        let b = vec![0.5f32; n_out];
        let q = QLinear::new(&w, &b, n_in, n_out);
        let mut acts = QActs::default();
        q.quantize(&x, rows, &mut acts);
        let mut out = vec![9f32; rows * n_out];
        q.forward(&acts, &mut out, rows, Kernel::detect());
        assert!(out.iter().all(|&v| v == 0.5));
    }

    #[test]
    fn precision_names_round_trip_and_unknown_is_refused() {
        for p in [Precision::F32, Precision::Int8] {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
        }
        let e = "fp16".parse::<Precision>().unwrap_err();
        assert!(e.contains("fp16") && e.contains("int8"), "{e}");
    }
}
