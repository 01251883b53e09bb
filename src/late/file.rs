//! A segment's token code file: each chunk's own codes and its references to shared piece
//! codes ([`super::share`]), with the codes those references name.
//!
//! Layout (`PPTOK002`, little-endian): a header (magic, code dimension, chunks `n`, codebook
//! entries `m`, own codes, references), the codebook's piece keys (`m` × u32) and codes
//! (`m` × code bytes), the chunks' own-code offsets and reference offsets (`n + 1` × u64
//! each, counted in codes and references), the references (u16 codebook positions), then
//! the own codes. References come before the codes so that a writer streams both without
//! holding a segment's codes in memory. Files written before sharing (`PPTOK001`: header,
//! offsets, codes) are read as chunks with no references.
//!
//! The codebook in each segment holds only the codes its chunks refer to, in key order, so
//! a segment is read and checked on its own and a commit finds a piece's code in it by
//! binary search ([`TokenCodes::shared_code`]); the index's codebook is the union of its
//! segments'.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use memmap2::Mmap;

use super::code_bytes;
use super::share::{PieceBook, SharedCodes};
use crate::error::{Error, IoContext, Result};

const MAGIC_V1: &[u8; 8] = b"PPTOK001";
const HEADER_V1: usize = 24;
const MAGIC: &[u8; 8] = b"PPTOK002";
const HEADER: usize = 48;

/// A segment's codebook holds at most this many pieces (references are u16); a chunk
/// referring to a piece past it stores that code as its own.
const MAX_BOOK: usize = u16::MAX as usize;

/// One chunk's stored token codes: its own codes and the shared codes it refers to.
#[derive(Clone, Copy)]
pub struct ChunkCodes<'a> {
    nb: usize,
    own: &'a [u8],
    refs: Refs<'a>,
}

#[derive(Clone, Copy)]
enum Refs<'a> {
    /// u16 positions in a file's codebook (`keys`: u32 each; `codes`: `nb` bytes each).
    Stored {
        at: &'a [u8],
        keys: &'a [u8],
        codes: &'a [u8],
    },
    /// Pieces of an index's codebook (a commit's new chunks).
    Book {
        pieces: &'a [u32],
        book: &'a PieceBook,
    },
}

impl<'a> ChunkCodes<'a> {
    /// Codes of `nb` bytes with no references.
    pub fn own_only(nb: usize, own: &'a [u8]) -> ChunkCodes<'a> {
        ChunkCodes {
            nb,
            own,
            refs: Refs::Stored {
                at: &[],
                keys: &[],
                codes: &[],
            },
        }
    }

    /// A new chunk's codes, its references read through `book`.
    pub fn shared(nb: usize, c: &'a SharedCodes, book: &'a PieceBook) -> ChunkCodes<'a> {
        ChunkCodes {
            nb,
            own: &c.own,
            refs: Refs::Book {
                pieces: &c.refs,
                book,
            },
        }
    }

    /// The chunk's own codes.
    pub fn own(&self) -> &'a [u8] {
        self.own
    }

    /// Each reference: the piece and its code (a reference whose code is missing, which
    /// only a damaged file holds, is left out; `verify` names it).
    pub fn refs(&self) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
        let (this, n) = (*self, self.ref_count());
        (0..n).filter_map(move |i| this.ref_at(i))
    }

    fn ref_count(&self) -> usize {
        match self.refs {
            Refs::Stored { at, .. } => at.len() / 2,
            Refs::Book { pieces, .. } => pieces.len(),
        }
    }

    fn ref_at(&self, i: usize) -> Option<(u32, &'a [u8])> {
        let nb = self.nb;
        match self.refs {
            Refs::Stored { at, keys, codes } => {
                let j = u16::from_le_bytes(at.get(2 * i..2 * i + 2)?.try_into().ok()?) as usize;
                let key = u32::from_le_bytes(keys.get(4 * j..4 * j + 4)?.try_into().ok()?);
                Some((key, codes.get(j * nb..(j + 1) * nb)?))
            }
            Refs::Book { pieces, book } => {
                let p = *pieces.get(i)?;
                Some((p, book.get(p)?))
            }
        }
    }

    /// Tokens the reranker sees: own codes and references.
    pub fn tokens(&self) -> usize {
        self.own.len() / self.nb.max(1) + self.ref_count()
    }

    /// Every code of the chunk, own then shared, as one run of codes for
    /// [`super::QueryCodes::maxsim`]; borrowed when the chunk has no references.
    pub fn gather(&self) -> Cow<'a, [u8]> {
        if self.ref_count() == 0 {
            return Cow::Borrowed(self.own);
        }
        let mut all = Vec::with_capacity(self.tokens() * self.nb);
        all.extend_from_slice(self.own);
        for (_, c) in self.refs() {
            all.extend_from_slice(c);
        }
        Cow::Owned(all)
    }
}

