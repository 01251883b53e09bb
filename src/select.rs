//! Context selection: from a ranked list of passages, the few that go to the reader.
//!
//! Precision matters as much as recall in RAG: every irrelevant passage is noise the model
//! may hallucinate from or lose the answer in. Selection, in order:
//! 1. merge chunks of the same file that overlap or touch (one coherent passage instead of
//!    two fragments) when each would be handed over on its own, drop lower-ranked chunks
//!    that repeat a kept passage's text, and drop near-duplicates (cosine above a
//!    threshold: copies of the same text in different files);
//! 2. optional MMR re-ordering for diversity;
//! 3. an adaptive cut-off: leave out passages whose similarity with the question is a
//!    small share of the best, and stop where the score falls below a share of the top
//!    score's margin over the candidate floor, or at a large relative gap;
//! 4. a token budget.
//!
//! Not for: ranking; it takes the final ranking as given.

use crate::copies::{specificity, Shingles};
use crate::embed::dot;

/// Settings of the selection step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SelectConfig {
    /// Merge overlapping or adjacent chunks of the same document.
    pub merge_adjacent: bool,
    /// Hand over one passage of text that several files hold ([`crate::copies`]): the
    /// copy in the more specific file, at the better rank of the two.
    pub collapse_copies: bool,
    /// Drop a passage whose cosine with a kept one exceeds this (1.0: off).
    pub dedupe_cosine: f32,
    /// MMR trade-off (1.0: relevance only; lower: more diversity); `None`: no MMR.
    pub mmr_lambda: Option<f32>,
    /// Keep passages whose score is at least this share of the top score's margin over
    /// the score at rank [`FLOOR_RANK`] (0: keep all).
    pub min_relative: f32,
    /// Stop before a passage whose relative drop from its predecessor exceeds this
    /// (1.0: off).
    pub max_gap: f32,
    /// Leave out a passage (not the first) whose cosine with the question is below this
    /// share of the best cosine among the ranking's first [`FLOOR_RANK`] (0: off). The
    /// relative cut-off only compares scores with each other, so on a small folder, where
    /// the first [`FLOOR_RANK`] hold nearly every file, an unrelated passage that shares a
    /// word with the question stands well above that floor; its low similarity is what
    /// tells it apart. A filter, not a stop: after a multi-question query's rank fusion or
    /// a boost rule, the order is not the order of similarity, and an on-topic passage may
    /// follow an off-topic one.
    pub min_similarity_share: f32,
    /// Token budget for all passages together (`None`: unlimited), counted as
    /// [`approx_tokens`]. Passages are never cut: the best one is handed over whole even
    /// when it alone is over the budget, and selection stops before the first that would
    /// overflow it.
    pub max_tokens: Option<usize>,
    /// Abstention: when no term of the question occurs in the index, nothing is handed
    /// over unless the closest passage's cosine with it reaches this (0: off). See
    /// [`SelectConfig::default`].
    pub min_similarity: f32,
}

impl Default for SelectConfig {
    /// The relative cut-off 0.4 was chosen by `pinpoint tune` on SciFact's train split (809
    /// queries, 5 folds held out, four of which chose it): of the 5 passages `query` hands
    /// over by default, the share that is relevant rose from 0.177 to 0.365 held out (3.6
    /// passages on average instead of 5) for 0.007 of their recall. A confident answer is
    /// handed over alone; a query whose candidates score alike keeps them all.
    ///
    /// `min_similarity` 0.28 is for all-MiniLM-L6-v2's cosines (docs/decisions.md,
    /// "Abstention"): of 839 answerable questions (SciFact train, and questions written for
    /// the bundled samples) none lacks a word in the index, while 71 of 869 unanswerable
    /// ones do, their closest passages at cosine 0.04 to 0.27; 20 paraphrases written to
    /// avoid the samples' words found their passage at 0.30 to 0.71. 0.28 is the lowest
    /// floor that abstains on all 71. Handing an LLM the nearest noise for such a question
    /// is what makes it answer from noise. A model with higher cosines abstains less.
    ///
    /// `min_similarity_share` 0.5 is a guard for small folders (docs/decisions.md,
    /// "Similarity guard"): on 50 labelled questions about the bundled samples the share of
    /// handed passages that are relevant rose from 0.79 to 0.93 (1.68 to 1.18 passages, the
    /// answering file still first for all 50); on SciFact train it cost one handed relevant
    /// passage of 936. A share of the best rather than an absolute floor, so that a question
    /// every relevant passage matches weakly (an identifier, an error message) keeps them all.
    fn default() -> Self {
        SelectConfig {
            merge_adjacent: true,
            collapse_copies: true,
            dedupe_cosine: 0.98,
            mmr_lambda: None,
            min_relative: 0.4,
            max_gap: 1.0,
            min_similarity_share: 0.5,
            max_tokens: None,
            min_similarity: 0.28,
        }
    }
}

