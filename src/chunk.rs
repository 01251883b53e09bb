//! Splitting documents into chunks sized in the embedding model's own tokens.
//!
//! A chunk never crosses a markdown/HTML section, breaks at paragraph and sentence ends (at
//! line ends for code), and repeats whole trailing sentences of its predecessor as overlap.
//! Only a single sentence longer than a whole chunk is cut mid-sentence, at token
//! boundaries. Sections longer than one chunk are split into chunks of *balanced* size rather
//! than greedily, so that no tiny tail chunk carries a sentence or two out of context.
//!
//! The chunker knows nothing of indexes: it maps a [`Document`] to [`ChunkDraft`]s.
//!
//! Not for: reading files ([`crate::ingest`]) or embedding ([`crate::embed`]); it knows nothing of indexes.

use unicode_segmentation::UnicodeSegmentation;

use crate::ingest::{DocKind, Document};

/// Chunk sizing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ChunkConfig {
    /// Largest chunk in model tokens, *including* the special tokens and the title/heading
    /// prefix that is embedded with it. Larger than the model limit makes no sense: the model
    /// would truncate.
    pub max_tokens: usize,
    /// Tokens of trailing context repeated at the start of the next chunk (whole sentences).
    pub overlap: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            max_tokens: 256,
            overlap: 32,
        }
    }
}

/// A chunk before it gets an id.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkDraft {
    /// Byte range in the document's extracted text.
    pub byte_range: (usize, usize),
    /// 1-based inclusive source line range.
    pub line_range: (u32, u32),
    /// Heading trail (`A > B > C`) of the section holding the chunk.
    pub heading: Option<String>,
    /// The chunk text (a slice of the document text).
    pub text: String,
}

/// The text that is embedded and indexed for a chunk: title and heading trail give the
/// chunk the context it lost by being cut out of its document.
pub fn contextual_text(title: &str, heading: Option<&str>, text: &str) -> String {
    match heading {
        Some(h) if !h.is_empty() => format!("{title} > {h}\n{text}"),
        _ if !title.is_empty() => format!("{title}\n{text}"),
        _ => text.to_string(),
    }
}

struct Section {
    start: usize,
    end: usize,
    heading: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
}

/// Splits `doc` into chunks. `spans` gives the byte spans of a text's tokens (the model
/// tokenizer, without special tokens).
pub fn chunk_document(
    doc: &Document,
    spans: &dyn Fn(&str) -> Vec<(usize, usize)>,
    cfg: &ChunkConfig,
) -> Vec<ChunkDraft> {
    let mut out = Vec::new();
    for sec in sections(doc) {
        let prefix = contextual_text(&doc.title, sec.heading.as_deref(), "");
        let prefix_tokens = spans(&prefix).len();
        // [CLS] and [SEP] + prefix; keep at least a few tokens of body.
        let budget = cfg.max_tokens.saturating_sub(2 + prefix_tokens).max(8);
        let overlap = cfg.overlap.min(budget / 2);
        let body = &doc.text[sec.start..sec.end];
        let tok = cap_spans(spans(body), body);
        let units = units(doc.kind, body, sec.start, &tok);
        for (s, e) in pack(&units, &tok, sec.start, budget, overlap) {
            let text = doc.text[s..e].to_string();
            if text.trim().is_empty() {
                continue;
            }
            out.push(ChunkDraft {
                byte_range: (s, e),
                line_range: (doc.line_of(s), doc.line_of(e.saturating_sub(1).max(s))),
                heading: sec.heading.clone(),
                text,
            });
        }
    }
    out
}