/// Where a version-2 file's sections start.
#[derive(Clone, Copy, Default)]
struct Sections {
    keys: usize,
    book: usize,
    refs: usize,
    own: usize,
    entries: usize,
}

/// The token codes of one segment, one entry per chunk at the chunk store's positions.
pub struct TokenCodes {
    map: Option<Mmap>,
    /// Own-code offsets (in codes), `n + 1`.
    offsets: Vec<u64>,
    /// Reference offsets (in references), `n + 1`; empty for a version-1 file.
    ref_offsets: Vec<u64>,
    /// Section starts of a version-2 file; `None` for version 1.
    sections: Option<Sections>,
    dim: usize,
}

impl TokenCodes {
    /// No chunks.
    pub fn empty(dim: usize) -> TokenCodes {
        TokenCodes {
            map: None,
            offsets: vec![0],
            ref_offsets: Vec::new(),
            sections: None,
            dim,
        }
    }

    /// Opens and validates a token code file of dimension `dim`.
    pub fn open(path: &Path, dim: usize) -> Result<TokenCodes> {
        let map = crate::store::map_file(path)?;
        let magic = map.get(..8);
        if magic != Some(MAGIC.as_slice()) && magic != Some(MAGIC_V1.as_slice()) {
            return Err(Error::corrupt(
                path,
                "not a pinpoint token code file (bad magic)",
            ));
        }
        let v2 = magic == Some(MAGIC.as_slice());
        let word = |at: usize| -> u64 {
            map.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .unwrap_or(u64::MAX)
        };
        let fdim = word(8) as usize;
        if fdim != dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: fdim,
            });
        }
        let nb = code_bytes(dim);
        let n = word(16);
        let short = || {
            Error::corrupt(
                path,
                format!("{} bytes hold no table of {n} chunks", map.len()),
            )
        };
        let table = |at: usize| -> Result<Vec<u64>> {
            let len = (n as usize).checked_add(1).ok_or_else(short)?;
            let end = len.checked_mul(8).and_then(|b| b.checked_add(at));
            if end.is_none_or(|e| e > map.len()) {
                return Err(short());
            }
            let t: Vec<u64> = (0..len).map(|i| word(at + 8 * i)).collect();
            if t.first() != Some(&0) || t.windows(2).any(|w| w[0] > w[1]) {
                return Err(Error::corrupt(
                    path,
                    "token offsets are not ascending from 0",
                ));
            }
            Ok(t)
        };
        if !v2 {
            let offsets = table(HEADER_V1)?;
            let tokens = offsets.last().copied().unwrap_or(0);
            let need = (tokens as usize)
                .checked_mul(nb)
                .and_then(|b| b.checked_add(HEADER_V1 + 8 * offsets.len()));
            if need != Some(map.len()) {
                return Err(Error::corrupt(
                    path,
                    format!("{} bytes for {tokens} tokens of {n} chunks", map.len()),
                ));
            }
            return Ok(TokenCodes {
                map: Some(map),
                offsets,
                ref_offsets: Vec::new(),
                sections: None,
                dim,
            });
        }
        if map.len() < HEADER {
            return Err(short());
        }
        let (m, own, refs) = (word(24), word(32), word(40));
        let size = |count: u64, each: usize| (count as usize).checked_mul(each);
        let layout = (|| {
            let keys = HEADER;
            let book = keys.checked_add(size(m, 4)?)?;
            let offsets = book.checked_add(size(m, nb)?)?;
            let table = size(n, 8)?.checked_add(8)?;
            let ref_offsets = offsets.checked_add(table)?;
            let refs_at = ref_offsets.checked_add(table)?;
            let own_at = refs_at.checked_add(size(refs, 2)?)?;
            let end = own_at.checked_add(size(own, nb)?)?;
            Some((keys, book, offsets, ref_offsets, refs_at, own_at, end))
        })();
        let Some((keys, book, at_offsets, at_ref_offsets, refs_at, own_at, end)) = layout else {
            return Err(short());
        };
        if end != map.len() || m as usize > MAX_BOOK {
            return Err(Error::corrupt(
                path,
                format!(
                    "{} bytes for {own} codes, {refs} references and {m} shared codes of {n} chunks",
                    map.len()
                ),
            ));
        }
        let key = |i: usize| {
            map.get(keys + 4 * i..keys + 4 * i + 4)
                .map(|b| [b[0], b[1], b[2], b[3]])
        };
        if (1..m as usize)
            .any(|i| key(i - 1).map(u32::from_le_bytes) >= key(i).map(u32::from_le_bytes))
        {
            return Err(Error::corrupt(
                path,
                "shared piece codes are not in key order",
            ));
        }
        let offsets = table(at_offsets)?;
        let ref_offsets = table(at_ref_offsets)?;
        if offsets.last() != Some(&own) || ref_offsets.last() != Some(&refs) {
            return Err(Error::corrupt(
                path,
                "token offsets do not end at the header's totals",
            ));
        }
        Ok(TokenCodes {
            map: Some(map),
            offsets,
            ref_offsets,
            sections: Some(Sections {
                keys,
                book,
                refs: refs_at,
                own: own_at,
                entries: m as usize,
            }),
            dim,
        })
    }

    /// Writes `chunks` (each chunk's codes, in store order) to `path` and syncs it. The
    /// file's codebook is the codes the chunks refer to, the first code seen for each piece;
    /// a reference whose code differs from it (two segments that voted a piece apart, the
    /// index having lost every chunk that used its first code) is stored as an own code.
    pub fn write<'a>(
        path: &Path,
        dim: usize,
        chunks: impl Iterator<Item = ChunkCodes<'a>> + Clone,
    ) -> Result<()> {
        let nb = code_bytes(dim).max(1);
        // The first code seen for each piece, in key order (a reader finds a piece's code
        // by binary search), at most MAX_BOOK of them.
        let mut first: BTreeMap<u32, &[u8]> = BTreeMap::new();
        for c in chunks.clone() {
            for (p, code) in c.refs() {
                first.entry(p).or_insert(code);
            }
        }
        let mut at: HashMap<u32, u16> = HashMap::new();
        let (mut keys, mut book) = (Vec::new(), Vec::new());
        for (p, code) in first.into_iter().take(MAX_BOOK) {
            at.insert(p, keys.len() as u16);
            keys.push(p);
            book.extend_from_slice(code);
        }
        // Where a reference is kept: its position in this file's codebook, or none.
        let position = |p: u32, code: &[u8]| -> Option<u16> {
            let i = *at.get(&p)?;
            (book.get(i as usize * nb..(i as usize + 1) * nb) == Some(code)).then_some(i)
        };
        let counts = |c: &ChunkCodes<'_>| -> (u64, u64) {
            let (all, stored) = c.refs().fold((0, 0), |(n, s), (p, code)| {
                (n + 1, s + usize::from(position(p, code).is_some()))
            });
            let own = c.own.len() / nb + all - stored;
            (own as u64, stored as u64)
        };
        let f = File::create(path).at(path)?;
        let mut w = BufWriter::new(f);
        let io = || -> std::io::Result<()> {
            let (mut n, mut own, mut refs) = (0u64, 0u64, 0u64);
            for c in chunks.clone() {
                let (o, r) = counts(&c);
                n += 1;
                own += o;
                refs += r;
            }
            w.write_all(MAGIC)?;
            for x in [dim as u64, n, keys.len() as u64, own, refs] {
                w.write_all(&x.to_le_bytes())?;
            }
            for k in &keys {
                w.write_all(&k.to_le_bytes())?;
            }
            w.write_all(&book)?;
            for pick in [0usize, 1] {
                let mut sum = 0u64;
                w.write_all(&sum.to_le_bytes())?;
                for c in chunks.clone() {
                    let (o, r) = counts(&c);
                    sum += if pick == 0 { o } else { r };
                    w.write_all(&sum.to_le_bytes())?;
                }
            }
            for c in chunks.clone() {
                for (p, code) in c.refs() {
                    if let Some(i) = position(p, code) {
                        w.write_all(&i.to_le_bytes())?;
                    }
                }
            }
            for c in chunks {
                w.write_all(c.own)?;
                for (p, code) in c.refs() {
                    if position(p, code).is_none() {
                        w.write_all(code)?;
                    }
                }
            }
            w.flush()?;
            w.get_ref().sync_all()
        };
        io().at(path)
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimension of the coded vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The codes of the chunk at store position `pos` (none when out of range).
    pub fn codes(&self, pos: usize) -> ChunkCodes<'_> {
        let nb = code_bytes(self.dim);
        let none = ChunkCodes::own_only(nb, &[]);
        let (Some(map), Some(&a), Some(&b)) =
            (&self.map, self.offsets.get(pos), self.offsets.get(pos + 1))
        else {
            return none;
        };
        let (a, b) = (a as usize, b as usize);
        let Some(s) = self.sections else {
            let data = &map[HEADER_V1 + 8 * self.offsets.len()..];
            return ChunkCodes::own_only(nb, data.get(a * nb..b * nb).unwrap_or(&[]));
        };
        let own = map[s.own..].get(a * nb..b * nb).unwrap_or(&[]);
        let (Some(&ra), Some(&rb)) = (self.ref_offsets.get(pos), self.ref_offsets.get(pos + 1))
        else {
            return none;
        };
        let refs = map[s.refs..s.own]
            .get(2 * ra as usize..2 * rb as usize)
            .unwrap_or(&[]);
        ChunkCodes {
            nb,
            own,
            refs: Refs::Stored {
                at: refs,
                keys: &map[s.keys..s.book],
                codes: &map[s.book..s.book + s.entries * nb],
            },
        }
    }

    /// Total stored tokens: own codes and references.
    pub fn tokens(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0) + self.ref_offsets.last().copied().unwrap_or(0)
    }

    /// Tokens stored as a reference to a shared code (part of [`TokenCodes::tokens`]).
    pub fn references(&self) -> u64 {
        self.ref_offsets.last().copied().unwrap_or(0)
    }

    /// The shared code this file holds for `piece`, if any (binary search over its keys).
    pub fn shared_code(&self, piece: u32) -> Option<&[u8]> {
        let nb = code_bytes(self.dim);
        let (map, s) = (self.map.as_ref()?, self.sections?);
        let keys = &map[s.keys..s.book];
        let (mut lo, mut hi) = (0usize, s.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let k = u32::from_le_bytes(keys.get(4 * mid..4 * mid + 4)?.try_into().ok()?);
            match k.cmp(&piece) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return map.get(s.book + mid * nb..s.book + (mid + 1) * nb);
                }
            }
        }
        None
    }

    /// Checks every reference against the file's codebook: the one check `open` leaves to
    /// `verify`, since it reads every reference.
    pub fn check(&self, path: &Path) -> Result<()> {
        let (Some(map), Some(s)) = (&self.map, self.sections) else {
            return Ok(());
        };
        let bad = map[s.refs..s.own]
            .chunks_exact(2)
            .position(|r| u16::from_le_bytes([r[0], r[1]]) as usize >= s.entries);
        match bad {
            Some(i) => Err(Error::corrupt(
                path,
                format!("reference {i} names no shared code of {}", s.entries),
            )),
            None => Ok(()),
        }
    }

    /// Lets the kernel drop this file's pages from the process's memory (they are read
    /// again from the file if used): a merge or fold that copied a segment's codes into
    /// a new one calls it, so that a million chunks' codes (2.5 GB in `bench --scale`)
    /// do not stay resident through the graph build that follows.
    pub fn release_pages(&self) {
        if let Some(m) = &self.map {
            crate::store::release_map_pages(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::share::piece_key;
    use super::*;

    #[test]
    fn files_round_trip_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("1.tok");
        let parts: Vec<Vec<u8>> = vec![vec![1, 2, 3, 4], vec![], vec![9, 9]];
        TokenCodes::write(&p, 16, parts.iter().map(|v| ChunkCodes::own_only(2, v))).unwrap();
        let t = TokenCodes::open(&p, 16).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.tokens(), 3);
        assert_eq!(t.codes(0).own(), &[1, 2, 3, 4]);
        assert_eq!(t.codes(1).own(), &[] as &[u8]);
        assert_eq!(t.codes(2).own(), &[9, 9]);
        assert_eq!(t.codes(3).own(), &[] as &[u8]);
        assert!(matches!(
            TokenCodes::open(&p, 24),
            Err(Error::DimensionMismatch { .. })
        ));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        let e = TokenCodes::open(&p, 16).err().unwrap().to_string();
        assert!(e.contains("1.tok"), "{e}");
        std::fs::write(&p, b"not a token file at all, no").unwrap();
        assert!(TokenCodes::open(&p, 16).is_err());
    }

    #[test]
    fn a_version_one_file_reads_as_chunks_without_references() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("1.tok");
        // PPTOK001: dim 16, 2 chunks, offsets 0, 1, 3, then three 2-byte codes.
        let mut b = MAGIC_V1.to_vec();
        for x in [16u64, 2, 0, 1, 3] {
            b.extend(x.to_le_bytes());
        }
        b.extend([7, 7, 8, 8, 9, 9]);
        std::fs::write(&p, &b).unwrap();
        let t = TokenCodes::open(&p, 16).unwrap();
        assert_eq!((t.len(), t.tokens()), (2, 3));
        assert_eq!(t.codes(1).gather().as_ref(), &[8, 8, 9, 9]);
        assert_eq!(t.codes(1).refs().count(), 0);
        t.check(&p).unwrap();
    }

    #[test]
    fn references_round_trip_through_the_files_codebook() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (piece_key("cell"), piece_key("mouse"), piece_key("gene"));
        let mut book = PieceBook::new(2);
        book.insert(a, &[1, 1]);
        book.insert(b, &[2, 2]);
        let first = SharedCodes {
            own: vec![5, 5],
            refs: vec![a, b],
        };
        let second = SharedCodes {
            own: vec![],
            refs: vec![b],
        };
        let p = dir.path().join("s1.tok");
        let chunks = [&first, &second];
        TokenCodes::write(
            &p,
            16,
            chunks.iter().map(|c| ChunkCodes::shared(2, c, &book)),
        )
        .unwrap();
        let t = TokenCodes::open(&p, 16).unwrap();
        t.check(&p).unwrap();
        assert_eq!(t.tokens(), 4);
        assert_eq!(t.codes(0).gather().as_ref(), &[5, 5, 1, 1, 2, 2]);
        assert_eq!(t.codes(1).own(), &[] as &[u8]);
        assert_eq!(
            t.codes(1).refs().collect::<Vec<_>>(),
            vec![(b, &[2u8, 2][..])]
        );
        assert_eq!(t.shared_code(a), Some(&[1u8, 1][..]));
        assert_eq!(t.shared_code(b), Some(&[2u8, 2][..]));
        assert_eq!(t.shared_code(c), None);

        // Copying into a new file keeps references; one to a piece whose code differs
        // from the one the new file took first is kept as the chunk's own code.
        let mut other = PieceBook::new(2);
        other.insert(a, &[3, 3]);
        other.insert(c, &[4, 4]);
        let third = SharedCodes {
            own: vec![],
            refs: vec![a, c],
        };
        let q = dir.path().join("s2.tok");
        let copied = [t.codes(0), ChunkCodes::shared(2, &third, &other)];
        TokenCodes::write(&q, 16, copied.into_iter()).unwrap();
        let u = TokenCodes::open(&q, 16).unwrap();
        assert_eq!(u.codes(0).gather().as_ref(), &[5, 5, 1, 1, 2, 2]);
        assert_eq!(u.codes(1).own(), &[3, 3]);
        assert_eq!(u.codes(1).gather().as_ref(), &[3, 3, 4, 4]);
        assert_eq!(u.tokens(), 5);

        // A reference past the codebook is named by `check`.
        let mut bytes = std::fs::read(&q).unwrap();
        let refs_at = HEADER + 3 * 4 + 3 * 2 + 2 * 8 * 3;
        bytes[refs_at..refs_at + 2].copy_from_slice(&9u16.to_le_bytes());
        std::fs::write(&q, &bytes).unwrap();
        let e = TokenCodes::open(&q, 16).unwrap().check(&q).err().unwrap();
        assert!(e.to_string().contains("names no shared code"), "{e}");
    }
}
