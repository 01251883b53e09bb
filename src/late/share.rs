//! A word piece's shared code: a token whose sign code lies near its piece's shared code
//! (one real occurrence of the piece) is stored as a reference to that code, and
//! near-copies within a chunk are kept once.
//!
//! Why: every token's own code took 5.67 KB a chunk on SciFact, twice the chunk's vector
//! and store together, and at a million chunks the codes were the largest file (2.8 GB in
//! `bench --scale`). Many of a piece's occurrences point nearly the same way. Chosen by
//! `eval`'s paired test against every token's own code (docs/decisions.md, "Shared piece
//! codes, built"): a token within Hamming 48 of 384 bits of its piece's code refers to it,
//! and one within 80 bits of a token kept earlier in its chunk is dropped. That takes
//! SciFact to 3.62 KB a chunk and Python and Rust code search to half their size, with
//! nDCG@10 within noise on all five sets measured. Wider settings lost beyond noise: 64
//! bits on code search (-0.009 to -0.019), a copy distance of 96 on the bundled subset
//! (-0.0087, p 0.03). The train-split study that found the idea is
//! `experiments/examples/token_store.rs` (`PP_CENTROID`, `PP_DEDUP`).
//!
//! Every replaced code is within `near_bits` of the token's own, so a poor codebook costs
//! size, not ranking: a token far from its piece's code keeps its own.
//!
//! Then, in an index created since, a token within `copy_bits` of a code the chunk before it
//! in its document holds is stored as a borrow of that code ([`SharedCodes::borrow_from`];
//! the file keeps it as a mask bit, [`super::TokenCodes`]): a document's chunks repeat its
//! title and the end of the chunk before. That took SciFact from 3.62 to 2.94 KB a chunk,
//! under the README's budget of 3,072 bytes, with nDCG@10 within noise on every set
//! (docs/decisions.md, "Codes borrowed from the chunk before").
//!
//! How an index keeps it: the codebook is append-only. A commit of at least
//! [`VOTE_MIN_CHUNKS`] new chunks votes a code for each piece seen [`VOTE_MIN_USES`] times in
//! it that the index has no code for yet; a piece's code never changes once voted, so
//! segments written earlier stay valid and a merge copies references as they are. Each
//! segment's token file carries the codes its chunks refer to ([`super::TokenCodes`]), so a
//! segment is read and verified on its own.
//!
//! Not for: scoring (the codes are scored as any others, [`super::QueryCodes`]).

use std::collections::HashMap;

/// A piece with no key: a row whose text could not be matched to a token span.
pub const NO_PIECE: u32 = u32::MAX;

/// A commit votes new pieces' codes only when it brings at least this many new chunks: a
/// piece's majority over a few occurrences would be frozen for good, and a one-file commit
/// then writes no codebook entries. A first commit of ~1% of SciFact's chunks gave 7.8% of
/// the codes a shared code, 10% gave 25%, all of them 30% (decisions).
pub const VOTE_MIN_CHUNKS: usize = 100;

/// A piece gets a code only once a voting commit has seen it this often (the measured
/// setting: a piece seen once has its own code as its majority).
pub const VOTE_MIN_USES: usize = 2;

/// A piece's vote stops counting after this many occurrences: its majority is settled long
/// before, and a first commit of a million chunks then costs a vote per piece, not per
/// token of every dimension.
pub const VOTE_MAX_USES: u32 = 1_000;

/// How an index shares token codes; chosen when it is created and kept in its manifest
/// (`None` there: every token keeps its own code, as in every index written before).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sharing {
    /// A token whose code is within this Hamming distance of its piece's code is stored as
    /// a reference to that code.
    pub near_bits: u32,
    /// A token within this distance of a token kept earlier in its chunk is not stored.
    pub copy_bits: u32,
    /// A token within `copy_bits` of a code the previous chunk of its document stores is
    /// stored as a borrow of that code ([`SharedCodes::borrow_from`]); false in indexes
    /// written before borrowing, which keep writing as they did.
    #[serde(default)]
    pub borrow: bool,
}

impl Sharing {
    /// The setting chosen on 384-bit codes by `eval`'s paired test against every token's own
    /// code (docs/decisions.md, "Shared piece codes, built"): the widest pair that moved no
    /// collection beyond noise (SciFact test and train, the bundled subset, Python and Rust
    /// code search); 64 bits lost on code search, a copy distance of 96 on the subset.
    ///
    /// Borrowing from the previous chunk came later, by the same test against this setting
    /// without it (docs/decisions.md, "Codes borrowed from the chunk before"): it took
    /// SciFact from 3.62 to 2.9 KB a chunk with nDCG@10 unchanged.
    pub const MEASURED: Sharing = Sharing {
        near_bits: 48,
        copy_bits: 80,
        borrow: true,
    };

