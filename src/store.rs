//! Plain files of one index generation: the chunk store, the vector file, the document
//! table, and the manifest that names them.
//!
//! The chunk store and the vector file are memory-mapped on open and decoded lazily: a query
//! touches only the records of its hits, which keeps a cold `pinpoint query` dominated by
//! model load, not by index load. Each file has a magic header; the manifest records every
//! file's size and crc32 so damage is detected and reported with the file's name.
//!
//! Not for: deciding what a generation holds or when it is committed ([`crate::engine`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::chunk::ChunkConfig;
use crate::error::{Error, IoContext, Result};
use crate::models::ModelSpec;

/// Version of the on-disk format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

const CHUNK_MAGIC: &[u8; 8] = b"PPCHUNK1";
const VEC_MAGIC: &[u8; 8] = b"PPVECT01";
const DOCS_MAGIC: &[u8; 8] = b"PPDOCS01";
const VEC_HEADER: usize = 32;

/// One chunk as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Stable id, unique over the life of the index.
    pub id: u64,
    /// Key of the document (relative path or external id).
    pub doc: String,
    /// Byte range in the document's extracted text.
    pub byte_range: (u64, u64),
    /// 1-based inclusive source line range.
    pub line_range: (u32, u32),
    /// Heading trail.
    pub heading: Option<String>,
    /// Chunk text.
    pub text: String,
}

/// One document as stored in the document table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocRecord {
    /// Relative path or external id.
    pub key: String,
    /// Title used in front of its chunks.
    pub title: String,
    /// sha256 of the source bytes.
    pub hash: String,
    /// Source size.
    pub size: u64,
    /// Source modification time (ns since the epoch; 0 for programmatic documents).
    pub mtime: i64,
    /// Ids of its chunks, ascending.
    pub chunks: Vec<u64>,
    /// Added through `Engine::add_document` (not from a folder walk): folder syncs
    /// never delete it.
    #[serde(default)]
    pub external: bool,
}

/// Size and checksum of one file of a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSum {
    /// Path relative to the index folder.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// crc32 of the contents.
    pub crc32: u32,
}

/// Counts kept in the manifest (for `stats` without opening anything else).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Documents.
    pub documents: u64,
    /// Live chunks.
    pub chunks: u64,
}

