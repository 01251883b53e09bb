//! Finding and reading documents: folder walking, type detection, text extraction and
//! content hashing.
//!
//! Every file either becomes a [`Document`] or a [`Skipped`] entry with a reason; nothing is
//! dropped silently and nothing panics on odd input (binary, invalid UTF-8, empty, huge,
//! unreadable). The walk uses the `ignore` crate (ripgrep's walker) so `.gitignore`,
//! `.ignore` and hidden files are handled the way developers expect.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::models::hex;

/// The kind of a document, which decides how it is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DocKind {
    /// Prose without markup.
    Text,
    /// Markdown (ATX headings give the heading trail).
    Markdown,
    /// HTML, reduced to its visible text (headings kept as markdown headings).
    Html,
    /// Source code: split at blank lines and line ends, never mid-line.
    Code,
    /// PDF, reduced to its text layer. Its location unit is the page: a PDF document's
    /// "source lines" ([`Document::line_of`], a hit's line range) are page numbers.
    Pdf,
    /// Word (Office Open XML, `.docx`), reduced to its paragraphs (heading styles kept as
    /// markdown headings). It has no lines: its location unit is the paragraph.
    Docx,
    /// PowerPoint (`.pptx`): each slide's title as a markdown heading, then its text. Its
    /// location unit is the slide.
    Pptx,
    /// Jupyter notebook (`.ipynb`, JSON): markdown cells as they are, code cells fenced,
    /// outputs left out. Its location unit is the cell.
    Notebook,
}

impl DocKind {
    /// The kind for a file name, or `None` when the type is not indexed.
    pub fn from_path(path: &Path) -> Option<DocKind> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        let ext = match name.rsplit_once('.') {
            Some((_, e)) => e.to_string(),
            None => {
                return match name.as_str() {
                    "readme" | "license" | "changelog" | "authors" | "notice" | "copying" => {
                        Some(DocKind::Text)
                    }
                    "makefile" | "dockerfile" => Some(DocKind::Code),
                    _ => None,
                }
            }
        };
        Some(match ext.as_str() {
            "txt" | "text" | "rst" | "adoc" | "org" => DocKind::Text,
            "md" | "markdown" | "mdx" => DocKind::Markdown,
            "html" | "htm" | "xhtml" => DocKind::Html,
            "pdf" => DocKind::Pdf,
            "docx" => DocKind::Docx,
            "pptx" => DocKind::Pptx,
            "ipynb" => DocKind::Notebook,
            "rs" | "py" | "js" | "mjs" | "cjs" | "jsx" | "ts" | "tsx" | "go" | "c" | "h" | "cc"
            | "cpp" | "cxx" | "hpp" | "hh" | "java" | "kt" | "scala" | "cs" | "rb" | "php"
            | "swift" | "sh" | "bash" | "zsh" | "sql" | "lua" | "toml" | "yaml" | "yml"
            | "json" | "ini" | "cfg" | "proto" | "r" | "jl" | "hs" | "ml" | "ex" | "exs"
            | "erl" | "clj" | "dart" | "vue" | "svelte" | "css" | "scss" | "xml" => DocKind::Code,
            _ => return None,
        })
    }
}

impl Document {
    /// A document extracted from a packaged format (PDF, Office, notebook): its locations
    /// are the units (pages, paragraphs, slides, cells) starting at `unit_starts` in `text`,
    /// not lines of the source bytes.
    fn packaged(
        key: String,
        title: String,
        kind: DocKind,
        bytes: &[u8],
        mtime: i64,
        text: String,
        unit_starts: Vec<usize>,
    ) -> Document {
        Document {
            key,
            title,
            kind,
            source_line_starts: unit_starts,
            offset_map: Vec::new(),
            hash: hash_bytes(bytes),
            size: bytes.len() as u64,
            mtime,
            text,
        }
    }
}

impl DocKind {
    /// What a location (a hit's `line_start`..`line_end`) counts in this kind of file.
    pub fn location_unit(self) -> &'static str {
        match self {
            DocKind::Pdf => "page",
            DocKind::Docx => "paragraph",
            DocKind::Pptx => "slide",
            DocKind::Notebook => "cell",
            _ => "line",
        }
    }

    /// Written before a location's numbers (`paper.pdf:p3-4`, `notes.docx:¶2-5`), so that a
    /// page or paragraph number is not read as a line number.
    pub fn location_prefix(self) -> &'static str {
        match self {
            DocKind::Pdf => "p",
            DocKind::Docx => "¶",
            DocKind::Pptx => "slide",
            DocKind::Notebook => "cell",
            _ => "",
        }
    }
}

