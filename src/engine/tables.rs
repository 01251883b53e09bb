//! The per-generation tables (documents, their metadata, neighbour lists) as a base and
//! the deltas of later commits ([`crate::delta`]): opening them pinned, reading them, and
//! writing a commit's change as a delta or a new base.
//!
//! Not for: the files of segments ([`crate::segment`]) or the delta format itself.

use std::collections::HashMap;
use std::path::Path;

use super::artifacts::{delta_file, docs_file, meta_file, near_file};
use crate::collection::DocMeta;
use crate::delta::{TableDelta, MAX_COMMIT_SHARE, MAX_DELTAS, MAX_DELTA_SHARE};
use crate::error::Result;
use crate::near::NeighbourTable;
use crate::store::{DocRecord, Manifest, PinnedFile};

/// One neighbour list keyed by its chunk id.
pub(crate) type NearRow = (u64, Vec<(u64, f32)>);

/// One table's files of a generation, mapped when it is opened: the mapping keeps their
/// bytes for as long as the reader lives, even after a writer's cleanup unlinked them (a
/// reader that first needs its table several commits later still gets its own
/// generation's, not an error).
pub(crate) struct Chain {
    base: PinnedFile,
    deltas: Vec<PinnedFile>,
}

impl Chain {
    /// Maps the table of `folder` (`docs`, `meta`, `near`) of the generation `m` describes;
    /// `base_name` names its base file.
    pub(crate) fn open(
        dir: &Path,
        m: &Manifest,
        folder: &str,
        base_name: fn(u64) -> String,
    ) -> Result<Chain> {
        let (base, deltas) = m.table_chain();
        Ok(Chain {
            base: PinnedFile::open(&dir.join(base_name(base)))?,
            deltas: deltas
                .iter()
                .map(|&g| PinnedFile::open(&dir.join(delta_file(folder, g))))
                .collect::<Result<_>>()?,
        })
    }

    /// The deltas, oldest first.
    fn deltas<K, V>(&self) -> Result<Vec<TableDelta<K, V>>>
    where
        K: serde::Serialize + serde::de::DeserializeOwned,
        V: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.deltas
            .iter()
            .map(|f| TableDelta::decode(f.bytes(), &f.path))
            .collect()
    }

    /// Bytes of the base and of the deltas.
    fn sizes(&self) -> (u64, u64) {
        (
            self.base.bytes().len() as u64,
            self.deltas.iter().map(|f| f.bytes().len() as u64).sum(),
        )
    }
}

/// The document table, ordered by key (whatever order its base file has).
pub(crate) fn read_docs(c: &Chain) -> Result<Vec<DocRecord>> {
    let mut base = crate::store::decode_docs(c.base.bytes(), &c.base.path)?;
    // Every base this crate writes is ordered by key; one that is not is ordered here, once
    // per read, so that deltas merge rightly and a commit can find documents by binary
    // search (commits keep the order).
    if !base.is_sorted_by(|a, b| a.key <= b.key) {
        base.sort_by(|a, b| a.key.cmp(&b.key));
    }
    let deltas: Vec<TableDelta<String, DocRecord>> = c.deltas()?;
    Ok(crate::delta::apply(base, deltas, |d| &d.key))
}

/// Calls `f` with each document of the table as [`read_docs`] would order it (the base
/// with the deltas applied, by key), borrowing from the mapped files instead of building
/// the table. Returns `false`, having called `f` for a prefix only, when the base is not
/// ordered by key (a table from an old build): the caller then reads the table whole.
pub(crate) fn visit_docs<'a>(c: &'a Chain, f: &mut dyn FnMut(DocView<'_>)) -> Result<bool> {
    let deltas: Vec<TableDelta<String, DocRecord>> = c.deltas()?;
    let mut changes = crate::delta::final_changes(deltas, |d| &d.key)
        .into_iter()
        .peekable();
    let mut ordered = true;
    let mut prev: Option<&'a str> = None;
    crate::store::for_each_doc_row(c.base.bytes(), &c.base.path, &mut |row| {
        if !ordered || prev.is_some_and(|p| p >= row.key) {
            ordered = false;
            return;
        }
        prev = Some(row.key);
        while let Some((_, c)) = changes.next_if(|(k, _)| k.as_str() < row.key) {
            if let Some(d) = c {
                f(DocView::of(&d));
            }
        }
        match changes.next_if(|(k, _)| k.as_str() == row.key) {
            Some((_, Some(d))) => f(DocView::of(&d)),
            Some((_, None)) => {}
            None => f(DocView {
                key: row.key,
                title: row.title,
                mtime: row.mtime,
                chunks: &row.chunks,
            }),
        }
    })?;
    if !ordered {
        return Ok(false);
    }
    for (_, c) in changes {
        if let Some(d) = c {
            f(DocView::of(&d));
        }
    }
    Ok(true)
}

