//! The embedder of `pinpoint bench --scale`: real MiniLM output for a BEIR corpus's
//! sentences, embedded once and cached, handed back for any number of tagged copies.
//!
//! A chunk text ending in the tag `zq<copy>x<sentence>` gets its sentence's vector,
//! perturbed by its copy number (copy 0: the vector itself), and, when the index keeps
//! token codes, its sentence's real token vectors, reduced to their signs and flipped at
//! every dimension where the copy's perturbation flipped the sign of the vector. So a copy
//! costs the commit, the store and the query's MaxSim what a real chunk of its length
//! costs, while only the base sentences and the probes' new texts meet the model.
//!
//! Not for: quality (the copies' token codes are not a text's).

use std::path::Path;
use std::sync::Arc;

use super::xorshift;
use crate::embed::{normalize, Embedder, TokenMatrix};
use crate::error::{Error, Result};
use crate::late::code_bytes;
use crate::models::ModelSpec;

/// The tag a chunk text ends with: `zq<copy>x<sentence>`.
pub fn tag(text: &str) -> Option<(u64, usize)> {
    let last = text.split_whitespace().last()?.strip_prefix("zq")?;
    let (c, b) = last.split_once('x')?;
    Some((c.parse().ok()?, b.parse().ok()?))
}

/// The text of copy `copy` of sentence `b` (`text`): the sentence and its tag.
pub fn tagged(text: &str, copy: u64, b: usize) -> String {
    format!("{text} zq{copy}x{b}")
}

/// Every base sentence's token vectors as sign codes (one bit a dimension, as the index
/// stores them): 48 bytes a token instead of 1,536, so that a hundred thousand sentences
/// take ~150 MB rather than 4 GB.
struct BaseTokens {
    /// Token rows before each sentence (one more entry than sentences).
    offsets: Vec<u64>,
    /// The rows' codes, `code_bytes(dim)` each.
    codes: Vec<u8>,
}

/// The base material as the benchmark holds it while building: its cache files mapped,
/// not copied into the heap, so that [`ScaleEmbedder::release_pages`] can hand the pages
/// back while the engine builds graphs (a real build holds a model there, not 0.5 GB of
/// sentences), and the report's build peak is the engine's.
struct BaseMaps {
    /// `sentences * dim` little-endian f32s.
    vectors: memmap2::Mmap,
    /// The token cache ([`BaseTokens::to_bytes`]) and where its codes start; its offsets
    /// (8 bytes a sentence) are read into the heap.
    tokens: Option<(Vec<u64>, memmap2::Mmap, usize)>,
}

/// Hands the engine a tagged chunk's vector and token vectors (its sentence's, perturbed
/// by its copy number) and embeds everything else with the model.
pub struct ScaleEmbedder {
    real: Arc<dyn Embedder>,
    base: BaseMaps,
    /// Sentences held.
    n: usize,
    /// Sign codes of the tags' pieces ([`ScaleEmbedder::piece_code`]).
    pieces: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
    sigma: f32,
}

