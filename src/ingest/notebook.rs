//! Jupyter notebooks (`.ipynb`): markdown cells as they are, code cells fenced in the
//! notebook's language, outputs left out; locations count cells.
//!
//! Not for: executing cells or reading outputs.

use serde::Deserialize;

use super::{DocKind, Document, SkipReason};

/// A Jupyter notebook as text: markdown and raw cells as they are, code cells fenced in
/// the notebook's language (so the chunker keeps their lines and a `# comment` is not a
/// heading), outputs left out (images, tables of numbers: noise for retrieval, and most of
/// a notebook's bytes). Locations count cells. Reads nbformat 4 (`cells`, `source`) and 3
/// (`worksheets`, `input`).
pub(super) fn notebook_document(
    key: String,
    title: String,
    bytes: &[u8],
    mtime: i64,
) -> Result<Document, SkipReason> {
    let bad = |error: String| SkipReason::BadNotebook { error };
    // Typed, so that outputs (most of the bytes) are skipped while parsing, not kept.
    let nb: NotebookJson =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a notebook: {e}")))?;
    let cells: Vec<CellJson> = match (nb.cells, nb.worksheets) {
        (Some(cells), _) => cells,
        (None, Some(sheets)) => sheets.into_iter().flat_map(|w| w.cells).collect(),
        (None, None) => return Err(bad("no cells (not a Jupyter notebook?)".into())),
    };
    let meta = nb.metadata.unwrap_or_default();
    let language = meta
        .language_info
        .and_then(|l| l.name)
        .or_else(|| meta.kernelspec.and_then(|k| k.language))
        .unwrap_or_default();
    let mut text = String::new();
    let mut starts = Vec::new();
    for cell in cells {
        let source = cell.source.or(cell.input).map(SourceJson::joined);
        let source = source.as_deref().unwrap_or("").trim_end();
        // Every cell counts, so that `cell 3` is the notebook's third cell.
        starts.push(text.len());
        if source.trim().is_empty() {
            continue;
        }
        if cell.cell_type == "code" {
            text.push_str(&format!("```{language}\n{source}\n```\n\n"));
        } else {
            text.push_str(source);
            text.push_str("\n\n");
        }
    }
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    if text.is_empty() {
        return Err(SkipReason::Empty);
    }
    // Cells past the end of the trimmed text (empty last cells) start at its end.
    starts.iter_mut().for_each(|s| *s = (*s).min(text.len()));
    Ok(Document::packaged(
        key,
        title,
        DocKind::Notebook,
        bytes,
        mtime,
        text,
        starts,
    ))
}

/// The parts of a notebook file that are read; everything else (outputs, metadata) is
/// skipped by the parser.
#[derive(Deserialize)]
pub(super) struct NotebookJson {
    /// nbformat 4.
    cells: Option<Vec<CellJson>>,
    /// nbformat 3.
    worksheets: Option<Vec<WorksheetJson>>,
    metadata: Option<NotebookMeta>,
}

#[derive(Deserialize)]
pub(super) struct WorksheetJson {
    #[serde(default)]
    cells: Vec<CellJson>,
}

#[derive(Deserialize, Default)]
pub(super) struct NotebookMeta {
    language_info: Option<LanguageInfo>,
    kernelspec: Option<KernelSpec>,
}

#[derive(Deserialize)]
pub(super) struct LanguageInfo {
    name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct KernelSpec {
    language: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct CellJson {
    #[serde(default)]
    cell_type: String,
    /// nbformat 4.
    source: Option<SourceJson>,
    /// nbformat 3's code cells.
    input: Option<SourceJson>,
}

/// A cell's text: one string, or a list of lines that keep their newlines.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum SourceJson {
    One(String),
    Lines(Vec<String>),
}

impl SourceJson {
    fn joined(self) -> String {
        match self {
            SourceJson::One(s) => s,
            SourceJson::Lines(lines) => lines.concat(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ingest::*;

    #[test]
    fn notebooks_keep_cells_fence_code_and_drop_outputs() {
        let nb = r###"{"nbformat": 4, "metadata": {"language_info": {"name": "python"}},
          "cells": [
            {"cell_type": "markdown", "source": ["# Tide analysis\n", "Load the gauge data."]},
            {"cell_type": "code", "source": "# a comment, not a heading\nimport pandas as pd",
             "outputs": [{"output_type": "stream", "text": ["SECRET OUTPUT"]}]},
            {"cell_type": "code", "source": []},
            {"cell_type": "markdown", "source": "## Fit\nHarmonic fit of the M2 constituent."}
          ]}"###;
        let d = document_from_bytes(
            "t.ipynb".into(),
            "t".into(),
            DocKind::Notebook,
            nb.as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!(
            d.text,
            "# Tide analysis\nLoad the gauge data.\n\n```python\n# a comment, not a heading\nimport pandas as pd\n```\n\n## Fit\nHarmonic fit of the M2 constituent."
        );
        assert!(!d.text.contains("SECRET"));
        // Cells are the locations; the empty third cell still counts.
        assert_eq!(d.line_of(d.text.find("import").unwrap()), 2);
        assert_eq!(d.line_of(d.text.find("Harmonic").unwrap()), 4);
        // The chunker sees the markdown headings, not the code comment.
        let c = crate::chunk::chunk_document(
            &d,
            &crate::embed::whitespace_spans,
            &crate::chunk::ChunkConfig::default(),
        );
        let heads: Vec<_> = c.iter().filter_map(|x| x.heading.clone()).collect();
        assert_eq!(heads, vec!["Tide analysis", "Tide analysis > Fit"]);

        // nbformat 3: worksheets, and code in `input`.
        let v3 = r#"{"worksheets": [{"cells": [{"cell_type": "code", "input": ["x = 1"]}]}]}"#;
        let d = document_from_bytes(
            "o.ipynb".into(),
            "o".into(),
            DocKind::Notebook,
            v3.as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!(d.text, "```\nx = 1\n```");
        for (bytes, why) in [
            (&b"{not json"[..], "not a notebook"),
            (&br#"{"metadata": {}}"#[..], "no cells"),
        ] {
            let e = document_from_bytes("b.ipynb".into(), "b".into(), DocKind::Notebook, bytes, 0);
            assert!(
                matches!(&e, Err(SkipReason::BadNotebook { error }) if error.contains(why)),
                "{e:?}"
            );
        }
    }
}