/// A document ready to be chunked.
#[derive(Debug, Clone)]
pub struct Document {
    /// Stable key: the path relative to the indexed root with `/` separators, or the
    /// external id given to `Engine::add_document`.
    pub key: String,
    /// Title used in front of every chunk of this document (file name or given title).
    pub title: String,
    /// How to split it.
    pub kind: DocKind,
    /// Extracted text.
    pub text: String,
    /// Byte offsets where source lines start (line numbers are reported against the source
    /// file, not the extracted text). For a PDF: where each page starts in the extracted
    /// text, so that locations are page numbers.
    pub source_line_starts: Vec<usize>,
    /// Sparse map from extracted-text offsets to source offsets, sorted by the former; empty
    /// means the text *is* the source.
    pub offset_map: Vec<(usize, usize)>,
    /// sha256 of the source bytes, hex.
    pub hash: String,
    /// Source size in bytes.
    pub size: u64,
    /// Modification time (seconds since the epoch), 0 when unknown.
    pub mtime: i64,
}

impl Document {
    /// A document built from text given by a program (no file behind it).
    pub fn from_text(key: &str, title: &str, text: &str) -> Document {
        Document {
            key: key.to_string(),
            title: title.to_string(),
            kind: DocKind::Text,
            source_line_starts: line_starts(text),
            offset_map: Vec::new(),
            hash: hash_bytes(text.as_bytes()),
            size: text.len() as u64,
            mtime: 0,
            text: text.to_string(),
        }
    }

    /// The source byte offset of an offset in the extracted text.
    pub fn source_offset(&self, off: usize) -> usize {
        if self.offset_map.is_empty() {
            return off;
        }
        let i = self.offset_map.partition_point(|&(o, _)| o <= off);
        if i == 0 {
            return 0;
        }
        let (o, s) = self.offset_map[i - 1];
        s + (off - o)
    }

    /// 1-based source line of an offset in the extracted text.
    pub fn line_of(&self, off: usize) -> u32 {
        let src = self.source_offset(off);
        self.source_line_starts
            .partition_point(|&s| s <= src)
            .max(1) as u32
    }
}

/// Byte offsets at which lines start.
pub fn line_starts(text: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    v
}

/// sha256 of bytes, hex.
pub fn hash_bytes(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// Why a file was not indexed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// Contains NUL bytes.
    Binary,
    /// Not valid UTF-8.
    InvalidUtf8 {
        /// First invalid byte.
        offset: usize,
    },
    /// Starts with a UTF-16 byte-order mark but is not valid UTF-16 (an odd length or an
    /// unpaired surrogate).
    InvalidUtf16 {
        /// Byte offset of the first invalid code unit.
        offset: usize,
    },
    /// Zero bytes or only white space.
    Empty,
    /// Larger than the configured limit.
    TooLarge {
        /// File size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Could not be read (permissions, vanished, I/O error).
    Unreadable {
        /// The OS message.
        error: String,
    },
    /// A symbolic link; links are not followed so that nothing outside the root is read.
    Symlink,
    /// A PDF the reader could not parse (damaged, encrypted or using unsupported features).
    BadPdf {
        /// What the reader said.
        error: String,
    },
    /// A PDF without a text layer: scanned pages are images, and OCR is out of scope.
    NoText,
    /// An `.ipynb` that is not a notebook (not JSON, or no cells).
    BadNotebook {
        /// What is wrong.
        error: String,
    },
    /// A `.docx` or `.pptx` that is not a readable Office document (not a zip archive, e.g.
    /// encrypted or an old `.doc`/`.ppt` renamed; a missing part; or a part too large).
    BadOffice {
        /// What is wrong.
        error: String,
    },
    /// Its name gives the same index key as another file's (possible only for names that
    /// are not UTF-8, see [`key_for`]); the first in path order is indexed.
    SameKey {
        /// The key both names give.
        key: String,
    },
    /// Not a regular file: a named pipe, socket or device. Reading one could block for
    /// ever or never end, so it is reported instead.
    NotRegular,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Binary => write!(f, "binary file"),
            SkipReason::InvalidUtf8 { offset } => write!(f, "invalid UTF-8 at byte {offset}"),
            SkipReason::InvalidUtf16 { offset } => {
                write!(
                    f,
                    "invalid UTF-16 (after its byte-order mark) at byte {offset}"
                )
            }
            SkipReason::Empty => write!(f, "empty file"),
            SkipReason::TooLarge { size, limit } => {
                write!(f, "too large ({size} bytes, limit {limit})")
            }
            SkipReason::Unreadable { error } => write!(f, "unreadable: {error}"),
            SkipReason::Symlink => write!(f, "symbolic link (not followed)"),
            SkipReason::BadPdf { error } => write!(f, "unreadable PDF: {error}"),
            SkipReason::NoText => write!(f, "PDF without a text layer (scanned pages?)"),
            SkipReason::BadOffice { error } => write!(f, "unreadable Office document: {error}"),
            SkipReason::BadNotebook { error } => write!(f, "unreadable notebook: {error}"),
            SkipReason::NotRegular => write!(f, "not a regular file (pipe, socket or device)"),
            SkipReason::SameKey { key } => {
                write!(
                    f,
                    "another file's name gives the same index key {key:?}; rename one"
                )
            }
        }
    }
}

