//! The one table of what an index folder holds.
//!
//! Every file and folder of an index is named here, once, with the code that writes it and
//! the code that reads it. `create` makes the folders from it, a commit lists the
//! checksummed files of a generation from it, cleanup recognises old generations' files
//! from it, `verify` checks what it lists, and a rebuild replaces exactly these entries.
//! Before this table each of those places spelled the list out by hand, and one of them
//! forgot `near/`: `index --rebuild` then deleted an index and refused to build another
//! (a folder "not empty and holding no manifest").
//!
//! Not for: what the files contain (each file's own module: [`crate::store`],
//! [`crate::late`], [`crate::near`], [`crate::dense`], [`crate::lexical`]).

use crate::segment::SegmentMeta;
use crate::store::Manifest;

/// The manifest: which generation is current. Replaced by a rename, after the commit point.
pub(crate) const MANIFEST: &str = "manifest.json";

/// The writer lock (see `lock.rs`).
pub(crate) const LOCK: &str = "LOCK";

/// Marks that a rebuild's new index (in [`REBUILD_DIR`]) is complete and is being moved
/// into place: the rebuild's commit point (see `rebuild.rs`).
pub(crate) const REBUILD_MARK: &str = "REBUILD";

/// Where `index --rebuild` builds the new index before it replaces the old one.
pub(crate) const REBUILD_DIR: &str = "rebuild.tmp";

/// Files a user (or the repository) may keep in an index folder beside the index.
const USER_FILES: &[&str] = &["README.md", ".gitignore"];

/// How an artifact's files are named.
#[derive(Debug, Clone, Copy)]
enum Naming {
    /// One file per generation: `<folder>/<prefix><gen><suffix>`.
    PerGeneration {
        prefix: &'static str,
        suffix: &'static str,
    },
    /// hnsw_rs's dump: `<folder>/g<gen>.hnsw.graph` and `.hnsw.data`, the basename
    /// recorded in the manifest (`hnsw`); hnsw_rs may add `-<n>` to a basename it finds
    /// taken.
    GraphDump,
    /// A table kept as a base and deltas ([`crate::delta`]): the base
    /// `<folder>/<gen><suffix>` of the manifest's `table_base` generation, and
    /// `<folder>/<gen><delta>` of each of its `table_deltas`.
    Chained {
        suffix: &'static str,
        delta: &'static str,
    },
    /// The whole folder belongs to a library that manages its own files (tantivy).
    Managed,
}

/// What every HNSW dump's basename starts with ([`hnsw_base`]).
const GRAPH_PREFIX: &str = "g";

/// One kind of file an index keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Artifact {
    /// Folder inside the index folder.
    pub folder: &'static str,
    /// What it holds, in a user's words (`stats`, errors).
    pub what: &'static str,
    /// The code that writes it.
    pub writer: &'static str,
    /// The code that reads it.
    pub reader: &'static str,
    naming: Naming,
    /// Kept per segment ([`crate::segment`]) in a segmented index: a commit writes it for
    /// new chunks only, never again for old ones.
    per_segment: bool,
    /// Whether a generation has it (some are optional per index): given the manifest and
    /// whether the lexical index has the neighbour field (indexes older than expansion
    /// lack it and keep no neighbour table).
    present: fn(&Manifest, bool) -> bool,
}

fn always(_: &Manifest, _: bool) -> bool {
    true
}
fn with_token_codes(m: &Manifest, _: bool) -> bool {
    m.token_codes
}
fn with_neighbours(m: &Manifest, lexical_has_near: bool) -> bool {
    m.neighbours > 0 && lexical_has_near
}
fn with_graph(m: &Manifest, _: bool) -> bool {
    m.hnsw.is_some()
}
fn with_segments(m: &Manifest, _: bool) -> bool {
    m.segmented
}
fn with_doc_meta(m: &Manifest, _: bool) -> bool {
    m.doc_meta
}

