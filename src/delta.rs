//! One commit's change to a keyed per-generation table (documents, their metadata, the
//! neighbour lists), so that a commit writes what changed rather than the whole table.
//!
//! Why: a segment keeps its chunks' files for life, but the document, metadata and
//! neighbour tables covered the whole index and were written again by every commit: 112 MB
//! for a one-file commit at a million one-chunk documents, and most of its 1.3 to 2 s. Now
//! a generation's table is a *base* file (the full table of some earlier generation) and
//! the *deltas* of the commits since, oldest first, listed in the manifest
//! ([`crate::store::Manifest::table_chain`]). A reader applies them in order. A commit
//! writes a new base instead of a delta when the deltas would pass a quarter of the base's
//! size or [`MAX_DELTAS`] files, so the bytes written stay proportional to the change
//! (each changed row is written about 1 + 4 = 5 times in all) and a reader's chain stays
//! short. This is how Lucene keeps doc-values updates beside an unchanged segment.
//!
//! Layout: `PPDELTA1`, then bincode of [`TableDelta`].
//!
//! Not for: the base tables' own formats (`store::write_docs`,
//! [`crate::collection::write_meta`], [`crate::near::NeighbourTable`]).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

const MAGIC: &[u8; 8] = b"PPDELTA1";

/// Deltas a chain may hold before a commit writes a new base: a reader maps and decodes
/// each, so the chain is kept short even when each delta is tiny.
pub const MAX_DELTAS: usize = 32;

/// A base is written again once its deltas would reach this share of its size.
pub const MAX_DELTA_SHARE: f64 = 0.25;

/// A commit whose own delta passes this share of the base writes a new base instead: a
/// bulk commit (a checkpoint of a large sync) then leaves no large delta for every reader
/// to merge in, while a one-file commit's delta stays a few hundred bytes.
pub const MAX_COMMIT_SHARE: f64 = 0.05;

/// Rows upserted (whole rows, each carrying its key) and keys removed by one commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDelta<K, V> {
    /// Rows new or changed in this commit.
    pub upserts: Vec<V>,
    /// Keys whose rows left in this commit.
    pub removed: Vec<K>,
}

impl<K, V> Default for TableDelta<K, V> {
    fn default() -> Self {
        TableDelta {
            upserts: Vec::new(),
            removed: Vec::new(),
        }
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> TableDelta<K, V> {
    /// The delta's bytes as a file holds them.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut bytes = MAGIC.to_vec();
        bincode::serde::encode_into_std_write(self, &mut bytes, bincode::config::standard())
            .map_err(|e| Error::invalid("table delta", e.to_string()))?;
        Ok(bytes)
    }

    /// Decodes a delta file's bytes (`path` names it in errors).
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(Error::corrupt(path, "table delta has a bad magic number"));
        }
        let (d, used): (Self, usize) =
            bincode::serde::decode_from_slice(&bytes[8..], bincode::config::standard())
                .map_err(|e| Error::corrupt(path, format!("table delta: {e}")))?;
        if used != bytes.len() - 8 {
            return Err(Error::corrupt(path, "table delta has trailing bytes"));
        }
        Ok(d)
    }
}

/// Writes `bytes` (an encoded delta) to `path`, fsynced.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    crate::store::write_synced(path, bytes)
}

/// `base` (ordered by key, each key once) with `deltas` applied, oldest first, still
/// ordered by key: each key's last change wins, a removed key leaves. One merge pass over
/// the base and the sorted changes, no hashing of base rows and no sort of the table: a
/// cold query reads the million-row tables this way.
pub fn apply<K, V>(base: Vec<V>, deltas: Vec<TableDelta<K, V>>, key: impl Fn(&V) -> &K) -> Vec<V>
where
    K: Ord + Clone,
{
    if deltas.is_empty() {
        return base;
    }
    let changes = final_changes(deltas, &key);
    // Only changed and removed rows (an edit, a delete): done in place, without a second
    // copy of a table that may hold a million rows.
    let mut base = base;
    let rows: Vec<Option<usize>> = changes
        .keys()
        .map(|k| base.binary_search_by(|v| key(v).cmp(k)).ok())
        .collect();
    if rows.iter().all(Option::is_some) {
        let mut removed = Vec::new();
        for ((_, c), i) in changes.into_iter().zip(rows.into_iter().flatten()) {
            match c {
                Some(v) => base[i] = v,
                None => removed.push(i),
            }
        }
        // Keys are unique and ascending, so `removed` is ascending too.
        remove_rows(&mut base, &removed);
        return base;
    }
    let mut out = Vec::with_capacity(base.len() + changes.len());
    let mut changes = changes.into_iter().peekable();
    for v in base {
        while let Some((_, c)) = changes.next_if(|(k, _)| k < key(&v)) {
            out.extend(c);
        }
        match changes.next_if(|(k, _)| k == key(&v)) {
            Some((_, c)) => out.extend(c),
            None => out.push(v),
        }
    }
    out.extend(changes.filter_map(|(_, c)| c));
    out
}

/// The final change of every key `deltas` (oldest first) touch, ordered by key: its row,
/// or `None` when removed (within one delta, an upsert wins over a removal).
pub fn final_changes<K, V>(
    deltas: Vec<TableDelta<K, V>>,
    key: impl Fn(&V) -> &K,
) -> std::collections::BTreeMap<K, Option<V>>
where
    K: Ord + Clone,
{
    let mut changes = std::collections::BTreeMap::new();
    for d in deltas {
        for k in d.removed {
            changes.insert(k, None);
        }
        for v in d.upserts {
            changes.insert(key(&v).clone(), Some(v));
        }
    }
    changes
}

/// Removes the rows `rows` (ascending; a row named twice is removed once) from `v` in
/// place, keeping the order of the rest: one pass, no second table.
pub(crate) fn remove_rows<T>(v: &mut Vec<T>, rows: &[usize]) {
    if rows.is_empty() {
        return;
    }
    let mut next = rows.iter().copied().peekable();
    let mut i = 0;
    v.retain(|_| {
        let keep = next.peek() != Some(&i);
        while next.peek() == Some(&i) {
            next.next();
        }
        i += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_apply_in_order_and_damage_is_an_error() {
        let base: Vec<(String, u32)> = vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)];
        let d1 = TableDelta {
            upserts: vec![("b".to_string(), 20), ("d".to_string(), 4)],
            removed: vec!["a".to_string()],
        };
        // A later delta wins: `d` removed again, `a` back.
        let d2 = TableDelta {
            upserts: vec![("a".to_string(), 10)],
            removed: vec!["d".to_string()],
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.delta");
        write(&p, &d1.encode().unwrap()).unwrap();
        let back: TableDelta<String, (String, u32)> =
            TableDelta::decode(&std::fs::read(&p).unwrap(), &p).unwrap();
        assert_eq!(back, d1);
        let out = apply(base, vec![back, d2], |v| &v.0);
        assert_eq!(
            out,
            vec![("a".into(), 10), ("b".into(), 20), ("c".into(), 3)],
            "in key order"
        );
        // Changes and removals of known keys only: the in-place path, same result.
        let base: Vec<(String, u32)> = vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)];
        let d = TableDelta {
            upserts: vec![("b".to_string(), 22)],
            removed: vec!["a".to_string(), "c".to_string()],
        };
        assert_eq!(apply(base, vec![d], |v| &v.0), vec![("b".into(), 22)]);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 2);
        let e = TableDelta::<String, (String, u32)>::decode(&bytes, &p).unwrap_err();
        assert!(e.to_string().contains("x.delta"), "{e}");
    }
}
