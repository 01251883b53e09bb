//! PDF: the text layer, page by page; a PDF document's locations are pages.
//!
//! Not for: scanned pages without a text layer (skipped with a reason; no OCR).

use super::{DocKind, Document, SkipReason};

thread_local! {
    /// Set while this thread runs the PDF reader, whose panics become skip reasons.
    static IN_PDF_READER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A PDF's text layer as a document whose "lines" are pages.
pub(super) fn pdf_document(
    key: String,
    title: String,
    bytes: &[u8],
    mtime: i64,
) -> Result<Document, SkipReason> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(SkipReason::Empty);
    }
    let pages = pdf_pages(bytes)?;
    let mut text = String::new();
    let mut page_starts = Vec::with_capacity(pages.len());
    for page in &pages {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        page_starts.push(text.len());
        text.push_str(&clean_pdf_text(page));
    }
    if text.trim().is_empty() {
        return Err(SkipReason::NoText);
    }
    Ok(Document::packaged(
        key,
        title,
        DocKind::Pdf,
        bytes,
        mtime,
        text,
        page_starts,
    ))
}

/// The text of each page. The reader (`pdf-extract`) panics on some malformed files instead
/// of returning an error; a panic is caught and reported as [`SkipReason::BadPdf`] like any
/// other parse failure, and the panic hook is wrapped once so that such a caught panic does
/// not print a crash message in the middle of an indexing run (other panics print as before).
pub(super) fn pdf_pages(bytes: &[u8]) -> Result<Vec<String>, SkipReason> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PDF_READER.with(|f| f.get()) {
                previous(info);
            }
        }));
    });
    let at = std::cell::Cell::new((0u32, 0u32));
    IN_PDF_READER.with(|f| f.set(true));
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_pdf_pages(bytes, &at)));
    IN_PDF_READER.with(|f| f.set(false));
    run.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into());
        let (page, pages) = at.get();
        let place = if page > 0 {
            format!("page {page} of {pages}: ")
        } else {
            String::new()
        };
        Err(SkipReason::BadPdf {
            error: format!("{place}the reader failed: {msg}"),
        })
    })
}

/// Reads page after page, noting in `at` which one it is on. Driven here rather than by
/// `pdf_extract::extract_text_from_mem_by_pages`, which stops quietly at the first page it
/// cannot read and would index a truncated document as if it were whole; a page that fails
/// fails the file, with its number.
pub(super) fn read_pdf_pages(
    bytes: &[u8],
    at: &std::cell::Cell<(u32, u32)>,
) -> Result<Vec<String>, SkipReason> {
    let bad = |error: String| SkipReason::BadPdf { error };
    let mut doc = pdf_extract::Document::load_mem(bytes).map_err(|e| bad(e.to_string()))?;
    if doc.is_encrypted() {
        // Most encrypted PDFs only restrict editing or printing and open with the empty
        // user password; the others cannot be read without one.
        doc.decrypt("")
            .map_err(|e| bad(format!("encrypted, and not with an empty password ({e})")))?;
    }
    let n = doc.get_pages().len() as u32;
    let mut pages = Vec::with_capacity(n as usize);
    for page in 1..=n {
        at.set((page, n));
        let mut text = String::new();
        let mut out = pdf_extract::PlainTextOutput::new(&mut text);
        pdf_extract::output_doc_page(&doc, &mut out, page)
            .map_err(|e| bad(format!("page {page} of {n}: {e}")))?;
        pages.push(text);
    }
    Ok(pages)
}

/// Undoes the layout in a PDF page's text: a text layer breaks lines where the typesetter
/// did, and words at hyphens. Joining them gives BM25 whole words and the chunker whole
/// sentences (a line break would otherwise end a sentence unit). A blank line stays a
/// paragraph break.
pub(super) fn clean_pdf_text(page: &str) -> String {
    let page = page.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(page.len());
    for para in page.split("\n\n") {
        let mut joined = String::with_capacity(para.len());
        for line in para.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let hyphenated = joined.ends_with('-')
                && joined[..joined.len() - 1]
                    .chars()
                    .next_back()
                    .is_some_and(char::is_alphabetic)
                && line.chars().next().is_some_and(char::is_lowercase);
            if hyphenated {
                joined.pop();
            } else if !joined.is_empty() {
                joined.push(' ');
            }
            joined.push_str(line);
        }
        if joined.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&joined);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::*;

    #[test]
    fn pdf_layout_is_undone() {
        let page = "Crevasses open where the ice flows over a steep bed-\r\nrock step  \nand it is stretched.\n\n\n2 Results\nA well-\nKnown co-\n\nop.";
        assert_eq!(
            clean_pdf_text(page),
            "Crevasses open where the ice flows over a steep bedrock step and it is stretched.\n\n2 Results A well- Known co-\n\nop."
        );
    }

    #[test]
    fn bad_pdfs_are_reasons_not_panics() {
        let (a, b) = (String::from("x.pdf"), String::from("x"));
        for bytes in [
            &b"%PDF-1.7\n"[..],
            b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
            b"not a pdf at all",
            &[0xff; 64],
        ] {
            let r = document_from_bytes(a.clone(), b.clone(), DocKind::Pdf, bytes, 0);
            assert!(
                matches!(r, Err(SkipReason::BadPdf { .. }) | Err(SkipReason::NoText)),
                "{r:?}"
            );
        }
        assert_eq!(
            document_from_bytes(a, b, DocKind::Pdf, b" \n", 0).unwrap_err(),
            SkipReason::Empty
        );
    }
}