    /// What a new index gets: the measured setting for codes of every dimension of a
    /// 384-dimension model's word pieces; none otherwise (projected codes and distinct
    /// units were not measured with it).
    pub fn for_new_index(code_bits: usize, units: super::TokenUnits) -> Option<Sharing> {
        (code_bits == 384 && units == super::TokenUnits::Pieces).then_some(Sharing::MEASURED)
    }
}

/// The key of a word piece as it appears in a passage: a hash of its lower-cased text, the
/// same on every machine (FNV-1a). Two pieces sharing a key share votes, which can only
/// leave fewer tokens within reach of the code: a token is replaced only when near it.
pub fn piece_key(piece: &str) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for c in piece.chars().flat_map(char::to_lowercase) {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    if h == NO_PIECE {
        NO_PIECE - 1
    } else {
        h
    }
}

/// Hamming distance between two codes of equal length.
pub fn hamming(a: &[u8], b: &[u8]) -> u32 {
    let mut d = 0u32;
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    for (x, y) in wa.zip(wb) {
        let (x, y) = (
            u64::from_le_bytes(x.try_into().unwrap_or([0; 8])),
            u64::from_le_bytes(y.try_into().unwrap_or([0; 8])),
        );
        d += (x ^ y).count_ones();
    }
    d + ra
        .iter()
        .zip(rb)
        .map(|(x, y)| (x ^ y).count_ones())
        .sum::<u32>()
}

/// A chunk's codes as the coder made them: one code per kept token and each token's piece
/// ([`piece_key`], or [`NO_PIECE`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassageCodes {
    /// The codes, `code_bytes` each.
    pub codes: Vec<u8>,
    /// The piece of each code, same order.
    pub pieces: Vec<u32>,
}

/// A chunk's codes as a new segment stores them: its own codes and the pieces whose shared
/// code stands for some of its tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedCodes {
    /// Codes of tokens far from any shared code, `code_bytes` each.
    pub own: Vec<u8>,
    /// Pieces whose code ([`PieceBook`]) stands for tokens of the chunk, each once.
    pub refs: Vec<u32>,
    /// Codes the previous chunk of the chunk's document stores that stand for tokens of
    /// this one, each once, in the order that chunk stores them ([`SharedCodes::borrow_from`]).
    pub borrowed: Vec<u8>,
}

impl SharedCodes {
    /// Every code kept as its own (an index without sharing).
    pub fn own(codes: Vec<u8>) -> SharedCodes {
        SharedCodes {
            own: codes,
            ..SharedCodes::default()
        }
    }

    /// Stores each own code lying within `bits` of a code in `lender` (the codes of the
    /// previous chunk of the document: own, shared and borrowed) as a borrow of the nearest
    /// such code.
    ///
    /// Why: a document's chunks repeat its title and heading trail in front and the end of
    /// the chunk before as overlap, and a word read again in the next chunk codes near its
    /// first reading. On SciFact 19% of the own codes left after [`PieceBook::reduce`]
    /// lie within 80 bits of one the previous chunk stores. The rule is the in-chunk copy
    /// rule's: a token that near a kept code adds nothing the kept code does not, whether
    /// the kept code is its chunk's or the neighbour's. The paired test moved no collection
    /// down beyond noise, and Python code search up (+0.0036 nDCG@10, p 0.0004;
    /// docs/decisions.md, "Codes borrowed from the chunk before").
    pub fn borrow_from(&mut self, lender: &[&[u8]], nb: usize, bits: u32) {
        if lender.is_empty() || nb == 0 || !self.own.len().is_multiple_of(nb) {
            return;
        }
        let mut taken = vec![false; lender.len()];
        let mut own = Vec::with_capacity(self.own.len());
        for code in self.own.chunks_exact(nb) {
            let nearest = lender
                .iter()
                .enumerate()
                .map(|(i, l)| (hamming(code, l), i))
                .min();
            match nearest {
                Some((d, i)) if d <= bits => taken[i] = true,
                _ => own.extend_from_slice(code),
            }
        }
        self.own = own;
        for (code, _) in lender.iter().zip(&taken).filter(|(_, t)| **t) {
            self.borrowed.extend_from_slice(code);
        }
    }
}

/// The shared codes of an index: one code per piece, never changed once voted.
#[derive(Clone, Debug, Default)]
pub struct PieceBook {
    /// Bytes of a code.
    nb: usize,
    at: HashMap<u32, usize>,
    codes: Vec<u8>,
}

impl PieceBook {
    /// An empty codebook of `nb`-byte codes.
    pub fn new(nb: usize) -> PieceBook {
        PieceBook {
            nb,
            ..PieceBook::default()
        }
    }