/// Sections delimited by headings (outside code fences) for markdown and HTML; one section
/// for everything else. Headings are ATX (`## Title`) or setext (a one-line paragraph
/// underlined with `===` or `---`, as many READMEs write them). A YAML front matter block
/// (`---` ... `---` at the very start) belongs to the first section and holds no heading:
/// its closing `---` under `title: x` is not a setext underline.
fn sections(doc: &Document) -> Vec<Section> {
    let text = &doc.text;
    if !matches!(
        doc.kind,
        DocKind::Markdown | DocKind::Html | DocKind::Docx | DocKind::Pptx | DocKind::Notebook
    ) {
        return vec![Section {
            start: 0,
            end: text.len(),
            heading: None,
        }];
    }
    let mut out = Vec::new();
    let mut trail: Vec<(usize, String)> = Vec::new();
    let mut cur_start = 0;
    let mut cur_heading: Option<String> = None;
    let mut in_fence = false;
    let mut pos = 0;
    let mut front_matter = doc.kind == DocKind::Markdown && text.lines().next() == Some("---");
    // A one-line paragraph (start, text) that an underline on the next line would make a
    // setext heading, and whether the line before the current one was blank.
    let mut para: Option<(usize, String)> = None;
    let mut after_blank = true;
    let mut open = |at: usize, level: usize, title: String, cur_start: &mut usize| {
        if at > *cur_start && !text[*cur_start..at].trim().is_empty() {
            out.push(Section {
                start: *cur_start,
                end: at,
                heading: cur_heading.clone(),
            });
        }
        trail.retain(|(l, _)| *l < level);
        trail.push((level, title));
        cur_heading = Some(
            trail
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(" > "),
        );
        *cur_start = at;
    };
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        let blank = t.is_empty();
        if front_matter {
            if pos > 0 && matches!(line.trim_end(), "---" | "...") {
                front_matter = false;
            }
        } else if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            para = None;
        } else if in_fence {
            // Code: a `# comment` or a `---` line is not markdown here.
        } else if let Some(level) = atx_level(line) {
            let title = line[level..]
                .trim()
                .trim_end_matches('#')
                .trim()
                .to_string();
            open(pos, level, title, &mut cur_start);
            para = None;
        } else if let (Some(level), Some((at, title))) = (setext_level(line), para.take()) {
            open(at, level, title, &mut cur_start);
        } else {
            para = (!blank && after_blank && plain_line(t)).then(|| (pos, line.trim().to_string()));
        }
        after_blank = blank;
        pos += line.len();
    }
    if text.len() > cur_start && !text[cur_start..].trim().is_empty() {
        out.push(Section {
            start: cur_start,
            end: text.len(),
            heading: cur_heading,
        });
    }
    out
}

/// The level of an ATX heading line (`#` to `######` then a space), if it is one.
fn atx_level(line: &str) -> Option<usize> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    let rest = &line[level..];
    ((1..=6).contains(&level) && (rest.starts_with(' ') || rest.starts_with('\t'))).then_some(level)
}

/// The level of a setext underline (`==` for 1, `--` for 2; up to three spaces of indent).
fn setext_level(line: &str) -> Option<usize> {
    let t = line.trim_end();
    let body = t.trim_start_matches(' ');
    if t.len() - body.len() > 3 || body.len() < 2 {
        return None;
    }
    if body.bytes().all(|b| b == b'=') {
        Some(1)
    } else if body.bytes().all(|b| b == b'-') {
        Some(2)
    } else {
        None
    }
}

/// Whether a line can be a setext heading's text: not a list item, quote, table row or tag.
fn plain_line(t: &str) -> bool {
    let list = t.starts_with(['-', '*', '+']) && t[1..].starts_with([' ', '\t'])
        || t.split_once(['.', ')'])
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    !list && !t.starts_with(['>', '|', '<']) && !t.starts_with("    ")
}

/// Longest byte span counted as one token when sizing chunks. WordPiece turns a word it
/// cannot split (over 100 characters, or of characters outside its vocabulary) into one
/// `[UNK]` spanning the whole word, so a 200 KB run without spaces (base64, a minified
/// line) would become a single "one-token" chunk that no token budget can hold. A normal
/// word piece is far shorter, so ordinary text is sized exactly as before.
const MAX_TOKEN_BYTES: usize = 24;

/// Cuts spans longer than [`MAX_TOKEN_BYTES`] into pieces of at most that length (at
/// character boundaries of `text`).
fn cap_spans(spans: Vec<(usize, usize)>, text: &str) -> Vec<(usize, usize)> {
    if spans.iter().all(|&(s, e)| e - s <= MAX_TOKEN_BYTES) {
        return spans;
    }
    let mut out = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        let mut a = s;
        while e - a > MAX_TOKEN_BYTES {
            let mut b = a + MAX_TOKEN_BYTES;
            // A character is at most 4 bytes, so `b` stays above `a`.
            while !text.is_char_boundary(b) {
                b -= 1;
            }
            out.push((a, b));
            a = b;
        }
        out.push((a, e));
    }
    out
}

