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
//! Not for: the base tables' own formats ([`crate::store::write_docs`],
//! [`crate::collection::write_meta`], [`crate::near::NeighbourTable`]).

use std::collections::HashMap;
use std::hash::Hash;
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

/// `base` with `deltas` applied, oldest first: a row whose key a delta upserts or removes
/// leaves its place; each key's last upsert is appended (in the order of its last change).
/// The caller re-sorts when the table has an order.
pub fn apply<K, V>(
    mut base: Vec<V>,
    deltas: Vec<TableDelta<K, V>>,
    key: impl Fn(&V) -> &K,
) -> Vec<V>
where
    K: Eq + Hash + Clone,
{
    if deltas.is_empty() {
        return base;
    }
    // The final state of every key the deltas touch: its row, or `None` when removed.
    let mut state: HashMap<K, (usize, Option<V>)> = HashMap::new();
    let mut order = 0usize;
    for d in deltas {
        for k in d.removed {
            order += 1;
            state.insert(k, (order, None));
        }
        for v in d.upserts {
            order += 1;
            state.insert(key(&v).clone(), (order, Some(v)));
        }
    }
    base.retain(|v| !state.contains_key(key(v)));
    let mut added: Vec<(usize, V)> = state
        .into_values()
        .filter_map(|(o, v)| v.map(|v| (o, v)))
        .collect();
    added.sort_by_key(|x| x.0);
    base.extend(added.into_iter().map(|x| x.1));
    base
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
        let mut out = apply(base, vec![back, d2], |v| &v.0);
        out.sort();
        assert_eq!(
            out,
            vec![("a".into(), 10), ("b".into(), 20), ("c".into(), 3)]
        );
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 2);
        let e = TableDelta::<String, (String, u32)>::decode(&bytes, &p).unwrap_err();
        assert!(e.to_string().contains("x.delta"), "{e}");
    }
}
