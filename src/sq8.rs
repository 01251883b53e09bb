//! Scalar-quantised (int8) copies of a segment's vectors, searched in place of the f32
//! vectors and rescored exactly: the vector precision option of an index
//! ([`VectorPrecision`], chosen at creation). The same codes, held in memory ([`Codes`]),
//! are what the graph build's walk compares ([`crate::graph_build::BuildDistances`]).
//!
//! Why: a graph search reads about `ef · m` vectors scattered over the segment, so what
//! must stay in memory for warm queries is the whole vector file (1.5 KB a chunk at 384
//! dimensions, 1.5 GB at a million chunks). With int8 codes the walk reads 388 bytes a
//! chunk (a quarter), and only the `ef` candidates it returns are read again at f32 and
//! rescored exactly, as Qdrant does with its quantised vectors on disk: the f32 file stays
//! on disk, touched a few pages per query. The ranking that leaves the segment is the exact
//! cosine of the candidates, so quantisation can only cost recall (a true neighbour the
//! walk missed), never the order of what it found.
//!
//! Scheme: symmetric per vector, `x ≈ scale · q` with `q = round(x / scale)` in `−127..=127`
//! and `scale = max|x| / 127`; the query is quantised the same way, and the score is
//! `scale_x · scale_q · Σ q_x q_q` with an exact integer sum.
//!
//! Layout (little endian): `PPSQ8V01`, rows `u64`, dim `u32`, 4 bytes of padding; the
//! scales (`rows` `f32`); the codes (`rows · dim` `i8`).
//!
//! Not for: the encoder's int8 arithmetic ([`crate::quant`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::quant::Kernel;
use crate::store::VectorFile;

const MAGIC: &[u8; 8] = b"PPSQ8V01";
const HEADER: usize = 24;

/// How an index keeps the vectors its graph searches walk. Chosen when the index is
/// created and recorded in its manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorPrecision {
    /// The f32 vectors only (the default: exact walk, no extra file).
    #[default]
    F32,
    /// An int8 copy beside the f32 vectors for the graph walk, the candidates rescored at
    /// f32 (a quarter of the bytes a walk touches; 25 % more on disk).
    Int8,
}

impl std::str::FromStr for VectorPrecision {
    type Err = Error;
    fn from_str(s: &str) -> Result<VectorPrecision> {
        match s {
            "f32" => Ok(VectorPrecision::F32),
            "int8" => Ok(VectorPrecision::Int8),
            other => Err(Error::invalid(
                "vector precision",
                format!("{other:?}: expected f32 or int8"),
            )),
        }
    }
}

/// A query quantised for [`Sq8Vectors::score`].
pub struct QueryCode {
    codes: Vec<i8>,
    scale: f32,
}

/// Symmetric int8 codes of `x` appended to `out`, and their scale.
fn quantise(x: &[f32], out: &mut Vec<i8>) -> f32 {
    let at = out.len();
    out.resize(at + x.len(), 0);
    quantise_into(x, &mut out[at..])
}

/// Symmetric int8 codes of `x` written to `out` (as long as `x`), and their scale.
fn quantise_into(x: &[f32], out: &mut [i8]) -> f32 {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    for (o, v) in out.iter_mut().zip(x) {
        *o = (v / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

impl QueryCode {
    /// Quantises `query`.
    pub fn new(query: &[f32]) -> QueryCode {
        let mut codes = Vec::with_capacity(query.len());
        let scale = quantise(query, &mut codes);
        QueryCode { codes, scale }
    }
}

/// Exact integer dot product of two code rows: the AVX2 build of the loop when the CPU has
/// AVX2 (detected at run time, as [`crate::embed::dot`] does), else the baseline one.
#[inline]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    dot_i8_portable(a, b)
}

/// [`dot_i8_portable`] compiled for AVX2 (`vpmovsxbw` and `vpmaddwd` on 16 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_portable(a, b)
}

/// Plain widening loop over chunks of 32 that the compiler vectorises for the target it is
/// compiled for.
#[inline(always)]
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 32];
    let ca = a.chunks_exact(32);
    let cb = b.chunks_exact(32);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..32 {
            acc[k] += x[k] as i32 * y[k] as i32;
        }
    }
    let mut s: i32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += *x as i32 * *y as i32;
    }
    s
}