/// The manifest: which generation is current and how it was built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Current generation.
    pub generation: u64,
    /// Embedding model the vectors come from.
    pub model: ModelSpec,
    /// Folder the model was loaded from (used when a query names no model).
    pub model_dir: String,
    /// Chunk sizing used.
    pub chunking: ChunkConfig,
    /// Counts.
    pub counts: Counts,
    /// Next free chunk id.
    pub next_chunk_id: u64,
    /// Basename of the HNSW dump of this generation, when one was built.
    #[serde(default)]
    pub hnsw: Option<String>,
    /// Files of this generation with their checksums.
    #[serde(default)]
    pub files: Vec<FileSum>,
    /// Default search settings chosen by `pinpoint tune` (free-form, validated by the engine).
    #[serde(default)]
    pub search_defaults: Option<serde_json::Value>,
    /// Whether each generation keeps token codes (`late/{gen}.tok`, see [`crate::late`]).
    /// Indexes written before they existed read as `false`.
    #[serde(default)]
    pub token_codes: bool,
    /// Dense neighbours per chunk written into the lexical index's neighbour field
    /// (`near/{gen}.bin`, see [`crate::near`]); 0 for none. Indexes written before it
    /// existed read as 0.
    #[serde(default)]
    pub neighbours: usize,
    /// Whether the folder sync that wrote this generation indexed generated files
    /// ([`crate::ingest::generated`]); a sync with the other setting reads every file again,
    /// so that turning it off removes them and turning it on adds them.
    #[serde(default)]
    pub include_generated: bool,
    /// Arithmetic of the encoder that embedded this index's passages
    /// ([`crate::quant::Precision`]); queries are embedded the same way. Indexes written
    /// before it existed were f32.
    #[serde(default = "crate::quant::Precision::legacy")]
    pub precision: crate::quant::Precision,
    /// The named sources of this index ([`crate::collection`]); empty for an index that
    /// mirrors one folder and was written before collections existed.
    #[serde(default)]
    pub collections: Vec<crate::collection::CollectionInfo>,
    /// Whether each generation keeps a document metadata table (`meta/{gen}.bin`:
    /// collection and front matter per document). Indexes written before it read as
    /// `false`: one unnamed collection, no front matter.
    #[serde(default)]
    pub doc_meta: bool,
    /// Whether the chunks are kept in [`crate::segment`]s (`segments`); an index written
    /// before segments keeps one file of each kind per generation and reads as one segment.
    #[serde(default)]
    pub segmented: bool,
    /// The segments of this generation, in chunk-id order.
    #[serde(default)]
    pub segments: Vec<crate::segment::SegmentMeta>,
    /// The number the next new segment gets.
    #[serde(default)]
    pub next_segment: u64,
    /// The files of the previous generation: kept on disk for the readers that still have
    /// it open, removed by the commit after this one.
    #[serde(default)]
    pub previous_files: Vec<String>,
    /// The generation whose document, metadata and neighbour tables are the base of this
    /// generation's ([`crate::delta`]); `None`: this generation's own (every index written
    /// before deltas).
    #[serde(default)]
    pub table_base: Option<u64>,
    /// The generations whose table deltas apply on top of the base, oldest first.
    #[serde(default)]
    pub table_deltas: Vec<u64>,
    /// The vectors graph searches walk ([`crate::sq8`]); chosen at creation.
    #[serde(default)]
    pub vector_precision: crate::sq8::VectorPrecision,
    /// Bits of a token code: the token vectors' projection on this many fixed directions
    /// ([`crate::late::TokenProjection`]); 0 for an index whose codes are the signs of
    /// every dimension (every index written before projections). Chosen at creation.
    #[serde(default)]
    pub token_bits: usize,
    /// What each token code stands for ([`crate::late::TokenUnits`]): a word piece in
    /// every index written before words. Chosen at creation.
    #[serde(default)]
    pub token_units: crate::late::TokenUnits,
    /// How tokens near their piece's shared code are stored ([`crate::late::share`]);
    /// `None`: every token keeps its own code (every index written before sharing). Chosen
    /// at creation.
    #[serde(default)]
    pub token_sharing: Option<crate::late::Sharing>,
}

impl Manifest {
    /// The widths of the segments' rows: vectors and token codes.
    pub fn dims(&self) -> crate::segment::Dims {
        crate::segment::Dims {
            vectors: self.model.dim,
            codes: if self.token_bits > 0 {
                self.token_bits
            } else {
                self.model.dim
            },
        }
    }

    /// The projection token vectors are coded through (`None`: signs of every dimension,
    /// or no token codes).
    pub fn token_projection(&self) -> Option<crate::late::TokenProjection> {
        (self.token_codes && self.token_bits > 0)
            .then(|| crate::late::TokenProjection::new(self.model.dim, self.token_bits))
    }
    /// The generation of the tables' base and those of their deltas, oldest first.
    pub fn table_chain(&self) -> (u64, &[u64]) {
        (
            self.table_base.unwrap_or(self.generation),
            &self.table_deltas,
        )
    }

