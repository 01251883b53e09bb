//! A segment's token code file: each chunk's own codes, its references to shared piece
//! codes ([`super::share`]) with the codes those references name, and the codes it borrows
//! from the chunk stored before it.
//!
//! Layout (`PPTOK003`, little-endian): a header (magic, code dimension, chunks `n`, codebook
//! entries `m`, own codes, references, borrow-mask bytes), the codebook's piece keys (`m` ×
//! u32) and codes (`m` × code bytes), the chunks' own-code, reference and mask offsets
//! (`n + 1` × u64 each, counted in codes, references and bytes), the references (u16
//! codebook positions), the masks, then the own codes. A chunk's mask has a bit for each
//! token of the chunk before it, in file order (its own codes, its references, then what it
//! borrows): a set bit lends that code to this chunk too. A code lent on is found by
//! following masks back, never more than [`MAX_LEND_DEPTH`] of them; a chunk that borrows
//! nothing has no mask. References and masks come before the codes so that a writer streams
//! them without holding a segment's codes in memory. Files written before borrowing (`PPTOK002`) are read as chunks that
//! borrow nothing, and files written before sharing (`PPTOK001`: header, offsets, codes)
//! as chunks with no references either.
//!
//! The codebook in each segment holds only the codes its chunks refer to, in key order, so
//! a segment is read and checked on its own and a commit finds a piece's code in it by
//! binary search ([`TokenCodes::shared_code`]); the index's codebook is the union of its
//! segments'. What a chunk borrows is matched by value when a file is written (a merge
//! writes a chunk after the same neighbour it had, so its mask is rebuilt as it was); a
//! borrowed code the chunk before does not store is written as the chunk's own.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use memmap2::Mmap;

use super::code_bytes;
use super::place::{set_bits, Placer};
use super::share::{PieceBook, SharedCodes};
use crate::error::{Error, IoContext, Result};

const MAGIC_V1: &[u8; 8] = b"PPTOK001";
const HEADER_V1: usize = 24;
const MAGIC_V2: &[u8; 8] = b"PPTOK002";
const HEADER_V2: usize = 48;
const MAGIC: &[u8; 8] = b"PPTOK003";
const HEADER: usize = 56;

/// A segment's codebook holds at most this many pieces (references are u16); a chunk
/// referring to a piece past it stores that code as its own.
const MAX_BOOK: usize = u16::MAX as usize;

/// One chunk's stored token codes: its own codes, the shared codes it refers to and the
/// codes it borrows from the chunk stored before it.
#[derive(Clone, Copy)]
pub struct ChunkCodes<'a> {
    nb: usize,
    own: &'a [u8],
    refs: Refs<'a>,
    lent: Lent<'a>,
}

/// The codes a chunk borrows.
#[derive(Clone, Copy)]
enum Lent<'a> {
    /// The codes themselves (a commit's new chunk, `nb` bytes each).
    Codes(&'a [u8]),
    /// The mask of the chunk at `pos` of `file`: a bit per token of the chunk before it.
    Mask { file: &'a TokenCodes, pos: usize },
}

/// A borrowed code lies at most this many chunks from the chunk that stores it: reading
/// one follows that many masks back at most. A title repeated in every chunk of a long
/// document is stored again every `MAX_LEND_DEPTH + 1` chunks rather than read through a
/// chain as long as the document.
pub const MAX_LEND_DEPTH: u8 = 8;

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
            lent: Lent::Codes(&[]),
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
            lent: Lent::Codes(&c.borrowed),
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

    /// Each code the chunk borrows from the chunk stored before it (a mask bit past that
    /// chunk's tokens, which only a damaged file holds, is left out; `verify` names it).
    pub fn borrowed(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let nb = self.nb.max(1);
        let (codes, masked) = match self.lent {
            Lent::Codes(c) => (c, None),
            Lent::Mask { file, pos } => (&[][..], Some((file, pos))),
        };
        let mask = masked.map_or(&[][..], |(file, pos)| file.mask(pos));
        let from_mask = set_bits(mask).filter_map(move |i| {
            let (file, pos) = masked?;
            file.token_at(pos.checked_sub(1)?, i)
        });
        codes.chunks_exact(nb).chain(from_mask)
    }

    /// The `i`-th token the chunk stores (own codes, then references), or `None` past them.
    fn stored_token(&self, i: usize) -> Option<&'a [u8]> {
        let nb = self.nb.max(1);
        let own = self.own.len() / nb;
        if i < own {
            return self.own.get(i * nb..(i + 1) * nb);
        }
        self.ref_at(i - own).map(|(_, c)| c)
    }

    fn stored_count(&self) -> usize {
        self.own.len() / self.nb.max(1) + self.ref_count()
    }

    pub(super) fn borrowed_count(&self) -> usize {
        match self.lent {
            Lent::Codes(c) => c.len() / self.nb.max(1),
            Lent::Mask { file, pos } => {
                file.mask(pos).iter().map(|b| b.count_ones() as usize).sum()
            }
        }
    }

    /// Tokens the reranker sees: own codes, references and borrowed codes.
    pub fn tokens(&self) -> usize {
        self.own.len() / self.nb.max(1) + self.ref_count() + self.borrowed_count()
    }

    /// Every code of the chunk, own, then shared, then borrowed, as one run of codes for
    /// [`super::QueryCodes::maxsim`]; borrowed from the file when the chunk has only its own.
    pub fn gather(&self) -> Cow<'a, [u8]> {
        if self.ref_count() == 0 && self.borrowed_count() == 0 {
            return Cow::Borrowed(self.own);
        }
        let mut all = Vec::with_capacity(self.tokens() * self.nb);
        all.extend_from_slice(self.own);
        for (_, c) in self.refs() {
            all.extend_from_slice(c);
        }
        for c in self.borrowed() {
            all.extend_from_slice(c);
        }
        Cow::Owned(all)
    }
}

