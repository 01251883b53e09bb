//! HTML: the visible text of a page, headings kept as markdown headings, and a map from
//! text offsets back to the source (so that a hit's lines are the page's own lines).
//!
//! Not for: fetching pages or following links; the folder walk hands over files.

pub(super) fn html_title(src: &str) -> Option<String> {
    let lower = src.to_ascii_lowercase();
    let s = lower.find("<title")?;
    let s = s + lower[s..].find('>')? + 1;
    let e = s + lower[s..].find("</title")?;
    let t = html_escape::decode_html_entities(src[s..e].trim())
        .trim()
        .to_string();
    (!t.is_empty()).then_some(t)
}

/// Reduces HTML to its visible text.
///
/// Script, style and other invisible elements are dropped, block elements become line
/// breaks, `<h1>`..`<h6>` become markdown headings (so the chunker's heading trail works for
/// HTML too) and entities are decoded. Returns the text and a sparse map from text offsets
/// to source offsets. A small state machine rather than a DOM parser: extraction only needs
/// the visible text, and malformed markup must degrade, never fail.
pub fn html_to_text(src: &str) -> (String, Vec<(usize, usize)>) {
    const SKIP: [&str; 7] = [
        "script", "style", "noscript", "template", "svg", "head", "title",
    ];
    const BLOCK: [&str; 23] = [
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "tr",
        "table",
        "section",
        "article",
        "header",
        "footer",
        "nav",
        "aside",
        "blockquote",
        "pre",
        "hr",
        "dd",
        "dt",
        "dl",
        "main",
        "form",
        "figure",
    ];
    let lower = src.to_ascii_lowercase();
    let bytes = src.as_bytes();
    let mut out = String::with_capacity(src.len() / 2);
    let mut map = Vec::new();
    let mut i = 0;
    let mut run_start: Option<usize> = None;
    // Inside <pre> white space is content (code, poems): kept as it is, and the block is
    // fenced like markdown code so that the chunker breaks it at lines.
    let mut pre_depth = 0usize;
    let flush =
        |out: &mut String, map: &mut Vec<(usize, usize)>, from: usize, to: usize, pre: bool| {
            let raw = &src[from..to];
            if pre {
                map.push((out.len(), from));
                out.push_str(&html_escape::decode_html_entities(raw));
                return;
            }
            if raw.trim().is_empty() {
                if !out.ends_with([' ', '\n']) && !out.is_empty() {
                    out.push(' ');
                }
                return;
            }
            let decoded = html_escape::decode_html_entities(raw);
            // Collapse white space runs like a browser does.
            let mut last_space = out.ends_with([' ', '\n']) || out.is_empty();
            let lead = raw.len() - raw.trim_start().len();
            map.push((out.len(), from + lead));
            for c in decoded.chars() {
                if c.is_whitespace() {
                    if !last_space {
                        out.push(' ');
                        last_space = true;
                    }
                } else {
                    out.push(c);
                    last_space = false;
                }
            }
        };
    while i < bytes.len() {
        // `<` starts markup only before a letter, `/`, `!` or `?`, as in a browser: in
        // "a < b" it is text.
        let markup = bytes[i] == b'<'
            && bytes
                .get(i + 1)
                .is_some_and(|&b| b.is_ascii_alphabetic() || matches!(b, b'/' | b'!' | b'?'));
        if markup {
            if let Some(s) = run_start.take() {
                flush(&mut out, &mut map, s, i, pre_depth > 0);
            }
            if lower[i..].starts_with("<!--") {
                i = lower[i..]
                    .find("-->")
                    .map(|e| i + e + 3)
                    .unwrap_or(bytes.len());
                continue;
            }
            let end = tag_end(bytes, i);
            let tag = &lower[i + 1..end.saturating_sub(1).max(i + 1)];
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if !closing && SKIP.contains(&name.as_str()) && !tag.ends_with('/') {
                let close = format!("</{name}");
                i = lower[end..]
                    .find(&close)
                    .map(|e| {
                        let c = end + e;
                        lower[c..]
                            .find('>')
                            .map(|g| c + g + 1)
                            .unwrap_or(bytes.len())
                    })
                    .unwrap_or(bytes.len());
                continue;
            }
            let heading = name.len() == 2
                && name.starts_with('h')
                && name.as_bytes()[1].is_ascii_digit()
                && (b'1'..=b'6').contains(&name.as_bytes()[1]);
            if name == "pre" {
                while out.ends_with(' ') {
                    out.pop();
                }
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                if closing {
                    if pre_depth > 0 {
                        pre_depth -= 1;
                        out.push_str("```\n");
                    }
                } else {
                    pre_depth += 1;
                    out.push_str("```\n");
                }
                i = end;
                continue;
            }
            if pre_depth == 0 && !closing && (name == "td" || name == "th") {
                // Cells of a row stay on one line, as a table reads.
                while out.ends_with(' ') {
                    out.pop();
                }
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push_str(" | ");
                }
                i = end;
                continue;
            }
            if pre_depth == 0 && (heading || BLOCK.contains(&name.as_str())) {
                while out.ends_with(' ') {
                    out.pop();
                }
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                if heading {
                    if !closing {
                        if !out.is_empty() && !out.ends_with("\n\n") {
                            out.push('\n');
                        }
                        let level = (name.as_bytes()[1] - b'0') as usize;
                        out.push_str(&"#".repeat(level));
                        out.push(' ');
                    } else {
                        out.push('\n');
                    }
                } else if name == "p" && closing {
                    out.push('\n');
                }
            }
            i = end;
        } else {
            if run_start.is_none() {
                run_start = Some(i);
            }
            i += 1;
        }
    }
    if let Some(s) = run_start {
        flush(&mut out, &mut map, s, bytes.len(), pre_depth > 0);
    }
    if pre_depth > 0 && !out.ends_with("```\n") {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("```");
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    (out, map)
}