    /// Reads and validates a manifest file.
    pub fn read(path: &Path) -> Result<Manifest> {
        let s = std::fs::read_to_string(path).at(path)?;
        let v: serde_json::Value =
            serde_json::from_str(&s).map_err(|e| Error::corrupt(path, format!("not JSON: {e}")))?;
        let version = v.get("format_version").and_then(|x| x.as_u64());
        match version {
            Some(x) if x == FORMAT_VERSION as u64 => {}
            Some(x) => {
                return Err(Error::IncompatibleIndex {
                    path: path.to_path_buf(),
                    what: format!(
                        "format version {x}, this pinpoint reads {FORMAT_VERSION}; rebuild with `pinpoint index <FOLDER> --index <INDEX> --rebuild`"
                    ),
                })
            }
            None => {
                return Err(Error::IncompatibleIndex {
                    path: path.to_path_buf(),
                    what: "no format_version: not a pinpoint manifest".into(),
                })
            }
        }
        serde_json::from_value(v).map_err(|e| Error::corrupt(path, format!("bad manifest: {e}")))
    }

    /// Writes the manifest to `path` durably (temp file, fsync, rename, fsync folder).
    pub fn write_atomic(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::invalid("manifest", e.to_string()))?;
        write_atomic(path, &json)
    }

    /// Writes the manifest to `path` (no rename), fsynced.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::invalid("manifest", e.to_string()))?;
        write_synced(path, &json)
    }
}

/// Writes `bytes` to `path` and fsyncs it.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).at(path)?;
    f.write_all(bytes).at(path)?;
    f.sync_all().at(path)
}

/// Replaces `path` atomically: write a temp file, fsync, rename over, fsync the folder.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path).at(path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a folder so that renames and new names in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|f| f.sync_all()).at(dir)?;
    }
    Ok(())
}

/// crc32 and size of a file.
///
/// Read through a buffer rather than a map: a mapped file's pages count in this process's
/// resident memory until the map is dropped, and a commit that folds a million chunks
/// checksums 4-5 GB of new segment files (vectors, token codes, chunks) at once; mapped,
/// they were the build's peak (`bench --scale`: mapped 3.2 GB in the "tables" stage).
pub(crate) fn file_sum(root: &Path, rel: &str) -> Result<FileSum> {
    use std::io::Read;
    let path = root.join(rel);
    let mut f = File::open(&path).at(&path)?;
    let len = f.metadata().at(&path)?.len();
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).at(&path),
        };
        hasher.update(&buf[..n]);
    }
    Ok(FileSum {
        path: rel.to_string(),
        size: len,
        crc32: hasher.finalize(),
    })
}