impl SelectConfig {
    /// The adaptive cut-off: whether selection stops before a passage (not the first) of
    /// `score`, `rel` its share of the top's margin over the lowest candidate, after a kept
    /// passage of score `prev`. `pinpoint tune` replays it over recorded scores.
    ///
    /// A `min_relative` of 0 is off: passages below the [`FLOOR_RANK`]th score under the
    /// floor (a negative share), and treating 0 as a threshold cut every request for more
    /// than about 20 passages there, even with `--no-cutoff`.
    pub fn stops_before(&self, rel: f32, prev: f32, score: f32) -> bool {
        (self.min_relative > 0.0 && rel < self.min_relative)
            || (prev > 0.0 && (prev - score) / prev > self.max_gap)
    }

    /// Whether selection leaves out a passage (not the first) whose cosine with the
    /// question is `similarity`, `best` the best among the ranking's first [`FLOOR_RANK`].
    /// An unknown similarity never does.
    pub fn off_topic(&self, similarity: Option<f32>, best: f32) -> bool {
        match similarity {
            Some(s) => {
                self.min_similarity_share > 0.0
                    && best > 0.0
                    && s < self.min_similarity_share * best
            }
            None => false,
        }
    }

    /// Turns the adaptive cut-off off (all three of its rules): `--no-cutoff` hands over
    /// all `k`.
    pub fn disable_cutoff(&mut self) {
        self.min_relative = 0.0;
        self.max_gap = 1.0;
        self.min_similarity_share = 0.0;
    }

    /// Whether the cut-off can stop anything.
    pub fn cuts(&self) -> bool {
        self.min_relative > 0.0 || self.max_gap < 1.0 || self.min_similarity_share > 0.0
    }
}

/// A candidate passage.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// Chunk id (of the first chunk when merged).
    pub chunk_id: u64,
    /// The chunk whose score the passage carries (differs from `chunk_id` when merged).
    pub scored_chunk: u64,
    /// Document key.
    pub doc: String,
    /// Byte range in the document's text.
    pub byte_range: (u64, u64),
    /// Source lines.
    pub line_range: (u32, u32),
    /// Heading trail.
    pub heading: Option<String>,
    /// Text.
    pub text: String,
    /// Final score, higher is better.
    pub score: f32,
    /// Embedding (for dedupe and MMR), when known.
    pub vector: Option<Vec<f32>>,
    /// Chunks in its document (0: unknown): of two copies, the passage of the smaller
    /// document is kept ([`crate::copies::specificity`]).
    pub doc_chunks: usize,
    /// Cosine between the question (its best, for a query asking several) and the chunk
    /// the score stands for, when known: the evidence
    /// [`SelectConfig::min_similarity_share`] reads.
    pub similarity: Option<f32>,
    /// Why it was kept (filled by `select`).
    pub reason: String,
}

/// Rough token count, enough for a budget: 4/3 per word, and a word longer than 24 bytes
/// (base64, hashes, minified code) one per 4 bytes, as subword tokenizers cut such runs.
pub fn approx_tokens(text: &str) -> usize {
    let (mut words, mut long) = (0usize, 0usize);
    for w in text.split_whitespace() {
        if w.len() > 24 {
            long += w.len().div_ceil(4);
        } else {
            words += 1;
        }
    }
    (words * 4).div_ceil(3) + long
}

/// Whether `a` and `b` hold some of the same text.
fn overlaps(a: &Passage, b: &Passage) -> bool {
    a.doc == b.doc && a.byte_range.0 < b.byte_range.1 && b.byte_range.0 < a.byte_range.1
}