/// Every artifact of an index, in the order a commit writes them.
pub(crate) const ARTIFACTS: &[Artifact] = &[
    Artifact {
        folder: "chunks",
        what: "chunk store",
        writer: "store::write_chunk_entries",
        reader: "store::ChunkStore::open",
        naming: Naming::PerGeneration {
            prefix: "",
            suffix: ".bin",
        },
        per_segment: true,
        present: always,
    },
    Artifact {
        folder: "dense",
        what: "vectors",
        writer: "store::write_vectors",
        reader: "store::VectorFile::open",
        naming: Naming::PerGeneration {
            prefix: "",
            suffix: ".vec",
        },
        per_segment: true,
        present: always,
    },
    Artifact {
        folder: "docs",
        what: "document table",
        writer: "store::write_docs",
        reader: "store::read_docs",
        naming: Naming::Chained {
            suffix: ".bin",
            delta: ".delta",
        },
        per_segment: false,
        present: always,
    },
    Artifact {
        folder: "meta",
        what: "document metadata (collection, front matter)",
        writer: "collection::write_meta",
        reader: "collection::decode_meta",
        naming: Naming::Chained {
            suffix: ".bin",
            delta: ".delta",
        },
        per_segment: false,
        present: with_doc_meta,
    },
    Artifact {
        folder: "late",
        what: "token codes",
        writer: "late::TokenCodes::write",
        reader: "late::TokenCodes::open",
        naming: Naming::PerGeneration {
            prefix: "",
            suffix: ".tok",
        },
        per_segment: true,
        present: with_token_codes,
    },
    Artifact {
        folder: "near",
        what: "neighbour table",
        writer: "near::NeighbourTable::write",
        reader: "near::NeighbourTable::read",
        naming: Naming::Chained {
            suffix: ".bin",
            delta: ".delta",
        },
        per_segment: false,
        present: with_neighbours,
    },
    Artifact {
        folder: "dense",
        what: "HNSW graph file",
        writer: "graph_file::GraphFile::write",
        reader: "graph_file::GraphFile::open",
        naming: Naming::PerGeneration {
            prefix: "",
            suffix: ".graph",
        },
        per_segment: true,
        present: with_segments,
    },
    Artifact {
        folder: "dense",
        what: "HNSW graph (hnsw_rs dump of an index written before graph files)",
        writer: "dense::dump_graph",
        reader: "dense::load_graph",
        naming: Naming::GraphDump,
        per_segment: true,
        present: with_graph,
    },
    Artifact {
        folder: "dense",
        what: "int8 vectors",
        writer: "sq8::Sq8Vectors::write",
        reader: "sq8::Sq8Vectors::open",
        naming: Naming::PerGeneration {
            prefix: "",
            suffix: ".sq8",
        },
        per_segment: true,
        present: with_segments,
    },
    Artifact {
        folder: "chunks",
        what: "chunk text keys",
        writer: "segment::TextKeys::write",
        reader: "segment::TextKeys::read",
        naming: Naming::PerGeneration {
            prefix: "",
            suffix: ".keys",
        },
        per_segment: true,
        present: with_segments,
    },
    Artifact {
        folder: "del",
        what: "deletion bitsets",
        writer: "segment::DeadRows::write",
        reader: "segment::DeadRows::read",
        naming: Naming::PerGeneration {
            prefix: "",
            suffix: ".bin",
        },
        per_segment: true,
        present: with_segments,
    },
    Artifact {
        folder: "lexical",
        what: "BM25 index",
        writer: "lexical::LexicalWriter::commit",
        reader: "lexical::LexicalIndex::open_or_create",
        naming: Naming::Managed,
        per_segment: false,
        present: always,
    },
];