/// A file that was not indexed, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: SkipReason,
}

/// Settings of the walk and of extraction.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    /// Files larger than this are skipped with [`SkipReason::TooLarge`].
    pub max_file_bytes: u64,
    /// The same for PDF, Word and notebook files, whose size is mostly fonts, images and
    /// outputs: a 16 MiB PDF may hold less text than a 1 MiB text file.
    pub max_pdf_bytes: u64,
    /// Also index hidden files and folders.
    pub hidden: bool,
    /// A folder sync commits after about this many bytes of changed files (or a quarter of
    /// what the index holds, when more), so that an interrupted run keeps what it embedded:
    /// 8 MiB is a few minutes of CPU embedding.
    pub checkpoint_bytes: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_file_bytes: 16 * 1024 * 1024,
            max_pdf_bytes: 256 * 1024 * 1024,
            hidden: false,
            checkpoint_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What a walk found: candidate files of a supported type, and files skipped on the way.
#[derive(Debug, Default)]
pub struct WalkResult {
    /// Files of a supported type, sorted by path.
    pub files: Vec<PathBuf>,
    /// Entries that could not be visited or were links.
    pub skipped: Vec<Skipped>,
    /// Files whose type is not indexed.
    pub unsupported: usize,
}

/// Walks `root`, honouring `.gitignore`/`.ignore` (even outside a git repository) and
/// skipping hidden entries unless configured otherwise. Symbolic links are reported, not
/// followed, so nothing outside `root` is ever read.
pub fn walk(root: &Path, cfg: &IngestConfig) -> WalkResult {
    let mut out = WalkResult::default();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(!cfg.hidden)
        .git_ignore(true)
        .git_exclude(true)
        .ignore(true)
        .require_git(false)
        .follow_links(false)
        .build();
    for entry in walker {
        match entry {
            Ok(e) => {
                let Some(ft) = e.file_type() else { continue };
                if ft.is_symlink() {
                    out.skipped.push(Skipped {
                        path: e.path().to_path_buf(),
                        reason: SkipReason::Symlink,
                    });
                    continue;
                }
                if ft.is_dir() {
                    continue;
                }
                if !ft.is_file() {
                    out.skipped.push(Skipped {
                        path: e.into_path(),
                        reason: SkipReason::NotRegular,
                    });
                    continue;
                }
                if DocKind::from_path(e.path()).is_some() {
                    out.files.push(e.into_path());
                } else {
                    out.unsupported += 1;
                }
            }
            Err(err) => {
                let path = match &err {
                    ignore::Error::WithPath { path, .. } => path.clone(),
                    _ => root.to_path_buf(),
                };
                out.skipped.push(Skipped {
                    path,
                    reason: SkipReason::Unreadable {
                        error: err.to_string(),
                    },
                });
            }
        }
    }
    out.files.sort();
    out
}

/// The key of `path` under `root`: relative and `/`-separated. UTF-8 names are kept as
/// they are; in other names (possible on Unix) each byte that is not UTF-8 is written
/// `\xNN`, so that two names differing only there keep distinct keys (replacing them with
/// U+FFFD made `a\xff.txt` and `a\xfe.txt` one document, indexed in turn).
pub fn key_for(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| name_for_key(c.as_os_str()))
        .collect::<Vec<_>>()
        .join("/")
}

fn name_for_key(name: &std::ffi::OsStr) -> String {
    if let Some(s) = name.to_str() {
        return s.to_string();
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let mut out = String::new();
        for chunk in name.as_bytes().utf8_chunks() {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02X}"));
            }
        }
        out
    }
    #[cfg(not(unix))]
    {
        name.to_string_lossy().into_owned()
    }
}

/// File metadata used to decide whether a file must be read again.
pub fn stat(path: &Path) -> std::io::Result<(u64, i64)> {
    let md = std::fs::metadata(path)?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    Ok((md.len(), mtime))
}

