//! Copies: two passages of different files that hold the same text, whatever their chunk
//! boundaries, and which of the two a reader wants.
//!
//! Real folders hold the same text several times: an mdBook's `print.html` is the whole
//! book again on one page, documentation sites keep older editions and versions beside the
//! current one, a repository vendors a file. Each copy is indexed (it may be the only place
//! some text lives), but an answer should hand the text over once: otherwise the copies
//! take the slots the next-best passages should have.
//!
//! Two passages are copies when they hold the same words (at least [`MIN_SAME_WORDS`]), or
//! when most of the smaller one occurs in the other as one unbroken run of word 5-grams
//! ([`SHINGLE`], [`MIN_RUN_SHARE`]): chunk boundaries shift between a chapter and the same
//! chapter inside an aggregate page, so whole-chunk equality or even the embedding's cosine
//! (which the chunk's other half moves) would miss most copies. At query time the engine
//! also swaps a candidate for its copy in a more specific file when that copy is its
//! nearest chunk in another document ([`MIN_COSINE`], [`crate::near`]). Of two copies the one from
//! the more specific file is kept: the file with fewer chunks (a chapter rather than the
//! book on one page), then the shorter path (the current edition rather than an old one
//! in a subfolder).
//!
//! Not for: near-duplicates within one file (merged as overlapping chunks by
//! [`crate::select`]), or deciding what is indexed ([`crate::ingest::generated`]).

use crate::mix::mix64;

/// Words per shingle: long enough that common phrases do not make two texts copies.
pub const SHINGLE: usize = 5;

/// Share of the smaller passage that must occur in the other as one unbroken run of text
/// (consecutive shingles) for the two to be copies. A run, not a count: a chapter and the
/// same chapter inside an aggregate page overlap in one stretch (their chunks start at the
/// same headings and differ by a few tokens of title), while two sibling functions that
/// differ in a name or a type here and there (`find` and `find_mut`) share most of their
/// shingles but in shorter runs, and a reader wants both. On the Rust long-query
/// code-search collection (test, chunk ranking), whose documents are single functions:
/// counting shingles at 0.5 took context precision@5 from 0.4698 to 0.4467; a run of 0.5,
/// to 0.4629; a run of 0.8, 0.4725 (docs/decisions.md, "Copies").
pub const MIN_RUN_SHARE: f64 = 0.8;

/// Identical texts of at least this many words are copies however short (`# cargo-check(1)`
/// has three); a word or two alone says nothing.
pub const MIN_SAME_WORDS: usize = 3;

/// The lowest cosine between a chunk and its nearest chunk in another document at which
/// the engine checks whether the two are copies (the shingle test decides): copies score
/// near 1, and the test is not run for every neighbour.
pub const MIN_COSINE: f32 = 0.9;

/// A passage with fewer shingles than this is never called a copy (a heading, a short
/// function): too little text to tell a copy from shared boilerplate.
pub const MIN_SHINGLES: usize = 20;

/// The word shingles of a text: lowercased alphanumeric words, [`SHINGLE`] at a time,
/// hashed.
///
/// Computed for every candidate a query's head and selection look at (up to 80 each), so
/// a word is hashed once, in place (FNV-1a over its lowercased characters, no string
/// made), and a shingle combines its words' hashes; the hashes live only in the process,
/// so they need not be stable across versions.
#[derive(Debug, Clone, Default)]
pub struct Shingles {
    /// A hash of the whole normalised text (its words, lowercased).
    whole: u64,
    /// How many words it has.
    words: usize,
    /// In text order.
    seq: Vec<u64>,
    /// The same, sorted, for lookups.
    sorted: Vec<u64>,
}

/// The hash of a run of word hashes.
fn combine(words: &[u64]) -> u64 {
    mix64(words.iter().fold(words.len() as u64, |a, &w| {
        (a.rotate_left(23) ^ w).wrapping_mul(0x100_0000_01B3)
    }))
}

impl Shingles {
    /// The shingles of `text`.
    pub fn of(text: &str) -> Shingles {
        const OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
        const PRIME: u64 = 0x100_0000_01B3;
        let mut words: Vec<u64> = Vec::with_capacity(text.len() / 5);
        let (mut h, mut in_word) = (OFFSET, false);
        for c in text.chars() {
            if c.is_alphanumeric() {
                in_word = true;
                if c.is_ascii() {
                    h = (h ^ u64::from(c.to_ascii_lowercase())).wrapping_mul(PRIME);
                } else {
                    for l in c.to_lowercase() {
                        h = (h ^ u64::from(l)).wrapping_mul(PRIME);
                    }
                }
            } else if in_word {
                words.push(mix64(h));
                (h, in_word) = (OFFSET, false);
            }
        }
        if in_word {
            words.push(mix64(h));
        }
        let seq: Vec<u64> = words.windows(SHINGLE).map(combine).collect();
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        Shingles {
            whole: combine(&words),
            words: words.len(),
            seq,
            sorted,
        }
    }