/// Splits a section into unbreakable units (sentences, or lines for code and fenced code),
/// trimmed of surrounding white space, with their token counts.
fn units(kind: DocKind, body: &str, base: usize, tok: &[(usize, usize)]) -> Vec<Unit> {
    let mut raw: Vec<(usize, usize)> = Vec::new();
    let mut push = |s: usize, e: usize, raw: &mut Vec<(usize, usize)>| {
        let piece = &body[s..e];
        let lead = piece.len() - piece.trim_start().len();
        let trail = piece.len() - piece.trim_end().len();
        if lead + trail < piece.len() {
            raw.push((s + lead, e - trail));
        }
    };
    let mut pos = 0;
    let mut in_fence = false;
    let mut para_start: Option<usize> = None;
    let code = kind == DocKind::Code;
    for line in body.split_inclusive('\n') {
        let t = line.trim();
        let fence = t.starts_with("```") || t.starts_with("~~~");
        let line_end = pos + line.len();
        if code || in_fence || fence {
            if let Some(ps) = para_start.take() {
                split_sentences(body, ps, pos, &mut raw, &mut push);
            }
            push(pos, line_end, &mut raw);
            if fence {
                in_fence = !in_fence;
            }
        } else if t.is_empty() {
            if let Some(ps) = para_start.take() {
                split_sentences(body, ps, pos, &mut raw, &mut push);
            }
        } else if para_start.is_none() {
            para_start = Some(pos);
        }
        pos = line_end;
    }
    if let Some(ps) = para_start {
        split_sentences(body, ps, body.len(), &mut raw, &mut push);
    }
    // Token counts: a token belongs to the unit its first byte falls in.
    let mut out = Vec::with_capacity(raw.len());
    let mut ti = 0;
    for (s, e) in raw {
        while ti < tok.len() && tok[ti].0 < s {
            ti += 1;
        }
        let first = ti;
        while ti < tok.len() && tok[ti].0 < e {
            ti += 1;
        }
        out.push(Unit {
            start: base + s,
            end: base + e,
            tokens: (ti - first).max(1),
        });
    }
    out
}

fn split_sentences(
    body: &str,
    s: usize,
    e: usize,
    raw: &mut Vec<(usize, usize)>,
    push: &mut impl FnMut(usize, usize, &mut Vec<(usize, usize)>),
) {
    for (off, sent) in body[s..e].split_sentence_bound_indices() {
        push(s + off, s + off + sent.len(), raw);
    }
}

/// Packs units into chunk byte ranges of at most `budget` tokens, balanced in size, with
/// whole-unit overlap of at most `overlap` tokens.
fn pack(
    units: &[Unit],
    tok: &[(usize, usize)],
    base: usize,
    budget: usize,
    overlap: usize,
) -> Vec<(usize, usize)> {
    let total: usize = units.iter().map(|u| u.tokens).sum();
    if units.is_empty() {
        return Vec::new();
    }
    if total <= budget {
        return vec![(units[0].start, units[units.len() - 1].end)];
    }
    // Number of chunks if each new chunk adds (budget - overlap) fresh tokens; then aim each
    // chunk at an equal share.
    let fresh = budget.saturating_sub(overlap).max(1);
    let n = total.saturating_sub(overlap).div_ceil(fresh).max(1);
    let target = (total.div_ceil(n) + overlap).min(budget);

    let mut out = Vec::new();
    let mut cur: Vec<Unit> = Vec::new();
    let mut cur_tokens = 0;
    let mut fresh_in_cur = false;
    for u in units {
        if u.tokens > budget {
            if fresh_in_cur {
                out.push((cur[0].start, cur[cur.len() - 1].end));
            }
            cur.clear();
            cur_tokens = 0;
            fresh_in_cur = false;
            split_long(u, tok, base, budget, overlap, &mut out);
            continue;
        }
        if !cur.is_empty() && cur_tokens + u.tokens > target {
            if fresh_in_cur {
                out.push((cur[0].start, cur[cur.len() - 1].end));
            }
            // Keep trailing units as overlap.
            let mut keep = 0;
            let mut kt = 0;
            for w in cur.iter().rev() {
                if kt + w.tokens > overlap || keep + 1 >= cur.len() {
                    break;
                }
                kt += w.tokens;
                keep += 1;
            }
            cur.drain(..cur.len() - keep);
            cur_tokens = kt;
            while !cur.is_empty() && cur_tokens + u.tokens > budget {
                cur_tokens -= cur[0].tokens;
                cur.remove(0);
            }
        }
        cur.push(*u);
        cur_tokens += u.tokens;
        fresh_in_cur = true;
    }
    if fresh_in_cur {
        out.push((cur[0].start, cur[cur.len() - 1].end));
    }
    out
}

