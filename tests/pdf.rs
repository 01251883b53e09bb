//! PDF files: the text layer is indexed page by page (a PDF's locations are pages), layout
//! line breaks and hyphenation are undone, and a damaged or text-less PDF is a skip reason
//! naming the file, never a panic.

use pinpoint::ingest::SkipReason;
use pinpoint::{Engine, Mode, SearchRequest};

use crate::util::*;

/// A folder with a two-page PDF, a one-page PDF, a text file, a damaged PDF and a PDF
/// whose only page has no text.
fn pdf_folder(dir: &std::path::Path) {
    // Pages long enough (~400 tokens each) that no chunk spans both of them.
    let survey = |page: usize| -> Vec<String> {
        (1..=25)
            .map(|i| format!("Survey {page}.{i} records the firn depth at station {i} in spring."))
            .collect()
    };
    let (one, two) = (survey(1), survey(2));
    let mut page1 = vec![
        "Glaciers form where snow accumulates faster",
        "than it melts, year after year.",
    ];
    page1.extend(one.iter().map(String::as_str));
    let mut page2: Vec<&str> = two.iter().map(String::as_str).collect();
    page2.extend([
        "Crevasses open where the ice flows over a steep bed-",
        "rock step and the surface is stretched.",
    ]);
    write_pdf(&dir.join("glaciers.pdf"), &[&page1, &page2]);
    write_pdf(
        &dir.join("kettle.pdf"),
        &[&["Water for green tea should be well below boiling."]],
    );
    std::fs::write(dir.join("notes.txt"), "Volcanoes erupt lava and ash.").unwrap();
    std::fs::write(
        dir.join("broken.pdf"),
        b"%PDF-1.5\n1 0 obj\n<< /Type /Catalog\nendobj\ntrailer\n<< /Root 9 0 R >>\n%%EOF",
    )
    .unwrap();
    write_pdf(&dir.join("scanned.pdf"), &[&[]]);
}

#[test]
fn pdf_pages_are_indexed_and_bad_pdfs_are_skipped_with_reasons() {
    let src = tempfile::tempdir().unwrap();
    let idx = tempfile::tempdir().unwrap();
    pdf_folder(src.path());
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert_eq!(r.added, 3, "{r:?}");
    let reason = |name: &str| {
        r.skipped
            .iter()
            .find(|s| s.path.ends_with(name))
            .map(|s| s.reason.clone())
    };
    assert!(
        matches!(reason("broken.pdf"), Some(SkipReason::BadPdf { .. })),
        "{:?}",
        r.skipped
    );
    assert_eq!(reason("scanned.pdf"), Some(SkipReason::NoText));
    assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);

    // "bedrock" exists only once the hyphenation at the line end is undone, on page 2.
    let lexical = |q: &str| {
        e.search(&SearchRequest::new(q, 1).mode(Mode::Lexical))
            .unwrap()
    };
    let hits = lexical("bedrock");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].path, "glaciers.pdf");
    assert_eq!((hits[0].line_start, hits[0].line_end), (2, 2));
    assert!(
        hits[0].text.contains("steep bedrock step"),
        "{}",
        hits[0].text
    );
    // Lines of a paragraph are joined with a space, not glued or split.
    let hits = lexical("snow accumulates");
    assert_eq!(hits[0].path, "glaciers.pdf");
    assert_eq!(hits[0].line_start, 1);
    assert!(
        hits[0].text.contains("faster than it melts"),
        "{}",
        hits[0].text
    );
    assert_eq!(lexical("green tea")[0].path, "kettle.pdf");
}

/// A page the reader cannot read fails the whole file, naming the page: never a document
/// indexed without its unreadable pages as if it were whole.
#[test]
fn an_unreadable_page_is_reported_not_dropped() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("torn.pdf");
    write_pdf(
        &path,
        &[&["The first page reads fine."], &["So would the second."]],
    );
    let mut doc = lopdf::Document::load(&path).unwrap();
    let pages = doc.get_pages();
    let second = doc
        .get_object_mut(pages[&2])
        .unwrap()
        .as_dict_mut()
        .unwrap();
    // Its font points at an object the file does not have.
    second.set(
        "Resources",
        lopdf::dictionary! { "Font" => lopdf::dictionary! { "F1" => (999, 0) } },
    );
    doc.save(&path).unwrap();

    let idx = tempfile::tempdir().unwrap();
    let mut e = Engine::create(idx.path(), fake_config()).unwrap();
    let r = e.add_folder(src.path()).unwrap();
    assert_eq!(r.added, 0, "{r:?}");
    match &r.skipped[..] {
        [s] => match &s.reason {
            SkipReason::BadPdf { error } => assert!(error.contains("page 2 of 2"), "{error}"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn cli_shows_pdf_pages_and_reports_bad_pdfs() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("docs");
    std::fs::create_dir(&src).unwrap();
    pdf_folder(&src);
    let model = real_model();
    let o = pinpoint(
        work.path(),
        &[
            "index",
            "docs",
            "--index",
            "idx",
            "--model",
            model.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("skipped 2"), "{out}");
    assert!(out.contains("broken.pdf: unreadable PDF"), "{out}");
    assert!(
        out.contains("scanned.pdf: PDF without a text layer"),
        "{out}"
    );

    let o = pinpoint(
        work.path(),
        &[
            "query",
            "why do crevasses open in glaciers",
            "--index",
            "idx",
            "-k",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("glaciers.pdf:p2-2 "), "{out}");

    let o = pinpoint(
        work.path(),
        &[
            "query",
            "temperature of tea water",
            "--index",
            "idx",
            "-k",
            "1",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let hit = &v["hits"][0];
    assert_eq!(hit["path"], "kettle.pdf");
    assert_eq!(hit["unit"], "page");
    assert_eq!(
        (hit["line_start"].as_u64(), hit["line_end"].as_u64()),
        (Some(1), Some(1))
    );
}