impl ScaleEmbedder {
    /// The base material of `texts` (their vectors, and their token codes when `tokens`),
    /// read from the caches in `work` keyed by `key` or embedded now and cached there.
    pub fn prepare(
        real: Arc<dyn Embedder>,
        texts: &[String],
        tokens: bool,
        sigma: f32,
        work: &Path,
        key: &str,
        log: &dyn Fn(&str),
    ) -> Result<ScaleEmbedder> {
        let dim = real.dim();
        let vec_cache = work.join(format!("scale-base-{key}.f32"));
        let tok_cache = work.join(format!("scale-base-{key}.tok"));
        let cached = Self::map_caches(&vec_cache, &tok_cache, texts.len(), dim, tokens);
        let base = match cached {
            Some(base) => {
                log(&format!(
                    "{} sentence vectors{} from {}",
                    texts.len(),
                    if tokens { " and token codes" } else { "" },
                    vec_cache.display()
                ));
                base
            }
            None => {
                log(&format!("embedding {} sentences ...", texts.len()));
                let prefix = &real.spec().passage_prefix;
                let mut base = Vec::with_capacity(texts.len() * dim);
                let mut toks = BaseTokens {
                    offsets: vec![0],
                    codes: Vec::new(),
                };
                for part in texts.chunks(256) {
                    if tokens {
                        // As a commit embeds a passage: the prefix, one forward pass.
                        let full: Vec<String> =
                            part.iter().map(|t| format!("{prefix}{t}")).collect();
                        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
                        let (v, ms) = real.embed_with_tokens(&refs)?;
                        base.extend(v);
                        for m in &ms {
                            toks.push(m);
                        }
                    } else {
                        let refs: Vec<&str> = part.iter().map(String::as_str).collect();
                        base.extend(real.embed_passages(&refs)?);
                    }
                }
                let bytes: Vec<u8> = base.iter().flat_map(|x: &f32| x.to_le_bytes()).collect();
                std::fs::write(&vec_cache, bytes).map_err(|e| Error::io(&vec_cache, e))?;
                if tokens {
                    std::fs::write(&tok_cache, toks.to_bytes())
                        .map_err(|e| Error::io(&tok_cache, e))?;
                }
                Self::map_caches(&vec_cache, &tok_cache, texts.len(), dim, tokens).ok_or_else(
                    || {
                        Error::invalid(
                            "scale cache",
                            format!("{} does not read back", vec_cache.display()),
                        )
                    },
                )?
            }
        };
        Ok(ScaleEmbedder {
            real,
            base,
            n: texts.len(),
            pieces: Default::default(),
            sigma,
        })
    }

    /// The caches of `n` sentences at `dim`, mapped; none when either is missing, stale
    /// or damaged (they are embedded again).
    fn map_caches(
        vec_cache: &Path,
        tok_cache: &Path,
        n: usize,
        dim: usize,
        tokens: bool,
    ) -> Option<BaseMaps> {
        let vectors = crate::store::map_file(vec_cache).ok()?;
        if vectors.len() != n * dim * 4 {
            return None;
        }
        let tokens = if tokens {
            let map = crate::store::map_file(tok_cache).ok()?;
            let (offsets, at) = BaseTokens::header(&map, n, dim)?;
            Some((offsets, map, at))
        } else {
            None
        };
        Some(BaseMaps { vectors, tokens })
    }

    /// Lets the kernel take back the pages of the base material (read again from the
    /// cache files when next needed): called when a build stage starts that makes no
    /// copies.
    pub fn release_pages(&self) {
        crate::store::release_map_pages(&self.base.vectors);
        if let Some((_, m, _)) = &self.base.tokens {
            crate::store::release_map_pages(m);
        }
    }