fn bincode_cfg() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Lets the kernel drop `m`'s pages from this process's resident memory (a file of a
/// generation, mapped read-only by [`map_file`]): the next read faults them in again.
pub(crate) fn release_map_pages(m: &Mmap) {
    // SAFETY: the mapping is a read-only shared map of a file this crate never writes
    // after creating it; MADV_DONTNEED on such a map only discards pages, which later
    // reads fault in again from the unchanged file. No reference into the map is
    // invalidated.
    let _ = unsafe { m.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
}

pub(crate) fn map_file(path: &Path) -> Result<Mmap> {
    let f = File::open(path).at(path)?;
    // SAFETY: generation files are immutable once written (a new generation writes new
    // files), so the mapped bytes do not change under us; truncation by a third party is
    // outside the contract and is caught by the size checks of the readers.
    unsafe { Mmap::map(&f) }.at(path)
}

/// One record of a chunk store being written ([`write_chunk_entries`]).
pub(crate) enum ChunkEntry<'a> {
    /// A record to encode (a commit's new chunk).
    Record(&'a ChunkRecord),
    /// A record's id and its bytes as another store holds them ([`ChunkStore::encoded`]):
    /// a merge copies the chunks it carries over without decoding them.
    Encoded(u64, &'a [u8]),
}

/// Writes a chunk store file of `records` (tests build stores this way).
#[cfg(test)]
pub(crate) fn write_chunks(path: &Path, records: &[ChunkRecord]) -> Result<()> {
    let entries: Vec<ChunkEntry> = records.iter().map(ChunkEntry::Record).collect();
    write_chunk_entries(path, &entries)
}

/// Writes a chunk store file from `entries` (ids ascending), fsynced. Only the records to
/// encode are held encoded in memory; carried ones stream from their mapped store (at a
/// million chunks a merge held both the decoded and the re-encoded records, ~0.9 GB).
pub(crate) fn write_chunk_entries(path: &Path, entries: &[ChunkEntry<'_>]) -> Result<()> {
    let mut encoded = Vec::new();
    // Per entry: where a record's bytes lie in `encoded` (empty for a carried one).
    let mut spans = Vec::with_capacity(entries.len());
    for e in entries {
        let start = encoded.len();
        if let ChunkEntry::Record(r) = e {
            bincode::serde::encode_into_std_write(r, &mut encoded, bincode_cfg())
                .map_err(|e| Error::invalid("chunk record", e.to_string()))?;
        }
        spans.push(start..encoded.len());
    }
    let bytes = |i: usize| -> &[u8] {
        match &entries[i] {
            ChunkEntry::Encoded(_, b) => b,
            ChunkEntry::Record(_) => &encoded[spans[i].clone()],
        }
    };
    let f = File::create(path).at(path)?;
    let mut w = BufWriter::new(f);
    let mut io = || -> std::io::Result<()> {
        w.write_all(CHUNK_MAGIC)?;
        w.write_all(&(entries.len() as u64).to_le_bytes())?;
        for e in entries {
            let id = match e {
                ChunkEntry::Record(r) => r.id,
                ChunkEntry::Encoded(id, _) => *id,
            };
            w.write_all(&id.to_le_bytes())?;
        }
        let mut offset = 0u64;
        w.write_all(&offset.to_le_bytes())?;
        for i in 0..entries.len() {
            offset += bytes(i).len() as u64;
            w.write_all(&offset.to_le_bytes())?;
        }
        for i in 0..entries.len() {
            w.write_all(bytes(i))?;
        }
        w.flush()?;
        w.get_ref().sync_all()
    };
    io().at(path)
}

/// The memory-mapped chunk store of one generation.
pub struct ChunkStore {
    path: PathBuf,
    map: Option<Mmap>,
    count: usize,
}

impl ChunkStore {
    /// Opens and validates the header of a chunk store file.
    pub fn open(path: &Path) -> Result<ChunkStore> {
        let map = map_file(path)?;
        if map.len() < 16 || &map[..8] != CHUNK_MAGIC {
            return Err(Error::corrupt(
                path,
                "not a pinpoint chunk store (bad magic)",
            ));
        }
        let count = u64::from_le_bytes(map[8..16].try_into().unwrap_or_default()) as usize;
        let need = 16usize.saturating_add(count.saturating_mul(16).saturating_add(8));
        if map.len() < need {
            return Err(Error::corrupt(
                path,
                format!("truncated: {} bytes for {count} chunks", map.len()),
            ));
        }
        let store = ChunkStore {
            path: path.to_path_buf(),
            map: Some(map),
            count,
        };
        let data_len = store.offset(count);
        if need as u64 + data_len != store.bytes().len() as u64 {
            return Err(Error::corrupt(
                path,
                "size does not match its offsets table",
            ));
        }
        Ok(store)
    }

    /// An empty store (no file).
    pub fn empty() -> ChunkStore {
        ChunkStore {
            path: PathBuf::new(),
            map: None,
            count: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    fn u64_at(&self, off: usize) -> u64 {
        let b = self.bytes();
        b.get(off..off + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    }

    fn offset(&self, i: usize) -> u64 {
        self.u64_at(16 + self.count * 8 + i * 8)
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Chunk id at position `pos`.
    pub fn id_at(&self, pos: usize) -> u64 {
        self.u64_at(16 + pos * 8)
    }

    /// Position of chunk `id`, if it is live in this generation.
    pub fn position(&self, id: u64) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.id_at(mid).cmp(&id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The record at `pos` as the file holds it (bincode), for a merge that copies it.
    pub(crate) fn encoded(&self, pos: usize) -> Result<&[u8]> {
        if pos >= self.count {
            return Err(Error::corrupt(
                &self.path,
                format!("chunk position {pos} out of range"),
            ));
        }
        let base = 16 + self.count * 16 + 8;
        let (s, e) = (self.offset(pos) as usize, self.offset(pos + 1) as usize);
        self.bytes()
            .get(base + s..base + e)
            .ok_or_else(|| Error::corrupt(&self.path, "record offsets out of range"))
    }

    /// Decodes the record at `pos`.
    pub fn get(&self, pos: usize) -> Result<ChunkRecord> {
        let bytes = self.encoded(pos)?;
        let (rec, _): (ChunkRecord, usize) =
            bincode::serde::decode_from_slice(bytes, bincode_cfg()).map_err(|e| Error::Decode {
                path: self.path.clone(),
                what: e.to_string(),
            })?;
        Ok(rec)
    }

    /// Decodes the record with id `id`.
    pub fn get_id(&self, id: u64) -> Result<Option<ChunkRecord>> {
        self.position(id).map(|p| self.get(p)).transpose()
    }
}

/// Writes the vector file: header then `count * dim` little-endian f32.
pub(crate) fn write_vectors(path: &Path, dim: usize, data: &[f32]) -> Result<()> {
    let count = data.len().checked_div(dim).unwrap_or(0);
    write_vector_rows(path, dim, count, data.chunks(dim.max(1)))
}

/// Writes `count` vectors of `dim` dimensions given one row at a time (fsynced): a merge
/// copies its members' rows without holding them all in memory.
pub(crate) fn write_vector_rows<'a>(
    path: &Path,
    dim: usize,
    count: usize,
    rows: impl Iterator<Item = &'a [f32]>,
) -> Result<()> {
    let f = File::create(path).at(path)?;
    let mut w = BufWriter::new(f);
    let mut written = 0usize;
    let io = || -> std::io::Result<()> {
        let mut header = [0u8; VEC_HEADER];
        header[..8].copy_from_slice(VEC_MAGIC);
        header[8..12].copy_from_slice(&(dim as u32).to_le_bytes());
        header[16..24].copy_from_slice(&(count as u64).to_le_bytes());
        w.write_all(&header)?;
        for row in rows {
            for x in row {
                w.write_all(&x.to_le_bytes())?;
            }
            written += 1;
        }
        w.flush()?;
        w.get_ref().sync_all()
    };
    io().at(path)?;
    if written != count {
        return Err(Error::invalid(
            "vector file",
            format!("{written} rows written for {count} announced"),
        ));
    }
    Ok(())
}

/// Memory-mapped vectors, row `i` belonging to the chunk at store position `i`.
pub struct VectorFile {
    map: Option<Mmap>,
    owned: Vec<f32>,
    dim: usize,
    count: usize,
}

impl VectorFile {
    /// Opens and validates a vector file of dimension `dim`.
    pub fn open(path: &Path, dim: usize) -> Result<VectorFile> {
        let map = map_file(path)?;
        if map.len() < VEC_HEADER || &map[..8] != VEC_MAGIC {
            return Err(Error::corrupt(
                path,
                "not a pinpoint vector file (bad magic)",
            ));
        }
        let fdim = u32::from_le_bytes(map[8..12].try_into().unwrap_or_default()) as usize;
        let count = u64::from_le_bytes(map[16..24].try_into().unwrap_or_default()) as usize;
        if fdim != dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                got: fdim,
            });
        }
        let need = count
            .saturating_mul(dim)
            .saturating_mul(4)
            .saturating_add(VEC_HEADER);
        if map.len() != need {
            return Err(Error::corrupt(
                path,
                format!("{} bytes, expected {need}", map.len()),
            ));
        }
        let aligned =
            (map.as_ptr() as usize + VEC_HEADER).is_multiple_of(std::mem::align_of::<f32>());
        if cfg!(target_endian = "little") && aligned {
            Ok(VectorFile {
                map: Some(map),
                owned: Vec::new(),
                dim,
                count,
            })
        } else {
            let owned = map[VEC_HEADER..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok(VectorFile {
                map: None,
                owned,
                dim,
                count,
            })
        }
    }

    /// Lets the kernel drop this file's pages from the process's memory (they are read
    /// again from the file if used): a merge calls it on its members once their rows are
    /// copied, so that the new segment's graph build does not hold both in memory.
    pub fn release_pages(&self) {
        if let Some(m) = &self.map {
            release_map_pages(m);
        }
    }

    /// Vectors held in memory (tests, empty index).
    pub fn from_vec(dim: usize, data: Vec<f32>) -> VectorFile {
        let count = data.len().checked_div(dim).unwrap_or(0);
        VectorFile {
            map: None,
            owned: data,
            dim,
            count,
        }
    }

    /// All vectors, row-major.
    pub fn as_slice(&self) -> &[f32] {
        match &self.map {
            Some(m) => {
                let bytes = &m[VEC_HEADER..];
                // SAFETY: `open` checked that the data starts 4-byte aligned, that the
                // platform is little-endian (the file's byte order), and that the length is
                // exactly count * dim * 4 bytes; every bit pattern is a valid f32.
                unsafe {
                    std::slice::from_raw_parts(bytes.as_ptr() as *const f32, self.count * self.dim)
                }
            }
            None => &self.owned,
        }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.as_slice()[i * self.dim..(i + 1) * self.dim]
    }

    /// Row `i` as bytes (for a prefetch hint).
    pub fn row_bytes(&self, i: usize) -> &[u8] {
        let r = self.row(i);
        // SAFETY: any f32 slice is readable as bytes: u8 has alignment 1, the length is
        // the same memory's, and the borrow keeps it alive.
        unsafe { std::slice::from_raw_parts(r.as_ptr() as *const u8, std::mem::size_of_val(r)) }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// Writes the document table.
pub(crate) fn write_docs(path: &Path, docs: &[DocRecord]) -> Result<()> {
    let mut bytes = DOCS_MAGIC.to_vec();
    bincode::serde::encode_into_std_write(docs, &mut bytes, bincode_cfg())
        .map_err(|e| Error::invalid("doc table", e.to_string()))?;
    write_synced(path, &bytes)
}

/// Reads the document table.
#[cfg(test)]
pub(crate) fn read_docs(path: &Path) -> Result<Vec<DocRecord>> {
    decode_docs(&std::fs::read(path).at(path)?, path)
}

/// A file of the open generation mapped at open and read when first needed: the mapping
/// keeps its bytes while the reader lives, whatever a writer's cleanup does.
pub(crate) struct PinnedFile {
    /// Where it was.
    pub(crate) path: PathBuf,
    map: Mmap,
}

impl PinnedFile {
    /// Maps the file at `path`.
    pub(crate) fn open(path: &Path) -> Result<PinnedFile> {
        Ok(PinnedFile {
            path: path.to_path_buf(),
            map: map_file(path)?,
        })
    }

    /// Its bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }
}

pub(crate) fn decode_docs(bytes: &[u8], path: &Path) -> Result<Vec<DocRecord>> {
    if bytes.len() < 8 || &bytes[..8] != DOCS_MAGIC {
        return Err(Error::corrupt(
            path,
            "not a pinpoint document table (bad magic)",
        ));
    }
    let (docs, _): (Vec<DocRecord>, usize) =
        bincode::serde::decode_from_slice(&bytes[8..], bincode_cfg()).map_err(|e| {
            Error::Decode {
                path: path.to_path_buf(),
                what: e.to_string(),
            }
        })?;
    Ok(docs)
}

/// One row of the document table as the search index needs it, borrowed from the table's
/// bytes: its strings are not copied and its hash is not kept. Field for field the layout
/// of [`DocRecord`] (bincode is positional), which
/// `engine::tables::tests::visiting_the_table_gives_what_reading_it_whole_gives` holds it to.
#[derive(Deserialize)]
pub(crate) struct DocRow<'a> {
    pub key: &'a str,
    pub title: &'a str,
    _hash: &'a str,
    _size: u64,
    pub mtime: i64,
    pub chunks: Vec<u64>,
    _external: bool,
}

/// Calls `f` with each row of an encoded document table, in file order, without building
/// the table: a cold query of a million-document index needs each document's key, title
/// and chunks, not a million owned records (a third of a second and 280 MB at 1M).
pub(crate) fn for_each_doc_row<'a>(
    bytes: &'a [u8],
    path: &Path,
    f: &mut dyn FnMut(DocRow<'a>),
) -> Result<()> {
    use serde::de::{DeserializeSeed, SeqAccess, Visitor};
    struct Rows<'a, 'f>(&'f mut dyn FnMut(DocRow<'a>));
    impl<'a> Visitor<'a> for Rows<'a, '_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a sequence of document rows")
        }
        fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            while let Some(row) = seq.next_element::<DocRow<'a>>()? {
                (self.0)(row);
            }
            Ok(())
        }
    }
    impl<'a> DeserializeSeed<'a> for Rows<'a, '_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'a>>(
            self,
            d: D,
        ) -> std::result::Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    if bytes.len() < 8 || &bytes[..8] != DOCS_MAGIC {
        return Err(Error::corrupt(
            path,
            "not a pinpoint document table (bad magic)",
        ));
    }
    bincode::serde::seed_decode_from_slice(Rows(f), &bytes[8..], bincode_cfg()).map_err(|e| {
        Error::Decode {
            path: path.to_path_buf(),
            what: e.to_string(),
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Pooling;

    fn rec(id: u64) -> ChunkRecord {
        ChunkRecord {
            id,
            doc: format!("d{id}"),
            byte_range: (id, id + 10),
            line_range: (1, 2),
            heading: id.is_multiple_of(2).then(|| "H".to_string()),
            text: format!("text of {id} ✓"),
        }
    }

    #[test]
    fn chunk_store_round_trip_and_lookup() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.bin");
        let recs: Vec<_> = [3u64, 7, 8, 20].iter().map(|&i| rec(i)).collect();
        write_chunks(&p, &recs).unwrap();
        let s = ChunkStore::open(&p).unwrap();
        assert_eq!(s.len(), 4);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(&s.get(i).unwrap(), r);
            assert_eq!(s.position(r.id), Some(i));
        }
        assert_eq!(s.position(5), None);
        assert!(s.get(4).is_err());
        // Truncation is detected and names the file.
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let e = ChunkStore::open(&p).err().unwrap().to_string();
        assert!(e.contains("c.bin") && e.contains("corrupt"), "{e}");
        std::fs::write(&p, b"garbage!garbage!garbage!").unwrap();
        assert!(ChunkStore::open(&p).is_err());
    }

    #[test]
    fn carried_records_are_copied_byte_for_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            tmp.path().join("a.bin"),
            tmp.path().join("b.bin"),
            tmp.path().join("c.bin"),
        );
        let old: Vec<_> = [3u64, 7, 8].iter().map(|&i| rec(i)).collect();
        write_chunks(&a, &old).unwrap();
        let a_store = ChunkStore::open(&a).unwrap();
        // Rows 0 and 2 of the old store carried over, then a new record.
        let new = rec(21);
        let entries = [
            ChunkEntry::Encoded(3, a_store.encoded(0).unwrap()),
            ChunkEntry::Encoded(8, a_store.encoded(2).unwrap()),
            ChunkEntry::Record(&new),
        ];
        write_chunk_entries(&b, &entries).unwrap();
        write_chunks(&c, &[rec(3), rec(8), rec(21)]).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), std::fs::read(&c).unwrap());
        let s = ChunkStore::open(&b).unwrap();
        assert_eq!(s.get(1).unwrap(), rec(8));
        assert_eq!(s.position(21), Some(2));
        assert!(a_store.encoded(3).is_err());
    }

    #[test]
    fn vectors_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("v.vec");
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        write_vectors(&p, 3, &data).unwrap();
        let v = VectorFile::open(&p, 3).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v.row(2), &[3.0, 3.5, 4.0]);
        assert!(matches!(
            VectorFile::open(&p, 4),
            Err(Error::DimensionMismatch {
                expected: 4,
                got: 3
            })
        ));
    }

    #[test]
    fn manifest_round_trip_and_foreign_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("manifest.json");
        let m = Manifest {
            format_version: FORMAT_VERSION,
            generation: 4,
            model: ModelSpec {
                id: "m@1".into(),
                dim: 384,
                pooling: Pooling::Mean,
                max_tokens: 256,
                query_prefix: String::new(),
                passage_prefix: String::new(),
            },
            model_dir: "models/x".into(),
            chunking: ChunkConfig::default(),
            counts: Counts {
                documents: 2,
                chunks: 5,
            },
            next_chunk_id: 9,
            hnsw: Some("g4".into()),
            files: vec![FileSum {
                path: "chunks/4.bin".into(),
                size: 10,
                crc32: 7,
            }],
            search_defaults: None,
            token_codes: false,
            neighbours: 3,
            include_generated: false,
            precision: crate::quant::Precision::Int8,
            collections: Vec::new(),
            doc_meta: true,
            segmented: false,
            segments: Vec::new(),
            next_segment: 0,
            previous_files: Vec::new(),
            table_base: None,
            table_deltas: Vec::new(),
            vector_precision: Default::default(),
            token_bits: 0,
            token_units: Default::default(),
            token_sharing: None,
        };
        m.write_atomic(&p).unwrap();
        assert_eq!(Manifest::read(&p).unwrap(), m);
        // A manifest from before precisions existed was embedded in f32.
        let mut v = serde_json::to_value(&m).unwrap();
        v.as_object_mut().unwrap().remove("precision");
        std::fs::write(&p, v.to_string()).unwrap();
        assert_eq!(
            Manifest::read(&p).unwrap().precision,
            crate::quant::Precision::F32
        );
        // One from before token units coded word pieces.
        let mut v = serde_json::to_value(&m).unwrap();
        v.as_object_mut().unwrap().remove("token_units");
        std::fs::write(&p, v.to_string()).unwrap();
        assert_eq!(
            Manifest::read(&p).unwrap().token_units,
            crate::late::TokenUnits::Pieces
        );
        // One from before shared token codes: every token keeps its own.
        let mut v = serde_json::to_value(&m).unwrap();
        v.as_object_mut().unwrap().remove("token_sharing");
        std::fs::write(&p, v.to_string()).unwrap();
        assert_eq!(Manifest::read(&p).unwrap().token_sharing, None);
        std::fs::write(&p, "{\"hello\": 1}").unwrap();
        assert!(matches!(
            Manifest::read(&p),
            Err(Error::IncompatibleIndex { .. })
        ));
        std::fs::write(&p, "{\"format_version\": 99}").unwrap();
        let e = Manifest::read(&p).unwrap_err().to_string();
        assert!(e.contains("format version 99"), "{e}");
        std::fs::write(&p, "\0\0").unwrap();
        assert!(matches!(Manifest::read(&p), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn docs_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("d.bin");
        let d = vec![DocRecord {
            key: "a/b.md".into(),
            title: "b".into(),
            hash: "00".into(),
            size: 3,
            mtime: 5,
            chunks: vec![1, 2],
            external: false,
        }];
        write_docs(&p, &d).unwrap();
        assert_eq!(read_docs(&p).unwrap(), d);
    }
}