/// What the search index keeps of a document ([`visit_docs`]).
pub(crate) struct DocView<'a> {
    pub key: &'a str,
    pub title: &'a str,
    pub mtime: i64,
    pub chunks: &'a [u64],
}

impl<'a> DocView<'a> {
    pub(crate) fn of(d: &'a DocRecord) -> DocView<'a> {
        DocView {
            key: &d.key,
            title: &d.title,
            mtime: d.mtime,
            chunks: &d.chunks,
        }
    }
}

/// The metadata of each document.
pub(crate) fn read_meta(c: &Chain) -> Result<HashMap<String, DocMeta>> {
    let mut m = crate::collection::decode_meta(c.base.bytes(), &c.base.path)?;
    for d in c.deltas::<String, (String, DocMeta)>()? {
        for k in d.removed {
            m.remove(&k);
        }
        for (k, v) in d.upserts {
            m.insert(k, v);
        }
    }
    Ok(m)
}

/// The neighbour table, ordered by chunk id.
pub(crate) fn read_near(c: &Chain) -> Result<NeighbourTable> {
    let t = NeighbourTable::decode(c.base.bytes(), &c.base.path)?;
    let deltas: Vec<TableDelta<u64, NearRow>> = c.deltas()?;
    if deltas.is_empty() {
        return Ok(t);
    }
    let mut rows: Vec<NearRow> = t.ids.into_iter().zip(t.lists).collect();
    if !rows.is_sorted_by_key(|r| r.0) {
        rows.sort_by_key(|r| r.0);
    }
    let (ids, lists) = crate::delta::apply(rows, deltas, |r| &r.0)
        .into_iter()
        .unzip();
    Ok(NeighbourTable { k: t.k, ids, lists })
}

/// What a commit changed in the three tables, and the tables it leaves.
pub(crate) struct TableChanges<'a> {
    /// The new document table, ordered by key.
    pub docs: &'a [DocRecord],
    /// Each document's metadata.
    pub meta: &'a HashMap<String, DocMeta>,
    /// The new neighbour table (none without document expansion).
    pub near: Option<&'a NeighbourTable>,
    /// Documents new or changed.
    pub docs_delta: TableDelta<String, DocRecord>,
    /// Metadata new or changed, and that of the documents removed.
    pub meta_delta: TableDelta<String, (String, DocMeta)>,
    /// Neighbour lists new or changed, and the chunks that left.
    pub near_delta: TableDelta<u64, NearRow>,
}