    /// Sentence `b`'s vector as embedded.
    fn base_vector(&self, b: usize) -> Vec<f32> {
        let dim = self.real.dim();
        self.base
            .vectors
            .get(b * dim * 4..(b + 1) * dim * 4)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Bytes of base material this embedder maps (the sentences' vectors and token
    /// codes): at most the benchmark's own share of the build's resident memory, none of
    /// it while graphs are built ([`ScaleEmbedder::release_pages`]).
    pub fn held_bytes(&self) -> u64 {
        let toks = self
            .base
            .tokens
            .as_ref()
            .map_or(0, |(o, m, _)| m.len() + 8 * o.len());
        (self.base.vectors.len() + toks) as u64
    }

    /// Real sentences held.
    pub fn sentences(&self) -> usize {
        self.n
    }

    /// Copy `copy` of sentence `b`'s vector (copy 0: the vector itself).
    pub fn vector(&self, b: usize, copy: u64) -> Vec<f32> {
        let mut v = self.base_vector(b);
        if copy > 0 {
            let mut r = xorshift(copy.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b as u64);
            for x in v.iter_mut() {
                // Box-Muller from two uniforms in (0, 1).
                let (u1, u2) = ((r() + 0.5).max(1e-7) as f64, (r() + 0.5) as f64);
                let g = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                *x += self.sigma * g as f32;
            }
            normalize(&mut v);
        }
        v
    }

    /// The token vectors of `text`, copy `copy` of sentence `b` whose vector is `v`: the
    /// signs of the sentence's own tokens, flipped where the copy's vector changed sign,
    /// then the tag's pieces (each the sign code of its text embedded alone, once per
    /// distinct piece), all as unit rows; none when no codes are held. A sentence the model
    /// truncated keeps its rows only, as a real chunk's tag past the window would.
    fn token_rows(&self, text: &str, b: usize, v: &[f32]) -> Result<Option<TokenMatrix>> {
        let Some((offsets, map, at)) = self.base.tokens.as_ref() else {
            return Ok(None);
        };
        let codes = map.get(*at..).unwrap_or(&[]);
        let dim = self.real.dim();
        let nb = code_bytes(dim);
        let orig = self.base_vector(b);
        let (Some(&a), Some(&e)) = (offsets.get(b), offsets.get(b + 1)) else {
            return Ok(None);
        };
        let (a, e) = (a as usize, e as usize);
        let unit = 1.0 / (dim as f32).sqrt();
        let push = |data: &mut Vec<f32>, row: &[u8], flip: bool| {
            for j in 0..dim {
                let positive = row[j / 8] >> (j % 8) & 1 == 1;
                let flipped = flip && (v[j] > 0.0) != (orig[j] > 0.0);
                data.push(if positive != flipped { unit } else { -unit });
            }
        };
        let mut data = Vec::with_capacity((e - a + 8) * dim);
        for row in codes.get(a * nb..e * nb).unwrap_or(&[]).chunks_exact(nb) {
            push(&mut data, row, true);
        }
        let tag_at = text.rfind(" zq").map_or(text.len(), |i| i + 1);
        let spans = self.real.token_spans(text);
        let before = spans.iter().filter(|s| s.0 < tag_at).count();
        if before == e - a {
            for &(x, y) in spans.iter().filter(|s| s.0 >= tag_at) {
                let piece = text.get(x..y).unwrap_or("");
                push(&mut data, &self.piece_code(piece)?, false);
            }
        }
        Ok(Some(TokenMatrix { dim, data }))
    }

    /// The sign code of `piece` embedded alone by the model (cached: a tag has few
    /// distinct pieces, `z`, `q`, `x` and digit groups).
    fn piece_code(&self, piece: &str) -> Result<Vec<u8>> {
        if let Some(c) = self.pieces.lock().ok().and_then(|m| m.get(piece).cloned()) {
            return Ok(c);
        }
        let m = self.real.embed_tokens(&[piece])?;
        let nb = code_bytes(self.real.dim());
        let mut code = crate::late::encode(m.first().unwrap_or(&TokenMatrix::default()), |_| true);
        // One row's code: a piece the model gave no row reads as all negative.
        code.resize(nb, 0);
        if let Ok(mut map) = self.pieces.lock() {
            map.insert(piece.to_string(), code.clone());
        }
        Ok(code)
    }

    /// A tagged text's sentence and copy, when this embedder holds that sentence.
    fn copy_of(&self, text: &str) -> Option<(u64, usize)> {
        tag(text).filter(|&(_, b)| b < self.sentences())
    }

    fn embed(
        &self,
        texts: &[&str],
        model: impl Fn(&[&str]) -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(texts.len() * self.real.dim());
        for t in texts {
            match self.copy_of(t) {
                Some((c, b)) => out.extend(self.vector(b, c)),
                None => out.extend(model(&[t])?),
            }
        }
        Ok(out)
    }
}

impl BaseTokens {
    fn push(&mut self, m: &TokenMatrix) {
        self.codes
            .extend_from_slice(&crate::late::encode(m, |_| true));
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last + m.len() as u64);
    }

    /// The cache file: the sentence count, the row offsets, then the codes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * (self.offsets.len() + 1) + self.codes.len());
        out.extend(((self.offsets.len() - 1) as u64).to_le_bytes());
        for o in &self.offsets {
            out.extend(o.to_le_bytes());
        }
        out.extend(&self.codes);
        out
    }