/// Where a version-2 or -3 file's sections start.
#[derive(Clone, Copy, Default)]
struct Sections {
    keys: usize,
    book: usize,
    refs: usize,
    masks: usize,
    own: usize,
    entries: usize,
}

/// A table of `entries` ascending u64 offsets, read in place from the mapped file: every
/// commit reopens the older segments, and copying a million rows' two tables out of the map
/// cost ~9 ms of page faults a commit (`bench --scale`). `check` reads it whole.
#[derive(Clone, Copy)]
struct Table {
    at: usize,
    entries: usize,
}

impl Table {
    fn get(self, map: Option<&Mmap>, i: usize) -> Option<u64> {
        if i >= self.entries {
            return None;
        }
        let b = map?.get(self.at + 8 * i..self.at + 8 * i + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// True when the entries start at 0 and never fall.
    fn ascends(self, map: &Mmap) -> bool {
        let Some(bytes) = map.get(self.at..self.at + 8 * self.entries) else {
            return false;
        };
        let mut last = 0u64;
        bytes.chunks_exact(8).enumerate().all(|(i, b)| {
            let x = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            let ok = if i == 0 { x == 0 } else { x >= last };
            last = x;
            ok
        })
    }
}

/// The token codes of one segment, one entry per chunk at the chunk store's positions.
pub struct TokenCodes {
    map: Option<Mmap>,
    /// Chunks.
    n: usize,
    /// Own-code offsets (in codes), `n + 1`, and their total.
    offsets: Table,
    own_total: u64,
    /// Reference offsets (in references), `n + 1`, and their total; none in a version-1
    /// file.
    ref_offsets: Option<Table>,
    ref_total: u64,
    /// Borrow-mask offsets (in bytes), `n + 1`; `None` when no chunk borrows (a file
    /// written before borrowing, or one with no masks).
    mask_table: Option<Table>,
    /// Section starts of a version-2 file; `None` for version 1.
    sections: Option<Sections>,
    dim: usize,
}

impl TokenCodes {
    /// No chunks.
    pub fn empty(dim: usize) -> TokenCodes {
        TokenCodes {
            map: None,
            n: 0,
            offsets: Table { at: 0, entries: 1 },
            own_total: 0,
            ref_offsets: None,
            ref_total: 0,
            mask_table: None,
            sections: None,
            dim,
        }
    }

    /// Opens and validates a token code file of dimension `dim`.
    pub fn open(path: &Path, dim: usize) -> Result<TokenCodes> {
        let map = crate::store::map_file(path)?;
        let magic = map.get(..8);
        let version = [MAGIC_V1, MAGIC_V2, MAGIC]
            .iter()
            .position(|m| magic == Some(m.as_slice()))
            .map(|i| i + 1)
            .ok_or_else(|| Error::corrupt(path, "not a pinpoint token code file (bad magic)"))?;
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
        // Each offset table: in bounds, starting at 0 and ending at `total` (`check` reads
        // every entry).
        let table = |at: usize, total: Option<u64>| -> Result<Table> {
            let entries = (n as usize).checked_add(1).ok_or_else(short)?;
            let end = entries.checked_mul(8).and_then(|b| b.checked_add(at));
            if end.is_none_or(|e| e > map.len()) {
                return Err(short());
            }
            let t = Table { at, entries };
            let last = word(at + 8 * (entries - 1));
            if word(at) != 0 || total.is_some_and(|x| x != last) {
                return Err(Error::corrupt(
                    path,
                    "token offsets do not run from 0 to the header's totals",
                ));
            }
            Ok(t)
        };
        if version == 1 {
            let offsets = table(HEADER_V1, None)?;
            let tokens = word(HEADER_V1 + 8 * n as usize);
            let need = (tokens as usize)
                .checked_mul(nb)
                .and_then(|b| b.checked_add(HEADER_V1 + 8 * offsets.entries));
            if need != Some(map.len()) {
                return Err(Error::corrupt(
                    path,
                    format!("{} bytes for {tokens} tokens of {n} chunks", map.len()),
                ));
            }
            return Ok(TokenCodes {
                map: Some(map),
                n: n as usize,
                offsets,
                own_total: tokens,
                ref_offsets: None,
                ref_total: 0,
                mask_table: None,
                sections: None,
                dim,
            });
        }
        let header = if version == 2 { HEADER_V2 } else { HEADER };
        if map.len() < header {
            return Err(short());
        }
        let (m, own, refs) = (word(24), word(32), word(40));
        let mask_bytes = if version == 2 { 0 } else { word(48) };
        let tables = if version == 2 { 2 } else { 3 };
        let size = |count: u64, each: usize| (count as usize).checked_mul(each);
        let layout = (|| {
            let keys = header;
            let book = keys.checked_add(size(m, 4)?)?;
            let offsets = book.checked_add(size(m, nb)?)?;
            let table = size(n, 8)?.checked_add(8)?;
            let refs_at = offsets.checked_add(table.checked_mul(tables)?)?;
            let masks_at = refs_at.checked_add(size(refs, 2)?)?;
            let own_at = masks_at.checked_add(size(mask_bytes, 1)?)?;
            let end = own_at.checked_add(size(own, nb)?)?;
            Some((keys, book, offsets, table, refs_at, masks_at, own_at, end))
        })();
        let Some((keys, book, at_offsets, table_len, refs_at, masks_at, own_at, end)) = layout
        else {
            return Err(short());
        };
        if end != map.len() || m as usize > MAX_BOOK {
            return Err(Error::corrupt(
                path,
                format!(
                    "{} bytes for {own} codes, {refs} references, {mask_bytes} mask bytes and {m} shared codes of {n} chunks",
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
        let offsets = table(at_offsets, Some(own))?;
        let ref_offsets = table(at_offsets + table_len, Some(refs))?;
        let mask_table = match version {
            3 => Some(table(at_offsets + 2 * table_len, Some(mask_bytes))?),
            _ => None,
        };
        Ok(TokenCodes {
            map: Some(map),
            n: n as usize,
            offsets,
            own_total: own,
            ref_offsets: Some(ref_offsets),
            ref_total: refs,
            mask_table: mask_table.filter(|_| mask_bytes > 0),
            sections: Some(Sections {
                keys,
                book,
                refs: refs_at,
                masks: masks_at,
                own: own_at,
                entries: m as usize,
            }),
            dim,
        })
    }

    /// Writes `chunks` (each chunk's codes, in store order) to `path` and syncs it. The
    /// file's codebook is the codes the chunks refer to, the first code seen for each piece;
    /// a reference whose code differs from it (two segments that voted a piece apart, the
    /// index having lost every chunk that used its first code) is stored as an own code, and
    /// so is a borrowed code the chunk written before does not store.
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
        let placer = Placer {
            nb,
            at: &at,
            book: &book,
        };
        let f = File::create(path).at(path)?;
        let mut w = BufWriter::new(f);
        let io = || -> std::io::Result<()> {
            // Offsets of own codes, references and mask bytes, from one pass.
            let mut tables = [vec![0u64], vec![0u64], vec![0u64]];
            placer.each(chunks.clone(), |c, p| {
                let add = [
                    (c.own.len() / nb + p.extra.len()) as u64,
                    p.refs.len() as u64,
                    p.mask.len() as u64,
                ];
                for (t, a) in tables.iter_mut().zip(add) {
                    let last = t.last().copied().unwrap_or(0);
                    t.push(last + a);
                }
                Ok(())
            })?;
            let total = |t: &Vec<u64>| t.last().copied().unwrap_or(0);
            w.write_all(MAGIC)?;
            let n = tables[0].len() as u64 - 1;
            let header = [
                dim as u64,
                n,
                keys.len() as u64,
                total(&tables[0]),
                total(&tables[1]),
                total(&tables[2]),
            ];
            for x in header {
                w.write_all(&x.to_le_bytes())?;
            }
            for k in &keys {
                w.write_all(&k.to_le_bytes())?;
            }
            w.write_all(&book)?;
            for t in &tables {
                for x in t {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
            drop(tables);
            placer.each(chunks.clone(), |_, p| {
                p.refs
                    .iter()
                    .try_for_each(|i| w.write_all(&i.to_le_bytes()))
            })?;
            placer.each(chunks.clone(), |_, p| w.write_all(&p.mask))?;
            placer.each(chunks, |c, p| {
                w.write_all(c.own)?;
                p.extra.iter().try_for_each(|code| w.write_all(code))
            })?;
            w.flush()?;
            w.get_ref().sync_all()
        };
        io().at(path)
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.n
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
        let mut c = self.stored(pos);
        if pos > 0 && !self.mask(pos).is_empty() {
            c.lent = Lent::Mask { file: self, pos };
        }
        c
    }

    /// The borrow mask of the chunk at `pos` (empty when it borrows nothing, and where the
    /// table is damaged: `check` names that).
    fn mask(&self, pos: usize) -> &[u8] {
        let (Some(map), Some(s), Some(t)) = (&self.map, self.sections, self.mask_table) else {
            return &[];
        };
        match (t.get(Some(map), pos), t.get(Some(map), pos + 1)) {
            (Some(a), Some(b)) => map[s.masks..s.own]
                .get(a as usize..b as usize)
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Token `i` of the chunk at `pos` as the chunk after it sees it (what it stores, then
    /// what it borrows), following masks back at most [`MAX_LEND_DEPTH`] chunks.
    fn token_at(&self, mut pos: usize, mut i: usize) -> Option<&[u8]> {
        for _ in 0..MAX_LEND_DEPTH {
            let c = self.stored(pos);
            let n = c.stored_count();
            if i < n {
                return c.stored_token(i);
            }
            i = set_bits(self.mask(pos)).nth(i - n)?;
            pos = pos.checked_sub(1)?;
        }
        None
    }

    /// The chunk at `pos` as stored: own codes and references, nothing borrowed.
    fn stored(&self, pos: usize) -> ChunkCodes<'_> {
        let nb = code_bytes(self.dim);
        let none = ChunkCodes::own_only(nb, &[]);
        let map = self.map.as_ref();
        let (Some(map), Some(a), Some(b)) = (
            map,
            self.offsets.get(map, pos),
            self.offsets.get(map, pos + 1),
        ) else {
            return none;
        };
        let (a, b) = (a as usize, b as usize);
        let (Some(s), Some(r)) = (self.sections, self.ref_offsets) else {
            let data = &map[HEADER_V1 + 8 * self.offsets.entries..];
            return ChunkCodes::own_only(nb, data.get(a * nb..b * nb).unwrap_or(&[]));
        };
        let own = map[s.own..].get(a * nb..b * nb).unwrap_or(&[]);
        let (Some(ra), Some(rb)) = (r.get(Some(map), pos), r.get(Some(map), pos + 1)) else {
            return none;
        };
        let refs = map[s.refs..s.masks]
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
            lent: Lent::Codes(&[]),
        }
    }

    /// Total tokens the reranker sees: own codes, references and borrowed codes.
    pub fn tokens(&self) -> u64 {
        self.own_total + self.ref_total + self.borrowed()
    }

    /// Tokens stored as a borrow of a code the chunk before stores (part of
    /// [`TokenCodes::tokens`]).
    pub fn borrowed(&self) -> u64 {
        match (&self.map, self.sections) {
            (Some(map), Some(s)) => map[s.masks..s.own]
                .iter()
                .map(|b| u64::from(b.count_ones()))
                .sum(),
            _ => 0,
        }
    }

    /// Tokens stored as a reference to a shared code (part of [`TokenCodes::tokens`]).
    pub fn references(&self) -> u64 {
        self.ref_total
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
        let Some(map) = &self.map else {
            return Ok(());
        };
        let tables = [Some(self.offsets), self.ref_offsets, self.mask_table];
        if !tables.into_iter().flatten().all(|t| t.ascends(map)) {
            return Err(Error::corrupt(
                path,
                "token offsets are not ascending from 0",
            ));
        }
        let Some(s) = self.sections else {
            return Ok(());
        };
        let bad = map[s.refs..s.masks]
            .chunks_exact(2)
            .position(|r| u16::from_le_bytes([r[0], r[1]]) as usize >= s.entries);
        if let Some(i) = bad {
            return Err(Error::corrupt(
                path,
                format!("reference {i} names no shared code of {}", s.entries),
            ));
        }
        // A mask has a bit for each token of the chunk before (what it stores and what it
        // borrows), rounded up to bytes, and names none past them.
        if self.mask_table.is_none() {
            return Ok(());
        }
        for pos in 0..self.len() {
            let mask = self.mask(pos);
            if mask.is_empty() {
                continue;
            }
            let lender = pos.checked_sub(1).map(|p| {
                let c = self.codes(p);
                c.stored_count() + c.borrowed_count()
            });
            if lender.is_none_or(|t| t.div_ceil(8) != mask.len()) {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "chunk {pos} borrows with a mask of {} bytes that matches no chunk before it",
                        mask.len()
                    ),
                ));
            }
            let c = self.codes(pos);
            if c.borrowed().count() != c.borrowed_count() {
                return Err(Error::corrupt(
                    path,
                    format!("chunk {pos} borrows a code the chunk before it does not store"),
                ));
            }
        }
        Ok(())
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

    /// `chunks` written to `path` as a commit writes its new chunks (2-byte codes, their
    /// references read through `book`), opened and checked.
    fn written(path: &Path, chunks: &[&SharedCodes], book: &PieceBook) -> TokenCodes {
        TokenCodes::write(
            path,
            16,
            chunks.iter().map(|c| ChunkCodes::shared(2, c, book)),
        )
        .unwrap();
        let t = TokenCodes::open(path, 16).unwrap();
        t.check(path).unwrap();
        t
    }

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
    fn borrowed_codes_are_a_mask_over_the_chunk_before_and_survive_copying() {
        let dir = tempfile::tempdir().unwrap();
        let a = piece_key("cell");
        let mut book = PieceBook::new(2);
        book.insert(a, &[1, 1]);
        // The lender stores [5, 5], [6, 6] and a reference to [1, 1]; the borrower borrows
        // its second code and the shared one, and one code it does not store ([9, 9]).
        let lender = SharedCodes {
            own: vec![5, 5, 6, 6],
            refs: vec![a],
            borrowed: vec![],
        };
        let borrower = SharedCodes {
            own: vec![7, 7],
            refs: vec![],
            borrowed: vec![6, 6, 1, 1, 9, 9],
        };
        let p = dir.path().join("s1.tok");
        let t = written(&p, &[&lender, &borrower], &book);
        // [9, 9] became the borrower's own code; the other two are one mask byte.
        assert_eq!(t.codes(1).own(), &[7, 7, 9, 9]);
        assert_eq!(t.borrowed(), 2);
        assert_eq!(t.tokens(), 3 + 4);
        let gathered = t.codes(1).gather().into_owned();
        assert_eq!(gathered, [7, 7, 9, 9, 6, 6, 1, 1]);
        let bytes = std::fs::read(&p).unwrap();
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(word(48), 1, "one mask byte");

        // Copied after the same chunk (a merge), the mask is rebuilt as it was; copied
        // after another, the borrowed codes become its own: the same codes either way.
        let q = dir.path().join("s2.tok");
        TokenCodes::write(&q, 16, [t.codes(0), t.codes(1)].into_iter()).unwrap();
        let u = TokenCodes::open(&q, 16).unwrap();
        assert_eq!(std::fs::read(&q).unwrap(), bytes);
        let r = dir.path().join("s3.tok");
        let other = SharedCodes::own(vec![6, 6]);
        let moved = [ChunkCodes::shared(2, &other, &book), u.codes(1)];
        TokenCodes::write(&r, 16, moved.into_iter()).unwrap();
        let v = TokenCodes::open(&r, 16).unwrap();
        v.check(&r).unwrap();
        assert_eq!(v.codes(1).gather().as_ref(), &[7, 7, 9, 9, 1, 1, 6, 6]);
        assert_eq!(v.borrowed(), 1);

        // A mask bit past the tokens of the chunk before, or a mask whose length fits no
        // chunk before, is named by `check`.
        let mut damaged = bytes.clone();
        let mask_at = HEADER + 4 + 2 + 3 * 8 * 3 + 2;
        assert_eq!(damaged[mask_at], 0b110);
        damaged[mask_at] = 0b1110;
        std::fs::write(&q, &damaged).unwrap();
        let e = TokenCodes::open(&q, 16).unwrap().check(&q).err().unwrap();
        assert!(e.to_string().contains("does not store"), "{e}");
        let mut first_borrows = bytes.clone();
        // The mask offsets (third table): chunk 0 takes the byte, chunk 1 none.
        let masks_table = HEADER + 4 + 2 + 2 * 8 * 3;
        first_borrows[masks_table + 8..masks_table + 16].copy_from_slice(&1u64.to_le_bytes());
        std::fs::write(&q, &first_borrows).unwrap();
        let e = TokenCodes::open(&q, 16).unwrap().check(&q).err().unwrap();
        assert!(e.to_string().contains("matches no chunk before"), "{e}");
    }

    #[test]
    fn a_borrowed_code_is_lent_on_and_stored_again_past_the_depth_limit() {
        let dir = tempfile::tempdir().unwrap();
        let book = PieceBook::new(2);
        // A title code [3, 3] in every chunk of a long document: the first stores it, each
        // later one borrows it from the chunk before.
        let n = 2 * (MAX_LEND_DEPTH as usize + 1) + 1;
        let chunks: Vec<SharedCodes> = (0..n)
            .map(|i| SharedCodes {
                own: if i == 0 {
                    vec![3, 3]
                } else {
                    vec![i as u8 + 10, 0]
                },
                refs: vec![],
                borrowed: if i == 0 { vec![] } else { vec![3, 3] },
            })
            .collect();
        let refs: Vec<&SharedCodes> = chunks.iter().collect();
        let t = written(&dir.path().join("s1.tok"), &refs, &book);
        let depth = MAX_LEND_DEPTH as usize;
        for pos in 0..n {
            let all = t.codes(pos).gather().into_owned();
            assert!(
                all.chunks(2).any(|c| c == [3, 3]),
                "chunk {pos} lost the title"
            );
            // Stored at chunks 0, depth + 1 and 2 (depth + 1); borrowed by every other.
            let stores = t.codes(pos).own().chunks(2).any(|c| c == [3, 3]);
            assert_eq!(stores, pos % (depth + 1) == 0, "chunk {pos}");
        }
        assert_eq!(t.borrowed() as usize, n - 3);
    }

    #[test]
    fn a_version_two_file_reads_as_chunks_that_borrow_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("1.tok");
        // PPTOK002: dim 16, 2 chunks, 1 shared code, 2 own codes, 1 reference; the key and
        // code, own offsets 0, 1, 2, reference offsets 0, 0, 1, the reference, the codes.
        let key = piece_key("cell");
        let mut b = MAGIC_V2.to_vec();
        for x in [16u64, 2, 1, 2, 1] {
            b.extend(x.to_le_bytes());
        }
        b.extend(key.to_le_bytes());
        b.extend([1, 1]);
        for x in [0u64, 1, 2, 0, 0, 1] {
            b.extend(x.to_le_bytes());
        }
        b.extend(0u16.to_le_bytes());
        b.extend([5, 5, 6, 6]);
        std::fs::write(&p, &b).unwrap();
        let t = TokenCodes::open(&p, 16).unwrap();
        t.check(&p).unwrap();
        assert_eq!(
            (t.len(), t.tokens(), t.references(), t.borrowed()),
            (2, 3, 1, 0)
        );
        assert_eq!(t.codes(0).gather().as_ref(), &[5, 5]);
        assert_eq!(t.codes(1).gather().as_ref(), &[6, 6, 1, 1]);
        assert_eq!(t.codes(1).borrowed().count(), 0);
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
            borrowed: vec![],
        };
        let second = SharedCodes {
            own: vec![],
            refs: vec![b],
            borrowed: vec![],
        };
        let p = dir.path().join("s1.tok");
        let t = written(&p, &[&first, &second], &book);
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
            borrowed: vec![],
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
        let refs_at = HEADER + 3 * 4 + 3 * 2 + 3 * 8 * 3;
        bytes[refs_at..refs_at + 2].copy_from_slice(&9u16.to_le_bytes());
        std::fs::write(&q, &bytes).unwrap();
        let e = TokenCodes::open(&q, 16).unwrap().check(&q).err().unwrap();
        assert!(e.to_string().contains("names no shared code"), "{e}");
    }
}