    /// How many shingles the text has.
    pub fn len(&self) -> usize {
        self.seq.len()
    }

    /// Whether the text had fewer than [`SHINGLE`] words.
    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// Whether `self` and `other` are copies: the same words, or enough text and most of
    /// the smaller one in the larger as one run.
    pub fn is_copy_of(&self, other: &Shingles) -> bool {
        // The same text is a copy however short (a synopsis, a heading with its line):
        // aggregate pages repeat their chapters' short sections word for word.
        if self.words >= MIN_SAME_WORDS && self.words == other.words && self.whole == other.whole {
            return true;
        }
        let (small, large) = if self.len() <= other.len() {
            (self, other)
        } else {
            (other, self)
        };
        if small.len() < MIN_SHINGLES {
            return false;
        }
        let (mut run, mut longest) = (0usize, 0usize);
        for h in &small.seq {
            if large.sorted.binary_search(h).is_ok() {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        longest as f64 >= MIN_RUN_SHARE * small.len() as f64
    }
}

/// How specific a file is, for choosing between copies: fewer chunks first, then fewer
/// path components, then the shorter path. Lower is more specific.
pub fn specificity(doc_chunks: usize, path: &str) -> (usize, usize, usize) {
    (doc_chunks, path.matches('/').count(), path.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAPTER: &str = "Ownership is a set of rules that govern how a Rust program manages \
        memory. All programs have to manage the way they use a computer's memory while \
        running. Some languages have garbage collection that regularly looks for no-longer-used \
        memory as the program runs.";

    #[test]
    fn a_chapter_inside_an_aggregate_page_is_a_copy_whatever_the_boundaries() {
        // The aggregate page's chunk starts a few words later (a longer title took tokens
        // from it) and goes on into the next chapter.
        let aggregate = format!(
            "{} Chapter 4.2: References and borrowing.",
            &CHAPTER[CHAPTER.find("rules").unwrap()..]
        );
        let a = Shingles::of(CHAPTER);
        let b = Shingles::of(&aggregate);
        assert!(a.is_copy_of(&b) && b.is_copy_of(&a));
        // Half of it elsewhere is not a copy: the rest of that page is other text.
        let half = Shingles::of(&CHAPTER[CHAPTER.len() / 2..]);
        let other_half = format!(
            "{} and then something else entirely.",
            &CHAPTER[..CHAPTER.len() / 2]
        );
        assert!(!half.is_copy_of(&Shingles::of(&other_half)));
        // Case and punctuation do not hide a copy.
        assert!(Shingles::of(&CHAPTER.to_uppercase().replace('.', ";")).is_copy_of(&a));
    }

    #[test]
    fn related_text_and_short_text_are_not_copies() {
        let other = "Borrowing lets a function use a value without taking ownership of it: \
            the caller keeps the value, and the function gets a reference that must not \
            outlive it. The borrow checker enforces these rules at compile time.";
        assert!(!Shingles::of(CHAPTER).is_copy_of(&Shingles::of(other)));
        // A heading shared by two pages is too little text to call either a copy...
        let heading = "What is ownership in Rust";
        assert!(!Shingles::of(heading).is_copy_of(&Shingles::of(CHAPTER)));
        // ... but the same short section in two files is one.
        let synopsis = "## SYNOPSIS\n\ncargo check [options]";
        assert!(Shingles::of(synopsis).is_copy_of(&Shingles::of(synopsis)));
        assert!(Shingles::of("one two").is_empty());
    }

    #[test]
    fn sibling_functions_that_differ_here_and_there_are_not_copies() {
        let find = "pub fn find_subcommand(&self, name: impl AsRef<std::ffi::OsStr>) -> \
            Option<&Self> { let name = name.as_ref(); self.get_subcommands().find(|s| \
            s.aliases_to(name)) } /// Finds a subcommand by its name or one of its aliases, \
            and returns a reference to it when one matches the given name exactly.";
        let find_mut = "pub fn find_subcommand_mut(&mut self, name: impl \
            AsRef<std::ffi::OsStr>) -> Option<&mut Self> { let name = name.as_ref(); \
            self.get_subcommands_mut().find(|s| s.aliases_to(name)) } /// Finds a \
            subcommand by its name or one of its aliases, and returns a mutable reference \
            to it when one matches the given name exactly.";
        let (a, b) = (Shingles::of(find), Shingles::of(find_mut));
        assert!(a.len() >= MIN_SHINGLES);
        assert!(!a.is_copy_of(&b), "siblings are not copies");
    }

    #[test]
    fn the_more_specific_file_is_the_smaller_then_the_shallower() {
        assert!(specificity(3, "ch04-01.html") < specificity(900, "print.html"));
        assert!(specificity(3, "ch04-01.html") < specificity(3, "2018-edition/ch04-01.html"));
    }
}