/// The artifact a file of a generation (`folder/name`, relative to the index folder)
/// belongs to: `verify` names it in its findings.
pub(crate) fn artifact_of(path: &str) -> Option<&'static Artifact> {
    let (folder, name) = path.split_once('/')?;
    // A segment's files are named `s<id>…` rather than by generation.
    let name = name.strip_prefix('s').unwrap_or(name);
    let name = match name.split_once('.') {
        // `3.7.bin` (a deletion bitset of segment 3 at generation 7) reads as `3.bin`.
        Some((id, rest)) if folder == "del" => {
            format!("{id}.{}", rest.split_once('.').map_or(rest, |r| r.1))
        }
        _ => name.to_string(),
    };
    ARTIFACTS.iter().find(|a| {
        a.folder == folder
            && (matches!(a.naming, Naming::Managed)
                || a.generation_of(&name).is_some()
                || (matches!(a.naming, Naming::GraphDump) && name.contains(".hnsw.")))
    })
}

impl Artifact {
    /// `path (what, written by writer, read by reader)`: how `verify` names a file.
    pub(crate) fn describe(&self, path: &str) -> String {
        format!(
            "{path} ({}, written by {}, read by {})",
            self.what, self.writer, self.reader
        )
    }
}

/// The folders an index keeps, each once.
pub(crate) fn folders() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for a in ARTIFACTS {
        if !v.contains(&a.folder) {
            v.push(a.folder);
        }
    }
    v
}

/// The folders a new index described by `m` keeps (its lexical index has the neighbour
/// field, as every new one does).
pub(crate) fn folders_of(m: &Manifest) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for a in ARTIFACTS {
        // The graph has none of its own: it sits beside the vectors, always present.
        if (a.present)(m, true) && !v.contains(&a.folder) {
            v.push(a.folder);
        }
    }
    v
}

/// The pending manifest of generation `gen` (written before the commit point).
pub(crate) fn pending_manifest(gen: u64) -> String {
    format!("manifest.{gen}.json")
}

fn file(folder: &str, gen: u64, suffix: &str) -> String {
    format!("{folder}/{gen}{suffix}")
}

/// The chunk store of generation `gen`.
pub(crate) fn chunks_file(gen: u64) -> String {
    file("chunks", gen, ".bin")
}
/// The vector file of generation `gen`.
pub(crate) fn vec_file(gen: u64) -> String {
    file("dense", gen, ".vec")
}
/// The document table of generation `gen`.
pub(crate) fn docs_file(gen: u64) -> String {
    file("docs", gen, ".bin")
}
/// The document metadata of generation `gen`.
pub(crate) fn meta_file(gen: u64) -> String {
    file("meta", gen, ".bin")
}
/// The token codes of generation `gen`.
pub(crate) fn late_file(gen: u64) -> String {
    file("late", gen, ".tok")
}
/// The neighbour table of generation `gen`.
pub(crate) fn near_file(gen: u64) -> String {
    file("near", gen, ".bin")
}
/// The delta that generation `gen` wrote for the table kept in `folder` (`docs`, `meta`,
/// `near`).
pub(crate) fn delta_file(folder: &str, gen: u64) -> String {
    file(folder, gen, ".delta")
}

/// The files of the generation `m` describes, relative to the index folder, each with a
/// checksum in the manifest: what a commit records and `verify` checks.
pub(crate) fn generation_files(m: &Manifest, lexical_has_near: bool) -> Vec<String> {
    let gen = m.generation;
    let mut out = Vec::new();
    for a in ARTIFACTS {
        if !(a.present)(m, lexical_has_near) || (m.segmented && a.per_segment) {
            continue;
        }
        match a.naming {
            Naming::GraphDump => {
                if let Some(h) = &m.hnsw {
                    out.push(format!("{}/{h}.hnsw.graph", a.folder));
                    out.push(format!("{}/{h}.hnsw.data", a.folder));
                }
            }
            Naming::PerGeneration { prefix, suffix } => {
                out.push(format!("{}/{prefix}{gen}{suffix}", a.folder))
            }
            Naming::Chained { suffix, delta } => {
                let (base, deltas) = m.table_chain();
                out.push(format!("{}/{base}{suffix}", a.folder));
                for d in deltas {
                    out.push(format!("{}/{d}{delta}", a.folder));
                }
            }
            Naming::Managed => {}
        }
    }
    if m.segmented {
        for seg in &m.segments {
            out.extend(seg.files());
        }
    }
    out
}