/// Which integer kernel compares two rows of [`Codes`] on this CPU (detected at run time,
/// as the encoder's int8 arithmetic detects it): for the bench's report of which path ran.
/// `Avx512Vnni` runs `vpdpbusd` on 64 codes at a time; the others run the widening loop
/// (AVX2 or portable).
pub fn code_kernel() -> Kernel {
    Kernel::detect()
}

/// `Σ a·b` with `vpdpbusd`, 64 products an instruction. The instruction multiplies unsigned
/// by signed bytes, so `a` is read offset by 128 (`a ^ 0x80` is `a + 128` as a u8) and
/// `128 · Σ b` taken back out: `b_sum` is the sum of `b` over its first `len / 64 · 64`
/// codes; the rest are multiplied one by one.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dot_i8_vnni(a: &[i8], b: &[i8], b_sum: i32) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let wide = n / 64 * 64;
    let flip = _mm512_set1_epi8(-128);
    let mut acc = _mm512_setzero_si512();
    let mut i = 0;
    while i < wide {
        // SAFETY: `i + 64 <= wide <= n`, inside both slices; unaligned loads.
        let (x, y) = unsafe {
            (
                _mm512_loadu_si512(a.as_ptr().add(i) as *const _),
                _mm512_loadu_si512(b.as_ptr().add(i) as *const _),
            )
        };
        acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(x, flip), y);
        i += 64;
    }
    let mut s = _mm512_reduce_add_epi32(acc) - 128 * b_sum;
    for k in wide..n {
        s += a[k] as i32 * b[k] as i32;
    }
    s
}

/// Int8 codes of a vector file held in memory, for comparing rows with each other: the
/// graph build's distances ([`crate::graph_build::BuildDistances`]).
pub struct Codes {
    dim: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// Per row, the sum of its codes over the dimensions [`dot_i8_vnni`] takes 64 at a time
    /// (empty unless the kernel is [`Kernel::Avx512Vnni`]).
    sums: Vec<i32>,
    kernel: Kernel,
}

impl Codes {
    /// Quantises every row of `vectors` (on every core), compared on [`code_kernel`].
    pub fn of(vectors: &VectorFile) -> Codes {
        Codes::with_kernel(vectors, code_kernel())
    }

    /// [`Codes::of`] compared on `kernel` where the CPU has it (to measure the path other
    /// CPUs take): `Avx512Vnni` on a CPU without it falls back, and `Avx2` or `Portable`
    /// both mean the widening loop, which takes AVX2 where the CPU has it.
    pub fn with_kernel(vectors: &VectorFile, kernel: Kernel) -> Codes {
        use rayon::prelude::*;
        let (rows, dim) = (vectors.len(), vectors.dim());
        let mut codes = vec![0i8; rows * dim];
        let mut scales = vec![0f32; rows];
        if dim > 0 {
            codes
                .par_chunks_mut(dim)
                .zip(scales.par_iter_mut())
                .enumerate()
                .for_each(|(r, (out, scale))| *scale = quantise_into(vectors.row(r), out));
        }
        let vnni = kernel == Kernel::Avx512Vnni && code_kernel() == Kernel::Avx512Vnni;
        let kernel = if vnni {
            Kernel::Avx512Vnni
        } else if Kernel::supported().contains(&Kernel::Avx2) {
            Kernel::Avx2
        } else {
            Kernel::Portable
        };
        let sums = if vnni && dim > 0 {
            let wide = dim / 64 * 64;
            codes
                .par_chunks(dim)
                .map(|row| row[..wide].iter().map(|&c| c as i32).sum())
                .collect()
        } else {
            Vec::new()
        };
        Codes {
            dim,
            codes,
            scales,
            sums,
            kernel,
        }
    }