/// Merges `b` into `a` when they are of the same document and overlap or touch.
fn try_merge(a: &mut Passage, b: &Passage) -> bool {
    if a.doc != b.doc {
        return false;
    }
    let (first, second) = if a.byte_range.0 <= b.byte_range.0 {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    };
    // Touching: at most two bytes of white space between them.
    if second.byte_range.0 > first.byte_range.1 + 2 {
        return false;
    }
    let mut text = first.text.clone();
    if second.byte_range.1 > first.byte_range.1 {
        let skip = first.byte_range.1.saturating_sub(second.byte_range.0) as usize;
        match second.text.get(skip..) {
            Some(rest) => {
                if second.byte_range.0 > first.byte_range.1 {
                    text.push('\n');
                }
                text.push_str(rest);
            }
            None => return false,
        }
    }
    let score = a.score.max(b.score);
    if b.score > a.score {
        a.scored_chunk = b.scored_chunk;
    }
    a.text = text;
    a.chunk_id = first.chunk_id;
    a.byte_range = (
        first.byte_range.0,
        first.byte_range.1.max(second.byte_range.1),
    );
    a.line_range = (
        first.line_range.0.min(second.line_range.0),
        first.line_range.1.max(second.line_range.1),
    );
    a.heading = first.heading.clone();
    a.score = score;
    if a.vector.is_none() {
        a.vector = b.vector.clone();
    }
    true
}

/// The relative cut-off measures a passage's score as its share of the top's margin over
/// the score at this rank (or the last, when fewer): a fixed rank, so that the same query
/// is cut the same way whatever `k` asks for.
pub const FLOOR_RANK: usize = 20;

/// A score's share of the top's margin over the floor, the quantity the relative cut-off
/// compares with `min_relative`. When every candidate down to the floor scores the same
/// there is no margin to hold a share of: all are as good as the top (1), not as bad as
/// the floor, so a tie is kept whole rather than cut to its first member.
pub fn relative(score: f32, top: f32, floor: f32) -> f32 {
    let margin = top - floor;
    if margin <= f32::EPSILON * top.abs().max(1.0) {
        1.0
    } else {
        (score - floor) / margin
    }
}

/// The score the relative cut-off measures margins from: the lowest among the first
/// [`FLOOR_RANK`] passages of `ranked`, counting copies of an earlier one's text once when
/// they are collapsed.
///
/// Why: 25 command pages that repeat one option section word for word rank together, at
/// nearly one score; counted as 20 passages they made the floor as high as the top, and
/// the page that answered the question, next in line, fell "far below the top's margin"
/// and was cut (docs/decisions.md, "Copies in the reranked head").
pub fn floor_score(ranked: &[Passage], collapse_copies: bool) -> f32 {
    let mut scan = FloorScan::new(collapse_copies);
    for p in ranked {
        if scan.push(p.score, &p.text) {
            break;
        }
    }
    scan.floor()
}

/// [`floor_score`] one passage at a time, for a caller that holds fewer passages than the
/// floor needs: where copies fill the first entries of a ranking, the [`FLOOR_RANK`]th
/// distinct text lies deeper than the passages selection chooses from, and a floor
/// measured among those alone sits higher the fewer were read, so that a smaller `k` cut
/// harder (docs/decisions.md, "The cut-off's floor does not depend on k"). The engine
/// reads on, text only, until [`FloorScan::push`] says the floor is reached, and hands the
/// floor to [`select_with_floor`].
#[derive(Debug)]
pub struct FloorScan {
    collapse_copies: bool,
    /// The shingles of each distinct text seen (only when copies are collapsed).
    distinct: Vec<Shingles>,
    /// Passages counted towards the floor rank.
    counted: usize,
    floor: f32,
}

impl FloorScan {
    /// An empty scan.
    pub fn new(collapse_copies: bool) -> FloorScan {
        FloorScan {
            collapse_copies,
            distinct: Vec::new(),
            counted: 0,
            floor: f32::INFINITY,
        }
    }

    /// Counts the next passage of the ranking (scores in rank order); true once the floor
    /// is reached, after which further passages change nothing.
    pub fn push(&mut self, score: f32, text: &str) -> bool {
        if self.done() {
            return true;
        }
        if self.collapse_copies {
            let sh = Shingles::of(text);
            if self.distinct.iter().any(|d| d.is_copy_of(&sh)) {
                return false;
            }
            self.distinct.push(sh);
        }
        self.counted += 1;
        self.floor = self.floor.min(score);
        self.done()
    }