/// The segments of the generation `m` describes: its list, or for an index written before
/// segments, its one file of each kind as one segment.
pub(crate) fn segments_of(m: &Manifest) -> Vec<SegmentMeta> {
    if m.segmented {
        return m.segments.clone();
    }
    let gen = m.generation;
    vec![SegmentMeta {
        id: 0,
        rows: m.counts.chunks,
        deleted: 0,
        chunks: chunks_file(gen),
        vectors: vec_file(gen),
        codes: m.token_codes.then(|| late_file(gen)),
        graph: m.hnsw.clone(),
        graph_file: None,
        deletes: None,
        keys: None,
        sq8: None,
    }]
}

/// The generation a file in one of the per-generation folders belongs to (`None` for a
/// name no artifact writes, which cleanup leaves alone).
pub(crate) fn generation_of(folder: &str, name: &str) -> Option<u64> {
    ARTIFACTS
        .iter()
        .filter(|a| a.folder == folder)
        .find_map(|a| a.generation_of(name))
}

impl Artifact {
    /// The generation a file name of this artifact belongs to, if it is one of its names.
    fn generation_of(&self, name: &str) -> Option<u64> {
        let (prefix, tail_ok): (&str, &dyn Fn(&str) -> bool) = match self.naming {
            Naming::PerGeneration { prefix, suffix } => (prefix, &move |t: &str| t == suffix),
            Naming::Chained { suffix, delta } => ("", &move |t: &str| t == suffix || t == delta),
            Naming::GraphDump => (GRAPH_PREFIX, &|t: &str| {
                let t = t
                    .strip_prefix('-')
                    .map_or(t, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
                t.starts_with(".hnsw.")
            }),
            Naming::Managed => return None,
        };
        let rest = name.strip_prefix(prefix)?;
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || !tail_ok(&rest[digits..]) {
            return None;
        }
        rest[..digits].parse().ok()
    }
}

/// Whether a top-level entry of an index folder is the index's own: an artifact folder,
/// a manifest, the lock, a rebuild in progress or its mark.
pub(crate) fn is_index_entry(name: &str) -> bool {
    folders().contains(&name)
        || name == MANIFEST
        || name == LOCK
        || name == REBUILD_MARK
        || name == REBUILD_DIR
        || name
            .strip_prefix("manifest.")
            .and_then(|r| r.strip_suffix(".json"))
            .is_some_and(|g| g.parse::<u64>().is_ok())
}

/// Whether a top-level entry may sit in a folder that holds no index yet without making
/// `create` refuse it: the index's own entries and the few files a user keeps beside them.
pub(crate) fn may_precede_index(name: &str) -> bool {
    is_index_entry(name) || USER_FILES.contains(&name)
}

/// The top-level entries a rebuild moves into place, in order: the manifest last, so that
/// the folder holds the new index only once everything it names is there.
pub(crate) fn replaced_by_rebuild() -> Vec<&'static str> {
    let mut v = folders();
    v.push(MANIFEST);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(token_codes: bool, neighbours: usize, hnsw: Option<&str>) -> Manifest {
        let mut m = Manifest {
            format_version: crate::store::FORMAT_VERSION,
            generation: 7,
            model: crate::models::ModelSpec {
                id: "m".into(),
                dim: 4,
                pooling: crate::models::Pooling::Mean,
                max_tokens: 256,
                query_prefix: String::new(),
                passage_prefix: String::new(),
            },
            model_dir: String::new(),
            chunking: Default::default(),
            counts: Default::default(),
            next_chunk_id: 0,
            hnsw: None,
            files: Vec::new(),
            search_defaults: None,
            token_codes: false,
            neighbours: 0,
            include_generated: false,
            precision: crate::quant::Precision::F32,
            collections: Vec::new(),
            doc_meta: false,
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
        m.token_codes = token_codes;
        m.neighbours = neighbours;
        m.hnsw = hnsw.map(String::from);
        m
    }

    #[test]
    fn every_per_generation_file_is_recognised_by_cleanup() {
        let m = manifest(true, 1, Some("g7"));
        let files = generation_files(&m, true);
        assert_eq!(
            files,
            [
                "chunks/7.bin",
                "dense/7.vec",
                "docs/7.bin",
                "late/7.tok",
                "near/7.bin",
                "dense/g7.hnsw.graph",
                "dense/g7.hnsw.data"
            ]
        );
        for f in &files {
            let (folder, name) = f.split_once('/').unwrap();
            assert_eq!(generation_of(folder, name), Some(7), "{f}");
            assert!(is_index_entry(folder), "{folder}");
        }
        assert_eq!(artifact_of("dense/7.vec").unwrap().what, "vectors");
        assert_eq!(
            artifact_of("dense/g7.hnsw.data").unwrap().what,
            "HNSW graph (hnsw_rs dump of an index written before graph files)"
        );
        // A segment's files are recognised by their kind.
        assert_eq!(
            artifact_of("dense/s3.graph").unwrap().what,
            "HNSW graph file"
        );
        assert_eq!(artifact_of("dense/s3.vec").unwrap().what, "vectors");
        assert_eq!(
            artifact_of("chunks/s3.keys").unwrap().what,
            "chunk text keys"
        );
        assert_eq!(artifact_of("chunks/s3.bin").unwrap().what, "chunk store");
        assert_eq!(
            artifact_of("del/s3.9.bin").unwrap().what,
            "deletion bitsets"
        );
        assert_eq!(artifact_of("near/7.bin").unwrap().what, "neighbour table");
        assert_eq!(artifact_of("docs/9.delta").unwrap().what, "document table");
        assert_eq!(generation_of("meta", "9.delta"), Some(9));
        // The named helpers agree with the table.
        for f in [
            chunks_file(7),
            vec_file(7),
            docs_file(7),
            late_file(7),
            near_file(7),
        ] {
            assert!(files.contains(&f), "{f}");
        }
    }

    #[test]
    fn optional_artifacts_follow_the_manifest() {
        let files = generation_files(&manifest(false, 0, None), true);
        assert_eq!(files, ["chunks/7.bin", "dense/7.vec", "docs/7.bin"]);
        // An index older than expansion keeps no neighbour table whatever it asks.
        let files = generation_files(&manifest(false, 1, None), false);
        assert_eq!(files, ["chunks/7.bin", "dense/7.vec", "docs/7.bin"]);
    }

    #[test]
    fn a_chained_table_lists_its_base_and_deltas() {
        let mut m = manifest(false, 1, None);
        m.doc_meta = true;
        m.table_base = Some(3);
        m.table_deltas = vec![5, 7];
        let files = generation_files(&m, true);
        for f in [
            "docs/3.bin",
            "docs/5.delta",
            "docs/7.delta",
            "meta/3.bin",
            "meta/7.delta",
            "near/3.bin",
            "near/5.delta",
        ] {
            assert!(files.iter().any(|x| x == f), "{f} missing from {files:?}");
        }
        assert!(!files.iter().any(|x| x == "docs/7.bin"), "{files:?}");
    }

    #[test]
    fn foreign_names_are_not_taken_for_generations() {
        assert_eq!(generation_of("dense", "g12-4471.hnsw.data"), Some(12));
        assert_eq!(generation_of("dense", "notes.txt"), None);
        assert_eq!(generation_of("dense", "7.vec.bak"), None);
        assert_eq!(generation_of("chunks", "x7.bin"), None);
        assert_eq!(generation_of("lexical", "7.bin"), None);
        assert!(!is_index_entry("src"));
        assert!(!is_index_entry("manifest.old.json"));
        assert!(may_precede_index("README.md"));
        // The folder the old hand-written list forgot.
        assert!(is_index_entry("near"));
        assert_eq!(replaced_by_rebuild().last(), Some(&MANIFEST));
    }
}