    /// Which integer kernel [`Codes::sim`] runs ([`code_kernel`] when they were made).
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The approximate cosine of rows `a` and `b`.
    #[inline]
    pub fn sim(&self, a: usize, b: usize) -> f32 {
        let d = self.dim;
        let (x, y) = (
            &self.codes[a * d..(a + 1) * d],
            &self.codes[b * d..(b + 1) * d],
        );
        let dot = match self.sums.get(b) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `sums` is only filled when the CPU has AVX-512F and VNNI (`code_kernel`).
            Some(&sum) => unsafe { dot_i8_vnni(x, y, sum) },
            _ => dot_i8(x, y),
        };
        self.scales[a] * self.scales[b] * dot as f32
    }

    /// Row `r`'s codes as bytes (for a prefetch hint).
    #[inline]
    pub fn row_bytes(&self, r: usize) -> &[u8] {
        let d = self.dim;
        let c = &self.codes[r * d..(r + 1) * d];
        // SAFETY: i8 and u8 have the same size and alignment.
        unsafe { std::slice::from_raw_parts(c.as_ptr() as *const u8, c.len()) }
    }
}

/// A segment's int8 vectors, memory-mapped.
pub struct Sq8Vectors {
    path: PathBuf,
    map: memmap2::Mmap,
    rows: usize,
    dim: usize,
}

impl Sq8Vectors {
    /// Writes the int8 copy of `vectors` to `path`, fsynced.
    pub fn write(path: &Path, vectors: &VectorFile) -> Result<()> {
        let (rows, dim) = (vectors.len(), vectors.dim());
        let mut out = Vec::with_capacity(HEADER + rows * (4 + dim));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(rows as u64).to_le_bytes());
        out.extend_from_slice(&(dim as u32).to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        let mut codes = Vec::with_capacity(rows * dim);
        let mut scales = Vec::with_capacity(rows * 4);
        for r in 0..rows {
            let s = quantise(vectors.row(r), &mut codes);
            scales.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&scales);
        out.extend(codes.iter().map(|&c| c as u8));
        crate::store::write_synced(path, &out)
    }

    /// Maps and checks the int8 copy of a segment of `rows` vectors of `dim` dimensions.
    pub fn open(path: &Path, rows: usize, dim: usize) -> Result<Sq8Vectors> {
        let map = crate::store::map_file(path)?;
        let bad = |what: String| Error::corrupt(path, format!("int8 vector file {what}"));
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(bad("has a bad magic number".into()));
        }
        let n = u64::from_le_bytes(
            map[8..16]
                .try_into()
                .map_err(|_| bad("is damaged".into()))?,
        );
        let d = u32::from_le_bytes(
            map[16..20]
                .try_into()
                .map_err(|_| bad("is damaged".into()))?,
        );
        if n as usize != rows || d as usize != dim {
            return Err(bad(format!(
                "holds {n} vectors of {d} dimensions for a segment of {rows} of {dim}"
            )));
        }
        if map.len() != HEADER + rows * (4 + dim) {
            return Err(bad(format!(
                "is {} bytes, expected {}",
                map.len(),
                HEADER + rows * (4 + dim)
            )));
        }
        Ok(Sq8Vectors {
            path: path.to_path_buf(),
            map,
            rows,
            dim,
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Vectors it holds.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The approximate cosine of `q` and row `r`.
    #[inline]
    pub fn score(&self, q: &QueryCode, r: usize) -> f32 {
        let s = HEADER + r * 4;
        let scale = f32::from_le_bytes([
            self.map[s],
            self.map[s + 1],
            self.map[s + 2],
            self.map[s + 3],
        ]);
        let start = HEADER + self.rows * 4 + r * self.dim;
        let bytes = &self.map[start..start + self.dim];
        // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is a
        // valid i8; the slice is in bounds (checked by the indexing just above).
        let codes = unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const i8, bytes.len()) };
        scale * q.scale * dot_i8(codes, &q.codes) as f32
    }