/// Reads and extracts one file.
pub fn read_document(root: &Path, path: &Path, cfg: &IngestConfig) -> Result<Document, SkipReason> {
    let unreadable = |e: std::io::Error| SkipReason::Unreadable {
        error: e.to_string(),
    };
    let kind = DocKind::from_path(path).unwrap_or(DocKind::Text);
    let limit = match kind {
        // Their bytes are mostly fonts, images and cell outputs, not text.
        DocKind::Pdf | DocKind::Docx | DocKind::Pptx | DocKind::Notebook => cfg.max_pdf_bytes,
        _ => cfg.max_file_bytes,
    };
    let (size, mtime) = stat(path).map_err(unreadable)?;
    if size > limit {
        return Err(SkipReason::TooLarge { size, limit });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > limit {
        // Grew between stat and read.
        return Err(SkipReason::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    let key = key_for(root, path);
    let title = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| key.clone());
    document_from_bytes(key, title, kind, &bytes, mtime)
}

/// Builds a document from raw bytes: binary and encoding checks, then extraction.
pub fn document_from_bytes(
    key: String,
    title: String,
    kind: DocKind,
    bytes: &[u8],
    mtime: i64,
) -> Result<Document, SkipReason> {
    if kind == DocKind::Pdf {
        return pdf_document(key, title, bytes, mtime);
    }
    if kind == DocKind::Docx {
        return docx_document(key, title, bytes, mtime);
    }
    if kind == DocKind::Pptx {
        return pptx_document(key, title, bytes, mtime);
    }
    if kind == DocKind::Notebook {
        return notebook_document(key, title, bytes, mtime);
    }
    // UTF-16 text (Windows tools write it, with a byte-order mark) holds NUL bytes in its
    // ASCII range, so it is decoded before the binary check would reject it. Locations stay
    // right: line numbers are counted in the decoded text, which has the same lines.
    let decoded = decode_utf16_with_bom(bytes)?;
    let src = match &decoded {
        Some(text) if text.contains('\0') => return Err(SkipReason::Binary),
        Some(text) => text.as_str(),
        None if bytes.iter().take(8192).any(|&b| b == 0) => return Err(SkipReason::Binary),
        None => match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                // A NUL byte past the sniffed prefix is still binary, not text.
                if bytes.contains(&0) {
                    return Err(SkipReason::Binary);
                }
                return Err(SkipReason::InvalidUtf8 {
                    offset: e.valid_up_to(),
                });
            }
        },
    };
    let bom = if src.starts_with('\u{feff}') { 3 } else { 0 };
    let body = &src[bom..];
    if body.trim().is_empty() {
        return Err(SkipReason::Empty);
    }
    let (text, mut offset_map) = match kind {
        DocKind::Html => html_to_text(body),
        _ => (body.to_string(), Vec::new()),
    };
    if bom > 0 {
        if offset_map.is_empty() {
            offset_map.push((0, bom));
        } else {
            offset_map.iter_mut().for_each(|(_, s)| *s += bom);
        }
    }
    if text.trim().is_empty() {
        return Err(SkipReason::Empty);
    }
    let title = if kind == DocKind::Html {
        html_title(body).unwrap_or(title)
    } else {
        title
    };
    Ok(Document {
        key,
        title,
        kind,
        source_line_starts: line_starts(src),
        offset_map,
        hash: hash_bytes(bytes),
        size: bytes.len() as u64,
        mtime,
        text,
    })
}

/// Decodes `bytes` as UTF-16 when they start with a UTF-16 byte-order mark (little- or
/// big-endian); `None` for anything else. The mark itself is dropped.
fn decode_utf16_with_bom(bytes: &[u8]) -> Result<Option<String>, SkipReason> {
    let from: fn([u8; 2]) -> u16 = match bytes {
        [0xFF, 0xFE, ..] => u16::from_le_bytes,
        [0xFE, 0xFF, ..] => u16::from_be_bytes,
        _ => return Ok(None),
    };
    let body = &bytes[2..];
    let units = body.chunks_exact(2).map(|p| from([p[0], p[1]]));
    let mut text = String::with_capacity(body.len() / 2);
    let mut read = 0; // code units consumed so far
    for c in char::decode_utf16(units) {
        match c {
            Ok(c) => {
                text.push(c);
                read += c.len_utf16();
            }
            Err(_) => {
                return Err(SkipReason::InvalidUtf16 {
                    offset: 2 + 2 * read,
                })
            }
        }
    }
    if body.len() % 2 == 1 {
        return Err(SkipReason::InvalidUtf16 {
            offset: bytes.len() - 1,
        });
    }
    Ok(Some(text))
}