    /// The row offsets of a cache file of `n` sentences at `dim`, and where its codes
    /// start; none when it is not one (a stale or damaged cache is embedded again).
    fn header(b: &[u8], n: usize, dim: usize) -> Option<(Vec<u64>, usize)> {
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                b.get(8 * i..8 * i + 8)?.try_into().ok()?,
            ))
        };
        if word(0)? as usize != n {
            return None;
        }
        let offsets: Vec<u64> = (1..=n + 1).map(word).collect::<Option<_>>()?;
        let at = 8 * (n + 2);
        let codes = b.get(at..)?.len();
        let rows = *offsets.last()? as usize;
        (offsets[0] == 0
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && codes == rows * code_bytes(dim))
        .then_some((offsets, at))
    }
}

impl Embedder for ScaleEmbedder {
    fn spec(&self) -> &ModelSpec {
        self.real.spec()
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<f32>> {
        self.embed(texts, |t| self.real.embed_passages(t))
    }
    fn embed_raw(&self, texts: &[&str]) -> Result<Vec<f32>> {
        self.embed(texts, |t| self.real.embed_raw(t))
    }
    fn embed_tokens(&self, texts: &[&str]) -> Result<Vec<TokenMatrix>> {
        Ok(self.embed_with_tokens(texts)?.1)
    }
    fn embed_with_tokens(&self, texts: &[&str]) -> Result<(Vec<f32>, Vec<TokenMatrix>)> {
        use rayon::prelude::*;
        // A copy's token rows are its sentence's first rows, so the stopword filter reads
        // them against the sentence's own token spans (the tag comes last). Copies are
        // made on every core: at a million chunks this is most of the build's embedding
        // stage, where a real build would wait hours on the model.
        let copies: Vec<Option<(Vec<f32>, TokenMatrix)>> = texts
            .par_iter()
            .map(|t| -> Result<_> {
                let Some((c, b)) = self.copy_of(t) else {
                    return Ok(None);
                };
                let v = self.vector(b, c);
                Ok(self.token_rows(t, b, &v)?.map(|m| (v, m)))
            })
            .collect::<Result<_>>()?;
        let mut vecs = Vec::with_capacity(texts.len() * self.real.dim());
        let mut toks = Vec::with_capacity(texts.len());
        for (t, copy) in texts.iter().zip(copies) {
            match copy {
                Some((v, m)) => {
                    vecs.extend(v);
                    toks.push(m);
                }
                None => {
                    let (v, mut m) = self.real.embed_with_tokens(&[t])?;
                    vecs.extend(v);
                    toks.push(m.pop().unwrap_or_default());
                }
            }
        }
        Ok((vecs, toks))
    }
    fn token_spans(&self, text: &str) -> Vec<(usize, usize)> {
        self.real.token_spans(text)
    }
    fn precision(&self) -> crate::quant::Precision {
        self.real.precision()
    }
    fn encoder_path(&self) -> String {
        self.real.encoder_path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_the_copy_and_sentence_and_nothing_else_is_one() {
        assert_eq!(tag(&tagged("Cells divide.", 7, 42)), Some((7, 42)));
        assert_eq!(tag("Cells divide."), None);
        assert_eq!(tag("a zq7y42"), None);
        assert_eq!(tag("a zqx42"), None);
    }

    #[test]
    fn the_token_cache_reads_back_and_refuses_another_size() {
        let m = TokenMatrix {
            dim: 16,
            data: (0..48)
                .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
                .collect(),
        };
        let mut t = BaseTokens {
            offsets: vec![0],
            codes: Vec::new(),
        };
        t.push(&m);
        t.push(&TokenMatrix {
            dim: 16,
            data: vec![],
        });
        let b = t.to_bytes();
        let (offsets, at) = BaseTokens::header(&b, 2, 16).expect("reads back");
        assert_eq!(offsets, vec![0, 3, 3]);
        assert_eq!(&b[at..], &t.codes[..]);
        assert!(BaseTokens::header(&b, 3, 16).is_none());
        assert!(BaseTokens::header(&b[..b.len() - 1], 2, 16).is_none());
    }

    #[test]
    fn a_copy_carries_its_sentences_token_signs_flipped_where_its_vector_flipped() {
        let work = tempfile::tempdir().expect("tempdir");
        let real: Arc<dyn Embedder> = Arc::new(crate::embed::HashEmbedder::new(32));
        let texts: Vec<String> = ["cells divide quickly", "proteins fold into shapes"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let quiet = |_: &str| {};
        let e = ScaleEmbedder::prepare(real.clone(), &texts, true, 0.05, work.path(), "k", &quiet)
            .expect("prepare");
        let (own_v, own_t) = real.embed_with_tokens(&[&texts[1]]).expect("real");
        // Copy 0 is the sentence: its vector and the signs of its own token vectors.
        let (v0, t0) = e
            .embed_with_tokens(&[&tagged(&texts[1], 0, 1)])
            .expect("copy 0");
        assert_eq!(v0, own_v);
        // Then a row for each piece of the tag (one whitespace word for this embedder),
        // the code of that piece embedded alone.
        let n = own_t[0].len();
        assert_eq!(t0[0].len(), n + 1);
        for (a, b) in t0[0].data.iter().zip(&own_t[0].data) {
            assert_eq!(*a > 0.0, *b > 0.0);
        }
        let tag_alone = real.embed_tokens(&["zq0x1"]).expect("tag")[0].data.clone();
        for (a, b) in t0[0].rows().nth(n).expect("tag row").iter().zip(&tag_alone) {
            assert_eq!(*a > 0.0, *b > 0.0);
        }
        // Copy 9 moved its vector; each token dimension flips exactly where it flipped.
        let (v9, t9) = e
            .embed_with_tokens(&[&tagged(&texts[1], 9, 1)])
            .expect("copy 9");
        let flips: Vec<bool> = v9
            .iter()
            .zip(&own_v)
            .map(|(a, b)| (*a > 0.0) != (*b > 0.0))
            .collect();
        assert!(flips.iter().any(|&f| f) && !flips.iter().all(|&f| f));
        for (r9, r0) in t9[0].rows().zip(t0[0].rows()).take(n) {
            for j in 0..32 {
                assert_eq!((r9[j] > 0.0) != (r0[j] > 0.0), flips[j], "dimension {j}");
            }
        }
        // An untagged text, and a tag past the sentences held, meet the model.
        let (vq, _) = e
            .embed_with_tokens(&["proteins fold zq1x7"])
            .expect("untagged");
        assert_eq!(vq, real.embed_raw(&["proteins fold zq1x7"]).expect("real"));
        // Pages handed back are read again from the caches.
        e.release_pages();
        assert_eq!(
            e.embed_with_tokens(&[&tagged(&texts[1], 9, 1)])
                .expect("again"),
            (v9.clone(), t9.clone())
        );
        // A second run reads both caches instead of embedding.
        let again = ScaleEmbedder::prepare(real, &texts, true, 0.05, work.path(), "k", &quiet)
            .expect("cached");
        assert_eq!(
            again.embed_tokens(&[&tagged(&texts[1], 9, 1)]).expect("t")[0],
            t9[0]
        );
    }
}