    /// Row `r`'s codes as bytes (for a prefetch hint; empty past the end).
    fn code_bytes(&self, r: usize) -> &[u8] {
        let start = HEADER + self.rows * 4 + r * self.dim;
        self.map.get(start..start + self.dim).unwrap_or(&[])
    }
}

/// A graph walk's scorer over int8 codes ([`crate::graph_file::RowScorer`]).
pub struct Sq8Rows<'a> {
    /// The segment's codes.
    pub codes: &'a Sq8Vectors,
    /// The query's code.
    pub query: QueryCode,
}

impl crate::graph_file::RowScorer for Sq8Rows<'_> {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        self.codes.score(&self.query, row as usize)
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        crate::graph_file::prefetch_bytes(self.codes.code_bytes(row as usize));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_scores_track_the_cosine_and_damage_is_named() {
        let dim = 384;
        let v = crate::bench::clustered_vectors(500, dim, 10, 0.3, 5);
        let vf = VectorFile::from_vec(dim, v);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s1.sq8");
        Sq8Vectors::write(&p, &vf).unwrap();
        let q8 = Sq8Vectors::open(&p, 500, dim).unwrap();
        let query = vf.row(7).to_vec();
        let qc = QueryCode::new(&query);
        let mut worst = 0f32;
        for r in 0..500 {
            let exact = crate::embed::dot(&query, vf.row(r));
            worst = worst.max((q8.score(&qc, r) - exact).abs());
        }
        // Two 8-bit roundings of unit vectors: errors of a few thousandths.
        assert!(worst < 0.01, "largest error {worst}");
        assert!(Sq8Vectors::open(&p, 499, dim).is_err());
        let mut b = std::fs::read(&p).unwrap();
        b.truncate(b.len() - 1);
        std::fs::write(&p, &b).unwrap();
        let e = Sq8Vectors::open(&p, 500, dim).err().unwrap().to_string();
        assert!(e.contains("s1.sq8"), "{e}");
        assert!("int9".parse::<VectorPrecision>().is_err());
    }

    #[test]
    fn in_memory_codes_give_the_file_scores_on_every_kernel_and_width() {
        // 384 is six 64-code blocks for the VNNI kernel; 100 leaves a 36-code tail.
        for dim in [384, 100] {
            let v = crate::bench::clustered_vectors(200, dim, 8, 0.3, 11);
            let vf = VectorFile::from_vec(dim, v);
            let codes = Codes::of(&vf);
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("c.sq8");
            Sq8Vectors::write(&p, &vf).unwrap();
            let file = Sq8Vectors::open(&p, 200, dim).unwrap();
            for a in [0, 17, 199] {
                let q = QueryCode::new(vf.row(a));
                for b in 0..200 {
                    // Same codes, same scales, exact integer sums: equal up to the order of
                    // two float multiplications.
                    let (x, y) = (codes.sim(a, b), file.score(&q, b));
                    assert!((x - y).abs() < 1e-5, "dim {dim} rows {a},{b}: {x} vs {y}");
                    let exact = crate::embed::dot(vf.row(a), vf.row(b));
                    assert!((x - exact).abs() < 0.01, "dim {dim}: {x} vs exact {exact}");
                }
            }
            // Built on the kernel this CPU reports; with VNNI, the 384-wide rows took the
            // `vpdpbusd` path and still matched the file's widening scores above.
            assert_eq!(codes.kernel(), code_kernel());
            assert_eq!(codes.sums.is_empty(), code_kernel() != Kernel::Avx512Vnni);
            // The widening loop asked for gives the same scores (exact integer sums).
            let wide = Codes::with_kernel(&vf, Kernel::Avx2);
            assert_ne!(wide.kernel(), Kernel::Avx512Vnni);
            assert!(wide.sums.is_empty());
            for b in 0..200 {
                assert_eq!(wide.sim(17, b), codes.sim(17, b), "dim {dim} row {b}");
            }
        }
    }
}