/// Writes generation `gen`'s tables into `dir` and sets `next`'s chain: deltas on the
/// current chain (`current`: its files, `None` when it cannot take one: a new index, one
/// written before metadata tables or deltas), or a new base when the deltas would pass
/// [`MAX_DELTA_SHARE`] of the base or [`MAX_DELTAS`] files, or this commit's alone
/// [`MAX_COMMIT_SHARE`]. Returns the files written.
pub(crate) fn write(
    dir: &Path,
    gen: u64,
    current: Option<(&Manifest, [&Chain; 2], Option<&Chain>)>,
    changes: TableChanges<'_>,
    next: &mut Manifest,
) -> Result<Vec<String>> {
    let encoded = (
        changes.docs_delta.encode()?,
        changes.meta_delta.encode()?,
        match changes.near {
            Some(_) => Some(changes.near_delta.encode()?),
            None => None,
        },
    );
    let new_bytes =
        (encoded.0.len() + encoded.1.len() + encoded.2.as_ref().map_or(0, Vec::len)) as u64;
    let chain = current.and_then(|(m, [docs, meta], near)| {
        // A table the new generation keeps must have a chain to extend.
        if changes.near.is_some() != near.is_some() {
            return None;
        }
        let (base, deltas) = m.table_chain();
        let (mut b, mut d) = (0u64, new_bytes);
        for c in [Some(docs), Some(meta), near].into_iter().flatten() {
            let (cb, cd) = c.sizes();
            b += cb;
            d += cd;
        }
        let fits = deltas.len() < MAX_DELTAS
            && (d as f64) <= MAX_DELTA_SHARE * b as f64
            && (new_bytes as f64) <= MAX_COMMIT_SHARE * b as f64;
        fits.then(|| (base, deltas.to_vec()))
    });
    let mut written = Vec::new();
    match chain {
        Some((base, mut deltas)) => {
            let (docs, meta, near) = encoded;
            for (folder, bytes) in [("docs", Some(docs)), ("meta", Some(meta)), ("near", near)] {
                if let Some(b) = bytes {
                    let f = delta_file(folder, gen);
                    crate::delta::write(&dir.join(&f), &b)?;
                    written.push(f);
                }
            }
            deltas.push(gen);
            next.table_base = Some(base);
            next.table_deltas = deltas;
        }
        None => {
            crate::store::write_docs(&dir.join(docs_file(gen)), changes.docs)?;
            std::fs::create_dir_all(dir.join("meta"))
                .map_err(|e| crate::error::Error::io(dir.join("meta"), e))?;
            let mut rows: Vec<(String, DocMeta)> = changes
                .meta
                .iter()
                .map(|(k, m)| (k.clone(), m.clone()))
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            crate::collection::write_meta(&dir.join(meta_file(gen)), &rows)?;
            written.extend([docs_file(gen), meta_file(gen)]);
            if let Some(t) = changes.near {
                t.write(&dir.join(near_file(gen)))?;
                written.push(near_file(gen));
            }
            next.table_base = Some(gen);
            next.table_deltas = Vec::new();
        }
    }
    for sub in ["docs", "meta", "near"] {
        if dir.join(sub).is_dir() {
            crate::store::sync_dir(&dir.join(sub))?;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PinnedFile;

    fn doc(key: &str, title: &str, chunks: &[u64]) -> DocRecord {
        DocRecord {
            key: key.to_string(),
            title: title.to_string(),
            hash: format!("{:064x}", chunks.len()),
            size: 10 * chunks.len() as u64,
            mtime: -(chunks.len() as i64),
            chunks: chunks.to_vec(),
            external: key.starts_with('x'),
        }
    }

    /// A chain of `base` (written as is) and `deltas`, oldest first.
    fn chain(dir: &Path, base: &[DocRecord], deltas: &[TableDelta<String, DocRecord>]) -> Chain {
        let path = dir.join("base.bin");
        crate::store::write_docs(&path, base).unwrap();
        let deltas = deltas
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let p = dir.join(format!("{i}.delta"));
                crate::delta::write(&p, &d.encode().unwrap()).unwrap();
                PinnedFile::open(&p).unwrap()
            })
            .collect();
        Chain {
            base: PinnedFile::open(&path).unwrap(),
            deltas,
        }
    }

    /// What a visit saw: key, title, mtime and chunks of each row.
    type Row = (String, String, i64, Vec<u64>);

    fn visited(c: &Chain) -> (bool, Vec<Row>) {
        let mut out = Vec::new();
        let ordered = visit_docs(c, &mut |d| {
            out.push((d.key.into(), d.title.into(), d.mtime, d.chunks.to_vec()))
        })
        .unwrap();
        (ordered, out)
    }

    #[test]
    fn visiting_the_table_gives_what_reading_it_whole_gives() {
        let dir = tempfile::tempdir().unwrap();
        let base = vec![
            doc("b", "B", &[1, 2]),
            doc("d", "D", &[3]),
            doc("f", "F", &[4, 5, 6]),
            doc("xh", "H", &[7]),
        ];
        let deltas = vec![
            TableDelta {
                upserts: vec![doc("a", "A", &[8]), doc("d", "D2", &[9, 10])],
                removed: vec!["f".to_string()],
            },
            TableDelta {
                // Re-added after its removal, one removed twice, one added past the end.
                upserts: vec![doc("f", "F2", &[11]), doc("z", "Z", &[12])],
                removed: vec!["b".to_string(), "xh".to_string()],
            },
        ];
        let c = chain(dir.path(), &base, &deltas);
        let whole: Vec<_> = read_docs(&c)
            .unwrap()
            .into_iter()
            .map(|d| (d.key, d.title, d.mtime, d.chunks))
            .collect();
        let keys: Vec<&str> = whole.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(keys, ["a", "d", "f", "z"]);
        assert_eq!(visited(&c), (true, whole));
        // Without deltas the rows are the base's own.
        let c = chain(dir.path(), &base, &[]);
        let (ordered, rows) = visited(&c);
        assert!(ordered);
        assert_eq!(rows[3], ("xh".into(), "H".into(), -1, vec![7]));
        assert_eq!(rows.len(), 4);
    }

    #[test]
    fn a_base_out_of_key_order_is_reported_not_visited_wrongly() {
        let dir = tempfile::tempdir().unwrap();
        let base = vec![doc("b", "B", &[1]), doc("a", "A", &[2])];
        let c = chain(dir.path(), &base, &[]);
        assert!(!visited(&c).0);
        // Reading it whole orders it.
        let keys: Vec<String> = read_docs(&c).unwrap().into_iter().map(|d| d.key).collect();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn a_damaged_table_is_an_error_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let _whole = chain(dir.path(), &[doc("a", "A", &[1, 2, 3])], &[]);
        let bytes = std::fs::read(dir.path().join("base.bin")).unwrap();
        std::fs::write(dir.path().join("cut.bin"), &bytes[..bytes.len() - 3]).unwrap();
        let cut = Chain {
            base: PinnedFile::open(&dir.path().join("cut.bin")).unwrap(),
            deltas: Vec::new(),
        };
        let err = visit_docs(&cut, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("cut.bin"), "{err}");
    }
}
