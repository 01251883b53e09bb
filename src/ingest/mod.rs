//! Finding and reading documents: folder walking, type detection, text extraction and
//! content hashing.
//!
//! Every file either becomes a [`Document`] or a [`Skipped`] entry with a reason; nothing is
//! dropped silently and nothing panics on odd input (binary, invalid UTF-8, empty, huge,
//! unreadable). The walk uses the `ignore` crate (ripgrep's walker) so `.gitignore`,
//! `.ignore` and hidden files are handled the way developers expect.

//!
//! One file per concern: the walk ([`walk`]), text decoding (`decode`), and one file per
//! format that needs extraction (`html`, `pdf`, `docx`, `pptx`, `notebook`, with `office`
//! for what Word and PowerPoint share). Plain text, markdown and code need none: they are
//! decoded and handed to the chunker, which reads markdown headings and front matter.
//! Adding a packaged format means a file and a line in the `EXTRACTORS` table.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::models::hex;

mod decode;
mod docx;
pub mod generated;
mod html;
mod notebook;
mod office;
mod pdf;
mod pptx;
mod walk;

pub use docx::{docx_text, DocxText};
pub use html::html_to_text;
pub use walk::{key_for, stat, walk, WalkResult};

/// How a packaged format becomes a document: key, title, bytes, mtime.
type Extract = fn(String, String, &[u8], i64) -> Result<Document, SkipReason>;

/// The formats extracted by a reader of their own; every other kind is text, decoded here.
const EXTRACTORS: &[(DocKind, Extract)] = &[
    (DocKind::Pdf, pdf::pdf_document),
    (DocKind::Docx, docx::docx_document),
    (DocKind::Pptx, pptx::pptx_document),
    (DocKind::Notebook, notebook::notebook_document),
];

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
            collection: String::new(),
            front_matter: Default::default(),
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
    /// Modification time (ns since the epoch), 0 when unknown.
    pub mtime: i64,
    /// The collection it belongs to (`""`: the unnamed one; see [`crate::collection`]).
    pub collection: String,
    /// Its YAML front matter (markdown), for filters ([`crate::collection::front_matter`]).
    pub front_matter: std::collections::BTreeMap<String, Vec<String>>,
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
            collection: String::new(),
            front_matter: Default::default(),
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
    /// A generated, minified or lock file ([`generated`]): no reader wants it as an answer.
    /// `IngestConfig::include_generated` indexes it anyway.
    Generated {
        /// The rule that caught it.
        rule: generated::Generated,
    },
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
            SkipReason::Generated { rule } => {
                write!(f, "{rule} (index it with --include-generated)")
            }
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
    /// Also index generated, minified and lock files ([`generated`]), which are skipped
    /// with a reason by default.
    pub include_generated: bool,
    /// Index only the files of this shard of the folder ([`crate::shard`]; `None`: all).
    pub shard: Option<crate::shard::Shard>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_file_bytes: 16 * 1024 * 1024,
            max_pdf_bytes: 256 * 1024 * 1024,
            hidden: false,
            checkpoint_bytes: 8 * 1024 * 1024,
            include_generated: false,
            shard: None,
        }
    }
}

/// Reads and extracts one file.
pub fn read_document(root: &Path, path: &Path, cfg: &IngestConfig) -> Result<Document, SkipReason> {
    let unreadable = |e: std::io::Error| SkipReason::Unreadable {
        error: e.to_string(),
    };
    let kind = DocKind::from_path(path).unwrap_or(DocKind::Text);
    if !cfg.include_generated {
        // By name first: a 5 MB search index is not even read.
        if let Some(rule) = generated::by_name(path) {
            return Err(SkipReason::Generated { rule });
        }
    }
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
    let doc = document_from_bytes(key, title, kind, &bytes, mtime)?;
    if !cfg.include_generated {
        if let Some(rule) = generated::by_content(kind, &doc.text) {
            return Err(SkipReason::Generated { rule });
        }
    }
    Ok(doc)
}

/// Builds a document from raw bytes: binary and encoding checks, then extraction.
pub fn document_from_bytes(
    key: String,
    title: String,
    kind: DocKind,
    bytes: &[u8],
    mtime: i64,
) -> Result<Document, SkipReason> {
    if let Some((_, extract)) = EXTRACTORS.iter().find(|(k, _)| *k == kind) {
        return extract(key, title, bytes, mtime);
    }
    // UTF-16 text (Windows tools write it, with a byte-order mark) holds NUL bytes in its
    // ASCII range, so it is decoded before the binary check would reject it. Locations stay
    // right: line numbers are counted in the decoded text, which has the same lines.
    let decoded = decode::decode_utf16_with_bom(bytes)?;
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
        DocKind::Html => html::html_to_text(body),
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
        html::html_title(body).unwrap_or(title)
    } else {
        title
    };
    let front_matter = if kind == DocKind::Markdown {
        crate::collection::front_matter(&text)
    } else {
        Default::default()
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
        collection: String::new(),
        front_matter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
