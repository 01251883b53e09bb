//! Word documents: a `.docx` written here (a zip archive of WordprocessingML, deflated as
//! Word writes it) is indexed by paragraph, with its heading styles as the heading trail.

use std::io::Write;
use std::path::Path;

use pinpoint::{Engine, Mode, SearchRequest};

use crate::util::*;

/// A minimal `.docx`: content types and a body whose paragraphs are `(style, text)`.
fn write_docx(path: &Path, paragraphs: &[(&str, &str)]) {
    let mut body = String::new();
    for (style, text) in paragraphs {
        let props = if style.is_empty() {
            String::new()
        } else {
            format!(r#"<w:pPr><w:pStyle w:val="{style}"/></w:pPr>"#)
        };
        body.push_str(&format!(
            r#"<w:p>{props}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>"#
        ));
    }
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("[Content_Types].xml", deflated).unwrap();
    zip.write_all(br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>"#)
        .unwrap();
    zip.start_file("word/document.xml", deflated).unwrap();
    zip.write_all(document.as_bytes()).unwrap();
    zip.finish().unwrap();
}

#[test]
fn word_documents_are_indexed_by_paragraph_with_their_headings() {
    let src = tempfile::tempdir().unwrap();
    write_docx(
        &src.path().join("guide.docx"),
        &[
            ("Title", "Field Guide"),
            ("", "An introduction to small plants of the forest floor."),
            ("Heading1", "Mosses"),
            (
                "",
                "Mosses lack true roots and absorb water through their leaves.",
            ),
            ("Heading1", "Ferns"),
            ("", "Ferns reproduce by spores &amp; never by seeds."),
        ],
    );
    std::fs::write(
        src.path().join("old.docx"),
        b"\xd0\xcf\x11\xe0 a renamed .doc",
    )
    .unwrap();
    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert_eq!(r.added, 1, "{r:?}");
    assert_eq!(r.skipped.len(), 1);
    assert!(
        r.skipped[0]
            .reason
            .to_string()
            .contains("not a zip archive"),
        "{}",
        r.skipped[0].reason
    );
    let hits = e
        .search(&SearchRequest::new("spores seeds", 1).mode(Mode::Lexical))
        .unwrap();
    assert_eq!(hits[0].path, "guide.docx");
    // The Title paragraph names the document; Heading 1 sections are its chapters.
    assert_eq!(hits[0].heading.as_deref(), Some("Ferns"));
    let doc = &e.documents().unwrap()[0];
    assert_eq!(doc.title, "Field Guide");
    assert!(hits[0].text.contains("spores & never"), "{}", hits[0].text);
    // Locations are paragraph numbers: the Ferns section is paragraphs 5 and 6.
    assert_eq!((hits[0].line_start, hits[0].line_end), (5, 6));
    assert_eq!(pinpoint::ingest::DocKind::Docx.location_unit(), "paragraph");
}