/// Cuts one over-long unit at token boundaries into windows of `budget` tokens that overlap
/// by `overlap` tokens.
fn split_long(
    u: &Unit,
    tok: &[(usize, usize)],
    base: usize,
    budget: usize,
    overlap: usize,
    out: &mut Vec<(usize, usize)>,
) {
    let inside: Vec<(usize, usize)> = tok
        .iter()
        .map(|&(s, e)| (s + base, e + base))
        .filter(|&(s, _)| s >= u.start && s < u.end)
        .collect();
    if inside.is_empty() {
        out.push((u.start, u.end));
        return;
    }
    let step = budget.saturating_sub(overlap).max(1);
    let mut i = 0;
    loop {
        let j = (i + budget).min(inside.len());
        let s = if i == 0 { u.start } else { inside[i].0 };
        let e = if j == inside.len() {
            u.end
        } else {
            inside[j - 1].1
        };
        out.push((s, e.max(s + 1).min(u.end)));
        if j == inside.len() {
            break;
        }
        i += step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::whitespace_spans;

    fn chunks(doc: &Document, max: usize, overlap: usize) -> Vec<ChunkDraft> {
        chunk_document(
            doc,
            &whitespace_spans,
            &ChunkConfig {
                max_tokens: max,
                overlap,
            },
        )
    }

    fn words(c: &ChunkDraft) -> usize {
        whitespace_spans(&c.text).len()
    }

    #[test]
    fn short_document_is_one_chunk_with_lines() {
        let d = Document::from_text("a", "", "first line\nsecond line\n\nthird");
        let c = chunks(&d, 256, 32);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].line_range, (1, 4));
        assert_eq!(c[0].text, "first line\nsecond line\n\nthird");
    }

    #[test]
    fn long_text_splits_at_sentences_with_overlap_and_balance() {
        // 30 sentences of 5 words = 150 words; budget 40-2 = 38 words.
        let text: String = (0..30)
            .map(|i| format!("Sentence number {i} is here. "))
            .collect();
        let d = Document::from_text("a", "", text.trim());
        let c = chunks(&d, 40, 10);
        assert!(c.len() >= 4, "{}", c.len());
        for ch in &c {
            assert!(words(ch) <= 38, "chunk too long: {}", words(ch));
            assert!(
                ch.text.starts_with("Sentence"),
                "not at a sentence start: {:?}",
                ch.text
            );
            assert!(
                ch.text.ends_with('.'),
                "not at a sentence end: {:?}",
                ch.text
            );
        }
        // Overlap: each chunk starts before the previous one ended.
        for w in c.windows(2) {
            assert!(w[1].byte_range.0 < w[0].byte_range.1, "no overlap");
            assert!(w[1].byte_range.1 > w[0].byte_range.1, "no progress");
        }
        // Balanced: the smallest chunk is not a tiny tail.
        let min = c.iter().map(words).min().unwrap();
        let max = c.iter().map(words).max().unwrap();
        assert!(min * 2 >= max, "unbalanced {min} vs {max}");
        // Everything is covered.
        assert_eq!(c[0].byte_range.0, 0);
        assert_eq!(c.last().unwrap().byte_range.1, d.text.len());
    }

    #[test]
    fn one_huge_sentence_is_cut_at_tokens() {
        let text = vec!["w"; 100].join(" ");
        let d = Document::from_text("a", "", &text);
        let c = chunks(&d, 22, 4); // budget 20
        assert!(c.len() >= 5);
        assert!(c.iter().all(|ch| words(ch) <= 20));
        assert_eq!(c.last().unwrap().byte_range.1, text.len());
    }

    #[test]
    fn a_run_without_spaces_is_cut_by_length() {
        // One 200 KB "word" of multi-byte characters between two sentences: as one token
        // it would be one 200 KB chunk.
        let text = format!("Before it. {} After it.", "\u{e9}".repeat(100_000));
        let d = Document::from_text("a", "", &text);
        let c = chunks(&d, 256, 32); // budget 254 spans of at most 24 bytes
        assert!(c.len() >= 200_000 / (254 * 24), "{} chunks", c.len());
        for ch in &c {
            assert!(
                ch.text.len() <= 254 * MAX_TOKEN_BYTES,
                "{} bytes",
                ch.text.len()
            );
        }
        // Nothing lost: the chunks cover the text without gaps.
        assert_eq!(c[0].byte_range.0, 0);
        assert_eq!(c.last().unwrap().byte_range.1, text.len());
        for w in c.windows(2) {
            assert!(w[1].byte_range.0 <= w[0].byte_range.1, "gap");
        }
    }

    #[test]
    fn markdown_headings_make_trails_and_sections() {
        let md = "# Guide\nintro text\n\n## Install\nrun the installer\n\n```sh\n# not a heading\n```\n### Linux\napt it\n## Use\ncall it\n";
        let mut d = Document::from_text("g.md", "g.md", md);
        d.kind = DocKind::Markdown;
        let c = chunks(&d, 256, 32);
        let heads: Vec<_> = c.iter().map(|x| x.heading.clone().unwrap()).collect();
        assert_eq!(
            heads,
            vec![
                "Guide",
                "Guide > Install",
                "Guide > Install > Linux",
                "Guide > Use"
            ]
        );
        assert!(c[1].text.contains("# not a heading"));
        assert_eq!(c[2].line_range, (10, 11));
        assert_eq!(
            contextual_text("g.md", c[2].heading.as_deref(), "x"),
            "g.md > Guide > Install > Linux\nx"
        );
    }

    #[test]
    fn setext_headings_and_front_matter() {
        let md = "---\ntitle: Notes\ntags: [a]\n---\nIntro line.\n\nInstall\n=======\n\nRun it.\n\nOn Linux\n--------\napt it\n\nA paragraph\nof two lines\n---\n\n- item\n---\n";
        let mut d = Document::from_text("r.md", "r.md", md);
        d.kind = DocKind::Markdown;
        let c = chunks(&d, 256, 32);
        let heads: Vec<Option<String>> = c.iter().map(|x| x.heading.clone()).collect();
        assert_eq!(
            heads,
            vec![
                None,
                Some("Install".to_string()),
                Some("Install > On Linux".to_string())
            ],
            "{c:#?}"
        );
        // The front matter stays with the first section, its `---` not an underline.
        assert!(
            c[0].text.starts_with("---\ntitle: Notes"),
            "{:?}",
            c[0].text
        );
        assert!(c[1].text.starts_with("Install\n="), "{:?}", c[1].text);
        assert_eq!(c[2].line_range.0, 12);
        // An underline under a two-line paragraph or a list item is not a heading here.
        assert!(c[2].text.contains("of two lines\n---"), "{:?}", c[2].text);
        assert!(c[2].text.ends_with("- item\n---"), "{:?}", c[2].text);
    }

    #[test]
    fn code_breaks_at_lines() {
        let code: String = (0..40)
            .map(|i| format!("let v{i} = compute(a, b, c);\n"))
            .collect();
        let mut d = Document::from_text("x.rs", "x.rs", &code);
        d.kind = DocKind::Code;
        let c = chunks(&d, 30, 5);
        assert!(c.len() > 3);
        for ch in &c {
            assert!(ch.text.starts_with("let "), "{:?}", ch.text);
            assert!(ch.text.ends_with(';'), "{:?}", ch.text);
        }
    }
}