    /// Pieces with a code.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// True when no piece has a code.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// The code of `piece`, if it has one.
    pub fn get(&self, piece: u32) -> Option<&[u8]> {
        let i = *self.at.get(&piece)?;
        self.codes.get(i * self.nb..(i + 1) * self.nb)
    }

    /// Gives `piece` the code `code` unless it has one (the first code a piece gets is its
    /// code for good); false when it kept its own or `code` has the wrong length.
    pub fn insert(&mut self, piece: u32, code: &[u8]) -> bool {
        if piece == NO_PIECE || code.len() != self.nb || self.at.contains_key(&piece) {
            return false;
        }
        self.at.insert(piece, self.at.len());
        self.codes.extend_from_slice(code);
        true
    }

    /// Gives a code to every piece `chunks` use at least [`VOTE_MIN_USES`] times that has
    /// none yet: the occurrence nearest the piece's majority code (each bit set where most
    /// occurrences have it set, ties set), the first such in order. Returns how many pieces
    /// got one. A caller votes only with a commit's [`VOTE_MIN_CHUNKS`].
    ///
    /// Why an occurrence and not the majority itself: an average lies nearer every query
    /// token than the occurrences it stands for, so chunks made of shared codes scored too
    /// high. In `eval`'s paired test (docs/decisions.md, "Shared piece codes, built") the
    /// majority at 64 bits cost Rust code search 0.0124 nDCG@10 (p 0.0007) and the
    /// occurrence 0.0057.
    pub fn vote(&mut self, chunks: &[PassageCodes]) -> usize {
        let nb = self.nb;
        if nb == 0 {
            return 0;
        }
        let occurrences = || {
            chunks
                .iter()
                .filter(move |c| c.codes.len() == c.pieces.len() * nb)
                .flat_map(move |c| c.codes.chunks_exact(nb).zip(c.pieces.iter().copied()))
        };
        // Per new piece: occurrences counted and, per bit, how many had it set.
        let mut tally: HashMap<u32, (u32, Vec<u32>)> = HashMap::new();
        for (code, p) in occurrences() {
            if p == NO_PIECE || self.at.contains_key(&p) {
                continue;
            }
            let (n, set) = tally.entry(p).or_insert_with(|| (0, vec![0; nb * 8]));
            if *n >= VOTE_MAX_USES {
                continue;
            }
            *n += 1;
            for (i, &byte) in code.iter().enumerate() {
                for k in 0..8 {
                    set[8 * i + k] += u32::from(byte >> k & 1);
                }
            }
        }
        let majority: HashMap<u32, Vec<u8>> = tally
            .into_iter()
            .filter(|(_, (n, _))| *n as usize >= VOTE_MIN_USES)
            .map(|(p, (n, set))| {
                let mut code = vec![0u8; nb];
                for (j, &s) in set.iter().enumerate() {
                    if 2 * s >= n {
                        code[j / 8] |= 1 << (j % 8);
                    }
                }
                (p, code)
            })
            .collect();
        let mut nearest: HashMap<u32, (u32, &[u8])> = HashMap::new();
        for (code, p) in occurrences() {
            if let Some(m) = majority.get(&p) {
                let d = hamming(m, code);
                let best = nearest.entry(p).or_insert((u32::MAX, code));
                if d < best.0 {
                    *best = (d, code);
                }
            }
        }
        // Sorted, so that the codebook's order (and the file) is the same on every run.
        let mut voted: Vec<(u32, &[u8])> = nearest.into_iter().map(|(p, (_, c))| (p, c)).collect();
        voted.sort_unstable_by_key(|(p, _)| *p);
        voted
            .into_iter()
            .map(|(p, c)| usize::from(self.insert(p, c)))
            .sum()
    }

