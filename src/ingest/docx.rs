//! Word (`.docx`): one line per paragraph, heading styles as markdown headings; locations
//! count paragraphs.
//!
//! Not for: the old binary `.doc` (skipped with a reason).

use super::office::{office_part, open_office, tag_name, xml_tags};
use super::{DocKind, Document, SkipReason};

/// A Word document as text: one line per paragraph, heading styles as markdown headings
/// (so the chunker's heading trail works), locations counted in paragraphs.
pub(super) fn docx_document(
    key: String,
    title: String,
    bytes: &[u8],
    mtime: i64,
) -> Result<Document, SkipReason> {
    let mut archive = open_office(bytes)?;
    let xml = office_part(&mut archive, "word/document.xml")?;
    let body = docx_text(&xml);
    if body.text.trim().is_empty() {
        return Err(SkipReason::Empty);
    }
    // Like an HTML <title>: the paragraph styled "Title" names the document; locations
    // count paragraphs, whatever line breaks they hold.
    Ok(Document::packaged(
        key,
        body.title.unwrap_or(title),
        DocKind::Docx,
        bytes,
        mtime,
        body.text,
        body.paragraph_starts,
    ))
}

/// The paragraphs of a WordprocessingML body: the text of `<w:t>` runs, `<w:tab/>` and
/// `<w:br/>`, one line per `<w:p>`, and a `HeadingN` or `Title` paragraph style written as
/// a markdown heading. Deleted text (`<w:delText>`) and field codes (`<w:instrText>`) are
/// not text a reader sees, and are left out.
pub fn docx_text(xml: &str) -> DocxText {
    let mut out = String::with_capacity(xml.len() / 4);
    let mut title = None;
    let mut starts = Vec::new();
    let mut para = String::new();
    let mut level: Option<usize> = None;
    let mut is_title = false;
    let mut in_text = false;
    // Paragraph properties hold tab-stop definitions (`<w:tabs><w:tab .../>`), not tabs.
    let mut in_props = false;
    // A table row's cells become one line (`a | b`), as a table reads; nested tables fold
    // into their outer row.
    let mut row_depth = 0usize;
    let mut row: Vec<String> = Vec::new();
    for (before, tag) in xml_tags(xml) {
        if in_text {
            para.push_str(&html_escape::decode_html_entities(before));
        }
        let closing = tag.starts_with('/');
        let self_closing = tag.ends_with('/');
        match (tag_name(tag), closing) {
            ("w:t", true) => in_text = false,
            ("w:pPr", true) => in_props = false,
            ("w:tr", true) if row_depth > 0 => {
                row_depth -= 1;
                if row_depth == 0 && !row.is_empty() {
                    starts.push(out.len());
                    out.push_str(&row.join(" | "));
                    out.push('\n');
                    row.clear();
                }
            }
            ("w:p", true) => {
                let line = para.trim();
                if row_depth > 0 {
                    if !line.is_empty() {
                        row.push(line.replace('\n', " "));
                    }
                } else if !line.is_empty() {
                    if is_title && title.is_none() {
                        title = Some(line.to_string());
                    }
                    if let Some(l) = level {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        starts.push(out.len());
                        out.push_str(&"#".repeat(l));
                        out.push(' ');
                    } else {
                        starts.push(out.len());
                    }
                    out.push_str(line);
                    out.push('\n');
                }
                para.clear();
                level = None;
                is_title = false;
            }
            ("w:t", false) => in_text = !self_closing,
            ("w:pPr", false) => in_props = !self_closing,
            ("w:tab", false) if !in_props => para.push('\t'),
            ("w:br" | "w:cr", false) => para.push('\n'),
            ("w:tr", false) if !self_closing => row_depth += 1,
            ("w:p", false) => {
                para.clear();
                level = None;
                is_title = false;
            }
            ("w:pStyle", false) => {
                level = heading_style_level(tag);
                is_title = tag.contains(r#"w:val="Title""#);
            }
            _ => {}
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if starts.is_empty() {
        starts.push(0);
    }
    DocxText {
        text: out,
        title,
        paragraph_starts: starts,
    }
}

/// What [`docx_text`] extracts.
#[derive(Debug, Clone, PartialEq)]
pub struct DocxText {
    /// One line per paragraph (a heading after a blank line, as markdown writes it).
    pub text: String,
    /// The first paragraph styled `Title`.
    pub title: Option<String>,
    /// Where each non-empty paragraph starts in `text`: its locations count paragraphs.
    pub paragraph_starts: Vec<usize>,
}

/// The heading level of a `<w:pStyle w:val="...">` tag: `Heading1`..`Heading9` (capped at
/// markdown's 6) or `Title` (1).
pub(super) fn heading_style_level(tag: &str) -> Option<usize> {
    let val = tag.split("w:val=\"").nth(1)?.split('"').next()?;
    let val = val.to_ascii_lowercase();
    if val == "title" {
        return Some(1);
    }
    let n: usize = val.strip_prefix("heading")?.trim().parse().ok()?;
    (1..=9).contains(&n).then_some(n.min(6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::*;

    #[test]
    fn docx_paragraphs_headings_and_what_is_not_text() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:pPr><w:pStyle w:val="Title"/></w:pPr><w:r><w:t>Field Guide</w:t></w:r></w:p>
<w:p><w:pPr><w:pStyle w:val="Heading2"/><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr><w:r><w:t>Ferns &amp; Mosses</w:t></w:r></w:p>
<w:p><w:r><w:t xml:space="preserve">Ferns reproduce by </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>spores</w:t></w:r><w:r><w:tab/><w:t>not seeds.</w:t></w:r></w:p>
<w:p><w:r><w:delText>deleted words</w:delText></w:r><w:r><w:instrText> PAGE </w:instrText></w:r><w:r><w:t>Kept</w:t></w:r><w:r><w:br/><w:t>after a break</w:t></w:r></w:p>
<w:p/>
<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Month</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Task</w:t></w:r></w:p><w:p/></w:tc></w:tr>
<w:tr><w:tc><w:p><w:r><w:t>March</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Inspect</w:t></w:r></w:p><w:p><w:r><w:t>brood</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
</w:body></w:document>"#;
        let d = docx_text(xml);
        assert_eq!(
            d.text,
            "# Field Guide\n\n## Ferns & Mosses\nFerns reproduce by spores\tnot seeds.\nKept\nafter a break\nMonth | Task\nMarch | Inspect | brood"
        );
        assert_eq!(d.title.as_deref(), Some("Field Guide"));
        // Four paragraphs and two table rows; a break inside a paragraph starts none.
        let starts: Vec<&str> = d
            .paragraph_starts
            .iter()
            .map(|&i| &d.text[i..i + 4])
            .collect();
        assert_eq!(starts, vec!["# Fi", "## F", "Fern", "Kept", "Mont", "Marc"]);
        assert_eq!(heading_style_level(r#"w:pStyle w:val="Heading9""#), Some(6));
        assert_eq!(heading_style_level(r#"w:pStyle w:val="BodyText""#), None);
    }

    #[test]
    fn bad_docx_files_get_reasons() {
        let k = || ("k.docx".to_string(), "k".to_string());
        let (a, b) = k();
        let e = document_from_bytes(a, b, DocKind::Docx, b"\xd0\xcf\x11\xe0 old doc", 0);
        assert!(
            matches!(&e, Err(SkipReason::BadOffice { error }) if error.contains("not a zip")),
            "{e:?}"
        );
    }
}
