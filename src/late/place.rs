//! Where a token code file being written puts each chunk's tokens
//! ([`super::TokenCodes::write`]): which references stay references in the file's codebook,
//! which borrowed codes become mask bits over the chunk written before, and which of
//! either must be written as the chunk's own codes.
//!
//! Why its own room: the placement of a chunk depends on the chunk written before it, so
//! every pass of the streaming writer places the chunks again in order, carrying the last
//! one; the file's layout and reading stay in `file.rs`.

use std::collections::HashMap;

use super::file::{ChunkCodes, MAX_LEND_DEPTH};

/// The positions of the set bits of `mask`, ascending.
pub(super) fn set_bits(mask: &[u8]) -> impl Iterator<Item = usize> + '_ {
    mask.iter().enumerate().flat_map(|(byte, &b)| {
        (0..8)
            .filter(move |k| b >> k & 1 == 1)
            .map(move |k| 8 * byte + k)
    })
}

/// Where a writer puts one chunk's tokens.
#[derive(Default)]
pub(super) struct Placed<'a> {
    /// Own codes past the chunk's own: references whose code is not the file's, then
    /// borrowed codes the chunk before does not store.
    pub(super) extra: Vec<&'a [u8]>,
    /// The file's codebook position of each reference kept as one.
    pub(super) refs: Vec<u16>,
    /// A bit per token of the chunk before (what it stores, then what it borrows), set
    /// where this chunk borrows it; empty when it borrows none.
    pub(super) mask: Vec<u8>,
    /// The codes it borrows, in mask order, each with how many chunks back it is stored.
    lent: Vec<(&'a [u8], u8)>,
}

/// Places each chunk's tokens in a file being written: what its references and borrowed
/// codes become, given the file's codebook and the chunk written before it.
pub(super) struct Placer<'b> {
    pub(super) nb: usize,
    pub(super) at: &'b HashMap<u32, u16>,
    pub(super) book: &'b [u8],
}

impl<'b> Placer<'b> {
    /// The file's codebook code of `i`.
    fn book_code(&self, i: u16) -> &'b [u8] {
        let i = i as usize;
        self.book.get(i * self.nb..(i + 1) * self.nb).unwrap_or(&[])
    }

    fn place<'a>(
        &self,
        c: &ChunkCodes<'a>,
        before: Option<&(ChunkCodes<'a>, Placed<'a>)>,
    ) -> Placed<'a> {
        let mut p = Placed::default();
        for (piece, code) in c.refs() {
            match self.at.get(&piece) {
                Some(&i) if self.book_code(i) == code => p.refs.push(i),
                _ => p.extra.push(code),
            }
        }
        if c.borrowed_count() == 0 {
            return p;
        }
        // The tokens of the chunk before, in file order (its own codes, its extra own
        // codes, its references, what it borrows), each with how far back it is stored.
        let lender: Vec<(&[u8], u8)> = match before {
            Some((b, bp)) => b
                .own()
                .chunks_exact(self.nb)
                .chain(bp.extra.iter().copied())
                .chain(bp.refs.iter().map(|&i| self.book_code(i)))
                .map(|c| (c, 0))
                .chain(bp.lent.iter().copied())
                .collect(),
            None => Vec::new(),
        };
        let mut mask = vec![0u8; lender.len().div_ceil(8)];
        let mut taken: Vec<(usize, &'a [u8])> = Vec::new();
        for code in c.borrowed() {
            let at = lender
                .iter()
                .position(|&(l, depth)| l == code && depth < MAX_LEND_DEPTH);
            match at {
                Some(i) if mask[i / 8] >> (i % 8) & 1 == 0 => {
                    mask[i / 8] |= 1 << (i % 8);
                    taken.push((i, code));
                }
                Some(_) => {}
                None => p.extra.push(code),
            }
        }
        if !taken.is_empty() {
            taken.sort_unstable_by_key(|t| t.0);
            p.lent = taken
                .into_iter()
                .map(|(i, code)| (code, lender.get(i).map_or(0, |l| l.1) + 1))
                .collect();
            p.mask = mask;
        }
        p
    }

    /// Calls `f` with each chunk and its placement, in order.
    pub(super) fn each<'a>(
        &self,
        chunks: impl Iterator<Item = ChunkCodes<'a>>,
        mut f: impl FnMut(&ChunkCodes<'a>, &Placed<'a>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut before: Option<(ChunkCodes<'a>, Placed<'a>)> = None;
        for c in chunks {
            let p = self.place(&c, before.as_ref());
            f(&c, &p)?;
            before = Some((c, p));
        }
        Ok(())
    }
}