/// A PDF's text layer as a document whose "lines" are pages.
fn pdf_document(
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

/// A Jupyter notebook as text: markdown and raw cells as they are, code cells fenced in
/// the notebook's language (so the chunker keeps their lines and a `# comment` is not a
/// heading), outputs left out (images, tables of numbers: noise for retrieval, and most of
/// a notebook's bytes). Locations count cells. Reads nbformat 4 (`cells`, `source`) and 3
/// (`worksheets`, `input`).
fn notebook_document(
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
struct NotebookJson {
    /// nbformat 4.
    cells: Option<Vec<CellJson>>,
    /// nbformat 3.
    worksheets: Option<Vec<WorksheetJson>>,
    metadata: Option<NotebookMeta>,
}

#[derive(Deserialize)]
struct WorksheetJson {
    #[serde(default)]
    cells: Vec<CellJson>,
}

#[derive(Deserialize, Default)]
struct NotebookMeta {
    language_info: Option<LanguageInfo>,
    kernelspec: Option<KernelSpec>,
}

#[derive(Deserialize)]
struct LanguageInfo {
    name: Option<String>,
}

#[derive(Deserialize)]
struct KernelSpec {
    language: Option<String>,
}

#[derive(Deserialize)]
struct CellJson {
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
enum SourceJson {
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

/// Largest XML part read out of an Office file: the archive's own size is capped, but a
/// small archive can inflate to gigabytes (a zip bomb).
const MAX_XML_PART_BYTES: u64 = 256 * 1024 * 1024;

type Archive<'a> = zip::ZipArchive<std::io::Cursor<&'a [u8]>>;

/// Opens an Office file (a zip archive of XML parts).
fn open_office(bytes: &[u8]) -> Result<Archive<'_>, SkipReason> {
    zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| SkipReason::BadOffice {
        error: format!("not a zip archive (encrypted, or an old binary format renamed?): {e}"),
    })
}

/// One XML part of an Office archive as text, at most [`MAX_XML_PART_BYTES`] inflated.
fn office_part(archive: &mut Archive<'_>, name: &str) -> Result<String, SkipReason> {
    let bad = |error: String| SkipReason::BadOffice { error };
    let mut part = archive
        .by_name(name)
        .map_err(|e| bad(format!("no {name}: {e}")))?;
    if part.size() > MAX_XML_PART_BYTES {
        return Err(bad(format!(
            "{name} inflates to {} bytes (limit {MAX_XML_PART_BYTES})",
            part.size()
        )));
    }
    let mut xml = String::new();
    part.by_ref()
        .take(MAX_XML_PART_BYTES + 1)
        .read_to_string(&mut xml)
        .map_err(|e| bad(format!("{name}: {e}")))?;
    if xml.len() as u64 > MAX_XML_PART_BYTES {
        return Err(bad(format!("{name} is larger than it says")));
    }
    Ok(xml)
}

/// The tags of an XML text in order, each with the text before it: `(text, tag)` where
/// `tag` is what stands between `<` and `>`. Office parts are flat enough that this scan is
/// all their text extraction needs.
fn xml_tags(xml: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut i = 0;
    std::iter::from_fn(move || {
        let lt = i + xml[i..].find('<')?;
        let gt = lt + xml[lt..].find('>')?;
        let text = &xml[i..lt];
        i = gt + 1;
        Some((text, &xml[lt + 1..gt]))
    })
}

/// A tag's name: `w:p` for `<w:p w:rsidR="..">`, `<w:p/>` and `</w:p>` alike.
fn tag_name(tag: &str) -> &str {
    tag.trim_start_matches('/')
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap_or("")
}

/// A PowerPoint deck as text: per slide, in presentation order, its title as a markdown
/// heading (`Slide N` when it has none, so that a slide never takes the previous one's
/// heading trail) and one line per paragraph of its other text. Locations count slides.
/// Speaker notes are not read.
fn pptx_document(
    key: String,
    title: String,
    bytes: &[u8],
    mtime: i64,
) -> Result<Document, SkipReason> {
    let mut archive = open_office(bytes)?;
    let slides = pptx_slide_order(&mut archive)?;
    let mut text = String::new();
    let mut starts = Vec::with_capacity(slides.len());
    for (n, name) in slides.iter().enumerate() {
        let xml = office_part(&mut archive, name)?;
        let slide = pptx_slide_text(&xml);
        if !text.is_empty() {
            text.push('\n');
        }
        starts.push(text.len());
        let heading = slide.title.unwrap_or_else(|| format!("Slide {}", n + 1));
        text.push_str(&format!("# {heading}\n"));
        for line in slide.lines {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    if text.trim().is_empty() {
        return Err(SkipReason::Empty);
    }
    Ok(Document::packaged(
        key,
        title,
        DocKind::Pptx,
        bytes,
        mtime,
        text,
        starts,
    ))
}

/// The slide parts in presentation order: `ppt/presentation.xml` lists slide relationship
/// ids, `ppt/_rels/presentation.xml.rels` maps them to parts (a moved slide keeps its file
/// name, so file order is not slide order). Without them: slide files by number.
fn pptx_slide_order(archive: &mut Archive<'_>) -> Result<Vec<String>, SkipReason> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[at..].split('"').next()?.to_string())
    };
    let ordered = (|| -> Option<Vec<String>> {
        let pres = office_part(archive, "ppt/presentation.xml").ok()?;
        let rels = office_part(archive, "ppt/_rels/presentation.xml.rels").ok()?;
        let targets: std::collections::HashMap<String, String> = xml_tags(&rels)
            .filter(|(_, t)| tag_name(t) == "Relationship")
            .filter_map(|(_, t)| Some((attr(t, "Id")?, attr(t, "Target")?)))
            .collect();
        let order: Vec<String> = xml_tags(&pres)
            .filter(|(_, t)| tag_name(t) == "p:sldId")
            .filter_map(|(_, t)| targets.get(&attr(t, "r:id")?).cloned())
            .map(|target| match target.strip_prefix('/') {
                Some(abs) => abs.to_string(),
                None => format!("ppt/{target}"),
            })
            .collect();
        (!order.is_empty()).then_some(order)
    })();
    if let Some(order) = ordered {
        return Ok(order);
    }
    let mut numbered: Vec<(u32, String)> = archive
        .file_names()
        .filter_map(|n| {
            let n = n.ok()?;
            let num = n.strip_prefix("ppt/slides/slide")?.strip_suffix(".xml")?;
            Some((num.parse().ok()?, n.to_string()))
        })
        .collect();
    if numbered.is_empty() {
        return Err(SkipReason::BadOffice {
            error: "no slides (ppt/slides/slideN.xml)".into(),
        });
    }
    numbered.sort();
    Ok(numbered.into_iter().map(|(_, n)| n).collect())
}

/// A slide's text: the title placeholder's paragraphs joined, the other paragraphs (text
/// runs `<a:t>`, breaks) one per line.
#[derive(Debug, Default, PartialEq)]
struct SlideText {
    title: Option<String>,
    lines: Vec<String>,
}

fn pptx_slide_text(xml: &str) -> SlideText {
    let mut out = SlideText::default();
    let mut para = String::new();
    let mut title_parts: Vec<String> = Vec::new();
    let (mut in_text, mut in_title_shape) = (false, false);
    for (before, tag) in xml_tags(xml) {
        if in_text {
            para.push_str(&html_escape::decode_html_entities(before));
        }
        let closing = tag.starts_with('/');
        match tag_name(tag) {
            "a:t" => in_text = !closing && !tag.ends_with('/'),
            "a:br" => para.push(' '),
            "p:sp" if !closing => in_title_shape = false,
            "p:ph" => {
                in_title_shape = tag.contains("type=\"title\"") || tag.contains("type=\"ctrTitle\"")
            }
            "a:p" if closing => {
                let line = para.trim();
                if !line.is_empty() {
                    if in_title_shape {
                        title_parts.push(line.to_string());
                    } else {
                        out.lines.push(line.to_string());
                    }
                }
                para.clear();
            }
            "p:sp" if closing => {
                if in_title_shape && out.title.is_none() && !title_parts.is_empty() {
                    out.title = Some(title_parts.join(" "));
                }
                title_parts.clear();
                in_title_shape = false;
            }
            _ => {}
        }
    }
    out
}

/// A Word document as text: one line per paragraph, heading styles as markdown headings
/// (so the chunker's heading trail works), locations counted in paragraphs.
fn docx_document(
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
fn heading_style_level(tag: &str) -> Option<usize> {
    let val = tag.split("w:val=\"").nth(1)?.split('"').next()?;
    let val = val.to_ascii_lowercase();
    if val == "title" {
        return Some(1);
    }
    let n: usize = val.strip_prefix("heading")?.trim().parse().ok()?;
    (1..=9).contains(&n).then_some(n.min(6))
}

thread_local! {
    /// Set while this thread runs the PDF reader, whose panics become skip reasons.
    static IN_PDF_READER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The text of each page. The reader (`pdf-extract`) panics on some malformed files instead
/// of returning an error; a panic is caught and reported as [`SkipReason::BadPdf`] like any
/// other parse failure, and the panic hook is wrapped once so that such a caught panic does
/// not print a crash message in the middle of an indexing run (other panics print as before).
fn pdf_pages(bytes: &[u8]) -> Result<Vec<String>, SkipReason> {
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
fn read_pdf_pages(
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
fn clean_pdf_text(page: &str) -> String {
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

fn html_title(src: &str) -> Option<String> {
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
fn tag_end(bytes: &[u8], start: usize) -> usize {
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

    /// A `.pptx` whose slide files are in the reverse of presentation order.
    fn pptx_bytes() -> Vec<u8> {
        use std::io::Write;
        let slide = |title: Option<&str>, body: &[&str]| {
            let mut x = String::from(r#"<p:sld xmlns:a="a" xmlns:p="p"><p:cSld><p:spTree>"#);
            if let Some(t) = title {
                x.push_str(&format!(
                    r#"<p:sp><p:nvSpPr><p:nvPr><p:ph type="title"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:r><a:t>{t}</a:t></a:r></a:p></p:txBody></p:sp>"#
                ));
            }
            x.push_str("<p:sp><p:txBody>");
            for line in body {
                x.push_str(&format!("<a:p><a:r><a:t>{line}</a:t></a:r></a:p>"));
            }
            x.push_str("</p:txBody></p:sp></p:spTree></p:cSld></p:sld>");
            x
        };
        let parts = [
            (
                "ppt/presentation.xml",
                r#"<p:presentation xmlns:p="p" xmlns:r="r"><p:sldIdLst><p:sldId id="256" r:id="rId3"/><p:sldId id="257" r:id="rId2"/></p:sldIdLst></p:presentation>"#.to_string(),
            ),
            (
                "ppt/_rels/presentation.xml.rels",
                r#"<Relationships><Relationship Id="rId2" Type="slide" Target="slides/slide1.xml"/><Relationship Id="rId3" Type="slide" Target="slides/slide2.xml"/></Relationships>"#.to_string(),
            ),
            ("ppt/slides/slide1.xml", slide(None, &["Costs rose by 4 &amp; 5 percent"])),
            ("ppt/slides/slide2.xml", slide(Some("Quarterly review"), &["Sales grew", "Churn fell"])),
        ];
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, body) in parts {
            zip.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn pptx_slides_in_presentation_order_with_titles() {
        let d = document_from_bytes("d.pptx".into(), "d".into(), DocKind::Pptx, &pptx_bytes(), 0)
            .unwrap();
        assert_eq!(
            d.text,
            "# Quarterly review\nSales grew\nChurn fell\n\n# Slide 2\nCosts rose by 4 & 5 percent"
        );
        assert_eq!(d.line_of(d.text.find("Churn").unwrap()), 1);
        assert_eq!(d.line_of(d.text.find("Costs").unwrap()), 2);
        assert_eq!(DocKind::Pptx.location_unit(), "slide");
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

    #[test]
    fn malformed_html_degrades() {
        let (t, _) = html_to_text("<p>open <b>never closed <script>x");
        assert!(t.contains("open never closed"), "{t}");
        let (t, _) = html_to_text("<<<>>> & plain");
        assert!(t.contains("plain"));
    }

    #[test]
    fn bad_bytes_get_reasons() {
        let k = || ("k".to_string(), "k".to_string());
        let (a, b) = k();
        assert_eq!(
            document_from_bytes(a, b, DocKind::Text, b"ab\0cd", 0).unwrap_err(),
            SkipReason::Binary
        );
        let (a, b) = k();
        assert_eq!(
            document_from_bytes(a, b, DocKind::Text, b"ok \xff\xfe bad", 0).unwrap_err(),
            SkipReason::InvalidUtf8 { offset: 3 }
        );
        let (a, b) = k();
        assert_eq!(
            document_from_bytes(a, b, DocKind::Text, b"  \n\t ", 0).unwrap_err(),
            SkipReason::Empty
        );
        let (a, b) = k();
        let d =
            document_from_bytes(a, b, DocKind::Text, "\u{feff}line1\nline2".as_bytes(), 0).unwrap();
        assert_eq!(d.text, "line1\nline2");
        assert_eq!(d.line_of(d.text.find("line2").unwrap()), 2);
    }

    /// UTF-16 as Windows tools write it: the byte-order mark says the endianness.
    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        let mut out = if big_endian {
            vec![0xFE, 0xFF]
        } else {
            vec![0xFF, 0xFE]
        };
        for u in text.encode_utf16() {
            out.extend(if big_endian {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            });
        }
        out
    }

    #[test]
    fn utf16_with_a_byte_order_mark_is_text() {
        let text = "caf\u{e9} menu\r\nline two \u{1F600} emoji\nthird line";
        for be in [false, true] {
            let d = document_from_bytes("k".into(), "k".into(), DocKind::Text, &utf16(text, be), 0)
                .unwrap();
            assert_eq!(d.text, text, "big endian: {be}");
            assert_eq!(d.line_of(d.text.find("third").unwrap()), 3);
            assert_eq!(d.size as usize, 2 + 2 * text.encode_utf16().count());
        }
        // Without the mark the NUL bytes of UTF-16 still mean "not text".
        let bare = &utf16("plain", false)[2..];
        let e = document_from_bytes("k".into(), "k".into(), DocKind::Text, bare, 0).unwrap_err();
        assert_eq!(e, SkipReason::Binary);
        // An odd length (BOM, "ab", one byte of "c"), and a lone surrogate after "ab".
        let mut odd = utf16("abc", false);
        odd.pop();
        let e = document_from_bytes("k".into(), "k".into(), DocKind::Text, &odd, 0).unwrap_err();
        assert_eq!(e, SkipReason::InvalidUtf16 { offset: 6 }); // the dangling byte
        let mut lone = utf16("ab", false);
        lone.extend([0x00, 0xD8, 0x41, 0x00]);
        let e = document_from_bytes("k".into(), "k".into(), DocKind::Text, &lone, 0).unwrap_err();
        assert_eq!(e, SkipReason::InvalidUtf16 { offset: 6 });
        // UTF-32 also starts with FF FE; its NUL code units make it binary, not garbage text.
        let utf32: Vec<u8> = [0xFEFFu32, 'h' as u32, 'i' as u32]
            .iter()
            .flat_map(|c| c.to_le_bytes())
            .collect();
        let e = document_from_bytes("k".into(), "k".into(), DocKind::Text, &utf32, 0).unwrap_err();
        assert_eq!(e, SkipReason::Binary);
    }

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

    #[test]
    fn kinds_by_extension() {
        assert_eq!(
            DocKind::from_path(Path::new("a/b.MD")),
            Some(DocKind::Markdown)
        );
        assert_eq!(DocKind::from_path(Path::new("x.rs")), Some(DocKind::Code));
        assert_eq!(DocKind::from_path(Path::new("x.htm")), Some(DocKind::Html));
        assert_eq!(
            DocKind::from_path(Path::new("Paper.PDF")),
            Some(DocKind::Pdf)
        );
        assert_eq!(DocKind::from_path(Path::new("x.png")), None);
        assert_eq!(DocKind::from_path(Path::new("README")), Some(DocKind::Text));
    }

    #[test]
    fn size_limits_apply_per_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("big.txt"), "word ".repeat(20)).unwrap();
        std::fs::write(root.join("big.pdf"), "%PDF-1.4 ".repeat(20)).unwrap();
        let cfg = IngestConfig {
            max_file_bytes: 64,
            max_pdf_bytes: 1024,
            ..Default::default()
        };
        assert_eq!(
            read_document(root, &root.join("big.txt"), &cfg).unwrap_err(),
            SkipReason::TooLarge {
                size: 100,
                limit: 64
            }
        );
        // 180 bytes: over the text limit, under the PDF one, so it is read (and found bad).
        assert!(matches!(
            read_document(root, &root.join("big.pdf"), &cfg),
            Err(SkipReason::BadPdf { .. })
        ));
        let cfg = IngestConfig {
            max_pdf_bytes: 100,
            ..cfg
        };
        assert_eq!(
            read_document(root, &root.join("big.pdf"), &cfg).unwrap_err(),
            SkipReason::TooLarge {
                size: 180,
                limit: 100
            }
        );
    }

    #[test]
    fn walk_respects_gitignore_hidden_and_reports_links() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::write(r.join(".gitignore"), "ignored/\n*.log\n").unwrap();
        std::fs::create_dir_all(r.join("ignored")).unwrap();
        std::fs::create_dir_all(r.join(".hidden")).unwrap();
        std::fs::create_dir_all(r.join("sub")).unwrap();
        std::fs::write(r.join("ignored/a.txt"), "x").unwrap();
        std::fs::write(r.join(".hidden/b.txt"), "x").unwrap();
        std::fs::write(r.join("sub/c.md"), "x").unwrap();
        std::fs::write(r.join("d.txt"), "x").unwrap();
        std::fs::write(r.join("e.png"), "x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", r.join("link.txt")).unwrap();
        // A named pipe: reading it would block for ever, so it is reported, not read.
        #[cfg(unix)]
        let fifo = std::process::Command::new("mkfifo")
            .arg(r.join("pipe.txt"))
            .status()
            .is_ok_and(|s| s.success());
        let w = walk(r, &IngestConfig::default());
        let keys: Vec<String> = w.files.iter().map(|p| key_for(r, p)).collect();
        assert_eq!(keys, vec!["d.txt", "sub/c.md"]);
        assert_eq!(w.unsupported, 1);
        #[cfg(unix)]
        {
            let mut reasons: Vec<(String, SkipReason)> = w
                .skipped
                .iter()
                .map(|s| (key_for(r, &s.path), s.reason.clone()))
                .collect();
            reasons.sort_by(|a, b| a.0.cmp(&b.0));
            let mut expected = vec![("link.txt".to_string(), SkipReason::Symlink)];
            if fifo {
                expected.push(("pipe.txt".to_string(), SkipReason::NotRegular));
            }
            assert_eq!(reasons, expected);
        }
    }
}