/// The end (one past `>`) of the tag starting at `start`. A `>` inside a quoted attribute
/// value (`title="a > b"`) does not end it; a quote left open falls back to the first `>`,
/// so that broken markup loses one tag, not the rest of the page.
pub(super) fn tag_end(bytes: &[u8], start: usize) -> usize {
    let first = || {
        bytes[start..]
            .iter()
            .position(|&b| b == b'>')
            .map_or(bytes.len(), |e| start + e + 1)
    };
    let mut quote: Option<u8> = None;
    let mut prev = 0u8; // last byte outside quotes that is not white space
    for (j, &b) in bytes.iter().enumerate().skip(start + 1) {
        match quote {
            Some(q) if b == q => {
                quote = None;
                prev = b;
            }
            Some(_) => {}
            None if matches!(b, b'"' | b'\'') && prev == b'=' => quote = Some(b),
            None if b == b'>' => return j + 1,
            None if !b.is_ascii_whitespace() => prev = b,
            None => {}
        }
    }
    first()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::*;

    #[test]
    fn html_keeps_visible_text_and_headings_only() {
        let src = "<html><head><title>T &amp; U</title><style>p{color:red}</style></head>\n<body><h1>Main</h1><p>Hello&nbsp;<b>bold</b> world &lt;3</p>\n<script>var x = '<p>no</p>';</script><!-- hidden --><h2>Sub</h2><div>Last   line</div></body></html>";
        let (text, map) = html_to_text(src);
        assert!(!text.contains("color"), "{text}");
        assert!(!text.contains("var x"), "{text}");
        assert!(!text.contains("hidden"), "{text}");
        assert!(text.contains("# Main"), "{text}");
        assert!(text.contains("## Sub"), "{text}");
        assert!(text.contains("bold world <3"), "{text}");
        assert!(text.contains("Last line"), "{text}");
        assert!(!map.is_empty());
        assert_eq!(html_title(src).as_deref(), Some("T & U"));
        // The map points back into the source: "Last" starts where the source has it.
        let doc = document_from_bytes(
            "a.html".into(),
            "a".into(),
            DocKind::Html,
            src.as_bytes(),
            0,
        )
        .unwrap();
        let off = doc.text.find("Last").unwrap();
        assert_eq!(
            &src[doc.source_offset(off)..doc.source_offset(off) + 4],
            "Last"
        );
        assert_eq!(doc.line_of(off), 3);
    }

    #[test]
    fn html_pre_tables_attributes_and_bare_angle_brackets() {
        let src = "<p>if a < b then</p><pre><code>fn f() {\n    g(&amp;x);\n}</code></pre>\
                   <table><tr><th>Name</th><th>Size</th></tr><tr><td>Sphagnum</td><td>10 cm</td></tr></table>\
                   <a title=\"a > b\" href='x>y'>link</a><p>it's <i>fine</i>, isn't it</p>";
        let (text, _) = html_to_text(src);
        assert!(text.contains("if a < b then"), "{text}");
        // Code keeps its lines and indentation, fenced like markdown code.
        assert!(text.contains("```\nfn f() {\n    g(&x);\n}\n```"), "{text}");
        assert!(text.contains("Name | Size\nSphagnum | 10 cm"), "{text}");
        assert!(text.contains("\nlink\n"), "{text}");
        assert!(!text.contains("b\""), "{text}");
        // Apostrophes in text are not attribute quotes.
        assert!(text.contains("it's fine, isn't it"), "{text}");
        // A quote left open loses one tag, not the rest of the page.
        let (text, _) = html_to_text("<a title=\"open>one</a><p>two</p>");
        assert!(text.contains("two"), "{text}");
    }

    #[test]
    fn malformed_html_degrades() {
        let (t, _) = html_to_text("<p>open <b>never closed <script>x");
        assert!(t.contains("open never closed"), "{t}");
        let (t, _) = html_to_text("<<<>>> & plain");
        assert!(t.contains("plain"));
    }
}