    /// Whether [`FLOOR_RANK`] passages were counted.
    pub fn done(&self) -> bool {
        self.counted >= FLOOR_RANK
    }

    /// The floor so far: the lowest score counted (infinite when none was).
    pub fn floor(&self) -> f32 {
        self.floor
    }
}

/// The best cosine with the question among the first [`FLOOR_RANK`] of `ranked` (0 when
/// none is known): what [`SelectConfig::min_similarity_share`] takes a share of.
pub fn best_similarity(ranked: &[Passage]) -> f32 {
    ranked
        .iter()
        .take(FLOOR_RANK)
        .filter_map(|p| p.similarity)
        .fold(0.0, f32::max)
}

/// Why selection handed over what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `k` passages were handed over.
    Full,
    /// The adaptive cut-off stopped it (or left passages out as off topic).
    Cutoff,
    /// The next passage would have passed the token budget.
    Budget,
    /// The candidates ran out: merged, duplicate or fewer than `k` to begin with.
    Exhausted,
}

/// Selects at most `k` passages from `ranked` (best first).
pub fn select(ranked: Vec<Passage>, k: usize, cfg: &SelectConfig) -> Vec<Passage> {
    select_with_stop(ranked, k, cfg).0
}

/// [`select`], and why it stopped where it did: the engine tells a user who asked for more
/// passages than they got why ([`Stop`]).
pub fn select_with_stop(
    ranked: Vec<Passage>,
    k: usize,
    cfg: &SelectConfig,
) -> (Vec<Passage>, Stop) {
    let floor = floor_score(&ranked, cfg.collapse_copies);
    select_with_floor(ranked, k, cfg, floor)
}

