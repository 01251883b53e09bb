//! Collections: several named source folders in one index, and what a filter can ask of
//! each document beyond the document table (its collection and its front matter).
//!
//! An index made by `pinpoint index FOLDER` holds one unnamed collection and keys its
//! documents by their path in the folder, as before collections existed. `pinpoint index
//! FOLDER --collection NAME` syncs a named one: its documents are keyed `NAME/path`, and a
//! sync adds, changes and removes only that collection's documents. The manifest lists the
//! collections ([`CollectionInfo`]); a per-generation table (`meta/{gen}.bin`,
//! [`write_meta`]) gives each document its collection and front matter. Indexes written
//! before it lack the table: all their documents are in the unnamed collection, with no
//! front matter until a sync reads them again.
//!
//! Not for: evaluating filters ([`crate::filter`]), the folder sync itself
//! (`engine::sync`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// A named source of an index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Its name (`""`: the unnamed collection of `pinpoint index FOLDER`).
    pub name: String,
    /// The folder it mirrors (absolute when it was given as a path).
    pub root: String,
    /// What it holds, in the user's words: shown to agents (`list_collections`) and used
    /// by routing.
    #[serde(default)]
    pub description: String,
}

/// Longest collection name.
const MAX_NAME: usize = 64;

/// Checks a collection name: 1 to 64 letters, digits, `-` or `_` (it becomes the first
/// segment of its documents' keys, so no `/`, spaces or dots).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "collection",
            format!(
                "{name:?} is not a collection name (1 to {MAX_NAME} letters, digits, '-' or '_')"
            ),
        ))
    }
}

/// The key of the document at `rel` (its path in the collection's folder).
pub fn key_for(collection: &str, rel: &str) -> String {
    if collection.is_empty() {
        rel.to_string()
    } else {
        format!("{collection}/{rel}")
    }
}

/// The path of a document inside its collection's folder.
pub fn rel_of<'a>(collection: &str, key: &'a str) -> &'a str {
    if collection.is_empty() {
        key
    } else {
        key.strip_prefix(collection)
            .and_then(|k| k.strip_prefix('/'))
            .unwrap_or(key)
    }
}

/// What a filter may ask of a document besides the document table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DocMeta {
    /// Its collection (`""`: unnamed).
    pub collection: String,
    /// Front matter: keys lower-cased, scalar values as text, lists as their items.
    pub fields: BTreeMap<String, Vec<String>>,
}

/// Writes the metadata of a generation: `(document key, metadata)`, sorted by key.
pub fn write_meta(path: &Path, rows: &[(String, DocMeta)]) -> Result<()> {
    let bytes = bincode::serde::encode_to_vec(rows, bincode::config::standard())
        .map_err(|e| Error::corrupt(path, format!("cannot encode document metadata: {e}")))?;
    crate::store::write_synced(path, &bytes)
}

/// Reads what [`write_meta`] wrote.
pub fn read_meta(path: &Path) -> Result<HashMap<String, DocMeta>> {
    decode_meta(&std::fs::read(path).at(path)?, path)
}

/// Decodes what [`write_meta`] wrote (`path` names it in errors).
pub fn decode_meta(bytes: &[u8], path: &Path) -> Result<HashMap<String, DocMeta>> {
    let (rows, _): (Vec<(String, DocMeta)>, usize) =
        bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| Error::corrupt(path, format!("document metadata: {e}")))?;
    Ok(rows.into_iter().collect())
}

/// Largest front matter read (a bigger block is not metadata; it is left as text).
const MAX_FRONT_MATTER: usize = 64 * 1024;

/// The YAML front matter of a markdown text (`---` on the first line, up to the next
/// `---` or `...`): top-level keys, lower-cased, with scalar values as text and lists as
/// their items; nested maps are left out. Malformed YAML gives no fields (the text is
/// still indexed), never an error.
pub fn front_matter(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(body) = front_matter_block(text) else {
        return out;
    };
    // A YAML parser on a file's first lines: whatever the file holds, a failure of the
    // parser must cost only these fields, not the index run.
    let parsed = std::panic::catch_unwind(|| yaml_rust2::YamlLoader::load_from_str(body));
    let Ok(Ok(docs)) = parsed else {
        return out;
    };
    let Some(yaml_rust2::Yaml::Hash(map)) = docs.into_iter().next() else {
        return out;
    };
    for (k, v) in map {
        let Some(k) = scalar(&k) else { continue };
        let values: Vec<String> = match &v {
            yaml_rust2::Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
            other => scalar(other).into_iter().collect(),
        };
        if !values.is_empty() {
            out.insert(k.to_lowercase(), values);
        }
    }
    out
}

fn front_matter_block(text: &str) -> Option<&str> {
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let mut at = 0;
    for line in rest.split_inclusive('\n') {
        let l = line.trim_end();
        if l == "---" || l == "..." {
            return Some(&rest[..at]);
        }
        at += line.len();
        if at > MAX_FRONT_MATTER {
            return None;
        }
    }
    None
}

fn scalar(y: &yaml_rust2::Yaml) -> Option<String> {
    use yaml_rust2::Yaml;
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_keys_scalars_and_lists() {
        let t = "---\ntitle: Async in Rust\nTags: [rust, async]\nstatus: draft\ndate: 2025-03-01\nauthors:\n  - ann\n  - bo\nnested:\n  a: 1\n---\n# Body\n";
        let m = front_matter(t);
        assert_eq!(m["tags"], vec!["rust", "async"]);
        assert_eq!(m["status"], vec!["draft"]);
        assert_eq!(m["date"], vec!["2025-03-01"]);
        assert_eq!(m["authors"], vec!["ann", "bo"]);
        assert!(!m.contains_key("nested"));
    }

    #[test]
    fn no_or_broken_front_matter_gives_no_fields() {
        assert!(front_matter("# Title\n---\nkey: v\n---\n").is_empty());
        assert!(front_matter("---\nkey: [unclosed\n---\n").is_empty());
        assert!(front_matter("---\nno end\n").is_empty());
        assert!(front_matter("---\n- a list\n---\n").is_empty());
    }

    #[test]
    fn names_and_keys() {
        for ok in ["notes", "code_2", "a-b"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "a/b", "a b", "x.y", &"n".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(key_for("", "a/b.md"), "a/b.md");
        assert_eq!(key_for("notes", "a/b.md"), "notes/a/b.md");
        assert_eq!(rel_of("notes", "notes/a/b.md"), "a/b.md");
        assert_eq!(rel_of("", "a/b.md"), "a/b.md");
    }
}