    /// `chunk` as stored: each token within `s.near_bits` of its piece's code becomes a
    /// reference to it, then each token (own or shared) within `s.copy_bits` of one kept
    /// earlier in the chunk is dropped, in the order the tokens came.
    pub fn reduce(&self, chunk: &PassageCodes, s: Sharing) -> SharedCodes {
        let nb = self.nb;
        if nb == 0 || chunk.codes.len() != chunk.pieces.len() * nb {
            return SharedCodes::own(chunk.codes.clone());
        }
        let mut out = SharedCodes::default();
        let mut kept: Vec<&[u8]> = Vec::new();
        for (own, &p) in chunk.codes.chunks_exact(nb).zip(&chunk.pieces) {
            let shared = self.get(p).filter(|c| hamming(c, own) <= s.near_bits);
            let code = shared.unwrap_or(own);
            if kept.iter().any(|k| hamming(k, code) <= s.copy_bits) {
                continue;
            }
            kept.push(code);
            match shared {
                Some(_) => out.refs.push(p),
                None => out.own.extend_from_slice(own),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(bits: &[usize]) -> Vec<u8> {
        let mut c = vec![0u8; 48];
        for &b in bits {
            c[b / 8] |= 1 << (b % 8);
        }
        c
    }

    #[test]
    fn keys_fold_case_and_hamming_counts_bits() {
        assert_eq!(piece_key("Cell"), piece_key("cell"));
        assert_ne!(piece_key("cell"), piece_key("cells"));
        assert_ne!(piece_key(""), NO_PIECE);
        assert_eq!(hamming(&code(&[0, 9, 383]), &code(&[0, 10])), 3);
        assert_eq!(hamming(&[0xFF, 1, 2], &[0x0F, 1, 3]), 5);
    }

    #[test]
    fn the_vote_takes_the_occurrence_nearest_the_majority_and_never_changes_a_code() {
        let (a, b) = (piece_key("cell"), piece_key("mouse"));
        // Four occurrences of "cell": the majority sets bits 0 and 1 (4 and 2 votes of 4;
        // bits 2, 5 and 9 one each). {0, 1, 9}, {0, 1, 2} and {0} lie 1 bit from it: the
        // first of them is the code, an occurrence and not the majority. One "mouse": too
        // few to vote.
        let chunk = PassageCodes {
            codes: [
                code(&[0, 1, 9]),
                code(&[0, 1, 2]),
                code(&[0, 5]),
                code(&[0]),
                code(&[5]),
            ]
            .concat(),
            pieces: vec![a, a, a, a, b],
        };
        let mut book = PieceBook::new(48);
        assert_eq!(book.vote(std::slice::from_ref(&chunk)), 1);
        assert_eq!(book.get(a), Some(code(&[0, 1, 9]).as_slice()));
        assert_eq!(book.get(b), None);
        // A later vote where "cell" points elsewhere leaves its code as it was.
        let later = PassageCodes {
            codes: [code(&[7]), code(&[7])].concat(),
            pieces: vec![a, a],
        };
        assert_eq!(book.vote(&[later]), 0);
        assert_eq!(book.get(a), Some(code(&[0, 1, 9]).as_slice()));
    }

    #[test]
    fn near_tokens_become_references_and_near_copies_are_kept_once() {
        let (a, b) = (piece_key("cell"), piece_key("mouse"));
        let mut book = PieceBook::new(48);
        book.insert(a, &code(&[0, 1, 2]));
        let s = Sharing {
            near_bits: 2,
            copy_bits: 1,
            borrow: false,
        };
        let far: Vec<usize> = (100..110).collect();
        let chunk = PassageCodes {
            codes: [
                code(&[0, 1]),   // "cell", 1 bit from its code: a reference
                code(&[0, 1]),   // again: the same reference, dropped
                code(&far),      // "cell", far from its code: its own
                code(&[50]),     // "mouse", no code: its own
                code(&[50, 51]), // "mouse" within copy_bits of the last: dropped
            ]
            .concat(),
            pieces: vec![a, a, a, b, b],
        };
        let r = book.reduce(&chunk, s);
        assert_eq!(r.refs, vec![a]);
        assert_eq!(r.own, [code(&far), code(&[50])].concat());
        // The chunk after it borrows what lies within its copy distance of a code the
        // chunk stores (own or shared), each such code once, in the lender's order; a code
        // far from all of them stays its own.
        let lender: Vec<&[u8]> = r
            .own
            .chunks_exact(48)
            .chain(r.refs.iter().filter_map(|&p| book.get(p)))
            .collect();
        let mut next =
            SharedCodes::own([code(&[0, 1, 2, 3]), code(&[50, 52]), code(&[7, 8, 9])].concat());
        next.borrowed.clear();
        let mut also = next.clone();
        next.borrow_from(&lender, 48, 1);
        assert_eq!(next.own, code(&[7, 8, 9]));
        assert_eq!(next.borrowed, [code(&[50]), code(&[0, 1, 2])].concat());
        // Nothing to borrow from, or nothing near: every code stays.
        let kept = also.own.clone();
        also.borrow_from(&[], 48, 80);
        assert_eq!(
            (also.own.as_slice(), also.borrowed.len()),
            (kept.as_slice(), 0)
        );
        also.borrow_from(&[code(&far).as_slice()], 48, 1);
        assert_eq!(also.own, kept);

        // A chunk whose pieces do not line up with its codes keeps every code.
        let odd = PassageCodes {
            codes: code(&[1]),
            pieces: vec![],
        };
        assert_eq!(book.reduce(&odd, s), SharedCodes::own(code(&[1])));
    }
}