/// [`select_with_stop`] with the relative cut-off's floor measured by the caller, over
/// more of the ranking than `ranked` holds ([`FloorScan`]).
pub fn select_with_floor(
    ranked: Vec<Passage>,
    k: usize,
    cfg: &SelectConfig,
    floor: f32,
) -> (Vec<Passage>, Stop) {
    if k == 0 {
        return (Vec::new(), Stop::Full);
    }
    if ranked.is_empty() {
        return (Vec::new(), Stop::Exhausted);
    }
    let top = ranked[0].score;
    let best_similarity = best_similarity(&ranked);

    // 1. Merge and dedupe, walking in rank order. A chunk extends a kept passage only when
    // it would have been handed over on its own (among the first k, above the relative
    // cut-off); a later one that overlaps a kept passage only repeats its text and is
    // dropped. Otherwise every candidate chunk of a long file (the pool holds 4k) would
    // grow one passage to many times what k chunks hold.
    let mut kept: Vec<Passage> = Vec::new();
    // The shingles of each kept passage, when copies are collapsed.
    let mut kept_shingles: Vec<Shingles> = Vec::new();
    'outer: for (rank, mut p) in ranked.into_iter().enumerate() {
        if cfg.merge_adjacent {
            let may_extend = rank < k && relative(p.score, top, floor) >= cfg.min_relative;
            for (i, q) in kept.iter_mut().enumerate() {
                if !may_extend {
                    if overlaps(q, &p) {
                        continue 'outer;
                    }
                } else if try_merge(q, &p) {
                    q.reason = "merged with an overlapping or adjacent chunk".into();
                    if cfg.collapse_copies {
                        kept_shingles[i] = Shingles::of(&q.text);
                    }
                    continue 'outer;
                }
            }
        }
        let shingles = if cfg.collapse_copies {
            Shingles::of(&p.text)
        } else {
            Shingles::default()
        };
        if cfg.collapse_copies {
            let copy = kept
                .iter()
                .zip(&kept_shingles)
                .position(|(q, qs)| q.doc != p.doc && qs.is_copy_of(&shingles));
            if let Some(i) = copy {
                let q = &mut kept[i];
                if specificity(p.doc_chunks, &p.doc) < specificity(q.doc_chunks, &q.doc) {
                    // The more specific file's copy takes the place (and score) of the
                    // one ranked above it.
                    p.score = p.score.max(q.score);
                    p.reason = format!("kept over its copy in {}", q.doc);
                    *q = p;
                    kept_shingles[i] = shingles;
                } else {
                    let note = format!("its copy in {} left out", p.doc);
                    q.reason = if q.reason.is_empty() {
                        note
                    } else {
                        format!("{}; {note}", q.reason)
                    };
                }
                continue;
            }
        }
        if cfg.dedupe_cosine < 1.0 {
            if let Some(v) = &p.vector {
                if kept
                    .iter()
                    .filter_map(|q| q.vector.as_ref())
                    .any(|w| dot(v, w) > cfg.dedupe_cosine)
                {
                    continue;
                }
            }
        }
        kept.push(p);
        if cfg.collapse_copies {
            kept_shingles.push(shingles);
        }
    }

    // 2. MMR.
    if let Some(lambda) = cfg.mmr_lambda {
        let mut pool = kept;
        let mut order: Vec<Passage> = Vec::new();
        while !pool.is_empty() {
            let mut best = 0;
            let mut best_v = f32::MIN;
            for (i, p) in pool.iter().enumerate() {
                let rel = relative(p.score, top, floor);
                let red = match &p.vector {
                    Some(v) => order
                        .iter()
                        .filter_map(|q| q.vector.as_ref())
                        .map(|w| dot(v, w))
                        .fold(0f32, f32::max),
                    None => 0.0,
                };
                let m = lambda * rel - (1.0 - lambda) * red;
                if m > best_v {
                    best_v = m;
                    best = i;
                }
            }
            order.push(pool.remove(best));
        }
        kept = order;
    }

    // 3-4. Cut-off and budget.
    let mut out: Vec<Passage> = Vec::new();
    let mut tokens = 0;
    let mut prev = top;
    let mut stop = Stop::Exhausted;
    let mut left_out = false;
    for mut p in kept {
        if out.len() >= k {
            stop = Stop::Full;
            break;
        }
        if !out.is_empty() && cfg.off_topic(p.similarity, best_similarity) {
            left_out = true;
            continue;
        }
        let rel = relative(p.score, top, floor);
        if !out.is_empty() && cfg.stops_before(rel, prev, p.score) {
            stop = Stop::Cutoff;
            break;
        }
        let t = approx_tokens(&p.text);
        // A passage is never cut (the cut could be where the answer is), so the best one is
        // handed over whole even when it alone is over the budget; its reason says so.
        let mut over_budget = None;
        if let Some(b) = cfg.max_tokens {
            if !out.is_empty() && tokens + t > b {
                stop = Stop::Budget;
                break;
            }
            over_budget = (t > b).then_some(b);
        }
        tokens += t;
        prev = p.score;
        if p.reason.is_empty() {
            p.reason = format!("score {:.3} of the top's margin", rel);
        }
        if let Some(b) = over_budget {
            p.reason += &format!("; handed over whole: ~{t} tokens against a budget of {b}");
        }
        out.push(p);
    }
    if out.len() >= k {
        stop = Stop::Full;
    } else if stop == Stop::Exhausted && left_out {
        stop = Stop::Cutoff;
    }
    (out, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u64, doc: &str, range: (u64, u64), text: &str, score: f32) -> Passage {
        Passage {
            chunk_id: id,
            scored_chunk: id,
            doc: doc.into(),
            byte_range: range,
            line_range: (range.0 as u32 + 1, range.1 as u32 + 1),
            heading: None,
            text: text.into(),
            score,
            vector: None,
            doc_chunks: 0,
            similarity: None,
            reason: String::new(),
        }
    }

    /// The default without the cut-off: these tests are about the other steps.
    fn uncut() -> SelectConfig {
        SelectConfig {
            min_relative: 0.0,
            min_similarity_share: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn the_floor_is_the_twentieth_distinct_text_however_many_copies_come_first() {
        // Ten copies of one section (one distinct text), then distinct texts: the floor is
        // the 20th distinct, the 29th entry, and one scan or `floor_score` over every
        // entry give the same; without collapsing it is the 20th entry.
        let copy = "the feature flags allow you to control which features are enabled for \
                    every selected package of the workspace";
        let text = |i: usize| format!("section {i} about topic {i} says something else {i} {i}");
        let scores: Vec<f32> = (0..40).map(|i| 1.0 - i as f32 * 0.01).collect();
        let texts: Vec<String> = (0..40)
            .map(|i| if i < 10 { copy.to_string() } else { text(i) })
            .collect();
        let mut scan = FloorScan::new(true);
        let at = (0..40)
            .position(|i| scan.push(scores[i], &texts[i]))
            .expect("the floor is reached");
        assert_eq!(at, 28);
        assert_eq!(scan.floor(), scores[28]);
        let ranked: Vec<Passage> = (0..40)
            .map(|i| p(i as u64, "d", (0, 1), &texts[i], scores[i]))
            .collect();
        assert_eq!(floor_score(&ranked, true), scores[28]);
        assert_eq!(floor_score(&ranked, false), scores[19]);
        // Reading only the first 20 entries would have put it at the 10th distinct.
        assert_eq!(floor_score(&ranked[..20], true), scores[19]);
        assert!(floor_score(&ranked[..20], true) > floor_score(&ranked, true));
    }

    #[test]
    fn the_default_cuts_below_the_relative_threshold() {
        // Shares of the margin: 1, 0.5, 0.35, 0 (the floor).
        let r = vec![
            p(1, "a", (0, 1), "w", 1.0),
            p(2, "b", (0, 1), "w", 0.6),
            p(3, "c", (0, 1), "w", 0.45),
            p(4, "d", (0, 1), "w", 0.2),
        ];
        let s = select(r.clone(), 10, &SelectConfig::default());
        assert_eq!(s.iter().map(|x| x.chunk_id).collect::<Vec<_>>(), vec![1, 2]);
        // `--no-cutoff` turns every rule off: all of them, in order.
        let mut off = SelectConfig::default();
        assert!(off.cuts());
        off.disable_cutoff();
        assert!(!off.cuts());
        let s = select(r, 10, &off);
        assert_eq!(
            s.iter().map(|x| x.chunk_id).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
    }

    #[test]
    fn a_passage_far_less_similar_than_the_best_is_left_out() {
        // A small folder: every file is in the first 20, so the unrelated third passage
        // holds most of the margin; its cosine (below 0 against a best 0.6 held by a
        // passage below) tells it apart. A share of 0.5 leaves it out and keeps what follows.
        let mut r = vec![
            p(1, "tides", (0, 1), "w", 1.0),
            p(2, "hurricanes", (0, 1), "w", 0.9),
            p(3, "bread", (0, 1), "w", 0.8),
            p(4, "moon", (0, 1), "w", 0.1),
        ];
        // The third's cosine is negative: a share of 0 (off) still keeps it.
        for (x, s) in r.iter_mut().zip([0.5, 0.45, -0.15, 0.6]) {
            x.similarity = Some(s);
        }
        let ids = |r: &[Passage], k: usize, cfg: &SelectConfig| -> Vec<u64> {
            select(r.to_vec(), k, cfg)
                .iter()
                .map(|x| x.chunk_id)
                .collect()
        };
        let share = |min_similarity_share| SelectConfig {
            min_similarity_share,
            ..uncut()
        };
        assert_eq!(ids(&r, 10, &uncut()), vec![1, 2, 3, 4]);
        assert_eq!(ids(&r, 10, &share(0.5)), vec![1, 2, 4]);
        // 0.8 · 0.6 = 0.48: the second (0.45) goes too; the first always stays.
        assert_eq!(ids(&r, 10, &share(0.8)), vec![1, 4]);
        // With k 2, the passage after a left-out one takes its place.
        assert_eq!(ids(&r, 2, &share(0.8)), vec![1, 4]);
        assert_eq!(best_similarity(&r), 0.6);
        // Unknown similarities never stop anything.
        for x in r.iter_mut() {
            x.similarity = None;
        }
        assert_eq!(ids(&r, 10, &share(0.8)), vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_tie_down_to_the_floor_is_kept_whole() {
        // Five files matched equally (a title hit in each): no margin, so no cut.
        let r: Vec<Passage> = (0..5)
            .map(|i| p(i, &format!("d{i}"), (0, 1), "w", 0.8))
            .collect();
        assert_eq!(select(r, 5, &SelectConfig::default()).len(), 5);
        assert_eq!(relative(0.8, 0.8, 0.8), 1.0);
        assert_eq!(relative(0.5, 1.0, 0.0), 0.5);
    }

    #[test]
    fn the_floor_is_taken_at_a_fixed_rank_whatever_k() {
        // 25 passages scored 1.0, 0.96, ...: the floor is the 20th's score (0.24), so the
        // 10th (0.64) holds 0.53 of the margin whether 5 or 25 passages are asked for.
        let r = || -> Vec<Passage> {
            (0..25)
                .map(|i| p(i, &format!("d{i}"), (0, 1), "w", 1.0 - 0.04 * i as f32))
                .collect()
        };
        let cfg = SelectConfig {
            min_relative: 0.5,
            ..uncut()
        };
        // Kept while (s - 0.24) / 0.76 >= 0.5, i.e. s >= 0.62: ten passages (1.0 .. 0.64).
        assert_eq!(select(r(), 25, &cfg).len(), 10);
        assert_eq!(select(r(), 5, &cfg).len(), 5);
    }

    #[test]
    fn overlapping_chunks_of_a_file_merge_into_one_passage() {
        // doc text: "abcdefghij"; chunks [0,6) "abcdef" and [4,10) "efghij" overlap by 2.
        let r = vec![
            p(2, "d", (4, 10), "efghij", 0.9),
            p(1, "d", (0, 6), "abcdef", 0.8),
            p(3, "e", (0, 3), "xyz", 0.5),
        ];
        let s = select(r.clone(), 10, &uncut());
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].text, "abcdefghij");
        assert_eq!(s[0].byte_range, (0, 10));
        assert_eq!(s[0].score, 0.9);
        assert_eq!(s[0].chunk_id, 1);
        assert_eq!(s[0].scored_chunk, 2);
        assert_eq!(s[1].doc, "e");
        // Over a token budget the merged passage is still handed over whole, and both
        // reasons are told.
        let cfg = SelectConfig {
            max_tokens: Some(1),
            ..uncut()
        };
        let s = select(r, 10, &cfg);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].reason,
            "merged with an overlapping or adjacent chunk; handed over whole: ~2 tokens against a budget of 1"
        );
    }

    #[test]
    fn only_chunks_that_would_be_handed_over_extend_a_passage() {
        // Ten consecutive overlapping chunks of one file, best first, then another file.
        let mut r: Vec<Passage> = (0..10u64)
            .map(|i| {
                let text = format!("{i:02}-{:02}", i + 1);
                p(i, "long", (i * 3, i * 3 + 5), &text, 1.0 - 0.05 * i as f32)
            })
            .collect();
        r.push(p(10, "other", (0, 3), "xyz", 0.5));
        // k 2: the passage holds the first two chunks only; chunk 2 repeats its text (it
        // overlaps it) and is dropped; chunk 3 only touches it and is a passage of its own.
        let s = select(r.clone(), 2, &uncut());
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].byte_range, (0, 8));
        assert_eq!(s[1].byte_range, (9, 14));
        // Below the relative cut-off a chunk does not extend a passage either: the floor is
        // the last score (0.5), so 0.35 of the margin is 0.675; chunks 0..=6 score >= 0.7.
        let cfg = SelectConfig {
            min_relative: 0.35,
            ..uncut()
        };
        let s = select(r, 10, &cfg);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].byte_range, (0, 6 * 3 + 5));
    }

    #[test]
    fn distant_chunks_of_a_file_stay_apart() {
        let r = vec![
            p(1, "d", (0, 5), "aaaaa", 0.9),
            p(2, "d", (100, 105), "bbbbb", 0.8),
        ];
        assert_eq!(select(r, 10, &uncut()).len(), 2);
    }

    #[test]
    fn near_duplicates_by_cosine_are_dropped() {
        let mut a = p(1, "a", (0, 3), "one", 0.9);
        let mut b = p(2, "b", (0, 3), "one", 0.8);
        let mut c = p(3, "c", (0, 3), "two", 0.7);
        a.vector = Some(vec![1.0, 0.0]);
        b.vector = Some(vec![0.999, 0.0447]);
        c.vector = Some(vec![0.0, 1.0]);
        let s = select(vec![a, b, c], 10, &uncut());
        assert_eq!(s.iter().map(|x| x.chunk_id).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn relative_cut_off_gap_and_budget() {
        let r = || {
            vec![
                // Distinct texts: the same words in two files would be copies.
                p(1, "a", (0, 1), "a b c", 1.0),
                p(2, "b", (0, 1), "d e f", 0.9),
                p(3, "c", (0, 1), "g h i", 0.3),
                p(4, "d", (0, 1), "w", 0.0),
            ]
        };
        // margin 1.0 over floor 0.0: keep >= 0.5 of it.
        let cfg = SelectConfig {
            min_relative: 0.5,
            ..uncut()
        };
        assert_eq!(select(r(), 10, &cfg).len(), 2);
        // gap: 0.9 -> 0.3 is a 67% drop.
        let cfg = SelectConfig {
            max_gap: 0.5,
            ..uncut()
        };
        assert_eq!(select(r(), 10, &cfg).len(), 2);
        // budget: each 3-word passage is 4 tokens; a run without spaces counts by length.
        assert_eq!(approx_tokens("w w w"), 4);
        assert_eq!(approx_tokens(&format!("w {}", "x".repeat(1000))), 2 + 250);
        let cfg = SelectConfig {
            max_tokens: Some(9),
            ..uncut()
        };
        assert_eq!(select(r(), 10, &cfg).len(), 2);
        // the first passage is kept even over budget; k caps.
        let cfg = SelectConfig {
            max_tokens: Some(1),
            ..uncut()
        };
        let one = select(r(), 10, &cfg);
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].reason,
            "score 1.000 of the top's margin; handed over whole: ~4 tokens against a budget of 1"
        );
        // Within the budget the reason is the usual one.
        assert!(select(r(), 10, &uncut())[0]
            .reason
            .starts_with("score 1.000"));
        assert_eq!(select(r(), 3, &uncut()).len(), 3);
        assert!(select(Vec::new(), 3, &SelectConfig::default()).is_empty());
    }

    #[test]
    fn mmr_promotes_diversity() {
        let mut a = p(1, "a", (0, 1), "x", 1.0);
        let mut b = p(2, "b", (0, 1), "x", 0.95);
        let mut c = p(3, "c", (0, 1), "x", 0.9);
        a.vector = Some(vec![1.0, 0.0]);
        b.vector = Some(vec![0.95, 0.312]);
        c.vector = Some(vec![0.0, 1.0]);
        let cfg = SelectConfig {
            mmr_lambda: Some(0.5),
            dedupe_cosine: 1.0,
            ..uncut()
        };
        let s = select(vec![a, b, c], 3, &cfg);
        assert_eq!(
            s.iter().map(|x| x.chunk_id).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
    }

    const CHAPTER: &str = "Tides are the regular rise and fall of sea level caused mainly by the \
        gravitational pull of the Moon and to a lesser degree the Sun acting on the oceans.";

    #[test]
    fn a_copy_in_a_larger_file_gives_its_place_to_the_more_specific_one() {
        // The book on one page ranks first, the chapter third; another page in between.
        let mut aggregate = p(
            1,
            "print.html",
            (0, 200),
            &format!("Book. {CHAPTER} Next."),
            1.0,
        );
        aggregate.doc_chunks = 400;
        let mut other = p(
            2,
            "moon.html",
            (0, 50),
            "The Moon orbits the Earth every month.",
            0.8,
        );
        other.doc_chunks = 3;
        let mut chapter = p(3, "tides.html", (0, 150), CHAPTER, 0.7);
        chapter.doc_chunks = 4;
        let s = select(
            vec![aggregate.clone(), other.clone(), chapter.clone()],
            5,
            &uncut(),
        );
        let docs: Vec<&str> = s.iter().map(|x| x.doc.as_str()).collect();
        assert_eq!(docs, ["tides.html", "moon.html"]);
        assert_eq!(s[0].score, 1.0);
        assert!(
            s[0].reason.contains("kept over its copy in print.html"),
            "{}",
            s[0].reason
        );
        // The chapter first: the aggregate's copy is left out and said so.
        let mut first = chapter.clone();
        first.score = 1.0;
        aggregate.score = 0.7;
        let s = select(vec![first, other.clone(), aggregate.clone()], 5, &uncut());
        let docs: Vec<&str> = s.iter().map(|x| x.doc.as_str()).collect();
        assert_eq!(docs, ["tides.html", "moon.html"]);
        assert!(
            s[0].reason.contains("its copy in print.html left out"),
            "{}",
            s[0].reason
        );
        // Off, both are handed over.
        let off = SelectConfig {
            collapse_copies: false,
            ..uncut()
        };
        assert_eq!(select(vec![aggregate, other, chapter], 5, &off).len(), 3);
    }
}
